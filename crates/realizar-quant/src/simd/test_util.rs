//! What the kernels' twin tests share: a seeded generator, blocks of random bytes, and the check
//! that a kernel's one- and four-row forms equal its scalar twin bit for bit.

use crate::blocks::BlockQ8K;

/// A small deterministic generator (xorshift64), so failures reproduce.
pub(super) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn fill(&mut self, b: &mut [u8]) {
        for v in b {
            *v = self.next() as u8;
        }
    }

    /// A finite scale in about [-1, 1].
    pub fn scale(&mut self) -> f32 {
        ((self.next() % 2000) as f32 - 1000.0) / 997.0
    }
}

/// `n` blocks of random bytes (every bit pattern), then `fix` (to set finite scales).
pub(super) fn blocks<T: bytemuck::Pod>(
    rng: &mut Rng,
    n: usize,
    fix: impl Fn(&mut T, &mut Rng),
) -> Vec<T> {
    (0..n)
        .map(|_| {
            let mut b = T::zeroed();
            rng.fill(bytemuck::bytes_of_mut(&mut b));
            fix(&mut b, rng);
            b
        })
        .collect()
}

/// Four rows of `nb` random Q8_K blocks (every activation byte, -128 included, and bsums
/// unrelated to the quants) with finite scales.
pub(super) fn q8k_rows(rng: &mut Rng, nb: usize) -> Vec<Vec<BlockQ8K>> {
    (0..4)
        .map(|_| blocks(rng, nb, |b: &mut BlockQ8K, r| b.d = r.scale()))
        .collect()
}

/// A scalar twin, the one-row and four-row kernels, and a name.
pub(super) type Twin<X> = (
    fn(&[X], &[BlockQ8K]) -> f32,
    fn(&[X], &[BlockQ8K]) -> f32,
    fn(&[X], [&[BlockQ8K]; 4]) -> [f32; 4],
    &'static str,
);

/// Each kernel of `twins`, one and four activation rows, equals its scalar twin bit for bit.
pub(super) fn check_twins<X>(x: &[X], ys: &[Vec<BlockQ8K>], twins: &[Twin<X>]) {
    for (scalar, one, four, what) in twins {
        let want: Vec<u32> = ys.iter().map(|y| scalar(x, y).to_bits()).collect();
        let got: Vec<u32> = ys.iter().map(|y| one(x, y).to_bits()).collect();
        assert_eq!(got, want, "{what} one row, {} blocks", x.len());
        let quad = four(x, [&ys[0], &ys[1], &ys[2], &ys[3]]).map(f32::to_bits);
        assert_eq!(quad.to_vec(), want, "{what} four rows, {} blocks", x.len());
    }
}
