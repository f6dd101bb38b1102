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
    /// Idle in `ClientRead` and counted stuck by the evidence (see
    /// [`super::evidence`]); for an application without a pool to compare with, idle
    /// longer than `unaccounted_after_seconds`.
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

/// Why `b` is stuck, if it is. `idle_after` is the least idle age at which an idle
/// backend is listed, `None` when none is.
fn reasons(
    cfg: &AnalysisConfig,
    pools: &[&(PoolKey, Entry)],
    b: &Backend,
    idle_after: Option<f64>,
) -> Vec<StuckReason> {
    let mut r = Vec::new();
    if idle_after.is_some_and(|after| idle_in_client_read(b, 0.0) && b.state_age >= Some(after)) {
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
/// pools, for the lifetime limit. `idle_stuck` says, per application whose pool and
/// server views were compared, how many idle backends the evidence counts as stuck: that
/// many of the oldest idle ones past `idle_in_use_seconds` are listed. Only the selected
/// rows are copied.
pub fn stuck_backends(
    cfg: &AnalysisConfig,
    backends: &[Backend],
    attribution: &Attribution,
    pools: &BTreeMap<AppKey, Vec<&(PoolKey, Entry)>>,
    idle_stuck: &BTreeMap<AppKey, usize>,
) -> BTreeMap<AppKey, Vec<StuckBackend>> {
    let mut out = BTreeMap::new();
    if cfg.top_n == 0 {
        return out;
    }
    let age = |x: &Backend| x.state_age.unwrap_or(f64::NEG_INFINITY);
    for (key, idx) in &attribution.backends {
        let app_pools: &[&(PoolKey, Entry)] = pools.get(key).map(Vec::as_slice).unwrap_or(&[]);
        // Compared: the `n` oldest idle backends are the stuck ones (the evidence counts
        // how many, not which); not compared: those idle longer than a push expiry.
        let idle_after = match idle_stuck.get(key) {
            Some(0) => None,
            Some(&n) => {
                let mut idle: Vec<f64> = idx
                    .iter()
                    .filter_map(|&i| backends.get(i))
                    .filter(|b| idle_in_client_read(b, cfg.idle_in_use_seconds))
                    .map(age)
                    .collect();
                idle.sort_by(|a, b| b.total_cmp(a));
                idle.get(n.min(idle.len()).saturating_sub(1)).copied()
            }
            None => Some(cfg.unaccounted_after_seconds),
        };
        let mut found: Vec<(usize, Vec<StuckReason>)> = idx
            .iter()
            .filter_map(|&i| {
                backends
                    .get(i)
                    .map(|b| (i, reasons(cfg, app_pools, b, idle_after)))
            })
            .filter(|(_, r)| !r.is_empty())
            .collect();
        if found.is_empty() {
            continue;
        }
        found.sort_by(|(a, _), (b, _)| {
            let (a, b) = (&backends[*a], &backends[*b]);
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
