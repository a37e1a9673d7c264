//! Tool calling with the generic JSON format, for chat templates that do not describe tools
//! themselves: the tools are described in the system prompt, the reply is generated under a
//! JSON schema (`{"tool_calls": [{"name", "arguments"}, ...]}`, or `{"response": text}` when
//! the model may answer without a call), and parsed back into calls or text. Arguments are
//! generated under each tool's own parameter schema, so they always parse and validate.
//! Earlier turns of a conversation (an assistant's calls, the tools' results) are written
//! into plain messages in the same format, so any template renders them.

use serde_json::{json, Map, Value};

use crate::constrain::Grammar;
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
    /// Calls.
    Calls(Vec<ToolCall>),
    /// A plain answer.
    Content(String),
    /// Text that is not a complete reply (cut by the token budget): returned as it is.
    Unparsed(String),
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

    /// The language of the reply (`None` when the tools are not offered).
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
            Some(c) if !c.is_empty() => ToolReply::Calls(c),
            _ => ToolReply::Unparsed(text.to_string()),
        }
    }
}

/// An assistant turn that called tools, as the generic format writes it (after any text).
pub fn assistant_calls_message(content: &str, calls: &[ToolCall]) -> ChatMessage {
    let calls: Vec<Value> = calls
        .iter()
        .map(|c| json!({"name": c.name, "arguments": c.arguments}))
        .collect();
    let json = json!({"tool_calls": calls}).to_string();
    let text = if content.is_empty() {
        json
    } else {
        format!("{content}\n{json}")
    };
    ChatMessage::new("assistant", text)
}

/// Tool results (consecutive `tool` messages: call id or name, and content) as one user
/// turn, so that templates that want user and assistant turns to alternate accept them.
pub fn tool_results_message(results: &[(String, String)]) -> ChatMessage {
    let items: Vec<Value> = results
        .iter()
        .map(|(id, content)| json!({"id": id, "content": content}))
        .collect();
    ChatMessage::new("user", json!({"tool_results": items}).to_string())
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
            ToolReply::Calls(vec![ToolCall {
                name: "add".into(),
                arguments: json!({"a": 1, "b": 2})
            }])
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
