//! The docs match the code: every configuration key and metric is documented, the docs
//! name no metric that does not exist, and the example configuration is valid.

use std::collections::BTreeSet;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Metric family names in the golden `/metrics` files (central and sidecar mode).
fn exported() -> BTreeSet<String> {
    let mut names: BTreeSet<String> = [
        read("tests/golden/metrics.txt"),
        read("tests/golden/metrics-sidecar.txt"),
    ]
    .concat()
    .lines()
    .filter_map(|l| l.strip_prefix("# TYPE "))
    .map(|l| l.split(' ').next().unwrap().to_string())
    .collect();
    names.extend(web_config_series());
    names.extend(fleet_series());
    names
}

/// The series that exist only with a `databases` list.
fn fleet_series() -> Vec<String> {
    let dir = std::env::temp_dir();
    let file = dir.join(format!("poolwatch-docs-fleet-{}.yml", std::process::id()));
    std::fs::write(
        &file,
        "databases:\n  - name: x\n    url: postgres://u@127.0.0.1:1/x\n",
    )
    .unwrap();
    let cfg = poolwatch::config::load(Some(&file), &Vec::new(), &|_| None).unwrap();
    let _ = std::fs::remove_file(&file);
    let core = poolwatch::app::Core::new(&cfg).unwrap();
    core.registry
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect()
}

/// The series that exist only with `web_config_file` (the golden files run without one).
fn web_config_series() -> Vec<String> {
    let file = std::env::temp_dir().join(format!("poolwatch-docs-web-{}.yml", std::process::id()));
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(&file, format!("basic_auth_users:\n  a: '{hash}'\n")).unwrap();
    let web = poolwatch::http::web::load(&file).unwrap();
    let _ = std::fs::remove_file(&file);
    let registry = prometheus::Registry::new();
    let _reloader = poolwatch::http::web::Reloader::register(&registry, web).unwrap();
    registry
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect()
}

fn mentioned(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("poolwatch_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        // Environment variables are upper case; `poolwatch_` inside a longer word is not a metric.
        let before = rest[..i].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && name.len() > "poolwatch_".len()
        {
            // `poolwatch_pg_*` names a prefix; keep its `*` so it is checked as one.
            let wildcard = tail[end..].starts_with('*');
            out.insert(if wildcard {
                format!("{name}*")
            } else {
                name.trim_end_matches('_').to_string()
            });
        }
        rest = &tail[end.max(1)..];
    }
    out
}

#[test]
fn every_configuration_key_is_documented() {
    let doc = read("docs/configuration.md");
    let rows = doc.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(
        rows,
        poolwatch::config::keys().count(),
        "one table row per key in docs/configuration.md"
    );
    for k in poolwatch::config::keys() {
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", k.path)))
            .unwrap_or_else(|| panic!("{} undocumented", k.path));
        for env in k.env {
            assert!(row.contains(env), "{}: {env} not in its row", k.path);
        }
        if let Some(flag) = k.flag {
            let flag = flag.name;
            assert!(row.contains(flag), "{}: {flag} not in its row", k.path);
        }
        if k.default != "-" {
            assert!(
                row.contains(&format!("`{}`", k.default)),
                "{}: default {} not in its row",
                k.path,
                k.default
            );
        }
    }
}

#[test]
fn every_metric_is_documented_and_no_other() {
    let exported = exported();
    assert!(exported.len() > 20, "golden file has the metrics");
    let doc = read("docs/metrics.md");
    let in_doc = mentioned(&doc);
    for m in &exported {
        if m.starts_with("poolwatch_") {
            assert!(
                in_doc.contains(m),
                "{m} is exported but not in docs/metrics.md"
            );
        }
    }
    for path in [
        "docs/metrics.md",
        "docs/configuration.md",
        "docs/push.md",
        "docs/api.md",
        "docs/kubernetes.md",
        "docs/docker.md",
        "docs/dashboards.md",
        "docs/alerts.md",
        "docs/runbooks.md",
        "docs/benchmarks.md",
        "docs/security.md",
        "docs/reliability.md",
        "README.md",
    ] {
        for m in mentioned(&read(path)) {
            let known = match m.strip_suffix('*') {
                Some(prefix) => exported.iter().any(|e| e.starts_with(prefix)),
                None => exported.contains(&m),
            };
            assert!(known, "{path} names {m}, which poolwatch does not export");
        }
    }
}

#[test]
fn example_configuration_is_valid_and_complete() {
    let path = format!("{ROOT}/examples/poolwatch.yaml");
    let cfg = poolwatch::config::load(Some(std::path::Path::new(&path)), &Vec::new(), &|_| None)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.database.is_none());
    let text = read("examples/poolwatch.yaml");
    for k in poolwatch::config::keys() {
        let leaf = k.path.rsplit('.').next().unwrap();
        assert!(
            text.contains(&format!("{leaf}:")),
            "examples/poolwatch.yaml lacks {}",
            k.path
        );
    }
}

#[test]
fn relative_links_in_the_docs_resolve() {
    let mut files = vec!["README.md".to_string()];
    for e in std::fs::read_dir(format!("{ROOT}/docs")).unwrap() {
        let name = e.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            files.push(format!("docs/{name}"));
        }
    }
    let mut broken = Vec::new();
    for f in &files {
        let text = read(f);
        let dir = std::path::Path::new(ROOT)
            .join(f)
            .parent()
            .unwrap()
            .to_path_buf();
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            let tail = &rest[i + 2..];
            let end = tail.find(')').unwrap_or(tail.len());
            let target = tail[..end].split('#').next().unwrap_or("");
            if !target.is_empty()
                && !target.contains("://")
                && !target.contains(' ')
                && !dir.join(target).exists()
            {
                broken.push(format!("{f}: {target}"));
            }
            rest = &tail[end.min(tail.len())..];
        }
    }
    assert!(broken.is_empty(), "broken links: {broken:?}");
    assert!(files.len() > 5);
}
