//! `vec_dot` of one row that stays in cache: the kernels' compute throughput, in GB/s of
//! weight bytes, SIMD against the scalar twin.

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use realizar_quant::{vec_dot, vec_dot_scalar};
use std::hint::black_box;

fn dot(c: &mut Criterion) {
    let n = 4096;
    let mut g = c.benchmark_group("dot");
    for ty in common::TYPES {
        let w = common::weights(ty, n, 1);
        let a = common::activation(ty, n, 0);
        g.throughput(Throughput::Bytes(w.len() as u64));
        g.bench_function(format!("{ty}/simd"), |b| {
            b.iter(|| vec_dot(ty, n, black_box(&w), black_box(&a)))
        });
        g.bench_function(format!("{ty}/scalar"), |b| {
            b.iter(|| vec_dot_scalar(ty, n, black_box(&w), black_box(&a)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(2));
    targets = dot
}
criterion_main!(benches);
