//! The Realizar runtime: model loading (mmap), KV cache, sampling, generation and embeddings.
#![forbid(unsafe_code)]

pub mod batch;
pub mod bench;
pub mod embed;
mod error;
pub mod generate;
pub mod model;
pub mod models;
pub mod sampling;
pub mod threads;
pub mod tokenizer_load;

pub use error::RuntimeError;
pub use generate::{generate, perplexity, score, GenerateConfig, Generation, StopReason, Timings};
pub use model::{DecoderModel, LoadOptions, Session, SpecialTokens};
pub use realizar_nn::{KvType, Logits};
pub use sampling::{Sampler, SamplerConfig};
