//! The Hugging Face adapter of `realizar-nn`'s [`ModelSource`] for decoders: a model
//! directory's `config.json` read into the metadata llama.cpp's converter
//! (`convert_hf_to_gguf.py`) writes, and its safetensors tensors under llama.cpp's names, so
//! that a directory runs through the same architecture code as the GGUF file converted from it.
//!
//! Tensors are used in place (the shards are mapped) except the query and key projections of
//! llama-layout models, whose rows the converter permutes: Hugging Face rotates the halves of
//! each head (`rotate_half`), llama.cpp's `llama` rotates adjacent pairs, and the permutation
//! makes the two the same function. A tensor this adapter does not know keeps its Hugging Face
//! name, so the decoder refuses it as unused, by name.

use std::collections::BTreeMap;
use std::fmt;

use realizar_format_safetensors::{Dtype, SafeTensors};
use realizar_nn::{ModelSource, NnError, SourceError, TensorEntry, WeightBytes};
use serde_json::Value as Json;

type JsonMap = serde_json::Map<String, Json>;

use crate::hf_dir::HfConfig;

/// The `model_type` values of `config.json` that load as decoders, and the llama.cpp
/// architecture each becomes.
pub const DECODER_MODEL_TYPES: &[(&str, &str)] = &[("llama", "llama"), ("mistral", "llama")];

/// The llama.cpp architecture a `config.json` `model_type` loads as, if it is a decoder this
/// adapter reads.
pub fn decoder_arch(model_type: &str) -> Option<&'static str> {
    DECODER_MODEL_TYPES
        .iter()
        .find(|(t, _)| *t == model_type)
        .map(|(_, a)| *a)
}

/// A metadata value, as the GGUF converter would have written it.
#[derive(Clone, Debug, PartialEq)]
enum Meta {
    U32(u32),
    F32(f32),
    Str(String),
}

/// A metadata key the directory does not give (or gives as the wrong kind), with the
/// `config.json` field it would come from.
#[derive(Debug)]
struct KeyError(String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

/// One shard of a checkpoint: its bytes (normally mapped) and its file name, for errors.
pub struct Shard {
    /// The file name.
    pub name: String,
    /// The file's bytes.
    pub bytes: WeightBytes,
}

/// A Hugging Face decoder directory as a [`ModelSource`].
pub struct HfDecoderSource {
    meta: BTreeMap<String, Meta>,
    /// For a key the directory does not give: the `config.json` field it comes from.
    fields: BTreeMap<String, &'static str>,
    tensors: BTreeMap<String, TensorEntry>,
}

fn bad(key: impl Into<String>, reason: impl Into<String>) -> NnError {
    NnError::BadHyperparameter {
        key: key.into(),
        reason: reason.into(),
    }
}

fn to_u32(field: &str, v: usize) -> Result<u32, NnError> {
    u32::try_from(v).map_err(|_| bad(format!("config.json {field}"), format!("{v} is too large")))
}

/// The rope parameters: `rope_parameters` (transformers ≥ 4.57), else `rope_scaling`, with
/// `rope_theta` and `original_max_position_embeddings` from the top level when they are not in
/// it (as the converter merges them).
fn rope_params(c: &HfConfig) -> Result<JsonMap, NnError> {
    let raw = c
        .extra
        .get("rope_parameters")
        .or_else(|| c.extra.get("rope_scaling"))
        .cloned()
        .unwrap_or(Json::Null);
    let mut p = match raw {
        Json::Null => serde_json::Map::new(),
        Json::Object(m) => m,
        other => {
            return Err(bad(
                "config.json rope_scaling",
                format!("expected an object, found {other}"),
            ))
        }
    };
    if p.contains_key("full_attention") || p.contains_key("sliding_attention") {
        return Err(bad(
            "config.json rope_parameters",
            "per-layer-type rope parameters are not supported for this architecture",
        ));
    }
    if !p.contains_key("rope_theta") {
        if let Some(t) = c.rope_theta {
            p.insert("rope_theta".into(), Json::from(t));
        }
    }
    if !p.contains_key("rope_type") {
        if let Some(t) = p.get("type").cloned() {
            p.insert("rope_type".into(), t);
        }
    }
    if !p.contains_key("original_max_position_embeddings") {
        if let Some(v) = c.extra.get("original_max_position_embeddings") {
            p.insert("original_max_position_embeddings".into(), v.clone());
        }
    }
    Ok(p)
}

/// Llama 3's per-frequency rope divisors, as `LlamaModel.generate_extra_tensors` of llama.cpp's
/// converter computes them (in f32, as its torch tensors are).
pub fn llama3_rope_factors(
    base: f32,
    dim: usize,
    factor: f32,
    low_freq_factor: f32,
    high_freq_factor: f32,
    old_context_len: f32,
) -> Vec<f32> {
    let low_freq_wavelen = old_context_len / low_freq_factor;
    let high_freq_wavelen = old_context_len / high_freq_factor;
    (0..dim)
        .step_by(2)
        .map(|i| {
            let freq = 1.0 / base.powf(i as f32 / dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / freq;
            if wavelen < high_freq_wavelen {
                1.0
            } else if wavelen > low_freq_wavelen {
                factor
            } else {
                let smooth = (old_context_len / wavelen - low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

/// Permutes the rows of a `rows × row_bytes` projection from Hugging Face's half-split heads to
/// llama.cpp's adjacent pairs: in each head of `rows / n_head` rows, row `a·(hd/2) + j` (`a` the
/// half, `j` the pair) moves to row `2j + a` — `permute` of llama.cpp's converter.
pub fn permute_heads(data: &[u8], rows: usize, n_head: usize) -> Option<Vec<u8>> {
    if n_head == 0 || rows % (2 * n_head) != 0 || data.len() % rows.max(1) != 0 {
        return None;
    }
    let rb = data.len() / rows;
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0u8; data.len()];
    for h in 0..n_head {
        for a in 0..2 {
            for j in 0..half {
                let src = h * hd + a * half + j;
                let dst = h * hd + 2 * j + a;
                out[dst * rb..(dst + 1) * rb].copy_from_slice(&data[src * rb..(src + 1) * rb]);
            }
        }
    }
    Some(out)
}

/// llama.cpp's name for a Hugging Face llama tensor (`None`: a tensor the converter skips).
fn gguf_name(hf: &str) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let Some(rest) = hf.strip_prefix("model.layers.") else {
        return Some(hf.into());
    };
    let Some((n, part)) = rest.split_once('.') else {
        return Some(hf.into());
    };
    if n.parse::<u32>().is_err() {
        return Some(hf.into());
    }
    let to = match part {
        "input_layernorm.weight" => "attn_norm.weight",
        "self_attn.q_proj.weight" => "attn_q.weight",
        "self_attn.k_proj.weight" => "attn_k.weight",
        "self_attn.v_proj.weight" => "attn_v.weight",
        "self_attn.o_proj.weight" => "attn_output.weight",
        "post_attention_layernorm.weight" => "ffn_norm.weight",
        "mlp.gate_proj.weight" => "ffn_gate.weight",
        "mlp.up_proj.weight" => "ffn_up.weight",
        "mlp.down_proj.weight" => "ffn_down.weight",
        // Old checkpoints store the rotary frequencies; the converter drops them.
        "self_attn.rotary_emb.inv_freq" => return None,
        _ => return Some(hf.into()),
    };
    Some(format!("blk.{n}.{to}"))
}

/// The ggml type id and name of a safetensors element type (`u32::MAX`: one no weight may be).
fn ggml_type(d: Dtype) -> (u32, String) {
    match d {
        Dtype::F32 => (0, "F32".into()),
        Dtype::F16 => (1, "F16".into()),
        Dtype::BF16 => (30, "BF16".into()),
        other => (u32::MAX, format!("safetensors {other}")),
    }
}

impl HfDecoderSource {
    /// Reads `config` (a decoder whose `model_type` [`decoder_arch`] knows) and the tensors of
    /// `shards`. Errors name the `config.json` field or tensor at fault.
    pub fn new(config: &HfConfig, shards: &[Shard]) -> Result<HfDecoderSource, NnError> {
        let model_type = config.model_type.as_deref().unwrap_or("");
        let arch = decoder_arch(model_type).ok_or_else(|| NnError::UnknownArchitecture {
            name: format!("config.json model_type `{model_type}`"),
        })?;
        let mut s = HfDecoderSource {
            meta: BTreeMap::new(),
            fields: BTreeMap::new(),
            tensors: BTreeMap::new(),
        };
        s.meta
            .insert("general.architecture".into(), Meta::Str(arch.into()));
        let rope = s.read_config(arch, config)?;
        let n_head = config.num_attention_heads.unwrap_or(0);
        let n_head_kv = config.num_key_value_heads.unwrap_or(n_head);
        for shard in shards {
            s.read_shard(shard, n_head, n_head_kv)?;
        }
        if config.tie_word_embeddings == Some(false) && !s.tensors.contains_key("output.weight") {
            return Err(NnError::MissingTensor {
                name: "lm_head.weight (config.json tie_word_embeddings is false)".into(),
            });
        }
        if let Some(rope) = Self::rope_factors(arch, config, &rope)? {
            let bytes: Vec<u8> = rope.iter().flat_map(|f| f.to_le_bytes()).collect();
            let n = rope.len();
            s.tensors.insert(
                "rope_freqs.weight".into(),
                TensorEntry {
                    ggml_type: 0,
                    type_name: "F32".into(),
                    dims: vec![n as u64],
                    bytes: 0..bytes.len(),
                    store: std::sync::Arc::new(bytes),
                },
            );
        }
        Ok(s)
    }

    fn put_u32(
        &mut self,
        key: String,
        field: &'static str,
        v: Option<usize>,
    ) -> Result<(), NnError> {
        match v {
            Some(v) => {
                self.meta.insert(key, Meta::U32(to_u32(field, v)?));
            }
            None => {
                self.fields.insert(key, field);
            }
        }
        Ok(())
    }

    fn put_f32(&mut self, key: String, field: &'static str, v: Option<f64>) {
        match v {
            Some(v) => {
                self.meta.insert(key, Meta::F32(v as f32));
            }
            None => {
                self.fields.insert(key, field);
            }
        }
    }

    /// The metadata `convert_hf_to_gguf.py` writes for the architecture, and refusals of what
    /// would change the model's function and is not implemented; returns the rope parameters
    /// (for [`HfDecoderSource::rope_factors`]).
    fn read_config(&mut self, arch: &str, c: &HfConfig) -> Result<JsonMap, NnError> {
        let k = |s: &str| format!("{arch}.{s}");
        if let Some(act) = c.extra.get("hidden_act").filter(|a| !a.is_null()) {
            if act.as_str() != Some("silu") {
                return Err(bad(
                    "config.json hidden_act",
                    format!("{act}: only silu is supported for {arch}"),
                ));
            }
        }
        for field in ["attention_bias", "mlp_bias"] {
            if c.extra.get(field).and_then(Json::as_bool) == Some(true) {
                return Err(bad(
                    format!("config.json {field}"),
                    format!("biases are not supported for {arch}"),
                ));
            }
        }
        if let Some(w) = c.extra.get("sliding_window").filter(|w| !w.is_null()) {
            let window = w.as_u64().unwrap_or(0);
            let ctx = c.max_position_embeddings.unwrap_or(usize::MAX) as u64;
            if window < ctx {
                return Err(bad(
                    "config.json sliding_window",
                    format!(
                        "{w}: sliding-window attention is not implemented for {arch} \
                         (llama.cpp's converter drops it; convert the directory to GGUF to run it so)"
                    ),
                ));
            }
        }
        self.put_u32(k("block_count"), "num_hidden_layers", c.num_hidden_layers)?;
        self.put_u32(
            k("context_length"),
            "max_position_embeddings",
            c.max_position_embeddings,
        )?;
        self.put_u32(k("embedding_length"), "hidden_size", c.hidden_size)?;
        self.put_u32(
            k("feed_forward_length"),
            "intermediate_size",
            c.intermediate_size,
        )?;
        self.put_u32(
            k("attention.head_count"),
            "num_attention_heads",
            c.num_attention_heads,
        )?;
        self.put_u32(
            k("attention.head_count_kv"),
            "num_key_value_heads",
            c.num_key_value_heads,
        )?;
        self.put_u32(k("vocab_size"), "vocab_size", c.vocab_size)?;
        self.put_f32(
            k("attention.layer_norm_rms_epsilon"),
            "rms_norm_eps",
            c.rms_norm_eps,
        );
        if c.head_dim.is_some() {
            self.put_u32(k("attention.key_length"), "head_dim", c.head_dim)?;
            self.put_u32(k("attention.value_length"), "head_dim", c.head_dim)?;
        }
        let rope_dim = c.head_dim.or(match (c.hidden_size, c.num_attention_heads) {
            (Some(d), Some(h)) if h > 0 => Some(d / h),
            _ => None,
        });
        self.put_u32(k("rope.dimension_count"), "head_dim", rope_dim)?;

        let p = rope_params(c)?;
        let num = |key: &str| -> Result<Option<f64>, NnError> {
            match p.get(key) {
                None | Some(Json::Null) => Ok(None),
                Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                    bad(
                        format!("config.json rope_scaling.{key}"),
                        format!("{v} is not a number"),
                    )
                }),
            }
        };
        if let Some(theta) = num("rope_theta")? {
            self.put_f32(k("rope.freq_base"), "rope_theta", Some(theta));
        }
        let rope_type = match p.get("rope_type") {
            None | Some(Json::Null) => None,
            Some(Json::String(t)) => Some(t.to_ascii_lowercase()),
            Some(v) => {
                return Err(bad(
                    "config.json rope_scaling.rope_type",
                    format!("{v} is not a string"),
                ))
            }
        };
        let factor = num("factor")?;
        match (rope_type.as_deref(), factor) {
            (None | Some("default"), _) => {}
            (Some("linear"), Some(f)) => {
                self.meta
                    .insert(k("rope.scaling.type"), Meta::Str("linear".into()));
                self.put_f32(k("rope.scaling.factor"), "rope_scaling.factor", Some(f));
            }
            (Some("yarn"), Some(f)) => {
                for key in [
                    "extrapolation_factor",
                    "attention_factor",
                    "attn_factor",
                    "beta_fast",
                    "beta_slow",
                ] {
                    if p.get(key).is_some_and(|v| !v.is_null()) {
                        return Err(bad(
                            format!("config.json rope_scaling.{key}"),
                            "YaRN's tuning parameters are not supported for this architecture",
                        ));
                    }
                }
                let orig = num("original_max_position_embeddings")?.ok_or_else(|| {
                    bad(
                        "config.json rope_scaling.original_max_position_embeddings",
                        "YaRN needs the training context",
                    )
                })?;
                self.meta
                    .insert(k("rope.scaling.type"), Meta::Str("yarn".into()));
                self.put_f32(k("rope.scaling.factor"), "rope_scaling.factor", Some(f));
                self.put_u32(
                    k("rope.scaling.original_context_length"),
                    "rope_scaling.original_max_position_embeddings",
                    Some(orig as usize),
                )?;
            }
            (Some("llama3"), _) => {}
            (Some(other), _) => {
                return Err(bad(
                    "config.json rope_scaling.rope_type",
                    format!("`{other}` (with factor {factor:?}) is not supported"),
                ))
            }
        }
        Ok(p)
    }

    /// Llama 3's `rope_freqs.weight`, when the rope type asks for it.
    fn rope_factors(arch: &str, c: &HfConfig, p: &JsonMap) -> Result<Option<Vec<f32>>, NnError> {
        let is_llama3 = p
            .get("rope_type")
            .and_then(Json::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("llama3"));
        if !is_llama3 || arch != "llama" {
            return Ok(None);
        }
        let get = |key: &str, default: f64| p.get(key).and_then(Json::as_f64).unwrap_or(default);
        let dim = c
            .head_dim
            .or(match (c.hidden_size, c.num_attention_heads) {
                (Some(d), Some(h)) if h > 0 => Some(d / h),
                _ => None,
            })
            .filter(|d| *d > 0 && *d <= 1 << 16)
            .ok_or_else(|| {
                bad(
                    "config.json head_dim",
                    "llama3 rope needs the head dimension",
                )
            })?;
        let (factor, low, high) = (
            get("factor", 8.0),
            get("low_freq_factor", 1.0),
            get("high_freq_factor", 4.0),
        );
        if !(factor > 0.0 && low > 0.0 && high > low) {
            return Err(bad(
                "config.json rope_scaling",
                format!("llama3 factors {factor}, {low}, {high} are not positive and increasing"),
            ));
        }
        Ok(Some(llama3_rope_factors(
            get("rope_theta", 10000.0) as f32,
            dim,
            factor as f32,
            low as f32,
            high as f32,
            get("original_max_position_embeddings", 8192.0) as f32,
        )))
    }

    fn read_shard(
        &mut self,
        shard: &Shard,
        n_head: usize,
        n_head_kv: usize,
    ) -> Result<(), NnError> {
        let bytes: &[u8] = (*shard.bytes).as_ref();
        let st = SafeTensors::parse(bytes).map_err(|e| NnError::TensorData {
            name: shard.name.clone(),
            reason: format!("not a valid safetensors file: {e}"),
        })?;
        let base = bytes.as_ptr() as usize;
        for (hf, view) in st.tensors() {
            let Some(name) = gguf_name(hf) else { continue };
            if self.tensors.contains_key(&name) {
                return Err(NnError::TensorData {
                    name: hf.into(),
                    reason: format!("appears twice (again in {})", shard.name),
                });
            }
            let (ggml_type, type_name) = ggml_type(view.dtype);
            if ggml_type == u32::MAX {
                return Err(NnError::UnsupportedTensorType {
                    name: hf.into(),
                    ty: format!("{type_name} (weights must be F32, F16 or BF16)"),
                });
            }
            let dims: Vec<u64> = view.shape.iter().rev().map(|&d| d as u64).collect();
            let start = view.data.as_ptr() as usize - base;
            let mut entry = TensorEntry {
                ggml_type,
                type_name,
                dims,
                bytes: start..start + view.data.len(),
                store: shard.bytes.clone(),
            };
            let heads = if hf.ends_with("self_attn.q_proj.weight") {
                Some((n_head, "num_attention_heads"))
            } else if hf.ends_with("self_attn.k_proj.weight") {
                Some((n_head_kv, "num_key_value_heads"))
            } else {
                None
            };
            if let Some((h, field)) = heads {
                let rows = view.shape.first().copied().unwrap_or(0);
                let permuted = permute_heads(view.data, rows, h).ok_or_else(|| {
                    bad(
                        format!("config.json {field}"),
                        format!(
                            "{h} heads do not split the {rows} rows of `{hf}` into rotation pairs"
                        ),
                    )
                })?;
                entry.bytes = 0..permuted.len();
                entry.store = std::sync::Arc::new(permuted);
            }
            self.tensors.insert(name, entry);
        }
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<&Meta, SourceError> {
        self.meta.get(key).ok_or_else(|| {
            let msg = match self.fields.get(key) {
                Some(field) => format!("config.json has no `{field}`"),
                None => "not given by a Hugging Face directory".to_string(),
            };
            Box::new(KeyError(msg)) as SourceError
        })
    }
}

/// Every tensor of `shards` under llama.cpp's name, with its dimensions (ggml order) and size
/// in bytes (headers only: for accounting, such as the benchmarks' bytes per token).
pub fn tensor_shapes(shards: &[Shard]) -> Vec<(String, Vec<u64>, u64)> {
    let mut out = Vec::new();
    for shard in shards {
        if let Ok(st) = SafeTensors::parse((*shard.bytes).as_ref()) {
            for (hf, view) in st.tensors() {
                if let Some(name) = gguf_name(hf) {
                    let dims = view.shape.iter().rev().map(|&d| d as u64).collect();
                    out.push((name, dims, view.data.len() as u64));
                }
            }
        }
    }
    out
}

impl ModelSource for HfDecoderSource {
    fn has(&self, key: &str) -> bool {
        self.meta.contains_key(key)
    }

    fn get_u32(&self, key: &str) -> Result<u32, SourceError> {
        match self.meta(key)? {
            Meta::U32(v) => Ok(*v),
            other => Err(Box::new(KeyError(format!("{other:?} is not an integer")))),
        }
    }

    fn get_f32(&self, key: &str) -> Result<f32, SourceError> {
        match self.meta(key)? {
            Meta::F32(v) => Ok(*v),
            Meta::U32(v) => Ok(*v as f32),
            Meta::Str(s) => Err(Box::new(KeyError(format!("`{s}` is not a number")))),
        }
    }

    fn get_str(&self, key: &str) -> Result<&str, SourceError> {
        match self.meta(key)? {
            Meta::Str(s) => Ok(s),
            other => Err(Box::new(KeyError(format!("{other:?} is not a string")))),
        }
    }

    fn tensor(&self, name: &str) -> Option<TensorEntry> {
        self.tensors.get(name).cloned()
    }

    fn tensor_count(&self) -> usize {
        self.tensors.len()
    }

    fn tensor_names(&self) -> Vec<&str> {
        self.tensors.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hugging Face's rotation (halves of each head) of the rows of `w`, against llama.cpp's
    /// (adjacent pairs) of the permuted rows: the same rotated values, pair by pair, so the
    /// permutation is what makes the two layouts one function.
    #[test]
    fn permuted_heads_rotate_in_adjacent_pairs_as_hf_rotates_halves() {
        let (n_head, hd, cols) = (3usize, 8usize, 5usize);
        let rows = n_head * hd;
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32) - 50.0)
            .collect();
        let x: Vec<f32> = (0..cols).map(|i| 0.25 * i as f32 - 0.5).collect();
        let bytes: Vec<u8> = w.iter().flat_map(|f| f.to_le_bytes()).collect();
        let p = permute_heads(&bytes, rows, n_head).expect("permutable");
        let wp: Vec<f32> = p
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let matvec = |m: &[f32]| -> Vec<f32> {
            m.chunks_exact(cols)
                .map(|r| r.iter().zip(&x).map(|(a, b)| a * b).sum())
                .collect()
        };
        let (q_hf, q_gg) = (matvec(&w), matvec(&wp));
        let (pos, base) = (7.0f32, 10000.0f32);
        for h in 0..n_head {
            for j in 0..hd / 2 {
                let theta = pos * base.powf(-2.0 * j as f32 / hd as f32);
                let (c, s) = (theta.cos(), theta.sin());
                // rotate_half: pair (j, j + hd/2).
                let (a, b) = (q_hf[h * hd + j], q_hf[h * hd + j + hd / 2]);
                let hf = (a * c - b * s, b * c + a * s);
                // llama.cpp normal rope: pair (2j, 2j + 1).
                let (a, b) = (q_gg[h * hd + 2 * j], q_gg[h * hd + 2 * j + 1]);
                let gg = (a * c - b * s, b * c + a * s);
                assert_eq!(hf, gg, "head {h} pair {j}");
            }
        }
        assert!(
            permute_heads(&bytes, rows, 5).is_none(),
            "heads must divide the rows"
        );
        assert!(permute_heads(&bytes, rows, 0).is_none());
    }

    #[test]
    fn llama3_factors_follow_the_converter() {
        // Llama 3.2 1B's rope_scaling (factor 32, low/high frequency factors 1 and 4, original
        // context 8192, theta 500000, head dim 64); the values are the converter's arithmetic
        // redone in numpy float32 (the same divisors Llama 3.2 GGUF files carry).
        let f = llama3_rope_factors(500000.0, 64, 32.0, 1.0, 4.0, 8192.0);
        let mut want = vec![1.0f32; 15];
        want.extend([1.651_329_3, 3.292_262_8, 9.666_731]);
        want.extend([32.0; 14]);
        assert_eq!(f.len(), want.len());
        for (i, (a, b)) in f.iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 4.0 * f32::EPSILON * b, "{i}: {a} vs {b}");
        }
    }

    #[test]
    fn names_map_to_llama_cpp_names() {
        assert_eq!(
            gguf_name("model.embed_tokens.weight").as_deref(),
            Some("token_embd.weight")
        );
        assert_eq!(
            gguf_name("model.layers.11.mlp.down_proj.weight").as_deref(),
            Some("blk.11.ffn_down.weight")
        );
        assert_eq!(
            gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"),
            None
        );
        // Unknown tensors keep their names (the decoder refuses them as unused).
        assert_eq!(
            gguf_name("model.layers.0.self_attn.q_proj.bias").as_deref(),
            Some("model.layers.0.self_attn.q_proj.bias")
        );
    }
}
