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
}

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
}
