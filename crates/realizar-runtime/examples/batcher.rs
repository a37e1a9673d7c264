//! Continuous batching from Rust, with no HTTP: opens a GGUF chat model, starts a
//! [`Batcher`] with several slots and streams the replies of several conversations decoded
//! together, each on its own thread.
//!
//! ```text
//! cargo run --release -p realizar-runtime --example batcher -- MODEL.gguf [MAX_TOKENS]
//! ```
use std::sync::Arc;

use realizar_runtime::batcher::{BatcherConfig, GenEvent, GenRequest};
use realizar_runtime::{ChatMessage, LoadOptions, Model, SamplerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: batcher MODEL.gguf [MAX_TOKENS]";
    let path = args.next().ok_or(usage)?;
    let max_tokens: usize = args.next().map_or(Ok(48), |s| s.parse())?;
    let model = Model::open(&path, &LoadOptions::default())?;
    let questions = [
        "What is the capital of France?",
        "Name three primary colours.",
        "Why is the sea salty?",
        "Write a haiku about rain.",
    ];
    let batcher = Arc::new(model.batcher(questions.len(), BatcherConfig::default())?);
    let mut threads = Vec::new();
    for (i, q) in questions.iter().enumerate() {
        let prompt = if model.has_chat_template() {
            model.chat_prompt(&[ChatMessage::new("user", *q)])?
        } else {
            model.tokenize(q, true, false)?
        };
        let handle = batcher.submit(GenRequest {
            prompt,
            max_tokens,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            logprobs: None,
            ignore_eos: false,
            grammar: None,
            keep_special: Vec::new(),
        })?;
        let q = q.to_string();
        threads.push(std::thread::spawn(move || {
            let mut text = String::new();
            for ev in handle {
                match ev {
                    GenEvent::Delta { text: t, .. } => text.push_str(&t),
                    GenEvent::Done(s) => {
                        return format!(
                            "[{i}] {q}\n    {}\n    ({} tokens, {})",
                            text.trim(),
                            s.completion_tokens,
                            s.finish_reason.as_str()
                        )
                    }
                    GenEvent::Failed(m) => return format!("[{i}] failed: {m}"),
                }
            }
            format!("[{i}] ended without a summary")
        }));
    }
    for t in threads {
        println!("{}", t.join().map_err(|_| "a reader thread panicked")?);
    }
    Ok(())
}
