//! The server view against a real throwaway PostgreSQL.

mod common;

use std::time::Duration;

use common::{on_db, value, Daemon, Pg};

fn config(url: &str) -> String {
    format!(
        "database:\n  url: {url}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\n  connect_timeout_seconds: 2\n  reconnect_max_backoff_seconds: 0.3\n"
    )
}

const IDLE: &str = r#"poolwatch_pg_connections{datname="postgres",usename="postgres",application_name="leaky-app",state="idle",wait_event_type="Client",wait_event="ClientRead"}"#;
const IDLE_TX: &str = r#"poolwatch_pg_connections{datname="postgres",usename="postgres",application_name="leaky-app",state="idle in transaction",wait_event_type="Client",wait_event="ClientRead"}"#;
const TX_STATE_AGE: &str = r#"poolwatch_pg_oldest_state_age_seconds{datname="postgres",usename="postgres",application_name="leaky-app",state="idle in transaction"}"#;
const TX_AGE: &str = r#"poolwatch_pg_oldest_transaction_age_seconds{datname="postgres",usename="postgres",application_name="leaky-app",state="idle in transaction"}"#;
const IDLE_BACKEND_AGE: &str = r#"poolwatch_pg_oldest_backend_age_seconds{datname="postgres",usename="postgres",application_name="leaky-app",state="idle"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_connections_appear_with_labels_and_growing_ages() {
    let pg = Pg::start();
    let db = pg.database();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(pg.client("leaky-app").await);
    }
    for _ in 0..2 {
        let c = pg.client("leaky-app").await;
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
        held.push(c);
    }
    let d = Daemon::start(&config(&pg.url())).await;
    let m = d
        .wait_metrics(Duration::from_secs(10), "the held connections", |m| {
            value(m, &on_db(&db, IDLE)) == Some(3.0) && value(m, &on_db(&db, IDLE_TX)) == Some(2.0)
        })
        .await;
    assert_eq!(value(&m, &on_db(&db, "poolwatch_pg_up")), Some(1.0));
    assert_eq!(
        value(&m, &on_db(&db, "poolwatch_pg_max_connections")),
        Some(40.0)
    );
    assert_eq!(
        value(&m, &on_db(&db, "poolwatch_pg_reserved_connections")),
        Some(3.0)
    );
    assert!(
        value(&m, &on_db(&db, "poolwatch_pg_sample_duration_seconds"))
            .is_some_and(|d| d > 0.0 && d < 5.0)
    );
    assert!(value(&m, &on_db(&db, TX_AGE)).is_some(), "{m}");
    assert!(value(&m, &on_db(&db, IDLE_BACKEND_AGE)).is_some(), "{m}");
    assert!(
        !m.contains(r#"application_name="poolwatch""#),
        "poolwatch counted itself:\n{m}"
    );
    assert_eq!(
        pg.sessions_named("poolwatch").await,
        1,
        "poolwatch keeps exactly one session"
    );
    if let Some(promtool) = common::require_tool("promtool") {
        let (ok, out) = common::promtool_check(&promtool, &m);
        assert!(ok, "promtool check metrics on live output:\n{out}");
    }

    let first = value(&m, &on_db(&db, TX_STATE_AGE)).unwrap();
    let first_sample = value(
        &m,
        &on_db(&db, "poolwatch_pg_last_sample_timestamp_seconds"),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = d.metrics().await;
    let later = value(&m, &on_db(&db, TX_STATE_AGE)).unwrap();
    let later_sample = value(
        &m,
        &on_db(&db, "poolwatch_pg_last_sample_timestamp_seconds"),
    )
    .unwrap();
    assert!(later_sample > first_sample, "samples keep coming");
    assert!(
        later - first >= 1.0,
        "state age grows: {first} then {later}"
    );
    assert!(
        value(&m, &on_db(&db, TX_AGE)).unwrap() >= later,
        "the transaction is at least as old as its state"
    );

    // Connections that go away disappear from the next sample.
    held.truncate(1);
    d.wait_metrics(Duration::from_secs(10), "released connections gone", |m| {
        value(m, &on_db(&db, IDLE)) == Some(1.0) && value(m, &on_db(&db, IDLE_TX)).is_none()
    })
    .await;
    d.stop().await;
    // Shutdown closes the session.
    let mut gone = false;
    for _ in 0..50 {
        if pg.sessions_named("poolwatch").await == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "poolwatch's session outlived the daemon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_give_pg_up_0_then_1_with_never_two_sessions() {
    let pg = Pg::start();
    let db = pg.database();
    let d = Daemon::start(&config(&pg.url())).await;
    d.wait_metrics(Duration::from_secs(10), "pg_up 1", |m| {
        value(m, &on_db(&db, "poolwatch_pg_up")) == Some(1.0)
    })
    .await;
    for round in 0..3 {
        pg.stop_server();
        let m = d
            .wait_metrics(Duration::from_secs(10), "pg_up 0", |m| {
                value(m, &on_db(&db, "poolwatch_pg_up")) == Some(0.0)
            })
            .await;
        assert!(
            !m.contains("poolwatch_pg_connections{"),
            "stale server view shown while down:\n{m}"
        );
        assert!(
            !m.contains("\npoolwatch_pg_max_connections{"),
            "stale limits shown while down"
        );
        assert!(
            value(
                &m,
                &on_db(&db, "poolwatch_pg_last_sample_timestamp_seconds")
            )
            .is_some(),
            "time of the last success is kept"
        );
        pg.start_server();
        d.wait_metrics(Duration::from_secs(10), "pg_up 1 again", |m| {
            value(m, &on_db(&db, "poolwatch_pg_up")) == Some(1.0)
        })
        .await;
        // Watch for a while: never more than one session of ours.
        for _ in 0..10 {
            let n = pg.sessions_named("poolwatch").await;
            assert!(n <= 1, "round {round}: {n} poolwatch sessions");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(pg.sessions_named("poolwatch").await, 1);
    }
    let m = d.metrics().await;
    let errors: f64 = m
        .lines()
        .filter(|l| l.starts_with("poolwatch_pg_sample_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(
        errors >= 3.0,
        "each outage counted at least once: {errors}\n{m}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_at_start_then_up() {
    let pg = Pg::start();
    let db = pg.database();
    pg.stop_server();
    let d = Daemon::start(&config(&pg.url())).await;
    let m = d
        .wait_metrics(Duration::from_secs(10), "a failed connect", |m| {
            value(
                m,
                &on_db(&db, r#"poolwatch_pg_sample_errors_total{kind="connect"}"#),
            )
            .is_some_and(|v| v >= 1.0)
        })
        .await;
    assert_eq!(value(&m, &on_db(&db, "poolwatch_pg_up")), Some(0.0));
    assert!(
        !m.contains("\npoolwatch_pg_last_sample_timestamp_seconds{"),
        "no success yet"
    );
    assert_eq!(
        common::http(d.addr, "GET", "/readyz", None).await.status,
        200,
        "serving while the database is down"
    );
    pg.start_server();
    d.wait_metrics(Duration::from_secs(10), "pg_up 1", |m| {
        value(m, &on_db(&db, "poolwatch_pg_up")) == Some(1.0)
    })
    .await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_monitor_sees_every_role_a_plain_role_only_its_own() {
    let pg = Pg::start();
    let db = pg.database();
    let admin = pg.client("admin").await;
    admin
        .batch_execute("CREATE ROLE watcher LOGIN PASSWORD 'watcher-pw'; GRANT pg_monitor TO watcher; CREATE ROLE plain LOGIN PASSWORD 'plain-pw';")
        .await
        .unwrap();
    let _held = pg.client("leaky-app").await;
    let d = Daemon::start(&config(&pg.url_as("watcher", "watcher-pw"))).await;
    let m = d
        .wait_metrics(Duration::from_secs(10), "leaky-app seen", |m| {
            value(m, &on_db(&db, IDLE)) == Some(1.0)
        })
        .await;
    assert!(
        !m.contains(r#"usename="watcher""#),
        "own session excluded:\n{m}"
    );
    d.stop().await;

    // Without pg_monitor the server hides other roles' backends entirely (their
    // backend_type reads NULL): only the role's own sessions are visible.
    let mut cfg: tokio_postgres::Config = pg.url_as("plain", "plain-pw").parse().unwrap();
    cfg.application_name("plain-app");
    let (_plain, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let d = Daemon::start(&config(&pg.url_as("plain", "plain-pw"))).await;
    let own = r#"poolwatch_pg_connections{datname="postgres",usename="plain",application_name="plain-app",state="idle",wait_event_type="Client",wait_event="ClientRead"}"#;
    let m = d
        .wait_metrics(Duration::from_secs(10), "own role's session", |m| {
            value(m, &on_db(&db, own)) == Some(1.0)
        })
        .await;
    assert!(
        !m.contains("leaky-app"),
        "other roles' backends are hidden without pg_monitor:\n{m}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_never_in_metrics() {
    let pg = Pg::start();
    let db = pg.database();
    let admin = pg.client("admin").await;
    admin
        .batch_execute(
            "CREATE ROLE watcher LOGIN PASSWORD 'hunter2-secret'; GRANT pg_monitor TO watcher;",
        )
        .await
        .unwrap();
    let d = Daemon::start(&config(&pg.url_as("watcher", "hunter2-secret"))).await;
    let m = d
        .wait_metrics(Duration::from_secs(10), "pg_up 1", |m| {
            value(m, &on_db(&db, "poolwatch_pg_up")) == Some(1.0)
        })
        .await;
    assert!(!m.contains("hunter2"));
    pg.stop_server();
    let m = d
        .wait_metrics(Duration::from_secs(10), "pg_up 0", |m| {
            value(m, &on_db(&db, "poolwatch_pg_up")) == Some(0.0)
        })
        .await;
    assert!(!m.contains("hunter2"));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_on_the_view_trips_lock_timeout_and_keeps_the_session() {
    let pg = Pg::start();
    let db = pg.database();
    let d = Daemon::start(&config(&pg.url())).await;
    d.wait_metrics(Duration::from_secs(10), "pg_up 1", |m| {
        value(m, &on_db(&db, "poolwatch_pg_up")) == Some(1.0)
    })
    .await;
    let locker = pg.client("locker").await;
    locker
        .batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_stat_activity IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let m = d
        .wait_metrics(Duration::from_secs(10), "a lock_timeout", |m| {
            value(
                m,
                &on_db(
                    &db,
                    r#"poolwatch_pg_sample_errors_total{kind="lock_timeout"}"#,
                ),
            )
            .is_some_and(|v| v >= 2.0)
        })
        .await;
    assert_eq!(value(&m, &on_db(&db, "poolwatch_pg_up")), Some(0.0));
    // A server-side timeout leaves the session healthy: it is kept, not reopened.
    assert_eq!(
        value(
            &m,
            &on_db(&db, r#"poolwatch_pg_sample_errors_total{kind="connect"}"#)
        ),
        Some(0.0)
    );
    locker.batch_execute("ROLLBACK").await.unwrap();
    d.wait_metrics(Duration::from_secs(10), "pg_up 1 after the lock", |m| {
        value(m, &on_db(&db, "poolwatch_pg_up")) == Some(1.0)
    })
    .await;
    assert_eq!(pg.sessions_named("poolwatch").await, 1);
    d.stop().await;
}
