//! Hugging Face model directories: `config.json` (typed, [`HfConfig`]), the weights (one
//! safetensors file or a sharded checkpoint) and the tokenizer and sentence-transformers files.
//! The JSON is read with serde_json, strictly ([`parse_json_strict`]: a duplicate key is an
//! error); the safetensors crate keeps its own parser for its headers.

use core::fmt;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use realizar_format_safetensors::{is_plain_file_name, IndexError, ShardedIndex};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value as JsonValue};

/// A JSON value that rejects duplicate object keys while it is read (`serde_json::Value`
/// keeps the last one silently).
struct Strict(JsonValue);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = JsonValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<JsonValue, E> {
        Ok(JsonValue::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<JsonValue, E> {
        Ok(JsonValue::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<JsonValue, E> {
        Number::from_f64(v)
            .map(JsonValue::Number)
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E>(self, v: &str) -> Result<JsonValue, E> {
        Ok(JsonValue::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<JsonValue, E> {
        Ok(JsonValue::String(v))
    }

    fn visit_unit<E>(self) -> Result<JsonValue, E> {
        Ok(JsonValue::Null)
    }

    fn visit_none<E>(self) -> Result<JsonValue, E> {
        Ok(JsonValue::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonValue, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(JsonValue::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonValue, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(format_args!("duplicate key `{k}`")));
            }
            let Strict(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(JsonValue::Object(out))
    }
}

/// Parses JSON text strictly: as serde_json does (nesting bounded), and a duplicate key in an
/// object is an error, not a silent overwrite.
pub fn parse_json_strict(text: &str) -> Result<JsonValue, serde_json::Error> {
    serde_json::from_str::<Strict>(text).map(|s| s.0)
}

/// The name of a JSON value's kind, for errors.
pub fn json_kind(v: &JsonValue) -> &'static str {
    match v {
        JsonValue::Null => "null",
        JsonValue::Bool(_) => "a boolean",
        JsonValue::Number(_) => "a number",
        JsonValue::String(_) => "a string",
        JsonValue::Array(_) => "an array",
        JsonValue::Object(_) => "an object",
    }
}

/// The fields of a Hugging Face `config.json` that model loaders use, typed; everything else is
/// kept in [`HfConfig::extra`]. A field that is absent or `null` is `None`.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct HfConfig {
    /// `architectures`, e.g. `["BertModel"]` (empty when absent).
    pub architectures: Vec<String>,
    /// `model_type`, e.g. `"bert"`, `"llama"`.
    pub model_type: Option<String>,
    /// `hidden_size`.
    pub hidden_size: Option<usize>,
    /// `num_hidden_layers`.
    pub num_hidden_layers: Option<usize>,
    /// `num_attention_heads`.
    pub num_attention_heads: Option<usize>,
    /// `num_key_value_heads`; when absent, `num_attention_heads` (no grouped-query attention).
    pub num_key_value_heads: Option<usize>,
    /// `head_dim`, when the config gives it explicitly.
    pub head_dim: Option<usize>,
    /// `intermediate_size` (the feed-forward width).
    pub intermediate_size: Option<usize>,
    /// `vocab_size`.
    pub vocab_size: Option<usize>,
    /// `rope_theta`.
    pub rope_theta: Option<f64>,
    /// `rms_norm_eps`.
    pub rms_norm_eps: Option<f64>,
    /// `layer_norm_eps`.
    pub layer_norm_eps: Option<f64>,
    /// `max_position_embeddings`.
    pub max_position_embeddings: Option<usize>,
    /// `tie_word_embeddings`.
    pub tie_word_embeddings: Option<bool>,
    /// Every other top-level field, as parsed (e.g. BERT's `type_vocab_size`, `hidden_act`).
    pub extra: BTreeMap<String, JsonValue>,
}

/// Why a `config.json` could not be read into an [`HfConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum HfConfigError {
    /// The text is not valid (strict) JSON: the parser's message, with line and column.
    Json(String),
    /// The top-level value is not an object.
    NotObject,
    /// A known field has the wrong type.
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
}

impl fmt::Display for HfConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HfConfigError::Json(e) => write!(f, "config: {e}"),
            HfConfigError::NotObject => f.write_str("config is not a JSON object"),
            HfConfigError::WrongType {
                field,
                expected,
                found,
            } => write!(f, "config: `{field}` is {found}, expected {expected}"),
        }
    }
}

impl std::error::Error for HfConfigError {}

/// Takes the typed fields out of a config object.
struct Fields(BTreeMap<String, JsonValue>);

impl Fields {
    /// Removes `field`; `None` when absent or null, else `read` must accept it.
    fn take<T>(
        &mut self,
        field: &'static str,
        expected: &'static str,
        read: impl Fn(&JsonValue) -> Option<T>,
    ) -> Result<Option<T>, HfConfigError> {
        match self.0.remove(field) {
            None | Some(JsonValue::Null) => Ok(None),
            Some(v) => read(&v).map(Some).ok_or(HfConfigError::WrongType {
                field,
                expected,
                found: json_kind(&v),
            }),
        }
    }

    fn usize(&mut self, field: &'static str) -> Result<Option<usize>, HfConfigError> {
        self.take(field, "a non-negative integer", |v| {
            v.as_u64().and_then(|n| usize::try_from(n).ok())
        })
    }

    fn f64(&mut self, field: &'static str) -> Result<Option<f64>, HfConfigError> {
        self.take(field, "a number", JsonValue::as_f64)
    }

    fn string(&mut self, field: &'static str) -> Result<Option<String>, HfConfigError> {
        self.take(field, "a string", |v| v.as_str().map(str::to_string))
    }
}

impl HfConfig {
    /// Parses the text of a `config.json`.
    ///
    /// ```
    /// use realizar_runtime::hf_dir::HfConfig;
    ///
    /// let c = HfConfig::parse(r#"{"model_type":"llama","num_attention_heads":9,
    ///                             "hidden_act":"silu","rope_theta":100000.0}"#).unwrap();
    /// assert_eq!(c.num_key_value_heads, Some(9)); // defaults to the head count
    /// assert_eq!(c.rope_theta, Some(1e5));
    /// assert_eq!(c.extra["hidden_act"].as_str(), Some("silu"));
    /// ```
    pub fn parse(text: &str) -> Result<HfConfig, HfConfigError> {
        let v = parse_json_strict(text).map_err(|e| HfConfigError::Json(e.to_string()))?;
        HfConfig::from_json(v)
    }

    /// Reads a parsed `config.json` object.
    pub fn from_json(value: JsonValue) -> Result<HfConfig, HfConfigError> {
        let JsonValue::Object(map) = value else {
            return Err(HfConfigError::NotObject);
        };
        let mut f = Fields(map.into_iter().collect());
        let architectures = f
            .take("architectures", "an array of strings", |v| {
                v.as_array()?
                    .iter()
                    .map(|a| a.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })?
            .unwrap_or_default();
        let num_attention_heads = f.usize("num_attention_heads")?;
        let num_key_value_heads = f.usize("num_key_value_heads")?.or(num_attention_heads);
        Ok(HfConfig {
            architectures,
            model_type: f.string("model_type")?,
            hidden_size: f.usize("hidden_size")?,
            num_hidden_layers: f.usize("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim: f.usize("head_dim")?,
            intermediate_size: f.usize("intermediate_size")?,
            vocab_size: f.usize("vocab_size")?,
            rope_theta: f.f64("rope_theta")?,
            rms_norm_eps: f.f64("rms_norm_eps")?,
            layer_norm_eps: f.f64("layer_norm_eps")?,
            max_position_embeddings: f.usize("max_position_embeddings")?,
            tie_word_embeddings: f.take("tie_word_embeddings", "a boolean", JsonValue::as_bool)?,
            extra: f.0,
        })
    }
}

/// Where the weights of a model directory are.
#[derive(Clone, Debug, PartialEq)]
pub enum Weights {
    /// A single `model.safetensors`.
    Single(PathBuf),
    /// A sharded checkpoint.
    Sharded {
        /// The `model.safetensors.index.json` file.
        index_path: PathBuf,
        /// Its contents.
        index: ShardedIndex,
        /// The shard files (all present), sorted by name.
        shards: Vec<PathBuf>,
    },
}

impl Weights {
    /// The safetensors files to open.
    pub fn files(&self) -> Vec<&Path> {
        match self {
            Weights::Single(p) => vec![p.as_path()],
            Weights::Sharded { shards, .. } => shards.iter().map(PathBuf::as_path).collect(),
        }
    }

    /// True for a sharded checkpoint.
    pub fn is_sharded(&self) -> bool {
        matches!(self, Weights::Sharded { .. })
    }
}

/// A Hugging Face model directory: its config, weights and the optional tokenizer and
/// sentence-transformers files.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct ModelDir {
    /// The directory.
    pub root: PathBuf,
    /// `config.json`.
    pub config_path: PathBuf,
    /// `config.json`, parsed.
    pub config: HfConfig,
    /// The weights.
    pub weights: Weights,
    /// `tokenizer.json`.
    pub tokenizer: Option<PathBuf>,
    /// `tokenizer_config.json`.
    pub tokenizer_config: Option<PathBuf>,
    /// `modules.json` (sentence-transformers).
    pub modules: Option<PathBuf>,
    /// The pooling module's `config.json`: from the `Pooling` entry of `modules.json`, else
    /// `1_Pooling/config.json`.
    pub pooling_config: Option<PathBuf>,
    /// `sentence_bert_config.json`.
    pub sentence_bert_config: Option<PathBuf>,
}

/// Why a model directory could not be opened.
#[derive(Debug)]
#[non_exhaustive]
pub enum ModelDirError {
    /// The path is not a directory.
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// There is no `config.json`.
    MissingConfig {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// `config.json` is invalid.
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: HfConfigError,
    },
    /// Neither `model.safetensors` nor `model.safetensors.index.json` is present.
    NoWeights {
        /// The directory.
        dir: PathBuf,
    },
    /// The sharded index is invalid.
    Index {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        error: IndexError,
    },
    /// A shard named in the index is missing.
    MissingShard {
        /// The missing file.
        path: PathBuf,
    },
    /// `modules.json` is not valid JSON.
    ModulesJson {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        error: serde_json::Error,
    },
    /// `modules.json` does not have the sentence-transformers shape (an array of objects with
    /// string `type` and `path`, each path a plain relative name).
    BadModules {
        /// The file.
        path: PathBuf,
    },
}

impl fmt::Display for ModelDirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelDirError::NotADirectory { path } => {
                write!(f, "{} is not a directory", path.display())
            }
            ModelDirError::MissingConfig { path } => {
                write!(
                    f,
                    "no config.json in the model directory ({})",
                    path.display()
                )
            }
            ModelDirError::Io { path, .. } => write!(f, "cannot read {}", path.display()),
            ModelDirError::Config { path, error } => write!(f, "{}: {error}", path.display()),
            ModelDirError::NoWeights { dir } => write!(
                f,
                "no model.safetensors or model.safetensors.index.json in {}",
                dir.display()
            ),
            ModelDirError::Index { path, error } => write!(f, "{}: {error}", path.display()),
            ModelDirError::MissingShard { path } => {
                write!(f, "shard {} named in the index is missing", path.display())
            }
            ModelDirError::ModulesJson { path, error } => {
                write!(f, "{}: {error}", path.display())
            }
            ModelDirError::BadModules { path } => write!(
                f,
                "{}: expected an array of modules with string `type` and plain relative `path`",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ModelDirError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ModelDirError::Io { source, .. } => Some(source),
            ModelDirError::Config { error, .. } => Some(error),
            ModelDirError::Index { error, .. } => Some(error),
            ModelDirError::ModulesJson { error, .. } => Some(error),
            _ => None,
        }
    }
}

fn read_text(path: &Path) -> Result<String, ModelDirError> {
    std::fs::read_to_string(path).map_err(|source| ModelDirError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// `path` if it is a file.
fn file(path: PathBuf) -> Option<PathBuf> {
    path.is_file().then_some(path)
}

/// The directory of the `Pooling` module named in `modules.json`, if any.
fn pooling_dir(modules: &Path) -> Result<Option<String>, ModelDirError> {
    let bad = || ModelDirError::BadModules {
        path: modules.to_path_buf(),
    };
    let v =
        parse_json_strict(&read_text(modules)?).map_err(|error| ModelDirError::ModulesJson {
            path: modules.to_path_buf(),
            error,
        })?;
    let mut found = None;
    for m in v.as_array().ok_or_else(bad)? {
        let ty = m.get("type").and_then(JsonValue::as_str).ok_or_else(bad)?;
        let path = m.get("path").and_then(JsonValue::as_str).ok_or_else(bad)?;
        // The root module has path "" (the directory itself); every other must be a plain name.
        if !path.is_empty() && !is_plain_file_name(path) {
            return Err(bad());
        }
        if found.is_none() && ty.rsplit('.').next() == Some("Pooling") && !path.is_empty() {
            found = Some(path.to_string());
        }
    }
    Ok(found)
}

impl ModelDir {
    /// Opens the model directory at `path`: reads `config.json`, finds the weights (checking that
    /// every shard of a sharded checkpoint is present) and the optional files.
    pub fn open(path: impl AsRef<Path>) -> Result<ModelDir, ModelDirError> {
        let root = path.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(ModelDirError::NotADirectory { path: root });
        }
        let config_path = root.join("config.json");
        if !config_path.is_file() {
            return Err(ModelDirError::MissingConfig { path: config_path });
        }
        let config =
            HfConfig::parse(&read_text(&config_path)?).map_err(|error| ModelDirError::Config {
                path: config_path.clone(),
                error,
            })?;

        let single = root.join("model.safetensors");
        let index_path = root.join("model.safetensors.index.json");
        let weights = if single.is_file() {
            Weights::Single(single)
        } else if index_path.is_file() {
            let index = ShardedIndex::parse(&read_text(&index_path)?).map_err(|error| {
                ModelDirError::Index {
                    path: index_path.clone(),
                    error,
                }
            })?;
            let shards: Vec<PathBuf> = index.shards().iter().map(|s| root.join(s)).collect();
            if let Some(missing) = shards.iter().find(|p| !p.is_file()) {
                return Err(ModelDirError::MissingShard {
                    path: missing.clone(),
                });
            }
            Weights::Sharded {
                index_path,
                index,
                shards,
            }
        } else {
            return Err(ModelDirError::NoWeights { dir: root });
        };

        let modules = file(root.join("modules.json"));
        let pooling = match &modules {
            Some(m) => pooling_dir(m)?,
            None => None,
        };
        let pooling_config = file(
            root.join(pooling.as_deref().unwrap_or("1_Pooling"))
                .join("config.json"),
        );
        Ok(ModelDir {
            config_path,
            config,
            weights,
            tokenizer: file(root.join("tokenizer.json")),
            tokenizer_config: file(root.join("tokenizer_config.json")),
            modules,
            pooling_config,
            sentence_bert_config: file(root.join("sentence_bert_config.json")),
            root,
        })
    }
}
