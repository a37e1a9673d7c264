//! Response bodies and their framing: whole JSON bodies, Server-Sent Events and NDJSON streams.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::engine::{GenEvent, GenStream};
use crate::error::ApiError;

use super::common::Tracker;
use super::AppState;

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

pub(crate) type Resp = Response<ResBody>;

pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Resp {
    let mut r = Response::new(ResBody::Full(Some(body.into())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) fn json_response(status: StatusCode, v: &Value) -> Resp {
    response(status, "application/json", v.to_string())
}

pub(crate) fn error_response(e: &ApiError) -> Resp {
    with_error_headers(json_response(e.status, &e.body()), e)
}

/// An error in Ollama's shape, `{"error": "..."}`.
pub(crate) fn ollama_error_response(e: &ApiError) -> Resp {
    with_error_headers(
        json_response(e.status, &serde_json::json!({"error": e.message})),
        e,
    )
}

fn with_error_headers(mut r: Resp, e: &ApiError) -> Resp {
    let h = r.headers_mut();
    if let Some(s) = e.retry_after {
        h.insert(RETRY_AFTER, HeaderValue::from(s));
    }
    if let Some(a) = e.allow {
        h.insert(ALLOW, HeaderValue::from_static(a));
    }
    if e.status == StatusCode::UNAUTHORIZED {
        h.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"realizar\""),
        );
    }
    r
}

/// Streams one generation's events as `fmt` frames them ([`stream_response_n`] with one
/// stream).
pub(crate) fn stream_response(
    st: &Arc<AppState>,
    gs: GenStream,
    t0: Instant,
    content_type: &'static str,
    start: Option<String>,
    mut fmt: impl FnMut(&GenEvent) -> String + Send + 'static,
) -> Resp {
    stream_response_n(st, vec![gs], t0, content_type, start, move |_, ev, _| {
        fmt(ev)
    })
}

/// The next event of any generation not finished yet: `(its index, the event)`; `None` from a
/// generation means it ended without a result.
async fn next_of_any(streams: &mut [GenStream], done: &[bool]) -> (usize, Option<GenEvent>) {
    std::future::poll_fn(|cx| {
        for (i, s) in streams.iter_mut().enumerate() {
            if done.get(i).copied().unwrap_or(true) {
                continue;
            }
            if let Poll::Ready(ev) = Pin::new(s).poll_next(cx) {
                return Poll::Ready((i, ev));
            }
        }
        Poll::Pending
    })
    .await
}

/// Streams the events of several generations (the choices of one request) as they come,
/// each framed by `fmt(index, event, last)` (`last`: the event ends the last generation still
/// running); `start` goes first. A failure ends the stream (the others are cancelled); a
/// client that goes away cancels them all.
pub(crate) fn stream_response_n(
    st: &Arc<AppState>,
    mut streams: Vec<GenStream>,
    t0: Instant,
    content_type: &'static str,
    start: Option<String>,
    mut fmt: impl FnMut(usize, &GenEvent, bool) -> String + Send + 'static,
) -> Resp {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let mut trackers: Vec<Tracker> = streams.iter().map(|_| Tracker::new(st, t0)).collect();
    let span = tracing::Span::current();
    let label = super::ENDPOINT.try_with(|l| *l).unwrap_or("other");
    let st = st.clone();
    tokio::spawn(
        async move {
            if let Some(s) = start {
                if tx.send(Bytes::from(s)).await.is_err() {
                    return;
                }
            }
            let mut done = vec![false; streams.len()];
            loop {
                let (i, ev) = tokio::select! {
                    () = tx.closed() => {
                        tracing::info!("client disconnected; generation cancelled");
                        st.metrics.aborted(label);
                        return;
                    }
                    () = st.aborted() => (0, Some(GenEvent::Failed(
                        "the server is shutting down; the generation was stopped".into(),
                    ))),
                    next = next_of_any(&mut streams, &done) => next,
                };
                let ev = ev.unwrap_or_else(|| {
                    GenEvent::Failed("the generation ended without a result".into())
                });
                if let Some(t) = trackers.get_mut(i) {
                    t.observe(&ev);
                }
                let finished = matches!(ev, GenEvent::Done(_));
                if finished {
                    if let Some(d) = done.get_mut(i) {
                        *d = true;
                    }
                }
                let failed = matches!(ev, GenEvent::Failed(_));
                let all_done = done.iter().all(|d| *d);
                let out = fmt(i, &ev, all_done);
                if !out.is_empty() && tx.send(Bytes::from(out)).await.is_err() {
                    tracing::info!("client disconnected; generation cancelled");
                    st.metrics.aborted(label);
                    return;
                }
                if failed || all_done {
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

pub(crate) fn sse(v: &Value) -> String {
    format!("data: {v}\n\n")
}
