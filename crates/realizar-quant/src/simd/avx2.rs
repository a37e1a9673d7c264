//! AVX2 + FMA kernels (x86_64). Placeholder wrappers until the vector bodies land.
use crate::blocks::*;
use crate::{dot, quant};

pub(crate) fn q4_0_q8_0(x: &[BlockQ4_0], y: &[BlockQ8_0]) -> f32 {
    dot::q4_0_q8_0(x, y)
}
pub(crate) fn q4_1_q8_1(x: &[BlockQ4_1], y: &[BlockQ8_1]) -> f32 {
    dot::q4_1_q8_1(x, y)
}
pub(crate) fn q5_0_q8_0(x: &[BlockQ5_0], y: &[BlockQ8_0]) -> f32 {
    dot::q5_0_q8_0(x, y)
}
pub(crate) fn q8_0_q8_0(x: &[BlockQ8_0], y: &[BlockQ8_0]) -> f32 {
    dot::q8_0_q8_0(x, y)
}
pub(crate) fn q4_k_q8_k(x: &[BlockQ4K], y: &[BlockQ8K]) -> f32 {
    dot::q4_k_q8_k(x, y)
}
pub(crate) fn q6_k_q8_k(x: &[BlockQ6K], y: &[BlockQ8K]) -> f32 {
    dot::q6_k_q8_k(x, y)
}
pub(crate) fn quantize_q8_0(s: &[f32], d: &mut [BlockQ8_0]) {
    quant::q8_0(s, d)
}
pub(crate) fn quantize_q8_1(s: &[f32], d: &mut [BlockQ8_1]) {
    quant::q8_1(s, d)
}
pub(crate) fn quantize_q8_k(s: &[f32], d: &mut [BlockQ8K]) {
    quant::q8_k(s, d)
}
