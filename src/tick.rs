//! The analysis task: every `analysis.interval_seconds` it gathers the three views (the
//! pool store, the sampler's latest [`ServerState`], and in sidecar mode the socket
//! counts from `/proc/net`), runs the pure [`Analyzer`], and publishes an immutable
//! [`Report`] that `/metrics` and `/api/v1/connections` read.
//!
//! Owns the clock and the I/O the analysis itself does not have (resolving the socket
//! peers, reading `/proc/net`), and the `analysis` section of the configuration
//! ([`AnalysisSettings`]); it decides nothing about leaks.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::analysis::{AnalysisConfig, Analyzer, AppKey, Findings, Inputs as AnalyzeInputs};
use crate::keys::{Key, Kind, Values};
use crate::sampler::socket::{self, SocketConfig, TcpState};
use crate::sampler::ServerState;
use crate::store::Store;
use crate::Mode;

/// Connections from this pod to one configured peer, by TCP state.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerSockets {
    /// The peer as configured (`host:port`), the `peer` label.
    pub peer: String,
    /// Connections by state; states with none are left out, except `established`.
    pub states: BTreeMap<&'static str, u64>,
}

/// What one tick produced.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The analysis, once the first tick ran.
    pub findings: Option<Findings>,
    /// The socket view, when it is on and `/proc/net` could be read.
    pub sockets: Option<Vec<PeerSockets>>,
    /// This poolwatch's instance, the `instance` label of the socket view.
    pub instance: String,
    /// History bytes held (per application, per pool), for the docs and the curious.
    pub history_bytes: (usize, usize),
}

/// When the analysis runs and the thresholds of its findings: the `analysis` section.
#[derive(Clone, Debug)]
pub struct AnalysisSettings {
    /// Time between analysis ticks.
    pub interval: Duration,
    /// History kept per application for the trend.
    pub window: Duration,
    /// Idle in `ClientRead` since before the latest push, longer than this, while the
    /// push says in use: checked out and forgotten, a stuck connection.
    pub idle_in_use: Duration,
    /// Stuck connection-seconds beyond the floors at which a leak is called.
    pub stuck_connection_seconds: f64,
    /// The pools' expiry: idle connections no pool accounts for are stuck only after it.
    pub unaccounted_after: Duration,
    /// Added to the pool's max lifetime before a backend counts as over it.
    pub lifetime_grace: Duration,
    /// How long a disagreement between views must hold before it means a leak.
    pub disagreement_hold: Duration,
    /// Stuck connections listed per application.
    pub top_n: usize,
}

const INTERVAL: Key = Key::new(
    "analysis.interval_seconds",
    Kind::Seconds,
    "-",
    &["POOLWATCH_ANALYSIS_INTERVAL_SECONDS"],
);
const WINDOW: Key = Key::new(
    "analysis.window_seconds",
    Kind::Seconds,
    "900",
    &["POOLWATCH_ANALYSIS_WINDOW_SECONDS"],
);
const IDLE_IN_USE: Key = Key::new(
    "analysis.idle_in_use_seconds",
    Kind::Seconds,
    "10",
    &["POOLWATCH_ANALYSIS_IDLE_IN_USE_SECONDS"],
);
const STUCK_CONNECTION_SECONDS: Key = Key::new(
    "analysis.stuck_connection_seconds",
    Kind::Seconds,
    "300",
    &["POOLWATCH_ANALYSIS_STUCK_CONNECTION_SECONDS"],
);
const LIFETIME_GRACE: Key = Key::new(
    "analysis.lifetime_grace_seconds",
    Kind::Seconds,
    "60",
    &["POOLWATCH_ANALYSIS_LIFETIME_GRACE_SECONDS"],
);
const DISAGREEMENT_HOLD: Key = Key::new(
    "analysis.disagreement_hold_seconds",
    Kind::Seconds,
    "300",
    &["POOLWATCH_ANALYSIS_DISAGREEMENT_HOLD_SECONDS"],
);
const TOP_N: Key = Key::new(
    "analysis.top_n",
    Kind::Count,
    "20",
    &["POOLWATCH_ANALYSIS_TOP_N"],
);

impl AnalysisSettings {
    /// The keys of the `analysis` section.
    pub const KEYS: &[Key] = &[
        INTERVAL,
        WINDOW,
        IDLE_IN_USE,
        STUCK_CONNECTION_SECONDS,
        LIFETIME_GRACE,
        DISAGREEMENT_HOLD,
        TOP_N,
    ];

    /// Reads the `analysis` section. The interval defaults to the sampler's
    /// (`sample_interval`, when a database is watched), else to 15 seconds;
    /// `pools_expiry` is the floor of a connection no pool accounts for.
    pub fn from_values(
        v: &mut Values,
        sample_interval: Option<Duration>,
        pools_expiry: Duration,
    ) -> AnalysisSettings {
        let s = AnalysisSettings {
            interval: v
                .opt_seconds(&INTERVAL)
                .unwrap_or(sample_interval.unwrap_or(Duration::from_secs(15))),
            window: v.seconds(&WINDOW),
            idle_in_use: v.seconds(&IDLE_IN_USE),
            stuck_connection_seconds: v.seconds(&STUCK_CONNECTION_SECONDS).as_secs_f64(),
            unaccounted_after: pools_expiry,
            lifetime_grace: v.seconds(&LIFETIME_GRACE),
            disagreement_hold: v.seconds(&DISAGREEMENT_HOLD),
            top_n: v.count(&TOP_N),
        };
        let (window, interval) = (s.window.as_secs_f64(), s.interval.as_secs_f64());
        if s.window < s.interval * 4 {
            v.problem(format!(
                "analysis.window_seconds ({window}) must hold at least 4 analysis intervals ({interval} s each)"
            ));
        } else if growth_points(&s) < AnalysisConfig::default().min_points {
            // Not an error: the stuck connections are still judged.
            v.warn(format!(
                "the growth trend is off: a third of analysis.window_seconds ({window}) holds {} samples at analysis.interval_seconds ({interval}), the trend needs {}; raise the window to at least {:.0} or lower the interval to at most {:.1}",
                growth_points(&s),
                AnalysisConfig::default().min_points,
                27.0 * interval,
                window / 27.0
            ));
        }
        s
    }
}

/// Samples the growth trend's span (a third of the window) holds at the interval.
fn growth_points(s: &AnalysisSettings) -> usize {
    (s.window.as_secs_f64() / 3.0 / s.interval.as_secs_f64()).floor() as usize + 1
}

/// Maps the configuration onto the analysis' own thresholds.
pub fn analysis_config(s: &AnalysisSettings) -> AnalysisConfig {
    let window = s.window.as_secs_f64();
    let points = (window / s.interval.as_secs_f64()).ceil() as usize + 1;
    AnalysisConfig {
        idle_in_use_seconds: s.idle_in_use.as_secs_f64(),
        unaccounted_after_seconds: s.unaccounted_after.as_secs_f64(),
        stuck_connection_seconds: s.stuck_connection_seconds,
        lifetime_grace_seconds: s.lifetime_grace.as_secs_f64(),
        window_seconds: window,
        // Growth must hold over the newest third of the window (5 minutes by default).
        growth_span_seconds: window / 3.0,
        disagreement_hold_seconds: s.disagreement_hold.as_secs_f64(),
        evict_after_seconds: window,
        max_history_points: points.clamp(10, 10_000),
        top_n: s.top_n,
        ..AnalysisConfig::default()
    }
}

/// Which pools an analysis looks at (one database's, with a `databases` list).
pub type PoolFilter =
    Arc<dyn Fn(&crate::ingest::PoolKey, &crate::store::Entry) -> bool + Send + Sync>;

/// Runs the analysis every interval until `cancel` fires.
pub struct Ticker {
    /// The pools this analysis looks at; all without a filter.
    filter: Option<PoolFilter>,
    /// Deploy mode, instance and pod IP.
    mode: Mode,
    /// This poolwatch's instance.
    instance: String,
    /// This pod's IP, as text for the analysis.
    pod_ip: Option<String>,
    /// The socket view, when on.
    socket: Option<SocketConfig>,
    /// Time between ticks.
    interval: Duration,
    /// The pool view.
    store: Arc<Store>,
    /// The server view, when a database is configured.
    server: Option<watch::Receiver<Arc<ServerState>>>,
    /// The analysis and its histories.
    analyzer: Analyzer,
    /// Where reports go.
    tx: watch::Sender<Arc<Report>>,
    /// The socket view's peers as last resolved (kept when a lookup fails).
    resolved: BTreeMap<String, Vec<SocketAddr>>,
}

impl Ticker {
    /// A ticker and the channel of its reports: `mode`, `instance` and `pod_ip` say
    /// where poolwatch runs, `socket` is the socket view when it is on, `store` and
    /// `server` are the pool and server views.
    pub fn new(
        settings: &AnalysisSettings,
        mode: Mode,
        instance: &str,
        pod_ip: Option<IpAddr>,
        socket: Option<SocketConfig>,
        store: Arc<Store>,
        server: Option<watch::Receiver<Arc<ServerState>>>,
    ) -> (Ticker, watch::Receiver<Arc<Report>>) {
        let analyzer = Analyzer::new(analysis_config(settings));
        let report = Report {
            instance: instance.to_string(),
            history_bytes: analyzer.history_bytes(),
            ..Report::default()
        };
        let (tx, rx) = watch::channel(Arc::new(report));
        let ticker = Ticker {
            filter: None,
            mode,
            instance: instance.to_string(),
            pod_ip: pod_ip.map(|ip| ip.to_string()),
            socket,
            interval: settings.interval,
            store,
            server,
            analyzer,
            tx,
            resolved: BTreeMap::new(),
        };
        (ticker, rx)
    }

    /// The same ticker, looking only at the pools `filter` accepts.
    pub fn with_filter(mut self, filter: PoolFilter) -> Ticker {
        self.filter = Some(filter);
        self
    }

    /// Ticks until `cancel` fires: right after each sample when a database is watched
    /// (so a verdict is never an interval older than its evidence), and every interval
    /// without one, or when a sample is half an interval late. Missed ticks are delayed,
    /// not bunched.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut samples = self.server.clone();
        let period = match samples {
            Some(_) => self.interval + self.interval / 2,
            None => self.interval,
        };
        let mut timer = tokio::time::interval(period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                changed = async { samples.as_mut()?.changed().await.ok() }, if samples.is_some() => {
                    if changed.is_none() {
                        // The sampler is gone: tick on the timer alone.
                        samples = None;
                        continue;
                    }
                    timer.reset();
                }
                _ = timer.tick() => {}
            }
            if let Some(sc) = &self.socket {
                resolve(&sc.peers, &mut self.resolved).await;
            }
            let own = self.own_client_port();
            let now = crate::unix_now();
            // Reading /proc/net/tcp and the analysis take milliseconds per thousand pools:
            // done on the blocking pool, so scrapes and pushes are not kept waiting.
            let ticked = tokio::task::spawn_blocking(move || {
                let sockets = self
                    .socket
                    .as_ref()
                    .and_then(|sc| read_sockets(sc, &self.resolved, own.as_slice()));
                self.tick_at(now, sockets);
                self
            })
            .await;
            match ticked {
                Ok(ticker) => self = ticker,
                Err(e) => {
                    tracing::error!(error = %e, "the analysis tick failed; analysis stopped");
                    return;
                }
            }
        }
    }

    /// The local port of the sampler's session, left out of the socket view.
    fn own_client_port(&self) -> Option<u16> {
        let state = self.server.as_ref()?.borrow().clone();
        state.sample.as_ref()?.own_client_port
    }

    /// One tick at `now_unix` with the socket view already read; publishes the report.
    /// The task calls it every interval; tests call it with fixed inputs.
    pub fn tick_at(&mut self, now_unix: f64, sockets: Option<Vec<PeerSockets>>) {
        let report = self.report(now_unix, sockets);
        self.tx.send_replace(Arc::new(report));
    }

    fn report(&mut self, now_unix: f64, sockets: Option<Vec<PeerSockets>>) -> Report {
        let mut pools = self.store.snapshot(std::time::Instant::now());
        if let Some(f) = &self.filter {
            pools.retain(|(k, e)| f(k, e));
        }
        let state = self.server.as_ref().map(|rx| rx.borrow().clone());
        let sample = state
            .as_ref()
            .and_then(|s| if s.up { s.sample.clone() } else { None });
        let socket_by_app = socket_by_app(self.mode, &pools, sockets.as_deref());
        let inputs = AnalyzeInputs {
            now_unix,
            mode: self.mode,
            instance: &self.instance,
            pod_ip: self.pod_ip.as_deref(),
            pools: &pools,
            server: sample.as_deref(),
            sockets: &socket_by_app,
        };
        let findings = self.analyzer.tick(&inputs);
        Report {
            findings: Some(findings),
            sockets,
            instance: self.instance.clone(),
            history_bytes: self.analyzer.history_bytes(),
        }
    }
}

/// In sidecar mode the pod's established connections to the database belong to the
/// application pushing from this pod; with several applications in one pod they cannot
/// be told apart, and the socket view is left out of the per-application comparison.
fn socket_by_app(
    mode: Mode,
    pools: &[(crate::ingest::PoolKey, crate::store::Entry)],
    sockets: Option<&[PeerSockets]>,
) -> BTreeMap<AppKey, u64> {
    let mut out = BTreeMap::new();
    let (Mode::Sidecar, Some(sockets)) = (mode, sockets) else {
        return out;
    };
    let apps: std::collections::BTreeSet<AppKey> = pools
        .iter()
        .map(|(k, _)| AppKey::new(&k.app, &k.instance))
        .collect();
    if apps.len() == 1 {
        let established: u64 = sockets
            .iter()
            .map(|p| p.states.get("established").copied().unwrap_or(0))
            .sum();
        out.insert(apps.into_iter().next().expect("one app"), established);
    }
    out
}

/// Resolves each `host:port`; a lookup that fails or takes over 2 s keeps the last answer.
async fn resolve(peers: &[String], resolved: &mut BTreeMap<String, Vec<SocketAddr>>) {
    for p in peers {
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host(p.as_str()))
            .await
        {
            Ok(Ok(addrs)) => {
                resolved.insert(p.clone(), addrs.collect());
            }
            Ok(Err(e)) => {
                tracing::debug!(peer = %p, error = %e, "cannot resolve socket peer; keeping the last answer")
            }
            Err(_) => {
                tracing::debug!(peer = %p, "resolving socket peer timed out; keeping the last answer")
            }
        }
    }
}

fn read_sockets(
    sc: &SocketConfig,
    resolved: &BTreeMap<String, Vec<SocketAddr>>,
    exclude: &[u16],
) -> Option<Vec<PeerSockets>> {
    let addrs: Vec<SocketAddr> = resolved.values().flatten().copied().collect();
    let counts = match socket::read(&sc.proc_net_dir, &addrs, exclude) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the socket view");
            return None;
        }
    };
    let mut out = Vec::with_capacity(sc.peers.len());
    for p in &sc.peers {
        let mut states: BTreeMap<&'static str, u64> = BTreeMap::new();
        states.insert(TcpState::Established.as_str(), 0);
        for addr in resolved.get(p).into_iter().flatten() {
            for st in TcpState::ALL {
                let n = counts.get(*addr, st);
                if n > 0 {
                    *states.entry(st.as_str()).or_default() += n;
                }
            }
        }
        out.push(PeerSockets {
            peer: p.clone(),
            states,
        });
    }
    Some(out)
}
