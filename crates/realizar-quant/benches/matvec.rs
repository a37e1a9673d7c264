//! `matvec` over a weight matrix larger than the caches (the decode hot path, memory-bound)
//! and `matmul` for a prefill batch, in GB/s of weight bytes read.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use realizar_quant::{matmul, matvec, QuantType};
use std::hint::black_box;

/// Weight bytes per matrix: well past L2/L3 so each call streams from memory.
const MATRIX_BYTES: usize = 48 << 20;

fn matvec_bench(c: &mut Criterion) {
    let n = 2048;
    let mut g = c.benchmark_group("matvec");
    for ty in common::TYPES {
        let row = ty.row_bytes(n).unwrap_or(1);
        let rows = MATRIX_BYTES / row;
        let w = common::weights(ty, n, rows);
        let a = common::activation(ty, n, 0);
        let mut out = vec![0f32; rows];
        g.throughput(Throughput::Bytes(w.len() as u64));
        g.bench_function(format!("{ty}"), |b| {
            b.iter(|| matvec(ty, n, black_box(&w), 0..rows, black_box(&a), &mut out))
        });
    }
    g.finish();
}

fn matmul_bench(c: &mut Criterion) {
    let (n, rows, m) = (1024, 1024, 32);
    let mut g = c.benchmark_group("matmul_m32");
    for ty in [QuantType::Q4_1, QuantType::Q5_0, QuantType::Q4_K] {
        let w = common::weights(ty, n, rows);
        let a: Vec<u8> = (0..m).flat_map(|i| common::activation(ty, n, i)).collect();
        let mut out = vec![0f32; m * rows];
        g.throughput(Throughput::Bytes((w.len() * m) as u64));
        g.bench_function(format!("{ty}"), |b| {
            b.iter(|| {
                matmul(
                    ty,
                    n,
                    black_box(&w),
                    0..rows,
                    black_box(&a),
                    m,
                    &mut out,
                    rows,
                )
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(3));
    targets = matvec_bench, matmul_bench
}
criterion_main!(benches);
