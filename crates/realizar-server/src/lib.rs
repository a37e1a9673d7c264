//! The Realizar HTTP server: an OpenAI-compatible API over `realizar-runtime`.
//!
//! This crate will hold the hyper/tokio server; it is the only crate of the workspace that knows
//! HTTP. It holds no functionality yet.
#![forbid(unsafe_code)]
