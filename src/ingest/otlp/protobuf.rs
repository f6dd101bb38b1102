//! OTLP's binary protobuf encoding (`Content-Type: application/x-protobuf`): the
//! `ExportMetricsServiceRequest` read into an [`Export`], and the answers written.
//!
//! Read by field number from `opentelemetry/proto/{collector/metrics,metrics,resource,
//! common}/v1/*.proto` (OTLP 1.x); fields not listed are skipped by wire type, so a newer
//! sender's additions pass. A metric not in [`RULES`](super::RULES) is skipped by its
//! length without reading its data, so a malformed one goes unnoticed (it is dropped
//! either way); of an attribute only the key is read unless poolwatch wants it, and then
//! only a string value at the top level (arrays and maps are never descended).

use crate::ingest::wire::{Reader, Writer, FIXED64, LEN, VARINT};
use crate::ingest::IngestError;

use super::{
    attribute_hash, check_kept, rule_index, Data, Export, Limits, Metric, Point, PointAttributes,
    Resource, ResourceAttributes, Temporality,
};

/// A problem and where it is, innermost last.
struct Located {
    path: Vec<String>,
    problem: String,
}

impl From<String> for Located {
    fn from(problem: String) -> Located {
        Located {
            path: Vec::new(),
            problem,
        }
    }
}

/// Prefixes a location to an error's path.
trait At<T> {
    fn at(self, place: impl FnOnce() -> String) -> Result<T, Located>;
}

impl<T, E: Into<Located>> At<T> for Result<T, E> {
    fn at(self, place: impl FnOnce() -> String) -> Result<T, Located> {
        self.map_err(|e| {
            let mut l = e.into();
            l.path.insert(0, place());
            l
        })
    }
}

/// Reads an `ExportMetricsServiceRequest`. A body that is not one (truncated, a wrong
/// wire type, invalid UTF-8 in a string poolwatch reads) or exceeds `limits` is an
/// error naming where.
pub fn decode(body: &[u8], limits: &Limits) -> Result<Export, IngestError> {
    let mut export = Export::default();
    let mut kept = 0usize;
    request(body, limits, &mut export, &mut kept).map_err(|l| {
        let mut field = String::new();
        for segment in &l.path {
            if !field.is_empty() {
                field.push(if segment.starts_with('(') { ' ' } else { '.' });
            }
            field.push_str(segment);
        }
        if field.is_empty() {
            field.push_str("body");
        }
        IngestError::field_err(field, l.problem)
    })?;
    Ok(export)
}

fn request(
    body: &[u8],
    limits: &Limits,
    export: &mut Export,
    kept: &mut usize,
) -> Result<(), Located> {
    let mut r = Reader::new(body);
    let mut i = 0;
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        if field == 1 {
            let place = || format!("resource_metrics[{i}]");
            r.expect("resource_metrics", wire, LEN).at(place)?;
            let m = r.length_delimited().at(place)?;
            let resource = resource_metrics(m, limits, export, kept).at(place)?;
            export.resources.push(resource);
            i += 1;
        } else {
            r.skip(wire)?;
        }
    }
    Ok(())
}

fn resource_metrics(
    buf: &[u8],
    limits: &Limits,
    export: &mut Export,
    kept: &mut usize,
) -> Result<Resource, Located> {
    let mut r = Reader::new(buf);
    let mut resource = Resource::default();
    let mut scope = 0;
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect("resource", wire, LEN).at(|| "resource".into())?;
                let m = r.length_delimited()?;
                resource_attributes(m, limits, &mut resource.attributes)
                    .at(|| "resource".into())?;
            }
            2 => {
                let place = || format!("scope_metrics[{scope}]");
                r.expect("scope_metrics", wire, LEN).at(place)?;
                let m = r.length_delimited().at(place)?;
                scope_metrics(m, limits, export, kept, &mut resource.metrics).at(place)?;
                scope += 1;
            }
            _ => r.skip(wire)?,
        }
    }
    Ok(resource)
}

fn resource_attributes(
    buf: &[u8],
    limits: &Limits,
    attrs: &mut ResourceAttributes,
) -> Result<(), Located> {
    let mut r = Reader::new(buf);
    let mut i = 0;
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        if field == 1 {
            let place = || format!("attributes[{i}]");
            r.expect("attributes", wire, LEN).at(place)?;
            let kv = r.length_delimited().at(place)?;
            let a = key_value(kv, ResourceAttributes::wants).at(place)?;
            if let Some(v) = a.value {
                check_kept(a.key, &v, limits).at(place)?;
                attrs.set(a.key, v);
            }
            i += 1;
        } else {
            r.skip(wire)?;
        }
    }
    Ok(())
}

/// One attribute (`KeyValue`): its key, its value's bytes (for the series hash), and its
/// string value when `wants(key)`.
struct Attribute<'a> {
    key: &'a str,
    raw: &'a [u8],
    value: Option<String>,
}

fn key_value<'a>(buf: &'a [u8], wants: fn(&str) -> bool) -> Result<Attribute<'a>, String> {
    let mut r = Reader::new(buf);
    let mut a = Attribute {
        key: "",
        raw: &[],
        value: None,
    };
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect("key", wire, LEN)?;
                a.key = r.str("key")?;
            }
            2 => {
                r.expect("value", wire, LEN)?;
                a.raw = r.length_delimited()?;
            }
            _ => r.skip(wire)?,
        }
    }
    if wants(a.key) {
        a.value = string_value(a.raw).map_err(|e| format!("{}: {e}", a.key))?;
    }
    Ok(a)
}

/// An `AnyValue`'s `string_value`; `None` for any other kind (never descended).
fn string_value(buf: &[u8]) -> Result<Option<String>, String> {
    let mut r = Reader::new(buf);
    let mut s = None;
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        if field == 1 {
            r.expect("string_value", wire, LEN)?;
            s = Some(r.string("string_value")?);
        } else {
            // A oneof: a later field replaces an earlier one.
            s = None;
            r.skip(wire)?;
        }
    }
    Ok(s)
}

fn scope_metrics(
    buf: &[u8],
    limits: &Limits,
    export: &mut Export,
    kept: &mut usize,
    out: &mut Vec<Metric>,
) -> Result<(), Located> {
    let mut r = Reader::new(buf);
    let mut i = 0;
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        if field == 2 {
            let place = || format!("metrics[{i}]");
            r.expect("metrics", wire, LEN).at(place)?;
            let m = r.length_delimited().at(place)?;
            match metric(m, limits, kept).at(place)? {
                Some(m) => out.push(m),
                None => export.ignored_metrics += 1,
            }
            i += 1;
        } else {
            r.skip(wire)?;
        }
    }
    Ok(())
}

/// A `Metric` of [`RULES`](super::RULES), or `None` for any other (its data unread).
fn metric(buf: &[u8], limits: &Limits, kept: &mut usize) -> Result<Option<Metric>, Located> {
    let mut r = Reader::new(buf);
    let (mut name, mut unit) = ("", "");
    let mut data: Option<(u64, &[u8])> = None;
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                r.expect("name", wire, LEN)?;
                name = r.str("name")?;
            }
            3 => {
                r.expect("unit", wire, LEN)?;
                unit = r.str("unit")?;
            }
            5 | 7 | 9 | 10 | 11 => {
                r.expect("data", wire, LEN)?;
                data = Some((field, r.length_delimited()?));
            }
            _ => r.skip(wire)?,
        }
    }
    let Some(rule) = rule_index(name) else {
        return Ok(None);
    };
    let named = || format!("({name})");
    check_kept("unit", unit, limits).at(named)?;
    let Some((kind, buf)) = data else {
        return Err(Located::from("a metric without data".to_string())).at(named);
    };
    let (data, points) = metric_data(kind, buf, limits, kept).at(named)?;
    Ok(Some(Metric {
        rule,
        unit: unit.to_string(),
        data,
        points,
    }))
}

/// `Gauge` (5), `Sum` (7), `Histogram` (9), `ExponentialHistogram` (10) or `Summary`
/// (11): their points, temporality and monotonicity.
fn metric_data(
    kind: u64,
    buf: &[u8],
    limits: &Limits,
    kept: &mut usize,
) -> Result<(Data, Vec<Point>), Located> {
    let what = match kind {
        5 => "gauge",
        7 => "sum",
        9 => "histogram",
        10 => "exponential_histogram",
        _ => "summary",
    };
    let mut r = Reader::new(buf);
    let (mut temporality, mut monotonic) = (0, false);
    let mut points = Vec::new();
    while !r.is_empty() {
        let (field, wire) = r.key().at(|| what.to_string())?;
        match field {
            1 => {
                let place = || format!("{what}.data_points[{}]", points.len());
                r.expect("data_points", wire, LEN).at(place)?;
                let p = r.length_delimited().at(place)?;
                if *kept >= limits.max_points {
                    return Err(Located::from(format!(
                        "more than {} data points of pool metrics in one request",
                        limits.max_points
                    )))
                    .at(place);
                }
                points.push(data_point(kind, p, limits).at(place)?);
                *kept += 1;
            }
            2 if kind != 5 && kind != 11 => {
                r.expect("aggregation_temporality", wire, VARINT)
                    .at(|| what.to_string())?;
                temporality = r.varint().at(|| what.to_string())?;
            }
            3 if kind == 7 => {
                r.expect("is_monotonic", wire, VARINT)
                    .at(|| what.to_string())?;
                monotonic = r.varint().at(|| what.to_string())? != 0;
            }
            _ => r.skip(wire).at(|| what.to_string())?,
        }
    }
    let temporality = Temporality::from_number(temporality);
    let data = match kind {
        5 => Data::Gauge,
        7 => Data::Sum {
            temporality,
            monotonic,
        },
        9 => Data::Histogram { temporality },
        10 => Data::ExponentialHistogram { temporality },
        _ => Data::Summary,
    };
    Ok((data, points))
}

/// Field numbers of a data point's parts, which differ by data type.
struct PointFields {
    attributes: u64,
    flags: u64,
    /// `as_double` (numbers) or `sum` (histograms, summaries).
    double: u64,
    /// `as_int` (numbers only).
    int: Option<u64>,
}

fn point_fields(kind: u64) -> PointFields {
    match kind {
        // NumberDataPoint.
        5 | 7 => PointFields {
            attributes: 7,
            flags: 8,
            double: 4,
            int: Some(6),
        },
        // HistogramDataPoint.
        9 => PointFields {
            attributes: 9,
            flags: 10,
            double: 5,
            int: None,
        },
        // ExponentialHistogramDataPoint.
        10 => PointFields {
            attributes: 1,
            flags: 10,
            double: 5,
            int: None,
        },
        // SummaryDataPoint.
        _ => PointFields {
            attributes: 7,
            flags: 8,
            double: 5,
            int: None,
        },
    }
}

fn data_point(kind: u64, buf: &[u8], limits: &Limits) -> Result<Point, Located> {
    let f = point_fields(kind);
    let mut r = Reader::new(buf);
    let mut p = Point::default();
    let mut i = 0;
    while !r.is_empty() {
        let (field, wire) = r.key()?;
        if field == f.attributes {
            let place = || format!("attributes[{i}]");
            r.expect("attributes", wire, LEN).at(place)?;
            let kv = r.length_delimited().at(place)?;
            let a = key_value(kv, PointAttributes::wants).at(place)?;
            p.series = p
                .series
                .wrapping_add(attribute_hash(a.key.as_bytes(), a.raw));
            if let Some(v) = a.value {
                check_kept(a.key, &v, limits).at(place)?;
                p.attributes.set(a.key, v);
            }
            i += 1;
        } else if field == 2 || field == 3 {
            r.expect("time", wire, FIXED64)?;
            let t = r.fixed64()?;
            if field == 2 {
                p.start = t;
            } else {
                p.time = t;
            }
        } else if field == f.double {
            r.expect("value", wire, FIXED64)?;
            p.value = Some(r.double()?);
        } else if Some(field) == f.int {
            r.expect("as_int", wire, FIXED64)?;
            p.value = Some(r.fixed64()? as i64 as f64);
        } else if field == f.flags {
            r.expect("flags", wire, VARINT)?;
            p.no_recorded_value = r.varint()? & 1 == 1;
        } else {
            r.skip(wire)?;
        }
    }
    Ok(p)
}

/// An `ExportMetricsServiceResponse`: empty when everything was accepted, else with
/// `partial_success` (`rejected_data_points`, `error_message`).
pub fn response(rejected: u64, message: &str) -> Vec<u8> {
    let mut w = Writer::default();
    if rejected > 0 || !message.is_empty() {
        let mut partial = Writer::default();
        partial.int(1, rejected as i64);
        partial.string(2, message);
        w.message(1, partial);
    }
    w.finish()
}

/// A `google.rpc.Status` (`code`, `message`): the body of a refused request.
pub fn status(code: i32, message: &str) -> Vec<u8> {
    let mut w = Writer::default();
    w.int(1, i64::from(code));
    w.string(2, message);
    w.finish()
}
