//! The per-application join and the socket view, from the analysis task's latest
//! [`Report`] at scrape time.
//!
//! Series, labels `database` (the watched database, when known), `app` and
//! `app_instance` (the pod in sidecar mode, absent in central mode); a view that is not
//! available has no series:
//! `poolwatch_app_connections` (the largest of the views: what the trend follows),
//! `poolwatch_app_server_connections`, `poolwatch_app_socket_connections`,
//! `poolwatch_app_pool_open_connections`, `poolwatch_app_pool_in_use_connections`,
//! `poolwatch_app_pool_max_open_connections`,
//! `poolwatch_app_unaccounted_connections`, `poolwatch_app_idle_in_use_connections`,
//! `poolwatch_app_over_max_lifetime_connections`, `poolwatch_app_stuck_connections`,
//! `poolwatch_app_stuck_connection_seconds`, `poolwatch_app_pool_exhausted`,
//! `poolwatch_app_connection_growth_per_second`,
//! `poolwatch_app_exhaustion_eta_seconds{limit="pool"}` and one server-side series whose
//! `limit` is the first reached of `server`, `role` and `database` (absent when not
//! climbing), `poolwatch_app_leak_suspected`, `poolwatch_app_leak_reason{reason}`;
//! `poolwatch_socket_connections{app_instance, peer, state}`; and
//! `poolwatch_analysis_tracked_apps`, `poolwatch_analysis_last_tick_timestamp_seconds`.

use std::sync::Arc;

use tokio::sync::watch;

use super::{ConstLabels, Family, Spec, View};
use crate::analysis::Reason;
use crate::tick::Report;

const L: &[&str] = &["app", "app_instance"];

/// The families, in the order [`AppCollector::families`] fills them.
pub const SPECS: &[Spec] = &[
    Spec { name: "poolwatch_app_connections", help: "Connections of the application: the largest of its server, socket and pool counts (what the trend follows).", counter: false, labels: L },
    Spec { name: "poolwatch_app_server_connections", help: "Server backends attributed to the application.", counter: false, labels: L },
    Spec { name: "poolwatch_app_socket_connections", help: "Established TCP connections from the application's pod to the database (sidecar mode).", counter: false, labels: L },
    Spec { name: "poolwatch_app_pool_open_connections", help: "Sum of the application's pools' open connections.", counter: false, labels: L },
    Spec { name: "poolwatch_app_pool_in_use_connections", help: "Sum of the application's pools' connections in use.", counter: false, labels: L },
    Spec { name: "poolwatch_app_pool_max_open_connections", help: "Sum of the application's pools' maximum (absent when any pool is unlimited).", counter: false, labels: L },
    Spec { name: "poolwatch_app_unaccounted_connections", help: "Server or socket connections above the pools' open count: connections no pool accounts for.", counter: false, labels: L },
    Spec { name: "poolwatch_app_idle_in_use_connections", help: "Connections checked out of the pool (as of its latest push) that the server has had idle in ClientRead since before that push, for longer than analysis.idle_in_use_seconds: checked out and forgotten.", counter: false, labels: L },
    Spec { name: "poolwatch_app_over_max_lifetime_connections", help: "Backends older than the pool's max lifetime plus analysis.lifetime_grace_seconds: never returned to the pool.", counter: false, labels: L },
    Spec { name: "poolwatch_app_stuck_connections", help: "Connections the application holds without using them, past their floor: checked out and idle, idle in no pool, or idle in a transaction.", counter: false, labels: L },
    Spec { name: "poolwatch_app_stuck_connection_seconds", help: "Stuck connection-seconds beyond the floors: the leak test's evidence; a leak is called at analysis.stuck_connection_seconds.", counter: false, labels: L },
    Spec { name: "poolwatch_app_pool_exhausted", help: "1 when a pool of the application is at its maximum with callers waiting more.", counter: false, labels: L },
    Spec { name: "poolwatch_app_connection_growth_per_second", help: "Growth of the application's connections: the robust (Theil-Sen) trend over the trend span, or the rate its stuck connections accumulated at once they are conclusive, whichever is faster.", counter: false, labels: L },
    Spec { name: "poolwatch_app_exhaustion_eta_seconds", help: "Time until a limit is reached at the current growth (absent when not climbing): limit=pool the pools' maximum; on the server the first reached of limit=server (usable connections), limit=role (the role's connection limit) and limit=database (the database's).", counter: false, labels: &["app", "app_instance", "limit"] },
    Spec { name: "poolwatch_app_leak_suspected", help: "1 when the evidence says the application leaks connections.", counter: false, labels: L },
    Spec { name: "poolwatch_app_leak_reason", help: "1 for each kind of evidence behind poolwatch_app_leak_suspected.", counter: false, labels: &["app", "app_instance", "reason"] },
    Spec { name: "poolwatch_socket_connections", help: "TCP connections from this pod to each configured database endpoint, by state (sidecar mode).", counter: false, labels: &["app_instance", "peer", "state"] },
    Spec { name: "poolwatch_analysis_tracked_apps", help: "Applications with history in the analysis.", counter: false, labels: &[] },
    Spec { name: "poolwatch_analysis_last_tick_timestamp_seconds", help: "Unix time of the last analysis tick.", counter: false, labels: &[] },
];

/// Renders the latest [`Report`].
pub struct AppCollector {
    /// The analysis task's channel.
    rx: watch::Receiver<Arc<Report>>,
    /// The `database` label.
    consts: ConstLabels,
}

impl AppCollector {
    /// A collector over the analysis task's channel whose series carry `consts`.
    pub fn new(rx: watch::Receiver<Arc<Report>>, consts: ConstLabels) -> AppCollector {
        AppCollector { rx, consts }
    }
}

impl View for AppCollector {
    fn families(&self) -> Vec<Family<'static>> {
        let report = self.rx.borrow().clone();
        let mut f: Vec<Family> = SPECS
            .iter()
            .map(|s| Family::with_consts(s, &self.consts))
            .collect();
        render(&mut f, &report);
        f
    }
}

/// Adds `report`'s series to `f`, the families of [`SPECS`] in order.
pub fn render(f: &mut [Family<'static>], report: &Report) {
    {
        let n = |v: Option<u64>| v.map(|v| v as f64);
        // Series in label order, as the registry would sort them.
        let mut reasons = Reason::ALL;
        reasons.sort_by_key(|r| r.as_str());
        if let Some(findings) = &report.findings {
            for (k, a) in &findings.apps {
                let l = [k.app.as_str(), k.instance.as_str()];
                f[0].add(&l, a.connections as f64);
                f[1].add_opt(&l, n(a.server_connections));
                f[2].add_opt(&l, n(a.socket_connections));
                f[3].add_opt(&l, n(a.pool_open_connections));
                f[4].add_opt(&l, n(a.pool_in_use_connections));
                f[5].add_opt(&l, n(a.pool_max_open_connections));
                f[6].add_opt(&l, n(a.unaccounted));
                f[7].add_opt(&l, n(a.idle_in_use));
                f[8].add_opt(&l, n(a.over_max_lifetime));
                f[9].add_opt(&l, n(a.stuck_connections));
                f[10].add_opt(&l, a.stuck_connection_seconds);
                f[11].add(&l, if a.exhausted { 1.0 } else { 0.0 });
                f[12].add_opt(&l, a.growth_per_second);
                // Series in label order: `database` sorts before `pool`.
                let server = a.eta_server_limit.as_str();
                if server < "pool" {
                    f[13].add_opt(&[l[0], l[1], server], a.eta_server_seconds);
                }
                f[13].add_opt(&[l[0], l[1], "pool"], a.eta_pool_seconds);
                if server > "pool" {
                    f[13].add_opt(&[l[0], l[1], server], a.eta_server_seconds);
                }
                f[14].add(&l, if a.leak_suspected { 1.0 } else { 0.0 });
                for r in reasons {
                    f[15].add(
                        &[l[0], l[1], r.as_str()],
                        if a.reasons.contains(&r) { 1.0 } else { 0.0 },
                    );
                }
            }
            f[17].add(&[], findings.tracked_apps as f64);
            f[18].add(&[], findings.at_unix);
        }
        for p in report.sockets.iter().flatten() {
            for (state, count) in &p.states {
                f[16].add(
                    &[report.instance.as_str(), p.peer.as_str(), state],
                    *count as f64,
                );
            }
        }
    }
}
