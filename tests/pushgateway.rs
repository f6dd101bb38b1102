//! The Pushgateway protocol end to end: captured bodies from real clients pushed to the
//! running daemon over HTTP, with the Pushgateway's method semantics.

mod common;

use common::{raw, value, Daemon, Resp};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/push");
const PROTOBUF: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{FIXTURES}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn send(
    d: &Daemon,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    extra: &str,
    body: &[u8],
) -> Resp {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n{extra}",
        body.len()
    );
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    raw(d.push_addr, &bytes).await
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

const ORDERS: &str = r#"{app="billing",pool="orders",app_instance="pod-1"}"#;

fn pool_lines(m: &str) -> String {
    m.lines()
        .filter(|l| l.starts_with("poolwatch_pool_"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn client_golang_protobuf_push_maps_to_the_pool() {
    let d = Daemon::start("").await;
    let r = send(
        &d,
        "PUT",
        "/metrics/job/billing/instance/pod-1",
        Some(PROTOBUF),
        "",
        &fixture("go_dbstats.pb"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = d.metrics().await;
    for (name, want) in [
        ("poolwatch_pool_max_open_connections", 4.0),
        ("poolwatch_pool_open_connections", 4.0),
        ("poolwatch_pool_in_use_connections", 3.0),
        ("poolwatch_pool_idle_connections", 1.0),
        ("poolwatch_pool_wait_count_total", 1.0),
        ("poolwatch_pool_wait_duration_seconds_total", 0.050265906),
    ] {
        assert_eq!(
            value(&m, &format!("{name}{ORDERS}")),
            Some(want),
            "{name}\n{m}"
        );
    }
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="protobuf",outcome="accepted"}"#
        ),
        Some(1.0)
    );
    assert!(
        value(&m, "poolwatch_ingest_ignored_families_total").unwrap() > 10.0,
        "go_* and process_* families ignored and counted"
    );
    d.stop().await;
}

#[tokio::test]
async fn text_and_gzip_pushes_give_the_same_pool() {
    let d = Daemon::start("").await;
    let text = fixture("go_dbstats.txt");
    assert_eq!(
        send(
            &d,
            "PUT",
            "/metrics/job/billing/instance/pod-1",
            Some("text/plain; version=0.0.4"),
            "",
            &text
        )
        .await
        .status,
        200
    );
    let plain = pool_lines(&d.metrics().await);
    assert!(
        plain.contains(&format!("poolwatch_pool_in_use_connections{ORDERS} 3")),
        "{plain}"
    );
    let r = send(
        &d,
        "PUT",
        "/metrics/job/billing/instance/pod-1",
        None,
        "Content-Encoding: gzip\r\n",
        &gzip(&text),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let zipped = pool_lines(&d.metrics().await);
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("last_push"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&plain), strip(&zipped));
    let r = send(
        &d,
        "PUT",
        "/metrics/job/billing",
        None,
        "Content-Encoding: gzip\r\n",
        b"not gzip",
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    d.stop().await;
}

#[tokio::test]
async fn put_post_and_delete_have_pushgateway_semantics() {
    let d = Daemon::start("").await;
    let path = "/metrics/job/billing/instance/pod-1";
    assert_eq!(
        send(&d, "PUT", path, None, "", &fixture("go_dbstats.txt"))
            .await
            .status,
        200
    );
    // POST replaces only the families it carries.
    let body = b"# TYPE go_sql_in_use_connections gauge\ngo_sql_in_use_connections{db_name=\"orders\"} 2\n# TYPE go_sql_idle_connections gauge\ngo_sql_idle_connections{db_name=\"orders\"} 2\n";
    assert_eq!(send(&d, "POST", path, None, "", body).await.status, 200);
    let m = d.metrics().await;
    assert_eq!(
        value(&m, &format!("poolwatch_pool_in_use_connections{ORDERS}")),
        Some(2.0)
    );
    assert_eq!(
        value(&m, &format!("poolwatch_pool_max_open_connections{ORDERS}")),
        Some(4.0),
        "kept from the PUT"
    );
    // PUT replaces the whole group: what it does not carry is gone.
    assert_eq!(send(&d, "PUT", path, None, "", body).await.status, 200);
    let m = d.metrics().await;
    assert_eq!(
        value(&m, &format!("poolwatch_pool_max_open_connections{ORDERS}")),
        None
    );
    assert_eq!(
        value(&m, &format!("poolwatch_pool_open_connections{ORDERS}")),
        Some(4.0),
        "open = in_use + idle"
    );
    // DELETE removes the group and its pool.
    let r = send(&d, "DELETE", path, None, "", b"").await;
    assert_eq!(r.status, 202, "{}", r.body);
    let m = d.metrics().await;
    assert_eq!(pool_lines(&m), "", "{m}");
    d.stop().await;
}

#[tokio::test]
async fn base64_path_segments() {
    let d = Daemon::start("").await;
    // job "billing" and instance "pod-1", both base64url without padding.
    let r = send(
        &d,
        "PUT",
        "/metrics/job@base64/YmlsbGluZw/instance@base64/cG9kLTE",
        None,
        "",
        &fixture("go_dbstats.txt"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = d.metrics().await;
    assert_eq!(
        value(&m, &format!("poolwatch_pool_in_use_connections{ORDERS}")),
        Some(3.0),
        "{m}"
    );
    d.stop().await;
}

#[tokio::test]
async fn bad_pushes_get_400_naming_the_problem_and_change_nothing() {
    let d = Daemon::start("").await;
    let path = "/metrics/job/billing/instance/pod-1";
    assert_eq!(
        send(&d, "PUT", path, None, "", &fixture("go_dbstats.txt"))
            .await
            .status,
        200
    );
    let before = pool_lines(&d.metrics().await);
    type Case<'a> = (&'a str, &'a str, Option<&'a str>, &'a [u8], &'a str);
    let cases: &[Case] = &[
        (
            "PUT",
            path,
            None,
            b"go_sql_in_use_connections{db_name=\"orders\"} 1 1700000000000\n",
            "timestamp",
        ),
        (
            "PUT",
            path,
            None,
            b"go_sql_in_use_connections{db_name=\"orders\" 1\n",
            "line 1",
        ),
        (
            "PUT",
            path,
            Some(PROTOBUF),
            b"\xff\xff\xff\xff",
            "MetricFamily",
        ),
        (
            "PUT",
            "/metrics/job/billing/instance",
            None,
            b"x 1\n",
            "path",
        ),
        ("POST", "/metrics/job/", None, b"x 1\n", "job"),
    ];
    for (method, p, ct, body, needle) in cases {
        let r = send(&d, method, p, *ct, "", body).await;
        assert_eq!(r.status, 400, "{method} {p}: {}", r.body);
        assert!(r.body.contains(needle), "{needle:?} not in {}", r.body);
        assert_eq!(
            pool_lines(&d.metrics().await),
            before,
            "{method} {p} changed the pools"
        );
    }
    d.stop().await;
}

#[tokio::test]
async fn the_pushgateway_readme_example_is_accepted() {
    let d = Daemon::start("").await;
    let r = send(
        &d,
        "POST",
        "/metrics/job/some_job/instance/some_instance",
        None,
        "",
        &fixture("pushgateway_readme.txt"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["accepted"], 0, "no pool in it");
    let m = d.metrics().await;
    assert_eq!(
        value(&m, "poolwatch_ingest_ignored_families_total"),
        Some(2.0)
    );
    d.stop().await;
}

#[tokio::test]
async fn groups_expire_unlike_the_pushgateway() {
    let d = Daemon::start("pools:\n  expiry_seconds: 2\n").await;
    let r = send(
        &d,
        "PUT",
        "/metrics/job/billing/instance/pod-1",
        None,
        "",
        &fixture("go_dbstats.txt"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        value(
            &d.metrics().await,
            &format!("poolwatch_pool_in_use_connections{ORDERS}")
        ),
        Some(3.0)
    );
    let m = d
        .wait_metrics(
            std::time::Duration::from_secs(15),
            "the group's pool to expire",
            |m| value(m, "poolwatch_pools_tracked") == Some(0.0),
        )
        .await;
    assert_eq!(pool_lines(&m), "");
    assert_eq!(value(&m, "poolwatch_pools_expired_total"), Some(1.0));
    // A POST after expiry starts from an empty group: only what it carries is kept.
    let body = b"go_sql_in_use_connections{db_name=\"orders\"} 2\ngo_sql_idle_connections{db_name=\"orders\"} 1\n";
    assert_eq!(
        send(
            &d,
            "POST",
            "/metrics/job/billing/instance/pod-1",
            None,
            "",
            body
        )
        .await
        .status,
        200
    );
    let m = d.metrics().await;
    assert_eq!(
        value(&m, &format!("poolwatch_pool_max_open_connections{ORDERS}")),
        None,
        "the expired group's families are gone"
    );
    assert_eq!(
        value(&m, &format!("poolwatch_pool_open_connections{ORDERS}")),
        Some(3.0)
    );
    d.stop().await;
}

/// Issue 15, D6: a `DELETE` removes what that group supplied, nothing else: a pool that
/// a JSON push or another group also supplies stays, with the other source's numbers.
#[tokio::test]
async fn a_delete_leaves_pools_that_another_source_supplies() {
    let d = Daemon::start("").await;
    let in_use = |m: &str, pool: &str| {
        value(
            m,
            &format!(
                r#"poolwatch_pool_in_use_connections{{app="billing",pool="{pool}",app_instance="pod-1"}}"#
            ),
        )
    };
    let json = br#"{"open":5,"in_use":4,"idle":1}"#;
    let r = send(
        &d,
        "POST",
        "/api/v1/pools/billing/orders?instance=pod-1",
        None,
        "",
        json,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Group a supplies orders (in use 3, newer than the JSON push) and a pool of its own.
    let a = b"go_sql_in_use_connections{db_name=\"orders\"} 3\ngo_sql_idle_connections{db_name=\"orders\"} 1\n\
              go_sql_in_use_connections{db_name=\"audit\"} 1\ngo_sql_idle_connections{db_name=\"audit\"} 0\n";
    let r = send(
        &d,
        "PUT",
        "/metrics/job/billing/instance/pod-1",
        None,
        "",
        a,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Group b, with another grouping key, supplies orders too (newest: in use 2).
    let b = b"go_sql_in_use_connections{db_name=\"orders\",instance=\"pod-1\"} 2\ngo_sql_idle_connections{db_name=\"orders\",instance=\"pod-1\"} 1\n";
    let r = send(&d, "PUT", "/metrics/job/billing/shard/b", None, "", b).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m = d.metrics().await;
    assert_eq!(
        (in_use(&m, "orders"), in_use(&m, "audit")),
        (Some(2.0), Some(1.0))
    );

    let r = send(&d, "DELETE", "/metrics/job/billing/shard/b", None, "", b"").await;
    assert_eq!(
        (r.status, r.json()["deleted"].as_u64()),
        (202, Some(1)),
        "{}",
        r.body
    );
    let m = d.metrics().await;
    assert_eq!(in_use(&m, "orders"), Some(3.0), "group a's numbers again");

    let r = send(
        &d,
        "DELETE",
        "/metrics/job/billing/instance/pod-1",
        None,
        "",
        b"",
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let m = d.metrics().await;
    assert_eq!(in_use(&m, "orders"), Some(4.0), "the JSON push's numbers");
    assert_eq!(in_use(&m, "audit"), None, "group a's own pool went with it");
    assert_eq!(value(&m, "poolwatch_pools_tracked"), Some(1.0));
    d.stop().await;
}

/// Issue 15, minor items: `Content-Encoding` is gzip or identity on every push
/// endpoint (anything else 415, before the body is parsed as something it is not), and a
/// `DELETE` of a grouping key no `PUT` could use gets the `PUT`'s answer, not a 202.
#[tokio::test]
async fn content_encodings_and_invalid_delete_keys() {
    let d = Daemon::start("").await;
    let json = br#"{"open":5,"in_use":4,"idle":1}"#;
    let text = b"go_sql_in_use_connections{db_name=\"orders\"} 3\ngo_sql_idle_connections{db_name=\"orders\"} 1\n";
    let pg = "/metrics/job/billing/instance/pod-1";
    for (method, path, body) in [
        ("POST", "/api/v1/pools/billing/orders", &json[..]),
        (
            "POST",
            "/api/v1/pools",
            br#"{"app":"billing","pools":[{"pool":"orders","open":1}]}"#,
        ),
        ("PUT", pg, &text[..]),
    ] {
        let zipped = gzip(body);
        let cases = [
            ("br", body, 415),
            ("deflate", body, 415),
            ("gzip, br", &zipped[..], 415),
            ("gzip, gzip", &zipped[..], 415),
            ("compress", body, 415),
            ("identity", body, 200),
            ("IDENTITY", body, 200),
            ("identity, identity", body, 200),
            ("gzip", &zipped[..], 200),
            ("x-gzip", &zipped[..], 200),
            ("identity, GZIP", &zipped[..], 200),
        ];
        for (encoding, body, status) in cases {
            let header = format!("Content-Encoding: {encoding}\r\n");
            let r = send(&d, method, path, None, &header, body).await;
            assert_eq!(r.status, status, "{path} {encoding}: {}", r.body);
            if status == 415 {
                assert_eq!(r.json()["field"], "Content-Encoding");
            }
        }
    }
    let m = d.metrics().await;
    assert_eq!(
        value(
            &m,
            r#"poolwatch_ingest_requests_total{format="json",outcome="unsupported_encoding"}"#
        ),
        Some(5.0)
    );
    // A job that is no valid application name: 400 for PUT and DELETE alike.
    for method in ["PUT", "DELETE"] {
        let r = send(&d, method, "/metrics/job/bad%20job", None, "", text).await;
        assert_eq!(r.status, 400, "{method}: {}", r.body);
        assert_eq!(r.json()["field"], "job", "{method}");
    }
    d.stop().await;
}
