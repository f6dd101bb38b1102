//! Stuck-connection evidence: how many connections an application holds without using
//! them, for how long, and how fast they accumulate.
//!
//! Owns the leak test that decides as fast as its evidence is strong (see
//! `docs/detection.md`). It keeps no state: the server's own timestamps
//! (`state_change`) are the history, so one sample says how long every stuck connection
//! has been stuck, and holding the evidence over ticks is not needed.
//!
//! # Which connections are stuck
//!
//! A connection is *stuck* when the application holds it and does nothing with it:
//!
//! - **idle in `ClientRead` and not in the pool's idle list**: the server has waited for
//!   the client since before the application's latest push, and that push still counted
//!   more connections in use (or open) than the server shows working. The pool's own idle
//!   connections are set aside first, as if they were the oldest idle backends (the
//!   assumption that counts fewest). Those left over are either checked out and forgotten
//!   ([`Kind::IdleInUse`], as many as the pool's `in_use` minus the backends doing work
//!   can hold) or in no pool at all ([`Kind::Unaccounted`], the rest: a pool per request,
//!   driver connections beside the pool, a pool that lost track of them).
//! - **idle in a transaction** ([`Kind::IdleInTransaction`]): the server alone knows it.
//!
//! Each kind counts only once it has lasted its floor: `idle_in_use_seconds` for checked
//! out, `unaccounted_after_seconds` (the push expiry: a pod that has not pushed for that
//! long is not pushing) for connections in no pool, and `idle_in_transaction_seconds`.
//! Where it is unknown which idle connections are checked out and which are in no pool,
//! the longer floor is given to the youngest, again counting fewest.
//!
//! # The test
//!
//! The evidence is the stuck connection-seconds beyond the floors,
//! `E = Σ (age − floor)`, and a leak is called when `E ≥ stuck_connection_seconds`. It is
//! the log-likelihood ratio of a sequential probability ratio test: if a healthy
//! application returns a checked-out connection at a rate λ (about once per query), the
//! chance that it still holds one after `a` more seconds is `e^(−λa)`, while a leaked
//! connection is never returned; over independent connections the logarithm of the ratio
//! of the two likelihoods is `λ·E`. A fixed threshold on `E` is therefore a fixed bound on
//! the false-alarm probability (Wald: `α ≤ e^(−λ·threshold)`), whatever mix of many young
//! or few old stuck connections produced it: sixty connections stuck for ten seconds
//! beyond their floor weigh as much as one stuck for ten minutes.
//!
//! # How fast they accumulate
//!
//! The stuck connections' start times are the leak's own history: the rate is the
//! Theil-Sen slope of their count against the time each became stuck (one connection:
//! one over its age), available from the first sample, so the time to exhaustion is known
//! as soon as the verdict is.

use crate::ingest::PoolKey;
use crate::sampler::activity::Backend;
use crate::store::Entry;

use super::compare::{idle_in_client_read, idle_in_transaction};
use super::trend::theil_sen;
use super::AnalysisConfig;

/// A kind of stuck connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Checked out of the pool, idle on the server.
    IdleInUse,
    /// Idle on the server, in no pool that pushes.
    Unaccounted,
    /// Idle inside an open transaction.
    IdleInTransaction,
}

/// One application's stuck connections at one sample.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    /// Whether the pool and server views could be compared (every pool reports what is
    /// in use and idle, and the server view is there): only then are idle connections
    /// judged.
    pub compared: bool,
    /// Stuck connections past their floor, checked out and idle.
    pub idle_in_use: u64,
    /// Stuck connections past their floor, in no pool.
    pub unaccounted: u64,
    /// Stuck connections past their floor, idle in a transaction.
    pub idle_in_transaction: u64,
    /// Stuck connection-seconds beyond the floors: the test statistic.
    pub connection_seconds: f64,
    /// Connections per second at which the stuck connections accumulated; `None` with
    /// none.
    pub rate_per_second: Option<f64>,
    /// Backends opened before the latest push beyond the pools' `open` at that push: in
    /// no pool for certain, whatever they do (a pool's idle connections may hide stuck
    /// ones from the test above; these counts cannot be hidden). Zero unless compared.
    pub in_no_pool: u64,
}

impl Evidence {
    /// Stuck connections of every kind.
    pub fn stuck(&self) -> u64 {
        self.idle_in_use + self.unaccounted + self.idle_in_transaction
    }

    /// The kinds present, in [`Kind`] order.
    pub fn kinds(&self) -> impl Iterator<Item = Kind> + '_ {
        [
            (Kind::IdleInUse, self.idle_in_use),
            (Kind::Unaccounted, self.unaccounted),
            (Kind::IdleInTransaction, self.idle_in_transaction),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, _)| k)
    }
}

/// The pools' latest push (the oldest of them), the open, in-use and idle sums, or `None` when
/// a pool reports neither `in_use` nor `idle`.
fn pool_view(pools: &[&(PoolKey, Entry)]) -> Option<(f64, u64, u64, u64)> {
    let mut anchor = f64::INFINITY;
    let (mut open, mut in_use, mut idle) = (0u64, 0u64, 0u64);
    for (_, e) in pools {
        let s = &e.snapshot;
        let (u, i) = match (s.in_use, s.idle) {
            (Some(u), Some(i)) => (u, i),
            (Some(u), None) => (u, s.open.saturating_sub(u)),
            (None, Some(i)) => (s.open.saturating_sub(i), i),
            (None, None) => return None,
        };
        open = open.saturating_add(s.open);
        in_use = in_use.saturating_add(u);
        idle = idle.saturating_add(i);
        anchor = anchor.min(e.received_unix);
    }
    anchor.is_finite().then_some((anchor, open, in_use, idle))
}

/// Judges one application's backends at a sample taken at `at_unix`. `pools` are the
/// application's pools (possibly none); `ages` is a reused buffer.
pub fn assess(
    cfg: &AnalysisConfig,
    pools: &[&(PoolKey, Entry)],
    backends: &[&Backend],
    at_unix: f64,
    ages: &mut Vec<(f64, f64)>,
) -> Evidence {
    let mut ev = Evidence::default();
    // (age, floor) of every stuck connection past its floor.
    ages.clear();
    for b in backends {
        if let Some(age) = b.state_age {
            if idle_in_transaction(b, cfg.idle_in_transaction_seconds) {
                ages.push((age, cfg.idle_in_transaction_seconds));
                ev.idle_in_transaction += 1;
            }
        }
    }
    if let Some((anchor, open, in_use, pool_idle)) = pool_view(pools) {
        ev.compared = true;
        let older = backends
            .iter()
            .filter(|b| b.backend_age.is_some_and(|age| at_unix - age <= anchor))
            .count() as u64;
        ev.in_no_pool = older.saturating_sub(open);
        // Backends doing anything but waiting idle (in a transaction included) are
        // checked out, so at most `in_use` minus them can be checked out and idle.
        let busy = backends.iter().filter(|b| b.state != "idle").count() as u64;
        // Idle since before the latest push: that push saw them idle too.
        let mut idle: Vec<f64> = backends
            .iter()
            .filter(|b| idle_in_client_read(b, 0.0))
            .filter_map(|b| b.state_age)
            .filter(|age| at_unix - age <= anchor)
            .collect();
        idle.sort_by(|a, b| b.total_cmp(a));
        let held = &idle[(pool_idle.min(idle.len() as u64) as usize)..];
        let checked_out = in_use.saturating_sub(busy).min(held.len() as u64) as usize;
        for (i, &age) in held.iter().enumerate() {
            let (floor, count) = if i < checked_out {
                (cfg.idle_in_use_seconds, &mut ev.idle_in_use)
            } else {
                (cfg.unaccounted_after_seconds, &mut ev.unaccounted)
            };
            if age >= floor {
                ages.push((age, floor));
                *count += 1;
            }
        }
    }
    ev.connection_seconds = ages
        .iter()
        .fold(0.0, |sum, (age, floor)| sum + (age - floor).max(0.0));
    ev.rate_per_second = rate(ages, at_unix);
    ev
}

/// The rate at which the connections of `ages` became stuck: the Theil-Sen slope of their
/// cumulative count against the time each became stuck; one over the age for one.
fn rate(ages: &[(f64, f64)], at_unix: f64) -> Option<f64> {
    match ages {
        [] => None,
        [(age, _)] => (*age > 0.0).then(|| 1.0 / age),
        _ => {
            let mut since: Vec<f64> = ages.iter().map(|(age, _)| at_unix - age).collect();
            since.sort_by(f64::total_cmp);
            let points: Vec<(f64, f64)> = since
                .iter()
                .enumerate()
                .map(|(i, &t)| (t, (i + 1) as f64))
                .collect();
            let mut scratch = Vec::new();
            theil_sen(&points, &mut scratch).filter(|r| r.is_finite() && *r > 0.0)
        }
    }
}
