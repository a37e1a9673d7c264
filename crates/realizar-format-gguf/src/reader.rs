//! The GGUF parser: a shrinking cursor over untrusted bytes, and the parsed file.

use std::collections::HashMap;

use crate::error::type_name;
use crate::{Array, GgmlType, GgufError, Value, ValueType};

/// GGUF's magic, the bytes `GGUF`.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The largest `general.alignment` accepted.
pub const MAX_ALIGNMENT: u64 = 1 << 20;
/// How deep arrays may nest inside arrays.
pub const MAX_NESTING: u32 = 8;
/// The most dimensions a tensor may have.
pub const MAX_DIMS: u32 = 4;

/// A cursor over untrusted bytes that can only move forward, and knows its file offset.
#[derive(Clone, Debug)]
pub(crate) struct Cursor<'a> {
    rest: &'a [u8],
    offset: u64,
}

impl<'a> Cursor<'a> {
    pub(crate) fn new_at(bytes: &'a [u8], offset: u64) -> Self {
        Cursor {
            rest: bytes,
            offset,
        }
    }

    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    fn remaining(&self) -> u64 {
        self.rest.len() as u64
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], GgufError> {
        let eof = GgufError::UnexpectedEof {
            offset: self.offset,
            needed: n,
        };
        let n_usize = usize::try_from(n).map_err(|_| eof.clone())?;
        let (head, tail) = self.rest.split_at_checked(n_usize).ok_or(eof)?;
        self.rest = tail;
        self.offset += n;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], GgufError> {
        let b = self.take(N as u64)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, GgufError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads a count and checks that `count` items of at least `min_item` bytes fit in the rest.
    fn count(&mut self, what: &'static str, min_item: u64) -> Result<u64, GgufError> {
        let offset = self.offset;
        let count = self.u64()?;
        let fits = count
            .checked_mul(min_item.max(1))
            .is_some_and(|need| need <= self.remaining());
        if !fits {
            return Err(GgufError::CountTooLarge {
                offset,
                what,
                count,
            });
        }
        Ok(count)
    }

    pub(crate) fn string(&mut self) -> Result<&'a str, GgufError> {
        let offset = self.offset;
        let len = self.count("string length", 1)?;
        let bytes = self.take(len)?;
        core::str::from_utf8(bytes).map_err(|_| GgufError::InvalidUtf8 { offset })
    }

    fn value_type(&mut self) -> Result<ValueType, GgufError> {
        let offset = self.offset;
        let id = self.u32()?;
        ValueType::from_id(id).ok_or(GgufError::UnknownValueType {
            offset,
            type_id: id,
        })
    }

    /// Reads one value of type `t`; `depth` is the array nesting level.
    pub(crate) fn read_value(&mut self, t: ValueType, depth: u32) -> Result<Value<'a>, GgufError> {
        Ok(match t {
            ValueType::U8 => Value::U8(self.u8()?),
            ValueType::I8 => Value::I8(i8::from_le_bytes(self.array()?)),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array()?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array()?)),
            ValueType::U32 => Value::U32(self.u32()?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array()?)),
            ValueType::U64 => Value::U64(self.u64()?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array()?)),
            ValueType::Bool => {
                let offset = self.offset;
                match self.u8()? {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    value => return Err(GgufError::InvalidBool { offset, value }),
                }
            }
            ValueType::String => Value::String(self.string()?),
            ValueType::Array => {
                let start = self.offset;
                if depth >= MAX_NESTING {
                    return Err(GgufError::NestingTooDeep { offset: start });
                }
                let elem = self.value_type()?;
                let len = self.count("array length", elem.min_encoded_size())?;
                let raw_offset = self.offset;
                let raw_start = self.rest;
                if let Some(size) = elem.scalar_size() {
                    // Cannot overflow: count() checked len * size against the bytes left.
                    let bytes = self.take(len * size)?;
                    if elem == ValueType::Bool {
                        if let Some(i) = bytes.iter().position(|&b| b > 1) {
                            return Err(GgufError::InvalidBool {
                                offset: raw_offset + i as u64,
                                value: bytes[i],
                            });
                        }
                    }
                } else {
                    for _ in 0..len {
                        self.read_value(elem, depth + 1)?;
                    }
                }
                let used = (self.offset - raw_offset) as usize;
                Value::Array(Array {
                    elem,
                    len,
                    raw: &raw_start[..used],
                    raw_offset,
                })
            }
        })
    }
}

/// Information about one tensor, as stored in the file's tensor info table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo<'a> {
    /// The tensor's name.
    pub name: &'a str,
    /// Dimensions in ggml order: `dims[0]` is the innermost (contiguous) one.
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of the data from the start of the data section.
    pub data_offset: u64,
    /// Size of the data in bytes.
    pub size: u64,
    /// Offset in the file where this tensor's info record starts.
    pub info_offset: u64,
}

impl TensorInfo<'_> {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        // Checked at parse time not to overflow.
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: metadata and tensor infos, borrowing the file's bytes.
#[derive(Clone, Debug)]
pub struct GgufFile<'a> {
    version: u32,
    metadata: Vec<(&'a str, Value<'a>, u64)>,
    index: HashMap<&'a str, usize>,
    tensors: Vec<TensorInfo<'a>>,
    tensor_index: HashMap<&'a str, usize>,
    alignment: u64,
    data_start: u64,
    bytes: &'a [u8],
}

/// Keys with a meaning fixed by the GGUF specification, and the value type they must have.
const KNOWN_KEYS: &[(&str, ValueType, Option<ValueType>)] = &[
    ("general.alignment", ValueType::U32, None),
    ("general.architecture", ValueType::String, None),
    ("general.name", ValueType::String, None),
    ("general.file_type", ValueType::U32, None),
    ("general.quantization_version", ValueType::U32, None),
    ("tokenizer.ggml.model", ValueType::String, None),
    (
        "tokenizer.ggml.tokens",
        ValueType::Array,
        Some(ValueType::String),
    ),
    (
        "tokenizer.ggml.merges",
        ValueType::Array,
        Some(ValueType::String),
    ),
    (
        "tokenizer.ggml.scores",
        ValueType::Array,
        Some(ValueType::F32),
    ),
    (
        "tokenizer.ggml.token_type",
        ValueType::Array,
        Some(ValueType::I32),
    ),
];

impl<'a> GgufFile<'a> {
    /// Parses a GGUF file held in memory, validating everything before handing anything out.
    pub fn parse(bytes: &'a [u8]) -> Result<GgufFile<'a>, GgufError> {
        let mut c = Cursor::new_at(bytes, 0);
        let magic = c.array::<4>()?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic {
                offset: 0,
                found: magic,
            });
        }
        let version_offset = c.offset();
        let version = c.u32()?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion {
                offset: version_offset,
                version,
            });
        }
        // A tensor info takes at least 8 (name len) + 4 (n_dims) + 8 (one dim) + 4 + 8 bytes;
        // a key-value pair at least 8 (key len) + 1 (key) + 4 (type) + 1 (value).
        let n_tensors = c.count("tensor count", 32)?;
        let n_kv = c.count("metadata count", 14)?;

        let mut metadata = Vec::with_capacity(n_kv as usize);
        let mut index = HashMap::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let key_offset = c.offset();
            let key = c.string()?;
            if key.is_empty() {
                return Err(GgufError::EmptyKey { offset: key_offset });
            }
            if index.contains_key(key) {
                return Err(GgufError::DuplicateKey {
                    offset: key_offset,
                    key: key.to_string(),
                });
            }
            let t = c.value_type()?;
            let value_offset = c.offset();
            let value = c.read_value(t, 0)?;
            check_known_key(key, &value, value_offset)?;
            index.insert(key, metadata.len());
            metadata.push((key, value, value_offset));
        }

        let mut alignment = DEFAULT_ALIGNMENT;
        if let Some(&i) = index.get("general.alignment") {
            let (_, value, offset) = metadata[i];
            let a = value.as_u64().unwrap_or(0);
            if a == 0 || !a.is_power_of_two() || a > MAX_ALIGNMENT {
                return Err(GgufError::BadAlignment {
                    offset,
                    alignment: a,
                });
            }
            alignment = a;
        }

        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut tensor_index = HashMap::with_capacity(n_tensors as usize);
        let mut offset_fields = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let info_offset = c.offset();
            let name = c.string()?;
            if tensor_index.contains_key(name) {
                return Err(GgufError::DuplicateTensorName {
                    offset: info_offset,
                    tensor: name.to_string(),
                });
            }
            let n_dims = c.u32()?;
            if !(1..=MAX_DIMS).contains(&n_dims) {
                return Err(GgufError::BadDimensionCount {
                    offset: info_offset,
                    tensor: name.to_string(),
                    n_dims,
                });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for axis in 0..n_dims as usize {
                let dim_offset = c.offset();
                let d = c.u64()?;
                if d == 0 {
                    return Err(GgufError::ZeroDimension {
                        offset: dim_offset,
                        tensor: name.to_string(),
                        axis,
                    });
                }
                dims.push(d);
            }
            let type_offset = c.offset();
            let type_id = c.u32()?;
            let ty = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
                offset: type_offset,
                tensor: name.to_string(),
                type_id,
            })?;
            if dims[0] % ty.block_size() != 0 {
                return Err(GgufError::NotBlockMultiple {
                    offset: info_offset,
                    tensor: name.to_string(),
                    ty,
                    ne0: dims[0],
                });
            }
            let size = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .and_then(|n| ty.bytes_for(n))
                .ok_or_else(|| GgufError::SizeOverflow {
                    offset: info_offset,
                    tensor: name.to_string(),
                })?;
            let field_offset = c.offset();
            let data_offset = c.u64()?;
            if data_offset % alignment != 0 {
                return Err(GgufError::MisalignedTensor {
                    offset: field_offset,
                    tensor: name.to_string(),
                    data_offset,
                    alignment,
                });
            }
            tensor_index.insert(name, tensors.len());
            offset_fields.push(field_offset);
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                data_offset,
                size,
                info_offset,
            });
        }

        let file_len = bytes.len() as u64;
        let header_end = c.offset();
        let data_start = header_end.div_ceil(alignment) * alignment;
        if data_start > file_len && !tensors.is_empty() {
            return Err(GgufError::DataSectionPastEnd {
                offset: data_start,
                file_len,
            });
        }
        for (t, &field) in tensors.iter().zip(&offset_fields) {
            let end = data_start
                .checked_add(t.data_offset)
                .and_then(|s| s.checked_add(t.size));
            match end {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(GgufError::TensorOutOfBounds {
                        offset: field,
                        tensor: t.name.to_string(),
                        end: end.unwrap_or(u64::MAX),
                        file_len,
                    })
                }
            }
        }
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&i| tensors[i].data_offset);
        for pair in order.windows(2) {
            let (a, b) = (&tensors[pair[0]], &tensors[pair[1]]);
            // In bounds (checked above), so the addition cannot overflow.
            if a.data_offset + a.size > b.data_offset {
                return Err(GgufError::OverlappingTensors {
                    offset: offset_fields[pair[1]],
                    tensor: b.name.to_string(),
                    other: a.name.to_string(),
                });
            }
        }

        Ok(GgufFile {
            version,
            metadata,
            index,
            tensors,
            tensor_index,
            alignment,
            data_start,
            bytes,
        })
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of tensor data.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Offset of the tensor data section in the file.
    pub fn data_offset(&self) -> u64 {
        self.data_start
    }

    /// The metadata in file order.
    pub fn metadata(&self) -> impl ExactSizeIterator<Item = (&'a str, Value<'a>)> + '_ {
        self.metadata.iter().map(|(k, v, _)| (*k, *v))
    }

    /// The value of a metadata key.
    pub fn get(&self, key: &str) -> Option<Value<'a>> {
        self.index.get(key).map(|&i| self.metadata[i].1)
    }

    fn typed<T>(
        &self,
        key: &str,
        expected: &'static str,
        f: impl FnOnce(Value<'a>) -> Option<T>,
    ) -> Result<T, GgufError> {
        let &i = self.index.get(key).ok_or_else(|| GgufError::KeyNotFound {
            key: key.to_string(),
        })?;
        let (_, value, offset) = self.metadata[i];
        f(value).ok_or_else(|| GgufError::WrongType {
            offset,
            key: key.to_string(),
            expected,
            found: value.type_description(),
        })
    }

    /// A u32 value (u8/u16/u32, and non-negative signed values that fit, are accepted).
    pub fn get_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.typed(key, "u32", |v| {
            v.as_u64().and_then(|x| u32::try_from(x).ok())
        })
    }

    /// A u64 value (any non-negative integer).
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.typed(key, "u64", |v| v.as_u64())
    }

    /// An f32 value (f32, or f64 narrowed).
    pub fn get_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.typed(key, "f32", |v| match v {
            Value::F32(x) => Some(x),
            Value::F64(x) => Some(x as f32),
            _ => None,
        })
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<bool, GgufError> {
        self.typed(key, "bool", |v| match v {
            Value::Bool(b) => Some(b),
            _ => None,
        })
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&'a str, GgufError> {
        self.typed(key, "string", |v| match v {
            Value::String(s) => Some(s),
            _ => None,
        })
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<Array<'a>, GgufError> {
        self.typed(key, "array", |v| match v {
            Value::Array(a) => Some(a),
            _ => None,
        })
    }

    /// An array of strings, as a zero-copy iterator.
    pub fn get_strings(&self, key: &str) -> Result<impl Iterator<Item = &'a str> + 'a, GgufError> {
        self.typed(key, "array of string", |v| match v {
            Value::Array(a) => a.strings(),
            _ => None,
        })
    }

    /// The architecture named by `general.architecture`.
    pub fn architecture(&self) -> Result<&'a str, GgufError> {
        self.get_str("general.architecture")
    }

    /// The tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    /// The info of a tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo<'a>> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor, borrowed from the file (exactly `info.size` bytes).
    ///
    /// Known but unsupported types (IQ*, TQ*, MXFP4) give
    /// [`GgufError::UnsupportedTensorType`].
    pub fn tensor_data(&self, name: &str) -> Result<&'a [u8], GgufError> {
        let info = self.tensor(name).ok_or_else(|| GgufError::TensorNotFound {
            tensor: name.to_string(),
        })?;
        if !info.ty.is_supported() {
            return Err(GgufError::UnsupportedTensorType {
                tensor: name.to_string(),
                ty: info.ty,
            });
        }
        // Bounds were checked at parse time; `get` keeps this panic-free regardless.
        let start = self.data_start + info.data_offset;
        let end = start + info.size;
        usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| self.bytes.get(s..e))
            .ok_or_else(|| GgufError::TensorOutOfBounds {
                offset: info.info_offset,
                tensor: name.to_string(),
                end,
                file_len: self.bytes.len() as u64,
            })
    }
}

fn check_known_key(key: &str, value: &Value<'_>, offset: u64) -> Result<(), GgufError> {
    let Some(&(_, t, elem)) = KNOWN_KEYS.iter().find(|k| k.0 == key) else {
        return Ok(());
    };
    let ok = value.value_type() == t
        && match (value, elem) {
            (Value::Array(a), Some(e)) => a.element_type() == e,
            _ => true,
        };
    if ok {
        return Ok(());
    }
    Err(GgufError::WrongType {
        offset,
        key: key.to_string(),
        expected: match elem {
            Some(ValueType::String) => "array of string",
            Some(ValueType::F32) => "array of f32",
            Some(ValueType::I32) => "array of i32",
            _ => t.name(),
        },
        found: match value {
            Value::Array(a) => format!("array of {}", type_name(a.element_type())),
            v => type_name(v.value_type()),
        },
    })
}
