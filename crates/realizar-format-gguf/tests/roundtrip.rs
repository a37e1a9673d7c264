//! The writer's output reads back equal (proptest), and the typed accessors behave.

use proptest::prelude::*;
use realizar_format_gguf::{
    GgmlType, GgufError, GgufFile, GgufWriter, OwnedValue, Value, ValueType,
};

fn scalar() -> impl Strategy<Value = OwnedValue> {
    prop_oneof![
        any::<u8>().prop_map(OwnedValue::U8),
        any::<i8>().prop_map(OwnedValue::I8),
        any::<u16>().prop_map(OwnedValue::U16),
        any::<i16>().prop_map(OwnedValue::I16),
        any::<u32>().prop_map(OwnedValue::U32),
        any::<i32>().prop_map(OwnedValue::I32),
        any::<u64>().prop_map(OwnedValue::U64),
        any::<i64>().prop_map(OwnedValue::I64),
        any::<bool>().prop_map(OwnedValue::Bool),
        // Finite floats, so that equality is meaningful.
        (-1e30f32..1e30).prop_map(OwnedValue::F32),
        (-1e300f64..1e300).prop_map(OwnedValue::F64),
        ".{0,12}".prop_map(OwnedValue::String),
    ]
}

fn value() -> impl Strategy<Value = OwnedValue> {
    scalar().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(any::<u32>(), 0..6).prop_map(|v| OwnedValue::Array(
                ValueType::U32,
                v.into_iter().map(OwnedValue::U32).collect()
            )),
            prop::collection::vec(".{0,6}", 0..6).prop_map(|v| OwnedValue::strings(&v)),
            prop::collection::vec(inner, 0..4).prop_map(|items| {
                // An array's elements share one type: keep those of the first element's type.
                let t = items.first().map_or(ValueType::U8, |i| i.value_type());
                let items = items.into_iter().filter(|i| i.value_type() == t).collect();
                OwnedValue::Array(t, items)
            }),
        ]
    })
}

const TYPES: &[GgmlType] = &[
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q8_0,
    GgmlType::Q4_K,
    GgmlType::Q6_K,
];

fn tensor() -> impl Strategy<Value = (GgmlType, Vec<u64>, u8)> {
    (
        prop::sample::select(TYPES),
        prop::collection::vec(1u64..4, 1..4),
        any::<u8>(),
    )
        .prop_map(|(ty, mut dims, fill)| {
            dims[0] *= ty.block_size();
            (ty, dims, fill)
        })
}

proptest! {
    #[test]
    fn write_then_read_gives_back_the_same_file(
        kvs in prop::collection::btree_map("[a-z]{1,8}(\\.[a-z]{1,8}){0,2}", value(), 0..8),
        tensors in prop::collection::vec(tensor(), 0..5),
        align_pow in 0u32..8,
        v2 in any::<bool>(),
    ) {
        let mut w = GgufWriter::new();
        if v2 { w.version(2); }
        let alignment = 1u32 << align_pow;
        w.alignment(alignment);
        for (k, v) in &kvs {
            w.add_metadata(k, v.clone());
        }
        let mut expected = Vec::new();
        for (i, (ty, dims, fill)) in tensors.iter().enumerate() {
            let n: u64 = dims.iter().product();
            let size = ty.bytes_for(n).unwrap() as usize;
            let data: Vec<u8> = (0..size).map(|j| fill.wrapping_add(j as u8)).collect();
            let name = format!("blk.{i}.weight");
            w.add_tensor(&name, dims, *ty, data.clone()).unwrap();
            expected.push((name, dims.clone(), *ty, data));
        }
        let bytes = w.to_bytes();
        let f = GgufFile::parse(&bytes).unwrap();
        prop_assert_eq!(f.version(), if v2 { 2 } else { 3 });
        prop_assert_eq!(f.alignment(), u64::from(alignment));
        for (k, v) in &kvs {
            prop_assert_eq!(f.get(k).map(|x| x.to_owned_value()), Some(v.clone()));
        }
        prop_assert_eq!(f.metadata().len(), kvs.len() + 1);
        prop_assert_eq!(f.tensors().len(), expected.len());
        for (name, dims, ty, data) in &expected {
            let t = f.tensor(name).unwrap();
            prop_assert_eq!(&t.dims, dims);
            prop_assert_eq!(t.ty, *ty);
            prop_assert_eq!(t.data_offset % u64::from(alignment), 0);
            prop_assert_eq!(f.tensor_data(name).unwrap(), &data[..]);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = GgufFile::parse(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(tail in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"GGUF\x03\x00\x00\x00".to_vec();
        bytes.extend_from_slice(&tail);
        let _ = GgufFile::parse(&bytes);
    }
}

fn sample() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", OwnedValue::String("llama".into()))
        .add_metadata("llama.block_count", OwnedValue::U32(30))
        .add_metadata("small", OwnedValue::U8(7))
        .add_metadata("neg", OwnedValue::I32(-1))
        .add_metadata("eps", OwnedValue::F32(1e-5))
        .add_metadata("eps64", OwnedValue::F64(0.5))
        .add_metadata("flag", OwnedValue::Bool(true))
        .add_metadata("big", OwnedValue::U64(1 << 40))
        .add_metadata("tokens", OwnedValue::strings(&["a", "b", "ccc"]))
        .add_metadata("scores", OwnedValue::f32s(&[0.5, -1.0]))
        .add_metadata("types", OwnedValue::i32s(&[1, 3]));
    w.add_f32_tensor("w", &[2, 2], &[1.0, 2.0, 3.0, 4.0])
        .unwrap();
    w.add_tensor("iq", &[256], GgmlType::IQ2_XXS, vec![0; 66])
        .unwrap();
    w.to_bytes()
}

#[test]
fn typed_accessors_return_values_and_name_key_and_type_on_mismatch() {
    let bytes = sample();
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(f.get_u32("small").unwrap(), 7);
    assert_eq!(f.get_u64("big").unwrap(), 1 << 40);
    assert_eq!(f.get_f32("eps").unwrap(), 1e-5);
    assert_eq!(f.get_f32("eps64").unwrap(), 0.5);
    assert!(f.get_bool("flag").unwrap());
    let tokens: Vec<&str> = f.get_strings("tokens").unwrap().collect();
    assert_eq!(tokens, ["a", "b", "ccc"]);
    let a = f.get_array("scores").unwrap();
    assert_eq!((a.len(), a.is_empty()), (2, false));
    assert_eq!(a.f32s().unwrap().collect::<Vec<_>>(), [0.5, -1.0]);
    assert_eq!(a.scalar_bytes().unwrap().len(), 8);
    assert!(a.i32s().is_none() && a.strings().is_none());
    let t = f.get_array("types").unwrap();
    assert_eq!(t.i32s().unwrap().collect::<Vec<_>>(), [1, 3]);
    assert_eq!(t.unsigned().unwrap(), [1, 3]);
    assert_eq!(f.get("neg"), Some(Value::I32(-1)));

    match f.get_u32("llama.block_countx") {
        Err(GgufError::KeyNotFound { key }) => assert_eq!(key, "llama.block_countx"),
        other => panic!("{other:?}"),
    }
    match f.get_u32("general.architecture") {
        Err(e @ GgufError::WrongType { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("general.architecture") && msg.contains("string"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(f.get_u32("neg"), Err(GgufError::WrongType { .. })));
    assert!(matches!(f.get_u32("big"), Err(GgufError::WrongType { .. })));
    assert!(matches!(
        f.get_str("flag"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        f.get_bool("eps"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        f.get_f32("flag"),
        Err(GgufError::WrongType { .. })
    ));
    assert!(matches!(
        f.get_array("eps"),
        Err(GgufError::WrongType { .. })
    ));
    match f.get_strings("scores") {
        Err(GgufError::WrongType { found, .. }) => assert_eq!(found, "array of f32"),
        Err(e) => panic!("{e:?}"),
        Ok(_) => panic!("accepted"),
    }

    assert_eq!(f.tensor_data("w").unwrap().len(), 16);
    assert_eq!(f.tensor("w").unwrap().n_elements(), 4);
    assert!(matches!(
        f.tensor_data("iq"),
        Err(GgufError::UnsupportedTensorType {
            ty: GgmlType::IQ2_XXS,
            ..
        })
    ));
    assert!(matches!(
        f.tensor_data("nope"),
        Err(GgufError::TensorNotFound { .. })
    ));
    assert_eq!(f.data_offset() % f.alignment(), 0);
}

#[test]
fn writer_rejects_inconsistent_tensors() {
    let mut w = GgufWriter::new();
    assert!(w.add_tensor("a", &[], GgmlType::F32, vec![]).is_err());
    assert!(w.add_tensor("a", &[0], GgmlType::F32, vec![]).is_err());
    assert!(w
        .add_tensor("a", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0; 4])
        .is_err());
    assert!(w
        .add_tensor("a", &[33], GgmlType::Q4_0, vec![0; 18])
        .is_err());
    assert!(w
        .add_tensor("a", &[32], GgmlType::Q4_0, vec![0; 17])
        .is_err());
    assert!(w
        .add_tensor("a", &[32], GgmlType::Q4_0, vec![0; 18])
        .is_ok());
}

#[test]
fn a_file_without_tensors_may_end_before_the_padding() {
    let mut w = GgufWriter::new();
    w.add_metadata("k", OwnedValue::U8(1));
    let bytes = w.to_bytes();
    assert_ne!(bytes.len() % 32, 0);
    let f = GgufFile::parse(&bytes).unwrap();
    assert!(f.tensors().is_empty());
}

#[cfg(feature = "mmap")]
#[test]
fn a_mapped_file_parses_like_bytes() {
    let dir = std::env::temp_dir().join(format!("realizar-gguf-mmap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.gguf");
    std::fs::write(&path, sample()).unwrap();
    let m = realizar_format_gguf::MmapGguf::open(&path).unwrap();
    assert_eq!(m.bytes().len(), sample().len());
    let f = m.parse().unwrap();
    assert_eq!(
        f.tensor_data("w").unwrap(),
        GgufFile::parse(&sample())
            .unwrap()
            .tensor_data("w")
            .unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn known_array_keys_name_the_element_type_they_need() {
    let check = |key: &str, value: OwnedValue, want: &str| {
        let mut w = GgufWriter::new();
        w.add_metadata(key, value);
        match GgufFile::parse(&w.to_bytes()) {
            Err(GgufError::WrongType {
                expected, key: k, ..
            }) => {
                assert_eq!((expected, k.as_str()), (want, key))
            }
            other => panic!("{key}: {other:?}"),
        }
    };
    check(
        "tokenizer.ggml.scores",
        OwnedValue::i32s(&[1]),
        "array of f32",
    );
    check(
        "tokenizer.ggml.token_type",
        OwnedValue::f32s(&[1.0]),
        "array of i32",
    );
    check(
        "tokenizer.ggml.merges",
        OwnedValue::f32s(&[1.0]),
        "array of string",
    );
    check("general.file_type", OwnedValue::String("x".into()), "u32");
}

#[test]
fn adjacent_tensors_are_not_overlapping_and_read_their_own_bytes() {
    let mut w = GgufWriter::new();
    w.add_f32_tensor("a", &[8], &[1.0; 8]).unwrap();
    w.add_f32_tensor("b", &[8], &[2.0; 8]).unwrap();
    w.add_f32_tensor("c", &[8], &[3.0; 8]).unwrap();
    let bytes = w.to_bytes();
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.tensor("b").unwrap().data_offset, 32);
    assert_eq!(f.tensor("c").unwrap().data_offset, 64);
    // Header: 24 + three infos of (8 + 1 + 4 + 8 + 4 + 8) = 123 bytes, padded to 128.
    assert_eq!(f.data_offset(), 128);
    assert_eq!(bytes.len(), 128 + 96);
    for (name, v) in [("a", 1.0f32), ("b", 2.0), ("c", 3.0)] {
        let data = f.tensor_data(name).unwrap();
        assert_eq!(data, v.to_le_bytes().repeat(8), "{name}");
    }
}

#[test]
fn array_iterators_count_down_exactly() {
    let mut w = GgufWriter::new();
    w.add_metadata("t", OwnedValue::strings(&["x", "yy", "zzz"]))
        .add_metadata("e", OwnedValue::Array(ValueType::U32, vec![]));
    let bytes = w.to_bytes();
    let f = GgufFile::parse(&bytes).unwrap();
    let a = f.get_array("t").unwrap();
    assert!(!a.is_empty());
    assert!(f.get_array("e").unwrap().is_empty());
    let mut it = a.iter();
    assert_eq!(it.size_hint(), (3, Some(3)));
    assert_eq!(it.next(), Some(Value::String("x")));
    assert_eq!(it.size_hint(), (2, Some(2)));
    assert_eq!(it.next(), Some(Value::String("yy")));
    assert_eq!(it.next(), Some(Value::String("zzz")));
    assert_eq!(it.size_hint(), (0, Some(0)));
    assert_eq!(it.next(), None);
}

#[test]
fn writer_errors_say_which_tensor_and_why() {
    let mut w = GgufWriter::new();
    let e = w
        .add_tensor("bad", &[0], GgmlType::F32, vec![])
        .unwrap_err();
    assert!(
        e.to_string().contains("`bad`") && e.to_string().contains("non-zero"),
        "{e}"
    );
    let e = w
        .add_tensor("q", &[33], GgmlType::Q4_0, vec![])
        .unwrap_err();
    assert!(e.to_string().contains("block size"), "{e}");
    let e = w
        .add_tensor("l", &[32], GgmlType::Q4_0, vec![0; 3])
        .unwrap_err();
    assert!(
        e.to_string().contains("3 bytes of data, expected 18"),
        "{e}"
    );
}

#[test]
fn setting_the_alignment_twice_keeps_one_key_and_the_rest() {
    let mut w = GgufWriter::new();
    w.add_metadata("a", OwnedValue::U8(1));
    w.alignment(64).alignment(16);
    w.add_metadata("a", OwnedValue::U8(2));
    let bytes = w.to_bytes();
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.metadata().len(), 2);
    assert_eq!(f.get("a"), Some(Value::U8(2)));
    assert_eq!(f.get_u32("general.alignment").unwrap(), 16);
    assert_eq!(f.alignment(), 16);
}

#[test]
fn four_dimensional_tensors_are_written_and_read() {
    let mut w = GgufWriter::new();
    w.add_f32_tensor("t", &[2, 1, 3, 2], &[0.0; 12]).unwrap();
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    assert_eq!(out, w.to_bytes());
    let f = GgufFile::parse(&out).unwrap();
    assert_eq!(f.tensor("t").unwrap().dims, [2, 1, 3, 2]);
}

#[test]
fn the_largest_alignment_is_accepted() {
    let mut w = GgufWriter::new();
    w.alignment(realizar_format_gguf::MAX_ALIGNMENT as u32);
    w.add_f32_tensor("t", &[8], &[1.0; 8]).unwrap();
    let bytes = w.to_bytes();
    let f = GgufFile::parse(&bytes).unwrap();
    assert_eq!(f.alignment(), realizar_format_gguf::MAX_ALIGNMENT);
    assert_eq!(f.data_offset(), realizar_format_gguf::MAX_ALIGNMENT);
}
