//! Pushes end to end against the running daemon (push-only: no database).

mod common;

use std::time::Duration;

use common::{assert_series, http, raw, value, Daemon};

const CANONICAL: &str = r#"{"max_open":25,"open":10,"in_use":7,"idle":3,"waiting":1,"wait_count":40,"wait_duration_seconds":2.5,"max_idle_closed":1,"max_idle_time_closed":2,"max_lifetime_closed":3,"max_lifetime_seconds":1800,"max_idle_time_seconds":300}"#;

/// What `json.Marshal(db.Stats())` writes (Go 1.19).
const DBSTATS: &str = r#"{"MaxOpenConnections":0,"OpenConnections":4,"InUse":1,"Idle":3,"WaitCount":0,"WaitDuration":1500000000,"MaxIdleClosed":5,"MaxIdleTimeClosed":0,"MaxLifetimeClosed":2}"#;

fn pool_series(m: &str) -> Vec<&str> {
    m.lines()
        .filter(|l| l.starts_with("poolwatch_pool_"))
        .collect()
}

#[tokio::test]
async fn canonical_push_shows_every_field() {
    let d = Daemon::start("").await;
    let r = d
        .push("/api/v1/pools/billing/primary?instance=pod-1", CANONICAL)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["accepted"], 1);
    let m = d.metrics().await;
    let l = r#"{app="billing",pool="primary",app_instance="pod-1"}"#;
    assert_series(
        &m,
        l,
        &[
            ("poolwatch_pool_max_open_connections", 25.0),
            ("poolwatch_pool_open_connections", 10.0),
            ("poolwatch_pool_in_use_connections", 7.0),
            ("poolwatch_pool_idle_connections", 3.0),
            ("poolwatch_pool_waiting", 1.0),
            ("poolwatch_pool_wait_count_total", 40.0),
            ("poolwatch_pool_wait_duration_seconds_total", 2.5),
            ("poolwatch_pool_max_lifetime_seconds", 1800.0),
            ("poolwatch_pool_max_idle_time_seconds", 300.0),
        ],
    );
    for (reason, want) in [
        ("max_idle", 1.0),
        ("max_idle_time", 2.0),
        ("max_lifetime", 3.0),
    ] {
        let s = format!(
            r#"poolwatch_pool_closed_total{{app="billing",pool="primary",app_instance="pod-1",reason="{reason}"}}"#
        );
        assert_eq!(value(&m, &s), Some(want), "{s}");
    }
    let ts = value(
        &m,
        &format!("poolwatch_pool_last_push_timestamp_seconds{l}"),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - ts).abs() < 60.0, "push timestamp {ts} vs now {now}");
    assert_eq!(value(&m, "poolwatch_pools_tracked"), Some(1.0));
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="json",outcome="accepted"}"#
        ),
        Some(1.0)
    );
    d.stop().await;
}

#[tokio::test]
async fn go_dbstats_push() {
    let d = Daemon::start("instance: default-pod\n").await;
    let r = d
        .push(
            "/api/v1/pools/worker/main?application_name=worker-sql",
            DBSTATS,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = d.metrics().await;
    let l = r#"{app="worker",pool="main",app_instance="default-pod"}"#;
    assert_series(
        &m,
        l,
        &[
            ("poolwatch_pool_open_connections", 4.0),
            ("poolwatch_pool_in_use_connections", 1.0),
            ("poolwatch_pool_wait_duration_seconds_total", 1.5),
        ],
    );
    assert_eq!(
        value(&m, &format!("poolwatch_pool_max_open_connections{l}")),
        None,
        "0 means unlimited: no series"
    );
    assert_eq!(
        value(&m, &format!("poolwatch_pool_waiting{l}")),
        None,
        "sql.DBStats has no waiting gauge"
    );
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="dbstats",outcome="accepted"}"#
        ),
        Some(1.0)
    );
    d.stop().await;
}

#[tokio::test]
async fn batch_push() {
    let d = Daemon::start("").await;
    let body = r#"{"app":"api","instance":"pod-7","pools":[{"pool":"primary","open":5,"in_use":2,"idle":3},{"pool":"replica","in_use":1,"idle":1}]}"#;
    let r = d.push("/api/v1/pools", body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["accepted"], 2);
    let m = d.metrics().await;
    assert_eq!(
        value(
            &m,
            r#"poolwatch_pool_open_connections{app="api",pool="primary",app_instance="pod-7"}"#
        ),
        Some(5.0)
    );
    assert_eq!(
        value(
            &m,
            r#"poolwatch_pool_open_connections{app="api",pool="replica",app_instance="pod-7"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="batch",outcome="accepted"}"#
        ),
        Some(1.0)
    );
    d.stop().await;
}

#[tokio::test]
async fn malformed_pushes_get_4xx_naming_the_field_and_change_nothing() {
    let d = Daemon::start("").await;
    assert_eq!(
        d.push("/api/v1/pools/billing/primary", CANONICAL)
            .await
            .status,
        200
    );
    let before = pool_series(&d.metrics().await).join("\n");
    let cases: &[(&str, &str, u16, Option<&str>)] = &[
        ("/api/v1/pools/billing/primary", "", 400, None),
        ("/api/v1/pools/billing/primary", "{\"open\":", 400, None),
        (
            "/api/v1/pools/billing/primary",
            r#"{"open":-4}"#,
            400,
            Some("open"),
        ),
        (
            "/api/v1/pools/billing/primary",
            r#"{"open":4,"in_use":"many"}"#,
            400,
            Some("in_use"),
        ),
        (
            "/api/v1/pools/billing/primary",
            r#"{"open":4,"OpenConnections":4}"#,
            400,
            Some("open"),
        ),
        (
            "/api/v1/pools/billing/primary",
            r#"{"open":4,"colour":"red"}"#,
            400,
            Some("colour"),
        ),
        (
            "/api/v1/pools/billing/primary?instance=has%20space",
            r#"{"open":4}"#,
            400,
            Some("instance"),
        ),
        (
            "/api/v1/pools/billing/primary?max_lifetime_seconds=soon",
            r#"{"open":4}"#,
            400,
            Some("max_lifetime_seconds"),
        ),
        (
            "/api/v1/pools/bill%20ing/primary",
            r#"{"open":4}"#,
            400,
            Some("app"),
        ),
        (
            "/api/v1/pools",
            r#"{"app":"billing","pools":[{"pool":"primary","open":1},{"pool":"other","idle":-1}]}"#,
            400,
            Some("pools[1].idle"),
        ),
    ];
    for (path, body, status, field) in cases {
        let r = d.push(path, body).await;
        assert_eq!(r.status, *status, "{path} {body}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
        let j = r.json();
        assert!(
            j["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{}",
            r.body
        );
        assert_eq!(j["field"].as_str(), *field, "{path} {body}: {}", r.body);
        let after = pool_series(&d.metrics().await).join("\n");
        assert_eq!(before, after, "{path} {body} changed the pool view");
    }
    let m = d.metrics().await;
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="json",outcome="invalid_json"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="json",outcome="invalid_field"}"#
        ),
        Some(7.0)
    );
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="batch",outcome="invalid_field"}"#
        ),
        Some(1.0)
    );
    d.stop().await;
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let d = Daemon::start("http:\n  max_body_bytes: 1024\n").await;
    let big = format!(r#"{{"open":1,"application_name":"{}"}}"#, "x".repeat(2000));
    let r = d.push("/api/v1/pools/a/p", &big).await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("1024"));
    // Chunked, no Content-Length: cut off while reading.
    let chunk = "x".repeat(1500);
    let req = format!(
        "POST /api/v1/pools/a/p HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let r = raw(d.addr, req.as_bytes()).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let m = d.metrics().await;
    assert_eq!(value(&m, "poolwatch_pools_tracked"), Some(0.0));
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="json",outcome="too_large"}"#
        ),
        Some(2.0)
    );
    d.stop().await;
}

#[tokio::test]
async fn slow_body_is_cut_off() {
    let d = Daemon::start("http:\n  request_timeout_seconds: 0.5\n").await;
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        b"POST /api/v1/pools/a/p HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"open\"",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("server answers")
        .unwrap();
    let r = common::parse_response(&buf);
    assert_eq!(r.status, 408, "{}", r.body);
    d.stop().await;
}

#[tokio::test]
async fn pools_expire_and_are_counted() {
    // Expiry long enough that a busy machine does not expire the pools before the
    // first scrape, short enough to wait for.
    let d = Daemon::start("pools:\n  expiry_seconds: 3\n").await;
    assert_eq!(
        d.push("/api/v1/pools/a/p1", r#"{"open":1}"#).await.status,
        200
    );
    assert_eq!(
        d.push("/api/v1/pools/a/p2", r#"{"open":2}"#).await.status,
        200
    );
    let m = d.metrics().await;
    assert_eq!(value(&m, "poolwatch_pools_tracked"), Some(2.0));
    assert_eq!(value(&m, "poolwatch_pools_expired_total"), Some(0.0));
    let started = std::time::Instant::now();
    let m = d
        .wait_metrics(Duration::from_secs(15), "expiry", |m| {
            value(m, "poolwatch_pools_tracked") == Some(0.0)
        })
        .await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "expired too early: {:?}",
        started.elapsed()
    );
    assert!(
        common::lines_starting(&m, "poolwatch_pool_").is_empty(),
        "expired pools still shown:\n{m}"
    );
    assert_eq!(value(&m, "poolwatch_pools_expired_total"), Some(2.0));
    d.stop().await;
}

#[tokio::test]
async fn pool_cap_rejects_new_pools_and_counts() {
    let d = Daemon::start("pools:\n  max_pools: 2\n").await;
    assert_eq!(
        d.push("/api/v1/pools/a/p1", r#"{"open":1}"#).await.status,
        200
    );
    assert_eq!(
        d.push("/api/v1/pools/a/p2", r#"{"open":1}"#).await.status,
        200
    );
    let r = d.push("/api/v1/pools/a/p3", r#"{"open":1}"#).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("pools.max_pools"),
        "{}",
        r.body
    );
    // An update of a tracked pool is still accepted.
    assert_eq!(
        d.push("/api/v1/pools/a/p1", r#"{"open":9}"#).await.status,
        200
    );
    let m = d.metrics().await;
    assert_eq!(value(&m, "poolwatch_pools_tracked"), Some(2.0));
    assert_eq!(
        value(
            &m,
            r#"poolwatch_pool_open_connections{app="a",pool="p3",app_instance=""}"#
        ),
        None
    );
    assert_eq!(
        value(
            &m,
            r#"poolwatch_pool_open_connections{app="a",pool="p1",app_instance=""}"#
        ),
        Some(9.0)
    );
    assert_eq!(
        value(&m, r#"poolwatch_ingest_dropped_total{reason="pool_limit"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="json",outcome="pool_limit"}"#
        ),
        Some(1.0)
    );
    d.stop().await;
}

#[tokio::test]
async fn sidecar_keeps_pushes_off_the_metrics_listener() {
    let d = Daemon::start("mode: sidecar\ninstance: pod-x\npush_listen_address: 127.0.0.1:0\nlisten_address: 127.0.0.2:0\n").await;
    assert_ne!(d.addr, d.push_addr);
    let r = http(d.addr, "POST", "/api/v1/pools/a/p", Some(br#"{"open":1}"#)).await;
    assert_eq!(
        r.status, 404,
        "pushes must not be accepted on the metrics listener"
    );
    assert_eq!(http(d.push_addr, "GET", "/metrics", None).await.status, 404);
    assert_eq!(
        d.push("/api/v1/pools/a/p", r#"{"open":1}"#).await.status,
        200
    );
    let m = d.metrics().await;
    assert_eq!(
        value(
            &m,
            r#"poolwatch_pool_open_connections{app="a",pool="p",app_instance="pod-x"}"#
        ),
        Some(1.0)
    );
    d.stop().await;
}

#[tokio::test]
async fn health_readiness_and_methods() {
    let d = Daemon::start("").await;
    assert_eq!(http(d.addr, "GET", "/healthz", None).await.status, 200);
    assert_eq!(http(d.addr, "GET", "/readyz", None).await.status, 200);
    let r = http(d.addr, "DELETE", "/metrics", None).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = http(d.addr, "GET", "/api/v1/pools/a/p", None).await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    assert_eq!(http(d.addr, "GET", "/nope", None).await.status, 404);
    let r = http(d.addr, "GET", "/metrics", None).await;
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        r.body.contains("poolwatch_build_info{version=\""),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("process_resident_memory_bytes"),
        "process metrics present"
    );
    assert!(
        !r.body.contains("poolwatch_pg_up"),
        "push-only mode has no server view"
    );
    d.stop().await;
}

#[tokio::test]
async fn pushes_need_the_bearer_token_when_one_is_set() {
    let d = Daemon::start("http:\n  push_token: an-example-token-0123\n").await;
    let body = br#"{"open":1}"#;
    let send = |auth: Option<&'static str>, path: &'static str| {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        raw(d.push_addr, bytes.leak())
    };
    for auth in [
        None,
        Some("Bearer wrong-token-000000000"),
        Some("Basic YTpi"),
        Some("Bearer an-example-token-012"),
    ] {
        let r = send(auth, "/api/v1/pools/a/p").await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.body);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"poolwatch\"")
        );
        assert!(
            !r.body.contains("an-example-token"),
            "the token is never echoed"
        );
    }
    assert_eq!(
        send(None, "/metrics/job/a").await.status,
        401,
        "the Pushgateway protocol too"
    );
    let r = send(Some("Bearer an-example-token-0123"), "/api/v1/pools/a/p").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = d.metrics().await;
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="json",outcome="unauthorized"}"#
        ),
        Some(4.0)
    );
    assert_eq!(value(&m, "poolwatch_pools_tracked"), Some(1.0));
    assert!(!m.contains("an-example-token"));
    d.stop().await;
}

/// Issue 15, D4: authentication schemes are case-insensitive (RFC 9110, 11.1).
#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let d = Daemon::start("http:\n  push_token: an-example-token-0123\n").await;
    for (i, scheme) in ["bearer", "BEARER", "bEaReR", "Bearer"].iter().enumerate() {
        let body = format!("{{\"open\":{i}}}");
        let req = format!(
            "POST /api/v1/pools/a/p HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: {scheme} an-example-token-0123\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let r = raw(d.push_addr, req.leak().as_bytes()).await;
        assert_eq!(r.status, 200, "{scheme}: {}", r.body);
    }
    d.stop().await;
}

#[tokio::test]
async fn application_limits_get_429_and_are_counted() {
    let d = Daemon::start("pools:\n  max_apps: 2\n  max_pools_per_app: 2\n").await;
    for (path, want) in [
        ("/api/v1/pools/a/p1", 200),
        ("/api/v1/pools/a/p2", 200),
        ("/api/v1/pools/a/p3", 429),
        ("/api/v1/pools/b/p1", 200),
        ("/api/v1/pools/c/p1", 429),
    ] {
        let r = d.push(path, r#"{"open":1}"#).await;
        assert_eq!(r.status, want, "{path}: {}", r.body);
    }
    let m = d.metrics().await;
    assert_eq!(
        value(&m, r#"poolwatch_ingest_dropped_total{reason="app_limit"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_dropped_total{reason="pools_per_app_limit"}"#
        ),
        Some(1.0)
    );
    assert_eq!(value(&m, "poolwatch_pools_tracked"), Some(3.0));
    d.stop().await;
}

#[tokio::test]
async fn dribbled_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = Daemon::start("http:\n  request_timeout_seconds: 0.5\n").await;
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    s.write_all(b"POST /api/v1/pools/a/p HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    // The server closes the connection (it may say 408 first); it does not wait for ever.
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("connection closed by the header timeout")
        .ok();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "closed too early: {:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // The daemon is fine.
    assert_eq!(http(d.addr, "GET", "/healthz", None).await.status, 200);
    d.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_wait_until_one_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = Daemon::start("http:\n  max_connections: 2\n  request_timeout_seconds: 3\n").await;
    // Two clients hold both slots without sending anything.
    let first = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    // A third connects (the kernel's backlog accepts it) but is not served yet.
    let mut third = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    third
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let waited =
        tokio::time::timeout(Duration::from_millis(800), third.read_to_end(&mut buf)).await;
    assert!(
        waited.is_err() && buf.is_empty(),
        "served past the cap: {}",
        String::from_utf8_lossy(&buf)
    );
    // One slot frees: the waiting request is served, and counts itself among 2 open.
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf))
        .await
        .expect("served once a slot freed")
        .unwrap();
    let r = common::parse_response(&buf);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        value(
            &r.body,
            r#"poolwatch_http_open_connections{listener="metrics"}"#
        ),
        Some(2.0)
    );
    // A client that never sends a request is closed by the header timeout, so a full
    // listener drains by itself.
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), second.read_to_end(&mut rest))
        .await
        .expect("idle connection closed by the server")
        .ok();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(http(d.addr, "GET", "/healthz", None).await.status, 200);
    d.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = Daemon::start(
        "http:\n  request_timeout_seconds: 1\npools:\n  max_pools: 2000\n  max_pools_per_app: 200\n",
    )
    .await;
    // About 6 MB of /metrics: more than the kernel buffers on both ends of a loopback
    // connection (tcp_wmem's 4 MiB at most, and the client's 4 KiB below), so the
    // response write blocks while the client does not read.
    let long = |what: &str, i: usize| format!("{what}-{i:03}-{}", "x".repeat(110));
    for a in 0..14 {
        let pools: Vec<String> = (0..90)
            .map(|p| {
                format!(
                    r#"{{"pool":"{}","max_open":50,"open":10,"in_use":7,"idle":3,"waiting":1,"wait_count":4,"wait_duration_seconds":2.5,"max_idle_closed":1,"max_idle_time_closed":2,"max_lifetime_closed":3}}"#,
                    long("pool", p)
                )
            })
            .collect();
        let body = format!(
            r#"{{"app":"{}","instance":"{}","pools":[{}]}}"#,
            long("app", a),
            long("instance", a),
            pools.join(",")
        );
        let r = d.push("/api/v1/pools", &body).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let size = d.metrics().await.len();
    assert!(size > 5 << 20, "/metrics is only {size} bytes");

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(d.addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let open = |m: &str| value(m, r#"poolwatch_http_open_connections{listener="metrics"}"#);
    // Seen from another connection: the stalled one is open, then closed by the server.
    assert_eq!(open(&d.metrics().await), Some(2.0));
    let mut closed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if open(&d.metrics().await) == Some(1.0) {
            closed = true;
            break;
        }
    }
    assert!(closed, "the stalled connection was not closed");
    // What the client reads now is a cut-off response: fewer bytes than /metrics holds.
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut got)).await;
    assert!(got.len() < size, "read {} of {size} bytes", got.len());
    d.stop().await;
}

/// Issue 17: a path segment is not a form value, so `+` is itself there (the name is
/// refused for the `+`, not for a space it never held), and `%2B` is a `+` too.
#[tokio::test]
async fn a_plus_in_a_path_segment_is_a_plus() {
    let d = Daemon::start("").await;
    for path in ["/api/v1/pools/a+b/p", "/api/v1/pools/a%2Bb/p"] {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10\r\n\r\n{{\"open\":1}}"
        );
        let r = raw(d.push_addr, req.as_bytes()).await;
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(
            r.body.contains(r#"character '+' not allowed"#),
            "{path}: {}",
            r.body
        );
    }
    d.stop().await;
}

/// `/metrics` is gzip-compressed when the scraper asks for it (Prometheus does), with
/// the same families as the plain text; `gzip;q=0` or no header gets plain text.
#[tokio::test]
async fn metrics_are_gzipped_when_the_scraper_asks() {
    use std::io::Read;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = Daemon::start("").await;
    let scrape = |accept: &'static str| async move {
        let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
        let req = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{accept}\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.unwrap();
        let at = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&buf[..at]).to_ascii_lowercase();
        (head, buf[at + 4..].to_vec())
    };
    // Families of the analysis appear with its first tick, between two scrapes maybe.
    let families = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("# TYPE ") && !l.contains("poolwatch_analysis_"))
            .map(str::to_string)
            .collect()
    };
    let (head, plain) = scrape("").await;
    assert!(!head.contains("content-encoding"), "{head}");
    assert!(head.contains("vary: accept-encoding"), "{head}");
    let plain = String::from_utf8(plain).unwrap();
    for accept in [
        "Accept-Encoding: gzip\r\n",
        "Accept-Encoding: deflate, GZIP;q=0.5\r\n",
        "Accept-Encoding: *\r\n",
    ] {
        let (head, body) = scrape(accept).await;
        assert!(head.contains("content-encoding: gzip"), "{accept}: {head}");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body[..])
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(families(&text), families(&plain), "{accept}");
        assert!(
            body.len() < plain.len(),
            "{} bytes gzipped, {} plain",
            body.len(),
            plain.len()
        );
    }
    for accept in [
        "Accept-Encoding: gzip;q=0\r\n",
        "Accept-Encoding: br\r\n",
        "Accept-Encoding: *;q=0\r\n",
    ] {
        let (head, body) = scrape(accept).await;
        assert!(!head.contains("content-encoding"), "{accept}: {head}");
        assert!(String::from_utf8(body)
            .unwrap()
            .contains("# TYPE poolwatch_build_info gauge"));
    }
    d.stop().await;
}
