//! The model families beyond the fetched models, on SmolLM2's weights rewritten into each
//! architecture's layout (`transplant.rs`), against llama.cpp's outputs on the same files
//! (`tests/refs/transplant/<kind>.json`, made by `xtask/refgen/make-refs.sh`): the prompt's
//! ids, greedy continuations, teacher-forced top-1 at every prompt position and step, and
//! perplexity.

use std::ops::ControlFlow;

use realizar_runtime::{
    generate, DecoderModel, GenerateConfig, LoadOptions, Logits, SamplerConfig,
};
use serde_json::Value;

use crate::common::{refs_dir, workspace_root};
use crate::transplant::{
    sha256_hex, transplanted, vocab_named_phi3, vocab_with_pre, KINDS, PRES, REQUANTS,
};

/// llama.cpp's own top-2 may be this close at a step where a correct engine picks the other.
const TIE_MARGIN: f64 = 0.1;

struct Run {
    prompt: String,
    prompt_ids: Vec<u32>,
    prompt_top1: Vec<u32>,
    prompt_margin: Vec<f64>,
    greedy: Vec<u32>,
    greedy_margin: Vec<f64>,
    greedy_top5: Vec<Vec<u32>>,
}

fn refs(kind: &str) -> (Vec<Run>, Option<f64>) {
    refs_json(kind).0
}

/// The runs, the perplexity and the sha256 of the file the references were made on.
#[allow(clippy::type_complexity)]
fn refs_json(kind: &str) -> ((Vec<Run>, Option<f64>), String) {
    let path = workspace_root().join(format!(
        "crates/realizar-runtime/tests/refs/transplant/{kind}.json"
    ));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).expect("reference JSON");
    let u32s = |v: &Value| -> Vec<u32> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect()
    };
    let f64s = |v: &Value| -> Vec<f64> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect()
    };
    let runs = v["prompts"]
        .as_array()
        .expect("prompts")
        .iter()
        .map(|p| Run {
            prompt: p["prompt"].as_str().expect("prompt").to_string(),
            prompt_ids: u32s(&p["prompt_ids"]),
            prompt_top1: u32s(&p["prompt_top1"]),
            prompt_margin: f64s(&p["prompt_margin"]),
            greedy: u32s(&p["greedy_ids"]),
            greedy_margin: f64s(&p["greedy_margin"]),
            greedy_top5: p["greedy_top5"]
                .as_array()
                .expect("top5")
                .iter()
                .map(u32s)
                .collect(),
        })
        .collect();
    let sha = v["sha256"].as_str().unwrap_or_default().to_string();
    ((runs, v["perplexity"].as_f64()), sha)
}

fn load(kind: &str) -> DecoderModel {
    load_ctx(kind, 1024)
}

fn load_ctx(kind: &str, ctx: usize) -> DecoderModel {
    let path = transplanted(kind);
    let (_, sha) = refs_json(kind);
    assert_eq!(
        sha256_hex(&path),
        sha,
        "{kind}: {} is not the file the references were made on (run xtask/refgen/make-refs.sh)",
        path.display()
    );
    DecoderModel::load(
        &path,
        &LoadOptions {
            ctx: Some(ctx),
            ..LoadOptions::default()
        },
    )
    .unwrap_or_else(|e| panic!("cannot load {}: {e}", path.display()))
}

/// Tokenization, greedy continuations and teacher-forced top-1 of every reference prompt.
fn check_family(kind: &str) {
    let m = load(kind);
    let tok = m
        .with_gguf(realizar_runtime::tokenizer_load::tokenizer_from_gguf)
        .expect("parse")
        .expect("tokenizer");
    check_model(kind, kind, &m, &tok);
}

/// [`check_family`] of a loaded model (`label` in messages) against the references of `kind`.
pub fn check_model(label: &str, kind: &str, m: &DecoderModel, tok: &realizar_tokenize::Tokenizer) {
    let (runs, _) = refs(kind);
    let kind = label;
    assert!(runs.len() >= 4, "{kind}: at least four prompts");
    assert!(
        runs.iter().any(|r| r.prompt_ids.len() > 512),
        "{kind}: one prompt past 512 tokens"
    );
    let n_vocab = m.n_vocab();
    let mut session = m.session().expect("session");
    let mut failures = Vec::new();
    let (mut agree, mut total) = (0usize, 0usize);
    for (i, run) in runs.iter().enumerate() {
        let label = format!("{kind} prompt {i}");
        let ids = tok
            .encode(&run.prompt, realizar_tokenize::EncodeOptions::default())
            .expect("tokenize");
        assert_eq!(ids, run.prompt_ids, "{label}: prompt ids");

        // Greedy: equal, or diverged only where llama.cpp's own top-2 were near-tied and we
        // took one of its top-5.
        let config = GenerateConfig {
            max_tokens: run.greedy.len(),
            sampler: SamplerConfig::default(),
            stop_on_eog: false,
            grammar: None,
        };
        session.reset();
        let g = generate(&mut session, &ids, &config, None, |_, _| {
            ControlFlow::Continue(())
        })
        .unwrap_or_else(|e| panic!("{label}: {e}"));
        if let Some(s) = g.ids.iter().zip(&run.greedy).position(|(a, b)| a != b) {
            let near = run.greedy_margin[s] < TIE_MARGIN && run.greedy_top5[s].contains(&g.ids[s]);
            let msg = format!(
                "{label}: diverged at step {s} (llama.cpp margin {:.4}): ours {:?}, llama.cpp {:?}",
                run.greedy_margin[s], g.ids, run.greedy
            );
            eprintln!("{msg}");
            if !near {
                failures.push(msg);
            }
        }

        // Teacher forcing: the whole prompt in batches of 512 as llama.cpp ran it, logits at
        // every position, then llama.cpp's greedy ids one at a time.
        session.reset();
        let mut pos_logits = Vec::new();
        for chunk in ids.chunks(512) {
            pos_logits.extend_from_slice(session.eval(chunk, Logits::All).expect("prompt pass"));
        }
        let mut check = |what: String, ours: u32, want: u32, margin: f64| {
            total += 1;
            if ours == want {
                agree += 1;
            } else if margin >= TIE_MARGIN {
                failures.push(format!(
                    "{label}: {what}: ours {ours}, llama.cpp {want} (margin {margin:.4})"
                ));
            } else {
                eprintln!(
                    "{label}: {what}: near tie (margin {margin:.4}) ours {ours}, llama.cpp {want}"
                );
            }
        };
        for (j, row) in pos_logits.chunks_exact(n_vocab).enumerate() {
            let ours = realizar_runtime::sampling::argmax(row);
            check(
                format!("position {j}"),
                ours,
                run.prompt_top1[j],
                run.prompt_margin[j],
            );
        }
        for s in 1..run.greedy.len() {
            let last = session
                .eval(&[run.greedy[s - 1]], Logits::Last)
                .expect("step");
            let ours = realizar_runtime::sampling::argmax(last);
            check(
                format!("step {s}"),
                ours,
                run.greedy[s],
                run.greedy_margin[s],
            );
        }
    }
    eprintln!("{kind}: teacher-forced top-1 {agree}/{total}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Perplexity on the shared perplexity text (ctx 128, as `llama-perplexity -c 128 -b 128`)
/// within 0.1% of llama.cpp's on the same file.
fn check_perplexity(kind: &str) {
    // llama-perplexity -c 128 runs a context of 128 (which picks LongRoPE's short factors).
    let m = load_ctx(kind, 128);
    let tok = m
        .with_gguf(realizar_runtime::tokenizer_load::tokenizer_from_gguf)
        .expect("parse")
        .expect("tokenizer");
    check_model_perplexity(kind, &m, &tok);
}

/// [`check_perplexity`] of a loaded model (of context 128) against the references of `kind`.
pub fn check_model_perplexity(kind: &str, m: &DecoderModel, tok: &realizar_tokenize::Tokenizer) {
    let (_, expected) = refs(kind);
    let expected = expected.unwrap_or_else(|| panic!("{kind}: no reference perplexity"));
    let text = std::fs::read_to_string(refs_dir().join("llamacpp").join("ppl_bridges.txt"))
        .expect("ppl_bridges.txt");
    let tokens = tok
        .encode(&text, realizar_tokenize::EncodeOptions::default())
        .expect("tokenize");
    let special = m.special();
    let bos = if special.add_bos { special.bos } else { None };
    let mut session = m.session_with_ctx(128).expect("session");
    let p = realizar_runtime::perplexity(&mut session, &tokens, 128, bos).expect("perplexity");
    eprintln!("{kind}: perplexity {:.4} (llama.cpp {expected})", p.ppl);
    assert!(
        (p.ppl / expected - 1.0).abs() <= 0.001,
        "{kind}: perplexity {} vs llama.cpp {expected}",
        p.ppl
    );
}

#[test]
fn every_family_has_references() {
    for kind in KINDS.iter().chain(REQUANTS.iter().map(|r| &r.0)) {
        let (runs, ppl) = refs(kind);
        assert!(!runs.is_empty() && ppl.is_some(), "{kind}");
    }
}

#[test]
fn qwen2_matches_llama_cpp() {
    check_family("qwen2");
}

#[test]
fn qwen3_matches_llama_cpp() {
    check_family("qwen3");
}

#[test]
fn llama3_matches_llama_cpp() {
    check_family("llama3");
}

#[test]
fn smollm3_matches_llama_cpp() {
    check_family("smollm3");
}

#[test]
fn smollm3_perplexity_matches_llama_cpp() {
    check_perplexity("smollm3");
}

#[test]
fn mistral3_yarn_and_attention_temperature_match_llama_cpp() {
    check_family("mistral3");
}

#[test]
fn mistral3_perplexity_matches_llama_cpp() {
    check_perplexity("mistral3");
}

#[test]
fn phi3_matches_llama_cpp() {
    check_family("phi3");
}

#[test]
fn phi3_perplexity_matches_llama_cpp() {
    check_perplexity("phi3");
}

#[test]
fn phi3_long_rope_matches_llama_cpp() {
    check_family("phi3-long");
}

#[test]
fn phi3_long_rope_perplexity_matches_llama_cpp() {
    check_perplexity("phi3-long");
}

#[test]
fn llama_with_sentencepiece_and_explicit_head_size_matches_llama_cpp() {
    check_family("llama-spm");
}

#[test]
fn llama_with_sentencepiece_perplexity_matches_llama_cpp() {
    check_perplexity("llama-spm");
}

#[test]
fn qwen2_perplexity_matches_llama_cpp() {
    check_perplexity("qwen2");
}

#[test]
fn qwen3_perplexity_matches_llama_cpp() {
    check_perplexity("qwen3");
}

#[test]
fn llama3_perplexity_matches_llama_cpp() {
    check_perplexity("llama3");
}

// The weight types, on the fetched models requantized as llama-quantize does it (through F16;
// `transplant::requantize`; MXFP4 named for every matrix, the rest Q8_0). IQ4_XS files hold IQ4_NL where rows are not whole 256-element
// super-blocks (576- and 640-wide), and a few Q5_K / Q5_1 / Q8_0 tensors, as llama-quantize's
// type choice gives them.

#[test]
fn smollm2_iq4_xs_matches_llama_cpp() {
    check_family("iq4_xs");
}

#[test]
fn smollm2_iq4_xs_perplexity_matches_llama_cpp() {
    check_perplexity("iq4_xs");
}

#[test]
fn smollm2_iq4_nl_matches_llama_cpp() {
    check_family("iq4_nl");
}

#[test]
fn smollm2_iq4_nl_perplexity_matches_llama_cpp() {
    check_perplexity("iq4_nl");
}

#[test]
fn gemma3_iq4_xs_matches_llama_cpp() {
    check_family("gemma3-iq4_xs");
}

#[test]
fn gemma3_iq4_xs_perplexity_matches_llama_cpp() {
    check_perplexity("gemma3-iq4_xs");
}

#[test]
fn gemma3_iq4_nl_matches_llama_cpp() {
    check_family("gemma3-iq4_nl");
}

#[test]
fn gemma3_iq4_nl_perplexity_matches_llama_cpp() {
    check_perplexity("gemma3-iq4_nl");
}

#[test]
fn smollm2_q4_0_matches_llama_cpp() {
    check_family("q4_0");
}

#[test]
fn smollm2_q4_0_perplexity_matches_llama_cpp() {
    check_perplexity("q4_0");
}

#[test]
fn smollm2_mxfp4_matches_llama_cpp() {
    check_family("mxfp4");
}

#[test]
fn smollm2_mxfp4_perplexity_matches_llama_cpp() {
    check_perplexity("mxfp4");
}

#[test]
fn gemma3_mxfp4_matches_llama_cpp() {
    check_family("gemma3-mxfp4");
}

#[test]
fn gemma3_mxfp4_perplexity_matches_llama_cpp() {
    check_perplexity("gemma3-mxfp4");
}

// The ternary types (llama-quantize TQ1_0 / TQ2_0: the matrices whose rows are whole 256-element
// blocks — `ffn_down` — ternary, the others Q4_0): the models barely work, but every kernel
// must still give llama.cpp's numbers.
#[test]
fn smollm2_tq1_0_matches_llama_cpp() {
    check_family("tq1_0");
}

#[test]
fn smollm2_tq1_0_perplexity_matches_llama_cpp() {
    check_perplexity("tq1_0");
}

#[test]
fn smollm2_tq2_0_matches_llama_cpp() {
    check_family("tq2_0");
}

#[test]
fn smollm2_tq2_0_perplexity_matches_llama_cpp() {
    check_perplexity("tq2_0");
}

#[test]
fn gemma3_tq1_0_matches_llama_cpp() {
    check_family("gemma3-tq1_0");
}

#[test]
fn gemma3_tq1_0_perplexity_matches_llama_cpp() {
    check_perplexity("gemma3-tq1_0");
}

// IQ3_XXS: SmolLM2's ffn_down (its only matrices of whole 256-element rows) in IQ3_XXS (encoded
// by realizar's plain encoder: llama-quantize needs an importance matrix to put them there),
// the rest as llama-quantize's IQ3_XXS mix (IQ4_NL); llama.cpp's references on that file.
#[test]
fn smollm2_iq3_xxs_matches_llama_cpp() {
    check_family("iq3_xxs");
}

#[test]
fn smollm2_iq3_xxs_perplexity_matches_llama_cpp() {
    check_perplexity("iq3_xxs");
}

// IQ3_S, made the same way as IQ3_XXS.
#[test]
fn smollm2_iq3_s_matches_llama_cpp() {
    check_family("iq3_s");
}

#[test]
fn smollm2_iq3_s_perplexity_matches_llama_cpp() {
    check_perplexity("iq3_s");
}

// IQ2_XXS, made the same way (on llama-quantize's IQ3_XXS mix: its IQ2 mixes need an
// importance matrix).
#[test]
fn smollm2_iq2_xxs_matches_llama_cpp() {
    check_family("iq2_xxs");
}

#[test]
fn smollm2_iq2_xxs_perplexity_matches_llama_cpp() {
    check_perplexity("iq2_xxs");
}

// IQ2_XS and IQ2_S (scales per 16 elements), made the same way as IQ2_XXS.
#[test]
fn smollm2_iq2_xs_matches_llama_cpp() {
    check_family("iq2_xs");
}

#[test]
fn smollm2_iq2_xs_perplexity_matches_llama_cpp() {
    check_perplexity("iq2_xs");
}

#[test]
fn smollm2_iq2_s_matches_llama_cpp() {
    check_family("iq2_s");
}

#[test]
fn smollm2_iq2_s_perplexity_matches_llama_cpp() {
    check_perplexity("iq2_s");
}

// IQ1_S (a signed ternary grid with a shift per sub-block), made the same way.
#[test]
fn smollm2_iq1_s_matches_llama_cpp() {
    check_family("iq1_s");
}

#[test]
fn smollm2_iq1_s_perplexity_matches_llama_cpp() {
    check_perplexity("iq1_s");
}

// IQ1_M (IQ1_S's grid with shifts per eight and scales per 16), made the same way.
#[test]
fn smollm2_iq1_m_matches_llama_cpp() {
    check_family("iq1_m");
}

#[test]
fn smollm2_iq1_m_perplexity_matches_llama_cpp() {
    check_perplexity("iq1_m");
}

/// Every pre-tokenizer the tokenizer knows gives llama.cpp's ids on the corpus (the shared
/// tokenizer corpus and more lines), with and without special parsing, on SmolLM2's
/// vocabulary relabelled with it (`tests/refs/transplant/pretok.json`).
#[test]
fn every_pre_tokenizer_matches_llama_cpp() {
    let dir = workspace_root().join("crates/realizar-runtime/tests/refs/transplant");
    let refs: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("pretok.json")).expect("pretok.json"),
    )
    .expect("JSON");
    let text = std::fs::read_to_string(dir.join("pretok_lines.txt")).expect("lines");
    let lines: Vec<&str> = text.split("\n\x1e\n").collect();
    assert!(lines.len() >= 30);
    let mut failures = Vec::new();
    // Each pre-tokenizer, and the Phi-3 name rule (special tokens strip the space after them).
    let files = PRES
        .iter()
        .map(|p| (*p, vocab_with_pre(p)))
        .chain([("phi3name", vocab_named_phi3())]);
    for (pre, path) in files {
        let bytes = std::fs::read(&path).expect("read vocab");
        let file = realizar_format_gguf::GgufFile::parse(&bytes).expect("parse");
        let tok = realizar_runtime::tokenizer_load::tokenizer_from_gguf(&file)
            .unwrap_or_else(|e| panic!("{pre}: {e}"));
        for (mode, parse_special) in [("plain", false), ("special", true)] {
            let want = refs[pre][mode]
                .as_array()
                .unwrap_or_else(|| panic!("no reference for {pre} {mode}"));
            assert_eq!(want.len(), lines.len(), "{pre}");
            for (line, w) in lines.iter().zip(want) {
                let w: Vec<u32> = w
                    .as_array()
                    .expect("ids")
                    .iter()
                    .map(|x| x.as_u64().expect("id") as u32)
                    .collect();
                let opts = realizar_tokenize::EncodeOptions {
                    add_special: true,
                    parse_special,
                };
                let ours = tok.encode(line, opts).expect("encode");
                if ours != w {
                    failures.push(format!(
                        "{pre} {mode} {line:?}:\n  ours  {ours:?}\n  llama {w:?}"
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// Every other weight type llama-quantize writes without an importance matrix, on SmolLM2 (the
// K-quant files mix types as llama-quantize chooses: its Q2_K mix puts ffn_down in Q3_K and
// the rest, whose rows are not whole 256-element blocks, in Q4_0; Q3_K_M gives Q4_K/Q5_K and
// Q4_0/Q5_0; F16 and BF16 keep the norms in F32). The `q2_k-down` files name ffn_down Q2_K
// (on an AVX-512 CPU, ggml repacks it: decode and prompt take its repacked orders).

#[test]
fn smollm2_q2_k_down_matches_llama_cpp() {
    check_family("q2_k-down");
}

#[test]
fn smollm2_q2_k_down_perplexity_matches_llama_cpp() {
    check_perplexity("q2_k-down");
}

#[test]
fn gemma3_q2_k_down_matches_llama_cpp() {
    check_family("gemma3-q2_k-down");
}

#[test]
fn gemma3_q2_k_down_perplexity_matches_llama_cpp() {
    check_perplexity("gemma3-q2_k-down");
}

#[test]
fn smollm2_q2_k_matches_llama_cpp() {
    check_family("q2_k");
}

#[test]
fn smollm2_q2_k_perplexity_matches_llama_cpp() {
    check_perplexity("q2_k");
}

#[test]
fn smollm2_q3_k_matches_llama_cpp() {
    check_family("q3_k");
}

#[test]
fn smollm2_q3_k_perplexity_matches_llama_cpp() {
    check_perplexity("q3_k");
}

#[test]
fn smollm2_q5_0_matches_llama_cpp() {
    check_family("q5_0");
}

#[test]
fn smollm2_q5_0_perplexity_matches_llama_cpp() {
    check_perplexity("q5_0");
}

#[test]
fn smollm2_q5_1_matches_llama_cpp() {
    check_family("q5_1");
}

#[test]
fn smollm2_q5_1_perplexity_matches_llama_cpp() {
    check_perplexity("q5_1");
}

#[test]
fn smollm2_q8_0_matches_llama_cpp() {
    check_family("q8_0");
}

#[test]
fn smollm2_q8_0_perplexity_matches_llama_cpp() {
    check_perplexity("q8_0");
}

#[test]
fn smollm2_f16_matches_llama_cpp() {
    check_family("f16");
}

#[test]
fn smollm2_f16_perplexity_matches_llama_cpp() {
    check_perplexity("f16");
}

#[test]
fn smollm2_bf16_matches_llama_cpp() {
    check_family("bf16");
}

#[test]
fn smollm2_bf16_perplexity_matches_llama_cpp() {
    check_perplexity("bf16");
}

// Gemma3 270M in other weight types (640-wide rows: whole 32-element blocks).

#[test]
fn gemma3_q8_0_matches_llama_cpp() {
    check_family("gemma3-q8_0");
}

#[test]
fn gemma3_q8_0_perplexity_matches_llama_cpp() {
    check_perplexity("gemma3-q8_0");
}

#[test]
fn gemma3_q5_1_matches_llama_cpp() {
    check_family("gemma3-q5_1");
}

#[test]
fn gemma3_q5_1_perplexity_matches_llama_cpp() {
    check_perplexity("gemma3-q5_1");
}

#[test]
fn gemma3_f16_matches_llama_cpp() {
    check_family("gemma3-f16");
}

#[test]
fn gemma3_f16_perplexity_matches_llama_cpp() {
    check_perplexity("gemma3-f16");
}

#[test]
fn gemma3_bf16_matches_llama_cpp() {
    check_family("gemma3-bf16");
}

#[test]
fn gemma3_bf16_perplexity_matches_llama_cpp() {
    check_perplexity("gemma3-bf16");
}
