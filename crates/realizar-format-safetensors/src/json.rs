//! A small, strict JSON parser (RFC 8259) with no dependencies.
//!
//! It is strict where a lenient parser would hide a problem in a model file: duplicate object
//! keys are an error (never "the last one wins"), nesting is capped at [`MAX_JSON_DEPTH`], lone
//! UTF-16 surrogates in `\u` escapes are rejected, and nothing but whitespace may follow the
//! value. Numbers keep their exact text ([`JsonNumber`]), so a 64-bit integer is never rounded
//! through `f64`.
//!
//! The low-level [`Cursor`] is shared with the safetensors header reader, which walks the header
//! without building a tree.

use core::fmt;
use std::collections::BTreeMap;

/// The deepest nesting of arrays and objects accepted (the outermost array or object is level 1).
pub const MAX_JSON_DEPTH: usize = 32;

/// A parsed JSON value.
#[derive(Clone, Debug, PartialEq)]
pub enum JsonValue {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, kept as written.
    Number(JsonNumber),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<JsonValue>),
    /// An object; keys are unique (duplicates are a parse error).
    Object(BTreeMap<String, JsonValue>),
}

/// A JSON number, kept as its (validated) source text so integers of any size stay exact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonNumber {
    raw: String,
}

impl JsonNumber {
    #[cfg(test)]
    /// The number exactly as written in the JSON text.
    pub fn as_raw(&self) -> &str {
        &self.raw
    }

    /// The value as a `u64`, when it is written as a non-negative integer (no fraction, no
    /// exponent) that fits.
    pub fn as_u64(&self) -> Option<u64> {
        if is_plain_integer(&self.raw) {
            self.raw.parse().ok()
        } else {
            None
        }
    }

    #[cfg(test)]
    /// The value as an `i64`, when it is written as an integer (no fraction, no exponent) that
    /// fits.
    pub fn as_i64(&self) -> Option<i64> {
        let digits = self.raw.strip_prefix('-').unwrap_or(&self.raw);
        if is_plain_integer(digits) {
            self.raw.parse().ok()
        } else {
            None
        }
    }

    #[cfg(test)]
    /// The value as the nearest `f64`; `None` if it is too large to be finite.
    pub fn as_f64(&self) -> Option<f64> {
        self.raw.parse::<f64>().ok().filter(|v| v.is_finite())
    }
}

impl fmt::Display for JsonNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// True when `s` is a non-empty run of ASCII digits.
pub(crate) fn is_plain_integer(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl JsonValue {
    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            JsonValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number as a `u64`, if this is a non-negative integer that fits (see
    /// [`JsonNumber::as_u64`]).
    pub fn as_u64(&self) -> Option<u64> {
        self.as_number().and_then(JsonNumber::as_u64)
    }

    #[cfg(test)]
    /// The number as an `i64`, if this is an integer that fits.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_number().and_then(JsonNumber::as_i64)
    }

    #[cfg(test)]
    /// The number as an `f64`, if this is a finite number.
    pub fn as_f64(&self) -> Option<f64> {
        self.as_number().and_then(JsonNumber::as_f64)
    }

    /// The number, if this is a number.
    pub fn as_number(&self) -> Option<&JsonNumber> {
        match self {
            JsonValue::Number(n) => Some(n),
            _ => None,
        }
    }

    #[cfg(test)]
    /// The boolean, if this is `true` or `false`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            JsonValue::Bool(b) => Some(*b),
            _ => None,
        }
    }

    #[cfg(test)]
    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[JsonValue]> {
        match self {
            JsonValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The members, if this is an object.
    pub fn as_object(&self) -> Option<&BTreeMap<String, JsonValue>> {
        match self {
            JsonValue::Object(o) => Some(o),
            _ => None,
        }
    }

    #[cfg(test)]
    /// True for `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, JsonValue::Null)
    }

    #[cfg(test)]
    /// The member `key`, if this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&JsonValue> {
        self.as_object().and_then(|o| o.get(key))
    }

    #[cfg(test)]
    /// A short name of the value's kind ("string", "object", ...), for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            JsonValue::Null => "null",
            JsonValue::Bool(_) => "a boolean",
            JsonValue::Number(_) => "a number",
            JsonValue::String(_) => "a string",
            JsonValue::Array(_) => "an array",
            JsonValue::Object(_) => "an object",
        }
    }
}

/// What is wrong with a JSON text.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonErrorKind {
    /// The text ends where more was expected.
    UnexpectedEnd,
    /// A character that cannot start or continue what was expected here.
    Unexpected {
        /// The character found.
        found: char,
        /// What was expected instead.
        expected: &'static str,
    },
    /// A number that does not follow the JSON grammar (leading zeros, missing digits).
    InvalidNumber,
    /// An unknown escape sequence in a string.
    InvalidEscape,
    /// A `\u` escape that is not four hex digits or is a lone UTF-16 surrogate.
    InvalidUnicodeEscape,
    /// A raw control character (below U+0020) inside a string.
    ControlCharacter,
    /// Arrays and objects nested deeper than [`MAX_JSON_DEPTH`].
    TooDeep,
    /// An object has the same key twice.
    DuplicateKey(String),
    /// Something other than whitespace follows the value.
    TrailingCharacters,
}

impl fmt::Display for JsonErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonErrorKind::UnexpectedEnd => f.write_str("JSON text ends unexpectedly"),
            JsonErrorKind::Unexpected { found, expected } => {
                write!(f, "unexpected {found:?} in JSON, expected {expected}")
            }
            JsonErrorKind::InvalidNumber => f.write_str("invalid JSON number"),
            JsonErrorKind::InvalidEscape => f.write_str("invalid escape in JSON string"),
            JsonErrorKind::InvalidUnicodeEscape => {
                f.write_str("invalid \\u escape in JSON string (bad hex digits or lone surrogate)")
            }
            JsonErrorKind::ControlCharacter => f.write_str("raw control character in JSON string"),
            JsonErrorKind::TooDeep => {
                write!(f, "JSON nested deeper than {MAX_JSON_DEPTH} levels")
            }
            JsonErrorKind::DuplicateKey(k) => write!(f, "duplicate JSON object key {k:?}"),
            JsonErrorKind::TrailingCharacters => {
                f.write_str("trailing characters after JSON value")
            }
        }
    }
}

/// A JSON syntax error and the byte position in the text where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    /// Byte position in the JSON text.
    pub offset: usize,
    /// What is wrong.
    pub kind: JsonErrorKind,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.kind, self.offset)
    }
}

impl std::error::Error for JsonError {}

/// Parses a complete JSON text into a [`JsonValue`].
///
/// Strict: duplicate keys, nesting deeper than [`MAX_JSON_DEPTH`], lone surrogates and trailing
/// non-whitespace are errors (the unit tests below hold each case).
pub fn parse_json(text: &str) -> Result<JsonValue, JsonError> {
    let mut c = Cursor::new(text);
    c.ws();
    let v = c.value(0)?;
    c.end()?;
    Ok(v)
}

/// A read position in a JSON text. Every method either consumes a complete token or returns an
/// error at the position of the offending byte.
pub(crate) struct Cursor<'t> {
    text: &'t str,
    pos: usize,
}

impl<'t> Cursor<'t> {
    pub(crate) fn new(text: &'t str) -> Self {
        Cursor { text, pos: 0 }
    }

    /// The current byte position.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The text between `start` and the current position.
    pub(crate) fn since(&self, start: usize) -> &'t str {
        self.text.get(start..self.pos).unwrap_or("")
    }

    /// The next byte, if any.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn err(&self, kind: JsonErrorKind) -> JsonError {
        JsonError {
            offset: self.pos,
            kind,
        }
    }

    /// An error for the byte at the current position (or the end of the text).
    fn unexpected(&self, expected: &'static str) -> JsonError {
        match self.text.get(self.pos..).and_then(|s| s.chars().next()) {
            Some(found) => self.err(JsonErrorKind::Unexpected { found, expected }),
            None => self.err(JsonErrorKind::UnexpectedEnd),
        }
    }

    /// Skips whitespace.
    pub(crate) fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Checks that only whitespace is left.
    pub(crate) fn end(&mut self) -> Result<(), JsonError> {
        self.ws();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.err(JsonErrorKind::TrailingCharacters)),
        }
    }

    fn eat(&mut self, byte: u8, expected: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected(expected))
        }
    }

    fn literal(&mut self, word: &'static str) -> Result<(), JsonError> {
        for &b in word.as_bytes() {
            self.eat(b, word)?;
        }
        Ok(())
    }

    /// Consumes `{` and the whitespace after it.
    pub(crate) fn open_object(&mut self) -> Result<(), JsonError> {
        self.eat(b'{', "`{`")?;
        self.ws();
        Ok(())
    }

    /// Moves to the next member of an object opened with [`Cursor::open_object`]: consumes `}`
    /// and returns `None` at the end, else consumes the separating `,`, the key and the `:` and
    /// returns the key and its position. `first` tracks whether a member has been read.
    pub(crate) fn next_member(
        &mut self,
        first: &mut bool,
        key: &mut String,
    ) -> Result<Option<usize>, JsonError> {
        self.ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(None);
        }
        if !*first {
            self.eat(b',', "`,` or `}`")?;
            self.ws();
        }
        *first = false;
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("a string key"));
        }
        let at = self.pos;
        key.clear();
        self.string(Some(key))?;
        self.ws();
        self.eat(b':', "`:`")?;
        self.ws();
        Ok(Some(at))
    }

    /// Consumes `[` and the whitespace after it.
    pub(crate) fn open_array(&mut self) -> Result<(), JsonError> {
        self.eat(b'[', "`[`")?;
        self.ws();
        Ok(())
    }

    /// Moves to the next element of an array opened with [`Cursor::open_array`]: consumes `]`
    /// and returns false at the end, else consumes the separating `,` and returns true.
    pub(crate) fn next_element(&mut self, first: &mut bool) -> Result<bool, JsonError> {
        self.ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(false);
        }
        if !*first {
            self.eat(b',', "`,` or `]`")?;
            self.ws();
        }
        *first = false;
        Ok(true)
    }

    /// Reads a string starting at `"`, appending its decoded text to `out` when given.
    pub(crate) fn string(&mut self, mut out: Option<&mut String>) -> Result<(), JsonError> {
        self.eat(b'"', "`\"`")?;
        loop {
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            if let Some(o) = out.as_deref_mut() {
                o.push_str(self.since(run_start));
            }
            match self.peek() {
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    let ch = self.escape()?;
                    if let Some(o) = out.as_deref_mut() {
                        o.push(ch);
                    }
                }
                Some(_) => return Err(self.err(JsonErrorKind::ControlCharacter)),
            }
        }
    }

    /// Reads an escape sequence starting at `\`.
    fn escape(&mut self) -> Result<char, JsonError> {
        let start = self.pos;
        self.pos += 1;
        let c = match self.peek() {
            None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                self.pos += 1;
                let hi = self.hex4(start)?;
                return match hi {
                    0xD800..=0xDBFF => {
                        if self.peek() != Some(b'\\')
                            || self.text.as_bytes().get(self.pos + 1) != Some(&b'u')
                        {
                            return Err(JsonError {
                                offset: start,
                                kind: JsonErrorKind::InvalidUnicodeEscape,
                            });
                        }
                        self.pos += 2;
                        let lo = self.hex4(start)?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return Err(JsonError {
                                offset: start,
                                kind: JsonErrorKind::InvalidUnicodeEscape,
                            });
                        }
                        let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        char::from_u32(code).ok_or(JsonError {
                            offset: start,
                            kind: JsonErrorKind::InvalidUnicodeEscape,
                        })
                    }
                    _ => char::from_u32(hi).ok_or(JsonError {
                        offset: start,
                        kind: JsonErrorKind::InvalidUnicodeEscape,
                    }),
                };
            }
            Some(_) => {
                return Err(JsonError {
                    offset: start,
                    kind: JsonErrorKind::InvalidEscape,
                })
            }
        };
        self.pos += 1;
        Ok(c)
    }

    /// Reads four hex digits of a `\u` escape that starts at `start`.
    fn hex4(&mut self, start: usize) -> Result<u32, JsonError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = match self.peek() {
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd)),
                Some(b) => (b as char).to_digit(16).ok_or(JsonError {
                    offset: start,
                    kind: JsonErrorKind::InvalidUnicodeEscape,
                })?,
            };
            v = v * 16 + d;
            self.pos += 1;
        }
        Ok(v)
    }

    /// Reads a number and returns its text.
    pub(crate) fn number(&mut self) -> Result<&'t str, JsonError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.err(JsonErrorKind::InvalidNumber));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.err(JsonErrorKind::InvalidNumber)),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.required_digits()?;
        }
        Ok(self.since(start))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), JsonError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.err(JsonErrorKind::InvalidNumber));
        }
        self.digits();
        Ok(())
    }

    /// Checks that an array or object may open at `depth` (the depth of its parent).
    fn deeper(&self, depth: usize) -> Result<usize, JsonError> {
        if depth >= MAX_JSON_DEPTH {
            Err(self.err(JsonErrorKind::TooDeep))
        } else {
            Ok(depth + 1)
        }
    }

    /// Reads and checks one value without building it. `depth` is the number of arrays and
    /// objects that enclose it. Duplicate keys are not checked here.
    pub(crate) fn skip_value(&mut self, depth: usize) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => {
                let depth = self.deeper(depth)?;
                self.open_object()?;
                let mut first = true;
                let mut key = String::new();
                while self.next_member(&mut first, &mut key)?.is_some() {
                    self.skip_value(depth)?;
                }
                Ok(())
            }
            Some(b'[') => {
                let depth = self.deeper(depth)?;
                self.open_array()?;
                let mut first = true;
                while self.next_element(&mut first)? {
                    self.skip_value(depth)?;
                }
                Ok(())
            }
            Some(b'"') => self.string(None),
            _ => self.scalar().map(|_| ()),
        }
    }

    /// Reads `null`, `true`, `false` or a number.
    fn scalar(&mut self) -> Result<JsonValue, JsonError> {
        match self.peek() {
            Some(b'n') => self.literal("null").map(|_| JsonValue::Null),
            Some(b't') => self.literal("true").map(|_| JsonValue::Bool(true)),
            Some(b'f') => self.literal("false").map(|_| JsonValue::Bool(false)),
            Some(b'-' | b'0'..=b'9') => self.number().map(|raw| {
                JsonValue::Number(JsonNumber {
                    raw: raw.to_string(),
                })
            }),
            _ => Err(self.unexpected("a JSON value")),
        }
    }

    /// Reads one value into a tree. `depth` is the number of arrays and objects enclosing it.
    pub(crate) fn value(&mut self, depth: usize) -> Result<JsonValue, JsonError> {
        match self.peek() {
            Some(b'{') => {
                let depth = self.deeper(depth)?;
                self.open_object()?;
                let mut map = BTreeMap::new();
                let mut first = true;
                let mut key = String::new();
                while let Some(at) = self.next_member(&mut first, &mut key)? {
                    let v = self.value(depth)?;
                    if map.contains_key(key.as_str()) {
                        return Err(JsonError {
                            offset: at,
                            kind: JsonErrorKind::DuplicateKey(key),
                        });
                    }
                    map.insert(key.clone(), v);
                }
                Ok(JsonValue::Object(map))
            }
            Some(b'[') => {
                let depth = self.deeper(depth)?;
                self.open_array()?;
                let mut items = Vec::new();
                let mut first = true;
                while self.next_element(&mut first)? {
                    items.push(self.value(depth)?);
                }
                Ok(JsonValue::Array(items))
            }
            Some(b'"') => {
                let mut s = String::new();
                self.string(Some(&mut s))?;
                Ok(JsonValue::String(s))
            }
            _ => self.scalar(),
        }
    }
}

/// Appends `s` to `out` as a JSON string literal (quotes included).
pub(crate) fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> JsonValue {
        match parse_json(text) {
            Ok(v) => v,
            Err(e) => panic!("{text:?} should parse: {e}"),
        }
    }

    fn err(text: &str) -> JsonError {
        match parse_json(text) {
            Ok(v) => panic!("{text:?} should fail, got {v:?}"),
            Err(e) => e,
        }
    }

    fn check_err(text: &str, offset: usize, kind: JsonErrorKind) {
        let e = err(text);
        assert_eq!((e.offset, &e.kind), (offset, &kind), "for {text:?}");
    }

    #[test]
    fn scalars() {
        assert_eq!(ok("null"), JsonValue::Null);
        assert_eq!(ok(" true "), JsonValue::Bool(true));
        assert_eq!(ok("\tfalse\n"), JsonValue::Bool(false));
        assert_eq!(ok("\"hi\"").as_str(), Some("hi"));
        assert_eq!(ok("0").as_u64(), Some(0));
        assert_eq!(ok("18446744073709551615").as_u64(), Some(u64::MAX));
        assert_eq!(ok("18446744073709551616").as_u64(), None);
        assert_eq!(ok("-5").as_i64(), Some(-5));
        assert_eq!(ok("-5").as_u64(), None);
        assert_eq!(ok("1.5").as_u64(), None);
        assert_eq!(ok("1.5").as_i64(), None);
        assert_eq!(ok("1e3").as_u64(), None);
        assert_eq!(ok("1e3").as_f64(), Some(1000.0));
        assert_eq!(ok("-1.25E-2").as_f64(), Some(-0.0125));
        assert_eq!(ok("1e+2").as_f64(), Some(100.0));
        assert_eq!(ok("1e999").as_f64(), None);
        assert_eq!(ok("1e-12").as_f64(), Some(1e-12));
        let n = ok("12.50");
        assert_eq!(n.as_number().map(JsonNumber::as_raw), Some("12.50"));
        assert_eq!(
            n.as_number().map(ToString::to_string).as_deref(),
            Some("12.50")
        );
    }

    #[test]
    fn accessors_on_wrong_kinds_are_none() {
        let v = ok(r#"{"a": [1, "x", null, true, {}, []]}"#);
        let a = v.get("a").and_then(JsonValue::as_array).unwrap_or_default();
        let kinds: Vec<_> = a.iter().map(JsonValue::kind_name).collect();
        assert_eq!(
            kinds,
            [
                "a number",
                "a string",
                "null",
                "a boolean",
                "an object",
                "an array"
            ]
        );
        assert_eq!(v.kind_name(), "an object");
        assert!(a[2].is_null());
        assert!(!a[0].is_null());
        for x in a {
            assert_eq!(x.as_str().is_some(), matches!(x, JsonValue::String(_)));
            assert_eq!(x.as_u64().is_some(), matches!(x, JsonValue::Number(_)));
            assert_eq!(x.as_i64().is_some(), matches!(x, JsonValue::Number(_)));
            assert_eq!(x.as_f64().is_some(), matches!(x, JsonValue::Number(_)));
            assert_eq!(x.as_bool().is_some(), matches!(x, JsonValue::Bool(_)));
            assert_eq!(x.as_array().is_some(), matches!(x, JsonValue::Array(_)));
            assert_eq!(x.as_object().is_some(), matches!(x, JsonValue::Object(_)));
            assert!(x.get("a").is_none());
        }
    }

    #[test]
    fn nested_structures() {
        let v = ok(r#" { "a" : [ 1 , { "b" : [ ] } ] , "c" : { } } "#);
        let a = v.get("a").and_then(JsonValue::as_array).unwrap_or_default();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].get("b"), Some(&JsonValue::Array(vec![])));
        assert_eq!(v.get("c"), Some(&JsonValue::Object(BTreeMap::new())));
        assert_eq!(ok("[]"), JsonValue::Array(vec![]));
        assert_eq!(ok("[[],[[]]]").as_array().map(<[_]>::len), Some(2));
    }

    #[test]
    fn string_escapes() {
        let v = ok(r#""a\"b\\c\/d\be\ff\ng\rh\ti\u0041\u00e9\u20ac\ud83d\ude00""#);
        assert_eq!(v.as_str(), Some("a\"b\\c/d\u{8}e\u{c}f\ng\rh\tiAé€😀"));
        assert_eq!(ok("\"日本語 ü\"").as_str(), Some("日本語 ü"));
        assert_eq!(ok(r#""\uABCD""#).as_str(), Some("\u{abcd}"));
    }

    #[test]
    fn string_errors() {
        check_err(r#""abc"#, 4, JsonErrorKind::UnexpectedEnd);
        check_err("\"a\u{1}\"", 2, JsonErrorKind::ControlCharacter);
        check_err(r#""a\x""#, 2, JsonErrorKind::InvalidEscape);
        check_err(r#""a\"#, 3, JsonErrorKind::UnexpectedEnd);
        check_err(r#""\u12"#, 5, JsonErrorKind::UnexpectedEnd);
        check_err(r#""\u12g4""#, 1, JsonErrorKind::InvalidUnicodeEscape);
        check_err(r#""\ud800""#, 1, JsonErrorKind::InvalidUnicodeEscape);
        check_err(r#""\ud800\n""#, 1, JsonErrorKind::InvalidUnicodeEscape);
        check_err(r#""\ud800\u0041""#, 1, JsonErrorKind::InvalidUnicodeEscape);
        check_err(r#""\udc00""#, 1, JsonErrorKind::InvalidUnicodeEscape);
    }

    #[test]
    fn number_errors() {
        check_err("01", 1, JsonErrorKind::InvalidNumber);
        check_err("-", 1, JsonErrorKind::InvalidNumber);
        check_err("-a", 1, JsonErrorKind::InvalidNumber);
        check_err("1.", 2, JsonErrorKind::InvalidNumber);
        check_err("1.e5", 2, JsonErrorKind::InvalidNumber);
        check_err("1e", 2, JsonErrorKind::InvalidNumber);
        check_err("1e+", 3, JsonErrorKind::InvalidNumber);
        check_err(
            "+1",
            0,
            JsonErrorKind::Unexpected {
                found: '+',
                expected: "a JSON value",
            },
        );
        check_err(
            ".5",
            0,
            JsonErrorKind::Unexpected {
                found: '.',
                expected: "a JSON value",
            },
        );
    }

    #[test]
    fn structure_errors() {
        check_err("", 0, JsonErrorKind::UnexpectedEnd);
        check_err("   ", 3, JsonErrorKind::UnexpectedEnd);
        check_err("nul", 3, JsonErrorKind::UnexpectedEnd);
        check_err(
            "nulx",
            3,
            JsonErrorKind::Unexpected {
                found: 'x',
                expected: "null",
            },
        );
        check_err("tru", 3, JsonErrorKind::UnexpectedEnd);
        check_err("fals", 4, JsonErrorKind::UnexpectedEnd);
        check_err(
            "[1,]",
            3,
            JsonErrorKind::Unexpected {
                found: ']',
                expected: "a JSON value",
            },
        );
        check_err(
            "[1 2]",
            3,
            JsonErrorKind::Unexpected {
                found: '2',
                expected: "`,` or `]`",
            },
        );
        check_err("[1", 2, JsonErrorKind::UnexpectedEnd);
        check_err("{", 1, JsonErrorKind::UnexpectedEnd);
        check_err(
            "{1:2}",
            1,
            JsonErrorKind::Unexpected {
                found: '1',
                expected: "a string key",
            },
        );
        check_err(
            r#"{"a" 1}"#,
            5,
            JsonErrorKind::Unexpected {
                found: '1',
                expected: "`:`",
            },
        );
        check_err(
            r#"{"a":1 "b":2}"#,
            7,
            JsonErrorKind::Unexpected {
                found: '"',
                expected: "`,` or `}`",
            },
        );
        check_err(
            r#"{"a":1,}"#,
            7,
            JsonErrorKind::Unexpected {
                found: '}',
                expected: "a string key",
            },
        );
        check_err(
            r#"{"a":}"#,
            5,
            JsonErrorKind::Unexpected {
                found: '}',
                expected: "a JSON value",
            },
        );
        check_err("{} x", 3, JsonErrorKind::TrailingCharacters);
        check_err("{}{}", 2, JsonErrorKind::TrailingCharacters);
        check_err(
            "é",
            0,
            JsonErrorKind::Unexpected {
                found: 'é',
                expected: "a JSON value",
            },
        );
    }

    #[test]
    fn duplicate_keys_are_errors_at_any_depth() {
        check_err(
            r#"{"a":1,"a":2}"#,
            7,
            JsonErrorKind::DuplicateKey("a".into()),
        );
        check_err(
            r#"[{"x":{"k":1,"k":1}}]"#,
            13,
            JsonErrorKind::DuplicateKey("k".into()),
        );
        // Keys compare after unescaping.
        check_err(
            r#"{"a":1,"\u0061":2}"#,
            7,
            JsonErrorKind::DuplicateKey("a".into()),
        );
    }

    #[test]
    fn depth_limit() {
        let deep_ok = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert!(parse_json(&deep_ok).is_ok());
        let too_deep = format!(
            "{}{}",
            "[".repeat(MAX_JSON_DEPTH + 1),
            "]".repeat(MAX_JSON_DEPTH + 1)
        );
        check_err(&too_deep, MAX_JSON_DEPTH, JsonErrorKind::TooDeep);
        let objs = format!(
            "{}1{}",
            r#"{"a":"#.repeat(MAX_JSON_DEPTH + 1),
            "}".repeat(MAX_JSON_DEPTH + 1)
        );
        check_err(&objs, 5 * MAX_JSON_DEPTH, JsonErrorKind::TooDeep);
        // A hostile depth does not overflow the stack: the limit stops it early.
        let hostile = "[".repeat(1_000_000);
        check_err(&hostile, MAX_JSON_DEPTH, JsonErrorKind::TooDeep);
    }

    #[test]
    fn skip_value_checks_the_same_syntax() {
        for text in [
            r#"{"a":[1,2.5,-3e2,"s\n",true,false,null,{}]}"#,
            "[]",
            "\"x\"",
            "7",
        ] {
            let mut c = Cursor::new(text);
            assert!(c.skip_value(0).is_ok(), "{text}");
            assert!(c.end().is_ok());
        }
        for (text, kind) in [
            ("[1,", JsonErrorKind::UnexpectedEnd),
            (
                r#"{"a" 1}"#,
                JsonErrorKind::Unexpected {
                    found: '1',
                    expected: "`:`",
                },
            ),
            ("\"\\q\"", JsonErrorKind::InvalidEscape),
            ("[[[[", JsonErrorKind::UnexpectedEnd),
        ] {
            let mut c = Cursor::new(text);
            assert_eq!(c.skip_value(0).map_err(|e| e.kind), Err(kind), "{text}");
        }
        let too_deep = "[".repeat(MAX_JSON_DEPTH + 1);
        let mut c = Cursor::new(&too_deep);
        assert_eq!(
            c.skip_value(0).map_err(|e| e.kind),
            Err(JsonErrorKind::TooDeep)
        );
    }

    #[test]
    fn error_display() {
        let e = err(r#"{"a":1,"a":2}"#);
        assert_eq!(e.to_string(), "duplicate JSON object key \"a\" (at byte 7)");
        let kinds = [
            JsonErrorKind::UnexpectedEnd,
            JsonErrorKind::Unexpected {
                found: 'x',
                expected: "`:`",
            },
            JsonErrorKind::InvalidNumber,
            JsonErrorKind::InvalidEscape,
            JsonErrorKind::InvalidUnicodeEscape,
            JsonErrorKind::ControlCharacter,
            JsonErrorKind::TooDeep,
            JsonErrorKind::DuplicateKey("k".into()),
            JsonErrorKind::TrailingCharacters,
        ];
        let texts: Vec<String> = kinds.iter().map(ToString::to_string).collect();
        for (i, t) in texts.iter().enumerate() {
            assert!(!t.is_empty());
            assert!(
                texts[..i].iter().all(|u| u != t),
                "messages must differ: {t}"
            );
        }
    }

    #[test]
    fn write_json_string_round_trips() {
        for s in [
            "",
            "plain",
            "q\"b\\s",
            "ctl\u{0}\u{1f}\n\r\t\u{8}\u{c}",
            "ünï 😀",
            "\u{7f}",
        ] {
            let mut out = String::new();
            write_json_string(&mut out, s);
            assert_eq!(
                parse_json(&out).ok().as_ref().and_then(JsonValue::as_str),
                Some(s)
            );
        }
    }
}
