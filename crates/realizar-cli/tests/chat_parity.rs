//! `realizar generate --chat` and the server's `/v1/chat/completions` take one path from a
//! conversation to its reply: at temperature 0 they give identical text, stop at the same token
//! and for the same reason, on conversations with system prompts, several turns, a message that
//! starts with the BOS text, and a prompt exactly as long as a multiple of the server's prompt
//! chunk.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{http, Server};

use realizar_runtime::{ChatMessage, LoadOptions, Model};
use serde_json::{json, Value};

/// The server's prompt chunk (`LocalOptions::default().prefill_chunk`).
const CHUNK: usize = 64;
const MAX_TOKENS: usize = 40;

fn model_path() -> PathBuf {
    let dir = std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let p = dir.join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} missing: run `cargo xtask fetch-models`",
        p.display()
    );
    p
}

fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let (status, raw) = http(addr, "POST", path, body);
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Starts `realizar serve`; its stdout is returned open (a closed pipe would end the server at
/// its next line).
fn start_server(model: &PathBuf) -> (Server, ChildStdout, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_realizar"))
        .args(["serve", "--port", "0", "--parallel", "2", "--threads", "2"])
        .arg("--model")
        .arg(model)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start realizar serve");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("a line");
    let first = first.trim_end().to_string();
    let server = Server(child);
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
    (server, stdout.into_inner(), addr)
}

fn to_json(conv: &[(&str, String)]) -> Value {
    Value::Array(
        conv.iter()
            .map(|(r, c)| json!({"role": r, "content": c}))
            .collect(),
    )
}

/// A conversation whose templated prompt is exactly `k * CHUNK` tokens (padding the last user
/// message with words).
fn chunk_multiple(model: &Model) -> Vec<(&'static str, String)> {
    let words = [
        "river", "stone", "lamp", "garden", "signal", "copper", "window", "harbor",
    ];
    let mut content = String::from("Summarise these words:");
    for i in 0.. {
        let conv = vec![("user", content.clone())];
        let msgs: Vec<ChatMessage> = conv
            .iter()
            .map(|(r, c)| ChatMessage::new(*r, c.as_str()))
            .collect();
        let n = model.chat_prompt(&msgs).expect("chat prompt").len();
        if n % CHUNK == 0 && n > CHUNK {
            return conv;
        }
        content.push(' ');
        content.push_str(words[i % words.len()]);
        assert!(i < 4096, "no padding reached a multiple of {CHUNK}");
    }
    unreachable!()
}

#[test]
fn cli_chat_and_server_chat_give_the_same_reply() {
    let path = model_path();
    let model = Model::open(&path, &LoadOptions::default()).expect("open");
    let bos_text = {
        let tok = model.tokenizer().expect("tokenizer");
        let bos = model.special().and_then(|s| s.bos).expect("a BOS id");
        tok.token_to_piece(bos).expect("BOS text").to_string()
    };
    let conversations: Vec<Vec<(&str, String)>> = vec![
        vec![("user", "Name three colours of the rainbow.".into())],
        vec![
            ("system", "You answer in one short sentence.".into()),
            ("user", "Why is the sky blue?".into()),
        ],
        vec![
            ("system", "You are a terse assistant.".into()),
            ("user", "What is the capital of France?".into()),
            ("assistant", "Paris.".into()),
            ("user", "And of Italy?".into()),
        ],
        vec![("user", format!("{bos_text}Hello there, who are you?"))],
        chunk_multiple(&model),
    ];
    drop(model);
    let (_server, _stdout, addr) = start_server(&path);
    for conv in &conversations {
        let messages = to_json(conv);
        let out = Command::new(env!("CARGO_BIN_EXE_realizar"))
            .args(["generate", "--temperature", "0", "--json", "--threads", "2"])
            .args(["--max-tokens", &MAX_TOKENS.to_string()])
            .arg("--model")
            .arg(&path)
            .arg("--messages")
            .arg(messages.to_string())
            .output()
            .expect("run realizar generate");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cli: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let (status, body) = post(
            addr,
            "/v1/chat/completions",
            &json!({"messages": messages, "temperature": 0, "max_tokens": MAX_TOKENS}).to_string(),
        );
        assert_eq!(status, 200, "{body}");
        let srv: Value = serde_json::from_str(&body).expect("JSON body");
        let choice = &srv["choices"][0];
        let what = format!("conversation {messages}");
        assert_eq!(
            srv["usage"]["prompt_tokens"].as_u64(),
            cli["prompt_ids"].as_array().map(|a| a.len() as u64),
            "{what}: prompt length"
        );
        assert_eq!(
            choice["message"]["content"].as_str(),
            cli["text"].as_str(),
            "{what}: text"
        );
        assert_eq!(
            srv["usage"]["completion_tokens"].as_u64(),
            cli["ids"].as_array().map(|a| a.len() as u64),
            "{what}: the reply stops at the same token"
        );
        let want_reason = match cli["stop_reason"].as_str() {
            Some("eos") | Some("stop") => "stop",
            _ => "length",
        };
        assert_eq!(
            choice["finish_reason"].as_str(),
            Some(want_reason),
            "{what}: finish reason"
        );
    }
}
