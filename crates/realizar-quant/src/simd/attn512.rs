//! AVX-512 twins of the batched f16 attention kernels in `vecops.rs`: all of a head's key dot
//! products in one call (sixteen keys' final reductions done side by side), and all of its
//! value rows weighted into the accumulator lanes in one call (each lane's sums kept in
//! registers). Every lane sees the operations of the one-at-a-time kernels in the same order.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use half::f16;

use super::has_avx512;
use super::vec_avx2::reduce_add16_ps;

/// Sixteen f16 values widened to f32.
#[inline(always)]
fn load16h(v: &[f16]) -> __m512 {
    debug_assert!(v.len() >= 16);
    // SAFETY: callers pass at least 16 elements (32 readable bytes) and run with AVX-512F
    // enabled; `loadu` needs no alignment.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(v.as_ptr().cast())) }
}

/// Sixteen f16 values at `at` widened to f32.
///
/// # Safety
/// `at` points to 16 readable `f16`s; AVX-512F is enabled.
#[inline(always)]
unsafe fn load16h_at(at: *const f16) -> __m512 {
    // SAFETY: the caller's contract; `loadu` needs no alignment.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(at.cast())) }
}

/// One key row's accumulator lanes after the order's fold: `VECDOT`, four accumulators over
/// steps of 64 elements folded `(a0 + a2) + (a1 + a3)`; else one accumulator.
///
/// # Safety
/// `row` points to `16 C` readable `f16`s; AVX-512F is enabled.
#[inline(always)]
unsafe fn fold_row<const C: usize, const VECDOT: bool>(x: &[__m512; C], row: *const f16) -> __m512 {
    // SAFETY (the blocks below): AVX-512F is enabled; chunk `c < C` lies inside the row.
    if VECDOT {
        let mut a = [unsafe { _mm512_setzero_ps() }; 4];
        for (c, xc) in x.iter().enumerate() {
            a[c % 4] = unsafe { _mm512_fmadd_ps(*xc, load16h_at(row.add(16 * c)), a[c % 4]) };
        }
        unsafe { _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3])) }
    } else {
        let mut a = unsafe { _mm512_setzero_ps() };
        for (c, xc) in x.iter().enumerate() {
            a = unsafe { _mm512_fmadd_ps(*xc, load16h_at(row.add(16 * c)), a) };
        }
        a
    }
}

/// Prefetches the cache lines of `len` bytes from `at` into L1. Only ever prefetched: any
/// address is harmless.
#[inline(always)]
fn prefetch_lines(at: *const f16, len: usize) {
    let at = at.cast::<i8>();
    for line in (0..len).step_by(64) {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(line)) };
    }
}

/// Value rows of one head up to this size are summed chunk by chunk (they stay in L1);
/// longer ones lane group by lane group (measured at 760 rows of 64: 3.2 -> 2.3 ns per row and
/// head; at 128 rows the chunk order is faster).
const L1_ROWS_BYTES: usize = 32 << 10;

/// How many keys ahead of the sixteen being multiplied [`dots`] prefetches the key rows: the
/// cache is read in one pass per head, and the rows of a sequence's long context come from
/// memory (measured: 3.1 ns per key and head from memory without, 1.5 from cache).
const KEYS_AHEAD: usize = 128;

/// `reduce_add16` of one vector (see `vec_avx2::reduce_add16_ps`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn reduce_one(v: __m512) -> f32 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    reduce_add16_ps(_mm512_castps512_ps256(v), hi)
}

/// [`reduce_one`] of sixteen vectors at once: lane `p` of the result is `reduce_one(v[p])`,
/// with the same additions on the same pairs.
#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn reduce_16(v: &[__m512; 16]) -> __m512 {
    // h of rows 2k and 2k + 1: [h_2k | h_2k+1].
    let t: [__m512; 8] = core::array::from_fn(|k| {
        let (a, b) = (v[2 * k], v[2 * k + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
            _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
        )
    });
    // q of rows 4k..4k + 4, one per 128-bit lane.
    let u: [__m512; 4] = core::array::from_fn(|k| {
        let (a, b) = (t[2 * k], t[2 * k + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0b11_01_11_01>(a, b),
            _mm512_shuffle_f32x4::<0b10_00_10_00>(a, b),
        )
    });
    // Per 128-bit lane L: rows L, 4 + L, 8 + L, 12 + L; (q0 + q2) + (q1 + q3) of each.
    let x = _mm512_add_ps(
        _mm512_unpacklo_ps(u[0], u[1]),
        _mm512_unpackhi_ps(u[0], u[1]),
    );
    let y = _mm512_add_ps(
        _mm512_unpacklo_ps(u[2], u[3]),
        _mm512_unpackhi_ps(u[2], u[3]),
    );
    let (xd, yd) = (_mm512_castps_pd(x), _mm512_castps_pd(y));
    let r = _mm512_add_ps(
        _mm512_castpd_ps(_mm512_unpacklo_pd(xd, yd)),
        _mm512_castpd_ps(_mm512_unpackhi_pd(xd, yd)),
    );
    // Row p sits in lane 4 (p % 4) + p / 4.
    let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    _mm512_permutexvar_ps(idx, r)
}

/// [`crate::vecops::f16_dots_folded`] for rows of `16 C` elements.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn dots<const C: usize, const VECDOT: bool>(
    x: &[f16],
    rows: &[f16],
    next: &[f16],
    out: &mut [f32],
) {
    let hd = 16 * C;
    let x: [__m512; C] = core::array::from_fn(|c| load16h(&x[16 * c..]));
    let n = out.len().min(rows.len() / hd);
    let (rows, out) = (&rows[..n * hd], &mut out[..n]);
    let mut groups = out.chunks_exact_mut(16);
    let mut at = 0;
    for o in &mut groups {
        let group = &rows[at * hd..(at + 16) * hd];
        let ahead = (at + KEYS_AHEAD).min(n);
        prefetch_lines(
            rows[ahead * hd..].as_ptr(),
            (16 * hd).min((n - ahead) * hd) * 2,
        );
        if let Some(nx) = next.get(at * hd..(at + 16) * hd) {
            prefetch_lines(nx.as_ptr(), 32 * hd);
        }
        // SAFETY: row `p < 16` of `group` is `hd = 16 C` elements long.
        let v: [__m512; 16] = core::array::from_fn(|p| unsafe {
            fold_row::<C, VECDOT>(&x, group.as_ptr().add(p * hd))
        });
        // SAFETY: `o` is 16 writable floats; `storeu` needs no alignment.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), reduce_16(&v)) };
        at += 16;
    }
    for o in groups.into_remainder() {
        let row = &rows[at * hd..(at + 1) * hd];
        // SAFETY: `row` is `16 C` elements long.
        *o = reduce_one(unsafe { fold_row::<C, VECDOT>(&x, row.as_ptr()) });
        at += 1;
    }
}

/// [`crate::vecops::f16_dots_folded`]: the AVX-512 kernel for 64-, 128- and 256-element rows that
/// are whole steps of the order, else the one-row kernel per row.
pub(crate) fn f16_dots_folded(
    x: &[f16],
    rows: &[f16],
    next: &[f16],
    vecdot: bool,
    out: &mut [f32],
) {
    if has_avx512() && rows.len() >= out.len() * x.len() {
        // SAFETY (each arm): AVX2, FMA, F16C and AVX-512 F/BW/VL are present (checked).
        match (x.len(), vecdot) {
            (64, true) => return unsafe { dots::<4, true>(x, rows, next, out) },
            (128, true) => return unsafe { dots::<8, true>(x, rows, next, out) },
            (256, true) => return unsafe { dots::<16, true>(x, rows, next, out) },
            (64, false) => return unsafe { dots::<4, false>(x, rows, next, out) },
            (128, false) => return unsafe { dots::<8, false>(x, rows, next, out) },
            (256, false) => return unsafe { dots::<16, false>(x, rows, next, out) },
            _ => {}
        }
    }
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(x.len().max(1))) {
        *o = super::f16_dot_folded(x, row, vecdot) as f32;
    }
}

/// The sums of value-row chunk `c` over the positions of lanes `16 g..16 g + 16` (of `lanes`):
/// register `l` holds lane `16 g + l`, its positions `P ≡ 16 g + l (mod lanes)` FMA'd in order.
#[inline(always)]
fn lane_group<const C: usize>(
    p: &[f32],
    v: &[f16],
    first: usize,
    c: usize,
    lanes: usize,
    g: usize,
) -> [__m512; 16] {
    let hd = 16 * C;
    let c = c.min(C - 1);
    let n = p.len().min(v.len() / hd);
    let end = first + n;
    // SAFETY (the blocks below): AVX-512F is enabled in every caller.
    let mut a = [unsafe { _mm512_setzero_ps() }; 16];
    let mut base = (first / lanes) * lanes + 16 * g;
    let fma = |acc: __m512, i: usize| unsafe {
        _mm512_fmadd_ps(_mm512_set1_ps(p[i]), load16h(&v[i * hd + 16 * c..]), acc)
    };
    while base < end {
        if base >= first && base + 16 <= end {
            // Sixteen whole positions: their weights and rows bounds-checked once.
            let i0 = base - first;
            let (pb, vb) = (&p[i0..i0 + 16], &v[i0 * hd..(i0 + 16) * hd]);
            for (l, al) in a.iter_mut().enumerate() {
                // SAFETY: `l < 16` and `c < C`, so chunk `c` of row `l` lies inside `vb`.
                *al = unsafe {
                    _mm512_fmadd_ps(
                        _mm512_set1_ps(pb[l]),
                        load16h_at(vb.as_ptr().add(l * hd + 16 * c)),
                        *al,
                    )
                };
            }
        } else {
            // A partial block: its lanes `l_lo..l_hi` hold positions. Each lane by its own
            // constant index, so the accumulators stay in registers.
            let (l_lo, l_hi) = (first.saturating_sub(base), (end - base).min(16));
            macro_rules! lane {
                ($($l:literal)*) => {$(
                    if $l >= l_lo && $l < l_hi {
                        a[$l] = fma(a[$l], base + $l - first);
                    }
                )*};
            }
            lane!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15);
        }
        base += lanes;
    }
    a
}

/// [`crate::vecops::f16_weighted_sum`] for rows of `16 C` elements: per chunk of sixteen
/// columns, the lanes' sums in registers, folded and reduced column-wise.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn weighted_sum<const C: usize, const VECDOT: bool>(
    p: &[f32],
    v: &[f16],
    first: usize,
    out: &mut [f32],
) {
    // reduce_add16, column by column.
    let store = |vl: &[__m512; 16], o: &mut [f32]| {
        let h: [__m512; 8] = core::array::from_fn(|i| _mm512_add_ps(vl[8 + i], vl[i]));
        let q: [__m512; 4] = core::array::from_fn(|j| _mm512_add_ps(h[4 + j], h[j]));
        let r = _mm512_add_ps(_mm512_add_ps(q[0], q[2]), _mm512_add_ps(q[1], q[3]));
        // SAFETY: `o` is 16 writable floats; `storeu` needs no alignment.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), r) };
    };
    let rows_bytes = p.len().min(v.len() / (16 * C)) * 32 * C;
    if !VECDOT || rows_bytes <= L1_ROWS_BYTES {
        // Chunk by chunk: a short head's rows stay in L1 throughout.
        for (c, o) in out.chunks_exact_mut(16).enumerate().take(C) {
            let vl: [__m512; 16] = if VECDOT {
                // (a[l] + a[32 + l]) + (a[16 + l] + a[48 + l])
                let (a0, a2) = (
                    lane_group::<C>(p, v, first, c, 64, 0),
                    lane_group::<C>(p, v, first, c, 64, 2),
                );
                let s02: [__m512; 16] = core::array::from_fn(|l| _mm512_add_ps(a0[l], a2[l]));
                let (a1, a3) = (
                    lane_group::<C>(p, v, first, c, 64, 1),
                    lane_group::<C>(p, v, first, c, 64, 3),
                );
                core::array::from_fn(|l| _mm512_add_ps(s02[l], _mm512_add_ps(a1[l], a3[l])))
            } else {
                lane_group::<C>(p, v, first, c, 16, 0)
            };
            store(&vl, o);
        }
        return;
    }
    // (a[l] + a[32 + l]) + (a[16 + l] + a[48 + l]), lane group by lane group: all of a
    // group's chunks while its rows are in L1 (a long head's rows do not all fit, and chunk
    // by chunk every line would come from L2 twice), the partial folds kept per chunk.
    let zero = [_mm512_setzero_ps(); 16];
    let (mut s02, mut a1) = ([zero; C], [zero; C]);
    for (c, s) in s02.iter_mut().enumerate() {
        *s = lane_group::<C>(p, v, first, c, 64, 0);
    }
    for (c, s) in s02.iter_mut().enumerate() {
        let a2 = lane_group::<C>(p, v, first, c, 64, 2);
        *s = core::array::from_fn(|l| _mm512_add_ps(s[l], a2[l]));
    }
    for (c, a) in a1.iter_mut().enumerate() {
        *a = lane_group::<C>(p, v, first, c, 64, 1);
    }
    for (c, o) in out.chunks_exact_mut(16).enumerate().take(C) {
        let a3 = lane_group::<C>(p, v, first, c, 64, 3);
        let vl: [__m512; 16] =
            core::array::from_fn(|l| _mm512_add_ps(s02[c][l], _mm512_add_ps(a1[c][l], a3[l])));
        store(&vl, o);
    }
}

/// [`crate::vecops::f16_weighted_sum`]: the AVX-512 kernel for 64-, 128- and 256-element
/// rows, else the lanes accumulated with the one-row kernel.
pub(crate) fn f16_weighted_sum(
    p: &[f32],
    v: &[f16],
    hd: usize,
    first: usize,
    vecdot: bool,
    out: &mut [f32],
) {
    if has_avx512() && out.len() >= hd {
        // SAFETY (each arm): AVX2, FMA, F16C and AVX-512 F/BW/VL are present (checked).
        match (hd, vecdot) {
            (64, true) => return unsafe { weighted_sum::<4, true>(p, v, first, out) },
            (128, true) => return unsafe { weighted_sum::<8, true>(p, v, first, out) },
            (256, true) => return unsafe { weighted_sum::<16, true>(p, v, first, out) },
            (64, false) => return unsafe { weighted_sum::<4, false>(p, v, first, out) },
            (128, false) => return unsafe { weighted_sum::<8, false>(p, v, first, out) },
            (256, false) => return unsafe { weighted_sum::<16, false>(p, v, first, out) },
            _ => {}
        }
    }
    crate::vecops::weighted_sum_with(super::f16_axpy, p, v, hd, first, vecdot, out)
}

/// [`crate::vecops::sum_groups16`]: whole groups sixteen at a time ([`reduce_16`] gives each
/// group's [`reduce_one`]), partial ones by the scalar twin.
pub(crate) fn sum_groups16(x: &[f32], lo: usize) -> f64 {
    if !has_avx512() {
        return crate::vecops::sum_groups16_scalar(x, lo);
    }
    // SAFETY: AVX2, FMA, F16C and AVX-512 F/BW/VL are present (checked).
    unsafe { sum_groups16_512(x, lo) }
}

#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl")]
fn sum_groups16_512(x: &[f32], lo: usize) -> f64 {
    // The partial group before the first aligned one.
    let head = ((16 - lo % 16) % 16).min(x.len());
    let mut sum = crate::vecops::sum_groups16_scalar(&x[..head], lo);
    let body = &x[head..];
    let whole = body.len() / 16;
    let load = |g: usize| {
        let v = &body[16 * g..16 * g + 16];
        // SAFETY: `v` is 16 readable floats; `loadu` needs no alignment.
        unsafe { _mm512_loadu_ps(v.as_ptr()) }
    };
    let mut g = 0;
    while g + 16 <= whole {
        let v: [__m512; 16] = core::array::from_fn(|p| load(g + p));
        let mut r = [0f32; 16];
        // SAFETY: `r` is 16 writable floats; `storeu` needs no alignment.
        unsafe { _mm512_storeu_ps(r.as_mut_ptr(), reduce_16(&v)) };
        for s in r {
            sum += f64::from(s);
        }
        g += 16;
    }
    while g < whole {
        sum += f64::from(reduce_one(load(g)));
        g += 1;
    }
    // The partial group after the last whole one (its first position is aligned).
    sum + crate::vecops::sum_groups16_scalar(&body[16 * whole..], 0)
}
