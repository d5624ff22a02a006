//! Atomic writes: a temp file in the target's directory, fsync, then rename, so
//! a crash never leaves a half-written artifact behind.

use crate::error::{Error, Result};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Write a file atomically through a buffered writer.
pub fn write_atomic<F>(path: &Path, write: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let temp = tempfile::Builder::new()
        .prefix(".distill-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    {
        let mut writer = BufWriter::new(temp.as_file());
        write(&mut writer).map_err(|e| Error::io(path, e))?;
        writer.flush().map_err(|e| Error::io(path, e))?;
    }
    temp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    // Temporary files are created 0600; outputs are ordinary files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = temp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    temp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Write pretty JSON atomically (with a trailing newline).
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<()> {
    write_atomic(path, |w| {
        serde_json::to_writer_pretty(&mut *w, value).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    })
}

/// Write JSON Lines atomically.
pub fn write_jsonl_atomic<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    write_atomic(path, |w| {
        for row in rows {
            serde_json::to_writer(&mut *w, row).map_err(std::io::Error::other)?;
            w.write_all(b"\n")?;
        }
        Ok(())
    })
}

/// Read and parse a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Read a file that may come from elsewhere (a bundle, a manifest): it must be
/// a regular file (not a symlink, FIFO or device: those can hang a reader or
/// feed it without end) of at most `max_bytes`, checked before reading.
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(Error::io(
            path,
            std::io::Error::other("not a regular file (symlinks, FIFOs and devices are refused)"),
        ));
    }
    if meta.len() > max_bytes {
        return Err(Error::io(
            path,
            std::io::Error::other(format!(
                "{} bytes, more than the {max_bytes} allowed for this file",
                meta.len()
            )),
        ));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > max_bytes {
        return Err(Error::io(
            path,
            std::io::Error::other(format!(
                "grew past the {max_bytes} bytes allowed while read"
            )),
        ));
    }
    Ok(bytes)
}

/// [`read_json`] through [`read_bounded`].
pub fn read_json_bounded<T: serde::de::DeserializeOwned>(path: &Path, max_bytes: u64) -> Result<T> {
    let bytes = read_bounded(path, max_bytes)?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Paths matching `pattern`, whose components may hold `*` (sorted; no `**`).
pub fn glob(pattern: &Path) -> Vec<std::path::PathBuf> {
    use std::path::PathBuf;
    let mut current = vec![PathBuf::new()];
    for component in pattern.components() {
        let part = component.as_os_str().to_string_lossy().into_owned();
        let mut next = Vec::new();
        for base in &current {
            if !part.contains('*') {
                next.push(base.join(&part));
                continue;
            }
            let listing = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let Ok(entries) = std::fs::read_dir(listing) else {
                continue;
            };
            for entry in entries.filter_map(|e| e.ok()) {
                let name = entry.file_name().to_string_lossy().into_owned();
                if wildcard_match(&part, &name) {
                    next.push(base.join(&name));
                }
            }
        }
        current = next;
    }
    let mut out: Vec<PathBuf> = current.into_iter().filter(|p| p.exists()).collect();
    out.sort();
    out
}

/// `*` matches any run of characters (including none); everything else is literal.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.json");
        write_json_atomic(&path, &vec![1, 2, 3]).expect("write");
        write_json_atomic(&path, &vec![4]).expect("rewrite");
        let back: Vec<i32> = read_json(&path).expect("read");
        assert_eq!(back, vec![4]);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 1, "temp files left behind: {names:?}");
    }

    #[test]
    fn bounded_reads_refuse_big_files_and_non_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.json");
        std::fs::write(&path, b"[1, 2]").expect("write");
        let v: Vec<i32> = read_json_bounded(&path, 100).expect("small file");
        assert_eq!(v, vec![1, 2]);
        assert!(read_bounded(&path, 3).is_err(), "over the bound");
        assert!(read_bounded(dir.path(), 100).is_err(), "a directory");
        #[cfg(unix)]
        {
            let link = dir.path().join("link.json");
            std::os::unix::fs::symlink(&path, &link).expect("symlink");
            assert!(read_bounded(&link, 100).is_err(), "a symlink");
            assert!(
                read_bounded(Path::new("/dev/zero"), 100).is_err(),
                "a device"
            );
        }
    }

    #[test]
    fn failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.txt");
        write_atomic(&path, |w| w.write_all(b"good")).expect("write");
        let err = write_atomic(&path, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("boom"))
        });
        assert!(err.is_err());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "good");
    }
}
