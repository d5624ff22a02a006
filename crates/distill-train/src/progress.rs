//! Progress on stderr: a bar on a terminal, periodic plain lines otherwise.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<ProgressBar>,
    last_line: Instant,
    every: Duration,
    total: u64,
    started: Instant,
    start_step: u64,
}

impl Progress {
    pub fn new(interactive: bool, total: u64, start_step: u64) -> Self {
        let bar = interactive.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} epoch {prefix} [{bar:30}] {pos}/{len} steps  {msg}  ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_position(start_step);
            bar
        });
        Progress {
            bar,
            last_line: Instant::now(),
            every: Duration::from_secs(10),
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
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(format!("{}/{epochs}", epoch + 1));
                bar.set_message(msg);
                bar.set_position(step);
            }
            None => {
                if self.last_line.elapsed() >= self.every {
                    self.last_line = Instant::now();
                    let done = step.saturating_sub(self.start_step).max(1) as f64;
                    let left = self.total.saturating_sub(step) as f64;
                    let eta = self.started.elapsed().as_secs_f64() / done * left;
                    eprintln!(
                        "train: epoch {}/{epochs} step {step}/{} {msg} ETA {eta:.0}s",
                        epoch + 1,
                        self.total
                    );
                }
            }
        }
    }

    /// A line that must not be overwritten by the bar.
    pub fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
