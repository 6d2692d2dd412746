//! HTTPS for the processor: rustls with the `ring` provider (the one the rest
//! of the build uses; no aws-lc, no OpenSSL).
//!
//! The certificate and key are read from PEM files at start and again on
//! SIGHUP. A reload swaps what the next handshake gets; connections already
//! open keep their session, so renewing a certificate (certbot's deploy hook,
//! a cron job) drops nobody. A reload that fails (a half-written file, a key
//! that does not match the certificate) is logged and the old pair stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{cert} and {key} do not belong together: {reason}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a certificate chain and its private key, and checks they match.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let file_err = |path: &Path, reason: String| TlsError::File {
        path: path.to_path_buf(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| file_err(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_err(cert, "no CERTIFICATE block in the file".into()));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_err(key, format!("no usable private key: {e}")))?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|e| TlsError::Mismatch {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The certificate in use, swapped on reload.
#[derive(Debug)]
struct Current {
    cert: PathBuf,
    key: PathBuf,
    pair: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pair.read().expect("certificate lock").clone())
    }
}

/// The server side of TLS: an acceptor and a handle to reload its certificate.
#[derive(Clone)]
pub struct Tls {
    current: Arc<Current>,
    pub acceptor: TlsAcceptor,
}

impl Tls {
    /// Loads the pair and builds the server configuration (TLS 1.2 and 1.3,
    /// ALPN `http/1.1`).
    pub fn open(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let pair = load_pair(cert, key)?;
        let current = Arc::new(Current {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            pair: RwLock::new(Arc::new(pair)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// Reads the files again; on success the next handshake uses the new pair.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = load_pair(&self.current.cert, &self.current.key)?;
        *self.current.pair.write().expect("certificate lock") = Arc::new(pair);
        Ok(())
    }

    /// Reloads on every SIGHUP until the process ends.
    pub fn reload_on_sighup(&self) -> std::io::Result<tokio::task::JoinHandle<()>> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        let tls = self.clone();
        Ok(tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %tls.current.cert.display(), "SIGHUP: TLS certificate reloaded")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded; the old one stays")
                    }
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    #[test]
    fn a_key_from_another_pair_is_refused_with_both_paths() {
        let dir = tempfile::tempdir().unwrap();
        let (c1, _) = write_pair(dir.path(), "a");
        let (_, k2) = write_pair(dir.path(), "b");
        let e = load_pair(&c1, &k2).unwrap_err().to_string();
        assert!(e.contains("a.crt") && e.contains("b.key"), "{e}");
    }

    #[test]
    fn a_missing_or_empty_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "a");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert!(
            load_pair(&empty, &k)
                .unwrap_err()
                .to_string()
                .contains("empty.pem")
        );
        assert!(
            load_pair(&c, &empty)
                .unwrap_err()
                .to_string()
                .contains("empty.pem")
        );
        assert!(load_pair(&c, &k).is_ok());
    }

    #[test]
    fn a_failed_reload_keeps_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "a");
        let tls = Tls::open(&c, &k).unwrap();
        let before = tls.current.pair.read().unwrap().cert.clone();
        std::fs::write(&c, "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
        assert!(tls.reload().is_err());
        assert_eq!(tls.current.pair.read().unwrap().cert, before);
    }
}
