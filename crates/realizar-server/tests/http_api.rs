//! The HTTP API end to end against the toy engine: every endpoint, streaming and not, every
//! error status, authentication, metrics, queueing, cancellation, shutdown.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{request, Resp, TestServer};
use realizar_server::testing::{ToyConfig, ToyEngine, ToyStats, TOY_BOS};
use realizar_server::{BatcherConfig, Engine, ServerConfig};
use serde_json::{json, Value};

fn toy(config: ToyConfig, sched: BatcherConfig) -> (Arc<dyn Engine>, Arc<ToyStats>) {
    let (e, stats) = ToyEngine::generator("toy", config, sched).expect("toy engine");
    (Arc::new(e), stats)
}

fn server_with(
    config: ToyConfig,
    sched: BatcherConfig,
    server: ServerConfig,
) -> (TestServer, Arc<ToyStats>) {
    let (gen, stats) = toy(config, sched);
    let emb: Arc<dyn Engine> = Arc::new(ToyEngine::embedder("toy-embed"));
    (TestServer::start(server, vec![gen, emb]), stats)
}

fn server() -> TestServer {
    server_with(
        ToyConfig::default(),
        BatcherConfig::default(),
        ServerConfig::default(),
    )
    .0
}

fn chat_body(user: &str, max_tokens: u64) -> Value {
    json!({"model": "toy", "messages": [{"role": "user", "content": user}],
           "temperature": 0, "max_tokens": max_tokens})
}

fn chat_text(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string()
}

/// The concatenated `delta.content` of a chat stream and its finish reason; checks the framing.
fn chat_stream_text(r: &Resp) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = r.sse();
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{}",
        r.body
    );
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("chunk JSON"))
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut text = String::new();
    let mut finish = String::new();
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        if let Some(ch) = c["choices"].get(0) {
            if let Some(t) = ch["delta"]["content"].as_str() {
                assert!(!t.contains('\u{FFFD}'), "a character was split: {t:?}");
                text.push_str(t);
            }
            if let Some(f) = ch["finish_reason"].as_str() {
                finish = f.to_string();
            }
        }
    }
    (text, finish)
}

#[test]
fn health_is_503_while_loading_and_200_when_ready() {
    let (gen, _) = toy(ToyConfig::default(), BatcherConfig::default());
    let srv = TestServer::start_with(ServerConfig::default(), vec![gen], false);
    let r = srv.get("/health");
    r.error(503);
    assert!(r.header("retry-after").is_some());
    srv.post("/v1/chat/completions", &chat_body("hi", 2))
        .error(503);
    srv.handle.set_ready(true);
    let r = srv.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
}

#[test]
fn models_are_listed_and_looked_up() {
    let srv = server();
    let r = srv.get("/v1/models");
    assert_eq!(r.status, 200);
    let ids: Vec<String> = r.json()["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids, vec!["toy", "toy-embed"]);
    assert_eq!(srv.get("/v1/models/toy-embed").json()["id"], "toy-embed");
    let e = srv.get("/v1/models/gpt-9").error(404);
    assert_eq!(e["code"], "model_not_found");
    let tags = srv.get("/api/tags").json();
    assert_eq!(tags["models"][0]["name"], "toy");
}

#[test]
fn chat_completion_and_its_stream_agree() {
    let srv = server();
    let r = srv.post("/v1/chat/completions", &chat_body("hello", 12));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "toy");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    let text = chat_text(&r);
    assert!(!text.is_empty());
    // The toy template: "<user>hello\n<assistant>" after BOS.
    let prompt_tokens = 1 + "<user>hello\n<assistant>".len() as u64;
    assert_eq!(v["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(v["usage"]["completion_tokens"], 12);
    assert_eq!(v["usage"]["total_tokens"], prompt_tokens + 12);

    let mut body = chat_body("hello", 12);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let s = srv.post("/v1/chat/completions", &body);
    let (streamed, finish) = chat_stream_text(&s);
    assert_eq!(streamed, text);
    assert_eq!(finish, "length");
    let events = s.sse();
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).expect("usage chunk");
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 12);

    // Array-of-parts content renders the same prompt as the string.
    let parts = json!({"model": "toy", "temperature": 0, "max_tokens": 12, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hel"}, {"type": "text", "text": "lo"}]}]});
    assert_eq!(chat_text(&srv.post("/v1/chat/completions", &parts)), text);
    // max_completion_tokens is the newer name of max_tokens.
    let newer = json!({"messages": [{"role": "user", "content": "hello"}], "temperature": 0,
                       "max_completion_tokens": 5});
    let v = srv.post("/v1/chat/completions", &newer).json();
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert!(text.starts_with(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or("?")
    ));
}

#[test]
fn completions_take_text_or_token_ids() {
    let srv = server();
    let a = srv.post(
        "/v1/completions",
        &json!({"prompt": "abc", "max_tokens": 9, "temperature": 0}),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let av = a.json();
    assert_eq!(av["object"], "text_completion");
    let ids = json!([TOY_BOS, 97, 98, 99]);
    let b = srv.post(
        "/v1/completions",
        &json!({"prompt": ids, "max_tokens": 9, "temperature": 0}),
    );
    assert_eq!(b.json()["choices"][0]["text"], av["choices"][0]["text"]);
    assert_eq!(av["usage"]["prompt_tokens"], 4);

    let s = srv.post(
        "/v1/completions",
        &json!({"prompt": "abc", "max_tokens": 9, "temperature": 0, "stream": true}),
    );
    let events = s.sse();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let mut text = String::new();
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).expect("chunk");
        text.push_str(v["choices"][0]["text"].as_str().unwrap_or_default());
    }
    assert_eq!(text, av["choices"][0]["text"].as_str().unwrap_or("?"));

    // Token ids outside the vocabulary are a 400, not a crash.
    let e = srv
        .post(
            "/v1/completions",
            &json!({"prompt": [1, 99999], "max_tokens": 2}),
        )
        .error(400);
    assert_eq!(e["param"], "prompt");
}

#[test]
fn stop_strings_end_generation_and_never_leak() {
    let srv = server();
    let full = chat_text(&srv.post("/v1/chat/completions", &chat_body("stop test", 60)));
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() > 20, "{full:?}");
    let stop: String = chars[12..15].iter().collect();
    let at = full.find(&stop).expect("stop in text");
    let mut body = chat_body("stop test", 60);
    body["stop"] = json!([stop, "never-appears"]);
    let r = srv.post("/v1/chat/completions", &body);
    assert_eq!(chat_text(&r), &full[..at]);
    assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");
    body["stream"] = json!(true);
    let (streamed, finish) = chat_stream_text(&srv.post("/v1/chat/completions", &body));
    assert_eq!(streamed, &full[..at]);
    assert_eq!(finish, "stop");
    // No streamed delta ends with a prefix of the stop string that was later retracted.
    assert!(!streamed.contains(&stop));
}

#[test]
fn streaming_never_splits_a_character() {
    let srv = server();
    // Find a prompt whose greedy text has a multi-byte character (the toy's `€` is 3 tokens).
    let mut found = false;
    for i in 0..40 {
        let mut body = chat_body(&format!("euro {i}"), 40);
        body["stream"] = json!(true);
        let (text, _) = chat_stream_text(&srv.post("/v1/chat/completions", &body));
        if text.contains('€') {
            found = true;
            break;
        }
    }
    assert!(found, "no generation produced a multi-byte character");
}

#[test]
fn end_of_sequence_finishes_with_stop() {
    let cfg = ToyConfig {
        eos_at: Some(40),
        ..ToyConfig::default()
    };
    let (srv, _) = server_with(cfg, BatcherConfig::default(), ServerConfig::default());
    let v = srv
        .post("/v1/chat/completions", &chat_body("hi", 100))
        .json();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
    // The token at position 40 is EOS: generated up to and including it.
    assert_eq!(
        v["usage"]["completion_tokens"].as_u64(),
        Some(40 - prompt + 1)
    );
    assert!(!v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("<")
        .contains('<'));
}

#[test]
fn logprobs_are_reported() {
    let srv = server();
    let mut body = chat_body("lp", 4);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(2);
    let v = srv.post("/v1/chat/completions", &body).json();
    let content = v["choices"][0]["logprobs"]["content"]
        .as_array()
        .expect("logprobs");
    assert_eq!(content.len(), 4);
    for t in content {
        let lp = t["logprob"].as_f64().expect("logprob");
        assert!(
            lp <= 0.0 && lp > -1.0,
            "greedy pick of a peaked distribution: {lp}"
        );
        assert_eq!(t["top_logprobs"].as_array().map(Vec::len), Some(2));
    }
    let c = srv
        .post(
            "/v1/completions",
            &json!({"prompt": "x", "max_tokens": 3, "logprobs": 1, "temperature": 0}),
        )
        .json();
    assert_eq!(
        c["choices"][0]["logprobs"]["tokens"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
}

#[test]
fn sampling_with_a_seed_is_reproducible() {
    let srv = server();
    let body = json!({"messages": [{"role": "user", "content": "seed"}], "temperature": 1.5,
                      "top_k": 2, "seed": 7, "max_tokens": 30});
    let a = chat_text(&srv.post("/v1/chat/completions", &body));
    let b = chat_text(&srv.post("/v1/chat/completions", &body));
    assert_eq!(a, b);
    // A ban through logit_bias is obeyed: ban every letter the greedy text starts with.
    let greedy = chat_text(&srv.post("/v1/chat/completions", &chat_body("seed", 1)));
    let first = greedy.bytes().next().expect("a byte");
    let mut body = chat_body("seed", 1);
    body["logit_bias"] = json!({ first.to_string(): -100 });
    let banned = chat_text(&srv.post("/v1/chat/completions", &body));
    assert_ne!(banned.bytes().next(), Some(first));
}

#[test]
fn embeddings_in_float_and_base64() {
    let srv = server();
    let r = srv.post(
        "/v1/embeddings",
        &json!({"model": "toy-embed", "input": ["a", "bb"]}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let data = v["data"].as_array().expect("data");
    assert_eq!(data.len(), 2);
    let vec0: Vec<f64> = data[0]["embedding"]
        .as_array()
        .expect("floats")
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let norm: f64 = vec0.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5);
    assert!(v["usage"]["prompt_tokens"].as_u64() > Some(0));
    let b = srv
        .post(
            "/v1/embeddings",
            &json!({"input": "a", "encoding_format": "base64"}),
        )
        .json();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b["data"][0]["embedding"].as_str().expect("base64"))
        .expect("decode");
    let floats: Vec<f64> = bytes
        .chunks_exact(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    assert_eq!(floats.len(), vec0.len());
    for (x, y) in floats.iter().zip(&vec0) {
        assert!((x - y).abs() < 1e-6);
    }
    let o = srv
        .post("/api/embed", &json!({"model": "toy-embed", "input": "a"}))
        .json();
    assert_eq!(
        o["embeddings"][0].as_array().map(Vec::len),
        Some(vec0.len())
    );
    srv.post(
        "/v1/embeddings",
        &json!({"input": "a", "encoding_format": "hex"}),
    )
    .error(400);
    srv.post("/v1/embeddings", &json!({"input": "a", "dimensions": 3}))
        .error(400);
    srv.post("/v1/embeddings", &json!({"input": [1, 2]}))
        .error(400);
}

#[test]
fn tokenize_and_detokenize_round_trip() {
    let srv = server();
    let t = srv.post("/tokenize", &json!({"content": "hé"})).json();
    assert_eq!(t["tokens"], json!([TOY_BOS, 104, 195, 169]));
    let t = srv
        .post(
            "/tokenize",
            &json!({"content": "hi", "add_special": false, "with_pieces": true}),
        )
        .json();
    assert_eq!(
        t["tokens"],
        json!([{"id": 104, "piece": "h"}, {"id": 105, "piece": "i"}])
    );
    let d = srv
        .post("/detokenize", &json!({"tokens": [104, 195, 169]}))
        .json();
    assert_eq!(d["content"], "hé");
    let e = srv
        .post("/detokenize", &json!({"tokens": [1, 100000]}))
        .error(400);
    assert_eq!(e["param"], "tokens");
    srv.post("/detokenize", &json!({"tokens": [-1]})).error(400);
}

#[test]
fn ollama_generate_and_chat_stream_ndjson() {
    let srv = server();
    let r = srv.post(
        "/api/generate",
        &json!({"model": "toy", "prompt": "ol", "options": {"temperature": 0, "num_predict": 6}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    let lines: Vec<Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson line"))
        .collect();
    let last = lines.last().expect("lines");
    assert_eq!(last["done"], true);
    assert_eq!(last["eval_count"], 6);
    let streamed: String = lines[..lines.len() - 1]
        .iter()
        .map(|l| l["response"].as_str().unwrap_or_default().to_string())
        .collect();
    let whole = srv
        .post(
            "/api/generate",
            &json!({"model": "toy", "prompt": "ol", "stream": false,
                    "options": {"temperature": 0, "num_predict": 6}}),
        )
        .json();
    assert_eq!(whole["response"].as_str(), Some(streamed.as_str()));
    assert_eq!(whole["done_reason"], "length");
    // /api/chat with the same single user message renders the same prompt.
    let c = srv
        .post(
            "/api/chat",
            &json!({"model": "toy", "stream": false, "messages": [{"role": "user", "content": "ol"}],
                    "options": {"temperature": 0, "num_predict": 6}}),
        )
        .json();
    assert_eq!(c["message"]["content"].as_str(), Some(streamed.as_str()));
    // Ollama's error shape: `{"error": "..."}`.
    let r = srv.post(
        "/api/generate",
        &json!({"prompt": "x", "options": {"temperature": "hot"}}),
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|m| m.contains("options.temperature")),
        "{}",
        r.body
    );
}

#[test]
fn malformed_and_mistyped_requests_are_400() {
    let srv = server();
    let post_raw = |body: &[u8]| request(srv.addr, "POST", "/v1/chat/completions", &[], Some(body));
    post_raw(b"{not json").error(400);
    post_raw(b"").error(400);
    post_raw(b"[1,2]").error(400);
    post_raw(&[0xff, 0xfe, 0x00]).error(400);
    let cases = [
        (json!({"messages": "hi"}), "messages"),
        (json!({}), "messages"),
        (json!({"messages": []}), "messages"),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "temperature": "warm"}),
            "temperature",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": "10"}),
            "max_tokens",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "n": 0}),
            "n",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
            "stream",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "top_p": 1.5}),
            "top_p",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "stop": 5}),
            "stop",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "model": 5}),
            "model",
        ),
        (
            json!({"messages": [{"role": 1, "content": "x"}]}),
            "messages[0].role",
        ),
    ];
    for (body, param) in cases {
        let e = srv.post("/v1/chat/completions", &body).error(400);
        assert_eq!(e["param"], param, "{body}");
    }
    let e = srv
        .post("/v1/completions", &json!({"prompt": 5}))
        .error(400);
    assert_eq!(e["param"], "prompt");
}

#[test]
fn routing_errors_and_body_limits() {
    let srv = server_with(
        ToyConfig::default(),
        BatcherConfig::default(),
        ServerConfig {
            max_body: 1000,
            ..ServerConfig::default()
        },
    )
    .0;
    srv.get("/v2/nothing").error(404);
    let r = srv.get("/v1/chat/completions");
    r.error(405);
    assert_eq!(r.header("allow"), Some("POST"));
    request(srv.addr, "DELETE", "/health", &[], None).error(405);
    let big = json!({"messages": [{"role": "user", "content": "x".repeat(5000)}]});
    srv.post("/v1/chat/completions", &big).error(413);
    // Unknown model: 404 in OpenAI's shape; a model of the wrong kind: 400.
    let e = srv
        .post(
            "/v1/chat/completions",
            &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        )
        .error(404);
    assert_eq!(e["code"], "model_not_found");
    assert_eq!(e["param"], "model");
    srv.post(
        "/v1/chat/completions",
        &json!({"model": "toy-embed", "messages": [{"role": "user", "content": "x"}]}),
    )
    .error(400);
    srv.post("/v1/embeddings", &json!({"model": "toy", "input": "x"}))
        .error(400);
    // A prompt longer than the context: 400 with the numbers.
    let long = json!({"prompt": "y".repeat(600)});
    let e = srv.post("/v1/completions", &long).error(400);
    let msg = e["message"].as_str().unwrap_or_default();
    assert!(msg.contains("256") && msg.contains("601"), "{msg}");
    assert_eq!(e["code"], "context_length_exceeded");
}

#[test]
fn chunked_bodies_over_the_limit_are_413() {
    let srv = server_with(
        ToyConfig::default(),
        BatcherConfig::default(),
        ServerConfig {
            max_body: 100,
            ..ServerConfig::default()
        },
    )
    .0;
    let mut s = TcpStream::connect(srv.addr).expect("connect");
    let chunk = "a".repeat(80);
    let req = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n{chunk}\r\n50\r\n{chunk}\r\n0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    common::parse_response(&raw).error(413);
}

#[test]
fn api_key_guards_everything_but_health() {
    let srv = server_with(
        ToyConfig::default(),
        BatcherConfig::default(),
        ServerConfig {
            api_key: Some("sekret".into()),
            ..ServerConfig::default()
        },
    )
    .0;
    assert_eq!(srv.get("/health").status, 200);
    let e = srv.get("/v1/models").error(401);
    assert_eq!(e["code"], "invalid_api_key");
    request(
        srv.addr,
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer wrong")],
        None,
    )
    .error(401);
    request(
        srv.addr,
        "GET",
        "/metrics",
        &[("Authorization", "sekret")],
        None,
    )
    .error(401);
    srv.get("/no/such/route").error(401);
    let ok = request(
        srv.addr,
        "GET",
        "/v1/models",
        &[("Authorization", "Bearer sekret")],
        None,
    );
    assert_eq!(ok.status, 200);
    let body = chat_body("k", 2).to_string();
    let ok = request(
        srv.addr,
        "POST",
        "/v1/chat/completions",
        &[("Authorization", "Bearer sekret")],
        Some(body.as_bytes()),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[test]
fn metrics_count_requests_tokens_and_latency() {
    let srv = server();
    let _ = srv.post("/v1/chat/completions", &chat_body("m", 5));
    let _ = srv.get("/nope");
    let m = srv.get("/metrics");
    assert_eq!(m.status, 200);
    assert!(m
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain")));
    let text = m.body;
    assert!(
        text.contains("realizar_requests_total{endpoint=\"chat_completions\",status=\"200\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("realizar_requests_total{endpoint=\"other\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(text.contains("realizar_generated_tokens_total 5"), "{text}");
    assert!(
        text.contains("realizar_time_to_first_token_seconds_count 1"),
        "{text}"
    );
    assert!(
        text.contains("realizar_time_per_output_token_seconds_count 4"),
        "{text}"
    );
    assert!(text.contains("realizar_queue_depth 0"));
    assert!(text.contains("realizar_active_slots 0"));
    assert!(text.contains("realizar_slots 4"));
}

/// Opens a streaming chat request and reads until the first content chunk arrives.
fn open_stream(addr: std::net::SocketAddr, user: &str, max_tokens: u64) -> TcpStream {
    let body = json!({"messages": [{"role": "user", "content": user}], "max_tokens": max_tokens,
                      "temperature": 0, "stream": true})
    .to_string();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("\"content\":\"") || seen.len() < 400 {
        let n = s.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "stream closed early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let cfg = ToyConfig {
        slots: 1,
        ctx: 4096,
        step_delay: Duration::from_millis(5),
        ..ToyConfig::default()
    };
    let sched = BatcherConfig {
        queue: 1,
        ..BatcherConfig::default()
    };
    let (srv, _) = server_with(cfg, sched, ServerConfig::default());
    let a = open_stream(srv.addr, "a", 3000);
    // B waits in the queue (its request is accepted; it gets no token while A runs).
    let body = chat_body("b", 3000).to_string();
    let mut b = TcpStream::connect(srv.addr).expect("connect");
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    b.write_all(req.as_bytes()).expect("write");
    wait_until("B queued", Duration::from_secs(10), || {
        srv.handle.metrics_text().contains("realizar_queue_depth 1")
    });
    let r = srv.post("/v1/chat/completions", &chat_body("c", 5));
    let e = r.error(429);
    assert_eq!(e["type"], "rate_limit_error");
    assert!(r.header("retry-after").is_some());
    drop(a);
    drop(b);
    wait_until("slots freed", Duration::from_secs(10), || {
        let m = srv.handle.metrics_text();
        m.contains("realizar_active_slots 0") && m.contains("realizar_queue_depth 0")
    });
    assert_eq!(
        srv.post("/v1/chat/completions", &chat_body("c", 5)).status,
        200
    );
}

#[test]
fn a_disconnected_client_frees_its_slot_and_the_work_stops() {
    let cfg = ToyConfig {
        slots: 2,
        ctx: 8192,
        step_delay: Duration::from_millis(2),
        ..ToyConfig::default()
    };
    let (srv, stats) = server_with(cfg, BatcherConfig::default(), ServerConfig::default());
    let s = open_stream(srv.addr, "bye", 8000);
    assert!(srv
        .handle
        .metrics_text()
        .contains("realizar_active_slots 1"));
    drop(s);
    wait_until("slot freed", Duration::from_secs(5), || {
        srv.handle
            .metrics_text()
            .contains("realizar_active_slots 0")
    });
    let steps = stats.steps.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        stats.steps.load(Ordering::Relaxed),
        steps,
        "the model kept working"
    );
}

#[test]
fn concurrent_greedy_requests_are_batched_and_batch_invariant() {
    let cfg = ToyConfig {
        slots: 4,
        ctx: 1024,
        step_delay: Duration::from_millis(3),
        ..ToyConfig::default()
    };
    let sched = BatcherConfig {
        prefill_chunk: 16,
        ..BatcherConfig::default()
    };
    let (srv, stats) = server_with(cfg, sched, ServerConfig::default());
    let prompts: Vec<String> = (0..4)
        .map(|i| format!("prompt {i} {}", "z".repeat(i * 70)))
        .collect();
    let alone: Vec<String> = prompts
        .iter()
        .map(|p| chat_text(&srv.post("/v1/chat/completions", &chat_body(p, 40))))
        .collect();
    assert_eq!(stats.max_seqs_per_step.load(Ordering::Relaxed), 1);
    let addr = srv.addr;
    let together: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = prompts
            .iter()
            .map(|p| {
                let body = chat_body(p, 40).to_string();
                sc.spawn(move || {
                    chat_text(&request(
                        addr,
                        "POST",
                        "/v1/chat/completions",
                        &[],
                        Some(body.as_bytes()),
                    ))
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("client")).collect()
    });
    assert_eq!(together, alone);
    assert!(
        stats.max_seqs_per_step.load(Ordering::Relaxed) >= 2,
        "no step evaluated several sequences"
    );
    let texts: std::collections::HashSet<&String> = alone.iter().collect();
    assert_eq!(
        texts.len(),
        4,
        "different prompts should give different texts"
    );
}

#[test]
fn a_panicking_handler_is_a_500_and_the_server_lives_on() {
    let srv = server();
    let r = srv.post(
        "/v1/chat/completions",
        &chat_body(realizar_server::testing::TOY_PANIC_TEXT, 3),
    );
    let e = r.error(500);
    assert_eq!(e["type"], "server_error");
    assert_eq!(srv.get("/health").status, 200);
    assert_eq!(
        srv.post("/v1/chat/completions", &chat_body("after", 3))
            .status,
        200
    );
}

#[test]
fn shutdown_drains_in_flight_streams() {
    let cfg = ToyConfig {
        slots: 2,
        ctx: 1024,
        step_delay: Duration::from_millis(5),
        ..ToyConfig::default()
    };
    let (srv, _) = server_with(cfg, BatcherConfig::default(), ServerConfig::default());
    let addr = srv.addr;
    let mut s = open_stream(addr, "drain", 150);
    let reader = std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        String::from_utf8_lossy(&rest).into_owned()
    });
    let t0 = Instant::now();
    srv.shutdown();
    let rest = reader.join().expect("reader");
    assert!(rest.contains("data: [DONE]"), "the stream was cut: {rest}");
    assert!(rest.contains("\"finish_reason\":\"length\""));
    assert!(t0.elapsed() < Duration::from_secs(20));
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after shutdown"
    );
}

#[test]
fn a_shared_prompt_prefix_is_reused_exactly() {
    let cfg = ToyConfig {
        slots: 1,
        ..ToyConfig::default()
    };
    let sched = BatcherConfig {
        reuse_prefix: true,
        ..BatcherConfig::default()
    };
    let (srv, stats) = server_with(cfg, sched, ServerConfig::default());
    let long = format!("a long shared opening {}", "x".repeat(100));
    let a = chat_text(&srv.post("/v1/chat/completions", &chat_body(&long, 10)));
    let rows_a = stats.rows.load(Ordering::Relaxed);
    let again = chat_text(&srv.post("/v1/chat/completions", &chat_body(&long, 10)));
    let rows_again = stats.rows.load(Ordering::Relaxed) - rows_a;
    assert_eq!(again, a);
    // Only the prompt's last two tokens (one pass of two rows, as a fresh evaluation's last
    // pass has) and the decode steps are evaluated again.
    assert_eq!(rows_again, 2 + 9, "the cached prompt was evaluated again");
    // A prompt that diverges from the cached one gives what a fresh server gives.
    let other = format!("{long} but then different");
    let reused = chat_text(&srv.post("/v1/chat/completions", &chat_body(&other, 10)));
    let (fresh_srv, _) = server_with(cfg, BatcherConfig::default(), ServerConfig::default());
    let fresh = chat_text(&fresh_srv.post("/v1/chat/completions", &chat_body(&other, 10)));
    assert_eq!(reused, fresh);
}

/// `n` choices per request and several prompts per `/v1/completions` request: each choice its
/// own sequence (seed + index), whole and streamed alike; usage counts every prompt once and
/// every choice's tokens.
#[test]
fn several_choices_and_prompts_per_request() {
    let srv = server();
    let chat = json!({"messages": [{"role": "user", "content": "choices"}], "n": 3,
                      "temperature": 1.0, "seed": 9, "max_tokens": 12});
    let r = srv.post("/v1/chat/completions", &chat);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let choices = v["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 3);
    let texts: Vec<String> = choices
        .iter()
        .enumerate()
        .map(|(i, c)| {
            assert_eq!(c["index"], i);
            c["message"]["content"].as_str().unwrap_or("?").to_string()
        })
        .collect();
    // Choice i is the single-choice request with seed 9 + i.
    for (i, t) in texts.iter().enumerate() {
        let mut one = chat.clone();
        one["n"] = json!(1);
        one["seed"] = json!(9 + i);
        assert_eq!(
            &chat_text(&srv.post("/v1/chat/completions", &one)),
            t,
            "choice {i}"
        );
    }
    let single = srv.post("/v1/chat/completions", &{
        let mut one = chat.clone();
        one["n"] = json!(1);
        one
    });
    let u1 = single.json()["usage"].clone();
    assert_eq!(v["usage"]["prompt_tokens"], u1["prompt_tokens"]);
    let streamed = {
        let mut s = chat.clone();
        s["stream"] = json!(true);
        s["stream_options"] = json!({"include_usage": true});
        srv.post("/v1/chat/completions", &s)
    };
    let mut got = vec![String::new(); 3];
    let mut finished = [false; 3];
    let mut usage = None;
    for e in streamed.sse() {
        if e == "[DONE]" {
            break;
        }
        let c: Value = serde_json::from_str(&e).expect("chunk");
        if !c["usage"].is_null() {
            usage = Some(c["usage"].clone());
        }
        for ch in c["choices"].as_array().into_iter().flatten() {
            let i = ch["index"].as_u64().expect("index") as usize;
            got[i].push_str(ch["delta"]["content"].as_str().unwrap_or_default());
            finished[i] |= ch["finish_reason"].is_string();
        }
    }
    assert_eq!(got, texts);
    assert!(finished.iter().all(|f| *f));
    assert_eq!(usage.as_ref(), Some(&v["usage"]));

    // Two prompts, two choices each: choice k is choice k % 2 of prompt k / 2.
    let r = srv.post(
        "/v1/completions",
        &json!({"prompt": ["abc", [1, 2, 3]], "n": 2, "temperature": 0, "max_tokens": 6}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let c = v["choices"].as_array().expect("choices");
    assert_eq!(c.len(), 4);
    for (k, prompt) in [
        json!("abc"),
        json!("abc"),
        json!([1, 2, 3]),
        json!([1, 2, 3]),
    ]
    .iter()
    .enumerate()
    {
        let one = srv.post(
            "/v1/completions",
            &json!({"prompt": prompt, "temperature": 0, "max_tokens": 6}),
        );
        assert_eq!(c[k]["text"], one.json()["choices"][0]["text"], "choice {k}");
        assert_eq!(c[k]["index"], k);
    }
    let e = srv
        .post("/v1/completions", &json!({"prompt": ["a", 5]}))
        .error(400);
    assert_eq!(e["param"], "prompt");
    let e = srv
        .post("/v1/completions", &json!({"prompt": ["a", "b"], "n": 40}))
        .error(400);
    assert_eq!(e["param"], "n");
}
