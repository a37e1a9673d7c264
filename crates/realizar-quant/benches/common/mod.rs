//! Shared bench inputs: random quant bytes with sane f16 scales, and quantized activations.
#![allow(dead_code)]

use realizar_quant::{quantize_row, QuantType};

/// The weight types with SIMD kernels.
pub const TYPES: [QuantType; 7] = [
    QuantType::IQ4_NL,
    QuantType::Q4_0,
    QuantType::Q4_1,
    QuantType::Q5_0,
    QuantType::Q8_0,
    QuantType::Q4_K,
    QuantType::Q6_K,
];

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (s >> 56) as u8
        })
        .collect()
}

/// `rows` weight rows of `n` elements: random quants, f16 scale fields set to small values.
pub fn weights(ty: QuantType, n: usize, rows: usize) -> Vec<u8> {
    let row = ty.row_bytes(n).expect("block multiple");
    let mut w = bytes(row * rows, 1);
    let fields: &[usize] = match ty {
        QuantType::Q4_0 | QuantType::Q5_0 | QuantType::Q8_0 | QuantType::IQ4_NL => &[0],
        QuantType::Q4_1 | QuantType::Q4_K => &[0, 2],
        QuantType::Q6_K => &[208],
        _ => &[],
    };
    let scale = half::f16::from_f32(0.01).to_le_bytes();
    for block in w.chunks_exact_mut(ty.type_size()) {
        for &off in fields {
            block[off..off + 2].copy_from_slice(&scale);
        }
    }
    w
}

/// A smooth activation row quantized to `ty.vec_dot_type()`.
pub fn activation(ty: QuantType, n: usize, seed: usize) -> Vec<u8> {
    let x: Vec<f32> = (0..n).map(|i| ((i + seed) as f32 * 0.37).sin()).collect();
    let vt = ty.vec_dot_type();
    let mut a = vec![0u8; vt.row_bytes(n).expect("block multiple")];
    quantize_row(vt, &x, &mut a).expect("quantize");
    a
}
