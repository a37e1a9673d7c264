//! Test models of other architectures, made from SmolLM2-135M's real weights: its tensors
//! rewritten into each architecture's layout (and the few tensors a layout adds, from a seed),
//! so that the model still computes nearly the same function and its outputs have real
//! margins. Deterministic: the same bytes on every machine. The files are written once under
//! `target/transplant/` and regenerated when missing; llama.cpp's outputs on them are
//! committed in `tests/refs/` (`xtask/refgen/make-refs.sh` makes them).
//!
//! - `qwen2`: Q/K rows un-permuted to the NeoX rope layout, Q/K/V biases (small, seeded),
//!   an untied output head (a copy of the tied embedding).
//! - `qwen3`: NeoX layout, per-head Q/K RMSNorm weights (seeded around 2), tied output.
//! - `llama3`: llama as Llama 3.x writes it: `rope_freqs.weight` from the `llama3` rope
//!   scaling rule (factor 8, low/high frequency factors 1 and 4, original context 8192) and
//!   the `llama-bpe` pre-tokenizer.
//! - `phi3`, `phi3-long`: NeoX layout with Q/K/V fused into `attn_qkv` and gate/up into one
//!   `ffn_up` (gate first), 3/4 of each head rotated, seeded LongRoPE short/long factors and
//!   attention factor 1.1; `phi3-long`'s original context (512) is below the tests' 1024, so
//!   it runs on the long factors.
//! - `llama-spm`: llama as Mistral writes it, from Gemma3 270M (`llama_from_gemma3`).
//! - `smollm3`: SmolLM2's tensors as `smollm3` (llama's block; every fourth layer without
//!   rotary embedding).
//! - `mistral3`: SmolLM2's tensors as `mistral3` with YaRN (factor 4 over an original
//!   context of 256, the file's own ramp bounds and log multiplier) and Llama 4's attention
//!   temperature (it steps every 256 positions, inside the tests' prompts).
#![allow(dead_code)]

use std::path::PathBuf;

use realizar_format_gguf::{GgmlType, GgufFile, GgufWriter, OwnedValue};

use crate::common::{model_path, workspace_root};

/// The architectures made here.
pub const KINDS: [&str; 8] = [
    "qwen2",
    "qwen3",
    "llama3",
    "smollm3",
    "phi3",
    "phi3-long",
    "llama-spm",
    "mistral3",
];

/// Bumped whenever the generator changes what it writes (the file name carries it, so a
/// stale file is never used).
const VERSION: u32 = 1;

/// Every `tokenizer.ggml.pre` value the tokenizer knows (each run against llama.cpp on
/// SmolLM2's vocabulary relabelled with it).
pub const PRES: &[&str] = &[
    "default",
    "gpt-2",
    "phi-2",
    "mpt",
    "olmo",
    "jais",
    "jina-es",
    "jina-de",
    "jina-v1-en",
    "jina-v2-es",
    "jina-v2-de",
    "jina-v2-code",
    "gigachat",
    "llama3",
    "llama-v3",
    "llama-bpe",
    "falcon3",
    "dbrx",
    "smaug-bpe",
    "chatglm-bpe",
    "qwen2",
    "stablelm2",
    "deepseek-r1-qwen",
    "megrez",
    "starcoder",
    "smollm",
    "refact",
    "command-r",
    "codeshell",
    "exaone",
    "minerva-7b",
    "falcon",
    "deepseek-llm",
    "deepseek-coder",
    "tekken",
    "gpt-4o",
    "llama4",
];

/// SmolLM2's metadata (its vocabulary) with `tokenizer.ggml.pre` = `pre` and no tensors:
/// a vocabulary-only file, as `realizar tokenize` and llama.cpp's vocab-only load read it.
pub fn vocab_with_pre(pre: &str) -> PathBuf {
    vocab_file(
        pre,
        |_, v| v,
        vec![("tokenizer.ggml.pre", OwnedValue::String(pre.into()))],
    )
}

/// SmolLM2's vocabulary named as a Phi-3 model (`general.name` "Phi3 …"), with `<s>`, `</s>`
/// (control) and `<unk>` (unknown) added, which llama.cpp's Phi-3 name rule looks up: every
/// special token then takes the white space after it out of the text.
pub fn vocab_named_phi3() -> PathBuf {
    let added = [("<s>", 3), ("</s>", 3), ("<unk>", 2)];
    vocab_file(
        "phi3name",
        |key, value| match (key, value) {
            ("tokenizer.ggml.tokens", OwnedValue::Array(t, mut items)) => {
                items.extend(added.iter().map(|(s, _)| OwnedValue::String((*s).into())));
                OwnedValue::Array(t, items)
            }
            ("tokenizer.ggml.token_type", OwnedValue::Array(t, mut items)) => {
                items.extend(added.iter().map(|(_, ty)| OwnedValue::I32(*ty)));
                OwnedValue::Array(t, items)
            }
            (_, v) => v,
        },
        vec![(
            "general.name",
            OwnedValue::String("Phi3 name rule (test vocabulary)".into()),
        )],
    )
}

/// A vocabulary-only file `vocab-<tag>-v<VERSION>.gguf` (written once): SmolLM2's metadata,
/// each value through `map`, without add_bos/add_eos (so that the pre-tokenizer's own defaults
/// are what is compared), then `extra`.
fn vocab_file(
    tag: &str,
    map: impl Fn(&str, OwnedValue) -> OwnedValue,
    extra: Vec<(&str, OwnedValue)>,
) -> PathBuf {
    let dir = workspace_root().join("target/transplant");
    let path = dir.join(format!("vocab-{tag}-v{VERSION}.gguf"));
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).expect("create target/transplant");
    let src = std::fs::read(model_path("smollm2-135m")).expect("read SmolLM2");
    let f = GgufFile::parse(&src).expect("parse SmolLM2");
    let mut w = GgufWriter::new();
    for (key, value) in f.metadata() {
        if !matches!(
            key,
            "general.alignment" | "tokenizer.ggml.add_bos_token" | "tokenizer.ggml.add_eos_token"
        ) {
            w.add_metadata(key, map(key, value.to_owned_value()));
        }
    }
    for (key, value) in extra {
        w.add_metadata(key, value);
    }
    write_atomically(&path, &w.to_bytes());
    path
}

/// Writes `bytes` to `path` through a temporary file of this process and thread (tests run in
/// parallel threads: two of them may write the same file, never the same temporary one), then
/// renames it into place, so a reader sees the whole file or none.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}.{n}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).expect("write a test model");
    std::fs::rename(&tmp, path).expect("rename a test model");
}

/// A small deterministic generator (xorshift64*), uniform in [-1, 1).
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (x as f32 / (1u64 << 23) as f32) - 1.0
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The path of the transplanted model `kind`, written first if missing.
pub fn transplanted(kind: &str) -> PathBuf {
    let dir = workspace_root().join("target/transplant");
    let path = dir.join(format!("smollm2-{kind}-v{VERSION}.gguf"));
    if path.exists() {
        return path;
    }
    std::fs::create_dir_all(&dir).expect("create target/transplant");
    write_atomically(&path, &source_and_transplant(kind));
    path
}

/// The transplant `kind` from its source model's bytes.
fn source_and_transplant(kind: &str) -> Vec<u8> {
    if let Some((model, ty)) = requant_kind(kind) {
        let src = std::fs::read(model_path(model)).expect("read the source model");
        return requantize(&src, kind, ty);
    }
    if kind == "llama-spm" {
        let src = std::fs::read(model_path("gemma3-270m")).expect("read Gemma3");
        return llama_from_gemma3(&src);
    }
    let src = std::fs::read(model_path("smollm2-135m")).expect("read SmolLM2");
    transplant(&src, kind)
}

/// The requantized test models: `(kind, source model, llama-quantize type name)`.
pub const REQUANTS: [(&str, &str, &str); 30] = [
    ("gemma3-q8_0", "gemma3-270m", "Q8_0"),
    ("gemma3-q5_1", "gemma3-270m", "Q5_1"),
    ("gemma3-f16", "gemma3-270m", "F16"),
    ("gemma3-bf16", "gemma3-270m", "BF16"),
    ("q4_0", "smollm2-135m", "Q4_0"),
    ("q5_0", "smollm2-135m", "Q5_0"),
    ("q5_1", "smollm2-135m", "Q5_1"),
    ("q8_0", "smollm2-135m", "Q8_0"),
    ("q2_k", "smollm2-135m", "Q2_K"),
    ("q3_k", "smollm2-135m", "Q3_K"),
    ("f16", "smollm2-135m", "F16"),
    ("bf16", "smollm2-135m", "BF16"),
    ("iq4_xs", "smollm2-135m", "IQ4_XS"),
    ("iq4_nl", "smollm2-135m", "IQ4_NL"),
    ("gemma3-iq4_xs", "gemma3-270m", "IQ4_XS"),
    ("gemma3-iq4_nl", "gemma3-270m", "IQ4_NL"),
    ("mxfp4", "smollm2-135m", "MXFP4"),
    ("gemma3-mxfp4", "gemma3-270m", "MXFP4"),
    ("tq1_0", "smollm2-135m", "TQ1_0"),
    ("tq2_0", "smollm2-135m", "TQ2_0"),
    ("gemma3-tq1_0", "gemma3-270m", "TQ1_0"),
    ("iq3_xxs", "smollm2-135m", "IQ3_XXS"),
    ("iq3_s", "smollm2-135m", "IQ3_S"),
    ("iq2_xxs", "smollm2-135m", "IQ2_XXS"),
    ("iq2_xs", "smollm2-135m", "IQ2_XS"),
    ("iq2_s", "smollm2-135m", "IQ2_S"),
    ("iq1_s", "smollm2-135m", "IQ1_S"),
    ("iq1_m", "smollm2-135m", "IQ1_M"),
    ("q2_k-down", "smollm2-135m", "Q2_K"),
    ("gemma3-q2_k-down", "gemma3-270m", "Q2_K"),
];

/// The source model and target type of a requantized kind.
pub fn requant_kind(kind: &str) -> Option<(&'static str, &'static str)> {
    REQUANTS
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, m, t)| (*m, *t))
}

/// The type of each tensor in llama-quantize's file for `kind` (`tests/refs/transplant/
/// <kind>.plan`, lines `name type`, written by make-refs.sh from llama-quantize's output).
fn requant_plan(kind: &str) -> std::collections::BTreeMap<String, GgmlType> {
    let path = workspace_root().join(format!(
        "crates/realizar-runtime/tests/refs/transplant/{kind}.plan"
    ));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, ty) = l.split_once(' ').expect("`name type` lines");
            let ty = (0..64)
                .filter_map(GgmlType::from_id)
                .find(|t| t.name().eq_ignore_ascii_case(ty.trim()))
                .unwrap_or_else(|| panic!("{kind}.plan: unknown type {ty}"));
            (name.to_string(), ty)
        })
        .collect()
}

/// The model requantized as llama-quantize does it through an F16 file (`llama-quantize
/// --allow-requantize src f16.gguf F16`, then `llama-quantize f16.gguf out.gguf TYPE`): every
/// tensor dequantized, rounded to f16 (F32 tensors stay F32), then quantized to the type the
/// plan gives it with ggml's weight quantizers (`realizar_quant::quantize_row_plain`: bit-exact
/// with llama-quantize's, which make-refs.sh checks tensor by tensor, except the grid i-quants
/// (IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S), whose ggml searches are not
/// implemented: those tensors get a plain encoder of the same type, and
/// llama.cpp's references are made on the file written here).
pub fn requantize(src: &[u8], kind: &str, target: &str) -> Vec<u8> {
    use realizar_quant::{dequantize_row, quantize_row_plain, QuantType};
    let plan = requant_plan(kind);
    let f = GgufFile::parse(src).expect("parse the source model");
    let mut w = GgufWriter::new();
    let file_type = match target {
        "IQ4_NL" => 25,
        "IQ4_XS" => 30,
        "MXFP4" => 38,
        "Q4_0" => 2,
        "Q5_0" => 8,
        "Q5_1" => 9,
        "Q8_0" => 7,
        "Q2_K" => 10,
        // llama-quantize's `Q3_K` is Q3_K_M.
        "Q3_K" => 12,
        "F16" => 1,
        "BF16" => 32,
        "TQ1_0" => 36,
        "IQ3_XXS" => 23,
        "IQ3_S" => 26,
        "IQ2_XXS" => 19,
        "IQ2_XS" => 20,
        "IQ2_S" => 28,
        "IQ1_S" => 24,
        "IQ1_M" => 31,
        "TQ2_0" => 37,
        other => panic!("no llama_ftype for {other}"),
    };
    for (key, value) in f.metadata() {
        if key == "general.alignment" {
            continue;
        }
        w.add_metadata(key, value.to_owned_value());
    }
    w.add_metadata("general.file_type", OwnedValue::U32(file_type));
    for t in f.tensors() {
        let data = f.tensor_data(t.name).expect("tensor data");
        let &to = plan
            .get(t.name)
            .unwrap_or_else(|| panic!("{kind}.plan has no type for {}", t.name));
        let from = QuantType::from_ggml_id(t.ty.id()).expect("a supported source type");
        let qto = QuantType::from_ggml_id(to.id()).expect("a supported target type");
        let n = t.dims[0] as usize;
        let rows = (t.n_elements() / t.dims[0]) as usize;
        let (rb_in, rb_out) = (from.row_bytes(n).unwrap(), qto.row_bytes(n).unwrap());
        let mut out = vec![0u8; rb_out * rows];
        // Rows are independent: quantized on all cores (the same bytes whatever the split).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = rows.div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            for (src, dst) in data.chunks(per * rb_in).zip(out.chunks_mut(per * rb_out)) {
                scope.spawn(move || {
                    let mut row = vec![0f32; n];
                    for (r, o) in src.chunks_exact(rb_in).zip(dst.chunks_exact_mut(rb_out)) {
                        dequantize_row(from, r, &mut row).expect("dequantize");
                        if from != QuantType::F32 {
                            for v in &mut row {
                                *v = half::f16::from_f32(*v).to_f32();
                            }
                        }
                        quantize_row_plain(qto, &row, o).expect("quantize");
                    }
                });
            }
        });
        w.add_tensor(t.name, &t.dims, to, out).expect("add tensor");
    }
    w.to_bytes()
}

/// llama as Mistral writes it, from Gemma3 270M: a SentencePiece vocabulary (Gemma's, with
/// the space prefix Llama 2 / Mistral vocabularies add), an explicit head size that is not
/// width / heads (256 × 4 heads on a width of 640, as Mistral Nemo's 128 × 32 on 5120), Q/K
/// rows permuted from NeoX to llama's interleaved layout, Gemma's Q5_0 / Q4_K / Q6_K / Q8_0
/// weights, and what llama has no place for dropped (post-norms, Q/K norms).
pub fn llama_from_gemma3(src: &[u8]) -> Vec<u8> {
    let f = GgufFile::parse(src).expect("parse Gemma3");
    let n_head = f.get_u32("gemma3.attention.head_count").unwrap() as usize;
    let n_head_kv = f.get_u32("gemma3.attention.head_count_kv").unwrap() as usize;
    let hd = f.get_u32("gemma3.attention.key_length").unwrap() as usize;
    let mut w = GgufWriter::new();
    for (key, value) in f.metadata() {
        if matches!(key, "general.alignment" | "gemma3.attention.sliding_window") {
            continue;
        }
        let key = match key.strip_prefix("gemma3.") {
            Some(rest) => format!("llama.{rest}"),
            None => key.to_string(),
        };
        w.add_metadata(&key, value.to_owned_value());
    }
    w.add_metadata("general.architecture", OwnedValue::String("llama".into()));
    w.add_metadata(
        "general.name",
        OwnedValue::String("Gemma3-270M as llama-spm (test transplant)".into()),
    );
    w.add_metadata("tokenizer.ggml.add_space_prefix", OwnedValue::Bool(true));
    for t in f.tensors() {
        if [
            "post_attention_norm",
            "post_ffw_norm",
            "attn_q_norm",
            "attn_k_norm",
        ]
        .iter()
        .any(|p| t.name.contains(p))
        {
            continue;
        }
        let data = f.tensor_data(t.name).expect("tensor data");
        let data = if t.name.ends_with("attn_q.weight") || t.name.ends_with("attn_k.weight") {
            let heads = if t.name.ends_with("attn_q.weight") {
                n_head
            } else {
                n_head_kv
            };
            permute_rows(data, t.dims[1] as usize, heads, hd)
        } else {
            data.to_vec()
        };
        w.add_tensor(t.name, &t.dims, t.ty, data)
            .expect("add tensor");
    }
    w.to_bytes()
}

/// The inverse of [`unpermute_rows`]: NeoX (Hugging Face) rows into llama's interleaved layout.
fn permute_rows(data: &[u8], rows: usize, heads: usize, hd: usize) -> Vec<u8> {
    let row_bytes = data.len() / rows;
    assert_eq!(rows, heads * hd);
    let mut out = vec![0u8; data.len()];
    for head in 0..heads {
        for h in 0..hd {
            let dst = head * hd + 2 * (h % (hd / 2)) + h / (hd / 2);
            let src = head * hd + h;
            out[dst * row_bytes..(dst + 1) * row_bytes]
                .copy_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
        }
    }
    out
}

/// SmolLM2's file rewritten as `kind` (see the module docs).
pub fn transplant(src: &[u8], kind: &str) -> Vec<u8> {
    let f = GgufFile::parse(src).expect("parse SmolLM2");
    let arch = match kind {
        "qwen2" | "qwen3" | "smollm3" | "mistral3" => kind,
        "llama3" => "llama",
        "phi3" | "phi3-long" => "phi3",
        other => panic!("unknown transplant {other}"),
    };
    let neox = matches!(arch, "qwen2" | "qwen3" | "phi3");
    let fused = arch == "phi3";
    let n_head = f.get_u32("llama.attention.head_count").unwrap() as usize;
    let n_head_kv = f.get_u32("llama.attention.head_count_kv").unwrap() as usize;
    let n_embd = f.get_u32("llama.embedding_length").unwrap() as usize;
    let hd = n_embd / n_head;
    let mut rng = Seeded(
        kind.bytes()
            .fold(0x5EED_1234_u64, |h, b| h.wrapping_mul(31) ^ u64::from(b)),
    );

    let mut w = GgufWriter::new();
    for (key, value) in f.metadata() {
        if key == "general.alignment" {
            continue;
        }
        let key = match key.strip_prefix("llama.") {
            Some(rest) => format!("{arch}.{rest}"),
            None => key.to_string(),
        };
        w.add_metadata(&key, value.to_owned_value());
    }
    w.add_metadata("general.architecture", OwnedValue::String(arch.into()));
    // llama.cpp's Phi-3 name rule ("phi-3" or "phi3" in the name) looks up `</s>`, `<unk>`
    // and `<s>`, and fails to load a vocabulary without them, as SmolLM2's is: the Phi-3
    // transplants are named without it (`vocab_named_phi3` tests the rule).
    let label = if arch == "phi3" { "p3-layout" } else { kind };
    w.add_metadata(
        "general.name",
        OwnedValue::String(format!("SmolLM2-135M as {label} (test transplant)")),
    );
    if kind == "llama3" {
        w.add_metadata("tokenizer.ggml.pre", OwnedValue::String("llama-bpe".into()));
    }

    let mut qkv: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    let mut gate_up: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
    for t in f.tensors() {
        let data = f.tensor_data(t.name).expect("tensor data");
        let is_q = t.name.ends_with("attn_q.weight");
        let is_k = t.name.ends_with("attn_k.weight");
        let data = if neox && (is_q || is_k) {
            let heads = if is_q { n_head } else { n_head_kv };
            unpermute_rows(data, t.dims[1] as usize, heads, hd)
        } else {
            data.to_vec()
        };
        if fused {
            // Phi-3: Q, K, V rows into one attn_qkv, gate then up rows into one ffn_up.
            let block = t
                .name
                .rsplit_once('.')
                .and_then(|(a, _)| a.rsplit_once('.'))
                .map(|(b, _)| b.to_string());
            match (block, t.name.rsplit('.').nth(1)) {
                (Some(b), Some("attn_q" | "attn_k" | "attn_v")) => {
                    qkv.entry(b).or_default();
                    continue;
                }
                (Some(b), Some("ffn_gate" | "ffn_up")) => {
                    gate_up.entry(b).or_default();
                    continue;
                }
                _ => {}
            }
        }
        w.add_tensor(t.name, &t.dims, t.ty, data)
            .expect("add tensor");
    }
    for b in qkv.keys() {
        let mut bytes = Vec::new();
        let (mut rows, mut ty, mut cols) = (0, None, 0);
        for part in ["attn_q", "attn_k", "attn_v"] {
            let name = format!("{b}.{part}.weight");
            let t = f.tensor(&name).expect("q/k/v");
            let data = f.tensor_data(&name).unwrap();
            let heads = if part == "attn_q" { n_head } else { n_head_kv };
            let data = if part == "attn_v" {
                data.to_vec()
            } else {
                unpermute_rows(data, t.dims[1] as usize, heads, hd)
            };
            bytes.extend_from_slice(&data);
            rows += t.dims[1];
            cols = t.dims[0];
            ty = Some(t.ty);
        }
        w.add_tensor(
            &format!("{b}.attn_qkv.weight"),
            &[cols, rows],
            ty.unwrap(),
            bytes,
        )
        .expect("qkv");
    }
    for b in gate_up.keys() {
        let mut bytes = Vec::new();
        let (mut rows, mut ty, mut cols) = (0, None, 0);
        for part in ["ffn_gate", "ffn_up"] {
            let name = format!("{b}.{part}.weight");
            let t = f.tensor(&name).expect("gate/up");
            bytes.extend_from_slice(f.tensor_data(&name).unwrap());
            rows += t.dims[1];
            cols = t.dims[0];
            ty = Some(t.ty);
        }
        w.add_tensor(
            &format!("{b}.ffn_up.weight"),
            &[cols, rows],
            ty.unwrap(),
            bytes,
        )
        .expect("gate_up");
    }
    let n_layer = f.get_u32("llama.block_count").unwrap() as usize;
    match kind {
        "qwen2" => {
            for il in 0..n_layer {
                for (name, n) in [
                    ("attn_q", n_head * hd),
                    ("attn_k", n_head_kv * hd),
                    ("attn_v", n_head_kv * hd),
                ] {
                    let scale = if name == "attn_v" { 0.02 } else { 0.1 };
                    let b: Vec<f32> = (0..n).map(|_| scale * rng.next()).collect();
                    w.add_tensor(
                        &format!("blk.{il}.{name}.bias"),
                        &[n as u64],
                        GgmlType::F32,
                        f32_bytes(&b),
                    )
                    .expect("bias");
                }
            }
            let embd = f.tensor("token_embd.weight").expect("token_embd");
            let data = f.tensor_data("token_embd.weight").unwrap().to_vec();
            w.add_tensor("output.weight", &embd.dims, embd.ty, data)
                .expect("output");
        }
        "qwen3" => {
            for il in 0..n_layer {
                for name in ["attn_q_norm", "attn_k_norm"] {
                    let v: Vec<f32> = (0..hd).map(|_| 2.0 + 0.5 * rng.next()).collect();
                    w.add_tensor(
                        &format!("blk.{il}.{name}.weight"),
                        &[hd as u64],
                        GgmlType::F32,
                        f32_bytes(&v),
                    )
                    .expect("norm");
                }
            }
            w.add_metadata(
                &format!("{arch}.attention.key_length"),
                OwnedValue::U32(hd as u32),
            );
            w.add_metadata(
                &format!("{arch}.attention.value_length"),
                OwnedValue::U32(hd as u32),
            );
        }
        "llama3" => {
            let base = f.get_f32("llama.rope.freq_base").unwrap_or(10000.0);
            let ff = llama3_rope_factors(hd, base, 8.0, 1.0, 4.0, 8192.0);
            w.add_tensor(
                "rope_freqs.weight",
                &[ff.len() as u64],
                GgmlType::F32,
                f32_bytes(&ff),
            )
            .expect("rope_freqs");
        }
        // The same tensors; every fourth layer now has no rotary embedding.
        "smollm3" => {}
        "mistral3" => {
            for (key, value) in [
                ("rope.scaling.type", OwnedValue::String("yarn".into())),
                ("rope.scaling.factor", OwnedValue::F32(4.0)),
                ("rope.scaling.original_context_length", OwnedValue::U32(256)),
                ("rope.scaling.yarn_beta_fast", OwnedValue::F32(24.0)),
                ("rope.scaling.yarn_beta_slow", OwnedValue::F32(2.0)),
                ("rope.scaling.yarn_log_multiplier", OwnedValue::F32(0.5)),
                ("attention.temperature_scale", OwnedValue::F32(0.1)),
            ] {
                w.add_metadata(&format!("mistral3.{key}"), value);
            }
        }
        "phi3" | "phi3-long" => {
            // Partial rotary (3/4 of each head, as Phi-4-mini), LongRoPE factors and
            // magnitude; the long variant's original context is below the tests' 1024.
            let n_rot = hd * 3 / 4;
            w.add_metadata("phi3.rope.dimension_count", OwnedValue::U32(n_rot as u32));
            let orig = if kind == "phi3" { 4096 } else { 512 };
            w.add_metadata(
                "phi3.rope.scaling.original_context_length",
                OwnedValue::U32(orig),
            );
            w.add_metadata("phi3.rope.scaling.attn_factor", OwnedValue::F32(1.1));
            for name in ["rope_factors_short", "rope_factors_long"] {
                let base = if name == "rope_factors_short" {
                    1.0
                } else {
                    2.0
                };
                let v: Vec<f32> = (0..n_rot / 2)
                    .map(|i| base + i as f32 * 0.05 + 0.1 * rng.next())
                    .collect();
                w.add_tensor(
                    &format!("{name}.weight"),
                    &[v.len() as u64],
                    GgmlType::F32,
                    f32_bytes(&v),
                )
                .expect("rope factors");
            }
        }
        _ => unreachable!(),
    }
    w.to_bytes()
}

/// llama.cpp's GGUF llama layout interleaves each head's rotary pairs (its converter permutes
/// the Hugging Face rows); NeoX families keep Hugging Face's order (halves). Row `h` of a head
/// in the NeoX file is row `2 (h mod hd/2) + h div (hd/2)` of the llama file. Rows are whole
/// quantized blocks, so they move as bytes.
fn unpermute_rows(data: &[u8], rows: usize, heads: usize, hd: usize) -> Vec<u8> {
    let row_bytes = data.len() / rows;
    assert_eq!(rows, heads * hd);
    let mut out = Vec::with_capacity(data.len());
    for head in 0..heads {
        for h in 0..hd {
            let src = head * hd + 2 * (h % (hd / 2)) + h / (hd / 2);
            out.extend_from_slice(&data[src * row_bytes..(src + 1) * row_bytes]);
        }
    }
    out
}

/// The `llama3` rope scaling rule (as Meta's reference and llama.cpp's converter compute
/// `rope_freqs`): one divisor per rotated pair.
fn llama3_rope_factors(
    hd: usize,
    base: f32,
    factor: f64,
    low: f64,
    high: f64,
    orig: f64,
) -> Vec<f32> {
    let low_wavelen = orig / low;
    let high_wavelen = orig / high;
    (0..hd / 2)
        .map(|i| {
            let freq = 1.0 / (base as f64).powf(2.0 * i as f64 / hd as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor as f32
            } else {
                let smooth = (orig / wavelen - low) / (high - low);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect()
}

/// The sha256 of a file, hex.
pub fn sha256_hex(path: &std::path::Path) -> String {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).expect("read");
    Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The generator is a function of SmolLM2's bytes alone: two runs give the same file (the
/// references were made on exactly these bytes; `families.rs` checks their sha256).
#[test]
fn transplants_are_deterministic() {
    for kind in KINDS.iter().chain(REQUANTS.iter().map(|r| &r.0)) {
        let path = transplanted(kind);
        let again = source_and_transplant(kind);
        assert!(std::fs::read(&path).expect("read") == again, "{kind}");
        GgufFile::parse(&again).expect("a valid GGUF");
    }
    for pre in PRES {
        let bytes = std::fs::read(vocab_with_pre(pre)).expect("read vocab");
        let f = GgufFile::parse(&bytes).expect("a valid GGUF");
        assert_eq!(f.get_str("tokenizer.ggml.pre").unwrap(), *pre);
    }
    let bytes = std::fs::read(vocab_named_phi3()).expect("read vocab");
    GgufFile::parse(&bytes).expect("a valid GGUF");
}
