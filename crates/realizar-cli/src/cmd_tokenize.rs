//! `realizar tokenize` and `realizar detokenize`.

use std::path::PathBuf;

use realizar_runtime::models::resolve_model;
use realizar_runtime::tokenizer_load::{load_tokenizer, EncodeOptions, LoadedTokenizer};

use crate::{CliError, CliResult};

/// Arguments of `realizar tokenize`.
#[derive(clap::Args, Debug)]
pub struct TokenizeArgs {
    /// Model: a .gguf file, a Hugging Face directory, or a name (smollm2-135m, gemma3-270m,
    /// minilm-l6) in the models folder (REALIZAR_MODELS or ./models).
    #[arg(long)]
    model: String,
    /// The text to tokenize.
    #[arg(long)]
    text: String,
    /// Parse special tokens written in the text (`<|im_start|>`).
    #[arg(long)]
    special: bool,
    /// Do not add what the model puts around a text (BOS, `[CLS]`…`[SEP]`).
    #[arg(long)]
    no_add_special: bool,
    /// Print `{"ids":[…],"pieces":[…]}`.
    #[arg(long)]
    json: bool,
}

/// Arguments of `realizar detokenize`.
#[derive(clap::Args, Debug)]
pub struct DetokenizeArgs {
    /// Model: a .gguf file, a Hugging Face directory, or a model name.
    #[arg(long)]
    model: String,
    /// Comma-separated token ids.
    #[arg(long)]
    ids: String,
    /// Leave control tokens (BOS, EOS, `<|im_end|>`) out of the text.
    #[arg(long)]
    skip_special: bool,
}

fn load(model: &str) -> Result<LoadedTokenizer, CliError> {
    let path: PathBuf = resolve_model(model);
    if !path.exists() {
        return Err(CliError::invalid(format!(
            "model {model:?} not found at {} (run `cargo xtask fetch-models`, or give a path)",
            path.display()
        )));
    }
    load_tokenizer(&path).map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))
}

/// Runs `realizar tokenize`.
pub fn run_tokenize(args: TokenizeArgs) -> CliResult {
    let loaded = load(&args.model)?;
    let tok = &loaded.tokenizer;
    let opts = EncodeOptions {
        add_special: !args.no_add_special,
        parse_special: args.special,
    };
    let ids = tok.encode(&args.text, opts).map_err(CliError::invalid)?;
    let pieces = ids
        .iter()
        .map(|&id| {
            tok.token_bytes(id)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .map_err(CliError::invalid)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if args.json {
        let v = serde_json::json!({ "ids": ids, "pieces": pieces });
        println!("{v}");
    } else {
        for (id, piece) in ids.iter().zip(&pieces) {
            println!("{id:>7} {piece:?}");
        }
    }
    Ok(())
}

/// Runs `realizar detokenize`.
pub fn run_detokenize(args: DetokenizeArgs) -> CliResult {
    let loaded = load(&args.model)?;
    let ids = args
        .ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| CliError::invalid(format!("--ids: {s:?} is not a token id")))
        })
        .collect::<Result<Vec<u32>, _>>()?;
    let text = loaded
        .tokenizer
        .decode(&ids, args.skip_special)
        .map_err(CliError::invalid)?;
    println!("{text}");
    Ok(())
}
