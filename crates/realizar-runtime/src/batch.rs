//! Continuous batching: several sequences, each in its own KV cache slot, evaluated together in
//! one forward pass.
//!
//! A step of a serving loop gathers, for every active sequence, the tokens it needs evaluated
//! now (one sampled token while decoding, a chunk of its prompt while prefilling) and hands them
//! to [`BatchForward::forward`] as [`SeqChunk`]s. [`BatchDecoder`] runs all their rows through
//! each weight matrix at once (the weights are read once per step for every sequence), and runs
//! attention per sequence against that sequence's own cache.
//!
//! Batch invariance: the quantized matrix products of `realizar-quant` compute every row with
//! the same arithmetic whatever the number of rows, and attention of a sequence only reads its
//! own cache, so a sequence's logits are bit-identical whether it is evaluated alone or beside
//! others, and whatever the chunking of its prompt.

use realizar_nn::{KvState, KvType, Scratch, Segment};

use crate::model::DecoderModel;
use crate::RuntimeError;

/// The tokens one sequence needs evaluated in a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqChunk<'a> {
    /// The sequence's cache slot.
    pub slot: usize,
    /// Tokens that follow those already in the slot (at least one).
    pub tokens: &'a [u32],
    /// Whether the logits of the chunk's last token are wanted.
    pub logits: bool,
}

/// A model that evaluates chunks of several sequences, each in its own cache slot, in one
/// forward pass. The serving scheduler drives this trait; [`BatchDecoder`] implements it over a
/// [`DecoderModel`].
pub trait BatchForward: Send {
    /// Vocabulary size (length of one row of logits).
    fn n_vocab(&self) -> usize;
    /// Number of cache slots.
    fn n_slots(&self) -> usize;
    /// Positions each slot holds.
    fn slot_capacity(&self) -> usize;
    /// Most token rows one [`BatchForward::forward`] call accepts (all chunks together).
    fn max_rows(&self) -> usize;
    /// Positions filled in `slot` (0 for a slot that does not exist).
    fn slot_len(&self, slot: usize) -> usize;
    /// Empties `slot` (nothing happens for a slot that does not exist).
    fn clear_slot(&mut self, slot: usize);
    /// Keeps only the first `len` positions of `slot` (a prefix shared with the next sequence
    /// need not be evaluated again); nothing happens for a slot that does not exist.
    fn truncate_slot(&mut self, slot: usize, len: usize);
    /// Evaluates every chunk after the positions already in its slot, and returns the logits of
    /// the last token of each chunk that asks for them, `n_vocab` each, in the chunks' order.
    ///
    /// Errors (nothing is appended to any slot): no chunk, an empty chunk, a slot that does not
    /// exist or appears twice, a chunk that does not fit its slot, more than
    /// [`BatchForward::max_rows`] rows, a token id outside the vocabulary.
    fn forward(&mut self, chunks: &[SeqChunk<'_>]) -> Result<&[f32], RuntimeError>;
}

/// Options of [`BatchDecoder::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchOptions {
    /// Number of sequences evaluated together (cache slots).
    pub slots: usize,
    /// Positions of each slot's cache (`None`: the model's context length).
    pub ctx: Option<usize>,
    /// Most token rows in one forward pass (decode rows plus prefill chunks).
    pub max_rows: usize,
    /// Element type of the caches.
    pub kv_type: KvType,
}

impl Default for BatchOptions {
    fn default() -> BatchOptions {
        BatchOptions {
            slots: 4,
            ctx: None,
            max_rows: 128,
            kv_type: KvType::F16,
        }
    }
}

/// A decoder model with one KV cache per slot, allocated up front, evaluating several
/// sequences per forward pass ([`realizar_nn::Decoder::forward_segments`]).
#[derive(Debug)]
pub struct BatchDecoder {
    model: DecoderModel,
    caches: Vec<Box<dyn KvState>>,
    scratch: Scratch,
    max_rows: usize,
    /// Per-step lists, kept so that a step does not allocate once they have grown.
    tokens: Vec<u32>,
    segments: Vec<Segment>,
    logit_rows: Vec<usize>,
}

fn model_err(reason: String) -> RuntimeError {
    RuntimeError::InvalidArgument { reason }
}

impl BatchDecoder {
    /// Prepares `opts.slots` caches of `opts.ctx` positions over `model` (which is cloned: the
    /// mapping is shared, not copied). Errors: zero slots or rows, a context of 0, a cache too
    /// large to allocate.
    pub fn new(model: &DecoderModel, opts: BatchOptions) -> Result<BatchDecoder, RuntimeError> {
        if opts.slots == 0 || opts.max_rows == 0 || opts.ctx == Some(0) {
            return Err(model_err(format!(
                "batching needs at least one slot, one row and one position (slots {}, rows {}, ctx {:?})",
                opts.slots, opts.max_rows, opts.ctx
            )));
        }
        let model = model.clone();
        let ctx = opts.ctx.unwrap_or(model.ctx());
        let caches = (0..opts.slots)
            .map(|_| model.decoder().new_cache(opts.kv_type, ctx))
            .collect::<Result<Vec<_>, _>>()?;
        let scratch = model.decoder().new_scratch(opts.max_rows);
        Ok(BatchDecoder {
            model,
            caches,
            scratch,
            max_rows: opts.max_rows,
            tokens: Vec::new(),
            segments: Vec::new(),
            logit_rows: Vec::new(),
        })
    }

    /// The model.
    pub fn model(&self) -> &DecoderModel {
        &self.model
    }
}

impl BatchDecoder {
    fn check(&self, chunks: &[SeqChunk<'_>]) -> Result<usize, RuntimeError> {
        if chunks.is_empty() {
            return Err(model_err("no sequence to evaluate".into()));
        }
        let vocab = self.model.decoder().config().n_vocab;
        let mut rows = 0usize;
        for (i, ch) in chunks.iter().enumerate() {
            let cache = self.caches.get(ch.slot).ok_or_else(|| {
                model_err(format!(
                    "slot {} of {} does not exist",
                    ch.slot,
                    self.caches.len()
                ))
            })?;
            if chunks[..i].iter().any(|c| c.slot == ch.slot) {
                return Err(model_err(format!(
                    "slot {} appears twice in one batch",
                    ch.slot
                )));
            }
            if ch.tokens.is_empty() {
                return Err(model_err(format!("empty chunk for slot {}", ch.slot)));
            }
            if ch.tokens.len() > cache.capacity() - cache.len() {
                return Err(RuntimeError::PromptTooLong {
                    tokens: cache.len() + ch.tokens.len(),
                    ctx: cache.capacity(),
                });
            }
            if let Some(&id) = ch.tokens.iter().find(|&&t| t as usize >= vocab) {
                return Err(RuntimeError::Model {
                    path: self.model.path().to_path_buf(),
                    source: realizar_nn::NnError::TokenOutOfRange { id, vocab },
                });
            }
            rows += ch.tokens.len();
        }
        if rows > self.max_rows {
            return Err(model_err(format!(
                "{rows} rows in one batch, more than the {} allowed",
                self.max_rows
            )));
        }
        Ok(rows)
    }
}

impl BatchForward for BatchDecoder {
    fn n_vocab(&self) -> usize {
        self.model.decoder().config().n_vocab
    }

    fn n_slots(&self) -> usize {
        self.caches.len()
    }

    fn slot_capacity(&self) -> usize {
        self.caches.first().map_or(0, |c| c.capacity())
    }

    fn max_rows(&self) -> usize {
        self.max_rows
    }

    fn slot_len(&self, slot: usize) -> usize {
        self.caches.get(slot).map_or(0, |c| c.len())
    }

    fn clear_slot(&mut self, slot: usize) {
        if let Some(c) = self.caches.get_mut(slot) {
            c.clear();
        }
    }

    fn truncate_slot(&mut self, slot: usize, len: usize) {
        if let Some(c) = self.caches.get_mut(slot) {
            c.truncate(len);
        }
    }

    fn forward(&mut self, chunks: &[SeqChunk<'_>]) -> Result<&[f32], RuntimeError> {
        self.check(chunks)?;
        self.tokens.clear();
        self.segments.clear();
        self.logit_rows.clear();
        for ch in chunks {
            self.tokens.extend_from_slice(ch.tokens);
            self.segments.push(Segment {
                cache: ch.slot,
                rows: ch.tokens.len(),
            });
            if ch.logits {
                self.logit_rows.push(self.tokens.len() - 1);
            }
        }
        Ok(self.model.decoder().forward_segments(
            &self.tokens,
            &mut self.caches,
            &self.segments,
            &self.logit_rows,
            &mut self.scratch,
        )?)
    }
}
