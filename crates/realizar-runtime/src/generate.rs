//! The generation loop (one batched prefill, then token-by-token decoding), teacher-forced
//! scoring and perplexity.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use realizar_nn::Logits;
use realizar_tokenize::{TextStep, TextStream, Tokenizer};

use crate::constrain::{Constraint, ConstraintCompiler, Grammar};
use crate::model::Session;
use crate::sampling::{Sampler, SamplerConfig};
use crate::RuntimeError;

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// `max_tokens` were generated (or the context filled up).
    Length,
    /// An end-of-generation token was sampled.
    Eos,
    /// A stop string appeared in the text, or the callback asked to stop.
    Stop,
}

impl StopReason {
    /// `"length"`, `"eos"` or `"stop"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Length => "length",
            StopReason::Eos => "eos",
            StopReason::Stop => "stop",
        }
    }
}

/// Options of [`generate`].
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateConfig {
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Sampling parameters.
    pub sampler: SamplerConfig,
    /// Stop at end-of-generation tokens (they are kept in the output ids).
    pub stop_on_eog: bool,
    /// Keep the output inside this language ([`crate::constrain`]; needs a text stream, whose
    /// tokenizer it is compiled for): generation ends once the output is complete.
    pub grammar: Option<Grammar>,
}

impl Default for GenerateConfig {
    fn default() -> GenerateConfig {
        GenerateConfig {
            max_tokens: 32,
            sampler: SamplerConfig::default(),
            stop_on_eog: true,
            grammar: None,
        }
    }
}

/// Wall-clock times of a generation.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Timings {
    /// Prompt tokens evaluated.
    pub prefill_tokens: usize,
    /// Milliseconds spent on the prompt.
    pub prefill_ms: f64,
    /// Tokens decoded (forward passes after the prompt).
    pub decode_tokens: usize,
    /// Milliseconds spent decoding.
    pub decode_ms: f64,
}

impl Timings {
    /// Prompt tokens per second.
    pub fn prefill_tok_s(&self) -> f64 {
        rate(self.prefill_tokens, self.prefill_ms)
    }

    /// Decoded tokens per second.
    pub fn decode_tok_s(&self) -> f64 {
        rate(self.decode_tokens, self.decode_ms)
    }
}

fn rate(n: usize, ms: f64) -> f64 {
    if ms > 0.0 {
        n as f64 * 1000.0 / ms
    } else {
        0.0
    }
}

/// The result of [`generate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// Generated ids (not including the prompt).
    pub ids: Vec<u32>,
    /// Their final text (end-of-generation tokens left out, cut before a stop string); empty
    /// without a text stream.
    pub text: String,
    /// Why it ended.
    pub stop_reason: StopReason,
    /// Times.
    pub timings: Timings,
}

/// Generates from `prompt` in a fresh (reset) session: the prompt is evaluated in one batched
/// pass, then tokens are sampled one at a time until `max_tokens`, an end-of-generation token,
/// a stop string, or a full context. With a `text` stream (from [`crate::Model::text_stream`],
/// which holds the stop strings) each id's final text is passed to `on_token` with the id and
/// gathered in [`Generation::text`]; text still held back at the end (an incomplete character,
/// a possible stop-string start) comes last, with no id. Without a stream the text is empty.
/// `on_token` may return `ControlFlow::Break(())` to stop.
pub fn generate(
    session: &mut Session<'_>,
    prompt: &[u32],
    config: &GenerateConfig,
    mut text: Option<&mut TextStream<Arc<Tokenizer>>>,
    mut on_token: impl FnMut(Option<u32>, &str) -> ControlFlow<()>,
) -> Result<Generation, RuntimeError> {
    if prompt.is_empty() {
        return Err(RuntimeError::InvalidArgument {
            reason: "the prompt is empty".into(),
        });
    }
    config.sampler.validate()?;
    session.reset();
    if prompt.len() > session.capacity() {
        return Err(RuntimeError::PromptTooLong {
            tokens: prompt.len(),
            ctx: session.capacity(),
        });
    }
    let model = session.model();
    let special = model.special().clone();
    let n_vocab = model.n_vocab();
    let mut sampler = Sampler::new(config.sampler.clone(), n_vocab);
    // At most the context's room is ever generated, whatever `max_tokens` says.
    let most = config.max_tokens.min(session.capacity() - prompt.len());
    let mut history: Vec<u32> = Vec::with_capacity(prompt.len() + most);
    history.extend_from_slice(prompt);
    let mut logits: Vec<f32> = Vec::with_capacity(n_vocab);
    let mut ids = Vec::with_capacity(most);
    let mut out = String::new();
    let mut timings = Timings::default();
    let mut constraint = match &config.grammar {
        None => None,
        Some(g) => {
            let tok = text
                .as_deref()
                .map(|t| t.tokenizer_handle().clone())
                .ok_or(RuntimeError::InvalidArgument {
                    reason: "a grammar needs the generation's text stream".into(),
                })?;
            Some(ConstraintCompiler::new(tok, n_vocab, &special.eog)?.compile(g)?)
        }
    };

    if config.max_tokens == 0 {
        return Ok(Generation {
            ids,
            text: out,
            stop_reason: StopReason::Length,
            timings,
        });
    }
    let t0 = Instant::now();
    logits.extend_from_slice(session.eval(prompt, Logits::Last)?);
    timings.prefill_tokens = prompt.len();
    timings.prefill_ms = t0.elapsed().as_secs_f64() * 1000.0;

    let t1 = Instant::now();
    let mut stop_reason = StopReason::Length;
    loop {
        let id = match constraint.as_mut() {
            Some(c) => {
                c.mask()?.apply(&mut logits, &special.eog);
                c.sample_accepted(&mut logits, |l| sampler.sample(l, &history))?
            }
            None => sampler.sample(&mut logits, &history),
        };
        ids.push(id);
        history.push(id);
        let (piece, stopped) = match text.as_deref_mut().map(|t| t.push(id)).transpose() {
            Ok(Some(TextStep::Text(t))) => (t, false),
            Ok(Some(TextStep::Stop(t))) => (t, true),
            Ok(None) => (String::new(), false),
            Err(source) => {
                return Err(RuntimeError::Text {
                    what: "detokenizing",
                    source,
                })
            }
        };
        out.push_str(&piece);
        if on_token(Some(id), &piece).is_break() || stopped {
            stop_reason = StopReason::Stop;
            break;
        }
        if (config.stop_on_eog || constraint.is_some()) && special.is_eog(id) {
            stop_reason = StopReason::Eos;
            break;
        }
        if constraint.as_ref().is_some_and(Constraint::is_finished) {
            stop_reason = StopReason::Stop;
            break;
        }
        if ids.len() >= config.max_tokens || session.len() >= session.capacity() {
            break;
        }
        let next = session.eval(&[id], Logits::Last)?;
        logits.clear();
        logits.extend_from_slice(next);
        timings.decode_tokens += 1;
    }
    timings.decode_ms = t1.elapsed().as_secs_f64() * 1000.0;
    if let Some(t) = text {
        let rest = t.finish();
        if !rest.is_empty() {
            out.push_str(&rest);
            let _ = on_token(None, &rest);
        }
    }
    Ok(Generation {
        ids,
        text: out,
        stop_reason,
        timings,
    })
}

/// The `n` largest `(id, logit)` pairs, by logit descending then id ascending.
pub fn top_n(logits: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut v: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i as u32, l))
        .collect();
    let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    let n = n.min(v.len());
    if n == 0 {
        return Vec::new();
    }
    v.select_nth_unstable_by(n - 1, order);
    v.truncate(n);
    v.sort_unstable_by(order);
    v
}

/// Teacher-forced pass over `ids` from an empty cache: for every position, the top `n`
/// `(id, logit)` pairs of the next-token logits.
pub fn score(
    session: &mut Session<'_>,
    ids: &[u32],
    n: usize,
) -> Result<Vec<Vec<(u32, f32)>>, RuntimeError> {
    if ids.is_empty() {
        return Err(RuntimeError::InvalidArgument {
            reason: "no token ids to score".into(),
        });
    }
    session.reset();
    let n_vocab = session.model().n_vocab();
    let logits = session.eval(ids, Logits::All)?;
    Ok(logits
        .chunks_exact(n_vocab)
        .map(|row| top_n(row, n))
        .collect())
}

/// The result of [`perplexity`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Perplexity {
    /// `exp(mean NLL)`.
    pub ppl: f64,
    /// Chunks evaluated.
    pub chunks: usize,
    /// Tokens scored.
    pub tokens_scored: usize,
    /// Sum of the negative log-likelihoods.
    pub nll_sum: f64,
}

/// Perplexity the way llama.cpp's `llama-perplexity` computes it: `floor(T / ctx)` chunks of
/// `ctx` tokens, each from an empty cache with its first token replaced by `bos` (pass `None`
/// when the vocabulary does not add BOS); tokens at positions `ctx/2 + 1 .. ctx` are scored
/// from the logits one position earlier.
pub fn perplexity(
    session: &mut Session<'_>,
    tokens: &[u32],
    ctx: usize,
    bos: Option<u32>,
) -> Result<Perplexity, RuntimeError> {
    if ctx < 4 {
        return Err(RuntimeError::InvalidArgument {
            reason: format!("perplexity needs a context of at least 4 tokens, got {ctx}"),
        });
    }
    if ctx > session.capacity() {
        return Err(RuntimeError::PromptTooLong {
            tokens: ctx,
            ctx: session.capacity(),
        });
    }
    let chunks = tokens.len() / ctx;
    if chunks == 0 {
        return Err(RuntimeError::InvalidArgument {
            reason: format!("{} tokens are fewer than one chunk of {ctx}", tokens.len()),
        });
    }
    let n_vocab = session.model().n_vocab();
    let first = ctx / 2;
    let mut chunk_buf = Vec::with_capacity(ctx);
    let mut nll_sum = 0.0f64;
    let mut scored = 0usize;
    for chunk in tokens.chunks_exact(ctx).take(chunks) {
        chunk_buf.clear();
        chunk_buf.extend_from_slice(chunk);
        if let (Some(b), Some(t0)) = (bos, chunk_buf.first_mut()) {
            *t0 = b;
        }
        session.reset();
        let logits = session.eval(&chunk_buf, Logits::All)?;
        for j in first..ctx - 1 {
            let row = &logits[j * n_vocab..(j + 1) * n_vocab];
            let target = chunk[j + 1] as usize;
            nll_sum += nll(row, target);
            scored += 1;
        }
    }
    Ok(Perplexity {
        ppl: (nll_sum / scored as f64).exp(),
        chunks,
        tokens_scored: scored,
        nll_sum,
    })
}

/// `-log softmax(row)[target]`, in f64.
fn nll(row: &[f32], target: usize) -> f64 {
    let max = realizar_quant::vecops::max_f32(row);
    let sum: f64 = row.iter().map(|&l| f64::from(l - max).exp()).sum();
    let lt = row.get(target).copied().unwrap_or(f32::NEG_INFINITY);
    sum.ln() - f64::from(lt - max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_n_orders_by_logit_then_id() {
        assert_eq!(
            top_n(&[1.0, 3.0, 3.0, 2.0], 3),
            vec![(1, 3.0), (2, 3.0), (3, 2.0)]
        );
        assert_eq!(top_n(&[1.0], 5), vec![(0, 1.0)]);
        assert!(top_n(&[1.0], 0).is_empty());
    }

    #[test]
    fn nll_of_uniform_is_log_n() {
        let row = [0.5f32; 4];
        assert!((nll(&row, 2) - 4f64.ln()).abs() < 1e-12);
        let row = [0.0f32, 100.0];
        assert!(nll(&row, 1) < 1e-12);
    }

    #[test]
    fn stop_reason_names() {
        assert_eq!(StopReason::Length.as_str(), "length");
        assert_eq!(StopReason::Eos.as_str(), "eos");
        assert_eq!(StopReason::Stop.as_str(), "stop");
    }
}
