//! Block layouts of the quantized types, bit-exact with `ggml/src/ggml-common.h`
//! (`block_q4_0` … `block_q8_K`, `block_iq4_nl`, `block_iq4_xs`, `block_tq1_0`, `block_tq2_0`),
//! and checked casts from raw bytes.
//!
//! Each struct is `#[repr(C)]` with the field order of ggml-common.h and a compile-time size
//! assertion. Fields holding `ggml_half` are [`half::f16`], so most blocks need 2-byte
//! alignment ([`BlockQ8K`] needs 4); GGUF tensor data is 32-byte aligned.

use bytemuck::{Pod, Zeroable};
use half::f16;

use crate::grids::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS,
};
use crate::types::{QK, QK_K};
use crate::{QuantError, QuantType};

/// `block_q4_0`: `d`, then 32 4-bit quants; element `j` is the low nibble of `qs[j]`, element
/// `j + 16` the high nibble.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_0>() == 18);

/// `block_q4_1`: scale `d`, minimum `m`, 32 unsigned 4-bit quants (same nibble order as Q4_0).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum.
    pub m: f16,
    /// Nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4_1>() == 20);

/// `block_q5_0`: scale, the 32 fifth bits (little-endian u32 in `qh`), 32 low nibbles.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Fifth bit of element `j` is bit `j` of the little-endian u32.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5_0>() == 22);

/// `block_q5_1`: scale, minimum, fifth bits, low nibbles.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Minimum.
    pub m: f16,
    /// Fifth bits.
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5_1>() == 24);

/// `block_q8_0`: scale and 32 signed 8-bit quants.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants.
    pub qs: [i8; QK],
}
const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);

/// `block_q8_1`: scale, `s = d * sum(qs)`, 32 signed 8-bit quants.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: f16,
    /// `d * sum(qs)`.
    pub s: f16,
    /// Quants.
    pub qs: [i8; QK],
}
const _: () = assert!(core::mem::size_of::<BlockQ8_1>() == 36);

/// `block_q2_K`: 16 sub-blocks of 16; 4-bit scale (low) and min (high) per sub-block.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ2K {
    /// Scales (low nibble) and mins (high nibble).
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants, four per byte.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
}
const _: () = assert!(core::mem::size_of::<BlockQ2K>() == 84);

/// `block_q3_K`: high bits, low 2 bits, 16 packed 6-bit scales, super-block scale.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ3K {
    /// Third bit of each quant.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits.
    pub qs: [u8; QK_K / 4],
    /// 16 6-bit scales, packed.
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(core::mem::size_of::<BlockQ3K>() == 110);

/// `block_q4_K`: 8 sub-blocks of 32 with 6-bit scales and mins packed in 12 bytes.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ4K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
    /// Packed 6-bit scales and mins.
    pub scales: [u8; 12],
    /// 4-bit quants.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ4K>() == 144);

/// `block_q5_K`: like Q4_K plus a fifth bit per quant.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ5K {
    /// Super-block scale of the scales.
    pub d: f16,
    /// Super-block scale of the mins.
    pub dmin: f16,
    /// Packed 6-bit scales and mins.
    pub scales: [u8; 12],
    /// Fifth bits.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits.
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(core::mem::size_of::<BlockQ5K>() == 176);

/// `block_q6_K`: low 4 bits, high 2 bits, 16 signed 8-bit scales, super-block scale.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low 4 bits.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits.
    pub qh: [u8; QK_K / 4],
    /// Scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}
const _: () = assert!(core::mem::size_of::<BlockQ6K>() == 210);

/// `block_q8_K`: f32 scale, 256 signed 8-bit quants, sums of each 16 quants.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockQ8K {
    /// Scale.
    pub d: f32,
    /// Quants.
    pub qs: [i8; QK_K],
    /// `bsums[j] = sum(qs[16 j .. 16 j + 16])`.
    pub bsums: [i16; QK_K / 16],
}
const _: () = assert!(core::mem::size_of::<BlockQ8K>() == 292);

/// `block_iq4_nl`: f16 scale and 32 4-bit indices into [`KVALUES_IQ4NL`] (same nibble order as
/// Q4_0: element `j` is the low nibble of `qs[j]`, element `j + 16` the high one).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockIq4Nl {
    /// Scale.
    pub d: f16,
    /// Nibbles (table indices).
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockIq4Nl>() == 18);

/// `block_iq4_xs`: 256 elements in eight sub-blocks of 32; sub-block `ib` has the 6-bit scale
/// `(scales_l[ib / 2] >> 4 (ib % 2)) & 15 | ((scales_h >> 2 ib) & 3) << 4`, minus 32, times `d`;
/// each sub-block's 16 bytes of nibbles are ordered as in [`BlockIq4Nl`].
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockIq4Xs {
    /// Super-block scale.
    pub d: f16,
    /// High two bits of the eight sub-block scales.
    pub scales_h: u16,
    /// Low four bits of the sub-block scales, two per byte.
    pub scales_l: [u8; QK_K / 64],
    /// Nibbles (table indices).
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(core::mem::size_of::<BlockIq4Xs>() == 136);

/// `block_iq3_xxs`: 256 elements in eight sub-blocks of 32. `qs[0..64]` are indices into
/// [`IQ3XXS_GRID`] (four magnitudes each, eight per sub-block); `qs[64 + 4 ib..]` is sub-block
/// `ib`'s little-endian u32: four 7-bit sign indices into [`KSIGNS_IQ2XS`] (one per eight
/// elements) and the 4-bit scale `ls` in the top bits; the value is
/// `d (0.5 + ls) / 2 · magnitude · sign`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockIq3Xxs {
    /// Super-block scale.
    pub d: f16,
    /// Grid indices, then the sub-blocks' signs and scales.
    pub qs: [u8; 3 * QK_K / 8],
}
const _: () = assert!(core::mem::size_of::<BlockIq3Xxs>() == 98);

impl BlockIq3Xxs {
    /// Sub-block `ib`'s word of signs and scale.
    #[inline(always)]
    pub fn aux(&self, ib: usize) -> u32 {
        let o = QK_K / 4 + 4 * (ib % 8);
        u32::from_le_bytes([self.qs[o], self.qs[o + 1], self.qs[o + 2], self.qs[o + 3]])
    }
}

/// `block_iq2_xxs`: 256 elements in eight sub-blocks of 32, eight bytes each: four indices
/// into [`IQ2XXS_GRID`] (eight magnitudes each), then a little-endian u32 of four 7-bit sign
/// indices into [`KSIGNS_IQ2XS`] and the 4-bit scale `ls` on top; the value is
/// `d (0.5 + ls) / 4 · magnitude · sign`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockIq2Xxs {
    /// Super-block scale.
    pub d: f16,
    /// Per sub-block: grid indices, then signs and scale.
    pub qs: [u8; QK_K / 4],
}
const _: () = assert!(core::mem::size_of::<BlockIq2Xxs>() == 66);

impl BlockIq2Xxs {
    /// Sub-block `ib`'s word of signs and scale.
    #[inline(always)]
    pub fn aux(&self, ib: usize) -> u32 {
        let o = 8 * (ib % 8) + 4;
        u32::from_le_bytes([self.qs[o], self.qs[o + 1], self.qs[o + 2], self.qs[o + 3]])
    }
}

/// `block_iq2_xs`: 256 elements in eight sub-blocks of 32. Group `l` of eight elements of
/// sub-block `ib` is the little-endian u16 `qs[4 ib + l]`: [`IQ2XS_GRID`] index in its low nine
/// bits, a 7-bit sign index into [`KSIGNS_IQ2XS`] above; `scales[ib]` holds the 4-bit scales of
/// the two halves of 16 (low nibble first); the value is `d (0.5 + ls) / 4 · magnitude · sign`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockIq2Xs {
    /// Super-block scale.
    pub d: f16,
    /// Grid index and signs per eight elements.
    pub qs: [u16; QK_K / 8],
    /// Scales of the halves of each sub-block.
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(core::mem::size_of::<BlockIq2Xs>() == 74);

/// `block_iq2_s`: 256 elements in eight sub-blocks of 32. Group `l` of eight elements of
/// sub-block `ib` is [`IQ2S_GRID`] entry `qs[4 ib + l] | (bits 2l, 2l + 1 of qh[ib]) << 8`,
/// negative where bit `j` of `qs[32 + 4 ib + l]` is set; scales as [`BlockIq2Xs`]'s.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockIq2S {
    /// Super-block scale.
    pub d: f16,
    /// Low eight bits of the grid indices, then the sign bytes.
    pub qs: [u8; QK_K / 4],
    /// Top two bits of the grid indices.
    pub qh: [u8; QK_K / 32],
    /// Scales of the halves of each sub-block.
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(core::mem::size_of::<BlockIq2S>() == 82);

/// `block_iq1_s`: 256 elements in eight sub-blocks of 32. Group `l` of eight elements of
/// sub-block `ib` is [`IQ1S_GRID`] entry `qs[4 ib + l] | (bits 3l..3l + 3 of qh[ib]) << 8`
/// (values -1, 0, 1); `qh[ib]` has the 3-bit scale `ls` in bits 12..15 and the shift's sign in
/// bit 15; the value is `d (2 ls + 1) (g ± 1/8)`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockIq1S {
    /// Super-block scale.
    pub d: f16,
    /// Low eight bits of the grid indices.
    pub qs: [u8; QK_K / 8],
    /// Per sub-block: the indices' top bits, the scale and the shift's sign.
    pub qh: [u16; QK_K / 32],
}
const _: () = assert!(core::mem::size_of::<BlockIq1S>() == 50);

impl BlockIq1S {
    /// The grid value (-1, 0 or 1) of element `e < 256`.
    #[inline(always)]
    pub fn value(&self, e: usize) -> i8 {
        let (ib, l) = (e / 32 % 8, (e % 32) / 8);
        let hi = usize::from(self.qh[ib] >> (3 * l) & 7) << 8;
        let g = IQ1S_GRID[usize::from(self.qs[4 * ib + l]) | hi];
        g.to_le_bytes()[e % 8] as i8
    }

    /// Sub-block `ib`'s factor `2 ls + 1`.
    #[inline(always)]
    pub fn factor(&self, ib: usize) -> i32 {
        2 * i32::from(self.qh[ib % 8] >> 12 & 7) + 1
    }

    /// Whether sub-block `ib`'s shift is negative.
    #[inline(always)]
    pub fn shift_negative(&self, ib: usize) -> bool {
        self.qh[ib % 8] & 0x8000 != 0
    }
}

/// `block_iq1_m`: 256 elements in eight sub-blocks of 32. Group `l` of eight elements of
/// sub-block `ib` is [`IQ1S_GRID`] entry `qs[4 ib + l] | (bits 4 (l % 2)..+3 of
/// qh[2 ib + l / 2]) << 8`, its shift negative where bit `3 + 4 (l % 2)` of that byte is set;
/// the little-endian u16 `scales[2 k..]` holds the 3-bit scales of sub-blocks `2k` and `2k + 1`
/// (halves of 16 in order) in its low 12 bits and a nibble of the f16 super-block scale on top;
/// the value is `d (2 ls + 1) (g ± 1/8)`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockIq1M {
    /// Low eight bits of the grid indices.
    pub qs: [u8; QK_K / 8],
    /// Top three bits of the indices and the shifts' signs, two groups per byte.
    pub qh: [u8; QK_K / 16],
    /// Scales, and the super-block scale in the top nibbles.
    pub scales: [u8; QK_K / 32],
}
const _: () = assert!(core::mem::size_of::<BlockIq1M>() == 56);

impl BlockIq1M {
    fn sc(&self, k: usize) -> u16 {
        let k = k % 4;
        u16::from_le_bytes([self.scales[2 * k], self.scales[2 * k + 1]])
    }

    /// The super-block scale (spread over the scales' top nibbles).
    #[inline(always)]
    pub fn d(&self) -> f16 {
        f16::from_bits(
            (self.sc(0) >> 12)
                | ((self.sc(1) >> 8) & 0x00f0)
                | ((self.sc(2) >> 4) & 0x0f00)
                | (self.sc(3) & 0xf000),
        )
    }

    /// The factor `2 ls + 1` of half `h` of sub-block `ib`.
    #[inline(always)]
    pub fn factor(&self, ib: usize, h: usize) -> i32 {
        2 * i32::from(self.sc(ib / 2) >> (6 * (ib % 2) + 3 * (h % 2)) & 7) + 1
    }

    /// The grid value (-1, 0 or 1) of element `e < 256`.
    #[inline(always)]
    pub fn value(&self, e: usize) -> i8 {
        let (ib, l) = (e / 32 % 8, (e % 32) / 8);
        let q = self.qh[2 * ib + l / 2];
        let hi = usize::from(q >> (4 * (l % 2)) & 7) << 8;
        let g = IQ1S_GRID[usize::from(self.qs[4 * ib + l]) | hi];
        g.to_le_bytes()[e % 8] as i8
    }

    /// Whether the shift of element `e`'s group of eight is negative.
    #[inline(always)]
    pub fn shift_negative(&self, e: usize) -> bool {
        let (ib, l) = (e / 32 % 8, (e % 32) / 8);
        self.qh[2 * ib + l / 2] >> (3 + 4 * (l % 2)) & 1 == 1
    }
}

/// `block_iq3_s`: 256 elements in eight sub-blocks of 32. Group `k < 8` of four elements of
/// sub-block `ib` is [`IQ3S_GRID`] entry `qs[8 ib + k] | (bit k of qh[ib]) << 8`; element
/// `8 l + j` of a sub-block is negative where bit `j` of `signs[4 ib + l]` is set; the
/// sub-block's 4-bit scale `ls` (low nibble of `scales[ib / 2]` for even `ib`, high for odd)
/// gives `d (1 + 2 ls) · magnitude · sign`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockIq3S {
    /// Super-block scale.
    pub d: f16,
    /// Low eight bits of the grid indices.
    pub qs: [u8; QK_K / 4],
    /// Ninth bits of the grid indices.
    pub qh: [u8; QK_K / 32],
    /// Sign bits.
    pub signs: [u8; QK_K / 8],
    /// Sub-block scales, two per byte.
    pub scales: [u8; QK_K / 64],
}
const _: () = assert!(core::mem::size_of::<BlockIq3S>() == 110);

/// The grid i-quants (IQ2_XXS, IQ3_XXS, IQ3_S): grid magnitudes with sign bits and an integer
/// factor per 32-element sub-block, seen as eight groups of four magnitudes; what their
/// kernels share.
pub trait GridBlock: Pod {
    /// The grid entry (four magnitudes, little-endian bytes) of group `k < 8` of sub-block `ib`.
    fn grid_word(&self, ib: usize, k: usize) -> u32;
    /// The eight sign bits of elements `8 l..8 l + 8` of sub-block `ib`.
    fn sign_bits(&self, ib: usize, l: usize) -> u8;
    /// The integer factor (`2 ls + 1`, or `1 + 2 ls`) of half `h` (elements `16 h..16 h + 16`)
    /// of sub-block `ib` (the same for both halves where the scale is per 32).
    fn factor(&self, ib: usize, h: usize) -> i32;
    /// The super-block scale.
    fn d(&self) -> f16;
    /// What ggml multiplies the scale by (IQ3_XXS: 1/4).
    const SCALE: f32;

    /// The magnitude of element `e < 256`.
    #[inline(always)]
    fn magnitude(&self, e: usize) -> u8 {
        self.grid_word(e / 32 % 8, (e % 32) / 4).to_le_bytes()[e % 4]
    }

    /// Whether element `e < 256` is negative.
    #[inline(always)]
    fn negative(&self, e: usize) -> bool {
        self.sign_bits(e / 32 % 8, (e % 32) / 8) >> (e % 8) & 1 == 1
    }
}

impl GridBlock for BlockIq3Xxs {
    #[inline(always)]
    fn grid_word(&self, ib: usize, k: usize) -> u32 {
        IQ3XXS_GRID[usize::from(self.qs[(8 * ib + k) % 64])]
    }
    #[inline(always)]
    fn sign_bits(&self, ib: usize, l: usize) -> u8 {
        KSIGNS_IQ2XS[((self.aux(ib) >> (7 * (l % 4))) & 127) as usize]
    }
    #[inline(always)]
    fn factor(&self, ib: usize, _h: usize) -> i32 {
        2 * (self.aux(ib) >> 28) as i32 + 1
    }
    fn d(&self) -> f16 {
        self.d
    }
    const SCALE: f32 = 0.25;
}

impl GridBlock for BlockIq2Xxs {
    #[inline(always)]
    fn grid_word(&self, ib: usize, k: usize) -> u32 {
        let g = IQ2XXS_GRID[usize::from(self.qs[8 * (ib % 8) + (k % 8) / 2])];
        (g >> (32 * (k % 2))) as u32
    }
    #[inline(always)]
    fn sign_bits(&self, ib: usize, l: usize) -> u8 {
        KSIGNS_IQ2XS[((self.aux(ib) >> (7 * (l % 4))) & 127) as usize]
    }
    #[inline(always)]
    fn factor(&self, ib: usize, _h: usize) -> i32 {
        2 * (self.aux(ib) >> 28) as i32 + 1
    }
    fn d(&self) -> f16 {
        self.d
    }
    const SCALE: f32 = 0.125;
}

impl GridBlock for BlockIq2Xs {
    #[inline(always)]
    fn grid_word(&self, ib: usize, k: usize) -> u32 {
        let g = IQ2XS_GRID[usize::from(self.qs[(4 * ib + k / 2) % 32] & 511)];
        (g >> (32 * (k % 2))) as u32
    }
    #[inline(always)]
    fn sign_bits(&self, ib: usize, l: usize) -> u8 {
        KSIGNS_IQ2XS[usize::from(self.qs[(4 * ib + l) % 32] >> 9)]
    }
    #[inline(always)]
    fn factor(&self, ib: usize, h: usize) -> i32 {
        2 * i32::from(self.scales[ib % 8] >> (4 * (h % 2)) & 15) + 1
    }
    fn d(&self) -> f16 {
        self.d
    }
    const SCALE: f32 = 0.125;
}

impl GridBlock for BlockIq2S {
    #[inline(always)]
    fn grid_word(&self, ib: usize, k: usize) -> u32 {
        let (ib, l) = (ib % 8, (k % 8) / 2);
        let hi = usize::from(self.qh[ib] >> (2 * l) & 3) << 8;
        let g = IQ2S_GRID[usize::from(self.qs[4 * ib + l]) | hi];
        (g >> (32 * (k % 2))) as u32
    }
    #[inline(always)]
    fn sign_bits(&self, ib: usize, l: usize) -> u8 {
        self.qs[32 + (4 * ib + l) % 32]
    }
    #[inline(always)]
    fn factor(&self, ib: usize, h: usize) -> i32 {
        2 * i32::from(self.scales[ib % 8] >> (4 * (h % 2)) & 15) + 1
    }
    fn d(&self) -> f16 {
        self.d
    }
    const SCALE: f32 = 0.125;
}

impl GridBlock for BlockIq3S {
    #[inline(always)]
    fn grid_word(&self, ib: usize, k: usize) -> u32 {
        let (ib, k) = (ib % 8, k % 8);
        let hi = usize::from(self.qh[ib] >> k & 1) << 8;
        IQ3S_GRID[usize::from(self.qs[8 * ib + k]) | hi]
    }
    #[inline(always)]
    fn sign_bits(&self, ib: usize, l: usize) -> u8 {
        self.signs[(4 * ib + l) % 32]
    }
    #[inline(always)]
    fn factor(&self, ib: usize, _h: usize) -> i32 {
        1 + 2 * i32::from(self.scales[(ib / 2) % 4] >> (4 * (ib % 2)) & 15)
    }
    fn d(&self) -> f16 {
        self.d
    }
    const SCALE: f32 = 1.0;
}

/// `block_tq1_0`: 256 ternary elements. Elements `0..160` are five trits of each byte of
/// `qs[0..32]` (element `32 n + m` is trit `n` of `qs[m]`), elements `160..240` five trits of
/// each byte of `qs[32..48]` (element `160 + 16 n + m`: trit `n` of `qs[32 + m]`), elements
/// `240..256` four trits of each byte of `qh` (element `240 + 4 n + j`: trit `n` of `qh[j]`).
/// Trit `n` of byte `q` is `(u8(q 3^n) · 3) >> 8` (a byte holds its base-3 number scaled to
/// 256, first trit most significant); the value is `(trit - 1) d`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockTq1_0 {
    /// Five trits per byte.
    pub qs: [u8; (QK_K - 4 * QK_K / 64) / 5],
    /// Four trits per byte.
    pub qh: [u8; QK_K / 64],
    /// Scale.
    pub d: f16,
}
const _: () = assert!(core::mem::size_of::<BlockTq1_0>() == 54);

/// Powers of three, the multipliers that bring trit `n` of a TQ1_0 byte to its top.
pub const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// Trit `n` (0, 1 or 2) of a TQ1_0 byte.
#[inline(always)]
pub fn trit(q: u8, n: usize) -> u8 {
    ((u16::from(q.wrapping_mul(POW3[n % 5])) * 3) >> 8) as u8
}

impl BlockTq1_0 {
    /// The trit (0, 1 or 2) of element `e < 256`.
    #[inline(always)]
    pub fn at(&self, e: usize) -> u8 {
        let (q, n) = if e < 160 {
            (self.qs[e % 32], e / 32)
        } else if e < 240 {
            (self.qs[32 + (e - 160) % 16], (e - 160) / 16)
        } else {
            (self.qh[(e - 240) % 4], ((e - 240) / 4) % 4)
        };
        trit(q, n)
    }
}

/// `block_tq2_0`: 256 elements of two bits, `d` last. Element `128 h + 32 l + m` is bits
/// `2l..2l + 2` of `qs[32 h + m]`; the value is `(q - 1) d`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockTq2_0 {
    /// Two bits per element.
    pub qs: [u8; QK_K / 4],
    /// Scale.
    pub d: f16,
}
const _: () = assert!(core::mem::size_of::<BlockTq2_0>() == 66);

impl BlockTq2_0 {
    /// The two-bit code (0..=3; 3 is not written by ggml) of element `e < 256`.
    #[inline(always)]
    pub fn at(&self, e: usize) -> u8 {
        let (h, l, m) = (e / 128 % 2, e / 32 % 4, e % 32);
        (self.qs[32 * h + m] >> (2 * l)) & 3
    }
}

/// The 16 values of IQ4_NL and IQ4_XS indices (`kvalues_iq4nl` in ggml-common.h).
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Q4_0's values as a table over its nibbles (`q - 8`): the table ggml's x86 repacked Q4_0
/// kernels look Q4_0 up in (after flipping the nibbles' top bit, the same values).
pub const KVALUES_Q4_0: [i8; 16] = [-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7];

/// A block of one f16 scale and 32 nibbles indexing a table of 16 signed bytes: Q4_0 (its
/// values `q - 8`) and IQ4_NL. Their dot products share one float order (ggml's x86 repacked
/// kernels), so they share kernels, parameterized by the table.
pub(crate) trait Nl4Block: Pod {
    /// The values the nibbles index.
    const TABLE: [i8; 16];
    /// The scale.
    fn d(&self) -> f16;
    /// The nibbles.
    fn qs(&self) -> &[u8; 16];
}

impl Nl4Block for BlockQ4_0 {
    const TABLE: [i8; 16] = KVALUES_Q4_0;
    fn d(&self) -> f16 {
        self.d
    }
    fn qs(&self) -> &[u8; 16] {
        &self.qs
    }
}

impl Nl4Block for BlockIq4Nl {
    const TABLE: [i8; 16] = KVALUES_IQ4NL;
    fn d(&self) -> f16 {
        self.d
    }
    fn qs(&self) -> &[u8; 16] {
        &self.qs
    }
}

impl BlockIq4Xs {
    /// The 6-bit scale of sub-block `ib < 8`, minus 32.
    #[inline(always)]
    pub fn scale(&self, ib: usize) -> i32 {
        let lo = (self.scales_l.get(ib / 2).copied().unwrap_or(0) >> (4 * (ib % 2))) & 0x0F;
        let hi = (self.scales_h >> (2 * ib)) & 3;
        i32::from(lo) | i32::from(hi) << 4
    }
}

/// `block_mxfp4`: an E8M0 exponent and 32 4-bit indices into [`KVALUES_MXFP4`] (nibble order as
/// Q4_0's); element = value × [`e8m0_half`]`(e)`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
pub struct BlockMxfp4 {
    /// Shared exponent (E8M0).
    pub e: u8,
    /// Nibbles (table indices).
    pub qs: [u8; QK / 2],
}
const _: () = assert!(core::mem::size_of::<BlockMxfp4>() == 17);

/// The E2M1 values, doubled, of MXFP4 indices (`kvalues_mxfp4` in ggml-common.h).
pub const KVALUES_MXFP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// Half of the E8M0 scale `2^(e - 127)` (ggml's `ggml_e8m0_to_fp32_half`, which pairs with the
/// doubled table values), bit-exact, subnormals included.
#[inline(always)]
pub fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

/// Views `bytes` as `T`s (blocks of `ty`), checking length and alignment.
pub(crate) fn cast<'a, T: Pod>(
    what: &'static str,
    ty: QuantType,
    bytes: &'a [u8],
    expected_len: usize,
) -> Result<&'a [T], QuantError> {
    if bytes.len() != expected_len {
        return Err(QuantError::WrongLength {
            what,
            expected: expected_len,
            actual: bytes.len(),
        });
    }
    bytemuck::try_cast_slice(bytes).map_err(|_| QuantError::Misaligned {
        what,
        ty,
        align: core::mem::align_of::<T>(),
    })
}

/// Mutable twin of [`cast`].
pub(crate) fn cast_mut<'a, T: Pod>(
    what: &'static str,
    ty: QuantType,
    bytes: &'a mut [u8],
    expected_len: usize,
) -> Result<&'a mut [T], QuantError> {
    if bytes.len() != expected_len {
        return Err(QuantError::WrongLength {
            what,
            expected: expected_len,
            actual: bytes.len(),
        });
    }
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| QuantError::Misaligned {
        what,
        ty,
        align: core::mem::align_of::<T>(),
    })
}

/// Views a whole byte buffer of blocks (any whole number of blocks) as `T`s.
///
/// Used by tools that walk a tensor's data block by block.
pub fn blocks<T: Pod>(ty: QuantType, bytes: &[u8]) -> Result<&[T], QuantError> {
    let size = core::mem::size_of::<T>();
    if size != ty.type_size() {
        return Err(QuantError::Unsupported { ty, op: "blocks" });
    }
    let whole = bytes.len() - bytes.len() % size;
    cast("bytes", ty, bytes, whole)
}
