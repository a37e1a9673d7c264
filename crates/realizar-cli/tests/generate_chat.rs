//! `realizar generate --chat` answers the reference conversation with llama.cpp's reply ids.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn refs() -> Value {
    let dir = std::env::var_os("REALIZAR_REFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("../shared/refs"));
    let path = dir.join("llamacpp/smollm2_refs.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (set REALIZAR_REFS)", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn model() -> String {
    let dir = std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("models"));
    let p = dir.join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} missing: run `cargo xtask fetch-models`",
        p.display()
    );
    p.display().to_string()
}

fn ids(v: &Value) -> Vec<u64> {
    v.as_array()
        .expect("an id array")
        .iter()
        .map(|x| x.as_u64().expect("an id"))
        .collect()
}

#[test]
fn chat_greedy_reply_matches_llama_cpp() {
    let r = refs();
    let chat = &r["chat"];
    let jinja = &chat["variants"]["jinja"];
    let messages = chat["message"].as_array().expect("chat.message");
    let mut args = vec![
        "generate".to_string(),
        "--model".into(),
        model(),
        "--chat".into(),
        "--temperature".into(),
        "0".into(),
        "--max-tokens".into(),
        "32".into(),
        "--json".into(),
    ];
    let (last, earlier) = messages.split_last().expect("a message");
    assert_eq!(last["role"], "user", "the CLI sends one user message");
    for m in earlier {
        assert_eq!(m["role"], "system", "the CLI can add only a system message");
        args.push("--system".into());
        args.push(m["content"].as_str().unwrap().into());
    }
    args.push("--prompt".into());
    args.push(last["content"].as_str().unwrap().into());

    let out = Command::new(env!("CARGO_BIN_EXE_realizar"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ids(&j["prompt_ids"]), ids(&jinja["prompt_ids"]));
    let want = ids(&jinja["greedy_ids"]);
    let eos = jinja["first_eos_index"].as_u64().map(|i| i as usize);
    match eos {
        Some(i) => {
            assert_eq!(ids(&j["ids"]), want[..=i], "reply ids");
            assert_eq!(j["stop_reason"], "eos");
        }
        None => {
            assert_eq!(ids(&j["ids"]), want, "reply ids");
            assert_eq!(j["stop_reason"], "length");
        }
    }
    if let Some(text) = jinja["reply_text_until_eos"].as_str() {
        assert_eq!(j["text"].as_str().unwrap().trim_end(), text.trim_end());
    }
}
