//! Qwen2 and Qwen3: llama's block (RMSNorm, SwiGLU) with RoPE in the NeoX layout (halves
//! rotated together). Qwen2 adds biases to the Q, K and V products; Qwen3 has none, and instead
//! normalises each head of Q and K (RMSNorm, `attn_q_norm` / `attn_k_norm`) before RoPE, with a
//! head size that may differ from width / heads (`attention.key_length`). Both may tie the
//! output to the token embedding. Follows llama.cpp src/models/qwen2.cpp and qwen3.cpp.

use super::{Meta, Shape};
use crate::layers::RopeLayout;
use crate::source::ModelSource;
use crate::{Activation, DecoderConfig, LayerSpec, NnError};

/// The configuration of a `qwen2` model.
pub fn qwen2(file: &dyn ModelSource) -> Result<DecoderConfig, NnError> {
    config(file, "qwen2")
}

/// The configuration of a `qwen3` model.
pub fn qwen3(file: &dyn ModelSource) -> Result<DecoderConfig, NnError> {
    config(file, "qwen3")
}

fn config(file: &dyn ModelSource, arch: &'static str) -> Result<DecoderConfig, NnError> {
    let m = Meta { file, arch };
    let Shape {
        n_embd,
        n_layer,
        n_head,
        n_head_kv,
        n_ff,
        head_dim,
    } = m.shape()?;
    // llama.cpp requires the epsilon and the trained context of these families.
    let eps = m.required_positive("attention.layer_norm_rms_epsilon")?;
    let rope = m.rope(RopeLayout::Neox, head_dim, 10000.0)?;
    if rope.n_dims != head_dim {
        // Both graphs rotate whole heads (llama.cpp asserts n_rot == head size).
        return Err(NnError::BadHyperparameter {
            key: m.key("rope.dimension_count"),
            reason: format!(
                "{} rotated dimensions, but {arch} rotates whole heads of {head_dim}",
                rope.n_dims
            ),
        });
    }
    let qwen3 = arch == "qwen3";
    Ok(DecoderConfig {
        arch: arch.into(),
        n_vocab: 0,
        n_embd,
        n_layer,
        n_head,
        n_head_kv,
        head_dim,
        n_ff,
        context_length: m.count("context_length")?,
        norm_eps: eps,
        embed_scale: None,
        q_scale: 1.0,
        kq_scale: 1.0 / (head_dim as f32).sqrt(),
        qk_norm: qwen3,
        qkv_bias: !qwen3,
        post_norms: false,
        fused_gate_up: false,
        attn_temp: None,
        long_rope: None,
        activation: Activation::Silu,
        final_softcap: None,
        layers: (0..n_layer)
            .map(|_| LayerSpec {
                window: None,
                rope: rope.clone(),
                use_rope: true,
            })
            .collect(),
    })
}
