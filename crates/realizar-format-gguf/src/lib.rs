//! A GGUF v2/v3 reader and writer, safe on hostile input.
//!
//! GGUF is the model file format of llama.cpp and ggml: a header with typed metadata, a table of
//! tensor infos, and aligned tensor data. This crate parses it from a `&[u8]` (or a memory map,
//! with the default `mmap` feature) and hands out borrowed, zero-copy views of each tensor's
//! bytes. Every count, length, dimension and offset is checked against the bytes that remain
//! before anything is allocated, and errors say what is wrong and at which byte.
//!
//! With `default-features = false` the crate depends on nothing but `std`.
//!
//! ```
//! use realizar_format_gguf::{GgmlType, GgufFile, GgufWriter, OwnedValue};
//!
//! // Build a tiny file (in a real program, read or map one from disk).
//! let mut w = GgufWriter::new();
//! w.add_metadata("general.architecture", OwnedValue::String("llama".into()));
//! w.add_metadata("llama.block_count", OwnedValue::U32(2));
//! w.add_f32_tensor("token_embd.weight", &[4, 3], &[0.5; 12]).unwrap();
//! let bytes = w.to_bytes();
//!
//! let file = GgufFile::parse(&bytes).unwrap();
//! assert_eq!(file.architecture().unwrap(), "llama");
//! assert_eq!(file.get_u32("llama.block_count").unwrap(), 2);
//! let t = file.tensor("token_embd.weight").unwrap();
//! assert_eq!((t.ty, t.dims.as_slice()), (GgmlType::F32, &[4u64, 3][..]));
//! assert_eq!(file.tensor_data("token_embd.weight").unwrap().len(), 48);
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod error;
#[cfg(feature = "mmap")]
mod mmap;
mod reader;
mod types;
mod value;
mod writer;

pub use error::GgufError;
#[cfg(feature = "mmap")]
pub use mmap::MmapGguf;
pub use reader::{
    GgufFile, TensorInfo, DEFAULT_ALIGNMENT, MAGIC, MAX_ALIGNMENT, MAX_DIMS, MAX_NESTING,
};
pub use types::GgmlType;
pub use value::{Array, ArrayIter, OwnedValue, Value, ValueType};
pub use writer::{GgufWriter, WriteError};
