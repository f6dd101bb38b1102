//! The Pushgateway-compatible endpoints: `PUT`, `POST` and `DELETE` on
//! `/metrics/job/<job>{/<label>/<value>}`, so an application's existing Prometheus
//! client can push its pool metrics here unchanged.
//!
//! As the Pushgateway: `PUT` replaces the group, `POST` replaces the pushed families
//! and keeps the rest, `DELETE` removes the group; text format 0.0.4 or delimited
//! protobuf, optionally gzip-compressed; samples with timestamps are refused. A pool
//! that a JSON push or another group also supplies stays when this group lets go of it
//! (`DELETE`, or a push without it): the store keeps each source's snapshot. Unlike it,
//! a group not refreshed within `pools.expiry_seconds` expires, and what is kept is not
//! the metrics but the pools they describe ([`crate::ingest::pushgateway::map_group`]):
//! families that map to no pool are counted and dropped.
//!
//! A rejected push (bad path, body, or too many pools) changes nothing: the new group
//! and its pools are computed first and stored only if everything succeeded.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use prometheus::{IntCounter, Registry};

use super::{json, Body, Ctx};
use crate::ingest::pushgateway::group::{self, Group};
use crate::ingest::pushgateway::mapping::{check_key, map_group};
use crate::ingest::pushgateway::path::{parse_push_path, GroupingKey};
use crate::ingest::pushgateway::{self as pg, BodyFormat};
use crate::ingest::{IngestError, PoolKey};
use crate::store::{Source, SweepClock};

/// One stored group: its families (for `POST` merges) and the pools they mapped to.
struct Stored {
    /// Whose snapshots its pools are in the store.
    id: u64,
    /// The group's families.
    group: Group,
    /// Pools the group produced, removed from the store with it.
    pools: Vec<PoolKey>,
    /// Last push, for expiry.
    received: Instant,
}

/// Pushgateway groups, alongside the pool store.
pub struct Groups {
    /// By grouping key; held only for map operations and the store update.
    groups: Mutex<Table>,
    /// Groups not pushed for this long are forgotten (their pools expire in the store).
    expiry: Duration,
    /// Most groups kept (the pool cap: a group with no pool still costs memory).
    max_groups: usize,
    /// `poolwatch_ingest_ignored_families_total`.
    ignored: IntCounter,
}

impl Groups {
    /// Creates the group table and registers its counter.
    pub fn register(
        registry: &Registry,
        expiry: Duration,
        max_groups: usize,
    ) -> prometheus::Result<Groups> {
        let ignored = IntCounter::new(
            "poolwatch_ingest_ignored_families_total",
            "Metric families in Pushgateway-format pushes that map to no pool field, dropped.",
        )?;
        registry.register(Box::new(ignored.clone()))?;
        Ok(Groups {
            groups: Mutex::new(Table::default()),
            expiry,
            max_groups,
            ignored,
        })
    }
}

/// The groups and when a push next sweeps the expired ones.
#[derive(Default)]
struct Table {
    by_key: HashMap<GroupingKey, Stored>,
    /// The id the next new group gets.
    next_id: u64,
    /// Expired groups are swept at most once a second; until then one is still held (and
    /// counts against `max_groups`) but is never merged with.
    sweeps: SweepClock,
}

/// Format label of `poolwatch_ingest_requests_total` before the body's format is known.
const UNKNOWN: &str = "pushgateway";

/// Handles a request on `/metrics/job/...`.
pub async fn handle(req: Request<Incoming>, ctx: &Ctx) -> Response<Body> {
    let method = match *req.method() {
        Method::PUT => group::Method::Put,
        Method::POST => group::Method::Post,
        Method::DELETE => group::Method::Delete,
        _ => return super::not_allowed("PUT, POST, DELETE"),
    };
    let (label, result) = match push(req, ctx, method).await {
        Ok((label, n)) => (label, Ok(n)),
        Err((label, e)) => (label, Err(e)),
    };
    match result {
        Ok(n) => {
            ctx.ingest.count(label, "accepted");
            if method == group::Method::Delete {
                json(StatusCode::ACCEPTED, &serde_json::json!({ "deleted": n }))
            } else {
                json(StatusCode::OK, &serde_json::json!({ "accepted": n }))
            }
        }
        Err(e) => {
            ctx.ingest.count(label, e.kind());
            super::push::refusal(label, &e)
        }
    }
}

type Outcome = Result<(&'static str, usize), (&'static str, IngestError)>;

async fn push(req: Request<Incoming>, ctx: &Ctx, method: group::Method) -> Outcome {
    let key = parse_push_path(req.uri().path()).map_err(|e| (UNKNOWN, e))?;
    let peer = super::peer_of(&req);
    let now = Instant::now();
    let unix = crate::unix_now();
    if method == group::Method::Delete {
        // A key a PUT would refuse is refused here too, not answered "deleted nothing".
        check_key(&key).map_err(|e| (UNKNOWN, e))?;
        let Some(removed) = lock(&ctx.groups.groups).by_key.remove(&key) else {
            return Ok((UNKNOWN, 0));
        };
        let source = Source::Group(removed.id);
        ctx.store
            .replace(source, Vec::new(), &removed.pools, now, unix)
            .map_err(|e| (UNKNOWN, e))?;
        return Ok((UNKNOWN, removed.pools.len()));
    }
    let content_type = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let format = pg::body_format(content_type.as_deref()).map_err(|e| (UNKNOWN, e))?;
    let label = match format {
        BodyFormat::Text => "text",
        BodyFormat::ProtobufDelimited => "protobuf",
    };
    let body = super::push::read_body(req, ctx)
        .await
        .map_err(|e| (label, e))?;
    let families = body
        .parse(move |b| pg::parse_body(format, b, &pg::Limits::default()))
        .await
        .map_err(|e| (label, e))?;

    let mut table = lock(&ctx.groups.groups);
    let expiry = ctx.groups.expiry;
    if table.sweeps.due(now) {
        table
            .by_key
            .retain(|_, s| now.saturating_duration_since(s.received) < expiry);
    }
    let id = match table.by_key.get(&key) {
        Some(s) => s.id,
        None => {
            table.next_id += 1;
            table.next_id
        }
    };
    let groups = &mut table.by_key;
    let held = groups.get(&key);
    let current = held.filter(|s| now.saturating_duration_since(s.received) < expiry);
    if held.is_none() && groups.len() >= ctx.groups.max_groups {
        return Err((
            label,
            IngestError::PoolLimit {
                limit: ctx.groups.max_groups,
                tracked: groups.len(),
                new: 1,
            },
        ));
    }
    let group = group::apply(current.map(|s| &s.group), method, families)
        .map_err(|e| (label, e))?
        .unwrap_or_default();
    let mut mapped = map_group(
        &key,
        group.families(),
        &ctx.default_instance,
        ctx.groups.max_groups,
    )
    .map_err(|e| (label, e))?;
    super::push::set_peer(&mut mapped.pools, peer);
    let new_keys: Vec<PoolKey> = mapped.pools.iter().map(|p| p.key.clone()).collect();
    let gone: Vec<PoolKey> = current
        .map(|s| {
            s.pools
                .iter()
                .filter(|k| !new_keys.contains(k))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let n = ctx
        .store
        .replace(Source::Group(id), mapped.pools, &gone, now, unix)
        .map_err(|e| (label, e))?;
    ctx.groups
        .ignored
        .inc_by(mapped.ignored_families.len() as u64);
    if !mapped.incomplete.is_empty() {
        tracing::debug!(incomplete = ?mapped.incomplete, "pushed pools lack open or in_use and idle; not stored");
    }
    // Keep only what maps to a pool: ignored families (a Go program's runtime metrics, or
    // anything a hostile pusher sends) are counted and dropped, not held.
    let mut group = group;
    group.retain_families(|name| !mapped.ignored_families.iter().any(|f| f == name));
    groups.insert(
        key,
        Stored {
            id,
            group,
            pools: new_keys,
            received: now,
        },
    );
    Ok((label, n))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is a whole map operation; a poisoned lock holds a consistent map.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
