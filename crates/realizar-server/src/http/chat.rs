//! What the chat routes (OpenAI's and Ollama's) share: a conversation with its tools,
//! template arguments and reasoning option turned into a prompt and a grammar, and a reply read
//! back into reasoning, text and tool calls.

use std::sync::Arc;

use realizar_runtime::reasoning;
use realizar_runtime::reply::{Reply, ReplyOptions};
use realizar_runtime::tools::{self, Thinking, ToolFormat, ToolSet};
use serde_json::{json, Map, Value};

use super::common::{blocking, check_text_fits, content_specials, message_bytes};
use super::AppState;
use crate::api::{self, Fields, GenParams};
use crate::engine::{ChatContext, Engine};
use crate::error::ApiError;

/// A conversation ready to generate from.
pub(crate) struct ChatPlan {
    /// The prompt.
    pub ids: Vec<u32>,
    /// How each choice's reply is read.
    pub reply: ReplyOptions,
}

impl ChatPlan {
    /// Whether replies need reading (tools or reasoning); otherwise they are plain text.
    pub(crate) fn parses(&self) -> bool {
        self.reply.tools.is_some() || self.reply.reasoning
    }
}

/// Reads a chat request's messages, tools, template arguments and reasoning option (`think`:
/// Ollama's switch, else OpenAI's `chat_template_kwargs` and `reasoning_format`), renders its
/// prompt, and sets the tools' grammar in `p`.
pub(crate) async fn plan(
    st: &Arc<AppState>,
    engine: &Arc<dyn Engine>,
    f: &Fields<'_>,
    p: &mut GenParams,
    ollama: bool,
) -> Result<ChatPlan, ApiError> {
    let messages = api::chat_messages(f, "messages")?;
    let tools = api::chat_tools(f)?.filter(ToolSet::active);
    let features = engine.chat_features();
    let format = features.tools;
    let mut context = ChatContext::default();
    let mut apart = true;
    if ollama {
        if let Some(think) = f.bool("think")? {
            if think && !features.thinking {
                return Err(ApiError::invalid(
                    "think",
                    format!("model `{}` does not support thinking", engine.info().id),
                ));
            }
            context
                .kwargs
                .insert("enable_thinking".into(), json!(think));
        }
    } else {
        context.kwargs = api::template_kwargs(f)?;
        apart = api::reasoning_apart(f)?;
    }
    let thinking_off = context.kwargs.get("enable_thinking") == Some(&json!(false));
    // With tools, reasoning is always read apart: the calls follow it.
    let reasoning = features.thinking && (apart || tools.is_some());
    let mut messages = if format == ToolFormat::Generic {
        tools::generic_history(messages)
    } else {
        messages
    };
    let mut tools_bytes = 0;
    if let Some(t) = &tools {
        if let Some((_, field)) = &p.grammar {
            let hint = if ollama {
                String::new()
            } else {
                " (set `tool_choice` to none)".to_string()
            };
            return Err(ApiError::invalid(
                *field,
                format!("`{field}` cannot be combined with `tools`{hint}"),
            ));
        }
        if format == ToolFormat::Generic {
            messages = t.with_system(messages);
        } else {
            let described = t.template_tools();
            tools_bytes = described.to_string().len();
            context.tools = Some(described);
        }
    }
    check_text_fits(
        &**engine,
        message_bytes(&messages) + tools_bytes,
        "messages",
    )?;
    let content = content_specials(st);
    let e2 = engine.clone();
    let prompt = blocking(st, move || e2.chat_prompt(&messages, &context, content)).await?;
    // The markers the reply is read by stay in its text where they are control tokens.
    let markers = tools.as_ref().map_or(&[][..], |_| format.markers());
    let think = [reasoning::THINK_OPEN, reasoning::THINK_CLOSE];
    let think = if reasoning { &think[..] } else { &[][..] };
    p.keep_special = markers
        .iter()
        .chain(think)
        .filter_map(|m| engine.control_token(m))
        .collect();
    if let Some(t) = &tools {
        let thinking = if !features.thinking || thinking_off {
            Thinking::No
        } else if prompt.thinking_open {
            Thinking::Open
        } else {
            Thinking::Optional
        };
        let e2 = engine.clone();
        p.grammar = t
            .grammar_for(format, thinking, move |s| e2.control_token(s))
            .map(|g| (g, "tools"));
    }
    Ok(ChatPlan {
        ids: prompt.ids,
        reply: ReplyOptions {
            tools: tools.map(|t| (t, format)),
            reasoning,
            thinking_open: prompt.thinking_open,
        },
    })
}

/// The id of call `k` of choice `choice` of request number `request`: OpenAI's
/// `call_<…>` shape, or the 9 letters and digits Mistral's templates require.
pub(crate) fn call_id(format: Option<ToolFormat>, request: u64, choice: usize, k: usize) -> String {
    if format.is_some_and(ToolFormat::short_ids) {
        tools::short_id((request << 20) ^ ((choice as u64) << 10) ^ k as u64)
    } else {
        format!("call_{request}_{choice}_{k}")
    }
}

/// The number of a request id (`chatcmpl-12` → 12).
pub(crate) fn request_number(id: &str) -> u64 {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// An OpenAI assistant message for a reply, and its finish reason (`tool_calls` when it
/// called tools).
pub(crate) fn openai_message(
    reply: &Reply,
    format: Option<ToolFormat>,
    request: u64,
    choice: usize,
    finish: &str,
) -> (Value, String) {
    let mut m = Map::new();
    m.insert("role".into(), json!("assistant"));
    let calls = &reply.calls;
    m.insert(
        "content".into(),
        if calls.is_empty() || !reply.content.is_empty() {
            json!(reply.content)
        } else {
            Value::Null
        },
    );
    if let Some(r) = &reply.reasoning {
        m.insert("reasoning_content".into(), json!(r));
    }
    if calls.is_empty() {
        return (Value::Object(m), finish.to_string());
    }
    let calls: Vec<Value> = calls
        .iter()
        .enumerate()
        .map(|(k, (c, text))| {
            json!({
                "id": call_id(format, request, choice, k),
                "type": "function",
                "function": {"name": c.name, "arguments": text},
            })
        })
        .collect();
    m.insert("tool_calls".into(), Value::Array(calls));
    (Value::Object(m), "tool_calls".to_string())
}

/// An Ollama assistant message for a reply: its text, `thinking`, and calls (`arguments` an
/// object).
pub(crate) fn ollama_message(reply: &Reply) -> Value {
    let mut m = json!({"role": "assistant", "content": reply.content});
    if let Some(r) = &reply.reasoning {
        m["thinking"] = json!(r);
    }
    if !reply.calls.is_empty() {
        let calls: Vec<Value> = reply
            .calls
            .iter()
            .map(|(c, _)| json!({"function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
        m["tool_calls"] = Value::Array(calls);
    }
    m
}
