//! The limits that bound the server view: `max_connections` and the slots reserved
//! for superusers (and, on PostgreSQL 16 and later, for `pg_use_reserved_connections`).

/// One row: the limits, the server's clock, the client port of poolwatch's own
/// session (NULL over a Unix socket), which the socket view leaves out, and the sessions
/// named as poolwatch's (its own included), which take slots but are never counted.
/// `reserved_connections` is NULL before PostgreSQL 16, where the setting does not exist.
pub const QUERY: &str = "\
SELECT current_setting('max_connections')::int4,
       current_setting('superuser_reserved_connections')::int4,
       current_setting('reserved_connections', true)::int4,
       EXTRACT(EPOCH FROM now())::float8,
       inet_client_port(),
       (SELECT count(*) FROM pg_stat_activity
         WHERE backend_type = 'client backend'
           AND application_name = current_setting('application_name'))";

/// Connection limits of the server.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// `max_connections`.
    pub max_connections: i32,
    /// `superuser_reserved_connections` plus `reserved_connections` where it exists:
    /// slots ordinary roles cannot take.
    pub reserved_connections: i32,
    /// The server's `now()` at the sample, Unix seconds.
    pub server_time_unix: f64,
}

impl Limits {
    /// Reads the row of [`QUERY`].
    pub fn from_row(row: &tokio_postgres::Row) -> Result<Limits, tokio_postgres::Error> {
        let superuser: i32 = row.try_get(1)?;
        let reserved: Option<i32> = row.try_get(2)?;
        Ok(Limits {
            max_connections: row.try_get(0)?,
            reserved_connections: superuser + reserved.unwrap_or(0),
            server_time_unix: row.try_get(3)?,
        })
    }

    /// Connections ordinary roles can open: `max_connections` minus the reserved slots.
    pub fn usable(&self) -> i32 {
        self.max_connections - self.reserved_connections
    }
}
