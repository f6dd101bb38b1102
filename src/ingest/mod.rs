//! Push formats. Each parser turns a request into validated [`PoolPush`]es or one
//! [`IngestError`] naming the problem; nothing here touches the store, so a rejected
//! push changes no state.
//!
//! - [`json`]: `POST /api/v1/pools/{app}/{pool}` (canonical or Go `sql.DBStats` JSON) and
//!   the `POST /api/v1/pools` batch.
//! - [`pushgateway`]: the Pushgateway protocol, text and delimited protobuf.
//! - [`otlp`]: OpenTelemetry's OTLP/HTTP metrics, protobuf and JSON.
//! - [`forward`]: the pools a sidecar forwards to the central instance.
//! - `wire`: the protobuf wire format both protobuf readers share.

pub mod forward;
pub mod json;
pub mod otlp;
pub mod pushgateway;
pub(crate) mod wire;

use std::time::Duration;

/// Identifies one pool: the store keeps the latest snapshot per key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    /// Application name (label `app`).
    pub app: String,
    /// Pool name within the application (label `pool`).
    pub pool: String,
    /// Replica of the application, e.g. the pod name (label `instance`); may be empty.
    pub instance: String,
}

/// One pool's statistics, in base units, as the canonical model has them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolSnapshot {
    /// Most connections the pool may open; `None` when unlimited (Go's 0).
    pub max_open: Option<u64>,
    /// Connections open now, in use or idle.
    pub open: u64,
    /// Connections checked out now.
    pub in_use: Option<u64>,
    /// Connections idle in the pool now.
    pub idle: Option<u64>,
    /// Callers blocked waiting for a connection now, where the client reports it.
    pub waiting: Option<u64>,
    /// Callers that ever had to wait (counter).
    pub wait_count: Option<u64>,
    /// Total time callers waited, seconds (counter).
    pub wait_duration_seconds: Option<f64>,
    /// Connections closed because the idle pool was full (counter).
    pub max_idle_closed: Option<u64>,
    /// Connections closed for being idle too long (counter).
    pub max_idle_time_closed: Option<u64>,
    /// Connections closed at their maximum lifetime (counter).
    pub max_lifetime_closed: Option<u64>,
    /// The pool's maximum connection lifetime setting, seconds.
    pub max_lifetime_seconds: Option<f64>,
    /// The pool's maximum idle time setting, seconds.
    pub max_idle_time_seconds: Option<f64>,
    /// `application_name` the pool's connections carry on the server.
    pub application_name: String,
    /// The database of the `databases` list the push named (query parameter `database`
    /// or batch field `database`); checked against the list by the push handler.
    pub database: Option<String>,
    /// The TCP peer address of the connection the push arrived on (for a forward, the
    /// sidecar's, which shares the application's pod IP), set by the HTTP handler from the
    /// connection, never from the body; the third attribution rule of a `databases` list
    /// matches it against backends' `client_addr`. Not exported.
    pub peer: Option<std::net::IpAddr>,
}

/// A validated snapshot and the pool it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolPush {
    /// Which pool.
    pub key: PoolKey,
    /// Its latest statistics.
    pub snapshot: PoolSnapshot,
}

/// Why a push was refused. Every variant leaves the store as it was.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IngestError {
    /// The body is not JSON at all.
    #[error("request body is not valid JSON: {0}")]
    Syntax(String),
    /// A field (or query parameter, or path segment) is missing or wrong.
    #[error("{field}: {problem}")]
    Field {
        /// The field's name, e.g. `in_use` or `pools[2].open`.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The body is larger than `http.max_body_bytes`.
    #[error("request body larger than {limit} bytes (http.max_body_bytes)")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The body's `Content-Encoding` is neither `gzip` nor `identity`.
    #[error("Content-Encoding {0:?} is not supported; send gzip or identity")]
    UnsupportedEncoding(String),
    /// Too many pushes are being read and parsed; this one waited
    /// `http.request_timeout_seconds` for room and was not read.
    #[error("too many pushes in progress; retry shortly")]
    Busy,
    /// The body did not arrive within `http.request_timeout_seconds`.
    #[error("request body not received within {0:?} (http.request_timeout_seconds)")]
    Timeout(Duration),
    /// The connection failed while the body was read.
    #[error("request body could not be read: {0}")]
    Body(String),
    /// The body's `Content-Type` is not one the endpoint reads.
    #[error("Content-Type {0:?} is not supported; send {1}")]
    UnsupportedMediaType(String, &'static str),
    /// Accepting the push would track more pools than `pools.max_pools`.
    #[error("pool limit reached: {tracked} of {limit} pools tracked (pools.max_pools); this push would add {new}")]
    PoolLimit {
        /// The configured limit.
        limit: usize,
        /// Pools tracked now.
        tracked: usize,
        /// New pools the push would add.
        new: usize,
    },
    /// The push alone names more pools than `pools.max_pools`: it could never be stored.
    #[error("this push names more than {limit} pools (pools.max_pools)")]
    TooManyPools {
        /// The configured limit.
        limit: usize,
    },
    /// A batch holds more pools than `pools.max_pools_per_app`: it could never be stored.
    #[error("a batch holds more than {limit} pools, the most one application may have (pools.max_pools_per_app)")]
    BatchTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// Accepting the push would track more applications than `pools.max_apps`.
    #[error("application limit reached: {limit} applications tracked (pools.max_apps)")]
    AppLimit {
        /// The configured limit.
        limit: usize,
    },
    /// Accepting the push would give one application more pools than
    /// `pools.max_pools_per_app`.
    #[error("application {app:?} would have more than {limit} pools (pools.max_pools_per_app)")]
    PoolsPerAppLimit {
        /// The application.
        app: String,
        /// The configured limit.
        limit: usize,
    },
}

impl IngestError {
    /// A fixed string for the `outcome` label of `poolwatch_ingest_requests_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            IngestError::Syntax(_) => "invalid_json",
            IngestError::Field { .. } => "invalid_field",
            IngestError::TooLarge { .. } => "too_large",
            IngestError::UnsupportedEncoding(_) => "unsupported_encoding",
            IngestError::Timeout(_) => "timeout",
            IngestError::Busy => "busy",
            IngestError::Body(_) => "body_error",
            IngestError::UnsupportedMediaType(..) => "unsupported_media_type",
            IngestError::PoolLimit { .. } | IngestError::TooManyPools { .. } => "pool_limit",
            IngestError::BatchTooLarge { .. } => "pools_per_app_limit",
            IngestError::AppLimit { .. } => "app_limit",
            IngestError::PoolsPerAppLimit { .. } => "pools_per_app_limit",
        }
    }

    /// The HTTP status a client gets for this error.
    pub fn status(&self) -> u16 {
        match self {
            IngestError::Syntax(_) | IngestError::Field { .. } | IngestError::Body(_) => 400,
            IngestError::TooLarge { .. } => 413,
            IngestError::UnsupportedEncoding(_) => 415,
            IngestError::Timeout(_) => 408,
            IngestError::UnsupportedMediaType(..) => 415,
            IngestError::Busy => 503,
            IngestError::PoolLimit { .. }
            | IngestError::TooManyPools { .. }
            | IngestError::BatchTooLarge { .. }
            | IngestError::AppLimit { .. }
            | IngestError::PoolsPerAppLimit { .. } => 429,
        }
    }

    /// The offending field, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            IngestError::Field { field, .. } => Some(field),
            IngestError::UnsupportedEncoding(_) => Some("Content-Encoding"),
            IngestError::UnsupportedMediaType(..) => Some("Content-Type"),
            _ => None,
        }
    }

    pub(crate) fn field_err(field: impl Into<String>, problem: impl Into<String>) -> IngestError {
        IngestError::Field {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// Longest `app` and `pool` name accepted.
pub const MAX_NAME_LEN: usize = 128;
/// Longest `instance` accepted (a DNS name).
pub const MAX_INSTANCE_LEN: usize = 253;
/// Longest `application_name` accepted; PostgreSQL keeps 63 bytes of it.
pub const MAX_APPLICATION_NAME_LEN: usize = 63;

/// Checks an `app`, `pool` or `instance` value: ASCII letters, digits and `_.:-`.
pub fn check_name(
    field: &str,
    value: &str,
    max: usize,
    allow_empty: bool,
) -> Result<(), IngestError> {
    if value.is_empty() {
        return if allow_empty {
            Ok(())
        } else {
            Err(IngestError::field_err(field, "must not be empty"))
        };
    }
    if value.len() > max {
        return Err(IngestError::field_err(
            field,
            format!("longer than {max} characters"),
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-')))
    {
        return Err(IngestError::field_err(
            field,
            format!("character {c:?} not allowed (use letters, digits and _ . : -)"),
        ));
    }
    Ok(())
}

/// Makes a client-chosen value a valid name: characters [`check_name`] does not allow
/// become `_`, and it is cut to `max` characters (a push should still work when the
/// client picked an unusual name, e.g. a connection string as a pool name).
pub fn clean_name(v: &str, max: usize) -> String {
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(max)
        .collect()
}
