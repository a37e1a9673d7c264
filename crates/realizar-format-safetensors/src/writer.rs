//! A writer that produces safetensors files the official library reads.

use core::fmt;
use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::json::write_json_string;
use crate::reader::METADATA_KEY;
use crate::Dtype;

/// Builds a safetensors file in memory.
///
/// The layout is the official serializer's (huggingface/safetensors `safetensors/src/tensor.rs`,
/// `prepare`), so the same tensors give byte-identical files: `__metadata__` first, then the
/// tensors sorted by dtype alignment, largest first (the [`Dtype`] order, reversed), then by
/// name; the data in the same order; the header padded with spaces to a multiple of 8 bytes so
/// the data section starts aligned. Metadata keys are written sorted.
///
/// ```
/// use realizar_format_safetensors::{Dtype, SafeTensors, SafetensorsWriter};
///
/// let mut w = SafetensorsWriter::new();
/// w.metadata("format", "pt");
/// w.add_tensor("c", Dtype::U8, &[1], &[9]).unwrap();
/// w.add_tensor("b", Dtype::F32, &[2], &[0u8; 8]).unwrap();
/// w.add_tensor("a", Dtype::U8, &[3], &[1, 2, 3]).unwrap();
/// let bytes = w.to_bytes();
///
/// let st = SafeTensors::parse(&bytes).unwrap();
/// // F32 (4-byte alignment) first, then the U8 tensors by name.
/// assert_eq!(st.names().collect::<Vec<_>>(), ["b", "a", "c"]);
/// assert_eq!(st.tensor("a").unwrap().data, [1, 2, 3]);
/// assert_eq!((8 + st.header_len()) % 8, 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct SafetensorsWriter {
    tensors: BTreeMap<String, Pending>,
    metadata: BTreeMap<String, String>,
}

/// A tensor waiting to be written.
#[derive(Clone, Debug)]
struct Pending {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// Why a tensor could not be added to a [`SafetensorsWriter`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WriteError {
    /// A tensor with this name was already added.
    DuplicateName(String),
    /// The name `__metadata__` is reserved for the metadata map.
    ReservedName,
    /// The shape's element count times the dtype size overflows.
    ShapeOverflow(String),
    /// The data length is not what the shape and dtype need.
    WrongDataLength {
        /// The tensor.
        tensor: String,
        /// Bytes needed.
        expected: usize,
        /// Bytes given.
        found: usize,
    },
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::DuplicateName(t) => write!(f, "tensor `{t}` was already added"),
            WriteError::ReservedName => {
                write!(f, "`{METADATA_KEY}` is reserved and cannot name a tensor")
            }
            WriteError::ShapeOverflow(t) => write!(f, "tensor `{t}`: shape size overflows"),
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

impl SafetensorsWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a tensor; `bytes` are its little-endian elements, row-major.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
        bytes: &[u8],
    ) -> Result<(), WriteError> {
        if name == METADATA_KEY {
            return Err(WriteError::ReservedName);
        }
        if self.tensors.contains_key(name) {
            return Err(WriteError::DuplicateName(name.to_string()));
        }
        let expected = shape
            .iter()
            .try_fold(dtype.size(), |n, &d| n.checked_mul(d))
            .filter(|&n| u64::try_from(n).is_ok())
            .ok_or_else(|| WriteError::ShapeOverflow(name.to_string()))?;
        if bytes.len() != expected {
            return Err(WriteError::WrongDataLength {
                tensor: name.to_string(),
                expected,
                found: bytes.len(),
            });
        }
        let pending = Pending {
            dtype,
            shape: shape.to_vec(),
            bytes: bytes.to_vec(),
        };
        self.tensors.insert(name.to_string(), pending);
        Ok(())
    }

    /// Sets a `__metadata__` entry (replacing an earlier value for the same key).
    pub fn metadata(&mut self, key: &str, value: &str) -> &mut Self {
        self.metadata.insert(key.to_string(), value.to_string());
        self
    }

    /// The tensors in file order.
    fn ordered(&self) -> Vec<(&String, &Pending)> {
        let mut v: Vec<_> = self.tensors.iter().collect();
        v.sort_by(|(ln, l), (rn, r)| r.dtype.cmp(&l.dtype).then(ln.cmp(rn)));
        v
    }

    /// The JSON header, padded with spaces so that `8 + len` is a multiple of 8.
    fn header(&self) -> String {
        let mut h = String::from("{");
        let mut first = true;
        let mut sep = |h: &mut String| {
            if !first {
                h.push(',');
            }
            first = false;
        };
        if !self.metadata.is_empty() {
            sep(&mut h);
            write_json_string(&mut h, METADATA_KEY);
            h.push_str(":{");
            for (i, (k, v)) in self.metadata.iter().enumerate() {
                if i > 0 {
                    h.push(',');
                }
                write_json_string(&mut h, k);
                h.push(':');
                write_json_string(&mut h, v);
            }
            h.push('}');
        }
        let mut offset = 0usize;
        for (
            name,
            Pending {
                dtype,
                shape,
                bytes,
            },
        ) in self.ordered()
        {
            sep(&mut h);
            write_json_string(&mut h, name);
            h.push_str(":{\"dtype\":\"");
            h.push_str(dtype.name());
            h.push_str("\",\"shape\":[");
            for (i, d) in shape.iter().enumerate() {
                if i > 0 {
                    h.push(',');
                }
                h.push_str(&d.to_string());
            }
            let end = offset + bytes.len();
            h.push_str(&format!("],\"data_offsets\":[{offset},{end}]}}"));
            offset = end;
        }
        h.push('}');
        while h.len() % 8 != 0 {
            h.push(' ');
        }
        h
    }

    /// Writes the file to `out`.
    pub fn write_to(&self, mut out: impl Write) -> io::Result<()> {
        let header = self.header();
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(header.as_bytes())?;
        for (_, t) in self.ordered() {
            out.write_all(&t.bytes)?;
        }
        Ok(())
    }

    /// The complete file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_the_official_writer() {
        let mut w = SafetensorsWriter::new();
        w.add_tensor("b", Dtype::F16, &[1], &[0, 0]).ok();
        w.add_tensor("a", Dtype::I8, &[2, 1], &[1, 2]).ok();
        w.metadata("format", "pt").metadata("format", "np");
        let bytes = w.to_bytes();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or_default()) as usize;
        let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap_or_default();
        assert_eq!(
            header.trim_end(),
            r#"{"__metadata__":{"format":"np"},"b":{"dtype":"F16","shape":[1],"data_offsets":[0,2]},"a":{"dtype":"I8","shape":[2,1],"data_offsets":[2,4]}}"#
        );
        assert_eq!((8 + n) % 8, 0);
        assert_eq!(&bytes[8 + n..], [0, 0, 1, 2]);
    }

    /// The size field followed by `header` and `data`.
    fn expect(header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    // The expected bytes below are those of the official serializer's own tests
    // (huggingface/safetensors `safetensors/src/tensor.rs`: test_empty, test_serialization,
    // test_serialization_forced_alignement).
    #[test]
    fn empty_writer_matches_the_official_bytes() {
        assert_eq!(SafetensorsWriter::new().to_bytes(), expect("{}      ", &[]));
        let mut w = SafetensorsWriter::new();
        w.metadata("framework", "pt");
        assert_eq!(
            w.to_bytes(),
            expect(r#"{"__metadata__":{"framework":"pt"}}     "#, &[])
        );
    }

    #[test]
    fn one_tensor_matches_the_official_bytes() {
        let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let mut w = SafetensorsWriter::new();
        w.add_tensor("attn.0", Dtype::F32, &[1, 2, 3], &data).ok();
        assert_eq!(
            w.to_bytes(),
            expect(
                r#"{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}"#,
                &data
            )
        );
        let mut w = SafetensorsWriter::new();
        w.add_tensor("attn0", Dtype::F32, &[1, 1, 2, 3], &data).ok();
        assert_eq!(
            w.to_bytes(),
            expect(
                r#"{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       "#,
                &data
            )
        );
    }

    #[test]
    fn order_is_dtype_alignment_then_name() {
        let mut w = SafetensorsWriter::new();
        for (name, d) in [
            ("z", Dtype::Bool),
            ("y", Dtype::U64),
            ("x", Dtype::F32),
            ("w", Dtype::F32),
        ] {
            w.add_tensor(name, d, &[1], &vec![0; d.size()]).ok();
        }
        let names: Vec<&str> = w.ordered().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["y", "w", "x", "z"]);
    }

    #[test]
    fn add_tensor_errors() {
        let mut w = SafetensorsWriter::new();
        assert_eq!(w.add_tensor("x", Dtype::F32, &[2], &[0; 8]), Ok(()));
        assert_eq!(
            w.add_tensor("x", Dtype::F32, &[2], &[0; 8]),
            Err(WriteError::DuplicateName("x".into()))
        );
        assert_eq!(
            w.add_tensor(METADATA_KEY, Dtype::U8, &[], &[0]),
            Err(WriteError::ReservedName)
        );
        assert_eq!(
            w.add_tensor("y", Dtype::F32, &[3], &[0; 8]),
            Err(WriteError::WrongDataLength {
                tensor: "y".into(),
                expected: 12,
                found: 8
            })
        );
        assert_eq!(
            w.add_tensor("z", Dtype::F64, &[usize::MAX, 2], &[]),
            Err(WriteError::ShapeOverflow("z".into()))
        );
        let msgs = [
            WriteError::DuplicateName("x".into()).to_string(),
            WriteError::ReservedName.to_string(),
            WriteError::ShapeOverflow("z".into()).to_string(),
            WriteError::WrongDataLength {
                tensor: "y".into(),
                expected: 12,
                found: 8,
            }
            .to_string(),
        ];
        assert_eq!(msgs[3], "tensor `y`: 8 bytes of data, expected 12");
        assert!(msgs.iter().all(|m| !m.is_empty()));
    }
}
