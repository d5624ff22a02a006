//! Progress on stderr: an indicatif bar on a terminal, a plain line every
//! `every` otherwise (logs and CI stay readable).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::{Duration, Instant};

pub struct Bar {
    bar: Option<ProgressBar>,
    last_line: Instant,
    every: Duration,
}

impl Bar {
    /// `template` is an indicatif template (`{bar}`, `{pos}`, `{len}`, `{msg}`, `{eta}`, `{prefix}`).
    pub fn new(interactive: bool, total: u64, pos: u64, template: &str) -> Self {
        let bar = interactive.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_position(pos);
            bar
        });
        Bar {
            bar,
            last_line: Instant::now(),
            every: Duration::from_secs(10),
        }
    }

    /// Move the bar; in plain mode, print `line()` when one is due (or `force`).
    pub fn update(
        &mut self,
        pos: u64,
        prefix: Option<String>,
        msg: String,
        force: bool,
        line: impl FnOnce(&str) -> String,
    ) {
        match &self.bar {
            Some(bar) => {
                if let Some(p) = prefix {
                    bar.set_prefix(p);
                }
                bar.set_message(msg);
                bar.set_position(pos);
            }
            None => {
                if force || self.last_line.elapsed() >= self.every {
                    self.last_line = Instant::now();
                    eprintln!("{}", line(&msg));
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
