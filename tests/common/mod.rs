//! Test harness: real servers, no mocks.
//!
//! - [`Pg`]: a throwaway PostgreSQL cluster (`initdb` into a temp dir, a free port on
//!   127.0.0.1, stopped and removed on drop) that tests can stop, restart and fill.
//! - [`Daemon`]: poolwatch itself, in-process on `127.0.0.1:0`, stopped on drop.
//! - [`http`]: a minimal HTTP/1.1 client.
//! - [`require_tool`]: a tool missing locally skips a test; under CI it fails it.

#![allow(dead_code)]

pub mod prometheus;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A unique path under the temp dir.
pub fn temp_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!(
        "poolwatch-{what}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    ))
}

/// True when running under CI, where every tool must be present.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Finds `tool` on PATH. Missing: under CI the test fails; locally it is skipped
/// (returns `None`) with a note on stderr.
pub fn require_tool(tool: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|c| c.is_file())
        })
        .unwrap_or(None);
    match found {
        Some(p) => Some(p),
        None if in_ci() => {
            panic!("{tool} is required under CI but is not on PATH (.ci/run installs it)")
        }
        None => {
            eprintln!("SKIPPED: {tool} not found on PATH; run .ci/run to install it");
            None
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn pg_bindir() -> PathBuf {
    if let Some(d) = std::env::var_os("POOLWATCH_PG_BINDIR") {
        return PathBuf::from(d);
    }
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if d.join("initdb").is_file() && d.join("postgres").is_file() {
            return d;
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|r| {
            r.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|p| p.join("initdb").is_file())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().expect("PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql or set POOLWATCH_PG_BINDIR")
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A throwaway PostgreSQL cluster.
pub struct Pg {
    /// Data directory (also holds the Unix socket and the log).
    pub dir: PathBuf,
    /// TCP port on 127.0.0.1.
    pub port: u16,
    bindir: PathBuf,
    root: bool,
}

impl Pg {
    /// initdb and start with `max_connections = 40`.
    pub fn start() -> Pg {
        Pg::start_with(&["-c", "max_connections=40"])
    }

    /// initdb and start with extra server options (`-c name=value` pairs).
    pub fn start_with(opts: &[&str]) -> Pg {
        let dir = temp_path("pg");
        let root = is_root();
        let pg = Pg {
            dir,
            port: free_port(),
            bindir: pg_bindir(),
            root,
        };
        pg.run(&["mkdir", "-p", pg.dir.to_str().unwrap()]);
        let initdb = pg.bindir.join("initdb");
        let out = pg.run(&[
            initdb.to_str().unwrap(),
            "-D",
            pg.dir.to_str().unwrap(),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
            "--no-instructions",
            "-E",
            "UTF8",
            "--locale=C",
        ]);
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\nfull_page_writes = off\nshared_buffers = 16MB\n",
            pg.port,
            pg.dir.display()
        );
        for pair in opts.chunks(2) {
            if let [_, kv] = pair {
                let (k, v) = kv.split_once('=').expect("name=value");
                conf.push_str(&format!("{k} = '{v}'\n"));
            }
        }
        // initdb trusts 127.0.0.1 only; tests also connect from other loopback addresses
        // (client-address attribution), so the whole of 127.0.0.0/8 is trusted.
        let hba_path = pg.dir.join("pg_hba.conf");
        let mut hba = std::fs::read_to_string(&hba_path).expect("read pg_hba.conf");
        hba.push_str("host all all 127.0.0.0/8 trust\n");
        std::fs::write(&hba_path, hba).expect("write pg_hba.conf");
        let conf_path = pg.dir.join("postgresql.auto.conf");
        // Written as the cluster's owner would; readable by it either way.
        std::fs::write(&conf_path, conf).expect("write postgresql.auto.conf");
        if root {
            pg.run(&["chown", "postgres:postgres", conf_path.to_str().unwrap()]);
        }
        pg.start_server();
        pg
    }

    fn run(&self, argv: &[&str]) -> Output {
        let mut cmd = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).args(argv);
            c
        } else {
            let mut c = Command::new(argv[0]);
            c.args(&argv[1..]);
            c
        };
        cmd.output().unwrap_or_else(|e| panic!("run {argv:?}: {e}"))
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let pg_ctl = self.bindir.join("pg_ctl");
        let log = self.dir.join("server.log");
        let mut argv = vec![
            pg_ctl.to_str().unwrap(),
            "-D",
            self.dir.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
        ];
        argv.extend_from_slice(args);
        self.run(&argv)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_server(&self) {
        let out = self.pg_ctl(&["-w", "-t", "30", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
        );
    }

    /// Stops the server (fast mode: sessions are terminated).
    pub fn stop_server(&self) {
        let out = self.pg_ctl(&["-w", "-m", "fast", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A URL for the `postgres` superuser (or `user`) on database `postgres`.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// The `database` label a poolwatch watching [`Pg::url`] gives its series by default:
    /// the URL's `host:port`.
    pub fn database(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A URL for `user`.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!(
            "postgres://{user}:{password}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// A client session named `application_name`; the connection task runs in the
    /// background until the client is dropped.
    pub async fn client(&self, application_name: &str) -> tokio_postgres::Client {
        let mut cfg: tokio_postgres::Config = self.url().parse().expect("url");
        cfg.application_name(application_name);
        let (client, conn) = cfg
            .connect(tokio_postgres::NoTls)
            .await
            .expect("test client connects");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// A client session named `application_name` whose TCP connection comes from `local`
    /// (a loopback address such as 127.0.0.2), as `client_addr` shows it.
    pub async fn client_from(
        &self,
        local: std::net::IpAddr,
        application_name: &str,
    ) -> tokio_postgres::Client {
        let stream = connect_from(local, SocketAddr::from(([127, 0, 0, 1], self.port))).await;
        let mut cfg: tokio_postgres::Config = self.url().parse().expect("url");
        cfg.application_name(application_name);
        let (client, conn) = cfg
            .connect_raw(stream, tokio_postgres::NoTls)
            .await
            .expect("test client connects");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Turns TLS on in a running cluster with the certificate from `certs`.
    pub async fn enable_ssl(&self, certs: &Path) {
        for f in ["server.crt", "server.key"] {
            let to = self.dir.join(f);
            std::fs::copy(certs.join(f), &to).unwrap();
            Command::new("chmod")
                .args(["600", to.to_str().unwrap()])
                .status()
                .unwrap();
            let _ = Command::new("chown")
                .args(["postgres:postgres", to.to_str().unwrap()])
                .status();
        }
        let c = self.client("admin").await;
        c.batch_execute("ALTER SYSTEM SET ssl = on").await.unwrap();
        c.query_one("SELECT pg_reload_conf()", &[]).await.unwrap();
        // Wait until the reload has taken effect.
        for _ in 0..50 {
            let on: String = c.query_one("SHOW ssl", &[]).await.unwrap().get(0);
            if on == "on" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("ssl did not turn on");
    }

    /// Whether poolwatch's session (application_name poolwatch) is encrypted.
    pub async fn poolwatch_uses_ssl(&self) -> bool {
        let c = self.client("observer").await;
        c.query_one(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'poolwatch'",
            &[],
        )
        .await
        .expect("poolwatch's session")
        .get(0)
    }

    /// Sessions named `application_name` as the server sees them now.
    pub async fn sessions_named(&self, application_name: &str) -> i64 {
        let c = self.client("poolwatch-test-observer").await;
        c.query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .expect("count sessions")
        .get(0)
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-w", "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// poolwatch running in-process.
pub struct Daemon {
    /// The metrics listener (also pushes unless `push_addr` differs).
    pub addr: SocketAddr,
    /// The push listener.
    pub push_addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    _file: TempFile,
}

/// A file removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// Writes `text` to a new temp file.
    pub fn new(text: &str) -> TempFile {
        let p = temp_path("file");
        std::fs::write(&p, text).expect("write temp file");
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Daemon {
    /// Starts poolwatch with `yaml` as its configuration file, listening on
    /// `127.0.0.1:0` unless the YAML says otherwise. No environment is read.
    pub async fn start(yaml: &str) -> Daemon {
        let mut text = yaml.to_string();
        if !text.contains("listen_address:") {
            text.push_str("\nlisten_address: 127.0.0.1:0\n");
        }
        let file = TempFile::new(&text);
        let cfg = poolwatch::config::load(Some(&file.0), &Vec::new(), &|_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        let listeners = poolwatch::app::Listeners::bind(&cfg).await.expect("bind");
        let addr = listeners.metrics.local_addr().unwrap();
        let push_addr = listeners
            .push
            .as_ref()
            .map(|l| l.local_addr().unwrap())
            .unwrap_or(addr);
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let task = tokio::spawn(async move {
            poolwatch::app::run(cfg, listeners, c)
                .await
                .expect("poolwatch runs");
        });
        Daemon {
            addr,
            push_addr,
            cancel,
            task: Some(task),
            _file: file,
        }
    }

    /// The configuration file it was started with (rewrite it to reload).
    pub fn config_path(&self) -> &Path {
        &self._file.0
    }

    /// GET /metrics.
    pub async fn metrics(&self) -> String {
        let r = http(self.addr, "GET", "/metrics", None).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body
    }

    /// POST `body` to `path` on the push listener.
    pub async fn push(&self, path: &str, body: &str) -> Resp {
        http(self.push_addr, "POST", path, Some(body.as_bytes())).await
    }

    /// [`Daemon::push`] from the local address `local` (the push's peer address).
    pub async fn push_from(&self, local: std::net::IpAddr, path: &str, body: &str) -> Resp {
        http_from(local, self.push_addr, "POST", path, Some(body.as_bytes())).await
    }

    /// Polls /metrics until `pred` holds or `timeout` passes; returns the last output.
    pub async fn wait_metrics(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics().await;
            if pred(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!("timed out after {timeout:?} waiting for {what}; last /metrics:\n{m}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops poolwatch and waits for its shutdown to finish.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), t)
                .await
                .expect("shutdown within 20s")
                .expect("no panic");
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers, lower-cased names.
    pub headers: Vec<(String, String)>,
    /// Body as text.
    pub body: String,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> Resp {
    raw(addr, &request(addr, method, path, body)).await
}

/// [`http`] from the local address `local` (a loopback address such as 127.0.0.2).
pub async fn http_from(
    local: std::net::IpAddr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Resp {
    exchange(
        connect_from(local, addr).await,
        &request(addr, method, path, body),
    )
    .await
}

/// A TCP connection to `addr` from `local` (any port).
pub async fn connect_from(local: std::net::IpAddr, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(local, 0))
        .expect("bind the local address");
    socket.connect(addr).await.expect("connect")
}

fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&[u8]>) -> Vec<u8> {
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    if let Some(b) = body {
        req.extend_from_slice(
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                b.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(b);
    } else {
        req.extend_from_slice(b"\r\n");
    }
    req
}

/// Sends raw bytes and parses the response.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Resp {
    exchange(TcpStream::connect(addr).await.expect("connect"), request).await
}

async fn exchange(mut s: TcpStream, request: &[u8]) -> Resp {
    s.write_all(request).await.expect("write request");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf))
        .await
        .expect("response within 30s")
        .expect("read");
    parse_response(&buf)
}

/// Parses a whole HTTP/1.1 response (`Content-Length` or chunked body).
pub fn parse_response(buf: &[u8]) -> Resp {
    let text = String::from_utf8_lossy(buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {text:?}"));
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// A series as `(name, labels)`, labels sorted, from `name` or `name{a="x",b="y"}` (the
/// text format's escapes undone). A label with an empty value is left out: to Prometheus
/// `x=""` and no `x` are the same series. `None` when `text` is not a series.
pub fn parse_series(text: &str) -> Option<(String, Vec<(String, String)>)> {
    let text = text.trim();
    let Some((name, rest)) = text.split_once('{') else {
        return Some((text.to_string(), Vec::new()));
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        match chars.peek() {
            Some('}') => {
                chars.next();
                break;
            }
            Some(',') => {
                chars.next();
                continue;
            }
            None => return None,
            _ => {}
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut v = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => v.push('\n'),
                    c => v.push(c),
                },
                c => v.push(c),
            }
        }
        if !v.is_empty() {
            labels.push((key.trim().to_string(), v));
        }
    }
    if chars.next().is_some() {
        return None;
    }
    labels.sort();
    Some((name.to_string(), labels))
}

/// The value of the series `series` (`name` or `name{labels}`): the line with that name
/// and exactly that label set, in any order; `x=""` in `series` asks for no `x`, as in
/// PromQL. Every label counts: a line with a label `series` does not name (a `database`,
/// say) is another series.
pub fn value(metrics: &str, series: &str) -> Option<f64> {
    let want = parse_series(series).unwrap_or_else(|| panic!("not a series: {series}"));
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (s, v) = l.rsplit_once(' ')?;
            (parse_series(s)? == want).then(|| v.trim().parse().ok())?
        })
}

/// `series` with the label `database="db"` added first: `poolwatch_pg_up` becomes
/// `poolwatch_pg_up{database="db"}`.
pub fn on_db(db: &str, series: &str) -> String {
    match series.split_once('{') {
        Some((name, rest)) if rest.trim() == "}" => format!("{name}{{database=\"{db}\"}}"),
        Some((name, rest)) => format!("{name}{{database=\"{db}\",{rest}"),
        None => format!("{series}{{database=\"{db}\"}}"),
    }
}

/// Asserts that each `(name, want)` of `expected` is the value of series `name{labels}`
/// (`labels` written with its braces).
pub fn assert_series(metrics: &str, labels: &str, expected: &[(&str, f64)]) {
    for (name, want) in expected {
        let series = format!("{name}{labels}");
        assert_eq!(
            value(metrics, &series),
            Some(*want),
            "{series} in\n{metrics}"
        );
    }
}

/// The reasons `poolwatch_app_leak_reason` says 1 for, for `app`.
pub fn reasons(metrics: &str, app: &str) -> Vec<String> {
    lines_starting(metrics, "poolwatch_app_leak_reason{")
        .into_iter()
        .filter(|l| l.ends_with(" 1"))
        .filter_map(|l| {
            let (_, labels) = parse_series(l.rsplit_once(' ')?.0)?;
            let get = |k: &str| labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            (get("app")? == app).then_some(())?;
            get("reason")
        })
        .collect()
}

/// Lines of `metrics` that start with `prefix` (comments excluded).
pub fn lines_starting<'a>(metrics: &'a str, prefix: &str) -> Vec<&'a str> {
    metrics.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// Runs `promtool check metrics` on `text`; returns its combined output and success.
pub fn promtool_check(promtool: &Path, text: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let combined = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && combined.trim().is_empty(), combined)
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, and a server certificate for localhost and 127.0.0.1 signed by it.
pub fn make_certs(dir: &Path, ca_name: &str) {
    make_ca(dir, "ca", ca_name);
    make_server_cert(dir, "server");
}

/// Another server certificate for localhost and 127.0.0.1 (`{name}.crt`, `{name}.key`, a
/// fresh key), signed by the CA of [`make_certs`] in `dir`: what a renewal brings.
pub fn make_server_cert(dir: &Path, name: &str) {
    issue(
        dir,
        "ca",
        name,
        "/CN=localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    );
}

/// A CA for client certificates (`{name}-ca.crt`, `{name}-ca.key`) and a client
/// certificate signed by it (`{name}.crt`, `{name}.key`, subject `/CN={name}`, extended
/// key usage `clientAuth`), for TLS client authentication.
pub fn make_client_certs(dir: &Path, name: &str) {
    let ca = format!("{name}-ca");
    make_ca(dir, &ca, &format!("/CN=poolwatch test client CA {name}"));
    issue(
        dir,
        &ca,
        name,
        &format!("/CN={name}"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    );
}

/// A fresh P-256 key, unencrypted.
const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// A self-signed CA: `{ca}.key` and `{ca}.crt` in `dir`, valid for two days.
fn make_ca(dir: &Path, ca: &str, subject: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let (key, crt) = (format!("{ca}.key"), format!("{ca}.crt"));
    let mut a = vec!["req", "-x509"];
    a.extend_from_slice(&EC_KEY);
    a.extend_from_slice(&[
        "-keyout",
        &key,
        "-out",
        &crt,
        "-days",
        "2",
        "-subj",
        subject,
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &a);
}

/// A key and certificate `{name}.key`, `{name}.crt` signed by CA `{ca}`, with the
/// extensions `ext` (an openssl extension file's lines).
fn issue(dir: &Path, ca: &str, name: &str, subject: &str, ext: &str) {
    let (key, csr, crt, ext_file) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}-ext.cnf"),
    );
    let (ca_key, ca_crt) = (format!("{ca}.key"), format!("{ca}.crt"));
    let mut a = vec!["req"];
    a.extend_from_slice(&EC_KEY);
    a.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", subject]);
    openssl(dir, &a);
    std::fs::write(dir.join(&ext_file), ext).unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext_file,
        ],
    );
}

/// Builds the Go program in `examples/<dir>` in GOPATH mode with Debian's Go packages;
/// `None` (skipped) when Go is missing outside CI.
pub fn go_build(dir: &str) -> Option<std::path::PathBuf> {
    let go = require_tool("go")?;
    let bin = temp_path("go-example");
    let gocache = temp_path("gocache");
    let out = Command::new(&go)
        .args(["build", "-o", bin.to_str().unwrap(), "."])
        .current_dir(format!("{}/examples/{dir}", env!("CARGO_MANIFEST_DIR")))
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOPROXY", "off")
        .env("GOCACHE", &gocache)
        .env("HOME", std::env::temp_dir())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(gocache);
    assert!(
        out.status.success(),
        "go build examples/{dir}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(bin)
}
