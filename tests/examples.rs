//! The client examples, built with the real toolchains and run against the daemon and a
//! throwaway PostgreSQL.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{assert_series, require_tool, value, Daemon, Pg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_example_pushes_db_stats_as_encoding_json_writes_them() {
    let Some(bin) = common::go_build("go-dbstats") else {
        return;
    };
    let pg = Pg::start();
    let d = Daemon::start(&format!(
        "database:\n  url: {}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\n",
        pg.url()
    ))
    .await;
    let out = tokio::task::spawn_blocking({
        let bin = bin.clone();
        let push = d.push_addr;
        let url = pg.url();
        move || {
            Command::new(bin)
                .env("POOLWATCH_URL", format!("http://{push}"))
                .env("DATABASE_URL", url)
                .env("APP", "go-dbstats")
                .env("POD_NAME", "pod-go")
                .env("PUSHES", "1")
                .env("HOLD", "2")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(r#""InUse":2"#) && stdout.contains(r#""MaxOpenConnections":10"#),
        "{stdout}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("rejected"),
        "push rejected"
    );

    let m = d
        .wait_metrics(Duration::from_secs(5), "the Go pool", |m| {
            m.contains(r#"app="go-dbstats""#)
        })
        .await;
    assert_series(
        &m,
        r#"{app="go-dbstats",pool="primary",instance="pod-go"}"#,
        &[
            ("poolwatch_pool_in_use_connections", 2.0),
            // Two held, one pinged.
            ("poolwatch_pool_open_connections", 3.0),
            ("poolwatch_pool_max_open_connections", 10.0),
            ("poolwatch_pool_max_lifetime_seconds", 1800.0),
        ],
    );
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="dbstats",outcome="accepted"}"#
        ),
        Some(1.0)
    );
    d.stop().await;
    let _ = std::fs::remove_file(bin);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_client_golang_push_is_analysed_unchanged() {
    let Some(bin) = common::go_build("clients/go-push") else {
        return;
    };
    let pg = Pg::start();
    let d = Daemon::start(&format!(
        "database:\n  url: {}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\nanalysis:\n  interval_seconds: 0.3\n  window_seconds: 6\n",
        pg.url()
    ))
    .await;
    let mut child = Command::new(&bin)
        .env("POOLWATCH_URL", format!("http://{}", d.push_addr))
        .env(
            "DATABASE_URL",
            format!("{}&application_name=billing", pg.url()),
        )
        .env("POD_NAME", "pod-go")
        .env("HOLD", "2")
        .env("EVERY", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pool = r#"{app="billing",pool="orders",instance="pod-go"}"#;
    let app = r#"{app="billing",instance=""}"#;
    let m = d
        .wait_metrics(
            Duration::from_secs(20),
            "the pushed pool, joined with the server view",
            |m| {
                value(m, &format!("poolwatch_pool_in_use_connections{pool}")) == Some(2.0)
                    && value(m, &format!("poolwatch_app_server_connections{app}")) == Some(2.0)
            },
        )
        .await;
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "{}",
        m.lines()
            .filter(|l| l.contains(r#"app="billing""#))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_series(
        &m,
        pool,
        &[
            ("poolwatch_pool_open_connections", 2.0),
            ("poolwatch_pool_max_open_connections", 10.0),
        ],
    );
    assert_series(
        &m,
        app,
        &[
            ("poolwatch_app_pool_open_connections", 2.0),
            ("poolwatch_app_unaccounted_connections", 0.0),
            ("poolwatch_app_leak_suspected", 0.0),
        ],
    );
    assert!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="protobuf",outcome="accepted"}"#
        )
        .unwrap()
            >= 1.0
    );
    assert!(
        value(&m, "poolwatch_ingest_ignored_families_total").unwrap() > 0.0,
        "go_* families ignored"
    );
    let _ = std::fs::remove_file(bin);
}

/// Whether `python3` can import `modules`; under CI it must.
fn python_with(modules: &str) -> bool {
    if require_tool("python3").is_none() {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !common::in_ci(),
            "python3 cannot import {modules} under CI (.ci/run installs them)"
        );
        eprintln!("SKIPPED: python3 cannot import {modules}; run .ci/run to install them");
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_push_to_gateway_with_psycopg_pool() {
    if !python_with("prometheus_client, psycopg_pool") {
        return;
    }
    let pg = Pg::start();
    let d = Daemon::start(&format!(
        "database:\n  url: {}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\nanalysis:\n  interval_seconds: 0.3\n  window_seconds: 6\n",
        pg.url()
    ))
    .await;
    let mut child = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/examples/clients/python-push/push.py"
        ))
        .env("POOLWATCH", d.push_addr.to_string())
        .env("DATABASE_URL", pg.url())
        .env("POD_NAME", "pod-py")
        .env("HOLD", "3")
        .env("EVERY", "0.5")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pool = r#"{app="reports",pool="main",instance="pod-py"}"#;
    let app = r#"{app="reports",instance=""}"#;
    let m = d
        .wait_metrics(
            Duration::from_secs(30),
            "the Python pool, joined with the server view",
            |m| {
                value(m, &format!("poolwatch_pool_in_use_connections{pool}")) == Some(3.0)
                    && value(m, &format!("poolwatch_app_server_connections{app}"))
                        .is_some_and(|v| v >= 3.0)
            },
        )
        .await;
    let _ = child.kill();
    let _ = child.wait();
    assert_series(
        &m,
        pool,
        &[
            ("poolwatch_pool_max_open_connections", 10.0),
            ("poolwatch_pool_waiting", 0.0),
        ],
    );
    let open = value(&m, &format!("poolwatch_pool_open_connections{pool}")).unwrap();
    assert!(open >= 3.0, "open = in use + idle: {open}");
    assert!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="text",outcome="accepted"}"#
        )
        .unwrap()
            >= 1.0
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pg_pool_pushes_json() {
    let Some(node) = require_tool("node") else {
        return;
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/clients/node-pg");
    if !std::path::Path::new(dir).join("node_modules/pg").is_dir() {
        assert!(
            !common::in_ci(),
            "examples/clients/node-pg/node_modules missing under CI (.ci/run runs npm ci there)"
        );
        eprintln!("SKIPPED: run `npm ci` in {dir}");
        return;
    }
    let pg = Pg::start();
    let d = Daemon::start(&format!(
        "database:\n  url: {}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\nanalysis:\n  interval_seconds: 0.3\n  window_seconds: 6\n",
        pg.url()
    ))
    .await;
    let out = tokio::task::spawn_blocking({
        let push = d.push_addr;
        let url = pg.url();
        move || {
            Command::new(node)
                .arg("push.js")
                .current_dir(dir)
                .env("POOLWATCH_URL", format!("http://{push}"))
                .env("DATABASE_URL", url)
                .env("POD_NAME", "pod-node")
                .env("HOLD", "2")
                .env("PUSHES", "1")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let m = d.metrics().await;
    assert_series(
        &m,
        r#"{app="web",pool="main",instance="pod-node"}"#,
        &[
            ("poolwatch_pool_in_use_connections", 2.0),
            ("poolwatch_pool_open_connections", 2.0),
            ("poolwatch_pool_max_open_connections", 10.0),
            ("poolwatch_pool_waiting", 0.0),
        ],
    );
    d.stop().await;
}
