//! `realizar_runtime::bench` on the real models: weight bytes read per decoded token against
//! the figures of the reference README, and the llama-bench loop running end to end.

use realizar_format_gguf::MmapGguf;
use realizar_runtime::bench::{self, ThroughputConfig, WeightCost};
use realizar_runtime::{DecoderModel, LoadOptions};

use crate::common::{model_path, refs_dir};

/// The number of MB that follows `after` in the refs README ("SmolLM2 reads 96.6 MB ...").
fn readme_mb(after: &str) -> f64 {
    let text = std::fs::read_to_string(refs_dir().join("README.md")).expect("refs README.md");
    let rest = text
        .split_once(after)
        .unwrap_or_else(|| panic!("`{after}` not in the refs README"))
        .1;
    let number = rest
        .split_once(" MB")
        .unwrap_or_else(|| panic!("no MB figure after `{after}`"))
        .0
        .trim();
    number.parse().expect("MB figure")
}

fn cost(name: &str) -> WeightCost {
    let map = MmapGguf::open(model_path(name)).expect("open");
    let file = map.parse().expect("parse");
    WeightCost::of(&file)
}

fn check_mb(name: &str, after: &str) {
    let c = cost(name);
    let mb = c.bytes_per_token as f64 / 1e6;
    let want = readme_mb(after);
    assert!(
        (mb - want).abs() <= 0.05,
        "{name}: {mb:.3} MB per token, the refs README says {want}"
    );
    // Tied embeddings: everything is read, plus one embedding row.
    assert!(c.bytes_per_token > c.total_tensor_bytes);
    assert!(c.bytes_per_token - c.total_tensor_bytes < 1 << 20);
}

#[test]
fn smollm2_weight_bytes_per_token_match_the_refs() {
    check_mb("smollm2-135m", "SmolLM2 reads ");
}

#[test]
fn gemma3_weight_bytes_per_token_match_the_refs() {
    check_mb("gemma3-270m", "llama.cpp reaches about 36% of it); Gemma3 ");
}

#[test]
fn smollm2_matmul_flops_are_twice_its_matrix_parameters() {
    // 30 blocks of width 576, 9/3 heads of 64, FFN 1536, vocabulary 49152 (refs README).
    let (d, kv, ff, v, layers) = (576u64, 192u64, 1536u64, 49152u64, 30u64);
    let params = layers * (2 * d * d + 2 * d * kv + 3 * d * ff) + v * d;
    let c = cost("smollm2-135m");
    assert_eq!(c.matmul_params, params);
    assert_eq!(c.flops_per_token(), 2 * params);
}

#[test]
fn llama_bench_loop_runs_on_smollm2() {
    let opts = LoadOptions {
        threads: Some(1),
        ..LoadOptions::default()
    };
    let model = DecoderModel::load(model_path("smollm2-135m"), &opts).expect("load");
    let cfg = ThroughputConfig {
        prompt: 16,
        gen: 4,
        reps: 2,
        seed: 3,
    };
    let r = bench::throughput(&model, &cfg).expect("throughput");
    assert_eq!((r.prefill.len(), r.decode.len()), (2, 2));
    assert!(r
        .prefill
        .iter()
        .chain(&r.decode)
        .all(|t| t.is_finite() && *t > 0.0));
    // The batched loop: one sample per repetition and speed; arguments out of range are typed
    // errors before anything is allocated.
    let b = bench::BatchedConfig {
        prompt: 8,
        gen: 3,
        parallel: 3,
        reps: 2,
        seed: 3,
    };
    let r = bench::batched(&model, &b).expect("batched");
    assert_eq!((r.prefill.len(), r.decode.len()), (2, 2));
    assert!(r.decode.iter().all(|t| t.is_finite() && *t > 0.0));
    for bad in [
        bench::BatchedConfig {
            parallel: 0,
            ..b.clone()
        },
        bench::BatchedConfig {
            prompt: 0,
            ..b.clone()
        },
        bench::BatchedConfig {
            reps: 0,
            ..b.clone()
        },
        bench::BatchedConfig {
            parallel: 100,
            prompt: 100,
            ..b.clone()
        },
        bench::BatchedConfig {
            parallel: 64,
            prompt: 100,
            gen: 2000,
            ..b.clone()
        },
        bench::BatchedConfig {
            prompt: 1 << 20,
            parallel: 1,
            ..b.clone()
        },
    ] {
        assert!(
            matches!(
                bench::batched(&model, &bad),
                Err(bench::BenchError::InvalidArgument { .. })
            ),
            "{bad:?}"
        );
    }
    let l = bench::latency(&model, 16, 8, 3, bench::memory()).expect("latency");
    assert_eq!(l.steps_s.len(), 8);
    // SmolLM2 adds no BOS: the random prompt is all random ids inside the vocabulary.
    let mut rng = bench::SplitMix64::new(9);
    let ids = bench::random_prompt(&model, 64, &mut rng);
    assert_eq!(ids.len(), 64);
    assert!(ids.iter().all(|&id| (id as usize) < model.n_vocab()));
}
