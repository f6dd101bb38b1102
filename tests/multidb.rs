//! Many databases from one poolwatch, against real throwaway clusters: each database its
//! own session and `pg_up`, a dead one delaying no other, the list reloaded without a
//! restart, pushes joined to their database.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{value, Daemon, Pg};

/// The pid of poolwatch's session in `pg`, and how many it has there (own sessions of
/// every poolwatch task carry `application_name` poolwatch).
async fn poolwatch_sessions(pg: &Pg) -> (i64, Option<i32>) {
    let c = pg.client("poolwatch-test-observer").await;
    let row = c
        .query_one(
            "SELECT count(*), min(pid) FROM pg_stat_activity WHERE application_name = 'poolwatch'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// A loopback address no test client connects to a database from.
const NOWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

fn list(entries: &[(&str, String)]) -> String {
    let mut y = String::from(
        "database:\n  interval_seconds: 1\n  statement_timeout_seconds: 1\n  lock_timeout_seconds: 0.5\n  connect_timeout_seconds: 2\ndatabases:\n",
    );
    for (name, url) in entries {
        y.push_str(&format!("  - name: {name}\n    url: {url}\n"));
    }
    y.push_str("listen_address: 127.0.0.1:0\n");
    y
}

/// The open connections of pool `main` of `app`, attributed to `db`.
fn pool_open(db: &str, app: &str) -> String {
    format!("poolwatch_pool_open_connections{{database=\"{db}\",app=\"{app}\",pool=\"main\"}}")
}

fn up(m: &str, db: &str) -> Option<f64> {
    value(m, &format!("poolwatch_pg_up{{database=\"{db}\"}}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_databases_each_with_its_session_then_a_third_added_and_one_removed_by_reload() {
    let (a, b, c) = (Pg::start(), Pg::start(), Pg::start());
    // Applications on each server; and poolwatch's own sessions must count in none.
    let _orders = a.client("orders").await;
    let _billing1 = b.client("billing").await;
    let _billing2 = b.client("billing").await;
    let d = Daemon::start(&list(&[("a", a.url()), ("b", b.url())])).await;
    let m = d
        .wait_metrics(Duration::from_secs(20), "both databases up", |m| {
            up(m, "a") == Some(1.0) && up(m, "b") == Some(1.0)
        })
        .await;
    assert_eq!(value(&m, "poolwatch_databases_watched"), Some(2.0));
    for pg in [&a, &b] {
        assert_eq!(
            poolwatch_sessions(pg).await.0,
            1,
            "exactly one session each"
        );
    }
    let conn = |db: &str, app: &str| {
        format!("poolwatch_pg_connections{{database=\"{db}\",datname=\"postgres\",usename=\"postgres\",application_name=\"{app}\",state=\"idle\",wait_event_type=\"Client\",wait_event=\"ClientRead\"}}")
    };
    assert_eq!(value(&m, &conn("a", "orders")), Some(1.0), "{m}");
    assert_eq!(value(&m, &conn("b", "billing")), Some(2.0), "{m}");
    assert_eq!(value(&m, &conn("a", "billing")), None, "{m}");
    assert!(
        !m.lines().any(|l| l.starts_with("poolwatch_pg_connections")
            && l.contains("application_name=\"poolwatch\"")),
        "poolwatch's own sessions are never counted:\n{m}"
    );
    assert_eq!(
        value(&m, "poolwatch_pg_max_connections{database=\"a\"}"),
        Some(40.0)
    );

    // Reload: c added, b removed, a untouched (its session is the same one).
    let (_, a_pid) = poolwatch_sessions(&a).await;
    std::fs::write(d.config_path(), list(&[("a", a.url()), ("c", c.url())])).unwrap();
    let m = d
        .wait_metrics(Duration::from_secs(20), "c up and b gone", |m| {
            up(m, "c") == Some(1.0) && up(m, "b").is_none()
        })
        .await;
    assert_eq!(value(&m, "poolwatch_databases_watched"), Some(2.0));
    assert_eq!(
        value(&m, "poolwatch_config_reloads_total{outcome=\"success\"}"),
        Some(1.0)
    );
    assert_eq!(
        value(&m, "poolwatch_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(
        !m.contains("database=\"b\""),
        "a removed database leaves no series:\n{m}"
    );
    assert_eq!(up(&m, "a"), Some(1.0));
    assert_eq!(
        poolwatch_sessions(&a).await,
        (1, a_pid),
        "a was not touched"
    );
    assert_eq!(poolwatch_sessions(&b).await.0, 0, "b's session closed");
    assert_eq!(poolwatch_sessions(&c).await.0, 1);

    // An invalid file keeps the running list, and says so.
    std::fs::write(d.config_path(), list(&[("a", a.url()), ("a", c.url())])).unwrap();
    let m = d
        .wait_metrics(Duration::from_secs(10), "the failed reload counted", |m| {
            value(m, "poolwatch_config_reloads_total{outcome=\"failure\"}") == Some(1.0)
        })
        .await;
    assert_eq!(
        value(&m, "poolwatch_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(value(&m, "poolwatch_databases_watched"), Some(2.0));
    assert_eq!((up(&m, "a"), up(&m, "c")), (Some(1.0), Some(1.0)));
    assert_eq!(poolwatch_sessions(&a).await, (1, a_pid));
    d.stop().await;
    for pg in [&a, &b, &c] {
        assert_eq!(poolwatch_sessions(pg).await.0, 0, "closed at shutdown");
    }
}

/// A server that accepts TCP connections and never answers.
async fn black_hole() -> (u16, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_or_silent_database_delays_no_other() {
    let live = Pg::start();
    let stopped = Pg::start();
    stopped.stop_server();
    let (hole, _task) = black_hole().await;
    let silent = format!("postgres://postgres@127.0.0.1:{hole}/postgres?sslmode=disable");
    // The silent server holds each connection attempt for the whole connect timeout
    // (5 s, its own override); samples of the live one are due every second.
    let yaml = list(&[("live", live.url()), ("stopped", stopped.url())]).replace(
        "listen_address:",
        &format!(
            "  - name: silent\n    url: {silent}\n    connect_timeout_seconds: 5\nlisten_address:"
        ),
    );
    let d = Daemon::start(&yaml).await;
    d.wait_metrics(Duration::from_secs(20), "live up", |m| {
        up(m, "live") == Some(1.0)
    })
    .await;
    // Watch the live database's sample timestamps for 10 seconds: the silent one's
    // attempts (5 s each, then its backoff) would allow at most 3 if they were in line;
    // on its own it takes 10 (5 leave room for a loaded machine).
    let ts = "poolwatch_pg_last_sample_timestamp_seconds{database=\"live\"}";
    let mut seen = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        let m = d.metrics().await;
        let t = value(&m, ts).expect("live has sampled");
        if seen.last() != Some(&t) {
            seen.push(t);
        }
        assert_eq!(up(&m, "silent"), Some(0.0), "{m}");
        assert_eq!(up(&m, "stopped"), Some(0.0), "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen.len() >= 5,
        "the live database kept its one-second interval: {} samples in 10 s ({seen:?})",
        seen.len()
    );
    let m = d.metrics().await;
    let errors = |db: &str, kind: &str| {
        value(
            &m,
            &format!("poolwatch_pg_sample_errors_total{{database=\"{db}\",kind=\"{kind}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(errors("silent", "connect_timeout") >= 1.0, "{m}");
    assert!(errors("stopped", "connect") >= 1.0, "{m}");
    assert_eq!(
        errors("live", "connect") + errors("live", "connect_timeout"),
        0.0
    );
    // The stopped server comes back: its own backoff brings it up, nothing restarts.
    stopped.start_server();
    d.wait_metrics(Duration::from_secs(20), "stopped back up", |m| {
        up(m, "stopped") == Some(1.0)
    })
    .await;
    assert_eq!(poolwatch_sessions(&live).await.0, 1);
    assert_eq!(poolwatch_sessions(&stopped).await.0, 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_are_joined_to_the_database_they_name_or_where_their_backends_are() {
    let (a, b) = (Pg::start(), Pg::start());
    let _orders = a.client("orders").await;
    let _billing = b.client("billing-rw").await;
    let d = Daemon::start(&list(&[("a", a.url()), ("b", b.url())])).await;
    d.wait_metrics(Duration::from_secs(20), "both up", |m| {
        up(m, "a") == Some(1.0) && up(m, "b") == Some(1.0)
    })
    .await;
    // Named by the push; found by application_name; neither.
    for (path, body) in [
        (
            "/api/v1/pools/reports/main?database=b",
            r#"{"open":3,"in_use":1,"idle":2}"#,
        ),
        (
            "/api/v1/pools",
            r#"{"app":"billing","pools":[{"pool":"rw","open":1,"in_use":0,"idle":1,"application_name":"billing-rw"}]}"#,
        ),
        (
            "/api/v1/pools/orders/main",
            r#"{"open":1,"in_use":0,"idle":1}"#,
        ),
        (
            "/api/v1/pools/cron/main",
            r#"{"open":2,"in_use":0,"idle":2}"#,
        ),
    ] {
        // From an address no backend has, so that no rule places the last one.
        let r = d.push_from(NOWHERE, path, body).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let open = |db: &str, app: &str| {
        format!("poolwatch_app_pool_open_connections{{database=\"{db}\",app=\"{app}\"}}")
    };
    let m = d
        .wait_metrics(Duration::from_secs(10), "the pools analysed", |m| {
            value(m, &open("__unattributed__", "cron")).is_some()
                && value(m, &open("a", "orders")).is_some()
                && value(m, &open("b", "billing")).is_some()
                && value(m, &open("b", "reports")).is_some()
        })
        .await;
    assert_eq!(value(&m, &open("b", "reports")), Some(3.0));
    assert_eq!(value(&m, &open("a", "reports")), None, "{m}");
    assert_eq!(value(&m, &open("b", "orders")), None, "{m}");
    assert_eq!(
        value(
            &m,
            "poolwatch_app_server_connections{database=\"b\",app=\"billing\"}"
        ),
        Some(1.0)
    );
    // The pool view carries the same database.
    assert_eq!(value(&m, &pool_open("b", "reports")), Some(3.0), "{m}");
    assert_eq!(value(&m, &pool_open("a", "orders")), Some(1.0), "{m}");
    assert_eq!(
        value(&m, &pool_open("__unattributed__", "cron")),
        Some(2.0),
        "{m}"
    );
    assert_eq!(value(&m, "poolwatch_pools_tracked"), Some(4.0), "{m}");

    // The stuck-connection API lists each application under its database.
    let r = common::http(d.addr, "GET", "/api/v1/connections?database=b", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut listed: Vec<(String, String)> = r.json()["applications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["database"].as_str().unwrap().to_string(),
                a["app"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            ("b".to_string(), "billing".to_string()),
            ("b".to_string(), "reports".to_string())
        ]
    );
    let r = common::http(d.addr, "GET", "/api/v1/connections?app=cron", None).await;
    assert_eq!(
        r.json()["applications"][0]["database"],
        "__unattributed__",
        "{}",
        r.body
    );

    // An unknown database is refused, naming it, and stores nothing.
    for (path, body) in [
        ("/api/v1/pools/late/main?database=nope", r#"{"open":1}"#),
        (
            "/api/v1/pools",
            r#"{"app":"late","database":"nope","pools":[{"pool":"main","open":1}]}"#,
        ),
    ] {
        let r = d.push(path, body).await;
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.body.contains("unknown database \\\"nope\\\""),
            "{}",
            r.body
        );
    }
    let m = d.metrics().await;
    assert!(!m.contains("app=\"late\""), "{m}");
    d.stop().await;
}

const APP_LEDGER_ON_B: &str = "poolwatch_app_pool_open_connections{database=\"b\",app=\"ledger\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_no_name_places_is_joined_to_the_database_its_address_connects_to() {
    let (a, b) = (Pg::start(), Pg::start());
    let app_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    // The application's sessions on b carry no application_name (nor its name), from
    // 127.0.0.2; a and b also have sessions from 127.0.0.1, under other names.
    let _app = [
        b.client_from(app_ip, "").await,
        b.client_from(app_ip, "").await,
    ];
    let _others = [a.client("other").await, b.client("other").await];
    let c = b.client("poolwatch-test-observer").await;
    let row = c
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE host(client_addr) = '127.0.0.2' AND application_name = ''",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2, "the sessions from 127.0.0.2");
    let d = Daemon::start(&list(&[("a", a.url()), ("b", b.url())])).await;
    d.wait_metrics(Duration::from_secs(20), "both up", |m| {
        up(m, "a") == Some(1.0) && up(m, "b") == Some(1.0)
    })
    .await;
    // JSON from the application's address; a forward from it (a sidecar in its pod); a
    // push from an address that holds no session.
    let forward = r#"{"sent_at": 1764700000, "pools": [{"app": "ledger-sidecar", "pool": "main", "pushed_at": 1764700000, "open": 2}]}"#;
    for (from, path, body) in [
        (
            app_ip,
            "/api/v1/pools/ledger/main",
            r#"{"open":2,"in_use":1,"idle":1}"#,
        ),
        (app_ip, "/api/v1/forward", forward),
        (
            NOWHERE,
            "/api/v1/pools/stray/main",
            r#"{"open":1,"in_use":0,"idle":1}"#,
        ),
    ] {
        let r = d.push_from(from, path, body).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
    }
    let m = d
        .wait_metrics(Duration::from_secs(10), "the pools attributed", |m| {
            value(m, &pool_open("b", "ledger")).is_some()
                && value(m, &pool_open("b", "ledger-sidecar")).is_some()
                && value(m, &pool_open("__unattributed__", "stray")).is_some()
                && value(m, APP_LEDGER_ON_B).is_some()
        })
        .await;
    assert_eq!(value(&m, &pool_open("b", "ledger")), Some(2.0), "{m}");
    assert_eq!(value(&m, &pool_open("a", "ledger")), None, "{m}");
    assert_eq!(
        value(&m, &pool_open("__unattributed__", "ledger")),
        None,
        "{m}"
    );
    // The analysis of b has the pool too.
    assert_eq!(value(&m, APP_LEDGER_ON_B), Some(2.0), "{m}");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn its_own_sessions_on_one_server_are_never_counted() {
    let pg = Pg::start();
    let _app = pg.client("orders").await;
    // A role with a connection limit and a backend: each database shows the limit.
    pg.client("admin")
        .await
        .batch_execute("CREATE ROLE limited LOGIN CONNECTION LIMIT 10")
        .await
        .unwrap();
    let mut cfg: tokio_postgres::Config = pg.url_as("limited", "x").parse().unwrap();
    cfg.application_name("limited-app");
    let (_limited, conn) = cfg.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let other = pg.url().replace("/postgres?", "/template1?");
    let d = Daemon::start(&list(&[("main", pg.url()), ("tmpl", other)])).await;
    let limit = |db: &str| {
        format!("poolwatch_pg_role_connection_limit{{database=\"{db}\",usename=\"limited\"}}")
    };
    let m = d
        .wait_metrics(Duration::from_secs(20), "both up", |m| {
            up(m, "main") == Some(1.0)
                && up(m, "tmpl") == Some(1.0)
                && value(m, &limit("main")).is_some()
                && value(m, &limit("tmpl")).is_some()
        })
        .await;
    assert_eq!(value(&m, &limit("main")), Some(10.0), "{m}");
    assert_eq!(
        poolwatch_sessions(&pg).await.0,
        2,
        "one session per database"
    );
    for db in ["main", "tmpl"] {
        let counted: Vec<&str> = m
            .lines()
            .filter(|l| {
                l.starts_with("poolwatch_pg_connections{")
                    && l.contains(&format!("database=\"{db}\""))
            })
            .collect();
        assert!(
            counted
                .iter()
                .all(|l| !l.contains("application_name=\"poolwatch\"")),
            "{db} counts a poolwatch session: {counted:?}"
        );
        let total: f64 = counted
            .iter()
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum();
        // The test's two clients (and an observer session of this test), no poolwatch one.
        assert!(
            (2.0..=3.0).contains(&total),
            "{db}: {total} client backends counted: {counted:?}"
        );
    }
    d.stop().await;
}

/// A child process killed when the test ends, passed or not.
struct Killed(Option<std::process::Child>);

impl std::ops::Deref for Killed {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().expect("running")
    }
}

impl std::ops::DerefMut for Killed {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().expect("running")
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGHUP re-reads everything, the Secrets behind `url_file` included: a rotated Secret
/// (the configuration file itself unchanged) restarts that database's session only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_a_rotated_secret_and_restarts_only_its_session() {
    let (a, b) = (Pg::start(), Pg::start());
    let secret = common::TempFile::new(&format!("{}\n", a.url()));
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = common::TempFile::new(&format!(
        "listen_address: {listen}\ndatabase:\n  interval_seconds: 1\n  statement_timeout_seconds: 1\n  lock_timeout_seconds: 0.5\ndatabases:\n  - name: a\n    url_file: {}\n  - name: b\n    url: {}\n",
        secret.0.display(),
        b.url()
    ));
    let mut child = Killed(Some(
        std::process::Command::new(env!("CARGO_BIN_EXE_poolwatch"))
            .env_clear()
            .args(["--config", cfg.0.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let metrics = || async { common::http(listen, "GET", "/metrics", None).await.body };
    let wait = |what: &'static str, pred: Box<dyn Fn(&str) -> bool>| async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(listen).await.is_ok() {
                let m = common::http(listen, "GET", "/metrics", None).await.body;
                if pred(&m) {
                    return m;
                }
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    wait(
        "both up",
        Box::new(|m| up(m, "a") == Some(1.0) && up(m, "b") == Some(1.0)),
    )
    .await;
    let (_, a_pid) = poolwatch_sessions(&a).await;
    let (_, b_pid) = poolwatch_sessions(&b).await;
    // The Secret rotates (here: the same URL, new text); the file is not watched.
    std::fs::write(&secret.0, format!("{}\n\n", a.url())).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let m = metrics().await;
    assert_eq!(
        value(&m, "poolwatch_config_reloads_total{outcome=\"success\"}"),
        Some(0.0)
    );
    assert_eq!(poolwatch_sessions(&a).await, (1, a_pid));
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    wait(
        "the reload",
        Box::new(|m| {
            value(m, "poolwatch_config_reloads_total{outcome=\"success\"}") == Some(1.0)
                && up(m, "a") == Some(1.0)
        }),
    )
    .await;
    let (n, new_pid) = poolwatch_sessions(&a).await;
    assert_eq!(n, 1, "one session, never two");
    assert_ne!(new_pid, a_pid, "a's session was replaced");
    assert_eq!(
        poolwatch_sessions(&b).await,
        (1, b_pid),
        "b was not touched"
    );
    assert!(child.try_wait().unwrap().is_none(), "still running");
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("configuration reloaded"), "{err}");
}
