//! Incremental decoding for streaming generation: [`StreamDecoder`] (UTF-8 hold-back) and
//! [`TextStream`] (that, plus stop strings), the one text path of every consumer.

use std::borrow::Borrow;

use crate::{TokenizeError, Tokenizer};

/// Turns ids into text one at a time, holding back an incomplete UTF-8 sequence until the
/// token that completes it arrives, so a character split across tokens is never emitted as
/// U+FFFD. The concatenation of everything it returns (with [`StreamDecoder::finish`]) equals
/// [`Tokenizer::decode`] of the same ids. `T` is how it holds the tokenizer: a reference, an
/// `Arc`, or the tokenizer itself.
#[derive(Debug)]
pub struct StreamDecoder<T: Borrow<Tokenizer>> {
    tok: T,
    skip_special: bool,
    /// Special tokens whose text is kept even when special tokens are skipped.
    kept: Vec<u32>,
    pending: Vec<u8>,
    started: bool,
}

impl<T: Borrow<Tokenizer>> StreamDecoder<T> {
    /// A decoder with nothing decoded yet.
    pub fn new(tok: T, skip_special: bool) -> StreamDecoder<T> {
        StreamDecoder {
            tok,
            skip_special,
            kept: Vec::new(),
            pending: Vec::new(),
            started: false,
        }
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        self.tok.borrow()
    }

    /// The tokenizer as the decoder holds it (e.g. the `Arc` it shares).
    pub fn tokenizer_handle(&self) -> &T {
        &self.tok
    }

    /// Adds one id; returns the text that is complete so far, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizeError> {
        let before = self.pending.len();
        let skip = self.skip_special && !self.kept.contains(&id);
        self.tok
            .borrow()
            .append_piece(id, !self.started, skip, &mut self.pending)?;
        if self.pending.len() > before {
            self.started = true;
        }
        Ok(self.take_complete())
    }

    fn take_complete(&mut self) -> Option<String> {
        let (out, used) = take_complete_utf8(&self.pending);
        self.pending.drain(..used);
        (!out.is_empty()).then_some(out)
    }

    /// Ends the stream: whatever is held back (an incomplete character) comes out as U+FFFD.
    pub fn finish(&mut self) -> Option<String> {
        if self.pending.is_empty() {
            return None;
        }
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        Some(s)
    }
}

/// The complete characters at the start of `bytes` (invalid sequences become U+FFFD) and how
/// many bytes they use; an incomplete character at the end is left.
fn take_complete_utf8(mut bytes: &[u8]) -> (String, usize) {
    let mut out = String::new();
    let mut used = 0usize;
    loop {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                out.push_str(s);
                return (out, used + bytes.len());
            }
            Err(e) => {
                let (good, bad) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).unwrap_or_default());
                used += good.len();
                match e.error_len() {
                    Some(n) => {
                        out.push('\u{FFFD}');
                        used += n;
                        bytes = bad.get(n..).unwrap_or_default();
                    }
                    None => return (out, used),
                }
            }
        }
    }
}

/// What [`TextStream::push`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TextStep {
    /// Text that is final (possibly empty: while it could begin a stop string, or ends inside
    /// a character).
    Text(String),
    /// A stop string appeared: the final text before it. Nothing follows.
    Stop(String),
}

/// The text of a generation as it streams: ids in, final text out. Characters split across
/// tokens are held back until complete ([`StreamDecoder`]), and so is any text that could be
/// the beginning of a stop string; the text ends before the first occurrence of a stop string
/// (which is not returned). Each [`TextStream::push`] costs O(the new text + the longest stop
/// string), whatever the length of the generation.
#[derive(Debug)]
pub struct TextStream<T: Borrow<Tokenizer>> {
    dec: StreamDecoder<T>,
    stops: Vec<String>,
    /// Final text not returned yet: it could begin a stop string.
    held: String,
    stopped: bool,
}

impl<T: Borrow<Tokenizer>> TextStream<T> {
    /// A stream that leaves special tokens out of the text and stops at any of `stops` (empty
    /// strings are ignored).
    pub fn new(tok: T, stops: Vec<String>) -> TextStream<T> {
        TextStream {
            dec: StreamDecoder::new(tok, true),
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// The stream with the text of these special tokens kept (a chat syntax's markers, such
    /// as Mistral's `[TOOL_CALLS]`, which the reply is read by).
    pub fn keeping(mut self, ids: Vec<u32>) -> TextStream<T> {
        self.dec.kept = ids;
        self
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        self.dec.tokenizer()
    }

    /// The tokenizer as the stream holds it (e.g. the `Arc` it shares).
    pub fn tokenizer_handle(&self) -> &T {
        self.dec.tokenizer_handle()
    }

    /// Whether a stop string has been seen (every later push returns empty text).
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Adds the next generated id.
    pub fn push(&mut self, id: u32) -> Result<TextStep, TokenizeError> {
        if self.stopped {
            return Ok(TextStep::Text(String::new()));
        }
        if let Some(fresh) = self.dec.push(id)? {
            self.held.push_str(&fresh);
        }
        // A stop string cannot begin in text already returned (that text was never a prefix
        // of one), so only the held text needs a search.
        if let Some(at) = find_stop(&self.held, &self.stops) {
            self.held.truncate(at);
            self.stopped = true;
            return Ok(TextStep::Stop(std::mem::take(&mut self.held)));
        }
        let keep = self.held.len() - stop_prefix_len(&self.held, &self.stops);
        Ok(TextStep::Text(self.held.drain(..keep).collect()))
    }

    /// Ends the stream: the text still held back (an incomplete character as U+FFFD), cut
    /// before a stop string if it completes one.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        if let Some(rest) = self.dec.finish() {
            self.held.push_str(&rest);
        }
        if let Some(at) = find_stop(&self.held, &self.stops) {
            self.held.truncate(at);
        }
        self.stopped = true;
        std::mem::take(&mut self.held)
    }
}

/// The byte index of the earliest occurrence of any stop string in `text`.
fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter_map(|s| text.find(s.as_str())).min()
}

/// The length of the longest suffix of `text` that is a proper prefix of a stop string (it
/// must be held back: the next token may complete the stop string).
fn stop_prefix_len(text: &str, stops: &[String]) -> usize {
    let mut best = 0;
    for stop in stops {
        // Only suffixes shorter than the stop string can be proper prefixes of it.
        let from = text.len().saturating_sub(stop.len().saturating_sub(1));
        let from = (from..text.len()).find(|&i| text.is_char_boundary(i));
        let Some(from) = from else { continue };
        for (i, _) in text[from..].char_indices() {
            let tail = &text[from + i..];
            if tail.len() <= best {
                break;
            }
            if stop.starts_with(tail) {
                best = tail.len();
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_taken_up_to_an_incomplete_character() {
        let euro = "€".as_bytes();
        assert_eq!(take_complete_utf8(&euro[..2]), (String::new(), 0));
        assert_eq!(take_complete_utf8(b"ab\xe2\x82"), ("ab".into(), 2));
        assert_eq!(take_complete_utf8(euro), ("€".into(), 3));
        assert_eq!(take_complete_utf8(b"a\xffb"), ("a\u{FFFD}b".into(), 3));
    }

    #[test]
    fn stop_prefixes_are_held_back() {
        let stops = vec!["END".to_string(), "\n\n".to_string()];
        assert_eq!(stop_prefix_len("hello E", &stops), 1);
        assert_eq!(stop_prefix_len("hello EN", &stops), 2);
        assert_eq!(stop_prefix_len("hello\n", &stops), 1);
        assert_eq!(stop_prefix_len("hello", &stops), 0);
        assert_eq!(stop_prefix_len("é", &["éa".to_string()]), 2);
        assert_eq!(stop_prefix_len("xé", &["éa".to_string()]), 2);
        assert_eq!(find_stop("a\n\nEND", &stops), Some(1));
        assert_eq!(find_stop("abc", &stops), None);
    }
}
