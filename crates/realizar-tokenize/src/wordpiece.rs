//! WordPiece with BERT normalization and pre-tokenization, as the Hugging Face `tokenizers`
//! library runs it for BERT-style `tokenizer.json` files (normalizers/bert.rs,
//! pre_tokenizers/bert.rs, models/wordpiece/mod.rs): added tokens are found in the raw text
//! first, the rest is cleaned, CJK ideographs are spaced out, accents stripped (NFD, then
//! non-spacing marks dropped) and text lowercased; words split at whitespace and punctuation;
//! each word is matched greedily longest-prefix-first with `##` continuations.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use unicode_normalization::UnicodeNormalization;

use crate::unicode::{is_nonspacing_mark, is_other_category, is_punctuation};

/// The BERT normalizer's switches (`tokenizer.json` `normalizer` of type `BertNormalizer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BertNormalizerConfig {
    /// Drop control characters, map whitespace to spaces.
    pub clean_text: bool,
    /// Put spaces around CJK ideographs.
    pub handle_chinese_chars: bool,
    /// Strip accents; `None` means "as `lowercase`", as in Hugging Face `tokenizers`.
    pub strip_accents: Option<bool>,
    /// Lowercase the text.
    pub lowercase: bool,
}

impl Default for BertNormalizerConfig {
    fn default() -> Self {
        BertNormalizerConfig {
            clean_text: true,
            handle_chinese_chars: true,
            strip_accents: None,
            lowercase: true,
        }
    }
}

/// A token added to the vocabulary outside the model (`tokenizer.json` `added_tokens`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddedToken {
    /// Its id.
    pub id: u32,
    /// Its text, matched case-sensitively in the raw text.
    pub content: String,
    /// Whether it is a special token (skipped when decoding with `skip_special`).
    pub special: bool,
}

/// Everything a WordPiece tokenizer needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WordPieceConfig {
    /// Token texts by id.
    pub vocab: Vec<String>,
    /// The unknown token's text (`[UNK]`).
    pub unk_token: String,
    /// The prefix of word continuations (`##`).
    pub continuing_subword_prefix: String,
    /// Longer words (in characters) become the unknown token (100 for BERT).
    pub max_input_chars_per_word: usize,
    /// The normalizer.
    pub normalizer: BertNormalizerConfig,
    /// Added tokens.
    pub added_tokens: Vec<AddedToken>,
    /// The post-processor's first token (`[CLS]`), added with `add_special`.
    pub cls: Option<u32>,
    /// The post-processor's last token (`[SEP]`), added with `add_special`.
    pub sep: Option<u32>,
    /// Truncate encodings to this many ids, special tokens included.
    pub max_length: Option<usize>,
}

#[derive(Debug)]
pub(crate) struct WordPieceModel {
    pub(crate) unk: u32,
    pub(crate) prefix: String,
    max_chars: usize,
    norm: BertNormalizerConfig,
    added: Option<(AhoCorasick, Vec<u32>)>,
    pub(crate) cls: Option<u32>,
    pub(crate) sep: Option<u32>,
    pub(crate) max_length: Option<usize>,
}

/// CJK ideograph blocks, as Hugging Face's BertNormalizer lists them.
fn is_chinese_char(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

fn is_bert_whitespace(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || c.is_whitespace()
}

fn is_bert_control(c: char) -> bool {
    !matches!(c, '\t' | '\n' | '\r') && is_other_category(c)
}

impl WordPieceModel {
    pub(crate) fn new(cfg: &WordPieceConfig, unk: u32) -> WordPieceModel {
        let added = if cfg.added_tokens.is_empty() {
            None
        } else {
            let pats: Vec<&str> = cfg
                .added_tokens
                .iter()
                .map(|t| t.content.as_str())
                .collect();
            AhoCorasickBuilder::new()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&pats)
                .ok()
                .map(|ac| (ac, cfg.added_tokens.iter().map(|t| t.id).collect()))
        };
        WordPieceModel {
            unk,
            prefix: cfg.continuing_subword_prefix.clone(),
            max_chars: cfg.max_input_chars_per_word,
            norm: cfg.normalizer.clone(),
            added,
            cls: cfg.cls,
            sep: cfg.sep,
            max_length: cfg.max_length,
        }
    }

    /// Normalizes a text fragment as the BertNormalizer does.
    fn normalize(&self, text: &str) -> String {
        let n = &self.norm;
        let mut s = String::with_capacity(text.len());
        for c in text.chars() {
            if n.clean_text {
                if c == '\0' || c == '\u{FFFD}' || is_bert_control(c) {
                    continue;
                }
                if is_bert_whitespace(c) {
                    s.push(' ');
                    continue;
                }
            }
            if n.handle_chinese_chars && is_chinese_char(c) {
                s.push(' ');
                s.push(c);
                s.push(' ');
            } else {
                s.push(c);
            }
        }
        if n.strip_accents.unwrap_or(n.lowercase) {
            s = s.nfd().filter(|&c| !is_nonspacing_mark(c)).collect();
        }
        if n.lowercase {
            s = s.chars().flat_map(char::to_lowercase).collect();
        }
        s
    }

    /// Encodes a text (no `[CLS]`/`[SEP]`) into `out`.
    pub(crate) fn encode(&self, vocab: &crate::vocab::Vocab, text: &str, out: &mut Vec<u32>) {
        let mut pos = 0;
        if let Some((ac, ids)) = &self.added {
            for m in ac.find_iter(text) {
                if let Some(t) = text.get(pos..m.start()) {
                    self.encode_plain(vocab, t, out);
                }
                if let Some(&id) = ids.get(m.pattern().as_usize()) {
                    out.push(id);
                }
                pos = m.end();
            }
        }
        if let Some(t) = text.get(pos..) {
            self.encode_plain(vocab, t, out);
        }
    }

    fn encode_plain(&self, vocab: &crate::vocab::Vocab, text: &str, out: &mut Vec<u32>) {
        let norm = self.normalize(text);
        let mut word_start = None;
        for (i, c) in norm.char_indices() {
            let ws = c.is_whitespace();
            let punct = c.is_ascii_punctuation() || is_punctuation(c);
            if ws || punct {
                if let Some(s) = word_start.take() {
                    self.encode_word(vocab, norm.get(s..i).unwrap_or_default(), out);
                }
                if punct {
                    self.encode_word(
                        vocab,
                        norm.get(i..i + c.len_utf8()).unwrap_or_default(),
                        out,
                    );
                }
            } else if word_start.is_none() {
                word_start = Some(i);
            }
        }
        if let Some(s) = word_start {
            self.encode_word(vocab, norm.get(s..).unwrap_or_default(), out);
        }
    }

    fn encode_word(&self, vocab: &crate::vocab::Vocab, word: &str, out: &mut Vec<u32>) {
        if word.is_empty() {
            return;
        }
        if word.chars().count() > self.max_chars {
            out.push(self.unk);
            return;
        }
        let first = out.len();
        let mut start = 0;
        let mut buf = String::new();
        while start < word.len() {
            let mut end = word.len();
            let mut found = None;
            while end > start {
                if word.is_char_boundary(end) {
                    let sub = word.get(start..end).unwrap_or_default();
                    let id = if start > 0 {
                        buf.clear();
                        buf.push_str(&self.prefix);
                        buf.push_str(sub);
                        vocab.id(&buf)
                    } else {
                        vocab.id(sub)
                    };
                    if id.is_some() {
                        found = id.map(|id| (id, end));
                        break;
                    }
                }
                end -= 1;
            }
            match found {
                Some((id, end)) => {
                    out.push(id);
                    start = end;
                }
                None => {
                    out.truncate(first);
                    out.push(self.unk);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizer_strips_accents_drops_controls_and_spaces_cjk() {
        let cfg = WordPieceConfig {
            vocab: vec!["[UNK]".into()],
            unk_token: "[UNK]".into(),
            continuing_subword_prefix: "##".into(),
            max_input_chars_per_word: 100,
            normalizer: BertNormalizerConfig::default(),
            added_tokens: vec![],
            cls: None,
            sep: None,
            max_length: None,
        };
        let m = WordPieceModel::new(&cfg, 0);
        assert_eq!(
            m.normalize("ÅNGSTRÖM\u{200B}x\u{7}y\u{A0}東京"),
            "angstromxy  東  京 "
        );
        // Regression: unassigned code points stay (tokenizers gives [UNK] for "x\u{378}y"),
        // private-use and format characters go.
        assert_eq!(m.normalize("x\u{378}y\u{E000}\u{600}z"), "x\u{378}yz");
    }
}
