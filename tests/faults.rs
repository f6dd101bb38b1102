//! Faults against a real throwaway PostgreSQL: poolwatch must never crash, hang its
//! `/metrics`, lie in `pg_up`, or hold more than one session, and must recover within an
//! interval once the database is back.

mod common;

use std::time::{Duration, Instant};

use common::{on_db, value, Daemon, Pg};

fn config(url: &str, extra: &str) -> String {
    format!(
        "database:\n  url: {url}\n  interval_seconds: 0.2\n  statement_timeout_seconds: 0.2\n  lock_timeout_seconds: 0.1\n  connect_timeout_seconds: 1\n  reconnect_max_backoff_seconds: 0.2\n{extra}"
    )
}

/// `/metrics` within 2 s, or the test fails: a scrape must never wait on the database.
async fn scrape(d: &Daemon) -> String {
    tokio::time::timeout(Duration::from_secs(2), d.metrics())
        .await
        .expect("/metrics answered within 2 s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_restarts_under_load() {
    let pg = Pg::start();
    let db = pg.database();
    let d = Daemon::start(&config(&pg.url(), "")).await;
    d.wait_metrics(Duration::from_secs(10), "pg_up 1", |m| {
        value(m, &on_db(&db, "poolwatch_pg_up")) == Some(1.0)
    })
    .await;
    // Load: pushes and scrapes all along, from another task.
    let addr = d.push_addr;
    let stop = tokio_util::sync::CancellationToken::new();
    let load = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut n = 0u64;
            while !stop.is_cancelled() {
                let body = format!(r#"{{"open":{},"in_use":1,"idle":{}}}"#, n % 10 + 1, n % 10);
                let r = common::http(
                    addr,
                    "POST",
                    &format!("/api/v1/pools/load/p{}", n % 20),
                    Some(body.as_bytes()),
                )
                .await;
                assert_eq!(r.status, 200, "{}", r.body);
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            n
        }
    });
    let started = Instant::now();
    let mut worst_recovery = Duration::ZERO;
    for round in 0..50 {
        pg.stop_server();
        let deadline = Instant::now() + Duration::from_secs(10);
        while value(&scrape(&d).await, &on_db(&db, "poolwatch_pg_up")) != Some(0.0) {
            assert!(
                Instant::now() < deadline,
                "round {round}: pg_up stayed 1 with the database down"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pg.start_server();
        let back = Instant::now();
        loop {
            let m = scrape(&d).await;
            if value(&m, &on_db(&db, "poolwatch_pg_up")) == Some(1.0) {
                break;
            }
            assert!(
                back.elapsed() < Duration::from_secs(10),
                "round {round}: no recovery within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        worst_recovery = worst_recovery.max(back.elapsed());
        let n = pg.sessions_named("poolwatch").await;
        assert!(n <= 1, "round {round}: {n} poolwatch sessions");
    }
    stop.cancel();
    let pushes = load.await.unwrap();
    eprintln!(
        "50 restarts in {:?}; slowest recovery {worst_recovery:?}; {pushes} pushes meanwhile",
        started.elapsed()
    );
    // Interval 0.2 s and backoff capped at 0.2 s: back within an interval plus a connect.
    assert!(
        worst_recovery < Duration::from_secs(3),
        "slowest recovery {worst_recovery:?}"
    );
    let m = scrape(&d).await;
    assert_eq!(
        value(&m, &on_db(&db, "poolwatch_pools_tracked")),
        Some(20.0)
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_backend_killed() {
    let pg = Pg::start();
    let db = pg.database();
    let d = Daemon::start(&config(&pg.url(), "")).await;
    d.wait_metrics(Duration::from_secs(10), "pg_up 1", |m| {
        value(m, &on_db(&db, "poolwatch_pg_up")) == Some(1.0)
    })
    .await;
    let admin = pg.client("admin").await;
    let lost = |m: &str| {
        value(
            m,
            &on_db(
                &db,
                r#"poolwatch_pg_sample_errors_total{kind="connection_lost"}"#,
            ),
        )
        .unwrap_or(0.0)
            + value(
                m,
                &on_db(&db, r#"poolwatch_pg_sample_errors_total{kind="query"}"#),
            )
            .unwrap_or(0.0)
    };
    for round in 0..3 {
        let before = lost(&d.metrics().await);
        let killed: i64 = admin
            .query_one("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'poolwatch'", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(killed, 1, "round {round}");
        d.wait_metrics(
            Duration::from_secs(10),
            "the lost connection counted",
            |m| lost(m) > before,
        )
        .await;
        d.wait_metrics(Duration::from_secs(10), "pg_up 1 again", |m| {
            value(m, &on_db(&db, "poolwatch_pg_up")) == Some(1.0)
        })
        .await;
        // Reconnected: exactly one session again, never two meanwhile.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let n = pg.sessions_named("poolwatch").await;
            assert!(n <= 1, "round {round}: {n} sessions");
            if n == 1 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no session after reconnecting"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_exhausted_by_others() {
    // 8 slots, 3 reserved for superusers: 5 for ordinary roles.
    let pg = Pg::start_with(&[
        "-c",
        "max_connections=8",
        "-c",
        "superuser_reserved_connections=3",
    ]);
    let admin = pg.client("admin").await;
    admin
        .batch_execute(
            "CREATE ROLE app LOGIN; CREATE ROLE watcher LOGIN; GRANT pg_monitor TO watcher;",
        )
        .await
        .unwrap();
    drop(admin);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let app_client = |name: &'static str| {
        let url = format!(
            "postgres://app@127.0.0.1:{}/postgres?sslmode=disable&application_name={name}",
            pg.port
        );
        async move {
            let (c, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            Ok::<_, tokio_postgres::Error>(c)
        }
    };
    let watch_url = pg.url_as("watcher", "");
    let db = pg.database();
    let d = Daemon::start(&config(&watch_url, "")).await;
    d.wait_metrics(Duration::from_secs(10), "pg_up 1", |m| {
        value(m, &on_db(&db, "poolwatch_pg_up")) == Some(1.0)
    })
    .await;
    // Others take every remaining ordinary slot (5 - poolwatch's 1 = 4).
    let mut pile = Vec::new();
    for _ in 0..4 {
        pile.push(app_client("pile").await.expect("a free slot"));
    }
    assert!(app_client("pile").await.is_err(), "the server is full");
    let full = r#"poolwatch_pg_connections{datname="postgres",usename="app",application_name="pile",state="idle",wait_event_type="Client",wait_event="ClientRead"}"#;
    let m = d
        .wait_metrics(Duration::from_secs(10), "the pile reported", |m| {
            value(m, &on_db(&db, full)) == Some(4.0)
        })
        .await;
    assert_eq!(
        value(&m, &on_db(&db, "poolwatch_pg_max_connections")),
        Some(8.0)
    );
    assert_eq!(
        value(&m, &on_db(&db, "poolwatch_pg_reserved_connections")),
        Some(3.0)
    );
    d.stop().await;

    // poolwatch restarting into a full server reports it and does not join the pile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    pile.push(app_client("pile").await.expect("poolwatch's freed slot"));
    let d = Daemon::start(&config(&watch_url, "")).await;
    let m = d
        .wait_metrics(
            Duration::from_secs(10),
            "too_many_connections counted",
            |m| {
                value(
                    m,
                    &on_db(
                        &db,
                        r#"poolwatch_pg_sample_errors_total{kind="too_many_connections"}"#,
                    ),
                )
                .is_some_and(|v| v >= 2.0)
            },
        )
        .await;
    assert_eq!(value(&m, &on_db(&db, "poolwatch_pg_up")), Some(0.0));
    assert_eq!(pg.sessions_named("poolwatch").await, 0);
    pile.pop();
    d.wait_metrics(Duration::from_secs(10), "pg_up 1 once a slot frees", |m| {
        value(m, &on_db(&db, "poolwatch_pg_up")) == Some(1.0)
    })
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_peer_trips_the_connect_timeout() {
    // Accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let db = addr.to_string();
    let keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming().take(20) {
            held.push(s);
        }
        held.len()
    });
    let d = Daemon::start(&config(
        &format!("postgres://watcher@{addr}/postgres?sslmode=disable"),
        "",
    ))
    .await;
    let started = Instant::now();
    let m = d
        .wait_metrics(Duration::from_secs(10), "connect timeouts", |m| {
            value(
                m,
                &on_db(
                    &db,
                    r#"poolwatch_pg_sample_errors_total{kind="connect_timeout"}"#,
                ),
            )
            .is_some_and(|v| v >= 2.0)
        })
        .await;
    assert_eq!(value(&m, &on_db(&db, "poolwatch_pg_up")), Some(0.0));
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "two 1-second timeouts took {:?}",
        started.elapsed()
    );
    // Scrapes stay fast throughout.
    for _ in 0..5 {
        let t = Instant::now();
        scrape(&d).await;
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "scrape took {:?}",
            t.elapsed()
        );
    }
    d.stop().await;
    drop(keep);
}
