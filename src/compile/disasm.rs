//! Disassembly for `lever inspect`: the header, policies with their hashes, and readable
//! bytecode, as text for people or JSON for tools.

use super::artifact::Artifact;
use super::bytecode::{
    ActionsDesc, Code, LimitDesc, Op, PolicyDesc, Program, RuleDesc, RuleKindDesc,
};
use super::meaning::scope_text;
use crate::base::format::{duration, quantity};
use crate::base::lang::{ChannelRef, Grantee};
use crate::base::num::Decimal;
use std::fmt::Write;

fn op_text(program: &Program, op: &Op) -> String {
    let field = |slot: u16, kind: &str| {
        program
            .fields
            .iter()
            .find(|f| f.slot == slot && kind_name(f.unit) == kind)
            .map_or(format!("#{slot}"), |f| f.name.clone())
    };
    match op {
        Op::Num(n) => format!("num {}", Decimal(*n)),
        Op::Bool(b) => format!("bool {b}"),
        Op::Str(i) => format!(
            "str {}",
            serde_json::to_string(program.strings.get(*i as usize).map_or("?", String::as_str))
                .unwrap_or_default()
        ),
        Op::NumField(s) => format!("field {}", field(*s, "num")),
        Op::BoolField(s) => format!("field {}", field(*s, "bool")),
        Op::StrField(s) => format!("field {}", field(*s, "str")),
        Op::Label(i) => format!(
            "label {}",
            serde_json::to_string(program.labels.get(*i as usize).map_or("?", String::as_str))
                .unwrap_or_default()
        ),
        Op::Agg(i) => format!("agg #{i}"),
        Op::Monitor(i) => format!(
            "monitor {}",
            program
                .monitors
                .get(*i as usize)
                .map_or("?", |m| m.id_name.as_str())
        ),
        Op::Cmp(c) => format!("cmp {c:?}").to_lowercase(),
        Op::Eq(false) => "eq".into(),
        Op::Eq(true) => "ne".into(),
        Op::In(n) => format!("in {n}"),
        Op::AndJump(t) => format!("and_jump {t}"),
        Op::OrJump(t) => format!("or_jump {t}"),
        other => format!("{other:?}").to_lowercase(),
    }
}

fn kind_name(unit: crate::base::lang::Unit) -> &'static str {
    use crate::base::lang::Unit;
    match unit {
        Unit::Bool => "bool",
        Unit::String => "str",
        _ => "num",
    }
}

/// One line per instruction, numbered.
pub(crate) fn code_lines(program: &Program, code: &Code) -> Vec<String> {
    code.ops
        .iter()
        .enumerate()
        .map(|(i, op)| format!("{i:>4}  {}", op_text(program, op)))
        .collect()
}

/// A threshold's actions as a policy writes them: `stop, alert(ops)`, or `nothing`.
pub(crate) fn actions_text(program: &Program, a: &ActionsDesc) -> String {
    let mut parts: Vec<String> = a.enforcement.iter().map(|e| e.name().to_string()).collect();
    let channels = channel_names(program, a);
    if !channels.is_empty() {
        parts.push(format!("alert({})", channels.join(", ")));
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join(", ")
    }
}

/// The human-readable inspection of an artifact.
pub fn text(artifact: &Artifact) -> String {
    let p = &artifact.body.program;
    let mut out = String::new();
    let _ = writeln!(out, "artifact {}", artifact.id);
    let _ = writeln!(
        out,
        "format   {} ({} bytes)",
        artifact.format_version(),
        artifact.bytes.len()
    );
    let _ = writeln!(out, "\nsources:");
    for s in &artifact.body.sources {
        let module = s
            .module
            .as_deref()
            .map(|m| format!(" (module {m})"))
            .unwrap_or_default();
        let _ = writeln!(out, "  {}{module}", s.path);
    }
    let _ = writeln!(out, "\npolicies:");
    for pol in &p.policies {
        policy_text(p, pol, &mut out);
    }
    let _ = writeln!(out, "\nmonitors:");
    for (i, m) in p.monitors.iter().enumerate() {
        let _ = writeln!(out, "  #{i} {}: {}", m.id_name, m.unit.name());
        for line in code_lines(p, &m.code) {
            let _ = writeln!(out, "    {line}");
        }
    }
    let _ = writeln!(out, "\naggregates:");
    for (i, a) in p.aggregates.iter().enumerate() {
        let window = if a.window > 0 {
            format!(" window {}s", Decimal(a.window))
        } else {
            String::new()
        };
        let _ = writeln!(out, "  #{i} {}{window}", a.func.name());
        if let Some(arg) = &a.arg {
            let _ = writeln!(out, "    arg:");
            for line in code_lines(p, arg) {
                let _ = writeln!(out, "      {line}");
            }
        }
        if let Some(filter) = &a.filter {
            let _ = writeln!(out, "    where:");
            for line in code_lines(p, filter) {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
    out
}

/// One policy: its settings, limits and override rules.
fn policy_text(
    p: &crate::compile::bytecode::Program,
    pol: &crate::compile::bytecode::PolicyDesc,
    out: &mut String,
) {
    let _ = writeln!(out, "  {} v{} {}", pol.name, pol.version, pol.hash);
    let _ = writeln!(out, "    scope {}", scope_text(&pol.scope));
    let _ = writeln!(
        out,
        "    precedence {}  conflict {}  bind {}  on_error {}",
        pol.precedence,
        pol.conflict.name(),
        pol.bind.name(),
        pol.on_error.name()
    );
    for l in &pol.limits {
        let _ = writeln!(out, "    {}", limit_source(p, l));
    }
    for r in &pol.rules {
        let _ = writeln!(out, "    {}", rule_source(pol, r));
    }
}

/// A limit as a policy writes it, with the monitor's identity when it differs from the
/// name and the NEAR threshold's value: `limit std.llm.cost to $5.00  near 80% ($4.00) =>
/// alert(ui)  breach => stop`.
fn limit_source(p: &Program, l: &LimitDesc) -> String {
    let monitor = p
        .monitors
        .get(l.monitor as usize)
        .map_or("?", |m| m.id_name.as_str());
    let identity = if monitor == l.name {
        String::new()
    } else {
        format!(" ({monitor})")
    };
    let budget = l
        .budget
        .as_ref()
        .map(|b| format!(" {}", b.text()))
        .unwrap_or_default();
    let near = l
        .near
        .as_ref()
        .map(|n| {
            let at = n
                .near_at
                .map(|v| format!(" ({})", quantity(l.unit, v)))
                .unwrap_or_default();
            format!(
                "  near {}%{at} => {}",
                Decimal(n.percent),
                actions_text(p, &n.actions)
            )
        })
        .unwrap_or_default();
    format!(
        "limit {}{identity} to {}{budget}{near}  breach => {}",
        l.name,
        quantity(l.unit, l.value),
        actions_text(p, &l.breach)
    )
}

/// An override rule whole, as a policy writes it: `allow role "sre-oncall" to raise
/// std.llm.cost up to $10.00 for 1h requires reason approvals 2`.
pub(crate) fn rule_source(pol: &PolicyDesc, r: &RuleDesc) -> String {
    let who = match &r.grantee {
        Grantee::Role(s) => format!("role {s:?}"),
        Grantee::Actor(s) => format!("actor {s:?}"),
    };
    let mut text = format!("allow {who} to {}", rule_kind(pol, r));
    if let Some(ttl) = r.ttl {
        let _ = write!(text, " for {}", duration(ttl));
    }
    if r.requires_reason {
        text.push_str(" requires reason");
    }
    if r.approvals > 0 {
        let _ = write!(text, " approvals {}", r.approvals);
    }
    text
}

fn rule_kind(pol: &PolicyDesc, r: &RuleDesc) -> String {
    match &r.kind {
        RuleKindDesc::Raise { limit, ceiling } => match pol.limits.get(*limit as usize) {
            Some(l) => format!("raise {} up to {}", l.name, quantity(l.unit, *ceiling)),
            None => format!("raise limit #{limit} up to {}", Decimal(*ceiling)),
        },
        RuleKindDesc::Suspend => "suspend".into(),
        RuleKindDesc::Resume => "resume".into(),
    }
}

/// The channels a threshold alerts, by name.
fn channel_names(p: &Program, a: &ActionsDesc) -> Vec<String> {
    a.alerts
        .iter()
        .map(|c| match c {
            ChannelRef::Ui => "ui".to_string(),
            ChannelRef::Declared(i) => p
                .channels
                .get(*i as usize)
                .map_or("?".into(), |c| c.name.clone()),
        })
        .collect()
}

/// A threshold's actions for tools: the enforcement (or null) and the channels alerted.
fn actions_json(p: &Program, a: &ActionsDesc) -> serde_json::Value {
    serde_json::json!({"enforcement": a.enforcement.map(|e| e.name()), "alerts": channel_names(p, a)})
}

fn limit_json(p: &Program, l: &LimitDesc) -> serde_json::Value {
    serde_json::json!({
        "limit": l.name,
        "monitor": p.monitors.get(l.monitor as usize).map(|m| m.id_name.clone()),
        "value": Decimal(l.value).to_string(),
        "unit": l.unit.name(),
        "text": quantity(l.unit, l.value),
        "budget": l.budget.as_ref().map(|b| serde_json::json!({
            "per": b.per.iter().map(|s| s.text()).collect::<Vec<_>>(),
            "window_ns": b.window,
        })),
        "near": l.near.as_ref().map(|n| serde_json::json!({
            "percent": Decimal(n.percent).to_string(),
            "at": n.near_at.map(|v| Decimal(v).to_string()),
            "actions": actions_json(p, &n.actions),
        })),
        "breach": actions_json(p, &l.breach),
    })
}

fn rule_json(pol: &PolicyDesc, r: &RuleDesc) -> serde_json::Value {
    let (kind, limit, up_to) = match &r.kind {
        RuleKindDesc::Raise { limit, ceiling } => {
            let l = pol.limits.get(*limit as usize);
            (
                "raise",
                l.map(|l| l.name.clone()),
                Some(Decimal(*ceiling).to_string()),
            )
        }
        RuleKindDesc::Suspend => ("suspend", None, None),
        RuleKindDesc::Resume => ("resume", None, None),
    };
    let (role, actor) = match &r.grantee {
        Grantee::Role(s) => (Some(s), None),
        Grantee::Actor(s) => (None, Some(s)),
    };
    serde_json::json!({
        "text": rule_source(pol, r),
        "role": role,
        "actor": actor,
        "kind": kind,
        "limit": limit,
        "up_to": up_to,
        "for": r.ttl.map(duration),
        "requires_reason": r.requires_reason,
        "approvals": r.approvals,
    })
}

/// The machine-readable inspection of an artifact.
pub fn json(artifact: &Artifact) -> serde_json::Value {
    let p = &artifact.body.program;
    let policies: Vec<serde_json::Value> = p
        .policies
        .iter()
        .map(|pol| {
            serde_json::json!({
                "name": pol.name,
                "version": pol.version,
                "hash": pol.hash,
                "scope": scope_text(&pol.scope),
                "precedence": pol.precedence,
                "conflict": pol.conflict.name(),
                "bind": pol.bind.name(),
                "on_error": pol.on_error.name(),
                "limits": pol.limits.iter().map(|l| limit_json(p, l)).collect::<Vec<_>>(),
                "overrides": pol.rules.iter().map(|r| rule_json(pol, r)).collect::<Vec<_>>(),
            })
        })
        .collect();
    let monitors: Vec<serde_json::Value> = p
        .monitors
        .iter()
        .map(|m| serde_json::json!({"name": m.id_name, "unit": m.unit.name(), "code": code_lines(p, &m.code)}))
        .collect();
    let aggregates: Vec<serde_json::Value> = p
        .aggregates
        .iter()
        .map(|a| {
            serde_json::json!({
                "func": a.func.name(),
                "window_ns": a.window,
                "arg": a.arg.as_ref().map(|c| code_lines(p, c)),
                "filter": a.filter.as_ref().map(|c| code_lines(p, c)),
            })
        })
        .collect();
    serde_json::json!({
        "artifact": artifact.id,
        "format_version": artifact.format_version(),
        "bytes": artifact.bytes.len(),
        "sources": artifact.body.sources.iter().map(|s| serde_json::json!({"path": s.path, "module": s.module})).collect::<Vec<_>>(),
        "policies": policies,
        "monitors": monitors,
        "aggregates": aggregates,
    })
}
