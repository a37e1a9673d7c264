//! The compute backend trait and its CPU implementation.
//!
//! A forward pass spends its time in two operations: products of quantized weight matrices with
//! activations ([`Backend::linear`]) and attention over the KV cache ([`Backend::attention`]).
//! Those are what a backend provides; the cheap element-wise steps (norms, RoPE, activations)
//! stay in the decoder. The CPU backend threads both over a persistent rayon pool.

use core::any::Any;
use core::fmt;
use core::ops::Range;
use std::sync::Arc;

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use realizar_quant::{vecops, QuantType};

use crate::decoder::WeightBytes;
use crate::kv::{KvCache, KvState, KvType, KvView};
use crate::NnError;

/// A weight matrix in the model's byte store: `rows` rows of `cols` elements of type `ty`,
/// `len` bytes at `offset`. It holds no bytes itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QTensor {
    /// The tensor's name in the file.
    pub name: String,
    /// Element type.
    pub ty: QuantType,
    /// Output features (ggml `ne[1]`).
    pub rows: usize,
    /// Input features (ggml `ne[0]`), a multiple of the type's block size.
    pub cols: usize,
    /// Byte offset in the store.
    pub offset: usize,
    /// Byte length (`rows * row_bytes`).
    pub len: usize,
}

impl QTensor {
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.len.checked_div(self.rows).unwrap_or(0)
    }

    /// This tensor's bytes in `store`.
    pub fn bytes<'a>(&self, store: &'a [u8]) -> Result<&'a [u8], NnError> {
        self.offset
            .checked_add(self.len)
            .and_then(|end| store.get(self.offset..end))
            .ok_or_else(|| NnError::InvalidArgument {
                reason: format!("tensor `{}` lies outside the weight store", self.name),
            })
    }
}

/// A weight matrix a backend holds: its shape and the backend's own storage of its bytes,
/// made once by [`Backend::upload`] (a view of the mapped file for the CPU, device memory for
/// a GPU). Cloning shares the storage.
#[derive(Clone)]
pub struct Weight {
    /// Name, type and shape (its `offset`/`len` locate it in the store it was uploaded from).
    pub info: QTensor,
    data: Arc<dyn Any + Send + Sync>,
}

impl fmt::Debug for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Weight")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Weight {
    fn eq(&self, other: &Weight) -> bool {
        self.info == other.info && Arc::ptr_eq(&self.data, &other.data)
    }
}

impl Weight {
    /// A weight whose storage is `data` (a backend's own type).
    pub fn new(info: QTensor, data: Arc<dyn Any + Send + Sync>) -> Weight {
        Weight { info, data }
    }

    /// The backend's storage, if it is a `T`.
    pub fn data<T: Any>(&self) -> Option<&T> {
        self.data.downcast_ref::<T>()
    }
}

/// Host storage of a weight: the shared store it lies in ([`Backend::upload`]'s default).
struct HostWeight(WeightBytes);

/// The bytes of a weight uploaded to a host backend.
pub fn host_bytes(w: &Weight) -> Result<&[u8], NnError> {
    let store = w
        .data::<HostWeight>()
        .ok_or_else(|| NnError::InvalidArgument {
            reason: format!("weight `{}` was uploaded to another backend", w.info.name),
        })?;
    w.info.bytes((*store.0).as_ref())
}

/// The shape of a sequence's key/value state ([`Backend::new_kv`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayout {
    /// Element type.
    pub ty: KvType,
    /// Layers.
    pub n_layer: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Dimension of each head.
    pub head_dim: usize,
    /// Positions.
    pub capacity: usize,
}

/// Scratch space a backend may use for quantized activations; kept by the caller so that the
/// decode loop does not allocate. Stored as `u64` words for alignment.
#[derive(Clone, Debug, Default)]
pub struct ActScratch {
    words: Vec<u64>,
    floats: Vec<f32>,
    packed: realizar_quant::PackedActs,
}

impl ActScratch {
    /// A byte buffer of exactly `n` bytes, 8-byte aligned (grows the storage when needed).
    pub fn bytes_mut(&mut self, n: usize) -> &mut [u8] {
        self.split(n, 0).0
    }

    /// [`ActScratch::split`] and the packed-activation store, together.
    pub fn split_packed(
        &mut self,
        n: usize,
        f: usize,
    ) -> (&mut [u8], &mut [f32], &mut realizar_quant::PackedActs) {
        let words = n.div_ceil(8);
        if self.words.len() < words {
            self.words.resize(words, 0);
        }
        if self.floats.len() < f {
            self.floats.resize(f, 0.0);
        }
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.words[..words]);
        (&mut bytes[..n], &mut self.floats[..f], &mut self.packed)
    }

    /// [`ActScratch::bytes_mut`] of `n` bytes and a float buffer of `f` elements, together.
    pub fn split(&mut self, n: usize, f: usize) -> (&mut [u8], &mut [f32]) {
        let (bytes, floats, _) = self.split_packed(n, f);
        (bytes, floats)
    }
}

/// The largest head dimension the CPU attention supports.
pub const MAX_HEAD_DIM: usize = 512;

/// The most query heads one attention task takes (see [`heads_per_task`]).
const MAX_GROUP_HEADS: usize = 4;

/// The shape of one attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionShape {
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (divides `n_head`).
    pub n_head_kv: usize,
    /// Dimension of each head.
    pub head_dim: usize,
    /// Scale applied to the dot products before the softmax.
    pub kq_scale: f32,
    /// Sliding window: a query at position `p` sees keys at positions `> p - window`.
    pub window: Option<usize>,
}

/// The float order of a matrix product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Each row's result is what it would be alone: it does not depend on the other rows of the
    /// call (several sequences decoded together, the server's prompt chunks).
    BatchInvariant,
    /// One sequence's prompt pass in the reference engine's order: a backend may group the
    /// rows as llama.cpp does (its x86 build runs Q4_K weights through a repacked gemm over
    /// rows in fours), so a row's result may depend on the number of rows.
    ReferencePrompt,
}

/// The input of a product: `m` rows of `x` (`m * cols` elements), in `order`.
#[derive(Clone, Copy, Debug)]
pub struct Rows<'a> {
    /// The activations, row-major.
    pub x: &'a [f32],
    /// Number of rows.
    pub m: usize,
    /// The float order.
    pub order: Order,
}

/// The queries of one attention call and the keys they see: `m` queries (`q` is
/// `m * n_head * head_dim`) at positions `pos` of `layer` in `cache`, which already holds
/// positions up to `pos.end`.
#[derive(Clone, Debug)]
pub struct Queries<'a> {
    /// The queries, row-major.
    pub q: &'a [f32],
    /// The sequence's key/value state.
    pub cache: &'a dyn KvState,
    /// The layer.
    pub layer: usize,
    /// The queries' positions.
    pub pos: Range<usize>,
}

/// Where an attention call runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// Over the backend's threads.
    Pool,
    /// All on the calling thread (for a step of several sequences that already hands out one
    /// task per sequence, so that the heads sharing a key/value head run one after the other
    /// while its rows are in cache).
    CallingThread,
}

/// One sequence's rows in an encoder attention call ([`Backend::encoder_attention`]): rows
/// `start..start + len` of the pass, and which of them its queries may see (`1`: kept).
#[derive(Clone, Copy, Debug)]
pub struct EncoderSeq<'a> {
    /// First row.
    pub start: usize,
    /// Rows.
    pub len: usize,
    /// The attention mask over its rows (`None`: every row is seen).
    pub mask: Option<&'a [u32]>,
}

/// The operations a forward pass delegates to a compute backend: matrix products and
/// attention. Each has one entry point; the caller says the float order it needs.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A short name for logs (`"cpu"`).
    fn name(&self) -> &str;

    /// Threads the backend computes with.
    fn threads(&self) -> usize;

    /// Runs `f` on the backend's own threads. A forward pass runs inside one call, so that
    /// its many small operations are joins among threads that are already running rather than
    /// a hand-out to the pool and back for each one. The default runs `f` here.
    fn install(&self, f: &mut (dyn FnMut() + Send)) {
        f()
    }

    /// Takes a weight matrix once, for the model's lifetime: `info` locates it in `store` (the
    /// mapped file). A device backend copies it up here; the default (for host backends)
    /// keeps a view of `store` and checks that the matrix lies inside it.
    fn upload(&self, info: QTensor, store: &WeightBytes) -> Result<Weight, NnError> {
        info.bytes((**store).as_ref())?;
        Ok(Weight::new(info, Arc::new(HostWeight(store.clone()))))
    }

    /// Rows `ids` of `w` as f32 (the token embedding lookup), `w.cols` floats each, into
    /// `out`. The default dequantizes host bytes.
    fn get_rows(&self, w: &Weight, ids: &[u32], out: &mut [f32]) -> Result<(), NnError> {
        let (bytes, rb, n) = (host_bytes(w)?, w.info.row_bytes(), w.info.cols);
        for (xt, &id) in out.chunks_exact_mut(n).zip(ids) {
            let row = bytes.get(id as usize * rb..(id as usize + 1) * rb).ok_or(
                NnError::TokenOutOfRange {
                    id,
                    vocab: w.info.rows,
                },
            )?;
            realizar_quant::dequantize_row(w.info.ty, row, xt).map_err(|source| {
                NnError::Quant {
                    what: w.info.name.clone(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// A sequence's key/value state. The default is a host [`KvCache`].
    fn new_kv(&self, layout: KvLayout) -> Result<Box<dyn KvState>, NnError> {
        let KvLayout {
            ty,
            n_layer,
            n_head_kv,
            head_dim,
            capacity,
        } = layout;
        Ok(Box::new(KvCache::new(
            ty, n_layer, n_head_kv, head_dim, capacity,
        )?))
    }

    /// Writes the keys and values (`n_head_kv * head_dim` each) of position `pos` of `layer`
    /// into `kv` (made by this backend). The default writes a host [`KvCache`].
    fn store_kv(
        &self,
        kv: &mut dyn KvState,
        layer: usize,
        pos: usize,
        k: &[f32],
        v: &[f32],
    ) -> Result<(), NnError> {
        host_kv_mut(kv)?.store(layer, pos, k, v);
        Ok(())
    }

    /// Products of the same input with one or more matrices: `outs[j][t * w.rows + r] =
    /// W_j[r] · x[t]` for `t < rows.m`, with `x` quantized to the weights' dot-product type
    /// first (as ggml does). The matrices must share their width and dot-product type. With
    /// [`Order::BatchInvariant`] each result is exactly that of the matrix and row alone.
    fn linear(
        &self,
        ws: &[&Weight],
        rows: Rows<'_>,
        outs: &mut [&mut [f32]],
        act: &mut ActScratch,
    ) -> Result<(), NnError>;

    /// Bidirectional self-attention of an encoder pass (BERT): `qkv` holds `[q | k | v]` for
    /// every row (`3 * n_head * head_dim` each); each row attends to the rows of its own
    /// sequence that the sequence's mask keeps; writes `n_head * head_dim` per row into `out`.
    fn encoder_attention(
        &self,
        shape: &AttentionShape,
        qkv: &[f32],
        seqs: &[EncoderSeq<'_>],
        out: &mut [f32],
    ) -> Result<(), NnError>;

    /// Causal attention of `queries` over their cache; writes `m * n_head * head_dim` into
    /// `out`. Any scratch (the scores) is the backend's own.
    fn attention(
        &self,
        shape: &AttentionShape,
        queries: Queries<'_>,
        spread: Spread,
        out: &mut [f32],
    ) -> Result<(), NnError>;
}

/// The host cache behind a key/value state (for host backends).
pub fn host_kv(kv: &dyn KvState) -> Result<&KvCache, NnError> {
    kv.as_host().ok_or_else(|| NnError::InvalidArgument {
        reason: "the key/value state was made by another backend".into(),
    })
}

/// [`host_kv`], mutably.
pub fn host_kv_mut(kv: &mut dyn KvState) -> Result<&mut KvCache, NnError> {
    kv.as_host_mut().ok_or_else(|| NnError::InvalidArgument {
        reason: "the key/value state was made by another backend".into(),
    })
}

/// Product elements from which [`CpuBackend::linear`] scatters its threads' results into the
/// output on all threads.
const SCATTER_PAR_MIN: usize = 64 * 1024;

/// The CPU backend: quantized kernels of `realizar-quant` on a persistent rayon pool.
pub struct CpuBackend {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuBackend")
            .field("threads", &self.threads)
            .finish()
    }
}

impl CpuBackend {
    /// A backend with `threads` worker threads (at least 1).
    pub fn new(threads: usize) -> Result<CpuBackend, NnError> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("realizar-cpu-{i}"))
            .build()
            .map_err(|e| NnError::ThreadPool {
                reason: e.to_string(),
            })?;
        Ok(CpuBackend { pool, threads })
    }

    /// [`Backend::linear`] on the pool: the input quantized once, every matrix's row chunks in
    /// one hand-out.
    fn linear_rows(
        &self,
        ws: &[(&QTensor, &[u8])],
        rows: Rows<'_>,
        outs: &mut [&mut [f32]],
        act: &mut ActScratch,
    ) -> Result<(), NnError> {
        let Rows { x, m, order } = rows;
        let Some(&(w0, _)) = ws.first() else {
            return Ok(());
        };
        let (n, vdt) = (w0.cols, w0.ty.vec_dot_type());
        for (&(w, _), out) in ws.iter().zip(outs.iter()) {
            let rows = w.rows;
            if m == 0
                || w.cols != n
                || w.ty.vec_dot_type() != vdt
                || x.len() < m * n
                || out.len() < m * rows
            {
                return Err(NnError::InvalidArgument {
                    reason: format!(
                        "linear `{}`: {m} rows of input {} / output {} do not fit {rows}×{}",
                        w.name,
                        x.len(),
                        out.len(),
                        w.cols
                    ),
                });
            }
        }
        if outs.len() < ws.len() {
            return Err(NnError::InvalidArgument {
                reason: format!(
                    "linear group: {} outputs for {} matrices",
                    outs.len(),
                    ws.len()
                ),
            });
        }
        let arb = vdt.row_bytes(n).ok_or_else(|| NnError::TensorShape {
            name: w0.name.clone(),
            expected: vec![n.next_multiple_of(vdt.block_size()) as u64, w0.rows as u64],
            found: vec![n as u64, w0.rows as u64],
        })?;
        let total_rows: usize = ws.iter().map(|(w, _)| w.rows).sum();
        let (act, tmp, packed) = act.split_packed(arb * m, if m > 1 { m * total_rows } else { 0 });
        let what = w0.name.as_str();
        let quantize = |(at, xt): (&mut [u8], &[f32])| {
            realizar_quant::quantize_row(vdt, xt, at).map_err(quant_err(what))
        };
        if m == 1 || m * n < 16 * 1024 {
            act.chunks_exact_mut(arb)
                .zip(x.chunks_exact(n))
                .try_for_each(quantize)?;
        } else {
            self.pool.install(|| {
                act.par_chunks_exact_mut(arb)
                    .zip(x[..m * n].par_chunks_exact(n))
                    .try_for_each(quantize)
            })?;
        }
        let act = &*act;
        // Several rows against matrices of one type with packed kernels: the activations are
        // packed once here for all the chunks (see `realizar_quant::PackedActs`).
        let ty0 = w0.ty;
        let packed_ok = m > 1
            && ws.iter().all(|(w, _)| w.ty == ty0)
            && packed.pack(ty0, n, act, m).map_err(quant_err(what))?;
        let packed = &*packed;
        // Split each matrix's output rows into chunks and hand all chunks out at once: each
        // thread reads its part of the weights once, for all the tokens (the kernels take
        // several activation rows per pass over a weight row). Every (row, token) pair is
        // computed the same way however the rows are split, so results do not depend on the
        // thread count. With several tokens, chunk `(j, r0..r0 + k)` is written token-major
        // into its own part of `tmp` (`i * k + r`), then scattered into `outs[j]`.
        let chunk_of = |rows: usize| rows.div_ceil(self.threads * 4).max(16).next_multiple_of(8);
        let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
        if m == 1 {
            for (j, (&(w, _), out)) in ws.iter().zip(outs.iter_mut()).enumerate() {
                let ch = chunk_of(w.rows);
                for (ci, o) in out[..w.rows].chunks_mut(ch).enumerate() {
                    tasks.push((j, ci * ch, o));
                }
            }
        } else {
            let mut rest = &mut tmp[..];
            for (j, &(w, _)) in ws.iter().enumerate() {
                let (mine, after) = rest.split_at_mut(m * w.rows);
                rest = after;
                let ch = chunk_of(w.rows);
                for (ci, t) in mine.chunks_mut(ch * m).enumerate() {
                    tasks.push((j, ci * ch, t));
                }
            }
        }
        self.pool.install(|| {
            tasks.par_iter_mut().try_for_each(|(j, r0, t)| {
                let (w, bytes) = ws[*j];
                let (ty, what) = (w.ty, w.name.as_str());
                let k = t.len() / m;
                let rr = *r0..*r0 + k;
                if m == 1 {
                    realizar_quant::matvec(ty, n, bytes, rr, act, t)
                } else if packed_ok {
                    realizar_quant::matmul_packed(ty, n, bytes, rr, packed, t, k)
                } else if order == Order::ReferencePrompt {
                    realizar_quant::matmul_prompt(ty, n, bytes, rr, act, m, m, t, k)
                } else {
                    realizar_quant::matmul(ty, n, bytes, rr, act, m, t, k)
                }
                .map_err(quant_err(what))
            })
        })?;
        if m == 1 {
            return Ok(());
        }
        let mut at = 0;
        for (&(w, _), out) in ws.iter().zip(outs.iter_mut()) {
            let rows = w.rows;
            let (ch, mine) = (chunk_of(rows), &tmp[at..at + m * rows]);
            at += m * rows;
            let scatter = |(i, orow): (usize, &mut [f32])| {
                for (ci, t) in mine.chunks(ch * m).enumerate() {
                    let (r0, k) = (ci * ch, t.len() / m);
                    orow[r0..r0 + k].copy_from_slice(&t[i * k..(i + 1) * k]);
                }
            };
            let out = &mut out[..m * rows];
            // A small scatter (a decode step's few rows) costs less than a hand-out.
            if m * rows < SCATTER_PAR_MIN {
                out.chunks_exact_mut(rows).enumerate().for_each(scatter);
            } else {
                self.pool
                    .install(|| out.par_chunks_exact_mut(rows).enumerate().for_each(scatter));
            }
        }
        Ok(())
    }
}

/// The most matrices one [`Backend::linear`] call of a host backend takes (Q, K and V).
pub const MAX_GROUP: usize = 4;

/// Runs `f` on the matrices' host bytes, without allocating.
pub fn with_host_bytes<R>(
    ws: &[&Weight],
    f: impl FnOnce(&[(&QTensor, &[u8])]) -> Result<R, NnError>,
) -> Result<R, NnError> {
    let Some(&first) = ws.first() else {
        return f(&[]);
    };
    if ws.len() > MAX_GROUP {
        return Err(NnError::InvalidArgument {
            reason: format!("{} matrices in one product (at most {MAX_GROUP})", ws.len()),
        });
    }
    let mut buf = [(&first.info, &[][..]); MAX_GROUP];
    for (slot, w) in buf.iter_mut().zip(ws) {
        *slot = (&w.info, host_bytes(w)?);
    }
    f(&buf[..ws.len()])
}

/// Maps a kernel's error to the backend's, naming the weight or activation.
pub(crate) fn quant_err(what: &str) -> impl Fn(realizar_quant::QuantError) -> NnError + '_ {
    move |source| NnError::Quant {
        what: what.to_string(),
        source,
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &str {
        "cpu"
    }

    fn threads(&self) -> usize {
        self.threads
    }

    fn install(&self, f: &mut (dyn FnMut() + Send)) {
        self.pool.install(f)
    }

    fn linear(
        &self,
        ws: &[&Weight],
        rows: Rows<'_>,
        outs: &mut [&mut [f32]],
        act: &mut ActScratch,
    ) -> Result<(), NnError> {
        with_host_bytes(ws, |wb| self.linear_rows(wb, rows, outs, act))
    }

    fn attention(
        &self,
        shape: &AttentionShape,
        queries: Queries<'_>,
        spread: Spread,
        out: &mut [f32],
    ) -> Result<(), NnError> {
        self.attend(shape, queries, spread, out)
    }

    fn encoder_attention(
        &self,
        shape: &AttentionShape,
        qkv: &[f32],
        seqs: &[EncoderSeq<'_>],
        out: &mut [f32],
    ) -> Result<(), NnError> {
        self.pool
            .install(|| encoder_attention_host(shape, qkv, seqs, out))
    }
}

impl CpuBackend {
    /// [`Backend::attention`]; with [`Spread::CallingThread`] a single query's heads run on the
    /// calling thread. Several queries always hand out their (query, head) pairs.
    fn attend(
        &self,
        shape: &AttentionShape,
        queries: Queries<'_>,
        spread: Spread,
        out: &mut [f32],
    ) -> Result<(), NnError> {
        let (cache, order) = check_attention(shape, &queries, out)?;
        let Queries { q, layer, pos, .. } = queries;
        let spread = spread == Spread::Pool;
        let AttentionShape {
            n_head,
            n_head_kv,
            head_dim: hd,
            ..
        } = *shape;
        let m = pos.len();
        let width = n_head * hd;
        let group = n_head / n_head_kv;
        let head_view = |g: usize, n_keys: usize| {
            cache
                .head(layer, g, n_keys)
                .ok_or_else(|| NnError::InvalidArgument {
                    reason: format!("attention: no cache for layer {layer} head {g}"),
                })
        };
        // A task attends `sub` consecutive query heads that share a key/value head: the first
        // head's pass brings the cache rows in (a long context's come from memory) and the
        // others find them in cache. A single query spread over the pool keeps enough tasks
        // for the threads.
        let min_tasks = if m == 1 && spread {
            2 * self.threads
        } else {
            1
        };
        let sub = heads_per_task(group, n_head, min_tasks);
        let task = |t: usize, j: usize, oj: &mut [f32]| {
            let p = pos.start + t;
            let lo = shape.window.map_or(0, |w| (p + 1).saturating_sub(w));
            let (k, v) = head_view(j * sub / group, p + 1)?;
            let qj = &q[t * width + j * sub * hd..t * width + (j + 1) * sub * hd];
            let span = KeySpan {
                lo,
                n: p + 1,
                hd,
                scale: shape.kq_scale,
            };
            with_scores(sub * (p + 1 - lo), |sc| {
                attend_heads::<SimdKernels>(qj, (k, v), span, order, sc, oj)
            });
            Ok::<(), NnError>(())
        };
        let tasks = n_head / sub;
        let out = &mut out[..m * width];
        if m == 1 && !spread {
            return out
                .chunks_mut(sub * hd)
                .enumerate()
                .try_for_each(|(j, oj)| task(0, j, oj));
        }
        // Every (query, task) pair is handed out on its own: one hand-out per layer.
        self.pool.install(|| {
            out.par_chunks_mut(sub * hd)
                .enumerate()
                .try_for_each(|(i, oj)| task(i / tasks, i % tasks, oj))
        })
    }
}

/// The dot product of two equal-length slices, in [`LANES`] partial sums.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ac, ar) = a.split_at(n - n % LANES);
    let (bc, br) = b.split_at(n - n % LANES);
    for (x, y) in ac.chunks_exact(LANES).zip(bc.chunks_exact(LANES)) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// [`Backend::encoder_attention`] on the host, over the current rayon pool: f32 dot products
/// in [`LANES`] partial sums, a plain softmax.
pub(crate) fn encoder_attention_host(
    shape: &AttentionShape,
    qkv: &[f32],
    seqs: &[EncoderSeq<'_>],
    ctx: &mut [f32],
) -> Result<(), NnError> {
    let d = shape.head_dim;
    let h = shape.n_head * d;
    let scale = shape.kq_scale;
    let rows: usize = seqs.iter().map(|s| s.len).sum();
    let bad = seqs
        .iter()
        .any(|s| s.mask.is_some_and(|m| m.len() != s.len) || s.start + s.len > rows);
    if shape.n_head_kv != shape.n_head || bad || qkv.len() < rows * 3 * h || ctx.len() < rows * h {
        return Err(NnError::InvalidArgument {
            reason: "encoder attention: buffers do not fit the shape".into(),
        });
    }
    // The sequence of every packed row.
    let owner: Vec<usize> = seqs
        .iter()
        .enumerate()
        .flat_map(|(s, seq)| std::iter::repeat_n(s, seq.len))
        .collect();
    ctx[..rows * h]
        .par_chunks_exact_mut(h)
        .zip(owner.par_iter())
        .enumerate()
        .for_each_init(Vec::new, |scores, (i, (out, &s))| {
            let Some(span) = seqs.get(s) else {
                return;
            };
            let mask = span.mask;
            let q_row = row(qkv, i, 3 * h);
            for head in 0..shape.n_head {
                let q = q_row.get(head * d..(head + 1) * d).unwrap_or_default();
                scores.clear();
                let mut max = f32::NEG_INFINITY;
                for j in 0..span.len {
                    let keep = mask.is_none_or(|m| m.get(j) == Some(&1));
                    if !keep {
                        scores.push(f32::NEG_INFINITY);
                        continue;
                    }
                    let k_row = row(qkv, span.start + j, 3 * h);
                    let k = k_row
                        .get(h + head * d..h + (head + 1) * d)
                        .unwrap_or_default();
                    let sc = dot(q, k) * scale;
                    max = max.max(sc);
                    scores.push(sc);
                }
                let mut sum = 0f32;
                for sc in scores.iter_mut() {
                    *sc = (*sc - max).exp();
                    sum += *sc;
                }
                let inv = 1.0 / sum;
                let o = out.get_mut(head * d..(head + 1) * d).unwrap_or_default();
                o.fill(0.0);
                for (j, &p) in scores.iter().enumerate() {
                    if p == 0.0 {
                        continue;
                    }
                    let v_row = row(qkv, span.start + j, 3 * h);
                    let v = v_row
                        .get(2 * h + head * d..2 * h + (head + 1) * d)
                        .unwrap_or_default();
                    let p = p * inv;
                    for (oo, &vv) in o.iter_mut().zip(v) {
                        *oo += p * vv;
                    }
                }
            }
        });
    Ok(())
}

/// Row `i` of a `[_, width]` matrix (empty when out of range).
fn row(m: &[f32], i: usize, width: usize) -> &[f32] {
    m.get(i * width..(i + 1) * width).unwrap_or_default()
}

/// Lanes of [`dot`]'s partial sums.
const LANES: usize = 16;

/// Checks an attention call of a host backend against its shape and cache; returns the host
/// cache and llama.cpp's f16 product order for its number of queries (`ggml_vec_dot_f16` for
/// one, llamafile's tinyBLAS for several).
pub(crate) fn check_attention<'c>(
    shape: &AttentionShape,
    queries: &Queries<'c>,
    out: &[f32],
) -> Result<(&'c KvCache, F16Order), NnError> {
    let cache = host_kv(queries.cache)?;
    let (nh, nkv, hd) = (shape.n_head, shape.n_head_kv, shape.head_dim);
    let (m, width, layer) = (queries.pos.len(), nh * hd, queries.layer);
    if nkv == 0
        || nh % nkv != 0
        || queries.q.len() < m * width
        || out.len() < m * width
        || queries.pos.end > cache.capacity()
        || hd > MAX_HEAD_DIM
    {
        return Err(NnError::InvalidArgument {
            reason: format!("attention of layer {layer}: buffers do not fit the shape"),
        });
    }
    let order = if m == 1 {
        F16Order::VecDot
    } else {
        F16Order::Tiny
    };
    Ok((cache, order))
}

/// How many consecutive query heads of a key/value group of `group` one attention task takes:
/// the most, up to four, that divide the group and leave at least `min_tasks` tasks over
/// `n_head` heads (at least 1).
fn heads_per_task(group: usize, n_head: usize, min_tasks: usize) -> usize {
    (1..=group.min(MAX_GROUP_HEADS))
        .rev()
        .find(|&d| group % d == 0 && n_head / d >= min_tasks)
        .unwrap_or(1)
}

thread_local! {
    /// Per-thread attention scores (see [`with_scores`]).
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `f` on this thread's score buffer of at least `n` elements (grown once, never shrunk:
/// [`attend_heads`] writes every score it reads).
fn with_scores<R>(n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCORES.with_borrow_mut(|sc| {
        if sc.len() < n {
            sc.resize(n, 0.0);
        }
        f(&mut sc[..n])
    })
}

/// `x` rounded to f16 values, in place.
fn round_to_f16(x: &mut [f32]) {
    let mut buf = [f16::ZERO; 256];
    for c in x.chunks_mut(256) {
        let b = &mut buf[..c.len()];
        b.convert_from_f32_slice(c);
        b.convert_to_f32_slice(c);
    }
}

/// The float kernels attention runs on: `realizar-quant`'s SIMD kernels for the CPU backend
/// ([`SimdKernels`]), their scalar twins for the reference backend ([`ScalarKernels`]). The two
/// give the same values bit for bit (each twin is tested against its kernel), so the attention
/// code above them is one; it is generic over the set, so each path is compiled with direct
/// calls.
pub(crate) trait AttnKernels {
    /// A query's f16 dot products with consecutive key rows
    /// ([`vecops::f16_dots_folded_then`]; `next` is only prefetched).
    fn dots(x: &[f16], rows: &[f16], next: &[f16], vecdot: bool, out: &mut [f32]);
    /// The largest value.
    fn max(x: &[f32]) -> f32;
    /// `x = expf_ggml(x - sub)`.
    fn exp_sub(x: &mut [f32], sub: f32);
    /// ggml's grouped f64 sum of a softmax row.
    fn sum_groups16(x: &[f32], lo: usize) -> f64;
    /// The probabilities' weighted sum of value rows.
    fn weighted_sum(p: &[f32], v: &[f16], hd: usize, first: usize, vecdot: bool, out: &mut [f32]);

    /// [`crate::layers::softmax_ggml`] on these kernels.
    fn softmax_ggml(x: &mut [f32], lo: usize) {
        let max = Self::max(x);
        if max == f32::NEG_INFINITY {
            x.iter_mut().for_each(|v| *v = 0.0);
            return;
        }
        Self::exp_sub(x, max);
        let inv = (1.0 / Self::sum_groups16(x, lo)) as f32;
        x.iter_mut().for_each(|v| *v *= inv);
    }

    /// [`crate::layers::softmax_inplace`] on these kernels.
    fn softmax_plain(x: &mut [f32]) {
        let max = Self::max(x);
        if max == f32::NEG_INFINITY {
            x.iter_mut().for_each(|v| *v = 0.0);
            return;
        }
        let mut sum = 0.0f64;
        for v in x.iter_mut() {
            *v = (*v - max).exp();
            sum += f64::from(*v);
        }
        let inv = (1.0 / sum) as f32;
        x.iter_mut().for_each(|v| *v *= inv);
    }
}

/// `realizar-quant`'s SIMD kernels.
pub(crate) struct SimdKernels;

impl AttnKernels for SimdKernels {
    fn dots(x: &[f16], rows: &[f16], next: &[f16], vecdot: bool, out: &mut [f32]) {
        vecops::f16_dots_folded_then(x, rows, next, vecdot, out)
    }
    fn max(x: &[f32]) -> f32 {
        vecops::max_f32(x)
    }
    fn exp_sub(x: &mut [f32], sub: f32) {
        vecops::exp_sub_ggml(x, sub)
    }
    fn sum_groups16(x: &[f32], lo: usize) -> f64 {
        vecops::sum_groups16(x, lo)
    }
    fn weighted_sum(p: &[f32], v: &[f16], hd: usize, first: usize, vecdot: bool, out: &mut [f32]) {
        vecops::f16_weighted_sum(p, v, hd, first, vecdot, out)
    }
}

/// Their scalar twins.
pub(crate) struct ScalarKernels;

impl AttnKernels for ScalarKernels {
    fn dots(x: &[f16], rows: &[f16], _next: &[f16], vecdot: bool, out: &mut [f32]) {
        vecops::f16_dots_folded_scalar(x, rows, vecdot, out)
    }
    fn max(x: &[f32]) -> f32 {
        x.iter().copied().fold(f32::NEG_INFINITY, f32::max)
    }
    fn exp_sub(x: &mut [f32], sub: f32) {
        vecops::exp_sub_ggml_scalar(x, sub)
    }
    fn sum_groups16(x: &[f32], lo: usize) -> f64 {
        vecops::sum_groups16_scalar(x, lo)
    }
    fn weighted_sum(p: &[f32], v: &[f16], hd: usize, first: usize, vecdot: bool, out: &mut [f32]) {
        vecops::f16_weighted_sum_scalar(p, v, hd, first, vecdot, out)
    }
}

/// Query heads of one query that share a key/value head: each head's scores over keys
/// `lo..n`, softmax, weighted sum of values. `q` and `out` hold the heads' `hd` elements one
/// after another, `scores` their `n - lo` scores.
///
/// With an f16 cache this is llama.cpp's attention with flash attention off on its x86 build,
/// operation by operation: the query and the probabilities are rounded to f16 (the f16 matrix
/// products convert their f32 operand), the products are summed in the order of the kernel
/// ggml runs (`ggml_vec_dot_f16` for a single query, llamafile's tinyBLAS for a batch; see
/// [`F16Order`]), the scores are scaled and put through [`crate::layers::softmax_ggml`]. Every head's
/// numbers are those of the head alone: grouping only shares the cache reads.
pub(crate) fn attend_heads<K: AttnKernels>(
    q: &[f32],
    (k, v): (KvView<'_>, KvView<'_>),
    span: KeySpan,
    order: F16Order,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let KeySpan { lo, n, hd, scale } = span;
    let len = n.saturating_sub(lo);
    let g = out.len() / hd.max(1);
    if hd == 0 || len == 0 || g == 0 || q.len() < g * hd || scores.len() < g * len {
        return;
    }
    let (q, out, scores) = (&q[..g * hd], &mut out[..g * hd], &mut scores[..g * len]);
    match (k, v) {
        (KvView::F16(k), KvView::F16(v)) if g <= MAX_GROUP_HEADS && hd <= MAX_HEAD_DIM => {
            let mut qh = [f16::ZERO; MAX_GROUP_HEADS * MAX_HEAD_DIM];
            let qh = &mut qh[..g * hd];
            qh.convert_from_f32_slice(q);
            let order = order.for_len(hd);
            fn rows(c: &[f16], lo: usize, n: usize, hd: usize) -> &[f16] {
                c.get(lo * hd..(n * hd).min(c.len())).unwrap_or_default()
            }
            let (kr, vr) = (rows(k, lo, n, hd), rows(v, lo, n, hd));
            let vecdot = order == F16Order::VecDot;
            if order == F16Order::Tiny || hd % 64 == 0 {
                // Whole steps of the order: all keys in one call. The first head's call
                // prefetches the value rows too; the other heads find both in cache.
                for (h, (qh, sh)) in qh
                    .chunks_exact(hd)
                    .zip(scores.chunks_exact_mut(len))
                    .enumerate()
                {
                    let next = if h == 0 { vr } else { &[] };
                    K::dots(qh, kr, next, vecdot, sh);
                }
                scores.iter_mut().for_each(|s| *s *= scale);
            } else {
                for (qh, sh) in qh.chunks_exact(hd).zip(scores.chunks_exact_mut(len)) {
                    for (s, row) in sh.iter_mut().zip(kr.chunks_exact(hd)) {
                        *s = f16_dot(order, qh, row) * scale;
                    }
                }
            }
            for (sh, oh) in scores.chunks_exact_mut(len).zip(out.chunks_exact_mut(hd)) {
                K::softmax_ggml(sh, lo);
                // out[d] = sum_i p[i] v[i][d] in the order of ggml's f16 product of the
                // transposed values with the probabilities, which it rounds to f16 first.
                round_to_f16(sh);
                K::weighted_sum(sh, vr, hd, lo, vecdot, oh);
            }
        }
        (k, v) => {
            for ((qh, sh), oh) in q
                .chunks_exact(hd)
                .zip(scores.chunks_exact_mut(len))
                .zip(out.chunks_exact_mut(hd))
            {
                attend_head_plain::<K>(qh, (k, v), span, sh, oh);
            }
        }
    }
}

/// The summation order of one of ggml's f16 dot products on an AVX-512 CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum F16Order {
    /// `ggml_vec_dot_f16` (vec.cpp): four 16-lane accumulators over steps of 64 elements,
    /// folded `(a0 + a2) + (a1 + a3)`, reduced with `_mm512_reduce_add_ps`; elements past the
    /// last whole step are added in f64. llama.cpp's matrix products with one column run it.
    VecDot,
    /// llamafile's `tinyBLAS<16, __m512, ..>` (sgemm.cpp): one 16-lane accumulator over the
    /// whole length, then `_mm512_reduce_add_ps`. Products with two or more columns run it
    /// when the length is a multiple of 16.
    Tiny,
}

impl F16Order {
    /// The order for a dot product over `len` elements (tinyBLAS declines other lengths).
    fn for_len(self, len: usize) -> F16Order {
        if self == F16Order::Tiny && len % 16 != 0 {
            F16Order::VecDot
        } else {
            self
        }
    }
}

/// An f16 dot product in the order of `order` (see [`F16Order`]).
fn f16_dot(order: F16Order, x: &[f16], y: &[f16]) -> f32 {
    let n = x.len().min(y.len());
    let whole = match order {
        F16Order::VecDot => n - n % 64,
        F16Order::Tiny => n,
    };
    let mut sum = vecops::f16_dot_folded(&x[..whole], &y[..whole], order == F16Order::VecDot);
    for (a, b) in x[whole..n].iter().zip(&y[whole..n]) {
        sum += f64::from(a.to_f32() * b.to_f32());
    }
    sum as f32
}

/// The keys one head attends to: positions `lo..n`, `hd` elements each, scores scaled by
/// `scale`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeySpan {
    pub(crate) lo: usize,
    pub(crate) n: usize,
    pub(crate) hd: usize,
    pub(crate) scale: f32,
}

/// Attention of one head with an f32 cache: f32 products, plain softmax.
fn attend_head_plain<K: AttnKernels>(
    q: &[f32],
    (k, v): (KvView<'_>, KvView<'_>),
    span: KeySpan,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let KeySpan { lo, hd, scale, .. } = span;
    match k {
        KvView::F16(k) => {
            for (s, row) in scores.iter_mut().zip(k[lo * hd..].chunks_exact(hd)) {
                let acc: f32 = q.iter().zip(row).map(|(a, b)| a * b.to_f32()).sum();
                *s = acc * scale;
            }
        }
        KvView::F32(k) => {
            for (s, row) in scores.iter_mut().zip(k[lo * hd..].chunks_exact(hd)) {
                let acc: f32 = q.iter().zip(row).map(|(a, b)| a * b).sum();
                *s = acc * scale;
            }
        }
    }
    K::softmax_plain(scores);
    out.iter_mut().for_each(|o| *o = 0.0);
    match v {
        KvView::F16(v) => {
            for (&p, row) in scores.iter().zip(v[lo * hd..].chunks_exact(hd)) {
                for (o, b) in out.iter_mut().zip(row) {
                    *o += p * b.to_f32();
                }
            }
        }
        KvView::F32(v) => {
            for (&p, row) in scores.iter().zip(v[lo * hd..].chunks_exact(hd)) {
                for (o, b) in out.iter_mut().zip(row) {
                    *o += p * b;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task takes the most heads of a group, up to four, that divide it and leave the tasks
    /// asked for.
    #[test]
    fn heads_per_task_divides_the_group() {
        assert_eq!(heads_per_task(3, 9, 1), 3); // SmolLM2 in a multi-sequence step
        assert_eq!(heads_per_task(3, 9, 4), 1); // one query over two threads
        assert_eq!(heads_per_task(4, 4, 1), 4); // Gemma3 270M
        assert_eq!(heads_per_task(4, 4, 2), 2);
        assert_eq!(heads_per_task(8, 32, 1), 4);
        assert_eq!(heads_per_task(5, 5, 1), 1);
        assert_eq!(heads_per_task(1, 12, 1), 1);
    }

    /// 60000² + 1 - 60000² in f32: `VecDot` puts elements 0 and 32 in different accumulators
    /// and cancels them before adding element 16; `Tiny` accumulates all three in one lane and
    /// loses the 1.
    #[test]
    fn f16_dot_orders_differ_as_ggml_kernels_do() {
        let mut x = vec![f16::ZERO; 64];
        let mut y = vec![f16::ZERO; 64];
        x[0] = f16::from_f32(60000.0);
        y[0] = f16::from_f32(60000.0);
        x[16] = f16::ONE;
        y[16] = f16::ONE;
        x[32] = f16::from_f32(-60000.0);
        y[32] = f16::from_f32(60000.0);
        assert_eq!(f16_dot(F16Order::VecDot, &x, &y), 1.0);
        assert_eq!(f16_dot(F16Order::Tiny, &x, &y), 0.0);
        // A length tinyBLAS declines falls back to ggml_vec_dot_f16, its tail summed in f64.
        assert_eq!(F16Order::Tiny.for_len(72), F16Order::VecDot);
        let x = vec![f16::ONE; 72];
        assert_eq!(f16_dot(F16Order::VecDot, &x, &x), 72.0);
    }
}
