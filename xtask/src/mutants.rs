//! `cargo xtask mutants`: mutation testing (cargo-mutants) of the code whose tests must catch
//! any change: the format crates, the quantization scalar kernels, the tokenizers, sampling and
//! the request parsing. Each group runs its crate's fast tests only, can be sharded
//! (`--shard K/N`) and time-boxed (`--minutes M`) to fit a small machine, and the score of
//! what ran is printed per group (caught and timed-out mutants over all viable ones).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, ensure_cargo_tool, root, run_cmd};

/// One part of the code under mutation.
struct Group {
    name: &'static str,
    package: &'static str,
    /// Files mutated.
    files: &'static [&'static str],
    /// What `cargo test` runs for each mutant (the crate's own fast tests).
    test_args: &'static [&'static str],
}

const GROUPS: &[Group] = &[
    Group {
        name: "gguf",
        package: "realizar-format-gguf",
        files: &["crates/realizar-format-gguf/src/*.rs"],
        test_args: &[],
    },
    Group {
        name: "safetensors",
        package: "realizar-format-safetensors",
        files: &["crates/realizar-format-safetensors/src/*.rs"],
        test_args: &[],
    },
    Group {
        name: "quant-scalar",
        package: "realizar-quant",
        files: &[
            "crates/realizar-quant/src/dot.rs",
            "crates/realizar-quant/src/dequant.rs",
            "crates/realizar-quant/src/quant.rs",
            "crates/realizar-quant/src/blocks.rs",
            "crates/realizar-quant/src/vecops.rs",
        ],
        test_args: &[],
    },
    Group {
        name: "tokenize",
        package: "realizar-tokenize",
        files: &["crates/realizar-tokenize/src/*.rs"],
        test_args: &[],
    },
    Group {
        name: "sampling",
        package: "realizar-runtime",
        files: &["crates/realizar-runtime/src/sampling.rs"],
        test_args: &["--lib"],
    },
    Group {
        name: "request",
        package: "realizar-server",
        files: &["crates/realizar-server/src/api.rs"],
        test_args: &["--lib", "--test", "http_api", "--test", "hardening"],
    },
];

pub fn mutants(args: &[String]) -> Result<()> {
    let mut groups: Vec<&Group> = Vec::new();
    let mut shard: Option<String> = None;
    let mut minutes: Option<u64> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--group" => {
                let g = it.next().context("--group needs a name")?;
                let names: Vec<&str> = GROUPS.iter().map(|g| g.name).collect();
                groups.push(
                    GROUPS
                        .iter()
                        .find(|x| x.name == g.as_str())
                        .with_context(|| format!("unknown group `{g}` (known: {names:?})"))?,
                );
            }
            "--shard" => {
                let s = it.next().context("--shard needs K/N")?;
                let ok = s
                    .split_once('/')
                    .is_some_and(|(k, n)| k.parse::<u32>().is_ok() && n.parse::<u32>().is_ok());
                if !ok {
                    bail!("--shard must be K/N (e.g. 0/4), got `{s}`");
                }
                shard = Some(s.clone());
            }
            "--minutes" => {
                minutes = Some(
                    it.next()
                        .context("--minutes needs a value")?
                        .parse()
                        .context("--minutes must be a whole number")?,
                );
            }
            "--report" => {
                return report(&GROUPS.iter().collect::<Vec<_>>());
            }
            other => bail!(
                "unknown mutants argument `{other}` (--group NAME, --shard K/N, --minutes M, --report)"
            ),
        }
    }
    if groups.is_empty() {
        groups = GROUPS.iter().collect();
    }
    ensure_cargo_tool("mutants", "cargo-mutants")?;
    for g in &groups {
        let out = out_dir(g.name, shard.as_deref());
        // cargo-mutants creates `mutants.out` inside it, but not the folders above.
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let mut cmd = match minutes {
            // The time box: the run stops there and the score is of what ran.
            Some(m) => {
                let mut c = Command::new("timeout");
                c.args(["--kill-after=30", &format!("{}", m * 60)])
                    .arg(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                    .current_dir(root());
                c
            }
            None => cargo(),
        };
        cmd.env("PROPTEST_CASES", "64")
            .args([
                "mutants",
                "--package",
                g.package,
                "--no-shuffle",
                "--timeout",
                "300",
            ])
            .arg("--output")
            .arg(&out);
        for f in g.files {
            cmd.args(["--file", f]);
        }
        if let Some(s) = &shard {
            cmd.args(["--shard", s]);
        }
        if !g.test_args.is_empty() {
            cmd.arg("--").args(g.test_args);
        }
        // cargo-mutants exits non-zero when mutants survive or the box ends: the score says.
        if let Err(e) = run_cmd(&mut cmd) {
            eprintln!("{}: {e:#}", g.name);
        }
    }
    report(&groups)
}

fn out_dir(group: &str, shard: Option<&str>) -> std::path::PathBuf {
    let tag = shard.map_or(String::new(), |s| format!("-{}", s.replace('/', "of")));
    root().join("target/mutants").join(format!("{group}{tag}"))
}

/// Lines of a cargo-mutants list file (`caught.txt`, ...), 0 when absent.
fn count(dir: &Path, file: &str) -> usize {
    std::fs::read_to_string(dir.join("mutants.out").join(file))
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0)
}

/// The score of every run of `groups` found under `target/mutants` (shards added up).
fn report(groups: &[&Group]) -> Result<()> {
    println!("| group | caught | timeout | missed | unviable | score |");
    println!("|---|---:|---:|---:|---:|---:|");
    for g in groups {
        let (mut caught, mut timeout, mut missed, mut unviable) = (0, 0, 0, 0);
        let base = root().join("target/mutants");
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        let mut any = false;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == g.name || name.starts_with(&format!("{}-", g.name)) {
                let dir = e.path();
                caught += count(&dir, "caught.txt");
                timeout += count(&dir, "timeout.txt");
                missed += count(&dir, "missed.txt");
                unviable += count(&dir, "unviable.txt");
                any = true;
            }
        }
        if !any {
            continue;
        }
        let viable = caught + timeout + missed;
        let score = if viable == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", 100.0 * (caught + timeout) as f64 / viable as f64)
        };
        println!(
            "| {} | {caught} | {timeout} | {missed} | {unviable} | {score} |",
            g.name
        );
    }
    Ok(())
}
