//! `POST /v1/metrics`: the OTLP/HTTP metrics receiver, so an application instrumented
//! with OpenTelemetry (or a Collector's `otlphttp` exporter) can send its pool metrics
//! here as it would to any OTLP backend.
//!
//! Bodies in binary protobuf (`application/x-protobuf`) or JSON (`application/json`),
//! optionally `Content-Encoding: gzip`, within `http.max_body_bytes` (decompressed too)
//! and `http.request_timeout_seconds`, behind the push token or basic auth as every push
//! endpoint. Answers follow OTLP/HTTP, in the request's encoding:
//!
//! - 200 with an empty `ExportMetricsServiceResponse` when every point poolwatch reads
//!   was taken (metrics it does not read are dropped, not refused);
//! - 200 with `partial_success` (`rejected_data_points`, `error_message`) when some
//!   were refused, with the first reasons;
//! - 4xx with a `google.rpc.Status` for a request refused whole: 400 for a malformed
//!   body, 413 too large, 415 an unknown `Content-Type` or a `Content-Encoding` other
//!   than `gzip` and `identity`, 408 too slow, 429 over the pool limits. A refused
//!   request changes nothing.
//!
//! Each pool's series are kept here between exports (delta counters accumulate across
//! them; [`crate::ingest::otlp::series`]) and forgotten with the pool after
//! `pools.expiry_seconds` without an export, as every push expires.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{IntCounter, Registry};

use super::{Body, Ctx};
use crate::ingest::otlp::series::PoolSeries;
use crate::ingest::otlp::{self, Limits, Rejected};
use crate::ingest::{IngestError, PoolKey, PoolPush};
use crate::store::{Source, SweepClock};

/// The OTLP receiver's state: each pool's series, and its counters.
pub struct Receiver {
    /// Series by pool; held for the decode-free part of a request only.
    table: Mutex<Table>,
    /// A pool not exported for this long is forgotten (as the store forgets it).
    expiry: Duration,
    /// `poolwatch_ingest_otlp_ignored_metrics_total`.
    ignored: IntCounter,
    /// `poolwatch_ingest_otlp_rejected_points_total`.
    rejected: IntCounter,
}

#[derive(Default)]
struct Table {
    pools: HashMap<PoolKey, Kept>,
    sweeps: SweepClock,
}

struct Kept {
    series: PoolSeries,
    received: Instant,
}

impl Receiver {
    /// Creates the receiver and registers its counters.
    pub fn register(registry: &Registry, expiry: Duration) -> prometheus::Result<Receiver> {
        let ignored = IntCounter::new(
            "poolwatch_ingest_otlp_ignored_metrics_total",
            "Metrics in OTLP exports that map to no pool field, dropped unread.",
        )?;
        let rejected = IntCounter::new(
            "poolwatch_ingest_otlp_rejected_points_total",
            "Data points of pool metrics in OTLP exports refused (answered as partial success, with the reason).",
        )?;
        registry.register(Box::new(ignored.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        Ok(Receiver {
            table: Mutex::new(Table::default()),
            expiry,
            ignored,
            rejected,
        })
    }
}

/// The body encoding of a request, and so of its answer.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From `Content-Type`, parameters and case aside.
    fn of(content_type: Option<&str>) -> Option<Encoding> {
        let media = content_type?.split(';').next()?.trim().to_ascii_lowercase();
        match media.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Encoding::Protobuf),
            "application/json" => Some(Encoding::Json),
            _ => None,
        }
    }

    /// The `format` label of `poolwatch_ingest_requests_total`.
    fn label(self) -> &'static str {
        match self {
            Encoding::Protobuf => "otlp_protobuf",
            Encoding::Json => "otlp_json",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// Format label before the body's encoding is known.
const UNKNOWN: &str = "otlp";

/// Handles a request on `/v1/metrics`.
pub async fn handle(req: Request<Incoming>, ctx: &Ctx) -> Response<Body> {
    if req.method() != Method::POST {
        return super::not_allowed("POST");
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(encoding) = Encoding::of(content_type.as_deref()) else {
        let e = IngestError::UnsupportedMediaType(
            content_type.unwrap_or_default(),
            "application/x-protobuf or application/json",
        );
        ctx.ingest.count(UNKNOWN, e.kind());
        return super::json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &e.to_string(),
            e.field(),
        );
    };
    let label = encoding.label();
    match receive(req, ctx, encoding).await {
        Ok(rejected) => {
            let outcome = if rejected.points > 0 {
                "partial"
            } else {
                "accepted"
            };
            ctx.ingest.count(label, outcome);
            let body = match encoding {
                Encoding::Protobuf => {
                    otlp::protobuf::response(rejected.points, &rejected.message())
                }
                Encoding::Json => otlp::json::response(rejected.points, &rejected.message()),
            };
            answer(StatusCode::OK, encoding, body)
        }
        Err(e) => {
            ctx.ingest.count(label, e.kind());
            tracing::debug!(format = label, outcome = e.kind(), error = %e, "push rejected");
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let (code, message) = (grpc_code(status), e.to_string());
            let body = match encoding {
                Encoding::Protobuf => otlp::protobuf::status(code, &message),
                Encoding::Json => otlp::json::status(code, &message),
            };
            answer(status, encoding, body)
        }
    }
}

/// The `google.rpc.Code` of a refusal.
fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        408 => 4,  // DEADLINE_EXCEEDED
        413 => 11, // OUT_OF_RANGE
        429 => 8,  // RESOURCE_EXHAUSTED
        _ => 3,    // INVALID_ARGUMENT
    }
}

fn answer(status: StatusCode, encoding: Encoding, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Body::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    r
}

/// Reads, decodes and stores one export; the points refused, or why the whole request
/// was.
async fn receive(
    req: Request<Incoming>,
    ctx: &Ctx,
    encoding: Encoding,
) -> Result<Rejected, IngestError> {
    let peer = super::peer_of(&req);
    // Content-Encoding as on every push endpoint: gzip (inflated there) or identity.
    let body = super::push::read_body(req, ctx).await?;
    let export = body
        .parse(move |b| {
            let limits = Limits::default();
            match encoding {
                Encoding::Protobuf => otlp::protobuf::decode(b, &limits),
                Encoding::Json => otlp::json::decode(b, &limits),
            }
        })
        .await?;
    let plan = otlp::plan(export, &ctx.default_instance);
    let receiver = &ctx.otlp;
    let now = Instant::now();
    let mut rejected = plan.rejected;
    // Every critical section is whole map operations: a poisoned lock holds a
    // consistent map.
    let mut table = receiver.table.lock().unwrap_or_else(|e| e.into_inner());
    if table.sweeps.due(now) {
        let expiry = receiver.expiry;
        table
            .pools
            .retain(|_, k| now.saturating_duration_since(k.received) < expiry);
    }
    let mut pushes = Vec::new();
    let mut kept = Vec::new();
    for (key, incoming) in plan.pools {
        let mut series = table
            .pools
            .get(&key)
            .filter(|k| now.saturating_duration_since(k.received) < receiver.expiry)
            .map(|k| k.series.clone())
            .unwrap_or_default();
        let refused = series.apply(&incoming.points);
        rejected.add(
            refused,
            format!(
                "pool {}/{}/{}: more than {} series; the rest were refused",
                key.app,
                key.instance,
                key.pool,
                PoolSeries::MAX_SERIES
            ),
        );
        match series.snapshot(&incoming.application_name) {
            Ok(snapshot) => {
                pushes.push(PoolPush {
                    key: key.clone(),
                    snapshot,
                });
                kept.push((key, series));
            }
            Err(reason) => rejected.add(
                incoming.points.len() as u64 - refused,
                format!(
                    "pool {}/{}/{}: {reason}; not stored",
                    key.app, key.instance, key.pool
                ),
            ),
        }
    }
    super::push::set_peer(&mut pushes, peer);
    ctx.store
        .replace(Source::Otlp, pushes, &[], now, crate::unix_now())?;
    for (key, series) in kept {
        table.pools.insert(
            key,
            Kept {
                series,
                received: now,
            },
        );
    }
    drop(table);
    receiver.ignored.inc_by(plan.ignored_metrics);
    receiver.rejected.inc_by(rejected.points);
    if rejected.points > 0 {
        tracing::debug!(rejected = rejected.points, reasons = %rejected.message(), "OTLP points refused");
    }
    Ok(rejected)
}
