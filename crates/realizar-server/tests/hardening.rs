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
