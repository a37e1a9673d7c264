//! Tools in models' own syntaxes and reasoning, over the HTTP API with the toy model (a real
//! batcher and byte-level tokenizer, random-ish logits) given real models' chat templates
//! (`realizar-tokenize/tests/data/templates/`): whatever the model prefers, every call it
//! makes parses and validates, streamed calls equal whole ones, and `<think>` blocks come back
//! as `reasoning_content`.

mod common;

use std::sync::Arc;

use common::{
    assemble_chat_stream, check_tool_calls, oslo_conversation, validate, weather_tools, TestServer,
};
use realizar_runtime::batcher::BatcherConfig;
use realizar_runtime::constrain::ConstraintCompiler;
use realizar_runtime::tools::{Thinking, Tool, ToolChoice, ToolFormat, ToolReply, ToolSet};
use realizar_server::testing::{toy_tokenizer, ToyConfig, ToyEngine, TOY_EOS, TOY_VOCAB};
use realizar_server::ServerConfig;
use realizar_tokenize::ChatTemplate;
use serde_json::{json, Value};

fn template(name: &str) -> ChatTemplate {
    let path = format!(
        "{}/../realizar-tokenize/tests/data/templates/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let src = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    ChatTemplate::new(&src, "<s>", "</s>").expect("template")
}

fn server(template_name: &str) -> TestServer {
    let config = ToyConfig {
        ctx: 4096,
        ..ToyConfig::default()
    };
    let (gen, _) =
        ToyEngine::generator("toy", config, BatcherConfig::default()).expect("toy engine");
    let gen = gen.with_template(template(template_name));
    TestServer::start(ServerConfig::default(), vec![Arc::new(gen)])
}

const HERMES: &str = "Qwen-Qwen2.5-7B-Instruct.jinja";
const LLAMA3: &str = "meta-llama-Llama-3.1-8B-Instruct.jinja";
const NEMO: &str = "mistralai-Mistral-Nemo-Instruct-2407.jinja";
const MISTRAL_ARGS: &str = "Mistral-Small-3.2-24B-Instruct-2506.jinja";
const QWEN3: &str = "Qwen-Qwen3-0.6B.jinja";

fn tool_set(choice: ToolChoice) -> ToolSet {
    let tools = weather_tools();
    ToolSet {
        tools: tools
            .as_array()
            .expect("tools")
            .iter()
            .map(|t| Tool {
                name: t["function"]["name"].as_str().expect("name").to_string(),
                description: None,
                parameters: t["function"]["parameters"].clone(),
            })
            .collect(),
        choice,
        parallel: true,
    }
}

#[test]
fn templates_are_read_for_their_tool_syntax() {
    for (name, want) in [
        (HERMES, ToolFormat::Hermes),
        (QWEN3, ToolFormat::Hermes),
        (LLAMA3, ToolFormat::Llama3),
        ("meta-llama-Llama-3.2-3B-Instruct.jinja", ToolFormat::Llama3),
        (NEMO, ToolFormat::MistralNemo),
        (MISTRAL_ARGS, ToolFormat::MistralArgs),
        (
            "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja",
            ToolFormat::Hermes,
        ),
    ] {
        let t = template(name);
        assert_eq!(
            ToolFormat::detect(t.source(), t.reads_tools()),
            want,
            "{name}"
        );
    }
}

/// The toy tokenizer's ids of a text (a byte each).
fn bytes(text: &str) -> Vec<u32> {
    text.bytes().map(u32::from).collect()
}

/// Lazy grammars: text is free until the format's opener, then the call is held to the syntax;
/// completed from there by always taking the first allowed byte in a seeded order, the reply
/// parses into calls whose arguments validate.
#[test]
fn lazy_grammars_start_at_the_opener_and_keep_calls_valid() {
    let compiler = ConstraintCompiler::new(Arc::new(toy_tokenizer()), TOY_VOCAB, &[TOY_EOS])
        .expect("compiler");
    let tools = tool_set(ToolChoice::Auto);
    for (format, prose, opener) in [
        (ToolFormat::Hermes, "Let me check. ", "<tool_call>"),
        (ToolFormat::MistralNemo, "Checking. ", "[TOOL_CALLS]"),
        (ToolFormat::MistralArgs, "One moment. ", "[TOOL_CALLS]"),
        (ToolFormat::Llama3, "  ", "{"),
    ] {
        let grammar = tools
            .grammar_for(format, Thinking::No, |_| None)
            .expect("grammar");
        for seed in 0..4u64 {
            let mut c = compiler.compile(&grammar).expect("compile");
            let mut text = String::new();
            for id in bytes(prose).into_iter().chain(bytes(opener)) {
                let m = c.mask().expect("mask");
                assert!(m.allows(id), "{format:?}: byte {id} refused in {text:?}");
                assert!(c.commit(id).expect("commit"), "{format:?}");
                text.push(char::from(id as u8));
            }
            // After the opener the grammar holds: not every byte is allowed.
            let m = c.mask().expect("mask");
            assert!((0..256u32).any(|b| !m.allows(b)), "{format:?}: still free");
            let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for _ in 0..2000 {
                if c.is_finished() {
                    break;
                }
                let m = c.mask().expect("mask");
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let start = (state % 256) as u32;
                // Prefer ending once the call may end (the toy would go on forever).
                let next = if m.allows(TOY_EOS) && text.ends_with(['}', '>', ']']) {
                    TOY_EOS
                } else if m.allows(u32::from(b']')) && text.ends_with('}') {
                    u32::from(b']')
                } else {
                    let plain = |b: u32| (b as u8).is_ascii_graphic() || b == 32 || b == 10;
                    match (0..256u32)
                        .map(|k| (start + k) % 256)
                        .find(|&b| m.allows(b) && plain(b))
                    {
                        Some(b) => b,
                        None => TOY_EOS,
                    }
                };
                if next == TOY_EOS {
                    break;
                }
                assert!(c.commit(next).expect("commit"), "{format:?} {text:?}");
                text.push(char::from(next as u8));
            }
            match tools.parse_for(format, &text) {
                ToolReply::Calls(before, calls) => {
                    assert_eq!(before, prose.trim_end(), "{format:?}: {text}");
                    for call in calls {
                        let t = tools
                            .tools
                            .iter()
                            .find(|t| t.name == call.name)
                            .expect("tool");
                        validate(&t.parameters, &call.arguments, &call.name)
                            .unwrap_or_else(|e| panic!("{format:?}: {e}: {text}"));
                    }
                }
                other => panic!("{format:?} seed {seed}: {other:?} from {text:?}"),
            }
        }
    }
    // Llama 3's opener counts only at the start of the reply: later, a brace is text.
    let grammar = tools
        .grammar_for(ToolFormat::Llama3, Thinking::No, |_| None)
        .expect("grammar");
    let mut c = compiler.compile(&grammar).expect("compile");
    for id in bytes("Use {braces} freely: {x") {
        assert!(c.commit(id).expect("commit"));
    }
    assert!((0..256u32).all(|b| c.mask().expect("mask").allows(b)));
}

#[test]
fn required_calls_in_each_syntax_validate_and_stream_the_same() {
    let tools = weather_tools();
    for name in [HERMES, LLAMA3, NEMO, MISTRAL_ARGS] {
        let srv = server(name);
        for seed in 0..4 {
            let body = json!({"model": "toy",
                "messages": [{"role": "system", "content": "Be brief."},
                             {"role": "user", "content": "weather?"}],
                "tools": tools, "tool_choice": "required", "seed": seed, "temperature": 1.0,
                "max_tokens": 400, "parallel_tool_calls": false});
            let r = srv.post("/v1/chat/completions", &body);
            assert_eq!(r.status, 200, "{name}: {}", r.body);
            let whole = r.json();
            let m = &whole["choices"][0]["message"];
            assert_eq!(
                whole["choices"][0]["finish_reason"], "tool_calls",
                "{name}: {whole}"
            );
            check_tool_calls(m, &tools);
            if name == NEMO || name == MISTRAL_ARGS {
                let id = m["tool_calls"][0]["id"].as_str().unwrap_or("");
                assert!(
                    id.len() == 9 && id.chars().all(|c| c.is_ascii_alphanumeric()),
                    "{id}"
                );
            }
            let mut named = body.clone();
            named["tool_choice"] = json!({"type": "function", "function": {"name": "add"}});
            let v = srv.post("/v1/chat/completions", &named).json();
            assert_eq!(
                check_tool_calls(&v["choices"][0]["message"], &tools),
                ["add"],
                "{name}: {v}"
            );

            let mut sb = body.clone();
            sb["stream"] = json!(true);
            let (content, _, calls, finish) =
                assemble_chat_stream(&srv.post("/v1/chat/completions", &sb).sse());
            // The same calls (the ids number the requests).
            let strip = |v: &Value| -> Vec<Value> {
                let mut v = v.as_array().cloned().unwrap_or_default();
                for c in &mut v {
                    c.as_object_mut().map(|o| o.remove("id"));
                }
                v
            };
            assert_eq!(
                strip(&json!(calls)),
                strip(&m["tool_calls"]),
                "{name} seed {seed}"
            );
            assert_eq!(content, "", "{name}");
            assert_eq!(finish.as_deref(), Some("tool_calls"));
        }
        // The call and its result go back through the template natively, and the
        // conversation continues (Ollama's shape too).
        let conv = oslo_conversation("abcdefgh1");
        let r = srv.post(
            "/v1/chat/completions",
            &json!({"model": "toy", "messages": conv, "tools": tools, "max_tokens": 20, "seed": 1}),
        );
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        let r = srv.post(
            "/api/chat",
            &json!({"model": "toy", "messages": [{"role": "user", "content": "hi"}], "tools": tools,
                    "stream": false, "options": {"seed": 2, "temperature": 1.0, "num_predict": 300}}),
        );
        assert_eq!(r.status, 200, "{name}: {}", r.body);
    }
}

#[test]
fn auto_replies_in_a_native_syntax_are_text_or_valid_calls() {
    let tools = weather_tools();
    let srv = server(HERMES);
    for seed in 0..6 {
        let v = srv
            .post(
                "/v1/chat/completions",
                &json!({"model": "toy", "messages": [{"role": "user", "content": "hi"}],
                        "tools": tools, "seed": seed, "temperature": 1.0, "max_tokens": 60}),
            )
            .json();
        let m = &v["choices"][0]["message"];
        if m["tool_calls"].is_array() {
            check_tool_calls(m, &tools);
        } else {
            assert!(m["content"].is_string(), "{v}");
        }
    }
}

/// A grammar that makes the toy model think, then answer.
const THINKING: &str = r#"root ::= "<think>" [a-z ]{3,20} "</think>" [a-z ]{3,20}"#;

#[test]
fn reasoning_comes_back_apart_streamed_and_can_be_turned_off() {
    let srv = server(QWEN3);
    let body = json!({"model": "toy", "messages": [{"role": "user", "content": "think"}],
        "grammar": THINKING, "seed": 5, "temperature": 1.0, "max_tokens": 100});
    let whole = srv.post("/v1/chat/completions", &body).json();
    let m = &whole["choices"][0]["message"];
    let (reasoning, content) = (
        m["reasoning_content"].as_str().expect("reasoning"),
        m["content"].as_str().expect("content"),
    );
    assert!(
        !reasoning.is_empty() && !reasoning.contains("think>"),
        "{whole}"
    );
    assert!(!content.contains("think>"), "{whole}");

    let mut sb = body.clone();
    sb["stream"] = json!(true);
    let (c, r, calls, _) = assemble_chat_stream(&srv.post("/v1/chat/completions", &sb).sse());
    assert_eq!((r.as_str(), c.as_str()), (reasoning, content));
    assert!(calls.is_empty());

    // Left in the content with `reasoning_format: none`.
    let mut none = body.clone();
    none["reasoning_format"] = json!("none");
    let v = srv.post("/v1/chat/completions", &none).json();
    let m = &v["choices"][0]["message"];
    assert!(m["reasoning_content"].is_null(), "{v}");
    assert!(
        m["content"]
            .as_str()
            .is_some_and(|c| c.starts_with("<think>")),
        "{v}"
    );

    // `enable_thinking: false` reaches the template (Qwen3's writes an empty block into the
    // prompt), as Ollama's `think: false` does.
    let prompt_tokens = |b: &Value, path: &str| -> u64 {
        let v = srv.post(path, b).json();
        v["usage"]["prompt_tokens"]
            .as_u64()
            .or(v["prompt_eval_count"].as_u64())
            .unwrap_or_else(|| panic!("{v}"))
    };
    let mut off = body.clone();
    off["chat_template_kwargs"] = json!({"enable_thinking": false});
    let empty_block = "<think>\n\n</think>\n\n".len() as u64;
    assert_eq!(
        prompt_tokens(&off, "/v1/chat/completions"),
        prompt_tokens(&body, "/v1/chat/completions") + empty_block
    );
    let ollama = |think: Value| {
        json!({"model": "toy", "messages": [{"role": "user", "content": "think"}], "think": think,
               "stream": false, "options": {"num_predict": 0}})
    };
    assert_eq!(
        prompt_tokens(&ollama(json!(false)), "/api/chat"),
        prompt_tokens(&ollama(json!(true)), "/api/chat") + empty_block
    );
    let bad = srv.post(
        "/v1/chat/completions",
        &json!({"model": "toy", "messages": [{"role": "user", "content": "x"}],
                "chat_template_kwargs": {"messages": []}}),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.body.contains("chat_template_kwargs.messages"),
        "{}",
        bad.body
    );
    let bad = srv.post(
        "/v1/chat/completions",
        &json!({"model": "toy", "messages": [{"role": "user", "content": "x"}],
                "reasoning_format": "sometimes"}),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
}

#[test]
fn think_on_a_model_that_does_not_think_is_a_400() {
    let srv = server(HERMES);
    let r = srv.post(
        "/api/chat",
        &json!({"model": "toy", "messages": [{"role": "user", "content": "x"}], "think": true,
                "stream": false}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("thinking"), "{}", r.body);
}

/// Feeds `text` a byte at a time; false at the first byte the constraint refuses.
fn takes(c: &mut realizar_runtime::constrain::Constraint, text: &str) -> bool {
    bytes(text)
        .into_iter()
        .all(|id| c.mask().expect("mask").allows(id) && c.commit(id).expect("commit"))
}

/// Required calls of a thinking model: the reasoning block may come first (or, when the
/// prompt left it open, does), then the calls are held to the syntax.
#[test]
fn a_reasoning_block_may_come_before_required_calls() {
    let compiler = ConstraintCompiler::new(Arc::new(toy_tokenizer()), TOY_VOCAB, &[TOY_EOS])
        .expect("compiler");
    let tools = tool_set(ToolChoice::Required);
    let compile = |format, thinking| {
        compiler
            .compile(
                &tools
                    .grammar_for(format, thinking, |_| None)
                    .expect("grammar"),
            )
            .expect("compile")
    };
    let mut c = compile(ToolFormat::Hermes, Thinking::Optional);
    assert!(takes(
        &mut c,
        "<think>I should call a tool.</think>\n\n<tool_call>\n"
    ));
    assert!(!c.mask().expect("mask").allows(u32::from(b'x')));
    let mut c = compile(ToolFormat::Hermes, Thinking::Optional);
    assert!(takes(&mut c, "<tool_call>\n{\"name\": \"add\""));
    let mut c = compile(ToolFormat::Hermes, Thinking::Open);
    assert!(takes(&mut c, "hmm, the weather.\n</think>\n<tool_call>\n"));
    let mut c = compile(ToolFormat::Generic, Thinking::Optional);
    assert!(takes(
        &mut c,
        "<think>ok</think>\n{\"tool_calls\": [{\"name\": \"add\""
    ));
    let mut c = compile(ToolFormat::Hermes, Thinking::No);
    assert!(!takes(&mut c, "<think>"));
    let mut c = compile(ToolFormat::Generic, Thinking::No);
    assert!(!takes(&mut c, "<think>"));

    // Over HTTP, Qwen3's template: every reply calls, its reasoning apart, unless the
    // reasoning takes the whole token budget (the random toy never closes a block it opens).
    let srv = server(QWEN3);
    let tools = weather_tools();
    let mut called = 0;
    for seed in 0..8 {
        let v = srv
            .post(
                "/v1/chat/completions",
                &json!({"model": "toy", "messages": [{"role": "user", "content": "weather?"}],
                        "tools": tools, "tool_choice": "required", "seed": seed,
                        "temperature": 1.0, "max_tokens": 400, "parallel_tool_calls": false}),
            )
            .json();
        let m = &v["choices"][0]["message"];
        assert!(
            !m["content"].as_str().unwrap_or("").contains("think>"),
            "{v}"
        );
        if v["choices"][0]["finish_reason"] == "length" && m["tool_calls"].is_null() {
            assert!(m["reasoning_content"].is_string(), "{v}");
            continue;
        }
        check_tool_calls(m, &tools);
        called += 1;
    }
    assert!(called > 0, "no reply called");
}
