//! ggml block formats for Realizar: dequantization, quantization and fused dot products.
//!
//! This crate will hold the block layouts of GGUF's quantized types (Q4_0 … Q8_K), their
//! reference quantizers and dequantizers, and SIMD dot-product kernels with scalar twins.
#![forbid(unsafe_code)]
