//! The `database` section: which database the sampler watches and how its one session
//! behaves.
//!
//! The database comes from, in order: `database.url` (flag `--database-url`,
//! `POOLWATCH_DATABASE_URL`, `DATABASE_URL`), `database.url_file` (a mounted Secret), or
//! the libpq variables `PGHOST`, `PGHOSTADDR`, `PGPORT`, `PGUSER`, `PGDATABASE` (with
//! `PGPASSWORD` and `PGSSLMODE`). The libpq variables also fill what a URL leaves out, as
//! libpq does. None of them set: poolwatch runs push-only. The session's own settings
//! (`statement_timeout`, `lock_timeout`, `application_name`, keepalives) are applied
//! here, so every session the sampler opens carries them.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::keys::{Key, Kind, Values};
use crate::Mode;

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

const SSLMODES: &[&str] = &["disable", "prefer", "require", "verify-full"];

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
    /// Most role limits, and most database limits, read and exported per sample (those
    /// closest to running out first).
    pub max_connection_limits: usize,
    /// Which source gave the database (`url`, `url_file`, `libpq environment`).
    pub source: &'static str,
    /// The `database` label of every series: `database.name`, else the first endpoint as
    /// `host:port` (a socket directory as `/dir:port`). Never empty.
    pub name: String,
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

    /// The first endpoint as `host:port` (`[v6]:port`, `/socket/dir:port`): the default
    /// `database` label. libpq's default (no host) is the socket directory it would use.
    pub fn endpoint(pg: &tokio_postgres::Config) -> String {
        let port = pg.get_ports().first().copied().unwrap_or(5432);
        match pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) if h.contains(':') => {
                format!("[{h}]:{port}")
            }
            Some(tokio_postgres::config::Host::Tcp(h)) => format!("{h}:{port}"),
            Some(tokio_postgres::config::Host::Unix(p)) => format!("{}:{port}", p.display()),
            None => format!("/var/run/postgresql:{port}"),
        }
    }

    /// The database's first TCP endpoint as `host:port`, the default socket peer.
    pub fn peer(&self) -> Option<String> {
        let host = self.pg.get_hosts().iter().find_map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => Some(s.clone()),
            tokio_postgres::config::Host::Unix(_) => None,
        })?;
        let port = self.pg.get_ports().first().copied().unwrap_or(5432);
        Some(if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("target", &self.target())
            .field("password", &self.pg.get_password().map(|_| "<redacted>"))
            .field("source", &self.source)
            .field("name", &self.name)
            .field("interval", &self.interval)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .finish_non_exhaustive()
    }
}

const URL: Key = Key::new(
    "database.url",
    Kind::Secret,
    "-",
    &["POOLWATCH_DATABASE_URL", "DATABASE_URL"],
)
.flag(
    "--database-url",
    "URL",
    "PostgreSQL URL (also read from DATABASE_URL); prefer the file or the variable, a flag shows in `ps`",
);
const NAME: Key = Key::new("database.name", Kind::Text, "-", &["POOLWATCH_DATABASE_NAME"])
    .flag(
        "--database-name",
        "NAME",
        "The database label of every series (default: the database's host:port; in sidecar mode without a database, the first socket peer)",
    );
const URL_FILE: Key = Key::new(
    "database.url_file",
    Kind::Path,
    "-",
    &["POOLWATCH_DATABASE_URL_FILE"],
)
.flag(
    "--database-url-file",
    "FILE",
    "File holding the PostgreSQL URL, e.g. a mounted Secret",
);
const SSLMODE: Key = Key::new(
    "database.sslmode",
    Kind::Choice(SSLMODES),
    "prefer",
    &["POOLWATCH_DATABASE_SSLMODE"],
);
const CA_FILE: Key = Key::new(
    "database.ca_file",
    Kind::Path,
    "/etc/ssl/certs/ca-certificates.crt",
    &["POOLWATCH_DATABASE_CA_FILE"],
);
const APPLICATION_NAME: Key = Key::new(
    "database.application_name",
    Kind::Text,
    "poolwatch",
    &["POOLWATCH_DATABASE_APPLICATION_NAME"],
);
const INTERVAL: Key = Key::new(
    "database.interval_seconds",
    Kind::Seconds,
    "15",
    &["POOLWATCH_DATABASE_INTERVAL_SECONDS"],
);
const CONNECT_TIMEOUT: Key = Key::new(
    "database.connect_timeout_seconds",
    Kind::Seconds,
    "5",
    &["POOLWATCH_DATABASE_CONNECT_TIMEOUT_SECONDS"],
);
const STATEMENT_TIMEOUT: Key = Key::new(
    "database.statement_timeout_seconds",
    Kind::Seconds,
    "5",
    &["POOLWATCH_DATABASE_STATEMENT_TIMEOUT_SECONDS"],
);
const LOCK_TIMEOUT: Key = Key::new(
    "database.lock_timeout_seconds",
    Kind::Seconds,
    "1",
    &["POOLWATCH_DATABASE_LOCK_TIMEOUT_SECONDS"],
);
const RECONNECT_MAX_BACKOFF: Key = Key::new(
    "database.reconnect_max_backoff_seconds",
    Kind::Seconds,
    "-",
    &["POOLWATCH_DATABASE_RECONNECT_MAX_BACKOFF_SECONDS"],
);
const MAX_APPLICATION_NAMES: Key = Key::new(
    "database.max_application_names",
    Kind::Count,
    "200",
    &["POOLWATCH_DATABASE_MAX_APPLICATION_NAMES"],
);
const QUERY_TEXT: Key = Key::new(
    "database.query_text",
    Kind::Choice(&["none", "fingerprint", "full"]),
    "fingerprint",
    &["POOLWATCH_DATABASE_QUERY_TEXT"],
);
const QUERY_MAX_CHARS: Key = Key::new(
    "database.query_max_chars",
    Kind::Count,
    "256",
    &["POOLWATCH_DATABASE_QUERY_MAX_CHARS"],
);
const MAX_CONNECTION_LIMITS: Key = Key::new(
    "database.max_connection_limits",
    Kind::Count,
    "100",
    &["POOLWATCH_DATABASE_MAX_CONNECTION_LIMITS"],
);

/// The libpq variables that, without a URL, name a database to watch.
const LIBPQ_VARS: [&str; 5] = ["PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE"];

impl DatabaseConfig {
    /// The keys of the `database` section.
    pub const KEYS: &[Key] = &[
        URL,
        URL_FILE,
        NAME,
        SSLMODE,
        CA_FILE,
        APPLICATION_NAME,
        INTERVAL,
        CONNECT_TIMEOUT,
        STATEMENT_TIMEOUT,
        LOCK_TIMEOUT,
        RECONNECT_MAX_BACKOFF,
        MAX_APPLICATION_NAMES,
        QUERY_TEXT,
        QUERY_MAX_CHARS,
        MAX_CONNECTION_LIMITS,
    ];

    /// Reads `database.name`, which names the database even where none is watched (a
    /// sidecar's): `None` when unset. Call it once, before [`DatabaseConfig::from_values`].
    pub fn name_from_values(v: &mut Values) -> Option<String> {
        let name = v.text(&NAME)?;
        if name.trim().is_empty() || name.len() > 253 || name.chars().any(char::is_control) {
            v.bad(
                &NAME,
                "1 to 253 characters, not blank, no control characters",
            );
            return None;
        }
        Some(name)
    }

    /// The `database` label of every view series: the watched `database`'s name, else
    /// (a sidecar without a database) `name` (`database.name`) or the first socket peer.
    /// `None` when nothing names a database: the label is left out, with a warning in
    /// sidecar mode, where the same application on two databases could not be told apart.
    pub fn label(
        v: &mut Values,
        mode: Mode,
        database: Option<&DatabaseConfig>,
        name: Option<String>,
        peers: &[String],
    ) -> Option<String> {
        let label = match database {
            Some(db) => Some(db.name.clone()),
            None => name.or_else(|| peers.first().cloned()),
        };
        if label.is_none() && mode == Mode::Sidecar {
            v.warn(
                "no database.name, database or socket.peers: series carry no database label, so the same application on two databases cannot be told apart; set database.name".into(),
            );
        }
        label
    }

    /// Reads the `database` section; `None` when no source names a database. `name` is
    /// [`DatabaseConfig::name_from_values`]'s.
    pub fn from_values(v: &mut Values, name: Option<String>) -> Option<DatabaseConfig> {
        let url = v.text(&URL).filter(|u| !u.trim().is_empty());
        let url_file = v.text(&URL_FILE).filter(|u| !u.is_empty());
        // Settings of the session are validated even without a database, so that a
        // typo is found before the day a database is configured.
        let interval = v.seconds(&INTERVAL);
        let connect_timeout = v.seconds(&CONNECT_TIMEOUT);
        let statement_timeout = v.seconds(&STATEMENT_TIMEOUT);
        let lock_timeout = v.seconds(&LOCK_TIMEOUT);
        let reconnect_max_backoff = v.opt_seconds(&RECONNECT_MAX_BACKOFF).unwrap_or(interval);
        let max_application_names = v.count(&MAX_APPLICATION_NAMES);
        let query_text = match v.choice(&QUERY_TEXT) {
            "none" => QueryText::None,
            "full" => QueryText::Full,
            _ => QueryText::Fingerprint,
        };
        let query_max_chars = v.count(&QUERY_MAX_CHARS);
        let max_connection_limits = v.count(&MAX_CONNECTION_LIMITS);
        let application_name = v.text_or_default(&APPLICATION_NAME);
        if application_name.is_empty()
            || application_name.len() > 63
            || !application_name.is_ascii()
        {
            v.bad(&APPLICATION_NAME, "1 to 63 ASCII characters");
        }
        if statement_timeout > interval {
            v.problem(format!(
                "database.statement_timeout_seconds ({}) must not exceed database.interval_seconds ({})",
                statement_timeout.as_secs_f64(),
                interval.as_secs_f64()
            ));
        }
        if lock_timeout > statement_timeout {
            v.problem(format!(
                "database.lock_timeout_seconds ({}) must not exceed database.statement_timeout_seconds ({})",
                lock_timeout.as_secs_f64(),
                statement_timeout.as_secs_f64()
            ));
        }
        let explicit_sslmode = v.is_set(&SSLMODE).then(|| v.choice(&SSLMODE).to_string());
        let explicit_ca = v.text(&CA_FILE);

        let (text, source) = match (url, url_file) {
            (Some(_), Some(_)) => {
                v.problem("database.url and database.url_file are both set; set one".into());
                return None;
            }
            (Some(u), None) => (u, "url"),
            (None, Some(f)) => match std::fs::read_to_string(&f) {
                Ok(t) if !t.trim().is_empty() => (t.trim().to_string(), "url_file"),
                Ok(_) => {
                    v.problem(format!("database.url_file: {f} is empty"));
                    return None;
                }
                Err(e) => {
                    v.problem(format!("database.url_file: cannot read {f}: {e}"));
                    return None;
                }
            },
            (None, None) if LIBPQ_VARS.iter().any(|name| v.env(name).is_some()) => {
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
                    v.problem(format!("database.{source}: {e}"));
                    return None;
                }
            };
            match tokio_postgres::Config::from_str(&stripped) {
                Ok(c) => c,
                Err(e) => {
                    // The parser's messages name the option, never its value.
                    v.problem(format!(
                        "database.{source}: not a valid PostgreSQL URL: {e}"
                    ));
                    return None;
                }
            }
        };
        if url_params.application_name {
            v.warn(format!(
                "application_name in the database URL is ignored; poolwatch's session is named by database.application_name ({application_name})"
            ));
        }
        fill_from_libpq_env(v, &mut pg);
        let sslmode_text = explicit_sslmode
            .or(url_params.sslmode.clone())
            .or_else(|| v.env("PGSSLMODE"))
            .unwrap_or_else(|| SSLMODE.default.into());
        let sslmode = match SslMode::parse(&sslmode_text) {
            Some(m) => m,
            None => {
                v.problem(format!(
                    "database sslmode {sslmode_text:?}: expected one of {}",
                    SSLMODES.join(", ")
                ));
                SslMode::Prefer
            }
        };
        let ca_file = PathBuf::from(
            explicit_ca
                .or(url_params.sslrootcert.clone())
                .or_else(|| v.env("PGSSLROOTCERT"))
                .unwrap_or_else(|| CA_FILE.default.into()),
        );
        if sslmode == SslMode::VerifyFull && !ca_file.is_file() {
            v.problem(format!(
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
        let name = name.unwrap_or_else(|| DatabaseConfig::endpoint(&pg));
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
            max_connection_limits,
            source,
            name,
        })
    }
}

/// As libpq: environment variables give what the URL does not.
fn fill_from_libpq_env(v: &mut Values, pg: &mut tokio_postgres::Config) {
    if pg.get_hosts().is_empty() {
        let host = v
            .env("PGHOST")
            .or_else(|| v.env("PGHOSTADDR"))
            .unwrap_or_else(|| "localhost".into());
        for h in host.split(',') {
            pg.host(h);
        }
    }
    if pg.get_ports().is_empty() {
        if let Some(p) = v.env("PGPORT") {
            match p.parse::<u16>() {
                Ok(p) => {
                    pg.port(p);
                }
                Err(_) => v.problem(format!("PGPORT: expected a port number, got {p:?}")),
            }
        }
    }
    if pg.get_user().is_none() {
        let user = v
            .env("PGUSER")
            .or_else(|| v.env("USER"))
            .unwrap_or_else(|| "postgres".into());
        pg.user(&user);
    }
    if pg.get_password().is_none() {
        if let Some(p) = v.env("PGPASSWORD") {
            pg.password(p);
        }
    }
    if pg.get_dbname().is_none() {
        if let Some(d) = v.env("PGDATABASE") {
            pg.dbname(&d);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testing::{env, values as test_values, TempFile};

    /// The database and the problems and warnings, from `pairs` and the environment `e`.
    fn read(
        pairs: &[(&Key, &str)],
        e: &[(&str, &str)],
    ) -> (Option<DatabaseConfig>, Vec<String>, Vec<String>) {
        let env = env(e);
        let mut v = test_values(pairs, &env);
        let name = DatabaseConfig::name_from_values(&mut v);
        let db = DatabaseConfig::from_values(&mut v, name);
        let (problems, warnings) = v.finish();
        (db, problems, warnings)
    }

    #[test]
    fn database_from_url_file_and_libpq_environment() {
        let secret =
            TempFile::new("postgres://watcher:s3cret-pw@db.example:6432/app?sslmode=require\n");
        let (db, problems, _) = read(&[(&URL_FILE, secret.path())], &[]);
        assert!(problems.is_empty(), "{problems:?}");
        let db = db.unwrap();
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
        let db = read(&[], &e).0.unwrap();
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
        let (db, _, warnings) = read(
            &[(&URL, "postgres://db.internal/sales?application_name=x")],
            &e,
        );
        assert_eq!(warnings.len(), 1);
        let db = db.unwrap();
        assert_eq!(
            db.target(),
            "host=db.internal port=5432 dbname=sales user=mon sslmode=disable"
        );
        assert_eq!(db.pg.get_password(), Some(&b"pw"[..]));
        assert_eq!(db.pg.get_application_name(), Some("poolwatch"));
    }

    #[test]
    fn secrets_never_shown() {
        let (db, _, _) = read(
            &[(&URL, "postgres://watcher:hunter2-secret@db:5432/app")],
            &[],
        );
        let dbg = format!("{db:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        assert!(dbg.contains("<redacted>"), "{dbg}");
        // Nor in errors about the URL.
        for bad in [
            "postgres://watcher:hunter2-secret@db:99999/app",
            "postgres://watcher:hunter2-secret@db/app?bogus=1",
        ] {
            let (db, problems, _) = read(&[(&URL, bad)], &[]);
            assert!(db.is_none());
            let err = problems.join("\n");
            assert!(err.contains("database.url"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn session_settings_applied() {
        let (db, _, _) = read(
            &[
                (&URL, "postgres://u@h/d"),
                (&STATEMENT_TIMEOUT, "2.5"),
                (&LOCK_TIMEOUT, "0.5"),
            ],
            &[],
        );
        let db = db.unwrap();
        let opts = db.pg.get_options().unwrap();
        assert!(opts.contains("statement_timeout=2500"), "{opts}");
        assert!(opts.contains("lock_timeout=500"), "{opts}");
        assert_eq!(db.pg.get_connect_timeout(), Some(&Duration::from_secs(5)));
        assert_eq!(db.reconnect_max_backoff, db.interval);
    }

    #[test]
    fn peer_is_the_first_tcp_endpoint() {
        for (url, peer) in [
            ("postgres://u@db.internal:6432/d", Some("db.internal:6432")),
            ("postgres://u@db/d", Some("db:5432")),
            ("postgres://u@[::1]:7/d", Some("[::1]:7")),
            ("postgres://u@%2Frun%2Fpostgresql/d", None),
        ] {
            let (db, problems, _) = read(&[(&URL, url)], &[]);
            assert!(problems.is_empty(), "{url}: {problems:?}");
            assert_eq!(db.unwrap().peer().as_deref(), peer, "{url}");
        }
    }

    #[test]
    fn name_defaults_to_the_first_endpoint() {
        for (url, e, name) in [
            (
                "postgres://u@db.internal:6432/d",
                &[][..],
                "db.internal:6432",
            ),
            ("postgres://u@127.0.0.1/d", &[], "127.0.0.1:5432"),
            ("postgres://u@[::1]:7/d", &[], "[::1]:7"),
            (
                "postgres://u@%2Frun%2Fpostgresql:5433/d",
                &[],
                "/run/postgresql:5433",
            ),
            ("postgres://u@a:1,b:2/d", &[], "a:1"),
            ("", &[("PGHOST", "/tmp"), ("PGPORT", "5444")], "/tmp:5444"),
        ] {
            let pairs: Vec<(&Key, &str)> = if url.is_empty() {
                vec![]
            } else {
                vec![(&URL, url)]
            };
            let (db, problems, _) = read(&pairs, e);
            assert!(problems.is_empty(), "{url}: {problems:?}");
            assert_eq!(db.unwrap().name, name, "{url}");
        }
        let (db, _, _) = read(
            &[(&URL, "postgres://u@h/d"), (&NAME, "orders-primary")],
            &[],
        );
        assert_eq!(db.unwrap().name, "orders-primary");
        for bad in ["", "  ", "a\nb"] {
            let (_, problems, _) = read(&[(&URL, "postgres://u@h/d"), (&NAME, bad)], &[]);
            assert!(
                problems.iter().any(|p| p.contains("database.name")),
                "{bad:?}: {problems:?}"
            );
        }
    }
}
