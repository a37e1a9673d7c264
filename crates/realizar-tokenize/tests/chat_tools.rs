//! Real models' chat templates with tools, tool calls and tool results in the conversation,
//! rendered as `transformers` renders them. The cases and expected strings come from
//! `xtask/refgen/chat_tool_refs.py` (transformers' `render_jinja_template`, Jinja2 3.1.6) over
//! the templates in `tests/data/templates/` (llama.cpp's copies of the models' own).

use realizar_tokenize::{ChatContext, ChatMessage, ChatTemplate, ChatToolCall, TokenizeError};
use serde_json::Value;

fn data(file: &str) -> String {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn message(m: &Value) -> ChatMessage {
    let calls = m
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|c| ChatToolCall {
                    id: text(c, "id").unwrap_or_default(),
                    name: text(&c["function"], "name").unwrap_or_default(),
                    arguments: c["function"]["arguments"].clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    ChatMessage {
        role: text(m, "role").unwrap_or_default(),
        content: text(m, "content").unwrap_or_default(),
        tool_calls: calls,
        tool_call_id: text(m, "tool_call_id"),
        name: text(m, "name"),
        reasoning_content: text(m, "reasoning_content"),
    }
}

/// Renders every case: those with an expected string render to it; those where the template
/// raises in Jinja2 are errors here too. Case `b` gives an assistant message with calls and no
/// `content` key, which a [`ChatMessage`] cannot express (it always has a content, empty beside
/// calls, as llama.cpp gives it): it is case `e`, checked there.
#[test]
fn tool_conversations_render_as_transformers_renders_them() {
    let cases: Vec<Value> = serde_json::from_str(&data("chat_tool_refs.json")).expect("refs");
    let mut checked = 0;
    for case in &cases {
        if case["case"] == "b" {
            continue;
        }
        let name = case["template"].as_str().expect("template");
        let label = format!("{name} case {}", case["case"]);
        let tmpl = ChatTemplate::new(
            &data(&format!("templates/{name}")),
            text(case, "bos").unwrap_or_default(),
            text(case, "eos").unwrap_or_default(),
        )
        .unwrap_or_else(|e| panic!("{label}: {e}"));
        let messages: Vec<ChatMessage> = case["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .map(message)
            .collect();
        let context = ChatContext {
            tools: Some(case["tools"].clone()).filter(|t| !t.is_null()),
            kwargs: case["kwargs"].as_object().cloned().unwrap_or_default(),
            now: Some(1_721_952_000), // 2024-07-26T00:00:00Z, the references' clock
        };
        let got = tmpl.render_with(&messages, case["add_generation_prompt"] == true, &context);
        match case.get("expected").and_then(Value::as_str) {
            Some(want) => assert_eq!(
                got.as_deref().map_err(|e| e.to_string()),
                Ok(want),
                "{label}"
            ),
            // One leniency of minijinja: `{% for t in tools %}` over `none` is an empty loop
            // where Jinja2 raises (Hermes-3's tool_use template without tools).
            None if name.contains("Hermes-3") && case["tools"].is_null() => {
                assert!(got.is_ok(), "{label}: {got:?}")
            }
            None => assert!(
                matches!(got, Err(TokenizeError::Template(_))),
                "{label}: Jinja2 raised, we rendered {got:?}"
            ),
        }
        checked += 1;
    }
    assert!(checked >= 25, "{checked} cases");
}

#[test]
fn templates_that_read_tools_say_so() {
    let reads = |f: &str| {
        ChatTemplate::new(&data(&format!("templates/{f}")), "", "")
            .unwrap()
            .reads_tools()
    };
    assert!(reads("Qwen-Qwen2.5-7B-Instruct.jinja"));
    assert!(reads("mistralai-Mistral-Nemo-Instruct-2407.jinja"));
    assert!(!ChatTemplate::new(&data("gemma_style.j2"), "", "")
        .unwrap()
        .reads_tools());
}
