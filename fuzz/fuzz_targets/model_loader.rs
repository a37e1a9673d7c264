#![no_main]
//! The GGUF model loader on arbitrary files: metadata to model configuration, tokenizer and
//! chat template, tensors to weights. Every inconsistent file is a typed error, never a panic,
//! an abort or an allocation sized by an unchecked number.

use libfuzzer_sys::fuzz_target;
use realizar_runtime::{BackendKind, LoadOptions, Model};

fuzz_target!(|data: &[u8]| {
    let opts = LoadOptions {
        threads: Some(1),
        ctx: Some(16),
        backend: BackendKind::Reference,
        ..LoadOptions::default()
    };
    if let Ok(model) = Model::from_gguf_bytes("fuzz.gguf", data, &opts) {
        if let Some(t) = model.tokenizer() {
            let _ = t.encode("fuzz <s> text", Default::default());
        }
        let _ = model.render_chat(&[realizar_runtime::ChatMessage::new("user", "hi")]);
        if let Ok(mut s) = model.require_decoder().and_then(|d| d.session()) {
            let _ = s.eval(&[0, 1], realizar_runtime::Logits::Last);
        }
    }
});
