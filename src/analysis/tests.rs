//! Scenario tests: the leaking and healthy shapes of `docs/detection.md` as constructed
//! worlds, ticked through [`Analyzer`] at the default configuration and the default
//! 15-second interval. The application pushes every 15 seconds, one second after each
//! tick, so every tick sees a pool snapshot 14 seconds old (the least favourable phase).
//! Each case states the tick by which the verdict must come and the reasons it carries,
//! or that no verdict ever comes.
//!
//! The same runs produce `alerts/tests/shapes.yaml`: what poolwatch exports for each
//! shape, scraped every 30 seconds, and the page each must (or must not) cause under the
//! shipped rules, checked by `promtool test rules` (tests/alerts.rs). The page targets are
//! the issue's, not read off the code. `UPDATE_GOLDEN=1 cargo test --lib shapes` rewrites
//! the file after a change of the analysis; review the diff.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use super::*;
use crate::ingest::PoolSnapshot;
use crate::sampler::activity::Backend;
use crate::sampler::settings::Limits;

/// Unix time of the first tick.
const T0: f64 = 1_700_000_000.0;
/// Seconds between ticks (the default `database.interval_seconds`).
const TICK: f64 = 15.0;
/// Seconds between pushes, and the first push's offset from the first tick.
const PUSH_EVERY: f64 = 15.0;
const PUSH_PHASE: f64 = 1.0;
/// Seconds between scrapes and rule evaluations in the promtool file.
const SCRAPE: f64 = 30.0;
/// When the leaks start: two minutes of healthy history first.
const LEAK_AT: f64 = 120.0;
const POD: &str = "10.0.0.7";
const OTHER_POD: &str = "10.0.0.8";

/// What the world looks like at one moment.
#[derive(Default)]
struct World {
    pools: Vec<(PoolKey, PoolSnapshot)>,
    backends: Vec<Backend>,
    sockets: Vec<(AppKey, u64)>,
}

/// A world of one pool and the backends the server shows.
fn one_pool(key: PoolKey, snapshot: PoolSnapshot, backends: Vec<Backend>) -> World {
    World {
        pools: vec![(key, snapshot)],
        backends,
        ..Default::default()
    }
}

fn key(app: &str, pool: &str, instance: &str) -> PoolKey {
    PoolKey {
        app: app.into(),
        pool: pool.into(),
        instance: instance.into(),
    }
}

/// A pool with `open`, `in_use` and the rest idle.
fn snap(max_open: Option<u64>, open: u64, in_use: u64) -> PoolSnapshot {
    PoolSnapshot {
        max_open,
        open,
        in_use: Some(in_use),
        idle: Some(open.saturating_sub(in_use)),
        waiting: Some(0),
        wait_count: Some(0),
        ..Default::default()
    }
}

fn backend(
    pid: usize,
    name: &str,
    addr: &str,
    state: &str,
    wait: &str,
    state_age: f64,
    age: f64,
) -> Backend {
    Backend {
        pid: pid as i32,
        datname: "app".into(),
        usename: "app".into(),
        application_name: name.into(),
        client_addr: addr.into(),
        state: state.into(),
        wait_event_type: if wait.is_empty() { "" } else { "Client" }.into(),
        wait_event: wait.into(),
        backend_age: Some(age),
        xact_age: state
            .starts_with("idle in transaction")
            .then_some(state_age),
        state_age: Some(state_age),
        ..Default::default()
    }
}

/// A backend waiting for its client (`ClientRead`): idle, or idle in a transaction.
fn client_read(
    pid: usize,
    name: &str,
    addr: &str,
    state: &str,
    state_age: f64,
    age: f64,
) -> Backend {
    backend(pid, name, addr, state, "ClientRead", state_age, age)
}

/// `n` backends of a healthy pool at `t`, open since before the first tick: `busy`
/// running a query, the rest idle in the pool since a few seconds (pids from `pid0`).
fn healthy(name: &str, addr: &str, n: u64, busy: u64, pid0: usize, t: f64) -> Vec<Backend> {
    healthy_opened(name, addr, n, busy, pid0, t, |_| -40.0)
}

/// The same with connection `i` opened at `opened(i)`.
fn healthy_opened(
    name: &str,
    addr: &str,
    n: u64,
    busy: u64,
    pid0: usize,
    t: f64,
    opened: impl Fn(u64) -> f64,
) -> Vec<Backend> {
    (0..n)
        .map(|i| {
            let pid = pid0 + i as usize;
            let age = (t - opened(i)).max(0.1);
            // Ages vary with time and connection, as a busy pool's do.
            let jitter = ((t / TICK) as u64 + i) % 7;
            let (state, wait, state_age) = if i < busy {
                ("active", "", 0.05 * jitter as f64)
            } else {
                ("idle", "ClientRead", 0.5 + jitter as f64)
            };
            backend(pid, name, addr, state, wait, state_age.min(age), age)
        })
        .collect()
}

/// A connection that became stuck at `since`: idle in `ClientRead` ever since.
fn forgotten(pid: usize, name: &str, addr: &str, t: f64, since: f64) -> Backend {
    backend(
        pid,
        name,
        addr,
        "idle",
        "ClientRead",
        t - since,
        t - since + 0.2,
    )
}

/// Backends checked out and forgotten since each of the times in `since` (pids from 1000).
fn forgotten_since(name: &str, addr: &str, t: f64, since: &[f64]) -> Vec<Backend> {
    since
        .iter()
        .enumerate()
        .map(|(i, &s)| forgotten(1000 + i, name, addr, t, s))
        .collect()
}

/// Connections leaked at `every` seconds from `LEAK_AT` on, at most `cap`, by `t`: the
/// times each became stuck.
fn leaked(t: f64, every: f64, cap: usize) -> Vec<f64> {
    if t < LEAK_AT {
        return vec![];
    }
    let n = ((t - LEAK_AT) / every).floor() as usize + 1;
    (0..n.min(cap))
        .map(|i| LEAK_AT + i as f64 * every)
        .collect()
}

// ---- The leaks ----

/// Incident 1: each message checks a connection out and drops the rows, one a second;
/// `ConnMaxLifetime(30 s)`, an unlimited pool, a server of 400.
fn rows_never_closed_fast(t: f64) -> World {
    rows_never_closed(t, 1.0, usize::MAX, None)
}

/// The same, pinned at `SetMaxOpenConns(25)`: callers wait.
fn rows_never_closed_capped(t: f64) -> World {
    rows_never_closed(t, 1.0, 24, Some(25))
}

/// The same at one message a minute.
fn rows_never_closed_slow(t: f64) -> World {
    rows_never_closed(t, 60.0, usize::MAX, None)
}

fn rows_never_closed(t: f64, every: f64, cap: usize, max_open: Option<u64>) -> World {
    let stuck = leaked(t, every, cap);
    let k = stuck.len() as u64;
    let open = max_open.map_or(3 + k, |m| (3 + k).min(m));
    let mut s = snap(max_open, open, 1 + k);
    s.max_lifetime_seconds = Some(30.0);
    if max_open.is_some_and(|m| 1 + k >= m) {
        let pinned_since = LEAK_AT + cap as f64 * every;
        s.waiting = Some(3);
        s.wait_count = Some(((t - pinned_since) * 2.0).max(0.0) as u64);
    }
    let mut backends = healthy("worker", "10.1.0.1", open - k, 1, 1, t);
    backends.extend(forgotten_since("worker", "10.1.0.1", t, &stuck));
    one_pool(key("worker", "main", "worker-1"), s, backends)
}

/// Connections in no pool, two a minute: driver connections opened beside the pool, or a
/// pool opened per request (each stray pool keeps its one connection idle). Both look
/// the same to the server: idle in `ClientRead`, under the application's name.
fn beside_the_pool(t: f64) -> World {
    let s = snap(Some(20), 3, 1);
    let mut backends = healthy("api", "10.1.0.2", 3, 1, 1, t);
    backends.extend(forgotten_since(
        "api",
        "10.1.0.2",
        t,
        &leaked(t, 30.0, usize::MAX),
    ));
    one_pool(key("api", "main", "api-1"), s, backends)
}

/// Transactions begun and never finished, two a minute: checked out, idle in transaction.
fn open_transactions(t: f64) -> World {
    let stuck = leaked(t, 30.0, usize::MAX);
    let k = stuck.len() as u64;
    let s = snap(Some(50), 3 + k, 1 + k);
    let mut backends = healthy("billing", "10.1.0.4", 3, 1, 1, t);
    backends.extend(stuck.iter().enumerate().map(|(i, &since)| {
        client_read(
            1000 + i,
            "billing",
            "10.1.0.4",
            "idle in transaction",
            t - since,
            t - since + 0.1,
        )
    }));
    one_pool(key("billing", "main", "billing-1"), s, backends)
}

/// Incident 2 in a sidecar: the pool lost track of two connections at `LEAK_AT`; the
/// server and the kernel still hold them. Another replica's backends carry the same name
/// and must not count.
fn pool_forgets(t: f64) -> World {
    let lost = if t >= LEAK_AT { 2 } else { 0 };
    let mut backends = healthy("api", POD, 10, 2, 1, t);
    backends.extend((0..lost).map(|i| forgotten(50 + i, "api", POD, t, LEAK_AT)));
    backends.extend(healthy("api", OTHER_POD, 10, 2, 200, t));
    World {
        pools: vec![(key("api", "main", "pod-a"), snap(Some(50), 10, 2))],
        backends,
        sockets: vec![(AppKey::new("api", "pod-a"), 10 + lost as u64)],
    }
}

/// An application that pushes nothing, its idle connections climbing one per 10 s.
fn unpushed_climbing(t: f64) -> World {
    World {
        backends: leaked(t, 10.0, usize::MAX)
            .iter()
            .enumerate()
            .map(|(i, &since)| forgotten(i, "reporter", "10.1.0.3", t, since))
            .collect(),
        ..Default::default()
    }
}

// ---- The healthy shapes ----

/// Steady load: 8 of 20 connections busy, one of them between its query and closing its
/// rows (idle on the server for a moment while checked out).
fn steady(t: f64) -> World {
    let mut backends = healthy("shop", "10.1.0.5", 20, 8, 1, t);
    backends[0] = client_read(1, "shop", "10.1.0.5", "idle", 0.3, 300.0 + t);
    one_pool(
        key("shop", "main", "shop-1"),
        snap(Some(40), 20, 8),
        backends,
    )
}

/// Bursts that release: every three minutes 30 connections run queries for 20 s, then go
/// back to the pool, which keeps 2 idle and closes the rest.
fn bursts(t: f64) -> World {
    let phase = t % 180.0;
    let (open, busy) = if (60.0..80.0).contains(&phase) {
        (32, 30)
    } else {
        (4, 1)
    };
    let burst = t - phase + 60.0;
    one_pool(
        key("shop", "main", "shop-1"),
        snap(Some(50), open, busy),
        healthy_opened("shop", "10.1.0.5", open, busy, 1, t, |i| {
            if i < 4 {
                -40.0
            } else {
                burst
            }
        }),
    )
}

/// A batch fan-out: a worker added every 5 s for 7 minutes (84 at the top), each running
/// queries, then all released at once; again after a minute's rest. A sawtooth.
fn fan_out(t: f64) -> World {
    let phase = t % 480.0;
    let workers = if phase < 420.0 {
        (phase / 5.0).floor() as u64 + 1
    } else {
        0
    };
    let open = workers + 2;
    let start = t - phase;
    World {
        pools: vec![(key("etl", "main", "etl-1"), snap(None, open, workers))],
        // Worker i's connection opened when it joined; the two idle ones are the pool's.
        backends: healthy_opened("etl", "10.1.0.6", open, workers, 1, t, |i| {
            if i < workers {
                start + 5.0 * i as f64
            } else {
                -40.0
            }
        }),
        ..Default::default()
    }
}

/// A pool warming up over four minutes to 30 connections, kept idle between queries
/// (`SetMaxIdleConns(30)`), then steady.
fn warm_up(t: f64) -> World {
    let open = ((t / 8.0).floor() as u64 + 1).min(30);
    let busy = (open / 6).max(1);
    let mut backends = healthy_opened("shop", "10.1.0.5", open, busy, 1, t, |i| 8.0 * i as f64);
    // Idle connections age in the pool: the oldest are as old as the pool.
    for (i, b) in backends.iter_mut().enumerate().skip(busy as usize) {
        b.state_age = Some((t - i as f64 * 8.0).max(0.5));
    }
    one_pool(
        key("shop", "main", "shop-1"),
        snap(Some(40), open, busy),
        backends,
    )
}

/// A rolling deploy: two old replicas with 10 connections each (2 busy); at 10 minutes
/// two new ones start, open 10 connections within a minute and push for the first time
/// 20 s after starting; the old ones leave 90 s after the new ones started.
fn rolling_deploy(t: f64) -> World {
    let mut pools = vec![];
    let mut backends = vec![];
    let start = 600.0;
    for (inst, pid0, is_new) in [
        ("shop-old-1", 1, false),
        ("shop-old-2", 100, false),
        ("shop-new-1", 200, true),
        ("shop-new-2", 300, true),
    ] {
        let (present, open) = if is_new {
            (
                t >= start,
                ((t - start) / 6.0).floor().clamp(0.0, 10.0) as u64,
            )
        } else {
            (t < start + 90.0, 10)
        };
        if !present {
            continue;
        }
        let mut bs = healthy_opened("shop", "10.1.0.5", open, 2.min(open), pid0, t, |i| {
            if is_new {
                start + 6.0 * i as f64
            } else {
                -40.0
            }
        });
        if is_new {
            // New connections sit idle in the new pool since they were opened.
            for (i, b) in bs.iter_mut().enumerate().skip(2) {
                b.state_age = Some((t - start - i as f64 * 6.0).max(0.5));
            }
        }
        backends.extend(bs);
        if !is_new || t >= start + 20.0 {
            pools.push((key("shop", "main", inst), snap(Some(20), open, 2.min(open))));
        }
    }
    World {
        pools,
        backends,
        ..Default::default()
    }
}

/// Short-lived connections that are closed: each request opens its own connection
/// beside the pool, runs a query and closes it within a second.
fn short_lived(t: f64) -> World {
    let mut backends = healthy("cron", "10.1.0.8", 3, 1, 1, t);
    let n = ((t / TICK) as usize) % 4;
    backends.extend((0..n).map(|i| backend(500 + i, "cron", "10.1.0.8", "active", "", 0.1, 0.3)));
    backends.push(client_read(600, "cron", "10.1.0.8", "idle", 0.2, 0.4));
    one_pool(
        key("cron", "main", "cron-1"),
        snap(Some(10), 3, 1),
        backends,
    )
}

/// Short transactions with application work between their statements: idle in
/// transaction for a few seconds at a time.
fn short_transactions(t: f64) -> World {
    let mut backends = healthy("billing", "10.1.0.4", 6, 0, 1, t);
    for (i, b) in backends.iter_mut().enumerate().take(3) {
        *b = client_read(
            1 + i,
            "billing",
            "10.1.0.4",
            "idle in transaction",
            2.0 + i as f64,
            90.0,
        );
    }
    one_pool(
        key("billing", "main", "billing-1"),
        snap(Some(10), 6, 3),
        backends,
    )
}

/// A pool at its cap, every connection busy, callers waiting: overloaded, not leaking.
fn busy_at_max(t: f64) -> World {
    let mut s = snap(Some(20), 20, 20);
    s.wait_count = Some(500 + (t / 10.0) as u64 * 5);
    s.waiting = Some(2);
    one_pool(
        key("search", "main", "search-1"),
        s,
        healthy("search", "10.1.0.7", 20, 20, 1, t),
    )
}

/// What must happen.
enum Expect {
    /// A leak from `LEAK_AT`: suspected at every tick from at most `within_ticks` after
    /// the first leaked connection's tick on, with exactly `reasons` at the end; paged by
    /// the leak alerts within `page_seconds` of the first leak, `critical` or any severity.
    Leak {
        within_ticks: usize,
        reasons: &'static [Reason],
        page_seconds: Option<(f64, bool)>,
    },
    /// Never suspected, and no alert whose name matches `quiet` (a regular expression).
    Healthy { quiet: &'static str },
}

struct Case {
    /// Also the promtool test's name.
    name: &'static str,
    /// The application's label in the promtool file (central mode: the shape's app).
    slug: &'static str,
    mode: Mode,
    /// How long the shape runs, seconds.
    seconds: f64,
    world: fn(f64) -> World,
    /// The application the expectations are about.
    app: (&'static str, &'static str),
    max_connections: i32,
    expect: Expect,
    /// Further checks of the last tick.
    check: fn(&Findings, &AppFinding),
}

fn no_check(_: &Findings, _: &AppFinding) {}

/// One tick's record: the findings, the pools as stored, the world on the server.
struct Tick {
    t: f64,
    findings: Findings,
    pools: Vec<(PoolKey, Entry)>,
    backends: Vec<Backend>,
    limits: Limits,
}

/// Runs a case through the analyzer at the defaults.
fn run(c: &Case) -> Vec<Tick> {
    let mut a = Analyzer::new(AnalysisConfig::default());
    let received = Instant::now();
    let limits = Limits {
        max_connections: c.max_connections,
        reserved_connections: 3,
        server_time_unix: 0.0,
    };
    let ticks = (c.seconds / TICK).round() as usize + 1;
    let mut out = Vec::with_capacity(ticks);
    for i in 0..ticks {
        let t = i as f64 * TICK;
        // The pools as last pushed, with the time of that push.
        let pushed = ((t - PUSH_PHASE) / PUSH_EVERY).floor() * PUSH_EVERY + PUSH_PHASE;
        let pools: Vec<(PoolKey, Entry)> = if pushed < 0.0 {
            vec![]
        } else {
            (c.world)(pushed)
                .pools
                .into_iter()
                .map(|(k, s)| {
                    (
                        k,
                        Entry {
                            snapshot: s,
                            received,
                            received_unix: T0 + pushed,
                        },
                    )
                })
                .collect()
        };
        let w = (c.world)(t);
        let sample = Sample {
            at_unix: T0 + t,
            limits,
            backends: w.backends,
            ..Default::default()
        };
        let sockets: BTreeMap<AppKey, u64> = w.sockets.into_iter().collect();
        let findings = a.tick(&Inputs {
            now_unix: T0 + t,
            mode: c.mode,
            instance: "pod-a",
            pod_ip: Some(POD),
            pools: &pools,
            server: Some(&sample),
            sockets: &sockets,
        });
        out.push(Tick {
            t,
            findings,
            pools,
            backends: sample.backends,
            limits,
        });
    }
    out
}

fn cases() -> Vec<Case> {
    use Reason::*;
    vec![
        Case {
            name: "rows never closed, 60 a minute, a server of 400",
            slug: "rows-fast",
            mode: Mode::Central,
            seconds: 600.0,
            world: rows_never_closed_fast,
            app: ("worker", ""),
            max_connections: 400,
            expect: Expect::Leak {
                // 60 stuck connections checked out: three ticks decide.
                within_ticks: 3,
                reasons: &[IdleInUse, OverMaxLifetime],
                page_seconds: Some((120.0, true)),
            },
            check: |f, a| {
                // The push is 14 s old: the server is up to 14 connections ahead of it.
                assert!(a.unaccounted.unwrap() <= 14, "{:?}", a.unaccounted);
                let g = a.growth_per_second.unwrap();
                assert!((g - 1.0).abs() < 0.05, "one a second, got {g}");
                // 397 usable; the leak has taken them all by the end.
                assert_eq!(f.server_connections_total, Some(3 + 481 + 1));
                assert_eq!(a.eta_server_seconds, Some(0.0));
                assert_eq!(a.eta_pool_seconds, None, "unlimited pool");
            },
        },
        Case {
            name: "rows never closed, pinned at SetMaxOpenConns(25)",
            slug: "rows-capped",
            mode: Mode::Central,
            seconds: 600.0,
            world: rows_never_closed_capped,
            app: ("worker", ""),
            max_connections: 100,
            expect: Expect::Leak {
                within_ticks: 3,
                reasons: &[IdleInUse, OverMaxLifetime],
                page_seconds: Some((120.0, false)),
            },
            check: |_, a| {
                assert!(a.exhausted, "callers wait");
                assert_eq!(a.idle_in_use, Some(24));
                assert_eq!(a.eta_pool_seconds, Some(0.0), "the pool's limit is reached");
            },
        },
        Case {
            name: "rows never closed, one a minute",
            slug: "rows-slow",
            mode: Mode::Central,
            seconds: 1200.0,
            world: rows_never_closed_slow,
            app: ("worker", ""),
            max_connections: 100,
            expect: Expect::Leak {
                // The pool's two idle connections are taken to be the oldest idle
                // backends, so the first two leaked count only as the pool's: three
                // stuck connections beyond them by 4 minutes.
                within_ticks: 16,
                reasons: &[IdleInUse, OverMaxLifetime],
                page_seconds: Some((480.0, false)),
            },
            check: |_, a| {
                let g = a.growth_per_second.unwrap();
                assert!((g - 1.0 / 60.0).abs() < 0.002, "one a minute, got {g}");
            },
        },
        Case {
            name: "connections beside the pool (driver or a pool per request), two a minute",
            slug: "beside",
            mode: Mode::Central,
            seconds: 1200.0,
            world: beside_the_pool,
            app: ("api", ""),
            max_connections: 100,
            expect: Expect::Leak {
                // Stuck only past the push expiry (60 s), and the two oldest are taken for
                // the pool's two idle ones: 300 beyond the floor by 240 s.
                within_ticks: 16,
                reasons: &[Unaccounted],
                page_seconds: Some((360.0, false)),
            },
            check: |_, a| {
                assert_eq!(
                    a.idle_in_use,
                    Some(0),
                    "the stray connections are not the pool's"
                );
                assert!(a.unaccounted.unwrap() >= 30);
                assert!(a.eta_server_seconds.is_some());
            },
        },
        Case {
            name: "transactions never finished, two a minute",
            slug: "transactions",
            mode: Mode::Central,
            seconds: 1200.0,
            world: open_transactions,
            app: ("billing", ""),
            max_connections: 100,
            expect: Expect::Leak {
                within_ticks: 10,
                reasons: &[IdleInTransaction],
                page_seconds: Some((360.0, false)),
            },
            check: |f, a| {
                assert_eq!(a.idle_in_use, Some(0), "in a transaction is not idle");
                let stuck = &f.stuck[&AppKey::new("billing", "")];
                assert!(stuck
                    .iter()
                    .all(|s| s.reasons == vec![StuckReason::IdleInTransaction]));
            },
        },
        Case {
            name: "a pool that forgets two connections (sidecar)",
            slug: "forgets",
            mode: Mode::Sidecar,
            seconds: 900.0,
            world: pool_forgets,
            app: ("api", "pod-a"),
            max_connections: 100,
            expect: Expect::Leak {
                // The pool's eight idle connections could be the two old ones, so the
                // stuck-connection test cannot tell; the two connections opened before
                // the push beyond the pool's open count can: held 5 minutes.
                within_ticks: 21,
                reasons: &[Unaccounted],
                page_seconds: None,
            },
            check: |f, a| {
                assert_eq!(
                    a.server_connections,
                    Some(12),
                    "the other replica is not counted"
                );
                assert_eq!(a.socket_connections, Some(12));
                assert_eq!(a.unaccounted, Some(2));
                assert_eq!(a.growth_per_second, Some(0.0));
                assert_eq!(f.apps.len(), 1, "sidecar: nothing but this pod's app");
            },
        },
        Case {
            name: "an application that pushes nothing, climbing",
            slug: "unpushed",
            mode: Mode::Central,
            seconds: 900.0,
            world: unpushed_climbing,
            app: ("reporter", ""),
            max_connections: 200,
            expect: Expect::Leak {
                // Growth alone: about a span (5 minutes).
                within_ticks: 20,
                reasons: &[SteadyGrowth],
                page_seconds: None,
            },
            check: |_, a| {
                assert_eq!(a.pool_open_connections, None);
                assert_eq!(a.unaccounted, None, "nothing to compare against");
                assert_eq!(a.idle_in_use, None);
            },
        },
        Case {
            name: "steady load",
            slug: "steady",
            mode: Mode::Central,
            seconds: 1500.0,
            world: steady,
            app: ("shop", ""),
            max_connections: 100,
            expect: Expect::Healthy { quiet: ".*" },
            check: |_, a| {
                assert_eq!(a.stuck_connections, Some(0));
                assert_eq!(a.growth_per_second, Some(0.0));
            },
        },
        Case {
            name: "bursts that release",
            slug: "bursts",
            mode: Mode::Central,
            seconds: 1500.0,
            world: bursts,
            app: ("shop", ""),
            max_connections: 100,
            expect: Expect::Healthy { quiet: ".*" },
            check: no_check,
        },
        Case {
            name: "a batch fan-out: a worker every 5 s for 7 minutes, then all released",
            slug: "fan-out",
            mode: Mode::Central,
            seconds: 1500.0,
            world: fan_out,
            app: ("etl", ""),
            max_connections: 200,
            expect: Expect::Healthy { quiet: ".*" },
            check: no_check,
        },
        Case {
            name: "a pool warming up over four minutes",
            slug: "warm-up",
            mode: Mode::Central,
            seconds: 1500.0,
            world: warm_up,
            app: ("shop", ""),
            max_connections: 100,
            expect: Expect::Healthy { quiet: ".*" },
            check: |_, a| assert_eq!(a.eta_server_seconds, None),
        },
        Case {
            name: "a rolling deploy: new replicas 90 s before the old ones leave",
            slug: "deploy",
            mode: Mode::Central,
            seconds: 1500.0,
            world: rolling_deploy,
            app: ("shop", ""),
            max_connections: 100,
            expect: Expect::Healthy { quiet: ".*" },
            check: |_, a| assert_eq!(a.unaccounted, Some(0)),
        },
        Case {
            name: "short-lived connections that are closed",
            slug: "short-lived",
            mode: Mode::Central,
            seconds: 1500.0,
            world: short_lived,
            app: ("cron", ""),
            max_connections: 100,
            expect: Expect::Healthy { quiet: ".*" },
            check: no_check,
        },
        Case {
            name: "short transactions",
            slug: "short-transactions",
            mode: Mode::Central,
            seconds: 1500.0,
            world: short_transactions,
            app: ("billing", ""),
            max_connections: 100,
            expect: Expect::Healthy { quiet: ".*" },
            check: |_, a| assert_eq!(a.stuck_connections, Some(0)),
        },
        Case {
            name: "a busy pool at its cap with callers waiting",
            slug: "busy",
            mode: Mode::Central,
            seconds: 900.0,
            world: busy_at_max,
            app: ("search", ""),
            max_connections: 100,
            // PoolwatchPoolExhausted is right to fire: the pool is overloaded.
            expect: Expect::Healthy {
                quiet: "PoolwatchConnection.*",
            },
            check: |_, a| {
                assert!(a.exhausted, "exhausted, but not a leak");
                assert!(a.pools[0].wait_count_increase.unwrap() > 0);
            },
        },
    ]
}

#[test]
fn scenarios() {
    for c in cases() {
        let ticks = run(&c);
        let app = AppKey::new(c.app.0, c.app.1);
        let suspected: Vec<bool> = ticks
            .iter()
            .map(|k| k.findings.apps.get(&app).is_some_and(|a| a.leak_suspected))
            .collect();
        let last = &ticks.last().expect("ticks").findings;
        let a = last
            .apps
            .get(&app)
            .unwrap_or_else(|| panic!("{}: no finding for {app:?}", c.name));
        match c.expect {
            Expect::Leak {
                within_ticks,
                reasons,
                ..
            } => {
                let first_leak = (LEAK_AT / TICK).ceil() as usize;
                let onset = suspected.iter().position(|s| *s);
                assert!(
                    onset.is_some_and(|i| i >= first_leak && i <= first_leak + within_ticks),
                    "{}: first suspected at tick {onset:?}, wanted after tick {first_leak} and by {}",
                    c.name,
                    first_leak + within_ticks
                );
                let off: Vec<usize> = (onset.unwrap()..suspected.len())
                    .filter(|&i| !suspected[i])
                    .collect();
                assert!(
                    off.is_empty(),
                    "{}: the verdict lapsed at ticks {off:?}",
                    c.name
                );
                assert_eq!(a.reasons, reasons, "{}: reasons at the end", c.name);
            }
            Expect::Healthy { .. } => {
                let loud: Vec<usize> = (0..suspected.len()).filter(|&i| suspected[i]).collect();
                assert!(loud.is_empty(), "{}: suspected at ticks {loud:?}", c.name);
                assert!(a.reasons.is_empty());
            }
        }
        (c.check)(last, a);
    }
}

/// The verdict's speed follows its strength: more stuck connections decide sooner, and
/// each of the three kinds decides on its own, none before its floor.
#[test]
fn stronger_evidence_decides_sooner() {
    let onset = |world: fn(f64) -> World, app: &'static str| {
        let c = Case {
            name: "",
            slug: "",
            mode: Mode::Central,
            seconds: 1200.0,
            world,
            app: (app, ""),
            max_connections: 400,
            expect: Expect::Healthy { quiet: "" },
            check: no_check,
        };
        run(&c)
            .iter()
            .find(|k| {
                k.findings
                    .apps
                    .get(&AppKey::new(app, ""))
                    .is_some_and(|a| a.leak_suspected)
            })
            .map(|k| k.t - LEAK_AT)
    };
    let fast = onset(rows_never_closed_fast, "worker").unwrap();
    let slow = onset(rows_never_closed_slow, "worker").unwrap();
    assert!(
        fast <= 45.0 && (150.0..=255.0).contains(&slow),
        "60/min at {fast} s, 1/min at {slow} s"
    );
    // No pool accounts for these: nothing before the 60 s floor plus evidence.
    let beside = onset(beside_the_pool, "api").unwrap();
    assert!(
        (180.0..=255.0).contains(&beside),
        "beside the pool at {beside} s"
    );
    let tx = onset(open_transactions, "billing").unwrap();
    assert!((90.0..=165.0).contains(&tx), "transactions at {tx} s");
}

#[test]
fn a_stale_push_does_not_count_a_released_burst() {
    // The push says 30 in use; the burst was released one second after it and the
    // server shows 30 idle connections, younger than the push. Not one is stuck.
    let cfg = AnalysisConfig::default();
    let mut pool = snap(Some(50), 32, 30);
    pool.max_lifetime_seconds = None;
    let pools = [(
        key("shop", "main", "shop-1"),
        Entry {
            snapshot: pool,
            received: Instant::now(),
            received_unix: T0,
        },
    )];
    let refs: Vec<&(PoolKey, Entry)> = pools.iter().collect();
    let backends: Vec<Backend> = (0..32)
        .map(|i| client_read(i, "shop", "10.1.0.5", "idle", 13.0, 60.0))
        .collect();
    let bs: Vec<&Backend> = backends.iter().collect();
    let mut buf = Vec::new();
    let e = evidence::assess(&cfg, &refs, &bs, T0 + 14.0, &mut buf);
    assert!(e.compared);
    assert_eq!(e.stuck(), 0, "{e:?}");
    // The same connections idle since before the push are checked out and forgotten.
    let e = evidence::assess(&cfg, &refs, &bs, T0 + 12.5, &mut buf);
    assert_eq!((e.idle_in_use, e.unaccounted), (30, 0), "{e:?}");
    assert_eq!(e.connection_seconds, 30.0 * 3.0);
}

#[test]
fn ten_thousand_ticks_keep_memory_at_the_cap() {
    let cfg = AnalysisConfig::default();
    let mut a = Analyzer::new(cfg.clone());
    let received = Instant::now();
    let mut last = Findings::default();
    for i in 0..10_000u32 {
        let t = T0 + f64::from(i);
        // A steady app and a churning one: a new name every 100 s.
        let pools = vec![
            (
                key("steady", "main", "s-1"),
                Entry {
                    snapshot: snap(Some(10), 5, 1),
                    received,
                    received_unix: t,
                },
            ),
            (
                key(&format!("churn-{}", i / 100), "main", "c-1"),
                Entry {
                    snapshot: snap(Some(10), u64::from(i % 7), 0),
                    received,
                    received_unix: t,
                },
            ),
        ];
        last = a.tick(&Inputs {
            now_unix: t,
            mode: Mode::Central,
            instance: "",
            pod_ip: None,
            pools: &pools,
            server: None,
            sockets: &BTreeMap::new(),
        });
    }
    for st in a.apps.values() {
        assert!(st.history.len() <= cfg.max_history_points);
        assert!(
            st.history.capacity() <= cfg.max_history_points + 8,
            "no growth"
        );
    }
    // Names last 100 s and are forgotten 900 s after their last tick.
    assert!(
        last.tracked_apps <= 1 + 11,
        "{} apps tracked",
        last.tracked_apps
    );
    assert_eq!(last.tracked_apps, last.tracked_pools);
    assert_eq!(a.history_bytes(), (121 * 40, 121 * 24));
    let steady = &last.apps[&AppKey::new("steady", "")];
    assert_eq!(steady.growth_per_second, Some(0.0));
    assert!(!steady.leak_suspected);
}

#[test]
fn a_gap_in_a_held_disagreement_restarts_its_hold() {
    // Without a server view, unaccounted sockets for 4 minutes, one tick at zero, 4 more
    // minutes: never 5 in a row. Without the gap, the same is a leak.
    for (gap, want) in [(true, false), (false, true)] {
        let mut a = Analyzer::new(AnalysisConfig::default());
        let received = Instant::now();
        let mut fired = false;
        for i in 0..49 {
            let t = T0 + f64::from(i) * 10.0;
            let extra = if gap && i == 24 { 0 } else { 2 };
            let pools = vec![(
                key("api", "main", "pod-a"),
                Entry {
                    snapshot: snap(Some(50), 10, 2),
                    received,
                    received_unix: t,
                },
            )];
            let sockets = BTreeMap::from([(AppKey::new("api", "pod-a"), 10 + extra)]);
            let f = a.tick(&Inputs {
                now_unix: t,
                mode: Mode::Sidecar,
                instance: "pod-a",
                pod_ip: None,
                pools: &pools,
                server: None,
                sockets: &sockets,
            });
            let app = &f.apps[&AppKey::new("api", "pod-a")];
            assert_eq!(app.server_connections, None, "no server view");
            fired |= app.leak_suspected;
        }
        assert_eq!(fired, want, "gap: {gap}");
    }
}

#[test]
fn config_defaults_validate_and_bad_values_name_their_field() {
    assert_eq!(AnalysisConfig::default().validate(), Ok(()));
    let bad: Vec<(AnalysisConfig, &str)> = vec![
        (
            AnalysisConfig {
                growth_span_seconds: 0.0,
                ..Default::default()
            },
            "growth_span_seconds",
        ),
        (
            AnalysisConfig {
                release_fraction: 1.5,
                ..Default::default()
            },
            "release_fraction",
        ),
        (
            AnalysisConfig {
                max_history_points: 1,
                ..Default::default()
            },
            "max_history_points",
        ),
        (
            AnalysisConfig {
                idle_in_use_seconds: f64::NAN,
                ..Default::default()
            },
            "idle_in_use_seconds",
        ),
        (
            AnalysisConfig {
                stuck_connection_seconds: 0.0,
                ..Default::default()
            },
            "stuck_connection_seconds",
        ),
    ];
    for (cfg, field) in bad {
        assert_eq!(cfg.validate().map_err(|e| e.field), Err(field));
    }
    let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "steady_growth",
            "unaccounted_connections",
            "idle_in_use",
            "idle_in_transaction",
            "over_max_lifetime"
        ]
    );
}

// ---- The promtool file ----

/// The `database` label of the shapes' series: a central poolwatch's default, the
/// database's `host:port`.
const DATABASE: &str = "orders-db:5432";

/// Series name and labels (rendered) to the value at each scrape (`None`: absent).
type Series = BTreeMap<String, Vec<Option<f64>>>;

/// A label set as Prometheus stores it: an empty value is no label.
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// What poolwatch exports for one tick, as Prometheus stores it and the shipped rules
/// read it: the target's `job` and `instance`, then poolwatch's `database` and the view's
/// labels (a central poolwatch: no `app_instance` on the application series).
fn exported(c: &Case, k: &Tick, out: &mut Vec<(String, f64)>) {
    const TARGET: &str = "db-watch:19187";
    let base = [
        ("job", "poolwatch"),
        ("instance", TARGET),
        ("database", DATABASE),
    ];
    let app = AppKey::new(c.app.0, c.app.1);
    let n = |v: Option<u64>| v.map(|v| v as f64);
    if let Some(a) = k.findings.apps.get(&app) {
        let l = |extra: &[(&str, &str)]| {
            let mut p = base.to_vec();
            p.push(("app", c.slug));
            p.extend_from_slice(extra);
            labels(&p)
        };
        let mut add = |name: &str, extra: &[(&str, &str)], v: Option<f64>| {
            if let Some(v) = v {
                out.push((format!("{name}{}", l(extra)), v));
            }
        };
        add("poolwatch_app_connections", &[], Some(a.connections as f64));
        add(
            "poolwatch_app_server_connections",
            &[],
            n(a.server_connections),
        );
        add(
            "poolwatch_app_pool_open_connections",
            &[],
            n(a.pool_open_connections),
        );
        add(
            "poolwatch_app_idle_in_use_connections",
            &[],
            n(a.idle_in_use),
        );
        add(
            "poolwatch_app_unaccounted_connections",
            &[],
            n(a.unaccounted),
        );
        add(
            "poolwatch_app_over_max_lifetime_connections",
            &[],
            n(a.over_max_lifetime),
        );
        add(
            "poolwatch_app_stuck_connections",
            &[],
            n(a.stuck_connections),
        );
        add(
            "poolwatch_app_connection_growth_per_second",
            &[],
            a.growth_per_second,
        );
        add(
            "poolwatch_app_exhaustion_eta_seconds",
            &[("limit", "pool")],
            a.eta_pool_seconds,
        );
        add(
            "poolwatch_app_exhaustion_eta_seconds",
            &[("limit", "server")],
            a.eta_server_seconds,
        );
        add(
            "poolwatch_app_leak_suspected",
            &[],
            Some(f64::from(u8::from(a.leak_suspected))),
        );
        for r in Reason::ALL {
            let v = f64::from(u8::from(a.reasons.contains(&r)));
            add(
                "poolwatch_app_leak_reason",
                &[("reason", r.as_str())],
                Some(v),
            );
        }
    }
    for (key, e) in &k.pools {
        let s = &e.snapshot;
        let l = labels(&[
            ("job", "poolwatch"),
            ("instance", TARGET),
            ("database", DATABASE),
            ("app", c.slug),
            ("app_instance", &key.instance),
            ("pool", &key.pool),
        ]);
        let in_use = s.in_use.unwrap_or(0) as f64;
        out.push((format!("poolwatch_pool_in_use_connections{l}"), in_use));
        out.push((format!("poolwatch_pool_open_connections{l}"), s.open as f64));
        if let Some(m) = s.max_open {
            out.push((format!("poolwatch_pool_max_open_connections{l}"), m as f64));
        }
        if let Some(w) = s.wait_count {
            out.push((format!("poolwatch_pool_wait_count_total{l}"), w as f64));
        }
        if let Some(w) = s.waiting {
            out.push((format!("poolwatch_pool_waiting{l}"), w as f64));
        }
    }
    // The server view, by state, and the oldest idle-in-transaction age.
    let mut by_state: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    let mut oldest_tx: Option<f64> = None;
    for b in &k.backends {
        *by_state.entry((&b.state, &b.wait_event)).or_default() += 1.0;
        if b.state == "idle in transaction" {
            oldest_tx = b.state_age.map(|a| oldest_tx.map_or(a, |o: f64| o.max(a)));
        }
    }
    let pg = |extra: &[(&str, &str)]| {
        let mut p = base.to_vec();
        p.extend_from_slice(extra);
        labels(&p)
    };
    for ((state, wait), v) in by_state {
        let l = pg(&[
            ("datname", "app"),
            ("usename", "app"),
            ("application_name", c.slug),
            ("state", state),
            (
                "wait_event_type",
                if wait.is_empty() { "" } else { "Client" },
            ),
            ("wait_event", wait),
        ]);
        out.push((format!("poolwatch_pg_connections{l}"), v));
    }
    if let Some(age) = oldest_tx {
        let l = pg(&[
            ("datname", "app"),
            ("usename", "app"),
            ("application_name", c.slug),
            ("state", "idle in transaction"),
        ]);
        out.push((format!("poolwatch_pg_oldest_state_age_seconds{l}"), age));
    }
    let l = pg(&[]);
    let lim = &k.limits;
    out.push((
        format!("poolwatch_pg_max_connections{l}"),
        f64::from(lim.max_connections),
    ));
    out.push((
        format!("poolwatch_pg_reserved_connections{l}"),
        f64::from(lim.reserved_connections),
    ));
    out.push((format!("poolwatch_pg_up{l}"), 1.0));
    out.push((
        format!(
            "up{}",
            labels(&[("job", "poolwatch"), ("instance", TARGET)])
        ),
        1.0,
    ));
    let l = pg(&[("kind", "too_many_connections")]);
    out.push((format!("poolwatch_pg_sample_errors_total{l}"), 0.0));
}

/// A value as promtool reads it, rounded to what the rules can tell apart.
fn num(v: f64) -> String {
    let r = (v * 1000.0).round() / 1000.0;
    if r == r.trunc() && r.abs() < 1e15 {
        format!("{}", r as i64)
    } else {
        format!("{r}")
    }
}

/// promtool's expanding notation: runs of one step become `a+bxn`, absent values `_`,
/// and a series that disappears gets a staleness marker, as a real scrape gives it.
fn expand(values: &[Option<f64>]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let Some(v) = values[i] else {
            let stale = i > 0 && values[i - 1].is_some();
            out.push(if stale { "stale".into() } else { "_".into() });
            i += 1;
            continue;
        };
        let rounded = |x: f64| (x * 1000.0).round() / 1000.0;
        let mut j = i + 1;
        let step = values
            .get(j)
            .copied()
            .flatten()
            .map(|w| rounded(w) - rounded(v));
        if let Some(d) = step {
            while j < values.len()
                && values[j]
                    .is_some_and(|w| (rounded(w) - rounded(v) - d * (j - i) as f64).abs() < 1e-6)
            {
                j += 1;
            }
        }
        let n = j - i - 1;
        let d = step.unwrap_or(0.0);
        match n {
            0 => out.push(num(v)),
            _ if d.abs() < 1e-9 => out.push(format!("{}x{n}", num(v))),
            _ if d > 0.0 => out.push(format!("{}+{}x{n}", num(v), num(d))),
            _ => out.push(format!("{}-{}x{n}", num(v), num(-d))),
        }
        i = j;
    }
    out.join(" ")
}

/// The promtool unit test file for every shape.
fn shapes_file() -> String {
    let mut doc = String::from(
        "# Generated by `UPDATE_GOLDEN=1 cargo test --lib shapes` (src/analysis/tests.rs); do not edit.\n\
         # Each test is one shape of docs/detection.md: the series poolwatch exports for it,\n\
         # computed by the real analysis at its defaults (15 s samples, pushes 14 s old), scraped\n\
         # every 30 s; the rules evaluated every 30 s. A leak must be paged (PoolwatchConnectionLeak\n\
         # or PoolwatchConnectionExhaustionPredicted) within its target from the first leaked\n\
         # connection, at 2 minutes; a healthy shape must fire no alert at all (an overloaded\n\
         # pool: no leak alert).\n\
         rule_files:\n- ../poolwatch.rules.yaml\nevaluation_interval: 30s\ntests:\n",
    );
    for c in cases() {
        let ticks = run(&c);
        let scrapes: Vec<&Tick> = ticks
            .iter()
            .filter(|k| (k.t / SCRAPE).fract() == 0.0)
            .collect();
        let mut series: Series = BTreeMap::new();
        let mut buf = Vec::new();
        for (i, k) in scrapes.iter().enumerate() {
            buf.clear();
            exported(&c, k, &mut buf);
            for (name, v) in buf.drain(..) {
                let s = series
                    .entry(name)
                    .or_insert_with(|| vec![None; scrapes.len()]);
                s[i] = Some(v);
            }
        }
        let end = scrapes.last().map_or(0.0, |k| k.t);
        let _ = writeln!(
            doc,
            "- name: '{}'\n  interval: 30s\n  input_series:",
            c.name
        );
        for (name, values) in &series {
            let _ = writeln!(
                doc,
                "  - series: '{name}'\n    values: '{}'",
                expand(values)
            );
        }
        let _ = writeln!(doc, "  promql_expr_test:");
        let window = format!("{}s", end + SCRAPE);
        match c.expect {
            Expect::Leak {
                page_seconds: Some((within, critical)),
                ..
            } => {
                let severity = if critical {
                    ",severity=\"critical\""
                } else {
                    ""
                };
                let _ = writeln!(
                    doc,
                    "  - expr: vector(1) and on () min_over_time(timestamp(ALERTS{{alertstate=\"firing\",alertname=~\"PoolwatchConnectionLeak|PoolwatchConnectionExhaustionPredicted\",app=\"{}\"{severity}}})[{window}:30s]) <= {}\n    eval_time: {}s\n    exp_samples:\n    - labels: '{{}}'\n      value: 1",
                    c.slug,
                    LEAK_AT + within,
                    end,
                );
            }
            Expect::Leak { .. } => {}
            Expect::Healthy { quiet } => {
                let _ = writeln!(
                    doc,
                    "  - expr: count_over_time(ALERTS{{alertstate=\"firing\",alertname=~\"{quiet}\"}}[{window}])\n    eval_time: {}s\n    exp_samples: []\n  - expr: max_over_time(poolwatch_app_leak_suspected[{window}])\n    eval_time: {}s\n    exp_samples:\n    - labels: '{{app=\"{}\",database=\"{DATABASE}\",instance=\"db-watch:19187\",job=\"poolwatch\"}}'\n      value: 0",
                    end, end, c.slug
                );
            }
        }
    }
    doc
}

#[test]
fn shapes_file_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/tests/shapes.yaml");
    let want = shapes_file();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &want).expect("write alerts/tests/shapes.yaml");
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        got == want,
        "alerts/tests/shapes.yaml is not what the analysis gives now; UPDATE_GOLDEN=1 cargo test --lib shapes rewrites it"
    );
}
