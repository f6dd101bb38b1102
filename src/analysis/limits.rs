//! Which connection limit an application reaches first on the server side: the server's
//! usable slots, its role's `CONNECTION LIMIT` or its database's limit.
//!
//! An application's connections count against every limit that applies to them: the
//! server's (`max_connections` minus the reserved slots, minus every client backend),
//! the limit of each role its backends use (minus that role's backends, whoever opened
//! them) and of each database they are in (likewise). At one growth rate the lowest
//! headroom is reached first, so that one is the time to exhaustion; its kind is the
//! `limit` label. Roles and databases without a limit, and superusers (exempt), are
//! not limits. Pure: the sampler has read the limits and the counts.

use std::collections::BTreeSet;

use crate::sampler::activity::Backend;
use crate::sampler::limits::ConnectionLimits;

/// Which limit: the value of the `limit` label of the server-side time to exhaustion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServerLimit {
    /// `max_connections` minus the reserved slots.
    #[default]
    Server,
    /// A database's connection limit (`datconnlimit`).
    Database,
    /// A role's `CONNECTION LIMIT`.
    Role,
}

impl ServerLimit {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ServerLimit::Server => "server",
            ServerLimit::Database => "database",
            ServerLimit::Role => "role",
        }
    }
}

/// The nearest limit and the connections it still allows (zero or more).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Headroom {
    /// Which limit.
    pub limit: ServerLimit,
    /// Connections left before it is reached.
    pub connections: u64,
}

/// The lowest headroom of the limits that apply to an application whose backends are
/// `backends`: `server` (usable slots minus every client backend, when known) and each
/// role and database limit those backends are under. A tie goes to the narrower limit
/// (role, then database): that is the one to raise or to look at. `None` when no limit
/// is known.
pub fn nearest(
    server: Option<(u64, u64)>,
    limits: &ConnectionLimits,
    backends: &[&Backend],
) -> Option<Headroom> {
    let mut best: Option<(i64, ServerLimit)> = server.map(|(usable, total)| {
        (
            i64::try_from(usable).unwrap_or(i64::MAX) - i64::try_from(total).unwrap_or(i64::MAX),
            ServerLimit::Server,
        )
    });
    let mut consider = |headroom: i64, limit: ServerLimit| {
        let better = match best {
            None => true,
            Some((h, l)) => headroom < h || (headroom == h && limit > l),
        };
        if better {
            best = Some((headroom, limit));
        }
    };
    let roles: BTreeSet<&str> = backends.iter().map(|b| b.usename.as_str()).collect();
    for l in roles.into_iter().filter_map(|r| limits.role(r)) {
        consider(l.headroom(), ServerLimit::Role);
    }
    let databases: BTreeSet<&str> = backends.iter().map(|b| b.datname.as_str()).collect();
    for l in databases.into_iter().filter_map(|d| limits.database(d)) {
        consider(l.headroom(), ServerLimit::Database);
    }
    best.map(|(h, limit)| Headroom {
        limit,
        connections: u64::try_from(h.max(0)).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::limits::ConnectionLimit;

    fn backend(role: &str, db: &str) -> Backend {
        Backend {
            usename: role.into(),
            datname: db.into(),
            ..Default::default()
        }
    }

    fn limit(name: &str, limit: i32, backends: i64) -> ConnectionLimit {
        ConnectionLimit {
            name: name.into(),
            limit,
            backends,
        }
    }

    #[test]
    fn the_lowest_headroom_of_the_limits_that_apply_wins() {
        let limits = ConnectionLimits {
            roles: vec![limit("leaky", 10, 7), limit("other", 5, 5)],
            databases: vec![limit("shop", 8, 6), limit("unused", 1, 1)],
        };
        let (a, b, c, d) = (
            backend("leaky", "app"),
            backend("leaky", "shop"),
            backend("plain", "app"),
            backend("x", "unused"),
        );
        type Case<'a> = (
            &'a str,
            Option<(u64, u64)>,
            Vec<&'a Backend>,
            Option<(ServerLimit, u64)>,
        );
        let cases: Vec<Case> = vec![
            ("no limit known", None, vec![&c], None),
            (
                "server only",
                Some((97, 40)),
                vec![&c],
                Some((ServerLimit::Server, 57)),
            ),
            (
                "role below server",
                Some((97, 40)),
                vec![&a],
                Some((ServerLimit::Role, 3)),
            ),
            (
                "role without a server view",
                None,
                vec![&a],
                Some((ServerLimit::Role, 3)),
            ),
            (
                "database below role",
                Some((97, 40)),
                vec![&a, &b],
                Some((ServerLimit::Database, 2)),
            ),
            (
                "server below role",
                Some((97, 96)),
                vec![&a],
                Some((ServerLimit::Server, 1)),
            ),
            (
                "a tie goes to the role",
                Some((97, 94)),
                vec![&a],
                Some((ServerLimit::Role, 3)),
            ),
            (
                "a database at its limit",
                None,
                vec![&d],
                Some((ServerLimit::Database, 0)),
            ),
        ];
        for (name, server, bs, want) in cases {
            let got = nearest(server, &limits, &bs).map(|h| (h.limit, h.connections));
            assert_eq!(got, want, "{name}");
        }
        let over = ConnectionLimits {
            roles: vec![limit("x", 2, 5)],
            ..Default::default()
        };
        let got = nearest(Some((97, 10)), &over, &[&backend("x", "d")]);
        assert_eq!(
            got,
            Some(Headroom {
                limit: ServerLimit::Role,
                connections: 0
            }),
            "a limit lowered below the count is reached"
        );
    }
}
