//! Element types and tensor views.

use core::fmt;

use crate::SafetensorsError;

/// The element type of a tensor, as named in the safetensors header.
///
/// The variants are in the order of the official implementation (increasing alignment, then the
/// official enum order), which [`crate::SafetensorsWriter`] uses to lay out files like the
/// official serializer does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Dtype {
    /// Boolean, one byte per element.
    Bool,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// 8-bit float, 5 exponent and 2 mantissa bits.
    F8E5M2,
    /// 8-bit float, 4 exponent and 3 mantissa bits.
    F8E4M3,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// IEEE 754 half precision.
    F16,
    /// bfloat16 (the upper half of an f32).
    BF16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 double precision.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
}

impl Dtype {
    /// Every dtype this crate knows, in [`Ord`] order.
    pub const ALL: [Dtype; 15] = [
        Dtype::Bool,
        Dtype::U8,
        Dtype::I8,
        Dtype::F8E5M2,
        Dtype::F8E4M3,
        Dtype::I16,
        Dtype::U16,
        Dtype::F16,
        Dtype::BF16,
        Dtype::I32,
        Dtype::U32,
        Dtype::F32,
        Dtype::F64,
        Dtype::I64,
        Dtype::U64,
    ];

    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::F8E4M3 | Dtype::F8E5M2 | Dtype::I8 | Dtype::U8 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::BF16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }

    /// The name used in the header (`"F32"`, `"BF16"`, `"F8_E4M3"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "BOOL",
            Dtype::F8E4M3 => "F8_E4M3",
            Dtype::F8E5M2 => "F8_E5M2",
            Dtype::I8 => "I8",
            Dtype::U8 => "U8",
            Dtype::I16 => "I16",
            Dtype::U16 => "U16",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::I32 => "I32",
            Dtype::U32 => "U32",
            Dtype::F32 => "F32",
            Dtype::I64 => "I64",
            Dtype::U64 => "U64",
            Dtype::F64 => "F64",
        }
    }

    /// The dtype with header name `name` (exact, case-sensitive).
    pub fn from_name(name: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.name() == name)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A borrowed, zero-copy view of one tensor: its dtype, shape and exactly its bytes
/// (little-endian, row-major).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorView<'a> {
    /// The element type.
    pub dtype: Dtype,
    /// The shape, outermost dimension first; empty for a scalar.
    pub shape: Vec<usize>,
    /// The tensor's bytes.
    pub data: &'a [u8],
}

impl<'a> TensorView<'a> {
    /// The number of elements: the product of the shape (1 for a scalar, 0 if a dimension is 0).
    /// Saturates at `usize::MAX`, which a view from [`crate::SafeTensors`] never reaches.
    pub fn n_elements(&self) -> usize {
        self.shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
    }

    /// The element type.
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The tensor's bytes.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Converts the elements of an F32, F16, BF16 or F64 tensor to `f32` (F64 is rounded to
    /// nearest; F16 and BF16 convert exactly, subnormals, infinities and NaN included).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>, SafetensorsError> {
        let d = self.data;
        Ok(match self.dtype {
            Dtype::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => d
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::BF16 => d
                .chunks_exact(2)
                .map(|c| bf16_to_f32(u16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Dtype::F64 => d
                .chunks_exact(8)
                .map(|c| {
                    f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
            dtype => return Err(SafetensorsError::UnsupportedConversion { dtype }),
        })
    }
}

/// Converts IEEE 754 binary16 bits to `f32`, exactly (every half value is an f32 value).
///
/// Layout (IEEE 754-2008 §3.6): 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let mant = u32::from(bits & 0x3ff);
    let magnitude = match (exp, mant) {
        // Zero and subnormals: mant × 2^-24, exact in f32.
        (0, _) => (mant as f32 * f32::from_bits(0x3380_0000)).to_bits(),
        // Infinity, and NaN with its payload kept in the top mantissa bits.
        (0x1f, _) => 0x7f80_0000 | (mant << 13),
        // Normal: rebias the exponent from 15 to 127.
        _ => ((exp + 112) << 23) | (mant << 13),
    };
    f32::from_bits(sign | magnitude)
}

/// Converts bfloat16 bits to `f32` (bfloat16 is the upper 16 bits of an f32).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sizes_round_trip() {
        for d in Dtype::ALL {
            assert_eq!(Dtype::from_name(d.name()), Some(d));
            assert_eq!(d.to_string(), d.name());
            assert!(matches!(d.size(), 1 | 2 | 4 | 8));
        }
        assert_eq!(Dtype::from_name("f32"), None);
        assert_eq!(Dtype::from_name("F8_E4M3"), Some(Dtype::F8E4M3));
        assert_eq!(Dtype::BF16.size(), 2);
        assert_eq!(Dtype::F64.size(), 8);
        let mut sorted = Dtype::ALL;
        sorted.sort();
        assert_eq!(sorted, Dtype::ALL);
        // Alignment never decreases along the order.
        assert!(Dtype::ALL.windows(2).all(|w| w[0].size() <= w[1].size()));
    }

    #[test]
    fn f16_conversion_exact_on_all_values() {
        // Reference: the value of every finite half computed from its definition in f64.
        for bits in 0..=u16::MAX {
            let got = f16_to_f32(bits);
            let sign = if bits >> 15 == 1 { -1.0f64 } else { 1.0 };
            let exp = i32::from((bits >> 10) & 0x1f);
            let mant = f64::from(bits & 0x3ff);
            match exp {
                0x1f if mant == 0.0 => assert_eq!(f64::from(got), sign * f64::INFINITY),
                0x1f => {
                    assert!(got.is_nan());
                    assert_eq!(got.to_bits() >> 13 & 0x3ff, u32::from(bits & 0x3ff));
                }
                0 => assert_eq!(f64::from(got), sign * mant * 2f64.powi(-24), "{bits:#x}"),
                _ => assert_eq!(
                    f64::from(got),
                    sign * (1.0 + mant / 1024.0) * 2f64.powi(exp - 15),
                    "{bits:#x}"
                ),
            }
            assert_eq!(got.is_sign_negative(), bits >> 15 == 1);
        }
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8);
        assert_eq!(f16_to_f32(0x8000).to_bits(), 0x8000_0000);
    }

    #[test]
    fn bf16_conversion() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
        assert_eq!(bf16_to_f32(0x7f80), f32::INFINITY);
        assert!(bf16_to_f32(0x7fc1).is_nan());
        assert_eq!(bf16_to_f32(0x0001), f32::from_bits(0x0001_0000));
    }

    #[test]
    fn view_conversions() {
        let f32s: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let v = TensorView {
            dtype: Dtype::F32,
            shape: vec![2],
            data: &f32s,
        };
        assert_eq!(v.to_f32_vec(), Ok(vec![1.5, -2.0]));
        assert_eq!(
            (v.dtype(), v.shape(), v.data().len()),
            (Dtype::F32, &[2usize][..], 8)
        );
        let f64s: Vec<u8> = [0.1f64, 1e300]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let v = TensorView {
            dtype: Dtype::F64,
            shape: vec![2],
            data: &f64s,
        };
        assert_eq!(v.to_f32_vec(), Ok(vec![0.1f32, f32::INFINITY]));
        let v = TensorView {
            dtype: Dtype::F16,
            shape: vec![2],
            data: &[0x00, 0x3c, 0x00, 0xc0],
        };
        assert_eq!(v.to_f32_vec(), Ok(vec![1.0, -2.0]));
        let v = TensorView {
            dtype: Dtype::BF16,
            shape: vec![1, 1],
            data: &[0x80, 0x3f],
        };
        assert_eq!(v.to_f32_vec(), Ok(vec![1.0]));
        let v = TensorView {
            dtype: Dtype::I32,
            shape: vec![1],
            data: &[0; 4],
        };
        let e = v.to_f32_vec();
        assert_eq!(
            e,
            Err(SafetensorsError::UnsupportedConversion { dtype: Dtype::I32 })
        );
        let e = e.err().map(|e| (e.offset(), e.to_string()));
        assert_eq!(e, Some((None, "cannot convert I32 to f32".to_string())));
    }

    #[test]
    fn n_elements() {
        let v = |shape: Vec<usize>| {
            TensorView {
                dtype: Dtype::U8,
                shape,
                data: &[],
            }
            .n_elements()
        };
        assert_eq!(v(vec![]), 1);
        assert_eq!(v(vec![2, 3, 4]), 24);
        assert_eq!(v(vec![5, 0]), 0);
        assert_eq!(v(vec![usize::MAX, 2]), usize::MAX);
    }
}
