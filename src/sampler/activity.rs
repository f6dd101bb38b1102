//! The server view: one row of `pg_stat_activity` per client backend, and the
//! aggregates `/metrics` shows (counts by labels, oldest ages).
//!
//! The query excludes poolwatch's own backends (its own, `pid <> pg_backend_pid()`, and
//! every other session named `database.application_name`: the other sessions of a
//! poolwatch watching several databases of one server, or of a second replica) and anything
//! that is not a client backend (autovacuum, WAL sender, parallel workers). Ages are
//! computed by the server against one `now()`, so a sample is consistent and immune to
//! clock skew between poolwatch and the database. Query text is read only as
//! `database.query_text` says, and kept as a fingerprint by default.
//!
//! [`aggregate`] is pure and tested on constructed rows.

use std::collections::{BTreeMap, HashMap};

use super::config::QueryText;

/// The activity query with `$text` as its last column (the query text, or an empty one).
macro_rules! activity_query {
    ($text:literal) => {
        concat!(
            "SELECT pid,
       COALESCE(datname::text, ''),
       COALESCE(usename::text, ''),
       COALESCE(application_name, ''),
       COALESCE(host(client_addr), ''),
       COALESCE(state, ''),
       COALESCE(wait_event_type, ''),
       COALESCE(wait_event, ''),
       EXTRACT(EPOCH FROM now() - backend_start)::float8,
       EXTRACT(EPOCH FROM now() - xact_start)::float8,
       EXTRACT(EPOCH FROM now() - state_change)::float8,
       ",
            $text,
            "
  FROM pg_stat_activity
 WHERE (backend_type = 'client backend'
        OR (backend_type IS NULL AND datid IS NOT NULL AND usesysid IS NOT NULL))
   AND pid <> pg_backend_pid()
   AND application_name IS DISTINCT FROM current_setting('application_name')"
        )
    };
}

/// Reads every client backend but our own. Columns hidden from a role without
/// `pg_monitor` come back NULL, and are shown as absent labels and missing ages; so does
/// `backend_type`, so another role's session is recognised by what stays visible (its
/// database and role: background processes have no role, autovacuum workers no role
/// either), and is counted by database, role and `application_name`. The last column is
/// the query text, read only when `database.query_text` asks for it.
pub const QUERY: &str = activity_query!("''::text");

/// [`QUERY`] with the last query's first 4096 bytes.
pub const QUERY_WITH_TEXT: &str = activity_query!("COALESCE(left(query, 4096), '')");

/// One client backend as `pg_stat_activity` shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Backend {
    /// Server process id (never a label; used by the forensics endpoint).
    pub pid: i32,
    /// Database.
    pub datname: String,
    /// Role.
    pub usename: String,
    /// What the client set as `application_name`.
    pub application_name: String,
    /// Client IP, empty for Unix sockets or when hidden.
    pub client_addr: String,
    /// `active`, `idle`, `idle in transaction`, ...; empty when hidden.
    pub state: String,
    /// E.g. `Client`; empty when not waiting.
    pub wait_event_type: String,
    /// E.g. `ClientRead`; empty when not waiting.
    pub wait_event: String,
    /// Seconds since the backend started.
    pub backend_age: Option<f64>,
    /// Seconds since its transaction started; `None` outside a transaction.
    pub xact_age: Option<f64>,
    /// Seconds since its state last changed.
    pub state_age: Option<f64>,
    /// Its last query as `database.query_text` asks: a fingerprint (default), the text,
    /// or empty. Never a label.
    pub query: String,
}

impl Backend {
    /// Reads one row of [`QUERY`] or [`QUERY_WITH_TEXT`], keeping the query as `text` says.
    pub fn from_row(
        row: &tokio_postgres::Row,
        text: QueryText,
        max_chars: usize,
    ) -> Result<Backend, tokio_postgres::Error> {
        let raw: &str = row.try_get(11)?;
        let query = match text {
            QueryText::None => String::new(),
            QueryText::Fingerprint => super::query::fingerprint(raw, max_chars),
            QueryText::Full => raw.chars().take(max_chars).collect(),
        };
        Ok(Backend {
            pid: row.try_get(0)?,
            datname: row.try_get(1)?,
            usename: row.try_get(2)?,
            application_name: row.try_get(3)?,
            client_addr: row.try_get(4)?,
            state: row.try_get(5)?,
            wait_event_type: row.try_get(6)?,
            wait_event: row.try_get(7)?,
            backend_age: row.try_get(8)?,
            xact_age: row.try_get(9)?,
            state_age: row.try_get(10)?,
            query,
        })
    }
}

/// Label set of `poolwatch_pg_connections`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnLabels {
    /// Database.
    pub datname: String,
    /// Role.
    pub usename: String,
    /// `application_name`, or `__other__` beyond the cap.
    pub application_name: String,
    /// Backend state.
    pub state: String,
    /// Wait event type.
    pub wait_event_type: String,
    /// Wait event.
    pub wait_event: String,
}

/// Label set of the oldest-age gauges.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgeLabels {
    /// Database.
    pub datname: String,
    /// Role.
    pub usename: String,
    /// `application_name`, or `__other__` beyond the cap.
    pub application_name: String,
    /// Backend state.
    pub state: String,
}

/// The oldest ages within one [`AgeLabels`] group, in seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ages {
    /// Oldest `now() - backend_start`.
    pub backend: Option<f64>,
    /// Oldest `now() - state_change`.
    pub state: Option<f64>,
    /// Oldest `now() - xact_start` among backends in a transaction.
    pub transaction: Option<f64>,
}

/// What `/metrics` shows of one sample, computed once per sample, not per scrape.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Aggregates {
    /// Backends per label set, sorted.
    pub connections: BTreeMap<ConnLabels, u64>,
    /// Oldest ages per label set, sorted.
    pub ages: BTreeMap<AgeLabels, Ages>,
}

/// Label value that stands for every `application_name` beyond the cap.
pub const OTHER_APPLICATIONS: &str = "__other__";

fn max_opt(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

/// Counts backends by labels and finds the oldest ages. At most `max_application_names`
/// distinct `application_name` values are kept (those with the most backends; ties by
/// name); the others are summed under [`OTHER_APPLICATIONS`], so a client that names
/// each connection differently cannot blow up the series count.
pub fn aggregate(backends: &[Backend], max_application_names: usize) -> Aggregates {
    let mut per_app: HashMap<&str, u64> = HashMap::new();
    for b in backends {
        *per_app.entry(b.application_name.as_str()).or_default() += 1;
    }
    let keep: HashMap<&str, ()> = if per_app.len() > max_application_names {
        let mut ranked: Vec<(&str, u64)> = per_app.into_iter().collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        ranked
            .into_iter()
            .take(max_application_names)
            .map(|(n, _)| (n, ()))
            .collect()
    } else {
        per_app.into_keys().map(|n| (n, ())).collect()
    };
    let mut out = Aggregates::default();
    for b in backends {
        let app = if keep.contains_key(b.application_name.as_str()) {
            b.application_name.clone()
        } else {
            OTHER_APPLICATIONS.to_string()
        };
        let conn = ConnLabels {
            datname: b.datname.clone(),
            usename: b.usename.clone(),
            application_name: app.clone(),
            state: b.state.clone(),
            wait_event_type: b.wait_event_type.clone(),
            wait_event: b.wait_event.clone(),
        };
        *out.connections.entry(conn).or_default() += 1;
        let age = AgeLabels {
            datname: b.datname.clone(),
            usename: b.usename.clone(),
            application_name: app,
            state: b.state.clone(),
        };
        let a = out.ages.entry(age).or_default();
        a.backend = max_opt(a.backend, b.backend_age);
        a.state = max_opt(a.state, b.state_age);
        a.transaction = max_opt(a.transaction, b.xact_age);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(app: &str, state: &str, backend: f64, xact: Option<f64>, st: f64) -> Backend {
        Backend {
            pid: 1,
            datname: "app".into(),
            usename: "u".into(),
            application_name: app.into(),
            state: state.into(),
            wait_event_type: if state == "idle" {
                "Client".into()
            } else {
                String::new()
            },
            wait_event: if state == "idle" {
                "ClientRead".into()
            } else {
                String::new()
            },
            backend_age: Some(backend),
            xact_age: xact,
            state_age: Some(st),
            ..Default::default()
        }
    }

    #[test]
    fn counts_and_oldest_ages_by_group() {
        let rows = [
            b("billing", "idle", 100.0, None, 90.0),
            b("billing", "idle", 300.0, None, 20.0),
            b("billing", "idle in transaction", 50.0, Some(40.0), 40.0),
            b("api", "active", 10.0, Some(0.5), 0.5),
        ];
        let a = aggregate(&rows, 10);
        let idle = ConnLabels {
            datname: "app".into(),
            usename: "u".into(),
            application_name: "billing".into(),
            state: "idle".into(),
            wait_event_type: "Client".into(),
            wait_event: "ClientRead".into(),
        };
        assert_eq!(a.connections[&idle], 2);
        assert_eq!(a.connections.values().sum::<u64>(), 4);
        let key = AgeLabels {
            datname: "app".into(),
            usename: "u".into(),
            application_name: "billing".into(),
            state: "idle".into(),
        };
        assert_eq!(
            a.ages[&key],
            Ages {
                backend: Some(300.0),
                state: Some(90.0),
                transaction: None
            }
        );
        let key = AgeLabels {
            state: "idle in transaction".into(),
            ..key
        };
        assert_eq!(a.ages[&key].transaction, Some(40.0));
    }

    #[test]
    fn hidden_columns_give_no_age() {
        let row = Backend {
            application_name: "x".into(),
            ..Default::default()
        };
        let a = aggregate(&[row], 10);
        let ages = a.ages.values().next().unwrap();
        assert_eq!(ages, &Ages::default());
    }

    #[test]
    fn application_names_beyond_the_cap_are_summed() {
        let mut rows: Vec<Backend> = (0..50)
            .map(|i| b(&format!("req-{i:02}"), "idle", 1.0, None, 1.0))
            .collect();
        rows.extend((0..5).map(|_| b("leaky", "idle", 1.0, None, 1.0)));
        let a = aggregate(&rows, 3);
        let apps: std::collections::BTreeSet<&str> = a
            .connections
            .keys()
            .map(|k| k.application_name.as_str())
            .collect();
        assert_eq!(
            apps.into_iter().collect::<Vec<_>>(),
            vec!["__other__", "leaky", "req-00", "req-01"]
        );
        let other: u64 = a
            .connections
            .iter()
            .filter(|(k, _)| k.application_name == OTHER_APPLICATIONS)
            .map(|(_, v)| v)
            .sum();
        assert_eq!(other, 48);
        assert_eq!(a.connections.values().sum::<u64>(), 55, "nothing lost");
    }
}
