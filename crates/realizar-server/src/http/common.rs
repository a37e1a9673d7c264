//! What the handlers share: choosing the model, running blocking work, submitting a
//! generation and following its events.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use hyper::StatusCode;
use serde_json::{json, Value};

use crate::api::{Fields, GenParams};
use crate::engine::{
    ChatMessage, ContentSpecials, Engine, EngineError, EngineLoad, GenEvent, GenRequest, GenStream,
    GenSummary, ModelKind, TokenInfo,
};
use crate::error::ApiError;

use super::body::{error_response, json_response, Resp};
use super::AppState;

pub(crate) fn total_load(st: &AppState) -> EngineLoad {
    let models = st.models.read().unwrap_or_else(|p| p.into_inner());
    models.iter().fold(EngineLoad::default(), |a, m| {
        let l = m.load();
        EngineLoad {
            queued: a.queued + l.queued,
            active: a.active + l.active,
            slots: a.slots + l.slots,
        }
    })
}

pub(crate) fn health(st: &AppState) -> Resp {
    if st.ready.load(Ordering::Acquire) {
        json_response(StatusCode::OK, &json!({"status": "ok"}))
    } else {
        error_response(&ApiError::unavailable("Loading model"))
    }
}

pub(crate) fn models(st: &AppState) -> Vec<Arc<dyn Engine>> {
    st.models.read().unwrap_or_else(|p| p.into_inner()).clone()
}

pub(crate) fn model_json(st: &AppState, m: &dyn Engine) -> Value {
    let info = m.info();
    json!({
        "id": info.id,
        "object": "model",
        "created": st.created,
        "owned_by": "realizar",
        "meta": {
            "kind": match info.kind { ModelKind::Generate => "generate", ModelKind::Embed => "embed" },
            "n_ctx": info.ctx,
            "size": info.size_bytes,
        }
    })
}

pub(crate) fn list_models(st: &AppState) -> Resp {
    let data: Vec<Value> = models(st).iter().map(|m| model_json(st, &**m)).collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

pub(crate) fn get_model(st: &AppState, id: &str) -> Result<Resp, ApiError> {
    let m = models(st)
        .into_iter()
        .find(|m| m.info().id == id)
        .ok_or_else(|| ApiError::model_not_found(id))?;
    Ok(json_response(StatusCode::OK, &model_json(st, &*m)))
}

/// The model a request names (or the first one of `kind`).
pub(crate) fn pick(
    st: &AppState,
    f: &Fields<'_>,
    kind: Option<ModelKind>,
) -> Result<Arc<dyn Engine>, ApiError> {
    if !st.ready.load(Ordering::Acquire) {
        return Err(ApiError::unavailable("Loading model"));
    }
    let name = f.str("model")?.filter(|s| !s.is_empty());
    let all = models(st);
    let found = match name {
        Some(n) => all
            .iter()
            .find(|m| m.info().id == n)
            .cloned()
            .ok_or_else(|| ApiError::model_not_found(n))?,
        None => all
            .iter()
            .find(|m| kind.is_none_or(|k| m.info().kind == k))
            .or(all.first())
            .cloned()
            .ok_or_else(|| ApiError::unavailable("no model is loaded"))?,
    };
    if let Some(k) = kind {
        let info = found.info();
        if info.kind != k {
            let what = match k {
                ModelKind::Generate => "text generation",
                ModelKind::Embed => "embeddings",
            };
            let mut e = ApiError::invalid(
                "model",
                format!("model `{}` does not support {what}", info.id),
            );
            e.code = Some("model_not_supported");
            return Err(e);
        }
    }
    Ok(found)
}

/// How control-token texts in chat messages are read, by the server's configuration.
pub(crate) fn content_specials(st: &AppState) -> ContentSpecials {
    if st.config.parse_special {
        ContentSpecials::Parsed
    } else {
        ContentSpecials::Text
    }
}

/// The bytes of a conversation's texts: roles, contents, reasoning, calls.
pub(crate) fn message_bytes(messages: &[ChatMessage]) -> usize {
    messages
        .iter()
        .map(|m| {
            let calls: usize = m
                .tool_calls
                .iter()
                .map(|c| c.id.len() + c.name.len() + c.arguments.to_string().len())
                .sum();
            m.role.len()
                + m.content.len()
                + m.reasoning_content.as_ref().map_or(0, String::len)
                + m.tool_call_id.as_ref().map_or(0, String::len)
                + m.name.as_ref().map_or(0, String::len)
                + calls
        })
        .sum()
}

/// Refuses a text of `bytes` bytes that cannot fit in the model's context before it is
/// tokenized: every token stands for at most [`crate::ModelInfo::max_token_bytes`] bytes.
pub(crate) fn check_text_fits(
    engine: &dyn Engine,
    bytes: usize,
    param: &'static str,
) -> Result<(), ApiError> {
    let info = engine.info();
    if info.max_token_bytes == 0 {
        return Ok(());
    }
    let least = bytes.div_ceil(info.max_token_bytes);
    if least > info.ctx {
        let mut e = ApiError::invalid(
            param,
            format!(
                "This model's maximum context length is {} tokens, but the input ({bytes} bytes) has at least {least} tokens",
                info.ctx
            ),
        );
        e.code = Some("context_length_exceeded");
        return Err(e);
    }
    Ok(())
}

/// Runs blocking engine work (tokenizing, templating, embedding) off the async workers, at
/// most as many at once as there are cores (more would only add memory, not speed).
pub(crate) async fn blocking<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = st
        .blocking_permits
        .acquire()
        .await
        .map_err(|_| ApiError::internal("internal error: the server is shutting down"))?;
    blocking_unbounded(f).await
}

/// Runs blocking engine work off the async workers without taking a permit (for work that is
/// serialized another way, like embedding turns).
pub(crate) async fn blocking_unbounded<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) if e.is_panic() => Err(ApiError::internal("internal error: the model panicked")),
        Err(_) => Err(ApiError::internal("internal error: the task was cancelled")),
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Refuses a prompt of `tokens` tokens longer than the context.
pub(crate) fn check_prompt_fits(
    engine: &dyn Engine,
    tokens: usize,
    prompt_param: &'static str,
) -> Result<(), ApiError> {
    let ctx = engine.info().ctx;
    if tokens > ctx {
        let mut e = ApiError::invalid(
            prompt_param,
            format!(
                "This model's maximum context length is {ctx} tokens, but the prompt has {tokens} tokens"
            ),
        );
        e.code = Some("context_length_exceeded");
        return Err(e);
    }
    Ok(())
}

/// Builds and submits a generation request.
pub(crate) fn submit(
    engine: &dyn Engine,
    prompt: Vec<u32>,
    p: &GenParams,
    prompt_param: &'static str,
) -> Result<GenStream, ApiError> {
    let info = engine.info();
    let ctx = info.ctx;
    check_prompt_fits(engine, prompt.len(), prompt_param)?;
    if info.n_vocab > 0 {
        if let Some((id, _)) = p
            .sampler
            .logit_bias
            .iter()
            .find(|(id, _)| *id as usize >= info.n_vocab)
        {
            return Err(ApiError::invalid(
                "logit_bias",
                format!(
                    "`logit_bias` names token {id}, outside the vocabulary of {} tokens",
                    info.n_vocab
                ),
            ));
        }
    }
    let room = ctx.saturating_sub(prompt.len()).max(1);
    let req = GenRequest {
        max_tokens: p.max_tokens.unwrap_or(room),
        prompt,
        sampler: p.sampler.clone(),
        stop: p.stop.clone(),
        logprobs: p.logprobs,
        ignore_eos: p.ignore_eos,
        grammar: p.grammar.as_ref().map(|(g, _)| g.clone()),
        keep_special: p.keep_special.clone(),
    };
    engine.submit(req).map_err(|e| match e {
        EngineError::ContextExceeded { .. } => {
            let mut a = ApiError::invalid(prompt_param, e.to_string());
            a.code = Some("context_length_exceeded");
            a
        }
        // A grammar that does not compile: the field that gave it.
        EngineError::InvalidInput {
            param: "grammar",
            reason,
        } => {
            let field = p.grammar.as_ref().map_or("grammar", |(_, f)| *f);
            ApiError::invalid(field, format!("`{field}`: {reason}"))
        }
        e => ApiError::from(e),
    })
}

/// Submits `p.n` generations of one prompt (a request's choices): choice `i` samples with
/// the seed plus `i`, so that the choices differ and a seeded request is reproducible. If one
/// cannot be queued, the ones already queued are cancelled.
pub(crate) fn submit_n(
    engine: &dyn Engine,
    prompt: Vec<u32>,
    p: &GenParams,
    prompt_param: &'static str,
) -> Result<Vec<GenStream>, ApiError> {
    let mut out = Vec::with_capacity(p.n.max(1));
    for i in 0..p.n.max(1) {
        let mut pi = p.clone();
        pi.sampler.seed = p.sampler.seed.wrapping_add(i as u64);
        out.push(submit(engine, prompt.clone(), &pi, prompt_param)?);
    }
    Ok(out)
}

/// Follows a generation's events and records latency metrics.
pub(crate) struct Tracker {
    pub(crate) st: Arc<AppState>,
    t0: Instant,
    last: Option<Instant>,
}

impl Tracker {
    pub(crate) fn new(st: &Arc<AppState>, t0: Instant) -> Tracker {
        Tracker {
            st: st.clone(),
            t0,
            last: None,
        }
    }

    pub(crate) fn observe(&mut self, ev: &GenEvent) {
        match ev {
            GenEvent::Delta { token: Some(_), .. } => {
                let now = Instant::now();
                match self.last {
                    None => self
                        .st
                        .metrics
                        .time_to_first_token((now - self.t0).as_secs_f64()),
                    Some(l) => self.st.metrics.time_per_token((now - l).as_secs_f64()),
                }
                self.last = Some(now);
            }
            GenEvent::Done(s) => {
                self.st.metrics.prompt_tokens(s.prompt_tokens);
                self.st.metrics.generated_tokens(s.completion_tokens);
            }
            _ => {}
        }
    }
}

/// A finished generation.
pub(crate) struct Collected {
    pub(crate) text: String,
    pub(crate) logprobs: Vec<TokenInfo>,
    pub(crate) summary: GenSummary,
}

pub(crate) async fn collect(
    st: &Arc<AppState>,
    mut gs: GenStream,
    t0: Instant,
) -> Result<Collected, ApiError> {
    let mut tr = Tracker::new(st, t0);
    let mut text = String::new();
    let mut logprobs = Vec::new();
    loop {
        let ev = tokio::select! {
            () = st.aborted() => {
                return Err(ApiError::unavailable(
                    "the server is shutting down; the generation was stopped",
                ));
            }
            ev = gs.next() => ev,
        };
        let Some(ev) = ev else { break };
        tr.observe(&ev);
        match ev {
            GenEvent::Delta {
                text: t,
                logprobs: lp,
                ..
            } => {
                text.push_str(&t);
                logprobs.extend(lp);
            }
            GenEvent::Done(summary) => {
                return Ok(Collected {
                    text,
                    logprobs,
                    summary,
                })
            }
            GenEvent::Failed(m) => return Err(ApiError::internal(m)),
        }
    }
    Err(ApiError::internal("the generation ended without a result"))
}
