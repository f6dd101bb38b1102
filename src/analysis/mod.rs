//! Leak analysis: attribute server backends to applications, compare the pool, server
//! and socket views, keep a short bounded history, fit a robust trend, and say which
//! applications look like they leak, and why.
//!
//! Owns the per-application findings that the `poolwatch_app_*` metrics and the
//! stuck-connection API show, and the little state needed to produce them (histories
//! and how long each disagreement has lasted). It is pure: [`Analyzer::tick`] takes the
//! latest pool snapshots, server sample, socket counts and the time as input and returns
//! [`Findings`]; it reads no clock, opens no socket and never blocks, so every rule is
//! tested on constructed inputs. It does not sample, store pushes, or render metrics.
//!
//! - [`attribute`]: which application each backend belongs to ([`AppKey`]).
//! - [`compare`]: one tick's view counts and disagreements per application.
//! - [`evidence`]: the stuck connections, their connection-seconds and their rate.
//! - [`history`]: the bounded series.
//! - [`trend`]: Theil-Sen growth, the release test, time to exhaustion.
//! - [`stuck`]: the oldest stuck backends per application.
//!
//! # When a leak is suspected
//!
//! When any [`Reason`] holds (`docs/detection.md` has the reasoning and the numbers):
//!
//! - **Stuck connections** ([`Reason::IdleInUse`], [`Reason::Unaccounted`],
//!   [`Reason::IdleInTransaction`], rule in [`evidence`]): connections the application
//!   holds without using them (checked out and idle on the server since before its latest
//!   push, idle in no pool, idle in a transaction) add up to `stuck_connection_seconds`
//!   beyond their floors. A sequential test: the more are stuck, the sooner it decides, and
//!   the server's own timestamps are its history, so it needs no window.
//! - **A disagreement held** for `disagreement_hold_seconds` without a single tick at
//!   zero: connections in no pool for certain ([`Reason::Unaccounted`]: opened before the
//!   latest push beyond the pools' open count, or, without a server view, sockets above
//!   it), and backends past the pool's max lifetime ([`Reason::OverMaxLifetime`]). These
//!   see what the test cannot judge: a pool that lost a few connections among many idle
//!   ones of its own, a connection checked out and kept busy past its lifetime.
//! - **Steady growth** ([`Reason::SteadyGrowth`], rule in [`trend::assess`]), only where
//!   the pool and server views cannot be compared (an application that pushes nothing, a
//!   sidecar without a server view): the connection count has a Theil-Sen slope of at least
//!   `min_growth_per_second` over the last `growth_span_seconds` and over each half of that
//!   span, has risen at least `min_rise_connections` above the window's low, and has not
//!   come back down within `window_seconds`. Growth is weak evidence (a batch fan-out
//!   climbs like a leak), so where stuck connections can be judged it decides nothing.
//!
//! How urgent: the growth used for the time to exhaustion is the count's trend, or, once
//! the stuck connections are conclusive, the rate they accumulated at (known from the
//! first sample that decides), whichever is faster.
//!
//! Pool exhaustion (`in_use >= max_open` with waits climbing) is reported, but is not by
//! itself a leak: a pool at its cap under load is an overloaded pool. A leak that pins the
//! pool at its cap shows as connections checked out but idle.
//!
//! # Memory
//!
//! Per tracked application: one [`history::History`] of [`history::AppPoint`] (40 bytes)
//! with `max_history_points + 1` slots, allocated once, plus the key's strings and about
//! 100 bytes of state: 4,840 bytes of history at the default 120 points. Per pool: 24-byte
//! [`history::PoolPoint`]s, 2,904 bytes at the default. [`Analyzer::history_bytes`] gives
//! the figures for a configuration. Applications and pools not seen for
//! `evict_after_seconds` are dropped; in central mode the groups of unmatched
//! `application_name`s are capped by `max_other_apps`, and pushed pools by the store's own
//! cap, so the number of tracked keys is bounded too.

pub mod attribute;
pub mod compare;
pub mod evidence;
pub mod history;
pub mod limits;
pub mod stuck;
pub mod trend;

use std::collections::{BTreeMap, BTreeSet};

use crate::ingest::PoolKey;
use crate::sampler::Sample;
use crate::store::Entry;
use crate::Mode;

pub use attribute::{AppKey, Attribution};
pub use compare::AppView;
pub use limits::ServerLimit;
pub use stuck::{StuckBackend, StuckReason};

use history::{count32, AppPoint, History, PoolPoint};

/// Thresholds and bounds of the analysis. Every duration is in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct AnalysisConfig {
    /// Floor of a connection checked out and idle: idle in `ClientRead` since before the
    /// application's latest push for longer than this, it is stuck (see [`evidence`]).
    /// Default 10.
    pub idle_in_use_seconds: f64,
    /// Floor of a connection idle in `ClientRead` that no pool accounts for. The push
    /// expiry: a replica that has not pushed for this long is not pushing. Default 60.
    pub unaccounted_after_seconds: f64,
    /// Floor of a connection `idle in transaction`. Default 30.
    pub idle_in_transaction_seconds: f64,
    /// Stuck connection-seconds beyond the floors at which a leak is called: one stuck
    /// connection after this long past its floor, ten after a tenth of it. Default 300.
    pub stuck_connection_seconds: f64,
    /// Slack added to a pool's `max_lifetime_seconds` before a backend counts as over its
    /// lifetime (pools close expired connections on their next check, not instantly).
    /// Default 60.
    pub lifetime_grace_seconds: f64,
    /// How far back the history reaches, and the memory of the release test: a fall
    /// within this window keeps growth from being called a leak. Default 900.
    pub window_seconds: f64,
    /// The span the growth rate is fitted over; a climb must last about this long to be
    /// a leak. Capped at `window_seconds`. Default 300.
    pub growth_span_seconds: f64,
    /// Fewest points in the growth span for a growth rate (and so a leak by growth).
    /// Default 10.
    pub min_points: usize,
    /// Least growth, connections per second, that counts as steady growth. Default
    /// 0.005 (three connections in ten minutes).
    pub min_growth_per_second: f64,
    /// Least rise above the window's low for steady growth. Default 3.
    pub min_rise_connections: u64,
    /// A fall from an earlier high larger than this fraction of the window's range (and
    /// at least one connection) is a release: growth that released is not a leak.
    /// Between 0 and 1. Default 0.5.
    pub release_fraction: f64,
    /// How long a disagreement the stuck-connection test cannot judge (connections past
    /// the pool's lifetime; unaccounted sockets without a server view) must last, every
    /// tick above zero, to be a reason. Default 300.
    pub disagreement_hold_seconds: f64,
    /// A pool at its cap is exhausted when its `wait_count` rose within this long (or
    /// callers are waiting now). Default 60.
    pub wait_lookback_seconds: f64,
    /// Most points kept per application and per pool; at least 2. Default 120.
    pub max_history_points: usize,
    /// Applications and pools not seen for this long are forgotten. Default 900.
    pub evict_after_seconds: f64,
    /// Central mode: most groups of backends whose `application_name` matches no pushed
    /// application; the rest are summed under `__other__`. Default 100.
    pub max_other_apps: usize,
    /// Most stuck backends listed per application. Default 10.
    pub top_n: usize,
}

impl Default for AnalysisConfig {
    fn default() -> AnalysisConfig {
        AnalysisConfig {
            idle_in_use_seconds: 10.0,
            unaccounted_after_seconds: 60.0,
            idle_in_transaction_seconds: 30.0,
            stuck_connection_seconds: 300.0,
            lifetime_grace_seconds: 60.0,
            window_seconds: 900.0,
            growth_span_seconds: 300.0,
            min_points: 10,
            min_growth_per_second: 0.005,
            min_rise_connections: 3,
            release_fraction: 0.5,
            disagreement_hold_seconds: 300.0,
            wait_lookback_seconds: 60.0,
            max_history_points: 120,
            evict_after_seconds: 900.0,
            max_other_apps: 100,
            top_n: 10,
        }
    }
}

/// A setting of [`AnalysisConfig`] that cannot work.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("analysis.{field}: {problem}")]
pub struct AnalysisConfigError {
    /// The field's name.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl AnalysisConfig {
    /// Checks ranges and relations between the settings.
    pub fn validate(&self) -> Result<(), AnalysisConfigError> {
        let err = |field: &'static str, problem: &str| {
            Err(AnalysisConfigError {
                field,
                problem: problem.to_string(),
            })
        };
        let durations = [
            ("idle_in_use_seconds", self.idle_in_use_seconds),
            ("unaccounted_after_seconds", self.unaccounted_after_seconds),
            (
                "idle_in_transaction_seconds",
                self.idle_in_transaction_seconds,
            ),
            ("lifetime_grace_seconds", self.lifetime_grace_seconds),
            ("disagreement_hold_seconds", self.disagreement_hold_seconds),
            ("wait_lookback_seconds", self.wait_lookback_seconds),
        ];
        for (field, v) in durations {
            if !(v.is_finite() && v >= 0.0) {
                return err(field, "must be a number of seconds, zero or more");
            }
        }
        for (field, v) in [
            ("window_seconds", self.window_seconds),
            ("growth_span_seconds", self.growth_span_seconds),
            ("evict_after_seconds", self.evict_after_seconds),
            ("stuck_connection_seconds", self.stuck_connection_seconds),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return err(field, "must be a number of seconds above zero");
            }
        }
        if !(self.min_growth_per_second.is_finite() && self.min_growth_per_second > 0.0) {
            return err("min_growth_per_second", "must be above zero");
        }
        if !(0.0..=1.0).contains(&self.release_fraction) {
            return err("release_fraction", "must be between 0 and 1");
        }
        if self.min_points < 2 {
            return err("min_points", "must be at least 2");
        }
        if !(2..=10_000).contains(&self.max_history_points) {
            return err("max_history_points", "must be between 2 and 10000");
        }
        Ok(())
    }
}

/// Why a leak is suspected. [`Reason::as_str`] gives fixed strings for APIs and labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// The connection count climbs steadily and has not come back down.
    SteadyGrowth,
    /// Stuck connections in no pool (or, without a server view, sockets above the
    /// pools' open count, held).
    Unaccounted,
    /// Stuck connections checked out of the pool and idle on the server.
    IdleInUse,
    /// Stuck connections idle in an open transaction.
    IdleInTransaction,
    /// Backends older than the pool's max lifetime plus grace, held.
    OverMaxLifetime,
}

impl Reason {
    /// Every reason, in order.
    pub const ALL: [Reason; 5] = [
        Reason::SteadyGrowth,
        Reason::Unaccounted,
        Reason::IdleInUse,
        Reason::IdleInTransaction,
        Reason::OverMaxLifetime,
    ];

    /// A fixed string for APIs, logs and labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SteadyGrowth => "steady_growth",
            Reason::Unaccounted => "unaccounted_connections",
            Reason::IdleInUse => "idle_in_use",
            Reason::IdleInTransaction => "idle_in_transaction",
            Reason::OverMaxLifetime => "over_max_lifetime",
        }
    }
}

/// Everything one tick looks at. Borrowed, so a tick copies nothing it does not keep.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The time of the tick, Unix seconds.
    pub now_unix: f64,
    /// Sidecar (the view is this pod's) or central (per application).
    pub mode: Mode,
    /// This poolwatch's instance (the pod name in sidecar mode).
    pub instance: &'a str,
    /// This pod's IP (`POD_IP`), which filters the server view in sidecar mode.
    pub pod_ip: Option<&'a str>,
    /// The live pool snapshots, as [`crate::store::Store::snapshot`] returns them.
    pub pools: &'a [(PoolKey, Entry)],
    /// The latest server sample, `None` while the database is down or not configured.
    pub server: Option<&'a Sample>,
    /// Established sockets per application key, from the socket view (sidecar mode).
    pub sockets: &'a BTreeMap<AppKey, u64>,
}

/// One pool's state at the tick.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolFinding {
    /// Which pool.
    pub key: PoolKey,
    /// `in_use >= max_open` (cap known) and callers waiting now or `wait_count` rose
    /// within `wait_lookback_seconds`.
    pub exhausted: bool,
    /// Rise of `wait_count` within `wait_lookback_seconds` (a reset counts from zero);
    /// `None` until two observations exist or when the pool reports no `wait_count`.
    pub wait_count_increase: Option<u64>,
}

/// One application's findings: every number the `poolwatch_app_*` metrics need.
#[derive(Clone, Debug, PartialEq)]
pub struct AppFinding {
    /// Backends attributed to the application; `None` without a usable server view.
    pub server_connections: Option<u64>,
    /// Sockets from the socket view, when given.
    pub socket_connections: Option<u64>,
    /// Sum of the pools' `open`; `None` when the application pushes no pool.
    pub pool_open_connections: Option<u64>,
    /// Sum of the pools' `in_use`, when known.
    pub pool_in_use_connections: Option<u64>,
    /// Sum of the pools' `max_open`, when every pool has a cap.
    pub pool_max_open_connections: Option<u64>,
    /// The connection count the trend follows: the largest of the views.
    pub connections: u64,
    /// Server or socket connections no pool accounts for.
    pub unaccounted: Option<u64>,
    /// Stuck connections checked out of the pool and idle on the server past
    /// `idle_in_use_seconds`; `None` unless the pool and server views can be compared.
    pub idle_in_use: Option<u64>,
    /// Stuck connections of every kind past their floors (see [`evidence`]); `None`
    /// without a server view.
    pub stuck_connections: Option<u64>,
    /// Stuck connection-seconds beyond the floors, the leak test's statistic; `None`
    /// without a server view.
    pub stuck_connection_seconds: Option<f64>,
    /// Backends older than their pool's max lifetime plus grace.
    pub over_max_lifetime: Option<u64>,
    /// Some pool of the application is exhausted.
    pub exhausted: bool,
    /// Growth of the application's connections, per second: the Theil-Sen trend of
    /// `connections` over `growth_span_seconds` (once `min_points` points exist there),
    /// or, once the stuck connections are conclusive, the rate they accumulated at when
    /// that is faster. `None` while neither is known.
    pub growth_per_second: Option<f64>,
    /// Seconds until the pools' caps are reached at their current growth (the sooner of
    /// the `open` and `in_use` trends); `None` without a cap or without growth.
    pub eta_pool_seconds: Option<f64>,
    /// Seconds until the first server-side limit that applies to the application is
    /// reached at its growth: the server's usable connections (`max_connections` minus
    /// reserved), its role's connection limit or its database's (see [`limits`]);
    /// `None` without growth or limits.
    pub eta_server_seconds: Option<f64>,
    /// Which limit [`AppFinding::eta_server_seconds`] is for.
    pub eta_server_limit: ServerLimit,
    /// Any [`Reason`] holds.
    pub leak_suspected: bool,
    /// Why a leak is suspected, in [`Reason`] order; empty when not.
    pub reasons: Vec<Reason>,
    /// The application's pools.
    pub pools: Vec<PoolFinding>,
}

/// The result of one tick.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Findings {
    /// The tick's time, Unix seconds.
    pub at_unix: f64,
    /// Per application (and instance in sidecar mode).
    pub apps: BTreeMap<AppKey, AppFinding>,
    /// The oldest stuck backends per application, at most `top_n` each.
    pub stuck: BTreeMap<AppKey, Vec<StuckBackend>>,
    /// Client backends on the server, poolwatch's own sessions included.
    pub server_connections_total: Option<u64>,
    /// `max_connections` minus the reserved slots.
    pub server_usable_connections: Option<u64>,
    /// Applications with history after this tick.
    pub tracked_apps: usize,
    /// Pools with history after this tick.
    pub tracked_pools: usize,
}

/// State kept per application.
#[derive(Clone, Debug)]
struct AppState {
    /// The bounded series of observations.
    history: History<AppPoint>,
    /// Last tick the application was seen, for eviction.
    last_seen: f64,
    /// Since when each held disagreement has been above zero at every tick: unaccounted
    /// sockets (without a server view), over max lifetime.
    since: [Option<f64>; 2],
}

/// State kept per pool.
#[derive(Clone, Debug)]
struct PoolState {
    /// The bounded series of `wait_count`.
    history: History<PoolPoint>,
    /// Last tick the pool was seen, for eviction.
    last_seen: f64,
}

/// The analysis and its state. One per poolwatch; call [`Analyzer::tick`] after each
/// server sample (or on a timer when there is no database).
#[derive(Clone, Debug)]
pub struct Analyzer {
    /// Thresholds and bounds.
    cfg: AnalysisConfig,
    /// Per application.
    apps: BTreeMap<AppKey, AppState>,
    /// Per pool.
    pools: BTreeMap<PoolKey, PoolState>,
    /// Reused buffer for pairwise slopes.
    scratch: Vec<f64>,
    /// Reused buffer for a series being fitted.
    series: Vec<(f64, f64)>,
}

/// Updates a disagreement's start and returns how long it has lasted.
fn hold(since: &mut Option<f64>, value: Option<u64>, now: f64) -> Option<f64> {
    match value {
        Some(n) if n > 0 => Some(now - *since.get_or_insert(now)),
        _ => {
            *since = None;
            None
        }
    }
}

/// Theil-Sen slope of `f` over the points of the last `span` seconds where it is known.
fn fit(
    h: &History<AppPoint>,
    now: f64,
    cfg: &AnalysisConfig,
    f: impl Fn(&AppPoint) -> Option<u32>,
    buf: &mut Vec<(f64, f64)>,
    scratch: &mut Vec<f64>,
) -> Option<f64> {
    buf.clear();
    buf.extend(
        h.iter()
            .filter(|p| p.t >= now - cfg.growth_span_seconds)
            .filter_map(|p| f(p).map(|v| (p.t, v as f64))),
    );
    if buf.len() < cfg.min_points.max(2) {
        return None;
    }
    trend::theil_sen(buf, scratch)
}

/// The rise of a counter since the oldest point at or after `from` (the newest excluded).
fn counter_increase(h: &History<PoolPoint>, from: f64) -> Option<u64> {
    let now = h.last()?.wait_count?;
    let n = h.len();
    let base = h
        .iter()
        .take(n.saturating_sub(1))
        .find(|p| p.t >= from)?
        .wait_count?;
    // A counter below its earlier value was reset: everything since counts.
    Some(if now >= base { now - base } else { now })
}

impl Analyzer {
    /// An analyzer with no history. `cfg` should have passed
    /// [`AnalysisConfig::validate`]; out-of-range bounds are clamped, not trusted.
    pub fn new(mut cfg: AnalysisConfig) -> Analyzer {
        cfg.growth_span_seconds = cfg.growth_span_seconds.min(cfg.window_seconds);
        cfg.min_points = cfg.min_points.max(2);
        cfg.max_history_points = cfg.max_history_points.clamp(2, 10_000);
        Analyzer {
            cfg,
            apps: BTreeMap::new(),
            pools: BTreeMap::new(),
            scratch: Vec::new(),
            series: Vec::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &AnalysisConfig {
        &self.cfg
    }

    /// Heap bytes of history per tracked application and per tracked pool, at most
    /// (key strings and map nodes not included).
    pub fn history_bytes(&self) -> (usize, usize) {
        (
            History::<AppPoint>::heap_bytes(self.cfg.max_history_points),
            History::<PoolPoint>::heap_bytes(self.cfg.max_history_points),
        )
    }

    /// Analyzes one tick: attributes backends, compares the views, records history,
    /// fits trends, decides on leaks, lists stuck backends, and forgets what has not been
    /// seen for `evict_after_seconds`.
    pub fn tick(&mut self, inp: &Inputs) -> Findings {
        let now = inp.now_unix;
        let cfg = &self.cfg;
        let mut out = Findings {
            at_unix: now,
            ..Default::default()
        };

        // The pools of each application.
        let mut pools_by_app: BTreeMap<AppKey, Vec<&(PoolKey, Entry)>> = BTreeMap::new();
        for p in inp.pools {
            pools_by_app
                .entry(attribute::app_key_of_pool(inp.mode, &p.0))
                .or_default()
                .push(p);
        }

        // The server view, attributed when it can be.
        if let Some(s) = inp.server {
            out.server_connections_total = Some(s.backends.len() as u64 + s.own_sessions.max(1));
            let usable = s.limits.usable();
            if s.limits.max_connections > 0 && usable >= 0 {
                out.server_usable_connections = Some(usable as u64);
            }
        }
        let attributed = inp
            .server
            .filter(|_| attribute::server_view_usable(inp.mode, inp.pod_ip))
            .map(|s| {
                let a = attribute::attribute(
                    inp.mode,
                    inp.pod_ip,
                    inp.instance,
                    inp.pools,
                    &s.backends,
                    cfg.max_other_apps,
                );
                (s, a)
            });

        // Pools: wait-counter history and exhaustion.
        let mut pool_findings: BTreeMap<AppKey, Vec<PoolFinding>> = BTreeMap::new();
        for (key, entry) in inp.pools {
            let st = self.pools.entry(key.clone()).or_insert_with(|| PoolState {
                history: History::new(cfg.max_history_points, cfg.window_seconds),
                last_seen: now,
            });
            st.last_seen = now;
            let s = &entry.snapshot;
            st.history.push(PoolPoint {
                t: now,
                wait_count: s.wait_count,
            });
            let increase = counter_increase(&st.history, now - cfg.wait_lookback_seconds);
            let in_use = s
                .in_use
                .or_else(|| s.idle.map(|i| s.open.saturating_sub(i)));
            let at_cap = matches!((s.max_open, in_use), (Some(m), Some(u)) if m > 0 && u >= m);
            let waits = increase.is_some_and(|n| n > 0) || s.waiting.is_some_and(|n| n > 0);
            pool_findings
                .entry(attribute::app_key_of_pool(inp.mode, key))
                .or_default()
                .push(PoolFinding {
                    key: key.clone(),
                    exhausted: at_cap && waits,
                    wait_count_increase: increase,
                });
        }

        // Per application whose views were compared: how many idle backends are stuck.
        let mut idle_stuck: BTreeMap<AppKey, usize> = BTreeMap::new();

        // Every application seen in any view.
        let mut keys: BTreeSet<&AppKey> = pools_by_app.keys().collect();
        if let Some((_, a)) = &attributed {
            keys.extend(a.backends.keys());
        }
        keys.extend(inp.sockets.keys());

        for key in keys {
            let app_pools: &[&(PoolKey, Entry)] =
                pools_by_app.get(key).map(Vec::as_slice).unwrap_or(&[]);
            let backends = attributed.as_ref().map(|(s, a)| {
                a.backends
                    .get(key)
                    .map(|idx| idx.iter().map(|&i| &s.backends[i]).collect::<Vec<_>>())
                    .unwrap_or_default()
            });
            let view = compare::compare(
                cfg,
                app_pools,
                backends.as_deref(),
                inp.sockets.get(key).copied(),
            );
            let connections = view.connections().unwrap_or(0);

            let st = self.apps.entry(key.clone()).or_insert_with(|| AppState {
                history: History::new(cfg.max_history_points, cfg.window_seconds),
                last_seen: now,
                since: [None; 2],
            });
            st.last_seen = now;
            st.history.push(AppPoint {
                t: now,
                connections: count32(connections),
                server: view.server.map(count32),
                pool_open: view.pool_open.map(count32),
                pool_in_use: view.pool_in_use.map(count32),
            });

            let evidence = match (&attributed, backends.as_deref()) {
                (Some((s, _)), Some(bs)) => Some(evidence::assess(
                    cfg,
                    app_pools,
                    bs,
                    s.at_unix,
                    &mut self.series,
                )),
                _ => None,
            };
            let conclusive = evidence
                .as_ref()
                .filter(|e| e.stuck() > 0 && e.connection_seconds >= cfg.stuck_connection_seconds);

            let mut reasons = BTreeSet::new();
            for kind in conclusive.iter().flat_map(|e| e.kinds()) {
                reasons.insert(match kind {
                    evidence::Kind::IdleInUse => Reason::IdleInUse,
                    evidence::Kind::Unaccounted => Reason::Unaccounted,
                    evidence::Kind::IdleInTransaction => Reason::IdleInTransaction,
                });
            }
            self.series.clear();
            self.series
                .extend(st.history.iter().map(|p| (p.t, f64::from(p.connections))));
            let growth = trend::assess(&self.series, cfg, &mut self.scratch);
            // Growth of the count is weak evidence (a fan-out climbs like a leak): it
            // counts only where the stuck connections cannot be judged.
            let compared = evidence.as_ref().is_some_and(|e| e.compared);
            if growth.steady && !compared {
                reasons.insert(Reason::SteadyGrowth);
            }
            // Connections in no pool for certain, held: the stuck-connection test may
            // take them for the pool's idle ones. With a server view only those opened
            // before the latest push count (a stale push is not a disagreement).
            let in_no_pool = match &evidence {
                Some(e) if e.compared => Some(e.in_no_pool),
                _ => view.unaccounted.filter(|_| view.server.is_none()),
            };
            let held = [
                (Reason::Unaccounted, in_no_pool),
                (Reason::OverMaxLifetime, view.over_max_lifetime),
            ];
            for (i, (reason, value)) in held.into_iter().enumerate() {
                if hold(&mut st.since[i], value, now)
                    .is_some_and(|d| d >= cfg.disagreement_hold_seconds)
                {
                    reasons.insert(reason);
                }
            }
            let reasons: Vec<Reason> = reasons.into_iter().collect();

            // How fast: the count's trend, or the stuck connections' own rate once they
            // are conclusive, whichever is faster.
            let stuck_rate = conclusive.and_then(|e| e.rate_per_second);
            let growth_per_second = match (growth.per_second, stuck_rate) {
                (Some(g), Some(r)) => Some(g.max(r)),
                (g, r) => g.or(r),
            };
            let eta_pool_seconds = view.pool_max_open.and_then(|max| {
                let by_open = view.pool_open.and_then(|open| {
                    let g = fit(
                        &st.history,
                        now,
                        cfg,
                        |p| p.pool_open,
                        &mut self.series,
                        &mut self.scratch,
                    );
                    trend::eta_seconds(max as f64 - open as f64, g)
                });
                let by_in_use = view.pool_in_use.and_then(|u| {
                    let g = fit(
                        &st.history,
                        now,
                        cfg,
                        |p| p.pool_in_use,
                        &mut self.series,
                        &mut self.scratch,
                    );
                    let headroom = max as f64 - u as f64;
                    [
                        trend::eta_seconds(headroom, g),
                        trend::eta_seconds(headroom, stuck_rate),
                    ]
                    .into_iter()
                    .flatten()
                    .reduce(f64::min)
                });
                [by_open, by_in_use].into_iter().flatten().reduce(f64::min)
            });
            let nearest = inp.server.and_then(|s| {
                let server = out
                    .server_usable_connections
                    .zip(out.server_connections_total);
                limits::nearest(
                    server,
                    &s.connection_limits,
                    backends.as_deref().unwrap_or(&[]),
                )
            });
            let eta_server_seconds =
                nearest.and_then(|h| trend::eta_seconds(h.connections as f64, growth_per_second));
            let eta_server_limit = nearest.map_or(ServerLimit::Server, |h| h.limit);
            if let Some(e) = evidence.as_ref().filter(|e| e.compared) {
                idle_stuck.insert(key.clone(), (e.idle_in_use + e.unaccounted) as usize);
            }

            let pools = pool_findings.remove(key).unwrap_or_default();
            out.apps.insert(
                key.clone(),
                AppFinding {
                    server_connections: view.server,
                    socket_connections: view.socket,
                    pool_open_connections: view.pool_open,
                    pool_in_use_connections: view.pool_in_use,
                    pool_max_open_connections: view.pool_max_open,
                    connections,
                    unaccounted: view.unaccounted,
                    idle_in_use: evidence
                        .as_ref()
                        .filter(|e| e.compared)
                        .map(|e| e.idle_in_use),
                    stuck_connections: evidence.as_ref().map(|e| e.stuck()),
                    stuck_connection_seconds: evidence.as_ref().map(|e| e.connection_seconds),
                    over_max_lifetime: view.over_max_lifetime,
                    exhausted: pools.iter().any(|p| p.exhausted),
                    growth_per_second,
                    eta_pool_seconds,
                    eta_server_seconds,
                    eta_server_limit,
                    leak_suspected: !reasons.is_empty(),
                    reasons,
                    pools,
                },
            );
        }

        if let Some((s, a)) = &attributed {
            out.stuck = stuck::stuck_backends(cfg, &s.backends, a, &pools_by_app, &idle_stuck);
        }

        // Not seen this tick: a disagreement is no longer continuous; long gone: forget.
        let evict = cfg.evict_after_seconds;
        self.apps.retain(|_, st| {
            if st.last_seen < now {
                st.since = [None; 2];
            }
            now - st.last_seen <= evict
        });
        self.pools.retain(|_, st| now - st.last_seen <= evict);
        out.tracked_apps = self.apps.len();
        out.tracked_pools = self.pools.len();
        out
    }
}

#[cfg(test)]
mod tests;
