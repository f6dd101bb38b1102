//! The limits below `max_connections` that can run out first: a role's
//! `CONNECTION LIMIT` (`pg_roles.rolconnlimit`) and a database's (`datconnlimit`), each
//! with the client backends that count against it now.
//!
//! Only limits that are set (`>= 0`) are read, and no superuser's: the server exempts
//! superusers from both. One query per sample, in the sampler's own session (so under its
//! `statement_timeout`), with `pg_stat_activity` read once. Its length is bounded by
//! `database.max_connection_limits` per kind, the limits closest to running out first:
//! those with backends now, then the least headroom, then by name.
//!
//! The counts include poolwatch's own session, which takes a slot of its role and of its
//! database as any other does (unlike the activity view, which leaves it out). Without
//! `pg_read_all_stats` the server hides other roles' `backend_type` (NULL) but not their
//! `usesysid` and `datid`, so those rows are counted too: the count stays right for client
//! backends, and may then include another role's parallel workers or WAL senders for the
//! moment they run.

/// Rows of `(kind, name, limit, backends)`, `kind` being `role` or `database`; `$1` is the
/// most rows of each kind.
pub const QUERY: &str = "\
WITH a AS (
  SELECT usesysid, datid FROM pg_stat_activity
   WHERE backend_type = 'client backend' OR backend_type IS NULL
), r AS (
  SELECT r.rolname::text AS name, r.rolconnlimit AS lim, count(a.usesysid) AS n
    FROM pg_roles r LEFT JOIN a ON a.usesysid = r.oid
   WHERE r.rolconnlimit >= 0 AND NOT r.rolsuper
   GROUP BY r.rolname, r.rolconnlimit
), d AS (
  SELECT d.datname::text AS name, d.datconnlimit AS lim, count(a.datid) AS n
    FROM pg_database d LEFT JOIN a ON a.datid = d.oid
   WHERE d.datconnlimit >= 0
   GROUP BY d.datname, d.datconnlimit
)
(SELECT 'role'::text, name, lim, n FROM r ORDER BY n > 0 DESC, lim - n, name LIMIT $1)
UNION ALL
(SELECT 'database'::text, name, lim, n FROM d ORDER BY n > 0 DESC, lim - n, name LIMIT $1)";

/// One limit that is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectionLimit {
    /// The role's or the database's name.
    pub name: String,
    /// Its connection limit.
    pub limit: i32,
    /// Client backends of that role (or in that database) now, poolwatch's own included.
    pub backends: i64,
}

impl ConnectionLimit {
    /// Connections the limit still allows (negative when over it, as after the limit was
    /// lowered below the current count).
    pub fn headroom(&self) -> i64 {
        i64::from(self.limit) - self.backends
    }
}

/// The role and database limits of one sample, each sorted by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConnectionLimits {
    /// Roles with a `CONNECTION LIMIT`, superusers left out.
    pub roles: Vec<ConnectionLimit>,
    /// Databases with a connection limit.
    pub databases: Vec<ConnectionLimit>,
}

impl ConnectionLimits {
    /// Reads the rows of [`QUERY`].
    pub fn from_rows(
        rows: &[tokio_postgres::Row],
    ) -> Result<ConnectionLimits, tokio_postgres::Error> {
        let mut out = ConnectionLimits::default();
        for row in rows {
            let kind: &str = row.try_get(0)?;
            let limit = ConnectionLimit {
                name: row.try_get(1)?,
                limit: row.try_get(2)?,
                backends: row.try_get(3)?,
            };
            match kind {
                "role" => out.roles.push(limit),
                _ => out.databases.push(limit),
            }
        }
        out.roles.sort_by(|a, b| a.name.cmp(&b.name));
        out.databases.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The limit of role `name`, when set.
    pub fn role(&self, name: &str) -> Option<&ConnectionLimit> {
        find(&self.roles, name)
    }

    /// The limit of database `name`, when set.
    pub fn database(&self, name: &str) -> Option<&ConnectionLimit> {
        find(&self.databases, name)
    }
}

fn find<'a>(sorted: &'a [ConnectionLimit], name: &str) -> Option<&'a ConnectionLimit> {
    sorted
        .binary_search_by(|l| l.name.as_str().cmp(name))
        .ok()
        .map(|i| &sorted[i])
}
