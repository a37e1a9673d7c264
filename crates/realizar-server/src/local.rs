//! Engines over real models: a GGUF decoder served by the continuous-batching [`Scheduler`]
//! ([`LocalEngine`]), and a Hugging Face BERT directory for embeddings ([`LocalEmbedder`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use realizar_runtime::batch::{BatchDecoder, BatchOptions};
use realizar_runtime::embed::Embedder;
use realizar_runtime::tokenizer_load::{chat_template_for, tokenizer_from_gguf};
use realizar_runtime::{DecoderModel, LoadOptions};
use realizar_tokenize::{ChatTemplate, EncodeOptions, Tokenizer};

use crate::engine::{
    ChatMessage, Embeddings, Engine, EngineError, EngineLoad, GenRequest, GenStream, ModelInfo,
    ModelKind,
};
use crate::error::ServerError;
use crate::scheduler::{Scheduler, SchedulerConfig, TokenText};

/// How to load and serve a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalOptions {
    /// The name clients use (`None`: the file or directory name without extension).
    pub id: Option<String>,
    /// Compute threads (`None`: physical cores).
    pub threads: Option<usize>,
    /// Positions of each sequence (`None`: the model's trained length, at most 4096).
    pub ctx: Option<usize>,
    /// Sequences decoded together.
    pub parallel: usize,
    /// Requests that may wait for a slot.
    pub queue: usize,
    /// Most prompt tokens of one sequence per step.
    pub prefill_chunk: usize,
    /// Reuse the cached prefix a new prompt shares with a slot's previous sequence (see
    /// [`SchedulerConfig::reuse_prefix`]).
    pub reuse_prefix: bool,
}

impl Default for LocalOptions {
    fn default() -> LocalOptions {
        LocalOptions {
            id: None,
            threads: None,
            ctx: Some(2048),
            parallel: 4,
            queue: 64,
            prefill_chunk: 64,
            reuse_prefix: true,
        }
    }
}

fn default_id(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    name.strip_suffix(".gguf")
        .map(str::to_string)
        .unwrap_or(name)
}

fn load_err(path: &Path, reason: impl std::fmt::Display) -> ServerError {
    ServerError::Load {
        model: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Loads a model for serving: a `.gguf` file is a generator, a directory (or a file in one)
/// with `config.json` and safetensors weights is an embedding model.
pub fn load_engine(path: &Path, opts: &LocalOptions) -> Result<Arc<dyn Engine>, ServerError> {
    let is_dir_model = path.is_dir()
        || path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
    if is_dir_model {
        Ok(Arc::new(LocalEmbedder::load(path, opts.id.clone())?))
    } else {
        Ok(Arc::new(LocalEngine::load(path, opts)?))
    }
}

struct TokText {
    tok: Arc<Tokenizer>,
    eog: Vec<u32>,
}

impl TokenText for TokText {
    fn decode_bytes(&self, ids: &[u32]) -> Vec<u8> {
        self.tok.decode_bytes(ids, true).unwrap_or_default()
    }

    fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    fn piece(&self, id: u32) -> String {
        self.tok
            .decode_bytes(&[id], false)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

/// A GGUF decoder behind the continuous-batching scheduler.
pub struct LocalEngine {
    id: String,
    path: PathBuf,
    size: u64,
    ctx: usize,
    tok: Arc<Tokenizer>,
    template: Option<ChatTemplate>,
    scheduler: Scheduler,
}

impl core::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalEngine")
            .field("id", &self.id)
            .field("path", &self.path)
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl LocalEngine {
    /// Maps the GGUF file, builds its tokenizer and chat template, allocates the KV caches of
    /// `opts.parallel` slots and starts the scheduler thread.
    pub fn load(path: &Path, opts: &LocalOptions) -> Result<LocalEngine, ServerError> {
        let model = DecoderModel::load(
            path,
            &LoadOptions {
                threads: opts.threads,
                ctx: opts.ctx,
                ..LoadOptions::default()
            },
        )
        .map_err(|e| load_err(path, e))?;
        let tok = model
            .with_gguf(tokenizer_from_gguf)
            .map_err(|e| load_err(path, e))?
            .map_err(|e| load_err(path, e))?;
        let template = model
            .with_gguf(|f| chat_template_for(f, &tok))
            .map_err(|e| load_err(path, e))?
            .transpose()
            .map_err(|e| load_err(path, format!("chat template: {e}")))?;
        let mut eog: Vec<u32> = model.special().eog.clone();
        eog.extend_from_slice(tok.eog_ids());
        eog.sort_unstable();
        eog.dedup();
        let slots = opts.parallel.max(1);
        let prefill_chunk = opts.prefill_chunk.max(1);
        let batch = BatchDecoder::new(
            &model,
            BatchOptions {
                slots,
                ctx: Some(model.ctx()),
                max_rows: slots + prefill_chunk,
                ..BatchOptions::default()
            },
        )
        .map_err(|e| load_err(path, e))?;
        let ctx = model.ctx();
        let tok = Arc::new(tok);
        let scheduler = Scheduler::start(
            batch,
            Arc::new(TokText {
                tok: tok.clone(),
                eog,
            }),
            SchedulerConfig {
                queue: opts.queue,
                prefill_chunk,
                reuse_prefix: opts.reuse_prefix,
            },
        )
        .map_err(|e| load_err(path, e))?;
        Ok(LocalEngine {
            id: opts.id.clone().unwrap_or_else(|| default_id(path)),
            size: std::fs::metadata(path).map_or(0, |m| m.len()),
            path: path.to_path_buf(),
            ctx,
            tok,
            template,
            scheduler,
        })
    }
}

fn tokenize_with(
    tok: &Tokenizer,
    text: &str,
    add_special: bool,
    parse_special: bool,
) -> Result<Vec<u32>, EngineError> {
    let mut ids = tok
        .encode(
            text,
            EncodeOptions {
                add_special,
                parse_special,
            },
        )
        .map_err(|e| EngineError::InvalidInput {
            param: "content",
            reason: e.to_string(),
        })?;
    // A template that writes BOS itself, tokenized with BOS added: keep one.
    if let (Some(bos), true) = (tok.bos_id(), add_special) {
        if ids.len() >= 2 && ids[0] == bos && ids[1] == bos {
            ids.remove(0);
        }
    }
    Ok(ids)
}

fn detokenize_with(tok: &Tokenizer, ids: &[u32]) -> Result<String, EngineError> {
    let n = tok.vocab_size();
    if let Some((i, id)) = ids.iter().enumerate().find(|(_, &id)| id as usize >= n) {
        return Err(EngineError::InvalidInput {
            param: "tokens",
            reason: format!("tokens[{i}] = {id} is outside the vocabulary of {n}"),
        });
    }
    tok.decode(ids, false)
        .map_err(|e| EngineError::InvalidInput {
            param: "tokens",
            reason: e.to_string(),
        })
}

impl Engine for LocalEngine {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            id: self.id.clone(),
            kind: ModelKind::Generate,
            ctx: self.ctx,
            size_bytes: self.size,
            has_chat_template: self.template.is_some(),
        }
    }

    fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, EngineError> {
        tokenize_with(&self.tok, text, add_special, parse_special)
    }

    fn detokenize(&self, ids: &[u32]) -> Result<String, EngineError> {
        detokenize_with(&self.tok, ids)
    }

    fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let t = self
            .template
            .as_ref()
            .ok_or_else(|| EngineError::Unsupported {
                model: self.id.clone(),
                what: "chat (it has no chat template)",
            })?;
        t.render(messages, true)
            .map_err(|e| EngineError::InvalidInput {
                param: "messages",
                reason: format!("the chat template failed: {e}"),
            })
    }

    fn submit(&self, req: GenRequest) -> Result<GenStream, EngineError> {
        let n = self.tok.vocab_size();
        if let Some((i, id)) = req
            .prompt
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= n)
        {
            return Err(EngineError::InvalidInput {
                param: "prompt",
                reason: format!("prompt[{i}] = {id} is outside the vocabulary of {n}"),
            });
        }
        self.scheduler.submit(req)
    }

    fn load(&self) -> EngineLoad {
        self.scheduler.load()
    }
}

/// A sentence-embedding model (a Hugging Face BERT directory).
pub struct LocalEmbedder {
    id: String,
    size: u64,
    embedder: Embedder,
    /// One embedding batch at a time: it already uses every core.
    busy: Mutex<()>,
}

impl core::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalEmbedder")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl LocalEmbedder {
    /// Loads the directory (or the directory of a file in it).
    pub fn load(path: &Path, id: Option<String>) -> Result<LocalEmbedder, ServerError> {
        let embedder = Embedder::load(path).map_err(|e| load_err(path, e))?;
        if embedder.tokenizer().is_none() {
            return Err(load_err(path, "the directory has no tokenizer.json"));
        }
        let dir = if path.is_file() {
            path.parent().unwrap_or(path)
        } else {
            path
        };
        let size = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        Ok(LocalEmbedder {
            id: id.unwrap_or_else(|| default_id(dir)),
            size,
            embedder,
            busy: Mutex::new(()),
        })
    }
}

impl Engine for LocalEmbedder {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            id: self.id.clone(),
            kind: ModelKind::Embed,
            ctx: self.embedder.max_seq_length(),
            size_bytes: self.size,
            has_chat_template: false,
        }
    }

    fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, EngineError> {
        match self.embedder.tokenizer() {
            Some(t) => tokenize_with(t, text, add_special, parse_special),
            None => Err(EngineError::Unsupported {
                model: self.id.clone(),
                what: "tokenization",
            }),
        }
    }

    fn detokenize(&self, ids: &[u32]) -> Result<String, EngineError> {
        match self.embedder.tokenizer() {
            Some(t) => detokenize_with(t, ids),
            None => Err(EngineError::Unsupported {
                model: self.id.clone(),
                what: "detokenization",
            }),
        }
    }

    fn embed(&self, inputs: &[String]) -> Result<Embeddings, EngineError> {
        let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let ids = self
            .embedder
            .tokenize(&texts)
            .map_err(|e| EngineError::InvalidInput {
                param: "input",
                reason: e.to_string(),
            })?;
        let prompt_tokens = ids.iter().map(Vec::len).sum();
        let _guard = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        // Embed in batches of at most 32 texts to bound the activation memory.
        let mut vectors = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(32) {
            vectors.extend(
                self.embedder
                    .embed_ids(chunk)
                    .map_err(|e| EngineError::Internal(e.to_string()))?,
            );
        }
        Ok(Embeddings {
            vectors,
            prompt_tokens,
        })
    }
}
