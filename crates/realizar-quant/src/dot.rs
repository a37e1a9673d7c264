//! Scalar dot products of a weight row with an activation row, with the arithmetic of ggml's
//! reference kernels (`ggml_vec_dot_*_generic` in `ggml/src/ggml-cpu/quants.c` and
//! `ggml_vec_dot_f32/f16/bf16` in `ggml/src/ggml-cpu/vec.cpp`): integer sums per block, the
//! same float operations in the same order. These are the scalar twins of the SIMD kernels.

use half::{bf16, f16};

use crate::blocks::*;
use crate::dequant::{q3_k_scales, q5_pair, q6_quad, scale_min_k4};
use crate::types::QK;

pub(crate) fn f32s(x: &[f32], y: &[f32]) -> f32 {
    let mut sum = 0.0f64;
    for (a, b) in x.iter().zip(y) {
        sum += (a * b) as f64;
    }
    sum as f32
}

pub(crate) fn f16s(x: &[f16], y: &[f16]) -> f32 {
    let mut sum = 0.0f64;
    for (a, b) in x.iter().zip(y) {
        sum += (a.to_f32() * b.to_f32()) as f64;
    }
    sum as f32
}

pub(crate) fn bf16s(x: &[bf16], y: &[bf16]) -> f32 {
    let mut sum = 0.0f64;
    for (a, b) in x.iter().zip(y) {
        sum += (a.to_f32() * b.to_f32()) as f64;
    }
    sum as f32
}

/// Integer dot product of Q4_0 nibbles (minus 8) with 32 int8 activations.
#[inline(always)]
pub(crate) fn q4_0_block_sum(qs: &[u8; QK / 2], q8: &[i8; QK]) -> i32 {
    let (lo, hi) = q8.split_at(QK / 2);
    let (mut s0, mut s1) = (0i32, 0i32);
    for ((q, a), b) in qs.iter().zip(lo).zip(hi) {
        s0 += ((q & 0x0F) as i32 - 8) * *a as i32;
        s1 += ((q >> 4) as i32 - 8) * *b as i32;
    }
    s0 + s1
}

pub(crate) fn q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi = q4_0_block_sum(&x.qs, &y.qs);
        sumf += sumi as f32 * x.d.to_f32() * y.d.to_f32();
    }
    sumf
}

/// Integer dot product of unsigned Q4_1 nibbles with 32 int8 activations.
#[inline(always)]
pub(crate) fn q4_1_block_sum(qs: &[u8; QK / 2], q8: &[i8; QK]) -> i32 {
    let (lo, hi) = q8.split_at(QK / 2);
    let (mut s0, mut s1) = (0i32, 0i32);
    for ((q, a), b) in qs.iter().zip(lo).zip(hi) {
        s0 += (q & 0x0F) as i32 * *a as i32;
        s1 += (q >> 4) as i32 * *b as i32;
    }
    s0 + s1
}

pub(crate) fn q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi = q4_1_block_sum(&x.qs, &y.qs);
        sumf += (x.d.to_f32() * y.d.to_f32()) * sumi as f32 + x.m.to_f32() * y.s.to_f32();
    }
    sumf
}

/// Integer dot product of 5-bit quants (minus `offset`) with 32 int8 activations.
#[inline(always)]
pub(crate) fn q5_block_sum(qs: &[u8; QK / 2], qh: [u8; 4], offset: i32, q8: &[i8; QK]) -> i32 {
    let qh = u32::from_le_bytes(qh);
    let (lo, hi) = q8.split_at(QK / 2);
    let (mut s0, mut s1) = (0i32, 0i32);
    for (j, (a, b)) in lo.iter().zip(hi).enumerate() {
        let (x0, x1) = q5_pair(qs, qh, j);
        s0 += (x0 - offset) * *a as i32;
        s1 += (x1 - offset) * *b as i32;
    }
    s0 + s1
}

pub(crate) fn q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi = q5_block_sum(&x.qs, x.qh, 16, &y.qs);
        sumf += (x.d.to_f32() * y.d.to_f32()) * sumi as f32;
    }
    sumf
}

pub(crate) fn q5_1_q8_1(x: &[BlockQ5_1], y: &[BlockQ8_1]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi = q5_block_sum(&x.qs, x.qh, 0, &y.qs);
        sumf += (x.d.to_f32() * y.d.to_f32()) * sumi as f32 + x.m.to_f32() * y.s.to_f32();
    }
    sumf
}

/// Integer dot product of two blocks of 32 int8 quants.
#[inline(always)]
pub(crate) fn q8_block_sum(a: &[i8; QK], b: &[i8; QK]) -> i32 {
    a.iter().zip(b).map(|(a, b)| *a as i32 * *b as i32).sum()
}

pub(crate) fn q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let sumi = q8_block_sum(&x.qs, &y.qs);
        sumf += sumi as f32 * (x.d.to_f32() * y.d.to_f32());
    }
    sumf
}

pub(crate) fn q2_k_q8_k(x: &[BlockQ2K], y: &[BlockQ8K]) -> f32 {
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let summs: i32 = y
            .bsums
            .iter()
            .zip(&x.scales)
            .map(|(s, sc)| *s as i32 * (sc >> 4) as i32)
            .sum();
        let dall = y.d * x.d.to_f32();
        let dmin = y.d * x.dmin.to_f32();
        let mut isum = 0i32;
        let mut scales = x.scales.iter();
        let mut q8 = y.qs.chunks_exact(16);
        for q2 in x.qs.chunks_exact(32) {
            for shift in [0u32, 2, 4, 6] {
                for q2h in q2.chunks_exact(16) {
                    let d = (scales.next().copied().unwrap_or(0) & 0xF) as i32;
                    let a = q8.next().unwrap_or(&[0; 16]);
                    let isuml: i32 = a
                        .iter()
                        .zip(q2h)
                        .map(|(a, q)| *a as i32 * ((q >> shift) & 3) as i32)
                        .sum();
                    isum += d * isuml;
                }
            }
        }
        sumf += dall * isum as f32 - dmin * summs as f32;
    }
    sumf
}

/// The tail of the 8-lane K-quant reference kernels: `aux32[l]` holds the integer sum of
/// positions `≡ l (mod 8)`, each weighted by its sub-block scale; `sums[l] += d * aux32[l]`.
#[inline(always)]
fn accumulate_lanes(sums: &mut [f32; 8], aux32: &[i32; 8], d: f32) {
    for (s, a) in sums.iter_mut().zip(aux32) {
        *s += d * *a as f32;
    }
}

/// `aux32[l] += scale * q8[k] * a[k]` over 16-element groups, `l = k % 8`.
#[inline(always)]
fn lanes16(aux32: &mut [i32; 8], a: &[i8], q8: &[i8], scale: i32) {
    for (a8, q8) in a.chunks_exact(8).zip(q8.chunks_exact(8)) {
        for ((acc, a), q) in aux32.iter_mut().zip(a8).zip(q8) {
            *acc += scale * (*a as i32 * *q as i32);
        }
    }
}

pub(crate) fn q3_k_q8_k(x: &[BlockQ3K], y: &[BlockQ8K]) -> f32 {
    let mut sums = [0.0f32; 8];
    for (x, y) in x.iter().zip(y) {
        let mut aux8 = [0i8; 256];
        let mut a = aux8.chunks_exact_mut(32);
        let mut m = 1u8;
        for q3 in x.qs.chunks_exact(32) {
            for shift in [0u32, 2, 4, 6] {
                if let Some(a) = a.next() {
                    for ((a, q), h) in a.iter_mut().zip(q3).zip(&x.hmask) {
                        *a = ((q >> shift) & 3) as i8 - if h & m != 0 { 0 } else { 4 };
                    }
                }
                m = m.wrapping_shl(1);
            }
        }
        let scales = q3_k_scales(&x.scales);
        let mut aux32 = [0i32; 8];
        for ((a, q8), sc) in aux8
            .chunks_exact(16)
            .zip(y.qs.chunks_exact(16))
            .zip(&scales)
        {
            lanes16(&mut aux32, a, q8, *sc as i32 - 32);
        }
        accumulate_lanes(&mut sums, &aux32, x.d.to_f32() * y.d);
    }
    sums.iter().fold(0.0f32, |s, v| s + v)
}

/// Sum of `bsums * mins` for the Q4_K/Q5_K min correction, and the 8 sub-block scales.
#[inline(always)]
pub(crate) fn k4_scales_mins(packed: &[u8; 12], bsums: &[i16; 16]) -> ([u8; 8], i32) {
    let mut scales = [0u8; 8];
    let mut summs = 0i32;
    for (j, (sc, bs)) in scales.iter_mut().zip(bsums.chunks_exact(2)).enumerate() {
        let (s, m) = scale_min_k4(j, packed);
        *sc = s;
        summs += bs.iter().map(|b| *b as i32 * m as i32).sum::<i32>();
    }
    (scales, summs)
}

pub(crate) fn q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    let mut sums = [0.0f32; 8];
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut aux8 = [0i8; 256];
        for (q4, a) in x.qs.chunks_exact(32).zip(aux8.chunks_exact_mut(64)) {
            let (lo, hi) = a.split_at_mut(32);
            for ((q, l), h) in q4.iter().zip(lo).zip(hi) {
                *l = (q & 0xF) as i8;
                *h = (q >> 4) as i8;
            }
        }
        let (scales, summs) = k4_scales_mins(&x.scales, &y.bsums);
        let mut aux32 = [0i32; 8];
        for ((a, q8), sc) in aux8
            .chunks_exact(32)
            .zip(y.qs.chunks_exact(32))
            .zip(&scales)
        {
            lanes16(&mut aux32, a, q8, *sc as i32);
        }
        accumulate_lanes(&mut sums, &aux32, x.d.to_f32() * y.d);
        let dmin = x.dmin.to_f32() * y.d;
        sumf -= dmin * summs as f32;
    }
    sums.iter().fold(sumf, |s, v| s + v)
}

pub(crate) fn q5_k_q8_k(x: &[BlockQ5K], y: &[BlockQ8K]) -> f32 {
    let mut sums = [0.0f32; 8];
    let mut sumf = 0.0f32;
    for (x, y) in x.iter().zip(y) {
        let mut aux8 = [0i8; 256];
        for (is, (q4, a)) in
            x.qs.chunks_exact(32)
                .zip(aux8.chunks_exact_mut(64))
                .enumerate()
        {
            let (m1, m2) = (1u8 << (2 * is), 2u8 << (2 * is));
            let (lo, hi) = a.split_at_mut(32);
            for (((q, h), l), hh) in q4.iter().zip(&x.qh).zip(lo).zip(hi) {
                *l = ((q & 0xF) + if h & m1 != 0 { 16 } else { 0 }) as i8;
                *hh = ((q >> 4) + if h & m2 != 0 { 16 } else { 0 }) as i8;
            }
        }
        let (scales, summs) = k4_scales_mins(&x.scales, &y.bsums);
        let mut aux32 = [0i32; 8];
        for ((a, q8), sc) in aux8
            .chunks_exact(32)
            .zip(y.qs.chunks_exact(32))
            .zip(&scales)
        {
            lanes16(&mut aux32, a, q8, *sc as i32);
        }
        accumulate_lanes(&mut sums, &aux32, x.d.to_f32() * y.d);
        let dmin = x.dmin.to_f32() * y.d;
        sumf -= dmin * summs as f32;
    }
    sums.iter().fold(sumf, |s, v| s + v)
}

pub(crate) fn q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    let mut sums = [0.0f32; 8];
    for (x, y) in x.iter().zip(y) {
        let mut aux8 = [0i8; 256];
        for ((ql, qh), a) in
            x.ql.chunks_exact(64)
                .zip(x.qh.chunks_exact(32))
                .zip(aux8.chunks_exact_mut(128))
        {
            for (l, h) in qh.iter().enumerate() {
                let q = q6_quad(ql, *h, l);
                for (k, v) in q.iter().enumerate() {
                    if let Some(o) = a.get_mut(l + 32 * k) {
                        *o = *v as i8;
                    }
                }
            }
        }
        let mut aux32 = [0i32; 8];
        for ((a, q8), sc) in aux8
            .chunks_exact(16)
            .zip(y.qs.chunks_exact(16))
            .zip(&x.scales)
        {
            lanes16(&mut aux32, a, q8, *sc as i32);
        }
        accumulate_lanes(&mut sums, &aux32, x.d.to_f32() * y.d);
    }
    sums.iter().fold(0.0f32, |s, v| s + v)
}
