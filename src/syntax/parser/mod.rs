//! The parser: hand-written recursive descent over the cooked tokens.
//!
//! It follows the grammar appendix of LANGUAGE.md (and `grammar/lever.pest`, which a test
//! holds it to) and never gives up on a file: an error inside a clause skips to the next
//! clause of the policy, an error in an item skips to the next item, so a file with three
//! mistakes reports three diagnostics. Ranges, multiplicity and names are the checker's.

mod expr;
mod items;
mod policy;
mod scope;

use super::ast::*;
use super::lexer::{Token, TokenKind, TokenValue};
use crate::base::diag::{Code, Diagnostic};
use crate::base::source::{FileId, Span};

/// How deep expressions and scopes may nest (parentheses, `not`, `-`, and operator
/// chains, which build left-deep trees). A resource limit, not grammar: it keeps every
/// recursive stage of the pipeline far from the stack's end on hostile input.
pub(crate) const MAX_NESTING: usize = 256;

/// Words reserved everywhere (LANGUAGE §2); every other word is contextual.
pub(crate) const RESERVED: &[&str] = &[
    "import",
    "signal",
    "monitor",
    "const",
    "channel",
    "policy",
    "test",
    "extern",
    "let",
    "version",
    "description",
    "scope",
    "precedence",
    "conflict",
    "bind",
    "on_error",
    "inspect",
    "limit",
    "alerts",
    "override",
    "allow",
    "near",
    "breach",
    "true",
    "false",
    "and",
    "or",
    "not",
    "in",
    "where",
];

pub(crate) const ITEM_KEYWORDS: &[&str] = &[
    "import", "signal", "monitor", "const", "channel", "policy", "test", "extern", "let",
];

/// Item keywords that never start a clause: seeing one ends a policy whose `}` is missing.
const ITEM_ONLY_KEYWORDS: &[&str] = &[
    "import", "signal", "const", "channel", "policy", "test", "extern", "let",
];

pub(crate) const CLAUSE_KEYWORDS: &[&str] = &[
    "version",
    "description",
    "scope",
    "precedence",
    "conflict",
    "bind",
    "on_error",
    "inspect",
    "monitor",
    "limit",
    "alerts",
    "override",
];

pub(crate) fn is_reserved(word: &str) -> bool {
    RESERVED.contains(&word)
}

/// Parses one file's tokens. The tree holds every item that parsed; the diagnostics say
/// what did not.
pub(crate) fn parse(file: FileId, text: &str, tokens: &[Token]) -> (File, Vec<Diagnostic>) {
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
        nesting: 0,
        text,
        file,
        diags: Vec::new(),
    };
    let items = p.file_items();
    (File { file, items }, p.diags)
}

/// An error already reported as a diagnostic; the caller recovers.
struct Reported;

type PResult<T> = Result<T, Reported>;

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
    /// Current brace depth, counted as `{` and `}` are consumed.
    depth: usize,
    /// Depth of the expression or scope tree being built, bounded by [`MAX_NESTING`].
    nesting: usize,
    text: &'a str,
    file: FileId,
    diags: Vec<Diagnostic>,
}

impl<'a> Parser<'a> {
    // ----- token access -------------------------------------------------------------

    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos)
    }

    fn peek_at(&self, n: usize) -> Option<&'a Token> {
        self.tokens.get(self.pos + n)
    }

    fn kind(&self) -> Option<TokenKind> {
        self.peek().map(|t| t.kind)
    }

    fn text_of(&self, t: &Token) -> &'a str {
        self.text.get(t.span.range()).unwrap_or("")
    }

    /// The current token's text when it is a word.
    fn word(&self) -> Option<&'a str> {
        self.peek()
            .filter(|t| t.kind == TokenKind::Word)
            .map(|t| self.text_of(t))
    }

    fn at_word(&self, w: &str) -> bool {
        self.word() == Some(w)
    }

    fn at(&self, kind: TokenKind) -> bool {
        self.kind() == Some(kind)
    }

    fn bump(&mut self) -> Option<&'a Token> {
        let t = self.peek()?;
        match t.kind {
            TokenKind::LBrace => self.depth += 1,
            TokenKind::RBrace => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        self.pos += 1;
        Some(t)
    }

    /// Span of the current token, or an empty span at the end of the file.
    fn here(&self) -> Span {
        match self.peek() {
            Some(t) => t.span,
            None => {
                let end = self.text.len();
                Span::new(self.file, end, end)
            }
        }
    }

    /// Where a syntax error is shown: at the unexpected token, or just after the previous
    /// token when the unexpected one is on a later line (a missing `)` belongs to the line
    /// that lacks it).
    fn error_span(&self) -> Span {
        let here = self.here();
        let Some(prev) = self.pos.checked_sub(1).and_then(|i| self.tokens.get(i)) else {
            return here;
        };
        let gap = self
            .text
            .get(prev.span.end as usize..here.start as usize)
            .unwrap_or("");
        if gap.contains('\n') {
            return Span {
                start: prev.span.end,
                end: prev.span.end,
                ..prev.span
            };
        }
        here
    }

    fn prev_span(&self) -> Span {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .map_or_else(|| self.here(), |t| t.span)
    }

    fn found(&self) -> String {
        match self.peek() {
            None => "end of file".to_string(),
            Some(t) if t.kind == TokenKind::Word => format!("`{}`", self.text_of(t)),
            Some(t) => t.kind.describe().to_string(),
        }
    }

    fn error(&mut self, expected: &str) -> Reported {
        let message = format!("expected {expected}, found {}", self.found());
        let span = self.error_span();
        self.diags
            .push(Diagnostic::new(Code::Syntax, span, message));
        Reported
    }

    fn error_help(&mut self, expected: &str, help: &str) -> Reported {
        self.error(expected);
        if let Some(d) = self.diags.last_mut() {
            d.help = Some(help.to_string());
        }
        Reported
    }

    fn expect(&mut self, kind: TokenKind) -> PResult<&'a Token> {
        if self.at(kind) {
            return self.bump().ok_or(Reported);
        }
        Err(self.error(kind.describe()))
    }

    fn expect_word(&mut self, w: &str) -> PResult<Span> {
        if self.at_word(w) {
            return Ok(self.bump().map_or_else(|| self.here(), |t| t.span));
        }
        Err(self.error(&format!("`{w}`")))
    }

    /// Takes the word if it is one of `options`.
    fn eat_one_of(&mut self, options: &[&'static str]) -> Option<(&'static str, Span)> {
        let w = self.word()?;
        let hit = options.iter().copied().find(|o| *o == w)?;
        let span = self.bump()?.span;
        Some((hit, span))
    }

    fn expect_one_of(&mut self, options: &[&'static str]) -> PResult<(&'static str, Span)> {
        if let Some(hit) = self.eat_one_of(options) {
            return Ok(hit);
        }
        let list: Vec<String> = options.iter().map(|o| format!("`{o}`")).collect();
        Err(self.error(&list.join(" or ")))
    }

    // ----- terminals ----------------------------------------------------------------

    /// An identifier: a word that is not reserved.
    fn ident(&mut self) -> PResult<Name> {
        match self.word() {
            Some(w) if !is_reserved(w) => self.any_word(),
            Some(w) => {
                let w = w.to_string();
                Err(self.error_help(
                    "a name",
                    &format!("`{w}` is a reserved word; choose another name"),
                ))
            }
            None => Err(self.error("a name")),
        }
    }

    /// Any word, reserved or not (after `.`, channel argument names, `alert(...)`).
    fn any_word(&mut self) -> PResult<Name> {
        let t = self.expect(TokenKind::Word)?;
        Ok(Name {
            text: self.text_of(t).to_string(),
            span: t.span,
        })
    }

    fn qname(&mut self) -> PResult<QName> {
        let first = self.ident()?;
        let mut parts = vec![first];
        while self.at(TokenKind::Dot) {
            self.bump();
            parts.push(self.any_word()?);
        }
        let span = parts
            .first()
            .map(|f| f.span)
            .unwrap_or_else(|| self.here())
            .to(self.prev_span());
        Ok(QName { parts, span })
    }

    fn string(&mut self) -> PResult<StrLit> {
        let t = self.expect(TokenKind::Str)?;
        let value = match &t.value {
            TokenValue::Str(s) => s.clone(),
            _ => String::new(),
        };
        Ok(StrLit {
            value,
            span: t.span,
        })
    }

    fn int(&mut self) -> PResult<IntLit> {
        let t = self.expect(TokenKind::Int)?;
        let digits: String = self.text_of(t).chars().filter(|c| *c != '_').collect();
        Ok(IntLit {
            value: digits.parse().ok(),
            span: t.span,
        })
    }

    fn quantity(&mut self, kind: TokenKind) -> PResult<QuantityLit> {
        let t = self.expect(kind)?;
        let value = match t.value {
            TokenValue::Number(v) => v,
            _ => None,
        };
        Ok(QuantityLit {
            value,
            span: t.span,
        })
    }

    // ----- nesting ------------------------------------------------------------------

    /// One level deeper into the tree being built; an error past [`MAX_NESTING`].
    fn deeper(&mut self) -> PResult<()> {
        if self.nesting >= MAX_NESTING {
            let d = Diagnostic::new(
                Code::Syntax,
                self.here(),
                format!("nested more than {MAX_NESTING} levels deep"),
            )
            .with_help("split the expression into `const`s or monitors");
            self.diags.push(d);
            return Err(Reported);
        }
        self.nesting += 1;
        Ok(())
    }

    /// Runs `f` one level deeper, restoring the level afterwards.
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        self.deeper()?;
        let result = f(self);
        self.nesting = self.nesting.saturating_sub(1);
        result
    }

    // ----- recovery -----------------------------------------------------------------

    /// Skips to the next item keyword at the top level.
    fn recover_item(&mut self) {
        self.nesting = 0;
        while let Some(t) = self.peek() {
            if t.kind == TokenKind::Word {
                let w = self.text_of(t);
                if ITEM_ONLY_KEYWORDS.contains(&w)
                    || (self.depth == 0 && ITEM_KEYWORDS.contains(&w))
                {
                    self.depth = 0;
                    return;
                }
            }
            self.bump();
        }
    }

    /// Skips to the next clause of the policy whose body is at `depth`, or its `}`.
    fn recover_clause(&mut self, depth: usize) {
        self.nesting = 0;
        while let Some(t) = self.peek() {
            if self.depth == depth {
                if t.kind == TokenKind::RBrace {
                    return;
                }
                if t.kind == TokenKind::Word && CLAUSE_KEYWORDS.contains(&self.text_of(t)) {
                    return;
                }
            }
            if t.kind == TokenKind::Word && ITEM_ONLY_KEYWORDS.contains(&self.text_of(t)) {
                return;
            }
            if self.depth < depth {
                return;
            }
            self.bump();
        }
    }
}
