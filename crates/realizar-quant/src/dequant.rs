//! Dequantization of every block type to f32, following the `dequantize_row_*` functions of
//! `ggml/src/ggml-quants.c` operation by operation (so results are bit-identical to ggml's).
//!
//! Callers pass slices whose lengths already agree (`dst.len() == blocks * block_size`).

use half::{bf16, f16};

use crate::blocks::*;
use crate::types::{QK, QK_K};

pub(crate) fn f16s(src: &[f16], dst: &mut [f32]) {
    for (y, x) in dst.iter_mut().zip(src) {
        *y = x.to_f32();
    }
}

pub(crate) fn bf16s(src: &[bf16], dst: &mut [f32]) {
    for (y, x) in dst.iter_mut().zip(src) {
        *y = x.to_f32();
    }
}

pub(crate) fn q4_0(src: &[BlockQ4_0], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let (lo, hi) = y.split_at_mut(QK / 2);
        for ((q, y0), y1) in b.qs.iter().zip(lo).zip(hi) {
            *y0 = ((q & 0x0F) as i32 - 8) as f32 * d;
            *y1 = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

pub(crate) fn q4_1(src: &[BlockQ4_1], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        let (lo, hi) = y.split_at_mut(QK / 2);
        for ((q, y0), y1) in b.qs.iter().zip(lo).zip(hi) {
            *y0 = (q & 0x0F) as f32 * d + m;
            *y1 = (q >> 4) as f32 * d + m;
        }
    }
}

/// The 5-bit quant `j` and `j + 16` of a Q5 block (unsigned, 0..=31).
#[inline(always)]
pub(crate) fn q5_pair(qs: &[u8; QK / 2], qh: u32, j: usize) -> (i32, i32) {
    let q = qs.get(j).copied().unwrap_or(0);
    let h0 = ((qh >> j) << 4) & 0x10;
    let h1 = (qh >> (j + 12)) & 0x10;
    (
        ((q & 0x0F) as u32 | h0) as i32,
        ((q >> 4) as u32 | h1) as i32,
    )
}

pub(crate) fn q5_0(src: &[BlockQ5_0], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let qh = u32::from_le_bytes(b.qh);
        let (lo, hi) = y.split_at_mut(QK / 2);
        for (j, (y0, y1)) in lo.iter_mut().zip(hi).enumerate() {
            let (x0, x1) = q5_pair(&b.qs, qh, j);
            *y0 = (x0 - 16) as f32 * d;
            *y1 = (x1 - 16) as f32 * d;
        }
    }
}

pub(crate) fn q5_1(src: &[BlockQ5_1], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let m = b.m.to_f32();
        let qh = u32::from_le_bytes(b.qh);
        let (lo, hi) = y.split_at_mut(QK / 2);
        for (j, (y0, y1)) in lo.iter_mut().zip(hi).enumerate() {
            let (x0, x1) = q5_pair(&b.qs, qh, j);
            *y0 = x0 as f32 * d + m;
            *y1 = x1 as f32 * d + m;
        }
    }
}

pub(crate) fn q8_0(src: &[BlockQ8_0], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (q, y) in b.qs.iter().zip(y) {
            *y = *q as f32 * d;
        }
    }
}

pub(crate) fn q8_1(src: &[BlockQ8_1], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        for (q, y) in b.qs.iter().zip(y) {
            *y = *q as f32 * d;
        }
    }
}

pub(crate) fn q2_k(src: &[BlockQ2K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        // Output order: for each 128-half n, shift s, the 16 elements of qs[32n..32n+16] then
        // of qs[32n+16..32n+32]; scale index runs 0..16 in the same order.
        let mut out = y.chunks_exact_mut(16);
        let mut scales = b.scales.iter();
        for q in b.qs.chunks_exact(32) {
            for shift in [0u32, 2, 4, 6] {
                for half in q.chunks_exact(16) {
                    let sc = scales.next().copied().unwrap_or(0);
                    let dl = d * (sc & 0xF) as f32;
                    let ml = min * (sc >> 4) as f32;
                    if let Some(o) = out.next() {
                        for (o, q) in o.iter_mut().zip(half) {
                            *o = dl * ((q >> shift) & 3) as f32 - ml;
                        }
                    }
                }
            }
        }
    }
}

/// Unpacks Q3_K's 16 6-bit scales (still offset by 32).
#[inline(always)]
pub(crate) fn q3_k_scales(packed: &[u8; 12]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let word = |i: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&packed[4 * i..4 * i + 4]);
        u32::from_le_bytes(w)
    };
    let (a0, a1, tmp) = (word(0), word(1), word(2));
    let aux = [
        (a0 & KMASK2) | ((tmp & KMASK1) << 4),
        (a1 & KMASK2) | (((tmp >> 2) & KMASK1) << 4),
        ((a0 >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4),
        ((a1 >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4),
    ];
    let mut out = [0i8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(aux) {
        for (o, b) in o.iter_mut().zip(w.to_le_bytes()) {
            *o = b as i8;
        }
    }
    out
}

pub(crate) fn q3_k(src: &[BlockQ3K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d_all = b.d.to_f32();
        let scales = q3_k_scales(&b.scales);
        let mut out = y.chunks_exact_mut(16);
        let mut sc = scales.iter();
        let mut m = 1u8;
        for q in b.qs.chunks_exact(32) {
            for shift in [0u32, 2, 4, 6] {
                for (q, hm) in q.chunks_exact(16).zip(b.hmask.chunks_exact(16)) {
                    let dl = d_all * (sc.next().copied().unwrap_or(0) as i32 - 32) as f32;
                    if let Some(o) = out.next() {
                        for ((o, q), h) in o.iter_mut().zip(q).zip(hm) {
                            let v = ((q >> shift) & 3) as i32 - if h & m != 0 { 0 } else { 4 };
                            *o = dl * v as f32;
                        }
                    }
                }
                m = m.wrapping_shl(1);
            }
        }
    }
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block (`get_scale_min_k4`).
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

pub(crate) fn q4_k(src: &[BlockQ4K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        for (is, (q, y)) in
            b.qs.chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
        {
            let (sc, m) = scale_min_k4(2 * is, &b.scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = scale_min_k4(2 * is + 1, &b.scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let (lo, hi) = y.split_at_mut(32);
            for ((q, y0), y1) in q.iter().zip(lo).zip(hi) {
                *y0 = d1 * (q & 0xF) as f32 - m1;
                *y1 = d2 * (q >> 4) as f32 - m2;
            }
        }
    }
}

pub(crate) fn q5_k(src: &[BlockQ5K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        let min = b.dmin.to_f32();
        for (is, (ql, y)) in
            b.qs.chunks_exact(32)
                .zip(y.chunks_exact_mut(64))
                .enumerate()
        {
            let u1 = 1u8 << (2 * is);
            let u2 = 2u8 << (2 * is);
            let (sc, m) = scale_min_k4(2 * is, &b.scales);
            let (d1, m1) = (d * sc as f32, min * m as f32);
            let (sc, m) = scale_min_k4(2 * is + 1, &b.scales);
            let (d2, m2) = (d * sc as f32, min * m as f32);
            let (lo, hi) = y.split_at_mut(32);
            for (((q, h), y0), y1) in ql.iter().zip(&b.qh).zip(lo).zip(hi) {
                let h0 = if h & u1 != 0 { 16 } else { 0 };
                let h1 = if h & u2 != 0 { 16 } else { 0 };
                *y0 = d1 * ((q & 0xF) + h0) as f32 - m1;
                *y1 = d2 * ((q >> 4) + h1) as f32 - m2;
            }
        }
    }
}

/// The four 6-bit quants (minus 32) at position `l` of a 128-element half of a Q6_K block.
#[inline(always)]
pub(crate) fn q6_quad(ql: &[u8], qh: u8, l: usize) -> [i32; 4] {
    let a = ql.get(l).copied().unwrap_or(0);
    let b = ql.get(l + 32).copied().unwrap_or(0);
    [
        ((a & 0xF) | ((qh & 3) << 4)) as i32 - 32,
        ((b & 0xF) | (((qh >> 2) & 3) << 4)) as i32 - 32,
        ((a >> 4) | (((qh >> 4) & 3) << 4)) as i32 - 32,
        ((b >> 4) | (((qh >> 6) & 3) << 4)) as i32 - 32,
    ]
}

pub(crate) fn q6_k(src: &[BlockQ6K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (((ql, qh), sc), y) in
            b.ql.chunks_exact(64)
                .zip(b.qh.chunks_exact(32))
                .zip(b.scales.chunks_exact(8))
                .zip(y.chunks_exact_mut(128))
        {
            for (l, h) in qh.iter().enumerate() {
                let is = l / 16;
                let q = q6_quad(ql, *h, l);
                for (k, q) in q.iter().enumerate() {
                    let s = sc.get(is + 2 * k).copied().unwrap_or(0) as f32;
                    if let Some(o) = y.get_mut(l + 32 * k) {
                        *o = d * s * *q as f32;
                    }
                }
            }
        }
    }
}

pub(crate) fn q8_k(src: &[BlockQ8K], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        for (q, y) in b.qs.iter().zip(y) {
            *y = b.d * *q as f32;
        }
    }
}

/// The IQ4 table value of nibble `q`, as f32.
#[inline(always)]
fn iq4(q: u8) -> f32 {
    f32::from(
        KVALUES_IQ4NL
            .get(usize::from(q & 0x0F))
            .copied()
            .unwrap_or(0),
    )
}

/// `dequantize_row_iq4_nl`: `d * kvalues_iq4nl[q]`.
pub(crate) fn iq4_nl(src: &[BlockIq4Nl], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = b.d.to_f32();
        let (lo, hi) = y.split_at_mut(QK / 2);
        for ((q, y0), y1) in b.qs.iter().zip(lo).zip(hi) {
            *y0 = d * iq4(q & 0x0F);
            *y1 = d * iq4(q >> 4);
        }
    }
}

/// `dequantize_row_iq4_xs`: per sub-block `dl = d * (scale - 32)`, then `dl * kvalues_iq4nl[q]`.
pub(crate) fn iq4_xs(src: &[BlockIq4Xs], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib, (qs, y)) in
            b.qs.chunks_exact(16)
                .zip(y.chunks_exact_mut(32))
                .enumerate()
        {
            let dl = d * (b.scale(ib) - 32) as f32;
            let (lo, hi) = y.split_at_mut(16);
            for ((q, y0), y1) in qs.iter().zip(lo).zip(hi) {
                *y0 = dl * iq4(q & 0x0F);
                *y1 = dl * iq4(q >> 4);
            }
        }
    }
}

/// `dequantize_row_mxfp4`: `kvalues_mxfp4[q] * e8m0_half(e)`.
pub(crate) fn mxfp4(src: &[BlockMxfp4], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK)) {
        let d = e8m0_half(b.e);
        let (lo, hi) = y.split_at_mut(QK / 2);
        let v = |q: u8| f32::from(KVALUES_MXFP4[usize::from(q & 0x0F)]);
        for ((q, y0), y1) in b.qs.iter().zip(lo).zip(hi) {
            *y0 = v(q & 0x0F) * d;
            *y1 = v(q >> 4) * d;
        }
    }
}

/// `dequantize_row_tq1_0`: `(trit - 1) d` per element ([`BlockTq1_0::at`]).
pub(crate) fn tq1_0(src: &[BlockTq1_0], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (e, v) in y.iter_mut().enumerate() {
            *v = (i16::from(b.at(e)) - 1) as f32 * d;
        }
    }
}

/// `dequantize_row_tq2_0`: `(q - 1) d` per element ([`BlockTq2_0::at`]).
pub(crate) fn tq2_0(src: &[BlockTq2_0], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (e, v) in y.iter_mut().enumerate() {
            *v = (i16::from(b.at(e)) - 1) as f32 * d;
        }
    }
}

/// `dequantize_row_iq3_xxs`: per sub-block `db = d (0.5 + ls) 0.5`, each element
/// `db · magnitude · sign`.
pub(crate) fn iq3_xxs(src: &[BlockIq3Xxs], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let db = d * (0.5 + (b.aux(ib) >> 28) as f32) * 0.5;
            for (j, v) in y.iter_mut().enumerate() {
                let e = 32 * ib + j;
                let sign = if b.negative(e) { -1.0 } else { 1.0 };
                *v = db * f32::from(b.magnitude(e)) * sign;
            }
        }
    }
}

/// `dequantize_row_iq3_s`: per sub-block `db = d (1 + 2 ls)`, each element
/// `db · magnitude · sign`.
pub(crate) fn iq3_s(src: &[BlockIq3S], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let db = d * b.factor(ib, 0) as f32;
            for (j, v) in y.iter_mut().enumerate() {
                let e = 32 * ib + j;
                let sign = if b.negative(e) { -1.0 } else { 1.0 };
                *v = db * f32::from(b.magnitude(e)) * sign;
            }
        }
    }
}

/// `dequantize_row_iq2_xxs`: per sub-block `db = d (0.5 + ls) 0.25`, each element
/// `db · magnitude · sign`.
pub(crate) fn iq2_xxs(src: &[BlockIq2Xxs], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let db = d * (0.5 + (b.aux(ib) >> 28) as f32) * 0.25;
            for (j, v) in y.iter_mut().enumerate() {
                let e = 32 * ib + j;
                let sign = if b.negative(e) { -1.0 } else { 1.0 };
                *v = db * f32::from(b.magnitude(e)) * sign;
            }
        }
    }
}

/// `dequantize_row_iq2_xs` / `dequantize_row_iq2_s`: per half of 16 `db = d (0.5 + ls) 0.25`,
/// each element `db · magnitude · sign`.
fn iq2_halves<X: GridBlock>(src: &[X], dst: &mut [f32], ls: impl Fn(&X, usize, usize) -> u8) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d().to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            for (h, y) in y.chunks_exact_mut(16).enumerate() {
                let db = d * (0.5 + f32::from(ls(b, ib, h))) * 0.25;
                for (j, v) in y.iter_mut().enumerate() {
                    let e = 32 * ib + 16 * h + j;
                    let sign = if b.negative(e) { -1.0 } else { 1.0 };
                    *v = db * f32::from(b.magnitude(e)) * sign;
                }
            }
        }
    }
}

/// `dequantize_row_iq2_xs`.
pub(crate) fn iq2_xs(src: &[BlockIq2Xs], dst: &mut [f32]) {
    iq2_halves(src, dst, |b, ib, h| b.scales[ib] >> (4 * h) & 15);
}

/// `dequantize_row_iq2_s`.
pub(crate) fn iq2_s(src: &[BlockIq2S], dst: &mut [f32]) {
    iq2_halves(src, dst, |b, ib, h| b.scales[ib] >> (4 * h) & 15);
}

/// `dequantize_row_iq1_s`: per sub-block `dl = d (2 ls + 1)`, each element `dl (g ± 1/8)`.
pub(crate) fn iq1_s(src: &[BlockIq1S], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d.to_f32();
        for (ib, y) in y.chunks_exact_mut(32).enumerate() {
            let dl = d * b.factor(ib) as f32;
            let delta = if b.shift_negative(ib) { -0.125 } else { 0.125 };
            for (j, v) in y.iter_mut().enumerate() {
                *v = dl * (f32::from(b.value(32 * ib + j)) + delta);
            }
        }
    }
}

/// `dequantize_row_iq1_m`: per half of 16 `dl = d (2 ls + 1)`, each element `dl (g ± 1/8)`.
pub(crate) fn iq1_m(src: &[BlockIq1M], dst: &mut [f32]) {
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = b.d().to_f32();
        for (e, v) in y.iter_mut().enumerate() {
            let dl = d * b.factor(e / 32, (e % 32) / 16) as f32;
            let delta = if b.shift_negative(e) { -0.125 } else { 0.125 };
            *v = dl * (f32::from(b.value(e)) + delta);
        }
    }
}
