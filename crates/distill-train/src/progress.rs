//! Training progress on stderr: a bar on a terminal, periodic plain lines otherwise.

use distill_core::progress::Bar;
use std::time::Instant;

pub struct Progress {
    bar: Bar,
    total: u64,
    started: Instant,
    start_step: u64,
}

impl Progress {
    pub fn new(interactive: bool, total: u64, start_step: u64) -> Self {
        Progress {
            bar: Bar::new(
                interactive,
                total,
                start_step,
                "{spinner} epoch {prefix} [{bar:30}] {pos}/{len} steps  {msg}  ETA {eta}",
            ),
            total,
            started: Instant::now(),
            start_step,
        }
    }

    pub fn step(
        &mut self,
        step: u64,
        epoch: usize,
        epochs: usize,
        loss: f64,
        lr: f64,
        ex_per_s: f64,
    ) {
        let msg = format!("loss {loss:.4}  lr {lr:.2e}  {ex_per_s:.0} ex/s");
        let (total, started, start_step) = (self.total, self.started, self.start_step);
        self.bar.update(
            step,
            Some(format!("{}/{epochs}", epoch + 1)),
            msg,
            false,
            |msg| {
                let done = step.saturating_sub(start_step).max(1) as f64;
                let left = total.saturating_sub(step) as f64;
                let eta = started.elapsed().as_secs_f64() / done * left;
                format!(
                    "train: epoch {}/{epochs} step {step}/{total} {msg} ETA {eta:.0}s",
                    epoch + 1
                )
            },
        );
    }

    /// A line that must not be overwritten by the bar.
    pub fn line(&self, text: &str) {
        self.bar.line(text);
    }

    pub fn finish(&self) {
        self.bar.finish();
    }
}
