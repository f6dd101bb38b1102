//! One application on two databases, in one scrape job: the label model end to end.
//!
//! Two real throwaway PostgreSQL clusters, each watched by its own central poolwatch; the
//! same application, `billing`, leaks connections on both (checked out and never
//! returned: idle in `ClientRead` on the server, in use in the pushed pool) and pushes its
//! pool to each poolwatch. Two real Prometheus servers scrape both poolwatches in ONE job
//! named `poolwatch`, one with `honor_labels: true`, one with `honor_labels: false`, and
//! evaluate the shipped rules (`alerts/poolwatch.rules.yaml`, unchanged). In both:
//!
//! - `billing`'s application and pool series are two distinct series, one per database
//!   (`database` = each cluster's `127.0.0.1:PORT`), each with the value of its own
//!   database and the target's `instance`, never an `exported_instance`;
//! - the pushed replica is `app_instance` on the pool series;
//! - the leak alerts fire once per database, and their rendered descriptions (as
//!   Prometheus' `/api/v1/alerts` gives them) name the application and the database, with
//!   no empty label and no "unknown" left by a join that found nothing.
//!
//! Shortened for a test, and only here: poolwatch samples and analyses every 0.5 s and
//! calls a leak at 6 stuck connection-seconds (`analysis.stuck_connection_seconds`, 300
//! by default) after 1 s idle while checked out (`idle_in_use_seconds`, 10 by default);
//! Prometheus scrapes and evaluates every second (the chart's default is 30 s). The rules
//! are the shipped file; the alert used, `PoolwatchConnectionExhaustionPredicted`, has no
//! `for`, so it fires at the first evaluation that sees the verdict.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::prometheus::Prometheus;
use common::{require_tool, Daemon, Pg};
use serde_json::Value;

const APP: &str = "billing";
const POD: &str = "billing-7f9c-x2";
const ALERT: &str = "PoolwatchConnectionExhaustionPredicted";

/// A central poolwatch watching `pg`, at the shortened settings of the module doc.
async fn central(pg: &Pg) -> Daemon {
    Daemon::start(&format!(
        "database:\n  url: {}\n  interval_seconds: 0.5\n  statement_timeout_seconds: 0.5\n  lock_timeout_seconds: 0.1\n\
         analysis:\n  interval_seconds: 0.5\n  window_seconds: 60\n  idle_in_use_seconds: 1\n  stuck_connection_seconds: 6\n",
        pg.url()
    ))
    .await
}

/// One job, both poolwatches, the shipped rules; `honor` is `honor_labels`.
fn prometheus(bin: &Path, honor: bool, targets: [&Daemon; 2]) -> Prometheus {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/poolwatch.rules.yaml");
    Prometheus::start(
        bin,
        &format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: poolwatch\n    honor_labels: {honor}\n    static_configs:\n      - targets: [\"{}\", \"{}\"]\n",
            rules.display(),
            targets[0].addr,
            targets[1].addr
        ),
    )
}

/// The application's pool, as it would push it: `held` connections open and in use, of
/// at most `cap`.
async fn push(d: &Daemon, held: usize, cap: usize) {
    let r = d
        .push(
            &format!("/api/v1/pools/{APP}/primary?instance={POD}"),
            &format!(r#"{{"max_open":{cap},"open":{held},"in_use":{held},"idle":0}}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Every label of a result's `metric`, as `name=value`, for messages.
fn show(results: &[Value]) -> String {
    results
        .iter()
        .map(|r| format!("{} {}", r["metric"], r["value"][1]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The checks of the module doc against one Prometheus; returns the two rendered
/// descriptions, by database.
async fn check(prom: &Prometheus, honor: bool, dbs: [(&str, &Daemon, usize); 2]) -> Vec<String> {
    let what = format!("honor_labels: {honor}");
    // Application series: one per database, each with its own value and target.
    let apps = prom
        .instant(&format!(
            r#"poolwatch_app_pool_in_use_connections{{app="{APP}"}}"#
        ))
        .await;
    assert_eq!(
        apps.len(),
        2,
        "{what}: one series per database:\n{}",
        show(&apps)
    );
    for (db, d, held) in dbs {
        let s = apps
            .iter()
            .find(|r| r["metric"]["database"] == db)
            .unwrap_or_else(|| panic!("{what}: no series for {db}:\n{}", show(&apps)));
        assert_eq!(s["metric"]["instance"], d.addr.to_string(), "{what}: {s}");
        assert_eq!(s["metric"]["job"], "poolwatch", "{what}: {s}");
        assert_eq!(
            s["value"][1],
            held.to_string(),
            "{what}: {db}'s own value: {s}"
        );
        let names: BTreeSet<&str> = s["metric"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            names,
            ["__name__", "app", "database", "instance", "job"].into(),
            "{what}: a central poolwatch's application series: {s}"
        );
    }
    // Pool series: the replica as app_instance, the target's instance kept.
    let pools = prom
        .instant(&format!(
            r#"poolwatch_pool_in_use_connections{{app="{APP}"}}"#
        ))
        .await;
    assert_eq!(pools.len(), 2, "{what}:\n{}", show(&pools));
    for p in &pools {
        assert_eq!(p["metric"]["app_instance"], POD, "{what}: {p}");
        assert!(p["metric"]["exported_instance"].is_null(), "{what}: {p}");
        assert!(
            dbs.iter().any(|(db, d, _)| p["metric"]["database"] == *db
                && p["metric"]["instance"] == d.addr.to_string()),
            "{what}: {p}"
        );
    }
    // The server view joins to the application by the pool's application_name.
    let joined = prom
        .instant(
            r#"sum by (job, instance, database, application_name) (poolwatch_pg_connections)
                 * on (job, instance, database, application_name) group_left (app)
               group by (job, instance, database, application_name, app) (poolwatch_pool_info)"#,
        )
        .await;
    let joined: Vec<&Value> = joined
        .iter()
        .filter(|r| r["metric"]["app"] == APP)
        .collect();
    assert_eq!(joined.len(), 2, "{what}: {joined:?}");

    // The alert, rendered by Prometheus.
    let alerts = prom.api("/api/v1/alerts").await;
    let ours: Vec<&Value> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["labels"]["alertname"] == ALERT && a["labels"]["app"] == APP)
        .collect();
    let mut texts = Vec::new();
    for (db, d, _) in dbs {
        let a = ours
            .iter()
            .find(|a| a["labels"]["database"] == db)
            .unwrap_or_else(|| panic!("{what}: no {ALERT} for {db}: {ours:?}"));
        assert_eq!(a["labels"]["instance"], d.addr.to_string(), "{what}: {a}");
        for (k, v) in a["labels"].as_object().unwrap() {
            assert!(
                !v.as_str().unwrap_or("").is_empty(),
                "{what}: label {k} empty: {a}"
            );
        }
        let text = a["annotations"]["description"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            text.starts_with(&format!("{APP} on {db} ")),
            "{what}: the description names the application and its database: {text}"
        );
        for gap in ["unknown", " on  ", "()", "<no value>", "  "] {
            assert!(!text.contains(gap), "{what}: {gap:?} in {text}");
        }
        texts.push(text);
    }
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_application_on_two_databases_in_one_job_gives_two_series_and_complete_alerts() {
    let Some(bin) = require_tool("prometheus") else {
        return;
    };
    let pgs = [Pg::start(), Pg::start()];
    let ds = [central(&pgs[0]).await, central(&pgs[1]).await];
    let names = [pgs[0].database(), pgs[1].database()];
    // A different leak on each: 4 and 7 connections, so each series has its own value.
    let caps = [4, 7];
    let proms = [
        prometheus(&bin, true, [&ds[0], &ds[1]]),
        prometheus(&bin, false, [&ds[0], &ds[1]]),
    ];
    for p in &proms {
        p.wait_ready().await;
    }

    let mut held: [Vec<tokio_postgres::Client>; 2] = [Vec::new(), Vec::new()];
    let started = Instant::now();
    let mut fired = [false; 2];
    while !fired.iter().all(|f| *f) {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{ALERT} not firing on both databases in both Prometheus servers within 90 s\n{}\n{}",
            proms[0].log(),
            proms[1].log()
        );
        for i in 0..2 {
            // One more connection checked out and never returned, up to the pool's cap.
            if held[i].len() < caps[i] {
                let c = pgs[i].client(APP).await;
                c.simple_query("SELECT 1").await.unwrap();
                held[i].push(c);
            }
            push(&ds[i], held[i].len(), caps[i]).await;
        }
        for (j, p) in proms.iter().enumerate() {
            let firing = p
                .instant(&format!(
                    r#"ALERTS{{alertname="{ALERT}",alertstate="firing",app="{APP}"}}"#
                ))
                .await;
            let dbs: BTreeSet<&str> = firing
                .iter()
                .filter_map(|r| r["metric"]["database"].as_str())
                .collect();
            fired[j] = dbs.len() == 2 && held.iter().zip(caps).all(|(h, c)| h.len() == c);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("both alerts firing after {:?}", started.elapsed());
    for (p, honor) in proms.iter().zip([true, false]) {
        let texts = check(
            p,
            honor,
            [(&names[0], &ds[0], caps[0]), (&names[1], &ds[1], caps[1])],
        )
        .await;
        for t in texts {
            eprintln!("honor_labels {honor}: {ALERT}: {t}");
        }
    }
    drop(held);
    for d in ds {
        d.stop().await;
    }
}
