//! `realizar inspect`: a model file's format, metadata and tensors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use realizar_format_gguf::{GgufFile, MmapGguf, Value};
use serde_json::{json, Map, Value as Json};

use crate::{CliError, CliResult};

/// Arguments of `realizar inspect`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A .gguf file, a .safetensors file or a Hugging Face model directory.
    pub path: PathBuf,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arrays longer than this are summarized.
const ARRAY_PREVIEW: usize = 8;

/// One row of the tensor table.
pub(crate) struct Row {
    name: String,
    ty: String,
    shape: Vec<u64>,
    bytes: u64,
}

/// What `inspect` found, in a form that prints as text or JSON.
pub(crate) struct Report {
    format: &'static str,
    version: Option<u32>,
    metadata: Vec<(String, Json)>,
    hyperparameters: Vec<(String, Json)>,
    tensors: Vec<Row>,
    files: Vec<String>,
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let path = &args.path;
    let meta =
        std::fs::metadata(path).map_err(|e| CliError::io(format!("{}: {e}", path.display())))?;
    let report = if meta.is_dir() {
        crate::cmd_inspect_st::inspect_dir(path)?
    } else if is_gguf(path)? {
        inspect_gguf(path)?
    } else {
        crate::cmd_inspect_st::inspect_safetensors_file(path)?
    };
    if args.json {
        crate::print_out(&format!("{}\n", to_json(&report)))
    } else {
        crate::print_out(&text(&report))
    }
}

/// Whether to read the file as GGUF: its extension says so, or it starts with the magic.
fn is_gguf(path: &Path) -> Result<bool, CliError> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return Ok(true);
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("safetensors"))
    {
        return Ok(false);
    }
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut f =
        std::fs::File::open(path).map_err(|e| CliError::io(format!("{}: {e}", path.display())))?;
    let n = f
        .read(&mut magic)
        .map_err(|e| CliError::io(format!("{}: {e}", path.display())))?;
    Ok(n == 4 && magic == realizar_format_gguf::MAGIC)
}

fn inspect_gguf(path: &Path) -> Result<Report, CliError> {
    let map = MmapGguf::open(path).map_err(|e| CliError::io(format!("{}: {e}", path.display())))?;
    let file = map
        .parse()
        .map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))?;
    let metadata = file
        .metadata()
        .map(|(k, v)| (k.to_string(), value_json(v)))
        .collect();
    let tensors = file
        .tensors()
        .iter()
        .map(|t| Row {
            name: t.name.to_string(),
            ty: t.ty.name().to_string(),
            shape: t.dims.clone(),
            bytes: t.size,
        })
        .collect();
    Ok(Report {
        format: "gguf",
        version: Some(file.version()),
        metadata,
        hyperparameters: gguf_hyperparameters(&file),
        tensors,
        files: vec![path.display().to_string()],
    })
}

/// The architecture's hyperparameters, from the `<arch>.*` keys.
fn gguf_hyperparameters(file: &GgufFile<'_>) -> Vec<(String, Json)> {
    let Ok(arch) = file.architecture() else {
        return Vec::new();
    };
    let mut out = vec![("architecture".to_string(), json!(arch))];
    let keys = [
        ("block_count", "block_count"),
        ("context_length", "context_length"),
        ("embedding_length", "embedding_length"),
        ("feed_forward_length", "feed_forward_length"),
        ("head_count", "attention.head_count"),
        ("head_count_kv", "attention.head_count_kv"),
        ("key_length", "attention.key_length"),
        ("value_length", "attention.value_length"),
        ("rms_norm_eps", "attention.layer_norm_rms_epsilon"),
        ("layer_norm_eps", "attention.layer_norm_epsilon"),
        ("sliding_window", "attention.sliding_window"),
        ("rope_freq_base", "rope.freq_base"),
        ("rope_dimension_count", "rope.dimension_count"),
        ("vocab_size", "vocab_size"),
    ];
    for (name, key) in keys {
        if let Some(v) = file.get(&format!("{arch}.{key}")) {
            out.push((name.to_string(), value_json(v)));
        }
    }
    if !out.iter().any(|(k, _)| k == "vocab_size") {
        if let Ok(tokens) = file.get_array("tokenizer.ggml.tokens") {
            out.push(("vocab_size".to_string(), json!(tokens.len())));
        }
    }
    out
}

/// A metadata value as JSON, long arrays summarized.
pub(crate) fn value_json(v: Value<'_>) -> Json {
    match v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        // Through the shortest decimal form, so 1e-6f32 prints as 1e-6, not 9.99999997e-7.
        Value::F32(x) => x
            .to_string()
            .parse::<f64>()
            .map_or(Json::Null, |v| json!(v)),
        Value::F64(x) => json!(x),
        Value::Bool(x) => json!(x),
        Value::String(s) => json!(s),
        Value::Array(a) if a.len() <= ARRAY_PREVIEW => {
            Json::Array(a.iter().map(value_json).collect())
        }
        Value::Array(a) => json!({
            "array": a.element_type().name(),
            "len": a.len(),
            "head": a.iter().take(ARRAY_PREVIEW).map(value_json).collect::<Vec<_>>(),
        }),
    }
}

impl Report {
    /// Creates a report of a safetensors file or directory.
    pub(crate) fn safetensors(
        format: &'static str,
        metadata: Vec<(String, Json)>,
        hyperparameters: Vec<(String, Json)>,
        tensors: Vec<(String, String, Vec<u64>, u64)>,
        files: Vec<String>,
    ) -> Report {
        Report {
            format,
            version: None,
            metadata,
            hyperparameters,
            tensors: tensors
                .into_iter()
                .map(|(name, ty, shape, bytes)| Row {
                    name,
                    ty,
                    shape,
                    bytes,
                })
                .collect(),
            files,
        }
    }

    fn type_counts(&self) -> BTreeMap<&str, usize> {
        let mut m = BTreeMap::new();
        for t in &self.tensors {
            *m.entry(t.ty.as_str()).or_insert(0) += 1;
        }
        m
    }

    fn total_bytes(&self) -> u64 {
        self.tensors.iter().map(|t| t.bytes).sum()
    }

    fn total_elements(&self) -> u64 {
        self.tensors
            .iter()
            .map(|t| t.shape.iter().product::<u64>())
            .sum()
    }
}

fn to_json(r: &Report) -> Json {
    let obj = |pairs: &[(String, Json)]| {
        Json::Object(pairs.iter().cloned().collect::<Map<String, Json>>())
    };
    json!({
        "format": r.format,
        "version": r.version,
        "files": r.files,
        "metadata": obj(&r.metadata),
        "hyperparameters": obj(&r.hyperparameters),
        "tensors": r.tensors.iter().map(|t| json!({
            "name": t.name, "type": t.ty, "shape": t.shape, "bytes": t.bytes,
        })).collect::<Vec<_>>(),
        "totals": {
            "tensors": r.tensors.len(),
            "bytes": r.total_bytes(),
            "elements": r.total_elements(),
            "types": r.type_counts(),
        },
    })
}

fn text_value(v: &Json) -> String {
    match v {
        Json::String(s) if s.chars().count() > 120 => {
            let head: String = s.chars().take(120).collect();
            format!("{head:?}… ({} chars)", s.chars().count())
        }
        Json::Object(o) if o.contains_key("array") => format!(
            "[{} × {}] {}…",
            o.get("len").unwrap_or(&Json::Null),
            o.get("array").and_then(Json::as_str).unwrap_or("?"),
            o.get("head").unwrap_or(&Json::Null)
        ),
        v => v.to_string(),
    }
}

fn text(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    match r.version {
        Some(v) => _ = writeln!(o, "format: {} v{v}", r.format),
        None => _ = writeln!(o, "format: {}", r.format),
    }
    for f in &r.files {
        _ = writeln!(o, "file: {f}");
    }
    if !r.hyperparameters.is_empty() {
        _ = writeln!(o, "\nhyperparameters:");
        for (k, v) in &r.hyperparameters {
            _ = writeln!(o, "  {k:<22} {}", text_value(v));
        }
    }
    if !r.metadata.is_empty() {
        _ = writeln!(o, "\nmetadata ({} keys):", r.metadata.len());
        for (k, v) in &r.metadata {
            _ = writeln!(o, "  {k:<40} {}", text_value(v));
        }
    }
    _ = writeln!(o, "\ntensors ({}):", r.tensors.len());
    _ = writeln!(
        o,
        "  {:<48} {:<8} {:<22} {:>12}",
        "name", "type", "shape", "bytes"
    );
    for t in &r.tensors {
        let shape = format!("{:?}", t.shape);
        _ = writeln!(
            o,
            "  {:<48} {:<8} {:<22} {:>12}",
            t.name, t.ty, shape, t.bytes
        );
    }
    let types: Vec<String> = r
        .type_counts()
        .iter()
        .map(|(t, n)| format!("{n} {t}"))
        .collect();
    _ = writeln!(
        o,
        "\ntotal: {} tensors ({}), {} elements, {} bytes",
        r.tensors.len(),
        types.join(", "),
        r.total_elements(),
        r.total_bytes()
    );
    o
}
