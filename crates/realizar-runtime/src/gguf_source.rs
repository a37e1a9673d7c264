//! The GGUF adapter of `realizar-nn`'s [`ModelSource`]: metadata by key and tensors located in
//! the mapped file, so that the architectures read no file format themselves.

use realizar_format_gguf::GgufFile;
use realizar_nn::{ModelSource, NnError, SourceError, TensorEntry, WeightBytes};

/// A parsed GGUF file and the bytes it was parsed from (the whole file, normally mapped).
pub struct GgufSource<'f, 'a> {
    file: &'f GgufFile<'a>,
    store: WeightBytes,
}

impl<'f, 'a> GgufSource<'f, 'a> {
    /// `file` must have been parsed from `store`'s bytes (tensor ranges are offsets in them).
    pub fn new(file: &'f GgufFile<'a>, store: WeightBytes) -> GgufSource<'f, 'a> {
        GgufSource { file, store }
    }
}

fn boxed(e: realizar_format_gguf::GgufError) -> SourceError {
    Box::new(e)
}

impl ModelSource for GgufSource<'_, '_> {
    fn has(&self, key: &str) -> bool {
        self.file.get(key).is_some()
    }

    fn get_u32(&self, key: &str) -> Result<u32, SourceError> {
        self.file.get_u32(key).map_err(boxed)
    }

    fn get_f32(&self, key: &str) -> Result<f32, SourceError> {
        self.file.get_f32(key).map_err(boxed)
    }

    fn get_str(&self, key: &str) -> Result<&str, SourceError> {
        self.file.get_str(key).map_err(boxed)
    }

    fn tensor_count(&self) -> usize {
        self.file.tensors().len()
    }

    fn tensor_names(&self) -> Vec<&str> {
        self.file.tensors().iter().map(|t| t.name).collect()
    }

    fn tensor(&self, name: &str) -> Option<TensorEntry> {
        let t = self.file.tensor(name)?;
        // The reader checked that every tensor lies inside the file; an offset that does not
        // fit a usize becomes an empty range, which the loader rejects with the tensor's name.
        let start = self
            .file
            .data_offset()
            .checked_add(t.data_offset)
            .and_then(|s| usize::try_from(s).ok());
        let end = start.and_then(|s| s.checked_add(usize::try_from(t.size).ok()?));
        let bytes = match (start, end) {
            (Some(s), Some(e)) => s..e,
            _ => 0..0,
        };
        Some(TensorEntry {
            ggml_type: t.ty.id(),
            type_name: t.ty.name().to_string(),
            dims: t.dims.clone(),
            bytes,
            store: self.store.clone(),
        })
    }
}

/// Special-token keys whose ids must lie inside the vocabulary.
const SPECIAL_ID_KEYS: &[&str] = &[
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.ggml.eot_token_id",
    "tokenizer.ggml.eom_token_id",
    "tokenizer.ggml.unknown_token_id",
    "tokenizer.ggml.padding_token_id",
    "tokenizer.ggml.seperator_token_id",
];

/// The file's vocabulary agrees with the network's `n_vocab` rows: as many token texts, and
/// every special token id inside.
pub fn check_vocabulary(file: &GgufFile<'_>, n_vocab: usize) -> Result<(), NnError> {
    if let Ok(tokens) = file.get_array("tokenizer.ggml.tokens") {
        if tokens.len() != n_vocab {
            return Err(NnError::BadHyperparameter {
                key: "tokenizer.ggml.tokens".into(),
                reason: format!(
                    "{} tokens but token_embd.weight has {n_vocab} rows",
                    tokens.len()
                ),
            });
        }
    }
    for key in SPECIAL_ID_KEYS {
        if let Some(v) = file.get(key) {
            let id = v.as_u64();
            if id.is_none_or(|id| id >= n_vocab as u64) {
                return Err(NnError::BadHyperparameter {
                    key: (*key).into(),
                    reason: format!("token id {v:?} is outside the vocabulary of {n_vocab}"),
                });
            }
        }
    }
    Ok(())
}
