//! The typed errors of model construction and the forward pass.

use core::fmt;

use realizar_quant::QuantError;

/// What went wrong while building a model from a file or running it.
#[derive(Debug)]
#[non_exhaustive]
pub enum NnError {
    /// `general.architecture` names an architecture this crate does not implement.
    UnknownArchitecture {
        /// The architecture found.
        name: String,
    },
    /// A required metadata key is missing or has the wrong type.
    Metadata {
        /// The key.
        key: String,
        /// The source's error (the file format's, with where it is).
        source: crate::source::SourceError,
    },
    /// A hyperparameter is present but inconsistent (zero, not dividing, out of range).
    BadHyperparameter {
        /// The key (or keys) involved.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor the architecture needs is absent.
    MissingTensor {
        /// The tensor's name.
        name: String,
    },
    /// A tensor of the file that the architecture does not use.
    UnusedTensor {
        /// The tensor's name.
        name: String,
        /// The architecture.
        arch: String,
    },
    /// A tensor has dimensions other than the hyperparameters imply.
    TensorShape {
        /// The tensor's name.
        name: String,
        /// The dimensions expected (ggml order, innermost first).
        expected: Vec<u64>,
        /// The dimensions found.
        found: Vec<u64>,
    },
    /// A tensor's element type is not usable where it appears.
    UnsupportedTensorType {
        /// The tensor's name.
        name: String,
        /// The type's name.
        ty: String,
    },
    /// A tensor's bytes could not be located in the file.
    TensorData {
        /// The tensor's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A token id outside the vocabulary.
    TokenOutOfRange {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab: usize,
    },
    /// The KV cache cannot hold the positions asked for.
    ContextOverflow {
        /// Positions needed.
        needed: usize,
        /// The cache's capacity.
        capacity: usize,
    },
    /// A caller-side argument is invalid (empty batch, wrong buffer size).
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
    /// A quantized kernel rejected its input.
    Quant {
        /// Which weight or activation was involved.
        what: String,
        /// The kernel's error.
        source: QuantError,
    },
    /// The thread pool could not be built.
    ThreadPool {
        /// The error's message.
        reason: String,
    },
}

impl fmt::Display for NnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NnError::UnknownArchitecture { name } => {
                write!(
                    f,
                    "unknown model architecture `{name}` (supported: {})",
                    crate::arch::SUPPORTED.join(", ")
                )
            }
            NnError::Metadata { key, source } => write!(f, "metadata key `{key}`: {source}"),
            NnError::BadHyperparameter { key, reason } => {
                write!(f, "inconsistent hyperparameter `{key}`: {reason}")
            }
            NnError::MissingTensor { name } => write!(f, "missing tensor `{name}`"),
            NnError::UnusedTensor { name, arch } => write!(
                f,
                "tensor `{name}` is not part of a `{arch}` model (a file with tensors its architecture does not use is refused, as llama.cpp does)"
            ),
            NnError::TensorShape {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor `{name}` has shape {found:?}, expected {expected:?} (ggml order)"
            ),
            NnError::UnsupportedTensorType { name, ty } => {
                write!(f, "tensor `{name}` has unsupported type {ty}")
            }
            NnError::TensorData { name, reason } => write!(f, "tensor `{name}`: {reason}"),
            NnError::TokenOutOfRange { id, vocab } => {
                write!(f, "token id {id} is outside the vocabulary (size {vocab})")
            }
            NnError::ContextOverflow { needed, capacity } => write!(
                f,
                "{needed} positions do not fit in the context of {capacity} tokens"
            ),
            NnError::InvalidArgument { reason } => write!(f, "invalid argument: {reason}"),
            NnError::Quant { what, source } => write!(f, "{what}: {source}"),
            NnError::ThreadPool { reason } => write!(f, "cannot build the thread pool: {reason}"),
        }
    }
}

impl std::error::Error for NnError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            NnError::Metadata { source, .. } => Some(&**source),
            NnError::Quant { source, .. } => Some(source),
            _ => None,
        }
    }
}
