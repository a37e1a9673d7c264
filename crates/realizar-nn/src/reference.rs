//! The reference backend: the whole [`Backend`] in plain scalar code, one thread, no SIMD.
//!
//! It exists to hold the fast backend to the model's arithmetic: tests run the real models on
//! both and compare greedy tokens and logits. It computes every value the way the model defines
//! it (llama.cpp's operations, in their float order) with `realizar-quant`'s scalar twins and
//! none of the fast backend's machinery: no SIMD, no thread pool, no tiling, packing or row
//! chunks, no head grouping. Products quantize each activation row to the weights'
//! dot-product type and take one scalar dot per (row, output) pair for
//! [`Order::BatchInvariant`], or the scalar twin of llama.cpp's prompt gemm for
//! [`Order::ReferencePrompt`]; attention runs each query and head alone on the scalar twins of
//! the f16 dot products, ggml's softmax and the value sums. A difference from the fast
//! backend is therefore a bug in the fast backend's kernels, threading or batching (or a
//! float reordering that the tests bound).

use core::fmt;

use crate::backend::{
    attend_heads, check_attention, encoder_attention_host, quant_err, with_host_bytes, ActScratch,
    AttentionShape, Backend, EncoderSeq, KeySpan, Order, QTensor, Queries, Rows, ScalarKernels,
    Spread, Weight,
};
use crate::NnError;

/// The scalar, single-threaded reference backend.
pub struct ReferenceBackend {
    /// A pool of one thread: the decoder's row-wise steps run in the backend's pool, so they
    /// stay on one thread too.
    pool: rayon::ThreadPool,
}

impl fmt::Debug for ReferenceBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReferenceBackend").finish()
    }
}

impl ReferenceBackend {
    /// A reference backend.
    pub fn new() -> Result<ReferenceBackend, NnError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "realizar-reference".into())
            .build()
            .map_err(|e| NnError::ThreadPool {
                reason: e.to_string(),
            })?;
        Ok(ReferenceBackend { pool })
    }
}

impl Backend for ReferenceBackend {
    fn name(&self) -> &str {
        "reference"
    }

    fn threads(&self) -> usize {
        1
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
        with_host_bytes(ws, |ws| products(ws, rows, outs, act))
    }

    fn encoder_attention(
        &self,
        shape: &AttentionShape,
        qkv: &[f32],
        seqs: &[EncoderSeq<'_>],
        out: &mut [f32],
    ) -> Result<(), NnError> {
        // The host code, on the reference's one thread.
        self.pool
            .install(|| encoder_attention_host(shape, qkv, seqs, out))
    }

    fn attention(
        &self,
        shape: &AttentionShape,
        queries: Queries<'_>,
        _spread: Spread,
        out: &mut [f32],
    ) -> Result<(), NnError> {
        let (host, order) = check_attention(shape, &queries, out)?;
        let Queries { q, layer, pos, .. } = queries;
        let (nh, nkv, hd) = (shape.n_head, shape.n_head_kv, shape.head_dim);
        let width = nh * hd;
        let group = nh / nkv;
        let mut scores = Vec::new();
        for (t, p) in pos.enumerate() {
            let lo = shape.window.map_or(0, |w| (p + 1).saturating_sub(w));
            scores.resize(p + 1 - lo, 0.0);
            let span = KeySpan {
                lo,
                n: p + 1,
                hd,
                scale: shape.kq_scale,
            };
            for h in 0..nh {
                let kv =
                    host.head(layer, h / group, p + 1)
                        .ok_or_else(|| NnError::InvalidArgument {
                            reason: format!("attention: no cache for layer {layer} head {h}"),
                        })?;
                let at = t * width + h * hd..t * width + (h + 1) * hd;
                let (qh, oh) = (&q[at.clone()], &mut out[at]);
                attend_heads::<ScalarKernels>(qh, kv, span, order, &mut scores, oh);
            }
        }
        Ok(())
    }
}

/// The products of [`ReferenceBackend::linear`] over host bytes.
fn products(
    ws: &[(&QTensor, &[u8])],
    rows: Rows<'_>,
    outs: &mut [&mut [f32]],
    act: &mut ActScratch,
) -> Result<(), NnError> {
    let Rows { x, m, .. } = rows;
    if outs.len() < ws.len() {
        return Err(NnError::InvalidArgument {
            reason: format!("{} outputs for {} matrices", outs.len(), ws.len()),
        });
    }
    for (&(w, bytes), out) in ws.iter().zip(outs.iter_mut()) {
        let (n, vdt, what) = (w.cols, w.ty.vec_dot_type(), w.name.as_str());
        let rb = w.row_bytes();
        let arb = vdt.row_bytes(n).unwrap_or(0);
        if m == 0
            || n == 0
            || arb == 0
            || x.len() < m * n
            || out.len() < m * w.rows
            || bytes.len() < w.rows * rb
        {
            return Err(NnError::InvalidArgument {
                reason: format!("linear `{what}`: {m} rows do not fit {}×{n}", w.rows),
            });
        }
        let acts = act.bytes_mut(arb * m);
        for (xt, at) in x.chunks_exact(n).zip(acts.chunks_exact_mut(arb)) {
            realizar_quant::quantize_row_scalar(vdt, xt, at).map_err(quant_err(what))?;
        }
        let out = &mut out[..m * w.rows];
        match rows.order {
            Order::BatchInvariant => {
                for (at, ot) in acts.chunks_exact(arb).zip(out.chunks_exact_mut(w.rows)) {
                    for (o, wr) in ot.iter_mut().zip(bytes.chunks_exact(rb)) {
                        *o = realizar_quant::vec_dot_scalar(w.ty, n, wr, at)
                            .map_err(quant_err(what))?;
                    }
                }
            }
            Order::ReferencePrompt => realizar_quant::matmul_prompt_scalar(
                w.ty,
                n,
                &bytes[..w.rows * rb],
                0..w.rows,
                acts,
                m,
                m,
                out,
                w.rows,
            )
            .map_err(quant_err(what))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{AttentionShape, CpuBackend};
    use crate::kv::{KvCache, KvType};

    fn noise(seed: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                ((*seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 4.0
            })
            .collect()
    }

    #[test]
    fn attention_agrees_with_the_cpu_backend() {
        let (nh, nkv, hd) = (6, 2, 64);
        let shape = AttentionShape {
            n_head: nh,
            n_head_kv: nkv,
            head_dim: hd,
            kq_scale: 0.125,
            window: None,
        };
        let mut seed = 7u64;
        let mut cache = KvCache::new(KvType::F16, 1, nkv, hd, 64).unwrap();
        for p in 0..40 {
            let k = noise(&mut seed, nkv * hd);
            let v = noise(&mut seed, nkv * hd);
            cache.store(0, p, &k, &v);
        }
        cache.advance(40);
        let cpu = CpuBackend::new(1).unwrap();
        let rf = ReferenceBackend::new().unwrap();
        for n in 1..=40 {
            let q = noise(&mut seed, nh * hd);
            let run = |b: &dyn Backend| {
                let mut out = vec![0.0; nh * hd];
                let queries = Queries {
                    q: &q,
                    cache: &cache,
                    layer: 0,
                    pos: n - 1..n,
                };
                b.attention(&shape, queries, Spread::Pool, &mut out)
                    .unwrap();
                out
            };
            assert_eq!(run(&cpu), run(&rf), "{n} keys");
        }
        // A prompt pass of several queries (tinyBLAS order) over a sliding window.
        let shape = AttentionShape {
            window: Some(7),
            ..shape
        };
        let q = noise(&mut seed, 12 * nh * hd);
        let run = |b: &dyn Backend| {
            let mut out = vec![0.0; 12 * nh * hd];
            let queries = Queries {
                q: &q,
                cache: &cache,
                layer: 0,
                pos: 20..32,
            };
            b.attention(&shape, queries, Spread::Pool, &mut out)
                .unwrap();
            out
        };
        assert_eq!(run(&cpu), run(&rf));
    }

    /// Products of every weight type a decoder meets, in both orders, over a few row counts:
    /// the reference's scalar code gives the CPU backend's numbers bit for bit.
    #[test]
    fn products_agree_with_the_cpu_backend() {
        use realizar_quant::QuantType;
        let cpu = CpuBackend::new(2).unwrap();
        let rf = ReferenceBackend::new().unwrap();
        let mut seed = 11u64;
        let (rows, cols) = (40, 512);
        for ty in [
            QuantType::Q4_0,
            QuantType::Q4_1,
            QuantType::Q5_0,
            QuantType::Q8_0,
            QuantType::Q4_K,
            QuantType::Q5_K,
            QuantType::Q6_K,
            QuantType::F16,
        ] {
            // The float weight types' SIMD dot (`realizar-quant`'s `float_dot`) sums in its own
            // lane order and their scalar "twin" in f64: they agree only to rounding, not bit
            // for bit (and neither is ggml's `ggml_vec_dot_f16` order yet; a known gap). The quantized types agree exactly.
            let exact = !matches!(ty, QuantType::F16);
            let rb = ty.row_bytes(cols).unwrap();
            let mut bytes = vec![0u8; rows * rb];
            for r in bytes.chunks_exact_mut(rb) {
                realizar_quant::quantize_row(ty, &noise(&mut seed, cols), r).unwrap();
            }
            let info = QTensor {
                name: format!("{ty:?}"),
                ty,
                rows,
                cols,
                offset: 0,
                len: bytes.len(),
            };
            let store: crate::WeightBytes = std::sync::Arc::new(bytes);
            for m in [1, 3, 4, 9] {
                let x = noise(&mut seed, m * cols);
                for order in [Order::BatchInvariant, Order::ReferencePrompt] {
                    let run = |b: &dyn Backend| {
                        let mut out = vec![0.0; m * rows];
                        let mut act = ActScratch::default();
                        let w = b.upload(info.clone(), &store).unwrap();
                        b.linear(&[&w], Rows { x: &x, m, order }, &mut [&mut out], &mut act)
                            .unwrap();
                        out
                    };
                    let (a, b) = (run(&cpu), run(&rf));
                    if exact {
                        assert_eq!(a, b, "{ty:?}, {m} rows, {order:?}");
                    } else {
                        for (x, y) in a.iter().zip(&b) {
                            let tol = 1e-5 * x.abs().max(1.0);
                            assert!((x - y).abs() <= tol, "{ty:?}: {x} vs {y}");
                        }
                    }
                }
            }
        }
    }
}
