//! The key/value cache of a decoder: one allocation at construction, bounded capacity.

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::NnError;

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    /// Half precision (llama.cpp's default; halves the memory).
    #[default]
    F16,
    /// Single precision.
    F32,
}

/// Storage of one layer's keys or values: `[n_head_kv][capacity][head_dim]`, so that
/// attention reads one head's positions sequentially.
#[derive(Clone, Debug)]
pub enum KvStore {
    /// f16 elements.
    F16(Vec<f16>),
    /// f32 elements.
    F32(Vec<f32>),
}

impl KvStore {
    /// `n` zeroed elements, or `None` when the memory cannot be had (no abort).
    fn new(ty: KvType, n: usize) -> Option<KvStore> {
        fn zeroed<T: Clone>(n: usize, zero: T) -> Option<Vec<T>> {
            let mut v = Vec::new();
            v.try_reserve_exact(n).ok()?;
            v.resize(n, zero);
            Some(v)
        }
        Some(match ty {
            KvType::F16 => KvStore::F16(zeroed(n, f16::ZERO)?),
            KvType::F32 => KvStore::F32(zeroed(n, 0.0)?),
        })
    }

    fn write(&mut self, at: usize, src: &[f32]) {
        match self {
            KvStore::F16(v) => {
                if let Some(dst) = v.get_mut(at..at + src.len()) {
                    dst.convert_from_f32_slice(src);
                }
            }
            KvStore::F32(v) => {
                if let Some(dst) = v.get_mut(at..at + src.len()) {
                    dst.copy_from_slice(src);
                }
            }
        }
    }
}

/// A read-only view of one head's keys or values over the filled positions:
/// `len` rows of `head_dim` elements.
#[derive(Clone, Copy, Debug)]
pub enum KvView<'a> {
    /// f16 rows.
    F16(&'a [f16]),
    /// f32 rows.
    F32(&'a [f32]),
}

/// What a layer stack's keys and values are stored in: one sequence's per-layer state, made by
/// its backend ([`crate::Backend::new_kv`]) and written and read only through it. The CPU and
/// reference backends keep a host [`KvCache`]; a device backend keeps device memory.
pub trait KvState: Send + Sync + core::fmt::Debug {
    /// Positions filled.
    fn len(&self) -> usize;
    /// Whether no position is filled.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Positions it can hold.
    fn capacity(&self) -> usize;
    /// Forgets every position (the memory is kept).
    fn clear(&mut self);
    /// Drops positions from `len` on (keeps the first `len`).
    fn truncate(&mut self, len: usize);
    /// Marks `n` more positions as filled.
    fn advance(&mut self, n: usize);
    /// Bytes held.
    fn memory_bytes(&self) -> usize;
    /// Whether it was made for `n_layer` layers of `n_head_kv` heads of `head_dim`.
    fn shape_matches(&self, n_layer: usize, n_head_kv: usize, head_dim: usize) -> bool;
    /// Checks that `n` more positions fit.
    fn check_room(&self, n: usize) -> Result<(), NnError> {
        match self.len().checked_add(n) {
            Some(needed) if needed <= self.capacity() => Ok(()),
            _ => Err(NnError::ContextOverflow {
                needed: self.len().saturating_add(n),
                capacity: self.capacity(),
            }),
        }
    }
    /// The host cache, when this state is one (for host backends).
    fn as_host(&self) -> Option<&KvCache> {
        None
    }
    /// The host cache, mutably, when this state is one.
    fn as_host_mut(&mut self) -> Option<&mut KvCache> {
        None
    }
}

impl KvState for KvCache {
    fn len(&self) -> usize {
        KvCache::len(self)
    }

    fn capacity(&self) -> usize {
        KvCache::capacity(self)
    }

    fn clear(&mut self) {
        KvCache::clear(self)
    }

    fn truncate(&mut self, len: usize) {
        KvCache::truncate(self, len)
    }

    fn advance(&mut self, n: usize) {
        KvCache::advance(self, n)
    }

    fn memory_bytes(&self) -> usize {
        KvCache::memory_bytes(self)
    }

    fn shape_matches(&self, n_layer: usize, n_head_kv: usize, head_dim: usize) -> bool {
        KvCache::shape_matches(self, n_layer, n_head_kv, head_dim)
    }

    fn as_host(&self) -> Option<&KvCache> {
        Some(self)
    }

    fn as_host_mut(&mut self) -> Option<&mut KvCache> {
        Some(self)
    }
}

/// The KV cache of all layers on the host, allocated once for `capacity` positions.
#[derive(Clone, Debug)]
pub struct KvCache {
    ty: KvType,
    n_head_kv: usize,
    head_dim: usize,
    capacity: usize,
    len: usize,
    k: Vec<KvStore>,
    v: Vec<KvStore>,
}

impl KvCache {
    /// Allocates a cache for `n_layer` layers of `n_head_kv` heads of `head_dim`, holding
    /// `capacity` positions.
    pub fn new(
        ty: KvType,
        n_layer: usize,
        n_head_kv: usize,
        head_dim: usize,
        capacity: usize,
    ) -> Result<KvCache, NnError> {
        let per_layer = n_head_kv
            .checked_mul(head_dim)
            .and_then(|x| x.checked_mul(capacity))
            .filter(|&x| x > 0 && x <= isize::MAX as usize / 8)
            .ok_or_else(|| NnError::InvalidArgument {
                reason: format!(
                    "KV cache of {capacity} positions × {n_head_kv} heads × {head_dim} is empty or too large"
                ),
            })?;
        let elem = match ty {
            KvType::F16 => 2,
            KvType::F32 => 4,
        };
        let total = (2 * n_layer).saturating_mul(per_layer).saturating_mul(elem);
        let stores = || {
            (0..n_layer)
                .map(|_| KvStore::new(ty, per_layer))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| NnError::InvalidArgument {
                    reason: format!(
                        "a KV cache of {capacity} positions needs {} MiB, more memory than can be had",
                        total >> 20
                    ),
                })
        };
        Ok(KvCache {
            ty,
            n_head_kv,
            head_dim,
            capacity,
            len: 0,
            k: stores()?,
            v: stores()?,
        })
    }

    /// The element type.
    pub fn kv_type(&self) -> KvType {
        self.ty
    }

    /// Positions filled.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions it can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forgets every position (the memory is kept).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Drops positions from `len` on (keeps the first `len`).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Bytes held by the cache.
    pub fn memory_bytes(&self) -> usize {
        let elem = match self.ty {
            KvType::F16 => 2,
            KvType::F32 => 4,
        };
        2 * self.k.len() * self.n_head_kv * self.head_dim * self.capacity * elem
    }

    /// Whether it was made for `n_layer` layers of `n_head_kv` heads of `head_dim`.
    pub fn shape_matches(&self, n_layer: usize, n_head_kv: usize, head_dim: usize) -> bool {
        self.k.len() == n_layer && self.n_head_kv == n_head_kv && self.head_dim == head_dim
    }

    /// Stores the keys and values (`n_head_kv * head_dim` each) of position `pos` of `layer`.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.head_dim;
        for g in 0..self.n_head_kv {
            let at = (g * self.capacity + pos) * hd;
            if let (Some(ks), Some(vs)) = (k.get(g * hd..(g + 1) * hd), v.get(g * hd..(g + 1) * hd))
            {
                if let Some(store) = self.k.get_mut(layer) {
                    store.write(at, ks);
                }
                if let Some(store) = self.v.get_mut(layer) {
                    store.write(at, vs);
                }
            }
        }
    }

    /// Marks `n` more positions as filled.
    pub fn advance(&mut self, n: usize) {
        self.len = (self.len + n).min(self.capacity);
    }

    /// Keys and values of head `g` of `layer` for positions `0..n`.
    pub fn head(&self, layer: usize, g: usize, n: usize) -> Option<(KvView<'_>, KvView<'_>)> {
        let hd = self.head_dim;
        let start = g.checked_mul(self.capacity)?.checked_mul(hd)?;
        let range = start..start.checked_add(n.min(self.capacity).checked_mul(hd)?)?;
        fn view(s: &KvStore, range: core::ops::Range<usize>) -> Option<KvView<'_>> {
            Some(match s {
                KvStore::F16(v) => KvView::F16(v.get(range)?),
                KvStore::F32(v) => KvView::F32(v.get(range)?),
            })
        }
        Some((
            view(self.k.get(layer)?, range.clone())?,
            view(self.v.get(layer)?, range)?,
        ))
    }

    /// The head dimension.
    pub fn head_dim(&self) -> usize {
        self.head_dim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_and_reads_back_by_head() {
        let mut c = KvCache::new(KvType::F32, 2, 2, 3, 4).unwrap();
        c.store(1, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[7.0; 6]);
        c.advance(3);
        let (k, v) = c.head(1, 1, 3).unwrap();
        match (k, v) {
            (KvView::F32(k), KvView::F32(v)) => {
                assert_eq!(k.len(), 9);
                assert_eq!(&k[6..9], &[4.0, 5.0, 6.0]);
                assert_eq!(v[8], 7.0);
            }
            _ => panic!("wrong view type"),
        }
        assert_eq!(c.len(), 3);
        assert!(c.check_room(1).is_ok());
        assert!(matches!(
            c.check_room(2),
            Err(NnError::ContextOverflow {
                needed: 5,
                capacity: 4
            })
        ));
    }

    #[test]
    fn f16_cache_rounds() {
        let mut c = KvCache::new(KvType::F16, 1, 1, 2, 2).unwrap();
        c.store(0, 0, &[1.0 / 3.0, 2.0], &[0.1, 0.2]);
        c.advance(1);
        let (k, _) = c.head(0, 0, 1).unwrap();
        let KvView::F16(k) = k else {
            panic!("wrong view type")
        };
        assert_eq!(k[0].to_f32(), f16::from_f32(1.0 / 3.0).to_f32());
        // k and v × 1 layer × 1 head × 2 dims × 2 positions × 2 bytes
        assert_eq!(c.memory_bytes(), 16);
    }

    #[test]
    fn zero_sized_cache_is_an_error() {
        assert!(KvCache::new(KvType::F16, 1, 0, 2, 2).is_err());
        assert!(KvCache::new(KvType::F16, 1, 1, 2, 0).is_err());
    }
}
