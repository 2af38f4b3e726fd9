//! Judging limits: each bound limit's zone from its monitor's value, the signals, alerts
//! and enforcement candidates a crossing gives.

use super::budget::BudgetTag;
use super::decision::{Alert, Signal};
use super::engine::{Candidate, Scratch};
use super::{Bound, Engine, Run, Zone};
use crate::base::format;
use crate::base::lang::{ChannelRef, Enforcement, OnError};
use crate::base::num::SCALE;
use crate::compile::bytecode::{ActionsDesc, LimitDesc, PolicyDesc, Program};
use crate::vm::Slot;

impl Engine {
    /// Judges the limits of the run's layout that need attention at this step (the
    /// others are quiet: below every threshold, in no zone).
    /// What it finds goes to the step's pending outcome.
    pub(super) fn judge(&mut self, ts: i64, run: &mut Run) {
        let Engine {
            artifact, scratch, ..
        } = self;
        let program = &artifact.body.program;
        let Scratch {
            values,
            attention,
            counted,
            pending,
            ..
        } = scratch;
        let monitors = &values.monitors;
        let mut out = Verdict {
            signals: &mut pending.signals,
            alerts: &mut pending.alerts,
            candidates: &mut pending.candidates,
        };
        let Some(layout) = run.layout.0.as_ref() else {
            return;
        };
        for &k in attention.iter() {
            let Some(e) = layout.entries.get(usize::from(k)) else {
                continue;
            };
            let (Some(bound), Some(zone)) = (
                run.bound.get_mut(usize::from(e.bound)),
                run.zones.get_mut(usize::from(e.zone)),
            ) else {
                continue;
            };
            let Some(policy) = program.policies.get(usize::from(e.policy)) else {
                continue;
            };
            let Some(limit) = policy.limits.get(usize::from(e.limit)) else {
                continue;
            };
            let counted = match e.monitor {
                Some(_) => None,
                None => counted
                    .iter()
                    .find(|c| c.policy == e.policy && c.limit == e.limit),
            };
            let value = match (e.monitor, counted) {
                (Some(m), _) => monitors.get(usize::from(m)).copied().unwrap_or(Slot::None),
                (None, Some(c)) => Slot::Num(c.value),
                (None, None) => Slot::None,
            };
            let judged = Judged {
                program,
                policy,
                limit,
                effective: e.effective,
                ts,
                budget: counted.map(|c| BudgetTag::of(&c.key)),
            };
            match value {
                Slot::Num(observed) => *zone = judged.number(bound, *zone, observed, &mut out),
                Slot::Err(e) => judged.error(e, bound.suspension.is_some(), &mut out),
                _ => {} // no value: not judged, zone kept
            }
        }
    }
}

/// What judging a step's limits gives: signals, alerts and enforcement candidates.
struct Verdict<'a> {
    signals: &'a mut Vec<Signal>,
    alerts: &'a mut Vec<Alert>,
    candidates: &'a mut Vec<Candidate>,
}

/// One bound limit being judged, at its effective value.
struct Judged<'a> {
    program: &'a Program,
    policy: &'a PolicyDesc,
    limit: &'a LimitDesc,
    effective: i64,
    ts: i64,
    /// A budget limit's counter.
    budget: Option<BudgetTag>,
}

impl Judged<'_> {
    /// A number: the limit's new zone; a crossing into a higher zone signals, alerts
    /// (throttled) and, at BREACH, proposes the enforcement (unless suspended).
    fn number(&self, bound: &mut Bound, zone: Zone, observed: i64, out: &mut Verdict) -> Zone {
        let (policy, limit) = (self.policy, self.limit);
        let next = zone_of(limit, self.effective, observed);
        if next <= zone {
            return next;
        }
        let (kind, actions) = match next {
            Zone::Breach => ("breach", &limit.breach),
            _ => (
                "near",
                limit.near.as_ref().map_or(&limit.breach, |n| &n.actions),
            ),
        };
        let mut signal = threshold_signal(kind, policy, limit, self.effective, observed);
        signal.budget = self.budget.clone();
        out.signals.push(signal);
        if !actions.alerts.is_empty() {
            let why = bound.throttle.judge(policy, kind, self.ts);
            push_alerts(self.program, policy, limit, kind, actions, why, out.alerts);
        }
        if let (Zone::Breach, Some(e), None) = (next, actions.enforcement, bound.suspension) {
            if e == Enforcement::Pause {
                bound.holds_pause = true;
            }
            out.candidates.push(Candidate {
                enforcement: e,
                reason: format!("breach: {} of {}", limit.name, policy.name),
                breach: Some((policy.name.clone(), limit.name.clone())),
            });
        }
        next
    }

    /// An arithmetic error: an `error` signal, and under `fail_closed` (unless suspended)
    /// a stop.
    fn error(&self, e: crate::base::num::ArithError, suspended: bool, out: &mut Verdict) {
        let (policy, limit) = (self.policy, self.limit);
        out.signals.push(Signal {
            kind: "error",
            policy: policy.name.clone(),
            version: policy.version,
            policy_hash: policy.hash.clone(),
            limit: Some(limit.name.clone()),
            observed: None,
            limit_value: Some(format::value(limit.unit, self.effective)),
            percent: None,
            error: Some(error_name(e)),
            conflict: None,
            with: None,
            budget: self.budget.clone(),
        });
        if policy.on_error == OnError::FailClosed && !suspended {
            out.candidates.push(Candidate {
                enforcement: Enforcement::Stop,
                reason: format!(
                    "error: {} in {} of {}",
                    error_name(e),
                    limit.name,
                    policy.name
                ),
                breach: None,
            });
        }
    }
}

pub(super) fn error_name(e: crate::base::num::ArithError) -> &'static str {
    match e {
        crate::base::num::ArithError::Overflow => "overflow",
        crate::base::num::ArithError::DivisionByZero => "division_by_zero",
    }
}

/// The zone a value puts a limit in: BREACH at `M >= V`, NEAR at `M × 100 >= V × P`.
pub(crate) fn zone_of(limit: &LimitDesc, value: i64, observed: i64) -> Zone {
    if observed >= value {
        return Zone::Breach;
    }
    let Some(near) = &limit.near else {
        return Zone::Below;
    };
    // The compiled value's threshold is precomputed; a raised value is judged directly.
    let is_near = if value == limit.value {
        near.near_at.is_some_and(|at| observed >= at)
    } else {
        i128::from(observed) * 100 * i128::from(SCALE)
            >= i128::from(value) * i128::from(near.percent)
    };
    if is_near { Zone::Near } else { Zone::Below }
}

pub(super) fn threshold_signal(
    kind: &'static str,
    policy: &PolicyDesc,
    limit: &LimitDesc,
    value: i64,
    observed: i64,
) -> Signal {
    Signal {
        kind,
        policy: policy.name.clone(),
        version: policy.version,
        policy_hash: policy.hash.clone(),
        limit: Some(limit.name.clone()),
        observed: Some(format::value(limit.unit, observed)),
        limit_value: Some(format::value(limit.unit, value)),
        percent: format::percent(observed, value),
        error: None,
        conflict: None,
        with: None,
        budget: None,
    }
}

pub(super) fn push_alerts(
    program: &Program,
    policy: &PolicyDesc,
    limit: &LimitDesc,
    kind: &'static str,
    actions: &ActionsDesc,
    suppressed: Option<&'static str>,
    alerts: &mut Vec<Alert>,
) {
    for channel in &actions.alerts {
        let name = match channel {
            ChannelRef::Ui => "ui".to_string(),
            ChannelRef::Declared(i) => program
                .channels
                .get(*i as usize)
                .map_or_else(|| "?".into(), |c| c.name.clone()),
        };
        alerts.push(Alert {
            policy: policy.name.clone(),
            limit: limit.name.clone(),
            kind,
            channel: name,
            suppressed: suppressed.is_some(),
            why: suppressed,
        });
    }
}
