//! The statements of a `test "name" { ... }` body (docs/testing.md), read from the
//! language's own tokens. One statement per line is the convention, not a rule: each
//! statement starts with its keyword.
//!
//! ```text
//! run tenant "acme" agent "support-bot" labels { env: "prod" }
//! step cost $0.45 input_tokens 1200 output_tokens 300 model "gpt-4o" repeat 9
//! expect near std.llm.cost of support_budget
//! override raise std.llm.cost of support_budget to $8 by "bob" roles ["sre"] for 1h reason "INC-1"
//! expect override granted
//! ```

use super::{Expectation, OverrideKind, Statement, StepFields, StmtKind};
use crate::base::diag::{Code, Diagnostic};
use crate::base::num::Decimal;
use crate::base::source::Span;
use crate::syntax::lexer::{Token, TokenKind, TokenValue};
use std::collections::BTreeMap;

struct Parser<'a> {
    tokens: &'a [Token],
    text: &'a str,
    at: usize,
    /// Where the body ends, for errors at its end.
    end: Span,
}

type PResult<T> = Result<T, Diagnostic>;

/// Parses a test body's tokens (between its braces). Stops at the first error.
pub(crate) fn parse(tokens: &[Token], text: &str, end: Span) -> Result<Vec<Statement>, Diagnostic> {
    let mut p = Parser {
        tokens,
        text,
        at: 0,
        end,
    };
    let mut out = Vec::new();
    while p.peek().is_some() {
        out.push(p.statement()?);
    }
    Ok(out)
}

const STEP_FIELDS: &str = "`cost`, `input_tokens`, `output_tokens`, `latency`, `model`, `tool`, `kind`, `pii`, `metric`, `after`, `before` or `repeat`";

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn span(&self) -> Span {
        self.peek().map_or(self.end, |t| t.span)
    }

    fn error(&self, expected: &str) -> Diagnostic {
        let found = match self.peek() {
            Some(t) if t.kind == TokenKind::Word || t.kind == TokenKind::Str => {
                format!("`{}`", self.text_of(t))
            }
            Some(t) => t.kind.describe().to_string(),
            None => "the end of the test".into(),
        };
        Diagnostic::new(
            Code::TestSyntax,
            self.span(),
            format!("expected {expected}, found {found}"),
        )
        .with_help("test statements are described in docs/testing.md")
    }

    fn text_of(&self, t: &Token) -> &str {
        self.text.get(t.span.range()).unwrap_or("")
    }

    fn at_word(&self, word: &str) -> bool {
        self.peek()
            .is_some_and(|t| t.kind == TokenKind::Word && self.text_of(t) == word)
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let here = self.at_word(word);
        if here {
            self.at += 1;
        }
        here
    }

    fn expect_word(&mut self, word: &str) -> PResult<()> {
        if self.eat_word(word) {
            Ok(())
        } else {
            Err(self.error(&format!("`{word}`")))
        }
    }

    fn word(&mut self, what: &str) -> PResult<String> {
        match self.peek() {
            Some(t) if t.kind == TokenKind::Word => {
                let w = self.text_of(t).to_string();
                self.at += 1;
                Ok(w)
            }
            _ => Err(self.error(what)),
        }
    }

    /// A dotted name: `std.llm.cost`, `gpt4_cost`.
    fn dotted(&mut self, what: &str) -> PResult<String> {
        let mut name = self.word(what)?;
        while self.peek().is_some_and(|t| t.kind == TokenKind::Dot) {
            self.at += 1;
            name.push('.');
            name.push_str(&self.word("a name after `.`")?);
        }
        Ok(name)
    }

    fn string(&mut self) -> PResult<String> {
        match self.peek() {
            Some(Token {
                kind: TokenKind::Str,
                value: TokenValue::Str(s),
                ..
            }) => {
                let s = s.clone();
                self.at += 1;
                Ok(s)
            }
            _ => Err(self.error("a string")),
        }
    }

    fn strings(&mut self) -> PResult<Vec<String>> {
        if !self.peek().is_some_and(|t| t.kind == TokenKind::LBracket) {
            return Err(self.error("`[`"));
        }
        self.at += 1;
        let mut out = Vec::new();
        while !self.peek().is_some_and(|t| t.kind == TokenKind::RBracket) {
            out.push(self.string()?);
            if self.peek().is_some_and(|t| t.kind == TokenKind::Comma) {
                self.at += 1;
            } else if !self.peek().is_some_and(|t| t.kind == TokenKind::RBracket) {
                return Err(self.error("`,` or `]`"));
            }
        }
        self.at += 1;
        Ok(out)
    }

    /// A number of one of `kinds`, as its exact value (10⁻⁹ units; ns for durations).
    fn number(&mut self, kinds: &[TokenKind], what: &str) -> PResult<i64> {
        match self.peek() {
            Some(Token {
                kind,
                value: TokenValue::Number(Some(v)),
                ..
            }) if kinds.contains(kind) => {
                let v = *v;
                self.at += 1;
                Ok(v)
            }
            _ => Err(self.error(what)),
        }
    }

    fn count(&mut self, what: &str) -> PResult<u32> {
        let span = self.span();
        let v = self.number(&[TokenKind::Int], what)?;
        u32::try_from(v / crate::base::num::SCALE)
            .ok()
            .filter(|n| *n >= 1 && v % crate::base::num::SCALE == 0)
            .ok_or_else(|| {
                Diagnostic::new(
                    Code::TestSyntax,
                    span,
                    format!("{what} must be from 1 to {}", u32::MAX),
                )
            })
    }

    fn duration(&mut self) -> PResult<i64> {
        self.number(&[TokenKind::Duration], "a duration (`30s`, `5m`)")
    }

    fn statement(&mut self) -> PResult<Statement> {
        let start = self.span();
        let keyword = self.word(
            "a statement (`run`, `step`, `override`, `approve`, `end`, `spent` or `expect`)",
        )?;
        let kind = match keyword.as_str() {
            "run" => self.run()?,
            "step" => self.step()?,
            "override" => self.override_request()?,
            "approve" => {
                let mut after = self.after()?;
                self.expect_word("by")?;
                let by = self.string()?;
                let roles = if self.eat_word("roles") {
                    self.strings()?
                } else {
                    Vec::new()
                };
                after = after.or(self.after()?);
                StmtKind::Approve { after, by, roles }
            }
            "end" => StmtKind::End {
                after: self.after()?,
            },
            "spent" => {
                let value = self.number(
                    &[
                        TokenKind::Money,
                        TokenKind::Int,
                        TokenKind::Decimal,
                        TokenKind::Tokens,
                        TokenKind::Duration,
                    ],
                    "what the budget has spent (`$15.00`, `1_500_000 tokens`)",
                )?;
                self.expect_word("on")?;
                let limit = self.dotted("the budget's limit")?;
                self.expect_word("of")?;
                let policy = self.word("a policy name")?;
                StmtKind::Spent {
                    value,
                    limit,
                    policy,
                }
            }
            "expect" => {
                let at = if self.eat_word("at") {
                    self.expect_word("seq")?;
                    Some(u64::from(self.count("a seq")?))
                } else {
                    None
                };
                StmtKind::Expect(self.expectation()?, at)
            }
            _ => {
                self.at -= 1;
                return Err(self.error(
                    "a statement (`run`, `step`, `override`, `approve`, `end`, `spent` or `expect`)",
                ));
            }
        };
        let end = self
            .tokens
            .get(self.at.saturating_sub(1))
            .map_or(start, |t| t.span);
        Ok(Statement {
            kind,
            span: start.to(end),
        })
    }

    fn after(&mut self) -> PResult<Option<i64>> {
        if self.eat_word("after") {
            return Ok(Some(self.duration()?));
        }
        Ok(None)
    }

    fn run(&mut self) -> PResult<StmtKind> {
        let mut attrs: BTreeMap<String, String> = BTreeMap::new();
        let mut labels = BTreeMap::new();
        loop {
            if self.eat_word("labels") {
                if !self.peek().is_some_and(|t| t.kind == TokenKind::LBrace) {
                    return Err(self.error("`{`"));
                }
                self.at += 1;
                while !self.peek().is_some_and(|t| t.kind == TokenKind::RBrace) {
                    let key = match self.peek() {
                        Some(t) if t.kind == TokenKind::Str => self.string()?,
                        _ => self.word("a label name")?,
                    };
                    if !self.peek().is_some_and(|t| t.kind == TokenKind::Colon) {
                        return Err(self.error("`:`"));
                    }
                    self.at += 1;
                    labels.insert(key, self.string()?);
                    if self.peek().is_some_and(|t| t.kind == TokenKind::Comma) {
                        self.at += 1;
                    }
                }
                self.at += 1;
                continue;
            }
            let field = ["tenant", "agent", "api_key", "human_actor"]
                .into_iter()
                .find(|f| self.at_word(f));
            match field {
                Some(f) => {
                    self.at += 1;
                    attrs.insert(f.to_string(), self.string()?);
                }
                None => break,
            }
        }
        Ok(StmtKind::Run { attrs, labels })
    }

    fn step(&mut self) -> PResult<StmtKind> {
        let mut fields = StepFields::default();
        let mut metrics = BTreeMap::new();
        let mut after = None;
        let mut repeat = 1;
        while let Some(t) = self.peek() {
            if t.kind != TokenKind::Word {
                break;
            }
            let name = self.text_of(t).to_string();
            if is_statement(&name) {
                break;
            }
            self.at += 1;
            match name.as_str() {
                "cost" => {
                    fields.cost = Some(self.number(&[TokenKind::Money], "an amount (`$0.45`)")?);
                }
                "input_tokens" => fields.input_tokens = Some(self.token_count()?),
                "output_tokens" => fields.output_tokens = Some(self.token_count()?),
                "latency" => fields.latency = Some(self.duration()?),
                "model" => fields.model = Some(self.string()?),
                "tool" => fields.tool = Some(self.string()?),
                "kind" => fields.kind = Some(self.string()?),
                "pii" => fields.pii = Some(self.boolean()?),
                "metric" => {
                    let key = self.word("a signal name")?;
                    let kinds = [
                        TokenKind::Int,
                        TokenKind::Decimal,
                        TokenKind::Money,
                        TokenKind::Tokens,
                    ];
                    metrics.insert(key, self.number(&kinds, "a number")?);
                }
                // `before D`: a late step, stamped before the latest event (a parallel call).
                "after" | "before" => {
                    let gap = self.duration()?;
                    after = Some(if name == "after" {
                        gap
                    } else {
                        gap.saturating_neg()
                    });
                }
                "repeat" => repeat = self.count("a repeat count")?,
                _ => {
                    self.at -= 1;
                    return Err(self.error(STEP_FIELDS));
                }
            }
        }
        Ok(StmtKind::Step {
            after,
            fields,
            metrics,
            repeat,
        })
    }

    /// A whole token count (`1200`, `1.2k tokens`).
    fn token_count(&mut self) -> PResult<i64> {
        let span = self.span();
        let v = self.number(&[TokenKind::Int, TokenKind::Tokens], "a token count")?;
        if v % crate::base::num::SCALE != 0 {
            return Err(Diagnostic::new(
                Code::TestSyntax,
                span,
                "a token count must be a whole number".to_string(),
            ));
        }
        Ok(v)
    }

    fn boolean(&mut self) -> PResult<bool> {
        match self.word("`true` or `false`")?.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => {
                self.at -= 1;
                Err(self.error("`true` or `false`"))
            }
        }
    }

    fn override_request(&mut self) -> PResult<StmtKind> {
        let kind = match self.word("`raise`, `suspend` or `resume`")?.as_str() {
            "raise" => OverrideKind::Raise,
            "suspend" => OverrideKind::Suspend,
            "resume" => OverrideKind::Resume,
            _ => {
                self.at -= 1;
                return Err(self.error("`raise`, `suspend` or `resume`"));
            }
        };
        let (limit, policy) = if kind == OverrideKind::Raise {
            let limit = self.dotted("the limit to raise")?;
            self.expect_word("of")?;
            (Some(limit), self.word("a policy name")?)
        } else {
            (None, self.word("a policy name")?)
        };
        let to = if kind == OverrideKind::Raise {
            self.expect_word("to")?;
            let v = self.number(
                &[
                    TokenKind::Money,
                    TokenKind::Int,
                    TokenKind::Decimal,
                    TokenKind::Tokens,
                    TokenKind::Duration,
                ],
                "the raised value",
            )?;
            Some(Decimal(v).to_string())
        } else {
            None
        };
        let mut by = None;
        let mut roles = Vec::new();
        let mut ttl = None;
        let mut reason = None;
        let mut after = None;
        loop {
            if self.eat_word("by") {
                by = Some(self.string()?);
            } else if self.eat_word("roles") {
                roles = self.strings()?;
            } else if self.eat_word("for") {
                ttl = Some(self.duration()?);
            } else if self.eat_word("reason") {
                reason = Some(self.string()?);
            } else if self.eat_word("after") {
                after = Some(self.duration()?);
            } else {
                break;
            }
        }
        let Some(by) = by else {
            return Err(self.error("`by \"actor\"` (who requests the override)"));
        };
        Ok(StmtKind::Override {
            after,
            kind,
            policy,
            limit,
            to,
            by,
            roles,
            ttl,
            reason,
        })
    }

    fn expectation(&mut self) -> PResult<Expectation> {
        let what = "`action`, `near`, `breach`, `error`, `conflict`, `alert`, `override` or `no`";
        let word = self.word(what)?;
        Ok(match word.as_str() {
            "action" => {
                let action = self.word(
                    "an action (`continue`, `pause`, `stop`, `kill`, `refused`, `rejected`)",
                )?;
                if !["continue", "pause", "stop", "kill", "refused", "rejected"]
                    .contains(&action.as_str())
                {
                    self.at -= 1;
                    return Err(self.error(
                        "an action (`continue`, `pause`, `stop`, `kill`, `refused`, `rejected`)",
                    ));
                }
                Expectation::Action(action)
            }
            "near" | "breach" | "error" | "conflict" => {
                let limit = match self.peek() {
                    Some(t)
                        if t.kind == TokenKind::Word
                            && self.text_of(t) != "of"
                            && !is_statement(self.text_of(t)) =>
                    {
                        Some(self.dotted("a limit")?)
                    }
                    _ => None,
                };
                let policy = if self.eat_word("of") {
                    Some(self.word("a policy name")?)
                } else {
                    None
                };
                Expectation::Signal {
                    kind: word,
                    limit,
                    policy,
                }
            }
            "alert" => {
                let channel = self.word("a channel name")?;
                Expectation::Alert {
                    channel,
                    suppressed: self.eat_word("suppressed"),
                }
            }
            "override" => {
                let status = self.word("`granted`, `denied` or `pending`")?;
                if !["granted", "denied", "pending"].contains(&status.as_str()) {
                    self.at -= 1;
                    return Err(self.error("`granted`, `denied` or `pending`"));
                }
                Expectation::Override(status)
            }
            "no" => match self.word("`signals` or `alerts`")?.as_str() {
                "signals" => Expectation::NoSignals,
                "alerts" => Expectation::NoAlerts,
                _ => {
                    self.at -= 1;
                    return Err(self.error("`signals` or `alerts`"));
                }
            },
            _ => {
                self.at -= 1;
                return Err(self.error(what));
            }
        })
    }
}

fn is_statement(word: &str) -> bool {
    matches!(
        word,
        "run" | "step" | "override" | "approve" | "end" | "expect"
    )
}
