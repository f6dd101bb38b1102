//! The `databases` list: many databases watched by one poolwatch (central mode).
//!
//! Each entry is a mapping: `name` (required, unique: the `database` label of its series
//! and what a push may name), exactly one of `url`, `url_file` (a mounted Secret) or
//! `url_env` (the name of an environment variable holding the URL, as a Secret exposed
//! with `envFrom`), and optionally any of the per-database session settings of the
//! `database` section ([`OVERRIDES`]), which otherwise apply to every entry. Each entry is
//! read by [`DatabaseConfig::from_values`], so it is validated exactly as a single
//! `database.url` is; its problems are prefixed with `databases[i] (name)`. At most
//! `database.max_databases` entries.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};

use serde_yaml::Value;

use crate::keys::{Key, Kind, Values};
use crate::sampler::config::DatabaseConfig;
use crate::Mode;

/// The `database` label of pools no database could be found for.
pub const UNATTRIBUTED: &str = "__unattributed__";

/// One watched database.
#[derive(Clone, Debug)]
pub struct DatabaseEntry {
    /// The `database` label.
    pub name: String,
    /// The database and its session settings.
    pub db: DatabaseConfig,
    /// Changes when anything of the entry changes, the URL's secret text included
    /// (hashed): a reload restarts only entries whose fingerprint changed.
    pub fingerprint: u64,
}

/// The list itself (file only: a list does not fit an environment variable).
pub const DATABASES: Key = Key::new("databases", Kind::List, "-", &[]);
/// The bound on the list.
pub const MAX_DATABASES: Key = Key::new(
    "database.max_databases",
    Kind::Count,
    "100",
    &["POOLWATCH_DATABASE_MAX_DATABASES"],
);

/// The keys of the list.
pub const KEYS: &[Key] = &[DATABASES, MAX_DATABASES];

/// The settings of the `database` section an entry may override, by their name in an
/// entry (the part after `database.`).
pub const OVERRIDES: &[&str] = &[
    "sslmode",
    "ca_file",
    "interval_seconds",
    "connect_timeout_seconds",
    "statement_timeout_seconds",
    "lock_timeout_seconds",
    "reconnect_max_backoff_seconds",
    "max_application_names",
    "max_connection_limits",
    "query_text",
    "query_max_chars",
];

/// Longest database name: it is a label value and appears in push URLs.
const MAX_NAME_LEN: usize = 128;

/// The `database` keys an entry never inherits: its own source, and the list's bound.
fn inherited(path: &str) -> bool {
    path.starts_with("database.")
        && !matches!(
            path,
            "database.url" | "database.url_file" | "database.max_databases" | "database.name"
        )
}

/// The static path of `database.<field>`, for the keys the `database` section owns.
fn database_key(field: &str) -> Option<&'static str> {
    DatabaseConfig::KEYS
        .iter()
        .map(|k| k.path)
        .find(|p| p.strip_prefix("database.") == Some(field))
}

/// Reads the list; `None` when it is not set (an empty list is a list: entries may be
/// added by a reload). Problems name the entry by index and name.
pub fn from_values(v: &mut Values, mode: Mode) -> Option<Vec<DatabaseEntry>> {
    let max = v.count(&MAX_DATABASES);
    let (list, origin) = v.raw(&DATABASES).map(|(l, o)| (l.clone(), o.to_string()))?;
    let items = match list {
        Value::Sequence(items) => items,
        Value::Null => return None,
        _ => {
            v.problem(format!(
                "databases (from {origin}): expected a list of mappings with name and url, url_file or url_env"
            ));
            return None;
        }
    };
    if mode == Mode::Sidecar {
        v.problem(format!(
            "databases (from {origin}): a list of databases is for central mode; a sidecar watches one (database.url)"
        ));
        return None;
    }
    if v.is_set_path("database.url") || v.is_set_path("database.url_file") {
        v.problem(format!(
            "databases (from {origin}) and database.url or database.url_file are both set; put that database in the list"
        ));
    }
    if v.is_set_path("database.name") {
        v.problem(format!(
            "databases (from {origin}) and database.name are both set; each entry has its own name"
        ));
    }
    if items.len() > max {
        v.problem(format!(
            "databases (from {origin}): {} entries, more than database.max_databases ({max})",
            items.len()
        ));
    }
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        if let Some(entry) = entry(v, i, item, &origin) {
            if !names.insert(entry.name.clone()) {
                v.problem(format!(
                    "databases[{i}] (from {origin}): name {:?} is used by an earlier entry; names must be unique",
                    entry.name
                ));
                continue;
            }
            out.push(entry);
        }
    }
    Some(out)
}

/// Reads entry `i`; `None` (with problems recorded) when it cannot be used.
fn entry(v: &mut Values, i: usize, item: &Value, origin: &str) -> Option<DatabaseEntry> {
    let at = format!("databases[{i}] (from {origin})");
    let Value::Mapping(m) = item else {
        v.problem(format!(
            "{at}: expected a mapping with name and url, url_file or url_env"
        ));
        return None;
    };
    let mut name = None;
    let mut sources: Vec<(&str, String)> = Vec::new();
    let mut overrides: Vec<(&'static str, Value)> = Vec::new();
    let mut ok = true;
    for (k, value) in m {
        let Some(k) = k.as_str() else {
            v.problem(format!("{at}: key {k:?} is not a string"));
            ok = false;
            continue;
        };
        let text = match value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        match (k, text) {
            ("name", Some(t)) => name = Some(t),
            ("url" | "url_file" | "url_env", Some(t)) => sources.push((k, t)),
            ("name" | "url" | "url_file" | "url_env", None) => {
                v.problem(format!("{at}: {k}: expected a string"));
                ok = false;
            }
            (field, _) if OVERRIDES.contains(&field) => match database_key(field) {
                Some(path) => overrides.push((path, value.clone())),
                None => unreachable!("override {field} is a database key"),
            },
            (field, _) => {
                v.problem(format!(
                    "{at}: {field}: unknown key; an entry takes name, url, url_file, url_env and {}",
                    OVERRIDES.join(", ")
                ));
                ok = false;
            }
        }
    }
    let name = match name {
        Some(n) if valid_name(&n) => n,
        Some(n) => {
            v.problem(format!(
                "{at}: name {n:?}: expected 1 to {MAX_NAME_LEN} printable characters without surrounding spaces, not {UNATTRIBUTED}"
            ));
            return None;
        }
        None => {
            v.problem(format!("{at}: name is required (the database label)"));
            return None;
        }
    };
    let at = format!("databases[{i}] ({name})");
    let (kind, text) = match sources.as_slice() {
        [one] => one.clone(),
        [] => {
            v.problem(format!(
                "{at}: set one of url, url_file or url_env (from {origin})"
            ));
            return None;
        }
        _ => {
            let set: Vec<&str> = sources.iter().map(|(k, _)| *k).collect();
            v.problem(format!(
                "{at}: {} are set; set exactly one (from {origin})",
                set.join(" and ")
            ));
            return None;
        }
    };
    let mut child = v.child(inherited);
    let here = format!("{at} in {origin}");
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut hasher);
    match kind {
        "url_env" => match v.env(&text).filter(|u| !u.trim().is_empty()) {
            Some(url) => {
                url.hash(&mut hasher);
                child.set(
                    "database.url",
                    Value::String(url),
                    format!("environment variable {text} ({at})"),
                );
            }
            None => {
                v.problem(format!(
                    "{at}: url_env: environment variable {text} is not set or empty"
                ));
                return None;
            }
        },
        "url" => {
            text.hash(&mut hasher);
            child.set("database.url", Value::String(text), here.clone());
        }
        _ => {
            // The file's text is part of the fingerprint, so a rotated Secret restarts the
            // session on the next reload.
            std::fs::read_to_string(&text).ok().hash(&mut hasher);
            child.set("database.url_file", Value::String(text), here.clone());
        }
    }
    for (path, value) in overrides {
        child.set(path, value, here.clone());
    }
    let db = DatabaseConfig::from_values(&mut child, Some(name.clone()));
    let (problems, warnings) = child.finish();
    for p in &problems {
        v.problem(format!("{at}: {p}"));
    }
    for w in warnings {
        v.warn(format!("{at}: {w}"));
    }
    if !ok || !problems.is_empty() {
        return None;
    }
    let db = db?;
    format!(
        "{db:?} {:?} {} {} {} {:?} {} {:?}",
        db.sslmode,
        db.ca_file.display(),
        db.max_application_names,
        db.max_connection_limits,
        db.query_text,
        db.query_max_chars,
        db.reconnect_max_backoff
    )
    .hash(&mut hasher);
    Some(DatabaseEntry {
        name,
        db,
        fingerprint: hasher.finish(),
    })
}

/// A usable `database` label value and push parameter.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.chars().count() <= MAX_NAME_LEN
        && n.trim() == n
        && !n.chars().any(char::is_control)
        && n != UNATTRIBUTED
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::keys::testing::{env, yaml, TempFile};

    /// The list `text` gives in `mode`, or every problem found.
    fn read_list_in(
        mode: Mode,
        text: &str,
        e: &[(&str, &str)],
    ) -> Result<Option<Vec<DatabaseEntry>>, Vec<String>> {
        let e = env(e);
        let keys: Vec<&'static Key> = KEYS.iter().chain(DatabaseConfig::KEYS).collect();
        let mut v = yaml(text, &keys, &e);
        let list = from_values(&mut v, mode);
        let (problems, _) = v.finish();
        if problems.is_empty() {
            Ok(list)
        } else {
            Err(problems)
        }
    }

    fn read_list(text: &str, e: &[(&str, &str)]) -> Result<Vec<DatabaseEntry>, Vec<String>> {
        read_list_in(Mode::Central, text, e).map(|l| l.expect("a list"))
    }

    #[test]
    fn a_list_of_databases_with_urls_from_the_file_a_secret_file_and_the_environment() {
        let secret = TempFile::new("postgres://mon:pw@billing-db:5432/billing\n");
        let yaml = format!(
            "database:\n  interval_seconds: 10\n  max_application_names: 50\ndatabases:\n  - name: orders\n    url: postgres://mon@orders-db/orders\n  - name: billing\n    url_file: {}\n    interval_seconds: 30\n    statement_timeout_seconds: 3\n  - name: search\n    url_env: SEARCH_DB_URL\n    query_text: none\n",
            secret.path()
        );
        let list = read_list(
            &yaml,
            &[("SEARCH_DB_URL", "postgres://mon@search-db:6432/s")],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["orders", "billing", "search"]);
        let [orders, billing, search] = &list[..] else {
            panic!()
        };
        assert_eq!(orders.db.interval, Duration::from_secs(10), "inherited");
        assert_eq!(orders.db.max_application_names, 50, "inherited");
        assert_eq!(billing.db.interval, Duration::from_secs(30), "overridden");
        assert_eq!(billing.db.source, "url_file");
        assert_eq!(
            billing.db.target(),
            "host=billing-db port=5432 dbname=billing user=mon sslmode=prefer"
        );
        assert_eq!(
            search.db.target(),
            "host=search-db port=6432 dbname=s user=mon sslmode=prefer"
        );
        assert_eq!(
            search.db.query_text,
            crate::sampler::config::QueryText::None
        );
        for e in &list {
            assert_eq!(e.db.pg.get_application_name(), Some("poolwatch"));
            assert!(e
                .db
                .pg
                .get_options()
                .unwrap()
                .contains("statement_timeout="));
        }

        // The same file again: the same fingerprints; a changed entry: only its own.
        let again = read_list(
            &yaml,
            &[("SEARCH_DB_URL", "postgres://mon@search-db:6432/s")],
        )
        .unwrap();
        let changed = read_list(
            &yaml,
            &[("SEARCH_DB_URL", "postgres://mon:new@search-db:6432/s")],
        )
        .unwrap();
        let prints = |l: &[DatabaseEntry]| l.iter().map(|e| e.fingerprint).collect::<Vec<_>>();
        assert_eq!(prints(&list), prints(&again));
        assert_eq!(prints(&list)[..2], prints(&changed)[..2]);
        assert_ne!(
            prints(&list)[2],
            prints(&changed)[2],
            "a new password restarts"
        );
    }

    #[test]
    fn every_problem_of_the_list_is_named_with_its_entry() {
        let yaml = "databases:\n  - name: a\n    url: postgres://u@h/a\n  - name: a\n    url: postgres://u@h/b\n  - url: postgres://u@h/c\n  - name: d\n  - name: e\n    url: postgres://u@h/e\n    url_file: /x\n  - name: f\n    url: postgres://u@h/f\n    interval_seconds: soon\n  - name: g\n    url: postgres://u@h/g\n    colour: blue\n  - name: h\n    url_env: NOT_SET_ANYWHERE\n  - name: i\n    url: mysql://i\n  - just-a-string\n  - name: __unattributed__\n    url: postgres://u@h/k\n";
        let problems = read_list(yaml, &[]).unwrap_err();
        let text = problems.join("\n");
        for needle in [
            "databases[1] (from ",
            "name \"a\" is used by an earlier entry",
            "databases[2] (from ",
            "name is required",
            "databases[3] (d): set one of url, url_file or url_env",
            "databases[4] (e): url and url_file are set; set exactly one",
            "databases[5] (f): database.interval_seconds (from databases[5] (f) in ",
            "expected a number, got \"soon\"",
            "colour: unknown key",
            "databases[7] (h): url_env: environment variable NOT_SET_ANYWHERE is not set or empty",
            "databases[8] (i): database.url: expected a URL starting with postgres://",
            "databases[9] (from ",
            "expected a mapping with name and url",
            "name \"__unattributed__\"",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        assert_eq!(problems.len(), 10, "{text}");

        for (mode, yaml, needle) in [
            (
                Mode::Central,
                "database:\n  max_databases: 2\ndatabases:\n  - {name: a, url: 'postgres://u@h/a'}\n  - {name: b, url: 'postgres://u@h/b'}\n  - {name: c, url: 'postgres://u@h/c'}\n",
                "3 entries, more than database.max_databases (2)",
            ),
            (
                Mode::Central,
                "database:\n  url: postgres://u@h/x\ndatabases:\n  - {name: a, url: 'postgres://u@h/a'}\n",
                "both set; put that database in the list",
            ),
            (
                Mode::Sidecar,
                "databases:\n  - {name: a, url: 'postgres://u@h/a'}\n",
                "for central mode",
            ),
            (
                Mode::Central,
                "databases: orders\n",
                "expected a list of mappings",
            ),
        ] {
            let err = read_list_in(mode, yaml, &[]).expect_err(yaml).join("\n");
            assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
        }
    }

    #[test]
    fn a_single_database_url_keeps_working_and_secrets_never_show() {
        let none = read_list_in(Mode::Central, "database:\n  url: postgres://u@h/x\n", &[]);
        assert!(none.unwrap().is_none());
        let empty = read_list("databases: []\n", &[]).unwrap();
        assert_eq!(empty.len(), 0, "a list to add to by reload");
        let err = read_list(
            "databases:\n  - name: a\n    url: postgres://u:hunter2-pw@h:99999/a\n",
            &[],
        )
        .unwrap_err()
        .join("\n");
        assert!(err.contains("databases[0] (a)"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
