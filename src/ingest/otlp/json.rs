//! OTLP's JSON encoding (`Content-Type: application/json`): the protobuf messages in the
//! proto3 JSON mapping with OTLP's rules (lowerCamelCase keys, 64-bit integers as strings
//! or numbers, enums as integers). Field names as written in the `.proto` files
//! (`resource_metrics`) are accepted too, as the proto3 mapping's parsers accept them;
//! unknown fields are ignored, as OTLP asks of receivers; a key given twice in one
//! object is an error.
//!
//! A metric's data is borrowed unparsed ([`RawValue`]) until its name says poolwatch
//! reads it, and an attribute's value likewise until its key does; nothing else is kept.

use std::borrow::Cow;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::ingest::IngestError;

use super::{
    attribute_hash, check_kept, rule_index, Data, Export, Limits, Metric, Point, PointAttributes,
    Resource, ResourceAttributes, Temporality,
};

/// Reads an `ExportMetricsServiceRequest` in JSON. Not JSON, or JSON of the wrong shape,
/// is an error (syntax with its line and column; a wrong value with where it is), as is
/// a request beyond `limits`.
pub fn decode(body: &[u8], limits: &Limits) -> Result<Export, IngestError> {
    let request: Request = serde_json::from_slice(body).map_err(syntax)?;
    let mut export = Export::default();
    let mut kept = 0usize;
    for (i, rm) in request
        .resource_metrics
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let at = |rest: String| format!("resourceMetrics[{i}]{rest}");
        let mut resource = Resource::default();
        let attributes = rm.resource.and_then(|r| r.attributes).unwrap_or_default();
        for (j, kv) in attributes.iter().enumerate() {
            let a = attribute(kv, ResourceAttributes::wants)
                .map_err(|p| field(at(format!(".resource.attributes[{j}]")), p))?;
            if let Some(v) = a {
                check_kept(&kv.key, &v, limits)
                    .map_err(|p| field(at(format!(".resource.attributes[{j}]")), p))?;
                resource.attributes.set(&kv.key, v);
            }
        }
        for (j, sm) in rm.scope_metrics.unwrap_or_default().into_iter().enumerate() {
            for (k, m) in sm.metrics.unwrap_or_default().into_iter().enumerate() {
                let place = || at(format!(".scopeMetrics[{j}].metrics[{k}] ({})", m.name));
                match metric(&m, limits, &mut kept) {
                    Ok(Some(metric)) => resource.metrics.push(metric),
                    Ok(None) => export.ignored_metrics += 1,
                    Err((inner, problem)) => return Err(field(place() + &inner, problem)),
                }
            }
        }
        export.resources.push(resource);
    }
    Ok(export)
}

fn syntax(e: serde_json::Error) -> IngestError {
    IngestError::Syntax(e.to_string())
}

fn field(place: String, problem: String) -> IngestError {
    IngestError::field_err(place, problem)
}

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(
        default,
        borrow,
        rename = "resourceMetrics",
        alias = "resource_metrics"
    )]
    resource_metrics: Option<Vec<ResourceMetricsJson<'a>>>,
}

#[derive(Deserialize)]
struct ResourceMetricsJson<'a> {
    #[serde(default, borrow)]
    resource: Option<ResourceJson<'a>>,
    #[serde(default, borrow, rename = "scopeMetrics", alias = "scope_metrics")]
    scope_metrics: Option<Vec<ScopeMetricsJson<'a>>>,
}

#[derive(Deserialize)]
struct ResourceJson<'a> {
    #[serde(default, borrow)]
    attributes: Option<Vec<KeyValue<'a>>>,
}

#[derive(Deserialize)]
struct ScopeMetricsJson<'a> {
    #[serde(default, borrow)]
    metrics: Option<Vec<MetricJson<'a>>>,
}

#[derive(Deserialize)]
struct MetricJson<'a> {
    #[serde(default, borrow)]
    name: Cow<'a, str>,
    #[serde(default, borrow)]
    unit: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    gauge: Option<&'a RawValue>,
    #[serde(default, borrow)]
    sum: Option<&'a RawValue>,
    #[serde(default, borrow)]
    histogram: Option<&'a RawValue>,
    #[serde(
        default,
        borrow,
        rename = "exponentialHistogram",
        alias = "exponential_histogram"
    )]
    exponential_histogram: Option<&'a RawValue>,
    #[serde(default, borrow)]
    summary: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct KeyValue<'a> {
    #[serde(default, borrow)]
    key: Cow<'a, str>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct AnyValueJson<'a> {
    #[serde(default, borrow, rename = "stringValue", alias = "string_value")]
    string_value: Option<Cow<'a, str>>,
}

/// A gauge, sum, histogram, exponential histogram or summary: the parts poolwatch reads.
#[derive(Deserialize)]
struct DataJson<'a> {
    #[serde(default, borrow, rename = "dataPoints", alias = "data_points")]
    data_points: Option<Vec<PointJson<'a>>>,
    #[serde(
        default,
        rename = "aggregationTemporality",
        alias = "aggregation_temporality"
    )]
    aggregation_temporality: Option<EnumNumber>,
    #[serde(default, rename = "isMonotonic", alias = "is_monotonic")]
    is_monotonic: Option<bool>,
}

/// Any data point: `asDouble`/`asInt` of a number, `sum` of a histogram or summary.
#[derive(Deserialize)]
struct PointJson<'a> {
    #[serde(default, borrow)]
    attributes: Option<Vec<KeyValue<'a>>>,
    #[serde(default, rename = "startTimeUnixNano", alias = "start_time_unix_nano")]
    start_time_unix_nano: Option<Integer<u64>>,
    #[serde(default, rename = "timeUnixNano", alias = "time_unix_nano")]
    time_unix_nano: Option<Integer<u64>>,
    #[serde(default, rename = "asDouble", alias = "as_double")]
    as_double: Option<Double>,
    #[serde(default, rename = "asInt", alias = "as_int")]
    as_int: Option<Integer<i64>>,
    #[serde(default)]
    sum: Option<Double>,
    #[serde(default)]
    flags: Option<u32>,
}

/// A metric of [`RULES`](super::RULES), or `None` for any other (its data unparsed). The
/// error is a location below the metric and the problem.
fn metric(
    m: &MetricJson<'_>,
    limits: &Limits,
    kept: &mut usize,
) -> Result<Option<Metric>, (String, String)> {
    let Some(rule) = rule_index(&m.name) else {
        return Ok(None);
    };
    let unit = m.unit.as_deref().unwrap_or("");
    check_kept("unit", unit, limits).map_err(|p| (String::new(), p))?;
    let (what, raw) = [
        ("gauge", m.gauge),
        ("sum", m.sum),
        ("histogram", m.histogram),
        ("exponentialHistogram", m.exponential_histogram),
        ("summary", m.summary),
    ]
    .into_iter()
    .find_map(|(what, raw)| raw.map(|r| (what, r)))
    .ok_or_else(|| (String::new(), "a metric without data".to_string()))?;
    let data: DataJson =
        serde_json::from_str(raw.get()).map_err(|e| (format!(".{what}"), e.to_string()))?;
    let temporality = Temporality::from_number(data.aggregation_temporality.map_or(0, |t| t.0));
    let kind = match what {
        "gauge" => Data::Gauge,
        "sum" => Data::Sum {
            temporality,
            monotonic: data.is_monotonic.unwrap_or(false),
        },
        "histogram" => Data::Histogram { temporality },
        "exponentialHistogram" => Data::ExponentialHistogram { temporality },
        _ => Data::Summary,
    };
    let mut points = Vec::new();
    for (i, p) in data.data_points.unwrap_or_default().into_iter().enumerate() {
        let place = |rest: String| format!(".{what}.dataPoints[{i}]{rest}");
        if *kept >= limits.max_points {
            return Err((
                place(String::new()),
                format!(
                    "more than {} data points of pool metrics in one request",
                    limits.max_points
                ),
            ));
        }
        let mut point = Point {
            start: p.start_time_unix_nano.map_or(0, |t| t.0),
            time: p.time_unix_nano.map_or(0, |t| t.0),
            value: match kind {
                Data::Gauge | Data::Sum { .. } => {
                    p.as_double.map(|d| d.0).or(p.as_int.map(|i| i.0 as f64))
                }
                _ => p.sum.map(|d| d.0),
            },
            no_recorded_value: p.flags.unwrap_or(0) & 1 == 1,
            ..Point::default()
        };
        for (j, kv) in p.attributes.unwrap_or_default().iter().enumerate() {
            let raw = kv.value.map_or("", |v| v.get());
            point.series = point
                .series
                .wrapping_add(attribute_hash(kv.key.as_bytes(), raw.as_bytes()));
            let a = attribute(kv, PointAttributes::wants)
                .map_err(|p| (place(format!(".attributes[{j}]")), p))?;
            if let Some(v) = a {
                check_kept(&kv.key, &v, limits)
                    .map_err(|p| (place(format!(".attributes[{j}]")), p))?;
                point.attributes.set(&kv.key, v);
            }
        }
        points.push(point);
        *kept += 1;
    }
    Ok(Some(Metric {
        rule,
        unit: unit.to_string(),
        data: kind,
        points,
    }))
}

/// The string value of an attribute `wants` names; `None` for another key or a value
/// of another kind.
fn attribute(kv: &KeyValue<'_>, wants: fn(&str) -> bool) -> Result<Option<String>, String> {
    if !wants(&kv.key) {
        return Ok(None);
    }
    let Some(raw) = kv.value else {
        return Ok(None);
    };
    let v: AnyValueJson =
        serde_json::from_str(raw.get()).map_err(|e| format!("{}: {e}", kv.key))?;
    Ok(v.string_value.map(Cow::into_owned))
}

/// A 64-bit integer, as a JSON number or a decimal string (the proto3 mapping writes
/// 64-bit integers as strings).
struct Integer<T>(T);

impl<'de, T> Deserialize<'de> for Integer<T>
where
    T: TryFrom<i128> + std::str::FromStr,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let number = |n: &serde_json::Number| {
            n.as_i64()
                .map(i128::from)
                .or(n.as_u64().map(i128::from))
                .and_then(|i| T::try_from(i).ok())
        };
        number_or_text(d, "an integer in range", number, |s| s.parse().ok()).map(Integer)
    }
}

/// A double, as a JSON number or a string (`"NaN"`, `"Infinity"`, `"-Infinity"`, or a
/// number).
struct Double(f64);

impl<'de> Deserialize<'de> for Double {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = |s: &str| match s {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            other => other.parse().ok(),
        };
        number_or_text(d, "a number", serde_json::Number::as_f64, text).map(Double)
    }
}

/// An enum's number (OTLP writes enums as integers; their names are accepted too).
struct EnumNumber(u64);

impl<'de> Deserialize<'de> for EnumNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = |s: &str| match s {
            "AGGREGATION_TEMPORALITY_UNSPECIFIED" => Some(0),
            "AGGREGATION_TEMPORALITY_DELTA" => Some(1),
            "AGGREGATION_TEMPORALITY_CUMULATIVE" => Some(2),
            other => other.parse().ok(),
        };
        number_or_text(d, "an enum number", serde_json::Number::as_u64, text).map(EnumNumber)
    }
}

/// A value written as a JSON number or as a string, read by `number` or `text`.
fn number_or_text<'de, D: Deserializer<'de>, T>(
    d: D,
    expected: &str,
    number: impl Fn(&serde_json::Number) -> Option<T>,
    text: impl Fn(&str) -> Option<T>,
) -> Result<T, D::Error> {
    let v = NumberOrText::deserialize(d)?;
    let parsed = match &v {
        NumberOrText::Number(n) => number(n),
        NumberOrText::Text(s) => text(s),
    };
    parsed.ok_or_else(|| de::Error::custom(format!("expected {expected}, got {v}")))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText<'a> {
    Number(serde_json::Number),
    Text(#[serde(borrow)] Cow<'a, str>),
}

impl std::fmt::Display for NumberOrText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumberOrText::Number(n) => write!(f, "{n}"),
            NumberOrText::Text(s) => write!(f, "{s:?}"),
        }
    }
}

/// An `ExportMetricsServiceResponse`: `{}` when everything was accepted, else with
/// `partialSuccess`.
pub fn response(rejected: u64, message: &str) -> Vec<u8> {
    let body = if rejected > 0 || !message.is_empty() {
        serde_json::json!({
            "partialSuccess": {
                "rejectedDataPoints": rejected.to_string(),
                "errorMessage": message,
            }
        })
    } else {
        serde_json::json!({})
    };
    body.to_string().into_bytes()
}

/// A `google.rpc.Status` in JSON: the body of a refused request.
pub fn status(code: i32, message: &str) -> Vec<u8> {
    serde_json::json!({ "code": code, "message": message })
        .to_string()
        .into_bytes()
}
