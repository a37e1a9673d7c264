//! A safetensors reader and writer, with sharded checkpoints (`model.safetensors.index.json`).
//!
//! [safetensors](https://github.com/huggingface/safetensors) is the weight format of Hugging
//! Face: an 8-byte little-endian header size, a JSON header naming each tensor's dtype, shape
//! and byte range, then the raw little-endian data. This crate parses it from a `&[u8]` (or a
//! memory map, with the default `mmap` feature) and hands out borrowed, zero-copy
//! [`TensorView`]s. Every header field, length and offset is checked before use, and each
//! problem is a [`SafetensorsError`] variant that says what is wrong and at which byte.
//!
//! With `default-features = false` the crate depends on nothing but `std`; it carries its own
//! small strict JSON parser, private to the header and the sharded index (Hugging Face model
//! directories and their `config.json` are read by `realizar-runtime`).
//!
//! ```
//! use realizar_format_safetensors::{Dtype, SafeTensors, SafetensorsError};
//!
//! // A file with one F32 tensor of shape [2] (in a real program, read or map one from disk).
//! let header = br#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
//! let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
//! bytes.extend_from_slice(header);
//! bytes.extend_from_slice(&1.5f32.to_le_bytes());
//! bytes.extend_from_slice(&(-2.0f32).to_le_bytes());
//!
//! let file = SafeTensors::parse(&bytes).unwrap();
//! let w = file.tensor("w").unwrap();
//! assert_eq!((w.dtype, w.shape.as_slice()), (Dtype::F32, &[2usize][..]));
//! assert_eq!(w.to_f32_vec().unwrap(), [1.5, -2.0]);
//!
//! // Bad input is a typed error with the byte offset of the problem.
//! let err = SafeTensors::parse(&bytes[..bytes.len() - 1]).unwrap_err();
//! assert!(matches!(err, SafetensorsError::TensorOutOfBounds { end: 8, data_len: 7, .. }));
//! assert_eq!(err.offset(), Some(8 + 47)); // where the `data_offsets` value starts
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod dtype;
mod error;
mod index;
mod json;
#[cfg(feature = "mmap")]
mod mmap;
mod reader;
mod writer;

pub use dtype::{bf16_to_f32, f16_to_f32, Dtype, TensorView};
pub use error::SafetensorsError;
pub use index::{is_plain_file_name, IndexError, ShardedIndex};
pub use json::{JsonError, JsonErrorKind, MAX_JSON_DEPTH};
#[cfg(feature = "mmap")]
pub use mmap::MmapSafetensors;
pub use reader::{SafeTensors, MAX_HEADER_SIZE, METADATA_KEY};
pub use writer::{SafetensorsWriter, WriteError};
