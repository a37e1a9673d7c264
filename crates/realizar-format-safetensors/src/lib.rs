//! A safetensors reader and writer, with sharded checkpoints and Hugging Face model directories.
#![deny(missing_docs)]
#![deny(unsafe_code)]
