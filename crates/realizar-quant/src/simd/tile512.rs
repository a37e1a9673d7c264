//! AVX-512 matrix products of several activation rows (a decode step of several sequences, a
//! prompt pass) with the activations packed once per call.
//!
//! The multi-row kernels in `avx512.rs` rebuild, for every group of weight rows, what they need
//! from the activations (their quants two rows per register, their f16 scales converted and
//! spread, Q8_0's offset corrections). Here a matrix product packs each tile of eight
//! activation rows once into [`TileQ8_1`]/[`TileQ8_0`] blocks, laid out so that the inner loop
//! takes every activation operand straight from memory, and then runs two weight rows at a
//! time over the packed tiles. Per (weight row, activation row) pair and block the operations
//! are still the 256-bit VNNI kernel's: the same `vpdpbusd` lane sums (for the offset types,
//! the same exact integers, with the correction as the starting value instead of a
//! subtraction), the same product of the two scales, the same FMA into the same 8-lane
//! accumulator, the same `hsum_float_8`; so every result stays bit-identical to the scalar
//! twin whatever the number of rows.
#![allow(unsafe_code)]

use core::arch::x86_64::*;
use core::ops::Range;

use crate::blocks::*;
use crate::packed::{TileQ8_0, TileQ8_1, TILE};

use super::avx2::{fifth_bits, head32, hsum_ps, load16, load32i};
use super::avx512::{halves, prefetch_stream, stream_after};

/// Weight rows per kernel pass: two keep the accumulators, the tile's operands and the
/// constants in the 32 vector registers (four spilled accumulators to the stack).
const ROWS_PER_PASS: usize = 2;

/// About this many bytes of packed tiles are made at once: they stay in L2 while every weight
/// row of the call goes past them.
const CHUNK_BYTES: usize = 256 << 10;

/// A Q4 block's 32 nibbles as unsigned bytes (low nibbles, then high ones, as `nibbles`
/// gives them), in both 256-bit halves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn nibbles_z(qs: &[u8; 16]) -> __m512i {
    const HIGH: i64 = 0x0004_0004_0004_0004;
    let t = _mm512_broadcast_i32x4(load16(qs));
    let t = _mm512_srlv_epi16(t, _mm512_set_epi64(HIGH, HIGH, 0, 0, HIGH, HIGH, 0, 0));
    _mm512_and_si512(t, _mm512_set1_epi8(0x0F))
}

/// A Q8_0 block's weights offset to unsigned (`x + 128`), in both halves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q8_0_z(x: &BlockQ8_0) -> __m512i {
    _mm512_xor_si512(
        _mm512_broadcast_i64x4(load32i(&x.qs)),
        _mm512_set1_epi8(-128),
    )
}

/// A Q5_0 block's weights offset to unsigned (5 bits, offset 16), in both halves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q5_0_z(x: &BlockQ5_0) -> __m512i {
    _mm512_or_si512(nibbles_z(&x.qs), _mm512_broadcast_i64x4(fifth_bits(x.qh)))
}

/// Loads 64 bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn load_z<T: bytemuck::Pod>(v: &T) -> __m512i {
    debug_assert!(core::mem::size_of::<T>() >= 64);
    // SAFETY: `v` is at least 64 readable bytes (every caller passes a 64-byte array);
    // `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_si512(core::ptr::from_ref(v).cast()) }
}

/// The first block of each weight row and how many blocks all of them and `tiles` have.
#[inline]
fn rows_and_blocks<X, T, const R: usize>(xs: &[&[X]; R], tiles: &[T]) -> (usize, [*const X; R]) {
    let nb = xs.iter().fold(tiles.len(), |n, x| n.min(x.len()));
    (nb, xs.map(|x| x.as_ptr()))
}

/// The kernels' weight rows are consecutive rows of one matrix, read side by side, which
/// the hardware prefetchers do not follow: where the stream continues after the last row, and
/// how many bytes of it to prefetch per block (see `avx512::stream_after`).
#[inline]
fn weight_stream<X, const R: usize>(xs: &[&[X]; R]) -> (*const u8, usize) {
    let last = xs.last().copied().unwrap_or_default();
    (stream_after(last), R * core::mem::size_of::<X>())
}

/// The two 8-lane halves of a 16-lane accumulator, each summed as `hsum_float_8`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn hsum_halves(v: __m512) -> [f32; 2] {
    let [lo, hi] = halves(v);
    [hsum_ps(lo), hsum_ps(hi)]
}

/// Q4_1 · Q8_1: `R` weight rows (1 or 2) against the first `M` rows (2, 4, 6 or 8) of a
/// packed tile.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
fn q4_1_tile<const R: usize, const M: usize>(
    xs: [&[BlockQ4_1]; R],
    tiles: &[TileQ8_1],
) -> [[f32; M]; R] {
    const { assert!(M.is_multiple_of(2) && M >= 2 && M <= TILE && R >= 1 && R <= ROWS_PER_PASS) };
    let (nb, xp) = rows_and_blocks(&xs, tiles);
    let zero = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); 4]; R];
    let mut summs = [_mm256_setzero_ps(); R];
    let (ahead, step) = weight_stream(&xs);
    for (b, t) in tiles.iter().enumerate().take(nb) {
        prefetch_stream(ahead, step * b, step);
        // SAFETY: `t.s` is 8 readable floats; `loadu` needs no alignment.
        let s = unsafe { _mm256_loadu_ps(t.s.as_ptr()) };
        for ((x, accr), sm) in xp.iter().zip(&mut acc).zip(&mut summs) {
            // SAFETY: `b < nb`, and every weight row has at least `nb` blocks.
            let xb = unsafe { &*x.add(b) };
            let q = nibbles_z(&xb.qs);
            let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(head32(xb)));
            let dx = _mm512_broadcastss_ps(dm);
            let mx = _mm256_permutexvar_ps(_mm256_set1_epi32(1), _mm256_castps128_ps256(dm));
            *sm = _mm256_fmadd_ps(mx, s, *sm);
            for ((a, yq), yd) in accr.iter_mut().zip(&t.q).zip(&t.d).take(M / 2) {
                let p = _mm512_dpbusd_epi32(zero, q, load_z(yq));
                let d = _mm512_mul_ps(dx, _mm512_castsi512_ps(load_z(yd)));
                *a = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), *a);
            }
        }
    }
    let mut out = [[0.0f32; M]; R];
    for ((o, accr), sm) in out.iter_mut().zip(acc).zip(summs) {
        let mut s = [0.0f32; 8];
        // SAFETY: `s` is 8 writable floats; `storeu` needs no alignment.
        unsafe { _mm256_storeu_ps(s.as_mut_ptr(), sm) };
        for ((o, s), a) in o.chunks_exact_mut(2).zip(s.chunks_exact(2)).zip(accr) {
            if let ([o0, o1], [s0, s1]) = (o, s) {
                let [h0, h1] = hsum_halves(a);
                *o0 = h0 + s0;
                *o1 = h1 + s1;
            }
        }
    }
    out
}

macro_rules! legacy_tile {
    ($name:ident, $w:ty, $z:ident) => {
        /// `R` weight rows (1 or 2) against the first `M` rows (2, 4, 6 or 8) of a packed
        /// Q8_0 tile (packed with this type's offset).
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        fn $name<const R: usize, const M: usize>(
            xs: [&[$w]; R],
            tiles: &[TileQ8_0],
        ) -> [[f32; M]; R] {
            const { assert!(M.is_multiple_of(2) && M >= 2 && M <= TILE && R >= 1 && R <= ROWS_PER_PASS) };
            let (nb, xp) = rows_and_blocks(&xs, tiles);
            let mut acc = [[_mm512_setzero_ps(); 4]; R];
            let (ahead, step) = weight_stream(&xs);
            for (b, t) in tiles.iter().enumerate().take(nb) {
                prefetch_stream(ahead, step * b, step);
                for (x, accr) in xp.iter().zip(&mut acc) {
                    // SAFETY: `b < nb`, and every weight row has at least `nb` blocks.
                    let xb = unsafe { &*x.add(b) };
                    let u = $z(xb);
                    let dx = _mm512_broadcastss_ps(_mm_cvtph_ps(_mm_cvtsi32_si128(head32(xb))));
                    let pairs = accr.iter_mut().zip(t.q.iter().zip(&t.d)).zip(&t.c);
                    for ((a, (yq, yd)), yc) in pairs.take(M / 2) {
                        let p = _mm512_dpbusd_epi32(load_z(yc), u, load_z(yq));
                        let d = _mm512_mul_ps(dx, _mm512_castsi512_ps(load_z(yd)));
                        *a = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), *a);
                    }
                }
            }
            let mut out = [[0.0f32; M]; R];
            for (o, accr) in out.iter_mut().zip(acc) {
                for (o, a) in o.chunks_exact_mut(2).zip(accr) {
                    if let [o0, o1] = o {
                        [*o0, *o1] = hsum_halves(a);
                    }
                }
            }
            out
        }
    };
}

legacy_tile!(q8_0_tile, BlockQ8_0, q8_0_z);
legacy_tile!(q5_0_tile, BlockQ5_0, q5_0_z);

/// Where one product's results go: `out[i * stride + r - first]` for activation row `i` and
/// weight row `r`.
struct Out<'a> {
    out: &'a mut [f32],
    stride: usize,
    first: usize,
}

impl<'a> Out<'a> {
    fn new(out: &'a mut [f32], stride: usize, first: usize) -> Out<'a> {
        Out { out, stride, first }
    }

    /// Stores `res[dr][k]` for weight row `r0 + dr` and activation row `i0 + k`, `k < mt`.
    fn put<const R: usize, const M: usize>(
        &mut self,
        res: [[f32; M]; R],
        r0: usize,
        i0: usize,
        mt: usize,
    ) {
        for (dr, res) in res.into_iter().enumerate() {
            for (k, v) in res.into_iter().enumerate().take(mt) {
                if let Some(o) = self
                    .out
                    .get_mut((i0 + k) * self.stride + r0 + dr - self.first)
                {
                    *o = v;
                }
            }
        }
    }
}

/// The driver of one weight type: `$run` goes over packed tiles in chunks that stay in L2,
/// [`ROWS_PER_PASS`] weight rows at a time through `$kernel`; `$packed` is its entry point for
/// activations packed by [`crate::PackedActs`].
macro_rules! tiles_driver {
    ($(#[$doc:meta])* $packed:ident, $run:ident, $w:ty, $tile:ty, $kernel:ident) => {
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        fn $run(
            w: &[$w],
            wb: usize,
            rows: Range<usize>,
            all: &[$tile],
            nb: usize,
            m: usize,
            out: &mut Out<'_>,
        ) {
            let nb = wb.min(nb);
            if nb == 0 {
                // Empty rows: every product is an empty sum.
                for r0 in rows.clone() {
                    for i0 in 0..m {
                        out.put::<1, 1>([[0.0]], r0, i0, 1);
                    }
                }
                return;
            }
            let wrow = |r: usize| w.get(r * wb..(r + 1) * wb).unwrap_or_default();
            let n_tiles = m.div_ceil(TILE).min(all.len() / nb);
            let per_chunk = (CHUNK_BYTES / (nb * core::mem::size_of::<$tile>())).max(1);
            let mut c0 = 0;
            while c0 < n_tiles {
                let c1 = (c0 + per_chunk).min(n_tiles);
                let chunk = &all[c0 * nb..c1 * nb];
                let mut r0 = rows.start;
                while r0 < rows.end {
                    let rn = (rows.end - r0).min(ROWS_PER_PASS);
                    for (t, tiles) in (c0..c1).zip(chunk.chunks_exact(nb)) {
                        let i0 = TILE * t;
                        let mt = (m - i0).min(TILE);
                        macro_rules! go {
                            ($r:literal, $m:literal) => {
                                out.put::<$r, $m>(
                                    $kernel::<$r, $m>(
                                        core::array::from_fn(|k| wrow(r0 + k)),
                                        tiles,
                                    ),
                                    r0,
                                    i0,
                                    mt,
                                )
                            };
                        }
                        match (rn, mt.div_ceil(2)) {
                            (2, 4) => go!(2, 8),
                            (2, 3) => go!(2, 6),
                            (2, 2) => go!(2, 4),
                            (2, _) => go!(2, 2),
                            (_, 4) => go!(1, 8),
                            (_, 3) => go!(1, 6),
                            (_, 2) => go!(1, 4),
                            (_, _) => go!(1, 2),
                        }
                    }
                    r0 += rn;
                }
                c0 = c1;
            }
        }

        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub(super) fn $packed(
            w: &[$w],
            wb: usize,
            rows: Range<usize>,
            tiles: &[$tile],
            nb: usize,
            m: usize,
            out: &mut [f32],
            out_stride: usize,
        ) {
            let mut out = Out::new(out, out_stride, rows.start);
            // SAFETY: the caller checked that the CPU has AVX2, FMA, F16C and AVX-512
            // F/BW/VL/VNNI (`has_avx512`).
            unsafe { $run(w, wb, rows, tiles, nb, m, &mut out) }
        }
    };
}

tiles_driver!(
    /// Q4_1 · Q8_1 over activations packed by [`crate::PackedActs`] (`nb` blocks a row);
    /// needs AVX-512.
    q4_1_packed, q4_1_run, BlockQ4_1, TileQ8_1, q4_1_tile
);
tiles_driver!(
    /// Q8_0 · Q8_0 over activations packed by [`crate::PackedActs`]; needs AVX-512.
    q8_0_packed, q8_0_run, BlockQ8_0, TileQ8_0, q8_0_tile
);
tiles_driver!(
    /// Q5_0 · Q8_0 over activations packed by [`crate::PackedActs`]; needs AVX-512.
    q5_0_packed, q5_0_run, BlockQ5_0, TileQ8_0, q5_0_tile
);
