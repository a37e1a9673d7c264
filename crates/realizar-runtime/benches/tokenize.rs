//! Encoding speed of each real model's tokenizer on a generated 1 MB text of English prose,
//! code and multilingual lines (needs `cargo xtask fetch-models`).
//!
//! `cargo bench -p realizar-runtime --bench tokenize`

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use realizar_runtime::tokenizer_load::{load_tokenizer, EncodeOptions};

const ENGLISH: &str =
    "The committee met on Tuesday to review the budget, and after a long discussion \
it decided that the new library would open in the spring. Residents who had waited years for \
the project said they were relieved; others worried about the cost of maintaining it. ";
const CODE: &str = "fn main() {\n    let xs: Vec<u32> = (0..1024).map(|i| i * 3 + 7).collect();\n    \
for (i, x) in xs.iter().enumerate() {\n        if x % 5 == 0 { println!(\"{i}: {x:#x}\"); }\n    }\n}\n\
def score(tokens, weights=None):\n    return sum(w * t for t, w in zip(tokens, weights or [1.0] * len(tokens)))\n";
const MULTI: &str = "Der schnelle braune Fuchs springt über den faulen Hund. Le café est très \
chaud ce matin à Zürich. Быстрая коричневая лиса прыгает через ленивую собаку. 東京は日本の首都です。\
我们明天去北京。 नमस्ते दुनिया, आप कैसे हैं? 안녕하세요 세계 😀🎉👍🏽 — ¿Qué tal? 1,234.56 €\n";

/// About `size` bytes of text: the three kinds of text, with their words shuffled by a fixed
/// linear congruential generator so that not every line is the same.
fn corpus(size: usize) -> String {
    let mut words: Vec<&str> = Vec::new();
    for part in [ENGLISH, CODE, MULTI] {
        words.extend(part.split_inclusive(' '));
    }
    let mut out = String::with_capacity(size + 256);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < size {
        for part in [ENGLISH, CODE, MULTI] {
            out.push_str(part);
        }
        for _ in 0..64 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let i = (state >> 33) as usize % words.len();
            out.push_str(words[i]);
        }
        out.push('\n');
    }
    out
}

fn model_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("REALIZAR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let path = match name {
        "smollm2-135m" => dir.join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"),
        "gemma3-270m" => dir.join("gemma3-270m/gemma-3-270m-Q4_K_M.gguf"),
        _ => dir.join(name),
    };
    assert!(
        path.exists(),
        "{} missing: run `cargo xtask fetch-models`",
        path.display()
    );
    path
}

fn bench(c: &mut Criterion) {
    let text = corpus(1 << 20);
    let mut g = c.benchmark_group("encode_1MB");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.sample_size(10);
    for name in ["smollm2-135m", "gemma3-270m", "minilm-l6"] {
        let tok = load_tokenizer(&model_path(name))
            .expect("load tokenizer")
            .tokenizer;
        g.bench_function(name, |b| {
            // WordPiece tokenizes the whole text before truncating to 256 tokens.
            b.iter(|| black_box(tok.encode(black_box(&text), EncodeOptions::default())))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("load");
    g.sample_size(10);
    g.bench_function("gemma3-270m", |b| {
        let path = model_path("gemma3-270m");
        b.iter(|| black_box(load_tokenizer(&path).expect("load")))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
