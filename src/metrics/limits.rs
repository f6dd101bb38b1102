//! The role and database connection limits, rendered by the server view
//! ([`super::server::ServerCollector`]) from the same sample.
//!
//! Series, only while `poolwatch_pg_up` is 1 and only for limits that are set (at most
//! `database.max_connection_limits` of each kind):
//! `poolwatch_pg_role_connection_limit{database, usename}` (a role's `CONNECTION LIMIT`, superusers
//! left out: the server exempts them) and
//! `poolwatch_pg_database_connection_limit{database, datname}` (`datconnlimit`).

use super::{Family, Spec};
use crate::sampler::ServerState;

/// The families, in the order [`render`] fills them.
pub const SPECS: &[Spec] = &[
    Spec { name: "poolwatch_pg_role_connection_limit", help: "A role's connection limit (ALTER ROLE ... CONNECTION LIMIT), where set; superusers are exempt and not shown.", counter: false, labels: &["usename"] },
    Spec { name: "poolwatch_pg_database_connection_limit", help: "A database's connection limit (datconnlimit), where set.", counter: false, labels: &["datname"] },
];

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
