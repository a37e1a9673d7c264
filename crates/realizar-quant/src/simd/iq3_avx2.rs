//! AVX2 + FMA kernels of IQ3_XXS against Q8_K, the SIMD twins of `dot::iq3_xxs_q8_k` (ggml's
//! `ggml_vec_dot_iq3_xxs_q8_K` AVX2 path: grid magnitudes times sign-flipped activations with
//! `maddubs`, sub-block scales with `madd`, one FMA per lane and block) and
//! `dot::iq3_xxs_q8_k_tiled` (ggml's tiled matmul: signs on the weights, the exact integer sum
//! per block, one FMA per block).
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use crate::blocks::*;
use crate::dot;
use crate::grids::{IQ3XXS_GRID, KSIGNS_IQ2XS};

use super::avx2::{chunk32i, hsum_ps, load32i, wrap};
use super::has_avx2;

/// `keven_signs_q2xs`: the eight sign bytes (1 or -1) of each seven-bit sign index.
const SIGNS64: [u64; 128] = {
    let mut t = [0u64; 128];
    let mut i = 0;
    while i < 128 {
        let s = KSIGNS_IQ2XS[i];
        let mut v = 0u64;
        let mut j = 0;
        while j < 8 {
            let b: u64 = if (s >> j) & 1 == 1 { 0xFF } else { 0x01 };
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
fn magnitudes(x: &BlockIq3Xxs, ib: usize) -> __m256i {
    let g = |k: usize| IQ3XXS_GRID[usize::from(x.qs[(8 * ib + k) % 64])] as i32;
    _mm256_set_epi32(g(7), g(6), g(5), g(4), g(3), g(2), g(1), g(0))
}

/// The 32 sign bytes (1 or -1) of sub-block `ib`, and its `2 ls + 1`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn signs(x: &BlockIq3Xxs, ib: usize) -> (__m256i, i32) {
    let aux = x.aux(ib);
    let s = |l: u32| SIGNS64[((aux >> (7 * l)) & 127) as usize] as i64;
    (
        _mm256_set_epi64x(s(3), s(2), s(1), s(0)),
        2 * (aux >> 28) as i32 + 1,
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq3_xxs_q8_k_avx2<const M: usize>(x: &[BlockIq3Xxs], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    let mut acc = [_mm256_setzero_ps(); M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let mut sums = [_mm256_setzero_si256(); M];
        for ib in 0..8 {
            let g = magnitudes(x, ib);
            let (s, ls) = signs(x, ib);
            let ls = _mm256_set1_epi16(ls as i16);
            for (y, sum) in ys.iter().zip(&mut sums) {
                let Some(y) = y.get(b) else { continue };
                let q8 = _mm256_sign_epi8(load32i(chunk32i(&y.qs, 32 * ib)), s);
                let p = _mm256_madd_epi16(_mm256_maddubs_epi16(g, q8), ls);
                *sum = _mm256_add_epi32(*sum, p);
            }
        }
        let dx = x.d.to_f32();
        for ((y, s), a) in ys.iter().zip(sums).zip(&mut acc) {
            let Some(y) = y.get(b) else { continue };
            *a = _mm256_fmadd_ps(_mm256_set1_ps(dx * y.d), _mm256_cvtepi32_ps(s), *a);
        }
    }
    acc.map(|a| 0.25 * hsum_ps(a))
}

/// The eight i32 lanes' total.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<1>(s));
    _mm_cvtsi128_si32(s)
}

#[target_feature(enable = "avx2,fma,f16c")]
fn iq3_xxs_q8_k_tiled_avx2<const M: usize>(x: &[BlockIq3Xxs], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    let mut acc = [0.0f32; M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let mut sums = [_mm256_setzero_si256(); M];
        for ib in 0..8 {
            let (s, ls) = signs(x, ib);
            // Signed weights (|w| <= 62), widened with the activations to 16 bits: exact.
            let w = _mm256_sign_epi8(magnitudes(x, ib), s);
            let w0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w));
            let w1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(w));
            let ls = _mm256_set1_epi32(ls);
            for (y, sum) in ys.iter().zip(&mut sums) {
                let Some(y) = y.get(b) else { continue };
                let q = load32i(chunk32i(&y.qs, 32 * ib));
                let q0 = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(q));
                let q1 = _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(q));
                let p = _mm256_add_epi32(_mm256_madd_epi16(w0, q0), _mm256_madd_epi16(w1, q1));
                *sum = _mm256_add_epi32(*sum, _mm256_mullo_epi32(p, ls));
            }
        }
        let d0 = x.d.to_f32() * 0.25;
        for ((y, s), a) in ys.iter().zip(sums).zip(&mut acc) {
            let Some(y) = y.get(b) else { continue };
            *a = (d0 * hsum_i32(s) as f32).mul_add(y.d, *a);
        }
    }
    acc
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

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn blocks<T: bytemuck::Pod>(rng: &mut Rng, n: usize, fix: impl Fn(&mut T, f32)) -> Vec<T> {
        (0..n)
            .map(|_| {
                let mut b = T::zeroed();
                for v in bytemuck::bytes_of_mut(&mut b) {
                    *v = rng.next() as u8;
                }
                fix(&mut b, ((rng.next() % 2000) as f32 - 1000.0) / 997.0);
                b
            })
            .collect()
    }

    /// Both orders, one and four activation rows, bit for bit against the scalar twins on
    /// random bytes (every grid index, sign and scale; every activation byte, -128 included).
    #[test]
    fn kernels_match_the_scalar_twins() {
        let mut rng = Rng(0x1a2b_3c4d_5e6f_7081);
        for nb in 1..10 {
            let ys: Vec<Vec<BlockQ8K>> = (0..4)
                .map(|_| blocks(&mut rng, nb, |b: &mut BlockQ8K, s| b.d = s))
                .collect();
            let x = blocks(&mut rng, nb, |b: &mut BlockIq3Xxs, s| {
                b.d = f16::from_f32(s)
            });
            type One = fn(&[BlockIq3Xxs], &[BlockQ8K]) -> f32;
            type Four = fn(&[BlockIq3Xxs], [&[BlockQ8K]; 4]) -> [f32; 4];
            let kernels: [(One, One, Four, &str); 2] = [
                (dot::iq3_xxs_q8_k, iq3_xxs_q8_k, iq3_xxs_q8_k_x4, "decode"),
                (
                    dot::iq3_xxs_q8_k_tiled,
                    iq3_xxs_q8_k_tiled,
                    iq3_xxs_q8_k_tiled_x4,
                    "tiled",
                ),
            ];
            for (scalar, one, four, what) in kernels {
                let want: Vec<u32> = ys.iter().map(|y| scalar(&x, y).to_bits()).collect();
                let got: Vec<u32> = ys.iter().map(|y| one(&x, y).to_bits()).collect();
                assert_eq!(got, want, "{what} one row, nb {nb}");
                let quad = four(&x, [&ys[0], &ys[1], &ys[2], &ys[3]]).map(f32::to_bits);
                assert_eq!(quad.to_vec(), want, "{what} four rows, nb {nb}");
            }
        }
    }
}
