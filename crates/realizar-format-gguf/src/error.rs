//! The typed errors of the GGUF reader.

use core::fmt;

use crate::{GgmlType, ValueType};

/// What went wrong while reading a GGUF file or one of its values.
///
/// Every variant raised while parsing carries `offset`: the byte offset in the file where the
/// offending field starts. [`GgufError::offset`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GgufError {
    /// The file ends before a field of `needed` bytes.
    UnexpectedEof {
        /// Where the field starts.
        offset: u64,
        /// Bytes the field needs.
        needed: u64,
    },
    /// The file does not start with `GGUF`.
    BadMagic {
        /// Always 0.
        offset: u64,
        /// The first four bytes.
        found: [u8; 4],
    },
    /// A GGUF version other than 2 or 3.
    UnsupportedVersion {
        /// Where the version field starts.
        offset: u64,
        /// The version found.
        version: u32,
    },
    /// A count or length is larger than the bytes left in the file could hold.
    CountTooLarge {
        /// Where the count starts.
        offset: u64,
        /// What is being counted.
        what: &'static str,
        /// The count found.
        count: u64,
    },
    /// A string is not valid UTF-8.
    InvalidUtf8 {
        /// Where the string starts.
        offset: u64,
    },
    /// A metadata key is the empty string.
    EmptyKey {
        /// Where the key starts.
        offset: u64,
    },
    /// A metadata key appears twice.
    DuplicateKey {
        /// Where the second occurrence starts.
        offset: u64,
        /// The key.
        key: String,
    },
    /// A metadata value type id that GGUF does not define.
    UnknownValueType {
        /// Where the type id starts.
        offset: u64,
        /// The id found.
        type_id: u32,
    },
    /// Arrays nested deeper than [`crate::MAX_NESTING`].
    NestingTooDeep {
        /// Where the too-deep array starts.
        offset: u64,
    },
    /// A bool byte other than 0 or 1.
    InvalidBool {
        /// Where the byte is.
        offset: u64,
        /// The byte found.
        value: u8,
    },
    /// A key with a known meaning holds a value of the wrong type (for example `general.alignment`
    /// that is not a u32), or a typed accessor asked for the wrong type.
    WrongType {
        /// Where the value starts.
        offset: u64,
        /// The key.
        key: String,
        /// The type expected.
        expected: &'static str,
        /// The type found.
        found: String,
    },
    /// A typed accessor asked for a key that is not there.
    KeyNotFound {
        /// The key.
        key: String,
    },
    /// `general.alignment` is zero, not a power of two, or larger than [`crate::MAX_ALIGNMENT`].
    BadAlignment {
        /// Where the value starts.
        offset: u64,
        /// The alignment found.
        alignment: u64,
    },
    /// A tensor's dimension count is not between 1 and 4.
    BadDimensionCount {
        /// Where the tensor info starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// The count found.
        n_dims: u32,
    },
    /// A tensor dimension is zero.
    ZeroDimension {
        /// Where the dimension starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// Which dimension.
        axis: usize,
    },
    /// A tensor type id that ggml does not define.
    UnknownTensorType {
        /// Where the type id starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// The id found.
        type_id: u32,
    },
    /// A tensor's first dimension is not a multiple of its type's block size.
    NotBlockMultiple {
        /// Where the tensor info starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// The tensor type.
        ty: GgmlType,
        /// The first dimension.
        ne0: u64,
    },
    /// Shape × type size overflows 64 bits.
    SizeOverflow {
        /// Where the tensor info starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
    },
    /// A tensor data offset that is not a multiple of the alignment.
    MisalignedTensor {
        /// Where the tensor's offset field starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// The data offset found.
        data_offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// A tensor's bytes reach past the end of the file.
    TensorOutOfBounds {
        /// Where the tensor's offset field starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// Absolute end of the tensor's bytes.
        end: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// Two tensors share bytes.
    OverlappingTensors {
        /// Where the later tensor's offset field starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// The tensor it overlaps.
        other: String,
    },
    /// A tensor name appears twice.
    DuplicateTensorName {
        /// Where the second tensor info starts.
        offset: u64,
        /// The name.
        tensor: String,
    },
    /// The tensor data section (after padding to the alignment) starts past the end of the file.
    DataSectionPastEnd {
        /// Where the data section should start.
        offset: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// The data of a known but unsupported tensor type (IQ*, TQ*, MXFP4) was asked for.
    UnsupportedTensorType {
        /// The tensor name.
        tensor: String,
        /// The type.
        ty: GgmlType,
    },
    /// A tensor that is not in the file was asked for.
    TensorNotFound {
        /// The name asked for.
        tensor: String,
    },
}

impl GgufError {
    /// The byte offset where the problem is, for errors raised while parsing.
    pub fn offset(&self) -> Option<u64> {
        use GgufError::*;
        match self {
            UnexpectedEof { offset, .. }
            | BadMagic { offset, .. }
            | UnsupportedVersion { offset, .. }
            | CountTooLarge { offset, .. }
            | InvalidUtf8 { offset }
            | EmptyKey { offset }
            | DuplicateKey { offset, .. }
            | UnknownValueType { offset, .. }
            | NestingTooDeep { offset }
            | InvalidBool { offset, .. }
            | WrongType { offset, .. }
            | BadAlignment { offset, .. }
            | BadDimensionCount { offset, .. }
            | ZeroDimension { offset, .. }
            | UnknownTensorType { offset, .. }
            | NotBlockMultiple { offset, .. }
            | SizeOverflow { offset, .. }
            | MisalignedTensor { offset, .. }
            | TensorOutOfBounds { offset, .. }
            | OverlappingTensors { offset, .. }
            | DuplicateTensorName { offset, .. }
            | DataSectionPastEnd { offset, .. } => Some(*offset),
            KeyNotFound { .. } | UnsupportedTensorType { .. } | TensorNotFound { .. } => None,
        }
    }
}

impl fmt::Display for GgufError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use GgufError::*;
        match self {
            UnexpectedEof { needed, .. } => {
                write!(f, "file ends inside a field of {needed} bytes")?
            }
            BadMagic { found, .. } => write!(f, "not a GGUF file (magic {found:02x?})")?,
            UnsupportedVersion { version, .. } => {
                write!(f, "unsupported GGUF version {version} (2 and 3 are supported)")?
            }
            CountTooLarge { what, count, .. } => {
                write!(f, "{what} {count} is larger than the rest of the file can hold")?
            }
            InvalidUtf8 { .. } => f.write_str("string is not valid UTF-8")?,
            EmptyKey { .. } => f.write_str("empty metadata key")?,
            DuplicateKey { key, .. } => write!(f, "duplicate metadata key `{key}`")?,
            UnknownValueType { type_id, .. } => write!(f, "unknown metadata value type {type_id}")?,
            NestingTooDeep { .. } => write!(
                f,
                "arrays nested deeper than {} levels",
                crate::MAX_NESTING
            )?,
            InvalidBool { value, .. } => write!(f, "bool value {value} is neither 0 nor 1")?,
            WrongType {
                key,
                expected,
                found,
                ..
            } => write!(f, "metadata key `{key}` is {found}, expected {expected}")?,
            KeyNotFound { key } => return write!(f, "metadata key `{key}` not found"),
            BadAlignment { alignment, .. } => write!(
                f,
                "general.alignment {alignment} is not a power of two between 1 and {}",
                crate::MAX_ALIGNMENT
            )?,
            BadDimensionCount { tensor, n_dims, .. } => write!(
                f,
                "tensor `{tensor}` has {n_dims} dimensions (1 to 4 allowed)"
            )?,
            ZeroDimension { tensor, axis, .. } => {
                write!(f, "tensor `{tensor}` has a zero dimension (axis {axis})")?
            }
            UnknownTensorType {
                tensor, type_id, ..
            } => write!(f, "tensor `{tensor}` has unknown ggml type id {type_id}")?,
            NotBlockMultiple { tensor, ty, ne0, .. } => write!(
                f,
                "tensor `{tensor}`: first dimension {ne0} is not a multiple of the {ty} block size {}",
                ty.block_size()
            )?,
            SizeOverflow { tensor, .. } => write!(f, "tensor `{tensor}`: size overflows")?,
            MisalignedTensor {
                tensor,
                data_offset,
                alignment,
                ..
            } => write!(
                f,
                "tensor `{tensor}`: data offset {data_offset} is not a multiple of the alignment {alignment}"
            )?,
            TensorOutOfBounds {
                tensor,
                end,
                file_len,
                ..
            } => write!(
                f,
                "tensor `{tensor}`: data ends at byte {end}, past the end of the file ({file_len} bytes)"
            )?,
            OverlappingTensors { tensor, other, .. } => {
                write!(f, "tensor `{tensor}` overlaps tensor `{other}`")?
            }
            DuplicateTensorName { tensor, .. } => write!(f, "duplicate tensor name `{tensor}`")?,
            DataSectionPastEnd { file_len, .. } => write!(
                f,
                "tensor data section starts past the end of the file ({file_len} bytes)"
            )?,
            UnsupportedTensorType { tensor, ty } => {
                return write!(f, "tensor `{tensor}` has type {ty}, which is not supported")
            }
            TensorNotFound { tensor } => return write!(f, "tensor `{tensor}` not found"),
        }
        if let Some(offset) = self.offset() {
            write!(f, " (at byte {offset})")?;
        }
        Ok(())
    }
}

impl std::error::Error for GgufError {}

/// The type name used in [`GgufError::WrongType`] for a value type.
pub(crate) fn type_name(t: ValueType) -> String {
    t.name().to_string()
}
