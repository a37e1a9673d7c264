//! Architectures: each module maps a model's metadata ([`ModelSource`], llama.cpp's GGUF keys)
//! to a [`DecoderConfig`]; the tensor names are llama.cpp's (`token_embd.weight`,
//! `blk.N.attn_q.weight`, ...), shared by all.

pub mod gemma3;
pub mod llama;
pub mod phi3;
pub mod qwen;

use crate::layers::{Rope, RopeLayout, Yarn};
use crate::source::{ModelSource, SourceError};
use crate::{DecoderConfig, NnError};

/// The architectures this crate implements, by `general.architecture` value.
pub const SUPPORTED: &[&str] = &[
    "llama", "gemma3", "qwen2", "qwen3", "smollm3", "phi3", "mistral3",
];

/// The decoder configuration of a model, by its `general.architecture`.
pub fn config_from_source(file: &dyn ModelSource) -> Result<DecoderConfig, NnError> {
    let key = "general.architecture";
    let arch = file.get_str(key).map_err(|source| NnError::Metadata {
        key: key.into(),
        source,
    })?;
    match arch {
        "llama" => llama::config(file),
        "gemma3" => gemma3::config(file),
        "qwen2" => qwen::qwen2(file),
        "qwen3" => qwen::qwen3(file),
        "smollm3" => llama::smollm3(file),
        "mistral3" => llama::mistral3(file),
        "phi3" => phi3::config(file),
        other => Err(NnError::UnknownArchitecture { name: other.into() }),
    }
}

/// Typed access to `{arch}.*` metadata with errors that name the key.
pub(crate) struct Meta<'f> {
    pub file: &'f dyn ModelSource,
    pub arch: &'static str,
}

/// The sizes every decoder architecture reads the same way.
pub(crate) struct Shape {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub n_ff: usize,
    pub head_dim: usize,
}

impl Meta<'_> {
    /// Width, blocks, heads, kv heads (default: heads), FFN width and head dimension
    /// (`attention.key_length`, else width / heads, which must divide); a value length must
    /// equal the key length.
    pub fn shape(&self) -> Result<Shape, NnError> {
        let n_embd = self.count("embedding_length")?;
        let n_layer = self.count("block_count")?;
        // Every block has tensors of its own: more blocks than tensors is a lie, and the
        // layer list must not be sized by it.
        let tensors = self.file.tensor_count();
        if n_layer > tensors {
            return Err(NnError::BadHyperparameter {
                key: self.key("block_count"),
                reason: format!("{n_layer} blocks, but the model has only {tensors} tensors"),
            });
        }
        let n_head = self.count("attention.head_count")?;
        let n_head_kv = self.opt_count("attention.head_count_kv")?.unwrap_or(n_head);
        let n_ff = self.count("feed_forward_length")?;
        let head_dim = match self.opt_count("attention.key_length")? {
            Some(k) => k,
            None => {
                if n_embd % n_head != 0 {
                    return Err(NnError::BadHyperparameter {
                        key: self.key("attention.head_count"),
                        reason: format!("{n_head} heads do not divide the width {n_embd}"),
                    });
                }
                n_embd / n_head
            }
        };
        if let Some(v) = self.opt_count("attention.value_length")? {
            if v != head_dim {
                return Err(NnError::BadHyperparameter {
                    key: self.key("attention.value_length"),
                    reason: format!("value length {v} differs from key length {head_dim}"),
                });
            }
        }
        Ok(Shape {
            n_embd,
            n_layer,
            n_head,
            n_head_kv,
            n_ff,
            head_dim,
        })
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    fn err(&self, key: String, source: SourceError) -> NnError {
        NnError::Metadata { key, source }
    }

    /// A required positive integer.
    pub fn count(&self, suffix: &str) -> Result<usize, NnError> {
        let key = self.key(suffix);
        let v = self
            .file
            .get_u32(&key)
            .map_err(|e| self.err(key.clone(), e))?;
        if v == 0 {
            return Err(NnError::BadHyperparameter {
                key,
                reason: "must be positive".into(),
            });
        }
        Ok(v as usize)
    }

    /// An optional positive integer.
    pub fn opt_count(&self, suffix: &str) -> Result<Option<usize>, NnError> {
        if !self.file.has(&self.key(suffix)) {
            return Ok(None);
        }
        self.count(suffix).map(Some)
    }

    /// An optional float.
    pub fn opt_f32(&self, suffix: &str) -> Result<Option<f32>, NnError> {
        let key = self.key(suffix);
        if !self.file.has(&key) {
            return Ok(None);
        }
        let v = self
            .file
            .get_f32(&key)
            .map_err(|e| self.err(key.clone(), e))?;
        if !v.is_finite() {
            return Err(NnError::BadHyperparameter {
                key,
                reason: format!("{v} is not finite"),
            });
        }
        Ok(Some(v))
    }

    /// A required positive float.
    pub fn required_positive(&self, suffix: &str) -> Result<f32, NnError> {
        match self.opt_positive(suffix)? {
            Some(v) => Ok(v),
            None => {
                let key = self.key(suffix);
                // The source's own error for a missing key says where it looked.
                let e = self.file.get_f32(&key).err();
                Err(self.err(key, e.unwrap_or_else(|| "missing".into())))
            }
        }
    }

    /// An optional positive float.
    pub fn opt_positive(&self, suffix: &str) -> Result<Option<f32>, NnError> {
        match self.opt_f32(suffix)? {
            Some(v) if v <= 0.0 => Err(NnError::BadHyperparameter {
                key: self.key(suffix),
                reason: format!("{v} must be positive"),
            }),
            v => Ok(v),
        }
    }

    /// The rotary embedding every layer of a family shares: `rope.dimension_count` dimensions
    /// (default: the whole head) in `layout`, base `rope.freq_base` (default `default_base`),
    /// the linear scaling and the magnitude factor; no per-frequency divisors.
    pub fn rope(
        &self,
        layout: RopeLayout,
        head_dim: usize,
        default_base: f32,
    ) -> Result<Rope, NnError> {
        let freq_scale = self.rope_freq_scale()?;
        let (attn_factor, yarn) = self.rope_yarn(freq_scale)?;
        Ok(Rope {
            n_dims: self.opt_count("rope.dimension_count")?.unwrap_or(head_dim),
            layout,
            freq_base: self.opt_positive("rope.freq_base")?.unwrap_or(default_base),
            freq_scale,
            freq_factors: None,
            attn_factor,
            yarn,
        })
    }

    /// `rope.scaling.type`, if the file gives one.
    fn rope_scaling_type(&self) -> Result<Option<&str>, NnError> {
        let key = self.key("rope.scaling.type");
        if !self.file.has(&key) {
            return Ok(None);
        }
        self.file
            .get_str(&key)
            .map(Some)
            .map_err(|e| self.err(key, e))
    }

    /// The rotation's magnitude factor and, for `rope.scaling.type` `yarn`, YaRN's
    /// parameters, as llama.cpp's context derives them: the training context
    /// (`rope.scaling.original_context_length`, else `context_length`), the ramp bounds (32
    /// and 1; `mistral3` files may set `rope.scaling.yarn_beta_fast`/`_slow`), and a magnitude
    /// `0.1 ln(factor) + 1` (or the ratio with `rope.scaling.yarn_log_multiplier`, which
    /// `mistral3` reads) divided by the `1 + 0.1 ln(factor)` ggml's rope multiplies back.
    pub fn rope_yarn(&self, freq_scale: f32) -> Result<(f32, Option<Yarn>), NnError> {
        let attn = self.rope_attn_factor()?;
        if self.rope_scaling_type()? != Some("yarn") {
            return Ok((attn, None));
        }
        let mistral3 = self.arch == "mistral3";
        let opt = |suffix: &str| -> Result<Option<f32>, NnError> {
            if mistral3 {
                self.opt_f32(suffix)
            } else {
                Ok(None)
            }
        };
        let n_ctx_orig = match self.opt_count("rope.scaling.original_context_length")? {
            Some(n) => n,
            None => self.count("context_length")?,
        };
        let factor = 1.0 / freq_scale;
        let mscale = |scale: f32, m: f32| {
            if scale <= 1.0 {
                1.0
            } else {
                0.1 * m * scale.ln() + 1.0
            }
        };
        let log_mul = opt("rope.scaling.yarn_log_multiplier")?.unwrap_or(0.0);
        let mut a = if log_mul != 0.0 {
            mscale(factor, 1.0) / mscale(factor, log_mul)
        } else {
            mscale(factor, 1.0)
        };
        a *= 1.0 / (1.0 + 0.1 * factor.ln());
        a *= attn;
        let yarn = Yarn {
            ext_factor: 1.0,
            n_ctx_orig,
            beta_fast: opt("rope.scaling.yarn_beta_fast")?.unwrap_or(32.0),
            beta_slow: opt("rope.scaling.yarn_beta_slow")?.unwrap_or(1.0),
        };
        Ok((a, Some(yarn)))
    }

    /// `rope.scaling.attn_factor`: the rotation's magnitude factor (llama.cpp reads it for
    /// every architecture), 1.0 without.
    pub fn rope_attn_factor(&self) -> Result<f32, NnError> {
        Ok(self
            .opt_positive("rope.scaling.attn_factor")?
            .unwrap_or(1.0))
    }

    /// `rope.scaling.*`: the linear frequency scale (1 / factor), 1.0 without scaling.
    pub fn rope_freq_scale(&self) -> Result<f32, NnError> {
        let ty_key = self.key("rope.scaling.type");
        let ty = match self.file.has(&ty_key) {
            false => None,
            true => Some(
                self.file
                    .get_str(&ty_key)
                    .map_err(|e| self.err(ty_key.clone(), e))?,
            ),
        };
        let factor = self.opt_positive("rope.scaling.factor")?;
        match ty {
            Some("none") => Ok(1.0),
            None | Some("linear") | Some("yarn") => Ok(factor.map_or(1.0, |f| 1.0 / f)),
            Some(other) => Err(NnError::BadHyperparameter {
                key: ty_key,
                reason: format!("rope scaling `{other}` is not supported"),
            }),
        }
    }
}
