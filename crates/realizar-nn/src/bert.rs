//! The BERT encoder (Devlin et al. 2018, "BERT: Pre-training of Deep Bidirectional Transformers")
//! as Hugging Face `transformers` lays out its `BertModel` checkpoints, plus the pooling and
//! normalisation modules of sentence-transformers.
//!
//! The forward pass follows `transformers/models/bert/modeling_bert.py`: the sum of word,
//! absolute position and token-type embeddings, a LayerNorm, then post-norm encoder layers
//! (self-attention, output dense, residual and LayerNorm; intermediate dense and erf GELU,
//! output dense, residual and LayerNorm). Pooling follows `sentence_transformers/models/Pooling.py`
//! and normalisation `sentence_transformers/models/Normalize.py`.
//!
//! Weights come from any [`WeightSource`] (the runtime adapts safetensors files to it) and are
//! kept as f32; every matrix product runs in f32, split into rayon tasks by row block and column
//! range, with auto-vectorised dot products (no `unsafe`). LayerNorm statistics, pooling and
//! normalisation accumulate in f64; GELU uses an erf accurate to about 1e-16. Batches are packed
//! without padding: the dense layers see all tokens of all sequences as one matrix, and
//! attention stays inside each sequence (an attention mask, when given, hides keys and is used
//! by pooling; it is never derived from token ids).
//!
//! ```
//! use realizar_nn::bert::{BertConfig, BertInput, BertModel, F32Tensor, HiddenAct, WeightSource};
//! use std::collections::HashMap;
//!
//! // A tiny random-free model: every weight 0.01, every bias 0, LayerNorm weight 1.
//! let config = BertConfig {
//!     vocab_size: 10,
//!     hidden_size: 4,
//!     num_hidden_layers: 1,
//!     num_attention_heads: 2,
//!     intermediate_size: 8,
//!     max_position_embeddings: 16,
//!     type_vocab_size: 2,
//!     layer_norm_eps: 1e-12,
//!     hidden_act: HiddenAct::Gelu,
//! };
//! let mut tensors = HashMap::new();
//! for (name, shape) in config.expected_tensors() {
//!     let n: usize = shape.iter().product();
//!     let fill = if name.ends_with("LayerNorm.weight") { 1.0 } else { 0.01 };
//!     tensors.insert(name, F32Tensor { shape, data: vec![fill; n] });
//! }
//! let backend = std::sync::Arc::new(realizar_nn::CpuBackend::new(1).unwrap());
//! let model = BertModel::load(config, &tensors, backend).unwrap();
//! let out = model.encode(&[BertInput::new(&[1, 2, 3])]).unwrap();
//! assert_eq!(out[0].len(), 3 * 4);
//! ```

use core::fmt;
use std::collections::HashMap;
use std::error::Error;

use rayon::prelude::*;
use realizar_quant::QuantType;
use std::sync::Arc;

use crate::backend::{
    ActScratch, AttentionShape, Backend, EncoderSeq, Order, QTensor, Rows, Weight,
};
use crate::decoder::WeightBytes;
use crate::layers::layer_norm_rows;
pub use crate::layers::{erf, gelu_erf};
use crate::NnError;

/// The activation of the intermediate (feed-forward) layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HiddenAct {
    /// The exact GELU, `x * (1 + erf(x / sqrt 2)) / 2` (`hidden_act: "gelu"`).
    Gelu,
}

impl HiddenAct {
    /// Parses a Hugging Face `hidden_act` value; only `"gelu"` (the erf form) is supported.
    pub fn from_hf(name: &str) -> Result<HiddenAct, BertError> {
        match name {
            "gelu" => Ok(HiddenAct::Gelu),
            other => Err(BertError::InvalidConfig {
                key: "hidden_act",
                reason: format!("unsupported activation {other:?} (only \"gelu\" is supported)"),
            }),
        }
    }
}

/// The hyperparameters of a BERT encoder (the fields of a Hugging Face `config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    /// Rows of the word embedding (`vocab_size`).
    pub vocab_size: usize,
    /// Width of the hidden states (`hidden_size`).
    pub hidden_size: usize,
    /// Number of encoder layers (`num_hidden_layers`).
    pub num_hidden_layers: usize,
    /// Attention heads per layer (`num_attention_heads`); must divide `hidden_size`.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer (`intermediate_size`).
    pub intermediate_size: usize,
    /// Rows of the absolute position embedding: the longest input (`max_position_embeddings`).
    pub max_position_embeddings: usize,
    /// Rows of the token-type embedding (`type_vocab_size`).
    pub type_vocab_size: usize,
    /// The epsilon of every LayerNorm (`layer_norm_eps`).
    pub layer_norm_eps: f64,
    /// The feed-forward activation (`hidden_act`).
    pub hidden_act: HiddenAct,
}

impl BertConfig {
    /// Checks that the sizes are positive and consistent; the error names the offending key.
    pub fn validate(&self) -> Result<(), BertError> {
        let positive = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(BertError::InvalidConfig {
                    key,
                    reason: "must be positive".into(),
                });
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(BertError::InvalidConfig {
                key: "num_attention_heads",
                reason: format!(
                    "{} heads do not divide hidden_size {}",
                    self.num_attention_heads, self.hidden_size
                ),
            });
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(BertError::InvalidConfig {
                key: "layer_norm_eps",
                reason: format!(
                    "must be a positive finite number, found {}",
                    self.layer_norm_eps
                ),
            });
        }
        Ok(())
    }

    /// The width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Every tensor the encoder reads, with its shape (PyTorch order: a linear weight is
    /// `[out, in]`), named as in a Hugging Face `BertModel` checkpoint without the `bert.` prefix.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let h = self.hidden_size;
        let i = self.intermediate_size;
        let mut out = vec![
            (
                "embeddings.word_embeddings.weight".to_string(),
                vec![self.vocab_size, h],
            ),
            (
                "embeddings.position_embeddings.weight".to_string(),
                vec![self.max_position_embeddings, h],
            ),
            (
                "embeddings.token_type_embeddings.weight".to_string(),
                vec![self.type_vocab_size, h],
            ),
            ("embeddings.LayerNorm.weight".to_string(), vec![h]),
            ("embeddings.LayerNorm.bias".to_string(), vec![h]),
        ];
        for l in 0..self.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            for (suffix, shape) in [
                ("attention.self.query.weight", vec![h, h]),
                ("attention.self.query.bias", vec![h]),
                ("attention.self.key.weight", vec![h, h]),
                ("attention.self.key.bias", vec![h]),
                ("attention.self.value.weight", vec![h, h]),
                ("attention.self.value.bias", vec![h]),
                ("attention.output.dense.weight", vec![h, h]),
                ("attention.output.dense.bias", vec![h]),
                ("attention.output.LayerNorm.weight", vec![h]),
                ("attention.output.LayerNorm.bias", vec![h]),
                ("intermediate.dense.weight", vec![i, h]),
                ("intermediate.dense.bias", vec![i]),
                ("output.dense.weight", vec![h, i]),
                ("output.dense.bias", vec![h]),
                ("output.LayerNorm.weight", vec![h]),
                ("output.LayerNorm.bias", vec![h]),
            ] {
                out.push((format!("{p}.{suffix}"), shape));
            }
        }
        out
    }
}

/// A tensor converted to f32, row-major, with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct F32Tensor {
    /// The dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The elements, row-major.
    pub data: Vec<f32>,
}

/// The error a [`WeightSource`] reports when a tensor exists but cannot be read.
pub type SourceError = Box<dyn Error + Send + Sync + 'static>;

/// Where the encoder's weights come from (a safetensors file, a test map).
pub trait WeightSource {
    /// Whether a tensor of this name exists.
    fn contains(&self, name: &str) -> bool;

    /// The tensor converted to f32; `Ok(None)` when there is no tensor of this name.
    fn load_f32(&self, name: &str) -> Result<Option<F32Tensor>, SourceError>;
}

impl WeightSource for HashMap<String, F32Tensor> {
    fn contains(&self, name: &str) -> bool {
        self.contains_key(name)
    }

    fn load_f32(&self, name: &str) -> Result<Option<F32Tensor>, SourceError> {
        Ok(self.get(name).cloned())
    }
}

/// What went wrong while loading or running a BERT encoder.
#[derive(Debug)]
#[non_exhaustive]
pub enum BertError {
    /// A hyperparameter is missing, zero or inconsistent.
    InvalidConfig {
        /// The `config.json` key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The checkpoint lacks a tensor the encoder needs.
    MissingTensor {
        /// The tensor name (with the checkpoint's prefix, if any).
        name: String,
    },
    /// A tensor's shape differs from what the configuration implies.
    ShapeMismatch {
        /// The tensor name.
        name: String,
        /// The shape the configuration implies.
        expected: Vec<usize>,
        /// The shape in the checkpoint.
        found: Vec<usize>,
    },
    /// A tensor holds a different number of elements than its shape says.
    DataLength {
        /// The tensor name.
        name: String,
        /// Elements its shape implies.
        expected: usize,
        /// Elements it holds.
        found: usize,
    },
    /// The compute backend refused an operation (a weight upload, a product, attention).
    Backend(Box<NnError>),
    /// The weight source failed to read a tensor.
    Source {
        /// The tensor name.
        name: String,
        /// The source's error.
        source: SourceError,
    },
    /// An input sequence has no tokens.
    EmptySequence {
        /// Which input of the batch.
        sequence: usize,
    },
    /// An input sequence is longer than `max_position_embeddings`.
    SequenceTooLong {
        /// Which input of the batch.
        sequence: usize,
        /// Its length.
        len: usize,
        /// The longest the model accepts.
        max: usize,
    },
    /// A token id is outside the vocabulary.
    TokenOutOfRange {
        /// Which input of the batch.
        sequence: usize,
        /// The position in that input.
        position: usize,
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// A token-type id is outside `0..type_vocab_size`.
    TypeIdOutOfRange {
        /// Which input of the batch.
        sequence: usize,
        /// The position in that input.
        position: usize,
        /// The id.
        id: u32,
        /// `type_vocab_size`.
        type_vocab_size: usize,
    },
    /// The token-type ids or attention mask of an input differ in length from its ids.
    LengthMismatch {
        /// Which input of the batch.
        sequence: usize,
        /// `"token_type_ids"` or `"attention_mask"`.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The number of ids.
        expected: usize,
    },
    /// An attention mask holds a value other than 0 or 1, or no 1 at all.
    InvalidMask {
        /// Which input of the batch.
        sequence: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A hidden state given to pooling does not match the hidden size or the mask.
    PoolingShape {
        /// Elements of the hidden state.
        len: usize,
        /// The hidden size.
        hidden_size: usize,
    },
    /// A pooling configuration selects no mode.
    NoPoolingMode,
}

impl fmt::Display for BertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BertError::InvalidConfig { key, reason } => {
                write!(f, "invalid BERT config: `{key}` {reason}")
            }
            BertError::MissingTensor { name } => write!(f, "missing tensor `{name}`"),
            BertError::ShapeMismatch {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor `{name}` has shape {found:?}, the config implies {expected:?}"
            ),
            BertError::DataLength {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor `{name}` holds {found} elements, its shape implies {expected}"
            ),
            BertError::Source { name, .. } => write!(f, "cannot read tensor `{name}`"),
            BertError::Backend(e) => write!(f, "backend: {e}"),
            BertError::EmptySequence { sequence } => {
                write!(f, "input {sequence} has no tokens")
            }
            BertError::SequenceTooLong { sequence, len, max } => write!(
                f,
                "input {sequence} has {len} tokens, more than max_position_embeddings {max}"
            ),
            BertError::TokenOutOfRange {
                sequence,
                position,
                id,
                vocab_size,
            } => write!(
                f,
                "input {sequence} position {position}: token id {id} is outside the vocabulary of {vocab_size}"
            ),
            BertError::TypeIdOutOfRange {
                sequence,
                position,
                id,
                type_vocab_size,
            } => write!(
                f,
                "input {sequence} position {position}: token type id {id} is not below type_vocab_size {type_vocab_size}"
            ),
            BertError::LengthMismatch {
                sequence,
                what,
                len,
                expected,
            } => write!(
                f,
                "input {sequence}: {what} has {len} entries for {expected} token ids"
            ),
            BertError::InvalidMask { sequence, reason } => {
                write!(f, "input {sequence}: attention mask {reason}")
            }
            BertError::PoolingShape { len, hidden_size } => write!(
                f,
                "cannot pool a hidden state of {len} elements with hidden size {hidden_size}"
            ),
            BertError::NoPoolingMode => write!(f, "the pooling configuration selects no mode"),
        }
    }
}

impl Error for BertError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            BertError::Source { source, .. } => Some(source.as_ref()),
            BertError::Backend(e) => Some(&**e),
            _ => None,
        }
    }
}

/// One tokenized input of the encoder.
#[derive(Debug, Clone, Copy)]
pub struct BertInput<'a> {
    /// The token ids, `[CLS]` and `[SEP]` included.
    pub ids: &'a [u32],
    /// The token-type (segment) ids; `None` means all zero.
    pub type_ids: Option<&'a [u32]>,
    /// The attention mask (1 = attend, 0 = ignore, as in Hugging Face); `None` means all ones.
    /// Masked tokens are ignored as keys and by pooling.
    pub attention_mask: Option<&'a [u32]>,
}

impl<'a> BertInput<'a> {
    /// An input with all-zero token types and an all-ones attention mask.
    pub fn new(ids: &'a [u32]) -> BertInput<'a> {
        BertInput {
            ids,
            type_ids: None,
            attention_mask: None,
        }
    }
}

/// A dense layer `y = x W^T + b`, with `W` stored `[out, in]` row-major.
#[derive(Debug, Clone)]
struct Linear {
    /// `[out_dim, in_dim]`, f32, held by the backend.
    weight: Weight,
    bias: Vec<f32>,
    out_dim: usize,
}

/// An f32 tensor's elements as the bytes a backend uploads.
struct F32Store(Vec<f32>);

impl AsRef<[u8]> for F32Store {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    /// Query, key and value stacked: `[3 * hidden, hidden]`.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
}

/// A loaded BERT encoder.
#[derive(Debug, Clone)]
pub struct BertModel {
    config: BertConfig,
    backend: Arc<dyn Backend>,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_norm: LayerNorm,
    layers: Vec<EncoderLayer>,
}

/// Reads tensors from a source, adding the checkpoint's name prefix and checking shapes.
struct Loader<'a> {
    source: &'a dyn WeightSource,
    prefix: &'static str,
    backend: &'a dyn Backend,
}

impl Loader<'_> {
    fn get(&self, name: &str, expected: &[usize]) -> Result<Vec<f32>, BertError> {
        let full = format!("{}{name}", self.prefix);
        let tensor = match self.source.load_f32(&full) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(BertError::MissingTensor { name: full }),
            Err(source) => return Err(BertError::Source { name: full, source }),
        };
        if tensor.shape != expected {
            return Err(BertError::ShapeMismatch {
                name: full,
                expected: expected.to_vec(),
                found: tensor.shape,
            });
        }
        let n = expected
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| BertError::ShapeMismatch {
                name: full.clone(),
                expected: expected.to_vec(),
                found: tensor.shape.clone(),
            })?;
        if tensor.data.len() != n {
            return Err(BertError::DataLength {
                name: full,
                expected: n,
                found: tensor.data.len(),
            });
        }
        Ok(tensor.data)
    }

    fn linear(&self, name: &str, out_dim: usize, in_dim: usize) -> Result<Linear, BertError> {
        let data = self.get(&format!("{name}.weight"), &[out_dim, in_dim])?;
        Ok(Linear {
            weight: self.upload(name, data, out_dim, in_dim)?,
            bias: self.get(&format!("{name}.bias"), &[out_dim])?,
            out_dim,
        })
    }

    /// Gives an `[out_dim, in_dim]` f32 matrix to the backend.
    fn upload(
        &self,
        name: &str,
        data: Vec<f32>,
        out_dim: usize,
        in_dim: usize,
    ) -> Result<Weight, BertError> {
        let info = QTensor {
            name: format!("{}{name}.weight", self.prefix),
            ty: QuantType::F32,
            rows: out_dim,
            cols: in_dim,
            offset: 0,
            len: data.len() * 4,
        };
        let store: WeightBytes = Arc::new(F32Store(data));
        self.backend
            .upload(info, &store)
            .map_err(|e| BertError::Backend(Box::new(e)))
    }

    fn norm(&self, name: &str, dim: usize) -> Result<LayerNorm, BertError> {
        Ok(LayerNorm {
            weight: self.get(&format!("{name}.weight"), &[dim])?,
            bias: self.get(&format!("{name}.bias"), &[dim])?,
        })
    }
}

impl BertModel {
    /// Loads the encoder's weights from `source`, checking every shape against `config`.
    ///
    /// Tensor names are those of a Hugging Face `BertModel` (`embeddings.word_embeddings.weight`,
    /// `encoder.layer.0.attention.self.query.weight`, ...); a checkpoint of a model with heads
    /// (`BertForMaskedLM` and the like) stores them under `bert.`, which is detected.
    pub fn load(
        config: BertConfig,
        source: &dyn WeightSource,
        backend: Arc<dyn Backend>,
    ) -> Result<BertModel, BertError> {
        config.validate()?;
        let probe = "embeddings.word_embeddings.weight";
        let prefix = if !source.contains(probe) && source.contains(&format!("bert.{probe}")) {
            "bert."
        } else {
            ""
        };
        let loader = Loader {
            source,
            prefix,
            backend: &*backend,
        };
        let h = config.hidden_size;
        let i = config.intermediate_size;
        let word = loader.get(probe, &[config.vocab_size, h])?;
        let position = loader.get(
            "embeddings.position_embeddings.weight",
            &[config.max_position_embeddings, h],
        )?;
        let token_type = loader.get(
            "embeddings.token_type_embeddings.weight",
            &[config.type_vocab_size, h],
        )?;
        let emb_norm = loader.norm("embeddings.LayerNorm", h)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            // Query, key and value stacked into one `[3 * hidden, hidden]` product.
            let (mut w, mut b) = (Vec::with_capacity(3 * h * h), Vec::with_capacity(3 * h));
            for part in ["query", "key", "value"] {
                let name = format!("{p}.attention.self.{part}");
                w.extend(loader.get(&format!("{name}.weight"), &[h, h])?);
                b.extend(loader.get(&format!("{name}.bias"), &[h])?);
            }
            let qkv = Linear {
                weight: loader.upload(&format!("{p}.attention.self.qkv"), w, 3 * h, h)?,
                bias: b,
                out_dim: 3 * h,
            };
            layers.push(EncoderLayer {
                qkv,
                attn_out: loader.linear(&format!("{p}.attention.output.dense"), h, h)?,
                attn_norm: loader.norm(&format!("{p}.attention.output.LayerNorm"), h)?,
                intermediate: loader.linear(&format!("{p}.intermediate.dense"), i, h)?,
                output: loader.linear(&format!("{p}.output.dense"), h, i)?,
                out_norm: loader.norm(&format!("{p}.output.LayerNorm"), h)?,
            });
        }
        Ok(BertModel {
            config,
            backend,
            word,
            position,
            token_type,
            emb_norm,
            layers,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// The last hidden state of each input: `len × hidden_size` values, row-major.
    pub fn encode(&self, inputs: &[BertInput<'_>]) -> Result<Vec<Vec<f32>>, BertError> {
        let mut states = self.run(inputs, false)?;
        Ok(states
            .pop()
            .map(|packed| self.unpack(inputs, &packed))
            .unwrap_or_default())
    }

    /// The hidden states of one input after the embeddings (index 0) and after each encoder
    /// layer (index `l + 1`), each `len × hidden_size` values, row-major (the
    /// `output_hidden_states` of Hugging Face).
    pub fn encode_all_layers(&self, input: &BertInput<'_>) -> Result<Vec<Vec<f32>>, BertError> {
        self.run(std::slice::from_ref(input), true)
    }

    fn unpack(&self, inputs: &[BertInput<'_>], packed: &[f32]) -> Vec<Vec<f32>> {
        let h = self.config.hidden_size;
        let mut start = 0;
        inputs
            .iter()
            .map(|input| {
                let end = start + input.ids.len() * h;
                let rows = packed.get(start..end).unwrap_or_default().to_vec();
                start = end;
                rows
            })
            .collect()
    }

    /// Checks the inputs and returns, for each packed token row, the range of rows of its
    /// sequence, plus the key mask of every row.
    fn check_inputs(&self, inputs: &[BertInput<'_>]) -> Result<Vec<Span>, BertError> {
        let c = &self.config;
        let mut spans = Vec::with_capacity(inputs.len());
        let mut start = 0usize;
        for (s, input) in inputs.iter().enumerate() {
            let len = input.ids.len();
            if len == 0 {
                return Err(BertError::EmptySequence { sequence: s });
            }
            if len > c.max_position_embeddings {
                return Err(BertError::SequenceTooLong {
                    sequence: s,
                    len,
                    max: c.max_position_embeddings,
                });
            }
            for (position, &id) in input.ids.iter().enumerate() {
                if id as usize >= c.vocab_size {
                    return Err(BertError::TokenOutOfRange {
                        sequence: s,
                        position,
                        id,
                        vocab_size: c.vocab_size,
                    });
                }
            }
            if let Some(types) = input.type_ids {
                if types.len() != len {
                    return Err(BertError::LengthMismatch {
                        sequence: s,
                        what: "token_type_ids",
                        len: types.len(),
                        expected: len,
                    });
                }
                for (position, &id) in types.iter().enumerate() {
                    if id as usize >= c.type_vocab_size {
                        return Err(BertError::TypeIdOutOfRange {
                            sequence: s,
                            position,
                            id,
                            type_vocab_size: c.type_vocab_size,
                        });
                    }
                }
            }
            if let Some(mask) = input.attention_mask {
                check_mask(s, mask, len)?;
            }
            spans.push(Span { start, len });
            start += len;
        }
        Ok(spans)
    }

    /// Runs the encoder over the packed batch; returns the packed states after every layer when
    /// `all_layers`, else only the last.
    fn run(&self, inputs: &[BertInput<'_>], all_layers: bool) -> Result<Vec<Vec<f32>>, BertError> {
        let spans = self.check_inputs(inputs)?;
        let c = &self.config;
        let h = c.hidden_size;
        let rows: usize = inputs.iter().map(|i| i.ids.len()).sum();
        if rows == 0 {
            return Ok(Vec::new());
        }

        // Embeddings: word + position + token type, then LayerNorm.
        let mut x = vec![0f32; rows * h];
        let mut row_chunks = x.chunks_exact_mut(h);
        for input in inputs {
            for (pos, &id) in input.ids.iter().enumerate() {
                let ty = input
                    .type_ids
                    .and_then(|t| t.get(pos))
                    .map_or(0, |&t| t as usize);
                let w = row(&self.word, id as usize, h);
                let p = row(&self.position, pos, h);
                let t = row(&self.token_type, ty, h);
                if let Some(out) = row_chunks.next() {
                    for (((o, &a), &b), &d) in out.iter_mut().zip(w).zip(p).zip(t) {
                        *o = a + b + d;
                    }
                }
            }
        }
        layer_norm_rows(
            &mut x,
            h,
            &self.emb_norm.weight,
            &self.emb_norm.bias,
            c.layer_norm_eps,
        );

        let mut states = Vec::new();
        if all_layers {
            states.push(x.clone());
        }
        // Each packed row's sequence, and the key mask of the batch.
        let masks: Vec<Option<&[u32]>> = inputs.iter().map(|i| i.attention_mask).collect();
        let seqs: Vec<EncoderSeq<'_>> = spans
            .iter()
            .zip(&masks)
            .map(|(span, &mask)| EncoderSeq {
                start: span.start,
                len: span.len,
                mask,
            })
            .collect();
        let mut scratch = Scratch::new(rows, c);
        for layer in &self.layers {
            self.layer_forward(layer, &mut x, &seqs, &mut scratch)?;
            if all_layers {
                states.push(x.clone());
            }
        }
        if !all_layers {
            states.push(x);
        }
        Ok(states)
    }

    fn layer_forward(
        &self,
        layer: &EncoderLayer,
        x: &mut [f32],
        seqs: &[EncoderSeq<'_>],
        s: &mut Scratch,
    ) -> Result<(), BertError> {
        let c = &self.config;
        let h = c.hidden_size;
        let eps = c.layer_norm_eps;
        let be = &*self.backend;
        linear(be, x, &layer.qkv, &mut s.qkv, &mut s.act)?;
        let shape = AttentionShape {
            n_head: c.num_attention_heads,
            n_head_kv: c.num_attention_heads,
            head_dim: c.head_dim(),
            kq_scale: 1.0 / (c.head_dim() as f32).sqrt(),
            window: None,
        };
        be.encoder_attention(&shape, &s.qkv, seqs, &mut s.ctx)
            .map_err(|e| BertError::Backend(Box::new(e)))?;
        linear(be, &s.ctx, &layer.attn_out, &mut s.proj, &mut s.act)?;
        add_in_place(&mut s.proj, x);
        layer_norm_rows(
            &mut s.proj,
            h,
            &layer.attn_norm.weight,
            &layer.attn_norm.bias,
            eps,
        );
        // s.proj is now the attention block's output.
        linear(be, &s.proj, &layer.intermediate, &mut s.inter, &mut s.act)?;
        match c.hidden_act {
            HiddenAct::Gelu => s.inter.par_iter_mut().for_each(|v| *v = gelu_erf(*v)),
        }
        linear(be, &s.inter, &layer.output, x, &mut s.act)?;
        add_in_place(x, &s.proj);
        layer_norm_rows(x, h, &layer.out_norm.weight, &layer.out_norm.bias, eps);
        Ok(())
    }
}

/// `out = x W^T + b` for every row of `x` (`[rows, in]` → `[rows, out]`), the product on
/// `backend`.
fn linear(
    backend: &dyn Backend,
    x: &[f32],
    lin: &Linear,
    out: &mut [f32],
    act: &mut ActScratch,
) -> Result<(), BertError> {
    let n_out = lin.out_dim;
    let m = out.len() / n_out.max(1);
    let rows = Rows {
        x,
        m,
        order: Order::BatchInvariant,
    };
    backend
        .linear(&[&lin.weight], rows, &mut [&mut *out], act)
        .map_err(|e| BertError::Backend(Box::new(e)))?;
    for r in out.chunks_exact_mut(n_out) {
        for (v, &b) in r.iter_mut().zip(&lin.bias) {
            *v += b;
        }
    }
    Ok(())
}

/// The packed rows of one sequence.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

/// Buffers reused across layers.
struct Scratch {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    proj: Vec<f32>,
    inter: Vec<f32>,
    act: ActScratch,
}

impl Scratch {
    fn new(rows: usize, c: &BertConfig) -> Scratch {
        Scratch {
            qkv: vec![0.0; rows * 3 * c.hidden_size],
            ctx: vec![0.0; rows * c.hidden_size],
            proj: vec![0.0; rows * c.hidden_size],
            inter: vec![0.0; rows * c.intermediate_size],
            act: ActScratch::default(),
        }
    }
}

fn check_mask(sequence: usize, mask: &[u32], len: usize) -> Result<(), BertError> {
    if mask.len() != len {
        return Err(BertError::LengthMismatch {
            sequence,
            what: "attention_mask",
            len: mask.len(),
            expected: len,
        });
    }
    if mask.iter().any(|&m| m > 1) {
        return Err(BertError::InvalidMask {
            sequence,
            reason: "holds a value other than 0 or 1",
        });
    }
    if !mask.contains(&1) {
        return Err(BertError::InvalidMask {
            sequence,
            reason: "masks every token",
        });
    }
    Ok(())
}

/// Row `i` of a `[_, width]` matrix (empty when out of range; callers check ids first).
fn row(m: &[f32], i: usize, width: usize) -> &[f32] {
    m.get(i * width..(i + 1) * width).unwrap_or_default()
}

fn add_in_place(dst: &mut [f32], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}

/// How a sentence-transformers `Pooling` module turns token states into one vector (the
/// `pooling_mode_*` keys of `1_Pooling/config.json`). When several modes are on, their vectors
/// are concatenated in the order of the fields, as sentence-transformers does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolingConfig {
    /// The first token's state (`pooling_mode_cls_token`).
    pub cls_token: bool,
    /// The elementwise maximum over attended tokens (`pooling_mode_max_tokens`).
    pub max_tokens: bool,
    /// The mean over attended tokens (`pooling_mode_mean_tokens`).
    pub mean_tokens: bool,
    /// The sum over attended tokens divided by the square root of their count
    /// (`pooling_mode_mean_sqrt_len_tokens`).
    pub mean_sqrt_len_tokens: bool,
    /// The mean weighted by position `1..=len` (`pooling_mode_weightedmean_tokens`).
    pub weighted_mean_tokens: bool,
    /// The last attended token's state (`pooling_mode_lasttoken`).
    pub last_token: bool,
}

impl PoolingConfig {
    /// Mean pooling only (all-MiniLM-L6-v2 and most sentence-transformers models).
    pub fn mean() -> PoolingConfig {
        PoolingConfig {
            mean_tokens: true,
            ..PoolingConfig::default()
        }
    }

    /// CLS pooling only.
    pub fn cls() -> PoolingConfig {
        PoolingConfig {
            cls_token: true,
            ..PoolingConfig::default()
        }
    }

    /// How many hidden-size blocks the pooled vector has.
    pub fn modes(&self) -> usize {
        [
            self.cls_token,
            self.max_tokens,
            self.mean_tokens,
            self.mean_sqrt_len_tokens,
            self.weighted_mean_tokens,
            self.last_token,
        ]
        .iter()
        .filter(|&&on| on)
        .count()
    }

    /// Pools one input's hidden state (`len × hidden_size`, row-major); `mask` selects the tokens
    /// (`None`: all). Accumulates in f64.
    pub fn pool(
        &self,
        hidden: &[f32],
        hidden_size: usize,
        mask: Option<&[u32]>,
    ) -> Result<Vec<f32>, BertError> {
        if self.modes() == 0 {
            return Err(BertError::NoPoolingMode);
        }
        let shape_err = BertError::PoolingShape {
            len: hidden.len(),
            hidden_size,
        };
        if hidden_size == 0 || hidden.is_empty() || hidden.len() % hidden_size != 0 {
            return Err(shape_err);
        }
        let len = hidden.len() / hidden_size;
        let mask_of = |t: usize| mask.is_none_or(|m| m.get(t) == Some(&1));
        if let Some(m) = mask {
            if m.len() != len {
                return Err(shape_err);
            }
        }
        let rows: Vec<(usize, &[f32])> = hidden
            .chunks_exact(hidden_size)
            .enumerate()
            .filter(|&(t, _)| mask_of(t))
            .collect();
        let mut out = Vec::with_capacity(self.modes() * hidden_size);
        if self.cls_token {
            out.extend_from_slice(row(hidden, 0, hidden_size));
        }
        if self.max_tokens {
            let mut m = vec![f32::NEG_INFINITY; hidden_size];
            for (_, r) in &rows {
                for (a, &v) in m.iter_mut().zip(*r) {
                    *a = a.max(v);
                }
            }
            out.extend(m);
        }
        let mut sum = vec![0f64; hidden_size];
        for (_, r) in &rows {
            for (a, &v) in sum.iter_mut().zip(*r) {
                *a += f64::from(v);
            }
        }
        let count = rows.len().max(1) as f64;
        if self.mean_tokens {
            out.extend(sum.iter().map(|&s| (s / count) as f32));
        }
        if self.mean_sqrt_len_tokens {
            out.extend(sum.iter().map(|&s| (s / count.sqrt()) as f32));
        }
        if self.weighted_mean_tokens {
            let mut acc = vec![0f64; hidden_size];
            let mut total = 0f64;
            for (t, r) in &rows {
                let wt = (*t + 1) as f64;
                total += wt;
                for (a, &v) in acc.iter_mut().zip(*r) {
                    *a += wt * f64::from(v);
                }
            }
            out.extend(acc.iter().map(|&s| (s / total.max(1e-9)) as f32));
        }
        if self.last_token {
            let last = rows.last().map_or(&[][..], |(_, r)| *r);
            out.extend_from_slice(last);
        }
        Ok(out)
    }
}

/// Divides `v` by its Euclidean norm (at least 1e-12), as `torch.nn.functional.normalize`.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let inv = 1.0 / norm.max(1e-12);
    for x in v {
        *x = (f64::from(*x) * inv) as f32;
    }
}

#[cfg(test)]
mod tests;
