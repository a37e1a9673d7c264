//! A test server on an ephemeral loopback port and a minimal blocking HTTP/1.1 client.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use realizar_server::{Engine, Server, ServerConfig, ServerHandle};
use serde_json::{json, Value};

/// A server running on its own runtime thread; dropped, it shuts down and joins.
pub struct TestServer {
    pub addr: SocketAddr,
    pub handle: ServerHandle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl TestServer {
    pub fn start(config: ServerConfig, engines: Vec<Arc<dyn Engine>>) -> TestServer {
        TestServer::start_with(config, engines, true)
    }

    pub fn start_with(
        config: ServerConfig,
        engines: Vec<Arc<dyn Engine>>,
        ready: bool,
    ) -> TestServer {
        let server = Server::new(config);
        let handle = server.handle();
        for e in engines {
            handle.add_model(e);
        }
        handle.set_ready(ready);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send addr");
                server
                    .serve(listener, async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .expect("serve");
            });
        });
        let addr = addr_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server address");
        TestServer {
            addr,
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Signals shutdown and waits for `serve` to return.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("server thread");
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, &[], None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        request(
            self.addr,
            "POST",
            path,
            &[],
            Some(body.to_string().as_bytes()),
        )
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `data:` payloads of a Server-Sent Events body.
    pub fn sse(&self) -> Vec<String> {
        self.body
            .split("\n\n")
            .filter_map(|ev| ev.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }

    /// Asserts an OpenAI-shaped error with `status`; returns its `error` object.
    pub fn error(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        let v = self.json();
        let e = v["error"].clone();
        assert!(e["message"].is_string(), "{v}");
        assert!(e["type"].is_string(), "{v}");
        assert!(e.get("param").is_some() && e.get("code").is_some(), "{v}");
        e
    }
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the whole answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("write head");
    if let Some(b) = body {
        // The server may answer (413) and close before reading everything.
        let _ = s.write_all(b);
    }
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body: String::from_utf8(body).expect("UTF-8 body"),
    }
}

/// Decodes a chunked body (a truncated one up to where it ends).
pub fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = nl + 2;
        let end = (start + size).min(b.len());
        out.extend_from_slice(&b[start..end]);
        if end + 2 > b.len() {
            break;
        }
        b = &b[end + 2..];
    }
    out
}

/// Checks `v` against `schema` for the JSON Schema keywords the structured-output tests use
/// (`type`, `properties`, `required`, `additionalProperties: false`, `items`, `minItems`,
/// `maxItems`, `enum`, `const`, `anyOf`, `minimum`, `maximum`, `exclusiveMinimum`,
/// `exclusiveMaximum`, `minLength`, `maxLength`); any other keyword fails the check, so a
/// test cannot pass on a keyword this does not read. The error says where.
#[allow(dead_code)]
pub fn validate(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let Some(s) = schema.as_object() else {
        return match schema {
            Value::Bool(true) => Ok(()),
            _ => Err(format!("{at}: schema {schema} accepts nothing")),
        };
    };
    let fail = |what: String| Err(format!("{at}: {what} (value {v})"));
    for key in s.keys() {
        let known = [
            "type",
            "properties",
            "required",
            "additionalProperties",
            "items",
            "minItems",
            "maxItems",
            "enum",
            "const",
            "anyOf",
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "minLength",
            "maxLength",
            "title",
            "description",
        ];
        if !known.contains(&key.as_str()) {
            return fail(format!("the test validator does not read `{key}`"));
        }
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => return fail(format!("bad type {t}")),
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            // As JSON Schema counts them: any number with no fractional part (`1.0`, `-0.0`).
            "integer" => v.as_f64().is_some_and(|x| x.fract() == 0.0),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            return fail(format!("not of type {t}"));
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return fail(format!("not one of {e:?}"));
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            return fail(format!("not {c}"));
        }
    }
    if let Some(any) = s.get("anyOf").and_then(Value::as_array) {
        if !any.iter().any(|sub| validate(sub, v, at).is_ok()) {
            return fail("matches no anyOf branch".into());
        }
    }
    if let Some(x) = v.as_f64() {
        let num = |k: &str| s.get(k).and_then(Value::as_f64);
        if num("minimum").is_some_and(|m| x < m)
            || num("maximum").is_some_and(|m| x > m)
            || num("exclusiveMinimum").is_some_and(|m| x <= m)
            || num("exclusiveMaximum").is_some_and(|m| x >= m)
        {
            return fail("out of bounds".into());
        }
    }
    if let Some(text) = v.as_str() {
        let n = text.chars().count() as u64;
        let len = |k: &str| s.get(k).and_then(Value::as_u64);
        if len("minLength").is_some_and(|m| n < m) || len("maxLength").is_some_and(|m| n > m) {
            return fail(format!("length {n} out of bounds"));
        }
    }
    if let Some(a) = v.as_array() {
        let n = a.len() as u64;
        let len = |k: &str| s.get(k).and_then(Value::as_u64);
        if len("minItems").is_some_and(|m| n < m) || len("maxItems").is_some_and(|m| n > m) {
            return fail(format!("{n} items out of bounds"));
        }
        if let Some(items) = s.get("items") {
            for (i, x) in a.iter().enumerate() {
                validate(items, x, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(o) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        for r in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str() {
                if !o.contains_key(r) {
                    return fail(format!("`{r}` is missing"));
                }
            }
        }
        for (k, x) in o {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => validate(sub, x, &format!("{at}.{k}"))?,
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return fail(format!("`{k}` is not allowed"));
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// Schemas of the shapes agents send: nested objects, bounded arrays, enums, `anyOf`,
/// nullable fields, constants, number bounds, string lengths.
#[allow(dead_code)]
pub fn schemas() -> Vec<Value> {
    vec![
        json!({"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 150}},
            "required": ["name", "age"], "additionalProperties": false}),
        json!({"type": "array", "items": {"enum": ["red", "green", "blue"]},
            "minItems": 1, "maxItems": 4}),
        json!({"type": "object", "properties": {
            "point": {"type": "object", "properties": {
                "x": {"type": "integer", "minimum": -10, "maximum": 10},
                "y": {"type": "integer", "minimum": -10, "maximum": 10}},
                "required": ["x", "y"], "additionalProperties": false},
            "label": {"type": "string", "maxLength": 8}},
            "required": ["point"], "additionalProperties": false}),
        json!({"anyOf": [{"type": "integer", "minimum": 0, "maximum": 9},
                         {"type": "string", "maxLength": 5}]}),
        json!({"type": "object", "properties": {
            "ok": {"type": "boolean"},
            "note": {"type": ["string", "null"], "maxLength": 6}},
            "required": ["ok", "note"], "additionalProperties": false}),
        json!({"type": "object", "properties": {
            "kind": {"const": "event"},
            "n": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 100}},
            "required": ["kind", "n"], "additionalProperties": false}),
        json!({"type": "array", "items": {"type": "object", "properties": {
            "id": {"type": "integer", "minimum": 1, "maximum": 99}},
            "required": ["id"], "additionalProperties": false},
            "minItems": 2, "maxItems": 3}),
        json!({"type": "string", "minLength": 3, "maxLength": 10}),
    ]
}

/// Checks every call of a reply against its tool's parameters; returns the names called.
#[allow(dead_code)]
pub fn check_tool_calls(msg: &Value, tools: &Value) -> Vec<String> {
    let calls = msg["tool_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no calls: {msg}"));
    assert!(!calls.is_empty(), "{msg}");
    calls
        .iter()
        .map(|c| {
            assert_eq!(c["type"], "function", "{c}");
            assert!(c["id"].as_str().is_some_and(|s| !s.is_empty()), "{c}");
            let name = c["function"]["name"].as_str().expect("name");
            let args: Value =
                serde_json::from_str(c["function"]["arguments"].as_str().expect("args"))
                    .unwrap_or_else(|e| panic!("arguments are not JSON ({e}): {c}"));
            let tool = tools
                .as_array()
                .and_then(|t| t.iter().find(|t| t["function"]["name"] == name))
                .unwrap_or_else(|| panic!("unknown tool {name}"));
            validate(&tool["function"]["parameters"], &args, name)
                .unwrap_or_else(|e| panic!("{e}"));
            name.to_string()
        })
        .collect()
}

/// Two function tools with bounded arguments.
#[allow(dead_code)]
pub fn weather_tools() -> Value {
    json!([
        {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 12},
                "unit": {"enum": ["c", "f"]}},
                "required": ["city", "unit"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "add",
            "parameters": {"type": "object", "properties": {
                "a": {"type": "integer", "minimum": 0, "maximum": 99},
                "b": {"type": "integer", "minimum": 0, "maximum": 99}},
                "required": ["a", "b"], "additionalProperties": false}}}
    ])
}

/// Assembles a streamed chat reply as OpenAI's clients do: content, reasoning, and calls by
/// index (id, type and name in the first delta, the arguments in pieces).
#[allow(dead_code)]
pub fn assemble_chat_stream(events: &[String]) -> (String, String, Vec<Value>, Option<String>) {
    let (mut content, mut reasoning, mut calls, mut finish) =
        (String::new(), String::new(), Vec::<Value>::new(), None);
    for e in events.iter().filter(|e| *e != "[DONE]") {
        let v: Value = serde_json::from_str(e).expect("chunk");
        let ch = &v["choices"][0];
        let d = &ch["delta"];
        content.push_str(d["content"].as_str().unwrap_or(""));
        reasoning.push_str(d["reasoning_content"].as_str().unwrap_or(""));
        for t in d["tool_calls"].as_array().into_iter().flatten() {
            let k = t["index"].as_u64().expect("index") as usize;
            if t.get("id").is_some() {
                assert_eq!(k, calls.len(), "{t}");
                let mut t = t.clone();
                t.as_object_mut().map(|o| o.remove("index"));
                calls.push(t);
            } else {
                let more = t["function"]["arguments"].as_str().expect("arguments");
                let args = &mut calls[k]["function"]["arguments"];
                *args = json!(format!("{}{more}", args.as_str().unwrap_or("")));
            }
        }
        if let Some(f) = ch["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    (content, reasoning, calls, finish)
}

/// A conversation with a weather call (id `id`) and its result, in OpenAI's shape.
#[allow(dead_code)]
pub fn oslo_conversation(id: &str) -> Value {
    json!([
        {"role": "user", "content": "weather in Oslo?"},
        {"role": "assistant", "content": null, "tool_calls": [{"id": id, "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\", \"unit\": \"c\"}"}}]},
        {"role": "tool", "tool_call_id": id, "content": "4 degrees"},
    ])
}
