//! Leak analysis end to end: a real throwaway PostgreSQL, the daemon, and clients that
//! push their pool statistics while they leak, or run a burst and release it.

mod common;

use std::time::{Duration, Instant};

use common::{http, lines_starting, reasons, value, Daemon, Pg};

/// Fast samples and a small evidence threshold, so that a test sees in seconds what takes
/// a minute at the defaults: a stuck connection counts after 1 s, ten of them decide
/// after 2 s more.
fn config(url: &str) -> String {
    format!(
        "database:\n  url: {url}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\nanalysis:\n  interval_seconds: 0.3\n  window_seconds: 60\n  idle_in_use_seconds: 1\n  stuck_connection_seconds: 20\n"
    )
}

/// Pushes a pool snapshot: `open` connections, `in_use` of them checked out.
async fn push(d: &Daemon, app: &str, open: usize, in_use: usize) {
    let body = format!(
        r#"{{"max_open":100,"open":{open},"in_use":{in_use},"idle":{}}}"#,
        open - in_use
    );
    let r = d.push(&format!("/api/v1/pools/{app}/primary"), &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_never_closed_are_called_a_leak_by_their_idle_checked_out_connections() {
    let pg = Pg::start();
    let d = Daemon::start(&config(&pg.url())).await;
    let db = pg.database();
    let suspected = &format!(r#"poolwatch_app_leak_suspected{{database="{db}",app="leaky"}}"#);
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
        push(&d, "leaky", held.len(), held.len()).await;
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
    // Exactly the evidence of rows never closed: checked out, idle on the server. No pool
    // lifetime is pushed, the views agree on the count, and growth is not used where the
    // views can be compared.
    assert_eq!(reasons(&m, "leaky"), ["idle_in_use"], "{m}");
    let l = format!(r#"{{database="{db}",app="leaky"}}"#);
    let stuck = value(&m, &format!("poolwatch_app_idle_in_use_connections{l}")).unwrap();
    assert!(stuck >= 1.0, "{m}");
    assert_eq!(
        value(&m, &format!("poolwatch_app_stuck_connections{l}")),
        Some(stuck)
    );
    assert!(value(&m, &format!("poolwatch_app_stuck_connection_seconds{l}")).unwrap() >= 20.0);
    // The rate the stuck connections accumulated at gives the growth at once.
    assert!(
        value(
            &m,
            &format!("poolwatch_app_connection_growth_per_second{l}")
        )
        .unwrap()
            > 0.0
    );

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
async fn a_burst_released_after_a_push_is_not_counted_as_checked_out() {
    let pg = Pg::start();
    let d = Daemon::start(&config(&pg.url())).await;
    let app = "bursty";
    let db = pg.database();
    let suspected = format!(r#"poolwatch_app_leak_suspected{{database="{db}",app="{app}"}}"#);
    let idle_in_use =
        format!(r#"poolwatch_app_idle_in_use_connections{{database="{db}",app="{app}"}}"#);
    // The pool's connections, kept open; two stay idle in the pool throughout.
    let mut conns = Vec::new();
    for _ in 0..12 {
        conns.push(std::sync::Arc::new(pg.client(app).await));
    }
    push(&d, app, 12, 0).await;
    let started = Instant::now();
    let mut polls = 0;
    while started.elapsed() < Duration::from_secs(15) {
        // Ten callers check a connection out and run a query; the application pushes
        // while they run (in use 10)...
        let running: Vec<_> = conns[2..]
            .iter()
            .map(|c| {
                let c = c.clone();
                tokio::spawn(
                    async move { c.simple_query("SELECT pg_sleep(0.6)").await.map(|_| ()) },
                )
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        push(&d, app, 12, 10).await;
        // ...then the queries end and the connections go back to the pool, idle on the
        // server. The next push comes 3 s later: meanwhile the latest push still says
        // ten in use while the server shows them all idle, for longer than the floor.
        for r in running {
            r.await.unwrap().expect("query");
        }
        let released = Instant::now();
        while released.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let m = d.metrics().await;
            assert_ne!(
                value(&m, &suspected),
                Some(1.0),
                "a released burst called a leak:\n{}",
                lines_starting(&m, "poolwatch_app_").join("\n")
            );
            if let Some(n) = value(&m, &idle_in_use) {
                assert_eq!(n, 0.0, "released connections counted as checked out");
                polls += 1;
            }
        }
        push(&d, app, 12, 0).await;
    }
    assert!(polls > 20, "the views were compared ({polls} polls)");
    d.stop().await;
}
