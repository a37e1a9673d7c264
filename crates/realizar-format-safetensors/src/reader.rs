//! The safetensors reader.
//!
//! Format (huggingface/safetensors, `safetensors/src/tensor.rs` and its README): an 8-byte
//! little-endian header size `N`, `N` bytes of UTF-8 JSON (possibly padded with trailing
//! spaces), then the data section. The JSON object maps each tensor name to
//! `{"dtype", "shape", "data_offsets": [begin, end]}` (offsets relative to the data section) and
//! may hold `"__metadata__"`, a map of strings. The tensors tile the data section exactly.

use std::collections::{BTreeMap, BTreeSet};

use crate::json::{is_plain_integer, Cursor, JsonError};
use crate::{Dtype, SafetensorsError, TensorView};

/// The largest header accepted, in bytes (the limit of the official reader).
pub const MAX_HEADER_SIZE: u64 = 100_000_000;

/// The key of the optional string map in the header.
pub const METADATA_KEY: &str = "__metadata__";

/// The longest JSON snippet quoted in an error.
const MAX_QUOTE: usize = 40;

/// A JSON value that was not what was expected: its file offset and (shortened) text.
type Quoted = (u64, String);

/// One tensor, as parsed.
#[derive(Clone, Debug)]
struct Entry<'a> {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: &'a [u8],
}

/// A parsed safetensors file, borrowing its bytes.
///
/// Construct with [`SafeTensors::parse`] (or [`crate::MmapSafetensors`]); every header field,
/// offset and length has been checked, so views never reach outside the file.
#[derive(Clone, Debug)]
pub struct SafeTensors<'a> {
    header_len: usize,
    /// Tensors in data-offset order.
    entries: Vec<Entry<'a>>,
    /// Name → index into `entries`.
    by_name: BTreeMap<String, usize>,
    metadata: Option<BTreeMap<String, String>>,
}

/// A tensor entry before its offsets are checked against the rest of the file.
struct RawEntry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    begin: u64,
    end: u64,
    /// File offset of the `data_offsets` value (for errors).
    offsets_at: u64,
}

/// Reads the header of a file whose JSON starts at file offset 8.
struct HeaderReader<'t> {
    c: Cursor<'t>,
}

impl<'t> HeaderReader<'t> {
    /// The file offset of a position in the header.
    fn at(pos: usize) -> u64 {
        8 + pos as u64
    }

    fn here(&self) -> u64 {
        Self::at(self.c.pos())
    }

    fn json(e: JsonError) -> SafetensorsError {
        SafetensorsError::Json {
            offset: Self::at(e.offset),
            kind: e.kind,
        }
    }

    /// Skips a value (already known to be valid JSON) and returns its text, shortened.
    fn quote_value(&mut self) -> Result<String, SafetensorsError> {
        let start = self.c.pos();
        self.c.skip_value(0).map_err(Self::json)?;
        let text = self.c.since(start);
        Ok(match text.char_indices().nth(MAX_QUOTE) {
            Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or("")),
            None => text.to_string(),
        })
    }

    /// Reads `__metadata__`.
    fn metadata(&mut self) -> Result<BTreeMap<String, String>, SafetensorsError> {
        if self.c.peek() != Some(b'{') {
            return Err(SafetensorsError::MetadataNotStringMap {
                offset: self.here(),
            });
        }
        self.c.open_object().map_err(Self::json)?;
        let mut map = BTreeMap::new();
        let mut first = true;
        let mut key = String::new();
        while let Some(at) = self
            .c
            .next_member(&mut first, &mut key)
            .map_err(Self::json)?
        {
            if self.c.peek() != Some(b'"') {
                return Err(SafetensorsError::MetadataNotStringMap {
                    offset: self.here(),
                });
            }
            let mut value = String::new();
            self.c.string(Some(&mut value)).map_err(Self::json)?;
            if map.contains_key(&key) {
                return Err(SafetensorsError::DuplicateKey {
                    offset: Self::at(at),
                    within: METADATA_KEY.to_string(),
                    key,
                });
            }
            map.insert(key.clone(), value);
        }
        Ok(map)
    }

    /// Reads an array whose elements should be non-negative integers. Each element is its value,
    /// or (when it is not an integer that fits in u64) its file offset and quoted text.
    fn integers(
        &mut self,
        tensor: &str,
        field: &'static str,
        expected: &'static str,
    ) -> Result<Vec<Result<u64, Quoted>>, SafetensorsError> {
        if self.c.peek() != Some(b'[') {
            return Err(SafetensorsError::WrongFieldType {
                offset: self.here(),
                tensor: tensor.to_string(),
                field,
                expected,
            });
        }
        self.c.open_array().map_err(Self::json)?;
        let mut out = Vec::new();
        let mut first = true;
        while self.c.next_element(&mut first).map_err(Self::json)? {
            let at = self.here();
            let start = self.c.pos();
            let is_number = matches!(self.c.peek(), Some(b'-' | b'0'..=b'9'));
            let text = self.quote_value()?;
            let raw = self.c.since(start);
            match raw.parse::<u64>() {
                Ok(v) if is_number && is_plain_integer(raw) => out.push(Ok(v)),
                _ => out.push(Err((at, text))),
            }
        }
        Ok(out)
    }

    /// Reads one tensor entry, whose value starts at the cursor.
    fn entry(&mut self, name: String) -> Result<RawEntry, SafetensorsError> {
        let entry_at = self.here();
        if self.c.peek() != Some(b'{') {
            return Err(SafetensorsError::EntryNotObject {
                offset: entry_at,
                tensor: name,
            });
        }
        self.c.open_object().map_err(Self::json)?;
        let mut dtype = None;
        let mut shape: Option<(u64, Vec<usize>)> = None;
        let mut offsets: Option<(u64, u64, u64)> = None;
        let mut first = true;
        let mut key = String::new();
        while let Some(at) = self
            .c
            .next_member(&mut first, &mut key)
            .map_err(Self::json)?
        {
            let seen = match key.as_str() {
                "dtype" => dtype.is_some(),
                "shape" => shape.is_some(),
                "data_offsets" => offsets.is_some(),
                _ => {
                    return Err(SafetensorsError::UnknownField {
                        offset: Self::at(at),
                        tensor: name,
                        field: key,
                    })
                }
            };
            if seen {
                return Err(SafetensorsError::DuplicateKey {
                    offset: Self::at(at),
                    within: name,
                    key,
                });
            }
            let value_at = self.here();
            match key.as_str() {
                "dtype" => {
                    if self.c.peek() != Some(b'"') {
                        return Err(SafetensorsError::WrongFieldType {
                            offset: value_at,
                            tensor: name,
                            field: "dtype",
                            expected: "a string",
                        });
                    }
                    let mut s = String::new();
                    self.c.string(Some(&mut s)).map_err(Self::json)?;
                    match Dtype::from_name(&s) {
                        Some(d) => dtype = Some(d),
                        None => {
                            return Err(SafetensorsError::UnknownDtype {
                                offset: value_at,
                                tensor: name,
                                dtype: s,
                            })
                        }
                    }
                }
                "shape" => {
                    let dims = self.integers(&name, "shape", "an array of integers")?;
                    let mut out = Vec::with_capacity(dims.len());
                    for d in dims {
                        match d.map(usize::try_from) {
                            Ok(Ok(v)) => out.push(v),
                            Ok(Err(_)) => {
                                return Err(SafetensorsError::BadDimension {
                                    offset: value_at,
                                    tensor: name,
                                    value: "(too large for usize)".to_string(),
                                })
                            }
                            Err((offset, value)) => {
                                return Err(SafetensorsError::BadDimension {
                                    offset,
                                    tensor: name,
                                    value,
                                })
                            }
                        }
                    }
                    shape = Some((value_at, out));
                }
                _ => {
                    const EXPECTED: &str = "an array of two integers";
                    let items = self.integers(&name, "data_offsets", EXPECTED)?;
                    let mut vals = Vec::with_capacity(2);
                    for item in items {
                        match item {
                            Ok(v) => vals.push(v),
                            Err((offset, value)) => {
                                // An integer too large for u64 overflows; anything else is not
                                // an offset at all.
                                let digits = value.trim_end_matches('…');
                                return Err(if is_plain_integer(digits) {
                                    SafetensorsError::OffsetOverflow {
                                        offset,
                                        tensor: name,
                                    }
                                } else {
                                    SafetensorsError::BadDataOffset {
                                        offset,
                                        tensor: name,
                                        value,
                                    }
                                });
                            }
                        }
                    }
                    match vals.as_slice() {
                        &[begin, end] => offsets = Some((value_at, begin, end)),
                        _ => {
                            return Err(SafetensorsError::WrongFieldType {
                                offset: value_at,
                                tensor: name,
                                field: "data_offsets",
                                expected: EXPECTED,
                            })
                        }
                    }
                }
            }
        }
        let missing = |field| SafetensorsError::MissingField {
            offset: entry_at,
            tensor: name.clone(),
            field,
        };
        let dtype = dtype.ok_or_else(|| missing("dtype"))?;
        let (shape_at, shape) = shape.ok_or_else(|| missing("shape"))?;
        let (offsets_at, begin, end) = offsets.ok_or_else(|| missing("data_offsets"))?;
        if begin > end {
            return Err(SafetensorsError::OffsetsReversed {
                offset: offsets_at,
                tensor: name,
                begin,
                end,
            });
        }
        let expected = shape
            .iter()
            .try_fold(dtype.size() as u64, |n, &d| n.checked_mul(d as u64))
            .filter(|&n| usize::try_from(n).is_ok())
            .ok_or_else(|| SafetensorsError::ShapeOverflow {
                offset: shape_at,
                tensor: name.clone(),
            })?;
        if end - begin != expected {
            return Err(SafetensorsError::LengthMismatch {
                offset: offsets_at,
                tensor: name,
                expected,
                actual: end - begin,
            });
        }
        Ok(RawEntry {
            name,
            dtype,
            shape,
            begin,
            end,
            offsets_at,
        })
    }
}

impl<'a> SafeTensors<'a> {
    /// Parses and checks a complete safetensors file.
    ///
    /// Checks, each with its own [`SafetensorsError`] variant: the header size (at most
    /// [`MAX_HEADER_SIZE`] and within the file), UTF-8, strict JSON (no duplicate keys, depth at
    /// most [`crate::MAX_JSON_DEPTH`]), the header schema (no unknown fields, known dtypes,
    /// non-negative integer shapes, two integer data offsets), shape × dtype size = byte length
    /// with checked arithmetic, and that the tensors tile the data section exactly up to the end
    /// of the file, with no hole and no overlap.
    pub fn parse(bytes: &'a [u8]) -> Result<SafeTensors<'a>, SafetensorsError> {
        let file_len = bytes.len() as u64;
        let (size_bytes, rest) =
            bytes
                .split_first_chunk::<8>()
                .ok_or(SafetensorsError::FileTooShort {
                    offset: 0,
                    file_len,
                })?;
        let size = u64::from_le_bytes(*size_bytes);
        if size > MAX_HEADER_SIZE {
            return Err(SafetensorsError::HeaderTooLarge { offset: 0, size });
        }
        let (header, data) = usize::try_from(size)
            .ok()
            .and_then(|n| rest.split_at_checked(n))
            .ok_or(SafetensorsError::HeaderPastEnd {
                offset: 0,
                size,
                file_len,
            })?;
        let text = core::str::from_utf8(header).map_err(|e| SafetensorsError::InvalidUtf8 {
            offset: 8 + e.valid_up_to() as u64,
        })?;

        // Pass 1: the whole header must be valid JSON before its meaning is looked at.
        let mut check = Cursor::new(text);
        check.ws();
        check.skip_value(0).map_err(HeaderReader::json)?;
        check.end().map_err(HeaderReader::json)?;

        // Pass 2: walk the (valid) JSON and check the schema.
        let mut r = HeaderReader {
            c: Cursor::new(text),
        };
        r.c.ws();
        if r.c.peek() != Some(b'{') {
            return Err(SafetensorsError::HeaderNotObject { offset: r.here() });
        }
        r.c.open_object().map_err(HeaderReader::json)?;
        let mut metadata = None;
        let mut raw = Vec::new();
        let mut names = BTreeSet::new();
        let mut first = true;
        let mut key = String::new();
        while let Some(at) =
            r.c.next_member(&mut first, &mut key)
                .map_err(HeaderReader::json)?
        {
            if !names.insert(key.clone()) {
                return Err(SafetensorsError::DuplicateTensorName {
                    offset: HeaderReader::at(at),
                    tensor: key,
                });
            }
            if key == METADATA_KEY {
                metadata = Some(r.metadata()?);
            } else {
                raw.push(r.entry(key.clone())?);
            }
        }

        // The tensors must tile the data section: sorted by offsets, each begins where the
        // previous one ended, and the last ends at the end of the file.
        let data_len = data.len() as u64;
        let data_start = 8 + size;
        for e in &raw {
            if e.end > data_len {
                return Err(SafetensorsError::TensorOutOfBounds {
                    offset: e.offsets_at,
                    tensor: e.name.clone(),
                    end: e.end,
                    data_len,
                });
            }
        }
        raw.sort_by_key(|e| (e.begin, e.end));
        let mut covered = 0u64;
        let mut prev: Option<&str> = None;
        for e in &raw {
            if e.begin > covered {
                return Err(SafetensorsError::Hole {
                    offset: e.offsets_at,
                    tensor: e.name.clone(),
                    expected_begin: covered,
                });
            }
            if e.begin < covered {
                return Err(SafetensorsError::Overlap {
                    offset: e.offsets_at,
                    tensor: e.name.clone(),
                    other: prev.unwrap_or_default().to_string(),
                });
            }
            covered = e.end;
            prev = Some(&e.name);
        }
        if covered != data_len {
            return Err(SafetensorsError::TrailingBytes {
                offset: data_start + covered,
                count: data_len - covered,
            });
        }

        let mut entries = Vec::with_capacity(raw.len());
        let mut by_name = BTreeMap::new();
        for e in raw {
            // In range: checked above against the data length, which fits in usize.
            let slice = usize::try_from(e.begin)
                .ok()
                .zip(usize::try_from(e.end).ok())
                .and_then(|(b, end)| data.get(b..end))
                .ok_or(SafetensorsError::TensorOutOfBounds {
                    offset: e.offsets_at,
                    tensor: e.name.clone(),
                    end: e.end,
                    data_len,
                })?;
            by_name.insert(e.name.clone(), entries.len());
            entries.push(Entry {
                name: e.name,
                dtype: e.dtype,
                shape: e.shape,
                data: slice,
            });
        }
        Ok(SafeTensors {
            header_len: header.len(),
            entries,
            by_name,
            metadata,
        })
    }

    fn view(e: &Entry<'a>) -> TensorView<'a> {
        TensorView {
            dtype: e.dtype,
            shape: e.shape.clone(),
            data: e.data,
        }
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<TensorView<'a>> {
        let i = *self.by_name.get(name)?;
        self.entries.get(i).map(Self::view)
    }

    /// All tensors with their names, in file (data offset) order.
    pub fn tensors(&self) -> impl ExactSizeIterator<Item = (&str, TensorView<'a>)> + '_ {
        self.entries
            .iter()
            .map(|e| (e.name.as_str(), Self::view(e)))
    }

    /// The tensor names, in file (data offset) order.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the file has no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `__metadata__` string map, when the header has one.
    pub fn metadata(&self) -> Option<&BTreeMap<String, String>> {
        self.metadata.as_ref()
    }

    /// The length of the JSON header in bytes (padding included, the 8-byte size excluded); the
    /// data section starts at file offset `8 + header_len()`.
    pub fn header_len(&self) -> usize {
        self.header_len
    }
}
