//! The typed errors of the safetensors reader.

use core::fmt;

use crate::json::JsonErrorKind;
use crate::Dtype;

/// What is wrong with a safetensors file, or why a view could not be converted.
///
/// Every variant raised while parsing carries `offset`: the byte offset in the file where the
/// problem is (for errors inside the JSON header, 8 plus the position in the header).
/// [`SafetensorsError::offset`] returns it; `Display` ends with "(at byte N)".
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SafetensorsError {
    /// The file is shorter than the 8-byte header size field.
    FileTooShort {
        /// Always 0.
        offset: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// The header size is larger than [`crate::MAX_HEADER_SIZE`].
    HeaderTooLarge {
        /// Always 0.
        offset: u64,
        /// The header size found.
        size: u64,
    },
    /// The header size reaches past the end of the file.
    HeaderPastEnd {
        /// Always 0.
        offset: u64,
        /// The header size found.
        size: u64,
        /// Length of the file.
        file_len: u64,
    },
    /// The header is not valid UTF-8.
    InvalidUtf8 {
        /// Where the first invalid byte is.
        offset: u64,
    },
    /// The header is not valid JSON (or nests deeper than [`crate::MAX_JSON_DEPTH`]).
    Json {
        /// Where the JSON error is.
        offset: u64,
        /// What is wrong.
        kind: JsonErrorKind,
    },
    /// The header's JSON value is not an object.
    HeaderNotObject {
        /// Where the value starts.
        offset: u64,
    },
    /// `__metadata__` is not an object whose values are all strings.
    MetadataNotStringMap {
        /// Where the offending value starts.
        offset: u64,
    },
    /// A tensor entry is not an object.
    EntryNotObject {
        /// Where the entry's value starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
    },
    /// Two tensors have the same name (or `__metadata__` appears twice).
    DuplicateTensorName {
        /// Where the second occurrence of the name starts.
        offset: u64,
        /// The name.
        tensor: String,
    },
    /// A key appears twice inside a tensor entry or `__metadata__`.
    DuplicateKey {
        /// Where the second occurrence starts.
        offset: u64,
        /// The tensor name, or `__metadata__`.
        within: String,
        /// The key.
        key: String,
    },
    /// A tensor entry has a field other than `dtype`, `shape` and `data_offsets`.
    UnknownField {
        /// Where the field's key starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// The field.
        field: String,
    },
    /// A tensor entry lacks `dtype`, `shape` or `data_offsets`.
    MissingField {
        /// Where the entry starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// The missing field.
        field: &'static str,
    },
    /// A field of a tensor entry has the wrong JSON type.
    WrongFieldType {
        /// Where the field's value starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A dtype name that safetensors does not define.
    UnknownDtype {
        /// Where the dtype string starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// The name found.
        dtype: String,
    },
    /// A shape dimension that is not a non-negative integer fitting in `usize`.
    BadDimension {
        /// Where the dimension starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// The JSON text found (shortened when long).
        value: String,
    },
    /// A data offset that is not a non-negative integer.
    BadDataOffset {
        /// Where the offset starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// The JSON text found (shortened when long).
        value: String,
    },
    /// A data offset that does not fit in 64 bits (or in `usize`).
    OffsetOverflow {
        /// Where the offset starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
    },
    /// The product of the shape times the dtype size overflows.
    ShapeOverflow {
        /// Where the shape starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
    },
    /// `data_offsets` has begin > end.
    OffsetsReversed {
        /// Where `data_offsets` starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// The begin offset.
        begin: u64,
        /// The end offset.
        end: u64,
    },
    /// The byte length from `data_offsets` differs from shape × dtype size.
    LengthMismatch {
        /// Where `data_offsets` starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// Bytes the shape and dtype need.
        expected: u64,
        /// Bytes `data_offsets` spans.
        actual: u64,
    },
    /// A tensor's bytes reach past the end of the file.
    TensorOutOfBounds {
        /// Where `data_offsets` starts.
        offset: u64,
        /// The tensor name.
        tensor: String,
        /// The end offset (relative to the data section).
        end: u64,
        /// Length of the data section.
        data_len: u64,
    },
    /// Bytes between two tensors (or before the first) that no tensor covers.
    Hole {
        /// Where the tensor's `data_offsets` starts.
        offset: u64,
        /// The tensor that starts after the hole.
        tensor: String,
        /// Where the tensor should have started (relative to the data section).
        expected_begin: u64,
    },
    /// Two tensors share bytes.
    Overlap {
        /// Where the later tensor's `data_offsets` starts.
        offset: u64,
        /// The later tensor.
        tensor: String,
        /// The tensor it overlaps.
        other: String,
    },
    /// Bytes after the last tensor's data.
    TrailingBytes {
        /// Where the trailing bytes start.
        offset: u64,
        /// How many there are.
        count: u64,
    },
    /// [`crate::TensorView::to_f32_vec`] on a dtype that is not F64, F32, F16 or BF16.
    UnsupportedConversion {
        /// The view's dtype.
        dtype: Dtype,
    },
}

impl SafetensorsError {
    /// The byte offset in the file where the problem is, for errors raised while parsing.
    pub fn offset(&self) -> Option<u64> {
        use SafetensorsError::*;
        match self {
            FileTooShort { offset, .. }
            | HeaderTooLarge { offset, .. }
            | HeaderPastEnd { offset, .. }
            | InvalidUtf8 { offset }
            | Json { offset, .. }
            | HeaderNotObject { offset }
            | MetadataNotStringMap { offset }
            | EntryNotObject { offset, .. }
            | DuplicateTensorName { offset, .. }
            | DuplicateKey { offset, .. }
            | UnknownField { offset, .. }
            | MissingField { offset, .. }
            | WrongFieldType { offset, .. }
            | UnknownDtype { offset, .. }
            | BadDimension { offset, .. }
            | BadDataOffset { offset, .. }
            | OffsetOverflow { offset, .. }
            | ShapeOverflow { offset, .. }
            | OffsetsReversed { offset, .. }
            | LengthMismatch { offset, .. }
            | TensorOutOfBounds { offset, .. }
            | Hole { offset, .. }
            | Overlap { offset, .. }
            | TrailingBytes { offset, .. } => Some(*offset),
            UnsupportedConversion { .. } => None,
        }
    }
}

impl fmt::Display for SafetensorsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SafetensorsError::*;
        match self {
            FileTooShort { file_len, .. } => write!(
                f,
                "file is {file_len} bytes, too short for the 8-byte header size"
            )?,
            HeaderTooLarge { size, .. } => write!(
                f,
                "header size {size} is larger than the limit of {} bytes",
                crate::MAX_HEADER_SIZE
            )?,
            HeaderPastEnd { size, file_len, .. } => write!(
                f,
                "header size {size} reaches past the end of the file ({file_len} bytes)"
            )?,
            InvalidUtf8 { .. } => f.write_str("header is not valid UTF-8")?,
            Json { kind, .. } => write!(f, "invalid header: {kind}")?,
            HeaderNotObject { .. } => f.write_str("header is not a JSON object")?,
            MetadataNotStringMap { .. } => {
                f.write_str("`__metadata__` must be an object of string values")?
            }
            EntryNotObject { tensor, .. } => {
                write!(f, "entry of tensor `{tensor}` is not a JSON object")?
            }
            DuplicateTensorName { tensor, .. } => write!(f, "duplicate tensor name `{tensor}`")?,
            DuplicateKey { within, key, .. } => {
                write!(f, "duplicate key `{key}` in entry `{within}`")?
            }
            UnknownField { tensor, field, .. } => {
                write!(f, "tensor `{tensor}` has unknown field `{field}`")?
            }
            MissingField { tensor, field, .. } => {
                write!(f, "tensor `{tensor}` has no `{field}`")?
            }
            WrongFieldType {
                tensor,
                field,
                expected,
                ..
            } => write!(f, "tensor `{tensor}`: `{field}` must be {expected}")?,
            UnknownDtype { tensor, dtype, .. } => {
                write!(f, "tensor `{tensor}` has unknown dtype `{dtype}`")?
            }
            BadDimension { tensor, value, .. } => write!(
                f,
                "tensor `{tensor}`: shape dimension `{value}` is not a non-negative integer that fits in usize"
            )?,
            BadDataOffset { tensor, value, .. } => write!(
                f,
                "tensor `{tensor}`: data offset `{value}` is not a non-negative integer"
            )?,
            OffsetOverflow { tensor, .. } => {
                write!(f, "tensor `{tensor}`: data offset does not fit in 64 bits")?
            }
            ShapeOverflow { tensor, .. } => {
                write!(f, "tensor `{tensor}`: shape × dtype size overflows")?
            }
            OffsetsReversed {
                tensor, begin, end, ..
            } => write!(
                f,
                "tensor `{tensor}`: data_offsets begin {begin} is after end {end}"
            )?,
            LengthMismatch {
                tensor,
                expected,
                actual,
                ..
            } => write!(
                f,
                "tensor `{tensor}`: data_offsets span {actual} bytes, shape and dtype need {expected}"
            )?,
            TensorOutOfBounds {
                tensor,
                end,
                data_len,
                ..
            } => write!(
                f,
                "tensor `{tensor}`: data ends at {end}, past the end of the data section ({data_len} bytes)"
            )?,
            Hole {
                tensor,
                expected_begin,
                ..
            } => write!(
                f,
                "tensor `{tensor}`: hole in the data section, bytes from {expected_begin} belong to no tensor"
            )?,
            Overlap { tensor, other, .. } => {
                write!(f, "tensor `{tensor}` overlaps tensor `{other}`")?
            }
            TrailingBytes { count, .. } => {
                write!(f, "{count} bytes after the last tensor belong to no tensor")?
            }
            UnsupportedConversion { dtype } => {
                return write!(f, "cannot convert {} to f32", dtype.name())
            }
        }
        if let Some(offset) = self.offset() {
            write!(f, " (at byte {offset})")?;
        }
        Ok(())
    }
}

impl std::error::Error for SafetensorsError {}
