//! Cooking: a raw token's text becomes its value (exact fixed-point numbers, durations,
//! money, decoded strings), with a diagnostic for a malformed literal.

use super::{NumForm, Raw, Token, TokenKind, TokenValue, simple};
use crate::base::diag::{Code, Diagnostic};
use crate::base::num::{self, DecimalError, SCALE};
use crate::base::source::Span;

pub(super) fn cook(
    raw: Raw,
    slice: &str,
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<Token> {
    use TokenKind as K;
    match raw {
        Raw::BlockComment(true) => None,
        Raw::BlockComment(false) => {
            diags.push(
                Diagnostic::new(
                    Code::UnterminatedComment,
                    Span {
                        end: span.start + 2,
                        ..span
                    },
                    "unterminated block comment",
                )
                .with_help("close it with `*/`; block comments do not nest"),
            );
            None
        }
        Raw::Word => simple(K::Word, span),
        Raw::Number(form) => Some(cook_number(form, slice, span, diags)),
        Raw::Money(ok) => Some(cook_money(ok, slice, span, diags)),
        Raw::Str(terminated) => Some(cook_string(terminated, slice, span, diags)),
        Raw::LBrace => simple(K::LBrace, span),
        Raw::RBrace => simple(K::RBrace, span),
        Raw::LParen => simple(K::LParen, span),
        Raw::RParen => simple(K::RParen, span),
        Raw::LBracket => simple(K::LBracket, span),
        Raw::RBracket => simple(K::RBracket, span),
        Raw::Comma => simple(K::Comma, span),
        Raw::Colon => simple(K::Colon, span),
        Raw::Dot => simple(K::Dot, span),
        Raw::Assign => simple(K::Assign, span),
        Raw::EqEq => simple(K::EqEq, span),
        Raw::NotEq => simple(K::NotEq, span),
        Raw::Lt => simple(K::Lt, span),
        Raw::Le => simple(K::Le, span),
        Raw::Gt => simple(K::Gt, span),
        Raw::Ge => simple(K::Ge, span),
        Raw::Arrow => simple(K::Arrow, span),
        Raw::Plus => simple(K::Plus, span),
        Raw::Minus => simple(K::Minus, span),
        Raw::Star => simple(K::Star, span),
        Raw::Slash => simple(K::Slash, span),
    }
}

/// Nanoseconds in one unit of a duration suffix.
pub(super) fn duration_unit(suffix: &str) -> Option<i64> {
    match suffix {
        "ms" => Some(1_000_000),
        "s" => Some(SCALE),
        "m" => Some(60 * SCALE),
        "h" => Some(3_600 * SCALE),
        "d" => Some(86_400 * SCALE),
        _ => None,
    }
}

pub(super) fn cook_number(
    form: NumForm,
    slice: &str,
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Token {
    let (digits, kind, per_unit) = match form {
        NumForm::Plain => {
            let kind = if slice.contains('.') {
                TokenKind::Decimal
            } else {
                TokenKind::Int
            };
            (slice, kind, SCALE)
        }
        NumForm::Percent => (slice.trim_end_matches('%'), TokenKind::Percent, SCALE),
        NumForm::SpacedUnit(at) | NumForm::Suffix(at) => {
            let (digits, suffix) = slice.split_at(at.min(slice.len()));
            let digits = digits.trim_end();
            match (suffix, duration_unit(suffix)) {
                ("usd", _) => (digits, TokenKind::Money, SCALE),
                ("tokens", _) => (digits, TokenKind::Tokens, SCALE),
                (_, Some(per)) if !digits.contains('.') => (digits, TokenKind::Duration, per),
                (_, Some(_)) => {
                    diags.push(
                        Diagnostic::new(Code::BadNumber, span, "durations take whole numbers")
                            .with_help("use a smaller unit, e.g. `90m` instead of `1.5h`"),
                    );
                    return number_token(TokenKind::Duration, span, None);
                }
                _ => {
                    diags.push(
                        Diagnostic::new(
                            Code::BadNumber,
                            span,
                            format!("unknown number suffix `{suffix}`"),
                        )
                        .with_help(
                            "a number may end in `%`, `ms`, `s`, `m`, `h`, `d`, `usd` or `tokens`",
                        ),
                    );
                    return number_token(TokenKind::Int, span, None);
                }
            }
        }
    };
    if kind == TokenKind::Int
        && num::parse_decimal(digits, per_unit) == Err(DecimalError::OutOfRange)
    {
        return Token {
            kind,
            span,
            value: TokenValue::OutOfRange,
        };
    }
    let value = read_decimal(digits, per_unit, span, diags);
    number_token(kind, span, value)
}

pub(super) fn cook_money(
    well_formed: bool,
    slice: &str,
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Token {
    if !well_formed {
        diags.push(
            Diagnostic::new(Code::BadNumber, span, "malformed amount of money")
                .with_help("write money as `$5` or `$5.00`, with no space after `$`"),
        );
        return number_token(TokenKind::Money, span, None);
    }
    let value = read_decimal(slice.trim_start_matches('$'), SCALE, span, diags);
    number_token(TokenKind::Money, span, value)
}

pub(super) fn number_token(kind: TokenKind, span: Span, value: Option<i64>) -> Token {
    Token {
        kind,
        span,
        value: TokenValue::Number(value),
    }
}

pub(super) fn read_decimal(
    digits: &str,
    per_unit: i64,
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<i64> {
    match num::parse_decimal(digits, per_unit) {
        Ok(v) => Some(v),
        Err(DecimalError::TooManyDecimals) => {
            diags.push(
                Diagnostic::new(Code::TooManyDecimals, span, "more than 9 decimal places")
                    .with_help("Lever values are exact to 9 decimal places and are never rounded"),
            );
            None
        }
        Err(DecimalError::Malformed) => {
            diags.push(
                Diagnostic::new(
                    Code::BadNumber,
                    span,
                    format!("malformed number `{digits}`"),
                )
                .with_help("underscores go between digits, one at a time: `200_000`"),
            );
            None
        }
        Err(DecimalError::OutOfRange) => {
            diags.push(
                Diagnostic::new(Code::NumberOutOfRange, span, format!("number `{digits}` is out of range"))
                    .with_help("values are signed 64-bit counts of 10⁻⁹ units: at most about 9.2 billion units (106,751 days for durations)"),
            );
            None
        }
    }
}

pub(super) fn cook_string(
    terminated: bool,
    slice: &str,
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Token {
    let body_end = if terminated {
        slice.len().saturating_sub(1)
    } else {
        slice.len()
    };
    let body = slice.get(1..body_end).unwrap_or("");
    if !terminated {
        diags.push(
            Diagnostic::new(Code::UnterminatedString, span, "unterminated string")
                .with_help("close the string with `\"` on the same line; write a newline as `\\n`"),
        );
    }
    let value = decode_escapes(body, span, diags);
    Token {
        kind: TokenKind::Str,
        span,
        value: TokenValue::Str(value),
    }
}

pub(super) fn decode_escapes(body: &str, span: Span, diags: &mut Vec<Diagnostic>) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let escape_start = span.start as usize + 1 + at;
        match chars.next() {
            Some((_, '"')) => out.push('"'),
            Some((_, '\\')) => out.push('\\'),
            Some((_, 'n')) => out.push('\n'),
            Some((_, 't')) => out.push('\t'),
            Some((_, 'u')) => match unicode_escape(&mut chars) {
                Ok(Some(ch)) => out.push(ch),
                Ok(None) => diags.push(Diagnostic::new(
                    Code::InvalidCodePoint,
                    Span::new(span.file, escape_start, span.end as usize),
                    "`\\u{...}` names no unicode scalar value",
                )),
                Err(()) => diags.push(invalid_escape(span, escape_start)),
            },
            _ => diags.push(invalid_escape(span, escape_start)),
        }
    }
    out
}

pub(super) fn invalid_escape(span: Span, at: usize) -> Diagnostic {
    Diagnostic::new(
        Code::InvalidEscape,
        Span::new(span.file, at, at + 2),
        "invalid escape in string",
    )
    .with_help("strings take `\\\"`, `\\\\`, `\\n`, `\\t` and `\\u{1F600}`")
}

/// Reads `{HEX}` (1 to 6 hex digits) after `\u`: `Err` for bad syntax, `Ok(None)` for a
/// number that is no unicode scalar value.
pub(super) fn unicode_escape(
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<Option<char>, ()> {
    if chars.next().map(|(_, c)| c) != Some('{') {
        return Err(());
    }
    let mut hex = String::new();
    loop {
        match chars.next().map(|(_, c)| c) {
            Some('}') => break,
            Some(c) if c.is_ascii_hexdigit() && hex.len() < 6 => hex.push(c),
            _ => return Err(()),
        }
    }
    if hex.is_empty() {
        return Err(());
    }
    Ok(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32))
}
