//! The client examples, built with the real toolchains and run against the daemon and a
//! throwaway PostgreSQL.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{require_tool, value, Daemon, Pg};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_example_pushes_db_stats_as_encoding_json_writes_them() {
    let Some(go) = require_tool("go") else { return };
    let bin = common::temp_path("go-dbstats");
    let gocache = common::temp_path("gocache");
    let out = Command::new(&go)
        .args(["build", "-o", bin.to_str().unwrap(), "."])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/go-dbstats"))
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOPROXY", "off")
        .env("GOCACHE", &gocache)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "go build: {}",
        String::from_utf8_lossy(&out.stderr)
    );

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
    let l = r#"{app="go-dbstats",pool="primary",instance="pod-go"}"#;
    assert_eq!(
        value(&m, &format!("poolwatch_pool_in_use_connections{l}")),
        Some(2.0),
        "{m}"
    );
    assert_eq!(
        value(&m, &format!("poolwatch_pool_open_connections{l}")),
        Some(3.0),
        "two held, one pinged"
    );
    assert_eq!(
        value(&m, &format!("poolwatch_pool_max_open_connections{l}")),
        Some(10.0)
    );
    assert_eq!(
        value(&m, &format!("poolwatch_pool_max_lifetime_seconds{l}")),
        Some(1800.0)
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
    let _ = std::fs::remove_dir_all(gocache);
}
