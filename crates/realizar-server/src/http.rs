//! The HTTP layer: accepting connections, routing, authentication, body limits, the handlers
//! of every endpoint, Server-Sent Events and NDJSON streaming, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::api::{self, Fields, Flavor, GenParams, Prompt};
use crate::engine::{
    ChatMessage, Engine, EngineError, EngineLoad, GenEvent, GenRequest, GenStream, GenSummary,
    ModelKind, TokenInfo,
};
use crate::error::{ApiError, ServerError};
use crate::metrics::Metrics;

/// Options of the HTTP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// When set, every endpoint but `/health` needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Largest request body in bytes (larger ones get 413).
    pub max_body: usize,
    /// How long in-flight requests may run after a shutdown signal.
    pub drain_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            api_key: None,
            max_body: 2 << 20,
            drain_timeout: Duration::from_secs(30),
        }
    }
}

pub(crate) struct AppState {
    config: ServerConfig,
    models: RwLock<Vec<Arc<dyn Engine>>>,
    ready: AtomicBool,
    pub(crate) metrics: Metrics,
    next_id: AtomicU64,
    created: u64,
}

/// A handle to a server's state: add models and mark it ready while it already listens.
#[derive(Clone)]
pub struct ServerHandle {
    state: Arc<AppState>,
}

impl core::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("ready", &self.state.ready.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// Serves `engine` under its [`crate::ModelInfo::id`] (the first model of each kind is the
    /// default when a request names none).
    pub fn add_model(&self, engine: Arc<dyn Engine>) {
        self.state
            .models
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(engine);
    }

    /// Marks the server ready (`/health` 200) or loading (503).
    pub fn set_ready(&self, ready: bool) {
        self.state.ready.store(ready, Ordering::Release);
    }

    /// The Prometheus metrics text, as `/metrics` serves it.
    pub fn metrics_text(&self) -> String {
        self.state.metrics.render(total_load(&self.state))
    }
}

/// An HTTP server over a set of [`Engine`]s.
pub struct Server {
    handle: ServerHandle,
}

impl core::fmt::Debug for Server {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}

impl Server {
    /// A server with no model yet, not ready.
    pub fn new(config: ServerConfig) -> Server {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Server {
            handle: ServerHandle {
                state: Arc::new(AppState {
                    config,
                    models: RwLock::new(Vec::new()),
                    ready: AtomicBool::new(false),
                    metrics: Metrics::default(),
                    next_id: AtomicU64::new(1),
                    created,
                }),
            },
        }
    }

    /// The handle (clone it into the task that loads models).
    pub fn handle(&self) -> ServerHandle {
        self.handle.clone()
    }

    /// Accepts connections on `listener` until `shutdown` completes, then stops accepting and
    /// lets in-flight requests finish for at most the drain timeout.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let state = self.handle.state.clone();
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .max_buf_size(256 * 1024);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors and the like: wait, do not spin.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let st = state.clone();
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(dispatch(st, req).await) }
                    });
                    let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), svc));
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        state.ready.store(false, Ordering::Release);
        let drain = state.config.drain_timeout;
        tracing::info!(
            ?drain,
            "shutting down: no new connections, draining requests"
        );
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("all connections closed"),
            () = tokio::time::sleep(drain) => tracing::warn!("drain timeout reached; closing"),
        }
        Ok(())
    }
}

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

/// A response body: all at once, or streamed from a channel.
pub(crate) enum ResBody {
    Full(Option<Bytes>),
    Stream(mpsc::Receiver<Bytes>),
}

impl Body for ResBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ResBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResBody::Stream(rx) => rx.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ResBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ResBody::Full(None) => SizeHint::with_exact(0),
            ResBody::Stream(_) => SizeHint::default(),
        }
    }
}

type Resp = Response<ResBody>;

fn response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(ResBody::Full(Some(body.into())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_response(status: StatusCode, v: &Value) -> Resp {
    response(status, "application/json", v.to_string())
}

fn error_response(e: &ApiError) -> Resp {
    let mut r = json_response(e.status, &e.body());
    if let Some(s) = e.retry_after {
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// The endpoint label of a path, for metrics.
fn endpoint_label(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "chat_completions",
        "/v1/completions" => "completions",
        "/v1/embeddings" => "embeddings",
        "/v1/models" => "models",
        "/tokenize" => "tokenize",
        "/detokenize" => "detokenize",
        "/health" => "health",
        "/metrics" => "metrics",
        "/api/generate" => "ollama_generate",
        "/api/chat" => "ollama_chat",
        "/api/embed" => "ollama_embed",
        "/api/tags" => "ollama_tags",
        p if p.starts_with("/v1/models/") => "models",
        _ => "other",
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one request in its own task, so that a panic in a handler becomes a 500.
async fn dispatch(st: Arc<AppState>, req: Request<Incoming>) -> Resp {
    let id = st.next_id.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", id, %method, path = %path);
    let t0 = Instant::now();
    let task = tokio::spawn(route(st.clone(), req, t0).instrument(span.clone()));
    // When hyper drops this future (the client went away), stop the handler too: that drops
    // its generation stream, which cancels the generation.
    let _abort = AbortOnDrop(task.abort_handle());
    let mut resp = match task.await {
        Ok(r) => r,
        Err(e) => {
            let _g = span.enter();
            if e.is_panic() {
                tracing::error!("the request handler panicked");
            } else {
                tracing::error!(error = %e, "the request handler was cancelled");
            }
            error_response(&ApiError::internal(
                "internal error: the request handler failed",
            ))
        }
    };
    let status = resp.status();
    st.metrics.request(endpoint_label(&path), status.as_u16());
    {
        let _g = span.enter();
        tracing::info!(
            status = status.as_u16(),
            ms = t0.elapsed().as_secs_f64() * 1000.0,
            "answered"
        );
    }
    resp.headers_mut()
        .insert("x-request-id", HeaderValue::from(id));
    resp
}

fn authorized(st: &AppState, req: &Request<Incoming>) -> bool {
    let Some(key) = &st.config.api_key else {
        return true;
    };
    let Some(h) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    let Some(given) = h.strip_prefix("Bearer ").map(str::trim) else {
        return false;
    };
    // Compare without an early exit on the first differing byte.
    given.len() == key.len()
        && given
            .bytes()
            .zip(key.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The routes and the methods they accept.
const ROUTES: &[(&str, Method)] = &[
    ("/health", Method::GET),
    ("/metrics", Method::GET),
    ("/v1/models", Method::GET),
    ("/v1/chat/completions", Method::POST),
    ("/v1/completions", Method::POST),
    ("/v1/embeddings", Method::POST),
    ("/tokenize", Method::POST),
    ("/detokenize", Method::POST),
    ("/api/generate", Method::POST),
    ("/api/chat", Method::POST),
    ("/api/embed", Method::POST),
    ("/api/tags", Method::GET),
];

async fn route(st: Arc<AppState>, req: Request<Incoming>, t0: Instant) -> Resp {
    match route_inner(&st, req, t0).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(error = %e, "request failed");
            } else {
                tracing::debug!(error = %e, "request refused");
            }
            error_response(&e)
        }
    }
}

async fn route_inner(
    st: &Arc<AppState>,
    req: Request<Incoming>,
    t0: Instant,
) -> Result<Resp, ApiError> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if path != "/health" && !authorized(st, &req) {
        return Err(ApiError::unauthorized());
    }
    let route = if path.starts_with("/v1/models/") {
        Some(Method::GET)
    } else {
        ROUTES
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, m)| m.clone())
    };
    let Some(allowed) = route else {
        return Err(ApiError::route_not_found(method.as_str(), &path));
    };
    if method != allowed {
        let mut r = error_response(&ApiError::method_not_allowed(method.as_str(), &path));
        r.headers_mut().insert(
            ALLOW,
            HeaderValue::from_str(allowed.as_str()).unwrap_or(HeaderValue::from_static("GET")),
        );
        return Ok(r);
    }
    match path.as_str() {
        "/health" => Ok(health(st)),
        "/metrics" => Ok(response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            st.metrics.render(total_load(st)),
        )),
        "/v1/models" => Ok(list_models(st)),
        "/api/tags" => Ok(ollama_tags(st)),
        p if p.starts_with("/v1/models/") => get_model(st, &p["/v1/models/".len()..]),
        _ => {
            let body = read_body(st, req).await?;
            let obj = api::parse_object(&body)?;
            match path.as_str() {
                "/v1/chat/completions" => chat_completions(st, &obj, t0).await,
                "/v1/completions" => completions(st, &obj, t0).await,
                "/v1/embeddings" => embeddings(st, &obj, false).await,
                "/api/embed" => embeddings(st, &obj, true).await,
                "/tokenize" => tokenize(st, &obj).await,
                "/detokenize" => detokenize(st, &obj).await,
                "/api/generate" => ollama_generate(st, &obj, t0, false).await,
                "/api/chat" => ollama_generate(st, &obj, t0, true).await,
                _ => Err(ApiError::route_not_found(method.as_str(), &path)),
            }
        }
    }
}

async fn read_body(st: &AppState, req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let max = st.config.max_body;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::too_large(max));
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::too_large(max))
            } else {
                Err(ApiError::bad_request(format!(
                    "could not read the request body: {e}"
                )))
            }
        }
    }
}

fn total_load(st: &AppState) -> EngineLoad {
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

fn health(st: &AppState) -> Resp {
    if st.ready.load(Ordering::Acquire) {
        json_response(StatusCode::OK, &json!({"status": "ok"}))
    } else {
        error_response(&ApiError::unavailable("Loading model"))
    }
}

fn models(st: &AppState) -> Vec<Arc<dyn Engine>> {
    st.models.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn model_json(st: &AppState, m: &dyn Engine) -> Value {
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

fn list_models(st: &AppState) -> Resp {
    let data: Vec<Value> = models(st).iter().map(|m| model_json(st, &**m)).collect();
    json_response(StatusCode::OK, &json!({"object": "list", "data": data}))
}

fn get_model(st: &AppState, id: &str) -> Result<Resp, ApiError> {
    let m = models(st)
        .into_iter()
        .find(|m| m.info().id == id)
        .ok_or_else(|| ApiError::model_not_found(id))?;
    Ok(json_response(StatusCode::OK, &model_json(st, &*m)))
}

/// The model a request names (or the first one of `kind`).
fn pick(
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

/// Runs blocking engine work (tokenizing, templating, embedding) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EngineError> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(ApiError::from),
        Err(e) if e.is_panic() => Err(ApiError::internal("internal error: the model panicked")),
        Err(_) => Err(ApiError::internal("internal error: the task was cancelled")),
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Builds and submits a generation request.
fn submit(
    engine: &dyn Engine,
    prompt: Vec<u32>,
    p: &GenParams,
    prompt_param: &'static str,
) -> Result<GenStream, ApiError> {
    let ctx = engine.info().ctx;
    if prompt.len() > ctx {
        let mut e = ApiError::invalid(
            prompt_param,
            format!(
                "This model's maximum context length is {ctx} tokens, but the prompt has {} tokens",
                prompt.len()
            ),
        );
        e.code = Some("context_length_exceeded");
        return Err(e);
    }
    let room = ctx.saturating_sub(prompt.len()).max(1);
    let req = GenRequest {
        max_tokens: p.max_tokens.unwrap_or(room),
        prompt,
        sampler: p.sampler.clone(),
        stop: p.stop.clone(),
        logprobs: p.logprobs,
        ignore_eos: p.ignore_eos,
    };
    engine.submit(req).map_err(|e| match e {
        EngineError::ContextExceeded { .. } => {
            let mut a = ApiError::invalid(prompt_param, e.to_string());
            a.code = Some("context_length_exceeded");
            a
        }
        e => ApiError::from(e),
    })
}

/// Follows a generation's events and records latency metrics.
struct Tracker {
    st: Arc<AppState>,
    t0: Instant,
    last: Option<Instant>,
}

impl Tracker {
    fn new(st: &Arc<AppState>, t0: Instant) -> Tracker {
        Tracker {
            st: st.clone(),
            t0,
            last: None,
        }
    }

    fn observe(&mut self, ev: &GenEvent) {
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
struct Collected {
    text: String,
    logprobs: Vec<TokenInfo>,
    summary: GenSummary,
}

async fn collect(
    st: &Arc<AppState>,
    mut gs: GenStream,
    t0: Instant,
) -> Result<Collected, ApiError> {
    let mut tr = Tracker::new(st, t0);
    let mut text = String::new();
    let mut logprobs = Vec::new();
    while let Some(ev) = gs.next().await {
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

/// Streams a generation: `start` first, then `fmt` of every event (terminal events end it).
fn stream_response(
    st: &Arc<AppState>,
    mut gs: GenStream,
    t0: Instant,
    content_type: &'static str,
    start: Option<String>,
    mut fmt: impl FnMut(&GenEvent) -> String + Send + 'static,
) -> Resp {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let mut tr = Tracker::new(st, t0);
    let span = tracing::Span::current();
    tokio::spawn(
        async move {
            if let Some(s) = start {
                if tx.send(Bytes::from(s)).await.is_err() {
                    return;
                }
            }
            loop {
                let ev = tokio::select! {
                    () = tx.closed() => {
                        tracing::info!("client disconnected; generation cancelled");
                        return;
                    }
                    ev = gs.next() => ev,
                };
                let ev = ev.unwrap_or_else(|| {
                    GenEvent::Failed("the generation ended without a result".into())
                });
                tr.observe(&ev);
                let terminal = !matches!(ev, GenEvent::Delta { .. });
                let out = fmt(&ev);
                if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                    tracing::info!("client disconnected; generation cancelled");
                    return;
                }
                if terminal {
                    return;
                }
            }
        }
        .instrument(span),
    );
    let mut r = Response::new(ResBody::Stream(rx));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    r
}

fn sse(v: &Value) -> String {
    format!("data: {v}\n\n")
}

/// The envelope every chunk of one OpenAI streaming response shares.
struct Chunks {
    id: String,
    object: &'static str,
    created: u64,
    model: String,
    include_usage: bool,
}

impl Chunks {
    /// One chunk with `choices` (and `usage`) as a server-sent event.
    fn event(&self, choices: Value, usage: Option<Value>) -> String {
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
    fn done(&self, last: Value, s: &GenSummary) -> String {
        let mut out = self.event(last, None);
        if self.include_usage {
            out.push_str(&self.event(json!([]), Some(usage_json(s))));
        }
        out.push_str("data: [DONE]\n\n");
        out
    }
}

/// A generation that failed mid-stream: the error as an event, then `[DONE]`.
fn sse_failed(m: &str) -> String {
    format!(
        "{}data: [DONE]\n\n",
        sse(&ApiError::internal(m.to_string()).body())
    )
}

fn usage_json(s: &GenSummary) -> Value {
    json!({
        "prompt_tokens": s.prompt_tokens,
        "completion_tokens": s.completion_tokens,
        "total_tokens": s.prompt_tokens + s.completion_tokens,
    })
}

fn chat_logprob_entry(t: &TokenInfo) -> Value {
    json!({
        "token": t.text,
        "logprob": t.logprob,
        "bytes": t.text.as_bytes(),
        "top_logprobs": t.top.iter().map(|(_, s, lp)| json!({
            "token": s, "logprob": lp, "bytes": s.as_bytes()
        })).collect::<Vec<_>>(),
    })
}

fn completion_logprobs(tokens: &[TokenInfo]) -> Value {
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
            let m: Map<String, Value> = t.top.iter().map(|(_, s, lp)| (s.clone(), json!(lp))).collect();
            Value::Object(m)
        }).collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}

async fn chat_completions(
    st: &Arc<AppState>,
    obj: &Map<String, Value>,
    t0: Instant,
) -> Result<Resp, ApiError> {
    let f = Fields::new(obj);
    let engine = pick(st, &f, Some(ModelKind::Generate))?;
    let messages = api::chat_messages(&f, "messages")?;
    let p = api::openai_params(&f, Flavor::Chat)?;
    let e2 = engine.clone();
    let ids = blocking(move || e2.chat_prompt(&messages)).await?;
    let gs = submit(&*engine, ids, &p, "messages")?;
    let model = engine.info().id;
    let id = format!("chatcmpl-{}", st.next_id.fetch_add(1, Ordering::Relaxed));
    let created = now_secs();
    if !p.stream {
        let c = collect(st, gs, t0).await?;
        let logprobs = p.logprobs.map(
            |_| json!({"content": c.logprobs.iter().map(chat_logprob_entry).collect::<Vec<_>>()}),
        );
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "id": id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": logprobs,
                    "finish_reason": c.summary.finish_reason.as_str(),
                }],
                "usage": usage_json(&c.summary),
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
    let start = chunks.event(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
        None,
    );
    let want_lp = p.logprobs.is_some();
    Ok(stream_response(
        st,
        gs,
        t0,
        "text/event-stream",
        Some(start),
        move |ev| {
            match ev {
            GenEvent::Delta { text, logprobs, .. } => {
                let lp = logprobs.as_ref().filter(|_| want_lp);
                if text.is_empty() && lp.is_none() {
                    return String::new();
                }
                let lpv = lp.map(|t| json!({"content": [chat_logprob_entry(t)]}));
                chunks.event(
                    json!([{"index": 0, "delta": {"content": text}, "logprobs": lpv, "finish_reason": null}]),
                    None,
                )
            }
            GenEvent::Done(s) => chunks.done(
                json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": s.finish_reason.as_str()}]),
                s,
            ),
            GenEvent::Failed(m) => sse_failed(m),
        }
        },
    ))
}

async fn completions(
    st: &Arc<AppState>,
    obj: &Map<String, Value>,
    t0: Instant,
) -> Result<Resp, ApiError> {
    let f = Fields::new(obj);
    let engine = pick(st, &f, Some(ModelKind::Generate))?;
    let prompt = api::completion_prompt(&f)?;
    let p = api::openai_params(&f, Flavor::Completion)?;
    if f.bool("echo")?.unwrap_or(false) {
        return Err(ApiError::invalid("echo", "`echo` is not supported"));
    }
    let suffix = f.str("suffix")?;
    if suffix.is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid("suffix", "`suffix` is not supported"));
    }
    let ids = match prompt {
        Prompt::Ids(ids) => ids,
        Prompt::Text(t) => {
            let e2 = engine.clone();
            blocking(move || e2.tokenize(&t, true, true)).await?
        }
    };
    let gs = submit(&*engine, ids, &p, "prompt")?;
    let model = engine.info().id;
    let id = format!("cmpl-{}", st.next_id.fetch_add(1, Ordering::Relaxed));
    let created = now_secs();
    if !p.stream {
        let c = collect(st, gs, t0).await?;
        let lp = p.logprobs.map(|_| completion_logprobs(&c.logprobs));
        return Ok(json_response(
            StatusCode::OK,
            &json!({
                "id": id, "object": "text_completion", "created": created, "model": model,
                "choices": [{
                    "index": 0, "text": c.text, "logprobs": lp,
                    "finish_reason": c.summary.finish_reason.as_str(),
                }],
                "usage": usage_json(&c.summary),
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
    Ok(stream_response(
        st,
        gs,
        t0,
        "text/event-stream",
        None,
        move |ev| {
            match ev {
            GenEvent::Delta { text, logprobs, .. } => {
                let lp = logprobs.as_ref().filter(|_| want_lp);
                if text.is_empty() && lp.is_none() {
                    return String::new();
                }
                let lpv = lp.map(|t| completion_logprobs(std::slice::from_ref(t)));
                chunks.event(
                    json!([{"index": 0, "text": text, "logprobs": lpv, "finish_reason": null}]),
                    None,
                )
            }
            GenEvent::Done(s) => chunks.done(
                json!([{"index": 0, "text": "", "logprobs": null, "finish_reason": s.finish_reason.as_str()}]),
                s,
            ),
            GenEvent::Failed(m) => sse_failed(m),
        }
        },
    ))
}

async fn embeddings(
    st: &Arc<AppState>,
    obj: &Map<String, Value>,
    ollama: bool,
) -> Result<Resp, ApiError> {
    let f = Fields::new(obj);
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
    let e2 = engine.clone();
    let out = blocking(move || e2.embed(&inputs)).await?;
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

async fn tokenize(st: &Arc<AppState>, obj: &Map<String, Value>) -> Result<Resp, ApiError> {
    let f = Fields::new(obj);
    let engine = pick(st, &f, None)?;
    let content = f
        .str("content")?
        .ok_or_else(|| ApiError::invalid("content", "`content` is required"))?
        .to_string();
    let add_special = f.bool("add_special")?.unwrap_or(true);
    let parse_special = f.bool("parse_special")?.unwrap_or(true);
    let with_pieces = f.bool("with_pieces")?.unwrap_or(false);
    let e2 = engine.clone();
    let ids = blocking(move || e2.tokenize(&content, add_special, parse_special)).await?;
    let tokens: Vec<Value> = if with_pieces {
        let e2 = engine.clone();
        let ids2 = ids.clone();
        let pieces = blocking(move || {
            ids2.iter()
                .map(|&i| e2.detokenize(&[i]))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        ids.iter()
            .zip(pieces)
            .map(|(i, p)| json!({"id": i, "piece": p}))
            .collect()
    } else {
        ids.iter().map(|i| json!(i)).collect()
    };
    Ok(json_response(StatusCode::OK, &json!({"tokens": tokens})))
}

async fn detokenize(st: &Arc<AppState>, obj: &Map<String, Value>) -> Result<Resp, ApiError> {
    let f = Fields::new(obj);
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
    let text = blocking(move || e2.detokenize(&ids)).await?;
    Ok(json_response(StatusCode::OK, &json!({"content": text})))
}

/// RFC 3339 UTC time, as Ollama writes `created_at`.
fn rfc3339_now() -> String {
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

async fn ollama_generate(
    st: &Arc<AppState>,
    obj: &Map<String, Value>,
    t0: Instant,
    chat: bool,
) -> Result<Resp, ApiError> {
    let f = Fields::new(obj);
    let engine = pick(st, &f, Some(ModelKind::Generate))?;
    let p = api::ollama_params(&f)?;
    let e2 = engine.clone();
    let ids = if chat {
        let messages = api::chat_messages(&f, "messages")?;
        blocking(move || e2.chat_prompt(&messages)).await?
    } else {
        let prompt = f
            .str("prompt")?
            .ok_or_else(|| ApiError::invalid("prompt", "`prompt` is required"))?
            .to_string();
        let system = f.str("system")?.map(str::to_string);
        let raw = f.bool("raw")?.unwrap_or(false);
        let templated = !raw && engine.info().has_chat_template;
        blocking(move || {
            if templated {
                let mut msgs = Vec::new();
                if let Some(s) = system {
                    msgs.push(ChatMessage::new("system", s));
                }
                msgs.push(ChatMessage::new("user", prompt));
                e2.chat_prompt(&msgs)
            } else {
                e2.tokenize(&prompt, true, true)
            }
        })
        .await?
    };
    let gs = submit(&*engine, ids, &p, if chat { "messages" } else { "prompt" })?;
    let model = engine.info().id;
    let final_obj = move |model: &str, s: &GenSummary, text: Option<&str>, t0: Instant| {
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
    };
    if !p.stream {
        let c = collect(st, gs, t0).await?;
        return Ok(json_response(
            StatusCode::OK,
            &final_obj(&model, &c.summary, Some(&c.text), t0),
        ));
    }
    Ok(stream_response(
        st,
        gs,
        t0,
        "application/x-ndjson",
        None,
        move |ev| match ev {
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

fn ollama_tags(st: &AppState) -> Resp {
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
    fn rfc3339_has_the_right_shape() {
        let s = rfc3339_now();
        assert_eq!(s.len(), 30, "{s}");
        assert!(s.starts_with("20"), "{s}");
        assert!(s.ends_with('Z'));
    }

    #[test]
    fn every_route_has_a_metrics_label() {
        for (p, _) in ROUTES {
            assert_ne!(endpoint_label(p), "other", "{p}");
        }
    }
}
