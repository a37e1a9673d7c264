#![no_main]
//! Tokenizer round trips on arbitrary text: byte-level BPE (with merges, control and
//! user-defined tokens) and SentencePiece (byte fallback) give the text back from its ids,
//! with and without special-token parsing, and a marked message inside markup encodes as
//! the message alone.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use realizar_tokenize::{
    byte_to_char_table, BpeConfig, EncodeOptions, PreTokenizerKind, SpecialTokens, SpmConfig,
    Tokenizer,
};

fn bpe() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let table = byte_to_char_table();
        let mut tokens: Vec<String> = table.iter().map(|c| c.to_string()).collect();
        let mut types = vec![1; 256];
        let c = |b: u8| table[b as usize].to_string();
        let mut merges = Vec::new();
        for (a, b) in [(b't', b'h'), (b'e', b'r'), (b' ', b't'), (b'a', b'n')] {
            merges.push((c(a), c(b)));
            tokens.push(format!("{}{}", c(a), c(b)));
            types.push(1);
        }
        for (t, ty) in [("<|im_start|>", 3), ("<|im_end|>", 3), ("<tool>", 4)] {
            tokens.push(t.into());
            types.push(ty);
        }
        Tokenizer::from_bpe(BpeConfig {
            tokens,
            token_types: types,
            merges,
            pre: PreTokenizerKind::Gpt2,
            special: SpecialTokens::default(),
        })
        .expect("valid BPE vocabulary")
    })
}

fn spm() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let mut tokens: Vec<String> = (0..256).map(|b| format!("<0x{b:02X}>")).collect();
        let mut types = vec![6; 256];
        let mut scores = vec![0.0; 256];
        for (i, (t, ty)) in [
            ("▁", 1),
            ("▁t", 1),
            ("he", 1),
            ("▁the", 1),
            ("e", 1),
            ("<start_of_turn>", 3),
            ("<end_of_turn>", 3),
            ("  ", 4),
        ]
        .iter()
        .enumerate()
        {
            tokens.push((*t).into());
            types.push(*ty);
            scores.push(-(i as f32));
        }
        Tokenizer::from_spm(SpmConfig {
            tokens,
            scores,
            token_types: types,
            add_space_prefix: false,
            special: SpecialTokens::default(),
        })
        .expect("valid SentencePiece vocabulary")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (t, is_spm) in [(bpe(), false), (spm(), true)] {
        for parse_special in [false, true] {
            let opts = EncodeOptions {
                add_special: false,
                parse_special,
            };
            let ids = t.encode(text, opts).expect("encode");
            let back = t.decode(&ids, false).expect("decode");
            // SentencePiece writes a space as `▁`, so a `▁` in the text comes back as a space
            // (as with llama.cpp).
            if is_spm {
                assert_eq!(back, text.replace('\u{2581}', " "));
            } else {
                assert_eq!(back, text);
            }
            // Decoding a prefix never panics, whatever character it cuts.
            let _ = t.decode(&ids[..ids.len() / 2], false);
        }
        let plain = t
            .encode(
                text,
                EncodeOptions {
                    add_special: false,
                    parse_special: false,
                },
            )
            .expect("encode");
        let open = t
            .token_to_id("<|im_start|>")
            .or(t.token_to_id("<start_of_turn>"));
        let framed = format!(
            "{0}{1}{0}",
            t.token_to_piece(open.unwrap_or(0)).unwrap_or(""),
            t.mark_text(text)
        );
        let marked = t.encode_marked(&framed, false).expect("encode marked");
        if let Some(o) = open {
            let mut want = vec![o];
            want.extend(&plain);
            want.push(o);
            assert_eq!(marked, want);
        }
    }
});
