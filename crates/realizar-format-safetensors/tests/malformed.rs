//! Every malformed file of the corpus is rejected with the exact error variant and the byte
//! offset of the problem; every valid file parses.
//!
//! Set `REALIZAR_WRITE_CORPUS=<dir>` to also write the corpus files into `<dir>` (the fuzz seed
//! corpus in `fuzz/corpus/safetensors/` was made this way).

mod corpus;

use realizar_format_safetensors::{
    Dtype, JsonErrorKind, SafeTensors, SafetensorsError as E, MAX_HEADER_SIZE,
};

/// The file offset of the `nth` occurrence of `needle` in `bytes`.
fn at_nth(bytes: &[u8], needle: &str, nth: usize) -> u64 {
    let n = needle.len();
    let pos = bytes
        .windows(n)
        .enumerate()
        .filter(|(_, w)| *w == needle.as_bytes())
        .nth(nth)
        .map(|(i, _)| i)
        .unwrap_or_else(|| panic!("{needle:?} not found"));
    pos as u64
}

fn at(bytes: &[u8], needle: &str) -> u64 {
    at_nth(bytes, needle, 0)
}

/// Checks the error of one malformed case: its variant, and its offset where the case pins one.
fn check(name: &str, bytes: &[u8], e: &E) {
    let len = bytes.len() as u64;
    let (ok, offset) = match name {
        "empty_file" => (matches!(e, E::FileTooShort { file_len: 0, .. }), 0),
        "file_shorter_than_size_field" => (matches!(e, E::FileTooShort { file_len: 5, .. }), 0),
        "header_size_over_limit" => (
            matches!(e, E::HeaderTooLarge { size, .. } if *size == MAX_HEADER_SIZE + 1),
            0,
        ),
        "header_size_u64_max" => (matches!(e, E::HeaderTooLarge { size: u64::MAX, .. }), 0),
        "header_size_past_eof" => (
            matches!(e, E::HeaderPastEnd { size: 64, file_len, .. } if *file_len == len),
            0,
        ),
        "truncated_json_header" => (
            matches!(
                e,
                E::Json {
                    kind: JsonErrorKind::UnexpectedEnd,
                    ..
                }
            ),
            len,
        ),
        "invalid_utf8_header" => (
            matches!(e, E::InvalidUtf8 { .. }),
            bytes.iter().position(|&b| b == 0xff).unwrap_or_default() as u64,
        ),
        "invalid_json" => (
            matches!(
                e,
                E::Json {
                    kind: JsonErrorKind::Unexpected { found: '}', .. },
                    ..
                }
            ),
            at(bytes, "}"),
        ),
        "json_trailing_characters" => (
            matches!(
                e,
                E::Json {
                    kind: JsonErrorKind::TrailingCharacters,
                    ..
                }
            ),
            at(bytes, "x"),
        ),
        "json_lone_surrogate" => (
            matches!(
                e,
                E::Json {
                    kind: JsonErrorKind::InvalidUnicodeEscape,
                    ..
                }
            ),
            at(bytes, "\\ud800"),
        ),
        "json_control_character" => (
            matches!(
                e,
                E::Json {
                    kind: JsonErrorKind::ControlCharacter,
                    ..
                }
            ),
            at(bytes, "\u{1}"),
        ),
        "json_too_deep" => (
            matches!(
                e,
                E::Json {
                    kind: JsonErrorKind::TooDeep,
                    ..
                }
            ),
            // The outer object is level 1, so the 32nd `[` is the first one too deep.
            at(bytes, "[") + 31,
        ),
        "header_not_object" => (matches!(e, E::HeaderNotObject { .. }), 8),
        "entry_not_object" => (
            matches!(e, E::EntryNotObject { tensor, .. } if tensor == "t"),
            at(bytes, "[0,8]"),
        ),
        "unknown_dtype" => (
            matches!(e, E::UnknownDtype { dtype, tensor, .. } if dtype == "F33" && tensor == "t"),
            at(bytes, "\"F33\""),
        ),
        "dtype_not_string" => (
            matches!(e, E::WrongFieldType { field: "dtype", .. }),
            at(bytes, "4,"),
        ),
        "negative_dimension" => (
            matches!(e, E::BadDimension { value, .. } if value == "-2"),
            at(bytes, "-2"),
        ),
        "float_dimension" => (
            matches!(e, E::BadDimension { value, .. } if value == "2.0"),
            at(bytes, "2.0"),
        ),
        "string_dimension" => (
            matches!(e, E::BadDimension { value, .. } if value == "\"2\""),
            at(bytes, "\"2\""),
        ),
        "dimension_over_u64" => (
            matches!(e, E::BadDimension { .. }),
            at(bytes, "18446744073709551616"),
        ),
        "long_string_dimension" => (
            // The quoted value is shortened to 40 characters and an ellipsis.
            matches!(e, E::BadDimension { value, .. }
                if value.chars().count() == 41 && value.ends_with("xx…")),
            at(bytes, "[\"x") + 1,
        ),
        "shape_not_array" => (
            matches!(e, E::WrongFieldType { field: "shape", .. }),
            at(bytes, "2,\"data"),
        ),
        "shape_product_overflow" => (
            matches!(e, E::ShapeOverflow { tensor, .. } if tensor == "t"),
            at(bytes, "[4294967296"),
        ),
        "shape_times_dtype_not_length" => (
            matches!(
                e,
                E::LengthMismatch {
                    expected: 12,
                    actual: 8,
                    ..
                }
            ),
            at(bytes, "[0,8]"),
        ),
        "offsets_begin_after_end" => (
            matches!(
                e,
                E::OffsetsReversed {
                    begin: 8,
                    end: 0,
                    ..
                }
            ),
            at(bytes, "[8,0]"),
        ),
        "offsets_three_elements" => (
            matches!(
                e,
                E::WrongFieldType {
                    field: "data_offsets",
                    ..
                }
            ),
            at(bytes, "[0,8,8]"),
        ),
        "offsets_negative" => (
            matches!(e, E::BadDataOffset { value, .. } if value == "-8"),
            at(bytes, "-8"),
        ),
        "offset_overflows_u64" => (
            matches!(e, E::OffsetOverflow { tensor, .. } if tensor == "t"),
            at(bytes, "18446744073709551624"),
        ),
        "offset_with_100_digits" => (matches!(e, E::OffsetOverflow { .. }), at(bytes, "9999")),
        "hole_between_tensors" => (
            matches!(e, E::Hole { tensor, expected_begin: 4, .. } if tensor == "b"),
            at(bytes, "[8,12]"),
        ),
        "hole_before_first_tensor" => (
            matches!(e, E::Hole { tensor, expected_begin: 0, .. } if tensor == "a"),
            at(bytes, "[4,8]"),
        ),
        "overlapping_tensors" => (
            matches!(e, E::Overlap { tensor, other, .. } if tensor == "b" && other == "a"),
            at(bytes, "[4,12]"),
        ),
        "data_past_end_of_file" => (
            matches!(
                e,
                E::TensorOutOfBounds {
                    end: 8,
                    data_len: 4,
                    ..
                }
            ),
            at(bytes, "[0,8]"),
        ),
        "trailing_garbage_after_data" => (matches!(e, E::TrailingBytes { count: 2, .. }), len - 2),
        "data_without_tensors" => (matches!(e, E::TrailingBytes { count: 3, .. }), len - 3),
        "duplicate_tensor_name" => (
            matches!(e, E::DuplicateTensorName { tensor, .. } if tensor == "t"),
            at_nth(bytes, "\"t\"", 1),
        ),
        "duplicate_metadata" => (
            matches!(e, E::DuplicateTensorName { tensor, .. } if tensor == "__metadata__"),
            at_nth(bytes, "\"__metadata__\"", 1),
        ),
        "duplicate_key_in_entry" => (
            matches!(e, E::DuplicateKey { within, key, .. } if within == "t" && key == "dtype"),
            at_nth(bytes, "\"dtype\"", 1),
        ),
        "duplicate_key_in_metadata" => (
            matches!(e, E::DuplicateKey { within, key, .. } if within == "__metadata__" && key == "k"),
            at_nth(bytes, "\"k\"", 1),
        ),
        "metadata_value_not_string" => {
            (matches!(e, E::MetadataNotStringMap { .. }), at(bytes, "1}"))
        }
        "metadata_not_object" => (matches!(e, E::MetadataNotStringMap { .. }), at(bytes, "[")),
        "missing_dtype" => (
            matches!(e, E::MissingField { field: "dtype", .. }),
            at(bytes, "{\"shape"),
        ),
        "missing_shape" => (
            matches!(e, E::MissingField { field: "shape", .. }),
            at(bytes, "{\"dtype"),
        ),
        "missing_data_offsets" => (
            matches!(
                e,
                E::MissingField {
                    field: "data_offsets",
                    ..
                }
            ),
            at(bytes, "{\"dtype"),
        ),
        "unknown_field_in_entry" => (
            matches!(e, E::UnknownField { field, .. } if field == "strides"),
            at(bytes, "\"strides\""),
        ),
        other => panic!("no expectation for malformed case {other}"),
    };
    assert!(ok, "{name}: wrong error {e:?}");
    assert_eq!(e.offset(), Some(offset), "{name}: wrong offset in {e:?}");
    let msg = e.to_string();
    assert!(
        msg.ends_with(&format!("(at byte {offset})")),
        "{name}: {msg}"
    );
}

#[test]
fn every_malformed_case_is_rejected_with_its_variant_and_offset() {
    let cases = corpus::malformed_cases();
    assert!(cases.len() >= 22, "only {} cases", cases.len());
    let mut names: Vec<_> = cases.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names must be distinct");
    for (name, bytes) in &cases {
        match SafeTensors::parse(bytes) {
            Ok(st) => panic!("{name}: parsed {} tensors", st.len()),
            Err(e) => check(name, bytes, &e),
        }
    }
}

#[test]
fn every_valid_case_parses_and_tiles_the_file() {
    for (name, bytes) in corpus::valid_cases() {
        let st = SafeTensors::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let total: usize = st.tensors().map(|(_, v)| v.data.len()).sum();
        assert_eq!(8 + st.header_len() + total, bytes.len(), "{name}");
        for (n, v) in st.tensors() {
            assert_eq!(v.data.len(), v.n_elements() * v.dtype.size(), "{name}/{n}");
            assert_eq!(st.tensor(n), Some(v));
        }
    }
}

#[test]
fn valid_cases_have_the_right_contents() {
    let cases = corpus::valid_cases();
    let get = |name: &str| {
        cases
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("no case {name}"))
    };
    let b = get("valid_metadata_and_padding");
    let st = SafeTensors::parse(&b).unwrap_or_else(|e| panic!("{e}"));
    let meta = st.metadata().cloned().unwrap_or_default();
    assert_eq!(meta.get("note").map(String::as_str), Some("é\n"));
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
    let w = st.tensor("a.weight").map(|v| v.to_f32_vec());
    assert_eq!(w, Some(Ok(vec![0.25, 4.0])));

    let b = get("valid_scalar_and_empty_tensor");
    let st = SafeTensors::parse(&b).unwrap_or_else(|e| panic!("{e}"));
    let s = st.tensor("scalar").unwrap_or_else(|| panic!("no scalar"));
    assert_eq!(
        (s.shape.len(), s.n_elements(), s.to_f32_vec()),
        (0, 1, Ok(vec![7.0]))
    );
    let e = st.tensor("empty").unwrap_or_else(|| panic!("no empty"));
    assert_eq!((e.shape, e.data.len()), (vec![3, 0], 0));
    assert!(st.metadata().is_none());

    // File order is data-offset order, whatever the header order.
    let b = get("valid_unsorted_header_many_dtypes");
    let st = SafeTensors::parse(&b).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(st.names().collect::<Vec<_>>(), ["a", "d", "b", "c", "e"]);
    let dtypes: Vec<Dtype> = st.tensors().map(|(_, v)| v.dtype).collect();
    assert_eq!(
        dtypes,
        [Dtype::I64, Dtype::Bool, Dtype::F16, Dtype::BF16, Dtype::F64]
    );
    let f = |n: &str| st.tensor(n).map(|v| v.to_f32_vec());
    assert_eq!(f("b"), Some(Ok(vec![1.0])));
    assert_eq!(f("c"), Some(Ok(vec![1.0, -2.0])));
    assert_eq!(f("e"), Some(Ok(vec![1.0])));
    assert!(matches!(
        f("a"),
        Some(Err(E::UnsupportedConversion { dtype: Dtype::I64 }))
    ));
    assert_eq!(st.tensor("zz"), None);
    assert_eq!(st.len(), 5);
    assert!(!st.is_empty());

    let b = get("valid_empty_header");
    let st = SafeTensors::parse(&b).unwrap_or_else(|e| panic!("{e}"));
    assert!(st.is_empty());
    assert_eq!(st.header_len(), 2);
}

#[test]
fn every_prefix_of_a_valid_file_is_an_error_not_a_panic() {
    for (name, bytes) in corpus::valid_cases() {
        for cut in 0..bytes.len() {
            let r = SafeTensors::parse(&bytes[..cut]);
            assert!(r.is_err(), "{name} cut at {cut} parsed");
        }
    }
}

#[test]
fn corpus_writes_to_a_directory() {
    let dir = std::env::temp_dir().join(format!("realizar-st-corpus-{}", std::process::id()));
    corpus::write_all(&dir).unwrap_or_else(|e| panic!("write corpus: {e}"));
    for (name, bytes) in corpus::valid_cases()
        .into_iter()
        .chain(corpus::malformed_cases())
    {
        let read = std::fs::read(dir.join(format!("{name}.safetensors")));
        assert_eq!(read.ok(), Some(bytes), "{name}");
    }
    std::fs::remove_dir_all(&dir).ok();
    if let Some(target) = std::env::var_os("REALIZAR_WRITE_CORPUS") {
        corpus::write_all(std::path::Path::new(&target))
            .unwrap_or_else(|e| panic!("write corpus to {target:?}: {e}"));
    }
}
