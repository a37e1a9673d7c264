//! Every malformed file of the corpus is rejected with the right error, and none panics.

mod corpus;

use realizar_format_gguf::{GgufError, GgufFile};

fn expected(name: &str, e: &GgufError) -> bool {
    use GgufError::*;
    match name {
        "empty" | "truncated_counts" | "truncated_value" | "truncated_tensor_info" => {
            matches!(e, UnexpectedEof { .. })
        }
        "bad_magic" => matches!(e, BadMagic { .. }),
        "version_1" | "version_4" => matches!(e, UnsupportedVersion { .. }),
        "huge_tensor_count"
        | "huge_kv_count"
        | "huge_key_length"
        | "huge_array_length"
        | "nested_huge_length"
        | "string_array_count_exceeds_bytes" => {
            matches!(e, CountTooLarge { .. })
        }
        "key_invalid_utf8" | "string_array_invalid_utf8" | "tensor_name_invalid_utf8" => {
            matches!(e, InvalidUtf8 { .. })
        }
        "empty_key" => matches!(e, EmptyKey { .. }),
        "duplicate_key" => matches!(e, DuplicateKey { key, .. } if key == "a.b"),
        "unknown_value_type" | "nested_unknown_type" => matches!(e, UnknownValueType { .. }),
        "nesting_too_deep" => matches!(e, NestingTooDeep { .. }),
        "invalid_bool" | "bool_array_invalid" => matches!(e, InvalidBool { .. }),
        "alignment_wrong_type" => matches!(e, WrongType { found, .. } if found == "string"),
        "architecture_wrong_type" => matches!(e, WrongType { found, .. } if found == "u32"),
        "tokens_wrong_element_type" => {
            matches!(e, WrongType { found, expected, .. } if found == "array of u32" && *expected == "array of string")
        }
        "alignment_zero" | "alignment_not_power_of_two" | "alignment_too_large" => {
            matches!(e, BadAlignment { .. })
        }
        "n_dims_zero" | "n_dims_five" | "n_dims_huge" => matches!(e, BadDimensionCount { .. }),
        "zero_dimension" => matches!(e, ZeroDimension { axis: 1, .. }),
        "unknown_tensor_type" | "retired_tensor_type" => matches!(e, UnknownTensorType { .. }),
        "not_block_multiple" => matches!(e, NotBlockMultiple { ne0: 33, .. }),
        "element_count_overflow" | "byte_size_wrap" => matches!(e, SizeOverflow { .. }),
        "misaligned_offset" => matches!(e, MisalignedTensor { .. }),
        "tensor_past_end"
        | "offset_plus_size_overflow"
        | "truncated_data"
        | "data_section_at_end" => {
            matches!(e, TensorOutOfBounds { .. })
        }
        "overlapping_tensors" => {
            matches!(e, OverlappingTensors { tensor, other, .. } if tensor == "b" && other == "a")
        }
        "duplicate_tensor_name" => matches!(e, DuplicateTensorName { .. }),
        "data_section_past_end" => matches!(e, DataSectionPastEnd { .. }),
        other => panic!("no expectation for case {other}"),
    }
}

#[test]
fn every_malformed_file_is_rejected_with_its_error() {
    let cases = corpus::malformed_cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    for (name, bytes) in cases {
        match GgufFile::parse(&bytes) {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => {
                assert!(expected(name, &e), "{name}: wrong error {e:?}");
                let offset = e.offset().expect("parse errors carry an offset");
                assert!(offset <= bytes.len() as u64 + 64, "{name}: offset {offset}");
                assert!(e.to_string().contains("(at byte "), "{name}: {e}");
            }
        }
    }
}

/// The byte offsets that errors report point at the offending field.
#[test]
fn errors_point_at_the_offending_byte() {
    let offset_of = |name: &str| {
        let (_, bytes) = corpus::malformed_cases()
            .into_iter()
            .find(|c| c.0 == name)
            .unwrap();
        GgufFile::parse(&bytes).unwrap_err().offset()
    };
    assert_eq!(offset_of("bad_magic"), Some(0));
    assert_eq!(offset_of("version_1"), Some(4));
    assert_eq!(offset_of("huge_tensor_count"), Some(8));
    assert_eq!(offset_of("huge_kv_count"), Some(16));
    // Header (24) + first key (8 + 3) + type (4) + value (4): the second key starts at 43.
    assert_eq!(offset_of("duplicate_key"), Some(43));
    // The tensor info record starts right after the 24-byte header.
    assert_eq!(offset_of("n_dims_five"), Some(24));
    // Header (24) + key (9) + type (4) + array type (4) + count (8) + first byte: 50.
    assert_eq!(offset_of("bool_array_invalid"), Some(50));
    assert_eq!(GgufError::KeyNotFound { key: "k".into() }.offset(), None);
}

#[test]
fn the_valid_base_file_parses() {
    let bytes = corpus::valid_file();
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.tensor_data("t").unwrap().len(), 32);
}

#[test]
fn every_truncation_of_a_valid_file_is_an_error_not_a_panic() {
    let bytes = corpus::valid_file();
    for len in 0..bytes.len() {
        assert!(
            GgufFile::parse(&bytes[..len]).is_err(),
            "prefix {len} accepted"
        );
    }
}

#[test]
fn single_byte_corruptions_never_panic() {
    let bytes = corpus::valid_file();
    for i in 0..bytes.len() {
        for v in [0u8, 1, 0x7f, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] = v;
            let _ = GgufFile::parse(&b);
        }
    }
}
