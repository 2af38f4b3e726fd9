//! A run's state as the server shows it (`GET /v1/runs/{id}`): its state and holds, every
//! bound limit's observed, compiled and effective value and zone, the raises and
//! suspensions in force at its clock, and the override requests waiting for approvals.

use super::{Engine, Run, RunState, Zone};
use crate::base::format;
use crate::vm::Slot;
use serde_json::{Value, json};

fn zone_name(z: Zone) -> &'static str {
    match z {
        Zone::Below => "below",
        Zone::Near => "near",
        Zone::Breach => "breach",
    }
}

fn state_name(run: &Run) -> &'static str {
    if run.ended {
        return "ended";
    }
    match run.state {
        RunState::Running => "running",
        RunState::Paused => "paused",
        RunState::Stopped => "stopped",
        RunState::Killed => "killed",
    }
}

/// The state of `run`, judged by `engine`.
pub(crate) fn status(engine: &Engine, run: &Run, budgets: &super::budget::Budgets) -> Value {
    let program = engine.program();
    let mut limits = Vec::new();
    let mut raises = Vec::new();
    let mut suspensions = Vec::new();
    let mut holds = Vec::new();
    for b in &run.bound {
        let Some(p) = program.policies.get(usize::from(b.policy)) else {
            continue;
        };
        if b.holds_pause {
            holds.push(p.name.clone());
        }
        if let Some(g) = b.suspension.filter(|g| g.active_at(run.clock)) {
            suspensions.push(json!({"policy": p.name, "until": g.until.map(format::timestamp)}));
        }
        for (i, l) in p.limits.iter().enumerate() {
            let flat = usize::from(b.first_limit) + i;
            let raise = run
                .raises
                .iter()
                .find(|(k, g)| usize::from(*k) == flat && g.active_at(run.clock))
                .map(|(_, g)| *g);
            if let Some(g) = raise {
                raises.push(json!({
                    "policy": p.name, "limit": l.name,
                    "to": format::value(l.unit, g.value), "until": g.until.map(format::timestamp),
                }));
            }
            let effective = raise.map_or(l.value, |g| g.value);
            limits.push(limit_state(run, budgets, (&p.name, l), flat, effective));
        }
    }
    let t = run.totals;
    json!({
        "run_id": run.id,
        "tenant": run.attrs.tenant,
        "agent": run.attrs.agent,
        "api_key": run.attrs.api_key,
        "human_actor": run.attrs.human_actor,
        "artifact": engine.artifact().id,
        "snapshot": run.snapshot,
        "state": state_name(run),
        "state_reason": run.state_reason,
        "holds": holds,
        "seq": run.seq,
        "clock": (run.seq > 0).then(|| format::timestamp(run.clock)),
        "totals": {
            "steps": t.steps,
            "refused": t.refused,
            "input_tokens": format::value(crate::base::lang::Unit::Tokens, t.input_tokens),
            "output_tokens": format::value(crate::base::lang::Unit::Tokens, t.output_tokens),
            "cost": format::money(t.cost),
        },
        "limits": limits,
        "raises": raises,
        "suspensions": suspensions,
        "pending": run.pending.iter().map(super::overrides::Pending::describe).collect::<Vec<_>>(),
    })
}

/// One bound limit's state: observed, compiled, effective and NEAR values, and its zone.
fn limit_state(
    run: &Run,
    budgets: &super::budget::Budgets,
    (policy, l): (&str, &crate::compile::bytecode::LimitDesc),
    flat: usize,
    effective: i64,
) -> Value {
    let mut observed = match run.observed.get(usize::from(l.monitor)) {
        Some(Slot::Num(n)) => json!(format::value(l.unit, *n)),
        Some(Slot::Bool(b)) => json!(b.to_string()),
        Some(Slot::Err(_)) => json!("error"),
        Some(Slot::None | Slot::Str(_)) | None => Value::Null,
    };
    let mut budget = Value::Null;
    if l.budget.is_some() {
        (observed, budget) = budget_of(run, budgets, (policy, l));
    }
    let near = l
        .near
        .as_ref()
        .and_then(|n| crate::compile::bytecode::near_threshold(effective, n.percent));
    json!({
        "budget": budget,
        "unit": l.unit.name(),
        "near_value": near.map(|v| format::value(l.unit, v)),
        "policy": policy,
        "limit": l.name,
        "observed": observed,
        "limit_value": format::value(l.unit, l.value),
        "effective_value": format::value(l.unit, effective),
        "zone": run.zones.get(flat).map(|z| zone_name(*z)),
        "shadowed": run.shadowed.get(flat).copied().unwrap_or(false),
    })
}

/// A budget across runs observes its counter (as this runtime holds it now): the value,
/// and the run's key values and window.
fn budget_of(
    run: &Run,
    budgets: &super::budget::Budgets,
    (policy, l): (&str, &crate::compile::bytecode::LimitDesc),
) -> (Value, Value) {
    let key = run
        .budget_keys
        .iter()
        .flatten()
        .find(|k| k.policy == policy && k.monitor == l.name);
    match key {
        None => (Value::Null, Value::Null),
        Some(k) => (
            json!(format::value(l.unit, budgets.get(&k.id))),
            serde_json::to_value(super::budget::BudgetTag(std::sync::Arc::clone(k)))
                .unwrap_or_default(),
        ),
    }
}
