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

use realizar_format_gguf::GgufFile;
use realizar_nn::layers::{rms_norm, rms_norm_inplace};
use realizar_nn::{ActScratch, AttentionShape, Backend, DecoderConfig, KvCache, KvType, QTensor};
use realizar_quant::QuantType;

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

/// The weights of one block, located in the model's mapped file.
#[derive(Clone, Debug)]
struct Block {
    attn_norm: Vec<f32>,
    wq: QTensor,
    wk: QTensor,
    wv: QTensor,
    wo: QTensor,
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    post_attn_norm: Option<Vec<f32>>,
    ffn_norm: Vec<f32>,
    gate: QTensor,
    up: QTensor,
    down: QTensor,
    post_ffn_norm: Option<Vec<f32>>,
}

/// Activation buffers for `rows` token rows.
#[derive(Debug)]
struct Buffers {
    rows: usize,
    x: Vec<f32>,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    att: Vec<f32>,
    o: Vec<f32>,
    gate: Vec<f32>,
    up: Vec<f32>,
    scores: Vec<f32>,
    rope: Vec<f32>,
    act: ActScratch,
    logits: Vec<f32>,
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
/// sequences per forward pass.
#[derive(Debug)]
pub struct BatchDecoder {
    model: DecoderModel,
    config: DecoderConfig,
    token_embd: QTensor,
    output_norm: Vec<f32>,
    output: QTensor,
    blocks: Vec<Block>,
    caches: Vec<KvCache>,
    buf: Buffers,
}

/// Locates the weights of `model`'s file the way the decoder does (same tensor names).
struct Locator<'f, 'a> {
    file: &'f GgufFile<'a>,
    base: usize,
    store_len: usize,
}

fn model_err(reason: String) -> RuntimeError {
    RuntimeError::InvalidArgument { reason }
}

impl Locator<'_, '_> {
    fn matrix(&self, name: &str, cols: usize, rows: usize) -> Result<QTensor, RuntimeError> {
        let info = self
            .file
            .tensor(name)
            .ok_or_else(|| model_err(format!("tensor `{name}` is missing")))?;
        let ty = QuantType::from_ggml_id(info.ty.id())
            .ok_or_else(|| model_err(format!("tensor `{name}` has an unsupported type")))?;
        let len = ty
            .row_bytes(cols)
            .and_then(|rb| rb.checked_mul(rows))
            .ok_or_else(|| model_err(format!("tensor `{name}`: bad shape")))?;
        let data = self
            .file
            .tensor_data(name)
            .map_err(|e| model_err(format!("tensor `{name}`: {e}")))?;
        let offset = (data.as_ptr() as usize).wrapping_sub(self.base);
        if data.len() != len || offset.checked_add(len).is_none_or(|e| e > self.store_len) {
            return Err(model_err(format!(
                "tensor `{name}`: {} bytes where {rows}×{cols} {ty:?} needs {len}",
                data.len()
            )));
        }
        Ok(QTensor {
            name: name.into(),
            ty,
            rows,
            cols,
            offset,
            len,
        })
    }

    fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, RuntimeError> {
        let info = self
            .file
            .tensor(name)
            .ok_or_else(|| model_err(format!("tensor `{name}` is missing")))?;
        let ty = QuantType::from_ggml_id(info.ty.id())
            .ok_or_else(|| model_err(format!("tensor `{name}` has an unsupported type")))?;
        let data = self
            .file
            .tensor_data(name)
            .map_err(|e| model_err(format!("tensor `{name}`: {e}")))?;
        let mut out = vec![0.0; n];
        realizar_quant::dequantize_row(ty, data, &mut out)
            .map_err(|e| model_err(format!("tensor `{name}`: {e}")))?;
        Ok(out)
    }

    fn opt_vector(
        &self,
        name: &str,
        n: usize,
        want: bool,
    ) -> Result<Option<Vec<f32>>, RuntimeError> {
        if want {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }
}

impl BatchDecoder {
    /// Prepares `opts.slots` caches of `opts.ctx` positions over `model` (which is cloned: the
    /// mapping is shared, not copied). Errors: zero slots or rows, a context of 0, a cache too
    /// large to allocate, or weights the decoder would also reject.
    pub fn new(model: &DecoderModel, opts: BatchOptions) -> Result<BatchDecoder, RuntimeError> {
        if opts.slots == 0 || opts.max_rows == 0 || opts.ctx == Some(0) {
            return Err(model_err(format!(
                "batching needs at least one slot, one row and one position (slots {}, rows {}, ctx {:?})",
                opts.slots, opts.max_rows, opts.ctx
            )));
        }
        let model = model.clone();
        let config = model.decoder().config().clone();
        let ctx = opts.ctx.unwrap_or(model.ctx());
        let (token_embd, output, output_norm, blocks) = model.with_gguf(|file| {
            let bytes = model.file_bytes();
            let loc = Locator {
                file,
                base: bytes.as_ptr() as usize,
                store_len: bytes.len(),
            };
            load_weights(&loc, &config)
        })??;
        let caches = (0..opts.slots)
            .map(|_| model.decoder().new_cache(opts.kv_type, ctx))
            .collect::<Result<Vec<_>, _>>()?;
        let buf = Buffers::new(&config, opts.max_rows, ctx);
        Ok(BatchDecoder {
            model,
            config,
            token_embd,
            output_norm,
            output,
            blocks,
            caches,
            buf,
        })
    }

    /// The model.
    pub fn model(&self) -> &DecoderModel {
        &self.model
    }
}

type Weights = (QTensor, QTensor, Vec<f32>, Vec<Block>);

fn load_weights(loc: &Locator<'_, '_>, c: &DecoderConfig) -> Result<Weights, RuntimeError> {
    let d = c.n_embd;
    let token_embd = loc.matrix("token_embd.weight", d, c.n_vocab)?;
    let output = if loc.file.tensor("output.weight").is_some() {
        loc.matrix("output.weight", d, c.n_vocab)?
    } else {
        token_embd.clone()
    };
    let output_norm = loc.vector("output_norm.weight", d)?;
    let (hd, nh, nkv, ff) = (c.head_dim, c.n_head, c.n_head_kv, c.n_ff);
    let mut blocks = Vec::with_capacity(c.n_layer);
    for il in 0..c.n_layer {
        let n = |s: &str| format!("blk.{il}.{s}.weight");
        blocks.push(Block {
            attn_norm: loc.vector(&n("attn_norm"), d)?,
            wq: loc.matrix(&n("attn_q"), d, nh * hd)?,
            wk: loc.matrix(&n("attn_k"), d, nkv * hd)?,
            wv: loc.matrix(&n("attn_v"), d, nkv * hd)?,
            wo: loc.matrix(&n("attn_output"), nh * hd, d)?,
            q_norm: loc.opt_vector(&n("attn_q_norm"), hd, c.qk_norm)?,
            k_norm: loc.opt_vector(&n("attn_k_norm"), hd, c.qk_norm)?,
            post_attn_norm: loc.opt_vector(&n("post_attention_norm"), d, c.post_norms)?,
            ffn_norm: loc.vector(&n("ffn_norm"), d)?,
            gate: loc.matrix(&n("ffn_gate"), d, ff)?,
            up: loc.matrix(&n("ffn_up"), d, ff)?,
            down: loc.matrix(&n("ffn_down"), ff, d)?,
            post_ffn_norm: loc.opt_vector(&n("post_ffw_norm"), d, c.post_norms)?,
        });
    }
    Ok((token_embd, output, output_norm, blocks))
}

impl Buffers {
    fn new(c: &DecoderConfig, rows: usize, ctx: usize) -> Buffers {
        let qw = c.n_head * c.head_dim;
        let kw = c.n_head_kv * c.head_dim;
        Buffers {
            rows,
            x: vec![0.0; rows * c.n_embd],
            xn: vec![0.0; rows * c.n_embd.max(qw)],
            q: vec![0.0; rows * qw],
            k: vec![0.0; rows * kw],
            v: vec![0.0; rows * kw],
            att: vec![0.0; rows * qw],
            o: vec![0.0; rows * c.n_embd],
            gate: vec![0.0; rows * c.n_ff],
            up: vec![0.0; rows * c.n_ff],
            scores: vec![0.0; c.n_head * ctx],
            rope: vec![0.0; c.head_dim],
            act: ActScratch::default(),
            logits: Vec::new(),
        }
    }
}

/// `x += norm(o)` (or `x += o` without a post-norm), row by row.
fn add_residual(x: &mut [f32], o: &mut [f32], post_norm: Option<&[f32]>, d: usize, eps: f32) {
    for (xt, ot) in x.chunks_exact_mut(d).zip(o.chunks_exact_mut(d)) {
        if let Some(w) = post_norm {
            rms_norm_inplace(ot, w, eps);
        }
        for (a, b) in xt.iter_mut().zip(ot.iter()) {
            *a += *b;
        }
    }
}

impl BatchDecoder {
    fn check(&self, chunks: &[SeqChunk<'_>]) -> Result<usize, RuntimeError> {
        if chunks.is_empty() {
            return Err(model_err("no sequence to evaluate".into()));
        }
        let mut seen = vec![false; self.caches.len()];
        let mut rows = 0usize;
        for ch in chunks {
            let cache = self.caches.get(ch.slot).ok_or_else(|| {
                model_err(format!(
                    "slot {} of {} does not exist",
                    ch.slot,
                    self.caches.len()
                ))
            })?;
            if std::mem::replace(&mut seen[ch.slot], true) {
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
            if let Some(&id) = ch
                .tokens
                .iter()
                .find(|&&t| t as usize >= self.config.n_vocab)
            {
                return Err(RuntimeError::Model {
                    path: self.model.path().to_path_buf(),
                    source: realizar_nn::NnError::TokenOutOfRange {
                        id,
                        vocab: self.config.n_vocab,
                    },
                });
            }
            rows += ch.tokens.len();
        }
        if rows > self.buf.rows {
            return Err(model_err(format!(
                "{rows} rows in one batch, more than the {} allowed",
                self.buf.rows
            )));
        }
        Ok(rows)
    }
}

impl BatchForward for BatchDecoder {
    fn n_vocab(&self) -> usize {
        self.config.n_vocab
    }

    fn n_slots(&self) -> usize {
        self.caches.len()
    }

    fn slot_capacity(&self) -> usize {
        self.caches.first().map_or(0, KvCache::capacity)
    }

    fn max_rows(&self) -> usize {
        self.buf.rows
    }

    fn slot_len(&self, slot: usize) -> usize {
        self.caches.get(slot).map_or(0, KvCache::len)
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
        let be = std::sync::Arc::clone(self.model.decoder().backend());
        let mut result = Ok(());
        be.install(&mut || result = self.forward_pass(chunks));
        result?;
        Ok(&self.buf.logits)
    }
}

impl BatchDecoder {
    /// [`BatchForward::forward`]'s pass, run on the backend's threads.
    fn forward_pass(&mut self, chunks: &[SeqChunk<'_>]) -> Result<(), RuntimeError> {
        let m = self.check(chunks)?;
        let c = &self.config;
        let store: &[u8] = self.model.file_bytes();
        let be: &dyn Backend = &**self.model.decoder().backend();
        let s = &mut self.buf;
        let d = c.n_embd;
        let hd = c.head_dim;
        let (qw, kw) = (c.n_head * hd, c.n_head_kv * hd);

        // Token embeddings, one dequantized row per token.
        let emb = self.token_embd.bytes(store)?;
        let rb = self.token_embd.row_bytes();
        let all_tokens = chunks.iter().flat_map(|ch| ch.tokens.iter());
        for (xt, &id) in s.x.chunks_exact_mut(d).zip(all_tokens) {
            let row = emb
                .get(id as usize * rb..(id as usize + 1) * rb)
                .ok_or_else(|| model_err(format!("token {id} outside the embedding")))?;
            realizar_quant::dequantize_row(self.token_embd.ty, row, xt)
                .map_err(|e| model_err(format!("token_embd.weight: {e}")))?;
            if let Some(scale) = c.embed_scale {
                xt.iter_mut().for_each(|v| *v *= scale);
            }
        }

        for (il, (lw, spec)) in self.blocks.iter().zip(&c.layers).enumerate() {
            for (xt, nt) in s.x[..m * d].chunks_exact(d).zip(s.xn.chunks_exact_mut(d)) {
                rms_norm(xt, &lw.attn_norm, c.norm_eps, nt);
            }
            let xn = &s.xn[..m * d];
            be.linear(
                &lw.wq,
                lw.wq.bytes(store)?,
                xn,
                m,
                &mut s.q[..m * qw],
                &mut s.act,
            )?;
            be.linear(
                &lw.wk,
                lw.wk.bytes(store)?,
                xn,
                m,
                &mut s.k[..m * kw],
                &mut s.act,
            )?;
            be.linear(
                &lw.wv,
                lw.wv.bytes(store)?,
                xn,
                m,
                &mut s.v[..m * kw],
                &mut s.act,
            )?;
            let shape = AttentionShape {
                n_head: c.n_head,
                n_head_kv: c.n_head_kv,
                head_dim: hd,
                kq_scale: c.kq_scale,
                window: spec.window,
            };
            let mut r0 = 0usize;
            for ch in chunks {
                let cache = &mut self.caches[ch.slot];
                let start = cache.len();
                let len = ch.tokens.len();
                for t in 0..len {
                    let r = r0 + t;
                    spec.rope.fill_cache(start + t, &mut s.rope);
                    for qh in s.q[r * qw..(r + 1) * qw].chunks_exact_mut(hd) {
                        if let Some(w) = &lw.q_norm {
                            rms_norm_inplace(qh, w, c.norm_eps);
                        }
                        spec.rope.apply(qh, &s.rope);
                        if c.q_scale != 1.0 {
                            qh.iter_mut().for_each(|v| *v *= c.q_scale);
                        }
                    }
                    for kh in s.k[r * kw..(r + 1) * kw].chunks_exact_mut(hd) {
                        if let Some(w) = &lw.k_norm {
                            rms_norm_inplace(kh, w, c.norm_eps);
                        }
                        spec.rope.apply(kh, &s.rope);
                    }
                    cache.store(
                        il,
                        start + t,
                        &s.k[r * kw..(r + 1) * kw],
                        &s.v[r * kw..(r + 1) * kw],
                    );
                }
                be.attention(
                    &shape,
                    &s.q[r0 * qw..(r0 + len) * qw],
                    cache,
                    il,
                    start..start + len,
                    &mut s.att[r0 * qw..(r0 + len) * qw],
                    &mut s.scores,
                )?;
                r0 += len;
            }
            be.linear(
                &lw.wo,
                lw.wo.bytes(store)?,
                &s.att[..m * qw],
                m,
                &mut s.o[..m * d],
                &mut s.act,
            )?;
            add_residual(
                &mut s.x[..m * d],
                &mut s.o[..m * d],
                lw.post_attn_norm.as_deref(),
                d,
                c.norm_eps,
            );

            for (xt, nt) in s.x[..m * d].chunks_exact(d).zip(s.xn.chunks_exact_mut(d)) {
                rms_norm(xt, &lw.ffn_norm, c.norm_eps, nt);
            }
            let xn = &s.xn[..m * d];
            let f = c.n_ff;
            be.linear(
                &lw.gate,
                lw.gate.bytes(store)?,
                xn,
                m,
                &mut s.gate[..m * f],
                &mut s.act,
            )?;
            be.linear(
                &lw.up,
                lw.up.bytes(store)?,
                xn,
                m,
                &mut s.up[..m * f],
                &mut s.act,
            )?;
            c.activation.glu(&mut s.gate[..m * f], &s.up[..m * f]);
            be.linear(
                &lw.down,
                lw.down.bytes(store)?,
                &s.gate[..m * f],
                m,
                &mut s.o[..m * d],
                &mut s.act,
            )?;
            add_residual(
                &mut s.x[..m * d],
                &mut s.o[..m * d],
                lw.post_ffn_norm.as_deref(),
                d,
                c.norm_eps,
            );
        }
        for ch in chunks {
            self.caches[ch.slot].advance(ch.tokens.len());
        }

        // Output head over the last row of each chunk that wants logits.
        let mut rows = 0usize;
        let mut end = 0usize;
        for ch in chunks {
            end += ch.tokens.len();
            if ch.logits {
                let last = end - 1;
                let (src, dst) = (&s.x[last * d..end * d], rows * d);
                rms_norm(src, &self.output_norm, c.norm_eps, &mut s.xn[dst..dst + d]);
                rows += 1;
            }
        }
        let v = c.n_vocab;
        s.logits.resize(rows * v, 0.0);
        if rows > 0 {
            be.linear(
                &self.output,
                self.output.bytes(store)?,
                &s.xn[..rows * d],
                rows,
                &mut s.logits,
                &mut s.act,
            )?;
            if let Some(cap) = c.final_softcap {
                s.logits
                    .iter_mut()
                    .for_each(|l| *l = (*l / cap).tanh() * cap);
            }
        }
        Ok(())
    }
}
