//! Policies: their clauses, limits with their thresholds and actions, alert settings and override rules.

use super::{ITEM_ONLY_KEYWORDS, PResult, Parser, Reported};
use crate::base::source::Span;
use crate::syntax::ast::*;
use crate::syntax::lexer::TokenKind;

impl<'a> Parser<'a> {
    // ----- policies and clauses -----------------------------------------------------

    pub(super) fn policy(&mut self) -> PResult<PolicyDecl> {
        self.expect_word("policy")?;
        let name = self.ident()?;
        self.expect(TokenKind::LBrace)?;
        let depth = self.depth;
        let mut clauses = Vec::new();
        let mut broken = Vec::new();
        loop {
            match self.peek() {
                Some(t) if t.kind == TokenKind::RBrace => {
                    self.bump();
                    break;
                }
                None => return Err(self.error("`}` closing the policy")),
                Some(t)
                    if t.kind == TokenKind::Word
                        && ITEM_ONLY_KEYWORDS.contains(&self.text_of(t)) =>
                {
                    return Err(self.error("a clause or `}` closing the policy"));
                }
                Some(_) => {}
            }
            let start = self.pos;
            match self.clause() {
                Ok(c) => clauses.push(c),
                Err(Reported) => {
                    if let Some(t) = self.tokens.get(start) {
                        broken.push(self.text_of(t).to_string());
                    }
                    if self.pos == start {
                        self.bump();
                    }
                    self.recover_clause(depth);
                }
            }
        }
        Ok(PolicyDecl {
            name,
            clauses,
            broken,
        })
    }

    pub(super) fn clause(&mut self) -> PResult<Clause> {
        let start = self.here();
        let Some(w) = self.word() else {
            return Err(self.error("a clause (`version`, `scope`, `limit`, ...)"));
        };
        let kind = match w {
            "version" => {
                self.bump();
                ClauseKind::Version(self.int()?)
            }
            "description" => {
                self.bump();
                ClauseKind::Description(self.string()?)
            }
            "scope" => {
                self.bump();
                ClauseKind::Scope(self.scope()?)
            }
            "precedence" => {
                self.bump();
                ClauseKind::Precedence(self.int()?)
            }
            "conflict" => {
                self.bump();
                let (s, _) =
                    self.expect_one_of(&["most_restrictive", "explicit_priority", "fail_closed"])?;
                ClauseKind::Conflict(match s {
                    "most_restrictive" => Conflict::MostRestrictive,
                    "explicit_priority" => Conflict::ExplicitPriority,
                    _ => Conflict::FailClosed,
                })
            }
            "bind" => {
                self.bump();
                let (s, _) = self.expect_one_of(&["run_start", "first_token", "each_step"])?;
                ClauseKind::Bind(match s {
                    "run_start" => Bind::RunStart,
                    "first_token" => Bind::FirstToken,
                    _ => Bind::EachStep,
                })
            }
            "on_error" => {
                self.bump();
                let (s, _) = self.expect_one_of(&["fail_closed", "fail_open"])?;
                ClauseKind::OnError(if s == "fail_open" {
                    OnError::FailOpen
                } else {
                    OnError::FailClosed
                })
            }
            "inspect" => ClauseKind::Inspect(self.inspect()?),
            "monitor" => ClauseKind::Monitor(self.monitor()?),
            "limit" => ClauseKind::Limit(self.limit()?),
            "alerts" => ClauseKind::Alerts(self.alerts()?),
            "override" => ClauseKind::Override(self.override_rules()?),
            _ => return Err(self.error("a clause (`version`, `scope`, `limit`, ...)")),
        };
        Ok(Clause {
            kind,
            span: start.to(self.prev_span()),
        })
    }

    pub(super) fn inspect(&mut self) -> PResult<Vec<InspectSetting>> {
        self.expect_word("inspect")?;
        self.expect(TokenKind::LBrace)?;
        let mut settings = Vec::new();
        while !self.at(TokenKind::RBrace) {
            let (key, key_span) = self.expect_one_of(&["prompt_logging", "pii_capture"])?;
            let (value, value_span) = self.expect_one_of(&["allow", "deny"])?;
            settings.push(InspectSetting {
                key: if key == "prompt_logging" {
                    InspectKey::PromptLogging
                } else {
                    InspectKey::PiiCapture
                },
                allow: value == "allow",
                span: key_span.to(value_span),
            });
        }
        self.expect(TokenKind::RBrace)?;
        Ok(settings)
    }

    pub(super) fn limit(&mut self) -> PResult<LimitDecl> {
        self.expect_word("limit")?;
        let monitor = self.qname()?;
        self.expect_word("to")?;
        let value = self.expr()?;
        let per = if self.at_word("per") {
            Some(self.per()?)
        } else {
            None
        };
        self.expect(TokenKind::LBrace)?;
        let mut near = None;
        if self.at_word("near") {
            let start = self.bump().map_or_else(|| self.here(), |t| t.span);
            let percent = self.quantity(TokenKind::Percent)?;
            self.expect(TokenKind::Arrow)?;
            let actions = self.actions()?;
            near = Some(NearClause {
                percent,
                actions,
                span: start.to(self.prev_span()),
            });
        }
        let mut breach = None;
        if self.at_word("breach") {
            let start = self.bump().map_or_else(|| self.here(), |t| t.span);
            self.expect(TokenKind::Arrow)?;
            let actions = self.actions()?;
            breach = Some(BreachClause {
                actions,
                span: start.to(self.prev_span()),
            });
        }
        if !self.at(TokenKind::RBrace) {
            let expected = match (&near, &breach) {
                (None, None) => "`near`, `breach` or `}`",
                (Some(_), None) => "`breach` or `}`",
                _ => "`}`",
            };
            return Err(self.error_help(
                expected,
                "a limit takes `near P% => ...` then `breach => ...`, in that order",
            ));
        }
        self.expect(TokenKind::RBrace)?;
        Ok(LimitDecl {
            monitor,
            value,
            per,
            near,
            breach,
        })
    }

    /// `per KEY [per WINDOW]` after a limit's value.
    fn per(&mut self) -> PResult<Per> {
        let start = self.bump().map_or_else(|| self.here(), |t| t.span);
        const EXPECTED: &str = "`tenant`, `agent`, `api_key`, `human_actor` or `labels[\"key\"]`";
        const HELP: &str = "a budget is shared by runs with the same attribute: `per api_key`, `per (tenant, agent)`, `per labels[\"team\"]`";
        let mut key = Vec::new();
        if self.at(TokenKind::LParen) {
            self.bump();
            loop {
                let at = self.here();
                let selector = self.selector_with(EXPECTED, HELP)?;
                key.push((selector, at.to(self.prev_span())));
                if !self.at(TokenKind::Comma) {
                    break;
                }
                self.bump();
            }
            self.expect(TokenKind::RParen)?;
        } else {
            let at = self.here();
            let selector = self.selector_with(EXPECTED, HELP)?;
            key.push((selector, at.to(self.prev_span())));
        }
        let window = if self.at_word("per") {
            self.bump();
            if !self.at(TokenKind::Duration) {
                return Err(self.error_help(
                    "a duration",
                    "a budget's window is a duration from `1m` to `366d`: `per api_key per 1d`",
                ));
            }
            Some(self.quantity(TokenKind::Duration)?)
        } else {
            None
        };
        Ok(Per {
            key,
            window,
            span: start.to(self.prev_span()),
        })
    }

    pub(super) fn actions(&mut self) -> PResult<Vec<Action>> {
        let mut actions = vec![self.action()?];
        while self.at(TokenKind::Comma) {
            self.bump();
            actions.push(self.action()?);
        }
        Ok(actions)
    }

    pub(super) fn action(&mut self) -> PResult<Action> {
        let (word, span) = self.expect_one_of(&["pause", "stop", "kill", "alert"])?;
        let kind = match word {
            "pause" => ActionKind::Pause,
            "stop" => ActionKind::Stop,
            "kill" => ActionKind::Kill,
            _ => {
                self.expect(TokenKind::LParen)?;
                let mut channels = vec![self.any_word()?];
                while self.at(TokenKind::Comma) {
                    self.bump();
                    channels.push(self.any_word()?);
                }
                self.expect(TokenKind::RParen)?;
                ActionKind::Alert(channels)
            }
        };
        Ok(Action {
            kind,
            span: span.to(self.prev_span()),
        })
    }

    pub(super) fn alerts(&mut self) -> PResult<Vec<(AlertSetting, Span)>> {
        self.expect_word("alerts")?;
        self.expect(TokenKind::LBrace)?;
        let mut settings = Vec::new();
        while !self.at(TokenKind::RBrace) {
            let (key, span) = self.expect_one_of(&["max_per_run", "min_interval"])?;
            let setting = if key == "max_per_run" {
                AlertSetting::MaxPerRun(self.int()?)
            } else {
                AlertSetting::MinInterval(self.quantity(TokenKind::Duration)?)
            };
            settings.push((setting, span.to(self.prev_span())));
        }
        self.expect(TokenKind::RBrace)?;
        Ok(settings)
    }

    pub(super) fn override_rules(&mut self) -> PResult<Vec<Rule>> {
        self.expect_word("override")?;
        self.expect(TokenKind::LBrace)?;
        let mut rules = Vec::new();
        while !self.at(TokenKind::RBrace) {
            rules.push(self.rule()?);
        }
        self.expect(TokenKind::RBrace)?;
        Ok(rules)
    }

    pub(super) fn rule(&mut self) -> PResult<Rule> {
        let start = self.expect_word("allow")?;
        let (who, _) = self.expect_one_of(&["role", "actor"])?;
        let name = self.string()?;
        let grantee = if who == "role" {
            Grantee::Role(name)
        } else {
            Grantee::Actor(name)
        };
        self.expect_word("to")?;
        let (kind, _) = self.expect_one_of(&["raise", "suspend", "resume"])?;
        let kind = match kind {
            "raise" => {
                let limit = self.qname()?;
                self.expect_word("up")?;
                self.expect_word("to")?;
                let ceiling = if self.at(TokenKind::Percent) {
                    Ceiling::Percent(self.quantity(TokenKind::Percent)?)
                } else {
                    Ceiling::Value(self.expr()?)
                };
                RuleKind::Raise { limit, ceiling }
            }
            "suspend" => RuleKind::Suspend,
            _ => RuleKind::Resume,
        };
        let mut ttl = None;
        if self.at_word("for") {
            self.bump();
            ttl = Some(self.quantity(TokenKind::Duration)?);
        }
        let mut requires_reason = false;
        if self.at_word("requires") {
            self.bump();
            self.expect_word("reason")?;
            requires_reason = true;
        }
        let mut approvals = None;
        if self.at_word("approvals") {
            self.bump();
            approvals = Some(self.int()?);
        }
        Ok(Rule {
            grantee,
            kind,
            ttl,
            requires_reason,
            approvals,
            span: start.to(self.prev_span()),
        })
    }
}
