//! Unit tests: hand-made blocks decoded exactly, ggml's round-trip and dot-product error
//! bounds (`tests/test-quantize-fns.cpp`), argument errors, batch invariance.

use super::*;
use crate::blocks::{BlockQ8K, BlockQ8_1};

/// ggml's `generate_data`: `0.1 + 2 cos(i + offset)`.
fn generate_data(offset: f32, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| 0.1 + 2.0 * (i as f32 + offset).cos())
        .collect()
}

/// ggml's `array_rmse`: `sqrt(sum of squared differences) / n`.
fn array_rmse(a: &[f32], b: &[f32]) -> f32 {
    let sum: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    (sum.sqrt() as f32) / a.len() as f32
}

/// `quantize_row`, or for the types it refuses (the grid i-quants) `quantize_row_plain`.
fn quantize(ty: QuantType, x: &[f32]) -> Vec<u8> {
    let mut q = vec![0u8; ty.row_bytes(x.len()).expect("block multiple")];
    if matches!(
        ty,
        QuantType::IQ3_XXS
            | QuantType::IQ3_S
            | QuantType::IQ2_XXS
            | QuantType::IQ2_XS
            | QuantType::IQ2_S
            | QuantType::IQ1_S
            | QuantType::IQ1_M
    ) {
        assert!(
            quantize_row(ty, x, &mut q).is_err(),
            "{ty}: quantize_row refuses it"
        );
        quantize_row_plain(ty, x, &mut q).expect("quantize");
    } else {
        quantize_row(ty, x, &mut q).expect("quantize");
    }
    q
}

fn dequantize(ty: QuantType, q: &[u8], n: usize) -> Vec<f32> {
    let mut y = vec![0f32; n];
    dequantize_row(ty, q, &mut y).expect("dequantize");
    y
}

const WEIGHT_TYPES: [QuantType; 25] = [
    QuantType::F32,
    QuantType::F16,
    QuantType::BF16,
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q5_1,
    QuantType::Q8_0,
    QuantType::Q2_K,
    QuantType::Q3_K,
    QuantType::Q4_K,
    QuantType::Q5_K,
    QuantType::Q6_K,
    QuantType::IQ4_NL,
    QuantType::IQ4_XS,
    QuantType::MXFP4,
    QuantType::TQ1_0,
    QuantType::TQ2_0,
    QuantType::IQ3_XXS,
    QuantType::IQ3_S,
    QuantType::IQ2_XXS,
    QuantType::IQ2_XS,
    QuantType::IQ2_S,
    QuantType::IQ1_S,
    QuantType::IQ1_M,
];

#[test]
fn round_trip_error_within_ggml_bounds() {
    let n = 32 * 128;
    let x = generate_data(0.0, n);
    for ty in QuantType::ALL {
        let y = dequantize(ty, &quantize(ty, &x), n);
        let err = array_rmse(&x, &y);
        let max = match ty {
            QuantType::Q2_K => 0.0075,
            QuantType::Q3_K => 0.0040,
            // Four-bit floats with one power-of-two scale per 32 elements.
            QuantType::MXFP4 => 0.03,
            // test-quantize-fns.cpp's MAX_QUANTIZATION_TOTAL_ERROR_TERNARY.
            QuantType::TQ1_0 | QuantType::TQ2_0 => 0.01,
            // test-quantize-fns.cpp has 0.005 (MAX_QUANTIZATION_TOTAL_ERROR_3BITS_XXS) for
            // ggml's search; the plain encoder of test models is a little coarser.
            QuantType::IQ3_XXS => 0.006,
            // 0.004 in test-quantize-fns.cpp (MAX_QUANTIZATION_TOTAL_ERROR_3BITS) for ggml's
            // search; the plain encoder is coarser.
            QuantType::IQ3_S => 0.006,
            // 0.0070 in test-quantize-fns.cpp (MAX_QUANTIZATION_TOTAL_ERROR_2BITS) for ggml's
            // search with an importance matrix; the plain encoder is coarser.
            QuantType::IQ2_XXS | QuantType::IQ2_XS | QuantType::IQ2_S => 0.012,
            // 0.0075 in test-quantize-fns.cpp for ggml's search with an importance matrix;
            // ternary values per element here.
            QuantType::IQ1_S | QuantType::IQ1_M => 0.02,
            _ => 0.002,
        };
        assert!(err <= max, "{ty}: round-trip error {err} > {max}");
        // And a bound on the worst element: half a quantization step of the coarsest type
        // that applies (amplitude ~2.1, 4 bits → step ~0.28; 2 bits with mins → ~1.4).
        let worst = x
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let step = match ty {
            QuantType::Q2_K => 1.5,
            QuantType::Q3_K => 0.7,
            QuantType::Q4_0 | QuantType::Q4_1 | QuantType::Q4_K => 0.3,
            // Non-linear 4-bit: the widest gap of the table is 24/127 of the block's range.
            QuantType::IQ4_NL | QuantType::IQ4_XS => 0.3,
            // E2M1's top step (8 → 12, doubled) at the block's scale: half of it.
            QuantType::MXFP4 => 0.55,
            // Ternary: half the step `d = amax` of the block.
            QuantType::TQ1_0 | QuantType::TQ2_0 => 1.1,
            // Signs go by eight with even parity: one element of a group may take the wrong
            // sign (twice its magnitude, up to the data's 2.1).
            QuantType::IQ3_XXS | QuantType::IQ2_XXS | QuantType::IQ2_XS => 4.2,
            // A grid of 1024 of the 6561 combinations of three magnitudes: an element may get
            // the next magnitude (8 → 25 → 43) instead of its own, up to 35/43 of the half's
            // largest (2.1 here).
            QuantType::IQ2_S => 1.7,
            // Ternary with a shift: up to a step of the sub-block's scale (~its largest).
            QuantType::IQ1_S | QuantType::IQ1_M => 2.2,
            // Four magnitudes at a time from a grid of 512 of the 4096 combinations.
            QuantType::IQ3_S => 0.5,
            QuantType::Q5_0 | QuantType::Q5_1 | QuantType::Q5_K => 0.15,
            QuantType::Q6_K => 0.07,
            QuantType::F32 => 0.0,
            _ => 0.03,
        };
        assert!(worst <= step, "{ty}: worst element error {worst} > {step}");
    }
}

#[test]
fn dot_error_within_ggml_bounds() {
    let n = 32 * 128;
    let x = generate_data(0.0, n);
    let a = generate_data(1.0, n);
    let exact: f64 = x
        .iter()
        .zip(&a)
        .map(|(p, q)| (*p as f64) * (*q as f64))
        .sum();
    for ty in WEIGHT_TYPES {
        let w = quantize(ty, &x);
        let act = quantize(ty.vec_dot_type(), &a);
        for (which, got) in [
            ("simd", vec_dot(ty, n, &w, &act).expect("dot")),
            ("scalar", vec_dot_scalar(ty, n, &w, &act).expect("dot")),
        ] {
            let err = ((got as f64 - exact).abs() / n as f64) as f32;
            let max = match ty {
                QuantType::Q2_K | QuantType::Q3_K => 0.04,
                // test-quantize-fns.cpp's MAX_DOT_PRODUCT_ERROR_TERNARY.
                QuantType::TQ1_0 | QuantType::TQ2_0 => 0.15,
                // test-quantize-fns.cpp has 0.04 (MAX_DOT_PRODUCT_ERROR_LOWBIT) for ggml's
                // search; the plain encoder of test models is coarser.
                QuantType::IQ3_XXS | QuantType::IQ3_S => 0.06,
                QuantType::IQ2_XXS | QuantType::IQ2_XS | QuantType::IQ2_S => 0.15,
                QuantType::IQ1_S | QuantType::IQ1_M => 0.3,
                _ => 0.02,
            };
            assert!(err <= max, "{ty} {which}: dot error {err} > {max}");
        }
    }
}

/// The fused dot equals the f64 dot of the dequantized rows, up to float rounding (and the
/// f16 rounding of Q8_1's `s`).
#[test]
fn fused_dot_matches_dequantized_dot() {
    let n = 512;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919) % 113) as f32 / 50.0 - 1.1)
        .collect();
    let a: Vec<f32> = (0..n)
        .map(|i| ((i * 104_729) % 89) as f32 / 40.0 - 1.0)
        .collect();
    for ty in WEIGHT_TYPES {
        let w = quantize(ty, &x);
        let act = quantize(ty.vec_dot_type(), &a);
        let wd = dequantize(ty, &w, n);
        let ad = dequantize(ty.vec_dot_type(), &act, n);
        let exact: f64 = wd.iter().zip(&ad).map(|(p, q)| *p as f64 * *q as f64).sum();
        let mag: f64 = wd
            .iter()
            .zip(&ad)
            .map(|(p, q)| (*p as f64 * *q as f64).abs())
            .sum();
        for got in [
            vec_dot(ty, n, &w, &act).expect("dot"),
            vec_dot_scalar(ty, n, &w, &act).expect("dot"),
        ] {
            let tol = if ty.vec_dot_type() == QuantType::Q8_1 {
                1e-3 * mag
            } else {
                1e-5 * mag
            };
            assert!(
                (got as f64 - exact).abs() <= tol,
                "{ty}: fused {got} vs dequantized {exact} (tol {tol})"
            );
        }
    }
}

/// Hand-written blocks, decoded by formulas written independently of the decoder.
#[test]
fn hand_made_q4_0_block() {
    let mut b = vec![0x00, 0x38]; // d = 0.5
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = dequantize(QuantType::Q4_0, &b, 32);
    for j in 0..16 {
        assert_eq!(y[j], (j as f32 - 8.0) * 0.5);
        assert_eq!(y[j + 16], (7.0 - j as f32) * 0.5);
    }
}

/// Ternary blocks from chosen codes, packed by ggml's layout written out here (TQ1_0: five
/// trits per byte, first most significant, the base-3 number scaled by `ceil(256 q / 243)`;
/// TQ2_0: four two-bit codes per byte): each element decodes to `(code - 1) d`, and the
/// reference quantizer gives the same bytes back from the decoded values.
#[test]
fn hand_made_ternary_blocks() {
    let code = |e: usize| ((e * 7 + e / 5) % 3) as u8;
    let pack = |digits: &[u8]| {
        let q = digits.iter().fold(0u16, |q, &t| q * 3 + u16::from(t));
        ((q * 256).div_ceil(243)) as u8
    };
    let mut tq1 = Vec::new();
    for m in 0..32 {
        tq1.push(pack(&(0..5).map(|n| code(32 * n + m)).collect::<Vec<_>>()));
    }
    for m in 0..16 {
        tq1.push(pack(
            &(0..5).map(|n| code(160 + 16 * n + m)).collect::<Vec<_>>(),
        ));
    }
    for j in 0..4 {
        let mut d: Vec<u8> = (0..4).map(|n| code(240 + 4 * n + j)).collect();
        d.push(0);
        tq1.push(pack(&d));
    }
    tq1.extend([0x00, 0x40]); // d = 2
    let mut tq2: Vec<u8> = (0..64)
        .map(|i| {
            let (h, m) = (i / 32, i % 32);
            (0..4).fold(0u8, |b, l| b | code(128 * h + 32 * l + m) << (2 * l))
        })
        .collect();
    tq2.extend([0x00, 0x40]);
    for (ty, bytes) in [(QuantType::TQ1_0, tq1), (QuantType::TQ2_0, tq2)] {
        let y = dequantize(ty, &bytes, 256);
        for (e, v) in y.iter().enumerate() {
            assert_eq!(*v, (f32::from(code(e)) - 1.0) * 2.0, "{ty} element {e}");
        }
        assert_eq!(quantize(ty, &y), bytes, "{ty}: quantized back");
    }
}

#[test]
fn hand_made_q4_1_block() {
    let mut b = vec![0x00, 0x34, 0x00, 0xBC]; // d = 0.25, m = -1
    b.extend((0..16u8).map(|j| j | ((15 - j) << 4)));
    let y = dequantize(QuantType::Q4_1, &b, 32);
    for j in 0..16 {
        assert_eq!(y[j], j as f32 * 0.25 - 1.0);
        assert_eq!(y[j + 16], (15 - j) as f32 * 0.25 - 1.0);
    }
}

#[test]
fn hand_made_q5_0_and_q5_1_blocks() {
    // d = 1; fifth bits of elements 0 and 31; qs[0] = 0x21.
    let mut b = vec![0x00, 0x3C, 0x01, 0x00, 0x00, 0x80, 0x21];
    b.extend([0u8; 15]);
    let y = dequantize(QuantType::Q5_0, &b, 32);
    let mut want = [-16.0f32; 32];
    want[0] = 1.0; // 0b1_0001 - 16
    want[16] = -14.0; // 2 - 16
    want[31] = 0.0; // 0b1_0000 - 16
    assert_eq!(y, want);

    let mut b1 = vec![0x00, 0x3C, 0x00, 0x40]; // d = 1, m = 2
    b1.extend(&b[2..]);
    let y = dequantize(QuantType::Q5_1, &b1, 32);
    let want: Vec<f32> = want.iter().map(|v| v + 16.0 + 2.0).collect();
    assert_eq!(y, want);
}

#[test]
fn hand_made_q8_0_block() {
    let mut b = vec![0x00, 0x40]; // d = 2
    b.extend((0..32i32).map(|i| (i - 16) as i8 as u8));
    let y = dequantize(QuantType::Q8_0, &b, 32);
    for (i, v) in y.iter().enumerate() {
        assert_eq!(*v, 2.0 * (i as f32 - 16.0));
    }
}

#[test]
fn hand_made_q4_k_block() {
    let mut b = vec![0x00, 0x3C, 0x00, 0x38]; // d = 1, dmin = 0.5
    b.extend([1, 2, 3, 4 | 0x40, 5, 6, 7, 8 | 0xC0, 0x21, 0x43, 0x65, 0x87]);
    b.extend((0..128u32).map(|i| ((i % 16) | ((15 - i % 16) << 4)) as u8));
    // (scale, min) of the 8 sub-blocks, decoded by hand from the 12 bytes above.
    let sm = [
        (1, 5),
        (2, 6),
        (3, 7),
        (4, 8),
        (1, 2),
        (3, 4),
        (5, 6),
        (23, 56),
    ];
    let y = dequantize(QuantType::Q4_K, &b, 256);
    for (e, v) in y.iter().enumerate() {
        let (chunk, p) = (e / 64, e % 64);
        let byte = (32 * chunk + p % 32) as u32 % 16;
        let (q, sub) = if p < 32 {
            (byte, 2 * chunk)
        } else {
            (15 - byte, 2 * chunk + 1)
        };
        let (sc, m) = sm[sub];
        assert_eq!(
            *v,
            1.0 * sc as f32 * q as f32 - 0.5 * m as f32,
            "element {e}"
        );
    }
}

#[test]
fn hand_made_q6_k_block() {
    let mut b: Vec<u8> = (0..128u32).map(|i| i as u8).collect();
    b.extend((0..64u32).map(|i| (i * 37) as u8));
    b.extend((0..16i32).map(|i| (i - 8) as i8 as u8));
    b.extend([0x00, 0x38]); // d = 0.5
    let y = dequantize(QuantType::Q6_K, &b, 256);
    for (e, v) in y.iter().enumerate() {
        let (n, p) = (e / 128, e % 128);
        let (k, l) = (p / 32, p % 32);
        let ql = b[64 * n + l + if k % 2 == 1 { 32 } else { 0 }];
        let low = if k < 2 { ql & 0xF } else { ql >> 4 };
        let high = (b[128 + 32 * n + l] >> (2 * k)) & 3;
        let q = (low | (high << 4)) as i32 - 32;
        let sc = b[192 + 8 * n + l / 16 + 2 * k] as i8;
        assert_eq!(*v, 0.5 * sc as f32 * q as f32, "element {e}");
    }
}

#[test]
fn hand_made_q8_k_block() {
    let mut b = 0.25f32.to_le_bytes().to_vec();
    b.extend((0..256i32).map(|i| (i - 128) as i8 as u8));
    b.extend([0u8; 32]);
    let y = dequantize(QuantType::Q8_K, &b, 256);
    for (i, v) in y.iter().enumerate() {
        assert_eq!(*v, 0.25 * (i as f32 - 128.0));
    }
}

#[test]
fn q8_k_bsums_and_scale() {
    let x = generate_data(0.3, 512);
    let q = quantize(QuantType::Q8_K, &x);
    let blocks: &[BlockQ8K] = blocks::blocks(QuantType::Q8_K, &q).expect("aligned");
    for (b, xs) in blocks.iter().zip(x.chunks(256)) {
        for (s, qs) in b.bsums.iter().zip(b.qs.chunks(16)) {
            assert_eq!(*s as i32, qs.iter().map(|v| *v as i32).sum::<i32>());
        }
        let amax = xs.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!((b.d.abs() - amax / 127.0).abs() <= 1e-6 * amax);
        assert_eq!(b.qs.iter().map(|v| v.unsigned_abs()).max(), Some(127));
    }
}

#[test]
fn q8_1_stores_scaled_sum() {
    let x = generate_data(0.7, 64);
    let q = quantize(QuantType::Q8_1, &x);
    let blocks: &[BlockQ8_1] = blocks::blocks(QuantType::Q8_1, &q).expect("aligned");
    for (b, xs) in blocks.iter().zip(x.chunks(32)) {
        // ggml stores `s` from the unrounded f32 scale `amax / 127`.
        let d = xs.iter().fold(0.0f32, |m, v| m.max(v.abs())) / 127.0;
        let sum: i32 = b.qs.iter().map(|v| *v as i32).sum();
        assert_eq!(b.s, f16::from_f32(sum as f32 * d));
        assert_eq!(b.d, f16::from_f32(d));
    }
}

#[test]
fn all_zero_rows_quantize_to_zero() {
    let x = vec![0.0f32; 256];
    for ty in QuantType::ALL {
        let y = dequantize(ty, &quantize(ty, &x), 256);
        assert!(y.iter().all(|v| *v == 0.0), "{ty}");
    }
}

#[test]
fn matmul_and_matvec_are_bit_identical_to_vec_dot() {
    let n = 512;
    let rows = 11;
    let m = 13;
    for ty in WEIGHT_TYPES {
        let w: Vec<u8> = (0..rows)
            .flat_map(|r| quantize(ty, &generate_data(r as f32 * 0.37, n)))
            .collect();
        let vt = ty.vec_dot_type();
        let act: Vec<u8> = (0..m)
            .flat_map(|i| quantize(vt, &generate_data(100.0 + i as f32, n)))
            .collect();
        let (wr, ar) = (ty.row_bytes(n).unwrap_or(0), vt.row_bytes(n).unwrap_or(0));
        let stride = rows + 3;
        let mut out = vec![f32::NAN; m * stride];
        matmul(ty, n, &w, 2..rows, &act, m, &mut out, stride).expect("matmul");
        for i in 0..m {
            let a = &act[i * ar..(i + 1) * ar];
            let mut mv = vec![0.0f32; rows - 2];
            matvec(ty, n, &w, 2..rows, a, &mut mv).expect("matvec");
            for r in 2..rows {
                let d = vec_dot(ty, n, &w[r * wr..(r + 1) * wr], a).expect("dot");
                assert_eq!(
                    out[i * stride + r - 2].to_bits(),
                    d.to_bits(),
                    "{ty} {i} {r}"
                );
                assert_eq!(mv[r - 2].to_bits(), d.to_bits(), "{ty} {i} {r}");
            }
        }
    }
}

/// Regression: blocks per row were once derived from the rows *asked for* over the rows the
/// buffer holds, so a range ending before the last row read the wrong bytes.
#[test]
fn matvec_on_leading_rows_of_a_larger_matrix() {
    let n = 256;
    for ty in WEIGHT_TYPES {
        let w: Vec<u8> = (0..6)
            .flat_map(|r| quantize(ty, &generate_data(r as f32, n)))
            .collect();
        let act = quantize(ty.vec_dot_type(), &generate_data(9.0, n));
        let wr = ty.row_bytes(n).unwrap_or(0);
        let mut out = [0.0f32; 2];
        matvec(ty, n, &w, 1..3, &act, &mut out).expect("matvec");
        for (k, o) in out.iter().enumerate() {
            let r = k + 1;
            let d = vec_dot(ty, n, &w[r * wr..(r + 1) * wr], &act).expect("dot");
            assert_eq!(o.to_bits(), d.to_bits(), "{ty} row {r}");
        }
    }
}

#[test]
fn bad_arguments_are_errors() {
    let n = 64;
    let x = generate_data(0.0, n);
    let w = quantize(QuantType::Q4_0, &x);
    let a = quantize(QuantType::Q8_0, &x);
    assert!(matches!(
        vec_dot(QuantType::Q4_0, 63, &w, &a),
        Err(QuantError::NotBlockMultiple { n: 63, .. })
    ));
    assert!(matches!(
        vec_dot(QuantType::Q4_0, n, &w[..35], &a),
        Err(QuantError::RowsOutOfRange { n_rows: 0, .. })
    ));
    assert!(matches!(
        vec_dot(QuantType::Q4_0, n, &w, &a[..67]),
        Err(QuantError::WrongLength { what: "act", .. })
    ));
    assert!(matches!(
        vec_dot(QuantType::Q8_K, 256, &[0; 292], &[0; 292]),
        Err(QuantError::Unsupported { .. })
    ));
    let mut out = [0.0f32; 2];
    assert!(matches!(
        matvec(QuantType::Q4_0, n, &w, 0..2, &a, &mut out),
        Err(QuantError::RowsOutOfRange { n_rows: 1, .. })
    ));
    assert!(matches!(
        matvec(QuantType::Q4_0, n, &w, 0..1, &a, &mut out),
        Err(QuantError::WrongLength { what: "out", .. })
    ));
    assert!(matches!(
        matmul(QuantType::Q4_0, n, &w, 0..1, &a, 2, &mut out, 1),
        Err(QuantError::WrongLength { what: "act", .. })
    ));
    let mut y = vec![0.0f32; 64];
    assert!(matches!(
        dequantize_row(QuantType::Q4_K, &[0; 144], &mut y),
        Err(QuantError::NotBlockMultiple { .. })
    ));
    assert!(matches!(
        dequantize_row(QuantType::Q4_0, &w[..30], &mut y),
        Err(QuantError::WrongLength { what: "src", .. })
    ));
    let mut q = vec![0u8; 10];
    assert!(matches!(
        quantize_row(QuantType::Q8_0, &x, &mut q),
        Err(QuantError::WrongLength { what: "dst", .. })
    ));
    // Misaligned: a Q8_K block needs 4-byte alignment.
    let buf = vec![0u8; 293];
    let mut y = vec![0.0f32; 256];
    assert!(matches!(
        dequantize_row(QuantType::Q8_K, &buf[1..], &mut y),
        Err(QuantError::Misaligned { align: 4, .. })
    ));
    let shown = QuantError::NotBlockMultiple {
        ty: QuantType::Q4_K,
        n: 640,
    }
    .to_string();
    assert!(shown.contains("640") && shown.contains("q4_K"));
}

/// Pseudo-random inputs for the property tests.
fn lcg(seed: u64) -> impl Iterator<Item = f32> {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    core::iter::from_fn(move || {
        s = s
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        Some(((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0)
    })
}

/// Quantizing a dequantized row again gives back the same bytes for the simple formats whose
/// grid is closed under the round trip, and ggml's quantizers never panic on odd inputs.
#[test]
fn quantizers_survive_odd_inputs() {
    let specials = [
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        65504.0,
        1e10,
        -1e10,
        f32::MIN_POSITIVE,
        f32::INFINITY,
        f32::NAN,
    ];
    for ty in QuantType::ALL {
        for (k, s) in specials.iter().enumerate() {
            let mut x: Vec<f32> = lcg(k as u64).take(256).collect();
            x[k * 7] = *s;
            let q = quantize(ty, &x);
            let _ = dequantize(ty, &q, 256);
        }
    }
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Rows of 1–8 blocks of 32 values in ±100 whose blocks are not all tiny (so the f16 scales
    /// stay normal numbers).
    fn rows() -> impl Strategy<Value = Vec<f32>> {
        (1usize..=8)
            .prop_flat_map(|nb| prop::collection::vec(-100.0f32..100.0, nb * 32))
            .prop_filter("every block has a value of magnitude >= 0.01", |x| {
                x.chunks(32).all(|b| b.iter().any(|v| v.abs() >= 0.01))
            })
    }

    /// The worst error per block that ggml's rounding allows for each legacy format, from its
    /// scale rule: half a step (a whole step where the top code is clamped), plus the f16
    /// rounding of the stored scale and minimum.
    fn bound(ty: QuantType, block: &[f32]) -> f32 {
        let amax = block.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let (min, max) = block
            .iter()
            .fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let f16_rel = 1.0 / 1024.0;
        match ty {
            QuantType::Q8_0 | QuantType::Q8_1 => amax / 127.0 * (0.5 + 127.0 * f16_rel),
            QuantType::Q4_0 => amax / 8.0 * (1.0 + 8.0 * f16_rel),
            QuantType::Q5_0 => amax / 16.0 * (1.0 + 16.0 * f16_rel),
            QuantType::Q4_1 => (max - min) / 15.0 * (0.5 + 15.0 * f16_rel) + min.abs() * f16_rel,
            QuantType::Q5_1 => (max - min) / 31.0 * (0.5 + 31.0 * f16_rel) + min.abs() * f16_rel,
            _ => f32::INFINITY,
        }
    }

    proptest! {
        #[test]
        fn legacy_round_trips_stay_within_one_step(x in rows()) {
            for ty in [
                QuantType::Q4_0,
                QuantType::Q4_1,
                QuantType::Q5_0,
                QuantType::Q5_1,
                QuantType::Q8_0,
                QuantType::Q8_1,
            ] {
                let q = quantize(ty, &x);
                let y = dequantize(ty, &q, x.len());
                for (b, (xs, ys)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
                    let lim = bound(ty, xs) * 1.001 + 1e-6;
                    for (a, c) in xs.iter().zip(ys) {
                        prop_assert!((a - c).abs() <= lim, "{ty} block {b}: {a} -> {c} (bound {lim})");
                    }
                }
                // Quantizing the decoded row again is a fixed point (ggml's rounding is
                // stable). Not for Q8_1: its `s` comes from the unrounded f32 scale, which the
                // decoded row no longer carries.
                if ty != QuantType::Q8_1 {
                    prop_assert_eq!(quantize(ty, &y), q.clone(), "{} requantization", ty);
                }
            }
        }

        #[test]
        fn activation_quantizers_agree_with_scalar(x in rows()) {
            for ty in [QuantType::Q8_0, QuantType::Q8_1] {
                let mut a = vec![0u8; ty.row_bytes(x.len()).unwrap_or(0)];
                let mut b = a.clone();
                quantize_row(ty, &x, &mut a).expect("simd");
                quantize_row_scalar(ty, &x, &mut b).expect("scalar");
                prop_assert_eq!(a, b);
            }
        }
    }
}

/// Row `r` of `w` times `a` through [`matmul`] unless it is Q4_K (the per-row order).
fn matmul_row(ty: QuantType, n: usize, w: &[u8], r: usize, a: &[u8]) -> f32 {
    let mut o = [0.0f32];
    matmul(ty, n, w, r..r + 1, a, 1, &mut o, 1).expect("matmul");
    o[0]
}

/// `matmul_prompt` and its scalar twin agree bit for bit on random data, for every weight type
/// and batch size; each row takes the kernel ggml would run: for Q4_K with a row count that is
/// a multiple of 8 (repacked by ggml), rows in whole groups of four from the first one take
/// the gemm order (`dot::q4_k_q8_k_grouped`); for Q6_K, Q5_K, Q3_K and IQ4_XS in a pass of eight or
/// more rows, the tiled order (`dot::*_tiled`); every other row is exactly `vec_dot`.
#[test]
fn matmul_prompt_twins_and_llama_cpp_split() {
    let n = 768;
    let mut rng = lcg(2024);
    let mut noise = |len: usize, scale: f32| -> Vec<f32> {
        rng.by_ref().take(len).map(|v| v * scale).collect()
    };
    let (mut grouped_differs, mut tiled_differs) = (false, false);
    let (mut tiled_differs_q5, mut tiled_differs_iq4) = (false, false);
    let (mut tiled_differs_q3, mut tiled_differs_iq3) = (false, false);
    let mut q2_differs = false;
    // 16 weight rows: ggml repacks Q4_K; 9: it does not.
    for rows in [16usize, 9] {
        for ty in WEIGHT_TYPES {
            let vt = ty.vec_dot_type();
            let w: Vec<u8> = (0..rows)
                .flat_map(|r| quantize(ty, &noise(n, 0.05 + r as f32)))
                .collect();
            let (wr, ar) = (ty.row_bytes(n).unwrap_or(0), vt.row_bytes(n).unwrap_or(0));
            for m in 1..=12 {
                let act: Vec<u8> = (0..m)
                    .flat_map(|i| quantize(vt, &noise(n, 0.5 + 3.0 * i as f32)))
                    .collect();
                let stride = rows + 2;
                let mut best = vec![f32::NAN; m * stride];
                let mut scalar = vec![f32::NAN; m * stride];
                matmul_prompt(ty, n, &w, 1..rows, &act, m, m, &mut best, stride).expect("prompt");
                matmul_prompt_scalar(ty, n, &w, 1..rows, &act, m, m, &mut scalar, stride)
                    .expect("prompt scalar");
                for i in 0..m {
                    let a = &act[i * ar..(i + 1) * ar];
                    for r in 1..rows {
                        let (b, s) = (best[i * stride + r - 1], scalar[i * stride + r - 1]);
                        // The float kernels' SIMD twins agree to a tolerance only (simd/tests.rs).
                        let float = matches!(ty, QuantType::F32 | QuantType::F16 | QuantType::BF16);
                        if !float {
                            assert_eq!(b.to_bits(), s.to_bits(), "{ty} m={m} row {i} weight {r}");
                        }
                        let wrow = &w[r * wr..(r + 1) * wr];
                        let per_row = vec_dot_scalar(ty, n, wrow, a).expect("dot");
                        let special = match ty {
                            QuantType::Q4_K if rows % 8 == 0 && i < m - m % 4 => {
                                let xs: &[crate::blocks::BlockQ4K] = bytemuck::cast_slice(wrow);
                                let g = crate::dot::q4_k_q8_k_grouped(xs, bytemuck::cast_slice(a));
                                grouped_differs |= g.to_bits() != per_row.to_bits();
                                Some(g)
                            }
                            QuantType::Q2_K => {
                                use crate::dot::{
                                    q2_k_q8_k, q2_k_q8_k_repacked, q2_k_q8_k_repacked_grouped,
                                    q2_k_q8_k_tiled,
                                };
                                let xs: &[crate::blocks::BlockQ2K] = bytemuck::cast_slice(wrow);
                                let f = if crate::simd::has_avx512f() && rows % 8 == 0 {
                                    if i < m - m % 4 {
                                        q2_k_q8_k_repacked_grouped
                                    } else {
                                        q2_k_q8_k_repacked
                                    }
                                } else if m >= TILED_MIN_ROWS {
                                    q2_k_q8_k_tiled
                                } else {
                                    q2_k_q8_k
                                };
                                let t = f(xs, bytemuck::cast_slice(a));
                                q2_differs |= t.to_bits() != per_row.to_bits();
                                Some(t)
                            }
                            QuantType::Q6_K if m >= TILED_MIN_ROWS => {
                                let xs: &[crate::blocks::BlockQ6K] = bytemuck::cast_slice(wrow);
                                let t = crate::dot::q6_k_q8_k_tiled(xs, bytemuck::cast_slice(a));
                                tiled_differs |= t.to_bits() != per_row.to_bits();
                                Some(t)
                            }
                            QuantType::Q5_K if m >= TILED_MIN_ROWS => {
                                let xs: &[crate::blocks::BlockQ5K] = bytemuck::cast_slice(wrow);
                                let t = crate::dot::q5_k_q8_k_tiled(xs, bytemuck::cast_slice(a));
                                tiled_differs_q5 |= t.to_bits() != per_row.to_bits();
                                Some(t)
                            }
                            QuantType::Q3_K if m >= TILED_MIN_ROWS => {
                                let xs: &[crate::blocks::BlockQ3K] = bytemuck::cast_slice(wrow);
                                let t = crate::dot::q3_k_q8_k_tiled(xs, bytemuck::cast_slice(a));
                                tiled_differs_q3 |= t.to_bits() != per_row.to_bits();
                                Some(t)
                            }
                            QuantType::IQ4_XS if m >= TILED_MIN_ROWS => {
                                let xs: &[crate::blocks::BlockIq4Xs] = bytemuck::cast_slice(wrow);
                                let t = crate::dot::iq4_xs_q8_k_tiled(xs, bytemuck::cast_slice(a));
                                tiled_differs_iq4 |= t.to_bits() != per_row.to_bits();
                                Some(t)
                            }
                            QuantType::IQ3_XXS if m >= TILED_MIN_ROWS => {
                                let xs: &[crate::blocks::BlockIq3Xxs] = bytemuck::cast_slice(wrow);
                                let t = crate::dot::iq3_xxs_q8_k_tiled(xs, bytemuck::cast_slice(a));
                                tiled_differs_iq3 |= t.to_bits() != per_row.to_bits();
                                Some(t)
                            }
                            QuantType::IQ2_XXS if m >= TILED_MIN_ROWS => {
                                let xs: &[crate::blocks::BlockIq2Xxs] = bytemuck::cast_slice(wrow);
                                let t = crate::dot::iq2_xxs_q8_k_tiled(xs, bytemuck::cast_slice(a));
                                tiled_differs_iq3 |= t.to_bits() != per_row.to_bits();
                                Some(t)
                            }
                            QuantType::IQ1_M if m >= TILED_MIN_ROWS => {
                                let xs: &[crate::blocks::BlockIq1M] = bytemuck::cast_slice(wrow);
                                let t = crate::dot::iq1_m_q8_k_tiled(xs, bytemuck::cast_slice(a));
                                tiled_differs_iq3 |= t.to_bits() != per_row.to_bits();
                                Some(t)
                            }
                            QuantType::IQ1_S if m >= TILED_MIN_ROWS => {
                                let xs: &[crate::blocks::BlockIq1S] = bytemuck::cast_slice(wrow);
                                let t = crate::dot::iq1_s_q8_k_tiled(xs, bytemuck::cast_slice(a));
                                tiled_differs_iq3 |= t.to_bits() != per_row.to_bits();
                                Some(t)
                            }
                            QuantType::IQ2_XS if m >= TILED_MIN_ROWS => {
                                let xs: &[crate::blocks::BlockIq2Xs] = bytemuck::cast_slice(wrow);
                                let t = crate::dot::iq2_xs_q8_k_tiled(xs, bytemuck::cast_slice(a));
                                tiled_differs_iq3 |= t.to_bits() != per_row.to_bits();
                                Some(t)
                            }
                            QuantType::IQ2_S if m >= TILED_MIN_ROWS => {
                                let xs: &[crate::blocks::BlockIq2S] = bytemuck::cast_slice(wrow);
                                let t = crate::dot::iq2_s_q8_k_tiled(xs, bytemuck::cast_slice(a));
                                tiled_differs_iq3 |= t.to_bits() != per_row.to_bits();
                                Some(t)
                            }
                            QuantType::IQ3_S if m >= TILED_MIN_ROWS => {
                                let xs: &[crate::blocks::BlockIq3S] = bytemuck::cast_slice(wrow);
                                let t = crate::dot::iq3_s_q8_k_tiled(xs, bytemuck::cast_slice(a));
                                tiled_differs_iq3 |= t.to_bits() != per_row.to_bits();
                                Some(t)
                            }
                            _ => None,
                        };
                        if let Some(want) = special {
                            assert_eq!(s.to_bits(), want.to_bits(), "{ty} m={m} row {i} w {r}");
                        } else {
                            assert_eq!(s.to_bits(), per_row.to_bits(), "{ty} m={m} row {i} w {r}");
                            let best_row = matmul_row(ty, n, &w, r, a);
                            assert_eq!(b.to_bits(), best_row.to_bits(), "{ty} m={m} row {i} w {r}");
                        }
                    }
                }
            }
        }
    }
    // The orders are different float computations; random data must show it.
    assert!(
        grouped_differs,
        "the grouped Q4_K order never differed from the per-row one"
    );
    assert!(
        tiled_differs,
        "the tiled Q6_K order never differed from the per-row one"
    );
    assert!(
        tiled_differs_q5 && tiled_differs_iq4 && tiled_differs_q3 && tiled_differs_iq3,
        "the tiled Q5_K / IQ4_XS / Q3_K / IQ3_XXS orders never differed from the per-row ones"
    );
    assert!(
        q2_differs,
        "the tiled or repacked Q2_K orders never differed from the per-row one"
    );
}

/// A random weight row of `ty` and a Q8_K activation row (`n` elements, seeded), and their
/// dequantized product in f64: what every float order of the pair must come close to.
fn random_product(ty: QuantType, n: usize, seed: u64) -> (Vec<u8>, Vec<u8>, f64) {
    let mut rng = lcg(seed);
    let x: Vec<f32> = rng.by_ref().take(n).collect();
    let y: Vec<f32> = rng.by_ref().take(n).map(|v| 4.0 * v).collect();
    let (wq, aq) = (quantize(ty, &x), quantize(QuantType::Q8_K, &y));
    let (xd, yd) = (dequantize(ty, &wq, n), dequantize(QuantType::Q8_K, &aq, n));
    let exact: f64 = xd.iter().zip(&yd).map(|(a, b)| *a as f64 * *b as f64).sum();
    (wq, aq, exact)
}

/// Q2_K's orders for ggml's repacked and tiled kernels are the same dot product as its
/// per-row one: each close to the dequantized f64 product.
#[test]
fn q2_k_orders_match_dequantized_dot() {
    use crate::blocks::{BlockQ2K, BlockQ8K};
    let n = 1024;
    let (wq, aq, exact) = random_product(QuantType::Q2_K, n, 79);
    let (xs, ys): (&[BlockQ2K], &[BlockQ8K]) =
        (bytemuck::cast_slice(&wq), bytemuck::cast_slice(&aq));
    for f in [
        crate::dot::q2_k_q8_k,
        crate::dot::q2_k_q8_k_repacked,
        crate::dot::q2_k_q8_k_repacked_grouped,
        crate::dot::q2_k_q8_k_tiled,
    ] {
        let o = f(xs, ys);
        assert!(
            ((o as f64) - exact).abs() <= 1e-5 * exact.abs().max(1.0),
            "{o} vs {exact}"
        );
    }
}

/// The tiled Q6_K order is the same dot product: close to the dequantized f64 product.
#[test]
fn q6_k_tiled_dot_matches_dequantized_dot() {
    let n = 1024;
    let (wq, aq, exact) = random_product(QuantType::Q6_K, n, 78);
    let m = TILED_MIN_ROWS;
    let mut out = vec![0.0f32; m];
    let act: Vec<u8> = aq.iter().copied().cycle().take(m * aq.len()).collect();
    matmul_prompt(QuantType::Q6_K, n, &wq, 0..1, &act, m, m, &mut out, 1).expect("prompt");
    for o in out {
        assert!(
            ((o as f64) - exact).abs() <= 1e-5 * exact.abs().max(1.0),
            "{o} vs {exact}"
        );
    }
}

/// The grouped Q4_K order is the same dot product: close to the dequantized f64 product.
#[test]
fn q4_k_grouped_dot_matches_dequantized_dot() {
    let n = 1024;
    let (wq, aq, exact) = random_product(QuantType::Q4_K, n, 77);
    let mut out = [0.0f32; 4];
    let act: Vec<u8> = aq.iter().copied().cycle().take(4 * aq.len()).collect();
    // Eight weight rows, so that the matrix is one ggml repacks.
    let w8: Vec<u8> = wq.iter().copied().cycle().take(8 * wq.len()).collect();
    matmul_prompt(QuantType::Q4_K, n, &w8, 0..1, &act, 4, 4, &mut out, 1).expect("prompt");
    for o in out {
        assert!(
            ((o as f64) - exact).abs() <= 1e-5 * exact.abs().max(1.0),
            "{o} vs {exact}"
        );
    }
}
