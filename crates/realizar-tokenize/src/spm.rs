//! SentencePiece BPE as llama.cpp runs it (`llm_tokenizer_spm_session` in src/llama-vocab.cpp):
//! spaces become `▁`, the text is split into characters, adjacent symbols whose concatenation
//! is a token are merged highest score first (ties: leftmost) with a priority queue, and a
//! symbol that is not a token falls back to its bytes as `<0xNN>` tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vocab::Vocab;
use crate::TokenizeError;

#[derive(Debug)]
pub(crate) struct SpmModel {
    pub(crate) scores: Vec<f32>,
    pub(crate) add_space_prefix: bool,
    /// Token of each byte: `<0xNN>`, else the byte as a one-character token.
    byte_tokens: [Option<u32>; 256],
}

struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Bigram {
    /// Highest score first; on equal scores the leftmost pair.
    fn cmp(&self, o: &Self) -> Ordering {
        self.score
            .total_cmp(&o.score)
            .then_with(|| o.left.cmp(&self.left))
    }
}

struct Sym {
    start: usize,
    n: usize,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

impl SpmModel {
    pub(crate) fn new(vocab: &Vocab, scores: Vec<f32>, add_space_prefix: bool) -> SpmModel {
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            *slot = vocab.id(&format!("<0x{b:02X}>")).or_else(|| {
                let c = char::from_u32(b as u32)?;
                if b < 0x80 {
                    vocab.id(c.encode_utf8(&mut [0u8; 4]))
                } else {
                    None
                }
            });
        }
        SpmModel {
            scores,
            add_space_prefix,
            byte_tokens,
        }
    }

    /// Encodes one fragment of text (already prefixed with a space where that applies).
    pub(crate) fn encode(
        &self,
        vocab: &Vocab,
        text: &str,
        out: &mut Vec<u32>,
    ) -> Result<(), TokenizeError> {
        let text = text.replace(' ', "\u{2581}");
        let mut syms: Vec<Sym> = Vec::with_capacity(text.len());
        for (i, c) in text.char_indices() {
            let idx = syms.len();
            syms.push(Sym {
                start: i,
                n: c.len_utf8(),
                prev: if idx == 0 { NIL } else { idx - 1 },
                next: if i + c.len_utf8() == text.len() {
                    NIL
                } else {
                    idx + 1
                },
            });
        }
        let mut heap = BinaryHeap::new();
        let try_add = |syms: &Vec<Sym>, heap: &mut BinaryHeap<Bigram>, l: usize, r: usize| {
            let (Some(ls), Some(rs)) = (syms.get(l), syms.get(r)) else {
                return;
            };
            let size = ls.n + rs.n;
            let Some(piece) = text.get(ls.start..ls.start + size) else {
                return;
            };
            if let Some(id) = vocab.id(piece) {
                let score = self.scores.get(id as usize).copied().unwrap_or(f32::MIN);
                heap.push(Bigram {
                    score,
                    left: l,
                    right: r,
                    size,
                });
            }
        };
        for i in 1..syms.len() {
            try_add(&syms, &mut heap, i - 1, i);
        }
        while let Some(bg) = heap.pop() {
            let (Some(ls), Some(rs)) = (syms.get(bg.left), syms.get(bg.right)) else {
                continue;
            };
            if ls.n == 0 || rs.n == 0 || ls.n + rs.n != bg.size {
                continue;
            }
            let (rn, rnext) = (rs.n, rs.next);
            if let Some(rs) = syms.get_mut(bg.right) {
                rs.n = 0;
            }
            let lprev = match syms.get_mut(bg.left) {
                Some(ls) => {
                    ls.n += rn;
                    ls.next = rnext;
                    ls.prev
                }
                None => continue,
            };
            if let Some(ns) = syms.get_mut(rnext) {
                ns.prev = bg.left;
            }
            if lprev != NIL {
                try_add(&syms, &mut heap, lprev, bg.left);
            }
            if rnext != NIL {
                try_add(&syms, &mut heap, bg.left, rnext);
            }
        }
        let mut i = if syms.is_empty() { NIL } else { 0 };
        while let Some(s) = syms.get(i) {
            let piece = text.get(s.start..s.start + s.n).unwrap_or_default();
            match vocab.id(piece) {
                Some(id) => out.push(id),
                None => {
                    for &b in piece.as_bytes() {
                        let id = self.byte_tokens[b as usize].ok_or_else(|| {
                            TokenizeError::MissingToken {
                                token: format!("<0x{b:02X}>"),
                            }
                        })?;
                        out.push(id);
                    }
                }
            }
            i = s.next;
        }
        Ok(())
    }
}

/// The byte of a `<0xNN>` token.
pub(crate) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}
