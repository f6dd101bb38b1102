//! The fleet layout end to end: a real throwaway PostgreSQL, a central poolwatch watching
//! it (no pushes of its own), and a sidecar poolwatch without a database that receives
//! the application's pushes and forwards them. The central instance must judge the
//! forwarded pools exactly as it judges pools pushed to it directly.
//!
//! Shortened settings (labelled in `central` and `sidecar`): samples and analysis every
//! 0.3 s, a stuck connection counting after 1 s and ten stuck connection-seconds
//! deciding, so that a test sees in seconds what takes about a minute at the defaults.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{lines_starting, raw, reasons, value, Daemon, Pg, Resp};

const TOKEN: &str = "forward-token-0123456789";

/// The central instance: shortened sample and analysis timings (see the module comment),
/// the push token set, listening on `listen` (`127.0.0.1:0` for any port).
async fn central(pg: &Pg, listen: &str) -> Daemon {
    Daemon::start(&format!(
        "listen_address: {listen}\nhttp:\n  push_token: {TOKEN}\n\
         database:\n  url: {url}\n  interval_seconds: 0.3\n  statement_timeout_seconds: 0.3\n  lock_timeout_seconds: 0.1\n\
         analysis:\n  interval_seconds: 0.3\n  window_seconds: 60\n  idle_in_use_seconds: 1\n  stuck_connection_seconds: 10\n",
        url = pg.url()
    ))
    .await
}

/// A sidecar of pod `instance` without a database, forwarding to `to` with `token`; its
/// tick (the longest time between forwards) shortened to 0.3 s.
async fn sidecar(instance: &str, to: SocketAddr, token: &str) -> Daemon {
    Daemon::start(&format!(
        "mode: sidecar\ninstance: {instance}\nlisten_address: 127.0.0.1:0\npush_listen_address: 127.0.0.1:0\n\
         forward:\n  url: http://{to}\n  token: {token}\n  timeout_seconds: 2\n\
         analysis:\n  interval_seconds: 0.3\n"
    ))
    .await
}

/// A central instance on any port and a sidecar of pod `pod-a` forwarding to it with `token`.
async fn pair(pg: &Pg, token: &str) -> (Daemon, Daemon) {
    let central = central(pg, "127.0.0.1:0").await;
    let side = sidecar("pod-a", central.push_addr, token).await;
    (central, side)
}

/// Pushes pool `shop/primary` (3 open, 1 in use) to the sidecar.
async fn push_shop(side: &Daemon) {
    let r = side
        .push(
            "/api/v1/pools/shop/primary",
            r#"{"open":3,"in_use":1,"idle":2}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// A request to `addr` carrying the push token.
async fn with_token(addr: SocketAddr, path: &str, body: &str) -> Resp {
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw(addr, req.as_bytes()).await
}

/// A pool at its cap of `n`: every connection checked out.
fn capped(n: usize) -> String {
    format!(r#"{{"max_open":{n},"open":{n},"in_use":{n},"idle":0}}"#)
}

/// The value of `series` in the latest /metrics of `d`, 0 when absent.
async fn metric(d: &Daemon, series: &str) -> f64 {
    value(&d.metrics().await, series).unwrap_or(0.0)
}

/// Issue 14: a leak pinned at the pool's cap (every connection checked out, idle on the
/// server) is flagged by the central instance from forwarded pools with the same evidence
/// as from pools pushed to it directly: two applications leak alike on one database, one
/// pushing to the central instance, one to its sidecar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_capped_leak_is_flagged_from_forwarded_pools_as_from_direct_pushes() {
    let pg = Pg::start();
    let central = central(&pg, "127.0.0.1:0").await;
    let side = sidecar("shop-7f9c-x2", central.push_addr, TOKEN).await;
    let mut held = Vec::new();
    for app in ["direct", "forwarded"] {
        for _ in 0..5 {
            let c = pg.client(app).await;
            c.simple_query("SELECT 1").await.unwrap();
            held.push(c);
        }
    }
    let db = pg.database();
    let verdict =
        |app: &str| format!(r#"poolwatch_app_leak_suspected{{database="{db}",app="{app}"}}"#);
    let started = Instant::now();
    let mut m = String::new();
    while started.elapsed() < Duration::from_secs(30) {
        let r = with_token(
            central.push_addr,
            "/api/v1/pools/direct/primary",
            &capped(5),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        let r = side
            .push("/api/v1/pools/forwarded/primary", &capped(5))
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        m = central.metrics().await;
        if value(&m, &verdict("direct")) == Some(1.0)
            && value(&m, &verdict("forwarded")) == Some(1.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("both verdicts after {:?}", started.elapsed());
    for app in ["direct", "forwarded"] {
        assert_eq!(value(&m, &verdict(app)), Some(1.0), "{app}: {m}");
        // Checked out and idle on the server: the evidence only the two views together give.
        assert_eq!(reasons(&m, app), ["idle_in_use"], "{app}: {m}");
        let l = format!(r#"{{database="{db}",app="{app}"}}"#);
        assert_eq!(
            value(&m, &format!("poolwatch_app_idle_in_use_connections{l}")),
            Some(5.0),
            "{app}: {m}"
        );
        assert_eq!(
            value(&m, &format!("poolwatch_app_server_connections{l}")),
            Some(5.0)
        );
    }
    // The forwarded pool keeps the pod it was pushed from, under the central database label.
    assert_eq!(
        value(
            &m,
            &format!(
                r#"poolwatch_pool_in_use_connections{{database="{db}",app="forwarded",pool="primary",app_instance="shop-7f9c-x2"}}"#
            )
        ),
        Some(5.0),
        "{m}"
    );
    assert!(metric(&side, r#"poolwatch_forward_requests_total{outcome="ok"}"#).await >= 1.0);
    assert_eq!(
        metric(
            &side,
            r#"poolwatch_forward_requests_total{outcome="error"}"#
        )
        .await,
        0.0
    );
    assert!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="forward",outcome="accepted"}"#
        ) >= Some(1.0)
    );
    side.stop().await;
    central.stop().await;
}

/// The central instance restarts (its pools are gone with it): the sidecar's forwards fail
/// meanwhile, counted, without a backlog, and resume with the whole state once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_survives_a_restart_of_the_central_instance() {
    let pg = Pg::start();
    let (first, side) = pair(&pg, TOKEN).await;
    let addr = first.push_addr;
    let pool = &format!(
        r#"poolwatch_pool_open_connections{{database="{}",app="shop",pool="primary",app_instance="pod-a"}}"#,
        pg.database()
    );
    let (ok, error) = (
        r#"poolwatch_forward_requests_total{outcome="ok"}"#,
        r#"poolwatch_forward_requests_total{outcome="error"}"#,
    );
    push_shop(&side).await;
    first
        .wait_metrics(Duration::from_secs(10), "the forwarded pool", |m| {
            value(m, pool) == Some(3.0)
        })
        .await;
    first.stop().await;

    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(&side, error).await < 2.0 {
        assert!(Instant::now() < deadline, "{}", side.metrics().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ok_before = metric(&side, ok).await;
    let success_before = metric(&side, "poolwatch_forward_last_success_timestamp_seconds").await;
    assert!(success_before > 0.0);

    let second = central(&pg, &addr.to_string()).await;
    second
        .wait_metrics(Duration::from_secs(10), "the pool forwarded again", |m| {
            value(m, pool) == Some(3.0)
        })
        .await;
    let m = side.metrics().await;
    assert!(value(&m, ok).unwrap() > ok_before, "{m}");
    assert!(
        value(&m, "poolwatch_forward_last_success_timestamp_seconds").unwrap() > success_before,
        "{m}"
    );
    // Each forward carries the state, not a queue: one pool, one request accepted at a time.
    let m = second.metrics().await;
    assert_eq!(
        lines_starting(&m, "poolwatch_pool_open_connections{").len(),
        1,
        "{m}"
    );
    side.stop().await;
    second.stop().await;
}

/// A sidecar with the wrong token is refused with 401, counts it, and stores nothing on
/// the central instance; a malformed forward is refused with a 400 naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_token_or_body_is_refused_and_changes_nothing() {
    let pg = Pg::start();
    let (central, side) = pair(&pg, "not-the-token-0123456789").await;
    push_shop(&side).await;
    side.wait_metrics(Duration::from_secs(10), "refusals counted", |m| {
        value(
            m,
            r#"poolwatch_forward_requests_total{outcome="unauthorized"}"#,
        ) >= Some(2.0)
    })
    .await;
    let m = side.metrics().await;
    assert_eq!(
        value(&m, r#"poolwatch_forward_requests_total{outcome="ok"}"#),
        Some(0.0)
    );
    assert_eq!(
        value(&m, "poolwatch_forward_last_success_timestamp_seconds"),
        Some(0.0)
    );
    let m = central.metrics().await;
    assert!(lines_starting(&m, "poolwatch_pool_").is_empty(), "{m}");
    assert!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="forward",outcome="unauthorized"}"#
        ) >= Some(2.0),
        "{m}"
    );

    // The right token and a bad body: 400 naming the field, and still nothing stored.
    let bad =
        r#"{"sent_at": 1764700000, "pools": [{"app": "shop", "pool": "primary", "open": 3}]}"#;
    let r = with_token(central.push_addr, "/api/v1/forward", bad).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["field"], "pools[0].pushed_at", "{}", r.body);
    let good = r#"{"sent_at": 1764700000, "pools": [{"app": "shop", "pool": "primary", "pushed_at": 1764699990, "open": 3}]}"#;
    let r = common::http(
        central.push_addr,
        "POST",
        "/api/v1/forward",
        Some(good.as_bytes()),
    )
    .await;
    assert_eq!(r.status, 401, "no token: {}", r.body);
    let m = central.metrics().await;
    assert!(lines_starting(&m, "poolwatch_pool_").is_empty(), "{m}");
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="forward",outcome="invalid_field"}"#
        ),
        Some(1.0)
    );
    let r = with_token(central.push_addr, "/api/v1/forward", good).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["accepted"], 1);
    side.stop().await;
    central.stop().await;
}

/// `https://`: the sidecar verifies the central instance's certificate against
/// `forward.ca_file`; with a CA that did not sign it, nothing is sent and the failures
/// are counted as `error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_over_tls_verify_the_central_certificate() {
    if common::require_tool("openssl").is_none() {
        return;
    }
    let certs = common::temp_path("forward-certs");
    common::make_certs(&certs, "/CN=poolwatch test CA");
    let other = certs.join("other");
    common::make_certs(&other, "/CN=some other CA");
    let web = common::TempFile::new(&format!(
        "tls_server_config:\n  cert_file: {0}/server.crt\n  key_file: {0}/server.key\n",
        certs.display()
    ));
    let central = Daemon::start(&format!(
        "web_config_file: {}\nhttp:\n  push_token: {TOKEN}\n",
        web.0.display()
    ))
    .await;
    let port = central.push_addr.port();
    for (ca, outcome) in [
        (certs.join("ca.crt"), "ok"),
        (other.join("ca.crt"), "error"),
    ] {
        let side = Daemon::start(&format!(
            "mode: sidecar\ninstance: pod-a\nlisten_address: 127.0.0.1:0\npush_listen_address: 127.0.0.1:0\n\
             forward:\n  url: https://localhost:{port}\n  token: {TOKEN}\n  ca_file: {}\n  timeout_seconds: 2\n\
             analysis:\n  interval_seconds: 0.3\n",
            ca.display()
        ))
        .await;
        push_shop(&side).await;
        let counted = format!(r#"poolwatch_forward_requests_total{{outcome="{outcome}"}}"#);
        let m = side
            .wait_metrics(Duration::from_secs(10), &counted, |m| {
                value(m, &counted) >= Some(1.0)
            })
            .await;
        let others: f64 = lines_starting(&m, "poolwatch_forward_requests_total{")
            .iter()
            .filter(|l| !l.contains(&format!("\"{outcome}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        assert_eq!(others, 0.0, "only {outcome}: {m}");
        side.stop().await;
    }
    central.stop().await;
}
