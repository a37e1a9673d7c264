//! The OpenAI-compatible handlers (`/v1/*`) and `/tokenize`, `/detokenize`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine as _;
use hyper::StatusCode;
use serde_json::{json, Map, Value};

use crate::api::{self, Fields, Flavor, Prompt};
use crate::engine::{GenEvent, GenSummary, ModelKind, TokenInfo};
use crate::error::ApiError;
use realizar_runtime::reply::{ReplyDelta, ReplyParser};
use realizar_runtime::tools::ToolFormat;

use super::body::*;
use super::chat;
use super::common::*;
use super::AppState;

pub(crate) fn usage_json(s: &GenSummary) -> Value {
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "total_tokens": s.prompt_tokens + s.completion_tokens,
    })
}

pub(crate) fn chat_logprob_entry(t: &TokenInfo) -> Value {
    json!({
        "token": t.text,
        "logprob": t.logprob,
        "bytes": t.bytes,
        "top_logprobs": t.top.iter().map(|a| json!({
            "token": a.text, "logprob": a.logprob, "bytes": a.bytes
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn completion_logprobs(tokens: &[TokenInfo]) -> Value {
    let mut offset = 0usize;
    let mut offsets = Vec::with_capacity(tokens.len());
    for t in tokens {
        offsets.push(offset);
        offset += t.text.len();
    }
    json!({
        "tokens": tokens.iter().map(|t| t.text.clone()).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": tokens.iter().map(|t| {
            let m: Map<String, Value> = t.top.iter().map(|a| (a.text.clone(), json!(a.logprob))).collect();
            Value::Object(m)
        }).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

/// The usage of several choices: every prompt's tokens once, every choice's generated ones.
#[derive(Default)]
struct Usage {
    prompt: usize,
    completion: usize,
}

impl Usage {
    /// Adds a finished choice (`first`: the first choice of its prompt).
    fn add(&mut self, s: &GenSummary, first: bool) {
        if first {
            self.prompt += s.prompt_tokens;
        }
        self.completion += s.completion_tokens;
    }

    fn summary(&self, last: &GenSummary) -> GenSummary {
        GenSummary {
            finish_reason: last.finish_reason,
            prompt_tokens: self.prompt,
            completion_tokens: self.completion,
        }
    }
}

pub(crate) async fn chat_completions(
    st: &Arc<AppState>,
    obj: &Map<String, Value>,
    t0: Instant,
) -> Result<Resp, ApiError> {
    let f = Fields::new(obj);
    f.only(&api::chat_fields())?;
    let engine = pick(st, &f, Some(ModelKind::Generate))?;
    let mut p = api::openai_params(&f, Flavor::Chat)?;
    let plan = chat::plan(st, &engine, &f, &mut p, false).await?;
    let streams = submit_n(&*engine, plan.ids.clone(), &p, "messages")?;
    let model = engine.info().id;
    let id = format!("chatcmpl-{}", st.next_id.fetch_add(1, Ordering::Relaxed));
    let number = chat::request_number(&id);
    let format = plan.reply.tools.as_ref().map(|(_, f)| *f);
    let created = now_secs();
    if !p.stream {
        let mut choices = Vec::with_capacity(streams.len());
        let mut usage = Usage::default();
        let mut last = None;
        for (i, gs) in streams.into_iter().enumerate() {
            let c = collect(st, gs, t0).await?;
            let logprobs = p.logprobs.map(
                |_| json!({"content": c.logprobs.iter().map(chat_logprob_entry).collect::<Vec<_>>()}),
            );
            let mut parser = ReplyParser::new(plan.reply.clone());
            parser.push(&c.text);
            let (_, reply) = parser.finish();
            let (message, finish) =
                chat::openai_message(&reply, format, number, i, c.summary.finish_reason.as_str());
            choices.push(json!({
                "index": i,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": finish,
            }));
            usage.add(&c.summary, i == 0);
            last = Some(c.summary);
        }
        let total = last.map(|l| usage.summary(&l)).unwrap_or(GenSummary {
            finish_reason: crate::engine::FinishReason::Stop,
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": usage_json(&total),
            }),
        ));
    }
    let chunks = Chunks {
        id,
        object: "chat.completion.chunk",
        created,
        model,
        include_usage: p.include_usage,
    };
    let start: String = (0..streams.len())
        .map(|i| {
            chunks.event(
                json!([{"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
                None,
            )
        })
        .collect();
    let want_lp = p.logprobs.is_some();
    let mut usage = Usage::default();
    // With tools or reasoning, each choice's text is read as it comes: reasoning, text and
    // tool calls go out as their own deltas.
    let parses = plan.parses();
    let mut parsers: Vec<ReplyParser> = (0..streams.len())
        .map(|_| ReplyParser::new(plan.reply.clone()))
        .collect();
    let mut called: Vec<bool> = vec![false; streams.len()];
    Ok(stream_response_n(
        st,
        streams,
        t0,
        "text/event-stream",
        Some(start),
        move |i, ev, all_done| match ev {
            GenEvent::Delta { text, logprobs, .. } if parses => {
                let lp = logprobs.as_ref().filter(|_| want_lp);
                let deltas = parsers.get_mut(i).map(|p| p.push(text)).unwrap_or_default();
                let mut out = String::new();
                let mut lpv = lp.map(|t| json!({"content": [chat_logprob_entry(t)]}));
                for d in &deltas {
                    if let ReplyDelta::Call { .. } = d {
                        if let Some(c) = called.get_mut(i) {
                            *c = true;
                        }
                    }
                    let delta = delta_json(d, format, number, i);
                    out.push_str(&chunks.event(
                        json!([{"index": i, "delta": delta, "logprobs": lpv.take(), "finish_reason": null}]),
                        None,
                    ));
                }
                if let Some(lpv) = lpv {
                    out.push_str(&chunks.event(
                        json!([{"index": i, "delta": {}, "logprobs": lpv, "finish_reason": null}]),
                        None,
                    ));
                }
                out
            }
            GenEvent::Delta { text, logprobs, .. } => {
                let lp = logprobs.as_ref().filter(|_| want_lp);
                if text.is_empty() && lp.is_none() {
                    return String::new();
                }
                let lpv = lp.map(|t| json!({"content": [chat_logprob_entry(t)]}));
                chunks.event(
                    json!([{"index": i, "delta": {"content": text}, "logprobs": lpv, "finish_reason": null}]),
                    None,
                )
            }
            GenEvent::Done(s) => {
                usage.add(s, i == 0);
                let mut out = String::new();
                let mut finish = s.finish_reason.as_str().to_string();
                if parses {
                    if let Some(p) = parsers.get_mut(i) {
                        let (deltas, reply) = p.finish();
                        for d in &deltas {
                            let delta = delta_json(d, format, number, i);
                            out.push_str(&chunks.event(
                                json!([{"index": i, "delta": delta, "logprobs": null, "finish_reason": null}]),
                                None,
                            ));
                        }
                        if !reply.calls.is_empty() || called.get(i).copied().unwrap_or(false) {
                            finish = "tool_calls".to_string();
                        }
                    }
                }
                let last =
                    json!([{"index": i, "delta": {}, "logprobs": null, "finish_reason": finish}]);
                out.push_str(&if all_done {
                    chunks.done(last, &usage.summary(s))
                } else {
                    chunks.event(last, None)
                });
                out
            }
            GenEvent::Failed(m) => sse_failed(m),
        },
    ))
}

/// A reply delta as OpenAI streams it: `content`, `reasoning_content`, or a `tool_calls`
/// entry (its id, type and name in the call's first delta, then its arguments in pieces).
fn delta_json(d: &ReplyDelta, format: Option<ToolFormat>, request: u64, choice: usize) -> Value {
    match d {
        ReplyDelta::Reasoning(t) => json!({"reasoning_content": t}),
        ReplyDelta::Content(t) => json!({"content": t}),
        ReplyDelta::Call {
            index,
            name: Some(name),
            arguments,
        } => json!({"tool_calls": [{
            "index": index,
            "id": chat::call_id(format, request, choice, *index),
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }]}),
        ReplyDelta::Call {
            index, arguments, ..
        } => json!({"tool_calls": [{"index": index, "function": {"arguments": arguments}}]}),
    }
}

pub(crate) async fn completions(
    st: &Arc<AppState>,
    obj: &Map<String, Value>,
    t0: Instant,
) -> Result<Resp, ApiError> {
    let f = Fields::new(obj);
    f.only(&api::completion_fields())?;
    let engine = pick(st, &f, Some(ModelKind::Generate))?;
    let prompts = api::completion_prompt(&f)?;
    let p = api::openai_params(&f, Flavor::Completion)?;
    if (prompts.len() * p.n) as u64 > api::MAX_CHOICES {
        return Err(ApiError::invalid(
            "n",
            format!(
                "{} prompts times n = {} is more than {} choices",
                prompts.len(),
                p.n,
                api::MAX_CHOICES
            ),
        ));
    }
    if f.bool("echo")?.unwrap_or(false) {
        return Err(ApiError::invalid("echo", "`echo` is not supported"));
    }
    let suffix = f.str("suffix")?;
    if suffix.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid("suffix", "`suffix` is not supported"));
    }
    let parse_special = f.bool("parse_special")?.unwrap_or(st.config.parse_special);
    let mut all_ids = Vec::with_capacity(prompts.len());
    for prompt in prompts {
        all_ids.push(match prompt {
            Prompt::Ids(ids) => ids,
            Prompt::Text(t) => {
                check_text_fits(&*engine, t.len(), "prompt")?;
                let e2 = engine.clone();
                blocking(st, move || e2.tokenize(&t, true, parse_special)).await?
            }
        });
    }
    // Choice `k` is choice `k % n` of prompt `k / n`.
    let n = p.n.max(1);
    let mut streams = Vec::with_capacity(all_ids.len() * n);
    for ids in all_ids {
        streams.extend(submit_n(&*engine, ids, &p, "prompt")?);
    }
    let model = engine.info().id;
    let id = format!("cmpl-{}", st.next_id.fetch_add(1, Ordering::Relaxed));
    let created = now_secs();
    if !p.stream {
        let mut choices = Vec::with_capacity(streams.len());
        let mut usage = Usage::default();
        let mut last = None;
        for (i, gs) in streams.into_iter().enumerate() {
            let c = collect(st, gs, t0).await?;
            let lp = p.logprobs.map(|_| completion_logprobs(&c.logprobs));
            choices.push(json!({
                "index": i, "text": c.text, "logprobs": lp,
                "finish_reason": c.summary.finish_reason.as_str(),
            }));
            usage.add(&c.summary, i % n == 0);
            last = Some(c.summary);
        }
        let total = last.map(|l| usage.summary(&l)).unwrap_or(GenSummary {
            finish_reason: crate::engine::FinishReason::Stop,
            prompt_tokens: 0,
            completion_tokens: 0,
        });
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "id": id, "object": "text_completion", "created": created, "model": model,
                "choices": choices,
                "usage": usage_json(&total),
            }),
        ));
    }
    let want_lp = p.logprobs.is_some();
    let chunks = Chunks {
        id,
        object: "text_completion",
        created,
        model,
        include_usage: p.include_usage,
    };
    let mut usage = Usage::default();
    Ok(stream_response_n(
        st,
        streams,
        t0,
        "text/event-stream",
        None,
        move |i, ev, all_done| match ev {
            GenEvent::Delta { text, logprobs, .. } => {
                let lp = logprobs.as_ref().filter(|_| want_lp);
                if text.is_empty() && lp.is_none() {
                    return String::new();
                }
                let lpv = lp.map(|t| completion_logprobs(std::slice::from_ref(t)));
                chunks.event(
                    json!([{"index": i, "text": text, "logprobs": lpv, "finish_reason": null}]),
                    None,
                )
            }
            GenEvent::Done(s) => {
                usage.add(s, i % n == 0);
                let last = json!([{"index": i, "text": "", "logprobs": null, "finish_reason": s.finish_reason.as_str()}]);
                if all_done {
                    chunks.done(last, &usage.summary(s))
                } else {
                    chunks.event(last, None)
                }
            }
            GenEvent::Failed(m) => sse_failed(m),
        },
    ))
}

/// Texts of one embedding turn: a large request is embedded in turns, and requests take turns
/// in arrival order, so that one big batch never locks the others out.
const EMBED_TURN: usize = 16;

/// Embeds `inputs` in turns of [`EMBED_TURN`] texts under the server's fair embedding lock. A
/// client that goes away drops this future, and no further turn starts.
async fn embed_in_turns(
    st: &Arc<AppState>,
    engine: &Arc<dyn crate::Engine>,
    inputs: Vec<String>,
) -> Result<crate::Embeddings, ApiError> {
    let mut out = crate::Embeddings {
        vectors: Vec::with_capacity(inputs.len()),
        prompt_tokens: 0,
    };
    let mut rest = inputs;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(EMBED_TURN));
        let turn = std::mem::replace(&mut rest, tail);
        let _turn = st.embed_turn.lock().await;
        let e2 = engine.clone();
        let part = blocking_unbounded(move || e2.embed(&turn)).await?;
        out.vectors.extend(part.vectors);
        out.prompt_tokens += part.prompt_tokens;
    }
    Ok(out)
}

pub(crate) async fn embeddings(
    st: &Arc<AppState>,
    obj: &Map<String, Value>,
    ollama: bool,
) -> Result<Resp, ApiError> {
    let f = Fields::new(obj);
    if ollama {
        f.only(&["model", "input", "truncate", "options", "keep_alive"])?;
        if f.bool("truncate")? == Some(false) {
            return Err(ApiError::invalid(
                "truncate",
                "`truncate: false` is not supported: inputs longer than the model's context are truncated",
            ));
        }
        if let Some(o) = f.object("options")? {
            api::Fields::nested(o, "options").only(api::OLLAMA_RESOURCE_OPTIONS)?;
        }
    } else {
        f.only(&["model", "input", "encoding_format", "dimensions", "user"])?;
    }
    let engine = pick(st, &f, Some(ModelKind::Embed))?;
    let inputs = api::embedding_inputs(&f, "input")?;
    let base64 = match f.str("encoding_format")? {
        None | Some("float") => false,
        Some("base64") if !ollama => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("`encoding_format` must be `float` or `base64`, got `{other}`"),
            ))
        }
    };
    let dimensions = f.uint("dimensions", api::MAX_COUNT)?;
    let out = embed_in_turns(st, &engine, inputs).await?;
    let dim = out.vectors.first().map_or(0, Vec::len) as u64;
    if let Some(d) = dimensions.filter(|&d| d != dim) {
        return Err(ApiError::invalid(
            "dimensions",
            format!(
                "this model's embeddings have {dim} dimensions; `dimensions` {d} is not supported"
            ),
        ));
    }
    st.metrics.prompt_tokens(out.prompt_tokens);
    let model = engine.info().id;
    if ollama {
        return Ok(json_response(
            StatusCode::OK,
            &json!({"model": model, "embeddings": out.vectors, "prompt_eval_count": out.prompt_tokens}),
        ));
    }
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let emb = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": emb})
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": out.prompt_tokens, "total_tokens": out.prompt_tokens},
        }),
    ))
}

pub(crate) async fn tokenize(
    st: &Arc<AppState>,
    obj: &Map<String, Value>,
) -> Result<Resp, ApiError> {
    let f = Fields::new(obj);
    f.only(&[
        "model",
        "content",
        "add_special",
        "parse_special",
        "with_pieces",
    ])?;
    let engine = pick(st, &f, None)?;
    let content = f
        .str("content")?
        .ok_or_else(|| ApiError::invalid("content", "`content` is required"))?
        .to_string();
    let add_special = f.bool("add_special")?.unwrap_or(true);
    let parse_special = f.bool("parse_special")?.unwrap_or(st.config.parse_special);
    let with_pieces = f.bool("with_pieces")?.unwrap_or(false);
    let e2 = engine.clone();
    let ids = blocking(st, move || {
        e2.tokenize(&content, add_special, parse_special)
    })
    .await?;
    if !with_pieces {
        // Written directly: a JSON value per id would take ten times the ids' memory.
        let body = format!(
            "{{\"tokens\":{}}}",
            serde_json::to_string(&ids).map_err(|e| ApiError::internal(e.to_string()))?
        );
        return Ok(response(StatusCode::OK, "application/json", body));
    }
    let tokens: Vec<Value> = {
        let e2 = engine.clone();
        let ids2 = ids.clone();
        let pieces = blocking(st, move || {
            ids2.iter()
                .map(|&i| e2.detokenize(&[i]))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        ids.iter()
            .zip(pieces)
            .map(|(i, p)| json!({"id": i, "piece": p}))
            .collect()
    };
    Ok(json_response(StatusCode::OK, &json!({"tokens": tokens})))
}

pub(crate) async fn detokenize(
    st: &Arc<AppState>,
    obj: &Map<String, Value>,
) -> Result<Resp, ApiError> {
    let f = Fields::new(obj);
    f.only(&["model", "tokens"])?;
    let engine = pick(st, &f, None)?;
    let ids: Vec<u32> = match f.get("tokens") {
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| {
                        ApiError::invalid(
                            format!("tokens[{i}]"),
                            format!("`tokens[{i}]` must be a token id"),
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
        None => return Err(ApiError::invalid("tokens", "`tokens` is required")),
        Some(_) => {
            return Err(ApiError::invalid(
                "tokens",
                "`tokens` must be an array of token ids",
            ))
        }
    };
    let e2 = engine.clone();
    let text = blocking(st, move || e2.detokenize(&ids)).await?;
    Ok(json_response(StatusCode::OK, &json!({"content": text})))
}

/// The envelope every chunk of one OpenAI streaming response shares.
pub(crate) struct Chunks {
    pub(crate) id: String,
    pub(crate) object: &'static str,
    pub(crate) created: u64,
    pub(crate) model: String,
    pub(crate) include_usage: bool,
}

impl Chunks {
    /// One chunk with `choices` (and `usage`) as a server-sent event.
    pub(crate) fn event(&self, choices: Value, usage: Option<Value>) -> String {
        let mut v = json!({
            "id": self.id, "object": self.object, "created": self.created,
            "model": self.model, "choices": choices,
        });
        if let (Some(u), Some(m)) = (usage, v.as_object_mut()) {
            m.insert("usage".into(), u);
        }
        sse(&v)
    }

    /// The end of the stream: the last choice (`finish_reason` set), the usage chunk when
    /// the client asked for it, `[DONE]`.
    pub(crate) fn done(&self, last: Value, s: &GenSummary) -> String {
        let mut out = self.event(last, None);
        if self.include_usage {
            out.push_str(&self.event(json!([]), Some(usage_json(s))));
        }
        out.push_str("data: [DONE]\n\n");
        out
    }
}

/// A generation that failed mid-stream: the error as an event, then `[DONE]`.
pub(crate) fn sse_failed(m: &str) -> String {
    format!(
        "{}data: [DONE]\n\n",
        sse(&ApiError::internal(m.to_string()).body())
    )
}
