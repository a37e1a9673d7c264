//! Activation rows packed once for several matrix products ([`PackedActs`]).
//!
//! The tile kernels for several activation rows (`simd/tile512.rs`) read their activation
//! operands from packed tiles: per block, eight rows' quants two rows per 512-bit register,
//! their scales spread over each half, and Q8_1's scaled sums or the offset types'
//! corrections. A call to [`crate::matmul`] packs its own; a caller that runs several
//! products of the same activations (the row chunks of a matrix on several threads, or
//! several matrices) packs them once into a [`PackedActs`] and runs [`crate::matmul_packed`].

use core::fmt;
use core::ops::Range;

use crate::blocks::{cast, BlockQ8_0, BlockQ8_1};
use crate::{geometry, simd, QuantError, QuantType};

/// Activation rows per tile (two per register, four registers).
pub(crate) const TILE: usize = 8;

/// Block `b` of eight Q8_1 activation rows, packed.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct TileQ8_1 {
    /// Rows `2j` and `2j + 1`'s quants in the low and high 32 bytes of `q[j]`.
    pub(crate) q: [[i8; 64]; 4],
    /// Their scales `d`, each over the eight lanes of its half.
    pub(crate) d: [[f32; 16]; 4],
    /// The rows' `s` (the scaled sums), row `i` in lane `i`.
    pub(crate) s: [f32; 8],
}

/// Block `b` of eight Q8_0 activation rows, packed for weights offset by some `o`.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
pub(crate) struct TileQ8_0 {
    /// Rows `2j` and `2j + 1`'s quants in the low and high 32 bytes of `q[j]`.
    pub(crate) q: [[i8; 64]; 4],
    /// Their scales `d`, each over the eight lanes of its half.
    pub(crate) d: [[f32; 16]; 4],
    /// `-(o * (y[4l] + y[4l+1] + y[4l+2] + y[4l+3]))` for lane `l` of each half: the offset
    /// correction of `vpdpbusd`'s lane `l`, as its starting value.
    pub(crate) c: [[i32; 16]; 4],
}

impl TileQ8_1 {
    pub(crate) const ZERO: TileQ8_1 = TileQ8_1 {
        q: [[0; 64]; 4],
        d: [[0.0; 16]; 4],
        s: [0.0; 8],
    };
}

impl TileQ8_0 {
    pub(crate) const ZERO: TileQ8_0 = TileQ8_0 {
        q: [[0; 64]; 4],
        d: [[0.0; 16]; 4],
        c: [[0; 16]; 4],
    };
}

/// Packs rows `rows` (at most eight; missing ones stay zero) of `acts` (`ab` blocks a row),
/// blocks `0..tiles.len()`, into `tiles`: `put(tile, block, k)` writes block `b` of the tile's
/// row `k` into tile `b`.
fn pack_rows<T: Copy, Y>(
    acts: &[Y],
    ab: usize,
    rows: Range<usize>,
    tiles: &mut [T],
    zero: T,
    put: impl Fn(&mut T, &Y, usize),
) {
    if rows.len() < TILE {
        tiles.fill(zero);
    }
    for (k, i) in rows.enumerate().take(TILE) {
        let row = acts.get(i * ab..(i + 1) * ab).unwrap_or_default();
        for (t, y) in tiles.iter_mut().zip(row) {
            put(t, y, k);
        }
    }
}

/// [`pack_rows`] for Q8_1 activations (Q4_1 weights).
fn pack_q8_1(acts: &[BlockQ8_1], ab: usize, rows: Range<usize>, tiles: &mut [TileQ8_1]) {
    pack_rows(acts, ab, rows, tiles, TileQ8_1::ZERO, |t, y, k| {
        let (j, h) = (k / 2, 32 * (k % 2));
        if let (Some(q), Some(d)) = (t.q[j].get_mut(h..h + 32), t.d[j].get_mut(h / 4..h / 4 + 8)) {
            q.copy_from_slice(&y.qs);
            d.fill(y.d.to_f32());
        }
        if let Some(s) = t.s.get_mut(k) {
            *s = y.s.to_f32();
        }
    });
}

/// [`pack_rows`] for Q8_0 activations against weights offset by `offset`.
fn pack_q8_0(
    acts: &[BlockQ8_0],
    ab: usize,
    rows: Range<usize>,
    offset: i32,
    tiles: &mut [TileQ8_0],
) {
    pack_rows(acts, ab, rows, tiles, TileQ8_0::ZERO, |t, y, k| {
        let (j, h) = (k / 2, 32 * (k % 2));
        if let (Some(q), Some(d), Some(c)) = (
            t.q[j].get_mut(h..h + 32),
            t.d[j].get_mut(h / 4..h / 4 + 8),
            t.c[j].get_mut(h / 4..h / 4 + 8),
        ) {
            q.copy_from_slice(&y.qs);
            d.fill(y.d.to_f32());
            for (c, quad) in c.iter_mut().zip(y.qs.chunks_exact(4)) {
                *c = -offset * quad.iter().map(|&v| i32::from(v)).sum::<i32>();
            }
        }
    });
}

/// Activation rows packed for [`crate::matmul_packed`] with one weight type (reused: packing
/// again keeps the storage).
#[derive(Clone, Default)]
pub struct PackedActs {
    ty: Option<QuantType>,
    n: usize,
    m: usize,
    nb: usize,
    q8_1: Vec<TileQ8_1>,
    q8_0: Vec<TileQ8_0>,
}

impl fmt::Debug for PackedActs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackedActs")
            .field("ty", &self.ty)
            .field("n", &self.n)
            .field("m", &self.m)
            .finish()
    }
}

impl PackedActs {
    /// Nothing packed yet.
    pub fn new() -> PackedActs {
        PackedActs::default()
    }

    /// Packs the `m` rows of `act` (each `n` elements quantized to `ty.vec_dot_type()`) for
    /// products with weights of type `ty`. `Ok(false)` (and nothing packed) when the packed
    /// kernels do not take this product on this CPU (no AVX-512, `m < 2`, a type without
    /// them, or more rows than they run faster): use [`crate::matmul`] then.
    pub fn pack(
        &mut self,
        ty: QuantType,
        n: usize,
        act: &[u8],
        m: usize,
    ) -> Result<bool, QuantError> {
        self.ty = None;
        if !simd::tiles_take(ty, m) {
            return Ok(false);
        }
        let g = geometry(ty, n)?;
        let vdt = ty.vec_dot_type();
        let need = m.saturating_mul(g.a_row);
        let act = act.get(..need).ok_or(QuantError::WrongLength {
            what: "act",
            expected: need,
            actual: act.len(),
        })?;
        let nb = n / vdt.block_size();
        let tiles = m.div_ceil(TILE) * nb;
        let offset = match ty {
            QuantType::Q8_0 => 128,
            QuantType::Q5_0 => 16,
            _ => 8,
        };
        if nb > 0 {
            if vdt == QuantType::Q8_1 {
                let acts: &[BlockQ8_1] = cast("act", vdt, act, need)?;
                self.q8_1.resize(tiles, TileQ8_1::ZERO);
                for (t, tl) in self.q8_1.chunks_exact_mut(nb).enumerate() {
                    pack_q8_1(acts, nb, TILE * t..(TILE * t + TILE).min(m), tl);
                }
            } else {
                let acts: &[BlockQ8_0] = cast("act", vdt, act, need)?;
                self.q8_0.resize(tiles, TileQ8_0::ZERO);
                for (t, tl) in self.q8_0.chunks_exact_mut(nb).enumerate() {
                    pack_q8_0(acts, nb, TILE * t..(TILE * t + TILE).min(m), offset, tl);
                }
            }
        }
        (self.ty, self.n, self.m, self.nb) = (Some(ty), n, m, nb);
        Ok(true)
    }

    /// The weight type and width the rows are packed for, and how many rows.
    pub fn packed_for(&self) -> Option<(QuantType, usize, usize)> {
        self.ty.map(|ty| (ty, self.n, self.m))
    }

    /// Blocks per row.
    pub(crate) fn blocks(&self) -> usize {
        self.nb
    }

    /// The Q8_1 tiles (for Q4_1 weights).
    pub(crate) fn q8_1(&self) -> &[TileQ8_1] {
        self.q8_1
            .get(..self.m.div_ceil(TILE) * self.nb)
            .unwrap_or_default()
    }

    /// The Q8_0 tiles (for Q8_0 and Q5_0 weights).
    pub(crate) fn q8_0(&self) -> &[TileQ8_0] {
        self.q8_0
            .get(..self.m.div_ceil(TILE) * self.nb)
            .unwrap_or_default()
    }
}
