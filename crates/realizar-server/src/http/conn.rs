//! Connections: the transport wrapper that gives hyper's own error answers (400, 414, 431 for
//! requests it cannot parse) the JSON body every other error has, and the connection count
//! that caps how many connections are served at once.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};

/// The statuses hyper answers by itself when it cannot parse a request, with the messages
/// their bodies get.
const AUTOMATIC: [(&[u8], &str); 3] = [
    (
        b"HTTP/1.1 400 ",
        "The request could not be parsed as HTTP/1.1 (bad request line, method, URI, version or header)",
    ),
    (
        b"HTTP/1.1 414 ",
        "The request URI is too long",
    ),
    (
        b"HTTP/1.1 431 ",
        "The request's header is too large (too many header fields or too many bytes)",
    ),
];

/// The JSON error body of an automatic answer, in OpenAI's shape.
fn automatic_body(message: &str) -> String {
    serde_json::json!({
        "error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}
    })
    .to_string()
}

/// Rewrites an automatic hyper answer (`HTTP/1.1 4xx` with an empty body) into one with a
/// JSON body; `None` for every other write.
fn rewrite(buf: &[u8]) -> Option<Vec<u8>> {
    let (_, message) = AUTOMATIC.iter().find(|(p, _)| buf.starts_with(p))?;
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    if end + 4 != buf.len() {
        return None;
    }
    let head = std::str::from_utf8(buf.get(..end)?).ok()?;
    // Ours always have a body; hyper's have none.
    if !head
        .split("\r\n")
        .any(|l| l.eq_ignore_ascii_case("content-length: 0"))
    {
        return None;
    }
    let mut lines: Vec<&str> = head
        .split("\r\n")
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("content-length:")
                && !l.starts_with("content-type:")
                && !l.starts_with("connection:")
        })
        .collect();
    let body = automatic_body(message);
    let cl = format!("content-length: {}", body.len());
    lines.push("content-type: application/json");
    lines.push(&cl);
    lines.push("connection: close");
    let mut out = lines.join("\r\n").into_bytes();
    out.extend_from_slice(b"\r\n\r\n");
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

/// A transport that passes everything through except hyper's automatic error answers, which
/// it gives a JSON body.
pub(crate) struct JsonErrors<T> {
    inner: T,
    /// Bytes of a rewritten answer still to write.
    pending: Vec<u8>,
    written: usize,
}

impl<T> JsonErrors<T> {
    pub(crate) fn new(inner: T) -> JsonErrors<T> {
        JsonErrors {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<T: Write + Unpin> JsonErrors<T> {
    /// Writes what is pending; ready when nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.pending.len() {
            let rest = self.pending.get(self.written..).unwrap_or_default();
            match Pin::new(&mut self.inner).poll_write(cx, rest) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: Read + Unpin> Read for JsonErrors<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for JsonErrors<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        match me.poll_pending(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if let Some(out) = rewrite(buf) {
            me.pending = out;
            me.written = 0;
            // The caller's bytes are taken; the rewritten answer goes out on the next
            // write, flush or shutdown.
            if let Poll::Ready(Err(e)) = me.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut me.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        match me.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut me.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        match me.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut me.inner).poll_shutdown(cx),
            other => other,
        }
    }
}

/// Counts open connections; a [`ConnSlot`] holds one until dropped.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnCount(Arc<AtomicUsize>);

/// One counted connection.
#[derive(Debug)]
pub(crate) struct ConnSlot(Arc<AtomicUsize>);

impl ConnCount {
    /// Open connections.
    pub(crate) fn open(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// Counts a new connection.
    pub(crate) fn take(&self) -> ConnSlot {
        self.0.fetch_add(1, Ordering::AcqRel);
        ConnSlot(self.0.clone())
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_s_empty_error_answers_are_rewritten() {
        let auto =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = rewrite(auto).expect("rewritten");
        let text = String::from_utf8(out).expect("utf8");
        let (head, body) = text.split_once("\r\n\r\n").expect("split");
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert!(head.contains("content-type: application/json"));
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert!(v["error"]["message"].is_string());
        // A body already there, another status, or a partial head: untouched.
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}").is_none());
        assert!(rewrite(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-le").is_none());
    }
}
