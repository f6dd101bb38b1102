//! The binary itself: exit codes, `check-config`, signals, and what it logs.

mod common;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{http, value, TempFile};

const BIN: &str = env!("CARGO_BIN_EXE_poolwatch");

fn poolwatch(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    // A clean environment: no PG*, DATABASE_URL or POOLWATCH_* from the caller.
    c.env_clear()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn invalid_configuration_exits_64_listing_every_problem() {
    let f = TempFile::new("mode: edge\npools:\n  max_pools: 0\nlisten_adress: x\n");
    let out = poolwatch(&["--config", f.0.to_str().unwrap(), "--listen", "nowhere"])
        .output()
        .unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("invalid configuration (4 problems)"), "{err}");
    for needle in [
        "mode (from",
        "pools.max_pools",
        "listen_adress",
        "listen_address (from flag --listen)",
    ] {
        assert!(err.contains(needle), "{needle:?} missing:\n{err}");
    }
}

#[test]
fn check_config() {
    let good = TempFile::new("mode: sidecar\ndatabase:\n  url: postgres://watcher:hunter2@db:5432/app\n  interval_seconds: 10\n");
    let out = poolwatch(&["check-config", good.0.to_str().unwrap()])
        .output()
        .unwrap();
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{o}{e}");
    assert!(
        o.contains("valid; mode=sidecar listen=[::]:19187 push_listen=127.0.0.1:19188"),
        "{o}"
    );
    assert!(
        o.contains("host=db port=5432 dbname=app user=watcher"),
        "{o}"
    );
    assert!(!o.contains("hunter2") && !e.contains("hunter2"));

    let bad = TempFile::new("database:\n  interval_seconds: soon\n");
    let out = poolwatch(&["check-config", bad.0.to_str().unwrap()])
        .output()
        .unwrap();
    let (_, e) = text(&out);
    assert_eq!(out.status.code(), Some(64));
    assert!(e.contains("database.interval_seconds"), "{e}");

    let out = poolwatch(&["check-config", "/nonexistent/poolwatch.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out).1.contains("cannot read"));
}

#[test]
fn environment_variables_configure_and_flags_win() {
    let out = poolwatch(&["check-config", "/dev/null", "--mode", "central"])
        .env("POOLWATCH_MODE", "sidecar")
        .env("POOLWATCH_LISTEN_ADDRESS", "127.0.0.1:9999")
        .env("PGHOST", "db.internal")
        .env("PGUSER", "mon")
        .env("PGAPPNAME", "should-be-ignored")
        .output()
        .unwrap();
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{o}{e}");
    assert!(
        o.contains("mode=central listen=127.0.0.1:9999 push_listen=127.0.0.1:9999"),
        "{o}"
    );
    assert!(
        o.contains("host=db.internal port=5432 dbname=mon user=mon sslmode=prefer"),
        "{o}"
    );
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    let mut c = poolwatch(args);
    c.envs(env.iter().copied());
    c.spawn().unwrap()
}

async fn wait_http(addr: std::net::SocketAddr, path: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            let r = http(addr, "GET", path, None).await;
            if r.status == 200 && pred(&r.body) {
                return r.body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {path} on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn terminate(child: Child) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        started.elapsed(),
    )
}

#[tokio::test]
async fn push_only_serves_and_stops_on_sigterm() {
    let addr = free_addr();
    let child = spawn(&["--listen", &addr.to_string()], &[]);
    wait_http(addr, "/healthz", |_| true).await;
    let r = http(
        addr,
        "POST",
        "/api/v1/pools/demo/main",
        Some(br#"{"open":3,"in_use":1,"idle":2}"#),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = wait_http(addr, "/metrics", |_| true).await;
    assert!(
        value(
            &m,
            r#"poolwatch_pool_open_connections{app="demo",pool="main",app_instance=""}"#
        ) == Some(3.0),
        "{m}"
    );
    let (code, err, took) = terminate(child);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        took < Duration::from_secs(10),
        "graceful shutdown took {took:?}"
    );
    assert_eq!(
        err.matches("running push-only").count(),
        1,
        "said once:\n{err}"
    );
    assert!(
        err.contains("signal received") && err.contains("stopped"),
        "{err}"
    );
}

#[tokio::test]
async fn database_outage_is_logged_once_without_the_password() {
    let addr = free_addr();
    let dead = free_addr();
    let url = format!("postgres://watcher:hunter2-secret@{dead}/app");
    let file = TempFile::new("database:\n  interval_seconds: 0.2\n  statement_timeout_seconds: 0.2\n  lock_timeout_seconds: 0.1\n  reconnect_max_backoff_seconds: 0.2\n");
    let child = spawn(
        &[
            "--config",
            file.0.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
        ],
        &[("DATABASE_URL", url.as_str())],
    );
    // The database label defaults to the URL's host:port.
    let m = wait_http(addr, "/metrics", |m| {
        value(
            m,
            &format!(r#"poolwatch_pg_sample_errors_total{{database="{dead}",kind="connect"}}"#),
        ) == Some(3.0)
    })
    .await;
    assert_eq!(
        value(&m, &format!(r#"poolwatch_pg_up{{database="{dead}"}}"#)),
        Some(0.0),
        "{m}"
    );
    let (code, err, _) = terminate(child);
    assert_eq!(code, Some(0), "{err}");
    assert!(!err.contains("hunter2"), "password in logs:\n{err}");
    assert_eq!(
        err.matches("database sample failed").count(),
        1,
        "an outage logs once, not every attempt:\n{err}"
    );
    assert!(err.contains("source=\"url\""), "{err}");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = poolwatch(&["--listen", &addr]).output().unwrap();
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot listen on {addr} (listen_address)")),
        "{err}"
    );
}

#[test]
fn help_and_version() {
    let out = poolwatch(&["--help"]).output().unwrap();
    let (o, _) = text(&out);
    assert!(out.status.success());
    for needle in [
        "--database-url-file",
        "POOLWATCH_LISTEN_ADDRESS",
        "check-config",
        "docs/configuration.md",
        "Examples:",
    ] {
        assert!(o.contains(needle), "{needle:?} missing from --help");
    }
    // Every key with a flag has it, with its value and its variable.
    for k in poolwatch::config::keys() {
        if let Some(f) = k.flag {
            let usage = format!("{} <{}>", f.name, f.value_name);
            let env = format!("[env: {}", k.env[0]);
            let at = o.find(&usage).unwrap_or_else(|| panic!("{usage}: {o}"));
            let rest = &o[at..];
            let end = rest[1..].find("\n      --").map_or(rest.len(), |i| i + 1);
            assert!(rest[..end].contains(&env), "{usage} lacks {env}: {o}");
        }
    }
    let out = poolwatch(&["--version"]).output().unwrap();
    assert_eq!(
        text(&out).0.trim(),
        format!("poolwatch {}", env!("CARGO_PKG_VERSION"))
    );
}

/// A log nobody reads any more (the pipe's reader gone: a supervisor that died, a test
/// harness that stopped) must not stop the daemon: a failed log write used to panic the
/// task that logged it (tracing-subscriber reports its own write errors with `eprintln!`,
/// which panics on the same closed stderr), leaving `poolwatch_pg_up` frozen and SIGTERM
/// unanswered.
#[tokio::test]
async fn a_closed_stderr_stops_neither_sampling_nor_shutdown() {
    let addr = free_addr();
    let dead = free_addr();
    let url = format!("postgres://watcher@{dead}/app");
    let file = TempFile::new("database:\n  interval_seconds: 0.2\n  statement_timeout_seconds: 0.2\n  lock_timeout_seconds: 0.1\n  reconnect_max_backoff_seconds: 0.2\n");
    let mut child = spawn(
        &[
            "--config",
            file.0.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
            "--log-level",
            "debug",
        ],
        &[("DATABASE_URL", url.as_str())],
    );
    drop(child.stderr.take());
    // Every failed sample is logged at debug: the sampler logs into the closed pipe again
    // and again, and keeps counting.
    let errors = |m: &str| {
        value(
            m,
            &format!(r#"poolwatch_pg_sample_errors_total{{database="{dead}",kind="connect"}}"#),
        )
        .unwrap_or(0.0)
    };
    let first = errors(&wait_http(addr, "/metrics", |m| errors(m) >= 3.0).await);
    wait_http(addr, "/metrics", |m| errors(m) >= first + 5.0).await;
    let (code, _, took) = terminate(child);
    assert_eq!(code, Some(0), "stops cleanly on SIGTERM");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");
}
