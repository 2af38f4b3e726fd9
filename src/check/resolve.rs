//! Resolving: names in expressions to fields, constants, monitors and signals, across
//! files, namespaces and imports.
//!
//! Definitions (consts, monitors, derived fields) resolve lazily, so order of declaration
//! does not matter and cycles are found and reported once.

use super::fold::reads_steps;
use super::hir::{self, Value};
use super::{Checker, Decl, Ns, State};
use crate::base::diag::{Code, Diagnostic};
use crate::base::source::{FileId, Span};
use crate::syntax::ast::{self, Unit};

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
    pub(super) fn at(self, place: Place) -> Cx {
        Cx { place, ..self }
    }
}

/// What a name refers to.
pub(super) enum Target {
    Field(hir::FieldId),
    Decl(Decl),
    Private(usize),
}

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

    pub(super) fn lookup_in(&self, ns: Ns, name: &str) -> Option<Decl> {
        let table = match ns {
            Ns::User => Some(&self.user),
            Ns::Module(i) => self.module_ns.get(i),
        };
        table.and_then(|t| t.get(name)).map(|e| e.decl)
    }

    pub(super) fn imported(&self, file: FileId, module: &str) -> bool {
        // Files are parsed in id order: `imports[i]` belongs to `FileId(i)`.
        self.imports
            .get(file.0 as usize)
            .is_some_and(|set| set.contains(module))
    }

    pub(super) fn resolve_name(&mut self, q: &ast::QName, cx: Cx) -> Option<Target> {
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

    pub(super) fn resolve_single(&mut self, name: &str, span: Span, cx: Cx) -> Option<Target> {
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

    pub(super) fn resolve_qualified(
        &mut self,
        q: &ast::QName,
        parts: &[&str],
        cx: Cx,
    ) -> Option<Target> {
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
}
