//! AVX2 + FMA (+ F16C) kernels for x86_64, each the SIMD twin of a scalar function in `dot.rs` /
//! `quant.rs`. The integer work follows the block layouts of `ggml/src/ggml-common.h` and the
//! approach of ggml's x86 kernels (`ggml/src/ggml-cpu/arch/x86/quants.c`: nibble unpacking,
//! `maddubs` products, per-block FMA accumulation), written so that every integer partial sum
//! is exact for *all* byte patterns: weights enter `maddubs` as unsigned values and offsets are
//! subtracted as `offset * sum(activations)`, so neither the sign trick nor i16 saturation can
//! bite. Only the float accumulation order differs from the scalar twins.
//!
//! The public wrappers re-check CPU support (a cached load) and fall back to the scalar twin,
//! so they are safe to call anywhere.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use crate::blocks::*;
use crate::types::QK_K;
use crate::{dot, quant};

use super::{has_avx2, has_avx512, has_avx512_vnni};

/// Loads 16 bytes.
#[inline(always)]
pub(super) fn load16(b: &[u8; 16]) -> __m128i {
    // SAFETY: `b` is 16 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

/// Loads 32 bytes.
#[inline(always)]
pub(super) fn load32(b: &[u8; 32]) -> __m256i {
    // SAFETY: `b` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// Loads 32 signed bytes.
#[inline(always)]
pub(super) fn load32i(b: &[i8; 32]) -> __m256i {
    // SAFETY: `b` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// `s[off..off + 32]` as an array reference; the callers keep it in bounds (fixed-size block
/// fields), and an out-of-bounds request reads zeros instead of panicking.
#[inline(always)]
pub(super) fn chunk32(s: &[u8], off: usize) -> &[u8; 32] {
    s.get(off..off + 32)
        .and_then(|c| c.try_into().ok())
        .unwrap_or(&[0; 32])
}

/// Signed twin of [`chunk32`].
#[inline(always)]
pub(super) fn chunk32i(s: &[i8], off: usize) -> &[i8; 32] {
    s.get(off..off + 32)
        .and_then(|c| c.try_into().ok())
        .unwrap_or(&[0; 32])
}

/// f16 → f32 with the F16C instruction (exact, like `half::f16::to_f32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn h2f(h: half::f16) -> f32 {
    // A broadcast writes the whole register: no false dependency on its old contents.
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(h.to_bits() as i16)))
}

/// The first four bytes of a block (its leading f16 scale and two more bytes), as one load.
#[inline(always)]
pub(super) fn head32<T: bytemuck::Pod>(block: &T) -> i32 {
    bytemuck::bytes_of(block)
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, i32::from_le_bytes)
}

/// Blocks whose first field is their f16 scale `d` (ggml-common.h layouts).
trait LeadingScale: bytemuck::Pod {}
impl LeadingScale for BlockQ5_0 {}
impl LeadingScale for BlockQ8_0 {}

/// `d_x * d_y` of two blocks that start with their f16 scale, broadcast to 8 lanes: one
/// conversion for both (the other converted lanes are ignored).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dd<X: LeadingScale, Y: LeadingScale>(x: &X, y: &Y) -> __m256 {
    let v = _mm_cvtph_ps(_mm_set_epi32(0, 0, head32(y), head32(x))); // [xd, _, yd, _]
    _mm256_broadcastss_ps(_mm_mul_ss(v, _mm_movehl_ps(v, v)))
}

/// f32 → f16, round to nearest even, with F16C (as `half::f16::from_f32` for non-NaN input).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f2h(v: f32) -> half::f16 {
    let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(v));
    half::f16::from_bits(_mm_cvtsi128_si32(h) as u16)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// A vector of 32 signed bytes widened to 16 bits: its first 16 bytes, and its last 16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn widen_i8(v: __m256i) -> [__m256i; 2] {
    [
        _mm256_cvtepi8_epi16(_mm256_castsi256_si128(v)),
        _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(v)),
    ]
}

/// The eight i32 lanes' total.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<1>(s));
    _mm_cvtsi128_si32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hmax_ps(v: __m256) -> f32 {
    let s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_max_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

/// 16 bytes of nibbles → 32 bytes: the low nibbles (elements 0..16) then the high ones.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn nibbles(qs: &[u8; 16]) -> __m256i {
    let t = load16(qs);
    let both = _mm256_set_m128i(_mm_srli_epi16::<4>(t), t);
    _mm256_and_si256(both, _mm256_set1_epi8(0x0F))
}

/// The 32 fifth bits of a Q5 block as bytes `0x10` (set) or `0` (ggml's `bytes_from_bits_32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn fifth_bits(qh: [u8; 4]) -> __m256i {
    let bits = _mm256_set1_epi32(i32::from_le_bytes(qh));
    let spread = _mm256_shuffle_epi8(
        bits,
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    // Every bit but the one this byte tests is set, so the byte is all-ones iff that bit is.
    let probe = _mm256_or_si256(spread, _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe));
    let set = _mm256_cmpeq_epi8(probe, _mm256_set1_epi64x(-1));
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// `sum(q[k] * y[k] - offset * y[k])` in 8 i32 lanes, for unsigned `q` (< 64) and any `y`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u8_i8(q: __m256i, y: __m256i, offset: i8) -> __m256i {
    let p = _mm256_maddubs_epi16(q, y);
    let p = if offset != 0 {
        let s = _mm256_maddubs_epi16(_mm256_set1_epi8(offset), y);
        _mm256_sub_epi16(p, s)
    } else {
        p
    };
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// Sums `d * s` over blocks for `M` activation rows at once: `prep` unpacks each weight block
/// once, `pair(m, parity, prepared, x, y)` gives the broadcast scale `d` and integer lane sums
/// `s` of that block with activation row `m`. Each row has one 8-lane accumulator that takes
/// `fma(d, s, acc)` block after block, then `hsum_float_8`: the order of ggml's x86 kernels
/// (`ggml_vec_dot_q8_0_q8_0` etc. in ggml/src/ggml-cpu/arch/x86/quants.c). Every row sees
/// exactly the same operations in the same order whatever `M` is, so `M = 4` is bit-identical
/// to four calls with `M = 1`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn blocks2m<W, A, P: Copy, const M: usize>(
    x: &[W],
    ys: [&[A]; M],
    prep: impl Fn(&W) -> P,
    mut pair: impl FnMut(usize, usize, P, &W, &A) -> (__m256, __m256i),
) -> [f32; M] {
    let mut acc0 = [_mm256_setzero_ps(); M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    let mut xs = x.get(..nb).unwrap_or_default().chunks_exact(2);
    for (b, xp) in (&mut xs).enumerate() {
        if let [x0, x1] = xp {
            let (p0, p1) = (prep(x0), prep(x1));
            for (m, (y, a0)) in ys.iter().zip(&mut acc0).enumerate() {
                if let (Some(y0), Some(y1)) = (y.get(2 * b), y.get(2 * b + 1)) {
                    let (d0, s0) = pair(m, 0, p0, x0, y0);
                    let (d1, s1) = pair(m, 1, p1, x1, y1);
                    *a0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(s0), *a0);
                    *a0 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(s1), *a0);
                }
            }
        }
    }
    if let [x0] = xs.remainder() {
        let p0 = prep(x0);
        for (m, (y, a0)) in ys.iter().zip(&mut acc0).enumerate() {
            if let Some(y0) = y.get(nb - 1) {
                let (d0, s0) = pair(m, 0, p0, x0, y0);
                *a0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(s0), *a0);
            }
        }
    }
    let mut out = [0.0f32; M];
    for (o, a0) in out.iter_mut().zip(acc0) {
        *o = hsum_ps(a0);
    }
    out
}

/// `sum(a[k] * b[k])` of two signed byte vectors in 8 i32 lanes, lane `l` summing bytes
/// `4l..4l + 4` (the lanes of ggml's `mul_sum_i8_pairs` and of `vpdpbusd`, which the float
/// accumulation depends on); exact for every input (widened to i16 first, so -128 · -128 is
/// fine).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8_i8(a: __m256i, b: __m256i) -> __m256i {
    // Byte pairs 2k, 2k + 1 of each 16-byte half...
    let lo = _mm256_madd_epi16(
        _mm256_cvtepi8_epi16(_mm256_castsi256_si128(a)),
        _mm256_cvtepi8_epi16(_mm256_castsi256_si128(b)),
    );
    let hi = _mm256_madd_epi16(
        _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(a)),
        _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(b)),
    );
    // ...added into quads (per 128-bit lane: quads 0, 1, 4, 5 | 2, 3, 6, 7), then put in order.
    _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_hadd_epi32(lo, hi))
}

/// AVX-512 VNNI twin of [`dot_u8_i8`]: `vpdpbusd` sums four u8·i8 products straight into
/// i32 lanes (no i16 stage, no saturation).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
fn dot_u8_i8_vnni(q: __m256i, y: __m256i, offset: i8) -> __m256i {
    let zero = _mm256_setzero_si256();
    let p = _mm256_dpbusd_epi32(zero, q, y);
    if offset != 0 {
        _mm256_sub_epi32(p, _mm256_dpbusd_epi32(zero, _mm256_set1_epi8(offset), y))
    } else {
        p
    }
}

/// AVX-512 VNNI twin of [`dot_i8_i8`]: `a` is biased to unsigned (`a + 128`) for `vpdpbusd`,
/// and `128 * sum(b)` is taken off again; exact for every input.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
fn dot_i8_i8_vnni(a: __m256i, b: __m256i) -> __m256i {
    let zero = _mm256_setzero_si256();
    let bias = _mm256_set1_epi8(-128); // 0x80: flips the sign bit, i.e. a + 128 as u8
    let p = _mm256_dpbusd_epi32(zero, _mm256_xor_si256(a, bias), b);
    _mm256_sub_epi32(p, _mm256_dpbusd_epi32(zero, bias, b))
}

/// The legacy-format kernels (32-element blocks), generated once per instruction set: the
/// two byte-dot primitives are the only difference. Each is generic over the number `M` of
/// activation rows it handles per pass over the weight row.
macro_rules! legacy_kernels {
    ($features:literal, $dot_u8:ident, $dot_i8:ident,
     $q4_1:ident, $q4_1_r4:ident, $q5_0:ident, $q8_0:ident) => {
        /// Q4_1 in the order of ggml's x86 `ggml_vec_dot_q4_1_q8_1`: eight lanes of
        /// `fma(d_x d_y, lane, acc)`, the min terms in one scalar `fma(m_x, s_y, summs)`, then
        /// `hsum_float_8(acc) + summs`.
        #[target_feature(enable = $features)]
        fn $q4_1<const M: usize>(x: &[BlockQ4_1], ys: [&[BlockQ8_1]; M]) -> [f32; M] {
            let mut acc = [_mm256_setzero_ps(); M];
            let mut summs = [0.0f32; M];
            let nb = common_len(x, &ys);
            if M % 4 == 0 && M <= 8 {
                // Activation rows in fours: their (d, s) scales converted by one instruction,
                // the four min-term FMAs and scale products in one vector each (lane k is row
                // k's scalar operation, exactly).
                let mut summs4 = [_mm_setzero_ps(); 2];
                let even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
                let odd = _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7);
                for (b, x) in x.iter().take(nb).enumerate() {
                    let q = nibbles(&x.qs);
                    let (dx, mx) = (h2f(x.d), h2f(x.m));
                    let mut dd = [_mm256_setzero_ps(); 2];
                    for (g, (sm, ddg)) in summs4.iter_mut().zip(&mut dd).enumerate().take(M / 4) {
                        let mut heads = [0i32; 4];
                        let four = ys.get(4 * g..4 * g + 4).unwrap_or_default();
                        for (h, y) in heads.iter_mut().zip(four) {
                            *h = y.get(b).map_or(0, head32);
                        }
                        let ds =
                            _mm256_cvtph_ps(_mm_setr_epi32(heads[0], heads[1], heads[2], heads[3]));
                        let s4 = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(ds, odd));
                        let d4 = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(ds, even));
                        *sm = _mm_fmadd_ps(_mm_set1_ps(mx), s4, *sm);
                        *ddg = _mm256_castps128_ps256(_mm_mul_ps(_mm_set1_ps(dx), d4));
                    }
                    for (k, (y, a)) in ys.iter().zip(&mut acc).enumerate() {
                        let Some(y) = y.get(b) else { continue };
                        let lane = _mm256_set1_epi32((k % 4) as i32);
                        let d = _mm256_permutevar8x32_ps(dd[(k / 4) % 2], lane);
                        let l = _mm256_cvtepi32_ps($dot_u8(q, load32i(&y.qs), 0));
                        *a = _mm256_fmadd_ps(d, l, *a);
                    }
                }
                let mut sm8 = [0.0f32; 8];
                // SAFETY: `sm8` is 8 writable floats; `storeu` needs no alignment.
                unsafe {
                    _mm_storeu_ps(sm8.as_mut_ptr(), summs4[0]);
                    _mm_storeu_ps(sm8.as_mut_ptr().add(4), summs4[1]);
                }
                for (o, v) in summs.iter_mut().zip(sm8) {
                    *o = v;
                }
            } else {
                for (b, x) in x.iter().take(nb).enumerate() {
                    let q = nibbles(&x.qs);
                    let (dx, mx) = (h2f(x.d), h2f(x.m));
                    for ((y, a), sm) in ys.iter().zip(&mut acc).zip(&mut summs) {
                        let Some(y) = y.get(b) else { continue };
                        *sm = mx.mul_add(h2f(y.s), *sm);
                        let d = _mm256_set1_ps(dx * h2f(y.d));
                        let l = _mm256_cvtepi32_ps($dot_u8(q, load32i(&y.qs), 0));
                        *a = _mm256_fmadd_ps(d, l, *a);
                    }
                }
            }
            let mut out = [0.0f32; M];
            for ((o, a), sm) in out.iter_mut().zip(acc).zip(summs) {
                *o = hsum_ps(a) + sm;
            }
            out
        }

        /// The Q4_1 kernel above for four weight rows against one activation row: the same
        /// operations per (weight row, activation row) pair, the activation's scales
        /// converted once per block.
        #[target_feature(enable = $features)]
        fn $q4_1_r4(xs: [&[BlockQ4_1]; 4], y: &[BlockQ8_1]) -> [f32; 4] {
            let mut acc = [_mm256_setzero_ps(); 4];
            let nb = xs.iter().fold(y.len(), |n, x| n.min(x.len()));
            // The four rows' (d, m) scales converted by one instruction; their scale products
            // and min-term FMAs one vector operation each (lane k is row k's scalar operation).
            let mut summs4 = _mm_setzero_ps();
            let even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
            let odd = _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7);
            for (b, y) in y.iter().take(nb).enumerate() {
                let (dy, sy) = (h2f(y.d), h2f(y.s));
                let yq = load32i(&y.qs);
                let mut heads = [0i32; 4];
                for (h, x) in heads.iter_mut().zip(&xs) {
                    *h = x.get(b).map_or(0, head32);
                }
                let dm = _mm256_cvtph_ps(_mm_setr_epi32(heads[0], heads[1], heads[2], heads[3]));
                let m4 = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(dm, odd));
                let d4 = _mm256_castps256_ps128(_mm256_permutevar8x32_ps(dm, even));
                summs4 = _mm_fmadd_ps(m4, _mm_set1_ps(sy), summs4);
                let dd = _mm256_castps128_ps256(_mm_mul_ps(d4, _mm_set1_ps(dy)));
                for (k, (x, a)) in xs.iter().zip(&mut acc).enumerate() {
                    let Some(x) = x.get(b) else { continue };
                    let q = nibbles(&x.qs);
                    let d = _mm256_permutevar8x32_ps(dd, _mm256_set1_epi32(k as i32));
                    let l = _mm256_cvtepi32_ps($dot_u8(q, yq, 0));
                    *a = _mm256_fmadd_ps(d, l, *a);
                }
            }
            let mut sm4 = [0.0f32; 4];
            // SAFETY: `sm4` is 4 writable floats; `storeu` needs no alignment.
            unsafe { _mm_storeu_ps(sm4.as_mut_ptr(), summs4) };
            let mut out = [0.0f32; 4];
            for ((o, a), sm) in out.iter_mut().zip(acc).zip(sm4) {
                *o = hsum_ps(a) + sm;
            }
            out
        }

        #[target_feature(enable = $features)]
        fn $q5_0<const M: usize>(x: &[BlockQ5_0], ys: [&[BlockQ8_0]; M]) -> [f32; M] {
            blocks2m(
                x,
                ys,
                |x| _mm256_or_si256(nibbles(&x.qs), fifth_bits(x.qh)),
                |_, _, q, x, y| (dd(x, y), $dot_u8(q, load32i(&y.qs), 16)),
            )
        }

        #[target_feature(enable = $features)]
        fn $q8_0<const M: usize>(x: &[BlockQ8_0], ys: [&[BlockQ8_0]; M]) -> [f32; M] {
            blocks2m(
                x,
                ys,
                |x| load32i(&x.qs),
                |_, _, q, x, y| (dd(x, y), $dot_i8(q, load32i(&y.qs))),
            )
        }
    };
}

legacy_kernels!(
    "avx2,fma,f16c",
    dot_u8_i8,
    dot_i8_i8,
    q4_1_q8_1_avx2,
    q4_1_q8_1_r4_avx2,
    q5_0_q8_0_avx2,
    q8_0_q8_0_avx2
);
legacy_kernels!(
    "avx2,fma,f16c,avx512vnni,avx512vl",
    dot_u8_i8_vnni,
    dot_i8_i8_vnni,
    q4_1_q8_1_vnni,
    q4_1_q8_1_r4_vnni,
    q5_0_q8_0_vnni,
    q8_0_q8_0_vnni
);

/// Unpacks Q4_K's 12 scale bytes with 32-bit word operations: bytes 0..8 of the result are the
/// eight 6-bit scales, bytes 8..16 the eight mins (the same values as `get_scale_min_k4`; the
/// word trick is the one of ggml's `ggml_vec_dot_q4_K_q8_K` kernels).
#[inline(always)]
pub(super) fn k4_unpack(packed: &[u8; 12]) -> [u32; 4] {
    const K1: u32 = 0x3f3f_3f3f;
    const K2: u32 = 0x0f0f_0f0f;
    const K3: u32 = 0x0303_0303;
    let word = |i: usize| {
        packed
            .get(4 * i..4 * i + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes)
    };
    let (u0, u1, u2) = (word(0), word(1), word(2));
    [
        u0 & K1,
        (u2 & K2) | (((u0 >> 6) & K3) << 4),
        u1 & K1,
        ((u2 >> 4) & K2) | (((u1 >> 6) & K3) << 4),
    ]
}

/// Loads the 16 `bsums` of a Q8_K block.
#[inline(always)]
fn load_bsums(b: &[i16; 16]) -> __m256i {
    // SAFETY: `b` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// Sum of the 8 i32 lanes (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Number of blocks that the weight row and all `M` activation rows have.
#[inline(always)]
fn common_len<W, A, const M: usize>(x: &[W], ys: &[&[A]; M]) -> usize {
    ys.iter().fold(x.len(), |n, y| n.min(y.len()))
}

/// Q4_K · Q8_K for `M` activation rows per pass: each weight block is unpacked once; every
/// row sees the same operations in the same order whatever `M` is. The float order is that of
/// ggml's x86 repacked Q4_K kernels (see the scalar twin `dot::q4_k_q8_k`): per block the
/// exact integer sums, then one FMA each into the scale and the min accumulator.
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_q8_k_avx2<const M: usize>(x: &[BlockQ4K], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = [0.0f32; M];
    let mut acc_m = [0.0f32; M];
    let nb = common_len(x, &ys);
    for (b, x) in x.iter().take(nb).enumerate() {
        let u = k4_unpack(&x.scales);
        let mins = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, u[3] as i32, u[2] as i32));
        let (dx, dminx) = (h2f(x.d), h2f(x.dmin));
        let scales = [u[0].to_le_bytes(), u[1].to_le_bytes()];
        let mut sumi = [_mm256_setzero_si256(); M];
        for (j, sc) in scales.iter().flat_map(|w| w.chunks_exact(2)).enumerate() {
            let q = load32(chunk32(&x.qs, 32 * j));
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
            let (slo, shi) = match sc {
                [a, b] => (*a as i16, *b as i16),
                _ => (0, 0),
            };
            let (slo, shi) = (_mm256_set1_epi16(slo), _mm256_set1_epi16(shi));
            for (y, si) in ys.iter().zip(&mut sumi) {
                let Some(y) = y.get(b) else { continue };
                let ylo = load32i(chunk32i(&y.qs, 64 * j));
                let yhi = load32i(chunk32i(&y.qs, 64 * j + 32));
                let s = _mm256_add_epi32(
                    _mm256_madd_epi16(_mm256_maddubs_epi16(lo, ylo), slo),
                    _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yhi), shi),
                );
                *si = _mm256_add_epi32(*si, s);
            }
        }
        for (((y, si), a), am) in ys.iter().zip(sumi).zip(&mut acc).zip(&mut acc_m) {
            let Some(y) = y.get(b) else { continue };
            // Mins: sum over sub-blocks of min_j * (bsums[2j] + bsums[2j+1]), in 4 i32 lanes.
            let bs = load_bsums(&y.bsums);
            let pairs = _mm_hadd_epi16(
                _mm256_castsi256_si128(bs),
                _mm256_extracti128_si256::<1>(bs),
            );
            let summs = _mm_madd_epi16(mins, pairs);
            let imin = hsum_epi32(_mm256_set_m128i(_mm_setzero_si128(), summs)) as f32;
            let isum = hsum_epi32(si) as f32;
            *am = imin.mul_add(dminx * y.d, *am);
            *a = isum.mul_add(dx * y.d, *a);
        }
    }
    let mut out = [0.0f32; M];
    for ((o, a), am) in out.iter_mut().zip(acc).zip(acc_m) {
        *o = a - am;
    }
    out
}

/// Q4_K · Q8_K for `M` activation rows per pass in the order of ggml's x86
/// `ggml_gemm_q4_K_8x8_q8_K` (see the scalar twin `dot::q4_k_q8_k_grouped`): per pair of
/// sub-blocks (64 elements) the exact integer sums, then one FMA each into the scale and the
/// min accumulator.
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_q8_k_grouped_avx2<const M: usize>(x: &[BlockQ4K], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = [0.0f32; M];
    let mut acc_m = [0.0f32; M];
    let nb = common_len(x, &ys);
    for (b, x) in x.iter().take(nb).enumerate() {
        let u = k4_unpack(&x.scales);
        let (dx, dminx) = (h2f(x.d), h2f(x.dmin));
        let scales = [u[0].to_le_bytes(), u[1].to_le_bytes()];
        let mins = [u[2].to_le_bytes(), u[3].to_le_bytes()];
        let pairs = scales
            .iter()
            .flat_map(|w| w.chunks_exact(2))
            .zip(mins.iter().flat_map(|w| w.chunks_exact(2)));
        for (j, (sc, mn)) in pairs.enumerate() {
            let q = load32(chunk32(&x.qs, 32 * j));
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
            let (slo, shi) = match sc {
                [a, b] => (*a as i16, *b as i16),
                _ => (0, 0),
            };
            let (m0, m1) = match mn {
                [a, b] => (i32::from(*a), i32::from(*b)),
                _ => (0, 0),
            };
            let (slo, shi) = (_mm256_set1_epi16(slo), _mm256_set1_epi16(shi));
            for ((y, a), am) in ys.iter().zip(&mut acc).zip(&mut acc_m) {
                let Some(y) = y.get(b) else { continue };
                let ylo = load32i(chunk32i(&y.qs, 64 * j));
                let yhi = load32i(chunk32i(&y.qs, 64 * j + 32));
                let s = _mm256_add_epi32(
                    _mm256_madd_epi16(_mm256_maddubs_epi16(lo, ylo), slo),
                    _mm256_madd_epi16(_mm256_maddubs_epi16(hi, yhi), shi),
                );
                let bs = |k: usize| y.bsums.get(4 * j + k).map_or(0, |v| i32::from(*v));
                let imin = (m0 * (bs(0) + bs(1)) + m1 * (bs(2) + bs(3))) as f32;
                let isum = hsum_epi32(s) as f32;
                *am = imin.mul_add(dminx * y.d, *am);
                *a = isum.mul_add(dx * y.d, *a);
            }
        }
    }
    let mut out = [0.0f32; M];
    for ((o, a), am) in out.iter_mut().zip(acc).zip(acc_m) {
        *o = a - am;
    }
    out
}

/// Q6_K · Q8_K for `M` activation rows per pass (as [`q4_k_q8_k_avx2`]).
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_q8_k_avx2<const M: usize>(x: &[BlockQ6K], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    q6_k_q8_k_impl::<M, false>(x, ys)
}

/// Q6_K · Q8_K in the order of ggml's tiled K-quant matmul (`dot::q6_k_q8_k_tiled`).
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_q8_k_tiled_avx2<const M: usize>(x: &[BlockQ6K], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    q6_k_q8_k_impl::<M, true>(x, ys)
}

/// The integer part of both Q6_K orders is the same eight lanes; `TILED` sums them exactly per
/// block and takes the tiled float order, otherwise each lane is scaled as ggml's vec_dot does.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_q8_k_impl<const M: usize, const TILED: bool>(
    x: &[BlockQ6K],
    ys: [&[BlockQ8K]; M],
) -> [f32; M] {
    let mut tiled = [0.0f32; M];
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x03);
    let mut acc = [_mm256_setzero_ps(); M];
    let nb = common_len(x, &ys);
    for (b, x) in x.iter().take(nb).enumerate() {
        let mut sumi = [_mm256_setzero_si256(); M];
        for n in 0..2 {
            let qa = load32(chunk32(&x.ql, 64 * n));
            let qb = load32(chunk32(&x.ql, 64 * n + 32));
            let qh = load32(chunk32(&x.qh, 32 * n));
            let high = |shift: i32| -> __m256i {
                let h = match shift {
                    0 => qh,
                    2 => _mm256_srli_epi16::<2>(qh),
                    4 => _mm256_srli_epi16::<4>(qh),
                    _ => _mm256_srli_epi16::<6>(qh),
                };
                _mm256_slli_epi16::<4>(_mm256_and_si256(h, m2))
            };
            let q = [
                _mm256_or_si256(_mm256_and_si256(qa, m4), high(0)),
                _mm256_or_si256(_mm256_and_si256(qb, m4), high(2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(qa), m4), high(4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(qb), m4), high(6)),
            ];
            for (k, q) in q.into_iter().enumerate() {
                let sc = |i: usize| x.scales.get(8 * n + 2 * k + i).copied().unwrap_or(0) as i16;
                let scv = _mm256_set_m128i(_mm_set1_epi16(sc(1)), _mm_set1_epi16(sc(0)));
                for (y, si) in ys.iter().zip(&mut sumi) {
                    let Some(y) = y.get(b) else { continue };
                    let yv = load32i(chunk32i(&y.qs, 128 * n + 32 * k));
                    let p = _mm256_maddubs_epi16(q, yv);
                    *si = _mm256_add_epi32(*si, _mm256_madd_epi16(p, scv));
                }
            }
        }
        let dx = h2f(x.d);
        // ggml's `q8sclsub`: lane l loses 32 (bsums[2l] scale[2l] + bsums[2l+1] scale[2l+1]).
        // SAFETY: `scales` is 16 readable bytes; `loadu` has no alignment requirement.
        let sc16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(x.scales.as_ptr().cast()) });
        for ((y, si), (a, t)) in ys.iter().zip(sumi).zip(acc.iter_mut().zip(&mut tiled)) {
            let Some(y) = y.get(b) else { continue };
            let sub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(load_bsums(&y.bsums), sc16));
            let si = _mm256_sub_epi32(si, sub);
            if TILED {
                *t = (hsum_epi32(si) as f32 * dx).mul_add(y.d, *t);
            } else {
                *a = _mm256_fmadd_ps(_mm256_set1_ps(y.d * dx), _mm256_cvtepi32_ps(si), *a);
            }
        }
    }
    if TILED {
        return tiled;
    }
    let mut out = [0.0f32; M];
    for (o, a) in out.iter_mut().zip(acc) {
        *o = hsum_ps(a);
    }
    out
}

/// The float orders of Q2_K (see the scalar twins): ggml's AVX2 `vec_dot` lanes
/// (`dot::q2_k_q8_k`), its AVX-512 repacked gemv (`dot::q2_k_q8_k_repacked`), that gemm's
/// halves (`dot::q2_k_q8_k_repacked_grouped`) and the tiled matmul (`dot::q2_k_q8_k_tiled`).
const Q2_VEC: u8 = 0;
const Q2_REPACKED: u8 = 1;
const Q2_GROUPED: u8 = 2;
const Q2_TILED: u8 = 3;

/// Q2_K · Q8_K, `M` activation rows per pass, in the float order `ORDER`. The integer part is
/// the same for all four: per 128-element half, eight i32 lanes (lane `l` holds elements
/// `4l..4l + 4` of every 32-element chunk times its 16-element sub-block's scale), and the
/// mins times `bsums` in eight lanes (lane `l`: sub-blocks `2l` and `2l + 1`); every order
/// sums them exactly as its scalar twin needs, then takes its float steps.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k_q8_k_impl<const M: usize, const ORDER: u8>(
    x: &[BlockQ2K],
    ys: [&[BlockQ8K]; M],
) -> [f32; M] {
    let m3 = _mm256_set1_epi8(3);
    let mut lanes_acc = [_mm256_setzero_ps(); M];
    let (mut acc, mut acc_m) = ([0.0f32; M], [0.0f32; M]);
    let nb = common_len(x, &ys);
    for (b, x) in x.iter().take(nb).enumerate() {
        let mut sumi = [[_mm256_setzero_si256(); 2]; M];
        for h in 0..2 {
            let q = load32(chunk32(&x.qs, 32 * h));
            let vals = [
                _mm256_and_si256(q, m3),
                _mm256_and_si256(_mm256_srli_epi16::<2>(q), m3),
                _mm256_and_si256(_mm256_srli_epi16::<4>(q), m3),
                _mm256_and_si256(_mm256_srli_epi16::<6>(q), m3),
            ];
            for (k, v) in vals.into_iter().enumerate() {
                let sc = |i: usize| {
                    x.scales
                        .get(8 * h + 2 * k + i)
                        .map_or(0, |s| (s & 0xF) as i16)
                };
                let scv = _mm256_set_m128i(_mm_set1_epi16(sc(1)), _mm_set1_epi16(sc(0)));
                for (y, si) in ys.iter().zip(&mut sumi) {
                    let Some(y) = y.get(b) else { continue };
                    let yv = load32i(chunk32i(&y.qs, 128 * h + 32 * k));
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(v, yv), scv);
                    si[h] = _mm256_add_epi32(si[h], p);
                }
            }
        }
        let mins = _mm_and_si128(_mm_srli_epi16::<4>(load16(&x.scales)), _mm_set1_epi8(0x0F));
        let mins = _mm256_cvtepu8_epi16(mins);
        let (dx, dminx) = (h2f(x.d), h2f(x.dmin));
        for ((y, si), (la, (a, am))) in ys
            .iter()
            .zip(sumi)
            .zip(lanes_acc.iter_mut().zip(acc.iter_mut().zip(&mut acc_m)))
        {
            let Some(y) = y.get(b) else { continue };
            let ml = _mm256_madd_epi16(load_bsums(&y.bsums), mins);
            match ORDER {
                Q2_VEC => {
                    let lanes = _mm256_cvtepi32_ps(_mm256_add_epi32(si[0], si[1]));
                    *la =
                        _mm256_fmadd_ps(_mm256_set1_ps(-y.d * dminx), _mm256_cvtepi32_ps(ml), *la);
                    *la = _mm256_fmadd_ps(_mm256_set1_ps(y.d * dx), lanes, *la);
                }
                Q2_GROUPED => {
                    let halves = [
                        _mm256_castsi256_si128(ml),
                        _mm256_extracti128_si256::<1>(ml),
                    ];
                    for (si, mh) in si.into_iter().zip(halves) {
                        let imin = hsum_epi32(_mm256_set_m128i(_mm_setzero_si128(), mh));
                        *a = (hsum_epi32(si) as f32).mul_add(dx * y.d, *a);
                        *am = (imin as f32).mul_add(dminx * y.d, *am);
                    }
                }
                _ => {
                    let isum = hsum_epi32(_mm256_add_epi32(si[0], si[1]));
                    let imin = hsum_epi32(ml);
                    if ORDER == Q2_TILED {
                        let r = (-dminx).mul_add(imin as f32, isum as f32 * dx);
                        *a = r.mul_add(y.d, *a);
                    } else {
                        *a = (isum as f32).mul_add(dx * y.d, *a);
                        *am = (imin as f32).mul_add(dminx * y.d, *am);
                    }
                }
            }
        }
    }
    let mut out = [0.0f32; M];
    for (o, (la, (a, am))) in out
        .iter_mut()
        .zip(lanes_acc.iter().zip(acc.iter().zip(&acc_m)))
    {
        *o = match ORDER {
            Q2_VEC => hsum_ps(*la),
            Q2_TILED => *a,
            _ => a - am,
        };
    }
    out
}

/// Q2_K · Q8_K in ggml's AVX2 `vec_dot` order (`dot::q2_k_q8_k`).
#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k_q8_k_avx2<const M: usize>(x: &[BlockQ2K], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    q2_k_q8_k_impl::<M, Q2_VEC>(x, ys)
}

/// Q2_K · Q8_K in the order of ggml's repacked gemv (`dot::q2_k_q8_k_repacked`).
#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k_q8_k_repacked_avx2<const M: usize>(x: &[BlockQ2K], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    q2_k_q8_k_impl::<M, Q2_REPACKED>(x, ys)
}

/// Q2_K · Q8_K in the order of ggml's repacked gemm (`dot::q2_k_q8_k_repacked_grouped`).
#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k_q8_k_repacked_grouped_avx2<const M: usize>(
    x: &[BlockQ2K],
    ys: [&[BlockQ8K]; M],
) -> [f32; M] {
    q2_k_q8_k_impl::<M, Q2_GROUPED>(x, ys)
}

/// Q2_K · Q8_K in the order of ggml's tiled matmul (`dot::q2_k_q8_k_tiled`).
#[target_feature(enable = "avx2,fma,f16c")]
fn q2_k_q8_k_tiled_avx2<const M: usize>(x: &[BlockQ2K], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    q2_k_q8_k_impl::<M, Q2_TILED>(x, ys)
}

/// Q3_K · Q8_K, `M` activation rows per pass: with `TILED` the order of ggml's tiled matmul
/// (`dot::q3_k_q8_k_tiled`: the lanes summed exactly per block, one FMA), else its AVX2
/// `vec_dot` lanes (`dot::q3_k_q8_k`). The values `-4..=3` enter `maddubs` as `q + 4`
/// (`0..=7`, unsigned) and the offset leaves as `4 sum(y)` per lane: exact for every byte.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q3_k_q8_k_impl<const M: usize, const TILED: bool>(
    x: &[BlockQ3K],
    ys: [&[BlockQ8K]; M],
) -> [f32; M] {
    let m3 = _mm256_set1_epi8(3);
    let ones = _mm256_set1_epi8(1);
    let mut lanes_acc = [_mm256_setzero_ps(); M];
    let mut tiled = [0.0f32; M];
    let nb = common_len(x, &ys);
    for (b, x) in x.iter().take(nb).enumerate() {
        let scales = crate::dequant::q3_k_scales(&x.scales);
        let hm = load32(&x.hmask);
        let mut sumi = [_mm256_setzero_si256(); M];
        for h in 0..2 {
            let q = load32(chunk32(&x.qs, 32 * h));
            for k in 0..4 {
                let low = match k {
                    0 => q,
                    1 => _mm256_srli_epi16::<2>(q),
                    2 => _mm256_srli_epi16::<4>(q),
                    _ => _mm256_srli_epi16::<6>(q),
                };
                let bit = _mm256_set1_epi8((1u8 << (4 * h + k)) as i8);
                let high = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
                // q + 4: the two low bits, plus 4 where the high bit is set.
                let u = _mm256_or_si256(
                    _mm256_and_si256(low, m3),
                    _mm256_and_si256(high, _mm256_set1_epi8(4)),
                );
                let sc = |i: usize| {
                    scales
                        .get(8 * h + 2 * k + i)
                        .map_or(0, |&s| i16::from(s) - 32)
                };
                let scv = _mm256_set_m128i(_mm_set1_epi16(sc(1)), _mm_set1_epi16(sc(0)));
                for (y, si) in ys.iter().zip(&mut sumi) {
                    let Some(y) = y.get(b) else { continue };
                    let yv = load32i(chunk32i(&y.qs, 128 * h + 32 * k));
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, yv), scv);
                    let off = _mm256_madd_epi16(_mm256_maddubs_epi16(ones, yv), scv);
                    *si = _mm256_add_epi32(*si, _mm256_sub_epi32(p, _mm256_slli_epi32::<2>(off)));
                }
            }
        }
        let dx = h2f(x.d);
        for ((y, si), (la, t)) in ys
            .iter()
            .zip(sumi)
            .zip(lanes_acc.iter_mut().zip(&mut tiled))
        {
            let Some(y) = y.get(b) else { continue };
            if TILED {
                *t = (hsum_epi32(si) as f32 * dx).mul_add(y.d, *t);
            } else {
                *la = _mm256_fmadd_ps(_mm256_set1_ps(y.d * dx), _mm256_cvtepi32_ps(si), *la);
            }
        }
    }
    if TILED {
        return tiled;
    }
    let mut out = [0.0f32; M];
    for (o, la) in out.iter_mut().zip(lanes_acc) {
        *o = hsum_ps(la);
    }
    out
}

/// Q3_K · Q8_K in ggml's AVX2 `vec_dot` order (`dot::q3_k_q8_k`).
#[target_feature(enable = "avx2,fma,f16c")]
fn q3_k_q8_k_avx2<const M: usize>(x: &[BlockQ3K], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    q3_k_q8_k_impl::<M, false>(x, ys)
}

/// Q3_K · Q8_K in the order of ggml's tiled matmul (`dot::q3_k_q8_k_tiled`).
#[target_feature(enable = "avx2,fma,f16c")]
fn q3_k_q8_k_tiled_avx2<const M: usize>(x: &[BlockQ3K], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    q3_k_q8_k_impl::<M, true>(x, ys)
}

/// Dot product of two float rows in four 8-lane FMA accumulators (32 elements a step), then
/// the tail in scalar f32: the order depends only on the length. `load` widens 8 elements.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn float_dot<T: Copy>(
    x: &[T],
    y: &[T],
    load: impl Fn(&[T; 8]) -> __m256,
    one: impl Fn(T) -> f32,
) -> f32 {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut xs = x.chunks_exact(32);
    let mut ys = y.chunks_exact(32);
    for (xc, yc) in (&mut xs).zip(&mut ys) {
        for (k, (x8, y8)) in xc.chunks_exact(8).zip(yc.chunks_exact(8)).enumerate() {
            if let (Ok(x8), Ok(y8), Some(a)) = (x8.try_into(), y8.try_into(), acc.get_mut(k)) {
                *a = _mm256_fmadd_ps(load(x8), load(y8), *a);
            }
        }
    }
    let [a0, a1, a2, a3] = acc;
    let mut sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (a, b) in xs.remainder().iter().zip(ys.remainder()) {
        sum += one(*a) * one(*b);
    }
    sum
}

#[target_feature(enable = "avx2,fma,f16c")]
fn f32_avx2(x: &[f32], y: &[f32]) -> f32 {
    float_dot(
        x,
        y,
        // SAFETY: `v` is 8 readable floats; `loadu` has no alignment requirement.
        |v| unsafe { _mm256_loadu_ps(v.as_ptr()) },
        |v| v,
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn f16_avx2(x: &[half::f16], y: &[half::f16]) -> f32 {
    float_dot(
        x,
        y,
        // SAFETY: `v` is 16 readable bytes; `loadu` has no alignment requirement.
        |v| _mm256_cvtph_ps(unsafe { _mm_loadu_si128(v.as_ptr().cast()) }),
        |v| h2f(v),
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn bf16_avx2(x: &[half::bf16], y: &[half::bf16]) -> f32 {
    float_dot(
        x,
        y,
        |v| {
            // SAFETY: `v` is 16 readable bytes; `loadu` has no alignment requirement.
            let raw = unsafe { _mm_loadu_si128(v.as_ptr().cast()) };
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(raw)))
        },
        half::bf16::to_f32,
    )
}

/// Packs 32 i32 (four vectors of 8, in order) to 32 bytes, keeping each value's low byte
/// (the same as the scalar `as i8`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn pack_low_bytes(v: [__m256i; 4]) -> __m256i {
    let ff = _mm256_set1_epi32(0xFF);
    let [a, b, c, d] = v.map(|v| _mm256_and_si256(v, ff));
    let ab = _mm256_packus_epi32(a, b);
    let cd = _mm256_packus_epi32(c, d);
    let abcd = _mm256_packus_epi16(ab, cd);
    _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Stores 32 bytes.
#[inline(always)]
fn store32(dst: &mut [i8; 32], v: __m256i) {
    // SAFETY: `dst` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), v) }
}

/// Loads `x[off..off + 8]` (in bounds: callers walk whole blocks; zeros otherwise).
#[inline(always)]
fn load8f(x: &[f32], off: usize) -> __m256 {
    let a: &[f32; 8] = x
        .get(off..off + 8)
        .and_then(|c| c.try_into().ok())
        .unwrap_or(&[0.0; 8]);
    // SAFETY: `a` is 8 readable floats; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_ps(a.as_ptr()) }
}

/// Quantizes one 32-element block as ggml's x86 `quantize_row_q8_0`/`_q8_1` do
/// (arch/x86/quants.c): `d = amax / 127`, `x * (127 / amax)` rounded half to even, converted
/// to i32, packed to i8 with signed saturation. Returns `d` and the sum of the i32 quants.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_block(x: &[f32], qs: &mut [i8; 32]) -> (f32, i32) {
    let abs_mask = _mm256_set1_ps(-0.0);
    let v = [load8f(x, 0), load8f(x, 8), load8f(x, 16), load8f(x, 24)];
    let mut m = _mm256_setzero_ps();
    for v in v {
        m = _mm256_max_ps(m, _mm256_andnot_ps(abs_mask, v));
    }
    let amax = hmax_ps(m);
    let d = amax / 127.0;
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let [i0, i1, i2, i3] = v.map(|v| {
        let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(v, id),
        );
        _mm256_cvtps_epi32(r)
    });
    let sum = hsum_epi32(_mm256_add_epi32(
        _mm256_add_epi32(i0, i1),
        _mm256_add_epi32(i2, i3),
    ));
    let packed = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    let ordered = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    store32(qs, ordered);
    (d, sum)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q8_0_avx2(src: &[f32], dst: &mut [BlockQ8_0]) {
    for (x, y) in src.chunks_exact(32).zip(dst) {
        let (d, _) = q8_block(x, &mut y.qs);
        y.d = f2h(d);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q8_1_avx2(src: &[f32], dst: &mut [BlockQ8_1]) {
    for (x, y) in src.chunks_exact(32).zip(dst) {
        let (d, sum) = q8_block(x, &mut y.qs);
        y.d = f2h(d);
        y.s = f2h(d * sum as f32);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn quantize_q8_k_avx2(src: &[f32], dst: &mut [BlockQ8K]) {
    let abs_mask = _mm256_set1_ps(-0.0);
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        let mut m = _mm256_setzero_ps();
        for off in (0..QK_K).step_by(8) {
            m = _mm256_max_ps(m, _mm256_andnot_ps(abs_mask, load8f(x, off)));
        }
        let amax = hmax_ps(m);
        if amax == 0.0 || amax.is_nan() {
            // NaN-free inputs never get here with NaN; leave odd inputs to the reference.
            quant::q8_k(x, core::slice::from_mut(y));
            continue;
        }
        // The first element of largest magnitude, with its sign (as the reference picks it).
        let max = x.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -127.0 / max;
        let is = _mm256_set1_ps(iscale);
        let magic = _mm256_set1_ps(12_582_912.0);
        let mant = _mm256_set1_epi32(0x007f_ffff);
        let bias = _mm256_set1_epi32(0x0040_0000);
        let top = _mm256_set1_epi32(127);
        for (c, qs) in y.qs.chunks_exact_mut(32).enumerate() {
            let q: [__m256i; 4] = core::array::from_fn(|k| {
                // ggml's `nearest_int`, lane by lane.
                let v = _mm256_add_ps(_mm256_mul_ps(is, load8f(x, 32 * c + 8 * k)), magic);
                let i = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(v), mant), bias);
                _mm256_min_epi32(i, top)
            });
            if let Ok(qs) = <&mut [i8; 32]>::try_from(qs) {
                store32(qs, pack_low_bytes(q));
            }
        }
        for (s, q) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
            *s = q.iter().map(|&q| q as i16).sum();
        }
        y.d = 1.0 / iscale;
    }
}

macro_rules! wrap {
    ($(#[$doc:meta])* $name:ident, $inner:ident, $scalar:path, $w:ty, $a:ty) => {
        $(#[$doc])*
        pub(crate) fn $name(x: &[$w], y: &[$a]) -> f32 {
            if has_avx2() {
                // SAFETY: AVX2, FMA and F16C are present (checked just above).
                unsafe { $inner(x, y) }
            } else {
                $scalar(x, y)
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, $quad:ident, $inner:ident, $scalar:path, $w:ty, $a:ty) => {
        $(#[$doc])*
        pub(crate) fn $name(x: &[$w], y: &[$a]) -> f32 {
            if has_avx2() {
                // SAFETY: AVX2, FMA and F16C are present (checked just above).
                let [r] = unsafe { $inner(x, [y]) };
                r
            } else {
                $scalar(x, y)
            }
        }

        $(#[$doc])*
        /// Four activation rows per pass; bit-identical to four single calls.
        pub(crate) fn $quad(x: &[$w], ys: [&[$a]; 4]) -> [f32; 4] {
            if has_avx2() {
                // SAFETY: AVX2, FMA and F16C are present (checked just above).
                unsafe { $inner(x, ys) }
            } else {
                ys.map(|y| $scalar(x, y))
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, $quad:ident, $inner:ident, $vnni:ident, $scalar:path,
     $w:ty, $a:ty) => {
        $(#[$doc])*
        pub(crate) fn $name(x: &[$w], y: &[$a]) -> f32 {
            let [r] = if has_avx512_vnni() {
                // SAFETY: AVX2, FMA, F16C, AVX512-VNNI and AVX512-VL are present (checked).
                unsafe { $vnni(x, [y]) }
            } else if has_avx2() {
                // SAFETY: AVX2, FMA and F16C are present (checked just above).
                unsafe { $inner(x, [y]) }
            } else {
                [$scalar(x, y)]
            };
            r
        }

        $(#[$doc])*
        /// Four activation rows per pass; bit-identical to four single calls.
        pub(crate) fn $quad(x: &[$w], ys: [&[$a]; 4]) -> [f32; 4] {
            if has_avx512_vnni() {
                // SAFETY: AVX2, FMA, F16C, AVX512-VNNI and AVX512-VL are present (checked).
                unsafe { $vnni(x, ys) }
            } else if has_avx2() {
                // SAFETY: AVX2, FMA and F16C are present (checked just above).
                unsafe { $inner(x, ys) }
            } else {
                ys.map(|y| $scalar(x, y))
            }
        }
    };
}
pub(super) use wrap;

wrap!(
    /// Q4_1 · Q8_1.
    q4_1_q8_1,
    q4_1_q8_1_x4_256,
    q4_1_q8_1_avx2, q4_1_q8_1_vnni, dot::q4_1_q8_1, BlockQ4_1, BlockQ8_1
);

/// Q4_1 · Q8_1, four activation rows per pass; bit-identical to four single calls. (With
/// AVX-512 the packed-tile kernels take every product of two or more rows.)
pub(crate) fn q4_1_q8_1_x4(x: &[BlockQ4_1], ys: [&[BlockQ8_1]; 4]) -> [f32; 4] {
    q4_1_q8_1_x4_256(x, ys)
}
wrap!(
    /// Q5_0 · Q8_0.
    q5_0_q8_0,
    q5_0_q8_0_x4_256,
    q5_0_q8_0_avx2, q5_0_q8_0_vnni, dot::q5_0_q8_0, BlockQ5_0, BlockQ8_0
);
wrap!(
    /// Q8_0 · Q8_0.
    q8_0_q8_0,
    q8_0_q8_0_x4_256,
    q8_0_q8_0_avx2, q8_0_q8_0_vnni, dot::q8_0_q8_0, BlockQ8_0, BlockQ8_0
);
wrap!(
    /// F32 · F32.
    f32s, f32_avx2, dot::f32s, f32, f32
);
wrap!(
    /// F16 · F16.
    f16s, f16_avx2, dot::f16s, half::f16, half::f16
);
wrap!(
    /// BF16 · BF16.
    bf16s, bf16_avx2, dot::bf16s, half::bf16, half::bf16
);
wrap!(
    /// Q4_K · Q8_K.
    q4_k_q8_k,
    q4_k_q8_k_x4,
    q4_k_q8_k_avx2,
    dot::q4_k_q8_k,
    BlockQ4K,
    BlockQ8K
);
wrap!(
    /// Q4_K · Q8_K in the order of ggml's x86 Q4_K gemm (rows of a prompt pass in fours).
    q4_k_q8_k_grouped,
    q4_k_q8_k_grouped_x4,
    q4_k_q8_k_grouped_avx2,
    dot::q4_k_q8_k_grouped,
    BlockQ4K,
    BlockQ8K
);
wrap!(
    /// Q6_K · Q8_K.
    q6_k_q8_k,
    q6_k_q8_k_x4,
    q6_k_q8_k_avx2,
    dot::q6_k_q8_k,
    BlockQ6K,
    BlockQ8K
);
wrap!(
    /// Q6_K · Q8_K in the order of ggml's tiled K-quant matmul (prompt passes of 8+ rows).
    q6_k_q8_k_tiled,
    q6_k_q8_k_tiled_x4,
    q6_k_q8_k_tiled_avx2,
    dot::q6_k_q8_k_tiled,
    BlockQ6K,
    BlockQ8K
);

wrap!(
    /// Q2_K · Q8_K (ggml's AVX2 `vec_dot` order).
    q2_k_q8_k,
    q2_k_q8_k_x4,
    q2_k_q8_k_avx2,
    dot::q2_k_q8_k,
    BlockQ2K,
    BlockQ8K
);
wrap!(
    /// Q2_K · Q8_K in the order of ggml's repacked gemv (AVX-512 CPUs).
    q2_k_q8_k_repacked,
    q2_k_q8_k_repacked_x4,
    q2_k_q8_k_repacked_avx2,
    dot::q2_k_q8_k_repacked,
    BlockQ2K,
    BlockQ8K
);
wrap!(
    /// Q2_K · Q8_K in the order of ggml's repacked gemm (rows of a prompt pass in fours).
    q2_k_q8_k_repacked_grouped,
    q2_k_q8_k_repacked_grouped_x4,
    q2_k_q8_k_repacked_grouped_avx2,
    dot::q2_k_q8_k_repacked_grouped,
    BlockQ2K,
    BlockQ8K
);
wrap!(
    /// Q2_K · Q8_K in the order of ggml's tiled K-quant matmul (prompt passes of 8+ rows).
    q2_k_q8_k_tiled,
    q2_k_q8_k_tiled_x4,
    q2_k_q8_k_tiled_avx2,
    dot::q2_k_q8_k_tiled,
    BlockQ2K,
    BlockQ8K
);

wrap!(
    /// Q3_K · Q8_K (ggml's AVX2 `vec_dot` order).
    q3_k_q8_k,
    q3_k_q8_k_x4,
    q3_k_q8_k_avx2,
    dot::q3_k_q8_k,
    BlockQ3K,
    BlockQ8K
);
wrap!(
    /// Q3_K · Q8_K in the order of ggml's tiled K-quant matmul (prompt passes of 8+ rows).
    q3_k_q8_k_tiled,
    q3_k_q8_k_tiled_x4,
    q3_k_q8_k_tiled_avx2,
    dot::q3_k_q8_k_tiled,
    BlockQ3K,
    BlockQ8K
);

/// Quantizes activations to Q8_0.
pub(crate) fn quantize_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C are present (checked just above).
        unsafe { quantize_q8_0_avx2(src, dst) }
    } else {
        quant::q8_0(src, dst)
    }
}

/// Quantizes activations to Q8_1.
pub(crate) fn quantize_q8_1(src: &[f32], dst: &mut [BlockQ8_1]) {
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C are present (checked just above).
        unsafe { quantize_q8_1_avx2(src, dst) }
    } else {
        quant::q8_1(src, dst)
    }
}

/// Quantizes activations to Q8_K.
pub(crate) fn quantize_q8_k(src: &[f32], dst: &mut [BlockQ8K]) {
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C are present (checked just above).
        unsafe { quantize_q8_k_avx2(src, dst) }
    } else {
        quant::q8_k(src, dst)
    }
}

/// Every instruction-set level against the scalar twin (the public API only reaches the best
/// level this CPU has, so the lower ones are called here directly).
/// Q4_1 · Q8_1, four weight rows per pass over one activation row; bit-identical to four
/// single calls.
pub(crate) fn q4_1_q8_1_r4(xs: [&[BlockQ4_1]; 4], y: &[BlockQ8_1]) -> [f32; 4] {
    if has_avx512() {
        // SAFETY: AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI are present (checked).
        unsafe { super::avx512::q4_1_q8_1_r4_512(xs, y) }
    } else if has_avx512_vnni() {
        // SAFETY: AVX2, FMA, F16C, AVX512-VNNI and AVX512-VL are present (checked).
        unsafe { q4_1_q8_1_r4_vnni(xs, y) }
    } else if has_avx2() {
        // SAFETY: AVX2, FMA and F16C are present (checked just above).
        unsafe { q4_1_q8_1_r4_avx2(xs, y) }
    } else {
        xs.map(|x| dot::q4_1_q8_1(x, y))
    }
}

/// Q4_K · Q8_K in the order of ggml's x86 Q4_K gemm, eight activation rows per pass over a
/// weight row (AVX-512 only; the selector offers it nowhere else); bit-identical to eight
/// single calls.
pub(crate) fn q4_k_q8_k_grouped_x8(x: &[BlockQ4K], ys: [&[BlockQ8K]; 8]) -> [f32; 8] {
    if has_avx512() {
        // SAFETY: AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI are present (checked).
        unsafe { super::avx512::q4_k_q8_k_grouped_x8_512(x, ys) }
    } else {
        ys.map(|y| q4_k_q8_k_grouped(x, y))
    }
}

/// Q6_K · Q8_K in the order of ggml's tiled K-quant matmul, eight activation rows per pass
/// over a weight row (AVX-512 only; the selector offers it nowhere else); bit-identical to
/// eight single calls.
pub(crate) fn q6_k_q8_k_tiled_x8(x: &[BlockQ6K], ys: [&[BlockQ8K]; 8]) -> [f32; 8] {
    if has_avx512() {
        // SAFETY: AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI are present (checked).
        unsafe { super::avx512::q6_k_q8_k_tiled_x8_512(x, ys) }
    } else {
        ys.map(|y| q6_k_q8_k_tiled(x, y))
    }
}

/// Q4_1 · Q8_1, eight activation rows per pass over a weight row; bit-identical to eight
/// single calls.
pub(crate) fn q4_1_q8_1_x8(x: &[BlockQ4_1], ys: [&[BlockQ8_1]; 8]) -> [f32; 8] {
    if has_avx512_vnni() {
        // SAFETY: AVX2, FMA, F16C, AVX512-VNNI and AVX512-VL are present (checked).
        unsafe { q4_1_q8_1_vnni::<8>(x, ys) }
    } else if has_avx2() {
        // SAFETY: AVX2, FMA and F16C are present (checked just above).
        unsafe { q4_1_q8_1_avx2::<8>(x, ys) }
    } else {
        ys.map(|y| dot::q4_1_q8_1(x, y))
    }
}

#[cfg(test)]
mod level_tests {
    use super::*;
    use bytemuck::Zeroable;
    use half::f16;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u8 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 56) as u8
        }
        fn fill<T: bytemuck::Pod>(&mut self, v: &mut [T]) {
            for b in bytemuck::cast_slice_mut::<T, u8>(v) {
                *b = self.next();
            }
        }
    }

    /// Random blocks (all byte patterns) with the f16 fields set by `set`.
    fn blocks<T: bytemuck::Pod + Zeroable>(
        rng: &mut Rng,
        n: usize,
        set: impl Fn(&mut T),
    ) -> Vec<T> {
        let mut v = vec![T::zeroed(); n];
        rng.fill(&mut v);
        v.iter_mut().for_each(set);
        v
    }

    type Kernel<W, A> = fn(&[W], &[A]) -> f32;
    type Simd<W, A, const M: usize> = unsafe fn(&[W], [&[A]; M]) -> [f32; M];

    /// Runs `check` on the scalar result and each available SIMD level's result, one row at a
    /// time and four rows per pass (which must be bit-identical to one at a time).
    fn levels<W, A>(
        x: &[W],
        y: &[A],
        scalar: Kernel<W, A>,
        simd: [(Simd<W, A, 1>, Simd<W, A, 4>); 2],
        check: impl Fn(&str, f32, f32),
    ) {
        let want = scalar(x, y);
        for (level, (one, four)) in ["avx2", "vnni"].into_iter().zip(simd) {
            let present = if level == "avx2" {
                has_avx2()
            } else {
                has_avx512_vnni()
            };
            if !present {
                continue;
            }
            // SAFETY: the instruction sets of this level are present (checked just above).
            let ([got], quad) = unsafe { (one(x, [y]), four(x, [y, y, y, y])) };
            check(level, want, got);
            for q in quad {
                assert_eq!(
                    q.to_bits(),
                    got.to_bits(),
                    "{level}: four rows per pass differ"
                );
            }
        }
    }

    macro_rules! simd_levels {
        ($avx2:ident, $vnni:ident) => {
            [($avx2::<1>, $avx2::<4>), ($vnni::<1>, $vnni::<4>)]
        };
    }

    #[test]
    fn k4_unpack_matches_get_scale_min_k4() {
        let mut rng = Rng(5);
        for _ in 0..1000 {
            let mut packed = [0u8; 12];
            rng.fill(&mut packed);
            let u = k4_unpack(&packed);
            let bytes: Vec<u8> = u.iter().flat_map(|w| w.to_le_bytes()).collect();
            for j in 0..8 {
                let (sc, m) = crate::dequant::scale_min_k4(j, &packed);
                assert_eq!(
                    (bytes[j], bytes[8 + j]),
                    (sc, m),
                    "sub-block {j} of {packed:?}"
                );
            }
        }
    }

    #[test]
    fn every_level_matches_the_scalar_twin() {
        let mut rng = Rng(99);
        let one = f16::from_f32(1.0);
        let scales = [0.5f32, 1.0, 1.0 / 64.0, 0.37, 1.3];
        for nb in 1..48 {
            for &sc in &scales {
                let h = f16::from_f32(sc);
                // Every level follows ggml's x86 float order lane by lane, as the scalar twin
                // does: bit-identical whatever the scales.
                let check = |what: &str, want: f32, got: f32| {
                    assert_eq!(
                        want.to_bits(),
                        got.to_bits(),
                        "{what} nb={nb} scale={sc}: {want} vs {got}"
                    );
                };
                let q8: Vec<BlockQ8_0> = blocks(&mut rng, nb, |b: &mut BlockQ8_0| b.d = h);
                let q81: Vec<BlockQ8_1> = blocks(&mut rng, nb, |b: &mut BlockQ8_1| {
                    b.d = h;
                    b.s = one;
                });
                let w41: Vec<BlockQ4_1> = blocks(&mut rng, nb, |b: &mut BlockQ4_1| {
                    b.d = h;
                    b.m = one;
                });
                levels(
                    &w41,
                    &q81,
                    dot::q4_1_q8_1,
                    simd_levels!(q4_1_q8_1_avx2, q4_1_q8_1_vnni),
                    check,
                );
                let w50: Vec<BlockQ5_0> = blocks(&mut rng, nb, |b: &mut BlockQ5_0| b.d = h);
                levels(
                    &w50,
                    &q8,
                    dot::q5_0_q8_0,
                    simd_levels!(q5_0_q8_0_avx2, q5_0_q8_0_vnni),
                    check,
                );
                let w80: Vec<BlockQ8_0> = blocks(&mut rng, nb, |b: &mut BlockQ8_0| b.d = h);
                levels(
                    &w80,
                    &q8,
                    dot::q8_0_q8_0,
                    simd_levels!(q8_0_q8_0_avx2, q8_0_q8_0_vnni),
                    check,
                );
            }
        }
    }
}

/// The wide kernels of the legacy types without a min, through their AVX-512 versions where
/// the CPU has them: four weight rows per activation row (`$r4`), four and eight activation
/// rows per weight row (`$x4`, `$x8`); each bit-identical to single calls. The short form is for
/// a type whose products of several rows the packed-tile kernels take whenever AVX-512 is
/// there (Q5_0): its four-activation-row kernel is the 256-bit one.
macro_rules! legacy_wide {
    (@r4 $r4:ident, $r4_512:ident, $one:ident, $w:ty) => {
        /// Four weight rows per pass over one activation row.
        pub(crate) fn $r4(xs: [&[$w]; 4], y: &[BlockQ8_0]) -> [f32; 4] {
            if has_avx512() {
                // SAFETY: AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI are present (checked).
                unsafe { super::avx512::$r4_512(xs, y) }
            } else {
                xs.map(|x| $one(x, y))
            }
        }
    };
    ($r4:ident, $x4:ident, $r4_512:ident, $x4_256:ident, $one:ident, $w:ty) => {
        legacy_wide!(@r4 $r4, $r4_512, $one, $w);

        /// Four activation rows per pass over a weight row.
        pub(crate) fn $x4(x: &[$w], ys: [&[BlockQ8_0]; 4]) -> [f32; 4] {
            $x4_256(x, ys)
        }
    };
    ($r4:ident, $x4:ident, $x8:ident, $x8r4:ident, $r4_512:ident, $xm_512:ident,
     $x4_256:ident, $one:ident, $w:ty) => {
        legacy_wide!(@r4 $r4, $r4_512, $one, $w);

        /// Four activation rows per pass over a weight row.
        pub(crate) fn $x4(x: &[$w], ys: [&[BlockQ8_0]; 4]) -> [f32; 4] {
            if has_avx512() {
                // SAFETY: AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI are present (checked).
                let [r] = unsafe { super::avx512::$xm_512([x], ys) };
                r
            } else {
                $x4_256(x, ys)
            }
        }

        /// Eight activation rows per pass over a weight row.
        pub(crate) fn $x8(x: &[$w], ys: [&[BlockQ8_0]; 8]) -> [f32; 8] {
            if has_avx512() {
                // SAFETY: AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI are present (checked).
                let [r] = unsafe { super::avx512::$xm_512([x], ys) };
                r
            } else {
                ys.map(|y| $one(x, y))
            }
        }

        /// Eight activation rows per pass over four weight rows.
        pub(crate) fn $x8r4(xs: [&[$w]; 4], ys: [&[BlockQ8_0]; 8]) -> [[f32; 8]; 4] {
            if has_avx512() {
                // SAFETY: AVX2, FMA, F16C and AVX-512 F/BW/VL/VNNI are present (checked).
                unsafe { super::avx512::$xm_512(xs, ys) }
            } else {
                xs.map(|x| ys.map(|y| $one(x, y)))
            }
        }
    };
}

legacy_wide!(
    q8_0_q8_0_r4,
    q8_0_q8_0_x4,
    q8_0_q8_0_x8,
    q8_0_q8_0_x8r4,
    q8_0_q8_0_r4_512,
    q8_0_q8_0_xm_512,
    q8_0_q8_0_x4_256,
    q8_0_q8_0,
    BlockQ8_0
);
legacy_wide!(
    q5_0_q8_0_r4,
    q5_0_q8_0_x4,
    q5_0_q8_0_r4_512,
    q5_0_q8_0_x4_256,
    q5_0_q8_0,
    BlockQ5_0
);
