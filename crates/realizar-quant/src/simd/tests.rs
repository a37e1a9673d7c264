//! Each SIMD kernel against its scalar twin on seeded random data of many sizes: the integer
//! partial sums must be exact (bit-identical results where every float step is exact), and
//! general results agree to a tight relative tolerance. Activation quantizers must be
//! byte-identical.

use half::f16;

use crate::{
    dequantize_row, quantize_row, quantize_row_scalar, vec_dot, vec_dot_scalar, QuantType,
};

/// A small deterministic generator (PCG-style LCG), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }
    fn byte(&mut self) -> u8 {
        self.next_u32() as u8
    }
    /// Uniform in `[-1, 1)`.
    fn unit(&mut self) -> f32 {
        (self.next_u32() as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
    }
    fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next_u32() % (hi - lo + 1) as u32) as i32
    }
}

/// Byte offsets of the f16 fields of a weight block, and whether the block has an f16 `m`.
fn f16_fields(ty: QuantType) -> &'static [usize] {
    match ty {
        QuantType::Q4_0 | QuantType::Q5_0 | QuantType::Q8_0 => &[0],
        QuantType::Q4_1 => &[0, 2],
        QuantType::Q4_K => &[0, 2],
        QuantType::Q6_K => &[208],
        QuantType::Q2_K => &[80, 82],
        QuantType::Q3_K => &[108],
        _ => &[],
    }
}

const SIMD_TYPES: [QuantType; 8] = [
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q8_0,
    QuantType::Q4_K,
    QuantType::Q6_K,
    QuantType::Q2_K,
    QuantType::Q3_K,
];

/// Random weight blocks: every quant byte random (all bit patterns), the f16 scales set with
/// `scale(rng)`.
fn weights(
    ty: QuantType,
    n: usize,
    rng: &mut Rng,
    scale: &mut dyn FnMut(&mut Rng) -> f32,
) -> Vec<u8> {
    let bytes = ty.row_bytes(n).unwrap_or(0);
    let mut w: Vec<u8> = (0..bytes).map(|_| rng.byte()).collect();
    for block in w.chunks_exact_mut(ty.type_size()) {
        for &off in f16_fields(ty) {
            let v = f16::from_f32(scale(rng)).to_le_bytes();
            block[off..off + 2].copy_from_slice(&v);
        }
        if ty == QuantType::Q6_K {
            // Keep the int8 scales moderate so exact cases stay below 2^24.
            for b in &mut block[192..208] {
                *b = rng.range(-20, 20) as i8 as u8;
            }
        }
    }
    w
}

/// Sum of |w_i a_i| over the dequantized rows: the scale of a dot product's rounding error.
fn magnitude(ty: QuantType, n: usize, w: &[u8], a: &[u8]) -> f64 {
    let mut wd = vec![0f32; n];
    let mut ad = vec![0f32; n];
    dequantize_row(ty, w, &mut wd).expect("dequantize w");
    dequantize_row(ty.vec_dot_type(), a, &mut ad).expect("dequantize a");
    wd.iter()
        .zip(&ad)
        .map(|(x, y)| (*x as f64 * *y as f64).abs())
        .sum()
}

#[test]
fn dot_kernels_match_scalar_twins_on_random_data() {
    let mut rng = Rng(0x5eed);
    for ty in SIMD_TYPES {
        let bs = ty.block_size();
        let max_blocks = if bs == 256 { 12 } else { 70 };
        for blocks in 1..=max_blocks {
            let n = blocks * bs;
            for _ in 0..3 {
                let w = weights(ty, n, &mut rng, &mut |r| r.unit() * 0.05);
                let x: Vec<f32> = (0..n).map(|_| rng.unit() * 3.0).collect();
                let vt = ty.vec_dot_type();
                let mut a = vec![0u8; vt.row_bytes(n).unwrap_or(0)];
                quantize_row_scalar(vt, &x, &mut a).expect("quantize");
                let fast = vec_dot(ty, n, &w, &a).expect("simd");
                let slow = vec_dot_scalar(ty, n, &w, &a).expect("scalar");
                // Both follow ggml's x86 kernel float op by float op: bit-identical.
                assert_eq!(
                    fast.to_bits(),
                    slow.to_bits(),
                    "{ty} n={n}: simd {fast} vs scalar {slow}"
                );
            }
        }
    }
}

/// The wide kernels (several weight rows per activation row, several activation rows per
/// weight row; AVX-512 where the CPU has it) on random rows and scales, through `matvec` and
/// `matmul`: every output bit-identical to the scalar twin on its (weight row, activation row)
/// pair, whatever the number of rows and where the row groups fall.
#[test]
fn wide_kernels_match_scalar_twins_on_random_data() {
    let mut rng = Rng(0x51de);
    for ty in SIMD_TYPES {
        let bs = ty.block_size();
        let vt = ty.vec_dot_type();
        let sizes: &[usize] = if bs == 256 {
            &[1, 2, 5]
        } else {
            &[1, 2, 3, 18, 48]
        };
        for &blocks in sizes {
            let n = blocks * bs;
            let (wr, ar) = (ty.row_bytes(n).unwrap_or(0), vt.row_bytes(n).unwrap_or(0));
            // 13: eight rows, four rows, one left over; 19: eight, eight, three left over;
            // 10 and 11 weight rows from row 1: whole and odd pairs of weight rows. 2 to 8
            // activation rows: every tile width, 4 to 8 weight rows: every group of one to
            // four. 80 rows of 48 blocks: more packed tiles than one chunk holds.
            let shapes: &[(usize, usize)] = if blocks == 48 {
                &[
                    (11, 13),
                    (12, 19),
                    (9, 2),
                    (7, 5),
                    (6, 8),
                    (5, 3),
                    (8, 7),
                    (6, 80),
                ]
            } else {
                &[(11, 13), (12, 19), (9, 2), (7, 5), (6, 8), (5, 3), (8, 7)]
            };
            for &(rows, m) in shapes {
                let w: Vec<u8> = (0..rows)
                    .flat_map(|_| weights(ty, n, &mut rng, &mut |r| r.unit() * 0.05))
                    .collect();
                let mut act = vec![0u8; m * ar];
                for a in act.chunks_exact_mut(ar) {
                    let x: Vec<f32> = (0..n).map(|_| rng.unit() * 3.0).collect();
                    quantize_row_scalar(vt, &x, a).expect("quantize");
                }
                let mut out = vec![0.0f32; m * rows];
                crate::matmul(ty, n, &w, 1..rows, &act, m, &mut out, rows).expect("matmul");
                // Packed once: the same bits.
                let mut pk = crate::PackedActs::new();
                if pk.pack(ty, n, &act, m).expect("pack") {
                    let mut again = vec![0.0f32; m * rows];
                    crate::matmul_packed(ty, n, &w, 1..rows, &pk, &mut again, rows)
                        .expect("matmul_packed");
                    for (k, (a, b)) in out.iter().zip(&again).enumerate() {
                        assert_eq!(a.to_bits(), b.to_bits(), "{ty} n={n} packed {k}");
                    }
                    // Packed for another width: an error, not a wrong answer.
                    let wrong =
                        crate::matmul_packed(ty, n + bs, &w, 1..rows, &pk, &mut again, rows);
                    assert!(
                        wrong.is_err(),
                        "{ty}: packed rows of another width were accepted"
                    );
                }
                for (i, a) in act.chunks_exact(ar).enumerate() {
                    let mut mv = vec![0.0f32; rows - 1];
                    crate::matvec(ty, n, &w, 1..rows, a, &mut mv).expect("matvec");
                    for r in 1..rows {
                        let row = &w[r * wr..(r + 1) * wr];
                        // A Q2_K matrix ggml repacks takes the repacked gemv's order.
                        let want =
                            if ty == QuantType::Q2_K && rows % 8 == 0 && crate::simd::has_avx512f()
                            {
                                crate::dot::q2_k_q8_k_repacked(
                                    bytemuck::cast_slice(row),
                                    bytemuck::cast_slice(a),
                                )
                            } else {
                                vec_dot_scalar(ty, n, row, a).expect("dot")
                            };
                        let (mm, v) = (out[i * rows + r - 1], mv[r - 1]);
                        assert_eq!(mm.to_bits(), want.to_bits(), "{ty} n={n} matmul {i} {r}");
                        assert_eq!(v.to_bits(), want.to_bits(), "{ty} n={n} matvec {i} {r}");
                    }
                }
            }
        }
    }
}

/// With unit scales every float operation is exact, so any difference would come from the
/// integer sums: the results must be bit-identical, for any quant bytes (including -128 in
/// Q8 blocks and every nibble pattern).
#[test]
fn dot_kernel_integer_sums_are_exact() {
    let mut rng = Rng(42);
    for ty in SIMD_TYPES {
        let bs = ty.block_size();
        let max_blocks = if bs == 256 { 3 } else { 40 };
        for blocks in 1..=max_blocks {
            let n = blocks * bs;
            for _ in 0..4 {
                let w = weights(ty, n, &mut rng, &mut |_| 1.0);
                let vt = ty.vec_dot_type();
                let mut a = vec![0u8; vt.row_bytes(n).unwrap_or(0)];
                match vt {
                    QuantType::Q8_K => {
                        for blk in a.chunks_exact_mut(292) {
                            blk[..4].copy_from_slice(&1.0f32.to_le_bytes());
                            let mut qs = [0i8; 256];
                            for q in &mut qs {
                                *q = rng.range(-8, 8) as i8;
                            }
                            for (b, q) in blk[4..260].iter_mut().zip(&qs) {
                                *b = *q as u8;
                            }
                            for (j, s) in blk[260..].chunks_exact_mut(2).enumerate() {
                                let sum: i16 =
                                    qs[16 * j..16 * j + 16].iter().map(|q| *q as i16).sum();
                                s.copy_from_slice(&sum.to_le_bytes());
                            }
                        }
                    }
                    _ => {
                        let bsz = vt.type_size();
                        for blk in a.chunks_exact_mut(bsz) {
                            for b in blk.iter_mut() {
                                *b = rng.byte();
                            }
                            blk[..2].copy_from_slice(&f16::from_f32(1.0).to_le_bytes());
                            if vt == QuantType::Q8_1 {
                                let s = f16::from_f32(rng.range(-64, 64) as f32);
                                blk[2..4].copy_from_slice(&s.to_le_bytes());
                            }
                        }
                    }
                }
                let fast = vec_dot(ty, n, &w, &a).expect("simd");
                let slow = vec_dot_scalar(ty, n, &w, &a).expect("scalar");
                assert_eq!(
                    fast.to_bits(),
                    slow.to_bits(),
                    "{ty} n={n}: {fast} vs {slow}"
                );
            }
        }
    }
}

#[test]
fn activation_quantizers_match_scalar_twins() {
    let mut rng = Rng(7);
    for ty in [QuantType::Q8_0, QuantType::Q8_1, QuantType::Q8_K] {
        let bs = ty.block_size();
        for blocks in 1..=20 {
            let n = blocks * bs;
            for scale in [1e-6f32, 0.01, 1.0, 37.0, 1e4] {
                let mut x: Vec<f32> = (0..n).map(|_| rng.unit() * scale).collect();
                // Some all-zero blocks and some exact rounding ties.
                if blocks % 3 == 0 {
                    x[..bs].iter_mut().for_each(|v| *v = 0.0);
                }
                if blocks % 4 == 1 {
                    // amax 127 → d = 1 (Q8_0/Q8_1), and max -127 → iscale 1 (Q8_K): exact ties.
                    let blk = &mut x[..bs];
                    for (i, v) in blk.iter_mut().enumerate() {
                        *v = (i % 50) as f32 - 24.5;
                    }
                    blk[bs - 1] = -127.0;
                }
                let mut fast = vec![0u8; ty.row_bytes(n).unwrap_or(0)];
                let mut slow = fast.clone();
                quantize_row(ty, &x, &mut fast).expect("simd");
                quantize_row_scalar(ty, &x, &mut slow).expect("scalar");
                assert!(
                    fast == slow,
                    "{ty} n={n} scale={scale}: quantized bytes differ"
                );
            }
        }
    }
}

/// Ties round half to even in Q8_0 (`_mm256_round_ps` of ggml's x86 activation quantizer) and
/// in Q8_K (`nearest_int`), in both implementations.
#[test]
fn q8_rounding_of_ties() {
    let mut x = vec![0.0f32; 256];
    x[0] = -127.0;
    x[1] = 2.5;
    x[2] = -2.5;
    x[3] = 3.5;
    for quant in [quantize_row, quantize_row_scalar] {
        let mut q = vec![0u8; 34 * 8];
        quant(QuantType::Q8_0, &x, &mut q).expect("q8_0");
        // amax = 127 → id = 1: 2.5 → 2, -2.5 → -2, 3.5 → 4.
        assert_eq!(&q[2..6], &[(-127i8) as u8, 2, (-2i8) as u8, 4]);
        let mut k = vec![0u8; 292];
        quant(QuantType::Q8_K, &x, &mut k).expect("q8_k");
        // max = -127 → iscale = 1: 2.5 → 2, -2.5 → -2, 3.5 → 4 (ties to even).
        assert_eq!(&k[4..8], &[(-127i8) as u8, 2, (-2i8) as u8, 4]);
    }
}

#[test]
fn float_dot_kernels_match_scalar_twins() {
    let mut rng = Rng(11);
    for ty in [QuantType::F32, QuantType::F16, QuantType::BF16] {
        for n in 1..=300 {
            let x: Vec<f32> = (0..n).map(|_| rng.unit() * 4.0).collect();
            let y: Vec<f32> = (0..n).map(|_| rng.unit() * 4.0).collect();
            let (mut w, mut a) = (
                vec![0u8; ty.row_bytes(n).unwrap_or(0)],
                vec![0u8; ty.row_bytes(n).unwrap_or(0)],
            );
            quantize_row(ty, &x, &mut w).expect("w");
            quantize_row(ty, &y, &mut a).expect("a");
            let fast = vec_dot(ty, n, &w, &a).expect("simd");
            let slow = vec_dot_scalar(ty, n, &w, &a).expect("scalar");
            let mag = magnitude(ty, n, &w, &a);
            assert!(
                ((fast - slow) as f64).abs() <= 2e-6 * mag + 1e-30,
                "{ty} n={n}: simd {fast} vs scalar {slow} (mag {mag})"
            );
            // Small integers: every step is exact, so the results must be identical.
            let xi: Vec<f32> = (0..n).map(|_| rng.range(-8, 8) as f32).collect();
            let yi: Vec<f32> = (0..n).map(|_| rng.range(-8, 8) as f32).collect();
            quantize_row(ty, &xi, &mut w).expect("w");
            quantize_row(ty, &yi, &mut a).expect("a");
            let fast = vec_dot(ty, n, &w, &a).expect("simd");
            let slow = vec_dot_scalar(ty, n, &w, &a).expect("scalar");
            assert_eq!(fast.to_bits(), slow.to_bits(), "{ty} n={n}");
        }
    }
}

/// Regression: the Q4_1 SIMD kernel once summed `d_x d_y sumi` and `m_x s_y` in separate
/// accumulators. In real activations the two nearly cancel in every block (terms ~1500, result
/// ~1.4), so the separate sums lost digits and SmolLM2's logits drifted from llama.cpp's
/// (cosine 0.997). The kernel now keeps the reference's per-block order: bit-identical.
#[test]
fn q4_1_min_terms_are_combined_per_block() {
    let mut rng = Rng(3);
    for blocks in [1usize, 2, 17, 18, 48, 63] {
        let n = blocks * 32;
        // Weights like a real Q4_1 row: a negative minimum offsetting the unsigned quants.
        let x: Vec<f32> = (0..n).map(|_| rng.unit() * 0.4).collect();
        // Activations with a large common offset and an outlier, as RMS-normed hidden states.
        let a: Vec<f32> = (0..n)
            .map(|i| 3.0 + rng.unit() + if i % 29 == 5 { 80.0 } else { 0.0 })
            .collect();
        let w = {
            let mut w = vec![0u8; QuantType::Q4_1.row_bytes(n).unwrap_or(0)];
            quantize_row(QuantType::Q4_1, &x, &mut w).expect("w");
            w
        };
        let mut q = vec![0u8; QuantType::Q8_1.row_bytes(n).unwrap_or(0)];
        quantize_row(QuantType::Q8_1, &a, &mut q).expect("a");
        let fast = vec_dot(QuantType::Q4_1, n, &w, &q).expect("simd");
        let slow = vec_dot_scalar(QuantType::Q4_1, n, &w, &q).expect("scalar");
        assert_eq!(fast.to_bits(), slow.to_bits(), "n={n}: {fast} vs {slow}");
    }
}

/// The vectorized maximum equals a one-by-one `if v > max` scan, NaN and infinities included.
#[test]
fn max_f32_is_the_scan() {
    use crate::vecops;
    let mut rng = Rng(0x3a8);
    for n in [0usize, 1, 15, 16, 17, 100, 1000] {
        let x: Vec<f32> = (0..n)
            .map(|i| match i % 13 {
                0 => f32::NAN,
                5 => f32::NEG_INFINITY,
                _ => rng.unit() * 8.0,
            })
            .collect();
        let scan = x
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
        assert_eq!(vecops::max_f32(&x).to_bits(), scan.to_bits(), "n={n}");
    }
    assert_eq!(vecops::max_f32(&[f32::NAN, f32::NAN]), f32::NEG_INFINITY);
}

/// ggml's softmax sum against its scalar twin, bit for bit: rows from every offset in a group,
/// shorter and longer than one and sixteen groups.
#[test]
fn softmax_group_sums_match_scalar_twin() {
    use crate::vecops;
    let mut rng = Rng(0x50f7);
    for n in [0usize, 1, 15, 16, 17, 255, 256, 257, 300, 1000] {
        let x: Vec<f32> = (0..n).map(|_| rng.unit().abs() * 1e-2).collect();
        for lo in [0usize, 1, 7, 15, 16, 33] {
            let (f, s) = (
                vecops::sum_groups16(&x, lo),
                vecops::sum_groups16_scalar(&x, lo),
            );
            assert_eq!(f.to_bits(), s.to_bits(), "n={n} lo={lo}");
        }
    }
}

/// The batched attention kernels against their scalar twins, bit for bit: every row length
/// with a wide kernel (and one without), whole and partial groups of sixteen keys, both
/// summation orders; weighted sums of value rows in both orders from several first positions
/// (whole and partial groups of lanes).
#[test]
fn batched_f16_attention_kernels_match_scalar_twins() {
    use crate::vecops;
    let mut rng = Rng(0xa77e);
    let halfs = |n: usize, scale: f32, rng: &mut Rng| -> Vec<f16> {
        (0..n).map(|_| f16::from_f32(rng.unit() * scale)).collect()
    };
    for hd in [64usize, 128, 256, 80] {
        for n in [1usize, 15, 16, 17, 40] {
            let x = halfs(hd, 2.0, &mut rng);
            let rows = halfs(hd * n, 2.0, &mut rng);
            for vecdot in [true, false] {
                let (mut fast, mut slow) = (vec![0f32; n], vec![0f32; n]);
                vecops::f16_dots_folded(&x, &rows, vecdot, &mut fast);
                vecops::f16_dots_folded_scalar(&x, &rows, vecdot, &mut slow);
                // Prefetching the value rows (here as long as the keys) changes nothing.
                let mut then = vec![0f32; n];
                vecops::f16_dots_folded_then(&x, &rows, &rows, vecdot, &mut then);
                assert_eq!(then, fast);
                for (r, (f, s)) in fast.iter().zip(&slow).enumerate() {
                    assert_eq!(
                        f.to_bits(),
                        s.to_bits(),
                        "dots hd={hd} n={n} {vecdot} row {r}"
                    );
                }
            }
        }
        for vecdot in [true, false] {
            for (n, first) in [
                (1usize, 0usize),
                (30, 5),
                (150, 70),
                (200, 0),
                (64, 64),
                (17, 9),
                (300, 3),
                (700, 64),
            ] {
                let p: Vec<f32> = halfs(n, 1.0, &mut rng).iter().map(|h| h.to_f32()).collect();
                let v = halfs(n * hd, 3.0, &mut rng);
                let (mut fast, mut slow) = (vec![f32::NAN; hd], vec![f32::NAN; hd]);
                vecops::f16_weighted_sum(&p, &v, hd, first, vecdot, &mut fast);
                vecops::f16_weighted_sum_scalar(&p, &v, hd, first, vecdot, &mut slow);
                for (k, (f, s)) in fast.iter().zip(&slow).enumerate() {
                    assert_eq!(
                        f.to_bits(),
                        s.to_bits(),
                        "sum hd={hd} {vecdot} n={n} {first} {k}"
                    );
                }
            }
        }
    }
}

/// The weighted sum of value rows is, column by column, the f16 dot product of the
/// probabilities with that column (ggml multiplies the transposed values with them): from
/// position 0 over whole steps, [`crate::vecops::f16_weighted_sum_scalar`] equals
/// [`crate::vecops::f16_dot_folded_scalar`] of each column, in both orders.
#[test]
fn weighted_sum_is_the_dot_product_of_each_column() {
    use crate::vecops;
    let mut rng = Rng(0x5eed);
    let (hd, n) = (24usize, 192usize);
    let p: Vec<f16> = (0..n).map(|_| f16::from_f32(rng.unit())).collect();
    let v: Vec<f16> = (0..n * hd)
        .map(|_| f16::from_f32(rng.unit() * 50.0))
        .collect();
    let pf: Vec<f32> = p.iter().map(|h| h.to_f32()).collect();
    for vecdot in [true, false] {
        let mut out = vec![0f32; hd];
        vecops::f16_weighted_sum_scalar(&pf, &v, hd, 0, vecdot, &mut out);
        for (d, o) in out.iter().enumerate() {
            let column: Vec<f16> = (0..n).map(|i| v[i * hd + d]).collect();
            let want = vecops::f16_dot_folded_scalar(&p, &column, vecdot) as f32;
            assert_eq!(o.to_bits(), want.to_bits(), "{vecdot} column {d}");
        }
    }
}

/// The FMA-compiled rotation is its scalar twin, bit for bit, in both pair layouts.
#[test]
fn rope_rotation_matches_scalar_twin() {
    use crate::vecops;
    let mut rng = Rng(0x2073);
    for (hd, n_dims) in [(64usize, 64usize), (256, 256), (128, 64)] {
        let cache: Vec<f32> = (0..n_dims).map(|_| rng.unit()).collect();
        for neox in [false, true] {
            let x: Vec<f32> = (0..hd).map(|_| rng.unit() * 10.0).collect();
            let (mut fast, mut slow) = (x.clone(), x);
            vecops::rope_rotate(&mut fast, &cache, n_dims, neox);
            vecops::rope_rotate_scalar(&mut slow, &cache, n_dims, neox);
            let same = fast
                .iter()
                .zip(&slow)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "hd={hd} n_dims={n_dims} neox={neox}");
        }
    }
}
