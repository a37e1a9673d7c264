//! Constrained decoding: a per-sequence [`Constraint`] that keeps the generated text inside a
//! language (a JSON Schema, any JSON object, a regular expression, a Lark or GBNF grammar), through
//! `llguidance`. At each step it gives the set of tokens that keep the output inside the
//! language (the mask the sampler applies to the logits), then advances with the sampled one.
//!
//! One [`ConstraintCompiler`] per model holds the token trie built from the model's own
//! tokenizer (each token's bytes; control tokens marked as special) and compiles grammars for
//! it. A grammar that does not parse, or a schema that uses something the engine cannot
//! enforce, is a [`ConstraintError`] before any token is generated.

use std::sync::Arc;

mod gbnf;

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use realizar_tokenize::{EncodeOptions, TokenType, Tokenizer};
use serde_json::{Map, Value};
use toktrie::{InferenceCapabilities, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};

/// A language to keep the output in.
#[derive(Clone, Debug, PartialEq)]
pub enum Grammar {
    /// Any JSON object (OpenAI's `json_object`, Ollama's `"json"`).
    JsonObject,
    /// A JSON Schema (draft 2020-12 keywords, as llguidance supports them).
    JsonSchema(Value),
    /// A regular expression the whole output matches.
    Regex(String),
    /// A grammar in llguidance's Lark syntax.
    Lark(String),
    /// A grammar in llama.cpp's GBNF (`root ::= ...`), rewritten into Lark.
    Gbnf(String),
    /// Tool calls in a model's own syntax ([`crate::tools`]): a Lark grammar whose JSON
    /// numbers are bounded as [`Grammar::JsonSchema`]'s are. With triggers it is lazy, as
    /// llama.cpp's tool-call grammars are: the output is free until a trigger appears, and from
    /// the trigger on (the trigger included) it is held to the grammar.
    ToolCalls {
        /// The grammar (llguidance's Lark syntax).
        lark: String,
        /// Where the grammar starts; none: at once.
        triggers: Vec<Trigger>,
    },
}

/// Where a lazy grammar starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trigger {
    /// The text that starts it (a control token's text matches that token).
    pub text: String,
    /// Only as the first thing of the output (after white space), not anywhere in it.
    pub at_start: bool,
}

impl Grammar {
    /// A grammar's text: llguidance's Lark syntax when it starts with a `%llguidance` line (as
    /// llama.cpp marks those), else llama.cpp's GBNF.
    pub fn from_text(text: impl Into<String>) -> Grammar {
        let text = text.into();
        if text.trim_start().starts_with("%llguidance") {
            Grammar::Lark(text)
        } else {
            Grammar::Gbnf(text)
        }
    }

    /// What kind of grammar it is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Grammar::JsonObject => "JSON object",
            Grammar::JsonSchema(_) => "JSON schema",
            Grammar::Regex(_) => "regular expression",
            Grammar::Lark(_) | Grammar::Gbnf(_) => "grammar",
            Grammar::ToolCalls { .. } => "tool-call grammar",
        }
    }
}

/// Why a grammar could not be compiled, or a constraint failed while generating.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstraintError {
    /// What went wrong (llguidance's message, with the position where it gives one).
    pub message: String,
}

impl std::fmt::Display for ConstraintError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConstraintError {}

/// An error whose message is one line (llguidance's regex errors draw a caret under the
/// pattern over several lines: the lines are joined).
fn err(message: impl Into<String>) -> ConstraintError {
    let message: String = message.into();
    let message = if message.contains('\n') {
        message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        message
    };
    ConstraintError { message }
}

/// The tokenizer as llguidance sees it: the trie of every token's bytes, and our own encoder
/// for the bytes it tokenizes (grammar literals, forced bytes).
struct TokenizerView {
    tokenizer: Arc<Tokenizer>,
    trie: TokTrie,
    /// The token of each single byte (byte-level BPE's byte tokens, SentencePiece's
    /// `<0xXX>`), for bytes that are not valid UTF-8 on their own.
    byte_tokens: Vec<Option<u32>>,
}

impl TokenizerEnv for TokenizerView {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// Valid UTF-8 runs through the tokenizer, other bytes (a character's bytes split between
    /// tokens, which llguidance asks about when it forces them) as their byte tokens: never a
    /// lossy U+FFFD, which would make the engine allow that token in their place.
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        let opts = EncodeOptions {
            add_special: false,
            parse_special: false,
        };
        let mut out = Vec::new();
        for chunk in s.utf8_chunks() {
            if !chunk.valid().is_empty() {
                out.extend(
                    self.tokenizer
                        .encode(chunk.valid(), opts)
                        .unwrap_or_default(),
                );
            }
            for &b in chunk.invalid() {
                if let Some(Some(id)) = self.byte_tokens.get(usize::from(b)) {
                    out.push(*id);
                }
            }
        }
        out
    }
}

/// Compiles grammars for one model's tokenizer (build it once: the trie covers the whole
/// vocabulary).
pub struct ConstraintCompiler {
    factory: ParserFactory,
    /// Ids that end generation, which a finished grammar allows (the trie knows one of them).
    eog: Vec<u32>,
    n_vocab: usize,
    /// Every token's bytes (as the trie holds them).
    words: Arc<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for ConstraintCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintCompiler")
            .field("n_vocab", &self.n_vocab)
            .field("eog", &self.eog)
            .finish_non_exhaustive()
    }
}

impl ConstraintCompiler {
    /// The compiler for `tokenizer`, whose model gives `n_vocab` logits a step and ends
    /// generation with `eog` (at least one id).
    pub fn new(
        tokenizer: Arc<Tokenizer>,
        n_vocab: usize,
        eog: &[u32],
    ) -> Result<ConstraintCompiler, ConstraintError> {
        let n = n_vocab.max(tokenizer.vocab_size());
        let words: Vec<Vec<u8>> = (0..n as u32)
            .map(|id| {
                let bytes = tokenizer.token_bytes(id).unwrap_or_default();
                match tokenizer.token_type(id) {
                    Some(TokenType::Control) if !bytes.is_empty() => {
                        let mut w = Vec::with_capacity(bytes.len() + 1);
                        w.push(TokTrie::SPECIAL_TOKEN_MARKER);
                        w.extend_from_slice(bytes);
                        w
                    }
                    Some(TokenType::Unused) => Vec::new(),
                    _ => bytes.to_vec(),
                }
            })
            .collect();
        // The end-of-generation id the grammar engine allows once the output is complete:
        // the end-of-turn token where the model has one (chat), else EOS.
        let eos = tokenizer
            .eot_id()
            .filter(|id| eog.contains(id))
            .or_else(|| tokenizer.eos_id().filter(|id| eog.contains(id)))
            .or_else(|| eog.first().copied())
            .ok_or_else(|| {
                err("the model has no end-of-generation token to end a constrained output with")
            })?;
        let info = TokRxInfo {
            tok_bos: tokenizer.bos_id(),
            ..TokRxInfo::new(n as u32, eos)
        };
        let mut byte_tokens = vec![None; 256];
        for (id, w) in words.iter().enumerate() {
            if let [b] = w.as_slice() {
                let slot = &mut byte_tokens[usize::from(*b)];
                if slot.is_none() {
                    *slot = Some(id as u32);
                }
            }
        }
        let trie = TokTrie::from(&info, &words);
        let words = Arc::new(words);
        let env: TokEnv = Arc::new(TokenizerView {
            tokenizer,
            trie,
            byte_tokens,
        });
        let mut factory = ParserFactory::new(
            &env,
            InferenceCapabilities::default(),
            &llguidance::earley::SlicedBiasComputer::general_slices(),
        )
        .map_err(|e| err(format!("cannot build the grammar engine's token trie: {e}")))?;
        factory.quiet();
        let mut eog = eog.to_vec();
        eog.sort_unstable();
        Ok(ConstraintCompiler {
            factory,
            eog,
            n_vocab,
            words,
        })
    }

    /// Compiles `grammar` into a fresh constraint (the output so far: empty).
    pub fn compile(&self, grammar: &Grammar) -> Result<Constraint, ConstraintError> {
        let top = match grammar {
            Grammar::JsonObject => TopLevelGrammar::from_json_schema(with_layout(&Value::Object(
                Map::from_iter([("type".to_string(), Value::String("object".into()))]),
            ))?),
            Grammar::JsonSchema(schema) => TopLevelGrammar::from_json_schema(with_layout(schema)?),
            Grammar::Regex(rx) => TopLevelGrammar::from_regex(rx),
            Grammar::Lark(g) => TopLevelGrammar::from_lark(g.clone()),
            Grammar::Gbnf(g) => TopLevelGrammar::from_lark(gbnf::to_lark(g)?),
            Grammar::ToolCalls { lark, .. } => TopLevelGrammar::from_lark(lark.clone()),
        };
        // llguidance reports bad input as errors; a panic on some input it did not foresee is
        // caught here so that one request's grammar cannot take the server down.
        let parser = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.factory.create_parser(top)
        }))
        .map_err(|_| err(format!("the {} could not be compiled", grammar.kind())))?
        .map_err(|e| err(format!("invalid {}: {e}", grammar.kind())))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(err(format!("invalid {}: {e}", grammar.kind())));
        }
        Ok(Constraint {
            matcher,
            eog: self.eog.clone(),
            n_vocab: self.n_vocab,
            words: self.words.clone(),
            json: matches!(
                grammar,
                Grammar::JsonObject | Grammar::JsonSchema(_) | Grammar::ToolCalls { .. }
            )
            .then(JsonScan::default),
            waiting: match grammar {
                Grammar::ToolCalls { triggers, .. } if !triggers.is_empty() => Some(Waiting {
                    triggers: triggers.clone(),
                    text: Vec::new(),
                    starts: Vec::new(),
                }),
                _ => None,
            },
            dead: false,
        })
    }
}

/// The layout of generated JSON: no free whitespace (a small model can otherwise write blank
/// space until its token budget runs out), `", "` and `": "` between items, unless the schema
/// sets llguidance's own `x-guidance` options. `true` is the schema of every value; `false`
/// accepts nothing.
pub(crate) fn with_layout(schema: &Value) -> Result<Value, ConstraintError> {
    let mut obj = match schema {
        Value::Object(m) => m.clone(),
        Value::Bool(true) => Map::new(),
        Value::Bool(false) => return Err(err("invalid JSON schema: `false` accepts no value")),
        _ => {
            return Err(err(
                "invalid JSON schema: a schema is an object or a boolean",
            ))
        }
    };
    if !obj.contains_key("x-guidance") {
        let layout = serde_json::json!({
            "whitespace_flexible": false,
            "item_separator": ", ",
            "key_separator": ": ",
        });
        obj.insert("x-guidance".into(), layout);
    }
    Ok(Value::Object(obj))
}

/// One sequence's constraint: which tokens may come next, and the output so far.
pub struct Constraint {
    matcher: Matcher,
    eog: Vec<u32>,
    n_vocab: usize,
    words: Arc<Vec<Vec<u8>>>,
    /// For JSON: where the output is (inside a string, the digits of a number so far).
    json: Option<JsonScan>,
    /// A lazy grammar before its trigger.
    waiting: Option<Waiting>,
    /// The output took a trigger the grammar cannot continue: it ends there.
    dead: bool,
}

/// A lazy grammar's output before its trigger: free.
#[derive(Clone, Debug)]
struct Waiting {
    triggers: Vec<Trigger>,
    /// The output so far (control tokens as their text).
    text: Vec<u8>,
    /// Each token of it: where it starts, and its id.
    starts: Vec<(usize, u32)>,
}

impl Waiting {
    /// Where a trigger starts in the text, once one has appeared (`last`: the bytes the last
    /// token added).
    fn trigger_at(&self, last: usize) -> Option<usize> {
        self.triggers.iter().find_map(|t| {
            let pat = t.text.as_bytes();
            if t.at_start {
                let lead = self
                    .text
                    .iter()
                    .take_while(|b| b.is_ascii_whitespace())
                    .count();
                let rest = &self.text[lead..];
                (rest.len() >= pat.len() && rest.starts_with(pat)).then_some(lead)
            } else {
                let from = self.text.len().saturating_sub(last + pat.len());
                self.text[from..]
                    .windows(pat.len().max(1))
                    .position(|w| w == pat)
                    .map(|i| from + i)
            }
        })
    }
}

/// Most digits in a row of a JSON number (integral part, fraction or exponent), as
/// llama.cpp's JSON-schema grammars bound them: a schema's `"type": "number"` otherwise lets a
/// model write `0.0000…` until its token budget runs out, leaving invalid JSON.
pub const MAX_JSON_DIGITS: usize = 16;

/// Where generated JSON stands, from its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct JsonScan {
    in_string: bool,
    escaped: bool,
    digits: usize,
}

impl JsonScan {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            if b.is_ascii_digit() {
                self.digits += 1;
            } else {
                self.digits = 0;
                if b == b'"' {
                    self.in_string = true;
                }
            }
        }
    }
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint")
            .field("stopped", &self.matcher.is_stopped())
            .finish_non_exhaustive()
    }
}

/// The tokens allowed at one step.
#[derive(Clone, Debug)]
pub struct TokenMask {
    /// `None`: every token (a lazy grammar before its trigger).
    allowed: Option<toktrie::SimpleVob>,
    /// Whether the output may end here (every end-of-generation id is then allowed).
    may_end: bool,
}

impl TokenMask {
    /// Whether `id` may come next.
    pub fn allows(&self, id: u32) -> bool {
        self.allowed.as_ref().is_none_or(|a| a.is_allowed(id))
    }

    /// Sets the logits of every token the constraint forbids to minus infinity.
    pub fn apply(&self, logits: &mut [f32], eog: &[u32]) {
        if self.allowed.is_none() {
            return;
        }
        for (id, l) in logits.iter_mut().enumerate() {
            let id = id as u32;
            let ok = self.allows(id) || (self.may_end && eog.binary_search(&id).is_ok());
            if !ok {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

impl Constraint {
    /// The tokens that may come next (for JSON, no digit past [`MAX_JSON_DIGITS`] in a row of
    /// a number where something else may follow). Costs up to a few milliseconds: the batcher
    /// computes it while the model evaluates the step.
    pub fn mask(&mut self) -> Result<TokenMask, ConstraintError> {
        if self.waiting.is_some() {
            return Ok(TokenMask {
                allowed: None,
                may_end: true,
            });
        }
        let mut allowed = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| err(format!("the output constraint failed: {e}")))?;
        if self
            .json
            .is_some_and(|j| !j.in_string && j.digits >= MAX_JSON_DIGITS)
        {
            // The number has its digits: no more, if anything else may follow.
            let starts_digit = |i: usize| {
                self.words
                    .get(i)
                    .and_then(|w| w.first())
                    .is_some_and(u8::is_ascii_digit)
            };
            let (mut digits, mut others) = (Vec::new(), 0usize);
            allowed.iter_set_entries(|i| {
                if starts_digit(i) {
                    digits.push(i as u32);
                } else {
                    others += 1;
                }
            });
            if others > 0 {
                for i in digits {
                    allowed.disallow_token(i);
                }
            }
        }
        let eos = self
            .matcher
            .tok_env()
            .ok()
            .map(|t| t.tok_trie().eos_token());
        let may_end = eos.is_some_and(|e| allowed.is_allowed(e));
        Ok(TokenMask {
            allowed: Some(allowed),
            may_end,
        })
    }

    /// Advances with the sampled token if the grammar accepts it (an end-of-generation token
    /// ends the output); `Ok(false)`, nothing changed, if it does not. The mask can allow a
    /// token the grammar then refuses (llguidance lets SmolLM2's U+FFFD token through after
    /// the first byte of a multi-byte character): the caller samples again without it.
    pub fn commit(&mut self, id: u32) -> Result<bool, ConstraintError> {
        if self.eog.binary_search(&id).is_ok() {
            return Ok(true);
        }
        if self.waiting.is_some() {
            self.wait(id);
            return Ok(true);
        }
        let ok = self
            .matcher
            .try_consume_tokens(&[id])
            .map(|n| n == 1)
            .map_err(|e| err(format!("the output constraint failed at token {id}: {e}")))?;
        if ok {
            if let (Some(j), Some(w)) = (self.json.as_mut(), self.words.get(id as usize)) {
                j.push(w);
            }
        }
        Ok(ok)
    }

    /// A lazy grammar's step before its trigger: the token is taken as it is; when it
    /// completes a trigger, the grammar starts there and takes the output from the trigger on
    /// (the tokens themselves when the trigger starts at one, else the text re-encoded).
    fn wait(&mut self, id: u32) {
        let Some(w) = self.waiting.as_mut() else {
            return;
        };
        let bytes = self.words.get(id as usize).map_or(&[][..], |w| {
            w.strip_prefix(&[TokTrie::SPECIAL_TOKEN_MARKER])
                .unwrap_or(w)
        });
        w.starts.push((w.text.len(), id));
        w.text.extend_from_slice(bytes);
        let Some(at) = w.trigger_at(bytes.len()) else {
            return;
        };
        let tokens: Vec<u32> = match w.starts.iter().position(|&(s, _)| s == at) {
            Some(k) => w.starts[k..].iter().map(|&(_, t)| t).collect(),
            None => match self.matcher.tok_env() {
                Ok(env) => env.tokenize_bytes(&w.text[at..]),
                Err(_) => Vec::new(),
            },
        };
        let tail = w.text[at..].to_vec();
        self.waiting = None;
        match self.matcher.try_consume_tokens(&tokens) {
            Ok(n) if n == tokens.len() => {
                if let Some(j) = self.json.as_mut() {
                    j.push(&tail);
                }
            }
            _ => self.dead = true,
        }
    }

    /// Samples with `sample` from `logits` (already masked) until the grammar accepts the
    /// token, taking each refused token out (at most 16 tries), and advances with it.
    pub fn sample_accepted(
        &mut self,
        logits: &mut [f32],
        mut sample: impl FnMut(&mut [f32]) -> u32,
    ) -> Result<u32, ConstraintError> {
        for _ in 0..16 {
            let id = sample(logits);
            if self.commit(id)? {
                return Ok(id);
            }
            match logits.get_mut(id as usize) {
                Some(l) if l.is_finite() => *l = f32::NEG_INFINITY,
                _ => break,
            }
        }
        Err(err(
            "the output constraint accepts none of the tokens the model proposes",
        ))
    }

    /// An independent copy of this constraint in its current state (e.g. to try tokens).
    pub fn clone_state(&self) -> Constraint {
        Constraint {
            matcher: self.matcher.deep_clone(),
            eog: self.eog.clone(),
            n_vocab: self.n_vocab,
            words: self.words.clone(),
            json: self.json,
            waiting: self.waiting.clone(),
            dead: self.dead,
        }
    }

    /// Whether the output is complete and nothing may follow it (the sequence then ends).
    pub fn is_finished(&self) -> bool {
        self.dead || (self.waiting.is_none() && self.matcher.is_stopped())
    }

    /// The ids that end generation.
    pub fn eog(&self) -> &[u32] {
        &self.eog
    }

    /// Logits a step holds.
    pub fn n_vocab(&self) -> usize {
        self.n_vocab
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_one_line() {
        let e = err("invalid JSON schema: regex parse error:\n    ([\n     ^\nerror: unclosed");
        assert_eq!(
            e.message,
            "invalid JSON schema: regex parse error: ([ ^ error: unclosed"
        );
    }

    #[test]
    fn the_json_scan_counts_number_digits_outside_strings() {
        let mut j = JsonScan::default();
        j.push(b"{\"a\": 12");
        assert_eq!(j.digits, 2);
        j.push(b"3.0");
        assert_eq!(j.digits, 1);
        j.push(b", \"b\": \"99\\\"9");
        assert!(j.in_string);
        assert_eq!(j.digits, 0);
        j.push(b"\", \"c\": 7");
        assert!(!j.in_string);
        assert_eq!(j.digits, 1);
    }
}
