//! AVX2 + FMA kernels of the 3-bit i-quants (IQ3_XXS, IQ3_S) against Q8_K, the SIMD twins of
//! `dot::iq3_q8_k` (ggml's `ggml_vec_dot_iq3_xxs_q8_K` / `_iq3_s_q8_K` AVX2 paths: grid
//! magnitudes times sign-flipped activations with `maddubs`, sub-block factors with `madd`, one
//! FMA per lane and block) and `dot::iq3_q8_k_tiled` (ggml's tiled matmul: signs on the
//! weights, the exact integer sum per block, one FMA per block).
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use crate::blocks::*;
use crate::dot;

use super::avx2::{chunk32i, hsum_i32, hsum_ps, load32i, widen_i8, wrap};
use super::has_avx2;

/// The eight sign bytes (1, or -1 where the bit is set) of each sign byte (ggml's
/// `keven_signs_q2xs` for the bytes of even parity).
const SIGN_BYTES: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut v = 0u64;
        let mut j = 0;
        while j < 8 {
            let b: u64 = if (i >> j) & 1 == 1 { 0xFF } else { 0x01 };
            v |= b << (8 * j);
            j += 1;
        }
        t[i] = v;
        i += 1;
    }
    t
};

/// The 32 grid magnitudes of sub-block `ib`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn magnitudes<X: GridBlock>(x: &X, ib: usize) -> __m256i {
    let g = |k: usize| x.grid_word(ib, k) as i32;
    _mm256_set_epi32(g(7), g(6), g(5), g(4), g(3), g(2), g(1), g(0))
}

/// The 32 sign bytes (1 or -1) of sub-block `ib`, and the factors of its halves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signs<X: GridBlock>(x: &X, ib: usize) -> (__m256i, [i32; 2]) {
    let s = |l: usize| SIGN_BYTES[usize::from(x.sign_bits(ib, l))] as i64;
    (
        _mm256_set_epi64x(s(3), s(2), s(1), s(0)),
        [x.factor(ib, 0), x.factor(ib, 1)],
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq3_q8_k_avx2<X: GridBlock, const M: usize>(x: &[X], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    let mut acc = [_mm256_setzero_ps(); M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let mut sums = [_mm256_setzero_si256(); M];
        for ib in 0..8 {
            let g = magnitudes(x, ib);
            let (s, [f0, f1]) = signs(x, ib);
            let ls = _mm256_set_m128i(_mm_set1_epi16(f1 as i16), _mm_set1_epi16(f0 as i16));
            for (y, sum) in ys.iter().zip(&mut sums) {
                let Some(y) = y.get(b) else { continue };
                let q8 = _mm256_sign_epi8(load32i(chunk32i(&y.qs, 32 * ib)), s);
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(g, q8), ls);
                *sum = _mm256_add_epi32(*sum, p);
            }
        }
        let dx = x.d().to_f32();
        for ((y, s), a) in ys.iter().zip(sums).zip(&mut acc) {
            let Some(y) = y.get(b) else { continue };
            *a = _mm256_fmadd_ps(_mm256_set1_ps(dx * y.d), _mm256_cvtepi32_ps(s), *a);
        }
    }
    acc.map(|a| X::SCALE * hsum_ps(a))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq3_q8_k_tiled_avx2<X: GridBlock, const M: usize>(x: &[X], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    let mut acc = [0.0f32; M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let mut sums = [_mm256_setzero_si256(); M];
        for ib in 0..8 {
            let (s, [f0, f1]) = signs(x, ib);
            // Signed weights (|w| <= 62), widened with the activations to 16 bits: exact.
            let w = _mm256_sign_epi8(magnitudes(x, ib), s);
            let [w0, w1] = widen_i8(w);
            let (f0, f1) = (_mm256_set1_epi32(f0), _mm256_set1_epi32(f1));
            for (y, sum) in ys.iter().zip(&mut sums) {
                let Some(y) = y.get(b) else { continue };
                let q = load32i(chunk32i(&y.qs, 32 * ib));
                let [q0, q1] = widen_i8(q);
                let p0 = _mm256_mullo_epi32(_mm256_madd_epi16(w0, q0), f0);
                let p1 = _mm256_mullo_epi32(_mm256_madd_epi16(w1, q1), f1);
                *sum = _mm256_add_epi32(*sum, _mm256_add_epi32(p0, p1));
            }
        }
        let d0 = x.d().to_f32() * X::SCALE;
        for ((y, s), a) in ys.iter().zip(sums).zip(&mut acc) {
            let Some(y) = y.get(b) else { continue };
            *a = (d0 * hsum_i32(s) as f32).mul_add(y.d, *a);
        }
    }
    acc
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq3_xxs_q8_k_avx2<const M: usize>(x: &[BlockIq3Xxs], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    iq3_q8_k_avx2(x, ys)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq3_xxs_q8_k_tiled_avx2<const M: usize>(x: &[BlockIq3Xxs], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    iq3_q8_k_tiled_avx2(x, ys)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq2_xxs_q8_k_avx2<const M: usize>(x: &[BlockIq2Xxs], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    iq3_q8_k_avx2(x, ys)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq2_xxs_q8_k_tiled_avx2<const M: usize>(x: &[BlockIq2Xxs], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    iq3_q8_k_tiled_avx2(x, ys)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq2_xs_q8_k_avx2<const M: usize>(x: &[BlockIq2Xs], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    iq3_q8_k_avx2(x, ys)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq2_xs_q8_k_tiled_avx2<const M: usize>(x: &[BlockIq2Xs], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    iq3_q8_k_tiled_avx2(x, ys)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq2_s_q8_k_avx2<const M: usize>(x: &[BlockIq2S], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    iq3_q8_k_avx2(x, ys)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq2_s_q8_k_tiled_avx2<const M: usize>(x: &[BlockIq2S], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    iq3_q8_k_tiled_avx2(x, ys)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq3_s_q8_k_avx2<const M: usize>(x: &[BlockIq3S], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    iq3_q8_k_avx2(x, ys)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq3_s_q8_k_tiled_avx2<const M: usize>(x: &[BlockIq3S], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    iq3_q8_k_tiled_avx2(x, ys)
}

wrap!(
    /// IQ3_XXS · Q8_K (`dot::iq3_xxs_q8_k`).
    iq3_xxs_q8_k, iq3_xxs_q8_k_x4, iq3_xxs_q8_k_avx2, dot::iq3_xxs_q8_k, BlockIq3Xxs, BlockQ8K
);
wrap!(
    /// IQ3_XXS · Q8_K in the order of ggml's tiled matmul (`dot::iq3_xxs_q8_k_tiled`).
    iq3_xxs_q8_k_tiled,
    iq3_xxs_q8_k_tiled_x4,
    iq3_xxs_q8_k_tiled_avx2,
    dot::iq3_xxs_q8_k_tiled,
    BlockIq3Xxs,
    BlockQ8K
);
wrap!(
    /// IQ2_XXS · Q8_K (`dot::iq2_xxs_q8_k`).
    iq2_xxs_q8_k, iq2_xxs_q8_k_x4, iq2_xxs_q8_k_avx2, dot::iq2_xxs_q8_k, BlockIq2Xxs, BlockQ8K
);
wrap!(
    /// IQ2_XXS · Q8_K in the order of ggml's tiled matmul (`dot::iq2_xxs_q8_k_tiled`).
    iq2_xxs_q8_k_tiled,
    iq2_xxs_q8_k_tiled_x4,
    iq2_xxs_q8_k_tiled_avx2,
    dot::iq2_xxs_q8_k_tiled,
    BlockIq2Xxs,
    BlockQ8K
);
wrap!(
    /// IQ2_XS · Q8_K (`dot::iq2_xs_q8_k`).
    iq2_xs_q8_k, iq2_xs_q8_k_x4, iq2_xs_q8_k_avx2, dot::iq2_xs_q8_k, BlockIq2Xs, BlockQ8K
);
wrap!(
    /// IQ2_XS · Q8_K in the order of ggml's tiled matmul (`dot::iq2_xs_q8_k_tiled`).
    iq2_xs_q8_k_tiled,
    iq2_xs_q8_k_tiled_x4,
    iq2_xs_q8_k_tiled_avx2,
    dot::iq2_xs_q8_k_tiled,
    BlockIq2Xs,
    BlockQ8K
);
wrap!(
    /// IQ2_S · Q8_K (`dot::iq2_s_q8_k`).
    iq2_s_q8_k, iq2_s_q8_k_x4, iq2_s_q8_k_avx2, dot::iq2_s_q8_k, BlockIq2S, BlockQ8K
);
wrap!(
    /// IQ2_S · Q8_K in the order of ggml's tiled matmul (`dot::iq2_s_q8_k_tiled`).
    iq2_s_q8_k_tiled,
    iq2_s_q8_k_tiled_x4,
    iq2_s_q8_k_tiled_avx2,
    dot::iq2_s_q8_k_tiled,
    BlockIq2S,
    BlockQ8K
);
wrap!(
    /// IQ3_S · Q8_K (`dot::iq3_s_q8_k`).
    iq3_s_q8_k, iq3_s_q8_k_x4, iq3_s_q8_k_avx2, dot::iq3_s_q8_k, BlockIq3S, BlockQ8K
);
wrap!(
    /// IQ3_S · Q8_K in the order of ggml's tiled matmul (`dot::iq3_s_q8_k_tiled`).
    iq3_s_q8_k_tiled,
    iq3_s_q8_k_tiled_x4,
    iq3_s_q8_k_tiled_avx2,
    dot::iq3_s_q8_k_tiled,
    BlockIq3S,
    BlockQ8K
);

#[cfg(test)]
mod tests {
    use super::super::test_util::{blocks, check_twins, q8k_rows, Rng, Twin};
    use super::*;
    use half::f16;

    /// Random blocks of `X` (whose leading field is its f16 scale) against their scalar twins.
    fn twins<X: GridBlock>(rng: &mut Rng, kernels: &[Twin<X>]) {
        for nb in 1..10 {
            let ys = q8k_rows(rng, nb);
            let x = blocks(rng, nb, |b: &mut X, r| {
                let d = f16::from_f32(r.scale()).to_bits().to_le_bytes();
                bytemuck::bytes_of_mut(b)[..2].copy_from_slice(&d);
            });
            check_twins(&x, &ys, kernels);
        }
    }

    /// Both orders, one and four activation rows, bit for bit against the scalar twins on
    /// random bytes (every grid index, sign and scale; every activation byte, -128 included).
    #[test]
    fn kernels_match_the_scalar_twins() {
        let mut rng = Rng(0x1a2b_3c4d_5e6f_7081);
        twins::<BlockIq3Xxs>(
            &mut rng,
            &[
                (dot::iq3_xxs_q8_k, iq3_xxs_q8_k, iq3_xxs_q8_k_x4, "iq3_xxs"),
                (
                    dot::iq3_xxs_q8_k_tiled,
                    iq3_xxs_q8_k_tiled,
                    iq3_xxs_q8_k_tiled_x4,
                    "iq3_xxs tiled",
                ),
            ],
        );
        twins::<BlockIq2Xxs>(
            &mut rng,
            &[
                (dot::iq2_xxs_q8_k, iq2_xxs_q8_k, iq2_xxs_q8_k_x4, "iq2_xxs"),
                (
                    dot::iq2_xxs_q8_k_tiled,
                    iq2_xxs_q8_k_tiled,
                    iq2_xxs_q8_k_tiled_x4,
                    "iq2_xxs tiled",
                ),
            ],
        );
        twins::<BlockIq2Xs>(
            &mut rng,
            &[
                (dot::iq2_xs_q8_k, iq2_xs_q8_k, iq2_xs_q8_k_x4, "iq2_xs"),
                (
                    dot::iq2_xs_q8_k_tiled,
                    iq2_xs_q8_k_tiled,
                    iq2_xs_q8_k_tiled_x4,
                    "iq2_xs tiled",
                ),
            ],
        );
        twins::<BlockIq2S>(
            &mut rng,
            &[
                (dot::iq2_s_q8_k, iq2_s_q8_k, iq2_s_q8_k_x4, "iq2_s"),
                (
                    dot::iq2_s_q8_k_tiled,
                    iq2_s_q8_k_tiled,
                    iq2_s_q8_k_tiled_x4,
                    "iq2_s tiled",
                ),
            ],
        );
        twins::<BlockIq3S>(
            &mut rng,
            &[
                (dot::iq3_s_q8_k, iq3_s_q8_k, iq3_s_q8_k_x4, "iq3_s"),
                (
                    dot::iq3_s_q8_k_tiled,
                    iq3_s_q8_k_tiled,
                    iq3_s_q8_k_tiled_x4,
                    "iq3_s tiled",
                ),
            ],
        );
    }
}
