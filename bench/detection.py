#!/usr/bin/env python3
"""The detection matrix (issue 13): how soon the shipped product pages on each leak, and
that it never pages on a healthy shape, measured on real programs.

Every scenario runs at once, each with its own throwaway PostgreSQL, its own poolwatch
(release build, shipped defaults: only the listen address and the database URL are
given), and the project's Go program (bench/detect: database/sql + lib/pq) leaking or
healthy. Two real Prometheus servers scrape every poolwatch and load the shipped
alerts/poolwatch.rules.yaml unmodified, one at the chart's 30 s scrape and evaluation
interval, one at 15 s; each also loads the classic rule (connections above 80% of
max_connections for 5 minutes) for comparison. Writes the table between
`<!-- matrix:begin -->` and `<!-- matrix:end -->` in docs/detection.md.

    python3 bench/detection.py [--minutes N] [--only NAME,...] [--layout L] [--no-write]

`--layout forwarded` runs the fleet layout instead (docs/kubernetes.md): the application
pushes to a sidecar poolwatch without a database (`--mode sidecar`, shipped defaults but
for its addresses and `--forward-url`), which forwards its pools to the central poolwatch
of the scenario's database; Prometheus scrapes both. `--layout both` runs each scenario
in both layouts at once (each with its own PostgreSQL) and writes the comparison between
`<!-- layouts:begin -->` and `<!-- layouts:end -->` instead of the matrix.

Needs: cargo, Go with lib/pq and client_golang (Debian: golang-go
golang-github-lib-pq-dev golang-github-prometheus-client-golang-dev), prometheus, and
the PostgreSQL server binaries. Standard library only. About 25 minutes at the default
21 minutes per scenario.
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgwire  # noqa: E402
import run as B  # noqa: E402  (the shared helpers: clusters, processes, cleanup)

REPO = B.REPO
HOST = B.HOST
DOC = os.path.join(REPO, "docs", "detection.md")
RULES = os.path.join(REPO, "alerts", "poolwatch.rules.yaml")
LEAK_AFTER = 60  # seconds of healthy traffic before a leak starts
LEAK_ALERTS = ("PoolwatchConnectionLeak", "PoolwatchConnectionExhaustionPredicted")

# name, what it is, Go environment, max_connections, target (seconds, severity), replicas
SCENARIOS = [
    ("rows-fast", "rows never closed, 60/min, unlimited pool, `max_connections` 400",
     {"MODE": "rows", "LEAK_EVERY": "1", "LIFETIME": "30"}, 400, (120, "critical")),
    ("rows-fast-pgw", "the same, pushed by client_golang (Pushgateway protobuf)",
     {"MODE": "rows", "LEAK_EVERY": "1", "LIFETIME": "30", "PUSH": "pushgateway"}, 400,
     (120, "critical")),
    ("rows-capped", "rows never closed, 60/min, `SetMaxOpenConns(25)`",
     {"MODE": "rows", "LEAK_EVERY": "1", "LIFETIME": "30", "MAX_OPEN": "25"}, 100,
     (120, None)),
    ("rows-slow", "rows never closed, 1/min",
     {"MODE": "rows", "LEAK_EVERY": "60", "LIFETIME": "30"}, 100, (480, None)),
    ("beside", "driver connections beside the pool, 2/min",
     {"MODE": "beside", "LEAK_EVERY": "30"}, 100, (360, None)),
    ("per-request", "a pool opened per request, 2/min",
     {"MODE": "per-request", "LEAK_EVERY": "30"}, 100, (360, None)),
    ("tx", "transactions left open, 2/min",
     {"MODE": "tx", "LEAK_EVERY": "30"}, 100, (360, None)),
    ("steady", "healthy: steady load (8 workers)", {"MODE": "steady"}, 100, None),
    ("bursts", "healthy: 30 callers for 20 s every 3 min", {"MODE": "bursts"}, 100, None),
    ("fanout", "healthy: a batch fan-out, a worker every 5 s for 7 min, then all released",
     {"MODE": "fanout"}, 200, None),
    ("warmup", "healthy: a pool warming up to 30 idle connections over 4 min",
     {"MODE": "warmup"}, 100, None),
    ("deploy", "healthy: rolling deploy, new replicas 90 s before the old ones leave",
     {"MODE": "steady"}, 100, None),
    ("shortlived", "healthy: a short-lived connection per second beside the pool, closed",
     {"MODE": "shortlived"}, 100, None),
]


def log(*a):
    B.log(*a)


def build():
    log("building poolwatch (release) and bench/detect")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    out = os.path.join(B.BASE, "detect")
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOPROXY="off",
               GOCACHE=os.path.join(B.BASE, "gocache"))
    subprocess.run(["go", "build", "-o", out, "."], cwd=os.path.join(REPO, "bench", "detect"),
                   env=env, check=True)
    return os.path.join(REPO, "target", "release", "poolwatch"), out


class Scenario:
    def __init__(self, spec, binary, detect, layout="direct"):
        self.name, self.what, self.env, self.max_connections, self.target = spec
        self.layout = layout
        self.binary = binary
        # The application's name, distinct per layout: two layouts of one scenario run at
        # once and one Prometheus scrapes both.
        self.app = self.name if layout == "direct" else f"{self.name}-fwd"
        self.detect = detect
        self.cluster = B.Cluster(f"pg-{self.app}", {"max_connections": str(self.max_connections),
                                                     "shared_buffers": "8MB"})
        # The application is an ordinary role: refused at the usable slots, as in
        # production; poolwatch and this harness are superusers (in production poolwatch
        # is pg_monitor and its session is already open when the server fills).
        self.cluster.sql("CREATE ROLE app LOGIN; GRANT ALL ON SCHEMA public TO app")
        self.pg = pgwire.Conn(HOST, self.cluster.port, "postgres", "postgres", "bench-harness")
        self.usable = self.max_connections - 3
        self.port = B.free_port()
        # Shipped defaults: nothing but where to listen and which database to watch.
        self.poolwatch = B.spawn(f"poolwatch-{self.app}", [
            binary, "--listen", f"{HOST}:{self.port}",
            "--database-url", self.cluster.url("postgres"), "--log-level", "warn"])
        B.wait_http(f"http://{HOST}:{self.port}/healthz", proc=self.poolwatch)
        self.http = B.Http(self.port)
        self.sidecars = {}  # instance: (process, metrics port), in the forwarded layout
        self.apps = []
        self.events = {}
        self.verdict_at = None
        self.used = []  # (t, client backends on the server) from PostgreSQL itself

    def start_sidecar(self, instance):
        """The fleet layout's sidecar of one replica: no database, pushes on its own
        address, its pools forwarded to this scenario's central poolwatch."""
        port, push_port = B.free_port(), B.free_port()
        p = B.spawn(f"sidecar-{self.app}-{instance}", [
            self.binary, "--mode", "sidecar", "--listen", f"{HOST}:{port}",
            "--push-listen", f"{HOST}:{push_port}",
            "--forward-url", f"http://{HOST}:{self.port}", "--log-level", "warn"],
            env=dict(os.environ, POD_NAME=instance))
        B.wait_http(f"http://{HOST}:{port}/healthz", proc=p)
        self.sidecars[instance] = (p, port)
        if self.on_new_target:
            self.on_new_target(f"{HOST}:{port}")
        return f"http://{HOST}:{push_port}"

    on_new_target = None

    def targets(self):
        return [f"{HOST}:{self.port}"] + [f"{HOST}:{port}" for _, port in self.sidecars.values()]

    def start_app(self, instance, extra=None):
        push_to = f"http://{HOST}:{self.port}"
        if self.layout == "forwarded":
            push_to = self.start_sidecar(instance)
        env = dict(os.environ, APP=self.app, INSTANCE=instance,
                   DATABASE_URL=self.cluster.url("app"),
                   POOLWATCH_URL=push_to, LEAK_AFTER=str(LEAK_AFTER))
        env.update(self.env)
        env.update(extra or {})
        p = B.spawn(f"app-{self.app}-{instance}", [self.detect], env=env)
        p.instance = instance
        self.apps.append(p)
        return p

    def stop_app(self, p):
        B.stop_proc(p)
        self.apps.remove(p)

    def read_events(self):
        for p in self.apps + getattr(self, "gone", []):
            path = os.path.join(B.BASE, f"{p.bench_name}.log")
            try:
                text = open(path).read()
            except OSError:
                continue
            for m in re.finditer(r"^EVENT (\w+) ([0-9.]+)$", text, re.M):
                self.events.setdefault(m.group(1), float(m.group(2)))
            self.stats = [(float(a), int(b)) for a, b in
                          re.findall(r"^STATS ([0-9.]+) (\d+) \d+$", text, re.M)]

    def poll(self):
        try:
            text = self.http.get()[1].decode()
        except Exception:  # noqa: BLE001
            return
        now = time.time()
        v = B.metric_value(text, "poolwatch_app_leak_suspected", {"app": self.app})
        if v == 1 and self.verdict_at is None:
            self.verdict_at = now
        try:
            n = self.pg.scalar("SELECT count(*) FROM pg_stat_activity "
                               "WHERE backend_type = 'client backend'")
            self.used.append((now, int(n)))
        except (OSError, pgwire.PgError):
            pass

    def used_at(self, t):
        """Client backends (poolwatch's and this harness's included) at `t`."""
        before = [n for (u, n) in self.used if u <= t]
        return before[-1] if before else None


class Prometheus:
    def __init__(self, name, interval, targets):
        self.port = B.free_port()
        self.interval = interval
        d = os.path.join(B.BASE, name)
        os.mkdir(d)
        classic = os.path.join(d, "classic.yaml")
        with open(classic, "w") as f:
            f.write(
                "groups:\n- name: classic\n  rules:\n"
                "  - alert: ClassicConnectionsHigh\n"
                "    expr: sum by (job, instance) (poolwatch_pg_connections) > 0.8 * "
                "max by (job, instance) (poolwatch_pg_max_connections)\n"
                "    for: 5m\n    labels: {severity: warning}\n")
        # Targets in a file Prometheus watches: sidecars of the forwarded layout come and go.
        self.targets_file = os.path.join(d, "targets.json")
        self.set_targets(targets)
        cfg = os.path.join(d, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(
                f"global:\n  scrape_interval: {interval}s\n  evaluation_interval: {interval}s\n"
                f"rule_files:\n  - {RULES}\n  - {classic}\n"
                "scrape_configs:\n  - job_name: poolwatch\n    honor_labels: true\n"
                f"    file_sd_configs:\n      - files: ['{self.targets_file}']\n"
                "        refresh_interval: 5s\n")
        self.proc = B.spawn(name, ["prometheus", f"--config.file={cfg}",
                                   f"--storage.tsdb.path={d}/data",
                                   f"--web.listen-address={HOST}:{self.port}"])
        B.wait_http(f"http://{HOST}:{self.port}/-/ready", timeout=120, proc=self.proc)

    def set_targets(self, targets):
        tmp = self.targets_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump([{"targets": sorted(targets)}], f)
        os.replace(tmp, self.targets_file)

    def query(self, path, **params):
        url = f"http://{HOST}:{self.port}{path}?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=60) as r:
            return json.load(r)["data"]

    def first_firing(self, start, end):
        """{(alertname, severity, app, replica): first time firing}, to the second; the replica
        is app_instance (the pushing pod), else the target's instance."""
        data = self.query("/api/v1/query_range", query='ALERTS{alertstate="firing"}',
                          start=start, end=end, step=1)
        out = {}
        for s in data["result"]:
            m = s["metric"]
            k = (m.get("alertname"), m.get("severity"), m.get("app", ""),
                 m.get("app_instance", m.get("instance", "")))
            out[k] = min(float(v[0]) for v in s["values"])
        return out

    def value_at(self, expr, t):
        r = self.query("/api/v1/query", query=expr, time=t)["result"]
        return float(r[0]["value"][1]) if r else None


def headroom(sc, t, capped):
    """Free slots at `t` under the limit that binds, as the application and PostgreSQL
    counted them: the pool's maximum minus its connections in use (capped), else the
    server's usable slots minus every client backend."""
    if capped:
        cap = int(sc.env["MAX_OPEN"])
        before = [n for (u, n) in getattr(sc, "stats", []) if u <= t]
        return (cap - before[-1], cap) if before else None
    used = sc.used_at(t)
    return (None if used is None else (sc.usable - used, sc.usable))


def measure(args):
    B.BASE = tempfile.mkdtemp(prefix="poolwatch-matrix-")
    os.chmod(B.BASE, 0o755)
    binary, detect = build()
    specs = [s for s in SCENARIOS if not args.only or s[0] in args.only.split(",")]
    layouts = ["direct", "forwarded"] if args.layout == "both" else [args.layout]
    log(f"starting {len(specs)} scenarios in {' and '.join(layouts)} layout, each with its "
        "own PostgreSQL and poolwatch")
    scenarios = [Scenario(s, binary, detect, layout) for s in specs for layout in layouts]
    proms = {30: Prometheus("prometheus-30s", 30, [f"{HOST}:{s.port}" for s in scenarios]),
             15: Prometheus("prometheus-15s", 15, [f"{HOST}:{s.port}" for s in scenarios])}

    def retarget(_):
        targets = [t for sc in scenarios for t in sc.targets()]
        for p in proms.values():
            p.set_targets(targets)
    Scenario.on_new_target = staticmethod(retarget)
    start = time.time()
    for sc in scenarios:
        if sc.name == "deploy":
            sc.start_app("old-1")
            sc.start_app("old-2")
        else:
            sc.start_app(f"{sc.name}-1")
    duration = args.minutes * 60
    deploys = [s for s in scenarios if s.name == "deploy"]
    new_at = start + 600
    old_gone = False
    log(f"running for {args.minutes} minutes")
    while time.time() - start < duration:
        for sc in scenarios:
            sc.poll()
        for deploy in deploys:
            if time.time() >= new_at and not any(p.instance.startswith("new") for p in deploy.apps):
                log(f"deploy ({deploy.layout}): two new replicas start")
                deploy.start_app("new-1")
                deploy.start_app("new-2")
        for deploy in deploys if not old_gone and time.time() >= new_at + 90 else []:
            log(f"deploy ({deploy.layout}): the old replicas leave")
            deploy.gone = [p for p in deploy.apps if p.instance.startswith("old")]
            for p in deploy.gone:
                B.stop_proc(p)
                deploy.apps.remove(p)
                sidecar = deploy.sidecars.pop(p.instance, None)
                if sidecar:
                    B.stop_proc(sidecar[0])
            old_gone = True
        time.sleep(1)
    end = time.time()
    for sc in scenarios:
        sc.read_events()
    firing = {iv: p.first_firing(start - 60, end + 60) for iv, p in proms.items()}
    rows = []
    for sc in scenarios:
        inst = f"{HOST}:{sc.port}"
        row = {"name": sc.name, "layout": sc.layout, "what": sc.what, "target": sc.target,
               "max_connections": sc.max_connections, "events": sc.events}
        t0 = sc.events.get("first_leak")
        row["verdict"] = (sc.verdict_at - t0) if (t0 and sc.verdict_at) else None
        row["verdict_any"] = sc.verdict_at is not None
        capped = "MAX_OPEN" in sc.env
        full = sc.events.get("pool_full" if capped else "server_full")
        row["full"] = (full - t0) if (t0 and full) else None
        for iv, fires in firing.items():
            mine = {k: v for k, v in fires.items() if k[2] == sc.app or k[3] == inst}
            pages = sorted((v, k[0], k[1]) for k, v in mine.items()
                           if k[0] != "ClassicConnectionsHigh")
            leak_pages = [p for p in pages if p[1] in LEAK_ALERTS]
            classic = [v for k, v in mine.items() if k[0] == "ClassicConnectionsHigh"]
            r = {"alerts": [(round(v - (t0 or start)), a, s) for v, a, s in pages]}
            first = leak_pages[0] if leak_pages else None
            if first and t0:
                r["page"] = (first[0] - t0, first[1], first[2])
                crit = [p for p in leak_pages if p[2] == "critical"]
                r["critical"] = (crit[0][0] - t0) if crit else None
                r["headroom"] = headroom(sc, first[0], capped)
            r["classic"] = (min(classic) - t0) if (classic and t0) else None
            r["any_alert"] = bool(pages)
            row[iv] = r
        rows.append(row)
    return rows, end - start


def fmt_s(v):
    return "–" if v is None else f"{v:.0f}"


def verdict_ok(row, iv):
    r = row[iv]
    if row["target"] is None:
        return not r["any_alert"] and not row["verdict_any"]
    within, severity = row["target"]
    page = r.get("page")
    if not page:
        return False
    t = r["critical"] if severity == "critical" else page[0]
    return t is not None and t <= within


def table(rows, minutes, elapsed, layouts=False):
    out = [
        f"Run by `python3 bench/detection.py` on {datetime.date.today()}, {os.cpu_count()} CPUs "
        f"(shared), {minutes} minutes per scenario ({elapsed / 60:.0f} minutes in all), all "
        "scenarios at once; poolwatch at its shipped defaults, the shipped rules unmodified. " +
        ("*Layout*: `direct`, the application pushes to the central poolwatch of its "
         "database; `forwarded`, it pushes to a sidecar poolwatch without a database, which "
         "forwards its pools to that central poolwatch (Prometheus scrapes both). "
         if layouts else "") +
        "Seconds from the first leaked connection. *Page* is the first "
        "`PoolwatchConnectionLeak` or `PoolwatchConnectionExhaustionPredicted` to fire; "
        "*headroom* the free slots under the limit that binds (the pool's when capped, else "
        "the server's usable slots) at that moment; *classic* the rule "
        "`sum(connections) > 0.8 × max_connections for 5m`. A dash: did not happen within "
        "the run.",
        "",
        "| scenario | interval | `leak_suspected` | first page (alert, severity) | headroom at the page | pool or server full | classic rule | target | met |",
        "|---|---|---:|---|---:|---:|---:|---|---|",
    ]
    if layouts:
        out[-2] = out[-2].replace("| scenario |", "| scenario | layout |")
        out[-1] = "|---" + out[-1]
    for row in rows:
        for iv in (30, 15):
            r = row[iv]
            page = r.get("page")
            page_s = f"{page[0]:.0f} ({page[1]}, {page[2]})" if page else "–"
            if r.get("critical") is not None and page and page[2] != "critical":
                page_s += f"; critical at {r['critical']:.0f}"
            hr = r.get("headroom")
            hr_s = f"{hr[0]:.0f} of {hr[1]:.0f}" if hr else "–"
            if row["target"] is None:
                target = "no page, no verdict"
                alerts = ", ".join(f"{a} {s}" for _, a, s in r["alerts"])
                if alerts:
                    page_s = f"fired: {alerts}"
                verdict = "never" if not row["verdict_any"] else "**called a leak**"
            else:
                within, sev = row["target"]
                target = f"{sev or 'a'} page ≤ {within} s"
                verdict = fmt_s(row["verdict"])
            ok = "yes" if verdict_ok(row, iv) else "**no**"
            what = f"{row['what']} | {row['layout']}" if layouts else row["what"]
            out.append(f"| {what} | {iv} s | {verdict} | {page_s} | {hr_s} | "
                       f"{fmt_s(row['full'])} | {fmt_s(r['classic'])} | {target} | {ok} |")
    return "\n".join(out)


def write_doc(section, marker="matrix"):
    text = open(DOC).read()
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    i, j = text.index(begin) + len(begin), text.index(end)
    with open(DOC, "w") as f:
        f.write(text[:i] + "\n" + section + "\n" + text[j:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=21, help="minutes per scenario (default 21)")
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--layout", choices=["direct", "forwarded", "both"], default="direct",
                    help="direct: the application pushes to the central poolwatch (the "
                    "matrix); forwarded: to a sidecar that forwards to it; both: each "
                    "scenario in both, written as the layout comparison")
    ap.add_argument("--no-write", action="store_true", help="print the table, leave the doc")
    args = ap.parse_args()
    try:
        rows, elapsed = measure(args)
    finally:
        B.cleanup()
    raw = os.path.join(tempfile.gettempdir(), f"poolwatch-matrix-{args.layout}.json")
    with open(raw, "w") as f:
        json.dump(rows, f, indent=1, default=str)
    layouts = args.layout != "direct"
    section = table(rows, args.minutes, elapsed, layouts)
    print(section)
    if not args.no_write:
        write_doc(section, "layouts" if layouts else "matrix")
        log("docs/detection.md updated")
    log(f"raw results: {raw}")
    failed = [f"{r['name']} ({r['layout']})" for r in rows for iv in (30, 15) if not verdict_ok(r, iv)]
    if failed:
        log("targets missed:", ", ".join(sorted(set(failed))))
        sys.exit(1)


if __name__ == "__main__":
    main()
