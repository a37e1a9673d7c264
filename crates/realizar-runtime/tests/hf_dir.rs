//! The runtime's `ModelDir` and `HfConfig`, on the real all-MiniLM-L6-v2 directory and on small directories
//! built in the test.

use std::path::{Path, PathBuf};

use realizar_format_safetensors::{Dtype, IndexError, SafeTensors, SafetensorsWriter};
use realizar_runtime::hf_dir::{
    parse_json_strict, HfConfig, HfConfigError, ModelDir, ModelDirError, Weights,
};
use serde_json::Value as JsonValue;

fn models_dir() -> PathBuf {
    std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
}

fn minilm_dir() -> PathBuf {
    let dir = models_dir().join("minilm-l6");
    assert!(
        dir.join("config.json").exists(),
        "model minilm-l6 not found at {}: run `cargo xtask fetch-models`",
        dir.display()
    );
    dir
}

#[test]
fn minilm_directory() {
    let dir = minilm_dir();
    let m = ModelDir::open(&dir).unwrap_or_else(|e| panic!("{e}"));
    let c = &m.config;
    assert_eq!(c.architectures, ["BertModel"]);
    assert_eq!(c.model_type.as_deref(), Some("bert"));
    assert_eq!(c.hidden_size, Some(384));
    assert_eq!(c.num_hidden_layers, Some(6));
    assert_eq!(c.num_attention_heads, Some(12));
    assert_eq!(c.num_key_value_heads, Some(12));
    assert_eq!(c.vocab_size, Some(30522));
    // all-MiniLM-L6-v2's feed-forward width is 4 × 384 (its config.json and the
    // `intermediate.dense.weight` shape [1536, 384] agree).
    assert_eq!(c.intermediate_size, Some(1536));
    assert_eq!(c.max_position_embeddings, Some(512));
    assert_eq!(c.layer_norm_eps, Some(1e-12));
    assert_eq!(c.rms_norm_eps, None);
    assert_eq!(c.rope_theta, None);
    assert_eq!(c.tie_word_embeddings, None);
    assert_eq!(
        c.extra.get("type_vocab_size").and_then(JsonValue::as_u64),
        Some(2)
    );
    assert_eq!(
        c.extra.get("hidden_act").and_then(JsonValue::as_str),
        Some("gelu")
    );
    assert_eq!(
        c.extra.get("pad_token_id").and_then(JsonValue::as_u64),
        Some(0)
    );

    assert_eq!(m.weights, Weights::Single(dir.join("model.safetensors")));
    assert!(!m.weights.is_sharded());
    assert_eq!(m.weights.files(), [dir.join("model.safetensors").as_path()]);
    assert_eq!(m.config_path, dir.join("config.json"));
    assert_eq!(
        m.tokenizer.as_deref(),
        Some(dir.join("tokenizer.json").as_path())
    );
    assert_eq!(
        m.tokenizer_config.as_deref(),
        Some(dir.join("tokenizer_config.json").as_path())
    );
    assert_eq!(
        m.modules.as_deref(),
        Some(dir.join("modules.json").as_path())
    );
    let pooling = m
        .pooling_config
        .clone()
        .unwrap_or_else(|| panic!("no pooling config"));
    assert_eq!(pooling, dir.join("1_Pooling/config.json"));
    assert_eq!(
        m.sentence_bert_config.as_deref(),
        Some(dir.join("sentence_bert_config.json").as_path())
    );

    // The pooling config is readable with the strict JSON reader.
    let text = std::fs::read_to_string(&pooling).unwrap_or_default();
    let p = parse_json_strict(&text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        p.get("word_embedding_dimension")
            .and_then(JsonValue::as_u64),
        Some(384)
    );
    assert_eq!(
        p.get("pooling_mode_mean_tokens")
            .and_then(JsonValue::as_bool),
        Some(true)
    );

    // The config agrees with the weights.
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap_or_default();
    let st = SafeTensors::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
    let w = st.tensor("encoder.layer.0.intermediate.dense.weight");
    assert_eq!(w.map(|t| t.shape), Some(vec![1536, 384]));
}

/// A fresh empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("realizar-st-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{e}"));
}

fn small_weights(name: &str) -> Vec<u8> {
    let mut w = SafetensorsWriter::new();
    w.add_tensor(name, Dtype::F32, &[1], &1.0f32.to_le_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    w.to_bytes()
}

const LLAMA_CONFIG: &str = r#"{"architectures":["LlamaForCausalLM"],"model_type":"llama",
  "hidden_size":576,"num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,
  "intermediate_size":1536,"vocab_size":49152,"rope_theta":100000.0,"rms_norm_eps":1e-05,
  "max_position_embeddings":8192,"tie_word_embeddings":true,"rope_scaling":null,
  "head_dim":null,"torch_dtype":"bfloat16"}"#;

#[test]
fn sharded_directory_with_custom_pooling_path() {
    let dir = scratch("sharded");
    write(&dir.join("config.json"), LLAMA_CONFIG);
    write(
        &dir.join("model.safetensors.index.json"),
        r#"{"metadata":{"total_size":8},"weight_map":{
            "a":"model-00002-of-00002.safetensors","b":"model-00001-of-00002.safetensors"}}"#,
    );
    std::fs::write(
        dir.join("model-00001-of-00002.safetensors"),
        small_weights("b"),
    )
    .ok();
    std::fs::write(
        dir.join("model-00002-of-00002.safetensors"),
        small_weights("a"),
    )
    .ok();
    write(
        &dir.join("modules.json"),
        r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
            {"idx":1,"name":"1","path":"2_MyPooling","type":"sentence_transformers.models.Pooling"}]"#,
    );
    write(&dir.join("2_MyPooling/config.json"), "{}");

    let m = ModelDir::open(&dir).unwrap_or_else(|e| panic!("{e}"));
    let c = &m.config;
    assert_eq!(c.architectures, ["LlamaForCausalLM"]);
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads),
        (Some(9), Some(3))
    );
    assert_eq!(c.rope_theta, Some(100000.0));
    assert_eq!(c.rms_norm_eps, Some(1e-5));
    assert_eq!(c.tie_word_embeddings, Some(true));
    assert_eq!(c.head_dim, None);
    assert_eq!(c.max_position_embeddings, Some(8192));
    assert_eq!(
        c.extra.get("torch_dtype").and_then(JsonValue::as_str),
        Some("bfloat16")
    );
    assert!(
        !c.extra.contains_key("head_dim"),
        "known fields never go to extra"
    );
    assert_eq!(c.extra.get("rope_scaling"), Some(&JsonValue::Null));
    assert!(m.weights.is_sharded());
    let Weights::Sharded {
        index,
        shards,
        index_path,
    } = &m.weights
    else {
        panic!("not sharded")
    };
    assert_eq!(index_path, &dir.join("model.safetensors.index.json"));
    assert_eq!(index.total_size(), Some(8));
    assert_eq!(
        shards,
        &[
            dir.join("model-00001-of-00002.safetensors"),
            dir.join("model-00002-of-00002.safetensors")
        ]
    );
    assert_eq!(m.weights.files().len(), 2);
    assert_eq!(m.pooling_config, Some(dir.join("2_MyPooling/config.json")));
    assert_eq!(
        (m.tokenizer.as_ref(), m.sentence_bert_config.as_ref()),
        (None, None)
    );

    // A missing shard is an error naming it.
    std::fs::remove_file(dir.join("model-00002-of-00002.safetensors")).ok();
    match ModelDir::open(&dir) {
        Err(ModelDirError::MissingShard { path }) => {
            assert_eq!(path, dir.join("model-00002-of-00002.safetensors"))
        }
        other => panic!("expected MissingShard, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn directory_errors() {
    let dir = scratch("errors");
    assert!(matches!(
        ModelDir::open(dir.join("nope")),
        Err(ModelDirError::NotADirectory { .. })
    ));
    assert!(matches!(
        ModelDir::open(&dir),
        Err(ModelDirError::MissingConfig { .. })
    ));

    write(&dir.join("config.json"), r#"{"hidden_size":"big"}"#);
    match ModelDir::open(&dir) {
        Err(e @ ModelDirError::Config { .. }) => {
            assert!(matches!(
                &e,
                ModelDirError::Config {
                    error: HfConfigError::WrongType {
                        field: "hidden_size",
                        found: "a string",
                        ..
                    },
                    ..
                }
            ));
            assert!(std::error::Error::source(&e).is_some());
            assert!(e.to_string().contains("`hidden_size` is a string"), "{e}");
        }
        other => panic!("expected Config, got {other:?}"),
    }

    write(&dir.join("config.json"), r#"{"hidden_size":1}"#);
    assert!(matches!(
        ModelDir::open(&dir),
        Err(ModelDirError::NoWeights { .. })
    ));

    write(
        &dir.join("model.safetensors.index.json"),
        r#"{"weight_map":{"a":"../x"}}"#,
    );
    assert!(matches!(
        ModelDir::open(&dir),
        Err(ModelDirError::Index {
            error: IndexError::BadShardName { .. },
            ..
        })
    ));

    std::fs::write(dir.join("model.safetensors"), small_weights("a")).ok();
    write(&dir.join("modules.json"), "[");
    assert!(matches!(
        ModelDir::open(&dir),
        Err(ModelDirError::ModulesJson { .. })
    ));
    for bad in [
        "{}",
        r#"[{"type":"Pooling"}]"#,
        r#"[{"path":"1_Pooling"}]"#,
        r#"[{"type":"x.Pooling","path":"../up"}]"#,
    ] {
        write(&dir.join("modules.json"), bad);
        assert!(
            matches!(ModelDir::open(&dir), Err(ModelDirError::BadModules { .. })),
            "{bad}"
        );
    }
    // No Pooling module: the conventional path is used when present.
    write(
        &dir.join("modules.json"),
        r#"[{"type":"x.Transformer","path":""}]"#,
    );
    write(&dir.join("1_Pooling/config.json"), "{}");
    let m = ModelDir::open(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.pooling_config, Some(dir.join("1_Pooling/config.json")));
    assert_eq!(m.weights, Weights::Single(dir.join("model.safetensors")));

    // A config that is not UTF-8 cannot be read as text: an I/O error naming the file.
    std::fs::write(dir.join("config.json"), [0xff, 0xfe]).ok();
    match ModelDir::open(&dir) {
        Err(ModelDirError::Io { path, .. }) => assert_eq!(path, dir.join("config.json")),
        other => panic!("expected Io, got {other:?}"),
    }
    // A directory in place of config.json is no config.
    std::fs::remove_file(dir.join("config.json")).ok();
    std::fs::create_dir_all(dir.join("config.json")).ok();
    assert!(matches!(
        ModelDir::open(&dir),
        Err(ModelDirError::MissingConfig { .. })
    ));

    let msgs = [
        ModelDirError::NotADirectory { path: dir.clone() },
        ModelDirError::MissingConfig { path: dir.clone() },
        ModelDirError::NoWeights { dir: dir.clone() },
        ModelDirError::MissingShard { path: dir.clone() },
        ModelDirError::BadModules { path: dir.clone() },
        ModelDirError::Io {
            path: dir.clone(),
            source: std::io::Error::other("x"),
        },
    ];
    for (i, e) in msgs.iter().enumerate() {
        assert!(!e.to_string().is_empty());
        assert_eq!(std::error::Error::source(e).is_some(), i == 5);
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn config_field_types() {
    let wrong = |text: &str| match HfConfig::parse(text) {
        Err(HfConfigError::WrongType { field, .. }) => field,
        other => panic!("{text}: expected WrongType, got {other:?}"),
    };
    assert_eq!(wrong(r#"{"architectures":"Bert"}"#), "architectures");
    assert_eq!(wrong(r#"{"architectures":[1]}"#), "architectures");
    assert_eq!(wrong(r#"{"model_type":1}"#), "model_type");
    assert_eq!(wrong(r#"{"num_hidden_layers":-1}"#), "num_hidden_layers");
    assert_eq!(wrong(r#"{"vocab_size":1.5}"#), "vocab_size");
    assert_eq!(wrong(r#"{"rope_theta":"1e4"}"#), "rope_theta");
    assert_eq!(wrong(r#"{"tie_word_embeddings":1}"#), "tie_word_embeddings");
    assert_eq!(HfConfig::parse("[]"), Err(HfConfigError::NotObject));
    let e = HfConfig::parse(r#"{"a":1,"a":2}"#);
    assert!(matches!(e, Err(HfConfigError::Json(_))));
    let e = e.err().unwrap_or(HfConfigError::NotObject);
    assert!(
        e.to_string().starts_with("config: duplicate key `a`"),
        "{e}"
    );
    assert!(std::error::Error::source(&HfConfigError::NotObject).is_none());
    assert_eq!(
        HfConfigError::NotObject.to_string(),
        "config is not a JSON object"
    );

    let c = HfConfig::parse(r#"{"num_key_value_heads":2,"rope_theta":10000}"#);
    let c = c.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (c.num_attention_heads, c.num_key_value_heads),
        (None, Some(2))
    );
    assert_eq!(c.rope_theta, Some(10000.0));
    assert!(c.architectures.is_empty());
    assert_eq!(HfConfig::parse("{}"), Ok(HfConfig::default()));
}
