#!/usr/bin/env python3
"""Offline `helm lint` and `helm template` for the poolwatch chart, and the PrometheusRule check.

A real helm binary cannot be installed from the package registries this project uses, but
the PyPI package helm-python-sdk (pinned in .ci/install-chart-tools.sh) binds Helm's own Go
library (chart loader, lint rules, template engine, schema validation). This script drives
it the way the helm command line does; tests/chart.rs runs it.

  helmtool.py lint CHART [-f VALUES]... [--kube-version V]
      helm lint --strict: prints each finding; exit 1 on any warning or error.
  helmtool.py template CHART [-f VALUES]... [--set K=V]... [--name N] [--namespace NS]
                       [--notes] [--alerts FILE] [--dashboard FILE]... [-o FILE]
      helm template: validates the values against values.schema.json, renders, prints the
      manifests as one YAML stream (each with a "# Source:" line). --notes prints NOTES.txt.
      --alerts and --dashboard render a copy of the chart that carries these files in place
      of the repository's alerts/ and dashboards/ (test data).
  helmtool.py rules CHART --rules FILE [-f VALUES]... [-o FILE]
      Renders the chart with FILE as files/alerts/poolwatch.rules.yaml (in a copy of the
      chart), checks that the PrometheusRule's groups equal FILE's groups after the
      overrides in prometheusRule (computed here independently of the templates), and
      writes those groups as a Prometheus rule file for `promtool check rules`.

Exit codes: 0 ok, 1 check failed, 2 usage or load error.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Iterator

try:
    import yaml
except ImportError:  # pragma: no cover - the install script installs it
    sys.exit("helmtool: PyYAML is missing (pip install PyYAML)")

try:
    import helm_python as helm
except ImportError:
    sys.exit("helmtool: helm-python-sdk is missing (run .ci/install-chart-tools.sh)")

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Merge like helm's -f files: maps merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def user_values(files: list[str], sets: list[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path in files:
        with open(path, encoding="utf-8") as handle:
            values = deep_merge(values, helm.values_from_yaml(handle.read()) or {})
    if sets:
        # As helm does: all --set expressions parse into one map, so list indices combine.
        values = deep_merge(values, helm.parse_set_string(",".join(sets)))
    return values


def render(chart_dir: str, values: dict[str, Any], name: str, namespace: str) -> dict[str, str]:
    """Schema-checked render, as `helm template` does it; maps template path to output."""
    with helm.Chart.load(chart_dir) as chart:
        chart.validate_schema(chart.merge_values(values))
        return chart.render(values=values, name=name, namespace=namespace, is_install=True)


def manifests(rendered: dict[str, str]) -> str:
    docs = []
    for path in sorted(rendered):
        if path.endswith("NOTES.txt"):
            continue
        for part in rendered[path].split("\n---"):
            body = part.strip("\n")
            if body.strip() and any(
                line.strip() and not line.lstrip().startswith("#") for line in body.splitlines()
            ):
                docs.append(f"---\n# Source: {path}\n{body}\n")
    return "".join(docs)


def cmd_lint(args: argparse.Namespace) -> int:
    report = helm.lint(
        args.chart,
        user_values(args.values, args.set),
        strict=True,
        namespace=args.namespace,
        kube_version=args.kube_version,
    )
    failed = bool(report.get("errors"))
    print(f"==> Linting {args.chart}")
    for message in report.get("messages") or []:
        severity = message.get("severity", 0)
        print(f"[{SEVERITY.get(severity, severity)}] {message.get('path')}: {message.get('error')}")
        if severity >= 2:  # --strict: warnings fail too
            failed = True
    linted = report.get("total_charts_linted", 0)
    print(f"\n{linted} chart(s) linted, {1 if failed else 0} chart(s) failed")
    return 1 if failed else 0


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
        rendered = render(chart, user_values(args.values, args.set), args.name, args.namespace)
    if args.notes:
        text = "".join(v for k, v in rendered.items() if k.endswith("NOTES.txt"))
    else:
        text = manifests(rendered)
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
    values = user_values(args.values, args.set)
    with chart_with(args.chart, args.rules, []) as chart:
        with helm.Chart.load(chart) as loaded:
            merged = loaded.merge_values(values)
        rendered = render(chart, values, "poolwatch", "monitoring")
    docs = [
        doc
        for doc in yaml.safe_load_all(manifests(rendered))
        if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule"
    ]
    if len(docs) != 1:
        print(f"expected one PrometheusRule, rendered {len(docs)}", file=sys.stderr)
        return 1
    got = docs[0]["spec"]["groups"]
    want = expected_groups(source, merged.get("prometheusRule") or {})
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
    template.add_argument("--notes", action="store_true")
    template.add_argument("--alerts")
    template.add_argument("--dashboard", action="append", default=[])
    template.add_argument("-o", "--output")
    template.set_defaults(run=cmd_template)

    rules = sub.add_parser("rules")
    common(rules)
    rules.add_argument("--rules", required=True)
    rules.add_argument("-o", "--output")
    rules.set_defaults(run=cmd_rules)

    args = parser.parse_args()
    helm.disable_logging()
    try:
        return args.run(args)
    except helm.HelmError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
