//! The compute backend trait and its CPU implementation.
//!
//! A forward pass spends its time in two operations: products of quantized weight matrices with
//! activations ([`Backend::linear`]) and attention over the KV cache ([`Backend::attention`]).
//! Those are what a backend provides; the cheap element-wise steps (norms, RoPE, activations)
//! stay in the decoder. The CPU backend threads both over a persistent rayon pool.

use core::fmt;
use core::ops::Range;

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use realizar_quant::{vecops, QuantType};

use crate::kv::{KvCache, KvView};
use crate::layers::{softmax_ggml, softmax_inplace};
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

/// Scratch space a backend may use for quantized activations; kept by the caller so that the
/// decode loop does not allocate. Stored as `u64` words for alignment.
#[derive(Clone, Debug, Default)]
pub struct ActScratch {
    words: Vec<u64>,
    floats: Vec<f32>,
}

impl ActScratch {
    /// A byte buffer of exactly `n` bytes, 8-byte aligned (grows the storage when needed).
    pub fn bytes_mut(&mut self, n: usize) -> &mut [u8] {
        self.split(n, 0).0
    }

    /// [`ActScratch::bytes_mut`] of `n` bytes and a float buffer of `f` elements, together.
    pub fn split(&mut self, n: usize, f: usize) -> (&mut [u8], &mut [f32]) {
        let words = n.div_ceil(8);
        if self.words.len() < words {
            self.words.resize(words, 0);
        }
        if self.floats.len() < f {
            self.floats.resize(f, 0.0);
        }
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.words[..words]);
        (&mut bytes[..n], &mut self.floats[..f])
    }
}

/// The largest head dimension the CPU attention supports.
pub const MAX_HEAD_DIM: usize = 512;

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

/// The operations a forward pass delegates to a compute backend.
pub trait Backend: Send + Sync + fmt::Debug {
    /// A short name for logs (`"cpu"`).
    fn name(&self) -> &str;

    /// Threads the backend computes with.
    fn threads(&self) -> usize;

    /// Runs `f` on the backend's own threads. A forward pass runs inside one call, so that
    /// its many small operations are joins among threads that are already running rather than
    /// a hand-over to the pool and back for each one. The default runs `f` here.
    fn install(&self, f: &mut (dyn FnMut() + Send)) {
        f()
    }

    /// `out[t * w.rows + r] = W[r] · x[t]` for `t < m`, with `x` of `m * w.cols` elements
    /// quantized to the weight type's dot-product type first (as ggml does).
    fn linear(
        &self,
        w: &QTensor,
        w_bytes: &[u8],
        x: &[f32],
        m: usize,
        out: &mut [f32],
        act: &mut ActScratch,
    ) -> Result<(), NnError>;

    /// [`Backend::linear`] for the `m` rows of one sequence's prompt pass, in the reference
    /// engine's prompt order: a backend may group the rows (llama.cpp's x86 build runs Q4_K
    /// weights through a repacked gemm over rows in fours), so a row's result may depend on
    /// `m`. Use [`Backend::linear`] where results must not depend on the batch (several
    /// sequences decoded together). The default is [`Backend::linear`].
    fn linear_prompt(
        &self,
        w: &QTensor,
        w_bytes: &[u8],
        x: &[f32],
        m: usize,
        out: &mut [f32],
        act: &mut ActScratch,
    ) -> Result<(), NnError> {
        self.linear(w, w_bytes, x, m, out, act)
    }

    /// Causal attention of `m` queries at positions `pos.start..pos.end` (`q` is
    /// `m * n_head * head_dim`) over the keys and values of `layer` in `cache` (which already
    /// holds positions up to `pos.end`); writes `m * n_head * head_dim` into `out`. Any
    /// scratch (the scores) is the backend's own.
    fn attention(
        &self,
        shape: &AttentionShape,
        q: &[f32],
        cache: &KvCache,
        layer: usize,
        pos: Range<usize>,
        out: &mut [f32],
    ) -> Result<(), NnError>;
}

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

    /// [`Backend::linear`] (`prompt` false) or [`Backend::linear_prompt`] (`prompt` true).
    #[allow(clippy::too_many_arguments)]
    fn linear_rows(
        &self,
        w: &QTensor,
        w_bytes: &[u8],
        x: &[f32],
        m: usize,
        out: &mut [f32],
        act: &mut ActScratch,
        prompt: bool,
    ) -> Result<(), NnError> {
        let (n, rows) = (w.cols, w.rows);
        if m == 0 || x.len() < m * n || out.len() < m * rows {
            return Err(NnError::InvalidArgument {
                reason: format!(
                    "linear `{}`: {m} rows of input {} / output {} do not fit {rows}×{n}",
                    w.name,
                    x.len(),
                    out.len()
                ),
            });
        }
        let vdt = w.ty.vec_dot_type();
        let arb = vdt.row_bytes(n).ok_or_else(|| NnError::TensorShape {
            name: w.name.clone(),
            expected: vec![n.next_multiple_of(vdt.block_size()) as u64, rows as u64],
            found: vec![n as u64, rows as u64],
        })?;
        let (act, tmp) = act.split(arb * m, if m > 1 { m * rows } else { 0 });
        let what = w.name.as_str();
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
        let out = &mut out[..m * rows];
        let ty = w.ty;
        // Split the output rows over the threads: each thread reads its part of the weights
        // once, for all the tokens (the kernels take several activation rows per pass over a
        // weight row). Every (row, token) pair is computed the same way however the rows are
        // split, so results do not depend on the thread count.
        let chunk = rows.div_ceil(self.threads * 4).max(16).next_multiple_of(8);
        self.pool.install(|| {
            if m == 1 {
                return out
                    .par_chunks_mut(chunk)
                    .enumerate()
                    .try_for_each(|(ci, o)| {
                        let r0 = ci * chunk;
                        realizar_quant::matvec(ty, n, w_bytes, r0..r0 + o.len(), act, o)
                            .map_err(quant_err(what))
                    });
            }
            // Chunk `ci` (weight rows r0..r0 + k) is written token-major into its own part of
            // `tmp` (`tmp[r0 * m + i * k + j]`), then scattered into `out`.
            tmp.par_chunks_mut(chunk * m)
                .enumerate()
                .try_for_each(|(ci, t)| {
                    let r0 = ci * chunk;
                    let k = t.len() / m;
                    let rr = r0..r0 + k;
                    if prompt {
                        realizar_quant::matmul_prompt(ty, n, w_bytes, rr, act, m, m, t, k)
                    } else {
                        realizar_quant::matmul(ty, n, w_bytes, rr, act, m, t, k)
                    }
                    .map_err(quant_err(what))
                })?;
            let tmp = &*tmp;
            out.par_chunks_exact_mut(rows)
                .enumerate()
                .for_each(|(i, orow)| {
                    for (ci, t) in tmp.chunks(chunk * m).enumerate() {
                        let (r0, k) = (ci * chunk, t.len() / m);
                        orow[r0..r0 + k].copy_from_slice(&t[i * k..(i + 1) * k]);
                    }
                });
            Ok(())
        })
    }
}

fn quant_err(what: &str) -> impl Fn(realizar_quant::QuantError) -> NnError + '_ {
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
        w: &QTensor,
        w_bytes: &[u8],
        x: &[f32],
        m: usize,
        out: &mut [f32],
        act: &mut ActScratch,
    ) -> Result<(), NnError> {
        self.linear_rows(w, w_bytes, x, m, out, act, false)
    }

    fn linear_prompt(
        &self,
        w: &QTensor,
        w_bytes: &[u8],
        x: &[f32],
        m: usize,
        out: &mut [f32],
        act: &mut ActScratch,
    ) -> Result<(), NnError> {
        self.linear_rows(w, w_bytes, x, m, out, act, true)
    }

    fn attention(
        &self,
        shape: &AttentionShape,
        q: &[f32],
        cache: &KvCache,
        layer: usize,
        pos: Range<usize>,
        out: &mut [f32],
    ) -> Result<(), NnError> {
        let AttentionShape {
            n_head,
            n_head_kv,
            head_dim: hd,
            ..
        } = *shape;
        let m = pos.len();
        let width = n_head * hd;
        let cap = cache.capacity();
        if n_head_kv == 0
            || n_head % n_head_kv != 0
            || q.len() < m * width
            || out.len() < m * width
            || pos.end > cap
            || hd > MAX_HEAD_DIM
        {
            return Err(NnError::InvalidArgument {
                reason: format!("attention of layer {layer}: buffers do not fit the shape"),
            });
        }
        let group = n_head / n_head_kv;
        // llama.cpp multiplies a single query with ggml_vec_dot_f16, several with tinyBLAS.
        let order = if m == 1 {
            F16Order::VecDot
        } else {
            F16Order::Tiny
        };
        let head_view = |g: usize, n_keys: usize| {
            cache
                .head(layer, g, n_keys)
                .ok_or_else(|| NnError::InvalidArgument {
                    reason: format!("attention: no cache for layer {layer} head {g}"),
                })
        };
        if m > 1 {
            // Every (query, head) pair is a task of its own: one hand-out per layer rather than
            // one per query.
            return self.pool.install(|| {
                out[..m * width]
                    .par_chunks_mut(hd)
                    .enumerate()
                    .try_for_each(|(i, oh)| {
                        let (t, h) = (i / n_head, i % n_head);
                        let p = pos.start + t;
                        let lo = shape.window.map_or(0, |w| (p + 1).saturating_sub(w));
                        let (k, v) = head_view(h / group, p + 1)?;
                        let qh = &q[t * width + h * hd..t * width + (h + 1) * hd];
                        with_scores(p + 1, |sh| {
                            attend_head(qh, k, v, lo, p + 1, hd, shape.kq_scale, order, sh, oh)
                        });
                        Ok(())
                    })
            });
        }
        self.pool.install(|| {
            for (t, p) in pos.clone().enumerate() {
                let qt = &q[t * width..(t + 1) * width];
                let ot = &mut out[t * width..(t + 1) * width];
                let lo = shape.window.map_or(0, |w| (p + 1).saturating_sub(w));
                let n_keys = p + 1;
                ot.par_chunks_mut(hd).enumerate().try_for_each(|(h, oh)| {
                    let (k, v) = head_view(h / group, n_keys)?;
                    let qh = &qt[h * hd..(h + 1) * hd];
                    with_scores(n_keys, |sh| {
                        attend_head(qh, k, v, lo, n_keys, hd, shape.kq_scale, order, sh, oh)
                    });
                    Ok(())
                })?;
            }
            Ok(())
        })
    }
}

thread_local! {
    /// Per-thread accumulators of [`attend_head`]'s weighted sum of values (no allocation per
    /// token once warm).
    static V_ACC: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Per-thread attention probabilities rounded to f16 (see [`attend_head`]).
    static P_F16: std::cell::RefCell<Vec<f16>> = const { std::cell::RefCell::new(Vec::new()) };
    /// Per-thread attention scores (see [`with_scores`]).
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `f` on this thread's score buffer of at least `n` elements (grown once, never shrunk:
/// [`attend_head`] writes every score it reads).
fn with_scores<R>(n: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCORES.with_borrow_mut(|sc| {
        if sc.len() < n {
            sc.resize(n, 0.0);
        }
        f(&mut sc[..n])
    })
}

/// One head of one query: scores over keys `lo..n`, softmax, weighted sum of values.
///
/// With an f16 cache this is llama.cpp's attention with flash attention off on its x86 build,
/// operation by operation: the query and the probabilities are rounded to f16 (the f16 matrix
/// products convert their f32 operand), the products are summed in the order of the kernel
/// ggml runs (`ggml_vec_dot_f16` for a single query, llamafile's tinyBLAS for a batch; see
/// [`F16Order`]), the scores are scaled and put through [`softmax_ggml`].
#[allow(clippy::too_many_arguments)]
fn attend_head(
    q: &[f32],
    k: KvView<'_>,
    v: KvView<'_>,
    lo: usize,
    n: usize,
    hd: usize,
    scale: f32,
    order: F16Order,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let scores = &mut scores[lo..n];
    match (k, v) {
        (KvView::F16(k), KvView::F16(v)) => {
            let mut qh = [f16::ZERO; MAX_HEAD_DIM];
            let nq = hd.min(MAX_HEAD_DIM).min(q.len());
            let qh = &mut qh[..nq];
            qh.convert_from_f32_slice(&q[..nq]);
            let order = order.for_len(hd);
            fn rows(c: &[f16], lo: usize, n: usize, hd: usize) -> &[f16] {
                c.get(lo * hd..(n * hd).min(c.len())).unwrap_or_default()
            }
            if order == F16Order::Tiny || hd % 64 == 0 {
                // Whole steps of the order: all keys in one call.
                vecops::f16_dots_folded(qh, rows(k, lo, n, hd), order == F16Order::VecDot, scores);
                scores.iter_mut().for_each(|s| *s *= scale);
            } else {
                for (s, row) in scores.iter_mut().zip(rows(k, lo, n, hd).chunks_exact(hd)) {
                    *s = f16_dot(order, qh, row) * scale;
                }
            }
            softmax_ggml(scores, lo);
            // out[d] = sum_i p[i] v[i][d], summed over positions in the lanes the kernel
            // assigns them (position i is element i of the dot product): lane-major
            // accumulators, one contiguous row of `hd` per lane; the probabilities rounded to
            // f16 as ggml's f16 product converts them.
            let lanes = order.lanes();
            V_ACC.with_borrow_mut(|acc| {
                acc.clear();
                acc.resize(hd * lanes, 0.0);
                P_F16.with_borrow_mut(|p| {
                    p.clear();
                    p.resize(scores.len(), f16::ZERO);
                    p.convert_from_f32_slice(scores);
                    vecops::f16_axpy_lanes(p, rows(v, lo, n, hd), hd, lo, acc);
                });
                order.reduce_rows(acc, hd, out);
            });
        }
        (k, v) => attend_head_plain(q, k, v, lo, hd, scale, scores, out),
    }
}

/// The summation order of one of ggml's f16 dot products on an AVX-512 CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum F16Order {
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

    /// Accumulator lanes: element `i` goes to lane `i % lanes`.
    fn lanes(self) -> usize {
        match self {
            F16Order::VecDot => 64,
            F16Order::Tiny => 16,
        }
    }

    /// Folds the accumulator lanes into the dot product, in f64 as the kernels return it (the
    /// fold `vecops::f16_dot_folded` applies; here for the test of [`F16Order::reduce_rows`]).
    #[cfg(test)]
    fn reduce(self, a: &[f32]) -> f64 {
        use crate::layers::reduce_add16;
        let mut v = [0f32; 16];
        match self {
            F16Order::VecDot => {
                for (l, o) in v.iter_mut().enumerate() {
                    *o = (a[l] + a[32 + l]) + (a[16 + l] + a[48 + l]);
                }
            }
            F16Order::Tiny => v.copy_from_slice(&a[..16]),
        }
        f64::from(reduce_add16(&v))
    }
}

impl F16Order {
    /// [`F16Order::reduce`] of every column of `acc` (`lanes` rows of `hd`, lane-major) into
    /// `out`: the same additions, done row against row (`acc` is clobbered).
    fn reduce_rows(self, acc: &mut [f32], hd: usize, out: &mut [f32]) {
        fn add_rows(acc: &mut [f32], hd: usize, dst: usize, src: usize) {
            let (a, b) = acc.split_at_mut(src * hd);
            for (x, y) in a[dst * hd..(dst + 1) * hd].iter_mut().zip(&b[..hd]) {
                *x += *y;
            }
        }
        if self == F16Order::VecDot {
            // v[l] = (a[l] + a[32 + l]) + (a[16 + l] + a[48 + l]) for l < 16.
            for l in 0..16 {
                add_rows(acc, hd, l, 32 + l);
                add_rows(acc, hd, 16 + l, 48 + l);
                add_rows(acc, hd, l, 16 + l);
            }
        }
        // reduce_add16: h[i] = v[8 + i] + v[i]; q[j] = h[4 + j] + h[j]; (q0 + q2) + (q1 + q3).
        for i in 0..8 {
            add_rows(acc, hd, i, 8 + i);
        }
        for j in 0..4 {
            add_rows(acc, hd, j, 4 + j);
        }
        add_rows(acc, hd, 0, 2);
        add_rows(acc, hd, 1, 3);
        add_rows(acc, hd, 0, 1);
        out[..hd].copy_from_slice(&acc[..hd]);
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

/// Attention of one head with an f32 cache: f32 products, plain softmax.
#[allow(clippy::too_many_arguments)]
fn attend_head_plain(
    q: &[f32],
    k: KvView<'_>,
    v: KvView<'_>,
    lo: usize,
    hd: usize,
    scale: f32,
    scores: &mut [f32],
    out: &mut [f32],
) {
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
    softmax_inplace(scores);
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

    /// `reduce_rows` folds lane rows with exactly the additions `reduce` makes per column, on
    /// values whose sums depend on the order.
    #[test]
    fn row_fold_is_the_lane_fold_of_every_column() {
        let hd = 5;
        let mut seed = 7u32;
        for order in [F16Order::VecDot, F16Order::Tiny] {
            let lanes = order.lanes();
            let acc: Vec<f32> = (0..lanes * hd)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 2f32.powi((seed % 24) as i32)
                })
                .collect();
            let mut rows = acc.clone();
            let mut out = vec![0f32; hd];
            order.reduce_rows(&mut rows, hd, &mut out);
            for (d, o) in out.iter().enumerate() {
                let column: Vec<f32> = (0..lanes).map(|l| acc[l * hd + d]).collect();
                assert_eq!(
                    o.to_bits(),
                    (order.reduce(&column) as f32).to_bits(),
                    "{order:?} {d}"
                );
            }
        }
    }
}
