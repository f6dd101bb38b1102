//! The client subcommands, for a shell in poolwatch's own container (the image is
//! `FROM scratch`: no curl, no jq): `poolwatch connections` prints the stuck connections
//! of the running daemon as a table, `poolwatch healthcheck` answers with its exit code
//! (exec probes, Docker's `HEALTHCHECK`).
//!
//! Owns the small HTTP client they share (hyper, rustls for `https://`), parsing the
//! target URL and formatting the table. It reads what the daemon serves
//! (`/api/v1/connections`, `/healthz`), so it shows whatever the daemon's analysis says,
//! reasons included, without knowing them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use rustls::pki_types::ServerName;

use crate::sampler::connect::{load_roots, EncryptOnly};

/// How long a request may take, connection and TLS included.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Where the daemon is and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// `https://`.
    pub tls: bool,
    /// Host name or address, without brackets.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `user:password` from the URL, sent as basic auth.
    pub credentials: Option<String>,
    /// Path prefix, without a trailing `/` (empty for none).
    pub prefix: String,
}

impl Target {
    /// Parses `http[s]://[user:password@]host[:port][/prefix]`.
    pub fn parse(url: &str) -> Result<Target, String> {
        let bad =
            |why: &str| format!("{url}: {why} (expected http[s]://[user:password@]host[:port])");
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(bad("not an http:// or https:// URL"));
        };
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(crate::percent_decode(c)), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            Some(p) => p.parse().map_err(|_| bad("bad port"))?,
            None if tls => 443,
            None => 80,
        };
        Ok(Target {
            tls,
            host: host.to_string(),
            port,
            credentials,
            prefix: prefix.to_string(),
        })
    }

    /// The daemon of this configuration, reached from its own host: a wildcard listen
    /// address (`[::]`, `0.0.0.0`) is reached on loopback; `https://` when the web
    /// configuration has TLS.
    pub fn of(listen: SocketAddr, tls: bool) -> Target {
        let ip = match listen.ip() {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED) | IpAddr::V6(Ipv6Addr::UNSPECIFIED) => {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            }
            ip => ip,
        };
        Target {
            tls,
            host: ip.to_string(),
            port: listen.port(),
            credentials: None,
            prefix: String::new(),
        }
    }

    fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The URL, without credentials, for messages.
    pub fn display(&self, path: &str) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}:{}{}{path}", self.port, self.prefix)
    }
}

/// How `https://` checks the daemon's certificate.
#[derive(Clone, Debug, Default)]
pub struct TlsTrust {
    /// PEM bundle of trusted CAs; default the system's
    /// (`/etc/ssl/certs/ca-certificates.crt`, which the image carries).
    pub ca_file: Option<PathBuf>,
    /// Do not check the certificate (still encrypted), like `curl -k` and like the
    /// kubelet's HTTPS probes. Also the default for a loopback address when no CA file
    /// is given: the daemon's certificate rarely names 127.0.0.1.
    pub insecure: bool,
}

/// GET `path` on `target`: status and body.
pub async fn get(target: &Target, trust: &TlsTrust, path: &str) -> Result<(u16, Vec<u8>), String> {
    let url = target.display(path);
    tokio::time::timeout(TIMEOUT, exchange(target, trust, path))
        .await
        .map_err(|_| format!("GET {url}: no answer within {} s", TIMEOUT.as_secs()))?
        .map_err(|e| format!("GET {url}: {e}"))
}

async fn exchange(target: &Target, trust: &TlsTrust, path: &str) -> Result<(u16, Vec<u8>), String> {
    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| e.to_string())?;
    let mut request = hyper::Request::get(format!("{}{path}", target.prefix))
        .header(hyper::header::HOST, target.host.as_str())
        .header(
            hyper::header::USER_AGENT,
            concat!("poolwatch/", env!("CARGO_PKG_VERSION")),
        );
    if let Some(c) = &target.credentials {
        request = request.header(
            hyper::header::AUTHORIZATION,
            format!("Basic {}", STANDARD.encode(c.as_bytes())),
        );
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    if !target.tls {
        return send(hyper_util::rt::TokioIo::new(tcp), request).await;
    }
    let config = client_config(target, trust)?;
    let name = ServerName::try_from(target.host.clone()).map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    send(hyper_util::rt::TokioIo::new(stream), request).await
}

async fn send<S>(io: S, request: hyper::Request<Empty<Bytes>>) -> Result<(u16, Vec<u8>), String>
where
    S: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body.to_vec()))
}

fn client_config(target: &Target, trust: &TlsTrust) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    if trust.insecure || (trust.ca_file.is_none() && target.is_loopback()) {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth());
    }
    let file = trust
        .ca_file
        .clone()
        .unwrap_or_else(|| PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    let roots = load_roots(&file).map_err(|e| format!("--ca-file: {e}"))?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// A duration in seconds as `45s`, `12m05s` or `3h02m`; `-` when unknown.
pub fn age(seconds: Option<f64>) -> String {
    let Some(s) = seconds.filter(|s| s.is_finite() && *s >= 0.0) else {
        return "-".into();
    };
    let s = s.round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// The `/api/v1/connections` answer as a table: one row per stuck connection, one line per
/// application with none, columns aligned; the query (a fingerprint by default) last.
pub fn connections_table(answer: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let mut rows: Vec<[String; 7]> = Vec::new();
    let mut quiet = Vec::new();
    let apps = answer["applications"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for app in &apps {
        let name = match text(&app["instance"]) {
            i if i.is_empty() => text(&app["app"]),
            i => format!("{} ({i})", text(&app["app"])),
        };
        let verdict = if app["leak_suspected"].as_bool() == Some(true) {
            let reasons: Vec<String> = app["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            format!("LEAK SUSPECTED: {}", reasons.join(", "))
        } else {
            "ok".to_string()
        };
        let connections = app["connections"].as_array().cloned().unwrap_or_default();
        if connections.is_empty() {
            quiet.push(format!("{name}: {verdict}, no stuck connections"));
            continue;
        }
        for c in &connections {
            let wait = match (text(&c["wait_event_type"]), text(&c["wait_event"])) {
                (t, e) if t.is_empty() && e.is_empty() => "-".to_string(),
                (t, e) if t.is_empty() => e,
                (t, e) => format!("{t}:{e}"),
            };
            let reasons: Vec<String> = c["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            rows.push([
                name.clone(),
                c["pid"].as_i64().map_or("-".into(), |p| p.to_string()),
                text(&c["state"]),
                age(c["state_age_seconds"].as_f64()),
                wait,
                reasons.join(","),
                format!("{}  [{verdict}]", text(&c["query"])),
            ]);
        }
    }
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str(if apps.is_empty() {
            "no applications (none seen yet, or none of that name)\n"
        } else {
            "no stuck connections\n"
        });
    } else {
        let header = [
            "APPLICATION",
            "PID",
            "STATE",
            "AGE",
            "WAIT EVENT",
            "REASONS",
            "QUERY",
        ]
        .map(String::from);
        let mut widths = [0usize; 6];
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter_mut().zip(row.iter()) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for row in std::iter::once(&header).chain(&rows) {
            for (w, cell) in widths.iter().zip(row.iter()) {
                out.push_str(&format!("{cell:<w$}  "));
            }
            out.push_str(&row[6]);
            out.push('\n');
        }
    }
    for line in quiet {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_credentials_ports_brackets_and_prefixes() {
        let t = Target::parse("https://prometheus:s%3Acret@[::1]:19187/poolwatch/").unwrap();
        assert_eq!(
            t,
            Target {
                tls: true,
                host: "::1".into(),
                port: 19187,
                credentials: Some("prometheus:s:cret".into()),
                prefix: "/poolwatch".into(),
            }
        );
        assert_eq!(
            t.display("/healthz"),
            "https://[::1]:19187/poolwatch/healthz"
        );
        let t = Target::parse("http://localhost").unwrap();
        assert_eq!((t.port, t.tls, t.credentials), (80, false, None));
        for bad in [
            "localhost:19187",
            "ftp://x",
            "http://:80",
            "http://h:port",
            "http://[::1",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_wildcard_listen_address_is_reached_on_loopback() {
        let t = Target::of("[::]:19187".parse().unwrap(), false);
        assert_eq!(t.display(""), "http://127.0.0.1:19187");
        let t = Target::of("0.0.0.0:9".parse().unwrap(), true);
        assert_eq!(t.display(""), "https://127.0.0.1:9");
        let t = Target::of("[fd00::5]:9".parse().unwrap(), false);
        assert_eq!(t.display("/x"), "http://[fd00::5]:9/x");
    }

    #[test]
    fn ages() {
        assert_eq!(age(Some(59.4)), "59s");
        assert_eq!(age(Some(725.0)), "12m05s");
        assert_eq!(age(Some(10920.0)), "3h02m");
        assert_eq!(age(None), "-");
        assert_eq!(age(Some(f64::NAN)), "-");
    }

    #[test]
    fn the_table_has_a_row_per_stuck_connection_and_a_line_per_quiet_application() {
        let answer = serde_json::json!({"at": 1.0, "applications": [
            {"app": "orders-worker", "instance": "", "leak_suspected": true,
             "reasons": ["idle_in_use", "some_future_reason"],
             "connections": [
                {"pid": 4242, "state": "idle", "wait_event_type": "Client", "wait_event": "ClientRead",
                 "state_age_seconds": 725.0, "reasons": ["idle_in_client_read"],
                 "query": "SELECT id FROM orders WHERE customer_id = $1"},
                {"pid": 7, "state": "idle in transaction", "wait_event_type": null, "wait_event": null,
                 "state_age_seconds": null, "reasons": ["idle_in_transaction"], "query": null}]},
            {"app": "billing", "instance": "billing-7f9c", "leak_suspected": false, "reasons": [], "connections": []}
        ]});
        let table = connections_table(&answer);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        assert!(
            lines[0].starts_with("APPLICATION    PID   STATE"),
            "{table}"
        );
        assert!(
            lines[1].starts_with("orders-worker  4242  idle "),
            "{table}"
        );
        for cell in [
            "12m05s",
            "Client:ClientRead",
            "idle_in_client_read",
            "SELECT id FROM orders WHERE customer_id = $1",
            "[LEAK SUSPECTED: idle_in_use, some_future_reason]",
        ] {
            assert!(lines[1].contains(cell), "{cell}: {table}");
        }
        assert!(
            lines[2].contains("idle in transaction") && lines[2].contains(" - "),
            "{table}"
        );
        assert_eq!(lines[3], "billing (billing-7f9c): ok, no stuck connections");
        // The columns line up: the query starts at the same place in every row.
        let at = |l: &str, s: &str| l.find(s).unwrap();
        assert_eq!(at(lines[0], "QUERY"), at(lines[1], "SELECT"));
        assert_eq!(
            connections_table(&serde_json::json!({"at": null, "applications": []})),
            "no applications (none seen yet, or none of that name)\n"
        );
    }
}
