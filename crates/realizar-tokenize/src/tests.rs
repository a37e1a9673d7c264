//! Unit tests of the tokenizer on tiny vocabularies.

use super::*;

fn byte_level_tokens() -> Vec<String> {
    bpe::byte_to_char_table()
        .iter()
        .map(|c| c.to_string())
        .collect()
}

#[test]
fn invalid_ids_are_errors() {
    let cfg = BpeConfig {
        tokens: byte_level_tokens(),
        token_types: vec![1; 256],
        merges: vec![],
        pre: PreTokenizerKind::Gpt2,
        special: SpecialTokens::default(),
    };
    let tok = Tokenizer::from_bpe(cfg).unwrap();
    assert!(matches!(
        tok.decode(&[300], false),
        Err(TokenizeError::InvalidId { id: 300, .. })
    ));
}

#[test]
fn malformed_configs_are_errors() {
    let mut cfg = BpeConfig {
        tokens: byte_level_tokens(),
        token_types: vec![1; 255],
        merges: vec![],
        pre: PreTokenizerKind::Gpt2,
        special: SpecialTokens::default(),
    };
    assert!(matches!(
        Tokenizer::from_bpe(cfg.clone()),
        Err(TokenizeError::LengthMismatch { .. })
    ));
    cfg.token_types = vec![1; 256];
    cfg.token_types[3] = 9;
    assert!(matches!(
        Tokenizer::from_bpe(cfg.clone()),
        Err(TokenizeError::InvalidTokenType { index: 3, value: 9 })
    ));
    cfg.token_types[3] = 1;
    cfg.merges = vec![("zz".into(), "q".into())];
    assert!(matches!(
        Tokenizer::from_bpe(cfg.clone()),
        Err(TokenizeError::MalformedMerge { index: 0, .. })
    ));
    cfg.merges.clear();
    cfg.special.bos = Some(999);
    assert!(matches!(
        Tokenizer::from_bpe(cfg),
        Err(TokenizeError::SpecialOutOfRange { what: "BOS", .. })
    ));
}

#[test]
fn bpe_merges_lowest_rank_first() {
    let mut tokens = byte_level_tokens();
    tokens.extend(["ab".to_string(), "bc".to_string(), "abc".to_string()]);
    let n = tokens.len();
    let cfg = BpeConfig {
        token_types: vec![1; n],
        tokens,
        // "b c" has the better rank, so "abc" is a + bc, and a + bc is not a merge.
        merges: vec![("b".into(), "c".into()), ("a".into(), "b".into())],
        pre: PreTokenizerKind::Gpt2,
        special: SpecialTokens::default(),
    };
    let tok = Tokenizer::from_bpe(cfg).unwrap();
    let ids = tok.encode("abc", EncodeOptions::default()).unwrap();
    assert_eq!(ids, [u32::from(b'a'), 257]);
}

#[test]
fn spm_merges_by_score_and_falls_back_to_bytes() {
    let mut tokens: Vec<String> = (0..256).map(|b| format!("<0x{b:02X}>")).collect();
    let mut types = vec![6; 256];
    let mut scores = vec![0.0; 256];
    for (t, s) in [
        ("▁", -1.0),
        ("h", -2.0),
        ("i", -3.0),
        ("▁h", -4.0),
        ("▁hi", -5.0),
    ] {
        tokens.push(t.into());
        types.push(1);
        scores.push(s);
    }
    let tok = Tokenizer::from_spm(SpmConfig {
        tokens,
        scores,
        token_types: types,
        add_space_prefix: true,
        special: SpecialTokens::default(),
    })
    .unwrap();
    let ids = tok.encode("hi é", EncodeOptions::default()).unwrap();
    // ▁hi, ▁, then é as two byte tokens.
    assert_eq!(ids, [260, 256, 0xC3, 0xA9]);
    assert_eq!(tok.decode(&ids, false).unwrap(), "hi é");
}

#[test]
fn stream_decoder_holds_back_split_characters() {
    let cfg = BpeConfig {
        tokens: byte_level_tokens(),
        token_types: vec![1; 256],
        merges: vec![],
        pre: PreTokenizerKind::Gpt2,
        special: SpecialTokens::default(),
    };
    let tok = Tokenizer::from_bpe(cfg).unwrap();
    let ids = tok.encode("a😀", EncodeOptions::default()).unwrap();
    assert_eq!(ids.len(), 5);
    let mut sd = tok.stream_decoder(false);
    let parts: Vec<Option<String>> = ids.iter().map(|&i| sd.push(i).unwrap()).collect();
    assert_eq!(
        parts,
        [Some("a".into()), None, None, None, Some("😀".into())]
    );
    assert_eq!(sd.finish(), None);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn tok(pre: PreTokenizerKind) -> Tokenizer {
        let mut tokens = byte_level_tokens();
        tokens.extend(["Ġt".into(), "he".into(), "Ġthe".into(), "<|x|>".into()]);
        let n = tokens.len();
        let mut types = vec![1; n];
        types[n - 1] = 3;
        Tokenizer::from_bpe(BpeConfig {
            tokens,
            token_types: types,
            merges: vec![
                ("Ġ".into(), "t".into()),
                ("h".into(), "e".into()),
                ("Ġt".into(), "he".into()),
            ],
            pre,
            special: SpecialTokens::default(),
        })
        .unwrap()
    }

    proptest! {
        #[test]
        fn byte_level_bpe_round_trips(s in "\\PC*|[ \\t\\n0-9a-z'😀中]*") {
            for pre in [PreTokenizerKind::Gpt2, PreTokenizerKind::Llama3, PreTokenizerKind::Default,
                        PreTokenizerKind::StarCoder, PreTokenizerKind::Qwen2, PreTokenizerKind::Falcon,
                        PreTokenizerKind::DeepSeekLlm, PreTokenizerKind::DeepSeekCoder] {
                let t = tok(pre);
                for parse_special in [false, true] {
                    let ids = t.encode(&s, EncodeOptions { add_special: true, parse_special }).unwrap();
                    prop_assert_eq!(&t.decode(&ids, false).unwrap(), &s);
                }
            }
        }

        #[test]
        fn streaming_equals_one_shot(ids in proptest::collection::vec(0u32..260, 0..40)) {
            let t = tok(PreTokenizerKind::Gpt2);
            let mut sd = t.stream_decoder(false);
            let mut s = String::new();
            for &i in &ids {
                if let Some(p) = sd.push(i).unwrap() { s.push_str(&p); }
            }
            if let Some(p) = sd.finish() { s.push_str(&p); }
            prop_assert_eq!(s, t.decode(&ids, false).unwrap());
        }

        #[test]
        fn decode_of_arbitrary_ids_never_panics(ids in proptest::collection::vec(any::<u32>(), 0..20)) {
            let t = tok(PreTokenizerKind::Gpt2);
            let _ = t.decode(&ids, true);
        }
    }
}

mod props_other_models {
    use super::*;
    use proptest::prelude::*;

    fn spm() -> Tokenizer {
        let mut tokens: Vec<String> = (0..256).map(|b| format!("<0x{b:02X}>")).collect();
        let mut types = vec![6; 256];
        let mut scores = vec![0.0; 256];
        for (i, t) in ["▁", "▁t", "he", "▁the", "e", "t", "h", "<ctl>", "  "]
            .iter()
            .enumerate()
        {
            tokens.push((*t).into());
            types.push(match *t {
                "<ctl>" => 3,
                "  " => 4,
                _ => 1,
            });
            scores.push(-(i as f32));
        }
        Tokenizer::from_spm(SpmConfig {
            tokens,
            scores,
            token_types: types,
            add_space_prefix: false,
            special: SpecialTokens::default(),
        })
        .unwrap()
    }

    fn wordpiece() -> Tokenizer {
        let vocab: Vec<String> = ["[UNK]", "[CLS]", "[SEP]", "the", "##s", "a", "##b", "!"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        Tokenizer::from_wordpiece(WordPieceConfig {
            vocab,
            unk_token: "[UNK]".into(),
            continuing_subword_prefix: "##".into(),
            max_input_chars_per_word: 100,
            normalizer: BertNormalizerConfig::default(),
            added_tokens: vec![AddedToken {
                id: 2,
                content: "[SEP]".into(),
                special: true,
            }],
            cls: Some(1),
            sep: Some(2),
            max_length: Some(16),
        })
        .unwrap()
    }

    proptest! {
        #[test]
        fn spm_round_trips_arbitrary_text(s in "\\PC*|[ a-z<>\\n😀é]*") {
            let t = spm();
            for parse_special in [false, true] {
                let ids = t.encode(&s, EncodeOptions { add_special: true, parse_special }).unwrap();
                prop_assert_eq!(t.decode(&ids, false).unwrap(), s.clone());
            }
        }

        /// Marked text between control tokens encodes as the text alone without special
        /// parsing, whatever it holds (control texts, user-defined texts, marks).
        #[test]
        fn marked_text_is_plain_text_between_real_control_tokens(
            s in "\\PC*|[ a-z<>\n\u{FDD0}]*|(<ctl>|  |t|he|\u{FDD0}| )*"
        ) {
            let t = spm();
            let framed = format!("<ctl>{}<ctl>", t.mark_text(&s));
            let got = t.encode_marked(&framed, false).unwrap();
            let plain = EncodeOptions { add_special: false, parse_special: false };
            let mut want = vec![263];
            want.extend(t.encode(&s, plain).unwrap());
            want.push(263);
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(t.decode(&got, false).unwrap(), format!("<ctl>{s}<ctl>"));
        }

        #[test]
        fn wordpiece_never_panics_and_respects_max_length(s in "\\PC*|[ a-zA-Z!\\[\\]SEP]*") {
            let t = wordpiece();
            let enc = t.encode_with_mask(&s, true).unwrap();
            prop_assert!(enc.ids.len() <= 16);
            prop_assert_eq!(enc.ids.first(), Some(&1));
            prop_assert_eq!(enc.ids.last(), Some(&2));
            prop_assert_eq!(enc.attention_mask.len(), enc.ids.len());
            let _ = t.decode(&enc.ids, true).unwrap();
        }
    }

    #[test]
    fn wordpiece_splits_words_and_punctuation() {
        let t = wordpiece();
        let enc = t.encode_with_mask("Thes ab! [SEP] zz", true).unwrap();
        assert_eq!(enc.ids, [1, 3, 4, 5, 6, 7, 2, 0, 2]);
        assert_eq!(t.decode(&enc.ids, true).unwrap(), "thes ab ! [UNK]");
    }

    #[test]
    fn tokenizer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Tokenizer>();
        check::<ChatTemplate>();
    }
}

/// Special tokens that strip white space take it out of the text up to the nearest token (or
/// stripped space), on their left or right, and only when they are split off.
#[test]
fn stripping_tokens_take_the_space_beside_them() {
    let mut tokens = byte_level_tokens();
    tokens.extend(["<A>".to_string(), "<B>".to_string()]);
    let mut types = vec![1; 256];
    types.extend([3, 3]);
    let mut tok = Tokenizer::from_bpe(BpeConfig {
        tokens,
        token_types: types,
        merges: vec![],
        pre: PreTokenizerKind::Gpt2,
        special: SpecialTokens::default(),
    })
    .unwrap();
    let (a, b) = (256, 257);
    let special = EncodeOptions {
        add_special: false,
        parse_special: true,
    };
    let bytes = |s: &str| tok_bytes(s);
    let enc = |tok: &Tokenizer, s: &str| tok.encode(s, special).unwrap();
    let plain = enc(&tok, "x <A> \n y<B>");
    tok.set_strip(
        a,
        Strip {
            left: false,
            right: true,
        },
    );
    tok.set_strip(
        b,
        Strip {
            left: true,
            right: false,
        },
    );
    assert_ne!(plain, enc(&tok, "x <A> \n y<B>"));
    // `<A>` takes " \n " after it; `<B>` takes the space before it, but not past `<A>`.
    let want: Vec<u32> = [bytes("x "), vec![a], bytes("y"), vec![b]].concat();
    assert_eq!(enc(&tok, "x <A> \n y <B>"), want);
    assert_eq!(enc(&tok, "<A>  <B>"), vec![a, b]);
    // Without special parsing nothing is split off, and nothing stripped.
    let text = "x <A>  y";
    assert_eq!(plain_ids(&tok, text), bytes(text));
}

fn tok_bytes(s: &str) -> Vec<u32> {
    let table = bpe::byte_to_char_table();
    s.bytes()
        .map(|b| {
            let c = table[usize::from(b)];
            byte_level_tokens()
                .iter()
                .position(|t| t.starts_with(c))
                .unwrap() as u32
        })
        .collect()
}

fn plain_ids(tok: &Tokenizer, s: &str) -> Vec<u32> {
    tok.encode(
        s,
        EncodeOptions {
            add_special: false,
            parse_special: false,
        },
    )
    .unwrap()
}
