//! Activation quantization (Q8_0, Q8_1, Q8_K), SIMD against the scalar reference, in GB/s of
//! f32 input.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use realizar_quant::{quantize_row, quantize_row_scalar, QuantType};
use std::hint::black_box;

fn quantize(c: &mut Criterion) {
    let n = 4096;
    let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
    let mut g = c.benchmark_group("quantize_activations");
    g.throughput(Throughput::Bytes((n * 4) as u64));
    for ty in [QuantType::Q8_0, QuantType::Q8_1, QuantType::Q8_K] {
        let mut q = vec![0u8; ty.row_bytes(n).unwrap_or(0)];
        g.bench_function(format!("{ty}/simd"), |b| {
            b.iter(|| quantize_row(ty, black_box(&x), &mut q))
        });
        g.bench_function(format!("{ty}/scalar"), |b| {
            b.iter(|| quantize_row_scalar(ty, black_box(&x), &mut q))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = quantize
}
criterion_main!(benches);
