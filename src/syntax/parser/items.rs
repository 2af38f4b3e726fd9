//! Items: imports, signals, monitors, constants, channels, tests, externs and the file's list of them.

use super::{PResult, Parser, Reported};
use crate::syntax::ast::*;
use crate::syntax::lexer::TokenKind;

impl<'a> Parser<'a> {
    // ----- items --------------------------------------------------------------------

    pub(super) fn file_items(&mut self) -> Vec<Item> {
        let mut items = Vec::new();
        while self.peek().is_some() {
            let start = self.pos;
            match self.item() {
                Ok(item) => items.push(item),
                Err(Reported) => {
                    if self.pos == start {
                        self.bump();
                    }
                    self.recover_item();
                }
            }
        }
        items
    }

    pub(super) fn item(&mut self) -> PResult<Item> {
        let start = self.here();
        let Some(w) = self.word() else {
            return Err(self.error(
                "an item (`import`, `signal`, `monitor`, `const`, `channel`, `policy`, `test`)",
            ));
        };
        let kind = match w {
            "import" => {
                self.bump();
                ItemKind::Import(self.qname()?)
            }
            "signal" => {
                self.bump();
                let name = self.ident()?;
                self.expect(TokenKind::Colon)?;
                ItemKind::Signal {
                    name,
                    unit: self.unit()?,
                }
            }
            "monitor" => ItemKind::Monitor(self.monitor()?),
            "const" => {
                self.bump();
                let name = self.ident()?;
                self.expect(TokenKind::Assign)?;
                ItemKind::Const {
                    name,
                    value: self.expr()?,
                }
            }
            "channel" => ItemKind::Channel(self.channel()?),
            "policy" => ItemKind::Policy(self.policy()?),
            "test" => self.test()?,
            "extern" => {
                self.bump();
                let name = self.qname()?;
                self.expect(TokenKind::Colon)?;
                ItemKind::Extern {
                    name,
                    unit: self.unit()?,
                }
            }
            "let" => {
                self.bump();
                let name = self.qname()?;
                self.expect(TokenKind::Assign)?;
                ItemKind::Let {
                    name,
                    value: self.expr()?,
                }
            }
            _ => {
                return Err(self.error(
                    "an item (`import`, `signal`, `monitor`, `const`, `channel`, `policy`, `test`)",
                ));
            }
        };
        Ok(Item {
            kind,
            span: start.to(self.prev_span()),
        })
    }

    pub(super) fn unit(&mut self) -> PResult<UnitName> {
        const UNITS: &[&str] = &[
            "count",
            "tokens",
            "usd",
            "duration",
            "bool",
            "string",
            "timestamp",
            "map",
        ];
        let (word, span) = self.expect_one_of(UNITS)?;
        let unit = Unit::from_word(word).unwrap_or(Unit::Count);
        Ok(UnitName { unit, span })
    }

    pub(super) fn monitor(&mut self) -> PResult<MonitorDecl> {
        let start = self.expect_word("monitor")?;
        let name = self.ident()?;
        self.expect(TokenKind::Assign)?;
        let expr = self.expr()?;
        Ok(MonitorDecl {
            name,
            expr,
            span: start.to(self.prev_span()),
        })
    }

    pub(super) fn channel(&mut self) -> PResult<ChannelDecl> {
        self.expect_word("channel")?;
        let name = self.ident()?;
        self.expect(TokenKind::Assign)?;
        let (kind, _) = self.expect_one_of(&["webhook", "slack", "email"])?;
        let kind = match kind {
            "webhook" => ChannelKind::Webhook,
            "slack" => ChannelKind::Slack,
            _ => ChannelKind::Email,
        };
        self.expect(TokenKind::LParen)?;
        let mut args = Vec::new();
        if !self.at(TokenKind::RParen) {
            args.push(self.channel_arg()?);
            while self.at(TokenKind::Comma) {
                self.bump();
                args.push(self.channel_arg()?);
            }
        }
        self.expect(TokenKind::RParen)?;
        Ok(ChannelDecl { name, kind, args })
    }

    pub(super) fn channel_arg(&mut self) -> PResult<ChannelArg> {
        let name = self.any_word()?;
        self.expect(TokenKind::Colon)?;
        let value = if self.at_word("env")
            && self.peek_at(1).is_some_and(|t| t.kind == TokenKind::LParen)
        {
            self.bump();
            self.bump();
            let var = self.string()?;
            self.expect(TokenKind::RParen)?;
            ArgValue::Env(var)
        } else if self.at(TokenKind::LBracket) {
            self.bump();
            let mut list = Vec::new();
            if !self.at(TokenKind::RBracket) {
                list.push(self.string()?);
                while self.at(TokenKind::Comma) {
                    self.bump();
                    list.push(self.string()?);
                }
            }
            self.expect(TokenKind::RBracket)?;
            ArgValue::List(list)
        } else {
            ArgValue::Expr(self.expr()?)
        };
        Ok(ChannelArg {
            span: name.span.to(self.prev_span()),
            name,
            value,
        })
    }

    pub(super) fn test(&mut self) -> PResult<ItemKind> {
        self.expect_word("test")?;
        let name = self.string()?;
        let open = self.expect(TokenKind::LBrace)?.span;
        let depth = self.depth;
        while self.depth >= depth {
            if self.peek().is_none() {
                return Err(self.error("`}` closing the test"));
            }
            self.bump();
        }
        Ok(ItemKind::Test {
            name,
            body: open.to(self.prev_span()),
        })
    }
}
