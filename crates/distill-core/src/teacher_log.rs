//! The teacher-log contract: `logs.jsonl` (one [`TeacherRecord`] per example
//! id, append-only) and `teacher.json` ([`TeacherManifest`]: identity,
//! parameters, counts, usage and cost totals). `distill teach` writes them;
//! curation, training and evaluation read them, all through [`read_log_lines`].
//!
//! One rule for every reader: a last line without a trailing newline that is
//! not a whole record is the partial write of a killed run and is ignored
//! (reported in [`LogContents::partial`]; `distill teach` redoes that record).
//! A last line without a newline that is a whole record (a hand-made
//! soft-label file) is read like any other line. Any other line that is not a
//! record is an error naming `file:line`. Blank lines are skipped. When an id
//! appears more than once, the last record wins. [`LogContents::sha256`] is
//! the digest of the bytes read, hashed as they are parsed.
//!
//! Plain soft-label files (`{"id": ..., "probs": {...}}` per line, without
//! `teacher`) are records too: every field but `id` has a default.
//!
//! The writer appends one whole line per record and flushes it, so a process
//! killed at any point leaves at most one partial last line. On open that
//! partial line is cut off (and a whole last record without its newline gets
//! one), and the ids already present are skipped: a resumed run neither loses
//! nor duplicates records, and never appends onto an unterminated line. When a record is redone
//! (`--retry-failed`), the newer line wins and the log is compacted to one line
//! per id, atomically.
//!
//! ```
//! use distill_core::teacher_log::{LogWriter, TeacherId, TeacherRecord, read_log_lines};
//! let dir = tempfile::tempdir()?;
//! let teacher = TeacherId { kind: "openai".into(), model: "m".into(), params_hash: "h".into() };
//! let (mut writer, existing) = LogWriter::open(dir.path(), "h")?;
//! assert!(existing.is_empty());
//! writer.append(&TeacherRecord::new("a".into(), teacher))?;
//! let log = read_log_lines(writer.path())?;
//! assert_eq!(log.records[0].id, "a");
//! assert_eq!(log.partial, None);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::error::{Error, Result};
use crate::hash::HashingReader;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const LOGS_FILE: &str = "logs.jsonl";
pub const MANIFEST_FILE: &str = "teacher.json";
pub const TEACHER_SCHEMA_VERSION: u32 = 1;

/// Who answered: kind, model and a hash of every parameter that shapes the output.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TeacherId {
    pub kind: String,
    pub model: String,
    pub params_hash: String,
}

/// Tokens billed for one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// Why a record has no (complete) answer. Records with errors are kept and
/// redone by `--retry-failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordError {
    /// `connect`, `timeout`, `http-429`, `http-500`, `invalid-response`, `parse`, ...
    pub kind: String,
    pub message: String,
}

/// One line of `logs.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeacherRecord {
    pub id: String,
    /// Absent in plain soft-label files (then empty).
    #[serde(default)]
    pub teacher: TeacherId,
    /// The raw text the teacher returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Parsed single label (`classify`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Parsed label set (`multilabel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    /// Parsed fields (`extract`): field name -> values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, Vec<String>>>,
    /// `extract`: the field values placed in the text as character spans
    /// (exact, case/whitespace-insensitive, or bounded fuzzy; never invented).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spans: Option<Vec<crate::types::Span>>,
    /// `extract`: values that could not be placed, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unaligned: Vec<crate::spans::Unaligned>,
    /// `classify`: a distribution over the dataset's label set (renormalised
    /// over it). `multilabel`: independent per-label probabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probs: Option<BTreeMap<String, f64>>,
    /// Probability mass of the label set in what the teacher returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<f64>,
    /// Where `probs` came from: `logprobs`, `hard` (one-hot on the parsed answer) or `exact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probs_source: Option<String>,
    #[serde(default)]
    pub usage: Usage,
    #[serde(default)]
    pub latency_ms: f64,
    /// Spent on this call (0 when answered from the cache).
    #[serde(default)]
    pub cost: f64,
    /// Answered from the content-addressed cache without a call.
    #[serde(default)]
    pub cached: bool,
    /// Attempts made (1 = no retry).
    #[serde(default)]
    pub attempts: u32,
    /// Error kinds of the attempts that were retried, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retried: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordError>,
}

impl TeacherRecord {
    /// A record with nothing but identity filled in.
    pub fn new(id: String, teacher: TeacherId) -> Self {
        TeacherRecord {
            id,
            teacher,
            output: None,
            label: None,
            labels: None,
            fields: None,
            spans: None,
            unaligned: Vec::new(),
            probs: None,
            coverage: None,
            probs_source: None,
            usage: Usage::default(),
            latency_ms: 0.0,
            cost: 0.0,
            cached: false,
            attempts: 0,
            retried: Vec::new(),
            error: None,
        }
    }

    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    /// The most probable label, when there are probs.
    pub fn top(&self) -> Option<(&str, f64)> {
        self.probs.as_ref().and_then(|p| {
            p.iter()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(l, &p)| (l.as_str(), p))
        })
    }
}

/// Totals over a log, for `teacher.json` and the summary line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts {
    pub records: u64,
    pub ok: u64,
    pub failed: u64,
    /// Records answered from the cache (no call).
    pub cached: u64,
    /// HTTP requests sent (attempts), retries included.
    pub requests: u64,
    pub retries: u64,
    /// Failed records by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Retried attempts by error kind.
    pub retried: BTreeMap<String, u64>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost: f64,
    /// Mean `coverage` over records with probs.
    pub mean_coverage: Option<f64>,
    /// `extract`: field values placed in the text, and values left unplaced.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub aligned_values: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unaligned_values: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Counts {
    pub fn of<'a>(records: impl IntoIterator<Item = &'a TeacherRecord>) -> Self {
        let mut c = Counts::default();
        let (mut cov_sum, mut cov_n) = (0.0, 0u64);
        for r in records {
            c.records += 1;
            match &r.error {
                Some(e) => {
                    c.failed += 1;
                    *c.errors.entry(e.kind.clone()).or_insert(0) += 1;
                }
                None => c.ok += 1,
            }
            if r.cached {
                c.cached += 1;
            } else {
                c.requests += u64::from(r.attempts);
                c.retries += u64::from(r.attempts.saturating_sub(1));
                c.prompt_tokens += r.usage.prompt_tokens;
                c.completion_tokens += r.usage.completion_tokens;
                c.cost += r.cost;
                for k in &r.retried {
                    *c.retried.entry(k.clone()).or_insert(0) += 1;
                }
            }
            if let Some(cov) = r.coverage {
                cov_sum += cov;
                cov_n += 1;
            }
            c.aligned_values += r.spans.as_ref().map_or(0, |s| s.len() as u64);
            c.unaligned_values += r.unaligned.len() as u64;
        }
        c.mean_coverage = (cov_n > 0).then(|| cov_sum / cov_n as f64);
        c
    }
}

/// `teacher.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TeacherManifest {
    pub schema_version: u32,
    /// `running` while collecting, then `completed` (or `incomplete`).
    pub status: String,
    pub teacher: TeacherId,
    /// Every parameter in `params_hash`, in the clear (never the API key).
    pub params: serde_json::Value,
    pub dataset: DatasetRef,
    /// Rows selected for labelling.
    pub rows: u64,
    /// Distinct texts (example ids) among those rows: rows with the same text
    /// share one id, one request and one record. Complete when
    /// `counts.records` reaches it.
    #[serde(default)]
    pub distinct_texts: u64,
    pub counts: Counts,
    /// Wall time and throughput of the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunStats>,
    pub created_by: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetRef {
    pub path: String,
    pub name: String,
    pub task: crate::types::Task,
    pub labels: Vec<String>,
    pub examples_sha256: String,
}

/// What one invocation did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunStats {
    pub done: u64,
    pub cached: u64,
    pub failed: u64,
    pub requests: u64,
    pub wall_s: f64,
    pub requests_per_s: f64,
    /// Mean requests in flight / concurrency over the run (1.0 = always at the limit).
    pub utilisation: f64,
    pub concurrency: usize,
    pub resumed_from: u64,
}

/// The log file of `path`: `path/logs.jsonl` for a teacher-log directory,
/// else `path` itself (a `logs.jsonl` or a plain soft-label file).
pub fn log_file(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(LOGS_FILE)
    } else {
        path.to_path_buf()
    }
}

/// A log as read: records (last per id wins, in first-seen order) with the
/// exact line each came from, so compaction never re-serialises a record.
#[derive(Debug, Default)]
pub struct LogContents {
    pub path: PathBuf,
    pub records: Vec<TeacherRecord>,
    pub lines: Vec<String>,
    /// The 1-based line number each record was read from (for messages).
    pub line_numbers: Vec<u64>,
    /// Line number of an ignored partial last line (no trailing newline,
    /// not a whole record).
    pub partial: Option<u64>,
    /// A last line without its newline (partial or a whole record), blank
    /// lines or duplicate ids: compaction would change the file.
    pub dirty: bool,
    /// Hex sha256 of the bytes read (the whole file; of no bytes when it is
    /// absent), hashed in the same pass as they were parsed.
    pub sha256: String,
}

/// Read a log: last record per id wins. Returns the records in first-seen
/// order, and whether compaction would change the file.
pub fn read_log(path: &Path) -> Result<(Vec<TeacherRecord>, bool)> {
    let c = read_log_lines(path)?;
    Ok((c.records, c.dirty))
}

/// Read a log file (an absent file reads as an empty log; see the module
/// documentation for the rules).
pub fn read_log_lines(path: &Path) -> Result<LogContents> {
    let mut out = LogContents {
        path: path.to_path_buf(),
        sha256: crate::hash::sha256_hex(b""),
        ..Default::default()
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(path, e)),
    };
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut reader = BufReader::new(HashingReader::new(file));
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| Error::io(path, e))?;
        if read == 0 {
            break;
        }
        n += 1;
        let terminated = line.ends_with('\n');
        if line.trim().is_empty() {
            out.dirty = true;
            continue;
        }
        let rec: TeacherRecord = match serde_json::from_str(&line) {
            Ok(rec) => rec,
            // A write cut short by a kill: the record is redone.
            Err(_) if !terminated => {
                out.partial = Some(n);
                out.dirty = true;
                break;
            }
            Err(e) => {
                return Err(Error::TeacherRecord {
                    path: path.to_path_buf(),
                    line: n,
                    message: e.to_string(),
                });
            }
        };
        if !terminated {
            // A whole last record without its newline (a hand-made file):
            // kept, and compaction writes the newline.
            line.push('\n');
            out.dirty = true;
        }
        match index.get(&rec.id) {
            Some(&i) => {
                out.dirty = true;
                out.records[i] = rec;
                out.lines[i] = line.clone();
                out.line_numbers[i] = n;
            }
            None => {
                index.insert(rec.id.clone(), out.records.len());
                out.records.push(rec);
                out.lines.push(line.clone());
                out.line_numbers.push(n);
            }
        }
    }
    // Only a partial last line stops the loop early, at the end of the file;
    // read on anyway so that the digest is of the whole file.
    std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| Error::io(path, e))?;
    out.sha256 = reader.into_inner().finish();
    Ok(out)
}

/// Append-only writer over `logs.jsonl`.
pub struct LogWriter {
    path: PathBuf,
    file: File,
}

impl LogWriter {
    /// Open a log for appending, first compacting it (one line per id, no
    /// partial line) when needed. A log written by another teacher setup
    /// (`params_hash` differs) is refused before anything is touched.
    /// Returns the writer and the records present.
    pub fn open(dir: &Path, params_hash: &str) -> Result<(Self, Vec<TeacherRecord>)> {
        let path = dir.join(LOGS_FILE);
        let contents = read_log_lines(&path)?;
        if let Some(first) = contents.records.first()
            && first.teacher.params_hash != params_hash
        {
            return Err(Error::ForeignTeacherLog {
                path,
                found: first.teacher.params_hash.clone(),
                expected: params_hash.to_string(),
            });
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        if contents.dirty {
            compact(&path, &contents)?;
        }
        let records = contents.records;
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        file.seek(SeekFrom::End(0))
            .map_err(|e| Error::io(&path, e))?;
        Ok((LogWriter { path, file }, records))
    }

    /// Append one record as one line, flushed to the OS before returning.
    pub fn append(&mut self, record: &TeacherRecord) -> Result<()> {
        let mut line = serde_json::to_vec(record).map_err(|source| Error::Json {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|_| self.file.flush())
            .map_err(|e| Error::io(&self.path, e))
    }

    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Rewrite a log atomically with one line per id (the lines as they were written).
pub fn compact(path: &Path, contents: &LogContents) -> Result<()> {
    crate::fsutil::write_atomic(path, |w| {
        for line in &contents.lines {
            w.write_all(line.as_bytes())?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, err: bool) -> TeacherRecord {
        let mut r = TeacherRecord::new(
            id.into(),
            TeacherId {
                kind: "openai".into(),
                model: "m".into(),
                params_hash: "h".into(),
            },
        );
        r.attempts = 1;
        if err {
            r.error = Some(RecordError {
                kind: "http-500".into(),
                message: "boom".into(),
            });
        }
        r
    }

    /// The wire format of one record: field names, order, and what is left
    /// out when empty. Readers in other crates and other tools rely on it.
    #[test]
    fn record_wire_format_is_pinned() {
        let mut r = rec("3f2a", false);
        r.output = Some("spam".into());
        r.label = Some("spam".into());
        r.probs = Some(BTreeMap::from([
            ("ham".into(), 0.25),
            ("spam".into(), 0.75),
        ]));
        r.coverage = Some(0.5);
        r.probs_source = Some("logprobs".into());
        r.usage = Usage {
            prompt_tokens: 40,
            completion_tokens: 1,
        };
        r.latency_ms = 12.5;
        r.cost = 0.0001;
        r.attempts = 2;
        r.retried = vec!["http-429".into()];
        let line = r#"{"id":"3f2a","teacher":{"kind":"openai","model":"m","params_hash":"h"},"output":"spam","label":"spam","probs":{"ham":0.25,"spam":0.75},"coverage":0.5,"probs_source":"logprobs","usage":{"prompt_tokens":40,"completion_tokens":1},"latency_ms":12.5,"cost":0.0001,"cached":false,"attempts":2,"retried":["http-429"]}"#;
        assert_eq!(serde_json::to_string(&r).unwrap(), line);
        let back: TeacherRecord = serde_json::from_str(line).unwrap();
        assert_eq!(back, r);

        let failed = rec("b", true);
        let line = r#"{"id":"b","teacher":{"kind":"openai","model":"m","params_hash":"h"},"usage":{"prompt_tokens":0,"completion_tokens":0},"latency_ms":0.0,"cost":0.0,"cached":false,"attempts":1,"error":{"kind":"http-500","message":"boom"}}"#;
        assert_eq!(serde_json::to_string(&failed).unwrap(), line);
        assert_eq!(serde_json::from_str::<TeacherRecord>(line).unwrap(), failed);

        // A plain soft-label line (no teacher) is a record too.
        let plain: TeacherRecord =
            serde_json::from_str(r#"{"id":"c","probs":{"ham":1.0}}"#).unwrap();
        assert_eq!(plain.teacher, TeacherId::default());
        assert_eq!(plain.top(), Some(("ham", 1.0)));
        assert!(!plain.failed());
    }

    #[test]
    fn partial_last_line_is_cut_and_last_record_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOGS_FILE);
        let mut text = String::new();
        for r in [rec("a", true), rec("b", false), rec("a", false)] {
            text.push_str(&serde_json::to_string(&r).unwrap());
            text.push('\n');
        }
        text.push_str("{\"id\":\"c\",\"teach"); // killed mid-write
        std::fs::write(&path, text).unwrap();
        let log = read_log_lines(&path).unwrap();
        assert_eq!(log.partial, Some(4));
        let (mut w, records) = LogWriter::open(dir.path(), "h").unwrap();
        assert_eq!(records.len(), 2);
        assert!(!records[0].failed(), "the later record for `a` wins");
        w.append(&rec("c", false)).unwrap();
        let (records, dirty) = read_log(&path).unwrap();
        assert!(!dirty);
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        let c = Counts::of(&records);
        assert_eq!((c.records, c.ok, c.failed, c.requests), (3, 3, 0, 3));
    }

    #[test]
    fn an_invalid_line_before_the_last_is_an_error_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOGS_FILE);
        let good = serde_json::to_string(&rec("a", false)).unwrap();
        std::fs::write(&path, format!("{good}\n{{\"id\":\"b\",\"teach\n{good}\n")).unwrap();
        let msg = read_log_lines(&path).unwrap_err().to_string();
        assert!(
            msg.contains(&format!("{}:2: invalid teacher record", path.display())),
            "{msg}"
        );
        // A whole last record without its newline is a record (and makes
        // the log dirty: compaction writes the newline).
        std::fs::write(&path, format!("{good}\n{good}")).unwrap();
        let log = read_log_lines(&path).unwrap();
        assert_eq!((log.records.len(), log.partial, log.dirty), (1, None, true));
        assert_eq!(log.line_numbers, [2]);
    }

    /// A hand-made soft-label file often ends without a newline: its last
    /// record is read, not dropped as a killed write; a resumed teach writes
    /// the newline before appending, so no record is glued onto it.
    #[test]
    fn a_whole_last_record_without_newline_is_kept_and_never_appended_onto() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOGS_FILE);
        let a = serde_json::to_string(&rec("a", false)).unwrap();
        let b = serde_json::to_string(&rec("b", false)).unwrap();
        std::fs::write(&path, format!("{a}\n{b}")).unwrap();
        let log = read_log_lines(&path).unwrap();
        let ids: Vec<&str> = log.records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(log.partial, None);

        let (mut w, records) = LogWriter::open(dir.path(), "h").unwrap();
        assert_eq!(records.len(), 2);
        w.append(&rec("c", false)).unwrap();
        drop(w);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!(
                "{a}\n{b}\n{}\n",
                serde_json::to_string(&rec("c", false)).unwrap()
            )
        );
        let log = read_log_lines(&path).unwrap();
        assert_eq!(
            (log.records.len(), log.partial, log.dirty),
            (3, None, false)
        );

        // A plain soft-label file, as written by hand.
        let plain = dir.path().join("soft.jsonl");
        std::fs::write(
            &plain,
            "{\"id\":\"x\",\"probs\":{\"a\":1.0}}\n{\"id\":\"y\",\"probs\":{\"b\":1.0}}",
        )
        .unwrap();
        let log = read_log_lines(&plain).unwrap();
        assert_eq!(log.records.len(), 2);
        assert_eq!(log.records[1].top(), Some(("b", 1.0)));
    }

    /// The digest is of the bytes read, whole file included (a partial last
    /// line too), in the same pass as the parse.
    #[test]
    fn the_digest_is_of_the_bytes_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOGS_FILE);
        assert_eq!(
            read_log_lines(&path).unwrap().sha256,
            crate::hash::sha256_hex(b"")
        );
        let text = format!(
            "{}\n\n{{\"id\":\"c\",\"teach",
            serde_json::to_string(&rec("a", false)).unwrap()
        );
        std::fs::write(&path, &text).unwrap();
        let log = read_log_lines(&path).unwrap();
        assert_eq!(log.partial, Some(3));
        assert_eq!(log.sha256, crate::hash::sha256_hex(text.as_bytes()));
        assert_eq!(log.sha256, crate::hash::sha256_file(&path).unwrap());
    }

    #[test]
    fn another_teacher_setup_is_refused_before_anything_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOGS_FILE);
        let text = format!("{}\n", serde_json::to_string(&rec("a", false)).unwrap());
        std::fs::write(&path, &text).unwrap();
        let err = LogWriter::open(dir.path(), "other").err().unwrap();
        assert!(err.to_string().contains("another teacher setup"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}
