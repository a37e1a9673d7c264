//! Prometheus metrics, rendered in the text exposition format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::engine::EngineLoad;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A histogram with fixed buckets.
#[derive(Debug, Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    /// Sum in microseconds.
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, secs: f64) {
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            if secs <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add((secs.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (b, c) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// The server's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    aborted: Mutex<BTreeMap<&'static str, u64>>,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    ttft: Histogram,
    per_token: Histogram,
}

impl Metrics {
    /// Counts a finished request of `endpoint` answered with `status`.
    pub fn request(&self, endpoint: &'static str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((endpoint, status)).or_insert(0) += 1;
    }

    /// Counts a request of `endpoint` whose client went away before its answer was complete.
    pub fn aborted(&self, endpoint: &'static str) {
        let mut m = self.aborted.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(endpoint).or_insert(0) += 1;
    }

    /// Counts prompt tokens evaluated.
    pub fn prompt_tokens(&self, n: usize) {
        self.prompt_tokens.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts generated tokens.
    pub fn generated_tokens(&self, n: usize) {
        self.generated_tokens.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records a time to first token.
    pub fn time_to_first_token(&self, secs: f64) {
        self.ttft.observe(secs);
    }

    /// Records the time between two generated tokens.
    pub fn time_per_token(&self, secs: f64) {
        self.per_token.observe(secs);
    }

    /// The exposition text; `load` is the sum over the served models.
    pub fn render(&self, load: EngineLoad) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP realizar_requests_total HTTP requests answered, by endpoint and status."
        );
        let _ = writeln!(out, "# TYPE realizar_requests_total counter");
        {
            let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
            for ((ep, status), n) in m.iter() {
                let _ = writeln!(
                    out,
                    "realizar_requests_total{{endpoint=\"{ep}\",status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP realizar_requests_aborted_total Requests whose client went away before the answer was complete, by endpoint."
        );
        let _ = writeln!(out, "# TYPE realizar_requests_aborted_total counter");
        {
            let m = self.aborted.lock().unwrap_or_else(|p| p.into_inner());
            for (ep, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "realizar_requests_aborted_total{{endpoint=\"{ep}\"}} {n}"
                );
            }
        }
        let counters = [
            (
                "realizar_prompt_tokens_total",
                "Prompt tokens evaluated.",
                &self.prompt_tokens,
            ),
            (
                "realizar_generated_tokens_total",
                "Tokens generated.",
                &self.generated_tokens,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        let gauges = [
            (
                "realizar_queue_depth",
                "Requests waiting for a slot.",
                load.queued,
            ),
            (
                "realizar_active_slots",
                "Sequences being generated.",
                load.active,
            ),
            ("realizar_slots", "Generation slots.", load.slots),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {v}");
        }
        self.ttft.render(
            &mut out,
            "realizar_time_to_first_token_seconds",
            "Time from a generation request to its first token.",
        );
        self.per_token.render(
            &mut out,
            "realizar_time_per_output_token_seconds",
            "Time between consecutive generated tokens of a request.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.time_to_first_token(0.007);
        m.time_to_first_token(3.0);
        m.request("chat", 200);
        m.request("chat", 200);
        let text = m.render(EngineLoad {
            queued: 2,
            active: 1,
            slots: 4,
        });
        assert!(text.contains("realizar_time_to_first_token_seconds_bucket{le=\"0.005\"} 0\n"));
        assert!(text.contains("realizar_time_to_first_token_seconds_bucket{le=\"0.01\"} 1\n"));
        assert!(text.contains("realizar_time_to_first_token_seconds_bucket{le=\"5\"} 2\n"));
        assert!(text.contains("realizar_time_to_first_token_seconds_count 2\n"));
        assert!(text.contains("realizar_requests_total{endpoint=\"chat\",status=\"200\"} 2\n"));
        assert!(text.contains("realizar_queue_depth 2\n"));
    }
}
