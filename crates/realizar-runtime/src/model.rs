//! Opening a model: [`Model::open`] is the one way in, for every front end. A GGUF file is
//! memory-mapped and parsed once into its decoder (weights used in place), tokenizer, chat
//! template and special tokens; a Hugging Face directory becomes a decoder the same way (its
//! safetensors shards mapped, `config.json` read by [`crate::hf_source`]) or an encoder
//! ([`Embedder`]).
//! A [`Session`] owns a KV cache and scratch buffers for one sequence of a [`DecoderModel`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use realizar_format_gguf::{GgufFile, MmapGguf};
use realizar_nn::{
    Backend, CpuBackend, Decoder, KvState, KvType, Logits, NnError, ReferenceBackend, Scratch,
    WeightBytes,
};
use realizar_tokenize::{
    ChatContext, ChatMessage, ChatTemplate, EncodeOptions, TextStream, TokenType, Tokenizer,
};

use crate::batch::{BatchDecoder, BatchOptions};
use crate::batcher::{BatchText, Batcher, BatcherConfig};
use crate::embed::Embedder;
use crate::gguf_source::{check_vocabulary, GgufSource};
use crate::hf_dir::ModelDir;
use crate::tokenizer_load::{chat_template_for, tokenizer_from_gguf};
use crate::tools::ToolFormat;
use crate::RuntimeError;

/// What a model's chat template does beyond rendering text turns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChatFeatures {
    /// The syntax it calls tools with.
    pub tools: ToolFormat,
    /// Whether it writes reasoning (`<think>…</think>`).
    pub thinking: bool,
}

/// A conversation's prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatPrompt {
    /// Its ids.
    pub ids: Vec<u32>,
    /// Whether it ends inside an open reasoning block (`<think>`), which the reply continues.
    pub thinking_open: bool,
}

/// Every string of a JSON value (keys too) through `mark`.
fn mark_json(v: &serde_json::Value, mark: &dyn Fn(&str) -> String) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) => Value::String(mark(s)),
        Value::Array(a) => Value::Array(a.iter().map(|x| mark_json(x, mark)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, x)| (mark(k), mark_json(x, mark)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The file's bytes, shared by the decoder (which keeps `(offset, len)` views into them):
/// mapped (the default: loads at once, shares pages between processes), or read into memory
/// ([`LoadOptions::mmap`] false: immune to the file changing on disk).
enum FileBytes {
    Mapped(MmapGguf),
    Read(ReadFile),
}

/// A file read into memory, 64-byte aligned like the tensors' views need.
struct ReadFile {
    chunks: Vec<Align64>,
    len: usize,
}

#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
#[repr(C, align(64))]
struct Align64([u8; 64]);

impl ReadFile {
    /// An aligned copy of `bytes`.
    fn copy(bytes: &[u8]) -> std::io::Result<ReadFile> {
        let mut chunks: Vec<Align64> = Vec::new();
        chunks
            .try_reserve_exact(bytes.len().div_ceil(64))
            .map_err(|_| std::io::Error::other("out of memory"))?;
        chunks.resize(bytes.len().div_ceil(64), Align64([0; 64]));
        let buf: &mut [u8] = bytemuck::cast_slice_mut(&mut chunks);
        if let Some(dst) = buf.get_mut(..bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        Ok(ReadFile {
            chunks,
            len: bytes.len(),
        })
    }

    fn read(path: &Path) -> std::io::Result<ReadFile> {
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        let meta = f.metadata()?;
        if !meta.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        let len = usize::try_from(meta.len()).map_err(std::io::Error::other)?;
        let mut chunks: Vec<Align64> = Vec::new();
        chunks.try_reserve_exact(len.div_ceil(64)).map_err(|_| {
            std::io::Error::other(format!(
                "cannot hold the {} MiB file in memory (load it mapped instead)",
                len >> 20
            ))
        })?;
        chunks.resize(len.div_ceil(64), Align64([0; 64]));
        let buf: &mut [u8] = bytemuck::cast_slice_mut(&mut chunks);
        f.read_exact(buf.get_mut(..len).unwrap_or_default())?;
        Ok(ReadFile { chunks, len })
    }

    fn bytes(&self) -> &[u8] {
        let all: &[u8] = bytemuck::cast_slice(&self.chunks);
        all.get(..self.len).unwrap_or_default()
    }
}

impl FileBytes {
    fn bytes(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m.bytes(),
            FileBytes::Read(r) => r.bytes(),
        }
    }

    fn parse(&self) -> Result<GgufFile<'_>, realizar_format_gguf::GgufError> {
        GgufFile::parse(self.bytes())
    }
}

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

/// Options of [`Model::open`] and [`DecoderModel::load`].
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
    /// The compute backend.
    pub backend: BackendKind,
    /// Map the file (the default: fast to load, pages shared between processes, but a file
    /// truncated on disk while in use can no longer be read, which is detected and refused) or
    /// read it into memory (false: costs the file's size in memory and a full read at load;
    /// immune to the file changing).
    pub mmap: bool,
    /// The chat template to render conversations with instead of the file's own (`None`: the
    /// file's `tokenizer.chat_template`, else its family's built-in template).
    pub chat_template: Option<TemplateChoice>,
}

/// A chat template chosen instead of the one a model file carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateChoice {
    /// One of llama.cpp's built-in named templates ([`realizar_tokenize::BUILTIN_TEMPLATES`]).
    Builtin(String),
    /// A Jinja template's source.
    Jinja(String),
}

impl TemplateChoice {
    /// `--chat-template NAME|FILE`: a built-in template's name, else the path of a Jinja
    /// template file (at most 1 MiB).
    pub fn from_arg(arg: &str) -> Result<TemplateChoice, String> {
        if realizar_tokenize::Builtin::named(arg).is_some() {
            return Ok(TemplateChoice::Builtin(arg.to_string()));
        }
        let path = Path::new(arg);
        let names = realizar_tokenize::BUILTIN_TEMPLATES.join(", ");
        let meta = std::fs::metadata(path).map_err(|e| {
            format!(
                "`{arg}` is neither a built-in chat template ({names}) nor a readable file: {e}"
            )
        })?;
        if !meta.is_file() {
            return Err(format!("chat template `{arg}` is not a regular file"));
        }
        const MAX: u64 = 1 << 20;
        if meta.len() > MAX {
            return Err(format!(
                "chat template file `{arg}` has {} bytes; at most {MAX} are read",
                meta.len()
            ));
        }
        std::fs::read_to_string(path)
            .map(TemplateChoice::Jinja)
            .map_err(|e| format!("cannot read chat template file `{arg}`: {e}"))
    }
}

/// Which compute backend runs a decoder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// The CPU backend: SIMD kernels on a thread pool.
    #[default]
    Cpu,
    /// The scalar single-threaded reference backend (for checking the fast one; slow).
    Reference,
}

impl Default for LoadOptions {
    fn default() -> LoadOptions {
        LoadOptions {
            threads: None,
            ctx: None,
            kv_type: KvType::F16,
            max_batch: 512,
            backend: BackendKind::Cpu,
            mmap: true,
            chat_template: None,
        }
    }
}

/// The special tokens that matter for generation: one rule for every front end, taken from
/// what llama.cpp does for the same file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// Whether the tokenizer adds BOS at the start of a text.
    pub add_bos: bool,
    /// Whether the tokenizer adds EOS at the end of a text.
    pub add_eos: bool,
    /// Every token that ends generation, sorted.
    pub eog: Vec<u32>,
}

impl SpecialTokens {
    /// With a tokenizer: its BOS/EOS policy and end-of-generation set (EOS, end of turn and the
    /// tokens llama.cpp recognises by their text, `realizar_tokenize::EOG_TEXTS`), plus the
    /// file's end-of-message token. Without one (a file with no vocabulary): the ids the
    /// metadata names, and no BOS added unless `tokenizer.ggml.add_bos_token` says so.
    pub fn resolve(file: &GgufFile<'_>, tok: Option<&Tokenizer>) -> SpecialTokens {
        let id = |k: &str| file.get_u32(k).ok();
        let flag = |k: &str| file.get_bool(k).unwrap_or(false);
        let eom = id("tokenizer.ggml.eom_token_id");
        let (bos, eos, add_bos, add_eos, mut eog) = match tok {
            Some(t) => {
                let s = t.special_tokens();
                (s.bos, s.eos, s.add_bos, s.add_eos, t.eog_ids().to_vec())
            }
            None => {
                let eos = id("tokenizer.ggml.eos_token_id");
                let eot = id("tokenizer.ggml.eot_token_id");
                (
                    id("tokenizer.ggml.bos_token_id"),
                    eos,
                    flag("tokenizer.ggml.add_bos_token"),
                    flag("tokenizer.ggml.add_eos_token"),
                    [eos, eot].into_iter().flatten().collect(),
                )
            }
        };
        eog.extend(eom);
        eog.sort_unstable();
        eog.dedup();
        SpecialTokens {
            bos,
            eos,
            add_bos,
            add_eos,
            eog,
        }
    }

    /// A tokenizer's BOS/EOS policy and end-of-generation set (a model without GGUF
    /// metadata: a Hugging Face directory).
    pub fn of_tokenizer(tok: &Tokenizer) -> SpecialTokens {
        let s = tok.special_tokens();
        SpecialTokens {
            bos: s.bos,
            eos: s.eos,
            add_bos: s.add_bos,
            add_eos: s.add_eos,
            eog: tok.eog_ids().to_vec(),
        }
    }

    /// Whether `id` ends generation.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }
}

/// A decoder model loaded from a GGUF file or a Hugging Face directory.
#[derive(Clone, Debug)]
pub struct DecoderModel {
    path: PathBuf,
    /// The files the weights are in: one GGUF file, or a directory's safetensors shards.
    files: Vec<Arc<FileBytes>>,
    /// Whether `files` is one GGUF file.
    gguf: bool,
    decoder: Decoder,
    special: SpecialTokens,
    ctx: usize,
    kv_type: KvType,
    max_batch: usize,
}

impl std::fmt::Debug for FileBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileBytes::Mapped(m) => write!(f, "Mapped({} bytes)", m.bytes().len()),
            FileBytes::Read(r) => write!(f, "Read({} bytes)", r.len),
        }
    }
}

impl DecoderModel {
    /// Maps `path` (a GGUF file, or a Hugging Face decoder directory) and builds the decoder
    /// (and, to find its special tokens, the tokenizer the model describes, if any).
    /// [`Model::open`] keeps the tokenizer and chat template too. Errors:
    /// [`RuntimeError::Io`] when a file cannot be opened, [`RuntimeError::Format`] when it is
    /// not GGUF, [`RuntimeError::Model`] when the model in it is inconsistent,
    /// [`RuntimeError::Tokenizer`] when its vocabulary is.
    pub fn load(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<DecoderModel, RuntimeError> {
        let path = path.as_ref();
        match decoder_dir(path)? {
            Some(md) => open_dir(path, &md, opts).map(|g| g.decoder),
            None => open_gguf(path, opts).map(|g| g.decoder),
        }
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

    /// Bytes of the model's files (the GGUF file, or every safetensors shard).
    pub fn file_size(&self) -> u64 {
        self.files.iter().map(|f| f.bytes().len() as u64).sum()
    }

    /// Checks that the mapped model files are still the files that were mapped (one `stat`
    /// each): the weights are read from the mappings, and a file truncated or rewritten in
    /// place would make that read fail (SIGBUS). Always fine for a model read into memory.
    pub fn check_file(&self) -> Result<(), RuntimeError> {
        for f in &self.files {
            if let FileBytes::Mapped(m) = &**f {
                m.check_unchanged().map_err(|e| RuntimeError::FileChanged {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        Ok(())
    }

    /// Runs `f` on the parsed GGUF file (parsed again: for tools that read the header, such as
    /// the benchmarks' weight accounting). A model loaded from a directory has none.
    pub fn with_gguf<R>(&self, f: impl FnOnce(&GgufFile<'_>) -> R) -> Result<R, RuntimeError> {
        let map = match self.files.first() {
            Some(m) if self.gguf => m,
            _ => {
                return Err(RuntimeError::Unsupported {
                    what: "GGUF file (it was loaded from a Hugging Face directory)",
                })
            }
        };
        let file = map.parse().map_err(|source| RuntimeError::Format {
            path: self.path.clone(),
            source: Box::new(source),
        })?;
        Ok(f(&file))
    }

    /// The weights as a decode step reads them (from the GGUF header, or the shards'
    /// headers).
    pub fn weight_cost(&self) -> Result<crate::bench::WeightCost, RuntimeError> {
        if self.gguf {
            return self.with_gguf(crate::bench::WeightCost::of);
        }
        let shards: Vec<crate::hf_source::Shard> = self
            .files
            .iter()
            .map(|f| crate::hf_source::Shard {
                name: String::new(),
                bytes: f.clone() as WeightBytes,
            })
            .collect();
        Ok(crate::bench::WeightCost::of_tensors(
            crate::hf_source::tensor_shapes(&shards).into_iter(),
        ))
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
    cache: Box<dyn KvState>,
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
            .forward(tokens, &mut *self.cache, &mut self.scratch, logits)?)
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

/// What [`open_gguf`] builds from one parse of a GGUF file (or [`open_dir`] from a
/// directory).
struct OpenedGguf {
    decoder: DecoderModel,
    tokenizer: Option<Tokenizer>,
    chat: Option<ChatTemplate>,
}

/// Maps and parses a GGUF file once and builds everything in it.
fn open_gguf(path: &Path, opts: &LoadOptions) -> Result<OpenedGguf, RuntimeError> {
    let io_err = |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let map = Arc::new(if opts.mmap {
        FileBytes::Mapped(MmapGguf::open(path).map_err(io_err)?)
    } else {
        FileBytes::Read(ReadFile::read(path).map_err(io_err)?)
    });
    build_gguf(path, map, opts)
}

/// The Hugging Face directory at `path` (or the directory of a `.safetensors` file in it), if
/// its `config.json` names a decoder [`crate::hf_source`] reads.
fn decoder_dir(path: &Path) -> Result<Option<ModelDir>, RuntimeError> {
    let dir = if path.is_dir() {
        path
    } else if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
    {
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    } else {
        return Ok(None);
    };
    // A directory that cannot be opened as a model directory is left to the encoder loader,
    // whose errors say what is missing.
    let Ok(md) = ModelDir::open(dir) else {
        return Ok(None);
    };
    let decoder = md
        .config
        .model_type
        .as_deref()
        .and_then(crate::hf_source::decoder_arch)
        .is_some();
    Ok(decoder.then_some(md))
}

/// Every file of a directory's checkpoint, mapped (or read).
fn map_shards(
    md: &ModelDir,
    opts: &LoadOptions,
) -> Result<Vec<(PathBuf, Arc<FileBytes>)>, RuntimeError> {
    md.weights
        .files()
        .into_iter()
        .map(|f| {
            let io_err = |source| RuntimeError::Io {
                path: f.to_path_buf(),
                source,
            };
            let bytes = if opts.mmap {
                // MmapGguf maps any regular file, with the stamp that detects it changing.
                FileBytes::Mapped(MmapGguf::open(f).map_err(io_err)?)
            } else {
                FileBytes::Read(ReadFile::read(f).map_err(io_err)?)
            };
            Ok((f.to_path_buf(), Arc::new(bytes)))
        })
        .collect()
}

/// Builds everything in a Hugging Face decoder directory: the decoder over its safetensors
/// shards, the tokenizer of `tokenizer.json`, the chat template of `tokenizer_config.json` (or
/// `chat_template.jinja`, else the family's built-in one) and the end-of-generation set
/// (the tokenizer's, with `generation_config.json`'s `eos_token_id`s, which Hugging Face's
/// generation stops on).
fn open_dir(path: &Path, md: &ModelDir, opts: &LoadOptions) -> Result<OpenedGguf, RuntimeError> {
    let model_err = |source: NnError| RuntimeError::Model {
        path: path.to_path_buf(),
        source,
    };
    let backend = make_backend(opts).map_err(model_err)?;
    let files = map_shards(md, opts)?;
    let shards: Vec<crate::hf_source::Shard> = files
        .iter()
        .map(|(p, f)| crate::hf_source::Shard {
            name: p
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            bytes: f.clone() as WeightBytes,
        })
        .collect();
    let source = crate::hf_source::HfDecoderSource::new(&md.config, &shards).map_err(model_err)?;
    let decoder = Decoder::from_source(&source, backend).map_err(model_err)?;
    drop(source);
    let tok_err = |source| RuntimeError::Tokenizer {
        path: path.to_path_buf(),
        source,
    };
    let tokenizer = match md.tokenizer {
        Some(_) => {
            let t = crate::tokenizer_load::tokenizer_from_hf_dir(&md.root).map_err(tok_err)?;
            let n_vocab = decoder.config().n_vocab;
            if t.vocab_size() > n_vocab {
                return Err(model_err(NnError::BadHyperparameter {
                    key: "tokenizer.json model.vocab".into(),
                    reason: format!(
                        "{} tokens but the embedding has {n_vocab} rows",
                        t.vocab_size()
                    ),
                }));
            }
            Some(t)
        }
        None => None,
    };
    let chat = match &tokenizer {
        Some(t) => {
            let src = match opts.chat_template.as_ref() {
                Some(_) => None,
                None => {
                    crate::tokenizer_load::chat_template_from_hf_dir(&md.root).map_err(tok_err)?
                }
            };
            let arch = decoder.config().arch.clone();
            let chosen = match src {
                Some(src) => {
                    let text = |id: Option<u32>| {
                        id.and_then(|i| t.token_to_piece(i))
                            .unwrap_or_default()
                            .to_string()
                    };
                    ChatTemplate::new(&src, text(t.bos_id()), text(t.eos_id()))
                }
                None => template_choice(&arch, t, opts.chat_template.as_ref()),
            };
            Some(chosen.map_err(|source| RuntimeError::Text {
                what: "the chat template",
                source,
            })?)
        }
        None => None,
    };
    let mut special = match &tokenizer {
        Some(t) => SpecialTokens::of_tokenizer(t),
        None => SpecialTokens::default(),
    };
    let n_vocab = decoder.config().n_vocab;
    for id in crate::tokenizer_load::generation_eos_ids(&md.root).map_err(tok_err)? {
        if (id as usize) < n_vocab {
            special.eog.push(id);
        }
    }
    special.eog.sort_unstable();
    special.eog.dedup();
    let decoder = finish_decoder(path, decoder, opts, special)?;
    Ok(OpenedGguf {
        decoder: DecoderModel {
            files: files.into_iter().map(|(_, f)| f).collect(),
            gguf: false,
            ..decoder
        },
        tokenizer,
        chat,
    })
}

/// The backend `opts` asks for, with its thread count checked.
fn make_backend(opts: &LoadOptions) -> Result<Arc<dyn Backend>, NnError> {
    if let Some(t) = opts.threads.filter(|&t| t > crate::threads::MAX_THREADS) {
        return Err(NnError::InvalidArgument {
            reason: format!(
                "{t} threads asked; at most {} are allowed",
                crate::threads::MAX_THREADS
            ),
        });
    }
    let threads = crate::threads::resolve_threads(opts.threads);
    Ok(match opts.backend {
        BackendKind::Cpu => Arc::new(CpuBackend::new(threads)?),
        BackendKind::Reference => Arc::new(ReferenceBackend::new()?),
    })
}

/// A decoder model of `decoder` with the context `opts` asks for (else the model's own,
/// at most 4096) and long-context rope factors chosen by it.
fn finish_decoder(
    path: &Path,
    mut decoder: Decoder,
    opts: &LoadOptions,
    special: SpecialTokens,
) -> Result<DecoderModel, RuntimeError> {
    let ctx = match opts.ctx {
        Some(0) => {
            return Err(RuntimeError::InvalidArgument {
                reason: "the context length must be positive".into(),
            })
        }
        Some(n) => n,
        None => decoder.config().context_length.clamp(1, 4096),
    };
    // Long-context rope factors (Phi-3's LongRoPE) are chosen by the context, as llama.cpp
    // chooses them by its context's length.
    decoder.use_context(ctx);
    Ok(DecoderModel {
        path: path.to_path_buf(),
        files: Vec::new(),
        gguf: true,
        decoder,
        special,
        ctx,
        kv_type: opts.kv_type,
        max_batch: opts.max_batch.max(1),
    })
}

/// The chat template of a model: the one asked for, else the file's own, else its family's
/// built-in one (llama.cpp's server would fall back to ChatML, which a Gemma or Llama 3
/// vocabulary cannot read).
fn choose_template(
    file: &realizar_format_gguf::GgufFile<'_>,
    tok: &Tokenizer,
    choice: Option<&TemplateChoice>,
) -> Result<ChatTemplate, realizar_tokenize::TokenizeError> {
    match choice {
        Some(_) => template_choice(file.architecture().unwrap_or_default(), tok, choice),
        None => match chat_template_for(file, tok) {
            Some(t) => t,
            None => template_choice(file.architecture().unwrap_or_default(), tok, None),
        },
    }
}

/// The template `choice` names, else the built-in template of the family `arch`.
fn template_choice(
    arch: &str,
    tok: &Tokenizer,
    choice: Option<&TemplateChoice>,
) -> Result<ChatTemplate, realizar_tokenize::TokenizeError> {
    let text = |id: Option<u32>| {
        id.and_then(|i| tok.token_to_piece(i))
            .unwrap_or_default()
            .to_string()
    };
    match choice {
        Some(TemplateChoice::Builtin(name)) => realizar_tokenize::Builtin::named(name)
            .map(ChatTemplate::builtin)
            .ok_or_else(|| {
                realizar_tokenize::TokenizeError::Template(format!(
                    "unknown built-in chat template `{name}` (known: {})",
                    realizar_tokenize::BUILTIN_TEMPLATES.join(", ")
                ))
            }),
        Some(TemplateChoice::Jinja(src)) => {
            ChatTemplate::new(src, text(tok.bos_id()), text(tok.eos_id()))
        }
        None => {
            let has = |t: &str| tok.token_to_id(t).is_some();
            Ok(ChatTemplate::builtin(realizar_tokenize::family_template(
                arch, &has,
            )))
        }
    }
}

/// Builds everything in a GGUF file held in `map`.
fn build_gguf(
    path: &Path,
    map: Arc<FileBytes>,
    opts: &LoadOptions,
) -> Result<OpenedGguf, RuntimeError> {
    if let Some(t) = opts.threads.filter(|&t| t > crate::threads::MAX_THREADS) {
        return Err(RuntimeError::InvalidArgument {
            reason: format!(
                "{t} threads asked; at most {} are allowed",
                crate::threads::MAX_THREADS
            ),
        });
    }
    let model_err = |source: NnError| RuntimeError::Model {
        path: path.to_path_buf(),
        source,
    };
    let backend = make_backend(opts).map_err(model_err)?;
    let file = map.parse().map_err(|source| RuntimeError::Format {
        path: path.to_path_buf(),
        source: Box::new(source),
    })?;
    let bytes: WeightBytes = map.clone();
    let decoder =
        Decoder::from_source(&GgufSource::new(&file, bytes), backend).map_err(model_err)?;
    check_vocabulary(&file, decoder.config().n_vocab).map_err(model_err)?;
    let tok_err = |source| RuntimeError::Tokenizer {
        path: path.to_path_buf(),
        source,
    };
    // A file without a vocabulary is a weights-only model (token ids in and out; it may still
    // name its special ids); one with any part of a vocabulary must have a whole, valid
    // tokenizer (tokenizer_from_gguf names the missing or broken key, as llama.cpp refuses
    // such files).
    let has_tokenizer_keys = ["model", "tokens", "token_type", "merges", "scores", "pre"]
        .iter()
        .any(|k| file.get(&format!("tokenizer.ggml.{k}")).is_some());
    let tokenizer = if has_tokenizer_keys {
        Some(tokenizer_from_gguf(&file).map_err(tok_err)?)
    } else {
        None
    };
    let chat = match &tokenizer {
        Some(t) => Some(
            choose_template(&file, t, opts.chat_template.as_ref()).map_err(|source| {
                RuntimeError::Text {
                    what: "the chat template",
                    source,
                }
            })?,
        ),
        None => None,
    };
    let special = SpecialTokens::resolve(&file, tokenizer.as_ref());
    drop(file);
    let decoder = finish_decoder(path, decoder, opts, special)?;
    Ok(OpenedGguf {
        decoder: DecoderModel {
            files: vec![map],
            gguf: true,
            ..decoder
        },
        tokenizer,
        chat,
    })
}

/// The network of a [`Model`].
#[derive(Clone, Debug)]
// One value per opened model, moved a few times at load: its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Network {
    /// A decoder that generates text.
    Decoder(DecoderModel),
    /// An encoder that embeds text.
    Encoder(Embedder),
}

/// How control-token texts (`<|im_start|>`) written inside chat messages are tokenized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ContentSpecials {
    /// As plain text: only the template's own markup becomes control tokens (the default).
    #[default]
    Text,
    /// As control tokens, as llama.cpp does (a message can then write turns of its own).
    Parsed,
}

/// A model opened from a path, with everything a front end needs: the network, the tokenizer,
/// the chat template, the end-of-generation set and the BOS policy, each decided once here
/// (following llama.cpp for GGUF files), so that `realizar generate` and the server tokenize,
/// render and stop alike.
#[derive(Clone, Debug)]
pub struct Model {
    path: PathBuf,
    network: Network,
    tokenizer: Option<Arc<Tokenizer>>,
    chat: Option<Arc<ChatTemplate>>,
    size_bytes: u64,
}

impl Model {
    /// Builds a decoder model from the bytes of a GGUF file (copied; `name` stands for its
    /// path in errors): what [`Model::open`] does with a `.gguf` file, without a file.
    pub fn from_gguf_bytes(
        name: &str,
        bytes: &[u8],
        opts: &LoadOptions,
    ) -> Result<Model, RuntimeError> {
        let path = Path::new(name);
        let read = ReadFile::copy(bytes).map_err(|source| RuntimeError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let g = build_gguf(path, Arc::new(FileBytes::Read(read)), opts)?;
        Ok(Model {
            path: path.to_path_buf(),
            size_bytes: bytes.len() as u64,
            network: Network::Decoder(g.decoder),
            tokenizer: g.tokenizer.map(Arc::new),
            chat: g.chat.map(Arc::new),
        })
    }

    /// Opens a model: a directory (or a `.safetensors` file in one) is a Hugging Face directory
    /// (a decoder when its `config.json` `model_type` is one [`crate::hf_source`] reads, else
    /// an encoder), anything else a GGUF decoder. Errors are typed and name the path.
    pub fn open(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model, RuntimeError> {
        let path = path.as_ref();
        if let Some(md) = decoder_dir(path)? {
            let g = open_dir(path, &md, opts)?;
            return Ok(Model {
                path: path.to_path_buf(),
                size_bytes: g.decoder.file_size(),
                network: Network::Decoder(g.decoder),
                tokenizer: g.tokenizer.map(Arc::new),
                chat: g.chat.map(Arc::new),
            });
        }
        let is_dir_model = path.is_dir()
            || path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"));
        if is_dir_model {
            let embedder = Embedder::load(path).map_err(RuntimeError::Embed)?;
            let dir = if path.is_file() {
                path.parent().unwrap_or(path)
            } else {
                path
            };
            let size_bytes = std::fs::read_dir(dir)
                .map(|rd| {
                    rd.filter_map(Result::ok)
                        .filter_map(|e| e.metadata().ok())
                        .filter(|m| m.is_file())
                        .map(|m| m.len())
                        .sum()
                })
                .unwrap_or(0);
            return Ok(Model {
                path: path.to_path_buf(),
                tokenizer: embedder.tokenizer_arc(),
                network: Network::Encoder(embedder),
                chat: None,
                size_bytes,
            });
        }
        let g = open_gguf(path, opts)?;
        Ok(Model {
            path: path.to_path_buf(),
            size_bytes: std::fs::metadata(path).map_or(0, |m| m.len()),
            network: Network::Decoder(g.decoder),
            tokenizer: g.tokenizer.map(Arc::new),
            chat: g.chat.map(Arc::new),
        })
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes of the model file(s).
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    /// The network.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The decoder, if this is a generative model.
    pub fn decoder(&self) -> Option<&DecoderModel> {
        match &self.network {
            Network::Decoder(d) => Some(d),
            Network::Encoder(_) => None,
        }
    }

    /// The decoder, or [`RuntimeError::Unsupported`].
    pub fn require_decoder(&self) -> Result<&DecoderModel, RuntimeError> {
        self.decoder().ok_or(RuntimeError::Unsupported {
            what: "decoder (it is an embedding model)",
        })
    }

    /// The encoder, if this is an embedding model.
    pub fn embedder(&self) -> Option<&Embedder> {
        match &self.network {
            Network::Encoder(e) => Some(e),
            Network::Decoder(_) => None,
        }
    }

    /// Checks that a mapped model file is unchanged on disk ([`DecoderModel::check_file`]).
    pub fn check_file(&self) -> Result<(), RuntimeError> {
        match &self.network {
            Network::Decoder(d) => d.check_file(),
            Network::Encoder(_) => Ok(()),
        }
    }

    /// The tokenizer, if the file has a vocabulary.
    pub fn tokenizer(&self) -> Option<&Arc<Tokenizer>> {
        self.tokenizer.as_ref()
    }

    fn require_tokenizer(&self) -> Result<&Arc<Tokenizer>, RuntimeError> {
        self.tokenizer
            .as_ref()
            .ok_or(RuntimeError::Unsupported { what: "tokenizer" })
    }

    /// The special tokens of a decoder (an encoder's are its tokenizer's; it generates nothing).
    pub fn special(&self) -> Option<&SpecialTokens> {
        self.decoder().map(DecoderModel::special)
    }

    /// Whether `id` ends generation.
    pub fn is_eog(&self, id: u32) -> bool {
        self.special().is_some_and(|s| s.is_eog(id))
    }

    /// Vocabulary size: the network's rows, else the tokenizer's.
    pub fn n_vocab(&self) -> usize {
        match (&self.network, &self.tokenizer) {
            (Network::Decoder(d), _) => d.n_vocab(),
            (Network::Encoder(_), Some(t)) => t.vocab_size(),
            (Network::Encoder(_), None) => 0,
        }
    }

    /// Whether it has a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.chat.is_some()
    }

    /// Text to ids: `add_special` adds BOS/EOS (CLS/SEP) as the vocabulary says,
    /// `parse_special` turns special-token texts into their ids. Nothing else is added or
    /// dropped (llama.cpp keeps a BOS the text itself writes, too).
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, RuntimeError> {
        self.require_tokenizer()?
            .encode(
                text,
                EncodeOptions {
                    add_special,
                    parse_special,
                },
            )
            .map_err(|source| RuntimeError::Text {
                what: "tokenizing",
                source,
            })
    }

    /// Checks that every id is in the vocabulary; the error names the first that is not.
    pub fn check_ids(&self, ids: &[u32]) -> Result<(), RuntimeError> {
        let n = self.n_vocab();
        match ids.iter().enumerate().find(|(_, &id)| id as usize >= n) {
            Some((i, id)) => Err(RuntimeError::InvalidArgument {
                reason: format!("token {i} (id {id}) is outside the vocabulary of {n}"),
            }),
            None => Ok(()),
        }
    }

    /// Ids to text, special tokens included.
    pub fn detokenize(&self, ids: &[u32]) -> Result<String, RuntimeError> {
        let tok = self.require_tokenizer()?;
        self.check_ids(ids)?;
        tok.decode(ids, false).map_err(|source| RuntimeError::Text {
            what: "detokenizing",
            source,
        })
    }

    /// Renders a conversation with the model's chat template, the assistant's turn opened. As
    /// llama.cpp does, a BOS text the template writes first is removed when the tokenizer adds
    /// BOS itself (and an EOS text it writes last, when the tokenizer adds EOS), so that the
    /// prompt holds each once.
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String, RuntimeError> {
        self.render_chat_with(messages, &ChatContext::default())
    }

    /// [`Model::render_chat`] with tools and template arguments.
    pub fn render_chat_with(
        &self,
        messages: &[ChatMessage],
        context: &ChatContext,
    ) -> Result<String, RuntimeError> {
        let tmpl = self.chat.as_ref().ok_or(RuntimeError::Unsupported {
            what: "chat template",
        })?;
        let mut text = tmpl
            .render_with(messages, true, context)
            .map_err(|source| RuntimeError::Text {
                what: "the chat template",
                source,
            })?;
        if let (Some(special), Some(tok)) = (self.special(), &self.tokenizer) {
            let piece = |id: Option<u32>| id.and_then(|i| tok.token_to_piece(i)).unwrap_or("");
            let bos = piece(special.bos);
            if special.add_bos && !bos.is_empty() && text.starts_with(bos) {
                text.drain(..bos.len());
            }
            let eos = piece(special.eos);
            if special.add_eos && !eos.is_empty() && text.ends_with(eos) {
                text.truncate(text.len() - eos.len());
            }
        }
        Ok(text)
    }

    /// The prompt ids of a conversation: [`Model::render_chat`], then tokenized with special
    /// tokens added and parsed, where the messages' roles and contents are plain text
    /// ([`ContentSpecials::Text`]): a control-token text typed in a message cannot open or
    /// close a turn.
    pub fn chat_prompt(&self, messages: &[ChatMessage]) -> Result<Vec<u32>, RuntimeError> {
        self.chat_prompt_with(messages, ContentSpecials::Text)
    }

    /// [`Model::chat_prompt`] with the choice of how control-token texts inside messages are
    /// read.
    pub fn chat_prompt_with(
        &self,
        messages: &[ChatMessage],
        content: ContentSpecials,
    ) -> Result<Vec<u32>, RuntimeError> {
        self.chat_prompt_in(messages, &ChatContext::default(), content)
            .map(|p| p.ids)
    }

    /// What the chat template does: its tool-call syntax, whether it writes reasoning.
    pub fn chat_features(&self) -> ChatFeatures {
        let source = self.chat.as_deref().and_then(ChatTemplate::source);
        let reads_tools = self.chat.as_deref().is_some_and(ChatTemplate::reads_tools);
        ChatFeatures {
            tools: ToolFormat::detect(source, reads_tools),
            thinking: source.is_some_and(|s| s.contains(crate::reasoning::THINK_OPEN)),
        }
    }

    /// The id of the control token spelled `text`, if the vocabulary has one.
    pub fn control_token(&self, text: &str) -> Option<u32> {
        let tok = self.tokenizer.as_ref()?;
        let ids = tok
            .encode(
                text,
                EncodeOptions {
                    add_special: false,
                    parse_special: true,
                },
            )
            .ok()?;
        match ids.as_slice() {
            [id] if tok.token_type(*id) == Some(TokenType::Control) => Some(*id),
            _ => None,
        }
    }

    /// [`Model::chat_prompt_with`] with tools and template arguments (whose strings, like the
    /// messages', are plain text with [`ContentSpecials::Text`]); also says whether the prompt
    /// leaves a reasoning block open for the reply.
    pub fn chat_prompt_in(
        &self,
        messages: &[ChatMessage],
        context: &ChatContext,
        content: ContentSpecials,
    ) -> Result<ChatPrompt, RuntimeError> {
        let tok = self.require_tokenizer()?;
        let text_err = |source| RuntimeError::Text {
            what: "tokenizing",
            source,
        };
        match content {
            ContentSpecials::Parsed => {
                let text = self.render_chat_with(messages, context)?;
                let ids = tok
                    .encode(
                        &text,
                        EncodeOptions {
                            add_special: true,
                            parse_special: true,
                        },
                    )
                    .map_err(text_err)?;
                Ok(ChatPrompt {
                    ids,
                    thinking_open: crate::reasoning::opens_thinking(&text),
                })
            }
            ContentSpecials::Text => {
                let mark = |s: &str| tok.mark_text(s).into_owned();
                let marked: Vec<ChatMessage> = messages
                    .iter()
                    .map(|m| ChatMessage {
                        role: mark(&m.role),
                        content: mark(&m.content),
                        tool_calls: m
                            .tool_calls
                            .iter()
                            .map(|c| realizar_tokenize::ChatToolCall {
                                id: mark(&c.id),
                                name: mark(&c.name),
                                arguments: mark_json(&c.arguments, &mark),
                            })
                            .collect(),
                        tool_call_id: m.tool_call_id.as_deref().map(mark),
                        name: m.name.as_deref().map(mark),
                        reasoning_content: m.reasoning_content.as_deref().map(mark),
                    })
                    .collect();
                let context = ChatContext {
                    tools: context.tools.as_ref().map(|t| mark_json(t, &mark)),
                    kwargs: context
                        .kwargs
                        .iter()
                        .map(|(k, v)| (k.clone(), mark_json(v, &mark)))
                        .collect(),
                    now: context.now,
                };
                let text = self.render_chat_with(&marked, &context)?;
                let ids = tok.encode_marked(&text, true).map_err(text_err)?;
                Ok(ChatPrompt {
                    ids,
                    thinking_open: crate::reasoning::opens_thinking(&text),
                })
            }
        }
    }

    /// Starts continuous batching over `slots` sequences of [`DecoderModel::ctx`] positions
    /// each: a [`Batcher`] that decodes them together on its own thread, with this model's
    /// tokenizer and end-of-generation set.
    pub fn batcher(&self, slots: usize, config: BatcherConfig) -> Result<Batcher, RuntimeError> {
        let decoder = self.require_decoder()?;
        let tokenizer = self.require_tokenizer()?.clone();
        let slots = slots.max(1);
        let batch = BatchDecoder::new(
            decoder,
            BatchOptions {
                slots,
                ctx: Some(decoder.ctx()),
                max_rows: slots + config.prefill_chunk.max(1),
                ..BatchOptions::default()
            },
        )?;
        let checked = decoder.clone();
        let text = BatchText {
            tokenizer,
            eog: decoder.special().eog.clone(),
            guard: Some(Arc::new(move || {
                checked.check_file().map_err(|e| e.to_string())
            })),
        };
        Batcher::start(batch, text, config).map_err(|e| RuntimeError::InvalidArgument {
            reason: e.to_string(),
        })
    }

    /// The text stream of one generation: incremental, UTF-8 safe, cut before the first of
    /// `stops`. The one text path of every consumer.
    pub fn text_stream(
        &self,
        stops: Vec<String>,
    ) -> Result<TextStream<Arc<Tokenizer>>, RuntimeError> {
        Ok(TextStream::new(self.require_tokenizer()?.clone(), stops))
    }
}
