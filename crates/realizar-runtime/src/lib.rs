//! The Realizar runtime: model loading (mmap), KV cache, sampling, generation and embeddings.
#![forbid(unsafe_code)]

pub mod embed;
