//! The `realizar` command-line tool.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_bench;
mod cmd_embed;
mod cmd_generate;
mod cmd_inspect;
mod cmd_inspect_st;
mod cmd_serve;
mod cmd_tokenize;

/// Realizar: run language and embedding models from GGUF and Safetensors files.
#[derive(Parser, Debug)]
#[command(name = "realizar", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print a model file's format, metadata and tensor table.
    Inspect(cmd_inspect::Args),
    /// Serve models over an OpenAI- and Ollama-compatible HTTP API.
    Serve(cmd_serve::Args),
    /// Embed texts (or token ids) with a BERT sentence-embedding model.
    Embed(cmd_embed::Args),
    /// Generate text from a prompt with a GGUF decoder model.
    Generate(cmd_generate::GenerateArgs),
    /// Teacher-forced pass: the top next-token logits at every position.
    Score(cmd_generate::ScoreArgs),
    /// Perplexity of a text, the way llama.cpp's llama-perplexity computes it.
    Perplexity(cmd_generate::PerplexityArgs),
    /// Turn a text into token ids with a model's tokenizer.
    Tokenize(cmd_tokenize::TokenizeArgs),
    /// Turn token ids back into text.
    Detokenize(cmd_tokenize::DetokenizeArgs),
    /// Measure speed like llama-bench, latency, or this machine's ceilings.
    Bench(cmd_bench::Args),
}

/// A command's failure, and the exit code it maps to.
#[derive(Debug)]
pub enum CliError {
    /// The input is invalid (bad file, bad argument): exit code 2.
    Invalid(anyhow::Error),
    /// The environment failed (missing file, I/O error): exit code 1.
    Io(anyhow::Error),
}

impl CliError {
    /// An invalid-input error from anything printable.
    pub fn invalid(e: impl std::fmt::Display) -> CliError {
        CliError::Invalid(anyhow::anyhow!("{e}"))
    }

    /// An I/O error from anything printable.
    pub fn io(e: impl std::fmt::Display) -> CliError {
        CliError::Io(anyhow::anyhow!("{e}"))
    }
}

/// The result of a command.
pub type CliResult = Result<(), CliError>;

/// Writes `text` to stdout. A closed pipe (`realizar inspect ... | head`) ends the output
/// quietly instead of panicking like `println!`.
pub fn print_out(text: &str) -> CliResult {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::io(format!("writing to stdout: {e}"))),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => {
            // `--help` and `--version` go to stdout, which can fail like any output.
            use std::io::{IsTerminal, Write};
            let mut out = std::io::stdout().lock();
            let text = if out.is_terminal() {
                e.render().ansi().to_string()
            } else {
                e.render().to_string()
            };
            let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
            return match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("error: writing to stdout: {err}");
                    ExitCode::from(1)
                }
            };
        }
    };
    let result = match cli.command {
        Command::Inspect(args) => cmd_inspect::run(args),
        Command::Serve(args) => cmd_serve::run(args),
        Command::Embed(args) => cmd_embed::run(args),
        Command::Generate(args) => cmd_generate::run_generate(args),
        Command::Score(args) => cmd_generate::run_score(args),
        Command::Perplexity(args) => cmd_generate::run_perplexity(args),
        Command::Tokenize(args) => cmd_tokenize::run_tokenize(args),
        Command::Detokenize(args) => cmd_tokenize::run_detokenize(args),
        Command::Bench(args) => cmd_bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Invalid(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(CliError::Io(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
