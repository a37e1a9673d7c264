//! Transformer layers and model architectures (llama, gemma3, bert) for Realizar.
//!
//! The layers run on f32 activations over quantized weights from `realizar-quant`; the compute
//! backend trait lives here so that other backends (CUDA) can implement it.
#![forbid(unsafe_code)]

pub mod bert;
