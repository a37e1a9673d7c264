//! `cargo xtask bench`: our speed next to llama.cpp's on the same files, against the machine's
//! ceilings, and the synthetic 1B model's latency report.
//!
//! For each model and thread count it runs `realizar bench` and llama.cpp's `llama-bench`
//! (both `-p 128 -n 64 -r REPS`) in alternating rounds (ours, theirs, ours, theirs, …) so that
//! drift of a shared machine hits both, and pools each side's per-repetition samples. The
//! batched test does the same with `realizar bench --parallel` and `llama-batched-bench` (one
//! and eight sequences decoded together, as a server decodes its requests), at the largest
//! thread count.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::serve::build_release;
use crate::{models, root, run_cmd};

/// The decoder models benchmarked: (name, file under the models folder).
const MODELS: &[(&str, &str)] = &[
    (
        "smollm2-135m",
        "smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    ("gemma3-270m", "gemma3-270m/gemma-3-270m-Q4_K_M.gguf"),
];

const PROMPT: usize = 128;
const GEN: usize = 64;

/// The batched test: sequences decoded together, prompt tokens and generation steps of each
/// (the shape of `cargo xtask loadtest --max-tokens 256`'s streams).
const BATCH_SIZES: &[usize] = &[1, 8];
const BATCH_PROMPT: usize = 32;
const BATCH_GEN: usize = 256;

/// Options of `cargo xtask bench`.
#[derive(Clone, Debug, PartialEq)]
struct Options {
    reps: usize,
    rounds: usize,
    threads: Vec<usize>,
    synthetic: bool,
    /// `--model FILE` (repeatable): these files instead of the fetched models.
    models: Vec<PathBuf>,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        reps: 3,
        rounds: 2,
        threads: vec![1, 2],
        synthetic: true,
        models: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--reps" => o.reps = value()?.parse().context("--reps must be a whole number")?,
            "--rounds" => {
                o.rounds = value()?
                    .parse()
                    .context("--rounds must be a whole number")?
            }
            "--threads" => o.threads = parse_threads(value()?)?,
            "--no-1b" => o.synthetic = false,
            "--model" => o.models.push(PathBuf::from(value()?)),
            other => bail!("unknown bench argument `{other}`"),
        }
    }
    if o.reps == 0 || o.rounds == 0 {
        bail!("--reps and --rounds must be positive");
    }
    Ok(o)
}

/// `1,2` → `[1, 2]`.
fn parse_threads(s: &str) -> Result<Vec<usize>> {
    let v = s
        .split(',')
        .map(|t| match t.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("--threads takes positive numbers separated by commas, not `{s}`"),
        })
        .collect::<Result<Vec<_>>>()?;
    if v.is_empty() {
        bail!("--threads needs at least one thread count");
    }
    Ok(v)
}

/// Mean and sample standard deviation (as llama-bench computes them).
fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Per-repetition tokens/s of one engine on one configuration.
#[derive(Clone, Debug, Default, PartialEq)]
struct Samples {
    prefill: Vec<f64>,
    decode: Vec<f64>,
}

fn floats(v: Option<&Value>) -> Vec<f64> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// The samples of `llama-bench -o json` output: the pp test (n_prompt > 0, n_gen = 0) and the
/// tg test (n_prompt = 0, n_gen > 0); `samples_ts`, or `avg_ts` where a build lacks it.
fn parse_llama_bench(text: &str) -> Result<Samples> {
    let v: Value = serde_json::from_str(text).context("llama-bench output is not JSON")?;
    let tests = v.as_array().context("llama-bench JSON is not an array")?;
    let mut s = Samples::default();
    for t in tests {
        let n_prompt = t.get("n_prompt").and_then(Value::as_u64).unwrap_or(0);
        let n_gen = t.get("n_gen").and_then(Value::as_u64).unwrap_or(0);
        let mut ts = floats(t.get("samples_ts"));
        if ts.is_empty() {
            ts.extend(t.get("avg_ts").and_then(Value::as_f64));
        }
        match (n_prompt > 0, n_gen > 0) {
            (true, false) => s.prefill.extend(ts),
            (false, true) => s.decode.extend(ts),
            _ => {}
        }
    }
    if s.prefill.is_empty() && s.decode.is_empty() {
        bail!("llama-bench JSON has no pp or tg test");
    }
    Ok(s)
}

/// `realizar bench -m PATH EXTRA -p P -n N -t T -r R --json` for `(P, N, T, R)`: its output.
fn run_ours(
    bin: &std::path::Path,
    path: &std::path::Path,
    extra: &[&str],
    (p, n, t, r): (usize, usize, usize, usize),
) -> Result<String> {
    output(
        Command::new(bin)
            .arg("bench")
            .arg("-m")
            .arg(path)
            .args(extra)
            .args(["-p", &p.to_string(), "-n", &n.to_string()])
            .args(["-t", &t.to_string(), "-r", &r.to_string(), "--json"]),
    )
}

/// The JSON object `realizar bench --json` prints.
fn ours_json(text: &str) -> Result<Value> {
    serde_json::from_str(text.trim()).context("realizar bench output is not JSON")
}

/// Our samples and the weight bytes per token from `realizar bench --json`.
fn parse_ours(text: &str) -> Result<(Samples, u64)> {
    let v = ours_json(text)?;
    let bytes = v
        .get("weight_bytes_per_token")
        .and_then(Value::as_u64)
        .context("realizar bench JSON lacks weight_bytes_per_token")?;
    Ok((
        Samples {
            prefill: floats(v.get("prefill_samples")),
            decode: floats(v.get("decode_samples")),
        },
        bytes,
    ))
}

/// `llama-bench` from `LLAMACPP_BIN` (the binary or its folder), else the peer build of
/// `/work/shared/tools/llamacpp-peer` in ~/.cache.
fn find_llama_bench() -> Option<PathBuf> {
    find_peer_tool("llama-bench")
}

/// `llama-batched-bench` next to `llama-bench`, built there first if the peer build lacks it
/// (`/work/shared/tools/llamacpp-peer` builds only the tools the other tests need; the library
/// is built, so this target takes seconds).
fn find_llama_batched_bench(llama_bench: &std::path::Path) -> Option<PathBuf> {
    let dir = llama_bench.parent()?;
    let bin = dir.join("llama-batched-bench");
    if !bin.is_file() {
        let build = dir.parent()?;
        if build.join("CMakeCache.txt").is_file() {
            let built = run_cmd(
                Command::new("cmake")
                    .arg("--build")
                    .arg(build)
                    .args(["--target", "llama-batched-bench"]),
            );
            if let Err(e) = built {
                eprintln!("could not build llama-batched-bench: {e:#}");
            }
        }
    }
    bin.is_file().then_some(bin)
}

/// A llama.cpp tool from `LLAMACPP_BIN` (the binary or its folder), else the peer build.
fn find_peer_tool(name: &str) -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("LLAMACPP_BIN").map(PathBuf::from),
        std::env::var_os("HOME")
            .map(|h| PathBuf::from(h).join(".cache/realizar-peers/llamacpp/build/bin")),
    ];
    candidates.into_iter().flatten().find_map(|p| {
        let bin = if p.is_dir() {
            p.join(name)
        } else {
            p.with_file_name(name)
        };
        bin.is_file().then_some(bin)
    })
}

/// Runs `cmd` and returns its stdout, failing with its stderr.
fn output(cmd: &mut Command) -> Result<String> {
    eprintln!("$ {cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8(out.stdout).context("output is not UTF-8")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn pm(v: &[f64]) -> String {
    let (m, sd) = mean_sd(v);
    format!("{m:.1} ± {sd:.1}")
}

fn ratio(ours: &[f64], theirs: &[f64]) -> String {
    let (a, b) = (mean_sd(ours).0, mean_sd(theirs).0);
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "-".into()
    }
}

fn percent_of(v: &[f64], ceiling: f64) -> String {
    if ceiling > 0.0 && !v.is_empty() {
        format!("{:.0}%", 100.0 * mean_sd(v).0 / ceiling)
    } else {
        "-".into()
    }
}

/// `cargo xtask bench [--reps N] [--rounds K] [--threads 1,2] [--no-1b]`.
pub fn bench(args: &[String]) -> Result<()> {
    let o = parse_options(args)?;
    let models_dir = models::models_dir();
    models::fetch_all(&models_dir)?;
    let bin = build_release()?;
    let peer = find_llama_bench();
    let load_start = loadavg();
    let mut report = String::new();
    report.push_str(&format!(
        "realizar bench vs llama-bench -p {PROMPT} -n {GEN} -r {} ({} alternating rounds)\n\
         load average at start: {load_start}\n\n",
        o.reps, o.rounds
    ));

    // Ceilings.
    let mut bandwidth = Vec::new();
    report.push_str(
        "## Ceilings\n\n| threads | read GB/s | int8 Gop/s | f32 Gflop/s |\n|---|---|---|---|\n",
    );
    for &t in &o.threads {
        let text = output(Command::new(&bin).args([
            "bench",
            "--ceilings",
            "--json",
            "-t",
            &t.to_string(),
        ]))?;
        let v: Value = serde_json::from_str(text.trim()).context("ceilings JSON")?;
        let f = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        bandwidth.push((t, f("read_gb_s")));
        report.push_str(&format!(
            "| {t} | {:.1} | {:.1} | {:.1} |\n",
            f("read_gb_s"),
            f("int8_gops"),
            f("f32_gflops")
        ));
    }
    let bw = |t: usize| {
        bandwidth
            .iter()
            .find(|(n, _)| *n == t)
            .map_or(0.0, |(_, b)| *b)
    };

    // Throughput, alternating.
    match &peer {
        Some(p) => report.push_str(&format!("\nllama.cpp: {}\n", p.display())),
        None => report.push_str(
            "\nno llama.cpp build found (set LLAMACPP_BIN or run /work/shared/tools/llamacpp-peer): our numbers only\n",
        ),
    }
    report.push_str(
        "\n## Throughput (tok/s, mean ± sd over all repetitions)\n\n\
         | model | threads | ours pp128 | llama.cpp pp128 | pp ratio | ours tg64 | llama.cpp tg64 | tg ratio | tg ceiling | ours % of ceiling | llama.cpp % of ceiling | load avg |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    let list: Vec<(String, PathBuf)> = if o.models.is_empty() {
        MODELS
            .iter()
            .map(|(name, file)| (name.to_string(), models_dir.join(file)))
            .collect()
    } else {
        o.models
            .iter()
            .map(|p| {
                let name = p.file_stem().map_or_else(
                    || p.display().to_string(),
                    |s| s.to_string_lossy().into_owned(),
                );
                (name, p.clone())
            })
            .collect()
    };
    for (name, path) in &list {
        if !path.is_file() {
            bail!("--model {}: no such file", path.display());
        }
        for &t in &o.threads {
            let (mut ours, mut theirs) = (Samples::default(), Samples::default());
            let mut bytes = 0u64;
            for _ in 0..o.rounds {
                let text = run_ours(&bin, path, &[], (PROMPT, GEN, t, o.reps))?;
                let (s, b) = parse_ours(&text)?;
                bytes = b;
                ours.prefill.extend(s.prefill);
                ours.decode.extend(s.decode);
                if let Some(p) = &peer {
                    let text = output(Command::new(p).arg("-m").arg(path).args([
                        "-p",
                        &PROMPT.to_string(),
                        "-n",
                        &GEN.to_string(),
                        "-t",
                        &t.to_string(),
                        "-r",
                        &o.reps.to_string(),
                        "-o",
                        "json",
                    ]))?;
                    let s = parse_llama_bench(&text)?;
                    theirs.prefill.extend(s.prefill);
                    theirs.decode.extend(s.decode);
                }
            }
            let ceiling = bw(t) * 1e9 / bytes.max(1) as f64;
            let or_dash = |v: &[f64]| {
                if v.is_empty() {
                    "-".to_string()
                } else {
                    pm(v)
                }
            };
            report.push_str(&format!(
                "| {name} | {t} | {} | {} | {} | {} | {} | {} | {ceiling:.0} | {} | {} | {} |\n",
                pm(&ours.prefill),
                or_dash(&theirs.prefill),
                ratio(&ours.prefill, &theirs.prefill),
                pm(&ours.decode),
                or_dash(&theirs.decode),
                ratio(&ours.decode, &theirs.decode),
                percent_of(&ours.decode, ceiling),
                percent_of(&theirs.decode, ceiling),
                loadavg(),
            ));
        }
    }
    report.push_str(
        "\nratios are ours / llama.cpp; tg ceiling = read bandwidth at that thread count / weight bytes read per token; \
         load avg = /proc/loadavg (1, 5, 15 min) when the row finished\n",
    );
    batched_section(&mut report, &o, &bin, peer.as_deref(), &models_dir)?;

    if o.synthetic {
        let path = root().join("target/bench/synthetic-1b.gguf");
        if !path.is_file() {
            run_cmd(
                Command::new(&bin)
                    .arg("bench")
                    .arg("--write-synthetic-1b")
                    .arg(&path),
            )?;
        }
        report.push_str("\n## Synthetic 1.1B llama (Q4_0), 128-token prompt, 128 decode steps\n\n");
        report.push_str("| threads | TTFT ms | p50 ms | p95 ms | p99 ms | bandwidth floor ms | anon MiB after gen | RSS - file MiB after gen |\n|---|---|---|---|---|---|---|---|\n");
        for &t in &o.threads {
            let text = output(Command::new(&bin).arg("bench").arg("-m").arg(&path).args([
                "--latency",
                "-p",
                "128",
                "-n",
                "128",
                "-t",
                &t.to_string(),
                "--bandwidth-gbs",
                &format!("{}", bw(t)),
                "--json",
            ]))?;
            report.push_str(&latency_row(t, &text)?);
        }
        report.push_str("\ntargets for 1B: p50 < 100 ms, p95 < 200 ms, p99 < 500 ms, < 512 MB beyond the weights\n");
    }
    report.push_str(&format!("\nload average at end: {}\n", loadavg()));
    let out = root().join("target/bench/report.md");
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, &report).with_context(|| format!("writing {}", out.display()))?;
    print!("{report}");
    eprintln!("(also written to {})", out.display());
    Ok(())
}

/// Per sequence count, the prompt and generation speeds of every round.
type BatchedSamples = Vec<(usize, Samples)>;

/// Adds `samples` of sequence count `b` to `all`.
fn add_batched(all: &mut BatchedSamples, b: usize, samples: Samples) {
    match all.iter_mut().find(|(n, _)| *n == b) {
        Some((_, s)) => {
            s.prefill.extend(samples.prefill);
            s.decode.extend(samples.decode);
        }
        None => all.push((b, samples)),
    }
}

/// `realizar bench --parallel ... --json`: per sequence count, its samples.
fn parse_ours_batched(text: &str) -> Result<BatchedSamples> {
    let v = ours_json(text)?;
    let rows = v
        .get("batched")
        .and_then(Value::as_array)
        .context("realizar bench JSON lacks `batched`")?;
    rows.iter()
        .map(|r| {
            let b = r
                .get("parallel")
                .and_then(Value::as_u64)
                .context("batched row lacks `parallel`")?;
            Ok((
                b as usize,
                Samples {
                    prefill: floats(r.get("prefill_samples")),
                    decode: floats(r.get("decode_samples")),
                },
            ))
        })
        .collect()
}

/// `llama-batched-bench --output-format jsonl`: one line per test, `pl` sequences with
/// `speed_pp` and `speed_tg`.
fn parse_llama_batched(text: &str) -> Result<BatchedSamples> {
    let mut all = BatchedSamples::new();
    for line in text.lines().filter(|l| l.trim_start().starts_with('{')) {
        let v: Value =
            serde_json::from_str(line).context("llama-batched-bench line is not JSON")?;
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        let (Some(pl), Some(pp), Some(tg)) = (f("pl"), f("speed_pp"), f("speed_tg")) else {
            bail!("llama-batched-bench line lacks pl, speed_pp or speed_tg: {line}");
        };
        add_batched(
            &mut all,
            pl as usize,
            Samples {
                prefill: vec![pp],
                decode: vec![tg],
            },
        );
    }
    if all.is_empty() {
        bail!("llama-batched-bench printed no result");
    }
    Ok(all)
}

/// The batched test of the first model at the largest thread count, alternating with
/// `llama-batched-bench` (flash attention off: the attention our outputs match).
fn batched_section(
    report: &mut String,
    o: &Options,
    bin: &std::path::Path,
    peer: Option<&std::path::Path>,
    models_dir: &std::path::Path,
) -> Result<()> {
    let Some(&(name, file)) = MODELS.first() else {
        return Ok(());
    };
    let path = models_dir.join(file);
    let t = o.threads.iter().copied().max().unwrap_or(1);
    let peer = peer.and_then(find_llama_batched_bench);
    let sizes = BATCH_SIZES
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let (mut ours, mut theirs) = (BatchedSamples::new(), BatchedSamples::new());
    for _ in 0..o.rounds {
        let text = run_ours(
            bin,
            &path,
            &["--parallel", &sizes],
            (BATCH_PROMPT, BATCH_GEN, t, o.reps),
        )?;
        for (b, s) in parse_ours_batched(&text)? {
            add_batched(&mut ours, b, s);
        }
        if let Some(p) = &peer {
            let most = BATCH_SIZES.iter().copied().max().unwrap_or(1);
            for _ in 0..o.reps {
                let text = output(Command::new(p).arg("-m").arg(&path).args([
                    "-c",
                    &(most * (BATCH_PROMPT + BATCH_GEN)).to_string(),
                    "-npp",
                    &BATCH_PROMPT.to_string(),
                    "-ntg",
                    &BATCH_GEN.to_string(),
                    "-npl",
                    &sizes,
                    "-t",
                    &t.to_string(),
                    "-fa",
                    "off",
                    "--output-format",
                    "jsonl",
                ]))?;
                for (b, s) in parse_llama_batched(&text)? {
                    add_batched(&mut theirs, b, s);
                }
            }
        }
    }
    report.push_str(&format!(
        "\n## Batched decode: B sequences of {BATCH_PROMPT} prompt tokens, {BATCH_GEN} steps of one token each \
         (realizar bench --parallel vs llama-batched-bench -fa off), {t} threads, tok/s of all sequences\n\n"
    ));
    if peer.is_none() {
        report.push_str("no llama-batched-bench found: our numbers only\n\n");
    }
    report.push_str(
        "| model | B | ours prompt | llama.cpp prompt | ours generation | llama.cpp generation | gen ratio | ours vs B=1 | llama.cpp vs B=1 |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    let one = |all: &BatchedSamples| {
        all.iter()
            .find(|(b, _)| *b == 1)
            .map(|(_, s)| s.decode.clone())
            .unwrap_or_default()
    };
    let (one_ours, one_theirs) = (one(&ours), one(&theirs));
    for (b, s) in &ours {
        let th = theirs
            .iter()
            .find(|(n, _)| n == b)
            .map(|(_, s)| s.clone())
            .unwrap_or_default();
        let or_dash = |v: &[f64]| if v.is_empty() { "-".to_string() } else { pm(v) };
        report.push_str(&format!(
            "| {name} | {b} | {} | {} | {} | {} | {} | {} | {} |\n",
            pm(&s.prefill),
            or_dash(&th.prefill),
            pm(&s.decode),
            or_dash(&th.decode),
            ratio(&s.decode, &th.decode),
            ratio(&s.decode, &one_ours),
            ratio(&th.decode, &one_theirs),
        ));
    }
    report.push_str(
        "\ngen ratio = ours / llama.cpp at the same B; vs B=1 = generation speed at B / at one sequence, each engine\n",
    );
    Ok(())
}

/// One table row of a `realizar bench --latency --json` result.
fn latency_row(threads: usize, text: &str) -> Result<String> {
    let v: Value = serde_json::from_str(text.trim()).context("latency JSON")?;
    let f = |k: &str| v.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
    let mib = |k: &str| f(k) / (1024.0 * 1024.0);
    Ok(format!(
        "| {threads} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
        f("ttft_ms"),
        f("decode_ms_p50"),
        f("decode_ms_p95"),
        f("decode_ms_p99"),
        f("decode_ms_floor"),
        mib("anon_after_gen"),
        mib("rss_beyond_weights_after_gen"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_sd() {
        let (m, sd) = mean_sd(&[10.0, 12.0, 14.0]);
        assert!((m - 12.0).abs() < 1e-12 && (sd - 2.0).abs() < 1e-12);
        assert_eq!(mean_sd(&[4.0]), (4.0, 0.0));
        assert_eq!(mean_sd(&[]), (0.0, 0.0));
    }

    #[test]
    fn parses_llama_bench_json() {
        let text = r#"[
          {"n_prompt": 128, "n_gen": 0, "avg_ts": 20.0, "samples_ts": [ 19.0, 21.0 ]},
          {"n_prompt": 0, "n_gen": 64, "avg_ts": 12.5, "stddev_ts": 0.5}
        ]"#;
        let s = parse_llama_bench(text).unwrap();
        assert_eq!(s.prefill, vec![19.0, 21.0]);
        assert_eq!(s.decode, vec![12.5]);
        assert!(parse_llama_bench("[]").is_err());
        assert!(parse_llama_bench("{}").is_err());
        assert!(parse_llama_bench("not json").is_err());
    }

    #[test]
    fn parses_batched_json_of_both_engines() {
        let ours = r#"{"batched":[{"parallel":1,"prefill_samples":[100.0],"decode_samples":[30.0,32.0]},{"parallel":8,"prefill_samples":[200.0],"decode_samples":[90.0]}]}"#;
        let o = parse_ours_batched(ours).unwrap();
        assert_eq!(o.len(), 2);
        assert_eq!((o[0].0, o[0].1.decode.clone()), (1, vec![30.0, 32.0]));
        assert_eq!((o[1].0, o[1].1.prefill.clone()), (8, vec![200.0]));
        assert!(parse_ours_batched("{}").is_err());
        let theirs = "main: n_kv_max = 2304\n\
            {\"pp\": 32, \"tg\": 256, \"pl\": 1, \"speed_pp\": 387.4, \"speed_tg\": 147.0}\n\
            {\"pp\": 32, \"tg\": 256, \"pl\": 8, \"speed_pp\": 466.9, \"speed_tg\": 255.6}\n";
        let t = parse_llama_batched(theirs).unwrap();
        assert_eq!(t.iter().map(|(b, _)| *b).collect::<Vec<_>>(), vec![1, 8]);
        assert_eq!(t[1].1.decode, vec![255.6]);
        assert!(parse_llama_batched("no results").is_err());
        assert!(parse_llama_batched("{\"pl\": 1}").is_err());
    }

    #[test]
    fn parses_our_json() {
        let text = r#"{"prefill_samples":[1.0,2.0],"decode_samples":[3.0],"weight_bytes_per_token":96577380}"#;
        let (s, b) = parse_ours(text).unwrap();
        assert_eq!(
            (s.prefill, s.decode, b),
            (vec![1.0, 2.0], vec![3.0], 96_577_380)
        );
        assert!(parse_ours(r#"{"prefill_samples":[]}"#).is_err());
    }

    #[test]
    fn options() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = parse_options(&args("--reps 4 --threads 1,2,4 --no-1b")).unwrap();
        assert_eq!((o.reps, o.threads, o.synthetic), (4, vec![1, 2, 4], false));
        assert!(parse_options(&args("--threads 0")).is_err());
        assert!(parse_options(&args("--threads")).is_err());
        assert!(parse_options(&args("--reps 0")).is_err());
        assert!(parse_options(&args("--bogus")).is_err());
        let o = parse_options(&args("--model a.gguf --model b.gguf")).unwrap();
        assert_eq!(
            o.models,
            vec![PathBuf::from("a.gguf"), PathBuf::from("b.gguf")]
        );
        assert!(parse_options(&args("--model")).is_err());
    }

    #[test]
    fn latency_rows() {
        let row = latency_row(
            2,
            r#"{"ttft_ms":8414.6,"decode_ms_p50":124.0,"decode_ms_p95":155.9,"decode_ms_p99":164.0,"decode_ms_floor":19.5,"anon_after_gen":24851251,"rss_beyond_weights_after_gen":29884416}"#,
        )
        .unwrap();
        assert_eq!(
            row,
            "| 2 | 8415 | 124.0 | 155.9 | 164.0 | 19.5 | 23.7 | 28.5 |\n"
        );
    }
}
