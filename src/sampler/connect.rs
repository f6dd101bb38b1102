//! Opening poolwatch's one session: TLS per `sslmode`, all of connect, TLS and
//! authentication bounded by `connect_timeout`, and the connection driven by a task the
//! session owns, so closing the session is awaited and never leaves a backend behind.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, Statement};

use super::config::{DatabaseConfig, SslMode};
use super::SampleError;

/// A live session: the client and the task driving its socket.
pub struct Session {
    /// Issues the sampler's queries.
    pub client: Client,
    /// Drives the connection; ends when the client is dropped or the socket fails.
    task: JoinHandle<()>,
    /// The sampler's statements, prepared once per session (one round trip each per
    /// sample instead of two).
    pub statements: Option<(Statement, Statement, Statement)>,
}

impl Session {
    /// Closes the session and waits (briefly) until its socket is gone, so a new
    /// session never overlaps the old one.
    pub async fn close(self) {
        let Session {
            client, mut task, ..
        } = self;
        drop(client);
        if tokio::time::timeout(Duration::from_secs(2), &mut task)
            .await
            .is_err()
        {
            task.abort();
            let _ = task.await;
        }
    }
}

/// Connects within `connect_timeout` (TCP, TLS and authentication together).
pub async fn connect(cfg: &DatabaseConfig) -> Result<Session, SampleError> {
    let mut pg = cfg.pg.clone();
    pg.ssl_mode(match cfg.sslmode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
    });
    let attempt = async {
        if cfg.sslmode == SslMode::Disable {
            let (client, conn) = pg.connect(NoTls).await.map_err(SampleError::Connect)?;
            Ok(Session {
                client,
                task: tokio::spawn(drive(conn)),
                statements: None,
            })
        } else {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(client_config(cfg)?);
            let (client, conn) = pg.connect(tls).await.map_err(SampleError::Connect)?;
            Ok(Session {
                client,
                task: tokio::spawn(drive(conn)),
                statements: None,
            })
        }
    };
    tokio::time::timeout(cfg.connect_timeout, attempt)
        .await
        .map_err(|_| SampleError::ConnectTimeout(cfg.connect_timeout))?
}

async fn drive<F>(conn: F)
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>>,
{
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "database connection ended");
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(cfg: &DatabaseConfig) -> Result<rustls::ClientConfig, SampleError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SampleError::Tls(e.to_string()))?;
    Ok(match cfg.sslmode {
        SslMode::VerifyFull => {
            let roots = load_roots(&cfg.ca_file).map_err(SampleError::Tls)?;
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider())))
            .with_no_client_auth(),
    })
}

/// `prefer` and `require` as libpq has them: encrypted, the certificate not checked.
/// Signatures are still verified, so the handshake itself is sound. The CLI uses it too,
/// for a loopback daemon or `--insecure`.
#[derive(Debug)]
pub(crate) struct EncryptOnly(pub(crate) Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificates of a PEM file, as a root store; an error names the file and what is
/// wrong with it.
pub(crate) fn load_roots(file: &Path) -> Result<rustls::RootCertStore, String> {
    let shown = file.display();
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(file).map_err(|e| format!("cannot read {shown}: {e}"))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{shown}: {e}"))?;
        roots.add(cert).map_err(|e| format!("{shown}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("{shown} holds no certificate"));
    }
    Ok(roots)
}
