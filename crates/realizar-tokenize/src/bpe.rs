//! Byte-level BPE (the GPT-2 family), following llama.cpp's `llm_tokenizer_bpe_session`
//! (src/llama-vocab.cpp): pre-tokenize, map each byte to its GPT-2 "byte-level" character,
//! then repeatedly merge the adjacent pair with the lowest merge rank (ties: leftmost) using a
//! priority queue, and look the final symbols up in the vocabulary.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use rustc_hash::FxHashMap;

use crate::pretok::{split, PreTokenizerKind};
use crate::vocab::Vocab;
use crate::TokenizeError;

/// The GPT-2 byte → character table: printable Latin-1 bytes map to themselves, the others to
/// U+0100 upwards in byte order (OpenAI's `bytes_to_unicode`).
pub fn byte_to_char_table() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut n = 0u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        let cp = if printable {
            b as u32
        } else {
            n += 1;
            255 + n
        };
        *slot = char::from_u32(cp).unwrap_or('\0');
    }
    table
}

/// Decodes a byte-level token text back to bytes; characters outside the table are kept as
/// their UTF-8 bytes.
pub(crate) fn decode_byte_level(text: &str, rev: &HashMap<char, u8>, out: &mut Vec<u8>) {
    for c in text.chars() {
        match rev.get(&c) {
            Some(&b) => out.push(b),
            None => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// No symbol: a byte whose character is missing from the vocabulary.
const NO_SYM: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) struct BpeModel {
    pre: PreTokenizerKind,
    n_vocab: u32,
    /// (left symbol, right symbol) → (rank, merged symbol). Symbols below `n_vocab` are token
    /// ids; merge results that are not tokens get ids from `n_vocab` up.
    merges: FxHashMap<(u32, u32), (u32, u32)>,
    /// The symbol of each byte's GPT-2 character.
    byte_sym: [u32; 256],
    /// Token of each byte's character when it is a single ASCII character (llama.cpp's
    /// per-byte fallback for a symbol that is not a token).
    byte_fallback: [Option<u32>; 256],
    byte_char: [char; 256],
}

struct Sym {
    id: u32,
    start: u32,
    len: u32,
    prev: u32,
    next: u32,
}

const NIL: u32 = u32::MAX;

impl BpeModel {
    pub(crate) fn new(
        vocab: &Vocab,
        merges: &[(String, String)],
        pre: PreTokenizerKind,
    ) -> Result<BpeModel, TokenizeError> {
        let n_vocab = vocab.len() as u32;
        let mut extra: HashMap<String, u32> = HashMap::new();
        let mut table = FxHashMap::with_capacity_and_hasher(merges.len(), Default::default());
        let mut joined = String::new();
        for (rank, (a, b)) in merges.iter().enumerate() {
            let (Some(l), Some(r)) = (vocab.id(a), vocab.id(b)) else {
                return Err(TokenizeError::MalformedMerge {
                    index: rank,
                    rule: format!("{a} {b}"),
                });
            };
            joined.clear();
            joined.push_str(a);
            joined.push_str(b);
            let res = match vocab.id(&joined) {
                Some(id) => id,
                None => {
                    let next = n_vocab.saturating_add(extra.len() as u32);
                    *extra.entry(joined.clone()).or_insert(next)
                }
            };
            let rank = u32::try_from(rank).unwrap_or(u32::MAX);
            // The first rule for a pair wins, as with llama.cpp's `emplace`.
            table.entry((l, r)).or_insert((rank, res));
        }
        let byte_char = byte_to_char_table();
        let mut byte_sym = [NO_SYM; 256];
        let mut byte_fallback = [None; 256];
        let mut buf = [0u8; 4];
        for (b, &c) in byte_char.iter().enumerate() {
            if let Some(id) = vocab.id(c.encode_utf8(&mut buf)) {
                byte_sym[b] = id;
                if c.is_ascii() {
                    byte_fallback[b] = Some(id);
                }
            }
        }
        Ok(BpeModel {
            pre,
            n_vocab,
            merges: table,
            byte_sym,
            byte_fallback,
            byte_char,
        })
    }

    /// Encodes a text without special tokens.
    pub(crate) fn encode(&self, vocab: &Vocab, text: &str, out: &mut Vec<u32>) {
        let mut cache: HashMap<&str, (usize, usize)> = HashMap::new();
        let mut syms = Vec::new();
        let mut heap = BinaryHeap::new();
        let mut enc = String::new();
        for r in split(self.pre, text) {
            let Some(word) = text.get(r) else { continue };
            if let Some(&(s, e)) = cache.get(word) {
                out.extend_from_within(s..e);
                continue;
            }
            let start = out.len();
            if self.pre.ignore_merges() {
                enc.clear();
                enc.extend(word.bytes().map(|b| self.byte_char[b as usize]));
                if let Some(id) = vocab.id(&enc) {
                    out.push(id);
                    cache.insert(word, (start, out.len()));
                    continue;
                }
            }
            self.merge_word(word.as_bytes(), &mut syms, &mut heap, out);
            if word.len() <= 64 {
                cache.insert(word, (start, out.len()));
            }
        }
    }

    fn merge_word(
        &self,
        word: &[u8],
        syms: &mut Vec<Sym>,
        heap: &mut BinaryHeap<(Reverse<u32>, Reverse<u32>, u32, u32)>,
        out: &mut Vec<u32>,
    ) {
        syms.clear();
        heap.clear();
        let n = word.len() as u32;
        for (i, &b) in word.iter().enumerate() {
            let i = i as u32;
            syms.push(Sym {
                id: self.byte_sym[b as usize],
                start: i,
                len: 1,
                prev: if i == 0 { NIL } else { i - 1 },
                next: if i + 1 == n { NIL } else { i + 1 },
            });
        }
        let pair = |syms: &Vec<Sym>, l: u32| -> Option<(u32, u32)> {
            let ls = syms.get(l as usize)?;
            let rs = syms.get(ls.next as usize)?;
            self.merges.get(&(ls.id, rs.id)).copied()
        };
        for l in 0..n.saturating_sub(1) {
            if let Some((rank, res)) = pair(syms, l) {
                heap.push((Reverse(rank), Reverse(l), l + 1, res));
            }
        }
        while let Some((_, Reverse(l), r, res)) = heap.pop() {
            // Skip a pair that went stale: either side merged into something else since.
            let (Some(ls), Some(rs)) = (syms.get(l as usize), syms.get(r as usize)) else {
                continue;
            };
            if ls.len == 0 || rs.len == 0 || ls.next != r {
                continue;
            }
            match self.merges.get(&(ls.id, rs.id)) {
                Some(&(_, want)) if want == res => {}
                _ => continue,
            }
            let (rlen, rnext) = (rs.len, rs.next);
            if let Some(rs) = syms.get_mut(r as usize) {
                rs.len = 0;
            }
            if let Some(ls) = syms.get_mut(l as usize) {
                ls.len += rlen;
                ls.id = res;
                ls.next = rnext;
            }
            if let Some(ns) = syms.get_mut(rnext as usize) {
                ns.prev = l;
            }
            let lprev = syms.get(l as usize).map_or(NIL, |s| s.prev);
            if lprev != NIL {
                if let Some((rank, res)) = pair(syms, lprev) {
                    heap.push((Reverse(rank), Reverse(lprev), l, res));
                }
            }
            if rnext != NIL {
                if let Some((rank, res)) = pair(syms, l) {
                    heap.push((Reverse(rank), Reverse(l), rnext, res));
                }
            }
        }
        let mut i = if syms.is_empty() { NIL } else { 0 };
        while let Some(s) = syms.get(i as usize) {
            if s.id < self.n_vocab {
                out.push(s.id);
            } else {
                let bytes = word
                    .get(s.start as usize..(s.start + s.len) as usize)
                    .unwrap_or_default();
                out.extend(bytes.iter().filter_map(|&b| self.byte_fallback[b as usize]));
            }
            i = s.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection_with_gpt2_space() {
        let t = byte_to_char_table();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        let mut seen: Vec<char> = t.to_vec();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 256);
    }
}
