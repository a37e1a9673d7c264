//! Errors of building and running tokenizers.

use std::fmt;

/// What went wrong while building or running a tokenizer.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TokenizeError {
    /// A token id is not in the vocabulary.
    InvalidId {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// The vocabulary is empty.
    EmptyVocab,
    /// A per-token array (scores, types) does not have one entry per token.
    LengthMismatch {
        /// Which array.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The number of tokens.
        n_tokens: usize,
    },
    /// A token type value that is not one of GGUF's (0 to 6).
    InvalidTokenType {
        /// The token's index.
        index: usize,
        /// The value found.
        value: i32,
    },
    /// A merge rule that is not two tokens separated by a space.
    MalformedMerge {
        /// Its index in the merge list.
        index: usize,
        /// The rule.
        rule: String,
    },
    /// A special token (BOS, EOS, …) whose id is outside the vocabulary.
    SpecialOutOfRange {
        /// Which special token.
        what: &'static str,
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
    /// A token the tokenizer needs is missing from the vocabulary.
    MissingToken {
        /// The token text (e.g. `<0x0A>` for SentencePiece byte fallback, `[UNK]`).
        token: String,
    },
    /// A chat template failed to compile or raised an exception.
    Template(String),
}

impl fmt::Display for TokenizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizeError::InvalidId { id, vocab_size } => {
                write!(
                    f,
                    "token id {id} is outside the vocabulary of {vocab_size} tokens"
                )
            }
            TokenizeError::EmptyVocab => f.write_str("the vocabulary is empty"),
            TokenizeError::LengthMismatch {
                what,
                len,
                n_tokens,
            } => write!(
                f,
                "{what} has {len} entries but there are {n_tokens} tokens"
            ),
            TokenizeError::InvalidTokenType { index, value } => {
                write!(f, "token {index} has invalid token type {value}")
            }
            TokenizeError::MalformedMerge { index, rule } => {
                write!(
                    f,
                    "merge rule {index} ({rule:?}) is not two tokens separated by a space"
                )
            }
            TokenizeError::SpecialOutOfRange {
                what,
                id,
                vocab_size,
            } => write!(
                f,
                "{what} token id {id} is outside the vocabulary of {vocab_size} tokens"
            ),
            TokenizeError::MissingToken { token } => {
                write!(
                    f,
                    "the vocabulary has no token {token:?}, which the tokenizer needs"
                )
            }
            TokenizeError::Template(msg) => write!(f, "chat template: {msg}"),
        }
    }
}

impl std::error::Error for TokenizeError {}
