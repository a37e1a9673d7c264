//! Token sampling: greedy, temperature, top-k, top-p, min-p, repetition / presence / frequency
//! penalties and logit bias, with a seeded PRNG so that a seed reproduces a run exactly.
//!
//! The order of the steps follows llama.cpp's default sampler chain (common/sampling.cpp):
//! logit bias, penalties, top-k, top-p, min-p, temperature, then a draw from the softmax.

/// xoshiro256++ (Blackman & Vigna, <https://prng.di.unimi.it/xoshiro256plusplus.c>), seeded
/// through SplitMix64.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole state is derived from `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A uniform float in `[0, 1)` with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The largest `top_k` and `penalty_last_n` [`SamplerConfig::validate`] accepts.
pub const MAX_SAMPLER_COUNT: usize = 1 << 20;

/// A field of [`SamplerConfig`], as [`SamplerError`] names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SamplerParam {
    /// [`SamplerConfig::temperature`].
    Temperature,
    /// [`SamplerConfig::top_k`].
    TopK,
    /// [`SamplerConfig::top_p`].
    TopP,
    /// [`SamplerConfig::min_p`].
    MinP,
    /// [`SamplerConfig::repeat_penalty`].
    RepeatPenalty,
    /// [`SamplerConfig::presence_penalty`].
    PresencePenalty,
    /// [`SamplerConfig::frequency_penalty`].
    FrequencyPenalty,
    /// [`SamplerConfig::penalty_last_n`].
    PenaltyLastN,
    /// [`SamplerConfig::logit_bias`].
    LogitBias,
}

impl SamplerParam {
    /// The field's name (`"temperature"`, `"top_p"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            SamplerParam::Temperature => "temperature",
            SamplerParam::TopK => "top_k",
            SamplerParam::TopP => "top_p",
            SamplerParam::MinP => "min_p",
            SamplerParam::RepeatPenalty => "repeat_penalty",
            SamplerParam::PresencePenalty => "presence_penalty",
            SamplerParam::FrequencyPenalty => "frequency_penalty",
            SamplerParam::PenaltyLastN => "penalty_last_n",
            SamplerParam::LogitBias => "logit_bias",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            SamplerParam::Temperature => "a number from 0 to 2",
            SamplerParam::TopP | SamplerParam::MinP => "a number from 0 to 1",
            SamplerParam::RepeatPenalty => "a number above 0 and at most 10",
            SamplerParam::PresencePenalty | SamplerParam::FrequencyPenalty => {
                "a number from -2 to 2"
            }
            SamplerParam::TopK | SamplerParam::PenaltyLastN => "a count of at most 1048576",
            SamplerParam::LogitBias => "finite biases (or -inf to ban a token)",
        }
    }
}

/// A sampling parameter out of range: which, its value and what it must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SamplerError {
    /// The field.
    pub param: SamplerParam,
    /// Its value, as text.
    pub value: String,
    /// What it must be.
    pub expected: &'static str,
}

impl core::fmt::Display for SamplerError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} must be {}, got {}",
            self.param.name(),
            self.expected,
            self.value
        )
    }
}

impl std::error::Error for SamplerError {}

/// Sampling parameters. The default is greedy decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `<= 0` means greedy (argmax, lowest id on ties).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1.0: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0.0: none).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recent tokens by this (1.0: off).
    pub repeat_penalty: f32,
    /// Subtract this from the logits of tokens that appeared (0.0: off).
    pub presence_penalty: f32,
    /// Subtract this times the count of each token that appeared (0.0: off).
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    /// Added to the logits of the given ids (ids outside the vocabulary are ignored;
    /// `f32::NEG_INFINITY` bans a token).
    pub logit_bias: Vec<(u32, f32)>,
    /// Seed of the random generator.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> SamplerConfig {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            logit_bias: Vec::new(),
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Checks every value against the one set of rules all front ends share (the CLI, the
    /// OpenAI and the Ollama routes map their field names onto these): temperature in
    /// `[0, 2]`, `top_p` and `min_p` in `[0, 1]`, `repeat_penalty` in `(0, 10]`, the presence
    /// and frequency penalties in `[-2, 2]`, `top_k` and `penalty_last_n` at most 2^20, logit
    /// biases finite or minus infinity (a ban). NaN is never accepted.
    pub fn validate(&self) -> Result<(), SamplerError> {
        let ranges = [
            (SamplerParam::Temperature, self.temperature, 0.0, 2.0),
            (SamplerParam::TopP, self.top_p, 0.0, 1.0),
            (SamplerParam::MinP, self.min_p, 0.0, 1.0),
            (SamplerParam::RepeatPenalty, self.repeat_penalty, 0.0, 10.0),
            (
                SamplerParam::PresencePenalty,
                self.presence_penalty,
                -2.0,
                2.0,
            ),
            (
                SamplerParam::FrequencyPenalty,
                self.frequency_penalty,
                -2.0,
                2.0,
            ),
        ];
        for (param, v, lo, hi) in ranges {
            let open_low = param == SamplerParam::RepeatPenalty;
            let ok = v.is_finite() && v <= hi && if open_low { v > lo } else { v >= lo };
            if !ok {
                return Err(SamplerError {
                    param,
                    value: v.to_string(),
                    expected: param.expected(),
                });
            }
        }
        for (param, v) in [
            (SamplerParam::TopK, self.top_k),
            (SamplerParam::PenaltyLastN, self.penalty_last_n),
        ] {
            if v > MAX_SAMPLER_COUNT {
                return Err(SamplerError {
                    param,
                    value: v.to_string(),
                    expected: param.expected(),
                });
            }
        }
        if let Some(&(id, b)) = self
            .logit_bias
            .iter()
            .find(|(_, b)| b.is_nan() || *b == f32::INFINITY)
        {
            return Err(SamplerError {
                param: SamplerParam::LogitBias,
                value: format!("{b} for token {id}"),
                expected: SamplerParam::LogitBias.expected(),
            });
        }
        Ok(())
    }

    /// Whether this configuration always picks the argmax.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Whether any penalty changes the logits of recent tokens.
    pub fn penalizes(&self) -> bool {
        let active = self.repeat_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0;
        active && self.penalty_last_n > 0
    }
}

/// The index of the largest value, the lowest index on ties (NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    // The largest value first (vectorized; NaN is never taken, as in a one-by-one scan), then
    // its first position.
    let best_v = realizar_quant::vecops::max_f32(logits);
    if best_v == f32::NEG_INFINITY {
        return 0;
    }
    logits.iter().position(|&v| v == best_v).unwrap_or(0) as u32
}

/// A sampler with its random state and preallocated candidate buffers.
#[derive(Clone, Debug)]
pub struct Sampler {
    config: SamplerConfig,
    rng: Rng,
    cand: Vec<(u32, f32)>,
    counts: Vec<(u32, u32)>,
}

impl Sampler {
    /// A sampler for a vocabulary of `n_vocab` tokens.
    pub fn new(config: SamplerConfig, n_vocab: usize) -> Sampler {
        Sampler {
            rng: Rng::new(config.seed),
            config,
            cand: Vec::with_capacity(n_vocab),
            counts: Vec::with_capacity(64),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// The token [`Sampler::sample`] would pick when picking it needs no change to the logits
    /// (greedy, no bias, no penalty): the argmax, without copying them. `None` otherwise.
    pub fn pick_unchanged(&self, logits: &[f32]) -> Option<u32> {
        let c = &self.config;
        let plain = c.is_greedy() && c.logit_bias.is_empty() && !c.penalizes();
        plain.then(|| argmax(logits))
    }

    /// Applies logit bias and penalties (over the last tokens of `history`) to `logits` in place.
    pub fn apply_penalties(&mut self, logits: &mut [f32], history: &[u32]) {
        let c = &self.config;
        for &(id, bias) in &c.logit_bias {
            if let Some(l) = logits.get_mut(id as usize) {
                *l += bias;
            }
        }
        if !c.penalizes() {
            return;
        }
        let recent = &history[history.len().saturating_sub(c.penalty_last_n)..];
        self.counts.clear();
        for &t in recent {
            match self.counts.iter_mut().find(|(id, _)| *id == t) {
                Some((_, n)) => *n += 1,
                None => self.counts.push((t, 1)),
            }
        }
        for &(id, n) in &self.counts {
            let Some(l) = logits.get_mut(id as usize) else {
                continue;
            };
            if *l > 0.0 {
                *l /= c.repeat_penalty;
            } else {
                *l *= c.repeat_penalty;
            }
            *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
        }
    }

    /// Picks the next token from `logits` (modified in place by bias and penalties) given the
    /// tokens so far.
    pub fn sample(&mut self, logits: &mut [f32], history: &[u32]) -> u32 {
        self.apply_penalties(logits, history);
        if self.config.is_greedy() {
            return argmax(logits);
        }
        let (top_k, top_p, min_p, temperature) = (
            self.config.top_k,
            self.config.top_p,
            self.config.min_p,
            self.config.temperature,
        );
        self.cand.clear();
        self.cand.extend(
            logits
                .iter()
                .enumerate()
                .filter(|(_, l)| !l.is_nan() && **l != f32::NEG_INFINITY)
                .map(|(i, &l)| (i as u32, l)),
        );
        if self.cand.is_empty() {
            return argmax(logits);
        }
        // Sort by logit, descending; ties by id, ascending.
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if top_k > 0 && top_k < self.cand.len() {
            self.cand.select_nth_unstable_by(top_k - 1, order);
            self.cand.truncate(top_k);
        }
        self.cand.sort_unstable_by(order);
        // Probabilities at temperature 1 for top-p and min-p (llama.cpp applies them before the
        // temperature).
        let max = self.cand[0].1;
        let mut probs_sum = 0.0f64;
        for (_, l) in &self.cand {
            probs_sum += f64::from(*l - max).exp();
        }
        if top_p < 1.0 {
            let mut cum = 0.0f64;
            let mut keep = self.cand.len();
            for (i, (_, l)) in self.cand.iter().enumerate() {
                cum += f64::from(*l - max).exp() / probs_sum;
                if cum >= f64::from(top_p) {
                    keep = i + 1;
                    break;
                }
            }
            self.cand.truncate(keep.max(1));
        }
        if min_p > 0.0 {
            // p_i / p_max >= min_p  <=>  l_i - l_max >= ln(min_p)
            let cut = f64::from(min_p).ln();
            let keep = self
                .cand
                .iter()
                .take_while(|(_, l)| f64::from(*l - max) >= cut)
                .count();
            self.cand.truncate(keep.max(1));
        }
        let t = f64::from(temperature);
        let mut sum = 0.0f64;
        for (_, l) in &self.cand {
            sum += (f64::from(*l - max) / t).exp();
        }
        let mut r = self.rng.next_f64() * sum;
        for &(id, l) in &self.cand {
            r -= (f64::from(l - max) / t).exp();
            if r < 0.0 {
                return id;
            }
        }
        self.cand.last().map_or(0, |c| c.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(cfg: SamplerConfig) -> Sampler {
        Sampler::new(cfg, 8)
    }

    /// The copy-free pick is exactly `sample` where it applies, and declines where `sample`
    /// would change the logits.
    #[test]
    fn pick_unchanged_is_sample_when_nothing_changes_the_logits() {
        let logits = [0.5f32, 2.0, -1.0, 2.0, 1.5, 0.0, 3.5, 3.5];
        let history = [6u32, 6, 1];
        let greedy = sampler(SamplerConfig::default());
        let mut copy = logits;
        let want = sampler(SamplerConfig::default()).sample(&mut copy, &history);
        assert_eq!(greedy.pick_unchanged(&logits), Some(want));
        assert_eq!(want, 6);
        let changing = [
            SamplerConfig {
                temperature: 0.7,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                repeat_penalty: 1.3,
                ..SamplerConfig::default()
            },
            SamplerConfig {
                logit_bias: vec![(1, 5.0)],
                ..SamplerConfig::default()
            },
        ];
        for cfg in changing {
            assert_eq!(
                sampler(cfg.clone()).pick_unchanged(&logits),
                None,
                "{cfg:?}"
            );
        }
    }

    #[test]
    fn rng_is_reproducible_and_uniform() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..5).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
        let mut r = Rng::new(7);
        let mean = (0..10_000).map(|_| r.next_f64()).sum::<f64>() / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }

    #[test]
    fn greedy_takes_lowest_id_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
        assert_eq!(argmax(&[f32::NAN, -1.0]), 1);
        assert_eq!(argmax(&[f32::NEG_INFINITY, f32::NAN]), 0);
        assert_eq!(argmax(&[]), 0);
        // Against a one-by-one scan on long rows (ties, NaN, signed zeros, all lane offsets).
        let scan = |l: &[f32]| {
            let (mut best, mut best_v) = (0usize, f32::NEG_INFINITY);
            for (i, &v) in l.iter().enumerate() {
                if v > best_v {
                    (best, best_v) = (i, v);
                }
            }
            best as u32
        };
        let mut rng = Rng::new(9);
        for n in [1usize, 15, 16, 17, 100, 49_152] {
            for _ in 0..8 {
                let l: Vec<f32> = (0..n)
                    .map(|_| match rng.next_u64() % 40 {
                        0 => f32::NAN,
                        1 => -0.0,
                        2 => 0.0,
                        k => (k % 7) as f32 - 3.0,
                    })
                    .collect();
                assert_eq!(argmax(&l), scan(&l), "n={n}");
            }
        }
        let mut s = sampler(SamplerConfig::default());
        assert_eq!(s.sample(&mut [0.0, 5.0, 5.0, 1.0], &[]), 1);
    }

    #[test]
    fn top_k_one_is_greedy() {
        let mut s = sampler(SamplerConfig {
            temperature: 1.5,
            top_k: 1,
            seed: 3,
            ..SamplerConfig::default()
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [0.1, 0.5, 2.0, 1.9], &[]), 2);
        }
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // Probabilities ~ [0.665, 0.245, 0.090]: top_p 0.6 keeps only the first.
        let mut s = sampler(SamplerConfig {
            temperature: 1.0,
            top_p: 0.6,
            seed: 9,
            ..SamplerConfig::default()
        });
        for _ in 0..20 {
            assert_eq!(s.sample(&mut [2.0, 1.0, 0.0], &[]), 0);
        }
        // 0.8 keeps two.
        let mut s = sampler(SamplerConfig {
            temperature: 1.0,
            top_p: 0.8,
            seed: 9,
            ..SamplerConfig::default()
        });
        let picks: Vec<u32> = (0..200)
            .map(|_| s.sample(&mut [2.0, 1.0, 0.0], &[]))
            .collect();
        assert!(picks.contains(&1) && !picks.contains(&2));
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        let mut s = sampler(SamplerConfig {
            temperature: 1.0,
            min_p: 0.2,
            seed: 5,
            ..SamplerConfig::default()
        });
        // exp(-2) = 0.135 < 0.2 of the best: token 2 never comes.
        let picks: Vec<u32> = (0..300)
            .map(|_| s.sample(&mut [1.0, 0.5, -1.0], &[]))
            .collect();
        assert!(picks.contains(&0) && picks.contains(&1) && !picks.contains(&2));
    }

    #[test]
    fn temperature_sharpens_and_seed_reproduces() {
        let run = |seed, t| {
            let mut s = sampler(SamplerConfig {
                temperature: t,
                seed,
                ..SamplerConfig::default()
            });
            (0..100)
                .map(|_| s.sample(&mut [1.0, 0.8, 0.6, 0.0], &[]))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(11, 1.0), run(11, 1.0));
        assert_ne!(run(11, 1.0), run(12, 1.0));
        let cold = run(11, 0.05).iter().filter(|&&x| x == 0).count();
        let hot = run(11, 5.0).iter().filter(|&&x| x == 0).count();
        assert!(cold > 95 && hot < 60, "cold {cold} hot {hot}");
    }

    #[test]
    fn penalties_follow_llama_cpp() {
        let mut s = sampler(SamplerConfig {
            repeat_penalty: 2.0,
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            ..SamplerConfig::default()
        });
        let mut l = [4.0, -4.0, 1.0];
        s.apply_penalties(&mut l, &[0, 1, 1]);
        assert_eq!(l, [4.0 / 2.0 - 0.25 - 0.5, -8.0 - 0.5 - 0.5, 1.0]);
        // Greedy with a repeat penalty moves away from the repeated token.
        let mut s = sampler(SamplerConfig {
            repeat_penalty: 3.0,
            ..SamplerConfig::default()
        });
        assert_eq!(s.sample(&mut [3.0, 2.0], &[0]), 1);
    }

    #[test]
    fn penalty_window_is_bounded() {
        let mut s = sampler(SamplerConfig {
            presence_penalty: 1.0,
            penalty_last_n: 1,
            ..SamplerConfig::default()
        });
        let mut l = [0.0, 0.0];
        s.apply_penalties(&mut l, &[0, 1]);
        assert_eq!(l, [0.0, -1.0]);
    }

    #[test]
    fn logit_bias_bans_and_boosts() {
        let mut s = sampler(SamplerConfig {
            logit_bias: vec![(0, f32::NEG_INFINITY), (2, 10.0), (99, 1.0)],
            ..SamplerConfig::default()
        });
        assert_eq!(s.sample(&mut [5.0, 4.0, 0.0], &[]), 2);
        let mut s = sampler(SamplerConfig {
            temperature: 1.0,
            logit_bias: vec![(0, f32::NEG_INFINITY)],
            seed: 1,
            ..SamplerConfig::default()
        });
        for _ in 0..50 {
            assert_ne!(s.sample(&mut [5.0, 0.0, 0.0], &[]), 0);
        }
    }

    #[test]
    fn validate_rejects_bad_values() {
        let bad = |c: SamplerConfig| c.validate().is_err();
        assert!(bad(SamplerConfig {
            top_p: 1.5,
            ..SamplerConfig::default()
        }));
        assert!(bad(SamplerConfig {
            temperature: f32::NAN,
            ..SamplerConfig::default()
        }));
        assert!(bad(SamplerConfig {
            repeat_penalty: 0.0,
            ..SamplerConfig::default()
        }));
        assert!(SamplerConfig::default().validate().is_ok());
        let param = |c: SamplerConfig| c.validate().map_err(|e| e.param);
        assert_eq!(
            param(SamplerConfig {
                temperature: 2.5,
                ..SamplerConfig::default()
            }),
            Err(SamplerParam::Temperature)
        );
        assert_eq!(
            param(SamplerConfig {
                presence_penalty: -2.5,
                ..SamplerConfig::default()
            }),
            Err(SamplerParam::PresencePenalty)
        );
        assert_eq!(
            param(SamplerConfig {
                top_k: MAX_SAMPLER_COUNT + 1,
                ..SamplerConfig::default()
            }),
            Err(SamplerParam::TopK)
        );
        assert_eq!(
            param(SamplerConfig {
                logit_bias: vec![(3, f32::NAN)],
                ..SamplerConfig::default()
            }),
            Err(SamplerParam::LogitBias)
        );
        assert_eq!(
            param(SamplerConfig {
                logit_bias: vec![(3, f32::NEG_INFINITY)],
                repeat_penalty: 10.0,
                temperature: 2.0,
                ..SamplerConfig::default()
            }),
            Ok(())
        );
    }
}
