//! From the pool families that clients already emit to the canonical pool model.
//!
//! Samples are matched by their own name (so a summary's `_sum` is found whether or not
//! the push declared the family's type). Each matched sample names its pool:
//!
//! - **app**: the grouping key's `app` label, else the `job`.
//! - **instance**: the grouping key's `instance` label, else the sample's `instance`
//!   label, else the caller's default (e.g. the configured instance).
//! - **pool**: the client's pool label on the sample (`db_name` for the Go collectors,
//!   `pool` for HikariCP, `pool`/`pool_name`/`db_name`/`database`/`db` for pgxpool,
//!   `db_client_connection_pool_name`/`pool_name` for OpenTelemetry), else the grouping
//!   key's `pool` label, else `default`. As in the Pushgateway, a grouping-key label
//!   overrides a sample label of the same name.
//! - **application_name**: the grouping key's `application_name` label, else the app;
//!   `max_lifetime_seconds` and `max_idle_time_seconds` may also come from the key.
//!
//! Values taken from the path must pass [`check_name`]; values taken from sample labels
//! are made to pass it (other characters become `_`), since the client chose them and the
//! push should still work. A pool gets `open` from the client's total, else `in_use +
//! idle`; a pool with neither is reported as incomplete rather than produced. When two
//! samples give one pool the same field, the preferred naming wins (the current
//! OpenTelemetry names over the older ones); two samples of equal standing are an error.
//! Families that match nothing are ignored and listed; Python's extra `_created`
//! families are tolerated silently when their base family is in the push.

use std::collections::{BTreeMap, HashSet};

use crate::ingest::{
    check_name, clean_name, IngestError, PoolKey, PoolPush, PoolSnapshot, MAX_APPLICATION_NAME_LEN,
    MAX_INSTANCE_LEN, MAX_NAME_LEN,
};

use super::path::GroupingKey;
use super::{series_name, Family, Sample};

/// A canonical field a sample can fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// `max_open` (0 means unlimited).
    MaxOpen,
    /// `open`.
    Open,
    /// `in_use`.
    InUse,
    /// `idle`.
    Idle,
    /// `waiting`.
    Waiting,
    /// `wait_count`.
    WaitCount,
    /// `wait_duration_seconds`.
    WaitSeconds,
    /// `max_idle_closed`.
    MaxIdleClosed,
    /// `max_idle_time_closed`.
    MaxIdleTimeClosed,
    /// `max_lifetime_closed`.
    MaxLifetimeClosed,
}

impl Field {
    /// The canonical field's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Field::MaxOpen => "max_open",
            Field::Open => "open",
            Field::InUse => "in_use",
            Field::Idle => "idle",
            Field::Waiting => "waiting",
            Field::WaitCount => "wait_count",
            Field::WaitSeconds => "wait_duration_seconds",
            Field::MaxIdleClosed => "max_idle_closed",
            Field::MaxIdleTimeClosed => "max_idle_time_closed",
            Field::MaxLifetimeClosed => "max_lifetime_closed",
        }
    }
}

/// A client library (or naming) whose pool metrics are understood.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Client {
    /// client_golang's `collectors.NewDBStatsCollector(db, dbName)`.
    GoClientGolang,
    /// `github.com/dlmiddlecote/sqlstats`.
    GoSqlstats,
    /// GitLab's `labkit/metrics/sqlmetrics`.
    GoLabkit,
    /// HikariCP through Micrometer's Prometheus registry.
    HikariMicrometer,
    /// HikariCP's own `PrometheusMetricsTrackerFactory` (and its `HikariCPCollector`).
    HikariPrometheus,
    /// pgx's `pgxpool.Stat` through a collector such as IBM/pgxpoolprometheus.
    Pgxpool,
    /// OpenTelemetry database client semantic conventions (current names).
    OpenTelemetry,
    /// OpenTelemetry's experimental names before they were renamed (`db.client.connections.*`).
    OpenTelemetryLegacy,
}

impl Client {
    /// The labels that carry the pool's name, in order of preference.
    pub fn pool_labels(self) -> &'static [&'static str] {
        match self {
            Client::GoClientGolang | Client::GoSqlstats | Client::GoLabkit => &["db_name"],
            Client::HikariMicrometer | Client::HikariPrometheus => &["pool"],
            Client::Pgxpool => &["pool", "pool_name", "db_name", "database", "db"],
            Client::OpenTelemetry => &["db_client_connection_pool_name", "pool_name"],
            Client::OpenTelemetryLegacy => &["pool_name", "db_client_connections_pool_name"],
        }
    }

    /// The labels that carry a connection's state (OpenTelemetry's count), in order.
    fn state_labels(self) -> &'static [&'static str] {
        match self {
            Client::OpenTelemetry => &["db_client_connection_state", "state"],
            Client::OpenTelemetryLegacy => &["state"],
            _ => &[],
        }
    }
}

/// One understood sample name.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// The sample's name, e.g. `go_sql_open_connections` or `..._seconds_sum`.
    pub sample: &'static str,
    /// Whose naming it is (decides the pool label).
    pub client: Client,
    /// The canonical field it fills.
    pub field: Field,
    /// Only samples whose state label has this value (OpenTelemetry's `used`/`idle`).
    pub state: Option<&'static str>,
    /// Divisor to base units (1e9 for nanoseconds, 1e3 for milliseconds).
    pub divisor: f64,
    /// Lower wins when two rules fill one pool's field.
    pub rank: u8,
}

const fn rule(sample: &'static str, client: Client, field: Field) -> Rule {
    Rule {
        sample,
        client,
        field,
        state: None,
        divisor: 1.0,
        rank: 0,
    }
}

const fn scaled(sample: &'static str, client: Client, field: Field, divisor: f64) -> Rule {
    Rule {
        divisor,
        ..rule(sample, client, field)
    }
}

const fn state(sample: &'static str, client: Client, field: Field, value: &'static str) -> Rule {
    Rule {
        state: Some(value),
        ..rule(sample, client, field)
    }
}

const fn legacy(r: Rule) -> Rule {
    Rule { rank: 1, ..r }
}

use Client::*;
use Field::*;

/// Every understood sample name (`docs/push.md` has this table in prose). Kept one rule
/// a line, out of rustfmt's reach, so it reads as the table it is.
#[rustfmt::skip]
pub const RULES: &[Rule] = &[
    // client_golang collectors.NewDBStatsCollector (label db_name).
    rule("go_sql_max_open_connections", GoClientGolang, MaxOpen),
    rule("go_sql_open_connections", GoClientGolang, Open),
    rule("go_sql_in_use_connections", GoClientGolang, InUse),
    rule("go_sql_idle_connections", GoClientGolang, Idle),
    rule("go_sql_wait_count_total", GoClientGolang, WaitCount),
    rule("go_sql_wait_duration_seconds_total", GoClientGolang, WaitSeconds),
    rule("go_sql_max_idle_closed_total", GoClientGolang, MaxIdleClosed),
    rule("go_sql_max_idle_time_closed_total", GoClientGolang, MaxIdleTimeClosed),
    rule("go_sql_max_lifetime_closed_total", GoClientGolang, MaxLifetimeClosed),
    // dlmiddlecote/sqlstats (label db_name); blocked_time is its older name for blocked_seconds.
    rule("go_sql_stats_connections_max_open", GoSqlstats, MaxOpen),
    rule("go_sql_stats_connections_open", GoSqlstats, Open),
    rule("go_sql_stats_connections_in_use", GoSqlstats, InUse),
    rule("go_sql_stats_connections_idle", GoSqlstats, Idle),
    rule("go_sql_stats_connections_waited_for", GoSqlstats, WaitCount),
    rule("go_sql_stats_connections_blocked_seconds", GoSqlstats, WaitSeconds),
    rule("go_sql_stats_connections_blocked_time", GoSqlstats, WaitSeconds),
    rule("go_sql_stats_connections_closed_max_idle", GoSqlstats, MaxIdleClosed),
    rule("go_sql_stats_connections_closed_max_idle_time", GoSqlstats, MaxIdleTimeClosed),
    rule("go_sql_stats_connections_closed_max_lifetime", GoSqlstats, MaxLifetimeClosed),
    // GitLab labkit sqlmetrics (label db_name).
    rule("go_sql_dbstats_connections_max_open", GoLabkit, MaxOpen),
    rule("go_sql_dbstats_connections_open", GoLabkit, Open),
    rule("go_sql_dbstats_connections_in_use", GoLabkit, InUse),
    rule("go_sql_dbstats_connections_idle", GoLabkit, Idle),
    rule("go_sql_dbstats_connections_waits_total", GoLabkit, WaitCount),
    rule("go_sql_dbstats_connections_wait_seconds_total", GoLabkit, WaitSeconds),
    rule("go_sql_dbstats_connections_max_idle_closed_count_total", GoLabkit, MaxIdleClosed),
    rule("go_sql_dbstats_connections_max_idle_time_closed_count_total", GoLabkit, MaxIdleTimeClosed),
    rule("go_sql_dbstats_connections_max_lifetime_closed_count_total", GoLabkit, MaxLifetimeClosed),
    // HikariCP, both namings (label pool); hikaricp_connections is the total in both.
    rule("hikaricp_connections", HikariMicrometer, Open),
    rule("hikaricp_connections_active", HikariMicrometer, InUse),
    rule("hikaricp_connections_idle", HikariMicrometer, Idle),
    rule("hikaricp_connections_pending", HikariMicrometer, Waiting),
    rule("hikaricp_connections_max", HikariMicrometer, MaxOpen),
    rule("hikaricp_connections_acquire_seconds_sum", HikariMicrometer, WaitSeconds),
    rule("hikaricp_active_connections", HikariPrometheus, InUse),
    rule("hikaricp_idle_connections", HikariPrometheus, Idle),
    rule("hikaricp_pending_threads", HikariPrometheus, Waiting),
    rule("hikaricp_max_connections", HikariPrometheus, MaxOpen),
    scaled("hikaricp_connection_acquired_nanos_sum", HikariPrometheus, WaitSeconds, 1e9),
    // pgxpool.Stat (IBM/pgxpoolprometheus names; the same with _total also accepted).
    rule("pgxpool_max_conns", Pgxpool, MaxOpen),
    rule("pgxpool_total_conns", Pgxpool, Open),
    rule("pgxpool_acquired_conns", Pgxpool, InUse),
    rule("pgxpool_idle_conns", Pgxpool, Idle),
    rule("pgxpool_empty_acquire", Pgxpool, WaitCount),
    rule("pgxpool_empty_acquire_total", Pgxpool, WaitCount),
    rule("pgxpool_empty_acquire_count", Pgxpool, WaitCount),
    rule("pgxpool_empty_acquire_count_total", Pgxpool, WaitCount),
    scaled("pgxpool_acquire_duration_ns", Pgxpool, WaitSeconds, 1e9),
    scaled("pgxpool_acquire_duration_ns_total", Pgxpool, WaitSeconds, 1e9),
    rule("pgxpool_acquire_duration_seconds_total", Pgxpool, WaitSeconds),
    rule("pgxpool_max_lifetime_destroy_count", Pgxpool, MaxLifetimeClosed),
    rule("pgxpool_max_lifetime_destroy_count_total", Pgxpool, MaxLifetimeClosed),
    rule("pgxpool_max_idle_destroy_count", Pgxpool, MaxIdleTimeClosed),
    rule("pgxpool_max_idle_destroy_count_total", Pgxpool, MaxIdleTimeClosed),
    // OpenTelemetry semantic conventions, as its Prometheus exporter names them.
    state("db_client_connection_count", OpenTelemetry, InUse, "used"),
    state("db_client_connection_count", OpenTelemetry, Idle, "idle"),
    rule("db_client_connection_max", OpenTelemetry, MaxOpen),
    rule("db_client_connection_pending_requests", OpenTelemetry, Waiting),
    rule("db_client_connection_wait_time_seconds_sum", OpenTelemetry, WaitSeconds),
    legacy(state("db_client_connections_usage", OpenTelemetryLegacy, InUse, "used")),
    legacy(state("db_client_connections_usage", OpenTelemetryLegacy, Idle, "idle")),
    legacy(rule("db_client_connections_max", OpenTelemetryLegacy, MaxOpen)),
    legacy(rule("db_client_connections_pending_requests", OpenTelemetryLegacy, Waiting)),
    legacy(scaled("db_client_connections_wait_time_milliseconds_sum", OpenTelemetryLegacy, WaitSeconds, 1e3)),
];

/// Families of the same clients that carry nothing the canonical model has (minimums,
/// timeouts, creation and usage times, ...): understood, so not counted as ignored.
pub const RECOGNISED: &[&str] = &[
    "hikaricp_connections_min",
    "hikaricp_connections_timeout_total",
    "hikaricp_connections_creation_seconds",
    "hikaricp_connections_usage_seconds",
    "hikaricp_connections_acquire_seconds",
    "hikaricp_min_connections",
    "hikaricp_connection_timeout_total",
    "hikaricp_connection_creation_millis",
    "hikaricp_connection_usage_millis",
    "hikaricp_connection_acquired_nanos",
    "pgxpool_acquire_count",
    "pgxpool_acquire_count_total",
    "pgxpool_canceled_acquire_count",
    "pgxpool_canceled_acquire_count_total",
    "pgxpool_constructing_conns",
    "pgxpool_new_conns_count",
    "pgxpool_new_conns_count_total",
    "db_client_connection_timeouts_total",
    "db_client_connection_idle_max",
    "db_client_connection_idle_min",
    "db_client_connection_create_time_seconds",
    "db_client_connection_use_time_seconds",
    "db_client_connection_wait_time_seconds",
    "db_client_connections_timeouts_total",
    "db_client_connections_idle_max",
    "db_client_connections_idle_min",
    "db_client_connections_create_time_milliseconds",
    "db_client_connections_use_time_milliseconds",
    "db_client_connections_wait_time_milliseconds",
];

/// What a group's families say about pools.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mapped {
    /// One push per pool found, sorted by key.
    pub pools: Vec<PoolPush>,
    /// Families that map to nothing, by name (Python's `_created` twins excluded).
    pub ignored_families: Vec<String>,
    /// Pools some sample named but that lack `open` and `in_use` + `idle`, with what
    /// they lack; no snapshot is produced for them.
    pub incomplete: Vec<(PoolKey, String)>,
}

/// The value one field got, and from which sample.
struct Slot<'a> {
    rank: u8,
    value: f64,
    sample: &'a Sample,
}

/// Reads the pools out of one group's families. `default_instance` is used when neither
/// the grouping key nor a sample names the instance. A group that names more than
/// `max_pools` pools could never be stored, and is refused as soon as that is clear.
pub fn map_group<'a>(
    key: &GroupingKey,
    families: impl IntoIterator<Item = &'a Family>,
    default_instance: &str,
    max_pools: usize,
) -> Result<Mapped, IngestError> {
    let families: Vec<&Family> = families.into_iter().collect();
    let ctx = KeyContext::new(key, default_instance)?;
    let mut slots: BTreeMap<PoolKey, BTreeMap<Field, Slot>> = BTreeMap::new();
    let mut ignored = Vec::new();
    let names: HashSet<&str> = families.iter().map(|f| &*f.name).collect();
    for family in &families {
        let mut matched = false;
        for sample in &family.samples {
            for rule in RULES.iter().filter(|r| r.sample == &*sample.name) {
                if !state_matches(rule, sample, key) {
                    continue;
                }
                matched = true;
                let pool = ctx.pool_key(rule.client, sample)?;
                let value = sample.value / rule.divisor;
                if !slots.contains_key(&pool) && slots.len() >= max_pools {
                    return Err(IngestError::TooManyPools { limit: max_pools });
                }
                let fields = slots.entry(pool.clone()).or_default();
                match fields.get(&rule.field) {
                    Some(old) if old.rank < rule.rank => {}
                    Some(old) if old.rank == rule.rank => {
                        return Err(IngestError::field_err(
                            format!("family {}", family.name),
                            format!(
                                "{} and {} both give {} of pool {}/{}/{}; \
                                 tell them apart with a distinct pool label or grouping key",
                                series_name(&sample.name, &sample.labels),
                                series_name(&old.sample.name, &old.sample.labels),
                                rule.field.as_str(),
                                pool.app,
                                pool.instance,
                                pool.pool
                            ),
                        ));
                    }
                    _ => {
                        fields.insert(
                            rule.field,
                            Slot {
                                rank: rule.rank,
                                value,
                                sample,
                            },
                        );
                    }
                }
            }
        }
        if !matched && !is_recognised(&family.name) && !is_created_twin(&family.name, &names) {
            ignored.push(family.name.to_string());
        }
    }
    let mut mapped = Mapped {
        ignored_families: ignored,
        ..Mapped::default()
    };
    for (pool, fields) in slots {
        match snapshot(&fields, &ctx)? {
            Ok(snapshot) => mapped.pools.push(PoolPush {
                key: pool,
                snapshot,
            }),
            Err(missing) => mapped.incomplete.push((pool, missing)),
        }
    }
    Ok(mapped)
}

/// Checks what a grouping key fixes for its pools (app, instance, application_name,
/// lifetimes), as a push to it would: a `DELETE` of a key no push could use is refused
/// the same way.
pub fn check_key(key: &GroupingKey) -> Result<(), IngestError> {
    KeyContext::new(key, "").map(drop)
}

/// Whether a sample passes a rule's state condition (always, for rules without one).
fn state_matches(rule: &Rule, sample: &Sample, key: &GroupingKey) -> bool {
    let Some(want) = rule.state else {
        return true;
    };
    rule.client
        .state_labels()
        .iter()
        .find_map(|l| key.get(l).or_else(|| sample.labels.get(l)))
        == Some(want)
}

/// Whether a family belongs to a known client even though no rule matched it.
fn is_recognised(name: &str) -> bool {
    let bases = std::iter::once(name).chain(
        ["_sum", "_count", "_bucket", "_max"]
            .iter()
            .filter_map(|s| name.strip_suffix(s)),
    );
    for base in bases {
        if RECOGNISED.contains(&base)
            || RULES
                .iter()
                .any(|r| r.sample == base || r.sample.strip_suffix("_sum") == Some(base))
        {
            return true;
        }
    }
    false
}

/// Python's prometheus_client writes `X_created` beside counters, summaries and histograms.
fn is_created_twin(name: &str, names: &HashSet<&str>) -> bool {
    name.strip_suffix("_created").is_some_and(|base| {
        names.contains(base) || names.contains(format!("{base}_total").as_str())
    })
}

/// What the grouping key fixes for every pool of the group.
struct KeyContext<'a> {
    key: &'a GroupingKey,
    app: String,
    /// The key's instance, checked; `None` when the key has none.
    instance: Option<String>,
    default_instance: &'a str,
    application_name: String,
    max_lifetime_seconds: Option<f64>,
    max_idle_time_seconds: Option<f64>,
}

impl<'a> KeyContext<'a> {
    fn new(key: &'a GroupingKey, default_instance: &'a str) -> Result<Self, IngestError> {
        let app = match key.get("app") {
            Some(app) => {
                check_name("label app", app, MAX_NAME_LEN, false)?;
                app.to_string()
            }
            None => {
                check_name("job", key.job(), MAX_NAME_LEN, false)?;
                key.job().to_string()
            }
        };
        let instance = match key.get("instance") {
            Some(i) => {
                check_name("label instance", i, MAX_INSTANCE_LEN, true)?;
                Some(i.to_string())
            }
            None => None,
        };
        let application_name = match key.get("application_name") {
            Some(a) if a.len() > MAX_APPLICATION_NAME_LEN || a.chars().any(char::is_control) => {
                return Err(IngestError::field_err(
                    "label application_name",
                    format!("at most {MAX_APPLICATION_NAME_LEN} bytes without control characters"),
                ))
            }
            Some(a) => a.to_string(),
            None => app.clone(),
        };
        let seconds = |label: &str| -> Result<Option<f64>, IngestError> {
            match key.get(label) {
                None => Ok(None),
                Some(v) => match v.parse::<f64>() {
                    Ok(s) if s.is_finite() && s >= 0.0 => Ok(Some(s).filter(|&s| s > 0.0)),
                    _ => Err(IngestError::field_err(
                        format!("label {label}"),
                        format!("expected a non-negative number of seconds, got {v:?}"),
                    )),
                },
            }
        };
        Ok(KeyContext {
            key,
            app,
            instance,
            default_instance,
            application_name,
            max_lifetime_seconds: seconds("max_lifetime_seconds")?,
            max_idle_time_seconds: seconds("max_idle_time_seconds")?,
        })
    }

    fn pool_key(&self, client: Client, sample: &Sample) -> Result<PoolKey, IngestError> {
        let instance = match &self.instance {
            Some(i) => i.clone(),
            None => match sample.labels.get("instance") {
                Some(i) => clean_name(i, MAX_INSTANCE_LEN),
                None => self.default_instance.to_string(),
            },
        };
        let from_sample = client.pool_labels().iter().find_map(|l| {
            match (self.key.get(l), sample.labels.get(l)) {
                (Some(k), _) => Some((k.to_string(), Some(*l))),
                (None, Some(v)) => Some((clean_name(v, MAX_NAME_LEN), None)),
                (None, None) => None,
            }
        });
        let pool = match (from_sample, self.key.get("pool")) {
            (Some((p, Some(label))), _) => {
                check_name(&format!("label {label}"), &p, MAX_NAME_LEN, false)?;
                p
            }
            (Some((p, None)), _) if !p.is_empty() => p,
            (_, Some(p)) => {
                check_name("label pool", p, MAX_NAME_LEN, false)?;
                p.to_string()
            }
            _ => "default".to_string(),
        };
        Ok(PoolKey {
            app: self.app.clone(),
            pool,
            instance,
        })
    }
}

/// Builds a snapshot, or says what is missing (inner `Err`); the outer `Err` is a value
/// that is not a valid count or duration.
fn snapshot(
    fields: &BTreeMap<Field, Slot>,
    ctx: &KeyContext<'_>,
) -> Result<Result<PoolSnapshot, String>, IngestError> {
    let count = |f: Field| -> Result<Option<u64>, IngestError> {
        let Some(slot) = fields.get(&f) else {
            return Ok(None);
        };
        let v = slot.value;
        if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= 9.007_199_254_740_992e15 {
            Ok(Some(v as u64))
        } else {
            Err(IngestError::field_err(
                format!(
                    "series {}",
                    series_name(&slot.sample.name, &slot.sample.labels)
                ),
                format!("{} must be a whole number >= 0, got {v}", f.as_str()),
            ))
        }
    };
    let seconds = |f: Field| -> Result<Option<f64>, IngestError> {
        let Some(slot) = fields.get(&f) else {
            return Ok(None);
        };
        let v = slot.value;
        if v.is_finite() && v >= 0.0 {
            Ok(Some(v))
        } else {
            Err(IngestError::field_err(
                format!(
                    "series {}",
                    series_name(&slot.sample.name, &slot.sample.labels)
                ),
                format!("{} must be a number of seconds >= 0, got {v}", f.as_str()),
            ))
        }
    };
    let in_use = count(InUse)?;
    let idle = count(Idle)?;
    let open = match (count(Open)?, in_use, idle) {
        (Some(open), _, _) => open,
        (None, Some(u), Some(i)) => u.saturating_add(i),
        (None, _, _) => {
            return Ok(Err(
                "no total (open) and not both in_use and idle".to_string()
            ))
        }
    };
    Ok(Ok(PoolSnapshot {
        database: None,
        peer: None,
        max_open: count(MaxOpen)?.filter(|&m| m > 0),
        open,
        in_use,
        idle,
        waiting: count(Waiting)?,
        wait_count: count(WaitCount)?,
        wait_duration_seconds: seconds(WaitSeconds)?,
        max_idle_closed: count(MaxIdleClosed)?,
        max_idle_time_closed: count(MaxIdleTimeClosed)?,
        max_lifetime_closed: count(MaxLifetimeClosed)?,
        max_lifetime_seconds: ctx.max_lifetime_seconds,
        max_idle_time_seconds: ctx.max_idle_time_seconds,
        application_name: ctx.application_name.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::pushgateway::{protobuf, text, Limits};

    fn fixture(name: &str) -> Vec<Family> {
        let path = format!("{}/tests/fixtures/push/{name}", env!("CARGO_MANIFEST_DIR"));
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        if name.ends_with(".pb") {
            protobuf::parse(&body, &Limits::default()).unwrap()
        } else {
            text::parse(&body, &Limits::default()).unwrap()
        }
    }

    fn map(key: &GroupingKey, fams: &[Family]) -> Mapped {
        map_group(key, fams, "pod-default", 1000).unwrap_or_else(|e| panic!("{e}"))
    }

    fn only_pool(m: &Mapped) -> &PoolPush {
        assert_eq!(m.pools.len(), 1, "{m:#?}");
        &m.pools[0]
    }

    fn key(app: &str, pool: &str, instance: &str) -> PoolKey {
        PoolKey {
            app: app.to_string(),
            pool: pool.to_string(),
            instance: instance.to_string(),
        }
    }

    /// The Go program behind the fixture held 4 connections of at most 4, released one
    /// idle, and made a fifth caller wait about 50 ms.
    fn assert_go_capture(m: &Mapped) {
        let p = only_pool(m);
        assert_eq!(p.key, key("orders-api", "orders", "pod-1"));
        let s = &p.snapshot;
        assert_eq!(s.max_open, Some(4));
        assert_eq!(s.open, 4);
        assert_eq!(s.in_use, Some(3));
        assert_eq!(s.idle, Some(1));
        assert_eq!(s.waiting, None);
        assert_eq!(s.wait_count, Some(1));
        let waited = s.wait_duration_seconds.unwrap();
        assert!((0.04..1.0).contains(&waited), "{waited}");
        assert_eq!(s.max_idle_closed, Some(0));
        assert_eq!(s.max_idle_time_closed, Some(0));
        assert_eq!(s.max_lifetime_closed, Some(0));
        assert_eq!(s.application_name, "orders-api");
        // go_* runtime and process_* families are ignored and counted.
        assert!(m.ignored_families.contains(&"go_goroutines".to_string()));
        assert!(m.ignored_families.contains(&"process_open_fds".to_string()));
        assert!(!m.ignored_families.iter().any(|f| f.starts_with("go_sql_")));
        assert!(m.incomplete.is_empty());
    }

    #[test]
    fn client_golang_dbstats_text_and_protobuf() {
        let k = GroupingKey::new("orders-api", &[("instance", "pod-1")]);
        let from_text = map(&k, &fixture("go_dbstats.txt"));
        assert_go_capture(&from_text);
        let from_pb = map(&k, &fixture("go_dbstats.pb"));
        assert_go_capture(&from_pb);
        assert_eq!(from_text.ignored_families, from_pb.ignored_families);
        // 43 families: 9 go_sql_*, 34 go_* runtime and process_* ones.
        assert_eq!(from_text.ignored_families.len(), 34);
    }

    #[test]
    fn other_go_namings() {
        let k = GroupingKey::new("billing", &[]);
        for file in ["go_sqlstats.txt", "go_labkit.txt"] {
            let m = map(&k, &fixture(file));
            let p = only_pool(&m);
            assert_eq!(p.key, key("billing", "billing_db", "pod-default"), "{file}");
            let s = &p.snapshot;
            assert_eq!(
                (s.max_open, s.open, s.in_use, s.idle),
                (Some(20), 7, Some(5), Some(2)),
                "{file}"
            );
            assert_eq!(s.wait_count, Some(12), "{file}");
            assert_eq!(s.wait_duration_seconds, Some(3.5), "{file}");
            assert_eq!(
                (
                    s.max_idle_closed,
                    s.max_idle_time_closed,
                    s.max_lifetime_closed
                ),
                (Some(40), Some(3), Some(9)),
                "{file}"
            );
            assert!(m.ignored_families.is_empty(), "{file}: {m:?}");
        }
    }

    #[test]
    fn hikaricp_micrometer() {
        let k = GroupingKey::new("checkout", &[("instance", "checkout-7d9f")]);
        let m = map(&k, &fixture("hikaricp_micrometer.txt"));
        let p = only_pool(&m);
        assert_eq!(p.key, key("checkout", "HikariPool-1", "checkout-7d9f"));
        let s = &p.snapshot;
        assert_eq!(s.max_open, Some(10));
        assert_eq!(s.open, 8);
        assert_eq!(s.in_use, Some(6));
        assert_eq!(s.idle, Some(2));
        assert_eq!(s.waiting, Some(3));
        assert_eq!(s.wait_count, None);
        assert_eq!(s.wait_duration_seconds, Some(12.5));
        assert_eq!(s.max_lifetime_closed, None);
        // jvm_* is ignored; the min, timeout, usage and creation families are known.
        assert_eq!(m.ignored_families, ["jvm_threads_live_threads"]);
    }

    #[test]
    fn hikaricp_prometheus_collector() {
        let k = GroupingKey::new("ledger", &[]);
        let m = map(&k, &fixture("hikaricp_prometheus.txt"));
        assert_eq!(m.pools.len(), 2, "{m:#?}");
        let main = &m.pools[0];
        assert_eq!(main.key, key("ledger", "main", "pod-default"));
        let s = &main.snapshot;
        assert_eq!(
            (s.max_open, s.open, s.in_use, s.idle, s.waiting),
            (Some(20), 12, Some(11), Some(1), Some(4))
        );
        // hikaricp_connection_acquired_nanos_sum is nanoseconds.
        assert_eq!(s.wait_duration_seconds, Some(2.5));
        assert_eq!(m.pools[1].key.pool, "reporting");
        // Python-style _created twins of known families are tolerated.
        assert!(m.ignored_families.is_empty(), "{:?}", m.ignored_families);
    }

    #[test]
    fn pgxpool() {
        let k = GroupingKey::new("search", &[("instance", "search-0")]);
        let m = map(&k, &fixture("pgxpool.txt"));
        let p = only_pool(&m);
        assert_eq!(p.key, key("search", "primary", "search-0"));
        let s = &p.snapshot;
        assert_eq!(
            (s.max_open, s.open, s.in_use, s.idle),
            (Some(25), 9, Some(6), Some(2))
        );
        assert_eq!(s.wait_count, Some(17));
        assert_eq!(s.wait_duration_seconds, Some(1.25));
        assert_eq!(s.max_lifetime_closed, Some(5));
        assert_eq!(s.max_idle_time_closed, Some(8));
        assert!(m.ignored_families.is_empty(), "{:?}", m.ignored_families);
    }

    #[test]
    fn opentelemetry_current_and_legacy_names() {
        let k = GroupingKey::new("inventory", &[]);
        let m = map(&k, &fixture("otel_semconv.txt"));
        let p = only_pool(&m);
        assert_eq!(p.key.pool, "inventory-pool");
        // The instance comes from the samples' own instance label here.
        assert_eq!(p.key.instance, "10.0.0.7:8080");
        let s = &p.snapshot;
        // The current names win over the legacy duplicates (values differ on purpose).
        assert_eq!(
            (s.max_open, s.open, s.in_use, s.idle, s.waiting),
            (Some(15), 9, Some(4), Some(5), Some(2))
        );
        assert_eq!(s.wait_duration_seconds, Some(0.75));
        assert_eq!(m.ignored_families, ["target_info"]);

        let legacy: Vec<Family> = fixture("otel_semconv.txt")
            .into_iter()
            .filter(|f| !f.name.starts_with("db_client_connection_"))
            .collect();
        let m = map(&k, &legacy);
        let s = &only_pool(&m).snapshot;
        assert_eq!(
            (s.max_open, s.open, s.in_use, s.idle, s.waiting),
            (Some(16), 10, Some(6), Some(4), Some(1))
        );
        // Milliseconds in the legacy histogram.
        assert_eq!(s.wait_duration_seconds, Some(0.5));
    }

    #[test]
    fn python_client_with_created_families() {
        let k = GroupingKey::new("worker", &[("instance", "w-1")]);
        let m = map(&k, &fixture("python_client.txt"));
        let p = only_pool(&m);
        assert_eq!(p.key, key("worker", "psycopg-main", "w-1"));
        let s = &p.snapshot;
        assert_eq!(
            (s.max_open, s.open, s.in_use, s.idle, s.waiting),
            (Some(10), 5, Some(3), Some(2), Some(1))
        );
        assert!((s.wait_duration_seconds.unwrap() - 0.303).abs() < 1e-12);
        // jobs_processed_total is unknown; its _created twin is not counted again.
        assert_eq!(m.ignored_families, ["jobs_processed_total"]);
    }

    #[test]
    fn pushgateway_readme_example_maps_to_nothing() {
        let k = GroupingKey::new("some_job", &[]);
        let m = map(&k, &fixture("pushgateway_readme.txt"));
        assert!(m.pools.is_empty());
        assert_eq!(m.ignored_families, ["some_metric", "another_metric"]);
    }

    fn parse(body: &str) -> Vec<Family> {
        text::parse(body.as_bytes(), &Limits::default()).unwrap()
    }

    #[test]
    fn grouping_key_rules() {
        let body = "go_sql_open_connections{db_name=\"main\",instance=\"from-sample\"} 3\n";
        // app label overrides job; application_name and settings come from the key.
        let k = GroupingKey::new(
            "job-name",
            &[
                ("app", "the-app"),
                ("application_name", "the app (pg)"),
                ("max_lifetime_seconds", "1800"),
                ("max_idle_time_seconds", "0"),
            ],
        );
        let p = map(&k, &parse(body)).pools.remove(0);
        assert_eq!(p.key, key("the-app", "main", "from-sample"));
        assert_eq!(p.snapshot.application_name, "the app (pg)");
        assert_eq!(p.snapshot.max_lifetime_seconds, Some(1800.0));
        assert_eq!(p.snapshot.max_idle_time_seconds, None);
        // The key's instance overrides the sample's.
        let k = GroupingKey::new("j", &[("instance", "from-key")]);
        assert_eq!(map(&k, &parse(body)).pools[0].key.instance, "from-key");
        // No pool label: the key's pool, else "default".
        let bare = "go_sql_open_connections 3\n";
        let k = GroupingKey::new("j", &[("pool", "keyed")]);
        assert_eq!(map(&k, &parse(bare)).pools[0].key.pool, "keyed");
        let k = GroupingKey::new("j", &[]);
        assert_eq!(map(&k, &parse(bare)).pools[0].key.pool, "default");
        // A key label named like the client's pool label overrides the sample's.
        let hikari = "hikaricp_connections{pool=\"HikariPool-1\"} 3\n";
        let k = GroupingKey::new("j", &[("pool", "named")]);
        assert_eq!(map(&k, &parse(hikari)).pools[0].key.pool, "named");
        // Client-chosen names are made valid; path-given ones must be.
        let odd = "go_sql_open_connections{db_name=\"postgres://db/x y\"} 1\n";
        let k = GroupingKey::new("j", &[]);
        assert_eq!(map(&k, &parse(odd)).pools[0].key.pool, "postgres:__db_x_y");
        let k = GroupingKey::new("bad job", &[]);
        let err = map_group(&k, &parse(bare), "", 1000).unwrap_err();
        assert_eq!(err.field(), Some("job"));
        let k = GroupingKey::new("j", &[("max_lifetime_seconds", "soon")]);
        let err = map_group(&k, &parse(bare), "", 1000).unwrap_err();
        assert_eq!(err.field(), Some("label max_lifetime_seconds"));
    }

    /// Issue 15, D1: a group naming more pools than could ever be stored is refused as
    /// soon as that shows, before a snapshot is built for any of them.
    #[test]
    fn a_group_naming_too_many_pools_is_refused_early() {
        let body: String = (0..3)
            .map(|i| format!("go_sql_open_connections{{db_name=\"db{i}\"}} 1\n"))
            .collect();
        let k = GroupingKey::new("j", &[]);
        assert_eq!(map_group(&k, &parse(&body), "", 3).unwrap().pools.len(), 3);
        let err = map_group(&k, &parse(&body), "", 2).unwrap_err();
        assert_eq!(err, IngestError::TooManyPools { limit: 2 });
        assert_eq!((err.status(), err.kind()), (429, "pool_limit"));
    }

    #[test]
    fn open_is_derived_or_the_pool_is_incomplete() {
        let k = GroupingKey::new("j", &[]);
        let m = map(
            &k,
            &parse("pgxpool_acquired_conns{pool=\"a\"} 2\npgxpool_idle_conns{pool=\"a\"} 3\n"),
        );
        assert_eq!(m.pools[0].snapshot.open, 5);
        let m = map(&k, &parse("hikaricp_connections_max{pool=\"p\"} 10\n"));
        assert!(m.pools.is_empty());
        assert_eq!(m.incomplete.len(), 1);
        assert_eq!(m.incomplete[0].0.pool, "p");
    }

    #[test]
    fn bad_values_and_ambiguity_are_errors() {
        let k = GroupingKey::new("j", &[]);
        for (body, want) in [
            (
                "go_sql_open_connections{db_name=\"a\"} -1\n",
                "whole number",
            ),
            (
                "go_sql_open_connections{db_name=\"a\"} 1.5\n",
                "whole number",
            ),
            (
                "go_sql_open_connections{db_name=\"a\"} NaN\n",
                "whole number",
            ),
            (
                "go_sql_open_connections 1\ngo_sql_wait_duration_seconds_total +Inf\n",
                "seconds",
            ),
            (
                "go_sql_open_connections{db_name=\"a\",x=\"1\"} 1\n\
                 go_sql_open_connections{db_name=\"a\",x=\"2\"} 2\n",
                "both give open of pool j/pod-default/a",
            ),
        ] {
            let err = map_group(&k, &parse(body), "pod-default", 1000).unwrap_err();
            assert!(err.to_string().contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn every_rule_names_a_distinct_sample_and_field() {
        let mut seen = HashSet::new();
        for r in RULES {
            assert!(super::super::is_metric_name(r.sample), "{}", r.sample);
            assert!(seen.insert((r.sample, r.field)), "{} twice", r.sample);
            assert!(!RECOGNISED.contains(&r.sample), "{}", r.sample);
        }
    }
}
