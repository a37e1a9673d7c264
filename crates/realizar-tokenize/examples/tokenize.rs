//! Tokenizes a text with a small byte-level BPE vocabulary built in place, prints ids and
//! pieces, decodes them back (also as a stream), and renders a ChatML chat template.
//!
//! `cargo run -p realizar-tokenize --example tokenize -- "the theme of the day"`
//!
//! (To tokenize with a real model's vocabulary, see `realizar-runtime`'s `tokenize` example.)

use realizar_tokenize::{
    BpeConfig, ChatMessage, ChatTemplate, EncodeOptions, PreTokenizerKind, SpecialTokens, Tokenizer,
};

/// GPT-2's byte-level alphabet: printable Latin-1 bytes stand for themselves, the others map to
/// U+0100 upwards.
fn byte_alphabet() -> Vec<String> {
    let mut out = Vec::with_capacity(256);
    let mut n = 0;
    for b in 0u32..256 {
        let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        let cp = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        out.push(char::from_u32(cp).map(String::from).unwrap_or_default());
    }
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let text = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "the theme of the day<|im_end|>".to_string());

    let mut tokens = byte_alphabet();
    let merges: Vec<(String, String)> = [
        ("t", "h"),
        ("th", "e"),
        ("Ġ", "the"),
        ("m", "e"),
        ("Ġthe", "me"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    for (a, b) in &merges {
        tokens.push(format!("{a}{b}"));
    }
    tokens.push("<|im_start|>".into());
    tokens.push("<|im_end|>".into());
    let n = tokens.len();
    let mut token_types = vec![1; n];
    token_types[n - 2] = 3;
    token_types[n - 1] = 3;
    let tok = Tokenizer::from_bpe(BpeConfig {
        tokens,
        token_types,
        merges,
        pre: PreTokenizerKind::Gpt2,
        special: SpecialTokens {
            eos: Some((n - 1) as u32),
            ..Default::default()
        },
    })?;

    let opts = EncodeOptions {
        add_special: true,
        parse_special: true,
    };
    let ids = tok.encode(&text, opts)?;
    for &id in &ids {
        let piece = String::from_utf8_lossy(tok.token_bytes(id)?);
        println!("{id:>5} {piece:?}");
    }
    println!("decoded: {:?}", tok.decode(&ids, false)?);
    let mut stream = tok.stream_decoder(true);
    let mut streamed = String::new();
    for &id in &ids {
        streamed.extend(stream.push(id)?);
    }
    streamed.extend(stream.finish());
    println!("streamed, specials skipped: {streamed:?}");

    let chatml = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n\
                  {% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    let tmpl = ChatTemplate::new(chatml, "", "<|im_end|>")?;
    let prompt = tmpl.render(&[ChatMessage::new("user", "What is 2+2?")], true)?;
    println!("chat prompt:\n{prompt}");
    println!("chat ids: {:?}", tok.encode(&prompt, opts)?);
    Ok(())
}
