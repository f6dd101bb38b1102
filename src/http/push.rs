//! The JSON push endpoints: read the body within its limits, parse, store all or
//! nothing, and count the outcome. A rejected push gets a 4xx JSON error naming the
//! problem (and the field, when there is one) and leaves the store as it was.
//!
//! Also what every push endpoint shares: [`Intake`], which bounds the memory that pushes
//! being read and parsed take at once, and [`read_body`].

use std::io::Read;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, RETRY_AFTER};
use hyper::{Request, Response, StatusCode};
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{json, json_error, Body, Ctx};
use crate::ingest::json::{parse_batch, parse_pool};
use crate::ingest::{IngestError, PoolPush};

/// `poolwatch_ingest_requests_total{format, outcome}`.
pub struct IngestMetrics {
    /// Push requests by format (`json`, `dbstats`, `batch`; `text`, `protobuf`,
    /// `pushgateway`; `otlp_protobuf`, `otlp_json`, `otlp`; `forward`) and outcome (`accepted`,
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
            "forward",
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
    let peer = super::peer_of(&req);
    let body = match read_body(req, ctx).await {
        Ok(body) => body,
        Err(e) => return reject(ctx, "json", e),
    };
    let (app, pool, instance) = (
        app.to_string(),
        pool.to_string(),
        ctx.default_instance.clone(),
    );
    let parsed = body
        .parse(move |b| parse_pool(b, &app, &pool, query.as_deref(), &instance))
        .await;
    match parsed {
        Ok((format, push)) => store(ctx, format.as_str(), vec![push], peer),
        Err(e) => reject(ctx, "json", e),
    }
}

/// `POST /api/v1/pools`.
pub async fn batch(req: Request<Incoming>, ctx: &Ctx) -> Response<Body> {
    let peer = super::peer_of(&req);
    let body = match read_body(req, ctx).await {
        Ok(body) => body,
        Err(e) => return reject(ctx, "batch", e),
    };
    let (instance, max) = (ctx.default_instance.clone(), ctx.store.max_pools_per_app());
    match body.parse(move |b| parse_batch(b, &instance, max)).await {
        Ok(pushes) => store(ctx, "batch", pushes, peer),
        Err(e) => reject(ctx, "batch", e),
    }
}

fn store(
    ctx: &Ctx,
    format: &str,
    mut pushes: Vec<PoolPush>,
    peer: Option<IpAddr>,
) -> Response<Body> {
    if let Some(e) = unknown_database(ctx, &pushes) {
        return reject(ctx, format, e);
    }
    set_peer(&mut pushes, peer);
    let unix = crate::unix_now();
    match ctx.store.apply(pushes, Instant::now(), unix) {
        Ok(n) => {
            ctx.ingest.count(format, "accepted");
            json(StatusCode::OK, &serde_json::json!({ "accepted": n }))
        }
        Err(e) => reject(ctx, format, e),
    }
}

/// Records the connection's peer address with every pool of a push (the third
/// attribution rule of a `databases` list: [`crate::fleet::Fleet::database_of`]).
pub(crate) fn set_peer(pushes: &mut [PoolPush], peer: Option<IpAddr>) {
    for p in pushes {
        p.snapshot.peer = peer;
    }
}

/// A push naming a database that is not in the `databases` list (without a list: not
/// the `database` label of the one watched) is refused whole, naming it.
fn unknown_database(ctx: &Ctx, pushes: &[PoolPush]) -> Option<IngestError> {
    let named = pushes.iter().find_map(|p| p.snapshot.database.as_deref())?;
    let problem = match (&ctx.fleet, &ctx.database_label) {
        (Some(f), _) if f.contains(named) => return None,
        (Some(_), _) => format!("unknown database {named:?}: not in the databases list"),
        (None, Some(label)) if label == named => return None,
        (None, Some(label)) => {
            format!("unknown database {named:?}: this poolwatch watches {label:?}")
        }
        (None, None) => format!("unknown database {named:?}: this poolwatch watches none"),
    };
    Some(IngestError::field_err("database", problem))
}

pub(crate) fn reject(ctx: &Ctx, format: &str, e: IngestError) -> Response<Body> {
    ctx.ingest.count(format, e.kind());
    refusal(format, &e)
}

/// The answer to a refused push: its status, a JSON error naming the problem (and the
/// field), and `Retry-After: 1` when it was refused for being busy.
pub(crate) fn refusal(format: &str, e: &IngestError) -> Response<Body> {
    tracing::debug!(format, outcome = e.kind(), error = %e, "push rejected");
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json_error(status, &e.to_string(), e.field());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(RETRY_AFTER, hyper::header::HeaderValue::from_static("1"));
    }
    r
}

/// Bounds the memory that push bodies take while they are read and parsed, whoever
/// sends them. Before a body is read, a push reserves about what it will cost: its
/// declared size times [`COST`] (the body, read into one buffer, and the parse, which
/// `benches/push_memory.rs` measures at under three times the body for the costliest
/// bodies, with room to spare), or `http.max_body_bytes` times that when its size is
/// unknown or it is compressed. Small pushes (up to [`SMALL`] declared, what clients
/// send) and large ones draw on separate budgets, so a queue of large ones never holds up
/// a small one: eight small ones of the largest small size (hundreds of a few
/// kilobytes), and one of the largest, at a time: 7.5 MiB at the default 1 MiB
/// `http.max_body_bytes`. A push that finds no room waits, in order of arrival, up to
/// `http.request_timeout_seconds`; with [`IN_LINE`] pushes of its size waiting already,
/// or when the wait is over, it is refused with 503 and `Retry-After: 1`, its body read
/// and dropped chunk by chunk rather than kept (so a flood costs connections, each with
/// a 16 KiB read buffer, and no more).
pub struct Intake {
    small: Lane,
    large: Lane,
    limit: usize,
    wait: Duration,
}

/// One budget and the pushes waiting for it.
struct Lane {
    budget: Arc<Semaphore>,
    waiting: AtomicUsize,
}

/// Pushes that may wait for room in one budget; one more is refused at once.
pub const IN_LINE: usize = 16;

/// Bodies of at most this many bytes (declared by `Content-Length`) are small.
pub const SMALL: usize = 64 * 1024;

/// What a push's memory is reckoned to be while it is read and parsed, as a multiple of
/// its body: the body itself, read into one buffer of its declared size, and the parse.
pub const COST: usize = 5;

impl Intake {
    /// Budgets for bodies of at most `limit` bytes, each push waiting at most `wait`.
    pub fn new(limit: usize, wait: Duration) -> Intake {
        let kib = |bytes: usize| u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX) as usize;
        let lane = |bytes: usize| Lane {
            budget: Arc::new(Semaphore::new(kib(bytes))),
            waiting: AtomicUsize::new(0),
        };
        Intake {
            small: lane(8 * SMALL * COST),
            large: lane(limit.max(SMALL) * COST),
            limit,
            wait,
        }
    }

    /// Waits for room for a body of `declared` bytes (`None`: unknown), compressed or not.
    async fn admit(&self, declared: Option<usize>, gzip: bool) -> Result<Admitted, IngestError> {
        let (lane, bytes, large) = match declared {
            Some(n) if n <= SMALL && !gzip => (&self.small, n, false),
            Some(n) if !gzip => (&self.large, n, true),
            _ => (&self.large, self.limit.max(SMALL), true),
        };
        let kib = u32::try_from((bytes * COST).div_ceil(1024)).unwrap_or(u32::MAX);
        let admitted = |permit| Admitted {
            _permit: permit,
            large,
        };
        if let Ok(permit) = lane.budget.clone().try_acquire_many_owned(kib) {
            return Ok(admitted(permit));
        }
        // A place in the line, given back however this ends (the client may go away and
        // this future be dropped while it waits).
        struct Place<'a>(&'a AtomicUsize);
        impl Drop for Place<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let place = Place(&lane.waiting);
        if lane.waiting.fetch_add(1, Ordering::AcqRel) >= IN_LINE {
            return Err(IngestError::Busy);
        }
        let acquired =
            tokio::time::timeout(self.wait, lane.budget.clone().acquire_many_owned(kib)).await;
        drop(place);
        match acquired {
            Ok(Ok(permit)) => Ok(admitted(permit)),
            _ => Err(IngestError::Busy),
        }
    }
}

/// A push body read within its limits, and its reservation, held until it is dropped
/// (after the parse and the store update).
pub(crate) struct PushBody {
    bytes: Bytes,
    admitted: Admitted,
}

struct Admitted {
    _permit: OwnedSemaphorePermit,
    /// Parsed on the blocking pool: a 1 MiB body takes tens of milliseconds, which a
    /// runtime worker must not spend while scrapes and probes wait.
    large: bool,
}

impl PushBody {
    /// Runs `parse` on the body: a large body's on the blocking pool, a small one's here.
    pub(crate) async fn parse<T: Send + 'static>(
        &self,
        parse: impl FnOnce(&[u8]) -> T + Send + 'static,
    ) -> T {
        if !self.admitted.large {
            return parse(&self.bytes);
        }
        let bytes = self.bytes.clone();
        match tokio::task::spawn_blocking(move || parse(&bytes)).await {
            Ok(out) => out,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

/// Reads the whole body, refusing it early when `Content-Length` is over the limit or
/// its `Content-Encoding` is neither `gzip` nor `identity`, cutting off a body that
/// grows past the limit or arrives too slowly, and inflating a gzip body (to the same
/// limit).
pub(crate) async fn read_body(req: Request<Incoming>, ctx: &Ctx) -> Result<PushBody, IngestError> {
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
    let mut body = req.into_body();
    let admitted = match ctx.intake.admit(declared.map(|n| n as usize), gzip).await {
        Ok(admitted) => admitted,
        Err(e) => {
            // Read and dropped, chunk by chunk, so the client gets the 503 rather than a
            // connection reset for the bytes it is still sending.
            let drain = async {
                let mut seen = 0;
                while let Some(Ok(frame)) = body.frame().await {
                    seen += frame.data_ref().map_or(0, Bytes::len);
                    if seen > limit {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(ctx.http.request_timeout, drain).await;
            return Err(e);
        }
    };
    // Into one buffer of the declared size as the chunks arrive: no second copy.
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| IngestError::Body(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    return Err(IngestError::TooLarge { limit });
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(())
    };
    match tokio::time::timeout(ctx.http.request_timeout, read).await {
        Err(_) => return Err(IngestError::Timeout(ctx.http.request_timeout)),
        Ok(result) => result?,
    }
    let bytes = if gzip {
        gunzip(&buf, limit)?
    } else {
        Bytes::from(buf)
    };
    Ok(PushBody { bytes, admitted })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15, D1: while the largest push allowed is being read, another waits (then
    /// is refused), at most `IN_LINE` wait and the next is refused at once, and small
    /// pushes keep going through their own budget.
    #[tokio::test]
    async fn large_pushes_queue_and_small_ones_pass() {
        let wait = Duration::from_millis(300);
        let intake = Arc::new(Intake::new(1 << 20, wait));
        let held = intake
            .admit(Some(1 << 20), false)
            .await
            .expect("room for one");
        assert!(held.large);
        let started = Instant::now();
        assert_eq!(
            intake.admit(Some(200_000), false).await.err(),
            Some(IngestError::Busy)
        );
        assert!(started.elapsed() >= wait, "waited its turn first");
        // Fill the line; the next one is refused without waiting.
        let line: Vec<_> = (0..IN_LINE)
            .map(|_| {
                let intake = intake.clone();
                tokio::spawn(async move { intake.admit(None, false).await.err() })
            })
            .collect();
        while intake.large.waiting.load(Ordering::Acquire) < IN_LINE {
            tokio::task::yield_now().await;
        }
        let started = Instant::now();
        assert_eq!(
            intake.admit(Some(100_000), true).await.err(),
            Some(IngestError::Busy)
        );
        assert!(started.elapsed() < wait / 2, "refused at once");
        // Small pushes are not in that line; one that gives up waiting leaves it.
        let small: Vec<_> = futures_small(&intake).await;
        assert_eq!(small.len(), 8, "eight of the largest small size at a time");
        assert_eq!(intake.small.waiting.load(Ordering::Acquire), 0);
        drop(small);
        drop(held);
        for t in line {
            let _ = t.await.unwrap();
        }
        assert!(intake.admit(Some(1 << 20), false).await.is_ok());
    }

    async fn futures_small(intake: &Intake) -> Vec<Admitted> {
        let mut held = Vec::new();
        while let Ok(Ok(a)) =
            tokio::time::timeout(Duration::from_millis(50), intake.admit(Some(SMALL), false)).await
        {
            assert!(!a.large);
            held.push(a);
        }
        held
    }
}
