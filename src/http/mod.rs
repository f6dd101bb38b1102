//! The HTTP server (hyper 1, HTTP/1.1) and its routes.
//!
//! | method | path | listener | what |
//! |---|---|---|---|
//! | GET | `/metrics` | metrics | Prometheus text format 0.0.4; never touches the database |
//! | GET | `/api/v1/connections` | metrics | the oldest stuck backends per application, JSON |
//! | GET | `/healthz` | metrics | 200 while the process serves requests (liveness) |
//! | GET | `/readyz` | metrics | 200 once started, 503 while shutting down (readiness) |
//! | GET | `/` | metrics | the on-call page: applications, verdicts, stuck connections (HTML, [`page`]) |
//! | GET | `/` | push | a short text listing this listener's endpoints |
//! | POST | `/api/v1/pools/{app}/{pool}` | push | one pool: canonical or `sql.DBStats` JSON |
//! | POST | `/api/v1/pools` | push | a batch of pools of one app |
//! | PUT, POST, DELETE | `/metrics/job/<job>{/<label>/<value>}` | push | the Pushgateway protocol |
//! | POST | `/v1/metrics` | push | OTLP/HTTP metrics, protobuf or JSON |
//! | POST | `/api/v1/forward` | push | the pools a sidecar forwards ([`forward`]) |
//!
//! When the metrics and push addresses are the same, one listener serves both sets.
//! Every request's headers and body must arrive within `http.request_timeout_seconds`;
//! so must an idle keep-alive connection's next request, and a response write that the
//! client has stopped reading is abandoned after the same time. Bodies are capped at
//! `http.max_body_bytes`; each listener holds at most `http.max_connections` connections
//! and leaves further ones in the kernel's backlog until one closes. On shutdown the
//! listener closes at once and open connections get `shutdown_grace_seconds` to finish.

pub mod config;
pub mod connections;
pub mod forward;
pub mod otlp;
pub mod page;
pub mod push;
pub mod pushgateway;
pub mod web;

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_ENCODING, CONTENT_TYPE, VARY};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus::{IntGaugeVec, Opts, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use self::config::HttpConfig;
use crate::store::Store;

/// The TCP peer address of the connection a request arrived on (IPv4-mapped IPv6 folded
/// into IPv4); `X-Forwarded-For` and the like are not read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(pub IpAddr);

/// The peer address of `req`'s connection, when it came through [`serve`].
pub fn peer_of(req: &Request<Incoming>) -> Option<IpAddr> {
    req.extensions().get::<Peer>().map(|p| p.0)
}

/// What every request handler can reach.
pub struct Ctx {
    /// Rendered by `/metrics`, with `views`.
    pub registry: Registry,
    /// Rendered by `/metrics` at scrape time.
    pub views: Arc<crate::metrics::Views>,
    /// Written by pushes.
    pub store: Arc<Store>,
    /// Counters of push outcomes.
    pub ingest: push::IngestMetrics,
    /// Room for push bodies being read and parsed.
    pub intake: push::Intake,
    /// Pushgateway-format groups.
    pub groups: pushgateway::Groups,
    /// The OTLP receiver's series.
    pub otlp: otlp::Receiver,
    /// TLS and basic auth (`web_config_file`), the configuration in force: read for each
    /// new connection (TLS) and each request (users), replaced by [`web::Reloader`].
    pub web: Option<tokio::sync::watch::Receiver<Arc<web::WebConfig>>>,
    /// The analysis task's latest report, for `/api/v1/connections`.
    pub reports: tokio::sync::watch::Receiver<Arc<crate::tick::Report>>,
    /// Without a `databases` list: the `database` label, the one database a push may name.
    pub database_label: Option<String>,
    /// With a `databases` list: the databases, which pushes may name.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// Body limit and timeouts.
    pub http: HttpConfig,
    /// `instance` for pushes that do not name one.
    pub default_instance: String,
    /// Cleared when shutdown starts, so `/readyz` turns 503.
    pub ready: AtomicBool,
    /// `poolwatch_http_open_connections{listener}`.
    pub open_connections: IntGaugeVec,
}

/// The `listener` label of a listener serving `routes`.
fn listener_name(routes: Routes) -> &'static str {
    if routes.metrics {
        "metrics"
    } else {
        "push"
    }
}

/// Creates and registers `poolwatch_http_open_connections{listener}`, with a 0 for each
/// listener there will be (`push` only when pushes have an address of their own).
pub fn register_connections(
    registry: &Registry,
    separate_push: bool,
) -> prometheus::Result<IntGaugeVec> {
    let open = IntGaugeVec::new(
        Opts::new(
            "poolwatch_http_open_connections",
            "Open client connections, by listener (metrics: the one serving /metrics, also pushes when they share it); at http.max_connections new ones wait.",
        ),
        &["listener"],
    )?;
    open.with_label_values(&["metrics"]);
    if separate_push {
        open.with_label_values(&["push"]);
    }
    registry.register(Box::new(open.clone()))?;
    Ok(open)
}

/// Which endpoint families a listener serves.
#[derive(Clone, Copy, Debug)]
pub struct Routes {
    /// `/metrics`, `/healthz`, `/readyz`.
    pub metrics: bool,
    /// The push endpoints.
    pub push: bool,
}

/// The response body of every handler: whole, or in the chunks it was rendered in, so a
/// large `/metrics` goes out family by family instead of being copied into one buffer
/// first (at 10,000 pools that copy was 5 MB more for every scrape in flight).
pub struct Body {
    chunks: std::collections::VecDeque<Bytes>,
    left: u64,
}

impl Body {
    /// A body of one piece.
    pub fn new(bytes: impl Into<Bytes>) -> Body {
        Body::chunks(vec![bytes.into()])
    }

    /// A body sent as these chunks, in order.
    pub fn chunks(chunks: Vec<Bytes>) -> Body {
        let left = chunks.iter().map(|c| c.len() as u64).sum();
        Body {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
            left,
        }
    }
}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        Poll::Ready(this.chunks.pop_front().map(|c| {
            this.left -= c.len() as u64;
            Ok(hyper::body::Frame::data(c))
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.left)
    }
}

/// Serves `listener` until `cancel` fires, then drains open connections for at most
/// `grace`.
///
/// Every request carries its connection's TCP peer address as a [`Peer`] extension.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    routes: Routes,
    cancel: CancellationToken,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    let timeout = ctx.http.request_timeout;
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .keep_alive(true)
        .max_buf_size(READ_BUFFER);
    let local = listener.local_addr().ok();
    let open = ctx
        .open_connections
        .with_label_values(&[listener_name(routes)]);
    let slots = Arc::new(tokio::sync::Semaphore::new(ctx.http.max_connections));
    loop {
        let slot = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
        };
        if slots.available_permits() == 0 {
            tracing::debug!(
                ?local,
                max_connections = ctx.http.max_connections,
                "connection limit reached; new connections wait"
            );
        }
        let (stream, peer) = tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // A response goes out in pieces (`/metrics` family by family): without this, Nagle's
        // algorithm holds each piece until the client's delayed ACK, 40 ms a scrape.
        let _ = stream.set_nodelay(true);
        let stream = WriteDeadline::new(stream, timeout);
        let tls = ctx.web.as_ref().and_then(|w| w.borrow().tls.clone());
        let ctx = ctx.clone();
        let peer_ip = Peer(peer.ip().to_canonical());
        let svc = service_fn(move |mut req: Request<Incoming>| {
            let ctx = ctx.clone();
            req.extensions_mut().insert(peer_ip);
            async move { Ok::<_, Infallible>(route(req, &ctx, routes).await) }
        });
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let open = open.clone();
        tokio::spawn(async move {
            open.inc();
            let _slot = slot;
            let result = match tls {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), svc))
                        .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            watcher
                                .watch(builder.serve_connection(TokioIo::new(tls), svc))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            open.dec();
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::debug!(?local, "listener drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!(?local, grace_seconds = grace.as_secs_f64(), "connections still open after the shutdown grace period; closing them"),
    }
}

/// Most bytes a connection's read buffer holds (hyper's default is about 400 KiB, which
/// every connection reading a large body grows to: 512 of them were 200 MiB). Also the
/// longest request head accepted.
const READ_BUFFER: usize = 16 * 1024;

/// A client stream whose writes fail once they have made no progress for `limit`: a
/// client that stops reading its response cannot hold the connection, its buffers and
/// its slot forever. Reads are left to hyper's header timeout and the handlers' body
/// timeout.
struct WriteDeadline<S> {
    io: S,
    limit: Duration,
    timer: Pin<Box<Sleep>>,
    armed: bool,
}

impl<S> WriteDeadline<S> {
    fn new(io: S, limit: Duration) -> Self {
        WriteDeadline {
            io,
            limit,
            timer: Box::pin(tokio::time::sleep(limit)),
            armed: false,
        }
    }

    /// Passes a write's outcome through; a write still pending `limit` after the last one
    /// that progressed becomes a `TimedOut` error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.armed = false;
            return r;
        }
        if !self.armed {
            self.armed = true;
            self.timer.as_mut().reset(Instant::now() + self.limit);
        }
        match self.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.watch(cx, r)
    }
}

async fn route(req: Request<Incoming>, ctx: &Ctx, routes: Routes) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if let Some(denied) = authenticate(&req, ctx, push_format(routes, &segments), &segments).await {
        return denied;
    }
    match (routes.metrics, routes.push, segments.as_slice()) {
        (true, _, ["metrics"]) => get_only(&method, || metrics(ctx, &req)),
        (true, _, ["api", "v1", "connections"]) => {
            let query = req.uri().query().map(str::to_string);
            get_only(&method, || connections::get(ctx, query.as_deref()))
        }
        (true, _, ["healthz"]) => get_only(&method, || text(StatusCode::OK, "ok\n")),
        (true, _, ["readyz"]) => get_only(&method, || {
            if ctx.ready.load(Ordering::Relaxed) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            }
        }),
        (true, _, [""]) => get_only(&method, || {
            let report = ctx.reports.borrow().clone();
            html(&page::render(&report, crate::unix_now()))
        }),
        (_, _, [""]) => get_only(&method, || text(StatusCode::OK, &push_index())),
        (_, true, ["api", "v1", "pools", app, pool]) => {
            if method != Method::POST {
                return not_allowed("POST");
            }
            let (app, pool) = (
                crate::decode_path_segment(app),
                crate::decode_path_segment(pool),
            );
            push::pool(req, ctx, &app, &pool).await
        }
        (_, true, ["metrics", job, ..]) if *job == "job" || *job == "job@base64" => {
            pushgateway::handle(req, ctx).await
        }
        (_, true, ["v1", "metrics"]) => otlp::handle(req, ctx).await,
        (_, true, ["api", "v1", "forward"]) => {
            if method != Method::POST {
                return not_allowed("POST");
            }
            forward::handle(req, ctx).await
        }
        (_, true, ["api", "v1", "pools"]) => {
            if method != Method::POST {
                return not_allowed("POST");
            }
            push::batch(req, ctx).await
        }
        _ => json_error(
            StatusCode::NOT_FOUND,
            &format!("no endpoint {path} on this listener"),
            None,
        ),
    }
}

/// The `format` label of a push endpoint at `segments` on a listener serving `routes`;
/// `None` for every other endpoint.
fn push_format(routes: Routes, segments: &[&str]) -> Option<&'static str> {
    if !routes.push {
        return None;
    }
    match segments {
        ["api", "v1", "pools", _, _] => Some("json"),
        ["api", "v1", "pools"] => Some("batch"),
        ["metrics", "job" | "job@base64", ..] => Some("pushgateway"),
        ["v1", "metrics"] => Some("otlp"),
        ["api", "v1", "forward"] => Some("forward"),
        _ => None,
    }
}

/// Checks the request's credentials. Both kinds arrive in the one `Authorization`
/// header, so each opens what it is for:
///
/// - with `basic_auth_users` (`web_config_file`), every endpoint but `/healthz` and
///   `/readyz` needs a user's credentials, pushes included;
/// - with `http.push_token`, a push may carry `Bearer <token>` instead: the token opens
///   the push endpoints (and only them), with or without basic-auth users; without
///   users, a push needs it.
///
/// A push turned away is counted with its `format` and outcome `unauthorized`; the 401
/// names every scheme that would have opened the endpoint.
async fn authenticate(
    req: &Request<Incoming>,
    ctx: &Ctx,
    push: Option<&'static str>,
    segments: &[&str],
) -> Option<Response<Body>> {
    let users = ctx.web.as_ref().and_then(|w| w.borrow().users.clone());
    let token = push.and(ctx.http.push_token.as_ref());
    if users.is_none() && token.is_none() {
        return None;
    }
    if matches!(segments, ["healthz"] | ["readyz"]) {
        return None;
    }
    let header = authorization(req);
    if let Some(token) = token {
        let given = header.and_then(|h| credentials(h, "bearer"));
        if given.is_some_and(|g| token.matches(g.as_bytes())) {
            return None;
        }
    }
    if let Some(users) = &users {
        match users.check(header).await {
            web::Verdict::Allowed => return None,
            web::Verdict::Denied => {}
            web::Verdict::Busy => {
                let mut r = json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many password checks in progress; retry shortly",
                    None,
                );
                r.headers_mut()
                    .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
                return Some(r);
            }
        }
    }
    let (error, schemes) = match (users.is_some(), token.is_some()) {
        (true, true) => (
            "basic authentication (web_config_file) or the push bearer token (http.push_token) required",
            "Basic realm=\"poolwatch\", Bearer realm=\"poolwatch\"",
        ),
        (true, false) => (
            "basic authentication required (web_config_file)",
            "Basic realm=\"poolwatch\"",
        ),
        (false, _) => (
            "a bearer token is required to push (http.push_token)",
            "Bearer realm=\"poolwatch\"",
        ),
    };
    if let Some(format) = push {
        ctx.ingest.count(format, "unauthorized");
    }
    Some(challenge(error, schemes))
}

/// The credentials of an `Authorization` header value of `scheme`, which is compared
/// without regard to case (RFC 9110, section 11.1); `None` for another scheme.
pub(crate) fn credentials<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (given, rest) = header.trim_start().split_once(' ')?;
    given
        .eq_ignore_ascii_case(scheme)
        .then(|| rest.trim_matches(' '))
}

/// The request's `Authorization` header, when it is text.
fn authorization(req: &Request<Incoming>) -> Option<&str> {
    req.headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// A 401 JSON error asking for credentials of the scheme `www_authenticate` names.
fn challenge(error: &str, www_authenticate: &'static str) -> Response<Body> {
    let mut r = json_error(StatusCode::UNAUTHORIZED, error, None);
    r.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static(www_authenticate),
    );
    r
}

fn get_only(method: &Method, f: impl FnOnce() -> Response<Body>) -> Response<Body> {
    if method == Method::GET || method == Method::HEAD {
        f()
    } else {
        not_allowed("GET, HEAD")
    }
}

/// `/metrics`: the text format, sent family by family as rendered, or gzip-compressed
/// (at the fastest level) when the scraper accepts it, as Prometheus does.
fn metrics(ctx: &Ctx, req: &Request<Incoming>) -> Response<Body> {
    let chunks = crate::metrics::encode_chunks(&ctx.registry, &ctx.views);
    let gzip = accepts_gzip(req.headers());
    let body = if gzip {
        let size: usize = chunks.iter().map(Bytes::len).sum();
        let mut z = flate2::write::GzEncoder::new(
            Vec::with_capacity(size / 8),
            flate2::Compression::fast(),
        );
        // Writing into a Vec cannot fail. Each piece is freed once compressed.
        for c in chunks {
            let _ = std::io::Write::write_all(&mut z, &c);
        }
        Body::new(z.finish().unwrap_or_default())
    } else if chunks.iter().map(Bytes::len).sum::<usize>() <= 256 * 1024 {
        // Small enough to copy: one write instead of one per family.
        Body::new(chunks.concat())
    } else {
        Body::chunks(chunks)
    };
    let mut r = Response::new(body);
    let headers = r.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

/// Whether `Accept-Encoding` accepts gzip: `gzip`, `x-gzip` or `*` with a weight above
/// zero, and no `gzip;q=0` (RFC 9110, 12.5.3).
fn accepts_gzip(headers: &hyper::HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(hyper::header::ACCEPT_ENCODING) {
        for item in value.to_str().unwrap_or("").split(',') {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let weight = parts
                .filter_map(|p| p.trim().strip_prefix("q=").or(p.trim().strip_prefix("Q=")))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(weight > 0.0),
                "*" => any = Some(weight > 0.0),
                _ => {}
            }
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// `/` on a push-only listener: its endpoints, as text.
fn push_index() -> String {
    format!(
        "poolwatch {}: PostgreSQL connection-leak watcher (push listener)\n\n\
POST /api/v1/pools/{{app}}/{{pool}}   push one pool (canonical or sql.DBStats JSON)\n\
POST /api/v1/pools                batch push\n\
PUT, POST, DELETE /metrics/job/...  the Pushgateway protocol\n\
POST /v1/metrics                  OTLP/HTTP metrics (protobuf or JSON)\n\
POST /api/v1/forward              the pools a sidecar forwards\n",
        crate::VERSION
    )
}

/// A plain-text response.
pub fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(Body::new(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// An HTML page.
fn html(body: &str) -> Response<Body> {
    let mut r = Response::new(Body::new(body.to_string()));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// A JSON response.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Body::new(body.to_string() + "\n"));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `{"error": ..., "field": ...}` with `status`.
pub fn json_error(status: StatusCode, error: &str, field: Option<&str>) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": error, "field": field }),
    )
}

pub(crate) fn not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = json_error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method not allowed; use {allow}"),
        None,
    );
    r.headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    r
}

#[cfg(test)]
mod tests {
    use super::WriteDeadline;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_nobody_reads_fails_after_the_limit() {
        let (near, _far) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(near, Duration::from_millis(200));
        let started = std::time::Instant::now();
        let err = w.write_all(&[0u8; 4096]).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[tokio::test]
    async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
        // Each read comes well within the limit, the whole transfer takes several limits.
        let (near, mut far) = tokio::io::duplex(64);
        let mut w = WriteDeadline::new(near, Duration::from_millis(300));
        let reader = tokio::spawn(async move {
            let mut got = 0;
            let mut buf = [0u8; 64];
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                match far.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got += n,
                }
            }
        });
        w.write_all(&[7u8; 2048]).await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), 2048);
    }
}
