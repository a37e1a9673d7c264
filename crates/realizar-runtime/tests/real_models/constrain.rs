//! The grammar engine over the real tokenizers: masks agree with what the engine accepts.

use realizar_runtime::constrain::{ConstraintCompiler, Grammar};
use realizar_runtime::{LoadOptions, Model};
use realizar_tokenize::EncodeOptions;
use serde_json::json;

use crate::common::model_path;

/// After the first byte of a multi-byte character, the mask allows its continuation (the
/// byte token of 0xBC), and every allowed token the engine then accepts continues it. (Once,
/// bytes the engine forced were tokenized lossily into U+FFFD, and the mask allowed only
/// SmolLM2's U+FFFD token there; the constraint refuses a token it does not accept on
/// commit, so even then nothing invalid reaches the output.)
#[test]
fn masks_inside_a_multibyte_character_allow_only_its_continuations() {
    let m = Model::open(model_path("smollm2-135m"), &LoadOptions::default()).expect("open");
    let d = m.require_decoder().expect("decoder");
    let tok = m.tokenizer().expect("tokenizer").clone();
    let compiler =
        ConstraintCompiler::new(tok.clone(), d.n_vocab(), &d.special().eog).expect("compiler");
    let schema = json!({"type": "object", "properties": {"word": {"enum": ["café", "über", "日本"]}},
                        "required": ["word"], "additionalProperties": false});
    let mut c = compiler
        .compile(&Grammar::JsonSchema(schema))
        .expect("compile");
    let opts = EncodeOptions {
        add_special: false,
        parse_special: false,
    };
    let mut ids = tok.encode("{\"word\": \"", opts).expect("encode");
    // The byte-level token of 0xC3, the first byte of `ü`.
    ids.push(tok.token_to_id("Ã").expect("byte token"));
    for &id in &ids {
        c.mask().expect("mask");
        assert!(c.commit(id).unwrap_or_else(|e| panic!("{id}: {e}")), "{id}");
    }
    let mask = c.mask().expect("mask");
    let mut accepted = 0;
    for id in 0..d.n_vocab() as u32 {
        if mask.allows(id) && tok.token_type(id) != Some(realizar_tokenize::TokenType::Control) {
            let b = tok.token_bytes(id).unwrap_or_default();
            let mut probe = c.clone_state();
            let ok = probe.commit(id).expect("commit");
            assert_eq!(ok, b.first() == Some(&0xBC), "token {id} {b:?} after 0xC3");
            accepted += usize::from(ok);
        }
    }
    let bc = tok.token_to_id("¼").expect("0xBC token");
    assert!(mask.allows(bc), "the byte token of 0xBC is not allowed");
    assert!(accepted > 0);
}
