//! Builds [`realizar_tokenize::Tokenizer`]s from GGUF metadata and from Hugging Face model
//! directories (`tokenizer.json`, `tokenizer_config.json`, `sentence_bert_config.json`).
//!
//! Malformed metadata is an error that names the key; nothing here panics on a bad file.

use std::fmt;
use std::path::{Path, PathBuf};

use realizar_format_gguf::{GgufError, GgufFile, Value};
use realizar_tokenize::{
    AddedToken, BertNormalizerConfig, BpeConfig, ChatTemplate, PreTokenizerKind, SpecialTokens,
    SpmConfig, TokenizeError, Tokenizer, WordPieceConfig, EOT_TEXTS,
};
pub use realizar_tokenize::{ChatMessage, EncodeOptions, Encoding, StreamDecoder};
use serde_json::Value as Json;

/// Why a tokenizer could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum LoadError {
    /// A metadata key is missing.
    MissingKey {
        /// The key.
        key: String,
    },
    /// A metadata key has the wrong type or an invalid value.
    BadValue {
        /// The key.
        key: String,
        /// What was expected.
        expected: String,
    },
    /// `tokenizer.ggml.model` (or `tokenizer.json`'s `model.type`) names a model this crate
    /// does not implement.
    UnknownModel {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not know.
    UnknownPreTokenizer {
        /// Its value.
        value: String,
    },
    /// The tokenizer rejected the data read from `key`.
    Tokenizer {
        /// The metadata key (or file) the bad data came from.
        key: String,
        /// The tokenizer's error.
        source: TokenizeError,
    },
    /// The GGUF reader failed.
    Gguf(GgufError),
    /// A file could not be read.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A JSON file is not valid JSON.
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::MissingKey { key } => write!(f, "tokenizer metadata: missing key {key}"),
            LoadError::BadValue { key, expected } => {
                write!(f, "tokenizer metadata: {key} is not {expected}")
            }
            LoadError::UnknownModel { key, value } => {
                write!(
                    f,
                    "tokenizer metadata: {key} = {value:?} is not a supported tokenizer model"
                )
            }
            LoadError::UnknownPreTokenizer { value } => write!(
                f,
                "tokenizer metadata: tokenizer.ggml.pre = {value:?} is not a known pre-tokenizer"
            ),
            LoadError::Tokenizer { key, source } => write!(f, "tokenizer metadata {key}: {source}"),
            LoadError::Gguf(e) => write!(f, "{e}"),
            LoadError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            LoadError::Json { path, message } => write!(f, "{}: {message}", path.display()),
        }
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Tokenizer { source, .. } => Some(source),
            LoadError::Gguf(e) => Some(e),
            LoadError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn bad(key: &str, expected: &str) -> LoadError {
    LoadError::BadValue {
        key: key.to_string(),
        expected: expected.to_string(),
    }
}

fn tok_err(key: &str) -> impl FnOnce(TokenizeError) -> LoadError + '_ {
    move |source| LoadError::Tokenizer {
        key: key.to_string(),
        source,
    }
}

/// The key a tokenizer construction error is about (`fallback` when the error does not say).
fn key_of(e: &TokenizeError, fallback: &'static str) -> &'static str {
    match e {
        TokenizeError::InvalidTokenType { .. } => K_TYPES,
        TokenizeError::LengthMismatch { what, .. } if what.contains("type") => K_TYPES,
        TokenizeError::LengthMismatch { what, .. } if what.contains("score") => K_SCORES,
        TokenizeError::MalformedMerge { .. } => K_MERGES,
        TokenizeError::SpecialOutOfRange { what, .. } => match *what {
            "BOS" | "bos" => "tokenizer.ggml.bos_token_id",
            "EOS" | "eos" => "tokenizer.ggml.eos_token_id",
            "EOT" | "eot" => "tokenizer.ggml.eot_token_id",
            "UNK" | "unk" | "unknown" => "tokenizer.ggml.unknown_token_id",
            "PAD" | "pad" | "padding" => "tokenizer.ggml.padding_token_id",
            _ => fallback,
        },
        _ => fallback,
    }
}

/// Maps a tokenizer construction error to the key it is about.
fn built(
    r: Result<Tokenizer, TokenizeError>,
    fallback: &'static str,
) -> Result<Tokenizer, LoadError> {
    r.map_err(|e| {
        let key = key_of(&e, fallback);
        tok_err(key)(e)
    })
}

const K_MODEL: &str = "tokenizer.ggml.model";
const K_PRE: &str = "tokenizer.ggml.pre";
const K_TOKENS: &str = "tokenizer.ggml.tokens";
const K_TYPES: &str = "tokenizer.ggml.token_type";
const K_SCORES: &str = "tokenizer.ggml.scores";
const K_MERGES: &str = "tokenizer.ggml.merges";

fn opt_u32(file: &GgufFile<'_>, key: &str) -> Result<Option<u32>, LoadError> {
    match file.get(key) {
        None => Ok(None),
        Some(v) => match v.as_u64().and_then(|x| u32::try_from(x).ok()) {
            Some(x) => Ok(Some(x)),
            // llama.cpp writes -1 (as a signed value) for "no token".
            None if matches!(v, Value::I32(-1) | Value::I64(-1)) => Ok(None),
            None => Err(bad(key, "a token id")),
        },
    }
}

fn opt_bool(file: &GgufFile<'_>, key: &str) -> Result<Option<bool>, LoadError> {
    match file.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(bad(key, "a bool")),
    }
}

fn strings(file: &GgufFile<'_>, key: &str) -> Result<Vec<String>, LoadError> {
    let arr = match file.get(key) {
        None => {
            return Err(LoadError::MissingKey {
                key: key.to_string(),
            })
        }
        Some(Value::Array(a)) => a,
        Some(_) => return Err(bad(key, "an array of strings")),
    };
    let it = arr
        .strings()
        .ok_or_else(|| bad(key, "an array of strings"))?;
    Ok(it.map(str::to_string).collect())
}

/// Builds the tokenizer a GGUF file describes (`tokenizer.ggml.*`).
pub fn tokenizer_from_gguf(file: &GgufFile<'_>) -> Result<Tokenizer, LoadError> {
    let mut tok = tokenizer_from_gguf_vocab(file)?;
    name_attributes(file, &mut tok);
    Ok(tok)
}

/// The token attributes llama.cpp sets by model, pre-tokenizer or architecture name
/// (`llama_vocab::impl::load`): on a model whose `general.name` contains `phi-3` or `phi3`
/// (ASCII case ignored) every special token, and `</s>`, takes the white space after it out
/// of the text, except `<unk>`, `<s>` and `<|endoftext|>`; `<mask>` of the jina-v2
/// vocabularies (and of nomic-bert-moe, jina-bert-v3) and `[MASK]` of modern-bert take the
/// white space before them. A listed token the vocabulary lacks is skipped.
fn name_attributes(file: &GgufFile<'_>, tok: &mut Tokenizer) {
    let text = |key: &str| match file.get(key) {
        Some(Value::String(s)) => s.to_string(),
        _ => String::new(),
    };
    let name = text("general.name").to_ascii_lowercase();
    let (pre, arch) = (text(K_PRE), text("general.architecture"));
    let any = |hay: &str, needles: &[&str]| needles.iter().any(|n| hay.contains(n));
    let mut set = |token: &str, left: Option<bool>, right: Option<bool>| {
        if let Some(id) = tok.token_to_id(token) {
            let mut s = tok.strip(id);
            s.left = left.unwrap_or(s.left);
            s.right = right.unwrap_or(s.right);
            tok.set_strip(id, s);
        }
    };
    if any(&pre, &["jina-v2-de", "jina-v2-es", "jina-v2-code"])
        || any(&arch, &["nomic-bert-moe", "jina-bert-v3"])
    {
        set("<mask>", Some(true), None);
    } else if any(&name, &["phi-3", "phi3"]) {
        for id in tok.special_ids() {
            let mut s = tok.strip(id);
            s.right = true;
            tok.set_strip(id, s);
        }
        let mut set = |token: &str, right: bool| {
            if let Some(id) = tok.token_to_id(token) {
                let mut s = tok.strip(id);
                s.right = right;
                tok.set_strip(id, s);
            }
        };
        set("</s>", true);
        for t in ["<unk>", "<s>", "<|endoftext|>"] {
            set(t, false);
        }
    } else if any(&name, &["modern-bert"]) {
        set("[MASK]", Some(true), None);
    }
}

fn tokenizer_from_gguf_vocab(file: &GgufFile<'_>) -> Result<Tokenizer, LoadError> {
    let model = match file.get(K_MODEL) {
        None => {
            return Err(LoadError::MissingKey {
                key: K_MODEL.into(),
            })
        }
        Some(Value::String(s)) => s,
        Some(_) => return Err(bad(K_MODEL, "a string")),
    };
    let tokens = strings(file, K_TOKENS)?;
    let n = tokens.len();
    let token_types: Vec<i32> = match file.get(K_TYPES) {
        None => vec![1; n],
        Some(Value::Array(a)) => {
            let v: Vec<i32> = a
                .iter()
                .map(|x| match x {
                    Value::I32(i) => Some(i),
                    other => other.as_u64().and_then(|u| i32::try_from(u).ok()),
                })
                .collect::<Option<_>>()
                .ok_or_else(|| bad(K_TYPES, "an array of integers"))?;
            if v.len() != n {
                return Err(bad(
                    K_TYPES,
                    &format!(
                        "an array of {n} token types (one per entry of {K_TOKENS}); it has {}",
                        v.len()
                    ),
                ));
            }
            v
        }
        Some(_) => return Err(bad(K_TYPES, "an array of integers")),
    };
    let eot = match opt_u32(file, "tokenizer.ggml.eot_token_id")? {
        Some(id) => Some(id),
        None => tokens
            .iter()
            .enumerate()
            .filter(|(i, t)| {
                EOT_TEXTS.contains(&t.as_str()) && token_types.get(*i).is_some_and(|&ty| ty == 3)
            })
            .map(|(i, _)| i as u32)
            .next(),
    };
    let add_eos = opt_bool(file, "tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    match model {
        "gpt2" => {
            let pre_name = match file.get(K_PRE) {
                None => "default",
                Some(Value::String(s)) => s,
                Some(_) => return Err(bad(K_PRE, "a string")),
            };
            let pre = PreTokenizerKind::from_gguf_pre(pre_name).ok_or_else(|| {
                LoadError::UnknownPreTokenizer {
                    value: pre_name.to_string(),
                }
            })?;
            let rules = strings(file, K_MERGES)?;
            let mut merges = Vec::with_capacity(rules.len());
            for (i, r) in rules.into_iter().enumerate() {
                // Split at the first space after the first byte, as llama.cpp does.
                let split = r
                    .bytes()
                    .enumerate()
                    .skip(1)
                    .find(|&(_, b)| b == b' ')
                    .and_then(|(p, _)| {
                        Some((r.get(..p)?.to_string(), r.get(p + 1..)?.to_string()))
                    });
                match split {
                    Some(pair) => merges.push(pair),
                    None => {
                        return Err(LoadError::Tokenizer {
                            key: K_MERGES.into(),
                            source: TokenizeError::MalformedMerge { index: i, rule: r },
                        })
                    }
                }
            }
            let special = SpecialTokens {
                bos: opt_u32(file, "tokenizer.ggml.bos_token_id")?,
                eos: opt_u32(file, "tokenizer.ggml.eos_token_id")?,
                eot,
                unk: opt_u32(file, "tokenizer.ggml.unknown_token_id")?,
                pad: opt_u32(file, "tokenizer.ggml.padding_token_id")?,
                add_bos: opt_bool(file, "tokenizer.ggml.add_bos_token")?
                    .unwrap_or(pre.adds_bos_by_default()),
                add_eos,
            };
            built(
                Tokenizer::from_bpe(BpeConfig {
                    tokens,
                    token_types,
                    merges,
                    pre,
                    special,
                }),
                K_TOKENS,
            )
        }
        "llama" => {
            let scores: Vec<f32> = match file.get(K_SCORES) {
                None => vec![0.0; n],
                Some(Value::Array(a)) => a
                    .f32s()
                    .ok_or_else(|| bad(K_SCORES, "an array of f32"))?
                    .collect(),
                Some(_) => return Err(bad(K_SCORES, "an array of f32")),
            };
            if scores.len() != n {
                return Err(bad(
                    K_SCORES,
                    &format!(
                        "an array of {n} scores (one per entry of {K_TOKENS}); it has {}",
                        scores.len()
                    ),
                ));
            }
            let special = SpecialTokens {
                bos: opt_u32(file, "tokenizer.ggml.bos_token_id")?.or(Some(1)),
                eos: opt_u32(file, "tokenizer.ggml.eos_token_id")?.or(Some(2)),
                eot,
                unk: opt_u32(file, "tokenizer.ggml.unknown_token_id")?.or(Some(0)),
                pad: opt_u32(file, "tokenizer.ggml.padding_token_id")?,
                add_bos: opt_bool(file, "tokenizer.ggml.add_bos_token")?.unwrap_or(true),
                add_eos,
            };
            built(
                Tokenizer::from_spm(SpmConfig {
                    tokens,
                    scores,
                    token_types,
                    add_space_prefix: opt_bool(file, "tokenizer.ggml.add_space_prefix")?
                        .unwrap_or(true),
                    special,
                }),
                K_TOKENS,
            )
        }
        other => Err(LoadError::UnknownModel {
            key: K_MODEL.into(),
            value: other.to_string(),
        }),
    }
}

/// The GGUF's own chat template (`tokenizer.chat_template`), if it has one.
pub fn chat_template_from_gguf(file: &GgufFile<'_>) -> Option<String> {
    match file.get("tokenizer.chat_template") {
        Some(Value::String(s)) => Some(s.to_string()),
        _ => None,
    }
}

/// The chat template of a GGUF file compiled with its BOS/EOS texts, if it has one.
pub fn chat_template_for(
    file: &GgufFile<'_>,
    tok: &Tokenizer,
) -> Option<Result<ChatTemplate, TokenizeError>> {
    let src = chat_template_from_gguf(file)?;
    let text = |id: Option<u32>| {
        id.and_then(|i| tok.token_to_piece(i))
            .unwrap_or_default()
            .to_string()
    };
    Some(ChatTemplate::new(
        &src,
        text(tok.bos_id()),
        text(tok.eos_id()),
    ))
}

fn read_json(path: &Path) -> Result<Json, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| LoadError::Json {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn read_json_opt(path: &Path) -> Result<Option<Json>, LoadError> {
    if path.exists() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// The text of a `tokenizer_config.json` token entry (a string or `{"content": …}`).
fn token_text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Vocabulary texts by id from a `{"token": id}` map (plus added tokens), which must be dense.
fn dense_vocab(
    map: &serde_json::Map<String, Json>,
    added: &[AddedToken],
) -> Result<Vec<String>, LoadError> {
    let key = "tokenizer.json model.vocab";
    let n = map
        .len()
        .max(added.iter().map(|a| a.id as usize + 1).max().unwrap_or(0));
    // Ids must be dense: never allocate for an id beyond what the file lists.
    if n > map.len() + added.len() {
        return Err(bad(
            "tokenizer.json added_tokens",
            "ids within the vocabulary (every id from 0 to n-1 present)",
        ));
    }
    let mut v: Vec<Option<String>> = vec![None; n];
    for (t, id) in map {
        let id = id
            .as_u64()
            .and_then(|x| usize::try_from(x).ok())
            .ok_or_else(|| bad(key, "a map of token → id"))?;
        let slot = v
            .get_mut(id)
            .ok_or_else(|| bad(key, "a map with ids 0..n"))?;
        *slot = Some(t.clone());
    }
    for a in added {
        if let Some(slot) = v.get_mut(a.id as usize) {
            if slot.is_none() {
                *slot = Some(a.content.clone());
            }
        }
    }
    v.into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad(key, "a map with every id from 0 to n-1"))
}

fn added_tokens(tj: &Json) -> Result<Vec<AddedToken>, LoadError> {
    let key = "tokenizer.json added_tokens";
    let Some(arr) = tj.get("added_tokens") else {
        return Ok(Vec::new());
    };
    let arr = arr.as_array().ok_or_else(|| bad(key, "an array"))?;
    arr.iter()
        .map(|t| {
            let id = t
                .get("id")
                .and_then(Json::as_u64)
                .and_then(|x| u32::try_from(x).ok())
                .ok_or_else(|| bad(key, "entries with an id"))?;
            let content = t
                .get("content")
                .and_then(Json::as_str)
                .ok_or_else(|| bad(key, "entries with a content"))?
                .to_string();
            let special = t.get("special").and_then(Json::as_bool).unwrap_or(false);
            Ok(AddedToken {
                id,
                content,
                special,
            })
        })
        .collect()
}

/// The first and last special tokens of the single-sequence post-processor.
fn post_processor_ids(
    tj: &Json,
    lookup: impl Fn(&str) -> Option<u32>,
) -> (Option<u32>, Option<u32>) {
    let Some(pp) = tj.get("post_processor") else {
        return (None, None);
    };
    match pp.get("type").and_then(Json::as_str) {
        Some("BertProcessing") | Some("RobertaProcessing") => {
            let id = |k: &str| {
                pp.get(k)
                    .and_then(|v| v.get(1))
                    .and_then(Json::as_u64)
                    .and_then(|x| u32::try_from(x).ok())
            };
            (id("cls"), id("sep"))
        }
        Some("TemplateProcessing") => {
            let single = pp.get("single").and_then(Json::as_array);
            let special = |item: Option<&Json>| {
                let name = item?.get("SpecialToken")?.get("id")?.as_str()?;
                pp.get("special_tokens")
                    .and_then(|s| s.get(name))
                    .and_then(|s| s.get("ids"))
                    .and_then(|ids| ids.get(0))
                    .and_then(Json::as_u64)
                    .and_then(|x| u32::try_from(x).ok())
                    .or_else(|| lookup(name))
            };
            match single {
                Some(items) => (special(items.first()), {
                    if items.len() > 1 {
                        special(items.last())
                    } else {
                        None
                    }
                }),
                None => (None, None),
            }
        }
        _ => (None, None),
    }
}

/// Maps a `tokenizer.json` byte-level pre-tokenizer to one of the known kinds.
fn hf_pre_tokenizer(tj: &Json) -> Result<PreTokenizerKind, LoadError> {
    let pt = tj.get("pre_tokenizer").cloned().unwrap_or(Json::Null);
    let items: Vec<Json> = match pt.get("type").and_then(Json::as_str) {
        Some("Sequence") => pt
            .get("pretokenizers")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default(),
        _ => vec![pt.clone()],
    };
    let mut regex = None;
    let mut digits = false;
    let mut byte_level = false;
    for it in &items {
        match it.get("type").and_then(Json::as_str) {
            Some("Split") => {
                regex = it
                    .get("pattern")
                    .and_then(|p| p.get("Regex"))
                    .and_then(Json::as_str)
                    .map(str::to_string)
            }
            Some("Digits") => digits = true,
            Some("ByteLevel") => byte_level = true,
            _ => {}
        }
    }
    let kind = match (regex.as_deref(), digits, byte_level) {
        (Some(r), false, true) if r.contains("\\p{N}{1,3}") => Some(PreTokenizerKind::Llama3),
        (Some(r), false, true)
            if r.starts_with(
                "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|",
            ) =>
        {
            Some(PreTokenizerKind::Qwen2)
        }
        (None, true, true) => Some(PreTokenizerKind::StarCoder),
        (None, false, true) => Some(PreTokenizerKind::Gpt2),
        _ => None,
    };
    kind.ok_or_else(|| LoadError::UnknownPreTokenizer {
        value: format!("tokenizer.json pre_tokenizer {pt}"),
    })
}

/// Builds the tokenizer of a Hugging Face model directory: `tokenizer.json`, with
/// `tokenizer_config.json` for BOS/EOS and `sentence_bert_config.json` (`max_seq_length`, what
/// sentence-transformers truncates to) for the maximum length.
pub fn tokenizer_from_hf_dir(dir: &Path) -> Result<Tokenizer, LoadError> {
    let tj = read_json(&dir.join("tokenizer.json"))?;
    let cfg = read_json_opt(&dir.join("tokenizer_config.json"))?.unwrap_or(Json::Null);
    let sbert = read_json_opt(&dir.join("sentence_bert_config.json"))?;
    let model = tj.get("model").ok_or(LoadError::MissingKey {
        key: "tokenizer.json model".into(),
    })?;
    let added = added_tokens(&tj)?;
    let vocab_map = model
        .get("vocab")
        .and_then(Json::as_object)
        .ok_or_else(|| bad("tokenizer.json model.vocab", "a map of token → id"))?;
    let vocab = dense_vocab(vocab_map, &added)?;
    let lookup = |name: &str| vocab.iter().position(|t| t == name).map(|i| i as u32);
    let model_type = model.get("type").and_then(Json::as_str).unwrap_or("");
    match model_type {
        "WordPiece" => {
            let norm = tj.get("normalizer").cloned().unwrap_or(Json::Null);
            let nb = |k: &str, d: bool| norm.get(k).and_then(Json::as_bool).unwrap_or(d);
            let normalizer = BertNormalizerConfig {
                clean_text: nb("clean_text", true),
                handle_chinese_chars: nb("handle_chinese_chars", true),
                strip_accents: norm.get("strip_accents").and_then(Json::as_bool),
                lowercase: nb("lowercase", true),
            };
            let (cls, sep) = post_processor_ids(&tj, lookup);
            let max_length = sbert
                .as_ref()
                .and_then(|s| s.get("max_seq_length"))
                .and_then(Json::as_u64)
                .or_else(|| {
                    tj.get("truncation")
                        .and_then(|t| t.get("max_length"))
                        .and_then(Json::as_u64)
                })
                .and_then(|x| usize::try_from(x).ok());
            let wp = WordPieceConfig {
                unk_token: model
                    .get("unk_token")
                    .and_then(Json::as_str)
                    .unwrap_or("[UNK]")
                    .to_string(),
                continuing_subword_prefix: model
                    .get("continuing_subword_prefix")
                    .and_then(Json::as_str)
                    .unwrap_or("##")
                    .to_string(),
                max_input_chars_per_word: model
                    .get("max_input_chars_per_word")
                    .and_then(Json::as_u64)
                    .and_then(|x| usize::try_from(x).ok())
                    .unwrap_or(100),
                vocab,
                normalizer,
                added_tokens: added,
                cls,
                sep,
                max_length,
            };
            Tokenizer::from_wordpiece(wp).map_err(tok_err("tokenizer.json"))
        }
        "BPE" => {
            let pre = hf_pre_tokenizer(&tj)?;
            let merges_json = model
                .get("merges")
                .and_then(Json::as_array)
                .ok_or_else(|| bad("tokenizer.json model.merges", "an array"))?;
            let mut merges = Vec::with_capacity(merges_json.len());
            for (i, m) in merges_json.iter().enumerate() {
                let pair = match m {
                    Json::String(s) => s
                        .split_once(' ')
                        .map(|(a, b)| (a.to_string(), b.to_string())),
                    Json::Array(a) => match (
                        a.first().and_then(Json::as_str),
                        a.get(1).and_then(Json::as_str),
                    ) {
                        (Some(x), Some(y)) if a.len() == 2 => Some((x.to_string(), y.to_string())),
                        _ => None,
                    },
                    _ => None,
                };
                merges.push(pair.ok_or_else(|| LoadError::Tokenizer {
                    key: "tokenizer.json model.merges".into(),
                    source: TokenizeError::MalformedMerge {
                        index: i,
                        rule: m.to_string(),
                    },
                })?);
            }
            let mut types = vec![1i32; vocab.len()];
            for a in &added {
                if let Some(t) = types.get_mut(a.id as usize) {
                    *t = if a.special { 3 } else { 4 };
                }
            }
            let named = |k: &str| token_text(cfg.get(k)).and_then(|t| lookup(&t));
            let (first, last) = post_processor_ids(&tj, lookup);
            let bos = named("bos_token").or(first);
            let special = SpecialTokens {
                bos,
                eos: named("eos_token"),
                eot: None,
                unk: named("unk_token"),
                pad: named("pad_token"),
                add_bos: cfg
                    .get("add_bos_token")
                    .and_then(Json::as_bool)
                    .unwrap_or(first.is_some() && first == bos),
                add_eos: cfg
                    .get("add_eos_token")
                    .and_then(Json::as_bool)
                    .unwrap_or(false)
                    || (last.is_some() && last != first),
            };
            Tokenizer::from_bpe(BpeConfig {
                tokens: vocab,
                token_types: types,
                merges,
                pre,
                special,
            })
            .map_err(tok_err("tokenizer.json"))
        }
        other => Err(LoadError::UnknownModel {
            key: "tokenizer.json model.type".into(),
            value: other.to_string(),
        }),
    }
}

/// The `eos_token_id`s of a Hugging Face directory's `generation_config.json` (a number or a
/// list), which its generation stops on; none without the file.
pub fn generation_eos_ids(dir: &Path) -> Result<Vec<u32>, LoadError> {
    let Some(cfg) = read_json_opt(&dir.join("generation_config.json"))? else {
        return Ok(Vec::new());
    };
    let key = "generation_config.json eos_token_id";
    let id = |v: &Json| {
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| bad(key, "a token id or a list of them"))
    };
    match cfg.get("eos_token_id") {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(list)) => list.iter().map(id).collect(),
        Some(v) => Ok(vec![id(v)?]),
    }
}

/// The chat template of a Hugging Face directory: `chat_template.jinja` (as transformers
/// saves it since 4.43), else `tokenizer_config.json`'s `chat_template` (a string, or a list
/// of named templates of which `default` is taken).
pub fn chat_template_from_hf_dir(dir: &Path) -> Result<Option<String>, LoadError> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return std::fs::read_to_string(&jinja)
            .map(Some)
            .map_err(|source| LoadError::Io {
                path: jinja,
                source,
            });
    }
    let Some(cfg) = read_json_opt(&dir.join("tokenizer_config.json"))? else {
        return Ok(None);
    };
    Ok(match cfg.get("chat_template") {
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Json::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Json::as_str)
            .map(str::to_string),
        _ => None,
    })
}

/// A tokenizer with its model's chat template, loaded from a `.gguf` file or a Hugging Face
/// directory.
#[derive(Debug)]
pub struct LoadedTokenizer {
    /// The tokenizer.
    pub tokenizer: Tokenizer,
    /// The model's chat template source, if it has one.
    pub chat_template: Option<String>,
}

impl LoadedTokenizer {
    /// Compiles the chat template with the tokenizer's BOS/EOS texts.
    pub fn chat(&self) -> Option<Result<ChatTemplate, TokenizeError>> {
        let src = self.chat_template.as_deref()?;
        let text = |id: Option<u32>| {
            id.and_then(|i| self.tokenizer.token_to_piece(i))
                .unwrap_or_default()
                .to_string()
        };
        Some(ChatTemplate::new(
            src,
            text(self.tokenizer.bos_id()),
            text(self.tokenizer.eos_id()),
        ))
    }
}

/// Loads the tokenizer of a model path: a directory is read as a Hugging Face model directory,
/// anything else as a GGUF file.
pub fn load_tokenizer(path: &Path) -> Result<LoadedTokenizer, LoadError> {
    if path.is_dir() {
        return Ok(LoadedTokenizer {
            tokenizer: tokenizer_from_hf_dir(path)?,
            chat_template: chat_template_from_hf_dir(path)?,
        });
    }
    let map = realizar_format_gguf::MmapGguf::open(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file = map.parse().map_err(LoadError::Gguf)?;
    Ok(LoadedTokenizer {
        tokenizer: tokenizer_from_gguf(&file)?,
        chat_template: chat_template_from_gguf(&file),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use realizar_format_gguf::{GgufWriter, OwnedValue, ValueType};

    fn byte_level() -> Vec<String> {
        // GPT-2 byte-level characters of the printable ASCII bytes, plus `Ġ` for space.
        let mut v: Vec<String> = (b'!'..=b'~').map(|b| (b as char).to_string()).collect();
        v.push("Ġ".into());
        v.push("Ġa".into());
        v
    }

    fn gpt2_file(edit: impl FnOnce(&mut Vec<(&'static str, OwnedValue)>)) -> Vec<u8> {
        let toks = byte_level();
        let n = toks.len();
        let mut kv: Vec<(&'static str, OwnedValue)> = vec![
            ("tokenizer.ggml.model", OwnedValue::String("gpt2".into())),
            ("tokenizer.ggml.pre", OwnedValue::String("gpt-2".into())),
            ("tokenizer.ggml.tokens", OwnedValue::strings(&toks)),
            ("tokenizer.ggml.token_type", OwnedValue::i32s(&vec![1; n])),
            ("tokenizer.ggml.merges", OwnedValue::strings(&["Ġ a"])),
        ];
        edit(&mut kv);
        let mut w = GgufWriter::new();
        for (k, v) in kv {
            w.add_metadata(k, v);
        }
        w.to_bytes()
    }

    fn set(kv: &mut [(&'static str, OwnedValue)], key: &str, v: OwnedValue) {
        if let Some(slot) = kv.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = v;
        }
    }

    fn load(bytes: &[u8]) -> Result<Tokenizer, LoadError> {
        let file = GgufFile::parse(bytes).expect("parse");
        tokenizer_from_gguf(&file)
    }

    #[test]
    fn tiny_gpt2_vocab_loads_and_merges() {
        let tok = load(&gpt2_file(|_| {})).expect("load");
        let ids = tok.encode(" a!", EncodeOptions::default()).expect("encode");
        assert_eq!(ids, [95, 0]);
    }

    #[test]
    fn unknown_model_and_pre_are_errors_naming_them() {
        let b = gpt2_file(|kv| set(kv, K_MODEL, OwnedValue::String("rwkv".into())));
        assert!(matches!(load(&b), Err(LoadError::UnknownModel { value, .. }) if value == "rwkv"));
        let b = gpt2_file(|kv| set(kv, K_PRE, OwnedValue::String("klingon".into())));
        assert!(
            matches!(load(&b), Err(LoadError::UnknownPreTokenizer { value }) if value == "klingon")
        );
    }

    #[test]
    fn malformed_arrays_are_errors_naming_the_key() {
        let b = gpt2_file(|kv| set(kv, K_TYPES, OwnedValue::i32s(&[1, 1])));
        assert!(matches!(load(&b), Err(LoadError::BadValue { key, .. }) if key == K_TYPES));
        let b = gpt2_file(|kv| set(kv, K_MERGES, OwnedValue::strings(&["nospace"])));
        assert!(matches!(load(&b), Err(LoadError::Tokenizer { key, .. }) if key == K_MERGES));
        let b = gpt2_file(|kv| set(kv, K_MERGES, OwnedValue::strings(&["Ġ zz"])));
        assert!(matches!(load(&b), Err(LoadError::Tokenizer { key, .. }) if key == K_MERGES));
        let b = gpt2_file(|kv| kv.retain(|(k, _)| *k != K_TOKENS));
        assert!(matches!(load(&b), Err(LoadError::MissingKey { key }) if key == K_TOKENS));
        let b = gpt2_file(|kv| kv.push(("tokenizer.ggml.bos_token_id", OwnedValue::U32(1 << 20))));
        assert!(matches!(
            load(&b),
            Err(LoadError::Tokenizer {
                source: TokenizeError::SpecialOutOfRange { what: "BOS", .. },
                ..
            })
        ));
        let b = gpt2_file(|kv| {
            kv.push((
                "tokenizer.ggml.scores",
                OwnedValue::Array(ValueType::F32, vec![]),
            ))
        });
        assert!(load(&b).is_ok(), "scores are ignored for BPE");
    }

    #[test]
    fn spm_scores_must_match_the_tokens() {
        let toks: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into(), "▁a".into()];
        let mut w = GgufWriter::new();
        w.add_metadata("tokenizer.ggml.model", OwnedValue::String("llama".into()));
        w.add_metadata("tokenizer.ggml.tokens", OwnedValue::strings(&toks));
        w.add_metadata("tokenizer.ggml.scores", OwnedValue::f32s(&[0.0, 0.0]));
        let b = w.to_bytes();
        assert!(matches!(load(&b), Err(LoadError::BadValue { key, .. }) if key == K_SCORES));
    }

    #[test]
    fn hf_bpe_and_wordpiece_dirs_load() {
        let dir = std::env::temp_dir().join(format!("realizar-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let bpe = r#"{"added_tokens":[{"id":3,"content":"<|x|>","special":true}],
            "pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"use_regex":true},
            "model":{"type":"BPE","vocab":{"Ġ":0,"a":1,"Ġa":2,"<|x|>":3},"merges":[["Ġ","a"]]}}"#;
        std::fs::write(dir.join("tokenizer.json"), bpe).expect("write");
        std::fs::write(
            dir.join("tokenizer_config.json"),
            r#"{"eos_token":"<|x|>","chat_template":"{{ messages[0]['content'] }}"}"#,
        )
        .expect("write");
        let loaded = load_tokenizer(&dir).expect("load");
        let tok = &loaded.tokenizer;
        let opts = EncodeOptions {
            add_special: true,
            parse_special: true,
        };
        assert_eq!(tok.encode(" a<|x|>", opts).expect("encode"), [2, 3]);
        assert_eq!(tok.eos_id(), Some(3));
        let chat = loaded.chat().expect("template").expect("compiles");
        let out = chat
            .render(&[ChatMessage::new("user", "hi")], false)
            .expect("render");
        assert_eq!(out, "hi");

        let wp = r###"{"added_tokens":[{"id":0,"content":"[UNK]","special":true},
            {"id":1,"content":"[CLS]","special":true},{"id":2,"content":"[SEP]","special":true}],
            "normalizer":{"type":"BertNormalizer","clean_text":true,"handle_chinese_chars":true,
            "strip_accents":null,"lowercase":true},
            "post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"[CLS]","type_id":0}},
            {"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"[SEP]","type_id":0}}],
            "special_tokens":{"[CLS]":{"id":"[CLS]","ids":[1],"tokens":["[CLS]"]},
            "[SEP]":{"id":"[SEP]","ids":[2],"tokens":["[SEP]"]}}},
            "model":{"type":"WordPiece","unk_token":"[UNK]","continuing_subword_prefix":"##",
            "max_input_chars_per_word":100,"vocab":{"[UNK]":0,"[CLS]":1,"[SEP]":2,"cafe":3,"##s":4,"!":5}}}"###;
        std::fs::write(dir.join("tokenizer.json"), wp).expect("write");
        std::fs::write(
            dir.join("sentence_bert_config.json"),
            r#"{"max_seq_length":4}"#,
        )
        .expect("write");
        let tok = tokenizer_from_hf_dir(&dir).expect("load");
        let enc = tok.encode_with_mask("CAFÉs! x", true).expect("encode");
        // [CLS] cafe ##s ! [UNK] [SEP], truncated to 4 with [SEP] kept.
        assert_eq!(enc.ids, [1, 3, 4, 2]);
        assert_eq!(enc.attention_mask, [1, 1, 1, 1]);
        let sparse = r#"{"added_tokens":[{"id":4000000000,"content":"x","special":true}],
            "model":{"type":"WordPiece","vocab":{"[UNK]":0}}}"#;
        std::fs::write(dir.join("tokenizer.json"), sparse).expect("write");
        assert!(matches!(
            tokenizer_from_hf_dir(&dir),
            Err(LoadError::BadValue { .. })
        ));
        std::fs::write(dir.join("tokenizer.json"), "{not json").expect("write");
        assert!(matches!(
            tokenizer_from_hf_dir(&dir),
            Err(LoadError::Json { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
