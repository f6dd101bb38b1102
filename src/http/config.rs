//! The server's configuration: the `http` section (limits, the push token) and
//! `web_config_file` (TLS and basic auth, read by [`super::web`]).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::web::{self, WebConfig};
use crate::keys::{Key, Kind, Values};

/// HTTP server limits and the push token.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Time allowed to receive a request's headers and its body, for an idle keep-alive
    /// connection to send its next request, and for a stalled response write.
    pub request_timeout: Duration,
    /// Open connections per listener; at the cap, new ones wait in the kernel's backlog.
    pub max_connections: usize,
    /// Bearer token every push must carry, when set.
    pub push_token: Option<Secret>,
}

/// A secret value: shown as `<redacted>` by `Debug`, compared in constant time.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Whether `candidate` equals the secret, in time independent of where they differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let a = self.0.as_bytes();
        let mut diff = a.len() ^ candidate.len();
        for (i, b) in a.iter().enumerate() {
            diff |= usize::from(b ^ candidate.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }

    /// The secret itself, to send it (never to log it).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

const MAX_BODY_BYTES: Key = Key::new(
    "http.max_body_bytes",
    Kind::Count,
    "1048576",
    &["POOLWATCH_HTTP_MAX_BODY_BYTES"],
);
const REQUEST_TIMEOUT: Key = Key::new(
    "http.request_timeout_seconds",
    Kind::Seconds,
    "10",
    &["POOLWATCH_HTTP_REQUEST_TIMEOUT_SECONDS"],
);
const MAX_CONNECTIONS: Key = Key::new(
    "http.max_connections",
    Kind::Count,
    "512",
    &["POOLWATCH_HTTP_MAX_CONNECTIONS"],
);
const PUSH_TOKEN: Key = Key::new(
    "http.push_token",
    Kind::Secret,
    "-",
    &["POOLWATCH_HTTP_PUSH_TOKEN"],
);
const PUSH_TOKEN_FILE: Key = Key::new(
    "http.push_token_file",
    Kind::Path,
    "-",
    &["POOLWATCH_HTTP_PUSH_TOKEN_FILE"],
);
const WEB_CONFIG_FILE: Key = Key::new(
    "web_config_file",
    Kind::Path,
    "-",
    &["POOLWATCH_WEB_CONFIG_FILE"],
)
.flag(
    "--web-config-file",
    "FILE",
    "TLS and basic-auth file in the exporter-toolkit format (docs/security.md)",
);

impl HttpConfig {
    /// The keys of the `http` section, and `web_config_file`.
    pub const KEYS: &[Key] = &[
        WEB_CONFIG_FILE,
        MAX_BODY_BYTES,
        REQUEST_TIMEOUT,
        MAX_CONNECTIONS,
        PUSH_TOKEN,
        PUSH_TOKEN_FILE,
    ];

    /// Reads the `http` section.
    pub fn from_values(v: &mut Values) -> HttpConfig {
        HttpConfig {
            max_body_bytes: v.count(&MAX_BODY_BYTES),
            request_timeout: v.seconds(&REQUEST_TIMEOUT),
            max_connections: v.count(&MAX_CONNECTIONS),
            push_token: token(v, &PUSH_TOKEN, &PUSH_TOKEN_FILE),
        }
    }

    /// Reads and checks `web_config_file`, when set.
    pub fn web_from_values(v: &mut Values) -> Option<WebConfig> {
        let file = v.text(&WEB_CONFIG_FILE).filter(|f| !f.is_empty())?;
        match web::load(Path::new(&file)) {
            Ok(w) => Some(w),
            Err(e) => {
                v.problem(format!("web_config_file: {e}"));
                None
            }
        }
    }
}

/// A bearer token from `inline` or from the file `file` names (one of them): at least 16
/// printable characters without spaces. Problems name the keys, never the token.
pub(crate) fn token(v: &mut Values, inline: &Key, file: &Key) -> Option<Secret> {
    let given = v.text(inline).filter(|t| !t.is_empty());
    let path = v.text(file).filter(|t| !t.is_empty());
    let token = match (given, path) {
        (Some(_), Some(_)) => {
            v.problem(format!(
                "{} and {} are both set; set one",
                inline.path, file.path
            ));
            return None;
        }
        (Some(t), None) => t,
        (None, Some(f)) => match std::fs::read_to_string(&f) {
            Ok(t) => t.trim().to_string(),
            Err(e) => {
                v.problem(format!("{}: cannot read {f}: {e}", file.path));
                return None;
            }
        },
        (None, None) => return None,
    };
    if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        v.problem(format!(
            "{}: at least 16 printable characters without spaces",
            inline.path
        ));
        return None;
    }
    Some(Secret(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testing::{values as test_values, TempFile};

    #[test]
    fn push_token_from_environment_or_file_never_shown() {
        let none = |_: &str| None;
        let mut v = test_values(&[(&PUSH_TOKEN, "s3cret-token-0123456789")], &none);
        let c = HttpConfig::from_values(&mut v);
        let t = c.push_token.clone().expect("token");
        assert!(t.matches(b"s3cret-token-0123456789"));
        assert!(!t.matches(b"s3cret-token-012345678"));
        assert!(!t.matches(b"s3cret-token-0123456789x"));
        assert!(!format!("{c:?}").contains("s3cret"), "redacted in Debug");

        let f = TempFile::new("file-token-abcdefghijkl\n");
        let mut v = test_values(&[(&PUSH_TOKEN_FILE, f.path())], &none);
        let token = HttpConfig::from_values(&mut v).push_token;
        assert!(token.unwrap().matches(b"file-token-abcdefghijkl"));

        for (pairs, needle) in [
            (&[(&PUSH_TOKEN, "short")][..], "at least 16"),
            (
                &[
                    (&PUSH_TOKEN, "s3cret-token-0123456789"),
                    (&PUSH_TOKEN_FILE, "/x"),
                ],
                "both set",
            ),
            (&[(&PUSH_TOKEN_FILE, "/nonexistent/token")], "cannot read"),
        ] {
            let mut v = test_values(pairs, &none);
            assert!(HttpConfig::from_values(&mut v).push_token.is_none());
            let problems = v.finish().0.join("\n");
            assert!(problems.contains(needle), "{problems}");
            assert!(!problems.contains("short\"") && !problems.contains("s3cret"));
        }
    }
}
