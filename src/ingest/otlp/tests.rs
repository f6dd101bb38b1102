//! Decoding and planning, on bodies captured from the real clients and written from
//! the instrumentations' sources (`tests/fixtures/otlp/README.md` says which is which).

use std::collections::BTreeMap;

use super::series::PoolSeries;
use super::*;
use crate::ingest::{IngestError, PoolSnapshot};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/otlp/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn decode(name: &str) -> Export {
    let body = fixture(name);
    let r = if name.ends_with(".pb") {
        protobuf::decode(&body, &Limits::default())
    } else {
        json::decode(&body, &Limits::default())
    };
    r.unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// What the receiver would store after `names` arrived in order, and what it refused.
fn receive(names: &[&str]) -> (BTreeMap<PoolKey, PoolSnapshot>, Rejected) {
    let mut series: BTreeMap<PoolKey, (PoolSeries, String)> = BTreeMap::new();
    let mut rejected = Rejected::default();
    for name in names {
        let p = plan(decode(name), "pod-default");
        rejected.points += p.rejected.points;
        rejected.reasons.extend(p.rejected.reasons);
        for (key, incoming) in p.pools {
            let entry = series.entry(key).or_default();
            assert_eq!(entry.0.apply(&incoming.points), 0);
            entry.1 = incoming.application_name;
        }
    }
    let snapshots = series
        .into_iter()
        .map(|(k, (s, app))| {
            let snap = s.snapshot(&app).unwrap_or_else(|e| panic!("{k:?}: {e}"));
            (k, snap)
        })
        .collect();
    (snapshots, rejected)
}

fn only(m: &BTreeMap<PoolKey, PoolSnapshot>) -> (&PoolKey, &PoolSnapshot) {
    assert_eq!(m.len(), 1, "{m:#?}");
    m.iter().next().unwrap()
}

fn key(app: &str, instance: &str, pool: &str) -> PoolKey {
    PoolKey {
        app: app.into(),
        pool: pool.into(),
        instance: instance.into(),
    }
}

#[test]
fn python_sqlalchemy_capture() {
    let (pools, rejected) = receive(&["python_sqlalchemy.pb"]);
    let (k, s) = only(&pools);
    assert_eq!(k, &key("reports", "pod-py", "main"));
    assert_eq!((s.in_use, s.idle, s.open), (Some(2), Some(0), 2));
    // SQLAlchemy's instrumentation reports neither a maximum nor waits.
    assert_eq!(
        (s.max_open, s.waiting, s.wait_duration_seconds),
        (None, None, None)
    );
    assert_eq!(s.application_name, "reports");
    assert_eq!(rejected.points, 0);
}

#[test]
fn node_pg_captures_protobuf_and_json() {
    for name in ["node_pg.pb", "node_pg.json"] {
        let export = decode(name);
        // db.client.operation.duration is skipped unread and counted.
        assert_eq!(export.ignored_metrics, 1, "{name}");
        let (pools, rejected) = receive(&[name]);
        let (k, s) = only(&pools);
        assert_eq!(
            k,
            &key("web", "pod-node", "127.0.0.1:5432_postgres"),
            "{name}"
        );
        assert_eq!(
            (s.in_use, s.idle, s.open, s.max_open, s.waiting),
            (Some(3), Some(0), 3, Some(10), Some(0)),
            "{name}"
        );
        assert_eq!(rejected.points, 0, "{name}");
    }
}

#[test]
fn only_the_attributes_poolwatch_uses_are_kept() {
    let export = decode("node_pg.pb");
    let r = &export.resources[0];
    assert_eq!(
        r.attributes,
        ResourceAttributes {
            service_name: Some("web".into()),
            service_instance_id: Some("pod-node".into()),
            ..ResourceAttributes::default()
        },
        "telemetry.sdk.* dropped"
    );
    for m in &r.metrics {
        for p in &m.points {
            assert_eq!(
                p.attributes.pool_name.as_deref(),
                Some("127.0.0.1:5432/postgres")
            );
            assert_eq!(p.attributes.legacy_pool_name, None);
        }
    }
    // The two states of the count are two series; each export names them the same way.
    let count = &r.metrics[0];
    assert_eq!(RULES[count.rule].metric, "db.client.connection.count");
    assert_ne!(count.points[0].series, count.points[1].series);
    let again = decode("node_pg.pb");
    assert_eq!(
        again.resources[0].metrics[0].points[0].series,
        count.points[0].series
    );
}

#[test]
fn hikaricp_java_agent_legacy_names_both_encodings() {
    for name in ["hikaricp_java_agent.json", "hikaricp_java_agent.pb"] {
        let export = decode(name);
        // Two JVM metrics, idle.min, timeouts, create_time and use_time: not read.
        assert_eq!(export.ignored_metrics, 6, "{name}");
        let (pools, rejected) = receive(&[name]);
        let (k, s) = only(&pools);
        assert_eq!(k, &key("checkout", "checkout-7d9f8-x2x4q", "HikariPool-1"));
        assert_eq!(
            (s.in_use, s.idle, s.open, s.max_open, s.waiting),
            (Some(7), Some(3), 10, Some(10), Some(2)),
            "{name}"
        );
        // The legacy histogram is in milliseconds, as its unit says.
        assert_eq!(s.wait_duration_seconds, Some(3.456), "{name}");
        assert_eq!(rejected.points, 0, "{name}");
    }
}

#[test]
fn hikaricp_stable_names_with_delta_temporality_accumulate() {
    for ext in ["json", "pb"] {
        let first = format!("hikaricp_java_agent_stable_delta_1.{ext}");
        let second = format!("hikaricp_java_agent_stable_delta_2.{ext}");
        let (pools, _) = receive(&[&first]);
        assert_eq!(only(&pools).1.wait_duration_seconds, Some(0.5));
        let (pools, rejected) = receive(&[&first, &second]);
        let (k, s) = only(&pools);
        assert_eq!(k.pool, "HikariPool-1");
        // Up-down counters stay cumulative under the delta preference: the latest wins.
        assert_eq!((s.in_use, s.idle, s.max_open), (Some(5), Some(5), Some(10)));
        assert_eq!(s.wait_duration_seconds, Some(0.75), "deltas added ({ext})");
        assert_eq!(rejected.points, 0);
        // An export retried (its answer lost) is not counted twice.
        let (pools, _) = receive(&[&first, &second, &second]);
        assert_eq!(only(&pools).1.wait_duration_seconds, Some(0.75));
    }
}

#[test]
fn npgsql_8_and_10() {
    for name in ["npgsql_8.json", "npgsql_8.pb"] {
        let (pools, rejected) = receive(&[name]);
        let (k, s) = only(&pools);
        assert_eq!(k.app, "ledger");
        assert_eq!(k.instance, "4c1b5f0e-2d7a-4b8e-9f3a-6d2e8c1a7b90");
        // The connection string as a pool name, cleaned.
        assert_eq!(k.pool, "Host_db.internal_Database_ledger_Username_ledger");
        assert_eq!(
            (s.in_use, s.idle, s.open, s.max_open, s.waiting),
            (Some(5), Some(2), 7, Some(100), Some(0)),
            "{name}"
        );
        assert_eq!(rejected.points, 0);
    }
    for name in ["npgsql_10.json", "npgsql_10.pb"] {
        let (pools, _) = receive(&[name]);
        let (k, s) = only(&pools);
        assert_eq!(k.pool, "ledger-primary");
        assert_eq!(
            (s.in_use, s.idle, s.max_open, s.waiting),
            (Some(20), Some(0), Some(20), Some(3)),
            "{name}"
        );
    }
}

/// An export built in code: one resource, one metric.
fn export(
    resource: &[(&str, &str)],
    metric: &str,
    unit: &str,
    data: Data,
    points: Vec<Point>,
) -> Export {
    let mut attributes = ResourceAttributes::default();
    for (k, v) in resource {
        attributes.set(k, v.to_string());
    }
    Export {
        resources: vec![Resource {
            attributes,
            metrics: vec![Metric {
                rule: rule_index(metric).unwrap(),
                unit: unit.into(),
                data,
                points,
            }],
        }],
        ignored_metrics: 0,
    }
}

fn count_point(state: &str, pool: &str, value: f64) -> Point {
    let mut attributes = PointAttributes::default();
    attributes.set(STATE, state.into());
    attributes.set(POOL_NAME, pool.into());
    Point {
        attributes,
        series: state.len() as u64,
        time: 10,
        value: Some(value),
        ..Point::default()
    }
}

const CUMULATIVE_UPDOWN: Data = Data::Sum {
    temporality: Temporality::Cumulative,
    monotonic: false,
};

#[test]
fn instance_and_application_name_precedence() {
    let points = || vec![count_point("used", "p", 1.0)];
    let first_key = |resource: &[(&str, &str)]| {
        let p = plan(
            export(
                resource,
                "db.client.connection.count",
                "",
                CUMULATIVE_UPDOWN,
                points(),
            ),
            "from-config",
        );
        let (k, i) = p.pools.into_iter().next().unwrap();
        (k.instance, i.application_name)
    };
    let all = [
        ("service.name", "api"),
        ("service.instance.id", "id-1"),
        ("k8s.pod.name", "pod-1"),
        ("host.name", "host-1"),
    ];
    assert_eq!(first_key(&all).0, "id-1");
    assert_eq!(first_key(&all[..1]).0, "from-config");
    assert_eq!(first_key(&[all[0], all[2], all[3]]).0, "pod-1");
    assert_eq!(first_key(&[all[0], all[3]]).0, "host-1");
    // application_name: the service name, else the resource's attribute...
    assert_eq!(first_key(&all[..1]).1, "api");
    let with = [all[0], (APPLICATION_NAME, "api (pg)")];
    assert_eq!(first_key(&with).1, "api (pg)");
    // ...else the point's, and cut to the 63 bytes PostgreSQL keeps.
    let mut pts = points();
    pts[0].attributes.set(APPLICATION_NAME, "é".repeat(40));
    let p = plan(
        export(
            &with,
            "db.client.connection.count",
            "",
            CUMULATIVE_UPDOWN,
            pts,
        ),
        "",
    );
    let app_name = &p.pools.values().next().unwrap().application_name;
    assert_eq!(app_name, &"é".repeat(31));
    // A service name that is not a valid app name is cleaned; no pool name is "default".
    let mut pts = points();
    pts[0].attributes.pool_name = None;
    let p = plan(
        export(
            &[("service.name", "my api/v2")],
            "db.client.connection.count",
            "",
            CUMULATIVE_UPDOWN,
            pts,
        ),
        "",
    );
    let k = p.pools.keys().next().unwrap();
    assert_eq!((k.app.as_str(), k.pool.as_str()), ("my_api_v2", "default"));
}

#[test]
fn what_cannot_be_used_is_refused_with_a_reason() {
    let svc = [("service.name", "api")];
    let cases: Vec<(Export, &str)> = vec![
        (
            export(
                &[],
                "db.client.connection.count",
                "",
                CUMULATIVE_UPDOWN,
                vec![count_point("used", "p", 1.0)],
            ),
            "no service.name",
        ),
        (
            export(
                &svc,
                "db.client.connection.count",
                "",
                Data::Sum {
                    temporality: Temporality::Delta,
                    monotonic: false,
                },
                vec![count_point("used", "p", 1.0)],
            ),
            "delta temporality gives changes",
        ),
        (
            export(
                &svc,
                "db.client.connection.count",
                "",
                Data::Sum {
                    temporality: Temporality::Unspecified,
                    monotonic: false,
                },
                vec![count_point("used", "p", 1.0)],
            ),
            "temporality unspecified",
        ),
        (
            export(
                &svc,
                "db.client.connection.count",
                "",
                CUMULATIVE_UPDOWN,
                vec![count_point("busy", "p", 1.0)],
            ),
            "used or idle",
        ),
        (
            export(
                &svc,
                "db.client.connection.count",
                "",
                Data::Histogram {
                    temporality: Temporality::Cumulative,
                },
                vec![count_point("used", "p", 1.0)],
            ),
            "not a histogram",
        ),
        (
            export(
                &svc,
                "db.client.connection.wait_time",
                "By",
                Data::Histogram {
                    temporality: Temporality::Cumulative,
                },
                vec![count_point("used", "p", 1.0)],
            ),
            "not a unit of time",
        ),
        (
            export(
                &svc,
                "db.client.connection.wait_time",
                "s",
                Data::Gauge,
                vec![count_point("used", "p", 1.0)],
            ),
            "must be a histogram",
        ),
        (
            export(
                &svc,
                "db.client.connection.count",
                "",
                CUMULATIVE_UPDOWN,
                vec![count_point("used", "p", f64::NAN)],
            ),
            "finite value",
        ),
        (
            export(
                &[("service.name", "api"), (APPLICATION_NAME, "a\nb")],
                "db.client.connection.count",
                "",
                CUMULATIVE_UPDOWN,
                vec![count_point("used", "p", 1.0)],
            ),
            "control characters",
        ),
    ];
    for (e, want) in cases {
        let p = plan(e, "");
        assert!(p.pools.is_empty(), "{want}: {p:?}");
        assert_eq!(p.rejected.points, 1, "{want}");
        assert!(
            p.rejected.message().contains(want),
            "{want}: {}",
            p.rejected.message()
        );
    }
    // A point without a recorded value (a staleness marker) is skipped, not refused.
    let mut stale = count_point("used", "p", 1.0);
    stale.no_recorded_value = true;
    let p = plan(
        export(
            &svc,
            "db.client.connection.count",
            "",
            CUMULATIVE_UPDOWN,
            vec![stale],
        ),
        "",
    );
    assert!(p.pools.is_empty() && p.rejected.points == 0);
}

#[test]
fn rejection_reasons_are_few_and_distinct() {
    let mut r = Rejected::default();
    for i in 0..8 {
        r.add(2, format!("reason {}", i % 7));
    }
    assert_eq!(r.points, 16);
    assert_eq!(
        r.message(),
        "reason 0; reason 1; reason 2; reason 3; reason 4; and 2 more reasons"
    );
    r.add(0, "nothing".into());
    assert_eq!(r.points, 16);
}

fn encoding(name: &str) -> &'static str {
    if name.ends_with(".pb") {
        "pb"
    } else {
        "json"
    }
}

fn decode_error(encoding: &str, body: &[u8], limits: &Limits) -> IngestError {
    match encoding {
        "pb" => protobuf::decode(body, limits).unwrap_err(),
        _ => json::decode(body, limits).unwrap_err(),
    }
}

#[test]
fn truncated_bodies_are_errors_at_every_length() {
    // Every proper prefix of a capture is malformed or decodes (it may end at a field
    // boundary); none panics, and the whole body decodes.
    for name in [
        "node_pg.pb",
        "hikaricp_java_agent.pb",
        "python_sqlalchemy.pb",
    ] {
        let body = fixture(name);
        let mut errors = 0;
        for n in 0..body.len() {
            if protobuf::decode(&body[..n], &Limits::default()).is_err() {
                errors += 1;
            }
        }
        assert!(
            errors > body.len() / 2,
            "{name}: only {errors} of {} prefixes refused",
            body.len()
        );
        assert!(protobuf::decode(&body, &Limits::default()).is_ok());
    }
    let body = fixture("node_pg.json");
    for n in 0..body.len() {
        assert!(
            json::decode(&body[..n], &Limits::default()).is_err(),
            "prefix {n}"
        );
    }
}

#[test]
fn malformed_bodies_name_the_problem() {
    let l = Limits::default();
    // A resource_metrics field with the wrong wire type.
    let e = decode_error("pb", &[0x08, 0x01], &l);
    assert!(e.to_string().contains("resource_metrics"), "{e}");
    // A length past the end, inside a metric.
    let mut body = fixture("node_pg.pb");
    body.truncate(body.len() - 3);
    let e = decode_error("pb", &body, &l);
    assert!(
        e.field().unwrap().starts_with("resource_metrics[0]"),
        "{e:?}"
    );
    // JSON: not JSON; a wrong type where poolwatch reads; a key given twice.
    let e = decode_error("json", b"{\"resourceMetrics\": [", &l);
    assert_eq!(e.kind(), "invalid_json");
    let bad = br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"db.client.connection.max","sum":{"dataPoints":[{"asInt":"ten"}]}}]}]}]}"#;
    let e = decode_error("json", bad, &l);
    assert!(
        e.field()
            .unwrap()
            .contains("(db.client.connection.max).sum"),
        "{e:?}"
    );
    let e = decode_error(
        "json",
        br#"{"resourceMetrics":[],"resourceMetrics":[]}"#,
        &l,
    );
    assert!(e.to_string().contains("duplicate"), "{e}");
    // Unknown fields are ignored, and snake_case names accepted.
    let ok = br#"{"resource_metrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}}]},"future":1}]}"#;
    let export = json::decode(ok, &l).unwrap();
    assert_eq!(
        export.resources[0].attributes.service_name.as_deref(),
        Some("a")
    );
}

#[test]
fn limits_bound_what_is_kept() {
    let small = Limits {
        max_points: 3,
        max_value_len: 1_024,
    };
    for name in ["hikaricp_java_agent.pb", "hikaricp_java_agent.json"] {
        let body = fixture(name);
        let e = decode_error(encoding(name), &body, &small);
        assert!(
            e.to_string().contains("more than 3 data points"),
            "{name}: {e}"
        );
    }
    let short = Limits {
        max_points: 10,
        max_value_len: 5,
    };
    for name in ["node_pg.pb", "node_pg.json"] {
        let body = fixture(name);
        let e = decode_error(encoding(name), &body, &short);
        assert!(
            e.to_string().contains("at most 5 are accepted"),
            "{name}: {e}"
        );
    }
    // Long values of attributes poolwatch does not read are not limited (nor kept).
    let long = "x".repeat(5_000);
    let body = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"process.command_line","value":{{"stringValue":"{long}"}}}}]}}}}]}}"#
    );
    assert!(json::decode(body.as_bytes(), &Limits::default()).is_ok());
}

#[test]
fn json_numbers_as_strings_numbers_and_special_values() {
    let body = br#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}}]},
      "scopeMetrics":[{"metrics":[
        {"name":"db.client.connection.count","sum":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","dataPoints":[
          {"timeUnixNano":1000,"asInt":4,"attributes":[{"key":"db.client.connection.state","value":{"stringValue":"used"}}]},
          {"timeUnixNano":"1000","asDouble":"2","attributes":[{"key":"db.client.connection.state","value":{"stringValue":"idle"}}]}]}},
        {"name":"db.client.connection.wait_time","unit":"ms","histogram":{"aggregationTemporality":2,"dataPoints":[{"sum":"Infinity","count":"1"}]}}]}]}]}"#;
    let export = json::decode(body, &Limits::default()).unwrap();
    let pts = &export.resources[0].metrics[0].points;
    assert_eq!((pts[0].value, pts[0].time), (Some(4.0), 1000));
    assert_eq!(pts[1].value, Some(2.0));
    let p = plan(export, "i");
    // The infinite wait is refused; the counts are taken.
    assert_eq!(p.rejected.points, 1);
    assert_eq!(p.pools.values().next().unwrap().points.len(), 2);
}

#[test]
fn answers() {
    use crate::ingest::wire::{Reader, LEN, VARINT};
    assert!(
        protobuf::response(0, "").is_empty(),
        "full success: an empty message"
    );
    let body = protobuf::response(3, "pool x: no count");
    let mut r = Reader::new(&body);
    assert_eq!(r.key().unwrap(), (1, LEN));
    let mut partial = Reader::new(r.length_delimited().unwrap());
    assert_eq!(partial.key().unwrap(), (1, VARINT));
    assert_eq!(partial.varint().unwrap(), 3);
    assert_eq!(partial.key().unwrap(), (2, LEN));
    assert_eq!(partial.str("m").unwrap(), "pool x: no count");
    let status = protobuf::status(3, "bad");
    assert_eq!(status, [0x08, 0x03, 0x12, 0x03, b'b', b'a', b'd']);
    assert_eq!(json::response(0, ""), b"{}");
    let v: serde_json::Value = serde_json::from_slice(&json::response(2, "why")).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedDataPoints"], "2");
    assert_eq!(v["partialSuccess"]["errorMessage"], "why");
    let v: serde_json::Value = serde_json::from_slice(&json::status(3, "bad")).unwrap();
    assert_eq!(
        (v["code"].as_i64(), v["message"].as_str()),
        (Some(3), Some("bad"))
    );
}
