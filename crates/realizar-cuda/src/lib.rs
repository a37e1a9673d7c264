//! The CUDA backend of Realizar: an implementation of `realizar-nn`'s [`Backend`] trait for
//! NVIDIA GPUs (through `cudarc`, behind the `cuda` feature).
//!
//! Its kernels are not written yet. The crate compiles against the trait in every build, so the
//! workspace always builds and a caller that asks for CUDA gets a typed
//! [`CudaError::Unavailable`] instead of a link error: [`CudaBackend::new`] cannot succeed, and
//! a `CudaBackend` value cannot exist (it holds an uninhabited field), so the trait methods
//! below are never reached.
#![forbid(unsafe_code)]

use core::convert::Infallible;
use core::fmt;

use realizar_nn::{
    ActScratch, AttentionShape, Backend, EncoderSeq, KvLayout, KvState, NnError, QTensor, Queries,
    Rows, Spread, Weight, WeightBytes,
};

/// Why the CUDA backend cannot run.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CudaError {
    /// This build has no CUDA backend.
    Unavailable {
        /// What is missing.
        reason: &'static str,
    },
}

impl fmt::Display for CudaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CudaError::Unavailable { reason } => write!(f, "CUDA is unavailable: {reason}"),
        }
    }
}

impl std::error::Error for CudaError {}

/// The CUDA backend (not constructible in this version: see the crate documentation).
pub struct CudaBackend {
    never: Infallible,
}

impl fmt::Debug for CudaBackend {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.never {}
    }
}

impl CudaBackend {
    /// The backend on GPU `device`. Always [`CudaError::Unavailable`] in this version.
    pub fn new(device: usize) -> Result<CudaBackend, CudaError> {
        let _ = device;
        Err(CudaError::Unavailable {
            reason: if cfg!(feature = "cuda") {
                "the CUDA kernels are not implemented yet"
            } else {
                "built without the `cuda` feature"
            },
        })
    }
}

impl Backend for CudaBackend {
    fn name(&self) -> &str {
        match self.never {}
    }

    fn threads(&self) -> usize {
        match self.never {}
    }

    fn upload(&self, _: QTensor, _: &WeightBytes) -> Result<Weight, NnError> {
        match self.never {}
    }

    fn get_rows(&self, _: &Weight, _: &[u32], _: &mut [f32]) -> Result<(), NnError> {
        match self.never {}
    }

    fn new_kv(&self, _: KvLayout) -> Result<Box<dyn KvState>, NnError> {
        match self.never {}
    }

    fn store_kv(
        &self,
        _: &mut dyn KvState,
        _: usize,
        _: usize,
        _: &[f32],
        _: &[f32],
    ) -> Result<(), NnError> {
        match self.never {}
    }

    fn linear(
        &self,
        _: &[&Weight],
        _: Rows<'_>,
        _: &mut [&mut [f32]],
        _: &mut ActScratch,
    ) -> Result<(), NnError> {
        match self.never {}
    }

    fn encoder_attention(
        &self,
        _: &AttentionShape,
        _: &[f32],
        _: &[EncoderSeq<'_>],
        _: &mut [f32],
    ) -> Result<(), NnError> {
        match self.never {}
    }

    fn attention(
        &self,
        _: &AttentionShape,
        _: Queries<'_>,
        _: Spread,
        _: &mut [f32],
    ) -> Result<(), NnError> {
        match self.never {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asking_for_cuda_is_a_typed_error() {
        let e = CudaBackend::new(0).map(|_| ()).unwrap_err();
        assert!(matches!(e, CudaError::Unavailable { .. }));
        assert!(e.to_string().starts_with("CUDA is unavailable"));
    }
}
