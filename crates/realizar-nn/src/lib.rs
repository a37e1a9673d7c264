//! Transformer layers and model architectures (llama, gemma3, bert) for Realizar.
//!
//! The layers run on f32 activations over quantized weights from `realizar-quant`; the compute
//! backend trait lives here so that other backends (CUDA) can implement it.
//!
//! A [`Decoder`] is built from a [`ModelSource`] (metadata and named tensors in a shared byte
//! store, normally a memory map; the runtime adapts GGUF files to it); its weights stay in
//! those bytes. This crate reads no file format. [`Decoder::forward`]
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
pub mod source;

pub use backend::{
    ActScratch, AttentionShape, Backend, CpuBackend, EncoderSeq, KvLayout, Order, QTensor, Queries,
    Rows, Spread, Weight,
};
pub use decoder::{
    Activation, AttnTemp, Decoder, DecoderConfig, LayerSpec, Logits, Scratch, Segment, WeightBytes,
};
pub use error::NnError;
pub use kv::{KvCache, KvState, KvType};
pub use reference::ReferenceBackend;
pub use source::{ModelSource, SourceError, TensorEntry};
