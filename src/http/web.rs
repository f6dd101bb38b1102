//! TLS and basic authentication for both listeners, configured the way the Prometheus
//! exporter-toolkit's web configuration file does it (a subset of its keys):
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/poolwatch/tls/tls.crt   # PEM, the chain
//!   key_file: /etc/poolwatch/tls/tls.key    # PEM, PKCS#8, PKCS#1 or SEC1
//!   # Client certificates (mTLS), optional:
//!   client_ca_file: /etc/poolwatch/tls/clients-ca.crt   # PEM bundle of trusted client CAs
//!   client_auth_type: RequireAndVerifyClientCert        # or VerifyClientCertIfGiven;
//!                                                       # NoClientCert (default)
//!   # TLS versions, optional: TLS12 or TLS13 (default: both)
//!   min_version: TLS12
//!   max_version: TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...                  # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Not supported, and refused by name rather than ignored: the client auth types that
//! accept a certificate without verifying it (`RequestClientCert`,
//! `RequireAnyClientCert`), TLS 1.0 and 1.1 (rustls does not speak them),
//! `tls_server_config.cipher_suites`, `curve_preferences`, `prefer_server_cipher_suites`,
//! `client_allowed_sans`, and the top-level `http_server_config`. Any other key is an
//! unknown key.
//!
//! Owns reading and checking that file (at start: an invalid one is an invalid
//! configuration), re-reading it, and checking a request's credentials.
//!
//! # Rotation
//!
//! [`Reloader`] re-reads the file and every file it names when any of their bytes change
//! (checked every second, so Kubernetes' update of a mounted Secret, a swap of the `..data`
//! symbolic link, is seen within a second or two) and on SIGHUP (always). A new
//! configuration that checks out replaces the old one: new connections get the new
//! certificate and client CAs, every request after it the new users; connections already
//! open keep the TLS session they have. One that does not (a half-written file, a key that
//! does not fit the certificate, an unknown key) is logged with its problem and counted,
//! and the old one keeps serving: `poolwatch_web_config_reloads_total{outcome}`,
//! `poolwatch_web_config_last_reload_successful`.
//!
//! With users set, every endpoint but `/healthz` and `/readyz` needs them (probes stay
//! simple); with `http.push_token` set as well, a push may carry the token instead
//! (`Authorization: Bearer …`): both kinds of credentials arrive in the one header, so
//! each opens what it is for ([`super::authenticate`]).
//!
//! bcrypt is slow on purpose, so a credential check never runs it on the async runtime:
//! credentials that verified before are answered from a cache, and every other check
//! runs one bcrypt verification on the blocking pool, one at a time across the process
//! (as the exporter-toolkit serializes them), so a flood of wrong passwords queues up
//! behind itself instead of stalling `/metrics` and the probes. At most 16 checks wait in
//! that line; one more is answered 503 at once rather than hold a connection slot. A user name that does not
//! exist costs the same verification (against a dummy hash), so the answer's timing does
//! not tell which users exist.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;

/// The file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// TLS for the listeners.
    tls_server_config: Option<TlsFile>,
    /// User name to bcrypt hash.
    basic_auth_users: Option<BTreeMap<String, String>>,
    /// exporter-toolkit's HTTP/2 and response-header settings: refused by name.
    #[serde(default, deserialize_with = "present")]
    http_server_config: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    /// PEM certificate chain.
    cert_file: PathBuf,
    /// PEM private key.
    key_file: PathBuf,
    /// PEM bundle of the CAs that client certificates must chain to.
    client_ca_file: Option<PathBuf>,
    /// `NoClientCert`, `VerifyClientCertIfGiven` or `RequireAndVerifyClientCert`.
    client_auth_type: Option<String>,
    /// `TLS12` or `TLS13`.
    min_version: Option<String>,
    /// `TLS12` or `TLS13`.
    max_version: Option<String>,
    // exporter-toolkit keys poolwatch refuses by name (see `UNSUPPORTED_TLS`).
    #[serde(default, deserialize_with = "present")]
    cipher_suites: bool,
    #[serde(default, deserialize_with = "present")]
    curve_preferences: bool,
    #[serde(default, deserialize_with = "present")]
    prefer_server_cipher_suites: bool,
    #[serde(default, deserialize_with = "present")]
    client_allowed_sans: bool,
}

/// Whether a key is in the file, whatever its value (even null).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// The checked web configuration.
#[derive(Clone)]
pub struct WebConfig {
    /// Accepts TLS on both listeners, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Basic-auth users, when configured.
    pub users: Option<Arc<Users>>,
    /// The bytes it was built from, to tell when the files change.
    files: Files,
}

/// The web configuration file and the files it names, as read: `None` for a file that
/// could not be read.
#[derive(Clone, PartialEq, Debug)]
struct Files {
    /// The web configuration file.
    path: PathBuf,
    /// Its bytes.
    config: Option<Vec<u8>>,
    /// Each file it names (relative paths resolved), with its bytes.
    named: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl Files {
    /// Reads `path` and, as far as it parses, the files it names.
    fn read(path: &Path) -> Files {
        let config = std::fs::read(path).ok();
        let named = config
            .as_deref()
            .and_then(|b| serde_yaml::from_slice::<File>(b).ok())
            .and_then(|f| f.tls_server_config)
            .map(|t| {
                let mut t = t;
                resolve(path, &mut t);
                [Some(t.cert_file), Some(t.key_file), t.client_ca_file]
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let bytes = std::fs::read(&p).ok();
                        (p, bytes)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Files {
            path: path.to_path_buf(),
            config,
            named,
        }
    }

    /// The bytes of a named file, or why there are none.
    fn bytes(&self, key: &str, file: &Path) -> Result<&[u8], String> {
        let found = self.named.iter().find(|(p, _)| p == file);
        match found.and_then(|(_, b)| b.as_deref()) {
            Some(b) => Ok(b),
            None => Err(format!(
                "tls_server_config.{key} {}: {}",
                file.display(),
                std::fs::read(file)
                    .err()
                    .map_or("changed while it was read".into(), |e| e.to_string())
            )),
        }
    }
}

/// Relative paths in `t` are relative to the directory of the file at `path`, as in the
/// exporter-toolkit.
fn resolve(path: &Path, t: &mut TlsFile) {
    let dir = path.parent().unwrap_or(Path::new(""));
    for p in [
        Some(&mut t.cert_file),
        Some(&mut t.key_file),
        t.client_ca_file.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        if p.is_relative() {
            *p = dir.join(&*p);
        }
    }
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
    /// A hash of no one's password at the highest cost of `hashes`, verified against
    /// when the user does not exist so that takes as long as a wrong password.
    dummy: String,
    /// `Authorization` header values that verified, at most [`CACHE`] of them.
    verified: Mutex<HashSet<String>>,
    /// One bcrypt verification at a time (there is one `Users` per process): a burst of
    /// wrong passwords uses one blocking thread, not all of them, and never a runtime
    /// worker.
    bcrypt: Arc<tokio::sync::Semaphore>,
    /// Checks holding or waiting for `bcrypt`, at most [`IN_LINE`].
    waiting: Arc<AtomicUsize>,
}

/// Verified credentials kept.
const CACHE: usize = 64;

/// Credential checks waiting for bcrypt or running, at most this many; one beyond that
/// is answered [`Verdict::Busy`] at once, so a flood of wrong passwords cannot keep every
/// connection slot waiting (at cost 10, 16 checks are about a second of bcrypt).
const IN_LINE: usize = 16;

/// A place in the bcrypt line, given back when dropped.
struct InLine(Arc<AtomicUsize>);

impl InLine {
    fn join(waiting: &Arc<AtomicUsize>) -> Option<InLine> {
        if waiting.fetch_add(1, Ordering::AcqRel) >= IN_LINE {
            waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(InLine(waiting.clone()))
    }
}

impl Drop for InLine {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The outcome of a credential check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The credentials name a user and its password.
    Allowed,
    /// Missing, malformed or wrong credentials.
    Denied,
    /// Too many checks waiting for bcrypt already; try again shortly.
    Busy,
}

impl Users {
    /// Whether an `Authorization` header value names a user with the right password.
    /// A header that verified before answers at once; any other waits its turn for the
    /// one bcrypt verification allowed at a time, run on the blocking pool, unless
    /// [`IN_LINE`] checks are waiting already ([`Verdict::Busy`]).
    pub async fn check(&self, authorization: Option<&str>) -> Verdict {
        let Some(header) = authorization else {
            return Verdict::Denied;
        };
        if self.verified.lock().is_ok_and(|v| v.contains(header)) {
            return Verdict::Allowed;
        }
        let Some((user, password)) = parse_basic(header) else {
            return Verdict::Denied;
        };
        let (hash, known) = match self.hashes.get(&user) {
            Some(h) => (h.clone(), true),
            None => (self.dummy.clone(), false),
        };
        let Some(place) = InLine::join(&self.waiting) else {
            return Verdict::Busy;
        };
        // The semaphore is never closed, so acquiring fails only in theory.
        let Ok(permit) = self.bcrypt.clone().acquire_owned().await else {
            return Verdict::Denied;
        };
        // The permit and the place move into the blocking task: should this request be
        // dropped while waiting (client gone), the verification still holds them until
        // it ends.
        let verified = tokio::task::spawn_blocking(move || {
            let _held = (permit, place);
            bcrypt::verify(password, &hash).unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        if !(verified && known) {
            return Verdict::Denied;
        }
        if let Ok(mut v) = self.verified.lock() {
            if v.len() >= CACHE {
                v.clear();
            }
            v.insert(header.to_string());
        }
        Verdict::Allowed
    }
}

/// Standard base64, with or without padding, taking bits past the last whole byte.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Splits an `Authorization: Basic …` header value (RFC 7617) into user and password:
/// the scheme in any case, standard base64 (padding optional), UTF-8, and the user ending
/// at the first `:` (the password may hold more). `None` for anything else.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    let encoded = super::credentials(header, "basic")?.trim();
    let decoded = BASE64.decode(encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// Reads and checks the web configuration file; every problem is returned as one line
/// (several joined by `; `).
pub fn load(path: &Path) -> Result<WebConfig, String> {
    build(Files::read(path))
}

/// Checks the files as read and builds the configuration from them.
fn build(files: Files) -> Result<WebConfig, String> {
    let path = files.path.as_path();
    let bytes = files.config.as_deref().ok_or_else(|| {
        let e = std::fs::read(path)
            .err()
            .map_or("changed while it was read".into(), |e| e.to_string());
        format!("cannot read {}: {e}", path.display())
    })?;
    let text =
        std::str::from_utf8(bytes).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let file: File = serde_yaml::from_str(text).map_err(|e| format!("{}: {e}", path.display()))?;
    if file.http_server_config {
        return Err(format!(
            "http_server_config is not supported by poolwatch (it serves HTTP/1.1 only and sets no custom headers); remove it{}",
            in_file(path)
        ));
    }
    let tls = match file.tls_server_config {
        Some(mut t) => {
            resolve(path, &mut t);
            Some(acceptor(&t, &files).map_err(|p| format!("{}{}", p.join("; "), in_file(path)))?)
        }
        None => None,
    };
    let users = match file.basic_auth_users {
        Some(hashes) if hashes.is_empty() => return Err("basic_auth_users is empty".into()),
        Some(hashes) => Some(Arc::new(users(hashes)?)),
        None => None,
    };
    Ok(WebConfig { tls, users, files })
}

/// How often the files are compared with what was last read.
const POLL: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps the web configuration in force up to date: re-reads it when its files change and
/// on SIGHUP, publishes each one that checks out, keeps the old one otherwise.
pub struct Reloader {
    /// Publishes the configuration in force.
    tx: tokio::sync::watch::Sender<Arc<WebConfig>>,
    /// The files as last read, whether that read became the configuration or not: the
    /// same bad files are not retried every second, only after a change or on SIGHUP.
    seen: Files,
    /// `poolwatch_web_config_reloads_total{outcome}`,
    /// `poolwatch_web_config_last_reload_successful`.
    outcomes: crate::reload::Outcomes,
    /// `poolwatch_web_config_last_reload_success_timestamp_seconds`.
    last_success: prometheus::Gauge,
}

impl Reloader {
    /// The reloader of `initial` (as loaded at start), its metrics registered, and the
    /// channel the listeners read the configuration in force from.
    pub fn register(
        registry: &prometheus::Registry,
        initial: WebConfig,
    ) -> prometheus::Result<(Reloader, tokio::sync::watch::Receiver<Arc<WebConfig>>)> {
        let outcomes = crate::reload::Outcomes::register(
            registry,
            "poolwatch_web_config",
            "Re-reads of web_config_file (its files changed, or SIGHUP), by outcome: success (now in force) or failure (logged; the previous configuration keeps serving).",
            "1 when the last read of web_config_file is the configuration in force, 0 when it failed and an older one serves.",
        )?;
        let last_success = prometheus::Gauge::new(
            "poolwatch_web_config_last_reload_success_timestamp_seconds",
            "When the web configuration in force was read (at start or by the last successful reload), Unix seconds.",
        )?;
        last_success.set(crate::unix_now());
        registry.register(Box::new(last_success.clone()))?;
        let seen = initial.files.clone();
        let (tx, rx) = tokio::sync::watch::channel(Arc::new(initial));
        let reloader = Reloader {
            tx,
            seen,
            outcomes,
            last_success,
        };
        Ok((reloader, rx))
    }

    /// Watches until `cancel` fires.
    pub async fn run(mut self, cancel: tokio_util::sync::CancellationToken) {
        let mut triggers = crate::reload::Triggers::new(POLL, "the web configuration");
        while let Some(forced) = triggers.next(&cancel).await {
            let path = self.seen.path.clone();
            // Reading a few small files, and bcrypt's check of each user on a change, are
            // kept off the runtime's threads.
            let seen = self.seen.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                let files = Files::read(&path);
                if !forced && files == seen {
                    return None;
                }
                Some((files.clone(), build(files)))
            })
            .await;
            match outcome {
                Ok(None) => {}
                Ok(Some((files, built))) => self.apply(files, built, forced),
                Err(e) => tracing::error!(error = %e, "re-reading the web configuration failed"),
            }
        }
    }

    /// Puts a configuration that checks out in force; logs and counts one that does not.
    fn apply(&mut self, files: Files, built: Result<WebConfig, String>, forced: bool) {
        let trigger = if forced { "SIGHUP" } else { "files changed" };
        self.seen = files;
        match built {
            Ok(web) => {
                self.tx.send_replace(Arc::new(web));
                self.outcomes.succeeded();
                self.last_success.set(crate::unix_now());
                tracing::info!(file = %self.seen.path.display(), trigger, "web configuration reloaded");
            }
            Err(problem) => {
                self.outcomes.failed();
                tracing::error!(file = %self.seen.path.display(), trigger, %problem, "web configuration not reloaded; the previous one keeps serving");
            }
        }
    }
}

fn in_file(path: &Path) -> String {
    format!(" (in {})", path.display())
}

fn users(hashes: BTreeMap<String, String>) -> Result<Users, String> {
    let mut cost = 0;
    for (user, hash) in &hashes {
        if user.contains(':') {
            return Err(format!(
                "basic_auth_users.{user}: a user name cannot hold ':'"
            ));
        }
        // Verifying catches a cost out of range too, which parsing alone does not.
        if bcrypt::verify("", hash).is_err() {
            return Err(format!("basic_auth_users.{user}: not a bcrypt hash"));
        }
        if let Ok(parts) = hash.parse::<bcrypt::HashParts>() {
            cost = cost.max(parts.get_cost());
        }
    }
    let dummy = bcrypt::hash("poolwatch: no such user", cost)
        .map_err(|e| format!("basic_auth_users: cannot make the dummy hash: {e}"))?;
    Ok(Users {
        hashes,
        dummy,
        verified: Mutex::new(HashSet::new()),
        bcrypt: Arc::new(tokio::sync::Semaphore::new(1)),
        waiting: Arc::new(AtomicUsize::new(0)),
    })
}

/// `client_auth_type`, as far as poolwatch supports it.
#[derive(Clone, Copy, PartialEq, Debug)]
enum ClientAuth {
    None,
    VerifyIfGiven,
    RequireAndVerify,
}

/// The keys of `tls_server_config` that the exporter-toolkit has and poolwatch refuses,
/// with why.
const UNSUPPORTED_TLS: [(&str, &str); 4] = [
    (
        "cipher_suites",
        "rustls offers only modern AEAD suites, in its own order",
    ),
    (
        "curve_preferences",
        "rustls chooses the key exchange groups",
    ),
    (
        "prefer_server_cipher_suites",
        "rustls always chooses by its own order",
    ),
    (
        "client_allowed_sans",
        "client certificates are checked against client_ca_file only",
    ),
];

/// What the TLS keys other than the files say, or every problem with them.
struct TlsChoice {
    client_auth: ClientAuth,
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
}

fn choose(t: &TlsFile) -> Result<TlsChoice, Vec<String>> {
    let mut problems = Vec::new();
    let refused = [
        t.cipher_suites,
        t.curve_preferences,
        t.prefer_server_cipher_suites,
        t.client_allowed_sans,
    ];
    for ((key, why), set) in UNSUPPORTED_TLS.iter().zip(refused) {
        if set {
            problems.push(format!(
                "tls_server_config.{key} is not supported by poolwatch ({why}); remove it"
            ));
        }
    }
    let client_auth = match t.client_auth_type.as_deref() {
        None | Some("" | "NoClientCert") => Some(ClientAuth::None),
        Some("VerifyClientCertIfGiven") => Some(ClientAuth::VerifyIfGiven),
        Some("RequireAndVerifyClientCert") => Some(ClientAuth::RequireAndVerify),
        Some(other @ ("RequestClientCert" | "RequireAnyClientCert")) => {
            let instead = if other == "RequestClientCert" {
                "VerifyClientCertIfGiven"
            } else {
                "RequireAndVerifyClientCert"
            };
            problems.push(format!(
                "tls_server_config.client_auth_type {other} is not supported by poolwatch (it accepts client certificates without verifying them); use {instead} with tls_server_config.client_ca_file"
            ));
            None
        }
        Some(other) => {
            problems.push(format!(
                "tls_server_config.client_auth_type: expected one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert, got {other:?}"
            ));
            None
        }
    };
    match (client_auth, &t.client_ca_file) {
        (Some(ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify), None) => {
            problems.push(format!(
                "tls_server_config.client_auth_type {} verifies client certificates, so it needs tls_server_config.client_ca_file",
                t.client_auth_type.as_deref().unwrap_or_default()
            ));
        }
        (Some(ClientAuth::None), Some(_)) => problems.push(
            "tls_server_config.client_ca_file is set but tls_server_config.client_auth_type is NoClientCert (the default): set client_auth_type to VerifyClientCertIfGiven or RequireAndVerifyClientCert, or remove client_ca_file".into(),
        ),
        _ => {}
    }
    let min = version("min_version", t.min_version.as_deref(), &mut problems);
    let max = version("max_version", t.max_version.as_deref(), &mut problems);
    let versions = match (min, max) {
        (Some(min), Some(max)) if min > max => {
            problems.push(format!(
                "tls_server_config.min_version {} is above tls_server_config.max_version {}",
                min.name(),
                max.name()
            ));
            Vec::new()
        }
        (Some(min), Some(max)) => [Version::Tls12, Version::Tls13]
            .into_iter()
            .filter(|v| (min..=max).contains(v))
            .map(Version::rustls)
            .collect(),
        _ => Vec::new(),
    };
    match client_auth {
        Some(client_auth) if problems.is_empty() => Ok(TlsChoice {
            client_auth,
            versions,
        }),
        _ => Err(problems),
    }
}

/// A TLS version poolwatch speaks, in order.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Version {
    Tls12,
    Tls13,
}

impl Version {
    fn name(self) -> &'static str {
        match self {
            Version::Tls12 => "TLS12",
            Version::Tls13 => "TLS13",
        }
    }

    fn rustls(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            Version::Tls12 => &rustls::version::TLS12,
            Version::Tls13 => &rustls::version::TLS13,
        }
    }
}

/// `min_version` or `max_version` (`key`); unset is the widest. `None` after recording a
/// problem.
fn version(key: &str, value: Option<&str>, problems: &mut Vec<String>) -> Option<Version> {
    match value {
        None if key == "min_version" => Some(Version::Tls12),
        None => Some(Version::Tls13),
        Some("TLS12") => Some(Version::Tls12),
        Some("TLS13") => Some(Version::Tls13),
        Some(old @ ("TLS10" | "TLS11")) => {
            problems.push(format!(
                "tls_server_config.{key} {old} is not supported by poolwatch (rustls speaks TLS 1.2 and 1.3 only); use TLS12 or TLS13"
            ));
            None
        }
        Some(other) => {
            problems.push(format!(
                "tls_server_config.{key}: expected TLS12 or TLS13, got {other:?}"
            ));
            None
        }
    }
}

/// Every PEM certificate in `file`, at least one; `key` names it in problems.
fn pem_certs(
    key: &str,
    file: &Path,
    files: &Files,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(files.bytes(key, file)?)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("tls_server_config.{key} {}: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config.{key} {}: no certificate in it",
            file.display()
        ));
    }
    Ok(certs)
}

fn acceptor(t: &TlsFile, files: &Files) -> Result<tokio_rustls::TlsAcceptor, Vec<String>> {
    let choice = choose(t)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = pem_certs("cert_file", &t.cert_file, files);
    let key = files.bytes("key_file", &t.key_file).and_then(|b| {
        PrivateKeyDer::from_pem_slice(b)
            .map_err(|e| format!("tls_server_config.key_file {}: {e}", t.key_file.display()))
    });
    let verifier = match (&t.client_ca_file, choice.client_auth) {
        (Some(ca_file), ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify) => {
            client_verifier(ca_file, choice.client_auth, &provider, files)
        }
        _ => Ok(WebPkiClientVerifier::no_client_auth()),
    };
    let (certs, key, verifier) = match (certs, key, verifier) {
        (Ok(c), Ok(k), Ok(v)) => (c, k, v),
        (c, k, v) => {
            return Err([c.err(), k.err(), v.err()].into_iter().flatten().collect());
        }
    };
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&choice.versions)
        .map_err(|e| vec![format!("tls_server_config: {e}")])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            vec![format!(
                "tls_server_config: the key does not fit the certificate: {e}"
            )]
        })?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

fn client_verifier(
    ca_file: &Path,
    client_auth: ClientAuth,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    files: &Files,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, String> {
    let problem = |e: &dyn std::fmt::Display| {
        format!(
            "tls_server_config.client_ca_file {}: {e}",
            ca_file.display()
        )
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in pem_certs("client_ca_file", ca_file, files)? {
        roots.add(cert).map_err(|e| problem(&e))?;
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if client_auth == ClientAuth::VerifyIfGiven {
        builder = builder.allow_unauthenticated();
    }
    builder.build().map_err(|e| problem(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard base64 with padding.
    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn pair(user: &str, password: &str) -> Option<(String, String)> {
        Some((user.to_string(), password.to_string()))
    }

    #[test]
    fn parse_basic_takes_rfc_7617_credentials_only() {
        let valid = format!("Basic {}", b64(b"prometheus:s3cret"));
        assert_eq!(parse_basic(&valid), pair("prometheus", "s3cret"));
        // The scheme in any case, padding optional, surrounding blanks ignored.
        let lower = format!("basic  {} ", b64(b"prometheus:s3cret"));
        assert_eq!(parse_basic(&lower), pair("prometheus", "s3cret"));
        let unpadded = format!("Basic {}", b64(b"a:b").trim_end_matches('='));
        assert_eq!(parse_basic(&unpadded), pair("a", "b"));
        // Only the first ':' separates: the password may hold more.
        let colons = format!("Basic {}", b64(b"bob:pa:ss:"));
        assert_eq!(parse_basic(&colons), pair("bob", "pa:ss:"));
        // Empty user and password are well-formed (and then fail the lookup).
        assert_eq!(parse_basic(&format!("Basic {}", b64(b":"))), pair("", ""));
        // Non-ASCII UTF-8 is fine.
        let utf8 = format!("Basic {}", b64("zoë:pässwörd".as_bytes()));
        assert_eq!(parse_basic(&utf8), pair("zoë", "pässwörd"));
        // Standard alphabet: '+' and '/' come through.
        let std_alpha = format!("Basic {}", b64(b"u:\xfb\xff?>"));
        assert!(std_alpha.contains(['+', '/']), "{std_alpha}");
        assert_eq!(parse_basic(&std_alpha), None, "not UTF-8");
        let plus = format!("Basic {}", b64(b"u:>>>"));
        assert!(plus.contains('+'), "{plus}");
        assert_eq!(parse_basic(&plus), pair("u", ">>>"));

        for bad in [
            // missing scheme, or another one
            b64(b"prometheus:s3cret"),
            format!("Bearer {}", b64(b"prometheus:s3cret")),
            format!("Basic{}", b64(b"prometheus:s3cret")),
            "Basic".to_string(),
            "Basic ".to_string(),
            // bad base64
            "Basic !!!".to_string(),
            "Basic abcde".to_string(),
            "Basic YWI=YQ==".to_string(),
            "Basic YT-6Yg".to_string(),
            "Basic YT_6Yg".to_string(),
            // no colon
            format!("Basic {}", b64(b"prometheus")),
            // not UTF-8
            format!("Basic {}", b64(b"user:\xff\xfe")),
            format!("Basic {}", b64(b"\xc3:pw")),
        ] {
            assert_eq!(parse_basic(&bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn check_verifies_caches_and_refuses_unknown_users() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let users = users(BTreeMap::from([("alice".to_string(), hash)])).unwrap();
        assert!(users.dummy.starts_with("$2b$04$"), "{}", users.dummy);
        let good = format!("Basic {}", b64(b"alice:right"));
        let denied = [
            None,
            Some("Basic !!!".to_string()),
            Some(format!("Basic {}", b64(b"alice:wrong"))),
            Some(format!("Basic {}", b64(b"bob:right"))),
            // The dummy hash's password does not open an unknown user either.
            Some(format!("Basic {}", b64(b"bob:poolwatch: no such user"))),
        ];
        for header in &denied {
            assert_eq!(
                users.check(header.as_deref()).await,
                Verdict::Denied,
                "{header:?}"
            );
        }
        assert!(users.verified.lock().unwrap().is_empty());
        assert_eq!(users.check(Some(&good)).await, Verdict::Allowed);
        assert!(users.verified.lock().unwrap().contains(&good));
        assert_eq!(users.check(Some(&good)).await, Verdict::Allowed);
    }

    #[tokio::test]
    async fn a_full_bcrypt_line_answers_busy_at_once_and_cached_credentials_still_pass() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let users = Arc::new(users(BTreeMap::from([("alice".to_string(), hash)])).unwrap());
        let good = format!("Basic {}", b64(b"alice:right"));
        assert_eq!(users.check(Some(&good)).await, Verdict::Allowed);
        // Hold the bcrypt slot, then fill the line with wrong passwords.
        let held = users.bcrypt.clone().acquire_owned().await.unwrap();
        let wrong = format!("Basic {}", b64(b"alice:wrong"));
        let mut line = Vec::new();
        for _ in 0..IN_LINE {
            let (u, w) = (users.clone(), wrong.clone());
            line.push(tokio::spawn(async move { u.check(Some(&w)).await }));
        }
        while users.waiting.load(Ordering::Acquire) < IN_LINE {
            tokio::task::yield_now().await;
        }
        assert_eq!(users.check(Some(&wrong)).await, Verdict::Busy);
        // Any credentials not in the cache need bcrypt, so they are busy as well...
        let other = format!("Basic {}", b64(b"bob:right"));
        assert_eq!(users.check(Some(&other)).await, Verdict::Busy);
        // ...but cached credentials do not need bcrypt.
        assert_eq!(users.check(Some(&good)).await, Verdict::Allowed);
        drop(held);
        for t in line {
            assert_eq!(t.await.unwrap(), Verdict::Denied);
        }
        assert_eq!(users.waiting.load(Ordering::Acquire), 0);
        assert_eq!(users.check(Some(&wrong)).await, Verdict::Denied);
    }

    #[test]
    fn the_dummy_hash_costs_as_much_as_the_dearest_user() {
        let users = users(BTreeMap::from([
            ("a".to_string(), bcrypt::hash("x", 4).unwrap()),
            ("b".to_string(), bcrypt::hash("y", 5).unwrap()),
        ]))
        .unwrap();
        assert!(users.dummy.starts_with("$2b$05$"), "{}", users.dummy);
    }
}
