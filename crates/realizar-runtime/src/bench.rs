//! Speed measurement: the `llama-bench`-style throughput loop, a latency report, the machine's
//! ceilings (memory bandwidth, int8 and f32 kernel peaks), the per-token cost of a model's
//! weights, and a writer of synthetic llama-shaped GGUF files (e.g. 1B parameters) to measure
//! models that are not at hand.
//!
//! The throughput loop follows llama.cpp's `tools/llama-bench/llama-bench.cpp`
//! (`test_prompt`, `test_gen`): prompt processing evaluates `p` random tokens (the first one BOS
//! when the vocabulary adds BOS) in one batch from an empty cache; generation evaluates `n`
//! single tokens from an empty cache, each with its logits. Each test runs once as a warm-up
//! (the generation warm-up is one token, as there), then `reps` times from an empty cache;
//! a repetition's speed is tokens / seconds, reported as mean and sample standard deviation
//! over the repetitions.
//!
//! The batched loop follows llama.cpp's `tools/batched-bench/batched-bench.cpp` (`-npp P
//! -ntg N -npl B`): `B` sequences of `p` random tokens are evaluated in one pass from empty
//! caches (prompt processing), then `n` steps each evaluate one random token of every sequence,
//! with logits, in one pass (generation, the server's decode step). Speeds count the tokens of
//! all sequences.
//!
//! No speed is asserted anywhere: these functions measure, `realizar bench` and
//! `cargo xtask bench` report.

use core::fmt;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use realizar_format_gguf::{GgmlType, GgufFile, GgufWriter, OwnedValue, WriteError};
use realizar_nn::Logits;
use realizar_quant::{QuantError, QuantType};

use crate::{DecoderModel, RuntimeError};

/// What went wrong while measuring or writing a synthetic model.
#[derive(Debug)]
#[non_exhaustive]
pub enum BenchError {
    /// Loading or running the model failed.
    Runtime(RuntimeError),
    /// A synthetic tensor could not be added to the GGUF writer.
    Write(WriteError),
    /// Quantizing a synthetic tensor failed.
    Quant(QuantError),
    /// Writing the synthetic file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An argument is out of range.
    InvalidArgument {
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Runtime(e) => write!(f, "{e}"),
            BenchError::Write(e) => write!(f, "building the synthetic model: {e}"),
            BenchError::Quant(e) => write!(f, "quantizing the synthetic model: {e}"),
            BenchError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            BenchError::InvalidArgument { reason } => write!(f, "invalid argument: {reason}"),
        }
    }
}

impl std::error::Error for BenchError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BenchError::Runtime(e) => Some(e),
            BenchError::Write(e) => Some(e),
            BenchError::Quant(e) => Some(e),
            BenchError::Io { source, .. } => Some(source),
            BenchError::InvalidArgument { .. } => None,
        }
    }
}

impl From<RuntimeError> for BenchError {
    fn from(e: RuntimeError) -> BenchError {
        BenchError::Runtime(e)
    }
}

impl From<WriteError> for BenchError {
    fn from(e: WriteError) -> BenchError {
        BenchError::Write(e)
    }
}

impl From<QuantError> for BenchError {
    fn from(e: QuantError) -> BenchError {
        BenchError::Quant(e)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small seeded generator, good enough for token ids
/// and synthetic weights.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`; 0 when `n == 0`).
    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }

    /// A float in `[-1, 1)`.
    pub fn symmetric(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }
}

/// Mean and sample standard deviation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Mean.
    pub mean: f64,
    /// Sample standard deviation (0 for fewer than two samples), as llama-bench's `stdev`.
    pub sd: f64,
}

impl Stats {
    /// Mean and sample standard deviation of `v` (zeros when empty).
    pub fn of(v: &[f64]) -> Stats {
        if v.is_empty() {
            return Stats::default();
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = if v.len() < 2 {
            0.0
        } else {
            (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt()
        };
        Stats { mean, sd }
    }
}

/// The `q`-quantile (`0..=1`) of `v` by the nearest-rank method; 0 when empty.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if s.is_empty() {
        return 0.0;
    }
    s.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * s.len() as f64).ceil() as usize;
    let i = rank.saturating_sub(1).min(s.len() - 1);
    s.get(i).copied().unwrap_or(0.0)
}

/// Settings of [`throughput`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThroughputConfig {
    /// Prompt tokens of the prompt-processing test (0: skip it).
    pub prompt: usize,
    /// Tokens of the generation test (0: skip it).
    pub gen: usize,
    /// Repetitions after the warm-up.
    pub reps: usize,
    /// Seed of the random token ids.
    pub seed: u64,
}

impl Default for ThroughputConfig {
    fn default() -> ThroughputConfig {
        ThroughputConfig {
            prompt: 128,
            gen: 64,
            reps: 5,
            seed: 1,
        }
    }
}

/// Results of [`throughput`]: tokens per second of each repetition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Throughput {
    /// Prompt-processing speed of each repetition (tokens/s).
    pub prefill: Vec<f64>,
    /// Generation speed of each repetition (tokens/s).
    pub decode: Vec<f64>,
}

/// The token to start a sequence with: BOS when the vocabulary adds it, else a random one
/// (llama-bench's rule).
fn first_token(model: &DecoderModel, rng: &mut SplitMix64, n_vocab: u32) -> u32 {
    match model.special().bos {
        Some(bos) if model.special().add_bos => bos,
        _ => rng.below(n_vocab),
    }
}

/// A prompt of `n` tokens the way llama-bench builds one: BOS first when the vocabulary adds
/// it, then uniformly random ids.
pub fn random_prompt(model: &DecoderModel, n: usize, rng: &mut SplitMix64) -> Vec<u32> {
    let n_vocab = u32::try_from(model.n_vocab()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(n);
    if n > 0 {
        out.push(first_token(model, rng, n_vocab));
    }
    while out.len() < n {
        out.push(rng.below(n_vocab));
    }
    out
}

/// Rejects sequences longer than the model's trained context (or the sessions' context, if
/// larger): beyond it the figures mean nothing and the KV cache could exhaust memory.
fn check_len(model: &DecoderModel, what: &str, n: usize) -> Result<(), BenchError> {
    let limit = model.decoder().config().context_length.max(model.ctx());
    if n > limit {
        return Err(BenchError::InvalidArgument {
            reason: format!("{what} of {n} tokens exceeds the model's context of {limit}"),
        });
    }
    Ok(())
}

/// Measures prompt processing and generation as `llama-bench -p P -n N -r REPS` does (see the
/// module documentation).
pub fn throughput(model: &DecoderModel, cfg: &ThroughputConfig) -> Result<Throughput, BenchError> {
    if cfg.reps == 0 {
        return Err(BenchError::InvalidArgument {
            reason: "the number of repetitions must be positive".into(),
        });
    }
    check_len(model, "the prompt", cfg.prompt)?;
    check_len(model, "the generation", cfg.gen)?;
    let mut rng = SplitMix64::new(cfg.seed);
    let n_vocab = u32::try_from(model.n_vocab()).unwrap_or(u32::MAX);
    let mut out = Throughput::default();
    if cfg.prompt > 0 {
        let mut s = model.session_with_ctx(cfg.prompt)?;
        let warm = random_prompt(model, cfg.prompt, &mut rng);
        s.eval(&warm, Logits::Last)?;
        for _ in 0..cfg.reps {
            s.reset();
            let tokens = random_prompt(model, cfg.prompt, &mut rng);
            let t = Instant::now();
            black_box(s.eval(&tokens, Logits::Last)?);
            out.prefill
                .push(cfg.prompt as f64 / t.elapsed().as_secs_f64());
        }
    }
    if cfg.gen > 0 {
        let mut s = model.session_with_ctx(cfg.gen)?;
        let warm = first_token(model, &mut rng, n_vocab);
        s.eval(&[warm], Logits::Last)?;
        for _ in 0..cfg.reps {
            s.reset();
            let mut token = first_token(model, &mut rng, n_vocab);
            let t = Instant::now();
            for _ in 0..cfg.gen {
                black_box(s.eval(&[token], Logits::Last)?);
                token = rng.below(n_vocab);
            }
            out.decode.push(cfg.gen as f64 / t.elapsed().as_secs_f64());
        }
    }
    Ok(out)
}

/// Settings of [`batched`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchedConfig {
    /// Prompt tokens of each sequence.
    pub prompt: usize,
    /// Generation steps (one token of every sequence each).
    pub gen: usize,
    /// Sequences evaluated together.
    pub parallel: usize,
    /// Repetitions after the warm-up.
    pub reps: usize,
    /// Seed of the random token ids.
    pub seed: u64,
}

/// Measures `cfg.parallel` sequences decoded together as `llama-batched-bench -npp P -ntg N
/// -npl B` does (see the module documentation): for each repetition, the prompt speed
/// (`B P` tokens over the prompt pass) and the generation speed (`B N` tokens over the `N`
/// steps).
pub fn batched(model: &DecoderModel, cfg: &BatchedConfig) -> Result<Throughput, BenchError> {
    use crate::batch::{BatchDecoder, BatchForward, BatchOptions, SeqChunk};
    if cfg.reps == 0 || cfg.parallel == 0 || cfg.prompt == 0 {
        return Err(BenchError::InvalidArgument {
            reason: format!(
                "batched test: repetitions ({}), sequences ({}) and prompt tokens ({}) must be positive",
                cfg.reps, cfg.parallel, cfg.prompt
            ),
        });
    }
    let len = cfg.prompt.saturating_add(cfg.gen);
    check_len(model, "a sequence", len)?;
    // Bounds on the one prompt pass and on the caches, so that the request cannot exhaust
    // memory: 8 Ki rows, 64 Ki positions of all sequences together.
    let rows = cfg
        .parallel
        .checked_mul(cfg.prompt)
        .filter(|&r| r <= 1 << 13)
        .ok_or_else(|| BenchError::InvalidArgument {
            reason: format!(
                "batched test: {} sequences of {} prompt tokens are more than 8192 rows in one pass",
                cfg.parallel, cfg.prompt
            ),
        })?;
    if cfg.parallel.checked_mul(len).is_none_or(|p| p > 1 << 16) {
        return Err(BenchError::InvalidArgument {
            reason: format!(
                "batched test: {} sequences of {len} positions are more than 65536 cache positions",
                cfg.parallel
            ),
        });
    }
    let opts = BatchOptions {
        slots: cfg.parallel,
        ctx: Some(len),
        max_rows: rows.max(cfg.parallel),
        ..BatchOptions::default()
    };
    let mut bd = BatchDecoder::new(model, opts)?;
    let mut rng = SplitMix64::new(cfg.seed);
    let n_vocab = u32::try_from(model.n_vocab()).unwrap_or(u32::MAX);
    let mut out = Throughput::default();
    // One warm-up repetition, then `reps` timed ones.
    for rep in 0..=cfg.reps {
        let prompts: Vec<Vec<u32>> = (0..cfg.parallel)
            .map(|_| random_prompt(model, cfg.prompt, &mut rng))
            .collect();
        for slot in 0..cfg.parallel {
            bd.clear_slot(slot);
        }
        // Slot `i` takes `tokens[i]`, with its logits.
        fn each_slot<T: AsRef<[u32]>>(tokens: &[T]) -> Vec<SeqChunk<'_>> {
            tokens
                .iter()
                .enumerate()
                .map(|(slot, t)| SeqChunk {
                    slot,
                    tokens: t.as_ref(),
                    logits: true,
                })
                .collect()
        }
        let t = Instant::now();
        black_box(bd.forward(&each_slot(&prompts))?);
        let t_pp = t.elapsed().as_secs_f64();
        let mut step: Vec<[u32; 1]> = vec![[0]; cfg.parallel];
        let t = Instant::now();
        for _ in 0..cfg.gen {
            step.iter_mut().for_each(|s| s[0] = rng.below(n_vocab));
            black_box(bd.forward(&each_slot(&step))?);
        }
        let t_tg = t.elapsed().as_secs_f64();
        if rep > 0 {
            out.prefill.push(rows as f64 / t_pp);
            if cfg.gen > 0 {
                out.decode.push((cfg.parallel * cfg.gen) as f64 / t_tg);
            }
        }
    }
    Ok(out)
}

/// Options of [`constrained`].
#[derive(Clone, Debug, PartialEq)]
pub struct ConstrainedConfig {
    /// Random prompt tokens of each sequence.
    pub prompt: usize,
    /// Tokens each sequence generates (greedy, past end-of-generation tokens).
    pub gen: usize,
    /// Sequences decoded together.
    pub parallel: usize,
    /// How many of them are constrained (at most `parallel`).
    pub constrained: usize,
    /// Their language.
    pub grammar: crate::constrain::Grammar,
    /// Timed runs of each kind after one warm-up of each.
    pub reps: usize,
    /// Seed of the random prompts.
    pub seed: u64,
}

/// Results of [`constrained`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConstrainedReport {
    /// Generation speed of every sequence together, all free (tokens/s, one per run).
    pub free: Vec<f64>,
    /// The same with `constrained` of them constrained.
    pub mixed: Vec<f64>,
    /// Milliseconds to build the grammar engine's token trie (once per model).
    pub trie_ms: f64,
    /// Milliseconds to compile the grammar (per request).
    pub compile_ms: f64,
    /// Microseconds of each mask computation along one constrained sequence's tokens.
    pub mask_us: Vec<f64>,
}

/// Measures what constraining costs the batch: `parallel` sequences of random prompts decode
/// `gen` tokens each through the real [`crate::batcher::Batcher`] (greedy sampling, masks
/// computed while the model runs), all free, then with `constrained` of them constrained,
/// alternating; speeds count every sequence's tokens over the wall time from submission to
/// the last token. Constrained sequences end when their value is complete, so the grammar
/// should force at least `gen` tokens (e.g. an array with a large `minItems`). The mask time
/// is measured apart, replaying one constrained sequence's tokens through a fresh constraint.
pub fn constrained(
    model: &crate::Model,
    cfg: &ConstrainedConfig,
) -> Result<ConstrainedReport, BenchError> {
    use crate::batcher::{BatcherConfig, GenEvent, GenRequest};
    use crate::constrain::ConstraintCompiler;
    if cfg.reps == 0 || cfg.parallel == 0 || cfg.gen == 0 || cfg.constrained > cfg.parallel {
        return Err(BenchError::InvalidArgument {
            reason: format!(
                "constrained test: {} repetitions, {} sequences of which {} constrained, {} tokens",
                cfg.reps, cfg.parallel, cfg.constrained, cfg.gen
            ),
        });
    }
    let decoder = model.require_decoder()?;
    check_len(decoder, "a sequence", cfg.prompt.saturating_add(cfg.gen))?;
    let tokenizer = model
        .tokenizer()
        .ok_or(RuntimeError::Unsupported { what: "tokenizer" })?
        .clone();
    let invalid =
        |e: crate::constrain::ConstraintError| BenchError::InvalidArgument { reason: e.message };
    let t = Instant::now();
    let compiler = ConstraintCompiler::new(tokenizer, decoder.n_vocab(), &decoder.special().eog)
        .map_err(invalid)?;
    let trie_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    compiler.compile(&cfg.grammar).map_err(invalid)?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let batcher = model.batcher(cfg.parallel, BatcherConfig::default())?;
    let mut rng = SplitMix64::new(cfg.seed);
    let sampler = crate::SamplerConfig {
        temperature: 0.0,
        ..crate::SamplerConfig::default()
    };
    // One run: tokens/s of all sequences, and the tokens of the first constrained one.
    let mut run = |constrain: usize| -> Result<(f64, Vec<u32>), BenchError> {
        let t = Instant::now();
        let mut handles = Vec::with_capacity(cfg.parallel);
        for i in 0..cfg.parallel {
            let req = GenRequest {
                prompt: random_prompt(decoder, cfg.prompt.max(1), &mut rng),
                max_tokens: cfg.gen,
                sampler: sampler.clone(),
                stop: Vec::new(),
                logprobs: None,
                ignore_eos: true,
                grammar: (i < constrain).then(|| cfg.grammar.clone()),
                keep_special: Vec::new(),
            };
            let h = batcher
                .submit(req)
                .map_err(|e| BenchError::InvalidArgument {
                    reason: e.to_string(),
                })?;
            handles.push(h);
        }
        let mut tokens = 0usize;
        let mut first = Vec::new();
        for (i, h) in handles.iter().enumerate() {
            while let Some(ev) = h.recv() {
                match ev {
                    GenEvent::Delta {
                        token: Some(id), ..
                    } => {
                        tokens += 1;
                        if i == 0 && constrain > 0 {
                            first.push(id);
                        }
                    }
                    GenEvent::Delta { .. } => {}
                    GenEvent::Done(_) => break,
                    GenEvent::Failed(why) => {
                        return Err(BenchError::InvalidArgument { reason: why });
                    }
                }
            }
        }
        Ok((tokens as f64 / t.elapsed().as_secs_f64(), first))
    };
    let mut out = ConstrainedReport {
        trie_ms,
        compile_ms,
        ..ConstrainedReport::default()
    };
    let mut replay = Vec::new();
    for rep in 0..=cfg.reps {
        let (free, _) = run(0)?;
        let (mixed, first) = run(cfg.constrained)?;
        if rep > 0 {
            out.free.push(free);
            out.mixed.push(mixed);
        }
        replay = first;
    }
    let mut c = compiler.compile(&cfg.grammar).map_err(invalid)?;
    for id in replay {
        let t = Instant::now();
        black_box(c.mask().map_err(invalid)?);
        out.mask_us.push(t.elapsed().as_secs_f64() * 1e6);
        if !c.commit(id).unwrap_or(false) || c.is_finished() {
            break;
        }
    }
    Ok(out)
}

/// Resident memory of this process, from /proc/self/status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: every resident page, the mapped weights included.
    pub rss: u64,
    /// `RssAnon`: resident anonymous memory (heap, stacks), i.e. without file-backed pages.
    pub anon: u64,
}

/// Reads a `Key:   123 kB` line of /proc/self/status text, in bytes.
pub fn status_bytes(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if k.trim() != key {
            return None;
        }
        let mut parts = v.split_whitespace();
        let n: u64 = parts.next()?.parse().ok()?;
        let unit = match parts.next() {
            Some("kB") => 1024,
            None => 1,
            Some(_) => return None,
        };
        n.checked_mul(unit)
    })
}

/// This process's resident memory, or `None` where /proc is not available.
pub fn memory() -> Option<Memory> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    Some(Memory {
        rss: status_bytes(&text, "VmRSS")?,
        anon: status_bytes(&text, "RssAnon").unwrap_or(0),
    })
}

/// The report of [`latency`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Latency {
    /// Prompt tokens.
    pub prompt: usize,
    /// Seconds from an empty cache to the first generated token (prompt evaluated in one
    /// batch, greedy pick included).
    pub ttft_s: f64,
    /// Seconds of each later decode step (one token, its logits, the greedy pick).
    pub steps_s: Vec<f64>,
    /// Memory after the model was loaded, before any evaluation.
    pub after_load: Option<Memory>,
    /// Memory after the generation.
    pub after_gen: Option<Memory>,
}

impl Latency {
    /// The `q` quantile of the decode steps, in seconds.
    pub fn step_quantile(&self, q: f64) -> f64 {
        percentile(&self.steps_s, q)
    }
}

fn argmax(v: &[f32]) -> u32 {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &x) in v.iter().enumerate() {
        if x > best.1 {
            best = (i, x);
        }
    }
    u32::try_from(best.0).unwrap_or(0)
}

/// Time to first token for a random `prompt`-token prompt, then `gen` greedy decode steps timed
/// one by one; memory is read after load (`after_load`, which the caller measures before any
/// evaluation) and after generation. A one-token warm-up in a separate session runs first, so
/// the figures are those of a warm process.
pub fn latency(
    model: &DecoderModel,
    prompt: usize,
    gen: usize,
    seed: u64,
    after_load: Option<Memory>,
) -> Result<Latency, BenchError> {
    if prompt == 0 {
        return Err(BenchError::InvalidArgument {
            reason: "the latency prompt must have at least one token".into(),
        });
    }
    check_len(
        model,
        "the prompt and generation",
        prompt.saturating_add(gen),
    )?;
    let mut rng = SplitMix64::new(seed);
    {
        let mut warm = model.session_with_ctx(1)?;
        let t = random_prompt(model, 1, &mut rng);
        warm.eval(&t, Logits::Last)?;
    }
    let tokens = random_prompt(model, prompt, &mut rng);
    let mut s = model.session_with_ctx(prompt + gen.max(1))?;
    let t = Instant::now();
    let mut next = argmax(s.eval(&tokens, Logits::Last)?);
    let ttft_s = t.elapsed().as_secs_f64();
    let mut steps_s = Vec::with_capacity(gen);
    for _ in 0..gen {
        let t = Instant::now();
        next = argmax(s.eval(&[next], Logits::Last)?);
        steps_s.push(t.elapsed().as_secs_f64());
    }
    black_box(next);
    Ok(Latency {
        prompt,
        ttft_s,
        steps_s,
        after_load,
        after_gen: memory(),
    })
}

/// What one decode step of a model costs in weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WeightCost {
    /// Bytes of weights read per decoded token: every tensor, except that the token embedding
    /// counts one row (plus its whole size when it is also the output head, i.e. tied).
    pub bytes_per_token: u64,
    /// Parameters of the matrix products (2-D weights; the embedding only as a tied output
    /// head).
    pub matmul_params: u64,
    /// Bytes of all tensors in the file.
    pub total_tensor_bytes: u64,
}

impl WeightCost {
    /// Floating-point operations per token in the matrix products (2 × parameters), without
    /// attention over the cache.
    pub fn flops_per_token(&self) -> u64 {
        self.matmul_params.saturating_mul(2)
    }

    /// Weights of `file` as a decode step reads them.
    pub fn of(file: &GgufFile<'_>) -> WeightCost {
        WeightCost::of_tensors(
            file.tensors()
                .iter()
                .map(|t| (t.name.to_string(), t.dims.clone(), t.size)),
        )
    }

    /// Weights as a decode step reads them, from each tensor's llama.cpp name, dimensions
    /// and size in bytes.
    pub fn of_tensors(tensors: impl Iterator<Item = (String, Vec<u64>, u64)>) -> WeightCost {
        let tensors: Vec<_> = tensors.collect();
        let tied = !tensors.iter().any(|(n, _, _)| n == "output.weight");
        let mut c = WeightCost::default();
        for (name, dims, size) in &tensors {
            let size = *size;
            let n_elements = dims.iter().fold(1u64, |a, &d| a.saturating_mul(d));
            c.total_tensor_bytes = c.total_tensor_bytes.saturating_add(size);
            let matrix = dims.len() >= 2 && dims.iter().skip(1).any(|&d| d > 1);
            if name == "token_embd.weight" {
                let rows = dims.get(1).copied().unwrap_or(1).max(1);
                let row = size / rows;
                c.bytes_per_token = c.bytes_per_token.saturating_add(row);
                if tied {
                    c.bytes_per_token = c.bytes_per_token.saturating_add(size);
                    c.matmul_params = c.matmul_params.saturating_add(n_elements);
                }
            } else {
                c.bytes_per_token = c.bytes_per_token.saturating_add(size);
                if matrix {
                    c.matmul_params = c.matmul_params.saturating_add(n_elements);
                }
            }
        }
        c
    }
}

/// The shape of a synthetic llama model (all matrices Q4_0, norms F32, random weights).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntheticSpec {
    /// Blocks.
    pub n_layer: usize,
    /// Width.
    pub n_embd: usize,
    /// FFN width.
    pub n_ff: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Vocabulary size.
    pub n_vocab: usize,
    /// Whether the output head is its own tensor (else tied to the embedding).
    pub untied_output: bool,
    /// Seed of the weights.
    pub seed: u64,
}

impl SyntheticSpec {
    /// A 1.1B-parameter llama: 16 blocks, width 2048, FFN 8192, 32 heads / 8 KV heads (head dim
    /// 64), vocabulary 32000, untied output head.
    pub fn llama_1b() -> SyntheticSpec {
        SyntheticSpec {
            n_layer: 16,
            n_embd: 2048,
            n_ff: 8192,
            n_head: 32,
            n_head_kv: 8,
            n_vocab: 32000,
            untied_output: true,
            seed: 1,
        }
    }

    /// Parameters of all tensors.
    pub fn parameters(&self) -> u64 {
        let (d, f, v) = (self.n_embd as u64, self.n_ff as u64, self.n_vocab as u64);
        let kv = (self.n_embd / self.n_head.max(1) * self.n_head_kv) as u64;
        let block = 2 * d * d + 2 * d * kv + 3 * d * f + 2 * d;
        let heads = if self.untied_output { 2 } else { 1 };
        self.n_layer as u64 * block + heads * v * d + d
    }

    /// The GGUF file of this model, built in memory.
    pub fn build(&self) -> Result<GgufWriter, BenchError> {
        let (d, ff, nh, nkv) = (self.n_embd, self.n_ff, self.n_head, self.n_head_kv);
        if d == 0 || nh == 0 || nkv == 0 || d % nh != 0 || nh % nkv != 0 || ff == 0 {
            return Err(BenchError::InvalidArgument {
                reason: format!(
                    "width {d} / {nh} heads / {nkv} KV heads / FFN {ff} is not a llama shape"
                ),
            });
        }
        let u32_of = |what: &str, v: usize| {
            u32::try_from(v).map_err(|_| BenchError::InvalidArgument {
                reason: format!("{what} {v} does not fit in u32"),
            })
        };
        let kv = d / nh * nkv;
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", OwnedValue::String("llama".into()))
            .add_metadata(
                "general.name",
                OwnedValue::String("realizar synthetic llama".into()),
            )
            .add_metadata(
                "llama.block_count",
                OwnedValue::U32(u32_of("blocks", self.n_layer)?),
            )
            .add_metadata("llama.context_length", OwnedValue::U32(4096))
            .add_metadata(
                "llama.embedding_length",
                OwnedValue::U32(u32_of("width", d)?),
            )
            .add_metadata(
                "llama.feed_forward_length",
                OwnedValue::U32(u32_of("FFN", ff)?),
            )
            .add_metadata(
                "llama.attention.head_count",
                OwnedValue::U32(u32_of("heads", nh)?),
            )
            .add_metadata(
                "llama.attention.head_count_kv",
                OwnedValue::U32(u32_of("KV heads", nkv)?),
            )
            .add_metadata(
                "llama.attention.layer_norm_rms_epsilon",
                OwnedValue::F32(1e-5),
            )
            .add_metadata("llama.rope.freq_base", OwnedValue::F32(10000.0))
            .add_metadata(
                "llama.vocab_size",
                OwnedValue::U32(u32_of("vocabulary", self.n_vocab)?),
            );
        let mut rng = SplitMix64::new(self.seed);
        let mut matrix = |w: &mut GgufWriter, name: &str, cols: usize, rows: usize| {
            let data = random_q4_0(&mut rng, cols, rows)?;
            w.add_tensor(name, &[cols as u64, rows as u64], GgmlType::Q4_0, data)?;
            Ok::<(), BenchError>(())
        };
        matrix(&mut w, "token_embd.weight", d, self.n_vocab)?;
        let norm = vec![1.0f32; d];
        for il in 0..self.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}.weight");
            w.add_f32_tensor(&n("attn_norm"), &[d as u64], &norm)?;
            matrix(&mut w, &n("attn_q"), d, d)?;
            matrix(&mut w, &n("attn_k"), d, kv)?;
            matrix(&mut w, &n("attn_v"), d, kv)?;
            matrix(&mut w, &n("attn_output"), d, d)?;
            w.add_f32_tensor(&n("ffn_norm"), &[d as u64], &norm)?;
            matrix(&mut w, &n("ffn_gate"), d, ff)?;
            matrix(&mut w, &n("ffn_up"), d, ff)?;
            matrix(&mut w, &n("ffn_down"), ff, d)?;
        }
        w.add_f32_tensor("output_norm.weight", &[d as u64], &norm)?;
        if self.untied_output {
            matrix(&mut w, "output.weight", d, self.n_vocab)?;
        }
        Ok(w)
    }

    /// Builds the file and writes it to `path`.
    pub fn write(&self, path: &Path) -> Result<(), BenchError> {
        let io = |source| BenchError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = self.build()?.to_bytes();
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(path, bytes).map_err(io)
    }
}

/// `rows` rows of `cols` random weights in `[-s, s)` (s = 1/sqrt(cols), so activations stay
/// in range), quantized to Q4_0.
fn random_q4_0(rng: &mut SplitMix64, cols: usize, rows: usize) -> Result<Vec<u8>, BenchError> {
    let ty = QuantType::Q4_0;
    let row_bytes = ty
        .row_bytes(cols)
        .ok_or(BenchError::Quant(QuantError::NotBlockMultiple {
            ty,
            n: cols,
        }))?;
    let total = row_bytes
        .checked_mul(rows)
        .ok_or_else(|| BenchError::InvalidArgument {
            reason: format!("{rows} × {cols} is too large"),
        })?;
    let scale = 1.0 / (cols as f32).sqrt();
    let mut out = vec![0u8; total];
    let mut row = vec![0f32; cols];
    for dst in out.chunks_exact_mut(row_bytes) {
        for x in &mut row {
            *x = rng.symmetric() * scale;
        }
        realizar_quant::quantize_row(ty, &row, dst)?;
    }
    Ok(out)
}

/// The measured ceilings of this machine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ceilings {
    /// Threads used.
    pub threads: usize,
    /// Memory read bandwidth, bytes/s (best of several passes over a buffer far larger than the
    /// caches).
    pub read_bytes_per_s: f64,
    /// Integer multiply-adds of realizar-quant's Q8_0 × Q8_0 kernel on cache-resident data,
    /// counted as 2 operations each, per second.
    pub int8_ops_per_s: f64,
    /// f32 multiply-adds of realizar-quant's F32 kernel on cache-resident data, counted as 2
    /// flops each, per second.
    pub f32_flops_per_s: f64,
}

/// Runs `f(thread index)` on `threads` scoped threads and returns the wall time in seconds.
fn timed_parallel(threads: usize, f: impl Fn(usize) + Sync) -> f64 {
    let t = Instant::now();
    std::thread::scope(|s| {
        for i in 1..threads {
            let f = &f;
            s.spawn(move || f(i));
        }
        f(0);
    });
    t.elapsed().as_secs_f64()
}

/// Read bandwidth in bytes/s: `threads` threads each sum their share of a `bytes`-byte buffer
/// (as 64-bit words with eight independent accumulators, which the compiler vectorises);
/// best of `passes`.
pub fn read_bandwidth(threads: usize, bytes: usize, passes: usize) -> f64 {
    let threads = threads.max(1);
    let words = (bytes / 8).max(threads * 8);
    let buf: Vec<u64> = (0..words as u64).collect();
    let share = words.div_ceil(threads);
    let mut best = 0.0f64;
    for _ in 0..passes.max(1) {
        let secs = timed_parallel(threads, |i| {
            let part = buf.chunks(share).nth(i).unwrap_or(&[]);
            let mut acc = [0u64; 8];
            let mut it = part.chunks_exact(8);
            for c in &mut it {
                for (a, x) in acc.iter_mut().zip(c) {
                    *a = a.wrapping_add(*x);
                }
            }
            let tail: u64 = it.remainder().iter().fold(0, |a, x| a.wrapping_add(*x));
            black_box(acc.iter().fold(tail, |a, x| a.wrapping_add(*x)));
        });
        best = best.max((words * 8) as f64 / secs);
    }
    best
}

/// Operations per second (2 per multiply-add) of realizar-quant's `matmul` kernel for weight
/// type `ty` on cache-resident data (64 rows × 1024 columns, 8 activation rows: a whole
/// tile of the packed kernels), on `threads` threads, best of `passes`.
pub fn kernel_peak(ty: QuantType, threads: usize, passes: usize) -> Result<f64, BenchError> {
    let (n, rows, m, iters) = (1024usize, 64usize, 8usize, 100usize);
    let at = ty.vec_dot_type();
    let mut rng = SplitMix64::new(7);
    let mut quant_rows = |t: QuantType, count: usize| -> Result<Vec<u8>, BenchError> {
        let rb = t
            .row_bytes(n)
            .ok_or(BenchError::Quant(QuantError::NotBlockMultiple { ty: t, n }))?;
        let mut out = vec![0u8; rb * count];
        let mut row = vec![0f32; n];
        for dst in out.chunks_exact_mut(rb) {
            for x in &mut row {
                *x = rng.symmetric();
            }
            realizar_quant::quantize_row(t, &row, dst)?;
        }
        Ok(out)
    };
    let w = quant_rows(ty, rows)?;
    let act = quant_rows(at, m)?;
    // Surface kernel errors once, outside the timed loop.
    let mut out = vec![0f32; m * rows];
    realizar_quant::matmul(ty, n, &w, 0..rows, &act, m, &mut out, rows)?;
    let threads = threads.max(1);
    let mut best = 0.0f64;
    for _ in 0..passes.max(1) {
        let secs = timed_parallel(threads, |_| {
            let mut out = vec![0f32; m * rows];
            for _ in 0..iters {
                let r = realizar_quant::matmul(
                    ty,
                    n,
                    black_box(&w),
                    0..rows,
                    black_box(&act),
                    m,
                    &mut out,
                    rows,
                );
                black_box((&r, &out));
            }
        });
        let ops = 2.0 * (n * rows * m * iters * threads) as f64;
        best = best.max(ops / secs);
    }
    Ok(best)
}

/// Measures the [`Ceilings`] with `threads` threads: bandwidth over `bandwidth_bytes` (e.g.
/// 1 GiB), best of `passes` for each figure.
pub fn ceilings(
    threads: usize,
    bandwidth_bytes: usize,
    passes: usize,
) -> Result<Ceilings, BenchError> {
    Ok(Ceilings {
        threads: threads.max(1),
        read_bytes_per_s: read_bandwidth(threads, bandwidth_bytes, passes),
        int8_ops_per_s: kernel_peak(QuantType::Q8_0, threads, passes)?,
        f32_flops_per_s: kernel_peak(QuantType::F32, threads, passes)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LoadOptions;

    #[test]
    fn stats_match_llama_bench_formula() {
        let s = Stats::of(&[10.0, 12.0, 14.0]);
        assert!((s.mean - 12.0).abs() < 1e-12);
        assert!((s.sd - 2.0).abs() < 1e-12);
        assert_eq!(Stats::of(&[5.0]), Stats { mean: 5.0, sd: 0.0 });
        assert_eq!(Stats::of(&[]), Stats::default());
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.95), 95.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[3.0], 0.99), 3.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn status_lines_in_bytes() {
        let text = "Name:\tx\nVmRSS:\t  2048 kB\nRssAnon:\t 16 kB\nBad:\tzz kB\n";
        assert_eq!(status_bytes(text, "VmRSS"), Some(2048 * 1024));
        assert_eq!(status_bytes(text, "RssAnon"), Some(16 * 1024));
        assert_eq!(status_bytes(text, "Bad"), None);
        assert_eq!(status_bytes(text, "Missing"), None);
    }

    #[test]
    fn random_ids_stay_in_range_and_are_seeded() {
        let mut a = SplitMix64::new(3);
        let mut b = SplitMix64::new(3);
        let xs: Vec<u32> = (0..1000).map(|_| a.below(7)).collect();
        assert!(xs.iter().all(|&x| x < 7));
        assert!((0..7).all(|k| xs.contains(&k)));
        assert_eq!(xs, (0..1000).map(|_| b.below(7)).collect::<Vec<_>>());
        assert!((0..1000).all(|_| (-1.0..1.0).contains(&a.symmetric())));
    }

    fn tiny(untied: bool) -> SyntheticSpec {
        SyntheticSpec {
            n_layer: 2,
            n_embd: 64,
            n_ff: 128,
            n_head: 4,
            n_head_kv: 2,
            n_vocab: 100,
            untied_output: untied,
            seed: 5,
        }
    }

    #[test]
    fn weight_cost_counts_one_embedding_row_and_the_head() {
        for untied in [true, false] {
            let spec = tiny(untied);
            let bytes = spec.build().unwrap().to_bytes();
            let file = GgufFile::parse(&bytes).unwrap();
            let c = WeightCost::of(&file);
            let q = |rows: u64, cols: u64| rows * cols / 32 * 18;
            let (d, ff, kv, v) = (64u64, 128u64, 32u64, 100u64);
            let block = 2 * q(d, d) + 2 * q(kv, d) + 3 * q(ff, d) + 2 * d * 4;
            let row = q(1, d);
            let expected = 2 * block + d * 4 + row + q(v, d);
            assert_eq!(c.bytes_per_token, expected, "untied {untied}");
            let params = 2 * (2 * d * d + 2 * kv * d + 3 * ff * d) + v * d;
            assert_eq!(c.matmul_params, params);
            assert_eq!(c.flops_per_token(), 2 * params);
            let all: u64 = file.tensors().iter().map(|t| t.size).sum();
            assert_eq!(c.total_tensor_bytes, all);
            let total_params: u64 = file.tensors().iter().map(|t| t.n_elements()).sum();
            assert_eq!(spec.parameters(), total_params);
        }
    }

    #[test]
    fn one_b_spec_has_about_a_billion_parameters() {
        let p = SyntheticSpec::llama_1b().parameters();
        assert!((1_000_000_000..1_200_000_000).contains(&p), "{p}");
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let mut s = tiny(true);
        s.n_head = 3;
        assert!(matches!(s.build(), Err(BenchError::InvalidArgument { .. })));
        let mut s = tiny(true);
        s.n_embd = 48; // not a multiple of the Q4_0 block
        s.n_head = 4;
        assert!(matches!(s.build(), Err(BenchError::Quant(_))));
    }

    #[test]
    fn synthetic_model_loads_and_runs_the_bench_loops() {
        let dir = std::env::temp_dir().join(format!("realizar-bench-{}", std::process::id()));
        let path = dir.join("tiny.gguf");
        tiny(false).write(&path).unwrap();
        let opts = LoadOptions {
            threads: Some(1),
            ..LoadOptions::default()
        };
        let model = DecoderModel::load(&path, &opts).unwrap();
        assert_eq!(model.n_vocab(), 100);
        let cfg = ThroughputConfig {
            prompt: 8,
            gen: 4,
            reps: 2,
            seed: 1,
        };
        let r = throughput(&model, &cfg).unwrap();
        assert_eq!((r.prefill.len(), r.decode.len()), (2, 2));
        assert!(r
            .prefill
            .iter()
            .chain(&r.decode)
            .all(|x| x.is_finite() && *x > 0.0));
        let bad = ThroughputConfig {
            reps: 0,
            ..cfg.clone()
        };
        assert!(matches!(
            throughput(&model, &bad),
            Err(BenchError::InvalidArgument { .. })
        ));
        let too_long = ThroughputConfig {
            gen: 1 << 40,
            ..cfg.clone()
        };
        assert!(matches!(
            throughput(&model, &too_long),
            Err(BenchError::InvalidArgument { .. })
        ));
        assert!(matches!(
            latency(&model, 8, usize::MAX, 1, None),
            Err(BenchError::InvalidArgument { .. })
        ));
        let l = latency(&model, 8, 5, 1, memory()).unwrap();
        assert_eq!(l.steps_s.len(), 5);
        assert!(l.ttft_s > 0.0 && l.step_quantile(0.99) >= l.step_quantile(0.5));
        assert!(matches!(
            latency(&model, 0, 5, 1, None),
            Err(BenchError::InvalidArgument { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ceilings_are_positive() {
        let c = ceilings(2, 1 << 20, 1).unwrap();
        assert!(c.read_bytes_per_s > 0.0 && c.int8_ops_per_s > 0.0 && c.f32_flops_per_s > 0.0);
    }
}
