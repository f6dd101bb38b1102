//! TLS and basic authentication for both listeners, configured the way the Prometheus
//! exporter-toolkit's web configuration file does it (a subset of its keys):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/poolwatch/tls/tls.crt   # PEM, the chain
//!   key_file: /etc/poolwatch/tls/tls.key    # PEM, PKCS#8, PKCS#1 or SEC1
//! basic_auth_users:
//!   prometheus: $2y$10$...                  # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Owns reading and checking that file (at start: an invalid one is an invalid
//! configuration) and checking a request's credentials. With users set, every endpoint
//! but `/healthz` and `/readyz` needs them (probes stay simple); pushes may in addition
//! need `http.push_token`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// TLS for the listeners.
    tls_server_config: Option<TlsFile>,
    /// User name to bcrypt hash.
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    /// PEM certificate chain.
    cert_file: PathBuf,
    /// PEM private key.
    key_file: PathBuf,
}

/// The checked web configuration.
#[derive(Clone)]
pub struct WebConfig {
    /// Accepts TLS on both listeners, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Basic-auth users, when configured.
    pub users: Option<Arc<Users>>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field(
                "users",
                &self
                    .users
                    .as_ref()
                    .map(|u| u.hashes.keys().cloned().collect::<Vec<_>>()),
            )
            .finish()
    }
}

/// Basic-auth users and the credentials already verified (bcrypt is slow on purpose; a
/// scrape every few seconds should not pay it each time).
pub struct Users {
    /// User name to bcrypt hash.
    hashes: BTreeMap<String, String>,
    /// `Authorization` header values that verified, at most [`CACHE`] of them.
    verified: Mutex<HashSet<String>>,
}

/// Verified credentials kept.
const CACHE: usize = 64;

impl Users {
    /// Whether an `Authorization` header value names a user with the right password.
    pub fn check(&self, authorization: Option<&str>) -> bool {
        let Some(header) = authorization else {
            return false;
        };
        let lock =
            |m: &Mutex<HashSet<String>>| m.lock().map(|g| g.contains(header)).unwrap_or(false);
        if lock(&self.verified) {
            return true;
        }
        let Some(encoded) = header.strip_prefix("Basic ") else {
            return false;
        };
        // Standard base64, decoded by the URL-safe decoder after swapping the two letters
        // that differ.
        let url_safe = encoded.trim().replace('+', "-").replace('/', "_");
        let Ok(decoded) = crate::ingest::pushgateway::path::decode_base64url(&url_safe) else {
            return false;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, password)) = text.split_once(':') else {
            return false;
        };
        let Some(hash) = self.hashes.get(user) else {
            return false;
        };
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= CACHE {
                    v.clear();
                }
                v.insert(header.to_string());
            }
        }
        ok
    }
}

/// Reads and checks the web configuration file; every problem is returned as one line.
pub fn load(path: &Path) -> Result<WebConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: File = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let tls = match file.tls_server_config {
        Some(t) => Some(acceptor(&t)?),
        None => None,
    };
    let users = match file.basic_auth_users {
        Some(hashes) if hashes.is_empty() => return Err("basic_auth_users is empty".into()),
        Some(hashes) => {
            for (user, hash) in &hashes {
                if bcrypt::verify("", hash).is_err() {
                    return Err(format!("basic_auth_users.{user}: not a bcrypt hash"));
                }
                if user.contains(':') {
                    return Err(format!(
                        "basic_auth_users.{user}: a user name cannot hold ':'"
                    ));
                }
            }
            Some(Arc::new(Users {
                hashes,
                verified: Mutex::new(HashSet::new()),
            }))
        }
        None => None,
    };
    Ok(WebConfig { tls, users })
}

fn acceptor(t: &TlsFile) -> Result<tokio_rustls::TlsAcceptor, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&t.cert_file)
        .map_err(|e| format!("tls_server_config.cert_file {}: {e}", t.cert_file.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("tls_server_config.cert_file {}: {e}", t.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config.cert_file {}: no certificate in it",
            t.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&t.key_file)
        .map_err(|e| format!("tls_server_config.key_file {}: {e}", t.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls_server_config: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls_server_config: the key does not fit the certificate: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
