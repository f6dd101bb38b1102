//! TLS and basic authentication on poolwatch's own listeners (`web_config_file`, the
//! exporter-toolkit format), with a certificate made by `openssl` for the test.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{parse_response, require_tool, Daemon, Resp, TempFile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTPS request, trusting only `ca`, to host name `localhost`; the handshake and the
/// response must succeed.
async fn https(addr: SocketAddr, ca: &Path, path: &str, auth: Option<&str>) -> Resp {
    match try_https(addr, &Tls::trusting(ca), path, auth).await {
        Ok((r, _)) => r,
        Err(e) => panic!("GET {path}: {e}"),
    }
}

/// How the test client speaks TLS.
struct Tls<'a> {
    /// The only trusted root.
    ca: &'a Path,
    /// A client certificate and its key (PEM) to present when asked.
    cert: Option<(&'a Path, &'a Path)>,
    /// The versions offered; empty: TLS 1.2 and 1.3.
    versions: &'a [&'static rustls::SupportedProtocolVersion],
}

impl<'a> Tls<'a> {
    /// Trusting `ca`, no client certificate, TLS 1.2 and 1.3.
    fn trusting(ca: &'a Path) -> Tls<'a> {
        Tls {
            ca,
            cert: None,
            versions: &[],
        }
    }

    /// The same, presenting `cert` (a certificate and its key).
    fn with_cert(ca: &'a Path, cert: &'a (PathBuf, PathBuf)) -> Tls<'a> {
        Tls {
            cert: Some((&cert.0, &cert.1)),
            ..Tls::trusting(ca)
        }
    }
}

/// One HTTPS request to host name `localhost`: the response and the TLS version
/// negotiated, or why there is none (handshake refused, connection closed with an alert
/// or without an answer).
async fn try_https(
    addr: SocketAddr,
    t: &Tls<'_>,
    path: &str,
    auth: Option<&str>,
) -> Result<(Resp, rustls::ProtocolVersion), String> {
    try_https_with_peer(addr, t, path, auth)
        .await
        .map(|(r, v, _)| (r, v))
}

/// As [`try_https`], with the certificate the server presented (DER).
async fn try_https_with_peer(
    addr: SocketAddr,
    t: &Tls<'_>,
    path: &str,
    auth: Option<&str>,
) -> Result<(Resp, rustls::ProtocolVersion, Vec<u8>), String> {
    try_https_send(addr, t, "GET", path, auth, b"").await
}

/// One HTTPS request with a method and a body, as [`try_https_with_peer`].
async fn try_https_send(
    addr: SocketAddr,
    t: &Tls<'_>,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> Result<(Resp, rustls::ProtocolVersion, Vec<u8>), String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(t.ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ));
    let builder = if t.versions.is_empty() {
        builder.with_safe_default_protocol_versions()
    } else {
        builder.with_protocol_versions(t.versions)
    }
    .unwrap()
    .with_root_certificates(roots);
    let config = match t.cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = rustls::pki_types::CertificateDer::pem_file_iter(cert)
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let version = tls.get_ref().1.protocol_version().expect("negotiated");
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .expect("a server certificate")[0]
            .to_vec();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        let mut req = req.into_bytes();
        req.extend_from_slice(body);
        // With TLS 1.3 the server judges the client's certificate after the client has
        // finished its side of the handshake: a refusal shows up here, as an alert.
        tls.write_all(&req)
            .await
            .map_err(|e| format!("writing: {e}"))?;
        let mut buf = Vec::new();
        let read = tls.read_to_end(&mut buf).await;
        // A complete response counts even if the close was not clean.
        if !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Err(format!("no response ({read:?})"));
        }
        Ok((parse_response(&buf), version, peer))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| "no answer within 30 s".to_string())?
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {encoded}")
}

/// A daemon with TLS (a certificate from a CA made for the test, in the returned
/// directory) and the basic-auth user `prometheus` / `s3cret-pw`, plus `extra`
/// configuration; the web configuration file lives as long as the returned `TempFile`.
async fn tls_and_basic_daemon(extra: &str) -> (Daemon, PathBuf, TempFile) {
    let certs = common::temp_path("web-certs");
    common::make_certs(&certs, "/CN=poolwatch web test CA");
    let hash = bcrypt::hash("s3cret-pw", 4).unwrap();
    let web = TempFile::new(&format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  prometheus: '{hash}'\n",
        certs.join("server.crt").display(),
        certs.join("server.key").display()
    ));
    let d = Daemon::start(&format!("web_config_file: {}\n{extra}", web.0.display())).await;
    (d, certs, web)
}

#[tokio::test]
async fn tls_and_basic_auth_on_the_listeners() {
    if require_tool("openssl").is_none() {
        return;
    }
    let (d, certs, _web) = tls_and_basic_daemon("").await;
    let ca = certs.join("ca.crt");
    let good = basic("prometheus", "s3cret-pw");

    let r = https(d.addr, &ca, "/metrics", Some(&good)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("poolwatch_build_info"));
    // A second scrape uses the cached verification; still right.
    assert_eq!(
        https(d.addr, &ca, "/metrics", Some(&good)).await.status,
        200
    );
    for auth in [
        None,
        Some(basic("prometheus", "wrong")),
        Some(basic("nobody", "s3cret-pw")),
        Some("Basic !!!".to_string()),
    ] {
        let r = https(d.addr, &ca, "/metrics", auth.as_deref()).await;
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"poolwatch\"")
        );
    }
    // Probes stay open, over TLS.
    assert_eq!(https(d.addr, &ca, "/healthz", None).await.status, 200);
    assert_eq!(https(d.addr, &ca, "/readyz", None).await.status, 200);
    // Plain HTTP is not served: the listener speaks TLS only.
    let mut s = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/1.1 200"),
        "plain HTTP served on a TLS listener"
    );
    d.stop().await;
    let _ = std::fs::remove_dir_all(certs);
}

/// Issue 15, D3: basic auth and a push token both arrive in the `Authorization` header,
/// so each opens what it is for: a user's credentials every endpoint, the token the push
/// endpoints (over TLS, as the two are meant to be used).
#[tokio::test]
async fn basic_auth_and_a_push_token_combine_over_tls() {
    if require_tool("openssl").is_none() {
        return;
    }
    let (d, certs, _web) =
        tls_and_basic_daemon("http:\n  push_token: an-example-token-0123\n").await;
    let ca = certs.join("ca.crt");
    let user = basic("prometheus", "s3cret-pw");
    let token = "Bearer an-example-token-0123";
    let push = |path: &'static str, auth: Option<String>, body: &'static [u8]| {
        let ca = ca.clone();
        async move {
            let method = if path.starts_with("/metrics/") {
                "PUT"
            } else {
                "POST"
            };
            match try_https_send(
                d.addr,
                &Tls::trusting(&ca),
                method,
                path,
                auth.as_deref(),
                body,
            )
            .await
            {
                Ok((r, _, _)) => r,
                Err(e) => panic!("{method} {path}: {e}"),
            }
        }
    };
    let json = br#"{"open":3}"#;
    let text = b"go_sql_open_connections{db_name=\"main\"} 4\n";
    // The token opens the push endpoints, JSON and Pushgateway alike...
    assert_eq!(
        push("/api/v1/pools/a/p", Some(token.into()), json)
            .await
            .status,
        200
    );
    assert_eq!(
        push("/metrics/job/b", Some(token.into()), text)
            .await
            .status,
        200
    );
    assert_eq!(
        push(
            "/api/v1/pools/a/p",
            Some("bearer an-example-token-0123".into()),
            json
        )
        .await
        .status,
        200
    );
    // ...and so do a user's credentials.
    assert_eq!(
        push("/api/v1/pools/c/p", Some(user.clone()), json)
            .await
            .status,
        200
    );
    // Neither, or wrong ones: 401 naming both schemes, counted.
    for auth in [
        None,
        Some("Bearer wrong-token-00000000".to_string()),
        Some(basic("prometheus", "wrong")),
    ] {
        let r = push("/api/v1/pools/a/p", auth.clone(), json).await;
        assert_eq!(r.status, 401, "{auth:?}: {}", r.body);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"poolwatch\", Bearer realm=\"poolwatch\"")
        );
    }
    // The token opens nothing else.
    let r = https(d.addr, &ca, "/metrics", Some(token)).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Basic realm=\"poolwatch\"")
    );
    let m = https(d.addr, &ca, "/metrics", Some(&user)).await.body;
    assert!(m.contains("poolwatch_pools_tracked 3"), "{m}");
    assert!(
        m.contains(r#"poolwatch_ingest_requests_total{format="json",outcome="unauthorized"} 3"#)
    );
    d.stop().await;
    let _ = std::fs::remove_dir_all(certs);
}

/// A plain-HTTP GET with an optional `Authorization` header.
async fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> Resp {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    common::raw(addr, req.as_bytes()).await
}

/// bcrypt runs off the async runtime, one verification at a time: while a burst of
/// wrong passwords (and unknown users) at a realistic cost is being verified, the probes
/// and a scrape with credentials verified before still answer at once. poolwatch runs on
/// a runtime of its own with two workers (as in a small pod), the clients on another, so
/// that a stalled server cannot hold up the clients' clock too.
#[test]
fn a_burst_of_wrong_passwords_does_not_stall_metrics_or_probes() {
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let hash = bcrypt::hash("right-pw", 10).unwrap();
    let web = TempFile::new(&format!("basic_auth_users:\n  prometheus: '{hash}'\n"));
    let d = server.block_on(Daemon::start(&format!(
        "web_config_file: {}\n",
        web.0.display()
    )));
    let addr = d.addr;
    let good = basic("prometheus", "right-pw");
    clients.block_on(async {
        // This one pays the bcrypt verification; later ones are answered from the cache.
        let first = Instant::now();
        assert_eq!(get(addr, "/metrics", Some(&good)).await.status, 200);
        let one_verification = first.elapsed();

        const BURST: usize = 32;
        let answered = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let burst: Vec<_> = (0..BURST)
            .map(|i| {
                let answered = answered.clone();
                // Half wrong passwords of a real user, half users that do not exist.
                let auth = if i % 2 == 0 {
                    basic("prometheus", &format!("wrong-{i}"))
                } else {
                    basic(&format!("nobody-{i}"), "right-pw")
                };
                tokio::spawn(async move {
                    let r = get(addr, "/metrics", Some(&auth)).await;
                    answered.fetch_add(1, Ordering::SeqCst);
                    if r.status == 503 {
                        assert_eq!(r.header("retry-after"), Some("1"));
                    }
                    r.status
                })
            })
            .collect();
        // Let the burst arrive and queue up behind the verification in progress.
        tokio::time::sleep(Duration::from_millis(100)).await;

        let asked = Instant::now();
        let health = get(addr, "/healthz", None).await;
        let scrape = get(addr, "/metrics", Some(&good)).await;
        let waited = asked.elapsed();
        let answered_meanwhile = answered.load(Ordering::SeqCst);
        assert_eq!(health.status, 200, "{}", health.body);
        assert_eq!(scrape.status, 200, "{}", scrape.body);
        assert!(scrape.body.contains("poolwatch_build_info"));

        // 16 checks wait in line for bcrypt at most; the rest are told to retry (503)
        // at once instead of holding connections.
        let (mut denied, mut busy) = (0, 0);
        for b in burst {
            match b.await.unwrap() {
                401 => denied += 1,
                503 => busy += 1,
                other => panic!("a wrong password got {other}"),
            }
        }
        assert!(denied >= 16, "{denied} denied, {busy} busy");
        assert!(busy >= 1, "{denied} denied, {busy} busy: the line never filled");
        let burst_took = started.elapsed();
        eprintln!(
            "one verification {one_verification:?}; burst of {BURST} took {burst_took:?} ({denied} denied, {busy} busy); probe and cached scrape took {waited:?}, {answered_meanwhile} of the burst answered by then"
        );
        assert!(
            answered_meanwhile < BURST,
            "the burst was over before the probe and scrape answered ({waited:?}, burst {burst_took:?})"
        );
        assert!(
            waited * 4 < burst_took,
            "probe and cached scrape took {waited:?}, more than a quarter of the burst ({burst_took:?})"
        );
    });
    server.block_on(d.stop());
}

/// Certificates for the TLS tests: the server's (`ca.crt` trusts it), a client CA and
/// client certificate (`client-ca.crt`, `client.crt`), and another CA's client
/// certificate (`rogue.crt`).
struct Certs {
    dir: PathBuf,
    ca: PathBuf,
    client: (PathBuf, PathBuf),
    rogue: (PathBuf, PathBuf),
}

impl Certs {
    fn make() -> Certs {
        let dir = common::temp_path("mtls-certs");
        common::make_certs(&dir, "/CN=poolwatch mTLS test CA");
        common::make_client_certs(&dir, "client");
        common::make_client_certs(&dir, "rogue");
        Certs {
            ca: dir.join("ca.crt"),
            client: (dir.join("client.crt"), dir.join("client.key")),
            rogue: (dir.join("rogue.crt"), dir.join("rogue.key")),
            dir,
        }
    }

    /// A web configuration file with the server certificate and `extra` lines under
    /// `tls_server_config`; `client_ca_file` in them is written `CLIENT_CA`.
    fn web_config(&self, extra: &str) -> TempFile {
        TempFile::new(&format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n{}",
            self.dir.join("server.crt").display(),
            self.dir.join("server.key").display(),
            extra.replace(
                "CLIENT_CA",
                &self.dir.join("client-ca.crt").display().to_string()
            )
        ))
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn require_and_verify_client_cert() {
    if require_tool("openssl").is_none() {
        return;
    }
    let c = Certs::make();
    let web = c.web_config(
        "  client_ca_file: CLIENT_CA\n  client_auth_type: RequireAndVerifyClientCert\n",
    );
    let d = Daemon::start(&format!("web_config_file: {}\n", web.0.display())).await;

    let (r, _) = try_https(d.addr, &Tls::with_cert(&c.ca, &c.client), "/metrics", None)
        .await
        .expect("the client CA's certificate is accepted");
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("poolwatch_build_info"));
    // Over TLS 1.2 as well.
    let tls12 = Tls {
        versions: &[&rustls::version::TLS12],
        ..Tls::with_cert(&c.ca, &c.client)
    };
    let (r, version) = try_https(d.addr, &tls12, "/healthz", None)
        .await
        .expect("TLS 1.2 with the right certificate");
    assert_eq!((r.status, version), (200, rustls::ProtocolVersion::TLSv1_2));

    // No certificate, or one from another CA: no answer, on any path.
    for path in ["/metrics", "/healthz"] {
        let none = try_https(d.addr, &Tls::trusting(&c.ca), path, None).await;
        assert!(
            none.is_err(),
            "{path} without a certificate: {:?}",
            none.map(|r| r.0)
        );
        let rogue = try_https(d.addr, &Tls::with_cert(&c.ca, &c.rogue), path, None).await;
        assert!(
            rogue.is_err(),
            "{path} with another CA's certificate: {:?}",
            rogue.map(|r| r.0)
        );
    }
    let rogue12 = Tls {
        versions: &[&rustls::version::TLS12],
        ..Tls::with_cert(&c.ca, &c.rogue)
    };
    let r = try_https(d.addr, &rogue12, "/healthz", None).await;
    assert!(
        r.is_err(),
        "TLS 1.2, another CA's certificate: {:?}",
        r.map(|r| r.0)
    );
    // The server is still fine after the refusals.
    let (r, _) = try_https(d.addr, &Tls::with_cert(&c.ca, &c.client), "/readyz", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    d.stop().await;
}

#[tokio::test]
async fn verify_client_cert_if_given() {
    if require_tool("openssl").is_none() {
        return;
    }
    let c = Certs::make();
    let web =
        c.web_config("  client_ca_file: CLIENT_CA\n  client_auth_type: VerifyClientCertIfGiven\n");
    let d = Daemon::start(&format!("web_config_file: {}\n", web.0.display())).await;

    let (r, _) = try_https(d.addr, &Tls::trusting(&c.ca), "/metrics", None)
        .await
        .expect("no certificate is fine");
    assert_eq!(r.status, 200, "{}", r.body);
    let (r, _) = try_https(d.addr, &Tls::with_cert(&c.ca, &c.client), "/metrics", None)
        .await
        .expect("the client CA's certificate is accepted");
    assert_eq!(r.status, 200, "{}", r.body);
    let rogue = try_https(d.addr, &Tls::with_cert(&c.ca, &c.rogue), "/metrics", None).await;
    assert!(
        rogue.is_err(),
        "another CA's certificate: {:?}",
        rogue.map(|r| r.0)
    );
    d.stop().await;
}

#[tokio::test]
async fn min_and_max_tls_version() {
    if require_tool("openssl").is_none() {
        return;
    }
    let c = Certs::make();
    let only12: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    let only13: &[&'static rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

    // Default: both.
    let web = c.web_config("");
    let d = Daemon::start(&format!("web_config_file: {}\n", web.0.display())).await;
    for (versions, want) in [
        (only12, rustls::ProtocolVersion::TLSv1_2),
        (only13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let t = Tls {
            versions,
            ..Tls::trusting(&c.ca)
        };
        let (r, got) = try_https(d.addr, &t, "/healthz", None).await.unwrap();
        assert_eq!((r.status, got), (200, want));
    }
    d.stop().await;

    // min_version TLS13: a client limited to TLS 1.2 is refused.
    let web = c.web_config("  min_version: TLS13\n");
    let d = Daemon::start(&format!("web_config_file: {}\n", web.0.display())).await;
    let t = Tls {
        versions: only12,
        ..Tls::trusting(&c.ca)
    };
    let r = try_https(d.addr, &t, "/healthz", None).await;
    assert!(r.is_err(), "TLS 1.2 client served: {:?}", r.map(|r| r.0));
    let (r, got) = try_https(d.addr, &Tls::trusting(&c.ca), "/healthz", None)
        .await
        .unwrap();
    assert_eq!((r.status, got), (200, rustls::ProtocolVersion::TLSv1_3));
    d.stop().await;

    // max_version TLS12: a client limited to TLS 1.3 is refused; others get TLS 1.2.
    let web = c.web_config("  min_version: TLS12\n  max_version: TLS12\n");
    let d = Daemon::start(&format!("web_config_file: {}\n", web.0.display())).await;
    let t = Tls {
        versions: only13,
        ..Tls::trusting(&c.ca)
    };
    let r = try_https(d.addr, &t, "/healthz", None).await;
    assert!(r.is_err(), "TLS 1.3 client served: {:?}", r.map(|r| r.0));
    let (r, got) = try_https(d.addr, &Tls::trusting(&c.ca), "/healthz", None)
        .await
        .unwrap();
    assert_eq!((r.status, got), (200, rustls::ProtocolVersion::TLSv1_2));
    d.stop().await;
}

#[test]
fn invalid_web_config_is_an_invalid_configuration() {
    let tls = "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n";
    let cases: Vec<(String, &[&str])> = vec![
        (tls.to_string(), &["tls_server_config.cert_file"]),
        (
            "basic_auth_users:\n  bob: not-a-hash\n".into(),
            &["basic_auth_users.bob", "not a bcrypt hash"],
        ),
        ("tls_config:\n  x: 1\n".into(), &["unknown field", "tls_config"]),
        (
            format!("{tls}  bogus_key: 1\n"),
            &["unknown field", "bogus_key", "tls_server_config"],
        ),
        // Client certificates: verifying needs the CAs, the CAs need a verifying type.
        (
            format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"),
            &[
                "tls_server_config.client_auth_type",
                "tls_server_config.client_ca_file",
            ],
        ),
        (
            format!("{tls}  client_auth_type: VerifyClientCertIfGiven\n"),
            &[
                "tls_server_config.client_auth_type",
                "tls_server_config.client_ca_file",
            ],
        ),
        (
            format!("{tls}  client_ca_file: /etc/ssl/certs/ca-certificates.crt\n"),
            &[
                "tls_server_config.client_ca_file",
                "tls_server_config.client_auth_type",
                "NoClientCert",
            ],
        ),
        (
            format!("{tls}  client_ca_file: /etc/ssl/certs/ca-certificates.crt\n  client_auth_type: NoClientCert\n"),
            &[
                "tls_server_config.client_ca_file",
                "tls_server_config.client_auth_type",
            ],
        ),
        // Types that do not verify: refused, with what to use instead.
        (
            format!("{tls}  client_ca_file: /x.crt\n  client_auth_type: RequestClientCert\n"),
            &[
                "tls_server_config.client_auth_type",
                "RequestClientCert is not supported by poolwatch",
                "VerifyClientCertIfGiven",
            ],
        ),
        (
            format!("{tls}  client_auth_type: RequireAnyClientCert\n"),
            &[
                "tls_server_config.client_auth_type",
                "RequireAnyClientCert is not supported by poolwatch",
                "RequireAndVerifyClientCert",
            ],
        ),
        (
            format!("{tls}  client_auth_type: VerifyAlways\n"),
            &[
                "tls_server_config.client_auth_type",
                "NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert",
                "VerifyAlways",
            ],
        ),
        (
            format!("{tls}  client_ca_file: /nonexistent-ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n"),
            &["tls_server_config.client_ca_file /nonexistent-ca.crt"],
        ),
        // TLS versions.
        (
            format!("{tls}  min_version: TLS10\n"),
            &["tls_server_config.min_version", "TLS10 is not supported by poolwatch"],
        ),
        (
            format!("{tls}  max_version: TLS11\n"),
            &["tls_server_config.max_version", "TLS11 is not supported by poolwatch"],
        ),
        (
            format!("{tls}  min_version: SSL3\n"),
            &["tls_server_config.min_version", "TLS12 or TLS13", "SSL3"],
        ),
        (
            format!("{tls}  max_version: tls13\n"),
            &["tls_server_config.max_version", "TLS12 or TLS13"],
        ),
        (
            format!("{tls}  min_version: TLS13\n  max_version: TLS12\n"),
            &["tls_server_config.min_version", "tls_server_config.max_version"],
        ),
        // exporter-toolkit keys poolwatch does not take: named, not "unknown".
        (
            format!("{tls}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
            &["tls_server_config.cipher_suites is not supported by poolwatch"],
        ),
        (
            format!("{tls}  curve_preferences: [X25519]\n"),
            &["tls_server_config.curve_preferences is not supported by poolwatch"],
        ),
        (
            format!("{tls}  prefer_server_cipher_suites: true\n"),
            &["tls_server_config.prefer_server_cipher_suites is not supported by poolwatch"],
        ),
        (
            format!("{tls}  client_allowed_sans: [client.example]\n"),
            &["tls_server_config.client_allowed_sans is not supported by poolwatch"],
        ),
        (
            "http_server_config:\n  http2: false\n".into(),
            &["http_server_config is not supported by poolwatch"],
        ),
        // Even written with no value.
        (
            format!("{tls}  cipher_suites:\n"),
            &["tls_server_config.cipher_suites is not supported by poolwatch"],
        ),
    ];
    for (text, needles) in &cases {
        let f = TempFile::new(text);
        let flags = vec![("web_config_file", f.0.display().to_string())];
        let err = poolwatch::config::load(None, &flags, &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("web_config_file"), "{text}: {err}");
        for needle in *needles {
            assert!(err.contains(needle), "{text}: {needle:?} not in: {err}");
        }
        if !needles.iter().any(|n| n.contains("unknown field")) {
            assert!(!err.contains("unknown field"), "{text}: {err}");
        }
    }
}

/// Paths in the web configuration file are relative to its directory, as in the
/// exporter-toolkit (a mounted Secret holds the file and the certificates side by side).
#[tokio::test]
async fn relative_paths_are_relative_to_the_web_config_file() {
    if require_tool("openssl").is_none() {
        return;
    }
    let certs = common::temp_path("web-relative");
    common::make_certs(&certs, "/CN=poolwatch relative paths CA");
    let file = certs.join("web-config.yml");
    std::fs::write(
        &file,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: ./server.key\n",
    )
    .unwrap();
    let d = Daemon::start(&format!("web_config_file: {}\n", file.display())).await;
    let r = https(d.addr, &certs.join("ca.crt"), "/healthz", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    d.stop().await;
    let _ = std::fs::remove_dir_all(certs);
}

/// A directory laid out as the kubelet lays out a mounted Secret, and updated the way it
/// updates one: each version of the files in a directory of its own, `..data` a symbolic
/// link to the current one, replaced in one rename, and each key a link through `..data`.
struct SecretVolume {
    dir: PathBuf,
    version: usize,
}

impl SecretVolume {
    fn new(dir: &Path, files: &[(&str, Vec<u8>)]) -> SecretVolume {
        std::fs::create_dir_all(dir).unwrap();
        let mut v = SecretVolume {
            dir: dir.to_path_buf(),
            version: 0,
        };
        v.update(files);
        v
    }

    fn update(&mut self, files: &[(&str, Vec<u8>)]) {
        self.version += 1;
        let name = format!("..2026_12_02_00_00_{:02}.{}", self.version, self.version);
        std::fs::create_dir(self.dir.join(&name)).unwrap();
        for (key, bytes) in files {
            std::fs::write(self.dir.join(&name).join(key), bytes).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        for (key, _) in files {
            let link = self.dir.join(key);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{key}"), &link).unwrap();
            }
        }
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// The DER of the first certificate in a PEM file.
fn der(path: &Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// `poolwatch_web_config_reloads_total{outcome}` in `metrics`.
fn reloads(metrics: &str, outcome: &str) -> f64 {
    common::value(
        metrics,
        &format!("poolwatch_web_config_reloads_total{{outcome=\"{outcome}\"}}"),
    )
    .unwrap_or_else(|| panic!("no reloads_total{{outcome={outcome}}} in\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_client_cas_and_users_rotate_under_a_scraping_client() {
    if require_tool("openssl").is_none() {
        return;
    }
    let certs = common::temp_path("rotation-certs");
    common::make_certs(&certs, "/CN=poolwatch rotation CA");
    common::make_server_cert(&certs, "renewed");
    common::make_client_certs(&certs, "alpha");
    common::make_client_certs(&certs, "beta");
    let ca = certs.join("ca.crt");
    let hash = |pw: &str| bcrypt::hash(pw, 4).unwrap();
    let web_config = |user: &str, pw: &str| {
        format!(
            "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  client_ca_file: client-ca.crt\n  client_auth_type: VerifyClientCertIfGiven\nbasic_auth_users:\n  {user}: '{}'\n",
            hash(pw)
        )
        .into_bytes()
    };
    let volume_dir = common::temp_path("rotation-secret");
    let mut volume = SecretVolume::new(
        &volume_dir,
        &[
            ("web-config.yml", web_config("alice", "a-pw")),
            ("tls.crt", read(&certs.join("server.crt"))),
            ("tls.key", read(&certs.join("server.key"))),
            ("client-ca.crt", read(&certs.join("alpha-ca.crt"))),
        ],
    );
    let d = Daemon::start(&format!(
        "web_config_file: {}\n",
        volume_dir.join("web-config.yml").display()
    ))
    .await;
    let alice = basic("alice", "a-pw");
    let (first, renewed) = (
        der(&certs.join("server.crt")),
        der(&certs.join("renewed.crt")),
    );

    // A client that keeps scraping, as Prometheus does, on a new connection each time.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let scraper = {
        let (stop, ca, alice, addr) = (stop.clone(), ca.clone(), alice.clone(), d.addr);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = try_https_with_peer(addr, &Tls::trusting(&ca), "/metrics", Some(&alice))
                    .await
                    .map(|(r, _, peer)| (r.status, peer));
                seen.push(r);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            seen
        })
    };
    let presents = |cert: Vec<u8>| {
        let ca = ca.clone();
        let alice = alice.clone();
        let addr = d.addr;
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (r, _, peer) =
                    try_https_with_peer(addr, &Tls::trusting(&ca), "/metrics", Some(&alice))
                        .await
                        .unwrap();
                assert_eq!(r.status, 200, "{}", r.body);
                if peer == cert {
                    return r.body;
                }
                assert!(
                    Instant::now() < deadline,
                    "the new certificate was not served within 10 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let body = presents(first.clone()).await;
    assert_eq!(reloads(&body, "success"), 0.0);
    assert_eq!(
        common::value(&body, "poolwatch_web_config_last_reload_successful"),
        Some(1.0)
    );

    // cert-manager renews the certificate: the Secret's files change through ..data.
    let started = Instant::now();
    volume.update(&[
        ("web-config.yml", web_config("alice", "a-pw")),
        ("tls.crt", read(&certs.join("renewed.crt"))),
        ("tls.key", read(&certs.join("renewed.key"))),
        ("client-ca.crt", read(&certs.join("alpha-ca.crt"))),
    ]);
    let body = presents(renewed.clone()).await;
    eprintln!("renewed certificate served after {:?}", started.elapsed());
    assert_eq!(reloads(&body, "success"), 1.0);

    // A bad new certificate: logged, counted, and the renewed one keeps serving.
    volume.update(&[
        ("web-config.yml", web_config("alice", "a-pw")),
        (
            "tls.crt",
            b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".to_vec(),
        ),
        ("tls.key", read(&certs.join("renewed.key"))),
        ("client-ca.crt", read(&certs.join("alpha-ca.crt"))),
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let body = presents(renewed.clone()).await;
        if reloads(&body, "failure") >= 1.0 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the bad certificate was not noticed:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        reloads(&body, "failure"),
        1.0,
        "the same bad files are tried once"
    );
    assert_eq!(
        common::value(&body, "poolwatch_web_config_last_reload_successful"),
        Some(0.0)
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let body = presents(renewed.clone()).await;
    assert_eq!(
        reloads(&body, "failure"),
        1.0,
        "the same bad files are tried once"
    );

    stop.store(true, Ordering::Relaxed);
    let seen = scraper.await.unwrap();
    let failed: Vec<_> = seen.iter().filter(|r| !matches!(r, Ok((200, _)))).collect();
    let on_renewed = seen
        .iter()
        .filter(|r| matches!(r, Ok((_, p)) if *p == renewed))
        .count();
    eprintln!(
        "scrapes during the rotations: {}, failed: {}, served by the renewed certificate: {on_renewed}",
        seen.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{failed:?}");
    assert!(seen.len() >= 20 && on_renewed > 0, "{} scrapes", seen.len());

    // New users and a new client CA: bob replaces alice, beta's certificates replace alpha's.
    volume.update(&[
        ("web-config.yml", web_config("bob", "b-pw")),
        ("tls.crt", read(&certs.join("renewed.crt"))),
        ("tls.key", read(&certs.join("renewed.key"))),
        ("client-ca.crt", read(&certs.join("beta-ca.crt"))),
    ]);
    let bob = basic("bob", "b-pw");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = https(d.addr, &ca, "/metrics", Some(&bob)).await;
        if r.status == 200 {
            assert_eq!(reloads(&r.body, "success"), 2.0);
            break;
        }
        assert!(Instant::now() < deadline, "bob was not let in within 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        https(d.addr, &ca, "/metrics", Some(&alice)).await.status,
        401
    );
    let (alpha, beta) = (
        (certs.join("alpha.crt"), certs.join("alpha.key")),
        (certs.join("beta.crt"), certs.join("beta.key")),
    );
    let with_beta = try_https(d.addr, &Tls::with_cert(&ca, &beta), "/metrics", Some(&bob)).await;
    assert_eq!(with_beta.map(|(r, _)| r.status), Ok(200));
    let with_alpha = try_https(d.addr, &Tls::with_cert(&ca, &alpha), "/metrics", Some(&bob)).await;
    assert!(
        with_alpha.is_err(),
        "a client certificate of the old CA: {with_alpha:?}"
    );
    d.stop().await;
    let _ = std::fs::remove_dir_all(certs);
    let _ = std::fs::remove_dir_all(volume_dir);
}

#[tokio::test]
async fn sighup_rereads_the_web_configuration_and_a_bad_one_keeps_the_old() {
    let dir = common::temp_path("sighup");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("web-config.yml");
    let alice = format!(
        "basic_auth_users:\n  alice: '{}'\n",
        bcrypt::hash("a-pw", 4).unwrap()
    );
    std::fs::write(&file, &alice).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_poolwatch"))
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(format!("--web-config-file={}", file.display()))
        .env_clear()
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let auth = basic("alice", "a-pw");
    let metrics_when = |what: &'static str, pred: fn(&str) -> bool| {
        let auth = auth.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    let r = get(addr, "/metrics", Some(&auth)).await;
                    if r.status == 200 && pred(&r.body) {
                        return r.body;
                    }
                }
                assert!(Instant::now() < deadline, "not within 10 s: {what}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let hangup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    metrics_when("started", |m| reloads(m, "success") == 0.0).await;
    // Nothing changed, and SIGHUP still re-reads (and does not stop poolwatch).
    hangup();
    metrics_when("a reload on SIGHUP", |m| reloads(m, "success") == 1.0).await;
    // A broken file: seen by the poll, refused, and alice still gets in.
    std::fs::write(&file, "basic_auth_users:\n  alice: not-a-bcrypt-hash\n").unwrap();
    metrics_when("the broken file refused", |m| reloads(m, "failure") == 1.0).await;
    // SIGHUP retries even files it has refused before.
    hangup();
    let m = metrics_when("the retry on SIGHUP refused", |m| {
        reloads(m, "failure") == 2.0
    })
    .await;
    assert_eq!(
        common::value(&m, "poolwatch_web_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(
        child.try_wait().unwrap(),
        None,
        "poolwatch is still running"
    );
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_cli_finds_a_tls_daemon_from_its_environment_and_checks_certificates() {
    if require_tool("openssl").is_none() {
        return;
    }
    let certs = common::temp_path("cli-certs");
    common::make_certs(&certs, "/CN=poolwatch cli CA");
    let other = certs.join("other");
    common::make_certs(&other, "/CN=some other CA");
    let web = certs.join("web-config.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  alice: '{}'\n",
            bcrypt::hash("a-pw", 4).unwrap()
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The daemon and the commands share the container's environment, as under kubectl exec.
    let env = [
        ("POOLWATCH_LISTEN_ADDRESS", format!("127.0.0.1:{port}")),
        ("POOLWATCH_WEB_CONFIG_FILE", web.display().to_string()),
    ];
    let poolwatch = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_poolwatch"));
        c.args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)));
        c
    };
    let mut daemon = poolwatch(&[])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let run = |args: &[&str]| {
        let out = poolwatch(args).output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while run(&["healthcheck"]).0 != Some(0) {
        assert!(Instant::now() < deadline, "{:?}", run(&["healthcheck"]));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // healthcheck: https found from the web configuration; /healthz needs no credentials.
    let (code, out, _) = run(&["healthcheck"]);
    assert_eq!(
        (code, out),
        (Some(0), format!("https://127.0.0.1:{port}/healthz: ok\n"))
    );
    // connections needs them, and says how to give them.
    let (code, _, err) = run(&["connections"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("answered 401") && err.contains("USER:PASSWORD@"),
        "{err}"
    );
    let with_credentials = format!("https://alice:a-pw@127.0.0.1:{port}");
    let (code, out, err) = run(&["connections", "--url", &with_credentials]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("no applications"), "{out}");
    // A CA given is checked: the right one by the name the certificate carries, another not.
    let by_name = format!("https://alice:a-pw@localhost:{port}");
    let ca = certs.join("ca.crt").display().to_string();
    let wrong = other.join("ca.crt").display().to_string();
    assert_eq!(
        run(&["connections", "--url", &by_name, "--ca-file", &ca]).0,
        Some(0)
    );
    let (code, _, err) = run(&["connections", "--url", &by_name, "--ca-file", &wrong]);
    assert_eq!(code, Some(1));
    assert!(err.contains("TLS"), "{err}");
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(certs);
}
