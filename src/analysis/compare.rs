//! Comparison of the three views of one application at one tick.
//!
//! Owns the disagreement counts (unaccounted, checked out but idle, over max lifetime)
//! and the pool sums. It keeps no state: holding a disagreement over time and the pool's
//! exhaustion (which needs the wait counter's history) are [`super::Analyzer`]'s.

use crate::ingest::PoolKey;
use crate::sampler::activity::Backend;
use crate::store::Entry;

use super::attribute::{pool_application_name, truncate_application_name};
use super::AnalysisConfig;

/// One application's views at one tick. Every count is `None` when the views it needs
/// are missing, so an unknown is never shown as zero.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppView {
    /// Backends attributed to the application; `None` without a usable server view.
    pub server: Option<u64>,
    /// Established sockets of the application, from the socket view.
    pub socket: Option<u64>,
    /// Sum of the pools' `open`; `None` when the application pushes no pool.
    pub pool_open: Option<u64>,
    /// Sum of the pools' `in_use` (or `open - idle`); `None` when a pool reports neither.
    pub pool_in_use: Option<u64>,
    /// Sum of the pools' `idle` (or `open - in_use`); `None` when a pool reports neither.
    pub pool_idle: Option<u64>,
    /// Sum of the pools' `max_open`; `None` when a pool is unlimited or there is none.
    pub pool_max_open: Option<u64>,
    /// `max(server, socket) - pool_open`, at least zero; needs pools and one other view.
    pub unaccounted: Option<u64>,
    /// Backends older than their pool's max lifetime plus `lifetime_grace_seconds`;
    /// `None` when no pool of the application reports a lifetime.
    pub over_max_lifetime: Option<u64>,
}

impl AppView {
    /// The largest count any view reports: what the trend follows.
    pub fn connections(&self) -> Option<u64> {
        [self.server, self.socket, self.pool_open]
            .into_iter()
            .flatten()
            .max()
    }
}

/// `Some` sum when every item is `Some` and there is at least one.
fn sum_all(items: impl Iterator<Item = Option<u64>>) -> Option<u64> {
    let mut total: Option<u64> = None;
    for i in items {
        total = Some(total.unwrap_or(0).saturating_add(i?));
    }
    total
}

fn in_use_of(e: &Entry) -> Option<u64> {
    let s = &e.snapshot;
    s.in_use
        .or_else(|| s.idle.map(|i| s.open.saturating_sub(i)))
}

fn idle_of(e: &Entry) -> Option<u64> {
    let s = &e.snapshot;
    s.idle
        .or_else(|| s.in_use.map(|u| s.open.saturating_sub(u)))
}

/// A lifetime setting that limits anything (Go's 0 means unlimited).
fn lifetime_of(e: &Entry) -> Option<f64> {
    e.snapshot
        .max_lifetime_seconds
        .filter(|l| l.is_finite() && *l > 0.0)
}

/// The age beyond which `backend` has outlived its pool's max lifetime (grace included),
/// or `None` when no limit applies. The candidate pools are the application's pools whose
/// `application_name` is the backend's (all of them when none is, as for a backend placed
/// by address); the limit is the longest of their lifetimes, and only when every candidate
/// has one, since an unlimited pool may own the backend.
pub fn lifetime_limit(
    pools: &[&(PoolKey, Entry)],
    backend: &Backend,
    grace_seconds: f64,
) -> Option<f64> {
    let name = truncate_application_name(&backend.application_name);
    let named: Vec<&(PoolKey, Entry)> = pools
        .iter()
        .copied()
        .filter(|(k, e)| pool_application_name(k, e) == name)
        .collect();
    let candidates: &[&(PoolKey, Entry)] = if named.is_empty() { pools } else { &named };
    let mut limit: Option<f64> = None;
    for (_, e) in candidates {
        let l = lifetime_of(e)?;
        limit = Some(limit.map_or(l, |m: f64| m.max(l)));
    }
    limit.map(|l| l + grace_seconds)
}

/// Whether a backend is idle in `ClientRead` for longer than `threshold` seconds: the
/// server's picture of a connection nobody is using.
pub fn idle_in_client_read(b: &Backend, threshold: f64) -> bool {
    b.state == "idle" && b.wait_event == "ClientRead" && b.state_age.is_some_and(|a| a > threshold)
}

/// Whether a backend sits in an open transaction doing nothing for longer than
/// `threshold` seconds (`idle in transaction`, aborted or not).
pub fn idle_in_transaction(b: &Backend, threshold: f64) -> bool {
    b.state.starts_with("idle in transaction") && b.state_age.is_some_and(|a| a > threshold)
}

/// Compares one application's views. `backends` is `None` without a usable server view,
/// else the application's backends (possibly none). Connections checked out but idle are
/// judged by [`super::evidence`], which needs the push times as well.
pub fn compare(
    cfg: &AnalysisConfig,
    pools: &[&(PoolKey, Entry)],
    backends: Option<&[&Backend]>,
    socket: Option<u64>,
) -> AppView {
    let has_pools = !pools.is_empty();
    let pool_open = has_pools.then(|| {
        pools
            .iter()
            .fold(0u64, |a, (_, e)| a.saturating_add(e.snapshot.open))
    });
    let pool_in_use = sum_all(pools.iter().map(|(_, e)| in_use_of(e)));
    let pool_idle = sum_all(pools.iter().map(|(_, e)| idle_of(e)));
    let pool_max_open = sum_all(
        pools
            .iter()
            .map(|(_, e)| e.snapshot.max_open.filter(|m| *m > 0)),
    );
    let server = backends.map(|b| b.len() as u64);
    let unaccounted = match (pool_open, server.max(socket)) {
        (Some(open), Some(seen)) => Some(seen.saturating_sub(open)),
        _ => None,
    };
    let any_lifetime = pools.iter().any(|(_, e)| lifetime_of(e).is_some());
    let over_max_lifetime = match backends {
        Some(bs) if any_lifetime => Some(
            bs.iter()
                .filter(|b| {
                    match (
                        lifetime_limit(pools, b, cfg.lifetime_grace_seconds),
                        b.backend_age,
                    ) {
                        (Some(limit), Some(age)) => age > limit,
                        _ => false,
                    }
                })
                .count() as u64,
        ),
        _ => None,
    };
    AppView {
        server,
        socket,
        pool_open,
        pool_in_use,
        pool_idle,
        pool_max_open,
        unaccounted,
        over_max_lifetime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::PoolSnapshot;
    use std::time::Instant;

    fn pool(name: &str, app_name: &str, s: PoolSnapshot) -> (PoolKey, Entry) {
        (
            PoolKey {
                app: "app".into(),
                pool: name.into(),
                instance: String::new(),
            },
            Entry {
                snapshot: PoolSnapshot {
                    application_name: app_name.into(),
                    ..s
                },
                received: Instant::now(),
                received_unix: 0.0,
            },
        )
    }

    fn b(state: &str, wait: &str, state_age: f64, backend_age: f64) -> Backend {
        Backend {
            application_name: "app".into(),
            state: state.into(),
            wait_event: wait.into(),
            state_age: Some(state_age),
            backend_age: Some(backend_age),
            ..Default::default()
        }
    }

    #[test]
    fn compare_table() {
        let cfg = AnalysisConfig::default();
        let healthy_idle = || b("idle", "ClientRead", 600.0, 100.0);
        let active = || b("active", "", 0.1, 100.0);
        let forgotten = || b("idle", "ClientRead", 900.0, 1000.0);
        let snap = |open, in_use, idle, lifetime: Option<f64>| PoolSnapshot {
            max_open: Some(20),
            open,
            in_use: Some(in_use),
            idle: Some(idle),
            max_lifetime_seconds: lifetime,
            ..Default::default()
        };
        struct Case {
            name: &'static str,
            pools: Vec<(PoolKey, Entry)>,
            backends: Option<Vec<Backend>>,
            socket: Option<u64>,
            want: (Option<u64>, Option<u64>),
        }
        let cases = vec![
            Case {
                name: "healthy pool: long-idle backends are its idle connections",
                pools: vec![pool("p", "", snap(5, 2, 3, Some(1800.0)))],
                backends: Some(vec![
                    healthy_idle(),
                    healthy_idle(),
                    healthy_idle(),
                    active(),
                    active(),
                ]),
                socket: Some(5),
                want: (Some(0), Some(0)),
            },
            Case {
                name: "rows never closed: in use on the pool, idle on the server, old",
                pools: vec![pool("p", "", snap(6, 5, 1, Some(300.0)))],
                backends: Some(vec![
                    healthy_idle(),
                    active(),
                    forgotten(),
                    forgotten(),
                    forgotten(),
                    forgotten(),
                ]),
                socket: None,
                want: (Some(0), Some(4)),
            },
            Case {
                name: "forgotten by the pool: server and socket above open",
                pools: vec![pool("p", "", snap(2, 1, 1, None))],
                backends: Some(vec![active(), healthy_idle(), forgotten(), forgotten()]),
                socket: Some(5),
                want: (Some(3), None),
            },
            Case {
                name: "no server view: socket alone decides unaccounted",
                pools: vec![pool("p", "", snap(2, 1, 1, Some(60.0)))],
                backends: None,
                socket: Some(3),
                want: (Some(1), None),
            },
            Case {
                name: "an unlimited pool sharing the name may own old backends",
                pools: vec![
                    pool("a", "", snap(1, 0, 1, Some(60.0))),
                    pool("b", "", snap(1, 0, 1, None)),
                ],
                backends: Some(vec![forgotten(), forgotten()]),
                socket: None,
                want: (Some(0), Some(0)),
            },
            Case {
                name: "no pools: nothing to compare against",
                pools: vec![],
                backends: Some(vec![forgotten()]),
                socket: Some(1),
                want: (None, None),
            },
        ];
        for c in cases {
            let pools: Vec<&(PoolKey, Entry)> = c.pools.iter().collect();
            let refs: Option<Vec<&Backend>> = c.backends.as_ref().map(|v| v.iter().collect());
            let v = compare(&cfg, &pools, refs.as_deref(), c.socket);
            assert_eq!((v.unaccounted, v.over_max_lifetime), c.want, "{}", c.name);
        }
    }

    #[test]
    fn lifetime_limit_prefers_the_pool_with_the_backends_name() {
        let mk = |n: &str, app_name: &str, l: Option<f64>| {
            pool(
                n,
                app_name,
                PoolSnapshot {
                    open: 1,
                    max_lifetime_seconds: l,
                    ..Default::default()
                },
            )
        };
        let pools = [mk("a", "app", Some(60.0)), mk("b", "app-batch", None)];
        let refs: Vec<&(PoolKey, Entry)> = pools.iter().collect();
        let mut back = b("idle", "ClientRead", 1.0, 1.0);
        assert_eq!(lifetime_limit(&refs, &back, 30.0), Some(90.0));
        back.application_name = "app-batch".into();
        assert_eq!(lifetime_limit(&refs, &back, 30.0), None);
        back.application_name = "elsewhere".into();
        assert_eq!(
            lifetime_limit(&refs, &back, 30.0),
            None,
            "one candidate is unlimited"
        );
    }
}
