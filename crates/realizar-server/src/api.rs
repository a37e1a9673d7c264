//! Parsing and validating request bodies (OpenAI and Ollama shapes). Every wrong type or value
//! is a 400 that names the field.

use realizar_runtime::constrain::Grammar;
use realizar_runtime::tools::{Tool, ToolChoice, ToolSet};
use realizar_runtime::{SamplerConfig, SamplerParam};
use serde_json::{Map, Value};

use crate::engine::{ChatMessage, ChatToolCall};
use crate::error::ApiError;

/// Parses a body as a JSON object.
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "The request body is empty; expected a JSON object",
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "The request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "The request body is not valid JSON: {e}"
        ))),
    }
}

/// Typed access to the fields of a JSON object, with errors that name the field.
pub(crate) struct Fields<'a> {
    obj: &'a Map<String, Value>,
    prefix: &'static str,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl<'a> Fields<'a> {
    pub(crate) fn new(obj: &'a Map<String, Value>) -> Fields<'a> {
        Fields { obj, prefix: "" }
    }

    /// Fields of a nested object whose errors name `prefix.field`.
    pub(crate) fn nested(obj: &'a Map<String, Value>, prefix: &'static str) -> Fields<'a> {
        Fields { obj, prefix }
    }

    fn name(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn wrong(&self, key: &str, want: &str, got: &Value) -> ApiError {
        let name = self.name(key);
        ApiError::invalid(
            name.clone(),
            format!("`{name}` must be {want}, got {}", type_name(got)),
        )
    }

    /// Refuses every field (not `null`) outside `known`: a field the server does not
    /// implement would change the answer if it were honoured, so it is an error naming it,
    /// never dropped. `known` holds the fields each route reads plus the purely informational
    /// ones (`user`, `metadata`, ...).
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        // An empty tool list (clients send `"tools": []`) asks for nothing.
        let empty_tools =
            |k: &str, v: &Value| k == "tools" && v.as_array().is_some_and(Vec::is_empty);
        let mut unknown: Vec<&str> = self
            .obj
            .iter()
            .filter(|(k, v)| !v.is_null() && !empty_tools(k, v) && !known.contains(&k.as_str()))
            .map(|(k, _)| k.as_str())
            .collect();
        unknown.sort_unstable();
        match unknown.first() {
            None => Ok(()),
            Some(k) => {
                let name = self.name(k);
                Err(ApiError::invalid(
                    name.clone(),
                    format!("`{name}` is not supported by this server"),
                ))
            }
        }
    }

    /// The raw value (absent and `null` are both `None`).
    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn str(&self, key: &str) -> Result<Option<&'a str>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(key, "a string", v)),
        }
    }

    pub(crate) fn bool(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "a boolean", v)),
        }
    }

    /// A finite number within `[lo, hi]`.
    pub(crate) fn num(&self, key: &str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                if x.is_finite() && (lo..=hi).contains(&x) {
                    Ok(Some(x))
                } else {
                    let name = self.name(key);
                    Err(ApiError::invalid(
                        name.clone(),
                        format!("`{name}` must be between {lo} and {hi}, got {n}"),
                    ))
                }
            }
            Some(v) => Err(self.wrong(key, "a number", v)),
        }
    }

    /// A number that the sampler holds as an `f32`: finite, and not one that the conversion
    /// would turn into infinity or collapse to zero (`1e-300`). Ranges are the sampler's own
    /// ([`SamplerConfig::validate`]), checked after the conversion.
    pub(crate) fn f32(&self, key: &str) -> Result<Option<f32>, ApiError> {
        let Some(x) = self.num(key, f64::MIN, f64::MAX)? else {
            return Ok(None);
        };
        let y = x as f32;
        if y.is_finite() && (y != 0.0 || x == 0.0) {
            Ok(Some(y))
        } else {
            let name = self.name(key);
            Err(ApiError::invalid(
                name.clone(),
                format!("`{name}` = {x:e} does not fit a 32-bit float (it would become {y})"),
            ))
        }
    }

    /// A non-negative integer at most `hi`.
    pub(crate) fn uint(&self, key: &str, hi: u64) -> Result<Option<u64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(x) if x <= hi => Ok(Some(x)),
                _ => {
                    let name = self.name(key);
                    Err(ApiError::invalid(
                        name.clone(),
                        format!("`{name}` must be an integer between 0 and {hi}, got {n}"),
                    ))
                }
            },
            Some(v) => Err(self.wrong(key, "an integer", v)),
        }
    }

    /// An integer (any sign) within `[lo, hi]`.
    pub(crate) fn int(&self, key: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(x) if (lo..=hi).contains(&x) => Ok(Some(x)),
                _ => {
                    let name = self.name(key);
                    Err(ApiError::invalid(
                        name.clone(),
                        format!("`{name}` must be an integer between {lo} and {hi}, got {n}"),
                    ))
                }
            },
            Some(v) => Err(self.wrong(key, "an integer", v)),
        }
    }

    pub(crate) fn object(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, ApiError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(v) => Err(self.wrong(key, "an object", v)),
        }
    }

    /// A string or an array of strings (at most `max`).
    pub(crate) fn strings(&self, key: &str, max: usize) -> Result<Vec<String>, ApiError> {
        let name = self.name(key);
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(a)) => {
                if a.len() > max {
                    return Err(ApiError::invalid(
                        name.clone(),
                        format!("`{name}` may hold at most {max} entries, got {}", a.len()),
                    ));
                }
                a.iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::String(s) => Ok(s.clone()),
                        v => Err(ApiError::invalid(
                            format!("{name}[{i}]"),
                            format!("`{name}[{i}]` must be a string, got {}", type_name(v)),
                        )),
                    })
                    .collect()
            }
            Some(v) => Err(self.wrong(key, "a string or an array of strings", v)),
        }
    }
}

/// Upper bound on `max_tokens` and similar counts.
pub(crate) const MAX_COUNT: u64 = 1 << 20;

/// Everything about a generation request except its prompt.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct GenParams {
    pub max_tokens: Option<usize>,
    pub sampler: SamplerConfig,
    pub stop: Vec<String>,
    pub logprobs: Option<usize>,
    pub stream: bool,
    pub include_usage: bool,
    pub ignore_eos: bool,
    /// The language the output must stay in, and the request field that gave it (errors
    /// compiling it name that field).
    pub grammar: Option<(Grammar, &'static str)>,
    /// Choices to generate for each prompt (`n`), each its own sequence.
    pub n: usize,
    /// Control tokens whose text the reply keeps (a chat syntax's markers).
    pub keep_special: Vec<u32>,
}

/// Most choices one request may ask for (`n` times the prompts).
pub(crate) const MAX_CHOICES: u64 = 64;

/// Fields every OpenAI generation route reads or may ignore (informational).
const OPENAI_COMMON: &[&str] = &[
    "model",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repeat_penalty",
    "seed",
    "logit_bias",
    "stop",
    "stream",
    "stream_options",
    "ignore_eos",
    "max_tokens",
    "n",
    "best_of",
    "user",
    "metadata",
    "store",
    "service_tier",
];

/// The fields `/v1/chat/completions` knows.
pub(crate) fn chat_fields() -> Vec<&'static str> {
    let mut v = OPENAI_COMMON.to_vec();
    v.extend(OPENAI_GRAMMAR_FIELDS);
    v.extend([
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "chat_template_kwargs",
        "reasoning_format",
    ]);
    v.extend([
        "messages",
        "logprobs",
        "top_logprobs",
        "max_completion_tokens",
    ]);
    v
}

/// The OpenAI fields that constrain the output (both routes): `response_format`, and
/// llama.cpp's `json_schema` and `grammar`.
const OPENAI_GRAMMAR_FIELDS: &[&str] = &["response_format", "json_schema", "grammar"];

/// The fields `/v1/completions` knows.
pub(crate) fn completion_fields() -> Vec<&'static str> {
    let mut v = OPENAI_COMMON.to_vec();
    v.extend(OPENAI_GRAMMAR_FIELDS);
    v.extend(["prompt", "logprobs", "echo", "suffix", "parse_special"]);
    v
}

/// The fields `/api/generate` and `/api/chat` know (`keep_alive` is about memory, not the
/// answer).
pub(crate) const OLLAMA_GENERATE_FIELDS: &[&str] = &[
    "model",
    "prompt",
    "system",
    "raw",
    "stream",
    "options",
    "keep_alive",
    "format",
];

/// The fields `/api/chat` knows.
pub(crate) const OLLAMA_CHAT_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "options",
    "keep_alive",
    "format",
    "tools",
    "think",
];

/// Ollama `options` about resources, which do not change the answer (threads, GPUs, batch
/// size, memory mapping, the context size: a prompt that does not fit the server's context is
/// refused, never truncated).
pub(crate) const OLLAMA_RESOURCE_OPTIONS: &[&str] = &[
    "num_ctx",
    "num_thread",
    "num_gpu",
    "main_gpu",
    "num_batch",
    "use_mmap",
    "use_mlock",
    "numa",
    "low_vram",
];

/// Ollama `options` this server reads, and the resource ones.
const OLLAMA_OPTIONS: &[&str] = &[
    "num_predict",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "repeat_penalty",
    "presence_penalty",
    "frequency_penalty",
    "repeat_last_n",
    "seed",
    "stop",
    "num_ctx",
    "num_thread",
    "num_gpu",
    "main_gpu",
    "num_batch",
    "use_mmap",
    "use_mlock",
    "numa",
    "low_vram",
];

/// The engine's sampling defaults when a request does not say (those of llama.cpp's server).
pub(crate) fn default_sampler() -> SamplerConfig {
    SamplerConfig {
        temperature: 0.8,
        top_k: 40,
        top_p: 0.95,
        min_p: 0.05,
        seed: fresh_seed(),
        ..SamplerConfig::default()
    }
}

fn fresh_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
}

/// Checks the sampling parameters by the runtime's one rule ([`SamplerConfig::validate`]); the
/// error names the route's own field (`route_name`, under `f`'s prefix).
fn checked_sampler(
    s: &SamplerConfig,
    f: &Fields<'_>,
    route_name: impl Fn(SamplerParam) -> &'static str,
) -> Result<(), ApiError> {
    s.validate().map_err(|e| {
        let name = f.name(route_name(e.param));
        ApiError::invalid(
            name.clone(),
            format!("`{name}` must be {}, got {}", e.expected, e.value),
        )
    })
}

/// Which API a request came through (the fields differ slightly).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    Chat,
    Completion,
}

/// Parses the OpenAI sampling and output fields shared by chat and completions.
pub(crate) fn openai_params(f: &Fields<'_>, flavor: Flavor) -> Result<GenParams, ApiError> {
    let mut s = default_sampler();
    let n = match f.uint("n", MAX_CHOICES)? {
        Some(0) => return Err(ApiError::invalid("n", "`n` must be at least 1")),
        Some(n) => n as usize,
        None => 1,
    };
    if let Some(best_of) = f.uint("best_of", MAX_COUNT)? {
        if best_of > 1 {
            return Err(ApiError::invalid(
                "best_of",
                "only best_of = 1 is supported",
            ));
        }
    }
    let max_tokens = match f.uint("max_completion_tokens", MAX_COUNT)? {
        Some(n) => Some(n),
        None => f.uint("max_tokens", MAX_COUNT)?,
    };
    if max_tokens == Some(0) {
        let p = if f.get("max_completion_tokens").is_some() {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        return Err(ApiError::invalid(p, format!("`{p}` must be at least 1")));
    }
    if let Some(t) = f.f32("temperature")? {
        s.temperature = t;
    }
    if let Some(p) = f.f32("top_p")? {
        s.top_p = p;
    }
    if let Some(k) = f.uint("top_k", u64::MAX)? {
        s.top_k = k as usize;
    }
    if let Some(p) = f.f32("min_p")? {
        s.min_p = p;
    }
    if let Some(p) = f.f32("presence_penalty")? {
        s.presence_penalty = p;
    }
    if let Some(p) = f.f32("frequency_penalty")? {
        s.frequency_penalty = p;
    }
    if let Some(p) = f.f32("repeat_penalty")? {
        s.repeat_penalty = p;
    }
    if let Some(seed) = f.int("seed", i64::MIN, i64::MAX)? {
        s.seed = seed as u64;
    }
    if let Some(bias) = f.object("logit_bias")? {
        s.logit_bias = parse_logit_bias(bias)?;
    }
    let stop = f.strings("stop", 4)?;
    let logprobs = match flavor {
        Flavor::Chat => {
            let on = f.bool("logprobs")?.unwrap_or(false);
            let top = f.uint("top_logprobs", 20)?;
            match (on, top) {
                (true, t) => Some(t.unwrap_or(0) as usize),
                (false, Some(t)) if t > 0 => {
                    return Err(ApiError::invalid(
                        "top_logprobs",
                        "`top_logprobs` needs `logprobs` set to true",
                    ))
                }
                _ => None,
            }
        }
        Flavor::Completion => f.uint("logprobs", 5)?.map(|n| n as usize),
    };
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.object("stream_options")? {
        Some(o) => {
            let o = Fields::nested(o, "stream_options");
            o.only(&["include_usage"])?;
            o.bool("include_usage")?.unwrap_or(false)
        }
        None => false,
    };
    let ignore_eos = f.bool("ignore_eos")?.unwrap_or(false);
    checked_sampler(&s, f, |p| p.name())?;
    Ok(GenParams {
        max_tokens: max_tokens.map(|n| n as usize),
        sampler: s,
        stop,
        logprobs,
        stream,
        include_usage,
        ignore_eos,
        grammar: openai_grammar(f)?,
        n,
        keep_special: Vec::new(),
    })
}

/// The output constraint of an OpenAI request: `response_format` (`text`, `json_object`,
/// `json_schema`), or llama.cpp's `json_schema` (a schema) and `grammar` (GBNF, or
/// llguidance's Lark syntax marked `%llguidance` as llama.cpp marks it). At most one.
fn openai_grammar(f: &Fields<'_>) -> Result<Option<(Grammar, &'static str)>, ApiError> {
    let given: Vec<&str> = OPENAI_GRAMMAR_FIELDS
        .iter()
        .copied()
        .filter(|k| f.get(k).is_some())
        .collect();
    if given.len() > 1 {
        return Err(ApiError::invalid(
            given[1],
            format!(
                "`{}` and `{}` both constrain the output; give one",
                given[0], given[1]
            ),
        ));
    }
    if let Some(rf) = f.object("response_format")? {
        let rf = Fields::nested(rf, "response_format");
        rf.only(&["type", "json_schema", "schema"])?;
        let ty = rf.str("type")?.ok_or_else(|| {
            ApiError::invalid(
                "response_format.type",
                "`response_format.type` is required (`text`, `json_object` or `json_schema`)",
            )
        })?;
        return match ty {
            "text" => {
                rf.only(&["type"])?;
                Ok(None)
            }
            "json_object" => {
                rf.only(&["type", "schema"])?;
                // llama.cpp also takes a schema here.
                Ok(Some(match rf.get("schema") {
                    Some(schema) => (Grammar::JsonSchema(schema.clone()), "response_format"),
                    None => (Grammar::JsonObject, "response_format"),
                }))
            }
            "json_schema" => {
                rf.only(&["type", "json_schema"])?;
                let js = rf.object("json_schema")?.ok_or_else(|| {
                    ApiError::invalid(
                        "response_format.json_schema",
                        "`response_format.json_schema` is required with type `json_schema`",
                    )
                })?;
                let js = Fields::nested(js, "response_format.json_schema");
                js.only(&["name", "description", "schema", "strict"])?;
                js.str("name")?;
                js.str("description")?;
                // The output always follows the schema exactly, `strict` or not.
                js.bool("strict")?;
                let schema = js.get("schema").ok_or_else(|| {
                    ApiError::invalid(
                        "response_format.json_schema.schema",
                        "`response_format.json_schema.schema` is required",
                    )
                })?;
                Ok(Some((Grammar::JsonSchema(schema.clone()), "response_format")))
            }
            other => Err(ApiError::invalid(
                "response_format.type",
                format!(
                    "`response_format.type` must be `text`, `json_object` or `json_schema`, got `{other}`"
                ),
            )),
        };
    }
    if let Some(schema) = f.get("json_schema") {
        return Ok(Some((Grammar::JsonSchema(schema.clone()), "json_schema")));
    }
    if let Some(g) = f.str("grammar")? {
        return lark_grammar(g).map(|g| Some((g, "grammar")));
    }
    Ok(None)
}

/// A request's `grammar`: llama.cpp's GBNF, or llguidance's Lark syntax when it starts with
/// a `%llguidance` line (as llama.cpp marks those).
fn lark_grammar(g: &str) -> Result<Grammar, ApiError> {
    if g.trim().is_empty() {
        return Err(ApiError::invalid("grammar", "`grammar` is empty"));
    }
    Ok(Grammar::from_text(g))
}

/// Ollama's `format`: `"json"` (any JSON object) or a JSON schema (an object).
pub(crate) fn ollama_format(f: &Fields<'_>) -> Result<Option<(Grammar, &'static str)>, ApiError> {
    match f.get("format") {
        None => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some((Grammar::JsonObject, "format"))),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Err(ApiError::invalid(
            "format",
            format!("`format` must be \"json\" or a JSON schema object, got \"{s}\""),
        )),
        Some(v @ Value::Object(_)) => Ok(Some((Grammar::JsonSchema(v.clone()), "format"))),
        Some(v) => Err(ApiError::invalid(
            "format",
            format!(
                "`format` must be \"json\" or a JSON schema object, got {}",
                type_name(v)
            ),
        )),
    }
}

fn parse_logit_bias(m: &Map<String, Value>) -> Result<Vec<(u32, f32)>, ApiError> {
    if m.len() > 1024 {
        return Err(ApiError::invalid(
            "logit_bias",
            "`logit_bias` may hold at most 1024 entries",
        ));
    }
    m.iter()
        .map(|(k, v)| {
            let id: u32 = k.parse().map_err(|_| {
                ApiError::invalid(
                    "logit_bias",
                    format!("`logit_bias` keys must be token ids, got `{k}`"),
                )
            })?;
            let b = v
                .as_f64()
                .filter(|b| (-100.0..=100.0).contains(b))
                .ok_or_else(|| {
                    ApiError::invalid(
                        "logit_bias",
                        format!("`logit_bias[{k}]` must be a number between -100 and 100"),
                    )
                })?;
            // OpenAI: -100 effectively bans the token.
            let b = if b <= -100.0 {
                f32::NEG_INFINITY
            } else {
                b as f32
            };
            Ok((id, b))
        })
        .collect()
}

/// Chat messages: `role` system/user/assistant (also tool/developer as text), `content` a
/// string or an array of `{"type":"text","text":..}` parts.
pub(crate) fn chat_messages(
    f: &Fields<'_>,
    key: &'static str,
) -> Result<Vec<ChatMessage>, ApiError> {
    let arr = match f.get(key) {
        Some(Value::Array(a)) => a,
        None => {
            return Err(ApiError::invalid(key, format!("`{key}` is required")));
        }
        Some(v) => {
            return Err(ApiError::invalid(
                key,
                format!("`{key}` must be an array, got {}", type_name(v)),
            ))
        }
    };
    if arr.is_empty() {
        return Err(ApiError::invalid(key, format!("`{key}` must not be empty")));
    }
    arr.iter()
        .enumerate()
        .map(|(i, m)| {
            let p = |field: &str| format!("{key}[{i}].{field}");
            let Value::Object(m) = m else {
                return Err(ApiError::invalid(
                    format!("{key}[{i}]"),
                    format!("`{key}[{i}]` must be an object, got {}", type_name(m)),
                ));
            };
            let role = match m.get("role") {
                Some(Value::String(r)) => r.clone(),
                Some(v) => {
                    return Err(ApiError::invalid(
                        p("role"),
                        format!("`{}` must be a string, got {}", p("role"), type_name(v)),
                    ))
                }
                None => return Err(ApiError::invalid(p("role"), format!("`{}` is required", p("role")))),
            };
            if !matches!(
                role.as_str(),
                "system" | "user" | "assistant" | "developer" | "tool"
            ) {
                return Err(ApiError::invalid(
                    p("role"),
                    format!(
                        "`{}` must be one of system, user, assistant, developer, tool; got `{role}`",
                        p("role")
                    ),
                ));
            }
            let role = if role == "developer" { "system".to_string() } else { role };
            // `name` (a participant's, or a tool result's function) reaches the template.
            let extra: &[&str] = match role.as_str() {
                "assistant" => &["tool_calls", "reasoning_content", "thinking", "name"],
                "tool" => &["tool_call_id", "name", "tool_name"],
                _ => &["name"],
            };
            if let Some(k) = m
                .iter()
                .find(|(k, v)| {
                    !matches!(k.as_str(), "role" | "content")
                        && !extra.contains(&k.as_str())
                        && !v.is_null()
                })
                .map(|(k, _)| k)
            {
                return Err(ApiError::invalid(
                    p(k),
                    format!(
                        "`{}` is not supported (a {role} message takes `role`, `content`{})",
                        p(k),
                        extra.iter().map(|e| format!(", `{e}`")).collect::<String>()
                    ),
                ));
            }
            let calls = match m.get("tool_calls") {
                Some(Value::Array(a)) if !a.is_empty() => Some(tool_calls_of(a, &p("tool_calls"))?),
                Some(Value::Array(_)) | None | Some(Value::Null) => None,
                Some(v) => {
                    return Err(ApiError::invalid(
                        p("tool_calls"),
                        format!("`{}` must be an array, got {}", p("tool_calls"), type_name(v)),
                    ))
                }
            };
            let content = match m.get("content") {
                None | Some(Value::Null) if calls.is_some() => String::new(),
                None | Some(Value::Null) => {
                    return Err(ApiError::invalid(
                        p("content"),
                        format!("`{}` is required (a string or an array of text parts)", p("content")),
                    ))
                }
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => {
                    let mut text = String::new();
                    for (j, part) in parts.iter().enumerate() {
                        let pp = format!("{key}[{i}].content[{j}]");
                        let Value::Object(po) = part else {
                            return Err(ApiError::invalid(
                                pp.clone(),
                                format!("`{pp}` must be an object, got {}", type_name(part)),
                            ));
                        };
                        match (po.get("type"), po.get("text")) {
                            (Some(Value::String(t)), Some(Value::String(s))) if t == "text" => {
                                text.push_str(s)
                            }
                            (Some(Value::String(t)), _) if t != "text" => {
                                return Err(ApiError::invalid(
                                    format!("{pp}.type"),
                                    format!("only text content parts are supported, got `{t}`"),
                                ))
                            }
                            _ => {
                                return Err(ApiError::invalid(
                                    pp.clone(),
                                    format!("`{pp}` must be {{\"type\":\"text\",\"text\":string}}"),
                                ))
                            }
                        }
                    }
                    text
                }
                Some(v) => {
                    return Err(ApiError::invalid(
                        p("content"),
                        format!(
                            "`{}` must be a string or an array of text parts, got {}",
                            p("content"),
                            type_name(v)
                        ),
                    ))
                }
            };
            let fm = Fields::new(m);
            let mut msg = ChatMessage::new(role, content);
            msg.tool_calls = calls.unwrap_or_default();
            if msg.role == "assistant" {
                msg.reasoning_content = fm
                    .str("reasoning_content")?
                    .or(fm.str("thinking")?)
                    .map(str::to_string);
            }
            msg.name = fm.str("name")?.map(str::to_string);
            if msg.role == "tool" {
                msg.tool_call_id = fm.str("tool_call_id")?.map(str::to_string);
                msg.name = msg.name.or(fm.str("tool_name")?.map(str::to_string));
            }
            Ok(msg)
        })
        .collect()
}

/// An assistant message's `tool_calls` (OpenAI's: `function.arguments` a JSON string; Ollama's:
/// an object).
fn tool_calls_of(a: &[Value], at: &str) -> Result<Vec<ChatToolCall>, ApiError> {
    a.iter()
        .enumerate()
        .map(|(j, c)| {
            let here = format!("{at}[{j}]");
            let bad = |field: &str, what: &str| {
                ApiError::invalid(format!("{here}{field}"), format!("`{here}{field}` {what}"))
            };
            let f = c
                .get("function")
                .and_then(Value::as_object)
                .ok_or_else(|| bad(".function", "must be an object"))?;
            let name = f
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(".function.name", "must be a string"))?;
            let arguments = match f.get("arguments") {
                Some(Value::String(s)) => serde_json::from_str(s)
                    .map_err(|e| bad(".function.arguments", &format!("is not valid JSON: {e}")))?,
                Some(v @ Value::Object(_)) => v.clone(),
                None | Some(Value::Null) => Value::Object(Map::new()),
                Some(_) => {
                    return Err(bad(
                        ".function.arguments",
                        "must be a JSON string or an object",
                    ))
                }
            };
            let id = match c.get("id") {
                Some(Value::String(id)) => id.clone(),
                None | Some(Value::Null) => format!("call_{j}"),
                Some(_) => return Err(bad(".id", "must be a string")),
            };
            Ok(ChatToolCall {
                id,
                name: name.to_string(),
                arguments,
            })
        })
        .collect()
}

/// The request's `tools`, `tool_choice` and `parallel_tool_calls` (OpenAI's and Ollama's
/// function tools); `None` without tools.
pub(crate) fn chat_tools(f: &Fields<'_>) -> Result<Option<ToolSet>, ApiError> {
    let list = match f.get("tools") {
        None => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(v) => {
            return Err(ApiError::invalid(
                "tools",
                format!("`tools` must be an array, got {}", type_name(v)),
            ))
        }
    };
    if list.len() > 128 {
        return Err(ApiError::invalid("tools", "at most 128 tools per request"));
    }
    let mut tools_out: Vec<Tool> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let at = format!("tools[{i}]");
        let bad = |field: &str, what: String| ApiError::invalid(format!("{at}{field}"), what);
        let Value::Object(o) = t else {
            return Err(bad("", format!("`{at}` must be an object")));
        };
        let fo = Fields::new(o);
        match fo.str("type")? {
            Some("function") => {}
            Some(other) => {
                return Err(bad(
                    ".type",
                    format!("only function tools are supported, got `{other}`"),
                ))
            }
            None => {
                return Err(bad(
                    ".type",
                    format!("`{at}.type` is required (`function`)"),
                ))
            }
        }
        if let Some(k) = o
            .keys()
            .find(|k| !matches!(k.as_str(), "type" | "function"))
        {
            return Err(bad(
                &format!(".{k}"),
                format!("`{at}.{k}` is not supported"),
            ));
        }
        let func = fo
            .object("function")?
            .ok_or_else(|| bad(".function", format!("`{at}.function` is required")))?;
        let ff = Fields::new(func);
        if let Some(k) = func
            .keys()
            .find(|k| !matches!(k.as_str(), "name" | "description" | "parameters" | "strict"))
        {
            return Err(bad(
                &format!(".function.{k}"),
                format!("`{at}.function.{k}` is not supported"),
            ));
        }
        let name = ff.str("name")?.unwrap_or_default();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            return Err(bad(
                ".function.name",
                format!("`{at}.function.name` must be 1 to 64 letters, digits, `_` or `-`"),
            ));
        }
        if tools_out.iter().any(|t| t.name == name) {
            return Err(bad(
                ".function.name",
                format!("two tools are named `{name}`"),
            ));
        }
        ff.bool("strict")?;
        let parameters = match func.get("parameters") {
            None | Some(Value::Null) => serde_json::json!({"type": "object", "properties": {}}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(v) => {
                return Err(bad(
                    ".function.parameters",
                    format!(
                        "`{at}.function.parameters` must be a JSON schema object, got {}",
                        type_name(v)
                    ),
                ))
            }
        };
        tools_out.push(Tool {
            name: name.to_string(),
            description: ff.str("description")?.map(str::to_string),
            parameters,
        });
    }
    let choice = match f.get("tool_choice") {
        None => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!(
                        "`tool_choice` must be none, auto, required or a function, got `{other}`"
                    ),
                ))
            }
        },
        Some(Value::Object(o)) => {
            let name = o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "tool_choice",
                        "`tool_choice` must be {\"type\": \"function\", \"function\": {\"name\": ...}}",
                    )
                })?;
            if !tools_out.iter().any(|t| t.name == name) {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("`tool_choice` names `{name}`, which is not among the tools"),
                ));
            }
            ToolChoice::Named(name.to_string())
        }
        Some(v) => {
            return Err(ApiError::invalid(
                "tool_choice",
                format!(
                    "`tool_choice` must be a string or an object, got {}",
                    type_name(v)
                ),
            ))
        }
    };
    let parallel = f.bool("parallel_tool_calls")?.unwrap_or(true);
    if tools_out.is_empty() {
        if matches!(choice, ToolChoice::Required | ToolChoice::Named(_)) {
            return Err(ApiError::invalid(
                "tool_choice",
                "`tool_choice` asks for a call, but the request has no tools",
            ));
        }
        return Ok(None);
    }
    Ok(Some(ToolSet {
        tools: tools_out,
        choice,
        parallel,
    }))
}

/// `chat_template_kwargs`: further arguments for the chat template (llama.cpp's and vLLM's),
/// which cannot replace the template's own variables.
pub(crate) fn template_kwargs(f: &Fields<'_>) -> Result<Map<String, Value>, ApiError> {
    let Some(o) = f.object("chat_template_kwargs")? else {
        return Ok(Map::new());
    };
    if let Some(k) = o
        .keys()
        .find(|k| realizar_tokenize::RESERVED_TEMPLATE_ARGS.contains(&k.as_str()))
    {
        return Err(ApiError::invalid(
            format!("chat_template_kwargs.{k}"),
            format!("`chat_template_kwargs.{k}` cannot be set: the request gives it"),
        ));
    }
    Ok(o.clone())
}

/// `reasoning_format` (llama.cpp's): whether reasoning is read apart into
/// `reasoning_content` (`auto`, `deepseek`: the default) or left in the content (`none`).
pub(crate) fn reasoning_apart(f: &Fields<'_>) -> Result<bool, ApiError> {
    match f.str("reasoning_format")? {
        None | Some("auto") | Some("deepseek") => Ok(true),
        Some("none") => Ok(false),
        Some(other) => Err(ApiError::invalid(
            "reasoning_format",
            format!("`reasoning_format` must be none, auto or deepseek, got `{other}`"),
        )),
    }
}

/// A completion prompt: a string, an array of one string, or an array of token ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Prompt {
    Text(String),
    Ids(Vec<u32>),
}

/// The prompts of a `/v1/completions` request: a string, an array of token ids, or an array
/// of either (several prompts, each with its own choices).
pub(crate) fn completion_prompt(f: &Fields<'_>) -> Result<Vec<Prompt>, ApiError> {
    let bad = |msg: String| ApiError::invalid("prompt", msg);
    let ids = |items: &[Value], at: &str| {
        items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|x| u32::try_from(x).ok())
                    .ok_or_else(|| {
                        bad(format!(
                            "`prompt{at}` must be a string or an array of token ids"
                        ))
                    })
            })
            .collect::<Result<Vec<u32>, _>>()
    };
    match f.get("prompt") {
        None => Err(bad("`prompt` is required".into())),
        Some(Value::String(s)) => Ok(vec![Prompt::Text(s.clone())]),
        Some(Value::Array(a)) => match a.as_slice() {
            [] => Err(bad("`prompt` must not be empty".into())),
            [Value::String(_) | Value::Array(_), ..] => {
                if a.len() as u64 > MAX_CHOICES {
                    return Err(bad(format!(
                        "at most {MAX_CHOICES} prompts per request, got {}",
                        a.len()
                    )));
                }
                a.iter()
                    .enumerate()
                    .map(|(i, v)| match v {
                        Value::String(s) => Ok(Prompt::Text(s.clone())),
                        Value::Array(items) if !items.is_empty() => {
                            ids(items, &format!("[{i}]")).map(Prompt::Ids)
                        }
                        _ => Err(bad(format!(
                            "`prompt[{i}]` must be a string or a non-empty array of token ids"
                        ))),
                    })
                    .collect()
            }
            items => ids(items, "").map(|v| vec![Prompt::Ids(v)]),
        },
        Some(v) => Err(bad(format!(
            "`prompt` must be a string or an array of token ids, got {}",
            type_name(v)
        ))),
    }
}

/// Ollama's `options` object (and top-level `stream`, default true).
pub(crate) fn ollama_params(f: &Fields<'_>) -> Result<GenParams, ApiError> {
    let mut s = default_sampler();
    let mut max_tokens = None;
    let mut stop = Vec::new();
    if let Some(o) = f.object("options")? {
        let o = Fields::nested(o, "options");
        o.only(OLLAMA_OPTIONS)?;
        if let Some(n) = o.int("num_predict", -2, MAX_COUNT as i64)? {
            // -1 (no limit) and -2 (fill the context) both stop at the context's end; 0
            // generates nothing.
            max_tokens = (n >= 0).then_some(n as usize);
        }
        if let Some(t) = o.f32("temperature")? {
            s.temperature = t;
        }
        if let Some(p) = o.f32("top_p")? {
            s.top_p = p;
        }
        if let Some(k) = o.uint("top_k", u64::MAX)? {
            s.top_k = k as usize;
        }
        if let Some(p) = o.f32("min_p")? {
            s.min_p = p;
        }
        if let Some(p) = o.f32("repeat_penalty")? {
            s.repeat_penalty = p;
        }
        if let Some(p) = o.f32("presence_penalty")? {
            s.presence_penalty = p;
        }
        if let Some(p) = o.f32("frequency_penalty")? {
            s.frequency_penalty = p;
        }
        if let Some(n) = o.uint("repeat_last_n", u64::MAX)? {
            s.penalty_last_n = n as usize;
        }
        if let Some(seed) = o.int("seed", i64::MIN, i64::MAX)? {
            s.seed = seed as u64;
        }
        stop = o.strings("stop", 16)?;
        checked_sampler(&s, &o, |p| match p {
            SamplerParam::PenaltyLastN => "repeat_last_n",
            p => p.name(),
        })?;
    }
    Ok(GenParams {
        max_tokens,
        sampler: s,
        stop,
        logprobs: None,
        stream: f.bool("stream")?.unwrap_or(true),
        include_usage: false,
        ignore_eos: false,
        grammar: ollama_format(f)?,
        n: 1,
        keep_special: Vec::new(),
    })
}

/// Embedding inputs: a string or an array of strings (token-id arrays are not supported).
pub(crate) fn embedding_inputs(f: &Fields<'_>, key: &'static str) -> Result<Vec<String>, ApiError> {
    match f.get(key) {
        None => Err(ApiError::invalid(key, format!("`{key}` is required"))),
        Some(Value::Array(a)) if a.is_empty() => {
            Err(ApiError::invalid(key, format!("`{key}` must not be empty")))
        }
        Some(Value::Array(a))
            if a.iter().all(Value::is_number) || a.iter().all(Value::is_array) =>
        {
            Err(ApiError::invalid(
                key,
                "token-id inputs are not supported for embeddings; send text",
            ))
        }
        Some(_) => f.strings(key, 2048),
    }
}

#[cfg(test)]
mod tests;
