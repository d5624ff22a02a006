//! Teacher logs: the record types and the reader/writer live in
//! [`distill_core::teacher_log`] (one contract for every reader: curation,
//! training and evaluation read the same file the same way); re-exported here
//! for callers of this crate.

pub use distill_core::teacher_log::{
    Counts, DatasetRef, LOGS_FILE, LogContents, LogWriter, MANIFEST_FILE, RecordError, RunStats,
    TEACHER_SCHEMA_VERSION, TeacherId, TeacherManifest, TeacherRecord, Usage, compact, log_file,
    read_log, read_log_lines,
};

/// Index of the largest value (first on ties).
pub fn argmax(v: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, x) in v.iter().enumerate() {
        if best.is_none_or(|b| *x > v[b]) {
            best = Some(i);
        }
    }
    best
}
