//! Continuous batching in the runtime, usable from Rust with no HTTP: a [`Batcher`] takes
//! generation requests, runs them together over the cache slots of a [`BatchForward`] model on
//! a dedicated OS thread, streams each one's tokens and text, cancels, and reuses prompt
//! prefixes exactly. The server wraps it; `examples/batcher.rs` drives it directly.
//!
//! Each step the batcher admits waiting requests into free slots, drops cancelled sequences,
//! then evaluates one batch: the last sampled token of every decoding sequence plus a chunk of
//! at most `prefill_chunk` prompt tokens of sequences still reading their prompts (so a long
//! prompt never stalls the others for more than one chunk, and never a last chunk of one row:
//! see [`Batcher`] for why). A new sequence skips the prompt prefix it shares with what its slot
//! last held (see [`BatcherConfig::reuse_prefix`]). The logits of each sequence are sampled with
//! its own [`Sampler`]; its text comes from its own [`TextStream`] (incremental, never
//! splitting a UTF-8 character, held back while it could begin a stop string).

use core::fmt;
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use realizar_tokenize::{TextStep, TextStream, Tokenizer};

use crate::batch::{BatchForward, SeqChunk};
use crate::constrain::{Constraint, ConstraintCompiler, Grammar};
use crate::sampling::Sampler;
use crate::SamplerConfig;

/// A generation request: token ids in, a stream of events out.
#[derive(Clone, Debug, PartialEq)]
pub struct GenRequest {
    /// The prompt's ids (at least one).
    pub prompt: Vec<u32>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Sampling parameters.
    pub sampler: SamplerConfig,
    /// Generation stops before the first occurrence of any of these in the text (which is then
    /// not returned).
    pub stop: Vec<String>,
    /// `Some(n)`: report each token's log-probability and the `n` most likely alternatives.
    pub logprobs: Option<usize>,
    /// Keep generating after an end-of-generation token.
    pub ignore_eos: bool,
    /// Keep the output inside this language ([`crate::constrain`]): each step samples only
    /// among the tokens that keep it there, and the sequence ends once the output is complete.
    pub grammar: Option<Grammar>,
    /// Control tokens whose text the output keeps (others are left out of it): the markers of
    /// a chat syntax the reply is read by.
    pub keep_special: Vec<u32>,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens`, or the context is full.
    Length,
}

impl FinishReason {
    /// `"stop"` or `"length"`, as OpenAI names them.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// A generated token and its probabilities.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenInfo {
    /// Its id.
    pub id: u32,
    /// Its text (lossy when it holds part of a character).
    pub text: String,
    /// Its bytes, exactly (part of a character's bytes where a character spans tokens).
    pub bytes: Vec<u8>,
    /// Log-probability under the model's distribution (before sampling filters).
    pub logprob: f32,
    /// The most likely tokens, most likely first.
    pub top: Vec<TopToken>,
}

/// One of the most likely tokens at a step.
#[derive(Clone, Debug, PartialEq)]
pub struct TopToken {
    /// Its id.
    pub id: u32,
    /// Its text (lossy when it holds part of a character).
    pub text: String,
    /// Its bytes, exactly.
    pub bytes: Vec<u8>,
    /// Its log-probability.
    pub logprob: f32,
}

/// The summary at the end of a generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GenSummary {
    /// Why it ended.
    pub finish_reason: FinishReason,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (an end-of-generation token included).
    pub completion_tokens: usize,
}

/// What a generation stream yields.
#[derive(Clone, Debug, PartialEq)]
pub enum GenEvent {
    /// More text. `text` may be empty (while it could be the start of a stop string, or ends
    /// inside a character); `token` is the token that produced it (`None` for the final flush).
    Delta {
        /// Text that is final.
        text: String,
        /// The token that produced it.
        token: Option<u32>,
        /// Its log-probabilities, when they were asked for.
        logprobs: Option<TokenInfo>,
    },
    /// The generation ended normally; nothing follows.
    Done(GenSummary),
    /// The generation failed; nothing follows.
    Failed(String),
}

/// Cancels a generation: the batcher drops the sequence at its next step.
#[derive(Clone, Debug, Default)]
pub struct CancelHandle(Arc<AtomicBool>);

impl CancelHandle {
    /// A handle that is not cancelled.
    pub fn new() -> CancelHandle {
        CancelHandle::default()
    }

    /// Asks for the generation to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`CancelHandle::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Where a sequence's events go: a channel, a closure, an HTTP response.
pub trait EventSink: Send + 'static {
    /// Delivers an event; false when nobody listens any more.
    fn send(&self, ev: GenEvent) -> bool;
    /// Whether the receiver cancelled or went away (the sequence is then dropped).
    fn is_cancelled(&self) -> bool;
}

/// The receiving end of [`Batcher::submit`]: a blocking iterator of events. Dropping it
/// cancels the generation.
#[derive(Debug)]
pub struct GenHandle {
    rx: mpsc::Receiver<GenEvent>,
    cancel: CancelHandle,
}

impl GenHandle {
    /// The next event, blocking; `None` after the last one.
    pub fn recv(&self) -> Option<GenEvent> {
        self.rx.recv().ok()
    }

    /// The handle that cancels this generation.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }
}

impl Iterator for GenHandle {
    type Item = GenEvent;

    fn next(&mut self) -> Option<GenEvent> {
        self.recv()
    }
}

impl Drop for GenHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

struct ChannelSink {
    tx: mpsc::Sender<GenEvent>,
    cancel: CancelHandle,
}

impl EventSink for ChannelSink {
    fn send(&self, ev: GenEvent) -> bool {
        self.tx.send(ev).is_ok()
    }

    fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// How busy a batcher is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchLoad {
    /// Requests waiting for a slot.
    pub queued: usize,
    /// Sequences being generated.
    pub active: usize,
    /// Slots.
    pub slots: usize,
}

/// Why a batcher refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BatchError {
    /// A request argument is invalid.
    InvalidInput {
        /// The field.
        param: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The prompt does not fit in a slot.
    ContextExceeded {
        /// Tokens of the prompt.
        tokens: usize,
        /// Positions of a slot.
        ctx: usize,
        /// Tokens asked to generate in addition.
        max_tokens: usize,
    },
    /// Every slot is busy and the wait queue is full.
    QueueFull {
        /// Requests already waiting.
        queued: usize,
    },
    /// The batcher is shutting down or its thread died.
    Unavailable,
    /// The batcher could not start (no slot, too few rows per pass, no thread).
    Start(String),
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BatchError::InvalidInput { param, reason } => write!(f, "{param}: {reason}"),
            BatchError::ContextExceeded {
                tokens,
                ctx,
                max_tokens,
            } => write!(
                f,
                "the prompt has {tokens} tokens, more than a slot's {ctx} positions (with {max_tokens} to generate)"
            ),
            BatchError::QueueFull { queued } => write!(
                f,
                "every slot is in use and {queued} requests are waiting"
            ),
            BatchError::Unavailable => write!(f, "the batcher is shutting down"),
            BatchError::Start(m) => write!(f, "cannot start the batcher: {m}"),
        }
    }
}

impl std::error::Error for BatchError {}

/// What the batcher needs to turn ids into text: the tokenizer and the ids that end
/// generation (a [`crate::Model`]'s, through [`crate::Model::batcher`]).
#[derive(Clone)]
pub struct BatchText {
    /// The tokenizer.
    pub tokenizer: Arc<Tokenizer>,
    /// Ids that end generation, sorted.
    pub eog: Vec<u32>,
    /// Checked before every step (e.g. that a mapped model file is unchanged on disk): an
    /// error fails the sequences being generated and those waiting, with its message.
    pub guard: Option<Guard>,
}

impl std::fmt::Debug for BatchText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchText")
            .field("eog", &self.eog)
            .field("guard", &self.guard.is_some())
            .finish_non_exhaustive()
    }
}

/// A check the batcher runs before every step.
pub type Guard = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

impl BatchText {
    fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The bytes of one token as it appears inside a text (special tokens included) and its
    /// text, for log-probability reports.
    fn piece(&self, id: u32) -> (String, Vec<u8>) {
        let bytes = self.tokenizer.token_bytes(id).unwrap_or_default().to_vec();
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    }
}

/// Options of [`Batcher::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatcherConfig {
    /// Requests that may wait for a slot; more are refused with [`BatchError::QueueFull`].
    pub queue: usize,
    /// Most prompt tokens of one sequence evaluated in one step.
    pub prefill_chunk: usize,
    /// Keep a finished sequence's prompt in its slot's cache and let the next sequence in
    /// that slot skip the prefix it shares with it. Exact: the reused positions and the
    /// re-evaluated rest are all computed in passes of two or more rows, which give a fresh
    /// evaluation's numbers when the model's products are batch-invariant (the `BatchForward`
    /// models of realizar-runtime are).
    pub reuse_prefix: bool,
}

impl Default for BatcherConfig {
    fn default() -> BatcherConfig {
        BatcherConfig {
            queue: 64,
            prefill_chunk: 64,
            reuse_prefix: true,
        }
    }
}

struct Pending {
    req: GenRequest,
    tx: Box<dyn EventSink>,
    constraint: Option<Constraint>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    active: usize,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere; the state itself stays consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A continuous-batching generation engine over one model, running on its own thread.
pub struct Batcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    slots: usize,
    ctx: usize,
    n_vocab: usize,
    queue_cap: usize,
    text: BatchText,
    /// Built at the first request with a grammar (the trie covers the whole vocabulary).
    compiler: std::sync::OnceLock<Result<ConstraintCompiler, String>>,
}

impl core::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Batcher")
            .field("slots", &self.slots)
            .field("ctx", &self.ctx)
            .field("queue", &self.queue_cap)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts the batcher's thread over `model`, whose ids `text` turns into text. Errors when the model has no slot, or fewer
    /// rows per pass than slots plus one (every decoding sequence needs a row, and a prefill
    /// chunk at least one more), or the thread cannot be spawned.
    pub fn start<M: BatchForward + 'static>(
        model: M,
        text: BatchText,
        config: BatcherConfig,
    ) -> Result<Batcher, BatchError> {
        let slots = model.n_slots();
        let ctx = model.slot_capacity();
        let n_vocab = model.n_vocab();
        if slots == 0 || model.max_rows() <= slots || ctx == 0 || config.prefill_chunk == 0 {
            return Err(BatchError::Start(format!(
                "a batch of {} rows cannot serve {slots} slots of {ctx} positions",
                model.max_rows()
            )));
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let worker = Worker {
            model,
            text: text.clone(),
            shared: shared.clone(),
            config,
            seqs: Vec::new(),
            row: Vec::new(),
            cached: vec![Vec::new(); slots],
        };
        let thread = std::thread::Builder::new()
            .name("realizar-batcher".into())
            .spawn(move || worker.run())
            .map_err(|e| BatchError::Start(format!("cannot start the model thread: {e}")))?;
        Ok(Batcher {
            shared,
            thread: Some(thread),
            slots,
            ctx,
            n_vocab,
            queue_cap: config.queue,
            text,
            compiler: std::sync::OnceLock::new(),
        })
    }

    /// Compiles a request's grammar for this model's tokenizer.
    fn constraint(&self, grammar: &Grammar) -> Result<Constraint, BatchError> {
        let compiler = self.compiler.get_or_init(|| {
            let started = std::time::Instant::now();
            let c =
                ConstraintCompiler::new(self.text.tokenizer.clone(), self.n_vocab, &self.text.eog)
                    .map_err(|e| e.to_string());
            tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                "grammar engine ready"
            );
            c
        });
        let compiler = compiler.as_ref().map_err(|e| BatchError::InvalidInput {
            param: "grammar",
            reason: e.clone(),
        })?;
        compiler
            .compile(grammar)
            .map_err(|e| BatchError::InvalidInput {
                param: "grammar",
                reason: e.message,
            })
    }

    /// Positions of each slot.
    pub fn ctx(&self) -> usize {
        self.ctx
    }

    /// Queues a request; its events arrive on the returned handle. Errors at once: an empty
    /// prompt, a prompt longer than a slot, sampling parameters out of range, a full queue, a
    /// stopped batcher.
    pub fn submit(&self, req: GenRequest) -> Result<GenHandle, BatchError> {
        let (tx, rx) = mpsc::channel();
        let cancel = CancelHandle::new();
        self.submit_to(
            req,
            Box::new(ChannelSink {
                tx,
                cancel: cancel.clone(),
            }),
        )?;
        Ok(GenHandle { rx, cancel })
    }

    /// [`Batcher::submit`] with the events going to `sink`.
    pub fn submit_to(&self, req: GenRequest, sink: Box<dyn EventSink>) -> Result<(), BatchError> {
        if req.prompt.is_empty() {
            return Err(BatchError::InvalidInput {
                param: "prompt",
                reason: "the prompt is empty".into(),
            });
        }
        if req.prompt.len() > self.ctx {
            return Err(BatchError::ContextExceeded {
                tokens: req.prompt.len(),
                ctx: self.ctx,
                max_tokens: req.max_tokens,
            });
        }
        if let Some((i, id)) = req
            .prompt
            .iter()
            .enumerate()
            .find(|(_, &id)| id as usize >= self.n_vocab)
        {
            return Err(BatchError::InvalidInput {
                param: "prompt",
                reason: format!(
                    "prompt[{i}] = {id} is outside the vocabulary of {}",
                    self.n_vocab
                ),
            });
        }
        req.sampler
            .validate()
            .map_err(|e| BatchError::InvalidInput {
                param: e.param.name(),
                reason: e.to_string(),
            })?;
        let constraint = match &req.grammar {
            Some(g) => Some(self.constraint(g)?),
            None => None,
        };
        let mut st = self.shared.lock();
        if st.shutdown || self.thread.as_ref().is_none_or(|t| t.is_finished()) {
            return Err(BatchError::Unavailable);
        }
        if st.queue.len() + st.active >= self.slots + self.queue_cap {
            return Err(BatchError::QueueFull {
                queued: st.queue.len(),
            });
        }
        st.queue.push_back(Pending {
            req,
            tx: sink,
            constraint,
        });
        drop(st);
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Queue depth and active sequences.
    pub fn load(&self) -> BatchLoad {
        let st = self.shared.lock();
        BatchLoad {
            queued: st.queue.len(),
            active: st.active,
            slots: self.slots,
        }
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One sequence in a slot.
struct Seq {
    slot: usize,
    tx: Box<dyn EventSink>,
    prompt: Vec<u32>,
    /// Prompt tokens already in the cache.
    fed: usize,
    /// The token to evaluate next once the prompt is in.
    next: Option<u32>,
    generated: Vec<u32>,
    history: Vec<u32>,
    sampler: Sampler,
    max_tokens: usize,
    logprobs: Option<usize>,
    ignore_eos: bool,
    /// The generated text, with the request's stop strings.
    text: TextStream<Arc<Tokenizer>>,
    /// The output's language, if the request gave one.
    constraint: Option<Constraint>,
    /// The constraint's mask for the next sample, computed while the model evaluated the step.
    mask: Option<Result<crate::constrain::TokenMask, String>>,
}

struct Worker<M> {
    model: M,
    text: BatchText,
    shared: Arc<Shared>,
    config: BatcherConfig,
    seqs: Vec<Seq>,
    row: Vec<f32>,
    /// The tokens of each slot's leading cache positions that were computed in prompt passes
    /// of two or more rows. A finished sequence leaves them there: the next one placed in that
    /// slot skips the prefix it shares with them (a chat's system prompt and template opening,
    /// a repeated prompt) and evaluates the rest in passes of two or more rows too. Reusing
    /// them is exact: in such passes the keys, values and logits of a position depend only on
    /// the tokens up to it, not on how the rows were split (a one-row pass, a decode step,
    /// sums attention in another order, so generated tokens are not kept for reuse).
    cached: Vec<Vec<u32>>,
}

impl<M: BatchForward> Worker<M> {
    fn run(mut self) {
        loop {
            if !self.admit() {
                break;
            }
            self.drop_cancelled();
            if self.seqs.is_empty() {
                continue;
            }
            if let Some(guard) = &self.text.guard {
                if let Err(why) = guard() {
                    tracing::error!(reason = %why, "refusing to step");
                    self.fail_all(&why);
                    continue;
                }
            }
            let step = catch_unwind(AssertUnwindSafe(|| self.step()));
            if step.is_err() {
                tracing::error!("the model panicked during a step; failing its sequences");
                self.fail_all("the model failed (panic)");
            }
        }
        self.fail_all("the server is shutting down");
        let mut st = self.shared.lock();
        for p in st.queue.drain(..) {
            p.tx.send(GenEvent::Failed("the server is shutting down".into()));
        }
    }

    /// Moves waiting requests into free slots; blocks while there is nothing to do. Returns
    /// false on shutdown.
    fn admit(&mut self) -> bool {
        let mut st = self.shared.lock();
        loop {
            if st.shutdown {
                return false;
            }
            while self.seqs.len() < self.model.n_slots() {
                let Some(p) = st.queue.pop_front() else { break };
                if p.tx.is_cancelled() {
                    continue;
                }
                // The free slot sharing the longest prefix with the prompt. At least its last
                // two tokens are evaluated again: the logits come from a pass of two or more
                // rows, as in a fresh evaluation (see `Worker::cached`).
                let keep_max = if self.config.reuse_prefix {
                    p.req.prompt.len().saturating_sub(2)
                } else {
                    0
                };
                let (slot, keep) = (0..self.model.n_slots())
                    .filter(|s| self.seqs.iter().all(|q| q.slot != *s))
                    .map(|s| {
                        let shared = self.cached.get(s).map_or(0, |c| {
                            c.iter()
                                .zip(&p.req.prompt)
                                .take_while(|(a, b)| a == b)
                                .count()
                        });
                        (s, shared.min(keep_max))
                    })
                    .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
                    .unwrap_or((0, 0));
                self.model.truncate_slot(slot, keep);
                if let Some(c) = self.cached.get_mut(slot) {
                    c.truncate(keep);
                }
                if self.model.slot_len(slot) != keep {
                    // The model could not keep the prefix: start from an empty slot.
                    self.model.clear_slot(slot);
                    if let Some(c) = self.cached.get_mut(slot) {
                        c.clear();
                    }
                }
                let fed = self.model.slot_len(slot);
                let room = self
                    .model
                    .slot_capacity()
                    .saturating_sub(p.req.prompt.len());
                let mut history =
                    Vec::with_capacity(p.req.prompt.len() + p.req.max_tokens.min(room));
                history.extend_from_slice(&p.req.prompt);
                let seq = Seq {
                    slot,
                    tx: p.tx,
                    sampler: Sampler::new(p.req.sampler, self.model.n_vocab()),
                    prompt: p.req.prompt,
                    fed,
                    next: None,
                    generated: Vec::new(),
                    history,
                    max_tokens: p.req.max_tokens,
                    logprobs: p.req.logprobs,
                    ignore_eos: p.req.ignore_eos,
                    text: TextStream::new(self.text.tokenizer.clone(), p.req.stop)
                        .keeping(p.req.keep_special),
                    constraint: p.constraint,
                    mask: None,
                };
                if seq.max_tokens == 0 {
                    seq.tx.send(GenEvent::Done(GenSummary {
                        finish_reason: FinishReason::Length,
                        prompt_tokens: seq.prompt.len(),
                        completion_tokens: 0,
                    }));
                    continue;
                }
                self.seqs.push(seq);
            }
            st.active = self.seqs.len();
            if !self.seqs.is_empty() {
                return true;
            }
            st = self.shared.wake.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn drop_cancelled(&mut self) {
        let before = self.seqs.len();
        self.seqs.retain(|s| !s.tx.is_cancelled());
        if self.seqs.len() != before {
            tracing::debug!(
                dropped = before - self.seqs.len(),
                "cancelled sequences freed"
            );
            self.shared.lock().active = self.seqs.len();
        }
    }

    fn fail_all(&mut self, why: &str) {
        for s in self.seqs.drain(..) {
            self.model.clear_slot(s.slot);
            if let Some(c) = self.cached.get_mut(s.slot) {
                c.clear();
            }
            s.tx.send(GenEvent::Failed(why.into()));
        }
        self.shared.lock().active = 0;
    }

    /// One forward pass over every sequence, then sampling.
    fn step(&mut self) {
        let max_rows = self.model.max_rows();
        // Decoding sequences first (one row each), then prompt chunks in admission order.
        let mut plan: Vec<(usize, usize, usize, bool)> = Vec::with_capacity(self.seqs.len());
        let mut rows = 0usize;
        for (i, s) in self.seqs.iter().enumerate() {
            if s.next.is_some() {
                plan.push((i, 0, 1, true));
                rows += 1;
            }
        }
        // A prompt's chunks must not depend on the other sequences: a pass of several rows of one
        // sequence does its arithmetic (attention, grouped products) in another order than a
        // pass of one row, so the same prompt split differently would give other logits. Each
        // chunk is as long as the configuration allows, and one that does not fit in this step
        // waits for the next. The cap leaves room for every other slot's decode row, so the
        // first prefilling sequence always fits.
        let cap = max_rows
            .saturating_sub(self.model.n_slots().saturating_sub(1))
            .max(1);
        for (i, s) in self.seqs.iter().enumerate() {
            if s.next.is_none() && s.fed < s.prompt.len() {
                let rest = s.prompt.len() - s.fed;
                let mut n = rest.min(self.config.prefill_chunk).min(cap);
                if rest - n == 1 && n >= 3 {
                    // Never a last chunk of one row: a one-row pass sums attention in
                    // llama.cpp's single-query order, a prompt pass in its batched order, and
                    // a fresh evaluation of the whole prompt is one prompt pass.
                    n -= 1;
                }
                if rows + n <= max_rows {
                    plan.push((i, s.fed, n, s.fed + n == s.prompt.len()));
                    rows += n;
                }
            }
        }
        if plan.is_empty() {
            return;
        }
        // The constraints of the sequences sampled after this step compute their masks on
        // another thread while the model evaluates the step.
        let mut constrained: Vec<(usize, Constraint)> = plan
            .iter()
            .filter(|p| p.3)
            .filter_map(|&(i, ..)| self.seqs[i].constraint.take().map(|c| (i, c)))
            .collect();
        let next_tokens: Vec<[u32; 1]> = plan
            .iter()
            .map(|&(i, ..)| [self.seqs[i].next.unwrap_or(0)])
            .collect();
        let chunks: Vec<SeqChunk<'_>> = plan
            .iter()
            .zip(&next_tokens)
            .map(|(&(i, from, n, logits), nt)| {
                let s = &self.seqs[i];
                let tokens: &[u32] = if s.next.is_some() {
                    nt
                } else {
                    &s.prompt[from..from + n]
                };
                SeqChunk {
                    slot: s.slot,
                    tokens,
                    logits,
                }
            })
            .collect();
        let n_vocab = self.model.n_vocab();
        let cap = self.model.slot_capacity();
        // Each planned sequence's cache length after this step.
        let lens: Vec<usize> = plan
            .iter()
            .map(|&(i, _, n, _)| self.model.slot_len(self.seqs[i].slot) + n)
            .collect();
        // The logits are read where the model left them (the other fields are borrowed apart
        // from the model): the sequences are sampled without copying the rows.
        let model = &mut self.model;
        let (result, masks) = std::thread::scope(|scope| {
            let masker = (!constrained.is_empty()).then(|| {
                scope.spawn(|| {
                    constrained
                        .iter_mut()
                        .map(|(_, c)| c.mask().map_err(|e| e.message))
                        .collect::<Vec<_>>()
                })
            });
            let result = model.forward(&chunks);
            let masks = masker.map(|h| h.join());
            (result, masks)
        });
        drop(chunks);
        let masks = match masks {
            Some(Ok(m)) => m,
            Some(Err(_)) => {
                vec![Err("the output constraint failed".to_string()); constrained.len()]
            }
            None => Vec::new(),
        };
        for ((i, c), m) in constrained.into_iter().zip(masks) {
            let s = &mut self.seqs[i];
            s.constraint = Some(c);
            s.mask = Some(m);
        }
        let logits = match result {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "forward pass failed");
                let msg = format!("the model failed: {e}");
                let mut failed: Vec<usize> = plan.iter().map(|p| p.0).collect();
                failed.sort_unstable();
                for &i in failed.iter().rev() {
                    let s = self.seqs.remove(i);
                    self.model.clear_slot(s.slot);
                    if let Some(c) = self.cached.get_mut(s.slot) {
                        c.clear();
                    }
                    s.tx.send(GenEvent::Failed(msg.clone()));
                }
                self.shared.lock().active = self.seqs.len();
                return;
            }
        };
        let (seqs, cached, text, buf) =
            (&mut self.seqs, &mut self.cached, &self.text, &mut self.row);
        for &(i, from, n, _) in &plan {
            let s = &seqs[i];
            // Only prompt rows of passes of two or more rows, right after the cached ones.
            if s.next.is_none() && n >= 2 {
                if let Some(c) = cached.get_mut(s.slot).filter(|c| c.len() == from) {
                    c.extend_from_slice(s.prompt.get(from..from + n).unwrap_or_default());
                }
            }
        }
        let mut rows_out = logits.chunks_exact(n_vocab.max(1));
        let mut finished = Vec::new();
        for (&(i, _, n, want), &len) in plan.iter().zip(&lens) {
            let s = &mut seqs[i];
            if s.next.is_some() {
                s.next = None;
            } else {
                s.fed += n;
            }
            if !want {
                continue;
            }
            let Some(row) = rows_out.next() else {
                finished.push((i, Err("the model returned too few logits".to_string())));
                continue;
            };
            if let Some(fin) = sample_and_emit(s, row, text, buf, len < cap) {
                finished.push((i, fin));
            }
        }
        finished.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
        for (i, fin) in finished {
            let mut s = self.seqs.remove(i);
            match fin {
                Ok(reason) => finish(&mut s, reason),
                Err(msg) => {
                    s.tx.send(GenEvent::Failed(msg));
                }
            }
        }
        self.shared.lock().active = self.seqs.len();
    }
}

/// Samples the next token of `s` from `logits`, sends its text, and says whether the sequence
/// ends (`room`: whether its slot can take one more token), or fails (its constraint failed).
fn sample_and_emit(
    s: &mut Seq,
    logits: &[f32],
    text: &BatchText,
    buf: &mut Vec<f32>,
    room: bool,
) -> Option<Result<FinishReason, String>> {
    let top = s.logprobs.map(|n| log_probs(logits, n));
    let id = match s.constraint.as_mut() {
        Some(c) => {
            // The mask computed while the model evaluated the step (else, not expected, now).
            let mask = match s.mask.take() {
                Some(m) => m,
                None => c.mask().map_err(|e| e.message),
            };
            let mask = match mask {
                Ok(m) => m,
                Err(why) => return Some(Err(why)),
            };
            // Only the tokens that keep the output in its language (the log-probabilities
            // above are the model's own).
            buf.clear();
            buf.extend_from_slice(logits);
            mask.apply(buf, &text.eog);
            let (sampler, history) = (&mut s.sampler, &s.history);
            match c.sample_accepted(buf, |l| sampler.sample(l, history)) {
                Ok(id) => id,
                Err(e) => return Some(Err(e.message)),
            }
        }
        None => match s.sampler.pick_unchanged(logits) {
            Some(id) => id,
            None => {
                // The sampler changes the logits (penalties, bias, temperature): on a copy.
                buf.clear();
                buf.extend_from_slice(logits);
                s.sampler.sample(buf, &s.history)
            }
        },
    };
    s.generated.push(id);
    s.history.push(id);
    let info = top.map(|(lse, top)| {
        let (piece, bytes) = text.piece(id);
        TokenInfo {
            id,
            text: piece,
            bytes,
            logprob: logits
                .get(id as usize)
                .map_or(f32::NEG_INFINITY, |l| l - lse),
            top: top
                .into_iter()
                .map(|(t, logprob)| {
                    let (text, bytes) = text.piece(t);
                    TopToken {
                        id: t,
                        text,
                        bytes,
                        logprob,
                    }
                })
                .collect(),
        }
    });
    if (!s.ignore_eos || s.constraint.is_some()) && text.is_eog(id) {
        s.tx.send(GenEvent::Delta {
            text: String::new(),
            token: Some(id),
            logprobs: info,
        });
        return Some(Ok(FinishReason::Stop));
    }
    // An id the tokenizer cannot decode (outside its vocabulary) adds no text.
    let (out, stopped) = match s.text.push(id) {
        Ok(TextStep::Text(t)) => (t, false),
        Ok(TextStep::Stop(t)) => (t, true),
        Err(_) => (String::new(), false),
    };
    s.tx.send(GenEvent::Delta {
        text: out,
        token: Some(id),
        logprobs: info,
    });
    if stopped || s.constraint.as_ref().is_some_and(Constraint::is_finished) {
        return Some(Ok(FinishReason::Stop));
    }
    if s.generated.len() >= s.max_tokens || !room {
        return Some(Ok(FinishReason::Length));
    }
    s.next = Some(id);
    None
}

/// Sends what is held back and the summary.
fn finish(s: &mut Seq, reason: FinishReason) {
    let rest = s.text.finish();
    if !rest.is_empty() {
        s.tx.send(GenEvent::Delta {
            text: rest,
            token: None,
            logprobs: None,
        });
    }
    s.tx.send(GenEvent::Done(GenSummary {
        finish_reason: reason,
        prompt_tokens: s.prompt.len(),
        completion_tokens: s.generated.len(),
    }));
}

/// `(log-sum-exp of logits, the n most likely (id, logprob))`.
fn log_probs(logits: &[f32], n: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let lse = max + sum.ln() as f32;
    let top = crate::generate::top_n(logits, n)
        .into_iter()
        .map(|(id, l)| (id, l - lse))
        .collect();
    (lse, top)
}
