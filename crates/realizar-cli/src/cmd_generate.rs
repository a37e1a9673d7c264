//! `realizar generate`, `realizar score` and `realizar perplexity`: the decoder commands.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use realizar_runtime::constrain::Grammar;
use realizar_runtime::models::resolve_model;
use realizar_runtime::{
    generate, perplexity, score, ChatMessage, GenerateConfig, LoadOptions, Model, RuntimeError,
    SamplerConfig, TemplateChoice,
};
use serde_json::json;

use crate::{CliError, CliResult};

/// Arguments of `realizar generate`.
#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// A .gguf file, or a model name (`smollm2-135m`, `gemma3-270m`) in the models folder
    /// (`REALIZAR_MODELS`, else ./models).
    #[arg(long)]
    pub model: String,
    /// The prompt text.
    #[arg(
        long,
        conflicts_with = "prompt_ids",
        required_unless_present_any = ["prompt_ids", "messages"]
    )]
    pub prompt: Option<String>,
    /// The prompt as comma-separated token ids.
    #[arg(long, value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    /// Render the prompt as one user message with the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// With --chat or --messages: the chat template, one of llama.cpp's built-in names
    /// (chatml, gemma, llama3, phi3, mistral-v7, ...) or a Jinja template file, instead of the
    /// file's own (without either, the model's family's built-in one).
    #[arg(long, value_name = "NAME|FILE", value_parser = TemplateChoice::from_arg)]
    pub chat_template: Option<TemplateChoice>,
    /// A system message for `--chat`.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// A whole conversation for the chat template, as a JSON array of
    /// `{"role": ..., "content": ...}` objects (implies `--chat`).
    #[arg(long, conflicts_with_all = ["prompt", "prompt_ids", "system"])]
    pub messages: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0: all).
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling threshold (1: off).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the best (0: off).
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty over the last 64 tokens (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Presence penalty (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Frequency penalty (0: off).
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Random seed: the same seed reproduces the same output.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop when the text contains this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Constrain the output to JSON that validates against the JSON schema in FILE (every
    /// step samples only tokens that keep it valid; generation ends when the value is
    /// complete).
    #[arg(long, value_name = "FILE", conflicts_with = "grammar")]
    pub json_schema: Option<PathBuf>,
    /// Constrain the output to the grammar in FILE: llama.cpp's GBNF (`root ::= ...`), or
    /// llguidance's Lark syntax when the file starts with a `%llguidance` line.
    #[arg(long, value_name = "FILE")]
    pub grammar: Option<PathBuf>,
    /// Worker threads (default: physical cores).
    #[arg(long, value_parser = realizar_runtime::threads::parse_threads)]
    pub threads: Option<usize>,
    /// Context length (default: the model's, at most 4096).
    #[arg(long)]
    pub ctx: Option<usize>,
    /// Print one JSON object instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

/// The output constraint the flags ask for: `--json-schema FILE` or `--grammar FILE`.
fn grammar_of(args: &GenerateArgs) -> Result<Option<Grammar>, CliError> {
    let read = |flag: &str, path: &Path| {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::invalid(format!("{flag} {}: {e}", path.display())))
    };
    if let Some(path) = &args.json_schema {
        let text = read("--json-schema", path)?;
        let schema: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            CliError::invalid(format!(
                "--json-schema {}: not valid JSON: {e}",
                path.display()
            ))
        })?;
        return Ok(Some(Grammar::JsonSchema(schema)));
    }
    if let Some(path) = &args.grammar {
        return Ok(Some(Grammar::from_text(read("--grammar", path)?)));
    }
    Ok(None)
}

/// Arguments of `realizar score`.
#[derive(clap::Args, Debug)]
pub struct ScoreArgs {
    /// A .gguf file or a model name.
    #[arg(long)]
    pub model: String,
    /// The token ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub prompt_ids: Vec<u32>,
    /// How many `(id, logit)` pairs per position.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Worker threads (default: physical cores).
    #[arg(long, value_parser = realizar_runtime::threads::parse_threads)]
    pub threads: Option<usize>,
    /// Print JSON (`{"ids": [..], "top": [[[id, logit], ..], ..]}`).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `realizar perplexity`.
#[derive(clap::Args, Debug)]
pub struct PerplexityArgs {
    /// A .gguf file or a model name.
    #[arg(long)]
    pub model: String,
    /// A text file, tokenized whole.
    #[arg(
        long,
        conflicts_with = "ids_file",
        required_unless_present = "ids_file"
    )]
    pub file: Option<PathBuf>,
    /// A file of token ids (separated by commas or whitespace) instead of text.
    #[arg(long)]
    pub ids_file: Option<PathBuf>,
    /// Tokens per chunk.
    #[arg(long, default_value_t = 512)]
    pub ctx: usize,
    /// Worker threads (default: physical cores).
    #[arg(long, value_parser = realizar_runtime::threads::parse_threads)]
    pub threads: Option<usize>,
    /// Print JSON (`{"ppl": .., "chunks": .., "tokens_scored": ..}`).
    #[arg(long)]
    pub json: bool,
}

/// Maps a runtime error to the CLI's exit-code contract.
fn runtime_err(e: RuntimeError) -> CliError {
    match e {
        RuntimeError::Io { .. } => CliError::io(e),
        other => CliError::invalid(other),
    }
}

fn load(model: &str, threads: Option<usize>, ctx: Option<usize>) -> Result<Model, CliError> {
    load_with(model, threads, ctx, None)
}

fn load_with(
    model: &str,
    threads: Option<usize>,
    ctx: Option<usize>,
    chat_template: Option<TemplateChoice>,
) -> Result<Model, CliError> {
    let path = resolve_model(model);
    if !path.is_file() && !path.is_dir() {
        return Err(CliError::io(format!(
            "{}: model file (or directory) not found",
            path.display()
        )));
    }
    let model = Model::open(
        &path,
        &LoadOptions {
            threads,
            ctx,
            chat_template,
            ..LoadOptions::default()
        },
    )
    .map_err(runtime_err)?;
    model.require_decoder().map_err(runtime_err)?;
    Ok(model)
}

/// `--messages`: a JSON array of `{"role", "content"}` objects (strings; other fields are an
/// error rather than silently dropped).
fn parse_messages(json: &str) -> Result<Vec<ChatMessage>, CliError> {
    let bad = |what: String| CliError::invalid(format!("--messages: {what}"));
    let v: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad(format!("not JSON: {e}")))?;
    let list = v
        .as_array()
        .ok_or_else(|| bad("must be a JSON array of messages".into()))?;
    if list.is_empty() {
        return Err(bad("the conversation is empty".into()));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let obj = m
                .as_object()
                .ok_or_else(|| bad(format!("message {i} is not an object")))?;
            if let Some(k) = obj
                .keys()
                .find(|k| !matches!(k.as_str(), "role" | "content"))
            {
                return Err(bad(format!("message {i}: unsupported field `{k}`")));
            }
            let field = |k: &str| {
                obj.get(k)
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| bad(format!("message {i}: `{k}` must be a string")))
            };
            Ok(ChatMessage::new(field("role")?, field("content")?))
        })
        .collect()
}

/// The prompt's ids: given, or the text tokenized (with `--chat`, the conversation rendered by
/// [`Model::chat_prompt`], the rule the server's chat routes use too).
fn prompt_ids(args: &GenerateArgs, model: &Model) -> Result<Vec<u32>, CliError> {
    let ids = match (&args.prompt, &args.prompt_ids) {
        (_, Some(ids)) => ids.clone(),
        (None, None) if args.messages.is_some() => {
            let messages = parse_messages(args.messages.as_deref().unwrap_or_default())?;
            model.chat_prompt(&messages).map_err(runtime_err)?
        }
        (Some(text), None) if args.chat => {
            let mut messages = Vec::new();
            if let Some(s) = &args.system {
                messages.push(ChatMessage::new("system", s.as_str()));
            }
            messages.push(ChatMessage::new("user", text.as_str()));
            model.chat_prompt(&messages).map_err(runtime_err)?
        }
        (Some(text), None) => model.tokenize(text, true, false).map_err(runtime_err)?,
        (None, None) => return Err(CliError::invalid("give --prompt or --prompt-ids")),
    };
    if ids.is_empty() {
        return Err(CliError::invalid("the prompt has no tokens"));
    }
    model.check_ids(&ids).map_err(runtime_err)?;
    Ok(ids)
}

/// Runs `realizar generate`.
pub fn run_generate(args: GenerateArgs) -> CliResult {
    if args.chat_template.is_some() && !args.chat && args.messages.is_none() {
        return Err(CliError::invalid(
            "--chat-template applies to chats: add --chat or --messages".to_string(),
        ));
    }
    let t0 = Instant::now();
    let model = load_with(
        &args.model,
        args.threads,
        args.ctx,
        args.chat_template.clone(),
    )?;
    let load_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let ids = prompt_ids(&args, &model)?;
    let grammar = grammar_of(&args)?;
    if grammar.is_some() && model.tokenizer().is_none() {
        return Err(CliError::invalid(
            "--json-schema and --grammar need the model's tokenizer, and the file has none",
        ));
    }
    let config = GenerateConfig {
        max_tokens: args.max_tokens,
        sampler: SamplerConfig {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
            repeat_penalty: args.repeat_penalty,
            presence_penalty: args.presence_penalty,
            frequency_penalty: args.frequency_penalty,
            seed: args.seed,
            ..SamplerConfig::default()
        },
        stop_on_eog: true,
        grammar,
    };
    config.sampler.validate().map_err(|e| {
        // The flag of each sampler field (`--top-p` for `top_p`).
        CliError::invalid(format!(
            "--{} must be {}, got {}",
            e.param.name().replace('_', "-"),
            e.expected,
            e.value
        ))
    })?;
    if !args.stop.is_empty() && model.tokenizer().is_none() {
        return Err(CliError::invalid(
            "--stop needs the model's tokenizer, and the file has none",
        ));
    }
    let decoder = model.require_decoder().map_err(runtime_err)?;
    let mut session = decoder.session().map_err(runtime_err)?;
    let mut text = model.text_stream(args.stop.clone()).ok();
    let has_text = text.is_some();
    let mut stdout = std::io::stdout().lock();
    let json_mode = args.json;
    let mut write_err = None;
    let g = generate(&mut session, &ids, &config, text.as_mut(), |id, piece| {
        if json_mode {
            return ControlFlow::Continue(());
        }
        let r = match id {
            Some(id) if !has_text => write!(stdout, "{id} "),
            _ => write!(stdout, "{piece}"),
        };
        match r.and_then(|()| stdout.flush()) {
            Ok(()) => ControlFlow::Continue(()),
            Err(e) => {
                write_err = Some(e);
                ControlFlow::Break(())
            }
        }
    })
    .map_err(runtime_err)?;
    if let Some(e) = write_err {
        return Err(CliError::io(format!("writing to stdout: {e}")));
    }
    let tm = g.timings;
    if json_mode {
        let out = json!({
            "prompt_ids": ids,
            "ids": g.ids,
            "text": g.text,
            "stop_reason": g.stop_reason.as_str(),
            "timings": {
                "load_ms": load_ms,
                "prefill_ms": tm.prefill_ms,
                "prefill_tok_s": tm.prefill_tok_s(),
                "decode_ms": tm.decode_ms,
                "decode_tok_s": tm.decode_tok_s(),
            }
        });
        writeln!(stdout, "{out}").map_err(|e| CliError::io(format!("writing to stdout: {e}")))?;
    } else {
        let _ = writeln!(stdout);
        eprintln!(
            "[{}; {} prompt tokens at {:.1} tok/s, {} tokens at {:.1} tok/s; load {:.0} ms]",
            g.stop_reason.as_str(),
            tm.prefill_tokens,
            tm.prefill_tok_s(),
            g.ids.len(),
            tm.decode_tok_s(),
            load_ms
        );
    }
    Ok(())
}

/// Runs `realizar score`.
pub fn run_score(args: ScoreArgs) -> CliResult {
    let ctx = args.prompt_ids.len().max(1);
    let model = load(&args.model, args.threads, Some(ctx))?;
    model.check_ids(&args.prompt_ids).map_err(runtime_err)?;
    let mut session = model
        .require_decoder()
        .and_then(|d| d.session())
        .map_err(runtime_err)?;
    let top = score(&mut session, &args.prompt_ids, args.top).map_err(runtime_err)?;
    let mut stdout = std::io::stdout().lock();
    let res = if args.json {
        let rows: Vec<Vec<(u32, f32)>> = top;
        writeln!(stdout, "{}", json!({ "ids": args.prompt_ids, "top": rows }))
    } else {
        let mut r = Ok(());
        for (pos, row) in top.iter().enumerate() {
            let cells: Vec<String> = row.iter().map(|(id, l)| format!("{id}:{l:.4}")).collect();
            r = r.and_then(|()| writeln!(stdout, "{pos}\t{}", cells.join(" ")));
        }
        r
    };
    res.map_err(|e| CliError::io(format!("writing to stdout: {e}")))
}

/// The most bytes `perplexity` reads from `--file` or `--ids-file` (several times the largest
/// evaluation texts in use, such as wikitext-2's 1.3 MB test split).
const MAX_INPUT_BYTES: u64 = 64 << 20;

/// A text file of at most [`MAX_INPUT_BYTES`]: a regular file (a FIFO or `/dev/zero` would
/// block or never end), read through a bound.
fn read_input(path: &Path) -> Result<String, CliError> {
    use std::io::Read;
    let io_err = |e: std::io::Error| CliError::io(format!("{}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if !meta.is_file() {
        return Err(CliError::invalid(format!(
            "{}: not a regular file",
            path.display()
        )));
    }
    let too_big = || {
        CliError::invalid(format!(
            "{}: larger than the {} MiB this command reads",
            path.display(),
            MAX_INPUT_BYTES >> 20
        ))
    };
    if meta.len() > MAX_INPUT_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_INPUT_BYTES + 1).read_to_end(&mut bytes))
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes)
        .map_err(|e| CliError::invalid(format!("{}: not UTF-8 text: {e}", path.display())))
}

fn read_ids_file(path: &Path) -> Result<Vec<u32>, CliError> {
    let text = read_input(path)?;
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .map_err(|e| CliError::invalid(format!("{}: `{s}`: {e}", path.display())))
        })
        .collect()
}

/// Runs `realizar perplexity`.
pub fn run_perplexity(args: PerplexityArgs) -> CliResult {
    let model = load(&args.model, args.threads, Some(args.ctx.max(1)))?;
    let tokens = match (&args.file, &args.ids_file) {
        (_, Some(p)) => read_ids_file(p)?,
        (Some(p), None) => {
            let text = read_input(p)?;
            model
                .tokenize(&text, true, false)
                .map_err(|e| CliError::invalid(format!("{}: {e}", p.display())))?
        }
        (None, None) => return Err(CliError::invalid("give --file or --ids-file")),
    };
    model.check_ids(&tokens).map_err(runtime_err)?;
    let decoder = model.require_decoder().map_err(runtime_err)?;
    let special = decoder.special();
    let bos = if special.add_bos { special.bos } else { None };
    let mut session = decoder.session().map_err(runtime_err)?;
    let p = perplexity(&mut session, &tokens, args.ctx, bos).map_err(runtime_err)?;
    let out = if args.json {
        json!({ "ppl": p.ppl, "chunks": p.chunks, "tokens_scored": p.tokens_scored }).to_string()
    } else {
        format!(
            "perplexity {:.4} over {} chunks ({} tokens scored)",
            p.ppl, p.chunks, p.tokens_scored
        )
    };
    crate::print_out(&format!("{out}\n"))
}
