//! The request log: one JSON line per request. A request only appends its
//! line to a buffer (no write, no wake-up); a thread of its own writes the
//! buffer out every 50 ms, so a burst costs one write and no request ever
//! waits on the log. `sync` writes everything out at once (shutdown).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// Lines waiting to be written at most (a stalled stderr must not grow
/// memory without bound): beyond it, lines are dropped and counted.
const MAX_PENDING: usize = 8 << 20;

type Sink = Box<dyn Write + Send>;

struct Shared {
    pending: Mutex<Vec<u8>>,
    out: Mutex<Sink>,
    dropped: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// Write what is pending. The writer is locked first, so a `sync` that
    /// returns has seen every earlier line written (none is in another
    /// thread's hands).
    fn write_out(&self, out: &mut Sink) {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return;
        }
        let _ = out.write_all(&batch);
        let _ = out.flush();
    }

    fn write_out_blocking(&self) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        self.write_out(&mut out);
    }
}

pub struct RequestLog {
    shared: Arc<Shared>,
}

impl RequestLog {
    /// Lines to stderr.
    pub fn stderr() -> Self {
        Self::to(std::io::stderr())
    }

    pub fn to<W: Write + Send + 'static>(out: W) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::with_capacity(64 << 10)),
            out: Mutex::new(Box::new(out)),
            dropped: std::sync::atomic::AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("request-log".into())
            .spawn(move || {
                while let Some(shared) = weak.upgrade() {
                    shared.write_out_blocking();
                    drop(shared);
                    std::thread::sleep(FLUSH_EVERY);
                }
            })
            .ok();
        RequestLog { shared }
    }

    /// Append one JSON line (serialised straight into the buffer).
    pub fn line<T: serde::Serialize>(&self, line: &T) {
        let mut pending = self
            .shared
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_PENDING {
            self.shared
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        let start = pending.len();
        if serde_json::to_writer(&mut *pending, line).is_ok() {
            pending.push(b'\n');
        } else {
            pending.truncate(start);
        }
    }

    /// Lines dropped because the writer had fallen `MAX_PENDING` behind.
    pub fn dropped(&self) -> u64 {
        self.shared
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Write every line logged so far; gives up after 2 s when the writer
    /// is stuck (a stalled stderr must not hang shutdown).
    pub fn sync(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            if let Ok(mut out) = self.shared.out.try_lock() {
                self.shared.write_out(&mut out);
                return;
            }
            if std::time::Instant::now() >= deadline {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        self.sync();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_out_after_sync_in_order_and_soon_without_it() {
        let sink = Buf::default();
        let log = RequestLog::to(sink.clone());
        for i in 0..1000 {
            log.line(&serde_json::json!({ "n": i }));
        }
        log.sync();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        assert_eq!(lines[999], "{\"n\":999}");
        log.line(&"late");
        std::thread::sleep(FLUSH_EVERY * 4);
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(
            text.ends_with("\"late\"\n"),
            "written by the thread without a sync"
        );
    }
}
