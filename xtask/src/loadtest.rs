//! `cargo xtask loadtest`: a bounded load test of a Realizar server on loopback.
//!
//! Concurrent clients send streaming greedy chat completions (prompts of mixed lengths, a few
//! distinct ones reused), some disconnect mid-stream, and every completed response is checked:
//! no 5xx, every stream complete (`finish_reason`, `[DONE]`, usage), and every completion of
//! the same prompt identical (greedy decoding is deterministic and batch-invariant, so a
//! response mixed up with another request's tokens shows as a mismatch).
//!
//! This file only uses `std`, so that the server's test suite can include it as a module and run
//! it at a small size against an in-process server.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Options of a load run.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Concurrent clients.
    pub clients: usize,
    /// Requests per client.
    pub requests: usize,
    /// Tokens generated per request.
    pub max_tokens: usize,
    /// Every client whose index is a multiple of this disconnects mid-stream on its odd
    /// requests (0: nobody disconnects).
    pub disconnect_every: usize,
    /// The model to ask for (`None`: the server's default).
    pub model: Option<String>,
    /// Bound on the whole run.
    pub deadline: Duration,
    /// Ask the server to generate `max_tokens` even past end-of-sequence (for throughput).
    pub ignore_eos: bool,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            clients: 32,
            requests: 10,
            max_tokens: 16,
            disconnect_every: 4,
            model: None,
            deadline: Duration::from_secs(600),
            ignore_eos: false,
        }
    }
}

/// What a load run saw.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Requests sent.
    pub sent: usize,
    /// Streams read to the end and checked.
    pub completed: usize,
    /// Streams the client dropped on purpose.
    pub disconnected: usize,
    /// Answers with a 5xx status, or an error event inside a stream.
    pub server_errors: usize,
    /// Other failures (4xx, cut streams, connection errors), with a sample.
    pub failures: Vec<String>,
    /// Completions of the same prompt that differ.
    pub mismatches: usize,
    /// Generated tokens of the completed streams (from their usage).
    pub generated_tokens: usize,
    /// Times to first content token, seconds.
    pub ttft: Vec<f64>,
    /// Per completed stream of two or more tokens: the tokens after the first, and the seconds
    /// from the first content token to the end of the stream.
    pub decodes: Vec<(usize, f64)>,
    /// Concurrent clients of the run.
    pub clients: usize,
    /// Per completed stream: (seconds since the run started, content events received so
    /// far), one entry per read.
    pub timelines: Vec<Vec<(f64, usize)>>,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Requests per second.
    pub fn requests_per_s(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Generated tokens per second, all clients together.
    pub fn tokens_per_s(&self) -> f64 {
        self.generated_tokens as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile (0..=100) of the times to first token.
    pub fn ttft_percentile(&self, p: f64) -> f64 {
        let mut v = self.ttft.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return 0.0;
        }
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[idx.min(v.len() - 1)]
    }

    /// The median decode speed of one stream, tokens/s.
    pub fn decode_p50(&self) -> f64 {
        let mut v: Vec<f64> = self.decodes.iter().map(|&(n, t)| n as f64 / t).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    }

    /// Each completed stream's decode window, in seconds since the run started: from its first
    /// content event to its end.
    fn windows(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.timelines.iter().filter_map(|t| {
            let first = t.iter().find(|e| e.1 > 0)?.0;
            Some((first, t.last()?.0))
        })
    }

    /// Aggregate decode throughput: the tokens after the first of every completed stream over
    /// the time during which at least one stream was decoding (the union of the streams'
    /// windows from first content token to end). Prompt processing before a stream's first
    /// token is excluded; the other streams' prompts processed meanwhile are not.
    pub fn aggregate_decode(&self) -> f64 {
        let mut windows: Vec<(f64, f64)> = self.windows().collect();
        windows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut busy = 0.0;
        let mut cur: Option<(f64, f64)> = None;
        for (a, b) in windows {
            cur = match cur {
                Some((ca, cb)) if a <= cb => Some((ca, cb.max(b))),
                Some((ca, cb)) => {
                    busy += cb - ca;
                    Some((a, b))
                }
                None => Some((a, b)),
            };
        }
        if let Some((ca, cb)) = cur {
            busy += cb - ca;
        }
        let tokens: usize = self.decodes.iter().map(|d| d.0).sum();
        if busy > 0.0 {
            tokens as f64 / busy
        } else {
            0.0
        }
    }

    /// Aggregate decode throughput while every completed stream was decoding: the content
    /// events all streams received between the latest first token and the earliest end,
    /// over that window, with the window's length. `None` when the streams did not all
    /// overlap (runs of one request per client measure it).
    pub fn steady_decode(&self) -> Option<(f64, f64)> {
        let (w0, w1) = self
            .windows()
            .fold((f64::NEG_INFINITY, f64::INFINITY), |(a, b), (f, e)| {
                (a.max(f), b.min(e))
            });
        if self.timelines.is_empty() || w1 - w0 <= 0.1 {
            return None;
        }
        let at = |t: &[(f64, usize)], w: f64| {
            t.iter().take_while(|e| e.0 <= w).last().map_or(0, |e| e.1)
        };
        let events: usize = self.timelines.iter().map(|t| at(t, w1) - at(t, w0)).sum();
        Some((events as f64 / (w1 - w0), w1 - w0))
    }

    /// Whether the run is clean: no 5xx, no failure, no mismatch, nothing lost.
    pub fn is_clean(&self) -> bool {
        self.server_errors == 0
            && self.failures.is_empty()
            && self.mismatches == 0
            && self.completed + self.disconnected == self.sent
    }

    /// A summary for people.
    pub fn summary(&self) -> String {
        format!(
            "{} requests in {:.1} s: {} completed, {} disconnected on purpose, {} 5xx, {} other failures, {} mismatched\n\
             requests/s {:.2}, generated tokens/s {:.1}, TTFT p50 {:.3} s, p99 {:.3} s\n\
             decode tokens/s per stream p50 {:.1}, aggregate decode tokens/s ({} clients) {:.1}",
            self.sent,
            self.elapsed.as_secs_f64(),
            self.completed,
            self.disconnected,
            self.server_errors,
            self.failures.len(),
            self.mismatches,
            self.requests_per_s(),
            self.tokens_per_s(),
            self.ttft_percentile(50.0),
            self.ttft_percentile(99.0),
            self.decode_p50(),
            self.clients,
            self.aggregate_decode(),
        ) + &self.steady_decode().map_or(String::new(), |(tps, w)| {
            format!(
                "\nsteady decode tokens/s with all {} streams decoding: {tps:.1} (over {w:.2} s)",
                self.timelines.len()
            )
        })
    }
}

/// The prompts: a few distinct ones of mixed lengths.
fn prompts() -> Vec<String> {
    let base = [
        "What is 2+2?",
        "Name a color.",
        "Write one sentence about the sea.",
        "List three fruits.",
        "Explain what a compiler does in simple words.",
        "Tell me about the history of bridges",
    ];
    base.iter()
        .enumerate()
        .map(|(i, b)| {
            let pad = " Please answer briefly and clearly.".repeat(i * 3);
            format!("{b}{pad}")
        })
        .collect()
}

/// The outcome of one streamed request.
enum Outcome {
    Completed {
        text: String,
        tokens: usize,
        ttft: f64,
        /// Seconds from the first content token to the end of the stream.
        decode: f64,
        /// (seconds since the run started, content events so far) after each read.
        timeline: Vec<(f64, usize)>,
    },
    Disconnected,
    ServerError(String),
    Failed(String),
}

fn stream_one(
    addr: SocketAddr,
    body: &str,
    disconnect: bool,
    timeout: Duration,
    base: Instant,
) -> Outcome {
    let t0 = Instant::now();
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
        Ok(s) => s,
        Err(e) => return Outcome::Failed(format!("connect: {e}")),
    };
    let _ = s.set_read_timeout(Some(timeout));
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = s.write_all(req.as_bytes()) {
        return Outcome::Failed(format!("write: {e}"));
    }
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let mut ttft = None;
    let (mut events, mut timeline) = (0usize, Vec::new());
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Outcome::Failed(format!("read: {e}")),
        };
        let old_len = raw.len();
        raw.extend_from_slice(&buf[..n]);
        const EVENT: &[u8] = b"\"content\":";
        let from = old_len.saturating_sub(EVENT.len() - 1);
        events += raw[from..]
            .windows(EVENT.len())
            .filter(|w| *w == EVENT)
            .count();
        timeline.push((base.elapsed().as_secs_f64(), events));
        if ttft.is_none() && has_content(&raw) {
            ttft = Some(t0.elapsed().as_secs_f64());
            if disconnect {
                // Drop the connection mid-stream.
                return Outcome::Disconnected;
            }
        }
    }
    let end = t0.elapsed().as_secs_f64();
    let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Outcome::Failed("no response head".into());
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = dechunk(&raw[head_end + 4..]);
    let body = String::from_utf8_lossy(&body).into_owned();
    if status >= 500 {
        return Outcome::ServerError(format!("{status}: {body}"));
    }
    if status != 200 {
        return Outcome::Failed(format!("{status}: {body}"));
    }
    let mut text = String::new();
    let mut finish = false;
    let mut done = false;
    let mut tokens = None;
    for ev in body.split("\n\n").filter_map(|e| e.strip_prefix("data: ")) {
        if ev == "[DONE]" {
            done = true;
            continue;
        }
        if ev.contains("\"error\"") {
            return Outcome::ServerError(ev.to_string());
        }
        if let Some(t) = json_string_after(ev, "\"content\":") {
            text.push_str(&t);
        }
        if ev.contains("\"finish_reason\":\"") {
            finish = true;
        }
        if let Some(n) = json_number_after(ev, "\"completion_tokens\":") {
            tokens = Some(n);
        }
    }
    match (finish, done, tokens, ttft) {
        (true, true, Some(tokens), Some(ttft)) => Outcome::Completed {
            text,
            tokens,
            ttft,
            decode: end - ttft,
            timeline,
        },
        (true, true, Some(tokens), None) => Outcome::Completed {
            text,
            tokens,
            ttft: end,
            decode: 0.0,
            timeline,
        },
        _ => Outcome::Failed(format!("incomplete stream: {body}")),
    }
}

/// Whether the raw bytes so far hold a content delta with text.
fn has_content(raw: &[u8]) -> bool {
    let s = String::from_utf8_lossy(raw);
    s.match_indices("\"content\":\"")
        .any(|(i, m)| s[i + m.len()..].chars().next().is_some_and(|c| c != '"'))
}

/// The JSON string value after `key` (enough of a parser for the server's compact output).
fn json_string_after(s: &str, key: &str) -> Option<String> {
    let at = s.find(key)? + key.len();
    let rest = s[at..].strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let cp = u32::from_str_radix(&hex, 16).ok()?;
                    out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn json_number_after(s: &str, key: &str) -> Option<usize> {
    let at = s.find(key)? + key.len();
    let digits: String = s[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Decodes a chunked HTTP body.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = nl + 2;
        let end = (start + size).min(b.len());
        out.extend_from_slice(&b[start..end]);
        if end + 2 > b.len() {
            break;
        }
        b = &b[end + 2..];
    }
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Runs the load: `opts.clients` threads, `opts.requests` requests each. Only loopback
/// addresses are accepted.
pub fn run(addr: SocketAddr, opts: &LoadOptions) -> Result<LoadReport, String> {
    if !addr.ip().is_loopback() {
        return Err(format!(
            "the load test only targets loopback addresses, not {addr}"
        ));
    }
    let prompts = prompts();
    let model = opts
        .model
        .as_ref()
        .map(|m| format!("\"model\":\"{}\",", escape(m)))
        .unwrap_or_default();
    let seen: Mutex<HashMap<usize, String>> = Mutex::new(HashMap::new());
    let report = Mutex::new(LoadReport {
        clients: opts.clients,
        ..LoadReport::default()
    });
    let t0 = Instant::now();
    std::thread::scope(|sc| {
        for c in 0..opts.clients {
            let (prompts, model, seen, report) = (&prompts, &model, &seen, &report);
            sc.spawn(move || {
                for r in 0..opts.requests {
                    if t0.elapsed() > opts.deadline {
                        break;
                    }
                    let pi = (c + r * 7) % prompts.len();
                    let body = format!(
                        "{{{model}\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}],\"temperature\":0,\"max_tokens\":{},\"ignore_eos\":{},\"stream\":true,\"stream_options\":{{\"include_usage\":true}}}}",
                        escape(&prompts[pi]),
                        opts.max_tokens,
                        opts.ignore_eos
                    );
                    let disconnect = opts.disconnect_every > 0 && c % opts.disconnect_every == opts.disconnect_every - 1 && r % 2 == 1;
                    let left = opts.deadline.saturating_sub(t0.elapsed()).max(Duration::from_secs(1));
                    let outcome = stream_one(addr, &body, disconnect, left, t0);
                    let mut rep = report.lock().unwrap_or_else(|p| p.into_inner());
                    rep.sent += 1;
                    match outcome {
                        Outcome::Completed {
                            text,
                            tokens,
                            ttft,
                            decode,
                            timeline,
                        } => {
                            rep.timelines.push(timeline);
                            rep.completed += 1;
                            rep.generated_tokens += tokens;
                            rep.ttft.push(ttft);
                            if tokens > 1 && decode > 0.0 {
                                rep.decodes.push((tokens - 1, decode));
                            }
                            let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                            let first = seen.entry(pi).or_insert_with(|| text.clone());
                            if *first != text {
                                rep.mismatches += 1;
                                rep.failures.push(format!("prompt {pi}: {first:?} vs {text:?}"));
                            }
                        }
                        Outcome::Disconnected => rep.disconnected += 1,
                        Outcome::ServerError(e) => {
                            rep.server_errors += 1;
                            rep.failures.push(e);
                        }
                        Outcome::Failed(e) => rep.failures.push(e),
                    }
                }
            });
        }
    });
    let mut rep = report.into_inner().unwrap_or_else(|p| p.into_inner());
    rep.elapsed = t0.elapsed();
    Ok(rep)
}

/// Resident memory of process `pid` in KiB (Linux `/proc`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_helpers_read_the_server_output() {
        let ev = r#"{"choices":[{"delta":{"content":"a\"b\u00e9\n"}}],"usage":{"completion_tokens":12,"x":1}}"#;
        assert_eq!(
            json_string_after(ev, "\"content\":").as_deref(),
            Some("a\"bé\n")
        );
        assert_eq!(json_number_after(ev, "\"completion_tokens\":"), Some(12));
        assert!(has_content(br#"data: {"delta":{"content":"x"}}"#));
        assert!(!has_content(
            br#"data: {"delta":{"role":"assistant","content":""}}"#
        ));
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"), b"abcde");
        assert_eq!(escape("a\"\n"), "a\\\"\\n");
    }

    #[test]
    fn only_loopback_is_a_target() {
        let addr: SocketAddr = "10.0.0.1:80".parse().expect("addr");
        assert!(run(addr, &LoadOptions::default()).is_err());
    }
}
