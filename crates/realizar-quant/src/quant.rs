//! Quantization from f32, following ggml's reference quantizers `quantize_row_*_ref` and their
//! helpers (`nearest_int`, `make_qx_quants`, `make_q3_quants`, `make_qkx2_quants`) in
//! `ggml/src/ggml-quants.c`, operation by operation; the activation quantizers Q8_0/Q8_1
//! follow ggml's x86 CPU backend instead (`ggml/src/ggml-cpu/arch/x86/quants.c`).
//!
//! Callers pass slices whose lengths already agree (`src.len() == blocks * block_size`).

use half::{bf16, f16};

use crate::blocks::*;
use crate::dequant::scale_min_k4;
use crate::types::{QK, QK_K};

/// ggml's `GROUP_MAX_EPS`: below this a group counts as all zeros.
const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round to nearest, ties to even, through the float mantissa
/// (valid for |x| <= 4194303; larger inputs give a wrapped value, never a panic).
#[inline(always)]
pub(crate) fn nearest_int(x: f32) -> i32 {
    let val = x + 12_582_912.0;
    (val.to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

pub(crate) fn f16s(src: &[f32], dst: &mut [f16]) {
    for (y, x) in dst.iter_mut().zip(src) {
        *y = f16::from_f32(*x);
    }
}

pub(crate) fn bf16s(src: &[f32], dst: &mut [bf16]) {
    for (y, x) in dst.iter_mut().zip(src) {
        *y = bf16::from_f32(*x);
    }
}

/// The element of largest magnitude (first one on ties) and its magnitude.
#[inline(always)]
fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    (max, amax)
}

fn min_max(x: &[f32]) -> (f32, f32) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    (min, max)
}

pub(crate) fn q4_0(src: &[f32], dst: &mut [BlockQ4_0]) {
    for (x, y) in src.chunks_exact(QK).zip(dst) {
        let (max, _) = signed_absmax(x);
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y.d = f16::from_f32(d);
        let (lo, hi) = x.split_at(QK / 2);
        for ((q, a), b) in y.qs.iter_mut().zip(lo).zip(hi) {
            let xi0 = 15i8.min((a * id + 8.5) as i8) as u8;
            let xi1 = 15i8.min((b * id + 8.5) as i8) as u8;
            *q = xi0 | (xi1 << 4);
        }
    }
}

pub(crate) fn q4_1(src: &[f32], dst: &mut [BlockQ4_1]) {
    for (x, y) in src.chunks_exact(QK).zip(dst) {
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y.d = f16::from_f32(d);
        y.m = f16::from_f32(min);
        let (lo, hi) = x.split_at(QK / 2);
        for ((q, a), b) in y.qs.iter_mut().zip(lo).zip(hi) {
            let xi0 = 15i8.min(((a - min) * id + 0.5) as i8) as u8;
            let xi1 = 15i8.min(((b - min) * id + 0.5) as i8) as u8;
            *q = xi0 | (xi1 << 4);
        }
    }
}

/// Packs 32 5-bit quants into nibbles and the little-endian fifth-bit word.
#[inline(always)]
fn pack_q5(xi: impl Iterator<Item = (u8, u8)>, qs: &mut [u8; QK / 2]) -> [u8; 4] {
    let mut qh = 0u32;
    for (j, (q, (xi0, xi1))) in qs.iter_mut().zip(xi).enumerate() {
        *q = (xi0 & 0x0F) | ((xi1 & 0x0F) << 4);
        qh |= (((xi0 & 0x10) >> 4) as u32) << j;
        qh |= (((xi1 & 0x10) >> 4) as u32) << (j + QK / 2);
    }
    qh.to_le_bytes()
}

pub(crate) fn q5_0(src: &[f32], dst: &mut [BlockQ5_0]) {
    for (x, y) in src.chunks_exact(QK).zip(dst) {
        let (max, _) = signed_absmax(x);
        let d = max / -16.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y.d = f16::from_f32(d);
        let (lo, hi) = x.split_at(QK / 2);
        let xi = lo.iter().zip(hi).map(|(a, b)| {
            (
                31i8.min((a * id + 16.5) as i8) as u8,
                31i8.min((b * id + 16.5) as i8) as u8,
            )
        });
        y.qh = pack_q5(xi, &mut y.qs);
    }
}

pub(crate) fn q5_1(src: &[f32], dst: &mut [BlockQ5_1]) {
    for (x, y) in src.chunks_exact(QK).zip(dst) {
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y.d = f16::from_f32(d);
        y.m = f16::from_f32(min);
        let (lo, hi) = x.split_at(QK / 2);
        let xi = lo
            .iter()
            .zip(hi)
            .map(|(a, b)| (((a - min) * id + 0.5) as u8, ((b - min) * id + 0.5) as u8));
        y.qh = pack_q5(xi, &mut y.qs);
    }
}

/// `_mm256_cvtps_epi32` of an integral value: NaN and values outside the i32 range give
/// `i32::MIN` (the "integer indefinite" value).
#[inline(always)]
fn cvt_i32(r: f32) -> i32 {
    if (-2_147_483_648.0..2_147_483_648.0).contains(&r) {
        r as i32
    } else {
        i32::MIN
    }
}

/// One Q8_0/Q8_1 block as ggml's x86 `quantize_row_q8_0`/`quantize_row_q8_1` compute it
/// (ggml/src/ggml-cpu/arch/x86/quants.c, the `__AVX2__` path llama.cpp's x86 build runs):
/// `d = amax / 127`, `id = 127 / amax` (0 for an all-zero block), each `x * id` rounded half
/// to even (`_mm256_round_ps` with `_MM_ROUND_NEAREST`), converted to i32 and packed to i8 with
/// signed saturation. Returns `d` and the sum of the i32 quants (before packing).
#[inline(always)]
fn q8_x86_block(x: &[f32], qs: &mut [i8; QK]) -> (f32, i32) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, v) in qs.iter_mut().zip(x) {
        let i = cvt_i32((v * id).round_ties_even());
        sum = sum.wrapping_add(i);
        *q = i.clamp(-128, 127) as i8;
    }
    (d, sum)
}

/// Q8_0 activations as ggml's CPU backend quantizes them on x86 ([`q8_x86_block`]); the
/// scalar twin of the SIMD quantizer.
pub(crate) fn q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    for (x, y) in src.chunks_exact(QK).zip(dst) {
        let (d, _) = q8_x86_block(x, &mut y.qs);
        y.d = f16::from_f32(d);
    }
}

/// Q8_1 activations as ggml's CPU backend quantizes them on x86 ([`q8_x86_block`]), with
/// `s = d * sum(q)`; the scalar twin of the SIMD quantizer.
pub(crate) fn q8_1(src: &[f32], dst: &mut [BlockQ8_1]) {
    for (x, y) in src.chunks_exact(QK).zip(dst) {
        let (d, sum) = q8_x86_block(x, &mut y.qs);
        y.d = f16::from_f32(d);
        y.s = f16::from_f32(d * sum as f32);
    }
}

pub(crate) fn q8_k(src: &[f32], dst: &mut [BlockQ8K]) {
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        let (max, amax) = signed_absmax_gt(x);
        if amax == 0.0 {
            y.d = 0.0;
            y.qs = [0; QK_K];
            y.bsums = [0; QK_K / 16];
            continue;
        }
        let iscale = -127.0 / max;
        for (q, v) in y.qs.iter_mut().zip(x) {
            *q = nearest_int(iscale * v).min(127) as i8;
        }
        for (s, q) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
            *s = q.iter().map(|&q| q as i16).sum();
        }
        y.d = 1.0 / iscale;
    }
}

/// Like [`signed_absmax`] with the `ax > amax` comparison of the K-quant helpers.
#[inline(always)]
fn signed_absmax_gt(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    (max, amax)
}

/// `make_qx_quants` with `rmse_type == 1` and no importance weights (all the reference
/// quantizers use). Writes `L[i] = l + nmax` and returns the scale.
fn make_qx_quants(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let (max, amax) = signed_absmax_gt(x);
    if amax < GROUP_MAX_EPS {
        l_out.iter_mut().for_each(|l| *l = 0);
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = quant(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let mut iscale = -(nmax as f32) / max;
    for (lo, &v) in l_out.iter_mut().zip(x) {
        *lo = (quant(iscale, v) + nmax) as i8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (lo, &v) in l_out.iter_mut().zip(x) {
                *lo = (quant(iscale, v) + nmax) as i8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// `make_q3_quants` with `do_rmse == true`. Writes `L[i] = l + nmax`, returns the scale.
fn make_q3_quants(nmax: i32, x: &[f32], l_out: &mut [i8]) -> f32 {
    let (max, amax) = signed_absmax_gt(x);
    if amax < GROUP_MAX_EPS {
        l_out.iter_mut().for_each(|l| *l = 0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
    for (lo, &v) in l_out.iter_mut().zip(x) {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *lo = l as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut n_changed = 0;
        for (lo, &v) in l_out.iter_mut().zip(x) {
            let w = v * v;
            let li = *lo as f32;
            let mut slx = sumlx - w * v * li;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * li * li;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != *lo as i32 {
                    let nl = new_l as f32;
                    slx += w * v * nl;
                    sl2 += w * nl * nl;
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *lo = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed += 1;
                    }
                }
            }
        }
        if n_changed == 0 {
            break;
        }
    }
    for lo in l_out.iter_mut() {
        *lo += nmax as i8;
    }
    if suml2 > 0.0 {
        sumlx / suml2
    } else {
        0.0
    }
}

/// Parameters of `make_qkx2_quants`'s scale search.
struct Qkx2 {
    nmax: i32,
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
}

/// `make_qkx2_quants`: fits `x ≈ scale * L - min` with `L` in `0..=nmax`, `min >= 0`, by a
/// weighted least-squares search. Writes `L`, returns `(scale, min)`.
fn make_qkx2_quants(p: &Qkx2, x: &[f32], weights: &[f32], l_out: &mut [u8]) -> (f32, f32) {
    let nmax = p.nmax;
    let (Some(&x0), Some(&w0)) = (x.first(), weights.first()) else {
        return (0.0, 0.0);
    };
    let (mut min, mut max) = (x0, x0);
    let mut sum_w = w0;
    let mut sum_x = sum_w * x0;
    for (&v, &w) in x.iter().zip(weights).skip(1) {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
        sum_w += w;
        sum_x += w * v;
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l_out.iter_mut().for_each(|l| *l = 0);
        return (0.0, -min);
    }
    let err = |diff: f32| if p.use_mad { diff.abs() } else { diff * diff };
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for ((lo, &v), &w) in l_out.iter_mut().zip(x).zip(weights) {
        let l = nearest_int(iscale * (v - min)).clamp(0, nmax);
        *lo = l as u8;
        best_error += w * err(scale * l as f32 + min - v);
    }
    if p.nstep < 1 {
        return (scale, -min);
    }
    let mut laux = [0u8; 32];
    for is in 0..=p.nstep {
        iscale = (p.rmin + p.rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for ((la, &v), &w) in laux.iter_mut().zip(x).zip(weights) {
            let l = nearest_int(iscale * (v - min)).clamp(0, nmax);
            *la = l as u8;
            let lf = l as f32;
            sum_l += w * lf;
            sum_l2 += w * lf * lf;
            sum_xl += w * lf * v;
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for ((&la, &v), &w) in laux.iter().zip(x).zip(weights) {
                cur_error += w * err(this_scale * la as f32 + this_min - v);
            }
            if cur_error < best_error {
                for (lo, &la) in l_out.iter_mut().zip(&laux) {
                    *lo = la;
                }
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// Packs 2-bit values `L` (256 of them) into Q2_K/Q3_K's `qs` layout.
fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8; QK_K / 4]) {
    for (half, q) in l.chunks_exact(128).zip(qs.chunks_exact_mut(32)) {
        for (i, q) in q.iter_mut().enumerate() {
            let get = |k: usize| half.get(i + 32 * k).copied().unwrap_or(0);
            *q = get(0) | (get(1) << 2) | (get(2) << 4) | (get(3) << 6);
        }
    }
}

pub(crate) fn q2_k(src: &[f32], dst: &mut [BlockQ2K]) {
    const Q4SCALE: f32 = 15.0;
    let params = Qkx2 {
        nmax: 3,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: true,
    };
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        let mut l = [0u8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let mut mins = [0.0f32; QK_K / 16];
        let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
        for (((xs, ls), sc), mn) in x
            .chunks_exact(16)
            .zip(l.chunks_exact_mut(16))
            .zip(&mut scales)
            .zip(&mut mins)
        {
            let mut weights = [0.0f32; 16];
            for (w, v) in weights.iter_mut().zip(xs) {
                *w = v.abs();
            }
            (*sc, *mn) = make_qkx2_quants(&params, xs, &weights, ls);
            if *sc > max_scale {
                max_scale = *sc;
            }
            if *mn > max_min {
                max_min = *mn;
            }
        }
        if max_scale > 0.0 {
            let iscale = Q4SCALE / max_scale;
            for (ys, s) in y.scales.iter_mut().zip(&scales) {
                *ys = nearest_int(iscale * s) as u8;
            }
            y.d = f16::from_f32(max_scale / Q4SCALE);
        } else {
            y.scales = [0; QK_K / 16];
            y.d = f16::from_f32(0.0);
        }
        if max_min > 0.0 {
            let iscale = Q4SCALE / max_min;
            for (ys, m) in y.scales.iter_mut().zip(&mins) {
                *ys |= (nearest_int(iscale * m) << 4) as u8;
            }
            y.dmin = f16::from_f32(max_min / Q4SCALE);
        } else {
            y.dmin = f16::from_f32(0.0);
        }
        let (yd, ydmin) = (y.d.to_f32(), y.dmin.to_f32());
        for ((xs, ls), sc) in x
            .chunks_exact(16)
            .zip(l.chunks_exact_mut(16))
            .zip(&y.scales)
        {
            let d = yd * (sc & 0xF) as f32;
            if d == 0.0 {
                continue;
            }
            let dm = ydmin * (sc >> 4) as f32;
            for (lo, v) in ls.iter_mut().zip(xs) {
                *lo = nearest_int((v + dm) / d).clamp(0, 3) as u8;
            }
        }
        pack_2bit(&l, &mut y.qs);
    }
}

pub(crate) fn q3_k(src: &[f32], dst: &mut [BlockQ3K]) {
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let (mut max_scale, mut amax) = (0.0f32, 0.0f32);
        for ((xs, ls), sc) in x
            .chunks_exact(16)
            .zip(l.chunks_exact_mut(16))
            .zip(&mut scales)
        {
            *sc = make_q3_quants(4, xs, ls);
            let scale = sc.abs();
            if scale > amax {
                amax = scale;
                max_scale = *sc;
            }
        }
        y.scales = [0; 12];
        if max_scale != 0.0 {
            let iscale = -32.0 / max_scale;
            for (j, s) in scales.iter().enumerate() {
                let lj = ((nearest_int(iscale * s) as i8).clamp(-32, 31) + 32) as u8;
                if j < 8 {
                    y.scales[j] = lj & 0xF;
                } else {
                    y.scales[j - 8] |= (lj & 0xF) << 4;
                }
                y.scales[j % 4 + 8] |= (lj >> 4) << (2 * (j / 4));
            }
            y.d = f16::from_f32(1.0 / iscale);
        } else {
            y.d = f16::from_f32(0.0);
        }
        let yd = y.d.to_f32();
        for (j, (xs, ls)) in x.chunks_exact(16).zip(l.chunks_exact_mut(16)).enumerate() {
            let lo4 = if j < 8 {
                y.scales[j] & 0xF
            } else {
                y.scales[j - 8] >> 4
            };
            let sc = (lo4 | (((y.scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) as i32 - 32;
            let d = yd * sc as f32;
            if d == 0.0 {
                continue;
            }
            for (lo, v) in ls.iter_mut().zip(xs) {
                *lo = (nearest_int(v / d).clamp(-4, 3) + 4) as i8;
            }
        }
        y.hmask = [0; QK_K / 8];
        let mut l2 = [0u8; QK_K];
        for (j, (dst, &v)) in l2.iter_mut().zip(&l).enumerate() {
            let mut v = v as u8;
            if v > 3 {
                if let Some(h) = y.hmask.get_mut(j % (QK_K / 8)) {
                    *h |= 1 << (j / (QK_K / 8));
                }
                v -= 4;
            }
            *dst = v;
        }
        pack_2bit(&l2, &mut y.qs);
    }
}

/// Shared body of the Q4_K and Q5_K reference quantizers: sub-block fits, 6-bit scale/min
/// packing, super-block scales and the final requantization to `0..=nmax`.
fn kx_scales(p: &Qkx2, x: &[f32], packed: &mut [u8; 12], l: &mut [u8; QK_K]) -> (f16, f16) {
    let mut scales = [0.0f32; QK_K / 32];
    let mut mins = [0.0f32; QK_K / 32];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for (((xs, ls), sc), mn) in x
        .chunks_exact(32)
        .zip(l.chunks_exact_mut(32))
        .zip(&mut scales)
        .zip(&mut mins)
    {
        let mut sum_x2 = 0.0f32;
        for v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let mut weights = [0.0f32; 32];
        for (w, v) in weights.iter_mut().zip(xs) {
            *w = av_x + v.abs();
        }
        (*sc, *mn) = make_qkx2_quants(p, xs, &weights, ls);
        if *sc > max_scale {
            max_scale = *sc;
        }
        if *mn > max_min {
            max_min = *mn;
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    *packed = [0; 12];
    for (j, (s, m)) in scales.iter().zip(&mins).enumerate() {
        let ls = (nearest_int(inv_scale * s) as u8).min(63);
        let lm = (nearest_int(inv_min * m) as u8).min(63);
        if j < 4 {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            packed[j - 4] |= (ls >> 4) << 6;
            packed[j] |= (lm >> 4) << 6;
        }
    }
    let d = f16::from_f32(max_scale / 63.0);
    let dmin = f16::from_f32(max_min / 63.0);
    for (j, (xs, ls)) in x.chunks_exact(32).zip(l.chunks_exact_mut(32)).enumerate() {
        let (sc, m) = scale_min_k4(j, packed);
        let dd = d.to_f32() * sc as f32;
        if dd == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * m as f32;
        for (lo, v) in ls.iter_mut().zip(xs) {
            *lo = nearest_int((v + dm) / dd).clamp(0, p.nmax) as u8;
        }
    }
    (d, dmin)
}

pub(crate) fn q4_k(src: &[f32], dst: &mut [BlockQ4K]) {
    let params = Qkx2 {
        nmax: 15,
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        use_mad: false,
    };
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        let mut l = [0u8; QK_K];
        (y.d, y.dmin) = kx_scales(&params, x, &mut y.scales, &mut l);
        for (lq, q) in l.chunks_exact(64).zip(y.qs.chunks_exact_mut(32)) {
            let (a, b) = lq.split_at(32);
            for ((q, a), b) in q.iter_mut().zip(a).zip(b) {
                *q = a | (b << 4);
            }
        }
    }
}

pub(crate) fn q5_k(src: &[f32], dst: &mut [BlockQ5K]) {
    let params = Qkx2 {
        nmax: 31,
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        use_mad: false,
    };
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        let mut l = [0u8; QK_K];
        (y.d, y.dmin) = kx_scales(&params, x, &mut y.scales, &mut l);
        y.qh = [0; QK_K / 8];
        for (n, (lq, ql)) in l
            .chunks_exact(64)
            .zip(y.qs.chunks_exact_mut(32))
            .enumerate()
        {
            let (m1, m2) = (1u8 << (2 * n), 2u8 << (2 * n));
            let (a, b) = lq.split_at(32);
            for (((q, h), &a), &b) in ql.iter_mut().zip(y.qh.iter_mut()).zip(a).zip(b) {
                let (mut l1, mut l2) = (a, b);
                if l1 > 15 {
                    l1 -= 16;
                    *h |= m1;
                }
                if l2 > 15 {
                    l2 -= 16;
                    *h |= m2;
                }
                *q = l1 | (l2 << 4);
            }
        }
    }
}

pub(crate) fn q6_k(src: &[f32], dst: &mut [BlockQ6K]) {
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        let mut l = [0i8; QK_K];
        let mut scales = [0.0f32; QK_K / 16];
        let (mut max_scale, mut max_abs_scale) = (0.0f32, 0.0f32);
        for ((xs, ls), sc) in x
            .chunks_exact(16)
            .zip(l.chunks_exact_mut(16))
            .zip(&mut scales)
        {
            *sc = make_qx_quants(32, xs, ls);
            if sc.abs() > max_abs_scale {
                max_abs_scale = sc.abs();
                max_scale = *sc;
            }
        }
        if max_abs_scale < GROUP_MAX_EPS {
            *y = bytemuck::Zeroable::zeroed();
            continue;
        }
        let iscale = -128.0 / max_scale;
        y.d = f16::from_f32(1.0 / iscale);
        for (ys, s) in y.scales.iter_mut().zip(&scales) {
            *ys = nearest_int(iscale * s).min(127) as i8;
        }
        let yd = y.d.to_f32();
        for ((xs, ls), sc) in x
            .chunks_exact(16)
            .zip(l.chunks_exact_mut(16))
            .zip(&y.scales)
        {
            let d = yd * *sc as f32;
            if d == 0.0 {
                continue;
            }
            for (lo, v) in ls.iter_mut().zip(xs) {
                *lo = (nearest_int(v / d).clamp(-32, 31) + 32) as i8;
            }
        }
        for ((lh, ql), qh) in l
            .chunks_exact(128)
            .zip(y.ql.chunks_exact_mut(64))
            .zip(y.qh.chunks_exact_mut(32))
        {
            let (ql0, ql1) = ql.split_at_mut(32);
            for (i, ((a, b), h)) in ql0.iter_mut().zip(ql1).zip(qh).enumerate() {
                let get = |k: usize| lh.get(i + 32 * k).copied().unwrap_or(0) as u8;
                *a = (get(0) & 0xF) | ((get(2) & 0xF) << 4);
                *b = (get(1) & 0xF) | ((get(3) & 0xF) << 4);
                *h = (get(0) >> 4)
                    | ((get(1) >> 4) << 2)
                    | ((get(2) >> 4) << 4)
                    | ((get(3) >> 4) << 6);
            }
        }
    }
}

/// ggml's `best_index_int8`: the index of the table value nearest `x` (the upper one on ties),
/// by bisection over the sorted `values`.
#[inline(always)]
fn best_index_int8(values: &[i8; 16], x: f32) -> u8 {
    let v = |i: usize| f32::from(values[i]);
    if x <= v(0) {
        return 0;
    }
    if x >= v(15) {
        return 15;
    }
    let (mut ml, mut mu) = (0usize, 15usize);
    while mu - ml > 1 {
        let mav = (ml + mu) / 2;
        if x < v(mav) {
            mu = mav;
        } else {
            ml = mav;
        }
    }
    if x - v(mu - 1) < v(mu) - x {
        (mu - 1) as u8
    } else {
        mu as u8
    }
}

/// Sums `(sum w q x, sum w q q)` of a block quantized with inverse scale `id`, writing the
/// indices to `l` when given.
#[inline(always)]
fn iq4_sums(xb: &[f32], weight: &[f32], id: f32, mut l: Option<&mut [u8]>) -> (f32, f32) {
    let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
    for (j, (&x, &w)) in xb.iter().zip(weight).enumerate() {
        let idx = best_index_int8(&KVALUES_IQ4NL, id * x);
        if let Some(slot) = l.as_deref_mut().and_then(|l| l.get_mut(j)) {
            *slot = idx;
        }
        let q = f32::from(KVALUES_IQ4NL[usize::from(idx)]);
        sumqx += w * q * x;
        sumq2 += w * q * q;
    }
    (sumqx, sumq2)
}

/// The best scale of one 32-element block (`quantize_row_iq4_nl_impl`'s inner search with
/// `ntry = 7` and no importance weights: weights `x²`), writing its indices into `l`.
fn iq4_block_scale(xb: &[f32], l: &mut [u8]) -> f32 {
    const NTRY: i32 = 7;
    let weight: [f32; 32] = core::array::from_fn(|j| xb.get(j).map_or(0.0, |x| x * x));
    let (max, amax) = signed_absmax(xb);
    if amax < GROUP_MAX_EPS {
        return 0.0;
    }
    let v0 = f32::from(KVALUES_IQ4NL[0]);
    let d = -max / v0;
    let (sumqx, sumq2) = iq4_sums(xb, &weight, 1.0 / d, Some(l));
    let mut d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
    let mut best = d * sumqx;
    for itry in -NTRY..=NTRY {
        let id = (itry as f32 + v0) / max;
        let (sumqx, sumq2) = iq4_sums(xb, &weight, id, None);
        if sumq2 > 0.0 && sumqx * sumqx > best * sumq2 {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    d
}

/// Packs 32 indices into Q4_0-ordered nibbles.
fn iq4_pack(l: &[u8], qs: &mut [u8]) {
    for (j, q) in qs.iter_mut().enumerate().take(16) {
        let lo = l.get(j).copied().unwrap_or(0);
        let hi = l.get(j + 16).copied().unwrap_or(0);
        *q = lo | hi << 4;
    }
}

/// IQ4_NL as llama-quantize writes it without an importance matrix (`quantize_iq4_nl`:
/// `quantize_row_iq4_nl_impl` with `ntry = 7`; the indices are recomputed from the unrounded
/// scale).
pub(crate) fn iq4_nl(src: &[f32], dst: &mut [BlockIq4Nl]) {
    for (x, y) in src.chunks_exact(QK).zip(dst) {
        let mut l = [0u8; QK];
        let d = iq4_block_scale(x, &mut l);
        y.d = f16::from_f32(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (slot, &v) in l.iter_mut().zip(x) {
            *slot = best_index_int8(&KVALUES_IQ4NL, id * v);
        }
        iq4_pack(&l, &mut y.qs);
    }
}

/// IQ4_XS as llama-quantize writes it without an importance matrix (`quantize_iq4_xs`):
/// a scale per 32-element block as for IQ4_NL, quantized to 6 bits against
/// `d = -max_scale / 32`, then the indices again against each rounded block scale.
pub(crate) fn iq4_xs(src: &[f32], dst: &mut [BlockIq4Xs]) {
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        let mut l = [0u8; QK_K];
        let mut scales = [0.0f32; QK_K / 32];
        let (mut max_scale, mut amax_scale) = (0.0f32, 0.0f32);
        for ((xb, lb), s) in x
            .chunks_exact(32)
            .zip(l.chunks_exact_mut(32))
            .zip(&mut scales)
        {
            *s = iq4_block_scale(xb, lb);
            if s.abs() > amax_scale {
                amax_scale = s.abs();
                max_scale = *s;
            }
        }
        y.scales_h = 0;
        y.scales_l = [0; QK_K / 64];
        let d = -max_scale / 32.0;
        y.d = f16::from_f32(d);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for (ib, ((xb, lb), s)) in x
            .chunks_exact(32)
            .zip(l.chunks_exact_mut(32))
            .zip(scales)
            .enumerate()
        {
            let ls = nearest_int(id * s).clamp(-32, 31);
            let dl = d * ls as f32;
            let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
            for (slot, &v) in lb.iter_mut().zip(xb) {
                *slot = best_index_int8(&KVALUES_IQ4NL, idl * v);
            }
            let ls = (ls + 32) as u8;
            if let Some(b) = y.scales_l.get_mut(ib / 2) {
                *b |= (ls & 0x0F) << (4 * (ib % 2));
            }
            y.scales_h |= u16::from(ls >> 4) << (2 * ib);
        }
        for (qs, lb) in y.qs.chunks_exact_mut(16).zip(l.chunks_exact(32)) {
            iq4_pack(lb, qs);
        }
    }
}

/// Q8_0 weights as llama-quantize writes them (`quantize_row_q8_0_ref`: `d = amax / 127`,
/// `q = roundf(x / d)`, ties away from zero) — not the activation quantizer [`q8_0`].
pub(crate) fn q8_0_ref(src: &[f32], dst: &mut [BlockQ8_0]) {
    for (x, y) in src.chunks_exact(QK).zip(dst) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y.d = f16::from_f32(d);
        for (q, v) in y.qs.iter_mut().zip(x) {
            *q = (v * id).round() as i8;
        }
    }
}

/// ggml's `best_index_mxfp4`: the first index of least `|value e - x|`.
#[inline(always)]
fn best_index_mxfp4(x: f32, e: f32) -> u8 {
    let mut best = 0u8;
    let mut best_err = (f32::from(KVALUES_MXFP4[0]) * e - x).abs();
    for (i, v) in KVALUES_MXFP4.iter().enumerate().skip(1) {
        let err = (f32::from(*v) * e - x).abs();
        if err < best_err {
            best = i as u8;
            best_err = err;
        }
    }
    best
}

/// MXFP4 as ggml's reference quantizer writes it (`quantize_row_mxfp4_ref`, which llama-quantize
/// runs): `e = floor(log2(amax)) - 2 + 127`, then each value's nearest table entry.
pub(crate) fn mxfp4(src: &[f32], dst: &mut [BlockMxfp4]) {
    for (x, y) in src.chunks_exact(QK).zip(dst) {
        let amax = x
            .iter()
            .fold(0.0f32, |m, v| if m < v.abs() { v.abs() } else { m });
        let e = if amax > 0.0 {
            (amax.log2().floor() - 2.0 + 127.0) as u8
        } else {
            0
        };
        let d = e8m0_half(e);
        y.e = e;
        let (lo, hi) = x.split_at(QK / 2);
        for ((q, a), b) in y.qs.iter_mut().zip(lo).zip(hi) {
            *q = best_index_mxfp4(*a, d) | best_index_mxfp4(*b, d) << 4;
        }
    }
}

/// A TQ block's scale as ggml's reference quantizers take it: the largest magnitude
/// (`MAX(amax, fabsf(v))`), and its inverse (0 for an all-zero block).
fn tq_scale(x: &[f32]) -> (f32, f32) {
    let amax = x
        .iter()
        .fold(0.0f32, |m, v| if m > v.abs() { m } else { v.abs() });
    (amax, if amax != 0.0 { 1.0 / amax } else { 0.0 })
}

/// The trit (0, 1, 2) of `v` at inverse scale `id` (`lroundf(v id) + 1`).
fn tq_trit(v: f32, id: f32) -> u8 {
    ((v * id).round() as i32 + 1) as u8
}

/// Five (or four, then shifted) trits as a byte: the base-3 number scaled to 256 by ceiling
/// division, first trit most significant.
fn tq_pack(q: u8) -> u8 {
    (u16::from(q) * 256).div_ceil(243) as u8
}

/// TQ1_0 as ggml's reference quantizer writes it (`quantize_row_tq1_0_ref`, which
/// llama-quantize runs): `d = amax`, each element `round(v / d)`, packed as [`BlockTq1_0`]
/// orders them.
pub(crate) fn tq1_0(src: &[f32], dst: &mut [BlockTq1_0]) {
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        let (d, id) = tq_scale(x);
        y.d = f16::from_f32(d);
        let t = |e: usize| tq_trit(x[e], id);
        for m in 0..32 {
            let q = (0..5).fold(0u8, |q, n| q * 3 + t(32 * n + m));
            y.qs[m] = tq_pack(q);
        }
        for m in 0..16 {
            let q = (0..5).fold(0u8, |q, n| q * 3 + t(160 + 16 * n + m));
            y.qs[32 + m] = tq_pack(q);
        }
        for j in 0..4 {
            let q = (0..4).fold(0u8, |q, n| q * 3 + t(240 + 4 * n + j));
            y.qh[j] = tq_pack(q * 3);
        }
    }
}

/// TQ2_0 as ggml's reference quantizer writes it (`quantize_row_tq2_0_ref`): `d = amax`, each
/// element `round(v / d) + 1` in two bits, ordered as [`BlockTq2_0`].
pub(crate) fn tq2_0(src: &[f32], dst: &mut [BlockTq2_0]) {
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        let (d, id) = tq_scale(x);
        y.d = f16::from_f32(d);
        for h in 0..2 {
            for m in 0..32 {
                y.qs[32 * h + m] = (0..4).fold(0u8, |q, l| {
                    q | (tq_trit(x[128 * h + 32 * l + m], id) & 3) << (2 * l)
                });
            }
        }
    }
}

/// The nearest entry of `grid` to `G` magnitudes (squared error, lowest index on ties).
fn nearest_grid<const G: usize>(grid: &[[f32; G]], m: [f32; G]) -> usize {
    let mut best = (0usize, f32::INFINITY);
    for (i, e) in grid.iter().enumerate() {
        let v: f32 = (0..G).map(|k| (e[k] - m[k]) * (e[k] - m[k])).sum();
        if v < best.1 {
            best = (i, v);
        }
    }
    best.0
}

/// A grid i-quant sub-block by the plain search: of the factors `f(ls)` for `ls` around
/// `ls0` (within 0..=15), the one whose nearest-grid rounding of the 32 magnitudes (`G` at a
/// time) at `db = d f(ls)` has the least squared error; returns `ls` and the `32 / G` grid
/// indices (the rest of the array zero).
fn iq3_sub_block<const G: usize>(
    grid: &[[f32; G]],
    xb: &[f32],
    d: f32,
    ls0: u32,
    f: impl Fn(u32) -> f32,
) -> (u32, [usize; 8]) {
    let mut best: Option<(f32, u32, [usize; 8])> = None;
    for ls in ls0.saturating_sub(1)..=(ls0 + 1).min(15) {
        let db = d * f(ls);
        let mut idx = [0usize; 8];
        let mut err = 0.0f32;
        for (k, four) in xb.chunks_exact(G).enumerate() {
            let i = nearest_grid(grid, core::array::from_fn(|j| four[j].abs() / db));
            idx[k] = i;
            err += (0..G)
                .map(|j| {
                    let e = db * grid[i][j] - four[j].abs();
                    e * e
                })
                .sum::<f32>();
        }
        if best.is_none_or(|b| err < b.0) {
            best = Some((err, ls, idx));
        }
    }
    best.map_or((ls0, [0; 8]), |(_, ls, idx)| (ls, idx))
}

/// The grid as four floats per entry.
fn grid_f32(words: &[u32]) -> Vec<[f32; 4]> {
    words
        .iter()
        .map(|g| g.to_le_bytes().map(f32::from))
        .collect()
}

/// The largest magnitude of each 32-element sub-block.
fn sub_block_amax(x: &[f32]) -> Vec<f32> {
    x.chunks_exact(32)
        .map(|b| b.iter().fold(0.0f32, |m, v| m.max(v.abs())))
        .collect()
}

/// The sign bits of eight values with even parity (what a 7-bit sign index of ggml's
/// `ksigns_iq2xs` can hold): where an odd number are negative, the smallest magnitude's sign is
/// flipped.
fn parity_signs(g: &[f32]) -> u8 {
    let mut neg = sign_bits(g);
    if neg.count_ones() % 2 == 1 {
        let j = (0..g.len().min(8))
            .min_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap_or(0);
        neg ^= 1 << j;
    }
    neg
}

/// IQ3_XXS by a plain search (not ggml's quantizer, which needs its neighbour tables; this
/// one is for making test models): the super-block scale that brings the largest magnitude
/// to the grid's top (62) at the largest factor, per sub-block the best of three factors
/// ([`iq3_sub_block`]), signs with even parity per eight elements (the smallest magnitude of
/// an odd group flipped).
pub(crate) fn iq3_xxs(src: &[f32], dst: &mut [BlockIq3Xxs]) {
    let grid = grid_f32(&crate::grids::IQ3XXS_GRID);
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        *y = bytemuck::Zeroable::zeroed();
        let amax = sub_block_amax(x);
        let top = amax.iter().fold(0.0f32, |m, v| m.max(*v));
        // db = d (2 ls + 1) / 4; at ls = 15 the largest magnitude maps to 62.
        y.d = f16::from_f32(top / 62.0 * 4.0 / 31.0);
        let d = y.d.to_f32();
        if !(d > 0.0 && d.is_finite()) {
            y.d = f16::ZERO;
            continue;
        }
        for (ib, xb) in x.chunks_exact(32).enumerate() {
            let mut aux = 0u32;
            for (l, g) in xb.chunks_exact(8).enumerate() {
                let neg = parity_signs(g);
                aux |= u32::from(neg & 127) << (7 * l);
            }
            let ls0 = ((amax[ib] / 62.0 * 4.0 / d - 1.0) / 2.0)
                .round()
                .clamp(0.0, 15.0) as u32;
            let (ls, idx) = iq3_sub_block(&grid, xb, d, ls0, |ls| (0.5 + ls as f32) * 0.5);
            aux |= ls << 28;
            for (k, i) in idx.iter().enumerate() {
                y.qs[8 * ib + k] = *i as u8;
            }
            y.qs[QK_K / 4 + 4 * ib..QK_K / 4 + 4 * ib + 4].copy_from_slice(&aux.to_le_bytes());
        }
    }
}

/// IQ3_S by the same plain search as [`iq3_xxs`] (grid top 15, factor `1 + 2 ls`, nine-bit
/// indices, explicit signs).
pub(crate) fn iq3_s(src: &[f32], dst: &mut [BlockIq3S]) {
    let grid = grid_f32(&crate::grids::IQ3S_GRID);
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        *y = bytemuck::Zeroable::zeroed();
        let amax = sub_block_amax(x);
        let top = amax.iter().fold(0.0f32, |m, v| m.max(*v));
        // db = d (1 + 2 ls); at ls = 15 the largest magnitude maps to 15.
        y.d = f16::from_f32(top / 15.0 / 31.0);
        let d = y.d.to_f32();
        if !(d > 0.0 && d.is_finite()) {
            y.d = f16::ZERO;
            continue;
        }
        for (ib, xb) in x.chunks_exact(32).enumerate() {
            for (l, g) in xb.chunks_exact(8).enumerate() {
                y.signs[4 * ib + l] =
                    g.iter()
                        .enumerate()
                        .fold(0u8, |m, (j, v)| if *v < 0.0 { m | 1 << j } else { m });
            }
            let ls0 = ((amax[ib] / 15.0 / d - 1.0) / 2.0).round().clamp(0.0, 15.0) as u32;
            let (ls, idx) = iq3_sub_block(&grid, xb, d, ls0, |ls| (1 + 2 * ls) as f32);
            y.scales[ib / 2] |= (ls as u8) << (4 * (ib % 2));
            for (k, i) in idx.iter().enumerate() {
                y.qs[8 * ib + k] = *i as u8;
                y.qh[ib] |= ((*i >> 8) as u8 & 1) << k;
            }
        }
    }
}

/// IQ2_XXS by the same plain search as [`iq3_xxs`] (groups of eight magnitudes from a grid
/// whose top is 43, factor `(2 ls + 1) / 8`, signs of even parity per eight).
pub(crate) fn iq2_xxs(src: &[f32], dst: &mut [BlockIq2Xxs]) {
    let grid: Vec<[f32; 8]> = crate::grids::IQ2XXS_GRID
        .iter()
        .map(|g| g.to_le_bytes().map(f32::from))
        .collect();
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        *y = bytemuck::Zeroable::zeroed();
        let amax = sub_block_amax(x);
        let top = amax.iter().fold(0.0f32, |m, v| m.max(*v));
        // db = d (2 ls + 1) / 8; at ls = 15 the largest magnitude maps to 43.
        y.d = f16::from_f32(top / 43.0 * 8.0 / 31.0);
        let d = y.d.to_f32();
        if !(d > 0.0 && d.is_finite()) {
            y.d = f16::ZERO;
            continue;
        }
        for (ib, xb) in x.chunks_exact(32).enumerate() {
            let mut aux = 0u32;
            for (l, g) in xb.chunks_exact(8).enumerate() {
                let neg = parity_signs(g);
                aux |= u32::from(neg & 127) << (7 * l);
            }
            let ls0 = ((amax[ib] / 43.0 * 8.0 / d - 1.0) / 2.0)
                .round()
                .clamp(0.0, 15.0) as u32;
            let (ls, idx) = iq3_sub_block(&grid, xb, d, ls0, |ls| (0.5 + ls as f32) * 0.25);
            aux |= ls << 28;
            for (k, i) in idx.iter().take(4).enumerate() {
                y.qs[8 * ib + k] = *i as u8;
            }
            y.qs[8 * ib + 4..8 * ib + 8].copy_from_slice(&aux.to_le_bytes());
        }
    }
}

/// Signs of eight values as bits (set where negative).
fn sign_bits(g: &[f32]) -> u8 {
    g.iter()
        .enumerate()
        .fold(0u8, |m, (j, v)| if *v < 0.0 { m | 1 << j } else { m })
}

/// The IQ2 grids with scales per half of 16 (IQ2_XS, IQ2_S), by the plain search: the
/// super-block scale that brings the largest magnitude to 43 at the largest factor, per half
/// the best of three factors `(2 ls + 1) / 8`; `put(block, ib, half, ls, [index; 2])` stores a
/// half.
fn iq2_halves<B: bytemuck::Pod>(
    src: &[f32],
    dst: &mut [B],
    grid: &[[f32; 8]],
    d_of: impl Fn(&mut B, f16),
    mut put: impl FnMut(&mut B, usize, usize, u32, [usize; 2]),
) {
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        *y = bytemuck::Zeroable::zeroed();
        let top = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let dh = f16::from_f32(top / 43.0 * 8.0 / 31.0);
        let d = dh.to_f32();
        if !(d > 0.0 && d.is_finite()) {
            d_of(y, f16::ZERO);
            continue;
        }
        d_of(y, dh);
        for (ib, xb) in x.chunks_exact(32).enumerate() {
            for (h, xh) in xb.chunks_exact(16).enumerate() {
                let amax = xh.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let ls0 = ((amax / 43.0 * 8.0 / d - 1.0) / 2.0)
                    .round()
                    .clamp(0.0, 15.0) as u32;
                let (ls, idx) = iq3_sub_block(grid, xh, d, ls0, |ls| (0.5 + ls as f32) * 0.25);
                put(y, ib, h, ls, [idx[0], idx[1]]);
            }
        }
    }
}

/// IQ2_XS by the plain search ([`iq2_halves`]; signs of even parity per eight, as
/// [`iq3_xxs`]'s, nine-bit indices).
pub(crate) fn iq2_xs(src: &[f32], dst: &mut [BlockIq2Xs]) {
    let grid: Vec<[f32; 8]> = crate::grids::IQ2XS_GRID
        .iter()
        .map(|g| g.to_le_bytes().map(f32::from))
        .collect();
    // Signs first (they do not depend on the scale), then the halves.
    let mut signs: Vec<u8> = Vec::with_capacity(src.len() / 8);
    for g in src.chunks_exact(8) {
        let neg = parity_signs(g);
        signs.push(neg & 127);
    }
    let mut block = 0usize;
    iq2_halves(
        src,
        dst,
        &grid,
        |y, d| {
            y.d = d;
        },
        |y, ib, h, ls, idx| {
            if ib == 0 && h == 0 {
                block += 1;
            }
            y.scales[ib] |= (ls as u8) << (4 * h);
            for (k, i) in idx.iter().enumerate() {
                let l = 2 * h + k;
                let s = signs[(block - 1) * 32 + 4 * ib + l];
                y.qs[4 * ib + l] = (*i as u16 & 511) | u16::from(s) << 9;
            }
        },
    );
}

/// IQ2_S by the plain search ([`iq2_halves`]; explicit signs, ten-bit indices).
pub(crate) fn iq2_s(src: &[f32], dst: &mut [BlockIq2S]) {
    let grid: Vec<[f32; 8]> = crate::grids::IQ2S_GRID
        .iter()
        .map(|g| g.to_le_bytes().map(f32::from))
        .collect();
    let signs: Vec<u8> = src.chunks_exact(8).map(sign_bits).collect();
    let mut block = 0usize;
    iq2_halves(
        src,
        dst,
        &grid,
        |y, d| {
            y.d = d;
        },
        |y, ib, h, ls, idx| {
            if ib == 0 && h == 0 {
                block += 1;
            }
            y.scales[ib] |= (ls as u8) << (4 * h);
            for (k, i) in idx.iter().enumerate() {
                let l = 2 * h + k;
                y.qs[4 * ib + l] = *i as u8;
                y.qh[ib] |= ((*i >> 8) as u8 & 3) << (2 * l);
                y.qs[32 + 4 * ib + l] = signs[(block - 1) * 32 + 4 * ib + l];
            }
        },
    );
}

/// IQ1_S's grid (eight values of -1, 0, 1 per entry) and the entry of each of the 3^8 codes
/// it holds.
struct Iq1Grid {
    grid: Vec<[f32; 8]>,
    index: Vec<u16>,
}

impl Iq1Grid {
    fn new() -> Iq1Grid {
        let grid: Vec<[f32; 8]> = crate::grids::IQ1S_GRID
            .iter()
            .map(|g| g.to_le_bytes().map(|b| f32::from(b as i8)))
            .collect();
        let mut index = vec![u16::MAX; 6561];
        for (i, g) in grid.iter().enumerate() {
            index[Self::key(g)] = i as u16;
        }
        Iq1Grid { grid, index }
    }

    /// The base-3 code of eight values in -1..=1.
    fn key(g: &[f32; 8]) -> usize {
        g.iter()
            .fold(0usize, |k, v| k * 3 + (*v as i32 + 1) as usize)
    }

    /// The entry for eight targets: that of their rounded codes if the grid has it, else the
    /// nearest (squared error, lowest index on ties).
    fn encode(&self, t: [f32; 8]) -> usize {
        let rounded = t.map(|v| v.round().clamp(-1.0, 1.0));
        match self.index[Self::key(&rounded)] {
            u16::MAX => nearest_grid(&self.grid, t),
            i => usize::from(i),
        }
    }
}

/// IQ1_S by a plain search (not ggml's, which needs an importance matrix; for test models):
/// the super-block scale that brings the largest magnitude to `1 + 1/8` at the largest factor
/// (15), per sub-block the factor that does the same for its own largest and the shift's sign
/// of its mean, then each eight values to the grid entry of their rounded codes if the grid has
/// it, else the nearest entry (squared error, lowest index on ties).
pub(crate) fn iq1_s(src: &[f32], dst: &mut [BlockIq1S]) {
    let grid = Iq1Grid::new();
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        *y = bytemuck::Zeroable::zeroed();
        let amax = sub_block_amax(x);
        let top = amax.iter().fold(0.0f32, |m, v| m.max(*v));
        y.d = f16::from_f32(top / 1.125 / 15.0);
        let d = y.d.to_f32();
        if !(d > 0.0 && d.is_finite()) {
            y.d = f16::ZERO;
            continue;
        }
        for (ib, xb) in x.chunks_exact(32).enumerate() {
            let ls = ((amax[ib] / 1.125 / d - 1.0) / 2.0).round().clamp(0.0, 7.0) as u16;
            let dl = d * f32::from(2 * ls + 1);
            let neg = xb.iter().sum::<f32>() < 0.0;
            let delta = if neg { -0.125 } else { 0.125 };
            let mut qh = ls << 12 | if neg { 0x8000 } else { 0 };
            for (l, g8) in xb.chunks_exact(8).enumerate() {
                let i = grid.encode(core::array::from_fn(|j| g8[j] / dl - delta));
                y.qs[4 * ib + l] = i as u8;
                qh |= ((i >> 8) as u16 & 7) << (3 * l);
            }
            y.qh[ib] = qh;
        }
    }
}

/// IQ1_M by the plain search of [`iq1_s`], per half of 16 elements for the factor and per
/// eight for the shift's sign; the super-block scale stored in the scales' top nibbles.
pub(crate) fn iq1_m(src: &[f32], dst: &mut [BlockIq1M]) {
    let grid = Iq1Grid::new();
    for (x, y) in src.chunks_exact(QK_K).zip(dst) {
        *y = bytemuck::Zeroable::zeroed();
        let top = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let dh = f16::from_f32(top / 1.125 / 15.0);
        let d = dh.to_f32();
        if !(d > 0.0 && d.is_finite()) {
            continue;
        }
        let mut sc = [0u16; 4];
        for (ib, xb) in x.chunks_exact(32).enumerate() {
            for (h, xh) in xb.chunks_exact(16).enumerate() {
                let amax = xh.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let ls = ((amax / 1.125 / d - 1.0) / 2.0).round().clamp(0.0, 7.0) as u16;
                sc[ib / 2] |= ls << (6 * (ib % 2) + 3 * h);
                let dl = d * f32::from(2 * ls + 1);
                for (k, g8) in xh.chunks_exact(8).enumerate() {
                    let l = 2 * h + k;
                    let neg = g8.iter().sum::<f32>() < 0.0;
                    let delta = if neg { -0.125 } else { 0.125 };
                    let i = grid.encode(core::array::from_fn(|j| g8[j] / dl - delta));
                    y.qs[4 * ib + l] = i as u8;
                    let byte = &mut y.qh[2 * ib + l / 2];
                    *byte |= (((i >> 8) as u8 & 7) | u8::from(neg) << 3) << (4 * (l % 2));
                }
            }
        }
        let bits = dh.to_bits();
        for (k, s) in sc.iter_mut().enumerate() {
            *s |= (bits >> (4 * k) & 0xf) << 12;
            y.scales[2 * k..2 * k + 2].copy_from_slice(&s.to_le_bytes());
        }
    }
}
