//! Forwarding: a sidecar sends its pools to the central poolwatch of its database, so
//! that one process holds the pool view and the server view together and computes what
//! neither computes alone (connections checked out on the pool and idle on the server).
//!
//! Whenever a push is stored, and at least every analysis interval, the sidecar posts
//! every pool it holds, each with the time it was pushed, to `forward.url` +
//! `/api/v1/forward` (the format is [`crate::ingest::forward`]). It always sends the
//! current state, never a queue: one request at a time, pushes arriving meanwhile
//! coalesce into the next, and a central instance that is down or restarting misses
//! forwards and gets the whole state again with the next one. Each forward is bounded:
//! at most [`MAX_BODY_BYTES`] (the central's default `http.max_body_bytes`), and
//! `forward.timeout_seconds` for connecting, TLS and the answer. It carries the central's
//! push token (`forward.token`) and verifies its certificate against `forward.ca_file`.
//!
//! Series: `poolwatch_forward_requests_total{outcome}` and
//! `poolwatch_forward_last_success_timestamp_seconds`. It does not parse or store
//! forwards (that is [`crate::http::forward`] on the central side).

pub mod config;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::{Gauge, IntCounterVec, Opts, Registry};
use serde_json::{json, Map, Value};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use self::config::ForwardConfig;
use crate::ingest::{PoolKey, PoolSnapshot};
use crate::store::{Entry, Store};

/// Largest forward sent: the central's default `http.max_body_bytes` (about 3,000 pools;
/// a sidecar holds its own application's few).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// How a forward ended (the `outcome` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted (2xx).
    Ok,
    /// The central instance refused the token (401 or 403).
    Unauthorized,
    /// The central instance refused the forward (another 4xx: too large, over its limits,
    /// malformed); its answer is logged.
    Refused,
    /// The central instance answered 5xx (busy, shutting down).
    Unavailable,
    /// No answer: connection refused or reset, TLS failure, timeout.
    Error,
    /// Not sent: the pools would not fit in [`MAX_BODY_BYTES`].
    TooLarge,
}

impl Outcome {
    const ALL: [Outcome; 6] = [
        Outcome::Ok,
        Outcome::Unauthorized,
        Outcome::Refused,
        Outcome::Unavailable,
        Outcome::Error,
        Outcome::TooLarge,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Refused => "refused",
            Outcome::Unavailable => "unavailable",
            Outcome::Error => "error",
            Outcome::TooLarge => "too_large",
        }
    }
}

/// The forwarder's series.
struct ForwardMetrics {
    /// `poolwatch_forward_requests_total{outcome}`.
    requests: IntCounterVec,
    /// `poolwatch_forward_last_success_timestamp_seconds`; 0 until the first success.
    last_success: Gauge,
}

/// The task that forwards a sidecar's pools.
pub struct Forwarder {
    /// Where and how.
    cfg: ForwardConfig,
    /// The pools forwarded, and the signal that a push arrived.
    store: Arc<Store>,
    /// The longest time between two forwards.
    interval: Duration,
    /// The TLS client, for an `https` URL.
    tls: Option<tokio_rustls::TlsConnector>,
    /// The open connection to the central instance; taken for a forward, put back only
    /// after an answer, so any failure reconnects the next time.
    conn: Option<SendRequest<Full<Bytes>>>,
    /// Series.
    metrics: ForwardMetrics,
    /// The last outcome, so that a change (not every failure) is logged.
    last: Option<Outcome>,
}

impl Forwarder {
    /// Creates the forwarder and registers its series; `interval` is the longest time
    /// between two forwards (the analysis interval).
    pub fn register(
        registry: &Registry,
        cfg: ForwardConfig,
        store: Arc<Store>,
        interval: Duration,
    ) -> prometheus::Result<Forwarder> {
        let requests = IntCounterVec::new(
            Opts::new(
                "poolwatch_forward_requests_total",
                "Forwards of this sidecar's pools to the central instance (forward.url), by outcome (ok, unauthorized, refused, unavailable, error, too_large).",
            ),
            &["outcome"],
        )?;
        for o in Outcome::ALL {
            requests.with_label_values(&[o.as_str()]);
        }
        let last_success = Gauge::with_opts(Opts::new(
            "poolwatch_forward_last_success_timestamp_seconds",
            "When the central instance last accepted this sidecar's pools (Unix seconds; 0: never).",
        ))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(last_success.clone()))?;
        let tls = cfg.roots.clone().map(|roots| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth());
            // The ring provider supports the default versions: this cannot fail.
            let mut config = config.expect("ring supports TLS 1.2 and 1.3");
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            tokio_rustls::TlsConnector::from(Arc::new(config))
        });
        Ok(Forwarder {
            cfg,
            store,
            interval,
            tls,
            conn: None,
            metrics: ForwardMetrics {
                requests,
                last_success,
            },
            last: None,
        })
    }

    /// Forwards after every push stored and at least every interval, until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) {
        tracing::info!(url = %self.cfg.url, "forwarding pools to the central instance");
        let mut timer = tokio::time::interval(self.interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let store = self.store.clone();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = store.changed() => timer.reset(),
                _ = timer.tick() => {}
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = self.forward_once() => {}
            }
        }
    }

    /// Sends the current pools once; counts and (on a change) logs the outcome.
    pub async fn forward_once(&mut self) -> Outcome {
        let body = body(&self.store.snapshot(Instant::now()), crate::unix_now());
        let (outcome, detail) = if body.len() > MAX_BODY_BYTES {
            (
                Outcome::TooLarge,
                format!("{} bytes of pools, over {MAX_BODY_BYTES}", body.len()),
            )
        } else {
            match tokio::time::timeout(self.cfg.timeout, self.send(body)).await {
                Ok(Ok((status, answer))) => (classify(status), answer),
                Ok(Err(e)) => {
                    self.conn = None;
                    (Outcome::Error, e)
                }
                Err(_) => {
                    self.conn = None;
                    (
                        Outcome::Error,
                        format!(
                            "no answer within {:?} (forward.timeout_seconds)",
                            self.cfg.timeout
                        ),
                    )
                }
            }
        };
        self.metrics
            .requests
            .with_label_values(&[outcome.as_str()])
            .inc();
        if outcome == Outcome::Ok {
            self.metrics.last_success.set(crate::unix_now());
        }
        if self.last != Some(outcome) {
            match outcome {
                Outcome::Ok if self.last.is_some() => {
                    tracing::info!(url = %self.cfg.url, "forwarding to the central instance works again")
                }
                Outcome::Ok => {}
                _ => {
                    tracing::warn!(url = %self.cfg.url, outcome = outcome.as_str(), error = %detail, "forward failed; the next push or tick retries with the whole state")
                }
            }
            self.last = Some(outcome);
        }
        outcome
    }

    /// Posts `body` over the open connection (or a new one): the status and, unless it is
    /// a success, the first kilobytes of the answer.
    async fn send(&mut self, body: Vec<u8>) -> Result<(StatusCode, String), String> {
        let mut conn = match self.conn.take() {
            Some(c) if !c.is_closed() => c,
            _ => self.connect().await?,
        };
        conn.ready().await.map_err(|e| e.to_string())?;
        let authority = match self.cfg.host.contains(':') {
            true => format!("[{}]:{}", self.cfg.host, self.cfg.port),
            false => format!("{}:{}", self.cfg.host, self.cfg.port),
        };
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(&self.cfg.path)
            .header(HOST, authority)
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, format!("poolwatch/{}", crate::VERSION));
        if let Some(token) = &self.cfg.token {
            req = req.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = conn.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let answer = match Limited::new(resp.into_body(), 4096).collect().await {
            Ok(b) if !status.is_success() => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
            Ok(_) => String::new(),
            Err(e) => return Err(format!("reading the answer: {e}")),
        };
        self.conn = Some(conn);
        Ok((status, answer.trim().to_string()))
    }

    /// Opens a connection to the central instance (TLS for `https`).
    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let (host, port) = (self.cfg.host.as_str(), self.cfg.port);
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(tcp).await,
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .map_err(|e| format!("{host}: {e}"))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
                handshake(stream).await
            }
        }
    }
}

/// An HTTP/1.1 client connection over `io`, driven by a task of its own.
async fn handshake<T>(io: T) -> Result<SendRequest<Full<Bytes>>, String>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "forward connection ended");
        }
    });
    Ok(sender)
}

/// The outcome a status means.
fn classify(status: StatusCode) -> Outcome {
    match status.as_u16() {
        200..=299 => Outcome::Ok,
        401 | 403 => Outcome::Unauthorized,
        400..=499 => Outcome::Refused,
        _ => Outcome::Unavailable,
    }
}

/// The forward body for `pools` at `now_unix` (the format of [`crate::ingest::forward`]).
pub fn body(pools: &[(PoolKey, Entry)], now_unix: f64) -> Vec<u8> {
    let pools: Vec<Value> = pools
        .iter()
        .map(|(k, e)| pool(k, &e.snapshot, e.received_unix))
        .collect();
    json!({ "sent_at": now_unix, "pools": pools })
        .to_string()
        .into_bytes()
}

/// One pool in the canonical fields a JSON push has, with its key and push time.
fn pool(k: &PoolKey, s: &PoolSnapshot, pushed_at: f64) -> Value {
    let mut m = Map::new();
    m.insert("app".into(), json!(k.app));
    m.insert("pool".into(), json!(k.pool));
    if !k.instance.is_empty() {
        m.insert("instance".into(), json!(k.instance));
    }
    m.insert("pushed_at".into(), json!(pushed_at));
    m.insert("open".into(), json!(s.open));
    let counts = [
        ("max_open", s.max_open),
        ("in_use", s.in_use),
        ("idle", s.idle),
        ("waiting", s.waiting),
        ("wait_count", s.wait_count),
        ("max_idle_closed", s.max_idle_closed),
        ("max_idle_time_closed", s.max_idle_time_closed),
        ("max_lifetime_closed", s.max_lifetime_closed),
    ];
    for (name, v) in counts {
        if let Some(v) = v {
            m.insert(name.into(), json!(v));
        }
    }
    let seconds = [
        ("wait_duration_seconds", s.wait_duration_seconds),
        ("max_lifetime_seconds", s.max_lifetime_seconds),
        ("max_idle_time_seconds", s.max_idle_time_seconds),
    ];
    for (name, v) in seconds {
        if let Some(v) = v {
            m.insert(name.into(), json!(v));
        }
    }
    m.insert("application_name".into(), json!(s.application_name));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::forward::parse_forward;

    /// What a sidecar holds arrives at the central instance as it was pushed, every field.
    #[test]
    fn the_body_parses_back_to_the_same_pools() {
        let snapshot = PoolSnapshot {
            max_open: Some(25),
            open: 25,
            in_use: Some(25),
            idle: Some(0),
            waiting: Some(3),
            wait_count: Some(40),
            wait_duration_seconds: Some(1.25),
            max_idle_closed: Some(1),
            max_idle_time_closed: Some(2),
            max_lifetime_closed: Some(3),
            max_lifetime_seconds: Some(1800.0),
            max_idle_time_seconds: Some(300.0),
            application_name: "shop-api".into(),
            database: None,
            // Not in the body: the central instance records the sidecar's own address.
            peer: None,
        };
        let key = |instance: &str| PoolKey {
            app: "shop".into(),
            pool: "primary".into(),
            instance: instance.into(),
        };
        let entry = |snapshot: PoolSnapshot, at: f64| Entry {
            snapshot,
            received: Instant::now(),
            received_unix: at,
        };
        let sparse = PoolSnapshot {
            open: 2,
            application_name: "shop".into(),
            ..Default::default()
        };
        let pools = vec![
            (key("shop-1"), entry(snapshot.clone(), 990.0)),
            (key(""), entry(sparse.clone(), 999.5)),
        ];
        let got = parse_forward(&body(&pools, 1000.0), 10).expect("valid");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].push.key, key("shop-1"));
        assert_eq!(got[0].push.snapshot, snapshot);
        assert_eq!(got[0].age_seconds, 10.0);
        assert_eq!(got[1].push.key, key(""));
        assert_eq!(got[1].push.snapshot, sparse);
        assert_eq!(got[1].age_seconds, 0.5);
    }

    #[test]
    fn statuses_are_outcomes() {
        for (status, outcome) in [
            (200, Outcome::Ok),
            (401, Outcome::Unauthorized),
            (403, Outcome::Unauthorized),
            (413, Outcome::Refused),
            (429, Outcome::Refused),
            (503, Outcome::Unavailable),
        ] {
            assert_eq!(classify(StatusCode::from_u16(status).unwrap()), outcome);
        }
    }
}
