//! [`QuantError`]: what went wrong with a call's arguments.

use core::fmt;
use core::ops::Range;

use crate::QuantType;

/// An error from (de)quantization or a dot product: the arguments do not fit together.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuantError {
    /// `n` elements is not a whole number of `ty`'s blocks.
    NotBlockMultiple {
        /// The type whose block size `n` must be a multiple of.
        ty: QuantType,
        /// The element count given.
        n: usize,
    },
    /// A buffer has the wrong length.
    WrongLength {
        /// Which argument (`"src"`, `"dst"`, `"w"`, `"act"`, `"out"`).
        what: &'static str,
        /// The length it needs (bytes for byte buffers, elements for float buffers).
        expected: usize,
        /// The length it has.
        actual: usize,
    },
    /// A byte buffer is not aligned for the block type it holds.
    Misaligned {
        /// Which argument.
        what: &'static str,
        /// The block type.
        ty: QuantType,
        /// The alignment needed, in bytes.
        align: usize,
    },
    /// The weight type and the activation type (or the operation) are not a supported pair.
    Unsupported {
        /// The type asked for.
        ty: QuantType,
        /// The operation (`"vec_dot"`, ...).
        op: &'static str,
    },
    /// A row range reaches past the rows that the weight buffer holds.
    RowsOutOfRange {
        /// The range asked for.
        rows: Range<usize>,
        /// The rows the buffer holds.
        n_rows: usize,
    },
}

impl fmt::Display for QuantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantError::NotBlockMultiple { ty, n } => write!(
                f,
                "{n} elements is not a multiple of the {ty} block size {}",
                ty.block_size()
            ),
            QuantError::WrongLength {
                what,
                expected,
                actual,
            } => write!(f, "`{what}` has length {actual}, expected {expected}"),
            QuantError::Misaligned { what, ty, align } => write!(
                f,
                "`{what}` is not aligned to {align} bytes as {ty} blocks need"
            ),
            QuantError::Unsupported { ty, op } => write!(f, "{op} is not supported for {ty}"),
            QuantError::RowsOutOfRange { rows, n_rows } => write!(
                f,
                "rows {}..{} out of range: the weights hold {n_rows} rows",
                rows.start, rows.end
            ),
        }
    }
}

impl std::error::Error for QuantError {}
