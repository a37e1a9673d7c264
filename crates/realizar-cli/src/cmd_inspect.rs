//! `realizar inspect`: a model file's format, metadata and tensors.

use std::path::PathBuf;

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

/// Runs the command.
pub fn run(args: Args) -> CliResult {
    Err(CliError::io(format!(
        "{}: not implemented yet",
        args.path.display()
    )))
}
