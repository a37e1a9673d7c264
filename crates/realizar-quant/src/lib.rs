//! ggml block formats for Realizar: dequantization, quantization and fused dot products.
//!
//! The block layouts are bit-exact with ggml's (`ggml/src/ggml-common.h`); weight quantizers
//! and dequantizers follow the reference functions of `ggml/src/ggml-quants.c`; activation
//! quantizers and dot products follow, float operation by float operation, the kernels that
//! llama.cpp's CPU backend runs on x86 with AVX2/AVX-512 (`ggml/src/ggml-cpu/arch/x86/quants.c`
//! and `repack.cpp`), with SIMD kernels picked at run time (each with a bit-identical scalar
//! twin, [`vec_dot_scalar`]).
//!
//! A weight row of type `ty` is multiplied with an activation row quantized to
//! [`QuantType::vec_dot_type`], as ggml does (Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1,
//! Q8_K for the K-quants, the type itself for F32/F16/BF16):
//!
//! ```
//! use realizar_quant::{dequantize_row, quantize_row, vec_dot, QuantType};
//!
//! let n = 256;
//! let w: Vec<f32> = (0..n).map(|i| (i as f32 * 0.1).sin()).collect();
//! let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.05).cos()).collect();
//!
//! // Quantize the weights to Q4_K and dequantize them back.
//! let ty = QuantType::Q4_K;
//! let mut wq = vec![0u8; ty.row_bytes(n).unwrap()];
//! quantize_row(ty, &w, &mut wq)?;
//! let mut w2 = vec![0f32; n];
//! dequantize_row(ty, &wq, &mut w2)?;
//! assert!(w.iter().zip(&w2).all(|(a, b)| (a - b).abs() < 0.1));
//!
//! // Quantize the activations to the weight type's `vec_dot_type` (Q8_K) and dot.
//! let at = ty.vec_dot_type();
//! let mut xq = vec![0u8; at.row_bytes(n).unwrap()];
//! quantize_row(at, &x, &mut xq)?;
//! let dot = vec_dot(ty, n, &wq, &xq)?;
//! let exact: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
//! assert!((dot - exact).abs() < 0.02 * n as f32);
//! # Ok::<(), realizar_quant::QuantError>(())
//! ```
//!
//! # Numerics
//!
//! - Dequantization and the weight quantizers are bit-identical to ggml's
//!   (`dequantize_row_*`, `quantize_row_*_ref`). The activation quantizers Q8_0/Q8_1 are those
//!   of ggml's x86 CPU backend (`quantize_row_q8_0`/`_q8_1`: `127 / amax`, ties to even), Q8_K
//!   its reference one; their SIMD versions give the same bytes as the scalar ones for finite
//!   input.
//! - Q4_1, Q5_0, Q5_1, Q8_0, Q5_K, Q6_K, IQ4_XS, TQ1_0 and TQ2_0 dot products accumulate in
//!   ggml's x86 order (eight i32 lanes of four elements per block, `fma(d, lane, acc)` block
//!   after block, `hsum_float_8`; the min terms of Q4_1, Q5_1 and Q5_K in a separate scalar
//!   FMA sum; the ternary types' activation sums subtracted per lane); Q4_0,
//!   Q4_K, IQ4_NL and MXFP4 in the order of ggml's repacked x86 kernels
//!   (`ggml_gemv_q4_0_8x8_q8_0`, `ggml_gemv_q4_K_8x8_q8_K`, `ggml_gemv_iq4_nl_8x8_q8_0`, …),
//!   which llama.cpp uses for matrices with a multiple of 8 rows (all of those in the model
//!   families realizar runs; a matrix of other row counts gets the same order here).
//!   The other types follow ggml's reference kernels (`ggml_vec_dot_*_generic`).
//!   The SIMD kernels compute every integer partial sum exactly (for every byte pattern, not
//!   only the ones ggml's quantizers produce) and are bit-identical to [`vec_dot_scalar`].
//! - [`matvec`] and [`matmul`] run the same kernel on the same blocks as [`vec_dot`] for every
//!   (weight row, activation row) pair, so results do not depend on the batch size or on how
//!   the caller splits rows between threads.
//! - Non-finite inputs never panic; what they quantize to is unspecified.
//!
//! # Kernels
//!
//! Chosen once at run time: AVX-512 VNNI (256-bit, for the 32-element formats), else
//! AVX2 + FMA + F16C, else scalar. Setting the environment variable `REALIZAR_QUANT_NO_VNNI`
//! skips the VNNI level (to compare levels in the benchmarks).
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod blocks;
mod dequant;
mod dot;
mod error;
pub mod grids;
mod packed;
mod quant;
mod simd;
mod types;
pub mod vecops;

use core::ops::Range;

use bytemuck::Pod;
use half::{bf16, f16};

use crate::blocks::{cast, cast_mut};
pub use crate::error::QuantError;
pub use crate::packed::PackedActs;
pub use crate::types::{QuantType, QK, QK_K};

/// Bytes of a row of `n` elements of `ty`, or [`QuantError::NotBlockMultiple`].
fn row_bytes(ty: QuantType, n: usize) -> Result<usize, QuantError> {
    ty.row_bytes(n)
        .ok_or(QuantError::NotBlockMultiple { ty, n })
}

/// Dequantizes one row: `src` holds `dst.len()` elements of type `ty`.
pub fn dequantize_row(ty: QuantType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    let len = row_bytes(ty, dst.len())?;
    let s = "src";
    match ty {
        QuantType::F32 => dst.copy_from_slice(cast::<f32>(s, ty, src, len)?),
        QuantType::F16 => dequant::f16s(cast::<f16>(s, ty, src, len)?, dst),
        QuantType::BF16 => dequant::bf16s(cast::<bf16>(s, ty, src, len)?, dst),
        QuantType::Q4_0 => dequant::q4_0(cast(s, ty, src, len)?, dst),
        QuantType::Q4_1 => dequant::q4_1(cast(s, ty, src, len)?, dst),
        QuantType::Q5_0 => dequant::q5_0(cast(s, ty, src, len)?, dst),
        QuantType::Q5_1 => dequant::q5_1(cast(s, ty, src, len)?, dst),
        QuantType::Q8_0 => dequant::q8_0(cast(s, ty, src, len)?, dst),
        QuantType::Q8_1 => dequant::q8_1(cast(s, ty, src, len)?, dst),
        QuantType::Q2_K => dequant::q2_k(cast(s, ty, src, len)?, dst),
        QuantType::Q3_K => dequant::q3_k(cast(s, ty, src, len)?, dst),
        QuantType::Q4_K => dequant::q4_k(cast(s, ty, src, len)?, dst),
        QuantType::Q5_K => dequant::q5_k(cast(s, ty, src, len)?, dst),
        QuantType::Q6_K => dequant::q6_k(cast(s, ty, src, len)?, dst),
        QuantType::Q8_K => dequant::q8_k(cast(s, ty, src, len)?, dst),
        QuantType::IQ4_NL => dequant::iq4_nl(cast(s, ty, src, len)?, dst),
        QuantType::IQ4_XS => dequant::iq4_xs(cast(s, ty, src, len)?, dst),
        QuantType::MXFP4 => dequant::mxfp4(cast(s, ty, src, len)?, dst),
        QuantType::TQ1_0 => dequant::tq1_0(cast(s, ty, src, len)?, dst),
        QuantType::IQ3_XXS => dequant::iq3_xxs(cast(s, ty, src, len)?, dst),
        QuantType::IQ3_S => dequant::iq3_s(cast(s, ty, src, len)?, dst),
        QuantType::IQ2_XXS => dequant::iq2_xxs(cast(s, ty, src, len)?, dst),
        QuantType::IQ1_S => dequant::iq1_s(cast(s, ty, src, len)?, dst),
        QuantType::IQ1_M => dequant::iq1_m(cast(s, ty, src, len)?, dst),
        QuantType::IQ2_XS => dequant::iq2_xs(cast(s, ty, src, len)?, dst),
        QuantType::IQ2_S => dequant::iq2_s(cast(s, ty, src, len)?, dst),
        QuantType::TQ2_0 => dequant::tq2_0(cast(s, ty, src, len)?, dst),
    }
    Ok(())
}

/// Quantizes one row of `src.len()` elements into `dst` (`dst.len() == ty.row_bytes(src.len())`)
/// with ggml's reference quantizer for `ty`, except the activation types Q8_0 and Q8_1, which
/// are quantized as ggml's x86 CPU backend quantizes activations (see the crate docs). The
/// activation types Q8_0, Q8_1 and Q8_K use the SIMD kernels where available; their results
/// are identical to the scalar twins.
pub fn quantize_row(ty: QuantType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    let len = row_bytes(ty, src.len())?;
    let d = "dst";
    match ty {
        QuantType::F32 => cast_mut::<f32>(d, ty, dst, len)?.copy_from_slice(src),
        QuantType::F16 => quant::f16s(src, cast_mut(d, ty, dst, len)?),
        QuantType::BF16 => quant::bf16s(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q4_0 => quant::q4_0(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q4_1 => quant::q4_1(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q5_0 => quant::q5_0(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q5_1 => quant::q5_1(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q8_0 => simd::quantize_q8_0(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q8_1 => simd::quantize_q8_1(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q2_K => quant::q2_k(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q3_K => quant::q3_k(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q4_K => quant::q4_k(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q5_K => quant::q5_k(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q6_K => quant::q6_k(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q8_K => simd::quantize_q8_k(src, cast_mut(d, ty, dst, len)?),
        QuantType::IQ4_NL => quant::iq4_nl(src, cast_mut(d, ty, dst, len)?),
        QuantType::IQ4_XS => quant::iq4_xs(src, cast_mut(d, ty, dst, len)?),
        QuantType::MXFP4 => quant::mxfp4(src, cast_mut(d, ty, dst, len)?),
        QuantType::TQ1_0 => quant::tq1_0(src, cast_mut(d, ty, dst, len)?),
        QuantType::TQ2_0 => quant::tq2_0(src, cast_mut(d, ty, dst, len)?),
        // ggml's IQ3_XXS search (neighbour tables of its grid) is not implemented:
        // `quantize_row_plain` encodes test data instead.
        QuantType::IQ1_S
        | QuantType::IQ1_M
        | QuantType::IQ2_XXS
        | QuantType::IQ2_XS
        | QuantType::IQ2_S
        | QuantType::IQ3_XXS
        | QuantType::IQ3_S => return Err(QuantError::Unsupported { ty, op: "quantize" }),
    }
    Ok(())
}

/// Quantizes one row of weights as llama-quantize writes them without an importance matrix
/// (ggml's `ggml_quantize_chunk`): [`quantize_row`] for every type except Q8_0, whose weights
/// get ggml's reference quantizer (`quantize_row_q8_0_ref`: `d = amax / 127`, ties away from
/// zero) instead of the activation quantizer.
pub fn quantize_row_weights(ty: QuantType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    if ty == QuantType::Q8_0 {
        let len = row_bytes(ty, src.len())?;
        quant::q8_0_ref(src, cast_mut("dst", ty, dst, len)?);
        return Ok(());
    }
    quantize_row(ty, src, dst)
}

/// Quantizes one row of weights for test models: [`quantize_row_weights`] for every type it
/// supports, and for IQ3_XXS (whose ggml quantizer it does not implement) a plain search:
/// per sub-block the scale (of three around the one that maps the largest magnitude to the
/// grid's top) with the least squared error, signs of even parity per eight elements, each
/// four magnitudes to the nearest grid entry. Valid blocks, deterministic, not llama-quantize's
/// bytes.
pub fn quantize_row_plain(ty: QuantType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    let len = row_bytes(ty, src.len())?;
    match ty {
        QuantType::IQ3_XXS => quant::iq3_xxs(src, cast_mut("dst", ty, dst, len)?),
        QuantType::IQ3_S => quant::iq3_s(src, cast_mut("dst", ty, dst, len)?),
        QuantType::IQ2_XXS => quant::iq2_xxs(src, cast_mut("dst", ty, dst, len)?),
        QuantType::IQ1_S => quant::iq1_s(src, cast_mut("dst", ty, dst, len)?),
        QuantType::IQ1_M => quant::iq1_m(src, cast_mut("dst", ty, dst, len)?),
        QuantType::IQ2_XS => quant::iq2_xs(src, cast_mut("dst", ty, dst, len)?),
        QuantType::IQ2_S => quant::iq2_s(src, cast_mut("dst", ty, dst, len)?),
        _ => return quantize_row_weights(ty, src, dst),
    }
    Ok(())
}

/// [`quantize_row`] with the scalar reference quantizers only (the twin of the SIMD
/// activation quantizers).
pub fn quantize_row_scalar(ty: QuantType, src: &[f32], dst: &mut [u8]) -> Result<(), QuantError> {
    let len = row_bytes(ty, src.len())?;
    let d = "dst";
    match ty {
        QuantType::Q8_0 => quant::q8_0(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q8_1 => quant::q8_1(src, cast_mut(d, ty, dst, len)?),
        QuantType::Q8_K => quant::q8_k(src, cast_mut(d, ty, dst, len)?),
        _ => return quantize_row(ty, src, dst),
    }
    Ok(())
}

/// Which implementation of the dot products to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Impl {
    Scalar,
    Best,
}

/// A weight type's dot product over typed rows: `f(weights, activations)`.
type DotFn<W, A> = fn(&[W], &[A]) -> f32;

/// Row geometry of one call, validated.
struct Geometry {
    n: usize,
    w_row: usize,
    a_row: usize,
}

fn geometry(ty: QuantType, n: usize) -> Result<Geometry, QuantError> {
    Ok(Geometry {
        n,
        w_row: row_bytes(ty, n)?,
        a_row: row_bytes(ty.vec_dot_type(), n)?,
    })
}

/// The kernels of one weight type: one (weight row, activation row) pair, and the optional
/// wider ones (each bit-identical to the pair kernel on every pair).
struct Kernels<W, A> {
    one: DotFn<W, A>,
    quad: Option<simd::QuadFn<W, A>>,
    wide: simd::Wide<W, A>,
    /// Whether products of several rows may go through the packed-tile kernels
    /// ([`simd::tiles_take`]); not for the scalar twin.
    packed: bool,
    /// A kernel for the whole product (bit-identical to `one` on every pair), tried first.
    whole: Option<simd::WholeFn<W, A>>,
}

impl<W, A> Kernels<W, A> {
    /// The SIMD selections for [`Impl::Best`], else the scalar twin alone.
    fn pick(
        best: bool,
        scalar: DotFn<W, A>,
        simd: fn() -> DotFn<W, A>,
        quad: fn() -> Option<simd::QuadFn<W, A>>,
        wide: fn() -> simd::Wide<W, A>,
    ) -> Kernels<W, A> {
        if best {
            Kernels {
                one: simd(),
                quad: quad(),
                wide: wide(),
                packed: true,
                whole: None,
            }
        } else {
            Kernels::scalar(scalar)
        }
    }

    /// The scalar kernel alone.
    fn scalar(one: DotFn<W, A>) -> Kernels<W, A> {
        Kernels {
            one,
            quad: None,
            wide: simd::Wide::none(),
            packed: false,
            whole: None,
        }
    }

    /// With a whole-product kernel.
    fn with_whole(mut self, whole: Option<simd::WholeFn<W, A>>) -> Kernels<W, A> {
        if self.packed {
            self.whole = whole;
        }
        self
    }
}

thread_local! {
    /// The activations [`matmul`] packs for the tile kernels (kept: packing again reuses it).
    static PACKED: core::cell::RefCell<PackedActs> = core::cell::RefCell::new(PackedActs::new());
}

/// The one loop behind [`vec_dot`], [`matvec`] and [`matmul`]: every (weight row, activation
/// row) pair is computed by the same kernel `f` on the same block slices, so the results do
/// not depend on how many rows a call covers.
#[allow(clippy::too_many_arguments)]
fn run<W: Pod, A: Pod>(
    ty: QuantType,
    g: &Geometry,
    w: &[u8],
    rows: Range<usize>,
    act: &[u8],
    m: usize,
    out: &mut [f32],
    out_stride: usize,
    k: Kernels<W, A>,
) -> Result<(), QuantError> {
    let Kernels {
        one: f,
        quad,
        wide,
        packed,
        whole,
    } = k;
    let n_rows = w.len().checked_div(g.w_row).unwrap_or(0);
    if rows.start > rows.end || rows.end > n_rows {
        return Err(QuantError::RowsOutOfRange { rows, n_rows });
    }
    let w_len = rows.end * g.w_row;
    let w_rows: &[W] = cast("w", ty, w.get(..w_len).unwrap_or_default(), w_len)?;
    let a_len = m.checked_mul(g.a_row).ok_or(QuantError::WrongLength {
        what: "act",
        expected: usize::MAX,
        actual: act.len(),
    })?;
    let acts: &[A] = cast("act", ty.vec_dot_type(), act, a_len)?;
    let nr = rows.len();
    check_out(m, nr, out.len(), out_stride)?;
    let wb = g.w_row / core::mem::size_of::<W>(); // blocks per weight row
    let ab = g.a_row / core::mem::size_of::<A>(); // blocks per activation row
    if let Some(whole) = whole {
        if whole(w_rows, wb, rows.clone(), acts, ab, m, out, out_stride) {
            return Ok(());
        }
    }
    if packed && simd::tiles_take(ty, m) {
        // Several rows with packed kernels: packed here (into this thread's store), then the
        // same kernels as `matmul_packed`.
        return PACKED.with(|cell| {
            let mut own = PackedActs::new();
            let mut held = cell.try_borrow_mut();
            let pk = held.as_deref_mut().unwrap_or(&mut own);
            pk.pack(ty, g.n, act, m)?;
            simd::run_packed(ty, &w[..w_len], g.w_row, rows, pk, out, out_stride)
        });
    }
    // With a four-weight-row kernel, the activation rows left over by the multi-row kernels
    // (all of them when there is only one) each take a pass of it over the weight rows, which
    // streams the weights faster than one pair at a time.
    let lead = if wide.rows4.is_some() { m - m % 4 } else { m };
    if let Some(rows4) = wide.rows4 {
        let wrow = |r: usize| w_rows.get(r * wb..(r + 1) * wb).unwrap_or_default();
        for i in lead..m {
            let act = acts.get(i * ab..(i + 1) * ab).unwrap_or_default();
            let base = i * out_stride;
            let mut r0 = rows.start;
            while r0 + 4 <= rows.end {
                let res = rows4([wrow(r0), wrow(r0 + 1), wrow(r0 + 2), wrow(r0 + 3)], act);
                for (k, v) in res.into_iter().enumerate() {
                    if let Some(o) = out.get_mut(base + r0 + k - rows.start) {
                        *o = v;
                    }
                }
                r0 += 4;
            }
            for r in r0..rows.end {
                if let Some(o) = out.get_mut(base + r - rows.start) {
                    *o = f(wrow(r), act);
                }
            }
        }
    }
    // The rest in tiles: a few weight rows (they stay in L1) against a few activation rows.
    const ROW_TILE: usize = 8;
    const ACT_TILE: usize = 8;
    let m = lead;
    let mut r0 = if m == 0 { rows.end } else { rows.start };
    while r0 < rows.end {
        let r1 = (r0 + ROW_TILE).min(rows.end);
        let mut i0 = 0;
        while i0 < m {
            let i1 = (i0 + ACT_TILE).min(m);
            let wrow = |r: usize| w_rows.get(r * wb..(r + 1) * wb).unwrap_or_default();
            let act = |i: usize| acts.get(i * ab..(i + 1) * ab).unwrap_or_default();
            let mut r_one = r0;
            if let (Some(oct4), 8) = (wide.oct4, i1 - i0) {
                // Four weight rows against eight activation rows per pass.
                while r_one + 4 <= r1 {
                    let res = oct4(
                        core::array::from_fn(|k| wrow(r_one + k)),
                        core::array::from_fn(|k| act(i0 + k)),
                    );
                    for (dr, res) in res.into_iter().enumerate() {
                        for (k, v) in res.into_iter().enumerate() {
                            let at = (i0 + k) * out_stride + (r_one + dr - rows.start);
                            if let Some(o) = out.get_mut(at) {
                                *o = v;
                            }
                        }
                    }
                    r_one += 4;
                }
            }
            for r in r_one..r1 {
                let wr = wrow(r);
                let mut i = i0;
                if let Some(oct) = wide.oct {
                    // Eight activation rows per pass (bit-identical to eight single calls).
                    while i + 8 <= i1 {
                        let res = oct(wr, core::array::from_fn(|k| act(i + k)));
                        for (k, v) in res.into_iter().enumerate() {
                            if let Some(o) = out.get_mut((i + k) * out_stride + (r - rows.start)) {
                                *o = v;
                            }
                        }
                        i += 8;
                    }
                }
                if let Some(quad) = quad {
                    // Four activation rows per pass over the weight row: bit-identical to
                    // four single calls (same operations per pair, see `simd`).
                    while i + 4 <= i1 {
                        let res = quad(wr, [act(i), act(i + 1), act(i + 2), act(i + 3)]);
                        for (k, v) in res.into_iter().enumerate() {
                            if let Some(o) = out.get_mut((i + k) * out_stride + (r - rows.start)) {
                                *o = v;
                            }
                        }
                        i += 4;
                    }
                }
                for i in i..i1 {
                    if let Some(o) = out.get_mut(i * out_stride + (r - rows.start)) {
                        *o = f(wr, act(i));
                    }
                }
            }
            i0 = i1;
        }
        r0 = r1;
    }
    Ok(())
}

/// Picks the kernel for `ty` and runs [`run`].
#[allow(clippy::too_many_arguments)]
fn dispatch(
    imp: Impl,
    ty: QuantType,
    n: usize,
    w: &[u8],
    rows: Range<usize>,
    act: &[u8],
    m: usize,
    out: &mut [f32],
    out_stride: usize,
) -> Result<(), QuantError> {
    let g = geometry(ty, n)?;
    let best = imp == Impl::Best;
    macro_rules! go {
        ($scalar:path, $simd:path, $quad:path, $wide:path, whole = $whole:expr) => {
            run(
                ty,
                &g,
                w,
                rows,
                act,
                m,
                out,
                out_stride,
                Kernels::pick(best, $scalar, $simd, $quad, $wide).with_whole($whole),
            )
        };
        ($scalar:path, $simd:path, $quad:path, $wide:path) => {
            go!($scalar, $simd, $quad, $wide, whole = None)
        };
        ($scalar:path, $simd:path, $quad:path) => {
            go!($scalar, $simd, $quad, simd::Wide::none)
        };
        ($scalar:path, $simd:path) => {
            go!($scalar, $simd, simd::no_quad, simd::Wide::none)
        };
        ($scalar:path) => {
            run(
                ty,
                &g,
                w,
                rows,
                act,
                m,
                out,
                out_stride,
                Kernels::scalar($scalar),
            )
        };
    }
    match ty {
        QuantType::F32 => go!(dot::f32s, simd::f32s),
        QuantType::F16 => go!(dot::f16s, simd::f16s),
        QuantType::BF16 => go!(dot::bf16s, simd::bf16s),
        QuantType::Q4_0 => go!(
            dot::q4_0_q8_0,
            simd::q4_0_q8_0,
            simd::q4_0_q8_0_x4,
            simd::Wide::none,
            whole = simd::nl4_q8_0_whole()
        ),
        QuantType::Q4_1 => go!(
            dot::q4_1_q8_1,
            simd::q4_1_q8_1,
            simd::q4_1_q8_1_x4,
            simd::q4_1_q8_1_wide
        ),
        QuantType::Q5_0 => go!(
            dot::q5_0_q8_0,
            simd::q5_0_q8_0,
            simd::q5_0_q8_0_x4,
            simd::q5_0_q8_0_wide
        ),
        QuantType::Q5_1 => go!(dot::q5_1_q8_1),
        QuantType::Q8_0 => go!(
            dot::q8_0_q8_0,
            simd::q8_0_q8_0,
            simd::q8_0_q8_0_x4,
            simd::q8_0_q8_0_wide
        ),
        QuantType::Q2_K if ggml_repacks_q2_k(w.len().checked_div(g.w_row).unwrap_or(0)) => {
            go!(
                dot::q2_k_q8_k_repacked,
                simd::q2_k_q8_k_repacked,
                simd::q2_k_q8_k_repacked_x4
            )
        }
        QuantType::Q2_K => go!(dot::q2_k_q8_k, simd::q2_k_q8_k, simd::q2_k_q8_k_x4),
        QuantType::Q3_K => go!(dot::q3_k_q8_k, simd::q3_k_q8_k, simd::q3_k_q8_k_x4),
        QuantType::Q4_K => go!(dot::q4_k_q8_k, simd::q4_k_q8_k, simd::q4_k_q8_k_x4),
        QuantType::Q5_K => go!(dot::q5_k_q8_k, simd::q5_k_q8_k, simd::q5_k_q8_k_x4),
        QuantType::Q6_K => go!(dot::q6_k_q8_k, simd::q6_k_q8_k, simd::q6_k_q8_k_x4),
        QuantType::IQ4_NL => go!(
            dot::iq4_nl_q8_0,
            simd::iq4_nl_q8_0,
            simd::iq4_nl_q8_0_x4,
            simd::Wide::none,
            whole = simd::nl4_q8_0_whole()
        ),
        QuantType::IQ4_XS => go!(dot::iq4_xs_q8_k, simd::iq4_xs_q8_k, simd::iq4_xs_q8_k_x4),
        QuantType::MXFP4 => go!(dot::mxfp4_q8_0, simd::mxfp4_q8_0, simd::mxfp4_q8_0_x4),
        QuantType::TQ1_0 => go!(dot::tq1_0_q8_k, simd::tq1_0_q8_k, simd::tq1_0_q8_k_x4),
        QuantType::IQ3_XXS => go!(dot::iq3_xxs_q8_k, simd::iq3_xxs_q8_k, simd::iq3_xxs_q8_k_x4),
        QuantType::IQ3_S => go!(dot::iq3_s_q8_k, simd::iq3_s_q8_k, simd::iq3_s_q8_k_x4),
        QuantType::IQ2_XXS => go!(dot::iq2_xxs_q8_k, simd::iq2_xxs_q8_k, simd::iq2_xxs_q8_k_x4),
        QuantType::IQ1_S => go!(dot::iq1_s_q8_k, simd::iq1_s_q8_k, simd::iq1_s_q8_k_x4),
        QuantType::IQ1_M => go!(dot::iq1_m_q8_k, simd::iq1_m_q8_k, simd::iq1_m_q8_k_x4),
        QuantType::IQ2_XS => go!(dot::iq2_xs_q8_k, simd::iq2_xs_q8_k, simd::iq2_xs_q8_k_x4),
        QuantType::IQ2_S => go!(dot::iq2_s_q8_k, simd::iq2_s_q8_k, simd::iq2_s_q8_k_x4),
        QuantType::TQ2_0 => go!(dot::tq2_0_q8_k, simd::tq2_0_q8_k, simd::tq2_0_q8_k_x4),
        QuantType::Q8_1 | QuantType::Q8_K => Err(QuantError::Unsupported { ty, op: "vec_dot" }),
    }
}

/// Dot product of one weight row (type `ty`, `n` elements) with an activation row already
/// quantized to `ty.vec_dot_type()`; dispatches to the best SIMD kernel at run time.
///
/// Q8_1 and Q8_K are activation-only types (as in ggml) and give
/// [`QuantError::Unsupported`].
pub fn vec_dot(ty: QuantType, n: usize, w: &[u8], act: &[u8]) -> Result<f32, QuantError> {
    let mut out = [0.0f32];
    dispatch(Impl::Best, ty, n, w, 0..1, act, 1, &mut out, 1)?;
    let [v] = out;
    Ok(v)
}

/// The scalar twin of [`vec_dot`]: the same float operations in the same order, no SIMD.
pub fn vec_dot_scalar(ty: QuantType, n: usize, w: &[u8], act: &[u8]) -> Result<f32, QuantError> {
    let mut out = [0.0f32];
    dispatch(Impl::Scalar, ty, n, w, 0..1, act, 1, &mut out, 1)?;
    let [v] = out;
    Ok(v)
}

/// `out[r - rows.start] = dot(row r of w, act)` for `r` in `rows`; `w` holds whole rows of `n`
/// elements each (`w.len()` a multiple of `ty.row_bytes(n)`), `act` one row of the
/// `vec_dot_type`, and `out.len() == rows.len()`. For the caller's threading: call it on
/// disjoint row ranges. Bit-identical to [`vec_dot`] on each row, except in a Q2_K matrix
/// that ggml repacks on this CPU (see [`matmul_prompt`]): its rows take the repacked order.
pub fn matvec(
    ty: QuantType,
    n: usize,
    w: &[u8],
    rows: Range<usize>,
    act: &[u8],
    out: &mut [f32],
) -> Result<(), QuantError> {
    if out.len() != rows.len() {
        return Err(QuantError::WrongLength {
            what: "out",
            expected: rows.len(),
            actual: out.len(),
        });
    }
    let stride = rows.len();
    dispatch(Impl::Best, ty, n, w, rows, act, 1, out, stride)
}

/// Matrix product for prefill: `act` holds `m` activation rows of the `vec_dot_type` (each
/// `ty.vec_dot_type().row_bytes(n)` bytes, back to back); for weight rows `rows`,
/// `out[i * out_stride + (r - rows.start)] = dot(w_r, act_i)`. Tiles so each weight row is
/// loaded once for several activation rows. Bit-identical to [`vec_dot`] on every pair (a
/// repacked Q2_K matrix aside, as in [`matvec`]): the batch size does not change the
/// arithmetic.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    ty: QuantType,
    n: usize,
    w: &[u8],
    rows: Range<usize>,
    act: &[u8],
    m: usize,
    out: &mut [f32],
    out_stride: usize,
) -> Result<(), QuantError> {
    dispatch(Impl::Best, ty, n, w, rows, act, m, out, out_stride)
}

/// [`matmul`] of the activation rows packed in `packed` (for `ty` and width `n`, see
/// [`PackedActs::pack`]): the same results, bit for bit, without packing them again, so
/// several calls (the row chunks of a matrix on several threads) share one packing. For the
/// weight types with packed kernels it also equals [`matmul_prompt`].
pub fn matmul_packed(
    ty: QuantType,
    n: usize,
    w: &[u8],
    rows: Range<usize>,
    packed: &PackedActs,
    out: &mut [f32],
    out_stride: usize,
) -> Result<(), QuantError> {
    let g = geometry(ty, n)?;
    let Some((_, _, m)) = packed.packed_for().filter(|&(t, k, _)| t == ty && k == n) else {
        return Err(QuantError::Unsupported {
            ty,
            op: "matmul_packed with activations packed for another type or width",
        });
    };
    let n_rows = w.len().checked_div(g.w_row).unwrap_or(0);
    if rows.start > rows.end || rows.end > n_rows {
        return Err(QuantError::RowsOutOfRange { rows, n_rows });
    }
    check_out(m, rows.len(), out.len(), out_stride)?;
    simd::run_packed(
        ty,
        &w[..rows.end * g.w_row],
        g.w_row,
        rows,
        packed,
        out,
        out_stride,
    )
}

/// Whether `out` (of `len` floats) holds `m` rows of `nr` products `stride` apart.
fn check_out(m: usize, nr: usize, len: usize, stride: usize) -> Result<(), QuantError> {
    if m > 0 && nr > 0 {
        let needed = (m - 1)
            .checked_mul(stride)
            .and_then(|v| v.checked_add(nr))
            .unwrap_or(usize::MAX);
        if len < needed || (m > 1 && stride < nr) {
            return Err(QuantError::WrongLength {
                what: "out",
                expected: needed.max(m * nr),
                actual: len,
            });
        }
    }
    Ok(())
}

/// Matrix product for the rows of one sequence's prompt pass, in the order llama.cpp's x86
/// build computes them: like [`matmul`], with `pass_m` the number of activation rows of the
/// whole pass (`act` may hold a part of it, `m` rows from a multiple of four: the caller's
/// threading) and `w` the whole weight matrix, since both decide which kernel ggml runs:
/// - Q4_K with a row count that is a multiple of 8 is repacked by ggml; the first `m - m % 4`
///   rows of `act` (whole groups of four) take the float order of `ggml_gemm_q4_K_8x8_q8_K`
///   (one FMA per 64 elements), the `m % 4` left over that of its gemv, exactly [`matmul`].
/// - Q2_K likewise where ggml repacks it (x86 with AVX-512, a row count that is a multiple
///   of 8): `ggml_gemm_q2_K_8x8_q8_K`'s order (one FMA per 128 elements), then its gemv's.
/// - Q6_K, Q5_K, Q3_K, Q2_K, IQ4_XS and the grid i-quants in a pass of eight or more rows go
///   through ggml's tiled matmul: one FMA per 256-element block (`q6_k_q8_k_tiled`, …).
/// - Everything else is exactly [`matmul`].
///
/// The grouping makes a row's result depend on the batch it comes in: use [`matmul`] where
/// results must not depend on the batch (decode steps of several sequences together). Known
/// limit: ggml also tiles unrepacked Q4_K; that takes [`matmul`]'s order here.
#[allow(clippy::too_many_arguments)]
pub fn matmul_prompt(
    ty: QuantType,
    n: usize,
    w: &[u8],
    rows: Range<usize>,
    act: &[u8],
    m: usize,
    pass_m: usize,
    out: &mut [f32],
    out_stride: usize,
) -> Result<(), QuantError> {
    prompt(Impl::Best, ty, n, w, rows, act, m, pass_m, out, out_stride)
}

/// The scalar twin of [`matmul_prompt`]: the same float operations in the same order, no SIMD.
#[allow(clippy::too_many_arguments)]
pub fn matmul_prompt_scalar(
    ty: QuantType,
    n: usize,
    w: &[u8],
    rows: Range<usize>,
    act: &[u8],
    m: usize,
    pass_m: usize,
    out: &mut [f32],
    out_stride: usize,
) -> Result<(), QuantError> {
    prompt(
        Impl::Scalar,
        ty,
        n,
        w,
        rows,
        act,
        m,
        pass_m,
        out,
        out_stride,
    )
}

/// The smallest prompt pass ggml runs through its tiled K-quant matmul.
pub const TILED_MIN_ROWS: usize = 8;

/// [`matmul_prompt`] with a choice of implementation.
#[allow(clippy::too_many_arguments)]
fn prompt(
    imp: Impl,
    ty: QuantType,
    n: usize,
    w: &[u8],
    rows: Range<usize>,
    act: &[u8],
    m: usize,
    pass_m: usize,
    out: &mut [f32],
    out_stride: usize,
) -> Result<(), QuantError> {
    let g = geometry(ty, n)?;
    let best = imp == Impl::Best;
    let w_rows = w.len().checked_div(g.w_row).unwrap_or(0);
    match ty {
        QuantType::Q4_K if w_rows % 8 == 0 => {
            let grouped = Kernels::pick(
                best,
                dot::q4_k_q8_k_grouped,
                simd::q4_k_q8_k_grouped,
                simd::q4_k_q8_k_grouped_x4,
                simd::q4_k_q8_k_grouped_wide,
            );
            let single = Kernels::pick(
                best,
                dot::q4_k_q8_k,
                simd::q4_k_q8_k,
                simd::q4_k_q8_k_x4,
                simd::Wide::none,
            );
            run_grouped(ty, &g, w, rows, act, m, out, out_stride, grouped, single)
        }
        QuantType::Q2_K if ggml_repacks_q2_k(w_rows) => {
            let grouped = Kernels::pick(
                best,
                dot::q2_k_q8_k_repacked_grouped,
                simd::q2_k_q8_k_repacked_grouped,
                simd::q2_k_q8_k_repacked_grouped_x4,
                simd::Wide::none,
            );
            let single = Kernels::pick(
                best,
                dot::q2_k_q8_k_repacked,
                simd::q2_k_q8_k_repacked,
                simd::q2_k_q8_k_repacked_x4,
                simd::Wide::none,
            );
            run_grouped(ty, &g, w, rows, act, m, out, out_stride, grouped, single)
        }
        QuantType::Q2_K if pass_m.max(m) >= TILED_MIN_ROWS => {
            let k = Kernels::pick(
                best,
                dot::q2_k_q8_k_tiled,
                simd::q2_k_q8_k_tiled,
                simd::q2_k_q8_k_tiled_x4,
                simd::Wide::none,
            );
            run(ty, &g, w, rows, act, m, out, out_stride, k)
        }
        QuantType::Q6_K if pass_m.max(m) >= TILED_MIN_ROWS => {
            let k = Kernels::pick(
                best,
                dot::q6_k_q8_k_tiled,
                simd::q6_k_q8_k_tiled,
                simd::q6_k_q8_k_tiled_x4,
                simd::q6_k_q8_k_tiled_wide,
            );
            run(ty, &g, w, rows, act, m, out, out_stride, k)
        }
        QuantType::Q5_K if pass_m.max(m) >= TILED_MIN_ROWS => {
            let k = Kernels::pick(
                best,
                dot::q5_k_q8_k_tiled,
                simd::q5_k_q8_k_tiled,
                simd::q5_k_q8_k_tiled_x4,
                simd::Wide::none,
            );
            run(ty, &g, w, rows, act, m, out, out_stride, k)
        }
        QuantType::Q3_K if pass_m.max(m) >= TILED_MIN_ROWS => {
            let k = Kernels::pick(
                best,
                dot::q3_k_q8_k_tiled,
                simd::q3_k_q8_k_tiled,
                simd::q3_k_q8_k_tiled_x4,
                simd::Wide::none,
            );
            run(ty, &g, w, rows, act, m, out, out_stride, k)
        }
        QuantType::IQ3_XXS if pass_m.max(m) >= TILED_MIN_ROWS => {
            let k = Kernels::pick(
                best,
                dot::iq3_xxs_q8_k_tiled,
                simd::iq3_xxs_q8_k_tiled,
                simd::iq3_xxs_q8_k_tiled_x4,
                simd::Wide::none,
            );
            run(ty, &g, w, rows, act, m, out, out_stride, k)
        }
        QuantType::IQ2_XXS if pass_m.max(m) >= TILED_MIN_ROWS => {
            let k = Kernels::pick(
                best,
                dot::iq2_xxs_q8_k_tiled,
                simd::iq2_xxs_q8_k_tiled,
                simd::iq2_xxs_q8_k_tiled_x4,
                simd::Wide::none,
            );
            run(ty, &g, w, rows, act, m, out, out_stride, k)
        }
        QuantType::IQ1_M if pass_m.max(m) >= TILED_MIN_ROWS => {
            let k = Kernels::pick(
                best,
                dot::iq1_m_q8_k_tiled,
                simd::iq1_m_q8_k_tiled,
                simd::iq1_m_q8_k_tiled_x4,
                simd::Wide::none,
            );
            run(ty, &g, w, rows, act, m, out, out_stride, k)
        }
        QuantType::IQ1_S if pass_m.max(m) >= TILED_MIN_ROWS => {
            let k = Kernels::pick(
                best,
                dot::iq1_s_q8_k_tiled,
                simd::iq1_s_q8_k_tiled,
                simd::iq1_s_q8_k_tiled_x4,
                simd::Wide::none,
            );
            run(ty, &g, w, rows, act, m, out, out_stride, k)
        }
        QuantType::IQ2_XS if pass_m.max(m) >= TILED_MIN_ROWS => {
            let k = Kernels::pick(
                best,
                dot::iq2_xs_q8_k_tiled,
                simd::iq2_xs_q8_k_tiled,
                simd::iq2_xs_q8_k_tiled_x4,
                simd::Wide::none,
            );
            run(ty, &g, w, rows, act, m, out, out_stride, k)
        }
        QuantType::IQ2_S if pass_m.max(m) >= TILED_MIN_ROWS => {
            let k = Kernels::pick(
                best,
                dot::iq2_s_q8_k_tiled,
                simd::iq2_s_q8_k_tiled,
                simd::iq2_s_q8_k_tiled_x4,
                simd::Wide::none,
            );
            run(ty, &g, w, rows, act, m, out, out_stride, k)
        }
        QuantType::IQ3_S if pass_m.max(m) >= TILED_MIN_ROWS => {
            let k = Kernels::pick(
                best,
                dot::iq3_s_q8_k_tiled,
                simd::iq3_s_q8_k_tiled,
                simd::iq3_s_q8_k_tiled_x4,
                simd::Wide::none,
            );
            run(ty, &g, w, rows, act, m, out, out_stride, k)
        }
        QuantType::IQ4_XS if pass_m.max(m) >= TILED_MIN_ROWS => {
            let k = Kernels::pick(
                best,
                dot::iq4_xs_q8_k_tiled,
                simd::iq4_xs_q8_k_tiled,
                simd::iq4_xs_q8_k_tiled_x4,
                simd::Wide::none,
            )
            .with_whole(simd::iq4_xs_q8_k_tiled_whole());
            run(ty, &g, w, rows, act, m, out, out_stride, k)
        }
        _ => dispatch(imp, ty, n, w, rows, act, m, out, out_stride),
    }
}

/// Runs a repacked matrix's product in ggml's split: the first `m - m % 4` rows of `act`
/// (whole groups of four) through its gemm-order kernels `grouped_k`, the rest through its
/// gemv-order ones `single_k`.
#[allow(clippy::too_many_arguments)]
fn run_grouped<W: Pod, A: Pod>(
    ty: QuantType,
    g: &Geometry,
    w: &[u8],
    rows: Range<usize>,
    act: &[u8],
    m: usize,
    out: &mut [f32],
    out_stride: usize,
    grouped_k: Kernels<W, A>,
    single_k: Kernels<W, A>,
) -> Result<(), QuantError> {
    let grouped = m - m % 4;
    let wrong_len = || QuantError::WrongLength {
        what: "act",
        expected: m.saturating_mul(g.a_row),
        actual: act.len(),
    };
    if m.checked_mul(g.a_row) != Some(act.len()) {
        return Err(wrong_len());
    }
    let split = grouped.checked_mul(g.a_row).ok_or_else(wrong_len)?;
    let (a0, a1) = act.split_at_checked(split).ok_or_else(wrong_len)?;
    let o_split = grouped.saturating_mul(out_stride).min(out.len());
    let (o0, o1) = out.split_at_mut(o_split);
    if grouped > 0 {
        run(
            ty,
            g,
            w,
            rows.clone(),
            a0,
            grouped,
            o0,
            out_stride,
            grouped_k,
        )?;
    }
    if m > grouped {
        run(ty, g, w, rows, a1, m - grouped, o1, out_stride, single_k)?;
    }
    Ok(())
}

/// Whether ggml repacks a Q2_K matrix of `w_rows` rows on this CPU (`q2_K_8x8_q8_K` in
/// ggml-cpu/repack.cpp: x86 with AVX-512, a row count that is a multiple of 8), which decides
/// the float order of its products.
fn ggml_repacks_q2_k(w_rows: usize) -> bool {
    w_rows.is_multiple_of(8) && simd::has_avx512f()
}

#[cfg(test)]
mod tests;
