//! Client-side TLS settings shared by every link a meter or a tool opens
//! (HTTPS through reqwest, MQTT over TLS through rumqttc), so that "which
//! servers do we trust" has one answer: the system's roots, or, when a CA file
//! is given, only that CA (a self-hosted processor with a private CA: pinning
//! it means a certificate from any public CA for the same name is refused).
//! rustls with `ring`, like the rest of the build.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why the trust settings could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("no trusted root certificates: {0}")]
    Roots(String),
}

/// The certificates in a PEM file (a bundle may hold several).
pub fn read_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::CaFile {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no CERTIFICATE block in the file".into()));
    }
    Ok(certs)
}

/// A rustls client configuration trusting `ca` only, or the system roots.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in read_ca(path)? {
                roots.add(cert).map_err(|e| TlsError::CaFile {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::Roots(format!(
                    "the system has none (install ca-certificates){}",
                    found.errors.first().map(|e| format!(": {e}")).unwrap_or_default()
                )));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Roots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why the server's certificate was refused, when that is somewhere in the
/// chain of `e` (unknown issuer, wrong name, expired...): the link works but
/// the server is not one we trust, which retrying will not fix.
pub fn certificate_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    match find_rustls(e, 0)? {
        rustls::Error::InvalidCertificate(c) => Some(format!("certificate not trusted: {c:?}")),
        _ => None,
    }
}

/// The rustls error inside `e`. `io::Error` hides what it wraps from
/// `source()` (it returns the wrapped error's source), and hyper and tokio
/// wrap rustls's error in one io::Error inside another, so those are opened
/// with `get_ref` as well.
fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static), depth: u32) -> Option<&'a rustls::Error> {
    if depth > 16 {
        return None;
    }
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
        && let Some(r) = find_rustls(inner, depth + 1)
    {
        return Some(r);
    }
    find_rustls(e.source()?, depth + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_error_is_found_inside_nested_io_errors() {
        let rustls_err = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls_err);
        let outer = std::io::Error::other(inner);
        let found = certificate_problem(&outer).unwrap();
        assert!(found.contains("UnknownIssuer"), "{found}");
        let other = std::io::Error::other(std::io::Error::other(rustls::Error::DecryptError));
        assert_eq!(certificate_problem(&other), None);
        assert_eq!(certificate_problem(&std::io::Error::other("refused")), None);
    }
}
