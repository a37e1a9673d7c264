//! AVX-512 (F, BW, VL, VNNI) kernels for the Q4_1 hot path. Each 512-bit register carries two
//! (weight row, activation row) pairs, one per 256-bit half, and each half performs exactly the
//! 8-lane operations of the 256-bit VNNI kernel in `avx2.rs` (the same `vpdpbusd` lane sums,
//! the same conversion, the same FMA into the same 8-lane accumulator, the same final
//! `hsum_float_8`), so the results are bit-identical to it and to the scalar twin, with half
//! the instructions per pair.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use crate::blocks::*;

use super::avx2::{chunk32, fifth_bits, head32, hsum_ps, load16, load32, load32i, nibbles};

/// How far ahead of the rows being read the weight stream is prefetched, in bytes (about 90
/// cache lines: measured best on 576- to 2048-wide Q4_1 matrices, flat from 3 to 12 KiB).
const PREFETCH_AHEAD: usize = 5760;

/// Where the weight stream continues after `last`, [`PREFETCH_AHEAD`] bytes on. The
/// four-weight-row kernels are passed consecutive rows of one matrix, so the bytes after the
/// fourth row are the next call's rows: they prefetch them that far ahead, at the rate they
/// consume their own. Only ever prefetched: any address is harmless.
#[inline]
pub(super) fn stream_after<W>(last: &[W]) -> *const u8 {
    last.as_ptr_range()
        .end
        .cast::<u8>()
        .wrapping_add(PREFETCH_AHEAD)
}

/// Prefetches the cache lines of `len` bytes at `at + off` of a stream from [`stream_after`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn prefetch_stream(at: *const u8, off: usize, len: usize) {
    let p = at.wrapping_add(off);
    for line in (0..len).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line).cast());
    }
}

/// Lane indices that spread scale `LO` over the low 8 lanes and `HI` over the high 8.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair_index(lo: i32, hi: i32) -> __m512i {
    _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_set1_epi32(lo)),
        _mm256_set1_epi32(hi),
    )
}

/// [`pair_index`] for the four pairs of eight activation rows.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn pair_indices() -> [__m512i; 4] {
    [
        pair_index(0, 1),
        pair_index(2, 3),
        pair_index(4, 5),
        pair_index(6, 7),
    ]
}

/// The number of blocks every weight and activation row has, and the rows' first blocks (the
/// multi-row kernels index them below that number only).
#[inline]
fn block_rows<X, Y, const R: usize, const M: usize>(
    xs: &[&[X]; R],
    ys: &[&[Y]; M],
) -> (usize, [*const X; R], [*const Y; M]) {
    let nx = xs.iter().fold(usize::MAX, |n, x| n.min(x.len()));
    let nb = ys.iter().fold(nx, |n, y| n.min(y.len()));
    (nb, xs.map(|x| x.as_ptr()), ys.map(|y| y.as_ptr()))
}

/// The nibbles of two Q4 blocks, each unpacked as [`nibbles`] does: block `a` in the low
/// 256 bits, block `b` in the high 256 bits.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn nibbles2(a: &[u8; 16], b: &[u8; 16]) -> __m512i {
    let ab = _mm256_set_m128i(load16(b), load16(a));
    let z = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(ab), _mm256_srli_epi16::<4>(ab));
    // 128-bit lanes [a, b, a >> 4, b >> 4] → [a, a >> 4, b, b >> 4].
    let z = _mm512_shuffle_i64x2::<0b11_01_10_00>(z, z);
    _mm512_and_si512(z, _mm512_set1_epi8(0x0F))
}

/// The two 8-lane halves of a 16-lane accumulator.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn halves(v: __m512) -> [__m256; 2] {
    [
        _mm512_castps512_ps256(v),
        _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v))),
    ]
}

/// `[f32(d), f32(second f16)]` of a block's first four bytes, in lanes 0 and 1 (a `vmovd`
/// load: no dependency on an older register).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn head_ps<T: bytemuck::Pod>(block: &T) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi32_si128(head32(block)))
}

/// Lanes 0, 2, 4, 6 and 1, 3, 5, 7 of eight converted `(d, m)` or `(d, s)` pairs.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn even_odd(v: __m256) -> (__m128, __m128) {
    let (lo, hi) = (_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    (
        _mm_shuffle_ps::<0b10_00_10_00>(lo, hi),
        _mm_shuffle_ps::<0b11_01_11_01>(lo, hi),
    )
}

/// Q4_1 · Q8_1, four weight rows against one activation row: the operations of
/// `q4_1_q8_1_r4_vnni` per (weight row, activation row) pair, two pairs per register.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn q4_1_q8_1_r4_512(xs: [&[BlockQ4_1]; 4], y: &[BlockQ8_1]) -> [f32; 4] {
    let nb = xs.iter().fold(y.len(), |n, x| n.min(x.len()));
    let [x0, x1, x2, x3] = xs.map(|x| &x[..nb]);
    let y = &y[..nb];
    let (i01, i23) = (pair_index(0, 1), pair_index(2, 3));
    let mut acc01 = _mm512_setzero_ps();
    let mut acc23 = _mm512_setzero_ps();
    let mut summs4 = _mm_setzero_ps();
    // The four rows are read side by side, which the hardware prefetchers follow poorly (in
    // practice half the bandwidth of one stream): see `stream_after`.
    let ahead = stream_after(x3);
    let step = 4 * core::mem::size_of::<BlockQ4_1>();
    for b in 0..nb {
        let (yb, a, bb, c, d) = (&y[b], &x0[b], &x1[b], &x2[b], &x3[b]);
        prefetch_stream(ahead, step * b, step);
        let yds = head_ps(yb);
        let (dy, sy) = (
            _mm_broadcastss_ps(yds),
            _mm_permute_ps::<0b01_01_01_01>(yds),
        );
        let yq = _mm512_broadcast_i64x4(load32i(&yb.qs));
        let heads = _mm_setr_epi32(head32(a), head32(bb), head32(c), head32(d));
        let (d4, m4) = even_odd(_mm256_cvtph_ps(heads));
        summs4 = _mm_fmadd_ps(m4, sy, summs4);
        let dd = _mm512_castps128_ps512(_mm_mul_ps(d4, dy));
        let zero = _mm512_setzero_si512();
        let p01 = _mm512_dpbusd_epi32(zero, nibbles2(&a.qs, &bb.qs), yq);
        let p23 = _mm512_dpbusd_epi32(zero, nibbles2(&c.qs, &d.qs), yq);
        acc01 = _mm512_fmadd_ps(
            _mm512_permutexvar_ps(i01, dd),
            _mm512_cvtepi32_ps(p01),
            acc01,
        );
        acc23 = _mm512_fmadd_ps(
            _mm512_permutexvar_ps(i23, dd),
            _mm512_cvtepi32_ps(p23),
            acc23,
        );
    }
    let mut sm = [0.0f32; 4];
    // SAFETY: `sm` is 4 writable floats; `storeu` needs no alignment.
    unsafe { _mm_storeu_ps(sm.as_mut_ptr(), summs4) };
    let [a0, a1] = halves(acc01);
    let [a2, a3] = halves(acc23);
    [
        hsum_ps(a0) + sm[0],
        hsum_ps(a1) + sm[1],
        hsum_ps(a2) + sm[2],
        hsum_ps(a3) + sm[3],
    ]
}

/// The weights of a Q8_0 block as unsigned bytes (`x + 128`): with offset 128, the integer
/// sums of `q8_0_q8_0_vnni`'s biased `vpdpbusd`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_0_u8(x: &BlockQ8_0) -> __m256i {
    _mm256_xor_si256(load32i(&x.qs), _mm256_set1_epi8(-128))
}

/// The weights of a Q5_0 block as unsigned 5-bit values (offset 16).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q5_0_u8(x: &BlockQ5_0) -> __m256i {
    _mm256_or_si256(nibbles(&x.qs), fifth_bits(x.qh))
}

/// The wide kernels of a legacy type with an f16 scale and no min against Q8_0 activations:
/// `$u8` gives a block's weights as unsigned bytes, `$offset` what they are offset by. Per
/// (weight row, activation row) pair: `vpdpbusd(u, y) - vpdpbusd(offset, y)` (the lane sums of
/// the 256-bit VNNI kernel), `fma(d_x d_y, lanes, acc)`, `hsum_float_8`; two pairs per
/// register, so every result is bit-identical to the one-pair kernel.
macro_rules! legacy_512 {
    ($r4:ident, $w:ty, $u8:ident, $offset:expr) => {
        /// Four weight rows against one activation row, prefetching the weight stream (see
        /// [`stream_after`]); the activation's offset correction once per block.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(super) fn $r4(xs: [&[$w]; 4], y: &[BlockQ8_0]) -> [f32; 4] {
            let nb = xs.iter().fold(y.len(), |n, x| n.min(x.len()));
            let [x0, x1, x2, x3] = xs.map(|x| &x[..nb]);
            let y = &y[..nb];
            let (i01, i23) = (pair_index(0, 1), pair_index(2, 3));
            let offset = _mm512_set1_epi8($offset as u8 as i8);
            let mut acc01 = _mm512_setzero_ps();
            let mut acc23 = _mm512_setzero_ps();
            let ahead = stream_after(x3);
            let step = 4 * core::mem::size_of::<$w>();
            for b in 0..nb {
                let (yb, a, bb, c, d) = (&y[b], &x0[b], &x1[b], &x2[b], &x3[b]);
                prefetch_stream(ahead, step * b, step);
                let dy = _mm_broadcastss_ps(head_ps(yb));
                let yq = _mm512_broadcast_i64x4(load32i(&yb.qs));
                let zero = _mm512_setzero_si512();
                let corr = _mm512_dpbusd_epi32(zero, offset, yq);
                let heads = _mm_setr_epi32(head32(a), head32(bb), head32(c), head32(d));
                let (dx4, _) = even_odd(_mm256_cvtph_ps(heads));
                let dd = _mm512_castps128_ps512(_mm_mul_ps(dx4, dy));
                let u01 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512($u8(a)), $u8(bb));
                let u23 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512($u8(c)), $u8(d));
                let s01 = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, u01, yq), corr);
                let s23 = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, u23, yq), corr);
                let (d01, d23) = (
                    _mm512_permutexvar_ps(i01, dd),
                    _mm512_permutexvar_ps(i23, dd),
                );
                acc01 = _mm512_fmadd_ps(d01, _mm512_cvtepi32_ps(s01), acc01);
                acc23 = _mm512_fmadd_ps(d23, _mm512_cvtepi32_ps(s23), acc23);
            }
            let [a0, a1] = halves(acc01);
            let [a2, a3] = halves(acc23);
            [hsum_ps(a0), hsum_ps(a1), hsum_ps(a2), hsum_ps(a3)]
        }
    };
    ($r4:ident, $xm:ident, $w:ty, $u8:ident, $offset:expr) => {
        legacy_512!($r4, $w, $u8, $offset);

        /// `R` weight rows (1 to 4) against `M` activation rows (`M` = 2, 4, 6 or 8), two
        /// activation rows per register; the activations' loads, scales and offset
        /// corrections are shared by the weight rows.
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        pub(super) fn $xm<const R: usize, const M: usize>(
            xs: [&[$w]; R],
            ys: [&[BlockQ8_0]; M],
        ) -> [[f32; M]; R] {
            const { assert!(M.is_multiple_of(2) && M <= 8 && R >= 1 && R <= 4) };
            let (nb, xp, yp) = block_rows(&xs, &ys);
            let idx = pair_indices();
            let offset = _mm512_set1_epi8($offset as u8 as i8);
            let zero = _mm512_setzero_si512();
            let mut acc = [[_mm512_setzero_ps(); 4]; R];
            for b in 0..nb {
                // Block `b` of every weight and activation row is in bounds: `b < nb`, and
                // `nb` is at most every row's length.
                let mut dy = [_mm_setzero_ps(); 2];
                for (g, dyg) in dy.iter_mut().enumerate().take(M.div_ceil(4)) {
                    let mut h = [0i32; 4];
                    for (k, h) in h.iter_mut().enumerate() {
                        if let Some(y) = yp.get(4 * g + k) {
                            // SAFETY: block `b` of an activation row (in bounds, see above).
                            *h = head32(unsafe { &*y.add(b) });
                        }
                    }
                    let heads = _mm_setr_epi32(h[0], h[1], h[2], h[3]);
                    *dyg = even_odd(_mm256_cvtph_ps(heads)).0;
                }
                let mut yz = [zero; 4];
                let mut corr = [zero; 4];
                for (j, (yj, cj)) in yz.iter_mut().zip(&mut corr).enumerate().take(M / 2) {
                    // SAFETY: block `b` of two activation rows (in bounds, see above).
                    let (y0, y1) = unsafe { (&*yp[2 * j].add(b), &*yp[2 * j + 1].add(b)) };
                    *yj = _mm512_inserti64x4::<1>(
                        _mm512_castsi256_si512(load32i(&y0.qs)),
                        load32i(&y1.qs),
                    );
                    *cj = _mm512_dpbusd_epi32(zero, offset, *yj);
                }
                for (xr, accr) in xp.iter().zip(&mut acc) {
                    // SAFETY: block `b` of a weight row (in bounds, see above).
                    let xb = unsafe { &*xr.add(b) };
                    let u = $u8(xb);
                    let uz = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(u), u);
                    let dx = _mm_broadcastss_ps(head_ps(xb));
                    let dd8 = _mm512_castps256_ps512(_mm256_set_m128(
                        _mm_mul_ps(dx, dy[1]),
                        _mm_mul_ps(dx, dy[0]),
                    ));
                    let pairs = accr.iter_mut().zip(&idx).zip(yz.iter().zip(&corr));
                    for ((a, ix), (yj, cj)) in pairs.take(M / 2) {
                        let s = _mm512_sub_epi32(_mm512_dpbusd_epi32(zero, uz, *yj), *cj);
                        let d = _mm512_permutexvar_ps(*ix, dd8);
                        *a = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(s), *a);
                    }
                }
            }
            let mut out = [[0.0f32; M]; R];
            for (outr, accr) in out.iter_mut().zip(acc) {
                for (o, a) in outr.chunks_exact_mut(2).zip(accr) {
                    if let [o0, o1] = o {
                        let [lo, hi] = halves(a);
                        *o0 = hsum_ps(lo);
                        *o1 = hsum_ps(hi);
                    }
                }
            }
            out
        }
    };
}

legacy_512!(q8_0_q8_0_r4_512, q8_0_q8_0_xm_512, BlockQ8_0, q8_0_u8, 128);
legacy_512!(q5_0_q8_0_r4_512, BlockQ5_0, q5_0_u8, 16);

/// The first fold of [`q4_k_q8_k_grouped_x8_512`]'s lane sums: `[a0+a2, b0+b2, a1+a3, b1+b3]`
/// in every 128-bit lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn fold32(a: __m512i, b: __m512i) -> __m512i {
    _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b))
}

/// The second fold: of two first folds `(a, b)` and `(c, d)`, `[a, b, c, d]` summed over the
/// 128-bit lane (32-bit sums: no carry between the rows).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn fold64(a: __m512i, b: __m512i) -> __m512i {
    _mm512_add_epi32(_mm512_unpacklo_epi64(a, b), _mm512_unpackhi_epi64(a, b))
}

/// Two folds of four rows' 16-lane sums: per 128-bit lane, one partial sum for each of the
/// four rows (`[r0, r1, r2, r3]`), exact.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn fold4(d: &[__m512i]) -> __m512i {
    let z = _mm512_setzero_si512();
    let at = |i: usize| d.get(i).copied().unwrap_or(z);
    fold64(fold32(at(0), at(1)), fold32(at(2), at(3)))
}

/// Q4_K · Q8_K for one weight row against eight activation rows in the order of ggml's x86
/// `ggml_gemm_q4_K_8x8_q8_K` (the scalar twin is `dot::q4_k_q8_k_grouped`), with the eight
/// activation rows in the eight lanes of a vector: per pair of sub-blocks `p` the exact integer
/// sums `isum_p` and `imin_p` of every row (a 512-bit `vpdpbusd` per row gives both
/// sub-blocks' lane sums at once; the lanes are folded across the rows, exact in integers),
/// then `acc = fma(isum_p, d_x d_y, acc)` and `accm = fma(imin_p, dmin_x d_y, accm)` as one
/// vector operation each, lane `k` doing row `k`'s scalar operation; `acc - accm` at the end.
/// Bit-identical to the scalar twin on every row.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn q4_k_q8_k_grouped_x8_512(x: &[BlockQ4K], ys: [&[BlockQ8K]; 8]) -> [f32; 8] {
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    let x = &x[..nb];
    let yp = ys.map(|y| y.as_ptr());
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = _mm256_setzero_ps();
    let mut accm = _mm256_setzero_ps();
    for (b, xb) in x.iter().enumerate() {
        // SAFETY: `b < nb`, and `nb` is at most every activation row's length.
        let yb: [&BlockQ8K; 8] = core::array::from_fn(|k| unsafe { &*yp[k].add(b) });
        let u = super::avx2::k4_unpack(&xb.scales);
        let xdm = head_ps(xb);
        let (dx, dminx) = (
            _mm256_broadcastss_ps(xdm),
            _mm256_broadcastss_ps(_mm_movehdup_ps(xdm)),
        );
        let yd = _mm256_setr_ps(
            yb[0].d, yb[1].d, yb[2].d, yb[3].d, yb[4].d, yb[5].d, yb[6].d, yb[7].d,
        );
        let (dxy, dmy) = (_mm256_mul_ps(dx, yd), _mm256_mul_ps(dminx, yd));
        // imin for the four sub-block pairs of every row: the bsums summed in pairs, times the
        // eight mins (`madd`), gives row k's four values; transposed to one vector per pair.
        let mins = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, u[3] as i32, u[2] as i32));
        let imin4: [__m128i; 8] = core::array::from_fn(|k| {
            let bs = &yb[k].bsums;
            // SAFETY: `bs` is 16 i16 (32 readable bytes); `loadu` needs no alignment.
            let (lo, hi) = unsafe {
                (
                    _mm_loadu_si128(bs.as_ptr().cast()),
                    _mm_loadu_si128(bs.as_ptr().add(8).cast()),
                )
            };
            _mm_madd_epi16(mins, _mm_hadd_epi16(lo, hi))
        });
        let t: [__m256i; 4] = core::array::from_fn(|k| _mm256_set_m128i(imin4[k + 4], imin4[k]));
        let (t01l, t01h) = (
            _mm256_unpacklo_epi32(t[0], t[1]),
            _mm256_unpackhi_epi32(t[0], t[1]),
        );
        let (t23l, t23h) = (
            _mm256_unpacklo_epi32(t[2], t[3]),
            _mm256_unpackhi_epi32(t[2], t[3]),
        );
        let imin = [
            _mm256_unpacklo_epi64(t01l, t23l),
            _mm256_unpackhi_epi64(t01l, t23l),
            _mm256_unpacklo_epi64(t01h, t23h),
            _mm256_unpackhi_epi64(t01h, t23h),
        ];
        let sc = [u[0].to_le_bytes(), u[1].to_le_bytes()];
        for (p, imin_p) in imin.into_iter().enumerate() {
            let q = load32(chunk32(&xb.qs, 32 * p));
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
            let xz = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi);
            let zero = _mm512_setzero_si512();
            // Row k's 16 lane sums: 8 for sub-block 2p (low half), 8 for 2p + 1 (high half).
            let d: [__m512i; 8] = core::array::from_fn(|k| {
                let yq = &yb[k].qs;
                // SAFETY: `64 p + 64 <= 256`: 64 readable bytes; `loadu` needs no alignment.
                let y = unsafe { _mm512_loadu_si512(yq.as_ptr().add(64 * p).cast()) };
                _mm512_dpbusd_epi32(zero, xz, y)
            });
            let (g0, g1) = (fold4(&d[..4]), fold4(&d[4..]));
            let half = |g: __m512i| {
                (
                    _mm_add_epi32(
                        _mm512_extracti32x4_epi32::<0>(g),
                        _mm512_extracti32x4_epi32::<1>(g),
                    ),
                    _mm_add_epi32(
                        _mm512_extracti32x4_epi32::<2>(g),
                        _mm512_extracti32x4_epi32::<3>(g),
                    ),
                )
            };
            let ((lo0, hi0), (lo1, hi1)) = (half(g0), half(g1));
            let (slo, shi) = match sc[p / 2].get(2 * (p % 2)..2 * (p % 2) + 2) {
                Some([a, b]) => (i32::from(*a), i32::from(*b)),
                _ => (0, 0),
            };
            let isum = _mm256_add_epi32(
                _mm256_mullo_epi32(_mm256_set_m128i(lo1, lo0), _mm256_set1_epi32(slo)),
                _mm256_mullo_epi32(_mm256_set_m128i(hi1, hi0), _mm256_set1_epi32(shi)),
            );
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), dxy, acc);
            accm = _mm256_fmadd_ps(_mm256_cvtepi32_ps(imin_p), dmy, accm);
        }
    }
    let mut out = [0.0f32; 8];
    // SAFETY: `out` is 8 writable floats; `storeu` needs no alignment.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), _mm256_sub_ps(acc, accm)) };
    out
}

/// Q6_K · Q8_K for one weight row against eight activation rows in the order of ggml's tiled
/// K-quant matmul (the scalar twin is `dot::q6_k_q8_k_tiled`), the eight activation rows in the
/// eight lanes of a vector: per block every row's exact integer
/// `s = sum_g scale_g sum_{e in g} (q_e - 32) y_e` (`maddubs` + `madd` with the group scales on
/// 64 bytes at a time, less `32 sum_g scale_g bsums_g`, folded across the rows), then
/// `acc = fma(f32(s) d_x, d_y, acc)` as vector operations, lane k doing row k's scalar ones.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
pub(super) fn q6_k_q8_k_tiled_x8_512(x: &[BlockQ6K], ys: [&[BlockQ8K]; 8]) -> [f32; 8] {
    let nb = ys.iter().fold(x.len(), |n, y| n.min(y.len()));
    let x = &x[..nb];
    let yp = ys.map(|y| y.as_ptr());
    let m4 = _mm256_set1_epi8(0x0F);
    let m2 = _mm256_set1_epi8(0x03);
    // i16 element e of 64-byte chunk t takes the scale of group 4 t + e / 8.
    let sidx: [__m512i; 4] = core::array::from_fn(|t| {
        let t = t as i16 * 4;
        let lane = |l: i16| _mm_set1_epi16(t + l);
        _mm512_inserti64x4::<1>(
            _mm512_castsi256_si512(_mm256_set_m128i(lane(1), lane(0))),
            _mm256_set_m128i(lane(3), lane(2)),
        )
    });
    let mut acc = _mm256_setzero_ps();
    for (b, xb) in x.iter().enumerate() {
        // SAFETY: `b < nb`, and `nb` is at most every activation row's length.
        let yb: [&BlockQ8K; 8] = core::array::from_fn(|k| unsafe { &*yp[k].add(b) });
        // The 256 six-bit values in four 64-byte chunks, chunk t against `y.qs[64 t..]`.
        let mut z = [_mm512_setzero_si512(); 4];
        for (n, zn) in z.chunks_exact_mut(2).enumerate() {
            let qa = load32(chunk32(&xb.ql, 64 * n));
            let qb = load32(chunk32(&xb.ql, 64 * n + 32));
            let qh = load32(chunk32(&xb.qh, 32 * n));
            let high = |h: __m256i| _mm256_slli_epi16::<4>(_mm256_and_si256(h, m2));
            let q0 = _mm256_or_si256(_mm256_and_si256(qa, m4), high(qh));
            let q1 = _mm256_or_si256(_mm256_and_si256(qb, m4), high(_mm256_srli_epi16::<2>(qh)));
            let q2 = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(qa), m4),
                high(_mm256_srli_epi16::<4>(qh)),
            );
            let q3 = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(qb), m4),
                high(_mm256_srli_epi16::<6>(qh)),
            );
            if let [z0, z1] = zn {
                *z0 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(q0), q1);
                *z1 = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(q2), q3);
            }
        }
        // SAFETY: `scales` is 16 readable bytes; `loadu` has no alignment requirement.
        let sc16 = _mm256_cvtepi8_epi16(unsafe { _mm_loadu_si128(xb.scales.as_ptr().cast()) });
        let sc16z = _mm512_castsi256_si512(sc16);
        let scv: [__m512i; 4] = core::array::from_fn(|t| _mm512_permutexvar_epi16(sidx[t], sc16z));
        let s: [__m512i; 8] = core::array::from_fn(|k| {
            let y = yb[k];
            let mut s = _mm512_setzero_si512();
            for (t, (zt, st)) in z.iter().zip(&scv).enumerate() {
                // SAFETY: `64 t + 64 <= 256`: 64 readable bytes; `loadu` needs no alignment.
                let yv = unsafe { _mm512_loadu_si512(y.qs.as_ptr().add(64 * t).cast()) };
                let p = _mm512_madd_epi16(_mm512_maddubs_epi16(*zt, yv), *st);
                s = _mm512_add_epi32(s, p);
            }
            // ggml's `q8sclsub`: 32 sum_g scale_g bsums_g taken off (from any lanes: only the
            // total counts).
            // SAFETY: `bsums` is 16 i16 (32 readable bytes); `loadu` needs no alignment.
            let bs = unsafe { _mm256_loadu_si256(y.bsums.as_ptr().cast()) };
            let sub = _mm256_slli_epi32::<5>(_mm256_madd_epi16(bs, sc16));
            _mm512_sub_epi32(s, _mm512_castsi256_si512(sub))
        });
        let total = |g: __m512i| {
            let lo = _mm_add_epi32(
                _mm512_extracti32x4_epi32::<0>(g),
                _mm512_extracti32x4_epi32::<1>(g),
            );
            let hi = _mm_add_epi32(
                _mm512_extracti32x4_epi32::<2>(g),
                _mm512_extracti32x4_epi32::<3>(g),
            );
            _mm_add_epi32(lo, hi)
        };
        let isum = _mm256_set_m128i(total(fold4(&s[4..])), total(fold4(&s[..4])));
        let dx = _mm256_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(xb.d.to_bits()))));
        let yd = _mm256_setr_ps(
            yb[0].d, yb[1].d, yb[2].d, yb[3].d, yb[4].d, yb[5].d, yb[6].d, yb[7].d,
        );
        acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum), dx), yd, acc);
    }
    let mut out = [0.0f32; 8];
    // SAFETY: `out` is 8 writable floats; `storeu` needs no alignment.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
    out
}
