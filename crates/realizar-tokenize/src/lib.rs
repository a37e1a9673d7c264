//! Tokenizers for Realizar: byte-level BPE, SentencePiece, WordPiece and chat templates.
//!
//! A leaf crate: it takes plain vocabulary, merges, scores and configuration structs, so it can be
//! embedded on its own. `realizar-runtime` adapts GGUF metadata and `tokenizer.json` into them.
//!
//! The token ids follow the reference engines exactly: llama.cpp for BPE and SentencePiece
//! vocabularies (special-token partition, pre-tokenizer regexes, merge order, byte fallback),
//! Hugging Face `tokenizers` for WordPiece.
//!
//! ```
//! use realizar_tokenize::{BpeConfig, EncodeOptions, PreTokenizerKind, SpecialTokens, Tokenizer};
//!
//! // A tiny byte-level vocabulary: "h", "i", "hi" and one merge.
//! let cfg = BpeConfig {
//!     tokens: vec!["h".into(), "i".into(), "hi".into(), "<s>".into()],
//!     token_types: vec![1, 1, 1, 3],
//!     merges: vec![("h".into(), "i".into())],
//!     pre: PreTokenizerKind::Gpt2,
//!     special: SpecialTokens { bos: Some(3), add_bos: true, ..Default::default() },
//! };
//! let tok = Tokenizer::from_bpe(cfg).unwrap();
//! let ids = tok.encode("hi", EncodeOptions::default()).unwrap();
//! assert_eq!(ids, [3, 2]);
//! assert_eq!(tok.decode(&ids, true).unwrap(), "hi");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bpe;
pub mod chat;
pub mod chat_builtin;
mod error;
mod pretok;
mod spm;
mod stream;
mod unicode;
mod vocab;
mod wordpiece;

use std::collections::HashMap;

pub use bpe::byte_to_char_table;

/// The mark [`Tokenizer::mark_text`] writes into control-token texts (a Unicode noncharacter,
/// which vocabularies do not use; one written in the text itself is kept, doubled).
pub const TEXT_MARK: char = '\u{FDD0}';
pub use chat::{ChatContext, ChatMessage, ChatTemplate, ChatToolCall, RESERVED_TEMPLATE_ARGS};
pub use chat_builtin::{family_template, Builtin, BUILTIN_TEMPLATES};
pub use error::TokenizeError;
pub use pretok::PreTokenizerKind;
pub use stream::{StreamDecoder, TextStep, TextStream};
pub use vocab::{SpecialTokens, Strip, TokenType};
pub use wordpiece::{AddedToken, BertNormalizerConfig, WordPieceConfig};

use bpe::BpeModel;
use spm::SpmModel;
use vocab::{Fragment, Vocab};
use wordpiece::WordPieceModel;

/// A byte-level BPE vocabulary (GGUF `tokenizer.ggml.model = "gpt2"`, or a `tokenizer.json`
/// with a `BPE` model and a byte-level pre-tokenizer).
#[derive(Clone, Debug, PartialEq)]
pub struct BpeConfig {
    /// Token texts (in GPT-2 byte-level characters), by id.
    pub tokens: Vec<String>,
    /// GGUF token types (see [`TokenType::from_gguf`]), one per token.
    pub token_types: Vec<i32>,
    /// Merge rules, highest priority first.
    pub merges: Vec<(String, String)>,
    /// The pre-tokenizer.
    pub pre: PreTokenizerKind,
    /// Special token ids and BOS/EOS insertion.
    pub special: SpecialTokens,
}

/// A SentencePiece vocabulary (GGUF `tokenizer.ggml.model = "llama"`).
#[derive(Clone, Debug, PartialEq)]
pub struct SpmConfig {
    /// Token texts (`▁` for spaces), by id.
    pub tokens: Vec<String>,
    /// Token scores (higher merges first), one per token.
    pub scores: Vec<f32>,
    /// GGUF token types, one per token.
    pub token_types: Vec<i32>,
    /// Whether a space is put before the text (and after each special token).
    pub add_space_prefix: bool,
    /// Special token ids and BOS/EOS insertion.
    pub special: SpecialTokens,
}

/// How to encode a text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Add what the model puts around a text: BOS/EOS as its metadata says, `[CLS]`…`[SEP]`
    /// for BERT (llama.cpp's `add_special`).
    pub add_special: bool,
    /// Match control tokens written in the text (`<|im_start|>`); without it they are plain
    /// text (llama.cpp's `parse_special`). User-defined tokens are always matched.
    pub parse_special: bool,
}

impl Default for EncodeOptions {
    /// `add_special: true, parse_special: false`, like llama.cpp's default for prompts.
    fn default() -> Self {
        EncodeOptions {
            add_special: true,
            parse_special: false,
        }
    }
}

/// Ids with the attention mask and token type ids a BERT encoder takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encoding {
    /// Token ids.
    pub ids: Vec<u32>,
    /// 1 for every token (encodings are never padded).
    pub attention_mask: Vec<u32>,
    /// Segment ids (0 for a single text).
    pub type_ids: Vec<u32>,
}

#[derive(Debug)]
enum Model {
    Bpe(Box<BpeModel>),
    Spm(Box<SpmModel>),
    WordPiece(WordPieceModel),
}

/// The kind of tokenizer model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelKind {
    /// Byte-level BPE.
    Bpe,
    /// SentencePiece.
    SentencePiece,
    /// WordPiece.
    WordPiece,
}

/// A tokenizer: text → token ids → text.
#[derive(Debug)]
pub struct Tokenizer {
    vocab: Vocab,
    special: SpecialTokens,
    eog: Vec<u32>,
    model: Model,
    /// Decoded bytes of each token (for SentencePiece without the leading-space rule).
    pieces: Vec<Box<[u8]>>,
}

/// Texts of tokens that end generation (llama.cpp's end-of-generation list in
/// src/llama-vocab.cpp, plus its FIM repository/separator/padding tokens, which it also treats
/// as end of generation). llama.cpp makes every such token a control token whatever its type in
/// the file (so `</s>` is not matched in text without special-token parsing, even in Gemma 3
/// where the file says user-defined); [`Tokenizer::from_bpe`] and [`Tokenizer::from_spm`] do the
/// same.
pub const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<｜end▁of▁sentence｜>",
    "<|fim_pad|>",
    "<fim-pad>",
    "<fim_pad>",
    "<PAD>",
    "<|fim_repo|>",
    "<fim-repo>",
    "<fim_repo>",
    "<|repo_name|>",
    "<REPO>",
    "<reponame>",
    "<|file_sep|>",
    "<fim-sep>",
    "<fim_sep>",
];

/// Texts of end-of-turn tokens, used when the metadata names none.
pub const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
];

fn types_from_gguf(types: &[i32], n_tokens: usize) -> Result<Vec<TokenType>, TokenizeError> {
    if types.len() != n_tokens {
        return Err(TokenizeError::LengthMismatch {
            what: "token types",
            len: types.len(),
            n_tokens,
        });
    }
    types
        .iter()
        .enumerate()
        .map(|(index, &value)| {
            TokenType::from_gguf(value).ok_or(TokenizeError::InvalidTokenType { index, value })
        })
        .collect()
}

/// Makes the end-of-generation tokens control tokens, as llama.cpp does on load.
fn override_eog_types(tokens: &[String], types: &mut [TokenType]) {
    for (t, ty) in tokens.iter().zip(types.iter_mut()) {
        if (EOG_TEXTS.contains(&t.as_str()) || EOT_TEXTS.contains(&t.as_str()))
            && *ty != TokenType::Control
        {
            *ty = TokenType::Control;
        }
    }
}

impl Tokenizer {
    /// Builds a byte-level BPE tokenizer.
    pub fn from_bpe(cfg: BpeConfig) -> Result<Tokenizer, TokenizeError> {
        let mut types = types_from_gguf(&cfg.token_types, cfg.tokens.len())?;
        override_eog_types(&cfg.tokens, &mut types);
        let vocab = Vocab::new(cfg.tokens, types)?;
        let model = BpeModel::new(&vocab, &cfg.merges, cfg.pre)?;
        Self::finish(vocab, cfg.special, Model::Bpe(Box::new(model)))
    }

    /// Builds a SentencePiece tokenizer.
    pub fn from_spm(cfg: SpmConfig) -> Result<Tokenizer, TokenizeError> {
        let mut types = types_from_gguf(&cfg.token_types, cfg.tokens.len())?;
        override_eog_types(&cfg.tokens, &mut types);
        if cfg.scores.len() != cfg.tokens.len() {
            return Err(TokenizeError::LengthMismatch {
                what: "scores",
                len: cfg.scores.len(),
                n_tokens: cfg.tokens.len(),
            });
        }
        let vocab = Vocab::new(cfg.tokens, types)?;
        let model = SpmModel::new(&vocab, cfg.scores, cfg.add_space_prefix);
        Self::finish(vocab, cfg.special, Model::Spm(Box::new(model)))
    }

    /// Builds a WordPiece tokenizer.
    pub fn from_wordpiece(cfg: WordPieceConfig) -> Result<Tokenizer, TokenizeError> {
        let n = cfg.vocab.len();
        let mut types = vec![TokenType::Normal; n];
        for t in &cfg.added_tokens {
            let slot = types
                .get_mut(t.id as usize)
                .ok_or(TokenizeError::SpecialOutOfRange {
                    what: "added",
                    id: t.id,
                    vocab_size: n,
                })?;
            if t.special {
                *slot = TokenType::Control;
            }
        }
        // The post-processor's tokens are special too (skipped when decoding with skip_special).
        for id in [cfg.cls, cfg.sep].into_iter().flatten() {
            if let Some(slot) = types.get_mut(id as usize) {
                *slot = TokenType::Control;
            }
        }
        let vocab = Vocab::new(cfg.vocab.clone(), types)?;
        let unk = vocab
            .id(&cfg.unk_token)
            .ok_or_else(|| TokenizeError::MissingToken {
                token: cfg.unk_token.clone(),
            })?;
        let special = SpecialTokens {
            bos: cfg.cls,
            eos: cfg.sep,
            unk: Some(unk),
            ..Default::default()
        };
        let model = WordPieceModel::new(&cfg, unk);
        Self::finish(vocab, special, Model::WordPiece(model))
    }

    fn finish(
        vocab: Vocab,
        special: SpecialTokens,
        model: Model,
    ) -> Result<Tokenizer, TokenizeError> {
        special.check(vocab.len())?;
        if special.add_bos && special.bos.is_none() {
            return Err(TokenizeError::MissingToken {
                token: "BOS (add_bos is set)".into(),
            });
        }
        if special.add_eos && special.eos.is_none() {
            return Err(TokenizeError::MissingToken {
                token: "EOS (add_eos is set)".into(),
            });
        }
        let rev: HashMap<char, u8> = bpe::byte_to_char_table()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let pieces = vocab
            .tokens
            .iter()
            .zip(&vocab.types)
            .map(|(t, ty)| {
                let mut out = Vec::new();
                match (&model, ty) {
                    (_, TokenType::Control | TokenType::Unknown | TokenType::UserDefined) => {
                        out.extend_from_slice(t.as_bytes())
                    }
                    (Model::Bpe(_), TokenType::Normal) => bpe::decode_byte_level(t, &rev, &mut out),
                    (Model::Spm(_), TokenType::Normal) => {
                        out.extend_from_slice(t.replace('\u{2581}', " ").as_bytes())
                    }
                    (Model::Spm(_), TokenType::Byte) => {
                        if let Some(b) = spm::parse_byte_token(t) {
                            out.push(b);
                        }
                    }
                    (Model::WordPiece(_), TokenType::Normal) => out.extend_from_slice(t.as_bytes()),
                    _ => {}
                }
                out.into_boxed_slice()
            })
            .collect();
        let mut eog: Vec<u32> = special.eos.into_iter().chain(special.eot).collect();
        if !matches!(model, Model::WordPiece(_)) {
            for text in EOG_TEXTS {
                if let Some(id) = vocab.id(text) {
                    if vocab
                        .token_type(id)
                        .is_some_and(|t| matches!(t, TokenType::Control | TokenType::UserDefined))
                    {
                        eog.push(id);
                    }
                }
            }
        }
        eog.sort_unstable();
        eog.dedup();
        Ok(Tokenizer {
            vocab,
            special,
            eog,
            model,
            pieces,
        })
    }

    /// The kind of model.
    pub fn kind(&self) -> ModelKind {
        match self.model {
            Model::Bpe(_) => ModelKind::Bpe,
            Model::Spm(_) => ModelKind::SentencePiece,
            Model::WordPiece(_) => ModelKind::WordPiece,
        }
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Beginning-of-sequence id (`[CLS]` for WordPiece).
    pub fn bos_id(&self) -> Option<u32> {
        self.special.bos
    }

    /// End-of-sequence id (`[SEP]` for WordPiece).
    pub fn eos_id(&self) -> Option<u32> {
        self.special.eos
    }

    /// End-of-turn id.
    pub fn eot_id(&self) -> Option<u32> {
        self.special.eot
    }

    /// Ids that end generation (EOS, EOT and the model's other end-of-generation tokens), sorted.
    pub fn eog_ids(&self) -> &[u32] {
        &self.eog
    }

    /// Whether an id ends generation.
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.binary_search(&id).is_ok()
    }

    /// The special token ids and BOS/EOS flags.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// The vocabulary text of a token (byte-level characters for BPE, `▁` for SentencePiece).
    pub fn token_to_piece(&self, id: u32) -> Option<&str> {
        self.vocab.tokens.get(id as usize).map(String::as_str)
    }

    /// Makes special token `id` take the white space beside it out of the text when special
    /// tokens are split off (llama.cpp's `LSTRIP`/`RSTRIP` attributes, which it sets by model
    /// name, e.g. on Phi-3's special tokens).
    pub fn set_strip(&mut self, id: u32, strip: Strip) {
        if strip == Strip::default() {
            self.vocab.strip.remove(&id);
        } else if (id as usize) < self.vocab.len() {
            self.vocab.strip.insert(id, strip);
        }
    }

    /// How token `id` strips white space beside it.
    pub fn strip(&self, id: u32) -> Strip {
        self.vocab.strip.get(&id).copied().unwrap_or_default()
    }

    /// The control, unknown and user-defined tokens (those special-token parsing splits off).
    pub fn special_ids(&self) -> Vec<u32> {
        (0..self.vocab.len() as u32)
            .filter(|&id| {
                self.vocab.token_type(id).is_some_and(|t| {
                    matches!(
                        t,
                        TokenType::Control | TokenType::Unknown | TokenType::UserDefined
                    )
                }) && self
                    .vocab
                    .tokens
                    .get(id as usize)
                    .is_some_and(|t| !t.is_empty())
            })
            .collect()
    }

    /// The type of a token.
    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.vocab.token_type(id)
    }

    /// The id of a token text, if it is in the vocabulary.
    pub fn token_to_id(&self, text: &str) -> Option<u32> {
        self.vocab.id(text)
    }

    /// The bytes a token decodes to on its own (empty for unused tokens; control tokens give
    /// their text).
    pub fn token_bytes(&self, id: u32) -> Result<&[u8], TokenizeError> {
        self.pieces
            .get(id as usize)
            .map(|b| &b[..])
            .ok_or(TokenizeError::InvalidId {
                id,
                vocab_size: self.vocab.len(),
            })
    }

    /// The most bytes of input text one token can stand for: the longest token text, in the
    /// bytes it decodes to, and at least its text's own length (SentencePiece writes a space as
    /// three bytes of `▁`; byte-level BPE a byte as one or two). Not a bound for WordPiece,
    /// whose normalizer drops characters (0 there).
    pub fn max_token_bytes(&self) -> usize {
        if matches!(self.model, Model::WordPiece(_)) {
            return 0;
        }
        self.vocab
            .tokens
            .iter()
            .zip(&self.pieces)
            .map(|(t, p)| t.len().max(p.len()))
            .max()
            // An unknown character is one token of up to four bytes.
            .map_or(0, |n| n.max(4))
    }

    /// Encodes a text.
    pub fn encode(&self, text: &str, opts: EncodeOptions) -> Result<Vec<u32>, TokenizeError> {
        self.encode_inner(text, opts, false)
    }

    /// `text` marked so that, once placed in a string encoded with
    /// [`Tokenizer::encode_marked`], its control-token texts (`<|im_end|>`) are plain text as
    /// if it were encoded without special-token parsing, while the rest of the string keeps
    /// them. This is how a chat prompt keeps a message's content from writing the template's
    /// markup: the content is marked before the template is rendered. (A control token of one
    /// character cannot be marked and stays special.)
    pub fn mark_text<'t>(&self, text: &'t str) -> std::borrow::Cow<'t, str> {
        match self.vocab.mark_control(text) {
            std::borrow::Cow::Owned(s) if s != text => std::borrow::Cow::Owned(s),
            _ => std::borrow::Cow::Borrowed(text),
        }
    }

    /// Encodes a string holding [`Tokenizer::mark_text`] parts: special tokens are parsed, the
    /// marks are removed, and what was marked is encoded as plain text.
    pub fn encode_marked(&self, text: &str, add_special: bool) -> Result<Vec<u32>, TokenizeError> {
        self.encode_inner(
            text,
            EncodeOptions {
                add_special,
                parse_special: true,
            },
            true,
        )
    }

    fn encode_inner(
        &self,
        text: &str,
        opts: EncodeOptions,
        marked: bool,
    ) -> Result<Vec<u32>, TokenizeError> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if let Model::WordPiece(wp) = &self.model {
            let text = if marked {
                std::borrow::Cow::Owned(vocab::unmark(text))
            } else {
                std::borrow::Cow::Borrowed(text)
            };
            return Ok(self.encode_wordpiece(wp, &text, opts.add_special).ids);
        }
        if opts.add_special && self.special.add_bos {
            out.extend(self.special.bos);
        }
        let mut prev_special = true;
        for f in self.vocab.partition(text, opts.parse_special) {
            match f {
                Fragment::Text(t) if marked && t.contains(TEXT_MARK) => {
                    // The marked text, unmarked, with only user-defined tokens matched.
                    let plain = vocab::unmark(t);
                    for g in self.vocab.partition(&plain, false) {
                        self.encode_fragment(g, &mut prev_special, &mut out)?;
                    }
                }
                f => self.encode_fragment(f, &mut prev_special, &mut out)?,
            }
        }
        if opts.add_special && self.special.add_eos {
            out.extend(self.special.eos);
        }
        Ok(out)
    }

    /// Encodes one fragment of a partitioned text; `prev_special` tells SentencePiece whether
    /// the previous fragment was a token (it then adds the space prefix).
    fn encode_fragment(
        &self,
        f: Fragment<'_>,
        prev_special: &mut bool,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizeError> {
        match (f, &self.model) {
            (Fragment::Token(id), _) => {
                out.push(id);
                *prev_special = true;
            }
            (Fragment::Text(t), Model::Bpe(m)) => m.encode(&self.vocab, t, out),
            (Fragment::Text(t), Model::Spm(m)) => {
                if m.add_space_prefix && *prev_special {
                    let mut buf = String::with_capacity(t.len() + 1);
                    buf.push(' ');
                    buf.push_str(t);
                    m.encode(&self.vocab, &buf, out)?;
                } else {
                    m.encode(&self.vocab, t, out)?;
                }
                *prev_special = false;
            }
            (Fragment::Text(_), Model::WordPiece(_)) => {}
        }
        Ok(())
    }

    /// Encodes a text with the attention mask and type ids a BERT encoder takes. For BPE and
    /// SentencePiece the mask is all ones and the type ids all zeros.
    pub fn encode_with_mask(
        &self,
        text: &str,
        add_special: bool,
    ) -> Result<Encoding, TokenizeError> {
        if let Model::WordPiece(wp) = &self.model {
            return Ok(self.encode_wordpiece(wp, text, add_special));
        }
        let ids = self.encode(
            text,
            EncodeOptions {
                add_special,
                parse_special: false,
            },
        )?;
        let n = ids.len();
        Ok(Encoding {
            ids,
            attention_mask: vec![1; n],
            type_ids: vec![0; n],
        })
    }

    fn encode_wordpiece(&self, wp: &WordPieceModel, text: &str, add_special: bool) -> Encoding {
        let mut body = Vec::new();
        wp.encode(&self.vocab, text, &mut body);
        let (pre, post): (Vec<u32>, Vec<u32>) = if add_special {
            (wp.cls.into_iter().collect(), wp.sep.into_iter().collect())
        } else {
            (Vec::new(), Vec::new())
        };
        if let Some(max) = wp.max_length {
            body.truncate(max.saturating_sub(pre.len() + post.len()));
        }
        let ids: Vec<u32> = pre.into_iter().chain(body).chain(post).collect();
        let n = ids.len();
        Encoding {
            ids,
            attention_mask: vec![1; n],
            type_ids: vec![0; n],
        }
    }

    /// Appends the bytes of token `id` at position `first` (no output before it) to `out`.
    pub(crate) fn append_piece(
        &self,
        id: u32,
        first: bool,
        skip_special: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), TokenizeError> {
        let bytes = self.token_bytes(id)?;
        let ty = self.vocab.token_type(id).unwrap_or(TokenType::Undefined);
        if skip_special && ty.is_special() {
            return Ok(());
        }
        match &self.model {
            Model::Spm(m) if first && m.add_space_prefix && ty == TokenType::Normal => {
                out.extend_from_slice(bytes.strip_prefix(b" ").unwrap_or(bytes));
            }
            Model::WordPiece(wp) if ty == TokenType::Normal => {
                match bytes.strip_prefix(wp.prefix.as_bytes()) {
                    Some(rest) if !wp.prefix.is_empty() => out.extend_from_slice(rest),
                    _ => {
                        if !first {
                            out.push(b' ');
                        }
                        out.extend_from_slice(bytes);
                    }
                }
            }
            Model::WordPiece(_) => {
                if !first && !bytes.is_empty() {
                    out.push(b' ');
                }
                out.extend_from_slice(bytes);
            }
            _ => out.extend_from_slice(bytes),
        }
        Ok(())
    }

    /// Decodes ids to bytes (which need not be valid UTF-8 when the ids end inside a character).
    pub fn decode_bytes(&self, ids: &[u32], skip_special: bool) -> Result<Vec<u8>, TokenizeError> {
        let mut out = Vec::new();
        for &id in ids {
            let first = out.is_empty();
            self.append_piece(id, first, skip_special, &mut out)?;
        }
        Ok(out)
    }

    /// Decodes ids to text; byte sequences that are not UTF-8 become U+FFFD. With
    /// `skip_special`, control and unknown tokens are left out.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizeError> {
        let bytes = self.decode_bytes(ids, skip_special)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A streaming decoder over this tokenizer.
    pub fn stream_decoder(&self, skip_special: bool) -> StreamDecoder<&Tokenizer> {
        StreamDecoder::new(self, skip_special)
    }
}

#[cfg(test)]
mod tests;
