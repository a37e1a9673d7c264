//! Embeds a few sentences with a sentence-transformers model and prints their pairwise cosine
//! similarities.
//!
//! ```text
//! cargo run --release -p realizar-runtime --example embed -- [MODEL] [SENTENCE ...]
//! ```
//!
//! `MODEL` is a model directory or a name (`minilm-l6`, the default) under `REALIZAR_MODELS`
//! (default `./models`).
use realizar_runtime::embed::Embedder;
use realizar_runtime::models::resolve_model;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args.next().unwrap_or_else(|| "minilm-l6".to_string());
    let mut sentences: Vec<String> = args.collect();
    if sentences.is_empty() {
        sentences = [
            "A man is eating food.",
            "A man is eating a piece of bread.",
            "The new movie is awesome.",
            "The new film is great.",
        ]
        .map(String::from)
        .to_vec();
    }

    let embedder = Embedder::load(resolve_model(&model))?;
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let start = std::time::Instant::now();
    let vectors = embedder.embed_texts(&texts)?;
    println!(
        "{} sentences, {} dimensions, {:.1} ms",
        vectors.len(),
        embedder.dim(),
        start.elapsed().as_secs_f64() * 1e3
    );
    for (i, a) in vectors.iter().enumerate() {
        for (j, b) in vectors.iter().enumerate().skip(i + 1) {
            println!(
                "{:+.4}  {:?} ~ {:?}",
                cosine(a, b),
                sentences[i],
                sentences[j]
            );
        }
    }
    Ok(())
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}
