//! Chat templates: a model's own Jinja template rendered with `minijinja`, with the environment
//! Hugging Face `transformers` and llama.cpp give such templates (`trim_blocks`,
//! `lstrip_blocks`, loop controls, Python string/dict methods, `raise_exception`,
//! `strftime_now`, and a `tojson` that writes JSON the way Python's `json.dumps` does, honouring
//! `ensure_ascii`, `indent`, `separators` and `sort_keys`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};

use crate::chat_builtin::Builtin;
use crate::TokenizeError;

/// One message of a conversation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, …
    pub role: String,
    /// The text.
    pub content: String,
    /// An assistant's tool calls (templates see them as OpenAI writes them:
    /// `{"id", "type": "function", "function": {"name", "arguments"}}`, the arguments an
    /// object).
    pub tool_calls: Vec<ChatToolCall>,
    /// A tool result's call id (`tool_call_id`).
    pub tool_call_id: Option<String>,
    /// A tool result's function name (`name`).
    pub name: Option<String>,
    /// An assistant's reasoning, apart from its content (`reasoning_content`, which templates
    /// such as Qwen3's render or leave out).
    pub reasoning_content: Option<String>,
}

/// A call an assistant message made.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatToolCall {
    /// The call's id.
    pub id: String,
    /// The function.
    pub name: String,
    /// Its arguments (a JSON object).
    pub arguments: serde_json::Value,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
            ..ChatMessage::default()
        }
    }

    /// The message as a template sees it: `role`, `content` (a string, empty beside tool
    /// calls, as llama.cpp gives it: templates test it with `in`), `tool_calls`,
    /// `tool_call_id`, `name`.
    fn to_value(&self) -> Value {
        let mut map = serde_json::Map::new();
        map.insert("role".into(), self.role.clone().into());
        map.insert("content".into(), self.content.clone().into());
        if !self.tool_calls.is_empty() {
            let calls = self
                .tool_calls
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    })
                })
                .collect();
            map.insert("tool_calls".into(), serde_json::Value::Array(calls));
        }
        if let Some(id) = &self.tool_call_id {
            map.insert("tool_call_id".into(), id.clone().into());
        }
        if let Some(n) = &self.name {
            map.insert("name".into(), n.clone().into());
        }
        if let Some(r) = &self.reasoning_content {
            map.insert("reasoning_content".into(), r.clone().into());
        }
        json_value(&serde_json::Value::Object(map))
    }
}

/// A JSON value as a template value (objects keep their order).
fn json_value(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::from(()),
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::from(i),
            (_, Some(u)) => Value::from(u),
            _ => Value::from(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(json_value).collect::<Vec<_>>()),
        serde_json::Value::Object(m) => {
            Value::from_pairs(m.iter().map(|(k, v)| (k.as_str(), json_value(v))))
        }
    }
}

/// What a template sees besides the messages.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChatContext {
    /// `tools`: the functions the model may call, in OpenAI's shape
    /// (`{"type": "function", "function": {"name", "description", "parameters"}}`).
    pub tools: Option<serde_json::Value>,
    /// Further template arguments (`enable_thinking`, `date_string`, …), as llama.cpp's and
    /// vLLM's `chat_template_kwargs`; they cannot replace `messages`, `tools`,
    /// `add_generation_prompt`, `bos_token` or `eos_token`.
    pub kwargs: serde_json::Map<String, serde_json::Value>,
    /// The time `strftime_now` formats, in seconds since 1970 (UTC); `None`: now.
    pub now: Option<u64>,
}

/// The context variable that carries [`ChatContext::now`] to `strftime_now`.
const NOW_VAR: &str = "__realizar_now";

/// The names a template's own variables take, which `kwargs` cannot replace.
pub const RESERVED_TEMPLATE_ARGS: [&str; 5] = [
    "messages",
    "tools",
    "add_generation_prompt",
    "bos_token",
    "eos_token",
];

/// A compiled chat template: a model's Jinja template, or one of llama.cpp's built-in named
/// templates ([`crate::BUILTIN_TEMPLATES`]).
#[derive(Debug)]
pub struct ChatTemplate {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Jinja {
        env: Box<Environment<'static>>,
        source: String,
        bos: String,
        eos: String,
    },
    Builtin(Builtin),
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles a template; `bos` and `eos` are the texts it sees as `bos_token`/`eos_token`.
    pub fn new(
        source: &str,
        bos: impl Into<String>,
        eos: impl Into<String>,
    ) -> Result<ChatTemplate, TokenizeError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| TokenizeError::Template(format!("{e:#}")))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| TokenizeError::Template(format!("{e:#}")))?;
        Ok(ChatTemplate {
            kind: Kind::Jinja {
                env: Box::new(env),
                source: source.to_string(),
                bos: bos.into(),
                eos: eos.into(),
            },
        })
    }

    /// One of llama.cpp's built-in named templates.
    pub fn builtin(template: Builtin) -> ChatTemplate {
        ChatTemplate {
            kind: Kind::Builtin(template),
        }
    }

    /// The built-in template's name, `None` for a Jinja template.
    pub fn builtin_name(&self) -> Option<&'static str> {
        match &self.kind {
            Kind::Builtin(b) => Some(b.name()),
            Kind::Jinja { .. } => None,
        }
    }

    /// Renders a conversation; with `add_generation_prompt` the template adds the opening of
    /// the assistant's turn.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizeError> {
        self.render_with(messages, add_generation_prompt, &ChatContext::default())
    }

    /// The template's Jinja source (`None` for a built-in template).
    pub fn source(&self) -> Option<&str> {
        match &self.kind {
            Kind::Jinja { source, .. } => Some(source),
            Kind::Builtin(_) => None,
        }
    }

    /// Whether the template renders tools given to it (its source reads `tools`).
    pub fn reads_tools(&self) -> bool {
        self.source().is_some_and(|s| {
            s.match_indices("tools")
                .any(|(i, _)| !s[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        })
    }

    /// [`ChatTemplate::render`] with tools and further template arguments. A built-in template
    /// takes neither: it is an error to give it tools.
    pub fn render_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        context: &ChatContext,
    ) -> Result<String, TokenizeError> {
        let (env, bos, eos) = match &self.kind {
            Kind::Builtin(b) => {
                if context.tools.is_some() {
                    return Err(TokenizeError::Template(format!(
                        "the built-in `{}` template does not render tools",
                        b.name()
                    )));
                }
                return Ok(b.render(messages, add_generation_prompt));
            }
            Kind::Jinja { env, bos, eos, .. } => (env, bos, eos),
        };
        let msgs: Vec<Value> = messages.iter().map(ChatMessage::to_value).collect();
        let mut ctx = BTreeMap::new();
        for (k, v) in &context.kwargs {
            if !RESERVED_TEMPLATE_ARGS.contains(&k.as_str()) {
                ctx.insert(k.clone(), json_value(v));
            }
        }
        // As `transformers` gives it: `none` without tools.
        let tools = context.tools.as_ref().map_or(Value::from(()), json_value);
        ctx.insert("tools".to_string(), tools);
        if let Some(now) = context.now {
            ctx.insert(NOW_VAR.to_string(), Value::from(now));
        }
        ctx.insert("messages".to_string(), Value::from(msgs));
        ctx.insert(
            "add_generation_prompt".to_string(),
            Value::from(add_generation_prompt),
        );
        ctx.insert("bos_token".to_string(), Value::from(bos.as_str()));
        ctx.insert("eos_token".to_string(), Value::from(eos.as_str()));
        let tmpl = env
            .get_template(NAME)
            .map_err(|e| TokenizeError::Template(format!("{e:#}")))?;
        tmpl.render(Value::from(ctx))
            .map_err(|e| TokenizeError::Template(render_error(&e)))
    }
}

fn render_error(e: &Error) -> String {
    if e.kind() == ErrorKind::InvalidOperation {
        if let Some(detail) = e.detail() {
            return format!("template raised an exception: {detail}");
        }
    }
    format!("{e:#}")
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// `strftime_now(format)`: the current UTC time (or the context's fixed one) formatted with the
/// common `strftime` fields.
fn strftime_now(state: &minijinja::State, format: String) -> Result<String, Error> {
    let fixed = state.lookup(NOW_VAR).and_then(|v| u64::try_from(v).ok());
    let secs = fixed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    });
    Ok(strftime(&format, secs))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Civil date of a day count since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn strftime(format: &str, secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let (y, m, d) = civil(days);
    let wd = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let month = MONTHS.get(m as usize - 1).copied().unwrap_or("");
    let day = DAYS.get(wd).copied().unwrap_or("");
    let jan1 = days - (1..m).map(|mm| month_len(y, mm)).sum::<i64>() - i64::from(d) + 1;
    let yday = days - jan1 + 1;
    let mut out = String::new();
    let mut it = format.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let _ = match it.next() {
            Some('Y') => write!(out, "{y}"),
            Some('y') => write!(out, "{:02}", y.rem_euclid(100)),
            Some('m') => write!(out, "{m:02}"),
            Some('d') => write!(out, "{d:02}"),
            Some('e') => write!(out, "{d:2}"),
            Some('B') => write!(out, "{month}"),
            Some('b') | Some('h') => write!(out, "{}", month.get(..3).unwrap_or("")),
            Some('A') => write!(out, "{day}"),
            Some('a') => write!(out, "{}", day.get(..3).unwrap_or("")),
            Some('H') => write!(out, "{h:02}"),
            Some('I') => write!(out, "{:02}", if h % 12 == 0 { 12 } else { h % 12 }),
            Some('p') => write!(out, "{}", if h < 12 { "AM" } else { "PM" }),
            Some('M') => write!(out, "{mi:02}"),
            Some('S') => write!(out, "{s:02}"),
            Some('j') => write!(out, "{yday:03}"),
            Some('%') => write!(out, "%"),
            Some(o) => write!(out, "%{o}"),
            None => write!(out, "%"),
        };
    }
    out
}

fn month_len(y: i64, m: u32) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

struct JsonOpts {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

/// `tojson` as `transformers` defines it for chat templates: `json.dumps(x, ensure_ascii=False,
/// indent=None, separators=None, sort_keys=False)` by default, with no HTML escaping.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let indent: Option<Value> = kwargs.get("indent")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(usize::try_from(n).unwrap_or(0))),
            (_, Some(s)) => Some(s.to_string()),
            _ => None,
        },
    };
    let (mut item_sep, key_sep) = (
        if indent.is_some() { "," } else { ", " }.to_string(),
        ": ".to_string(),
    );
    let mut key_sep = key_sep;
    if let Some(seps) = separators.filter(|v| !v.is_none() && !v.is_undefined()) {
        let parts: Vec<Value> = seps.try_iter()?.collect();
        if let [a, b] = parts.as_slice() {
            item_sep = a.as_str().unwrap_or(",").to_string();
            key_sep = b.as_str().unwrap_or(":").to_string();
        }
    }
    let opts = JsonOpts {
        ensure_ascii: ensure_ascii.unwrap_or(false),
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    write_json(value, &opts, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

fn write_json_str(s: &str, ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ascii && (c as u32) > 0x7E) => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn newline(opts: &JsonOpts, depth: usize, out: &mut String) {
    if let Some(ind) = &opts.indent {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(ind);
        }
    }
}

fn write_json(v: &Value, opts: &JsonOpts, depth: usize, out: &mut String) -> Result<(), Error> {
    if depth > 64 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: nesting too deep",
        ));
    }
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if let Some(i) = v.as_i64() {
                let _ = write!(out, "{i}");
            } else {
                let f = f64::try_from(v.clone()).unwrap_or(f64::NAN);
                if f.is_finite() && f.fract() == 0.0 && f.abs() < 1e16 {
                    let _ = write!(out, "{f:.1}");
                } else if f.is_nan() {
                    out.push_str("NaN");
                } else {
                    let _ = write!(out, "{f}");
                }
            }
        }
        ValueKind::String => write_json_str(v.as_str().unwrap_or(""), opts.ensure_ascii, out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(opts, depth + 1, out);
                write_json(item, opts, depth + 1, out)?;
            }
            if !items.is_empty() {
                newline(opts, depth, out);
            }
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = v.try_iter()?.collect();
            if opts.sort_keys {
                keys.sort();
            }
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                newline(opts, depth + 1, out);
                let ks = k.as_str().map_or_else(|| k.to_string(), str::to_string);
                write_json_str(&ks, opts.ensure_ascii, out);
                out.push_str(&opts.key_sep);
                write_json(&v.get_item(k)?, opts, depth + 1, out)?;
            }
            if !keys.is_empty() {
                newline(opts, depth, out);
            }
            out.push('}');
        }
        _ => write_json_str(&v.to_string(), opts.ensure_ascii, out),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

    #[test]
    fn renders_chatml() {
        let t = ChatTemplate::new(CHATML, "", "").unwrap();
        let s = t.render(&[ChatMessage::new("user", "Hi")], true).unwrap();
        assert_eq!(s, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn raise_exception_is_an_error_with_its_message() {
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}", "", "").unwrap();
        let e = t.render(&[], false).unwrap_err();
        assert!(
            matches!(&e, TokenizeError::Template(m) if m.contains("no system role")),
            "{e}"
        );
    }

    #[test]
    fn python_methods_loop_controls_and_tojson() {
        let src = "{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}{{ m.content.strip().upper() }}{{ m | tojson }}{{ 'é<' | tojson(ensure_ascii=True) }}{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        let s = t
            .render(
                &[ChatMessage::new("user", " hé "), ChatMessage::new("x", "y")],
                false,
            )
            .unwrap();
        assert_eq!(
            s,
            "HÉ{\"role\": \"user\", \"content\": \" hé \"}\"\\u00e9<\""
        );
    }

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        assert_eq!(
            strftime("%d %B %Y %a %H:%M:%S %j", 1_709_211_909),
            "29 February 2024 Thu 13:05:09 060"
        );
    }
}
