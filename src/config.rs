//! Configuration: a YAML file, environment variables on top of it, flags on top of those.
//!
//! Owns parsing, defaults and validation; everything is checked before the runtime
//! starts, and every problem is reported at once ([`ConfigError`] lists them all; the
//! binary exits 64). It does not open sockets or database sessions.
//!
//! Every key is listed in [`KEYS`] with its type, default and environment variable; that
//! table is also what `docs/configuration.md` documents (a test keeps the two in step).
//!
//! The database comes from, in order: `database.url` (flag `--database-url`,
//! `POOLWATCH_DATABASE_URL`, `DATABASE_URL`), `database.url_file` (a mounted Secret), or
//! the libpq variables `PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGUSER`, `PGDATABASE` (with
//! `PGPASSWORD` and `PGSSLMODE`). The libpq variables also fill what a URL leaves out, as
//! libpq does. None of them set: poolwatch runs push-only.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde_yaml::Value;

/// Metrics, health and read-only API. The 9100-9999 exporter range of the Prometheus
/// port allocations is full, so poolwatch sits outside it.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:19187";
/// Push endpoints in sidecar mode: loopback only, so only the pod itself can push.
pub const DEFAULT_SIDECAR_PUSH_LISTEN: &str = "127.0.0.1:19188";
/// Exit code for an invalid configuration (`EX_CONFIG` is 78; exporters use 64, `EX_USAGE`).
pub const EXIT_INVALID_CONFIG: i32 = 64;

/// Where poolwatch runs, which decides defaults for the push address and instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In the application's pod: pushes on loopback, instance from `POD_NAME`.
    Sidecar,
    /// One per database: pushes from many applications on the main address.
    Central,
}

impl Mode {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sidecar => "sidecar",
            Mode::Central => "central",
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` fields then a sentence, for people.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// TLS to PostgreSQL, with libpq's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without verifying the certificate (libpq's default).
    Prefer,
    /// TLS or fail; the certificate is not verified (as libpq without a root certificate).
    Require,
    /// TLS, the certificate chain checked against the CA bundle and the host name matched.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }
}

/// The validated configuration the daemon runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Deploy mode.
    pub mode: Mode,
    /// Default `instance` label for pushes that do not name one.
    pub instance: String,
    /// Address for `/metrics`, `/healthz`, `/readyz`.
    pub listen_address: SocketAddr,
    /// Address for the push endpoints; equal to `listen_address` means one listener.
    pub push_listen_address: SocketAddr,
    /// How long in-flight requests may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// `tracing` filter directive, e.g. `info` or `poolwatch=debug`.
    pub log_level: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// HTTP server limits.
    pub http: HttpConfig,
    /// TLS and basic auth for both listeners, from `web_config_file`.
    pub web: Option<crate::http::web::WebConfig>,
    /// Pool store limits.
    pub pools: PoolsConfig,
    /// This pod's IP (sidecar mode): backends whose `client_addr` is this IP belong to the
    /// pod's application.
    pub pod_ip: Option<std::net::IpAddr>,
    /// The socket view; on in sidecar mode when there are peers to count.
    pub socket: Option<SocketConfig>,
    /// Analysis timing and thresholds.
    pub analysis: AnalysisSettings,
    /// The watched database; `None` runs push-only.
    pub database: Option<DatabaseConfig>,
    /// Things worth a log line at start that are not errors.
    pub warnings: Vec<String>,
}

/// HTTP server limits.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Time allowed to receive a request's headers and its body, for an idle keep-alive
    /// connection to send its next request, and for a stalled response write.
    pub request_timeout: Duration,
    /// Open connections per listener; at the cap, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Bearer token every push must carry, when set.
    pub push_token: Option<Secret>,
}

/// A secret value: shown as `<redacted>` by `Debug`, compared in constant time.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Whether `candidate` equals the secret, in time independent of where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let a = self.0.as_bytes();
        let mut diff = a.len() ^ candidate.len();
        for (i, b) in a.iter().enumerate() {
            diff |= usize::from(b ^ candidate.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Pool store limits.
#[derive(Clone, Debug)]
pub struct PoolsConfig {
    /// A pool not pushed for this long disappears.
    pub expiry: Duration,
    /// Most pools tracked at once; pushes of new pools beyond it are rejected.
    pub max_pools: usize,
    /// Most applications tracked at once.
    pub max_apps: usize,
    /// Most pools (all instances together) tracked per application.
    pub max_pools_per_app: usize,
}

/// The socket view: this network namespace's TCP connections to the database.
#[derive(Clone, Debug)]
pub struct SocketConfig {
    /// Database endpoints as `host:port`, resolved at every tick.
    pub peers: Vec<String>,
    /// Directory holding `tcp` and `tcp6` (tests point it at fixtures).
    pub proc_net_dir: PathBuf,
}

/// When the analysis runs and the thresholds of its findings.
#[derive(Clone, Debug)]
pub struct AnalysisSettings {
    /// Time between analysis ticks.
    pub interval: Duration,
    /// History kept per application for the trend.
    pub window: Duration,
    /// Idle in `ClientRead` longer than this while the pool says in use: checked out
    /// and forgotten.
    pub idle_in_use: Duration,
    /// Added to the pool's max lifetime before a backend counts as over it.
    pub lifetime_grace: Duration,
    /// How long a disagreement between views must hold before it means a leak.
    pub disagreement_hold: Duration,
    /// Stuck connections listed per application.
    pub top_n: usize,
}

/// The watched database and how the sampler treats its session.
#[derive(Clone)]
pub struct DatabaseConfig {
    /// Connection parameters, without TLS mode (see `sslmode`) and with our own
    /// `application_name`, timeouts and keepalives already applied.
    pub pg: tokio_postgres::Config,
    /// TLS mode.
    pub sslmode: SslMode,
    /// PEM bundle of trusted roots for `verify-full`.
    pub ca_file: PathBuf,
    /// `application_name` of poolwatch's own session.
    pub application_name: String,
    /// Time between samples.
    pub interval: Duration,
    /// Limit on TCP connect, TLS and authentication together.
    pub connect_timeout: Duration,
    /// Server-side `statement_timeout` of the session.
    pub statement_timeout: Duration,
    /// Server-side `lock_timeout` of the session.
    pub lock_timeout: Duration,
    /// Longest wait between reconnection attempts.
    pub reconnect_max_backoff: Duration,
    /// Distinct `application_name` label values kept; the rest are summed as `__other__`.
    pub max_application_names: usize,
    /// How much of each backend's last query is kept.
    pub query_text: QueryText,
    /// Longest query text or fingerprint kept, in characters.
    pub query_max_chars: usize,
    /// Which source gave the database (`url`, `url_file`, `libpq environment`).
    pub source: &'static str,
}

impl DatabaseConfig {
    /// `host=… port=… dbname=… user=… sslmode=…`: safe to log, never the password.
    pub fn target(&self) -> String {
        let hosts: Vec<String> = self
            .pg
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = self.pg.get_ports().iter().map(u16::to_string).collect();
        format!(
            "host={} port={} dbname={} user={} sslmode={}",
            hosts.join(","),
            if ports.is_empty() {
                "5432".into()
            } else {
                ports.join(",")
            },
            self.pg
                .get_dbname()
                .unwrap_or(self.pg.get_user().unwrap_or("")),
            self.pg.get_user().unwrap_or(""),
            self.sslmode.as_str()
        )
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("target", &self.target())
            .field("password", &self.pg.get_password().map(|_| "<redacted>"))
            .field("source", &self.source)
            .field("interval", &self.interval)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .finish_non_exhaustive()
    }
}

/// Every problem found in a configuration, reported together.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    /// One line per problem, each naming the key and where its value came from.
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({} problem", self.problems.len())?;
        if self.problems.len() != 1 {
            write!(f, "s")?;
        }
        write!(f, "):")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// What a key holds; decides how file, environment and flag values are parsed.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Any string.
    Text,
    /// A string never echoed back in errors or logs.
    Secret,
    /// A file path.
    Path,
    /// `host:port`.
    Address,
    /// A positive number of seconds (fractions allowed).
    Seconds,
    /// A positive integer.
    Count,
    /// One of the listed words.
    Choice(&'static [&'static str]),
}

/// One configuration key: its dotted path in the YAML file and how else to set it.
#[derive(Debug)]
pub struct Key {
    /// Dotted path in the YAML file, e.g. `database.interval_seconds`.
    pub path: &'static str,
    /// What the value holds.
    pub kind: Kind,
    /// Default, as documented (`-` when there is none or it depends on other keys).
    pub default: &'static str,
    /// Environment variables, in order of precedence.
    pub env: &'static [&'static str],
    /// Command-line flag, if any (flags beat environment variables).
    pub flag: Option<&'static str>,
}

const MODES: &[&str] = &["sidecar", "central"];
const LOG_FORMATS: &[&str] = &["text", "json"];
const SSLMODES: &[&str] = &["disable", "prefer", "require", "verify-full"];
const QUERY_TEXT: &[&str] = &["none", "fingerprint", "full"];

/// How much of a backend's last query poolwatch keeps (shown only by the
/// stuck-connection view, never in metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryText {
    /// Not read at all.
    None,
    /// Literals removed, so no data leaves the database.
    Fingerprint,
    /// The text as the server has it, data included.
    Full,
}

/// All configuration keys. `docs/configuration.md` documents each of them.
pub const KEYS: &[Key] = &[
    Key {
        path: "mode",
        kind: Kind::Choice(MODES),
        default: "central",
        env: &["POOLWATCH_MODE"],
        flag: Some("--mode"),
    },
    Key {
        path: "instance",
        kind: Kind::Text,
        default: "-",
        env: &["POOLWATCH_INSTANCE"],
        flag: Some("--instance"),
    },
    Key {
        path: "listen_address",
        kind: Kind::Address,
        default: DEFAULT_LISTEN,
        env: &["POOLWATCH_LISTEN_ADDRESS"],
        flag: Some("--listen"),
    },
    Key {
        path: "push_listen_address",
        kind: Kind::Address,
        default: "-",
        env: &["POOLWATCH_PUSH_LISTEN_ADDRESS"],
        flag: Some("--push-listen"),
    },
    Key {
        path: "web_config_file",
        kind: Kind::Path,
        default: "-",
        env: &["POOLWATCH_WEB_CONFIG_FILE"],
        flag: Some("--web-config-file"),
    },
    Key {
        path: "shutdown_grace_seconds",
        kind: Kind::Seconds,
        default: "10",
        env: &["POOLWATCH_SHUTDOWN_GRACE_SECONDS"],
        flag: None,
    },
    Key {
        path: "log_level",
        kind: Kind::Text,
        default: "info",
        env: &["POOLWATCH_LOG_LEVEL"],
        flag: Some("--log-level"),
    },
    Key {
        path: "log_format",
        kind: Kind::Choice(LOG_FORMATS),
        default: "text",
        env: &["POOLWATCH_LOG_FORMAT"],
        flag: Some("--log-format"),
    },
    Key {
        path: "http.max_body_bytes",
        kind: Kind::Count,
        default: "1048576",
        env: &["POOLWATCH_HTTP_MAX_BODY_BYTES"],
        flag: None,
    },
    Key {
        path: "http.request_timeout_seconds",
        kind: Kind::Seconds,
        default: "10",
        env: &["POOLWATCH_HTTP_REQUEST_TIMEOUT_SECONDS"],
        flag: None,
    },
    Key {
        path: "http.max_connections",
        kind: Kind::Count,
        default: "512",
        env: &["POOLWATCH_HTTP_MAX_CONNECTIONS"],
        flag: None,
    },
    Key {
        path: "http.push_token",
        kind: Kind::Secret,
        default: "-",
        env: &["POOLWATCH_HTTP_PUSH_TOKEN"],
        flag: None,
    },
    Key {
        path: "http.push_token_file",
        kind: Kind::Path,
        default: "-",
        env: &["POOLWATCH_HTTP_PUSH_TOKEN_FILE"],
        flag: None,
    },
    Key {
        path: "pools.expiry_seconds",
        kind: Kind::Seconds,
        default: "60",
        env: &["POOLWATCH_POOLS_EXPIRY_SECONDS"],
        flag: None,
    },
    Key {
        path: "pools.max_pools",
        kind: Kind::Count,
        default: "1000",
        env: &["POOLWATCH_POOLS_MAX_POOLS"],
        flag: None,
    },
    Key {
        path: "pools.max_apps",
        kind: Kind::Count,
        default: "500",
        env: &["POOLWATCH_POOLS_MAX_APPS"],
        flag: None,
    },
    Key {
        path: "pools.max_pools_per_app",
        kind: Kind::Count,
        default: "500",
        env: &["POOLWATCH_POOLS_MAX_POOLS_PER_APP"],
        flag: None,
    },
    Key {
        path: "pod_ip",
        kind: Kind::Text,
        default: "-",
        env: &["POOLWATCH_POD_IP", "POD_IP"],
        flag: None,
    },
    Key {
        path: "socket.peers",
        kind: Kind::Text,
        default: "-",
        env: &["POOLWATCH_SOCKET_PEERS"],
        flag: None,
    },
    Key {
        path: "socket.proc_net_dir",
        kind: Kind::Path,
        default: "/proc/net",
        env: &["POOLWATCH_SOCKET_PROC_NET_DIR"],
        flag: None,
    },
    Key {
        path: "analysis.interval_seconds",
        kind: Kind::Seconds,
        default: "-",
        env: &["POOLWATCH_ANALYSIS_INTERVAL_SECONDS"],
        flag: None,
    },
    Key {
        path: "analysis.window_seconds",
        kind: Kind::Seconds,
        default: "900",
        env: &["POOLWATCH_ANALYSIS_WINDOW_SECONDS"],
        flag: None,
    },
    Key {
        path: "analysis.idle_in_use_seconds",
        kind: Kind::Seconds,
        default: "60",
        env: &["POOLWATCH_ANALYSIS_IDLE_IN_USE_SECONDS"],
        flag: None,
    },
    Key {
        path: "analysis.lifetime_grace_seconds",
        kind: Kind::Seconds,
        default: "60",
        env: &["POOLWATCH_ANALYSIS_LIFETIME_GRACE_SECONDS"],
        flag: None,
    },
    Key {
        path: "analysis.disagreement_hold_seconds",
        kind: Kind::Seconds,
        default: "300",
        env: &["POOLWATCH_ANALYSIS_DISAGREEMENT_HOLD_SECONDS"],
        flag: None,
    },
    Key {
        path: "analysis.top_n",
        kind: Kind::Count,
        default: "20",
        env: &["POOLWATCH_ANALYSIS_TOP_N"],
        flag: None,
    },
    Key {
        path: "database.url",
        kind: Kind::Secret,
        default: "-",
        env: &["POOLWATCH_DATABASE_URL", "DATABASE_URL"],
        flag: Some("--database-url"),
    },
    Key {
        path: "database.url_file",
        kind: Kind::Path,
        default: "-",
        env: &["POOLWATCH_DATABASE_URL_FILE"],
        flag: Some("--database-url-file"),
    },
    Key {
        path: "database.sslmode",
        kind: Kind::Choice(SSLMODES),
        default: "prefer",
        env: &["POOLWATCH_DATABASE_SSLMODE"],
        flag: None,
    },
    Key {
        path: "database.ca_file",
        kind: Kind::Path,
        default: "/etc/ssl/certs/ca-certificates.crt",
        env: &["POOLWATCH_DATABASE_CA_FILE"],
        flag: None,
    },
    Key {
        path: "database.application_name",
        kind: Kind::Text,
        default: "poolwatch",
        env: &["POOLWATCH_DATABASE_APPLICATION_NAME"],
        flag: None,
    },
    Key {
        path: "database.interval_seconds",
        kind: Kind::Seconds,
        default: "15",
        env: &["POOLWATCH_DATABASE_INTERVAL_SECONDS"],
        flag: None,
    },
    Key {
        path: "database.connect_timeout_seconds",
        kind: Kind::Seconds,
        default: "5",
        env: &["POOLWATCH_DATABASE_CONNECT_TIMEOUT_SECONDS"],
        flag: None,
    },
    Key {
        path: "database.statement_timeout_seconds",
        kind: Kind::Seconds,
        default: "5",
        env: &["POOLWATCH_DATABASE_STATEMENT_TIMEOUT_SECONDS"],
        flag: None,
    },
    Key {
        path: "database.lock_timeout_seconds",
        kind: Kind::Seconds,
        default: "1",
        env: &["POOLWATCH_DATABASE_LOCK_TIMEOUT_SECONDS"],
        flag: None,
    },
    Key {
        path: "database.reconnect_max_backoff_seconds",
        kind: Kind::Seconds,
        default: "-",
        env: &["POOLWATCH_DATABASE_RECONNECT_MAX_BACKOFF_SECONDS"],
        flag: None,
    },
    Key {
        path: "database.max_application_names",
        kind: Kind::Count,
        default: "200",
        env: &["POOLWATCH_DATABASE_MAX_APPLICATION_NAMES"],
        flag: None,
    },
    Key {
        path: "database.query_text",
        kind: Kind::Choice(QUERY_TEXT),
        default: "fingerprint",
        env: &["POOLWATCH_DATABASE_QUERY_TEXT"],
        flag: None,
    },
    Key {
        path: "database.query_max_chars",
        kind: Kind::Count,
        default: "256",
        env: &["POOLWATCH_DATABASE_QUERY_MAX_CHARS"],
        flag: None,
    },
];

/// Values given on the command line (or through the environment variables clap reads
/// for them), keyed by configuration path.
pub type FlagValues = Vec<(&'static str, String)>;

/// A value and where it came from, for error messages.
struct Raw {
    value: Value,
    origin: String,
}

/// The merged key/value view being validated, collecting every problem on the way.
struct Sources<'e> {
    values: BTreeMap<&'static str, Raw>,
    problems: Vec<String>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

fn key(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path == path)
}

/// Reads the process environment; tests pass their own lookup instead.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads and validates the configuration: `file` (if any), then the environment, then
/// `flags`. Returns every problem at once.
pub fn load(
    file: Option<&Path>,
    flags: &FlagValues,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let mut s = Sources {
        values: BTreeMap::new(),
        problems: Vec::new(),
        env,
    };
    if let Some(path) = file {
        s.read_file(path);
    }
    for k in KEYS {
        // Flags are applied below; an env variable clap already turned into a flag
        // value is applied there with the same result.
        for name in k.env {
            if let Some(v) = (s.env)(name) {
                s.values.insert(
                    k.path,
                    Raw {
                        value: Value::String(v),
                        origin: format!("environment variable {name}"),
                    },
                );
                break;
            }
        }
    }
    for (path, v) in flags {
        let flag = key(path).and_then(|k| k.flag).unwrap_or(path);
        s.values.insert(
            path,
            Raw {
                value: Value::String(v.clone()),
                origin: format!("flag {flag}"),
            },
        );
    }
    s.build()
}

impl Sources<'_> {
    fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    fn read_file(&mut self, path: &Path) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => return self.problem(format!("{}: cannot read: {e}", path.display())),
        };
        let doc: Value = match serde_yaml::from_str(&text) {
            Ok(v) => v,
            Err(e) => return self.problem(format!("{}: not valid YAML: {e}", path.display())),
        };
        match doc {
            Value::Null => {}
            Value::Mapping(_) => self.flatten(&doc, "", path),
            _ => self.problem(format!(
                "{}: expected a mapping of keys at the top level",
                path.display()
            )),
        }
    }

    fn flatten(&mut self, v: &Value, prefix: &str, file: &Path) {
        let Value::Mapping(m) = v else { return };
        for (k, v) in m {
            let Some(name) = k.as_str() else {
                self.problem(format!(
                    "{}: key {k:?} under `{prefix}` is not a string",
                    file.display()
                ));
                continue;
            };
            let path = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            };
            if let Some(key) = key(&path) {
                self.values.insert(
                    key.path,
                    Raw {
                        value: v.clone(),
                        origin: format!("{}", file.display()),
                    },
                );
            } else if KEYS.iter().any(|k| k.path.starts_with(&format!("{path}."))) {
                match v {
                    Value::Mapping(_) => self.flatten(v, &path, file),
                    Value::Null => {}
                    _ => self.problem(format!(
                        "{path} (in {}): expected a mapping of keys",
                        file.display()
                    )),
                }
            } else {
                self.problem(format!("{path} (in {}): unknown key", file.display()));
            }
        }
    }

    /// The value of `path` as text, or `None` when unset or wrong (a problem is recorded).
    fn text(&mut self, path: &'static str) -> Option<String> {
        let raw = self.values.get(path)?;
        let secret = matches!(key(path).map(|k| k.kind), Some(Kind::Secret));
        match &raw.value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) if !secret => Some(n.to_string()),
            Value::Null => None,
            _ => {
                let p = format!("{path} (from {}): expected a string", raw.origin);
                self.problem(p);
                None
            }
        }
    }

    fn shown(&self, path: &str) -> String {
        match self.values.get(path) {
            Some(Raw {
                value: Value::String(s),
                ..
            }) => format!("{s:?}"),
            Some(Raw { value, .. }) => serde_yaml::to_string(value)
                .unwrap_or_default()
                .trim()
                .to_string(),
            None => String::new(),
        }
    }

    fn bad(&mut self, path: &'static str, expected: &str) {
        let origin = self
            .values
            .get(path)
            .map(|r| r.origin.clone())
            .unwrap_or_default();
        let p = format!(
            "{path} (from {origin}): expected {expected}, got {}",
            self.shown(path)
        );
        self.problem(p);
    }

    fn number(&mut self, path: &'static str) -> Option<f64> {
        let raw = self.values.get(path)?;
        let n = match &raw.value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            Value::Null => return None,
            _ => None,
        };
        if n.is_none() {
            self.bad(path, "a number");
        }
        n
    }

    fn seconds(&mut self, path: &'static str, default: f64) -> Duration {
        match self.number(path) {
            Some(n) if n.is_finite() && n > 0.0 && n < 1e9 => Duration::from_secs_f64(n),
            Some(_) => {
                self.bad(path, "a positive number of seconds");
                Duration::from_secs_f64(default)
            }
            None => Duration::from_secs_f64(default),
        }
    }

    fn opt_seconds(&mut self, path: &'static str) -> Option<Duration> {
        self.values
            .contains_key(path)
            .then(|| self.seconds(path, 1.0))
    }

    fn count(&mut self, path: &'static str, default: usize) -> usize {
        match self.number(path) {
            Some(n) if n.fract() == 0.0 && (1.0..=1e12).contains(&n) => n as usize,
            Some(_) => {
                self.bad(path, "a positive whole number");
                default
            }
            None => default,
        }
    }

    fn choice(&mut self, path: &'static str, default: &'static str) -> String {
        let Some(Kind::Choice(words)) = key(path).map(|k| k.kind) else {
            unreachable!("{path} is a choice")
        };
        match self.text(path) {
            Some(v) if words.contains(&v.as_str()) => v,
            Some(_) => {
                self.bad(path, &format!("one of {}", words.join(", ")));
                default.to_string()
            }
            None => default.to_string(),
        }
    }

    fn address(&mut self, path: &'static str, default: &str) -> SocketAddr {
        let fallback =
            SocketAddr::from_str(default).unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        match self.text(path) {
            Some(v) => match parse_address(&v) {
                Some(a) => a,
                None => {
                    self.bad(path, "an address like 0.0.0.0:19187, [::]:19187 or :19187");
                    fallback
                }
            },
            None => fallback,
        }
    }

    fn build(mut self) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let mode = match self.choice("mode", "central").as_str() {
            "sidecar" => Mode::Sidecar,
            _ => Mode::Central,
        };
        let instance = match self.text("instance") {
            Some(v) => v,
            None if mode == Mode::Sidecar => (self.env)("POD_NAME").unwrap_or_default(),
            None => String::new(),
        };
        if instance.len() > 253 {
            self.bad("instance", "at most 253 characters");
        }
        let listen_address = self.address("listen_address", DEFAULT_LISTEN);
        let push_default = match mode {
            Mode::Sidecar => DEFAULT_SIDECAR_PUSH_LISTEN.to_string(),
            Mode::Central => listen_address.to_string(),
        };
        let push_listen_address = self.address("push_listen_address", &push_default);
        if push_listen_address != listen_address
            && push_listen_address.port() == listen_address.port()
            && push_listen_address.port() != 0
        {
            self.problem(format!(
                "push_listen_address {push_listen_address} and listen_address {listen_address} share a port but not an address; use the same address or another port"
            ));
        }
        let shutdown_grace = self.seconds("shutdown_grace_seconds", 10.0);
        let log_level = self.text("log_level").unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            self.bad(
                "log_level",
                "a level (error, warn, info, debug, trace) or a tracing filter",
            );
        }
        let log_format = match self.choice("log_format", "text").as_str() {
            "json" => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let http = HttpConfig {
            max_body_bytes: self.count("http.max_body_bytes", 1 << 20),
            request_timeout: self.seconds("http.request_timeout_seconds", 10.0),
            max_connections: self.count("http.max_connections", 512),
            push_token: self.push_token(),
        };
        let web = match self.text("web_config_file").filter(|f| !f.is_empty()) {
            Some(f) => match crate::http::web::load(Path::new(&f)) {
                Ok(w) => Some(w),
                Err(e) => {
                    self.problem(format!("web_config_file: {e}"));
                    None
                }
            },
            None => None,
        };
        let pools = PoolsConfig {
            expiry: self.seconds("pools.expiry_seconds", 60.0),
            max_pools: self.count("pools.max_pools", 1000),
            max_apps: self.count("pools.max_apps", 500),
            max_pools_per_app: self.count("pools.max_pools_per_app", 500),
        };
        let database = self.database(&mut warnings);
        let pod_ip = match self.text("pod_ip").filter(|s| !s.is_empty()) {
            Some(ip) => match ip.parse::<std::net::IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.bad("pod_ip", "an IP address");
                    None
                }
            },
            None => None,
        };
        let socket = self.socket(mode, database.as_ref(), &mut warnings);
        let analysis = AnalysisSettings {
            interval: self
                .opt_seconds("analysis.interval_seconds")
                .unwrap_or_else(|| {
                    database
                        .as_ref()
                        .map(|d| d.interval)
                        .unwrap_or(Duration::from_secs(15))
                }),
            window: self.seconds("analysis.window_seconds", 900.0),
            idle_in_use: self.seconds("analysis.idle_in_use_seconds", 60.0),
            lifetime_grace: self.seconds("analysis.lifetime_grace_seconds", 60.0),
            disagreement_hold: self.seconds("analysis.disagreement_hold_seconds", 300.0),
            top_n: self.count("analysis.top_n", 20),
        };
        if analysis.window < analysis.interval * 4 {
            self.problem(format!(
                "analysis.window_seconds ({}) must hold at least 4 analysis intervals ({} s each)",
                analysis.window.as_secs_f64(),
                analysis.interval.as_secs_f64()
            ));
        }
        if self.problems.is_empty() {
            Ok(Config {
                mode,
                instance,
                listen_address,
                push_listen_address,
                shutdown_grace,
                log_level,
                log_format,
                http,
                web,
                pools,
                pod_ip,
                socket,
                analysis,
                database,
                warnings,
            })
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }

    fn database(&mut self, warnings: &mut Vec<String>) -> Option<DatabaseConfig> {
        let url = self.text("database.url").filter(|u| !u.trim().is_empty());
        let url_file = self.text("database.url_file").filter(|u| !u.is_empty());
        // Settings of the session are validated even without a database, so that a
        // typo is found before the day a database is configured.
        let interval = self.seconds("database.interval_seconds", 15.0);
        let connect_timeout = self.seconds("database.connect_timeout_seconds", 5.0);
        let statement_timeout = self.seconds("database.statement_timeout_seconds", 5.0);
        let lock_timeout = self.seconds("database.lock_timeout_seconds", 1.0);
        let reconnect_max_backoff = self
            .opt_seconds("database.reconnect_max_backoff_seconds")
            .unwrap_or(interval);
        let max_application_names = self.count("database.max_application_names", 200);
        let query_text = match self.choice("database.query_text", "fingerprint").as_str() {
            "none" => QueryText::None,
            "full" => QueryText::Full,
            _ => QueryText::Fingerprint,
        };
        let query_max_chars = self.count("database.query_max_chars", 256);
        let application_name = self
            .text("database.application_name")
            .unwrap_or_else(|| "poolwatch".into());
        if application_name.is_empty()
            || application_name.len() > 63
            || !application_name.is_ascii()
        {
            self.bad("database.application_name", "1 to 63 ASCII characters");
        }
        if statement_timeout > interval {
            self.problem(format!(
                "database.statement_timeout_seconds ({}) must not exceed database.interval_seconds ({})",
                statement_timeout.as_secs_f64(),
                interval.as_secs_f64()
            ));
        }
        if lock_timeout > statement_timeout {
            self.problem(format!(
                "database.lock_timeout_seconds ({}) must not exceed database.statement_timeout_seconds ({})",
                lock_timeout.as_secs_f64(),
                statement_timeout.as_secs_f64()
            ));
        }
        let explicit_sslmode = self
            .values
            .contains_key("database.sslmode")
            .then(|| self.choice("database.sslmode", "prefer"));
        let explicit_ca = self.text("database.ca_file");

        let libpq_vars = ["PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE"];
        let (text, source) = match (url, url_file) {
            (Some(_), Some(_)) => {
                self.problem("database.url and database.url_file are both set; set one".into());
                return None;
            }
            (Some(u), None) => (u, "url"),
            (None, Some(f)) => match std::fs::read_to_string(&f) {
                Ok(t) if !t.trim().is_empty() => (t.trim().to_string(), "url_file"),
                Ok(_) => {
                    self.problem(format!("database.url_file: {f} is empty"));
                    return None;
                }
                Err(e) => {
                    self.problem(format!("database.url_file: cannot read {f}: {e}"));
                    return None;
                }
            },
            (None, None) if libpq_vars.iter().any(|v| (self.env)(v).is_some()) => {
                (String::new(), "libpq environment")
            }
            (None, None) => return None,
        };

        let mut url_params = UrlParams::default();
        let mut pg = if text.is_empty() {
            tokio_postgres::Config::new()
        } else {
            let stripped = match strip_url(&text, &mut url_params) {
                Ok(s) => s,
                Err(e) => {
                    self.problem(format!("database.{source}: {e}"));
                    return None;
                }
            };
            match tokio_postgres::Config::from_str(&stripped) {
                Ok(c) => c,
                Err(e) => {
                    // The parser's messages name the option, never its value.
                    self.problem(format!(
                        "database.{source}: not a valid PostgreSQL URL: {e}"
                    ));
                    return None;
                }
            }
        };
        if url_params.application_name {
            warnings.push(format!(
                "application_name in the database URL is ignored; poolwatch's session is named by database.application_name ({application_name})"
            ));
        }
        self.fill_from_libpq_env(&mut pg);
        let sslmode_text = explicit_sslmode
            .or(url_params.sslmode.clone())
            .or_else(|| (self.env)("PGSSLMODE"))
            .unwrap_or_else(|| "prefer".into());
        let sslmode = match SslMode::parse(&sslmode_text) {
            Some(m) => m,
            None => {
                self.problem(format!(
                    "database sslmode {sslmode_text:?}: expected one of {}",
                    SSLMODES.join(", ")
                ));
                SslMode::Prefer
            }
        };
        let ca_file = PathBuf::from(
            explicit_ca
                .or(url_params.sslrootcert.clone())
                .or_else(|| (self.env)("PGSSLROOTCERT"))
                .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into()),
        );
        if sslmode == SslMode::VerifyFull && !ca_file.is_file() {
            self.problem(format!(
                "database.ca_file: {} is not a readable file (needed by sslmode verify-full)",
                ca_file.display()
            ));
        }
        pg.application_name(&application_name);
        pg.options(format!(
            "-c statement_timeout={} -c lock_timeout={} -c idle_in_transaction_session_timeout={}",
            statement_timeout.as_millis().max(1),
            lock_timeout.as_millis().max(1),
            statement_timeout.as_millis().max(1)
        ));
        pg.connect_timeout(connect_timeout);
        pg.keepalives(true);
        pg.keepalives_idle(Duration::from_secs(30));
        Some(DatabaseConfig {
            pg,
            sslmode,
            ca_file,
            application_name,
            interval,
            connect_timeout,
            statement_timeout,
            lock_timeout,
            reconnect_max_backoff,
            max_application_names,
            query_text,
            query_max_chars,
            source,
        })
    }

    fn socket(
        &mut self,
        mode: Mode,
        db: Option<&DatabaseConfig>,
        warnings: &mut Vec<String>,
    ) -> Option<SocketConfig> {
        let dir = PathBuf::from(
            self.text("socket.proc_net_dir")
                .unwrap_or_else(|| "/proc/net".into()),
        );
        let explicit = self.text("socket.peers");
        let peers: Vec<String> = match &explicit {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            None => db.and_then(database_peer).into_iter().collect(),
        };
        for p in &peers {
            let ok = p
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                self.bad("socket.peers", "a comma-separated list of host:port");
                return None;
            }
        }
        match mode {
            Mode::Sidecar if !peers.is_empty() => Some(SocketConfig {
                peers,
                proc_net_dir: dir,
            }),
            Mode::Central if explicit.is_some() && !peers.is_empty() => {
                warnings.push("socket.peers is ignored in central mode: the socket view counts a pod's own connections".into());
                None
            }
            _ => None,
        }
    }

    fn push_token(&mut self) -> Option<Secret> {
        let inline = self.text("http.push_token").filter(|t| !t.is_empty());
        let file = self.text("http.push_token_file").filter(|t| !t.is_empty());
        let token = match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(
                    "http.push_token and http.push_token_file are both set; set one".into(),
                );
                return None;
            }
            (Some(t), None) => t,
            (None, Some(f)) => match std::fs::read_to_string(&f) {
                Ok(t) => t.trim().to_string(),
                Err(e) => {
                    self.problem(format!("http.push_token_file: cannot read {f}: {e}"));
                    return None;
                }
            },
            (None, None) => return None,
        };
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            self.problem("http.push_token: at least 16 printable characters without spaces".into());
            return None;
        }
        Some(Secret(token))
    }

    /// As libpq: environment variables give what the URL does not.
    fn fill_from_libpq_env(&mut self, pg: &mut tokio_postgres::Config) {
        if pg.get_hosts().is_empty() {
            let host = (self.env)("PGHOST")
                .or_else(|| (self.env)("PGHOSTADDR"))
                .unwrap_or_else(|| "localhost".into());
            for h in host.split(',') {
                pg.host(h);
            }
        }
        if pg.get_ports().is_empty() {
            if let Some(p) = (self.env)("PGPORT") {
                match p.parse::<u16>() {
                    Ok(p) => {
                        pg.port(p);
                    }
                    Err(_) => self.problem(format!("PGPORT: expected a port number, got {p:?}")),
                }
            }
        }
        if pg.get_user().is_none() {
            let user = (self.env)("PGUSER")
                .or_else(|| (self.env)("USER"))
                .unwrap_or_else(|| "postgres".into());
            pg.user(&user);
        }
        if pg.get_password().is_none() {
            if let Some(p) = (self.env)("PGPASSWORD") {
                pg.password(p);
            }
        }
        if pg.get_dbname().is_none() {
            if let Some(d) = (self.env)("PGDATABASE") {
                pg.dbname(&d);
            }
        }
    }
}

/// Parameters poolwatch takes out of a URL before tokio-postgres parses the rest.
#[derive(Default)]
struct UrlParams {
    sslmode: Option<String>,
    sslrootcert: Option<String>,
    application_name: bool,
}

/// The database's first TCP endpoint as `host:port`, the default socket peer.
fn database_peer(db: &DatabaseConfig) -> Option<String> {
    let host = db.pg.get_hosts().iter().find_map(|h| match h {
        tokio_postgres::config::Host::Tcp(s) => Some(s.clone()),
        tokio_postgres::config::Host::Unix(_) => None,
    })?;
    let port = db.pg.get_ports().first().copied().unwrap_or(5432);
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

/// Removes `sslmode`, `sslrootcert` and `application_name` from a URL's query string.
fn strip_url(url: &str, out: &mut UrlParams) -> Result<String, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("expected a URL starting with postgres:// or postgresql://".into());
    }
    let Some((base, query)) = url.split_once('?') else {
        return Ok(url.to_string());
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "sslmode" => out.sslmode = Some(crate::percent_decode(v)),
            "sslrootcert" => out.sslrootcert = Some(crate::percent_decode(v)),
            "application_name" => out.application_name = true,
            _ => kept.push(pair),
        }
    }
    Ok(if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    })
}

/// Accepts `host:port`, `[v6]:port` and `:port` (all interfaces).
pub fn parse_address(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Some(port) = s.strip_prefix(':') {
        return port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::from(([0, 0, 0, 0], p)));
    }
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    let (host, port) = s.rsplit_once(':')?;
    if host == "localhost" {
        return port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn yaml(text: &str) -> tempfile_lite::File {
        tempfile_lite::File::new(text)
    }

    /// A file in the temp dir, removed on drop (std only).
    mod tempfile_lite {
        use std::path::PathBuf;
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        pub struct File(pub PathBuf);
        impl File {
            pub fn new(text: &str) -> File {
                let p = std::env::temp_dir().join(format!(
                    "poolwatch-config-test-{}-{}.yaml",
                    std::process::id(),
                    N.fetch_add(1, Ordering::SeqCst)
                ));
                std::fs::write(&p, text).expect("write temp file");
                File(p)
            }
        }
        impl Drop for File {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    fn load_with(
        file: Option<&str>,
        flags: &[(&'static str, &str)],
        e: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        let f = file.map(yaml);
        let flags: FlagValues = flags.iter().map(|(k, v)| (*k, v.to_string())).collect();
        load(f.as_ref().map(|f| f.0.as_path()), &flags, &env(e))
    }

    #[test]
    fn defaults_run_push_only_in_central_mode() {
        let c = load_with(None, &[], &[]).expect("empty config is valid");
        assert_eq!(c.mode, Mode::Central);
        assert_eq!(c.listen_address.to_string(), "0.0.0.0:19187");
        assert_eq!(c.push_listen_address, c.listen_address);
        assert!(c.database.is_none());
        assert_eq!(c.pools.expiry, Duration::from_secs(60));
        assert_eq!(c.pools.max_pools, 1000);
        assert_eq!(c.http.max_body_bytes, 1 << 20);
    }

    #[test]
    fn sidecar_defaults_push_to_loopback_and_instance_to_pod_name() {
        let c = load_with(Some("mode: sidecar\n"), &[], &[("POD_NAME", "api-7f9c-x2")]).unwrap();
        assert_eq!(c.push_listen_address.to_string(), "127.0.0.1:19188");
        assert!(c.push_listen_address.ip().is_loopback());
        assert_eq!(c.instance, "api-7f9c-x2");
    }

    #[test]
    fn flags_beat_environment_which_beats_file() {
        let file = "listen_address: 127.0.0.1:1000\npools:\n  expiry_seconds: 30\n  max_pools: 7\n";
        let c = load_with(Some(file), &[], &[]).unwrap();
        assert_eq!(c.listen_address.port(), 1000);
        assert_eq!(c.pools.max_pools, 7);

        let e = [
            ("POOLWATCH_LISTEN_ADDRESS", "127.0.0.1:2000"),
            ("POOLWATCH_POOLS_EXPIRY_SECONDS", "45"),
        ];
        let c = load_with(Some(file), &[], &e).unwrap();
        assert_eq!(c.listen_address.port(), 2000);
        assert_eq!(c.pools.expiry, Duration::from_secs(45));
        assert_eq!(c.pools.max_pools, 7, "file value kept where env is silent");

        let c = load_with(Some(file), &[("listen_address", "127.0.0.1:3000")], &e).unwrap();
        assert_eq!(c.listen_address.port(), 3000);
        assert_eq!(c.pools.expiry, Duration::from_secs(45));
    }

    #[test]
    fn all_problems_reported_at_once() {
        let file = "mode: edge\nlisten_adress: 1.2.3.4:5\npools:\n  expiry_seconds: -3\n  max_pool: 3\ndatabase:\n  interval_seconds: abc\n";
        let err =
            load_with(Some(file), &[], &[("POOLWATCH_HTTP_MAX_BODY_BYTES", "1.5")]).unwrap_err();
        let text = err.to_string();
        for needle in [
            "mode (from",
            "one of sidecar, central",
            "listen_adress (in",
            "unknown key",
            "pools.expiry_seconds",
            "pools.max_pool (in",
            "database.interval_seconds",
            "http.max_body_bytes (from environment variable POOLWATCH_HTTP_MAX_BODY_BYTES)",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        assert_eq!(err.problems.len(), 6, "{text}");
    }

    #[test]
    fn each_rejection_path() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("- a\n- b\n", &[], "expected a mapping of keys at the top level"),
            ("mode: [\n", &[], "not valid YAML"),
            ("pools: 3\n", &[], "pools (in"),
            ("listen_address: nowhere\n", &[], "an address like"),
            ("http:\n  max_body_bytes: 0\n", &[], "a positive whole number"),
            ("log_level: 'info,,=x'\n", &[], "log_level"),
            ("database:\n  statement_timeout_seconds: 30\n", &[], "must not exceed database.interval_seconds"),
            ("database:\n  lock_timeout_seconds: 4\n  statement_timeout_seconds: 2\n", &[], "must not exceed database.statement_timeout_seconds"),
            ("database:\n  url: mysql://x\n", &[], "postgres:// or postgresql://"),
            ("database:\n  url: postgres://a@b/c\n  url_file: /etc/x\n", &[], "both set"),
            ("database:\n  url_file: /nonexistent/poolwatch-url\n", &[], "cannot read /nonexistent/poolwatch-url"),
            ("database:\n  url: postgres://a@b/c?sslmode=verify-ca\n", &[], "expected one of disable, prefer, require, verify-full"),
            ("database:\n  url: postgres://a@b/c?sslmode=verify-full&sslrootcert=/nonexistent.pem\n", &[], "not a readable file"),
            ("database:\n  url: 'postgres://u@h:notaport/db'\n", &[], "not a valid PostgreSQL URL"),
            ("", &[("PGPORT", "x")], "PGPORT"),
            ("push_listen_address: 127.0.0.1:19187\n", &[], "share a port"),
        ];
        for (file, e, needle) in cases {
            let err = load_with(Some(file), &[], e).expect_err(file);
            assert!(
                err.to_string().contains(needle),
                "{file:?}: {needle:?} missing from {err}"
            );
        }
    }

    #[test]
    fn database_from_url_file_and_libpq_environment() {
        let secret = yaml("postgres://watcher:s3cret-pw@db.example:6432/app?sslmode=require\n");
        let file = format!("database:\n  url_file: {}\n", secret.0.display());
        let c = load_with(Some(&file), &[], &[]).unwrap();
        let db = c.database.unwrap();
        assert_eq!(db.source, "url_file");
        assert_eq!(db.sslmode, SslMode::Require);
        assert_eq!(
            db.target(),
            "host=db.example port=6432 dbname=app user=watcher sslmode=require"
        );

        let e = [
            ("PGHOST", "127.0.0.1"),
            ("PGPORT", "5433"),
            ("PGUSER", "mon"),
            ("PGPASSWORD", "pw"),
            ("PGDATABASE", "d"),
            ("PGSSLMODE", "disable"),
            ("PGAPPNAME", "not-us"),
        ];
        let db = load_with(None, &[], &e).unwrap().database.unwrap();
        assert_eq!(db.source, "libpq environment");
        assert_eq!(
            db.target(),
            "host=127.0.0.1 port=5433 dbname=d user=mon sslmode=disable"
        );
        assert_eq!(
            db.pg.get_application_name(),
            Some("poolwatch"),
            "PGAPPNAME never names our session"
        );
        assert_eq!(db.pg.get_password(), Some(&b"pw"[..]));

        // The URL wins over the environment, which fills the user, password and
        // database the URL leaves out (a URL with a host always has a port: 5432).
        let db = load_with(
            None,
            &[(
                "database.url",
                "postgres://db.internal/sales?application_name=x",
            )],
            &e,
        )
        .unwrap();
        assert_eq!(db.warnings.len(), 1);
        let db = db.database.unwrap();
        assert_eq!(
            db.target(),
            "host=db.internal port=5432 dbname=sales user=mon sslmode=disable"
        );
        assert_eq!(db.pg.get_password(), Some(&b"pw"[..]));
        assert_eq!(db.pg.get_application_name(), Some("poolwatch"));
    }

    #[test]
    fn secrets_never_shown() {
        let url = "postgres://watcher:hunter2-secret@db:5432/app";
        let c = load_with(None, &[("database.url", url)], &[]).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        // Nor in errors about the URL.
        for bad in [
            "postgres://watcher:hunter2-secret@db:99999/app",
            "postgres://watcher:hunter2-secret@db/app?bogus=1",
        ] {
            let err = load_with(None, &[("database.url", bad)], &[])
                .unwrap_err()
                .to_string();
            assert!(err.contains("database.url"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = load_with(Some("database:\n  url: [hunter2]\n"), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn session_settings_applied() {
        let c = load_with(Some("database:\n  url: postgres://u@h/d\n  statement_timeout_seconds: 2.5\n  lock_timeout_seconds: 0.5\n"), &[], &[]).unwrap();
        let db = c.database.unwrap();
        let opts = db.pg.get_options().unwrap();
        assert!(opts.contains("statement_timeout=2500"), "{opts}");
        assert!(opts.contains("lock_timeout=500"), "{opts}");
        assert_eq!(db.pg.get_connect_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(db.reconnect_max_backoff, db.interval);
    }

    #[test]
    fn sidecar_socket_view_pod_ip_and_analysis_defaults() {
        let e = [("POD_IP", "10.1.2.3"), ("POD_NAME", "api-1")];
        let c = load_with(Some("mode: sidecar\ndatabase:\n  url: postgres://u@db.internal:6432/d\n  interval_seconds: 10\n"), &[], &e).unwrap();
        assert_eq!(c.pod_ip, Some("10.1.2.3".parse().unwrap()));
        let sock = c.socket.expect("socket view on in sidecar mode");
        assert_eq!(
            sock.peers,
            vec!["db.internal:6432".to_string()],
            "the database is the default peer"
        );
        assert_eq!(sock.proc_net_dir, PathBuf::from("/proc/net"));
        assert_eq!(
            c.analysis.interval,
            Duration::from_secs(10),
            "analysis follows the sample interval"
        );
        assert_eq!(c.analysis.window, Duration::from_secs(900));

        // Fleet scale: a sidecar with no database session counts sockets to given peers.
        let c = load_with(
            Some("mode: sidecar\nsocket:\n  peers: 10.0.0.5:5432, db2:5433\n"),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(
            c.socket.unwrap().peers,
            vec!["10.0.0.5:5432".to_string(), "db2:5433".to_string()]
        );
        assert_eq!(c.analysis.interval, Duration::from_secs(15));

        // Central mode has no socket view.
        let c = load_with(
            Some("database:\n  url: postgres://u@db/d\nsocket:\n  peers: db:5432\n"),
            &[],
            &[],
        )
        .unwrap();
        assert!(c.socket.is_none());
        assert_eq!(c.warnings.len(), 1);

        for (file, needle) in [
            ("pod_ip: not-an-ip\n", "pod_ip"),
            ("socket:\n  peers: db\n", "host:port"),
            (
                "analysis:\n  interval_seconds: 60\n  window_seconds: 120\n",
                "at least 4 analysis intervals",
            ),
        ] {
            let err = load_with(Some(file), &[], &[]).expect_err(file);
            assert!(err.to_string().contains(needle), "{file}: {err}");
        }
    }

    #[test]
    fn push_token_from_environment_or_file_never_shown() {
        let c = load_with(
            None,
            &[],
            &[("POOLWATCH_HTTP_PUSH_TOKEN", "s3cret-token-0123456789")],
        )
        .unwrap();
        let t = c.http.push_token.clone().expect("token");
        assert!(t.matches(b"s3cret-token-0123456789"));
        assert!(!t.matches(b"s3cret-token-012345678"));
        assert!(!t.matches(b"s3cret-token-0123456789x"));
        assert!(!format!("{c:?}").contains("s3cret"), "redacted in Debug");
        let f = yaml("file-token-abcdefghijkl\n");
        let c = load_with(
            Some(&format!("http:\n  push_token_file: {}\n", f.0.display())),
            &[],
            &[],
        )
        .unwrap();
        assert!(c
            .http
            .push_token
            .unwrap()
            .matches(b"file-token-abcdefghijkl"));
        let err = load_with(None, &[], &[("POOLWATCH_HTTP_PUSH_TOKEN", "short")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at least 16") && !err.contains("short\""),
            "{err}"
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address(":9").unwrap().to_string(), "0.0.0.0:9");
        assert_eq!(parse_address("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert_eq!(
            parse_address("localhost:9").unwrap().to_string(),
            "127.0.0.1:9"
        );
        assert!(parse_address("example.com:9").is_none());
    }
}
