//! The OTLP/HTTP receiver end to end: bodies captured from the real clients and written
//! from the instrumentations' sources (`tests/fixtures/otlp/`), sent to the running daemon,
//! with OTLP's answers, the push endpoints' limits and auth, and nothing stored on a bad
//! request.

mod common;

use common::{raw, value, Daemon, Resp};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/otlp");
const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn post(d: &Daemon, content_type: &str, extra: &str, body: &[u8]) -> Resp {
    let mut req = format!(
        "POST /v1/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\nContent-Type: {content_type}\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw(d.push_addr, &req).await
}

/// Posts and checks the export was taken (200).
async fn accepted(d: &Daemon, content_type: &str, extra: &str, body: &[u8]) -> Resp {
    let r = post(d, content_type, extra, body).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const CHECKOUT: &str =
    r#"{app="checkout",pool="HikariPool-1",app_instance="checkout-7d9f8-x2x4q"}"#;

/// `poolwatch_ingest_requests_total{format, outcome}`.
fn requests(m: &str, format: &str, outcome: &str) -> Option<f64> {
    value(
        m,
        &format!(r#"poolwatch_ingest_requests_total{{format="{format}",outcome="{outcome}"}}"#),
    )
}

fn series_of(m: &str, app: &str) -> Vec<String> {
    m.lines()
        .filter(|l| l.starts_with("poolwatch_pool_") && l.contains(&format!("app=\"{app}\"")))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn protobuf_and_json_exports_become_pools() {
    let d = Daemon::start("").await;
    let r = accepted(&d, PROTOBUF, "", &fixture("hikaricp_java_agent.pb")).await;
    assert_eq!(r.header("content-type"), Some(PROTOBUF));
    assert_eq!(
        r.body, "",
        "full success: an empty ExportMetricsServiceResponse"
    );
    let m = d.metrics().await;
    common::assert_series(
        &m,
        CHECKOUT,
        &[
            ("poolwatch_pool_in_use_connections", 7.0),
            ("poolwatch_pool_idle_connections", 3.0),
            ("poolwatch_pool_open_connections", 10.0),
            ("poolwatch_pool_max_open_connections", 10.0),
            ("poolwatch_pool_waiting", 2.0),
            ("poolwatch_pool_wait_duration_seconds_total", 3.456),
        ],
    );
    assert_eq!(
        value(&m, "poolwatch_ingest_otlp_ignored_metrics_total"),
        Some(6.0)
    );

    let r = accepted(&d, JSON, "", &fixture("npgsql_8.json")).await;
    assert_eq!(r.header("content-type"), Some(JSON));
    assert_eq!(r.body, "{}");
    let m = d.metrics().await;
    let pool = r#"{app="ledger",pool="Host_db.internal_Database_ledger_Username_ledger",app_instance="4c1b5f0e-2d7a-4b8e-9f3a-6d2e8c1a7b90"}"#;
    common::assert_series(
        &m,
        pool,
        &[
            ("poolwatch_pool_in_use_connections", 5.0),
            ("poolwatch_pool_max_open_connections", 100.0),
        ],
    );
    for (format, n) in [("otlp_protobuf", 1.0), ("otlp_json", 1.0)] {
        assert_eq!(requests(&m, format, "accepted"), Some(n), "{format}");
    }
    d.stop().await;
}

#[tokio::test]
async fn gzip_bodies_are_read_and_bombs_refused() {
    let d = Daemon::start("http:\n  max_body_bytes: 100000\n").await;
    accepted(
        &d,
        PROTOBUF,
        "Content-Encoding: gzip\r\n",
        &gzip(&fixture("node_pg.pb")),
    )
    .await;
    let m = d.metrics().await;
    assert_eq!(
        value(
            &m,
            r#"poolwatch_pool_in_use_connections{app="web",pool="127.0.0.1:5432_postgres",app_instance="pod-node"}"#
        ),
        Some(3.0)
    );
    // identity is no encoding, in any case.
    accepted(
        &d,
        JSON,
        "Content-Encoding: Identity\r\n",
        &fixture("npgsql_10.json"),
    )
    .await;
    // 1 MB of zeros inflated from a thousand bytes: refused at the body limit.
    let r = post(
        &d,
        PROTOBUF,
        "Content-Encoding: gzip\r\n",
        &gzip(&[0u8; 1_000_000]),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("http.max_body_bytes"), "{}", r.body);
    d.stop().await;
}

#[tokio::test]
async fn delta_counters_accumulate_across_exports() {
    let d = Daemon::start("").await;
    for name in [
        "hikaricp_java_agent_stable_delta_1.pb",
        "hikaricp_java_agent_stable_delta_2.pb",
        // The second export again, as an exporter retries when it misses the answer.
        "hikaricp_java_agent_stable_delta_2.pb",
    ] {
        accepted(&d, PROTOBUF, "", &fixture(name)).await;
    }
    let m = d.metrics().await;
    common::assert_series(
        &m,
        CHECKOUT,
        &[
            ("poolwatch_pool_in_use_connections", 5.0),
            ("poolwatch_pool_wait_duration_seconds_total", 0.75),
        ],
    );
    d.stop().await;
}

/// A JSON export with one good pool and one delta up-down counter (which gives changes,
/// not the level poolwatch needs).
const PARTLY_USABLE: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
 "scopeMetrics":[{"metrics":[
  {"name":"db.client.connection.count","unit":"{connection}","sum":{"aggregationTemporality":2,"dataPoints":[
    {"timeUnixNano":"10","asInt":"2","attributes":[{"key":"db.client.connection.pool.name","value":{"stringValue":"good"}},{"key":"db.client.connection.state","value":{"stringValue":"used"}}]}]}},
  {"name":"db.client.connections.usage","unit":"{connection}","sum":{"aggregationTemporality":1,"dataPoints":[
    {"timeUnixNano":"10","asInt":"1","attributes":[{"key":"pool.name","value":{"stringValue":"bad"}},{"key":"state","value":{"stringValue":"used"}}]},
    {"timeUnixNano":"10","asInt":"1","attributes":[{"key":"pool.name","value":{"stringValue":"bad"}},{"key":"state","value":{"stringValue":"idle"}}]}]}}]}]}]}"#;

#[tokio::test]
async fn partial_success_says_how_many_points_and_why() {
    let d = Daemon::start("instance: pod-9\n").await;
    let r = accepted(&d, JSON, "", PARTLY_USABLE.as_bytes()).await;
    let v = r.json();
    assert_eq!(v["partialSuccess"]["rejectedDataPoints"], "2");
    let why = v["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(
        why.contains("db.client.connections.usage of api: delta temporality"),
        "{why}"
    );
    let m = d.metrics().await;
    assert_eq!(
        value(
            &m,
            r#"poolwatch_pool_in_use_connections{app="api",pool="good",app_instance="pod-9"}"#
        ),
        Some(2.0)
    );
    assert!(!m.contains(r#"pool="bad""#), "{m}");
    assert_eq!(
        value(&m, "poolwatch_ingest_otlp_rejected_points_total"),
        Some(2.0)
    );
    assert_eq!(requests(&m, "otlp_json", "partial"), Some(1.0));
    d.stop().await;
}

#[tokio::test]
async fn a_bad_request_is_refused_whole_and_stores_nothing() {
    let d = Daemon::start("").await;
    // A valid export followed by one cut short (concatenated protobuf messages are one
    // message with both resources): the valid one's pool is not stored either.
    let mut body = fixture("node_pg.pb");
    let cut = fixture("hikaricp_java_agent.pb");
    body.extend_from_slice(&cut[..cut.len() - 40]);
    let r = post(&d, PROTOBUF, "", &body).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.header("content-type"), Some(PROTOBUF));
    // A google.rpc.Status: code 3 (INVALID_ARGUMENT) and a message naming where.
    assert!(r.body.starts_with("\u{8}\u{3}\u{12}"), "{:?}", r.body);
    assert!(r.body.contains("resource_metrics[1]"), "{}", r.body);
    // JSON that is not JSON.
    let r = post(&d, JSON, "", b"{\"resourceMetrics\": [{").await;
    assert_eq!(r.status, 400, "{}", r.body);
    let v = r.json();
    assert_eq!(v["code"], 3);
    assert!(
        v["message"].as_str().unwrap().contains("not valid JSON"),
        "{v}"
    );
    // An unknown Content-Type is not read.
    let r = post(&d, "text/plain", "", b"x").await;
    assert_eq!(r.status, 415, "{}", r.body);
    let m = d.metrics().await;
    assert!(series_of(&m, "web").is_empty(), "{m}");
    assert!(series_of(&m, "checkout").is_empty(), "{m}");
    for (format, outcome) in [
        ("otlp_protobuf", "invalid_field"),
        ("otlp_json", "invalid_json"),
        ("otlp", "unsupported_media_type"),
    ] {
        assert_eq!(
            requests(&m, format, outcome),
            Some(1.0),
            "{format} {outcome}"
        );
    }
    // Nor another Content-Encoding than gzip or identity.
    let r = post(&d, PROTOBUF, "Content-Encoding: br\r\n", b"x").await;
    assert_eq!(r.status, 415, "{}", r.body);
    assert!(r.body.contains("Content-Encoding"), "{}", r.body);
    assert_eq!(
        requests(&d.metrics().await, "otlp_protobuf", "unsupported_encoding"),
        Some(1.0)
    );
    // Only POST.
    let r = common::http(d.push_addr, "GET", "/v1/metrics", None).await;
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));
    d.stop().await;
}

#[tokio::test]
async fn limits_and_the_push_token_apply() {
    let d = Daemon::start(
        "http:\n  max_body_bytes: 2000\n  push_token: s3cret-token-0123456789\npools:\n  max_pools: 1\n",
    )
    .await;
    let auth = "Authorization: Bearer s3cret-token-0123456789\r\n";
    let r = post(&d, PROTOBUF, "", &fixture("node_pg.pb")).await;
    assert_eq!(r.status, 401, "{}", r.body);
    accepted(&d, PROTOBUF, auth, &fixture("node_pg.pb")).await;
    // Larger than http.max_body_bytes.
    let r = post(&d, PROTOBUF, auth, &fixture("hikaricp_java_agent.pb")).await;
    assert_eq!(r.status, 413, "{}", r.body);
    // A second pool would exceed pools.max_pools: 429, a Status, nothing stored.
    let r = post(&d, PROTOBUF, auth, &fixture("npgsql_10.pb")).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("pools.max_pools"), "{}", r.body);
    let m = d.metrics().await;
    assert!(series_of(&m, "ledger").is_empty(), "{m}");
    assert!(!series_of(&m, "web").is_empty(), "{m}");
    for outcome in ["unauthorized", "too_large", "pool_limit", "accepted"] {
        let format = if outcome == "unauthorized" {
            "otlp"
        } else {
            "otlp_protobuf"
        };
        assert_eq!(requests(&m, format, outcome), Some(1.0), "{outcome}");
    }
    d.stop().await;
}

#[tokio::test]
async fn exported_pools_expire_like_every_push() {
    let d = Daemon::start("pools:\n  expiry_seconds: 1\n").await;
    accepted(
        &d,
        PROTOBUF,
        "",
        &fixture("hikaricp_java_agent_stable_delta_1.pb"),
    )
    .await;
    assert!(!series_of(&d.metrics().await, "checkout").is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(1_300)).await;
    let m = d.metrics().await;
    assert!(series_of(&m, "checkout").is_empty(), "{m}");
    assert_eq!(value(&m, "poolwatch_pools_expired_total"), Some(1.0));
    // Its accumulated deltas went with it: the next export starts a new total.
    accepted(
        &d,
        PROTOBUF,
        "",
        &fixture("hikaricp_java_agent_stable_delta_2.pb"),
    )
    .await;
    let m = d.metrics().await;
    assert_eq!(
        value(
            &m,
            &format!("poolwatch_pool_wait_duration_seconds_total{CHECKOUT}")
        ),
        Some(0.25)
    );
    d.stop().await;
}
