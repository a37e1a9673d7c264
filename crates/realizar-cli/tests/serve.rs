//! `realizar serve` as a process: argument errors, bad models, and a real model served then
//! stopped with SIGTERM (exit 0).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{http, Server};

fn realizar() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_realizar"));
    c.env_remove("REALIZAR_API_KEY");
    c.env_remove("REALIZAR_NO_MALLOC_TUNING");
    c
}

fn models_dir() -> PathBuf {
    std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["serve"][..],
        &["serve", "--model", "x.gguf", "--parallel", "0"],
        &["serve", "--model", "x.gguf", "--ctx", "2"],
        &["serve", "--model", "x.gguf", "--max-body", "10"],
        &["serve", "--model", "x.gguf", "--port", "http"],
        &["serve", "--model", "x.gguf", "--log-format", "xml"],
        &["serve", "--model", "x.gguf", "--no-such-flag"],
    ] {
        let out = realizar().args(args).output().expect("run realizar");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_missing_model_exits_1_and_a_broken_one_exits_2() {
    let out = realizar()
        .args(["serve", "--port", "0", "--model", "/no/such/model.gguf"])
        .output()
        .expect("run realizar");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));

    let dir = std::env::temp_dir().join(format!("realizar-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("broken.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00garbage").expect("write");
    let out = realizar()
        .args(["serve", "--port", "0", "--model"])
        .arg(&bad)
        .output()
        .expect("run realizar");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.gguf"));
}

#[test]
fn serves_a_real_model_and_stops_cleanly_on_sigterm() {
    let model = models_dir().join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.exists(),
        "{} not found: run `cargo xtask fetch-models`",
        model.display()
    );
    let mut child = realizar()
        .args([
            "serve",
            "--port",
            "0",
            "--parallel",
            "2",
            "--ctx",
            "512",
            "--log-format",
            "json",
        ])
        .arg("--model")
        .arg(&model)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start realizar serve");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let mut server = Server(child);
    let logs = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut s);
        s
    });
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let addr: SocketAddr = first
        .strip_prefix("realizar: listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .expect("address");
    let t0 = Instant::now();
    while http(addr, "GET", "/health", "").0 != 200 {
        assert!(t0.elapsed() < Duration::from_secs(60), "never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = http(
        addr,
        "POST",
        "/v1/chat/completions",
        r#"{"messages":[{"role":"user","content":"What is 2+2?"}],"temperature":0,"max_tokens":16}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("The answer to this classic math problem is 4."),
        "{body}"
    );

    let pid = server.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = server.0.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "exit after SIGTERM");
    let logs = logs.join().expect("logs");
    // JSON logs, one object per line, with the request id of the chat request.
    let answered = logs
        .lines()
        .filter(|l| l.contains("answered"))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON log line"))
        .find(|v| v["span"]["path"] == "/v1/chat/completions")
        .unwrap_or_else(|| panic!("no log of the chat request in:\n{logs}"));
    assert!(answered["span"]["id"].is_u64(), "{answered}");
    assert_eq!(answered["fields"]["status"], 200);
}

fn smollm2() -> PathBuf {
    let model = models_dir().join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.exists(),
        "{} not found: run `cargo xtask fetch-models`",
        model.display()
    );
    model
}

/// Starts `realizar serve` with `args` and returns it with its address (from its first line).
fn spawn_serve(args: &[&str], models: &[PathBuf]) -> (Server, SocketAddr) {
    let mut c = realizar();
    c.args(["serve", "--port", "0", "--threads", "2"])
        .args(args);
    for m in models {
        c.arg("--model").arg(m);
    }
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start realizar serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    let addr: SocketAddr = first
        .strip_prefix("realizar: listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .parse()
        .expect("address");
    // Keep stdout open (a closed pipe must not matter, but keep the test about signals).
    std::thread::spawn(move || for _ in lines {});
    (Server(child), addr)
}

fn signal(server: &Server, sig: &str) {
    let pid = server.0.id().to_string();
    let ok = Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill");
    assert!(ok.success());
}

/// Waits at most `limit` for the process to exit; its exit code.
fn exits_within(server: &mut Server, limit: Duration) -> Option<i32> {
    let t0 = Instant::now();
    loop {
        if let Some(st) = server.0.try_wait().expect("wait") {
            return st.code();
        }
        assert!(
            t0.elapsed() < limit,
            "still running {limit:?} after the signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM while models load stops the server at once, without waiting for the load: here
/// two dozen models load one after another (seconds), and the server is gone well before.
#[test]
fn a_signal_while_loading_stops_at_once() {
    let models = vec![smollm2(); 24];
    let t0 = Instant::now();
    let (mut server, addr) = spawn_serve(&[], &models);
    assert_eq!(http(addr, "GET", "/health", "").0, 503, "still loading");
    signal(&server, "-TERM");
    assert_eq!(exits_within(&mut server, Duration::from_secs(3)), Some(0));
    // For scale: loading them all takes far longer than the stop did.
    let took = t0.elapsed();
    let t1 = Instant::now();
    let (mut full, addr) = spawn_serve(&[], &models);
    while http(addr, "GET", "/health", "").0 != 200 {
        assert!(t1.elapsed() < Duration::from_secs(120), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let full_load = t1.elapsed();
    signal(&full, "-TERM");
    let _ = exits_within(&mut full, Duration::from_secs(10));
    assert!(
        took * 2 < full_load,
        "stopping took {took:?}, a full load {full_load:?}"
    );
}

/// A second SIGINT during the drain stops at once; the stream still running ends with an
/// error event and `[DONE]`.
#[test]
fn a_second_sigint_while_draining_stops_at_once() {
    use std::io::Write;
    let (mut server, addr) =
        spawn_serve(&["--ctx", "4096", "--drain-timeout", "600"], &[smollm2()]);
    let t0 = Instant::now();
    while http(addr, "GET", "/health", "").0 != 200 {
        assert!(t0.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let body = r#"{"messages":[{"role":"user","content":"Tell a long story."}],"max_tokens":4000,"ignore_eos":true,"stream":true}"#;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).expect("read");
    assert!(n > 0);
    signal(&server, "-INT");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        server.0.try_wait().expect("wait").is_none(),
        "the first SIGINT drains"
    );
    signal(&server, "-INT");
    let code = exits_within(&mut server, Duration::from_secs(5));
    assert_eq!(code, Some(0));
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.contains("\"error\""), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
}

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb / 1024)
        .expect("VmRSS")
}

/// Fifty concurrent near-limit requests (1.9 MB chat messages, refused before they are
/// tokenized, and 1.9 MB `/tokenize` texts, tokenized a few at a time) keep the server under
/// twice its idle memory, give the memory back afterwards, and never delay `/health`.
#[test]
fn bursts_of_large_requests_neither_balloon_nor_keep_memory() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    let (mut server, addr) = spawn_serve(&[], &[smollm2()]);
    let t0 = Instant::now();
    while http(addr, "GET", "/health", "").0 != 200 {
        assert!(t0.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = server.0.id();
    let idle = rss_mib(pid);
    let peak = Arc::new(AtomicU64::new(idle));
    let slowest_health = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (peak, slowest, done) = (peak.clone(), slowest_health.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_mib(pid), Ordering::Relaxed);
                let t = Instant::now();
                assert_eq!(http(addr, "GET", "/health", "").0, 200);
                slowest.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let text = "hello world ".repeat(1_900_000 / 12);
    let chat =
        serde_json::json!({"messages": [{"role": "user", "content": text}], "max_tokens": 4})
            .to_string();
    let tok = serde_json::json!({"content": text}).to_string();
    for (path, body, want) in [
        ("/v1/chat/completions", &chat, 400),
        ("/tokenize", &tok, 200),
    ] {
        let clients: Vec<_> = (0..50)
            .map(|_| {
                let body = body.clone();
                std::thread::spawn(move || http(addr, "POST", path, &body).0)
            })
            .collect();
        for c in clients {
            assert_eq!(c.join().expect("client"), want, "{path}");
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher");
    let peak = peak.load(Ordering::Relaxed);
    let after = rss_mib(pid);
    assert!(peak < 2 * idle, "idle {idle} MiB, peak {peak} MiB");
    assert!(
        after <= idle + idle / 10,
        "idle {idle} MiB, {after} MiB after the burst"
    );
    let slowest = slowest_health.load(Ordering::Relaxed);
    assert!(slowest < 1000, "/health took {slowest} ms");
    signal(&server, "-TERM");
    let _ = exits_within(&mut server, Duration::from_secs(10));
}

/// A mapped model file truncated on disk while the server runs is detected: its requests are
/// refused with a 503 that says what happened, and the server lives on (no SIGBUS). With
/// `--no-mmap` the model is in memory and the server does not care.
#[test]
fn a_model_file_truncated_while_serving_is_refused_not_a_crash() {
    let body = r#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":4,"temperature":0}"#;
    for mmap in [true, false] {
        let dir =
            std::env::temp_dir().join(format!("realizar-truncate-{}-{mmap}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let copy = dir.join("model.gguf");
        std::fs::copy(smollm2(), &copy).expect("copy the model");
        let flags: &[&str] = if mmap { &[] } else { &["--no-mmap"] };
        let (mut server, addr) = spawn_serve(flags, std::slice::from_ref(&copy));
        let t0 = Instant::now();
        while http(addr, "GET", "/health", "").0 != 200 {
            assert!(t0.elapsed() < Duration::from_secs(60), "never ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(http(addr, "POST", "/v1/chat/completions", body).0, 200);
        let len = std::fs::metadata(&copy).expect("meta").len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&copy)
            .and_then(|f| f.set_len(len / 3))
            .expect("truncate");
        let (status, raw) = http(addr, "POST", "/v1/chat/completions", body);
        if mmap {
            assert_eq!(status, 503, "{raw}");
            assert!(raw.contains("changed on disk"), "{raw}");
        } else {
            assert_eq!(status, 200, "{raw}");
        }
        assert!(
            server.0.try_wait().expect("wait").is_none(),
            "the server died"
        );
        assert_eq!(http(addr, "GET", "/health", "").0, 200);
        signal(&server, "-TERM");
        assert_eq!(exits_within(&mut server, Duration::from_secs(10)), Some(0));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// One SIGTERM drains: a stream in flight finishes normally (no error event), then the server
/// exits 0.
#[test]
fn one_sigterm_lets_streams_in_flight_finish() {
    use std::io::Write;
    let (mut server, addr) = spawn_serve(&["--ctx", "1024"], &[smollm2()]);
    let t0 = Instant::now();
    while http(addr, "GET", "/health", "").0 != 200 {
        assert!(t0.elapsed() < Duration::from_secs(60), "never ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    let body = r#"{"messages":[{"role":"user","content":"Count to fifty."}],"max_tokens":96,"ignore_eos":true,"stream":true,"temperature":0}"#;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        s,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).expect("read");
    assert!(n > 0);
    signal(&server, "-TERM");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains("\"error\""), "{rest}");
    assert!(rest.contains("\"finish_reason\":\"length\""), "{rest}");
    assert!(rest.contains("data: [DONE]"), "{rest}");
    assert_eq!(exits_within(&mut server, Duration::from_secs(10)), Some(0));
}
