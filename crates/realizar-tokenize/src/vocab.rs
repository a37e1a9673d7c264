//! The vocabulary shared by every tokenizer model: token texts, types, the text → id map, and
//! the special-token partition that runs before the model's own algorithm.

use std::borrow::Cow;
use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::TokenizeError;

/// The type of a token, as GGUF's `tokenizer.ggml.token_type` stores it (llama.cpp's
/// `llama_token_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenType {
    /// 0: no type given.
    Undefined,
    /// 1: an ordinary token.
    Normal,
    /// 2: the unknown token.
    Unknown,
    /// 3: a control token (BOS, EOS, `<|im_start|>`, …): matched in text only when the caller
    /// asks for special-token parsing, and left out of decoded text on request.
    Control,
    /// 4: a user-defined token: always matched in text, decoded verbatim.
    UserDefined,
    /// 5: an unused slot.
    Unused,
    /// 6: a SentencePiece byte-fallback token (`<0xNN>`).
    Byte,
}

impl TokenType {
    /// The type of a GGUF token-type value, or `None` for a value outside 0 to 6.
    pub fn from_gguf(value: i32) -> Option<TokenType> {
        Some(match value {
            0 => TokenType::Undefined,
            1 => TokenType::Normal,
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            _ => return None,
        })
    }

    /// Whether the token is a control or unknown token (left out of decoded text when special
    /// tokens are skipped, and only matched in text with special-token parsing).
    pub fn is_special(self) -> bool {
        matches!(self, TokenType::Control | TokenType::Unknown)
    }
}

/// Ids of the special tokens, and whether encoding adds BOS/EOS around a text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning of sequence.
    pub bos: Option<u32>,
    /// End of sequence.
    pub eos: Option<u32>,
    /// End of turn (chat models).
    pub eot: Option<u32>,
    /// Unknown token.
    pub unk: Option<u32>,
    /// Padding token.
    pub pad: Option<u32>,
    /// Whether `encode` with `add_special` puts BOS first.
    pub add_bos: bool,
    /// Whether `encode` with `add_special` puts EOS last.
    pub add_eos: bool,
}

impl SpecialTokens {
    pub(crate) fn check(&self, vocab_size: usize) -> Result<(), TokenizeError> {
        for (what, id) in [
            ("BOS", self.bos),
            ("EOS", self.eos),
            ("EOT", self.eot),
            ("unknown", self.unk),
            ("padding", self.pad),
        ] {
            if let Some(id) = id {
                if id as usize >= vocab_size {
                    return Err(TokenizeError::SpecialOutOfRange {
                        what,
                        id,
                        vocab_size,
                    });
                }
            }
        }
        Ok(())
    }
}

/// A piece of text after the special-token partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// Finds special tokens in text with llama.cpp's priority: longest token first, each token's
/// occurrences left to right, never overlapping an occurrence already taken
/// (`tokenizer_st_partition` in llama.cpp's src/llama-vocab.cpp).
#[derive(Debug)]
struct SpecialMatcher {
    ac: AhoCorasick,
    /// Token id of each pattern.
    ids: Vec<u32>,
    /// Priority of each pattern (0 first).
    prio: Vec<u32>,
}

impl SpecialMatcher {
    fn new(tokens: &[String], ids: Vec<u32>) -> Option<SpecialMatcher> {
        if ids.is_empty() {
            return None;
        }
        let mut order: Vec<usize> = (0..ids.len()).collect();
        let len_of = |i: usize| {
            ids.get(i)
                .and_then(|&id| tokens.get(id as usize))
                .map_or(0, |t| t.len())
        };
        order.sort_by(|&a, &b| len_of(b).cmp(&len_of(a)).then(ids.get(a).cmp(&ids.get(b))));
        let mut prio = vec![0u32; ids.len()];
        for (rank, &i) in order.iter().enumerate() {
            if let Some(p) = prio.get_mut(i) {
                *p = u32::try_from(rank).unwrap_or(u32::MAX);
            }
        }
        let pats: Vec<&str> = ids
            .iter()
            .map(|&id| tokens.get(id as usize).map_or("", |s| s.as_str()))
            .collect();
        let ac = AhoCorasickBuilder::new()
            .match_kind(MatchKind::Standard)
            .build(&pats)
            .ok()?;
        Some(SpecialMatcher { ac, ids, prio })
    }

    /// Splits `text`; a token with a [`Strip`] takes the white space beside it (as far as the
    /// nearest token or stripped space) out of the text, as llama.cpp's `LSTRIP`/`RSTRIP`
    /// attributes do when that token is split off.
    fn partition<'t>(
        &self,
        text: &'t str,
        strip: &FxHashMap<u32, Strip>,
        out: &mut Vec<Fragment<'t>>,
    ) {
        // (priority, start, end, id) of every occurrence.
        let mut cands: Vec<(u32, usize, usize, u32)> = self
            .ac
            .find_overlapping_iter(text)
            .filter_map(|m| {
                let p = m.pattern().as_usize();
                Some((*self.prio.get(p)?, m.start(), m.end(), *self.ids.get(p)?))
            })
            .collect();
        if cands.is_empty() {
            out.push(Fragment::Text(text));
            return;
        }
        cands.sort_unstable();
        // Taken occurrences and stripped space: start → (end, the token or `None`).
        let mut taken: BTreeMap<usize, (usize, Option<u32>)> = BTreeMap::new();
        let bytes = text.as_bytes();
        // C's `isspace` in the "C" locale.
        let space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r');
        for (_, start, end, id) in cands {
            let before_ok = taken
                .range(..=start)
                .next_back()
                .is_none_or(|(_, &(e, _))| e <= start);
            let after_ok = taken.range(start..).next().is_none_or(|(&s, _)| s >= end);
            if !(before_ok && after_ok) {
                continue;
            }
            taken.insert(start, (end, Some(id)));
            let Some(st) = strip.get(&id) else {
                continue;
            };
            if st.left {
                let lo = taken.range(..start).next_back().map_or(0, |(_, &(e, _))| e);
                let mut s = start;
                while s > lo && bytes.get(s - 1).copied().is_some_and(space) {
                    s -= 1;
                }
                if s < start {
                    taken.insert(s, (start, None));
                }
            }
            if st.right {
                let hi = taken.range(end..).next().map_or(text.len(), |(&s, _)| s);
                let mut e = end;
                while e < hi && bytes.get(e).copied().is_some_and(space) {
                    e += 1;
                }
                if e > end {
                    taken.insert(end, (e, None));
                }
            }
        }
        let mut pos = 0;
        for (start, (end, id)) in taken {
            if start > pos {
                if let Some(t) = text.get(pos..start) {
                    out.push(Fragment::Text(t));
                }
            }
            if let Some(id) = id {
                out.push(Fragment::Token(id));
            }
            pos = end;
        }
        if pos < text.len() {
            if let Some(t) = text.get(pos..) {
                out.push(Fragment::Text(t));
            }
        }
    }
}

/// Whether a special token takes the white space on its left or right out of the text when it
/// is split off (llama.cpp's `LLAMA_TOKEN_ATTR_LSTRIP` / `RSTRIP`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Strip {
    /// The white space before it.
    pub left: bool,
    /// The white space after it.
    pub right: bool,
}

/// Token texts, types and the lookup map.
#[derive(Debug)]
pub(crate) struct Vocab {
    pub(crate) tokens: Vec<String>,
    pub(crate) types: Vec<TokenType>,
    /// Text → id; where a text appears twice the later id wins, as in llama.cpp. The keys are
    /// the vocabulary's own (fixed at load), so a fast non-keyed hash is safe here.
    pub(crate) map: FxHashMap<String, u32>,
    /// Control, unknown and user-defined tokens (parsed with special-token parsing).
    all_special: Option<SpecialMatcher>,
    /// User-defined tokens only (always parsed).
    user_defined: Option<SpecialMatcher>,
    /// Special tokens that strip white space beside them.
    pub(crate) strip: FxHashMap<u32, Strip>,
}

impl Vocab {
    pub(crate) fn new(tokens: Vec<String>, types: Vec<TokenType>) -> Result<Vocab, TokenizeError> {
        if tokens.is_empty() {
            return Err(TokenizeError::EmptyVocab);
        }
        if types.len() != tokens.len() {
            return Err(TokenizeError::LengthMismatch {
                what: "token types",
                len: types.len(),
                n_tokens: tokens.len(),
            });
        }
        if u32::try_from(tokens.len()).is_err() {
            return Err(TokenizeError::LengthMismatch {
                what: "tokens",
                len: tokens.len(),
                n_tokens: u32::MAX as usize,
            });
        }
        let mut map = FxHashMap::with_capacity_and_hasher(tokens.len(), Default::default());
        let mut all = Vec::new();
        let mut user = Vec::new();
        for (i, (t, ty)) in tokens.iter().zip(&types).enumerate() {
            let id = i as u32;
            map.insert(t.clone(), id);
            if t.is_empty() {
                continue;
            }
            match ty {
                TokenType::Control | TokenType::Unknown => all.push(id),
                TokenType::UserDefined => {
                    all.push(id);
                    user.push(id);
                }
                _ => {}
            }
        }
        let all_special = SpecialMatcher::new(&tokens, all);
        let user_defined = SpecialMatcher::new(&tokens, user);
        Ok(Vocab {
            tokens,
            types,
            map,
            all_special,
            user_defined,
            strip: FxHashMap::default(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.tokens.len()
    }

    pub(crate) fn token_type(&self, id: u32) -> Option<TokenType> {
        self.types.get(id as usize).copied()
    }

    pub(crate) fn id(&self, text: &str) -> Option<u32> {
        self.map.get(text).copied()
    }

    /// `text` with [`crate::TEXT_MARK`] written into every control or unknown token text it
    /// holds (after the token's first character) and every mark already in it doubled, so that
    /// special-token parsing finds none of them and [`unmark`] gives `text` back.
    pub(crate) fn mark_control(&self, text: &str) -> Cow<'_, str> {
        let mut cuts: Vec<usize> = Vec::new();
        if let Some(m) = &self.all_special {
            for hit in m.ac.find_overlapping_iter(text) {
                let id = m.ids.get(hit.pattern().as_usize()).copied();
                if id
                    .and_then(|i| self.token_type(i))
                    .is_some_and(TokenType::is_special)
                {
                    let first = text
                        .get(hit.start()..)
                        .and_then(|t| t.chars().next())
                        .map_or(1, char::len_utf8);
                    cuts.push(hit.start() + first);
                }
            }
        }
        if cuts.is_empty() && !text.contains(crate::TEXT_MARK) {
            return Cow::Owned(text.to_string());
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut out = String::with_capacity(text.len() + 3 * (cuts.len() + 1));
        let mut next = cuts.iter().peekable();
        for (i, c) in text.char_indices() {
            while next.peek().is_some_and(|&&k| k <= i) {
                if next.next().is_some_and(|&k| k == i) {
                    out.push(crate::TEXT_MARK);
                }
            }
            out.push(c);
            if c == crate::TEXT_MARK {
                out.push(crate::TEXT_MARK);
            }
        }
        Cow::Owned(out)
    }

    /// Splits text at the special tokens that apply.
    pub(crate) fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut out = Vec::new();
        if text.is_empty() {
            return out;
        }
        let m = if parse_special {
            &self.all_special
        } else {
            &self.user_defined
        };
        match m {
            Some(m) => m.partition(text, &self.strip, &mut out),
            None => out.push(Fragment::Text(text)),
        }
        out
    }
}

/// Undoes [`Vocab::mark_control`] on a fragment: a doubled mark is one mark, a single mark
/// goes.
pub(crate) fn unmark(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == crate::TEXT_MARK {
            if chars.peek() == Some(&crate::TEXT_MARK) {
                chars.next();
                out.push(c);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab(toks: &[(&str, TokenType)]) -> Vocab {
        Vocab::new(
            toks.iter().map(|t| t.0.to_string()).collect(),
            toks.iter().map(|t| t.1).collect(),
        )
        .unwrap()
    }

    #[test]
    fn longest_special_token_wins_even_when_a_shorter_one_starts_earlier() {
        let v = vocab(&[
            ("ab", TokenType::Control),
            ("bcd", TokenType::Control),
            ("x", TokenType::Normal),
        ]);
        let f = v.partition("abcd ab", true);
        assert_eq!(
            f,
            [
                Fragment::Text("a"),
                Fragment::Token(1),
                Fragment::Text(" "),
                Fragment::Token(0)
            ]
        );
        // Without special parsing, control tokens are plain text.
        assert_eq!(v.partition("abcd", false), [Fragment::Text("abcd")]);
    }

    #[test]
    fn user_defined_tokens_are_always_matched() {
        let v = vocab(&[
            ("\n", TokenType::UserDefined),
            ("\n\n", TokenType::UserDefined),
        ]);
        let f = v.partition("a\n\n\nb", false);
        assert_eq!(
            f,
            [
                Fragment::Text("a"),
                Fragment::Token(1),
                Fragment::Token(0),
                Fragment::Text("b")
            ]
        );
    }
}
