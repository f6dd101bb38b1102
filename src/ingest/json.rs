//! The JSON push formats.
//!
//! - One pool, `POST /api/v1/pools/{app}/{pool}`: the body is either the canonical
//!   snapshot (`open`, `in_use`, `idle`, ...) or exactly what Go's `encoding/json` writes
//!   for `sql.DBStats` (`OpenConnections`, `InUse`, ...), told apart by its keys.
//!   Query parameters `instance`, `application_name`, `max_lifetime_seconds` and
//!   `max_idle_time_seconds` add what the body does not carry.
//! - A batch, `POST /api/v1/pools`: `{"app": ..., "instance": ..., "pools": [{"pool": ...,
//!   canonical fields}]}`; accepted whole or not at all.
//!
//! Unknown fields are rejected (a typo would otherwise read as a missing value), and so
//! is a key given twice in one object (which one would count is anyone's guess).

use std::cell::RefCell;
use std::collections::HashSet;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{
    check_name, IngestError, PoolKey, PoolPush, PoolSnapshot, MAX_APPLICATION_NAME_LEN,
    MAX_INSTANCE_LEN, MAX_NAME_LEN,
};

/// Which JSON shape a single-pool push used (the `format` label of
/// `poolwatch_ingest_requests_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The canonical snapshot.
    Canonical,
    /// Go's `sql.DBStats`.
    DbStats,
}

impl Format {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Canonical => "json",
            Format::DbStats => "dbstats",
        }
    }
}

pub(super) const CANONICAL_FIELDS: &[&str] = &[
    "max_open",
    "open",
    "in_use",
    "idle",
    "waiting",
    "wait_count",
    "wait_duration_seconds",
    "max_idle_closed",
    "max_idle_time_closed",
    "max_lifetime_closed",
    "max_lifetime_seconds",
    "max_idle_time_seconds",
    "application_name",
];

const DBSTATS_FIELDS: &[&str] = &[
    "MaxOpenConnections",
    "OpenConnections",
    "InUse",
    "Idle",
    "WaitCount",
    "WaitDuration",
    "MaxIdleClosed",
    "MaxIdleTimeClosed",
    "MaxLifetimeClosed",
];

const QUERY_PARAMS: &[&str] = &[
    "instance",
    "database",
    "application_name",
    "max_lifetime_seconds",
    "max_idle_time_seconds",
];

/// Parses a single-pool push.
pub fn parse_pool(
    body: &[u8],
    app: &str,
    pool: &str,
    query: Option<&str>,
    default_instance: &str,
) -> Result<(Format, PoolPush), IngestError> {
    check_name("app", app, MAX_NAME_LEN, false)?;
    check_name("pool", pool, MAX_NAME_LEN, false)?;
    let q = Query::parse(query)?;
    let obj = object(body, None)?;
    let (format, mut snapshot) = if obj.keys().any(|k| DBSTATS_FIELDS.contains(&k.as_str())) {
        (Format::DbStats, dbstats(&obj)?)
    } else {
        (Format::Canonical, canonical(&obj, "")?)
    };
    if snapshot.application_name.is_empty() {
        snapshot.application_name = q.application_name.unwrap_or_else(|| app.to_string());
    }
    snapshot.max_lifetime_seconds = snapshot.max_lifetime_seconds.or(q.max_lifetime_seconds);
    snapshot.max_idle_time_seconds = snapshot.max_idle_time_seconds.or(q.max_idle_time_seconds);
    snapshot.database = q.database;
    let instance = q.instance.unwrap_or_else(|| default_instance.to_string());
    let key = PoolKey {
        app: app.to_string(),
        pool: pool.to_string(),
        instance,
    };
    Ok((format, PoolPush { key, snapshot }))
}

/// Parses a batch push; every pool is validated before any is returned. A batch of more
/// than `max_pools` pools (`pools.max_pools_per_app`: one application's) could never be
/// stored, and is refused as soon as its array grows past that.
pub fn parse_batch(
    body: &[u8],
    default_instance: &str,
    max_pools: usize,
) -> Result<Vec<PoolPush>, IngestError> {
    let obj = object(body, Some(max_pools))?;
    for k in obj.keys() {
        if !matches!(k.as_str(), "app" | "instance" | "database" | "pools") {
            return Err(IngestError::field_err(
                k.as_str(),
                "unknown field (expected app, instance, database, pools)",
            ));
        }
    }
    let database = match obj.get("database") {
        Some(Value::String(s)) => Some(check_database(s)?),
        Some(Value::Null) | None => None,
        Some(other) => {
            return Err(IngestError::field_err(
                "database",
                format!("expected a string, got {}", type_name(other)),
            ))
        }
    };
    let app = match obj.get("app") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(IngestError::field_err(
                "app",
                format!("expected a string, got {}", type_name(other)),
            ))
        }
        None => return Err(IngestError::field_err("app", "required")),
    };
    check_name("app", &app, MAX_NAME_LEN, false)?;
    let instance = match obj.get("instance") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => default_instance.to_string(),
        Some(other) => {
            return Err(IngestError::field_err(
                "instance",
                format!("expected a string, got {}", type_name(other)),
            ))
        }
    };
    check_name("instance", &instance, MAX_INSTANCE_LEN, true)?;
    let pools = match obj.get("pools") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => {
            return Err(IngestError::field_err(
                "pools",
                "expected at least one pool",
            ))
        }
        Some(other) => {
            return Err(IngestError::field_err(
                "pools",
                format!("expected an array, got {}", type_name(other)),
            ))
        }
        None => return Err(IngestError::field_err("pools", "required")),
    };
    let mut out: Vec<PoolPush> = Vec::with_capacity(pools.len());
    let mut names = HashSet::new();
    for (i, p) in pools.iter().enumerate() {
        let prefix = format!("pools[{i}].");
        let Value::Object(m) = p else {
            return Err(IngestError::field_err(
                format!("pools[{i}]"),
                format!("expected an object, got {}", type_name(p)),
            ));
        };
        let pool = match m.get("pool") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(IngestError::field_err(
                    format!("{prefix}pool"),
                    format!("expected a string, got {}", type_name(other)),
                ))
            }
            None => return Err(IngestError::field_err(format!("{prefix}pool"), "required")),
        };
        check_name(&format!("{prefix}pool"), &pool, MAX_NAME_LEN, false)?;
        if !names.insert(pool.clone()) {
            return Err(IngestError::field_err(
                format!("{prefix}pool"),
                format!("pool {pool:?} appears twice in the batch"),
            ));
        }
        let mut fields = m.clone();
        fields.remove("pool");
        let mut snapshot = canonical(&fields, &prefix)?;
        if snapshot.application_name.is_empty() {
            snapshot.application_name = app.clone();
        }
        snapshot.database = database.clone();
        out.push(PoolPush {
            key: PoolKey {
                app: app.clone(),
                pool,
                instance: instance.clone(),
            },
            snapshot,
        });
    }
    Ok(out)
}

/// Most fields an object may have: no valid push has more than 14, and each one held
/// costs far more than the bytes that sent it.
const MAX_FIELDS: usize = 32;

/// Parses the body as one JSON object, holding only what a push can use: the top-level
/// object's fields, and for a batch (`batch` is its pool limit) the `pools` array of at
/// most that many objects. Anything nested deeper is skipped as it is read, leaving an
/// empty array or object in its place (an error for the field later, as it would be), so
/// a body's memory is bounded by the shape of a push rather than by what it holds.
pub(super) fn object(body: &[u8], batch: Option<usize>) -> Result<Map<String, Value>, IngestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(IngestError::Syntax(
            "the body is empty; expected a JSON object".into(),
        ));
    }
    let problem = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = Strict {
        path: "",
        shape: Shape::Root { batch },
        problem: &problem,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v));
    match parsed {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(IngestError::Syntax(format!(
            "expected a JSON object, got {}",
            type_name(&other)
        ))),
        Err(e) => Err(problem
            .into_inner()
            .unwrap_or_else(|| IngestError::Syntax(e.to_string()))),
    }
}

/// Where in a push a value sits, which decides what of it is kept.
#[derive(Clone, Copy)]
enum Shape {
    /// The body: an object of fields; `batch` is the pool limit of a batch's `pools`.
    Root { batch: Option<usize> },
    /// A batch's `pools`: an array of at most this many pool objects.
    Pools(usize),
    /// One pool of a batch: an object of fields.
    Pool,
    /// A field's value: a number, string, boolean or null.
    Leaf,
}

/// Reads a JSON value as `serde_json::Value` does, but refuses an object that holds a
/// key twice (`{"open":1,"open":2}`), which `Value` would silently resolve to the last,
/// and keeps only what [`Shape`] says a push can use. Why it refused is left in `problem`.
struct Strict<'a> {
    /// Where the value being read sits, as errors name fields.
    path: &'a str,
    shape: Shape,
    problem: &'a RefCell<Option<IngestError>>,
}

impl Strict<'_> {
    fn at<'b>(&'b self, path: &'b str, shape: Shape) -> Strict<'b> {
        Strict {
            path,
            shape,
            problem: self.problem,
        }
    }

    fn refuse<E: serde::de::Error>(&self, e: IngestError) -> E {
        let message = e.to_string();
        *self.problem.borrow_mut() = Some(e);
        E::custom(message)
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let Shape::Pools(limit) = self.shape else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Value::Array(Vec::new()));
        };
        let mut out = Vec::new();
        loop {
            let path = format!("{}[{}]", self.path, out.len());
            match seq.next_element_seed(self.at(&path, Shape::Pool))? {
                Some(_) if out.len() == limit => {
                    return Err(self.refuse(IngestError::BatchTooLarge { limit }))
                }
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let batch = match self.shape {
            Shape::Root { batch } => batch,
            Shape::Pool => None,
            Shape::Pools(_) | Shape::Leaf => {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(Value::Object(Map::new()));
            }
        };
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if out.contains_key(&key) {
                return Err(self.refuse(IngestError::field_err(
                    path,
                    "given more than once; each key may appear once in an object",
                )));
            }
            if out.len() == MAX_FIELDS {
                let at = if self.path.is_empty() {
                    "body"
                } else {
                    self.path
                };
                return Err(self.refuse(IngestError::field_err(
                    at,
                    format!("more than {MAX_FIELDS} fields in one object"),
                )));
            }
            let shape = match (batch, key.as_str()) {
                (Some(limit), "pools") => Shape::Pools(limit),
                _ => Shape::Leaf,
            };
            let value = map.next_value_seed(self.at(&path, shape))?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn canonical(
    obj: &Map<String, Value>,
    prefix: &str,
) -> Result<PoolSnapshot, IngestError> {
    for k in obj.keys() {
        if !CANONICAL_FIELDS.contains(&k.as_str()) {
            let hint = if DBSTATS_FIELDS.contains(&k.as_str()) {
                "sql.DBStats fields cannot be mixed with canonical ones".to_string()
            } else {
                format!("unknown field (expected {})", CANONICAL_FIELDS.join(", "))
            };
            return Err(IngestError::field_err(format!("{prefix}{k}"), hint));
        }
    }
    let f = Fields { obj, prefix };
    let in_use = f.count("in_use")?;
    let idle = f.count("idle")?;
    let open = match (f.count("open")?, in_use, idle) {
        (Some(open), _, _) => open,
        (None, Some(u), Some(i)) => u.saturating_add(i),
        (None, _, _) => {
            return Err(IngestError::field_err(
                format!("{prefix}open"),
                "required unless both in_use and idle are given",
            ));
        }
    };
    let application_name = match obj.get("application_name") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s))
            if s.len() <= MAX_APPLICATION_NAME_LEN && !s.chars().any(char::is_control) =>
        {
            s.clone()
        }
        Some(Value::String(_)) => {
            return Err(IngestError::field_err(
                format!("{prefix}application_name"),
                format!("at most {MAX_APPLICATION_NAME_LEN} bytes without control characters"),
            ))
        }
        Some(other) => {
            return Err(IngestError::field_err(
                format!("{prefix}application_name"),
                format!("expected a string, got {}", type_name(other)),
            ))
        }
    };
    Ok(PoolSnapshot {
        database: None,
        peer: None,
        max_open: f.count("max_open")?.filter(|&m| m > 0),
        open,
        in_use,
        idle,
        waiting: f.count("waiting")?,
        wait_count: f.count("wait_count")?,
        wait_duration_seconds: f.seconds("wait_duration_seconds")?,
        max_idle_closed: f.count("max_idle_closed")?,
        max_idle_time_closed: f.count("max_idle_time_closed")?,
        max_lifetime_closed: f.count("max_lifetime_closed")?,
        max_lifetime_seconds: f.seconds("max_lifetime_seconds")?.filter(|&s| s > 0.0),
        max_idle_time_seconds: f.seconds("max_idle_time_seconds")?.filter(|&s| s > 0.0),
        application_name,
    })
}

fn dbstats(obj: &Map<String, Value>) -> Result<PoolSnapshot, IngestError> {
    for k in obj.keys() {
        if !DBSTATS_FIELDS.contains(&k.as_str()) {
            let hint = if CANONICAL_FIELDS.contains(&k.as_str()) {
                "canonical fields cannot be mixed with sql.DBStats ones".to_string()
            } else {
                format!(
                    "unknown field for sql.DBStats (expected {})",
                    DBSTATS_FIELDS.join(", ")
                )
            };
            return Err(IngestError::field_err(k.as_str(), hint));
        }
    }
    let f = Fields { obj, prefix: "" };
    let required = |name: &str| -> Result<u64, IngestError> {
        f.count(name)?
            .ok_or_else(|| IngestError::field_err(name, "required in sql.DBStats JSON"))
    };
    Ok(PoolSnapshot {
        database: None,
        peer: None,
        max_open: f.count("MaxOpenConnections")?.filter(|&m| m > 0),
        open: required("OpenConnections")?,
        in_use: Some(required("InUse")?),
        idle: Some(required("Idle")?),
        waiting: None,
        wait_count: f.count("WaitCount")?,
        // time.Duration marshals as integer nanoseconds.
        wait_duration_seconds: f.count("WaitDuration")?.map(|ns| ns as f64 / 1e9),
        max_idle_closed: f.count("MaxIdleClosed")?,
        max_idle_time_closed: f.count("MaxIdleTimeClosed")?,
        max_lifetime_closed: f.count("MaxLifetimeClosed")?,
        max_lifetime_seconds: None,
        max_idle_time_seconds: None,
        application_name: String::new(),
    })
}

/// Typed access to an object's fields, with errors naming `prefix` + field.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    prefix: &'a str,
}

impl Fields<'_> {
    fn err(&self, name: &str, problem: String) -> IngestError {
        IngestError::field_err(format!("{}{name}", self.prefix), problem)
    }

    fn count(&self, name: &str) -> Result<Option<u64>, IngestError> {
        match self.obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => {
                if let Some(u) = n.as_u64() {
                    Ok(Some(u))
                } else if n.as_i64().is_some_and(|i| i < 0) || n.as_f64().is_some_and(|f| f < 0.0) {
                    Err(self.err(name, format!("must not be negative, got {n}")))
                } else {
                    match n.as_f64() {
                        Some(f) if f.fract() == 0.0 && f <= 9.007_199_254_740_992e15 => {
                            Ok(Some(f as u64))
                        }
                        _ => Err(self.err(name, format!("expected a whole number, got {n}"))),
                    }
                }
            }
            Some(other) => Err(self.err(
                name,
                format!("expected a whole number, got {}", type_name(other)),
            )),
        }
    }

    fn seconds(&self, name: &str) -> Result<Option<f64>, IngestError> {
        match self.obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f)),
                _ => Err(self.err(
                    name,
                    format!("expected a non-negative number of seconds, got {n}"),
                )),
            },
            Some(other) => Err(self.err(
                name,
                format!("expected a number of seconds, got {}", type_name(other)),
            )),
        }
    }
}

/// A database name as a push gives it (the push handler checks it names one of the
/// `databases` list).
fn check_database(name: &str) -> Result<String, IngestError> {
    if crate::fleet::config::valid_name(name) {
        Ok(name.to_string())
    } else {
        Err(IngestError::field_err(
            "database",
            "expected the name of a database of the databases list",
        ))
    }
}

/// The optional query parameters of a single-pool push.
#[derive(Default)]
struct Query {
    instance: Option<String>,
    database: Option<String>,
    application_name: Option<String>,
    max_lifetime_seconds: Option<f64>,
    max_idle_time_seconds: Option<f64>,
}

impl Query {
    fn parse(query: Option<&str>) -> Result<Query, IngestError> {
        let mut q = Query::default();
        for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = crate::percent_decode(k);
            let v = crate::percent_decode(v);
            let seconds = |v: &str| -> Result<f64, IngestError> {
                match v.parse::<f64>() {
                    Ok(f) if f.is_finite() && f >= 0.0 => Ok(f),
                    _ => Err(IngestError::field_err(
                        k.as_str(),
                        format!("expected a non-negative number of seconds, got {v:?}"),
                    )),
                }
            };
            match k.as_str() {
                "instance" => {
                    check_name("instance", &v, MAX_INSTANCE_LEN, true)?;
                    q.instance = Some(v);
                }
                "database" => q.database = Some(check_database(&v)?),
                "application_name" => {
                    if v.is_empty()
                        || v.len() > MAX_APPLICATION_NAME_LEN
                        || v.chars().any(char::is_control)
                    {
                        return Err(IngestError::field_err(
                            "application_name",
                            format!(
                                "1 to {MAX_APPLICATION_NAME_LEN} bytes without control characters"
                            ),
                        ));
                    }
                    q.application_name = Some(v);
                }
                "max_lifetime_seconds" => {
                    q.max_lifetime_seconds = Some(seconds(&v)?).filter(|&s| s > 0.0)
                }
                "max_idle_time_seconds" => {
                    q.max_idle_time_seconds = Some(seconds(&v)?).filter(|&s| s > 0.0)
                }
                _ => {
                    return Err(IngestError::field_err(
                        k.as_str(),
                        format!(
                            "unknown query parameter (expected {})",
                            QUERY_PARAMS.join(", ")
                        ),
                    ))
                }
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(body: &str, query: Option<&str>) -> Result<(Format, PoolPush), IngestError> {
        parse_pool(body.as_bytes(), "billing", "primary", query, "pod-a")
    }

    #[test]
    fn canonical_snapshot() {
        let (f, p) = pool(r#"{"max_open":25,"open":10,"in_use":7,"idle":3,"waiting":2,"wait_count":40,"wait_duration_seconds":1.5,"max_lifetime_closed":4,"max_lifetime_seconds":300}"#, None).unwrap();
        assert_eq!(f, Format::Canonical);
        assert_eq!(
            p.key,
            PoolKey {
                app: "billing".into(),
                pool: "primary".into(),
                instance: "pod-a".into()
            }
        );
        let s = p.snapshot;
        assert_eq!(
            (s.max_open, s.open, s.in_use, s.idle, s.waiting),
            (Some(25), 10, Some(7), Some(3), Some(2))
        );
        assert_eq!(
            (s.wait_count, s.wait_duration_seconds, s.max_lifetime_closed),
            (Some(40), Some(1.5), Some(4))
        );
        assert_eq!(s.max_lifetime_seconds, Some(300.0));
        assert_eq!(s.application_name, "billing", "defaults to the app's name");
    }

    #[test]
    fn open_derived_from_in_use_and_idle() {
        let (_, p) = pool(r#"{"in_use":2,"idle":5}"#, None).unwrap();
        assert_eq!(p.snapshot.open, 7);
        let (_, p) = pool(r#"{"open":4}"#, None).unwrap();
        assert_eq!((p.snapshot.open, p.snapshot.in_use), (4, None));
    }

    #[test]
    fn go_dbstats_as_encoding_json_writes_it() {
        // json.Marshal(db.Stats()) from Go 1.19, byte for byte.
        let body = r#"{"MaxOpenConnections":25,"OpenConnections":12,"InUse":9,"Idle":3,"WaitCount":17,"WaitDuration":2500000000,"MaxIdleClosed":1,"MaxIdleTimeClosed":2,"MaxLifetimeClosed":5}"#;
        let (f, p) = pool(
            body,
            Some("instance=pod-b&application_name=billing-worker&max_lifetime_seconds=1800"),
        )
        .unwrap();
        assert_eq!(f, Format::DbStats);
        let s = &p.snapshot;
        assert_eq!(
            (s.max_open, s.open, s.in_use, s.idle),
            (Some(25), 12, Some(9), Some(3))
        );
        assert_eq!(
            (s.wait_count, s.wait_duration_seconds),
            (Some(17), Some(2.5))
        );
        assert_eq!(
            (
                s.max_idle_closed,
                s.max_idle_time_closed,
                s.max_lifetime_closed
            ),
            (Some(1), Some(2), Some(5))
        );
        assert_eq!(s.application_name, "billing-worker");
        assert_eq!(s.max_lifetime_seconds, Some(1800.0));
        assert_eq!(p.key.instance, "pod-b");
        // MaxOpenConnections 0 is Go's "unlimited".
        let (_, p) = pool(r#"{"MaxOpenConnections":0,"OpenConnections":1,"InUse":0,"Idle":1,"WaitCount":0,"WaitDuration":0,"MaxIdleClosed":0,"MaxIdleTimeClosed":0,"MaxLifetimeClosed":0}"#, None).unwrap();
        assert_eq!(p.snapshot.max_open, None);
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let cases: &[(&str, Option<&str>, &str, &str)] = &[
            ("", None, "invalid_json", "empty"),
            ("{\"open\": 3", None, "invalid_json", "EOF"),
            ("[1,2]", None, "invalid_json", "an array"),
            (r#"{"open":-1}"#, None, "open", "negative"),
            (r#"{"open":1.5}"#, None, "open", "whole number"),
            (r#"{"open":"3"}"#, None, "open", "a string"),
            (r#"{"in_use":3}"#, None, "open", "required"),
            (r#"{"open":3,"inuse":2}"#, None, "inuse", "unknown field"),
            (r#"{"open":3,"InUse":2}"#, None, "open", "cannot be mixed"),
            (
                r#"{"OpenConnections":3,"InUse":2}"#,
                None,
                "Idle",
                "required",
            ),
            (
                r#"{"open":3,"wait_duration_seconds":"1s"}"#,
                None,
                "wait_duration_seconds",
                "seconds",
            ),
            (
                r#"{"open":3,"application_name":7}"#,
                None,
                "application_name",
                "a string",
            ),
            (
                r#"{"open":3}"#,
                Some("max_lifetime=30m"),
                "max_lifetime",
                "unknown query parameter",
            ),
            (
                r#"{"open":3}"#,
                Some("max_lifetime_seconds=30m"),
                "max_lifetime_seconds",
                "seconds",
            ),
            (
                r#"{"open":3}"#,
                Some("instance=a%20b"),
                "instance",
                "not allowed",
            ),
        ];
        for (body, query, field, needle) in cases {
            let err = pool(body, *query).expect_err(body);
            assert_eq!(err.status(), 400, "{body}");
            let named = err.field().unwrap_or(err.kind());
            assert_eq!(named, *field, "{body}: {err}");
            assert!(
                err.to_string().contains(needle),
                "{body}: {needle:?} not in {err}"
            );
        }
        let err = parse_pool(b"{\"open\":1}", "bad app", "p", None, "").unwrap_err();
        assert_eq!(err.field(), Some("app"));
    }

    /// Issue 15, D5: a key given twice is refused, naming it, in every shape of body
    /// (serde_json's `Value` would keep the last one silently).
    #[test]
    fn duplicate_keys_are_refused_naming_the_key() {
        for (body, field) in [
            (r#"{"open":1,"open":2}"#, "open"),
            (r#"{"open":1,"in_use":0,"idle":1,"in_use":1}"#, "in_use"),
            (
                r#"{"OpenConnections":1,"InUse":0,"Idle":1,"Idle":0}"#,
                "Idle",
            ),
        ] {
            let err = pool(body, None).expect_err(body);
            assert_eq!(
                (err.status(), err.field()),
                (400, Some(field)),
                "{body}: {err}"
            );
            assert!(err.to_string().contains("more than once"), "{err}");
        }
        for (body, field) in [
            (
                r#"{"app":"a","app":"b","pools":[{"pool":"p","open":1}]}"#,
                "app",
            ),
            (
                r#"{"app":"a","pools":[{"pool":"p","open":1},{"pool":"q","open":1,"open":2}]}"#,
                "pools[1].open",
            ),
            (
                r#"{"app":"a","pools":[{"pool":"p","pool":"q","open":1}]}"#,
                "pools[0].pool",
            ),
        ] {
            let err = parse_batch(body.as_bytes(), "d", 500).expect_err(body);
            assert_eq!(
                (err.status(), err.field()),
                (400, Some(field)),
                "{body}: {err}"
            );
        }
        // The same keys in different objects are fine; so is trailing whitespace, but not
        // trailing data.
        assert!(parse_batch(
            br#"{"app":"a","pools":[{"pool":"p","open":1},{"pool":"q","open":1}]} "#,
            "d",
            500
        )
        .is_ok());
    }

    /// Issue 15, D1: a body holds only what a push can use while it is parsed; what could
    /// never be stored is refused as soon as it shows.
    #[test]
    fn hostile_shapes_are_refused_or_skipped() {
        // Containers where a number belongs are skipped, and still named as wrong.
        let err = pool(r#"{"open":[1,[2,{"a":[3]}],4]}"#, None).unwrap_err();
        assert_eq!(err.field(), Some("open"));
        assert!(err.to_string().contains("got an array"), "{err}");
        let err = pool(r#"{"open":{"a":{"b":1}}}"#, None).unwrap_err();
        assert!(err.to_string().contains("got an object"), "{err}");
        let err = pool(r#"[{"open":1}]"#, None).unwrap_err();
        assert!(err.to_string().contains("got an array"), "{err}");
        // At most 32 fields in one object.
        let wide: Vec<String> = (0..33).map(|i| format!("\"k{i}\":1")).collect();
        let err = pool(&format!("{{{}}}", wide.join(",")), None).unwrap_err();
        assert_eq!(err.field(), Some("body"), "{err}");
        let body = format!(r#"{{"app":"a","pools":[{{{}}}]}}"#, wide.join(","));
        let err = parse_batch(body.as_bytes(), "d", 500).unwrap_err();
        assert_eq!(err.field(), Some("pools[0]"), "{err}");
        // A batch longer than the pools one application may have.
        let pools: Vec<String> = (0..4)
            .map(|i| format!(r#"{{"pool":"p{i}","open":1}}"#))
            .collect();
        let body = format!(r#"{{"app":"a","pools":[{}]}}"#, pools.join(","));
        assert_eq!(parse_batch(body.as_bytes(), "d", 4).unwrap().len(), 4);
        let err = parse_batch(body.as_bytes(), "d", 3).unwrap_err();
        assert_eq!(
            (err.status(), err.kind()),
            (429, "pools_per_app_limit"),
            "{err}"
        );
        assert_eq!(
            pool(r#"{"open":1} {"#, None).unwrap_err().kind(),
            "invalid_json"
        );
    }

    #[test]
    fn batch() {
        let body = r#"{"app":"api","instance":"pod-c","pools":[{"pool":"primary","open":5,"in_use":1,"idle":4},{"pool":"replica","in_use":0,"idle":2,"max_open":10,"application_name":"api-ro"}]}"#;
        let pushes = parse_batch(body.as_bytes(), "default", 500).unwrap();
        assert_eq!(pushes.len(), 2);
        assert_eq!(
            pushes[1].key,
            PoolKey {
                app: "api".into(),
                pool: "replica".into(),
                instance: "pod-c".into()
            }
        );
        assert_eq!(pushes[1].snapshot.application_name, "api-ro");
        assert_eq!(pushes[0].snapshot.application_name, "api");
        let pushes = parse_batch(
            br#"{"app":"api","pools":[{"pool":"p","open":1}]}"#,
            "default",
            500,
        )
        .unwrap();
        assert_eq!(pushes[0].key.instance, "default");

        let bad: &[(&str, &str)] = &[
            (r#"{"pools":[]}"#, "app"),
            (r#"{"app":"api","pools":[]}"#, "pools"),
            (r#"{"app":"api","pools":{}}"#, "pools"),
            (r#"{"app":"api","pools":[{"open":1}]}"#, "pools[0].pool"),
            (
                r#"{"app":"api","pools":[{"pool":"a","open":1},{"pool":"b","open":-2}]}"#,
                "pools[1].open",
            ),
            (
                r#"{"app":"api","pools":[{"pool":"a","open":1},{"pool":"a","open":2}]}"#,
                "pools[1].pool",
            ),
            (r#"{"app":"api","pools":[3]}"#, "pools[0]"),
            (
                r#"{"app":"api","extra":1,"pools":[{"pool":"a","open":1}]}"#,
                "extra",
            ),
        ];
        for (body, field) in bad {
            let err = parse_batch(body.as_bytes(), "d", 500).expect_err(body);
            assert_eq!(err.field(), Some(*field), "{body}: {err}");
        }
    }
}
