//! The real all-MiniLM-L6-v2 checkpoint from `cargo xtask fetch-models`.

use std::path::PathBuf;

use realizar_format_safetensors::{Dtype, MmapSafetensors, SafeTensors, SafetensorsWriter};

/// The models folder (`REALIZAR_MODELS`, else `<workspace>/models`).
fn models_dir() -> PathBuf {
    std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

/// The MiniLM model directory; panics with the fetch command when it is missing.
fn minilm_dir() -> PathBuf {
    let dir = models_dir().join("minilm-l6");
    assert!(
        dir.join("model.safetensors").exists(),
        "model minilm-l6 not found at {}: run `cargo xtask fetch-models`",
        dir.display()
    );
    dir
}

#[test]
fn minilm_safetensors_parses_with_bert_shapes() {
    let map = MmapSafetensors::open(minilm_dir().join("model.safetensors"))
        .unwrap_or_else(|e| panic!("cannot map model.safetensors: {e}"));
    let st = map.parse().unwrap_or_else(|e| panic!("parse: {e}"));
    assert_eq!(
        st.metadata()
            .and_then(|m| m.get("format"))
            .map(String::as_str),
        Some("pt")
    );

    let shape = |name: &str| {
        let t = st
            .tensor(name)
            .unwrap_or_else(|| panic!("missing tensor {name}"));
        (t.dtype, t.shape)
    };
    assert_eq!(
        shape("embeddings.word_embeddings.weight"),
        (Dtype::F32, vec![30522, 384])
    );
    assert_eq!(
        shape("embeddings.position_embeddings.weight"),
        (Dtype::F32, vec![512, 384])
    );
    assert_eq!(
        shape("embeddings.token_type_embeddings.weight"),
        (Dtype::F32, vec![2, 384])
    );
    assert_eq!(shape("embeddings.position_ids"), (Dtype::I64, vec![1, 512]));
    for layer in 0..6 {
        let p = format!("encoder.layer.{layer}");
        assert_eq!(
            shape(&format!("{p}.attention.self.query.weight")).1,
            [384, 384]
        );
        assert_eq!(
            shape(&format!("{p}.intermediate.dense.weight")).1,
            [1536, 384]
        );
        assert_eq!(shape(&format!("{p}.output.dense.weight")).1, [384, 1536]);
    }
    assert!(st
        .tensor("encoder.layer.6.attention.self.query.weight")
        .is_none());

    // The views tile the data section in file order, and their bytes add up to the file.
    let mut total = 0usize;
    let mut names = Vec::new();
    for (name, view) in st.tensors() {
        assert_eq!(
            view.data.len(),
            view.n_elements() * view.dtype.size(),
            "{name}"
        );
        total += view.data.len();
        names.push(name);
    }
    assert_eq!(names, st.names().collect::<Vec<_>>());
    assert_eq!(st.len(), names.len());
    assert_eq!(8 + st.header_len() + total, map.bytes().len());

    // position_ids holds 0..512.
    let ids = st
        .tensor("embeddings.position_ids")
        .map(|t| t.data)
        .unwrap_or_default();
    let ids: Vec<i64> = ids
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    assert_eq!(ids, (0..512).collect::<Vec<i64>>());

    // LayerNorm weights are finite and near 1 on average.
    let g = st
        .tensor("embeddings.LayerNorm.weight")
        .map(|t| t.to_f32_vec());
    let g = g
        .unwrap_or_else(|| panic!("no LayerNorm"))
        .unwrap_or_default();
    assert_eq!(g.len(), 384);
    assert!(g.iter().all(|v| v.is_finite()));

    // The same bytes read without the mapping give the same result.
    let bytes = std::fs::read(minilm_dir().join("model.safetensors")).unwrap_or_default();
    let again = SafeTensors::parse(&bytes).unwrap_or_else(|e| panic!("parse: {e}"));
    assert_eq!(again.len(), st.len());
}

#[test]
fn writer_reproduces_the_official_minilm_file_byte_for_byte() {
    let bytes = std::fs::read(minilm_dir().join("model.safetensors"))
        .unwrap_or_else(|e| panic!("cannot read model.safetensors: {e}"));
    let st = SafeTensors::parse(&bytes).unwrap_or_else(|e| panic!("parse: {e}"));
    let mut w = SafetensorsWriter::new();
    for (k, v) in st.metadata().into_iter().flatten() {
        w.metadata(k, v);
    }
    for (name, v) in st.tensors() {
        w.add_tensor(name, v.dtype, &v.shape, v.data)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let out = w.to_bytes();
    assert_eq!(out.len(), bytes.len());
    assert!(out == bytes, "rewritten file differs from the official one");
}
