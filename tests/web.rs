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
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        if let Some(a) = auth {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        // With TLS 1.3 the server judges the client's certificate after the client has
        // finished its side of the handshake: a refusal shows up here, as an alert.
        tls.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("writing: {e}"))?;
        let mut buf = Vec::new();
        let read = tls.read_to_end(&mut buf).await;
        // A complete response counts even if the close was not clean.
        if !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Err(format!("no response ({read:?})"));
        }
        Ok((parse_response(&buf), version))
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| "no answer within 30 s".to_string())?
}

fn basic(user: &str, password: &str) -> String {
    // Standard base64, written out here so the test does not share the daemon's decoder.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

#[tokio::test]
async fn tls_and_basic_auth_on_the_listeners() {
    if require_tool("openssl").is_none() {
        return;
    }
    let certs = common::temp_path("web-certs");
    common::make_certs(&certs, "/CN=poolwatch web test CA");
    let hash = bcrypt::hash("s3cret-pw", 4).unwrap();
    let web = TempFile::new(&format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  prometheus: '{hash}'\n",
        certs.join("server.crt").display(),
        certs.join("server.key").display()
    ));
    let d = Daemon::start(&format!("web_config_file: {}\n", web.0.display())).await;
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
