//! Generators of small safetensors files, valid and malformed, built byte by byte with nothing
//! but `std` (independent of the crate's own writer), so other crates' tests can include this
//! file with `#[path = ".../tests/corpus/mod.rs"] mod corpus;`.
#![allow(dead_code)]

use std::io;
use std::path::Path;

/// A file: the 8-byte little-endian header size, the header, then `data`.
pub fn file(header: &str, data: &[u8]) -> Vec<u8> {
    raw_file(header.as_bytes(), data)
}

/// Like [`file`], with header bytes that need not be UTF-8.
pub fn raw_file(header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out
}

/// A file with the given header size field and `rest` after it.
pub fn sized(size: u64, rest: &[u8]) -> Vec<u8> {
    let mut out = size.to_le_bytes().to_vec();
    out.extend_from_slice(rest);
    out
}

/// One tensor entry `"name":{...}` with F32 dtype.
fn f32_entry(name: &str, shape: &str, begin: u64, end: u64) -> String {
    format!(r#""{name}":{{"dtype":"F32","shape":{shape},"data_offsets":[{begin},{end}]}}"#)
}

/// A header with the single entry `entry` for tensor `t`.
fn one(entry: &str) -> String {
    format!(r#"{{"t":{entry}}}"#)
}

/// Valid files, one per feature of the format: `(name, bytes)`.
pub fn valid_cases() -> Vec<(&'static str, Vec<u8>)> {
    let f32s = |vals: &[f32]| {
        vals.iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>()
    };
    vec![
        ("valid_empty_header", file("{}", &[])),
        ("valid_padded_empty", file("{}      ", &[])),
        (
            "valid_one_f32",
            file(
                &format!("{{{}}}", f32_entry("w", "[2]", 0, 8)),
                &f32s(&[1.5, -2.0]),
            ),
        ),
        (
            "valid_metadata_and_padding",
            file(
                &format!(
                    r#"{{"__metadata__":{{"format":"pt","note":"\u00e9\n"}},{}}}   "#,
                    f32_entry("a.weight", "[1,2]", 0, 8)
                ),
                &f32s(&[0.25, 4.0]),
            ),
        ),
        (
            "valid_scalar_and_empty_tensor",
            file(
                &format!(
                    "{{{},{}}}",
                    f32_entry("scalar", "[]", 0, 4),
                    f32_entry("empty", "[3,0]", 4, 4)
                ),
                &f32s(&[7.0]),
            ),
        ),
        (
            "valid_unsorted_header_many_dtypes",
            file(
                r#"{"c":{"dtype":"BF16","shape":[2],"data_offsets":[11,15]},
                    "b":{"dtype":"F16","shape":[1],"data_offsets":[9,11]},
                    "a":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},
                    "d":{"dtype":"BOOL","shape":[1],"data_offsets":[8,9]},
                    "e":{"dtype":"F64","shape":[1],"data_offsets":[15,23]}}"#,
                &[
                    1, 0, 0, 0, 0, 0, 0, 0, // a = 1
                    1, // d = true
                    0x00, 0x3c, // b = 1.0
                    0x80, 0x3f, 0x00, 0xc0, // c = [1, -2]
                    0, 0, 0, 0, 0, 0, 0xf0, 0x3f, // e = 1.0
                ],
            ),
        ),
    ]
}

/// Malformed files, each breaking exactly one rule of the format: `(name, bytes)`.
pub fn malformed_cases() -> Vec<(&'static str, Vec<u8>)> {
    let data8 = [0u8; 8];
    let ok_entry = r#"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#;
    let deep = format!("{}1{}", "[".repeat(40), "]".repeat(40));
    vec![
        ("empty_file", Vec::new()),
        ("file_shorter_than_size_field", vec![2, 0, 0, 0, 0]),
        ("header_size_over_limit", sized(100_000_001, b"{}")),
        ("header_size_u64_max", sized(u64::MAX, b"{}")),
        ("header_size_past_eof", sized(64, b"{\"t\":")),
        (
            "truncated_json_header",
            file(r#"{"t":{"dtype":"F32","sha"#, &[]),
        ),
        ("invalid_utf8_header", raw_file(b"{\"t\xff\":{}}", &[])),
        ("invalid_json", file(r#"{"t":}"#, &[])),
        ("json_trailing_characters", file("{} x", &[])),
        ("json_lone_surrogate", file(r#"{"\ud800":{}}"#, &[])),
        ("json_control_character", file("{\"a\u{1}\":{}}", &[])),
        ("json_too_deep", file(&format!(r#"{{"t":{deep}}}"#), &[])),
        ("header_not_object", file("[1,2]", &[])),
        ("entry_not_object", file(r#"{"t":[0,8]}"#, &data8)),
        (
            "unknown_dtype",
            file(
                &one(r#"{"dtype":"F33","shape":[2],"data_offsets":[0,8]}"#),
                &data8,
            ),
        ),
        (
            "dtype_not_string",
            file(
                &one(r#"{"dtype":4,"shape":[2],"data_offsets":[0,8]}"#),
                &data8,
            ),
        ),
        (
            "negative_dimension",
            file(
                &one(r#"{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}"#),
                &data8,
            ),
        ),
        (
            "float_dimension",
            file(
                &one(r#"{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}"#),
                &data8,
            ),
        ),
        (
            "string_dimension",
            file(
                &one(r#"{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}"#),
                &data8,
            ),
        ),
        (
            "dimension_over_u64",
            file(
                &one(r#"{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}"#),
                &data8,
            ),
        ),
        (
            "long_string_dimension",
            file(
                &one(&format!(
                    r#"{{"dtype":"F32","shape":["{}"],"data_offsets":[0,8]}}"#,
                    "x".repeat(100)
                )),
                &data8,
            ),
        ),
        (
            "shape_not_array",
            file(
                &one(r#"{"dtype":"F32","shape":2,"data_offsets":[0,8]}"#),
                &data8,
            ),
        ),
        (
            "shape_product_overflow",
            file(
                &one(r#"{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}"#),
                &data8,
            ),
        ),
        (
            "shape_times_dtype_not_length",
            file(
                &one(r#"{"dtype":"F32","shape":[3],"data_offsets":[0,8]}"#),
                &data8,
            ),
        ),
        (
            "offsets_begin_after_end",
            file(
                &one(r#"{"dtype":"F32","shape":[2],"data_offsets":[8,0]}"#),
                &data8,
            ),
        ),
        (
            "offsets_three_elements",
            file(
                &one(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}"#),
                &data8,
            ),
        ),
        (
            "offsets_negative",
            file(
                &one(r#"{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}"#),
                &data8,
            ),
        ),
        (
            "offset_overflows_u64",
            file(
                &one(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551624]}"#),
                &data8,
            ),
        ),
        (
            "offset_with_100_digits",
            file(
                &one(&format!(
                    r#"{{"dtype":"F32","shape":[2],"data_offsets":[0,{}]}}"#,
                    "9".repeat(100)
                )),
                &data8,
            ),
        ),
        (
            "hole_between_tensors",
            file(
                &format!(
                    "{{{},{}}}",
                    f32_entry("a", "[1]", 0, 4),
                    f32_entry("b", "[1]", 8, 12)
                ),
                &[0; 12],
            ),
        ),
        (
            "hole_before_first_tensor",
            file(&format!("{{{}}}", f32_entry("a", "[1]", 4, 8)), &data8),
        ),
        (
            "overlapping_tensors",
            file(
                &format!(
                    "{{{},{}}}",
                    f32_entry("a", "[2]", 0, 8),
                    f32_entry("b", "[2]", 4, 12)
                ),
                &[0; 12],
            ),
        ),
        (
            "data_past_end_of_file",
            file(&format!("{{{}}}", f32_entry("a", "[2]", 0, 8)), &[0; 4]),
        ),
        (
            "trailing_garbage_after_data",
            file(&format!("{{{}}}", f32_entry("a", "[1]", 0, 4)), &[0; 6]),
        ),
        ("data_without_tensors", file("{}", &[1, 2, 3])),
        (
            "duplicate_tensor_name",
            file(&format!("{{\"t\":{ok_entry},\"t\":{ok_entry}}}"), &[0; 16]),
        ),
        (
            "duplicate_metadata",
            file(r#"{"__metadata__":{},"__metadata__":{}}"#, &[]),
        ),
        (
            "duplicate_key_in_entry",
            file(
                &one(r#"{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}"#),
                &data8,
            ),
        ),
        (
            "duplicate_key_in_metadata",
            file(r#"{"__metadata__":{"k":"a","k":"b"}}"#, &[]),
        ),
        (
            "metadata_value_not_string",
            file(r#"{"__metadata__":{"k":1}}"#, &[]),
        ),
        (
            "metadata_not_object",
            file(r#"{"__metadata__":["k"]}"#, &[]),
        ),
        (
            "missing_dtype",
            file(&one(r#"{"shape":[2],"data_offsets":[0,8]}"#), &data8),
        ),
        (
            "missing_shape",
            file(&one(r#"{"dtype":"F32","data_offsets":[0,8]}"#), &data8),
        ),
        (
            "missing_data_offsets",
            file(&one(r#"{"dtype":"F32","shape":[2]}"#), &data8),
        ),
        (
            "unknown_field_in_entry",
            file(
                &one(r#"{"dtype":"F32","shape":[2],"data_offsets":[0,8],"strides":[1]}"#),
                &data8,
            ),
        ),
    ]
}

/// Writes every valid and malformed case into `dir` (one file per case, named after it, with
/// the `.safetensors` extension).
pub fn write_all(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, bytes) in valid_cases().into_iter().chain(malformed_cases()) {
        std::fs::write(dir.join(format!("{name}.safetensors")), bytes)?;
    }
    Ok(())
}
