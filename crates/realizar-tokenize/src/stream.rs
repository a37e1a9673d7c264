//! Incremental decoding for streaming generation.

use crate::{TokenizeError, Tokenizer};

/// Turns ids into text one at a time, holding back an incomplete UTF-8 sequence until the
/// token that completes it arrives, so a character split across tokens is never emitted as
/// U+FFFD. The concatenation of everything it returns (with [`StreamDecoder::finish`]) equals
/// [`Tokenizer::decode`] of the same ids.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    skip_special: bool,
    pending: Vec<u8>,
    started: bool,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder with nothing decoded yet.
    pub fn new(tok: &'a Tokenizer, skip_special: bool) -> StreamDecoder<'a> {
        StreamDecoder {
            tok,
            skip_special,
            pending: Vec::new(),
            started: false,
        }
    }

    /// Adds one id; returns the text that is complete so far, if any.
    pub fn push(&mut self, id: u32) -> Result<Option<String>, TokenizeError> {
        let before = self.pending.len();
        self.tok
            .append_piece(id, !self.started, self.skip_special, &mut self.pending)?;
        if self.pending.len() > before {
            self.started = true;
        }
        Ok(self.take_complete())
    }

    fn take_complete(&mut self) -> Option<String> {
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = bad.get(n..).unwrap_or_default();
                        }
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
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
