//! `realizar inspect` for safetensors files and Hugging Face model directories.

use std::path::Path;

use realizar_format_safetensors::MmapSafetensors;
use realizar_runtime::hf_dir::{HfConfig, ModelDir, ModelDirError};
use serde_json::{json, Value as Json};

use crate::cmd_inspect::Report;
use crate::CliError;

/// A tensor row: name, dtype, shape, bytes.
type Row = (String, String, Vec<u64>, u64);

/// Metadata entries and tensor rows of one file.
type FileContents = (Vec<(String, Json)>, Vec<Row>);

/// Reads one safetensors file's tensors and `__metadata__`.
fn read_file(path: &Path) -> Result<FileContents, CliError> {
    let map = MmapSafetensors::open(path)
        .map_err(|e| CliError::io(format!("{}: {e}", path.display())))?;
    let st = map
        .parse()
        .map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))?;
    let metadata = st
        .metadata()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        .unwrap_or_default();
    let rows = st
        .tensors()
        .map(|(name, t)| {
            (
                name.to_string(),
                t.dtype().name().to_string(),
                t.shape().iter().map(|&d| d as u64).collect(),
                t.data().len() as u64,
            )
        })
        .collect();
    Ok((metadata, rows))
}

/// `inspect` of a single `.safetensors` file.
pub fn inspect_safetensors_file(path: &Path) -> Result<Report, CliError> {
    let (metadata, rows) = read_file(path)?;
    Ok(Report::safetensors(
        "safetensors",
        metadata,
        Vec::new(),
        rows,
        vec![path.display().to_string()],
    ))
}

/// `inspect` of a Hugging Face model directory: its config and every weight file.
pub fn inspect_dir(path: &Path) -> Result<Report, CliError> {
    let dir = ModelDir::open(path).map_err(|e| match e {
        ModelDirError::Io { .. } => CliError::io(format!("{}: {e}", path.display())),
        e => CliError::invalid(format!("{}: {e}", path.display())),
    })?;
    let mut metadata = Vec::new();
    let mut rows = Vec::new();
    let mut files = vec![dir.config_path.display().to_string()];
    for file in dir.weights.files() {
        let (m, r) = read_file(file)?;
        metadata.extend(m);
        rows.extend(r);
        files.push(file.display().to_string());
    }
    for extra in [&dir.tokenizer, &dir.tokenizer_config, &dir.pooling_config]
        .into_iter()
        .flatten()
    {
        files.push(extra.display().to_string());
    }
    Ok(Report::safetensors(
        "huggingface-dir",
        metadata,
        config_hyperparameters(&dir.config),
        rows,
        files,
    ))
}

fn config_hyperparameters(c: &HfConfig) -> Vec<(String, Json)> {
    let mut out = Vec::new();
    let mut put = |k: &str, v: Json| {
        if !v.is_null() {
            out.push((k.to_string(), v));
        }
    };
    put(
        "architecture",
        c.architectures.first().map_or(Json::Null, |a| json!(a)),
    );
    put("model_type", json!(c.model_type));
    put("block_count", json!(c.num_hidden_layers));
    put("embedding_length", json!(c.hidden_size));
    put("feed_forward_length", json!(c.intermediate_size));
    put("head_count", json!(c.num_attention_heads));
    put("head_count_kv", json!(c.num_key_value_heads));
    put("context_length", json!(c.max_position_embeddings));
    put("vocab_size", json!(c.vocab_size));
    put("rope_freq_base", json!(c.rope_theta));
    put("rms_norm_eps", json!(c.rms_norm_eps));
    put("layer_norm_eps", json!(c.layer_norm_eps));
    put("tie_word_embeddings", json!(c.tie_word_embeddings));
    for (k, v) in &c.extra {
        put(k, v.clone());
    }
    out
}
