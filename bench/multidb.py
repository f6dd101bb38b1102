#!/usr/bin/env python3
"""One poolwatch sampling 50 databases with 200 backends each (issue 19), against a
single-database poolwatch on the same machine.

Starts `--clusters` throwaway PostgreSQL clusters on 127.0.0.1, `--dbs-per-cluster`
databases in each, and holds `--backends` real idle client sessions per cluster (spread
over its databases and 20 application names, opened with bench/pgwire.py). One poolwatch
(release build) gets a `databases` list with every database, at the default
`database.interval_seconds` (15 s); pg_stat_activity is server-wide, so every one of the
clusters x dbs-per-cluster samples reads `--backends` client backends (and the other
poolwatch sessions of its server, which it leaves out). Then a single-database poolwatch
(`database.url`, one of the same databases) runs for the same time. Measured from
/metrics (polled every second) and /proc: per database pg_up, the gap between successive
samples (from `poolwatch_pg_last_sample_timestamp_seconds`), the sample duration; the
process' CPU (share of one core) and RSS. Writes the table between `<!-- multidb:begin -->`
and `<!-- multidb:end -->` in docs/benchmarks.md.

    python3 bench/multidb.py [--minutes 5] [--clusters 5] [--dbs-per-cluster 10]
                             [--backends 200] [--no-build] [--no-write]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgwire  # noqa: E402
import run  # noqa: E402
from run import HOST, REPO, log  # noqa: E402

DEFAULT_INTERVAL = 15.0


def parse_metrics(text):
    """{(name, labels text): value} for the families the benchmark reads."""
    out = {}
    for line in text.splitlines():
        if not line.startswith("poolwatch_") and not line.startswith("process_"):
            continue
        head, _, v = line.rpartition(" ")
        try:
            out[head] = float(v)
        except ValueError:
            pass
    return out


class Watch:
    """Polls a poolwatch's /metrics every second for `seconds`; keeps, per database,
    the distinct sample timestamps, the durations and pg_up; and the process' CPU and
    RSS."""

    def __init__(self, pw_port, pid, names, label):
        self.http = run.Http(pw_port)
        self.pid = pid
        self.names = names
        self.label = label  # how a database is named in the series

    def series(self, m, family, name):
        return series(m, family, self.label(name))

    def run(self, seconds):
        ts = {n: [] for n in self.names}
        durations = {n: [] for n in self.names}
        ups = {n: [] for n in self.names}
        rss = []
        cpu0, t0 = run.cpu_seconds(self.pid), time.time()
        end = t0 + seconds
        while time.time() < end:
            m = parse_metrics(self.http.get()[1].decode())
            for n in self.names:
                t = self.series(m, "poolwatch_pg_last_sample_timestamp_seconds", n)
                if t is not None and (not ts[n] or ts[n][-1] != t):
                    ts[n].append(t)
                    d = self.series(m, "poolwatch_pg_sample_duration_seconds", n)
                    if d is not None:
                        durations[n].append(d)
                ups[n].append(self.series(m, "poolwatch_pg_up", n))
            rss.append(run.rss_kib(self.pid))
            time.sleep(max(0.0, 1.0 - (time.time() % 1.0)))
        cpu = (run.cpu_seconds(self.pid) - cpu0) / (time.time() - t0)
        gaps = {n: [b - a for a, b in zip(v, v[1:])] for n, v in ts.items()}
        return {
            "seconds": seconds,
            "cpu_core_pct": 100.0 * cpu,
            "rss_kib_median": statistics.median(rss),
            "rss_kib_max": max(rss),
            "samples": {n: len(v) for n, v in ts.items()},
            "gaps": gaps,
            "durations": durations,
            "up_fraction": {
                n: sum(1 for u in v if u == 1.0) / max(1, len(v)) for n, v in ups.items()
            },
        }


def series(m, family, label):
    """The value of `family{label}`; with `label` None, of the family's only series
    (whatever constant labels it carries)."""
    if label is not None:
        return m.get(f"{family}{label}")
    for k, v in m.items():
        if k == family or k.startswith(family + "{"):
            return v
    return None


def start_poolwatch(binary, name, body):
    port = run.free_port()
    cfg = os.path.join(run.BASE, f"{name}.yaml")
    with open(cfg, "w") as f:
        f.write(f"mode: central\nlisten_address: {HOST}:{port}\nlog_level: warn\n{body}")
    proc = run.spawn(name, [binary, "--config", cfg])
    run.wait_http(f"http://{HOST}:{port}/healthz", proc=proc)
    return proc, port


def wait_all_up(port, names, label, timeout):
    http = run.Http(port)
    deadline = time.time() + timeout
    while time.time() < deadline:
        m = parse_metrics(http.get()[1].decode())
        if all(series(m, "poolwatch_pg_up", label(n)) == 1.0 for n in names):
            return
        time.sleep(0.5)
    raise RuntimeError("not every database came up")


def summarize(r, names):
    all_gaps = [g for n in names for g in r["gaps"][n]]
    all_d = [d for n in names for d in r["durations"][n]]
    per_db_max_gap = [max(r["gaps"][n]) if r["gaps"][n] else None for n in names]
    per_db_med_d = [statistics.median(r["durations"][n]) for n in names if r["durations"][n]]
    return {
        "databases": len(names),
        "up": sum(1 for n in names if r["up_fraction"][n] == 1.0),
        "samples_min": min(r["samples"][n] for n in names),
        "gap_median": statistics.median(all_gaps) if all_gaps else None,
        "gap_p99": run.pct(all_gaps, 99) if all_gaps else None,
        "gap_max": max(all_gaps) if all_gaps else None,
        "gap_max_worst_db": max(g for g in per_db_max_gap if g is not None) if all_gaps else None,
        "duration_median": statistics.median(all_d) if all_d else None,
        "duration_max": max(all_d) if all_d else None,
        "duration_median_per_db_max": max(per_db_med_d) if per_db_med_d else None,
        "cpu_core_pct": r["cpu_core_pct"],
        "rss_mib_median": r["rss_kib_median"] / 1024,
        "rss_mib_max": r["rss_kib_max"] / 1024,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--clusters", type=int, default=5)
    ap.add_argument("--dbs-per-cluster", type=int, default=10)
    ap.add_argument("--backends", type=int, default=200, help="client backends per cluster")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--binary", default=os.path.join(REPO, "target", "release", "poolwatch"))
    args = ap.parse_args()
    if not args.no_build:
        log("cargo build --release")
        subprocess.run(["cargo", "build", "--release", "--bin", "poolwatch"], cwd=REPO,
                       check=True)
    run.BASE = tempfile.mkdtemp(prefix="poolwatch-multidb-")
    os.chmod(run.BASE, 0o755)
    held = []
    try:
        clusters = []
        names = []
        urls = {}
        for c in range(args.clusters):
            log(f"cluster {c}: initdb, {args.dbs_per_cluster} databases, {args.backends} backends")
            cl = run.Cluster(f"pg{c}", {
                "max_connections": str(args.backends + args.dbs_per_cluster + 20),
                "log_connections": "off",
            })
            clusters.append(cl)
            for d in range(args.dbs_per_cluster):
                db = f"db{d:02d}"
                cl.sql(f"CREATE DATABASE {db}")
                name = f"c{c}-{db}"
                names.append(name)
                urls[name] = f"postgres://postgres@{HOST}:{cl.port}/{db}?sslmode=disable"
            for i in range(args.backends):
                db = f"db{i % args.dbs_per_cluster:02d}"
                conn = pgwire.Conn(HOST, cl.port, "postgres", db, f"app-{i % 20:02d}")
                conn.query("SELECT 1")
                held.append(conn)
        log(f"{len(held)} client backends held over {len(clusters)} clusters")
        seconds = args.minutes * 60
        results = {}

        # The fleet: every database, default interval.
        body = "databases:\n" + "".join(
            f"  - name: {n}\n    url: {urls[n]}\n" for n in names)
        proc, port = start_poolwatch(args.binary, "multi", body)
        label = lambda n: f'{{database="{n}"}}'  # noqa: E731
        wait_all_up(port, names, label, 3 * DEFAULT_INTERVAL)
        sessions = [int(cl.sql("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'poolwatch'"))
                    for cl in clusters]
        seen = [int(cl.sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND application_name <> 'poolwatch'"))
                for cl in clusters]
        log(f"fleet up: poolwatch sessions per cluster {sessions}, other client backends {seen}")
        log(f"measuring the fleet for {seconds:.0f} s")
        r = Watch(port, proc.pid, names, label).run(seconds)
        results["multi"] = summarize(r, names)
        results["multi"]["sessions_per_cluster"] = sessions
        results["multi"]["backends_per_cluster"] = seen
        run.stop_proc(proc)

        # One database, as before the list.
        one = names[0]
        proc, port = start_poolwatch(args.binary, "single",
                                     f"database:\n  url: {urls[one]}\n")
        nolabel = lambda n: None  # noqa: E731
        wait_all_up(port, [one], nolabel, 3 * DEFAULT_INTERVAL)
        log(f"measuring one database for {seconds:.0f} s")
        r1 = Watch(port, proc.pid, [one], nolabel).run(seconds)
        results["single"] = summarize(r1, [one])
        run.stop_proc(proc)
        results["args"] = vars(args)
        results["interval"] = DEFAULT_INTERVAL
        with open("/tmp/poolwatch-multidb-results.json", "w") as f:
            json.dump(results, f, indent=1)
        section = table(results, args)
        print(section)
        if not args.no_write:
            write_doc(section)
    finally:
        for c in held:
            c.close()
        run.cleanup()


def fmt(v, unit="s", digits=2):
    return "–" if v is None else f"{v:.{digits}f} {unit}".strip()


def table(R, args):
    m, s = R["multi"], R["single"]
    n = m["databases"]
    per_db_rss = (m["rss_mib_median"] - s["rss_mib_median"]) / max(1, n - 1)
    cmd = (f"python3 bench/multidb.py --minutes {args.minutes:g} --clusters {args.clusters} "
           f"--dbs-per-cluster {args.dbs_per_cluster} --backends {args.backends}")
    L = [
        f"`{cmd}` on {time.strftime('%Y-%m-%d')}: {args.clusters} clusters x "
        f"{args.dbs_per_cluster} databases = {n} databases in one `databases` list, "
        f"{args.backends} real idle client backends per cluster (so every sample reads "
        f"{args.backends} backends: pg_stat_activity is server-wide; {args.clusters * args.backends} "
        f"held in all), default interval {R['interval']:.0f} s, measured for "
        f"{args.minutes:g} min each; poolwatch sessions seen per cluster: "
        f"{m['sessions_per_cluster']} (one per database), other client backends: "
        f"{m['backends_per_cluster']}.",
        "",
        "| | one poolwatch, " + f"{n} databases | one poolwatch, 1 database |",
        "|---|---|---|",
        f"| databases up the whole time | {m['up']} / {n} | {s['up']} / 1 |",
        f"| samples per database (fewest) | {m['samples_min']} | {s['samples_min']} |",
        f"| gap between samples, median / p99 / max | {fmt(m['gap_median'])} / {fmt(m['gap_p99'])} / {fmt(m['gap_max'])} | {fmt(s['gap_median'])} / {fmt(s['gap_p99'])} / {fmt(s['gap_max'])} |",
        f"| sample duration, median / max | {fmt(m['duration_median'] * 1000, 'ms', 1)} / {fmt(m['duration_max'] * 1000, 'ms', 1)} | {fmt(s['duration_median'] * 1000, 'ms', 1)} / {fmt(s['duration_max'] * 1000, 'ms', 1)} |",
        f"| CPU, % of one core | {m['cpu_core_pct']:.2f} % ({m['cpu_core_pct'] / n:.3f} % per database) | {s['cpu_core_pct']:.2f} % |",
        f"| RSS, median / max | {m['rss_mib_median']:.1f} / {m['rss_mib_max']:.1f} MiB ({m['rss_mib_median'] / n:.2f} MiB per database; {per_db_rss:.2f} MiB each beyond the first) | {s['rss_mib_median']:.1f} / {s['rss_mib_max']:.1f} MiB |",
    ]
    return "\n".join(L)


def write_doc(section):
    run.write_doc(section, "<!-- multidb:begin -->", "<!-- multidb:end -->")


if __name__ == "__main__":
    main()
