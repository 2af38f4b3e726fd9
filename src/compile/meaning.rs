//! A policy's meaning as canonical text, and its hash.
//!
//! The text is fully parenthesised and names monitors, fields and channels by identity;
//! constants are folded values with their units. It holds no spans, comments or layout, so
//! reformatting a file keeps every policy hash, while any change to what a policy does
//! (scope, clauses, limits, the code of every monitor and derived field it reads, its
//! channels, its override rules) changes it.

use crate::base::num::Decimal;
use crate::check::hir::{
    self, ArgValue, ChannelRef, ExprKind, Grantee, RuleKind, Scope, Selector, Value,
};
use std::collections::BTreeSet;
use std::fmt::Write;

/// Domain separation for policy hashes.
const DOMAIN: &str = "lever/policy-meaning/v1\n";

/// `blake3:<hex>` over the policy's canonical meaning.
pub(crate) fn policy_hash(program: &hir::Program, policy: &hir::Policy) -> String {
    let text = policy_meaning(program, policy);
    let mut hasher = blake3::Hasher::new();
    hasher.update(DOMAIN.as_bytes());
    hasher.update(text.as_bytes());
    format!("blake3:{}", hasher.finalize().to_hex())
}

fn json(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The canonical text of a policy's meaning.
pub(crate) fn policy_meaning(program: &hir::Program, p: &hir::Policy) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "policy {}", p.name);
    let _ = writeln!(out, "version {}", p.version);
    let _ = writeln!(
        out,
        "description {}",
        p.description.as_deref().map_or("none".into(), json)
    );
    let _ = writeln!(out, "scope {}", scope_text(&p.scope));
    let _ = writeln!(out, "precedence {}", p.precedence);
    let _ = writeln!(out, "conflict {}", p.conflict.name());
    let _ = writeln!(out, "bind {}", p.bind.name());
    let _ = writeln!(out, "on_error {:?}", p.on_error);
    let _ = writeln!(
        out,
        "inspect prompt_logging={} pii_capture={}",
        p.prompt_logging, p.pii_capture
    );
    let mut monitors = BTreeSet::new();
    let mut channels = BTreeSet::new();
    for l in &p.limits {
        let near = match &l.near {
            Some(n) => format!(
                "{}% => {}",
                Decimal(n.percent),
                actions(&n.actions, &mut channels)
            ),
            None => "none".into(),
        };
        let _ = writeln!(
            out,
            "limit {} monitor {} unit {} value {} near {} breach {}",
            l.name,
            monitor_name(program, l.monitor),
            l.unit.name(),
            Decimal(l.value),
            near,
            actions(&l.breach, &mut channels)
        );
        // Only a budget adds a line, so a policy without one keeps its hash.
        if let Some(b) = &l.budget {
            let per: Vec<String> = b.per.iter().map(|s| s.text()).collect();
            let window = b.window.map_or("none".into(), |w| w.to_string());
            let _ = writeln!(
                out,
                "budget {} per {} window {window}",
                l.name,
                per.join(",")
            );
        }
        collect_monitors(program, l.monitor, &mut monitors);
    }
    let _ = writeln!(
        out,
        "alerts max_per_run {} min_interval {}",
        p.max_per_run.map_or("none".into(), |n| n.to_string()),
        p.min_interval
    );
    for r in &p.rules {
        let _ = writeln!(out, "rule {}", rule_text(r, p));
    }
    definitions(program, &monitors, &mut out);
    for c in channels {
        let _ = writeln!(out, "channel {}", channel_text(program, c));
    }
    out
}

/// The monitors a policy's limits reach, and the derived fields they read, in order.
fn definitions(program: &hir::Program, monitors: &BTreeSet<hir::MonitorId>, out: &mut String) {
    let mut fields = BTreeSet::new();
    for id in monitors {
        if let Some(m) = program.monitors.get(id.0 as usize) {
            collect_fields(&m.expr, &mut fields);
            let _ = writeln!(
                out,
                "monitor {}: {} = {}",
                m.id_name,
                m.unit.name(),
                expr_text(program, &m.expr)
            );
        }
    }
    let mut derived = BTreeSet::new();
    for id in fields {
        collect_derived(program, id, &mut derived);
    }
    for id in derived {
        if let Some(f) = program.fields.get(id.0 as usize) {
            let source = match &f.source {
                hir::FieldSource::Event => "event".to_string(),
                hir::FieldSource::Metric(name) => format!("metric {}", json(name)),
                hir::FieldSource::Derived(e) => format!("= {}", expr_text(program, e)),
            };
            let _ = writeln!(out, "field {}: {} {}", f.name, f.unit.name(), source);
        }
    }
}

fn monitor_name(program: &hir::Program, id: hir::MonitorId) -> &str {
    program
        .monitors
        .get(id.0 as usize)
        .map_or("?", |m| m.id_name.as_str())
}

fn collect_monitors(
    program: &hir::Program,
    id: hir::MonitorId,
    out: &mut BTreeSet<hir::MonitorId>,
) {
    if !out.insert(id) {
        return;
    }
    if let Some(m) = program.monitors.get(id.0 as usize) {
        for r in m.expr.monitor_refs() {
            collect_monitors(program, r, out);
        }
    }
}

fn collect_fields(e: &hir::Expr, out: &mut BTreeSet<hir::FieldId>) {
    e.walk(&mut |x| {
        if let ExprKind::Field(id) = &x.kind {
            out.insert(*id);
        }
    });
}

fn collect_derived(program: &hir::Program, id: hir::FieldId, out: &mut BTreeSet<hir::FieldId>) {
    if !out.insert(id) {
        return;
    }
    if let Some(hir::FieldSource::Derived(e)) = program.fields.get(id.0 as usize).map(|f| &f.source)
    {
        let mut inner = BTreeSet::new();
        collect_fields(e, &mut inner);
        for i in inner {
            collect_derived(program, i, out);
        }
    }
}

fn actions(a: &hir::Actions, channels: &mut BTreeSet<u32>) -> String {
    let mut parts: Vec<String> = a.enforcement.iter().map(|e| e.name().to_string()).collect();
    for c in &a.alerts {
        parts.push(match c {
            ChannelRef::Ui => "alert ui".to_string(),
            ChannelRef::Declared(i) => {
                channels.insert(*i);
                format!("alert #{i}")
            }
        });
    }
    if parts.is_empty() {
        return "none".into();
    }
    parts.join(", ")
}

fn channel_text(program: &hir::Program, index: u32) -> String {
    let Some(c) = program.channels.get(index as usize) else {
        return format!("#{index} ?");
    };
    let args: Vec<String> = c
        .args
        .iter()
        .map(|(k, v)| {
            let value = match v {
                ArgValue::Str(s) => json(s),
                ArgValue::Env(var) => format!("env({})", json(var)),
                ArgValue::List(items) => format!(
                    "[{}]",
                    items.iter().map(|s| json(s)).collect::<Vec<_>>().join(", ")
                ),
            };
            format!("{k}: {value}")
        })
        .collect();
    format!(
        "#{index} {} = {}({})",
        c.name,
        c.kind.name(),
        args.join(", ")
    )
}

fn rule_text(r: &hir::OverrideRule, p: &hir::Policy) -> String {
    let who = match &r.grantee {
        Grantee::Role(s) => format!("role {}", json(s)),
        Grantee::Actor(s) => format!("actor {}", json(s)),
    };
    let kind = match &r.kind {
        RuleKind::Raise { limit, ceiling } => {
            let name = p.limits.get(*limit).map_or("?", |l| l.name.as_str());
            format!("raise {name} up to {}", Decimal(*ceiling))
        }
        RuleKind::Suspend => "suspend".into(),
        RuleKind::Resume => "resume".into(),
    };
    let ttl = r.ttl.map_or("none".into(), |t| t.to_string());
    format!(
        "{who} {kind} for {ttl} reason {} approvals {}",
        r.requires_reason, r.approvals
    )
}

fn selector_text(s: &Selector) -> String {
    match s {
        Selector::Tenant => "tenant".into(),
        Selector::Agent => "agent".into(),
        Selector::ApiKey => "api_key".into(),
        Selector::HumanActor => "human_actor".into(),
        Selector::Label(k) => format!("labels[{}]", json(k)),
    }
}

/// A scope as canonical text (also used by `lever inspect`).
pub(crate) fn scope_text(s: &Scope) -> String {
    match s {
        Scope::All => "all".into(),
        Scope::Eq(sel, v) => format!("{} == {}", selector_text(sel), json(v)),
        Scope::In(sel, vs) => format!(
            "{} in [{}]",
            selector_text(sel),
            vs.iter().map(|v| json(v)).collect::<Vec<_>>().join(", ")
        ),
        Scope::Not(x) => format!("not ({})", scope_text(x)),
        Scope::And(a, b) => format!("({}) and ({})", scope_text(a), scope_text(b)),
        Scope::Or(a, b) => format!("({}) or ({})", scope_text(a), scope_text(b)),
    }
}

/// An expression as canonical text.
pub(crate) fn expr_text(program: &hir::Program, e: &hir::Expr) -> String {
    match &e.kind {
        ExprKind::Const(Value::Num(n)) => format!("{}{}", Decimal(*n), unit_suffix(e.unit)),
        ExprKind::Const(Value::Bool(b)) => b.to_string(),
        ExprKind::Const(Value::Str(s)) => json(s),
        ExprKind::Field(id) => program
            .fields
            .get(id.0 as usize)
            .map_or("?".into(), |f| f.name.clone()),
        ExprKind::Label(k) => format!("run.labels[{}]", json(k)),
        ExprKind::Monitor(id) => monitor_name(program, *id).to_string(),
        ExprKind::Neg(x) => format!("(-{})", expr_text(program, x)),
        ExprKind::Not(x) => format!("(not {})", expr_text(program, x)),
        ExprKind::Binary(op, a, b) => format!(
            "({} {} {})",
            expr_text(program, a),
            op.symbol(),
            expr_text(program, b)
        ),
        ExprKind::In(a, list) => format!(
            "({} in [{}])",
            expr_text(program, a),
            list.iter()
                .map(|x| expr_text(program, x))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        ExprKind::Agg {
            func,
            arg,
            filter,
            window,
        } => {
            let mut inner = arg
                .as_deref()
                .map(|a| expr_text(program, a))
                .unwrap_or_default();
            if let Some(f) = filter {
                let _ = write!(inner, " where {}", expr_text(program, f));
            }
            if let Some(w) = window {
                let _ = write!(inner, ", {w}ns");
            }
            format!("{}({})", func.name(), inner)
        }
    }
}

fn unit_suffix(unit: crate::base::lang::Unit) -> &'static str {
    use crate::base::lang::Unit;
    match unit {
        Unit::Usd => " usd",
        Unit::Tokens => " tokens",
        Unit::Duration => " s",
        Unit::Timestamp => " ns",
        _ => "",
    }
}
