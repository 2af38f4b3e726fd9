//! Scopes: `and`, `or`, `not` and the selector comparisons of a policy's `scope`.

use super::{PResult, Parser};
use crate::syntax::ast::*;
use crate::syntax::lexer::TokenKind;

impl<'a> Parser<'a> {
    // ----- scopes -------------------------------------------------------------------

    pub(super) fn scope(&mut self) -> PResult<Scope> {
        self.nested(Self::scope_or)
    }

    pub(super) fn scope_or(&mut self) -> PResult<Scope> {
        let saved = self.nesting;
        let mut left = self.scope_and()?;
        while self.at_word("or") {
            self.deeper()?;
            self.bump();
            let right = self.scope_and()?;
            let span = left.span.to(right.span);
            left = Scope {
                kind: ScopeKind::Or(Box::new(left), Box::new(right)),
                span,
            };
        }
        self.nesting = saved;
        Ok(left)
    }

    pub(super) fn scope_and(&mut self) -> PResult<Scope> {
        let saved = self.nesting;
        let mut left = self.scope_not()?;
        while self.at_word("and") {
            self.deeper()?;
            self.bump();
            let right = self.scope_not()?;
            let span = left.span.to(right.span);
            left = Scope {
                kind: ScopeKind::And(Box::new(left), Box::new(right)),
                span,
            };
        }
        self.nesting = saved;
        Ok(left)
    }

    pub(super) fn scope_not(&mut self) -> PResult<Scope> {
        if self.at_word("not") {
            let start = self.bump().map_or_else(|| self.here(), |t| t.span);
            let inner = self.nested(Self::scope_not)?;
            let span = start.to(inner.span);
            return Ok(Scope {
                kind: ScopeKind::Not(Box::new(inner)),
                span,
            });
        }
        self.scope_atom()
    }

    pub(super) fn scope_atom(&mut self) -> PResult<Scope> {
        let start = self.here();
        if self.at_word("all") {
            self.bump();
            return Ok(Scope {
                kind: ScopeKind::All,
                span: start,
            });
        }
        if self.at(TokenKind::LParen) {
            self.bump();
            let inner = self.scope()?;
            self.expect(TokenKind::RParen)?;
            return Ok(Scope {
                kind: inner.kind,
                span: start.to(self.prev_span()),
            });
        }
        let selector = self.selector()?;
        let kind = if self.at(TokenKind::EqEq) || self.at(TokenKind::NotEq) {
            let negated = self.at(TokenKind::NotEq);
            self.bump();
            ScopeKind::Eq {
                selector,
                negated,
                value: self.string()?,
            }
        } else if self.at_word("in") {
            self.bump();
            self.expect(TokenKind::LBracket)?;
            let mut values = vec![self.string()?];
            while self.at(TokenKind::Comma) {
                self.bump();
                values.push(self.string()?);
            }
            self.expect(TokenKind::RBracket)?;
            ScopeKind::In { selector, values }
        } else {
            return Err(self.error("`==`, `!=` or `in`"));
        };
        Ok(Scope {
            kind,
            span: start.to(self.prev_span()),
        })
    }

    pub(super) fn selector(&mut self) -> PResult<Selector> {
        self.selector_with(
            "`all`, `tenant`, `agent`, `api_key`, `human_actor` or `labels[\"key\"]`",
            "a scope compares run attributes: `scope agent == \"support-bot\"`",
        )
    }

    /// A run attribute; `expected` and `help` say where it is used.
    pub(super) fn selector_with(&mut self, expected: &str, help: &str) -> PResult<Selector> {
        let (word, _) = self
            .eat_one_of(&["tenant", "agent", "api_key", "human_actor", "labels"])
            .ok_or_else(|| self.error_help(expected, help))?;
        Ok(match word {
            "tenant" => Selector::Tenant,
            "agent" => Selector::Agent,
            "api_key" => Selector::ApiKey,
            "human_actor" => Selector::HumanActor,
            _ => {
                self.expect(TokenKind::LBracket)?;
                let key = self.string()?;
                self.expect(TokenKind::RBracket)?;
                Selector::Label(key.value)
            }
        })
    }
}
