//! The `forward` section: where a sidecar forwards its pool snapshots, with which token,
//! trusting which CA, and how long one forward may take.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::http::config::{token, Secret};
use crate::keys::{Key, Kind, Values};
use crate::sampler::connect::load_roots;
use crate::Mode;

/// Where and how a sidecar forwards its pools to the central poolwatch of its database.
#[derive(Clone, Debug)]
pub struct ForwardConfig {
    /// `http` or `https`.
    pub tls: bool,
    /// Host name or IP address of the central instance (no brackets around IPv6).
    pub host: String,
    /// Its port (default 80 or 443 by scheme).
    pub port: u16,
    /// The request path: the URL's path, then `/api/v1/forward`.
    pub path: String,
    /// The URL as given, for logs.
    pub url: String,
    /// Sent as `Authorization: Bearer`; the central's `http.push_token`.
    pub token: Option<Secret>,
    /// The CAs that verify the central's certificate (https only).
    pub roots: Option<Arc<rustls::RootCertStore>>,
    /// How long one forward (connect, TLS, request and answer) may take.
    pub timeout: Duration,
}

const URL: Key = Key::new("forward.url", Kind::Text, "-", &["POOLWATCH_FORWARD_URL"]).flag(
    "--forward-url",
    "URL",
    "Sidecar mode: forward pool snapshots to this central poolwatch, e.g. http://orders-db-poolwatch.monitoring.svc:19187",
);
const TOKEN: Key = Key::new(
    "forward.token",
    Kind::Secret,
    "-",
    &["POOLWATCH_FORWARD_TOKEN"],
);
const TOKEN_FILE: Key = Key::new(
    "forward.token_file",
    Kind::Path,
    "-",
    &["POOLWATCH_FORWARD_TOKEN_FILE"],
);
const CA_FILE: Key = Key::new(
    "forward.ca_file",
    Kind::Path,
    "/etc/ssl/certs/ca-certificates.crt",
    &["POOLWATCH_FORWARD_CA_FILE"],
);
const TIMEOUT: Key = Key::new(
    "forward.timeout_seconds",
    Kind::Seconds,
    "5",
    &["POOLWATCH_FORWARD_TIMEOUT_SECONDS"],
);

impl ForwardConfig {
    /// The keys of the `forward` section.
    pub const KEYS: &[Key] = &[URL, TOKEN, TOKEN_FILE, CA_FILE, TIMEOUT];

    /// Reads the `forward` section; `None` when `forward.url` is not set.
    pub fn from_values(v: &mut Values, mode: Mode) -> Option<ForwardConfig> {
        let token = token(v, &TOKEN, &TOKEN_FILE);
        let timeout = v.seconds(&TIMEOUT);
        let explicit_ca = v.is_set(&CA_FILE);
        let ca_file = PathBuf::from(v.text_or_default(&CA_FILE));
        let url = v.text(&URL).filter(|u| !u.trim().is_empty())?;
        if mode != Mode::Sidecar {
            v.problem(
                "forward.url: forwarding is for sidecar mode (mode: sidecar); a central instance receives forwards on /api/v1/forward".into(),
            );
            return None;
        }
        let Some((tls, host, port, path)) = parse_url(url.trim()) else {
            v.bad(
                &URL,
                "an http:// or https:// URL of the central poolwatch, e.g. http://orders-db-poolwatch.monitoring.svc:19187",
            );
            return None;
        };
        let roots = if tls {
            match load_roots(&ca_file) {
                Ok(r) => Some(Arc::new(r)),
                Err(e) => {
                    v.problem(format!("forward.ca_file: {e}"));
                    return None;
                }
            }
        } else {
            if explicit_ca {
                v.warn(
                    "forward.ca_file is set but forward.url is http://: the CA is not used".into(),
                );
            }
            None
        };
        Some(ForwardConfig {
            tls,
            host,
            port,
            path,
            url: url.trim().to_string(),
            token,
            roots,
            timeout,
        })
    }
}

/// Splits `http[s]://host[:port][/prefix]` into (tls, host, port, request path); `None`
/// for anything else (another scheme, user info, a query, no host).
fn parse_url(url: &str) -> Option<(bool, String, u16, String)> {
    let uri: hyper::Uri = url.parse().ok()?;
    let tls = match uri.scheme_str()? {
        "http" => false,
        "https" => true,
        _ => return None,
    };
    let authority = uri.authority()?;
    if authority.as_str().contains('@') || uri.query().is_some() {
        return None;
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let path = format!("{}/api/v1/forward", uri.path().trim_end_matches('/'));
    Some((tls, host.to_string(), port, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testing::values as test_values;

    fn read(pairs: &[(&Key, &str)], mode: Mode) -> (Option<ForwardConfig>, Vec<String>) {
        let none = |_: &str| None;
        let mut v = test_values(pairs, &none);
        let c = ForwardConfig::from_values(&mut v, mode);
        (c, v.finish().0)
    }

    #[test]
    fn urls_and_their_problems() {
        let (c, p) = read(&[], Mode::Sidecar);
        assert!(c.is_none() && p.is_empty(), "off unless forward.url is set");
        for (url, host, port, path) in [
            ("http://central:19187", "central", 19187, "/api/v1/forward"),
            ("http://central:19187/", "central", 19187, "/api/v1/forward"),
            ("http://[::1]:8080/pw/", "::1", 8080, "/pw/api/v1/forward"),
            ("http://10.0.0.1", "10.0.0.1", 80, "/api/v1/forward"),
        ] {
            let (c, p) = read(&[(&URL, url)], Mode::Sidecar);
            let c = c.unwrap_or_else(|| panic!("{url}: {p:?}"));
            assert_eq!(
                (c.host.as_str(), c.port, c.path.as_str(), c.tls),
                (host, port, path, false)
            );
            assert_eq!(c.timeout, Duration::from_secs(5));
        }
        for (pairs, mode, needle) in [
            (
                &[(&URL, "ftp://central")][..],
                Mode::Sidecar,
                "an http:// or https:// URL",
            ),
            (
                &[(&URL, "central:19187")][..],
                Mode::Sidecar,
                "an http:// or https:// URL",
            ),
            (
                &[(&URL, "http://u:p@central")][..],
                Mode::Sidecar,
                "an http:// or https:// URL",
            ),
            (
                &[(&URL, "http://central")][..],
                Mode::Central,
                "sidecar mode",
            ),
            (
                &[(&URL, "https://central"), (&CA_FILE, "/nonexistent/ca.pem")][..],
                Mode::Sidecar,
                "forward.ca_file: cannot read /nonexistent/ca.pem",
            ),
            (
                &[(&URL, "http://central"), (&TOKEN, "short")][..],
                Mode::Sidecar,
                "forward.token: at least 16",
            ),
        ] {
            let (_, p) = read(pairs, mode);
            assert!(p.join("\n").contains(needle), "{needle}: {p:?}");
        }
    }
}
