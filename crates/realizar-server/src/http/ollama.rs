//! The Ollama-compatible handlers (`/api/*`).

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde_json::{json, Map, Value};

use crate::api::{self, Fields};
use crate::engine::{ChatContext, ChatMessage, FinishReason, GenEvent, GenSummary, ModelKind};
use crate::error::ApiError;
use realizar_runtime::reply::{ReplyDelta, ReplyParser};

use super::body::*;
use super::chat;
use super::common::*;
use super::AppState;

/// RFC 3339 UTC time, as Ollama writes `created_at`.
pub(crate) fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

pub(crate) async fn ollama_generate(
    st: &Arc<AppState>,
    obj: &Map<String, Value>,
    t0: Instant,
    chat: bool,
) -> Result<Resp, ApiError> {
    let f = Fields::new(obj);
    f.only(if chat {
        api::OLLAMA_CHAT_FIELDS
    } else {
        api::OLLAMA_GENERATE_FIELDS
    })?;
    let engine = pick(st, &f, Some(ModelKind::Generate))?;
    let mut p = api::ollama_params(&f)?;
    let e2 = engine.clone();
    let (ids, plan) = if chat {
        let plan = chat::plan(st, &engine, &f, &mut p, true).await?;
        (plan.ids.clone(), Some(plan))
    } else {
        let prompt = f
            .str("prompt")?
            .ok_or_else(|| ApiError::invalid("prompt", "`prompt` is required"))?
            .to_string();
        let system = f.str("system")?.map(str::to_string);
        check_text_fits(
            &*engine,
            prompt.len() + system.as_ref().map_or(0, String::len),
            "prompt",
        )?;
        let raw = f.bool("raw")?.unwrap_or(false);
        let templated = !raw && engine.info().has_chat_template;
        let content = content_specials(st);
        // A raw prompt is the caller's own template: its control tokens are parsed.
        let parse_special = raw || st.config.parse_special;
        let ids = blocking(st, move || {
            if templated {
                let mut msgs = Vec::new();
                if let Some(s) = system {
                    msgs.push(ChatMessage::new("system", s));
                }
                msgs.push(ChatMessage::new("user", prompt));
                e2.chat_prompt(&msgs, &ChatContext::default(), content)
                    .map(|p| p.ids)
            } else {
                e2.tokenize(&prompt, true, parse_special)
            }
        })
        .await?;
        (ids, None)
    };
    let param = if chat { "messages" } else { "prompt" };
    let model = engine.info().id;
    if p.max_tokens == Some(0) {
        // `num_predict: 0`: the prompt is read and nothing is generated (llama.cpp's
        // `n_predict: 0`, which Ollama passed on).
        check_prompt_fits(&*engine, ids.len(), param)?;
        let s = GenSummary {
            finish_reason: FinishReason::Length,
            prompt_tokens: ids.len(),
            completion_tokens: 0,
        };
        let v = final_obj_of(chat, &model, &s, Some(""), t0);
        return Ok(if p.stream {
            response(StatusCode::OK, "application/x-ndjson", format!("{v}\n"))
        } else {
            json_response(StatusCode::OK, &v)
        });
    }
    let gs = submit(&*engine, ids, &p, param)?;
    let final_obj = move |model: &str, s: &GenSummary, text: Option<&str>, t0: Instant| {
        final_obj_of(chat, model, s, text, t0)
    };
    // A chat reply with tools or reasoning is read: thinking and text go out as they come,
    // tool calls in the last object.
    let mut parser = plan
        .filter(chat::ChatPlan::parses)
        .map(|p| ReplyParser::new(p.reply));
    if !p.stream {
        let c = collect(st, gs, t0).await?;
        let mut v = final_obj(&model, &c.summary, Some(&c.text), t0);
        if let Some(parser) = parser.as_mut() {
            parser.push(&c.text);
            v["message"] = chat::ollama_message(&parser.finish().1);
        }
        return Ok(json_response(StatusCode::OK, &v));
    }
    let chunk = move |model: &str, d: &ReplyDelta| -> Option<String> {
        let message = match d {
            ReplyDelta::Content(t) => json!({"role": "assistant", "content": t}),
            ReplyDelta::Reasoning(t) => json!({"role": "assistant", "content": "", "thinking": t}),
            ReplyDelta::Call { .. } => return None,
        };
        let v =
            json!({"model": model, "created_at": rfc3339_now(), "message": message, "done": false});
        Some(format!("{v}\n"))
    };
    Ok(stream_response(
        st,
        gs,
        t0,
        "application/x-ndjson",
        None,
        move |ev| match ev {
            GenEvent::Delta { text, .. } if parser.is_some() => parser
                .as_mut()
                .map(|p| p.push(text))
                .unwrap_or_default()
                .iter()
                .filter_map(|d| chunk(&model, d))
                .collect(),
            GenEvent::Done(s) if parser.is_some() => {
                let mut out = String::new();
                let mut v = final_obj(&model, s, None, t0);
                if let Some((deltas, reply)) = parser.as_mut().map(ReplyParser::finish) {
                    out.extend(deltas.iter().filter_map(|d| chunk(&model, d)));
                    if !reply.calls.is_empty() {
                        let mut m = chat::ollama_message(&reply);
                        m["content"] = json!("");
                        if let Some(o) = m.as_object_mut() {
                            o.remove("thinking");
                        }
                        v["message"] = m;
                    }
                }
                out.push_str(&format!("{v}\n"));
                out
            }
            GenEvent::Delta { text, .. } => {
                if text.is_empty() {
                    return String::new();
                }
                let v = if chat {
                    json!({"model": model, "created_at": rfc3339_now(),
                       "message": {"role": "assistant", "content": text}, "done": false})
                } else {
                    json!({"model": model, "created_at": rfc3339_now(), "response": text, "done": false})
                };
                format!("{v}\n")
            }
            GenEvent::Done(s) => format!("{}\n", final_obj(&model, s, None, t0)),
            GenEvent::Failed(m) => format!("{}\n", json!({"error": m})),
        },
    ))
}

/// The last object of an Ollama answer.
fn final_obj_of(chat: bool, model: &str, s: &GenSummary, text: Option<&str>, t0: Instant) -> Value {
    let mut v = json!({
        "model": model,
        "created_at": rfc3339_now(),
        "done": true,
        "done_reason": s.finish_reason.as_str(),
        "total_duration": t0.elapsed().as_nanos() as u64,
        "load_duration": 0,
        "prompt_eval_count": s.prompt_tokens,
        "eval_count": s.completion_tokens,
    });
    if let Some(m) = v.as_object_mut() {
        let t = text.unwrap_or_default();
        if chat {
            m.insert("message".into(), json!({"role": "assistant", "content": t}));
        } else {
            m.insert("response".into(), json!(t));
        }
    }
    v
}

pub(crate) fn ollama_tags(st: &AppState) -> Resp {
    let models: Vec<Value> = models(st)
        .iter()
        .map(|m| {
            let info = m.info();
            json!({
                "name": info.id,
                "model": info.id,
                "modified_at": rfc3339_now(),
                "size": info.size_bytes,
                "digest": "",
                "details": {
                    "format": match info.kind { ModelKind::Generate => "gguf", ModelKind::Embed => "safetensors" },
                    "family": "",
                    "parameter_size": "",
                    "quantization_level": "",
                },
            })
        })
        .collect();
    json_response(StatusCode::OK, &json!({"models": models}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(crate) fn rfc3339_has_the_right_shape() {
        let s = rfc3339_now();
        assert_eq!(s.len(), 30, "{s}");
        assert!(s.starts_with("20"), "{s}");
        assert!(s.ends_with('Z'));
    }
}
