//! Escalations become teacher data: every escalated request and the
//! upstream's answer is appended to a teacher-log directory in exactly the
//! `distill teach` format (`logs.jsonl`), so `distill train` with
//! `teacher = "<dir>"` and the curation `teacher` step read it unchanged.
//! With `log-texts` on, `texts.jsonl` holds `{id, text}` (the text after the
//! model's preprocessing: PII already replaced) for `distill data import`.
//!
//! Durability: whole lines, flushed to the OS per record (a killed process
//! loses at most the line being written; the reader ignores a partial last
//! line), fsync on graceful shutdown. The directory is locked while serving.

use distill_core::lock::DirLock;
use distill_core::teacher_log::{LogWriter, TeacherRecord};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub const TEXTS_FILE: &str = "texts.jsonl";

pub struct EscalationLog {
    inner: Mutex<Inner>,
    pub dir: PathBuf,
    _lock: DirLock,
}

struct Inner {
    writer: LogWriter,
    texts: Option<File>,
    /// Ids already logged and whether their record succeeded (a text
    /// escalated again is logged again only to replace a failed record).
    seen: HashMap<String, bool>,
}

impl EscalationLog {
    pub fn open(dir: &Path, params_hash: &str, log_texts: bool) -> Result<Self, crate::Error> {
        let lock = DirLock::acquire(dir, "distill serve")?;
        let _ = lock.remove_stale_temps(dir, &[]);
        let (writer, records) =
            LogWriter::open(dir, params_hash).map_err(|e| crate::Error::Log(e.to_string()))?;
        let texts = if log_texts {
            let path = dir.join(TEXTS_FILE);
            Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| crate::Error::Log(format!("{}: {e}", path.display())))?,
            )
        } else {
            None
        };
        Ok(EscalationLog {
            inner: Mutex::new(Inner {
                writer,
                texts,
                seen: records
                    .into_iter()
                    .map(|r| (r.id.clone(), !r.failed()))
                    .collect(),
            }),
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    /// Append one escalation (failed upstream calls are logged too: teach's
    /// `--retry-failed` semantics apply to them).
    pub fn append(&self, rec: &TeacherRecord, text: &str) -> Result<(), String> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let ok = !rec.failed();
        let first = match inner.seen.get(&rec.id) {
            None => true,
            Some(&was_ok) if was_ok || !ok => return Ok(()),
            Some(_) => false,
        };
        inner.seen.insert(rec.id.clone(), ok);
        if first && let Some(f) = inner.texts.as_mut() {
            let mut line = serde_json::json!({"id": rec.id, "text": text}).to_string();
            line.push('\n');
            f.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
        }
        inner.writer.append(rec).map_err(|e| e.to_string())
    }

    /// fsync both files (graceful shutdown).
    pub fn sync(&self) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let _ = inner.writer.sync();
        if let Some(f) = &inner.texts {
            let _ = f.sync_data();
        }
    }
}
