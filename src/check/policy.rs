//! Clause rules of LANGUAGE §7, §10 and §11: channels, policies, limits, actions,
//! throttling and override authority, checked into [`hir`] form.

use super::hir::{self, ChannelRef, Enforcement};
use super::resolve::{Cx, Place};
use super::{Checker, Decl, Ns};
use crate::base::diag::{Code, Diagnostic};
use crate::base::num::SCALE;
use crate::base::source::Span;
use crate::syntax::ast::{self, ClauseKind, Unit};
use std::collections::BTreeMap;

impl<'a> Checker<'a> {
    pub(super) fn check_policies(&mut self) -> Option<Vec<hir::Policy>> {
        let mut out = Vec::new();
        let mut ok = true;
        for i in 0..self.policies.len() {
            match self.check_policy(i) {
                Some(p) => out.push(p),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// Reports a missing `version` or `scope` (unless its clause was given, or broken by a
    /// syntax error already reported); `false` when one is missing.
    fn required_clauses(
        &mut self,
        decl: &ast::PolicyDecl,
        b: &PolicyBuilder,
        seen: &BTreeMap<&'static str, Span>,
    ) -> bool {
        let mut ok = true;
        let broken = |k: &str| decl.broken.iter().any(|b| b == k);
        if b.version.is_none() && !seen.contains_key("version") && !broken("version") {
            self.error(
                Diagnostic::new(
                    Code::MissingVersion,
                    decl.name.span,
                    format!("policy `{}` has no `version`", decl.name.text),
                )
                .with_help("add `version 1`; bump it whenever the policy's meaning changes"),
            );
            ok = false;
        }
        if b.scope.is_none() && !seen.contains_key("scope") && !broken("scope") {
            self.error(
                Diagnostic::new(Code::MissingScope, decl.name.span, format!("policy `{}` has no `scope`", decl.name.text))
                    .with_help("say which runs it governs, e.g. `scope all` or `scope agent == \"support-bot\"`"),
            );
            ok = false;
        }
        ok
    }

    fn check_policy(&mut self, index: usize) -> Option<hir::Policy> {
        let slot = self.policies.get(index)?;
        let (decl, span, file) = (slot.decl, slot.span, slot.file);
        let cx = Cx {
            file,
            ns: Ns::User,
            policy: Some(index),
            place: Place::Constant,
        };
        let mut b = PolicyBuilder::default();
        let mut ok = true;
        let mut seen: BTreeMap<&'static str, Span> = BTreeMap::new();
        for clause in &decl.clauses {
            let keyword = clause.kind.keyword();
            let once = !matches!(clause.kind, ClauseKind::Monitor(_) | ClauseKind::Limit(_));
            if once && let Some(prev) = seen.insert(keyword, clause.span) {
                self.error(
                    Diagnostic::new(
                        Code::DuplicateClause,
                        clause.span,
                        format!("`{keyword}` given twice in policy `{}`", decl.name.text),
                    )
                    .with_label(prev, "first given here")
                    .with_help("each clause appears at most once, except `monitor` and `limit`"),
                );
                ok = false;
                continue;
            }
            ok &= self
                .policy_clause(&clause.kind, clause.span, cx, &mut b)
                .is_some();
        }
        // Rules name limits, which may be declared after them: check rules last.
        for clause in &decl.clauses {
            if let ClauseKind::Override(rules) = &clause.kind {
                for rule in rules {
                    match self.override_rule(rule, cx, &b.limits) {
                        Some(r) => b.rules.push(r),
                        None => ok = false,
                    }
                }
            }
        }
        ok &= self.required_clauses(decl, &b, &seen);
        if !ok {
            return None;
        }
        Some(hir::Policy {
            name: decl.name.text.clone(),
            version: b.version?,
            description: b.description,
            scope: b.scope?,
            precedence: b.precedence.unwrap_or(100),
            conflict: b.conflict.unwrap_or(ast::Conflict::MostRestrictive),
            bind: b.bind.unwrap_or(ast::Bind::RunStart),
            on_error: b.on_error.unwrap_or(ast::OnError::FailClosed),
            prompt_logging: b.prompt_logging,
            pii_capture: b.pii_capture,
            limits: b.limits.into_iter().map(|(l, _)| l).collect(),
            max_per_run: b.max_per_run,
            min_interval: b.min_interval,
            rules: b.rules,
            span,
        })
    }

    fn policy_clause(
        &mut self,
        kind: &ClauseKind,
        span: Span,
        cx: Cx,
        b: &mut PolicyBuilder,
    ) -> Option<()> {
        match kind {
            ClauseKind::Version(v) => match v.value {
                Some(n) if n >= 1 => b.version = Some(n),
                _ => {
                    self.error(
                        Diagnostic::new(
                            Code::BadVersion,
                            v.span,
                            "version must be a positive integer",
                        )
                        .with_help("versions start at `1`"),
                    );
                    return None;
                }
            },
            ClauseKind::Description(s) => b.description = Some(s.value.clone()),
            ClauseKind::Scope(s) => b.scope = Some(super::scope::lower_scope(s)),
            ClauseKind::Precedence(p) => b.precedence = Some(self.small_int(*p, "precedence")?),
            ClauseKind::Conflict(c) => b.conflict = Some(*c),
            ClauseKind::Bind(x) => b.bind = Some(*x),
            ClauseKind::OnError(e) => b.on_error = Some(*e),
            ClauseKind::Inspect(settings) => self.inspect(settings, b)?,
            ClauseKind::Monitor(_) => {} // declared and resolved with the other monitors
            ClauseKind::Limit(l) => {
                let limit = self.limit(l, span, cx, &b.limits)?;
                b.limits.push((limit, l.monitor.span));
            }
            ClauseKind::Alerts(settings) => self.alerts(settings, b)?,
            ClauseKind::Override(_) => {} // checked once every limit is known
        }
        Some(())
    }

    fn small_int(&mut self, v: ast::IntLit, what: &str) -> Option<u32> {
        match v.value.and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None => {
                self.error(
                    Diagnostic::new(Code::BadCount, v.span, format!("{what} is out of range"))
                        .with_help("at most 4294967295"),
                );
                None
            }
        }
    }

    fn inspect(&mut self, settings: &[ast::InspectSetting], b: &mut PolicyBuilder) -> Option<()> {
        let mut seen: BTreeMap<ast::InspectKey, Span> = BTreeMap::new();
        for s in settings {
            if let Some(prev) = seen.insert(s.key, s.span) {
                self.error(
                    Diagnostic::new(Code::DuplicateClause, s.span, "inspect setting given twice")
                        .with_label(prev, "first given here"),
                );
                return None;
            }
            match s.key {
                ast::InspectKey::PromptLogging => b.prompt_logging = s.allow,
                ast::InspectKey::PiiCapture => b.pii_capture = s.allow,
            }
        }
        Some(())
    }

    fn alerts(
        &mut self,
        settings: &[(ast::AlertSetting, Span)],
        b: &mut PolicyBuilder,
    ) -> Option<()> {
        let (mut max_seen, mut min_seen) = (None::<Span>, None::<Span>);
        for (setting, span) in settings {
            let prev = match setting {
                ast::AlertSetting::MaxPerRun(_) => max_seen.replace(*span),
                ast::AlertSetting::MinInterval(_) => min_seen.replace(*span),
            };
            if let Some(prev) = prev {
                self.error(
                    Diagnostic::new(Code::DuplicateClause, *span, "alerts setting given twice")
                        .with_label(prev, "first given here"),
                );
                return None;
            }
            match setting {
                ast::AlertSetting::MaxPerRun(n) => {
                    b.max_per_run = Some(self.small_int(*n, "max_per_run")?)
                }
                ast::AlertSetting::MinInterval(d) => b.min_interval = d.value?,
            }
        }
        Some(())
    }

    /// Resolves the monitor a limit or rule names.
    fn limit_monitor(&mut self, q: &ast::QName, cx: Cx) -> Option<(hir::MonitorId, Unit)> {
        let lowered = self.lower(
            &ast::Expr {
                kind: ast::ExprKind::Name(q.clone()),
                span: q.span,
            },
            cx.at_monitor(),
        )?;
        match lowered.kind {
            hir::ExprKind::Monitor(id) => Some((id, lowered.unit)),
            _ => {
                self.error(
                    Diagnostic::new(Code::UnknownName, q.span, format!("`{}` is not a monitor", q.dotted()))
                        .with_help("a limit names a monitor: `std.llm.cost`, or one declared with `monitor NAME = ...`"),
                );
                None
            }
        }
    }

    fn limit(
        &mut self,
        l: &ast::LimitDecl,
        span: Span,
        cx: Cx,
        earlier: &[(hir::Limit, Span)],
    ) -> Option<hir::Limit> {
        // Every part is checked even when an earlier one failed, so all errors show.
        let monitor = self
            .limit_monitor(&l.monitor, cx)
            .and_then(|m| self.limit_target(l, m, earlier));
        let value =
            monitor.and_then(|(_, unit)| self.constant_number(&l.value, cx, unit, "the limit"));
        let budget = match &l.per {
            Some(per) => Some(self.budget(per, l, monitor.map(|(m, _)| m))?),
            None => None,
        };
        let near = l.near.as_ref().map(|n| self.near(n, cx));
        let breach = l.breach.as_ref().map(|b| self.actions(&b.actions, cx));
        if l.near.is_none() && l.breach.is_none() {
            self.error(
                Diagnostic::new(
                    Code::EmptyLimit,
                    span,
                    format!(
                        "limit on `{}` has neither `near` nor `breach`",
                        l.monitor.dotted()
                    ),
                )
                .with_help(
                    "add `breach => stop` (or an alert), and optionally `near 80% => alert(ui)`",
                ),
            );
            return None;
        }
        let near = match near {
            Some(n) => Some(n?),
            None => None,
        };
        let breach = match breach {
            Some(b) => b?,
            None => hir::Actions::default(),
        };
        let (monitor, unit) = monitor?;
        Some(hir::Limit {
            monitor,
            name: l.monitor.dotted(),
            value: value?,
            unit,
            budget,
            near,
            breach,
            span,
        })
    }

    /// Checks that a limit's monitor is a number and not limited twice by the policy.
    fn limit_target(
        &mut self,
        l: &ast::LimitDecl,
        (monitor, unit): (hir::MonitorId, Unit),
        earlier: &[(hir::Limit, Span)],
    ) -> Option<(hir::MonitorId, Unit)> {
        if !unit.is_number() {
            self.error(
                Diagnostic::new(
                    Code::LimitNotNumeric,
                    l.monitor.span,
                    format!(
                        "monitor `{}` is a `{}`; limits apply to numbers",
                        l.monitor.dotted(),
                        unit.name()
                    ),
                )
                .with_help("limit a `count`, `tokens`, `usd` or `duration` monitor"),
            );
            return None;
        }
        if let Some((_, prev)) = earlier.iter().find(|(x, _)| x.monitor == monitor) {
            self.error(
                Diagnostic::new(
                    Code::DuplicateLimit,
                    l.monitor.span,
                    format!("a second limit on `{}`", l.monitor.dotted()),
                )
                .with_label(*prev, "first limit here")
                .with_help("a policy has at most one limit per monitor; merge them"),
            );
            return None;
        }
        Some((monitor, unit))
    }

    fn near(&mut self, n: &ast::NearClause, cx: Cx) -> Option<hir::Near> {
        let actions = self.actions(&n.actions, cx);
        let percent = n.percent.value;
        if percent.is_some_and(|p| p <= 0 || p >= 100 * SCALE) {
            self.error(
                Diagnostic::new(
                    Code::NearOutOfRange,
                    n.percent.span,
                    "`near` takes a percentage above 0% and below 100%",
                )
                .with_help("at 100% the limit is breached: use `breach` for that"),
            );
            return None;
        }
        let actions = actions?;
        if let Some(e) = actions.enforcement {
            let at = n
                .actions
                .iter()
                .find(|a| !matches!(a.kind, ast::ActionKind::Alert(_)))
                .map_or(n.span, |a| a.span);
            self.error(
                Diagnostic::new(
                    Code::NearEnforces,
                    at,
                    format!("`near` may only alert, not `{}`", e.name()),
                )
                .with_help("move the enforcement to `breach => ...`"),
            );
            return None;
        }
        Some(hir::Near {
            percent: percent?,
            actions,
        })
    }

    fn actions(&mut self, actions: &[ast::Action], cx: Cx) -> Option<hir::Actions> {
        let mut out = hir::Actions::default();
        let mut first: Option<Span> = None;
        let mut ok = true;
        let mut seen: BTreeMap<String, Span> = BTreeMap::new();
        for a in actions {
            let enforcement = match &a.kind {
                ast::ActionKind::Pause => Enforcement::Pause,
                ast::ActionKind::Stop => Enforcement::Stop,
                ast::ActionKind::Kill => Enforcement::Kill,
                ast::ActionKind::Alert(channels) => {
                    for ch in channels {
                        if let Some(prev) = seen.insert(ch.text.clone(), ch.span) {
                            self.error(
                                Diagnostic::new(
                                    Code::DuplicateChannel,
                                    ch.span,
                                    format!("channel `{}` listed twice", ch.text),
                                )
                                .with_label(prev, "first listed here"),
                            );
                            ok = false;
                            continue;
                        }
                        match self.channel_ref(ch, cx) {
                            Some(r) => out.alerts.push(r),
                            None => ok = false,
                        }
                    }
                    continue;
                }
            };
            if let Some(prev) = first {
                self.error(
                    Diagnostic::new(Code::TwoEnforcements, a.span, "more than one enforcement in one action list")
                        .with_label(prev, "first enforcement here")
                        .with_help("keep the one you mean: `pause`, `stop` or `kill` (the most severe wins across limits)"),
                );
                ok = false;
                continue;
            }
            first = Some(a.span);
            out.enforcement = Some(enforcement);
        }
        ok.then_some(out)
    }

    fn channel_ref(&mut self, ch: &ast::Name, cx: Cx) -> Option<ChannelRef> {
        if ch.text == "ui" {
            return Some(ChannelRef::Ui);
        }
        match self.user.get(&ch.text).map(|e| e.decl) {
            Some(Decl::Channel(i)) => {
                Some(ChannelRef::Declared(u32::try_from(i).unwrap_or(u32::MAX)))
            }
            _ => {
                let _ = cx;
                self.error(
                    Diagnostic::new(Code::UnknownChannel, ch.span, format!("unknown channel `{}`", ch.text))
                        .with_help("declare it with `channel NAME = webhook(...)`, `slack(...)` or `email(...)`; `ui` is built in"),
                );
                None
            }
        }
    }

    fn override_rule(
        &mut self,
        rule: &ast::Rule,
        cx: Cx,
        limits: &[(hir::Limit, Span)],
    ) -> Option<hir::OverrideRule> {
        let grantee = match &rule.grantee {
            ast::Grantee::Role(s) => hir::Grantee::Role(s.value.clone()),
            ast::Grantee::Actor(s) => hir::Grantee::Actor(s.value.clone()),
        };
        let kind = match &rule.kind {
            ast::RuleKind::Raise { limit, ceiling } => self.raise(limit, ceiling, cx, limits)?,
            ast::RuleKind::Suspend => hir::RuleKind::Suspend,
            ast::RuleKind::Resume => hir::RuleKind::Resume,
        };
        let ttl = match rule.ttl {
            Some(t) if matches!(kind, hir::RuleKind::Resume) => {
                self.error(
                    Diagnostic::new(Code::ForOnResume, t.span, "`for` on a `resume` rule")
                        .with_help(
                            "a resume takes effect at once and has no duration: remove `for ...`",
                        ),
                );
                return None;
            }
            Some(t) => {
                let ns = t.value?;
                if ns <= 0 {
                    self.error(Diagnostic::new(
                        Code::BadDuration,
                        t.span,
                        "a grant lasts longer than zero",
                    ));
                    return None;
                }
                Some(ns)
            }
            None => None,
        };
        let approvals = match rule.approvals {
            Some(n) => self.small_int(n, "approvals")?,
            None => 0,
        };
        Some(hir::OverrideRule {
            grantee,
            kind,
            ttl,
            requires_reason: rule.requires_reason,
            approvals,
            span: rule.span,
        })
    }

    fn raise(
        &mut self,
        q: &ast::QName,
        ceiling: &ast::Ceiling,
        cx: Cx,
        limits: &[(hir::Limit, Span)],
    ) -> Option<hir::RuleKind> {
        let (monitor, unit) = self.limit_monitor(q, cx)?;
        let Some(index) = limits.iter().position(|(l, _)| l.monitor == monitor) else {
            self.error(
                Diagnostic::new(
                    Code::OverrideUnknownLimit,
                    q.span,
                    format!("this policy has no limit on `{}`", q.dotted()),
                )
                .with_help("a raise names a limit of its own policy"),
            );
            return None;
        };
        let compiled = limits.get(index).map(|(l, _)| l.value)?;
        let (ceiling, span) = match ceiling {
            ast::Ceiling::Percent(p) => {
                let wide = i128::from(compiled) * i128::from(p.value?) / (100 * i128::from(SCALE));
                let Ok(value) = i64::try_from(wide) else {
                    self.error(Diagnostic::new(
                        Code::ConstEval,
                        p.span,
                        "this ceiling overflows",
                    ));
                    return None;
                };
                (value, p.span)
            }
            ast::Ceiling::Value(e) => (self.constant_number(e, cx, unit, "the ceiling")?, e.span),
        };
        if ceiling <= compiled {
            self.error(
                Diagnostic::new(
                    Code::CeilingNotARaise,
                    span,
                    format!("the ceiling is not above the limit on `{}`", q.dotted()),
                )
                .with_help("a raise ceiling is above the compiled value, e.g. `up to 200%`"),
            );
            return None;
        }
        Some(hir::RuleKind::Raise {
            limit: index,
            ceiling,
        })
    }
}

impl Cx {
    fn at_monitor(self) -> Cx {
        Cx {
            place: Place::Monitor,
            ..self
        }
    }
}

#[derive(Default)]
struct PolicyBuilder {
    version: Option<u64>,
    description: Option<String>,
    scope: Option<hir::Scope>,
    precedence: Option<u32>,
    conflict: Option<ast::Conflict>,
    bind: Option<ast::Bind>,
    on_error: Option<ast::OnError>,
    prompt_logging: bool,
    pii_capture: bool,
    limits: Vec<(hir::Limit, Span)>,
    max_per_run: Option<u32>,
    min_interval: i64,
    rules: Vec<hir::OverrideRule>,
}
