//! Llama (and llama-shaped models such as SmolLM2): RMSNorm, SwiGLU, RoPE in the normal
//! (adjacent pairs) layout — llama.cpp's converter permutes Q/K so that GGUF llama models use it.
//! Follows llama.cpp src/models/llama.cpp.

use super::{Meta, Shape};
use crate::decoder::AttnTemp;
use crate::layers::RopeLayout;
use crate::source::ModelSource;
use crate::{Activation, DecoderConfig, LayerSpec, NnError};

/// Every `NO_ROPE_LAYER_STEP`-th layer (1-based) of SmolLM3 uses no positional encoding
/// (llama.cpp hard-codes the step; the converter writes no key for it). A file that sets
/// `smollm3.no_rope_layer_step` (llama.cpp's name for the step) gets its own, 0 refused.
pub const NO_ROPE_LAYER_STEP: usize = 4;

/// The configuration of a `llama` model.
pub fn config(file: &dyn ModelSource) -> Result<DecoderConfig, NnError> {
    config_of(file, "llama")
}

/// The configuration of a `smollm3` model: llama's block, with every fourth layer a NoPE
/// layer (no rotary embedding). Follows llama.cpp src/models/smollm3.cpp.
pub fn smollm3(file: &dyn ModelSource) -> Result<DecoderConfig, NnError> {
    config_of(file, "smollm3")
}

/// The configuration of a `mistral3` model (Ministral 3, Mistral Small 3.x as converted since
/// late 2025): llama's block with YaRN read from the file's own keys, and Llama 4's
/// attention temperature when `attention.temperature_scale` is set. Follows llama.cpp
/// src/models/mistral3.cpp (a mixture of experts is refused).
pub fn mistral3(file: &dyn ModelSource) -> Result<DecoderConfig, NnError> {
    let m = Meta {
        file,
        arch: "mistral3",
    };
    if m.opt_count("expert_count")?.is_some() {
        return Err(NnError::BadHyperparameter {
            key: m.key("expert_count"),
            reason: "mistral3 with experts (MoE) is not supported".into(),
        });
    }
    let mut c = config_of(file, "mistral3")?;
    if let Some(scale) = m
        .opt_f32("attention.temperature_scale")?
        .filter(|s| *s != 0.0)
    {
        // llama.cpp steps the temperature every YaRN training context.
        let floor_scale = match c.layers.first().and_then(|l| l.rope.yarn) {
            Some(y) => y.n_ctx_orig,
            None => m
                .opt_count("rope.scaling.original_context_length")?
                .unwrap_or(c.context_length),
        };
        c.attn_temp = Some(AttnTemp { scale, floor_scale });
    }
    Ok(c)
}

fn config_of(file: &dyn ModelSource, arch: &'static str) -> Result<DecoderConfig, NnError> {
    let m = Meta { file, arch };
    let Shape {
        n_embd,
        n_layer,
        n_head,
        n_head_kv,
        n_ff,
        head_dim,
    } = m.shape()?;
    let eps = m
        .opt_positive("attention.layer_norm_rms_epsilon")?
        .unwrap_or(1e-5);
    let rope = m.rope(RopeLayout::Normal, head_dim, 10000.0)?;
    let nope_step = match arch {
        "smollm3" => Some(
            m.opt_count("no_rope_layer_step")?
                .unwrap_or(NO_ROPE_LAYER_STEP),
        ),
        _ => None,
    };
    Ok(DecoderConfig {
        arch: arch.into(),
        n_vocab: 0,
        n_embd,
        n_layer,
        n_head,
        n_head_kv,
        head_dim,
        n_ff,
        context_length: m.opt_count("context_length")?.unwrap_or(2048),
        norm_eps: eps,
        embed_scale: None,
        q_scale: 1.0,
        kq_scale: 1.0 / (head_dim as f32).sqrt(),
        qk_norm: false,
        qkv_bias: false,
        post_norms: false,
        fused_gate_up: false,
        attn_temp: None,
        long_rope: None,
        activation: Activation::Silu,
        final_softcap: None,
        layers: (0..n_layer)
            .map(|il| LayerSpec {
                window: None,
                rope: rope.clone(),
                use_rope: nope_step.is_none_or(|step| (il + 1) % step != 0),
            })
            .collect(),
    })
}
