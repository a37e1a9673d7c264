//! The route table, written once: each route's path, method, metric label and handler. Routing,
//! the `405 Allow` answer, the metrics label of a request and the body reading of POST routes
//! all read it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::{Method, Request, StatusCode};
use serde_json::{Map, Value};

use super::body::{error_response, ollama_error_response, response, Resp};
use super::common::{get_model, health, list_models, total_load};
use super::{authorized, ollama, openai, AppState};
use crate::api;
use crate::error::ApiError;

/// Bytes of a request's path and query (more: 414).
const MAX_URI_BYTES: usize = 8 * 1024;

/// What a handler returns.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<Resp, ApiError>> + Send>>;

/// How a route is answered.
pub(crate) enum Handler {
    /// From the state and the rest of the path after a prefix route's path (empty otherwise).
    Get(fn(&Arc<AppState>, &str) -> Result<Resp, ApiError>),
    /// From the request's JSON object body and the time it arrived.
    Post(fn(Arc<AppState>, Map<String, Value>, Instant) -> HandlerFuture),
}

/// One route.
pub(crate) struct Route {
    /// The path (with `prefix`, every path that starts with it and has more).
    pub path: &'static str,
    /// Whether `path` is a prefix.
    pub prefix: bool,
    /// The one method it accepts.
    pub method: Method,
    /// Its label in the metrics.
    pub label: &'static str,
    /// Its handler.
    pub handler: Handler,
}

impl Route {
    fn matches<'p>(&self, path: &'p str) -> Option<&'p str> {
        if self.prefix {
            path.strip_prefix(self.path).filter(|rest| !rest.is_empty())
        } else {
            (path == self.path).then_some("")
        }
    }
}

const fn get(
    path: &'static str,
    label: &'static str,
    f: fn(&Arc<AppState>, &str) -> Result<Resp, ApiError>,
) -> Route {
    Route {
        path,
        prefix: false,
        method: Method::GET,
        label,
        handler: Handler::Get(f),
    }
}

const fn post(
    path: &'static str,
    label: &'static str,
    f: fn(Arc<AppState>, Map<String, Value>, Instant) -> HandlerFuture,
) -> Route {
    Route {
        path,
        prefix: false,
        method: Method::POST,
        label,
        handler: Handler::Post(f),
    }
}

/// Every route of the server.
pub(crate) const ROUTES: &[Route] = &[
    get("/health", "health", |st, _| Ok(health(st))),
    get("/metrics", "metrics", |st, _| {
        Ok(response(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            st.metrics.render(total_load(st)),
        ))
    }),
    get("/v1/models", "models", |st, _| Ok(list_models(st))),
    Route {
        path: "/v1/models/",
        prefix: true,
        method: Method::GET,
        label: "models",
        handler: Handler::Get(|st, id| get_model(st, id)),
    },
    post("/v1/chat/completions", "chat_completions", |st, obj, t0| {
        Box::pin(async move { openai::chat_completions(&st, &obj, t0).await })
    }),
    post("/v1/completions", "completions", |st, obj, t0| {
        Box::pin(async move { openai::completions(&st, &obj, t0).await })
    }),
    post("/v1/embeddings", "embeddings", |st, obj, _| {
        Box::pin(async move { openai::embeddings(&st, &obj, false).await })
    }),
    post("/tokenize", "tokenize", |st, obj, _| {
        Box::pin(async move { openai::tokenize(&st, &obj).await })
    }),
    post("/detokenize", "detokenize", |st, obj, _| {
        Box::pin(async move { openai::detokenize(&st, &obj).await })
    }),
    post("/api/generate", "ollama_generate", |st, obj, t0| {
        Box::pin(async move { ollama::ollama_generate(&st, &obj, t0, false).await })
    }),
    post("/api/chat", "ollama_chat", |st, obj, t0| {
        Box::pin(async move { ollama::ollama_generate(&st, &obj, t0, true).await })
    }),
    post("/api/embed", "ollama_embed", |st, obj, _| {
        Box::pin(async move { openai::embeddings(&st, &obj, true).await })
    }),
    get("/api/tags", "ollama_tags", |st, _| {
        Ok(ollama::ollama_tags(st))
    }),
];

/// The route of `path` and the rest of the path after it.
fn find(path: &str) -> Option<(&'static Route, &str)> {
    ROUTES
        .iter()
        .find_map(|r| r.matches(path).map(|rest| (r, rest)))
}

/// The metrics label of a path (`"other"` for unknown paths).
pub(crate) fn label(path: &str) -> &'static str {
    find(path).map_or("other", |(r, _)| r.label)
}

/// Answers one request (errors become their JSON error responses: Ollama's
/// `{"error": "..."}` under `/api/`, OpenAI's shape elsewhere).
pub(crate) async fn route(st: Arc<AppState>, req: Request<Incoming>, t0: Instant) -> Resp {
    let ollama = req.uri().path().starts_with("/api/");
    match route_inner(st, req, t0).await {
        Ok(r) => r,
        Err(e) => {
            if e.status.is_server_error() {
                tracing::error!(error = %e, "request failed");
            } else {
                tracing::debug!(error = %e, "request refused");
            }
            if ollama {
                ollama_error_response(&e)
            } else {
                error_response(&e)
            }
        }
    }
}

async fn route_inner(
    st: Arc<AppState>,
    req: Request<Incoming>,
    t0: Instant,
) -> Result<Resp, ApiError> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Err(ApiError::uri_too_long(uri_len, MAX_URI_BYTES));
    }
    if req.headers().len() > super::MAX_HEADERS {
        return Err(ApiError::header_too_large(
            req.headers().len(),
            super::MAX_HEADERS,
        ));
    }
    if path != "/health" && !authorized(&st, &req) {
        return Err(ApiError::unauthorized());
    }
    let Some((route, rest)) = find(&path) else {
        return Err(ApiError::route_not_found(method.as_str(), &path));
    };
    // HEAD is GET without the body (hyper leaves the body out of a HEAD answer).
    let head_of_get = method == Method::HEAD && route.method == Method::GET;
    if method != route.method && !head_of_get {
        let allow = if route.method == Method::GET {
            "GET, HEAD"
        } else {
            route.method.as_str()
        };
        let mut e = ApiError::method_not_allowed(method.as_str(), &path);
        e.allow = Some(allow);
        return Err(e);
    }
    match &route.handler {
        Handler::Get(f) => f(&st, rest),
        Handler::Post(f) => {
            // Bodies in memory at once are bounded: a request waits for its share of the
            // budget (its declared length, or the limit when it declares none) and keeps it
            // until its handler returns.
            let declared = req
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let max = st.config.max_body as u64;
            let kib = declared.unwrap_or(max).min(max).div_ceil(1024).max(1);
            let held = st.clone();
            let _budget = held
                .body_budget
                .acquire_many(
                    u32::try_from(kib)
                        .unwrap_or(u32::MAX)
                        .min(st.body_budget_kib),
                )
                .await
                .map_err(|_| ApiError::unavailable("the server is shutting down"))?;
            let body = read_body(&st, req).await?;
            let obj = api::parse_object(&body)?;
            f(st, obj, t0).await
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
    let limit = st.config.body_timeout;
    let collected = tokio::time::timeout(limit, Limited::new(req.into_body(), max).collect())
        .await
        .map_err(|_| ApiError::body_timeout(limit.as_secs()))?;
    match collected {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_is_found_by_its_path_alone() {
        for r in ROUTES {
            let path = if r.prefix {
                format!("{}x", r.path)
            } else {
                r.path.to_string()
            };
            let (found, _) = find(&path).expect("a route");
            assert_eq!(found.path, r.path);
            assert_ne!(label(&path), "other");
        }
        assert_eq!(label("/v1/models/"), "other");
        assert_eq!(label("/nope"), "other");
    }
}
