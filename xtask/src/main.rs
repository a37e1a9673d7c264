//! Project automation: `cargo xtask <command>`.
//!
//! Commands: `test`, `ci`, `fetch-models`, `fuzz`, `coverage`, `mutants`.
#![forbid(unsafe_code)]

mod bench;
mod loadtest;
mod models;
mod mutants;
mod serve;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

const HELP: &str = "\
cargo xtask <command>

Commands:
  test                 fetch the real models if missing, then run the whole test suite (release)
  ci                   rustfmt --check, clippy -D warnings, docs, then `test`
  fetch-models         download the real models into models/ (or $REALIZAR_MODELS), verified by sha256
  fuzz [--seconds N] [--target T]
                       run each cargo-fuzz target (gguf, safetensors, tokenizer, chat_template,
                       request, model_loader) for N seconds (default 60); needs a nightly toolchain
  coverage             line coverage of the format crates (cargo-tarpaulin; installed if missing)
  mutants [--group G] [--shard K/N] [--minutes M] [--report]
                       mutation testing (cargo-mutants; installed if missing) of the format crates,
                       the quantization scalar kernels, the tokenizers, sampling and the request
                       parsing, sharded and time-boxed; prints each group's score
  serve [ARGS..]       fetch the models, build in release, serve SmolLM2-135M + all-MiniLM-L6-v2 on 127.0.0.1:8080
  loadtest [--clients 32 --requests 10 --max-tokens 16 --parallel 8 --disconnect-every 4 --ignore-eos]
                       bounded loopback load test of `realizar serve` (streaming, disconnects, RSS check)
  bench [--reps 3 --rounds 2 --threads 1,2 --no-1b --model FILE..]
                       ceilings, realizar bench vs llama-bench (alternating), synthetic 1B latency;
                       --model (repeatable) benchmarks those GGUF files instead of the fetched models
";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else {
        print!("{HELP}");
        return Ok(());
    };
    let rest = &args[1..];
    match cmd.as_str() {
        "test" => test(rest),
        "ci" => ci(),
        "fetch-models" => models::fetch_all(&models::models_dir()),
        "fuzz" => fuzz(rest),
        "coverage" => coverage(),
        "mutants" => mutants::mutants(rest),
        "serve" => serve::serve(rest),
        "loadtest" => serve::loadtest(rest),
        "bench" => bench::bench(rest),
        "-h" | "--help" | "help" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{HELP}"),
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command, failing with its rendering if it does not succeed.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    eprintln!("$ {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    models::fetch_all(&models::models_dir())?;
    run_cmd(
        cargo()
            .args(["test", "--workspace", "--release", "--all-targets"])
            .args(extra),
    )?;
    // Doctests are not part of --all-targets.
    run_cmd(cargo().args(["test", "--workspace", "--release", "--doc"]))?;
    // The kernel tests again at the lower instruction-set levels this CPU also has (the public
    // API only reaches the best one): without AVX-512, then without VNNI either.
    for off in [
        &["REALIZAR_QUANT_NO_AVX512"][..],
        &["REALIZAR_QUANT_NO_AVX512", "REALIZAR_QUANT_NO_VNNI"][..],
    ] {
        let mut c = cargo();
        c.args(["test", "--release", "-p", "realizar-quant", "--lib"]);
        for v in off {
            c.env(v, "1");
        }
        run_cmd(&mut c)?;
    }
    Ok(())
}

fn ci() -> Result<()> {
    run_cmd(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run_cmd(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--release",
        "--",
        "-D",
        "warnings",
    ]))?;
    run_cmd(
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--release"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    test(&[])
}

fn has_tool(bin: &str) -> bool {
    Command::new("cargo")
        .args([bin, "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

pub fn ensure_cargo_tool(subcommand: &str, krate: &str) -> Result<()> {
    if has_tool(subcommand) {
        return Ok(());
    }
    eprintln!("installing {krate} from crates.io (once)");
    run_cmd(Command::new("cargo").args(["install", "--locked", krate]))
}

/// The fuzz targets in `fuzz/fuzz_targets`, each with its seed corpus in `fuzz/corpus`.
const FUZZ_TARGETS: [&str; 6] = [
    "gguf",
    "safetensors",
    "tokenizer",
    "chat_template",
    "request",
    "model_loader",
];

fn fuzz(args: &[String]) -> Result<()> {
    let mut seconds = 60u64;
    let mut targets: Vec<&str> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = it
                    .next()
                    .context("--seconds needs a value")?
                    .parse()
                    .context("--seconds must be a whole number")?
            }
            "--target" => {
                let t = it.next().context("--target needs a value")?;
                let known = FUZZ_TARGETS
                    .iter()
                    .find(|k| **k == t.as_str())
                    .with_context(|| {
                        format!("unknown fuzz target `{t}` (known: {FUZZ_TARGETS:?})")
                    })?;
                targets.push(known);
            }
            other => bail!("unknown fuzz argument `{other}` (--seconds N, --target NAME)"),
        }
    }
    if targets.is_empty() {
        targets = FUZZ_TARGETS.to_vec();
    }
    let toolchains = Command::new("rustup")
        .args(["toolchain", "list"])
        .output()
        .context("rustup is needed to find a nightly toolchain")?;
    if !String::from_utf8_lossy(&toolchains.stdout).contains("nightly") {
        bail!("cargo fuzz needs a nightly toolchain and none is installed (`rustup toolchain install nightly`)");
    }
    ensure_cargo_tool("fuzz", "cargo-fuzz")?;
    for target in targets {
        let work = root().join("target/fuzz-corpus").join(target);
        std::fs::create_dir_all(&work)?;
        let seeds = root().join("fuzz/corpus").join(target);
        run_cmd(
            Command::new("cargo")
                .current_dir(root().join("fuzz"))
                .args(["+nightly", "fuzz", "run", target])
                .arg(&work)
                .arg(&seeds)
                .arg("--")
                .arg(format!("-max_total_time={seconds}"))
                .arg("-rss_limit_mb=2048"),
        )?;
    }
    Ok(())
}

fn coverage() -> Result<()> {
    ensure_cargo_tool("tarpaulin", "cargo-tarpaulin")?;
    for krate in ["realizar-format-gguf", "realizar-format-safetensors"] {
        let dir = format!("crates/{krate}/src/");
        // The LLVM engine (rustc's -C instrument-coverage; tarpaulin reads the profiles
        // itself, so llvm-tools are not needed). Instrumented inference kernels run ~90x
        // slower, which is why the real-model tests are not part of this run (docs/QUALITY.md).
        run_cmd(cargo().args([
            "tarpaulin",
            "--engine",
            "llvm",
            "--packages",
            krate,
            "--include-files",
            &format!("{dir}*"),
            "--target-dir",
            "target/tarpaulin-llvm",
            "--skip-clean",
            "--out",
            "Stdout",
        ]))?;
    }
    Ok(())
}
