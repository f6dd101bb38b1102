//! client_golang's default push encoding: a sequence of `io.prometheus.client.MetricFamily`
//! messages, each prefixed by its length as a varint
//! (`application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily;
//! encoding=delimited`).
//!
//! The schema (`metrics.proto`) is small and fixed, so this reads the wire format
//! directly rather than through generated code: every length is checked against the bytes
//! left, so a truncated or garbage body is an error, never a panic or a large allocation,
//! and the limits (metrics per family, samples, labels, name and value lengths) are
//! checked as the bytes are read, into the compact [`super::Labels`].
//!
//! Why not the `prometheus` crate's generated types (rust-protobuf 3), which the crate
//! compiles anyway: they decode a whole message into owned structs before anything can
//! be checked, which under hostile pushes costs several times the memory. Measured with
//! `cargo bench --bench push_memory` (a counting allocator; peak heap above the 1 MiB
//! body; 2026-12, issue 17):
//!
//! | 1 MiB body | this decoder: parse, group, map | rust-protobuf: decode only |
//! |---|---:|---:|
//! | 8,538 metrics of a family no client writes, 11 labels each | 2.50 MiB, 21 to 32 ms | 10.45 MiB, 17 to 42 ms |
//! | 8,538 `go_sql_open_connections`, each naming a pool | 2.50 MiB, refused at 1,001 pools | 10.45 MiB |
//! | 524,280 empty metrics in one family | 0.25 MiB, refused at 10,001 metrics | 48.00 MiB |
//!
//! The time is about the same (the ranges are three runs on a shared machine); the
//! memory is four to two hundred times less, and `http::push::Intake` reserves memory
//! per push by this decoder's cost.
//!
//! Fields it does not need (exemplars, created timestamps, native-histogram spans, units)
//! are skipped by wire type. A metric with `timestamp_ms` set is refused, as the
//! Pushgateway refuses it. Families come out in the same model the text parser produces:
//! a summary as `name{quantile}`, `name_sum`, `name_count`; a histogram as
//! `name_bucket{le}` (with the `+Inf` bucket the text format shows), `name_sum`,
//! `name_count`.

use std::collections::HashSet;
use std::sync::Arc;

use crate::ingest::wire::{Reader, FIXED64, LEN, VARINT};
use crate::ingest::IngestError;

use super::{
    check_label, check_metric_name, format_float, Family, Labels, LabelsBuilder, Limits,
    MetricKind, Sample, SeriesCheck, NO_TIMESTAMPS,
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
            // Every metric makes a sample at least: past the series limit, the push is
            // refused before the list of them grows with it.
            4 if metrics.len() == limits.max_series => Err(format!(
                "more than {} metrics in one family (limit)",
                limits.max_series
            )),
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
    let mut labels = LabelsBuilder::default();
    let names = Names::new(&name);
    for (i, m) in metrics.into_iter().enumerate() {
        let in_metric = |p: String| named(format!("metric #{}: {p}", i + 1));
        let m = metric(m, limits, &mut labels).map_err(in_metric)?;
        if m.has_timestamp {
            return Err(in_metric(format!("has a timestamp; {NO_TIMESTAMPS}")));
        }
        expand(&names, kind, m, &mut samples).map_err(in_metric)?;
        // Checked as it grows: a few bytes of buckets must not become a large allocation.
        if samples.len() > limits.max_series {
            return Err(named(format!(
                "more than {} samples in one push (limit)",
                limits.max_series
            )));
        }
    }
    Ok(Family {
        name: names.plain,
        help,
        kind,
        samples,
    })
}

fn metric(buf: &[u8], limits: &Limits, labels: &mut LabelsBuilder) -> Result<Metric, String> {
    let mut r = Reader::new(buf);
    let mut m = Metric::default();
    labels.clear();
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect("label", wire, LEN)?;
                let (name, value) = label_pair(r.length_delimited()?)?;
                check_label(name, value, limits)?;
                if labels.len() >= limits.max_labels {
                    return Err(format!(
                        "more than {} labels on one metric",
                        limits.max_labels
                    ));
                }
                labels.push_with(name, |out| {
                    out.push_str(value);
                    Ok(())
                })?;
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
    m.labels = labels.finish()?;
    Ok(m)
}

fn label_pair(buf: &[u8]) -> Result<(&str, &str), String> {
    let mut r = Reader::new(buf);
    let (mut name, mut value) = ("", "");
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect("label name", wire, LEN)?;
                name = r.str("label name")?;
            }
            2 => {
                r.expect("label value", wire, LEN)?;
                value = r.str("label value")?;
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

/// A family's sample names, each allocated once and shared by its samples.
struct Names {
    plain: Arc<str>,
    sum: Arc<str>,
    count: Arc<str>,
    bucket: Arc<str>,
}

impl Names {
    fn new(family: &str) -> Names {
        Names {
            plain: Arc::from(family),
            sum: Arc::from(format!("{family}_sum")),
            count: Arc::from(format!("{family}_count")),
            bucket: Arc::from(format!("{family}_bucket")),
        }
    }
}

/// Turns one metric into the samples the text format would show for it.
fn expand(names: &Names, kind: MetricKind, m: Metric, out: &mut Vec<Sample>) -> Result<(), String> {
    let sample = |name: &Arc<str>, labels: Labels, value: f64| Sample {
        name: name.clone(),
        labels,
        value,
    };
    let with = |labels: &Labels, k: &str, v: f64| -> Result<Labels, String> {
        labels
            .with(k, &format_float(v))
            .ok_or_else(|| format!("has a label named {k}, which its type reserves"))
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
            out.push(sample(&names.plain, m.labels, value));
        }
        MetricKind::Summary => {
            let s = m
                .summary
                .ok_or_else(|| "has no summary for its summary family".to_string())?;
            for (q, v) in s.quantiles {
                out.push(sample(&names.plain, with(&m.labels, "quantile", q)?, v));
            }
            out.push(sample(&names.sum, m.labels.clone(), s.sum));
            out.push(sample(&names.count, m.labels, s.count as f64));
        }
        MetricKind::Histogram | MetricKind::GaugeHistogram => {
            let h = m
                .histogram
                .ok_or_else(|| "has no histogram for its histogram family".to_string())?;
            let mut has_inf = false;
            for (bound, count) in h.buckets {
                has_inf |= bound == f64::INFINITY;
                out.push(sample(&names.bucket, with(&m.labels, "le", bound)?, count));
            }
            if !has_inf {
                out.push(sample(
                    &names.bucket,
                    with(&m.labels, "le", f64::INFINITY)?,
                    h.count,
                ));
            }
            out.push(sample(&names.sum, m.labels.clone(), h.sum));
            out.push(sample(&names.count, m.labels, h.count));
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
        let jobs = pb.iter().find(|f| &*f.name == "jobs_total").unwrap();
        assert_eq!(jobs.kind, MetricKind::Counter);
        assert!(jobs
            .samples
            .iter()
            .any(|s| &s.labels["queue"] == "a\"b\\c\nd" && s.value == 3.0));
        let hist = pb.iter().find(|f| &*f.name == "latency_seconds").unwrap();
        let inf = hist
            .samples
            .iter()
            .find(|s| s.labels.get("le") == Some("+Inf"))
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
        let got: Vec<(&str, Option<&str>, f64)> = fams[0]
            .samples
            .iter()
            .map(|s| (&*s.name, s.labels.get("quantile"), s.value))
            .collect();
        assert_eq!(
            got,
            [
                ("rpc_seconds", Some("0.5"), 2.0),
                ("rpc_seconds_sum", None, 9.5),
                ("rpc_seconds_count", None, 4.0),
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
        // Metrics are counted as they are read, before any is decoded: a family of many
        // empty ones is refused without a list of them all.
        let mut family = vec![0x0a, 0x01, b'g', 0x18, 0x01];
        family.extend([0x22, 0x00].repeat(4));
        let mut body = vec![family.len() as u8];
        body.extend(family);
        let err = parse(&body, &limits).unwrap_err();
        assert!(
            err.to_string()
                .contains("more than 3 metrics in one family"),
            "{err}"
        );
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
