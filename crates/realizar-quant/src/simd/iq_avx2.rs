//! AVX2 + FMA (+ F16C) kernels of the table-lookup 4-bit types IQ4_NL, Q4_0 (as the table
//! `q - 8`: ggml's x86 repacked order), IQ4_XS and MXFP4, the SIMD twins of `dot::nl4_q8_0`,
//! `dot::iq4_xs_q8_k` and `dot::mxfp4_q8_0`, and the Q5_K kernels. Table lookups with
//! `pshufb` as ggml's x86 kernels do; the products go through `maddubs(|y|, sign(x, y))`,
//! exact for every activation byte (the table values lie in -127..=113, so no pair sum can
//! saturate). The float operations are the scalar twins', in their order.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use crate::blocks::*;
use crate::dot;

use super::avx2::{chunk32, chunk32i, hsum_ps, load16, load32, load32i, wrap};
use super::has_avx2;

/// The 16 IQ4 table values in both 128-bit halves, for `pshufb`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn table() -> __m256i {
    table_of(&KVALUES_IQ4NL)
}

/// The 16 values of `t` in both 128-bit halves, for `pshufb`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn table_of(t: &[i8; 16]) -> __m256i {
    let t = i8_16(t);
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

/// The sum of eight i32 lanes (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum1(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Sixteen signed bytes of `v` from `at` (zeros past the end).
#[inline(always)]
fn load16i(v: &[i8; 32], at: usize) -> __m128i {
    let s = v.get(at..at + 16).unwrap_or(&[0; 16]);
    // SAFETY: `s` is 16 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm_loadu_si128(s.as_ptr().cast()) }
}

/// The 32 quants of a Q8_0 block.
#[inline(always)]
fn q8(b: &BlockQ8_0) -> __m256i {
    load32i(&b.qs)
}

/// IQ4_NL or Q4_0 · Q8_0 for `M` activation rows per pass over one weight row: per block
/// the exact integer sum, then `acc = fma(isum, d_x d_y, acc)` (`dot::nl4_q8_0`).
#[target_feature(enable = "avx2,fma,f16c")]
fn nl4_q8_0_avx2<B: Nl4Block, const M: usize>(x: &[B], ys: [&[BlockQ8_0]; M]) -> [f32; M] {
    let tab = table_of(&B::TABLE);
    let mut acc = [0.0f32; M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let xv = lookup(tab, x.qs());
        let dx = x.d().to_f32();
        for (y, a) in ys.iter().zip(&mut acc) {
            let Some(y) = y.get(b) else { continue };
            let isum = hsum1(dot32(xv, q8(y)));
            *a = (isum as f32).mul_add(dx * y.d.to_f32(), *a);
        }
    }
    acc
}

/// MXFP4 · Q8_0 for `M` activation rows per pass over one weight row: per block the exact
/// integer sum, then `acc = fma(isum, e8m0_half(e) d_y, acc)` (`dot::mxfp4_q8_0`).
#[target_feature(enable = "avx2,fma,f16c")]
fn mxfp4_q8_0_avx2<const M: usize>(x: &[BlockMxfp4], ys: [&[BlockQ8_0]; M]) -> [f32; M] {
    let t = i8_16(&KVALUES_MXFP4);
    let tab = _mm256_set_m128i(t, t);
    let mut acc = [0.0f32; M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let xv = lookup(tab, &x.qs);
        let dx = e8m0_half(x.e);
        for (y, a) in ys.iter().zip(&mut acc) {
            let Some(y) = y.get(b) else { continue };
            let isum = hsum1(dot32(xv, q8(y)));
            *a = (isum as f32).mul_add(dx * y.d.to_f32(), *a);
        }
    }
    acc
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

/// The 32 five-bit values (0..32) of Q5_K's sub-blocks `2j` (`.0`) and `2j + 1` (`.1`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q5k_pair(x: &BlockQ5K, qh: __m256i, j: usize) -> (__m256i, __m256i) {
    let m4 = _mm256_set1_epi8(0x0F);
    let one = _mm256_set1_epi8(1);
    let q = load32(chunk32(&x.qs, 32 * j));
    let bit = |s: i32| {
        let h = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(s)), one);
        _mm256_slli_epi16::<4>(h)
    };
    let lo = _mm256_or_si256(_mm256_and_si256(q, m4), bit(2 * j as i32));
    let hi = _mm256_or_si256(
        _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
        bit(2 * j as i32 + 1),
    );
    (lo, hi)
}

/// Q5_K · Q8_K for `M` activation rows per pass: with `TILED` false in the order of
/// `ggml_vec_dot_q5_K_q8_K`'s AVX2 path (`dot::q5_k_q8_k`), else in that of ggml's tiled
/// matmul (`dot::q5_k_q8_k_tiled`). Values 0..32 enter `maddubs` unsigned: exact.
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k_q8_k_avx2<const M: usize, const TILED: bool>(
    x: &[BlockQ5K],
    ys: [&[BlockQ8K]; M],
) -> [f32; M] {
    let mut acc = [_mm256_setzero_ps(); M];
    let mut acc1 = [0.0f32; M];
    let mut summs = [0.0f32; M];
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    for (b, x) in x.iter().take(nb).enumerate() {
        let u = super::avx2::k4_unpack(&x.scales);
        let sc: [u8; 8] = bytemuck::cast([u[0], u[1]]);
        let qh = load32(&x.qh);
        let mut sums = [_mm256_setzero_si256(); M];
        for j in 0..4 {
            let (lo, hi) = q5k_pair(x, qh, j);
            let s0 = _mm256_set1_epi16(i16::from(sc[2 * j]));
            let s1 = _mm256_set1_epi16(i16::from(sc[2 * j + 1]));
            for (y, s) in ys.iter().zip(&mut sums) {
                let Some(y) = y.get(b) else { continue };
                let y0 = load32i(chunk32i(&y.qs, 64 * j));
                let y1 = load32i(chunk32i(&y.qs, 64 * j + 32));
                let p0 = _mm256_madd_epi16(s0, _mm256_maddubs_epi16(lo, y0));
                let p1 = _mm256_madd_epi16(s1, _mm256_maddubs_epi16(hi, y1));
                *s = _mm256_add_epi32(*s, _mm256_add_epi32(p0, p1));
            }
        }
        let (dx, dminx) = (x.d.to_f32(), x.dmin.to_f32());
        for (k, (y, s)) in ys.iter().zip(sums).enumerate() {
            let Some(y) = y.get(b) else { continue };
            let (_, imin) = dot::k4_scales_mins(&x.scales, &y.bsums);
            if TILED {
                let s1 = hsum1(s) as f32;
                let r = (-dminx).mul_add(imin as f32, s1 * dx);
                acc1[k] = r.mul_add(y.d, acc1[k]);
            } else {
                let d = y.d * dx;
                let dmin = -y.d * dminx;
                summs[k] = dmin.mul_add(imin as f32, summs[k]);
                acc[k] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(s), acc[k]);
            }
        }
    }
    if TILED {
        acc1
    } else {
        core::array::from_fn(|k| hsum_ps(acc[k]) + summs[k])
    }
}

/// [`q5_k_q8_k_avx2`] in `ggml_vec_dot_q5_K_q8_K`'s order.
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k_q8_k_vec_avx2<const M: usize>(x: &[BlockQ5K], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    q5_k_q8_k_avx2::<M, false>(x, ys)
}

/// [`q5_k_q8_k_avx2`] in the tiled matmul's order.
#[target_feature(enable = "avx2,fma,f16c")]
fn q5_k_q8_k_tiled_avx2<const M: usize>(x: &[BlockQ5K], ys: [&[BlockQ8K]; M]) -> [f32; M] {
    q5_k_q8_k_avx2::<M, true>(x, ys)
}

/// Eight vectors of eight i32 lanes → their eight lane sums, in order (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum8x8(v: &[__m256i; 8]) -> __m256i {
    let a = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
    let b = _mm256_hadd_epi32(_mm256_hadd_epi32(v[4], v[5]), _mm256_hadd_epi32(v[6], v[7]));
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(a, b),
        _mm256_permute2x128_si256::<0x31>(a, b),
    )
}

/// One activation row against eight IQ4_NL or Q4_0 weight rows whose table values and scales
/// are unpacked (`vals[k]`: 32 bytes per block; `dx`: eight scales per block): lane `k` is
/// `dot::nl4_q8_0` of row `k`, the same operations in the same order.
#[target_feature(enable = "avx2,fma,f16c")]
fn nl4_unpacked8(vals: &[&[i8]; 8], dx: &[f32], y: &[BlockQ8_0]) -> __m256 {
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    for (b, y) in y.iter().enumerate() {
        let yv = q8(y);
        let ay = _mm256_abs_epi8(yv);
        let mut v = [_mm256_setzero_si256(); 8];
        for (vk, vals) in v.iter_mut().zip(vals) {
            let x = load32i(chunk32i(vals, 32 * b));
            *vk = _mm256_madd_epi16(_mm256_maddubs_epi16(ay, _mm256_sign_epi8(x, yv)), ones);
        }
        let isum = _mm256_cvtepi32_ps(hsum8x8(&v));
        let d = dx.get(8 * b..8 * b + 8).unwrap_or(&[0.0; 8]);
        // SAFETY: `d` is eight readable floats; `loadu` has no alignment requirement.
        let dxv = unsafe { _mm256_loadu_ps(d.as_ptr()) };
        let sc = _mm256_mul_ps(dxv, _mm256_set1_ps(y.d.to_f32()));
        acc = _mm256_fmadd_ps(isum, sc, acc);
    }
    acc
}

/// One activation row against eight IQ4_NL or Q4_0 weight rows, unpacking as it goes
/// (decode). Two rows share a register: row `2p`'s sixteen bytes of nibbles in the low half,
/// row `2p + 1`'s in the high one, so one lookup gives both rows' low-nibble elements (0..16)
/// and one their high-nibble elements, each against the matching half of the block's
/// activations broadcast to both halves; `dot(acc, x, y)` adds four products a lane. Lanes
/// 0..4 of pair `p` then hold row `2p`'s partial sums, 4..8 row `2p + 1`'s, and three
/// `hadd`s fold the four pairs into one vector of row sums (rows 0, 2, 4, 6, 1, 3, 5, 7,
/// the scales loaded to match). `lut` is the table the lookups use, `bias` what to subtract from every
/// block sum (`128 sum(y)` for a table biased to unsigned, for `vpdpbusd`). Exact block sums,
/// then `acc = fma(isum, d_x d_y, acc)` per lane: the scalar twin's operations; the lanes
/// come back in row order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn nl4_rows8_body<B: Nl4Block>(
    xs: &[&[B]; 8],
    y: &[BlockQ8_0],
    lut: __m256i,
    bias: impl Fn(usize) -> i32,
    dot: impl Fn(__m256i, __m256i, __m256i) -> __m256i,
) -> __m256 {
    let mask = _mm256_set1_epi8(0x0F);
    let nb = xs.iter().fold(y.len(), |n, x| n.min(x.len()));
    let mut acc = _mm256_setzero_ps();
    // The rows after these eight (the next call's) are prefetched at the rate these are read.
    let ahead = super::avx512::stream_after(xs[7]);
    let step = 8 * core::mem::size_of::<B>();
    for (b, y) in y.iter().take(nb).enumerate() {
        let at = ahead.wrapping_add(step * b);
        for line in (0..step).step_by(64) {
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(line).cast());
        }
        // SAFETY: `b < nb`, and every row holds at least `nb` blocks.
        let x: [&B; 8] = core::array::from_fn(|k| unsafe { xs[k].get_unchecked(b) });
        let ylo = _mm256_broadcastsi128_si256(load16i(&y.qs, 0));
        let yhi = _mm256_broadcastsi128_si256(load16i(&y.qs, 16));
        let mut v = [_mm256_setzero_si256(); 4];
        for (p, vp) in v.iter_mut().enumerate() {
            let q = _mm256_set_m128i(load16(x[2 * p + 1].qs()), load16(x[2 * p].qs()));
            let lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(q, mask));
            let hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16::<4>(q), mask));
            *vp = dot(dot(_mm256_setzero_si256(), lo, ylo), hi, yhi);
        }
        let sums = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
        let isum = _mm256_sub_epi32(sums, _mm256_set1_epi32(bias(b)));
        // The scales in the folded sums' lane order (rows 0, 2, 4, 6, 1, 3, 5, 7), gathered
        // in general-purpose registers.
        let d = |k: usize| u64::from(x[k].d().to_bits());
        let even = d(0) | d(2) << 16 | d(4) << 32 | d(6) << 48;
        let odd = d(1) | d(3) << 16 | d(5) << 32 | d(7) << 48;
        let dx = _mm256_cvtph_ps(_mm_set_epi64x(odd as i64, even as i64));
        let dy = _mm256_cvtph_ps(_mm_set1_epi16(y.d.to_bits() as i16));
        let sc = _mm256_mul_ps(dx, dy);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), sc, acc);
    }
    _mm256_permutevar8x32_ps(acc, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// [`nl4_rows8_body`] with `maddubs` + `madd` on the signed table values (`maddubs(|y|,
/// sign(x, y))`, exact for every activation byte).
#[target_feature(enable = "avx2,fma,f16c")]
fn nl4_rows8<B: Nl4Block>(xs: &[&[B]; 8], y: &[BlockQ8_0]) -> __m256 {
    let ones = _mm256_set1_epi16(1);
    nl4_rows8_body(
        xs,
        y,
        table_of(&B::TABLE),
        |_| 0,
        |acc, x, y| {
            let p = _mm256_maddubs_epi16(_mm256_abs_epi8(y), _mm256_sign_epi8(x, y));
            _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones))
        },
    )
}

/// [`nl4_rows8_body`] with `vpdpbusd` on the table values plus 128 (unsigned) against the
/// signed activations, `128 sum(y)` (`bias[b]`, from [`biases_q8_0`]) off each block sum.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
fn nl4_rows8_vnni<B: Nl4Block>(xs: &[&[B]; 8], y: &[BlockQ8_0], bias: &[i32]) -> __m256 {
    let lut = table_of(&B::TABLE.map(|v| (i16::from(v) + 128) as u8 as i8));
    let bias = |b: usize| bias.get(b).copied().unwrap_or(0);
    nl4_rows8_body(xs, y, lut, bias, |acc, x, y| _mm256_dpbusd_epi32(acc, x, y))
}

/// IQ4_NL or Q4_0 weights against `m` activation rows, bit-identical to `dot::nl4_q8_0` on every
/// (weight row, activation row) pair. Several activation rows: weight rows unpacked once into
/// VNNI tiles of sixteen (AVX-512) and eight rows, else eight rows of table values (AVX2);
/// one activation row: eight weight rows per pass. `w` holds whole rows of `wb` blocks (rows
/// `rows`), `acts` `m` rows of `ab` blocks; `out[i * stride + r - rows.start]`. Returns false
/// (nothing written) without AVX2.
#[allow(clippy::too_many_arguments)]
pub(crate) fn nl4_matmul<B: Nl4Block>(
    w: &[B],
    wb: usize,
    rows: core::ops::Range<usize>,
    acts: &[BlockQ8_0],
    ab: usize,
    m: usize,
    out: &mut [f32],
    stride: usize,
) -> bool {
    if !has_avx2() {
        return false;
    }
    let g = Product {
        wb,
        ab,
        m,
        stride,
        base: rows.start,
    };
    let mut start = rows.start;
    if m > 1 && super::has_avx512() {
        // SAFETY: AVX2, FMA, F16C and AVX-512 F/BW/VNNI/VL are present (checked).
        start = unsafe {
            tile_matmul(
                &g,
                w,
                start..rows.end,
                acts,
                out,
                Tile::<16>::nl4::<B>,
                biases_q8_0,
                (nl4_tile16::<1>, nl4_tile16::<4>),
            )
        };
    }
    if m > 1 && super::has_avx512_vnni() {
        // SAFETY: AVX2, FMA, F16C and AVX-512 VNNI/VL are present (checked).
        start = unsafe {
            tile_matmul(
                &g,
                w,
                start..rows.end,
                acts,
                out,
                Tile::<8>::nl4::<B>,
                biases_q8_0,
                (nl4_tile8::<1>, nl4_tile8::<4>),
            )
        };
    }
    nl4_matmul8(&g, w, start..rows.end, acts, out);
    true
}

/// The shape of one product: blocks per weight and activation row, activation rows, the output
/// stride and the first weight row of the call (`out[i * stride + r - base]`).
struct Product {
    wb: usize,
    ab: usize,
    m: usize,
    stride: usize,
    base: usize,
}

impl Product {
    /// Blocks in common.
    fn nb(&self) -> usize {
        self.wb.min(self.ab)
    }

    /// Weight row `r`.
    fn wrow<'a, W>(&self, w: &'a [W], r: usize) -> &'a [W] {
        let nb = self.nb();
        w.get(r * self.wb..r * self.wb + nb).unwrap_or_default()
    }

    /// Activation row `i`.
    fn act<'a, A>(&self, acts: &'a [A], i: usize) -> &'a [A] {
        let nb = self.nb();
        acts.get(i * self.ab..i * self.ab + nb).unwrap_or_default()
    }

    /// Writes the product of activation row `i` and weight row `r`.
    fn put(&self, out: &mut [f32], i: usize, r: usize, v: f32) {
        if let Some(o) = out.get_mut(i * self.stride + r - self.base) {
            *o = v;
        }
    }
}

/// [`nl4_matmul`]'s AVX2 path for `rows` (AVX2 present: the caller checked).
fn nl4_matmul8<B: Nl4Block>(
    g: &Product,
    w: &[B],
    rows: core::ops::Range<usize>,
    acts: &[BlockQ8_0],
    out: &mut [f32],
) {
    let (nb, m) = (g.nb(), g.m);
    let mut vals: Vec<i8> = Vec::new();
    let mut dx: Vec<f32> = Vec::new();
    let mut bias0 = Vec::new();
    if m == 1 {
        biases_q8_0(g.act(acts, 0), &mut bias0);
    }
    let mut r0 = rows.start;
    while r0 + 8 <= rows.end {
        let xs: [&[B]; 8] = core::array::from_fn(|k| g.wrow(w, r0 + k));
        let mut res = [0.0f32; 8];
        if m == 1 {
            let a = g.act(acts, 0);
            // SAFETY: AVX2, FMA and F16C are present (checked by the caller), AVX-512
            // VNNI/VL/VBMI/BW where taken (checked); `res` is 8 floats.
            unsafe {
                let v = if super::has_avx512_vnni() {
                    nl4_rows8_vnni(&xs, a, &bias0)
                } else {
                    nl4_rows8(&xs, a)
                };
                _mm256_storeu_ps(res.as_mut_ptr(), v);
            }
            for (k, v) in res.into_iter().enumerate() {
                g.put(out, 0, r0 + k, v);
            }
        } else {
            vals.clear();
            vals.resize(8 * 32 * nb, 0);
            dx.clear();
            dx.resize(8 * nb, 0.0);
            // SAFETY: AVX2, FMA and F16C are present (checked by the caller).
            unsafe { unpack8(&xs, &mut vals, &mut dx) };
            let per: [&[i8]; 8] =
                core::array::from_fn(|k| vals.get(k * 32 * nb..(k + 1) * 32 * nb).unwrap_or(&[]));
            for i in 0..m {
                // SAFETY: as above; `res` is 8 floats.
                unsafe {
                    let v = nl4_unpacked8(&per, &dx, g.act(acts, i));
                    _mm256_storeu_ps(res.as_mut_ptr(), v);
                }
                for (k, v) in res.into_iter().enumerate() {
                    g.put(out, i, r0 + k, v);
                }
            }
        }
        r0 += 8;
    }
    for r in r0..rows.end {
        for i in 0..m {
            // SAFETY: AVX2, FMA and F16C are present (checked by the caller).
            let [v] = unsafe { nl4_q8_0_avx2(g.wrow(w, r), [g.act(acts, i)]) };
            g.put(out, i, r, v);
        }
    }
}

/// The table values (32 bytes a block, row after row) and scales (eight a block, row `k` in
/// lane `k`) of eight IQ4_NL or Q4_0 rows.
#[target_feature(enable = "avx2,fma,f16c")]
fn unpack8<B: Nl4Block>(xs: &[&[B]; 8], vals: &mut [i8], dx: &mut [f32]) {
    let tab = table_of(&B::TABLE);
    let nb = dx.len() / 8;
    for (k, x) in xs.iter().enumerate() {
        for (b, x) in x.iter().take(nb).enumerate() {
            let v = lookup(tab, x.qs());
            if let Some(dst) = vals.get_mut((k * nb + b) * 32..(k * nb + b) * 32 + 32) {
                // SAFETY: `dst` is 32 writable bytes; `storeu` has no alignment requirement.
                unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast(), v) };
            }
            if let Some(d) = dx.get_mut(8 * b + k) {
                *d = x.d().to_f32();
            }
        }
    }
}

/// `R` weight rows (8 or 16) unpacked for the VNNI tile kernels: for each block of 32 elements
/// and each group `g` of four, `4R` bytes holding the four table values (plus 128, so unsigned)
/// of rows `0..R` in turn (for sixteen rows: rows 0..8, then 8..16, one `zmm` load); the
/// per-block scales of the rows (f32, row `k` in lane `k`); for IQ4_XS the rows' sub-block
/// scales (`scale - 32`), `R` per 32 elements.
#[derive(Default)]
pub(crate) struct Tile<const R: usize> {
    vals: Vec<u8>,
    dx: Vec<f32>,
    ls: Vec<i32>,
}

/// Writes the `table` values of one 32-element block of indices (16 bytes of nibbles) of row
/// `k` of `rows` into the interleaved layout at `dst` (`32 rows` bytes: group `g` at
/// `4 rows g`).
#[inline(always)]
fn interleave_block(table: &[i8; 16], qs: &[u8; 16], k: usize, rows: usize, dst: &mut [u8]) {
    for g in 0..8 {
        for e in 0..4 {
            let j = 4 * g + e;
            let b = qs[j % 16];
            let q = if j < 16 { b & 0x0F } else { b >> 4 };
            if let Some(d) = dst.get_mut(4 * rows * g + 4 * k + e) {
                *d = (i16::from(table[usize::from(q)]) + 128) as u8;
            }
        }
    }
}

/// Transposes eight vectors of eight 32-bit lanes: lane `k` of output `g` is lane `g` of input
/// `k`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose8(v: [__m256i; 8]) -> [__m256i; 8] {
    let t: [__m256i; 8] = core::array::from_fn(|i| {
        let (a, b) = (v[2 * (i / 2) % 8], v[(2 * (i / 2) + 1) % 8]);
        if i % 2 == 0 {
            _mm256_unpacklo_epi32(a, b)
        } else {
            _mm256_unpackhi_epi32(a, b)
        }
    });
    // t0 = v0v1 lo, t1 = v0v1 hi, t2 = v2v3 lo, t3 = v2v3 hi, t4.. = v4v5, t6.. = v6v7.
    let u = [
        _mm256_unpacklo_epi64(t[0], t[2]),
        _mm256_unpackhi_epi64(t[0], t[2]),
        _mm256_unpacklo_epi64(t[1], t[3]),
        _mm256_unpackhi_epi64(t[1], t[3]),
        _mm256_unpacklo_epi64(t[4], t[6]),
        _mm256_unpackhi_epi64(t[4], t[6]),
        _mm256_unpacklo_epi64(t[5], t[7]),
        _mm256_unpackhi_epi64(t[5], t[7]),
    ];
    [
        _mm256_permute2x128_si256::<0x20>(u[0], u[4]),
        _mm256_permute2x128_si256::<0x20>(u[1], u[5]),
        _mm256_permute2x128_si256::<0x20>(u[2], u[6]),
        _mm256_permute2x128_si256::<0x20>(u[3], u[7]),
        _mm256_permute2x128_si256::<0x31>(u[0], u[4]),
        _mm256_permute2x128_si256::<0x31>(u[1], u[5]),
        _mm256_permute2x128_si256::<0x31>(u[2], u[6]),
        _mm256_permute2x128_si256::<0x31>(u[3], u[7]),
    ]
}

/// The `table` values of the eight rows' 32-element blocks of nibbles (`qs[k]`) into the
/// interleaved, biased layout at `dst` (group `g`'s 32 bytes at `g * stride`); the twin of
/// [`interleave_block`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn interleave8(table: &[i8; 16], qs: [&[u8; 16]; 8], dst: &mut [u8], stride: usize) {
    let tab = table_of(table);
    let flip = _mm256_set1_epi8(-128);
    let v = transpose8(qs.map(|q| _mm256_xor_si256(lookup(tab, q), flip)));
    for (g, v) in v.into_iter().enumerate() {
        if let Some(d) = dst.get_mut(g * stride..g * stride + 32) {
            // SAFETY: `d` is 32 writable bytes; `storeu` has no alignment requirement.
            unsafe { _mm256_storeu_si256(d.as_mut_ptr().cast(), v) };
        }
    }
}

/// The 16 bytes of nibbles of sub-block `ib` of an IQ4_XS block (zeros for no block).
fn part(x: Option<&BlockIq4Xs>, ib: usize) -> &[u8; 16] {
    x.and_then(|x| x.qs.get(16 * ib..16 * ib + 16))
        .and_then(|c| <&[u8; 16]>::try_from(c).ok())
        .unwrap_or(&[0; 16])
}

impl<const R: usize> Tile<R> {
    /// Interleaves the `table` values of one 32-element block of each row (`q[k]`: row `k`'s
    /// nibbles) at block position `at`.
    fn put_block(&mut self, table: &[i8; 16], at: usize, q: [&[u8; 16]; R]) {
        let Some(dst) = self.vals.get_mut(32 * R * at..32 * R * (at + 1)) else {
            return;
        };
        if has_avx2() {
            for h in 0..R / 8 {
                let half: [&[u8; 16]; 8] = core::array::from_fn(|k| q[8 * h + k]);
                // SAFETY: AVX2, FMA and F16C are present (checked just above).
                unsafe { interleave8(table, half, &mut dst[32 * h..], 4 * R) };
            }
        } else {
            for (k, q) in q.iter().enumerate() {
                interleave_block(table, q, k, R, dst);
            }
        }
    }

    /// Unpacks `R` IQ4_NL or Q4_0 rows of `nb` blocks.
    fn nl4<B: Nl4Block>(&mut self, xs: &[&[B]; R], nb: usize) {
        self.vals.clear();
        self.vals.resize(32 * R * nb, 0);
        self.dx.clear();
        self.dx.resize(R * nb, 0.0);
        for b in 0..nb {
            let blocks: [Option<&B>; R] = core::array::from_fn(|k| xs[k].get(b));
            self.put_block(&B::TABLE, b, blocks.map(|x| x.map_or(&[0; 16], |x| x.qs())));
            for (k, x) in blocks.iter().enumerate() {
                self.dx[R * b + k] = x.map_or(0.0, |x| x.d().to_f32());
            }
        }
    }

    /// Unpacks `R` IQ4_XS rows of `nb` super-blocks (8 `nb` blocks of 32).
    fn iq4_xs(&mut self, xs: &[&[BlockIq4Xs]; R], nb: usize) {
        self.vals.clear();
        self.vals.resize(32 * R * 8 * nb, 0);
        self.dx.clear();
        self.dx.resize(R * nb, 0.0);
        self.ls.clear();
        self.ls.resize(R * 8 * nb, 0);
        for b in 0..nb {
            let blocks: [Option<&BlockIq4Xs>; R] = core::array::from_fn(|k| xs[k].get(b));
            for ib in 0..8 {
                let at = 8 * b + ib;
                self.put_block(&KVALUES_IQ4NL, at, blocks.map(|x| part(x, ib)));
                for (k, x) in blocks.iter().enumerate() {
                    self.ls[R * at + k] = x.map_or(0, |x| x.scale(ib) - 32);
                }
            }
            for (k, x) in blocks.iter().enumerate() {
                self.dx[R * b + k] = x.map_or(0.0, |x| x.d.to_f32());
            }
        }
    }
}

/// `sum_e x_e y_e` of one interleaved 32-element block (`vals`: 256 bytes) against `M` rows
/// of 32 activations, for the eight weight rows in the eight lanes: `vpdpbusd` of the biased
/// values with each group's four activations broadcast, minus `128 sum(y)`. Exact; each value
/// load serves the `M` rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
fn tile_block<const M: usize>(vals: &[u8], ys: [&[i8; 32]; M], bias: [i32; M]) -> [__m256i; M] {
    let Some(vals) = vals.get(..256) else {
        return [_mm256_setzero_si256(); M];
    };
    // Two independent sums per row (integer: the order does not matter), so that the
    // `vpdpbusd` latency overlaps.
    let mut acc = [[_mm256_setzero_si256(); 2]; M];
    for (g, x) in vals.chunks_exact(32).enumerate() {
        // SAFETY: `x` is 32 readable bytes; `loadu` has no alignment requirement.
        let x = unsafe { _mm256_loadu_si256(x.as_ptr().cast()) };
        for (a, y) in acc.iter_mut().zip(ys) {
            let w = i32::from_le_bytes([
                y[4 * g] as u8,
                y[4 * g + 1] as u8,
                y[4 * g + 2] as u8,
                y[4 * g + 3] as u8,
            ]);
            a[g % 2] = _mm256_dpbusd_epi32(a[g % 2], x, _mm256_set1_epi32(w));
        }
    }
    core::array::from_fn(|i| {
        _mm256_sub_epi32(
            _mm256_add_epi32(acc[i][0], acc[i][1]),
            _mm256_set1_epi32(bias[i]),
        )
    })
}

/// `128 sum(y)` of 32 activations.
#[inline(always)]
fn bias128(y: &[i8]) -> i32 {
    if has_avx2() {
        if let Ok(y) = <&[i8; 32]>::try_from(y) {
            // SAFETY: AVX2, FMA and F16C are present (checked just above).
            return 128 * unsafe { sum32(y) };
        }
    }
    128 * y.iter().map(|v| i32::from(*v)).sum::<i32>()
}

/// The sum of 32 signed bytes (exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sum32(y: &[i8; 32]) -> i32 {
    let p = _mm256_maddubs_epi16(_mm256_set1_epi8(1), load32i(y));
    hsum1(_mm256_madd_epi16(p, _mm256_set1_epi16(1)))
}

/// The [`bias128`] of each Q8_0 block.
fn biases_q8_0(y: &[BlockQ8_0], out: &mut Vec<i32>) {
    out.extend(y.iter().map(|b| bias128(&b.qs)));
}

/// The [`bias128`] of each 32-element part of each Q8_K block.
fn biases_q8_k(y: &[BlockQ8K], out: &mut Vec<i32>) {
    out.extend(y.iter().flat_map(|b| b.qs.chunks_exact(32).map(bias128)));
}

/// Eight f32 lanes as an array.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn to_array(v: __m256) -> [f32; 8] {
    let mut out = [0.0f32; 8];
    // SAFETY: `out` is 8 writable floats; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// `M` activation rows against an IQ4_NL or Q4_0 tile of eight rows: lane `k` of result `i`
/// is `dot::nl4_q8_0` of weight row `k` and activation row `i`.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
fn nl4_tile8<const M: usize>(
    t: &Tile<8>,
    ys: [&[BlockQ8_0]; M],
    bias: [&[i32]; M],
) -> [[f32; 8]; M] {
    let mut acc = [_mm256_setzero_ps(); M];
    let nb = ys.iter().fold(t.dx.len() / 8, |n, y| n.min(y.len()));
    for b in 0..nb {
        let q: [&[i8; 32]; M] = core::array::from_fn(|i| &ys[i][b].qs);
        let bs: [i32; M] = core::array::from_fn(|i| bias[i].get(b).copied().unwrap_or(0));
        let isum = tile_block(t.vals.get(256 * b..).unwrap_or_default(), q, bs);
        let d = t.dx.get(8 * b..8 * b + 8).unwrap_or(&[0.0; 8]);
        // SAFETY: `d` is eight readable floats; `loadu` has no alignment requirement.
        let dxv = unsafe { _mm256_loadu_ps(d.as_ptr()) };
        for ((a, y), s) in acc.iter_mut().zip(ys).zip(isum) {
            let sc = _mm256_mul_ps(dxv, _mm256_set1_ps(y[b].d.to_f32()));
            *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, *a);
        }
    }
    acc.map(|a| to_array(a))
}

/// `M` activation rows against an IQ4_XS tile of eight rows in the tiled matmul's order: lane
/// `k` of result `i` is `dot::iq4_xs_q8_k_tiled` of weight row `k` and activation row `i`.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
fn iq4_xs_tile8<const M: usize>(
    t: &Tile<8>,
    ys: [&[BlockQ8K]; M],
    bias: [&[i32]; M],
) -> [[f32; 8]; M] {
    let mut acc = [_mm256_setzero_ps(); M];
    let nb = ys.iter().fold(t.dx.len() / 8, |n, y| n.min(y.len()));
    for b in 0..nb {
        let mut s = [_mm256_setzero_si256(); M];
        for ib in 0..8 {
            let at = 8 * b + ib;
            let q: [&[i8; 32]; M] = core::array::from_fn(|i| chunk32i(&ys[i][b].qs, 32 * ib));
            let bs: [i32; M] = core::array::from_fn(|i| bias[i].get(at).copied().unwrap_or(0));
            let p = tile_block(t.vals.get(256 * at..).unwrap_or_default(), q, bs);
            let l = t.ls.get(8 * at..8 * at + 8).unwrap_or(&[0; 8]);
            // SAFETY: `l` is eight readable i32; `loadu` has no alignment requirement.
            let lv = unsafe { _mm256_loadu_si256(l.as_ptr().cast()) };
            for (s, p) in s.iter_mut().zip(p) {
                *s = _mm256_add_epi32(*s, _mm256_mullo_epi32(p, lv));
            }
        }
        let d = t.dx.get(8 * b..8 * b + 8).unwrap_or(&[0.0; 8]);
        // SAFETY: `d` is eight readable floats; `loadu` has no alignment requirement.
        let dxv = unsafe { _mm256_loadu_ps(d.as_ptr()) };
        for ((a, y), s) in acc.iter_mut().zip(ys).zip(s) {
            let r = _mm256_mul_ps(_mm256_cvtepi32_ps(s), dxv);
            *a = _mm256_fmadd_ps(r, _mm256_set1_ps(y[b].d), *a);
        }
    }
    acc.map(|a| to_array(a))
}

/// [`tile_block`] for a tile block of sixteen rows (512 bytes), the sixteen rows in sixteen lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
fn tile16_block<const M: usize>(vals: &[u8], ys: [&[i8; 32]; M], bias: [i32; M]) -> [__m512i; M] {
    let Some(vals) = vals.get(..512) else {
        return [_mm512_setzero_si512(); M];
    };
    let mut acc = [[_mm512_setzero_si512(); 2]; M];
    for (g, x) in vals.chunks_exact(64).enumerate() {
        // SAFETY: `x` is 64 readable bytes; `loadu` has no alignment requirement.
        let x = unsafe { _mm512_loadu_si512(x.as_ptr().cast()) };
        for (a, y) in acc.iter_mut().zip(ys) {
            let w = i32::from_le_bytes([
                y[4 * g] as u8,
                y[4 * g + 1] as u8,
                y[4 * g + 2] as u8,
                y[4 * g + 3] as u8,
            ]);
            a[g % 2] = _mm512_dpbusd_epi32(a[g % 2], x, _mm512_set1_epi32(w));
        }
    }
    core::array::from_fn(|i| {
        _mm512_sub_epi32(
            _mm512_add_epi32(acc[i][0], acc[i][1]),
            _mm512_set1_epi32(bias[i]),
        )
    })
}

/// Sixteen f32 lanes as an array.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
fn to_array16(v: __m512) -> [f32; 16] {
    let mut out = [0.0f32; 16];
    // SAFETY: `out` is 16 writable floats; `storeu` has no alignment requirement.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// Sixteen floats from `v[at..at + 16]` (zeros past the end).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
fn load16f(v: &[f32], at: usize) -> __m512 {
    let d = v.get(at..at + 16).unwrap_or(&[0.0; 16]);
    // SAFETY: `d` is sixteen readable floats; `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_ps(d.as_ptr()) }
}

/// `M` activation rows against an IQ4_NL or Q4_0 tile of sixteen rows (as [`nl4_tile8`],
/// sixteen lanes).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
fn nl4_tile16<const M: usize>(
    t: &Tile<16>,
    ys: [&[BlockQ8_0]; M],
    bias: [&[i32]; M],
) -> [[f32; 16]; M] {
    let mut acc = [_mm512_setzero_ps(); M];
    let nb = ys.iter().fold(t.dx.len() / 16, |n, y| n.min(y.len()));
    for b in 0..nb {
        let q: [&[i8; 32]; M] = core::array::from_fn(|i| &ys[i][b].qs);
        let bs: [i32; M] = core::array::from_fn(|i| bias[i].get(b).copied().unwrap_or(0));
        let isum = tile16_block(t.vals.get(512 * b..).unwrap_or_default(), q, bs);
        let dxv = load16f(&t.dx, 16 * b);
        for ((a, y), s) in acc.iter_mut().zip(ys).zip(isum) {
            let sc = _mm512_mul_ps(dxv, _mm512_set1_ps(y[b].d.to_f32()));
            *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), sc, *a);
        }
    }
    acc.map(|a| to_array16(a))
}

/// `M` activation rows against an IQ4_XS tile of sixteen rows (as [`iq4_xs_tile8`], sixteen
/// lanes).
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
fn iq4_xs_tile16<const M: usize>(
    t: &Tile<16>,
    ys: [&[BlockQ8K]; M],
    bias: [&[i32]; M],
) -> [[f32; 16]; M] {
    let mut acc = [_mm512_setzero_ps(); M];
    let nb = ys.iter().fold(t.dx.len() / 16, |n, y| n.min(y.len()));
    for b in 0..nb {
        let mut s = [_mm512_setzero_si512(); M];
        for ib in 0..8 {
            let at = 8 * b + ib;
            let q: [&[i8; 32]; M] = core::array::from_fn(|i| chunk32i(&ys[i][b].qs, 32 * ib));
            let bs: [i32; M] = core::array::from_fn(|i| bias[i].get(at).copied().unwrap_or(0));
            let p = tile16_block(t.vals.get(512 * at..).unwrap_or_default(), q, bs);
            let l = t.ls.get(16 * at..16 * at + 16).unwrap_or(&[0; 16]);
            // SAFETY: `l` is sixteen readable i32; `loadu` has no alignment requirement.
            let lv = unsafe { _mm512_loadu_si512(l.as_ptr().cast()) };
            for (s, p) in s.iter_mut().zip(p) {
                *s = _mm512_add_epi32(*s, _mm512_mullo_epi32(p, lv));
            }
        }
        let dxv = load16f(&t.dx, 16 * b);
        for ((a, y), s) in acc.iter_mut().zip(ys).zip(s) {
            let r = _mm512_mul_ps(_mm512_cvtepi32_ps(s), dxv);
            *a = _mm512_fmadd_ps(r, _mm512_set1_ps(y[b].d), *a);
        }
    }
    acc.map(|a| to_array16(a))
}

/// One and four activation rows against a tile of `R` weight rows.
type TileFns<A, const R: usize> = (
    unsafe fn(&Tile<R>, [&[A]; 1], [&[i32]; 1]) -> [[f32; R]; 1],
    unsafe fn(&Tile<R>, [&[A]; 4], [&[i32]; 4]) -> [[f32; R]; 4],
);

/// The VNNI tile path of a product of several activation rows: groups of `R` weight rows from
/// `rows.start` unpacked once into a [`Tile`], then every activation row against them (four
/// per pass). Returns the first row not done (fewer than `R` left): the caller finishes them.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
fn tile_matmul<W, A, const R: usize>(
    g: &Product,
    w: &[W],
    rows: core::ops::Range<usize>,
    acts: &[A],
    out: &mut [f32],
    unpack: fn(&mut Tile<R>, &[&[W]; R], usize),
    biases: fn(&[A], &mut Vec<i32>),
    kernels: TileFns<A, R>,
) -> usize {
    let (nb, m) = (g.nb(), g.m);
    let mut bias = Vec::new();
    for i in 0..m {
        biases(g.act(acts, i), &mut bias);
    }
    let per = bias.len() / m.max(1);
    let b = |i: usize| bias.get(i * per..(i + 1) * per).unwrap_or_default();
    let mut tile = Tile::<R>::default();
    let mut r0 = rows.start;
    while r0 + R <= rows.end {
        let xs: [&[W]; R] = core::array::from_fn(|k| g.wrow(w, r0 + k));
        unpack(&mut tile, &xs, nb);
        let mut i = 0;
        while i < m {
            let n = if i + 4 <= m { 4 } else { 1 };
            let res: [[f32; R]; 4] = if n == 4 {
                let a = core::array::from_fn(|k| g.act(acts, i + k));
                let bs = core::array::from_fn(|k| b(i + k));
                // SAFETY: the caller checked the kernel's features.
                unsafe { (kernels.1)(&tile, a, bs) }
            } else {
                // SAFETY: as above.
                let [v] = unsafe { (kernels.0)(&tile, [g.act(acts, i)], [b(i)]) };
                [v, [0.0; R], [0.0; R], [0.0; R]]
            };
            for (k, r) in res.iter().take(n).enumerate() {
                let at = (i + k) * g.stride + r0 - g.base;
                if let Some(o) = out.get_mut(at..at + R) {
                    o.copy_from_slice(r);
                }
            }
            i += n;
        }
        r0 += R;
    }
    r0
}

/// IQ4_XS weights (tiled order) against `m >= 2` activation rows through the VNNI tiles (of
/// sixteen rows with AVX-512, then eight); bit-identical to `dot::iq4_xs_q8_k_tiled` on every
/// pair. False (nothing written) without AVX-512 VNNI or for a single row.
#[allow(clippy::too_many_arguments)]
pub(crate) fn iq4_xs_tiled_matmul(
    w: &[BlockIq4Xs],
    wb: usize,
    rows: core::ops::Range<usize>,
    acts: &[BlockQ8K],
    ab: usize,
    m: usize,
    out: &mut [f32],
    stride: usize,
) -> bool {
    if m < 2 || !super::has_avx512_vnni() {
        return false;
    }
    let g = Product {
        wb,
        ab,
        m,
        stride,
        base: rows.start,
    };
    let mut start = rows.start;
    if super::has_avx512() {
        // SAFETY: AVX2, FMA, F16C and AVX-512 F/BW/VNNI/VL are present (checked).
        start = unsafe {
            tile_matmul(
                &g,
                w,
                start..rows.end,
                acts,
                out,
                Tile::<16>::iq4_xs,
                biases_q8_k,
                (iq4_xs_tile16::<1>, iq4_xs_tile16::<4>),
            )
        };
    }
    // SAFETY: AVX2, FMA, F16C and AVX-512 VNNI/VL are present (checked above).
    start = unsafe {
        tile_matmul(
            &g,
            w,
            start..rows.end,
            acts,
            out,
            Tile::<8>::iq4_xs,
            biases_q8_k,
            (iq4_xs_tile8::<1>, iq4_xs_tile8::<4>),
        )
    };
    for r in start..rows.end {
        for i in 0..m {
            g.put(out, i, r, iq4_xs_q8_k_tiled(g.wrow(w, r), g.act(acts, i)));
        }
    }
    true
}

wrap!(
    /// IQ4_NL · Q8_0.
    iq4_nl_q8_0,
    iq4_nl_q8_0_x4,
    nl4_q8_0_avx2,
    dot::iq4_nl_q8_0,
    BlockIq4Nl,
    BlockQ8_0
);
wrap!(
    /// Q4_0 · Q8_0 (in the order of ggml's x86 repacked kernels).
    q4_0_q8_0,
    q4_0_q8_0_x4,
    nl4_q8_0_avx2,
    dot::q4_0_q8_0,
    BlockQ4_0,
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

wrap!(
    /// MXFP4 · Q8_0.
    mxfp4_q8_0,
    mxfp4_q8_0_x4,
    mxfp4_q8_0_avx2,
    dot::mxfp4_q8_0,
    BlockMxfp4,
    BlockQ8_0
);
wrap!(
    /// Q5_K · Q8_K.
    q5_k_q8_k,
    q5_k_q8_k_x4,
    q5_k_q8_k_vec_avx2,
    dot::q5_k_q8_k,
    BlockQ5K,
    BlockQ8K
);
wrap!(
    /// Q5_K · Q8_K in the order of ggml's tiled matmul.
    q5_k_q8_k_tiled,
    q5_k_q8_k_tiled_x4,
    q5_k_q8_k_tiled_avx2,
    dot::q5_k_q8_k_tiled,
    BlockQ5K,
    BlockQ8K
);

#[cfg(test)]
mod tests {
    use super::super::test_util::{blocks, Rng};
    use super::*;
    use half::f16;

    fn to_vec8(v: __m256) -> Vec<u32> {
        let mut out = [0.0f32; 8];
        // SAFETY: `out` is 8 writable floats; AVX is present wherever this is called.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) };
        out.iter().map(|f| f.to_bits()).collect()
    }

    fn scale(rng: &mut Rng) -> f16 {
        f16::from_f32(rng.scale())
    }

    /// The SIMD interleaving gives the scalar one's bytes.
    #[test]
    fn interleave_twins() {
        let mut rng = Rng(77);
        for _ in 0..50 {
            let mut qs = [[0u8; 16]; 8];
            for q in &mut qs {
                rng.fill(q);
            }
            for table in [&KVALUES_IQ4NL, &KVALUES_Q4_0] {
                let mut want = [0u8; 256];
                for (k, q) in qs.iter().enumerate() {
                    interleave_block(table, q, k, 8, &mut want);
                }
                let mut got = [0u8; 256];
                if has_avx2() {
                    let q = core::array::from_fn(|k| &qs[k]);
                    // SAFETY: AVX2, FMA and F16C are present (checked just above).
                    unsafe { interleave8(table, q, &mut got, 32) };
                    assert_eq!(got, want);
                }
            }
        }
    }

    /// The IQ4_NL or Q4_0 kernels (one, four activation rows; the whole product's tiles and
    /// decode kernels) against `dot::nl4_q8_0`, bit for bit, on random blocks of `nb`.
    fn nl4_twins<B: Nl4Block>(
        rng: &mut Rng,
        nb: usize,
        ys: &[Vec<BlockQ8_0>],
        one: fn(&[B], &[BlockQ8_0]) -> f32,
        four: fn(&[B], [&[BlockQ8_0]; 4]) -> [f32; 4],
        what: &str,
    ) {
        // Random bytes, then a finite scale in the leading f16 (both types start with `d`).
        let gen = |rng: &mut Rng, n: usize| -> Vec<B> {
            blocks(rng, n, |b: &mut B, r| {
                let d = scale(r).to_bits().to_le_bytes();
                bytemuck::bytes_of_mut(b)[..2].copy_from_slice(&d);
            })
        };
        let xs: Vec<Vec<B>> = (0..4).map(|_| gen(rng, nb)).collect();
        for x in &xs {
            let w: Vec<u32> = ys.iter().map(|y| dot::nl4_q8_0(x, y).to_bits()).collect();
            let got: Vec<u32> = ys.iter().map(|y| one(x, y).to_bits()).collect();
            assert_eq!(got, w, "{what} one row, nb {nb}");
            let quad = four(x, [&ys[0], &ys[1], &ys[2], &ys[3]]).map(f32::to_bits);
            assert_eq!(quad.to_vec(), w, "{what} four rows, nb {nb}");
        }
        // Eight and more weight rows through the grouped kernels, one and several activation
        // rows.
        let xs8: Vec<B> = gen(rng, 27 * nb);
        for m in [1usize, 3, 6] {
            let acts: Vec<BlockQ8_0> = (0..m).flat_map(|i| ys[i % 4].clone()).collect();
            let mut out = vec![f32::NAN; m * 26];
            assert!(nl4_matmul(&xs8, nb, 1..27, &acts, nb, m, &mut out, 26));
            for i in 0..m {
                for r in 1..27 {
                    let want = dot::nl4_q8_0(&xs8[r * nb..(r + 1) * nb], &ys[i % 4]);
                    assert_eq!(
                        out[i * 26 + r - 1].to_bits(),
                        want.to_bits(),
                        "{what} matmul m {m} act {i} row {r} nb {nb}"
                    );
                }
            }
        }
        // Both decode kernels (AVX2, VNNI) against the scalar twin.
        let x8: [&[B]; 8] = core::array::from_fn(|k| &xs8[k * nb..(k + 1) * nb]);
        let want8: Vec<u32> = x8
            .iter()
            .map(|x| dot::nl4_q8_0(x, &ys[0]).to_bits())
            .collect();
        if has_avx2() {
            // SAFETY: AVX2, FMA and F16C are present (checked just above).
            let v = to_vec8(unsafe { nl4_rows8(&x8, &ys[0]) });
            assert_eq!(v, want8, "{what} rows8 avx2 nb {nb}");
        }
        if crate::simd::has_avx512_vnni() {
            let mut bias = Vec::new();
            biases_q8_0(&ys[0], &mut bias);
            // SAFETY: AVX2, FMA, F16C and AVX-512 VNNI/VL are present (checked).
            let v = to_vec8(unsafe { nl4_rows8_vnni(&x8, &ys[0], &bias) });
            assert_eq!(v, want8, "{what} rows8 vnni nb {nb}");
        }
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
            nl4_twins::<BlockIq4Nl>(&mut rng, nb, &ys, iq4_nl_q8_0, iq4_nl_q8_0_x4, "iq4_nl");
            nl4_twins::<BlockQ4_0>(&mut rng, nb, &ys, q4_0_q8_0, q4_0_q8_0_x4, "q4_0");

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

            let xs8: Vec<BlockIq4Xs> = (0..27)
                .flat_map(|_| blocks(&mut rng, nk, |b: &mut BlockIq4Xs, r| b.d = scale(r)))
                .collect();
            let acts: Vec<BlockQ8K> = (0..6).flat_map(|i| yk[i % 4].clone()).collect();
            let mut out = vec![f32::NAN; 6 * 26];
            if iq4_xs_tiled_matmul(&xs8, nk, 1..27, &acts, nk, 6, &mut out, 26) {
                for i in 0..6 {
                    for r in 1..27 {
                        let want = dot::iq4_xs_q8_k_tiled(&xs8[r * nk..(r + 1) * nk], &yk[i % 4]);
                        assert_eq!(
                            out[i * 26 + r - 1].to_bits(),
                            want.to_bits(),
                            "iq4_xs tiled matmul act {i} row {r} nb {nk}"
                        );
                    }
                }
            }

            let xm = blocks(&mut rng, nb, |_: &mut BlockMxfp4, _| {});
            let want: Vec<u32> = ys
                .iter()
                .map(|y| dot::mxfp4_q8_0(&xm, y).to_bits())
                .collect();
            let one: Vec<u32> = ys.iter().map(|y| mxfp4_q8_0(&xm, y).to_bits()).collect();
            assert_eq!(one, want, "mxfp4 one row, nb {nb}");
            let quad = mxfp4_q8_0_x4(&xm, [&ys[0], &ys[1], &ys[2], &ys[3]]).map(f32::to_bits);
            assert_eq!(quad.to_vec(), want, "mxfp4 four rows, nb {nb}");

            let x5 = blocks(&mut rng, nk, |b: &mut BlockQ5K, r| {
                b.d = scale(r);
                b.dmin = scale(r);
            });
            type K5 = fn(&[BlockQ5K], &[BlockQ8K]) -> f32;
            type K5x4 = fn(&[BlockQ5K], [&[BlockQ8K]; 4]) -> [f32; 4];
            let pairs: [(K5, K5, K5x4, &str); 2] = [
                (dot::q5_k_q8_k, q5_k_q8_k, q5_k_q8_k_x4, "q5_k"),
                (
                    dot::q5_k_q8_k_tiled,
                    q5_k_q8_k_tiled,
                    q5_k_q8_k_tiled_x4,
                    "q5_k tiled",
                ),
            ];
            for (scalar, one, four, what) in pairs {
                let want: Vec<u32> = yk.iter().map(|y| scalar(&x5, y).to_bits()).collect();
                let got: Vec<u32> = yk.iter().map(|y| one(&x5, y).to_bits()).collect();
                assert_eq!(got, want, "{what} one row, nb {nk}");
                let quad = four(&x5, [&yk[0], &yk[1], &yk[2], &yk[3]]).map(f32::to_bits);
                assert_eq!(quad.to_vec(), want, "{what} four rows, nb {nk}");
            }
        }
    }
}
