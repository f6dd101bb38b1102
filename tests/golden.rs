//! The whole `/metrics` output for fixed inputs, diffed against `tests/golden/metrics.txt`
//! and checked by `promtool check metrics`. Regenerate after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test golden` and review the diff.

mod common;

use std::sync::Arc;
use std::time::Instant;

use poolwatch::app::Core;
use poolwatch::ingest::{PoolKey, PoolPush, PoolSnapshot};
use poolwatch::sampler::activity::{aggregate, Backend};
use poolwatch::sampler::settings::Limits;
use poolwatch::sampler::{Sample, ServerState};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/metrics.txt");

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

fn render() -> String {
    let flags = vec![(
        "database.url",
        "postgres://watcher:hunter2@db.example:5432/shop".to_string(),
    )];
    let cfg = poolwatch::config::load(None, &flags, &|_| None).expect("valid");
    let core = Core::new(&cfg).expect("core");
    let pushes = vec![
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
    core.store
        .apply(pushes, Instant::now(), 1_800_000_000.5)
        .expect("stored");
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
    let sample = Sample {
        at_unix: 1_800_000_001.0,
        limits: Limits {
            max_connections: 100,
            reserved_connections: 3,
            server_time_unix: 1_800_000_001.0,
        },
        aggregates: aggregate(&backends, 200),
        backends,
    };
    core.sampler
        .as_ref()
        .expect("database configured")
        .publish(ServerState {
            up: true,
            sample: Some(Arc::new(sample)),
            last_success_unix: Some(1_800_000_001.0),
            last_duration_seconds: Some(0.004),
        });
    String::from_utf8(poolwatch::metrics::encode(&core.registry)).expect("utf-8")
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
fn metrics_output_matches_golden_file() {
    let text = render();
    assert!(
        text.contains("process_resident_memory_bytes "),
        "process metrics present"
    );
    assert!(!text.contains("hunter2"));
    let got = normalize(&text);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &got).expect("write golden file");
        return;
    }
    let want = std::fs::read_to_string(GOLDEN)
        .expect("tests/golden/metrics.txt (UPDATE_GOLDEN=1 creates it)");
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
            "/metrics differs from {GOLDEN} (UPDATE_GOLDEN=1 to accept):\n{}",
            diff.join("\n")
        );
    }
}

#[test]
fn promtool_accepts_metrics_without_warnings() {
    let Some(promtool) = common::require_tool("promtool") else {
        return;
    };
    let text = render();
    let (ok, out) = common::promtool_check(&promtool, &text);
    assert!(ok, "promtool check metrics:\n{out}");
    // And the checker does catch a bad exposition: this test can fail.
    let (ok, out) =
        common::promtool_check(&promtool, "# TYPE poolwatch_bad counter\npoolwatch_bad 1\n");
    assert!(!ok, "promtool accepted a counter without _total: {out}");
}
