//! Sentence embeddings with a BERT encoder from a Hugging Face / sentence-transformers directory.
//!
//! [`Embedder::load`] opens the directory with [`ModelDir`] and reads `config.json` (the encoder's
//! hyperparameters), the weights (`model.safetensors` or the shards of a sharded checkpoint;
//! F32, F16 or BF16), and the sentence-transformers files: `modules.json` (which modules follow
//! the encoder: a `Pooling` module and optionally `Normalize`), the pooling module's
//! `config.json` (for example `1_Pooling/config.json`) and `sentence_bert_config.json`
//! (`max_seq_length`). Without `modules.json` the directory is treated as sentence-transformers
//! treats a plain Hugging Face model: mean pooling, no normalisation.
//!
//! ```no_run
//! use realizar_runtime::embed::Embedder;
//!
//! let embedder = Embedder::load("models/minilm-l6")?;
//! // [CLS] hello world [SEP]
//! let vectors = embedder.embed_ids(&[vec![101, 7592, 2088, 102]])?;
//! assert_eq!(vectors[0].len(), 384);
//! # Ok::<(), realizar_runtime::embed::EmbedError>(())
//! ```

use core::fmt;
use std::error::Error;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use realizar_format_safetensors::{MmapSafetensors, SafeTensors, SafetensorsError};
use realizar_nn::bert::{
    l2_normalize, BertConfig, BertError, BertInput, BertModel, F32Tensor, HiddenAct, PoolingConfig,
    SourceError, WeightSource,
};
use realizar_nn::CpuBackend;
use serde_json::Value as JsonValue;

use crate::hf_dir::{
    json_kind, parse_json_strict, HfConfig, HfConfigError, ModelDir, ModelDirError,
};
use realizar_tokenize::{TokenizeError, Tokenizer};

use crate::tokenizer_load::{tokenizer_from_hf_dir, LoadError};

/// What went wrong while loading an embedding model or embedding inputs.
#[derive(Debug)]
#[non_exhaustive]
pub enum EmbedError {
    /// A file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A JSON file is not valid JSON.
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        reason: String,
    },
    /// A JSON file lacks a key, or a key has the wrong type or an unsupported value.
    Config {
        /// The file.
        path: PathBuf,
        /// The key (`[i].type` for entry `i` of `modules.json`; empty for the whole file).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The directory is not a usable Hugging Face model directory (no config or weights, a bad
    /// sharded index, a malformed `modules.json`).
    ModelDir {
        /// The reader's error.
        source: ModelDirError,
    },
    /// A weights file is not a valid safetensors file.
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The reader's error.
        source: SafetensorsError,
    },
    /// The directory's `tokenizer.json` could not be loaded.
    Tokenizer {
        /// The model directory.
        path: PathBuf,
        /// The loader's error.
        source: LoadError,
    },
    /// Text embedding was asked of a directory without `tokenizer.json`.
    NoTokenizer {
        /// The model directory.
        path: PathBuf,
    },
    /// A text could not be tokenized.
    Tokenize {
        /// Which text of the batch.
        index: usize,
        /// The tokenizer's error.
        source: TokenizeError,
    },
    /// The encoder refused the weights or an input.
    Model {
        /// The model directory.
        path: PathBuf,
        /// The encoder's error.
        source: BertError,
    },
}

impl fmt::Display for EmbedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmbedError::Io { path, .. } => write!(f, "cannot read {}", path.display()),
            EmbedError::Json { path, reason } => {
                write!(f, "invalid JSON in {}: {reason}", path.display())
            }
            EmbedError::Config { path, key, reason } if key.is_empty() => {
                write!(f, "{}: {reason}", path.display())
            }
            EmbedError::Config { path, key, reason } => {
                write!(f, "{}: `{key}` {reason}", path.display())
            }
            EmbedError::ModelDir { .. } => f.write_str("cannot open the model directory"),
            EmbedError::Safetensors { path, .. } => {
                write!(f, "invalid safetensors file {}", path.display())
            }
            EmbedError::Tokenizer { path, .. } => {
                write!(f, "cannot load the tokenizer of {}", path.display())
            }
            EmbedError::NoTokenizer { path } => write!(
                f,
                "{} has no tokenizer.json: embed token ids instead",
                path.display()
            ),
            EmbedError::Tokenize { index, .. } => write!(f, "cannot tokenize text {index}"),
            EmbedError::Model { path, .. } => write!(f, "model {}", path.display()),
        }
    }
}

impl Error for EmbedError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            EmbedError::Io { source, .. } => Some(source),
            EmbedError::ModelDir { source } => Some(source),
            EmbedError::Safetensors { source, .. } => Some(source),
            EmbedError::Model { source, .. } => Some(source),
            EmbedError::Tokenizer { source, .. } => Some(source),
            EmbedError::Tokenize { source, .. } => Some(source),
            EmbedError::Json { .. }
            | EmbedError::Config { .. }
            | EmbedError::NoTokenizer { .. } => None,
        }
    }
}

/// A BERT sentence-embedding model: tokenizer (when the directory has `tokenizer.json`),
/// encoder, pooling and optional L2 normalisation.
#[derive(Debug, Clone)]
pub struct Embedder {
    dir: PathBuf,
    tokenizer: Option<Arc<Tokenizer>>,
    model: BertModel,
    pooling: PoolingConfig,
    normalize: bool,
    max_seq_length: usize,
}

impl Embedder {
    /// Loads the model in a Hugging Face directory (or the directory of a file in it, such as
    /// its `model.safetensors`).
    pub fn load(path: impl AsRef<Path>) -> Result<Embedder, EmbedError> {
        let path = path.as_ref();
        let dir = if path.is_file() {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        } else {
            path.to_path_buf()
        };
        let md = ModelDir::open(&dir).map_err(model_dir_err)?;
        let config = bert_config(&md.config_path, &md.config)?;
        let (pooling, normalize) = sentence_modules(&md, config.hidden_size)?;
        let max_seq_length = max_seq_length(
            md.sentence_bert_config.as_deref(),
            config.max_position_embeddings,
        )?;
        let tokenizer = match md.tokenizer {
            Some(_) => Some(Arc::new(tokenizer_from_hf_dir(&dir).map_err(|source| {
                EmbedError::Tokenizer {
                    path: dir.clone(),
                    source,
                }
            })?)),
            None => None,
        };

        let files = md.weights.files();
        let maps = files
            .iter()
            .map(|f| {
                MmapSafetensors::open(f).map_err(|source| EmbedError::Io {
                    path: f.to_path_buf(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let parsed = maps
            .iter()
            .zip(&files)
            .map(|(map, f)| {
                map.parse().map_err(|source| EmbedError::Safetensors {
                    path: f.to_path_buf(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let model_err = |source| EmbedError::Model {
            path: dir.clone(),
            source,
        };
        let threads = crate::threads::resolve_threads(None);
        let backend = CpuBackend::new(threads)
            .map_err(|e| model_err(realizar_nn::bert::BertError::Backend(Box::new(e))))?;
        let model = BertModel::load(config, &SafetensorsSource(&parsed), Arc::new(backend))
            .map_err(model_err)?;
        Ok(Embedder {
            dir,
            tokenizer,
            model,
            pooling,
            normalize,
            max_seq_length,
        })
    }

    /// The tokenizer, when the directory has `tokenizer.json`.
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_deref()
    }

    /// The shared tokenizer, when the directory has `tokenizer.json`.
    pub(crate) fn tokenizer_arc(&self) -> Option<Arc<Tokenizer>> {
        self.tokenizer.clone()
    }

    /// Tokenizes texts as sentence-transformers does: `[CLS]`…`[SEP]` around each, truncated to
    /// [`Embedder::max_seq_length`] tokens (the last token, `[SEP]`, kept), unpadded.
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, EmbedError> {
        let tokenizer = self
            .tokenizer
            .as_deref()
            .ok_or_else(|| EmbedError::NoTokenizer {
                path: self.dir.clone(),
            })?;
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                let mut ids = tokenizer
                    .encode_with_mask(text, true)
                    .map_err(|source| EmbedError::Tokenize { index, source })?
                    .ids;
                if ids.len() > self.max_seq_length {
                    let last = ids.last().copied();
                    ids.truncate(self.max_seq_length.saturating_sub(1));
                    ids.extend(last);
                }
                Ok(ids)
            })
            .collect()
    }

    /// Embeds texts: [`Embedder::tokenize`], then [`Embedder::embed_ids`].
    pub fn embed_texts(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.embed_ids(&self.tokenize(texts)?)
    }

    /// The encoder.
    pub fn model(&self) -> &BertModel {
        &self.model
    }

    /// The pooling the directory asks for.
    pub fn pooling(&self) -> PoolingConfig {
        self.pooling
    }

    /// Whether embeddings are L2-normalised (a `Normalize` module in `modules.json`).
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// The longest tokenized text, `[CLS]` and `[SEP]` included, that text embedding keeps
    /// (`max_seq_length` of `sentence_bert_config.json`, capped by `max_position_embeddings`).
    pub fn max_seq_length(&self) -> usize {
        self.max_seq_length
    }

    /// The length of each embedding.
    pub fn dim(&self) -> usize {
        self.pooling.modes() * self.model.config().hidden_size
    }

    /// Embeds a batch of tokenized texts (`[CLS]` and `[SEP]` included, unpadded): every token
    /// is attended to, whatever its id. Inputs longer than `max_position_embeddings`, empty, or
    /// with ids outside the vocabulary are errors.
    pub fn embed_ids(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let inputs: Vec<BertInput<'_>> = batch.iter().map(|ids| BertInput::new(ids)).collect();
        self.embed_inputs(&inputs)
    }

    /// Embeds a batch of inputs with explicit token types and attention masks.
    pub fn embed_inputs(&self, inputs: &[BertInput<'_>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut out = self.pool_inputs(inputs)?;
        if self.normalize {
            for v in &mut out {
                l2_normalize(v);
            }
        }
        Ok(out)
    }

    /// The pooled vectors, before normalisation.
    pub fn pool_inputs(&self, inputs: &[BertInput<'_>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let model_err = |source| EmbedError::Model {
            path: self.dir.clone(),
            source,
        };
        let hidden = self.model.encode(inputs).map_err(model_err)?;
        let h = self.model.config().hidden_size;
        hidden
            .iter()
            .zip(inputs)
            .map(|(states, input)| {
                self.pooling
                    .pool(states, h, input.attention_mask)
                    .map_err(model_err)
            })
            .collect()
    }
}

/// Adapts the safetensors files of a checkpoint (one, or every shard) to the encoder's
/// [`WeightSource`].
struct SafetensorsSource<'a, 'b>(&'b [SafeTensors<'a>]);

impl WeightSource for SafetensorsSource<'_, '_> {
    fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|f| f.tensor(name).is_some())
    }

    fn load_f32(&self, name: &str) -> Result<Option<F32Tensor>, SourceError> {
        let Some(view) = self.0.iter().find_map(|f| f.tensor(name)) else {
            return Ok(None);
        };
        let data = view.to_f32_vec()?;
        Ok(Some(F32Tensor {
            shape: view.shape,
            data,
        }))
    }
}

/// Reports an invalid `config.json` as [`EmbedError::Json`], and a wrongly typed field in it as
/// a config error naming the key.
fn model_dir_err(source: ModelDirError) -> EmbedError {
    match source {
        ModelDirError::Config {
            path,
            error:
                HfConfigError::WrongType {
                    field,
                    expected,
                    found,
                },
        } => config_err(&path, field, format!("is {found}, expected {expected}")),
        ModelDirError::Config {
            path,
            error: HfConfigError::Json(reason),
        } => EmbedError::Json { path, reason },
        source => EmbedError::ModelDir { source },
    }
}

fn read_json(path: &Path) -> Result<JsonValue, EmbedError> {
    let text = std::fs::read_to_string(path).map_err(|source| EmbedError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_json_strict(&text).map_err(|e| EmbedError::Json {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

fn config_err(path: &Path, key: &str, reason: impl Into<String>) -> EmbedError {
    EmbedError::Config {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason: reason.into(),
    }
}

/// A required size from a typed `config.json` field.
fn required(path: &Path, key: &str, value: Option<usize>) -> Result<usize, EmbedError> {
    value.ok_or_else(|| config_err(path, key, "is missing"))
}

/// A non-negative integer; `default` when absent or null.
fn usize_value(
    path: &Path,
    key: &str,
    value: Option<&JsonValue>,
    default: usize,
) -> Result<usize, EmbedError> {
    match value {
        None | Some(JsonValue::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                config_err(
                    path,
                    key,
                    format!("is {}, expected a non-negative integer", json_kind(v)),
                )
            }),
    }
}

/// A string among `config.json`'s untyped fields, if present.
fn extra_str<'c>(path: &Path, c: &'c HfConfig, key: &str) -> Result<Option<&'c str>, EmbedError> {
    match c.extra.get(key) {
        None | Some(JsonValue::Null) => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or_else(|| {
            config_err(path, key, format!("is {}, expected a string", json_kind(v)))
        }),
    }
}

/// The encoder's hyperparameters from a Hugging Face `config.json`. Keys that Hugging Face's
/// `BertConfig` gives defaults to (`max_position_embeddings` 512, `type_vocab_size` 2,
/// `layer_norm_eps` 1e-12, `hidden_act` gelu) take the same defaults when absent.
fn bert_config(path: &Path, c: &HfConfig) -> Result<BertConfig, EmbedError> {
    if let Some(ty) = c.model_type.as_deref() {
        if ty != "bert" {
            return Err(config_err(
                path,
                "model_type",
                format!("must be \"bert\", found {ty:?}"),
            ));
        }
    }
    if let Some(ty) = extra_str(path, c, "position_embedding_type")? {
        if ty != "absolute" {
            return Err(config_err(
                path,
                "position_embedding_type",
                format!("only \"absolute\" is supported, found {ty:?}"),
            ));
        }
    }
    let hidden_act = match extra_str(path, c, "hidden_act")? {
        None => HiddenAct::Gelu,
        Some(name) => HiddenAct::from_hf(name).map_err(|e| model_config_err(path, e))?,
    };
    let config = BertConfig {
        vocab_size: required(path, "vocab_size", c.vocab_size)?,
        hidden_size: required(path, "hidden_size", c.hidden_size)?,
        num_hidden_layers: required(path, "num_hidden_layers", c.num_hidden_layers)?,
        num_attention_heads: required(path, "num_attention_heads", c.num_attention_heads)?,
        intermediate_size: required(path, "intermediate_size", c.intermediate_size)?,
        max_position_embeddings: c.max_position_embeddings.unwrap_or(512),
        type_vocab_size: usize_value(path, "type_vocab_size", c.extra.get("type_vocab_size"), 2)?,
        layer_norm_eps: c.layer_norm_eps.unwrap_or(1e-12),
        hidden_act,
    };
    config.validate().map_err(|e| model_config_err(path, e))?;
    Ok(config)
}

/// An encoder config error, as a config error naming the key.
fn model_config_err(path: &Path, e: BertError) -> EmbedError {
    match e {
        BertError::InvalidConfig { key, reason } => config_err(path, key, reason),
        source => EmbedError::Model {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// The pooling and normalisation that `modules.json` lists after the encoder: a `Transformer`,
/// a `Pooling`, then optionally a `Normalize`. Without `modules.json`: the pooling config if
/// there is one (else mean pooling) and no normalisation, as sentence-transformers does for a
/// plain Hugging Face model.
fn sentence_modules(
    md: &ModelDir,
    hidden_size: usize,
) -> Result<(PoolingConfig, bool), EmbedError> {
    let Some(modules_path) = md.modules.as_deref() else {
        let pooling = match md.pooling_config.as_deref() {
            Some(p) => pooling_config(p, hidden_size)?,
            None => PoolingConfig::mean(),
        };
        return Ok((pooling, false));
    };
    let modules = read_json(modules_path)?;
    let list = modules
        .as_array()
        .ok_or_else(|| config_err(modules_path, "", "must be a JSON array of modules"))?;
    let mut pooling = None;
    let mut normalize = false;
    for (i, module) in list.iter().enumerate() {
        let key = format!("[{i}].type");
        let ty = module
            .get("type")
            .and_then(JsonValue::as_str)
            .ok_or_else(|| config_err(modules_path, &key, "is missing"))?;
        let kind = ty.rsplit('.').next().unwrap_or(ty);
        match (i, kind) {
            (0, "Transformer") => {}
            (1, "Pooling") => {
                let path = md.pooling_config.as_deref().ok_or_else(|| {
                    config_err(modules_path, &format!("[{i}].path"), "has no config.json")
                })?;
                pooling = Some(pooling_config(path, hidden_size)?);
            }
            (2, "Normalize") => normalize = true,
            _ => {
                return Err(config_err(
                    modules_path,
                    &key,
                    format!(
                        "module {ty:?} is not supported here \
                         (expected Transformer, Pooling, then optionally Normalize)"
                    ),
                ))
            }
        }
    }
    let pooling = pooling.ok_or_else(|| config_err(modules_path, "", "lists no Pooling module"))?;
    Ok((pooling, normalize))
}

/// The pooling modes of a sentence-transformers `Pooling` module's `config.json`.
fn pooling_config(path: &Path, hidden_size: usize) -> Result<PoolingConfig, EmbedError> {
    let json = read_json(path)?;
    if json.as_object().is_none() {
        return Err(config_err(path, "", "the file is not a JSON object"));
    }
    let flag = |key: &str| -> Result<bool, EmbedError> {
        match json.get(key) {
            None | Some(JsonValue::Null) => Ok(false),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| config_err(path, key, "must be true or false")),
        }
    };
    let dim = usize_value(
        path,
        "word_embedding_dimension",
        json.get("word_embedding_dimension"),
        hidden_size,
    )?;
    if dim != hidden_size {
        return Err(config_err(
            path,
            "word_embedding_dimension",
            format!("is {dim}, the encoder's hidden_size is {hidden_size}"),
        ));
    }
    let pooling = PoolingConfig {
        cls_token: flag("pooling_mode_cls_token")?,
        max_tokens: flag("pooling_mode_max_tokens")?,
        mean_tokens: flag("pooling_mode_mean_tokens")?,
        mean_sqrt_len_tokens: flag("pooling_mode_mean_sqrt_len_tokens")?,
        weighted_mean_tokens: flag("pooling_mode_weightedmean_tokens")?,
        last_token: flag("pooling_mode_lasttoken")?,
    };
    if pooling.modes() == 0 {
        return Err(config_err(
            path,
            "pooling_mode_*",
            "no pooling mode is true",
        ));
    }
    Ok(pooling)
}

/// `max_seq_length` of `sentence_bert_config.json`, capped by `max_position_embeddings` (the
/// cap alone when the file is absent).
fn max_seq_length(path: Option<&Path>, max_positions: usize) -> Result<usize, EmbedError> {
    let Some(path) = path else {
        return Ok(max_positions);
    };
    let json = read_json(path)?;
    let n = usize_value(
        path,
        "max_seq_length",
        json.get("max_seq_length"),
        max_positions,
    )?;
    if n == 0 {
        return Err(config_err(path, "max_seq_length", "must be positive"));
    }
    Ok(n.min(max_positions))
}
