//! Phi-3 and Phi-4-mini (`phi3`): one fused `attn_qkv` and one `ffn_up` holding the gate's and
//! the up projection's rows (gate first, SwiGLU), RoPE in the NeoX layout over the first
//! `rope.dimension_count` dimensions of each head (Phi-4-mini rotates three quarters), queries
//! scaled by 1/sqrt(head size) after RoPE, and LongRoPE: `rope_factors_short` and
//! `rope_factors_long` divide the frequencies for contexts up to and beyond
//! `rope.scaling.original_context_length`, with `rope.scaling.attn_factor` scaling the
//! rotation. A sliding window in the file is not applied: llama.cpp 0c1e570 disables Phi-3's
//! (its converter writes a window the models were not run with). Follows llama.cpp
//! src/models/phi3.cpp.

use super::{Meta, Shape};
use crate::layers::RopeLayout;
use crate::source::ModelSource;
use crate::{Activation, DecoderConfig, LayerSpec, NnError};

/// The configuration of a `phi3` model.
pub fn config(file: &dyn ModelSource) -> Result<DecoderConfig, NnError> {
    let m = Meta { file, arch: "phi3" };
    let Shape {
        n_embd,
        n_layer,
        n_head,
        n_head_kv,
        n_ff,
        head_dim,
    } = m.shape()?;
    let eps = m.required_positive("attention.layer_norm_rms_epsilon")?;
    let context_length = m.count("context_length")?;
    let rope = m.rope(RopeLayout::Neox, head_dim, 10000.0)?;
    let original = m
        .opt_count("rope.scaling.original_context_length")?
        .unwrap_or(context_length);
    Ok(DecoderConfig {
        arch: "phi3".into(),
        n_vocab: 0,
        n_embd,
        n_layer,
        n_head,
        n_head_kv,
        head_dim,
        n_ff,
        context_length,
        norm_eps: eps,
        embed_scale: None,
        q_scale: 1.0 / (head_dim as f32).sqrt(),
        kq_scale: 1.0,
        qk_norm: false,
        qkv_bias: false,
        post_norms: false,
        fused_gate_up: true,
        attn_temp: None,
        long_rope: Some(original),
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
