//! Benchmark: one analysis tick and one `/metrics` render at the sizes of issue 3
//! (1,000 pools and 5,000 backends) and a smaller step for the growth, wall time on this
//! machine (medians of repeated runs), plus the history bytes held. Not a test: run it
//! with `cargo bench --bench analysis` and copy the table into docs/benchmarks.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use poolwatch::app::Core;
use poolwatch::ingest::{PoolKey, PoolPush, PoolSnapshot};
use poolwatch::sampler::activity::{aggregate, Backend};
use poolwatch::sampler::settings::Limits;
use poolwatch::sampler::{Sample, ServerState};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `apps` applications with `pools / apps` pools each and `backends` backends spread
/// over them, idle in ClientRead with varied ages.
fn run(pools: usize, backends: usize) -> (Duration, Duration, usize, (usize, usize), usize) {
    let flags = vec![
        (
            "database.url",
            "postgres://watcher@db.example:5432/shop".to_string(),
        ),
        ("pools.max_pools", "100000".to_string()),
    ];
    let cfg = poolwatch::config::load(None, &flags, &|_| None).expect("valid");
    let mut core = Core::new(&cfg).expect("core");
    let apps = (pools / 5).max(1);
    let pushes: Vec<PoolPush> = (0..pools)
        .map(|i| PoolPush {
            key: PoolKey {
                app: format!("app-{:04}", i % apps),
                pool: format!("pool-{}", i / apps),
                instance: format!("pod-{}", i % 7),
            },
            snapshot: PoolSnapshot {
                max_open: Some(25),
                open: 5,
                in_use: Some(3),
                idle: Some(2),
                wait_count: Some(1),
                max_lifetime_seconds: Some(1800.0),
                application_name: format!("app-{:04}", i % apps),
                ..Default::default()
            },
        })
        .collect();
    core.store
        .apply(pushes, Instant::now(), 1.8e9)
        .expect("stored");
    let rows: Vec<Backend> = (0..backends)
        .map(|i| Backend {
            pid: i as i32,
            datname: "shop".into(),
            usename: "app".into(),
            application_name: format!("app-{:04}", i % apps),
            client_addr: "10.0.0.7".into(),
            state: if i % 3 == 0 {
                "active".into()
            } else {
                "idle".into()
            },
            wait_event_type: "Client".into(),
            wait_event: "ClientRead".into(),
            backend_age: Some((i % 4000) as f64),
            xact_age: None,
            state_age: Some((i % 600) as f64),
            query: "SELECT * FROM orders WHERE id = $1".into(),
        })
        .collect();
    let sampler = core.sampler.take().expect("database configured");
    let mut ticks = Vec::new();
    let mut renders = Vec::new();
    let mut bytes = 0;
    // 70 ticks, 15 s apart: the history fills its window (61 points) before the end.
    for t in 0..70 {
        let now = 1.8e9 + 15.0 * f64::from(t);
        let sample = Sample {
            at_unix: now,
            limits: Limits {
                max_connections: 10_000,
                reserved_connections: 3,
                server_time_unix: now,
            },
            aggregates: aggregate(&rows, 200),
            backends: rows.clone(),
            own_client_port: None,
            connection_limits: Default::default(),
            own_sessions: 1,
        };
        sampler.publish(ServerState {
            up: true,
            sample: Some(Arc::new(sample)),
            last_success_unix: Some(now),
            last_duration_seconds: Some(0.01),
        });
        let started = Instant::now();
        core.ticker.tick_at(now, None);
        ticks.push(started.elapsed());
        let started = Instant::now();
        let out = poolwatch::metrics::encode(&core.registry, &core.views);
        renders.push(started.elapsed());
        bytes = out.len();
    }
    let report = core.reports.borrow().clone();
    let tracked = report
        .findings
        .as_ref()
        .map(|f| f.tracked_apps)
        .unwrap_or(0);
    (
        median(ticks[10..].to_vec()),
        median(renders[10..].to_vec()),
        bytes,
        report.history_bytes,
        tracked,
    )
}

fn main() {
    println!("| pools | backends | analysis tick (median) | /metrics render (median) | /metrics size | apps tracked |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut history = (0, 0);
    for (pools, backends) in [(100, 500), (1_000, 5_000), (2_000, 10_000)] {
        let (tick, render, size, h, apps) = run(pools, backends);
        history = h;
        println!(
            "| {pools} | {backends} | {:.2} ms | {:.2} ms | {} KiB | {apps} |",
            tick.as_secs_f64() * 1e3,
            render.as_secs_f64() * 1e3,
            size / 1024
        );
    }
    println!("\nhistory held: {} bytes per application, {} bytes per pool (defaults: 15 s interval, 900 s window)", history.0, history.1);
}
