//! The lexer: logos scans raw tokens, then a cooking pass reads every literal into its
//! exact value.
//!
//! Quantities (`$5.00`, `5.00 usd`, `200_000 tokens`, `250ms`, `80%`, `0.50`) become
//! fixed-point 10⁻⁹ values through [`crate::base::num`], never through a float. Lexing never
//! fails as a whole: a bad token becomes a diagnostic and, where the parser can still use
//! it, a token without a value. Words are not classified here; whether a word is a keyword
//! depends on where the parser is (LANGUAGE §2: most keywords are contextual).

mod cook;

use crate::base::diag::{Code, Diagnostic};
use crate::base::source::{FileId, Span};
use cook::cook;
use logos::Logos;

/// The kind of a cooked token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// An identifier or keyword; keywords are decided by the parser.
    Word,
    /// `200_000`: a count; its digits also serve versions, precedences and counts.
    Int,
    /// `0.50`: a count with a fraction.
    Decimal,
    /// `$5.00` or `5.00 usd`.
    Money,
    /// `200_000 tokens`.
    Tokens,
    /// `250ms`, `30s`, `5m`, `1h`, `1d`.
    Duration,
    /// `80%`, `87.5%`.
    Percent,
    /// `"text"` with escapes decoded.
    Str,
    LBrace,
    RBrace,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Dot,
    Assign,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    Arrow,
    Plus,
    Minus,
    Star,
    Slash,
}

impl TokenKind {
    /// How the token is described in "expected X, found Y" messages.
    pub(crate) fn describe(self) -> &'static str {
        use TokenKind::*;
        match self {
            Word => "a name",
            Int => "an integer",
            Decimal => "a decimal",
            Money => "an amount of money",
            Tokens => "a token count",
            Duration => "a duration",
            Percent => "a percentage",
            Str => "a string",
            LBrace => "`{`",
            RBrace => "`}`",
            LParen => "`(`",
            RParen => "`)`",
            LBracket => "`[`",
            RBracket => "`]`",
            Comma => "`,`",
            Colon => "`:`",
            Dot => "`.`",
            Assign => "`=`",
            EqEq => "`==`",
            NotEq => "`!=`",
            Lt => "`<`",
            Le => "`<=`",
            Gt => "`>`",
            Ge => "`>=`",
            Arrow => "`=>`",
            Plus => "`+`",
            Minus => "`-`",
            Star => "`*`",
            Slash => "`/`",
        }
    }
}

/// A token's decoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenValue {
    None,
    /// A quantity in 10⁻⁹ units; `None` when the literal was invalid (already reported).
    Number(Option<i64>),
    /// A string's decoded text.
    Str(String),
    /// An integer too large for a fixed-point count. Not reported by the lexer: as a
    /// `version` or `precedence` it is judged by the checker's own range.
    OutOfRange,
}

/// A cooked token with its span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
    pub value: TokenValue,
}

/// How the logos callback classified a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumForm {
    /// Digits (and fraction) only; `unit_at` marks a following `usd`/`tokens` word.
    Plain,
    Percent,
    /// A suffix word glued to the digits, starting at this offset within the token.
    Suffix(usize),
    /// Whitespace then `usd` or `tokens`, the word starting at this offset.
    SpacedUnit(usize),
}

#[derive(Logos, Debug, Clone, Copy, PartialEq, Eq)]
#[logos(skip r"[ \t\r\n]+")]
#[logos(skip(r"//[^\n]*", allow_greedy = true))]
enum Raw {
    #[token("/*", block_comment)]
    BlockComment(bool),
    #[regex("[A-Za-z_][A-Za-z0-9_]*")]
    Word,
    #[regex("[0-9]", number)]
    Number(NumForm),
    #[token("$", money)]
    Money(bool),
    #[token("\"", string)]
    Str(bool),
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token(".")]
    Dot,
    #[token("=")]
    Assign,
    #[token("==")]
    EqEq,
    #[token("!=")]
    NotEq,
    #[token("<")]
    Lt,
    #[token("<=")]
    Le,
    #[token(">")]
    Gt,
    #[token(">=")]
    Ge,
    #[token("=>")]
    Arrow,
    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("/")]
    Slash,
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Consumes a block comment; `false` when it runs to the end of the file.
fn block_comment(lex: &mut logos::Lexer<Raw>) -> bool {
    match lex.remainder().find("*/") {
        Some(end) => {
            lex.bump(end + 2);
            true
        }
        None => {
            lex.bump(lex.remainder().len());
            false
        }
    }
}

/// Consumes a string body; `false` when a newline or the end of file comes first.
fn string(lex: &mut logos::Lexer<Raw>) -> bool {
    let rest = lex.remainder().as_bytes();
    let mut i = 0;
    while let Some(&c) = rest.get(i) {
        match c {
            b'"' => {
                lex.bump(i + 1);
                return true;
            }
            b'\n' => break,
            b'\\' if rest.get(i + 1).is_some_and(|&n| n != b'\n') => i += 2,
            _ => i += 1,
        }
    }
    lex.bump(i.min(rest.len()));
    false
}

/// Length of the digits-and-underscores run at the start of `s`.
fn digit_run(s: &[u8]) -> usize {
    s.iter()
        .take_while(|c| c.is_ascii_digit() || **c == b'_')
        .count()
}

/// Consumes the rest of a number after its first digit: more digits, a fraction, and a
/// suffix (`%`, a glued word, or whitespace then `usd`/`tokens`).
fn number(lex: &mut logos::Lexer<Raw>) -> NumForm {
    let rest = lex.remainder().as_bytes();
    let mut i = digit_run(rest);
    if rest.get(i) == Some(&b'.') && rest.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        i += rest
            .get(i..)
            .map_or(0, |s| s.iter().take_while(|c| c.is_ascii_digit()).count());
    }
    let form = number_suffix(rest, &mut i);
    lex.bump(i);
    // Offsets in the form are relative to the whole token, which began one digit earlier.
    match form {
        NumForm::Suffix(at) => NumForm::Suffix(at + 1),
        NumForm::SpacedUnit(at) => NumForm::SpacedUnit(at + 1),
        other => other,
    }
}

fn number_suffix(rest: &[u8], i: &mut usize) -> NumForm {
    match rest.get(*i) {
        Some(b'%') => {
            *i += 1;
            NumForm::Percent
        }
        Some(&c) if c.is_ascii_alphabetic() || c == b'_' => {
            let at = *i;
            *i += rest
                .get(at..)
                .map_or(0, |s| s.iter().take_while(|c| is_ident_char(**c)).count());
            NumForm::Suffix(at)
        }
        _ => {
            let ws = rest.get(*i..).map_or(0, |s| {
                s.iter().take_while(|c| c.is_ascii_whitespace()).count()
            });
            let at = *i + ws;
            for unit in ["usd", "tokens"] {
                let end = at + unit.len();
                let word = rest.get(at..end);
                if ws > 0
                    && word == Some(unit.as_bytes())
                    && !rest.get(end).is_some_and(|c| is_ident_char(*c))
                {
                    *i = end;
                    return NumForm::SpacedUnit(at);
                }
            }
            NumForm::Plain
        }
    }
}

/// Consumes `$`-money's digits; `false` when no well-formed amount follows.
fn money(lex: &mut logos::Lexer<Raw>) -> bool {
    let rest = lex.remainder().as_bytes();
    if !rest.first().is_some_and(u8::is_ascii_digit) {
        return false;
    }
    let mut i = digit_run(rest);
    if rest.get(i) == Some(&b'.') && rest.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        i += rest
            .get(i..)
            .map_or(0, |s| s.iter().take_while(|c| c.is_ascii_digit()).count());
    }
    let glued = rest.get(i).is_some_and(|c| is_ident_char(*c));
    i += rest
        .get(i..)
        .map_or(0, |s| s.iter().take_while(|c| is_ident_char(**c)).count());
    lex.bump(i);
    !glued
}

/// Lexes one file into cooked tokens, with its diagnostics.
pub fn lex(file: FileId, text: &str) -> (Vec<Token>, Vec<Diagnostic>) {
    let mut tokens = Vec::new();
    let mut diags = Vec::new();
    let mut lexer = Raw::lexer(text);
    while let Some(raw) = lexer.next() {
        let range = lexer.span();
        let span = Span::new(file, range.start, range.end);
        let slice = lexer.slice();
        let Ok(raw) = raw else {
            let ch = slice.chars().next().unwrap_or('?');
            diags.push(
                Diagnostic::new(Code::UnexpectedChar, span, format!("unexpected character `{}`", ch.escape_debug()))
                    .with_help("Lever source uses ASCII names, numbers, strings and `{ } ( ) [ ] , : . = == != < <= > >= => + - * /`"),
            );
            continue;
        };
        if let Some(token) = cook(raw, slice, span, &mut diags) {
            tokens.push(token);
        }
    }
    (tokens, diags)
}

fn simple(kind: TokenKind, span: Span) -> Option<Token> {
    Some(Token {
        kind,
        span,
        value: TokenValue::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::num::SCALE;

    fn kinds(text: &str) -> Vec<(TokenKind, TokenValue)> {
        let (tokens, diags) = lex(FileId(0), text);
        assert!(diags.is_empty(), "{diags:?}");
        tokens.into_iter().map(|t| (t.kind, t.value)).collect()
    }

    fn codes(text: &str) -> Vec<&'static str> {
        lex(FileId(0), text)
            .1
            .iter()
            .map(|d| d.code.as_str())
            .collect()
    }

    #[test]
    fn quantities_are_exact_fixed_point() {
        use TokenKind::*;
        let n = |v| TokenValue::Number(Some(v));
        assert_eq!(kinds("$5.00"), vec![(Money, n(5 * SCALE))]);
        assert_eq!(kinds("5.00 usd"), vec![(Money, n(5 * SCALE))]);
        assert_eq!(kinds("5usd"), vec![(Money, n(5 * SCALE))]);
        assert_eq!(kinds("200_000 tokens"), vec![(Tokens, n(200_000 * SCALE))]);
        assert_eq!(
            kinds("250ms 30s 5m 1h 1d"),
            vec![
                (Duration, n(250_000_000)),
                (Duration, n(30 * SCALE)),
                (Duration, n(300 * SCALE)),
                (Duration, n(3_600 * SCALE)),
                (Duration, n(86_400 * SCALE)),
            ]
        );
        assert_eq!(kinds("87.5%"), vec![(Percent, n(87_500_000_000))]);
        assert_eq!(kinds("0.1"), vec![(Decimal, n(100_000_000))]);
    }

    #[test]
    fn unit_words_need_a_word_boundary() {
        use TokenKind::*;
        let got: Vec<TokenKind> = kinds("5 usdx").into_iter().map(|(k, _)| k).collect();
        assert_eq!(got, vec![Int, Word]);
    }

    #[test]
    fn bad_literals_are_diagnosed() {
        assert_eq!(codes("0.1234567891"), vec!["E0005"]);
        assert_eq!(codes("5min"), vec!["E0006"]);
        assert_eq!(codes("1.5h"), vec!["E0006"]);
        assert_eq!(codes("$ 5"), vec!["E0006"]);
        assert_eq!(codes("\"abc"), vec!["E0002"]);
        assert_eq!(codes("\"a\\qb\""), vec!["E0003"]);
        assert_eq!(codes("\"\\u{D800}\""), vec!["E0051"]);
        assert_eq!(codes("/* open"), vec!["E0004"]);
        assert_eq!(codes("a # b"), vec!["E0001"]);
        assert_eq!(codes("99999999999.0"), vec!["E0050"]);
        assert_eq!(codes("99999999999"), Vec::<&str>::new());
    }

    #[test]
    fn strings_decode_escapes() {
        let v = kinds(r#""a\"b\\c\n\u{20AC}""#);
        assert_eq!(
            v,
            vec![(TokenKind::Str, TokenValue::Str("a\"b\\c\n€".into()))]
        );
    }
}
