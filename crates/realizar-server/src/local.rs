//! Engines over real models opened with [`Model::open`]: a GGUF decoder served by the
//! runtime's continuous-batching [`Batcher`] ([`LocalEngine`]), and a Hugging Face BERT
//! directory for embeddings ([`LocalEmbedder`]).

use std::path::Path;
use std::sync::{Arc, Mutex};

use realizar_runtime::batcher::{Batcher, BatcherConfig};
use realizar_runtime::embed::Embedder;
use realizar_runtime::{LoadOptions, Model, Network, RuntimeError, TemplateChoice};

use crate::engine::{
    gen_channel, ChatContext, ChatFeatures, ChatMessage, ChatPrompt, ContentSpecials, Embeddings,
    Engine, EngineError, EngineLoad, GenRequest, GenStream, ModelInfo, ModelKind,
};
use crate::error::ServerError;

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
    /// [`BatcherConfig::reuse_prefix`]).
    pub reuse_prefix: bool,
    /// Map the model file (true) or read it into memory (see `LoadOptions::mmap`).
    pub mmap: bool,
    /// The chat template instead of the file's own (see `LoadOptions::chat_template`).
    pub chat_template: Option<TemplateChoice>,
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
            mmap: true,
            chat_template: None,
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

/// [`Model::open`] with the serving options.
fn open(path: &Path, opts: &LocalOptions) -> Result<Model, ServerError> {
    Model::open(
        path,
        &LoadOptions {
            threads: opts.threads,
            ctx: opts.ctx,
            mmap: opts.mmap,
            chat_template: opts.chat_template.clone(),
            ..LoadOptions::default()
        },
    )
    .map_err(|e| load_err(path, e))
}

/// Loads a model for serving through [`Model::open`]: a `.gguf` file is a generator, a
/// Hugging Face directory (or a file in one) a generator or an embedding model, as its
/// `config.json` says. Its default id is the file's or directory's name.
pub fn load_engine(path: &Path, opts: &LocalOptions) -> Result<Arc<dyn Engine>, ServerError> {
    let model = open(path, opts)?;
    let id = opts.id.clone().unwrap_or_else(|| {
        let in_dir = path.is_file()
            && (matches!(model.network(), Network::Encoder(_))
                || path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("safetensors")));
        default_id(if in_dir {
            path.parent().unwrap_or(path)
        } else {
            path
        })
    });
    match model.network() {
        Network::Decoder(_) => Ok(Arc::new(LocalEngine::new(id, model, opts)?)),
        Network::Encoder(_) => Ok(Arc::new(LocalEmbedder::new(id, model)?)),
    }
}

/// Maps a runtime error of a request to the engine's error (`param` names the field at fault).
fn request_err(param: &'static str, e: RuntimeError) -> EngineError {
    match e {
        RuntimeError::Unsupported { what } => EngineError::InvalidInput {
            param,
            reason: format!("the model has no {what}"),
        },
        other => EngineError::InvalidInput {
            param,
            reason: other.to_string(),
        },
    }
}

/// A GGUF decoder behind the runtime's continuous-batching [`Batcher`].
pub struct LocalEngine {
    id: String,
    model: Model,
    ctx: usize,
    max_token_bytes: usize,
    batcher: Batcher,
}

impl core::fmt::Debug for LocalEngine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LocalEngine")
            .field("id", &self.id)
            .field("path", &self.model.path())
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl LocalEngine {
    /// Allocates the KV caches of `opts.parallel` slots over an opened decoder and starts the
    /// batcher thread.
    pub fn new(id: String, model: Model, opts: &LocalOptions) -> Result<LocalEngine, ServerError> {
        let path = model.path().to_path_buf();
        let decoder = model.require_decoder().map_err(|e| load_err(&path, e))?;
        if model.tokenizer().is_none() {
            return Err(load_err(&path, "the file has no tokenizer"));
        }
        let ctx = decoder.ctx();
        let batcher = model
            .batcher(
                opts.parallel,
                BatcherConfig {
                    queue: opts.queue,
                    prefill_chunk: opts.prefill_chunk.max(1),
                    reuse_prefix: opts.reuse_prefix,
                },
            )
            .map_err(|e| load_err(&path, e))?;
        let max_token_bytes = model.tokenizer().map_or(0, |t| t.max_token_bytes());
        Ok(LocalEngine {
            id,
            model,
            ctx,
            max_token_bytes,
            batcher,
        })
    }

    /// Opens `path` with [`Model::open`] and serves it.
    pub fn load(path: &Path, opts: &LocalOptions) -> Result<LocalEngine, ServerError> {
        let model = open(path, opts)?;
        let id = opts.id.clone().unwrap_or_else(|| default_id(path));
        LocalEngine::new(id, model, opts)
    }
}

fn tokenize_with(
    model: &Model,
    text: &str,
    add_special: bool,
    parse_special: bool,
) -> Result<Vec<u32>, EngineError> {
    model
        .tokenize(text, add_special, parse_special)
        .map_err(|e| request_err("content", e))
}

fn detokenize_with(model: &Model, ids: &[u32]) -> Result<String, EngineError> {
    model.detokenize(ids).map_err(|e| request_err("tokens", e))
}

impl Engine for LocalEngine {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            id: self.id.clone(),
            kind: ModelKind::Generate,
            ctx: self.ctx,
            size_bytes: self.model.size_bytes(),
            has_chat_template: self.model.has_chat_template(),
            n_vocab: self.model.n_vocab(),
            max_token_bytes: self.max_token_bytes,
        }
    }

    fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, EngineError> {
        tokenize_with(&self.model, text, add_special, parse_special)
    }

    fn detokenize(&self, ids: &[u32]) -> Result<String, EngineError> {
        detokenize_with(&self.model, ids)
    }

    fn chat_prompt(
        &self,
        messages: &[ChatMessage],
        context: &ChatContext,
        content: ContentSpecials,
    ) -> Result<ChatPrompt, EngineError> {
        if !self.model.has_chat_template() {
            return Err(EngineError::Unsupported {
                model: self.id.clone(),
                what: "chat (it has no chat template)",
            });
        }
        self.model
            .chat_prompt_in(messages, context, content)
            .map_err(|e| request_err("messages", e))
    }

    fn chat_features(&self) -> ChatFeatures {
        self.model.chat_features()
    }

    fn control_token(&self, text: &str) -> Option<u32> {
        self.model.control_token(text)
    }

    fn submit(&self, req: GenRequest) -> Result<GenStream, EngineError> {
        self.model
            .check_file()
            .map_err(|e| EngineError::Broken(e.to_string()))?;
        let (tx, stream) = gen_channel();
        self.batcher.submit_to(req, Box::new(tx))?;
        Ok(stream)
    }

    fn load(&self) -> EngineLoad {
        self.batcher.load()
    }
}

/// A sentence-embedding model (a Hugging Face BERT directory).
pub struct LocalEmbedder {
    id: String,
    model: Model,
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
    /// Serves an opened encoder model, which must have a tokenizer.
    pub fn new(id: String, model: Model) -> Result<LocalEmbedder, ServerError> {
        if model.embedder().is_none() {
            return Err(load_err(model.path(), "not an embedding model"));
        }
        if model.tokenizer().is_none() {
            return Err(load_err(
                model.path(),
                "the directory has no tokenizer.json",
            ));
        }
        Ok(LocalEmbedder {
            id,
            model,
            busy: Mutex::new(()),
        })
    }

    /// Opens the directory (or the directory of a file in it) with [`Model::open`].
    pub fn load(path: &Path, id: Option<String>) -> Result<LocalEmbedder, ServerError> {
        let model = Model::open(path, &LoadOptions::default()).map_err(|e| load_err(path, e))?;
        let dir = if path.is_file() {
            path.parent().unwrap_or(path)
        } else {
            path
        };
        LocalEmbedder::new(id.unwrap_or_else(|| default_id(dir)), model)
    }

    fn embedder(&self) -> Result<&Embedder, EngineError> {
        self.model
            .embedder()
            .ok_or_else(|| EngineError::Internal("not an embedding model".into()))
    }
}

impl Engine for LocalEmbedder {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            id: self.id.clone(),
            kind: ModelKind::Embed,
            ctx: self.model.embedder().map_or(0, Embedder::max_seq_length),
            size_bytes: self.model.size_bytes(),
            has_chat_template: false,
            n_vocab: self.model.n_vocab(),
            // WordPiece normalization drops characters (accents, controls): no bound.
            max_token_bytes: 0,
        }
    }

    fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, EngineError> {
        tokenize_with(&self.model, text, add_special, parse_special)
    }

    fn detokenize(&self, ids: &[u32]) -> Result<String, EngineError> {
        detokenize_with(&self.model, ids)
    }

    fn embed(&self, inputs: &[String]) -> Result<Embeddings, EngineError> {
        let embedder = self.embedder()?;
        let texts: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let ids = embedder
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
                embedder
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
