//! Pre-tokenizers of byte-level BPE vocabularies: the text is split into words before merges run.
//!
//! Which regexes a vocabulary uses is named by GGUF's `tokenizer.ggml.pre`; the regexes and the
//! way they are chained are those of llama.cpp (src/llama-vocab.cpp, `llm_tokenizer_bpe`, and
//! src/unicode.cpp, `unicode_regex_split`): every regex splits each piece left by the previous
//! one into matched and unmatched parts, and matching never crosses a piece's ends (lookahead
//! sees the end of the piece). The GPT-2 and Llama-3 style regexes need lookahead (`\s+(?!\S)`),
//! which the `regex` crate lacks, so each regex is a hand-written matcher over characters and
//! their Unicode general categories; they follow ECMAScript alternation (first alternative that
//! matches wins), as `std::regex` does.

use std::fmt;
use std::ops::Range;

use crate::unicode::{flags, Flags};

/// A pre-tokenizer, named after the `tokenizer.ggml.pre` values that select it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PreTokenizerKind {
    /// llama.cpp's `default`: punctuation runs, the GPT-2 regex, number runs, then 3-digit groups.
    Default,
    /// GPT-2 (`gpt-2`, `gpt2`, `mpt`, `olmo`, `jais`, `phi-2`).
    Gpt2,
    /// Llama 3 (`llama3`, `llama-bpe`, `llama-v3`, `falcon3`): digits in groups of 1 to 3,
    /// case-insensitive contractions; whole words found in the vocabulary skip the merges, and
    /// BOS is added unless the file says otherwise.
    Llama3,
    /// Llama 3's regex without its vocabulary rules (`dbrx`, `smaug-bpe`, `chatglm-bpe`): the
    /// merges always run and BOS follows the file.
    Llama3Regex,
    /// Mistral's Tekken (`tekken`): words split at lower-to-upper case changes (`[^a-z]*[^A-Z]+`
    /// over letters), single digits, `/` kept with line ends after symbols; whole words in the
    /// vocabulary skip the merges; BOS added unless the file says otherwise.
    Tekken,
    /// GPT-4o (`gpt-4o`, `llama4`; Phi-4): Tekken's case-aware words with contractions attached,
    /// digits in groups of 1 to 3.
    Gpt4o,
    /// Qwen 2 (`qwen2`, `stablelm2`, `deepseek-r1-qwen`, `megrez`): Llama-3 style, single digits.
    Qwen2,
    /// StarCoder (`starcoder`, `smollm`, `refact`, `command-r`, `codeshell`, `exaone`,
    /// `minerva-7b`): single digits, then the GPT-2 regex.
    StarCoder,
    /// Falcon (`falcon`).
    Falcon,
    /// DeepSeek LLM (`deepseek-llm`).
    DeepSeekLlm,
    /// DeepSeek Coder (`deepseek-coder`).
    DeepSeekCoder,
}

impl PreTokenizerKind {
    /// The pre-tokenizer selected by a `tokenizer.ggml.pre` value, or `None` for a value this
    /// crate does not know (callers report it; there is no silent fallback).
    pub fn from_gguf_pre(pre: &str) -> Option<PreTokenizerKind> {
        use PreTokenizerKind::*;
        Some(match pre {
            "default" => Default,
            "gpt-2" | "gpt2" | "phi-2" | "mpt" | "olmo" | "jais" | "jina-es" | "jina-de"
            | "jina-v1-en" | "jina-v2-es" | "jina-v2-de" | "jina-v2-code" | "gigachat" => Gpt2,
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" => Llama3,
            "dbrx" | "smaug-bpe" | "chatglm-bpe" => Llama3Regex,
            "tekken" => Tekken,
            "gpt-4o" | "llama4" => Gpt4o,
            "qwen2" | "stablelm2" | "deepseek-r1-qwen" | "megrez" => Qwen2,
            "starcoder" | "smollm" | "refact" | "command-r" | "codeshell" | "exaone"
            | "minerva-7b" => StarCoder,
            "falcon" => Falcon,
            "deepseek-llm" => DeepSeekLlm,
            "deepseek-coder" => DeepSeekCoder,
            _ => return None,
        })
    }

    /// Whether a word that is itself in the vocabulary bypasses the merges (llama.cpp's
    /// `ignore_merges`, set for the Llama-3 family).
    pub fn ignore_merges(self) -> bool {
        matches!(self, PreTokenizerKind::Llama3 | PreTokenizerKind::Tekken)
    }

    /// Whether BOS is added when the file does not say (`tokenizer.ggml.add_bos_token`), as
    /// llama.cpp decides it per pre-tokenizer.
    pub fn adds_bos_by_default(self) -> bool {
        matches!(self, PreTokenizerKind::Llama3 | PreTokenizerKind::Tekken)
    }

    fn stages(self) -> &'static [Stage] {
        use Stage::*;
        match self {
            PreTokenizerKind::Default => &[PunctSymbols, Gpt2, NumberRun, ThreeAsciiDigits],
            PreTokenizerKind::Gpt2 => &[Gpt2],
            PreTokenizerKind::Llama3 | PreTokenizerKind::Llama3Regex => &[Llama3 { max_digits: 3 }],
            PreTokenizerKind::Tekken => &[Cased {
                contractions: false,
                max_digits: 1,
            }],
            PreTokenizerKind::Gpt4o => &[Cased {
                contractions: true,
                max_digits: 3,
            }],
            PreTokenizerKind::Qwen2 => &[Llama3 { max_digits: 1 }],
            PreTokenizerKind::StarCoder => &[SingleNumber, Gpt2],
            PreTokenizerKind::Falcon => &[PunctSymbolsBacktick, Gpt2, ThreeAsciiDigits],
            PreTokenizerKind::DeepSeekLlm => &[
                CrOrLf,
                DeepSeekLetters,
                DeepSeekPunct,
                TrailingWhitespace,
                CjkHangul,
                NumberRun,
            ],
            PreTokenizerKind::DeepSeekCoder => {
                &[CrOrLf, WsLetters, WsPunct, CjkHangul, SingleNumber]
            }
        }
    }
}

impl fmt::Display for PreTokenizerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// One regex of a pre-tokenizer chain.
#[derive(Clone, Copy, Debug)]
enum Stage {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|
    /// \p{N}{1,max}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    Llama3 { max_digits: usize },
    /// Tekken / GPT-4o: `[^\r\n\p{L}\p{N}]?U*L+C?|[^\r\n\p{L}\p{N}]?U+L*C?|\p{N}{1,max}|
    /// ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+` where U is a letter other than
    /// `a-z`, L a letter other than `A-Z`, and C the contractions (GPT-4o only).
    Cased {
        contractions: bool,
        max_digits: usize,
    },
    /// `\p{N}`
    SingleNumber,
    /// `\p{N}+`
    NumberRun,
    /// `[0-9][0-9][0-9]`
    ThreeAsciiDigits,
    /// `[\p{P}\$\+<=>\^~\|]+`
    PunctSymbols,
    /// ``[\p{P}\$\+<=>\^~\|`]+``
    PunctSymbolsBacktick,
    /// `[\r\n]`
    CrOrLf,
    /// `\s?[A-Za-zµÀ-Ö…]+` (DeepSeek's cased-letter class)
    DeepSeekLetters,
    /// `\s?[!-/:-~！-／：-～‘-‟　-。]+`
    DeepSeekPunct,
    /// `\s+$`
    TrailingWhitespace,
    /// `[一-龥ࠀ-一가-퟿]+`
    CjkHangul,
    /// `\s?\p{L}+`
    WsLetters,
    /// `\s?\p{P}+`
    WsPunct,
}

/// DeepSeek LLM's letter class, as written in its `tokenizer.json` regex.
const DEEPSEEK_LETTERS: &str = "A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃";
const DEEPSEEK_PUNCT: &str = "!-/:-~！-／：-～‘-‟　-。";
const CJK_HANGUL: &str = "一-龥ࠀ-一가-퟿";

/// Whether `c` is in a character class written as `a-z` ranges and single characters.
fn in_class(class: &str, c: char) -> bool {
    let mut it = class.chars().peekable();
    while let Some(lo) = it.next() {
        if it.peek() == Some(&'-') {
            let mut look = it.clone();
            look.next();
            if let Some(hi) = look.next() {
                it = look;
                if lo <= c && c <= hi {
                    return true;
                }
                continue;
            }
        }
        if lo == c {
            return true;
        }
    }
    false
}

/// The text as characters with their flags and byte offsets.
pub(crate) struct Chars {
    pub(crate) cpts: Vec<char>,
    pub(crate) flags: Vec<Flags>,
    /// Byte offset of each character, plus the text's length at the end.
    pub(crate) offs: Vec<usize>,
}

impl Chars {
    pub(crate) fn new(text: &str) -> Chars {
        let n = text.len();
        let mut cpts = Vec::with_capacity(n);
        let mut fl = Vec::with_capacity(n);
        let mut offs = Vec::with_capacity(n + 1);
        for (i, c) in text.char_indices() {
            cpts.push(c);
            fl.push(flags(c));
            offs.push(i);
        }
        offs.push(n);
        Chars {
            cpts,
            flags: fl,
            offs,
        }
    }
}

const NONE: Flags = Flags(0);

/// A view of one piece `[start, end)`: reads outside the piece see nothing.
struct Seg<'a> {
    c: &'a Chars,
    start: usize,
    end: usize,
}

impl Seg<'_> {
    #[inline]
    fn cpt(&self, i: usize) -> Option<char> {
        if i >= self.start && i < self.end {
            self.c.cpts.get(i).copied()
        } else {
            None
        }
    }
    #[inline]
    fn fl(&self, i: usize) -> Flags {
        if i >= self.start && i < self.end {
            self.c.flags.get(i).copied().unwrap_or(NONE)
        } else {
            NONE
        }
    }
}

/// Splits `text` into the words the BPE merges run on, as byte ranges covering the text.
pub(crate) fn split(kind: PreTokenizerKind, text: &str) -> Vec<Range<usize>> {
    let chars = Chars::new(text);
    let n = chars.cpts.len();
    let mut pieces: Vec<Range<usize>> = Vec::new();
    if n > 0 {
        pieces.push(0..n);
    }
    for stage in kind.stages() {
        let mut out = Vec::with_capacity(pieces.len() * 2);
        for p in &pieces {
            let seg = Seg {
                c: &chars,
                start: p.start,
                end: p.end,
            };
            match *stage {
                Stage::Gpt2 => split_gpt2(&seg, &mut out),
                Stage::Llama3 { max_digits } => split_llama3(&seg, max_digits, &mut out),
                Stage::Cased {
                    contractions,
                    max_digits,
                } => split_cased(&seg, contractions, max_digits, &mut out),
                s => split_generic(&seg, s, &mut out),
            }
        }
        pieces = out;
    }
    pieces
        .into_iter()
        .filter_map(|r| Some(*chars.offs.get(r.start)?..*chars.offs.get(r.end)?))
        .collect()
}

/// Adds `[prev, end)` to `out` when it is not empty.
#[inline]
fn push(out: &mut Vec<Range<usize>>, prev: &mut usize, end: usize) {
    if end > *prev {
        out.push(*prev..end);
    }
    *prev = end;
}

fn split_gpt2(s: &Seg<'_>, out: &mut Vec<Range<usize>>) {
    let mut pos = s.start;
    let mut prev = s.start;
    while pos < s.end {
        let Some(cpt) = s.cpt(pos) else { break };
        let fl = s.fl(pos);
        // 's|'t|'re|'ve|'m|'ll|'d
        if cpt == '\'' && pos + 1 < s.end {
            let n1 = s.cpt(pos + 1);
            if matches!(n1, Some('s' | 't' | 'm' | 'd')) {
                pos += 2;
                push(out, &mut prev, pos);
                continue;
            }
            if pos + 2 < s.end {
                let n2 = s.cpt(pos + 2);
                if matches!(
                    (n1, n2),
                    (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
                ) {
                    pos += 3;
                    push(out, &mut prev, pos);
                    continue;
                }
            }
        }
        let fl2 = if cpt == ' ' { s.fl(pos + 1) } else { fl };
        let sp = usize::from(cpt == ' ');
        // ' ?\p{L}+'
        if fl2.is_letter() {
            pos += sp + 1;
            while s.fl(pos).is_letter() {
                pos += 1;
            }
            push(out, &mut prev, pos);
            continue;
        }
        // ' ?\p{N}+'
        if fl2.is_number() {
            pos += sp + 1;
            while s.fl(pos).is_number() {
                pos += 1;
            }
            push(out, &mut prev, pos);
            continue;
        }
        // ' ?[^\s\p{L}\p{N}]+'
        if fl2.is_other_symbol() {
            pos += sp + 1;
            while s.fl(pos).is_other_symbol() {
                pos += 1;
            }
            push(out, &mut prev, pos);
            continue;
        }
        let mut nws = 0;
        while s.fl(pos + nws).is_whitespace() {
            nws += 1;
        }
        // '\s+(?!\S)'
        if nws > 1 && s.cpt(pos + nws).is_some() {
            pos += nws - 1;
            push(out, &mut prev, pos);
            continue;
        }
        // '\s+' (the end of the piece, or a single whitespace)
        if nws > 0 {
            pos += nws;
            push(out, &mut prev, pos);
            continue;
        }
        pos += 1;
        push(out, &mut prev, pos);
    }
    push(out, &mut prev, s.end);
}

fn split_llama3(s: &Seg<'_>, max_digits: usize, out: &mut Vec<Range<usize>>) {
    let mut pos = s.start;
    let mut prev = s.start;
    while pos < s.end {
        let Some(cpt) = s.cpt(pos) else { break };
        let fl = s.fl(pos);
        // (?i:'s|'t|'re|'ve|'m|'ll|'d)
        if cpt == '\'' && pos + 1 < s.end {
            let n1 = s.cpt(pos + 1).map(|c| c.to_ascii_lowercase());
            if matches!(n1, Some('s' | 't' | 'm' | 'd')) {
                pos += 2;
                push(out, &mut prev, pos);
                continue;
            }
            if pos + 2 < s.end {
                let n2 = s.cpt(pos + 2).map(|c| c.to_ascii_lowercase());
                if matches!(
                    (n1, n2),
                    (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l'))
                ) {
                    pos += 3;
                    push(out, &mut prev, pos);
                    continue;
                }
            }
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(cpt == '\r' || cpt == '\n' || fl.is_number())
            && (fl.is_letter() || s.fl(pos + 1).is_letter())
        {
            pos += 1;
            while s.fl(pos).is_letter() {
                pos += 1;
            }
            push(out, &mut prev, pos);
            continue;
        }
        // \p{N}{1,max_digits}
        if fl.is_number() {
            let mut ini = pos;
            while s.fl(pos).is_number() {
                pos += 1;
                if pos - ini >= max_digits {
                    push(out, &mut prev, pos);
                    ini = pos;
                }
            }
            push(out, &mut prev, pos);
            continue;
        }
        pos = symbols_or_spaces(s, pos, false);
        push(out, &mut prev, pos);
    }
    push(out, &mut prev, s.end);
}

/// The end of the match at `pos` of the alternatives Llama 3's, Tekken's and GPT-4o's regexes
/// end with: `<space>?[^\s\p{L}\p{N}]+[\r\n]*` (`[\r\n/]*` with `slash`), `\s*[\r\n]+`,
/// `\s+(?!\S)`, `\s+`, else the one character.
fn symbols_or_spaces(s: &Seg<'_>, pos: usize, slash: bool) -> usize {
    let is_crlf = |c: Option<char>| matches!(c, Some('\r' | '\n'));
    let (Some(cpt), fl) = (s.cpt(pos), s.fl(pos)) else {
        return pos + 1;
    };
    let fl2 = if cpt == ' ' { s.fl(pos + 1) } else { fl };
    if fl2.0 & (Flags::WHITESPACE | Flags::LETTER | Flags::NUMBER) == 0 && fl.is_defined() {
        let mut p = pos + usize::from(cpt == ' ');
        while s.fl(p).is_other_symbol() {
            p += 1;
        }
        while is_crlf(s.cpt(p)) || (slash && s.cpt(p) == Some('/')) {
            p += 1;
        }
        return p;
    }
    let mut nws = 0;
    let mut last_crlf_end = 0;
    while s.fl(pos + nws).is_whitespace() {
        if is_crlf(s.cpt(pos + nws)) {
            last_crlf_end = pos + nws + 1;
        }
        nws += 1;
    }
    if last_crlf_end > 0 {
        last_crlf_end
    } else if nws > 1 && s.cpt(pos + nws).is_some() {
        pos + nws - 1
    } else if nws > 0 {
        pos + nws
    } else {
        pos + 1
    }
}

/// Tekken's and GPT-4o's regex (see [`Stage::Cased`]), matched as `std::regex` would: the
/// greedy `U*` gives back letters until an `L` follows.
fn split_cased(s: &Seg<'_>, contractions: bool, max_digits: usize, out: &mut Vec<Range<usize>>) {
    // U: a letter other than a-z; L: a letter other than A-Z.
    let upper = |i: usize| s.fl(i).is_letter() && !s.cpt(i).is_some_and(|c| c.is_ascii_lowercase());
    let lower = |i: usize| s.fl(i).is_letter() && !s.cpt(i).is_some_and(|c| c.is_ascii_uppercase());
    // (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])? at `p`: its length.
    let contraction = |p: usize| -> usize {
        if !contractions || s.cpt(p) != Some('\'') {
            return 0;
        }
        let n1 = s.cpt(p + 1).map(|c| c.to_ascii_lowercase());
        let n2 = s.cpt(p + 2).map(|c| c.to_ascii_lowercase());
        match (n1, n2) {
            (Some('r'), Some('e')) | (Some('v'), Some('e')) | (Some('l'), Some('l')) => 3,
            (Some('s' | 't' | 'm' | 'd'), _) => 2,
            _ => 0,
        }
    };
    // The word alternatives from `p` (after any prefix): their end, if one matches.
    let word = |p: usize| -> Option<usize> {
        let mut u_end = p;
        while upper(u_end) {
            u_end += 1;
        }
        // U*L+: the longest U* after which an L follows.
        for k in (p..=u_end).rev() {
            if lower(k) {
                let mut e = k;
                while lower(e) {
                    e += 1;
                }
                return Some(e + contraction(e));
            }
        }
        // U+L*
        if u_end > p {
            let mut e = u_end;
            while lower(e) {
                e += 1;
            }
            return Some(e + contraction(e));
        }
        None
    };
    let mut pos = s.start;
    let mut prev = s.start;
    while pos < s.end {
        let Some(cpt) = s.cpt(pos) else { break };
        let fl = s.fl(pos);
        // [^\r\n\p{L}\p{N}]? then a word (the prefix is tried first, then none).
        let prefix = !(cpt == '\r' || cpt == '\n' || fl.is_letter() || fl.is_number());
        let w = if prefix { word(pos + 1) } else { None }.or_else(|| word(pos));
        if let Some(e) = w {
            pos = e;
            push(out, &mut prev, pos);
            continue;
        }
        // \p{N}{1,max_digits}
        if fl.is_number() {
            let mut n = 0;
            while n < max_digits && s.fl(pos).is_number() {
                pos += 1;
                n += 1;
            }
            push(out, &mut prev, pos);
            continue;
        }
        pos = symbols_or_spaces(s, pos, true);
        push(out, &mut prev, pos);
    }
    push(out, &mut prev, s.end);
}

/// The character as `std::wregex` sees it in llama.cpp: non-ASCII whitespace becomes `\v`.
#[inline]
fn wide(c: char, f: Flags) -> char {
    if (c as u32) > 0x7F && f.is_whitespace() {
        '\u{0B}'
    } else {
        c
    }
}

/// Length of the match of a simple regex at `pos`, or 0.
fn match_generic(s: &Seg<'_>, stage: Stage, pos: usize) -> usize {
    let run = |from: usize, pred: &dyn Fn(char, Flags) -> bool| -> usize {
        let mut p = from;
        while let Some(c) = s.cpt(p) {
            if !pred(c, s.fl(p)) {
                break;
            }
            p += 1;
        }
        p - from
    };
    // `\s?[class]+`: the optional whitespace is taken when the class follows it.
    let ws_then = |pred: &dyn Fn(char, Flags) -> bool| -> usize {
        if s.fl(pos).is_whitespace() {
            let n = run(pos + 1, pred);
            if n > 0 {
                return n + 1;
            }
        }
        run(pos, pred)
    };
    match stage {
        Stage::SingleNumber => usize::from(s.fl(pos).is_number()),
        Stage::NumberRun => run(pos, &|_, f| f.is_number()),
        Stage::ThreeAsciiDigits => {
            let d = |i| s.cpt(i).is_some_and(|c: char| c.is_ascii_digit());
            if d(pos) && d(pos + 1) && d(pos + 2) {
                3
            } else {
                0
            }
        }
        Stage::PunctSymbols => run(pos, &|c, f| {
            f.is_punct() || matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|')
        }),
        Stage::PunctSymbolsBacktick => run(pos, &|c, f| {
            f.is_punct() || matches!(c, '$' | '+' | '<' | '=' | '>' | '^' | '~' | '|' | '`')
        }),
        Stage::CrOrLf => usize::from(matches!(s.cpt(pos), Some('\r' | '\n'))),
        Stage::DeepSeekLetters => ws_then(&|c, f| in_class(DEEPSEEK_LETTERS, wide(c, f))),
        Stage::DeepSeekPunct => ws_then(&|c, f| in_class(DEEPSEEK_PUNCT, wide(c, f))),
        Stage::TrailingWhitespace => {
            let n = run(pos, &|_, f| f.is_whitespace());
            if n > 0 && pos + n == s.end {
                n
            } else {
                0
            }
        }
        Stage::CjkHangul => run(pos, &|c, f| in_class(CJK_HANGUL, wide(c, f))),
        Stage::WsLetters => ws_then(&|_, f| f.is_letter()),
        Stage::WsPunct => ws_then(&|_, f| f.is_punct()),
        Stage::Gpt2 | Stage::Llama3 { .. } | Stage::Cased { .. } => 0,
    }
}

fn split_generic(s: &Seg<'_>, stage: Stage, out: &mut Vec<Range<usize>>) {
    let mut pos = s.start;
    let mut prev = s.start;
    while pos < s.end {
        let n = match_generic(s, stage, pos);
        if n > 0 {
            push(out, &mut prev, pos);
            pos += n;
            push(out, &mut prev, pos);
        } else {
            pos += 1;
        }
    }
    push(out, &mut prev, s.end);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(kind: PreTokenizerKind, text: &str) -> Vec<&str> {
        split(kind, text)
            .into_iter()
            .map(|r| &text[r])
            .collect::<Vec<_>>()
    }

    #[test]
    fn gpt2_whitespace_runs_leave_one_space_for_the_next_word() {
        let w = words(PreTokenizerKind::Gpt2, "Hello   world's  \n");
        assert_eq!(w, ["Hello", "  ", " world", "'s", "  \n"]);
    }

    #[test]
    fn starcoder_splits_every_digit() {
        let w = words(PreTokenizerKind::StarCoder, "in 2024!");
        assert_eq!(w, ["in", " ", "2", "0", "2", "4", "!"]);
    }

    #[test]
    fn llama3_groups_digits_by_three_and_keeps_newlines() {
        let w = words(PreTokenizerKind::Llama3, "x 1234567 I'LL\n\n  y");
        assert_eq!(
            w,
            ["x", " ", "123", "456", "7", " I", "'LL", "\n\n", " ", " y"]
        );
    }

    #[test]
    fn tekken_and_gpt4o_split_words_at_case_changes() {
        let w = words(
            PreTokenizerKind::Tekken,
            "getHTTPResponse HTTP iPhone 2024 a/b//\nÉté",
        );
        assert_eq!(
            w,
            [
                "get",
                "HTTPResponse",
                " HTTP",
                " i",
                "Phone",
                " ",
                "2",
                "0",
                "2",
                "4",
                " a",
                "/b",
                "//\n",
                "Été"
            ]
        );
        let w = words(PreTokenizerKind::Gpt4o, "He'LL say it's 12345");
        assert_eq!(w, ["He'LL", " say", " it's", " ", "123", "45"]);
    }

    #[test]
    fn default_isolates_punctuation_runs() {
        let w = words(PreTokenizerKind::Default, "a+b!! 12345");
        assert_eq!(w, ["a", "+", "b", "!!", " ", "123", "45"]);
    }

    #[test]
    fn class_ranges_parse() {
        assert!(in_class(DEEPSEEK_LETTERS, 'µ'));
        assert!(in_class(DEEPSEEK_LETTERS, 'q'));
        assert!(!in_class(DEEPSEEK_LETTERS, '1'));
        assert!(in_class(CJK_HANGUL, '中'));
    }

    #[test]
    fn pieces_cover_the_text() {
        let t = "mixed: a😀b中céd \t\n 1,000 'S";
        for k in [
            PreTokenizerKind::Default,
            PreTokenizerKind::Gpt2,
            PreTokenizerKind::Llama3,
            PreTokenizerKind::Qwen2,
            PreTokenizerKind::StarCoder,
            PreTokenizerKind::Falcon,
            PreTokenizerKind::DeepSeekLlm,
            PreTokenizerKind::DeepSeekCoder,
        ] {
            assert_eq!(words(k, t).concat(), t, "{k}");
        }
    }
}
