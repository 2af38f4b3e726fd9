//! Override authority (LANGUAGE §10): requests judged against the policy's rules, pending
//! requests and approvals, and the grants in force (raise, suspend, resume), which end by
//! event time, never the wall clock.

use super::decision::{Action, Decision, OverrideOutcome};
use super::event::{Approval, OverrideKind, OverrideRequest};
use super::{Engine, Grant, Outcome, Run, RunState, Zone};
use crate::base::format;
use crate::base::lang::Grantee;
use crate::compile::bytecode::{PolicyDesc, RuleDesc, RuleKindDesc};
use std::collections::BTreeSet;

/// A request waiting for approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pending {
    seq: u64,
    /// The rule the request waits on: an approval counts only from an actor it names.
    rule: usize,
    /// The time the request was judged at (the run's clock then): its TTL runs from it.
    at: i64,
    request: OverrideRequest,
    approvers: BTreeSet<String>,
}

impl Pending {
    /// The request as the run's state shows it: what it asks and who approved it so far.
    pub(super) fn describe(&self) -> serde_json::Value {
        let r = &self.request;
        serde_json::json!({
            "seq": self.seq,
            "policy": r.policy,
            "kind": r.kind.name(),
            "limit": r.limit,
            "to": r.to.as_ref().map(|t| &t.text),
            "actor": r.actor,
            "requested_at": crate::base::format::timestamp(self.at),
            "approvers": self.approvers,
        })
    }
}

/// The checks of LANGUAGE §10, in order; the first failure is the recorded `why`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Check {
    RunOver,
    UnknownPolicy,
    NoRule,
    NotARaise,
    AboveCeiling,
    TtlTooLong,
    MissingReason,
    NotPaused,
    TooFewApprovals,
}

impl Check {
    fn code(self) -> &'static str {
        match self {
            Check::RunOver => "run_over",
            Check::UnknownPolicy => "unknown_policy",
            Check::NoRule => "no_rule",
            Check::NotARaise => "not_a_raise",
            Check::AboveCeiling => "above_ceiling",
            Check::TtlTooLong => "ttl_too_long",
            Check::MissingReason => "missing_reason",
            Check::NotPaused => "not_paused",
            Check::TooFewApprovals => "too_few_approvals",
        }
    }
}

/// What the checks concluded.
enum Verdict {
    Granted {
        rule: usize,
        value: i64,
        until: Option<i64>,
    },
    Pending {
        rule: usize,
        detail: String,
    },
    Denied {
        check: Check,
        rule: Option<usize>,
        detail: String,
    },
}

/// Ends the raises and suspensions whose time is up at `ts`, resetting the zones they
/// governed so that the next judgement starts afresh (LANGUAGE §8).
pub(super) fn expire(run: &mut Run, ts: i64) {
    // The common case: no grant in force, nothing to end.
    if run.raises.is_empty() && run.bound.iter().all(|b| b.suspension.is_none()) {
        return;
    }
    let zones = &mut run.zones;
    let raises = run.raises.len();
    run.raises.retain(|(k, g)| {
        let active = g.active_at(ts);
        if !active && let Some(z) = zones.get_mut(usize::from(*k)) {
            *z = Zone::Below;
        }
        active
    });
    if run.raises.len() != raises {
        run.layout.clear();
    }
    let policies = &run.bound;
    let mut ended = Vec::new();
    for (i, bound) in policies.iter().enumerate() {
        if bound.suspension.is_some_and(|g| !g.active_at(ts)) {
            ended.push(i);
        }
    }
    for i in ended {
        let Some(bound) = run.bound.get_mut(i) else {
            continue;
        };
        bound.suspension = None;
        let first = usize::from(bound.first_limit);
        let end = run
            .bound
            .get(i + 1)
            .map_or(run.zones.len(), |b| usize::from(b.first_limit));
        if let Some(zs) = run.zones.get_mut(first..end) {
            zs.iter_mut().for_each(|z| *z = Zone::Below);
        }
    }
}

fn names(rule: &RuleDesc, req: &OverrideRequest) -> bool {
    names_actor(rule, &req.actor, &req.roles)
}

/// Whether a rule names an actor, by one of its roles or by name.
fn names_actor(rule: &RuleDesc, actor: &str, roles: &[String]) -> bool {
    match &rule.grantee {
        Grantee::Role(r) => roles.iter().any(|x| x == r),
        Grantee::Actor(a) => a == actor,
    }
}

/// Whom a rule names, in words.
fn grantee_text(rule: &RuleDesc) -> String {
    match &rule.grantee {
        Grantee::Role(r) => format!("role {r:?}"),
        Grantee::Actor(a) => format!("actor {a:?}"),
    }
}

fn approvals_of(req: &OverrideRequest, extra: &BTreeSet<String>) -> usize {
    req.approvals
        .iter()
        .chain(extra.iter())
        .filter(|a| **a != req.actor)
        .collect::<BTreeSet<_>>()
        .len()
}

/// The limit a raise names in a policy and the value it asks for, with the limit's
/// compiled value. `Err` rejects the line: a `to` that does not fit the limit's unit is
/// an invalid field whatever the run's state.
fn requested(
    policy: Option<(usize, &PolicyDesc)>,
    req: &OverrideRequest,
) -> Result<Option<(usize, i64, i64)>, String> {
    let (Some((_, policy)), OverrideKind::Raise, Some(to)) = (policy, req.kind, &req.to) else {
        return Ok(None);
    };
    let Some((index, limit)) = policy
        .limits
        .iter()
        .enumerate()
        .find(|(_, l)| Some(&l.name) == req.limit.as_ref())
    else {
        return Ok(None);
    };
    let unfit = || {
        format!(
            "`to` {:?} does not fit the `{}` limit {}",
            to.text,
            limit.unit.name(),
            limit.name
        )
    };
    if !to.to.fits(limit.unit) {
        return Err(unfit());
    }
    let value = to.to.value(limit.value).ok_or_else(unfit)?;
    Ok(Some((index, value, limit.value)))
}

/// Runs the checks for a request judged at `at` (the run's clock); `Err` rejects the line.
fn judge(
    policy: Option<(usize, &PolicyDesc)>,
    run: &Run,
    req: &OverrideRequest,
    at: i64,
    approvers: &BTreeSet<String>,
) -> Result<Verdict, String> {
    let denied = |check, rule, detail: &str| {
        Ok(Verdict::Denied {
            check,
            rule,
            detail: detail.to_string(),
        })
    };
    let requested = requested(policy, req)?;
    if matches!(run.state, RunState::Stopped | RunState::Killed) {
        return denied(Check::RunOver, None, "the run is over; nothing restarts it");
    }
    let Some((bound_index, policy)) = policy else {
        return denied(
            Check::UnknownPolicy,
            None,
            &format!("policy `{}` is not bound to this run", req.policy),
        );
    };
    let limit = requested.map(|(l, _, _)| l).or_else(|| match req.kind {
        OverrideKind::Raise => policy
            .limits
            .iter()
            .position(|l| Some(&l.name) == req.limit.as_ref()),
        _ => None,
    });
    let candidates = rules_for(policy, req, limit);
    let requested = requested.map(|(_, value, compiled)| (value, compiled));
    if candidates.is_empty() {
        return denied(
            Check::NoRule,
            None,
            format!(
                "no rule of `{}` lets `{}` {} {}",
                policy.name,
                req.actor,
                req.kind.name(),
                req.limit.as_deref().unwrap_or("")
            )
            .trim_end(),
        );
    }
    let holds_pause = run.bound.get(bound_index).is_some_and(|b| b.holds_pause);
    let mut furthest: Option<(Check, usize, String)> = None;
    for (index, rule) in candidates {
        let failure = rule_failure(rule, req, requested, holds_pause, approvers);
        let Some((check, detail)) = failure else {
            let value = requested.map_or(0, |(v, _)| v);
            let until = req.ttl.or(rule.ttl).map(|t| at.saturating_add(t));
            return Ok(Verdict::Granted {
                rule: index,
                value,
                until,
            });
        };
        if furthest.as_ref().is_none_or(|(c, _, _)| check > *c) {
            furthest = Some((check, index, detail));
        }
    }
    match furthest {
        Some((Check::TooFewApprovals, rule, detail)) => Ok(Verdict::Pending { rule, detail }),
        Some((check, rule, detail)) => Ok(Verdict::Denied {
            check,
            rule: Some(rule),
            detail,
        }),
        None => denied(Check::NoRule, None, "no rule applies"),
    }
}

/// The rules of a policy that name the request's actor (or a role of it) for its kind,
/// and for a raise, its limit.
fn rules_for<'p>(
    policy: &'p PolicyDesc,
    req: &OverrideRequest,
    limit: Option<usize>,
) -> Vec<(usize, &'p RuleDesc)> {
    policy
        .rules
        .iter()
        .enumerate()
        .filter(|(_, r)| names(r, req))
        .filter(|(_, r)| match (&r.kind, req.kind) {
            (RuleKindDesc::Raise { limit: l, .. }, OverrideKind::Raise) => {
                limit == Some(usize::from(*l))
            }
            (RuleKindDesc::Suspend, OverrideKind::Suspend)
            | (RuleKindDesc::Resume, OverrideKind::Resume) => true,
            _ => false,
        })
        .collect()
}

/// The first check a rule fails for a request, if any.
fn rule_failure(
    rule: &RuleDesc,
    req: &OverrideRequest,
    requested: Option<(i64, i64)>,
    holds_pause: bool,
    approvers: &BTreeSet<String>,
) -> Option<(Check, String)> {
    if let (RuleKindDesc::Raise { .. }, Some((to, compiled))) = (&rule.kind, requested)
        && to <= compiled
    {
        return Some((
            Check::NotARaise,
            "the requested value is not above the compiled limit".into(),
        ));
    }
    if let (RuleKindDesc::Raise { ceiling, .. }, Some((to, _))) = (&rule.kind, requested)
        && to > *ceiling
    {
        return Some((
            Check::AboveCeiling,
            "the requested value is above the rule's ceiling".into(),
        ));
    }
    if let (Some(asked), Some(allowed)) = (req.ttl, rule.ttl)
        && asked > allowed
    {
        return Some((
            Check::TtlTooLong,
            "the requested ttl is longer than the rule allows".into(),
        ));
    }
    if rule.requires_reason && req.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
        return Some((Check::MissingReason, "the rule requires a reason".into()));
    }
    if matches!(rule.kind, RuleKindDesc::Resume) && !holds_pause {
        return Some((Check::NotPaused, "the policy holds no pause".into()));
    }
    let have = approvals_of(req, approvers);
    if have < rule.approvals as usize {
        return Some((
            Check::TooFewApprovals,
            format!("{have} of {} approvals", rule.approvals),
        ));
    }
    None
}

impl Engine {
    fn bound_policy<'a>(&'a self, run: &Run, name: &str) -> Option<(usize, &'a PolicyDesc)> {
        let program = &self.artifact.body.program;
        run.bound.iter().enumerate().find_map(|(i, b)| {
            program
                .policies
                .get(b.policy as usize)
                .filter(|p| p.name == name)
                .map(|p| (i, p))
        })
    }

    /// Applies a granted override to the run at `ts`.
    fn grant(&self, run: &mut Run, req: &OverrideRequest, value: i64, until: Option<i64>) {
        let Some((bound_index, policy)) = self.bound_policy(run, &req.policy) else {
            return;
        };
        let limit = policy
            .limits
            .iter()
            .position(|l| Some(&l.name) == req.limit.as_ref());
        let Some(bound) = run.bound.get_mut(bound_index) else {
            return;
        };
        match req.kind {
            OverrideKind::Raise => {
                if let Some(l) = limit {
                    let k = usize::from(bound.first_limit) + l;
                    let key = u16::try_from(k).unwrap_or(u16::MAX);
                    // A granted raise replaces any raise in force on the same limit.
                    run.raises.retain(|(x, _)| *x != key);
                    run.raises.push((key, Grant { value, until }));
                    run.layout.clear();
                    if let Some(z) = run.zones.get_mut(k) {
                        *z = Zone::Below;
                    }
                }
            }
            OverrideKind::Suspend => bound.suspension = Some(Grant { value: 0, until }),
            OverrideKind::Resume => {
                bound.holds_pause = false;
                if run.state == RunState::Paused && !run.bound.iter().any(|b| b.holds_pause) {
                    run.state = RunState::Running;
                    run.state_reason = None;
                }
            }
        }
    }

    fn outcome(
        &self,
        run: &Run,
        req: &OverrideRequest,
        seq: u64,
        verdict: &Verdict,
    ) -> OverrideOutcome {
        let rule_name = |i: usize| Some(format!("{}#{}", req.policy, i + 1));
        let id = Some(format!("{}#{seq}", run.id));
        match verdict {
            Verdict::Granted { rule, until, .. } => OverrideOutcome {
                status: "granted",
                id,
                rule: rule_name(*rule),
                until: until.map(format::timestamp),
                why: None,
            },
            Verdict::Pending { rule, detail } => OverrideOutcome {
                status: "pending",
                id,
                rule: rule_name(*rule),
                until: None,
                why: Some(format!("{}: {detail}", Check::TooFewApprovals.code())),
            },
            Verdict::Denied {
                check,
                rule,
                detail,
            } => OverrideOutcome {
                status: "denied",
                id,
                rule: rule.and_then(rule_name),
                until: None,
                why: Some(format!("{}: {detail}", check.code())),
            },
        }
    }

    fn state_decision(
        &self,
        run: &Run,
        ts: i64,
        event: &'static str,
        outcome: OverrideOutcome,
    ) -> Decision {
        let mut d = self.decision(run, ts, event, run.state.action(), run.state_reason.clone());
        if d.action == Action::Continue {
            d.reason = None;
        }
        d.override_outcome = Some(Box::new(outcome));
        d
    }

    /// Judges an override request. `Err` rejects the line (a `to` that does not fit).
    pub fn override_request(
        &mut self,
        run: &mut Run,
        req: &OverrideRequest,
    ) -> Result<Outcome, String> {
        let policy = self.bound_policy(run, &req.policy);
        let at = run.clock.max(req.ts);
        let verdict = judge(policy, run, req, at, &BTreeSet::new())?;
        run.seq += 1;
        run.clock = at;
        let seq = run.seq;
        match &verdict {
            Verdict::Granted { value, until, .. } => self.grant(run, req, *value, *until),
            Verdict::Pending { rule, .. } => run.pending.push(Pending {
                seq,
                rule: *rule,
                at,
                request: req.clone(),
                approvers: BTreeSet::new(),
            }),
            Verdict::Denied { .. } => {}
        }
        let outcome = self.outcome(run, req, seq, &verdict);
        run.requests.insert(seq, outcome.clone());
        Ok(Outcome::of(
            self.state_decision(run, req.ts, "override", outcome),
        ))
    }

    /// Counts an approval toward a pending request when its rule names the approver (by
    /// role or actor) and the approver is not the requester; otherwise says why it does not
    /// count (the requester's own approval is accepted silently and never counts).
    fn count_approval(&self, run: &Run, pending: &mut Pending, a: &Approval) -> Option<String> {
        if a.actor == pending.request.actor {
            return None;
        }
        let rule = self
            .bound_policy(run, &pending.request.policy)
            .and_then(|(_, p)| p.rules.get(pending.rule));
        match rule {
            Some(rule) if names_actor(rule, &a.actor, &a.roles) => {
                pending.approvers.insert(a.actor.clone());
                None
            }
            Some(rule) => Some(format!(
                "the approval of {:?} does not count: rule {}#{} names {}",
                a.actor,
                pending.request.policy,
                pending.rule + 1,
                grantee_text(rule)
            )),
            None => None,
        }
    }

    /// Takes an approval of a pending request. `Err` rejects the line (no such request).
    pub(crate) fn approval(&mut self, run: &mut Run, a: &Approval) -> Result<Outcome, String> {
        let Some(previous) = run.requests.get(&a.request).cloned() else {
            return Err(format!(
                "`override` {} names no override request of run `{}`",
                a.request, run.id
            ));
        };
        run.seq += 1;
        run.clock = run.clock.max(a.ts);
        let Some(at) = run.pending.iter().position(|p| p.seq == a.request) else {
            // Already decided: the approval changes nothing.
            return Ok(Outcome::of(
                self.state_decision(run, a.ts, "approval", previous),
            ));
        };
        let mut pending = run.pending.remove(at);
        let not_counted = self.count_approval(run, &mut pending, a);
        let policy = self.bound_policy(run, &pending.request.policy);
        let verdict = judge(
            policy,
            run,
            &pending.request,
            pending.at,
            &pending.approvers,
        )?;
        match &verdict {
            Verdict::Granted { value, until, .. } => {
                self.grant(run, &pending.request, *value, *until)
            }
            Verdict::Pending { .. } => {
                let seq = pending.seq;
                run.pending
                    .insert(at.min(run.pending.len()), pending.clone());
                let mut outcome = self.outcome(run, &pending.request, seq, &verdict);
                run.requests.insert(seq, outcome.clone());
                if let (Some(note), Some(why)) = (not_counted, outcome.why.as_mut()) {
                    why.push_str("; ");
                    why.push_str(&note);
                }
                return Ok(Outcome::of(
                    self.state_decision(run, a.ts, "approval", outcome),
                ));
            }
            Verdict::Denied { .. } => {}
        }
        let outcome = self.outcome(run, &pending.request, pending.seq, &verdict);
        run.requests.insert(pending.seq, outcome.clone());
        Ok(Outcome::of(
            self.state_decision(run, a.ts, "approval", outcome),
        ))
    }
}
