//! Scalar dot products of a weight row with an activation row, the scalar twins of the SIMD
//! kernels. Q4_1, Q5_0, Q5_1, Q8_0, Q5_K, Q6_K and IQ4_XS follow the float order of
//! ggml's x86 AVX2 kernels (`ggml_vec_dot_*` in `ggml/src/ggml-cpu/arch/x86/quants.c`), Q4_0,
//! Q4_K, IQ4_NL and MXFP4 that of its repacked x86 kernels (`arch/x86/repack.cpp`), the `*_tiled` ones
//! that of its tiled matmul (`ggml-cpu/tiled`): what llama.cpp computes on x86.
//! The others follow ggml's reference kernels (`ggml_vec_dot_*_generic` in
//! `ggml/src/ggml-cpu/quants.c`, `ggml_vec_dot_f32/f16/bf16` in `vec.cpp`). Integer sums are
//! exact; float operations (with `mul_add` where ggml's compiled code fuses) come in ggml's order.

use half::{bf16, f16};

use crate::blocks::*;
use crate::dequant::{q3_k_scales, q6_quad, scale_min_k4};
use crate::types::QK;

pub(crate) fn f32s(x: &[f32], y: &[f32]) -> f32 {
    let mut sum = 0.0f64;
    for (a, b) in x.iter().zip(y) {
        sum += (a * b) as f64;
    }
    sum as f32
}

pub(crate) fn f16s(x: &[f16], y: &[f16]) -> f32 {
    let mut sum = 0.0f64;
    for (a, b) in x.iter().zip(y) {
        sum += (a.to_f32() * b.to_f32()) as f64;
    }
    sum as f32
}

pub(crate) fn bf16s(x: &[bf16], y: &[bf16]) -> f32 {
    let mut sum = 0.0f64;
    for (a, b) in x.iter().zip(y) {
        sum += (a.to_f32() * b.to_f32()) as f64;
    }
    sum as f32
}

/// ggml's `hsum_float_8` (arch/x86/quants.c): `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
#[inline(always)]
pub(crate) fn hsum8(a: &[f32; 8]) -> f32 {
    let s = [a[0] + a[4], a[1] + a[5], a[2] + a[6], a[3] + a[7]];
    (s[0] + s[2]) + (s[1] + s[3])
}

/// The eight i32 lanes ggml's x86 kernels (`mul_sum_i8_pairs_float`, `vpdpbusd`) sum a
/// 32-element block product into: lane `l` holds elements `4l..4l + 4`; `f(e)` is the product
/// at element `e`.
#[inline(always)]
fn block_lanes(f: impl Fn(usize) -> i32) -> [i32; 8] {
    core::array::from_fn(|l| (4 * l..4 * l + 4).map(&f).sum())
}

/// ggml's x86 legacy-format loop: per block `acc[l] = fma(d, lane[l], acc[l])` in eight lanes,
/// then [`hsum8`]; `f` gives a block pair's `d` and lanes.
#[inline(always)]
fn legacy_dot<X, Y>(x: &[X], y: &[Y], f: impl Fn(&X, &Y) -> (f32, [i32; 8])) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in x.iter().zip(y) {
        let (d, lanes) = f(x, y);
        for (a, l) in acc.iter_mut().zip(lanes) {
            *a = d.mul_add(l as f32, *a);
        }
    }
    hsum8(&acc)
}

/// Element `e < 32` of a 4-bit block: low nibbles are elements 0..16, high ones 16..32.
#[inline(always)]
fn nibble(qs: &[u8; QK / 2], e: usize) -> i32 {
    let b = qs.get(e % 16).copied().unwrap_or(0);
    i32::from(if e < 16 { b & 0x0F } else { b >> 4 })
}

/// Element `e < 32` of an int8 block.
#[inline(always)]
fn at(q: &[i8; QK], e: usize) -> i32 {
    i32::from(q.get(e).copied().unwrap_or(0))
}

/// Element `e < 32` of a Q5 block (0..32, before the offset).
#[inline(always)]
fn q5_at(qs: &[u8; QK / 2], qh: [u8; 4], e: usize) -> i32 {
    let h = (u32::from_le_bytes(qh) >> e) & 1;
    nibble(qs, e) | (h as i32) << 4
}

/// Q4_0 · Q8_0 in the order of ggml's x86 repacked kernels (`ggml_gemv_q4_0_8x8_q8_0` and
/// `ggml_gemm_q4_0_8x8_q8_0`), which llama.cpp runs on AVX2 CPUs for every Q4_0 matrix whose
/// row count is a multiple of 8: as [`iq4_nl_q8_0`], with the values `q - 8`.
pub(crate) fn q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    nl4_q8_0(x, y)
}

/// `ggml_vec_dot_q4_1_q8_1`, AVX2 path: eight lanes of `fma(d_x d_y, lane, acc)`, the min
/// terms in one scalar sum `fma(m_x, s_y, summs)` (GCC contracts it), `hsum8(acc) + summs`.
pub(crate) fn q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut summs = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        summs = x.m.to_f32().mul_add(y.s.to_f32(), summs);
        let d = x.d.to_f32() * y.d.to_f32();
        let lanes = block_lanes(|e| nibble(&x.qs, e) * at(&y.qs, e));
        for (a, l) in acc.iter_mut().zip(lanes) {
            *a = d.mul_add(l as f32, *a);
        }
    }
    hsum8(&acc) + summs
}

/// `ggml_vec_dot_q5_0_q8_0`, AVX2 path: eight lanes, one FMA per block, [`hsum8`].
pub(crate) fn q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    legacy_dot(x, y, |x, y| {
        let d = x.d.to_f32() * y.d.to_f32();
        (
            d,
            block_lanes(|e| (q5_at(&x.qs, x.qh, e) - 16) * at(&y.qs, e)),
        )
    })
}

/// `ggml_vec_dot_q5_1_q8_1`, AVX2 path (as [`q4_1_q8_1`], with the fifth bits).
pub(crate) fn q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut summs = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        summs = x.m.to_f32().mul_add(y.s.to_f32(), summs);
        let d = x.d.to_f32() * y.d.to_f32();
        let lanes = block_lanes(|e| q5_at(&x.qs, x.qh, e) * at(&y.qs, e));
        for (a, l) in acc.iter_mut().zip(lanes) {
            *a = d.mul_add(l as f32, *a);
        }
    }
    hsum8(&acc) + summs
}

/// `ggml_vec_dot_q8_0_q8_0`, AVX2 path (as [`q5_0_q8_0`]); llamafile's tinyBLAS, which
/// llama.cpp runs for batches, sums each output in the same order.
pub(crate) fn q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    legacy_dot(x, y, |x, y| {
        let d = x.d.to_f32() * y.d.to_f32();
        (d, block_lanes(|e| at(&x.qs, e) * at(&y.qs, e)))
    })
}

/// `ggml_vec_dot_q2_K_q8_K`, AVX2 path (llama.cpp's order on CPUs without AVX-512, where it
/// does not repack Q2_K): per super-block `acc[l] = fma(-d_y dmin_x, m[l], acc[l])` with `m[l]`
/// the mins times `bsums` of sub-blocks `2l` and `2l + 1`, then `acc[l] = fma(d_y d_x, s[l],
/// acc[l])` with `s[l]` elements `4l..4l + 4` of every 32-element chunk times its 16-element
/// sub-block's scale; then [`hsum8`].
pub(crate) fn q2_k_q8_k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in x.iter().zip(y) {
        let d = y.d * x.d.to_f32();
        let dmin = -y.d * x.dmin.to_f32();
        let mins: [i32; 8] = core::array::from_fn(|l| {
            (2 * l..2 * l + 2)
                .map(|k| i32::from(x.scales[k] >> 4) * i32::from(y.bsums[k]))
                .sum()
        });
        for (a, m) in acc.iter_mut().zip(mins) {
            *a = dmin.mul_add(m as f32, *a);
        }
        let mut lanes = [0i32; 8];
        let mut q8 = y.qs.chunks_exact(32);
        for (j, q2) in x.qs.chunks_exact(32).enumerate() {
            for (k, shift) in [0u32, 2, 4, 6].into_iter().enumerate() {
                let a = q8.next().unwrap_or(&[0; 32]);
                let part = block_lanes(|e| i32::from((q2[e] >> shift) & 3) * i32::from(a[e]));
                for (l, (lane, p)) in lanes.iter_mut().zip(part).enumerate() {
                    let sc = i32::from(x.scales[j * 8 + k * 2 + l / 4] & 0xF);
                    *lane += sc * p;
                }
            }
        }
        for (a, l) in acc.iter_mut().zip(lanes) {
            *a = d.mul_add(l as f32, *a);
        }
    }
    hsum8(&acc)
}

/// Per 16-element sub-block of a Q2_K block times Q8_K: the exact integers
/// `scale_j * sum q y` and `min_j * bsums[j]`.
fn q2_k_sub_sums(x: &BlockQ2K, y: &BlockQ8K) -> ([i32; 16], [i32; 16]) {
    let mut dots = [0i32; 16];
    for (half, (q2, q8)) in
        x.qs.chunks_exact(32)
            .zip(y.qs.chunks_exact(128))
            .enumerate()
    {
        for (k, (shift, a)) in [0u32, 2, 4, 6]
            .into_iter()
            .zip(q8.chunks_exact(32))
            .enumerate()
        {
            for (e, (q, v)) in q2.iter().zip(a).enumerate() {
                if let Some(d) = dots.get_mut(half * 8 + k * 2 + e / 16) {
                    *d += i32::from((q >> shift) & 3) * i32::from(*v);
                }
            }
        }
    }
    let mut mins = [0i32; 16];
    for ((d, m), (sc, bs)) in dots
        .iter_mut()
        .zip(&mut mins)
        .zip(x.scales.iter().zip(&y.bsums))
    {
        *d *= i32::from(sc & 0xF);
        *m = i32::from(sc >> 4) * i32::from(*bs);
    }
    (dots, mins)
}

/// Q2_K · Q8_K in the order of ggml's x86 `ggml_gemv_q2_K_8x8_q8_K` (arch/x86/repack.cpp),
/// which llama.cpp runs on AVX-512 CPUs for every Q2_K matrix whose row count is a multiple
/// of 8: per block the exact integers `isum = sum_j scale_j sum q y` and
/// `imin = sum_j min_j bsums[j]`, then `acc = fma(isum, d_x d_y, acc)`,
/// `accm = fma(imin, dmin_x d_y, accm)`; `acc - accm`.
pub(crate) fn q2_k_q8_k_repacked(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let (mut acc, mut accm) = (0.0f32, 0.0f32);
    for (x, y) in x.iter().zip(y) {
        let (dots, mins) = q2_k_sub_sums(x, y);
        let isum: i32 = dots.iter().sum();
        let imin: i32 = mins.iter().sum();
        acc = (isum as f32).mul_add(x.d.to_f32() * y.d, acc);
        accm = (imin as f32).mul_add(x.dmin.to_f32() * y.d, accm);
    }
    acc - accm
}

/// Q2_K · Q8_K in the order of ggml's x86 `ggml_gemm_q2_K_8x8_q8_K`, which llama.cpp runs for
/// the activation rows of a prompt pass that come in whole groups of four: like
/// [`q2_k_q8_k_repacked`] with one FMA pair per 128-element half block (sub-blocks
/// `8h..8h + 8`) instead of per block.
pub(crate) fn q2_k_q8_k_repacked_grouped(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let (mut acc, mut accm) = (0.0f32, 0.0f32);
    for (x, y) in x.iter().zip(y) {
        let (dots, mins) = q2_k_sub_sums(x, y);
        let (d, dmin) = (x.d.to_f32() * y.d, x.dmin.to_f32() * y.d);
        for (ds, ms) in dots.chunks_exact(8).zip(mins.chunks_exact(8)) {
            acc = (ds.iter().sum::<i32>() as f32).mul_add(d, acc);
            accm = (ms.iter().sum::<i32>() as f32).mul_add(dmin, accm);
        }
    }
    acc - accm
}

/// Q2_K · Q8_K in the order of ggml's tiled K-quant matmul (see [`q6_k_q8_k_tiled`]), which
/// llama.cpp runs for prompt passes of eight or more rows over the Q2_K matrices it does not
/// repack: per block `s1 = sum_j scale_j sum q y`, `s2 = sum_j min_j bsums[j]`,
/// `r = fma(-dmin_x, s2, s1 d_x)`, then `acc = fma(r, d_y, acc)`.
pub(crate) fn q2_k_q8_k_tiled(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let (dots, mins) = q2_k_sub_sums(x, y);
        let (s1, s2): (i32, i32) = (dots.iter().sum(), mins.iter().sum());
        let r = (-x.dmin.to_f32()).mul_add(s2 as f32, s1 as f32 * x.d.to_f32());
        acc = r.mul_add(y.d, acc);
    }
    acc
}

/// The 256 values of a Q3_K block, `-4..=3`: two low bits from `qs`, minus 4 where the
/// `hmask` bit is clear.
fn q3_values(x: &BlockQ3K) -> [i8; 256] {
    let mut aux8 = [0i8; 256];
    let mut a = aux8.chunks_exact_mut(32);
    let mut m = 1u8;
    for q3 in x.qs.chunks_exact(32) {
        for shift in [0u32, 2, 4, 6] {
            if let Some(a) = a.next() {
                for ((a, q), h) in a.iter_mut().zip(q3).zip(&x.hmask) {
                    *a = ((q >> shift) & 3) as i8 - if h & m != 0 { 0 } else { 4 };
                }
            }
            m = m.wrapping_shl(1);
        }
    }
    aux8
}

/// `ggml_vec_dot_q3_K_q8_K`, AVX2 path: per super-block eight i32 lanes (lane `l` holds
/// elements `4l..4l + 4` of every 32-element chunk times its 16-element sub-block's scale), one
/// `fma(d_y d_x, lane, acc)` per lane, then [`hsum8`].
pub(crate) fn q3_k_q8_k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in x.iter().zip(y) {
        let aux8 = q3_values(x);
        let scales = q3_k_scales(&x.scales);
        let mut lanes = [0i32; 8];
        for (c, (a, q8)) in aux8.chunks_exact(32).zip(y.qs.chunks_exact(32)).enumerate() {
            let part = block_lanes(|e| i32::from(a[e]) * i32::from(q8[e]));
            for (l, (lane, p)) in lanes.iter_mut().zip(part).enumerate() {
                let sc = scales.get(2 * c + l / 4).map_or(0, |&s| i32::from(s) - 32);
                *lane += sc * p;
            }
        }
        let d = y.d * x.d.to_f32();
        for (a, l) in acc.iter_mut().zip(lanes) {
            *a = d.mul_add(l as f32, *a);
        }
    }
    hsum8(&acc)
}

/// Sum of `bsums * mins` for the Q4_K/Q5_K min correction, and the 8 sub-block scales.
#[inline(always)]
pub(crate) fn k4_scales_mins(packed: &[u8; 12], bsums: &[i16; 16]) -> ([u8; 8], i32) {
    let mut scales = [0u8; 8];
    let mut summs = 0i32;
    for (j, (sc, bs)) in scales.iter_mut().zip(bsums.chunks_exact(2)).enumerate() {
        let (s, m) = scale_min_k4(j, packed);
        *sc = s;
        summs += bs.iter().map(|b| *b as i32 * m as i32).sum::<i32>();
    }
    (scales, summs)
}

/// Q4_K · Q8_K in the order of ggml's x86 repacked kernels (`ggml_gemv_q4_K_8x8_q8_K` and
/// `ggml_gemm_q4_K_8x8_q8_K` in ggml/src/ggml-cpu/arch/x86/repack.cpp), which llama.cpp runs
/// on AVX2 CPUs for every Q4_K matrix whose row count is a multiple of 8: per block the exact
/// integer sums `isum = sum_j scale_j sum q y` and `imin = sum_j min_j (bsums[2j] + bsums[2j+1])`,
/// then `acc = fma(isum, d_x d_y, acc)`, `accm = fma(imin, dmin_x d_y, accm)`; `acc - accm`.
pub(crate) fn q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let (mut acc, mut accm) = (0.0f32, 0.0f32);
    for (x, y) in x.iter().zip(y) {
        let (scales, imin) = k4_scales_mins(&x.scales, &y.bsums);
        let mut isum = 0i32;
        for ((q4, sc), q8) in
            x.qs.chunks_exact(32)
                .zip(scales.chunks_exact(2))
                .zip(y.qs.chunks_exact(64))
        {
            let (ylo, yhi) = q8.split_at(32);
            let (mut lo, mut hi) = (0i32, 0i32);
            for ((q, a), b) in q4.iter().zip(ylo).zip(yhi) {
                lo += i32::from(q & 0x0F) * i32::from(*a);
                hi += i32::from(q >> 4) * i32::from(*b);
            }
            if let [s0, s1] = sc {
                isum += i32::from(*s0) * lo + i32::from(*s1) * hi;
            }
        }
        acc = (isum as f32).mul_add(x.d.to_f32() * y.d, acc);
        accm = (imin as f32).mul_add(x.dmin.to_f32() * y.d, accm);
    }
    acc - accm
}

/// Q4_K · Q8_K in the order of ggml's x86 `ggml_gemm_q4_K_8x8_q8_K` (ggml/src/ggml-cpu/arch/x86/
/// repack.cpp, llama.cpp 0c1e570), which llama.cpp runs for the activation rows of a prompt
/// pass that come in whole groups of four: per pair of sub-blocks `p` (64 elements) the exact
/// integer sums `isum_p = scale_2p sum q y + scale_2p+1 sum q y` and
/// `imin_p = min_2p (bsums[4p] + bsums[4p+1]) + min_2p+1 (bsums[4p+2] + bsums[4p+3])`, then
/// `acc = fma(isum_p, d_x d_y, acc)`, `accm = fma(imin_p, dmin_x d_y, accm)`; `acc - accm`.
pub(crate) fn q4_k_q8_k_grouped(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let (mut acc, mut accm) = (0.0f32, 0.0f32);
    for (x, y) in x.iter().zip(y) {
        let (d, dmin) = (x.d.to_f32() * y.d, x.dmin.to_f32() * y.d);
        for (p, ((q4, q8), bs)) in
            x.qs.chunks_exact(32)
                .zip(y.qs.chunks_exact(64))
                .zip(y.bsums.chunks_exact(4))
                .enumerate()
        {
            let (s0, m0) = scale_min_k4(2 * p, &x.scales);
            let (s1, m1) = scale_min_k4(2 * p + 1, &x.scales);
            let (ylo, yhi) = q8.split_at(32);
            let (mut lo, mut hi) = (0i32, 0i32);
            for ((q, a), b) in q4.iter().zip(ylo).zip(yhi) {
                lo += i32::from(q & 0x0F) * i32::from(*a);
                hi += i32::from(q >> 4) * i32::from(*b);
            }
            let isum = i32::from(s0) * lo + i32::from(s1) * hi;
            let (b0, b1) = bs.split_at(2);
            let pair = |b: &[i16]| b.iter().map(|v| i32::from(*v)).sum::<i32>();
            let imin = i32::from(m0) * pair(b0) + i32::from(m1) * pair(b1);
            acc = (isum as f32).mul_add(d, acc);
            accm = (imin as f32).mul_add(dmin, accm);
        }
    }
    acc - accm
}

/// The 256 values (0..32) of a Q5_K block, in element order.
fn q5k_values(x: &BlockQ5K) -> [i32; 256] {
    let mut v = [0i32; 256];
    for (is, (q4, a)) in
        x.qs.chunks_exact(32)
            .zip(v.chunks_exact_mut(64))
            .enumerate()
    {
        let (m1, m2) = (1u8 << (2 * is), 2u8 << (2 * is));
        let (lo, hi) = a.split_at_mut(32);
        for (((q, h), l), hh) in q4.iter().zip(&x.qh).zip(lo).zip(hi) {
            *l = i32::from(q & 0xF) + if h & m1 != 0 { 16 } else { 0 };
            *hh = i32::from(q >> 4) + if h & m2 != 0 { 16 } else { 0 };
        }
    }
    v
}

/// `ggml_vec_dot_q5_K_q8_K`, AVX2 path: per super-block eight i32 lanes (lane `l` holds
/// elements `4l..4l + 4` of every 32-element sub-block, times its scale),
/// `acc = fma(d_y d_x, lane, acc)`; the mins in one scalar sum `fma(-d_y dmin_x, imin, summs)`
/// (GCC contracts it); `hsum8(acc) + summs`.
pub(crate) fn q5_k_q8_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut summs = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let d = y.d * x.d.to_f32();
        let dmin = -y.d * x.dmin.to_f32();
        let (scales, imin) = k4_scales_mins(&x.scales, &y.bsums);
        summs = dmin.mul_add(imin as f32, summs);
        let v = q5k_values(x);
        let mut lanes = [0i32; 8];
        for ((q, q8), sc) in v.chunks_exact(32).zip(y.qs.chunks_exact(32)).zip(scales) {
            let part = block_lanes(|e| q[e] * i32::from(q8[e]));
            for (l, p) in lanes.iter_mut().zip(part) {
                *l += i32::from(sc) * p;
            }
        }
        for (a, l) in acc.iter_mut().zip(lanes) {
            *a = d.mul_add(l as f32, *a);
        }
    }
    hsum8(&acc) + summs
}

/// Q5_K · Q8_K in the order of ggml's tiled K-quant matmul (see [`q6_k_q8_k_tiled`]): per
/// block the exact integers `s1 = sum_j scale_j sum q y` and
/// `s2 = sum_j min_j (bsums[2j] + bsums[2j+1])`, `r = fma(-dmin_x, s2, s1 d_x)`, then
/// `acc = fma(r, d_y, acc)`.
pub(crate) fn q5_k_q8_k_tiled(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let (scales, imin) = k4_scales_mins(&x.scales, &y.bsums);
        let v = q5k_values(x);
        let s1: i32 = v
            .chunks_exact(32)
            .zip(y.qs.chunks_exact(32))
            .zip(scales)
            .map(|((q, q8), sc)| {
                i32::from(sc)
                    * q.iter()
                        .zip(q8)
                        .map(|(a, b)| a * i32::from(*b))
                        .sum::<i32>()
            })
            .sum();
        let r = (-x.dmin.to_f32()).mul_add(imin as f32, s1 as f32 * x.d.to_f32());
        acc = r.mul_add(y.d, acc);
    }
    acc
}

/// The 256 signed values (`q - 32`) of a Q6_K block, in element order.
fn q6_values(x: &BlockQ6K) -> [i32; 256] {
    let mut q = [0i32; 256];
    for ((ql, qh), a) in
        x.ql.chunks_exact(64)
            .zip(x.qh.chunks_exact(32))
            .zip(q.chunks_exact_mut(128))
    {
        for (l, h) in qh.iter().enumerate() {
            for (k, v) in q6_quad(ql, *h, l).iter().enumerate() {
                if let Some(o) = a.get_mut(l + 32 * k) {
                    *o = *v;
                }
            }
        }
    }
    q
}

/// `ggml_vec_dot_q6_K_q8_K`, AVX2 path: lane `l` of a block sums `scale * q * y` (q unsigned,
/// 0..64) over bytes `4l..4l + 4` of each of the eight 32-element vectors, minus
/// `32 * (bsums[2l] scale[2l] + bsums[2l+1] scale[2l+1])`; `acc[l] = fma(d, lane, acc[l])`,
/// then [`hsum8`].
pub(crate) fn q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in x.iter().zip(y) {
        let q = q6_values(x).map(|v| v + 32);
        let sc = |g: usize| i32::from(x.scales.get(g).copied().unwrap_or(0));
        let bs = |g: usize| i32::from(y.bsums.get(g).copied().unwrap_or(0));
        let mut lanes = [0i32; 8];
        for (e, (qe, ye)) in q.iter().zip(&y.qs).enumerate() {
            if let Some(l) = lanes.get_mut((e % 32) / 4) {
                *l += sc(e / 16) * (qe * i32::from(*ye));
            }
        }
        for (l, v) in lanes.iter_mut().enumerate() {
            *v -= (bs(2 * l) * sc(2 * l) + bs(2 * l + 1) * sc(2 * l + 1)) << 5;
        }
        let d = y.d * x.d.to_f32();
        for (a, l) in acc.iter_mut().zip(lanes) {
            *a = d.mul_add(l as f32, *a);
        }
    }
    hsum8(&acc)
}

/// Q6_K · Q8_K in the order of ggml's tiled K-quant matmul (`ggml-cpu/tiled`, llama.cpp
/// 0c1e570), which llama.cpp runs for matrix products of eight or more activation rows on
/// weights it does not repack: per block the exact integer
/// `s = sum_g scale_g sum_{e in g} (q_e - 32) y_e` over the sixteen groups of 16, then
/// `acc = fma(f32(s) d_x, d_y, acc)` (its `buf += result * d1` contracted to one FMA).
pub(crate) fn q6_k_q8_k_tiled(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let q = q6_values(x);
        let s: i32 = q
            .chunks_exact(16)
            .zip(y.qs.chunks_exact(16))
            .zip(&x.scales)
            .map(|((qg, yg), sc)| {
                let g: i32 = qg.iter().zip(yg).map(|(a, b)| a * i32::from(*b)).sum();
                i32::from(*sc) * g
            })
            .sum();
        acc = (s as f32 * x.d.to_f32()).mul_add(y.d, acc);
    }
    acc
}

/// Q3_K · Q8_K in the order of ggml's tiled matmul (see [`q6_k_q8_k_tiled`]): per block the
/// exact `s = sum_g (scale_g - 32) sum_{e in g} q_e y_e` (`q_e` in `-4..=3`), then
/// `acc = fma(f32(s) d_x, d_y, acc)`.
pub(crate) fn q3_k_q8_k_tiled(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let q = q3_values(x);
        let scales = q3_k_scales(&x.scales);
        let s: i32 = q
            .chunks_exact(16)
            .zip(y.qs.chunks_exact(16))
            .zip(&scales)
            .map(|((qg, yg), sc)| {
                let g: i32 = qg
                    .iter()
                    .zip(yg)
                    .map(|(a, b)| i32::from(*a) * i32::from(*b))
                    .sum();
                (i32::from(*sc) - 32) * g
            })
            .sum();
        acc = (s as f32 * x.d.to_f32()).mul_add(y.d, acc);
    }
    acc
}

/// IQ4_XS · Q8_K in the order of ggml's tiled matmul (see [`q6_k_q8_k_tiled`]): per block the
/// exact `s = sum_ib (scale_ib - 32) sum q y`, then `acc = fma(f32(s) d_x, d_y, acc)`.
pub(crate) fn iq4_xs_q8_k_tiled(x: &[BlockIq4Xs], y: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut s = 0i32;
        for (ib, (qs, q8)) in x.qs.chunks_exact(16).zip(y.qs.chunks_exact(32)).enumerate() {
            let g: i32 = (0..32)
                .map(|e| iq4_at(qs, e) * i32::from(q8.get(e).copied().unwrap_or(0)))
                .sum();
            s += (x.scale(ib) - 32) * g;
        }
        acc = (s as f32 * x.d.to_f32()).mul_add(y.d, acc);
    }
    acc
}

/// IQ4 table value of element `e < 32` of a block of nibbles (ordered as Q4_0's).
#[inline(always)]
fn iq4_at(qs: &[u8], e: usize) -> i32 {
    table_at(&KVALUES_IQ4NL, qs, e)
}

/// `table[nibble e]` of a block of nibbles (element `e < 32`, ordered as Q4_0's).
#[inline(always)]
fn table_at(table: &[i8; 16], qs: &[u8], e: usize) -> i32 {
    let b = qs.get(e % 16).copied().unwrap_or(0);
    let q = if e < 16 { b & 0x0F } else { b >> 4 };
    i32::from(table[usize::from(q)])
}

/// A table-nibble block ([`Nl4Block`]) · Q8_0 in the order of ggml's x86 repacked kernels
/// (`gemv/gemm_q4_b32_8x8_q8_0_lut_avx` in ggml/src/ggml-cpu/arch/x86/repack.cpp): per block
/// the exact integer sum, then `acc = fma(isum, d_x d_y, acc)`.
pub(crate) fn nl4_q8_0<B: Nl4Block>(x: &[B], y: &[BlockQ8_0]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let isum: i32 = (0..QK)
            .map(|e| table_at(&B::TABLE, x.qs(), e) * at(&y.qs, e))
            .sum();
        acc = (isum as f32).mul_add(x.d().to_f32() * y.d.to_f32(), acc);
    }
    acc
}

/// IQ4_NL · Q8_0 in the order of ggml's x86 repacked kernels (`ggml_gemv_iq4_nl_8x8_q8_0`
/// and `ggml_gemm_iq4_nl_8x8_q8_0`), which llama.cpp runs on AVX2 CPUs for every IQ4_NL
/// matrix whose row count is a multiple of 8 ([`nl4_q8_0`]).
pub(crate) fn iq4_nl_q8_0(x: &[BlockIq4Nl], y: &[BlockQ8_0]) -> f32 {
    nl4_q8_0(x, y)
}

/// `ggml_vec_dot_iq4_xs_q8_K`, AVX2 path: per super-block eight i32 lanes (lane `l` holds
/// elements `4l..4l + 4` of every 32-element sub-block, times the sub-block's scale), one
/// `fma(d_x d_y, lane, acc)` per lane, then [`hsum8`].
pub(crate) fn iq4_xs_q8_k(x: &[BlockIq4Xs], y: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in x.iter().zip(y) {
        let mut lanes = [0i32; 8];
        for (ib, (qs, q8)) in x.qs.chunks_exact(16).zip(y.qs.chunks_exact(32)).enumerate() {
            let ls = x.scale(ib) - 32;
            let part = block_lanes(|e| iq4_at(qs, e) * i32::from(q8.get(e).copied().unwrap_or(0)));
            for (l, p) in lanes.iter_mut().zip(part) {
                *l += ls * p;
            }
        }
        let d = x.d.to_f32() * y.d;
        for (a, l) in acc.iter_mut().zip(lanes) {
            *a = d.mul_add(l as f32, *a);
        }
    }
    hsum8(&acc)
}

/// MXFP4 · Q8_0 in the order of ggml's x86 repacked kernels (`ggml_gemv_mxfp4_8x8_q8_0`,
/// `gemv/gemm_q4_b32_8x8_q8_0_lut_avx`), which llama.cpp runs on AVX2 CPUs for every MXFP4
/// matrix whose row count is a multiple of 8: per block the exact integer sum, then
/// `acc = fma(isum, e8m0_half(e_x) d_y, acc)`.
pub(crate) fn mxfp4_q8_0(x: &[BlockMxfp4], y: &[BlockQ8_0]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let isum: i32 = (0..QK)
            .map(|e| {
                let b = x.qs[e % 16];
                let q = if e < 16 { b & 0x0F } else { b >> 4 };
                i32::from(KVALUES_MXFP4[usize::from(q)]) * at(&y.qs, e)
            })
            .sum();
        acc = (isum as f32).mul_add(e8m0_half(x.e) * y.d.to_f32(), acc);
    }
    acc
}

/// `ggml_vec_dot_tq1_0_q8_K` / `ggml_vec_dot_tq2_0_q8_K`, AVX2 path: per super-block eight
/// i32 lanes, lane `l` the sum of `code · y` over elements `e` with `e % 32` in `4l..4l + 4`
/// (codes 0, 1, 2: the value plus one) minus the activations' sums `bsums[2l] + bsums[2l + 1]`
/// (elements `32l..32l + 32`), then `acc[l] = fma(f32(lane), d_y d_x, acc[l])` and [`hsum8`].
/// The lanes differ from the per-element products but their total is exact.
#[inline(always)]
fn ternary_dot<X>(
    x: &[X],
    y: &[BlockQ8K],
    d: impl Fn(&X) -> f32,
    code: impl Fn(&X, usize) -> u8,
) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in x.iter().zip(y) {
        let mut lanes = [0i32; 8];
        for c in 0..8 {
            let part = block_lanes(|b| {
                i32::from(code(x, 32 * c + b))
                    * i32::from(y.qs.get(32 * c + b).copied().unwrap_or(0))
            });
            for (l, p) in lanes.iter_mut().zip(part) {
                *l += p;
            }
        }
        for (l, lane) in lanes.iter_mut().enumerate() {
            *lane -= i32::from(y.bsums[2 * l]) + i32::from(y.bsums[2 * l + 1]);
        }
        let dd = y.d * d(x);
        for (a, l) in acc.iter_mut().zip(lanes) {
            *a = (l as f32).mul_add(dd, *a);
        }
    }
    hsum8(&acc)
}

/// TQ1_0 · Q8_K ([`ternary_dot`]).
pub(crate) fn tq1_0_q8_k(x: &[BlockTq1_0], y: &[BlockQ8K]) -> f32 {
    ternary_dot(x, y, |x| x.d.to_f32(), BlockTq1_0::at)
}

/// TQ2_0 · Q8_K ([`ternary_dot`]).
pub(crate) fn tq2_0_q8_k(x: &[BlockTq2_0], y: &[BlockQ8K]) -> f32 {
    ternary_dot(x, y, |x| x.d.to_f32(), BlockTq2_0::at)
}

/// Element `e` of a 3-bit i-quant block times the activation byte: the magnitude times the
/// byte negated in 8 bits where the element is negative (as ggml's AVX2 kernels flip the
/// activations' signs, which leaves -128 as -128).
#[inline(always)]
fn iq3_signed_q8<X: GridBlock>(x: &X, y: &BlockQ8K, e: usize) -> i32 {
    let q = y.qs.get(e).copied().unwrap_or(0);
    let q = if x.negative(e) { q.wrapping_neg() } else { q };
    i32::from(x.magnitude(e)) * i32::from(q)
}

/// `ggml_vec_dot_iq3_xxs_q8_K` / `_iq3_s_` / `_iq2_xxs_` / `_iq2_xs_` / `_iq2_s_q8_K`, AVX2
/// paths: per super-block eight i32 lanes (lane `l` holds elements `4l..4l + 4` of every
/// 32-element sub-block, times the factor of its half), `acc[l] = fma(d_x d_y, lane, acc[l])`, then the type's scale (IQ3_XXS:
/// 1/4) times [`hsum8`].
pub(crate) fn iq3_q8_k<X: GridBlock>(x: &[X], y: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (x, y) in x.iter().zip(y) {
        let mut lanes = [0i32; 8];
        for ib in 0..8 {
            let part = block_lanes(|e| iq3_signed_q8(x, y, 32 * ib + e));
            for (l, (lane, p)) in lanes.iter_mut().zip(part).enumerate() {
                *lane += x.factor(ib, l / 4) * p;
            }
        }
        let d = x.d().to_f32() * y.d;
        for (a, l) in acc.iter_mut().zip(lanes) {
            *a = d.mul_add(l as f32, *a);
        }
    }
    X::SCALE * hsum8(&acc)
}

/// A 3-bit i-quant · Q8_K in the order of ggml's tiled matmul (`tiled_unpack_src0` for
/// `block_iq3_xxs` / `block_iq3_s`: signs on the weights, so no byte wraps): per block the exact
/// `s = sum_ib factor sum ±magnitude · y`, then `acc = fma(f32(s) (d_x scale), d_y, acc)`.
pub(crate) fn iq3_q8_k_tiled<X: GridBlock>(x: &[X], y: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut s = 0i32;
        for ib in 0..8 {
            for h in 0..2 {
                let g: i32 = (32 * ib + 16 * h..32 * ib + 16 * h + 16)
                    .map(|e| {
                        let w = i32::from(x.magnitude(e));
                        let w = if x.negative(e) { -w } else { w };
                        w * i32::from(y.qs.get(e).copied().unwrap_or(0))
                    })
                    .sum();
                s += x.factor(ib, h) * g;
            }
        }
        let d0 = x.d().to_f32() * X::SCALE;
        acc = (d0 * s as f32).mul_add(y.d, acc);
    }
    acc
}

/// IQ3_XXS · Q8_K ([`iq3_q8_k`]).
pub(crate) fn iq3_xxs_q8_k(x: &[BlockIq3Xxs], y: &[BlockQ8K]) -> f32 {
    iq3_q8_k(x, y)
}

/// IQ3_XXS · Q8_K in the tiled order ([`iq3_q8_k_tiled`]).
pub(crate) fn iq3_xxs_q8_k_tiled(x: &[BlockIq3Xxs], y: &[BlockQ8K]) -> f32 {
    iq3_q8_k_tiled(x, y)
}

/// IQ3_S · Q8_K ([`iq3_q8_k`]).
pub(crate) fn iq3_s_q8_k(x: &[BlockIq3S], y: &[BlockQ8K]) -> f32 {
    iq3_q8_k(x, y)
}

/// IQ3_S · Q8_K in the tiled order ([`iq3_q8_k_tiled`]).
pub(crate) fn iq3_s_q8_k_tiled(x: &[BlockIq3S], y: &[BlockQ8K]) -> f32 {
    iq3_q8_k_tiled(x, y)
}

/// IQ2_XXS · Q8_K ([`iq3_q8_k`]: ggml's `ggml_vec_dot_iq2_xxs_q8_K` has the same lanes, with
/// 1/8 for the scale).
pub(crate) fn iq2_xxs_q8_k(x: &[BlockIq2Xxs], y: &[BlockQ8K]) -> f32 {
    iq3_q8_k(x, y)
}

/// IQ2_XXS · Q8_K in the tiled order ([`iq3_q8_k_tiled`]).
pub(crate) fn iq2_xxs_q8_k_tiled(x: &[BlockIq2Xxs], y: &[BlockQ8K]) -> f32 {
    iq3_q8_k_tiled(x, y)
}

/// IQ2_XS · Q8_K ([`iq3_q8_k`]).
pub(crate) fn iq2_xs_q8_k(x: &[BlockIq2Xs], y: &[BlockQ8K]) -> f32 {
    iq3_q8_k(x, y)
}

/// IQ2_XS · Q8_K in the tiled order ([`iq3_q8_k_tiled`]).
pub(crate) fn iq2_xs_q8_k_tiled(x: &[BlockIq2Xs], y: &[BlockQ8K]) -> f32 {
    iq3_q8_k_tiled(x, y)
}

/// IQ2_S · Q8_K ([`iq3_q8_k`]).
pub(crate) fn iq2_s_q8_k(x: &[BlockIq2S], y: &[BlockQ8K]) -> f32 {
    iq3_q8_k(x, y)
}

/// IQ2_S · Q8_K in the tiled order ([`iq3_q8_k_tiled`]).
pub(crate) fn iq2_s_q8_k_tiled(x: &[BlockIq2S], y: &[BlockQ8K]) -> f32 {
    iq3_q8_k_tiled(x, y)
}

/// `ggml_vec_dot_iq1_s_q8_K`, AVX2 path: per super-block eight i32 lanes of `g · y` (lane `l`:
/// elements `4l..4l + 4` of each sub-block, times its factor; `y` negated in 8 bits where
/// `g = -1`, as `_mm256_sign_epi8`), `acc[l] = fma(d, lane, acc[l])`; and the shifts' exact sum
/// `s1 = sum_ib ±factor (bsums[2 ib] + bsums[2 ib + 1])` into `acc1 = fma(f32(s1), d, acc1)`;
/// then `hsum8(acc) + acc1 / 8`.
pub(crate) fn iq1_s_q8_k(x: &[BlockIq1S], y: &[BlockQ8K]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut acc1 = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut lanes = [0i32; 8];
        let mut s1 = 0i32;
        for ib in 0..8 {
            let f = x.factor(ib);
            let part = block_lanes(|e| {
                let q = y.qs.get(32 * ib + e).copied().unwrap_or(0);
                match x.value(32 * ib + e) {
                    0 => 0,
                    g if g < 0 => i32::from(q.wrapping_neg()),
                    _ => i32::from(q),
                }
            });
            for (l, p) in lanes.iter_mut().zip(part) {
                *l += f * p;
            }
            let bs = i32::from(y.bsums[2 * ib]) + i32::from(y.bsums[2 * ib + 1]);
            s1 += if x.shift_negative(ib) { -bs } else { bs } * f;
        }
        let d = y.d * x.d.to_f32();
        for (a, l) in acc.iter_mut().zip(lanes) {
            *a = d.mul_add(l as f32, *a);
        }
        acc1 = (s1 as f32).mul_add(d, acc1);
    }
    hsum8(&acc) + 0.125 * acc1
}

/// IQ1_S · Q8_K in the order of ggml's tiled matmul (`tiled_unpack_src0` for `block_iq1_s`:
/// codes `8 g ± 1`): per block the exact `s = sum_ib factor sum (8 g ± 1) y`, then
/// `acc = fma(f32(s) (d_x / 8), d_y, acc)`.
pub(crate) fn iq1_s_q8_k_tiled(x: &[BlockIq1S], y: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut s = 0i32;
        for ib in 0..8 {
            let delta = if x.shift_negative(ib) { -1 } else { 1 };
            let g: i32 = (32 * ib..32 * ib + 32)
                .map(|e| {
                    (8 * i32::from(x.value(e)) + delta)
                        * i32::from(y.qs.get(e).copied().unwrap_or(0))
                })
                .sum();
            s += x.factor(ib) * g;
        }
        let d0 = x.d.to_f32() * 0.125;
        acc = (d0 * s as f32).mul_add(y.d, acc);
    }
    acc
}

/// `ggml_vec_dot_iq1_m_q8_K`, AVX2 path: two sets of eight i32 lanes per super-block (lane
/// `l`: elements `4l..4l + 4` of each sub-block, times the factor of its half), the grid's
/// `g · y` and the shifts' `±y` (both with `y` negated in 8 bits, as `_mm256_sign_epi8`), one
/// FMA per lane and block into `acc1` and `acc2`, then `hsum8(acc1) + hsum8(acc2) / 8`.
pub(crate) fn iq1_m_q8_k(x: &[BlockIq1M], y: &[BlockQ8K]) -> f32 {
    let mut acc1 = [0.0f32; 8];
    let mut acc2 = [0.0f32; 8];
    for (x, y) in x.iter().zip(y) {
        let mut l1 = [0i32; 8];
        let mut l2 = [0i32; 8];
        for ib in 0..8 {
            let q = |e: usize| y.qs.get(32 * ib + e).copied().unwrap_or(0);
            let p1 = block_lanes(|e| match x.value(32 * ib + e) {
                0 => 0,
                g if g < 0 => i32::from(q(e).wrapping_neg()),
                _ => i32::from(q(e)),
            });
            let p2 = block_lanes(|e| {
                if x.shift_negative(32 * ib + e) {
                    i32::from(q(e).wrapping_neg())
                } else {
                    i32::from(q(e))
                }
            });
            for l in 0..8 {
                let f = x.factor(ib, l / 4);
                l1[l] += f * p1[l];
                l2[l] += f * p2[l];
            }
        }
        let d = y.d * x.d().to_f32();
        for l in 0..8 {
            acc1[l] = d.mul_add(l1[l] as f32, acc1[l]);
            acc2[l] = d.mul_add(l2[l] as f32, acc2[l]);
        }
    }
    hsum8(&acc1) + 0.125 * hsum8(&acc2)
}

/// IQ1_M · Q8_K in the order of ggml's tiled matmul (codes `8 g ± 1`, factors per 16): per
/// block the exact integer sum, then `acc = fma(f32(s) (d_x / 8), d_y, acc)`.
pub(crate) fn iq1_m_q8_k_tiled(x: &[BlockIq1M], y: &[BlockQ8K]) -> f32 {
    let mut acc = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut s = 0i32;
        for ib in 0..8 {
            for h in 0..2 {
                let g: i32 = (32 * ib + 16 * h..32 * ib + 16 * h + 16)
                    .map(|e| {
                        let delta = if x.shift_negative(e) { -1 } else { 1 };
                        (8 * i32::from(x.value(e)) + delta)
                            * i32::from(y.qs.get(e).copied().unwrap_or(0))
                    })
                    .sum();
                s += x.factor(ib, h) * g;
            }
        }
        let d0 = x.d().to_f32() * 0.125;
        acc = (d0 * s as f32).mul_add(y.d, acc);
    }
    acc
}
