//! Tests of the request-field parsers.
use super::*;
use serde_json::json;

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn param_of(r: Result<GenParams, ApiError>) -> Option<String> {
    r.err().and_then(|e| e.param)
}

#[test]
fn wrong_types_name_the_field() {
    let check = |v: Value, field: &str| {
        let m = obj(v);
        let got = param_of(openai_params(&Fields::new(&m), Flavor::Chat));
        assert_eq!(got.as_deref(), Some(field));
    };
    check(json!({"temperature": "hot"}), "temperature");
    check(json!({"temperature": 3}), "temperature");
    check(json!({"max_tokens": -1}), "max_tokens");
    check(json!({"max_tokens": 0}), "max_tokens");
    check(json!({"n": 0}), "n");
    check(json!({"n": 65}), "n");
    check(json!({"n": "2"}), "n");
    check(json!({"stop": [1]}), "stop[0]");
    check(json!({"stop": ["a","b","c","d","e"]}), "stop");
    check(json!({"logit_bias": {"x": 1}}), "logit_bias");
    check(json!({"logit_bias": {"5": 101}}), "logit_bias");
    check(json!({"stream": 1}), "stream");
    check(
        json!({"stream_options": {"include_usage": "yes"}}),
        "stream_options.include_usage",
    );
    check(json!({"top_logprobs": 3}), "top_logprobs");
    check(
        json!({"top_logprobs": 21, "logprobs": true}),
        "top_logprobs",
    );
}

#[test]
fn valid_parameters_reach_the_sampler() {
    let m = obj(json!({
        "temperature": 0, "top_p": 0.5, "top_k": 7, "min_p": 0.1, "seed": 42,
        "presence_penalty": 0.5, "frequency_penalty": -0.5, "repeat_penalty": 1.1,
        "logit_bias": {"3": -100, "9": 2.5}, "stop": "END", "max_completion_tokens": 9,
        "logprobs": true, "top_logprobs": 2, "stream": true,
        "stream_options": {"include_usage": true}
    }));
    let p = openai_params(&Fields::new(&m), Flavor::Chat).expect("valid");
    assert_eq!(p.sampler.temperature, 0.0);
    assert_eq!(p.sampler.top_k, 7);
    assert_eq!(p.sampler.seed, 42);
    assert_eq!(p.sampler.logit_bias, vec![(3, f32::NEG_INFINITY), (9, 2.5)]);
    assert_eq!(p.stop, vec!["END".to_string()]);
    assert_eq!(p.max_tokens, Some(9));
    assert_eq!(p.logprobs, Some(2));
    assert!(p.stream && p.include_usage);
}

#[test]
fn messages_accept_strings_and_text_parts() {
    let m = obj(json!({"messages": [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]}));
    let msgs = chat_messages(&Fields::new(&m), "messages").expect("valid");
    assert_eq!(msgs[1].content, "ab");
    let bad = obj(json!({"messages": [{"role": "wizard", "content": "x"}]}));
    let e = chat_messages(&Fields::new(&bad), "messages").expect_err("bad role");
    assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    let bad = obj(json!({"messages": [{"role": "user", "content": 5}]}));
    let e = chat_messages(&Fields::new(&bad), "messages").expect_err("bad content");
    assert_eq!(e.param.as_deref(), Some("messages[0].content"));
}

#[test]
fn prompts_are_text_or_ids() {
    let p = |v: Value| completion_prompt(&Fields::new(&obj(json!({ "prompt": v }))));
    assert_eq!(p(json!("hi")), Ok(vec![Prompt::Text("hi".into())]));
    assert_eq!(p(json!(["hi"])), Ok(vec![Prompt::Text("hi".into())]));
    assert_eq!(p(json!([1, 2])), Ok(vec![Prompt::Ids(vec![1, 2])]));
    assert_eq!(
        p(json!(["a", [3, 4]])),
        Ok(vec![Prompt::Text("a".into()), Prompt::Ids(vec![3, 4])])
    );
    assert!(p(json!([1, -2])).is_err());
    assert!(p(json!(["a", []])).is_err());
    assert!(p(json!(["a", 5])).is_err());
    assert!(p(json!(vec!["x"; 65])).is_err());
    assert!(p(json!(7)).is_err());
}

#[test]
fn malformed_bodies_are_400() {
    for body in [&b""[..], b"  ", b"{", b"[1]", b"\"x\"", b"{\"a\":}"] {
        let e = parse_object(body).expect_err("malformed");
        assert_eq!(e.status.as_u16(), 400);
    }
}
