//! The PostgreSQL session supervisor and the server view it publishes.
//!
//! One session at a time, named `database.application_name`, with `statement_timeout`,
//! `lock_timeout` and `idle_in_transaction_session_timeout` set at startup. Every
//! `interval_seconds` it reads the connection limits ([`settings`]), the role and
//! database limits that are set ([`limits`]) and `pg_stat_activity` ([`activity`]), then publishes an immutable [`ServerState`] on a
//! `watch` channel; `/metrics` reads the latest one and never waits on the database.
//!
//! Failure is data: a failed connect or sample publishes `up = false` and counts the
//! error by kind. The session is dropped on any error that may have broken it (and
//! kept after a server-side timeout, which leaves it healthy); the next attempt comes
//! after a backoff that doubles from one second up to `reconnect_max_backoff_seconds`
//! (by default one interval), so recovery takes at most one interval once the database
//! answers again. A closed session is awaited before a new one opens: never two.

pub mod activity;
pub mod config;
pub mod connect;
pub mod limits;
pub mod query;
pub mod settings;
pub mod socket;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use activity::{Aggregates, Backend};
use config::{DatabaseConfig, QueryText};
use connect::Session;
use limits::ConnectionLimits;
use settings::Limits;

/// One successful sample of the server view.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// When the sample was taken, Unix seconds (poolwatch's clock).
    pub at_unix: f64,
    /// Connection limits.
    pub limits: Limits,
    /// Role and database connection limits that are set, with their backends.
    pub connection_limits: ConnectionLimits,
    /// Every client backend but poolwatch's own.
    pub backends: Vec<Backend>,
    /// What `/metrics` renders, computed once here.
    pub aggregates: Aggregates,
    /// The local TCP port of poolwatch's own session, so the socket view can leave it out.
    pub own_client_port: Option<u16>,
    /// Sessions named `database.application_name` (this one and, with several databases
    /// on one server, the others): never counted, but they take connection slots.
    pub own_sessions: u64,
}

/// What the sampler publishes after every attempt.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerState {
    /// The last attempt succeeded.
    pub up: bool,
    /// The last successful sample, present only while `up`: stale data is not shown.
    pub sample: Option<Arc<Sample>>,
    /// Unix time of the last successful sample, kept across failures.
    pub last_success_unix: Option<f64>,
    /// How long the last attempt's queries took, seconds.
    pub last_duration_seconds: Option<f64>,
}

/// Why an attempt failed. [`SampleError::kind`] is the `kind` label of
/// `poolwatch_pg_sample_errors_total`.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    /// Connect, TLS or authentication did not finish in time.
    #[error("no session within the connect timeout of {0:?}")]
    ConnectTimeout(Duration),
    /// The server refused or the connection failed while opening.
    #[error("cannot connect: {0}")]
    Connect(#[source] tokio_postgres::Error),
    /// TLS could not be set up on our side (CA bundle unreadable, ...).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The queries did not return in time (the network, not the server, is stuck).
    #[error("sample queries did not return within {0:?}")]
    QueryTimeout(Duration),
    /// A query failed.
    #[error("sample query failed: {0}")]
    Query(#[source] tokio_postgres::Error),
}

/// Every `kind` label value, so each series exists from the start.
pub const ERROR_KINDS: &[&str] = &[
    "auth",
    "connect",
    "connect_timeout",
    "connection_lost",
    "lock_timeout",
    "query",
    "query_timeout",
    "statement_timeout",
    "tls",
    "too_many_connections",
];

impl SampleError {
    /// A fixed string for metric labels.
    pub fn kind(&self) -> &'static str {
        use tokio_postgres::error::SqlState;
        let (e, connecting) = match self {
            SampleError::ConnectTimeout(_) => return "connect_timeout",
            SampleError::Tls(_) => return "tls",
            SampleError::QueryTimeout(_) => return "query_timeout",
            SampleError::Connect(e) => (e, true),
            SampleError::Query(e) => (e, false),
        };
        match e.code() {
            Some(c) if *c == SqlState::TOO_MANY_CONNECTIONS => "too_many_connections",
            Some(c)
                if *c == SqlState::INVALID_PASSWORD
                    || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                "auth"
            }
            Some(c) if *c == SqlState::QUERY_CANCELED => "statement_timeout",
            Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => "lock_timeout",
            Some(_) if connecting => "connect",
            Some(_) => "query",
            None if e.to_string().contains("TLS") || e.to_string().contains("tls") => "tls",
            None if connecting => "connect",
            None => "connection_lost",
        }
    }

    /// Whether the session may be broken and must be replaced.
    fn breaks_session(&self) -> bool {
        match self {
            SampleError::Query(e) => e.code().is_none() || e.is_closed(),
            _ => true,
        }
    }
}

/// Doubles from `min` to `max`; reset after a success.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.min(max);
        Backoff {
            min,
            max,
            next: min,
        }
    }

    fn next(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Owns the session and publishes [`ServerState`].
pub struct Sampler {
    /// The database and session settings.
    cfg: DatabaseConfig,
    /// Where each attempt's result goes.
    tx: watch::Sender<Arc<ServerState>>,
    /// `poolwatch_pg_sample_errors_total`, one counter per kind.
    errors: Vec<(&'static str, IntCounter)>,
    /// The database's name in the `databases` list, for the logs.
    name: Option<String>,
}

impl Sampler {
    /// Creates the sampler, registers its error counter, and returns the channel on
    /// which it publishes (starting with `up = false`).
    pub fn register(
        registry: &Registry,
        cfg: DatabaseConfig,
    ) -> prometheus::Result<(Sampler, watch::Receiver<Arc<ServerState>>)> {
        let errors = IntCounterVec::new(
            Opts::new(
                "poolwatch_pg_sample_errors_total",
                "Failed connection or sample attempts, by kind.",
            )
            .const_label("database", &cfg.name),
            &["kind"],
        )?;
        let counters = ERROR_KINDS
            .iter()
            .map(|k| (*k, errors.with_label_values(&[k])))
            .collect();
        registry.register(Box::new(errors))?;
        Ok(Sampler::new(cfg, counters, None))
    }

    /// A sampler counting its errors in `errors` (one counter per kind of
    /// [`ERROR_KINDS`]); `name` is the database's name in the `databases` list.
    pub fn new(
        cfg: DatabaseConfig,
        errors: Vec<(&'static str, IntCounter)>,
        name: Option<String>,
    ) -> (Sampler, watch::Receiver<Arc<ServerState>>) {
        let (tx, rx) = watch::channel(Arc::new(ServerState::default()));
        (
            Sampler {
                cfg,
                tx,
                errors,
                name,
            },
            rx,
        )
    }

    /// Publishes `state` as if a sample had produced it (for rendering fixed inputs).
    pub fn publish(&self, state: ServerState) {
        self.tx.send_replace(Arc::new(state));
    }

    /// Samples until `cancel` fires, then closes the session.
    pub async fn run(self, cancel: CancellationToken) {
        let target = match &self.name {
            Some(n) => format!("{n} ({})", self.cfg.target()),
            None => self.cfg.target(),
        };
        tracing::info!(%target, source = self.cfg.source, interval_seconds = self.cfg.interval.as_secs_f64(), "watching database");
        let mut session: Option<Session> = None;
        let mut backoff = Backoff::new(Duration::from_secs(1), self.cfg.reconnect_max_backoff);
        let mut next = Instant::now();
        let mut last_kind: Option<&'static str> = Some("starting");
        let mut checked_privileges = false;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {}
            }
            let started = Instant::now();
            if session.is_none() {
                let attempt = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    r = connect::connect(&self.cfg) => r,
                };
                match attempt {
                    Ok(s) => {
                        if !checked_privileges {
                            checked_privileges = true;
                            warn_without_pg_monitor(&s, &target).await;
                        }
                        session = Some(s);
                    }
                    Err(e) => {
                        self.failed(&e, None, &target, &mut last_kind);
                        next = Instant::now() + backoff.next();
                        continue;
                    }
                }
            }
            let Some(s) = session.as_mut() else { continue };
            // The server enforces statement_timeout; this client-side limit catches a
            // network that stalls with the query in flight.
            let limit = self.cfg.statement_timeout * 2 + Duration::from_secs(1);
            let result = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                r = tokio::time::timeout(limit, sample(s, &self.cfg)) => {
                    r.unwrap_or(Err(SampleError::QueryTimeout(limit)))
                }
            };
            let took = started.elapsed().as_secs_f64();
            match result {
                Ok(sample) => {
                    if last_kind.is_some() {
                        tracing::info!(%target, backends = sample.backends.len(), "database sampled; pg_up is 1");
                        last_kind = None;
                    }
                    backoff.reset();
                    let state = ServerState {
                        up: true,
                        last_success_unix: Some(sample.at_unix),
                        last_duration_seconds: Some(took),
                        sample: Some(Arc::new(sample)),
                    };
                    self.tx.send_replace(Arc::new(state));
                    next = started + self.cfg.interval;
                }
                Err(e) => {
                    self.failed(&e, Some(took), &target, &mut last_kind);
                    if e.breaks_session() {
                        if let Some(s) = session.take() {
                            s.close().await;
                        }
                        next = Instant::now() + backoff.next();
                    } else {
                        next = started + self.cfg.interval;
                    }
                }
            }
        }
        if let Some(s) = session.take() {
            s.close().await;
        }
        tracing::debug!("sampler stopped");
    }

    /// Counts and publishes a failure; logs it when its kind changes, so a database
    /// that stays down logs once, not every interval.
    fn failed(
        &self,
        e: &SampleError,
        took: Option<f64>,
        target: &str,
        last_kind: &mut Option<&'static str>,
    ) {
        let kind = e.kind();
        if let Some((_, c)) = self.errors.iter().find(|(k, _)| *k == kind) {
            c.inc();
        }
        if *last_kind != Some(kind) {
            tracing::warn!(%target, kind, error = %e, "database sample failed; pg_up is 0 until it succeeds");
        } else {
            tracing::debug!(%target, kind, error = %e, "database sample failed again");
        }
        *last_kind = Some(kind);
        let prev = self.tx.borrow().clone();
        let state = ServerState {
            up: false,
            sample: None,
            last_success_unix: prev.last_success_unix,
            last_duration_seconds: took.or(prev.last_duration_seconds),
        };
        self.tx.send_replace(Arc::new(state));
    }
}

/// Without `pg_read_all_stats` (part of `pg_monitor`) the server hides other roles'
/// backends from `pg_stat_activity`: say so once, since the counts would be partial.
async fn warn_without_pg_monitor(s: &Session, target: &str) {
    let q = "SELECT current_user::text, pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')";
    if let Ok(row) = s.client.query_one(q, &[]).await {
        let (role, ok): (String, bool) = (row.get(0), row.get(1));
        if !ok {
            tracing::warn!(%target, role, "role lacks pg_monitor: pg_stat_activity shows only its own backends; run GRANT pg_monitor TO {role}");
        }
    }
}

async fn sample(s: &mut Session, cfg: &DatabaseConfig) -> Result<Sample, SampleError> {
    let text = cfg.query_text;
    let (settings_stmt, activity_stmt, limits_stmt) = match &s.statements {
        Some(st) => st.clone(),
        None => {
            let a = s
                .client
                .prepare(settings::QUERY)
                .await
                .map_err(SampleError::Query)?;
            let activity_query = match text {
                QueryText::None => activity::QUERY,
                QueryText::Fingerprint | QueryText::Full => activity::QUERY_WITH_TEXT,
            };
            let b = s
                .client
                .prepare(activity_query)
                .await
                .map_err(SampleError::Query)?;
            let c = s
                .client
                .prepare(limits::QUERY)
                .await
                .map_err(SampleError::Query)?;
            s.statements.insert((a, b, c)).clone()
        }
    };
    let row = s
        .client
        .query_one(&settings_stmt, &[])
        .await
        .map_err(SampleError::Query)?;
    let limits = Limits::from_row(&row).map_err(SampleError::Query)?;
    let own_port: Option<i32> = row.try_get(4).map_err(SampleError::Query)?;
    let own_sessions: i64 = row.try_get(5).map_err(SampleError::Query)?;
    let rows = s
        .client
        .query(&activity_stmt, &[])
        .await
        .map_err(SampleError::Query)?;
    let backends = rows
        .iter()
        .map(|r| Backend::from_row(r, text, cfg.query_max_chars))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SampleError::Query)?;
    let max_limits = i64::try_from(cfg.max_connection_limits).unwrap_or(i64::MAX);
    let [(roles, per_role), (databases, per_database)] = limits::backend_counts(&backends);
    let rows = s
        .client
        .query(
            &limits_stmt,
            &[&roles, &per_role, &databases, &per_database, &max_limits],
        )
        .await
        .map_err(SampleError::Query)?;
    let connection_limits = ConnectionLimits::from_rows(&rows).map_err(SampleError::Query)?;
    let aggregates = activity::aggregate(&backends, cfg.max_application_names);
    Ok(Sample {
        at_unix: crate::unix_now(),
        own_client_port: own_port.and_then(|p| u16::try_from(p).ok()),
        own_sessions: u64::try_from(own_sessions).unwrap_or(0),
        limits,
        connection_limits,
        backends,
        aggregates,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(15));
        let seq: Vec<u64> = (0..6).map(|_| b.next().as_secs()).collect();
        assert_eq!(seq, vec![1, 2, 4, 8, 15, 15]);
        b.reset();
        assert_eq!(b.next().as_secs(), 1);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_millis(200));
        assert_eq!(
            b.next(),
            Duration::from_millis(200),
            "cap below the minimum wins"
        );
    }
}
