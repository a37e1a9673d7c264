//! The Realizar runtime: opening a model ([`Model::open`]), sessions, sampling, generation,
//! continuous batching and embeddings.
#![forbid(unsafe_code)]

pub mod batch;
pub mod batcher;
pub mod bench;
pub mod constrain;
pub mod embed;
mod error;
pub mod generate;
pub mod gguf_source;
pub mod hf_dir;
pub mod hf_source;
pub mod model;
pub mod models;
pub mod reasoning;
pub mod reply;
pub mod sampling;
pub mod threads;
pub mod tokenizer_load;
pub mod tools;

pub use error::RuntimeError;
pub use generate::{generate, perplexity, score, GenerateConfig, Generation, StopReason, Timings};
pub use model::{
    BackendKind, ChatFeatures, ChatPrompt, ContentSpecials, DecoderModel, LoadOptions, Model,
    Network, Session, SpecialTokens, TemplateChoice,
};
pub use realizar_nn::{KvType, Logits};
pub use realizar_tokenize::{ChatMessage, TextStep, TextStream};
pub use sampling::{Sampler, SamplerConfig, SamplerError, SamplerParam};
