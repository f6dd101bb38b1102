//! A real Prometheus server for tests: started on a free loopback port with a
//! configuration of the test's making, queried through its HTTP API, killed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{http, temp_path};

/// A Prometheus server scraping the given jobs, killed on drop.
pub struct Prometheus {
    /// The server process.
    child: Child,
    /// Its configuration, data and log.
    pub dir: PathBuf,
    /// Its HTTP API.
    pub addr: SocketAddr,
}

impl Prometheus {
    /// Scrapes each `(job, target)` every second with `honor_labels: true`.
    pub fn scraping(bin: &Path, jobs: &[(&str, SocketAddr)]) -> Prometheus {
        let mut conf = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, addr) in jobs {
            conf.push_str(&format!(
                "  - job_name: {job}\n    honor_labels: true\n    static_configs:\n      - targets: [\"{addr}\"]\n"
            ));
        }
        Prometheus::start(bin, &conf)
    }

    /// Starts `bin` with `conf` as its `prometheus.yml`, on a free port of loopback.
    pub fn start(bin: &Path, conf: &str) -> Prometheus {
        let dir = temp_path("prometheus");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(dir.join("prometheus.yml"), conf).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--storage.tsdb.retention.time=1h")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus { child, dir, addr }
    }

    /// Waits for `/-/ready`.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(self.addr).await.is_ok()
                && http(self.addr, "GET", "/-/ready", None).await.status == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready: {}",
                std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// GET an API path; panics unless Prometheus answers success.
    pub async fn api(&self, path: &str) -> Value {
        let r = http(self.addr, "GET", path, None).await;
        let v: Value = serde_json::from_str(&r.body)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", r.body));
        assert_eq!(v["status"], "success", "{path}: {}", r.body);
        v["data"].clone()
    }

    /// An instant query's result vector.
    pub async fn instant(&self, expr: &str) -> Vec<Value> {
        let d = self
            .api(&format!("/api/v1/query?query={}", encode(expr)))
            .await;
        d["result"].as_array().cloned().unwrap_or_default()
    }

    /// A range query's result matrix, one-second steps.
    pub async fn range(&self, expr: &str, start: f64, end: f64) -> Vec<Value> {
        let d = self
            .api(&format!(
                "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step=1",
                encode(expr)
            ))
            .await;
        d["result"].as_array().cloned().unwrap_or_default()
    }

    /// The values of `label` on the series `selector` matches.
    pub async fn label_values(
        &self,
        label: &str,
        selector: &str,
        start: f64,
        end: f64,
    ) -> Vec<Value> {
        let d = self
            .api(&format!(
                "/api/v1/label/{label}/values?match[]={}&start={start:.3}&end={end:.3}",
                encode(selector)
            ))
            .await;
        d.as_array().cloned().unwrap_or_default()
    }
}

impl Prometheus {
    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes `s` for a query string.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
