//! Gemma 3 (text): embeddings scaled by sqrt(width), pre- and post-norms around attention and
//! FFN, per-head RMSNorm of Q and K, GeGLU (tanh GELU), NeoX RoPE, and sliding-window layers
//! (rope base 10000) interleaved with a global layer every sixth (rope base from the file).
//! Follows llama.cpp src/models/gemma3.cpp and src/llama-model.cpp (`LLM_ARCH_GEMMA3`), and
//! Hugging Face transformers models/gemma3/modeling_gemma3.py.

use super::{Meta, Shape};
use crate::layers::{Rope, RopeLayout};
use crate::source::ModelSource;
use crate::{Activation, DecoderConfig, LayerSpec, NnError};

/// Every `SWA_PATTERN`-th layer (1-based) attends globally; llama.cpp hard-codes it.
pub const SWA_PATTERN: usize = 6;
/// Rope base of the sliding-window layers (hard-coded in llama.cpp, not in the GGUF).
pub const LOCAL_ROPE_BASE: f32 = 10_000.0;

/// The configuration of a `gemma3` model.
pub fn config(file: &dyn ModelSource) -> Result<DecoderConfig, NnError> {
    let m = Meta {
        file,
        arch: "gemma3",
    };
    let Shape {
        n_embd,
        n_layer,
        n_head,
        n_head_kv,
        n_ff,
        head_dim,
    } = m.shape()?;
    let window = m.count("attention.sliding_window")?;
    let eps = m
        .opt_positive("attention.layer_norm_rms_epsilon")?
        .unwrap_or(1e-6);
    let global = m.rope(RopeLayout::Neox, head_dim, 1_000_000.0)?;
    let local = Rope {
        freq_base: LOCAL_ROPE_BASE,
        freq_scale: 1.0,
        ..global.clone()
    };
    let layers = (0..n_layer)
        .map(|il| {
            if il % SWA_PATTERN == SWA_PATTERN - 1 {
                LayerSpec {
                    window: None,
                    rope: global.clone(),
                    use_rope: true,
                }
            } else {
                LayerSpec {
                    window: Some(window),
                    rope: local.clone(),
                    use_rope: true,
                }
            }
        })
        .collect();
    Ok(DecoderConfig {
        arch: "gemma3".into(),
        n_vocab: 0,
        n_embd,
        n_layer,
        n_head,
        n_head_kv,
        head_dim,
        n_ff,
        context_length: m.opt_count("context_length")?.unwrap_or(32768),
        norm_eps: eps,
        embed_scale: Some((n_embd as f32).sqrt()),
        // llama.cpp scales Q by 1/sqrt(head_dim) after RoPE and calls attention with scale 1.
        q_scale: 1.0 / (head_dim as f32).sqrt(),
        kq_scale: 1.0,
        qk_norm: true,
        qkv_bias: false,
        post_norms: true,
        fused_gate_up: false,
        attn_temp: None,
        long_rope: None,
        activation: Activation::GeluTanh,
        final_softcap: m.opt_positive("final_logit_softcapping")?,
        layers,
    })
}
