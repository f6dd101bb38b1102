//! Configuration loading: a YAML file, environment variables on top of it, flags on top
//! of those.
//!
//! Owns reading the three sources and nothing else: each component owns its section
//! (its `Config` type, its keys with their defaults, its validation, beside its code),
//! and this module hands the merged [`Values`] to each owner in turn and collects every
//! problem they find, so all of them are reported at once ([`ConfigError`]; the binary
//! exits 64) before the runtime starts.
//!
//! | section | owner |
//! |---|---|
//! | `mode`, `instance`, `pod_ip`, `listen_address`, `push_listen_address`, `shutdown_grace_seconds`, `log_*` | [`crate::daemon::DaemonConfig`] |
//! | `http.*`, `web_config_file` | [`crate::http::config::HttpConfig`] |
//! | `pools.*` | [`crate::store::PoolsConfig`] |
//! | `database.*` | [`crate::sampler::config::DatabaseConfig`] |
//! | `socket.*` | [`crate::sampler::socket::SocketConfig`] |
//! | `analysis.*` | [`crate::tick::AnalysisSettings`] |
//! | `forward.*` | [`crate::forward::config::ForwardConfig`] |
//!
//! [`keys`] lists every key with its type, default and environment variables; that list
//! is also what `docs/configuration.md` documents (a test keeps the two in step). Flags
//! come from `main`, whose clap arguments read their own environment variables; every
//! key's variables are also read here, so library callers get the same result.

use std::fmt;
use std::path::Path;

use serde_yaml::Value;

use crate::daemon::DaemonConfig;
use crate::fleet::config::DatabaseEntry;
use crate::forward::config::ForwardConfig;
use crate::http::config::HttpConfig;
use crate::http::web::WebConfig;
use crate::keys::{Key, Values};
use crate::sampler::config::DatabaseConfig;
use crate::sampler::socket::SocketConfig;
use crate::store::PoolsConfig;
use crate::tick::AnalysisSettings;

/// Exit code for an invalid configuration (`EX_CONFIG` is 78; exporters use 64, `EX_USAGE`).
pub const EXIT_INVALID_CONFIG: i32 = 64;

/// The validated configuration the daemon runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Mode, listeners, logging, shutdown.
    pub daemon: DaemonConfig,
    /// HTTP server limits.
    pub http: HttpConfig,
    /// TLS and basic auth for both listeners, from `web_config_file`.
    pub web: Option<WebConfig>,
    /// Pool store limits.
    pub pools: PoolsConfig,
    /// The socket view; on in sidecar mode when there are peers to count.
    pub socket: Option<SocketConfig>,
    /// Analysis timing and thresholds.
    pub analysis: AnalysisSettings,
    /// The watched database when one is given by `database.url`, `database.url_file` or
    /// the libpq variables; `None` with a `databases` list, or push-only.
    pub database: Option<DatabaseConfig>,
    /// Sidecar mode: the central instance its pools are forwarded to.
    pub forward: Option<ForwardConfig>,
    /// The `database` label of every view series: the watched database's name, else
    /// (sidecar mode without a database) `database.name` or the first socket peer. `None`
    /// when nothing names a database: the label is left out.
    pub database_label: Option<String>,
    /// The `databases` list (central mode), when set (it may be empty).
    pub databases: Option<Vec<DatabaseEntry>>,
    /// The file the configuration was read from and the flags given, so that a reload
    /// reads the same sources again.
    pub source: Option<(std::path::PathBuf, FlagValues)>,
    /// Things worth a log line at start that are not errors.
    pub warnings: Vec<String>,
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

/// Every section's keys.
const SECTIONS: &[&[Key]] = &[
    DaemonConfig::KEYS,
    HttpConfig::KEYS,
    PoolsConfig::KEYS,
    SocketConfig::KEYS,
    AnalysisSettings::KEYS,
    DatabaseConfig::KEYS,
    ForwardConfig::KEYS,
    crate::fleet::config::KEYS,
];

/// All configuration keys. `docs/configuration.md` documents each of them.
pub fn keys() -> impl Iterator<Item = &'static Key> + Clone {
    SECTIONS.iter().flat_map(|s| s.iter())
}

fn key(path: &str) -> Option<&'static Key> {
    keys().find(|k| k.path == path)
}

/// Values given on the command line, keyed by configuration path.
pub type FlagValues = Vec<(&'static str, String)>;

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
    let mut v = Values::new(env);
    if let Some(path) = file {
        read_file(&mut v, path);
    }
    for k in keys() {
        if let Some((name, value)) = k.env.iter().find_map(|n| Some((n, env(n)?))) {
            v.set(
                k.path,
                Value::String(value),
                format!("environment variable {name}"),
            );
        }
    }
    for (path, value) in flags {
        let flag = key(path).and_then(|k| k.flag).map_or(*path, |f| f.name);
        v.set(path, Value::String(value.clone()), format!("flag {flag}"));
    }
    let mut cfg = build(v)?;
    cfg.source = file.map(|f| (f.to_path_buf(), flags.clone()));
    Ok(cfg)
}

fn read_file(v: &mut Values, path: &Path) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => return v.problem(format!("{}: cannot read: {e}", path.display())),
    };
    let doc: Value = match serde_yaml::from_str(&text) {
        Ok(doc) => doc,
        Err(e) => return v.problem(format!("{}: not valid YAML: {e}", path.display())),
    };
    match doc {
        Value::Null => {}
        Value::Mapping(_) => flatten(v, &doc, "", path),
        _ => v.problem(format!(
            "{}: expected a mapping of keys at the top level",
            path.display()
        )),
    }
}

/// Sets every key the file's `mapping` (at `prefix`) holds; unknown keys are problems.
fn flatten(v: &mut Values, mapping: &Value, prefix: &str, file: &Path) {
    let Value::Mapping(m) = mapping else { return };
    for (k, value) in m {
        let Some(name) = k.as_str() else {
            v.problem(format!(
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
            v.set(key.path, value.clone(), file.display().to_string());
        } else if keys().any(|k| k.path.starts_with(&format!("{path}."))) {
            match value {
                Value::Mapping(_) => flatten(v, value, &path, file),
                Value::Null => {}
                _ => v.problem(format!(
                    "{path} (in {}): expected a mapping of keys",
                    file.display()
                )),
            }
        } else {
            v.problem(format!("{path} (in {}): unknown key", file.display()));
        }
    }
}

/// Hands each section to its owner.
fn build(mut v: Values) -> Result<Config, ConfigError> {
    let daemon = DaemonConfig::from_values(&mut v);
    let mode = daemon.mode;
    let http = HttpConfig::from_values(&mut v);
    let web = HttpConfig::web_from_values(&mut v);
    let pools = PoolsConfig::from_values(&mut v);
    let database_name = DatabaseConfig::name_from_values(&mut v);
    let database = DatabaseConfig::from_values(&mut v, database_name.clone());
    let databases = crate::fleet::config::from_values(&mut v, mode);
    // With a list, the libpq variables name no database of their own.
    let database = database.filter(|_| databases.is_none());
    let socket = SocketConfig::from_values(
        &mut v,
        mode,
        database.as_ref().and_then(DatabaseConfig::peer),
    );
    let peers = socket.as_ref().map_or(&[][..], |s| &s.peers[..]);
    let database_label =
        DatabaseConfig::label(&mut v, mode, database.as_ref(), database_name, peers);
    let sample_interval = database
        .iter()
        .chain(databases.iter().flatten().map(|e| &e.db))
        .map(|d| d.interval)
        .min();
    let analysis = AnalysisSettings::from_values(&mut v, sample_interval, pools.expiry);
    let forward = ForwardConfig::from_values(&mut v, mode);
    let (problems, warnings) = v.finish();
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    Ok(Config {
        daemon,
        http,
        web,
        pools,
        socket,
        analysis,
        database,
        forward,
        database_label,
        databases,
        source: None,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testing::{env, TempFile};
    use crate::keys::{parse_address, Kind};
    use crate::Mode;
    use std::path::PathBuf;
    use std::time::Duration;

    fn load_with(
        file: Option<&str>,
        flags: &[(&'static str, &str)],
        e: &[(&str, &str)],
    ) -> Result<Config, ConfigError> {
        let f = file.map(TempFile::new);
        let flags: FlagValues = flags.iter().map(|(k, v)| (*k, v.to_string())).collect();
        load(f.as_ref().map(|f| f.0.as_path()), &flags, &env(e))
    }

    /// The configuration `file` gives, with no flags and no environment.
    fn valid(file: &str) -> Config {
        load_with(Some(file), &[], &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_run_push_only_in_central_mode() {
        let c = load_with(None, &[], &[]).expect("empty config is valid");
        assert_eq!(c.daemon.mode, Mode::Central);
        assert_eq!(c.daemon.listen_address.to_string(), "[::]:19187");
        assert!(c.database.is_none());
        assert_eq!(c.pools.expiry, Duration::from_secs(60));
        assert_eq!(c.pools.max_pools, 1000);
        assert_eq!(c.http.max_body_bytes, 1 << 20);
    }

    #[test]
    fn flags_beat_environment_which_beats_file() {
        let file = "listen_address: 127.0.0.1:1000\npools:\n  expiry_seconds: 30\n  max_pools: 7\n";
        let c = valid(file);
        assert_eq!(c.daemon.listen_address.port(), 1000);
        assert_eq!(c.pools.max_pools, 7);

        let e = [
            ("POOLWATCH_LISTEN_ADDRESS", "127.0.0.1:2000"),
            ("POOLWATCH_POOLS_EXPIRY_SECONDS", "45"),
        ];
        let c = load_with(Some(file), &[], &e).unwrap();
        assert_eq!(c.daemon.listen_address.port(), 2000);
        assert_eq!(c.pools.expiry, Duration::from_secs(45));
        assert_eq!(c.pools.max_pools, 7, "file value kept where env is silent");

        let c = load_with(Some(file), &[("listen_address", "127.0.0.1:3000")], &e).unwrap();
        assert_eq!(c.daemon.listen_address.port(), 3000);
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
            ("http:\n  max_body_bytes: 0\n", &[], "a positive whole number"),
            ("database:\n  statement_timeout_seconds: 30\n", &[], "must not exceed database.interval_seconds"),
            ("database:\n  lock_timeout_seconds: 4\n  statement_timeout_seconds: 2\n", &[], "must not exceed database.statement_timeout_seconds"),
            ("database:\n  url: mysql://x\n", &[], "postgres:// or postgresql://"),
            ("database:\n  url: postgres://a@b/c\n  url_file: /etc/x\n", &[], "both set"),
            ("database:\n  url_file: /nonexistent/poolwatch-url\n", &[], "cannot read /nonexistent/poolwatch-url"),
            ("database:\n  url: postgres://a@b/c?sslmode=verify-ca\n", &[], "expected one of disable, prefer, require, verify-full"),
            ("database:\n  url: postgres://a@b/c?sslmode=verify-full&sslrootcert=/nonexistent.pem\n", &[], "not a readable file"),
            ("database:\n  url: 'postgres://u@h:notaport/db'\n", &[], "not a valid PostgreSQL URL"),
            ("", &[("PGPORT", "x")], "PGPORT"),
        ];
        for (file, e, needle) in cases {
            let err = load_with(Some(file), &[], e).expect_err(file);
            assert!(
                err.to_string().contains(needle),
                "{file:?}: {needle:?} missing from {err}"
            );
        }
    }

    /// The `database` label: the database's host:port, `database.name` over it, a
    /// sidecar's first socket peer without a database, none (with a warning in sidecar
    /// mode only) when nothing names one.
    #[test]
    fn database_label_sources() {
        let central = |file: &str| load_with(Some(file), &[], &[]).unwrap();
        let c = central("database:\n  url: postgres://u@db.internal:6432/d\n");
        assert_eq!(c.database_label.as_deref(), Some("db.internal:6432"));
        let c = central("database:\n  url: postgres://u@db.internal/d\n  name: orders\n");
        assert_eq!(c.database_label.as_deref(), Some("orders"));
        let c = central("");
        assert_eq!(c.database_label, None);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);

        let sidecar = |file: &str| {
            load_with(
                Some(&format!("mode: sidecar\n{file}")),
                &[],
                &[("POD_NAME", "api-1")],
            )
            .unwrap()
        };
        let c = sidecar("socket:\n  peers: pg-a.internal:5432,pg-b.internal:5432\n");
        assert_eq!(c.database_label.as_deref(), Some("pg-a.internal:5432"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let c = sidecar("database:\n  name: orders\nsocket:\n  peers: 10.0.0.5:5432\n");
        assert_eq!(c.database_label.as_deref(), Some("orders"));
        let c = sidecar("");
        assert_eq!(c.database_label, None);
        assert!(
            c.warnings.iter().any(|w| w.contains("database.name")),
            "{:?}",
            c.warnings
        );
        let flags = [("database.name", "from-flag")];
        let c = load_with(None, &flags, &[("POOLWATCH_DATABASE_NAME", "from-env")]).unwrap();
        assert_eq!(c.database_label.as_deref(), Some("from-flag"));
        let c = load_with(None, &[], &[("POOLWATCH_DATABASE_NAME", "from-env")]).unwrap();
        assert_eq!(c.database_label.as_deref(), Some("from-env"));
    }

    /// A `databases` list replaces the single database (the libpq variables name none of
    /// their own then), and the analysis follows its shortest interval.
    #[test]
    fn a_databases_list_replaces_the_single_database() {
        let c = valid("database:\n  interval_seconds: 20\ndatabases:\n  - {name: a, url: 'postgres://u@h/a'}\n  - {name: b, url: 'postgres://u@h/b', interval_seconds: 5}\n");
        assert!(c.database.is_none());
        assert_eq!(c.databases.map(|l| l.len()), Some(2));
        assert_eq!(c.analysis.interval, Duration::from_secs(5));
        let c = load_with(None, &[], &[("PGHOST", "db.internal")]).unwrap();
        assert!(c.database.is_some() && c.databases.is_none());
    }

    #[test]
    fn secrets_never_shown() {
        let url = "postgres://watcher:hunter2-secret@db:5432/app";
        let c = load_with(None, &[("database.url", url)], &[]).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        // Nor in errors (those about the URL itself: `sampler::config`).
        let err = load_with(Some("database:\n  url: [hunter2]\n"), &[], &[])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn sidecar_socket_view_pod_ip_and_analysis_defaults() {
        let e = [("POD_IP", "10.1.2.3"), ("POD_NAME", "api-1")];
        let c = load_with(Some("mode: sidecar\ndatabase:\n  url: postgres://u@db.internal:6432/d\n  interval_seconds: 10\n"), &[], &e).unwrap();
        assert_eq!(c.daemon.pod_ip, Some("10.1.2.3".parse().unwrap()));
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
        let c = valid("mode: sidecar\nsocket:\n  peers: 10.0.0.5:5432, db2:5433\n");
        assert_eq!(
            c.socket.unwrap().peers,
            vec!["10.0.0.5:5432".to_string(), "db2:5433".to_string()]
        );
        assert_eq!(c.analysis.interval, Duration::from_secs(15));

        // Central mode has no socket view.
        let c = valid("database:\n  url: postgres://u@db/d\nsocket:\n  peers: db:5432\n");
        assert!(c.socket.is_none());
        assert_eq!(c.warnings.len(), 1);

        // An interval too long for the growth trend's span: still valid, but said so
        // with the numbers; the stuck-connection test does not need the trend.
        let c = valid("analysis:\n  interval_seconds: 60\n");
        assert_eq!(c.analysis.stuck_connection_seconds, 300.0);
        assert_eq!(c.analysis.unaccounted_after, Duration::from_secs(60));
        let w = c.warnings.join("\n");
        assert!(
            w.contains("growth trend is off")
                && w.contains("holds 6 samples")
                && w.contains("at most 33.3"),
            "{w}"
        );
        assert!(valid("analysis:\n  interval_seconds: 33\n")
            .warnings
            .is_empty());

        for (file, needle) in [
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

    /// Components read their defaults from their keys: each must be one their kind
    /// accepts, and each key must belong to one section only.
    #[test]
    fn every_default_is_valid_for_its_kind_and_every_path_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for k in keys() {
            assert!(seen.insert(k.path), "{} declared twice", k.path);
            let d = k.default;
            let ok = match k.kind {
                _ if d == "-" => true,
                Kind::Seconds | Kind::Count => k.default_number().is_some_and(|n| n > 0.0),
                Kind::Choice(words) => words.contains(&d),
                Kind::Address => parse_address(d).is_some(),
                Kind::Text | Kind::Secret | Kind::Path => !d.is_empty(),
                Kind::List => false,
            };
            assert!(ok, "{}: default {d:?} is not a valid {:?}", k.path, k.kind);
        }
        assert!(seen.len() > 30);
    }
}
