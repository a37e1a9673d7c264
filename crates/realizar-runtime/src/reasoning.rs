//! Reasoning in a reply: the `<think>…</think>` block that reasoning models (Qwen3, SmolLM3,
//! DeepSeek-R1 distills, QwQ) write before their answer, read apart from the answer as
//! llama.cpp's server does (`reasoning_content`).

/// The text that opens a reasoning block.
pub const THINK_OPEN: &str = "<think>";
/// The text that closes it.
pub const THINK_CLOSE: &str = "</think>";

/// Whether a rendered prompt leaves a reasoning block open (its template writes `<think>` for
/// the reply to continue).
pub fn opens_thinking(prompt: &str) -> bool {
    prompt.trim_end().ends_with(THINK_OPEN)
}

/// A reply read so far, split into its reasoning and the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split<'a> {
    /// The reasoning (without its tags and surrounding white space), if the reply has one.
    pub reasoning: Option<&'a str>,
    /// What follows it (without leading white space), or the whole reply.
    pub rest: &'a str,
}

/// The longest end of `text` that begins `tag` (the tag may be arriving).
pub(crate) fn partial_tail(text: &str, tag: &str) -> usize {
    (1..tag.len().min(text.len() + 1))
        .rev()
        .find(|&n| {
            text.is_char_boundary(text.len() - n) && tag.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

/// Splits `text`, a reply so far (`done`: whole; before that, a tag that may be arriving and
/// trailing white space are held back, so that what a split gives only grows as the reply
/// does). `open`: the prompt left a reasoning block open.
pub fn split(text: &str, open: bool, done: bool) -> Split<'_> {
    let inner = if open {
        text
    } else {
        let t = text.trim_start();
        match t.strip_prefix(THINK_OPEN) {
            Some(r) => r,
            None if !done && THINK_OPEN.starts_with(t) => {
                return Split {
                    reasoning: None,
                    rest: "",
                }
            }
            None => {
                return Split {
                    reasoning: None,
                    rest: text,
                }
            }
        }
    };
    match inner.find(THINK_CLOSE) {
        Some(i) => {
            let rest = inner[i + THINK_CLOSE.len()..].trim_start();
            Split {
                reasoning: Some(inner[..i].trim()),
                rest,
            }
        }
        None => {
            let keep = if done {
                0
            } else {
                partial_tail(inner, THINK_CLOSE)
            };
            let r = inner[..inner.len() - keep].trim_start();
            Split {
                reasoning: Some(r.trim_end()),
                rest: "",
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_is_read_apart_and_only_grows() {
        let reply = "<think>\nLet me see: 2+2.\n</think>\n\nIt is 4.";
        let whole = split(reply, false, true);
        assert_eq!(whole.reasoning, Some("Let me see: 2+2."));
        assert_eq!(whole.rest, "It is 4.");
        let (mut r, mut c) = (String::new(), String::new());
        for end in (0..=reply.len()).filter(|&e| reply.is_char_boundary(e)) {
            let s = split(&reply[..end], false, false);
            let sr = s.reasoning.unwrap_or("");
            assert!(sr.starts_with(&r), "{sr:?} after {r:?}");
            assert!(s.rest.starts_with(&c), "{:?} after {c:?}", s.rest);
            r = sr.to_string();
            c = s.rest.to_string();
        }
        assert_eq!((r.as_str(), c.as_str()), ("Let me see: 2+2.", "It is 4."));
    }

    #[test]
    fn an_open_prompt_block_and_replies_without_one() {
        assert!(opens_thinking("<|im_start|>assistant\n<think>\n"));
        let s = split("hmm</think>ok", true, true);
        assert_eq!((s.reasoning, s.rest), (Some("hmm"), "ok"));
        let s = split("Just an answer.", false, true);
        assert_eq!((s.reasoning, s.rest), (None, "Just an answer."));
        let s = split("<thi", false, false);
        assert_eq!((s.reasoning, s.rest), (None, ""));
        let s = split("<think>cut off", false, true);
        assert_eq!((s.reasoning, s.rest), (Some("cut off"), ""));
    }
}
