//! Exclusive directory locks: every command that writes a directory (teacher
//! logs, run directories, datasets, bundles) holds one for as long as it
//! writes, so two processes never interleave their writes into one directory.
//!
//! The lock is an OS file lock (`flock`) on `DIR/.distill.lock`: the kernel
//! releases it when the process exits, however it exits (a SIGKILL included),
//! so a stale lock never blocks the next run. The file holds the holder's pid
//! and command for the error message; it is left in place (removing it would
//! race with the next locker).

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside a locked directory.
pub const LOCK_FILE: &str = ".distill.lock";

/// An exclusive lock on a directory, released on drop.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    dir: PathBuf,
}

impl DirLock {
    /// Lock `dir` (created if absent) for `what` (e.g. "distill teach").
    /// Fails at once, naming the holder, when another process holds it.
    pub fn acquire(dir: &Path, what: &str) -> Result<DirLock> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.take(256).read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                    holder: if holder.is_empty() {
                        "another process".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(&path, e)),
        }
        // Record who holds it (best effort: the lock itself is what counts).
        let _ = file.set_len(0);
        let _ = file.seek(SeekFrom::Start(0));
        let _ = writeln!(file, "{what} (pid {})", std::process::id());
        let _ = file.flush();
        Ok(DirLock {
            _file: file,
            dir: dir.to_path_buf(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Remove the temporary files and directories that a killed writer of
    /// this directory left behind in `subdir` (the locked directory itself or
    /// a directory inside it): files named `.distill-*.tmp`
    /// ([`crate::fsutil::write_atomic`]) and directories matching one of
    /// `dir_patterns` (`*` wildcards, e.g. `.tmp-step-*`). Nothing else is
    /// touched, symbolic links are never followed, and only the holder of the
    /// lock can call this, so no live writer loses its temp files. Returns
    /// what was removed.
    pub fn remove_stale_temps(&self, subdir: &Path, dir_patterns: &[&str]) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        if !subdir.starts_with(&self.dir) {
            return Ok(removed);
        }
        let entries = match std::fs::read_dir(subdir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
            Err(e) => return Err(Error::io(subdir, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // `file_type` does not follow symbolic links.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_file() && crate::fsutil::wildcard_match(TEMP_FILE_PATTERN, &name) {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                removed.push(path);
            } else if kind.is_dir()
                && dir_patterns
                    .iter()
                    .any(|p| crate::fsutil::wildcard_match(p, &name))
            {
                std::fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
                removed.push(path);
            }
        }
        removed.sort();
        Ok(removed)
    }
}

/// Names of the temporary files [`crate::fsutil::write_atomic`] creates.
pub const TEMP_FILE_PATTERN: &str = ".distill-*.tmp";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_fails_fast_and_names_the_holder_then_frees_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path(), "distill teach").unwrap();
        let err = DirLock::acquire(dir.path(), "distill teach").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("distill teach (pid"), "{msg}");
        assert!(msg.contains("is being written by"), "{msg}");
        drop(first);
        DirLock::acquire(dir.path(), "again").expect("free after drop");
    }

    #[test]
    fn stale_temps_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let lock = DirLock::acquire(root, "test").unwrap();
        std::fs::write(root.join(".distill-abc123.tmp"), "half").unwrap();
        std::fs::write(root.join("data.distill-abc.tmp"), "keep").unwrap();
        std::fs::write(root.join(".other.tmp"), "keep").unwrap();
        std::fs::write(root.join("keep.json"), "keep").unwrap();
        std::fs::create_dir_all(root.join("ckpt/.tmp-step-000000007")).unwrap();
        std::fs::write(root.join("ckpt/.tmp-step-000000007/model.bpk"), "x").unwrap();
        std::fs::create_dir_all(root.join("ckpt/step-000000005")).unwrap();
        // A directory named like a temp file is not a temp file.
        std::fs::create_dir_all(root.join(".distill-dir.tmp")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join(".distill-x.tmp"), "theirs").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(
            outside.path().join(".distill-x.tmp"),
            root.join(".distill-link.tmp"),
        )
        .unwrap();

        let removed = lock.remove_stale_temps(root, &[]).unwrap();
        assert_eq!(removed, vec![root.join(".distill-abc123.tmp")]);
        let removed = lock
            .remove_stale_temps(&root.join("ckpt"), &[".tmp-step-*"])
            .unwrap();
        assert_eq!(removed, vec![root.join("ckpt/.tmp-step-000000007")]);
        // Only inside the locked directory.
        assert!(
            lock.remove_stale_temps(outside.path(), &[])
                .unwrap()
                .is_empty()
        );
        for kept in [
            "data.distill-abc.tmp",
            ".other.tmp",
            "keep.json",
            "ckpt/step-000000005",
            ".distill-dir.tmp",
        ] {
            assert!(root.join(kept).exists(), "{kept}");
        }
        assert!(outside.path().join(".distill-x.tmp").exists());
        // A missing directory is fine.
        assert!(
            lock.remove_stale_temps(&root.join("nope"), &[])
                .unwrap()
                .is_empty()
        );
    }
}
