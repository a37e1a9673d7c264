//! `realizar inspect` on the real models and on the malformed-file corpora.

#[path = "../../realizar-format-gguf/tests/corpus/mod.rs"]
mod gguf_corpus;
#[path = "../../realizar-format-safetensors/tests/corpus/mod.rs"]
mod safetensors_corpus;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn realizar(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_realizar"))
        .args(args)
        .output()
        .expect("run realizar")
}

fn models_dir() -> PathBuf {
    std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

fn model(rel: &str) -> String {
    let p = models_dir().join(rel);
    assert!(
        p.exists(),
        "{} not found: run `cargo xtask fetch-models`",
        p.display()
    );
    p.display().to_string()
}

fn inspect_json(path: &str) -> Value {
    let out = realizar(&["inspect", path, "--json"]);
    assert!(
        out.status.success(),
        "inspect {path}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("inspect --json prints one JSON document")
}

#[test]
fn smollm2_has_the_right_architecture_and_tensors() {
    let j = inspect_json(&model("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert_eq!(j["format"], "gguf");
    assert_eq!(j["version"], 3);
    let h = &j["hyperparameters"];
    assert_eq!(h["architecture"], "llama");
    assert_eq!(h["block_count"], 30);
    assert_eq!(h["embedding_length"], 576);
    assert_eq!(h["head_count"], 9);
    assert_eq!(h["head_count_kv"], 3);
    let totals = &j["totals"];
    assert_eq!(totals["tensors"], 272);
    assert_eq!(totals["types"]["q4_1"], 210);
    assert_eq!(totals["types"]["f32"], 61);
    assert_eq!(totals["types"]["q8_0"], 1);
    assert_eq!(j["tensors"].as_array().unwrap().len(), 272);
    // Long arrays are summarized, not dumped.
    assert_eq!(j["metadata"]["tokenizer.ggml.tokens"]["len"], 49152);
    let text = realizar(&[
        "inspect",
        &model("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"),
    ]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("272 tensors (61 f32, 210 q4_1, 1 q8_0)"),
        "{text}"
    );
    assert!(
        text.lines().count() < 400,
        "text output should summarize long arrays"
    );
}

#[test]
fn gemma3_has_the_right_architecture() {
    let j = inspect_json(&model("gemma3-270m/gemma-3-270m-Q4_K_M.gguf"));
    let h = &j["hyperparameters"];
    assert_eq!(h["architecture"], "gemma3");
    assert_eq!(h["block_count"], 18);
    assert_eq!(h["embedding_length"], 640);
    let types = j["totals"]["types"].as_object().unwrap();
    for t in ["q5_0", "q8_0", "f32"] {
        assert!(
            types.contains_key(t),
            "gemma3 should hold {t} tensors: {types:?}"
        );
    }
    let count: u64 = types.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(Some(count), j["totals"]["tensors"].as_u64());
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("realizar-inspect-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn assert_rejected(path: &Path, name: &str) {
    let out = realizar(&["inspect", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{name}: exit {:?}, stderr {stderr}",
        out.status
    );
    assert!(out.stdout.is_empty(), "{name}: printed on stdout");
    assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
    assert!(
        stderr.starts_with(&format!("error: {}: ", path.display())),
        "{name}: {stderr}"
    );
}

#[test]
fn every_malformed_gguf_exits_2_with_one_line() {
    let dir = scratch("gguf");
    for (name, bytes) in gguf_corpus::malformed_cases() {
        let path = dir.join(format!("{name}.gguf"));
        std::fs::write(&path, &bytes).unwrap();
        assert_rejected(&path, name);
        if name != "empty" && name != "bad_magic" && name != "truncated_counts" {
            let out = realizar(&["inspect", path.to_str().unwrap()]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("(at byte "), "{name}: {stderr}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_malformed_safetensors_exits_2_with_one_line() {
    let dir = scratch("safetensors");
    let cases = safetensors_corpus::malformed_cases();
    let total = cases.len() + gguf_corpus::malformed_cases().len();
    assert!(total >= 40, "the two corpora hold only {total} files");
    for (name, bytes) in cases {
        let path = dir.join(format!("{name}.safetensors"));
        std::fs::write(&path, &bytes).unwrap();
        assert_rejected(&path, name);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn minilm_directory_and_file_are_read() {
    let j = inspect_json(&model("minilm-l6"));
    assert_eq!(j["format"], "huggingface-dir");
    let h = &j["hyperparameters"];
    assert_eq!(h["model_type"], "bert");
    assert_eq!(h["block_count"], 6);
    assert_eq!(h["embedding_length"], 384);
    assert_eq!(h["head_count"], 12);
    assert_eq!(h["vocab_size"], 30522);
    let n = j["totals"]["tensors"].as_u64().unwrap();
    assert!(n > 100, "{n} tensors");
    let f = inspect_json(&model("minilm-l6/model.safetensors"));
    assert_eq!(f["format"], "safetensors");
    assert_eq!(f["totals"]["tensors"].as_u64(), Some(n));
    assert_eq!(f["totals"]["bytes"], j["totals"]["bytes"]);
    let words = f["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "embeddings.word_embeddings.weight")
        .expect("word embeddings");
    assert_eq!(words["shape"], serde_json::json!([30522, 384]));
    assert_eq!(words["type"], "F32");
}

#[test]
fn a_directory_without_config_exits_2() {
    let dir = scratch("noconfig");
    let out = realizar(&["inspect", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_file_exits_1() {
    let out = realizar(&["inspect", "/nonexistent/model.gguf"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_arguments_exit_2() {
    let out = realizar(&["inspect"]);
    assert_eq!(out.status.code(), Some(2));
    let out = realizar(&["inspect", "x", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
}
