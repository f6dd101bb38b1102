//! The alert rules (`alerts/poolwatch.rules.yaml`), their promtool unit tests
//! (`alerts/tests/*.yaml`), the Alertmanager example, and their contract with the code
//! and the docs:
//!
//! - `promtool check rules` and `promtool test rules` pass; `amtool check-config` passes;
//! - every alert has a severity, a static summary ending in a period, a description and a
//!   runbook link whose anchor is a heading of `docs/runbooks.md`, and is exercised by the
//!   unit tests both firing and silent;
//! - every metric the rules (and the unit tests' inputs) use is one poolwatch exports,
//!   per the golden `/metrics` files;
//! - `alerts/tests/shapes.yaml` is generated from the analysis itself (its freshness is
//!   checked by the analysis' unit tests), so the leak pages it asserts are the code's;
//! - a real Prometheus loads the rules and evaluates them against a real poolwatch.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{require_tool, temp_path, Daemon};
use serde_yaml::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rules_path() -> PathBuf {
    root().join("alerts/poolwatch.rules.yaml")
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn yaml(p: &Path) -> Value {
    serde_yaml::from_str(&read(p)).unwrap_or_else(|e| panic!("parse {}: {e}", p.display()))
}

/// The unit test files, sorted.
fn test_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("alerts/tests"))
        .expect("alerts/tests")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no unit tests in alerts/tests");
    v
}

/// Every rule of the rule file: (group name, rule mapping).
fn rules() -> Vec<(String, Value)> {
    let doc = yaml(&rules_path());
    let mut out = Vec::new();
    for g in doc["groups"].as_sequence().expect("groups") {
        let name = g["name"].as_str().expect("group name").to_string();
        for r in g["rules"].as_sequence().expect("rules") {
            out.push((name.clone(), r.clone()));
        }
    }
    out
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn promtool_checks_the_rules() {
    let Some(promtool) = require_tool("promtool") else {
        return;
    };
    let (ok, out) = run(Command::new(&promtool)
        .arg("check")
        .arg("rules")
        .arg(rules_path()));
    assert!(ok, "promtool check rules failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn promtool_unit_tests_pass() {
    let Some(promtool) = require_tool("promtool") else {
        return;
    };
    let files = test_files();
    let (ok, out) = run(Command::new(&promtool)
        .args(["test", "rules"])
        .args(&files)
        .current_dir(root()));
    assert!(ok, "promtool test rules failed:\n{out}");
    assert_eq!(
        out.matches("SUCCESS").count(),
        files.len(),
        "every test file must succeed:\n{out}"
    );
}

#[test]
fn amtool_checks_the_alertmanager_example() {
    let Some(amtool) = require_tool("amtool") else {
        return;
    };
    let cfg = root().join("alerts/alertmanager.example.yaml");
    let (ok, out) = run(Command::new(&amtool).arg("check-config").arg(&cfg));
    assert!(ok, "amtool check-config failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    // Critical pages, warnings do not.
    for (sev, receiver) in [("critical", "pager"), ("warning", "team-chat")] {
        let (ok, out) = run(Command::new(&amtool)
            .args(["config", "routes", "test", "--config.file"])
            .arg(&cfg)
            .arg(format!("severity={sev}"))
            .arg("alertname=PoolwatchConnectionLeak"));
        assert!(ok, "amtool config routes test: {out}");
        assert_eq!(
            out.lines().next().map(str::trim),
            Some(receiver),
            "{sev}: {out}"
        );
    }
}

/// GitHub's anchor for a Markdown heading.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn runbook_anchors() -> BTreeSet<String> {
    read(&root().join("docs/runbooks.md"))
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn every_alert_is_annotated_and_has_a_runbook() {
    let anchors = runbook_anchors();
    let mut names = BTreeSet::new();
    let mut severities: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (group, r) in rules() {
        let Some(name) = r["alert"].as_str() else {
            let record = r["record"]
                .as_str()
                .expect("a rule is an alert or a record");
            assert!(
                record.starts_with("poolwatch:") && record.matches(':').count() >= 2,
                "recording rule {record} should be named poolwatch:<what>:<how>"
            );
            continue;
        };
        names.insert(name.to_string());
        assert!(name.starts_with("Poolwatch"), "{group}/{name}: name prefix");
        let sev = r["labels"]["severity"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no severity label"));
        assert!(
            sev == "warning" || sev == "critical",
            "{name}: severity {sev}"
        );
        severities
            .entry(name.to_string())
            .or_default()
            .push(sev.to_string());
        let a = &r["annotations"];
        let summary = a["summary"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no summary"));
        assert!(
            summary.ends_with('.'),
            "{name}: summary must end in a period"
        );
        assert!(!summary.contains("{{"), "{name}: summary must be static");
        let description = a["description"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no description"));
        // Every alert on a view series names the database it is about (the label model:
        // docs/metrics.md), with a fallback for a series without one; the target alert
        // names the poolwatch that is down.
        let expr = r["expr"].as_str().unwrap();
        if expr.contains("poolwatch_") {
            assert!(
                description.contains("with $labels.database"),
                "{name}: description must name the database, and not leave a gap without one"
            );
            assert!(
                !description.contains("on {{ $labels.instance }}"),
                "{name}: the target's instance is the poolwatch, not the database or the replica"
            );
        } else {
            assert!(
                description.contains("$labels.instance"),
                "{name}: description must name the target"
            );
        }
        if description.contains("$labels.app_instance") {
            assert!(
                description.contains("with $labels.app_instance"),
                "{name}: app_instance is absent in central mode: no dangling text without it"
            );
        }
        // A state alert (`== 0`: down, unreachable) has no value worth showing.
        assert!(
            description.contains("$value") || expr.contains("== 0"),
            "{name}: description must give the current value"
        );
        if expr.contains("poolwatch_app_") || expr.contains("poolwatch_pool_") {
            assert!(
                description.contains("$labels.app }}"),
                "{name}: description must name the application"
            );
            assert!(
                description.contains("with $labels.app_instance"),
                "{name}: description must name the replica when there is one"
            );
        }
        let url = a["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no runbook_url"));
        let (base, anchor) = url
            .split_once('#')
            .unwrap_or_else(|| panic!("{name}: runbook_url without an anchor"));
        assert!(base.ends_with("docs/runbooks.md"), "{name}: {url}");
        assert!(
            anchors.contains(anchor),
            "{name}: anchor #{anchor} is not a heading of docs/runbooks.md"
        );
        assert_eq!(
            anchor,
            name.to_lowercase(),
            "{name}: anchor is the alert name"
        );
    }
    // A warning/critical pair shares one name, one of each.
    for (name, sevs) in &severities {
        if sevs.len() > 1 {
            let mut s = sevs.clone();
            s.sort();
            assert_eq!(s, ["critical", "warning"], "{name}: severities {sevs:?}");
        }
    }
    // Each alert is documented in docs/alerts.md.
    let alerts_md = read(&root().join("docs/alerts.md"));
    for n in &names {
        assert!(
            alerts_md.contains(n.as_str()),
            "{n} missing from docs/alerts.md"
        );
    }
    // The shipped set: an alert added or dropped is a decision the docs record.
    let shipped: BTreeSet<String> = [
        "PoolwatchConnectionExhaustionPredicted",
        "PoolwatchConnectionLeak",
        "PoolwatchDatabaseUnreachable",
        "PoolwatchIdleInTransaction",
        "PoolwatchPoolExhausted",
        "PoolwatchPushesStopped",
        "PoolwatchServerNearCapacity",
        "PoolwatchServerRefusingConnections",
        "PoolwatchTargetDown",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, shipped);
}

#[test]
fn every_alert_has_unit_tests_that_fire_and_stay_silent() {
    let alerts: BTreeSet<String> = rules()
        .iter()
        .filter_map(|(_, r)| r["alert"].as_str().map(String::from))
        .collect();
    let mut fired = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for f in test_files() {
        let doc = yaml(&f);
        assert_eq!(
            doc["rule_files"][0].as_str(),
            Some("../poolwatch.rules.yaml"),
            "{}",
            f.display()
        );
        for t in doc["tests"].as_sequence().expect("tests") {
            for c in t["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = c["alertname"].as_str().unwrap().to_string();
                assert!(
                    alerts.contains(&name),
                    "{}: unknown alert {name}",
                    f.display()
                );
                match c["exp_alerts"].as_sequence().map(|s| s.len()) {
                    Some(0) => silent.insert(name),
                    Some(_) => fired.insert(name),
                    None => panic!("{}: {name}: exp_alerts must be given", f.display()),
                };
            }
        }
    }
    for a in &alerts {
        assert!(fired.contains(a), "no unit test fires {a}");
        assert!(silent.contains(a), "no unit test keeps {a} silent");
    }
}

/// Metric names in the golden `/metrics` files.
fn exported() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for f in [
        "tests/golden/metrics.txt",
        "tests/golden/metrics-sidecar.txt",
    ] {
        for l in read(&root().join(f)).lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                names.insert(rest.split_whitespace().next().unwrap().to_string());
            }
        }
    }
    assert!(names.len() > 30, "golden files look empty");
    names
}

/// Every `poolwatch_...` or `poolwatch:...` name in a PromQL text (expressions, and
/// the queries inside annotation templates).
fn poolwatch_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !text.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let starts = text[i..].starts_with("poolwatch_") || text[i..].starts_with("poolwatch:");
        let boundary = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if starts && boundary {
            let end = text[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(text.len(), |e| i + e);
            out.insert(text[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn rules_use_only_metrics_poolwatch_exports() {
    let exported = exported();
    let all = rules();
    let recorded: BTreeSet<String> = all
        .iter()
        .filter_map(|(_, r)| r["record"].as_str().map(String::from))
        .collect();
    let mut used = BTreeSet::new();
    for (_, r) in &all {
        let mut text = r["expr"].as_str().unwrap().to_string();
        for (_, v) in r["annotations"].as_mapping().into_iter().flatten() {
            text.push('\n');
            text.push_str(v.as_str().unwrap_or(""));
        }
        used.extend(poolwatch_names(&text));
        // The only other series: Prometheus's own `up`.
        let expr = r["expr"].as_str().unwrap();
        let stripped: String = poolwatch_names(expr)
            .iter()
            .fold(expr.to_string(), |s, n| s.replace(n.as_str(), ""));
        assert!(
            !stripped.contains("_total") && !stripped.contains("_seconds"),
            "a metric other than poolwatch's in {expr}"
        );
    }
    for name in &used {
        if name.contains(':') {
            assert!(recorded.contains(name), "{name} is not a recording rule");
        } else {
            assert!(
                exported.contains(name),
                "{name} is used by the rules but poolwatch does not export it (tests/golden)"
            );
        }
    }
    assert!(used.len() > 20, "{used:?}");
    // The unit tests' inputs are real series too.
    for f in test_files() {
        let doc = yaml(&f);
        for t in doc["tests"].as_sequence().unwrap() {
            for s in t["input_series"].as_sequence().unwrap() {
                let series = s["series"].as_str().unwrap();
                let name = series.split('{').next().unwrap();
                assert!(
                    name == "up" || exported.contains(name),
                    "{}: input series {name} is not exported by poolwatch",
                    f.display()
                );
            }
        }
    }
}

#[test]
fn alert_docs_name_only_exported_metrics_and_recorded_rules() {
    let exported = exported();
    let recorded: BTreeSet<String> = rules()
        .iter()
        .filter_map(|(_, r)| r["record"].as_str().map(String::from))
        .collect();
    for f in ["docs/alerts.md", "docs/runbooks.md"] {
        for name in poolwatch_names(&read(&root().join(f))) {
            let name = name.trim_end_matches([':', '_']);
            assert!(
                exported.contains(name) || recorded.contains(name),
                "{f} names {name}, which is neither exported nor recorded"
            );
        }
    }
}

/// A child process killed on drop, whatever happens.
struct KillOnDrop(Child, PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get_json(addr: SocketAddr, path: &str) -> Option<serde_json::Value> {
    let s = tokio::net::TcpStream::connect(addr).await.ok()?;
    drop(s);
    let r = common::http(addr, "GET", path, None).await;
    (r.status == 200).then(|| r.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_loads_the_rules_against_a_real_poolwatch() {
    let Some(prometheus) = require_tool("prometheus") else {
        return;
    };
    let d = Daemon::start("").await;
    let r = d
        .push(
            "/api/v1/pools/billing/primary?instance=billing-pod-1",
            r#"{"max_open":10,"open":6,"in_use":5,"idle":1,"wait_count":3}"#,
        )
        .await;
    assert!(r.status < 300, "push: {} {}", r.status, r.body);

    let dir = temp_path("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: poolwatch\n    honor_labels: true\n    static_configs:\n      - targets: ['{}']\n",
            rules_path().display(),
            d.addr
        ),
    )
    .unwrap();
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(prometheus)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start prometheus");
    let guard = KillOnDrop(child, dir.clone());

    let expected_groups: BTreeSet<String> = rules().into_iter().map(|(g, _)| g).collect();
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut last = String::new();
    let mut done = [false; 3];
    while Instant::now() < deadline && !done.iter().all(|d| *d) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Some(v) = get_json(addr, "/api/v1/rules").await {
            let groups = v["data"]["groups"].as_array().cloned().unwrap_or_default();
            let names: BTreeSet<String> = groups
                .iter()
                .filter_map(|g| g["name"].as_str().map(String::from))
                .collect();
            let healthy = groups.iter().all(|g| {
                g["rules"].as_array().is_some_and(|rs| {
                    rs.iter().all(|r| {
                        r["health"] == "ok" && r["lastError"].as_str().unwrap_or("").is_empty()
                    })
                })
            });
            done[0] = names == expected_groups && healthy;
            last = v.to_string();
        }
        if let Some(v) = get_json(addr, "/api/v1/targets").await {
            done[1] = v["data"]["activeTargets"]
                .as_array()
                .is_some_and(|ts| ts.iter().any(|t| t["health"] == "up"));
        }
        // The rules evaluate on scraped data: the target's instance, the pushed replica as
        // app_instance.
        let q = "/api/v1/query?query=poolwatch%3Apool_in_use_connections%3Aratio";
        if let Some(v) = get_json(addr, q).await {
            done[2] = v["data"]["result"].as_array().is_some_and(|rs| {
                rs.iter().any(|r| {
                    r["metric"]["app_instance"] == "billing-pod-1"
                        && r["metric"]["instance"] == d.addr.to_string()
                        && r["metric"]["app"] == "billing"
                        && r["metric"]["job"] == "poolwatch"
                        && r["value"][1] == "0.5"
                })
            });
        }
    }
    let plog = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    assert!(
        done[0],
        "rule groups not loaded and healthy; last /api/v1/rules: {last}\nprometheus log:\n{plog}"
    );
    assert!(done[1], "poolwatch target not up\nprometheus log:\n{plog}");
    assert!(
        done[2],
        "recording rule not evaluated on scraped data with the pushed app_instance\n{plog}"
    );
    drop(guard);
    d.stop().await;
}

/// An alert's labels, `alertname` included.
type Labels = BTreeMap<String, String>;

/// Every alert the unit tests expect to fire, with its labels: the label shape the rules
/// give alerts on the series Prometheus stores.
fn expected_alerts() -> Vec<Labels> {
    let mut out = Vec::new();
    for f in test_files() {
        let doc = yaml(&f);
        for t in doc["tests"].as_sequence().expect("tests") {
            for c in t["alert_rule_test"].as_sequence().into_iter().flatten() {
                let name = c["alertname"].as_str().unwrap();
                for a in c["exp_alerts"].as_sequence().into_iter().flatten() {
                    let mut l: Labels = a["exp_labels"]
                        .as_mapping()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| {
                            let v = match v {
                                Value::String(s) => s.clone(),
                                other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                            };
                            (k.as_str().unwrap().to_string(), v)
                        })
                        .collect();
                    l.insert("alertname".into(), name.into());
                    out.push(l);
                }
            }
        }
    }
    out
}

/// Whether `alert` satisfies the matchers (`name="value"` or `name=~"a|b"`, the forms the
/// example uses; a regex of plain alternatives only).
fn matches(matchers: &Value, alert: &Labels) -> bool {
    matchers.as_sequence().unwrap().iter().all(|m| {
        let m = m.as_str().unwrap();
        let (name, op, want) = if let Some((n, v)) = m.split_once("=~") {
            (n, "=~", v)
        } else {
            let (n, v) = m.split_once('=').unwrap();
            (n, "=", v)
        };
        let want = want.trim_matches('"');
        let have = alert.get(name).map_or("", String::as_str);
        match op {
            "=" => have == want,
            _ => {
                assert!(
                    want.chars().all(|c| c.is_ascii_alphanumeric() || c == '|'),
                    "{m}: only plain alternatives are understood here"
                );
                want.split('|').any(|w| w == have)
            }
        }
    })
}

/// Alertmanager's `equal`: the same value in both, an absent label equal to an empty one.
fn equal(labels: &Value, a: &Labels, b: &Labels) -> bool {
    labels.as_sequence().unwrap().iter().all(|l| {
        let l = l.as_str().unwrap();
        a.get(l).map_or("", String::as_str) == b.get(l).map_or("", String::as_str)
    })
}

/// Each inhibition of the Alertmanager example silences some alert the rules really
/// raise, with the labels they really carry (the unit tests' expected alerts), and only on
/// the same database: the same target alert on another database stays.
#[test]
fn inhibitions_match_the_alerts_the_rules_raise() {
    let am = yaml(&root().join("alerts/alertmanager.example.yaml"));
    let alerts = expected_alerts();
    let group_by: Vec<&str> = am["route"]["group_by"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(group_by, ["alertname", "database", "app"]);
    for rule in am["inhibit_rules"].as_sequence().unwrap() {
        let sources: Vec<&Labels> = alerts
            .iter()
            .filter(|a| matches(&rule["source_matchers"], a))
            .collect();
        let targets: Vec<&Labels> = alerts
            .iter()
            .filter(|a| matches(&rule["target_matchers"], a))
            .collect();
        let pair = sources.iter().find_map(|s| {
            targets
                .iter()
                .find(|t| *s != **t && equal(&rule["equal"], s, t))
                .map(|t| (*s, *t))
        });
        let (s, t) = pair.unwrap_or_else(|| {
            panic!(
                "inhibition {rule:?} silences no alert the rules raise: sources {sources:?}, targets {targets:?}"
            )
        });
        let needs_database = rule["equal"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|l| l == "database");
        if needs_database {
            let mut elsewhere = t.clone();
            elsewhere.insert("database".into(), "another-db:5432".into());
            assert!(
                !equal(&rule["equal"], s, &elsewhere),
                "{rule:?}: silences {t:?} on another database too"
            );
        }
    }
}
