//! `lever fmt`: one canonical layout for `.policy` files (docs/fmt.md).
//!
//! The formatter re-spaces the file's own token sequence and keeps every comment, so it
//! cannot change meaning: the tokens out are the tokens in (a test also checks every
//! policy's hash and bytecode). Layout:
//! - four spaces of indentation per open block, plus four on a continuation line;
//! - every item on a line of its own; in `policy`, `test` and `override` blocks, every clause,
//!   statement and rule too; a `limit` block with two arms (`near` and `breach`) on three
//!   lines or more, with one arm on one line (`{ breach => stop }`);
//! - elsewhere the author's line breaks are kept, except inside `(...)` and `[...]`;
//! - at most one blank line in a row, none after `{` or before `}`;
//! - one space between tokens, none inside `(` `)` `[` `]`, before `,` `:` `.`, after
//!   `.` or a unary `-`, or between a call's name and its `(`;
//! - comments where they were: a comment on a line of its own stays on its own line, a
//!   trailing one stays at the end of its line; no trailing whitespace; one final newline.

use crate::base::diag::Diagnostic;
use crate::base::source::FileId;
use crate::syntax::lexer::{self, TokenKind};
use crate::syntax::parser::{CLAUSE_KEYWORDS, ITEM_KEYWORDS, is_reserved};

const TEST_STATEMENTS: &[&str] = &[
    "run", "step", "override", "approve", "end", "spent", "expect",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Token(TokenKind),
    LineComment,
    BlockComment,
}

#[derive(Debug, Clone)]
struct El<'a> {
    kind: Kind,
    text: &'a str,
    /// Newlines between the previous element and this one in the source.
    newlines: usize,
}

impl El<'_> {
    fn is(&self, kind: TokenKind) -> bool {
        self.kind == Kind::Token(kind)
    }

    fn word(&self) -> Option<&str> {
        (self.kind == Kind::Token(TokenKind::Word)).then_some(self.text)
    }

    fn is_comment(&self) -> bool {
        matches!(self.kind, Kind::LineComment | Kind::BlockComment)
    }
}

/// Blocks whose members each start a line, and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Policy,
    Test,
    Override,
    /// A `limit` block; `true` when laid out on several lines.
    Limit(bool),
    /// `alerts`, `inspect`, labels: the author's line breaks are kept.
    Other,
}

impl Block {
    fn members(self) -> &'static [&'static str] {
        match self {
            Block::Policy => CLAUSE_KEYWORDS,
            Block::Test => TEST_STATEMENTS,
            Block::Override => &["allow"],
            Block::Limit(true) => &["near", "breach"],
            Block::Limit(false) | Block::Other => &[],
        }
    }

    fn multiline(self) -> bool {
        !matches!(self, Block::Limit(false) | Block::Other)
    }
}

struct Frame {
    block: Block,
    /// Open `(` and `[` inside this block.
    parens: usize,
    /// The word that started the member being read.
    head: Option<String>,
}

/// The elements of a file: its tokens and its comments, with the newlines before each.
fn elements(text: &str) -> Vec<El<'_>> {
    let (tokens, _) = lexer::lex(FileId(0), text);
    let mut out = Vec::new();
    let mut at = 0;
    for t in &tokens {
        let newlines = gap(text, at, t.span.start as usize, &mut out);
        out.push(El {
            kind: Kind::Token(t.kind),
            text: text.get(t.span.range()).unwrap_or(""),
            newlines,
        });
        at = t.span.end as usize;
    }
    gap(text, at, text.len(), &mut out);
    out
}

/// The comments between two tokens (`from..to` holds only whitespace and comments);
/// returns the newlines after the last of them.
fn gap<'a>(text: &'a str, from: usize, to: usize, out: &mut Vec<El<'a>>) -> usize {
    let bytes = text.as_bytes();
    let mut i = from;
    let mut newlines = 0;
    while i < to {
        match bytes.get(i) {
            Some(b'\n') => {
                newlines += 1;
                i += 1;
            }
            Some(b'/') if bytes.get(i + 1) == Some(&b'/') => {
                let end = text
                    .get(i..to)
                    .and_then(|s| s.find('\n'))
                    .map_or(to, |n| i + n);
                out.push(El {
                    kind: Kind::LineComment,
                    text: text.get(i..end).unwrap_or("").trim_end(),
                    newlines,
                });
                newlines = 0;
                i = end;
            }
            Some(b'/') if bytes.get(i + 1) == Some(&b'*') => {
                let end = text
                    .get(i + 2..to)
                    .and_then(|s| s.find("*/"))
                    .map_or(to, |n| i + 2 + n + 2);
                out.push(El {
                    kind: Kind::BlockComment,
                    text: text.get(i..end).unwrap_or(""),
                    newlines,
                });
                newlines = 0;
                i = end;
            }
            _ => i += 1,
        }
    }
    newlines
}

/// For each `{` of a `limit`: whether it has two arms or a comment (so several lines).
fn limit_multiline(els: &[El<'_>], open: usize) -> bool {
    let mut depth = 0usize;
    let mut arms = 0;
    for el in els.iter().skip(open) {
        if el.is(TokenKind::LBrace) {
            depth += 1;
        } else if el.is(TokenKind::RBrace) {
            depth -= 1;
            if depth == 0 {
                break;
            }
        } else if el.is_comment() {
            return true;
        } else if depth == 1 && matches!(el.word(), Some("near" | "breach")) {
            arms += 1;
        }
    }
    arms >= 2
}

/// Whether a `-` after `prev` is a sign rather than a subtraction.
fn unary_after(prev: Option<&El<'_>>) -> bool {
    let Some(p) = prev else { return true };
    match p.kind {
        Kind::Token(TokenKind::Word) => {
            (is_reserved(p.text) && !matches!(p.text, "true" | "false"))
                || matches!(p.text, "to" | "up")
        }
        Kind::Token(
            TokenKind::Int
            | TokenKind::Decimal
            | TokenKind::Money
            | TokenKind::Tokens
            | TokenKind::Duration
            | TokenKind::Percent
            | TokenKind::Str
            | TokenKind::RParen
            | TokenKind::RBracket
            | TokenKind::RBrace,
        ) => false,
        _ => true,
    }
}

/// Whether a space goes between `prev` and `cur` on one line.
fn space(prev: &El<'_>, before_prev: Option<&El<'_>>, cur: &El<'_>) -> bool {
    use TokenKind::*;
    if cur.is_comment() || prev.is_comment() {
        return true;
    }
    if [Comma, RParen, RBracket, Dot, Colon]
        .iter()
        .any(|k| cur.is(*k))
    {
        return false;
    }
    if [LParen, LBracket, Dot].iter().any(|k| prev.is(*k)) {
        return false;
    }
    if cur.is(LParen)
        && prev
            .word()
            .is_some_and(|w| !is_reserved(w) && !matches!(w, "to" | "up" | "per"))
    {
        return false;
    }
    if cur.is(LBracket) && prev.word() == Some("labels") {
        return false;
    }
    if prev.is(Minus) && unary_after(before_prev) {
        return false;
    }
    true
}

/// The file laid out canonically, or the syntax errors that stop it (nothing is changed
/// in a file that does not parse).
pub fn format(text: &str) -> Result<String, Vec<Diagnostic>> {
    let (_, diags) = crate::syntax::parse_file(FileId(0), text);
    let errors: Vec<Diagnostic> = diags.into_iter().filter(|d| d.code.is_syntax()).collect();
    if !errors.is_empty() {
        return Err(errors);
    }
    let els = elements(text);
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut layout = Layout::default();
    let mut prev: Option<usize> = None;
    for (i, el) in els.iter().enumerate() {
        let p = prev.and_then(|j| els.get(j));
        let pp = prev.and_then(|j| j.checked_sub(1)).and_then(|j| els.get(j));
        let member = layout.is_member(el, p);
        if let Some(p) = p {
            layout.separate(&mut out, el, p, pp, member);
        }
        out.push_str(el.text);
        layout.track(el, member, &els, i);
        prev = Some(i);
    }
    out.push('\n');
    Ok(out)
}

/// Where the layout stands: the open blocks, and outside them the parens and the current
/// item's first word.
#[derive(Default)]
struct Layout {
    stack: Vec<Frame>,
    top_parens: usize,
    top_head: Option<String>,
}

impl Layout {
    fn parens(&self) -> usize {
        self.stack.last().map_or(self.top_parens, |f| f.parens)
    }

    /// The block an element sits in (for `}`: the block it closes).
    fn block(&self) -> Option<Block> {
        self.stack.last().map(|f| f.block)
    }

    /// Whether an element starts a member of its block (an item at the top level).
    fn is_member(&self, el: &El, p: Option<&El>) -> bool {
        let parens = self.parens();
        let after_expect = p.and_then(El::word) == Some("expect");
        el.word().is_some_and(|w| match self.block() {
            None => parens == 0 && ITEM_KEYWORDS.contains(&w),
            Some(b) => {
                parens == 0 && b.members().contains(&w) && !(b == Block::Test && after_expect)
            }
        })
    }

    /// What goes between the previous element `p` and `el`: a line break (with a blank
    /// line kept, and the indentation), a space, or nothing.
    fn separate(&self, out: &mut String, el: &El, p: &El, pp: Option<&El>, member: bool) {
        let closing = el.is(TokenKind::RBrace);
        let (parens, block) = (self.parens(), self.block());
        let opened_multiline = p.is(TokenKind::LBrace) && block.is_some_and(Block::multiline);
        let closes_multiline = closing && block.is_some_and(Block::multiline);
        let in_single_line = block == Some(Block::Limit(false)) || parens > 0;
        let newline = if p.kind == Kind::LineComment {
            true
        } else if el.kind == Kind::LineComment {
            el.newlines > 0
        } else if member || opened_multiline || closes_multiline {
            true
        } else if in_single_line && !el.is_comment() {
            false
        } else {
            el.newlines > 0
        };
        if !newline {
            if space(p, pp, el) {
                out.push(' ');
            }
            return;
        }
        out.push('\n');
        if el.newlines >= 2 && !p.is(TokenKind::LBrace) && !closing {
            out.push('\n');
        }
        let depth = if closing {
            self.stack.len().saturating_sub(1)
        } else {
            self.stack.len()
        };
        let continuation = !closing
            && !el.is_comment()
            && (parens > 0 || (block.is_none_or(Block::multiline) && !member));
        let indent = depth * 4 + if continuation { 4 } else { 0 };
        out.extend(std::iter::repeat_n(' ', indent));
    }

    /// Takes in an element: the member it starts, and the parens and blocks it opens or
    /// closes.
    fn track(&mut self, el: &El, member: bool, els: &[El], i: usize) {
        let Kind::Token(kind) = el.kind else {
            return;
        };
        if member {
            let head = Some(el.text.to_string());
            match self.stack.last_mut() {
                Some(f) => f.head = head,
                None => self.top_head = head,
            }
        }
        match kind {
            TokenKind::LParen | TokenKind::LBracket => match self.stack.last_mut() {
                Some(f) => f.parens += 1,
                None => self.top_parens += 1,
            },
            TokenKind::RParen | TokenKind::RBracket => match self.stack.last_mut() {
                Some(f) => f.parens = f.parens.saturating_sub(1),
                None => self.top_parens = self.top_parens.saturating_sub(1),
            },
            TokenKind::LBrace => {
                let head = self
                    .stack
                    .last()
                    .map_or(self.top_head.as_deref(), |f| f.head.as_deref());
                let block = match (self.block(), head) {
                    (None, Some("policy")) => Block::Policy,
                    (None, Some("test")) => Block::Test,
                    (Some(Block::Policy), Some("override")) => Block::Override,
                    (Some(Block::Policy), Some("limit")) => Block::Limit(limit_multiline(els, i)),
                    _ => Block::Other,
                };
                self.stack.push(Frame {
                    block,
                    parens: 0,
                    head: None,
                });
            }
            TokenKind::RBrace => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::format;

    #[test]
    fn spacing_and_breaks_follow_the_rules() {
        let messy = "import std.llm\nconst   H=-$0.25\npolicy p{version 1 scope agent in[\"a\",\"b\"]\n\n\n  limit std.llm.cost to $5+H{breach=>stop,alert( ui )}\nlimit std.llm.tokens to 100 tokens {\nnear 80%=>alert(ui) breach=>pause }  // tokens\n}\n";
        let want = "import std.llm\nconst H = -$0.25\npolicy p {\n    version 1\n    scope agent in [\"a\", \"b\"]\n\n    limit std.llm.cost to $5 + H { breach => stop, alert(ui) }\n    limit std.llm.tokens to 100 tokens {\n        near 80% => alert(ui)\n        breach => pause\n    } // tokens\n}\n";
        assert_eq!(format(messy).unwrap(), want);
        assert_eq!(format(want).unwrap(), want);
    }
}
