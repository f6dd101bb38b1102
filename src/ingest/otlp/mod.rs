//! OpenTelemetry metrics over OTLP/HTTP (`POST /v1/metrics`): the connection-pool metrics
//! that instrumentations emit under the database-client semantic conventions, in both
//! of their generations, read into the canonical pool model.
//!
//! The data flows one way:
//!
//! 1. [`protobuf::decode`] or [`json::decode`] reads an `ExportMetricsServiceRequest`
//!    into an [`Export`]: per resource, the resource attributes poolwatch uses, and the
//!    data points of the metrics in [`RULES`], each with the attributes poolwatch uses
//!    and a hash of all of its attributes (the series' identity). Every other metric is
//!    skipped unread (only counted) and every other attribute dropped: nothing poolwatch
//!    does not use is kept, not even for the length of a request.
//! 2. [`plan`] names each point's pool and checks the point against the data model,
//!    refusing with a reason what it cannot use (OTLP's partial success): a delta of an
//!    up-down counter, a connection count without a state, a resource without
//!    `service.name`.
//! 3. [`series::PoolSeries`] keeps each pool's series between exports (delta counters
//!    accumulated, retried exports not counted twice) and builds the pool's snapshot.
//!
//! Nothing here does I/O, reads the clock or touches the store.
//!
//! # Which pool a point belongs to
//!
//! - **app**: the resource's `service.name` (required: SDKs always set it, to
//!   `unknown_service:<language>` when nothing else does).
//! - **instance**: `service.instance.id`, else `k8s.pod.name`, else `host.name`, else the
//!   configured default (`$POD_NAME` in sidecar mode).
//! - **pool**: the point's `db.client.connection.pool.name`, else `pool.name`, else
//!   `default`.
//! - **application_name** (what the pool's connections show in `pg_stat_activity`): the
//!   point's `poolwatch.application_name`, else the resource's, else `service.name`.
//!
//! Names are cleaned as the Pushgateway mapping cleans label values ([`clean_name`]).
//!
//! # Why a hand-written decoder
//!
//! The schema poolwatch reads is small and stable (OTLP 1.x): six messages down to a data
//! point, a few fields each. The decoder reads the wire format directly with the bounds-
//! checked `ingest::wire::Reader` the Pushgateway protobuf parser uses, and JSON with
//! serde_json (already a dependency), borrowing each metric's data unparsed until its
//! name says poolwatch wants it. The alternative, the `opentelemetry-proto` crate (0.33.1,
//! features `gen-tonic-messages`, `metrics`, `with-serde`), was measured in scratch
//! programs with poolwatch's release profile (`docs/benchmarks.md`, `bench/otlp_decode/`):
//! it adds 11 crates poolwatch does not have (among them `opentelemetry`,
//! `opentelemetry_sdk`, `prost`, `prost-derive`, `itertools`, `anyhow`), its clean build
//! took 35.9 s of CPU against 7.8 s for the same program on serde_json alone, and its
//! binary was 1,017,736 bytes against 488,680. Generated code also decodes everything:
//! every histogram bucket, exemplar and attribute of every metric into owned vectors, and
//! `AnyValue`s nested as deep as the sender likes, where poolwatch needs a handful of
//! numbers from a few metrics. On an 899 KB export of a pool's metrics beside 300 HTTP
//! histograms, prost took 5.37 ms per decode and this decoder 0.02 ms, since it skips
//! what it does not read by its length. Hand-written, a body costs at most a pass over
//! its bytes, what is kept is bounded by [`Limits`], and nothing
//! recurses (attribute values are read only at their top level).

pub mod json;
pub mod protobuf;
pub mod series;

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use crate::ingest::{clean_name, PoolKey, MAX_INSTANCE_LEN, MAX_NAME_LEN};

use self::series::{Kind, SeriesPoint, State};

/// What poolwatch takes from a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Connections by state: `used` is `in_use`, `idle` is `idle`; together `open`.
    Count,
    /// `max_open`.
    MaxOpen,
    /// `waiting`: callers waiting for a connection now.
    Waiting,
    /// `wait_duration_seconds`: the sum of the wait-time histogram.
    WaitTime,
}

/// Which generation of the semantic conventions a name belongs to; where a pool has
/// both for one field, the current names win.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Generation {
    /// `db.client.connection.*` (semantic conventions 1.26 on).
    Current,
    /// `db.client.connections.*`, the experimental names before them.
    Legacy,
}

/// One metric poolwatch reads.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// The metric's name.
    pub metric: &'static str,
    /// What it gives.
    pub use_: Use,
    /// Which naming it is.
    pub generation: Generation,
}

const fn rule(metric: &'static str, use_: Use, generation: Generation) -> Rule {
    Rule {
        metric,
        use_,
        generation,
    }
}

use Generation::{Current, Legacy};

/// Every metric poolwatch reads (`docs/push.md` has this table in prose); every other
/// metric is dropped unread. The wait time's unit comes from the metric (`s`, `ms`, ...):
/// the legacy histograms are milliseconds in the Java agent and seconds in Npgsql.
#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    rule("db.client.connection.count", Use::Count, Current),
    rule("db.client.connection.max", Use::MaxOpen, Current),
    rule("db.client.connection.pending_requests", Use::Waiting, Current),
    // Npgsql 10 names its pending requests in its own namespace.
    rule("db.client.connection.npgsql.pending_requests", Use::Waiting, Current),
    rule("db.client.connection.wait_time", Use::WaitTime, Current),
    rule("db.client.connections.usage", Use::Count, Legacy),
    rule("db.client.connections.max", Use::MaxOpen, Legacy),
    rule("db.client.connections.pending_requests", Use::Waiting, Legacy),
    rule("db.client.connections.wait_time", Use::WaitTime, Legacy),
];

/// The index in [`RULES`] of the metric named `name`.
pub fn rule_index(name: &str) -> Option<usize> {
    RULES.iter().position(|r| r.metric == name)
}

/// Point attribute naming the pool (current conventions).
pub const POOL_NAME: &str = "db.client.connection.pool.name";
/// Point attribute naming the pool (legacy conventions).
pub const LEGACY_POOL_NAME: &str = "pool.name";
/// Point attribute with the connections' state (current conventions).
pub const STATE: &str = "db.client.connection.state";
/// Point attribute with the connections' state (legacy conventions).
pub const LEGACY_STATE: &str = "state";
/// Point or resource attribute with the `application_name` the pool's connections carry
/// (poolwatch's own; no convention names it).
pub const APPLICATION_NAME: &str = "poolwatch.application_name";

/// Bounds on what one request may make poolwatch keep; everything else is bounded by
/// the body size (`http.max_body_bytes`), since it is read without being kept.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most data points of [`RULES`] metrics in one request.
    pub max_points: usize,
    /// Longest attribute value, metric unit or resource attribute kept.
    pub max_value_len: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_points: 10_000,
            max_value_len: 1_024,
        }
    }
}

/// A request reduced to what poolwatch uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Export {
    /// The resources, in the order sent.
    pub resources: Vec<Resource>,
    /// Metrics not in [`RULES`], skipped.
    pub ignored_metrics: u64,
}

/// One `ResourceMetrics`: who sent the metrics, and the wanted ones.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Resource {
    /// The resource attributes poolwatch uses.
    pub attributes: ResourceAttributes,
    /// The metrics of [`RULES`], from all scopes.
    pub metrics: Vec<Metric>,
}

/// The resource attributes poolwatch reads (string values only).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResourceAttributes {
    /// `service.name`: the app.
    pub service_name: Option<String>,
    /// `service.instance.id`: the instance, first choice.
    pub service_instance_id: Option<String>,
    /// `k8s.pod.name`: the instance, second choice.
    pub k8s_pod_name: Option<String>,
    /// `host.name`: the instance, third choice.
    pub host_name: Option<String>,
    /// `poolwatch.application_name`.
    pub application_name: Option<String>,
}

impl ResourceAttributes {
    /// Whether `key` is one poolwatch reads.
    pub fn wants(key: &str) -> bool {
        matches!(
            key,
            "service.name"
                | "service.instance.id"
                | "k8s.pod.name"
                | "host.name"
                | APPLICATION_NAME
        )
    }

    /// Sets the attribute `key` (one [`ResourceAttributes::wants`]).
    pub fn set(&mut self, key: &str, value: String) {
        let slot = match key {
            "service.name" => &mut self.service_name,
            "service.instance.id" => &mut self.service_instance_id,
            "k8s.pod.name" => &mut self.k8s_pod_name,
            "host.name" => &mut self.host_name,
            APPLICATION_NAME => &mut self.application_name,
            _ => return,
        };
        *slot = Some(value);
    }
}

/// One metric of [`RULES`].
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// Its index in [`RULES`].
    pub rule: usize,
    /// Its unit, as sent.
    pub unit: String,
    /// Its data type.
    pub data: Data,
    /// Its data points.
    pub points: Vec<Point>,
}

/// A metric's data type, with what decides how its points are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    /// A value now.
    Gauge,
    /// A sum: a counter (monotonic) or an up-down counter.
    Sum {
        /// Delta or cumulative.
        temporality: Temporality,
        /// Whether it only goes up.
        monotonic: bool,
    },
    /// An explicit-bucket histogram (its sum is read).
    Histogram {
        /// Delta or cumulative.
        temporality: Temporality,
    },
    /// An exponential histogram (its sum is read).
    ExponentialHistogram {
        /// Delta or cumulative.
        temporality: Temporality,
    },
    /// A summary (its sum is read; summaries are cumulative).
    Summary,
}

/// `AggregationTemporality`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Temporality {
    /// 0, or a value this version does not know.
    Unspecified,
    /// 1: each point is the change since the previous one.
    Delta,
    /// 2: each point is the total since the series started.
    Cumulative,
}

impl Temporality {
    /// From the enum's number.
    pub fn from_number(n: u64) -> Temporality {
        match n {
            1 => Temporality::Delta,
            2 => Temporality::Cumulative,
            _ => Temporality::Unspecified,
        }
    }
}

/// One data point, reduced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Point {
    /// The attributes poolwatch reads.
    pub attributes: PointAttributes,
    /// A hash of all of the point's attributes: two points of one metric with the same
    /// hash are the same series.
    pub series: u64,
    /// `start_time_unix_nano`.
    pub start: u64,
    /// `time_unix_nano`.
    pub time: u64,
    /// The number, or the histogram's or summary's sum; `None` when a histogram has no
    /// sum.
    pub value: Option<f64>,
    /// `FLAG_NO_RECORDED_VALUE`: the series has no value now (a staleness marker).
    pub no_recorded_value: bool,
}

/// The point attributes poolwatch reads (string values only).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PointAttributes {
    /// `db.client.connection.pool.name`.
    pub pool_name: Option<String>,
    /// `pool.name`.
    pub legacy_pool_name: Option<String>,
    /// `db.client.connection.state`.
    pub state: Option<String>,
    /// `state`.
    pub legacy_state: Option<String>,
    /// `poolwatch.application_name`.
    pub application_name: Option<String>,
}

impl PointAttributes {
    /// Whether `key` is one poolwatch reads.
    pub fn wants(key: &str) -> bool {
        matches!(
            key,
            POOL_NAME | LEGACY_POOL_NAME | STATE | LEGACY_STATE | APPLICATION_NAME
        )
    }

    /// Sets the attribute `key` (one [`PointAttributes::wants`]).
    pub fn set(&mut self, key: &str, value: String) {
        let slot = match key {
            POOL_NAME => &mut self.pool_name,
            LEGACY_POOL_NAME => &mut self.legacy_pool_name,
            STATE => &mut self.state,
            LEGACY_STATE => &mut self.legacy_state,
            APPLICATION_NAME => &mut self.application_name,
            _ => return,
        };
        *slot = Some(value);
    }

    /// The pool's name: the current attribute, else the legacy one.
    pub fn pool(&self) -> Option<&str> {
        self.pool_name
            .as_deref()
            .or(self.legacy_pool_name.as_deref())
    }

    /// The connections' state: the current attribute, else the legacy one.
    pub fn state(&self) -> Option<&str> {
        self.state.as_deref().or(self.legacy_state.as_deref())
    }
}

/// Checks a value the decoder is about to keep against [`Limits::max_value_len`].
pub(crate) fn check_kept(what: &str, value: &str, limits: &Limits) -> Result<(), String> {
    if value.len() > limits.max_value_len {
        return Err(format!(
            "{what} is {} bytes long; at most {} are accepted",
            value.len(),
            limits.max_value_len
        ));
    }
    Ok(())
}

/// The hash of one attribute (its key and its value's encoding), added up over a
/// point's attributes: the sum does not depend on their order.
pub(crate) fn attribute_hash(key: &[u8], value: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    value.hash(&mut h);
    h.finish()
}

/// Points refused, and the first few distinct reasons why (OTLP's partial success).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rejected {
    /// How many data points were refused.
    pub points: u64,
    /// Distinct reasons, at most [`Rejected::MAX_REASONS`].
    reasons: Vec<String>,
    /// Reasons beyond those kept.
    more: u64,
}

impl Rejected {
    /// Reasons kept for the answer.
    pub const MAX_REASONS: usize = 5;

    /// Records `points` refused for `reason`.
    pub fn add(&mut self, points: u64, reason: String) {
        if points == 0 {
            return;
        }
        self.points += points;
        if self.reasons.contains(&reason) {
            return;
        }
        if self.reasons.len() < Self::MAX_REASONS {
            self.reasons.push(reason);
        } else {
            self.more += 1;
        }
    }

    /// The reasons as one message (empty when nothing was refused).
    pub fn message(&self) -> String {
        let mut m = self.reasons.join("; ");
        if self.more > 0 {
            m.push_str(&format!("; and {} more reasons", self.more));
        }
        m
    }
}

/// What one pool gets from a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Incoming {
    /// The `application_name` its connections carry.
    pub application_name: String,
    /// Its points, in the order sent.
    pub points: Vec<SeriesPoint>,
}

/// A request's points, by pool, and what was refused.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Points by pool.
    pub pools: BTreeMap<PoolKey, Incoming>,
    /// Points refused, with reasons.
    pub rejected: Rejected,
    /// Metrics not read (not in [`RULES`]).
    pub ignored_metrics: u64,
}

/// Names each point's pool and checks it against the data model (see the module doc).
/// `default_instance` is the instance of a resource that names none.
pub fn plan(export: Export, default_instance: &str) -> Plan {
    let mut plan = Plan {
        ignored_metrics: export.ignored_metrics,
        ..Plan::default()
    };
    for resource in export.resources {
        plan_resource(resource, default_instance, &mut plan);
    }
    plan
}

fn plan_resource(resource: Resource, default_instance: &str, plan: &mut Plan) {
    let attrs = &resource.attributes;
    let Some(service) = attrs.service_name.as_deref().filter(|s| !s.is_empty()) else {
        let n = resource.metrics.iter().map(|m| m.points.len() as u64).sum();
        plan.rejected.add(
            n,
            "a resource has no service.name (set OTEL_SERVICE_NAME)".to_string(),
        );
        return;
    };
    let app = clean_name(service, MAX_NAME_LEN);
    let instance = [
        &attrs.service_instance_id,
        &attrs.k8s_pod_name,
        &attrs.host_name,
    ]
    .into_iter()
    .find_map(|a| a.as_deref().filter(|s| !s.is_empty()))
    .map(|i| clean_name(i, MAX_INSTANCE_LEN))
    .unwrap_or_else(|| default_instance.to_string());
    for metric in resource.metrics {
        let rule = &RULES[metric.rule];
        let (kind, scale) = match reading(rule, &metric) {
            Ok(r) => r,
            Err(reason) => {
                plan.rejected.add(
                    metric.points.len() as u64,
                    format!("{} of {app}: {reason}", rule.metric),
                );
                continue;
            }
        };
        for point in metric.points {
            if point.no_recorded_value {
                continue;
            }
            let refuse = |plan: &mut Plan, reason: &str| {
                plan.rejected
                    .add(1, format!("{} of {app}: {reason}", rule.metric));
            };
            let Some(value) = point.value.filter(|v| v.is_finite()) else {
                refuse(plan, "a point without a finite value (or histogram sum)");
                continue;
            };
            let state = match (rule.use_, point.attributes.state()) {
                (Use::Count, Some("used")) => Some(State::Used),
                (Use::Count, Some("idle")) => Some(State::Idle),
                (Use::Count, _) => {
                    refuse(
                        plan,
                        &format!("a point without {STATE} (or {LEGACY_STATE}) used or idle"),
                    );
                    continue;
                }
                _ => None,
            };
            let application_name = point
                .attributes
                .application_name
                .as_deref()
                .or(attrs.application_name.as_deref())
                .unwrap_or(service);
            if application_name.chars().any(char::is_control) {
                refuse(plan, "poolwatch.application_name has control characters");
                continue;
            }
            let pool = point
                .attributes
                .pool()
                .map(|p| clean_name(p, MAX_NAME_LEN))
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "default".to_string());
            let key = PoolKey {
                app: app.clone(),
                pool,
                instance: instance.clone(),
            };
            let incoming = plan.pools.entry(key).or_insert_with(|| Incoming {
                application_name: crate::analysis::attribute::truncate_application_name(
                    application_name,
                )
                .to_string(),
                points: Vec::new(),
            });
            incoming.points.push(SeriesPoint {
                rule: metric.rule,
                state,
                id: point.series,
                start: point.start,
                time: point.time,
                value: value * scale,
                kind,
            });
        }
    }
}

/// How a metric's points are read: as a level, a cumulative total or a delta, and the
/// factor to base units; or why they cannot be.
fn reading(rule: &Rule, metric: &Metric) -> Result<(Kind, f64), String> {
    let temporality = match metric.data {
        Data::Gauge | Data::Summary => Temporality::Cumulative,
        Data::Sum { temporality, .. }
        | Data::Histogram { temporality }
        | Data::ExponentialHistogram { temporality } => temporality,
    };
    if temporality == Temporality::Unspecified {
        return Err("aggregation temporality unspecified".to_string());
    }
    let delta = temporality == Temporality::Delta;
    match (rule.use_, metric.data) {
        (Use::WaitTime, Data::Gauge | Data::Sum { monotonic: false, .. }) => {
            Err("a wait time must be a histogram (or a counter of time)".to_string())
        }
        (Use::WaitTime, _) => {
            let scale = seconds_per(&metric.unit, rule.generation)?;
            Ok((if delta { Kind::Delta } else { Kind::Total }, scale))
        }
        (_, Data::Gauge | Data::Sum { .. }) if !delta => Ok((Kind::Level, 1.0)),
        (_, Data::Gauge | Data::Sum { .. }) => Err(
            "delta temporality gives changes, not the level poolwatch needs; export up-down counters cumulative (every SDK's default for them)"
                .to_string(),
        ),
        _ => Err("a connection count must be a gauge or a sum, not a histogram".to_string()),
    }
}

/// Seconds per unit of a time metric; an empty unit is the convention's (seconds now,
/// milliseconds in the legacy names).
fn seconds_per(unit: &str, generation: Generation) -> Result<f64, String> {
    Ok(match unit {
        "" if generation == Generation::Legacy => 1e-3,
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "ns" => 1e-9,
        "min" => 60.0,
        other => return Err(format!("unit {other:?} is not a unit of time")),
    })
}

#[cfg(test)]
mod tests;
