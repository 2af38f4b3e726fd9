//! `lever diff OLD.lvc NEW.lvc`: what changed between two artifacts, for review in pull
//! requests: policies added and removed, and for each policy in both, limits raised,
//! lowered, added or removed, thresholds and actions, scopes widened or narrowed (decided
//! exactly, as the analyzer decides overlap), precedence, binding, error handling,
//! override rules and throttling; channels added, removed or changed.

use crate::base::format;
use crate::base::lang::Budget;
use crate::check::analyze;
use crate::check::hir::{ArgValue, Grantee};
use crate::compile::artifact::Artifact;
use crate::compile::bytecode::{LimitDesc, PolicyDesc, Program, RuleDesc, RuleKindDesc};
use crate::compile::disasm::actions_text;
use crate::compile::meaning::scope_text;
use serde::Serialize;

/// One change to a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Change {
    /// What kind of change: `limit_raised`, `scope_widened`, ... (docs/cli.md lists them).
    pub kind: &'static str,
    /// The limit it concerns, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct PolicyChange {
    pub policy: String,
    pub from_version: u64,
    pub to_version: u64,
    pub from_hash: String,
    pub to_hash: String,
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub policy: String,
    pub version: u64,
    pub hash: String,
    pub scope: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Diff {
    pub from: String,
    pub to: String,
    pub added: Vec<Summary>,
    pub removed: Vec<Summary>,
    pub changed: Vec<PolicyChange>,
    /// Channels: `channel_added`, `channel_removed`, `channel_changed`, with the name as
    /// `limit` left empty and the declaration as `from`/`to`.
    pub channels: Vec<Change>,
}

impl Diff {
    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.changed.is_empty()
            && self.channels.is_empty()
    }
}

fn summary(p: &PolicyDesc) -> Summary {
    Summary {
        policy: p.name.clone(),
        version: p.version,
        hash: p.hash.clone(),
        scope: scope_text(&p.scope),
    }
}

/// A policy of a program by name.
fn find<'a>(program: &'a Program, name: &str) -> Option<&'a PolicyDesc> {
    program.policies.iter().find(|p| p.name == name)
}

/// What changed from `old` to `new`.
pub(crate) fn diff(old: &Artifact, new: &Artifact) -> Diff {
    let (a, b) = (&old.body.program, &new.body.program);
    let added = b
        .policies
        .iter()
        .filter(|p| find(a, &p.name).is_none())
        .map(summary)
        .collect();
    let removed = a
        .policies
        .iter()
        .filter(|p| find(b, &p.name).is_none())
        .map(summary)
        .collect();
    let changed = a
        .policies
        .iter()
        .filter_map(|p| {
            let q = find(b, &p.name)?;
            (p.hash != q.hash).then(|| PolicyChange {
                policy: p.name.clone(),
                from_version: p.version,
                to_version: q.version,
                from_hash: p.hash.clone(),
                to_hash: q.hash.clone(),
                changes: policy_changes(a, p, b, q),
            })
        })
        .collect();
    Diff {
        from: old.id.clone(),
        to: new.id.clone(),
        added,
        removed,
        changed,
        channels: channel_changes(a, b),
    }
}

fn change(
    kind: &'static str,
    limit: Option<&str>,
    from: Option<String>,
    to: Option<String>,
) -> Change {
    Change {
        kind,
        limit: limit.map(str::to_string),
        from,
        to,
    }
}

fn percent_text(p: i64) -> String {
    format!("{}%", crate::base::num::Decimal(p))
}

fn rule_text(policy: &PolicyDesc, r: &RuleDesc) -> String {
    let who = match &r.grantee {
        Grantee::Role(role) => format!("role {role:?}"),
        Grantee::Actor(actor) => format!("actor {actor:?}"),
    };
    let what = match &r.kind {
        RuleKindDesc::Raise { limit, ceiling } => match policy.limits.get(usize::from(*limit)) {
            Some(l) => format!(
                "may raise {} up to {}",
                l.name,
                format::quantity(l.unit, *ceiling)
            ),
            None => format!("may raise limit #{limit}"),
        },
        RuleKindDesc::Suspend => "may suspend".into(),
        RuleKindDesc::Resume => "may resume".into(),
    };
    let mut text = format!("{who} {what}");
    if let Some(ttl) = r.ttl {
        text.push_str(&format!(" for {}", format::duration(ttl)));
    }
    if r.requires_reason {
        text.push_str(", reason required");
    }
    if r.approvals > 0 {
        text.push_str(&format!(", {} approvals", r.approvals));
    }
    text
}

fn policy_changes(a: &Program, p: &PolicyDesc, b: &Program, q: &PolicyDesc) -> Vec<Change> {
    let mut out = Vec::new();
    if p.scope != q.scope {
        let kind = match (
            analyze::implies(&p.scope, &q.scope),
            analyze::implies(&q.scope, &p.scope),
        ) {
            (Some(true), Some(false)) => "scope_widened",
            (Some(false), Some(true)) => "scope_narrowed",
            (Some(true), Some(true)) => "scope_rewritten",
            _ => "scope_changed",
        };
        out.push(change(
            kind,
            None,
            Some(scope_text(&p.scope)),
            Some(scope_text(&q.scope)),
        ));
    }
    setting_changes(p, q, &mut out);
    for l in &p.limits {
        let Some(m) = q.limits.iter().find(|m| m.name == l.name) else {
            out.push(change(
                "limit_removed",
                Some(&l.name),
                Some(format::quantity(l.unit, l.value)),
                None,
            ));
            continue;
        };
        limit_changes(a, l, b, m, &mut out);
    }
    for m in &q.limits {
        if !p.limits.iter().any(|l| l.name == m.name) {
            out.push(change(
                "limit_added",
                Some(&m.name),
                None,
                Some(format::quantity(m.unit, m.value)),
            ));
        }
    }
    let rules = |policy: &PolicyDesc| -> Vec<String> {
        policy.rules.iter().map(|r| rule_text(policy, r)).collect()
    };
    let (from, to) = (rules(p), rules(q));
    for r in from.iter().filter(|r| !to.contains(r)) {
        out.push(change("override_rule_removed", None, Some(r.clone()), None));
    }
    for r in to.iter().filter(|r| !from.contains(r)) {
        out.push(change("override_rule_added", None, None, Some(r.clone())));
    }
    if out.is_empty() {
        // The hash covers what monitors compute; nothing above shows it.
        out.push(change("definition_changed", None, None, None));
    }
    out
}

/// Changes of a policy's settings: precedence, conflict, binding, errors, throttling,
/// prompt logging and PII capture.
fn setting_changes(p: &PolicyDesc, q: &PolicyDesc, out: &mut Vec<Change>) {
    let mut setting = |kind, from: String, to: String| {
        if from != to {
            out.push(change(kind, None, Some(from), Some(to)));
        }
    };
    setting(
        "precedence_changed",
        p.precedence.to_string(),
        q.precedence.to_string(),
    );
    setting(
        "conflict_changed",
        p.conflict.name().into(),
        q.conflict.name().into(),
    );
    setting("bind_changed", p.bind.name().into(), q.bind.name().into());
    setting(
        "on_error_changed",
        p.on_error.name().into(),
        q.on_error.name().into(),
    );
    setting(
        "max_per_run_changed",
        p.max_per_run.map_or("none".into(), |n| n.to_string()),
        q.max_per_run.map_or("none".into(), |n| n.to_string()),
    );
    setting(
        "min_interval_changed",
        format::duration(p.min_interval),
        format::duration(q.min_interval),
    );
    setting(
        "prompt_logging_changed",
        p.prompt_logging.to_string(),
        q.prompt_logging.to_string(),
    );
    setting(
        "pii_capture_changed",
        p.pii_capture.to_string(),
        q.pii_capture.to_string(),
    );
}

/// Changes of one limit kept by name: its value, NEAR threshold and actions.
fn limit_changes(a: &Program, l: &LimitDesc, b: &Program, m: &LimitDesc, out: &mut Vec<Change>) {
    let name = Some(l.name.as_str());
    if l.unit != m.unit || l.value != m.value {
        let kind = match (l.unit == m.unit, m.value > l.value) {
            (true, true) => "limit_raised",
            (true, false) => "limit_lowered",
            (false, _) => "limit_changed",
        };
        out.push(change(
            kind,
            name,
            Some(format::quantity(l.unit, l.value)),
            Some(format::quantity(m.unit, m.value)),
        ));
    }
    match (&l.near, &m.near) {
        (Some(x), Some(y)) if x.percent != y.percent => out.push(change(
            "near_changed",
            name,
            Some(percent_text(x.percent)),
            Some(percent_text(y.percent)),
        )),
        (Some(x), None) => out.push(change(
            "near_removed",
            name,
            Some(percent_text(x.percent)),
            None,
        )),
        (None, Some(y)) => out.push(change(
            "near_added",
            name,
            None,
            Some(percent_text(y.percent)),
        )),
        _ => {}
    }
    if let (Some(x), Some(y)) = (&l.near, &m.near) {
        let (from, to) = (actions_text(a, &x.actions), actions_text(b, &y.actions));
        if from != to {
            out.push(change("near_actions_changed", name, Some(from), Some(to)));
        }
    }
    let (from, to) = (actions_text(a, &l.breach), actions_text(b, &m.breach));
    if from != to {
        out.push(change("breach_actions_changed", name, Some(from), Some(to)));
    }
    if let Some(kind) = budget_change(l.budget.as_ref(), m.budget.as_ref()) {
        let text = |b: Option<&Budget>| b.map_or_else(|| "per run".to_string(), Budget::text);
        out.push(change(
            kind,
            name,
            Some(text(l.budget.as_ref())),
            Some(text(m.budget.as_ref())),
        ));
    }
}

/// How a limit's budget across runs changed: `budget_widened` when it allows more spend
/// (a finer key, each value with the whole budget, or a shorter window), `budget_narrowed`
/// when less, `budget_added` and `budget_removed` from and to a limit of each run, and
/// `budget_changed` otherwise.
fn budget_change(from: Option<&Budget>, to: Option<&Budget>) -> Option<&'static str> {
    let (a, b) = match (from, to) {
        (None, None) => return None,
        (None, Some(_)) => return Some("budget_added"),
        (Some(_), None) => return Some("budget_removed"),
        (Some(a), Some(b)) if a == b => return None,
        (Some(a), Some(b)) => (a, b),
    };
    let within = |x: &Budget, y: &Budget| x.per.iter().all(|s| y.per.contains(s));
    // A shorter window resets sooner, so it allows more; no window never resets.
    let sooner = |x: Option<i64>, y: Option<i64>| match (x, y) {
        (Some(x), Some(y)) => x <= y,
        (Some(_), None) => true,
        (None, Some(_)) => false,
        (None, None) => true,
    };
    let (finer, coarser) = (within(a, b), within(b, a));
    if finer && sooner(b.window, a.window) {
        Some("budget_widened")
    } else if coarser && sooner(a.window, b.window) {
        Some("budget_narrowed")
    } else {
        Some("budget_changed")
    }
}

fn channel_text(c: &crate::compile::bytecode::ChannelDesc) -> String {
    let args: Vec<String> = c
        .args
        .iter()
        .map(|(k, v)| {
            let v = match v {
                ArgValue::Str(s) => format!("{s:?}"),
                ArgValue::Env(var) => format!("env({var:?})"),
                ArgValue::List(items) => format!("{items:?}"),
            };
            format!("{k}: {v}")
        })
        .collect();
    format!("{}({})", c.kind.name(), args.join(", "))
}

fn channel_changes(a: &Program, b: &Program) -> Vec<Change> {
    let mut out = Vec::new();
    for c in &a.channels {
        match b.channels.iter().find(|d| d.name == c.name) {
            None => out.push(change(
                "channel_removed",
                Some(&c.name),
                Some(channel_text(c)),
                None,
            )),
            Some(d) if channel_text(c) != channel_text(d) => out.push(change(
                "channel_changed",
                Some(&c.name),
                Some(channel_text(c)),
                Some(channel_text(d)),
            )),
            Some(_) => {}
        }
    }
    for d in &b.channels {
        if !a.channels.iter().any(|c| c.name == d.name) {
            out.push(change(
                "channel_added",
                Some(&d.name),
                None,
                Some(channel_text(d)),
            ));
        }
    }
    out
}

/// The diff as text for a pull request: one line per change.
pub(crate) fn text(d: &Diff) -> String {
    let mut out = format!("artifact {} -> {}\n", d.from, d.to);
    if d.is_empty() {
        out.push_str("no policy changes\n");
        return out;
    }
    for p in &d.added {
        out.push_str(&format!(
            "+ policy {} v{} (scope {})\n",
            p.policy, p.version, p.scope
        ));
    }
    for p in &d.removed {
        out.push_str(&format!(
            "- policy {} v{} (scope {})\n",
            p.policy, p.version, p.scope
        ));
    }
    for p in &d.changed {
        out.push_str(&format!(
            "~ policy {} v{} -> v{}\n",
            p.policy, p.from_version, p.to_version
        ));
        for c in &p.changes {
            out.push_str(&format!("    {}\n", change_text(c)));
        }
    }
    for c in &d.channels {
        out.push_str(&format!("{}\n", change_text(c)));
    }
    out
}

fn change_text(c: &Change) -> String {
    let subject = c
        .limit
        .as_deref()
        .map(|l| format!(" {l}"))
        .unwrap_or_default();
    let words = c.kind.replace('_', " ");
    match (&c.from, &c.to) {
        (Some(f), Some(t)) => format!("{words}{subject}: {f} -> {t}"),
        (Some(f), None) => format!("{words}{subject}: was {f}"),
        (None, Some(t)) => format!("{words}{subject}: {t}"),
        (None, None) => format!("{words}{subject}: what its monitors compute differs"),
    }
}
