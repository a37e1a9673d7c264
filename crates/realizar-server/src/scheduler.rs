//! Continuous batching over the cache slots of a [`BatchForward`] model, on a dedicated OS
//! thread.
//!
//! Each step the scheduler admits waiting requests into free slots, drops cancelled sequences,
//! then evaluates one batch: the last sampled token of every decoding sequence plus a chunk of
//! at most `prefill_chunk` prompt tokens of sequences still reading their prompts (so a long
//! prompt never stalls the others for more than one chunk, and never a last chunk of one row).
//! A new sequence skips the prompt prefix it shares with what its slot last held (see
//! [`SchedulerConfig::reuse_prefix`]). The logits of each sequence are sampled with its own
//! [`Sampler`]; text is decoded incrementally (never splitting a UTF-8 character) and held
//! back while it could be the beginning of a stop string.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use realizar_runtime::batch::{BatchForward, SeqChunk};
use realizar_runtime::Sampler;

use crate::engine::{
    gen_channel, EngineError, EngineLoad, FinishReason, GenEvent, GenRequest, GenSender, GenStream,
    GenSummary, TokenInfo,
};

/// What the scheduler needs from a tokenizer.
pub trait TokenText: Send + Sync + 'static {
    /// The bytes of `ids` decoded as generated text (special tokens left out). Decoding a
    /// prefix of ids must give a prefix of the bytes.
    fn decode_bytes(&self, ids: &[u32]) -> Vec<u8>;
    /// Whether `id` ends generation.
    fn is_eog(&self, id: u32) -> bool;
    /// The text of one token, for log-probability reports.
    fn piece(&self, id: u32) -> String;
}

/// Options of [`Scheduler::start`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Requests that may wait for a slot; more are refused with [`EngineError::QueueFull`].
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

impl Default for SchedulerConfig {
    fn default() -> SchedulerConfig {
        SchedulerConfig {
            queue: 64,
            prefill_chunk: 64,
            reuse_prefix: true,
        }
    }
}

struct Pending {
    req: GenRequest,
    tx: GenSender,
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
pub struct Scheduler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    slots: usize,
    ctx: usize,
    queue_cap: usize,
}

impl core::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Scheduler")
            .field("slots", &self.slots)
            .field("ctx", &self.ctx)
            .field("queue", &self.queue_cap)
            .finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Starts the scheduler thread over `model`. Errors when the model has no slot, or fewer
    /// rows per pass than slots plus one (every decoding sequence needs a row, and a prefill
    /// chunk at least one more), or the thread cannot be spawned.
    pub fn start<M: BatchForward + 'static>(
        model: M,
        text: Arc<dyn TokenText>,
        config: SchedulerConfig,
    ) -> Result<Scheduler, EngineError> {
        let slots = model.n_slots();
        let ctx = model.slot_capacity();
        if slots == 0 || model.max_rows() <= slots || ctx == 0 || config.prefill_chunk == 0 {
            return Err(EngineError::Internal(format!(
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
            text,
            shared: shared.clone(),
            config,
            seqs: Vec::new(),
            row: Vec::new(),
            cached: vec![Vec::new(); slots],
        };
        let thread = std::thread::Builder::new()
            .name("realizar-scheduler".into())
            .spawn(move || worker.run())
            .map_err(|e| EngineError::Internal(format!("cannot start the model thread: {e}")))?;
        Ok(Scheduler {
            shared,
            thread: Some(thread),
            slots,
            ctx,
            queue_cap: config.queue,
        })
    }

    /// Positions of each slot.
    pub fn ctx(&self) -> usize {
        self.ctx
    }

    /// Queues a request. Errors at once: an empty prompt, a prompt longer than a slot, a full
    /// queue, a stopped scheduler.
    pub fn submit(&self, req: GenRequest) -> Result<GenStream, EngineError> {
        if req.prompt.is_empty() {
            return Err(EngineError::InvalidInput {
                param: "prompt",
                reason: "the prompt is empty".into(),
            });
        }
        if req.prompt.len() > self.ctx {
            return Err(EngineError::ContextExceeded {
                tokens: req.prompt.len(),
                ctx: self.ctx,
                max_tokens: req.max_tokens,
            });
        }
        let (tx, stream) = gen_channel();
        let mut st = self.shared.lock();
        if st.shutdown || self.thread.as_ref().is_none_or(|t| t.is_finished()) {
            return Err(EngineError::Unavailable);
        }
        if st.queue.len() + st.active >= self.slots + self.queue_cap {
            return Err(EngineError::QueueFull {
                queued: st.queue.len(),
            });
        }
        st.queue.push_back(Pending { req, tx });
        drop(st);
        self.shared.wake.notify_one();
        Ok(stream)
    }

    /// Queue depth and active sequences.
    pub fn load(&self) -> EngineLoad {
        let st = self.shared.lock();
        EngineLoad {
            queued: st.queue.len(),
            active: st.active,
            slots: self.slots,
        }
    }
}

impl Drop for Scheduler {
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
    tx: GenSender,
    prompt: Vec<u32>,
    /// Prompt tokens already in the cache.
    fed: usize,
    /// The token to evaluate next once the prompt is in.
    next: Option<u32>,
    generated: Vec<u32>,
    history: Vec<u32>,
    sampler: Sampler,
    max_tokens: usize,
    stop: Vec<String>,
    logprobs: Option<usize>,
    ignore_eos: bool,
    /// Bytes of the decoded text already turned into `unsent` or sent.
    consumed: usize,
    /// Final text not sent yet (it could begin a stop string).
    unsent: String,
}

struct Worker<M> {
    model: M,
    text: Arc<dyn TokenText>,
    shared: Arc<Shared>,
    config: SchedulerConfig,
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
                let mut history = Vec::with_capacity(p.req.prompt.len() + p.req.max_tokens);
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
                    stop: p.req.stop.into_iter().filter(|s| !s.is_empty()).collect(),
                    logprobs: p.req.logprobs,
                    ignore_eos: p.req.ignore_eos,
                    consumed: 0,
                    unsent: String::new(),
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
        let result = self.model.forward(&chunks);
        drop(chunks);
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
            if let Some(fin) = sample_and_emit(s, row, &**text, buf, len < cap) {
                finished.push((i, Ok(fin)));
            }
        }
        finished.sort_unstable_by_key(|f| std::cmp::Reverse(f.0));
        for (i, fin) in finished {
            let mut s = self.seqs.remove(i);
            match fin {
                Ok(reason) => finish(&mut s, reason, &*self.text),
                Err(msg) => {
                    s.tx.send(GenEvent::Failed(msg));
                }
            }
        }
        self.shared.lock().active = self.seqs.len();
    }
}

/// Samples the next token of `s` from `logits`, sends its text, and says whether the sequence
/// ends (`room`: whether its slot can take one more token).
fn sample_and_emit(
    s: &mut Seq,
    logits: &[f32],
    text: &dyn TokenText,
    buf: &mut Vec<f32>,
    room: bool,
) -> Option<FinishReason> {
    let top = s.logprobs.map(|n| log_probs(logits, n));
    let id = match s.sampler.pick_unchanged(logits) {
        Some(id) => id,
        None => {
            // The sampler changes the logits (penalties, bias, temperature): on a copy.
            buf.clear();
            buf.extend_from_slice(logits);
            s.sampler.sample(buf, &s.history)
        }
    };
    s.generated.push(id);
    s.history.push(id);
    let info = top.map(|(lse, top)| TokenInfo {
        id,
        text: text.piece(id),
        logprob: logits
            .get(id as usize)
            .map_or(f32::NEG_INFINITY, |l| l - lse),
        top: top
            .into_iter()
            .map(|(t, lp)| (t, text.piece(t), lp))
            .collect(),
    });
    if !s.ignore_eos && text.is_eog(id) {
        s.tx.send(GenEvent::Delta {
            text: String::new(),
            token: Some(id),
            logprobs: info,
        });
        return Some(FinishReason::Stop);
    }
    let bytes = text.decode_bytes(&s.generated);
    let (fresh, used) = take_complete_utf8(bytes.get(s.consumed..).unwrap_or_default());
    s.consumed += used;
    s.unsent.push_str(&fresh);
    if let Some(at) = find_stop(&s.unsent, &s.stop) {
        s.unsent.truncate(at);
        let out = std::mem::take(&mut s.unsent);
        s.tx.send(GenEvent::Delta {
            text: out,
            token: Some(id),
            logprobs: info,
        });
        s.consumed = usize::MAX;
        return Some(FinishReason::Stop);
    }
    let keep = s.unsent.len() - stop_prefix_len(&s.unsent, &s.stop);
    let out: String = s.unsent.drain(..keep).collect();
    s.tx.send(GenEvent::Delta {
        text: out,
        token: Some(id),
        logprobs: info,
    });
    if s.generated.len() >= s.max_tokens || !room {
        return Some(FinishReason::Length);
    }
    s.next = Some(id);
    None
}

/// Sends what is held back and the summary.
fn finish(s: &mut Seq, reason: FinishReason, text: &dyn TokenText) {
    if s.consumed != usize::MAX {
        let bytes = text.decode_bytes(&s.generated);
        let rest = bytes.get(s.consumed..).unwrap_or_default();
        s.unsent.push_str(&String::from_utf8_lossy(rest));
        if let Some(at) = find_stop(&s.unsent, &s.stop) {
            s.unsent.truncate(at);
        }
    }
    if !s.unsent.is_empty() {
        s.tx.send(GenEvent::Delta {
            text: std::mem::take(&mut s.unsent),
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

/// The complete characters at the start of `bytes` (invalid sequences become U+FFFD) and how
/// many bytes they use; an incomplete character at the end is left.
pub(crate) fn take_complete_utf8(mut bytes: &[u8]) -> (String, usize) {
    let mut out = String::new();
    let mut used = 0usize;
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return (out, used + bytes.len());
            }
            Err(e) => {
                let (good, bad) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                used += good.len();
                match e.error_len() {
                    Some(n) => {
                        out.push('\u{FFFD}');
                        used += n;
                        bytes = bad.get(n..).unwrap_or_default();
                    }
                    None => return (out, used),
                }
            }
        }
    }
}

/// The byte index of the earliest occurrence of any stop string in `text`.
pub(crate) fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s.as_str()))
        .min()
}

/// The length of the longest suffix of `text` that is a proper prefix of a stop string (it
/// must be held back: the next token may complete the stop string).
pub(crate) fn stop_prefix_len(text: &str, stops: &[String]) -> usize {
    let mut best = 0;
    for stop in stops {
        for (i, _) in text.char_indices() {
            let tail = &text[i..];
            if tail.len() <= best {
                break;
            }
            if tail.len() < stop.len() && stop.starts_with(tail) {
                best = tail.len();
                break;
            }
        }
    }
    best
}

/// `(log-sum-exp of logits, the n most likely (id, logprob))`.
fn log_probs(logits: &[f32], n: usize) -> (f32, Vec<(u32, f32)>) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    let lse = max + sum.ln() as f32;
    let top = realizar_runtime::generate::top_n(logits, n)
        .into_iter()
        .map(|(id, l)| (id, l - lse))
        .collect();
    (lse, top)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_taken_up_to_an_incomplete_character() {
        let euro = "€".as_bytes();
        assert_eq!(take_complete_utf8(&euro[..2]), (String::new(), 0));
        assert_eq!(take_complete_utf8(b"ab\xe2\x82"), ("ab".into(), 2));
        assert_eq!(take_complete_utf8(euro), ("€".into(), 3));
        assert_eq!(take_complete_utf8(b"a\xffb"), ("a\u{FFFD}b".into(), 3));
    }

    #[test]
    fn stop_prefixes_are_held_back() {
        let stops = vec!["END".to_string(), "\n\n".to_string()];
        assert_eq!(stop_prefix_len("hello E", &stops), 1);
        assert_eq!(stop_prefix_len("hello EN", &stops), 2);
        assert_eq!(stop_prefix_len("hello\n", &stops), 1);
        assert_eq!(stop_prefix_len("hello", &stops), 0);
        assert_eq!(stop_prefix_len("é", &["éa".to_string()]), 2);
        assert_eq!(find_stop("a\n\nEND", &stops), Some(1));
        assert_eq!(find_stop("abc", &stops), None);
    }
}
