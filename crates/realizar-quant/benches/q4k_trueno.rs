//! Peer benchmark: the Q4_K matrix-vector product of realizar-quant next to trueno 0.18's, on
//! the same raw GGUF Q4_K bytes (ggml's 144-byte super-blocks), in GB/s of weight bytes read.
//!
//! trueno is a peer on record, not a dependency of the engine (a dev-dependency of this bench
//! only). Its `backends::q4k::matmul_q4k_f32_dispatch` takes the Q4_K rows and an f32 input
//! and returns a new output vector (it dequantizes in registers and multiplies in f32, picking
//! AVX-512/AVX2 at run time, and goes parallel on its own above 8M weights, which the shapes
//! here stay below). realizar-quant's `matvec` multiplies with the input quantized to Q8_K
//! (integer dot products, as ggml does), so its timing is given both with and without that
//! quantization of the input. Before timing, the three results are checked against an f32
//! product of the dequantized weights.
//!
//! Shapes: 2048×2048 (a 1B-class attention projection, 2.4 MB of Q4_K) and 576×1536
//! (SmolLM2's FFN down projection: 1536 inputs, 576 outputs; 0.5 MB). Both fit in L2/L3 on
//! most machines, so this compares kernels rather than memory.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use realizar_quant::{dequantize_row, matvec, quantize_row, QuantType};
use std::hint::black_box;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

/// `rows` Q4_K rows of `cols` weights each, quantized from random values.
fn q4k_weights(rows: usize, cols: usize) -> Vec<u8> {
    let rb = QuantType::Q4_K.row_bytes(cols).expect("block multiple");
    let src = values(rows * cols, 1);
    let mut w = vec![0u8; rb * rows];
    for (dst, row) in w.chunks_exact_mut(rb).zip(src.chunks_exact(cols)) {
        quantize_row(QuantType::Q4_K, row, dst).expect("quantize");
    }
    w
}

/// The f32 product of the dequantized weights with `x` (the reference of the check).
fn reference(w: &[u8], x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let rb = QuantType::Q4_K.row_bytes(cols).expect("block multiple");
    let mut row = vec![0f32; cols];
    (0..rows)
        .map(|r| {
            dequantize_row(QuantType::Q4_K, &w[r * rb..(r + 1) * rb], &mut row).expect("deq");
            row.iter().zip(x).map(|(a, b)| a * b).sum()
        })
        .collect()
}

fn ours(w: &[u8], x: &[f32], rows: usize, cols: usize, act: &mut [u8], out: &mut [f32]) {
    quantize_row(QuantType::Q8_K, x, act).expect("quantize activations");
    matvec(QuantType::Q4_K, cols, w, 0..rows, act, out).expect("matvec");
}

fn check(name: &str, got: &[f32], want: &[f32]) {
    let scale = want.iter().map(|v| v.abs()).fold(0f32, f32::max).max(1e-6);
    let worst = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0f32, f32::max);
    assert_eq!(got.len(), want.len(), "{name}: output length");
    assert!(worst < 0.02, "{name}: off by {worst} of the largest output");
}

fn q4k_matvec(c: &mut Criterion) {
    let mut g = c.benchmark_group("q4k_matvec");
    for (rows, cols) in [(2048usize, 2048usize), (576, 1536)] {
        let w = q4k_weights(rows, cols);
        let x = values(cols, 2);
        let mut act = vec![0u8; QuantType::Q8_K.row_bytes(cols).expect("block multiple")];
        let mut out = vec![0f32; rows];
        let want = reference(&w, &x, rows, cols);
        ours(&w, &x, rows, cols, &mut act, &mut out);
        check("realizar", &out, &want);
        let theirs = trueno::backends::q4k::matmul_q4k_f32_dispatch(&w, &x, rows, cols);
        check("trueno", &theirs, &want);

        g.throughput(Throughput::Bytes(w.len() as u64));
        let shape = format!("{rows}x{cols}");
        g.bench_function(format!("realizar_q8k_act/{shape}"), |b| {
            b.iter(|| ours(black_box(&w), black_box(&x), rows, cols, &mut act, &mut out))
        });
        g.bench_function(format!("realizar_matvec_only/{shape}"), |b| {
            b.iter(|| {
                matvec(
                    QuantType::Q4_K,
                    cols,
                    black_box(&w),
                    0..rows,
                    black_box(&act),
                    &mut out,
                )
            })
        });
        g.bench_function(format!("trueno_0.18/{shape}"), |b| {
            b.iter(|| {
                trueno::backends::q4k::matmul_q4k_f32_dispatch(
                    black_box(&w),
                    black_box(&x),
                    rows,
                    cols,
                )
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(3));
    targets = q4k_matvec
}
criterion_main!(benches);
