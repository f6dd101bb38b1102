//! Limits below `max_connections`, end to end on a real throwaway PostgreSQL: a role with
//! `CONNECTION LIMIT 10` and a database with `CONNECTION LIMIT 8`, each reached by a client
//! that leaks connections one after another while it pushes its pool statistics as an
//! application would. poolwatch exports the limit, and the application's server-side
//! time to exhaustion is against that limit (`limit="role"`, `limit="database"`), falling
//! to 0 when the leak reaches it; the server then refuses the next connection with
//! SQLSTATE 53300 (too_many_connections).
//!
//! Shortened settings, so a leak that would take minutes at the defaults takes seconds:
//! samples and analysis ticks every 0.3 s (default 15 s), `analysis.window_seconds` 60
//! (so the growth is fitted over the last 20 s), one leaked connection about every
//! second; `database.max_connection_limits` 2 (default 100) to see the bound. Run with
//! `--nocapture` to see the (connections, eta) pairs.

mod common;

use std::time::{Duration, Instant};

use common::{on_db, value, Daemon, Pg};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

fn config(url: &str) -> String {
    format!(
        "database:\n  url: {url}\n  max_connection_limits: 2\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\nanalysis:\n  interval_seconds: 0.3\n  window_seconds: 60\n"
    )
}

/// A session as `user` on `dbname`, named `app`.
async fn connect(
    pg: &Pg,
    user: &str,
    dbname: &str,
    app: &str,
) -> Result<Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(pg.port)
        .user(user)
        .dbname(dbname)
        .application_name(app)
        .connect(NoTls)
        .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Pushes the leaking pool: every connection it opened is checked out.
async fn push(d: &Daemon, app: &str, open: usize) {
    let body = format!(r#"{{"max_open":100,"open":{open},"in_use":{open},"idle":0}}"#);
    let r = d.push(&format!("/api/v1/pools/{app}/primary"), &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// The value of the first series of `name` whose labels include `app="APP"` and every
/// `extra` pair (other labels, whatever they are, do not matter).
fn app_series(m: &str, name: &str, app: &str, extra: &[&str]) -> Option<f64> {
    m.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| l.contains(&format!("app=\"{app}\"")) && extra.iter().all(|e| l.contains(e)))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The application's server-side time to exhaustion: `(limit label, seconds)`.
fn server_eta(m: &str, app: &str) -> Option<(String, f64)> {
    m.lines()
        .filter(|l| l.starts_with("poolwatch_app_exhaustion_eta_seconds{"))
        .filter(|l| l.contains(&format!("app=\"{app}\"")) && !l.contains("limit=\"pool\""))
        .find_map(|l| {
            let limit = l.split("limit=\"").nth(1)?.split('"').next()?.to_string();
            Some((limit, l.rsplit(' ').next()?.parse().ok()?))
        })
}

/// Leaks connections as `user` on `dbname` up to `limit`, pushing the pool as `app`
/// would, and returns the (connections, server-side limit label, eta) seen after each
/// one; then checks that one more connection is refused with 53300.
async fn leak_to_the_limit(
    pg: &Pg,
    d: &Daemon,
    user: &str,
    dbname: &str,
    app: &str,
    limit: usize,
) -> (Vec<Client>, Vec<(usize, Option<(String, f64)>)>) {
    let mut held = Vec::new();
    let mut seen = Vec::new();
    for n in 1..=limit {
        held.push(
            connect(pg, user, dbname, app)
                .await
                .expect("below the limit"),
        );
        // Wait until an analysis tick counts all n backends; at the limit, also until it
        // has a growth rate, so that the time to exhaustion exists.
        let started = Instant::now();
        let mut eta = None;
        let mut observed = false;
        while started.elapsed() < Duration::from_secs(if n == limit { 20 } else { 5 }) {
            push(d, app, n).await;
            let m = d.metrics().await;
            let server = app_series(&m, "poolwatch_app_server_connections", app, &[]);
            if server == Some(n as f64) {
                observed = true;
                eta = server_eta(&m, app);
                if eta.is_some() || n < limit {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(observed, "poolwatch never counted {n} backends of {app}");
        println!("{app}: connections={n} eta={eta:?}");
        seen.push((n, eta));
        // The leak's pace: about one connection a second (three samples per step).
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let refused = connect(pg, user, dbname, app)
        .await
        .err()
        .unwrap_or_else(|| {
            panic!(
                "connection {} of {user} on {dbname} was accepted",
                limit + 1
            )
        });
    assert_eq!(
        refused.code(),
        Some(&SqlState::TOO_MANY_CONNECTIONS),
        "{refused}"
    );
    let message = refused.as_db_error().map(|e| e.message().to_string());
    println!(
        "{app}: connection {} refused, SQLSTATE 53300: {message:?}",
        limit + 1
    );
    (held, seen)
}

/// The ETA is against `kind`, reaches 0 at the limit and was above 0 before it.
fn assert_falls_to_zero(seen: &[(usize, Option<(String, f64)>)], kind: &str) {
    let etas: Vec<(usize, f64)> = seen
        .iter()
        .filter_map(|(n, e)| e.as_ref().map(|(l, v)| (*n, l.as_str(), *v)))
        .map(|(n, l, v)| {
            assert_eq!(
                l, kind,
                "connections={n}: the server-side limit is the {kind}'s"
            );
            (n, v)
        })
        .collect();
    let (last_n, last) = *etas.last().expect("a time to exhaustion");
    assert_eq!(
        last_n,
        seen.len(),
        "the last pair is at the limit: {etas:?}"
    );
    assert_eq!(last, 0.0, "the limit is reached: {etas:?}");
    let before: Vec<f64> = etas
        .iter()
        .filter(|(n, _)| *n < last_n)
        .map(|p| p.1)
        .collect();
    assert!(
        before.len() >= 2 && before.iter().all(|v| *v > 0.0),
        "at least two times to exhaustion above 0 before the limit: {etas:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_as_a_role_with_a_connection_limit_exhausts_the_role_not_the_server() {
    let pg = Pg::start();
    let admin = pg.client("setup").await;
    admin
        .batch_execute(
            "CREATE ROLE leaky LOGIN CONNECTION LIMIT 10;
             CREATE ROLE busy LOGIN CONNECTION LIMIT 100;
             CREATE ROLE quiet LOGIN CONNECTION LIMIT 20;
             CREATE ROLE unused LOGIN CONNECTION LIMIT 5;
             CREATE ROLE boss LOGIN SUPERUSER CONNECTION LIMIT 1",
        )
        .await
        .unwrap();
    // Other roles' sessions, one each, held throughout.
    let mut others = Vec::new();
    for role in ["busy", "quiet", "boss"] {
        others.push(connect(&pg, role, "postgres", role).await.unwrap());
    }
    let d = Daemon::start(&config(&pg.url())).await;

    let (held, seen) = leak_to_the_limit(&pg, &d, "leaky", "postgres", "leaky", 10).await;
    assert_falls_to_zero(&seen, "role");
    let m = d.metrics().await;
    let role_limit = |role: &str| {
        value(
            &m,
            &on_db(
                &pg.database(),
                &format!("poolwatch_pg_role_connection_limit{{usename=\"{role}\"}}"),
            ),
        )
    };
    assert_eq!(role_limit("leaky"), Some(10.0));
    // database.max_connection_limits is 2: the least headroom first (leaky 0 left, quiet
    // 19, busy 99 beyond the bound).
    assert_eq!(role_limit("quiet"), Some(20.0));
    assert_eq!(role_limit("busy"), None, "beyond the bound");
    assert_eq!(
        role_limit("unused"),
        None,
        "no backends: no application is under it"
    );
    assert_eq!(
        role_limit("boss"),
        None,
        "superusers are exempt: no limit shown"
    );
    assert!(
        !m.contains("poolwatch_pg_database_connection_limit{"),
        "no database limit is set"
    );
    let server = app_series(
        &m,
        "poolwatch_app_exhaustion_eta_seconds",
        "leaky",
        &["limit=\"server\""],
    );
    assert_eq!(server, None, "one server-side series, the role's: {m}");
    assert!(
        app_series(
            &m,
            "poolwatch_app_exhaustion_eta_seconds",
            "leaky",
            &["limit=\"pool\""]
        )
        .is_some_and(|v| v > 0.0),
        "the pool's series stays, 90 connections from its maximum"
    );
    drop((held, others));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_into_a_database_with_a_connection_limit_exhausts_the_database() {
    let pg = Pg::start();
    let admin = pg.client("setup").await;
    admin
        .batch_execute("CREATE ROLE plain LOGIN; CREATE ROLE watcher LOGIN CONNECTION LIMIT 3")
        .await
        .unwrap();
    admin
        .batch_execute("CREATE DATABASE limited CONNECTION LIMIT 8")
        .await
        .unwrap();
    let d = Daemon::start(&config(&pg.url())).await;

    let (held, seen) = leak_to_the_limit(&pg, &d, "plain", "limited", "dbleak", 8).await;
    assert_falls_to_zero(&seen, "database");
    let m = d.metrics().await;
    assert_eq!(
        value(
            &m,
            &on_db(
                &pg.database(),
                r#"poolwatch_pg_database_connection_limit{datname="limited"}"#
            )
        ),
        Some(8.0)
    );
    assert!(
        !m.contains("poolwatch_pg_role_connection_limit{"),
        "no role limit is set"
    );

    // The sampler's limits query needs no privilege: a role without pg_monitor reads the
    // database's limit, no role limit for `plain` (it has none), and its own role's, its
    // own session counted (1 other backend given, 2 against the limit).
    let watcher = connect(&pg, "watcher", "postgres", "check").await.unwrap();
    let roles = vec!["plain".to_string(), "watcher".to_string()];
    let databases = vec!["limited".to_string()];
    let rows = watcher
        .query(
            poolwatch::sampler::limits::QUERY,
            &[&roles, &vec![8i64, 1], &databases, &vec![8i64], &100i64],
        )
        .await
        .unwrap();
    let limits = poolwatch::sampler::limits::ConnectionLimits::from_rows(&rows).unwrap();
    assert_eq!(
        limits.database("limited"),
        Some(&poolwatch::sampler::limits::ConnectionLimit {
            name: "limited".into(),
            limit: 8,
            backends: 8
        }),
        "{limits:?}"
    );
    let own = poolwatch::sampler::limits::ConnectionLimit {
        name: "watcher".into(),
        limit: 3,
        backends: 2,
    };
    assert_eq!(limits.roles, [own], "{limits:?}");
    drop(held);
    d.stop().await;
}
