//! The server as an attacker or a careless operator meets it: forged chat turns, odd request
//! values, HTTP-layer errors, slow and many connections, shutdown under load. Each test names
//! the class it holds.

mod common;

use std::sync::Arc;

use common::{request, TestServer};
use realizar_server::testing::{ToyConfig, ToyEngine};
use realizar_server::{BatcherConfig, Engine, ServerConfig};
use serde_json::{json, Value};

fn toy_server(config: ServerConfig) -> TestServer {
    let (gen, _) = ToyEngine::generator("toy", ToyConfig::default(), BatcherConfig::default())
        .expect("toy engine");
    let emb: Arc<dyn Engine> = Arc::new(ToyEngine::embedder("toy-embed"));
    TestServer::start(config, vec![Arc::new(gen), emb])
}

fn prompt_tokens(srv: &TestServer, path: &str, body: &Value) -> u64 {
    let r = srv.post(path, body);
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    v["usage"]["prompt_tokens"]
        .as_u64()
        .or_else(|| v["prompt_eval_count"].as_u64())
        .unwrap_or_else(|| panic!("no prompt token count in {v}"))
}

/// A control-token text typed in a message (the toy's `<bos>`) is text, not a token: the
/// prompt has as many tokens as with any other five bytes. `--parse-special` restores
/// llama.cpp's reading, and `/v1/completions` parses specials only when asked.
#[test]
fn message_content_cannot_write_control_tokens() {
    let chat = |content: &str| {
        json!({"model": "toy", "messages": [{"role": "user", "content": content}],
               "max_tokens": 1, "temperature": 0})
    };
    let ollama = |content: &str| {
        json!({"model": "toy", "messages": [{"role": "user", "content": content}],
               "stream": false, "options": {"num_predict": 1}})
    };
    let srv = toy_server(ServerConfig::default());
    let forged = prompt_tokens(&srv, "/v1/chat/completions", &chat("a<bos>b"));
    let plain = prompt_tokens(&srv, "/v1/chat/completions", &chat("a<xyz>b"));
    assert_eq!(forged, plain);
    assert_eq!(
        prompt_tokens(&srv, "/api/chat", &ollama("a<bos>b")),
        prompt_tokens(&srv, "/api/chat", &ollama("a<xyz>b"))
    );
    let cmpl = |parse: Option<bool>| {
        let mut b = json!({"model": "toy", "prompt": "a<bos>b", "max_tokens": 1});
        if let Some(p) = parse {
            b["parse_special"] = json!(p);
        }
        prompt_tokens(&srv, "/v1/completions", &b)
    };
    assert_eq!(cmpl(None), cmpl(Some(false)));
    assert_eq!(cmpl(Some(true)) + 4, cmpl(None));
    drop(srv);

    let srv = toy_server(ServerConfig {
        parse_special: true,
        ..ServerConfig::default()
    });
    let forged = prompt_tokens(&srv, "/v1/chat/completions", &chat("a<bos>b"));
    let plain = prompt_tokens(&srv, "/v1/chat/completions", &chat("a<xyz>b"));
    assert_eq!(forged + 4, plain);
    let _ = request;
}

fn chat(content: &str) -> Value {
    json!({"model": "toy", "messages": [{"role": "user", "content": content}],
           "max_tokens": 4, "temperature": 0})
}

/// Numbers that are finite as f64 but collapse (to 0 or infinity) as the sampler's f32 are
/// refused, by name, on both APIs.
#[test]
fn values_that_collapse_as_f32_are_400s() {
    let srv = toy_server(ServerConfig::default());
    for (field, v) in [
        ("repeat_penalty", 1e-300),
        ("temperature", 1e300),
        ("top_p", 1e-60),
        ("presence_penalty", -1e-50),
    ] {
        let mut b = chat("hi");
        b[field] = json!(v);
        let e = srv.post("/v1/chat/completions", &b).error(400);
        assert_eq!(e["param"], field, "{e}");
        let ob = json!({"model": "toy", "prompt": "hi", "stream": false,
                        "options": {field: v}});
        let r = srv.post("/api/generate", &ob);
        assert_eq!(r.status, 400, "{}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap_or("").contains(field),
            "{}",
            r.body
        );
    }
    // Zero itself and values an f32 holds are fine.
    let mut b = chat("hi");
    b["temperature"] = json!(0.0);
    b["repeat_penalty"] = json!(1e-30);
    assert_eq!(srv.post("/v1/chat/completions", &b).status, 200);
}

/// Ollama routes answer errors in Ollama's shape, `{"error": "..."}`, a string.
#[test]
fn ollama_errors_have_ollama_shape() {
    let srv = toy_server(ServerConfig::default());
    let check = |r: common::Resp, status: u16| {
        assert_eq!(r.status, status, "{}", r.body);
        let v = r.json();
        assert!(v["error"].is_string(), "{v}");
        assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{v}");
    };
    check(
        request(srv.addr, "POST", "/api/chat", &[], Some(b"{nope")),
        400,
    );
    check(
        srv.post(
            "/api/chat",
            &json!({"model": "nope", "messages": [{"role": "user", "content": "x"}]}),
        ),
        404,
    );
    check(srv.post("/api/generate", &json!({"model": "toy"})), 400);
    check(request(srv.addr, "DELETE", "/api/tags", &[], None), 405);
}

/// `num_predict: 0` reads the prompt and generates nothing; -1 and -2 run to the context's
/// end or a stop.
#[test]
fn ollama_num_predict_zero_generates_nothing() {
    let srv = toy_server(ServerConfig::default());
    for stream in [false, true] {
        let r = srv.post(
            "/api/generate",
            &json!({"model": "toy", "prompt": "hello", "stream": stream, "raw": true,
                    "options": {"num_predict": 0}}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        let last: Value = serde_json::from_str(r.body.lines().last().unwrap_or("")).expect("json");
        assert_eq!(last["done"], true);
        assert_eq!(last["eval_count"], 0);
        assert_eq!(last["response"], "");
        assert_eq!(last["prompt_eval_count"], 6);
    }
    let r = srv.post(
        "/api/generate",
        &json!({"model": "toy", "prompt": "hello", "stream": false,
                "options": {"num_predict": 3}}),
    );
    assert_eq!(r.json()["eval_count"], 3);
}

/// A logprob's `bytes` are the token's own bytes, also where a token holds part of a
/// character: the bytes of all tokens together are the text's bytes.
#[test]
fn logprob_bytes_are_the_tokens_real_bytes() {
    let srv = toy_server(ServerConfig::default());
    let mut found = false;
    for i in 0..40 {
        let mut b = chat(&format!("euro {i}"));
        b["max_tokens"] = json!(40);
        b["logprobs"] = json!(true);
        b["top_logprobs"] = json!(2);
        let v = srv.post("/v1/chat/completions", &b).json();
        let text = v["choices"][0]["message"]["content"]
            .as_str()
            .expect("text")
            .to_string();
        let mut bytes = Vec::new();
        for e in v["choices"][0]["logprobs"]["content"]
            .as_array()
            .expect("entries")
        {
            let b: Vec<u8> = serde_json::from_value(e["bytes"].clone()).expect("bytes");
            for t in e["top_logprobs"].as_array().expect("top") {
                let tb: Vec<u8> = serde_json::from_value(t["bytes"].clone()).expect("bytes");
                assert!(!tb.is_empty());
            }
            bytes.extend(b);
        }
        assert_eq!(String::from_utf8(bytes).expect("UTF-8"), text);
        if text.contains('€') {
            found = true;
            break;
        }
    }
    assert!(found, "no generation produced a multi-byte character");
}

/// HEAD works wherever GET does (no body), and a 405 lists both.
#[test]
fn head_works_where_get_does() {
    let srv = toy_server(ServerConfig::default());
    for path in [
        "/health",
        "/v1/models",
        "/v1/models/toy",
        "/metrics",
        "/api/tags",
    ] {
        let r = request(srv.addr, "HEAD", path, &[], None);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.body.is_empty(), "{path}: {}", r.body);
    }
    let r = request(srv.addr, "PUT", "/v1/models", &[], None);
    r.error(405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    assert_eq!(
        request(srv.addr, "HEAD", "/v1/chat/completions", &[], None).status,
        405
    );
}

/// The auth scheme is case-insensitive; a 401 says how to authenticate.
#[test]
fn bearer_is_case_insensitive_and_401_has_www_authenticate() {
    let srv = toy_server(ServerConfig {
        api_key: Some("sekret-key".into()),
        ..ServerConfig::default()
    });
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let h = format!("{scheme} sekret-key");
        let r = request(
            srv.addr,
            "GET",
            "/v1/models",
            &[("Authorization", &h)],
            None,
        );
        assert_eq!(r.status, 200, "{scheme}");
    }
    for bad in [
        "Bearer sekret-ke",
        "Bearer sekret-keyy",
        "Basic sekret-key",
        "sekret-key",
        "",
    ] {
        let r = request(
            srv.addr,
            "GET",
            "/v1/models",
            &[("Authorization", bad)],
            None,
        );
        r.error(401);
        assert!(
            r.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{bad}: {:?}",
            r.headers
        );
    }
}

/// Malformed messages and out-of-vocabulary biases are 400s naming the field.
#[test]
fn messages_without_content_and_foreign_logit_bias_ids_are_400s() {
    let srv = toy_server(ServerConfig::default());
    let e = srv
        .post(
            "/v1/chat/completions",
            &json!({"model": "toy", "messages": [{"role": "user"}]}),
        )
        .error(400);
    assert_eq!(e["param"], "messages[0].content");
    let e = srv
        .post(
            "/v1/chat/completions",
            &json!({"model": "toy", "messages": [{"role": "user", "content": null}]}),
        )
        .error(400);
    assert_eq!(e["param"], "messages[0].content");
    let e = srv
        .post(
            "/v1/chat/completions",
            &json!({"model": "toy", "messages": [{"role": "assistant", "content": "x",
                     "tool_calls": [{"id": "1"}]}]}),
        )
        .error(400);
    assert_eq!(e["param"], "messages[0].tool_calls[0].function");
    for id in ["258", "4294967295"] {
        let mut b = chat("hi");
        b["logit_bias"] = json!({id: 5});
        let e = srv.post("/v1/chat/completions", &b).error(400);
        assert_eq!(e["param"], "logit_bias", "{e}");
    }
    let mut b = chat("hi");
    b["logit_bias"] = json!({"257": -100});
    assert_eq!(srv.post("/v1/chat/completions", &b).status, 200);
}

/// A client that goes away mid-answer is counted in the metrics.
#[test]
fn aborted_requests_are_counted() {
    use std::io::{Read, Write};
    let (gen, _) = ToyEngine::generator(
        "toy",
        ToyConfig {
            step_delay: std::time::Duration::from_millis(20),
            ..ToyConfig::default()
        },
        BatcherConfig::default(),
    )
    .expect("toy");
    let srv = TestServer::start(ServerConfig::default(), vec![Arc::new(gen)]);
    let body = json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 200,
                      "stream": true})
    .to_string();
    let mut s = std::net::TcpStream::connect(srv.addr).expect("connect");
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut buf = [0u8; 512];
    let _ = s.read(&mut buf).expect("read");
    drop(s);
    let t0 = std::time::Instant::now();
    loop {
        let m = srv.get("/metrics").body;
        if m.contains("realizar_requests_aborted_total{endpoint=\"chat_completions\"} 1") {
            break;
        }
        assert!(t0.elapsed().as_secs() < 10, "{m}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Sends raw bytes on a fresh connection and reads the answer until the server closes.
fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> common::Resp {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let _ = s.write_all(bytes);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    common::parse_response(&raw)
}

/// Requests hyper cannot parse (bad request line, header too large, URI too long) get their
/// status with the same JSON error body as every other error.
#[test]
fn http_layer_errors_carry_json_bodies() {
    let srv = toy_server(ServerConfig::default());
    raw_exchange(srv.addr, b"GARBAGE\r\n\r\n").error(400);
    raw_exchange(
        srv.addr,
        b"GET /health HTTP/1.1\r\nHo st: x\r\nConnection: close\r\n\r\n",
    )
    .error(400);
    let mut many = String::from("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for i in 0..200 {
        many.push_str(&format!("x-h{i}: v\r\n"));
    }
    many.push_str("\r\n");
    raw_exchange(srv.addr, many.as_bytes()).error(431);
    let big = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(300 * 1024)
    );
    raw_exchange(srv.addr, big.as_bytes()).error(431);
    let long_uri = format!(
        "GET /health?{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "u".repeat(20_000)
    );
    raw_exchange(srv.addr, long_uri.as_bytes()).error(414);
    // The server is unharmed.
    assert_eq!(srv.get("/health").status, 200);
}

/// A body that does not arrive within the body timeout is a 408 with a JSON body.
#[test]
fn a_slow_body_times_out_with_408() {
    use std::io::{Read, Write};
    let srv = toy_server(ServerConfig {
        body_timeout: std::time::Duration::from_secs(1),
        ..ServerConfig::default()
    });
    let mut s = std::net::TcpStream::connect(srv.addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro")
        .expect("write");
    let t0 = std::time::Instant::now();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    common::parse_response(&raw).error(408);
}

/// Slow-body connections past the connection cap never starve the server: connections over
/// the cap are answered 503 (with `Retry-After`) or closed, `/health` answers within a second
/// throughout, and service resumes when they go.
#[test]
fn slow_connections_past_the_cap_leave_health_answering() {
    use std::io::Write;
    let srv = toy_server(ServerConfig {
        max_connections: 16,
        body_timeout: std::time::Duration::from_secs(3),
        ..ServerConfig::default()
    });
    let mut held = Vec::new();
    for _ in 0..200 {
        let Ok(mut s) = std::net::TcpStream::connect(srv.addr) else {
            continue;
        };
        let _ = s.write_all(
            b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{",
        );
        held.push(s);
    }
    for _ in 0..5 {
        let t0 = std::time::Instant::now();
        let r = srv.get("/health");
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(t0.elapsed() < std::time::Duration::from_secs(1));
        let r = srv.post("/v1/completions", &json!({"prompt": "x", "max_tokens": 1}));
        assert!(r.status == 200 || r.status == 503, "{}", r.body);
        if r.status == 503 {
            assert!(r.header("retry-after").is_some());
            assert_eq!(r.json()["error"]["code"], "too_many_connections");
        }
    }
    drop(held);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let r = srv.post("/v1/completions", &json!({"prompt": "x", "max_tokens": 1}));
    assert_eq!(r.status, 200, "{}", r.body);
}

/// When the drain timeout ends with requests still running, each ends cleanly: a stream with an
/// error event and its terminator (SSE `[DONE]`, an NDJSON error line), a waiting request with
/// a 503, never a cut connection or an empty 200.
#[test]
fn the_drain_timeout_ends_every_answer_with_an_error_and_a_terminator() {
    use std::io::{Read, Write};
    let (gen, _) = ToyEngine::generator(
        "toy",
        ToyConfig {
            slots: 1,
            ctx: 4096,
            step_delay: std::time::Duration::from_millis(20),
            ..ToyConfig::default()
        },
        BatcherConfig::default(),
    )
    .expect("toy");
    let srv = TestServer::start(
        ServerConfig {
            drain_timeout: std::time::Duration::from_millis(500),
            ..ServerConfig::default()
        },
        vec![Arc::new(gen)],
    );
    let send = |path: &str, body: Value| {
        let body = body.to_string();
        let mut s = std::net::TcpStream::connect(srv.addr).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .expect("timeout");
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).expect("write");
        std::thread::spawn(move || {
            let mut raw = Vec::new();
            let _ = s.read_to_end(&mut raw);
            common::parse_response(&raw)
        })
    };
    let msgs = json!([{"role": "user", "content": "x"}]);
    // One generating (the only slot), the others queued behind it.
    let sse = send(
        "/v1/chat/completions",
        json!({"messages": msgs, "max_tokens": 2000, "stream": true, "ignore_eos": true}),
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let queued_sse = send(
        "/v1/completions",
        json!({"prompt": "y", "max_tokens": 2000, "stream": true}),
    );
    let ndjson = send(
        "/api/chat",
        json!({"messages": msgs, "options": {"num_predict": 2000}}),
    );
    let whole = send(
        "/v1/chat/completions",
        json!({"messages": msgs, "max_tokens": 2000}),
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let t0 = std::time::Instant::now();
    srv.shutdown();
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
    for (name, r) in [("sse", sse), ("queued", queued_sse)] {
        let r = r.join().expect("reader");
        assert_eq!(r.status, 200, "{name}");
        let events = r.sse();
        assert_eq!(
            events.last().map(String::as_str),
            Some("[DONE]"),
            "{name}: {}",
            r.body
        );
        let err: Value = serde_json::from_str(&events[events.len() - 2]).expect("json");
        assert!(err["error"]["message"].is_string(), "{name}: {err}");
    }
    let r = ndjson.join().expect("reader");
    let last: Value =
        serde_json::from_str(r.body.lines().last().unwrap_or_default()).expect("json");
    assert!(last["error"].is_string(), "{}", r.body);
    let r = whole.join().expect("reader");
    r.error(503);
}

/// A large embedding batch is embedded in turns: a small request sent meanwhile is answered
/// within a turn or two, and a client that goes away stops the work.
#[test]
fn embedding_batches_interleave_and_stop_when_the_client_goes() {
    use std::io::Write;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};
    let (emb, embedded) = ToyEngine::slow_embedder("emb", Duration::from_millis(10));
    let srv = TestServer::start(ServerConfig::default(), vec![Arc::new(emb)]);
    let big = json!({"model": "emb", "input": vec!["text"; 400]}).to_string();
    let send_big = || {
        let mut s = std::net::TcpStream::connect(srv.addr).expect("connect");
        write!(
            s,
            "POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{big}",
            big.len()
        )
        .expect("write");
        s
    };
    // Interleaving: the big batch takes 4 s alone; the small request does not wait for it.
    let big_conn = send_big();
    std::thread::sleep(Duration::from_millis(100));
    let t0 = Instant::now();
    let r = srv.post("/v1/embeddings", &json!({"model": "emb", "input": "small"}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        t0.elapsed() < Duration::from_millis(2500),
        "the small request waited {:?}",
        t0.elapsed()
    );
    // Cancellation: the client goes; the work stops within a turn.
    drop(big_conn);
    std::thread::sleep(Duration::from_millis(500));
    let at_stop = embedded.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(700));
    let later = embedded.load(Ordering::Relaxed);
    assert_eq!(at_stop, later, "embedding went on after the client left");
    assert!(later < 200, "{later} texts embedded");
}

/// A text that cannot fit the context whatever its tokens (more bytes than the context times
/// the longest token) is refused before it is tokenized, with the numbers.
#[test]
fn over_long_texts_are_refused_before_tokenizing() {
    let srv = toy_server(ServerConfig::default());
    // The toy: 256 positions, tokens of at most 5 bytes.
    let long = "y".repeat(256 * 5 + 1);
    for (path, body) in [
        ("/v1/completions", json!({"prompt": long})),
        ("/v1/chat/completions", chat(&long)),
        ("/api/generate", json!({"prompt": long, "stream": false})),
    ] {
        let r = srv.post(path, &body);
        assert_eq!(r.status, 400, "{path}: {}", r.body);
        assert!(r.body.contains("at least 257 tokens"), "{path}: {}", r.body);
    }
}

/// A request field the server does not implement (tools, a response format's unknown field,
/// a GBNF token reference, an Ollama `format` other than JSON, mirostat) is a 400 naming it, never silently dropped; informational fields
/// (`user`, `metadata`, `keep_alive`, resource options) are fine.
#[test]
fn unimplemented_request_fields_are_400s_naming_them() {
    let srv = toy_server(ServerConfig::default());
    let msgs = json!([{"role": "user", "content": "x"}]);
    for (path, body, field) in [
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "tools": [{"type": "function"}]}),
            "tools",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "response_format": {"type": "json_object", "x": 1}}),
            "response_format.x",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "stream_options": {"include_usage": true, "x": 1}}),
            "stream_options.x",
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "grammar": "root ::= <[1]>"}),
            "grammar",
        ),
        (
            "/api/generate",
            json!({"prompt": "x", "format": "yaml"}),
            "format",
        ),
        (
            "/api/chat",
            json!({"messages": msgs, "options": {"mirostat": 2}}),
            "options.mirostat",
        ),
        (
            "/api/chat",
            json!({"messages": msgs, "tools": [{"type": "function"}]}),
            "tools",
        ),
        (
            "/v1/embeddings",
            json!({"model": "toy-embed", "input": "x", "extra": 1}),
            "extra",
        ),
        (
            "/api/embed",
            json!({"model": "toy-embed", "input": "x", "truncate": false}),
            "truncate",
        ),
        ("/tokenize", json!({"content": "x", "x": true}), "x"),
    ] {
        let r = srv.post(path, &body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.body);
        assert!(r.body.contains(field), "{path}: {}", r.body);
    }
    for (path, body) in [
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "max_tokens": 1, "user": "u", "metadata": {"a": "b"}, "tools": null}),
        ),
        (
            "/api/chat",
            json!({"messages": msgs, "stream": false, "keep_alive": "5m", "tools": [], "options": {"num_predict": 1, "num_ctx": 4096, "num_thread": 2}}),
        ),
        (
            "/api/embed",
            json!({"model": "toy-embed", "input": "x", "truncate": true, "keep_alive": 0}),
        ),
    ] {
        let r = srv.post(path, &body);
        assert_eq!(r.status, 200, "{path} {body}: {}", r.body);
    }
}
