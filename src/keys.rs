//! Configuration keys: how a component declares the keys it owns and reads their values.
//!
//! Each component defines its configuration beside its code: the struct it runs with,
//! a `KEYS` table of [`Key`]s (path, kind, default, environment variables, flag) and a
//! `from_values` that builds the struct from [`Values`] and checks it. A value that
//! cannot be used becomes a problem naming the key and where the value came from, and
//! the key's default stands in, so every problem of a configuration is found in one
//! pass. [`crate::config`] fills the [`Values`] from the file, the environment and the
//! flags and collects the problems; this module knows nothing of either side.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_yaml::Value;

/// What a key holds; decides how file, environment and flag values are parsed.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// Any string.
    Text,
    /// A string never echoed back in errors or logs.
    Secret,
    /// A file path.
    Path,
    /// `host:port`.
    Address,
    /// A positive number of seconds (fractions allowed).
    Seconds,
    /// A positive integer.
    Count,
    /// One of the listed words.
    Choice(&'static [&'static str]),
    /// A YAML list (of mappings), read by its owner with [`Values::raw`]; file only.
    List,
}

/// One configuration key: its dotted path in the YAML file and how else to set it.
#[derive(Debug)]
pub struct Key {
    /// Dotted path in the YAML file, e.g. `database.interval_seconds`.
    pub path: &'static str,
    /// What the value holds.
    pub kind: Kind,
    /// Default, as documented and as used (`-` when there is none or it depends on
    /// other keys).
    pub default: &'static str,
    /// Environment variables, in order of precedence.
    pub env: &'static [&'static str],
    /// Command-line flag, if any (flags beat environment variables).
    pub flag: Option<Flag>,
}

/// A command-line flag that sets a key; `main` gives it to clap, which also reads the
/// key's first environment variable for it.
#[derive(Clone, Copy, Debug)]
pub struct Flag {
    /// The flag, e.g. `--listen`.
    pub name: &'static str,
    /// What `--help` calls its value, e.g. `ADDR`.
    pub value_name: &'static str,
    /// Its line in `--help`.
    pub help: &'static str,
}

impl Key {
    /// A key without a flag.
    pub const fn new(
        path: &'static str,
        kind: Kind,
        default: &'static str,
        env: &'static [&'static str],
    ) -> Key {
        Key {
            path,
            kind,
            default,
            env,
            flag: None,
        }
    }

    /// The same key, also set by the flag `name`, shown in `--help` as `name <value_name>`
    /// and `help`.
    pub const fn flag(
        self,
        name: &'static str,
        value_name: &'static str,
        help: &'static str,
    ) -> Key {
        Key {
            flag: Some(Flag {
                name,
                value_name,
                help,
            }),
            ..self
        }
    }

    /// The default as a number, for `Seconds` and `Count` keys; `None` for `-`.
    pub fn default_number(&self) -> Option<f64> {
        self.default.parse().ok()
    }
}

/// A value and where it came from, for error messages.
#[derive(Clone)]
struct Raw {
    value: Value,
    origin: String,
}

/// The merged values of every key, and the problems and warnings found reading them.
pub struct Values<'e> {
    /// Set values by key path; later sources replace earlier ones.
    raw: BTreeMap<&'static str, Raw>,
    /// One line per problem, each naming the key and where its value came from.
    problems: Vec<String>,
    /// Things worth a log line at start that are not errors.
    warnings: Vec<String>,
    /// The environment, for the variables a component reads itself (`PGHOST`, ...).
    env: &'e dyn Fn(&str) -> Option<String>,
}

impl<'e> Values<'e> {
    /// No values yet; `env` answers the lookups of [`Values::env`].
    pub fn new(env: &'e dyn Fn(&str) -> Option<String>) -> Values<'e> {
        Values {
            raw: BTreeMap::new(),
            problems: Vec::new(),
            warnings: Vec::new(),
            env,
        }
    }

    /// Sets `path` to `value`, replacing an earlier source's value.
    pub fn set(&mut self, path: &'static str, value: Value, origin: String) {
        self.raw.insert(path, Raw { value, origin });
    }

    /// The problems and the warnings found.
    pub fn finish(self) -> (Vec<String>, Vec<String>) {
        (self.problems, self.warnings)
    }

    /// The value of `key` as the source gave it, and where it came from.
    pub fn raw(&self, key: &Key) -> Option<(&Value, &str)> {
        self.raw
            .get(key.path)
            .map(|r| (&r.value, r.origin.as_str()))
    }

    /// New values holding the values of the keys `keep` accepts, and the same
    /// environment; its problems are its own (see [`Values::finish`]).
    pub fn child(&self, keep: impl Fn(&str) -> bool) -> Values<'e> {
        Values {
            raw: self
                .raw
                .iter()
                .filter(|(path, _)| keep(path))
                .map(|(path, raw)| (*path, raw.clone()))
                .collect(),
            problems: Vec::new(),
            warnings: Vec::new(),
            env: self.env,
        }
    }

    /// Records a problem.
    pub fn problem(&mut self, p: String) {
        self.problems.push(p);
    }

    /// Records a warning.
    pub fn warn(&mut self, w: String) {
        self.warnings.push(w);
    }

    /// An environment variable that is not a key of its own (`POD_NAME`, `PGHOST`, ...).
    pub fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// Whether any source set the key at `path`.
    pub fn is_set_path(&self, path: &str) -> bool {
        self.raw.contains_key(path)
    }

    /// Whether any source set `key`.
    pub fn is_set(&self, key: &Key) -> bool {
        self.raw.contains_key(key.path)
    }

    /// The value of `key` as text, or `None` when unset or wrong (a problem is recorded).
    pub fn text(&mut self, key: &Key) -> Option<String> {
        let raw = self.raw.get(key.path)?;
        match &raw.value {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) if !matches!(key.kind, Kind::Secret) => Some(n.to_string()),
            Value::Null => None,
            _ => {
                let p = format!("{} (from {}): expected a string", key.path, raw.origin);
                self.problem(p);
                None
            }
        }
    }

    /// The value of `key` as text, or its default.
    pub fn text_or_default(&mut self, key: &Key) -> String {
        self.text(key).unwrap_or_else(|| key.default.to_string())
    }

    /// Records that `key`'s value is not what was `expected`, showing the value unless
    /// the key is a secret.
    pub fn bad(&mut self, key: &Key, expected: &str) {
        let Some(raw) = self.raw.get(key.path) else {
            return self.problem(format!("{}: expected {expected}", key.path));
        };
        let shown = match (&raw.value, key.kind) {
            (_, Kind::Secret) => "<redacted>".to_string(),
            (Value::String(s), _) => format!("{s:?}"),
            (value, _) => serde_yaml::to_string(value)
                .unwrap_or_default()
                .trim()
                .to_string(),
        };
        let p = format!(
            "{} (from {}): expected {expected}, got {shown}",
            key.path, raw.origin
        );
        self.problem(p);
    }

    fn number(&mut self, key: &Key) -> Option<f64> {
        let raw = self.raw.get(key.path)?;
        let n = match &raw.value {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            Value::Null => return None,
            _ => None,
        };
        if n.is_none() {
            self.bad(key, "a number");
        }
        n
    }

    /// The value of a `Seconds` key when set (a wrong one is a problem, and `None`).
    pub fn opt_seconds(&mut self, key: &Key) -> Option<Duration> {
        match self.number(key) {
            Some(n) if n.is_finite() && n > 0.0 && n < 1e9 => Some(Duration::from_secs_f64(n)),
            Some(_) => {
                self.bad(key, "a positive number of seconds");
                None
            }
            None => None,
        }
    }

    /// The value of a `Seconds` key, or its default (one second for a key without one,
    /// which its owner replaces: such keys are read with [`Values::opt_seconds`]).
    pub fn seconds(&mut self, key: &Key) -> Duration {
        self.opt_seconds(key)
            .unwrap_or_else(|| Duration::from_secs_f64(key.default_number().unwrap_or(1.0)))
    }

    /// The value of a `Count` key, or its default.
    pub fn count(&mut self, key: &Key) -> usize {
        let default = key.default_number().unwrap_or(1.0) as usize;
        match self.number(key) {
            Some(n) if n.fract() == 0.0 && (1.0..=1e12).contains(&n) => n as usize,
            Some(_) => {
                self.bad(key, "a positive whole number");
                default
            }
            None => default,
        }
    }

    /// The word a `Choice` key is set to, or its default.
    pub fn choice(&mut self, key: &Key) -> &'static str {
        let Kind::Choice(words) = key.kind else {
            unreachable!("{} is not a choice", key.path)
        };
        let default = words
            .iter()
            .find(|w| **w == key.default)
            .copied()
            .unwrap_or(words[0]);
        match self.text(key) {
            Some(v) => match words.iter().find(|w| **w == v) {
                Some(w) => w,
                None => {
                    self.bad(key, &format!("one of {}", words.join(", ")));
                    default
                }
            },
            None => default,
        }
    }

    /// The value of an `Address` key when set (a wrong one is a problem, and `None`).
    pub fn address(&mut self, key: &Key) -> Option<SocketAddr> {
        let a = parse_address(&self.text(key)?);
        if a.is_none() {
            self.bad(key, "an address like 0.0.0.0:19187, [::]:19187 or :19187");
        }
        a
    }
}

/// Accepts `host:port`, `[v6]:port`, `:port` (all interfaces) and `localhost:port`.
pub fn parse_address(s: &str) -> Option<SocketAddr> {
    let s = s.trim();
    if let Some(port) = s.strip_prefix(':') {
        return port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::from(([0, 0, 0, 0], p)));
    }
    if let Ok(a) = s.parse() {
        return Some(a);
    }
    let (host, port) = s.rsplit_once(':')?;
    if host == "localhost" {
        return port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)));
    }
    None
}

/// Values, environments and files for the tests of the components' configurations.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::{Key, Value, Values};

    /// Values set from test code (origin `test`).
    pub fn values<'e>(
        pairs: &[(&Key, &str)],
        env: &'e dyn Fn(&str) -> Option<String>,
    ) -> Values<'e> {
        let mut v = Values::new(env);
        for (key, value) in pairs {
            v.set(key.path, Value::String(value.to_string()), "test".into());
        }
        v
    }

    /// Values set from a YAML document as a configuration file would set them (origin
    /// `test.yaml`), for the `keys` it names with their full paths (`section.key`).
    pub fn yaml<'e>(
        text: &str,
        keys: &[&'static Key],
        env: &'e dyn Fn(&str) -> Option<String>,
    ) -> Values<'e> {
        fn walk(v: &mut Values, keys: &[&'static Key], prefix: &str, doc: &Value) {
            let Value::Mapping(m) = doc else { return };
            for (name, value) in m {
                let path = match (prefix, name.as_str().expect("string keys")) {
                    ("", n) => n.to_string(),
                    (p, n) => format!("{p}.{n}"),
                };
                match keys.iter().find(|k| k.path == path) {
                    Some(k) => v.set(k.path, value.clone(), "test.yaml".into()),
                    None => walk(v, keys, &path, value),
                }
            }
        }
        let mut v = Values::new(env);
        let doc = serde_yaml::from_str(text).expect("test YAML");
        walk(&mut v, keys, "", &doc);
        v
    }

    /// An environment holding only `pairs`.
    pub fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    /// A file in the temp dir holding `text`, removed on drop.
    pub struct TempFile(pub PathBuf);

    impl TempFile {
        pub fn new(text: &str) -> TempFile {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "poolwatch-config-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::write(&p, text).expect("write temp file");
            TempFile(p)
        }

        /// The path, as configuration text.
        pub fn path(&self) -> &str {
            self.0.to_str().expect("temp paths are UTF-8")
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::values as test_values;
    use super::*;

    const SECS: Key = Key::new("s.seconds", Kind::Seconds, "60", &[]);
    const COUNT: Key = Key::new("s.count", Kind::Count, "7", &[]);
    const WORD: Key = Key::new("s.word", Kind::Choice(&["a", "b"]), "b", &[]);
    const TOKEN: Key = Key::new("s.token", Kind::Secret, "-", &[]);

    #[test]
    fn a_wrong_value_is_a_problem_naming_key_and_origin_and_the_default_stands_in() {
        let none = |_: &str| None;
        let mut v = test_values(
            &[(&SECS, "-3"), (&COUNT, "1.5"), (&WORD, "c"), (&TOKEN, "x")],
            &none,
        );
        v.set(TOKEN.path, Value::Sequence(vec![]), "file".into());
        assert_eq!(v.seconds(&SECS), Duration::from_secs(60));
        assert_eq!(v.count(&COUNT), 7);
        assert_eq!(v.choice(&WORD), "b");
        assert_eq!(v.text(&TOKEN), None);
        let (problems, _) = v.finish();
        assert_eq!(
            problems,
            [
                "s.seconds (from test): expected a positive number of seconds, got \"-3\"",
                "s.count (from test): expected a positive whole number, got \"1.5\"",
                "s.word (from test): expected one of a, b, got \"c\"",
                "s.token (from file): expected a string",
            ]
        );
    }

    #[test]
    fn unset_keys_take_their_defaults_and_set_ones_their_values() {
        let none = |_: &str| None;
        let mut v = test_values(&[(&WORD, "a")], &none);
        assert_eq!(v.seconds(&SECS), Duration::from_secs(60));
        assert_eq!(v.opt_seconds(&SECS), None);
        assert_eq!(v.count(&COUNT), 7);
        assert_eq!(v.choice(&WORD), "a");
        let mut v = test_values(&[(&SECS, "0.5"), (&COUNT, "12")], &none);
        assert_eq!(v.seconds(&SECS), Duration::from_millis(500));
        assert_eq!(v.count(&COUNT), 12);
        assert!(v.finish().0.is_empty());
    }

    #[test]
    fn secrets_never_shown() {
        let none = |_: &str| None;
        let mut v = test_values(&[(&TOKEN, "hunter2")], &none);
        v.bad(&TOKEN, "something else");
        let (problems, _) = v.finish();
        assert_eq!(
            problems,
            ["s.token (from test): expected something else, got <redacted>"]
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_address(":9").unwrap().to_string(), "0.0.0.0:9");
        assert_eq!(parse_address("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert_eq!(
            parse_address("localhost:9").unwrap().to_string(),
            "127.0.0.1:9"
        );
        assert!(parse_address("example.com:9").is_none());
    }
}
