#!/usr/bin/env python3
"""Soak test: poolwatch under steady pushes and scrapes while its database restarts.

    SOAK_MINUTES=30 python3 scripts/soak.py        # the full run (default 30 minutes)
    SOAK_MINUTES=5  python3 scripts/soak.py        # a short one

Builds the release binary (`cargo build --release`, CARGO_TARGET_DIR honoured), starts a
throwaway PostgreSQL cluster (initdb into a temp dir, as `postgres` via `runuser` when
root, a free port on 127.0.0.1), starts poolwatch against it, then for SOAK_MINUTES:

- pushes every pool every SOAK_PUSH_SECONDS (default 2) with at most SOAK_WORKERS (16)
  requests in flight: SOAK_APPS (40) applications with SOAK_POOLS_PER_APP (5) pools each,
  a third each as canonical JSON, Go `sql.DBStats` JSON, and Pushgateway text (one group
  per application holding all its pools, client_golang's `go_sql_*` with `db_name`);
- scrapes /metrics every second and times it;
- restarts the database every SOAK_RESTART_SECONDS (default 180): `pg_ctl stop -m fast`,
  a 2 s outage, `pg_ctl start`, then waits for `poolwatch_pg_up 1` and times recovery;
- samples once a minute: VmRSS and open file descriptors of the poolwatch process,
  `poolwatch_pools_tracked`, `poolwatch_pg_up`, and poolwatch's sessions on the server.

At the end it prints the table and checks: RSS of the last sample within +10 % of the
first sample after the warm-up (SOAK_WARMUP_MINUTES, default: the analysis window
SOAK_ANALYSIS_WINDOW_SECONDS rounded up to minutes, plus one, at least 2; the window is
poolwatch's default 900 s for runs of 20 minutes or more, else 60 s), fds of the last
sample at most that sample's + 2, tracked pools equal to the live pools at every sample
from minute 1 on, every restart recovered, no push or scrape failed (pushes do not touch
the database), at most one poolwatch session at any sample. Exit 0 when all hold, 1 when
not, 2 on a setup failure. Everything it starts is stopped on exit, SIGINT or SIGTERM.
Standard library only; all traffic on 127.0.0.1.
"""

import glob
import http.client
import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def env_num(name, default, kind=float):
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        sys.exit(f"{name}={raw!r} is not a number")


MINUTES = env_num("SOAK_MINUTES", 30.0)
APPS = env_num("SOAK_APPS", 40, int)
POOLS_PER_APP = env_num("SOAK_POOLS_PER_APP", 5, int)
PUSH_SECONDS = env_num("SOAK_PUSH_SECONDS", 2.0)
WORKERS = env_num("SOAK_WORKERS", 16, int)
SCRAPE_SECONDS = env_num("SOAK_SCRAPE_SECONDS", 1.0)
RESTART_SECONDS = env_num("SOAK_RESTART_SECONDS", 180.0)
SAMPLE_SECONDS = env_num("SOAK_SAMPLE_SECONDS", 60.0)
INTERVAL = env_num("SOAK_DB_INTERVAL_SECONDS", 2.0)
# poolwatch keeps a per-application and per-pool history over analysis.window_seconds
# (900 s by default); its memory fills during the first window, so memory is judged
# only after it. Short runs use a 60 s window so that they have a plateau to judge.
WINDOW = env_num("SOAK_ANALYSIS_WINDOW_SECONDS", 900.0 if MINUTES >= 20 else 60.0)
WARMUP_MINUTES = env_num("SOAK_WARMUP_MINUTES", max(2.0, float(int(WINDOW + 59) // 60 + 1)))
RSS_TOLERANCE = env_num("SOAK_RSS_TOLERANCE", 0.10)
FD_SLACK = env_num("SOAK_FD_SLACK", 2, int)
LIVE_POOLS = APPS * POOLS_PER_APP

stop = threading.Event()
log_lock = threading.Lock()


def log(msg):
    with log_lock:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir():
    if os.environ.get("POOLWATCH_PG_BINDIR"):
        return os.environ["POOLWATCH_PG_BINDIR"]
    try:
        d = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        if d and os.path.isfile(os.path.join(d, "initdb")):
            return d
    except OSError:
        pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        sys.exit("PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql or set POOLWATCH_PG_BINDIR")
    return os.path.dirname(found[-1])


class Postgres:
    def __init__(self):
        self.bindir = pg_bindir()
        self.root = os.geteuid() == 0
        self.dir = tempfile.mkdtemp(prefix="poolwatch-soak-pg-")
        self.port = free_port()
        self.started = False
        if self.root:
            shutil.chown(self.dir, "postgres", "postgres")

    def run(self, argv, check=True):
        if self.root:
            argv = ["runuser", "-u", "postgres", "--"] + argv
        out = subprocess.run(argv, capture_output=True, text=True)
        if check and out.returncode != 0:
            raise RuntimeError(f"{argv}: exit {out.returncode}: {out.stdout}{out.stderr}")
        return out

    def init(self):
        self.run([os.path.join(self.bindir, "initdb"), "-D", self.dir, "-U", "postgres", "-A", "trust",
                  "--no-sync", "--no-instructions", "-E", "UTF8", "--locale=C"])
        conf = (f"listen_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.dir}'\nfsync = off\nsynchronous_commit = off\n"
                "full_page_writes = off\nshared_buffers = 16MB\nmax_connections = 40\n")
        path = os.path.join(self.dir, "postgresql.auto.conf")
        with open(path, "w") as f:
            f.write(conf)
        if self.root:
            shutil.chown(path, "postgres", "postgres")

    def pg_ctl(self, *args, check=True):
        return self.run([os.path.join(self.bindir, "pg_ctl"), "-D", self.dir, "-l",
                         os.path.join(self.dir, "server.log")] + list(args), check=check)

    def start(self):
        self.pg_ctl("-w", "-t", "30", "start")
        self.started = True

    def stop(self, mode="fast"):
        self.pg_ctl("-w", "-m", mode, "stop")
        self.started = False

    def sessions(self, application_name="poolwatch"):
        psql = os.path.join(self.bindir, "psql")
        out = self.run([psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
                        "-Atc", f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{application_name}'"],
                       check=False)
        return int(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip().isdigit() else None

    def cleanup(self):
        if self.started:
            self.pg_ctl("-w", "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def http_get(port, path, timeout=5.0):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        conn.close()


def metric(text, name):
    """Sum of every sample of `name` (with or without labels)."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            seen = True
    return total if seen else None


# ---------------------------------------------------------------- traffic


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.pushes = 0
        self.push_failures = 0
        self.push_fail_examples = []
        self.scrapes = 0
        self.scrape_failures = 0
        self.scrape_max_ms = 0.0
        self.late_rounds = 0
        self.restarts = 0
        self.recovered = 0
        self.recovery_s = []

    def push_result(self, ok, what=None):
        with self.lock:
            self.pushes += 1
            if not ok:
                self.push_failures += 1
                if len(self.push_fail_examples) < 5:
                    self.push_fail_examples.append(what)


def app_name(a):
    return f"soak-app-{a:02d}"


def pool_name(p):
    return f"pool-{p}"


def push_request(a, tick):
    """One application's push(es) for this round: a list of (method, path, body, ctype)."""
    rnd = random.Random(a * 1000003 + tick)
    kind = a % 3
    app = app_name(a)
    reqs = []
    if kind == 2:  # Pushgateway text, one group with every pool of the app
        lines = []
        for fam, typ in [("go_sql_max_open_connections", "gauge"), ("go_sql_open_connections", "gauge"),
                         ("go_sql_in_use_connections", "gauge"), ("go_sql_idle_connections", "gauge"),
                         ("go_sql_wait_count_total", "counter")]:
            lines.append(f"# HELP {fam} soak")
            lines.append(f"# TYPE {fam} {typ}")
            for p in range(POOLS_PER_APP):
                in_use = rnd.randint(0, 10)
                value = {"go_sql_max_open_connections": 25, "go_sql_open_connections": in_use + 3,
                         "go_sql_in_use_connections": in_use, "go_sql_idle_connections": 3,
                         "go_sql_wait_count_total": tick}[fam]
                lines.append(f'{fam}{{db_name="{pool_name(p)}"}} {value}')
        reqs.append(("PUT", f"/metrics/job/{app}/instance/pod-1", ("\n".join(lines) + "\n").encode(),
                     "text/plain; version=0.0.4"))
        return reqs
    for p in range(POOLS_PER_APP):
        in_use = rnd.randint(0, 10)
        if kind == 0:
            body = {"max_open": 25, "open": in_use + 3, "in_use": in_use, "idle": 3, "wait_count": tick,
                    "wait_duration_seconds": tick * 0.01}
            q = "?instance=pod-1&max_lifetime_seconds=1800"
        else:
            body = {"MaxOpenConnections": 25, "OpenConnections": in_use + 3, "InUse": in_use, "Idle": 3,
                    "WaitCount": tick, "WaitDuration": tick * 10_000_000, "MaxIdleClosed": 0,
                    "MaxIdleTimeClosed": 0, "MaxLifetimeClosed": tick // 10}
            q = "?instance=pod-1"
        reqs.append(("POST", f"/api/v1/pools/{app}/{pool_name(p)}{q}", json.dumps(body).encode(),
                     "application/json"))
    return reqs


def push_worker(port, jobs, stats):
    conn = None
    while not stop.is_set():
        try:
            item = jobs.get(timeout=0.5)
        except queue.Empty:
            continue
        for method, path, body, ctype in item:
            ok, what = False, None
            for attempt in range(2):  # one retry on a dropped keep-alive connection
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    conn.request(method, path, body=body, headers={"Content-Type": ctype})
                    r = conn.getresponse()
                    text = r.read()
                    ok = 200 <= r.status < 300
                    what = f"{method} {path}: {r.status} {text[:200]!r}"
                    if r.getheader("Connection", "").lower() == "close":
                        conn.close()
                        conn = None
                    break
                except (OSError, http.client.HTTPException) as e:
                    what = f"{method} {path}: {e!r}"
                    if conn is not None:
                        conn.close()
                    conn = None
            stats.push_result(ok, what)
        jobs.task_done()
    if conn is not None:
        conn.close()


def pusher(port, stats):
    jobs = queue.Queue(maxsize=APPS * 2)
    threads = [threading.Thread(target=push_worker, args=(port, jobs, stats), daemon=True) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    tick = 0
    next_round = time.monotonic()
    while not stop.is_set():
        for a in range(APPS):
            try:
                jobs.put(push_request(a, tick), timeout=PUSH_SECONDS)
            except queue.Full:
                with stats.lock:
                    stats.late_rounds += 1
                break
        tick += 1
        next_round += PUSH_SECONDS
        delay = next_round - time.monotonic()
        if delay < 0:
            with stats.lock:
                stats.late_rounds += 1
            next_round = time.monotonic()
        else:
            stop.wait(delay)
    for t in threads:
        t.join(timeout=15)


def scraper(port, stats):
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            status, _ = http_get(port, "/metrics", timeout=5)
            ok = status == 200
        except (OSError, http.client.HTTPException):
            ok = False
        ms = (time.monotonic() - t0) * 1000
        with stats.lock:
            stats.scrapes += 1
            stats.scrape_failures += 0 if ok else 1
            stats.scrape_max_ms = max(stats.scrape_max_ms, ms)
        stop.wait(max(0.0, SCRAPE_SECONDS - (time.monotonic() - t0)))


def wait_pg_up(port, want, limit):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit and not stop.is_set():
        try:
            _, text = http_get(port, "/metrics")
            if metric(text, "poolwatch_pg_up") == want:
                return time.monotonic() - t0
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.25)
    return None


def restarter(pg, port, stats):
    # The first restart comes 20 s early, so restarts fall between the minute samples.
    wait = max(10.0, RESTART_SECONDS - 20.0)
    while not stop.wait(wait):
        wait = RESTART_SECONDS
        log("database: pg_ctl stop -m fast")
        try:
            pg.stop("fast")
            stop.wait(2.0)
            pg.start()
        except RuntimeError as e:
            log(f"database restart failed: {e}")
            return
        with stats.lock:
            stats.restarts += 1
        took = wait_pg_up(port, 1.0, limit=INTERVAL * 3 + 30)
        with stats.lock:
            if took is not None:
                stats.recovered += 1
                stats.recovery_s.append(took)
        log(f"database: started again; poolwatch_pg_up 1 after {took if took is None else round(took, 2)} s")


# ---------------------------------------------------------------- process sampling


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def sample(proc, port, pg, t0, stats):
    _, text = http_get(port, "/metrics")
    with stats.lock:
        restarts = stats.restarts
    return {
        "minute": round((time.monotonic() - t0) / 60, 1),
        "rss_kib": rss_kib(proc.pid),
        "fds": fd_count(proc.pid),
        "tracked": metric(text, "poolwatch_pools_tracked"),
        "pg_up": metric(text, "poolwatch_pg_up"),
        "sessions": pg.sessions(),
        "restarts": restarts,
        "pushes": stats.pushes,
    }


# ---------------------------------------------------------------- main


def build():
    log("cargo build --release")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
    if not os.path.isabs(target):
        target = os.path.join(ROOT, target)
    return os.path.join(target, "release", "poolwatch")


def main():
    binary = build()
    pg = Postgres()
    proc = None
    workdir = tempfile.mkdtemp(prefix="poolwatch-soak-")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = []
    stats = Stats()
    samples = []
    try:
        pg.init()
        pg.start()
        log(f"PostgreSQL on 127.0.0.1:{pg.port} ({pg.dir})")
        port = free_port()
        env = dict(os.environ)
        for k in list(env):
            if k.startswith(("POOLWATCH_", "PG")) or k == "DATABASE_URL":
                del env[k]
        env.update({
            "POOLWATCH_DATABASE_URL": f"postgres://postgres@127.0.0.1:{pg.port}/postgres?sslmode=disable",
            "POOLWATCH_DATABASE_INTERVAL_SECONDS": str(INTERVAL),
            "POOLWATCH_ANALYSIS_WINDOW_SECONDS": str(WINDOW),
            # statement_timeout must not exceed the interval; lock_timeout not the former.
            "POOLWATCH_DATABASE_STATEMENT_TIMEOUT_SECONDS": str(min(5.0, INTERVAL)),
            "POOLWATCH_DATABASE_LOCK_TIMEOUT_SECONDS": str(min(1.0, INTERVAL)),
            "POOLWATCH_LOG_LEVEL": "warn",
        })
        stderr = open(os.path.join(workdir, "poolwatch.log"), "w")
        proc = subprocess.Popen([binary, "--mode", "central", "--listen", f"127.0.0.1:{port}"],
                                env=env, stdout=stderr, stderr=stderr, cwd=workdir)
        for _ in range(100):
            try:
                if http_get(port, "/readyz", timeout=1)[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"poolwatch exited with {proc.returncode}")
            time.sleep(0.1)
        log(f"poolwatch pid {proc.pid} on 127.0.0.1:{port}; {APPS} apps x {POOLS_PER_APP} pools every "
            f"{PUSH_SECONDS} s, scrape every {SCRAPE_SECONDS} s, restart every {RESTART_SECONDS} s, "
            f"{MINUTES} minutes")
        t0 = time.monotonic()
        for fn, args in [(pusher, (port, stats)), (scraper, (port, stats)), (restarter, (pg, port, stats))]:
            t = threading.Thread(target=fn, args=args, daemon=True)
            t.start()
            threads.append(t)
        stop.wait(5)
        samples.append(sample(proc, port, pg, t0, stats))
        end = t0 + MINUTES * 60
        next_sample = t0 + SAMPLE_SECONDS
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise RuntimeError(f"poolwatch exited with {proc.returncode}")
            time.sleep(min(1.0, max(0.0, min(next_sample, end) - time.monotonic())))
            if time.monotonic() >= next_sample - 0.05:
                s = sample(proc, port, pg, t0, stats)
                samples.append(s)
                log(f"minute {s['minute']}: RSS {s['rss_kib']} KiB, fds {s['fds']}, tracked {s['tracked']}, "
                    f"pg_up {s['pg_up']}, sessions {s['sessions']}, restarts {s['restarts']}, pushes {s['pushes']}")
                next_sample += SAMPLE_SECONDS
        stop.set()
        for t in threads:
            t.join(timeout=60)
        # Make sure the last restart has settled before the final sample.
        wait_pg_up(port, 1.0, limit=INTERVAL * 3 + 30)
        final = sample(proc, port, pg, t0, stats)
        if final["minute"] - samples[-1]["minute"] > 0.05:
            samples.append(final)
        return report(samples, stats, proc)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e})")
        return 130
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        log(f"setup or run failed: {e}")
        try:
            with open(os.path.join(workdir, "poolwatch.log")) as f:
                tail = f.read()[-2000:]
            if tail:
                log("poolwatch log (end):\n" + tail)
        except OSError:
            pass
        return 2
    finally:
        stop.set()
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        pg.cleanup()
        if os.environ.get("SOAK_KEEP_LOG"):
            log(f"poolwatch log kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def report(samples, stats, proc):
    print()
    print(f"soak {time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime())}: {MINUTES} min, {LIVE_POOLS} live pools "
          f"({APPS} apps x {POOLS_PER_APP}), push every {PUSH_SECONDS} s, scrape every {SCRAPE_SECONDS} s, "
          f"database restart every {RESTART_SECONDS} s, sample interval {INTERVAL} s, analysis window {WINDOW} s, "
          f"memory judged from minute {WARMUP_MINUTES}")
    print("| minute | RSS MiB | fds | pools tracked | pg_up | poolwatch sessions | pg restarts survived | pushes |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in samples:
        print(f"| {s['minute']} | {s['rss_kib'] / 1024:.1f} | {s['fds']} | {s['tracked']:.0f} | {s['pg_up']:.0f} | "
              f"{s['sessions'] if s['sessions'] is not None else '?'} | {s['restarts']} | {s['pushes']} |")
    rec = stats.recovery_s
    print(f"pushes {stats.pushes} ({stats.push_failures} failed), scrapes {stats.scrapes} "
          f"({stats.scrape_failures} failed, slowest {stats.scrape_max_ms:.0f} ms), late push rounds {stats.late_rounds}, "
          f"database restarts {stats.restarts}, recovered {stats.recovered}"
          + (f" (pg_up 1 after {min(rec):.1f}-{max(rec):.1f} s)" if rec else ""))
    for ex in stats.push_fail_examples:
        print(f"  failed push: {ex}")

    problems = []
    last = samples[-1]
    ref = next((s for s in samples if s["minute"] >= WARMUP_MINUTES - 0.05), None)
    if ref is None or ref is last:
        problems.append(f"no sample between the warm-up ({WARMUP_MINUTES} min, analysis window {WINDOW} s) "
                        f"and the end: run longer or shorten SOAK_ANALYSIS_WINDOW_SECONDS")
        ref = ref or last
    if last["rss_kib"] > ref["rss_kib"] * (1 + RSS_TOLERANCE):
        problems.append(f"RSS grew from {ref['rss_kib']} KiB (minute {ref['minute']}) to {last['rss_kib']} KiB, "
                        f"more than {RSS_TOLERANCE:.0%}")
    if last["fds"] > ref["fds"] + FD_SLACK:
        problems.append(f"fds grew from {ref['fds']} to {last['fds']}")
    for s in samples:
        if s["minute"] >= 1.0 and s["tracked"] != LIVE_POOLS:
            problems.append(f"minute {s['minute']}: {s['tracked']} pools tracked, {LIVE_POOLS} live")
        if s["sessions"] is not None and s["sessions"] > 1:
            problems.append(f"minute {s['minute']}: {s['sessions']} poolwatch sessions on the server")
    if last["pg_up"] != 1:
        problems.append("poolwatch_pg_up is not 1 at the end")
    if stats.recovered != stats.restarts:
        problems.append(f"{stats.restarts - stats.recovered} database restarts not recovered from")
    if stats.push_failures:
        problems.append(f"{stats.push_failures} pushes failed")
    if stats.scrape_failures:
        problems.append(f"{stats.scrape_failures} scrapes failed")
    if proc.poll() is not None:
        problems.append(f"poolwatch exited ({proc.returncode})")
    if problems:
        print("FAIL:")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"PASS: RSS {ref['rss_kib'] / 1024:.1f} MiB at minute {ref['minute']}, {last['rss_kib'] / 1024:.1f} MiB at "
          f"the end; fds {ref['fds']} -> {last['fds']}; {LIVE_POOLS} pools tracked; {stats.restarts} restarts survived")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__.strip())
        sys.exit(0)
    if sys.argv[1:]:
        print(
            f"soak.py takes no arguments ({' '.join(sys.argv[1:])}); "
            "it is configured by SOAK_* environment variables: see --help",
            file=sys.stderr,
        )
        sys.exit(2)
    sys.exit(main())
