//! TLS to PostgreSQL with rustls: `disable`, `require` and `verify-full`, against a
//! throwaway cluster with a certificate made for the test by `openssl`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{on_db, require_tool, value, Daemon, Pg};

fn config(url: &str, extra: &str) -> String {
    format!("database:\n  url: {url}\n  name: {DB}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\n{extra}")
}

/// `database.name`, whichever host name the URL uses.
const DB: &str = "pg-tls";

fn url(pg: &Pg, host: &str, sslmode: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/postgres?sslmode={sslmode}",
        pg.port
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmodes_against_a_tls_server() {
    if require_tool("openssl").is_none() {
        return;
    }
    let certs = common::temp_path("certs");
    common::make_certs(&certs, "/CN=poolwatch test CA");
    let other: PathBuf = certs.join("other");
    common::make_certs(&other, "/CN=some other CA");
    let pg = Pg::start();
    pg.enable_ssl(&certs).await;
    let up = |m: &str| value(m, &on_db(DB, "poolwatch_pg_up")) == Some(1.0);

    // require: encrypted, certificate not checked (an unknown CA is fine).
    let d = Daemon::start(&config(&url(&pg, "127.0.0.1", "require"), "")).await;
    d.wait_metrics(Duration::from_secs(10), "pg_up 1 with require", up)
        .await;
    assert!(pg.poolwatch_uses_ssl().await, "require must encrypt");
    d.stop().await;

    // verify-full with the right CA and host name.
    let ca = certs.join("ca.crt");
    let d = Daemon::start(&config(
        &url(&pg, "localhost", "verify-full"),
        &format!("  ca_file: {}\n", ca.display()),
    ))
    .await;
    d.wait_metrics(Duration::from_secs(10), "pg_up 1 with verify-full", up)
        .await;
    assert!(pg.poolwatch_uses_ssl().await);
    d.stop().await;

    // verify-full with a CA that did not sign the certificate: refused, counted as tls.
    let wrong = other.join("ca.crt");
    let d = Daemon::start(&config(
        &url(&pg, "localhost", "verify-full"),
        &format!("  ca_file: {}\n", wrong.display()),
    ))
    .await;
    let m = d
        .wait_metrics(Duration::from_secs(10), "a tls error", |m| {
            value(
                m,
                &on_db(DB, r#"poolwatch_pg_sample_errors_total{kind="tls"}"#),
            )
            .is_some_and(|v| v >= 1.0)
        })
        .await;
    assert_eq!(value(&m, &on_db(DB, "poolwatch_pg_up")), Some(0.0));
    d.stop().await;

    // disable: plain TCP.
    let d = Daemon::start(&config(&url(&pg, "127.0.0.1", "disable"), "")).await;
    d.wait_metrics(Duration::from_secs(10), "pg_up 1 with disable", up)
        .await;
    assert!(!pg.poolwatch_uses_ssl().await, "disable must not encrypt");
    d.stop().await;
    let _ = std::fs::remove_dir_all(&certs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_against_a_server_without_tls_fails_as_tls() {
    let pg = Pg::start();
    let d = Daemon::start(&config(&url(&pg, "127.0.0.1", "require"), "")).await;
    let m = d
        .wait_metrics(Duration::from_secs(10), "a tls error", |m| {
            value(
                m,
                &on_db(DB, r#"poolwatch_pg_sample_errors_total{kind="tls"}"#),
            )
            .is_some_and(|v| v >= 1.0)
        })
        .await;
    assert_eq!(value(&m, &on_db(DB, "poolwatch_pg_up")), Some(0.0));
    assert_eq!(pg.sessions_named("poolwatch").await, 0);
    d.stop().await;
}
