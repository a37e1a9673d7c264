//! llama.cpp's GBNF grammars, rewritten into llguidance's Lark syntax (the grammar engine's
//! own language): rules `name ::= ...` become `name: ...` (`root` is `start`), strings stay
//! strings, character classes and `.` become regular-expression terminals, repetitions
//! (`*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}`, `{,n}`) carry over. Comments (`#`) and line breaks
//! between items are ignored; a new rule starts at `name ::=`. Errors give the byte offset,
//! line and column.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::ConstraintError;

/// Nesting of parentheses beyond this is refused (the parser recurses on them).
const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Name(String),
    Define,
    Str(String),
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Dot,
    LParen,
    RParen,
    Pipe,
    Op(char),
    Repeat(u32, Option<u32>),
}

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

fn at(src: &str, pos: usize, what: impl std::fmt::Display) -> ConstraintError {
    let before = src.get(..pos).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    ConstraintError {
        message: format!("invalid GBNF grammar at line {line}, column {col} (byte {pos}): {what}"),
    }
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Skips spaces, line breaks and `#` comments.
    fn skip(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() {
                self.bump();
            } else if c == '#' {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.bump();
                }
            } else {
                break;
            }
        }
    }

    fn hex(&mut self, digits: usize) -> Result<char, ConstraintError> {
        let start = self.pos;
        let mut v = 0u32;
        for _ in 0..digits {
            let d = self
                .bump()
                .and_then(|c| c.to_digit(16))
                .ok_or_else(|| at(self.src, start, format!("expected {digits} hex digits")))?;
            v = v * 16 + d;
        }
        char::from_u32(v).ok_or_else(|| at(self.src, start, format!("U+{v:X} is not a character")))
    }

    /// One character of a string or class opened at `open`, escapes decoded.
    fn char_in(&mut self, what: &str, open: usize) -> Result<char, ConstraintError> {
        let start = self.pos;
        match self.bump() {
            None => Err(at(self.src, open, format!("unterminated {what}"))),
            Some('\\') => match self.bump() {
                Some('n') => Ok('\n'),
                Some('r') => Ok('\r'),
                Some('t') => Ok('\t'),
                Some('x') => self.hex(2),
                Some('u') => self.hex(4),
                Some('U') => self.hex(8),
                Some(c @ ('\\' | '"' | '[' | ']' | '-' | '^')) => Ok(c),
                Some(c) => Err(at(self.src, start, format!("unknown escape `\\{c}`"))),
                None => Err(at(self.src, open, format!("unterminated {what}"))),
            },
            Some(c) => Ok(c),
        }
    }

    fn number(&mut self) -> Result<u32, ConstraintError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        self.src
            .get(start..self.pos)
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| at(self.src, start, "expected a number"))
    }

    /// The next token and where it starts.
    fn next(&mut self) -> Result<Option<(usize, Tok)>, ConstraintError> {
        self.skip();
        let start = self.pos;
        let Some(c) = self.bump() else {
            return Ok(None);
        };
        let tok = match c {
            '(' => Tok::LParen,
            ')' => Tok::RParen,
            '|' => Tok::Pipe,
            '.' => Tok::Dot,
            '*' | '+' | '?' => Tok::Op(c),
            ':' if self
                .src
                .get(self.pos..)
                .is_some_and(|s| s.starts_with(":=")) =>
            {
                self.pos += 2;
                Tok::Define
            }
            '"' => {
                let mut s = String::new();
                loop {
                    if self.peek() == Some('"') {
                        self.bump();
                        break;
                    }
                    s.push(self.char_in("string", start)?);
                }
                Tok::Str(s)
            }
            '[' => {
                let negated = self.peek() == Some('^');
                if negated {
                    self.bump();
                }
                let mut ranges = Vec::new();
                loop {
                    if self.peek() == Some(']') {
                        self.bump();
                        break;
                    }
                    let lo = self.char_in("character class", start)?;
                    let hi = if self.peek() == Some('-')
                        && self
                            .src
                            .get(self.pos + 1..)
                            .is_some_and(|s| !s.starts_with(']'))
                    {
                        self.bump();
                        self.char_in("character class", start)?
                    } else {
                        lo
                    };
                    if hi < lo {
                        return Err(at(self.src, start, format!("empty range `{lo}-{hi}`")));
                    }
                    ranges.push((lo, hi));
                }
                if ranges.is_empty() && !negated {
                    return Err(at(
                        self.src,
                        start,
                        "an empty character class matches nothing",
                    ));
                }
                Tok::Class { negated, ranges }
            }
            '{' => {
                self.skip();
                let min = if self.peek() == Some(',') {
                    0
                } else {
                    self.number()?
                };
                self.skip();
                let max = if self.peek() == Some(',') {
                    self.bump();
                    self.skip();
                    if self.peek() == Some('}') {
                        None
                    } else {
                        Some(self.number()?)
                    }
                } else {
                    Some(min)
                };
                self.skip();
                if self.bump() != Some('}') {
                    return Err(at(self.src, start, "expected `}` to end the repetition"));
                }
                if max.is_some_and(|m| m < min) {
                    return Err(at(
                        self.src,
                        start,
                        "a repetition's maximum is below its minimum",
                    ));
                }
                Tok::Repeat(min, max)
            }
            '<' => {
                return Err(at(
                    self.src,
                    start,
                    "token references (`<...>`) are not supported",
                ))
            }
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => {
                while self
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    self.bump();
                }
                Tok::Name(
                    self.src
                        .get(start..self.pos)
                        .unwrap_or_default()
                        .to_string(),
                )
            }
            c => return Err(at(self.src, start, format!("unexpected `{c}`"))),
        };
        Ok(Some((start, tok)))
    }
}

/// Rewrites a GBNF grammar into llguidance's Lark syntax.
pub(crate) fn to_lark(src: &str) -> Result<String, ConstraintError> {
    let mut lx = Lexer { src, pos: 0 };
    let mut toks = Vec::new();
    while let Some(t) = lx.next()? {
        toks.push(t);
    }
    let mut conv = Converter {
        src,
        toks,
        i: 0,
        names: HashMap::new(),
        used: Vec::new(),
        defined: HashMap::new(),
    };
    conv.grammar()
}

struct Converter<'a> {
    src: &'a str,
    toks: Vec<(usize, Tok)>,
    i: usize,
    /// GBNF name → Lark name.
    names: HashMap<String, String>,
    /// References, with where they are, checked against the definitions at the end.
    used: Vec<(String, usize)>,
    defined: HashMap<String, usize>,
}

impl Converter<'_> {
    fn err_here(&self, what: impl std::fmt::Display) -> ConstraintError {
        let pos = self.toks.get(self.i).map_or(self.src.len(), |t| t.0);
        at(self.src, pos, what)
    }

    fn lark_name(&mut self, name: &str) -> String {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n = if name == "root" {
            "start".to_string()
        } else {
            let base: String = name
                .chars()
                .map(|c| {
                    if c == '-' {
                        '_'
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect();
            let mut n = format!("r_{base}");
            let mut k = 1;
            while self.names.values().any(|v| *v == n) {
                k += 1;
                n = format!("r_{base}_{k}");
            }
            n
        };
        self.names.insert(name.to_string(), n.clone());
        n
    }

    /// Whether a rule starts at token `i` (`name ::=`).
    fn rule_at(&self, i: usize) -> bool {
        matches!(self.toks.get(i), Some((_, Tok::Name(_))))
            && matches!(self.toks.get(i + 1), Some((_, Tok::Define)))
    }

    fn grammar(&mut self) -> Result<String, ConstraintError> {
        let mut out = String::from("%llguidance {}\n");
        if self.toks.is_empty() {
            return Err(at(self.src, 0, "the grammar is empty"));
        }
        while self.i < self.toks.len() {
            if !self.rule_at(self.i) {
                return Err(self.err_here("expected a rule (`name ::= ...`)"));
            }
            let Some((pos, Tok::Name(name))) = self.toks.get(self.i).cloned() else {
                return Err(self.err_here("expected a rule name"));
            };
            if self.defined.insert(name.clone(), pos).is_some() {
                return Err(at(self.src, pos, format!("rule `{name}` is defined twice")));
            }
            self.i += 2;
            let lark = self.lark_name(&name);
            let body = self.alternates(0)?;
            let _ = writeln!(out, "{lark}: {body}");
        }
        if !self.defined.contains_key("root") {
            return Err(at(self.src, 0, "the grammar has no `root` rule"));
        }
        if let Some((name, pos)) = self
            .used
            .iter()
            .find(|(n, _)| !self.defined.contains_key(n))
        {
            return Err(at(
                self.src,
                *pos,
                format!("rule `{name}` is used but not defined"),
            ));
        }
        Ok(out)
    }

    fn alternates(&mut self, depth: usize) -> Result<String, ConstraintError> {
        let mut alts = vec![self.sequence(depth)?];
        while matches!(self.toks.get(self.i), Some((_, Tok::Pipe))) {
            self.i += 1;
            alts.push(self.sequence(depth)?);
        }
        Ok(alts.join(" | "))
    }

    fn sequence(&mut self, depth: usize) -> Result<String, ConstraintError> {
        let mut items = Vec::new();
        loop {
            if self.rule_at(self.i) {
                break;
            }
            let Some((pos, tok)) = self.toks.get(self.i).cloned() else {
                break;
            };
            let mut grouped = matches!(tok, Tok::LParen);
            let atom = match tok {
                Tok::Pipe | Tok::RParen => break,
                Tok::Name(n) => {
                    self.used.push((n.clone(), pos));
                    self.lark_name(&n)
                }
                Tok::Str(s) => serde_json::to_string(&s).unwrap_or_default(),
                Tok::Class { negated, ranges } => class_regex(negated, &ranges),
                Tok::Dot => "/(?s:.)/".to_string(),
                Tok::LParen => {
                    if depth >= MAX_DEPTH {
                        return Err(at(self.src, pos, "parentheses nested too deep"));
                    }
                    self.i += 1;
                    let inner = self.alternates(depth + 1)?;
                    if !matches!(self.toks.get(self.i), Some((_, Tok::RParen))) {
                        return Err(at(self.src, pos, "unclosed `(`"));
                    }
                    format!("({inner})")
                }
                Tok::Define => return Err(at(self.src, pos, "unexpected `::=`")),
                Tok::Op(c) => return Err(at(self.src, pos, format!("`{c}` follows nothing"))),
                Tok::Repeat(..) => return Err(at(self.src, pos, "a repetition follows nothing")),
            };
            self.i += 1;
            let mut item = atom;
            // Postfix operators, possibly several (`a+?` is `(a+)?`).
            loop {
                let group = |item: &str, grouped: bool| {
                    if grouped {
                        item.to_string()
                    } else {
                        format!("({item})")
                    }
                };
                match self.toks.get(self.i).map(|t| &t.1) {
                    Some(Tok::Op(c)) => {
                        item = format!("{}{c}", group(&item, grouped));
                    }
                    Some(Tok::Repeat(min, max)) => {
                        let g = group(&item, grouped);
                        item = match (min, max) {
                            (_, Some(0)) => "\"\"".to_string(),
                            (m, Some(n)) if m == n => format!("{g}{{{m}}}"),
                            (m, Some(n)) => format!("{g}{{{m},{n}}}"),
                            (m, None) => format!("{g}{{{m},}}"),
                        };
                    }
                    _ => break,
                }
                grouped = false;
                self.i += 1;
            }
            items.push(item);
        }
        if items.is_empty() {
            Ok("\"\"".to_string())
        } else {
            Ok(items.join(" "))
        }
    }
}

/// A character class as a Lark regular-expression terminal, every character written as
/// `\x{..}` (nothing in it can be read as regex syntax or end the `/.../`).
fn class_regex(negated: bool, ranges: &[(char, char)]) -> String {
    let mut s = String::from("/[");
    if negated {
        s.push('^');
    }
    for &(lo, hi) in ranges {
        let _ = write!(s, "\\x{{{:X}}}", lo as u32);
        if hi != lo {
            let _ = write!(s, "-\\x{{{:X}}}", hi as u32);
        }
    }
    if negated && ranges.is_empty() {
        // `[^]`: any character.
        return "/(?s:.)/".to_string();
    }
    s.push_str("]/");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_strings_classes_and_repetitions_carry_over() {
        let g = r#"
# a comment
root ::= greeting " " name{1,3} ("!" | "?")*
greeting ::= "hi" | "hello\n"
name ::= [A-Z] [a-z\-]+ [^ \x00]? .
"#;
        let lark = to_lark(g).expect("converts");
        assert_eq!(
            lark,
            "%llguidance {}\n\
             start: r_greeting \" \" (r_name){1,3} (\"!\" | \"?\")*\n\
             r_greeting: \"hi\" | \"hello\\n\"\n\
             r_name: /[\\x{41}-\\x{5A}]/ (/[\\x{61}-\\x{7A}\\x{2D}]/)+ (/[^\\x{20}\\x{0}]/)? /(?s:.)/\n"
        );
    }

    #[test]
    fn names_with_dashes_and_empty_repetitions() {
        let lark =
            to_lark("root ::= my-rule x{0}\nmy-rule ::= \"a\"{2,}\nx ::= \"b\"").expect("ok");
        assert!(lark.contains("start: r_my_rule \"\""), "{lark}");
        assert!(lark.contains("r_my_rule: (\"a\"){2,}"), "{lark}");
    }

    #[test]
    fn errors_say_where() {
        for (g, says, line) in [
            ("root ::= foo", "`foo` is used but not defined", 1),
            ("rot ::= \"a\"", "no `root` rule", 1),
            ("root ::= \"a\"\nroot ::= \"b\"", "defined twice", 2),
            ("root ::= \"a", "unterminated string", 1),
            ("root ::= [z-a]", "empty range", 1),
            ("root ::= \"a\"{3,1}", "maximum is below", 1),
            ("root ::= \"\\q\"", "unknown escape", 1),
            ("root ::= <|im_end|>", "token references", 1),
            ("root ::= (\"a\"", "unclosed", 1),
            ("\n\nroot ::= * \"a\"", "follows nothing", 3),
            ("", "empty", 1),
        ] {
            let e = to_lark(g).expect_err(g).message;
            assert!(e.contains(says), "{g:?}: {e}");
            assert!(e.contains(&format!("line {line},")), "{g:?}: {e}");
        }
        let deep = format!("root ::= {}\"a\"{}", "(".repeat(100), ")".repeat(100));
        assert!(to_lark(&deep)
            .expect_err("deep")
            .message
            .contains("too deep"));
    }
}
