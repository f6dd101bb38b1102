//! The forward format: what a sidecar sends to the central poolwatch of its database
//! (`POST /api/v1/forward`, see [`crate::forward`]) so that the central instance holds
//! the pool view and the server view together.
//!
//! ```json
//! {"sent_at": 1764700000.2,
//!  "pools": [{"app": "shop-api", "pool": "primary", "instance": "shop-api-7f9c-x2",
//!             "pushed_at": 1764699991.7, "open": 25, "in_use": 25, "idle": 0, ...}]}
//! ```
//!
//! `sent_at` and each `pushed_at` are the sidecar's clock: only their difference (how old
//! the push was when it was forwarded) is used, so the two clocks need not agree. A pool
//! carries the canonical fields of a JSON push (`application_name` included). Accepted
//! whole or not at all, like a batch.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::json::{canonical, object, type_name, CANONICAL_FIELDS};
use super::{check_name, IngestError, PoolKey, PoolPush, MAX_INSTANCE_LEN, MAX_NAME_LEN};

/// One forwarded pool and how old its push was when the sidecar sent it.
#[derive(Clone, Debug, PartialEq)]
pub struct Forwarded {
    /// The pool and its snapshot, as the sidecar received them.
    pub push: PoolPush,
    /// `sent_at - pushed_at`, seconds, at least 0.
    pub age_seconds: f64,
}

/// Parses a forward body of at most `max_pools` pools (`pools.max_pools`: more could never
/// be stored). An empty `pools` is valid: a sidecar whose application has not pushed yet.
pub fn parse_forward(body: &[u8], max_pools: usize) -> Result<Vec<Forwarded>, IngestError> {
    let obj = match object(body, Some(max_pools)) {
        Err(IngestError::BatchTooLarge { limit }) => {
            return Err(IngestError::TooManyPools { limit })
        }
        other => other?,
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "sent_at" | "pools"))
    {
        return Err(IngestError::field_err(
            k.as_str(),
            "unknown field (expected sent_at, pools)",
        ));
    }
    let sent_at = unix_seconds(&obj, "sent_at", "")?;
    let pools = match obj.get("pools") {
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(IngestError::field_err(
                "pools",
                format!("expected an array, got {}", type_name(other)),
            ))
        }
        None => return Err(IngestError::field_err("pools", "required")),
    };
    let mut out = Vec::with_capacity(pools.len());
    let mut keys = HashSet::new();
    for (i, p) in pools.iter().enumerate() {
        let at = format!("pools[{i}]");
        let Value::Object(m) = p else {
            return Err(IngestError::field_err(
                at,
                format!("expected an object, got {}", type_name(p)),
            ));
        };
        let prefix = format!("{at}.");
        let mut fields = m.clone();
        let mut name = |field: &str, max: usize, allow_empty: bool| {
            let path = format!("{prefix}{field}");
            let value = match fields.remove(field) {
                Some(Value::String(s)) => s,
                Some(Value::Null) | None if allow_empty => String::new(),
                None => return Err(IngestError::field_err(path, "required")),
                Some(other) => {
                    return Err(IngestError::field_err(
                        path,
                        format!("expected a string, got {}", type_name(&other)),
                    ))
                }
            };
            check_name(&path, &value, max, allow_empty)?;
            Ok(value)
        };
        let key = PoolKey {
            app: name("app", MAX_NAME_LEN, false)?,
            pool: name("pool", MAX_NAME_LEN, false)?,
            instance: name("instance", MAX_INSTANCE_LEN, true)?,
        };
        let pushed_at = unix_seconds(&fields, "pushed_at", &prefix)?;
        fields.remove("pushed_at");
        if let Some(k) = fields
            .keys()
            .find(|k| !CANONICAL_FIELDS.contains(&k.as_str()))
        {
            return Err(IngestError::field_err(
                format!("{prefix}{k}"),
                format!(
                    "unknown field (expected app, pool, instance, pushed_at, {})",
                    CANONICAL_FIELDS.join(", ")
                ),
            ));
        }
        let mut snapshot = canonical(&fields, &prefix)?;
        if snapshot.application_name.is_empty() {
            snapshot.application_name = key.app.clone();
        }
        if !keys.insert(key.clone()) {
            return Err(IngestError::field_err(
                at,
                format!(
                    "pool {:?} of app {:?}, instance {:?} appears twice",
                    key.pool, key.app, key.instance
                ),
            ));
        }
        out.push(Forwarded {
            push: PoolPush { key, snapshot },
            age_seconds: (sent_at - pushed_at).max(0.0),
        });
    }
    Ok(out)
}

/// A required Unix time in seconds: a finite number, not negative.
fn unix_seconds(obj: &Map<String, Value>, field: &str, prefix: &str) -> Result<f64, IngestError> {
    let path = || format!("{prefix}{field}");
    match obj.get(field) {
        Some(Value::Number(n)) => match n.as_f64() {
            Some(t) if t.is_finite() && t >= 0.0 => Ok(t),
            _ => Err(IngestError::field_err(
                path(),
                format!("expected Unix seconds, got {n}"),
            )),
        },
        Some(other) => Err(IngestError::field_err(
            path(),
            format!("expected Unix seconds (a number), got {}", type_name(other)),
        )),
        None => Err(IngestError::field_err(path(), "required")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forward_round_trips_its_pools_and_their_age() {
        let body = br#"{"sent_at": 1000.5, "pools": [
            {"app": "shop", "pool": "primary", "instance": "shop-1", "pushed_at": 990.5,
             "max_open": 25, "open": 25, "in_use": 25, "idle": 0, "application_name": "shop-api"},
            {"app": "shop", "pool": "replica", "pushed_at": 1003, "open": 2}]}"#;
        let got = parse_forward(body, 10).expect("valid");
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].push.key.instance, "shop-1");
        assert_eq!(got[0].push.snapshot.in_use, Some(25));
        assert_eq!(got[0].push.snapshot.application_name, "shop-api");
        assert_eq!(got[0].age_seconds, 10.0);
        assert_eq!(got[1].push.key.instance, "");
        assert_eq!(got[1].push.snapshot.application_name, "shop");
        assert_eq!(
            got[1].age_seconds, 0.0,
            "a push after sent_at is not in the future"
        );
        assert!(parse_forward(br#"{"sent_at": 1, "pools": []}"#, 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn bad_forwards_name_the_field() {
        for (body, field) in [
            (r#"{"pools": []}"#, Some("sent_at")),
            (r#"{"sent_at": -1, "pools": []}"#, Some("sent_at")),
            (r#"{"sent_at": "now", "pools": []}"#, Some("sent_at")),
            (r#"{"sent_at": 1, "pools": [], "extra": 1}"#, Some("extra")),
            (
                r#"{"sent_at": 1, "pools": [{"pool": "p", "pushed_at": 1, "open": 1}]}"#,
                Some("pools[0].app"),
            ),
            (
                r#"{"sent_at": 1, "pools": [{"app": "a b", "pool": "p", "pushed_at": 1, "open": 1}]}"#,
                Some("pools[0].app"),
            ),
            (
                r#"{"sent_at": 1, "pools": [{"app": "a", "pool": "p", "open": 1}]}"#,
                Some("pools[0].pushed_at"),
            ),
            (
                r#"{"sent_at": 1, "pools": [{"app": "a", "pool": "p", "pushed_at": 1, "open": -1}]}"#,
                Some("pools[0].open"),
            ),
            (
                r#"{"sent_at": 1, "pools": [{"app": "a", "pool": "p", "pushed_at": 1, "open": 1, "InUse": 1}]}"#,
                Some("pools[0].InUse"),
            ),
            (
                r#"{"sent_at": 1, "pools": [{"app": "a", "pool": "p", "pushed_at": 1, "open": 1},
                                            {"app": "a", "pool": "p", "pushed_at": 1, "open": 2}]}"#,
                Some("pools[1]"),
            ),
            ("[]", None),
        ] {
            let e = parse_forward(body.as_bytes(), 10).expect_err(body);
            assert_eq!(e.field(), field, "{body}: {e}");
            assert_eq!(e.status(), 400, "{body}: {e}");
        }
        let three = r#"{"sent_at": 1, "pools": [{"app":"a","pool":"1","pushed_at":1,"open":1},
            {"app":"a","pool":"2","pushed_at":1,"open":1},{"app":"a","pool":"3","pushed_at":1,"open":1}]}"#;
        let e = parse_forward(three.as_bytes(), 2).expect_err("over the limit");
        assert_eq!(e, IngestError::TooManyPools { limit: 2 });
    }
}
