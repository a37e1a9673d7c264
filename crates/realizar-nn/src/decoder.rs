//! A decoder-only transformer assembled from a [`DecoderConfig`] and weights that stay in the
//! caller's byte store (a memory map): the forward pass, batched over a prompt.

use std::sync::Arc;

use realizar_quant::QuantType;

use crate::backend::{
    ActScratch, AttentionShape, Backend, KvLayout, Order, QTensor, Queries, Rows, Spread, Weight,
    MAX_HEAD_DIM,
};
use crate::kv::{KvState, KvType};
use crate::layers::{gelu_tanh_ggml_slice, rms_norm, rms_norm_inplace, Rope};
use crate::source::{ModelSource, TensorEntry};
use crate::NnError;

use rayon::prelude::*;

/// The bytes the weights live in (normally the whole memory-mapped GGUF file).
pub type WeightBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// The gated feed-forward activation: `act(gate) * up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU.
    Silu,
    /// GeGLU with the tanh GELU (as ggml computes it).
    GeluTanh,
}

impl Activation {
    /// The gated feed-forward's activation: `gate[i] = act(gate[i]) * up[i]`, as ggml's fused
    /// `swiglu`/`geglu` compute it.
    pub fn glu(self, gate: &mut [f32], up: &[f32]) {
        match self {
            Activation::Silu => realizar_quant::vecops::silu_ggml(gate),
            Activation::GeluTanh => gelu_tanh_ggml_slice(gate),
        }
        for (g, &u) in gate.iter_mut().zip(up) {
            *g *= u;
        }
    }
}

/// The attention temperature of llama.cpp's `llm_graph_input_attn_temp`: at position `p`,
/// queries are multiplied by `ln(floor(p / floor_scale) + 1) * scale + 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttnTemp {
    /// `attention.temperature_scale`.
    pub scale: f32,
    /// Positions per step (the YaRN training context).
    pub floor_scale: usize,
}

impl AttnTemp {
    /// The factor at position `pos`, computed as llama.cpp does (the logarithm in f64).
    pub fn at(&self, pos: usize) -> f32 {
        let steps = (pos as f32 / self.floor_scale as f32).floor();
        ((f64::from(steps) + 1.0).ln() * f64::from(self.scale) + 1.0) as f32
    }
}

/// What differs between layers.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    /// Sliding attention window (`None`: attend to every earlier position).
    pub window: Option<usize>,
    /// Rotary embedding of this layer.
    pub rope: Rope,
    /// Whether the layer rotates queries and keys at all (false: a NoPE layer, as every
    /// fourth layer of SmolLM3).
    pub use_rope: bool,
}

/// Hyperparameters of a decoder.
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderConfig {
    /// `general.architecture`.
    pub arch: String,
    /// Vocabulary size (rows of the token embedding).
    pub n_vocab: usize,
    /// Model width.
    pub n_embd: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Dimension of each head.
    pub head_dim: usize,
    /// Hidden width of the feed-forward network.
    pub n_ff: usize,
    /// Context length the model was trained with.
    pub context_length: usize,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// Factor applied to the token embeddings.
    pub embed_scale: Option<f32>,
    /// Factor applied to queries after RoPE.
    pub q_scale: f32,
    /// Factor applied to attention scores before the softmax.
    pub kq_scale: f32,
    /// Per-head RMSNorm of queries and keys (`attn_q_norm`, `attn_k_norm`).
    pub qk_norm: bool,
    /// Biases added to the query, key and value products (`attn_q.bias`, `attn_k.bias`,
    /// `attn_v.bias`).
    pub qkv_bias: bool,
    /// Norms after attention and FFN (`post_attention_norm`, `post_ffw_norm`).
    pub post_norms: bool,
    /// The gate's and the up projection's rows in one `ffn_up` tensor, gate first (Phi-3).
    pub fused_gate_up: bool,
    /// Llama 4's attention temperature (Mistral 3): queries are multiplied, after RoPE, by
    /// a factor that grows with the position.
    pub attn_temp: Option<AttnTemp>,
    /// LongRoPE: `rope_factors_short` / `rope_factors_long` are the rope divisors for contexts
    /// up to / beyond this original context length (`rope.scaling.original_context_length`).
    pub long_rope: Option<usize>,
    /// Feed-forward activation.
    pub activation: Activation,
    /// Final logit soft-capping: `cap * tanh(logit / cap)`.
    pub final_softcap: Option<f32>,
    /// Per-layer attention window and RoPE.
    pub layers: Vec<LayerSpec>,
}

impl DecoderConfig {
    fn validate(&self) -> Result<(), NnError> {
        let bad = |key: &str, reason: String| {
            Err(NnError::BadHyperparameter {
                key: format!("{}.{key}", self.arch),
                reason,
            })
        };
        if self.n_head_kv == 0 || self.n_head % self.n_head_kv != 0 {
            return bad(
                "attention.head_count_kv",
                format!(
                    "{} kv heads do not divide {} heads",
                    self.n_head_kv, self.n_head
                ),
            );
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 || self.head_dim > MAX_HEAD_DIM {
            return bad(
                "attention.key_length",
                format!(
                    "head dimension {} must be even and at most {MAX_HEAD_DIM}",
                    self.head_dim
                ),
            );
        }
        if self.layers.len() != self.n_layer {
            return bad("block_count", "layer specs do not match".into());
        }
        for l in &self.layers {
            if l.rope.n_dims > self.head_dim || l.rope.n_dims % 2 != 0 {
                return bad(
                    "rope.dimension_count",
                    format!(
                        "{} rotated dimensions for heads of {}",
                        l.rope.n_dims, self.head_dim
                    ),
                );
            }
            if l.window == Some(0) {
                return bad("attention.sliding_window", "must be positive".into());
            }
        }
        Ok(())
    }
}

/// The weights of one block.
#[derive(Clone, Debug)]
struct LayerWeights {
    attn_norm: Vec<f32>,
    wq: Weight,
    wk: Weight,
    wv: Weight,
    wo: Weight,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    /// Q, K and V biases, each where the file has it (required by `qkv_bias`).
    qkv_bias: [Option<Vec<f32>>; 3],
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    gate: Weight,
    up: Weight,
    down: Weight,
    post_ffn_norm: Option<Vec<f32>>,
}

/// Which logits a forward pass computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// None (the pass only fills the KV cache).
    None,
    /// The last position's.
    Last,
    /// Every position's, `n_tokens * n_vocab`.
    All,
}

/// One sequence's rows in a pass over several sequences ([`Decoder::forward_segments`]): the
/// cache it continues (an index into the caches of the call) and how many consecutive token
/// rows of the pass are its.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index of the sequence's cache.
    pub cache: usize,
    /// Its number of token rows (at least one).
    pub rows: usize,
}

/// Activation buffers of a forward pass, sized once for a maximum batch; reused across calls so
/// that decoding does not allocate.
#[derive(Clone, Debug)]
pub struct Scratch {
    max_batch: usize,
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    /// Each segment's cache length before the pass (reused).
    starts: Vec<usize>,
    /// The rotation tables of the pass's rows (`head_dim` floats each), and the layer whose
    /// RoPE they were made for (layers with the same RoPE share them).
    rope_tab: Vec<f32>,
    rope_for: Option<usize>,
    act: ActScratch,
    logits: Vec<f32>,
}

/// A decoder-only transformer over weights in a shared byte store.
#[derive(Clone)]
pub struct Decoder {
    config: DecoderConfig,
    /// LongRoPE's short and long rope divisors, when the model has them.
    long_rope: Option<Box<(Vec<f32>, Vec<f32>)>>,
    backend: Arc<dyn Backend>,
    token_embd: Weight,
    output_norm: Vec<f32>,
    output: Weight,
    layers: Vec<LayerWeights>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("config", &self.config)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

struct Loader<'f> {
    /// The names of the tensors the architecture took (every tensor of the file must be).
    used: std::cell::RefCell<std::collections::HashSet<String>>,
    file: &'f dyn ModelSource,
    backend: &'f dyn Backend,
}

impl Loader<'_> {
    fn info(&self, name: &str) -> Result<TensorEntry, NnError> {
        self.used.borrow_mut().insert(name.to_string());
        self.file
            .tensor(name)
            .ok_or_else(|| NnError::MissingTensor {
                name: name.to_string(),
            })
    }

    fn check_dims(&self, name: &str, found: &[u64], expected: &[u64]) -> Result<(), NnError> {
        let mut f = found.to_vec();
        while f.len() > expected.len() && f.last() == Some(&1) {
            f.pop();
        }
        if f != expected {
            return Err(NnError::TensorShape {
                name: name.into(),
                expected: expected.to_vec(),
                found: found.to_vec(),
            });
        }
        Ok(())
    }

    fn quant_type(&self, name: &str, info: &TensorEntry) -> Result<QuantType, NnError> {
        QuantType::from_ggml_id(info.ggml_type)
            .filter(|t| *t != QuantType::Q8_1 && *t != QuantType::Q8_K)
            .ok_or_else(|| NnError::UnsupportedTensorType {
                name: name.into(),
                ty: info.type_name.clone(),
            })
    }

    /// The tensor's bytes, which must be exactly `len` bytes inside its store.
    fn data<'i>(&self, name: &str, info: &'i TensorEntry, len: usize) -> Result<&'i [u8], NnError> {
        let bad = |reason: String| NnError::TensorData {
            name: name.into(),
            reason,
        };
        let r = &info.bytes;
        if r.len() != len {
            return Err(bad(format!(
                "{} bytes where its type and shape need {len}",
                r.len()
            )));
        }
        let store: &[u8] = (*info.store).as_ref();
        store.get(r.clone()).ok_or_else(|| {
            bad(format!(
                "bytes {}..{} lie outside the {} bytes of the file",
                r.start,
                r.end,
                store.len()
            ))
        })
    }

    /// A `rows × cols` matrix (ggml dims `[cols, rows]`), given to the backend.
    fn matrix(&self, name: &str, cols: usize, rows: usize) -> Result<Weight, NnError> {
        let mut parts = self.matrix_parts(name, cols, &[rows])?;
        Ok(parts.remove(0))
    }

    /// A fused matrix of `cols` columns whose rows are the matrices `parts` (row counts) one
    /// after another (`attn_qkv`, Phi-3's gate-and-up `ffn_up`): each part is given to the
    /// backend as a matrix of its own, in place (rows are whole blocks, so a part is a byte
    /// range of the tensor).
    fn matrix_parts(
        &self,
        name: &str,
        cols: usize,
        parts: &[usize],
    ) -> Result<Vec<Weight>, NnError> {
        let rows: usize = parts.iter().sum();
        let info = self.info(name)?;
        self.check_dims(name, &info.dims, &[cols as u64, rows as u64])?;
        let ty = self.quant_type(name, &info)?;
        let shape_err = || NnError::TensorShape {
            name: name.into(),
            expected: vec![cols.next_multiple_of(ty.block_size()) as u64, rows as u64],
            found: info.dims.clone(),
        };
        let row_bytes = ty.row_bytes(cols).ok_or_else(shape_err)?;
        let len = row_bytes.checked_mul(rows).ok_or_else(shape_err)?;
        self.data(name, &info, len)?;
        let mut at = info.bytes.start;
        let mut out = Vec::with_capacity(parts.len());
        for &r in parts {
            let part = QTensor {
                name: name.into(),
                ty,
                rows: r,
                cols,
                offset: at,
                len: r * row_bytes,
            };
            at += r * row_bytes;
            out.push(self.backend.upload(part, &info.store)?);
        }
        Ok(out)
    }

    /// A vector of `parts` lengths one after another, split.
    fn vector_parts(&self, name: &str, parts: &[usize]) -> Result<Vec<Vec<f32>>, NnError> {
        let all = self.vector(name, parts.iter().sum())?;
        let mut at = 0;
        Ok(parts
            .iter()
            .map(|&n| {
                at += n;
                all[at - n..at].to_vec()
            })
            .collect())
    }

    /// A vector of `n` elements, dequantized to f32.
    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, NnError> {
        let info = self.info(name)?;
        self.check_dims(name, &info.dims, &[n as u64])?;
        let ty = self.quant_type(name, &info)?;
        let len = ty.row_bytes(n).ok_or_else(|| NnError::TensorShape {
            name: name.into(),
            expected: vec![n.next_multiple_of(ty.block_size()) as u64],
            found: info.dims.clone(),
        })?;
        let data = self.data(name, &info, len)?;
        let mut out = vec![0.0; n];
        realizar_quant::dequantize_row(ty, data, &mut out).map_err(|source| NnError::Quant {
            what: format!("tensor `{name}`"),
            source,
        })?;
        Ok(out)
    }

    fn opt_vector(&self, name: &str, n: usize, want: bool) -> Result<Option<Vec<f32>>, NnError> {
        if want {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl Decoder {
    /// Builds a decoder from a model source (the runtime adapts GGUF files): the
    /// architecture's hyperparameters, then every tensor located in the source's byte store
    /// and never copied (except the small f32 norm vectors), its shape and type checked.
    ///
    /// Errors name the key or tensor at fault: unknown architecture, missing metadata or
    /// tensors, wrong shapes or types, inconsistent hyperparameters, tensor bytes outside the
    /// store.
    pub fn from_source(
        file: &dyn ModelSource,
        backend: Arc<dyn Backend>,
    ) -> Result<Decoder, NnError> {
        let mut config = crate::arch::config_from_source(file)?;
        let ld = Loader {
            used: Default::default(),
            file,
            backend: &*backend,
        };
        let d = config.n_embd;
        let embd_info = ld.info("token_embd.weight")?;
        let n_vocab = match embd_info.dims.as_slice() {
            [c, v] if *c == d as u64 && *v > 0 => usize::try_from(*v).unwrap_or(usize::MAX),
            dims => {
                return Err(NnError::TensorShape {
                    name: "token_embd.weight".into(),
                    expected: vec![d as u64, 0],
                    found: dims.to_vec(),
                })
            }
        };
        config.n_vocab = n_vocab;
        let vocab_key = format!("{}.vocab_size", config.arch);
        if let Ok(v) = file.get_u32(&vocab_key) {
            if v as usize != n_vocab {
                return Err(NnError::BadHyperparameter {
                    key: vocab_key,
                    reason: format!("{v} differs from the {n_vocab} rows of token_embd.weight"),
                });
            }
        }
        config.validate()?;

        let token_embd = ld.matrix("token_embd.weight", d, n_vocab)?;
        let output = if file.tensor("output.weight").is_some() {
            ld.matrix("output.weight", d, n_vocab)?
        } else {
            token_embd.clone()
        };
        let output_norm = ld.vector("output_norm.weight", d)?;
        if file.tensor("rope_freqs.weight").is_some() {
            let n = config.layers.first().map_or(0, |l| l.rope.n_dims / 2);
            let ff = ld.vector("rope_freqs.weight", n)?;
            for l in &mut config.layers {
                l.rope.freq_factors = Some(ff.clone());
            }
        }
        let long_rope = match config.long_rope {
            Some(_)
                if file.tensor("rope_factors_short.weight").is_some()
                    || file.tensor("rope_factors_long.weight").is_some() =>
            {
                let n = config.layers.first().map_or(0, |l| l.rope.n_dims / 2);
                let short = ld.vector("rope_factors_short.weight", n)?;
                let long = ld.vector("rope_factors_long.weight", n)?;
                for l in &mut config.layers {
                    l.rope.freq_factors = Some(short.clone());
                }
                Some(Box::new((short, long)))
            }
            _ => None,
        };
        let (hd, nh, nkv, ff) = (
            config.head_dim,
            config.n_head,
            config.n_head_kv,
            config.n_ff,
        );
        let mut layers = Vec::with_capacity(config.n_layer);
        for il in 0..config.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}.weight");
            let b = |s: &str| format!("blk.{il}.{s}.bias");
            // In llama.cpp's order, so that the first missing tensor is the one it names.
            let attn_norm = ld.vector(&n("attn_norm"), d)?;
            // Q, K and V: three matrices, or one fused `attn_qkv` (llama.cpp takes the fused
            // one for any architecture that has it), each with its bias where present
            // (Qwen2 requires them).
            let qkv_rows = [nh * hd, nkv * hd, nkv * hd];
            let (wq, wk, wv, qkv_bias) = if file.tensor(&n("attn_qkv")).is_some() {
                let mut w = ld.matrix_parts(&n("attn_qkv"), d, &qkv_rows)?.into_iter();
                let (wq, wk, wv) = (w.next(), w.next(), w.next());
                let bias = match config.qkv_bias || file.tensor(&b("attn_qkv")).is_some() {
                    true => ld
                        .vector_parts(&b("attn_qkv"), &qkv_rows)?
                        .into_iter()
                        .map(Some)
                        .collect(),
                    false => vec![None, None, None],
                };
                let mut bias = bias.into_iter();
                let three = |x: Option<Weight>| {
                    x.ok_or_else(|| NnError::InvalidArgument {
                        reason: "fused QKV split".into(),
                    })
                };
                (
                    three(wq)?,
                    three(wk)?,
                    three(wv)?,
                    [
                        bias.next().flatten(),
                        bias.next().flatten(),
                        bias.next().flatten(),
                    ],
                )
            } else {
                let bias = |s: &str, n: usize| {
                    let name = b(s);
                    match config.qkv_bias || file.tensor(&name).is_some() {
                        true => ld.vector(&name, n).map(Some),
                        false => Ok(None),
                    }
                };
                (
                    ld.matrix(&n("attn_q"), d, nh * hd)?,
                    ld.matrix(&n("attn_k"), d, nkv * hd)?,
                    ld.matrix(&n("attn_v"), d, nkv * hd)?,
                    [
                        bias("attn_q", nh * hd)?,
                        bias("attn_k", nkv * hd)?,
                        bias("attn_v", nkv * hd)?,
                    ],
                )
            };
            // Gate and up: two matrices, or Phi-3's `ffn_up` holding the gate's rows first.
            let (gate, up) = if config.fused_gate_up {
                let mut w = ld.matrix_parts(&n("ffn_up"), d, &[ff, ff])?.into_iter();
                match (w.next(), w.next()) {
                    (Some(g), Some(u)) => (g, u),
                    _ => {
                        return Err(NnError::InvalidArgument {
                            reason: "fused gate/up split".into(),
                        })
                    }
                }
            } else {
                (
                    ld.matrix(&n("ffn_gate"), d, ff)?,
                    ld.matrix(&n("ffn_up"), d, ff)?,
                )
            };
            layers.push(LayerWeights {
                qkv_bias,
                attn_norm,
                wq,
                wk,
                wv,
                wo: ld.matrix(&n("attn_output"), nh * hd, d)?,
                q_norm: ld.opt_vector(&n("attn_q_norm"), hd, config.qk_norm)?,
                k_norm: ld.opt_vector(&n("attn_k_norm"), hd, config.qk_norm)?,
                post_attn_norm: ld.opt_vector(&n("post_attention_norm"), d, config.post_norms)?,
                ffn_norm: ld.vector(&n("ffn_norm"), d)?,
                gate,
                up,
                down: ld.matrix(&n("ffn_down"), ff, d)?,
                post_ffn_norm: ld.opt_vector(&n("post_ffw_norm"), d, config.post_norms)?,
            });
        }
        // A tensor the architecture does not use would change the function the file means
        // (llama.cpp refuses such files too: "wrong number of tensors").
        let used = ld.used.borrow();
        if let Some(name) = file.tensor_names().into_iter().find(|n| !used.contains(*n)) {
            return Err(NnError::UnusedTensor {
                name: name.to_string(),
                arch: config.arch.clone(),
            });
        }
        drop(used);
        Ok(Decoder {
            config,
            long_rope,
            backend,
            token_embd,
            output_norm,
            output,
            layers,
        })
    }

    /// Sets what depends on the context length sessions use: LongRoPE's long rope divisors
    /// beyond the original context, the short ones up to it (llama.cpp decides by its
    /// context's length per sequence). Without LongRoPE factors, nothing.
    pub fn use_context(&mut self, n_ctx: usize) {
        if let (Some(factors), Some(orig)) = (&self.long_rope, self.config.long_rope) {
            let (short, long) = &**factors;
            let f = if n_ctx > orig { long } else { short };
            for l in &mut self.config.layers {
                l.rope.freq_factors = Some(f.clone());
            }
        }
    }

    /// The hyperparameters.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// The compute backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Whether the output head shares the token embedding.
    pub fn tied_output(&self) -> bool {
        self.output == self.token_embd
    }

    /// A KV cache for `capacity` positions.
    pub fn new_cache(&self, ty: KvType, capacity: usize) -> Result<Box<dyn KvState>, NnError> {
        let c = &self.config;
        self.backend.new_kv(KvLayout {
            ty,
            n_layer: c.n_layer,
            n_head_kv: c.n_head_kv,
            head_dim: c.head_dim,
            capacity,
        })
    }

    /// Scratch buffers for batches of up to `max_batch` tokens.
    pub fn new_scratch(&self, max_batch: usize) -> Scratch {
        let c = &self.config;
        let b = max_batch.max(1);
        let qw = c.n_head * c.head_dim;
        let kw = c.n_head_kv * c.head_dim;
        Scratch {
            max_batch: b,
            x: vec![0.0; b * c.n_embd],
            xn: vec![0.0; b * c.n_embd.max(qw)],
            q: vec![0.0; b * qw],
            k: vec![0.0; b * kw],
            v: vec![0.0; b * kw],
            att: vec![0.0; b * qw],
            o: vec![0.0; b * c.n_embd],
            gate: vec![0.0; b * c.n_ff],
            up: vec![0.0; b * c.n_ff],
            starts: Vec::new(),
            rope_tab: vec![0.0; b * c.head_dim],
            rope_for: None,
            act: ActScratch::default(),
            logits: vec![0.0; c.n_vocab],
        }
    }

    /// Runs `tokens` at the positions following those in `cache`, appends their keys and values
    /// to it, and returns the logits asked for (borrowed from `scratch`). Batches longer than
    /// the scratch's maximum are split. Token ids are checked and the cache must have room: on
    /// error nothing is appended.
    pub fn forward<'s>(
        &self,
        tokens: &[u32],
        cache: &mut dyn KvState,
        scratch: &'s mut Scratch,
        logits: Logits,
    ) -> Result<&'s [f32], NnError> {
        let c = &self.config;
        if tokens.is_empty() {
            return Err(NnError::InvalidArgument {
                reason: "empty batch of tokens".into(),
            });
        }
        self.check_tokens(tokens)?;
        self.check_cache(cache, tokens.len())?;
        let n_out = match logits {
            Logits::None => 0,
            Logits::Last => c.n_vocab,
            Logits::All => tokens.len() * c.n_vocab,
        };
        if scratch.logits.len() < n_out {
            scratch.logits.resize(n_out, 0.0);
        }
        let n_chunks = tokens.len().div_ceil(scratch.max_batch);
        let mut result = Ok(());
        self.backend.install(&mut || {
            for (ci, chunk) in tokens.chunks(scratch.max_batch).enumerate() {
                let want = match logits {
                    Logits::All => Logits::All,
                    Logits::Last if ci + 1 == n_chunks => Logits::Last,
                    _ => Logits::None,
                };
                let m = chunk.len();
                // llama.cpp runs the last layer's FFN only on the rows whose logits are wanted
                // (its graph selects its output rows there); the row count changes how it
                // groups its prompt gemm, and the other rows' hidden states are not needed.
                let (ffn_from, at) = match want {
                    Logits::None => (m, 0),
                    Logits::Last => (m - 1, 0),
                    Logits::All => (0, ci * scratch.max_batch * c.n_vocab),
                };
                let mut one: [&mut dyn KvState; 1] = [&mut *cache];
                let caches = &mut one[..];
                let seg = [Segment { cache: 0, rows: m }];
                let order = Order::ReferencePrompt;
                result = self
                    .pass(chunk, (caches, &seg), scratch, order, ffn_from)
                    .and_then(|()| self.head(scratch, ffn_from..m, at, order));
                if result.is_err() {
                    return;
                }
            }
        });
        result?;
        Ok(&scratch.logits[..n_out])
    }

    /// Evaluates the rows of several sequences in one pass over the weights, each continuing
    /// its own cache, and returns the logits of the rows `logit_rows` (indices into `tokens`),
    /// `n_vocab` each, in that order. The matrix products are batch-invariant
    /// ([`Backend::linear`]): a sequence's results do not depend on the others in the pass.
    /// `segments` give each sequence's cache and row count, in the order of `tokens`. Errors
    /// (nothing is appended to any cache): rows that do not add up to `tokens` or exceed the
    /// scratch, a segment without rows, a cache index out of range or used twice, a cache of
    /// another model or without room, a token id outside the vocabulary, a logit row out of
    /// range.
    pub fn forward_segments<'s>(
        &self,
        tokens: &[u32],
        caches: &mut [Box<dyn KvState>],
        segments: &[Segment],
        logit_rows: &[usize],
        scratch: &'s mut Scratch,
    ) -> Result<&'s [f32], NnError> {
        let c = &self.config;
        let bad = |reason: String| Err(NnError::InvalidArgument { reason });
        let rows: usize = segments.iter().map(|g| g.rows).sum();
        if tokens.is_empty() || rows != tokens.len() || rows > scratch.max_batch {
            return bad(format!(
                "{} tokens in segments of {rows} rows (at most {} rows a pass)",
                tokens.len(),
                scratch.max_batch
            ));
        }
        self.check_tokens(tokens)?;
        for (i, g) in segments.iter().enumerate() {
            if segments[..i].iter().any(|h| h.cache == g.cache) {
                return bad(format!("cache {} appears twice in one pass", g.cache));
            }
            let Some(cache) = caches.get(g.cache) else {
                return bad(format!("cache {} of {}", g.cache, caches.len()));
            };
            if g.rows == 0 {
                return bad(format!("segment {i} has no rows"));
            }
            self.check_cache(&**cache, g.rows)?;
        }
        if let Some(&r) = logit_rows.iter().find(|&&r| r >= rows) {
            return bad(format!("logit row {r} of a pass of {rows}"));
        }
        let n_out = logit_rows.len() * c.n_vocab;
        if scratch.logits.len() < n_out {
            scratch.logits.resize(n_out, 0.0);
        }
        let mut refs: Vec<&mut (dyn KvState + 'static)> =
            caches.iter_mut().map(|c| &mut **c).collect();
        let mut result = Ok(());
        self.backend.install(&mut || {
            let order = Order::BatchInvariant;
            result = self
                .pass(tokens, (&mut refs, segments), scratch, order, 0)
                .and_then(|()| self.head(scratch, logit_rows.iter().copied(), 0, order));
        });
        result?;
        Ok(&scratch.logits[..n_out])
    }

    /// Every token id lies inside the vocabulary.
    fn check_tokens(&self, tokens: &[u32]) -> Result<(), NnError> {
        let vocab = self.config.n_vocab;
        match tokens.iter().find(|&&t| t as usize >= vocab) {
            Some(&id) => Err(NnError::TokenOutOfRange { id, vocab }),
            None => Ok(()),
        }
    }

    /// `cache` was made for this model and has room for `rows` more positions.
    fn check_cache(&self, cache: &dyn KvState, rows: usize) -> Result<(), NnError> {
        let c = &self.config;
        if !cache.shape_matches(c.n_layer, c.n_head_kv, c.head_dim) {
            return Err(NnError::InvalidArgument {
                reason: "the KV cache was made for another model".into(),
            });
        }
        cache.check_room(rows)
    }

    /// `outs[j] = ws[j] · x` for the rows of `rows`: together through one
    /// [`Backend::linear`] call when the matrices share their width and dot-product type (Q,
    /// K and V; gate and up), else one call each.
    fn product(
        &self,
        ws: &[&Weight],
        rows: Rows<'_>,
        outs: &mut [&mut [f32]],
        act: &mut ActScratch,
    ) -> Result<(), NnError> {
        let same = ws.windows(2).all(|p| {
            let (a, b) = (&p[0].info, &p[1].info);
            a.cols == b.cols && a.ty.vec_dot_type() == b.ty.vec_dot_type()
        });
        if same {
            return self.backend.linear(ws, rows, outs, act);
        }
        for (w, out) in ws.iter().zip(outs.iter_mut()) {
            self.backend
                .linear(std::slice::from_ref(w), rows, &mut [&mut **out], act)?;
        }
        Ok(())
    }

    /// The layers of one pass (inputs checked by the caller): token embeddings, every block
    /// (each segment's keys and values appended to its cache, attention per segment), the
    /// caches advanced. The last layer's FFN runs on rows `ffn_from..` only; the products
    /// run in `order`. The final hidden states stay in `s.x`.
    fn pass<'c>(
        &self,
        tokens: &[u32],
        (caches, segments): (&mut [&mut (dyn KvState + 'c)], &[Segment]),
        s: &mut Scratch,
        order: Order,
        ffn_from: usize,
    ) -> Result<(), NnError> {
        let c = &self.config;
        let be = &*self.backend;
        let linear = |w: &Weight, x: &[f32], m: usize, out: &mut [f32], act: &mut ActScratch| {
            self.product(&[w], Rows { x, m, order }, &mut [out], act)
        };
        let m = tokens.len();
        let d = c.n_embd;
        let hd = c.head_dim;
        let (qw, kw) = (c.n_head * hd, c.n_head_kv * hd);

        // Token embeddings: one row per token.
        be.get_rows(&self.token_embd, tokens, &mut s.x[..m * d])?;
        if let Some(scale) = c.embed_scale {
            s.x[..m * d].iter_mut().for_each(|v| *v *= scale);
        }

        // Each segment's cache length before the pass (its first position), and whether the
        // pass is a decode step of several sequences (one row each).
        s.starts.clear();
        s.starts.extend(
            segments
                .iter()
                .map(|g| caches.get(g.cache).map_or(0, |k| k.len())),
        );
        let one_row_each = segments.len() > 1 && segments.iter().all(|g| g.rows == 1);
        s.rope_for = None;
        for (il, (lw, spec)) in self.layers.iter().zip(&c.layers).enumerate() {
            // Attention.
            each_row(&s.x[..m * d], &mut s.xn[..m * d], d, d, |xt, nt| {
                rms_norm(xt, &lw.attn_norm, c.norm_eps, nt)
            });
            let xn = &s.xn[..m * d];
            self.product(
                &[&lw.wq, &lw.wk, &lw.wv],
                Rows { x: xn, m, order },
                &mut [&mut s.q[..m * qw], &mut s.k[..m * kw], &mut s.v[..m * kw]],
                &mut s.act,
            )?;
            // ggml adds a bias to each row of the product (`ggml_add`).
            let [bq, bk, bv] = &lw.qkv_bias;
            for (out, bias) in [
                (&mut s.q[..m * qw], bq),
                (&mut s.k[..m * kw], bk),
                (&mut s.v[..m * kw], bv),
            ] {
                if let Some(bias) = bias {
                    add_bias(out, bias);
                }
            }
            let shape = AttentionShape {
                n_head: c.n_head,
                n_head_kv: c.n_head_kv,
                head_dim: hd,
                kq_scale: c.kq_scale,
                window: spec.window,
            };
            // The rows' rotation tables, made once per pass for every run of layers with the
            // same RoPE (the positions do not change between layers).
            if s.rope_for
                .is_none_or(|p| c.layers.get(p).map(|l| &l.rope) != Some(&spec.rope))
            {
                let mut tabs = s.rope_tab.chunks_exact_mut(hd);
                for (g, &start) in segments.iter().zip(&s.starts) {
                    for (t, tab) in (0..g.rows).zip(tabs.by_ref()) {
                        spec.rope.fill_cache(start + t, tab);
                    }
                }
                s.rope_for = Some(il);
            }
            let mut r0 = 0usize;
            for g in segments {
                let cache = caches
                    .get_mut(g.cache)
                    .ok_or_else(|| NnError::InvalidArgument {
                        reason: format!("no cache {}", g.cache),
                    })?;
                let start = cache.len();
                // Per-head norms and rotary embedding of the segment's rows (over the pool's
                // threads when there are several), then their keys and values into the cache.
                let rows = r0..r0 + g.rows;
                let tabs = &s.rope_tab[rows.start * hd..rows.end * hd];
                let position = |t: usize, qt: &mut [f32], kt: &mut [f32]| {
                    let rc = &tabs[t * hd..(t + 1) * hd];
                    for qh in qt.chunks_exact_mut(hd) {
                        if let Some(w) = &lw.q_norm {
                            rms_norm_inplace(qh, w, c.norm_eps);
                        }
                        if spec.use_rope {
                            spec.rope.apply(qh, rc);
                        }
                        if c.q_scale != 1.0 {
                            qh.iter_mut().for_each(|v| *v *= c.q_scale);
                        }
                        if let Some(temp) = &c.attn_temp {
                            let f = temp.at(start + t);
                            qh.iter_mut().for_each(|v| *v *= f);
                        }
                    }
                    for kh in kt.chunks_exact_mut(hd) {
                        if let Some(w) = &lw.k_norm {
                            rms_norm_inplace(kh, w, c.norm_eps);
                        }
                        if spec.use_rope {
                            spec.rope.apply(kh, rc);
                        }
                    }
                };
                let (qs, ks) = (
                    &mut s.q[rows.start * qw..rows.end * qw],
                    &mut s.k[rows.start * kw..rows.end * kw],
                );
                if g.rows * qw >= PAR_MIN_ELEMS {
                    qs.par_chunks_exact_mut(qw)
                        .zip(ks.par_chunks_exact_mut(kw))
                        .enumerate()
                        .for_each(|(t, (qt, kt))| position(t, qt, kt));
                } else {
                    for (t, (qt, kt)) in qs
                        .chunks_exact_mut(qw)
                        .zip(ks.chunks_exact_mut(kw))
                        .enumerate()
                    {
                        position(t, qt, kt);
                    }
                }
                for (t, r) in rows.enumerate() {
                    be.store_kv(
                        &mut **cache,
                        il,
                        start + t,
                        &s.k[r * kw..(r + 1) * kw],
                        &s.v[r * kw..(r + 1) * kw],
                    )?;
                }
                if !one_row_each {
                    // This segment's attention (a decode step of several sequences runs them
                    // all together below).
                    let rows = r0 * qw..(r0 + g.rows) * qw;
                    let queries = Queries {
                        q: &s.q[rows.clone()],
                        cache: &**cache,
                        layer: il,
                        pos: start..start + g.rows,
                    };
                    be.attention(&shape, queries, Spread::Pool, &mut s.att[rows])?;
                }
                r0 += g.rows;
            }
            if one_row_each {
                // A decode step of several sequences: one parallel loop over them instead of a
                // hand-out per sequence (each sequence's arithmetic is the same either way).
                let (caches, starts, q) = (&*caches, &s.starts, &s.q);
                s.att[..m * qw]
                    .par_chunks_mut(qw)
                    .zip(segments.par_iter().zip(starts.par_iter()))
                    .enumerate()
                    .try_for_each(|(r, (out, (g, &start)))| {
                        let cache =
                            caches
                                .get(g.cache)
                                .ok_or_else(|| NnError::InvalidArgument {
                                    reason: format!("no cache {}", g.cache),
                                })?;
                        let queries = Queries {
                            q: &q[r * qw..(r + 1) * qw],
                            cache: &**cache,
                            layer: il,
                            pos: start..start + 1,
                        };
                        be.attention(&shape, queries, Spread::CallingThread, out)
                    })?;
            }
            linear(&lw.wo, &s.att[..m * qw], m, &mut s.o[..m * d], &mut s.act)?;
            add_residual(
                &mut s.x[..m * d],
                &mut s.o[..m * d],
                lw.post_attn_norm.as_deref(),
                d,
                c.norm_eps,
            );

            // Feed-forward (in the last layer, of rows `ffn_from..` only).
            let r0 = if il + 1 == self.layers.len() {
                ffn_from.min(m)
            } else {
                0
            };
            if r0 == m {
                continue;
            }
            let (x_rows, m) = (&mut s.x[r0 * d..m * d], m - r0);
            each_row(x_rows, &mut s.xn[..m * d], d, d, |xt, nt| {
                rms_norm(xt, &lw.ffn_norm, c.norm_eps, nt)
            });
            let xn = &s.xn[..m * d];
            let f = c.n_ff;
            self.product(
                &[&lw.gate, &lw.up],
                Rows { x: xn, m, order },
                &mut [&mut s.gate[..m * f], &mut s.up[..m * f]],
                &mut s.act,
            )?;
            let act = c.activation;
            each_row_from(
                GLU_PAR_MIN_ELEMS,
                &s.up[..m * f],
                &mut s.gate[..m * f],
                f,
                f,
                |ut, gt| act.glu(gt, ut),
            );
            linear(&lw.down, &s.gate[..m * f], m, &mut s.o[..m * d], &mut s.act)?;
            add_residual(
                x_rows,
                &mut s.o[..m * d],
                lw.post_ffn_norm.as_deref(),
                d,
                c.norm_eps,
            );
        }
        for g in segments {
            if let Some(cache) = caches.get_mut(g.cache) {
                cache.advance(g.rows);
            }
        }
        Ok(())
    }

    /// The output head over the final hidden states of `rows` (rows of the pass just run),
    /// written to `s.logits` from `at`, one row of `n_vocab` each, in the order of `rows`.
    fn head(
        &self,
        s: &mut Scratch,
        rows: impl ExactSizeIterator<Item = usize>,
        at: usize,
        order: Order,
    ) -> Result<(), NnError> {
        let c = &self.config;
        let (d, v, n) = (c.n_embd, c.n_vocab, rows.len());
        if n == 0 {
            return Ok(());
        }
        for (r, nt) in rows.zip(s.xn.chunks_exact_mut(d)) {
            let xt =
                s.x.get(r * d..(r + 1) * d)
                    .ok_or_else(|| NnError::InvalidArgument {
                        reason: format!("no hidden state for row {r}"),
                    })?;
            rms_norm(xt, &self.output_norm, c.norm_eps, nt);
        }
        let out = s
            .logits
            .get_mut(at..at + n * v)
            .ok_or_else(|| NnError::InvalidArgument {
                reason: "logits buffer too small".into(),
            })?;
        let x = &s.xn[..n * d];
        self.product(
            &[&self.output],
            Rows { x, m: n, order },
            &mut [out],
            &mut s.act,
        )?;
        if let Some(cap) = c.final_softcap {
            out.iter_mut().for_each(|l| *l = (*l / cap).tanh() * cap);
        }
        Ok(())
    }
}

/// `x += norm(o)` (or `x += o` without a post-norm), row by row.
/// Adds `bias` to every row of `rows` (rows of `bias.len()` values).
fn add_bias(rows: &mut [f32], bias: &[f32]) {
    for row in rows.chunks_exact_mut(bias.len()) {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
}

fn add_residual(x: &mut [f32], o: &mut [f32], post_norm: Option<&[f32]>, d: usize, eps: f32) {
    each_row_mut(x, o, d, |xt, ot| {
        if let Some(w) = post_norm {
            rms_norm_inplace(ot, w, eps);
        }
        for (a, b) in xt.iter_mut().zip(ot.iter()) {
            *a += *b;
        }
    });
}

/// Below this many elements a row-wise operation stays on one thread: handing it out costs
/// more than it saves (decode steps of a few sequences).
const PAR_MIN_ELEMS: usize = 16 * 1024;

/// The gated activation (an `exp` per element) is worth a hand-out from fewer elements than
/// [`PAR_MIN_ELEMS`]: a decode step of eight sequences already gains from it.
const GLU_PAR_MIN_ELEMS: usize = 4 * 1024;

/// `f(row of a, row of b)` for the rows of `a` (width `da`) and `b` (width `db`) side by side;
/// over the threads of the pool the pass runs in when there are several rows and enough work
/// (each row's arithmetic is the same either way).
fn each_row(
    a: &[f32],
    b: &mut [f32],
    da: usize,
    db: usize,
    f: impl Fn(&[f32], &mut [f32]) + Send + Sync,
) {
    each_row_from(PAR_MIN_ELEMS, a, b, da, db, f)
}

/// [`each_row`], handed out from `min` elements of `b`.
fn each_row_from(
    min: usize,
    a: &[f32],
    b: &mut [f32],
    da: usize,
    db: usize,
    f: impl Fn(&[f32], &mut [f32]) + Send + Sync,
) {
    if b.len() > db && b.len() >= min {
        a.par_chunks_exact(da)
            .zip(b.par_chunks_exact_mut(db))
            .for_each(|(x, y)| f(x, y));
    } else {
        a.chunks_exact(da)
            .zip(b.chunks_exact_mut(db))
            .for_each(|(x, y)| f(x, y));
    }
}

/// [`each_row`] with both sides written, of the same width `d`.
fn each_row_mut(
    a: &mut [f32],
    b: &mut [f32],
    d: usize,
    f: impl Fn(&mut [f32], &mut [f32]) + Send + Sync,
) {
    if b.len() > d && b.len() >= PAR_MIN_ELEMS {
        a.par_chunks_exact_mut(d)
            .zip(b.par_chunks_exact_mut(d))
            .for_each(|(x, y)| f(x, y));
    } else {
        a.chunks_exact_mut(d)
            .zip(b.chunks_exact_mut(d))
            .for_each(|(x, y)| f(x, y));
    }
}
