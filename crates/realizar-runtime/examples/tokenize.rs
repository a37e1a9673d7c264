//! Tokenizes a text with a real model's tokenizer (a `.gguf` file or a Hugging Face directory),
//! printing ids and pieces, and renders the model's chat template when it has one.
//!
//! `cargo run --release -p realizar-runtime --example tokenize -- models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf "Hello world"`

use std::path::PathBuf;

use realizar_runtime::tokenizer_load::{load_tokenizer, ChatMessage, EncodeOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(model), Some(text)) = (args.next(), args.next()) else {
        eprintln!("usage: tokenize MODEL_PATH TEXT");
        std::process::exit(2);
    };
    let loaded = load_tokenizer(&PathBuf::from(model))?;
    let tok = &loaded.tokenizer;
    let ids = tok.encode(&text, EncodeOptions::default())?;
    for &id in &ids {
        println!(
            "{id:>7} {:?}",
            String::from_utf8_lossy(tok.token_bytes(id)?)
        );
    }
    if let Some(tmpl) = loaded.chat() {
        let prompt = tmpl?.render(&[ChatMessage::new("user", text)], true)?;
        let opts = EncodeOptions {
            add_special: true,
            parse_special: true,
        };
        println!(
            "chat prompt ({} tokens):\n{prompt}",
            tok.encode(&prompt, opts)?.len()
        );
    }
    Ok(())
}
