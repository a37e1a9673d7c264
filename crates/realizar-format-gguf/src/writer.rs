//! A writer that produces valid GGUF v3 files.

use std::io::{self, Write};

use crate::value::encode_str;
use crate::{GgmlType, OwnedValue, DEFAULT_ALIGNMENT, MAGIC};

/// Builds a GGUF v3 file in memory: metadata, then tensors with their data.
///
/// ```
/// use realizar_format_gguf::{GgmlType, GgufFile, GgufWriter, OwnedValue};
///
/// let mut w = GgufWriter::new();
/// w.add_metadata("general.architecture", OwnedValue::String("llama".into()));
/// w.add_tensor("w", &[4, 2], GgmlType::F32, vec![0u8; 32]).unwrap();
/// let bytes = w.to_bytes();
/// let file = GgufFile::parse(&bytes).unwrap();
/// assert_eq!(file.tensors()[0].dims, vec![4, 2]);
/// ```
#[derive(Clone, Debug)]
pub struct GgufWriter {
    version: u32,
    alignment: u64,
    metadata: Vec<(String, OwnedValue)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

/// Why a tensor could not be added to a [`GgufWriter`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// The shape is empty, has more than 4 dimensions, or a zero dimension.
    BadShape(String),
    /// The first dimension is not a multiple of the type's block size.
    NotBlockMultiple(String),
    /// The data length is not what the shape and type need.
    WrongDataLength {
        /// The tensor.
        tensor: String,
        /// Bytes needed.
        expected: u64,
        /// Bytes given.
        found: u64,
    },
}

impl core::fmt::Display for WriteError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            WriteError::BadShape(t) => write!(
                f,
                "tensor `{t}`: shape must have 1 to 4 non-zero dimensions"
            ),
            WriteError::NotBlockMultiple(t) => {
                write!(
                    f,
                    "tensor `{t}`: first dimension is not a multiple of the block size"
                )
            }
            WriteError::WrongDataLength {
                tensor,
                expected,
                found,
            } => write!(
                f,
                "tensor `{tensor}`: {found} bytes of data, expected {expected}"
            ),
        }
    }
}

impl std::error::Error for WriteError {}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// A writer for a GGUF v3 file with the default alignment (32).
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Writes version 2 instead of 3 (the layouts are the same).
    pub fn version(&mut self, version: u32) -> &mut Self {
        self.version = version;
        self
    }

    /// Sets the tensor data alignment and records it as `general.alignment`.
    ///
    /// The alignment must be a power of two; others are rounded up to one.
    pub fn alignment(&mut self, alignment: u32) -> &mut Self {
        let a = alignment.max(1).next_power_of_two();
        self.alignment = u64::from(a);
        self.metadata.retain(|(k, _)| k != "general.alignment");
        self.metadata
            .push(("general.alignment".to_string(), OwnedValue::U32(a)));
        self
    }

    /// Adds a metadata key (a later value for the same key replaces the earlier one).
    pub fn add_metadata(&mut self, key: &str, value: OwnedValue) -> &mut Self {
        if let Some(slot) = self.metadata.iter_mut().find(|(k, _)| k == key) {
            slot.1 = value;
        } else {
            self.metadata.push((key.to_string(), value));
        }
        self
    }

    /// Adds a tensor with its raw data (`dims` in ggml order, innermost first).
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<&mut Self, WriteError> {
        if dims.is_empty() || dims.len() > 4 || dims.contains(&0) {
            return Err(WriteError::BadShape(name.to_string()));
        }
        if dims[0] % ty.block_size() != 0 {
            return Err(WriteError::NotBlockMultiple(name.to_string()));
        }
        let expected = dims
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d))
            .and_then(|n| ty.bytes_for(n))
            .ok_or_else(|| WriteError::BadShape(name.to_string()))?;
        if expected != data.len() as u64 {
            return Err(WriteError::WrongDataLength {
                tensor: name.to_string(),
                expected,
                found: data.len() as u64,
            });
        }
        self.tensors
            .push((name.to_string(), dims.to_vec(), ty, data));
        Ok(self)
    }

    /// Adds an f32 tensor from values.
    pub fn add_f32_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        values: &[f32],
    ) -> Result<&mut Self, WriteError> {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.add_tensor(name, dims, GgmlType::F32, data)
    }

    /// The encoded file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            encode_str(key, &mut out);
            out.extend_from_slice(&value.value_type().id().to_le_bytes());
            value.encode(&mut out);
        }
        let align = |n: u64| n.div_ceil(self.alignment) * self.alignment;
        let mut offset = 0u64;
        for (name, dims, ty, data) in &self.tensors {
            encode_str(name, &mut out);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend_from_slice(&d.to_le_bytes());
            }
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset = align(offset + data.len() as u64);
        }
        if !self.tensors.is_empty() {
            out.resize(align(out.len() as u64) as usize, 0);
            let data_start = out.len();
            let mut offset = 0u64;
            for (_, _, _, data) in &self.tensors {
                out.resize(data_start + offset as usize, 0);
                out.extend_from_slice(data);
                offset = align(offset + data.len() as u64);
            }
        }
        out
    }

    /// Writes the encoded file to `w`.
    pub fn write_to<W: Write>(&self, mut w: W) -> io::Result<()> {
        w.write_all(&self.to_bytes())
    }
}
