//! Unicode character classes used by the pre-tokenizers and normalizers.
//!
//! The classes follow the Unicode general categories (via `unicode-general-category`), which is
//! what llama.cpp's `unicode_cpt_flags` (src/unicode.cpp, generated from UnicodeData.txt) and the
//! Hugging Face `tokenizers` normalizers use. Whitespace is the Unicode `White_Space` property,
//! the same set as llama.cpp's `unicode_set_whitespace` and Rust's [`char::is_whitespace`].

use unicode_general_category::{get_general_category, GeneralCategory as G};

/// The coarse class of a character, as llama.cpp's pre-tokenizer regexes see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Flags(pub(crate) u8);

impl Flags {
    pub(crate) const LETTER: u8 = 1;
    pub(crate) const NUMBER: u8 = 2;
    pub(crate) const WHITESPACE: u8 = 4;
    pub(crate) const PUNCT: u8 = 8;
    /// Any assigned code point (llama.cpp's flags are all zero for unassigned ones).
    pub(crate) const DEFINED: u8 = 16;
    pub(crate) const MARK: u8 = 32;

    #[inline]
    pub(crate) fn is_letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }
    #[inline]
    pub(crate) fn is_number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }
    #[inline]
    pub(crate) fn is_whitespace(self) -> bool {
        self.0 & Self::WHITESPACE != 0
    }
    #[inline]
    pub(crate) fn is_punct(self) -> bool {
        self.0 & Self::PUNCT != 0
    }
    #[inline]
    pub(crate) fn is_defined(self) -> bool {
        self.0 & Self::DEFINED != 0
    }
    /// Not whitespace, letter or number, and assigned: `[^\s\p{L}\p{N}]` in llama.cpp's matchers.
    #[inline]
    pub(crate) fn is_other_symbol(self) -> bool {
        self.0 & (Self::LETTER | Self::NUMBER | Self::WHITESPACE) == 0 && self.is_defined()
    }
}

/// The flags of one character (a table lookup for ASCII).
#[inline]
pub(crate) fn flags(c: char) -> Flags {
    let cp = c as u32;
    if cp < 128 {
        return Flags(ASCII_FLAGS[cp as usize]);
    }
    Flags(flags_slow(c))
}

const fn ascii_flags() -> [u8; 128] {
    let mut t = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        let mut f = Flags::DEFINED;
        if c.is_ascii_alphabetic() {
            f |= Flags::LETTER;
        } else if c.is_ascii_digit() {
            f |= Flags::NUMBER;
        } else if matches!(c, b'\t' | b'\n' | 0x0B | 0x0C | b'\r' | b' ') {
            f |= Flags::WHITESPACE;
        } else if matches!(
            c,
            b'!' | b'"'
                | b'#'
                | b'%'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b','
                | b'-'
                | b'.'
                | b'/'
                | b':'
                | b';'
                | b'?'
                | b'@'
                | b'['
                | b'\\'
                | b']'
                | b'_'
                | b'{'
                | b'}'
        ) {
            f |= Flags::PUNCT;
        }
        t[i] = f;
        i += 1;
    }
    t
}

static ASCII_FLAGS: [u8; 128] = ascii_flags();

fn flags_slow(c: char) -> u8 {
    let mut f = match get_general_category(c) {
        G::UppercaseLetter
        | G::LowercaseLetter
        | G::TitlecaseLetter
        | G::ModifierLetter
        | G::OtherLetter => Flags::LETTER | Flags::DEFINED,
        G::DecimalNumber | G::LetterNumber | G::OtherNumber => Flags::NUMBER | Flags::DEFINED,
        G::ConnectorPunctuation
        | G::DashPunctuation
        | G::OpenPunctuation
        | G::ClosePunctuation
        | G::InitialPunctuation
        | G::FinalPunctuation
        | G::OtherPunctuation => Flags::PUNCT | Flags::DEFINED,
        G::NonspacingMark | G::SpacingMark | G::EnclosingMark => Flags::MARK | Flags::DEFINED,
        G::Unassigned => 0,
        _ => Flags::DEFINED,
    };
    if c.is_whitespace() {
        f |= Flags::WHITESPACE | Flags::DEFINED;
    }
    f
}

/// Unicode punctuation (any `P*` category).
pub(crate) fn is_punctuation(c: char) -> bool {
    flags(c).is_punct()
}

/// `Cc`, `Cf`, `Co` or `Cs`: the characters the Hugging Face BertNormalizer drops as control
/// characters (besides tab, newline and carriage return, which count as whitespace). Unassigned
/// code points (`Cn`) are kept, as `tokenizers` 0.23 keeps them (checked side by side: U+0378
/// gives `[UNK]`, U+E000 and U+0600 vanish).
pub(crate) fn is_other_category(c: char) -> bool {
    matches!(
        get_general_category(c),
        G::Control | G::Format | G::PrivateUse | G::Surrogate
    )
}

/// `Mn`: a non-spacing mark (what stripping accents removes after NFD).
pub(crate) fn is_nonspacing_mark(c: char) -> bool {
    get_general_category(c) == G::NonspacingMark
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_table_agrees_with_general_categories() {
        for b in 0u8..128 {
            let c = b as char;
            assert_eq!(flags(c), Flags(flags_slow(c)), "{b:#x}");
        }
    }

    #[test]
    fn devanagari_vowel_signs_are_marks_not_letters() {
        // U+093E DEVANAGARI VOWEL SIGN AA is Mc: \p{L}+ stops there.
        assert!(!flags('\u{093E}').is_letter());
        assert!(flags('न').is_letter());
        assert!(flags('\u{00A0}').is_whitespace());
        assert!(!flags('\u{200B}').is_whitespace());
        assert!(!flags('\u{0378}').is_defined());
    }
}
