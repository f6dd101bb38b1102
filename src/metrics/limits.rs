//! The role and database connection limits, from the sampler's latest [`ServerState`] at
//! scrape time.
//!
//! Series, only while `poolwatch_pg_up` is 1 and only for limits that are set (at most
//! `database.max_connection_limits` of each kind):
//! `poolwatch_pg_role_connection_limit{database, usename}` (a role's `CONNECTION LIMIT`, superusers
//! left out: the server exempts them) and
//! `poolwatch_pg_database_connection_limit{database, datname}` (`datconnlimit`).

use std::sync::Arc;

use tokio::sync::watch;

use super::{ConstLabels, Family, Spec, View};
use crate::sampler::ServerState;

/// The families, in the order [`LimitCollector::families`] fills them.
pub const SPECS: &[Spec] = &[
    Spec { name: "poolwatch_pg_role_connection_limit", help: "A role's connection limit (ALTER ROLE ... CONNECTION LIMIT), where set; superusers are exempt and not shown.", counter: false, labels: &["usename"] },
    Spec { name: "poolwatch_pg_database_connection_limit", help: "A database's connection limit (datconnlimit), where set.", counter: false, labels: &["datname"] },
];

/// Renders the limits of the latest sample.
pub struct LimitCollector {
    /// The sampler's channel.
    rx: watch::Receiver<Arc<ServerState>>,
    /// The labels every series starts with (the watched database).
    consts: ConstLabels,
}

impl LimitCollector {
    /// A collector over the sampler's channel whose series carry `consts`.
    pub fn new(rx: watch::Receiver<Arc<ServerState>>, consts: ConstLabels) -> LimitCollector {
        LimitCollector { rx, consts }
    }
}

impl View for LimitCollector {
    fn families(&self) -> Vec<Family<'static>> {
        let state = self.rx.borrow().clone();
        let mut f: Vec<Family> = SPECS
            .iter()
            .map(|s| Family::with_consts(s, &self.consts))
            .collect();
        render(&mut f, &state);
        f
    }
}

/// Adds `state`'s series to `f`, the families of [`SPECS`] in order.
pub fn render(f: &mut [Family<'static>], state: &ServerState) {
    if let (true, Some(s)) = (state.up, &state.sample) {
        let l = &s.connection_limits;
        for (family, limits) in [(0, &l.roles), (1, &l.databases)] {
            // Names are never empty in the catalogs; the check keeps the promise.
            for c in limits.iter().filter(|c| !c.name.is_empty()) {
                f[family].add(&[c.name.as_str()], f64::from(c.limit));
            }
        }
    }
}
