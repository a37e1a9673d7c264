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
}

impl Grammar {
    /// What kind of grammar it is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Grammar::JsonObject => "JSON object",
            Grammar::JsonSchema(_) => "JSON schema",
            Grammar::Regex(_) => "regular expression",
            Grammar::Lark(_) | Grammar::Gbnf(_) => "grammar",
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

fn err(message: impl Into<String>) -> ConstraintError {
    ConstraintError {
        message: message.into(),
    }
}

/// The tokenizer as llguidance sees it: the trie of every token's bytes, and our own encoder
/// for the texts it tokenizes (grammar literals, forced text).
struct TokenizerView {
    tokenizer: Arc<Tokenizer>,
    trie: TokTrie,
}

impl TokenizerEnv for TokenizerView {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        let text = String::from_utf8_lossy(s);
        let opts = EncodeOptions {
            add_special: false,
            parse_special: false,
        };
        self.tokenizer.encode(&text, opts).unwrap_or_default()
    }
}

/// Compiles grammars for one model's tokenizer (build it once: the trie covers the whole
/// vocabulary).
pub struct ConstraintCompiler {
    factory: ParserFactory,
    /// Ids that end generation, which a finished grammar allows (the trie knows one of them).
    eog: Vec<u32>,
    n_vocab: usize,
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
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(TokenizerView { tokenizer, trie });
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
        })
    }
}

/// The layout of generated JSON: no free whitespace (a small model can otherwise write blank
/// space until its token budget runs out), `", "` and `": "` between items, unless the schema
/// sets llguidance's own `x-guidance` options. `true` is the schema of every value; `false`
/// accepts nothing.
fn with_layout(schema: &Value) -> Result<Value, ConstraintError> {
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
    allowed: toktrie::SimpleVob,
    /// Whether the output may end here (every end-of-generation id is then allowed).
    may_end: bool,
}

impl TokenMask {
    /// Whether `id` may come next.
    pub fn allows(&self, id: u32) -> bool {
        self.allowed.is_allowed(id)
    }

    /// Sets the logits of every token the constraint forbids to minus infinity.
    pub fn apply(&self, logits: &mut [f32], eog: &[u32]) {
        for (id, l) in logits.iter_mut().enumerate() {
            let id = id as u32;
            let ok =
                self.allowed.is_allowed(id) || (self.may_end && eog.binary_search(&id).is_ok());
            if !ok {
                *l = f32::NEG_INFINITY;
            }
        }
    }
}

impl Constraint {
    /// The tokens that may come next. Costs up to a few milliseconds: the batcher computes it
    /// while the model evaluates the step.
    pub fn mask(&mut self) -> Result<TokenMask, ConstraintError> {
        let allowed = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| err(format!("the output constraint failed: {e}")))?;
        let eos = self
            .matcher
            .tok_env()
            .ok()
            .map(|t| t.tok_trie().eos_token());
        let may_end = eos.is_some_and(|e| allowed.is_allowed(e));
        Ok(TokenMask { allowed, may_end })
    }

    /// Advances with the sampled token (an end-of-generation token ends the output).
    pub fn commit(&mut self, id: u32) -> Result<(), ConstraintError> {
        if self.eog.binary_search(&id).is_ok() {
            return Ok(());
        }
        self.matcher
            .consume_token(id)
            .map_err(|e| err(format!("the output constraint rejected token {id}: {e}")))
    }

    /// Whether the output is complete and nothing may follow it (the sequence then ends).
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
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
