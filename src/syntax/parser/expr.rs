//! Expressions: precedence climbing from `or` down to primaries and aggregates.

use super::{PResult, Parser};
use crate::base::diag::{Code, Diagnostic};
use crate::syntax::ast::*;
use crate::syntax::lexer::{TokenKind, TokenValue};

impl<'a> Parser<'a> {
    // ----- expressions --------------------------------------------------------------

    pub(crate) fn expr(&mut self) -> PResult<Expr> {
        self.nested(|p| p.binary_chain(0))
    }

    /// `or` (level 0), `and` (1), `not` (2), then comparisons.
    pub(super) fn binary_chain(&mut self, level: u8) -> PResult<Expr> {
        let (word, op) = match level {
            0 => ("or", BinOp::Or),
            1 => ("and", BinOp::And),
            _ => return self.not_expr(),
        };
        let saved = self.nesting;
        let mut left = self.binary_chain(level + 1)?;
        while self.at_word(word) {
            self.deeper()?;
            self.bump();
            let right = self.binary_chain(level + 1)?;
            left = binary(op, left, right);
        }
        self.nesting = saved;
        Ok(left)
    }

    pub(super) fn not_expr(&mut self) -> PResult<Expr> {
        if self.at_word("not") {
            let start = self.bump().map_or_else(|| self.here(), |t| t.span);
            let inner = self.nested(Self::not_expr)?;
            let span = start.to(inner.span);
            return Ok(Expr {
                kind: ExprKind::Not(Box::new(inner)),
                span,
            });
        }
        self.comparison()
    }

    pub(super) fn comparison_op(&self) -> Option<BinOp> {
        Some(match self.kind()? {
            TokenKind::EqEq => BinOp::Eq,
            TokenKind::NotEq => BinOp::Ne,
            TokenKind::Lt => BinOp::Lt,
            TokenKind::Le => BinOp::Le,
            TokenKind::Gt => BinOp::Gt,
            TokenKind::Ge => BinOp::Ge,
            _ => return None,
        })
    }

    pub(super) fn comparison(&mut self) -> PResult<Expr> {
        let left = self.additive()?;
        let result = if let Some(op) = self.comparison_op() {
            self.bump();
            let right = self.additive()?;
            binary(op, left, right)
        } else if self.at_word("in") {
            self.bump();
            self.expect(TokenKind::LBracket)?;
            let mut list = Vec::new();
            if !self.at(TokenKind::RBracket) {
                list.push(self.expr()?);
                while self.at(TokenKind::Comma) {
                    self.bump();
                    list.push(self.expr()?);
                }
            }
            self.expect(TokenKind::RBracket)?;
            let span = left.span.to(self.prev_span());
            Expr {
                kind: ExprKind::In(Box::new(left), list),
                span,
            }
        } else {
            return Ok(left);
        };
        if self.comparison_op().is_some() || self.at_word("in") {
            return Err(self.error_help(
                "the end of the comparison",
                "comparisons do not chain; combine them with `and`",
            ));
        }
        Ok(result)
    }

    pub(super) fn additive(&mut self) -> PResult<Expr> {
        let saved = self.nesting;
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.kind() {
                Some(TokenKind::Plus) => BinOp::Add,
                Some(TokenKind::Minus) => BinOp::Sub,
                _ => {
                    self.nesting = saved;
                    return Ok(left);
                }
            };
            self.deeper()?;
            self.bump();
            let right = self.multiplicative()?;
            left = binary(op, left, right);
        }
    }

    pub(super) fn multiplicative(&mut self) -> PResult<Expr> {
        let saved = self.nesting;
        let mut left = self.unary()?;
        loop {
            let op = match self.kind() {
                Some(TokenKind::Star) => BinOp::Mul,
                Some(TokenKind::Slash) => BinOp::Div,
                _ => {
                    self.nesting = saved;
                    return Ok(left);
                }
            };
            self.deeper()?;
            self.bump();
            let right = self.unary()?;
            left = binary(op, left, right);
        }
    }

    pub(super) fn unary(&mut self) -> PResult<Expr> {
        if self.at(TokenKind::Minus) {
            let start = self.bump().map_or_else(|| self.here(), |t| t.span);
            let inner = self.nested(Self::unary)?;
            let span = start.to(inner.span);
            return Ok(Expr {
                kind: ExprKind::Neg(Box::new(inner)),
                span,
            });
        }
        let prim = self.primary()?;
        if !self.at(TokenKind::LBracket) {
            return Ok(prim);
        }
        self.bump();
        let key = self.string()?;
        self.expect(TokenKind::RBracket)?;
        let span = prim.span.to(self.prev_span());
        Ok(Expr {
            kind: ExprKind::Index(Box::new(prim), key),
            span,
        })
    }

    pub(super) fn primary(&mut self) -> PResult<Expr> {
        let Some(t) = self.peek() else {
            return Err(self.error("an expression"));
        };
        if t.value == TokenValue::OutOfRange {
            self.diags.push(
                Diagnostic::new(Code::NumberOutOfRange, t.span, format!("number `{}` is out of range", self.text_of(t)))
                    .with_help("values are signed 64-bit counts of 10⁻⁹ units: at most about 9.2 billion units"),
            );
        }
        let literal = |unit| {
            ExprKind::Lit(Literal::Number {
                unit,
                value: match t.value {
                    TokenValue::Number(v) => v,
                    _ => None,
                },
            })
        };
        let kind = match t.kind {
            TokenKind::Int | TokenKind::Decimal => literal(NumUnit::Count),
            TokenKind::Money => literal(NumUnit::Usd),
            TokenKind::Tokens => literal(NumUnit::Tokens),
            TokenKind::Duration => literal(NumUnit::Duration),
            TokenKind::Percent => literal(NumUnit::Percent),
            TokenKind::Str => ExprKind::Lit(Literal::Str(match &t.value {
                TokenValue::Str(s) => s.clone(),
                _ => String::new(),
            })),
            TokenKind::LParen => {
                self.bump();
                let inner = self.expr()?;
                self.expect(TokenKind::RParen)?;
                return Ok(Expr {
                    kind: inner.kind,
                    span: t.span.to(self.prev_span()),
                });
            }
            TokenKind::Word => return self.word_primary(),
            _ => return Err(self.error("an expression")),
        };
        self.bump();
        Ok(Expr { kind, span: t.span })
    }

    pub(super) fn word_primary(&mut self) -> PResult<Expr> {
        let start = self.here();
        let word = self.word().unwrap_or("");
        if word == "true" || word == "false" {
            self.bump();
            return Ok(Expr {
                kind: ExprKind::Lit(Literal::Bool(word == "true")),
                span: start,
            });
        }
        let followed_by_paren = self.peek_at(1).is_some_and(|t| t.kind == TokenKind::LParen);
        if let Some(func) = AggFunc::from_word(word).filter(|_| followed_by_paren) {
            return self.aggregate(func);
        }
        let name = self.qname()?;
        Ok(Expr {
            span: name.span,
            kind: ExprKind::Name(name),
        })
    }

    pub(super) fn aggregate(&mut self, func: AggFunc) -> PResult<Expr> {
        let start = self.here();
        self.bump();
        self.expect(TokenKind::LParen)?;
        let mut arg = None;
        let mut filter = None;
        let mut window = None;
        if func == AggFunc::Count {
            if !self.at(TokenKind::RParen) {
                arg = Some(Box::new(self.expr()?));
            }
        } else {
            arg = Some(Box::new(self.expr()?));
            if self.at_word("where") {
                self.bump();
                filter = Some(Box::new(self.expr()?));
            }
            if func == AggFunc::Rate {
                self.expect(TokenKind::Comma)?;
                window = Some(self.quantity(TokenKind::Duration)?);
            }
        }
        self.expect(TokenKind::RParen)?;
        Ok(Expr {
            kind: ExprKind::Agg {
                func,
                arg,
                filter,
                window,
            },
            span: start.to(self.prev_span()),
        })
    }
}

pub(super) fn binary(op: BinOp, left: Expr, right: Expr) -> Expr {
    let span = left.span.to(right.span);
    Expr {
        kind: ExprKind::Binary(op, Box::new(left), Box::new(right)),
        span,
    }
}
