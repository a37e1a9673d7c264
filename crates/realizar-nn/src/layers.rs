//! Generic layers on f32 activations: norms, activations, softmax and rotary embeddings.
//!
//! The arithmetic follows ggml's CPU kernels (ggml/src/ggml-cpu/ops.cpp and vec.h of llama.cpp)
//! where their numerics matter for agreeing with llama.cpp: sums of squares and softmax
//! denominators accumulate in f64, RoPE angles are built by repeated multiplication.

use half::f16;
use rayon::prelude::*;

/// `out = x / rms(x) * w`, with the mean of squares accumulated in f64 (`ggml_rms_norm`).
///
/// `x`, `w` and `out` must have the same length; extra elements of the longer ones are ignored.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let scale = rms_scale(x, eps);
    for ((o, &xi), &wi) in out.iter_mut().zip(x).zip(w) {
        *o = xi * scale * wi;
    }
}

/// [`rms_norm`] in place.
pub fn rms_norm_inplace(x: &mut [f32], w: &[f32], eps: f32) {
    let scale = rms_scale(x, eps);
    for (xi, &wi) in x.iter_mut().zip(w) {
        *xi = *xi * scale * wi;
    }
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    let sum: f64 = x.iter().map(|&v| f64::from(v * v)).sum();
    let mean = (sum / x.len() as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

/// The mean of `x` and `1 / sqrt(var + eps)` (biased variance), in f64: LayerNorm's statistics.
pub fn norm_stats(x: &[f32], eps: f64) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x
        .iter()
        .map(|&v| {
            let d = f64::from(v) - mean;
            d * d
        })
        .sum::<f64>()
        / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// `out = (x - mean) / sqrt(var + eps) * w + b` (`ggml_norm` followed by scale and shift).
pub fn layer_norm(x: &[f32], w: &[f32], b: Option<&[f32]>, eps: f32, out: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let (mean, inv) = norm_stats(x, f64::from(eps));
    for (i, (o, &xi)) in out.iter_mut().zip(x).enumerate() {
        let wi = w.get(i).copied().unwrap_or(1.0);
        let bi = b.and_then(|b| b.get(i)).copied().unwrap_or(0.0);
        *o = ((f64::from(xi) - mean) * inv) as f32 * wi + bi;
    }
}

/// Numerically stable softmax in place: subtract the maximum, exponentiate, divide by the sum
/// (accumulated in f64). Entries of `-inf` become 0; an all `-inf` row becomes all 0.
pub fn softmax_inplace(x: &mut [f32]) {
    use crate::backend::AttnKernels;
    crate::backend::SimdKernels::softmax_plain(x)
}

pub use realizar_quant::vecops::{expf_ggml, reduce_add16, silu};

/// Softmax of one attention row as ggml's `soft_max_ext` computes it on llama.cpp's x86 build
/// (ops.cpp `ggml_compute_forward_soft_max_f32`, vec.cpp `ggml_vec_soft_max_f32`): the row is
/// the key positions `lo..lo + x.len()` of a cache whose other positions are masked; each
/// 16-position group aligned at position 0 is exponentiated with [`expf_ggml`], reduced with
/// [`reduce_add16`] and added to an f64 sum; the row is then multiplied by `(f32)(1 / sum)`.
/// An all `-inf` row becomes all 0.
pub fn softmax_ggml(x: &mut [f32], lo: usize) {
    use crate::backend::AttnKernels;
    crate::backend::SimdKernels::softmax_ggml(x, lo)
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_COEF_A: f32 = 0.044_715;

/// GELU, tanh approximation: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)).tanh())
}

/// GELU as ggml's CPU backend computes it (`ggml_vec_gelu_f32` with `GGML_GELU_FP16`): the tanh
/// form looked up from a table indexed by the f16 rounding of `x`, its result rounded to f16;
/// identity above 10 and zero below -10. Used where agreement with llama.cpp matters.
#[inline]
pub fn gelu_tanh_ggml(x: f32) -> f32 {
    realizar_quant::vecops::f16_table_clamped_one(x, gelu_table())
}

/// [`gelu_tanh_ggml`] over a slice (vectorised: the table lookup is a gather).
pub fn gelu_tanh_ggml_slice(x: &mut [f32]) {
    realizar_quant::vecops::f16_table_clamped(x, gelu_table())
}

/// ggml's GELU table, built on first use.
fn gelu_table() -> &'static [f32] {
    GELU_TABLE.get_or_init(|| (0..=u16::MAX).map(gelu_table_entry).collect())
}

/// ggml's `ggml_table_gelu_f16`, built once: one entry per f16 bit pattern.
static GELU_TABLE: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();

/// The table entry for the f16 value `bits`: ggml_gelu_f32 of it, as GCC contracts it with FMA
/// (`1 + a x x` becomes `fma(a x, x, 1)`), rounded to f16.
fn gelu_table_entry(bits: u16) -> f32 {
    let xh = f16::from_bits(bits).to_f32();
    let inner = (GELU_COEF_A * xh).mul_add(xh, 1.0);
    let g = 0.5 * xh * (1.0 + (SQRT_2_OVER_PI * xh * inner).tanh());
    f16::from_f32(g).to_f32()
}

/// How RoPE pairs the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// Rotate adjacent pairs `(2i, 2i+1)` (llama.cpp `LLAMA_ROPE_TYPE_NORM`).
    Normal,
    /// Rotate `(i, i + n/2)` (GPT-NeoX; llama.cpp `LLAMA_ROPE_TYPE_NEOX`).
    Neox,
}

/// Rotary position embedding parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    /// Number of rotated dimensions of each head (the rest pass through).
    pub n_dims: usize,
    /// Pairing layout.
    pub layout: RopeLayout,
    /// Frequency base (theta).
    pub freq_base: f32,
    /// Linear position scaling (1 / scaling factor; 1.0 for none).
    pub freq_scale: f32,
    /// Optional per-frequency divisors (`rope_freqs.weight`), `n_dims / 2` entries.
    pub freq_factors: Option<Vec<f32>>,
    /// Magnitude factor of the rotation (ggml's `attn_factor`, `mscale`: cos and sin are
    /// multiplied by it; `rope.scaling.attn_factor`, 1.0 without).
    pub attn_factor: f32,
    /// YaRN: frequencies between the correction dimensions mix interpolation and
    /// extrapolation (`None`: plain linear scaling).
    pub yarn: Option<Yarn>,
}

/// YaRN's parameters as ggml's rope takes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Yarn {
    /// How much of the extrapolated angle the ramp mixes in (llama.cpp's `yarn_ext_factor`,
    /// 1.0 for a YaRN model).
    pub ext_factor: f32,
    /// The context length the model was trained at (`rope.scaling.original_context_length`).
    pub n_ctx_orig: usize,
    /// The ramp's bounds in rotations over that context (32 and 1 unless the file says).
    pub beta_fast: f32,
    /// See `beta_fast`.
    pub beta_slow: f32,
}

impl Yarn {
    /// The dimensions where the ramp starts and ends for `n_dims` rotated dimensions of base
    /// `freq_base`, as `ggml_rope_yarn_corr_dims` computes them.
    pub fn corr_dims(&self, n_dims: usize, freq_base: f32) -> [f32; 2] {
        let dim = |n_rot: f32| {
            n_dims as f32 * (self.n_ctx_orig as f32 / (n_rot * 2.0 * core::f32::consts::PI)).ln()
                / (2.0 * freq_base.ln())
        };
        let start = dim(self.beta_fast).floor();
        let end = dim(self.beta_slow).ceil();
        [start.max(0.0), end.min(n_dims as f32 - 1.0)]
    }
}

/// `rope_yarn_ramp`: 1 below the first correction dimension, 0 past the second.
fn yarn_ramp([low, high]: [f32; 2], i0: usize) -> f32 {
    let y = ((i0 / 2) as f32 - low) / (high - low).max(0.001);
    1.0 - y.clamp(0.0, 1.0)
}

impl Rope {
    /// Fills `cache` (length `n_dims`, as `[cos0, sin0, cos1, sin1, ..]`) with the angles of
    /// position `pos`, as `ggml_rope_cache_init` builds them.
    pub fn fill_cache(&self, pos: usize, cache: &mut [f32]) {
        let theta_scale = self.freq_base.powf(-2.0 / self.n_dims as f32);
        let corr = self.yarn.map(|y| y.corr_dims(self.n_dims, self.freq_base));
        let mut theta = pos as f32;
        for (i, pair) in cache.chunks_exact_mut(2).take(self.n_dims / 2).enumerate() {
            let ff = self
                .freq_factors
                .as_ref()
                .and_then(|f| f.get(i))
                .copied()
                .unwrap_or(1.0);
            let extrap = theta / ff;
            let interp = self.freq_scale * extrap;
            // `rope_yarn` as GCC contracts it with FMA.
            let (t, mscale) = match (&self.yarn, corr) {
                (Some(y), Some(corr)) if y.ext_factor != 0.0 => {
                    let mix = yarn_ramp(corr, 2 * i) * y.ext_factor;
                    let t = interp.mul_add(1.0 - mix, extrap * mix);
                    let m = (1.0 / self.freq_scale).ln().mul_add(0.1, 1.0);
                    (t, self.attn_factor * m)
                }
                _ => (interp, self.attn_factor),
            };
            pair[0] = t.cos() * mscale;
            pair[1] = t.sin() * mscale;
            theta *= theta_scale;
        }
    }

    /// Rotates one head `x` (length ≥ `n_dims`) with a cache from [`Rope::fill_cache`]: ggml's
    /// `rotate_pairs` (ops.cpp) as GCC contracts it with FMA, `x0 c - x1 s` as
    /// `fma(x0, c, -(x1 s))` and `x0 s + x1 c` as `fma(x0, s, x1 c)`.
    pub fn apply(&self, x: &mut [f32], cache: &[f32]) {
        let neox = self.layout == RopeLayout::Neox;
        realizar_quant::vecops::rope_rotate(x, cache, self.n_dims, neox);
    }
}

/// Rounds through f16 (what ggml does to an f32 operand of an f16 matrix product).
#[inline]
pub fn round_f16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

/// LayerNorm over each row of width `w` in place, statistics and the affine step in f64
/// (biased variance, as PyTorch's BERT does); rows over the current pool's threads.
pub fn layer_norm_rows(x: &mut [f32], w: usize, weight: &[f32], bias: &[f32], eps: f64) {
    x.par_chunks_exact_mut(w).for_each(|r| {
        let (mean, inv) = norm_stats(r, eps);
        for ((v, &g), &b) in r.iter_mut().zip(weight).zip(bias) {
            *v = ((f64::from(*v) - mean) * inv * f64::from(g) + f64::from(b)) as f32;
        }
    });
}

/// The exact GELU, `x Φ(x) = x (1 + erf(x / √2)) / 2`, evaluated in f64.
pub fn gelu_erf(x: f32) -> f32 {
    let x = f64::from(x);
    (0.5 * x * (1.0 + erf(x * std::f64::consts::FRAC_1_SQRT_2))) as f32
}

/// Spacing of the [`erf`] table's expansion points.
const ERF_STEP: f64 = 1.0 / 8.0;
/// Expansion points `0, 1/8, …, 6`; beyond 6, erf is 1 to within 2e-17.
const ERF_POINTS: usize = 49;
/// Taylor coefficients kept per point (the remainder is below 1e-20 for `|h| ≤ 1/16`).
const ERF_TERMS: usize = 12;

/// Taylor coefficients of erf at each table point `x0`: `erf(x0 + h) = Σ_m c[m] h^m`, with
/// `c[0] = erf(x0)` and, for `m ≥ 1`, `c[m] = (2/√π) e^{-x0²} (-1)^{m-1} H_{m-1}(x0) / m!`
/// (the derivatives of `e^{-x²}` are `(-1)^n H_n(x) e^{-x²}`, `H_n` the physicists' Hermite
/// polynomials: `H_0 = 1`, `H_1 = 2x`, `H_{n+1} = 2x H_n - 2n H_{n-1}`).
fn erf_table() -> &'static [[f64; ERF_TERMS]; ERF_POINTS] {
    static TABLE: std::sync::OnceLock<[[f64; ERF_TERMS]; ERF_POINTS]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [[0.0; ERF_TERMS]; ERF_POINTS];
        for (j, c) in table.iter_mut().enumerate() {
            let x0 = j as f64 * ERF_STEP;
            c[0] = erf_slow(x0);
            let scale = std::f64::consts::FRAC_2_SQRT_PI * (-x0 * x0).exp();
            let (mut h_prev, mut h) = (0.0, 1.0); // H_{n-1}, H_n for n = 0
            let mut factorial = 1.0;
            let mut sign = 1.0;
            for (m, cm) in c.iter_mut().enumerate().skip(1) {
                factorial *= m as f64;
                *cm = scale * sign * h / factorial;
                let n = (m - 1) as f64;
                let next = 2.0 * x0 * h - 2.0 * n * h_prev;
                (h_prev, h) = (h, next);
                sign = -sign;
            }
        }
        table
    })
}

/// The error function to within about 1e-16, in f64: a 12-term Taylor expansion around the
/// nearest multiple of 1/8 (coefficients from a slow series and Hermite polynomials, computed
/// once), exact odd symmetry, and 1 beyond 6.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let value = if a < (ERF_POINTS - 1) as f64 * ERF_STEP {
        let j = (a / ERF_STEP).round() as usize;
        let h = a - j as f64 * ERF_STEP;
        match erf_table().get(j) {
            Some(c) => c.iter().rev().fold(0.0, |acc, &cm| acc * h + cm),
            None => erf_slow(a),
        }
    } else {
        1.0
    };
    if x < 0.0 {
        -value
    } else {
        value
    }
}

/// The error function to about 1e-15, in f64, slowly (used to build the table of [`erf`]).
///
/// For `|x| < 3` the series `erf x = (2/√π) e^{-x²} Σ_n (2x²)^n x / (1·3·…·(2n+1))` (all terms
/// positive, so no cancellation); beyond, the continued fraction
/// `erfc x = e^{-x²}/√π · 1/(x + ½/(x + 1/(x + (3/2)/(x + …))))`, evaluated bottom-up
/// (Abramowitz & Stegun 7.1.6 and 7.1.14).
pub(crate) fn erf_slow(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let value = if a < 3.0 {
        let two_x2 = 2.0 * a * a;
        let mut term = a;
        let mut sum = a;
        let mut n = 0u32;
        while n < 200 {
            n += 1;
            term *= two_x2 / f64::from(2 * n + 1);
            sum += term;
            if term < sum * 1e-17 {
                break;
            }
        }
        std::f64::consts::FRAC_2_SQRT_PI * (-a * a).exp() * sum
    } else if a < 6.5 {
        let mut tail = a;
        for k in (1..=60u32).rev() {
            tail = a + f64::from(k) * 0.5 / tail;
        }
        let erfc = (-a * a).exp() / (std::f64::consts::PI.sqrt() * tail);
        1.0 - erfc
    } else {
        1.0
    };
    if x < 0.0 {
        -value
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn rms_norm_unit_rms() {
        let x = [1.0, -2.0, 3.0, -4.0];
        let w = [1.0; 4];
        let mut out = [0.0; 4];
        rms_norm(&x, &w, 0.0, &mut out);
        let rms = (out.iter().map(|v| v * v).sum::<f32>() / 4.0).sqrt();
        assert!(close(rms, 1.0, 1e-6));
        let expected = 1.0 / (30.0f32 / 4.0).sqrt();
        assert!(close(out[0], expected, 1e-6));
        let mut y = x;
        rms_norm_inplace(&mut y, &[2.0; 4], 0.0);
        assert!(close(y[1], -4.0 * expected, 1e-6));
    }

    #[test]
    fn layer_norm_zero_mean_unit_var() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let mut out = [0.0; 4];
        layer_norm(&x, &[1.0; 4], Some(&[0.5; 4]), 0.0, &mut out);
        let mean: f32 = out.iter().sum::<f32>() / 4.0;
        assert!(close(mean, 0.5, 1e-6));
        assert!(close(out[0], -1.341_640_8 + 0.5, 1e-5));
    }

    #[test]
    fn softmax_sums_to_one_and_is_stable() {
        let mut x = [1000.0, 1001.0, f32::NEG_INFINITY, 999.0];
        softmax_inplace(&mut x);
        assert!(close(x.iter().sum(), 1.0, 1e-6));
        assert_eq!(x[2], 0.0);
        assert!(x[1] > x[0] && x[0] > x[3]);
        let mut all_masked = [f32::NEG_INFINITY; 3];
        softmax_inplace(&mut all_masked);
        assert_eq!(all_masked, [0.0; 3]);
    }

    #[test]
    fn activations_match_known_values() {
        assert!(close(silu(1.0), 0.731_058_6, 1e-6));
        assert!(close(gelu_tanh(1.0), 0.841_191_9, 1e-6));
        assert!(close(gelu_erf(1.0), 0.841_344_7, 1e-6));
        assert!(close(gelu_erf(-3.0), -0.004_049_7, 1e-6));
        assert!(close(gelu_tanh_ggml(1.0), 0.841_191_9, 1e-3));
        assert_eq!(gelu_tanh_ggml(12.0), 12.0);
        assert_eq!(gelu_tanh_ggml(-12.0), 0.0);
    }

    #[test]
    fn expf_ggml_is_within_two_ulp_of_exp_and_saturates() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (got, want) = (expf_ggml(x), f64::from(x).exp());
            let ulp = f64::from(f32::EPSILON) * want;
            assert!(
                (f64::from(got) - want).abs() <= 2.0 * ulp,
                "exp({x}) = {got}, not {want}"
            );
            x += 0.173;
        }
        assert_eq!(expf_ggml(0.0), 1.0);
        assert_eq!(expf_ggml(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf_ggml(-200.0), 0.0);
        assert_eq!(expf_ggml(200.0), f32::INFINITY);
        // Subnormal results are rounded once, not flushed.
        assert!(expf_ggml(-100.0) > 0.0 && expf_ggml(-100.0) < f32::MIN_POSITIVE);
        assert!(silu(-200.0) == 0.0 && silu(200.0) == 200.0);
    }

    #[test]
    fn reduce_add16_follows_the_halving_tree() {
        // 1e8 + 1 + ... is order-sensitive in f32: the tree pairs lane i with lane i + 8 first.
        let mut v = [0f32; 16];
        v[0] = 1e8;
        v[8] = -1e8;
        v[1] = 1.0;
        assert_eq!(reduce_add16(&v), 1.0);
        let v: [f32; 16] = core::array::from_fn(|i| i as f32);
        assert_eq!(reduce_add16(&v), 120.0);
    }

    #[test]
    fn softmax_ggml_groups_by_absolute_position() {
        let x: Vec<f32> = (0..40).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        let mut a = x.clone();
        softmax_ggml(&mut a, 0);
        assert!(close(a.iter().sum(), 1.0, 1e-6));
        let mut b = x.clone();
        softmax_inplace(&mut b);
        for (p, q) in a.iter().zip(&b) {
            assert!(close(*p, *q, 1e-6));
        }
        // The same row at another offset is grouped differently but is still a distribution.
        let mut c = x.clone();
        softmax_ggml(&mut c, 7);
        assert!(close(c.iter().sum(), 1.0, 1e-6));
        let mut masked = [f32::NEG_INFINITY; 3];
        softmax_ggml(&mut masked, 5);
        assert_eq!(masked, [0.0; 3]);
    }

    #[test]
    fn erf_matches_table() {
        for (x, e) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.5, 0.999_593_047_982_555),
            (-1.5, -0.966_105_146_475_310_7),
        ] {
            assert!((erf(x) - e).abs() < 1e-12, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn rope_rotates_pairs_by_position_angle() {
        let rope = Rope {
            n_dims: 4,
            layout: RopeLayout::Normal,
            freq_base: 10000.0,
            freq_scale: 1.0,
            freq_factors: None,
            attn_factor: 1.0,
            yarn: None,
        };
        let mut cache = [0.0; 4];
        rope.fill_cache(3, &mut cache);
        let mut x = [1.0, 0.0, 1.0, 0.0];
        rope.apply(&mut x, &cache);
        assert!(close(x[0], 3.0f32.cos(), 1e-6) && close(x[1], 3.0f32.sin(), 1e-6));
        let t = 3.0 * 10000f32.powf(-0.5);
        assert!(close(x[2], t.cos(), 1e-6) && close(x[3], t.sin(), 1e-6));

        let neox = Rope {
            layout: RopeLayout::Neox,
            ..rope
        };
        let mut y = [1.0, 1.0, 0.0, 0.0];
        neox.apply(&mut y, &cache);
        assert!(close(y[0], 3.0f32.cos(), 1e-6) && close(y[2], 3.0f32.sin(), 1e-6));
        assert!(close(y[1], t.cos(), 1e-6) && close(y[3], t.sin(), 1e-6));
        // Position 0 is the identity.
        neox.fill_cache(0, &mut cache);
        let mut z = [0.3, -0.2, 0.1, 0.7];
        neox.apply(&mut z, &cache);
        assert_eq!(z, [0.3, -0.2, 0.1, 0.7]);
    }
}
