//! The server certificate in force, swapped atomically when its files change: handshakes read it with one
//! atomic load, and a certificate that fails to load leaves the old one serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use super::{read_certs, TlsError};

/// What a file looked like when last read: modification time and length (a rewrite within one mtime tick
/// usually changes the length).
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// The server certificate and key in force, from two PEM files; a rustls certificate resolver.
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: ArcSwap<CertifiedKey>,
    seen: Mutex<(Stamp, Stamp)>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert_path)
            .field("key", &self.key_path)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Loads the certificate chain at `cert` and its private key at `key`.
    pub fn load(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> Result<Self, TlsError> {
        let seen = (stamp(cert), stamp(key));
        let certified = read_pair(cert, key, &provider)?;
        Ok(Self {
            cert_path: cert.to_path_buf(),
            key_path: key.to_path_buf(),
            provider,
            current: ArcSwap::from_pointee(certified),
            seen: Mutex::new(seen),
        })
    }

    /// The certificate and key in force.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// SHA-256 of the leaf certificate in force, in hex: how logs name a certificate (it is public).
    pub fn fingerprint(&self) -> String {
        let current = self.current.load();
        current
            .cert
            .first()
            .map(|c| {
                Sha256::digest(c.as_ref())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Re-reads the files when either changed since they were last read. Whatever the outcome, the files
    /// as they are now count as seen, so a broken pair is reported once, not at every poll; a pair caught
    /// half-written (new certificate, old key) is read again when the key's write lands. Returns whether a
    /// new certificate was installed. Blocking file I/O.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = (stamp(&self.cert_path), stamp(&self.key_path));
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        let certified = read_pair(&self.cert_path, &self.key_path, &self.provider)?;
        self.current.store(Arc::new(certified));
        Ok(true)
    }

    /// Polls the files every `interval`, off the async workers, logging each reload and each rejected
    /// pair (the previous certificate keeps serving). Runs until the process ends.
    pub async fn watch(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let store = self.clone();
            match tokio::task::spawn_blocking(move || store.reload_if_changed()).await {
                Ok(Ok(true)) => tracing::info!(
                    cert = %self.cert_path.display(),
                    sha256 = %self.fingerprint(),
                    "TLS certificate reloaded"
                ),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::error!(
                    error = %e,
                    "TLS certificate rejected; the previous certificate keeps serving"
                ),
                Err(e) => tracing::error!(error = %e, "TLS certificate reload did not finish"),
            }
        }
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Reads a certificate chain and its key, and checks that they belong together.
fn read_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = read_certs(cert)?;
    let pem = std::fs::read(key).map_err(|source| TlsError::Io {
        path: key.display().to_string(),
        source,
    })?;
    // The parser's error names the PEM section, never the key's bytes.
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: key.display().to_string(),
        message: format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
    })?;
    CertifiedKey::from_der(chain, der, provider).map_err(|source| TlsError::Rustls {
        context: format!("{} with {}", cert.display(), key.display()),
        source,
    })
}
