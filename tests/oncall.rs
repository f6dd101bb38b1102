//! The on-call view against a real leak: the leak demo's Go worker (rows never closed,
//! `db.Stats()` pushed) against a throwaway PostgreSQL and the daemon, then
//! `poolwatch connections` and `poolwatch healthcheck` run as commands against it, and
//! the page at `/` loaded by headless Chromium (the DOM, and a screenshot).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{on_db, require_tool, value, Daemon, Pg};

fn poolwatch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_poolwatch"))
        .args(args)
        .env_clear()
        .output()
        .expect("run poolwatch")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Headless Chromium with the flags this machine needs, a fresh profile each time.
fn chromium(chromium: &Path, args: &[&str]) -> Output {
    let profile = common::temp_path("chromium-profile");
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(profile);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_healthcheck_and_the_page_show_a_real_leaking_client() {
    let Some(chrome) = require_tool("chromium") else {
        return;
    };
    let Some(worker) = common::go_build("leak-demo") else {
        return;
    };
    let pg = Pg::start();
    let db = pg.database();
    let d = Daemon::start(&format!(
        "database:\n  url: {}\n  interval_seconds: 0.5\n  statement_timeout_seconds: 0.5\n  lock_timeout_seconds: 0.1\nanalysis:\n  interval_seconds: 1\n  idle_in_use_seconds: 2\n  disagreement_hold_seconds: 3\n",
        pg.url()
    ))
    .await;
    let mut leaking = Command::new(&worker)
        .env("POOLWATCH_URL", format!("http://{}", d.push_addr))
        .env("DATABASE_URL", pg.url())
        .env("APP", "orders-worker")
        .env("LEAK_EVERY", "0.5")
        .env("PUSH_EVERY", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the leaking worker");
    let leak = r#"poolwatch_app_leak_suspected{app="orders-worker"}"#;
    let m = d
        .wait_metrics(Duration::from_secs(60), "the leak suspected", |m| {
            value(m, &on_db(&db, leak)) == Some(1.0)
                && value(
                    m,
                    &on_db(
                        &db,
                        r#"poolwatch_app_idle_in_use_connections{app="orders-worker"}"#,
                    ),
                )
                .is_some_and(|n| n >= 3.0)
        })
        .await;
    eprintln!(
        "leak suspected; idle in use: {:?}",
        value(
            &m,
            &on_db(
                &db,
                r#"poolwatch_app_idle_in_use_connections{app="orders-worker"}"#
            )
        )
    );
    let url = format!("http://{}", d.addr);

    // The table, from the running daemon.
    let out = poolwatch(&["connections", "--url", &url]);
    let table = text(&out.stdout);
    assert!(out.status.success(), "{table}{}", text(&out.stderr));
    eprintln!("poolwatch connections:\n{table}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("APPLICATION"), "{table}");
    assert!(
        lines.len() >= 4,
        "at least three stuck connections:\n{table}"
    );
    for cell in [
        "orders-worker",
        " idle ",
        "Client:ClientRead",
        "idle_in_client_read",
        "SELECT id, status FROM orders WHERE customer_id = $1 AND status = ?",
        "[LEAK SUSPECTED: ",
        "idle_in_use",
    ] {
        assert!(lines[1].contains(cell), "{cell}:\n{table}");
    }
    let out = poolwatch(&["connections", "--url", &url, "--app", "no such app"]);
    assert!(out.status.success());
    assert!(
        text(&out.stdout).starts_with("no applications"),
        "{}",
        text(&out.stdout)
    );

    // healthcheck: by URL, and by the listen address the configuration gives.
    let out = poolwatch(&["healthcheck", "--url", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), format!("{url}/healthz: ok\n"));
    let out = Command::new(env!("CARGO_BIN_EXE_poolwatch"))
        .arg("healthcheck")
        .env_clear()
        .env("POOLWATCH_LISTEN_ADDRESS", d.addr.to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = poolwatch(&["healthcheck", "--url", &format!("http://{closed}")]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("/healthz"),
        "{}",
        text(&out.stderr)
    );

    // The page, as a browser renders it.
    let out = chromium(&chrome, &["--dump-dom", &format!("{url}/")]);
    let dom = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for wanted in [
        "<meta http-equiv=\"refresh\" content=\"10\">",
        "<h2>orders-worker<span class=\"verdict bad\">leak suspected</span></h2>",
        "<code>idle_in_use</code>",
        "Client:ClientRead",
        "SELECT id, status FROM orders WHERE customer_id = $1 AND status = ?",
        "1 leak suspected",
    ] {
        assert!(dom.contains(wanted), "{wanted}:\n{dom}");
    }
    let png = common::temp_path("page").with_extension("png");
    let out = chromium(
        &chrome,
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1280,860",
            &format!("{url}/"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let bytes = std::fs::read(&png).expect("the screenshot");
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
    // POOLWATCH_SCREENSHOT=docs/img/status-page.png keeps it (how the docs' picture is made).
    if let Some(keep) = std::env::var_os("POOLWATCH_SCREENSHOT") {
        std::fs::copy(&png, Path::new(env!("CARGO_MANIFEST_DIR")).join(keep)).unwrap();
    }
    let _ = std::fs::remove_file(&png);
    let _ = leaking.kill();
    let _ = leaking.wait();
    d.stop().await;
}
