//! What the HTTP layer needs from a model: the [`Engine`] trait and the types it speaks.
//!
//! The HTTP handlers know nothing about tensors or threads: they tokenize, render chat
//! templates, submit generation requests (receiving a [`GenStream`] of events) and ask for
//! embeddings through this trait. [`crate::LocalEngine`] implements it over `realizar-runtime`;
//! tests implement it with tiny deterministic models.

use core::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use realizar_runtime::batcher::{BatchError, BatchLoad, EventSink};
pub use realizar_runtime::batcher::{
    CancelHandle, FinishReason, GenEvent, GenRequest, GenSummary, TokenInfo, TopToken,
};
use tokio::sync::mpsc;

pub use realizar_runtime::tools::ToolFormat;
pub use realizar_runtime::ContentSpecials;
pub use realizar_runtime::{ChatFeatures, ChatPrompt};
pub use realizar_tokenize::{ChatContext, ChatMessage, ChatToolCall};

/// What a model can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// A decoder that generates text (chat and completions).
    Generate,
    /// An encoder that produces embeddings.
    Embed,
}

/// The description of a served model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInfo {
    /// The name clients put in the `model` field.
    pub id: String,
    /// What it does.
    pub kind: ModelKind,
    /// Positions of one sequence (generation) or the longest input (embeddings).
    pub ctx: usize,
    /// Size of the model file(s) in bytes (0 when not known).
    pub size_bytes: u64,
    /// Whether it has a chat template.
    pub has_chat_template: bool,
    /// Tokens of its vocabulary (0 when not known).
    pub n_vocab: usize,
    /// The most bytes of input text one token can stand for (0 when not known): a text of
    /// `n` bytes has at least `n / max_token_bytes` tokens, so an over-long input is refused
    /// before it is tokenized.
    pub max_token_bytes: usize,
}

/// The events of one generation. Dropping it cancels the generation.
#[derive(Debug)]
pub struct GenStream {
    rx: mpsc::UnboundedReceiver<GenEvent>,
    cancel: CancelHandle,
}

/// The sending half of a [`GenStream`], held by the engine.
#[derive(Debug)]
pub struct GenSender {
    tx: mpsc::UnboundedSender<GenEvent>,
    cancel: CancelHandle,
}

/// A connected sender and stream.
pub fn gen_channel() -> (GenSender, GenStream) {
    let (tx, rx) = mpsc::unbounded_channel();
    let cancel = CancelHandle::new();
    (
        GenSender {
            tx,
            cancel: cancel.clone(),
        },
        GenStream { rx, cancel },
    )
}

impl EventSink for GenSender {
    fn send(&self, ev: GenEvent) -> bool {
        self.tx.send(ev).is_ok()
    }

    fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled() || self.tx.is_closed()
    }
}

impl GenStream {
    /// The next event (`None` after the last one, or if the engine dropped the sender).
    pub async fn next(&mut self) -> Option<GenEvent> {
        self.rx.recv().await
    }

    /// Polls for the next event.
    pub fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GenEvent>> {
        self.get_mut().rx.poll_recv(cx)
    }

    /// The handle that cancels this generation.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }
}

impl Drop for GenStream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Embeddings of a batch of inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// One vector per input, in order.
    pub vectors: Vec<Vec<f32>>,
    /// Tokens of all inputs together.
    pub prompt_tokens: usize,
}

/// How busy an engine is.
pub type EngineLoad = BatchLoad;

/// Why an engine refused or failed a request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineError {
    /// The model cannot do this (embeddings from a decoder, chat without a template).
    Unsupported {
        /// The model.
        model: String,
        /// The operation.
        what: &'static str,
    },
    /// The input does not fit in the context.
    ContextExceeded {
        /// Tokens of the input.
        tokens: usize,
        /// Tokens the context holds.
        ctx: usize,
        /// Tokens asked to generate in addition (0 when not relevant).
        max_tokens: usize,
    },
    /// A request argument is invalid.
    InvalidInput {
        /// The field.
        param: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Every slot is busy and the wait queue is full.
    QueueFull {
        /// Requests already waiting.
        queued: usize,
    },
    /// The engine is shutting down or its worker died.
    Unavailable,
    /// The model cannot serve any more (its file changed on disk): why.
    Broken(String),
    /// The model failed.
    Internal(String),
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Unsupported { model, what } => {
                write!(f, "model `{model}` does not support {what}")
            }
            EngineError::ContextExceeded {
                tokens,
                ctx,
                max_tokens,
            } => {
                write!(
                    f,
                    "this model's maximum context length is {ctx} tokens, but the input has {tokens} tokens"
                )?;
                if *max_tokens > 0 {
                    write!(f, " (and {max_tokens} were asked to be generated)")?;
                }
                Ok(())
            }
            EngineError::InvalidInput { param, reason } => write!(f, "{param}: {reason}"),
            EngineError::QueueFull { queued } => write!(
                f,
                "the server is busy: every slot is in use and {queued} requests are waiting"
            ),
            EngineError::Unavailable => write!(f, "the model is not available (shutting down)"),
            EngineError::Broken(why) => write!(f, "the model cannot serve: {why}"),
            EngineError::Internal(m) => write!(f, "internal model error: {m}"),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<BatchError> for EngineError {
    fn from(e: BatchError) -> EngineError {
        match e {
            BatchError::InvalidInput { param, reason } => {
                EngineError::InvalidInput { param, reason }
            }
            BatchError::ContextExceeded {
                tokens,
                ctx,
                max_tokens,
            } => EngineError::ContextExceeded {
                tokens,
                ctx,
                max_tokens,
            },
            BatchError::QueueFull { queued } => EngineError::QueueFull { queued },
            BatchError::Unavailable => EngineError::Unavailable,
            other => EngineError::Internal(other.to_string()),
        }
    }
}

/// A served model. Every method may be called from many tasks at once; the slow ones
/// ([`Engine::embed`]) are called from blocking threads, and [`Engine::submit`] must return at
/// once (the work happens on the engine's own threads).
pub trait Engine: Send + Sync + 'static {
    /// Its description.
    fn info(&self) -> ModelInfo;

    /// Text to token ids; `add_special` adds BOS/CLS as the vocabulary wants, `parse_special`
    /// turns special-token texts into their ids.
    fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, EngineError>;

    /// Token ids to text (special tokens included).
    fn detokenize(&self, ids: &[u32]) -> Result<String, EngineError>;

    /// The prompt ids of a conversation: rendered with the model's chat template (the
    /// assistant's turn opened) and tokenized, by the runtime's one rule
    /// (`realizar_runtime::Model::chat_prompt_with`); `content` says whether control-token
    /// texts inside the messages stay text (the default) or become control tokens.
    /// `context` gives the template tools and further arguments; the prompt says whether it
    /// leaves a reasoning block open.
    fn chat_prompt(
        &self,
        messages: &[ChatMessage],
        context: &ChatContext,
        content: ContentSpecials,
    ) -> Result<ChatPrompt, EngineError> {
        let _ = (messages, context, content);
        Err(EngineError::Unsupported {
            model: self.info().id,
            what: "chat",
        })
    }

    /// What the chat template does: its tool-call syntax, whether it writes reasoning.
    fn chat_features(&self) -> ChatFeatures {
        ChatFeatures {
            tools: ToolFormat::Generic,
            thinking: false,
        }
    }

    /// The id of the control token spelled `text`, if the vocabulary has one.
    fn control_token(&self, text: &str) -> Option<u32> {
        let _ = text;
        None
    }

    /// Queues a generation. Errors at once when the prompt does not fit or the queue is full.
    fn submit(&self, req: GenRequest) -> Result<GenStream, EngineError> {
        let _ = req;
        Err(EngineError::Unsupported {
            model: self.info().id,
            what: "text generation",
        })
    }

    /// Embeds texts (blocking: called from a blocking thread).
    fn embed(&self, inputs: &[String]) -> Result<Embeddings, EngineError> {
        let _ = inputs;
        Err(EngineError::Unsupported {
            model: self.info().id,
            what: "embeddings",
        })
    }

    /// How busy it is.
    fn load(&self) -> EngineLoad {
        EngineLoad::default()
    }
}
