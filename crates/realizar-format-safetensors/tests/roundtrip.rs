//! Writer → reader round trips, and the reader on random and mutated input.

use std::collections::BTreeMap;

use proptest::prelude::*;
use realizar_format_safetensors::{
    Dtype, SafeTensors, SafetensorsWriter, ShardedIndex, METADATA_KEY,
};

/// A tensor to write: dtype, shape and bytes of the right length.
fn tensor() -> impl Strategy<Value = (Dtype, Vec<usize>, Vec<u8>)> {
    (
        prop::sample::select(Dtype::ALL.to_vec()),
        prop::collection::vec(0usize..4, 0..4),
    )
        .prop_flat_map(|(dtype, shape)| {
            let len = shape.iter().product::<usize>() * dtype.size();
            (
                Just(dtype),
                Just(shape),
                prop::collection::vec(any::<u8>(), len),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn write_then_read_gives_the_same_tensors(
        tensors in prop::collection::btree_map(any::<String>(), tensor(), 0..6),
        metadata in prop::collection::btree_map(any::<String>(), any::<String>(), 0..3),
    ) {
        let tensors: BTreeMap<_, _> =
            tensors.into_iter().filter(|(n, _)| n != METADATA_KEY).collect();
        let mut w = SafetensorsWriter::new();
        for (name, (dtype, shape, bytes)) in &tensors {
            prop_assert_eq!(w.add_tensor(name, *dtype, shape, bytes), Ok(()));
        }
        for (k, v) in &metadata {
            w.metadata(k, v);
        }
        let bytes = w.to_bytes();
        let st = SafeTensors::parse(&bytes);
        prop_assert!(st.is_ok(), "{:?}", st.err());
        let st = st.unwrap_or_else(|_| unreachable!());
        prop_assert_eq!((8 + st.header_len()) % 8, 0);
        prop_assert_eq!(st.len(), tensors.len());
        for (name, (dtype, shape, data)) in &tensors {
            let v = st.tensor(name);
            prop_assert!(v.is_some(), "missing {:?}", name);
            let v = v.unwrap_or_else(|| unreachable!());
            prop_assert_eq!(v.dtype, *dtype);
            prop_assert_eq!(&v.shape, shape);
            prop_assert_eq!(v.data, data.as_slice());
        }
        // The official layout: data by dtype alignment (largest first), then by name.
        let order: Vec<(Dtype, &str)> = st.tensors().map(|(n, v)| (v.dtype, n)).collect();
        let mut sorted = order.clone();
        sorted.sort_by(|(ld, ln), (rd, rn)| rd.cmp(ld).then(ln.cmp(rn)));
        prop_assert_eq!(order, sorted);
        prop_assert_eq!(st.metadata().cloned(), (!metadata.is_empty()).then_some(metadata));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = SafeTensors::parse(&bytes);
    }

    #[test]
    fn arbitrary_text_never_panics_the_json_parsers(text in "\\PC{0,64}") {
        let _ = ShardedIndex::parse(&text);
        let mut header = (text.len() as u64).to_le_bytes().to_vec();
        header.extend_from_slice(text.as_bytes());
        let _ = SafeTensors::parse(&header);
    }

    #[test]
    fn mutated_files_never_panic(
        (dtype, shape, data) in tensor(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut w = SafetensorsWriter::new();
        prop_assert_eq!(w.add_tensor("w", dtype, &shape, &data), Ok(()));
        let mut bytes = w.to_bytes();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if let Ok(st) = SafeTensors::parse(&bytes) {
            for (_, v) in st.tensors() {
                prop_assert_eq!(v.data.len(), v.n_elements() * v.dtype.size());
            }
        }
    }
}
