//! The progress line of long runs: messages done, percent and current rate, on stderr about once a second.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// Shared counter of completed messages, with an optional printer task.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    done: Arc<AtomicU64>,
}

impl Progress {
    /// A counter at zero.
    pub fn new() -> Self {
        Progress::default()
    }

    /// Counts `n` more completed messages.
    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Completed messages so far.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Prints `label: done/total (pct) rate` to stderr every second until the returned handle is aborted
    /// (see [`ProgressLine`]). Nothing is printed during the first second, so short runs stay quiet.
    pub fn show(&self, label: String, total: u64) -> ProgressLine {
        let done = self.done.clone();
        let tty = std::io::stderr().is_terminal();
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut last = (start, 0u64);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = Instant::now();
                let d = done.load(Ordering::Relaxed);
                let rate = (d - last.1) as f64 / (now - last.0).as_secs_f64().max(1e-9);
                last = (now, d);
                let line = format!(
                    "{label}: {d}/{total} ({:.0}%), {} msg/s, {:.0} s",
                    d as f64 * 100.0 / total.max(1) as f64,
                    crate::report::thousands(rate),
                    (now - start).as_secs_f64()
                );
                let mut err = std::io::stderr().lock();
                let _ = if tty {
                    write!(err, "\r{line}\x1b[K")
                } else {
                    writeln!(err, "{line}")
                };
                let _ = err.flush();
            }
        });
        ProgressLine { task, tty }
    }
}

/// A running progress printer; stops (and clears a terminal line) when dropped.
#[derive(Debug)]
pub struct ProgressLine {
    task: JoinHandle<()>,
    tty: bool,
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        self.task.abort();
        if self.tty {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
        }
    }
}
