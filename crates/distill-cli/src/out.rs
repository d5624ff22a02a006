//! stdout for data, written so that a closed pipe never panics.
//!
//! `println!` panics (exit 101) when stdout is a pipe whose reader has gone
//! (`distill data stats ds | head -1`). Here a broken pipe silences stdout
//! for the rest of the command instead: the command finishes its work (the
//! dataset, the report) and exits with the code it would have had, with no
//! message. Other write errors (a full disk under `> file`) are errors.

use std::fmt::Display;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write found stdout's reader gone.
static CLOSED: AtomicBool = AtomicBool::new(false);

fn write(text: &dyn Display, newline: bool) -> std::io::Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let result = if newline {
        writeln!(out, "{text}")
    } else {
        write!(out, "{text}")
    }
    .and_then(|()| out.flush());
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        other => other,
    }
}

/// Write `text` to stdout and flush it.
pub fn print(text: impl Display) -> std::io::Result<()> {
    write(&text, false)
}

/// Write `text` and a newline to stdout and flush it.
pub fn println(text: impl Display) -> std::io::Result<()> {
    write(&text, true)
}

/// Whether `error` (or one of its causes) is a write to a closed pipe,
/// including one met inside `serde_json::to_writer` (whose error hides the
/// io::Error from `source()`).
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let pipe = Some(std::io::ErrorKind::BrokenPipe);
        cause.downcast_ref::<std::io::Error>().map(|e| e.kind()) == pipe
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == pipe
    })
}
