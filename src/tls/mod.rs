//! TLS for every listener (rustls with the ring provider): one server certificate, reloaded when its files
//! change ([`CertStore`]), an accept loop that finishes handshakes off the serving loop ([`accept`]), and
//! optional client-certificate verification for the listeners that carry Admin. Without `--tls-cert` none of
//! this runs and the listeners stay plain TCP.

mod listener;
mod reload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::server::{danger::ClientCertVerifier, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

pub use listener::{accept, TlsIncoming};
pub use reload::CertStore;

/// ALPN of the gRPC listeners: gRPC is HTTP/2 only.
pub const ALPN_GRPC: &[&[u8]] = &[b"h2"];
/// ALPN of the HTTP listeners (API and metrics): HTTP/2 when the client offers it, else HTTP/1.1.
pub const ALPN_HTTP: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Errors of the TLS layer. None of them carries key material: a private key file's contents never reach
/// a message.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the kind wanted.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the certificate, key or CA (e.g. the key does not match the certificate).
    #[error("{context}: {source}")]
    Rustls {
        /// What was being set up.
        context: String,
        /// Why.
        source: rustls::Error,
    },
    /// The client CA bundle cannot verify clients.
    #[error("--admin-client-ca {path}: {message}")]
    ClientCa {
        /// The bundle.
        path: String,
        /// Why.
        message: String,
    },
}

/// Where the server's TLS material is (`serve --tls-cert --tls-key [--admin-client-ca]`).
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// The certificate chain (PEM, leaf first), served on every listener.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// When set, Admin calls must present a client certificate that chains to one of these CAs (PEM).
    pub admin_client_ca: Option<PathBuf>,
}

/// The TLS set-up shared by every listener of one server.
#[derive(Debug, Clone)]
pub struct ServerTls {
    certs: Arc<CertStore>,
    admin_verifier: Option<Arc<dyn ClientCertVerifier>>,
    provider: Arc<CryptoProvider>,
}

/// The crypto provider: ring, named explicitly so that no process-wide default has to be installed (and
/// none installed by a dependency can change ours).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ServerTls {
    /// Loads the certificate, its key and the Admin client CA (if any); errors name the file at fault.
    pub fn load(options: &TlsOptions) -> Result<Self, TlsError> {
        let provider = provider();
        let certs = Arc::new(CertStore::load(
            &options.cert,
            &options.key,
            provider.clone(),
        )?);
        let admin_verifier = match &options.admin_client_ca {
            Some(path) => Some(client_verifier(path, provider.clone())?),
            None => None,
        };
        Ok(Self {
            certs,
            admin_verifier,
            provider,
        })
    }

    /// The certificate in force, and its reloading.
    pub fn certs(&self) -> &Arc<CertStore> {
        &self.certs
    }

    /// Whether Admin calls must present a verified client certificate.
    pub fn admin_needs_client_cert(&self) -> bool {
        self.admin_verifier.is_some()
    }

    /// The acceptor of one listener, offering `alpn`. On a listener that carries Admin (`admin`) and with a
    /// client CA configured, the server asks for a client certificate but does not insist: other services
    /// on the listener serve clients without one, and Admin checks per call that one was presented (any
    /// certificate presented was verified against the CA during the handshake, or the handshake failed).
    pub fn acceptor(&self, alpn: &[&[u8]], admin: bool) -> Result<TlsAcceptor, TlsError> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| TlsError::Rustls {
                context: "TLS protocol versions".into(),
                source,
            })?;
        let builder = match (&self.admin_verifier, admin) {
            (Some(v), true) => builder.with_client_cert_verifier(v.clone()),
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.certs.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// Reads every certificate of a PEM file.
pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            message: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            message: "no `BEGIN CERTIFICATE` block".into(),
        });
    }
    Ok(certs)
}

/// A verifier of client certificates chaining to the CAs of `path`, which admits clients without one
/// (see [`ServerTls::acceptor`]).
fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path)? {
        roots.add(cert).map_err(|e| TlsError::ClientCa {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .allow_unauthenticated()
        .build()
        .map_err(|e| TlsError::ClientCa {
            path: path.display().to_string(),
            message: e.to_string(),
        })
}
