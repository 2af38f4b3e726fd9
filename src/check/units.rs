//! Units: expressions lowered to their checked form and typed by the unit rules
//! (quantities, durations, money, tokens, booleans, strings), aggregates and their windows.

use super::hir::{self, ExprKind, Value};
use super::resolve::{Cx, Place, Target};
use super::{Checker, Decl};
use crate::base::diag::{Code, Diagnostic};
use crate::base::num::{self};
use crate::base::source::Span;
use crate::syntax::ast::{self, AggFunc, BinOp, Literal, NumUnit, Unit};

impl<'a> Checker<'a> {
    // ----- expressions --------------------------------------------------------------

    /// Resolves and types an expression; `None` when it had errors (already reported).
    pub(super) fn lower(&mut self, e: &ast::Expr, cx: Cx) -> Option<hir::Expr> {
        use ast::ExprKind as E;
        let (kind, unit) = match &e.kind {
            E::Lit(lit) => self.literal(lit, e.span)?,
            E::Name(q) => return self.name_expr(q, e.span, cx),
            E::Index(base, key) => return self.index_expr(base, key, e.span, cx),
            E::Neg(inner) => {
                let inner = self.lower(inner, cx)?;
                if !inner.unit.is_number() {
                    return self
                        .bad_operand(e.span, format!("cannot negate a `{}`", inner.unit.name()));
                }
                let unit = inner.unit;
                (ExprKind::Neg(Box::new(inner)), unit)
            }
            E::Not(inner) => {
                let inner = self.lower(inner, cx)?;
                if inner.unit != Unit::Bool {
                    return self.bad_operand(
                        e.span,
                        format!("`not` takes a `bool`, found `{}`", inner.unit.name()),
                    );
                }
                (ExprKind::Not(Box::new(inner)), Unit::Bool)
            }
            E::Binary(op, l, r) => {
                let (l, r) = (self.lower(l, cx), self.lower(r, cx));
                let (l, r) = (l?, r?);
                let unit = self.binary_unit(*op, &l, &r, e.span)?;
                (ExprKind::Binary(*op, Box::new(l), Box::new(r)), unit)
            }
            E::In(l, list) => return self.in_expr(l, list, e.span, cx),
            E::Agg {
                func,
                arg,
                filter,
                window,
            } => {
                return self.aggregate(
                    *func,
                    arg.as_deref(),
                    filter.as_deref(),
                    *window,
                    e.span,
                    cx,
                );
            }
        };
        Some(hir::Expr {
            kind,
            unit,
            span: e.span,
        })
    }

    pub(super) fn bad_operand<T>(&mut self, span: Span, message: String) -> Option<T> {
        self.error(Diagnostic::new(Code::BadOperand, span, message));
        None
    }

    pub(super) fn literal(&mut self, lit: &Literal, span: Span) -> Option<(ExprKind, Unit)> {
        match lit {
            Literal::Str(s) => Some((ExprKind::Const(Value::Str(s.clone())), Unit::String)),
            Literal::Bool(b) => Some((ExprKind::Const(Value::Bool(*b)), Unit::Bool)),
            Literal::Number { unit, value } => {
                let unit = match unit {
                    NumUnit::Count => Unit::Count,
                    NumUnit::Usd => Unit::Usd,
                    NumUnit::Tokens => Unit::Tokens,
                    NumUnit::Duration => Unit::Duration,
                    NumUnit::Percent => {
                        self.error(
                            Diagnostic::new(
                                Code::MisplacedPercent,
                                span,
                                "a percentage is allowed only after `near` and `up to`",
                            )
                            .with_help("write a ratio as a decimal count, e.g. `0.8`"),
                        );
                        return None;
                    }
                };
                // An invalid literal was reported by the lexer.
                Some((ExprKind::Const(Value::Num((*value)?)), unit))
            }
        }
    }

    pub(super) fn name_expr(&mut self, q: &ast::QName, span: Span, cx: Cx) -> Option<hir::Expr> {
        let dotted = q.dotted();
        let target = self.resolve_name(q, cx)?;
        let (kind, unit) = match target {
            Target::Field(id) => {
                let unit = self.resolve_field(id)?;
                if unit == Unit::Map {
                    self.error(
                        Diagnostic::new(Code::BadIndex, span, format!("`{dotted}` is a map"))
                            .with_help(format!("index it with a key: `{dotted}[\"env\"]`")),
                    );
                    return None;
                }
                self.check_field_place(&dotted, span, cx)?;
                (ExprKind::Field(id), unit)
            }
            Target::Private(idx) | Target::Decl(Decl::Monitor(idx)) => {
                self.check_monitor_place(&dotted, span, cx)?;
                let unit = self.resolve_monitor(idx)?;
                (
                    ExprKind::Monitor(hir::MonitorId(u32::try_from(idx).unwrap_or(u32::MAX))),
                    unit,
                )
            }
            Target::Decl(Decl::Const(idx)) => {
                let (unit, value) = self.resolve_const(idx)?;
                (ExprKind::Const(value), unit)
            }
            Target::Decl(Decl::Signal(_)) => {
                self.error(
                    Diagnostic::new(
                        Code::UnknownName,
                        span,
                        format!("`{dotted}` is a signal, read as a step field"),
                    )
                    .with_help(format!(
                        "write `step.{dotted}` inside an aggregate, e.g. `sum(step.{dotted})`"
                    )),
                );
                return None;
            }
            Target::Decl(Decl::Channel(_) | Decl::Policy(_)) => {
                let what = if matches!(target, Target::Decl(Decl::Channel(_))) {
                    "channel"
                } else {
                    "policy"
                };
                self.error(Diagnostic::new(
                    Code::UnknownName,
                    span,
                    format!("`{dotted}` is a {what}, not a value"),
                ));
                return None;
            }
        };
        Some(hir::Expr { kind, unit, span })
    }

    pub(super) fn check_field_place(&mut self, dotted: &str, span: Span, cx: Cx) -> Option<()> {
        let is_step = dotted.starts_with("step.");
        match cx.place {
            Place::AggArg | Place::Filter | Place::Derive => Some(()),
            Place::Monitor if !is_step => Some(()),
            Place::Monitor => {
                self.error(
                    Diagnostic::new(Code::StepOutsideAggregate, span, format!("`{dotted}` is read outside an aggregate"))
                        .with_help(format!("a monitor sees steps through aggregates: `sum({dotted})`, `last({dotted})`, ...")),
                );
                None
            }
            Place::Constant => {
                self.error(
                    Diagnostic::new(
                        Code::NotConstant,
                        span,
                        format!("`{dotted}` is not a constant"),
                    )
                    .with_help("this value is fixed at compile time: use literals and `const`s"),
                );
                None
            }
        }
    }

    pub(super) fn check_monitor_place(&mut self, dotted: &str, span: Span, cx: Cx) -> Option<()> {
        match cx.place {
            Place::Monitor => Some(()),
            Place::AggArg | Place::Filter => {
                self.error(
                    Diagnostic::new(Code::MonitorInFilter, span, format!("monitor `{dotted}` is read inside an aggregate"))
                        .with_help("aggregates and filters read `step.*`, `run.*`, consts and literals; combine monitors outside the aggregate"),
                );
                None
            }
            Place::Constant | Place::Derive => {
                self.error(
                    Diagnostic::new(
                        Code::NotConstant,
                        span,
                        format!("monitor `{dotted}` is not a constant"),
                    )
                    .with_help("this value is fixed at compile time: use literals and `const`s"),
                );
                None
            }
        }
    }

    pub(super) fn index_expr(
        &mut self,
        base: &ast::Expr,
        key: &ast::StrLit,
        span: Span,
        cx: Cx,
    ) -> Option<hir::Expr> {
        let ast::ExprKind::Name(q) = &base.kind else {
            return self.bad_index(span);
        };
        let Some(Target::Field(id)) = self.resolve_name(q, cx) else {
            return self.bad_index(span);
        };
        if self.resolve_field(id)? != Unit::Map {
            return self.bad_index(span);
        }
        self.check_field_place(&q.dotted(), span, cx)?;
        Some(hir::Expr {
            kind: ExprKind::Label(key.value.clone()),
            unit: Unit::String,
            span,
        })
    }

    pub(super) fn bad_index<T>(&mut self, span: Span) -> Option<T> {
        self.error(
            Diagnostic::new(Code::BadIndex, span, "only `run.labels` can be indexed")
                .with_help("read a run label as `run.labels[\"key\"]`"),
        );
        None
    }

    pub(super) fn in_expr(
        &mut self,
        l: &ast::Expr,
        list: &[ast::Expr],
        span: Span,
        cx: Cx,
    ) -> Option<hir::Expr> {
        let left = self.lower(l, cx);
        let items: Vec<Option<hir::Expr>> = list.iter().map(|x| self.lower(x, cx)).collect();
        let left = left?;
        let items: Vec<hir::Expr> = items.into_iter().collect::<Option<_>>()?;
        for item in &items {
            if item.unit != left.unit {
                self.unit_mismatch(
                    item.span,
                    format!(
                        "cannot look for a `{}` among `{}` values",
                        left.unit.name(),
                        item.unit.name()
                    ),
                );
                return None;
            }
        }
        Some(hir::Expr {
            kind: ExprKind::In(Box::new(left), items),
            unit: Unit::Bool,
            span,
        })
    }

    pub(super) fn unit_mismatch(&mut self, span: Span, message: String) {
        self.unit_mismatch_help(span, message, "both sides need the same unit: write money as `$5.00`, tokens as `1000 tokens`, durations as `30s`");
    }

    pub(super) fn unit_mismatch_help(&mut self, span: Span, message: String, help: &str) {
        self.error(
            Diagnostic::new(
                Code::UnitMismatch,
                span,
                format!("unit mismatch: {message}"),
            )
            .with_help(help),
        );
    }

    pub(super) fn binary_unit(
        &mut self,
        op: BinOp,
        l: &hir::Expr,
        r: &hir::Expr,
        span: Span,
    ) -> Option<Unit> {
        let (a, b) = (l.unit, r.unit);
        let sym = op.symbol();
        match op {
            BinOp::And | BinOp::Or => {
                if a == Unit::Bool && b == Unit::Bool {
                    return Some(Unit::Bool);
                }
                self.bad_operand(
                    span,
                    format!(
                        "`{sym}` takes `bool` operands, found `{}` and `{}`",
                        a.name(),
                        b.name()
                    ),
                )
            }
            BinOp::Eq | BinOp::Ne => {
                if a == b {
                    return Some(Unit::Bool);
                }
                self.unit_mismatch(
                    span,
                    format!("cannot compare `{}` with `{}`", a.name(), b.name()),
                );
                None
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let ordered = |u: Unit| u.is_number() || u == Unit::Timestamp;
                if a != b && ordered(a) && ordered(b) {
                    self.unit_mismatch(
                        span,
                        format!("cannot compare `{}` with `{}`", a.name(), b.name()),
                    );
                    return None;
                }
                if a == b && ordered(a) {
                    return Some(Unit::Bool);
                }
                self.bad_operand(
                    span,
                    format!(
                        "`{sym}` orders numbers, durations and timestamps, not `{}`",
                        if ordered(a) { b.name() } else { a.name() }
                    ),
                )
            }
            BinOp::Add | BinOp::Sub => self.additive_unit(op, a, b, span),
            BinOp::Mul | BinOp::Div => self.multiplicative_unit(op, a, b, span),
        }
    }

    /// `*` scales a quantity by a count; `/` divides by a count (keeping the unit) or by
    /// the same unit (giving a count).
    fn multiplicative_unit(&mut self, op: BinOp, a: Unit, b: Unit, span: Span) -> Option<Unit> {
        if op == BinOp::Mul {
            if a.is_number() && b.is_number() && (a == Unit::Count || b == Unit::Count) {
                return Some(if a == Unit::Count { b } else { a });
            }
            if a.is_number() && b.is_number() {
                self.unit_mismatch_help(
                    span,
                    format!("cannot multiply `{}` by `{}`", a.name(), b.name()),
                    "one side of `*` must be a plain count, e.g. `$0.01 * 3`",
                );
                return None;
            }
            self.bad_operand(
                span,
                format!("cannot multiply `{}` by `{}`", a.name(), b.name()),
            )
        } else {
            if a.is_number() && b == Unit::Count {
                return Some(a);
            }
            if a.is_number() && a == b {
                return Some(Unit::Count);
            }
            if a.is_number() && b.is_number() {
                self.unit_mismatch_help(
                    span,
                    format!("cannot divide `{}` by `{}`", a.name(), b.name()),
                    "divide by a count to keep the unit, or by the same unit to get a count",
                );
                return None;
            }
            self.bad_operand(
                span,
                format!("cannot divide `{}` by `{}`", a.name(), b.name()),
            )
        }
    }

    pub(super) fn additive_unit(
        &mut self,
        op: BinOp,
        a: Unit,
        b: Unit,
        span: Span,
    ) -> Option<Unit> {
        let verb = if op == BinOp::Add { "add" } else { "subtract" };
        match (a, b) {
            _ if a == b && a.is_number() => Some(a),
            (Unit::Timestamp, Unit::Duration) => Some(Unit::Timestamp),
            (Unit::Duration, Unit::Timestamp) if op == BinOp::Add => Some(Unit::Timestamp),
            (Unit::Timestamp, Unit::Timestamp) if op == BinOp::Sub => Some(Unit::Duration),
            _ if a.is_number() && b.is_number() => {
                let (x, y) = if op == BinOp::Add { (a, b) } else { (b, a) };
                let message = if op == BinOp::Add {
                    format!("cannot add `{}` and `{}`", x.name(), y.name())
                } else {
                    format!("cannot subtract `{}` from `{}`", x.name(), y.name())
                };
                self.unit_mismatch(span, message);
                None
            }
            _ => self.bad_operand(
                span,
                format!("cannot {verb} `{}` and `{}`", a.name(), b.name()),
            ),
        }
    }

    pub(super) fn aggregate(
        &mut self,
        func: AggFunc,
        arg: Option<&ast::Expr>,
        filter: Option<&ast::Expr>,
        window: Option<ast::QuantityLit>,
        span: Span,
        cx: Cx,
    ) -> Option<hir::Expr> {
        match cx.place {
            Place::Monitor => {}
            Place::AggArg | Place::Filter => {
                self.error(
                    Diagnostic::new(Code::NestedAggregate, span, format!("`{}(...)` inside another aggregate", func.name()))
                        .with_help("aggregates do not nest; declare the inner one as its own monitor and combine the two"),
                );
                return None;
            }
            Place::Constant | Place::Derive => {
                self.error(
                    Diagnostic::new(
                        Code::NotConstant,
                        span,
                        format!("`{}(...)` is not a constant", func.name()),
                    )
                    .with_help("aggregates belong in monitors: `monitor NAME = sum(step.cost)`"),
                );
                return None;
            }
        }
        let arg = arg.map(|a| self.lower(a, cx.at(Place::AggArg)));
        let filter = filter.map(|f| self.lower(f, cx.at(Place::Filter)));
        let window = self.window(func, window);
        let arg = match arg {
            Some(a) => Some(a?),
            None => None,
        };
        let filter = match filter {
            Some(f) => {
                let f = f?;
                if f.unit != Unit::Bool {
                    return self.bad_operand(
                        f.span,
                        format!("a `where` filter is a `bool`, found `{}`", f.unit.name()),
                    );
                }
                Some(f)
            }
            None => None,
        };
        let window = window?;
        let unit = self.aggregate_unit(func, arg.as_ref(), span)?;
        Some(hir::Expr {
            kind: ExprKind::Agg {
                func,
                arg: arg.map(Box::new),
                filter: filter.map(Box::new),
                window,
            },
            unit,
            span,
        })
    }

    /// `rate`'s window: `Some(Some(ns))` when valid, `Some(None)` for other aggregates.
    pub(super) fn window(
        &mut self,
        func: AggFunc,
        window: Option<ast::QuantityLit>,
    ) -> Option<Option<i64>> {
        let Some(w) = window.filter(|_| func == AggFunc::Rate) else {
            return Some(None);
        };
        let ns = w.value?;
        if ns <= 0 || ns > MAX_WINDOW_NS {
            self.error(
                Diagnostic::new(
                    Code::BadWindow,
                    w.span,
                    "a `rate` window is longer than zero and at most 1h",
                )
                .with_help("windows are trailing, by step timestamps: `rate(step.cost, 1m)`"),
            );
            return None;
        }
        Some(Some(ns))
    }

    pub(super) fn aggregate_unit(
        &mut self,
        func: AggFunc,
        arg: Option<&hir::Expr>,
        span: Span,
    ) -> Option<Unit> {
        let Some(arg) = arg else {
            return Some(Unit::Count); // count()
        };
        let u = arg.unit;
        let ok = match func {
            AggFunc::Count => u == Unit::Bool,
            AggFunc::Sum | AggFunc::Avg | AggFunc::Rate => u.is_number(),
            AggFunc::Max | AggFunc::Min => u.is_number() || u == Unit::Timestamp,
            AggFunc::Last => u != Unit::Map,
        };
        if !ok {
            let takes = match func {
                AggFunc::Count => "a `bool` condition",
                AggFunc::Sum | AggFunc::Avg | AggFunc::Rate => {
                    "a number (`count`, `tokens`, `usd` or `duration`)"
                }
                AggFunc::Max | AggFunc::Min => "a number, duration or timestamp",
                AggFunc::Last => "any value but a map",
            };
            return self.bad_operand(
                span,
                format!("`{}` takes {takes}, found `{}`", func.name(), u.name()),
            );
        }
        Some(if func == AggFunc::Count {
            Unit::Count
        } else {
            u
        })
    }
}

/// The longest trailing window `rate` accepts.
pub(super) const MAX_WINDOW_NS: i64 = 3_600 * num::SCALE;
