//! The latest snapshot of every pool, keyed by (app, pool, instance), with expiry and a
//! cap on how many pools are tracked.
//!
//! A pool may be supplied by more than one [`Source`] (a JSON push and a Pushgateway
//! group, or two groups whose samples name the same pool): each source's latest snapshot
//! is kept, the newest one is what readers see, and a source that stops supplying the
//! pool (a group deleted, or pushed again without it) takes away its own snapshot only.
//!
//! Owns the pool view's state and its bookkeeping counters. It does not parse (that is
//! [`crate::ingest`]) or render (that is [`crate::metrics`]). Time is passed in by the
//! caller, so expiry is tested without waiting.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use prometheus::{IntCounterVec, Opts, Registry};

use crate::ingest::{IngestError, PoolKey, PoolPush, PoolSnapshot};
use crate::keys::{Key, Kind, Values};

mod forwarded;

/// The store's limits: the `pools` section of the configuration.
#[derive(Clone, Debug)]
pub struct PoolsConfig {
    /// A pool not pushed for this long disappears.
    pub expiry: Duration,
    /// Most pools tracked at once; pushes of new pools beyond it are rejected.
    pub max_pools: usize,
    /// Most applications tracked at once.
    pub max_apps: usize,
    /// Most pools (all instances together) tracked per application.
    pub max_pools_per_app: usize,
}

const EXPIRY: Key = Key::new(
    "pools.expiry_seconds",
    Kind::Seconds,
    "60",
    &["POOLWATCH_POOLS_EXPIRY_SECONDS"],
);
const MAX_POOLS: Key = Key::new(
    "pools.max_pools",
    Kind::Count,
    "1000",
    &["POOLWATCH_POOLS_MAX_POOLS"],
);
const MAX_APPS: Key = Key::new(
    "pools.max_apps",
    Kind::Count,
    "500",
    &["POOLWATCH_POOLS_MAX_APPS"],
);
const MAX_POOLS_PER_APP: Key = Key::new(
    "pools.max_pools_per_app",
    Kind::Count,
    "500",
    &["POOLWATCH_POOLS_MAX_POOLS_PER_APP"],
);

impl PoolsConfig {
    /// The keys of the `pools` section.
    pub const KEYS: &[Key] = &[EXPIRY, MAX_POOLS, MAX_APPS, MAX_POOLS_PER_APP];

    /// Reads the `pools` section.
    pub fn from_values(v: &mut Values) -> PoolsConfig {
        PoolsConfig {
            expiry: v.seconds(&EXPIRY),
            max_pools: v.count(&MAX_POOLS),
            max_apps: v.count(&MAX_APPS),
            max_pools_per_app: v.count(&MAX_POOLS_PER_APP),
        }
    }
}

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

/// Who supplied a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The JSON endpoints (any client: they replace each other's snapshots).
    Json,
    /// OpenTelemetry exports (`POST /v1/metrics`).
    Otlp,
    /// One Pushgateway group, by an id its table gives it.
    Group(u64),
}

/// One source's snapshot of a pool.
#[derive(Clone, Debug)]
struct Supplied {
    source: Source,
    entry: Entry,
}

/// Every source's snapshot of one pool: the newest first, in `latest`, and the others
/// (usually none) in no particular order.
#[derive(Clone, Debug)]
struct Slot {
    latest: Supplied,
    others: Vec<Supplied>,
}

impl Slot {
    /// Sets `source`'s snapshot, which is the newest.
    fn supply(&mut self, new: Supplied) {
        self.others.retain(|o| o.source != new.source);
        let old = std::mem::replace(&mut self.latest, new);
        if old.source != self.latest.source {
            self.others.push(old);
        }
    }

    /// Whether only `source` supplies the pool.
    fn only(&self, source: Source) -> bool {
        self.latest.source == source && self.others.is_empty()
    }

    /// Drops `source`'s snapshot; `false` when no snapshot is left.
    fn withdraw(&mut self, source: Source) -> bool {
        if self.latest.source != source {
            self.others.retain(|o| o.source != source);
            return true;
        }
        let Some(newest) = self
            .others
            .iter()
            .enumerate()
            .max_by_key(|(_, o)| o.entry.received)
            .map(|(i, _)| i)
        else {
            return false;
        };
        self.latest = self.others.swap_remove(newest);
        true
    }
}

/// Pool snapshots shared by the push handlers (writers) and the scrape (reader).
pub struct Store {
    /// The pools; held only for map operations, never across an await.
    pools: Mutex<Pools>,
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
    /// Woken (one permit, so bursts coalesce) whenever pushes are stored: a sidecar
    /// forwards its pools on it ([`crate::forward`]).
    changed: tokio::sync::Notify,
}

/// The pools and how many each application has, kept together so that a push costs the
/// same at 10 pools and at 10,000 (no pass over all pools to check the limits).
#[derive(Default)]
struct Pools {
    map: HashMap<PoolKey, Slot>,
    /// Tracked pools per application; no zero entries.
    per_app: HashMap<String, usize>,
    /// When a push next sweeps expired pools (a sweep is a pass over all of them).
    sweeps: SweepClock,
}

impl Pools {
    fn insert(&mut self, key: PoolKey, new: Supplied) {
        match self.map.get_mut(&key) {
            Some(slot) => slot.supply(new),
            None => {
                *self.per_app.entry(key.app.clone()).or_default() += 1;
                let slot = Slot {
                    latest: new,
                    others: Vec::new(),
                };
                self.map.insert(key, slot);
            }
        }
    }

    /// Drops `source`'s snapshot of the pool, and the pool when no other source has one.
    fn withdraw(&mut self, key: &PoolKey, source: Source) {
        let emptied = self.map.get_mut(key).is_some_and(|s| !s.withdraw(source));
        if emptied {
            self.map.remove(key);
            self.forget_one(&key.app);
        }
    }

    fn forget_one(&mut self, app: &str) {
        if let Some(n) = self.per_app.get_mut(app) {
            *n -= 1;
            if *n == 0 {
                self.per_app.remove(app);
            }
        }
    }

    /// Drops the pools older than `expiry`; returns how many. A pool's newest snapshot
    /// is the last to expire, and an older source's expires on its own.
    fn expire(&mut self, now: Instant, expiry: Duration) -> usize {
        let mut gone = Vec::new();
        let live = |e: &Entry| now.saturating_duration_since(e.received) < expiry;
        self.map.retain(|k, slot| {
            if !live(&slot.latest.entry) {
                gone.push(k.app.clone());
                return false;
            }
            slot.others.retain(|o| live(&o.entry));
            true
        });
        for app in &gone {
            self.forget_one(app);
        }
        gone.len()
    }
}

/// When a push may next sweep expired entries: at most once a second, since a sweep is a
/// pass over every entry and a push should cost the same at 10 entries and at 10,000.
/// Between sweeps an expired entry may count against the limits for up to a second;
/// readers filter it out themselves.
#[derive(Default)]
pub(crate) struct SweepClock {
    next: Option<Instant>,
}

impl SweepClock {
    /// Whether a sweep is due at `now`; if so, the next one is a second later.
    pub(crate) fn due(&mut self, now: Instant) -> bool {
        if self.next.is_some_and(|at| now < at) {
            return false;
        }
        self.next = Some(now + Duration::from_secs(1));
        true
    }
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
            pools: Mutex::new(Pools::default()),
            expiry: limits.expiry,
            max_pools: limits.max_pools,
            max_apps: limits.max_apps,
            max_pools_per_app: limits.max_pools_per_app,
            expired_total: AtomicU64::new(0),
            dropped_total,
            changed: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Pools> {
        // A panic while holding the lock leaves a map that is still consistent (every
        // operation is a single insert or retain), so a poisoned lock is safe to reuse.
        self.pools.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a JSON push, all pools or none: if the new pools would exceed the cap,
    /// nothing changes.
    pub fn apply(
        &self,
        pushes: Vec<PoolPush>,
        now: Instant,
        now_unix: f64,
    ) -> Result<usize, IngestError> {
        self.replace(Source::Json, pushes, &[], now, now_unix)
    }

    /// Stores `source`'s `pushes` and withdraws its snapshots of the pools in `gone`, in
    /// one step: all or nothing, as [`Store::apply`]. A Pushgateway group that no longer
    /// holds a pool, or is deleted, gives it up this way; the pool stays while another
    /// source supplies it. Costs what the push holds, not what the store holds (but for a
    /// sweep of expired pools at most once a second).
    pub fn replace(
        &self,
        source: Source,
        pushes: Vec<PoolPush>,
        gone: &[PoolKey],
        now: Instant,
        now_unix: f64,
    ) -> Result<usize, IngestError> {
        let dated = pushes.into_iter().map(|p| (p, now, now_unix)).collect();
        self.replace_dated(source, dated, gone, now)
    }

    /// [`Store::replace`] with each push's own arrival (monotonic and Unix), for pushes
    /// that arrived elsewhere first (forwarded by a sidecar).
    fn replace_dated(
        &self,
        source: Source,
        pushes: Vec<(PoolPush, Instant, f64)>,
        gone: &[PoolKey],
        now: Instant,
    ) -> Result<usize, IngestError> {
        let mut pools = self.lock();
        if pools.sweeps.due(now) {
            self.expire(&mut pools, now);
        }
        let keys: Vec<&PoolKey> = pushes.iter().map(|(p, ..)| &p.key).collect();
        let refused = self.limits(&pools, source, &keys, gone);
        if let Some(e) = refused {
            self.dropped_total
                .with_label_values(&[e.kind()])
                .inc_by(pushes.len() as u64);
            return Err(e);
        }
        for k in gone {
            pools.withdraw(k, source);
        }
        let n = pushes.len();
        for (p, received, received_unix) in pushes {
            let entry = Entry {
                snapshot: p.snapshot,
                received,
                received_unix,
            };
            pools.insert(p.key, Supplied { source, entry });
        }
        drop(pools);
        self.changed.notify_one();
        Ok(n)
    }

    /// What the store would hold after the push, checked against the limits; only the
    /// applications the push touches are counted (updates of tracked pools add nothing).
    fn limits(
        &self,
        pools: &Pools,
        source: Source,
        pushes: &[&PoolKey],
        gone: &[PoolKey],
    ) -> Option<IngestError> {
        let is_pushed = |k: &PoolKey| pushes.contains(&k);
        // Net change per application: new pools in, pools of `gone` that go out.
        let mut delta: HashMap<&str, isize> = HashMap::new();
        let mut seen: HashSet<&PoolKey> = HashSet::new();
        for k in pushes {
            if !pools.map.contains_key(*k) && seen.insert(*k) {
                *delta.entry(k.app.as_str()).or_default() += 1;
            }
        }
        if seen.is_empty() {
            return None;
        }
        for k in gone {
            if pools.map.get(k).is_some_and(|s| s.only(source)) && !is_pushed(k) {
                *delta.entry(k.app.as_str()).or_default() -= 1;
            }
        }
        let new = seen.len();
        let total = pools.map.len() as isize + delta.values().sum::<isize>();
        if total > self.max_pools as isize {
            return Some(IngestError::PoolLimit {
                limit: self.max_pools,
                tracked: pools.map.len(),
                new,
            });
        }
        let mut apps = pools.per_app.len();
        for (app, d) in &delta {
            let before = pools.per_app.get(*app).copied().unwrap_or(0);
            let after = before as isize + d;
            match (before, after) {
                (0, a) if a > 0 => apps += 1,
                (b, a) if b > 0 && a <= 0 => apps -= 1,
                _ => {}
            }
        }
        if apps > self.max_apps {
            return Some(IngestError::AppLimit {
                limit: self.max_apps,
            });
        }
        let over = delta.iter().find(|(app, d)| {
            pools.per_app.get(**app).copied().unwrap_or(0) as isize + **d
                > self.max_pools_per_app as isize
        });
        over.map(|(app, _)| IngestError::PoolsPerAppLimit {
            app: app.to_string(),
            limit: self.max_pools_per_app,
        })
    }

    /// Drops expired pools; returns how many.
    pub fn sweep(&self, now: Instant) -> usize {
        self.expire(&mut self.lock(), now)
    }

    fn expire(&self, pools: &mut Pools, now: Instant) -> usize {
        let gone = pools.expire(now, self.expiry);
        self.expired_total.fetch_add(gone as u64, Ordering::Relaxed);
        gone
    }

    /// The live pools, sorted by key, after dropping expired ones.
    pub fn snapshot(&self, now: Instant) -> Vec<(PoolKey, Entry)> {
        let mut pools = self.lock();
        self.expire(&mut pools, now);
        let mut out: Vec<(PoolKey, Entry)> = pools
            .map
            .iter()
            .map(|(k, s)| (k.clone(), s.latest.entry.clone()))
            .collect();
        drop(pools);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// `pools.max_pools`: no push may name more pools.
    pub fn max_pools(&self) -> usize {
        self.max_pools
    }

    /// `pools.max_pools_per_app`: a batch holds one application's pools, so no more.
    pub fn max_pools_per_app(&self) -> usize {
        self.max_pools_per_app
    }

    /// Calls `f` with the live pools sorted by key, under the store's lock, after dropping
    /// expired ones: a scrape renders them from here rather than from a copy of them all
    /// (5.7 MB at 10,000 pools); pushes wait while it runs.
    pub fn with_sorted<R>(&self, now: Instant, f: impl FnOnce(&[(&PoolKey, &Entry)]) -> R) -> R {
        let mut pools = self.lock();
        self.expire(&mut pools, now);
        let mut refs: Vec<(&PoolKey, &Entry)> = pools
            .map
            .iter()
            .map(|(k, s)| (k, &s.latest.entry))
            .collect();
        refs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        f(&refs)
    }

    /// Resolves after the next push is stored (at once if one was stored since the last
    /// call): one waiter at a time.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// Pools expired since start.
    pub fn expired_total(&self) -> u64 {
        self.expired_total.load(Ordering::Relaxed)
    }

    /// How many pools are tracked (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.lock().map.len()
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

    /// The per-application counts kept alongside the map always equal a recount, through
    /// inserts, updates, removals by `gone`, refusals and expiry.
    #[test]
    fn application_counts_follow_every_change() {
        let (s, _) = store(12);
        let t = Instant::now();
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for step in 0..2000u64 {
            let now = t + Duration::from_millis(step * 50);
            let pushes: Vec<PoolPush> = (0..next(3))
                .map(|_| push(&format!("a{}", next(4)), &format!("p{}", next(5)), 1))
                .collect();
            let gone: Vec<PoolKey> = (0..next(2))
                .map(|_| push(&format!("a{}", next(4)), &format!("p{}", next(5)), 1).key)
                .collect();
            let source = if next(3) == 0 {
                Source::Json
            } else {
                Source::Group(next(3))
            };
            let _ = s.replace(source, pushes, &gone, now, step as f64);
            if next(50) == 0 {
                s.sweep(now);
            }
            let pools = s.lock();
            let mut recount: HashMap<String, usize> = HashMap::new();
            for k in pools.map.keys() {
                *recount.entry(k.app.clone()).or_default() += 1;
            }
            assert_eq!(pools.per_app, recount, "step {step}");
            assert!(
                pools.map.len() <= 12 && pools.per_app.len() <= 3,
                "step {step}"
            );
        }
    }

    #[test]
    fn pools_a_group_gives_up_make_room_in_the_same_push() {
        let (s, _) = store(2);
        let t = Instant::now();
        s.apply(vec![push("a", "p1", 1), push("a", "p2", 1)], t, 1.0)
            .unwrap();
        // Full; a push that drops p1 and adds p3 fits.
        s.replace(
            Source::Json,
            vec![push("a", "p3", 1)],
            &[push("a", "p1", 1).key],
            t,
            1.0,
        )
        .unwrap();
        let pools: Vec<String> = s.snapshot(t).into_iter().map(|(k, _)| k.pool).collect();
        assert_eq!(pools, ["p2", "p3"]);
    }

    /// Issue 15, D6: a source gives up its own snapshot of a pool, not the pool, while
    /// another source still supplies it; the newest snapshot is the one shown.
    #[test]
    fn a_source_withdraws_only_what_it_supplied() {
        let (s, _) = store(10);
        let t = Instant::now();
        let at = |secs: u64| t + Duration::from_secs(secs);
        let (a, b) = (Source::Group(1), Source::Group(2));
        let open = |s: &Store, now| -> Vec<(String, u64)> {
            s.snapshot(now)
                .into_iter()
                .map(|(k, e)| (k.pool, e.snapshot.open))
                .collect()
        };
        s.apply(vec![push("x", "p", 1)], at(0), 0.0).unwrap();
        s.replace(
            a,
            vec![push("x", "p", 2), push("x", "q", 3)],
            &[],
            at(1),
            1.0,
        )
        .unwrap();
        s.replace(b, vec![push("x", "p", 4)], &[], at(2), 2.0)
            .unwrap();
        assert_eq!(open(&s, at(2)), [("p".into(), 4), ("q".into(), 3)]);
        // Group b goes: p falls back to the newest other source (group a), q stays.
        s.replace(b, vec![], &[push("x", "p", 0).key], at(3), 3.0)
            .unwrap();
        assert_eq!(open(&s, at(3)), [("p".into(), 2), ("q".into(), 3)]);
        // Group a goes: p is still the JSON push's; q was a's alone.
        let gone = [push("x", "p", 0).key, push("x", "q", 0).key];
        s.replace(a, vec![], &gone, at(4), 4.0).unwrap();
        assert_eq!(open(&s, at(4)), [("p".into(), 1)]);
        // A source that never supplied a pool cannot take it away.
        s.replace(b, vec![], &[push("x", "p", 0).key], at(5), 5.0)
            .unwrap();
        assert_eq!(open(&s, at(5)), [("p".into(), 1)]);
        // Each source's snapshot expires on its own: the JSON one is 60 s old at 60.
        s.replace(a, vec![push("x", "p", 7)], &[], at(30), 30.0)
            .unwrap();
        assert_eq!(open(&s, at(61)), [("p".into(), 7)]);
        s.replace(a, vec![], &[push("x", "p", 0).key], at(62), 62.0)
            .unwrap();
        assert!(s.is_empty(), "the expired JSON snapshot does not come back");
    }

    #[test]
    fn a_full_store_counts_a_withdrawn_pool_as_room_only_when_no_one_else_supplies_it() {
        let (s, _) = store(2);
        let t = Instant::now();
        let (a, b) = (Source::Group(1), Source::Group(2));
        s.replace(a, vec![push("x", "p", 1)], &[], t, 0.0).unwrap();
        s.replace(b, vec![push("x", "p", 1), push("x", "q", 1)], &[], t, 0.0)
            .unwrap();
        // a gives up p, which b still supplies: no room for r.
        let err = s
            .replace(a, vec![push("x", "r", 1)], &[push("x", "p", 1).key], t, 0.0)
            .unwrap_err();
        assert_eq!(err.kind(), "pool_limit");
        // b giving up q makes room.
        s.replace(b, vec![push("x", "r", 1)], &[push("x", "q", 1).key], t, 0.0)
            .unwrap();
        assert_eq!(s.len(), 2);
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
