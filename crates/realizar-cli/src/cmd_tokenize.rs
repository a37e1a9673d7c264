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

/// The ids and decoded pieces of a text.
fn tokenize(
    loaded: &LoadedTokenizer,
    text: &str,
    opts: EncodeOptions,
) -> Result<(Vec<u32>, Vec<String>), CliError> {
    let tok = &loaded.tokenizer;
    let ids = tok.encode(text, opts).map_err(CliError::invalid)?;
    let pieces = ids
        .iter()
        .map(|&id| {
            tok.token_bytes(id)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .map_err(CliError::invalid)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((ids, pieces))
}

/// Parses `1,2, 3` into ids.
fn parse_ids(list: &str) -> Result<Vec<u32>, CliError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| CliError::invalid(format!("--ids: {s:?} is not a token id")))
        })
        .collect()
}

/// Runs `realizar tokenize`.
pub fn run_tokenize(args: TokenizeArgs) -> CliResult {
    let loaded = load(&args.model)?;
    let opts = EncodeOptions {
        add_special: !args.no_add_special,
        parse_special: args.special,
    };
    let (ids, pieces) = tokenize(&loaded, &args.text, opts)?;
    let out = if args.json {
        format!("{}\n", serde_json::json!({ "ids": ids, "pieces": pieces }))
    } else {
        ids.iter()
            .zip(&pieces)
            .map(|(id, piece)| format!("{id:>7} {piece:?}\n"))
            .collect()
    };
    crate::print_out(&out)
}

/// Runs `realizar detokenize`.
pub fn run_detokenize(args: DetokenizeArgs) -> CliResult {
    let loaded = load(&args.model)?;
    let ids = parse_ids(&args.ids)?;
    let text = loaded
        .tokenizer
        .decode(&ids, args.skip_special)
        .map_err(CliError::invalid)?;
    crate::print_out(&format!("{text}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use realizar_format_gguf::{GgufWriter, OwnedValue};

    fn tiny_gguf() -> PathBuf {
        // Byte-level characters of printable ASCII plus `Ġ`, one merge, and a BOS token.
        let mut toks: Vec<String> = (b'!'..=b'~').map(|b| (b as char).to_string()).collect();
        toks.extend(["Ġ".to_string(), "Ġa".to_string(), "<s>".to_string()]);
        let mut types = vec![1; toks.len()];
        types[toks.len() - 1] = 3;
        let mut w = GgufWriter::new();
        w.add_metadata("tokenizer.ggml.model", OwnedValue::String("gpt2".into()))
            .add_metadata("tokenizer.ggml.pre", OwnedValue::String("gpt-2".into()))
            .add_metadata("tokenizer.ggml.tokens", OwnedValue::strings(&toks))
            .add_metadata("tokenizer.ggml.token_type", OwnedValue::i32s(&types))
            .add_metadata("tokenizer.ggml.merges", OwnedValue::strings(&["Ġ a"]))
            .add_metadata("tokenizer.ggml.bos_token_id", OwnedValue::U32(96))
            .add_metadata("tokenizer.ggml.add_bos_token", OwnedValue::Bool(true));
        let path =
            std::env::temp_dir().join(format!("realizar-cli-tok-{}.gguf", std::process::id()));
        std::fs::write(&path, w.to_bytes()).expect("write");
        path
    }

    #[test]
    fn tokenize_adds_bos_and_parses_special_on_request() {
        let path = tiny_gguf();
        let loaded = load(path.to_str().expect("utf-8 path")).expect("load");
        let plain = EncodeOptions::default();
        let (ids, pieces) = tokenize(&loaded, " a<s>", plain).expect("tokenize");
        assert_eq!(ids, [96, 95, 27, 82, 29]);
        assert_eq!(pieces, ["<s>", " a", "<", "s", ">"]);
        let special = EncodeOptions {
            add_special: false,
            parse_special: true,
        };
        let (ids, _) = tokenize(&loaded, " a<s>", special).expect("tokenize");
        assert_eq!(ids, [95, 96]);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn bad_input_is_invalid() {
        assert!(matches!(parse_ids("1, 2,3"), Ok(v) if v == [1, 2, 3]));
        assert!(matches!(parse_ids("1,x"), Err(CliError::Invalid(_))));
        assert!(matches!(parse_ids("-1"), Err(CliError::Invalid(_))));
        assert!(matches!(
            load("/nonexistent/model.gguf"),
            Err(CliError::Invalid(_))
        ));
    }
}
