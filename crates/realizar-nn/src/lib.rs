//! Transformer layers and model architectures (llama, gemma3, bert) for Realizar.
//!
//! The layers run on f32 activations over quantized weights from `realizar-quant`; the compute
//! backend trait lives here so that other backends (CUDA) can implement it.
//!
//! A [`Decoder`] is built from a parsed GGUF file and the bytes it was parsed from (normally a
//! memory map shared through an `Arc`); its weights stay in those bytes. [`Decoder::forward`]
//! runs a batch of tokens against a [`KvCache`] and returns logits.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod arch;
pub mod backend;
pub mod bert;
mod decoder;
mod error;
pub mod kv;
pub mod layers;
pub mod reference;

pub use backend::{
    ActScratch, AttentionShape, Backend, CpuBackend, Order, QTensor, Queries, Rows, Spread,
};
pub use decoder::{
    Activation, Decoder, DecoderConfig, LayerSpec, Logits, Scratch, Segment, WeightBytes,
};
pub use error::NnError;
pub use kv::{KvCache, KvType};
pub use reference::ReferenceBackend;
