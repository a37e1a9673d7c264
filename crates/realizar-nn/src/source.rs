//! Where an architecture gets its hyperparameters and weights: the [`ModelSource`] trait. This
//! crate reads no file format; the runtime adapts GGUF files and Hugging Face safetensors
//! directories to the trait (and encoder directories to the BERT encoder's
//! [`crate::bert::WeightSource`]).

use core::ops::Range;

use crate::decoder::WeightBytes;

/// The error a source reports for a metadata key or a tensor (the format's own error, with
/// where in the file it is).
pub type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// A tensor of a model file: its ggml element type id, its dimensions (ggml order, innermost
/// first) and where its bytes lie: a range of a shared store (normally the mapped file the
/// tensor is in, so that the weights are used in place; a source that has to rearrange a
/// tensor gives it a store of its own).
#[derive(Clone)]
pub struct TensorEntry {
    /// The ggml type id (`realizar_quant::QuantType::from_ggml_id`).
    pub ggml_type: u32,
    /// The type's name, for errors.
    pub type_name: String,
    /// Dimensions, innermost first.
    pub dims: Vec<u64>,
    /// The byte range in [`TensorEntry::store`].
    pub bytes: Range<usize>,
    /// The bytes the range refers to.
    pub store: WeightBytes,
}

impl core::fmt::Debug for TensorEntry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TensorEntry")
            .field("ggml_type", &self.ggml_type)
            .field("type_name", &self.type_name)
            .field("dims", &self.dims)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

/// A model's hyperparameters and named tensors (llama.cpp's names: `token_embd.weight`,
/// `blk.N.attn_q.weight`, ...), as the decoder architectures read them. Metadata getters
/// accept what GGUF readers accept (any non-negative integer that fits a `u32`; `f32` or `f64`)
/// and fail with the source's own error, which names the key and where it is.
pub trait ModelSource {
    /// Whether a metadata key is present.
    fn has(&self, key: &str) -> bool;
    /// A non-negative integer that fits a `u32`.
    fn get_u32(&self, key: &str) -> Result<u32, SourceError>;
    /// A float.
    fn get_f32(&self, key: &str) -> Result<f32, SourceError>;
    /// A string.
    fn get_str(&self, key: &str) -> Result<&str, SourceError>;
    /// A tensor, if present.
    fn tensor(&self, name: &str) -> Option<TensorEntry>;
    /// How many tensors the model has (a bound on what its metadata may claim, checked
    /// before anything is sized by it).
    fn tensor_count(&self) -> usize;
    /// The names of every tensor.
    fn tensor_names(&self) -> Vec<&str>;
}
