//! Loading a decoder model from a GGUF file: the file is memory-mapped once and the weights are
//! used in place; a [`Session`] owns a KV cache and scratch buffers for one sequence.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use realizar_format_gguf::{GgufFile, MmapGguf};
use realizar_nn::{CpuBackend, Decoder, KvCache, KvType, Logits, NnError, Scratch, WeightBytes};

use crate::RuntimeError;

/// The memory map, shared by the decoder (which keeps `(offset, len)` views into it).
struct MappedFile(MmapGguf);

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}

/// Options of [`DecoderModel::load`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Worker threads (`None`: physical cores).
    pub threads: Option<usize>,
    /// Context length of sessions (`None`: the model's trained length, at most 4096).
    pub ctx: Option<usize>,
    /// KV cache element type.
    pub kv_type: KvType,
    /// Largest batch a forward pass processes at once (longer prompts are split).
    pub max_batch: usize,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            threads: None,
            ctx: None,
            kv_type: KvType::F16,
            max_batch: 512,
        }
    }
}

/// Texts of tokens that end generation, as llama.cpp's vocabulary loader recognises them
/// (src/llama-vocab.cpp: end-of-turn texts and the FIM repo/pad/separator tokens).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
];

/// Special tokens of the vocabulary that matter for generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// Whether the tokenizer adds BOS at the start of a text.
    pub add_bos: bool,
    /// Every token that ends generation, sorted.
    pub eog: Vec<u32>,
}

impl SpecialTokens {
    /// Reads them from GGUF metadata (`tokenizer.ggml.*`).
    pub fn from_gguf(file: &GgufFile<'_>) -> SpecialTokens {
        let id = |k: &str| file.get_u32(k).ok();
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos = id("tokenizer.ggml.eos_token_id");
        let model = file.get_str("tokenizer.ggml.model").unwrap_or("");
        let add_bos = file
            .get_bool("tokenizer.ggml.add_bos_token")
            .unwrap_or(matches!(model, "llama" | "gemma"));
        let mut eog: Vec<u32> = [
            eos,
            id("tokenizer.ggml.eot_token_id"),
            id("tokenizer.ggml.eom_token_id"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Ok(tokens) = file.get_strings("tokenizer.ggml.tokens") {
            for (i, t) in tokens.enumerate() {
                if EOG_TEXTS.contains(&t) {
                    eog.push(i as u32);
                }
            }
        }
        eog.sort_unstable();
        eog.dedup();
        SpecialTokens {
            bos,
            eos,
            add_bos,
            eog,
        }
    }

    /// Whether `id` ends generation.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }
}

/// A decoder model loaded from a GGUF file.
#[derive(Clone, Debug)]
pub struct DecoderModel {
    path: PathBuf,
    map: Arc<MappedFile>,
    decoder: Decoder,
    special: SpecialTokens,
    ctx: usize,
    kv_type: KvType,
    max_batch: usize,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MappedFile({} bytes)", self.0.bytes().len())
    }
}

impl DecoderModel {
    /// Maps `path` and builds the decoder. Errors: [`RuntimeError::Io`] when the file cannot be
    /// opened, [`RuntimeError::Format`] when it is not GGUF, [`RuntimeError::Model`] when the
    /// model in it is inconsistent.
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<DecoderModel, RuntimeError> {
        let path = path.as_ref().to_path_buf();
        let mmap = MmapGguf::open(&path).map_err(|source| RuntimeError::Io {
            path: path.clone(),
            source,
        })?;
        let map = Arc::new(MappedFile(mmap));
        let threads = crate::threads::resolve_threads(opts.threads);
        let model_err = |source: NnError| RuntimeError::Model {
            path: path.clone(),
            source,
        };
        let backend = Arc::new(CpuBackend::new(threads).map_err(model_err)?);
        let (decoder, special) = {
            let file = map.0.parse().map_err(|source| RuntimeError::Format {
                path: path.clone(),
                source: Box::new(source),
            })?;
            let bytes: WeightBytes = map.clone();
            let decoder = Decoder::from_gguf(&file, bytes, backend).map_err(model_err)?;
            (decoder, SpecialTokens::from_gguf(&file))
        };
        let ctx = match opts.ctx {
            Some(0) => {
                return Err(RuntimeError::InvalidArgument {
                    reason: "the context length must be positive".into(),
                })
            }
            Some(n) => n,
            None => decoder.config().context_length.clamp(1, 4096),
        };
        Ok(DecoderModel {
            path,
            map,
            decoder,
            special,
            ctx,
            kv_type: opts.kv_type,
            max_batch: opts.max_batch.max(1),
        })
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The decoder.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// Vocabulary size.
    pub fn n_vocab(&self) -> usize {
        self.decoder.config().n_vocab
    }

    /// Special tokens.
    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// The context length of new sessions.
    pub fn ctx(&self) -> usize {
        self.ctx
    }

    /// The mapped file's bytes (parse them again with `GgufFile::parse` for the tokenizer).
    pub fn file_bytes(&self) -> &[u8] {
        self.map.0.bytes()
    }

    /// Runs `f` on the parsed GGUF file.
    pub fn with_gguf<R>(&self, f: impl FnOnce(&GgufFile<'_>) -> R) -> Result<R, RuntimeError> {
        let file = self.map.0.parse().map_err(|source| RuntimeError::Format {
            path: self.path.clone(),
            source: Box::new(source),
        })?;
        Ok(f(&file))
    }

    /// A new session with an empty KV cache of [`DecoderModel::ctx`] positions.
    pub fn session(&self) -> Result<Session<'_>, RuntimeError> {
        self.session_with_ctx(self.ctx)
    }

    /// A new session with a KV cache of `ctx` positions.
    pub fn session_with_ctx(&self, ctx: usize) -> Result<Session<'_>, RuntimeError> {
        let cache = self.decoder.new_cache(self.kv_type, ctx)?;
        let scratch = self.decoder.new_scratch(self.max_batch.min(ctx));
        Ok(Session {
            model: self,
            cache,
            scratch,
        })
    }
}

/// One sequence being evaluated: a KV cache and the scratch buffers of the forward pass.
#[derive(Debug)]
pub struct Session<'m> {
    model: &'m DecoderModel,
    cache: KvCache,
    scratch: Scratch,
}

impl Session<'_> {
    /// Evaluates `tokens` after those already in the cache and returns the logits asked for.
    pub fn eval(&mut self, tokens: &[u32], logits: Logits) -> Result<&[f32], RuntimeError> {
        if tokens.len() > self.cache.capacity().saturating_sub(self.cache.len()) {
            return Err(RuntimeError::PromptTooLong {
                tokens: self.cache.len() + tokens.len(),
                ctx: self.cache.capacity(),
            });
        }
        Ok(self
            .model
            .decoder
            .forward(tokens, &mut self.cache, &mut self.scratch, logits)?)
    }

    /// Positions in the cache.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// The cache's capacity.
    pub fn capacity(&self) -> usize {
        self.cache.capacity()
    }

    /// Empties the cache.
    pub fn reset(&mut self) {
        self.cache.clear();
    }

    /// The model.
    pub fn model(&self) -> &DecoderModel {
        self.model
    }
}
