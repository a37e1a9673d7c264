//! llama.cpp's built-in named chat templates, against `llama_chat_apply_template` itself: the
//! renderings in `tests/data/chat_builtin_refs.json` were made by llama.cpp 0c1e570
//! (`xtask/refgen/refgen --chat`) from the conversations in `chat_builtin_convs.txt`, with and
//! without the assistant prefix.

use realizar_tokenize::{family_template, Builtin, ChatMessage, ChatTemplate, BUILTIN_TEMPLATES};

fn data(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The conversations, in refgen's format (messages split by \x1d, role and content by \x1f,
/// conversations by a line holding \x1e).
fn conversations() -> Vec<Vec<ChatMessage>> {
    data("chat_builtin_convs.txt")
        .split("\n\x1e\n")
        .map(|c| {
            c.split('\x1d')
                .map(|m| {
                    let (role, content) = m.split_once('\x1f').expect("role and content");
                    ChatMessage::new(role, content)
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_builtin_template_renders_as_llama_cpp() {
    let refs: serde_json::Value =
        serde_json::from_str(&data("chat_builtin_refs.json")).expect("JSON");
    let convs = conversations();
    assert!(convs.len() >= 5);
    for name in BUILTIN_TEMPLATES {
        let want = refs[name]
            .as_array()
            .unwrap_or_else(|| panic!("no reference for {name}"));
        assert_eq!(want.len(), convs.len(), "{name}");
        let t = ChatTemplate::builtin(Builtin::named(name).expect("a builtin"));
        assert_eq!(t.builtin_name(), Some(*name));
        for (i, (conv, w)) in convs.iter().zip(want).enumerate() {
            for (j, add) in [true, false].into_iter().enumerate() {
                let got = t.render(conv, add).expect("render");
                assert_eq!(
                    got,
                    w[j].as_str().unwrap(),
                    "{name}, conversation {i}, add_ass {add}"
                );
            }
        }
    }
}

#[test]
fn unknown_names_are_not_builtins() {
    for name in ["", "ChatML", "gemma4", "llama-3", "chatml "] {
        assert!(Builtin::named(name).is_none(), "{name:?}");
    }
}

#[test]
fn families_get_their_own_template() {
    let vocab = |toks: &'static [&'static str]| move |t: &str| toks.contains(&t);
    let cases: [(&str, &[&str], &str); 8] = [
        ("gemma3", &["<start_of_turn>"], "gemma"),
        ("gemma2", &[], "gemma"),
        ("phi3", &["<|end|>"], "phi3"),
        ("llama", &["<|start_header_id|>", "<|eot_id|>"], "llama3"),
        ("llama", &["[INST]", "[SYSTEM_PROMPT]"], "mistral-v7"),
        ("llama", &["<s>"], "llama2"),
        ("qwen3", &["<|im_start|>"], "chatml"),
        ("somethingelse", &[], "chatml"),
    ];
    for (arch, toks, want) in cases {
        let has = vocab(toks);
        assert_eq!(family_template(arch, &has).name(), want, "{arch} {toks:?}");
    }
}
