//! A tiny llama built in the test, run end to end, and hostile variants of it: valid GGUF
//! containers holding inconsistent models must fail to load with an error naming the culprit.

use std::ops::ControlFlow;
use std::path::PathBuf;

use realizar_format_gguf::{GgufWriter, OwnedValue};
use realizar_nn::NnError;
use realizar_runtime::{
    generate, DecoderModel, GenerateConfig, LoadOptions, Logits, RuntimeError, SamplerConfig,
    StopReason,
};

const D: u64 = 32;
const FF: u64 = 64;
const VOCAB: u64 = 8;

/// Metadata and f32 tensors of a model, editable before it is written.
struct Spec {
    meta: Vec<(String, OwnedValue)>,
    tensors: Vec<(String, Vec<u64>)>,
}

impl Spec {
    fn tiny_llama() -> Spec {
        let meta = vec![
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
            (
                "llama.attention.layer_norm_rms_epsilon".into(),
                OwnedValue::F32(1e-5),
            ),
            ("llama.rope.freq_base".into(), OwnedValue::F32(10000.0)),
            ("tokenizer.ggml.bos_token_id".into(), OwnedValue::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), OwnedValue::U32(2)),
        ];
        let t = |n: &str, dims: &[u64]| (n.to_string(), dims.to_vec());
        let tensors = vec![
            t("token_embd.weight", &[D, VOCAB]),
            t("output_norm.weight", &[D]),
            t("blk.0.attn_norm.weight", &[D]),
            t("blk.0.attn_q.weight", &[D, D]),
            t("blk.0.attn_k.weight", &[D, D / 2]),
            t("blk.0.attn_v.weight", &[D, D / 2]),
            t("blk.0.attn_output.weight", &[D, D]),
            t("blk.0.ffn_norm.weight", &[D]),
            t("blk.0.ffn_gate.weight", &[D, FF]),
            t("blk.0.ffn_up.weight", &[D, FF]),
            t("blk.0.ffn_down.weight", &[FF, D]),
        ];
        Spec { meta, tensors }
    }

    fn set(mut self, key: &str, value: OwnedValue) -> Spec {
        self.meta.retain(|(k, _)| k != key);
        self.meta.push((key.into(), value));
        self
    }

    fn without_tensor(mut self, name: &str) -> Spec {
        self.tensors.retain(|(n, _)| n != name);
        self
    }

    fn reshape(mut self, name: &str, dims: &[u64]) -> Spec {
        for (n, d) in &mut self.tensors {
            if n == name {
                *d = dims.to_vec();
            }
        }
        self
    }

    /// Writes the file (deterministic pseudo-random weights, norms of 1) and returns its path.
    fn write(&self, tag: &str) -> PathBuf {
        let mut w = GgufWriter::new();
        for (k, v) in &self.meta {
            w.add_metadata(k, v.clone());
        }
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for (name, dims) in &self.tensors {
            let n: u64 = dims.iter().product();
            let values: Vec<f32> = (0..n)
                .map(|_| {
                    if name.ends_with("norm.weight") {
                        1.0
                    } else {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.5
                    }
                })
                .collect();
            w.add_f32_tensor(name, dims, &values).expect("tensor");
        }
        let path = std::env::temp_dir().join(format!(
            "realizar-decoder-{}-{tag}.gguf",
            std::process::id()
        ));
        std::fs::write(&path, w.to_bytes()).expect("write model");
        path
    }
}

fn load(spec: &Spec, tag: &str) -> Result<DecoderModel, RuntimeError> {
    let path = spec.write(tag);
    let r = DecoderModel::load(
        &path,
        &LoadOptions {
            threads: Some(2),
            ..LoadOptions::default()
        },
    );
    let _ = std::fs::remove_file(&path);
    r
}

fn model_error(spec: Spec, tag: &str) -> NnError {
    match load(&spec, tag) {
        Err(RuntimeError::Model { source, .. }) => source,
        other => panic!("{tag}: expected a model error, got {other:?}"),
    }
}

#[test]
fn tiny_llama_runs_and_is_deterministic() {
    let m = load(&Spec::tiny_llama(), "ok").expect("valid model");
    assert_eq!(m.n_vocab(), VOCAB as usize);
    assert!(m.decoder().tied_output());
    assert_eq!(m.special().eog, vec![2]);
    let mut s = m.session().expect("session");
    let config = GenerateConfig {
        max_tokens: 6,
        stop_on_eog: false,
        ..GenerateConfig::default()
    };
    let a = generate(&mut s, &[1, 3, 4], &config, None, |_, _| {
        ControlFlow::Continue(())
    })
    .expect("generate");
    let b = generate(&mut s, &[1, 3, 4], &config, None, |_, _| {
        ControlFlow::Continue(())
    })
    .expect("generate");
    assert_eq!(a.ids.len(), 6);
    assert_eq!(a.ids, b.ids);
    assert_eq!(a.stop_reason, StopReason::Length);

    // Batched prefill and token-by-token decoding agree.
    s.reset();
    let batched = s.eval(&[1, 3, 4, 5], Logits::All).expect("eval").to_vec();
    s.reset();
    let mut stepped = Vec::new();
    for t in [1, 3, 4, 5] {
        stepped.extend_from_slice(s.eval(&[t], Logits::Last).expect("eval"));
    }
    for (x, y) in batched.iter().zip(&stepped) {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }

    // A seed reproduces sampled output.
    let mut sampled = |seed| {
        let c = GenerateConfig {
            max_tokens: 8,
            stop_on_eog: false,
            sampler: SamplerConfig {
                temperature: 1.0,
                seed,
                ..SamplerConfig::default()
            },
            grammar: None,
        };
        generate(&mut s, &[1], &c, None, |_, _| ControlFlow::Continue(()))
            .expect("generate")
            .ids
    };
    assert_eq!(sampled(7), sampled(7));
}

#[test]
fn bad_token_ids_and_overlong_prompts_are_errors() {
    let m = load(&Spec::tiny_llama(), "ids").expect("valid model");
    let mut s = m.session_with_ctx(4).expect("session");
    assert!(matches!(
        s.eval(&[VOCAB as u32], Logits::Last),
        Err(RuntimeError::Model {
            source: NnError::TokenOutOfRange { id: 8, vocab: 8 },
            ..
        })
    ));
    assert!(matches!(
        s.eval(&[1, 2, 3, 4, 5], Logits::Last),
        Err(RuntimeError::PromptTooLong { tokens: 5, ctx: 4 })
    ));
    let g = generate(
        &mut s,
        &[1, 2, 3, 4, 5],
        &GenerateConfig::default(),
        None,
        |_, _| ControlFlow::Continue(()),
    );
    assert!(matches!(g, Err(RuntimeError::PromptTooLong { .. })));
    assert!(matches!(
        generate(&mut s, &[], &GenerateConfig::default(), None, |_, _| {
            ControlFlow::Continue(())
        }),
        Err(RuntimeError::InvalidArgument { .. })
    ));
    // Generation stops when the context is full instead of overflowing it.
    let g = generate(
        &mut s,
        &[1, 3],
        &GenerateConfig {
            max_tokens: 10,
            stop_on_eog: false,
            ..GenerateConfig::default()
        },
        None,
        |_, _| ControlFlow::Continue(()),
    )
    .expect("generate");
    assert_eq!(g.ids.len(), 3);
}

#[test]
fn missing_tensor_is_named() {
    match model_error(
        Spec::tiny_llama().without_tensor("blk.0.attn_k.weight"),
        "missing",
    ) {
        NnError::MissingTensor { name } => assert_eq!(name, "blk.0.attn_k.weight"),
        e => panic!("{e}"),
    }
}

#[test]
fn wrong_shape_is_named() {
    match model_error(
        Spec::tiny_llama().reshape("blk.0.ffn_up.weight", &[D, FF + 32]),
        "shape",
    ) {
        NnError::TensorShape { name, .. } => assert_eq!(name, "blk.0.ffn_up.weight"),
        e => panic!("{e}"),
    }
}

#[test]
fn zero_heads_is_a_bad_hyperparameter() {
    match model_error(
        Spec::tiny_llama().set("llama.attention.head_count", OwnedValue::U32(0)),
        "zero-heads",
    ) {
        NnError::BadHyperparameter { key, .. } => assert_eq!(key, "llama.attention.head_count"),
        e => panic!("{e}"),
    }
}

#[test]
fn kv_heads_must_divide_heads() {
    match model_error(
        Spec::tiny_llama().set("llama.attention.head_count_kv", OwnedValue::U32(3)),
        "kv-heads",
    ) {
        NnError::BadHyperparameter { key, .. } => {
            assert_eq!(key, "llama.attention.head_count_kv")
        }
        e => panic!("{e}"),
    }
}

#[test]
fn heads_must_divide_width() {
    match model_error(
        Spec::tiny_llama()
            .set("llama.attention.head_count", OwnedValue::U32(3))
            .set("llama.attention.head_count_kv", OwnedValue::U32(3)),
        "width",
    ) {
        NnError::BadHyperparameter { key, .. } => assert_eq!(key, "llama.attention.head_count"),
        e => panic!("{e}"),
    }
}

#[test]
fn bos_outside_vocab_is_rejected() {
    match model_error(
        Spec::tiny_llama().set("tokenizer.ggml.bos_token_id", OwnedValue::U32(100)),
        "bos",
    ) {
        NnError::BadHyperparameter { key, .. } => assert_eq!(key, "tokenizer.ggml.bos_token_id"),
        e => panic!("{e}"),
    }
}

#[test]
fn unknown_architecture_is_rejected() {
    match model_error(
        Spec::tiny_llama().set("general.architecture", OwnedValue::String("mamba9".into())),
        "arch",
    ) {
        NnError::UnknownArchitecture { name } => assert_eq!(name, "mamba9"),
        e => panic!("{e}"),
    }
}

#[test]
fn block_count_without_tensors_is_rejected() {
    match model_error(
        Spec::tiny_llama().set("llama.block_count", OwnedValue::U32(2)),
        "blocks",
    ) {
        NnError::MissingTensor { name } => assert_eq!(name, "blk.1.attn_norm.weight"),
        e => panic!("{e}"),
    }
}

#[test]
fn missing_key_is_named() {
    let mut spec = Spec::tiny_llama();
    spec.meta.retain(|(k, _)| k != "llama.embedding_length");
    match model_error(spec, "key") {
        NnError::Metadata { key, .. } => assert_eq!(key, "llama.embedding_length"),
        e => panic!("{e}"),
    }
}

#[test]
fn missing_file_is_io_and_garbage_is_format() {
    let missing = std::env::temp_dir().join("realizar-no-such-model.gguf");
    assert!(matches!(
        DecoderModel::load(&missing, &LoadOptions::default()),
        Err(RuntimeError::Io { .. })
    ));
    let junk = std::env::temp_dir().join(format!("realizar-junk-{}.gguf", std::process::id()));
    std::fs::write(&junk, b"not a gguf file at all").expect("write");
    let r = DecoderModel::load(&junk, &LoadOptions::default());
    let _ = std::fs::remove_file(&junk);
    assert!(matches!(r, Err(RuntimeError::Format { .. })));
}
