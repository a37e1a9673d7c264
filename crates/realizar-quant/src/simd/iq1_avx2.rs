//! AVX2 + FMA kernels of IQ1_S and IQ1_M against Q8_K. IQ1_S: the SIMD twins of
//! `dot::iq1_s_q8_k` (ggml's
//! `ggml_vec_dot_iq1_s_q8_K` AVX2 path: `maddubs(|g|, sign(y, g))`, the factors with `madd`,
//! one FMA per lane and block, the shifts' exact sum in a scalar FMA) and
//! `dot::iq1_s_q8_k_tiled` (ggml's tiled matmul: codes `8 g ± 1`, the exact integer sum per
//! block, one FMA per block). IQ1_M likewise (`dot::iq1_m_q8_k`: the shifts' `±y` in a second
//! set of lanes; `dot::iq1_m_q8_k_tiled`).
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use crate::blocks::*;
use crate::dot;
use crate::grids::IQ1S_GRID;

use super::avx2::{chunk32i, hsum_i32, hsum_ps, load32i, widen_i8, wrap};
use super::has_avx2;

/// The 32 grid values (-1, 0, 1) of sub-block `ib`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn values(x: &BlockIq1S, ib: usize) -> __m256i {
    let g = |l: usize| {
        let hi = usize::from(x.qh[ib] >> (3 * l) & 7) << 8;
        IQ1S_GRID[usize::from(x.qs[4 * ib + l]) | hi] as i64
    };
    _mm256_set_epi64x(g(3), g(2), g(1), g(0))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq1_s_q8_k_avx2<const M: usize>(x: &[BlockIq1S], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    let mut acc = [_mm256_setzero_ps(); M];
    let mut acc1 = [0.0f32; M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let mut sums = [_mm256_setzero_si256(); M];
        let mut s1 = [0i32; M];
        for ib in 0..8 {
            let g = values(x, ib);
            let ag = _mm256_sign_epi8(g, g);
            let f = x.factor(ib);
            let fv = _mm256_set1_epi16(f as i16);
            for ((y, sum), s1) in ys.iter().zip(&mut sums).zip(&mut s1) {
                let Some(y) = y.get(b) else { continue };
                let q = _mm256_sign_epi8(load32i(chunk32i(&y.qs, 32 * ib)), g);
                *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(_mm256_maddubs_epi16(ag, q), fv));
                let bs = i32::from(y.bsums[2 * ib]) + i32::from(y.bsums[2 * ib + 1]);
                *s1 += if x.shift_negative(ib) { -bs } else { bs } * f;
            }
        }
        let dx = x.d.to_f32();
        for (((y, s), a), (a1, s1)) in ys
            .iter()
            .zip(sums)
            .zip(&mut acc)
            .zip(acc1.iter_mut().zip(s1))
        {
            let Some(y) = y.get(b) else { continue };
            let d = y.d * dx;
            *a = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), *a);
            *a1 = (s1 as f32).mul_add(d, *a1);
        }
    }
    let mut out = [0.0f32; M];
    for ((o, a), a1) in out.iter_mut().zip(acc).zip(acc1) {
        *o = hsum_ps(a) + 0.125 * a1;
    }
    out
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq1_s_q8_k_tiled_avx2<const M: usize>(x: &[BlockIq1S], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    let mut acc = [0.0f32; M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let mut sums = [_mm256_setzero_si256(); M];
        for ib in 0..8 {
            let delta = if x.shift_negative(ib) { -1 } else { 1 };
            // Codes 8 g ± 1 (|c| <= 9), widened with the activations to 16 bits: exact.
            let v = values(x, ib);
            let v2 = _mm256_add_epi8(v, v);
            let v4 = _mm256_add_epi8(v2, v2);
            let c = _mm256_add_epi8(_mm256_add_epi8(v4, v4), _mm256_set1_epi8(delta));
            let [c0, c1] = widen_i8(c);
            let f = _mm256_set1_epi32(x.factor(ib));
            for (y, sum) in ys.iter().zip(&mut sums) {
                let Some(y) = y.get(b) else { continue };
                let q = load32i(chunk32i(&y.qs, 32 * ib));
                let [q0, q1] = widen_i8(q);
                let p = _mm256_add_epi32(_mm256_madd_epi16(c0, q0), _mm256_madd_epi16(c1, q1));
                *sum = _mm256_add_epi32(*sum, _mm256_mullo_epi32(p, f));
            }
        }
        let d0 = x.d.to_f32() * 0.125;
        for ((y, s), a) in ys.iter().zip(sums).zip(&mut acc) {
            let Some(y) = y.get(b) else { continue };
            *a = (d0 * hsum_i32(s) as f32).mul_add(y.d, *a);
        }
    }
    acc
}

/// The 32 grid values of IQ1_M sub-block `ib`, its shifts' sign bytes (1 or -1 per group of
/// eight) and the factors of its halves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn iq1_m_parts(x: &BlockIq1M, ib: usize) -> (__m256i, __m256i, [i32; 2]) {
    let entry = |l: usize| {
        let q = x.qh[2 * ib + l / 2];
        let hi = usize::from(q >> (4 * (l % 2)) & 7) << 8;
        IQ1S_GRID[usize::from(x.qs[4 * ib + l]) | hi] as i64
    };
    let sign = |l: usize| {
        if x.shift_negative(32 * ib + 8 * l) {
            -1i64
        } else {
            0x0101_0101_0101_0101
        }
    };
    (
        _mm256_set_epi64x(entry(3), entry(2), entry(1), entry(0)),
        _mm256_set_epi64x(sign(3), sign(2), sign(1), sign(0)),
        [x.factor(ib, 0), x.factor(ib, 1)],
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq1_m_q8_k_avx2<const M: usize>(x: &[BlockIq1M], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    let ones = _mm256_set1_epi8(1);
    let mut acc1 = [_mm256_setzero_ps(); M];
    let mut acc2 = [_mm256_setzero_ps(); M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let mut s1 = [_mm256_setzero_si256(); M];
        let mut s2 = [_mm256_setzero_si256(); M];
        for ib in 0..8 {
            let (g, delta, [f0, f1]) = iq1_m_parts(x, ib);
            let ag = _mm256_sign_epi8(g, g);
            let fv = _mm256_set_m128i(_mm_set1_epi16(f1 as i16), _mm_set1_epi16(f0 as i16));
            for ((y, a), c) in ys.iter().zip(&mut s1).zip(&mut s2) {
                let Some(y) = y.get(b) else { continue };
                let q = load32i(chunk32i(&y.qs, 32 * ib));
                let p1 = _mm256_maddubs_epi16(ag, _mm256_sign_epi8(q, g));
                let p2 = _mm256_maddubs_epi16(ones, _mm256_sign_epi8(q, delta));
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(p1, fv));
                *c = _mm256_add_epi32(*c, _mm256_madd_epi16(p2, fv));
            }
        }
        let dx = x.d().to_f32();
        for (((y, (a1, a2)), v1), v2) in ys
            .iter()
            .zip(acc1.iter_mut().zip(acc2.iter_mut()))
            .zip(s1)
            .zip(s2)
        {
            let Some(y) = y.get(b) else { continue };
            let d = _mm256_set1_ps(y.d * dx);
            *a1 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(v1), *a1);
            *a2 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(v2), *a2);
        }
    }
    let mut out = [0.0f32; M];
    for ((o, a1), a2) in out.iter_mut().zip(acc1).zip(acc2) {
        *o = hsum_ps(a1) + 0.125 * hsum_ps(a2);
    }
    out
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq1_m_q8_k_tiled_avx2<const M: usize>(x: &[BlockIq1M], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    let mut acc = [0.0f32; M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let mut sums = [_mm256_setzero_si256(); M];
        for ib in 0..8 {
            let (v, delta, [f0, f1]) = iq1_m_parts(x, ib);
            // Codes 8 g ± 1 (|c| <= 9), widened with the activations to 16 bits: exact.
            let v2 = _mm256_add_epi8(v, v);
            let v4 = _mm256_add_epi8(v2, v2);
            let c = _mm256_add_epi8(_mm256_add_epi8(v4, v4), delta);
            let [c0, c1] = widen_i8(c);
            let (f0, f1) = (_mm256_set1_epi32(f0), _mm256_set1_epi32(f1));
            for (y, sum) in ys.iter().zip(&mut sums) {
                let Some(y) = y.get(b) else { continue };
                let q = load32i(chunk32i(&y.qs, 32 * ib));
                let [q0, q1] = widen_i8(q);
                let p0 = _mm256_mullo_epi32(_mm256_madd_epi16(c0, q0), f0);
                let p1 = _mm256_mullo_epi32(_mm256_madd_epi16(c1, q1), f1);
                *sum = _mm256_add_epi32(*sum, _mm256_add_epi32(p0, p1));
            }
        }
        let d0 = x.d().to_f32() * 0.125;
        for ((y, s), a) in ys.iter().zip(sums).zip(&mut acc) {
            let Some(y) = y.get(b) else { continue };
            *a = (d0 * hsum_i32(s) as f32).mul_add(y.d, *a);
        }
    }
    acc
}

wrap!(
    /// IQ1_M · Q8_K (`dot::iq1_m_q8_k`).
    iq1_m_q8_k, iq1_m_q8_k_x4, iq1_m_q8_k_avx2, dot::iq1_m_q8_k, BlockIq1M, BlockQ8K
);
wrap!(
    /// IQ1_M · Q8_K in the order of ggml's tiled matmul (`dot::iq1_m_q8_k_tiled`).
    iq1_m_q8_k_tiled,
    iq1_m_q8_k_tiled_x4,
    iq1_m_q8_k_tiled_avx2,
    dot::iq1_m_q8_k_tiled,
    BlockIq1M,
    BlockQ8K
);
wrap!(
    /// IQ1_S · Q8_K (`dot::iq1_s_q8_k`).
    iq1_s_q8_k, iq1_s_q8_k_x4, iq1_s_q8_k_avx2, dot::iq1_s_q8_k, BlockIq1S, BlockQ8K
);
wrap!(
    /// IQ1_S · Q8_K in the order of ggml's tiled matmul (`dot::iq1_s_q8_k_tiled`).
    iq1_s_q8_k_tiled,
    iq1_s_q8_k_tiled_x4,
    iq1_s_q8_k_tiled_avx2,
    dot::iq1_s_q8_k_tiled,
    BlockIq1S,
    BlockQ8K
);

#[cfg(test)]
mod tests {
    use super::super::test_util::{blocks, check_twins, q8k_rows, Rng};
    use super::*;
    use half::f16;

    /// Both orders of both types, one and four activation rows, bit for bit against the scalar
    /// twins on random bytes (every index, scale and shift; every activation byte and bsum).
    #[test]
    fn kernels_match_the_scalar_twins() {
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for nb in 1..10 {
            let ys = q8k_rows(&mut rng, nb);
            let x = blocks(&mut rng, nb, |b: &mut BlockIq1S, r| {
                b.d = f16::from_f32(r.scale())
            });
            check_twins(
                &x,
                &ys,
                &[
                    (dot::iq1_s_q8_k, iq1_s_q8_k, iq1_s_q8_k_x4, "iq1_s"),
                    (
                        dot::iq1_s_q8_k_tiled,
                        iq1_s_q8_k_tiled,
                        iq1_s_q8_k_tiled_x4,
                        "iq1_s tiled",
                    ),
                ],
            );
            let xm = blocks(&mut rng, nb, |_: &mut BlockIq1M, _| {});
            check_twins(
                &xm,
                &ys,
                &[
                    (dot::iq1_m_q8_k, iq1_m_q8_k, iq1_m_q8_k_x4, "iq1_m"),
                    (
                        dot::iq1_m_q8_k_tiled,
                        iq1_m_q8_k_tiled,
                        iq1_m_q8_k_tiled_x4,
                        "iq1_m tiled",
                    ),
                ],
            );
        }
    }
}
