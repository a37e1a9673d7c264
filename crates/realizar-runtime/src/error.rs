//! The typed errors of loading and running decoder models.

use core::fmt;
use std::path::PathBuf;

use realizar_format_gguf::GgufError;
use realizar_nn::NnError;

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
}

impl fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeError::Io { path, source } => write!(f, "{}: {source}", path.display()),
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
        }
    }
}

impl std::error::Error for RuntimeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RuntimeError::Io { source, .. } => Some(source),
            RuntimeError::Format { source, .. } => Some(&**source),
            RuntimeError::Model { source, .. } => Some(source),
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
