//! poolwatch catches PostgreSQL connection leaks before they take a database down.
//!
//! Applications push their connection-pool statistics; a sampler reads
//! `pg_stat_activity` over one long-lived session; `/metrics` renders the latest of
//! both. Data flows one way:
//!
//! ```text
//! app ── push ──> http::push ──> ingest (parse, validate) ──> store (latest per app/pool/instance)
//! PostgreSQL ──── sampler (every interval) ──> watch channel of Arc<ServerState>
//! /proc/net/tcp ─ tick (sidecar) ─┐
//!                                 v  every analysis interval
//!          tick: analysis::Analyzer (pure: attribute, compare, trend) ──> Arc<Report>
//!                                   │
//! GET /metrics ── metrics renders store + ServerState + Report (never the database)
//! GET /api/v1/connections ── the Report's stuck backends
//! sidecar store ── forward (on each push, every interval) ──> central POST /api/v1/forward ──> store
//! ```
//!
//! Modules:
//! - [`config`]: reads the YAML file, environment and flags, hands each section to the
//!   component that owns it, and reports every problem at once, before the runtime starts.
//! - [`keys`]: how a component declares its configuration keys and reads their values.
//! - [`app`]: wiring only: registry, tasks, listeners, shutdown order.
//! - [`http`]: the hyper server and its routes.
//! - [`ingest`]: push formats, each producing validated [`ingest::PoolSnapshot`]s.
//! - [`store`]: the latest pool snapshots, with expiry and a cap.
//! - [`sampler`]: the PostgreSQL session supervisor and the server view it publishes;
//!   the socket view's `/proc/net/tcp` parser.
//! - [`analysis`]: pure leak analysis: attribution, view comparison, trend, verdict.
//! - [`tick`]: the task that feeds the analysis every interval and publishes its report.
//! - [`forward`]: a sidecar's pools sent to the central instance of its database.
//! - [`metrics`]: registry setup and the collectors that render the latest state.
//! - [`cli`]: `poolwatch connections` and `poolwatch healthcheck`, clients of a running
//!   daemon.

pub mod analysis;
pub mod app;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod fleet;
pub mod forward;
pub mod http;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod reload;
pub mod sampler;
pub mod store;
pub mod tick;

/// The version baked into `poolwatch_build_info` and `--version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where poolwatch runs (the `mode` key), which decides how pools and backends are
/// attributed and the defaults of the push address and instance.
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

/// Decodes a URL query value (`application/x-www-form-urlencoded`): `+` is a space,
/// `%XX` escapes are bytes; invalid escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    decode_path_segment(&s.replace('+', " "))
}

/// Decodes a URL path segment: `%XX` escapes only (a `+` is itself there: path segments
/// are not form values); invalid escapes are kept as they are.
pub fn decode_path_segment(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The wall clock as Unix seconds (0 if the clock is before 1970), for timestamps that
/// are exported or compared with the server's.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn query_values_and_path_segments() {
        assert_eq!(super::percent_decode("a%2Fb+c%41%2B"), "a/b cA+");
        assert_eq!(super::decode_path_segment("a%2Fb+c%41%2B"), "a/b+cA+");
        // Two hex digits only; invalid escapes stay as they are.
        assert_eq!(super::percent_decode("%+4%4%zz%e9"), "% 4%4%zz\u{fffd}");
        assert_eq!(super::decode_path_segment("%+4%4%zz%"), "%+4%4%zz%");
    }
}
