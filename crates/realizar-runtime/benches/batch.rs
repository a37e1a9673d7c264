//! Aggregate decode speed of SmolLM2-135M with the batch decoder (needs `cargo xtask
//! fetch-models`): one decode step for 1, 2, 4 and 8 sequences of 64 positions each. The
//! throughput is tokens (sequences) per step, so the reports compare aggregate tokens/s.
//!
//! `cargo bench -p realizar-runtime --bench batch`

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use realizar_runtime::batch::{BatchDecoder, BatchForward, BatchOptions, SeqChunk};
use realizar_runtime::{DecoderModel, LoadOptions};

fn smollm2() -> DecoderModel {
    let path = std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
        .join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.exists(),
        "{} not found: run `cargo xtask fetch-models`",
        path.display()
    );
    DecoderModel::load(&path, &LoadOptions::default()).expect("loading SmolLM2")
}

fn bench(c: &mut Criterion) {
    let model = smollm2();
    let mut group = c.benchmark_group("smollm2_decode_step");
    group.sample_size(10);
    let prompt: Vec<u32> = (0..64).map(|i| 100 + i * 37).collect();
    for n in [1usize, 2, 4, 8] {
        let mut bd = BatchDecoder::new(
            &model,
            BatchOptions {
                slots: n,
                ctx: Some(2048),
                max_rows: 64 + n,
                ..BatchOptions::default()
            },
        )
        .expect("batch decoder");
        let tokens: Vec<[u32; 1]> = (0..n).map(|i| [200 + i as u32]).collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("{n}_sequences"), |b| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    // Fresh slots at 64 positions, then up to 256 steps (positions stay short).
                    for s in 0..n {
                        bd.clear_slot(s);
                        bd.forward(&[SeqChunk {
                            slot: s,
                            tokens: &prompt,
                            logits: false,
                        }])
                        .expect("prefill");
                    }
                    let steps = left.min(256);
                    let chunks: Vec<SeqChunk<'_>> = tokens
                        .iter()
                        .enumerate()
                        .map(|(s, t)| SeqChunk {
                            slot: s,
                            tokens: t,
                            logits: true,
                        })
                        .collect();
                    let t0 = std::time::Instant::now();
                    for _ in 0..steps {
                        std::hint::black_box(bd.forward(&chunks).expect("step"));
                    }
                    total += t0.elapsed();
                    left -= steps;
                }
                total
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
