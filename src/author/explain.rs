//! `lever explain`: why a decision came out as it did. The events are replayed in memory
//! (no evidence is written) up to the event asked about; then, for that run: the decision,
//! every policy of the artifact and whether its scope matched (and how it binds), the
//! arbitration of limits that share a monitor, each bound limit's observed value, effective
//! value and zone, and the overrides in force.

use crate::base::format;
use crate::base::lang::{Scope, Selector};
use crate::compile::bytecode::{PolicyDesc, Program};
use crate::compile::meaning::scope_text;
use crate::runtime::decision::Decision;
use crate::runtime::{Engine, Run, Zone};
use crate::vm::Slot;
use serde_json::{Value, json};

/// The selectors a scope reads, each once, with the run's values: what decided it.
fn read_by(scope: &Scope, run: &Run, out: &mut Vec<(String, String)>) {
    let mut push = |s: &Selector| {
        let name = s.text();
        if !out.iter().any(|(n, _)| *n == name) {
            out.push((
                name,
                crate::runtime::scope::attribute(s, &run.attrs).to_string(),
            ));
        }
    };
    match scope {
        Scope::All => {}
        Scope::Eq(s, _) | Scope::In(s, _) => push(s),
        Scope::Not(x) => read_by(x, run, out),
        Scope::And(a, b) | Scope::Or(a, b) => {
            read_by(a, run, out);
            read_by(b, run, out);
        }
    }
}

fn zone_name(z: Zone) -> &'static str {
    match z {
        Zone::Below => "below",
        Zone::Near => "near",
        Zone::Breach => "breach",
    }
}

fn slot_text(unit: crate::base::lang::Unit, slot: Slot) -> Value {
    match slot {
        Slot::Num(n) => json!(format::value(unit, n)),
        Slot::Bool(b) => json!(b.to_string()),
        Slot::None => json!("no value"),
        Slot::Err(_) => json!("error"),
        Slot::Str(_) => json!("a string"),
    }
}

fn policy_of(program: &Program, index: u16) -> Option<&PolicyDesc> {
    program.policies.get(usize::from(index))
}

/// The explanation of `decision`, judged by `engine` for `run`. `stepped`: the decision
/// is a step's, so the engine's monitor values are that step's.
/// What each run added to each budget counter (by counter id, then run id).
pub(crate) type Spent = std::collections::HashMap<String, std::collections::BTreeMap<String, i64>>;

pub(crate) fn explain(
    engine: &Engine,
    run: &Run,
    decision: &Decision,
    (stepped, spent): (bool, &Spent),
) -> Value {
    let program = engine.program();
    let policies = policies_of(program, run);
    let mut limits = limits_of(engine, run, stepped);
    budgets_of(decision, spent, &mut limits);
    json!({
        "run_id": decision.run_id,
        "seq": decision.seq,
        "event": decision.event,
        "ts": decision.ts.map(format::timestamp),
        "artifact": engine.artifact().id,
        "decision": serde_json::to_value(decision).unwrap_or_default(),
        "run": {
            "state": format!("{:?}", run.state).to_lowercase(),
            "state_reason": run.state_reason,
            "tenant": run.attrs.tenant,
            "agent": run.attrs.agent,
            "api_key": run.attrs.api_key,
            "human_actor": run.attrs.human_actor,
            "labels": run.attrs.labels,
        },
        "policies": policies,
        "arbitration": arbitration(program, run),
        "limits": limits,
    })
}

/// Every policy of the program: its scope, whether it matched the run and what decided
/// it, how it binds, and whether it is bound.
fn policies_of(program: &Program, run: &Run) -> Vec<Value> {
    program
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let bound = run.bound.iter().find(|b| usize::from(b.policy) == i);
            let awaiting = run.awaiting.iter().any(|a| usize::from(*a) == i);
            let matched = crate::runtime::scope::matches(&p.scope, &run.attrs);
            let mut read = Vec::new();
            read_by(&p.scope, run, &mut read);
            let status = match (bound, awaiting, matched) {
                (Some(_), _, _) => "bound",
                (None, true, _) => "awaiting first_token",
                (None, false, true) => "in scope, not bound",
                (None, false, false) => "out of scope",
            };
            json!({
                "policy": p.name,
                "version": p.version,
                "hash": p.hash,
                "scope": scope_text(&p.scope),
                "scope_matches": matched,
                "read": read.into_iter().map(|(k, v)| json!({"attribute": k, "value": v})).collect::<Vec<_>>(),
                "bind": p.bind.name(),
                "precedence": p.precedence,
                "conflict": p.conflict.name(),
                "status": status,
                "suspended": bound.is_some_and(|b| b.suspension.is_some()),
                "suspended_until": bound.and_then(|b| b.suspension).and_then(|g| g.until).map(format::timestamp),
            })
        })
        .collect()
}

/// A budget limit observes its counter, not the run's monitor: each such limit gets the
/// counter's key, window and what this step and everything before it spent.
fn budgets_of(decision: &Decision, spent: &Spent, limits: &mut [Value]) {
    for c in &decision.budgets {
        let Some(limit) = limits
            .iter_mut()
            .find(|l| l["policy"] == c.key.policy.as_str() && l["limit"] == c.key.monitor.as_str())
        else {
            continue;
        };
        let text = |v: i64| format::value(c.unit, v);
        let entry = serde_json::to_value(c).unwrap_or_default();
        limit["observed"] = json!(text(c.counter));
        limit["budget"] = json!({
            "per": entry.get("per").cloned().unwrap_or_default(),
            "window_start": entry.get("window_start").cloned().unwrap_or_default(),
            "spent_before": text(c.counter.saturating_sub(c.added)),
            "added": text(c.added),
            "by_run": spent.get(&*c.key.id).into_iter().flatten()
                .map(|(run, v)| json!({"run_id": run, "spent": text(*v)}))
                .collect::<Vec<_>>(),
        });
    }
}

/// Each bound limit: its monitor's value at this step (when `stepped`), its compiled and
/// effective value, NEAR threshold, zone and shadowing.
fn limits_of(engine: &Engine, run: &Run, stepped: bool) -> Vec<Value> {
    let program = engine.program();
    let values = engine.monitor_values();
    let mut limits = Vec::new();
    for b in &run.bound {
        let Some(p) = policy_of(program, b.policy) else {
            continue;
        };
        for (i, l) in p.limits.iter().enumerate() {
            let flat = usize::from(b.first_limit) + i;
            let raise = run
                .raises
                .iter()
                .find(|(k, _)| usize::from(*k) == flat)
                .map(|(_, g)| *g);
            let observed = match values.get(usize::from(l.monitor)) {
                Some(slot) if stepped => slot_text(l.unit, *slot),
                _ => Value::Null,
            };
            limits.push(json!({
                "policy": p.name,
                "limit": l.name,
                "monitor": program.monitors.get(usize::from(l.monitor)).map(|m| m.id_name.clone()),
                "observed": observed,
                "limit_value": format::value(l.unit, l.value),
                "effective_value": format::value(l.unit, raise.map_or(l.value, |g| g.value)),
                "near_percent": l.near.as_ref().map(|n| format!("{}%", crate::base::num::Decimal(n.percent))),
                "zone": run.zones.get(flat).map(|z| zone_name(*z)),
                "shadowed": run.shadowed.get(flat).copied().unwrap_or(false),
                "raised_until": raise.and_then(|g| g.until).map(format::timestamp),
            }));
        }
    }
    limits
}

/// Groups of bound limits on one shared monitor: the lead (lowest precedence number) and
/// its strategy decide which limits are judged (LANGUAGE §9).
fn arbitration(program: &Program, run: &Run) -> Vec<Value> {
    let groups = crate::runtime::arbitrate::groups(program, &run.bound)
        .into_iter()
        .map(|(monitor, members)| {
            let members: Vec<(&PolicyDesc, usize, usize)> = members
                .into_iter()
                .filter_map(|(b, i, flat)| {
                    let policy = run
                        .bound
                        .get(b)
                        .and_then(|b| policy_of(program, b.policy))?;
                    Some((policy, i, flat))
                })
                .collect();
            (monitor, members)
        });
    groups
        .into_iter()
        .filter(|(_, members)| members.len() > 1)
        .map(|(monitor, members)| {
            let lead = members
                .iter()
                .map(|(p, _, _)| p.precedence)
                .min()
                .unwrap_or(0);
            let leads: Vec<&str> = members
                .iter()
                .filter(|(p, _, _)| p.precedence == lead)
                .map(|(p, _, _)| p.name.as_str())
                .collect();
            let strategy = members
                .iter()
                .find(|(p, _, _)| p.precedence == lead)
                .map(|(p, _, _)| p.conflict.name());
            json!({
                "monitor": program.monitors.get(usize::from(monitor.monitor)).map(|m| m.id_name.clone()),
                "budget": monitor.budget.as_ref().map(crate::base::lang::Budget::text),
                "lead": leads,
                "strategy": strategy,
                "members": members.iter().map(|(p, i, flat)| json!({
                    "policy": p.name,
                    "precedence": p.precedence,
                    "limit": p.limits.get(*i).map(|l| l.name.clone()),
                    "judged": !run.shadowed.get(*flat).copied().unwrap_or(false),
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// The explanation for people.
pub(crate) fn text(e: &Value) -> String {
    let s = text_of;
    let d = &e["decision"];
    let mut out = format!(
        "run {} seq {} ({} at {}): {}{}\nartifact {}\n",
        s(&e["run_id"]),
        e["seq"],
        s(&e["event"]),
        s(&e["ts"]),
        s(&d["action"]),
        d["reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default(),
        s(&e["artifact"]),
    );
    let run = &e["run"];
    out.push_str(&format!(
        "run state: {}{}\n",
        s(&run["state"]),
        run["state_reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    ));
    policies_text(e, &mut out);
    arbitration_text(e, &mut out);
    limits_text(e, &mut out);
    signals_text(d, &mut out);
    out
}

/// A JSON value as text: a string without its quotes.
fn text_of(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

/// Every policy of the artifact: whether its scope matched, and why.
fn policies_text(e: &Value, out: &mut String) {
    let s = text_of;
    out.push_str("\npolicies:\n");
    for p in e["policies"].as_array().into_iter().flatten() {
        let read: Vec<String> = p["read"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| format!("{} is {:?}", s(&r["attribute"]), s(&r["value"])))
            .collect();
        let why = if read.is_empty() {
            String::new()
        } else {
            format!(": {}", read.join(", "))
        };
        out.push_str(&format!(
            "  {} v{}: {} (scope `{}` {}{why}; bind {}, precedence {}, conflict {})\n",
            s(&p["policy"]),
            p["version"],
            s(&p["status"]),
            s(&p["scope"]),
            if p["scope_matches"] == true {
                "matches"
            } else {
                "does not match"
            },
            s(&p["bind"]),
            p["precedence"],
            s(&p["conflict"]),
        ));
        if p["suspended"] == true {
            match p["suspended_until"].as_str() {
                Some(until) => out.push_str(&format!("    suspended until {until}\n")),
                None => out.push_str("    suspended for the rest of the run\n"),
            }
        }
    }
}

/// Groups of limits on one shared monitor: the lead, its strategy, who is judged.
fn arbitration_text(e: &Value, out: &mut String) {
    let s = text_of;
    let groups = e["arbitration"].as_array().cloned().unwrap_or_default();
    if !groups.is_empty() {
        out.push_str("\narbitration (limits on one shared monitor):\n");
        for g in &groups {
            let members: Vec<String> = g["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    format!(
                        "{} (precedence {}){}",
                        s(&m["policy"]),
                        m["precedence"],
                        if m["judged"] == true { "" } else { " shadowed" }
                    )
                })
                .collect();
            out.push_str(&format!(
                "  {}: lead {} ({}); {}\n",
                s(&g["monitor"]),
                g["lead"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(s)
                    .collect::<Vec<_>>()
                    .join(", "),
                s(&g["strategy"]),
                members.join(", ")
            ));
        }
    }
}

/// Each bound limit: observed, effective value, zone.
fn limits_text(e: &Value, out: &mut String) {
    let s = text_of;
    out.push_str("\nlimits:\n");
    for l in e["limits"].as_array().into_iter().flatten() {
        let mut line = format!(
            "  {} / {}: observed {}, limit {}",
            s(&l["policy"]),
            s(&l["limit"]),
            if l["observed"].is_null() {
                "-".into()
            } else {
                s(&l["observed"])
            },
            s(&l["effective_value"]),
        );
        if l["effective_value"] != l["limit_value"] {
            line.push_str(&format!(" (raised from {}", s(&l["limit_value"])));
            match l["raised_until"].as_str() {
                Some(until) => line.push_str(&format!(" until {until})")),
                None => line.push_str(" for the run)"),
            }
        }
        if let Some(p) = l["near_percent"].as_str() {
            line.push_str(&format!(", near at {p}"));
        }
        if let Some(b) = l["budget"].as_object() {
            let per: Vec<String> = b["per"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", text_of(v)))
                .collect();
            line.push_str(&format!(
                ", budget of {} in the window from {}: {} spent before this step, {} by it",
                per.join(" "),
                b["window_start"]
                    .as_str()
                    .unwrap_or("the start (no window)"),
                s(&b["spent_before"]),
                s(&b["added"])
            ));
            let by: Vec<String> = b["by_run"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| format!("{} {}", s(&r["run_id"]), s(&r["spent"])))
                .collect();
            if !by.is_empty() {
                line.push_str(&format!(" (spent by run: {})", by.join(", ")));
            }
        }
        line.push_str(&format!(", zone {}", s(&l["zone"]).to_uppercase()));
        if l["shadowed"] == true {
            line.push_str(", shadowed (not judged)");
        }
        out.push_str(&line);
        out.push('\n');
    }
}

/// The decision's signals.
fn signals_text(d: &Value, out: &mut String) {
    let s = text_of;
    let signals = d["signals"].as_array().cloned().unwrap_or_default();
    if !signals.is_empty() {
        out.push_str("\nsignals at this event:\n");
        for sig in &signals {
            out.push_str(&format!(
                "  {} {} of {}{}\n",
                s(&sig["kind"]).to_uppercase(),
                sig["limit"].as_str().unwrap_or("-"),
                s(&sig["policy"]),
                sig["observed"]
                    .as_str()
                    .map(|o| format!(": observed {o} of {}", s(&sig["limit_value"])))
                    .unwrap_or_default()
            ));
        }
    }
}
