//! A tiny deterministic engine for tests, examples and load tests without a real model.
//!
//! [`ToyModel`] implements [`BatchForward`]: its vocabulary is the 256 byte values plus an
//! end-of-sequence id ([`TOY_EOS`]) and a beginning-of-sequence id ([`TOY_BOS`]); the logits of
//! a slot depend only on the tokens in that slot (a hash of them), so the same prompt gives the
//! same greedy text whatever else is in the batch, and different prompts give different texts.
//! Its output is lowercase letters, spaces, dots and `€` (three byte tokens, to exercise UTF-8
//! handling). [`ToyEngine`] serves it through the runtime's [`Batcher`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use realizar_runtime::batch::{BatchForward, SeqChunk};
use realizar_runtime::RuntimeError;

use realizar_runtime::batcher::{BatchText, Batcher, BatcherConfig};
use realizar_tokenize::{BpeConfig, ChatTemplate, PreTokenizerKind, SpecialTokens, Tokenizer};

use crate::engine::{
    gen_channel, ChatContext, ChatFeatures, ChatMessage, ChatPrompt, ContentSpecials, Embeddings,
    Engine, EngineError, EngineLoad, GenRequest, GenStream, ModelInfo, ModelKind, ToolFormat,
};

/// The end-of-sequence id of the toy vocabulary.
pub const TOY_EOS: u32 = 256;
/// The beginning-of-sequence id of the toy vocabulary.
pub const TOY_BOS: u32 = 257;
/// Size of the toy vocabulary.
pub const TOY_VOCAB: usize = 258;

/// Options of the toy model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToyConfig {
    /// Cache slots.
    pub slots: usize,
    /// Positions per slot.
    pub ctx: usize,
    /// Rows per forward pass.
    pub max_rows: usize,
    /// The model prefers [`TOY_EOS`] once a sequence holds this many positions.
    pub eos_at: Option<usize>,
    /// Time each forward pass takes (simulated work).
    pub step_delay: Duration,
}

impl Default for ToyConfig {
    fn default() -> ToyConfig {
        ToyConfig {
            slots: 4,
            ctx: 256,
            max_rows: 64,
            eos_at: None,
            step_delay: Duration::ZERO,
        }
    }
}

/// Counters of a toy model's work, shared with the test that made it.
#[derive(Debug, Default)]
pub struct ToyStats {
    /// Forward passes.
    pub steps: AtomicUsize,
    /// Most sequences evaluated in one pass.
    pub max_seqs_per_step: AtomicUsize,
    /// Token rows evaluated.
    pub rows: AtomicUsize,
}

#[derive(Clone, Copy, Debug, Default)]
struct SlotState {
    hash: u64,
    len: usize,
    last: u32,
}

impl SlotState {
    fn push(&mut self, t: u32) {
        self.hash = mix(self.hash, t, self.len);
        self.len += 1;
        self.last = t;
    }
}

/// The toy model (see the module documentation).
#[derive(Debug)]
pub struct ToyModel {
    config: ToyConfig,
    slots: Vec<SlotState>,
    /// The tokens in each slot (to rebuild its state after a truncation).
    tokens: Vec<Vec<u32>>,
    logits: Vec<f32>,
    stats: Arc<ToyStats>,
}

impl ToyModel {
    /// A toy model and its counters.
    pub fn new(config: ToyConfig) -> (ToyModel, Arc<ToyStats>) {
        let stats = Arc::new(ToyStats::default());
        (
            ToyModel {
                config,
                slots: vec![SlotState::default(); config.slots],
                tokens: vec![Vec::new(); config.slots],
                logits: Vec::new(),
                stats: stats.clone(),
            },
            stats,
        )
    }

    fn next_token(&self, s: &SlotState) -> u32 {
        match s.last {
            0xE2 => return 0x82,
            0x82 => return 0xAC,
            _ => {}
        }
        if self.config.eos_at.is_some_and(|n| s.len >= n) {
            return TOY_EOS;
        }
        match s.hash % 30 {
            r @ 0..=25 => u32::from(b'a') + r as u32,
            26 | 27 => u32::from(b' '),
            28 => 0xE2,
            _ => u32::from(b'.'),
        }
    }
}

fn mix(hash: u64, token: u32, pos: usize) -> u64 {
    let mut h = hash ^ 0xcbf2_9ce4_8422_2325;
    for b in token
        .to_le_bytes()
        .into_iter()
        .chain((pos as u32).to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

fn invalid(reason: String) -> RuntimeError {
    RuntimeError::InvalidArgument { reason }
}

impl BatchForward for ToyModel {
    fn n_vocab(&self) -> usize {
        TOY_VOCAB
    }

    fn n_slots(&self) -> usize {
        self.slots.len()
    }

    fn slot_capacity(&self) -> usize {
        self.config.ctx
    }

    fn max_rows(&self) -> usize {
        self.config.max_rows
    }

    fn slot_len(&self, slot: usize) -> usize {
        self.slots.get(slot).map_or(0, |s| s.len)
    }

    fn clear_slot(&mut self, slot: usize) {
        self.truncate_slot(slot, 0);
    }

    fn truncate_slot(&mut self, slot: usize, len: usize) {
        if let (Some(s), Some(toks)) = (self.slots.get_mut(slot), self.tokens.get_mut(slot)) {
            toks.truncate(len);
            *s = SlotState::default();
            for &t in toks.iter() {
                s.push(t);
            }
        }
    }

    fn forward(&mut self, chunks: &[SeqChunk<'_>]) -> Result<&[f32], RuntimeError> {
        let rows: usize = chunks.iter().map(|c| c.tokens.len()).sum();
        if chunks.is_empty() || rows > self.config.max_rows {
            return Err(invalid(format!("{rows} rows in {} chunks", chunks.len())));
        }
        for (i, c) in chunks.iter().enumerate() {
            let s = self
                .slots
                .get(c.slot)
                .ok_or_else(|| invalid(format!("no slot {}", c.slot)))?;
            if c.tokens.is_empty() || s.len + c.tokens.len() > self.config.ctx {
                return Err(RuntimeError::PromptTooLong {
                    tokens: s.len + c.tokens.len(),
                    ctx: self.config.ctx,
                });
            }
            if chunks[..i].iter().any(|o| o.slot == c.slot) {
                return Err(invalid(format!("slot {} twice", c.slot)));
            }
            if let Some(&t) = c.tokens.iter().find(|&&t| t as usize >= TOY_VOCAB) {
                return Err(invalid(format!("token {t} outside the vocabulary")));
            }
        }
        if !self.config.step_delay.is_zero() {
            std::thread::sleep(self.config.step_delay);
        }
        self.stats.steps.fetch_add(1, Ordering::Relaxed);
        self.stats.rows.fetch_add(rows, Ordering::Relaxed);
        self.stats
            .max_seqs_per_step
            .fetch_max(chunks.len(), Ordering::Relaxed);
        self.logits.clear();
        for c in chunks {
            let mut s = self.slots[c.slot];
            for &t in c.tokens {
                s.push(t);
            }
            self.slots[c.slot] = s;
            self.tokens[c.slot].extend_from_slice(c.tokens);
            if c.logits {
                let peak = self.next_token(&s) as usize;
                let start = self.logits.len();
                self.logits.resize(start + TOY_VOCAB, 0.0);
                // A clear winner, and a runner-up so that top-k sampling has a choice.
                self.logits[start + peak] = 10.0;
                self.logits[start + (peak + 1) % TOY_VOCAB] = 5.0;
            }
        }
        Ok(&self.logits)
    }
}

/// The toy vocabulary as a real byte-level tokenizer: ids 0–255 are the bytes, then
/// [`TOY_EOS`] (`<eos>`) and [`TOY_BOS`] (`<bos>`), both control tokens; no merges.
pub fn toy_tokenizer() -> Tokenizer {
    let alphabet = realizar_tokenize::byte_to_char_table();
    let mut tokens: Vec<String> = alphabet.iter().map(|c| c.to_string()).collect();
    tokens.push("<eos>".into());
    tokens.push("<bos>".into());
    let mut token_types = vec![1; 256];
    token_types.extend([3, 3]);
    let built = Tokenizer::from_bpe(BpeConfig {
        tokens,
        token_types,
        merges: Vec::new(),
        pre: PreTokenizerKind::Gpt2,
        special: SpecialTokens {
            bos: Some(TOY_BOS),
            eos: Some(TOY_EOS),
            ..SpecialTokens::default()
        },
    });
    // The vocabulary above is fixed and valid.
    built.unwrap_or_else(|e| panic!("the toy tokenizer is invalid: {e}"))
}

/// A toy engine: generation with [`ToyModel`], a fixed chat format, and 8-dimensional
/// byte-histogram embeddings when built with [`ToyEngine::embedder`].
pub struct ToyEngine {
    id: String,
    kind: ModelKind,
    ctx: usize,
    scheduler: Option<Batcher>,
    /// Time each embedded text takes (simulated work).
    embed_delay: Duration,
    /// Texts embedded so far.
    embedded: Arc<AtomicUsize>,
    /// A chat template instead of the fixed chat format.
    template: Option<Arc<ChatTemplate>>,
}

impl core::fmt::Debug for ToyEngine {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ToyEngine")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A prompt containing this text makes [`ToyEngine::submit`] panic (to test that a panicking
/// handler is answered 500 and the server lives on).
pub const TOY_PANIC_TEXT: &str = "__panic__";

impl ToyEngine {
    /// A generating toy engine named `id`, and the model's counters.
    pub fn generator(
        id: &str,
        config: ToyConfig,
        sched: BatcherConfig,
    ) -> Result<(ToyEngine, Arc<ToyStats>), EngineError> {
        let (model, stats) = ToyModel::new(config);
        let text = BatchText {
            tokenizer: Arc::new(toy_tokenizer()),
            eog: vec![TOY_EOS],
            guard: None,
        };
        let scheduler = Batcher::start(model, text, sched)?;
        Ok((
            ToyEngine {
                id: id.into(),
                kind: ModelKind::Generate,
                ctx: config.ctx,
                scheduler: Some(scheduler),
                embed_delay: Duration::ZERO,
                embedded: Arc::default(),
                template: None,
            },
            stats,
        ))
    }

    /// An embedding toy engine named `id`.
    pub fn embedder(id: &str) -> ToyEngine {
        ToyEngine::slow_embedder(id, Duration::ZERO).0
    }

    /// An embedding toy engine that takes `per_text` for each text it embeds, and the count
    /// of texts it embedded.
    pub fn slow_embedder(id: &str, per_text: Duration) -> (ToyEngine, Arc<AtomicUsize>) {
        let embedded = Arc::new(AtomicUsize::new(0));
        (
            ToyEngine {
                id: id.into(),
                kind: ModelKind::Embed,
                ctx: 512,
                scheduler: None,
                embed_delay: per_text,
                embedded: embedded.clone(),
                template: None,
            },
            embedded,
        )
    }

    /// The engine with a Jinja chat template (its text parsed without control tokens) instead
    /// of the fixed chat format: its tool syntax and reasoning are the template's.
    pub fn with_template(mut self, template: ChatTemplate) -> ToyEngine {
        self.template = Some(Arc::new(template));
        self
    }

    fn encode(text: &str, add_special: bool) -> Vec<u32> {
        ToyEngine::encode_parsing(text, add_special, false)
    }

    /// Bytes as ids; with `parse_special` the texts `<bos>` and `<eos>` are their tokens.
    fn encode_parsing(text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut ids = Vec::with_capacity(text.len() + 1);
        if add_special {
            ids.push(TOY_BOS);
        }
        let mut rest = text.as_bytes();
        while let Some((&b, tail)) = rest.split_first() {
            let special = [(b"<bos>", TOY_BOS), (b"<eos>", TOY_EOS)]
                .into_iter()
                .find(|(t, _)| parse_special && rest.starts_with(*t));
            match special {
                Some((t, id)) => {
                    ids.push(id);
                    rest = &rest[t.len()..];
                }
                None => {
                    ids.push(u32::from(b));
                    rest = tail;
                }
            }
        }
        ids
    }
}

impl Engine for ToyEngine {
    fn info(&self) -> ModelInfo {
        ModelInfo {
            id: self.id.clone(),
            kind: self.kind,
            ctx: self.ctx,
            size_bytes: 0,
            has_chat_template: self.kind == ModelKind::Generate,
            n_vocab: TOY_VOCAB,
            max_token_bytes: 5,
        }
    }

    fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, EngineError> {
        Ok(ToyEngine::encode_parsing(text, add_special, parse_special))
    }

    fn detokenize(&self, ids: &[u32]) -> Result<String, EngineError> {
        let mut out = Vec::with_capacity(ids.len());
        for (i, &id) in ids.iter().enumerate() {
            match id {
                0..=255 => out.push(id as u8),
                TOY_EOS => out.extend_from_slice(b"<eos>"),
                TOY_BOS => out.extend_from_slice(b"<bos>"),
                _ => {
                    return Err(EngineError::InvalidInput {
                        param: "tokens",
                        reason: format!(
                            "tokens[{i}] = {id} is outside the vocabulary of {TOY_VOCAB}"
                        ),
                    })
                }
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn chat_features(&self) -> ChatFeatures {
        let source = self.template.as_deref().and_then(ChatTemplate::source);
        let reads = self
            .template
            .as_deref()
            .is_some_and(ChatTemplate::reads_tools);
        ChatFeatures {
            tools: ToolFormat::detect(source, reads),
            thinking: source.is_some_and(|s| s.contains(realizar_runtime::reasoning::THINK_OPEN)),
        }
    }

    fn chat_prompt(
        &self,
        messages: &[ChatMessage],
        context: &ChatContext,
        content: ContentSpecials,
    ) -> Result<ChatPrompt, EngineError> {
        if let Some(t) = &self.template {
            let text =
                t.render_with(messages, true, context)
                    .map_err(|e| EngineError::InvalidInput {
                        param: "messages",
                        reason: e.to_string(),
                    })?;
            return Ok(ChatPrompt {
                ids: self.tokenize(&text, true, false)?,
                thinking_open: realizar_runtime::reasoning::opens_thinking(&text),
            });
        }
        // The toy vocabulary's only special token is `<bos>`: a message cannot write it
        // unless `content` asks for control tokens in messages.
        let mut ids = self.tokenize("", true, false)?;
        for m in messages {
            let text = format!("<{}>{}\n", m.role, m.content);
            ids.extend(self.tokenize(&text, false, content == ContentSpecials::Parsed)?);
        }
        ids.extend(self.tokenize("<assistant>", false, false)?);
        Ok(ChatPrompt {
            ids,
            thinking_open: false,
        })
    }

    fn submit(&self, req: GenRequest) -> Result<GenStream, EngineError> {
        let Some(s) = &self.scheduler else {
            return Err(EngineError::Unsupported {
                model: self.id.clone(),
                what: "text generation",
            });
        };
        let panic_ids = ToyEngine::encode(TOY_PANIC_TEXT, false);
        if req
            .prompt
            .windows(panic_ids.len())
            .any(|w| w == panic_ids.as_slice())
        {
            panic!("toy engine: the prompt asked for a panic");
        }
        for (i, &t) in req.prompt.iter().enumerate() {
            if t as usize >= TOY_VOCAB {
                return Err(EngineError::InvalidInput {
                    param: "prompt",
                    reason: format!("prompt[{i}] = {t} is outside the vocabulary of {TOY_VOCAB}"),
                });
            }
        }
        let (tx, stream) = gen_channel();
        s.submit_to(req, Box::new(tx))?;
        Ok(stream)
    }

    fn embed(&self, inputs: &[String]) -> Result<Embeddings, EngineError> {
        if self.kind != ModelKind::Embed {
            return Err(EngineError::Unsupported {
                model: self.id.clone(),
                what: "embeddings",
            });
        }
        let mut tokens = 0;
        let vectors = inputs
            .iter()
            .map(|t| {
                std::thread::sleep(self.embed_delay);
                self.embedded.fetch_add(1, Ordering::Relaxed);
                tokens += t.len() + 2;
                let mut v = vec![1.0f32; 8];
                for b in t.bytes() {
                    v[usize::from(b % 8)] += 1.0;
                }
                let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                v.iter_mut().for_each(|x| *x /= n);
                v
            })
            .collect();
        Ok(Embeddings {
            vectors,
            prompt_tokens: tokens,
        })
    }

    fn load(&self) -> EngineLoad {
        self.scheduler
            .as_ref()
            .map(Batcher::load)
            .unwrap_or_default()
    }
}
