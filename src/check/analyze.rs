//! Analysis: warnings about policy sets that check but may not mean what they say.
//!
//! - `W0401` overlapping scopes that tie at one precedence with disagreeing limits on one
//!   monitor (the runtime would judge the group `most_restrictive` with a conflict signal);
//! - `W0402` limits at or below zero;
//! - `W0403` a limit that can never fire because an `explicit_priority` lead with a wider
//!   scope always binds with it.
//!
//! Limits are bucketed by (monitor, precedence) and scopes indexed by the values their
//! equality atoms require, so disjoint scopes (`agent == "a"` vs `agent == "b"`) are never
//! compared pairwise. Scope overlap and implication are decided exactly by enumerating the
//! values the scopes mention (plus one value none of them mentions), up to a budget.

use super::hir::{Enforcement, Program, Scope, Selector};
use crate::base::diag::{Code, Diagnostic};
use crate::base::num::Decimal;
use crate::base::source::Span;
use crate::syntax::ast::{Bind, Conflict};
use std::collections::{BTreeMap, BTreeSet};

/// Assignments tried before overlap or implication is given up as unknown (no warning).
const ENUMERATION_BUDGET: usize = 4096;

/// One limit on a shared (top-level) monitor.
struct Entry<'p> {
    policy: &'p super::hir::Policy,
    monitor: u32,
    /// A budget groups only with limits of the same key and window.
    budget: Option<&'p super::hir::Budget>,
    value: i64,
    enforcement: Option<Enforcement>,
    span: Span,
    required: Required,
}

/// For each selector a scope constrains, the values it must take (an implied `in`).
type Required = BTreeMap<Selector, BTreeSet<String>>;

/// Runs every analysis over a checked program.
pub(crate) fn analyze(program: &Program) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    non_positive_limits(program, &mut out);
    let entries = shared_limits(program);
    ties(program, &entries, &mut out);
    shadowing(program, &entries, &mut out);
    out
}

fn non_positive_limits(program: &Program, out: &mut Vec<Diagnostic>) {
    for p in &program.policies {
        for l in &p.limits {
            if l.value <= 0 {
                out.push(
                    Diagnostic::new(
                        Code::NonPositiveLimit,
                        l.span,
                        format!(
                            "limit on `{}` is {}, at or below zero",
                            l.name,
                            Decimal(l.value)
                        ),
                    )
                    .with_help(
                        "such a limit is breached at the first step; give it a positive value",
                    ),
                );
            }
        }
    }
}

fn shared_limits(program: &Program) -> Vec<Entry<'_>> {
    let mut entries = Vec::new();
    for p in &program.policies {
        let required = required_values(&p.scope);
        for l in &p.limits {
            let shared = program
                .monitors
                .get(l.monitor.0 as usize)
                .is_some_and(|m| m.owner.is_none());
            if shared {
                entries.push(Entry {
                    policy: p,
                    monitor: l.monitor.0,
                    budget: l.budget.as_ref(),
                    value: l.value,
                    enforcement: l.breach.enforcement,
                    span: l.span,
                    required: required.clone(),
                });
            }
        }
    }
    entries
}

fn monitor_name(program: &Program, id: u32) -> &str {
    program
        .monitors
        .get(id as usize)
        .map_or("?", |m| m.id_name.as_str())
}

/// At most this many policies are named in one `W0401`, and labelled.
const NAMED: usize = 8;

/// Disjoint sets over bucket members: the groups of policies joined by ties.
struct Groups {
    parent: Vec<usize>,
}

impl Groups {
    fn new(n: usize) -> Groups {
        Groups {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut i: usize) -> usize {
        while let Some(&p) = self.parent.get(i) {
            if p == i {
                break;
            }
            let grand = self.parent.get(p).copied().unwrap_or(p);
            if let Some(slot) = self.parent.get_mut(i) {
                *slot = grand;
            }
            i = grand;
        }
        i
    }

    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if let Some(slot) = self.parent.get_mut(ra.max(rb)) {
            *slot = ra.min(rb);
        }
    }
}

/// `W0401`: one warning per group of policies whose overlapping scopes tie at one
/// precedence with disagreeing limits on one monitor, naming the group's members. A pair
/// already in one group is never compared again, so a set of thousands of overlapping
/// policies costs a pass, not a comparison per pair.
fn ties(program: &Program, entries: &[Entry<'_>], out: &mut Vec<Diagnostic>) {
    type Bucket<'p> = (u32, Option<&'p super::hir::Budget>, u32);
    let mut buckets: BTreeMap<Bucket<'_>, Vec<usize>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        buckets
            .entry((e.monitor, e.budget, e.policy.precedence))
            .or_default()
            .push(i);
    }
    for ((monitor, _, precedence), members) in buckets {
        let mut groups = Groups::new(members.len());
        for_candidate_pairs(entries, &members, |a, b| {
            if groups.find(a) == groups.find(b) {
                return;
            }
            let (Some(x), Some(y)) = (
                members.get(a).and_then(|i| entries.get(*i)),
                members.get(b).and_then(|i| entries.get(*i)),
            ) else {
                return;
            };
            let disagree = x.value != y.value
                || x.enforcement != y.enforcement
                || x.policy.conflict != y.policy.conflict;
            if disagree && overlaps(&x.policy.scope, &y.policy.scope) == Some(true) {
                groups.union(a, b);
            }
        });
        let mut by_root: BTreeMap<usize, Vec<&Entry<'_>>> = BTreeMap::new();
        for (slot, i) in members.iter().enumerate() {
            if let Some(e) = entries.get(*i) {
                by_root.entry(groups.find(slot)).or_default().push(e);
            }
        }
        for group in by_root.values().filter(|g| g.len() > 1) {
            out.extend(tie_warning(program, monitor, precedence, group));
        }
    }
}

fn tie_warning(
    program: &Program,
    monitor: u32,
    precedence: u32,
    group: &[&Entry<'_>],
) -> Option<Diagnostic> {
    let (last, others) = group.split_last()?;
    let names: Vec<String> = group
        .iter()
        .take(NAMED)
        .map(|e| format!("`{}`", e.policy.name))
        .collect();
    let who = match names.as_slice() {
        [a, b] if group.len() == 2 => format!("{a} and {b}"),
        _ if group.len() > NAMED => {
            format!("{} and {} more", names.join(", "), group.len() - NAMED)
        }
        _ => names.join(", "),
    };
    let label = if others.len() == 1 {
        "the other limit"
    } else {
        "a limit of the group"
    };
    let mut d = Diagnostic::new(
        Code::TieConflict,
        last.span,
        format!(
            "policies {who} tie at precedence {precedence} with disagreeing limits on `{}`",
            monitor_name(program, monitor)
        ),
    );
    for e in others.iter().take(NAMED) {
        d = d.with_label(e.span, label);
    }
    Some(d.with_help("runs in both scopes get a `conflict` signal and both limits judged on their own; give one policy a lower precedence number"))
}

/// Calls `visit` with each pair of bucket members (as positions in `members`) whose scopes
/// might overlap, using an index on the selector most members constrain; never builds the
/// list of pairs.
fn for_candidate_pairs(
    entries: &[Entry<'_>],
    members: &[usize],
    mut visit: impl FnMut(usize, usize),
) {
    let mut counts: BTreeMap<&Selector, usize> = BTreeMap::new();
    for i in members {
        for s in entries
            .get(*i)
            .map(|e| e.required.keys())
            .into_iter()
            .flatten()
        {
            *counts.entry(s).or_default() += 1;
        }
    }
    let key = counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(s, _)| s.clone());
    let mut by_value: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut wild = Vec::new();
    for (slot, i) in members.iter().enumerate() {
        match key.as_ref().and_then(|k| entries.get(*i)?.required.get(k)) {
            Some(values) => values
                .iter()
                .for_each(|v| by_value.entry(v.as_str()).or_default().push(slot)),
            None => wild.push(slot),
        }
    }
    for list in by_value.values() {
        for (n, a) in list.iter().enumerate() {
            for b in list.iter().skip(n + 1) {
                visit(*a, *b);
            }
        }
    }
    for w in &wild {
        for m in 0..members.len() {
            if m != *w {
                visit((*w).min(m), (*w).max(m));
            }
        }
    }
}

fn shadowing(program: &Program, entries: &[Entry<'_>], out: &mut Vec<Diagnostic>) {
    let mut by_monitor: BTreeMap<(u32, Option<&super::hir::Budget>), Vec<&Entry<'_>>> =
        BTreeMap::new();
    for e in entries {
        by_monitor.entry((e.monitor, e.budget)).or_default().push(e);
    }
    for ((monitor, _), group) in by_monitor {
        // A lead shadows only while no policy of another strategy could lead instead.
        let min_other = group
            .iter()
            .filter(|e| e.policy.conflict != Conflict::ExplicitPriority)
            .map(|e| e.policy.precedence)
            .min()
            .unwrap_or(u32::MAX);
        let leads: Vec<&&Entry<'_>> = group
            .iter()
            .filter(|e| {
                e.policy.conflict == Conflict::ExplicitPriority && e.policy.precedence < min_other
            })
            .collect();
        for b in &group {
            let shadow = leads.iter().find(|a| {
                a.policy.precedence < b.policy.precedence
                    && bind_order(a.policy.bind) <= bind_order(b.policy.bind)
                    && !disjoint(&a.required, &b.required)
                    && implies(&b.policy.scope, &a.policy.scope) == Some(true)
            });
            if let Some(a) = shadow {
                out.push(
                    Diagnostic::new(
                        Code::ShadowedLimit,
                        b.span,
                        format!(
                            "limit on `{}` in policy `{}` can never fire: `{}` always applies with it and shadows it",
                            monitor_name(program, monitor),
                            b.policy.name,
                            a.policy.name
                        ),
                    )
                    .with_label(a.span, "this `explicit_priority` lead's limit is judged instead")
                    .with_help("give this policy a lower precedence number, or narrow the lead's scope"),
                );
            }
        }
    }
}

/// `run_start` and `each_step` bind at the run's start; `first_token` later.
fn bind_order(b: Bind) -> u8 {
    match b {
        Bind::RunStart | Bind::EachStep => 0,
        Bind::FirstToken => 1,
    }
}

/// The values each selector must take for the scope to hold.
pub(crate) fn required_values(scope: &Scope) -> Required {
    match scope {
        Scope::Eq(s, v) => BTreeMap::from([(s.clone(), BTreeSet::from([v.clone()]))]),
        Scope::In(s, vs) => BTreeMap::from([(s.clone(), vs.iter().cloned().collect())]),
        Scope::All | Scope::Not(_) => BTreeMap::new(),
        Scope::And(a, b) => {
            let (mut x, y) = (required_values(a), required_values(b));
            for (s, vs) in y {
                let merged = match x.get(&s) {
                    Some(xs) => xs.intersection(&vs).cloned().collect(),
                    None => vs,
                };
                x.insert(s, merged);
            }
            x
        }
        Scope::Or(a, b) => {
            let (x, y) = (required_values(a), required_values(b));
            x.into_iter()
                .filter_map(|(s, xs)| y.get(&s).map(|ys| (s, xs.union(ys).cloned().collect())))
                .collect()
        }
    }
}

fn disjoint(a: &Required, b: &Required) -> bool {
    a.iter()
        .any(|(s, xs)| b.get(s).is_some_and(|ys| xs.is_disjoint(ys)))
}

/// Whether some run is in both scopes; `None` when too costly to decide.
pub(crate) fn overlaps(a: &Scope, b: &Scope) -> Option<bool> {
    exists(&[a, b], |env| holds(a, env) && holds(b, env))
}

/// Whether every run in `a` is in `b`; `None` when too costly to decide.
pub(crate) fn implies(a: &Scope, b: &Scope) -> Option<bool> {
    exists(&[a, b], |env| holds(a, env) && !holds(b, env)).map(|found| !found)
}

type Env = BTreeMap<Selector, String>;

/// Searches the assignments of the mentioned selectors to their mentioned values plus
/// one fresh value: enough to decide any formula over equality atoms.
fn exists(scopes: &[&Scope], mut test: impl FnMut(&Env) -> bool) -> Option<bool> {
    let mut domains: BTreeMap<Selector, BTreeSet<String>> = BTreeMap::new();
    for s in scopes {
        mentioned(s, &mut domains);
    }
    let domains: Vec<(Selector, Vec<String>)> = domains
        .into_iter()
        .map(|(s, mut vs)| {
            let mut fresh = String::from("\u{0}other");
            while vs.contains(&fresh) {
                fresh.push('\u{0}');
            }
            vs.insert(fresh);
            (s, vs.into_iter().collect())
        })
        .collect();
    let mut total: usize = 1;
    for (_, vs) in &domains {
        total = total
            .checked_mul(vs.len())
            .filter(|t| *t <= ENUMERATION_BUDGET)?;
    }
    let mut env: Env = BTreeMap::new();
    for n in 0..total {
        let mut rest = n;
        for (s, vs) in &domains {
            let len = vs.len().max(1);
            if let Some(v) = vs.get(rest % len) {
                env.insert(s.clone(), v.clone());
            }
            rest /= len;
        }
        if test(&env) {
            return Some(true);
        }
    }
    Some(false)
}

fn mentioned(scope: &Scope, out: &mut BTreeMap<Selector, BTreeSet<String>>) {
    match scope {
        Scope::All => {}
        Scope::Eq(s, v) => {
            out.entry(s.clone()).or_default().insert(v.clone());
        }
        Scope::In(s, vs) => out.entry(s.clone()).or_default().extend(vs.iter().cloned()),
        Scope::Not(x) => mentioned(x, out),
        Scope::And(a, b) | Scope::Or(a, b) => {
            mentioned(a, out);
            mentioned(b, out);
        }
    }
}

/// Evaluates a scope against run attributes (absent ones are `""`).
pub(crate) fn holds(scope: &Scope, env: &Env) -> bool {
    scope.matches(&|s: &Selector| env.get(s).map_or("", String::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eq(s: Selector, v: &str) -> Scope {
        Scope::Eq(s, v.into())
    }

    #[test]
    fn overlap_and_implication_are_exact() {
        let a = eq(Selector::Agent, "a");
        let b = eq(Selector::Agent, "b");
        assert_eq!(overlaps(&a, &b), Some(false));
        assert_eq!(overlaps(&a, &Scope::All), Some(true));
        assert_eq!(implies(&a, &Scope::All), Some(true));
        assert_eq!(implies(&Scope::All, &a), Some(false));
        let not_a = Scope::Not(Box::new(a.clone()));
        assert_eq!(overlaps(&a, &not_a), Some(false));
        let either = Scope::In(Selector::Agent, vec!["a".into(), "b".into()]);
        assert_eq!(implies(&a, &either), Some(true));
        assert_eq!(implies(&either, &a), Some(false));
        // A label nobody sets is "": `labels["x"] != "y"` holds for such runs.
        let tenant = Scope::And(
            Box::new(eq(Selector::Tenant, "t")),
            Box::new(Scope::Not(Box::new(eq(Selector::Label("x".into()), "y")))),
        );
        assert_eq!(overlaps(&tenant, &eq(Selector::Tenant, "t")), Some(true));
    }

    #[test]
    fn required_values_intersect_and_unite() {
        let s = Scope::And(
            Box::new(Scope::In(Selector::Agent, vec!["a".into(), "b".into()])),
            Box::new(eq(Selector::Agent, "b")),
        );
        assert_eq!(
            required_values(&s).get(&Selector::Agent),
            Some(&BTreeSet::from(["b".to_string()]))
        );
        let o = Scope::Or(
            Box::new(eq(Selector::Agent, "a")),
            Box::new(eq(Selector::Tenant, "t")),
        );
        assert!(required_values(&o).is_empty());
    }
}
