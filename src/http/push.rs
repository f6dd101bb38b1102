//! The JSON push endpoints: read the body within its limits, parse, store all or
//! nothing, and count the outcome. A rejected push gets a 4xx JSON error naming the
//! problem (and the field, when there is one) and leaves the store as it was.

use std::io::Read;
use std::time::Instant;

use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use hyper::{Request, Response, StatusCode};
use prometheus::{IntCounterVec, Opts, Registry};

use super::{json, json_error, Body, Ctx};
use crate::ingest::json::{parse_batch, parse_pool};
use crate::ingest::{IngestError, PoolPush};

/// `poolwatch_ingest_requests_total{format, outcome}`.
pub struct IngestMetrics {
    /// Push requests by format (`json`, `dbstats`, `batch`; `text`, `protobuf`,
    /// `pushgateway`; `otlp_protobuf`, `otlp_json`, `otlp`) and outcome (`accepted`,
    /// `partial` for an OTLP export partly refused, or the error kind).
    requests: IntCounterVec,
}

impl IngestMetrics {
    /// Creates and registers the counter.
    pub fn register(registry: &Registry) -> prometheus::Result<IngestMetrics> {
        let requests = IntCounterVec::new(
            Opts::new(
                "poolwatch_ingest_requests_total",
                "Push requests, by format and outcome (accepted or why not).",
            ),
            &["format", "outcome"],
        )?;
        for f in [
            "json",
            "dbstats",
            "batch",
            "text",
            "protobuf",
            "pushgateway",
            "otlp_protobuf",
            "otlp_json",
        ] {
            requests.with_label_values(&[f, "accepted"]);
        }
        registry.register(Box::new(requests.clone()))?;
        Ok(IngestMetrics { requests })
    }

    pub(crate) fn count(&self, format: &str, outcome: &str) {
        self.requests.with_label_values(&[format, outcome]).inc();
    }
}

/// `POST /api/v1/pools/{app}/{pool}`.
pub async fn pool(req: Request<Incoming>, ctx: &Ctx, app: &str, pool: &str) -> Response<Body> {
    let query = req.uri().query().map(str::to_string);
    let parsed = match read_body(req, ctx).await {
        Ok(body) => parse_pool(&body, app, pool, query.as_deref(), &ctx.default_instance),
        Err(e) => Err(e),
    };
    match parsed {
        Ok((format, push)) => store(ctx, format.as_str(), vec![push]),
        Err(e) => reject(ctx, "json", e),
    }
}

/// `POST /api/v1/pools`.
pub async fn batch(req: Request<Incoming>, ctx: &Ctx) -> Response<Body> {
    let parsed = match read_body(req, ctx).await {
        Ok(body) => parse_batch(&body, &ctx.default_instance),
        Err(e) => Err(e),
    };
    match parsed {
        Ok(pushes) => store(ctx, "batch", pushes),
        Err(e) => reject(ctx, "batch", e),
    }
}

fn store(ctx: &Ctx, format: &str, pushes: Vec<PoolPush>) -> Response<Body> {
    let unix = crate::unix_now();
    match ctx.store.apply(pushes, Instant::now(), unix) {
        Ok(n) => {
            ctx.ingest.count(format, "accepted");
            json(StatusCode::OK, &serde_json::json!({ "accepted": n }))
        }
        Err(e) => reject(ctx, format, e),
    }
}

fn reject(ctx: &Ctx, format: &str, e: IngestError) -> Response<Body> {
    ctx.ingest.count(format, e.kind());
    tracing::debug!(format, outcome = e.kind(), error = %e, "push rejected");
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    json_error(status, &e.to_string(), e.field())
}

/// Reads the whole body, refusing it early when `Content-Length` is over the limit or
/// its `Content-Encoding` is neither `gzip` nor `identity`, cutting off a body that
/// grows past the limit or arrives too slowly, and inflating a gzip body (to the same
/// limit).
pub(crate) async fn read_body(req: Request<Incoming>, ctx: &Ctx) -> Result<Bytes, IngestError> {
    let gzip = gzipped(req.headers())?;
    let limit = ctx.http.max_body_bytes;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(IngestError::TooLarge { limit });
    }
    let body = Limited::new(req.into_body(), limit);
    match tokio::time::timeout(ctx.http.request_timeout, body.collect()).await {
        Err(_) => Err(IngestError::Timeout(ctx.http.request_timeout)),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(IngestError::TooLarge { limit })
        }
        Ok(Err(e)) => Err(IngestError::Body(e.to_string())),
        Ok(Ok(c)) if gzip => gunzip(&c.to_bytes(), limit),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Whether the body is gzip-compressed: `Content-Encoding` may list `gzip` (or its alias
/// `x-gzip`, RFC 9110) once and `identity`, in any case; anything else is refused before
/// the body is read.
fn gzipped(headers: &hyper::HeaderMap) -> Result<bool, IngestError> {
    let mut gzip = false;
    for value in headers.get_all(CONTENT_ENCODING) {
        let refuse = || {
            IngestError::UnsupportedEncoding(String::from_utf8_lossy(value.as_bytes()).into_owned())
        };
        let text = value.to_str().map_err(|_| refuse())?;
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let is_gzip =
                coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip");
            if is_gzip && !gzip {
                gzip = true;
            } else if !coding.eq_ignore_ascii_case("identity") {
                return Err(refuse());
            }
        }
    }
    Ok(gzip)
}

/// Decompresses a gzip body, refusing to inflate past `limit` bytes.
fn gunzip(body: &[u8], limit: usize) -> Result<Bytes, IngestError> {
    let mut out = Vec::new();
    let mut decoder = flate2::read::GzDecoder::new(body).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| IngestError::field_err("Content-Encoding", format!("not valid gzip: {e}")))?;
    if out.len() > limit {
        return Err(IngestError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}
