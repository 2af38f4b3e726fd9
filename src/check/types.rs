//! Names and units: resolves names in expressions, types them by the unit rules of
//! LANGUAGE §4 and §6, and folds constants exactly.
//!
//! Definitions (consts, monitors, derived fields) resolve lazily, so order of declaration
//! does not matter and cycles are found and reported once.

use super::hir::{self, ExprKind, Value};
use super::{Checker, Decl, Ns, State};
use crate::base::diag::{Code, Diagnostic};
use crate::base::num::{self, ArithError};
use crate::base::source::{FileId, Span};
use crate::syntax::ast::{self, AggFunc, BinOp, Literal, NumUnit, Unit};

/// Where an expression stands, which decides what it may read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// A `const`, limit value, ceiling or channel argument: literals and consts only.
    Constant,
    /// A monitor's body, outside any aggregate.
    Monitor,
    /// An aggregate's argument.
    AggArg,
    /// An aggregate's `where` filter.
    Filter,
    /// A `let` field derivation (stdlib only).
    Derive,
}

/// The context of an expression: its file, namespace, policy and place.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cx {
    pub file: FileId,
    pub ns: Ns,
    pub policy: Option<usize>,
    pub place: Place,
}

impl Cx {
    fn at(self, place: Place) -> Cx {
        Cx { place, ..self }
    }
}

/// What a name refers to.
enum Target {
    Field(hir::FieldId),
    Decl(Decl),
    Private(usize),
}

/// The longest trailing window `rate` accepts.
const MAX_WINDOW_NS: i64 = 3_600 * num::SCALE;

impl<'a> Checker<'a> {
    // ----- lazily resolved definitions ---------------------------------------------

    pub(super) fn resolve_field(&mut self, id: hir::FieldId) -> Option<Unit> {
        let slot = self.fields.get(id.0 as usize)?;
        match &slot.state {
            State::Done(r) => return r.as_ref().map(|(u, _)| *u),
            State::Busy => {
                let d = Diagnostic::new(
                    Code::Cycle,
                    slot.span,
                    format!("field `{}` is defined in terms of itself", slot.name),
                );
                self.error(d);
                return None;
            }
            State::Todo => {}
        }
        let result = match &slot.def {
            super::FieldDef::Extern(u) => Some((*u, hir::FieldSource::Event)),
            super::FieldDef::Metric(name, u) => Some((*u, hir::FieldSource::Metric(name.clone()))),
            super::FieldDef::Let(expr, file) => {
                let (expr, file) = (*expr, *file);
                if let Some(s) = self.fields.get_mut(id.0 as usize) {
                    s.state = State::Busy;
                }
                let ns = self.ns_of(file);
                let cx = Cx {
                    file,
                    ns,
                    policy: None,
                    place: Place::Derive,
                };
                self.lower(expr, cx)
                    .map(|e| (e.unit, hir::FieldSource::Derived(e)))
            }
        };
        let unit = result.as_ref().map(|(u, _)| *u);
        if let Some(s) = self.fields.get_mut(id.0 as usize) {
            s.state = State::Done(result);
        }
        unit
    }

    pub(super) fn resolve_const(&mut self, index: usize) -> Option<(Unit, Value)> {
        let slot = self.consts.get(index)?;
        match &slot.state {
            State::Done(r) => return r.clone(),
            State::Busy => {
                let d = Diagnostic::new(
                    Code::Cycle,
                    slot.span,
                    format!("const `{}` is defined in terms of itself", slot.name),
                );
                self.error(d);
                return None;
            }
            State::Todo => {}
        }
        let (expr, cx) = (
            slot.expr,
            Cx {
                file: slot.file,
                ns: slot.ns,
                policy: None,
                place: Place::Constant,
            },
        );
        if let Some(s) = self.consts.get_mut(index) {
            s.state = State::Busy;
        }
        let result = self
            .lower(expr, cx)
            .and_then(|e| self.fold(&e).map(|v| (e.unit, v)));
        if let Some(s) = self.consts.get_mut(index) {
            s.state = State::Done(result.clone());
        }
        result
    }

    pub(super) fn resolve_monitor(&mut self, index: usize) -> Option<Unit> {
        let slot = self.monitors.get(index)?;
        match &slot.state {
            State::Done(r) => return r.as_ref().map(|m| m.unit),
            State::Busy => {
                let d = Diagnostic::new(
                    Code::Cycle,
                    slot.span,
                    format!("monitor `{}` is defined in terms of itself", slot.name),
                )
                .with_help("monitors may read other monitors, but not in a cycle");
                self.error(d);
                return None;
            }
            State::Todo => {}
        }
        let cx = Cx {
            file: slot.file,
            ns: slot.ns,
            policy: slot.owner,
            place: Place::Monitor,
        };
        let (expr, span, name, id_name) = (
            slot.expr,
            slot.span,
            slot.name.clone(),
            slot.id_name.clone(),
        );
        let owner = slot
            .owner
            .and_then(|p| self.policies.get(p))
            .map(|p| p.decl.name.text.clone());
        if let Some(s) = self.monitors.get_mut(index) {
            s.state = State::Busy;
        }
        let lowered = self.lower(expr, cx);
        let result = lowered.and_then(|e| {
            if !reads_steps(&e) {
                self.error(
                    Diagnostic::new(
                        Code::NoAggregate,
                        e.span,
                        format!("monitor `{name}` reads no step"),
                    )
                    .with_help("a monitor aggregates steps, e.g. `sum(step.cost)` or `count()`"),
                );
                return None;
            }
            Some(hir::Monitor {
                id_name,
                name,
                owner,
                unit: e.unit,
                expr: e,
                span,
            })
        });
        let unit = result.as_ref().map(|m| m.unit);
        if let Some(s) = self.monitors.get_mut(index) {
            s.state = State::Done(result);
        }
        unit
    }

    // ----- names --------------------------------------------------------------------

    fn lookup_in(&self, ns: Ns, name: &str) -> Option<Decl> {
        let table = match ns {
            Ns::User => Some(&self.user),
            Ns::Module(i) => self.module_ns.get(i),
        };
        table.and_then(|t| t.get(name)).map(|e| e.decl)
    }

    fn imported(&self, file: FileId, module: &str) -> bool {
        // Files are parsed in id order: `imports[i]` belongs to `FileId(i)`.
        self.imports
            .get(file.0 as usize)
            .is_some_and(|set| set.contains(module))
    }

    fn resolve_name(&mut self, q: &ast::QName, cx: Cx) -> Option<Target> {
        let dotted = q.dotted();
        let parts: Vec<&str> = q.parts.iter().map(|p| p.text.as_str()).collect();
        if parts.len() >= 2 && matches!(parts.first(), Some(&"step" | &"run")) {
            if let Some(id) = self.field_names.get(&dotted) {
                return Some(Target::Field(*id));
            }
            let help = if parts.first() == Some(&"step") {
                "step fields come from the prelude (`step.cost`, `step.tokens`, ...) or a `signal NAME: unit` declaration"
            } else {
                "run fields are `run.tenant`, `run.agent`, `run.api_key`, `run.human_actor` and `run.labels[\"key\"]`"
            };
            self.error(
                Diagnostic::new(
                    Code::UnknownName,
                    q.span,
                    format!("unknown field `{dotted}`"),
                )
                .with_help(help),
            );
            return None;
        }
        if let [single] = parts.as_slice() {
            return self.resolve_single(single, q.span, cx);
        }
        self.resolve_qualified(q, &parts, cx)
    }

    fn resolve_single(&mut self, name: &str, span: Span, cx: Cx) -> Option<Target> {
        if let Some(idx) = cx
            .policy
            .and_then(|p| self.policies.get(p))
            .and_then(|p| p.private.get(name))
        {
            return Some(Target::Private(*idx));
        }
        if let Some(decl) = self.lookup_in(cx.ns, name) {
            return Some(Target::Decl(decl));
        }
        let mut d = Diagnostic::new(Code::UnknownName, span, format!("unknown name `{name}`"));
        if let Some((module, _, _)) = crate::stdlib::MODULES.iter().find(|(m, _, t)| {
            *m != crate::stdlib::PRELUDE && t.contains(&format!("monitor {name} "))
        }) {
            d = d.with_help(format!("standard monitors are used by their qualified name: `{module}.{name}` (with `import {module}`)"));
        }
        self.error(d);
        None
    }

    fn resolve_qualified(&mut self, q: &ast::QName, parts: &[&str], cx: Cx) -> Option<Target> {
        let dotted = q.dotted();
        for split in (1..parts.len()).rev() {
            let module = parts.get(..split).unwrap_or_default().join(".");
            let member = parts.get(split..).unwrap_or_default().join(".");
            let loaded = self.module_names.iter().position(|m| *m == module);
            let embedded = crate::stdlib::module(&module).is_some();
            if loaded.is_none() && !embedded {
                continue;
            }
            let own = loaded.is_some_and(|i| cx.ns == Ns::Module(i));
            if !own && !self.imported(cx.file, &module) {
                self.error(
                    Diagnostic::new(
                        Code::UnknownName,
                        q.span,
                        format!("`{dotted}` needs `import {module}`"),
                    )
                    .with_help(format!(
                        "add `import {module}` at the top of this file; imports are per file"
                    )),
                );
                return None;
            }
            if let Some(decl) = loaded.and_then(|i| self.lookup_in(Ns::Module(i), &member)) {
                return Some(Target::Decl(decl));
            }
            self.error(Diagnostic::new(
                Code::UnknownName,
                q.span,
                format!("module `{module}` has no `{member}`"),
            ));
            return None;
        }
        self.error(
            Diagnostic::new(Code::UnknownName, q.span, format!("unknown name `{dotted}`"))
                .with_help("a dotted name is a `step.`/`run.` field or a member of an imported module such as `std.llm.cost`"),
        );
        None
    }

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

    fn bad_operand<T>(&mut self, span: Span, message: String) -> Option<T> {
        self.error(Diagnostic::new(Code::BadOperand, span, message));
        None
    }

    fn literal(&mut self, lit: &Literal, span: Span) -> Option<(ExprKind, Unit)> {
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

    fn name_expr(&mut self, q: &ast::QName, span: Span, cx: Cx) -> Option<hir::Expr> {
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

    fn check_field_place(&mut self, dotted: &str, span: Span, cx: Cx) -> Option<()> {
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

    fn check_monitor_place(&mut self, dotted: &str, span: Span, cx: Cx) -> Option<()> {
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

    fn index_expr(
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

    fn bad_index<T>(&mut self, span: Span) -> Option<T> {
        self.error(
            Diagnostic::new(Code::BadIndex, span, "only `run.labels` can be indexed")
                .with_help("read a run label as `run.labels[\"key\"]`"),
        );
        None
    }

    fn in_expr(
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

    fn unit_mismatch(&mut self, span: Span, message: String) {
        self.unit_mismatch_help(span, message, "both sides need the same unit: write money as `$5.00`, tokens as `1000 tokens`, durations as `30s`");
    }

    fn unit_mismatch_help(&mut self, span: Span, message: String, help: &str) {
        self.error(
            Diagnostic::new(
                Code::UnitMismatch,
                span,
                format!("unit mismatch: {message}"),
            )
            .with_help(help),
        );
    }

    fn binary_unit(&mut self, op: BinOp, l: &hir::Expr, r: &hir::Expr, span: Span) -> Option<Unit> {
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
            BinOp::Mul => {
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
            }
            BinOp::Div => {
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
    }

    fn additive_unit(&mut self, op: BinOp, a: Unit, b: Unit, span: Span) -> Option<Unit> {
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

    fn aggregate(
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
    fn window(&mut self, func: AggFunc, window: Option<ast::QuantityLit>) -> Option<Option<i64>> {
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

    fn aggregate_unit(
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

    // ----- constants ----------------------------------------------------------------

    /// Folds a constant expression exactly; reports overflow and division by zero.
    pub(super) fn fold(&mut self, e: &hir::Expr) -> Option<Value> {
        match eval_const(e) {
            Ok(v) => Some(v),
            Err(FoldError::Arith(err)) => {
                let what = match err {
                    ArithError::Overflow => "overflows",
                    ArithError::DivisionByZero => "divides by zero",
                };
                self.error(Diagnostic::new(
                    Code::ConstEval,
                    e.span,
                    format!("this constant {what}"),
                ));
                None
            }
            Err(FoldError::NotConstant) => {
                self.error(Diagnostic::new(
                    Code::NotConstant,
                    e.span,
                    "value is not a constant",
                ));
                None
            }
        }
    }

    /// Lowers and folds a constant number of the given unit (limit values, ceilings).
    pub(super) fn constant_number(
        &mut self,
        e: &ast::Expr,
        cx: Cx,
        want: Unit,
        what: &str,
    ) -> Option<i64> {
        let lowered = self.lower(e, cx.at(Place::Constant))?;
        if lowered.unit != want {
            let help = match want {
                Unit::Usd => "write the value in dollars, e.g. `$5.00`",
                Unit::Tokens => "write the value in tokens, e.g. `200_000 tokens`",
                Unit::Duration => "write the value as a duration, e.g. `30s`",
                _ => "write a plain number",
            };
            self.error(
                Diagnostic::new(
                    Code::UnitMismatch,
                    e.span,
                    format!(
                        "unit mismatch: {what} is `{}`, the monitor is `{}`",
                        lowered.unit.name(),
                        want.name()
                    ),
                )
                .with_help(help),
            );
            return None;
        }
        match self.fold(&lowered)? {
            Value::Num(n) => Some(n),
            _ => None,
        }
    }
}

/// Whether an expression reads steps (an aggregate, or a monitor that does).
fn reads_steps(e: &hir::Expr) -> bool {
    match &e.kind {
        ExprKind::Agg { .. } | ExprKind::Monitor(_) => true,
        ExprKind::Const(_) | ExprKind::Field(_) | ExprKind::Label(_) => false,
        ExprKind::Neg(x) | ExprKind::Not(x) => reads_steps(x),
        ExprKind::Binary(_, l, r) => reads_steps(l) || reads_steps(r),
        ExprKind::In(l, list) => reads_steps(l) || list.iter().any(reads_steps),
    }
}

enum FoldError {
    Arith(ArithError),
    NotConstant,
}

impl From<ArithError> for FoldError {
    fn from(e: ArithError) -> FoldError {
        FoldError::Arith(e)
    }
}

/// Evaluates an expression made only of constants.
fn eval_const(e: &hir::Expr) -> Result<Value, FoldError> {
    match &e.kind {
        ExprKind::Const(v) => Ok(v.clone()),
        ExprKind::Neg(x) => match eval_const(x)? {
            Value::Num(n) => Ok(Value::Num(num::neg(n)?)),
            _ => Err(FoldError::NotConstant),
        },
        ExprKind::Not(x) => match eval_const(x)? {
            Value::Bool(b) => Ok(Value::Bool(!b)),
            _ => Err(FoldError::NotConstant),
        },
        ExprKind::Binary(op, l, r) => eval_binary(*op, eval_const(l)?, eval_const(r)?),
        ExprKind::In(l, list) => {
            let left = eval_const(l)?;
            for item in list {
                if eval_const(item)? == left {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        ExprKind::Field(_) | ExprKind::Label(_) | ExprKind::Monitor(_) | ExprKind::Agg { .. } => {
            Err(FoldError::NotConstant)
        }
    }
}

fn eval_binary(op: BinOp, l: Value, r: Value) -> Result<Value, FoldError> {
    use Value::{Bool, Num};
    Ok(match (op, l, r) {
        (BinOp::And, Bool(a), Bool(b)) => Bool(a && b),
        (BinOp::Or, Bool(a), Bool(b)) => Bool(a || b),
        (BinOp::Eq, a, b) => Bool(a == b),
        (BinOp::Ne, a, b) => Bool(a != b),
        (BinOp::Lt, Num(a), Num(b)) => Bool(a < b),
        (BinOp::Le, Num(a), Num(b)) => Bool(a <= b),
        (BinOp::Gt, Num(a), Num(b)) => Bool(a > b),
        (BinOp::Ge, Num(a), Num(b)) => Bool(a >= b),
        (BinOp::Add, Num(a), Num(b)) => Num(num::add(a, b)?),
        (BinOp::Sub, Num(a), Num(b)) => Num(num::sub(a, b)?),
        (BinOp::Mul, Num(a), Num(b)) => Num(num::mul(a, b)?),
        (BinOp::Div, Num(a), Num(b)) => Num(num::div(a, b)?),
        _ => return Err(FoldError::NotConstant),
    })
}
