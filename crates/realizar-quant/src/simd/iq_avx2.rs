//! AVX2 + FMA (+ F16C) kernels of the non-linear 4-bit types IQ4_NL and IQ4_XS, the SIMD twins
//! of `dot::iq4_nl_q8_0` and `dot::iq4_xs_q8_k`. Table lookups with `pshufb` as ggml's x86
//! kernels do; the products go through `maddubs(|y|, sign(x, y))`, exact for every activation
//! byte (the table values lie in -127..=113, so no pair sum can saturate). The float operations
//! are the scalar twins', in their order.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use crate::blocks::*;
use crate::dot;

use super::avx2::{chunk32i, hsum_ps, load16, load32i};
use super::has_avx2;

/// The 16 table values in both 128-bit halves, for `pshufb`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn table() -> __m256i {
    let t = i8_16(&KVALUES_IQ4NL);
    _mm256_set_m128i(t, t)
}

/// Loads 16 signed bytes.
#[inline(always)]
fn i8_16(v: &[i8; 16]) -> __m128i {
    // SAFETY: `v` is 16 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(v.as_ptr().cast()) }
}

/// 16 bytes of nibbles → the 32 table values they index: the low nibbles (elements 0..16)
/// then the high ones.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn lookup(table: __m256i, qs: &[u8; 16]) -> __m256i {
    let t = load16(qs);
    let idx = _mm256_and_si256(
        _mm256_set_m128i(_mm_srli_epi16::<4>(t), t),
        _mm256_set1_epi8(0x0F),
    );
    _mm256_shuffle_epi8(table, idx)
}

/// `x · y` of 32 signed bytes (`x` in -127..=127) as eight i32 lanes, lane `l` the sum of
/// elements `4l..4l + 4` (exact for every `y`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot32(x: __m256i, y: __m256i) -> __m256i {
    let p16 = _mm256_maddubs_epi16(_mm256_abs_epi8(y), _mm256_sign_epi8(x, y));
    _mm256_madd_epi16(p16, _mm256_set1_epi16(1))
}

/// Four vectors of eight i32 lanes → their four lane sums (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum4(v: [__m256i; 4]) -> __m128i {
    let t0 = _mm256_hadd_epi32(v[0], v[1]);
    let t1 = _mm256_hadd_epi32(v[2], v[3]);
    let t = _mm256_hadd_epi32(t0, t1);
    _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256::<1>(t))
}

/// The sum of eight i32 lanes (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum1(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// The 32 quants of a Q8_0 block.
#[inline(always)]
fn q8(b: &BlockQ8_0) -> __m256i {
    load32i(&b.qs)
}

/// IQ4_NL · Q8_0 for `M` activation rows per pass over one weight row: per block the exact
/// integer sum, then `acc = fma(isum, d_x d_y, acc)` (`dot::iq4_nl_q8_0`).
#[target_feature(enable = "avx2,fma,f16c")]
fn iq4_nl_q8_0_avx2<const M: usize>(x: &[BlockIq4Nl], ys: [&[BlockQ8_0]; M]) -> [f32; M] {
    let tab = table();
    let mut acc = [0.0f32; M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let xv = lookup(tab, &x.qs);
        let dx = x.d.to_f32();
        for (y, a) in ys.iter().zip(&mut acc) {
            let Some(y) = y.get(b) else { continue };
            let isum = hsum1(dot32(xv, q8(y)));
            *a = (isum as f32).mul_add(dx * y.d.to_f32(), *a);
        }
    }
    acc
}

/// IQ4_NL · Q8_0 for four weight rows per pass over one activation row: the same operations
/// per row as [`iq4_nl_q8_0_avx2`], the four rows' sums and FMAs in one vector.
#[target_feature(enable = "avx2,fma,f16c")]
fn iq4_nl_q8_0_rows4_avx2(xs: [&[BlockIq4Nl]; 4], y: &[BlockQ8_0]) -> [f32; 4] {
    let tab = table();
    let nb = xs.iter().fold(y.len(), |n, x| n.min(x.len()));
    let mut acc = _mm_setzero_ps();
    for (b, y) in y.iter().take(nb).enumerate() {
        let yv = q8(y);
        let dy = y.d.to_f32();
        let mut sums = [_mm256_setzero_si256(); 4];
        let mut scale = [0.0f32; 4];
        for ((x, s), sc) in xs.iter().zip(&mut sums).zip(&mut scale) {
            if let Some(x) = x.get(b) {
                *s = dot32(lookup(tab, &x.qs), yv);
                *sc = x.d.to_f32() * dy;
            }
        }
        let isum = _mm_cvtepi32_ps(hsum4(sums));
        // SAFETY: `scale` is four readable floats; `loadu` has no alignment requirement.
        let sc = unsafe { _mm_loadu_ps(scale.as_ptr()) };
        acc = _mm_fmadd_ps(isum, sc, acc);
    }
    let mut out = [0.0f32; 4];
    // SAFETY: `out` is four writable floats; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_ps(out.as_mut_ptr(), acc) };
    out
}

/// IQ4_XS · Q8_K for `M` activation rows per pass over one weight row, in the order of
/// `ggml_vec_dot_iq4_xs_q8_K`'s AVX2 path (`dot::iq4_xs_q8_k`): eight i32 lanes per
/// super-block, one FMA per lane, the horizontal sum at the end.
#[target_feature(enable = "avx2,fma,f16c")]
fn iq4_xs_q8_k_avx2<const M: usize>(x: &[BlockIq4Xs], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    let tab = table();
    let mut acc = [_mm256_setzero_ps(); M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let mut sums = [_mm256_setzero_si256(); M];
        for ib in 0..8 {
            let qs =
                x.qs.get(16 * ib..16 * ib + 16)
                    .and_then(|c| <&[u8; 16]>::try_from(c).ok())
                    .unwrap_or(&[0; 16]);
            let xv = lookup(tab, qs);
            let ls = _mm256_set1_epi32(x.scale(ib) - 32);
            for (y, s) in ys.iter().zip(&mut sums) {
                let Some(y) = y.get(b) else { continue };
                let yv = load32i(chunk32i(&y.qs, 32 * ib));
                *s = _mm256_add_epi32(*s, _mm256_mullo_epi32(dot32(xv, yv), ls));
            }
        }
        let dx = x.d.to_f32();
        for ((y, s), a) in ys.iter().zip(sums).zip(&mut acc) {
            let Some(y) = y.get(b) else { continue };
            *a = _mm256_fmadd_ps(_mm256_set1_ps(dx * y.d), _mm256_cvtepi32_ps(s), *a);
        }
    }
    acc.map(|a| hsum_ps(a))
}

/// IQ4_XS · Q8_K for `M` activation rows per pass in the order of ggml's tiled matmul
/// (`dot::iq4_xs_q8_k_tiled`): per super-block the exact integer sum, then
/// `acc = fma(f32(s) d_x, d_y, acc)`.
#[target_feature(enable = "avx2,fma,f16c")]
fn iq4_xs_q8_k_tiled_avx2<const M: usize>(x: &[BlockIq4Xs], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    let tab = table();
    let mut acc = [0.0f32; M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let mut sums = [_mm256_setzero_si256(); M];
        for ib in 0..8 {
            let qs =
                x.qs.get(16 * ib..16 * ib + 16)
                    .and_then(|c| <&[u8; 16]>::try_from(c).ok())
                    .unwrap_or(&[0; 16]);
            let xv = lookup(tab, qs);
            let ls = _mm256_set1_epi32(x.scale(ib) - 32);
            for (y, s) in ys.iter().zip(&mut sums) {
                let Some(y) = y.get(b) else { continue };
                let yv = load32i(chunk32i(&y.qs, 32 * ib));
                *s = _mm256_add_epi32(*s, _mm256_mullo_epi32(dot32(xv, yv), ls));
            }
        }
        let dx = x.d.to_f32();
        for ((y, s), a) in ys.iter().zip(sums).zip(&mut acc) {
            let Some(y) = y.get(b) else { continue };
            *a = (hsum1(s) as f32 * dx).mul_add(y.d, *a);
        }
    }
    acc
}

macro_rules! wrap {
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
}

wrap!(
    /// IQ4_NL · Q8_0.
    iq4_nl_q8_0,
    iq4_nl_q8_0_x4,
    iq4_nl_q8_0_avx2,
    dot::iq4_nl_q8_0,
    BlockIq4Nl,
    BlockQ8_0
);
wrap!(
    /// IQ4_XS · Q8_K.
    iq4_xs_q8_k,
    iq4_xs_q8_k_x4,
    iq4_xs_q8_k_avx2,
    dot::iq4_xs_q8_k,
    BlockIq4Xs,
    BlockQ8K
);

wrap!(
    /// IQ4_XS · Q8_K in the order of ggml's tiled matmul.
    iq4_xs_q8_k_tiled,
    iq4_xs_q8_k_tiled_x4,
    iq4_xs_q8_k_tiled_avx2,
    dot::iq4_xs_q8_k_tiled,
    BlockIq4Xs,
    BlockQ8K
);

/// IQ4_NL · Q8_0, four weight rows per pass over one activation row; bit-identical to four
/// single calls.
pub(crate) fn iq4_nl_q8_0_r4(xs: [&[BlockIq4Nl]; 4], y: &[BlockQ8_0]) -> [f32; 4] {
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C are present (checked just above).
        unsafe { iq4_nl_q8_0_rows4_avx2(xs, y) }
    } else {
        xs.map(|x| dot::iq4_nl_q8_0(x, y))
    }
}

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
        fn fill(&mut self, b: &mut [u8]) {
            for v in b {
                *v = self.next() as u8;
            }
        }
    }

    /// `n` blocks of random bytes with the f16 scale fields set by `fix`.
    fn blocks<T: bytemuck::Pod>(rng: &mut Rng, n: usize, fix: impl Fn(&mut T, &mut Rng)) -> Vec<T> {
        (0..n)
            .map(|_| {
                let mut b = T::zeroed();
                rng.fill(bytemuck::bytes_of_mut(&mut b));
                fix(&mut b, rng);
                b
            })
            .collect()
    }

    fn scale(rng: &mut Rng) -> f16 {
        f16::from_f32(((rng.next() % 2000) as f32 - 1000.0) / 997.0)
    }

    /// Every kernel (one, four activation rows, four weight rows) equals the scalar twin bit
    /// for bit, on random bytes (every activation byte, -128 included).
    #[test]
    fn kernels_match_the_scalar_twins() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for nb in 1..40 {
            let ys: Vec<Vec<BlockQ8_0>> = (0..4)
                .map(|_| blocks(&mut rng, nb, |b: &mut BlockQ8_0, r| b.d = scale(r)))
                .collect();
            let xs: Vec<Vec<BlockIq4Nl>> = (0..4)
                .map(|_| blocks(&mut rng, nb, |b: &mut BlockIq4Nl, r| b.d = scale(r)))
                .collect();
            let want: Vec<Vec<u32>> = xs
                .iter()
                .map(|x| {
                    ys.iter()
                        .map(|y| dot::iq4_nl_q8_0(x, y).to_bits())
                        .collect()
                })
                .collect();
            for (x, w) in xs.iter().zip(&want) {
                let one: Vec<u32> = ys.iter().map(|y| iq4_nl_q8_0(x, y).to_bits()).collect();
                assert_eq!(&one, w, "iq4_nl one row, nb {nb}");
                let quad = iq4_nl_q8_0_x4(x, [&ys[0], &ys[1], &ys[2], &ys[3]]).map(f32::to_bits);
                assert_eq!(quad.to_vec(), *w, "iq4_nl four rows, nb {nb}");
            }
            for (k, y) in ys.iter().enumerate() {
                let r4 = iq4_nl_q8_0_r4([&xs[0], &xs[1], &xs[2], &xs[3]], y).map(f32::to_bits);
                let col: Vec<u32> = want.iter().map(|w| w[k]).collect();
                assert_eq!(r4.to_vec(), col, "iq4_nl four weight rows, nb {nb}");
            }

            let nk = nb.div_ceil(4);
            let yk: Vec<Vec<BlockQ8K>> = (0..4)
                .map(|_| {
                    blocks(&mut rng, nk, |b: &mut BlockQ8K, r| {
                        b.d = scale(r).to_f32();
                    })
                })
                .collect();
            let x = blocks(&mut rng, nk, |b: &mut BlockIq4Xs, r| b.d = scale(r));
            let want: Vec<u32> = yk
                .iter()
                .map(|y| dot::iq4_xs_q8_k(&x, y).to_bits())
                .collect();
            let one: Vec<u32> = yk.iter().map(|y| iq4_xs_q8_k(&x, y).to_bits()).collect();
            assert_eq!(one, want, "iq4_xs one row, nb {nk}");
            let quad = iq4_xs_q8_k_x4(&x, [&yk[0], &yk[1], &yk[2], &yk[3]]).map(f32::to_bits);
            assert_eq!(quad.to_vec(), want, "iq4_xs four rows, nb {nk}");
            let want: Vec<u32> = yk
                .iter()
                .map(|y| dot::iq4_xs_q8_k_tiled(&x, y).to_bits())
                .collect();
            let one: Vec<u32> = yk
                .iter()
                .map(|y| iq4_xs_q8_k_tiled(&x, y).to_bits())
                .collect();
            assert_eq!(one, want, "iq4_xs tiled one row, nb {nk}");
            let quad = iq4_xs_q8_k_tiled_x4(&x, [&yk[0], &yk[1], &yk[2], &yk[3]]).map(f32::to_bits);
            assert_eq!(quad.to_vec(), want, "iq4_xs tiled four rows, nb {nk}");
        }
    }
}
