//! Writing a file so that readers see the old content or the new, never half
//! of either: write a temporary file beside the target, optionally fsync it,
//! then rename (or hard-link, when the target must not be replaced) it into
//! place. Key files, the meter's state file, screen frames and the applet
//! cache all use this one function. Also: reading a secret kept in a file
//! (a broker password), the one way both the meter and the processor do it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// How [`write_atomic`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteOptions {
    /// File mode, pinned after creation (an inherited default ACL cannot widen it).
    pub mode: u32,
    /// fsync the file before it becomes visible, and the directory after.
    pub durable: bool,
    /// Replace an existing file; when `false` an existing target is
    /// `ErrorKind::AlreadyExists` and stays untouched.
    pub replace: bool,
}

impl WriteOptions {
    /// A secret: 0600, durable, never replacing.
    pub const SECRET: WriteOptions = WriteOptions {
        mode: 0o600,
        durable: true,
        replace: false,
    };
    /// A file others may read, replaced in place, not synced (state, frames, caches).
    pub const SHARED: WriteOptions = WriteOptions {
        mode: 0o644,
        durable: false,
        replace: true,
    };
}

fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `bytes` to `path` atomically (see the module doc). Creates the
/// parent directory when missing.
/// A secret kept in a file: its first line, without the line end (so a
/// trailing newline from `echo` or an editor is not part of the password).
pub fn read_secret(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

pub fn write_atomic(path: &Path, bytes: &[u8], opts: WriteOptions) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = dir_of(path);
    fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(opts.mode)
            .open(&tmp)?;
        file.set_permissions(fs::Permissions::from_mode(opts.mode))?;
        file.write_all(bytes)?;
        if opts.durable {
            file.sync_all()?;
        }
        if opts.replace {
            fs::rename(&tmp, path)
        } else {
            fs::hard_link(&tmp, path)
        }
    })();
    let _ = fs::remove_file(&tmp);
    result?;
    if opts.durable
        && let Ok(d) = fs::File::open(&dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_the_first_line_without_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("password");
        std::fs::write(&p, "s3cret\nnot this\n").unwrap();
        assert_eq!(read_secret(&p).unwrap(), "s3cret");
        std::fs::write(&p, "").unwrap();
        assert_eq!(read_secret(&p).unwrap(), "");
        assert!(read_secret(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn writes_with_the_mode_replaces_or_refuses_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file");
        write_atomic(&path, b"one", WriteOptions::SECRET).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let e = write_atomic(&path, b"two", WriteOptions::SECRET).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one", "a secret is never replaced");
        write_atomic(&path, b"three", WriteOptions::SHARED).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let names: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }
}
