//! The `realizar` command-line tool.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd_inspect;

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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Inspect(args) => cmd_inspect::run(args),
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
