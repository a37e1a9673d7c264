//! `realizar bench`: prompt-processing and generation speed measured the way llama.cpp's
//! `llama-bench -p P -n N -t T -r R` measures it; a latency report (`--latency`); the machine's
//! ceilings (`--ceilings`); and the synthetic 1B-shaped model (`--write-synthetic-1b`).

use std::path::PathBuf;

use realizar_runtime::bench::{
    self, BatchedConfig, BenchError, Ceilings, Latency, Stats, SyntheticSpec, ThroughputConfig,
    WeightCost,
};
use realizar_runtime::models::resolve_model;
use realizar_runtime::threads::resolve_threads;

/// Repetitions: 1 to 1000.
fn parse_reps(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        Ok(n) => Err(format!("must be between 1 and 1000, got {n}")),
        Err(_) => Err(format!("`{s}` is not a whole number")),
    }
}
use realizar_runtime::{DecoderModel, LoadOptions, Model, RuntimeError};
use serde_json::json;

use crate::{print_out, CliError, CliResult};

/// Arguments of `realizar bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// A .gguf file or a model name (`smollm2-135m`, `gemma3-270m`) in the models folder.
    #[arg(
        long,
        short = 'm',
        required_unless_present_any = ["ceilings", "write_synthetic_1b"]
    )]
    pub model: Option<String>,
    /// Prompt tokens, evaluated in one batch from an empty cache (0: skip the test).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 128)]
    pub prompt: usize,
    /// Generated tokens, one at a time from an empty cache (0: skip the test).
    #[arg(short = 'n', long = "n-gen", default_value_t = 64)]
    pub gen: usize,
    /// Worker threads (default: physical cores).
    #[arg(short = 't', long, value_parser = realizar_runtime::threads::parse_threads)]
    pub threads: Option<usize>,
    /// Repetitions after the warm-up run.
    #[arg(short = 'r', long, default_value_t = 5, value_parser = parse_reps)]
    pub reps: usize,
    /// Seed of the random prompt tokens.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Latency report instead: time to first token of a P-token prompt, then N decode steps
    /// timed one by one (p50/p95/p99), and resident memory beyond the weights.
    #[arg(long, conflicts_with_all = ["ceilings", "write_synthetic_1b"])]
    pub latency: bool,
    /// Batched test instead, as `llama-batched-bench -npp P -ntg N -npl B,...`: for each
    /// count B, B sequences of P random prompt tokens evaluated in one pass, then N steps of one
    /// token of every sequence (the server's decode step); speeds count all sequences' tokens.
    #[arg(
        long,
        value_name = "B,...",
        value_delimiter = ',',
        conflicts_with_all = ["latency", "ceilings", "write_synthetic_1b"],
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub parallel: Vec<u16>,
    /// With --parallel: what constraining costs instead. For each count B, B sequences
    /// generate N tokens through the batcher (greedy), all free, then with some of them
    /// constrained to the JSON schema in FILE (`--constrained`), alternating; also the mask
    /// time per token (p50/p99) and the schema's compile time. The schema should force at
    /// least N tokens (an array with a large `minItems`).
    #[arg(long, value_name = "FILE", requires = "parallel")]
    pub json_schema: Option<PathBuf>,
    /// With --json-schema: how many of the B sequences are constrained (default: half, at
    /// least one).
    #[arg(long, requires = "json_schema")]
    pub constrained: Option<usize>,
    /// Memory read bandwidth in GB/s to compare decode speed with (e.g. from `--ceilings`).
    #[arg(long)]
    pub bandwidth_gbs: Option<f64>,
    /// Measure this machine's ceilings with T threads instead: read bandwidth, int8 and f32
    /// kernel peaks.
    #[arg(long, conflicts_with = "write_synthetic_1b")]
    pub ceilings: bool,
    /// Buffer size of the bandwidth measurement, MiB.
    #[arg(long, default_value_t = 1024)]
    pub ceiling_mib: usize,
    /// Write a synthetic 1.1B-parameter llama GGUF (random Q4_0 weights) to this path and exit.
    #[arg(long, value_name = "PATH")]
    pub write_synthetic_1b: Option<PathBuf>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn bench_err(e: BenchError) -> CliError {
    match e {
        BenchError::Io { .. } | BenchError::Runtime(RuntimeError::Io { .. }) => CliError::io(e),
        other => CliError::invalid(other),
    }
}

/// Runs `realizar bench`.
pub fn run(args: Args) -> CliResult {
    if let Some(path) = &args.write_synthetic_1b {
        let spec = SyntheticSpec::llama_1b();
        spec.write(path).map_err(bench_err)?;
        return print_out(&format!(
            "wrote {} ({} parameters)\n",
            path.display(),
            spec.parameters()
        ));
    }
    let threads = resolve_threads(args.threads);
    if args.ceilings {
        return ceilings(&args, threads);
    }
    if args.reps == 0 {
        return Err(CliError::invalid("--reps must be positive"));
    }
    let name = args
        .model
        .as_deref()
        .ok_or_else(|| CliError::invalid("give --model"))?;
    let path = resolve_model(name);
    if !path.is_file() && !path.is_dir() {
        return Err(CliError::io(format!(
            "{}: model file (or directory) not found",
            path.display()
        )));
    }
    let opened = Model::open(
        &path,
        &LoadOptions {
            threads: Some(threads),
            ..LoadOptions::default()
        },
    )
    .map_err(|e| bench_err(BenchError::Runtime(e)))?;
    let model = opened
        .require_decoder()
        .map_err(|e| bench_err(BenchError::Runtime(e)))?;
    let after_load = bench::memory();
    let cost = model
        .weight_cost()
        .map_err(|e| bench_err(BenchError::Runtime(e)))?;
    let file_bytes = model.file_size();
    let head = json!({
        "model": path.display().to_string(),
        "threads": threads,
        "p": args.prompt,
        "n": args.gen,
        "file_bytes": file_bytes,
        "weight_bytes_per_token": cost.bytes_per_token,
        "flops_per_token": cost.flops_per_token(),
    });
    if args.latency {
        let l = bench::latency(model, args.prompt, args.gen, args.seed, after_load)
            .map_err(bench_err)?;
        return latency_report(&args, head, &l, file_bytes, &cost);
    }
    if let Some(schema) = &args.json_schema {
        return constrained_report(&args, head, &opened, schema);
    }
    if !args.parallel.is_empty() {
        return batched_report(&args, head, model, threads);
    }
    let cfg = ThroughputConfig {
        prompt: args.prompt,
        gen: args.gen,
        reps: args.reps,
        seed: args.seed,
    };
    let r = bench::throughput(model, &cfg).map_err(bench_err)?;
    let (pp, tg) = (Stats::of(&r.prefill), Stats::of(&r.decode));
    let ceiling = args
        .bandwidth_gbs
        .map(|gbs| gbs * 1e9 / cost.bytes_per_token.max(1) as f64);
    if args.json {
        let mut v = head;
        v["reps"] = json!(args.reps);
        v["prefill_tok_s"] = json!(pp.mean);
        v["prefill_sd"] = json!(pp.sd);
        v["decode_tok_s"] = json!(tg.mean);
        v["decode_sd"] = json!(tg.sd);
        v["prefill_samples"] = json!(r.prefill);
        v["decode_samples"] = json!(r.decode);
        if let Some(c) = ceiling {
            v["decode_ceiling_tok_s"] = json!(c);
        }
        return print_out(&format!("{v}\n"));
    }
    let mut out = format!(
        "model: {}\nweights read per token: {:.1} MB, matmul flops per token: {:.2} G\n\n",
        path.display(),
        cost.bytes_per_token as f64 / 1e6,
        cost.flops_per_token() as f64 / 1e9
    );
    out.push_str(&format!(
        "| {:<8} | {:>7} | {:>4} | {:>20} |\n|{:-<10}|{:->9}|{:->6}|{:->22}|\n",
        "test", "threads", "reps", "t/s", "", "", "", ""
    ));
    for (test, s, on) in [
        (format!("pp{}", args.prompt), pp, args.prompt > 0),
        (format!("tg{}", args.gen), tg, args.gen > 0),
    ] {
        if on {
            out.push_str(&format!(
                "| {:<8} | {:>7} | {:>4} | {:>20} |\n",
                test,
                threads,
                args.reps,
                format!("{:.2} ± {:.2}", s.mean, s.sd)
            ));
        }
    }
    if let Some(c) = ceiling.filter(|_| args.gen > 0) {
        out.push_str(&format!(
            "\ndecode ceiling at {:.1} GB/s: {:.1} tok/s; measured {:.0}% of it\n",
            args.bandwidth_gbs.unwrap_or(0.0),
            c,
            100.0 * tg.mean / c
        ));
    }
    print_out(&out)
}

/// `realizar bench --parallel B,...`: the batched test for each sequence count.
fn batched_report(
    args: &Args,
    head: serde_json::Value,
    model: &DecoderModel,
    threads: usize,
) -> CliResult {
    let mut rows = Vec::new();
    for &b in &args.parallel {
        let cfg = BatchedConfig {
            prompt: args.prompt,
            gen: args.gen,
            parallel: usize::from(b),
            reps: args.reps,
            seed: args.seed,
        };
        let r = bench::batched(model, &cfg).map_err(bench_err)?;
        rows.push((b, r));
    }
    let one = rows
        .iter()
        .find(|(b, _)| *b == 1)
        .map(|(_, r)| Stats::of(&r.decode).mean);
    if args.json {
        let mut v = head;
        v["reps"] = json!(args.reps);
        v["batched"] = rows
            .iter()
            .map(|(b, r)| {
                json!({
                    "parallel": b,
                    "prefill_tok_s": Stats::of(&r.prefill).mean,
                    "decode_tok_s": Stats::of(&r.decode).mean,
                    "prefill_samples": r.prefill,
                    "decode_samples": r.decode,
                })
            })
            .collect();
        return print_out(&format!("{v}\n"));
    }
    let mut out = format!(
        "model: {}\nbatched: {} prompt tokens and {} steps per sequence, {threads} threads, {} reps\n\n",
        head["model"].as_str().unwrap_or_default(),
        args.prompt,
        args.gen,
        args.reps
    );
    out.push_str(&format!(
        "| {:>4} | {:>20} | {:>20} | {:>11} |\n|{:->6}|{:->22}|{:->22}|{:->13}|\n",
        "B", "prompt t/s", "generation t/s", "gen vs B=1", "", "", "", ""
    ));
    for (b, r) in &rows {
        let (pp, tg) = (Stats::of(&r.prefill), Stats::of(&r.decode));
        let vs = one
            .filter(|&o| o > 0.0 && args.gen > 0)
            .map_or("-".to_string(), |o| format!("{:.2}x", tg.mean / o));
        out.push_str(&format!(
            "| {b:>4} | {:>20} | {:>20} | {vs:>11} |\n",
            format!("{:.2} ± {:.2}", pp.mean, pp.sd),
            format!("{:.2} ± {:.2}", tg.mean, tg.sd),
        ));
    }
    print_out(&out)
}

/// `realizar bench --parallel B,... --json-schema FILE`: free against partly constrained
/// batches.
fn constrained_report(
    args: &Args,
    head: serde_json::Value,
    model: &Model,
    schema: &std::path::Path,
) -> CliResult {
    let text = std::fs::read_to_string(schema)
        .map_err(|e| CliError::invalid(format!("--json-schema {}: {e}", schema.display())))?;
    let schema_v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        CliError::invalid(format!(
            "--json-schema {}: not valid JSON: {e}",
            schema.display()
        ))
    })?;
    let mut rows = Vec::new();
    for &b in &args.parallel {
        let b = usize::from(b);
        let k = args.constrained.unwrap_or((b / 2).max(1));
        let cfg = bench::ConstrainedConfig {
            prompt: args.prompt,
            gen: args.gen,
            parallel: b,
            constrained: k,
            grammar: realizar_runtime::constrain::Grammar::JsonSchema(schema_v.clone()),
            reps: args.reps,
            seed: args.seed,
        };
        rows.push((b, k, bench::constrained(model, &cfg).map_err(bench_err)?));
    }
    let q = |v: &[f64], p: f64| bench::percentile(v, p);
    if args.json {
        let mut v = head;
        v["constrained"] = rows
            .iter()
            .map(|(b, k, r)| {
                json!({
                    "parallel": b, "constrained": k,
                    "free_tok_s": Stats::of(&r.free).mean, "mixed_tok_s": Stats::of(&r.mixed).mean,
                    "free_samples": r.free, "mixed_samples": r.mixed,
                    "mask_us_p50": q(&r.mask_us, 0.5), "mask_us_p99": q(&r.mask_us, 0.99),
                    "trie_ms": r.trie_ms, "compile_ms": r.compile_ms,
                })
            })
            .collect();
        return print_out(&format!("{v}\n"));
    }
    let mut out = format!(
        "model: {}\nconstrained: {} prompt tokens and {} generated per sequence, {} reps, schema {}\n\n",
        head["model"].as_str().unwrap_or_default(),
        args.prompt,
        args.gen,
        args.reps,
        schema.display()
    );
    out.push_str(&format!(
        "| {:>3} | {:>11} | {:>16} | {:>16} | {:>5} | {:>13} | {:>13} | {:>10} | {:>10} |\n|{:->5}|{:->13}|{:->18}|{:->18}|{:->7}|{:->15}|{:->15}|{:->12}|{:->12}|\n",
        "B", "constrained", "free t/s", "mixed t/s", "ratio", "mask p50 us", "mask p99 us",
        "compile ms", "trie ms", "", "", "", "", "", "", "", "", ""
    ));
    for (b, k, r) in &rows {
        let (f, m) = (Stats::of(&r.free), Stats::of(&r.mixed));
        out.push_str(&format!(
            "| {b:>3} | {k:>11} | {:>16} | {:>16} | {:>5.2} | {:>13.0} | {:>13.0} | {:>10.1} | {:>10.0} |\n",
            format!("{:.1} ± {:.1}", f.mean, f.sd),
            format!("{:.1} ± {:.1}", m.mean, m.sd),
            m.mean / f.mean.max(f64::MIN_POSITIVE),
            q(&r.mask_us, 0.5),
            q(&r.mask_us, 0.99),
            r.compile_ms,
            r.trie_ms,
        ));
    }
    print_out(&out)
}

fn latency_report(
    args: &Args,
    head: serde_json::Value,
    l: &Latency,
    file_bytes: u64,
    cost: &WeightCost,
) -> CliResult {
    let ms = |s: f64| s * 1000.0;
    let (p50, p95, p99) = (
        ms(l.step_quantile(0.50)),
        ms(l.step_quantile(0.95)),
        ms(l.step_quantile(0.99)),
    );
    let mean = ms(Stats::of(&l.steps_s).mean);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let beyond = |m: Option<bench::Memory>| m.map(|m| m.rss.saturating_sub(file_bytes));
    let floor_ms = args
        .bandwidth_gbs
        .map(|gbs| cost.bytes_per_token as f64 / (gbs * 1e9) * 1000.0);
    if args.json {
        let mut v = head;
        v["ttft_ms"] = json!(ms(l.ttft_s));
        v["decode_ms_p50"] = json!(p50);
        v["decode_ms_p95"] = json!(p95);
        v["decode_ms_p99"] = json!(p99);
        v["decode_ms_mean"] = json!(mean);
        v["steps"] = json!(l.steps_s.len());
        v["rss_after_load"] = json!(l.after_load.map(|m| m.rss));
        v["rss_after_gen"] = json!(l.after_gen.map(|m| m.rss));
        v["anon_after_load"] = json!(l.after_load.map(|m| m.anon));
        v["anon_after_gen"] = json!(l.after_gen.map(|m| m.anon));
        v["rss_beyond_weights_after_load"] = json!(beyond(l.after_load));
        v["rss_beyond_weights_after_gen"] = json!(beyond(l.after_gen));
        if let Some(f) = floor_ms {
            v["decode_ms_floor"] = json!(f);
        }
        return print_out(&format!("{v}\n"));
    }
    let mut out = format!(
        "model: {} ({:.1} MB file, {:.1} MB of weights read per token)\n\
         time to first token ({}-token prompt): {:.1} ms\n\
         decode latency over {} tokens: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms (mean {:.1} ms)\n",
        args.model.as_deref().unwrap_or(""),
        file_bytes as f64 / 1e6,
        cost.bytes_per_token as f64 / 1e6,
        l.prompt,
        ms(l.ttft_s),
        l.steps_s.len(),
        p50,
        p95,
        p99,
        mean
    );
    if let Some(f) = floor_ms {
        out.push_str(&format!(
            "bandwidth floor at {:.1} GB/s: {:.1} ms per token\n",
            args.bandwidth_gbs.unwrap_or(0.0),
            f
        ));
    }
    for (when, m) in [
        ("after load", l.after_load),
        ("after generation", l.after_gen),
    ] {
        if let Some(m) = m {
            out.push_str(&format!(
                "memory {when}: RSS {:.1} MiB (RSS - file {:.1} MiB), anonymous {:.1} MiB\n",
                mib(m.rss),
                mib(m.rss.saturating_sub(file_bytes)),
                mib(m.anon)
            ));
        }
    }
    print_out(&out)
}

fn ceilings(args: &Args, threads: usize) -> CliResult {
    if !(1..=65536).contains(&args.ceiling_mib) {
        return Err(CliError::invalid(
            "--ceiling-mib must be between 1 and 65536",
        ));
    }
    if threads > 1024 {
        return Err(CliError::invalid("--threads must be at most 1024"));
    }
    let bytes = args
        .ceiling_mib
        .checked_mul(1 << 20)
        .ok_or_else(|| CliError::invalid("--ceiling-mib does not fit in this address space"))?;
    let c: Ceilings = bench::ceilings(threads, bytes, 5).map_err(bench_err)?;
    if args.json {
        let v = json!({
            "threads": c.threads,
            "read_gb_s": c.read_bytes_per_s / 1e9,
            "int8_gops": c.int8_ops_per_s / 1e9,
            "f32_gflops": c.f32_flops_per_s / 1e9,
        });
        return print_out(&format!("{v}\n"));
    }
    print_out(&format!(
        "threads: {}\nmemory read bandwidth: {:.1} GB/s ({} MiB buffer, best of 5)\n\
         int8 (Q8_0 x Q8_0 matmul, cache-resident): {:.1} Gop/s\n\
         f32 (F32 matmul, cache-resident): {:.1} Gflop/s\n",
        c.threads,
        c.read_bytes_per_s / 1e9,
        args.ceiling_mib,
        c.int8_ops_per_s / 1e9,
        c.f32_flops_per_s / 1e9
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: Args,
    }

    fn args(line: &str) -> Args {
        Wrap::try_parse_from(std::iter::once("bench").chain(line.split_whitespace()))
            .map(|w| w.args)
            .unwrap_or_else(|e| panic!("{line}: {e}"))
    }

    #[test]
    fn llama_bench_flags_and_defaults() {
        let a = args("-m x.gguf");
        assert_eq!((a.prompt, a.gen, a.reps, a.threads), (128, 64, 5, None));
        let a = args("-m x.gguf -p 512 -n 32 -t 2 -r 3 --json");
        assert_eq!((a.prompt, a.gen, a.reps, a.threads), (512, 32, 3, Some(2)));
        assert!(a.json);
        assert!(args("--ceilings").model.is_none());
        assert!(Wrap::try_parse_from(["bench"]).is_err());
        assert!(Wrap::try_parse_from(["bench", "--ceilings", "--latency", "-m", "x"]).is_err());
    }

    #[test]
    fn bad_input_maps_to_exit_codes() {
        // Counts out of range are refused by the parser (exit 2).
        for line in [
            "-m x.gguf -r 0",
            "-m x.gguf -r 1001",
            "--ceilings -t 5000",
            "-m x -t 0",
        ] {
            assert!(
                Wrap::try_parse_from(std::iter::once("bench").chain(line.split_whitespace()))
                    .is_err(),
                "{line}"
            );
        }
        assert!(matches!(
            run(args("-m /nonexistent/model.gguf")),
            Err(CliError::Io(_))
        ));
        assert!(matches!(
            run(args("--ceilings --ceiling-mib 0")),
            Err(CliError::Invalid(_))
        ));
        assert!(matches!(
            run(args("--ceilings -t 1024 --ceiling-mib 100000000")),
            Err(CliError::Invalid(_))
        ));
    }
}
