#!/usr/bin/env python3
"""poolwatch side by side with postgres_exporter and the Pushgateway (issue 9).

One run: a throwaway PostgreSQL, poolwatch (the static musl binary of the dist profile, as
the image ships it), Debian's prometheus-postgres-exporter and prometheus-pushgateway, and
wrk; everything on 127.0.0.1, every loop bounded. Detection is measured by bench/detection.py (shipped
defaults, real programs, docs/detection.md). Writes the tables between
`<!-- bench:begin -->` and `<!-- bench:end -->` in docs/benchmarks.md.

    python3 bench/run.py [--quick] [--no-write] [--runs N]

Standard library only (plus the binaries above). See docs/benchmarks.md.
"""

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ in bench/
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pgwire  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
MUSL = "x86_64-unknown-linux-musl"
CLK_TCK = os.sysconf("SC_CLK_TCK")
IS_ROOT = os.geteuid() == 0

PROCS = []       # Popen objects we started
CLUSTERS = []    # Cluster objects we started
BASE = None


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# --------------------------------------------------------------------------- helpers

def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def threads_cpu(pid):
    """CPU seconds of the live threads of `pid`, from schedstat (nanoseconds)."""
    total = 0.0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0]) / 1e9
        except (OSError, ValueError):
            pass
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(values, q):
    v = sorted(values)
    if not v:
        return float("nan")
    k = min(len(v) - 1, max(0, int(round(q / 100.0 * (len(v) - 1)))))
    return v[k]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def wait_http(url, timeout=60, proc=None):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            logf = os.path.join(BASE, f"{proc.bench_name}.log")
            raise RuntimeError(f"{proc.bench_name} exited: " + open(logf).read()[-2000:])
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except Exception as e:  # noqa: BLE001
            last = e
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {timeout}s: {last}")


def spawn(name, argv, env=None):
    out = open(os.path.join(BASE, f"{name}.log"), "wb")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    p.bench_name = name
    PROCS.append(p)
    return p


def stop_proc(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    if p in PROCS:
        PROCS.remove(p)


def cleanup():
    for p in list(PROCS):
        try:
            stop_proc(p)
        except BaseException:  # noqa: BLE001
            try:
                p.kill()
            except BaseException:  # noqa: BLE001
                pass
    for c in list(CLUSTERS):
        try:
            c.stop()
        except BaseException:  # noqa: BLE001
            pass
    if BASE and os.path.isdir(BASE) and not os.environ.get("BENCH_KEEP"):
        shutil.rmtree(BASE, ignore_errors=True)


def as_pg_owner(argv):
    return ["runuser", "-u", "postgres", "--"] + argv if IS_ROOT else argv


class Http:
    """A keep-alive HTTP/1.1 client; `get` returns (seconds, body bytes)."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(HOST, self.port, timeout=60)
            try:
                t = time.perf_counter()
                self.conn.request(method, path, body=body, headers=headers or {})
                r = self.conn.getresponse()
                data = r.read()
                return time.perf_counter() - t, r.status, data
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def get(self, path="/metrics", headers=None):
        dt, status, data = self.request("GET", path, headers=headers)
        if status != 200:
            raise RuntimeError(f"GET :{self.port}{path} -> {status}")
        return dt, data

    def get_gzip(self, path="/metrics"):
        """As Prometheus scrapes: `Accept-Encoding: gzip`; returns (seconds, bytes sent)."""
        dt, data = self.get(path, {"Accept-Encoding": "gzip"})
        if data[:2] != b"\x1f\x8b":
            raise RuntimeError(f"GET :{self.port}{path} with Accept-Encoding: gzip was not gzipped")
        return dt, data


def metric_value(text, name, labels=None):
    """First sample of `name` (whose labels include `labels`) in exposition `text`."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        rest = line[len(name):]
        if rest[:1] not in ("{", " "):
            continue
        if labels and not all(f'{k}="{v}"' in rest for k, v in labels.items()):
            continue
        try:
            return float(rest.rsplit(" ", 1)[1])
        except ValueError:
            continue
    return None


# --------------------------------------------------------------------------- PostgreSQL

class Cluster:
    def __init__(self, name, opts):
        self.dir = os.path.join(BASE, name)
        self.port = free_port()
        self.bindir = self._bindir()
        os.mkdir(self.dir, 0o700)
        if IS_ROOT:
            shutil.chown(self.dir, "postgres", "postgres")
        r = subprocess.run(as_pg_owner([
            os.path.join(self.bindir, "initdb"), "-D", self.dir, "-U", "postgres", "-A",
            "trust", "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C"]),
            capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("initdb failed: " + r.stderr)
        conf = {
            "listen_addresses": HOST, "port": str(self.port),
            "unix_socket_directories": self.dir, "fsync": "off",
            "synchronous_commit": "off", "full_page_writes": "off",
            "shared_buffers": "16MB", "log_line_prefix": "%m [%p] %u %a: ",
            "log_connections": "on", "superuser_reserved_connections": "3",
        }
        conf.update(opts)
        path = os.path.join(self.dir, "postgresql.auto.conf")
        with open(path, "w") as f:
            for k, v in conf.items():
                f.write(f"{k} = '{v}'\n")
        if IS_ROOT:
            shutil.chown(path, "postgres", "postgres")
        self.log = os.path.join(self.dir, "server.log")
        r = subprocess.run(as_pg_owner([
            os.path.join(self.bindir, "pg_ctl"), "-D", self.dir, "-l", self.log, "-w",
            "-t", "60", "start"]), capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError("pg_ctl start failed: " + r.stdout + r.stderr)
        CLUSTERS.append(self)

    @staticmethod
    def _bindir():
        if os.environ.get("POOLWATCH_PG_BINDIR"):
            return os.environ["POOLWATCH_PG_BINDIR"]
        cands = sorted(d for d in os.listdir("/usr/lib/postgresql")
                       if os.path.isfile(f"/usr/lib/postgresql/{d}/bin/initdb"))
        if not cands:
            raise RuntimeError("PostgreSQL server binaries not found (apt-get install postgresql)")
        return f"/usr/lib/postgresql/{cands[-1]}/bin"

    def stop(self):
        subprocess.run(as_pg_owner([os.path.join(self.bindir, "pg_ctl"), "-D", self.dir,
                                    "-w", "-m", "immediate", "stop"]),
                       capture_output=True)
        if self in CLUSTERS:
            CLUSTERS.remove(self)

    def sql(self, q):
        r = subprocess.run([os.path.join(self.bindir, "psql"), "-h", HOST, "-p",
                            str(self.port), "-U", "postgres", "-d", "postgres", "-XAtqc", q],
                           capture_output=True, text=True, timeout=120)
        if r.returncode:
            raise RuntimeError(f"psql {q!r}: {r.stderr}")
        return r.stdout.strip()

    def url(self, user):
        return f"postgres://{user}@{HOST}:{self.port}/postgres?sslmode=disable"

    def log_size(self):
        return os.path.getsize(self.log)

    def log_slice(self, start, end):
        with open(self.log, "rb") as f:
            f.seek(start)
            return f.read(end - start).decode("utf-8", "replace")

    def backend_pids(self, user):
        out = self.sql(f"SELECT pid FROM pg_stat_activity WHERE usename = '{user}'")
        return [int(x) for x in out.split()] if out else []


def statements_in(text, user):
    """Statements `user` ran, as log_statement=all logged them (simple or extended)."""
    n = 0
    for line in text.splitlines():
        if f"] {user} " in line and (" LOG:  statement: " in line or " LOG:  execute " in line):
            n += 1
    return n


def connections_in(text, user):
    return sum(1 for line in text.splitlines()
               if "connection authorized: user=" + user + " " in line)


def backend_cpu(pids):
    """CPU seconds of single-threaded PostgreSQL backends, from /proc/PID/schedstat
    (nanoseconds; /proc/PID/stat counts 10 ms ticks, too coarse for one sample)."""
    total = 0.0
    for p in pids:
        try:
            with open(f"/proc/{p}/schedstat") as f:
                total += int(f.read().split()[0]) / 1e9
        except (OSError, ValueError):
            pass
    return total


# --------------------------------------------------------------------------- tools

class Poolwatch:
    def __init__(self, binary, cluster, name="poolwatch", interval=5, analysis=None,
                 user="pw_bench"):
        self.port = free_port()
        self.interval = interval
        cfg = os.path.join(BASE, f"{name}.yaml")
        analysis = analysis or {}
        lines = [
            "mode: central", f"listen_address: {HOST}:{self.port}", "log_level: warn",
            "pools:", "  expiry_seconds: 7200", "  max_pools: 20000", "  max_apps: 20000",
            "  max_pools_per_app: 20000",
        ]
        if analysis:
            lines.append("analysis:")
            lines += [f"  {k}: {v}" for k, v in analysis.items()]
        if cluster is not None:
            lines += ["database:", f"  url: {cluster.url(user)}",
                      f"  interval_seconds: {interval}",
                      f"  statement_timeout_seconds: {min(5, interval)}",
                      f"  lock_timeout_seconds: {min(1, interval)}"]
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = spawn(name, [binary, "--config", cfg])
        wait_http(f"http://{HOST}:{self.port}/healthz", proc=self.proc)
        self.http = Http(self.port)

    @property
    def pid(self):
        return self.proc.pid

    def metrics(self):
        return self.http.get()[1].decode()

    def last_sample(self):
        return metric_value(self.metrics(), "poolwatch_pg_last_sample_timestamp_seconds")

    def wait_samples(self, k, timeout=None):
        """Returns right after `k` new samples completed (bounded)."""
        timeout = timeout or (k + 2) * self.interval + 30
        deadline = time.time() + timeout
        seen = self.last_sample()
        done = 0
        while time.time() < deadline:
            cur = self.last_sample()
            if cur is not None and cur != seen:
                seen = cur
                done += 1
                if done >= k:
                    return
            time.sleep(0.05)
        raise RuntimeError("poolwatch did not sample in time")


class Exporter:
    def __init__(self, cluster, name="postgres_exporter", user="pe_bench"):
        self.port = free_port()
        env = dict(os.environ, DATA_SOURCE_NAME=cluster.url(user).replace("postgres://", "postgresql://"))
        self.proc = spawn(name, ["prometheus-postgres-exporter",
                                 f"--web.listen-address={HOST}:{self.port}"], env=env)
        wait_http(f"http://{HOST}:{self.port}/metrics", proc=self.proc)
        self.http = Http(self.port)

    @property
    def pid(self):
        return self.proc.pid


class Pushgateway:
    def __init__(self, name="pushgateway", extra=()):
        self.port = free_port()
        self.proc = spawn(name, ["prometheus-pushgateway",
                                 f"--web.listen-address={HOST}:{self.port}",
                                 # persistence off (Debian's default writes to
                                 # /var/lib/prometheus/pushgateway.data)
                                 "--persistence.file=", *extra])
        wait_http(f"http://{HOST}:{self.port}/-/ready", proc=self.proc)
        self.http = Http(self.port)

    @property
    def pid(self):
        return self.proc.pid


GO_SQL_BODY = """# HELP go_sql_max_open_connections Maximum number of open connections to the database.
# TYPE go_sql_max_open_connections gauge
go_sql_max_open_connections{db_name="primary"} 25
# HELP go_sql_open_connections The number of established connections both in use and idle.
# TYPE go_sql_open_connections gauge
go_sql_open_connections{db_name="primary"} 7
# HELP go_sql_in_use_connections The number of connections currently in use.
# TYPE go_sql_in_use_connections gauge
go_sql_in_use_connections{db_name="primary"} 5
# HELP go_sql_idle_connections The number of idle connections.
# TYPE go_sql_idle_connections gauge
go_sql_idle_connections{db_name="primary"} 2
# HELP go_sql_wait_count_total The total number of connections waited for.
# TYPE go_sql_wait_count_total counter
go_sql_wait_count_total{db_name="primary"} 3
# HELP go_sql_wait_duration_seconds_total The total time blocked waiting for a new connection.
# TYPE go_sql_wait_duration_seconds_total counter
go_sql_wait_duration_seconds_total{db_name="primary"} 0.25
# HELP go_sql_max_idle_closed_total The total number of connections closed due to SetMaxIdleConns.
# TYPE go_sql_max_idle_closed_total counter
go_sql_max_idle_closed_total{db_name="primary"} 0
# HELP go_sql_max_idle_time_closed_total The total number of connections closed due to SetConnMaxIdleTime.
# TYPE go_sql_max_idle_time_closed_total counter
go_sql_max_idle_time_closed_total{db_name="primary"} 1
# HELP go_sql_max_lifetime_closed_total The total number of connections closed due to SetConnMaxLifetime.
# TYPE go_sql_max_lifetime_closed_total counter
go_sql_max_lifetime_closed_total{db_name="primary"} 4
"""
JSON_BODY = '{"max_open":25,"open":7,"in_use":5,"idle":2,"wait_count":3}'
TEXT_CT = "text/plain; version=0.0.4; charset=utf-8"


def group_path(i):
    """Grouping key number i: 100 applications (jobs), one instance per key."""
    return f"/metrics/job/app-{i % 100:03d}/instance/i-{i}"


# --------------------------------------------------------------------------- steps

def step_footprint_and_pool_scaling(pw, pg, steps, scrapes):
    """RSS idle, then at each pool count; /metrics time of both at each count. The same
    Pushgateway-format PUTs (one per grouping key) go to poolwatch and the Pushgateway."""
    res = {"idle": {"poolwatch": rss_kib(pw.pid), "pushgateway": rss_kib(pg.pid)},
           "steps": []}
    cpw, cpg = Http(pw.port), Http(pg.port)
    pushed = 0
    for n in steps:
        push_s = {}
        for name, c in (("pw", cpw), ("pg", cpg)):
            t0 = time.time()
            for i in range(pushed, n):
                _, st, body = c.request("PUT", group_path(i), GO_SQL_BODY.encode(),
                                        {"Content-Type": TEXT_CT})
                if st not in (200, 202):
                    raise RuntimeError(f"PUT {group_path(i)} to :{c.port} -> {st} {body[:200]!r}")
            push_s[name] = (time.time() - t0) / (n - pushed)
        pushed = n
        log(f"  {n} pools/groups pushed to both (per push: poolwatch "
            f"{push_s['pw']*1e3:.2f} ms, Pushgateway {push_s['pg']*1e3:.2f} ms)")
        time.sleep(pw.interval + 1)  # one analysis tick with them
        rss_before = (rss_kib(pw.pid), rss_kib(pg.pid))
        lat_pw, lat_pg, lat_gz = [], [], []
        size_pw = size_pg = size_gz = 0
        cpu_plain = cpu_gz = 0.0
        for _ in range(scrapes):
            c0 = threads_cpu(pw.pid)
            dt, body = cpw.get()
            cpu_plain += threads_cpu(pw.pid) - c0
            lat_pw.append(dt)
            size_pw = len(body)
            c0 = threads_cpu(pw.pid)
            dt, body = cpw.get_gzip()
            cpu_gz += threads_cpu(pw.pid) - c0
            lat_gz.append(dt)
            size_gz = len(body)
            dt, body = cpg.get()
            lat_pg.append(dt)
            size_pg = len(body)
        res["steps"].append({
            "pw_gz_p50": pct(lat_gz, 50), "pw_gz_bytes": size_gz,
            "pw_cpu_plain": cpu_plain / scrapes, "pw_cpu_gz": cpu_gz / scrapes,
            "pools": n, "pw_push": push_s["pw"], "pg_push": push_s["pg"],
            "pw_rss_noscrape": rss_before[0], "pg_rss_noscrape": rss_before[1],
            "pw_rss": rss_kib(pw.pid), "pg_rss": rss_kib(pg.pid),
            "pw_p50": pct(lat_pw, 50), "pg_p50": pct(lat_pg, 50),
            "pw_bytes": size_pw, "pg_bytes": size_pg,
        })
        s = res["steps"][-1]
        log(f"  {n}: poolwatch {s['pw_p50']*1e3:.2f} ms {s['pw_rss']} KiB "
            f"({s['pw_rss_noscrape']} before scrapes) | pushgateway {s['pg_p50']*1e3:.2f} ms "
            f"{s['pg_rss']} KiB ({s['pg_rss_noscrape']} before scrapes)")
    return res


def sidecar_idle(binary):
    """RSS of a sidecar as the chart runs one beside an application: no database, the
    socket view on, pushes on loopback; after three analysis ticks with nothing pushed."""
    port, push = free_port(), free_port()
    cfg = os.path.join(BASE, "sidecar.yaml")
    with open(cfg, "w") as f:
        f.write(f"mode: sidecar\nlisten_address: {HOST}:{port}\npush_listen_address: {HOST}:{push}\n"
                "log_level: warn\nsocket:\n  peers: 127.0.0.1:5432\n"
                "analysis:\n  interval_seconds: 2\n  window_seconds: 120\n")
    p = spawn("sidecar", [binary, "--config", cfg], env=dict(os.environ, POD_NAME="pod-1"))
    wait_http(f"http://{HOST}:{port}/healthz", proc=p)
    Http(port).get()
    time.sleep(7)
    kib = rss_kib(p.pid)
    stop_proc(p)
    return kib


def wrk_run(port, method, kind, duration, conns, threads):
    lua = os.path.join(BASE, f"wrk-{kind}.lua")
    if kind == "json":
        body, ct = JSON_BODY, "application/json"
        path_expr = '"/api/v1/pools/app-" .. string.format("%03d", i % 20) .. "/pool-" .. i .. "?instance=bench"'
    else:
        body, ct = GO_SQL_BODY, TEXT_CT
        path_expr = '"/metrics/job/app-" .. string.format("%03d", i % 100) .. "/instance/i-" .. i'
    with open(lua, "w") as f:
        f.write(f"""-- generated by bench/run.py: {kind} pushes over 100 keys
local n = 0
local body = {json.dumps(body)}
local headers = {{["Content-Type"] = "{ct}"}}
request = function()
  n = n + 1
  local i = n % 100
  return wrk.format("{method}", {path_expr}, headers, body)
end
""")
    r = subprocess.run(["wrk", "-t", str(threads), "-c", str(conns), "-d", f"{duration}s",
                        "--latency", "-s", lua, f"http://{HOST}:{port}"],
                       capture_output=True, text=True, timeout=duration + 60)
    out = r.stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors:.*", out)
    if not m or not p99:
        raise RuntimeError("wrk output not understood:\n" + out + r.stderr)
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}[p99.group(2)]
    total = re.search(r"(\d+) requests in", out)
    return {"rps": float(m.group(1)), "p99": float(p99.group(1)) * scale,
            "non2xx": int(bad.group(1)) if bad else 0,
            "requests": int(total.group(1)) if total else 0,
            "socket_errors": errs.group(0) if errs else ""}


def step_push(pw, pg, runs, duration, conns, threads):
    targets = [("poolwatch JSON", pw.port, "POST", "json"),
               ("poolwatch Pushgateway format", pw.port, "PUT", "text"),
               ("Pushgateway", pg.port, "PUT", "text")]
    rounds = []
    for r in range(runs):
        row = {}
        order = targets[r % 3:] + targets[:r % 3]  # rotate who goes first
        for name, port, method, kind in order:
            row[name] = wrk_run(port, method, kind, duration, conns, threads)
            log(f"  run {r + 1} {name}: {row[name]['rps']:.0f}/s p99 "
                f"{row[name]['p99']*1e3:.2f} ms non-2xx {row[name]['non2xx']}")
        rounds.append(row)
    return rounds


class Holder:
    """The client connections (mixed states, 20 applications), opened in this process."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.conns = []

    def grow_to(self, n):
        t0 = time.time()
        while len(self.conns) < n:
            self.conns.append(pgwire.open_mixed(HOST, self.cluster.port, "app_user",
                                                "postgres", len(self.conns)))
            if time.time() - t0 > 600:
                raise RuntimeError("opening connections took over 10 minutes")
        log(f"  {n} client connections open ({time.time() - t0:.1f}s)")

    def close(self):
        for c in self.conns:
            c.close()
        self.conns = []


def measure_pw_sample(pw, cluster, samples):
    """poolwatch's own work per sample: statements (log), its backend's CPU, its own CPU,
    and the sample duration it reports."""
    pw.wait_samples(1)
    pids = cluster.backend_pids("pw_bench")
    # Not polled during the window (a scrape costs poolwatch CPU too): samples run on a
    # fixed interval, so the window holds `samples` of them.
    time.sleep(pw.interval / 2)
    off, bcpu, pcpu = cluster.log_size(), backend_cpu(pids), threads_cpu(pw.pid)
    time.sleep(samples * pw.interval)
    bcpu1, pcpu1 = backend_cpu(pids), threads_cpu(pw.pid)
    durs = [metric_value(pw.metrics(), "poolwatch_pg_sample_duration_seconds")]
    time.sleep(0.3)  # let the log catch up
    text = cluster.log_slice(off, cluster.log_size())
    return {
        "statements": statements_in(text, "pw_bench") / samples,
        "backend_cpu": (bcpu1 - bcpu) / samples,
        "process_cpu": (pcpu1 - pcpu) / samples,
        "sample_duration": med(durs),
        "reconnects": connections_in(text, "pw_bench"),
    }


def scrape_round(pw, ex, cluster, n, per_sample):
    """n interleaved scrapes of each; latencies, CPU of each process, and the work each
    put on PostgreSQL in the window."""
    cpw, cex = Http(pw.port), Http(ex.port)
    cpw.get(), cex.get()  # warm connections
    off = cluster.log_size()
    pe_pids_before = cluster.backend_pids("pe_bench")
    pw_pids = cluster.backend_pids("pw_bench")
    c0 = (cpu_seconds(pw.pid), cpu_seconds(ex.pid), backend_cpu(pe_pids_before),
          backend_cpu(pw_pids))
    lat_pw, lat_ex = [], []
    for _ in range(n):
        lat_pw.append(cpw.get()[0])
        lat_ex.append(cex.get()[0])
    pe_pids_after = cluster.backend_pids("pe_bench")
    gone = backend_cpu([p for p in pe_pids_after if p not in pe_pids_before])
    c1 = (cpu_seconds(pw.pid), cpu_seconds(ex.pid), backend_cpu(pe_pids_before) + gone,
          backend_cpu(pw_pids))
    time.sleep(0.3)
    text = cluster.log_slice(off, cluster.log_size())
    pw_stmts = statements_in(text, "pw_bench")
    pw_samples = pw_stmts / per_sample["statements"] if per_sample["statements"] else 0
    # poolwatch's process CPU in the window, less what its samples cost (measured idle)
    pw_cpu = (c1[0] - c0[0]) - pw_samples * per_sample["process_cpu"]
    return {
        "pw_p50": pct(lat_pw, 50), "pw_p99": pct(lat_pw, 99),
        "ex_p50": pct(lat_ex, 50), "ex_p99": pct(lat_ex, 99),
        "pw_cpu": max(pw_cpu, 0.0) / n, "ex_cpu": (c1[1] - c0[1]) / n,
        "ex_stmts": statements_in(text, "pe_bench") / n,
        "ex_backend_cpu": (c1[2] - c0[2]) / n,
        "ex_connects": connections_in(text, "pe_bench"),
        "pw_samples_in_window": pw_samples, "pw_stmts_in_window": pw_stmts,
        "window": sum(lat_pw) + sum(lat_ex),
    }


def step_backends(pw, ex, cluster, holder, steps, runs, scrapes, scale_scrapes, samples):
    out = {"steps": [], "scrape": None}
    for n in steps:
        holder.grow_to(n)
        pw.wait_samples(2)
        per = measure_pw_sample(pw, cluster, samples)
        cpw, cex = Http(pw.port), Http(ex.port)
        lat_pw, lat_ex = [], []
        for _ in range(scale_scrapes):
            lat_pw.append(cpw.get()[0])
            lat_ex.append(cex.get()[0])
        row = {"backends": n, "pw_p50": pct(lat_pw, 50), "ex_p50": pct(lat_ex, 50),
               "pw_rss": rss_kib(pw.pid), "ex_rss": rss_kib(ex.pid),
               "pw_bytes": len(cpw.get()[1]), "ex_bytes": len(cex.get()[1]), **per}
        out["steps"].append(row)
        log(f"  {n} backends: poolwatch {row['pw_p50']*1e3:.2f} ms / sample "
            f"{row['sample_duration']*1e3:.1f} ms, {row['statements']:.1f} stmts, "
            f"backend {row['backend_cpu']*1e3:.1f} ms CPU | exporter {row['ex_p50']*1e3:.1f} ms")
        if n == 1000:
            rounds = []
            for r in range(runs):
                rounds.append(scrape_round(pw, ex, cluster, scrapes, per))
                x = rounds[-1]
                log(f"  scrape run {r + 1}: poolwatch p50 {x['pw_p50']*1e3:.2f} ms p99 "
                    f"{x['pw_p99']*1e3:.2f} ms cpu {x['pw_cpu']*1e3:.2f} ms | exporter p50 "
                    f"{x['ex_p50']*1e3:.1f} ms p99 {x['ex_p99']*1e3:.1f} ms cpu "
                    f"{x['ex_cpu']*1e3:.2f} ms, {x['ex_stmts']:.1f} stmts/scrape, poolwatch "
                    f"stmts in window {x['pw_stmts_in_window']}")
            out["scrape"] = {"rounds": rounds, "per_sample": per}
    return out


# --------------------------------------------------------------------------- report

def fmt_ms(s):
    if s is None:
        return "n/a"
    ms = s * 1e3
    return f"{ms:.2f} ms" if ms < 10 else f"{ms:.1f} ms"


def fmt_mib(kib):
    return f"{kib / 1024:.1f} MiB"


def growth(a, b, na, nb):
    """Ratio of b to a per 10x of n."""
    if not a or not b:
        return "n/a"
    import math
    exp = math.log(b / a) / math.log(nb / na)
    return f"x{b / a:.1f} for x{nb / na:.0f} (x{10 ** exp:.1f} per 10x; exponent {exp:.2f})"


def report(R, args):
    L = []
    mode = "--quick" if args.quick else "full"
    L.append("## Side by side with postgres_exporter and the Pushgateway")
    L.append("")
    L.append(f"Produced by `python3 bench/run.py{' --quick' if args.quick else ''}` ({mode} mode) "
             f"on {R['date']}: {R['cpus']} CPUs (shared, noisy), poolwatch "
             f"{R['versions']['poolwatch']} (dist profile, static musl), postgres_exporter "
             f"{R['versions']['exporter']}, Pushgateway {R['versions']['pushgateway']}, "
             f"Prometheus {R['versions']['prometheus']}, PostgreSQL {R['versions']['postgres']}, "
             f"wrk {R['versions']['wrk']}. Each figure is the median of {args.runs} runs "
             "unless said otherwise; every ratio is poolwatch : other computed within one run, "
             "then the median taken. Regenerated between the `bench` markers by the script.")
    L.append("")

    # 1. scrape
    S = R["backends"]["scrape"]
    rounds = S["rounds"]
    per = S["per_sample"]
    L.append("### 1. Scrape: 1,000 client connections, 20 applications, mixed states")
    L.append("")
    L.append(f"Half idle, a quarter idle in transaction, a quarter active (`pg_sleep`); "
             f"{args.scrapes} sequential scrapes of each tool per run, interleaved "
             "(poolwatch, exporter, poolwatch, ...) over keep-alive connections. CPU per "
             "scrape: the process's utime+stime over the run divided by the scrapes "
             "(poolwatch's minus what its own samples cost in the window, measured apart). "
             "Work on PostgreSQL: each tool connects as its own role with `log_statement = "
             "all` set on the role; statements are counted in the server log over the window, "
             "and the CPU of the tool's backend processes is read from `/proc/PID/stat`.")
    L.append("")
    L.append("| | poolwatch | postgres_exporter | ratio (exporter ÷ poolwatch) |")
    L.append("|---|---:|---:|---:|")

    def row(label, kp, ke, f=fmt_ms):
        vp, ve = med([r[kp] for r in rounds]), med([r[ke] for r in rounds])
        ratio = med([r[ke] / r[kp] for r in rounds if r[kp]])
        L.append(f"| {label} | {f(vp)} | {f(ve)} | {ratio:.1f}× |" if ratio else
                 f"| {label} | {f(vp)} | {f(ve)} | n/a |")
        return ratio
    r50 = row("/metrics latency p50", "pw_p50", "ex_p50")
    r99 = row("/metrics latency p99", "pw_p99", "ex_p99")
    rcpu = row("CPU per scrape (tool process)", "pw_cpu", "ex_cpu")
    ex_st = med([r["ex_stmts"] for r in rounds])
    ex_bc = med([r["ex_backend_cpu"] for r in rounds])
    pw_win = med([r["pw_stmts_in_window"] - r["pw_samples_in_window"] * per["statements"]
                  for r in rounds])
    L.append(f"| statements on PostgreSQL per scrape | {pw_win:.0f} (scrapes read memory) | "
             f"{ex_st:.1f} | – |")
    L.append(f"| backend CPU on PostgreSQL per scrape | 0 | {fmt_ms(ex_bc)} | – |")
    L.append(f"| per sample, every `interval_seconds` (poolwatch only) | {per['statements']:.1f} "
             f"statements, backend CPU {fmt_ms(per['backend_cpu'])}, poolwatch CPU "
             f"{fmt_ms(per['process_cpu'])}, `poolwatch_pg_sample_duration_seconds` "
             f"{fmt_ms(per['sample_duration'])} | – | – |")
    L.append("")
    L.append(f"The exporter opened {med([r['ex_connects'] for r in rounds]):.0f} new "
             "connection(s) per run; poolwatch's session stayed the same. poolwatch samples "
             "on its own interval whatever the scrape rate, so at one scrape per 15 s "
             "interval its database work per scrape equals one sample; the exporter's grows "
             "with the number of Prometheus servers scraping it.")
    L.append("")

    # 2. push
    P = R["push"]
    names = ["poolwatch JSON", "poolwatch Pushgateway format", "Pushgateway"]
    L.append("### 2. Push throughput on loopback")
    L.append("")
    L.append(f"`wrk -t{args.wrk_threads} -c{args.wrk_conns} -d{args.push_seconds}s` with a "
             "Lua script spreading pushes over 100 keys: poolwatch's JSON endpoint (`POST "
             "/api/v1/pools/app-NNN/pool-K`), poolwatch's Pushgateway-format endpoint and the "
             "real Pushgateway with the same body (`PUT /metrics/job/app-NNN/instance/i-K`, "
             "the nine `go_sql_*` families of client_golang's DBStats collector, text format). "
             "The order rotates between runs.")
    L.append("")
    L.append("| endpoint | pushes/s | latency p99 | non-2xx | ratio to the Pushgateway (pushes/s) |")
    L.append("|---|---:|---:|---:|---:|")
    push_ratio = {}
    for nm in names:
        rps = med([r[nm]["rps"] for r in P])
        p99 = med([r[nm]["p99"] for r in P])
        bad = sum(r[nm]["non2xx"] for r in P)
        ratio = med([r[nm]["rps"] / r["Pushgateway"]["rps"] for r in P])
        push_ratio[nm] = ratio
        L.append(f"| {nm} | {rps:,.0f} | {fmt_ms(p99)} | {bad} | {ratio:.1f}× |")
    L.append("")

    # 3. footprint
    F = R["pools"]
    B = R["backends"]["steps"]
    idle = F["idle"]
    L.append("### 3. Footprint")
    L.append("")
    L.append("Resident memory (`VmRSS`). The Pushgateway-format pushes of step 2's body go "
             "to poolwatch and to the Pushgateway alike, one grouping key per pool (100 "
             "applications); postgres_exporter holds no pools, so its column is the memory "
             "it needs for the same database (idle, then after scrapes at 1,000 backends). "
             "poolwatch is connected to the database throughout.")
    L.append("")
    L.append("| | poolwatch | postgres_exporter | Pushgateway |")
    L.append("|---|---:|---:|---:|")
    pw1000 = next((s for s in B if s["backends"] == 1000), None)
    L.append(f"| idle | {fmt_mib(idle['poolwatch'])} | {fmt_mib(R['exporter_idle_rss'])} | "
             f"{fmt_mib(idle['pushgateway'])} |")
    L.append(f"| idle, sidecar mode (no database, socket view on) | {fmt_mib(R['sidecar_idle_rss'])} | – | – |")
    for s in F["steps"]:
        if s["pools"] in (100, 10000):
            L.append(f"| {s['pools']:,} pools / groups: before scrapes, after {args.scale_scrapes} "
                     f"| {fmt_mib(s['pw_rss_noscrape'])}, {fmt_mib(s['pw_rss'])} | – | "
                     f"{fmt_mib(s['pg_rss_noscrape'])}, {fmt_mib(s['pg_rss'])} |")
    if pw1000:
        L.append(f"| 1,000 backends, after the scrapes | {fmt_mib(pw1000['pw_rss'])} | "
                 f"{fmt_mib(pw1000['ex_rss'])} | – |")
    sz = R["sizes"]
    L.append(f"| binary | {sz['poolwatch']/1e6:.2f} MB | {sz['exporter']/1e6:.2f} MB | "
             f"{sz['pushgateway']/1e6:.2f} MB |")
    L.append("| image | 8.63 MB (`buildah images`, [docker.md](docker.md)) | – | – |")
    L.append("")
    mem = R["mem_ratios"]
    L.append(f"Ratios: poolwatch's RSS is {mem['idle_vs_exporter']:.2f} of the exporter's "
             f"idle, {mem['idle_vs_pushgateway']:.2f} of the Pushgateway's idle, "
             f"{mem['p100_vs_pushgateway']:.2f} at 100 pools, "
             f"{mem['p10000_vs_pushgateway']:.2f} at 10,000 pools, and "
             + (f"{mem['b1000_vs_exporter']:.2f} of the exporter's at 1,000 backends."
                if mem.get("b1000_vs_exporter") else "n/a at 1,000 backends."))
    L.append("")

    # 4. scaling
    L.append("### 4. Scaling")
    L.append("")
    L.append(f"Pools (the same Pushgateway-format pushes to both, one key at a time; "
             f"/metrics: median of {args.scale_scrapes} interleaved scrapes after one analysis "
             "tick; push: mean time of one sequential PUT while loading the step). The "
             "Pushgateway runs here with `--push.disable-consistency-check`: with its default "
             "check every push gathers and checks all groups held, so loading 10,000 groups "
             "one PUT at a time is quadratic (in a trial run the 900 PUTs from 100 to 1,000 "
             "groups took 35 s together with poolwatch's). Its RSS is unaffected; step 2 uses "
             "the default.")
    L.append("")
    L.append("| pools | poolwatch /metrics | size | poolwatch RSS | poolwatch push (sequential) | Pushgateway /metrics | size | Pushgateway RSS | Pushgateway push (sequential) |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in F["steps"]:
        L.append(f"| {s['pools']:,} | {fmt_ms(s['pw_p50'])} | {s['pw_bytes']/1024:.0f} KiB | "
                 f"{fmt_mib(s['pw_rss'])} | {fmt_ms(s['pw_push'])} | {fmt_ms(s['pg_p50'])} | "
                 f"{s['pg_bytes']/1024:.0f} KiB | {fmt_mib(s['pg_rss'])} | {fmt_ms(s['pg_push'])} |")
    L.append("")
    L.append("`/metrics` with `Accept-Encoding: gzip` (as Prometheus scrapes), interleaved with "
             "the plain scrapes above; CPU is poolwatch's threads' time per scrape "
             "(`/proc/PID/task/*/schedstat`), the analysis tick included when it fell in:")
    L.append("")
    L.append("| pools | plain: p50, CPU, bytes | gzip: p50, CPU, bytes | gzip costs | bytes saved |")
    L.append("|---:|---:|---:|---:|---:|")
    for s in F["steps"]:
        L.append(f"| {s['pools']:,} | {fmt_ms(s['pw_p50'])}, {fmt_ms(s['pw_cpu_plain'])}, "
                 f"{s['pw_bytes']/1024:.0f} KiB | {fmt_ms(s['pw_gz_p50'])}, {fmt_ms(s['pw_cpu_gz'])}, "
                 f"{s['pw_gz_bytes']/1024:.0f} KiB | +{fmt_ms(s['pw_cpu_gz'] - s['pw_cpu_plain'])} CPU, "
                 f"+{fmt_ms(s['pw_gz_p50'] - s['pw_p50'])} p50 | "
                 f"{(1 - s['pw_gz_bytes'] / s['pw_bytes']) * 100:.0f}% |")
    a, b = F["steps"][0], F["steps"][-1]
    L.append("")
    L.append(f"Growth from {a['pools']:,} to {b['pools']:,} pools: poolwatch's /metrics "
             f"{growth(a['pw_p50'], b['pw_p50'], a['pools'], b['pools'])}, its RSS above idle "
             f"{growth(max(a['pw_rss'] - idle['poolwatch'], 1), max(b['pw_rss'] - idle['poolwatch'], 1), a['pools'], b['pools'])}; "
             f"the Pushgateway's /metrics "
             f"{growth(a['pg_p50'], b['pg_p50'], a['pools'], b['pools'])}.")
    L.append("")
    L.append(f"Backends (mixed states, 20 applications; poolwatch interval "
             f"{R['interval']} s; per-sample figures are the mean over {args.samples} "
             "samples, unscraped; the sample time is poolwatch's own "
             "`poolwatch_pg_sample_duration_seconds`):")
    L.append("")
    L.append("| backends | poolwatch /metrics | poolwatch sample (queries) | statements / sample | its backend's CPU / sample | poolwatch CPU / interval (sample + tick) | poolwatch RSS | exporter /metrics | exporter RSS |")
    L.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in B:
        L.append(f"| {s['backends']:,} | {fmt_ms(s['pw_p50'])} | {fmt_ms(s['sample_duration'])} | "
                 f"{s['statements']:.1f} | {fmt_ms(s['backend_cpu'])} | {fmt_ms(s['process_cpu'])} | "
                 f"{fmt_mib(s['pw_rss'])} | {fmt_ms(s['ex_p50'])} | {fmt_mib(s['ex_rss'])} |")
    a, b = B[0], B[-1]
    L.append("")
    L.append(f"Growth from {a['backends']:,} to {b['backends']:,} backends: poolwatch's sample "
             f"{growth(a['sample_duration'], b['sample_duration'], a['backends'], b['backends'])}, "
             f"its CPU per sample {growth(a['process_cpu'], b['process_cpu'], a['backends'], b['backends'])}, "
             f"its /metrics {growth(a['pw_p50'], b['pw_p50'], a['backends'], b['backends'])}; "
             f"the exporter's /metrics {growth(a['ex_p50'], b['ex_p50'], a['backends'], b['backends'])}. "
             "Analysis tick: poolwatch exports no timing of it; the `/metrics` render above "
             "includes the per-application series the tick produces, and `benches/analysis.rs` "
             "(section above) times the tick itself.")
    L.append("")

    R["_ratios"] = {"scrape_p50": r50, "scrape_p99": r99, "cpu": rcpu, "push": push_ratio}

    # targets of issue 9, judged on this run's figures
    def verdict(ok):
        return "met" if ok else "**missed**"
    mem = R["mem_ratios"]
    mem_items = [("idle vs postgres_exporter", mem["idle_vs_exporter"]),
                 ("idle vs Pushgateway", mem["idle_vs_pushgateway"]),
                 ("100 pools vs Pushgateway", mem["p100_vs_pushgateway"]),
                 ("10,000 pools vs Pushgateway", mem["p10000_vs_pushgateway"])]
    if mem.get("b1000_vs_exporter"):
        mem_items.append(("1,000 backends vs postgres_exporter", mem["b1000_vs_exporter"]))
    F = R["pools"]
    e_pools = __import__("math").log(F["steps"][-1]["pw_p50"] / F["steps"][0]["pw_p50"]) / \
        __import__("math").log(F["steps"][-1]["pools"] / F["steps"][0]["pools"])
    B = R["backends"]["steps"]
    e_back = __import__("math").log(B[-1]["sample_duration"] / B[0]["sample_duration"]) / \
        __import__("math").log(B[-1]["backends"] / B[0]["backends"])
    L.append("### Targets (issues 9 and 15), judged on this run")
    L.append("")
    L.append("| target | figure | verdict |")
    L.append("|---|---|---|")
    L.append(f"| /metrics ≥ 10× faster than postgres_exporter's (1,000 backends) | p50 {r50:.1f}×, "
             f"p99 {r99:.1f}×, CPU {rcpu:.1f}× | {verdict(r50 >= 10 and r99 >= 10)} |")
    for label, v in mem_items:
        L.append(f"| RSS at most half, {label} | {v:.2f} | {verdict(v <= 0.5)} |")
    sc = R["sidecar_idle_rss"]
    L.append(f"| sidecar idle under 4 MiB | {fmt_mib(sc)} | {verdict(sc < 4096)} |")
    gz = {s["pools"]: s for s in F["steps"]}
    gz_txt = "; ".join(f"{n:,} pools: {(1 - gz[n]['pw_gz_bytes'] / gz[n]['pw_bytes']) * 100:.0f}% fewer bytes "
                       f"for +{fmt_ms(gz[n]['pw_cpu_gz'] - gz[n]['pw_cpu_plain'])} CPU"
                       for n in (1000, 10000) if n in gz)
    L.append(f"| gzip on /metrics when asked | {gz_txt} | {verdict(bool(gz_txt))} |")
    for nm in ("poolwatch JSON", "poolwatch Pushgateway format"):
        L.append(f"| push ≥ 5× the Pushgateway's, {nm} | {push_ratio[nm]:.1f}× | "
                 f"{verdict(push_ratio[nm] >= 5)} |")
    L.append(f"| linear growth, /metrics over pools | exponent {e_pools:.2f} | {verdict(e_pools <= 1.15)} |")
    L.append(f"| linear growth, sample over backends | exponent {e_back:.2f} | {verdict(e_back <= 1.15)} |")
    L.append("")
    L.append("Exponent: log(time ratio) ÷ log(size ratio) between the first and last step; 1 "
             "is linear, below 1 means fixed costs still weigh at the small end.")
    return "\n".join(L)


def write_doc(section, begin="<!-- bench:begin -->", end="<!-- bench:end -->"):
    """Replaces what docs/benchmarks.md holds between `begin` and `end` with `section`
    (appended with the markers when they are not there)."""
    path = os.path.join(REPO, "docs", "benchmarks.md")
    text = open(path).read()
    block = f"{begin}\n{section}\n{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def version(argv, pat):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        m = re.search(pat, r.stdout + r.stderr)
        return m.group(1) if m else "?"
    except Exception:  # noqa: BLE001
        return "?"


# --------------------------------------------------------------------------- main

def main():
    global BASE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="shorter runs (about 10 min)")
    ap.add_argument("--no-write", action="store_true", help="print the tables, leave docs/benchmarks.md alone")
    ap.add_argument("--no-build", action="store_true", help=f"use target/{MUSL}/dist/poolwatch as it is")
    ap.add_argument("--binary", help="the poolwatch binary to measure (default: the static musl build)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    q = args.quick
    args.scrapes = 100 if q else 200
    args.scale_scrapes = 20 if q else 50
    args.samples = 3 if q else 5
    args.push_seconds = 5 if q else 10
    args.wrk_conns, args.wrk_threads = 16, 2
    backend_steps = [100, 1000, 5000]
    pool_steps = [100, 1000, 10000]

    for tool in ("wrk", "prometheus-postgres-exporter", "prometheus-pushgateway", "prometheus"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found: apt-get install wrk prometheus-postgres-exporter "
                     "prometheus-pushgateway prometheus postgresql")
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))

    BASE = tempfile.mkdtemp(prefix="poolwatch-bench-")
    os.chmod(BASE, 0o755)
    def on_signal(signum, _frame):
        for s2 in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s2, signal.SIG_IGN)  # a second signal must not interrupt cleanup
        sys.exit(128 + signum)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    t_start = time.time()
    try:
        # The binary as the image ships it: static, musl (Dockerfile).
        binary = args.binary or os.path.join(REPO, "target", MUSL, "dist", "poolwatch")
        if not args.no_build and not args.binary:
            log(f"cargo build --profile dist --target {MUSL}")
            if subprocess.run(["cargo", "build", "--profile", "dist", "--quiet", "--locked",
                               "--target", MUSL], cwd=REPO).returncode:
                if not os.path.isfile(binary):
                    sys.exit(f"cargo build --profile dist --target {MUSL} failed and no {binary} "
                             f"(rustup target add {MUSL}; apt-get install musl-tools)")
                log(f"WARNING: cargo build failed; using the existing {binary}")
        R = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "interval": 5}
        R["versions"] = {
            "poolwatch": version([binary, "--version"], r"(\d+\.\d+\.\d+\S*)"),
            "exporter": version(["prometheus-postgres-exporter", "--version"], r"version (\S+)"),
            "pushgateway": version(["prometheus-pushgateway", "--version"], r"version (\S+)"),
            "prometheus": version(["prometheus", "--version"], r"version (\S+)"),
            "wrk": version(["wrk", "-v"], r"wrk (\S+)"),
            "postgres": "?",
        }
        R["sizes"] = {"poolwatch": os.path.getsize(binary),
                      "exporter": os.path.getsize(shutil.which("prometheus-postgres-exporter")),
                      "pushgateway": os.path.getsize(shutil.which("prometheus-pushgateway"))}

        log("PostgreSQL: max_connections = 6000")
        cl = Cluster("pg", {"max_connections": "6000"})
        R["versions"]["postgres"] = cl.sql("SHOW server_version").split()[0]
        cl.sql("CREATE ROLE pw_bench LOGIN; GRANT pg_monitor TO pw_bench;"
               "CREATE ROLE pe_bench LOGIN; GRANT pg_monitor TO pe_bench;"
               "CREATE ROLE app_user LOGIN;"
               "ALTER ROLE pw_bench SET log_statement = 'all';"
               "ALTER ROLE pe_bench SET log_statement = 'all';")
        pw = Poolwatch(binary, cl, interval=R["interval"])
        # Loading 10,000 groups one PUT at a time is quadratic with the Pushgateway's
        # default consistency check (every push gathers all groups): minutes per thousand.
        # The footprint and scaling step turns it off; the push step (100 groups) keeps it.
        pg = Pushgateway(extra=["--push.disable-consistency-check"])
        ex = Exporter(cl)
        pw.wait_samples(1)
        time.sleep(2)
        R["exporter_idle_rss"] = rss_kib(ex.pid)
        R["sidecar_idle_rss"] = sidecar_idle(binary)

        log("footprint and pool scaling")
        R["pools"] = step_footprint_and_pool_scaling(pw, pg, pool_steps, args.scale_scrapes)

        log("push throughput (fresh poolwatch and Pushgateway)")
        stop_proc(pw.proc)
        stop_proc(pg.proc)
        pw = Poolwatch(binary, cl, name="poolwatch-2", interval=R["interval"])
        pg = Pushgateway(name="pushgateway-2")
        R["push"] = step_push(pw, pg, args.runs, args.push_seconds, args.wrk_conns, args.wrk_threads)
        stop_proc(pg.proc)
        stop_proc(pw.proc)

        log("backends: scrape and scaling (fresh poolwatch)")
        pw = Poolwatch(binary, cl, name="poolwatch-3", interval=R["interval"])
        holder = Holder(cl)
        try:
            R["backends"] = step_backends(pw, ex, cl, holder, backend_steps, args.runs,
                                          args.scrapes, args.scale_scrapes, args.samples)
        finally:
            holder.close()
        stop_proc(pw.proc)
        stop_proc(ex.proc)
        cl.stop()

        F, B = R["pools"], R["backends"]["steps"]
        s100 = next(s for s in F["steps"] if s["pools"] == 100)
        s10k = next(s for s in F["steps"] if s["pools"] == 10000)
        b1000 = next((s for s in B if s["backends"] == 1000), None)
        R["mem_ratios"] = {
            "idle_vs_exporter": F["idle"]["poolwatch"] / R["exporter_idle_rss"],
            "idle_vs_pushgateway": F["idle"]["poolwatch"] / F["idle"]["pushgateway"],
            "p100_vs_pushgateway": s100["pw_rss"] / s100["pg_rss"],
            "p10000_vs_pushgateway": s10k["pw_rss"] / s10k["pg_rss"],
            "b1000_vs_exporter": b1000["pw_rss"] / b1000["ex_rss"] if b1000 else None,
        }

        section = report(R, args)
        out = os.path.join(tempfile.gettempdir(), "poolwatch-bench-results.json")
        with open(out, "w") as f:
            json.dump(R, f, indent=1, default=str)
        print(section)
        if not args.no_write:
            write_doc(section)
            log("docs/benchmarks.md updated")
        log(f"raw results: {out}; total {time.time() - t_start:.0f}s")
    finally:
        cleanup()


if __name__ == "__main__":
    main()
