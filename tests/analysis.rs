//! Leak analysis end to end: a real throwaway PostgreSQL, the daemon, and clients that
//! push their pool statistics while they leak, or burst and release.

mod common;

use std::time::{Duration, Instant};

use common::{http, value, Daemon, Pg};

/// Short windows and holds so that a test sees in seconds what takes minutes by default.
fn config(url: &str) -> String {
    format!(
        "database:\n  url: {url}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\nanalysis:\n  interval_seconds: 0.3\n  window_seconds: 6\n  idle_in_use_seconds: 1\n  lifetime_grace_seconds: 0.5\n  disagreement_hold_seconds: 2\n"
    )
}

/// Pushes a pool snapshot; `lifetime` is the pool's max lifetime setting, if it has one.
async fn push(d: &Daemon, app: &str, open: usize, in_use: usize, lifetime: Option<u32>) {
    let lifetime = lifetime
        .map(|l| format!(r#","max_lifetime_seconds":{l}"#))
        .unwrap_or_default();
    let body = format!(
        r#"{{"max_open":100,"open":{open},"in_use":{in_use},"idle":{}{lifetime}}}"#,
        open - in_use
    );
    let r = d.push(&format!("/api/v1/pools/{app}/primary"), &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_never_closed_are_called_a_leak_and_named() {
    let pg = Pg::start();
    let d = Daemon::start(&config(&pg.url())).await;
    let suspected = r#"poolwatch_app_leak_suspected{app="leaky",instance=""}"#;
    let mut held = Vec::new();
    let started = Instant::now();
    let mut detected = None;
    while started.elapsed() < Duration::from_secs(25) {
        if held.len() < 25 {
            // Each "message" checks a connection out, runs its query, and never returns it.
            let c = pg.client("leaky").await;
            c.simple_query("SELECT id FROM generate_series(1, 10) AS id WHERE id = 42")
                .await
                .unwrap();
            held.push(c);
        }
        push(&d, "leaky", held.len(), held.len(), Some(2)).await;
        let m = d.metrics().await;
        if value(&m, suspected) == Some(1.0) {
            detected = Some((started.elapsed(), m));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (after, m) = detected.expect("leak_suspected never turned 1 within 25 s");
    eprintln!(
        "leak suspected after {after:?} and {} leaked connections",
        held.len()
    );
    let l = r#"{app="leaky",instance=""}"#;
    assert!(
        value(&m, &format!("poolwatch_app_server_connections{l}")).unwrap() >= 3.0,
        "{m}"
    );
    let reasons: Vec<&str> = m
        .lines()
        .filter(|x| x.starts_with(r#"poolwatch_app_leak_reason{app="leaky""#) && x.ends_with(" 1"))
        .collect();
    assert!(!reasons.is_empty(), "a leak has a reason:\n{m}");

    // The stuck connections, named with their query's fingerprint.
    let r = http(d.addr, "GET", "/api/v1/connections?app=leaky", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    let apps = j["applications"].as_array().unwrap();
    assert_eq!(apps.len(), 1, "{j}");
    assert_eq!(apps[0]["app"], "leaky");
    assert_eq!(apps[0]["leak_suspected"], true);
    let conns = apps[0]["connections"].as_array().unwrap();
    assert!(!conns.is_empty(), "stuck connections listed: {j}");
    let first = &conns[0];
    assert_eq!(first["state"], "idle");
    assert_eq!(first["wait_event"], "ClientRead");
    assert_eq!(first["application_name"], "leaky");
    assert_eq!(
        first["query"], "SELECT id FROM generate_series(?) AS id WHERE id = ?",
        "{first}"
    );
    assert!(first["pid"].as_i64().unwrap() > 0);
    assert!(first["state_age_seconds"].as_f64().unwrap() >= 1.0);
    let ages: Vec<f64> = conns
        .iter()
        .map(|c| c["state_age_seconds"].as_f64().unwrap())
        .collect();
    assert!(
        ages.windows(2).all(|w| w[0] >= w[1]),
        "oldest first: {ages:?}"
    );
    for c in conns {
        assert!(
            !c["query"].as_str().unwrap().contains("42"),
            "literals never leave the database: {c}"
        );
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_that_release_are_not_a_leak() {
    let pg = Pg::start();
    let d = Daemon::start(&config(&pg.url())).await;
    let suspected = r#"poolwatch_app_leak_suspected{app="bursty",instance=""}"#;
    // Two idle connections kept in the pool, as a pool's minimum would.
    let base = [pg.client("bursty").await, pg.client("bursty").await];
    let started = Instant::now();
    let mut polls = 0;
    let mut seen = false;
    // A sawtooth: 10 connections checked out together, held 1 s, all released; again.
    while started.elapsed() < Duration::from_secs(12) {
        let mut burst = Vec::new();
        for _ in 0..10 {
            let c = pg.client("bursty").await;
            c.simple_query("SELECT 1").await.unwrap();
            burst.push(c);
        }
        for _ in 0..4 {
            push(&d, "bursty", base.len() + burst.len(), burst.len(), None).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        drop(burst);
        for _ in 0..8 {
            push(&d, "bursty", base.len(), 0, None).await;
            tokio::time::sleep(Duration::from_millis(250)).await;
            let m = d.metrics().await;
            seen |= value(&m, suspected).is_some();
            let why: Vec<&str> = m
                .lines()
                .filter(|l| l.starts_with("poolwatch_app_"))
                .collect();
            assert_ne!(
                value(&m, suspected),
                Some(1.0),
                "a released burst called a leak:\n{}",
                why.join("\n")
            );
            polls += 1;
        }
    }
    assert!(
        seen && polls > 20,
        "the application was analysed ({polls} polls)"
    );
    d.stop().await;
}
