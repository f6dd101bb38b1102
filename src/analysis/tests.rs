//! Scenario tests: constructed worlds ticked through [`Analyzer`], each stating which
//! outputs must and must not fire.

use std::collections::BTreeMap;
use std::time::Instant;

use super::*;
use crate::ingest::PoolSnapshot;
use crate::sampler::activity::Backend;
use crate::sampler::settings::Limits;

/// Unix time of the first tick.
const T0: f64 = 1_700_000_000.0;
const POD: &str = "10.0.0.7";
const OTHER_POD: &str = "10.0.0.8";

/// What the world looks like at one tick.
#[derive(Default)]
struct World {
    pools: Vec<(PoolKey, PoolSnapshot)>,
    backends: Vec<Backend>,
    sockets: Vec<(AppKey, u64)>,
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

/// `n` backends of a healthy pool: `busy` active, the rest idle briefly.
fn healthy(name: &str, addr: &str, n: u64, busy: u64, pid0: usize) -> Vec<Backend> {
    (0..n)
        .map(|i| {
            let pid = pid0 + i as usize;
            if i < busy {
                backend(pid, name, addr, "active", "", 0.2, 40.0)
            } else {
                backend(pid, name, addr, "idle", "ClientRead", 3.0, 40.0)
            }
        })
        .collect()
}

/// A connection checked out at `since` and forgotten: idle in `ClientRead` ever since.
fn forgotten(pid: usize, name: &str, addr: &str, t: f64, since: f64) -> Backend {
    backend(
        pid,
        name,
        addr,
        "idle",
        "ClientRead",
        t - since,
        t - since + 1.0,
    )
}

struct Case {
    name: &'static str,
    mode: Mode,
    /// Seconds between ticks and how many.
    interval: f64,
    ticks: usize,
    /// The world at `t` seconds after the first tick.
    world: fn(f64) -> World,
    /// The application the expectations are about.
    app: (&'static str, &'static str),
    /// Exactly these reasons at the last tick (empty: no leak).
    reasons_at_end: &'static [Reason],
    /// The leak must be suspected at some tick at or before this `t`.
    leak_by: Option<f64>,
    /// No leak may be suspected at any tick from this `t` on.
    quiet_from: Option<f64>,
    /// Some pool of the application is exhausted at the last tick.
    exhausted_at_end: bool,
    /// Further checks of the last tick.
    check: fn(&Findings, &AppFinding),
}

fn no_check(_: &Findings, _: &AppFinding) {}

fn limits() -> Limits {
    Limits {
        max_connections: 100,
        reserved_connections: 3,
        server_time_unix: 0.0,
    }
}

/// Runs a case; returns the last findings and the `t` of every tick with a leak.
fn run(c: &Case) -> (Findings, Vec<f64>) {
    let mut a = Analyzer::new(AnalysisConfig::default());
    let received = Instant::now();
    let app = AppKey::new(c.app.0, c.app.1);
    let mut last = Findings::default();
    let mut leaks = Vec::new();
    for i in 0..c.ticks {
        let t = i as f64 * c.interval;
        let w = (c.world)(t);
        let pools: Vec<(PoolKey, Entry)> = w
            .pools
            .into_iter()
            .map(|(k, s)| {
                (
                    k,
                    Entry {
                        snapshot: s,
                        received,
                        received_unix: T0 + t,
                    },
                )
            })
            .collect();
        let sample = Sample {
            at_unix: T0 + t,
            limits: limits(),
            backends: w.backends,
            ..Default::default()
        };
        let sockets: BTreeMap<AppKey, u64> = w.sockets.into_iter().collect();
        let f = a.tick(&Inputs {
            now_unix: T0 + t,
            mode: c.mode,
            instance: "pod-a",
            pod_ip: Some(POD),
            pools: &pools,
            server: Some(&sample),
            sockets: &sockets,
        });
        if f.apps.get(&app).is_some_and(|x| x.leak_suspected) {
            leaks.push(t);
        }
        last = f;
    }
    (last, leaks)
}

// ---- The leaks ----

/// Incident 1: each message checks out a connection and drops the rows. Unlimited pool.
fn rows_never_closed(t: f64) -> World {
    let k = (t / 20.0).floor() as u64;
    let mut s = snap(None, 3 + k, 1 + k);
    s.max_lifetime_seconds = Some(120.0);
    let mut backends = healthy("worker", "10.1.0.1", 3, 1, 1);
    backends.extend(
        (1..=k).map(|i| forgotten(100 + i as usize, "worker", "10.1.0.1", t, 20.0 * i as f64)),
    );
    World {
        pools: vec![(key("worker", "main", "w-1"), s)],
        backends,
        ..Default::default()
    }
}

/// Incident 1 with `SetMaxOpenConns(25)`: the pool pins at its cap and callers wait.
fn rows_never_closed_capped(t: f64) -> World {
    let k = ((t / 20.0).floor() as u64).min(24);
    let in_use = 1 + k;
    let open = (3 + k).min(25);
    let mut s = snap(Some(25), open, in_use);
    s.max_lifetime_seconds = Some(120.0);
    if in_use == 25 {
        let stuck_for = t - 480.0;
        s.waiting = Some(3);
        s.wait_count = Some((stuck_for / 10.0) as u64 * 3);
    }
    let idle = open - in_use;
    let mut backends = healthy("worker", "10.1.0.1", 1 + idle, 1, 1);
    backends.extend(
        (1..=k).map(|i| forgotten(100 + i as usize, "worker", "10.1.0.1", t, 20.0 * i as f64)),
    );
    World {
        pools: vec![(key("worker", "main", "w-1"), s)],
        backends,
        ..Default::default()
    }
}

/// Incident 2 in a sidecar: the pool lost track of two connections a minute in; the
/// server and the kernel still hold them. Another replica's backends carry the same
/// name and must not count.
fn pool_forgets(t: f64) -> World {
    let lost = if t >= 60.0 { 2 } else { 0 };
    let mut backends = healthy("api", POD, 10, 2, 1);
    backends.extend((0..lost).map(|i| forgotten(50 + i, "api", POD, t, 60.0)));
    backends.extend(healthy("api", OTHER_POD, 10, 2, 200));
    World {
        pools: vec![(key("api", "main", "pod-a"), snap(Some(50), 10, 2))],
        backends,
        sockets: vec![(AppKey::new("api", "pod-a"), 10 + lost as u64)],
    }
}

/// A handler calls `sql.Open` per request: each stray pool keeps an idle connection,
/// under the same `application_name`, that the pushed pool knows nothing of.
fn pool_per_request(t: f64) -> World {
    let k = (t / 15.0).floor() as u64;
    let mut s = snap(Some(10), 5, 1);
    s.max_lifetime_seconds = Some(1800.0);
    let mut backends = healthy("api", "10.1.0.2", 5, 1, 1);
    backends.extend(
        (1..=k).map(|i| forgotten(100 + i as usize, "api", "10.1.0.2", t, 15.0 * i as f64)),
    );
    World {
        pools: vec![(key("api", "main", "api-1"), s)],
        backends,
        ..Default::default()
    }
}

/// An application that pushes nothing, climbing on the server (central mode groups it
/// under its own `application_name`).
fn unpushed_climbing(t: f64) -> World {
    let k = (t / 10.0).floor() as usize;
    World {
        backends: (0..k)
            .map(|i| forgotten(i, "reporter", "10.1.0.3", t, i as f64 * 10.0))
            .collect(),
        ..Default::default()
    }
}

/// Transactions left open: listed as stuck, not a leak by themselves.
fn idle_in_transaction(t: f64) -> World {
    let _ = t;
    let mut backends = vec![
        backend(
            11,
            "billing",
            "10.1.0.4",
            "idle in transaction",
            "ClientRead",
            600.0,
            700.0,
        ),
        backend(
            12,
            "billing",
            "10.1.0.4",
            "idle in transaction (aborted)",
            "ClientRead",
            120.0,
            700.0,
        ),
        backend(
            13,
            "billing",
            "10.1.0.4",
            "idle in transaction",
            "ClientRead",
            5.0,
            700.0,
        ),
    ];
    backends.extend(healthy("billing", "10.1.0.4", 1, 0, 14));
    World {
        pools: vec![(key("billing", "main", "b-1"), snap(Some(10), 4, 3))],
        backends,
        ..Default::default()
    }
}

// ---- The non-leaks ----

/// A pool filling up for two minutes, then flat.
fn warm_up(t: f64) -> World {
    let n = ((t / 6.0).floor() as u64).min(20);
    World {
        pools: vec![(key("shop", "main", "s-1"), snap(Some(20), n, n / 2))],
        backends: healthy("shop", "10.1.0.5", n, n / 2, 1),
        ..Default::default()
    }
}

/// Ten connections, thirty for a minute, ten again.
fn burst_returns(t: f64) -> World {
    let n = if (400.0..460.0).contains(&t) { 30 } else { 10 };
    World {
        pools: vec![(key("shop", "main", "s-1"), snap(Some(40), n, n / 2))],
        backends: healthy("shop", "10.1.0.5", n, n / 2, 1),
        ..Default::default()
    }
}

/// A rolling deploy: two new replicas ramp up over a minute while the two old ones are
/// still there, so the application's count doubles for three minutes, then the old ones go.
fn deploy_surge(t: f64) -> World {
    let mut pools = vec![];
    let mut backends = vec![];
    let old = t < 680.0;
    let new_open = if t < 500.0 {
        0
    } else {
        (((t - 500.0) / 6.0).floor() as u64).min(10)
    };
    for (inst, open, pid0) in [
        ("old-1", 10, 1),
        ("old-2", 10, 100),
        ("new-1", new_open, 200),
        ("new-2", new_open, 300),
    ] {
        let present = if inst.starts_with("old") {
            old
        } else {
            t >= 500.0
        };
        if present {
            pools.push((key("shop", "main", inst), snap(Some(20), open, open / 2)));
            backends.extend(healthy("shop", "10.1.0.5", open, open / 2, pid0));
        }
    }
    World {
        pools,
        backends,
        ..Default::default()
    }
}

/// Climb from 10 to `10 + rise` over `period` seconds, release, repeat.
fn sawtooth(t: f64, period: f64, rise: f64) -> World {
    let phase = t % period;
    let n = 10 + (rise * phase / period).floor() as u64;
    World {
        pools: vec![(key("etl", "main", "e-1"), snap(None, n, 1))],
        backends: healthy("etl", "10.1.0.6", n, 1, 1),
        ..Default::default()
    }
}

fn sawtooth_short(t: f64) -> World {
    sawtooth(t, 180.0, 10.0)
}

fn sawtooth_long(t: f64) -> World {
    sawtooth(t, 480.0, 16.0)
}

/// A pool at its cap, every connection busy, no caller ever waiting now.
fn busy_at_max_no_waits(t: f64) -> World {
    let _ = t;
    let mut s = snap(Some(20), 20, 20);
    s.wait_count = Some(500);
    World {
        pools: vec![(key("search", "main", "q-1"), s)],
        backends: healthy("search", "10.1.0.7", 20, 20, 1),
        ..Default::default()
    }
}

/// The same pool overloaded: callers wait. Exhausted, but not a leak.
fn busy_at_max_with_waits(t: f64) -> World {
    let mut w = busy_at_max_no_waits(t);
    w.pools[0].1.wait_count = Some(500 + (t / 10.0) as u64 * 5);
    w.pools[0].1.waiting = Some(2);
    w
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "rows never closed",
            mode: Mode::Central,
            interval: 10.0,
            ticks: 100,
            world: rows_never_closed,
            app: ("worker", ""),
            reasons_at_end: &[
                Reason::SteadyGrowth,
                Reason::IdleInUse,
                Reason::OverMaxLifetime,
            ],
            leak_by: Some(300.0),
            quiet_from: None,
            exhausted_at_end: false,
            check: |_, a| {
                assert_eq!(a.unaccounted, Some(0), "server matches the pool's open");
                let g = a.growth_per_second.unwrap();
                assert!((g - 0.05).abs() < 1e-9, "one connection per 20 s, got {g}");
                // 97 usable, 3 + 49 + our own session in use: 44 left at 0.05/s.
                assert_eq!(a.eta_server_seconds, Some(44.0 / 0.05));
                assert_eq!(a.eta_pool_seconds, None, "unlimited pool");
                assert!(a.idle_in_use.unwrap() > 40);
            },
        },
        Case {
            name: "rows never closed, pool capped at 25",
            mode: Mode::Central,
            interval: 10.0,
            ticks: 100,
            world: rows_never_closed_capped,
            app: ("worker", ""),
            // Pinned at the cap, the count is flat: the disagreements carry the evidence.
            reasons_at_end: &[Reason::IdleInUse, Reason::OverMaxLifetime],
            leak_by: Some(300.0),
            quiet_from: None,
            exhausted_at_end: true,
            check: |_, a| {
                assert_eq!(a.growth_per_second, Some(0.0));
                assert_eq!(a.eta_pool_seconds, None);
                assert_eq!(a.idle_in_use, Some(24));
            },
        },
        Case {
            name: "a pool that forgets connections (sidecar)",
            mode: Mode::Sidecar,
            interval: 10.0,
            ticks: 90,
            world: pool_forgets,
            app: ("api", "pod-a"),
            reasons_at_end: &[Reason::Unaccounted],
            leak_by: Some(60.0 + 300.0),
            quiet_from: None,
            exhausted_at_end: false,
            check: |f, a| {
                assert_eq!(
                    a.server_connections,
                    Some(12),
                    "the other replica is not counted"
                );
                assert_eq!(a.socket_connections, Some(12));
                assert_eq!(a.pool_open_connections, Some(10));
                assert_eq!(a.unaccounted, Some(2));
                assert_eq!(a.idle_in_use, Some(0));
                assert_eq!(a.growth_per_second, Some(0.0));
                assert_eq!(f.apps.len(), 1, "sidecar: nothing but this pod's app");
            },
        },
        Case {
            name: "a pool per request",
            mode: Mode::Central,
            interval: 10.0,
            ticks: 100,
            world: pool_per_request,
            app: ("api", ""),
            reasons_at_end: &[Reason::SteadyGrowth, Reason::Unaccounted],
            leak_by: Some(330.0),
            quiet_from: None,
            exhausted_at_end: false,
            check: |_, a| {
                assert_eq!(
                    a.idle_in_use,
                    Some(0),
                    "the stray connections are not the pool's"
                );
                assert_eq!(a.over_max_lifetime, Some(0));
                assert!(a.unaccounted.unwrap() >= 60);
                assert_eq!(a.eta_pool_seconds, None, "the pushed pool does not grow");
                assert!(a.eta_server_seconds.is_some());
            },
        },
        Case {
            name: "an application that pushes nothing, climbing",
            mode: Mode::Central,
            interval: 10.0,
            ticks: 60,
            world: unpushed_climbing,
            app: ("reporter", ""),
            reasons_at_end: &[Reason::SteadyGrowth],
            leak_by: Some(300.0),
            quiet_from: None,
            exhausted_at_end: false,
            check: |_, a| {
                assert_eq!(a.pool_open_connections, None);
                assert_eq!(a.unaccounted, None, "nothing to compare against");
            },
        },
        Case {
            name: "idle in transaction",
            mode: Mode::Central,
            interval: 10.0,
            ticks: 60,
            world: idle_in_transaction,
            app: ("billing", ""),
            reasons_at_end: &[],
            leak_by: None,
            quiet_from: Some(0.0),
            exhausted_at_end: false,
            check: |f, a| {
                assert_eq!(
                    a.idle_in_use,
                    Some(0),
                    "in a transaction is busy, not forgotten"
                );
                let stuck = &f.stuck[&AppKey::new("billing", "")];
                let pids: Vec<i32> = stuck.iter().map(|s| s.backend.pid).collect();
                assert_eq!(pids, vec![11, 12], "oldest first; the 5 s one is not stuck");
                assert!(stuck
                    .iter()
                    .all(|s| s.reasons == vec![StuckReason::IdleInTransaction]));
            },
        },
        Case {
            name: "warm-up: climb for two minutes, then flat",
            mode: Mode::Central,
            interval: 10.0,
            ticks: 120,
            world: warm_up,
            app: ("shop", ""),
            reasons_at_end: &[],
            leak_by: None,
            quiet_from: Some(0.0),
            exhausted_at_end: false,
            check: |_, a| {
                assert_eq!(a.growth_per_second, Some(0.0));
                assert_eq!(a.eta_pool_seconds, None);
                assert_eq!(a.eta_server_seconds, None);
            },
        },
        Case {
            name: "a burst that returns",
            mode: Mode::Central,
            interval: 10.0,
            ticks: 120,
            world: burst_returns,
            app: ("shop", ""),
            reasons_at_end: &[],
            leak_by: None,
            quiet_from: Some(0.0),
            exhausted_at_end: false,
            check: no_check,
        },
        Case {
            name: "a deploy surge",
            mode: Mode::Central,
            interval: 10.0,
            ticks: 120,
            world: deploy_surge,
            app: ("shop", ""),
            reasons_at_end: &[],
            leak_by: None,
            quiet_from: Some(0.0),
            exhausted_at_end: false,
            check: |_, a| assert_eq!(a.unaccounted, Some(0)),
        },
        Case {
            name: "a sawtooth of three-minute teeth",
            mode: Mode::Central,
            interval: 10.0,
            ticks: 180,
            world: sawtooth_short,
            app: ("etl", ""),
            reasons_at_end: &[],
            leak_by: None,
            quiet_from: Some(0.0),
            exhausted_at_end: false,
            check: no_check,
        },
        Case {
            // The first tooth cannot be told from a leak; once one release is in the
            // window, the later teeth are not leaks even while they climb.
            name: "a sawtooth of eight-minute teeth",
            mode: Mode::Central,
            interval: 10.0,
            ticks: 180,
            world: sawtooth_long,
            app: ("etl", ""),
            reasons_at_end: &[],
            leak_by: None,
            quiet_from: Some(480.0),
            exhausted_at_end: false,
            check: no_check,
        },
        Case {
            name: "a busy pool at its cap, no waits",
            mode: Mode::Central,
            interval: 10.0,
            ticks: 60,
            world: busy_at_max_no_waits,
            app: ("search", ""),
            reasons_at_end: &[],
            leak_by: None,
            quiet_from: Some(0.0),
            exhausted_at_end: false,
            check: |_, a| {
                assert_eq!(a.pools[0].wait_count_increase, Some(0));
                assert_eq!(a.idle_in_use, Some(0));
            },
        },
        Case {
            name: "a busy pool at its cap with callers waiting",
            mode: Mode::Central,
            interval: 10.0,
            ticks: 60,
            world: busy_at_max_with_waits,
            app: ("search", ""),
            reasons_at_end: &[],
            leak_by: None,
            quiet_from: Some(0.0),
            exhausted_at_end: true,
            check: |_, a| assert!(a.pools[0].wait_count_increase.unwrap() > 0),
        },
    ]
}

#[test]
fn scenarios() {
    for c in cases() {
        let (f, leaks) = run(&c);
        let app = AppKey::new(c.app.0, c.app.1);
        let a = f
            .apps
            .get(&app)
            .unwrap_or_else(|| panic!("{}: no finding for {app:?}", c.name));
        assert_eq!(
            a.reasons, c.reasons_at_end,
            "{}: reasons at the end",
            c.name
        );
        assert_eq!(a.leak_suspected, !c.reasons_at_end.is_empty(), "{}", c.name);
        assert_eq!(a.exhausted, c.exhausted_at_end, "{}: exhausted", c.name);
        if let Some(by) = c.leak_by {
            let first = leaks.first().copied();
            assert!(
                first.is_some_and(|t| t <= by),
                "{}: first suspected at {first:?}, wanted by {by}",
                c.name
            );
        }
        if let Some(from) = c.quiet_from {
            let loud: Vec<f64> = leaks.iter().copied().filter(|t| *t >= from).collect();
            assert!(loud.is_empty(), "{}: suspected at {loud:?}", c.name);
        }
        (c.check)(&f, a);
    }
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
fn a_gap_in_a_disagreement_restarts_its_hold() {
    // Unaccounted for 4 minutes, one tick at zero, 4 more minutes: never 5 in a row.
    let mut a = Analyzer::new(AnalysisConfig::default());
    let received = Instant::now();
    let mut fired = false;
    for i in 0..49 {
        let t = T0 + f64::from(i) * 10.0;
        let extra = if i == 24 { 0 } else { 2 };
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
    assert!(!fired);
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
            "over_max_lifetime"
        ]
    );
}
