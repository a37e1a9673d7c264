//! The Realizar HTTP server: an OpenAI-compatible (and Ollama-compatible) API over
//! `realizar-runtime`. This is the only crate of the workspace that knows HTTP.
//!
//! - [`Server`] accepts connections (hyper 1, tokio) and routes `/v1/chat/completions`,
//!   `/v1/completions`, `/v1/embeddings`, `/v1/models`, `/tokenize`, `/detokenize`, `/health`,
//!   `/metrics` and Ollama's `/api/generate`, `/api/chat`, `/api/embed`, `/api/tags` to the
//!   served models.
//! - A model is anything that implements [`Engine`]. [`LocalEngine`] serves a GGUF decoder
//!   opened with `realizar_runtime::Model::open` through the runtime's [`Batcher`], which
//!   decodes all active sequences together in one batched forward pass per step on its own OS
//!   thread (continuous batching, chunked prefill, bounded queue); [`LocalEmbedder`] serves a
//!   BERT sentence-embedding directory.
//! - [`testing`] has a tiny deterministic engine for tests and demos.
//!
//! ```
//! use std::sync::Arc;
//! use realizar_server::testing::{ToyConfig, ToyEngine};
//! use realizar_server::{BatcherConfig, Server, ServerConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let server = Server::new(ServerConfig::default());
//!     let (engine, _stats) =
//!         ToyEngine::generator("toy", ToyConfig::default(), BatcherConfig::default())?;
//!     server.handle().add_model(Arc::new(engine));
//!     server.handle().set_ready(true);
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//!     // Serve until the shutdown future completes (here: at once).
//!     server.serve(listener, async {}).await?;
//!     Ok(())
//! })
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
pub mod engine;
mod error;
mod http;
mod local;
mod metrics;
pub mod testing;

/// Entry points for the fuzz targets in `fuzz/` (not a stable API).
#[doc(hidden)]
pub mod fuzzing {
    use crate::api::{self, Fields, Flavor};

    /// Runs `body` through every request parser of the POST routes, as the handlers do
    /// before touching a model: JSON object, chat messages, completion prompt, OpenAI and
    /// Ollama parameters, embedding inputs. Errors are expected; panics are bugs.
    pub fn parse_request(body: &[u8]) {
        let Ok(obj) = api::parse_object(body) else {
            return;
        };
        let f = Fields::new(&obj);
        let _ = api::chat_messages(&f, "messages");
        let _ = api::completion_prompt(&f);
        let _ = api::openai_params(&f, Flavor::Chat);
        let _ = api::openai_params(&f, Flavor::Completion);
        let _ = api::ollama_params(&f);
        let _ = api::embedding_inputs(&f, "input");
    }
}

pub use engine::{
    CancelHandle, ChatMessage, ContentSpecials, Embeddings, Engine, EngineError, EngineLoad,
    FinishReason, GenEvent, GenRequest, GenStream, GenSummary, ModelInfo, ModelKind, TokenInfo,
};
pub use error::{ApiError, ServerError};
pub use http::{shutdown_signal, Server, ServerConfig, ServerHandle, OVERFLOW_CONNECTIONS};
pub use local::{load_engine, LocalEmbedder, LocalEngine, LocalOptions};
pub use metrics::Metrics;
pub use realizar_runtime::batcher::{Batcher, BatcherConfig};
pub use realizar_runtime::SamplerConfig;
