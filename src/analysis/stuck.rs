//! Stuck-connection forensics: the oldest stuck backends of each application.
//!
//! Owns what "stuck" means and the bounded top-N selection. Each listed row is the
//! server's [`Backend`] as sampled, so it carries whatever the sampler put in its `query`
//! field (a fingerprint by default); fingerprinting and serving
//! `GET /api/v1/connections` are not done here.

use std::collections::BTreeMap;

use crate::ingest::PoolKey;
use crate::sampler::activity::Backend;
use crate::store::Entry;

use super::attribute::{AppKey, Attribution};
use super::compare::{idle_in_client_read, idle_in_transaction, lifetime_limit};
use super::AnalysisConfig;

/// Why a backend is listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StuckReason {
    /// Idle in `ClientRead` for longer than `idle_in_use_seconds`.
    IdleInClientRead,
    /// `idle in transaction` for longer than `idle_in_transaction_seconds`.
    IdleInTransaction,
    /// Older than its pool's max lifetime plus `lifetime_grace_seconds`.
    OverMaxLifetime,
}

impl StuckReason {
    /// A fixed string for APIs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            StuckReason::IdleInClientRead => "idle_in_client_read",
            StuckReason::IdleInTransaction => "idle_in_transaction",
            StuckReason::OverMaxLifetime => "over_max_lifetime",
        }
    }
}

/// One stuck backend and why it is listed.
#[derive(Clone, Debug, PartialEq)]
pub struct StuckBackend {
    /// The server's row (pid, addresses, state, wait event, ages).
    pub backend: Backend,
    /// Every reason that applies, in [`StuckReason`] order.
    pub reasons: Vec<StuckReason>,
}

/// Why `b` is stuck, if it is.
fn reasons(cfg: &AnalysisConfig, pools: &[&(PoolKey, Entry)], b: &Backend) -> Vec<StuckReason> {
    let mut r = Vec::new();
    if idle_in_client_read(b, cfg.idle_in_use_seconds) {
        r.push(StuckReason::IdleInClientRead);
    }
    if idle_in_transaction(b, cfg.idle_in_transaction_seconds) {
        r.push(StuckReason::IdleInTransaction);
    }
    if let (Some(limit), Some(age)) = (
        lifetime_limit(pools, b, cfg.lifetime_grace_seconds),
        b.backend_age,
    ) {
        if age > limit {
            r.push(StuckReason::OverMaxLifetime);
        }
    }
    r
}

/// The `cfg.top_n` stuck backends of each application with any, oldest state first
/// (longest `state_age`; unknown ages last; ties by pid). `pools` are each application's
/// pools, for the lifetime limit. Only the selected rows are copied.
pub fn stuck_backends(
    cfg: &AnalysisConfig,
    backends: &[Backend],
    attribution: &Attribution,
    pools: &BTreeMap<AppKey, Vec<&(PoolKey, Entry)>>,
) -> BTreeMap<AppKey, Vec<StuckBackend>> {
    let mut out = BTreeMap::new();
    if cfg.top_n == 0 {
        return out;
    }
    for (key, idx) in &attribution.backends {
        let app_pools: &[&(PoolKey, Entry)] = pools.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let mut found: Vec<(usize, Vec<StuckReason>)> = idx
            .iter()
            .filter_map(|&i| backends.get(i).map(|b| (i, reasons(cfg, app_pools, b))))
            .filter(|(_, r)| !r.is_empty())
            .collect();
        if found.is_empty() {
            continue;
        }
        found.sort_by(|(a, _), (b, _)| {
            let (a, b) = (&backends[*a], &backends[*b]);
            let age = |x: &Backend| x.state_age.unwrap_or(f64::NEG_INFINITY);
            age(b).total_cmp(&age(a)).then(a.pid.cmp(&b.pid))
        });
        found.truncate(cfg.top_n);
        let list = found
            .into_iter()
            .map(|(i, reasons)| StuckBackend {
                backend: backends[i].clone(),
                reasons,
            })
            .collect();
        out.insert(key.clone(), list);
    }
    out
}
