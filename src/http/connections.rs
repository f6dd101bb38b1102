//! `GET /api/v1/connections`: the oldest stuck backends per application, as the last
//! analysis tick found them. This is how a user finds the query whose rows were never
//! closed: pid, client address, state, wait event, ages and the query's fingerprint.
//!
//! Optional query parameters `app` and `database` keep one application and one database
//! (with a `databases` list, each application is listed per database its pools are
//! attributed to, `database` naming it). The list per application is
//! bounded by `analysis.top_n`; the query text is a fingerprint unless
//! `database.query_text` is `full`.

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use std::sync::Arc;

use super::{json, json_error, Body, Ctx};
use crate::analysis::Findings;
use crate::tick::Report;

/// Renders the latest report's stuck connections.
pub fn get(ctx: &Ctx, query: Option<&str>) -> Response<Body> {
    let mut app_filter = None;
    let mut database_filter = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("app", v)) => app_filter = Some(crate::percent_decode(v)),
            Some(("database", v)) => database_filter = Some(crate::percent_decode(v)),
            _ => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "unknown query parameter (expected app, database)",
                    Some(pair.split('=').next().unwrap_or(pair)),
                )
            }
        }
    }
    // The reports: one per database of the list (and the unattributed pools'), or the
    // one analysis.
    let reports: Vec<(Option<String>, Arc<Report>)> = match &ctx.fleet {
        Some(fleet) => fleet
            .reports()
            .into_iter()
            .map(|(name, report)| (Some(name), report))
            .collect(),
        None => vec![(ctx.database_label.clone(), ctx.reports.borrow().clone())],
    };
    let mut at: Option<f64> = None;
    let mut apps = Vec::new();
    for (database, report) in &reports {
        if database_filter.is_some() && database_filter != *database {
            continue;
        }
        let Some(findings) = &report.findings else {
            continue;
        };
        at = Some(at.map_or(findings.at_unix, |a: f64| a.max(findings.at_unix)));
        list(
            &mut apps,
            database.as_deref(),
            findings,
            app_filter.as_deref(),
        );
    }
    json(StatusCode::OK, &json!({ "at": at, "applications": apps }))
}

/// Adds the applications of `findings` (only `app` when given) to `apps`.
fn list(apps: &mut Vec<Value>, database: Option<&str>, findings: &Findings, app: Option<&str>) {
    for (key, finding) in &findings.apps {
        if app.is_some_and(|a| a != key.app) {
            continue;
        }
        let stuck = findings.stuck.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let connections: Vec<Value> = stuck
            .iter()
            .map(|s| {
                let b = &s.backend;
                json!({
                    "pid": b.pid,
                    "application_name": b.application_name,
                    "client_addr": b.client_addr,
                    "datname": b.datname,
                    "usename": b.usename,
                    "state": b.state,
                    "wait_event_type": b.wait_event_type,
                    "wait_event": b.wait_event,
                    "backend_age_seconds": b.backend_age,
                    "transaction_age_seconds": b.xact_age,
                    "state_age_seconds": b.state_age,
                    "query": b.query,
                    "reasons": s.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        apps.push(json!({
            "database": database,
            "app": key.app,
            "instance": key.instance,
            "leak_suspected": finding.leak_suspected,
            "reasons": finding.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "connections": connections,
        }));
    }
}
