//! `realizar embed`: sentence embeddings from a BERT model directory.

use std::path::PathBuf;

use realizar_runtime::embed::EmbedError;
use realizar_runtime::hf_dir::ModelDirError;
use realizar_runtime::models::resolve_model;
use realizar_runtime::{LoadOptions, Model, RuntimeError};
use serde_json::json;

use crate::{CliError, CliResult};

/// Arguments of `realizar embed`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A Hugging Face / sentence-transformers model directory, or a model name
    /// (`minilm-l6`) under `REALIZAR_MODELS` (default `./models`).
    #[arg(long)]
    pub model: String,
    /// A text to embed; repeat for several.
    #[arg(
        long = "text",
        required_unless_present = "ids",
        allow_hyphen_values = true
    )]
    pub texts: Vec<String>,
    /// Token ids to embed instead of a text, comma-separated (`101,7592,2088,102`); repeat
    /// for several.
    #[arg(long, conflicts_with = "texts")]
    pub ids: Vec<String>,
    /// Print `{"embeddings": [[...], ...]}` instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    let path: PathBuf = resolve_model(&args.model);
    let model = Model::open(&path, &LoadOptions::default()).map_err(|e| match e {
        RuntimeError::Embed(e) => embed_error(e),
        RuntimeError::Io { .. } => CliError::io(e),
        other => CliError::invalid(other),
    })?;
    let embedder = model.embedder().ok_or_else(|| {
        CliError::invalid(format!(
            "{}: not an embedding model (give a Hugging Face BERT directory)",
            path.display()
        ))
    })?;
    let vectors = if args.ids.is_empty() {
        let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
        embedder.embed_texts(&texts).map_err(embed_error)?
    } else {
        let batch = args
            .ids
            .iter()
            .map(|list| parse_ids(list))
            .collect::<Result<Vec<_>, _>>()?;
        embedder.embed_ids(&batch).map_err(embed_error)?
    };
    let mut out = String::new();
    if args.json {
        out = format!("{}\n", json!({ "embeddings": vectors }));
    } else {
        let labels: Vec<&String> = if args.ids.is_empty() {
            args.texts.iter().collect()
        } else {
            args.ids.iter().collect()
        };
        for (label, v) in labels.iter().zip(&vectors) {
            let head: Vec<String> = v.iter().take(8).map(|x| format!("{x:+.6}")).collect();
            out.push_str(&format!("{label:?}\n"));
            out.push_str(&format!("  dim {}: [{}, ...]\n", v.len(), head.join(", ")));
        }
    }
    crate::print_out(&out)
}

/// Parses `101,7592,102`.
fn parse_ids(list: &str) -> Result<Vec<u32>, CliError> {
    list.split(',')
        .map(|s| {
            s.trim().parse::<u32>().map_err(|e| {
                CliError::invalid(format!("--ids {list:?}: {s:?} is not a token id: {e}"))
            })
        })
        .collect()
}

/// Missing files and failed reads exit with 1; invalid models and inputs with 2.
fn embed_error(e: EmbedError) -> CliError {
    let io = matches!(
        &e,
        EmbedError::Io { .. }
            | EmbedError::ModelDir {
                source: ModelDirError::NotADirectory { .. }
                    | ModelDirError::MissingConfig { .. }
                    | ModelDirError::NoWeights { .. }
                    | ModelDirError::MissingShard { .. }
                    | ModelDirError::Io { .. },
            }
    );
    let err = anyhow::Error::new(e);
    if io {
        CliError::Io(err)
    } else {
        CliError::Invalid(err)
    }
}
