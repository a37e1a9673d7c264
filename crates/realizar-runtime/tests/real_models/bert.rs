//! all-MiniLM-L6-v2 against the float64 reference in `refs/minilm/` (see refs/README.md), and
//! hostile model directories.

use std::path::{Path, PathBuf};

use realizar_format_safetensors::{Dtype, SafetensorsWriter};
use realizar_nn::bert::{BertError, BertInput};
use realizar_runtime::embed::{EmbedError, Embedder};
use serde_json::Value as JsonValue;

use crate::common::{model_path, refs_dir};

fn read_ref(name: &str) -> JsonValue {
    let path = refs_dir().join("minilm").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read reference {}: {e}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("invalid JSON in {}: {e}", path.display()))
}

fn field<'a>(v: &'a JsonValue, key: &str) -> &'a JsonValue {
    v.get(key)
        .unwrap_or_else(|| panic!("reference lacks `{key}`"))
}

fn array(v: &JsonValue) -> &[JsonValue] {
    v.as_array().expect("reference value is not an array")
}

fn u32s(v: &JsonValue) -> Vec<u32> {
    array(v)
        .iter()
        .map(|x| {
            x.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .expect("not a u32")
        })
        .collect()
}

fn f64s(v: &JsonValue) -> Vec<f64> {
    array(v)
        .iter()
        .map(|x| x.as_f64().expect("not a number"))
        .collect()
}

/// A matrix of rows, flattened row-major.
fn matrix(v: &JsonValue) -> (usize, Vec<f64>) {
    let rows = array(v);
    (rows.len(), rows.iter().flat_map(f64s).collect())
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * y).sum();
    let na = a.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let nb = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb)
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length differs from the reference");
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - y).abs())
        .fold(0.0, f64::max)
}

fn minilm() -> Embedder {
    let dir = model_path("minilm-l6");
    Embedder::load(&dir).unwrap_or_else(|e| panic!("loading {}: {e:#?}", dir.display()))
}

/// One tokenized reference text.
struct RefTokens {
    ids: Vec<u32>,
    types: Vec<u32>,
    mask: Vec<u32>,
}

fn ref_tokens() -> Vec<RefTokens> {
    array(&read_ref("tokens.json"))
        .iter()
        .map(|t| RefTokens {
            ids: u32s(field(t, "input_ids")),
            types: u32s(field(t, "token_type_ids")),
            mask: u32s(field(t, "attention_mask")),
        })
        .collect()
}

#[test]
fn minilm_embeddings_match_float64_reference() {
    let embedder = minilm();
    assert!(
        embedder.normalizes(),
        "modules.json lists a Normalize module"
    );
    let tokens = ref_tokens();
    let refs = read_ref("embeddings.json");
    let want: Vec<Vec<f64>> = array(field(&refs, "embeddings")).iter().map(f64s).collect();
    let dim = field(&refs, "dim").as_u64().expect("dim") as usize;
    assert_eq!(embedder.dim(), dim);
    assert_eq!(
        tokens.len(),
        want.len(),
        "tokens.json and embeddings.json disagree"
    );
    assert!(!tokens.is_empty());

    // The whole reference set as one packed batch, with the reference's types and masks.
    let inputs: Vec<BertInput> = tokens
        .iter()
        .map(|t| BertInput {
            ids: &t.ids,
            type_ids: Some(&t.types),
            attention_mask: Some(&t.mask),
        })
        .collect();
    let got = embedder
        .embed_inputs(&inputs)
        .expect("embedding the reference tokens");
    let mut worst_cos = f64::INFINITY;
    let mut worst_diff = 0f64;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let cos = cosine(g, w);
        let diff = max_abs_diff(g, w);
        assert!(cos >= 0.9999, "text {i}: cosine {cos} with the reference");
        assert!(diff <= 1e-5, "text {i}: max elementwise difference {diff}");
        worst_cos = worst_cos.min(cos);
        worst_diff = worst_diff.max(diff);
    }
    eprintln!(
        "MiniLM: {} texts, worst 1 - cosine {:.3e}, worst max|diff| {worst_diff:.3e}",
        got.len(),
        1.0 - worst_cos
    );

    // Pooled vectors before normalisation, where the reference has them.
    if let Some(pooled) = refs.get("pooled_before_normalize") {
        let pooled_got = embedder.pool_inputs(&inputs).expect("pooling");
        for (i, (g, w)) in pooled_got.iter().zip(array(pooled)).enumerate() {
            let diff = max_abs_diff(g, &f64s(w));
            assert!(diff <= 1e-4, "text {i}: pooled vector differs by {diff}");
        }
    }

    // `embed_ids` (all-ones mask, zero types) gives the same vectors for unpadded references,
    // one text at a time and as a batch.
    let unpadded: Vec<Vec<u32>> = tokens
        .iter()
        .filter(|t| t.mask.iter().all(|&m| m == 1) && t.types.iter().all(|&t| t == 0))
        .map(|t| t.ids.clone())
        .collect();
    let batch = embedder.embed_ids(&unpadded).expect("embed_ids");
    for (ids, v) in unpadded.iter().zip(&batch) {
        let alone = embedder
            .embed_ids(std::slice::from_ref(ids))
            .expect("embed_ids");
        let diff = v
            .iter()
            .zip(&alone[0])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff <= 1e-6,
            "batched and single embeddings differ by {diff}"
        );
    }
}

#[test]
fn minilm_last_hidden_state_of_first_text() {
    let embedder = minilm();
    let refs = read_ref("last_hidden_first.json");
    let ids = u32s(field(&refs, "input_ids"));
    let (rows, want) = matrix(field(&refs, "last_hidden_state"));
    let shape = u32s(field(&refs, "shape"));
    assert_eq!(shape, [rows as u32, 384]);
    assert_eq!(rows, ids.len());
    let got = embedder
        .model()
        .encode(&[BertInput::new(&ids)])
        .expect("encoding the first text");
    let diff = max_abs_diff(&got[0], &want);
    eprintln!("MiniLM last hidden state ({rows} tokens): max|diff| {diff:.3e}");
    assert!(diff <= 1e-4, "last hidden state differs by {diff}");
}

#[test]
fn minilm_every_layer_output_of_first_text() {
    let embedder = minilm();
    let refs = read_ref("hidden_states_first.json");
    let ids = u32s(field(&refs, "input_ids"));
    let want = array(field(&refs, "hidden_states"));
    let got = embedder
        .model()
        .encode_all_layers(&BertInput::new(&ids))
        .expect("encoding the first text");
    assert_eq!(
        got.len(),
        want.len(),
        "embeddings output plus one state per layer"
    );
    assert_eq!(got.len(), embedder.model().config().num_hidden_layers + 1);
    for (layer, (g, w)) in got.iter().zip(want).enumerate() {
        let (rows, w) = matrix(w);
        assert_eq!(rows, ids.len());
        let diff = max_abs_diff(g, &w);
        eprintln!("MiniLM hidden state {layer}: max|diff| {diff:.3e}");
        assert!(diff <= 1e-4, "hidden state {layer} differs by {diff}");
    }
}

#[test]
fn minilm_refuses_bad_token_ids_and_overlong_inputs() {
    let embedder = minilm();
    let vocab = embedder.model().config().vocab_size as u32;
    let err = embedder.embed_ids(&[vec![101, vocab, 102]]).unwrap_err();
    assert!(matches!(
        err,
        EmbedError::Model {
            source: BertError::TokenOutOfRange { position: 1, .. },
            ..
        }
    ));
    let max = embedder.model().config().max_position_embeddings;
    let err = embedder.embed_ids(&[vec![1000; max + 1]]).unwrap_err();
    assert!(matches!(
        err,
        EmbedError::Model {
            source: BertError::SequenceTooLong { .. },
            ..
        }
    ));
    let err = embedder.embed_ids(&[vec![]]).unwrap_err();
    assert!(matches!(
        err,
        EmbedError::Model {
            source: BertError::EmptySequence { .. },
            ..
        }
    ));
    // `[PAD]` (id 0) inside a text is an ordinary attended token, never a mask.
    let with_pad = embedder
        .embed_ids(&[vec![101, 0, 102]])
        .expect("id 0 is a token");
    let without = embedder.embed_ids(&[vec![101, 102]]).expect("embedding");
    assert!(with_pad[0]
        .iter()
        .zip(&without[0])
        .any(|(a, b)| (a - b).abs() > 1e-3));
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("realizar-bert-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("creating a temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("creating a temp dir");
        }
        std::fs::write(path, bytes).expect("writing a temp file");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The real MiniLM directory's files, with `edit` applied to `config.json` text.
fn minilm_copy(name: &str, edit: impl Fn(String) -> String) -> TempDir {
    let src = model_path("minilm-l6");
    let dir = TempDir::new(name);
    for file in [
        "modules.json",
        "sentence_bert_config.json",
        "1_Pooling/config.json",
    ] {
        dir.write(
            file,
            &std::fs::read(src.join(file)).expect("reading MiniLM"),
        );
    }
    let config = std::fs::read_to_string(src.join("config.json")).expect("reading MiniLM");
    dir.write("config.json", edit(config).as_bytes());
    link_or_copy(
        &src.join("model.safetensors"),
        &dir.0.join("model.safetensors"),
    );
    dir
}

fn link_or_copy(src: &Path, dst: &Path) {
    if std::fs::hard_link(src, dst).is_err() {
        std::fs::copy(src, dst).expect("copying model.safetensors");
    }
}

fn config_key_of(err: &EmbedError) -> &str {
    match err {
        EmbedError::Config { key, .. } => key,
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn minilm_with_inconsistent_config_is_refused() {
    let cases: [(&str, &str, &str, &str); 6] = [
        (
            "heads",
            "\"num_attention_heads\": 12",
            "\"num_attention_heads\": 7",
            "num_attention_heads",
        ),
        (
            "zero-width",
            "\"hidden_size\": 384",
            "\"hidden_size\": 0",
            "hidden_size",
        ),
        (
            "act",
            "\"hidden_act\": \"gelu\"",
            "\"hidden_act\": \"swish\"",
            "hidden_act",
        ),
        (
            "eps",
            "\"layer_norm_eps\": 1e-12",
            "\"layer_norm_eps\": \"small\"",
            "layer_norm_eps",
        ),
        (
            "neg",
            "\"vocab_size\": 30522",
            "\"vocab_size\": -1",
            "vocab_size",
        ),
        (
            "missing",
            "\"intermediate_size\": 1536,",
            "",
            "intermediate_size",
        ),
    ];
    for (name, from, to, key) in cases {
        let dir = minilm_copy(name, |c| {
            assert!(c.contains(from), "MiniLM config.json lacks {from}");
            c.replace(from, to)
        });
        let err = Embedder::load(&dir.0).unwrap_err();
        assert_eq!(config_key_of(&err), key, "case {name}: {err}");
    }

    // Sizes that are valid alone but disagree with the weights name the tensor.
    for (name, from, to, tensor) in [
        (
            "vocab",
            "\"vocab_size\": 30522",
            "\"vocab_size\": 30000",
            "embeddings.word_embeddings.weight",
        ),
        (
            "positions",
            "\"max_position_embeddings\": 512",
            "\"max_position_embeddings\": 1024",
            "embeddings.position_embeddings.weight",
        ),
        (
            "ffn",
            "\"intermediate_size\": 1536",
            "\"intermediate_size\": 1024",
            "encoder.layer.0.intermediate.dense.weight",
        ),
    ] {
        let dir = minilm_copy(name, |c| c.replace(from, to));
        match Embedder::load(&dir.0) {
            Err(EmbedError::Model {
                source: BertError::ShapeMismatch { name: n, .. },
                ..
            }) => assert_eq!(n, tensor, "case {name}"),
            other => panic!("case {name}: expected a shape mismatch, got {other:?}"),
        }
    }
    let dir = minilm_copy("layers", |c| {
        c.replace("\"num_hidden_layers\": 6", "\"num_hidden_layers\": 7")
    });
    match Embedder::load(&dir.0) {
        Err(EmbedError::Model {
            source: BertError::MissingTensor { name },
            ..
        }) => assert!(name.starts_with("encoder.layer.6."), "{name}"),
        other => panic!("expected a missing tensor, got {other:?}"),
    }
}

/// How the tiny test weights are stored.
#[derive(Clone, Copy)]
enum Store {
    F32,
    F16,
    Bf16,
}

/// IEEE binary16 bits of `v`, which must be zero or a normal f16 value with at most 11
/// significant bits (true of the tiny model's multiples of 1/16).
fn f16_bits(v: f32) -> u16 {
    if v == 0.0 {
        return 0;
    }
    let b = v.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let exp = ((b >> 23) & 0xff) as i32 - 127 + 15;
    assert!(
        (1..31).contains(&exp) && b & 0x1fff == 0,
        "{v} is not exact in f16"
    );
    sign | ((exp as u16) << 10) | ((b >> 13) & 0x3ff) as u16
}

/// A safetensors file (made with the crate's writer) from `(name, shape, values)`.
fn safetensors_bytes(tensors: &[(String, Vec<usize>, Vec<f32>)], store: Store) -> Vec<u8> {
    let mut w = SafetensorsWriter::new();
    for (name, shape, data) in tensors {
        let (dtype, bytes): (Dtype, Vec<u8>) = match store {
            Store::F32 => (
                Dtype::F32,
                data.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            Store::F16 => (
                Dtype::F16,
                data.iter()
                    .flat_map(|&v| f16_bits(v).to_le_bytes())
                    .collect(),
            ),
            Store::Bf16 => (
                Dtype::BF16,
                data.iter()
                    .flat_map(|v| ((v.to_bits() >> 16) as u16).to_le_bytes())
                    .collect(),
            ),
        };
        w.add_tensor(name, dtype, shape, &bytes)
            .expect("a valid tensor");
    }
    w.to_bytes()
}

const TINY_CONFIG: &str = r#"{"model_type": "bert", "hidden_act": "gelu", "hidden_size": 8,
  "intermediate_size": 16, "layer_norm_eps": 1e-12, "max_position_embeddings": 6,
  "num_attention_heads": 2, "num_hidden_layers": 1, "type_vocab_size": 2, "vocab_size": 10}"#;

/// The tensors of [`TINY_CONFIG`], with `prefix` on every name.
fn tiny_tensors(prefix: &str) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let (h, i) = (8, 16);
    let mut t = vec![
        ("embeddings.word_embeddings.weight".to_string(), vec![10, h]),
        (
            "embeddings.position_embeddings.weight".to_string(),
            vec![6, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".to_string(),
            vec![2, h],
        ),
        ("embeddings.LayerNorm.weight".to_string(), vec![h]),
        ("embeddings.LayerNorm.bias".to_string(), vec![h]),
    ];
    for (s, shape) in [
        ("attention.self.query", vec![h, h]),
        ("attention.self.key", vec![h, h]),
        ("attention.self.value", vec![h, h]),
        ("attention.output.dense", vec![h, h]),
        ("intermediate.dense", vec![i, h]),
        ("output.dense", vec![h, i]),
    ] {
        t.push((format!("encoder.layer.0.{s}.bias"), vec![shape[0]]));
        t.push((format!("encoder.layer.0.{s}.weight"), shape));
    }
    for s in ["attention.output.LayerNorm", "output.LayerNorm"] {
        t.push((format!("encoder.layer.0.{s}.weight"), vec![h]));
        t.push((format!("encoder.layer.0.{s}.bias"), vec![h]));
    }
    t.into_iter()
        .enumerate()
        .map(|(k, (name, shape))| {
            let n: usize = shape.iter().product();
            // Multiples of 1/16: exact in F16 and BF16 too.
            let data = (0..n)
                .map(|j| ((j * 7 + k * 3) % 11) as f32 / 16.0 - 0.3125)
                .collect();
            (format!("{prefix}{name}"), shape, data)
        })
        .collect()
}

fn tiny_dir(name: &str, tensors: &[(String, Vec<usize>, Vec<f32>)]) -> TempDir {
    tiny_dir_stored(name, tensors, Store::F32)
}

fn tiny_dir_stored(
    name: &str,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    store: Store,
) -> TempDir {
    let dir = TempDir::new(name);
    dir.write("config.json", TINY_CONFIG.as_bytes());
    dir.write("model.safetensors", &safetensors_bytes(tensors, store));
    dir
}

#[test]
fn tiny_bert_dirs_load_and_hostile_ones_fail_typed() {
    // A well-formed tiny model loads, with or without the `bert.` prefix, and gives unit
    // vectors only when modules.json asks for Normalize.
    let plain = tiny_dir("plain", &tiny_tensors(""));
    let e = Embedder::load(&plain.0).expect("tiny model");
    assert!(!e.normalizes());
    let v = e.embed_ids(&[vec![1, 2, 3]]).expect("embedding");
    assert_eq!(v[0].len(), 8);
    let prefixed = tiny_dir("prefixed", &tiny_tensors("bert."));
    let w = Embedder::load(&prefixed.0).expect("tiny model with bert. prefix");
    assert_eq!(w.embed_ids(&[vec![1, 2, 3]]).expect("embedding"), v);
    // The same weights stored as F16 and BF16 give the same vectors.
    for (name, store) in [("f16", Store::F16), ("bf16", Store::Bf16)] {
        let dir = tiny_dir_stored(name, &tiny_tensors(""), store);
        let e = Embedder::load(&dir.0).expect("tiny half-precision model");
        assert_eq!(
            e.embed_ids(&[vec![1, 2, 3]]).expect("embedding"),
            v,
            "{name}"
        );
    }

    prefixed.write(
        "modules.json",
        br#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
            {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#,
    );
    prefixed.write(
        "1_Pooling/config.json",
        br#"{"word_embedding_dimension": 8, "pooling_mode_cls_token": true}"#,
    );
    let n = Embedder::load(&prefixed.0).expect("tiny model with modules");
    assert!(n.normalizes());
    let u = n.embed_ids(&[vec![1, 2, 3]]).expect("embedding");
    let norm = u[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-6, "{norm}");

    // A pooling config for another width, or with no mode, or a module we cannot run.
    prefixed.write(
        "1_Pooling/config.json",
        br#"{"word_embedding_dimension": 16, "pooling_mode_mean_tokens": true}"#,
    );
    assert_eq!(
        config_key_of(&Embedder::load(&prefixed.0).unwrap_err()),
        "word_embedding_dimension"
    );
    prefixed.write(
        "1_Pooling/config.json",
        br#"{"word_embedding_dimension": 8}"#,
    );
    assert_eq!(
        config_key_of(&Embedder::load(&prefixed.0).unwrap_err()),
        "pooling_mode_*"
    );
    prefixed.write(
        "modules.json",
        br#"[{"path":"","type":"sentence_transformers.models.Transformer"},
            {"path":"../../etc","type":"sentence_transformers.models.Pooling"}]"#,
    );
    assert!(matches!(
        Embedder::load(&prefixed.0),
        Err(EmbedError::ModelDir { .. })
    ));
    prefixed.write(
        "modules.json",
        br#"[{"path":"","type":"sentence_transformers.models.Transformer"},
            {"path":"2_Dense","type":"sentence_transformers.models.Dense"}]"#,
    );
    assert_eq!(
        config_key_of(&Embedder::load(&prefixed.0).unwrap_err()),
        "[1].type"
    );

    // Each tensor, removed in turn, is named in the error.
    let all = tiny_tensors("");
    for k in 0..all.len() {
        let mut tensors = all.clone();
        let removed = tensors.remove(k).0;
        let dir = tiny_dir(&format!("missing-{k}"), &tensors);
        match Embedder::load(&dir.0) {
            Err(EmbedError::Model {
                source: BertError::MissingTensor { name },
                ..
            }) => assert_eq!(name, removed),
            other => panic!("without {removed}: expected MissingTensor, got {other:?}"),
        }
    }

    // A sharded checkpoint (model.safetensors.index.json and two shards) loads the same model.
    let sharded = TempDir::new("sharded");
    sharded.write("config.json", TINY_CONFIG.as_bytes());
    let (first, second) = all.split_at(all.len() / 2);
    let mut weight_map = Vec::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        sharded.write(file, &safetensors_bytes(part, Store::F32));
        weight_map.extend(part.iter().map(|t| format!("\"{}\": \"{file}\"", t.0)));
    }
    sharded.write(
        "model.safetensors.index.json",
        format!(
            "{{\"metadata\": {{}}, \"weight_map\": {{{}}}}}",
            weight_map.join(", ")
        )
        .as_bytes(),
    );
    let s = Embedder::load(&sharded.0).expect("sharded tiny model");
    assert_eq!(s.embed_ids(&[vec![1, 2, 3]]).expect("embedding"), v);

    // A weight stored as integers cannot be converted: the error names the tensor.
    let dir = tiny_dir("int-weights", &all);
    let mut w = SafetensorsWriter::new();
    for (name, shape, data) in &all {
        if name == "encoder.layer.0.attention.self.key.weight" {
            let ints: Vec<u8> = data
                .iter()
                .flat_map(|&x| ((x * 16.0) as i32).to_le_bytes())
                .collect();
            w.add_tensor(name, Dtype::I32, shape, &ints)
                .expect("a valid tensor");
        } else {
            let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.add_tensor(name, Dtype::F32, shape, &bytes)
                .expect("a valid tensor");
        }
    }
    dir.write("model.safetensors", &w.to_bytes());
    match Embedder::load(&dir.0) {
        Err(EmbedError::Model {
            source: BertError::Source { name, .. },
            ..
        }) => assert_eq!(name, "encoder.layer.0.attention.self.key.weight"),
        other => panic!("expected an unconvertible tensor, got {other:?}"),
    }

    // A transposed weight.
    let mut tensors = all.clone();
    if let Some(t) = tensors
        .iter_mut()
        .find(|t| t.0 == "encoder.layer.0.output.dense.weight")
    {
        t.1 = vec![16, 8];
    }
    let dir = tiny_dir("transposed", &tensors);
    assert!(matches!(
        Embedder::load(&dir.0),
        Err(EmbedError::Model {
            source: BertError::ShapeMismatch { .. },
            ..
        })
    ));

    // A truncated weights file, garbage JSON, a missing config.
    let dir = tiny_dir("truncated", &all);
    let bytes = safetensors_bytes(&all, Store::F32);
    dir.write("model.safetensors", &bytes[..bytes.len() - 3]);
    assert!(matches!(
        Embedder::load(&dir.0),
        Err(EmbedError::Safetensors { .. })
    ));
    dir.write("config.json", b"{\"hidden_size\": ");
    assert!(matches!(
        Embedder::load(&dir.0),
        Err(EmbedError::Json { .. })
    ));
    let empty = TempDir::new("empty");
    assert!(matches!(
        Embedder::load(&empty.0),
        Err(EmbedError::ModelDir { .. })
    ));
    // An architecture this encoder does not implement.
    let dir = tiny_dir("roberta", &all);
    dir.write(
        "config.json",
        TINY_CONFIG.replace("\"bert\"", "\"roberta\"").as_bytes(),
    );
    assert_eq!(
        config_key_of(&Embedder::load(&dir.0).unwrap_err()),
        "model_type"
    );
}

#[test]
fn minilm_texts_embed_like_sentence_transformers() {
    // End to end: the directory's tokenizer, then the encoder, from the reference texts.
    let embedder = minilm();
    let tokens = read_ref("tokens.json");
    let entries = array(&tokens);
    let refs = read_ref("embeddings.json");
    let want: Vec<Vec<f64>> = array(field(&refs, "embeddings")).iter().map(f64s).collect();
    let texts: Vec<&str> = entries
        .iter()
        .map(|t| field(t, "text").as_str().expect("text is a string"))
        .collect();
    assert_eq!(texts.len(), want.len());
    let ids = embedder
        .tokenize(&texts)
        .expect("tokenizing the reference texts");
    for (i, (got, t)) in ids.iter().zip(entries).enumerate() {
        assert_eq!(got, &u32s(field(t, "input_ids")), "text {i}: token ids");
    }
    let got = embedder
        .embed_texts(&texts)
        .expect("embedding the reference texts");
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let cos = cosine(g, w);
        assert!(cos >= 0.9999, "text {i}: cosine {cos}");
        assert!(max_abs_diff(g, w) <= 1e-5, "text {i}");
    }
    // Texts longer than max_seq_length are cut to it, [SEP] kept.
    let long = "word ".repeat(2 * embedder.max_seq_length());
    let cut = embedder.tokenize(&[&long]).expect("tokenizing");
    assert_eq!(cut[0].len(), embedder.max_seq_length());
    assert_eq!(cut[0].first(), Some(&101));
    assert_eq!(cut[0].last(), Some(&102));
    assert!(embedder.embed_texts(&[&long]).is_ok());
}
