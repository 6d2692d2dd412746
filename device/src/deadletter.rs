//! The dead-letter file, bounded: windows the processor refused are kept as
//! JSON lines for a person to look at (or to put back with `power-meter
//! resend-dead-letters`), but a meter that is refused for weeks (revoked, or
//! a clock that will not sync) must not fill its SD card with them.
//!
//! When an append would take `dead-letter.jsonl` past `max_bytes`, the file
//! first becomes `dead-letter.1.jsonl` (replacing the one before), so the
//! two files together hold at most about twice the limit and always the
//! newest lines. Every append is fsynced before the outbox forgets the
//! window, as before.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Default limit of one dead-letter file (two are kept): 8 MiB, about 20,000
/// refused windows.
pub const DEFAULT_MAX_BYTES: u64 = 8 << 20;

/// The dead-letter file of a data directory.
#[derive(Debug, Clone)]
pub struct DeadLetterFile {
    pub path: PathBuf,
    pub max_bytes: u64,
}

impl DeadLetterFile {
    pub fn new(dir: &Path, max_bytes: u64) -> Self {
        DeadLetterFile {
            path: dir.join("dead-letter.jsonl"),
            max_bytes: max_bytes.max(1),
        }
    }

    /// The older file, where the current one goes when it is full.
    pub fn rotated(&self) -> PathBuf {
        self.path.with_file_name("dead-letter.1.jsonl")
    }

    /// Appends one line (fsynced), rotating first when the line would take
    /// the file past the limit. Returns whether it rotated.
    pub fn append(&self, line: &str) -> std::io::Result<bool> {
        let len = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let rotate = len > 0 && len + line.len() as u64 + 1 > self.max_bytes;
        if rotate {
            std::fs::rename(&self.path, self.rotated())?;
        }
        let mut file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        writeln!(file, "{line}")?;
        file.sync_all()?;
        Ok(rotate)
    }

    /// Every kept line, oldest first (the rotated file, then the current one).
    pub fn read_all(&self) -> std::io::Result<String> {
        let mut text = String::new();
        for p in [self.rotated(), self.path.clone()] {
            match std::fs::read_to_string(&p) {
                Ok(t) => text.push_str(&t),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(text)
    }

    /// Removes both files.
    pub fn clear(&self) -> std::io::Result<()> {
        for p in [self.rotated(), self.path.clone()] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_stay_under_twice_the_limit_and_keep_the_newest_lines() {
        let dir = tempfile::tempdir().unwrap();
        let f = DeadLetterFile::new(dir.path(), 350);
        let lines: Vec<String> = (0..40)
            .map(|i| format!("{{\"n\":{i:03},\"pad\":\"{}\"}}", "x".repeat(80)))
            .collect();
        let rotations = lines.iter().filter(|l| f.append(l).unwrap()).count();
        assert!(rotations >= 10, "{rotations}");
        for p in [f.path.clone(), f.rotated()] {
            assert!(std::fs::metadata(&p).unwrap().len() <= 350, "{}", p.display());
        }
        let text = f.read_all().unwrap();
        let kept_lines: Vec<&str> = text.lines().collect();
        assert!(kept_lines.len() >= 3, "{}", kept_lines.len());
        // The newest lines, in order, with nothing in between lost.
        let tail = &lines[lines.len() - kept_lines.len()..];
        assert_eq!(kept_lines, tail.iter().map(String::as_str).collect::<Vec<_>>());
        f.clear().unwrap();
        assert_eq!(f.read_all().unwrap(), "");
    }
}
