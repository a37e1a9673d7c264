//! The HTTP layer, split by concern: this module holds the server's lifecycle (listening,
//! per-request tasks, authentication, graceful shutdown); [`routes`] the one route table (path,
//! method, metric label, handler); [`body`] response bodies and SSE/NDJSON framing; [`common`]
//! what the handlers share (model choice, submitting and following generations); [`openai`]
//! and [`ollama`] the handlers of each API.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::engine::Engine;
use crate::error::{ApiError, ServerError};
use crate::metrics::Metrics;

mod body;
mod chat;
mod common;
mod conn;
mod ollama;
mod openai;
mod routes;

use body::{error_response, Resp};
use common::total_load;
/// Options of the HTTP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// When set, every endpoint but `/health` needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// Largest request body in bytes (larger ones get 413).
    pub max_body: usize,
    /// How long in-flight requests may run after a shutdown signal.
    pub drain_timeout: Duration,
    /// Connections served at once; beyond it a few more are answered (`/health`, and 503
    /// with `Retry-After` for the rest) and the others closed at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's header (also the idle time of a
    /// kept-alive connection).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// Read control-token texts (`<|im_start|>`) written in chat messages and completion
    /// prompts as control tokens, as llama.cpp's server does. Off by default: a message's
    /// content is text, so it cannot forge a turn; `/v1/completions` and `/tokenize` parse
    /// them only when the request sets `parse_special`.
    pub parse_special: bool,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            api_key: None,
            max_body: 2 << 20,
            drain_timeout: Duration::from_secs(30),
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            parse_special: false,
        }
    }
}

pub(crate) struct AppState {
    pub(crate) config: ServerConfig,
    pub(crate) models: RwLock<Vec<Arc<dyn Engine>>>,
    pub(crate) ready: AtomicBool,
    pub(crate) metrics: Metrics,
    pub(crate) next_id: AtomicU64,
    pub(crate) created: u64,
    pub(crate) key_check: Option<KeyCheck>,
    /// Blocking engine work (tokenizing, templating, embedding) running at once.
    pub(crate) blocking_permits: tokio::sync::Semaphore,
    /// Set when the drain ends early (its timeout, or a second signal): every answer still
    /// running ends with an error event (streams) or a 503.
    pub(crate) abort: tokio::sync::watch::Sender<bool>,
    /// KiB of request bodies (and what is parsed from them) held at once.
    pub(crate) body_budget: tokio::sync::Semaphore,
    /// Its size.
    pub(crate) body_budget_kib: u32,
    /// Embedding turns, in arrival order (tokio's mutex is fair).
    pub(crate) embed_turn: tokio::sync::Mutex<()>,
}

impl AppState {
    /// Completes when the drain is cut short.
    pub(crate) async fn aborted(&self) {
        let mut rx = self.abort.subscribe();
        let _ = rx.wait_for(|a| *a).await;
    }
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
        let key_check = config.api_key.as_deref().map(KeyCheck::new);
        // Eight bodies of the largest size, at least 16 MiB: enough for any mix of ordinary
        // requests, and a bound on what a burst of large ones can hold.
        let body_budget_kib =
            u32::try_from((config.max_body.saturating_mul(8) / 1024).max(16 * 1024))
                .unwrap_or(u32::MAX >> 4)
                .min(tokio::sync::Semaphore::MAX_PERMITS as u32);
        Server {
            handle: ServerHandle {
                state: Arc::new(AppState {
                    key_check,
                    abort: tokio::sync::watch::Sender::new(false),
                    embed_turn: tokio::sync::Mutex::new(()),
                    body_budget: tokio::sync::Semaphore::new(body_budget_kib as usize),
                    body_budget_kib,
                    blocking_permits: tokio::sync::Semaphore::new(
                        std::thread::available_parallelism().map_or(2, |n| n.get()),
                    ),
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
        self.serve_until(listener, shutdown, std::future::pending())
            .await
    }

    /// [`Server::serve`], where the drain also ends at once when `abort` completes (a second
    /// SIGINT). When the drain ends before the requests do, every stream still running gets an
    /// error event and its terminator, and every waiting request a 503.
    pub async fn serve_until(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
        abort: impl Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let state = self.handle.state.clone();
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(state.config.header_timeout)
            .max_header_size(MAX_HEADER_BYTES)
            .max_buf_size(256 * 1024);
        // Connections over the cap: answered once, quickly, then closed.
        let mut overflow = http1::Builder::new();
        overflow
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(1).min(state.config.header_timeout))
            .keep_alive(false)
            .max_header_size(MAX_HEADER_BYTES)
            .max_buf_size(64 * 1024);
        let cap = state.config.max_connections.max(1);
        let conns = conn::ConnCount::default();
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
                    let open = conns.open();
                    if open >= cap + OVERFLOW_CONNECTIONS {
                        // Closing at once keeps descriptors for `/health` and for the
                        // connections being served.
                        tracing::debug!(%peer, open, "connection refused: over the cap");
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let slot = conns.take();
                    let st = state.clone();
                    let io = conn::JsonErrors::new(TokioIo::new(stream));
                    if open >= cap {
                        let svc = service_fn(move |req: Request<Incoming>| {
                            let st = st.clone();
                            async move { Ok::<_, Infallible>(over_cap(&st, &req, cap)) }
                        });
                        let conn = graceful.watch(overflow.serve_connection(io, svc));
                        tokio::spawn(async move {
                            let _slot = slot;
                            let _ = conn.await;
                        });
                        continue;
                    }
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let st = st.clone();
                        async move { Ok::<_, Infallible>(dispatch(st, req).await) }
                    });
                    let conn = graceful.watch(builder.serve_connection(io, svc));
                    tokio::spawn(async move {
                        let _slot = slot;
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
        let closed = graceful.shutdown();
        tokio::pin!(closed);
        let cut = tokio::select! {
            () = &mut closed => {
                tracing::info!("all connections closed");
                false
            }
            () = tokio::time::sleep(drain) => {
                tracing::warn!("drain timeout reached; ending the requests still running");
                true
            }
            () = abort => {
                tracing::warn!("stopping at once; ending the requests still running");
                true
            }
        };
        if cut {
            state.abort.send_replace(true);
            // Let the error events and terminators go out.
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut closed).await;
        }
        Ok(())
    }
}

/// Bytes a request's header may have (more: 431).
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Header fields a request may have (more: 431).
pub(crate) const MAX_HEADERS: usize = 100;

/// Connections answered beyond the cap (`/health` works on them; the rest get 503). Each is
/// answered once, as soon as its request's header arrives (at most a second), and closed.
pub const OVERFLOW_CONNECTIONS: usize = 256;

/// The answer on a connection over the cap: `/health` as usual, 503 for everything else.
fn over_cap(st: &Arc<AppState>, req: &Request<Incoming>, cap: usize) -> Resp {
    let label = routes::label(req.uri().path());
    let resp = if label == "health" {
        common::health(st)
    } else {
        let mut e = ApiError::unavailable(format!(
            "The server is serving its limit of {cap} connections; retry shortly"
        ));
        e.code = Some("too_many_connections");
        error_response(&e)
    };
    st.metrics.request(label, resp.status().as_u16());
    resp
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

tokio::task_local! {
    /// The metrics label of the request a task answers.
    pub(crate) static ENDPOINT: &'static str;
}

/// Aborts the request's task when dropped before the answer was ready (the client went
/// away), and counts the request as aborted.
struct AbortOnDrop {
    task: tokio::task::AbortHandle,
    st: Arc<AppState>,
    label: &'static str,
    answered: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.task.abort();
        if !self.answered {
            self.st.metrics.aborted(self.label);
        }
    }
}

/// Runs one request in its own task, so that a panic in a handler becomes a 500.
async fn dispatch(st: Arc<AppState>, req: Request<Incoming>) -> Resp {
    let id = st.next_id.fetch_add(1, Ordering::Relaxed);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let span = tracing::info_span!("request", id, %method, path = %path);
    let t0 = Instant::now();
    let label = routes::label(&path);
    let task = tokio::spawn(ENDPOINT.scope(
        label,
        routes::route(st.clone(), req, t0).instrument(span.clone()),
    ));
    // When hyper drops this future (the client went away), stop the handler too: that drops
    // its generation stream, which cancels the generation.
    let mut guard = AbortOnDrop {
        task: task.abort_handle(),
        st: st.clone(),
        label,
        answered: false,
    };
    let joined = task.await;
    guard.answered = true;
    let mut resp = match joined {
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
    st.metrics.request(label, status.as_u16());
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

/// The API key's check: keyed 128-bit digests (fresh keys per process), so that comparing
/// a guess takes the same time whatever its length or its first differing byte.
pub(crate) struct KeyCheck {
    hashers: [std::collections::hash_map::RandomState; 2],
    digest: [u64; 2],
}

impl KeyCheck {
    fn new(key: &str) -> KeyCheck {
        let hashers = [
            std::collections::hash_map::RandomState::new(),
            std::collections::hash_map::RandomState::new(),
        ];
        let digest = KeyCheck::digest_with(&hashers, key);
        KeyCheck { hashers, digest }
    }

    fn digest_with(hashers: &[std::collections::hash_map::RandomState; 2], s: &str) -> [u64; 2] {
        use std::hash::BuildHasher;
        [hashers[0].hash_one(s), hashers[1].hash_one(s)]
    }

    fn matches(&self, given: &str) -> bool {
        let d = KeyCheck::digest_with(&self.hashers, given);
        ((d[0] ^ self.digest[0]) | (d[1] ^ self.digest[1])) == 0
    }
}

fn authorized(st: &AppState, req: &Request<Incoming>) -> bool {
    let Some(check) = &st.key_check else {
        return true;
    };
    let Some(h) = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
    else {
        return false;
    };
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let h = h.trim_start();
    let Some((scheme, given)) = h.split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && check.matches(given.trim())
}
