//! Tokenizers for Realizar: byte-level BPE, SentencePiece, WordPiece and chat templates.
//!
//! A leaf crate: it takes plain vocabulary, merges, scores and configuration structs, so it can be
//! embedded on its own. `realizar-runtime` adapts GGUF metadata and `tokenizer.json` into them.
#![forbid(unsafe_code)]
