//! Well-formed GGUF files whose metadata is broken (the tokenizer's keys, sizes that would
//! make the loader allocate without bound) are refused at load with exit 2 and an error that
//! names the key, by every command that opens a model; never a crash or a late failure.

use std::path::PathBuf;
use std::process::Command;

use realizar_format_gguf::{GgufWriter, OwnedValue, ValueType};

const D: u64 = 32;
const FF: u64 = 64;

fn strings(v: &[&str]) -> OwnedValue {
    OwnedValue::Array(
        ValueType::String,
        v.iter().map(|s| OwnedValue::String((*s).into())).collect(),
    )
}

fn i32s(v: &[i32]) -> OwnedValue {
    OwnedValue::Array(
        ValueType::I32,
        v.iter().map(|&x| OwnedValue::I32(x)).collect(),
    )
}

/// The vocabulary: byte-level BPE with one merge, BOS and EOS.
const TOKENS: [&str; 8] = ["a", "b", "ab", "c", "d", "Ġ", "<s>", "</s>"];
const TYPES: [i32; 8] = [1, 1, 1, 1, 1, 1, 3, 3];

/// A tiny llama with a working tokenizer, as metadata and tensor shapes.
fn tiny() -> Vec<(String, OwnedValue)> {
    let u = |x: u32| OwnedValue::U32(x);
    vec![
        (
            "general.architecture".into(),
            OwnedValue::String("llama".into()),
        ),
        ("llama.block_count".into(), u(1)),
        ("llama.context_length".into(), u(64)),
        ("llama.embedding_length".into(), u(D as u32)),
        ("llama.feed_forward_length".into(), u(FF as u32)),
        ("llama.attention.head_count".into(), u(2)),
        ("llama.attention.head_count_kv".into(), u(1)),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            OwnedValue::F32(1e-5),
        ),
        (
            "tokenizer.ggml.model".into(),
            OwnedValue::String("gpt2".into()),
        ),
        (
            "tokenizer.ggml.pre".into(),
            OwnedValue::String("default".into()),
        ),
        ("tokenizer.ggml.tokens".into(), strings(&TOKENS)),
        ("tokenizer.ggml.token_type".into(), i32s(&TYPES)),
        ("tokenizer.ggml.merges".into(), strings(&["a b"])),
        ("tokenizer.ggml.bos_token_id".into(), u(6)),
        ("tokenizer.ggml.eos_token_id".into(), u(7)),
    ]
}

fn write(meta: &[(String, OwnedValue)], tag: &str) -> PathBuf {
    let mut w = GgufWriter::new();
    for (k, v) in meta {
        w.add_metadata(k, v.clone());
    }
    let vocab = TOKENS.len() as u64;
    let shapes: [(&str, Vec<u64>); 11] = [
        ("token_embd.weight", vec![D, vocab]),
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
    ];
    for (name, dims) in shapes {
        let n: u64 = dims.iter().product();
        let values: Vec<f32> = (0..n).map(|i| ((i % 7) as f32 - 3.0) * 0.01).collect();
        w.add_f32_tensor(name, &dims, &values).expect("tensor");
    }
    let path =
        std::env::temp_dir().join(format!("realizar-broken-{}-{tag}.gguf", std::process::id()));
    std::fs::write(&path, w.to_bytes()).expect("write model");
    path
}

fn with(key: &str, value: OwnedValue) -> Vec<(String, OwnedValue)> {
    let mut m = tiny();
    m.retain(|(k, _)| k != key);
    m.push((key.into(), value));
    m
}

fn without(key: &str) -> Vec<(String, OwnedValue)> {
    let mut m = tiny();
    m.retain(|(k, _)| k != key);
    m
}

fn realizar(args: &[&str], model: &PathBuf) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_realizar"))
        .args(args)
        .arg("--model")
        .arg(model)
        .output()
        .expect("run realizar")
}

const GENERATE: &[&str] = &["generate", "--prompt", "ab", "--max-tokens", "2"];
const TOKENIZE: &[&str] = &["tokenize", "--text", "ab"];
const SCORE: &[&str] = &["score", "--prompt-ids", "6,0,1", "--top", "1"];

/// Every command that opens the model refuses it with exit 2 and names `key`.
fn refused(meta: &[(String, OwnedValue)], tag: &str, key: &str) {
    refused_by(meta, tag, key, &[GENERATE, TOKENIZE, SCORE]);
}

/// `commands` refuse the model with exit 2 and name `key`.
fn refused_by(meta: &[(String, OwnedValue)], tag: &str, key: &str, commands: &[&[&str]]) {
    let path = write(meta, tag);
    for &args in commands {
        let out = realizar(args, &path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{tag} {args:?}: {err}");
        assert!(
            err.contains(key),
            "{tag} {args:?}: the error does not name {key}: {err}"
        );
        assert!(!err.contains("panicked"), "{tag}: {err}");
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_unbroken_model_works() {
    let path = write(&tiny(), "ok");
    let out = realizar(&["generate", "--prompt", "ab", "--max-tokens", "2"], &path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = realizar(&["tokenize", "--text", "ab", "--json"], &path);
    assert_eq!(out.status.code(), Some(0));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn broken_tokenizer_metadata_is_refused_at_load_naming_the_key() {
    let merges = "tokenizer.ggml.merges";
    refused(&with(merges, strings(&["ab"])), "merge-no-space", merges);
    refused(&with(merges, strings(&["a zz"])), "merge-unknown", merges);
    refused(&with(merges, strings(&[" "])), "merge-empty", merges);
    refused(&with(merges, OwnedValue::U32(3)), "merge-type", merges);
    let types = "tokenizer.ggml.token_type";
    refused(&with(types, i32s(&TYPES[..7])), "types-short", types);
    refused(&with(types, i32s(&[1; 9])), "types-long", types);
    refused(
        &with(types, i32s(&[1, 1, 1, 1, 1, 1, 3, 99])),
        "types-value",
        types,
    );
    let model = "tokenizer.ggml.model";
    refused(
        &with(model, OwnedValue::String("nonsense".into())),
        "model",
        model,
    );
    refused(&without(model), "no-model", model);
    let tokens = "tokenizer.ggml.tokens";
    refused(&with(tokens, i32s(&[1, 2])), "tokens-type", tokens);
    refused(&with(tokens, strings(&TOKENS[..7])), "tokens-short", tokens);
    let pre = "tokenizer.ggml.pre";
    refused(
        &with(pre, OwnedValue::String("nonsense".into())),
        "pre",
        pre,
    );
    let bos = "tokenizer.ggml.bos_token_id";
    refused(&with(bos, OwnedValue::U32(1000)), "bos", bos);
    let eos = "tokenizer.ggml.eos_token_id";
    refused(&with(eos, OwnedValue::U32(8)), "eos", eos);
    // SentencePiece: scores of the wrong length.
    let mut spm = with(model, OwnedValue::String("llama".into()));
    spm.push((
        "tokenizer.ggml.scores".into(),
        OwnedValue::Array(ValueType::F32, vec![OwnedValue::F32(0.0); 3]),
    ));
    refused(&spm, "scores", "tokenizer.ggml.scores");
}

/// Sizes in the metadata that would have the loader allocate without bound (block counts,
/// head counts, lengths) are checked against the file's tensors and refused, naming the key;
/// never an abort.
#[test]
fn sizes_in_the_metadata_are_checked_before_anything_is_allocated() {
    for (key, value) in [
        ("llama.block_count", OwnedValue::U32(u32::MAX)),
        ("llama.block_count", OwnedValue::U64(u64::MAX)),
        ("llama.block_count", OwnedValue::U32(100_000)),
        ("llama.attention.head_count", OwnedValue::U32(u32::MAX)),
        ("llama.attention.head_count", OwnedValue::U32(1 << 20)),
        ("llama.attention.head_count_kv", OwnedValue::U32(u32::MAX)),
        ("llama.embedding_length", OwnedValue::U64(1 << 40)),
        ("llama.feed_forward_length", OwnedValue::U32(u32::MAX)),
        ("llama.attention.key_length", OwnedValue::U32(u32::MAX)),
        ("llama.attention.value_length", OwnedValue::U32(1 << 30)),
        ("llama.rope.dimension_count", OwnedValue::U32(u32::MAX)),
        ("llama.vocab_size", OwnedValue::U32(u32::MAX)),
    ] {
        let tag = format!("{key}-{value:?}").replace(['(', ')', ' '], "");
        // (`tokenize` reads only the tokenizer, so that vocabulary-only files work.)
        refused_by(&with(key, value), &tag, key, &[GENERATE, SCORE]);
    }
}

/// A trained context length far beyond memory is not allocated: the default context is
/// bounded, and an explicit one that does not fit is refused with exit 2.
#[test]
fn a_huge_trained_context_is_not_allocated() {
    let path = write(
        &with("llama.context_length", OwnedValue::U32(u32::MAX)),
        "ctx",
    );
    let out = realizar(&["generate", "--prompt", "ab", "--max-tokens", "2"], &path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = realizar(
        &[
            "generate",
            "--prompt",
            "ab",
            "--max-tokens",
            "2",
            "--ctx",
            "100000000000",
        ],
        &path,
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&path);
}
