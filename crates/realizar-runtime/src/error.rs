//! The typed errors of loading and running decoder models.

use core::fmt;
use std::path::PathBuf;

use realizar_format_gguf::GgufError;
use realizar_nn::NnError;
use realizar_tokenize::TokenizeError;

use crate::embed::EmbedError;
use crate::sampling::SamplerError;
use crate::tokenizer_load::LoadError;

/// What went wrong while loading or running a model.
#[derive(Debug)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The model file could not be opened or mapped.
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A mapped model file changed on disk since it was loaded (reading it could crash).
    FileChanged {
        /// The file.
        path: PathBuf,
        /// What changed.
        reason: String,
    },
    /// The file is not a valid GGUF container.
    Format {
        /// The file.
        path: PathBuf,
        /// The reader's error.
        source: Box<GgufError>,
    },
    /// The container is valid but the model in it is not (or a forward pass failed).
    Model {
        /// The file (empty when not known).
        path: PathBuf,
        /// The model error.
        source: NnError,
    },
    /// The prompt does not fit in the context.
    PromptTooLong {
        /// Prompt tokens.
        tokens: usize,
        /// Context length.
        ctx: usize,
    },
    /// An argument is invalid (empty prompt, bad option value).
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// The model's tokenizer or chat template in the file is malformed.
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: LoadError,
    },
    /// An encoder model directory could not be loaded.
    Embed(EmbedError),
    /// A text could not be tokenized, ids not detokenized, or a conversation not rendered.
    Text {
        /// What was being done (`"the chat template"`, `"tokenizing"`, ...).
        what: &'static str,
        /// The tokenizer's error.
        source: TokenizeError,
    },
    /// The model cannot do this (chat without a template, text without a tokenizer,
    /// generation with an encoder).
    Unsupported {
        /// What was asked.
        what: &'static str,
    },
    /// Sampling parameters out of range.
    Sampler(SamplerError),
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            RuntimeError::FileChanged { reason, .. } => write!(
                f,
                "{reason}; restart to load it again (or load with --no-mmap, which reads the model into memory)"
            ),
            RuntimeError::Format { path, source } => {
                write!(f, "{}: not a valid GGUF file: {source}", path.display())
            }
            RuntimeError::Model { path, source } => {
                if path.as_os_str().is_empty() {
                    write!(f, "{source}")
                } else {
                    write!(f, "{}: {source}", path.display())
                }
            }
            RuntimeError::PromptTooLong { tokens, ctx } => write!(
                f,
                "the prompt has {tokens} tokens, more than the context of {ctx} allows"
            ),
            RuntimeError::InvalidArgument { reason } => write!(f, "invalid argument: {reason}"),
            RuntimeError::Tokenizer { path, source } => {
                write!(f, "{}: tokenizer: {source}", path.display())
            }
            RuntimeError::Embed(e) => write!(f, "{e}"),
            RuntimeError::Text { what, source } => write!(f, "{what}: {source}"),
            RuntimeError::Unsupported { what } => write!(f, "the model has no {what}"),
            RuntimeError::Sampler(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for RuntimeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RuntimeError::Io { source, .. } => Some(source),
            RuntimeError::Format { source, .. } => Some(&**source),
            RuntimeError::Model { source, .. } => Some(source),
            RuntimeError::Tokenizer { source, .. } => Some(source),
            RuntimeError::Embed(e) => Some(e),
            RuntimeError::Text { source, .. } => Some(source),
            RuntimeError::Sampler(e) => Some(e),
            _ => None,
        }
    }
}

impl From<NnError> for RuntimeError {
    fn from(source: NnError) -> RuntimeError {
        RuntimeError::Model {
            path: PathBuf::new(),
            source,
        }
    }
}

/// A grammar that does not compile, or a constraint that fails, is an invalid argument.
impl From<crate::constrain::ConstraintError> for RuntimeError {
    fn from(e: crate::constrain::ConstraintError) -> RuntimeError {
        RuntimeError::InvalidArgument { reason: e.message }
    }
}

impl From<SamplerError> for RuntimeError {
    fn from(e: SamplerError) -> RuntimeError {
        RuntimeError::Sampler(e)
    }
}
