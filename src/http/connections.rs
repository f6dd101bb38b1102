//! `GET /api/v1/connections`: the oldest stuck backends per application, as the last
//! analysis tick found them. This is how a user finds the query whose rows were never
//! closed: pid, client address, state, wait event, ages and the query's fingerprint.
//!
//! Optional query parameter `app` keeps one application. The list per application is
//! bounded by `analysis.top_n`; the query text is a fingerprint unless
//! `database.query_text` is `full`.

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::{json, json_error, Body, Ctx};

/// Renders the latest report's stuck connections.
pub fn get(ctx: &Ctx, query: Option<&str>) -> Response<Body> {
    let mut app_filter = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("app", v)) => app_filter = Some(crate::percent_decode(v)),
            _ => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    "unknown query parameter (expected app)",
                    Some(pair.split('=').next().unwrap_or(pair)),
                )
            }
        }
    }
    let report = ctx.reports.borrow().clone();
    let Some(findings) = &report.findings else {
        return json(
            StatusCode::OK,
            &json!({ "at": Value::Null, "applications": [] }),
        );
    };
    let mut apps = Vec::new();
    for (key, finding) in &findings.apps {
        if app_filter.as_deref().is_some_and(|a| a != key.app) {
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
            "app": key.app,
            "instance": key.instance,
            "leak_suspected": finding.leak_suspected,
            "reasons": finding.reasons.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "connections": connections,
        }));
    }
    json(
        StatusCode::OK,
        &json!({ "at": findings.at_unix, "applications": apps }),
    )
}
