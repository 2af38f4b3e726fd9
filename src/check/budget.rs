//! Budgets across runs (`limit M to V per KEY [per WINDOW]`): the monitor is a lone `sum`
//! or `count` (a shared counter can only add each step's contribution), the window is
//! `1m` to `366d`, and the key names each attribute once.

use super::hir::{self, ExprKind, MonitorId};
use super::scope::lower_selector;
use super::{Checker, State};
use crate::base::diag::{Code, Diagnostic};
use crate::base::lang::AggFunc;
use crate::base::source::Span;
use crate::syntax::ast;

const MINUTE: i64 = 60_000_000_000;
const LONGEST: i64 = 366 * 24 * 60 * MINUTE;

impl Checker<'_> {
    /// The budget a limit's `per` clause declares; `None` after an error (reported).
    pub(super) fn budget(
        &mut self,
        per: &ast::Per,
        limit: &ast::LimitDecl,
        monitor: Option<MonitorId>,
    ) -> Option<hir::Budget> {
        let mut ok = true;
        let mut seen: Vec<&(ast::Selector, Span)> = Vec::new();
        for entry in &per.key {
            if let Some(first) = seen.iter().find(|(s, _)| *s == entry.0) {
                self.error(
                    Diagnostic::new(
                        Code::BudgetKeyTwice,
                        entry.1,
                        format!(
                            "`{}` is named twice in the budget's key",
                            lower_selector(&entry.0).text()
                        ),
                    )
                    .with_label(first.1, "first named here")
                    .with_help("name each attribute once: `per (tenant, agent)`"),
                );
                ok = false;
            } else {
                seen.push(entry);
            }
        }
        let window = match &per.window {
            None => None,
            Some(q) => match q.value {
                Some(ns) if (MINUTE..=LONGEST).contains(&ns) => Some(ns),
                Some(_) => {
                    self.error(
                        Diagnostic::new(
                            Code::BudgetWindow,
                            q.span,
                            "a budget's window is from 1m to 366d",
                        )
                        .with_help("write `per 1d` for a daily budget, or no window for one that never resets"),
                    );
                    ok = false;
                    None
                }
                None => {
                    ok = false;
                    None
                }
            },
        };
        if monitor.is_some_and(|m| !self.is_counter(m)) {
            self.error(
                Diagnostic::new(
                    Code::BudgetMonitor,
                    limit.monitor.span,
                    format!(
                        "monitor `{}` is not a lone `sum` or `count`, so it cannot be a budget across runs",
                        limit.monitor.dotted()
                    ),
                )
                .with_help("a budget adds up each step's contribution: limit a monitor such as `std.llm.cost` (`sum(step.cost)`), or drop `per` for a limit on each run"),
            );
            ok = false;
        }
        ok.then(|| hir::Budget {
            per: per.key.iter().map(|(s, _)| lower_selector(s)).collect(),
            window,
        })
    }

    /// Whether a monitor is a lone `sum(...)` or `count(...)`, filtered or not, directly
    /// or through monitors that name it. An unresolved one was reported already.
    fn is_counter(&self, mut id: MonitorId) -> bool {
        for _ in 0..=self.monitors.len() {
            let Some(slot) = self.monitors.get(id.0 as usize) else {
                return true;
            };
            let State::Done(Some(m)) = &slot.state else {
                return true;
            };
            match &m.expr.kind {
                ExprKind::Agg {
                    func: AggFunc::Sum | AggFunc::Count,
                    ..
                } => return true,
                ExprKind::Monitor(next) => id = *next,
                _ => return false,
            }
        }
        false
    }
}
