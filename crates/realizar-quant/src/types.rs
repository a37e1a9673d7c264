//! [`QuantType`]: the element types this crate reads and writes, with their ggml ids and sizes.

use core::fmt;

/// Elements in a super-block of the K-quants (`QK_K` in ggml-common.h).
pub const QK_K: usize = 256;
/// Elements in a block of the legacy quants Q4_0 … Q8_1 (`QK4_0` … `QK8_1` in ggml-common.h).
pub const QK: usize = 32;

/// A ggml element type that this crate can (de)quantize.
///
/// Ids, block sizes and byte sizes follow `ggml.h` / `ggml-common.h` (ggml's `enum ggml_type`
/// and the `block_*` structs).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QuantType {
    /// 32-bit IEEE float.
    F32,
    /// 16-bit IEEE half float.
    F16,
    /// bfloat16.
    BF16,
    /// 32 elements: f16 scale, 4-bit quants with offset 8.
    Q4_0,
    /// 32 elements: f16 scale and minimum, unsigned 4-bit quants.
    Q4_1,
    /// 32 elements: f16 scale, 5-bit quants with offset 16.
    Q5_0,
    /// 32 elements: f16 scale and minimum, unsigned 5-bit quants.
    Q5_1,
    /// 32 elements: f16 scale, signed 8-bit quants.
    Q8_0,
    /// 32 elements: f16 scale, f16 `scale * sum(quants)`, signed 8-bit quants.
    Q8_1,
    /// 256-element super-block of 2-bit quants with 4-bit scales and mins.
    Q2_K,
    /// 256-element super-block of 3-bit quants with 6-bit scales.
    Q3_K,
    /// 256-element super-block of 4-bit quants with 6-bit scales and mins.
    Q4_K,
    /// 256-element super-block of 5-bit quants with 6-bit scales and mins.
    Q5_K,
    /// 256-element super-block of 6-bit quants with 8-bit scales.
    Q6_K,
    /// 256 elements: f32 scale, signed 8-bit quants, sums of 16-element groups.
    Q8_K,
    /// 32 elements: f16 scale, 4-bit indices into the non-linear table `kvalues_iq4nl`.
    IQ4_NL,
    /// 256-element super-block: f16 scale, eight 6-bit sub-block scales, 4-bit indices into
    /// `kvalues_iq4nl`.
    IQ4_XS,
    /// 32 elements: E8M0 shared exponent, 4-bit E2M1 values (OCP microscaling MXFP4).
    MXFP4,
    /// 256-element super-block: f16 scale, groups of eight magnitudes from `iq2xxs_grid`,
    /// signs and 4-bit sub-block scales (2.06 bits per weight).
    IQ2_XXS,
    /// 256-element super-block: f16 scale, 9-bit indices into `iq2xs_grid` with 7-bit signs,
    /// 4-bit scales per 16 elements (2.31 bits per weight).
    IQ2_XS,
    /// 256-element super-block: f16 scale, 10-bit indices into `iq2s_grid`, explicit signs,
    /// 4-bit scales per 16 elements (2.56 bits per weight).
    IQ2_S,
    /// 256-element super-block: f16 scale, 11-bit indices into `iq1s_grid` (eight values of
    /// -1, 0, 1), a 3-bit scale and a ±1/8 shift per 32 elements (1.56 bits per weight).
    IQ1_S,
    /// 256-element super-block: 11-bit indices into `iq1s_grid`, a ±1/8 shift per eight
    /// elements, 3-bit scales per 16 and an f16 scale spread over the scale bytes (1.75 bits
    /// per weight).
    IQ1_M,
    /// 256-element super-block: f16 scale, groups of four magnitudes from `iq3xxs_grid`, signs
    /// and 4-bit sub-block scales (3.06 bits per weight).
    IQ3_XXS,
    /// 256-element super-block: f16 scale, 9-bit indices into `iq3s_grid`, explicit signs,
    /// 4-bit sub-block scales (3.44 bits per weight).
    IQ3_S,
    /// 256 ternary elements (-1, 0, 1 times an f16 scale), five per byte in base 3 (1.69 bits
    /// per weight).
    TQ1_0,
    /// 256 ternary elements (-1, 0, 1 times an f16 scale), two bits each.
    TQ2_0,
}

/// (type, ggml id, block size in elements, block size in bytes, name).
const TABLE: &[(QuantType, u32, usize, usize, &str)] = &[
    (QuantType::F32, 0, 1, 4, "f32"),
    (QuantType::F16, 1, 1, 2, "f16"),
    (QuantType::Q4_0, 2, QK, 18, "q4_0"),
    (QuantType::Q4_1, 3, QK, 20, "q4_1"),
    (QuantType::Q5_0, 6, QK, 22, "q5_0"),
    (QuantType::Q5_1, 7, QK, 24, "q5_1"),
    (QuantType::Q8_0, 8, QK, 34, "q8_0"),
    (QuantType::Q8_1, 9, QK, 36, "q8_1"),
    (QuantType::Q2_K, 10, QK_K, 84, "q2_K"),
    (QuantType::Q3_K, 11, QK_K, 110, "q3_K"),
    (QuantType::Q4_K, 12, QK_K, 144, "q4_K"),
    (QuantType::Q5_K, 13, QK_K, 176, "q5_K"),
    (QuantType::Q6_K, 14, QK_K, 210, "q6_K"),
    (QuantType::Q8_K, 15, QK_K, 292, "q8_K"),
    (QuantType::IQ2_XXS, 16, QK_K, 66, "iq2_xxs"),
    (QuantType::IQ2_XS, 17, QK_K, 74, "iq2_xs"),
    (QuantType::IQ3_XXS, 18, QK_K, 98, "iq3_xxs"),
    (QuantType::IQ1_S, 19, QK_K, 50, "iq1_s"),
    (QuantType::IQ4_NL, 20, QK, 18, "iq4_nl"),
    (QuantType::IQ3_S, 21, QK_K, 110, "iq3_s"),
    (QuantType::IQ2_S, 22, QK_K, 82, "iq2_s"),
    (QuantType::IQ4_XS, 23, QK_K, 136, "iq4_xs"),
    (QuantType::IQ1_M, 29, QK_K, 56, "iq1_m"),
    (QuantType::BF16, 30, 1, 2, "bf16"),
    (QuantType::TQ1_0, 34, QK_K, 54, "tq1_0"),
    (QuantType::TQ2_0, 35, QK_K, 66, "tq2_0"),
    (QuantType::MXFP4, 39, QK, 17, "mxfp4"),
];

impl QuantType {
    /// Every type, in ggml id order.
    pub const ALL: [QuantType; 27] = [
        QuantType::F32,
        QuantType::F16,
        QuantType::Q4_0,
        QuantType::Q4_1,
        QuantType::Q5_0,
        QuantType::Q5_1,
        QuantType::Q8_0,
        QuantType::Q8_1,
        QuantType::Q2_K,
        QuantType::Q3_K,
        QuantType::Q4_K,
        QuantType::Q5_K,
        QuantType::Q6_K,
        QuantType::Q8_K,
        QuantType::IQ2_XXS,
        QuantType::IQ2_XS,
        QuantType::IQ3_XXS,
        QuantType::IQ1_S,
        QuantType::IQ4_NL,
        QuantType::IQ3_S,
        QuantType::IQ2_S,
        QuantType::IQ4_XS,
        QuantType::IQ1_M,
        QuantType::BF16,
        QuantType::TQ1_0,
        QuantType::TQ2_0,
        QuantType::MXFP4,
    ];

    fn entry(self) -> (u32, usize, usize, &'static str) {
        match self {
            QuantType::F32 => (0, 1, 4, "f32"),
            QuantType::F16 => (1, 1, 2, "f16"),
            QuantType::Q4_0 => (2, QK, 18, "q4_0"),
            QuantType::Q4_1 => (3, QK, 20, "q4_1"),
            QuantType::Q5_0 => (6, QK, 22, "q5_0"),
            QuantType::Q5_1 => (7, QK, 24, "q5_1"),
            QuantType::Q8_0 => (8, QK, 34, "q8_0"),
            QuantType::Q8_1 => (9, QK, 36, "q8_1"),
            QuantType::Q2_K => (10, QK_K, 84, "q2_K"),
            QuantType::Q3_K => (11, QK_K, 110, "q3_K"),
            QuantType::Q4_K => (12, QK_K, 144, "q4_K"),
            QuantType::Q5_K => (13, QK_K, 176, "q5_K"),
            QuantType::Q6_K => (14, QK_K, 210, "q6_K"),
            QuantType::Q8_K => (15, QK_K, 292, "q8_K"),
            QuantType::IQ2_XXS => (16, QK_K, 66, "iq2_xxs"),
            QuantType::IQ2_XS => (17, QK_K, 74, "iq2_xs"),
            QuantType::IQ3_XXS => (18, QK_K, 98, "iq3_xxs"),
            QuantType::IQ1_S => (19, QK_K, 50, "iq1_s"),
            QuantType::IQ4_NL => (20, QK, 18, "iq4_nl"),
            QuantType::IQ3_S => (21, QK_K, 110, "iq3_s"),
            QuantType::IQ2_S => (22, QK_K, 82, "iq2_s"),
            QuantType::IQ4_XS => (23, QK_K, 136, "iq4_xs"),
            QuantType::IQ1_M => (29, QK_K, 56, "iq1_m"),
            QuantType::BF16 => (30, 1, 2, "bf16"),
            QuantType::TQ1_0 => (34, QK_K, 54, "tq1_0"),
            QuantType::TQ2_0 => (35, QK_K, 66, "tq2_0"),
            QuantType::MXFP4 => (39, QK, 17, "mxfp4"),
        }
    }

    /// The type for a ggml type id, or `None` for ids this crate does not handle.
    pub fn from_ggml_id(id: u32) -> Option<QuantType> {
        TABLE.iter().find(|e| e.1 == id).map(|e| e.0)
    }

    /// The ggml type id (`enum ggml_type`).
    pub fn ggml_id(self) -> u32 {
        self.entry().0
    }

    /// Elements per block.
    pub fn block_size(self) -> usize {
        self.entry().1
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.entry().2
    }

    /// Bytes of a row of `n` elements, or `None` if `n` is not a multiple of the block size
    /// (or the size overflows).
    pub fn row_bytes(self, n: usize) -> Option<usize> {
        let bs = self.block_size();
        if !n.is_multiple_of(bs) {
            return None;
        }
        (n / bs).checked_mul(self.type_size())
    }

    /// The type that activations are quantized to for [`crate::vec_dot`] with weights of this
    /// type (ggml's `vec_dot_type` in `type_traits_cpu`).
    pub fn vec_dot_type(self) -> QuantType {
        match self {
            QuantType::F32 => QuantType::F32,
            QuantType::F16 => QuantType::F16,
            QuantType::BF16 => QuantType::BF16,
            QuantType::Q4_0
            | QuantType::Q5_0
            | QuantType::Q8_0
            | QuantType::IQ4_NL
            | QuantType::MXFP4 => QuantType::Q8_0,
            QuantType::Q4_1 | QuantType::Q5_1 | QuantType::Q8_1 => QuantType::Q8_1,
            QuantType::Q2_K
            | QuantType::Q3_K
            | QuantType::Q4_K
            | QuantType::Q5_K
            | QuantType::Q6_K
            | QuantType::Q8_K
            | QuantType::IQ4_XS
            | QuantType::IQ2_XXS
            | QuantType::IQ2_XS
            | QuantType::IQ2_S
            | QuantType::IQ3_XXS
            | QuantType::IQ1_S
            | QuantType::IQ1_M
            | QuantType::IQ3_S
            | QuantType::TQ1_0
            | QuantType::TQ2_0 => QuantType::Q8_K,
        }
    }

    /// ggml's name for the type (`"q4_K"`, `"f32"`, ...).
    pub fn name(self) -> &'static str {
        self.entry().3
    }

    /// Whether the type is a quantized block format (not F32, F16 or BF16).
    pub fn is_quantized(self) -> bool {
        !matches!(self, QuantType::F32 | QuantType::F16 | QuantType::BF16)
    }
}

impl fmt::Display for QuantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_entry_agree() {
        for ty in QuantType::ALL {
            let row = TABLE
                .iter()
                .find(|e| e.0 == ty)
                .expect("every type has a row");
            assert_eq!((row.1, row.2, row.3, row.4), ty.entry());
            assert_eq!(QuantType::from_ggml_id(ty.ggml_id()), Some(ty));
        }
        assert_eq!(TABLE.len(), QuantType::ALL.len());
    }

    #[test]
    fn ggml_ids() {
        let check = |id, ty| assert_eq!(QuantType::from_ggml_id(id), ty);
        check(0, Some(QuantType::F32));
        check(1, Some(QuantType::F16));
        check(2, Some(QuantType::Q4_0));
        check(3, Some(QuantType::Q4_1));
        check(4, None);
        check(5, None);
        check(6, Some(QuantType::Q5_0));
        check(8, Some(QuantType::Q8_0));
        check(10, Some(QuantType::Q2_K));
        check(14, Some(QuantType::Q6_K));
        check(15, Some(QuantType::Q8_K));
        check(16, Some(QuantType::IQ2_XXS));
        check(18, Some(QuantType::IQ3_XXS));
        check(19, Some(QuantType::IQ1_S));
        check(17, Some(QuantType::IQ2_XS));
        check(21, Some(QuantType::IQ3_S));
        check(22, Some(QuantType::IQ2_S));
        check(20, Some(QuantType::IQ4_NL));
        check(23, Some(QuantType::IQ4_XS));
        check(29, Some(QuantType::IQ1_M));
        check(30, Some(QuantType::BF16));
        check(34, Some(QuantType::TQ1_0));
        check(35, Some(QuantType::TQ2_0));
        check(36, None);
        check(39, Some(QuantType::MXFP4));
    }

    #[test]
    fn row_bytes() {
        assert_eq!(QuantType::Q4_0.row_bytes(64), Some(36));
        assert_eq!(QuantType::Q4_0.row_bytes(33), None);
        assert_eq!(QuantType::Q6_K.row_bytes(512), Some(420));
        assert_eq!(QuantType::Q4_K.row_bytes(640), None);
        assert_eq!(QuantType::F32.row_bytes(3), Some(12));
        assert_eq!(QuantType::Q8_0.row_bytes(usize::MAX - 31), None);
    }
}
