//! Tests against the real models of `cargo xtask fetch-models` and the reference outputs in
//! `../shared/refs` (override with `REALIZAR_REFS`). All real-model tests live in this one binary.

mod batch;
mod bench_cost;
mod bert;
mod common;
mod constrain;
mod decoder;
mod families;
mod hf_llama;
mod quant_blocks;
mod server;
mod tokenizer;
mod transplant;
