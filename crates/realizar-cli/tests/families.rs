//! The model families beyond llama and gemma3 (qwen2, qwen3, llama with rope factors), as tiny
//! random-weight files: the well-formed ones run, and every broken variant of their layouts
//! (a missing or mis-sized bias, a missing Q/K norm, rope factors of the wrong length, a
//! tensor the architecture does not use, a weight type without kernels, a missing required
//! key) is refused at load with exit 2 and one line naming the tensor or key. Also the chat
//! template choice: the family's built-in template, `--chat-template NAME|FILE`.

use std::path::PathBuf;
use std::process::Command;

use realizar_format_gguf::{GgmlType, GgufWriter, OwnedValue, ValueType};

const D: u64 = 32;
const FF: u64 = 64;
const HD: u64 = 16;

const TOKENS: [&str; 8] = ["a", "b", "ab", "c", "d", "Ġ", "<s>", "</s>"];
const TYPES: [i32; 8] = [1, 1, 1, 1, 1, 1, 3, 3];

/// A tiny model of `arch`: metadata and tensors (name, dims, type) before any breakage.
struct Tiny {
    meta: Vec<(String, OwnedValue)>,
    tensors: Vec<(String, Vec<u64>, GgmlType)>,
}

fn tiny(arch: &str) -> Tiny {
    let u = |x: u32| OwnedValue::U32(x);
    let k = |s: &str| format!("{arch}.{s}");
    let meta = vec![
        (
            "general.architecture".into(),
            OwnedValue::String(arch.into()),
        ),
        (k("block_count"), u(1)),
        (k("context_length"), u(64)),
        (k("embedding_length"), u(D as u32)),
        (k("feed_forward_length"), u(FF as u32)),
        (k("attention.head_count"), u(2)),
        (k("attention.head_count_kv"), u(1)),
        (k("attention.layer_norm_rms_epsilon"), OwnedValue::F32(1e-6)),
        (
            "tokenizer.ggml.model".into(),
            OwnedValue::String("gpt2".into()),
        ),
        (
            "tokenizer.ggml.pre".into(),
            OwnedValue::String("qwen2".into()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            OwnedValue::Array(
                ValueType::String,
                TOKENS
                    .iter()
                    .map(|s| OwnedValue::String((*s).into()))
                    .collect(),
            ),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            OwnedValue::Array(
                ValueType::I32,
                TYPES.iter().map(|&x| OwnedValue::I32(x)).collect(),
            ),
        ),
        (
            "tokenizer.ggml.merges".into(),
            OwnedValue::Array(ValueType::String, vec![OwnedValue::String("a b".into())]),
        ),
        ("tokenizer.ggml.bos_token_id".into(), u(6)),
        ("tokenizer.ggml.eos_token_id".into(), u(7)),
    ];
    let f = GgmlType::F32;
    let vocab = TOKENS.len() as u64;
    let mut tensors: Vec<(String, Vec<u64>, GgmlType)> = [
        ("token_embd.weight", vec![D, vocab]),
        ("output_norm.weight", vec![D]),
        ("blk.0.attn_norm.weight", vec![D]),
        ("blk.0.attn_q.weight", vec![D, 2 * HD]),
        ("blk.0.attn_k.weight", vec![D, HD]),
        ("blk.0.attn_v.weight", vec![D, HD]),
        ("blk.0.attn_output.weight", vec![2 * HD, D]),
        ("blk.0.ffn_norm.weight", vec![D]),
        ("blk.0.ffn_gate.weight", vec![D, FF]),
        ("blk.0.ffn_up.weight", vec![D, FF]),
        ("blk.0.ffn_down.weight", vec![FF, D]),
    ]
    .into_iter()
    .map(|(n, d)| (n.to_string(), d, f))
    .collect();
    match arch {
        "qwen2" => {
            tensors.push(("blk.0.attn_q.bias".into(), vec![2 * HD], f));
            tensors.push(("blk.0.attn_k.bias".into(), vec![HD], f));
            tensors.push(("blk.0.attn_v.bias".into(), vec![HD], f));
            tensors.push(("output.weight".into(), vec![D, vocab], f));
        }
        "qwen3" => {
            tensors.push(("blk.0.attn_q_norm.weight".into(), vec![HD], f));
            tensors.push(("blk.0.attn_k_norm.weight".into(), vec![HD], f));
        }
        "llama" => tensors.push(("rope_freqs.weight".into(), vec![HD / 2], f)),
        "phi3" => {
            tensors.retain(|(n, _, _)| {
                !["attn_q.", "attn_k.", "attn_v.", "ffn_gate.", "ffn_up."]
                    .iter()
                    .any(|p| n.contains(p))
            });
            tensors.push(("blk.0.attn_qkv.weight".into(), vec![D, 4 * HD], f));
            tensors.push(("blk.0.ffn_up.weight".into(), vec![D, 2 * FF], f));
            tensors.push(("rope_factors_short.weight".into(), vec![HD / 2], f));
            tensors.push(("rope_factors_long.weight".into(), vec![HD / 2], f));
        }
        _ => {}
    }
    Tiny { meta, tensors }
}

impl Tiny {
    fn without_tensor(mut self, name: &str) -> Tiny {
        self.tensors.retain(|(n, _, _)| n != name);
        self
    }
    fn with_tensor(mut self, name: &str, dims: Vec<u64>, ty: GgmlType) -> Tiny {
        self.tensors.retain(|(n, _, _)| n != name);
        self.tensors.push((name.into(), dims, ty));
        self
    }
    fn with_key(mut self, key: &str, value: OwnedValue) -> Tiny {
        self.meta.retain(|(k, _)| k != key);
        self.meta.push((key.into(), value));
        self
    }
    fn without_key(mut self, key: &str) -> Tiny {
        self.meta.retain(|(k, _)| k != key);
        self
    }

    fn write(&self, tag: &str) -> PathBuf {
        let mut w = GgufWriter::new();
        for (k, v) in &self.meta {
            w.add_metadata(k, v.clone());
        }
        for (i, (name, dims, ty)) in self.tensors.iter().enumerate() {
            let n: u64 = dims.iter().product();
            let bytes = ty.bytes_for(n).expect("size") as usize;
            let data = match ty {
                GgmlType::F32 => (0..n)
                    .flat_map(|j| (((j + i as u64) % 7) as f32 * 0.01 + 0.02).to_le_bytes())
                    .collect(),
                _ => vec![0u8; bytes],
            };
            w.add_tensor(name, dims, *ty, data).expect("tensor");
        }
        let path =
            std::env::temp_dir().join(format!("realizar-family-{}-{tag}.gguf", std::process::id()));
        std::fs::write(&path, w.to_bytes()).expect("write model");
        path
    }
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

fn works(t: &Tiny, tag: &str) {
    let path = t.write(tag);
    let out = realizar(GENERATE, &path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(&path);
}

fn refused(t: &Tiny, tag: &str, names: &str) {
    let path = t.write(tag);
    for args in [
        GENERATE,
        &["score", "--prompt-ids", "6,0,1", "--top", "1"][..],
    ] {
        let out = realizar(args, &path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{tag} {args:?}: {err}");
        assert!(
            err.contains(names),
            "{tag}: the error does not name {names}: {err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "{tag}: one line: {err}");
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_new_families_run() {
    for arch in ["qwen2", "qwen3", "llama", "smollm3", "phi3", "mistral3"] {
        works(&tiny(arch), arch);
    }
    // Mistral 3 with YaRN and the attention temperature (llama and qwen read YaRN too).
    let yarn = |arch: &str| {
        tiny(arch)
            .with_key(
                &format!("{arch}.rope.scaling.type"),
                OwnedValue::String("yarn".into()),
            )
            .with_key(&format!("{arch}.rope.scaling.factor"), OwnedValue::F32(4.0))
            .with_key(
                &format!("{arch}.rope.scaling.original_context_length"),
                OwnedValue::U32(16),
            )
    };
    works(
        &yarn("mistral3").with_key("mistral3.attention.temperature_scale", OwnedValue::F32(0.1)),
        "mistral3-yarn",
    );
    works(&yarn("qwen3"), "qwen3-yarn");
    // Qwen2 without its untied head uses the embedding, as llama.cpp does.
    works(&tiny("qwen2").without_tensor("output.weight"), "qwen2-tied");
    // Biases are optional on llama (as in llama.cpp), and used when present.
    works(
        &tiny("llama").with_tensor("blk.0.attn_q.bias", vec![2 * HD], GgmlType::F32),
        "llama-bias",
    );
}

/// SmolLM3's NoPE layers: every fourth by default (llama.cpp's fixed step), or the step the
/// file sets in `smollm3.no_rope_layer_step` (the one-layer test model's layer 0 loses its rope
/// at step 1 only, which changes the scores after the first position).
#[test]
fn a_smollm3_nope_step_in_the_file_is_honoured() {
    let score = |t: &Tiny, tag: &str| {
        let path = t.write(tag);
        let out = realizar(
            &["score", "--prompt-ids", "6,0,1,2", "--top", "3", "--json"],
            &path,
        );
        let _ = std::fs::remove_file(&path);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let key = "smollm3.no_rope_layer_step";
    let default = score(&tiny("smollm3"), "nope-default");
    assert_eq!(
        default,
        score(&tiny("smollm3").with_key(key, OwnedValue::U32(4)), "nope-4")
    );
    assert_eq!(
        default,
        score(
            &tiny("llama").without_tensor("rope_freqs.weight"),
            "nope-llama"
        )
    );
    assert_ne!(
        default,
        score(&tiny("smollm3").with_key(key, OwnedValue::U32(1)), "nope-1")
    );
}

#[test]
fn broken_layouts_are_refused_naming_the_tensor_or_key() {
    let f = GgmlType::F32;
    // SmolLM3's NoPE interval, where a file sets one: 0 is no interval.
    refused(
        &tiny("smollm3").with_key("smollm3.no_rope_layer_step", OwnedValue::U32(0)),
        "nope-0",
        "smollm3.no_rope_layer_step",
    );
    // Phi-3's fused projections and LongRoPE factors of the wrong size.
    refused(
        &tiny("phi3").with_tensor("blk.0.attn_qkv.weight", vec![D, 4 * HD + 1], f),
        "qkv-size",
        "blk.0.attn_qkv.weight",
    );
    refused(
        &tiny("phi3").with_tensor("blk.0.ffn_up.weight", vec![D, 2 * FF - 2], f),
        "gate-up-size",
        "blk.0.ffn_up.weight",
    );
    refused(
        &tiny("phi3").with_tensor("rope_factors_short.weight", vec![HD / 2 + 1], f),
        "rope-factors-size",
        "rope_factors_short.weight",
    );
    refused(
        &tiny("qwen2").without_tensor("blk.0.attn_k.bias"),
        "no-bias",
        "blk.0.attn_k.bias",
    );
    refused(
        &tiny("qwen2").with_tensor("blk.0.attn_v.bias", vec![HD + 1], f),
        "bias-size",
        "blk.0.attn_v.bias",
    );
    refused(
        &tiny("qwen3").without_tensor("blk.0.attn_q_norm.weight"),
        "no-qnorm",
        "blk.0.attn_q_norm.weight",
    );
    refused(
        &tiny("qwen3").with_tensor("blk.0.attn_k_norm.weight", vec![D], f),
        "knorm-size",
        "blk.0.attn_k_norm.weight",
    );
    refused(
        &tiny("llama").with_tensor("rope_freqs.weight", vec![HD], f),
        "rope-freqs",
        "rope_freqs.weight",
    );
    refused(
        &tiny("qwen3").with_tensor("blk.0.attn_q.bias", vec![7], f),
        "bias-wrong-on-qwen3",
        "blk.0.attn_q.bias",
    );
    refused(
        &tiny("qwen2").with_tensor("blk.0.mystery.weight", vec![D], f),
        "unused",
        "blk.0.mystery.weight",
    );
    refused(
        &tiny("qwen2").with_tensor("blk.0.ffn_up.weight", vec![D, FF], GgmlType::I16),
        "int16-weight",
        "blk.0.ffn_up.weight",
    );
    refused(
        &tiny("qwen3").without_key("qwen3.attention.layer_norm_rms_epsilon"),
        "no-eps",
        "qwen3.attention.layer_norm_rms_epsilon",
    );
    refused(
        &tiny("qwen2").without_key("qwen2.context_length"),
        "no-ctx",
        "qwen2.context_length",
    );
    let yarn = tiny("mistral3").with_key(
        "mistral3.rope.scaling.type",
        OwnedValue::String("yarn".into()),
    );
    refused(
        &yarn.with_key(
            "mistral3.rope.scaling.original_context_length",
            OwnedValue::U32(0),
        ),
        "yarn-ctx-0",
        "mistral3.rope.scaling.original_context_length",
    );
    refused(
        &tiny("mistral3").with_key("mistral3.rope.scaling.factor", OwnedValue::F32(-2.0)),
        "yarn-factor",
        "mistral3.rope.scaling.factor",
    );
    refused(
        &tiny("mistral3").with_key(
            "mistral3.attention.temperature_scale",
            OwnedValue::F32(f32::NAN),
        ),
        "temperature-nan",
        "mistral3.attention.temperature_scale",
    );
    refused(
        &tiny("mistral3").with_key("mistral3.expert_count", OwnedValue::U32(8)),
        "mistral3-moe",
        "mistral3.expert_count",
    );
    refused(
        &tiny("llama").with_key(
            "llama.rope.scaling.type",
            OwnedValue::String("dynamic".into()),
        ),
        "rope-type",
        "llama.rope.scaling.type",
    );
}

#[test]
fn chats_use_the_family_template_or_the_one_asked_for() {
    let path = tiny("qwen3").write("chat");
    let chat = [
        "generate",
        "--chat",
        "--prompt",
        "ab",
        "--max-tokens",
        "1",
        "--json",
    ];
    let out = realizar(&chat, &path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for t in ["gemma", "llama3", "chatml"] {
        let mut args = chat.to_vec();
        args.extend(["--chat-template", t]);
        let out = realizar(&args, &path);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{t}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A Jinja file.
    let tmpl = std::env::temp_dir().join(format!("realizar-tmpl-{}.j2", std::process::id()));
    std::fs::write(&tmpl, "{% for m in messages %}{{ m.content }}{% endfor %}").unwrap();
    let mut args = chat.to_vec();
    let t = tmpl.to_str().unwrap();
    args.extend(["--chat-template", t]);
    let out = realizar(&args, &path);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Unknown names, unreadable files, a template without a chat: exit 2 naming it.
    for (bad, names) in [
        (
            &["--chat-template", "nosuch-template"][..],
            "nosuch-template",
        ),
        (&["--chat-template", "/"][..], "/"),
    ] {
        let mut args = chat.to_vec();
        args.extend(bad);
        let out = realizar(&args, &path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains(names), "{err}");
    }
    let out = realizar(
        &["generate", "--prompt", "ab", "--chat-template", "gemma"],
        &path,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--chat-template"), "{err}");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&tmpl);
}
