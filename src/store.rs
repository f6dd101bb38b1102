//! The latest snapshot of every pool, keyed by (app, pool, instance), with expiry and a
//! cap on how many pools are tracked.
//!
//! Owns the pool view's state and its bookkeeping counters. It does not parse (that is
//! [`crate::ingest`]) or render (that is [`crate::metrics`]). Time is passed in by the
//! caller, so expiry is tested without waiting.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, Opts, Registry};

use crate::config::PoolsConfig;
use crate::ingest::{IngestError, PoolKey, PoolPush, PoolSnapshot};

/// A stored snapshot and when it arrived.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The pushed statistics.
    pub snapshot: PoolSnapshot,
    /// Arrival on the monotonic clock, for expiry.
    pub received: Instant,
    /// Arrival as Unix seconds, for `poolwatch_pool_last_push_timestamp_seconds`.
    pub received_unix: f64,
}

/// Pool snapshots shared by the push handlers (writers) and the scrape (reader).
pub struct Store {
    /// The pools; held only for map operations, never across an await.
    pools: Mutex<HashMap<PoolKey, Entry>>,
    /// Pools not refreshed within this long are dropped.
    expiry: Duration,
    /// Most pools tracked at once.
    max_pools: usize,
    /// Most applications tracked at once.
    max_apps: usize,
    /// Most pools per application.
    max_pools_per_app: usize,
    /// Pools expired so far; rendered by the pool collector in the same scrape as the
    /// pools themselves, so the two always agree.
    expired_total: AtomicU64,
    /// `poolwatch_ingest_dropped_total{reason}`: pool snapshots refused.
    dropped_total: IntCounterVec,
}

impl Store {
    /// Creates the store and registers its drop counter.
    pub fn register(registry: &Registry, limits: &PoolsConfig) -> prometheus::Result<Store> {
        let dropped_total = IntCounterVec::new(
            Opts::new(
                "poolwatch_ingest_dropped_total",
                "Pool snapshots refused, by reason (pool_limit, app_limit, pools_per_app_limit).",
            ),
            &["reason"],
        )?;
        for reason in ["pool_limit", "app_limit", "pools_per_app_limit"] {
            dropped_total.with_label_values(&[reason]);
        }
        registry.register(Box::new(dropped_total.clone()))?;
        Ok(Store {
            pools: Mutex::new(HashMap::new()),
            expiry: limits.expiry,
            max_pools: limits.max_pools,
            max_apps: limits.max_apps,
            max_pools_per_app: limits.max_pools_per_app,
            expired_total: AtomicU64::new(0),
            dropped_total,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<PoolKey, Entry>> {
        // A panic while holding the lock leaves a map that is still consistent (every
        // operation is a single insert or retain), so a poisoned lock is safe to reuse.
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores all pushes or none: if the new pools would exceed the cap, nothing changes.
    pub fn apply(
        &self,
        pushes: Vec<PoolPush>,
        now: Instant,
        now_unix: f64,
    ) -> Result<usize, IngestError> {
        self.replace(pushes, &[], now, now_unix)
    }

    /// Stores `pushes` and drops `gone` in one step: all or nothing, as [`Store::apply`].
    /// A Pushgateway group that no longer holds a pool removes it this way.
    pub fn replace(
        &self,
        pushes: Vec<PoolPush>,
        gone: &[PoolKey],
        now: Instant,
        now_unix: f64,
    ) -> Result<usize, IngestError> {
        let mut pools = self.lock();
        self.expire(&mut pools, now);
        let new = pushes
            .iter()
            .filter(|p| !pools.contains_key(&p.key))
            .count();
        let leaving = gone
            .iter()
            .filter(|k| pools.contains_key(*k) && !pushes.iter().any(|p| &p.key == *k))
            .count();
        let refused = if (pools.len() + new).saturating_sub(leaving) > self.max_pools {
            Some(IngestError::PoolLimit {
                limit: self.max_pools,
                tracked: pools.len(),
                new,
            })
        } else if new > 0 {
            self.app_limits(&pools, &pushes)
        } else {
            None
        };
        if let Some(e) = refused {
            self.dropped_total
                .with_label_values(&[e.kind()])
                .inc_by(pushes.len() as u64);
            return Err(e);
        }
        for k in gone {
            pools.remove(k);
        }
        let n = pushes.len();
        for p in pushes {
            pools.insert(
                p.key,
                Entry {
                    snapshot: p.snapshot,
                    received: now,
                    received_unix: now_unix,
                },
            );
        }
        Ok(n)
    }

    /// The application limits, checked only when a push adds pools (updates of tracked
    /// pools never need it, so the common push stays O(1)).
    fn app_limits(
        &self,
        pools: &HashMap<PoolKey, Entry>,
        pushes: &[PoolPush],
    ) -> Option<IngestError> {
        let mut per_app: HashMap<&str, usize> = HashMap::new();
        for k in pools.keys() {
            *per_app.entry(k.app.as_str()).or_default() += 1;
        }
        for p in pushes.iter().filter(|p| !pools.contains_key(&p.key)) {
            *per_app.entry(p.key.app.as_str()).or_default() += 1;
        }
        if per_app.len() > self.max_apps {
            return Some(IngestError::AppLimit {
                limit: self.max_apps,
            });
        }
        let (app, n) = per_app.iter().max_by_key(|(_, n)| **n)?;
        (*n > self.max_pools_per_app).then(|| IngestError::PoolsPerAppLimit {
            app: app.to_string(),
            limit: self.max_pools_per_app,
        })
    }

    /// Drops expired pools; returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        self.expire(&mut self.lock(), now)
    }

    fn expire(&self, pools: &mut HashMap<PoolKey, Entry>, now: Instant) -> usize {
        let before = pools.len();
        pools.retain(|_, e| now.saturating_duration_since(e.received) < self.expiry);
        let gone = before - pools.len();
        self.expired_total.fetch_add(gone as u64, Ordering::Relaxed);
        gone
    }

    /// The live pools, sorted by key, after dropping expired ones.
    pub fn snapshot(&self, now: Instant) -> Vec<(PoolKey, Entry)> {
        let mut pools = self.lock();
        self.expire(&mut pools, now);
        let mut out: Vec<(PoolKey, Entry)> =
            pools.iter().map(|(k, e)| (k.clone(), e.clone())).collect();
        drop(pools);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Pools expired since start.
    pub fn expired_total(&self) -> u64 {
        self.expired_total.load(Ordering::Relaxed)
    }

    /// How many pools are tracked (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no pool is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push(app: &str, pool: &str, open: u64) -> PoolPush {
        PoolPush {
            key: PoolKey {
                app: app.into(),
                pool: pool.into(),
                instance: "i".into(),
            },
            snapshot: PoolSnapshot {
                open,
                ..Default::default()
            },
        }
    }

    fn store(max: usize) -> (Store, Registry) {
        let r = Registry::new();
        let limits = PoolsConfig {
            expiry: Duration::from_secs(60),
            max_pools: max,
            max_apps: 3,
            max_pools_per_app: 4,
        };
        (Store::register(&r, &limits).unwrap(), r)
    }

    #[test]
    fn latest_snapshot_wins() {
        let (s, _) = store(10);
        let t = Instant::now();
        s.apply(vec![push("a", "p", 1)], t, 1.0).unwrap();
        s.apply(vec![push("a", "p", 5)], t + Duration::from_secs(1), 2.0)
            .unwrap();
        let snap = s.snapshot(t + Duration::from_secs(2));
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].1.snapshot.open, 5);
        assert_eq!(snap[0].1.received_unix, 2.0);
    }

    #[test]
    fn app_limits() {
        let (s, _) = store(100);
        let t = Instant::now();
        let many: Vec<PoolPush> = (0..4).map(|i| push("a", &format!("p{i}"), 1)).collect();
        s.apply(many, t, 1.0).unwrap();
        let err = s.apply(vec![push("a", "p9", 1)], t, 1.0).unwrap_err();
        assert_eq!(
            err,
            IngestError::PoolsPerAppLimit {
                app: "a".into(),
                limit: 4
            }
        );
        s.apply(vec![push("b", "p", 1), push("c", "p", 1)], t, 1.0)
            .unwrap();
        let err = s.apply(vec![push("d", "p", 1)], t, 1.0).unwrap_err();
        assert_eq!(err, IngestError::AppLimit { limit: 3 });
        assert_eq!(s.dropped_total.with_label_values(&["app_limit"]).get(), 1);
        assert_eq!(
            s.dropped_total
                .with_label_values(&["pools_per_app_limit"])
                .get(),
            1
        );
        // Updates of tracked pools pass whatever the limits.
        s.apply(vec![push("a", "p0", 7)], t, 1.0).unwrap();
        assert_eq!(s.len(), 6);
    }

    #[test]
    fn expiry_drops_and_counts() {
        let (s, _) = store(10);
        let t = Instant::now();
        s.apply(vec![push("a", "p", 1), push("b", "p", 1)], t, 1.0)
            .unwrap();
        s.apply(vec![push("b", "p", 2)], t + Duration::from_secs(30), 31.0)
            .unwrap();
        assert_eq!(s.snapshot(t + Duration::from_secs(59)).len(), 2);
        let live = s.snapshot(t + Duration::from_secs(60));
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].0.app, "b");
        assert_eq!(s.expired_total(), 1);
        assert_eq!(s.sweep(t + Duration::from_secs(90)), 1);
        assert_eq!(s.expired_total(), 2);
        assert!(s.is_empty());
    }

    #[test]
    fn cap_rejects_new_pools_whole_and_counts() {
        let (s, _) = store(2);
        let t = Instant::now();
        s.apply(vec![push("a", "p", 1)], t, 1.0).unwrap();
        let err = s
            .apply(
                vec![push("a", "p", 9), push("b", "p", 1), push("c", "p", 1)],
                t,
                1.0,
            )
            .unwrap_err();
        assert_eq!(
            err,
            IngestError::PoolLimit {
                limit: 2,
                tracked: 1,
                new: 2
            }
        );
        assert_eq!(s.dropped_total.with_label_values(&["pool_limit"]).get(), 3);
        let snap = s.snapshot(t);
        assert_eq!(snap.len(), 1);
        assert_eq!(
            snap[0].1.snapshot.open, 1,
            "a refused batch changes nothing"
        );
        // Updates of tracked pools are always accepted, and expiry frees room.
        s.apply(vec![push("a", "p", 2), push("b", "p", 1)], t, 1.0)
            .unwrap();
        assert!(s.apply(vec![push("c", "p", 1)], t, 1.0).is_err());
        s.apply(vec![push("c", "p", 1)], t + Duration::from_secs(61), 62.0)
            .unwrap();
    }
}
