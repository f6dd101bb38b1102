//! The server view, from the sampler's latest [`ServerState`] at scrape time.
//!
//! Series (only when a database is configured), each with the label `database`, the
//! watched database's name:
//! `poolwatch_pg_up`; while up, `poolwatch_pg_connections{datname, usename,
//! application_name, state, wait_event_type, wait_event}`,
//! `poolwatch_pg_oldest_backend_age_seconds`, `poolwatch_pg_oldest_state_age_seconds`,
//! `poolwatch_pg_oldest_transaction_age_seconds` (labels `datname, usename,
//! application_name, state`), `poolwatch_pg_max_connections`,
//! `poolwatch_pg_reserved_connections`; and after the first attempt
//! `poolwatch_pg_sample_duration_seconds` and, once a sample succeeded,
//! `poolwatch_pg_last_sample_timestamp_seconds`.

use std::sync::Arc;

use tokio::sync::watch;

use super::{ConstLabels, Family, Spec, View};
use crate::sampler::ServerState;

const CONN: &[&str] = &[
    "datname",
    "usename",
    "application_name",
    "state",
    "wait_event_type",
    "wait_event",
];
const AGE: &[&str] = &["datname", "usename", "application_name", "state"];

/// The families, in the order [`ServerCollector::families`] fills them.
pub const SPECS: &[Spec] = &[
    Spec { name: "poolwatch_pg_up", help: "1 if the last sample of pg_stat_activity succeeded, 0 if not.", counter: false, labels: &[] },
    Spec { name: "poolwatch_pg_connections", help: "Client backends on the server (poolwatch's own excluded), by database, role, application_name, state and wait event.", counter: false, labels: CONN },
    Spec { name: "poolwatch_pg_oldest_backend_age_seconds", help: "Age of the oldest backend in the group (now - backend_start).", counter: false, labels: AGE },
    Spec { name: "poolwatch_pg_oldest_state_age_seconds", help: "Longest time a backend in the group has been in its state (now - state_change).", counter: false, labels: AGE },
    Spec { name: "poolwatch_pg_oldest_transaction_age_seconds", help: "Age of the oldest open transaction in the group (now - xact_start).", counter: false, labels: AGE },
    Spec { name: "poolwatch_pg_max_connections", help: "The server's max_connections.", counter: false, labels: &[] },
    Spec { name: "poolwatch_pg_reserved_connections", help: "Connection slots ordinary roles cannot use (superuser_reserved_connections plus reserved_connections).", counter: false, labels: &[] },
    Spec { name: "poolwatch_pg_sample_duration_seconds", help: "How long the last sample's queries took.", counter: false, labels: &[] },
    Spec { name: "poolwatch_pg_last_sample_timestamp_seconds", help: "Unix time of the last successful sample.", counter: false, labels: &[] },
];

/// Renders the latest [`ServerState`].
pub struct ServerCollector {
    /// The sampler's channel.
    rx: watch::Receiver<Arc<ServerState>>,
    /// The `database` label.
    consts: ConstLabels,
}

impl ServerCollector {
    /// A collector over the sampler's channel whose series carry `consts`.
    pub fn new(rx: watch::Receiver<Arc<ServerState>>, consts: ConstLabels) -> ServerCollector {
        ServerCollector { rx, consts }
    }
}

impl View for ServerCollector {
    fn families(&self) -> Vec<Family<'static>> {
        let state = self.rx.borrow().clone();
        // The role and database limits come from the same sample.
        let mut f: Vec<Family> = SPECS
            .iter()
            .chain(super::limits::SPECS)
            .map(|s| Family::with_consts(s, &self.consts))
            .collect();
        let (server, limits) = f.split_at_mut(SPECS.len());
        render(server, &state);
        super::limits::render(limits, &state);
        f
    }
}

/// Adds `state`'s series to `f`, the families of [`SPECS`] in order.
pub fn render(f: &mut [Family<'static>], state: &ServerState) {
    {
        f[0].add(&[], if state.up { 1.0 } else { 0.0 });
        if let (true, Some(s)) = (state.up, &state.sample) {
            for (k, n) in &s.aggregates.connections {
                let l = [
                    k.datname.as_str(),
                    k.usename.as_str(),
                    k.application_name.as_str(),
                    k.state.as_str(),
                    k.wait_event_type.as_str(),
                    k.wait_event.as_str(),
                ];
                f[1].add(&l, *n as f64);
            }
            for (k, a) in &s.aggregates.ages {
                let l = [
                    k.datname.as_str(),
                    k.usename.as_str(),
                    k.application_name.as_str(),
                    k.state.as_str(),
                ];
                f[2].add_opt(&l, a.backend);
                f[3].add_opt(&l, a.state);
                f[4].add_opt(&l, a.transaction);
            }
            f[5].add(&[], s.limits.max_connections as f64);
            f[6].add(&[], s.limits.reserved_connections as f64);
        }
        f[7].add_opt(&[], state.last_duration_seconds);
        f[8].add_opt(&[], state.last_success_unix);
    }
}
