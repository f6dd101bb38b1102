//! Pools forwarded by sidecars (`POST /api/v1/forward`): stored as if pushed here, at
//! the time they were pushed to the sidecar, so that the analysis compares the server
//! with the same push it would have seen directly and a pool expires when it would have.

use std::time::{Duration, Instant};

use super::{Source, Store};
use crate::ingest::forward::Forwarded;
use crate::ingest::IngestError;

impl Store {
    /// Stores forwarded pools, all or none, as pushes received `age_seconds` ago: an age
    /// is clamped to at least 0 (never in the future) and at most `pools.expiry_seconds`
    /// (older is expired: such a pool is swept, never analysed).
    pub fn apply_forwarded(
        &self,
        pools: Vec<Forwarded>,
        now: Instant,
        now_unix: f64,
    ) -> Result<usize, IngestError> {
        let expiry = self.expiry.as_secs_f64();
        let dated = pools
            .into_iter()
            .map(|f| {
                let age = f.age_seconds.clamp(0.0, expiry);
                let received = now.checked_sub(Duration::from_secs_f64(age)).unwrap_or(now);
                (f.push, received, now_unix - age)
            })
            .collect();
        self.replace_dated(Source::Json, dated, &[], now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::{PoolKey, PoolPush, PoolSnapshot};
    use crate::store::PoolsConfig;

    fn forwarded(pool: &str, age_seconds: f64) -> Forwarded {
        Forwarded {
            push: PoolPush {
                key: PoolKey {
                    app: "shop".into(),
                    pool: pool.into(),
                    instance: "shop-1".into(),
                },
                snapshot: PoolSnapshot {
                    open: 3,
                    ..Default::default()
                },
            },
            age_seconds,
        }
    }

    #[test]
    fn forwarded_pools_keep_their_push_time_clamped_to_expiry() {
        let limits = PoolsConfig {
            expiry: Duration::from_secs(60),
            max_pools: 2,
            max_apps: 10,
            max_pools_per_app: 10,
        };
        let store = Store::register(&prometheus::Registry::new(), &limits).unwrap();
        let (now, unix) = (Instant::now() + Duration::from_secs(600), 10_000.0);
        let n = store
            .apply_forwarded(vec![forwarded("a", 12.0), forwarded("b", 500.0)], now, unix)
            .unwrap();
        assert_eq!(n, 2);
        let snap = store.snapshot(now - Duration::from_secs(1));
        let at: Vec<(String, f64)> = snap
            .iter()
            .map(|(k, e)| (k.pool.clone(), e.received_unix))
            .collect();
        assert_eq!(at, vec![("a".into(), 9_988.0), ("b".into(), 9_940.0)]);
        // 12 s old when forwarded: gone 48 s later, as it would have been on the sidecar.
        assert_eq!(store.snapshot(now + Duration::from_secs(47)).len(), 1);
        assert!(store.snapshot(now + Duration::from_secs(49)).is_empty());
        // Over the cap: nothing stored.
        let e = store.apply_forwarded(
            vec![
                forwarded("c", 0.0),
                forwarded("d", 0.0),
                forwarded("e", 0.0),
            ],
            now + Duration::from_secs(50),
            unix + 50.0,
        );
        assert!(matches!(e, Err(IngestError::PoolLimit { .. })), "{e:?}");
        assert!(store.is_empty());
    }
}
