//! The pool view: one series per pushed pool and field, from the store at scrape time.
//!
//! Series (labels `database`, the watched database's name, when it is known; `app`,
//! `pool`, `app_instance`, the pushing replica, absent when the push names none; a field
//! the client did not send has no series):
//! `poolwatch_pool_max_open_connections` (absent when unlimited),
//! `poolwatch_pool_open_connections`, `poolwatch_pool_in_use_connections`,
//! `poolwatch_pool_idle_connections`, `poolwatch_pool_waiting`,
//! `poolwatch_pool_wait_count_total`, `poolwatch_pool_wait_duration_seconds_total`,
//! `poolwatch_pool_closed_total{reason="max_idle|max_idle_time|max_lifetime"}`,
//! `poolwatch_pool_max_lifetime_seconds`, `poolwatch_pool_max_idle_time_seconds`,
//! `poolwatch_pool_last_push_timestamp_seconds`,
//! `poolwatch_pool_info{application_name}` (always 1: joins the server view's
//! `application_name` to the pool); and `poolwatch_pools_tracked`,
//! `poolwatch_pools_expired_total`.

use std::sync::Arc;
use std::time::Instant;

use super::{ConstLabels, Family, Spec, View};
use crate::ingest::PoolKey;
use crate::store::{Entry, Store};

const L: &[&str] = &["app", "pool", "app_instance"];

/// The families, in the order [`PoolCollector::families`] fills them.
pub const SPECS: &[Spec] = &[
    Spec {
        name: "poolwatch_pool_max_open_connections",
        help: "Most connections the pool may open, as pushed (absent when unlimited).",
        counter: false,
        labels: L,
    },
    Spec {
        name: "poolwatch_pool_open_connections",
        help: "Connections the pool has open, in use or idle, as pushed.",
        counter: false,
        labels: L,
    },
    Spec {
        name: "poolwatch_pool_in_use_connections",
        help: "Connections checked out of the pool, as pushed.",
        counter: false,
        labels: L,
    },
    Spec {
        name: "poolwatch_pool_idle_connections",
        help: "Connections idle in the pool, as pushed.",
        counter: false,
        labels: L,
    },
    Spec {
        name: "poolwatch_pool_waiting",
        help: "Callers blocked waiting for a connection now, where the client reports it.",
        counter: false,
        labels: L,
    },
    Spec {
        name: "poolwatch_pool_wait_count_total",
        help: "Callers that had to wait for a connection, as pushed.",
        counter: true,
        labels: L,
    },
    Spec {
        name: "poolwatch_pool_wait_duration_seconds_total",
        help: "Total time callers waited for a connection, as pushed.",
        counter: true,
        labels: L,
    },
    Spec {
        name: "poolwatch_pool_closed_total",
        help: "Connections the pool closed, by reason, as pushed.",
        counter: true,
        labels: &["app", "pool", "app_instance", "reason"],
    },
    Spec {
        name: "poolwatch_pool_max_lifetime_seconds",
        help: "The pool's maximum connection lifetime setting.",
        counter: false,
        labels: L,
    },
    Spec {
        name: "poolwatch_pool_max_idle_time_seconds",
        help: "The pool's maximum idle time setting.",
        counter: false,
        labels: L,
    },
    Spec {
        name: "poolwatch_pool_last_push_timestamp_seconds",
        help: "Unix time of the pool's last accepted push.",
        counter: false,
        labels: L,
    },
    Spec {
        name: "poolwatch_pool_info",
        help: "Always 1; the application_name the pool's connections carry on the server, to join the server view to the pool.",
        counter: false,
        labels: &["app", "pool", "app_instance", "application_name"],
    },
    Spec {
        name: "poolwatch_pools_tracked",
        help: "Pools currently tracked (pushed within pools.expiry_seconds).",
        counter: false,
        labels: &[],
    },
    Spec {
        name: "poolwatch_pools_expired_total",
        help: "Pools dropped because they were not pushed within pools.expiry_seconds.",
        counter: true,
        labels: &[],
    },
];

/// Renders the store.
pub struct PoolCollector {
    /// The pools.
    store: Arc<Store>,
    /// The `database` label.
    consts: ConstLabels,
    /// With a `databases` list: the database each pool is attributed to, its `database`
    /// label (`consts` then labels only the store's own series).
    database_of: Option<DatabaseOf>,
}

/// The database a pool is attributed to.
pub type DatabaseOf = Arc<dyn Fn(&PoolKey, &Entry) -> String + Send + Sync>;

impl PoolCollector {
    /// A collector over `store` whose series carry `consts`.
    pub fn new(store: Arc<Store>, consts: ConstLabels) -> PoolCollector {
        PoolCollector {
            store,
            consts,
            database_of: None,
        }
    }

    /// The same collector, each pool's series labelled with the database `database_of`
    /// says.
    pub fn by_database(self, database_of: DatabaseOf) -> PoolCollector {
        PoolCollector {
            database_of: Some(database_of),
            ..self
        }
    }
}

impl View for PoolCollector {
    fn families(&self) -> Vec<Family<'static>> {
        self.store
            .with_sorted(Instant::now(), |pools| self.render(pools))
    }
}

impl PoolCollector {
    fn render(&self, pools: &[(&PoolKey, &Entry)]) -> Vec<Family<'static>> {
        let mut f: Vec<Family> = SPECS
            .iter()
            .map(|s| Family::with_consts(s, &self.consts))
            .collect();
        let n = |v: Option<u64>| v.map(|v| v as f64);
        let per_pool = f.len() - 2;
        for (k, e) in pools {
            if let Some(of) = &self.database_of {
                let consts = ConstLabels::database(Some(&of(k, e)));
                for family in &mut f[..per_pool] {
                    family.set_consts(&consts);
                }
            }
            let l = [k.app.as_str(), k.pool.as_str(), k.instance.as_str()];
            let s = &e.snapshot;
            f[0].add_opt(&l, n(s.max_open));
            f[1].add(&l, s.open as f64);
            f[2].add_opt(&l, n(s.in_use));
            f[3].add_opt(&l, n(s.idle));
            f[4].add_opt(&l, n(s.waiting));
            f[5].add_opt(&l, n(s.wait_count));
            f[6].add_opt(&l, s.wait_duration_seconds);
            for (reason, v) in [
                ("max_idle", s.max_idle_closed),
                ("max_idle_time", s.max_idle_time_closed),
                ("max_lifetime", s.max_lifetime_closed),
            ] {
                f[7].add_opt(&[l[0], l[1], l[2], reason], n(v));
            }
            f[8].add_opt(&l, s.max_lifetime_seconds);
            f[9].add_opt(&l, s.max_idle_time_seconds);
            f[10].add(&l, e.received_unix);
            f[11].add(&[l[0], l[1], l[2], s.application_name.as_str()], 1.0);
        }
        for family in &mut f[per_pool..] {
            family.set_consts(&self.consts);
        }
        f[12].add(&[], pools.len() as f64);
        f[13].add(&[], self.store.expired_total() as f64);
        f
    }
}
