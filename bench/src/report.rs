//! The result of one run, as a human table or JSON.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::latency::LatencySummary;
use crate::workload::Workload;

/// What a run was and what it measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `liftbridge` or `jetstream`.
    pub system: String,
    /// `producer` or `consumer`.
    pub mode: String,
    /// The workload as given.
    pub workload: Workload,
    /// Messages completed (acknowledged, or read back).
    pub messages: u64,
    /// Wall-clock time of the measured phase, seconds.
    pub elapsed_secs: f64,
    /// Messages per second.
    pub msgs_per_sec: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_sec: f64,
    /// Publish-to-ack latency (producer), in microseconds.
    pub latency_us: Option<LatencySummary>,
    /// Publishes whose ack failed.
    pub errors: u64,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// Consumer: whether every message came back in order (`None`: payloads too short to carry a stamp).
    pub in_order: Option<bool>,
    /// Consumer: order violations found.
    pub order_violations: u64,
}

impl Report {
    /// A report with throughput figures computed from `messages` over `elapsed`.
    pub fn new(
        system: &str,
        mode: &str,
        workload: &Workload,
        messages: u64,
        elapsed: Duration,
    ) -> Report {
        let secs = elapsed.as_secs_f64().max(1e-9);
        Report {
            system: system.to_string(),
            mode: mode.to_string(),
            workload: workload.clone(),
            messages,
            elapsed_secs: secs,
            msgs_per_sec: messages as f64 / secs,
            mb_per_sec: messages as f64 * workload.size as f64 / secs / 1e6,
            latency_us: None,
            errors: 0,
            first_error: None,
            in_order: None,
            order_violations: 0,
        }
    }

    /// Whether the run completed everything it was asked, without errors or disorder.
    pub fn is_complete(&self) -> bool {
        self.messages == self.workload.messages && self.errors == 0 && self.in_order != Some(false)
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} {} ({}, ack {:?}, sync {:?}): {} msgs in {:.2} s",
            self.system,
            self.mode,
            self.workload.describe(),
            self.workload.ack_policy,
            self.workload.sync,
            self.messages,
            self.elapsed_secs
        );
        let _ = writeln!(
            s,
            "  throughput  {:>12} msg/s  {:>9.1} MB/s",
            thousands(self.msgs_per_sec),
            self.mb_per_sec
        );
        if let Some(l) = &self.latency_us {
            let _ = writeln!(
                s,
                "  latency µs  p50 {:.0}  p90 {:.0}  p99 {:.0}  p99.9 {:.0}  max {:.0}  (mean {:.0}, {} samples)",
                l.p50, l.p90, l.p99, l.p999, l.max, l.mean, l.samples
            );
        }
        if let Some(in_order) = self.in_order {
            let _ = writeln!(
                s,
                "  order       {} ({} violations)",
                if in_order {
                    "every message in order"
                } else {
                    "OUT OF ORDER"
                },
                self.order_violations
            );
        }
        if self.messages != self.workload.messages {
            let _ = writeln!(
                s,
                "  INCOMPLETE  {} of {} messages",
                self.messages, self.workload.messages
            );
        }
        if self.errors > 0 {
            let _ = writeln!(
                s,
                "  ERRORS      {} (first: {})",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            );
        }
        s
    }
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(x: f64) -> String {
    let n = x.round().max(0.0) as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_thousands() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_234_567.8), "1,234,568");
    }
}
