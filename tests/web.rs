//! TLS and basic authentication on poolwatch's own listeners (`web_config_file`, the
//! exporter-toolkit format), with a certificate made by `openssl` for the test.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::{parse_response, require_tool, Daemon, Resp, TempFile};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One HTTPS request, trusting only `ca`, to host name `localhost`.
async fn https(addr: SocketAddr, ca: &Path, path: &str, auth: Option<&str>) -> Resp {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    use rustls::pki_types::pem::PemObject;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf).await;
    parse_response(&buf)
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

#[test]
fn invalid_web_config_is_an_invalid_configuration() {
    for (text, needle) in [
        (
            "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n",
            "cert_file",
        ),
        (
            "basic_auth_users:\n  bob: not-a-hash\n",
            "not a bcrypt hash",
        ),
        ("tls_config:\n  x: 1\n", "unknown field"),
    ] {
        let f = TempFile::new(text);
        let flags = vec![("web_config_file", f.0.display().to_string())];
        let err = poolwatch::config::load(None, &flags, &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("web_config_file") && err.contains(needle),
            "{text}: {err}"
        );
    }
}
