//! Run-time selection of the SIMD kernels. Each selector returns the best kernel this CPU
//! supports, or the scalar twin.

use crate::blocks::*;
use crate::{dot, quant};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod iq1_avx2;
#[cfg(target_arch = "x86_64")]
mod iq3_avx2;
#[cfg(target_arch = "x86_64")]
mod iq_avx2;
#[cfg(all(test, target_arch = "x86_64"))]
mod test_util;
#[cfg(target_arch = "x86_64")]
mod tile512;
#[cfg(target_arch = "x86_64")]
mod tq_avx2;

/// Which x86 features the kernels may use, detected once.
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static AVX2: OnceLock<bool> = OnceLock::new();
    *AVX2.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    })
}

/// Whether the AVX-512 VNNI (256-bit, with VL) kernels may run: AVX2 set plus VNNI, unless
/// the environment variable `REALIZAR_QUANT_NO_VNNI` is set (to compare the levels in
/// benchmarks).
#[cfg(target_arch = "x86_64")]
fn has_avx512_vnni() -> bool {
    use std::sync::OnceLock;
    static VNNI: OnceLock<bool> = OnceLock::new();
    *VNNI.get_or_init(|| {
        has_avx2()
            && std::env::var_os("REALIZAR_QUANT_NO_VNNI").is_none()
            && std::arch::is_x86_feature_detected!("avx512vnni")
            && std::arch::is_x86_feature_detected!("avx512vl")
    })
}

/// Whether the 512-bit kernels may run: the VNNI level plus AVX-512 F and BW, unless the
/// environment variable `REALIZAR_QUANT_NO_AVX512` is set (to compare the levels in benchmarks).
#[cfg(target_arch = "x86_64")]
fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static AVX512: OnceLock<bool> = OnceLock::new();
    *AVX512.get_or_init(|| {
        has_avx512_vnni()
            && std::env::var_os("REALIZAR_QUANT_NO_AVX512").is_none()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
    })
}

/// Whether the CPU has AVX-512 F, where ggml's x86 build repacks Q2_K matrices: it decides a
/// float order (the same for the scalar twin), not which kernel runs.
pub(crate) fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

macro_rules! select {
    ($(#[$doc:meta])* $name:ident, $w:ty, $a:ty, $scalar:path) => {
        $(#[$doc])*
        pub(crate) fn $name() -> fn(&[$w], &[$a]) -> f32 {
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx2() {
                    return avx2::$name;
                }
            }
            $scalar
        }
    };
}

select!(
    /// F32 · F32.
    f32s, f32, f32, dot::f32s
);
select!(
    /// F16 · F16.
    f16s, half::f16, half::f16, dot::f16s
);
select!(
    /// BF16 · BF16.
    bf16s, half::bf16, half::bf16, dot::bf16s
);
select!(
    /// Q4_1 · Q8_1.
    q4_1_q8_1, BlockQ4_1, BlockQ8_1, dot::q4_1_q8_1
);
select!(
    /// Q5_0 · Q8_0.
    q5_0_q8_0, BlockQ5_0, BlockQ8_0, dot::q5_0_q8_0
);
select!(
    /// Q8_0 · Q8_0.
    q8_0_q8_0, BlockQ8_0, BlockQ8_0, dot::q8_0_q8_0
);
select!(
    /// Q4_K · Q8_K.
    q4_k_q8_k, BlockQ4K, BlockQ8K, dot::q4_k_q8_k
);
select!(
    /// Q4_K · Q8_K in the order of ggml's x86 Q4_K gemm.
    q4_k_q8_k_grouped, BlockQ4K, BlockQ8K, dot::q4_k_q8_k_grouped
);
select!(
    /// Q2_K · Q8_K.
    q2_k_q8_k, BlockQ2K, BlockQ8K, dot::q2_k_q8_k
);
select!(
    /// Q2_K · Q8_K in the order of ggml's repacked gemv.
    q2_k_q8_k_repacked, BlockQ2K, BlockQ8K, dot::q2_k_q8_k_repacked
);
select!(
    /// Q2_K · Q8_K in the order of ggml's repacked gemm.
    q2_k_q8_k_repacked_grouped, BlockQ2K, BlockQ8K, dot::q2_k_q8_k_repacked_grouped
);
select!(
    /// Q2_K · Q8_K in the order of ggml's tiled K-quant matmul.
    q2_k_q8_k_tiled, BlockQ2K, BlockQ8K, dot::q2_k_q8_k_tiled
);
select!(
    /// Q3_K · Q8_K.
    q3_k_q8_k, BlockQ3K, BlockQ8K, dot::q3_k_q8_k
);
select!(
    /// Q3_K · Q8_K in the order of ggml's tiled K-quant matmul.
    q3_k_q8_k_tiled, BlockQ3K, BlockQ8K, dot::q3_k_q8_k_tiled
);
select!(
    /// Q6_K · Q8_K.
    q6_k_q8_k, BlockQ6K, BlockQ8K, dot::q6_k_q8_k
);
select!(
    /// Q6_K · Q8_K in the order of ggml's tiled K-quant matmul.
    q6_k_q8_k_tiled, BlockQ6K, BlockQ8K, dot::q6_k_q8_k_tiled
);

macro_rules! select_iq {
    ($(#[$doc:meta])* $name:ident, $quad:ident, $w:ty, $a:ty, $scalar:path) => {
        $(#[$doc])*
        pub(crate) fn $name() -> fn(&[$w], &[$a]) -> f32 {
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx2() {
                    return iq_avx2::$name;
                }
            }
            $scalar
        }

        $(#[$doc])*
        /// Four activation rows per pass.
        pub(crate) fn $quad() -> Option<QuadFn<$w, $a>> {
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx2() {
                    return Some(iq_avx2::$quad);
                }
            }
            None
        }
    };
}

select_iq!(
    /// IQ4_NL · Q8_0.
    iq4_nl_q8_0, iq4_nl_q8_0_x4, BlockIq4Nl, BlockQ8_0, dot::iq4_nl_q8_0
);
select_iq!(
    /// Q4_0 · Q8_0 (ggml's x86 repacked order).
    q4_0_q8_0, q4_0_q8_0_x4, BlockQ4_0, BlockQ8_0, dot::q4_0_q8_0
);
select_iq!(
    /// IQ4_XS · Q8_K.
    iq4_xs_q8_k, iq4_xs_q8_k_x4, BlockIq4Xs, BlockQ8K, dot::iq4_xs_q8_k
);
macro_rules! select_tq {
    ($(#[$doc:meta])* $name:ident, $quad:ident, $w:ty, $scalar:path) => {
        $(#[$doc])*
        pub(crate) fn $name() -> fn(&[$w], &[BlockQ8K]) -> f32 {
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx2() {
                    return tq_avx2::$name;
                }
            }
            $scalar
        }

        $(#[$doc])*
        /// Four activation rows per pass.
        pub(crate) fn $quad() -> Option<QuadFn<$w, BlockQ8K>> {
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx2() {
                    return Some(tq_avx2::$quad);
                }
            }
            None
        }
    };
}

macro_rules! select_iq3 {
    ($(#[$doc:meta])* $name:ident, $quad:ident, $w:ty, $scalar:path) => {
        $(#[$doc])*
        pub(crate) fn $name() -> fn(&[$w], &[BlockQ8K]) -> f32 {
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx2() {
                    return iq3_avx2::$name;
                }
            }
            $scalar
        }

        $(#[$doc])*
        /// Four activation rows per pass.
        pub(crate) fn $quad() -> Option<QuadFn<$w, BlockQ8K>> {
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx2() {
                    return Some(iq3_avx2::$quad);
                }
            }
            None
        }
    };
}

select_iq3!(
    /// IQ3_XXS · Q8_K.
    iq3_xxs_q8_k, iq3_xxs_q8_k_x4, BlockIq3Xxs, dot::iq3_xxs_q8_k
);
select_iq3!(
    /// IQ3_XXS · Q8_K in the order of ggml's tiled matmul.
    iq3_xxs_q8_k_tiled, iq3_xxs_q8_k_tiled_x4, BlockIq3Xxs, dot::iq3_xxs_q8_k_tiled
);
select_iq3!(
    /// IQ2_XXS · Q8_K.
    iq2_xxs_q8_k, iq2_xxs_q8_k_x4, BlockIq2Xxs, dot::iq2_xxs_q8_k
);
select_iq3!(
    /// IQ2_XXS · Q8_K in the order of ggml's tiled matmul.
    iq2_xxs_q8_k_tiled, iq2_xxs_q8_k_tiled_x4, BlockIq2Xxs, dot::iq2_xxs_q8_k_tiled
);
/// IQ1_S · Q8_K.
pub(crate) fn iq1_s_q8_k() -> fn(&[BlockIq1S], &[BlockQ8K]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return iq1_avx2::iq1_s_q8_k;
        }
    }
    dot::iq1_s_q8_k
}

/// IQ1_S · Q8_K, four activation rows per pass.
pub(crate) fn iq1_s_q8_k_x4() -> Option<QuadFn<BlockIq1S, BlockQ8K>> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return Some(iq1_avx2::iq1_s_q8_k_x4);
        }
    }
    None
}

/// IQ1_S · Q8_K in the order of ggml's tiled matmul.
pub(crate) fn iq1_s_q8_k_tiled() -> fn(&[BlockIq1S], &[BlockQ8K]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return iq1_avx2::iq1_s_q8_k_tiled;
        }
    }
    dot::iq1_s_q8_k_tiled
}

/// IQ1_S · Q8_K in the tiled order, four activation rows per pass.
pub(crate) fn iq1_s_q8_k_tiled_x4() -> Option<QuadFn<BlockIq1S, BlockQ8K>> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return Some(iq1_avx2::iq1_s_q8_k_tiled_x4);
        }
    }
    None
}

/// IQ1_M · Q8_K.
pub(crate) fn iq1_m_q8_k() -> fn(&[BlockIq1M], &[BlockQ8K]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return iq1_avx2::iq1_m_q8_k;
        }
    }
    dot::iq1_m_q8_k
}

/// IQ1_M · Q8_K, four activation rows per pass.
pub(crate) fn iq1_m_q8_k_x4() -> Option<QuadFn<BlockIq1M, BlockQ8K>> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return Some(iq1_avx2::iq1_m_q8_k_x4);
        }
    }
    None
}

/// IQ1_M · Q8_K in the order of ggml's tiled matmul.
pub(crate) fn iq1_m_q8_k_tiled() -> fn(&[BlockIq1M], &[BlockQ8K]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return iq1_avx2::iq1_m_q8_k_tiled;
        }
    }
    dot::iq1_m_q8_k_tiled
}

/// IQ1_M · Q8_K in the tiled order, four activation rows per pass.
pub(crate) fn iq1_m_q8_k_tiled_x4() -> Option<QuadFn<BlockIq1M, BlockQ8K>> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return Some(iq1_avx2::iq1_m_q8_k_tiled_x4);
        }
    }
    None
}

select_iq3!(
    /// IQ2_XS · Q8_K.
    iq2_xs_q8_k, iq2_xs_q8_k_x4, BlockIq2Xs, dot::iq2_xs_q8_k
);
select_iq3!(
    /// IQ2_XS · Q8_K in the order of ggml's tiled matmul.
    iq2_xs_q8_k_tiled, iq2_xs_q8_k_tiled_x4, BlockIq2Xs, dot::iq2_xs_q8_k_tiled
);
select_iq3!(
    /// IQ2_S · Q8_K.
    iq2_s_q8_k, iq2_s_q8_k_x4, BlockIq2S, dot::iq2_s_q8_k
);
select_iq3!(
    /// IQ2_S · Q8_K in the order of ggml's tiled matmul.
    iq2_s_q8_k_tiled, iq2_s_q8_k_tiled_x4, BlockIq2S, dot::iq2_s_q8_k_tiled
);
select_iq3!(
    /// IQ3_S · Q8_K.
    iq3_s_q8_k, iq3_s_q8_k_x4, BlockIq3S, dot::iq3_s_q8_k
);
select_iq3!(
    /// IQ3_S · Q8_K in the order of ggml's tiled matmul.
    iq3_s_q8_k_tiled, iq3_s_q8_k_tiled_x4, BlockIq3S, dot::iq3_s_q8_k_tiled
);

select_tq!(
    /// TQ1_0 · Q8_K.
    tq1_0_q8_k, tq1_0_q8_k_x4, BlockTq1_0, dot::tq1_0_q8_k
);
select_tq!(
    /// TQ2_0 · Q8_K.
    tq2_0_q8_k, tq2_0_q8_k_x4, BlockTq2_0, dot::tq2_0_q8_k
);

select_iq!(
    /// MXFP4 · Q8_0.
    mxfp4_q8_0, mxfp4_q8_0_x4, BlockMxfp4, BlockQ8_0, dot::mxfp4_q8_0
);
select_iq!(
    /// Q5_K · Q8_K.
    q5_k_q8_k, q5_k_q8_k_x4, BlockQ5K, BlockQ8K, dot::q5_k_q8_k
);
select_iq!(
    /// Q5_K · Q8_K in the order of ggml's tiled matmul.
    q5_k_q8_k_tiled, q5_k_q8_k_tiled_x4, BlockQ5K, BlockQ8K, dot::q5_k_q8_k_tiled
);
select_iq!(
    /// IQ4_XS · Q8_K in the order of ggml's tiled matmul.
    iq4_xs_q8_k_tiled, iq4_xs_q8_k_tiled_x4, BlockIq4Xs, BlockQ8K, dot::iq4_xs_q8_k_tiled
);

/// A kernel for a whole product: `(weight rows, blocks per weight row, rows, activation rows,
/// blocks per activation row, m, out, out stride)`; false if it cannot run on this CPU.
pub(crate) type WholeFn<W, A> =
    fn(&[W], usize, core::ops::Range<usize>, &[A], usize, usize, &mut [f32], usize) -> bool;

/// IQ4_NL or Q4_0 · Q8_0's whole-product kernel (groups of eight and sixteen weight rows).
pub(crate) fn nl4_q8_0_whole<B: crate::blocks::Nl4Block>() -> Option<WholeFn<B, BlockQ8_0>> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return Some(iq_avx2::nl4_matmul::<B>);
        }
    }
    None
}

/// The tiled-order IQ4_XS kernel's whole-product one (VNNI tiles of eight weight rows).
pub(crate) fn iq4_xs_q8_k_tiled_whole() -> Option<WholeFn<BlockIq4Xs, BlockQ8K>> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512_vnni() {
            return Some(iq_avx2::iq4_xs_tiled_matmul);
        }
    }
    None
}

/// A kernel taking four activation rows per pass over a weight row.
pub(crate) type QuadFn<W, A> = fn(&[W], [&[A]; 4]) -> [f32; 4];

/// No four-row kernel (for types that have none).
pub(crate) fn no_quad<W, A>() -> Option<QuadFn<W, A>> {
    None
}

/// A kernel taking four weight rows per pass over one activation row.
pub(crate) type Rows4Fn<W, A> = fn([&[W]; 4], &[A]) -> [f32; 4];

/// A kernel taking eight activation rows per pass over a weight row.
pub(crate) type OctFn<W, A> = fn(&[W], [&[A]; 8]) -> [f32; 8];

/// A kernel taking eight activation rows per pass over four weight rows.
pub(crate) type Oct4Fn<W, A> = fn([&[W]; 4], [&[A]; 8]) -> [[f32; 8]; 4];

/// Whether the packed-tile kernels take a product of `m` activation rows with weights of type
/// `ty` on this CPU ([`crate::PackedActs`], which [`crate::matmul`] also goes through). Q8_0
/// weights, cheap to unpack, run larger products faster through the multi-row kernels
/// (their tiles carry more bytes per block than the work per block hides once they leave L1):
/// tiles up to one tile of eight rows (decode steps of several sequences), measured.
pub(crate) fn tiles_take(ty: crate::QuantType, m: usize) -> bool {
    use crate::QuantType as T;
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() && m >= 2 {
            return match ty {
                T::Q4_1 | T::Q5_0 => true,
                T::Q8_0 => m <= crate::packed::TILE,
                _ => false,
            };
        }
    }
    let _ = (ty, m);
    false
}

/// [`crate::matmul_packed`] after its checks: `w` holds whole rows up to `rows.end` (`w_row`
/// bytes each) and `packed` is packed for `ty` and this width.
#[allow(unused_variables)]
pub(crate) fn run_packed(
    ty: crate::QuantType,
    w: &[u8],
    w_row: usize,
    rows: core::ops::Range<usize>,
    packed: &crate::PackedActs,
    out: &mut [f32],
    out_stride: usize,
) -> Result<(), crate::QuantError> {
    #[cfg(target_arch = "x86_64")]
    {
        use crate::blocks::cast;
        use crate::QuantType as T;
        let (nb, m) = (packed.blocks(), packed.packed_for().map_or(0, |p| p.2));
        macro_rules! go {
            ($w:ty, $f:path, $tiles:expr) => {{
                let ws: &[$w] = cast("w", ty, w, w.len())?;
                let wb = w_row / core::mem::size_of::<$w>();
                $f(ws, wb, rows, $tiles, nb, m, out, out_stride);
                return Ok(());
            }};
        }
        if has_avx512() {
            match ty {
                T::Q4_1 => go!(BlockQ4_1, tile512::q4_1_packed, packed.q8_1()),
                T::Q8_0 => go!(BlockQ8_0, tile512::q8_0_packed, packed.q8_0()),
                T::Q5_0 => go!(BlockQ5_0, tile512::q5_0_packed, packed.q8_0()),
                _ => {}
            }
        }
    }
    Err(crate::QuantError::Unsupported {
        ty,
        op: "matmul_packed",
    })
}

/// The wider kernels a weight type may have besides its one- and four-row ones.
pub(crate) struct Wide<W, A> {
    /// Four weight rows against one activation row.
    pub(crate) rows4: Option<Rows4Fn<W, A>>,
    /// Eight activation rows against one weight row.
    pub(crate) oct: Option<OctFn<W, A>>,
    /// Eight activation rows against four weight rows.
    pub(crate) oct4: Option<Oct4Fn<W, A>>,
}

impl<W, A> Wide<W, A> {
    /// No wider kernels.
    pub(crate) fn none() -> Wide<W, A> {
        Wide {
            rows4: None,
            oct: None,
            oct4: None,
        }
    }
}

/// Q4_1 · Q8_1's wider kernels.
pub(crate) fn q4_1_q8_1_wide() -> Wide<BlockQ4_1, BlockQ8_1> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return Wide {
                rows4: Some(avx2::q4_1_q8_1_r4),
                oct: Some(avx2::q4_1_q8_1_x8),
                oct4: None,
            };
        }
    }
    Wide::none()
}

macro_rules! select_wide {
    ($(#[$doc:meta])* $name:ident, $w:ty, $r4:ident, $x8:ident, $x8r4:ident) => {
        $(#[$doc])*
        pub(crate) fn $name() -> Wide<$w, BlockQ8_0> {
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx512() {
                    return Wide {
                        rows4: Some(avx2::$r4),
                        oct: Some(avx2::$x8),
                        oct4: Some(avx2::$x8r4),
                    };
                }
            }
            Wide::none()
        }
    };
}

select_wide!(
    /// Q8_0 · Q8_0's wider kernels (AVX-512 only).
    q8_0_q8_0_wide, BlockQ8_0, q8_0_q8_0_r4, q8_0_q8_0_x8, q8_0_q8_0_x8r4
);
/// Q5_0 · Q8_0's wider kernel (AVX-512 only): four weight rows per activation row; the
/// packed-tile kernels take its products of several rows.
pub(crate) fn q5_0_q8_0_wide() -> Wide<BlockQ5_0, BlockQ8_0> {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx512() {
            return Wide {
                rows4: Some(avx2::q5_0_q8_0_r4),
                oct: None,
                oct4: None,
            };
        }
    }
    Wide::none()
}

macro_rules! select_oct {
    ($(#[$doc:meta])* $name:ident, $w:ty, $x8:ident) => {
        $(#[$doc])*
        pub(crate) fn $name() -> Wide<$w, BlockQ8K> {
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx512() {
                    return Wide {
                        rows4: None,
                        oct: Some(avx2::$x8),
                        oct4: None,
                    };
                }
            }
            Wide::none()
        }
    };
}

select_oct!(
    /// The Q4_K gemm-order kernel's wider ones (eight activation rows per pass, AVX-512 only).
    q4_k_q8_k_grouped_wide, BlockQ4K, q4_k_q8_k_grouped_x8
);
select_oct!(
    /// The tiled-order Q6_K kernel's wider ones (eight activation rows per pass, AVX-512 only).
    q6_k_q8_k_tiled_wide, BlockQ6K, q6_k_q8_k_tiled_x8
);

macro_rules! select_quad {
    ($(#[$doc:meta])* $name:ident, $w:ty, $a:ty) => {
        $(#[$doc])*
        pub(crate) fn $name() -> Option<QuadFn<$w, $a>> {
            #[cfg(target_arch = "x86_64")]
            {
                if has_avx2() {
                    return Some(avx2::$name);
                }
            }
            None
        }
    };
}

select_quad!(
    /// Q4_1 · Q8_1, four activation rows per pass.
    q4_1_q8_1_x4, BlockQ4_1, BlockQ8_1
);
select_quad!(
    /// Q5_0 · Q8_0, four activation rows per pass.
    q5_0_q8_0_x4, BlockQ5_0, BlockQ8_0
);
select_quad!(
    /// Q8_0 · Q8_0, four activation rows per pass.
    q8_0_q8_0_x4, BlockQ8_0, BlockQ8_0
);

select_quad!(
    /// Q4_K · Q8_K, four activation rows per pass.
    q4_k_q8_k_x4, BlockQ4K, BlockQ8K
);
select_quad!(
    /// Q4_K · Q8_K in the order of ggml's x86 Q4_K gemm, four activation rows per pass.
    q4_k_q8_k_grouped_x4, BlockQ4K, BlockQ8K
);
select_quad!(
    /// Q2_K · Q8_K, four activation rows per pass.
    q2_k_q8_k_x4, BlockQ2K, BlockQ8K
);
select_quad!(
    /// Q2_K · Q8_K in the order of ggml's repacked gemv, four activation rows per pass.
    q2_k_q8_k_repacked_x4, BlockQ2K, BlockQ8K
);
select_quad!(
    /// Q2_K · Q8_K in the order of ggml's repacked gemm, four activation rows per pass.
    q2_k_q8_k_repacked_grouped_x4, BlockQ2K, BlockQ8K
);
select_quad!(
    /// Q2_K · Q8_K in the order of ggml's tiled matmul, four activation rows per pass.
    q2_k_q8_k_tiled_x4, BlockQ2K, BlockQ8K
);
select_quad!(
    /// Q3_K · Q8_K, four activation rows per pass.
    q3_k_q8_k_x4, BlockQ3K, BlockQ8K
);
select_quad!(
    /// Q3_K · Q8_K in the order of ggml's tiled matmul, four activation rows per pass.
    q3_k_q8_k_tiled_x4, BlockQ3K, BlockQ8K
);
select_quad!(
    /// Q6_K · Q8_K, four activation rows per pass.
    q6_k_q8_k_x4, BlockQ6K, BlockQ8K
);
select_quad!(
    /// Q6_K · Q8_K in the order of ggml's tiled K-quant matmul, four activation rows per pass.
    q6_k_q8_k_tiled_x4, BlockQ6K, BlockQ8K
);

/// Quantizes activations to Q8_0 (identical results to [`quant::q8_0`]).
pub(crate) fn quantize_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return avx2::quantize_q8_0(src, dst);
        }
    }
    quant::q8_0(src, dst)
}

/// Quantizes activations to Q8_1 (identical results to [`quant::q8_1`]).
pub(crate) fn quantize_q8_1(src: &[f32], dst: &mut [BlockQ8_1]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return avx2::quantize_q8_1(src, dst);
        }
    }
    quant::q8_1(src, dst)
}

/// Quantizes activations to Q8_K (identical results to [`quant::q8_k`]).
pub(crate) fn quantize_q8_k(src: &[f32], dst: &mut [BlockQ8K]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2() {
            return avx2::quantize_q8_k(src, dst);
        }
    }
    quant::q8_k(src, dst)
}

#[cfg(test)]
mod tests;

#[cfg(target_arch = "x86_64")]
mod vec_avx2;

#[cfg(target_arch = "x86_64")]
mod attn512;

#[cfg(target_arch = "x86_64")]
pub(crate) use attn512::{f16_dots_folded, f16_weighted_sum, sum_groups16};

#[cfg(not(target_arch = "x86_64"))]
pub(crate) use crate::vecops::sum_groups16_scalar as sum_groups16;

/// [`crate::vecops::f16_dots_folded_then`] without a wide kernel: one row at a time.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn f16_dots_folded(x: &[f16], rows: &[f16], _: &[f16], vecdot: bool, out: &mut [f32]) {
    crate::vecops::f16_dots_folded_scalar(x, rows, vecdot, out)
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) use crate::vecops::f16_weighted_sum_scalar as f16_weighted_sum;

#[cfg(target_arch = "x86_64")]
pub(crate) use vec_avx2::{
    exp_sub_ggml, f16_axpy, f16_dot_folded, f16_fma_lanes, f16_table_clamped, rope_rotate,
    silu_ggml,
};

#[cfg(not(target_arch = "x86_64"))]
pub(crate) use crate::vecops::{
    exp_sub_ggml_scalar as exp_sub_ggml, f16_axpy_scalar as f16_axpy,
    f16_dot_folded_scalar as f16_dot_folded, f16_fma_lanes_scalar as f16_fma_lanes,
    f16_table_clamped_scalar as f16_table_clamped, rope_rotate_scalar as rope_rotate,
    silu_ggml_scalar as silu_ggml,
};
