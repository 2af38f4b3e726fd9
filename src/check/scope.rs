//! A policy's `scope`, lowered to the selectors and values the runtime matches.

use super::hir;
use crate::syntax::ast;

pub(super) fn lower_selector(s: &ast::Selector) -> hir::Selector {
    match s {
        ast::Selector::Tenant => hir::Selector::Tenant,
        ast::Selector::Agent => hir::Selector::Agent,
        ast::Selector::ApiKey => hir::Selector::ApiKey,
        ast::Selector::HumanActor => hir::Selector::HumanActor,
        ast::Selector::Label(k) => hir::Selector::Label(k.clone()),
    }
}

pub(super) fn lower_scope(s: &ast::Scope) -> hir::Scope {
    use ast::ScopeKind as S;
    match &s.kind {
        S::All => hir::Scope::All,
        S::Eq {
            selector,
            negated,
            value,
        } => {
            let eq = hir::Scope::Eq(lower_selector(selector), value.value.clone());
            if *negated {
                hir::Scope::Not(Box::new(eq))
            } else {
                eq
            }
        }
        S::In { selector, values } => hir::Scope::In(
            lower_selector(selector),
            values.iter().map(|v| v.value.clone()).collect(),
        ),
        S::Not(x) => hir::Scope::Not(Box::new(lower_scope(x))),
        S::And(a, b) => hir::Scope::And(Box::new(lower_scope(a)), Box::new(lower_scope(b))),
        S::Or(a, b) => hir::Scope::Or(Box::new(lower_scope(a)), Box::new(lower_scope(b))),
    }
}
