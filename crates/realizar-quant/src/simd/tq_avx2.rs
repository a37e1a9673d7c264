//! AVX2 + FMA kernels of the ternary types TQ1_0 and TQ2_0 against Q8_K, the SIMD twins of
//! `dot::tq1_0_q8_k` and `dot::tq2_0_q8_k`. The codes (0, 1, 2) are unpacked as ggml's x86
//! kernels unpack them (TQ1_0: multiplies by powers of three in 8-bit lanes, then the top two
//! bits of `3q / 256` through a halving add), multiplied with `maddubs` (exact: codes ≤ 3) and
//! summed into eight i32 lanes of four elements per 32-element chunk; the activations' sums
//! are subtracted per lane, then one FMA per lane and block and the horizontal sum at the end,
//! in the scalar twins' order.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use crate::blocks::*;
use crate::dot;

use super::avx2::{chunk32i, hsum_ps, load16, load32, load32i, wrap};
use super::has_avx2;

/// `q · 3^n` in every byte (8-bit wrapping, as `u8 * pow3[n]`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn times3(q: __m256i) -> __m256i {
    _mm256_add_epi8(q, _mm256_add_epi8(q, q))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn times9(q: __m256i) -> __m256i {
    _mm256_add_epi8(
        _mm256_and_si256(_mm256_slli_epi16::<3>(q), _mm256_set1_epi8(-8)),
        q,
    )
}

/// The trit `(3 q) >> 8` of every byte (0, 1 or 2), through `avg` as ggml computes it.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn top_trit(q: __m256i) -> __m256i {
    let q = _mm256_subs_epu8(q, _mm256_set1_epi8(1));
    let q = _mm256_avg_epu8(q, _mm256_avg_epu8(q, _mm256_setzero_si256()));
    _mm256_and_si256(_mm256_srli_epi16::<6>(q), _mm256_set1_epi8(3))
}

/// The eight 32-element code chunks of a TQ1_0 block (chunk `c` holds elements `32c..32c+32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tq1_codes(x: &BlockTq1_0) -> [__m256i; 8] {
    let first: &[u8; 32] = x.qs.first_chunk().unwrap_or(&[0; 32]);
    let q0 = load32(first);
    let q1 = times3(q0);
    let q2 = times9(q0);
    let q3 = times9(q1);
    let q4 = times9(q2);
    let last: &[u8; 16] = x.qs.last_chunk().unwrap_or(&[0; 16]);
    let r = load16(last);
    let r2 = _mm256_set_m128i(r, r);
    // [r·1 | r·3], [r·9 | r·27], [r·81 | qh trits].
    let r01 = _mm256_blend_epi32::<0xF0>(r2, times3(r2));
    let r9 = times9(r2);
    let r23 = _mm256_blend_epi32::<0xF0>(r9, times3(r9));
    let r4 = _mm256_castsi256_si128(times9(r9));
    let qh = i32::from_le_bytes(x.qh);
    let h = _mm256_cvtepu8_epi16(_mm_set1_epi32(qh));
    let h = _mm256_mullo_epi16(
        h,
        _mm256_set_epi16(27, 27, 27, 27, 9, 9, 9, 9, 3, 3, 3, 3, 1, 1, 1, 1),
    );
    let h = _mm256_and_si256(h, _mm256_set1_epi16(0xFF));
    let h = _mm_packus_epi16(_mm256_castsi256_si128(h), _mm256_extracti128_si256::<1>(h));
    let r45 = _mm256_set_m128i(h, r4);
    [q0, q1, q2, q3, q4, r01, r23, r45].map(|v| top_trit(v))
}

/// The eight 32-element code chunks of a TQ2_0 block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tq2_codes(x: &BlockTq2_0) -> [__m256i; 8] {
    let m = _mm256_set1_epi8(3);
    let half = |h: usize| {
        let q = load32(
            x.qs.get(32 * h..32 * h + 32)
                .and_then(|c| <&[u8; 32]>::try_from(c).ok())
                .unwrap_or(&[0; 32]),
        );
        [
            _mm256_and_si256(q, m),
            _mm256_and_si256(_mm256_srli_epi16::<2>(q), m),
            _mm256_and_si256(_mm256_srli_epi16::<4>(q), m),
            _mm256_and_si256(_mm256_srli_epi16::<6>(q), m),
        ]
    };
    let [a, b, c, d] = half(0);
    let [e, f, g, h] = half(1);
    [a, b, c, d, e, f, g, h]
}

/// `M` activation rows against one weight row of a ternary type (`codes` unpacks a block,
/// `d` its scale): the lanes of `dot::tq1_0_q8_k`, in its order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ternary<X, const M: usize>(
    x: &[X],
    ys: [&[BlockQ8K]; M],
    codes: impl Fn(&X) -> [__m256i; 8],
    d: impl Fn(&X) -> f32,
) -> [f32; M] {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let cs = codes(x);
        let dx = d(x);
        for (y, a) in ys.iter().zip(&mut acc) {
            let Some(y) = y.get(b) else { continue };
            let mut s = _mm256_setzero_si256();
            for (c, &q) in cs.iter().enumerate() {
                let p = _mm256_maddubs_epi16(q, load32i(chunk32i(&y.qs, 32 * c)));
                s = _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
            }
            // SAFETY: `bsums` is 16 i16s (32 readable bytes); `loadu` has no alignment
            // requirement.
            let bs = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
            s = _mm256_sub_epi32(s, _mm256_madd_epi16(bs, ones));
            *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(y.d * dx), *a);
        }
    }
    acc.map(|a| hsum_ps(a))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn tq1_0_q8_k_avx2<const M: usize>(x: &[BlockTq1_0], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    ternary(x, ys, |x| tq1_codes(x), |x| x.d.to_f32())
}

#[target_feature(enable = "avx2,fma,f16c")]
fn tq2_0_q8_k_avx2<const M: usize>(x: &[BlockTq2_0], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    ternary(x, ys, |x| tq2_codes(x), |x| x.d.to_f32())
}

wrap!(
    /// TQ1_0 · Q8_K (`dot::tq1_0_q8_k`).
    tq1_0_q8_k, tq1_0_q8_k_x4, tq1_0_q8_k_avx2, dot::tq1_0_q8_k, BlockTq1_0, BlockQ8K
);
wrap!(
    /// TQ2_0 · Q8_K (`dot::tq2_0_q8_k`).
    tq2_0_q8_k, tq2_0_q8_k_x4, tq2_0_q8_k_avx2, dot::tq2_0_q8_k, BlockTq2_0, BlockQ8K
);

#[cfg(test)]
mod tests {
    use super::super::test_util::{blocks, check_twins, q8k_rows, Rng};
    use super::*;
    use half::f16;

    /// The unpacked codes are the blocks' own (`BlockTq1_0::at`, `BlockTq2_0::at`) for every
    /// byte pattern.
    #[test]
    fn codes_are_the_blocks_codes() {
        if !has_avx2() {
            return;
        }
        let mut rng = Rng(99);
        let unpack = |v: __m256i| {
            let mut out = [0u8; 32];
            // SAFETY: `out` is 32 writable bytes.
            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
            out
        };
        for _ in 0..200 {
            let x1 = blocks(&mut rng, 1, |b: &mut BlockTq1_0, r| {
                b.d = f16::from_f32(r.scale())
            });
            let x2 = blocks(&mut rng, 1, |b: &mut BlockTq2_0, r| {
                b.d = f16::from_f32(r.scale())
            });
            // SAFETY: AVX2, FMA and F16C are present (checked above).
            let (c1, c2) = unsafe { (tq1_codes(&x1[0]), tq2_codes(&x2[0])) };
            for c in 0..8 {
                let (a, b) = (unpack(c1[c]), unpack(c2[c]));
                for e in 0..32 {
                    assert_eq!(a[e], x1[0].at(32 * c + e), "tq1_0 element {}", 32 * c + e);
                    assert_eq!(b[e], x2[0].at(32 * c + e), "tq2_0 element {}", 32 * c + e);
                }
            }
        }
    }

    /// One and four activation rows equal the scalar twins bit for bit.
    #[test]
    fn kernels_match_the_scalar_twins() {
        let mut rng = Rng(0x7e57_7e57_7e57_7e57);
        for nb in 1..12 {
            let ys = q8k_rows(&mut rng, nb);
            let x1 = blocks(&mut rng, nb, |b: &mut BlockTq1_0, r| {
                b.d = f16::from_f32(r.scale())
            });
            check_twins(
                &x1,
                &ys,
                &[(dot::tq1_0_q8_k, tq1_0_q8_k, tq1_0_q8_k_x4, "tq1_0")],
            );
            let x2 = blocks(&mut rng, nb, |b: &mut BlockTq2_0, r| {
                b.d = f16::from_f32(r.scale())
            });
            check_twins(
                &x2,
                &ys,
                &[(dot::tq2_0_q8_k, tq2_0_q8_k, tq2_0_q8_k_x4, "tq2_0")],
            );
        }
    }
}
