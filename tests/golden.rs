//! The whole `/metrics` output for fixed inputs, diffed against `tests/golden/metrics.txt`
//! and checked by `promtool check metrics`. Regenerate after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test golden` and review the diff.

mod common;

use std::sync::Arc;
use std::time::Instant;

use poolwatch::app::Core;
use poolwatch::ingest::{PoolKey, PoolPush, PoolSnapshot};
use poolwatch::sampler::activity::{aggregate, Backend};
use poolwatch::sampler::limits::{ConnectionLimit, ConnectionLimits};
use poolwatch::sampler::settings::Limits;
use poolwatch::sampler::{Sample, ServerState};
use poolwatch::tick::PeerSockets;

const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

/// The two deploy modes, each with its own golden file.
const MODES: [(&str, &str); 2] = [
    ("central", "metrics.txt"),
    ("sidecar", "metrics-sidecar.txt"),
];

fn backend(pid: i32, app: &str, state: &str, ages: (f64, Option<f64>, f64)) -> Backend {
    let waiting = state.starts_with("idle");
    Backend {
        pid,
        datname: "shop".into(),
        usename: "app".into(),
        application_name: app.into(),
        client_addr: "10.0.0.7".into(),
        state: state.into(),
        wait_event_type: if waiting {
            "Client".into()
        } else {
            String::new()
        },
        wait_event: if waiting {
            "ClientRead".into()
        } else {
            String::new()
        },
        backend_age: Some(ages.0),
        xact_age: ages.1,
        state_age: Some(ages.2),
        query: "SELECT * FROM orders WHERE id = ?".into(),
    }
}

/// Renders `/metrics` after fixed pushes and thirty analysis ticks, in `mode`. In
/// sidecar mode the pod is billing's (`pod_ip` 10.0.0.7, the fixtures' client address)
/// and only billing pushes.
fn render(mode: &str) -> String {
    let mut flags = vec![(
        "database.url",
        "postgres://watcher:hunter2@db.example:5432/shop".to_string(),
    )];
    if mode == "sidecar" {
        flags.push(("mode", "sidecar".into()));
        flags.push(("instance", "billing-7f9c-x2".into()));
        flags.push(("pod_ip", "10.0.0.7".into()));
        // Forwarding on: its series are in the sidecar's golden file (nothing is sent:
        // the forwarder task is not started here).
        flags.push((
            "forward.url",
            "http://shop-db-poolwatch.monitoring.svc:19187".into(),
        ));
    }
    let cfg = poolwatch::config::load(None, &flags, &|_| None).expect("valid");
    let mut core = Core::new(&cfg).expect("core");
    let mut pushes = vec![
        PoolPush {
            key: PoolKey {
                app: "billing".into(),
                pool: "primary".into(),
                instance: "billing-7f9c-x2".into(),
            },
            snapshot: PoolSnapshot {
                max_open: Some(25),
                open: 12,
                in_use: Some(9),
                idle: Some(3),
                waiting: Some(2),
                wait_count: Some(17),
                wait_duration_seconds: Some(2.5),
                max_idle_closed: Some(1),
                max_idle_time_closed: Some(2),
                max_lifetime_closed: Some(5),
                max_lifetime_seconds: Some(1800.0),
                max_idle_time_seconds: Some(300.0),
                application_name: "billing".into(),
                database: None,
                peer: None,
            },
        },
        PoolPush {
            key: PoolKey {
                app: "worker".into(),
                pool: "main".into(),
                instance: "".into(),
            },
            snapshot: PoolSnapshot {
                open: 4,
                in_use: Some(1),
                idle: Some(3),
                wait_count: Some(0),
                application_name: "worker".into(),
                ..Default::default()
            },
        },
    ];
    if mode == "sidecar" {
        pushes.retain(|p| p.key.app == "billing");
    }
    let backends = vec![
        backend(101, "billing", "idle", (3600.0, None, 1200.0)),
        backend(102, "billing", "idle", (60.0, None, 5.0)),
        backend(103, "billing", "active", (30.0, Some(0.2), 0.2)),
        backend(
            104,
            "worker",
            "idle in transaction",
            (900.0, Some(840.0), 840.0),
        ),
        Backend {
            pid: 105,
            usename: "other".into(),
            application_name: "psql".into(),
            ..Default::default()
        },
    ];
    // Thirty ticks, 15 s apart, during which billing leaks one connection per tick: idle
    // in ClientRead, never returned. The applications push a second before each tick.
    // The analysis sees the stuck backends and the disagreement with the pool.
    let t0 = 1_800_000_001.0;
    for tick in 0..=30u32 {
        let now = t0 + 15.0 * f64::from(tick);
        core.store
            .apply(pushes.clone(), Instant::now(), now - 0.5)
            .expect("stored");
        let mut rows = backends.clone();
        for j in 0..tick {
            let age = 15.0 * f64::from(tick - j) + 1.0;
            rows.push(backend(200 + j as i32, "billing", "idle", (age, None, age)));
        }
        // Role `app` (billing's and worker's) is limited to 60 connections, which billing's
        // leak reaches before the server's 97 usable; the database `shop` to 200. The
        // counts include poolwatch's own session (in `shop`, as `watcher`).
        let role_app = rows.iter().filter(|b| b.usename == "app").count() as i64;
        let connection_limits = ConnectionLimits {
            roles: vec![ConnectionLimit {
                name: "app".into(),
                limit: 60,
                backends: role_app,
            }],
            databases: vec![ConnectionLimit {
                name: "shop".into(),
                limit: 200,
                backends: rows.iter().filter(|b| b.datname == "shop").count() as i64 + 1,
            }],
        };
        let sample = Sample {
            at_unix: now,
            limits: Limits {
                max_connections: 100,
                reserved_connections: 3,
                server_time_unix: now,
            },
            connection_limits,
            aggregates: aggregate(&rows, 200),
            backends: rows,
            own_client_port: None,
            own_sessions: 1,
        };
        core.sampler
            .as_ref()
            .expect("database configured")
            .publish(ServerState {
                up: true,
                sample: Some(Arc::new(sample)),
                last_success_unix: Some(now),
                last_duration_seconds: Some(0.004),
            });
        let sockets = vec![PeerSockets {
            peer: "db.example:5432".into(),
            states: [("established", 12), ("time_wait", 2)]
                .into_iter()
                .collect(),
        }];
        core.ticker.tick_at(now, Some(sockets));
    }
    String::from_utf8(poolwatch::metrics::encode(&core.registry, &core.views)).expect("utf-8")
}

/// Process metrics vary run to run: their presence is checked, their lines are not
/// part of the golden file. The version is a placeholder.
fn normalize(text: &str) -> String {
    let mut out = String::new();
    for l in text.lines() {
        let name = l
            .trim_start_matches("# HELP ")
            .trim_start_matches("# TYPE ");
        if name.starts_with("process_") {
            continue;
        }
        out.push_str(&l.replace(
            &format!("version=\"{}\"", poolwatch::VERSION),
            "version=\"VERSION\"",
        ));
        out.push('\n');
    }
    out
}

#[test]
fn metrics_output_matches_golden_files() {
    for (mode, file) in MODES {
        let path = format!("{GOLDEN_DIR}/{file}");
        let text = render(mode);
        assert!(
            text.contains("process_resident_memory_bytes "),
            "process metrics present"
        );
        assert!(!text.contains("hunter2"));
        let got = normalize(&text);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &got).expect("write golden file");
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("{path} (UPDATE_GOLDEN=1 creates it)"));
        if got != want {
            let diff: Vec<String> = want
                .lines()
                .filter(|l| !got.lines().any(|g| g == *l))
                .map(|l| format!("- {l}"))
                .chain(
                    got.lines()
                        .filter(|l| !want.lines().any(|w| w == *l))
                        .map(|l| format!("+ {l}")),
                )
                .collect();
            panic!(
                "/metrics differs from {path} (UPDATE_GOLDEN=1 to accept):\n{}",
                diff.join("\n")
            );
        }
    }
}

#[test]
fn promtool_accepts_metrics_without_warnings() {
    let Some(promtool) = common::require_tool("promtool") else {
        return;
    };
    for (mode, _) in MODES {
        let text = render(mode);
        let (ok, out) = common::promtool_check(&promtool, &text);
        assert!(ok, "promtool check metrics ({mode}):\n{out}");
    }
    // And the checker does catch a bad exposition: this test can fail.
    let (ok, out) =
        common::promtool_check(&promtool, "# TYPE poolwatch_bad counter\npoolwatch_bad 1\n");
    assert!(!ok, "promtool accepted a counter without _total: {out}");
}
