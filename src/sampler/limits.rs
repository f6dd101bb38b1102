//! The limits below `max_connections` that can run out first: a role's
//! `CONNECTION LIMIT` (`pg_roles.rolconnlimit`) and a database's (`datconnlimit`), each
//! with the client backends that count against it now.
//!
//! Read after the activity view, for the roles and databases that have backends in it
//! (the only ones an application's connections can be under), with their counts from
//! that same view: one lookup in two small catalogs per sample, in the sampler's own
//! session (so under its `statement_timeout`), without a second scan of
//! `pg_stat_activity`. Only limits that are set (`>= 0`) are read, and no superuser's:
//! the server exempts superusers from both. At most `database.max_connection_limits` of
//! each kind, the least headroom first. Catalogs every role can read: no privilege
//! beyond what the activity view needs.
//!
//! The counts include poolwatch's own session, which takes a slot of its role and of its
//! database as any other does (the activity view leaves it out; the query adds it).

use std::collections::BTreeMap;

use super::activity::Backend;

/// Rows of `(kind, name, limit, backends)`, `kind` being `role` or `database`. `$1` and
/// `$2` are the names of the roles with backends and their counts, `$3` and `$4` the
/// same for databases, `$5` the most rows of each kind.
pub const QUERY: &str = "\
(SELECT 'role'::text, r.rolname::text, r.rolconnlimit,
        b.n + (r.rolname = current_user)::int4 AS n
   FROM pg_roles r JOIN unnest($1::text[], $2::int8[]) AS b(name, n) ON r.rolname = b.name
  WHERE r.rolconnlimit >= 0 AND NOT r.rolsuper
  ORDER BY r.rolconnlimit - b.n - (r.rolname = current_user)::int4, r.rolname
  LIMIT $5)
UNION ALL
(SELECT 'database'::text, d.datname::text, d.datconnlimit,
        b.n + (d.datname = current_database())::int4 AS n
   FROM pg_database d JOIN unnest($3::text[], $4::int8[]) AS b(name, n) ON d.datname = b.name
  WHERE d.datconnlimit >= 0
  ORDER BY d.datconnlimit - b.n - (d.datname = current_database())::int4, d.datname
  LIMIT $5)";

/// The parameters `$1` to `$4` of [`QUERY`]: each role and database with backends, and
/// how many (names hidden from the watcher, empty, are left out).
pub fn backend_counts(backends: &[Backend]) -> [(Vec<String>, Vec<i64>); 2] {
    let mut roles: BTreeMap<&str, i64> = BTreeMap::new();
    let mut databases: BTreeMap<&str, i64> = BTreeMap::new();
    for b in backends {
        if !b.usename.is_empty() {
            *roles.entry(b.usename.as_str()).or_default() += 1;
        }
        if !b.datname.is_empty() {
            *databases.entry(b.datname.as_str()).or_default() += 1;
        }
    }
    [roles, databases].map(|m| m.into_iter().map(|(k, n)| (k.to_string(), n)).unzip())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_role_and_database_leave_hidden_names_out() {
        let b = |role: &str, db: &str| Backend {
            usename: role.into(),
            datname: db.into(),
            ..Default::default()
        };
        let rows = [
            b("app", "shop"),
            b("app", "shop"),
            b("etl", "dw"),
            b("", ""),
        ];
        let [roles, databases] = backend_counts(&rows);
        assert_eq!(roles, (vec!["app".into(), "etl".into()], vec![2, 1]));
        assert_eq!(databases, (vec!["dw".into(), "shop".into()], vec![1, 2]));
        let limits = ConnectionLimits {
            roles: vec![ConnectionLimit {
                name: "app".into(),
                limit: 10,
                backends: 12,
            }],
            databases: vec![],
        };
        assert_eq!(limits.role("app").map(ConnectionLimit::headroom), Some(-2));
        assert_eq!(limits.role("etl"), None);
        assert_eq!(limits.database("shop"), None);
    }
}
