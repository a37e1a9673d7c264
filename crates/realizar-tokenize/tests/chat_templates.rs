//! Chat templates rendered like Jinja2 renders them in `transformers` (trim_blocks,
//! lstrip_blocks, loop controls, `tojson` as `json.dumps`). The expected strings were produced
//! by Jinja2 3.1.6 with that environment from the same templates and messages.

use realizar_tokenize::{ChatMessage, ChatTemplate, TokenizeError};

fn render(file: &str, messages: &[ChatMessage]) -> Result<String, TokenizeError> {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(&path).expect("read template");
    ChatTemplate::new(&src, "<bos>", "</s>")?.render(messages, true)
}

fn conversation() -> Vec<ChatMessage> {
    vec![
        ChatMessage::new("system", "  Be brief.  "),
        ChatMessage::new("user", "Hi  there é"),
        ChatMessage::new("assistant", "Hello!"),
        ChatMessage::new("user", "What is 2+2?"),
    ]
}

#[test]
fn gemma_style_template_matches_jinja2() {
    assert_eq!(
        render("gemma_style.j2", &conversation()).unwrap(),
        "<bos><start_of_turn>user\n  Be brief.  \n\nHi  there é<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"
    );
    let bad = [ChatMessage::new("user", "a"), ChatMessage::new("user", "b")];
    let err = render("gemma_style.j2", &bad).unwrap_err();
    assert!(
        matches!(&err, TokenizeError::Template(m) if m.contains("Conversation roles must alternate")),
        "{err}"
    );
}

#[test]
fn namespaces_methods_and_tojson_match_jinja2() {
    assert_eq!(
        render("features.j2", &conversation()).unwrap(),
        "<|start_header_id|>user<|end_header_id|>\n\nHi  there é<|eot_id|>\n<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>\n<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>\nSYS=\"Be brief.\" {\"a\": 1, \"b\": [true, null, 2.5, \"é\\\"\\n\"]} {\"k\": \"\\u00fc\"} [\n  1,\n  2\n]<|start_header_id|>assistant<|end_header_id|>3 4 WHAT True   Be brief.  \n"
    );
}

#[test]
fn syntax_errors_are_errors() {
    assert!(matches!(
        ChatTemplate::new("{% for %}", "", ""),
        Err(TokenizeError::Template(_))
    ));
}
