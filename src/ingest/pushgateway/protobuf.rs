//! client_golang's default push encoding: a sequence of `io.prometheus.client.MetricFamily`
//! messages, each prefixed by its length as a varint
//! (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
//! encoding=delimited`).
//!
//! The schema (`metrics.proto`) is small and fixed, so this reads the wire format
//! directly rather than through generated code: every length is checked against the bytes
//! left, so a truncated or garbage body is an error, never a panic or a large allocation.
//! Fields it does not need (exemplars, created timestamps, native-histogram spans, units)
//! are skipped by wire type. A metric with `timestamp_ms` set is refused, as the
//! Pushgateway refuses it. Families come out in the same model the text parser produces:
//! a summary as `name{quantile}`, `name_sum`, `name_count`; a histogram as
//! `name_bucket{le}` (with the `+Inf` bucket the text format shows), `name_sum`,
//! `name_count`.

use std::collections::HashSet;

use crate::ingest::wire::{Reader, FIXED64, LEN, VARINT};
use crate::ingest::IngestError;

use super::{
    check_label, check_metric_name, format_float, Family, Labels, Limits, MetricKind, Sample,
    SeriesCheck, NO_TIMESTAMPS,
};

/// Parses a delimited-protobuf body into families, in the order sent. A family name sent
/// twice is refused (the Pushgateway would silently keep the last one). Families without
/// metrics are dropped, as the text parser drops them.
pub fn parse(body: &[u8], limits: &Limits) -> Result<Vec<Family>, IngestError> {
    let mut families = Vec::new();
    let mut names = HashSet::new();
    let mut check = SeriesCheck::default();
    let mut input = Reader::new(body);
    let mut index = 0;
    while !input.is_empty() {
        index += 1;
        let start = input.pos();
        let at = |problem: String| {
            IngestError::field_err(format!("MetricFamily #{index} (byte {start})"), problem)
        };
        let message = input.length_delimited().map_err(at)?;
        let family = family(message, limits).map_err(|e| match e {
            Located::Family(p) => at(p),
            Located::Named(name, p) => IngestError::field_err(format!("family {name}"), p),
        })?;
        let in_family = |p: String| IngestError::field_err(format!("family {}", family.name), p);
        if !names.insert(family.name.clone()) {
            return Err(in_family("sent more than once in one push".to_string()));
        }
        for s in &family.samples {
            check.admit(&s.name, &s.labels, limits).map_err(in_family)?;
        }
        if !family.samples.is_empty() {
            families.push(family);
        }
    }
    Ok(families)
}

/// An error with as much location as is known.
enum Located {
    /// Before the family's name is known.
    Family(String),
    /// In the named family.
    Named(String, String),
}

/// The value-carrying parts of one `Metric` message.
#[derive(Default)]
struct Metric {
    labels: Labels,
    /// `Gauge.value`, `Counter.value` or `Untyped.value`, by which message carried it.
    gauge: Option<f64>,
    counter: Option<f64>,
    untyped: Option<f64>,
    summary: Option<Summary>,
    histogram: Option<Histogram>,
    has_timestamp: bool,
}

#[derive(Default)]
struct Summary {
    count: u64,
    sum: f64,
    quantiles: Vec<(f64, f64)>,
}

#[derive(Default)]
struct Histogram {
    count: f64,
    sum: f64,
    /// (upper bound, cumulative count).
    buckets: Vec<(f64, f64)>,
}

fn family(buf: &[u8], limits: &Limits) -> Result<Family, Located> {
    let mut r = Reader::new(buf);
    let mut name = None;
    let mut help = String::new();
    let mut kind_raw = 0u64;
    let mut metrics: Vec<&[u8]> = Vec::new();
    while !r.is_empty() {
        let (field, wire) = r.key().map_err(Located::Family)?;
        let step = match field {
            1 => r
                .expect("name", wire, LEN)
                .and_then(|()| r.string("name"))
                .map(|s| name = Some(s)),
            2 => r
                .expect("help", wire, LEN)
                .and_then(|()| r.string("help"))
                .map(|s| help = s),
            3 => r
                .expect("type", wire, VARINT)
                .and_then(|()| r.varint())
                .map(|v| kind_raw = v),
            4 => r
                .expect("metric", wire, LEN)
                .and_then(|()| r.length_delimited())
                .map(|m| metrics.push(m)),
            _ => r.skip(wire),
        };
        step.map_err(Located::Family)?;
    }
    let name = match name {
        Some(n) if !n.is_empty() => n,
        _ => return Err(Located::Family("family has no name".to_string())),
    };
    let named = |p: String| Located::Named(name.clone(), p);
    check_metric_name(&name, limits).map_err(named)?;
    let kind = match kind_raw {
        0 => MetricKind::Counter,
        1 => MetricKind::Gauge,
        2 => MetricKind::Summary,
        3 => MetricKind::Untyped,
        4 => MetricKind::Histogram,
        5 => MetricKind::GaugeHistogram,
        other => return Err(named(format!("unknown metric type {other}"))),
    };
    let mut samples = Vec::new();
    for (i, m) in metrics.into_iter().enumerate() {
        let in_metric = |p: String| named(format!("metric #{}: {p}", i + 1));
        let m = metric(m, limits).map_err(in_metric)?;
        if m.has_timestamp {
            return Err(in_metric(format!("has a timestamp; {NO_TIMESTAMPS}")));
        }
        expand(&name, kind, m, &mut samples).map_err(in_metric)?;
        // Checked as it grows: a few bytes of buckets must not become a large allocation.
        if samples.len() > limits.max_series {
            return Err(named(format!(
                "more than {} samples in one push (limit)",
                limits.max_series
            )));
        }
    }
    Ok(Family {
        name,
        help,
        kind,
        samples,
    })
}

fn metric(buf: &[u8], limits: &Limits) -> Result<Metric, String> {
    let mut r = Reader::new(buf);
    let mut m = Metric::default();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect("label", wire, LEN)?;
                let (name, value) = label_pair(r.length_delimited()?)?;
                check_label(&name, &value, limits)?;
                if m.labels.contains_key(&name) {
                    return Err(format!("label {name} given twice"));
                }
                if m.labels.len() >= limits.max_labels {
                    return Err(format!(
                        "more than {} labels on one metric",
                        limits.max_labels
                    ));
                }
                m.labels.insert(name, value);
            }
            2 | 3 | 5 => {
                r.expect("value", wire, LEN)?;
                let v = single_value(r.length_delimited()?)?;
                match field {
                    2 => m.gauge = Some(v),
                    3 => m.counter = Some(v),
                    _ => m.untyped = Some(v),
                }
            }
            4 => {
                r.expect("summary", wire, LEN)?;
                m.summary = Some(summary(r.length_delimited()?)?);
            }
            6 => {
                r.skip(wire)?;
                m.has_timestamp = true;
            }
            7 => {
                r.expect("histogram", wire, LEN)?;
                m.histogram = Some(histogram(r.length_delimited()?)?);
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(m)
}

fn label_pair(buf: &[u8]) -> Result<(String, String), String> {
    let mut r = Reader::new(buf);
    let (mut name, mut value) = (String::new(), String::new());
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect("label name", wire, LEN)?;
                name = r.string("label name")?;
            }
            2 => {
                r.expect("label value", wire, LEN)?;
                value = r.string("label value")?;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok((name, value))
}

/// `Gauge`, `Counter` and `Untyped` all carry `double value = 1`.
fn single_value(buf: &[u8]) -> Result<f64, String> {
    let mut r = Reader::new(buf);
    let mut value = 0.0;
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        if field == 1 {
            r.expect("value", wire, FIXED64)?;
            value = r.double()?;
        } else {
            r.skip(wire)?;
        }
    }
    Ok(value)
}

fn summary(buf: &[u8]) -> Result<Summary, String> {
    let mut r = Reader::new(buf);
    let mut s = Summary::default();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect("sample_count", wire, VARINT)?;
                s.count = r.varint()?;
            }
            2 => {
                r.expect("sample_sum", wire, FIXED64)?;
                s.sum = r.double()?;
            }
            3 => {
                r.expect("quantile", wire, LEN)?;
                let mut q = Reader::new(r.length_delimited()?);
                let (mut quantile, mut value) = (0.0, 0.0);
                while !q.is_empty() {
                    let (field, wire) = q.key()?;
                    match field {
                        1 => {
                            q.expect("quantile", wire, FIXED64)?;
                            quantile = q.double()?;
                        }
                        2 => {
                            q.expect("value", wire, FIXED64)?;
                            value = q.double()?;
                        }
                        _ => q.skip(wire)?,
                    }
                }
                s.quantiles.push((quantile, value));
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(s)
}

fn histogram(buf: &[u8]) -> Result<Histogram, String> {
    let mut r = Reader::new(buf);
    let mut h = Histogram::default();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect("sample_count", wire, VARINT)?;
                h.count = r.varint()? as f64;
            }
            4 => {
                r.expect("sample_count_float", wire, FIXED64)?;
                h.count = r.double()?;
            }
            2 => {
                r.expect("sample_sum", wire, FIXED64)?;
                h.sum = r.double()?;
            }
            3 => {
                r.expect("bucket", wire, LEN)?;
                let mut b = Reader::new(r.length_delimited()?);
                let (mut bound, mut count) = (0.0, 0.0);
                while !b.is_empty() {
                    let (field, wire) = b.key()?;
                    match field {
                        1 => {
                            b.expect("cumulative_count", wire, VARINT)?;
                            count = b.varint()? as f64;
                        }
                        4 => {
                            b.expect("cumulative_count_float", wire, FIXED64)?;
                            count = b.double()?;
                        }
                        2 => {
                            b.expect("upper_bound", wire, FIXED64)?;
                            bound = b.double()?;
                        }
                        _ => b.skip(wire)?,
                    }
                }
                h.buckets.push((bound, count));
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(h)
}

/// Turns one metric into the samples the text format would show for it.
fn expand(name: &str, kind: MetricKind, m: Metric, out: &mut Vec<Sample>) -> Result<(), String> {
    let sample = |suffix: &str, labels: Labels, value: f64| Sample {
        name: format!("{name}{suffix}"),
        labels,
        value,
    };
    let with = |labels: &Labels, k: &str, v: f64| -> Result<Labels, String> {
        let mut l = labels.clone();
        if l.insert(k.to_string(), format_float(v)).is_some() {
            return Err(format!("has a label named {k}, which its type reserves"));
        }
        Ok(l)
    };
    match kind {
        MetricKind::Counter | MetricKind::Gauge | MetricKind::Untyped => {
            let (value, what) = match kind {
                MetricKind::Counter => (m.counter, "counter"),
                MetricKind::Gauge => (m.gauge, "gauge"),
                _ => (m.untyped, "untyped"),
            };
            let value =
                value.ok_or_else(|| format!("has no {what} value for its {what} family"))?;
            out.push(sample("", m.labels, value));
        }
        MetricKind::Summary => {
            let s = m
                .summary
                .ok_or_else(|| "has no summary for its summary family".to_string())?;
            for (q, v) in s.quantiles {
                out.push(sample("", with(&m.labels, "quantile", q)?, v));
            }
            out.push(sample("_sum", m.labels.clone(), s.sum));
            out.push(sample("_count", m.labels, s.count as f64));
        }
        MetricKind::Histogram | MetricKind::GaugeHistogram => {
            let h = m
                .histogram
                .ok_or_else(|| "has no histogram for its histogram family".to_string())?;
            let mut has_inf = false;
            for (bound, count) in h.buckets {
                has_inf |= bound == f64::INFINITY;
                out.push(sample("_bucket", with(&m.labels, "le", bound)?, count));
            }
            if !has_inf {
                out.push(sample(
                    "_bucket",
                    with(&m.labels, "le", f64::INFINITY)?,
                    h.count,
                ));
            }
            out.push(sample("_sum", m.labels.clone(), h.sum));
            out.push(sample("_count", m.labels, h.count));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::pushgateway::text;
    use prometheus::{Encoder, ProtobufEncoder, TextEncoder};

    /// A registry with one of each kind, as a Rust client would push it.
    fn registry() -> prometheus::Registry {
        let reg = prometheus::Registry::new();
        let c = prometheus::IntCounterVec::new(
            prometheus::Opts::new("jobs_total", "Jobs done."),
            &["queue"],
        )
        .unwrap();
        c.with_label_values(&["a\"b\\c\nd"]).inc_by(3);
        c.with_label_values(&["plain"]).inc_by(1);
        let g = prometheus::Gauge::new("temperature", "Now.").unwrap();
        g.set(f64::NEG_INFINITY);
        let h = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new("latency_seconds", "Latency.").buckets(vec![0.1, 1.0]),
        )
        .unwrap();
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        reg.register(Box::new(c)).unwrap();
        reg.register(Box::new(g)).unwrap();
        reg.register(Box::new(h)).unwrap();
        reg
    }

    fn encode(mfs: &[prometheus::proto::MetricFamily]) -> Vec<u8> {
        let mut buf = Vec::new();
        ProtobufEncoder::new().encode(mfs, &mut buf).unwrap();
        buf
    }

    #[test]
    fn same_model_as_the_text_parser() {
        let mfs = registry().gather();
        let pb = parse(&encode(&mfs), &Limits::default()).unwrap();
        let mut txt = Vec::new();
        TextEncoder::new().encode(&mfs, &mut txt).unwrap();
        let from_text = text::parse(&txt, &Limits::default()).unwrap();
        assert_eq!(pb.len(), 3);
        // Equal up to the rendering of bucket bounds, which both write as the text does.
        assert_eq!(pb, from_text);
        let jobs = pb.iter().find(|f| f.name == "jobs_total").unwrap();
        assert_eq!(jobs.kind, MetricKind::Counter);
        assert!(jobs
            .samples
            .iter()
            .any(|s| s.labels["queue"] == "a\"b\\c\nd" && s.value == 3.0));
        let hist = pb.iter().find(|f| f.name == "latency_seconds").unwrap();
        let inf = hist
            .samples
            .iter()
            .find(|s| s.labels.get("le").map(String::as_str) == Some("+Inf"))
            .unwrap();
        assert_eq!(inf.value, 3.0);
    }

    #[test]
    fn summaries_expand_like_the_text_format() {
        let mut q = prometheus::proto::Quantile::default();
        q.set_quantile(0.5);
        q.set_value(2.0);
        let mut s = prometheus::proto::Summary::default();
        s.set_sample_count(4);
        s.set_sample_sum(9.5);
        s.set_quantile(vec![q]);
        let mut m = prometheus::proto::Metric::default();
        m.set_summary(s);
        let mut mf = prometheus::proto::MetricFamily::default();
        mf.set_name("rpc_seconds".to_string());
        mf.set_field_type(prometheus::proto::MetricType::SUMMARY);
        mf.mut_metric().push(m);
        let fams = parse(&encode(&[mf]), &Limits::default()).unwrap();
        let got: Vec<(String, Option<String>, f64)> = fams[0]
            .samples
            .iter()
            .map(|s| (s.name.clone(), s.labels.get("quantile").cloned(), s.value))
            .collect();
        assert_eq!(
            got,
            [
                ("rpc_seconds".to_string(), Some("0.5".to_string()), 2.0),
                ("rpc_seconds_sum".to_string(), None, 9.5),
                ("rpc_seconds_count".to_string(), None, 4.0),
            ]
        );
    }

    #[test]
    fn timestamps_are_refused() {
        let mut mfs = registry().gather();
        mfs[1].mut_metric()[0].set_timestamp_ms(1_700_000_000_000);
        let err = parse(&encode(&mfs), &Limits::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("pushed metrics must not have timestamps"),
            "{err}"
        );
        assert!(err.to_string().starts_with("family "), "{err}");
    }

    #[test]
    fn truncated_and_garbage_bodies_error_without_panicking() {
        let body = encode(&registry().gather());
        // Every proper prefix: either a clean error or (at a message boundary) fewer families.
        for cut in 0..body.len() {
            let _ = parse(&body[..cut], &Limits::default());
        }
        let err = parse(&body[..body.len() - 3], &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
        // Deterministic pseudo-random garbage, plus some hand-picked nasties.
        let mut x: u32 = 0x1234_5678;
        for len in 0..400 {
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = parse(&garbage, &Limits::default());
        }
        for nasty in [
            &[0xff; 11][..],                                               // endless varint
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], // huge length
            &[0x02, 0x0b, 0x00],                                           // wire type 3
            &[0x00],                                                       // empty family
            b"# TYPE a gauge\na 1\n",                                      // text sent as protobuf
        ] {
            assert!(parse(nasty, &Limits::default()).is_err(), "{nasty:?}");
        }
    }

    #[test]
    fn duplicate_families_and_bad_names_are_refused() {
        let mfs = registry().gather();
        let twice = [mfs[0].clone(), mfs[0].clone()];
        let err = parse(&encode(&twice), &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("more than once"), "{err}");

        let mut bad = mfs[1].clone();
        bad.set_name("bad-name".to_string());
        let err = parse(&encode(&[bad]), &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("invalid metric name"), "{err}");

        let mut wrong = mfs[1].clone();
        wrong.set_field_type(prometheus::proto::MetricType::COUNTER);
        let err = parse(&encode(&[wrong]), &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("no counter value"), "{err}");
    }

    #[test]
    fn the_series_limit_applies() {
        let limits = Limits {
            max_series: 3,
            ..Limits::default()
        };
        let err = parse(&encode(&registry().gather()), &limits).unwrap_err();
        assert!(err.to_string().contains("more than 3 samples"), "{err}");
    }

    #[test]
    fn captured_go_body_matches_its_text_twin() {
        let pb = parse(
            include_bytes!("../../../tests/fixtures/push/go_dbstats.pb"),
            &Limits::default(),
        )
        .unwrap();
        let txt = text::parse(
            include_bytes!("../../../tests/fixtures/push/go_dbstats.txt"),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(pb.len(), txt.len());
        for (p, t) in pb.iter().zip(&txt) {
            assert_eq!(p.name, t.name);
            assert_eq!(p.kind, t.kind, "{}", p.name);
            assert_eq!(p.samples.len(), t.samples.len(), "{}", p.name);
            for (ps, ts) in p.samples.iter().zip(&t.samples) {
                assert_eq!(ps.name, ts.name);
                assert_eq!(ps.labels, ts.labels);
                // The text format rounds to the shortest form that round-trips.
                assert!(
                    ps.value == ts.value || (ps.value - ts.value).abs() <= 1e-9 * ps.value.abs(),
                    "{}: {} vs {}",
                    ps.name,
                    ps.value,
                    ts.value
                );
            }
        }
    }
}
