//! AVX2 + FMA + F16C twins of the float vector kernels in `vecops.rs`.
#![allow(unsafe_code)]

use core::arch::x86_64::*;

use half::f16;

use super::has_avx2;
use crate::vecops::{self, EXP_LN2_HI, EXP_LN2_LO, EXP_LOG2E, EXP_P, EXP_R};

/// Eight f16 values widened to f32.
#[inline(always)]
fn load8h(v: &[f16]) -> __m256 {
    debug_assert!(v.len() >= 8);
    // SAFETY: callers pass at least 8 elements (16 readable bytes); `loadu` needs no alignment.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().cast())) }
}

/// [`vecops::f16_fma_lanes`] with `L = 8 * V` lanes held in registers.
#[target_feature(enable = "avx2,fma,f16c")]
fn fma_lanes_v<const V: usize>(x: &[f16], y: &[f16], acc: &mut [f32]) {
    let l = 8 * V;
    let n = x.len().min(y.len());
    let whole = n - n % l;
    let mut a = [_mm256_setzero_ps(); V];
    for (k, r) in a.iter_mut().enumerate() {
        // SAFETY: `acc` holds `8 * V` floats, so lanes `8k..8k + 8` are readable.
        *r = unsafe { _mm256_loadu_ps(acc.as_ptr().add(8 * k)) };
    }
    let a = fma_lanes_regs(x, y, a);
    for (k, r) in a.iter().enumerate() {
        // SAFETY: as for the loads above.
        unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(8 * k), *r) };
    }
    for (i, (p, q)) in x[whole..n].iter().zip(&y[whole..n]).enumerate() {
        let s = &mut acc[i % l];
        *s = p.to_f32().mul_add(q.to_f32(), *s);
    }
}

/// [`vecops::f16_fma_lanes`]; the scalar twin where AVX2, FMA or F16C are missing.
pub(crate) fn f16_fma_lanes(x: &[f16], y: &[f16], acc: &mut [f32]) {
    if !has_avx2() {
        return vecops::f16_fma_lanes_scalar(x, y, acc);
    }
    // SAFETY (each arm): AVX2, FMA and F16C are present (checked just above).
    match acc.len() {
        8 => unsafe { fma_lanes_v::<1>(x, y, acc) },
        16 => unsafe { fma_lanes_v::<2>(x, y, acc) },
        32 => unsafe { fma_lanes_v::<4>(x, y, acc) },
        64 => unsafe { fma_lanes_v::<8>(x, y, acc) },
        _ => vecops::f16_fma_lanes_scalar(x, y, acc),
    }
}

/// [`vecops::f16_axpy`].
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_axpy_avx2(p: f32, v: &[f16], acc: &mut [f32]) {
    let n = v.len().min(acc.len());
    let whole = n - n % 8;
    let pv = _mm256_set1_ps(p);
    for (vs, a) in v[..whole]
        .chunks_exact(8)
        .zip(acc[..whole].chunks_exact_mut(8))
    {
        // SAFETY: `a` is 8 floats; `loadu`/`storeu` need no alignment.
        unsafe {
            let r = _mm256_fmadd_ps(pv, load8h(vs), _mm256_loadu_ps(a.as_ptr()));
            _mm256_storeu_ps(a.as_mut_ptr(), r);
        }
    }
    for (a, b) in acc[whole..n].iter_mut().zip(&v[whole..n]) {
        *a = p.mul_add(b.to_f32(), *a);
    }
}

/// Eight lanes of [`vecops::expf_ggml`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn exp8(x: __m256) -> __m256 {
    let c = |b: u32| _mm256_set1_ps(f32::from_bits(b));
    let r = c(EXP_R);
    let z = _mm256_fmadd_ps(x, c(EXP_LOG2E), r);
    let n = _mm256_sub_ps(z, r);
    let b = _mm256_fnmadd_ps(n, c(EXP_LN2_LO), _mm256_fnmadd_ps(n, c(EXP_LN2_HI), x));
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(c(EXP_P[4]), b, c(EXP_P[3])),
        u,
        _mm256_fmadd_ps(c(EXP_P[2]), b, c(EXP_P[1])),
    );
    let j = _mm256_fmadd_ps(j, u, _mm256_fmadd_ps(c(EXP_P[0]), b, _mm256_set1_ps(1.0)));
    // j * 2^n in f64 (exact), rounded once to f32, as `_mm512_scalef_ps` does.
    let ni = _mm256_cvtps_epi32(n);
    let scale = |half: __m128i| -> __m256d {
        let e = _mm256_add_epi64(_mm256_cvtepi32_epi64(half), _mm256_set1_epi64x(1023));
        _mm256_castsi256_pd(_mm256_slli_epi64::<52>(e))
    };
    let lo = _mm256_mul_pd(
        _mm256_cvtps_pd(_mm256_castps256_ps128(j)),
        scale(_mm256_castsi256_si128(ni)),
    );
    let hi = _mm256_mul_pd(
        _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(j)),
        scale(_mm256_extracti128_si256::<1>(ni)),
    );
    let res = _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
    // |n| > 192: 0 for n <= 0, infinity above.
    let abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let big = _mm256_cmp_ps::<_CMP_GT_OQ>(abs, _mm256_set1_ps(192.0));
    let sat = _mm256_blendv_ps(
        _mm256_set1_ps(f32::INFINITY),
        _mm256_setzero_ps(),
        _mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps()),
    );
    _mm256_blendv_ps(res, sat, big)
}

/// [`vecops::exp_sub_ggml`].
#[target_feature(enable = "avx2,fma,f16c")]
fn exp_sub_ggml_avx2(x: &mut [f32], sub: f32) {
    let whole = x.len() - x.len() % 8;
    let s = _mm256_set1_ps(sub);
    for c in x[..whole].chunks_exact_mut(8) {
        // SAFETY: `c` is 8 floats; `loadu`/`storeu` need no alignment.
        unsafe {
            let v = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), s));
            _mm256_storeu_ps(c.as_mut_ptr(), v);
        }
    }
    vecops::exp_sub_ggml_scalar(&mut x[whole..], sub);
}

/// [`vecops::silu_ggml`].
#[target_feature(enable = "avx2,fma,f16c")]
fn silu_ggml_avx2(x: &mut [f32]) {
    let whole = x.len() - x.len() % 8;
    let one = _mm256_set1_ps(1.0);
    for c in x[..whole].chunks_exact_mut(8) {
        // SAFETY: `c` is 8 floats; `loadu`/`storeu` need no alignment.
        unsafe {
            let v = _mm256_loadu_ps(c.as_ptr());
            let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), v));
            _mm256_storeu_ps(c.as_mut_ptr(), _mm256_div_ps(v, _mm256_add_ps(one, e)));
        }
    }
    vecops::silu_ggml_scalar(&mut x[whole..]);
}

/// [`vecops::f16_axpy`]; the scalar twin where AVX2, FMA or F16C are missing.
pub(crate) fn f16_axpy(p: f32, v: &[f16], acc: &mut [f32]) {
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C are present (checked just above).
        unsafe { f16_axpy_avx2(p, v, acc) }
    } else {
        vecops::f16_axpy_scalar(p, v, acc)
    }
}

/// [`vecops::exp_sub_ggml`]; the scalar twin where AVX2, FMA or F16C are missing.
pub(crate) fn exp_sub_ggml(x: &mut [f32], sub: f32) {
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C are present (checked just above).
        unsafe { exp_sub_ggml_avx2(x, sub) }
    } else {
        vecops::exp_sub_ggml_scalar(x, sub)
    }
}

/// [`vecops::silu_ggml`]; the scalar twin where AVX2, FMA or F16C are missing.
pub(crate) fn silu_ggml(x: &mut [f32]) {
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C are present (checked just above).
        unsafe { silu_ggml_avx2(x) }
    } else {
        vecops::silu_ggml_scalar(x)
    }
}

/// [`vecops::f16_table_clamped`] eight lanes at a time: F16C rounding, a gather from the table,
/// the two clamps as blends.
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_table_clamped_avx2(x: &mut [f32], table: &[f32; 65_536]) {
    let whole = x.len() - x.len() % 8;
    let (lo, hi) = (_mm256_set1_ps(-10.0), _mm256_set1_ps(10.0));
    for c in x[..whole].chunks_exact_mut(8) {
        // SAFETY: `c` is 8 floats; `loadu`/`storeu` need no alignment. Every gather index is a
        // zero-extended u16, inside the 65536-entry table.
        unsafe {
            let v = _mm256_loadu_ps(c.as_ptr());
            let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
            let g = _mm256_i32gather_ps::<4>(table.as_ptr(), _mm256_cvtepu16_epi32(h));
            let g = _mm256_blendv_ps(g, _mm256_setzero_ps(), _mm256_cmp_ps::<_CMP_LE_OQ>(v, lo));
            let g = _mm256_blendv_ps(g, v, _mm256_cmp_ps::<_CMP_GE_OQ>(v, hi));
            _mm256_storeu_ps(c.as_mut_ptr(), g);
        }
    }
    vecops::f16_table_clamped_scalar(&mut x[whole..], table);
}

/// [`vecops::f16_table_clamped`]; the scalar twin where AVX2, FMA or F16C are missing or the
/// table is not one entry per f16 pattern.
pub(crate) fn f16_table_clamped(x: &mut [f32], table: &[f32]) {
    match <&[f32; 65_536]>::try_from(table) {
        // SAFETY: AVX2, FMA and F16C are present (checked in the guard).
        Ok(t) if has_avx2() => unsafe { f16_table_clamped_avx2(x, t) },
        _ => vecops::f16_table_clamped_scalar(x, table),
    }
}

/// The `V` 8-lane accumulators `a` of [`vecops::f16_fma_lanes`] carried over the whole steps
/// of `8 V` elements, in registers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fma_lanes_regs<const V: usize>(x: &[f16], y: &[f16], mut a: [__m256; V]) -> [__m256; V] {
    let l = 8 * V;
    let n = x.len().min(y.len());
    let whole = n - n % l;
    for (xc, yc) in x[..whole].chunks_exact(l).zip(y[..whole].chunks_exact(l)) {
        for (k, r) in a.iter_mut().enumerate() {
            let (xs, ys) = (&xc[8 * k..8 * k + 8], &yc[8 * k..8 * k + 8]);
            *r = _mm256_fmadd_ps(load8h(xs), load8h(ys), *r);
        }
    }
    a
}

/// [`vecops::f16_dot_folded`] with the lanes and the fold in registers.
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_dot_folded_avx2(x: &[f16], y: &[f16], vecdot: bool) -> f64 {
    let (lo, hi) = if vecdot {
        let a = fma_lanes_regs(x, y, [_mm256_setzero_ps(); 8]);
        (
            _mm256_add_ps(_mm256_add_ps(a[0], a[4]), _mm256_add_ps(a[2], a[6])),
            _mm256_add_ps(_mm256_add_ps(a[1], a[5]), _mm256_add_ps(a[3], a[7])),
        )
    } else {
        let [a0, a1] = fma_lanes_regs(x, y, [_mm256_setzero_ps(); 2]);
        (a0, a1)
    };
    f64::from(reduce_add16_ps(lo, hi))
}

/// `vecops::reduce_add16` of 16 lanes in registers (`lo` lanes 0..8, `hi` 8..16):
/// `h[i] = v[8 + i] + v[i]`, `q[j] = h[4 + j] + h[j]`, `(q0 + q2) + (q1 + q3)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn reduce_add16_ps(lo: __m256, hi: __m256) -> f32 {
    let h = _mm256_add_ps(hi, lo);
    let q = _mm_add_ps(_mm256_extractf128_ps::<1>(h), _mm256_castps256_ps128(h));
    let t = _mm_add_ps(q, _mm_movehl_ps(q, q));
    _mm_cvtss_f32(_mm_add_ss(t, _mm_movehdup_ps(t)))
}

/// [`vecops::f16_dot_folded`]; the scalar twin where AVX2, FMA or F16C are missing.
pub(crate) fn f16_dot_folded(x: &[f16], y: &[f16], vecdot: bool) -> f64 {
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C are present (checked just above).
        unsafe { f16_dot_folded_avx2(x, y, vecdot) }
    } else {
        vecops::f16_dot_folded_scalar(x, y, vecdot)
    }
}

/// [`vecops::rope_rotate`] compiled with FMA: `mul_add` becomes the FMA instruction instead of
/// a call (the same fused operation, bit for bit).
#[target_feature(enable = "avx2,fma,f16c")]
fn rope_rotate_fma(x: &mut [f32], cache: &[f32], n_dims: usize, neox: bool) {
    vecops::rope_rotate_scalar(x, cache, n_dims, neox)
}

/// [`vecops::rope_rotate`]; the scalar twin where AVX2, FMA or F16C are missing.
pub(crate) fn rope_rotate(x: &mut [f32], cache: &[f32], n_dims: usize, neox: bool) {
    if has_avx2() {
        // SAFETY: AVX2, FMA and F16C are present (checked just above).
        unsafe { rope_rotate_fma(x, cache, n_dims, neox) }
    } else {
        vecops::rope_rotate_scalar(x, cache, n_dims, neox)
    }
}
