//! Arbitration (LANGUAGE §9 and its precise rules 1–4 and 6): limits of the bound policies
//! on one shared monitor form a group, judged by the strategy of the group's lead.
//!
//! - lead `explicit_priority`: only the lead's limit is judged; the others are shadowed;
//! - lead `most_restrictive`: every limit is judged on its own;
//! - lead `fail_closed`: limits that disagree (different effective values, raises
//!   included, or different breach enforcement) stop the run at binding with one
//!   `conflict` signal, and the group is judged as `most_restrictive` for the rest of the
//!   run, whatever binds later (no limit of it shadowed, no further conflict);
//! - a tie of leads conflicts only when the tied policies differ in strategy or their limits
//!   disagree: one `conflict` signal, the group judged as `most_restrictive`, and a stop when
//!   any tied lead is `fail_closed` and the limits disagree. Tied leads that agree under
//!   `explicit_priority` are each judged; the rest is shadowed.

use super::decision::Signal;
use super::{Bound, Grant};
use crate::base::lang::Conflict;
use crate::compile::bytecode::{LimitDesc, PolicyDesc, Program};
use std::collections::BTreeMap;

/// What binding decided beyond which policies apply.
pub(crate) struct Arbitration {
    /// One per bound limit (parallel to the run's zones): not judged.
    pub shadowed: Vec<bool>,
    pub conflicts: Vec<Signal>,
    /// A `fail_closed` disagreement: the run stops at binding, with this reason.
    pub stop: Option<String>,
    /// The groups (by monitor identity) a `fail_closed` disagreement put under
    /// `most_restrictive` for the rest of the run: the ones given, and any new.
    pub forced: Vec<String>,
}

/// What a run brings to arbitration beyond its bound policies.
#[derive(Clone, Copy)]
pub(crate) struct RunTerms<'r> {
    /// Raises in force, by flat limit index: limits are compared at their effective values.
    pub raises: &'r [(u16, Grant)],
    /// Groups a `fail_closed` disagreement already put under `most_restrictive`.
    pub forced: &'r [String],
}

impl RunTerms<'_> {
    /// A run just starting: no raise, no group forced.
    pub(crate) const NONE: RunTerms<'static> = RunTerms {
        raises: &[],
        forced: &[],
    };
}

/// A member of a group: (index into bound, limit index in its policy, flat index).
pub(crate) type Member = (usize, usize, usize);

/// A group member's limit as arbitration compares it: its effective value (a raise in
/// force, else the compiled value) and its breach enforcement.
struct Terms<'p> {
    limit: &'p LimitDesc,
    effective: i64,
}

fn disagree(a: &Terms, b: &Terms) -> bool {
    a.effective != b.effective || a.limit.breach.enforcement != b.limit.breach.enforcement
}

/// Arbitrates the bound policies of a run.
pub(crate) fn arbitrate(
    program: &Program,
    bound: &[Bound],
    limits: usize,
    run: RunTerms,
) -> Arbitration {
    let mut out = Arbitration {
        shadowed: vec![false; limits],
        conflicts: Vec::new(),
        stop: None,
        forced: run.forced.to_vec(),
    };
    for (key, members) in groups(program, bound).iter().filter(|(_, m)| m.len() > 1) {
        let identity = key.identity(program);
        if run.forced.contains(&identity) {
            continue; // most_restrictive for the rest of the run
        }
        let group = Group {
            program,
            bound,
            raises: run.raises,
            members,
        };
        if group.judge(&mut out) {
            out.forced.push(identity);
        }
    }
    out.forced.sort();
    out.forced.dedup();
    out
}

/// What makes limits one group: a shared monitor, and for a budget across runs the same
/// key and window (a per-run limit and a budget never share a group).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct GroupKey {
    pub monitor: u16,
    pub budget: Option<crate::base::lang::Budget>,
}

impl GroupKey {
    /// The group's name: the monitor's identity, with the budget's key and window.
    pub(crate) fn identity(&self, program: &Program) -> String {
        let monitor = program
            .monitors
            .get(usize::from(self.monitor))
            .map(|m| m.id_name.as_str())
            .unwrap_or_default();
        match &self.budget {
            None => monitor.to_string(),
            Some(b) => format!("{monitor} {}", b.text()),
        }
    }
}

/// The bound limits on each shared (top-level or stdlib) monitor, by monitor and budget:
/// the groups arbitration judges when they have two members or more.
pub(crate) fn groups(program: &Program, bound: &[Bound]) -> BTreeMap<GroupKey, Vec<Member>> {
    let mut groups: BTreeMap<GroupKey, Vec<Member>> = BTreeMap::new();
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
                let key = GroupKey {
                    monitor: l.monitor,
                    budget: l.budget.clone(),
                };
                groups
                    .entry(key)
                    .or_default()
                    .push((bi, li, usize::from(b.first_limit) + li));
            }
        }
    }
    groups
}

/// One group of a run's bound limits on a shared monitor.
struct Group<'a> {
    program: &'a Program,
    bound: &'a [Bound],
    raises: &'a [(u16, Grant)],
    members: &'a [Member],
}

impl<'a> Group<'a> {
    fn policy(&self, m: &Member) -> Option<&'a PolicyDesc> {
        self.bound
            .get(m.0)
            .and_then(|b| self.program.policies.get(usize::from(b.policy)))
    }

    fn terms(&self, m: &Member) -> Option<Terms<'a>> {
        let limit = self.policy(m)?.limits.get(m.1)?;
        let raise = self
            .raises
            .iter()
            .find(|(k, _)| usize::from(*k) == m.2)
            .map(|(_, g)| g.value);
        Some(Terms {
            limit,
            effective: raise.unwrap_or(limit.value),
        })
    }

    fn any_disagreement(&self, among: &[&Member]) -> bool {
        among.iter().any(|a| {
            among.iter().any(|b| {
                matches!((self.terms(a), self.terms(b)), (Some(x), Some(y)) if disagree(&x, &y))
            })
        })
    }

    fn names(&self, members: &mut dyn Iterator<Item = &Member>) -> Vec<String> {
        members
            .filter_map(|m| self.policy(m))
            .map(|p| p.name.clone())
            .collect()
    }

    /// The members of the lowest precedence number: the group's leads.
    fn leads(&self) -> Vec<&Member> {
        let lead_precedence = self
            .members
            .iter()
            .filter_map(|m| self.policy(m))
            .map(|p| p.precedence)
            .min()
            .unwrap_or(u32::MAX);
        self.members
            .iter()
            .filter(|m| {
                self.policy(m)
                    .is_some_and(|p| p.precedence == lead_precedence)
            })
            .collect()
    }

    /// Judges the group by its lead's strategy; `true` when a `fail_closed` disagreement
    /// stops the run (the group is then `most_restrictive` for the rest of the run).
    fn judge(&self, out: &mut Arbitration) -> bool {
        let leads = self.leads();
        let everyone: Vec<&Member> = self.members.iter().collect();
        let any_disagreement = self.any_disagreement(&everyone);
        let (Some(first_lead), Some(lead_limit)) = (
            leads.first().and_then(|m| self.policy(m)),
            leads.first().and_then(|m| self.terms(m)).map(|t| t.limit),
        ) else {
            return false;
        };
        if leads.len() > 1 {
            let strategies_differ = leads.iter().any(|m| {
                self.policy(m)
                    .is_some_and(|p| p.conflict != first_lead.conflict)
            });
            if strategies_differ || self.any_disagreement(&leads) {
                let with = self.names(&mut leads.iter().skip(1).copied());
                out.conflicts
                    .push(conflict_signal(first_lead, lead_limit, "tie", with.clone()));
                let fail_closed = leads.iter().any(|m| {
                    self.policy(m)
                        .is_some_and(|p| p.conflict == Conflict::FailClosed)
                });
                if !(fail_closed && any_disagreement) {
                    return false; // judged as most_restrictive
                }
                out.stop.get_or_insert_with(|| {
                    format!(
                        "conflict: tie on {} between {} and {}",
                        lead_limit.name,
                        first_lead.name,
                        with.join(", ")
                    )
                });
                return true;
            }
        }
        match first_lead.conflict {
            Conflict::MostRestrictive => false,
            Conflict::ExplicitPriority => {
                for m in self.members.iter().filter(|m| !leads.contains(m)) {
                    if let Some(s) = out.shadowed.get_mut(m.2) {
                        *s = true;
                    }
                }
                false
            }
            Conflict::FailClosed if any_disagreement => {
                let with = self.names(&mut self.members.iter().filter(|m| !leads.contains(m)));
                out.conflicts.push(conflict_signal(
                    first_lead,
                    lead_limit,
                    "disagreement",
                    with.clone(),
                ));
                out.stop.get_or_insert_with(|| {
                    format!(
                        "conflict: {} of {} disagrees with {}",
                        lead_limit.name,
                        first_lead.name,
                        with.join(", ")
                    )
                });
                true
            }
            Conflict::FailClosed => false,
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
        budget: None,
    }
}
