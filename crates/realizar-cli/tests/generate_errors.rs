//! `realizar generate` on hostile model files: valid GGUF containers holding inconsistent
//! models fail with exit code 2 and a one-line error; a missing file is exit code 1.

use std::path::PathBuf;
use std::process::Command;

use realizar_format_gguf::{GgufWriter, OwnedValue};

const D: u64 = 32;
const FF: u64 = 64;
const VOCAB: u64 = 8;

/// A tiny valid llama, with `edit` applied to its metadata and tensor list.
fn write_model(
    tag: &str,
    edit: impl FnOnce(&mut Vec<(String, OwnedValue)>, &mut Vec<(String, Vec<u64>)>),
) -> PathBuf {
    let mut meta: Vec<(String, OwnedValue)> = vec![
        (
            "general.architecture".into(),
            OwnedValue::String("llama".into()),
        ),
        ("llama.block_count".into(), OwnedValue::U32(1)),
        ("llama.context_length".into(), OwnedValue::U32(64)),
        ("llama.embedding_length".into(), OwnedValue::U32(D as u32)),
        (
            "llama.feed_forward_length".into(),
            OwnedValue::U32(FF as u32),
        ),
        ("llama.attention.head_count".into(), OwnedValue::U32(2)),
        ("llama.attention.head_count_kv".into(), OwnedValue::U32(1)),
        ("tokenizer.ggml.bos_token_id".into(), OwnedValue::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), OwnedValue::U32(2)),
    ];
    let mut tensors: Vec<(String, Vec<u64>)> = [
        ("token_embd.weight", vec![D, VOCAB]),
        ("output_norm.weight", vec![D]),
        ("blk.0.attn_norm.weight", vec![D]),
        ("blk.0.attn_q.weight", vec![D, D]),
        ("blk.0.attn_k.weight", vec![D, D / 2]),
        ("blk.0.attn_v.weight", vec![D, D / 2]),
        ("blk.0.attn_output.weight", vec![D, D]),
        ("blk.0.ffn_norm.weight", vec![D]),
        ("blk.0.ffn_gate.weight", vec![D, FF]),
        ("blk.0.ffn_up.weight", vec![D, FF]),
        ("blk.0.ffn_down.weight", vec![FF, D]),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), d))
    .collect();
    edit(&mut meta, &mut tensors);
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.add_metadata(&k, v);
    }
    for (i, (name, dims)) in tensors.iter().enumerate() {
        let n: u64 = dims.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|j| ((i as u64 * 31 + j) % 17) as f32 / 17.0 - 0.5)
            .collect();
        w.add_f32_tensor(name, dims, &values).expect("tensor");
    }
    let path = std::env::temp_dir().join(format!("realizar-cli-{}-{tag}.gguf", std::process::id()));
    std::fs::write(&path, w.to_bytes()).expect("write model");
    path
}

fn set(meta: &mut Vec<(String, OwnedValue)>, key: &str, v: OwnedValue) {
    meta.retain(|(k, _)| k != key);
    meta.push((key.into(), v));
}

/// Runs `realizar generate` on `path`; returns (exit code, stdout, stderr).
fn generate(path: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_realizar"))
        .args(["generate", "--model"])
        .arg(path)
        .args([
            "--prompt-ids",
            "1,3",
            "--max-tokens",
            "3",
            "--temperature",
            "0",
            "--threads",
            "1",
            "--json",
        ])
        .output()
        .expect("run realizar");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_invalid(
    tag: &str,
    needle: &str,
    edit: impl FnOnce(&mut Vec<(String, OwnedValue)>, &mut Vec<(String, Vec<u64>)>),
) {
    let path = write_model(tag, edit);
    let (code, _, stderr) = generate(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 2, "{tag}: stderr {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{tag}: not one line: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{tag}: {stderr}");
    assert!(stderr.contains(needle), "{tag}: `{needle}` not in {stderr}");
}

#[test]
fn valid_tiny_model_generates_json() {
    let path = write_model("ok", |_, _| {});
    let (code, stdout, stderr) = generate(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(v["prompt_ids"], serde_json::json!([1, 3]));
    assert!(v["ids"]
        .as_array()
        .is_some_and(|a| !a.is_empty() && a.len() <= 3));
    assert!(["length", "eos"].contains(&v["stop_reason"].as_str().unwrap_or("")));
    for k in [
        "load_ms",
        "prefill_ms",
        "prefill_tok_s",
        "decode_ms",
        "decode_tok_s",
    ] {
        assert!(v["timings"][k].is_number(), "timings.{k}");
    }
}

#[test]
fn missing_tensor_exits_2() {
    check_invalid("missing", "blk.0.attn_k.weight", |_, t| {
        t.retain(|(n, _)| n != "blk.0.attn_k.weight")
    });
}

#[test]
fn wrong_shape_exits_2() {
    check_invalid("shape", "blk.0.ffn_up.weight", |_, t| {
        for (n, d) in t.iter_mut() {
            if n == "blk.0.ffn_up.weight" {
                *d = vec![D, FF + 32];
            }
        }
    });
}

#[test]
fn zero_heads_exits_2() {
    check_invalid("heads", "llama.attention.head_count", |m, _| {
        set(m, "llama.attention.head_count", OwnedValue::U32(0))
    });
}

#[test]
fn bos_outside_vocab_exits_2() {
    check_invalid("bos", "tokenizer.ggml.bos_token_id", |m, _| {
        set(m, "tokenizer.ggml.bos_token_id", OwnedValue::U32(1000))
    });
}

#[test]
fn unknown_architecture_exits_2() {
    check_invalid("arch", "mamba9", |m, _| {
        set(
            m,
            "general.architecture",
            OwnedValue::String("mamba9".into()),
        )
    });
}

#[test]
fn not_gguf_exits_2_and_missing_file_exits_1() {
    let junk = std::env::temp_dir().join(format!("realizar-cli-junk-{}.gguf", std::process::id()));
    std::fs::write(&junk, b"definitely not gguf").expect("write");
    let (code, _, stderr) = generate(&junk);
    let _ = std::fs::remove_file(&junk);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = generate(std::path::Path::new("/nonexistent/model.gguf"));
    assert_eq!(code, 1, "{stderr}");
}

#[test]
fn prompt_id_outside_vocab_exits_2() {
    let path = write_model("badid", |_, _| {});
    let out = Command::new(env!("CARGO_BIN_EXE_realizar"))
        .args(["generate", "--model"])
        .arg(&path)
        .args(["--prompt-ids", "1,99", "--max-tokens", "2"])
        .output()
        .expect("run realizar");
    let _ = std::fs::remove_file(&path);
    assert_eq!(out.status.code(), Some(2));
}

/// Sizes from flags never abort the process: a context no machine can hold is exit 2 naming
/// it (the KV cache is allocated fallibly), and a huge `--max-tokens` is bounded by the context.
#[test]
fn huge_sizes_from_flags_are_errors_or_bounded() {
    let path = write_model("sizes", |_, _| {});
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_realizar"))
            .args(["generate", "--model"])
            .arg(&path)
            .args(["--prompt-ids", "1,3", "--temperature", "0", "--json"])
            .args(extra)
            .output()
            .expect("run realizar")
    };
    let ctx = "1000000000000";
    let out = run(&["--ctx", ctx, "--max-tokens", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("error: ") && err.contains(ctx), "{err}");
    let out = run(&["--ctx", "16", "--max-tokens", "1000000000000"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(v["ids"].as_array().is_some_and(|a| a.len() <= 16), "{v}");
    let _ = std::fs::remove_file(&path);
}
