//! The Grafana dashboards in `dashboards/`: their conventions, Grafana's published schema
//! (`dashboards/tools/validate.sh`), and every query they run, executed by a real
//! Prometheus that scrapes a real poolwatch (central and sidecar) watching a real
//! PostgreSQL while clients leak connections, exhaust a pool, and behave.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::prometheus::Prometheus;
use common::{require_tool, Daemon, Pg};
use serde_json::Value;

const ALLOWED_PANELS: [&str; 3] = ["timeseries", "stat", "table"];
/// Names a dashboard may use that poolwatch does not export.
const NOT_POOLWATCH: [&str; 2] = ["up", "ALERTS"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `dashboards/*.json`, by file name.
fn dashboards() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(root().join("dashboards"))
        .expect("dashboards/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), v)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
    for required in ["poolwatch-overview.json", "poolwatch-application.json"] {
        assert!(names.contains(&required), "{required} missing: {names:?}");
    }
    out
}

fn panels(d: &Value) -> &Vec<Value> {
    d["panels"].as_array().expect("panels")
}

fn targets(p: &Value) -> &Vec<Value> {
    p["targets"].as_array().expect("targets")
}

fn variables(d: &Value) -> &Vec<Value> {
    d["templating"]["list"].as_array().expect("templating.list")
}

/// The metric names `# TYPE` declares in the golden files: what poolwatch exports.
fn exported_metrics() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for f in ["metrics.txt", "metrics-sidecar.txt"] {
        let text = std::fs::read_to_string(root().join("tests/golden").join(f)).unwrap();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                names.insert(rest.split(' ').next().unwrap().to_string());
            }
        }
    }
    assert!(names.len() > 30, "{names:?}");
    names
}

/// Metric names in a PromQL expression: identifiers outside strings, label matchers,
/// ranges and grouping lists that are neither functions nor keywords.
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 14] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
    ];
    let b = expr.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let mut skip_group = false;
    while i < b.len() {
        let c = b[i] as char;
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < b.len() && b[i] as char != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { b'}' } else { b']' };
                while i < b.len() && b[i] != close {
                    if b[i] == b'"' {
                        i += 1;
                        while i < b.len() && b[i] != b'"' {
                            i += if b[i] == b'\\' { 2 } else { 1 };
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if skip_group => {
                while i < b.len() && b[i] != b')' {
                    i += 1;
                }
                i += 1;
                skip_group = false;
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < b.len()
                    && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':')
                {
                    i += 1;
                }
                let word = &expr[start..i];
                let mut j = i;
                while j < b.len() && b[j] == b' ' {
                    j += 1;
                }
                let is_call = j < b.len() && b[j] == b'(';
                let lower = word.to_ascii_lowercase();
                let aggregates = b[j..].starts_with(b"by ")
                    || b[j..].starts_with(b"by(")
                    || b[j..].starts_with(b"without");
                if matches!(
                    lower.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                ) {
                    skip_group = true;
                } else if !is_call && !aggregates && !KEYWORDS.contains(&lower.as_str()) {
                    names.insert(word.to_string());
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < b.len() && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'.') {
                    i += 1;
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    let n = metric_names(
        r#"sum by (job, instance) (rate(a_total{job=~"$job", x="b c"}[$__rate_interval])) / on (job) group_left (x) (b - c) or vector(0) and d:e:f > 1e3"#,
    );
    let got: Vec<&str> = n.iter().map(|s| s.as_str()).collect();
    assert_eq!(got, ["a_total", "b", "c", "d:e:f"]);
}

#[test]
fn dashboards_follow_the_conventions() {
    let exported = exported_metrics();
    let mut uids = BTreeSet::new();
    let mut total_panels = 0;
    let mut total_targets = 0;
    for (file, d) in dashboards() {
        let uid = d["uid"].as_str().unwrap_or_else(|| panic!("{file}: uid"));
        assert_eq!(
            format!("{uid}.json"),
            file,
            "{file}: the uid is fixed and names the file"
        );
        assert!(uid.len() <= 40, "{file}: uid at most 40 characters");
        assert!(uids.insert(uid.to_string()), "{file}: uid {uid} repeated");
        assert!(d["id"].is_null(), "{file}: no instance-specific id");
        assert!(
            d["schemaVersion"].as_u64().unwrap_or(0) >= 39,
            "{file}: current schemaVersion"
        );
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));

        // The datasource variable, used by every panel, target, variable and annotation.
        let vars = variables(&d);
        let ds = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{file}: a datasource variable"));
        assert_eq!(ds["type"], "datasource", "{file}");
        assert_eq!(ds["query"], "prometheus", "{file}");
        let is_ds = |v: &Value| v["uid"] == "${datasource}" && v["type"] == "prometheus";
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert!(is_ds(&v["datasource"]), "{file}: variable {}", v["name"]);
            if v["includeAll"] == true {
                assert_eq!(v["allValue"], ".*", "{file}: variable {}", v["name"]);
            }
        }
        let annotations = d["annotations"]["list"].as_array().unwrap();
        let alerts: Vec<&Value> = annotations.iter().filter(|a| a["builtIn"] != 1).collect();
        assert!(!alerts.is_empty(), "{file}: alert annotations");
        for a in alerts {
            assert!(is_ds(&a["datasource"]), "{file}: annotation {}", a["name"]);
            let expr = a["expr"].as_str().unwrap();
            assert!(
                expr.starts_with(r#"ALERTS{alertstate="firing""#),
                "{file}: {expr}"
            );
        }

        let mut ids = BTreeSet::new();
        let mut cells = BTreeSet::new();
        for p in panels(&d) {
            let title = p["title"].as_str().unwrap_or_default();
            let ty = p["type"].as_str().unwrap();
            assert!(ALLOWED_PANELS.contains(&ty), "{file}: {title}: type {ty}");
            assert!(
                ids.insert(p["id"].as_u64().unwrap()),
                "{file}: {title}: id repeated"
            );
            let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or("");
            assert!(!unit.is_empty(), "{file}: {title}: no unit");
            assert!(is_ds(&p["datasource"]), "{file}: {title}: datasource");
            if ty != "stat" || p["description"].is_string() {
                assert!(
                    p["description"].as_str().is_some_and(|s| s.len() > 20),
                    "{file}: {title}: a description"
                );
            }
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_u64().unwrap(),
                g["y"].as_u64().unwrap(),
                g["w"].as_u64().unwrap(),
                g["h"].as_u64().unwrap(),
            );
            assert!(x + w <= 24 && w > 0 && h > 0, "{file}: {title}: gridPos");
            for cx in x..x + w {
                for cy in y..y + h {
                    assert!(cells.insert((cx, cy)), "{file}: {title} overlaps");
                }
            }
            assert!(!targets(p).is_empty(), "{file}: {title}: no query");
            for t in targets(p) {
                total_targets += 1;
                assert!(
                    is_ds(&t["datasource"]),
                    "{file}: {title}: target datasource"
                );
                let expr = t["expr"].as_str().unwrap();
                // The label model: an application is only one per database (and cluster
                // and namespace), the replica is app_instance, never the target's instance.
                for (at, _) in expr.match_indices(" by (") {
                    let by = &expr[at + 5..at + expr[at..].find(')').unwrap()];
                    let by: Vec<&str> = by.split(',').map(str::trim).collect();
                    if by
                        .iter()
                        .any(|l| ["app", "app_instance", "pool"].contains(l))
                    {
                        for l in ["cluster", "namespace", "database"] {
                            assert!(
                                by.contains(&l),
                                "{file}: {title}: grouping by application without {l}: {expr}"
                            );
                        }
                    }
                }
                assert!(
                    !expr.contains("$instance") && !expr.contains("application_name=~\"$app\""),
                    "{file}: {title}: select the replica by app_instance and the server view by the pool's application_name: {expr}"
                );
                for f in ["rate(", "irate(", "increase("] {
                    for (at, _) in expr.match_indices(f) {
                        let rest = &expr[at..];
                        let range = &rest[rest.find('[').unwrap()..rest.find(']').unwrap() + 1];
                        assert_eq!(range, "[$__rate_interval]", "{file}: {title}: {expr}");
                    }
                }
                for name in metric_names(expr) {
                    assert!(
                        exported.contains(&name) || NOT_POOLWATCH.contains(&name.as_str()),
                        "{file}: {title}: {name} is not a metric poolwatch exports ({expr})"
                    );
                }
            }
            total_panels += 1;
        }
    }
    let detail = dashboards()
        .into_iter()
        .find(|(f, _)| f == "poolwatch-application.json")
        .unwrap()
        .1;
    let names: Vec<&str> = variables(&detail)
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "datasource",
            "job",
            "cluster",
            "namespace",
            "database",
            "app",
            "app_instance",
            "datname"
        ]
    );
    eprintln!("conventions: {total_panels} panels, {total_targets} queries checked");
}

#[test]
fn dashboards_validate_against_grafanas_published_schema() {
    if require_tool("node").is_none() || require_tool("npm").is_none() {
        return;
    }
    let out = Command::new("bash")
        .arg(root().join("dashboards/tools/validate.sh"))
        .output()
        .expect("run validate.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{text}");
    assert!(out.status.success(), "validate.sh failed:\n{text}");
    assert!(text.contains("dashboards valid against @grafana/schema"));
    assert!(text.contains("mutations rejected"));
}

// ---------------------------------------------------------------------------------------
// Execution against a real Prometheus.

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Replaces Grafana's variables with what a user would select: `vars` by name, longest
/// name first so that `$app` does not eat `$application`.
fn substitute(expr: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut names: Vec<&&str> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = expr.to_string();
    for n in names {
        out = out.replace(&format!("${{{n}}}"), vars[*n]);
        out = out.replace(&format!("${n}"), vars[*n]);
    }
    assert!(!out.contains('$'), "unsubstituted variable in {out}");
    out
}

/// Pushes one pool snapshot with the canonical JSON fields.
#[allow(clippy::too_many_arguments)]
async fn push(
    d: &Daemon,
    app: &str,
    max_open: usize,
    open: usize,
    in_use: usize,
    waiting: usize,
    wait_count: u64,
    lifetime: u32,
) {
    let body = format!(
        r#"{{"max_open":{max_open},"open":{open},"in_use":{in_use},"idle":{},"waiting":{waiting},"wait_count":{wait_count},"wait_duration_seconds":{},"max_idle_closed":0,"max_idle_time_closed":0,"max_lifetime_closed":0,"max_lifetime_seconds":{lifetime},"max_idle_time_seconds":300}}"#,
        open - in_use,
        wait_count as f64 * 0.25
    );
    let r = d.push(&format!("/api/v1/pools/{app}/primary"), &body).await;
    assert_eq!(r.status, 200, "{}", r.body);
}

/// Three applications against one database, until `stop`: `leaky` checks connections out
/// and never returns them (one left idle in transaction), `capped` leaks into a pool of 6
/// and then blocks its callers, `steady` keeps its 4.
async fn workload(pg: Arc<Pg>, central: Arc<Daemon>, sidecar: Arc<Daemon>, stop: Arc<AtomicBool>) {
    let mut leaky = Vec::new();
    let first = pg.client("leaky").await;
    first
        .simple_query("BEGIN; SELECT count(*) FROM pg_class")
        .await
        .unwrap();
    leaky.push(first);
    let mut capped = Vec::new();
    let mut steady = Vec::new();
    for _ in 0..4 {
        steady.push(pg.client("steady").await);
    }
    let mut waits = 0u64;
    let mut tick = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tick += 1;
        if leaky.len() < 60 && tick % 2 == 0 {
            let c = pg.client("leaky").await;
            c.simple_query("SELECT id FROM generate_series(1, 10) AS id WHERE id = 42")
                .await
                .unwrap();
            leaky.push(c);
        }
        if capped.len() < 6 && tick % 3 == 0 {
            let c = pg.client("capped").await;
            c.simple_query("SELECT 1").await.unwrap();
            capped.push(c);
        }
        let waiting = if capped.len() == 6 { 2 } else { 0 };
        waits += waiting as u64 * 2;
        let n = leaky.len();
        push(&central, "leaky", 100, n, n, 0, 0, 2).await;
        push(&sidecar, "leaky", 100, n, n, 0, 0, 2).await;
        let m = capped.len();
        push(&central, "capped", 6, m, m, waiting, waits, 1800).await;
        push(&central, "steady", 10, 4, 0, 0, 0, 1800).await;
        tokio::time::sleep(Duration::from_millis(350)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let Some(prometheus) = require_tool("prometheus") else {
        return;
    };
    let dashboards = dashboards();
    let pg = Arc::new(Pg::start_with(&["-c", "max_connections=80"]));
    let analysis = "analysis:\n  interval_seconds: 0.25\n  window_seconds: 12\n  idle_in_use_seconds: 1\n  lifetime_grace_seconds: 0.5\n  disagreement_hold_seconds: 2\n";
    let db = format!(
        "database:\n  url: {}\n  interval_seconds: 0.25\n  statement_timeout_seconds: 0.25\n  lock_timeout_seconds: 0.1\n",
        pg.url()
    );
    let central = Arc::new(Daemon::start(&format!("mode: central\n{db}{analysis}")).await);
    let sidecar = Arc::new(
        Daemon::start(&format!(
            "mode: sidecar\ninstance: leaky-0\npod_ip: 127.0.0.1\npush_listen_address: 127.0.0.1:0\nlisten_address: 127.0.0.2:0\nsocket:\n  peers: 127.0.0.1:{}\n{db}{analysis}",
            pg.port
        ))
        .await,
    );
    let prom = Prometheus::scraping(
        &prometheus,
        &[
            ("poolwatch", central.addr),
            ("poolwatch-sidecar", sidecar.addr),
        ],
    );
    prom.wait_ready().await;
    let start = now();
    let stop = Arc::new(AtomicBool::new(false));
    let work = tokio::spawn(workload(
        pg.clone(),
        central.clone(),
        sidecar.clone(),
        stop.clone(),
    ));

    // Enough history for rates, trends and the leak verdicts.
    let deadline = Instant::now() + Duration::from_secs(45);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let suspected = prom
            .instant(r#"poolwatch_app_leak_suspected{job="poolwatch", app="leaky"} == 1"#)
            .await;
        let exhausted = prom
            .instant(r#"poolwatch_app_pool_exhausted{job="poolwatch", app="capped"} == 1"#)
            .await;
        let sidecar_suspected = prom
            .instant(r#"poolwatch_app_leak_suspected{job="poolwatch-sidecar"} == 1"#)
            .await;
        if !suspected.is_empty()
            && !exhausted.is_empty()
            && !sidecar_suspected.is_empty()
            && now() - start > 20.0
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no leak or exhausted pool seen by Prometheus in 45 s (leak {suspected:?}, exhausted {exhausted:?}, sidecar {sidecar_suspected:?})"
        );
    }
    let end = now();

    let mut queries = 0;
    let mut series = 0;
    let mut central_only = 0;
    let mut var_lists = 0;
    let mut empty = Vec::new();
    for (file, d) in &dashboards {
        // Variables resolve, each with the ones before it selected.
        let mut values: BTreeMap<&str, &str> = BTreeMap::new();
        values.insert("__rate_interval", "15s");
        for v in variables(d) {
            let name = v["name"].as_str().unwrap();
            if v["type"] == "datasource" {
                continue;
            }
            let q = v["query"]["query"].as_str().unwrap();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| panic!("{file}: {name}: {q}"));
            let (selector, label) = inner.rsplit_once(',').unwrap();
            let selector = substitute(selector.trim(), &values);
            let got = prom.label_values(label.trim(), &selector, start, end).await;
            eprintln!("{file}: ${name} = {got:?}");
            // cluster and namespace exist only where the Prometheus setup adds them (not
            // here): empty, and their All (.*) matches series without them.
            if ["cluster", "namespace"].contains(&name) {
                assert!(got.is_empty(), "{file}: {name}: {got:?}");
                values.insert(name, ".*");
                continue;
            }
            assert!(!got.is_empty(), "{file}: variable {name} ({q}) is empty");
            var_lists += 1;
            let chosen = match name {
                "app" => {
                    assert!(got.contains(&Value::from("leaky")), "{file}: {got:?}");
                    "leaky"
                }
                "datname" => {
                    assert!(got.contains(&Value::from("postgres")), "{file}: {got:?}");
                    ".*"
                }
                "database" => {
                    assert_eq!(got, [Value::from(pg.database())], "{file}");
                    ".*"
                }
                _ if v["includeAll"] == true => ".*",
                _ => panic!("{file}: no choice for variable {name}"),
            };
            values.insert(name, chosen);
        }
        for a in d["annotations"]["list"].as_array().unwrap() {
            if let Some(expr) = a["expr"].as_str() {
                // No rules are loaded here: the expression need only be valid.
                prom.instant(&substitute(expr, &values)).await;
            }
        }
        // Every query of every panel, with everything selected, returns data; with only the
        // central poolwatch selected too, except the socket view, which is sidecar-only.
        for p in panels(d) {
            let title = p["title"].as_str().unwrap();
            for t in targets(p) {
                let expr = t["expr"].as_str().unwrap();
                let run = |vals: BTreeMap<&str, &str>| {
                    let q = substitute(expr, &vals);
                    let prom = &prom;
                    let instant = t["instant"] == true;
                    async move {
                        if instant {
                            prom.instant(&q).await
                        } else {
                            prom.range(&q, start, end).await
                        }
                    }
                };
                let got = run(values.clone()).await;
                if got.is_empty() {
                    empty.push(format!("{file}: \"{title}\" {}: {expr}", t["refId"]));
                }
                queries += 1;
                series += got.len();
                let mut central_vals = values.clone();
                central_vals.insert("job", "poolwatch");
                let got = run(central_vals).await;
                if !expr.contains("socket") {
                    if got.is_empty() {
                        empty.push(format!(
                            "{file}: \"{title}\" {} (central job alone): {expr}",
                            t["refId"]
                        ));
                    }
                    central_only += 1;
                }
            }
        }
    }
    assert!(
        empty.is_empty(),
        "{} of {queries} queries returned no data:\n{}",
        empty.len(),
        empty.join("\n")
    );
    eprintln!(
        "prometheus: {queries} panel queries returned data ({series} series), {central_only} of them also for the central job alone; {var_lists} variables resolved"
    );

    if let Some(hold) = std::env::var_os("POOLWATCH_DASHBOARD_HOLD") {
        // dashboards/tools/pictures.sh: leave the leak demo running for the pictures until
        // the file it is told about is removed.
        let hold = PathBuf::from(hold);
        std::fs::write(&hold, format!("http://{}\n{start}\n", prom.addr)).unwrap();
        let until = Instant::now() + Duration::from_secs(600);
        while hold.exists() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    work.await.unwrap();
}
