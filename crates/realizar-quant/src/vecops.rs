//! Float vector kernels for the layers around the matrix products: attention over an f16 KV
//! cache and ggml's `exp`/SiLU. Each follows the float order of the llama.cpp x86 code it
//! reproduces, has a SIMD version picked at run time (AVX2 + FMA + F16C) and a scalar twin
//! (`*_scalar`) that gives bit-identical results (fused multiply-adds are exact roundings, so
//! lanes can be computed in any grouping as long as each lane's sequence is the same).

use half::f16;

use crate::simd;

/// `acc[i % L] = fma(x[i], y[i], acc[i % L])` for `i < min(x.len(), y.len())` in order, with
/// `L = acc.len()`: the per-lane accumulation of an f16 dot product kernel (ggml's
/// `ggml_vec_dot_f16` with `L = 64`, llamafile's tinyBLAS with `L = 16`). The caller folds
/// the lanes in its kernel's order.
pub fn f16_fma_lanes(x: &[f16], y: &[f16], acc: &mut [f32]) {
    simd::f16_fma_lanes(x, y, acc)
}

/// The scalar twin of [`f16_fma_lanes`].
pub fn f16_fma_lanes_scalar(x: &[f16], y: &[f16], acc: &mut [f32]) {
    let l = acc.len();
    if l == 0 {
        return;
    }
    for (i, (a, b)) in x.iter().zip(y).enumerate() {
        let s = &mut acc[i % l];
        *s = a.to_f32().mul_add(b.to_f32(), *s);
    }
}

/// `_mm512_reduce_add_ps` as GCC expands it: halves added 8 + 8, 4 + 4, then lanes
/// `(0 + 2) + (1 + 3)`.
#[inline]
pub fn reduce_add16(v: &[f32; 16]) -> f32 {
    let mut h = [0f32; 8];
    for (i, o) in h.iter_mut().enumerate() {
        *o = v[8 + i] + v[i];
    }
    let q = [h[4] + h[0], h[5] + h[1], h[6] + h[2], h[7] + h[3]];
    (q[0] + q[2]) + (q[1] + q[3])
}

/// The largest element of `x` (`NEG_INFINITY` for an empty row or one without numbers), as
/// a one-by-one `if v > max` scan finds it: NaN is never taken (of `-0.0` and `0.0` as the
/// maximum, either may come back). Sixteen lanes, so the loop vectorizes.
pub fn max_f32(x: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &v in lanes.iter().chain(chunks.remainder()) {
        if v > max {
            max = v;
        }
    }
    max
}

/// The sum ggml's softmax (`ggml_vec_soft_max_f32` on an AVX-512 build) forms over a row
/// whose first element is position `lo` of a row starting at position 0: each 16-position
/// group aligned at position 0 is reduced with [`reduce_add16`] (positions outside the row
/// are zeros) and added to an f64 sum in group order.
pub fn sum_groups16(x: &[f32], lo: usize) -> f64 {
    simd::sum_groups16(x, lo)
}

/// The scalar twin of [`sum_groups16`].
pub fn sum_groups16_scalar(x: &[f32], lo: usize) -> f64 {
    let mut sum = 0.0f64;
    let mut i = 0;
    while i < x.len() {
        // The group of absolute positions [g, g + 16) that holds position lo + i.
        let lane0 = (lo + i) % 16;
        let take = (16 - lane0).min(x.len() - i);
        let mut lanes = [0f32; 16];
        lanes[lane0..lane0 + take].copy_from_slice(&x[i..i + take]);
        sum += f64::from(reduce_add16(&lanes));
        i += take;
    }
    sum
}

/// An f16 dot product over whole steps of ggml's x86 kernels, accumulated and folded in their
/// order and returned in f64 as they return it: with `vecdot`, `ggml_vec_dot_f16`'s 64 lanes
/// (element `i` into lane `i % 64`, folded `(a[l] + a[32 + l]) + (a[16 + l] + a[48 + l])`),
/// else tinyBLAS's 16 lanes; then [`reduce_add16`]. Only the first
/// `min(x.len(), y.len())` rounded down to a multiple of the lane count are summed: the caller
/// handles any tail.
pub fn f16_dot_folded(x: &[f16], y: &[f16], vecdot: bool) -> f64 {
    simd::f16_dot_folded(x, y, vecdot)
}

/// The scalar twin of [`f16_dot_folded`].
pub fn f16_dot_folded_scalar(x: &[f16], y: &[f16], vecdot: bool) -> f64 {
    let lanes = f16_lanes(vecdot);
    let n = x.len().min(y.len());
    let whole = n - n % lanes;
    let mut acc = [0f32; 64];
    f16_fma_lanes_scalar(&x[..whole], &y[..whole], &mut acc[..lanes]);
    f64::from(f16_fold(vecdot, |l| acc[l]))
}

/// The accumulator lanes of ggml's f16 dot products: 64 for `ggml_vec_dot_f16` (`vecdot`), 16
/// for tinyBLAS.
fn f16_lanes(vecdot: bool) -> usize {
    if vecdot {
        64
    } else {
        16
    }
}

/// Lane accumulators `a(l)` folded into the dot product as the kernels fold them: with
/// `vecdot`, `(a[l] + a[32 + l]) + (a[16 + l] + a[48 + l])` for `l < 16`, then
/// [`reduce_add16`].
fn f16_fold(vecdot: bool, a: impl Fn(usize) -> f32) -> f32 {
    let v: [f32; 16] = core::array::from_fn(|l| {
        if vecdot {
            (a(l) + a(32 + l)) + (a(16 + l) + a(48 + l))
        } else {
            a(l)
        }
    });
    reduce_add16(&v)
}

/// `acc[d] = fma(p, v[d], acc[d])` for `d < min(v.len(), acc.len())`.
pub fn f16_axpy(p: f32, v: &[f16], acc: &mut [f32]) {
    simd::f16_axpy(p, v, acc)
}

/// The scalar twin of [`f16_axpy`].
pub fn f16_axpy_scalar(p: f32, v: &[f16], acc: &mut [f32]) {
    for (a, b) in acc.iter_mut().zip(v) {
        *a = p.mul_add(b.to_f32(), *a);
    }
}

/// All of a head's key dot products at once: `out[r] = f16_dot_folded(x, row r, vecdot)` for
/// each of `out.len()` rows of `x.len()` elements in `rows` (fewer if `rows` is shorter).
pub fn f16_dots_folded(x: &[f16], rows: &[f16], vecdot: bool, out: &mut [f32]) {
    simd::f16_dots_folded(x, rows, &[], vecdot, out)
}

/// [`f16_dots_folded`] that also prefetches `next`, rows the caller reads right after (an
/// attention head's value rows, `next[r x.len()..]` for key `r`), alongside the keys: a long
/// context's cache comes from memory, and read this way it arrives before it is needed. The
/// results are [`f16_dots_folded`]'s.
pub fn f16_dots_folded_then(x: &[f16], rows: &[f16], next: &[f16], vecdot: bool, out: &mut [f32]) {
    simd::f16_dots_folded(x, rows, next, vecdot, out)
}

/// The scalar twin of [`f16_dots_folded`].
pub fn f16_dots_folded_scalar(x: &[f16], rows: &[f16], vecdot: bool, out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(x.len().max(1))) {
        *o = f16_dot_folded_scalar(x, row, vecdot) as f32;
    }
}

/// The weighted sum of an attention head's value rows as ggml's f16 product of the
/// transposed values with the probabilities sums it: for each column `d < hd`, the dot
/// product over positions of `p` and column `d` of `v` (row `i` is position `first + i`;
/// `p` holds f32 values the caller has already rounded as it wants), position `P` in lane
/// `P % 64` with `vecdot` (else `P % 16`), each lane FMA'd in position order from zero, folded
/// and reduced as [`f16_dot_folded`] does. Positions before `first` are absent (no term).
pub fn f16_weighted_sum(
    p: &[f32],
    v: &[f16],
    hd: usize,
    first: usize,
    vecdot: bool,
    out: &mut [f32],
) {
    simd::f16_weighted_sum(p, v, hd, first, vecdot, out)
}

/// The scalar twin of [`f16_weighted_sum`].
pub fn f16_weighted_sum_scalar(
    p: &[f32],
    v: &[f16],
    hd: usize,
    first: usize,
    vecdot: bool,
    out: &mut [f32],
) {
    weighted_sum_with(f16_axpy_scalar, p, v, hd, first, vecdot, out)
}

/// [`f16_weighted_sum`] with the lanes accumulated by `axpy` (a twin of [`f16_axpy`]).
pub(crate) fn weighted_sum_with(
    axpy: fn(f32, &[f16], &mut [f32]),
    p: &[f32],
    v: &[f16],
    hd: usize,
    first: usize,
    vecdot: bool,
    out: &mut [f32],
) {
    if hd == 0 {
        return;
    }
    let lanes = f16_lanes(vecdot);
    let mut acc = vec![0f32; lanes * hd];
    for (i, (&pi, row)) in p.iter().zip(v.chunks_exact(hd)).enumerate() {
        let s = (first + i) % lanes;
        axpy(pi, row, &mut acc[s * hd..(s + 1) * hd]);
    }
    for (d, o) in out.iter_mut().enumerate().take(hd) {
        *o = f16_fold(vecdot, |l| acc[l * hd + d]);
    }
}

/// Rotates the first `n_dims` elements of one head `x` by a table `cache` of `(cos, sin)`
/// pairs, as ggml's `rotate_pairs` (ops.cpp) does when GCC contracts it with FMA:
/// `x0 c - x1 s` as `fma(x0, c, -(x1 s))`, `x0 s + x1 c` as `fma(x0, s, x1 c)`. Pairs are
/// adjacent elements, or with `neox` element `i` and `i + n_dims / 2`.
pub fn rope_rotate(x: &mut [f32], cache: &[f32], n_dims: usize, neox: bool) {
    simd::rope_rotate(x, cache, n_dims, neox)
}

/// The scalar twin of [`rope_rotate`].
#[inline]
pub fn rope_rotate_scalar(x: &mut [f32], cache: &[f32], n_dims: usize, neox: bool) {
    let half = n_dims / 2;
    if neox {
        if x.len() < n_dims {
            return;
        }
        let (lo, hi) = x.split_at_mut(half);
        for ((a, b), cs) in lo.iter_mut().zip(hi.iter_mut()).zip(cache.chunks_exact(2)) {
            let (x0, x1) = (*a, *b);
            *a = x0.mul_add(cs[0], -(x1 * cs[1]));
            *b = x0.mul_add(cs[1], x1 * cs[0]);
        }
    } else {
        for (pair, cs) in x.chunks_exact_mut(2).take(half).zip(cache.chunks_exact(2)) {
            let (x0, x1) = (pair[0], pair[1]);
            pair[0] = x0.mul_add(cs[0], -(x1 * cs[1]));
            pair[1] = x0.mul_add(cs[1], x1 * cs[0]);
        }
    }
}

pub(crate) const EXP_R: u32 = 0x4b40_0000; // 0x1.8p23
pub(crate) const EXP_LOG2E: u32 = 0x3fb8_aa3b; // 0x1.715476p+0
pub(crate) const EXP_LN2_HI: u32 = 0x3f31_7200; // 0x1.62e4p-1
pub(crate) const EXP_LN2_LO: u32 = 0x35bf_be8e; // 0x1.7f7d1cp-20
pub(crate) const EXP_P: [u32; 5] = [
    0x3f7f_fff6, // 0x1.ffffecp-1
    0x3eff_fedb, // 0x1.fffdb6p-2
    0x3e2a_af33, // 0x1.555e66p-3
    0x3d2b_9f17, // 0x1.573e2ep-5
    0x3c07_2010, // 0x1.0e4020p-7
];

/// `exp(x)` as ggml's AVX-512 `ggml_v_expf` computes it (ggml/src/ggml-cpu/vec.h, the
/// `__AVX512F__ && __AVX512DQ__` variant llama.cpp's x86 build runs): `x = n ln 2 + b` with `n`
/// rounded through `0x1.8p23`, a degree-5 polynomial in `b` evaluated with fused multiply-adds,
/// then `scalef` by `2^n`; 0 or infinity beyond `|n| > 192`. One lane, bit for bit.
#[inline]
pub fn expf_ggml(x: f32) -> f32 {
    let c = f32::from_bits;
    let r = c(EXP_R);
    let z = x.mul_add(c(EXP_LOG2E), r);
    let n = z - r;
    let b = (-n).mul_add(c(EXP_LN2_LO), (-n).mul_add(c(EXP_LN2_HI), x));
    let u = b * b;
    let j = c(EXP_P[4])
        .mul_add(b, c(EXP_P[3]))
        .mul_add(u, c(EXP_P[2]).mul_add(b, c(EXP_P[1])));
    let j = j.mul_add(u, c(EXP_P[0]).mul_add(b, 1.0));
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // `_mm512_scalef_ps(j, n)`: j * 2^n with one rounding (the f64 product is exact).
    (f64::from(j) * 2f64.powi(n as i32)) as f32
}

/// `x[i] = expf_ggml(x[i] - sub)` (the exponentials of a softmax row).
pub fn exp_sub_ggml(x: &mut [f32], sub: f32) {
    simd::exp_sub_ggml(x, sub)
}

/// The scalar twin of [`exp_sub_ggml`].
pub fn exp_sub_ggml_scalar(x: &mut [f32], sub: f32) {
    x.iter_mut().for_each(|v| *v = expf_ggml(*v - sub));
}

/// `x[i] = x[i] / (1 + expf_ggml(0 - x[i]))`: SiLU as ggml's x86 build computes it.
pub fn silu_ggml(x: &mut [f32]) {
    simd::silu_ggml(x)
}

/// The scalar twin of [`silu_ggml`].
pub fn silu_ggml_scalar(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = silu(*v));
}

/// SiLU, `x * sigmoid(x)`, as ggml's AVX-512 `ggml_v_silu` computes it (what
/// `ggml_vec_swiglu_f32` applies on llama.cpp's x86 build): `x / (1 + expf_ggml(-x))`. One
/// lane of [`silu_ggml`].
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + expf_ggml(0.0 - x))
}

/// A function looked up from a table indexed by the f16 bit pattern of its argument, as ggml
/// computes GELU (`ggml_vec_gelu_f32` with `GGML_GELU_FP16`): `x[i]` becomes 0 at or below -10,
/// stays itself at or above 10, and is `table[f16(x[i]).to_bits()]` otherwise (`f16` rounding
/// to nearest even; 0 where the table is shorter). `table` has one entry per f16 pattern.
pub fn f16_table_clamped(x: &mut [f32], table: &[f32]) {
    simd::f16_table_clamped(x, table)
}

/// The scalar twin of [`f16_table_clamped`].
pub fn f16_table_clamped_scalar(x: &mut [f32], table: &[f32]) {
    x.iter_mut()
        .for_each(|v| *v = f16_table_clamped_one(*v, table));
}

/// One element of [`f16_table_clamped`].
#[inline]
pub fn f16_table_clamped_one(x: f32, table: &[f32]) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        table
            .get(usize::from(f16::from_f32(x).to_bits()))
            .copied()
            .unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The folded f16 dot and its scalar twin agree bit for bit on random data of many
    /// lengths (tails included), values whose sums depend on the order among them.
    #[test]
    fn folded_f16_dot_matches_its_scalar_twin() {
        let mut r = rng(11);
        for n in [0usize, 15, 16, 17, 63, 64, 65, 128, 200, 256, 300, 1000] {
            let x: Vec<f16> = (0..n).map(|_| f16::from_f32(300.0 * r())).collect();
            let y: Vec<f16> = (0..n).map(|_| f16::from_f32(300.0 * r())).collect();
            for vecdot in [false, true] {
                let (a, b) = (
                    f16_dot_folded(&x, &y, vecdot),
                    f16_dot_folded_scalar(&x, &y, vecdot),
                );
                assert_eq!(a.to_bits(), b.to_bits(), "n={n} vecdot={vecdot}");
            }
        }
    }

    /// The table lookup and its scalar twin agree bit for bit, at and around the clamps, on
    /// every f16 pattern's neighbourhood, and on infinities and NaN.
    #[test]
    fn f16_table_lookup_matches_its_scalar_twin() {
        let table: Vec<f32> = (0..=u16::MAX)
            .map(|b| f16::from_bits(b).to_f32().sin())
            .collect();
        let mut x: Vec<f32> = (0..=u16::MAX)
            .map(|b| f16::from_bits(b).to_f32() * 1.000_3)
            .collect();
        x.extend([-10.0, 10.0, -9.999, 9.999, -10.001, 10.001, 0.0, -0.0]);
        x.extend([
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            65_520.0,
            1e9,
        ]);
        for n in [x.len(), 1, 7, 9, 17] {
            let (mut a, mut b) = (x[..n].to_vec(), x[..n].to_vec());
            f16_table_clamped(&mut a, &table);
            f16_table_clamped_scalar(&mut b, &table);
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                assert_eq!(p.to_bits(), q.to_bits(), "x = {} (n = {n})", x[i]);
            }
        }
        // A short table reads as zeros beyond its end, in both.
        let (mut a, mut b) = (vec![1.5f32; 9], vec![1.5f32; 9]);
        f16_table_clamped(&mut a, &table[..10]);
        f16_table_clamped_scalar(&mut b, &table[..10]);
        assert_eq!(a, b);
        assert_eq!(a[0], 0.0);
    }

    fn rng(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        }
    }

    /// The SIMD kernels and their scalar twins agree bit for bit on random data, lengths and
    /// lane counts that are and are not multiples of the vector width.
    #[test]
    fn vector_kernels_match_their_scalar_twins() {
        let mut r = rng(7);
        for n in [0usize, 1, 7, 8, 15, 16, 17, 63, 64, 65, 128, 200, 256, 300] {
            let x: Vec<f16> = (0..n).map(|_| f16::from_f32(4.0 * r())).collect();
            let y: Vec<f16> = (0..n).map(|_| f16::from_f32(4.0 * r())).collect();
            for lanes in [8usize, 16, 64] {
                let init: Vec<f32> = (0..lanes).map(|_| r()).collect();
                let (mut a, mut b) = (init.clone(), init);
                f16_fma_lanes(&x, &y, &mut a);
                f16_fma_lanes_scalar(&x, &y, &mut b);
                let (a, b): (Vec<u32>, Vec<u32>) = (
                    a.iter().map(|v| v.to_bits()).collect(),
                    b.iter().map(|v| v.to_bits()).collect(),
                );
                assert_eq!(a, b, "f16_fma_lanes n={n} lanes={lanes}");
            }
            let p = r();
            let init: Vec<f32> = (0..n).map(|_| r()).collect();
            let (mut a, mut b) = (init.clone(), init);
            f16_axpy(p, &x, &mut a);
            f16_axpy_scalar(p, &x, &mut b);
            assert!(
                a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()),
                "axpy n={n}"
            );

            let v: Vec<f32> = (0..n).map(|_| 40.0 * r()).collect();
            let (mut a, mut b) = (v.clone(), v.clone());
            exp_sub_ggml(&mut a, 3.5);
            exp_sub_ggml_scalar(&mut b, 3.5);
            assert!(
                a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()),
                "exp n={n}"
            );
            let (mut a, mut b) = (v.clone(), v);
            silu_ggml(&mut a);
            silu_ggml_scalar(&mut b);
            assert!(
                a.iter().zip(&b).all(|(a, b)| a.to_bits() == b.to_bits()),
                "silu n={n}"
            );
        }
    }

    /// The exp kernels saturate like ggml's (0 and infinity), and the SIMD one agrees with the
    /// scalar one across the whole range, on the saturation edges and on -inf.
    #[test]
    fn exp_saturates_and_agrees_over_the_range() {
        let mut v: Vec<f32> = (-2000..2000).map(|i| i as f32 * 0.07).collect();
        v.extend([
            f32::NEG_INFINITY,
            f32::INFINITY,
            -133.0,
            -134.0,
            133.0,
            134.0,
            0.0,
            -0.0,
        ]);
        let mut a = v.clone();
        exp_sub_ggml(&mut a, 0.0);
        for (x, got) in v.iter().zip(&a) {
            assert_eq!(got.to_bits(), expf_ggml(*x).to_bits(), "exp({x})");
        }
        assert_eq!(expf_ggml(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf_ggml(f32::INFINITY), f32::INFINITY);
        assert!((expf_ggml(1.0) - core::f32::consts::E).abs() < 1e-6);
    }
}
