//! A chat reply read as it is generated: its reasoning ([`crate::reasoning`]), its text and
//! its tool calls ([`crate::tools`]), given out as deltas that only grow (what a streaming
//! client receives) and, at the end, whole.

use serde_json::Value;

use crate::reasoning;
use crate::tools::{
    parse_native, PartialCall, PartialReply, ToolCall, ToolFormat, ToolReply, ToolSet,
};

/// How a reply is read.
#[derive(Clone, Debug)]
pub struct ReplyOptions {
    /// The tools offered and their syntax (`None`: no tools).
    pub tools: Option<(ToolSet, ToolFormat)>,
    /// Whether reasoning is read apart (a template that writes it, not turned off).
    pub reasoning: bool,
    /// Whether the prompt left a reasoning block open.
    pub thinking_open: bool,
}

/// A piece of a reply.
#[derive(Clone, Debug, PartialEq)]
pub enum ReplyDelta {
    /// More reasoning.
    Reasoning(String),
    /// More text.
    Content(String),
    /// A call begun (its function named), or more of its arguments' JSON text.
    Call {
        /// The call's place in the reply.
        index: usize,
        /// Its function, in the call's first delta.
        name: Option<String>,
        /// More of its arguments' text.
        arguments: String,
    },
}

/// A whole reply.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    /// Its reasoning.
    pub reasoning: Option<String>,
    /// Its text.
    pub content: String,
    /// Its calls, with their arguments' text.
    pub calls: Vec<(ToolCall, String)>,
}

/// Reads one reply.
#[derive(Debug)]
pub struct ReplyParser {
    opts: ReplyOptions,
    text: String,
    reasoning: String,
    content: String,
    calls: Vec<PartialCall>,
}

/// A JSON string's text decoded as far as it is whole (`s` after the opening quote).
fn json_string_prefix(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.char_indices().peekable();
    while let Some((i, c)) = it.next() {
        match c {
            '"' => break,
            '\\' => {
                let Some((_, e)) = it.next() else { break };
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'u' => {
                        let hex = |at: usize| {
                            s.get(at..at + 4)
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                        };
                        let Some(hi) = hex(i + 2) else { break };
                        let mut used = 4;
                        let ch = if (0xD800..0xDC00).contains(&hi) {
                            match (s.get(i + 6..i + 8), hex(i + 8)) {
                                (Some("\\u"), Some(lo)) if (0xDC00..0xE000).contains(&lo) => {
                                    used = 10;
                                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                                }
                                (Some(_), Some(_)) => Some('\u{FFFD}'),
                                _ => break,
                            }
                        } else {
                            char::from_u32(hi)
                        };
                        out.push(ch.unwrap_or('\u{FFFD}'));
                        for _ in 0..used {
                            it.next();
                        }
                    }
                    other => out.push(other),
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The generic format's reply so far: `{"response": "…"}` or `{"tool_calls": [{…}, …]}`.
fn parse_generic(text: &str) -> PartialReply {
    let mut out = PartialReply::default();
    let t = text.trim_start();
    if let Some(r) = t.strip_prefix("{\"response\": \"") {
        out.content = json_string_prefix(r);
        return out;
    }
    let Some(mut list) = t.strip_prefix("{\"tool_calls\": [") else {
        return out;
    };
    loop {
        let (call, end) = crate::tools::call_object(list, "arguments");
        if call.name.is_none() {
            return out;
        }
        out.calls.push(call);
        let Some(e) = end else { return out };
        match list[e..].strip_prefix(", ") {
            Some(more) => list = more,
            None => return out,
        }
    }
}

/// What `new` adds to `old`, if it grows it.
fn growth<'a>(old: &str, new: &'a str) -> Option<&'a str> {
    new.strip_prefix(old).filter(|d| !d.is_empty())
}

impl ReplyParser {
    /// A parser for one reply.
    pub fn new(opts: ReplyOptions) -> ReplyParser {
        ReplyParser {
            opts,
            text: String::new(),
            reasoning: String::new(),
            content: String::new(),
            calls: Vec::new(),
        }
    }

    /// The reply so far, read (`done`: whole).
    fn snapshot(&self, done: bool) -> (String, PartialReply) {
        let (reasoning, rest) = if self.opts.reasoning {
            let s = reasoning::split(&self.text, self.opts.thinking_open, done);
            (s.reasoning.unwrap_or("").to_string(), s.rest)
        } else {
            (String::new(), self.text.as_str())
        };
        let parsed = match &self.opts.tools {
            None => PartialReply {
                content: rest.to_string(),
                ..PartialReply::default()
            },
            Some((_, ToolFormat::Generic)) => parse_generic(rest),
            Some((_, f)) => parse_native(*f, rest, done),
        };
        (reasoning, parsed)
    }

    /// What the snapshot adds to what was given out, recorded as given.
    fn deltas(&mut self, reasoning: String, parsed: PartialReply) -> Vec<ReplyDelta> {
        let mut out = Vec::new();
        if let Some(d) = growth(&self.reasoning, &reasoning) {
            out.push(ReplyDelta::Reasoning(d.to_string()));
            self.reasoning = reasoning;
        }
        // Text before calls only: once a call has begun, later text is not given out.
        if self.calls.is_empty() {
            if let Some(d) = growth(&self.content, &parsed.content) {
                out.push(ReplyDelta::Content(d.to_string()));
                self.content = parsed.content;
            }
        }
        for (index, call) in parsed.calls.into_iter().enumerate() {
            let Some(name) = call.name.clone() else { break };
            if index == self.calls.len() {
                out.push(ReplyDelta::Call {
                    index,
                    name: Some(name),
                    arguments: call.arguments.clone(),
                });
                self.calls.push(call);
                continue;
            }
            let sent = &mut self.calls[index];
            if let Some(d) = growth(&sent.arguments, &call.arguments) {
                out.push(ReplyDelta::Call {
                    index,
                    name: None,
                    arguments: d.to_string(),
                });
                sent.arguments = call.arguments;
            }
        }
        out
    }

    /// Takes more of the reply; gives what can be given out.
    pub fn push(&mut self, text: &str) -> Vec<ReplyDelta> {
        self.text.push_str(text);
        let (r, p) = self.snapshot(false);
        self.deltas(r, p)
    }

    /// The reply is whole: the last deltas, and the reply.
    pub fn finish(&mut self) -> (Vec<ReplyDelta>, Reply) {
        let (r, p) = self.snapshot(true);
        // The calls' arguments as generated (the whole reply's parse, which `parse_for` redoes
        // to check it).
        let texts: Vec<String> = p.calls.iter().map(|c| c.arguments.clone()).collect();
        let deltas = self.deltas(r.clone(), p);
        let reasoning = (!r.is_empty()).then_some(r);
        let rest = if self.opts.reasoning {
            reasoning::split(&self.text, self.opts.thinking_open, true).rest
        } else {
            self.text.as_str()
        };
        let (content, calls) = match &self.opts.tools {
            None => (rest.to_string(), Vec::new()),
            Some((set, format)) => match set.parse_for(*format, rest) {
                ToolReply::Calls(content, calls) => {
                    let calls = calls
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let text = texts
                                .get(i)
                                .filter(|t| serde_json::from_str::<Value>(t).is_ok())
                                .cloned()
                                .unwrap_or_else(|| c.arguments.to_string());
                            (c, text)
                        })
                        .collect();
                    (content, calls)
                }
                ToolReply::Content(c) => (c, Vec::new()),
                ToolReply::Unparsed(raw) => (raw, Vec::new()),
            },
        };
        (
            deltas,
            Reply {
                reasoning,
                content,
                calls,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::{Tool, ToolChoice};
    use serde_json::json;

    fn tools(format: ToolFormat) -> Option<(ToolSet, ToolFormat)> {
        let set = ToolSet {
            tools: vec![Tool {
                name: "get_weather".into(),
                description: None,
                parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
            }],
            choice: ToolChoice::Auto,
            parallel: true,
        };
        Some((set, format))
    }

    /// Feeds `reply` a character at a time: the deltas add up to the whole reply's parts.
    fn stream(opts: ReplyOptions, reply: &str) -> (Vec<ReplyDelta>, Reply) {
        let mut p = ReplyParser::new(opts);
        let mut all = Vec::new();
        for c in reply.chars() {
            all.extend(p.push(&c.to_string()));
        }
        let (last, whole) = p.finish();
        all.extend(last);
        (all, whole)
    }

    fn joined(deltas: &[ReplyDelta]) -> (String, String, Vec<(String, String)>) {
        let (mut r, mut c, mut calls) =
            (String::new(), String::new(), Vec::<(String, String)>::new());
        for d in deltas {
            match d {
                ReplyDelta::Reasoning(t) => r.push_str(t),
                ReplyDelta::Content(t) => c.push_str(t),
                ReplyDelta::Call {
                    index,
                    name,
                    arguments,
                } => {
                    if let Some(n) = name {
                        assert_eq!(*index, calls.len());
                        calls.push((n.clone(), String::new()));
                    }
                    calls[*index].1.push_str(arguments);
                }
            }
        }
        (r, c, calls)
    }

    #[test]
    fn hermes_calls_after_reasoning_stream_as_they_come() {
        let reply = "<think>\nweather?\n</think>\n\nLet me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Nice\"}}\n</tool_call>";
        let opts = ReplyOptions {
            tools: tools(ToolFormat::Hermes),
            reasoning: true,
            thinking_open: false,
        };
        let (deltas, whole) = stream(opts, reply);
        let (r, c, calls) = joined(&deltas);
        assert_eq!(r, "weather?");
        assert_eq!(c, "Let me check.");
        assert_eq!(whole.content, "Let me check.");
        assert_eq!(whole.reasoning.as_deref(), Some("weather?"));
        assert_eq!(
            calls,
            vec![
                (
                    "get_weather".to_string(),
                    "{\"city\": \"Paris\"}".to_string()
                ),
                (
                    "get_weather".to_string(),
                    "{\"city\": \"Nice\"}".to_string()
                )
            ]
        );
        assert_eq!(whole.calls.len(), 2);
        assert_eq!(whole.calls[1].0.arguments, json!({"city": "Nice"}));
        assert_eq!(whole.calls[1].1, "{\"city\": \"Nice\"}");
    }

    #[test]
    fn generic_replies_stream_their_answer_or_calls() {
        let opts = || ReplyOptions {
            tools: tools(ToolFormat::Generic),
            reasoning: false,
            thinking_open: false,
        };
        let (deltas, whole) = stream(
            opts(),
            "{\"response\": \"Hi \\\"you\\\" \\u00e9\\ud83d\\ude00\"}",
        );
        assert_eq!(joined(&deltas).1, "Hi \"you\" é😀");
        assert_eq!(whole.content, "Hi \"you\" é😀");
        let reply =
            "{\"tool_calls\": [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}]}";
        let (deltas, whole) = stream(opts(), reply);
        assert_eq!(
            joined(&deltas).2,
            vec![(
                "get_weather".to_string(),
                "{\"city\": \"Oslo\"}".to_string()
            )]
        );
        assert_eq!(whole.calls[0].1, "{\"city\": \"Oslo\"}");
        assert!(whole.content.is_empty());
    }

    #[test]
    fn text_that_only_resembles_a_call_is_text() {
        let opts = ReplyOptions {
            tools: tools(ToolFormat::Hermes),
            reasoning: false,
            thinking_open: false,
        };
        let (deltas, whole) = stream(opts, "a < b <tool");
        assert_eq!(joined(&deltas).1, "a < b <tool");
        assert_eq!(whole.content, "a < b <tool");
        assert!(whole.calls.is_empty());
    }
}
