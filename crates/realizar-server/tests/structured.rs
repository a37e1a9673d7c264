//! Structured output over the HTTP API with the toy model (a real batcher and byte-level
//! tokenizer, random-ish logits): `response_format` (`json_object`, `json_schema`),
//! llama.cpp's `json_schema` and `grammar`, Ollama's `format`. Whatever the model prefers, the
//! reply parses and validates; bad schemas and formats are 400s naming the field.

mod common;

use std::sync::Arc;

use common::{
    assemble_chat_stream, check_tool_calls, oslo_conversation, schemas, validate, weather_tools,
    TestServer,
};
use realizar_runtime::batcher::BatcherConfig;
use realizar_server::testing::{ToyConfig, ToyEngine};
use realizar_server::ServerConfig;
use serde_json::{json, Value};

fn server() -> TestServer {
    // Room for the tool descriptions (a byte per token).
    let config = ToyConfig {
        ctx: 2048,
        ..ToyConfig::default()
    };
    let (gen, _) =
        ToyEngine::generator("toy", config, BatcherConfig::default()).expect("toy engine");
    TestServer::start(ServerConfig::default(), vec![Arc::new(gen)])
}

fn chat(schema: &Value, temperature: f64, seed: u64) -> Value {
    json!({"model": "toy", "messages": [{"role": "user", "content": "give me data"}],
           "temperature": temperature, "seed": seed, "max_tokens": 400,
           "response_format": {"type": "json_schema",
                               "json_schema": {"name": "out", "schema": schema, "strict": true}}})
}

fn content(r: &common::Resp) -> (String, String) {
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let c = &v["choices"][0];
    let text = c["message"]["content"]
        .as_str()
        .or_else(|| c["text"].as_str())
        .unwrap_or_else(|| panic!("no content in {v}"));
    (
        text.to_string(),
        c["finish_reason"].as_str().unwrap_or("?").to_string(),
    )
}

#[test]
fn json_schema_replies_parse_and_validate_at_every_temperature() {
    let srv = server();
    for (k, schema) in schemas().iter().enumerate() {
        for (temperature, seed) in [(0.0, 0), (1.0, 1), (1.0, 2), (1.0, 3)] {
            let (text, finish) =
                content(&srv.post("/v1/chat/completions", &chat(schema, temperature, seed)));
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                panic!("schema {k} t={temperature} seed {seed}: {e}: {text:?}")
            });
            validate(schema, &v, "$")
                .unwrap_or_else(|e| panic!("schema {k} t={temperature} seed {seed}: {e}"));
            assert_eq!(finish, "stop", "schema {k}: {text}");
        }
    }
}

#[test]
fn streamed_chunks_concatenate_to_the_same_reply() {
    let srv = server();
    let schema = &schemas()[0];
    let (whole, _) = content(&srv.post("/v1/chat/completions", &chat(schema, 1.0, 7)));
    let mut body = chat(schema, 1.0, 7);
    body["stream"] = json!(true);
    let r = srv.post("/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let events = r.sse();
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let mut text = String::new();
    for e in &events[..events.len() - 1] {
        let v: Value = serde_json::from_str(e).expect("chunk");
        text.push_str(
            v["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or_default(),
        );
    }
    assert_eq!(text, whole);
}

#[test]
fn json_object_modes_give_objects() {
    let srv = server();
    for body in [
        json!({"model": "toy", "messages": [{"role": "user", "content": "x"}], "seed": 5,
               "temperature": 1.0, "max_tokens": 300, "response_format": {"type": "json_object"}}),
        json!({"model": "toy", "prompt": "x", "seed": 5, "temperature": 1.0, "max_tokens": 300,
               "json_schema": {"type": "object", "properties": {"a": {"type": "integer"}},
                               "required": ["a"], "additionalProperties": false}}),
    ] {
        let path = if body.get("prompt").is_some() {
            "/v1/completions"
        } else {
            "/v1/chat/completions"
        };
        let (text, _) = content(&srv.post(path, &body));
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert!(v.is_object(), "{text}");
    }
    // Ollama: `format` "json" and a schema, on both routes.
    let schema = &schemas()[5];
    for (path, format) in [
        ("/api/chat", json!("json")),
        ("/api/generate", schema.clone()),
    ] {
        let mut body = json!({"model": "toy", "format": format, "stream": false,
                              "options": {"temperature": 1.0, "seed": 3, "num_predict": 300}});
        if path == "/api/chat" {
            body["messages"] = json!([{"role": "user", "content": "x"}]);
        } else {
            body["prompt"] = json!("x");
        }
        let r = srv.post(path, &body);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        let v = r.json();
        let text = v["message"]["content"]
            .as_str()
            .or_else(|| v["response"].as_str())
            .unwrap_or_else(|| panic!("{v}"));
        let out: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert!(out.is_object(), "{text}");
        if format.is_object() {
            validate(schema, &out, "$").unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

#[test]
fn lark_grammars_constrain_the_output() {
    let srv = server();
    let grammar =
        "%llguidance {}\nstart: answer \" \" n\nanswer: \"yes\" | \"no\"\nn: /[1-9][0-9]?/\n";
    for seed in 0..4 {
        let (text, finish) = content(&srv.post(
            "/v1/completions",
            &json!({"model": "toy", "prompt": "x", "grammar": grammar, "seed": seed,
                    "temperature": 1.0, "max_tokens": 20}),
        ));
        let (a, n) = text.split_once(' ').unwrap_or_else(|| panic!("{text:?}"));
        assert!(a == "yes" || a == "no", "{text:?}");
        assert!(
            n.parse::<u32>().is_ok_and(|n| (1..100).contains(&n)),
            "{text:?}"
        );
        assert_eq!(finish, "stop");
    }
}

/// llama.cpp's GBNF grammars (its `grammar` field): a list of 1 to 3 lowercase words and a
/// number.
#[test]
fn gbnf_grammars_constrain_the_output() {
    let srv = server();
    let grammar = r#"
root   ::= "items: " word ("," " "? word){0,2} " #" num
word   ::= [a-z]{1,8}
num    ::= [1-9] [0-9]? # one or two digits
"#;
    for seed in 0..4 {
        let (text, finish) = content(&srv.post(
            "/v1/completions",
            &json!({"model": "toy", "prompt": "x", "grammar": grammar, "seed": seed,
                    "temperature": 1.0, "max_tokens": 60}),
        ));
        let rest = text
            .strip_prefix("items: ")
            .unwrap_or_else(|| panic!("{text:?}"));
        let (words, num) = rest.rsplit_once(" #").unwrap_or_else(|| panic!("{text:?}"));
        let words: Vec<&str> = words.split(',').map(str::trim_start).collect();
        assert!((1..=3).contains(&words.len()), "{text:?}");
        for w in words {
            assert!(
                (1..=8).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_lowercase()),
                "{text:?}"
            );
        }
        assert!(
            num.parse::<u32>().is_ok_and(|n| (1..100).contains(&n)),
            "{text:?}"
        );
        assert_eq!(finish, "stop");
    }
}

#[test]
fn bad_formats_and_schemas_are_400s_naming_the_field() {
    let srv = server();
    let msgs = json!([{"role": "user", "content": "x"}]);
    for (path, body, param, says) in [
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "response_format": {"type": "xml"}}),
            "response_format.type",
            "xml",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "response_format": {"type": "json_schema"}}),
            "response_format.json_schema",
            "required",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "response_format": {"type": "json_schema",
                   "json_schema": {"name": "x", "schema": {"type": "object",
                   "properties": {"a": {"type": "string", "pattern": "(["}}}}}}),
            "response_format",
            "unclosed",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "response_format": {"type": "json_schema",
                   "json_schema": {"name": "x", "schema": 7}}}),
            "response_format",
            "schema",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "response_format": {"type": "json_object", "x": 1}}),
            "response_format.x",
            "not supported",
        ),
        (
            "/v1/chat/completions",
            json!({"messages": msgs, "response_format": {"type": "json_object"},
                   "json_schema": {"type": "object"}}),
            "json_schema",
            "both",
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "grammar": "root ::= item\nitem ::= [a-z"}),
            "grammar",
            "line 2, column 10",
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "grammar": "root ::= undefined-rule"}),
            "grammar",
            "undefined-rule",
        ),
        (
            "/v1/completions",
            json!({"prompt": "x", "grammar": "%llguidance {}\nstart: undefined_rule"}),
            "grammar",
            "undefined_rule",
        ),
        (
            "/api/generate",
            json!({"prompt": "x", "format": "yaml"}),
            "format",
            "yaml",
        ),
        (
            "/api/chat",
            json!({"messages": msgs, "format": 3}),
            "format",
            "number",
        ),
    ] {
        let r = srv.post(path, &body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.body);
        assert!(r.body.contains(param), "{path} {body}: {}", r.body);
        assert!(r.body.contains(says), "{path} {body}: {}", r.body);
    }
}

#[test]
fn required_and_named_tool_calls_always_validate() {
    let srv = server();
    let tools = weather_tools();
    for seed in 0..6 {
        // One call per reply: the toy model, random, would otherwise call until its budget.
        let body = json!({"model": "toy", "messages": [{"role": "user", "content": "weather?"}],
            "tools": tools, "tool_choice": "required", "seed": seed, "temperature": 1.0,
            "max_tokens": 300, "parallel_tool_calls": false});
        let r = srv.post("/v1/chat/completions", &body);
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
        assert!(v["choices"][0]["message"]["content"].is_null(), "{v}");
        check_tool_calls(&v["choices"][0]["message"], &tools);

        let mut named = body.clone();
        named["tool_choice"] = json!({"type": "function", "function": {"name": "add"}});
        let v = srv.post("/v1/chat/completions", &named).json();
        assert_eq!(
            check_tool_calls(&v["choices"][0]["message"], &tools),
            ["add"],
            "{v}"
        );
    }
    // Streamed: the calls arrive as tool-call deltas with their index, and equal the whole reply.
    let body = json!({"model": "toy", "messages": [{"role": "user", "content": "x"}],
        "tools": tools, "tool_choice": "required", "seed": 3, "temperature": 1.0, "max_tokens": 300,
        "parallel_tool_calls": false});
    let whole = srv.post("/v1/chat/completions", &body).json();
    let mut sb = body.clone();
    sb["stream"] = json!(true);
    let events = srv.post("/v1/chat/completions", &sb).sse();
    // The calls as OpenAI's clients put them together: a call's first delta has its index,
    // id, type and name, the others more of its arguments.
    let (_, _, calls, finish) = assemble_chat_stream(&events);
    // The same calls (the ids number the requests).
    let strip = |v: &Value| -> Vec<Value> {
        v.as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let mut c = c.clone();
                assert!(
                    c["id"].as_str().is_some_and(|s| s.starts_with("call_")),
                    "{c}"
                );
                c.as_object_mut().map(|o| o.remove("id"));
                c
            })
            .collect()
    };
    assert_eq!(
        strip(&Value::Array(calls)),
        strip(&whole["choices"][0]["message"]["tool_calls"])
    );
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[test]
fn auto_tool_replies_are_calls_or_text_and_conversations_continue() {
    let srv = server();
    let tools = weather_tools();
    let mut kinds = (0, 0);
    for seed in 0..8 {
        let v = srv
            .post(
                "/v1/chat/completions",
                &json!({"model": "toy", "messages": [{"role": "user", "content": "hi"}],
                        "tools": tools, "seed": seed, "temperature": 1.0, "max_tokens": 300,
                        "parallel_tool_calls": false}),
            )
            .json();
        let m = &v["choices"][0]["message"];
        if m["tool_calls"].is_array() {
            check_tool_calls(m, &tools);
            kinds.0 += 1;
        } else {
            // A text answer (the random toy may run out of tokens inside it).
            assert!(m["content"].is_string(), "{v}");
            kinds.1 += 1;
        }
    }
    assert_eq!(kinds.0 + kinds.1, 8);
    // A conversation with a call and its result (OpenAI's shape) renders and continues.
    let conv = oslo_conversation("call_1");
    let r = srv.post(
        "/v1/chat/completions",
        &json!({"model": "toy", "messages": conv, "tools": tools, "max_tokens": 300, "seed": 1}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // `tool_choice: none` answers in plain text.
    let v = srv
        .post(
            "/v1/chat/completions",
            &json!({"model": "toy", "messages": conv, "tools": tools, "tool_choice": "none",
                    "max_tokens": 5, "temperature": 0}),
        )
        .json();
    assert!(v["choices"][0]["message"]["tool_calls"].is_null(), "{v}");
    // Ollama's /api/chat: calls with object arguments, or text.
    let r = srv.post(
        "/api/chat",
        &json!({"model": "toy", "messages": [{"role": "user", "content": "hi"}], "tools": tools,
                "stream": false, "options": {"seed": 2, "temperature": 1.0, "num_predict": 300}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let m = &r.json()["message"];
    if let Some(calls) = m["tool_calls"].as_array() {
        for c in calls {
            assert!(c["function"]["arguments"].is_object(), "{c}");
        }
    } else {
        assert!(m["content"].is_string(), "{m}");
    }
}

#[test]
fn bad_tools_are_400s_naming_the_field() {
    let srv = server();
    let msgs = json!([{"role": "user", "content": "x"}]);
    let tools = weather_tools();
    for (body, param) in [
        (
            json!({"messages": msgs, "tools": tools, "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
            "tool_choice",
        ),
        (
            json!({"messages": msgs, "tools": tools, "tool_choice": "sometimes"}),
            "tool_choice",
        ),
        (
            json!({"messages": msgs, "tool_choice": "required"}),
            "tool_choice",
        ),
        (
            json!({"messages": msgs, "tools": [{"type": "function", "function": {"name": "a b"}}]}),
            "tools[0].function.name",
        ),
        (
            json!({"messages": msgs, "tools": [{"type": "retrieval"}]}),
            "tools[0].type",
        ),
        (
            json!({"messages": msgs, "tools": [{"type": "function", "function": {"name": "f", "parameters": 3}}]}),
            "tools[0].function.parameters",
        ),
        (
            json!({"messages": msgs, "tools": tools, "response_format": {"type": "json_object"}}),
            "response_format",
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"},
                 {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "add", "arguments": "{oops"}}]}],
                "tools": tools}),
            "messages[1].tool_calls[0].function.arguments",
        ),
        (
            json!({"messages": msgs, "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string", "pattern": "(["}}}}}]}),
            "tools",
        ),
    ] {
        let r = srv.post("/v1/chat/completions", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let e = r.json();
        assert_eq!(e["error"]["param"], param, "{body}: {e}");
    }
}
