//! The CUDA backend of Realizar.
//!
//! This crate will implement the compute backend trait of `realizar-nn` on NVIDIA GPUs through
//! `cudarc`, behind the `cuda` feature. It holds no functionality yet.
#![forbid(unsafe_code)]
