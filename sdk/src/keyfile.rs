//! Device keys on disk: PKCS#8 PEM, created with mode 0600 and never readable by
//! others, written atomically (a temporary file, fsync, then link or rename) so a
//! power cut never leaves a half-written key.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};

use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::fsutil::{WriteOptions, write_atomic};
use crate::identity::DeviceKey;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `key` to `path` as PKCS#8 PEM with mode 0600. Refuses to replace an
/// existing file unless `overwrite`; the check and the write are one atomic step.
pub fn save_key(path: &Path, key: &DeviceKey, overwrite: bool) -> Result<(), KeyError> {
    if !overwrite && path.exists() {
        return Err(KeyError::Exists(path.to_path_buf()));
    }
    let pem = key
        .signing_key()
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| KeyError::BadPem(path.to_path_buf()))?;
    let opts = WriteOptions {
        replace: overwrite,
        ..WriteOptions::SECRET
    };
    write_atomic(path, pem.as_bytes(), opts).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists(path.to_path_buf()),
        _ => io(path)(e),
    })
}

/// The file's permission bits when group or others can read or write it
/// (anything in 0o077), `None` when it is private to its owner.
pub fn insecure_mode(path: &Path) -> Result<Option<u32>, KeyError> {
    let mode = fs::metadata(path).map_err(io(path))?.permissions().mode() & 0o777;
    Ok((mode & 0o077 != 0).then_some(mode))
}

/// Loads a PKCS#8 PEM P-256 key. A key file that others can read still loads
/// (the device must keep working) but logs a warning naming the file and its mode.
pub fn load_key(path: &Path) -> Result<DeviceKey, KeyError> {
    if let Some(mode) = insecure_mode(path)? {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{mode:04o}"),
            "device key is readable by other users; run `chmod 600` on it"
        );
    }
    let pem = Zeroizing::new(fs::read_to_string(path).map_err(io(path))?);
    let key = SigningKey::from_pkcs8_pem(pem.as_str()).map_err(|_| KeyError::BadPem(path.to_path_buf()))?;
    Ok(DeviceKey::from_signing_key(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_key_is_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/device.pem");
        let key = DeviceKey::generate();
        save_key(&path, &key, false).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(insecure_mode(&path).unwrap(), None);
        let loaded = load_key(&path).unwrap();
        assert_eq!(loaded.public_key(), key.public_key());
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn an_existing_key_is_not_overwritten_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.pem");
        let first = DeviceKey::generate();
        save_key(&path, &first, false).unwrap();
        let second = DeviceKey::generate();
        assert!(matches!(
            save_key(&path, &second, false),
            Err(KeyError::Exists(_))
        ));
        assert_eq!(load_key(&path).unwrap().public_key(), first.public_key());
        save_key(&path, &second, true).unwrap();
        assert_eq!(load_key(&path).unwrap().public_key(), second.public_key());
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_readable_key_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.pem");
        save_key(&path, &DeviceKey::generate(), false).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(insecure_mode(&path).unwrap(), Some(0o644));
        assert!(
            load_key(&path).is_ok(),
            "an exposed key still loads, with a warning"
        );
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.pem");
        fs::write(&path, "not a key").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(load_key(&path), Err(KeyError::BadPem(_))));
        assert!(matches!(
            load_key(&dir.path().join("missing.pem")),
            Err(KeyError::Io { .. })
        ));
    }
}
