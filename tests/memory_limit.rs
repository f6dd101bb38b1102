//! poolwatch under a real memory limit (issue 15, D1): the static musl binary, as the
//! image ships it, runs with its default limits in a cgroup v1 memory group of 64 MiB
//! (the chart's sidecar limit). 10,000 pools are pushed at it (as many Pushgateway
//! groups, the costlier kind; it keeps `pools.max_pools`, 1,000, and refuses the rest
//! with 429), then 300 hostile 1 MiB text pushes and 300 protobuf ones arrive at once,
//! with honest scrapes and pushes beside them. Nothing may be killed, the group must
//! never reach its limit, every answer must be a 2xx, a 4xx or a 503, and the resident
//! memory must come back near where it was before the flood.
//!
//! Needs root and `/sys/fs/cgroup/memory`; without them it says so and skips (under CI
//! it fails instead: CI has both). The binary is built with `cargo build --profile dist
//! --target x86_64-unknown-linux-musl` into `$TMPDIR/poolwatch-builder-target` when
//! missing or stale (`.ci/run` builds it before the suite); `POOLWATCH_BIN` runs another
//! one. `MEMTEST_MAX_POOLS` and
//! `MEMTEST_LIMIT_MIB` change the pool cap and the group's limit, for measuring (the
//! figures in docs/security.md).

mod common;

#[path = "common/hostile.rs"]
mod hostile;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{in_ci, raw, TempFile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const POOLS: usize = 10_000;
const HOSTILE: usize = 300;

/// The static musl binary, built if it is missing or stale (a no-op when it is not).
fn shipped_binary() -> String {
    if let Ok(bin) = std::env::var("POOLWATCH_BIN") {
        return bin;
    }
    const TARGET: &str = "x86_64-unknown-linux-musl";
    let root = env!("CARGO_MANIFEST_DIR");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Where .ci/run builds it, and the Dockerfile's build stage (tests/docker.rs) too.
    let target = std::env::temp_dir().join("poolwatch-builder-target");
    let built = Command::new(cargo)
        .env("CARGO_TARGET_DIR", &target)
        .args([
            "build",
            "--profile",
            "dist",
            "--locked",
            "--bin",
            "poolwatch",
            "--target",
            TARGET,
        ])
        .current_dir(root)
        .status()
        .expect("run cargo");
    assert!(
        built.success(),
        "cannot build the {TARGET} binary: rustup target add {TARGET}; apt-get install musl-tools"
    );
    format!("{}/{TARGET}/dist/poolwatch", target.display())
}

/// A cgroup v1 memory group of its own, removed on drop.
struct Cgroup(PathBuf);

impl Cgroup {
    /// A new group limited to `limit` bytes (swap included, where the kernel counts it),
    /// or why there is none.
    fn create(limit: u64) -> Result<Cgroup, String> {
        let root = Path::new("/sys/fs/cgroup/memory");
        if !root.join("memory.limit_in_bytes").is_file() {
            return Err(format!(
                "{} is not a cgroup v1 memory hierarchy",
                root.display()
            ));
        }
        let dir = root.join(format!("poolwatch-test-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let cg = Cgroup(dir);
        cg.write("memory.limit_in_bytes", &limit.to_string())?;
        if cg.0.join("memory.memsw.limit_in_bytes").is_file() {
            cg.write("memory.memsw.limit_in_bytes", &limit.to_string())?;
        }
        Ok(cg)
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        std::fs::write(self.0.join(file), value)
            .map_err(|e| format!("cannot write {value} to {file}: {e}"))
    }

    fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.0.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
    }

    fn number(&self, file: &str) -> u64 {
        self.read(file).trim().parse().expect(file)
    }

    /// A `name value` line of `memory.oom_control`.
    fn oom(&self, name: &str) -> Option<u64> {
        self.read("memory.oom_control")
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // Empty by now (the child was killed and reaped); a group is removed with rmdir.
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// The PUT of an honest group: client_golang's DBStats collector for one pool.
fn honest_group(i: usize) -> Vec<u8> {
    let body = "go_sql_max_open_connections{db_name=\"primary\"} 25\n\
                go_sql_open_connections{db_name=\"primary\"} 7\n\
                go_sql_in_use_connections{db_name=\"primary\"} 5\n\
                go_sql_idle_connections{db_name=\"primary\"} 2\n\
                go_sql_wait_count_total{db_name=\"primary\"} 3\n";
    request(
        "PUT",
        &group_path(i),
        "text/plain; version=0.0.4",
        body.as_bytes(),
    )
}

fn group_path(i: usize) -> String {
    format!("/metrics/job/app-{:03}/instance/i-{i}", i % 100)
}

fn request(method: &str, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// One request's status, or 0 when the connection failed without an answer.
async fn status(addr: SocketAddr, req: Arc<Vec<u8>>) -> u16 {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(&req).await.ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let line = buf.split(|&b| b == b'\r').next()?;
        std::str::from_utf8(line)
            .ok()?
            .split(' ')
            .nth(1)?
            .parse()
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(60), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

fn acceptable(status: u16) -> bool {
    (200..300).contains(&status) || (400..500).contains(&status) || status == 503
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn hostile_pushes_within_a_64_mib_limit() {
    let limit: u64 = std::env::var("MEMTEST_LIMIT_MIB").map_or(64, |v| v.parse().unwrap()) << 20;
    let max_pools: usize = std::env::var("MEMTEST_MAX_POOLS").map_or(1000, |v| v.parse().unwrap());
    let cg = match Cgroup::create(limit) {
        Ok(cg) => cg,
        Err(why) if in_ci() => panic!("cgroup v1 memory is required under CI: {why}"),
        Err(why) => {
            eprintln!("SKIPPED: no cgroup v1 memory group to run in ({why}); run as root on a host with /sys/fs/cgroup/memory");
            return;
        }
    };
    let bin = shipped_binary();
    let addr: SocketAddr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    // Defaults but for the expiry (the test outlasts none of it) and the analysis
    // interval, which ticks every 3 s keeping as many points per pool as the default
    // 15 s over 15 minutes.
    let caps = if max_pools == 1000 {
        String::new()
    } else {
        format!("  max_pools: {max_pools}\n  max_pools_per_app: {max_pools}\n")
    };
    let config = TempFile::new(&format!(
        "mode: central\nlisten_address: {addr}\nlog_level: warn\n\
         pools:\n  expiry_seconds: 600\n{caps}\
         analysis:\n  interval_seconds: 3\n  window_seconds: 180\n"
    ));
    // The shell joins the group, then becomes poolwatch: every byte it ever uses counts.
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > {} && exec {bin} --config {}",
            cg.0.join("cgroup.procs").display(),
            config.0.display()
        ))
        .stdin(Stdio::null())
        .spawn()
        .expect("start poolwatch");
    let mut child = Running(child);
    let pid = child.0.id();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    rt.block_on(async {
        let healthz =
            Arc::new(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec());
        while status(addr, healthz.clone()).await != 200 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "poolwatch did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let idle = rss_mib(pid);

    // 10,000 pools, one Pushgateway group each, eight connections at a time: the first
    // `max_pools` are kept, the others refused.
    let loading = Instant::now();
    let loaded_statuses = rt.block_on(async {
        let mut statuses = Vec::new();
        let mut next = 0;
        while next < POOLS {
            let batch: Vec<_> = (next..(next + 8).min(POOLS))
                .map(|i| tokio::spawn(status(addr, Arc::new(honest_group(i)))))
                .collect();
            for t in batch {
                statuses.push(t.await.unwrap());
            }
            next += 8;
        }
        statuses
    });
    let loading = loading.elapsed();
    let kept = max_pools.min(POOLS);
    assert_eq!(loaded_statuses.iter().filter(|&&s| s == 200).count(), kept);
    assert!(loaded_statuses.iter().all(|&s| s == 200 || s == 429));
    // Let the analysis tick with the pools before taking the figure.
    std::thread::sleep(Duration::from_secs(4));
    let loaded = rss_mib(pid);
    cg.write("memory.max_usage_in_bytes", "0").unwrap();
    let failcnt_before = cg.number("memory.failcnt");

    // The flood, each hostile push to a group already held (so it is parsed and mapped
    // to its 9,000 pools, or as many as the cap, before it is refused), with honest
    // traffic beside it.
    let text = Arc::new(hostile::text_body(1 << 20));
    let pb = Arc::new(hostile::protobuf_body(1 << 20));
    const PB: &str =
        "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
    let flood_started = Instant::now();
    let honest: Arc<Mutex<Vec<u16>>> = Arc::default();
    let peak_rss = Arc::new(Mutex::new(0.0f64));
    let hostile_statuses = rt.block_on(async {
        let done = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (done, honest, peak_rss) = (done.clone(), honest.clone(), peak_rss.clone());
            tokio::spawn(async move {
                let scrape = Arc::new(
                    b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
                );
                let push = Arc::new(request(
                    "POST",
                    "/api/v1/pools/app-000/primary?instance=i-0",
                    "application/json",
                    br#"{"open":3,"in_use":1,"idle":2}"#,
                ));
                while !done.load(Ordering::SeqCst) {
                    {
                        let mut p = peak_rss.lock().unwrap();
                        *p = p.max(rss_mib(pid));
                    }
                    let a = status(addr, scrape.clone()).await;
                    let b = status(addr, push.clone()).await;
                    honest.lock().unwrap().extend([a, b]);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let pushes: Vec<_> = (0..2 * HOSTILE)
            .map(|i| {
                let (body, ct) = if i % 2 == 0 {
                    (&text, "text/plain")
                } else {
                    (&pb, PB)
                };
                let req = Arc::new(request("PUT", &group_path(i % kept), ct, body));
                tokio::spawn(status(addr, req))
            })
            .collect();
        let mut statuses = Vec::new();
        for p in pushes {
            statuses.push(p.await.unwrap());
        }
        done.store(true, Ordering::SeqCst);
        watcher.await.unwrap();
        statuses
    });
    let flood = flood_started.elapsed();
    let max_usage = cg.number("memory.max_usage_in_bytes");
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:").map(|v| v.trim().to_string()))
        .unwrap_or_default();

    // Back near where it was: within 8 MiB of the loaded figure, given ten seconds.
    let mut after = rss_mib(pid);
    let settle = Instant::now();
    while after > loaded + 8.0 && settle.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(200));
        after = rss_mib(pid);
    }
    let count = |s: &[u16], f: &dyn Fn(u16) -> bool| s.iter().filter(|&&x| f(x)).count();
    let honest = honest.lock().unwrap().clone();
    eprintln!(
        "memory_limit: binary {bin}, limit {:.0} MiB, pools.max_pools {max_pools}\n  idle RSS {idle:.1} MiB; {POOLS} pools pushed in {:.1} s, {kept} kept: RSS {loaded:.1} MiB\n  \
         flood of {} hostile pushes ({} text, {} protobuf, {} and {} bytes) answered in {:.1} s: \
         {} x 2xx, {} x 4xx, {} x 503, {} other; honest requests beside it: {} (2xx {}, 503 {})\n  \
         peak: cgroup max_usage {:.1} MiB of {:.0}, RSS sampled {:.1} MiB, VmHWM {hwm}; failcnt {} -> {}, oom_kill {:?}\n  \
         RSS after {:.1} s: {after:.1} MiB",
        mib(limit),
        loading.as_secs_f64(),
        2 * HOSTILE,
        HOSTILE,
        HOSTILE,
        text.len(),
        pb.len(),
        flood.as_secs_f64(),
        count(&hostile_statuses, &|s| (200..300).contains(&s)),
        count(&hostile_statuses, &|s| (400..500).contains(&s)),
        count(&hostile_statuses, &|s| s == 503),
        count(&hostile_statuses, &|s| !acceptable(s)),
        honest.len(),
        count(&honest, &|s| (200..300).contains(&s)),
        count(&honest, &|s| s == 503),
        mib(max_usage),
        mib(limit),
        *peak_rss.lock().unwrap(),
        failcnt_before,
        cg.number("memory.failcnt"),
        cg.oom("oom_kill"),
        settle.elapsed().as_secs_f64(),
    );
    assert!(child.0.try_wait().unwrap().is_none(), "poolwatch is gone");
    assert_eq!(cg.oom("oom_kill").unwrap_or(0), 0, "the OOM killer ran");
    assert_eq!(cg.oom("under_oom"), Some(0));
    assert_eq!(
        cg.number("memory.failcnt"),
        0,
        "the group reached its limit"
    );
    let bad: Vec<u16> = hostile_statuses
        .iter()
        .chain(&honest)
        .copied()
        .filter(|&s| !acceptable(s))
        .collect();
    assert!(bad.is_empty(), "answers other than 2xx, 4xx, 503: {bad:?}");
    assert!(
        count(&hostile_statuses, &|s| (200..300).contains(&s)) == 0,
        "a hostile push was stored"
    );
    assert!(
        after <= loaded + 8.0,
        "RSS {after:.1} MiB after the flood, {loaded:.1} before"
    );
    // Still serving, with the pools it held.
    let m = rt.block_on(raw(
        addr,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ));
    assert_eq!(m.status, 200);
    assert!(
        m.body.contains(&format!("poolwatch_pools_tracked {kept}")),
        "{}",
        m.body
            .lines()
            .find(|l| l.starts_with("poolwatch_pools_tracked"))
            .unwrap_or("")
    );
    drop(child);
}
