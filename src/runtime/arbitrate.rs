//! Arbitration (LANGUAGE §9 and its precise rules 1–4 and 6): limits of the bound policies
//! on one shared monitor form a group, judged by the strategy of the group's lead.
//!
//! - lead `explicit_priority`: only the lead's limit is judged; the others are shadowed;
//! - lead `most_restrictive`: every limit is judged on its own;
//! - lead `fail_closed`: limits that disagree (different values, or different breach
//!   enforcement) stop the run at binding with one `conflict` signal, and the group is
//!   judged as `most_restrictive` from then on;
//! - a tie of leads conflicts only when the tied policies differ in strategy or their limits
//!   disagree: one `conflict` signal, the group judged as `most_restrictive`, and a stop when
//!   any tied lead is `fail_closed` and the limits disagree. Tied leads that agree under
//!   `explicit_priority` are each judged; the rest is shadowed.

use super::Bound;
use super::decision::Signal;
use crate::compile::bytecode::{LimitDesc, PolicyDesc, Program};
use crate::syntax::ast::Conflict;
use std::collections::BTreeMap;

/// What binding decided beyond which policies apply.
pub struct Arbitration {
    /// One per bound limit (parallel to the run's zones): not judged.
    pub shadowed: Vec<bool>,
    pub conflicts: Vec<Signal>,
    /// A `fail_closed` disagreement: the run stops at binding, with this reason.
    pub stop: Option<String>,
}

/// A member of a group: (index into bound, limit index in its policy, flat index).
pub type Member = (usize, usize, usize);

fn disagree(a: &LimitDesc, b: &LimitDesc) -> bool {
    a.value != b.value || a.breach.enforcement != b.breach.enforcement
}

/// Arbitrates the bound policies of a run.
pub fn arbitrate(program: &Program, bound: &[Bound], limits: usize) -> Arbitration {
    let mut out = Arbitration {
        shadowed: vec![false; limits],
        conflicts: Vec::new(),
        stop: None,
    };
    for members in groups(program, bound).values().filter(|m| m.len() > 1) {
        judge_group(program, bound, members, &mut out);
    }
    out
}

/// The bound limits on each shared (top-level or stdlib) monitor, by monitor index: the
/// groups arbitration judges when they have two members or more.
pub fn groups(program: &Program, bound: &[Bound]) -> BTreeMap<u16, Vec<Member>> {
    let mut groups: BTreeMap<u16, Vec<Member>> = BTreeMap::new();
    for (bi, b) in bound.iter().enumerate() {
        let Some(p) = program.policies.get(usize::from(b.policy)) else {
            continue;
        };
        for (li, l) in p.limits.iter().enumerate() {
            let shared = program
                .monitors
                .get(usize::from(l.monitor))
                .is_some_and(|m| !m.id_name.contains('/'));
            if shared {
                groups.entry(l.monitor).or_default().push((
                    bi,
                    li,
                    usize::from(b.first_limit) + li,
                ));
            }
        }
    }
    groups
}

fn judge_group(program: &Program, bound: &[Bound], members: &[Member], out: &mut Arbitration) {
    let policy = |m: &Member| {
        bound
            .get(m.0)
            .and_then(|b| program.policies.get(usize::from(b.policy)))
    };
    let limit = |m: &Member| policy(m).and_then(|p| p.limits.get(m.1));
    let lead_precedence = members
        .iter()
        .filter_map(&policy)
        .map(|p| p.precedence)
        .min()
        .unwrap_or(u32::MAX);
    let leads: Vec<&Member> = members
        .iter()
        .filter(|m| policy(m).is_some_and(|p| p.precedence == lead_precedence))
        .collect();
    let any_disagreement = members.iter().any(|a| {
        members
            .iter()
            .any(|b| matches!((limit(a), limit(b)), (Some(x), Some(y)) if disagree(x, y)))
    });
    let Some(first_lead) = leads.first().and_then(|m| policy(m)) else {
        return;
    };
    let Some(lead_limit) = leads.first().and_then(|m| limit(m)) else {
        return;
    };
    let names = |ms: &mut dyn Iterator<Item = &Member>| -> Vec<String> {
        ms.filter_map(&policy).map(|p| p.name.clone()).collect()
    };
    if leads.len() > 1 {
        let strategies_differ = leads
            .iter()
            .any(|m| policy(m).is_some_and(|p| p.conflict != first_lead.conflict));
        let leads_disagree = leads.iter().any(|a| {
            leads
                .iter()
                .any(|b| matches!((limit(a), limit(b)), (Some(x), Some(y)) if disagree(x, y)))
        });
        if strategies_differ || leads_disagree {
            let with = names(&mut leads.iter().skip(1).copied());
            out.conflicts
                .push(conflict_signal(first_lead, lead_limit, "tie", with.clone()));
            let fail_closed = leads
                .iter()
                .any(|m| policy(m).is_some_and(|p| p.conflict == Conflict::FailClosed));
            if fail_closed && any_disagreement && out.stop.is_none() {
                out.stop = Some(format!(
                    "conflict: tie on {} between {} and {}",
                    lead_limit.name,
                    first_lead.name,
                    with.join(", ")
                ));
            }
            return; // judged as most_restrictive
        }
    }
    match first_lead.conflict {
        Conflict::MostRestrictive => {}
        Conflict::ExplicitPriority => {
            for m in members.iter().filter(|m| !leads.contains(m)) {
                if let Some(s) = out.shadowed.get_mut(m.2) {
                    *s = true;
                }
            }
        }
        Conflict::FailClosed => {
            if any_disagreement {
                let with = names(&mut members.iter().filter(|m| !leads.contains(m)));
                out.conflicts.push(conflict_signal(
                    first_lead,
                    lead_limit,
                    "disagreement",
                    with.clone(),
                ));
                if out.stop.is_none() {
                    out.stop = Some(format!(
                        "conflict: {} of {} disagrees with {}",
                        lead_limit.name,
                        first_lead.name,
                        with.join(", ")
                    ));
                }
            }
        }
    }
}

fn conflict_signal(
    lead: &PolicyDesc,
    limit: &LimitDesc,
    kind: &'static str,
    with: Vec<String>,
) -> Signal {
    Signal {
        kind: "conflict",
        policy: lead.name.clone(),
        version: lead.version,
        policy_hash: lead.hash.clone(),
        limit: Some(limit.name.clone()),
        observed: None,
        limit_value: None,
        percent: None,
        error: None,
        conflict: Some(kind),
        with: Some(with),
    }
}
