//! Embedding speed of all-MiniLM-L6-v2 (needs `cargo xtask fetch-models`): one short sentence,
//! one 256-token text, and a batch of 16 sentences, tokenized outside the timed loop.
//!
//! `cargo bench -p realizar-runtime --bench embed`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use realizar_runtime::embed::Embedder;

const SENTENCES: [&str; 8] = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Two men pushed carts through the woods.",
    "The committee met on Tuesday to review the budget and decided that the new library would open in the spring.",
    "Residents who had waited years for the project said they were relieved; others worried about the cost.",
];

fn minilm() -> Embedder {
    let dir = std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"))
        .join("minilm-l6");
    assert!(
        dir.exists(),
        "{} not found: run `cargo xtask fetch-models`",
        dir.display()
    );
    Embedder::load(&dir).expect("loading all-MiniLM-L6-v2")
}

fn bench(c: &mut Criterion) {
    let e = minilm();
    let mut group = c.benchmark_group("minilm");
    group.sample_size(20);

    let short = e.tokenize(&SENTENCES[..1]).expect("tokenize");
    let long_text = SENTENCES.join(" ").repeat(8);
    let long = e.tokenize(&[long_text.as_str()]).expect("tokenize");
    let batch_texts: Vec<&str> = SENTENCES.iter().chain(SENTENCES.iter()).copied().collect();
    let batch = e.tokenize(&batch_texts).expect("tokenize");

    for (name, ids) in [("short", short), ("256_tokens", long), ("batch_16", batch)] {
        let tokens: usize = ids.iter().map(Vec::len).sum();
        group.throughput(Throughput::Elements(tokens as u64));
        group.bench_function(name, |b| {
            b.iter(|| e.embed_ids(black_box(&ids)).expect("embedding"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
