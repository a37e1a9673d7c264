//! Tool calling. A model whose chat template renders tools gets them in its own syntax
//! ([`ToolFormat`]: Hermes/Qwen `<tool_call>`, Llama 3.x JSON, Mistral `[TOOL_CALLS]`): the
//! template sees the tools and the conversation's calls and results, and the reply is parsed
//! back from that syntax. With `tool_choice` `required` or a function the whole reply is held
//! to the syntax; with `auto` the model writes freely and, once it opens a call, the call is
//! held to it (a lazy grammar, as llama.cpp's). Any other template gets the generic JSON
//! format: the tools are described in the system prompt, the reply is generated under a JSON
//! schema (`{"tool_calls": [{"name", "arguments"}, ...]}`, or `{"response": text}` when the
//! model may answer without a call), and earlier calls and results are written into plain
//! messages in the same format. Either way arguments are generated under each tool's own
//! parameter schema, so they always parse and validate.

use serde_json::{json, Map, Value};

use crate::constrain::{with_layout, Grammar, Trigger};
use crate::ChatMessage;

/// A function the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// The JSON schema of its arguments (an object).
    pub parameters: Value,
}

/// Whether and which tools the model must call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// No calls: the tools are not offered.
    None,
    /// A call or a plain answer, as the model prefers.
    Auto,
    /// At least one call.
    Required,
    /// One call of this function.
    Named(String),
}

/// The tools of a request and how they may be used.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSet {
    /// The functions.
    pub tools: Vec<Tool>,
    /// Whether a call is required.
    pub choice: ToolChoice,
    /// Whether a reply may hold several calls.
    pub parallel: bool,
}

/// A call the model made.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    /// The function.
    pub name: String,
    /// Its arguments (valid under the tool's parameter schema).
    pub arguments: Value,
}

/// What a reply under a [`ToolSet`] holds.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolReply {
    /// Calls, after the text the model wrote before them (a native syntax's).
    Calls(String, Vec<ToolCall>),
    /// A plain answer.
    Content(String),
    /// Text that is not a complete reply (cut by the token budget): returned as it is.
    Unparsed(String),
}

/// The tool-call syntax of a chat template.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolFormat {
    /// The template does not render tools: they are described in the system prompt and
    /// called with a JSON object.
    Generic,
    /// `<tool_call>\n{"name": …, "arguments": …}\n</tool_call>` (Hermes 2/3, Qwen 2.5/3).
    Hermes,
    /// `{"name": …, "parameters": …}` as the whole reply (Llama 3.1–3.3), one call a turn.
    Llama3,
    /// `[TOOL_CALLS][{"name": …, "arguments": …, "id": …}, …]` (Mistral Nemo), 9-character ids.
    MistralNemo,
    /// `[TOOL_CALLS]name[ARGS]{…}` per call (Mistral Small 3.2, Devstral), 9-character ids.
    MistralArgs,
}

impl ToolFormat {
    /// The syntax of a Jinja template (`None`: a built-in template). A template that renders
    /// tools but in none of the known syntaxes gets the generic format; so does one that does
    /// not render them.
    pub fn detect(source: Option<&str>, reads_tools: bool) -> ToolFormat {
        let Some(s) = source.filter(|_| reads_tools) else {
            return ToolFormat::Generic;
        };
        if s.contains("[TOOL_CALLS]") {
            if s.contains("[ARGS]") {
                ToolFormat::MistralArgs
            } else {
                ToolFormat::MistralNemo
            }
        } else if s.contains("<tool_call>") && s.contains("\"arguments\"") {
            // JSON inside the tags (XML-argument syntaxes such as Qwen3-Coder's
            // `<function=…>` or GLM's `<arg_key>` are not this one).
            ToolFormat::Hermes
        } else if s.contains("<|start_header_id|>") && s.contains("\"parameters\": ") {
            ToolFormat::Llama3
        } else {
            ToolFormat::Generic
        }
    }

    /// The texts that mark calls in this syntax (kept in the output when they are control
    /// tokens: the reply is read by them).
    pub fn markers(self) -> &'static [&'static str] {
        match self {
            ToolFormat::Generic | ToolFormat::Llama3 => &[],
            ToolFormat::Hermes => &["<tool_call>", "</tool_call>"],
            ToolFormat::MistralNemo => &["[TOOL_CALLS]"],
            ToolFormat::MistralArgs => &["[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"],
        }
    }

    /// Whether calls carry Mistral's 9-character alphanumeric ids.
    pub fn short_ids(self) -> bool {
        matches!(self, ToolFormat::MistralNemo | ToolFormat::MistralArgs)
    }

    /// Whether a reply may hold several calls.
    fn parallel(self) -> bool {
        self != ToolFormat::Llama3
    }
}

/// Whether a reply may begin with a reasoning block (`<think>…</think>`) before its calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thinking {
    /// No: the template does not think, or thinking is off.
    No,
    /// It may.
    Optional,
    /// It does: the prompt left the block open, the reply continues it.
    Open,
}

/// A string as a Lark literal.
fn lit(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

impl ToolSet {
    /// Whether the tools are offered at all.
    pub fn active(&self) -> bool {
        self.choice != ToolChoice::None && !self.tools.is_empty()
    }

    /// The tools a reply may call (one, for a named choice).
    fn offered(&self) -> impl Iterator<Item = &Tool> {
        self.tools.iter().filter(move |t| match &self.choice {
            ToolChoice::Named(n) => &t.name == n,
            _ => true,
        })
    }

    /// The schema of a reply's calls.
    fn calls_schema(&self) -> Value {
        let calls: Vec<Value> = self
            .offered()
            .map(|t| {
                json!({
                    "type": "object",
                    "properties": {
                        "name": {"const": t.name},
                        "arguments": t.parameters,
                    },
                    "required": ["name", "arguments"],
                    "additionalProperties": false,
                })
            })
            .collect();
        let item = match <[Value; 1]>::try_from(calls) {
            Ok([one]) => one,
            Err(many) => json!({"anyOf": many}),
        };
        let mut array = json!({"type": "array", "items": item, "minItems": 1});
        if !self.parallel || matches!(self.choice, ToolChoice::Named(_)) {
            array["maxItems"] = json!(1);
        }
        json!({
            "type": "object",
            "properties": {"tool_calls": array},
            "required": ["tool_calls"],
            "additionalProperties": false,
        })
    }

    /// The language of the reply in `format` (`None` when the tools are not offered).
    /// `control` gives the id of a control token spelled by a text (Mistral's `[TOOL_CALLS]`),
    /// which the grammar must name by id.
    pub fn grammar_for(
        &self,
        format: ToolFormat,
        thinking: Thinking,
        control: impl Fn(&str) -> Option<u32>,
    ) -> Option<Grammar> {
        if !self.active() {
            return None;
        }
        // Before calls the whole reply must be: the reasoning block, when the model may write
        // one (a lazy grammar leaves it free anyway).
        let think = match (thinking, &self.choice) {
            (_, ToolChoice::Auto) if format != ToolFormat::Generic => "start: calls\n",
            (Thinking::No, _) => "start: calls\n",
            (Thinking::Optional, _) => "start: (think WS?)? calls\nthink: \"<think>\" think_end\n",
            (Thinking::Open, _) => "start: think_end WS? calls\n",
        };
        let think = if think == "start: calls\n" {
            think.to_string()
        } else {
            format!("{think}think_end[lazy]: /(.|\\n)*<\\/think>/\nWS: /[ \\t\\r\\n]+/\n")
        };
        let tok = |t: &str| control(t).map_or_else(|| lit(t), |id| format!("<[{id}]>"));
        let schema = |t: &Tool| {
            with_layout(&t.parameters)
                .unwrap_or_else(|_| t.parameters.clone())
                .to_string()
        };
        let alts = |each: &dyn Fn(&Tool) -> String| -> String {
            self.offered().map(each).collect::<Vec<_>>().join(" | ")
        };
        let many =
            self.parallel && format.parallel() && !matches!(self.choice, ToolChoice::Named(_));
        // `{"name": "<name>", "<key>": <arguments>`, as the templates write a call.
        let head = |t: &Tool, key: &str| {
            format!(
                "{} %json {}",
                lit(&format!("{{\"name\": \"{}\", \"{key}\": ", t.name)),
                schema(t)
            )
        };
        let (rules, opener, at_start) = match format {
            ToolFormat::Generic if thinking == Thinking::No => return self.grammar(),
            ToolFormat::Generic => {
                let Some(Grammar::JsonSchema(schema)) = self.grammar() else {
                    return None;
                };
                let schema = with_layout(&schema).unwrap_or(schema);
                (format!("start: %json {schema}\n"), "", false)
            }
            ToolFormat::Hermes => {
                let body = alts(&|t| format!("{} {}", head(t, "arguments"), lit("}")));
                let start = if many {
                    format!("call ({} call)*", lit("\n"))
                } else {
                    "call".to_string()
                };
                let call = format!(
                    "{} {} body {} {}",
                    tok("<tool_call>"),
                    lit("\n"),
                    lit("\n"),
                    tok("</tool_call>")
                );
                (
                    format!("start: {start}\ncall: {call}\nbody: {body}\n"),
                    "<tool_call>",
                    false,
                )
            }
            ToolFormat::Llama3 => {
                let body = alts(&|t| format!("{} {}", head(t, "parameters"), lit("}")));
                (format!("start: {body}\n"), "{", true)
            }
            ToolFormat::MistralNemo => {
                let item = alts(&|t| {
                    format!(
                        "{} {} ID {}",
                        head(t, "arguments"),
                        lit(", \"id\": \""),
                        lit("\"}")
                    )
                });
                let list = if many {
                    format!("item ({} item)*", lit(", "))
                } else {
                    "item".to_string()
                };
                (
                    format!(
                        "start: {} {} {list} {}\nitem: {item}\nID: /[a-zA-Z0-9]{{9}}/\n",
                        tok("[TOOL_CALLS]"),
                        lit("["),
                        lit("]")
                    ),
                    "[TOOL_CALLS]",
                    false,
                )
            }
            ToolFormat::MistralArgs => {
                let call =
                    alts(&|t| format!("{} {} %json {}", lit(&t.name), tok("[ARGS]"), schema(t)));
                let start = if many { "call+" } else { "call" };
                (
                    format!(
                        "start: {start}\ncall: {} fn\nfn: {call}\n",
                        tok("[TOOL_CALLS]")
                    ),
                    "[TOOL_CALLS]",
                    false,
                )
            }
        };
        let rules = format!("{think}{}", rules.replacen("start:", "calls:", 1));
        let triggers = if self.choice == ToolChoice::Auto && format != ToolFormat::Generic {
            vec![Trigger {
                text: opener.to_string(),
                at_start,
            }]
        } else {
            Vec::new()
        };
        Some(Grammar::ToolCalls {
            lark: format!("%llguidance {{}}\n{rules}"),
            triggers,
        })
    }

    /// The tools as a template sees them (OpenAI's shape), the offered ones.
    pub fn template_tools(&self) -> Value {
        Value::Array(
            self.offered()
                .map(|t| {
                    let mut f = Map::new();
                    f.insert("name".into(), json!(t.name));
                    if let Some(d) = &t.description {
                        f.insert("description".into(), json!(d));
                    }
                    f.insert("parameters".into(), t.parameters.clone());
                    json!({"type": "function", "function": Value::Object(f)})
                })
                .collect(),
        )
    }

    /// Reads a reply generated under [`ToolSet::grammar_for`] with `format`.
    pub fn parse_for(&self, format: ToolFormat, text: &str) -> ToolReply {
        if format == ToolFormat::Generic {
            return self.parse(text);
        }
        let p = parse_native(format, text, true);
        if p.calls.is_empty() {
            return ToolReply::Content(text.to_string());
        }
        let calls: Option<Vec<ToolCall>> = p
            .calls
            .iter()
            .map(|c| {
                Some(ToolCall {
                    name: c.name.clone()?,
                    arguments: serde_json::from_str(&c.arguments).ok()?,
                })
            })
            .collect();
        match calls {
            Some(calls) if p.complete => ToolReply::Calls(p.content, calls),
            _ => ToolReply::Unparsed(text.to_string()),
        }
    }

    /// The language of the reply in the generic format (`None` when the tools are not offered).
    pub fn grammar(&self) -> Option<Grammar> {
        if !self.active() {
            return None;
        }
        let calls = self.calls_schema();
        Some(Grammar::JsonSchema(match self.choice {
            ToolChoice::Auto => json!({"anyOf": [
                calls,
                {"type": "object", "properties": {"response": {"type": "string"}},
                 "required": ["response"], "additionalProperties": false},
            ]}),
            _ => calls,
        }))
    }

    /// The text that describes the tools and the reply format, for the system prompt.
    pub fn system_text(&self) -> String {
        let tools: Vec<Value> = self
            .offered()
            .map(|t| {
                let mut o = Map::new();
                o.insert("name".into(), json!(t.name));
                if let Some(d) = &t.description {
                    o.insert("description".into(), json!(d));
                }
                o.insert("parameters".into(), t.parameters.clone());
                Value::Object(o)
            })
            .collect();
        let mut s = format!(
            "You can call the following tools to satisfy the user's requests:\n{}\n\nTo call tools, \
             reply with a JSON object {{\"tool_calls\": [{{\"name\": <tool name>, \"arguments\": \
             <arguments object>}}]}}.",
            Value::Array(tools)
        );
        if self.choice == ToolChoice::Auto {
            s.push_str(
                " To answer without calling a tool, reply with {\"response\": <your answer>}.",
            );
        }
        s
    }

    /// `messages` with the tool description in the system prompt (appended to the first
    /// system message, or as a new first one).
    pub fn with_system(&self, mut messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
        if !self.active() {
            return messages;
        }
        let text = self.system_text();
        match messages.first_mut() {
            Some(m) if m.role == "system" => {
                m.content.push_str("\n\n");
                m.content.push_str(&text);
            }
            _ => messages.insert(0, ChatMessage::new("system", text)),
        }
        messages
    }

    /// Reads a reply generated under [`ToolSet::grammar`].
    pub fn parse(&self, text: &str) -> ToolReply {
        let Ok(Value::Object(o)) = serde_json::from_str::<Value>(text) else {
            return ToolReply::Unparsed(text.to_string());
        };
        if let Some(Value::String(r)) = o.get("response") {
            return ToolReply::Content(r.clone());
        }
        let Some(Value::Array(calls)) = o.get("tool_calls") else {
            return ToolReply::Unparsed(text.to_string());
        };
        let calls: Option<Vec<ToolCall>> = calls
            .iter()
            .map(|c| {
                Some(ToolCall {
                    name: c.get("name")?.as_str()?.to_string(),
                    arguments: c.get("arguments")?.clone(),
                })
            })
            .collect();
        match calls {
            Some(c) if !c.is_empty() => ToolReply::Calls(String::new(), c),
            _ => ToolReply::Unparsed(text.to_string()),
        }
    }
}

/// A reply read so far: the text before any call, and the calls begun.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartialReply {
    /// The text before the calls (without a tail that may yet open one).
    pub content: String,
    /// The calls begun.
    pub calls: Vec<PartialCall>,
    /// Whether every call begun is whole.
    pub complete: bool,
}

/// A call being read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartialCall {
    /// Its function, once the name is whole.
    pub name: Option<String>,
    /// Its arguments' JSON text so far.
    pub arguments: String,
}

/// The end of the JSON value at the start of `s` (after white space), if it is whole there.
fn json_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let start = b.iter().position(|c| !c.is_ascii_whitespace())?;
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for (i, &c) in b.iter().enumerate().skip(start) {
        if in_str {
            if esc {
                esc = false;
            } else if c == b'\\' {
                esc = true;
            } else if c == b'"' {
                in_str = false;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ if depth == 0 && (c.is_ascii_whitespace() || c == b',') && i > start => {
                return Some(i)
            }
            _ => {}
        }
    }
    None
}

/// Reads one call object `{"name": "…", "<key>": {…}…}` at the start of `s` (the layout the
/// grammars write): the call so far and, when the object is whole, where it ends.
pub(crate) fn call_object(s: &str, key: &str) -> (PartialCall, Option<usize>) {
    let mut call = PartialCall::default();
    let Some(rest) = s.trim_start().strip_prefix("{\"name\": \"") else {
        return (call, None);
    };
    let lead = s.len() - rest.len();
    let Some(q) = rest.find('"') else {
        return (call, None);
    };
    call.name = Some(rest[..q].to_string());
    let after = &rest[q + 1..];
    let head = format!(", \"{key}\": ");
    let Some(args) = after.strip_prefix(head.as_str()) else {
        return (call, None);
    };
    let args_at = lead + q + 1 + head.len();
    match json_end(args) {
        Some(e) => {
            call.arguments = args[..e].to_string();
            // The rest of the object: up to its closing brace.
            let tail = &s[args_at + e..];
            let close = json_end(&format!("{{{tail}")).map(|c| args_at + e + c - 1);
            (call, close)
        }
        None => {
            call.arguments = args.to_string();
            (call, None)
        }
    }
}

/// Reads a reply in a native syntax (`done`: the reply is whole; before that, a tail that may
/// open a call is held back from the content).
pub fn parse_native(format: ToolFormat, text: &str, done: bool) -> PartialReply {
    let mut out = PartialReply {
        complete: true,
        ..PartialReply::default()
    };
    let opener = match format {
        ToolFormat::Generic => return out,
        ToolFormat::Hermes => "<tool_call>",
        ToolFormat::Llama3 => "{",
        ToolFormat::MistralNemo | ToolFormat::MistralArgs => "[TOOL_CALLS]",
    };
    if format == ToolFormat::Llama3 {
        // A call is the whole reply.
        if !text.trim_start().starts_with('{') {
            if done || !text.trim().is_empty() {
                out.content = text.to_string();
            }
            return out;
        }
        let (call, end) = call_object(text, "parameters");
        out.complete = end.is_some();
        out.calls.push(call);
        return out;
    }
    let Some(at) = text.find(opener) else {
        // Before the end, white space at the end is held back too: a call may follow it.
        out.content = if done {
            text.to_string()
        } else {
            let keep = crate::reasoning::partial_tail(text, opener);
            text[..text.len() - keep].trim_end().to_string()
        };
        return out;
    };
    out.content = text[..at].trim_end().to_string();
    let mut rest = &text[at..];
    match format {
        ToolFormat::Hermes => {
            while let Some(body) = rest.strip_prefix("<tool_call>") {
                let (call, end) = call_object(body, "arguments");
                out.calls.push(call);
                let Some(close) = end.and_then(|e| {
                    body[e..]
                        .trim_start()
                        .strip_prefix("</tool_call>")
                        .map(|r| (e, r))
                }) else {
                    out.complete = false;
                    return out;
                };
                rest = close.1.trim_start();
            }
        }
        ToolFormat::MistralNemo => {
            let Some(list) = rest["[TOOL_CALLS]".len()..].trim_start().strip_prefix('[') else {
                out.complete = false;
                return out;
            };
            let mut list = list;
            loop {
                let (call, end) = call_object(list, "arguments");
                out.calls.push(call);
                let Some(e) = end else {
                    out.complete = false;
                    return out;
                };
                let next = list[e..].trim_start();
                if let Some(more) = next.strip_prefix(',') {
                    list = more;
                } else {
                    out.complete = next.starts_with(']');
                    return out;
                }
            }
        }
        ToolFormat::MistralArgs => {
            while let Some(body) = rest.strip_prefix("[TOOL_CALLS]") {
                let mut call = PartialCall::default();
                let Some(a) = body.find("[ARGS]") else {
                    out.calls.push(call);
                    out.complete = false;
                    return out;
                };
                let name = body[..a].split("[CALL_ID]").next().unwrap_or("");
                call.name = Some(name.trim().to_string());
                let args = &body[a + "[ARGS]".len()..];
                let end = json_end(args);
                call.arguments = args[..end.unwrap_or(args.len())].trim_start().to_string();
                out.calls.push(call);
                let Some(e) = end else {
                    out.complete = false;
                    return out;
                };
                rest = args[e..].trim_start();
            }
        }
        ToolFormat::Generic | ToolFormat::Llama3 => {}
    }
    out
}

/// Mistral's call id: 9 letters and digits, from a number.
pub fn short_id(mut n: u64) -> String {
    const DIGITS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    // Spread consecutive numbers apart (splitmix64's finalizer).
    n = (n ^ (n >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    n = (n ^ (n >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    n ^= n >> 31;
    (0..9)
        .map(|_| {
            let d = DIGITS[(n % 62) as usize];
            n /= 62;
            char::from(d)
        })
        .collect()
}

/// The conversation in the generic format, for a template that does not render tools: an
/// assistant's calls written as `{"tool_calls": […]}` after its text, consecutive tool results
/// as one user turn `{"tool_results": [{"id", "content"}, …]}` (so that templates that want
/// user and assistant turns to alternate accept them).
pub fn generic_history(messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(messages.len());
    let mut results: Vec<Value> = Vec::new();
    let flush = |results: &mut Vec<Value>, out: &mut Vec<ChatMessage>| {
        if !results.is_empty() {
            let text = json!({"tool_results": std::mem::take(results)}).to_string();
            out.push(ChatMessage::new("user", text));
        }
    };
    for m in messages {
        if m.role == "tool" {
            let id = m.tool_call_id.or(m.name).unwrap_or_default();
            results.push(json!({"id": id, "content": m.content}));
            continue;
        }
        flush(&mut results, &mut out);
        if m.tool_calls.is_empty() {
            out.push(m);
            continue;
        }
        let calls: Vec<Value> = m
            .tool_calls
            .iter()
            .map(|c| json!({"name": c.name, "arguments": c.arguments}))
            .collect();
        let json = json!({"tool_calls": calls}).to_string();
        let text = if m.content.is_empty() {
            json
        } else {
            format!("{}\n{json}", m.content)
        };
        out.push(ChatMessage::new("assistant", text));
    }
    flush(&mut results, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(choice: ToolChoice, parallel: bool) -> ToolSet {
        ToolSet {
            tools: vec![
                Tool {
                    name: "get_weather".into(),
                    description: Some("Weather of a city".into()),
                    parameters: json!({"type": "object", "properties": {"city": {"type": "string"}},
                                       "required": ["city"]}),
                },
                Tool {
                    name: "add".into(),
                    description: None,
                    parameters: json!({"type": "object", "properties": {"a": {"type": "integer"},
                                       "b": {"type": "integer"}}, "required": ["a", "b"]}),
                },
            ],
            choice,
            parallel,
        }
    }

    #[test]
    fn schemas_follow_the_choice() {
        let Some(Grammar::JsonSchema(s)) = set(ToolChoice::Required, true).grammar() else {
            panic!("no schema")
        };
        assert_eq!(s["properties"]["tool_calls"]["minItems"], 1);
        assert!(s["properties"]["tool_calls"].get("maxItems").is_none());
        assert_eq!(
            s["properties"]["tool_calls"]["items"]["anyOf"]
                .as_array()
                .map(Vec::len),
            Some(2)
        );
        let Some(Grammar::JsonSchema(s)) = set(ToolChoice::Named("add".into()), true).grammar()
        else {
            panic!("no schema")
        };
        let item = &s["properties"]["tool_calls"]["items"];
        assert_eq!(item["properties"]["name"]["const"], "add");
        assert_eq!(s["properties"]["tool_calls"]["maxItems"], 1);
        let Some(Grammar::JsonSchema(s)) = set(ToolChoice::Auto, false).grammar() else {
            panic!("no schema")
        };
        assert_eq!(s["anyOf"].as_array().map(Vec::len), Some(2));
        assert!(set(ToolChoice::None, true).grammar().is_none());
    }

    #[test]
    fn replies_parse_into_calls_or_text() {
        let t = set(ToolChoice::Auto, true);
        assert_eq!(
            t.parse(r#"{"tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}"#),
            ToolReply::Calls(
                String::new(),
                vec![ToolCall {
                    name: "add".into(),
                    arguments: json!({"a": 1, "b": 2})
                }]
            )
        );
        assert_eq!(
            t.parse(r#"{"response": "hi"}"#),
            ToolReply::Content("hi".into())
        );
        assert_eq!(
            t.parse(r#"{"tool_calls": [{"name": "ad"#),
            ToolReply::Unparsed(r#"{"tool_calls": [{"name": "ad"#.into())
        );
    }

    #[test]
    fn syntaxes_are_read_from_the_template() {
        let hermes = "{% for t in tools %}{{ t | tojson }}{% endfor %}<tool_call>\n{\"name\": x, \"arguments\": y}";
        assert_eq!(ToolFormat::detect(Some(hermes), true), ToolFormat::Hermes);
        // Not given tools: the generic format.
        assert_eq!(ToolFormat::detect(Some(hermes), false), ToolFormat::Generic);
        // XML arguments inside the tags: a syntax of its own, not Hermes's JSON.
        let xml = "{% for t in tools %}{% endfor %}<tool_call>\n<function=x>\n<parameter=a>";
        assert_eq!(ToolFormat::detect(Some(xml), true), ToolFormat::Generic);
        assert_eq!(ToolFormat::detect(None, true), ToolFormat::Generic);
    }

    #[test]
    fn short_ids_are_nine_letters_and_digits() {
        let ids: Vec<String> = (0..50).map(short_id).collect();
        for id in &ids {
            assert!(
                id.len() == 9 && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{id}"
            );
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }

    #[test]
    fn the_system_prompt_describes_the_offered_tools() {
        let m = set(ToolChoice::Named("add".into()), true)
            .with_system(vec![ChatMessage::new("user", "1+2?")]);
        assert_eq!(m[0].role, "system");
        assert!(m[0].content.contains("\"add\"") && !m[0].content.contains("get_weather"));
        assert!(!m[0].content.contains("\"response\""));
        let m = set(ToolChoice::Auto, true).with_system(vec![
            ChatMessage::new("system", "Be brief."),
            ChatMessage::new("user", "x"),
        ]);
        assert_eq!(m.len(), 2);
        assert!(m[0].content.starts_with("Be brief.\n\n") && m[0].content.contains("response"));
    }
}
