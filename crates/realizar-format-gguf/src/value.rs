//! GGUF metadata values: borrowed views into the file, and owned values for the writer.

use core::fmt;

use crate::reader::Cursor;

/// The type of a metadata value, with GGUF's ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    /// The type for a GGUF value type id.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The GGUF value type id.
    pub fn id(self) -> u32 {
        use ValueType::*;
        match self {
            U8 => 0,
            I8 => 1,
            U16 => 2,
            I16 => 3,
            U32 => 4,
            I32 => 5,
            F32 => 6,
            Bool => 7,
            String => 8,
            Array => 9,
            U64 => 10,
            I64 => 11,
            F64 => 12,
        }
    }

    /// Size in bytes of a scalar of this type; `None` for strings and arrays.
    pub fn scalar_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// The smallest number of bytes one value of this type can take in a file.
    pub(crate) fn min_encoded_size(self) -> u64 {
        match self {
            ValueType::String => 8,
            ValueType::Array => 12,
            t => t.scalar_size().unwrap_or(1),
        }
    }

    /// Lower-case name (`"u32"`, `"string"`, ...).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metadata value borrowed from the file's bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum Value<'a> {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(&'a str),
    Array(Array<'a>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl<'a> Value<'a> {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// A human description of the type, with the element type for arrays (`"array of string"`).
    pub fn type_description(&self) -> String {
        match self {
            Value::Array(a) => format!("array of {}", a.element_type()),
            v => v.value_type().name().to_string(),
        }
    }

    /// The value as an unsigned integer, if it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is a float or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v as f64),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// Converts to an owned value.
    pub fn to_owned_value(&self) -> OwnedValue {
        match *self {
            Value::U8(v) => OwnedValue::U8(v),
            Value::I8(v) => OwnedValue::I8(v),
            Value::U16(v) => OwnedValue::U16(v),
            Value::I16(v) => OwnedValue::I16(v),
            Value::U32(v) => OwnedValue::U32(v),
            Value::I32(v) => OwnedValue::I32(v),
            Value::F32(v) => OwnedValue::F32(v),
            Value::Bool(v) => OwnedValue::Bool(v),
            Value::String(v) => OwnedValue::String(v.to_string()),
            Value::Array(a) => OwnedValue::Array(
                a.element_type(),
                a.iter().map(|v| v.to_owned_value()).collect(),
            ),
            Value::U64(v) => OwnedValue::U64(v),
            Value::I64(v) => OwnedValue::I64(v),
            Value::F64(v) => OwnedValue::F64(v),
        }
    }
}

/// A metadata array, borrowed from the file: its elements are decoded on demand, never copied
/// as a whole.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Array<'a> {
    pub(crate) elem: ValueType,
    pub(crate) len: u64,
    /// The encoded elements, already validated by the reader.
    pub(crate) raw: &'a [u8],
    /// Offset of `raw` in the file.
    pub(crate) raw_offset: u64,
}

impl<'a> Array<'a> {
    /// The type of the elements.
    pub fn element_type(&self) -> ValueType {
        self.elem
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        // The reader checked that len elements fit in the file, so len fits in usize.
        usize::try_from(self.len).unwrap_or(usize::MAX)
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Iterates over the elements.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            cursor: Cursor::new_at(self.raw, self.raw_offset),
            elem: self.elem,
            remaining: self.len,
        }
    }

    /// Iterates over the elements as strings, or `None` if this is not an array of strings.
    pub fn strings(&self) -> Option<impl Iterator<Item = &'a str> + 'a> {
        (self.elem == ValueType::String).then(|| {
            self.iter().filter_map(|v| match v {
                Value::String(s) => Some(s),
                _ => None,
            })
        })
    }

    /// The raw little-endian bytes of a scalar array (zero-copy), or `None` for strings and arrays.
    pub fn scalar_bytes(&self) -> Option<&'a [u8]> {
        self.elem.scalar_size().map(|_| self.raw)
    }

    /// The elements as `f32`, or `None` if this is not an array of f32.
    pub fn f32s(&self) -> Option<impl Iterator<Item = f32> + 'a> {
        (self.elem == ValueType::F32).then(|| {
            self.raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        })
    }

    /// The elements as `i32`, or `None` if this is not an array of i32.
    pub fn i32s(&self) -> Option<impl Iterator<Item = i32> + 'a> {
        (self.elem == ValueType::I32).then(|| {
            self.raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        })
    }

    /// The elements as `u64` if they are integers of any width (non-negative), else `None`.
    pub fn unsigned(&self) -> Option<Vec<u64>> {
        self.elem.scalar_size()?;
        self.iter().map(|v| v.as_u64()).collect()
    }
}

/// Iterator over the elements of an [`Array`].
#[derive(Clone, Debug)]
pub struct ArrayIter<'a> {
    cursor: Cursor<'a>,
    elem: ValueType,
    remaining: u64,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // The reader validated every element before handing out the array; a failure here
        // cannot happen, and ends the iteration rather than panicking.
        self.cursor.read_value(self.elem, 0).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

/// An owned metadata value, as written by [`crate::GgufWriter`].
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum OwnedValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// Element type and elements (which must all be of that type).
    Array(ValueType, Vec<OwnedValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl OwnedValue {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            OwnedValue::U8(_) => ValueType::U8,
            OwnedValue::I8(_) => ValueType::I8,
            OwnedValue::U16(_) => ValueType::U16,
            OwnedValue::I16(_) => ValueType::I16,
            OwnedValue::U32(_) => ValueType::U32,
            OwnedValue::I32(_) => ValueType::I32,
            OwnedValue::F32(_) => ValueType::F32,
            OwnedValue::Bool(_) => ValueType::Bool,
            OwnedValue::String(_) => ValueType::String,
            OwnedValue::Array(..) => ValueType::Array,
            OwnedValue::U64(_) => ValueType::U64,
            OwnedValue::I64(_) => ValueType::I64,
            OwnedValue::F64(_) => ValueType::F64,
        }
    }

    /// An array of strings.
    pub fn strings<S: AsRef<str>>(items: &[S]) -> OwnedValue {
        OwnedValue::Array(
            ValueType::String,
            items
                .iter()
                .map(|s| OwnedValue::String(s.as_ref().to_string()))
                .collect(),
        )
    }

    /// An array of f32.
    pub fn f32s(items: &[f32]) -> OwnedValue {
        OwnedValue::Array(
            ValueType::F32,
            items.iter().map(|&v| OwnedValue::F32(v)).collect(),
        )
    }

    /// An array of i32.
    pub fn i32s(items: &[i32]) -> OwnedValue {
        OwnedValue::Array(
            ValueType::I32,
            items.iter().map(|&v| OwnedValue::I32(v)).collect(),
        )
    }

    /// Appends the GGUF encoding of the value (without its type id) to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            OwnedValue::U8(v) => out.push(*v),
            OwnedValue::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::Bool(v) => out.push(u8::from(*v)),
            OwnedValue::String(s) => encode_str(s, out),
            OwnedValue::Array(t, items) => {
                out.extend_from_slice(&t.id().to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    item.encode(out);
                }
            }
            OwnedValue::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
            OwnedValue::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

/// Appends a GGUF string (u64 length + bytes).
pub(crate) fn encode_str(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_values_widen_to_u64_when_non_negative() {
        let ok = [
            (Value::U8(1), 1),
            (Value::U16(2), 2),
            (Value::U32(3), 3),
            (Value::U64(4), 4),
            (Value::I8(5), 5),
            (Value::I16(6), 6),
            (Value::I32(7), 7),
            (Value::I64(8), 8),
        ];
        for (v, want) in ok {
            assert_eq!(v.as_u64(), Some(want), "{v:?}");
        }
        for v in [
            Value::I8(-1),
            Value::I16(-1),
            Value::I32(-1),
            Value::I64(-1),
        ] {
            assert_eq!(v.as_u64(), None, "{v:?}");
        }
        assert_eq!(Value::F32(1.0).as_u64(), None);
        assert_eq!(Value::Bool(true).as_u64(), None);
    }

    #[test]
    fn numbers_widen_to_f64() {
        let cases = [
            (Value::F32(1.5), 1.5),
            (Value::F64(-2.5), -2.5),
            (Value::I8(-3), -3.0),
            (Value::I16(-4), -4.0),
            (Value::I32(-5), -5.0),
            (Value::I64(-6), -6.0),
            (Value::U8(7), 7.0),
            (Value::U64(8), 8.0),
        ];
        for (v, want) in cases {
            assert_eq!(v.as_f64(), Some(want), "{v:?}");
        }
        assert_eq!(Value::String("1").as_f64(), None);
    }

    #[test]
    fn minimum_encoded_sizes() {
        assert_eq!(ValueType::String.min_encoded_size(), 8);
        assert_eq!(ValueType::Array.min_encoded_size(), 12);
        assert_eq!(ValueType::U64.min_encoded_size(), 8);
        assert_eq!(ValueType::Bool.min_encoded_size(), 1);
    }

    #[test]
    fn ids_and_names_round_trip() {
        for id in 0..13 {
            let t = ValueType::from_id(id).unwrap();
            assert_eq!(t.id(), id);
            assert_eq!(t.to_string(), t.name());
        }
        assert_eq!(ValueType::from_id(13), None);
        assert_eq!(Value::Bool(true).type_description(), "bool");
    }
}
