//! Running a test: its statements become DESIGN §3 events, replayed in memory through the
//! compiled policy set (the same [`Replay`] as `lever run`, without a store), and each
//! `expect` is checked against the decision of the event before it.

use crate::compile::artifact::Artifact;
use crate::runtime::decision::Decision;
use crate::runtime::replay::Replay;
use crate::syntax::testing::{Expectation, StmtKind, Test};
use std::collections::BTreeSet;
use std::sync::Arc;

/// When a test's run starts: 2026-01-01T00:00:00Z, in nanoseconds.
const START: i64 = 1_767_225_600_000_000_000;
/// Time between events when a statement gives no `after`.
const GAP: i64 = 1_000_000_000;
/// The run id of every test.
const RUN: &str = "test";

/// One failed expectation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Failure {
    /// The `expect` statement's line.
    pub line: usize,
    pub expected: String,
    /// The decision it was checked against, in short lines (`action stop`, `signal breach
    /// std.llm.cost of p`, ...); empty when no event came before it.
    pub actual: Vec<String>,
    /// The checked decision's `seq`.
    pub seq: Option<u64>,
}

/// What a test did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    pub name: String,
    pub path: String,
    pub line: usize,
    pub failures: Vec<Failure>,
    /// Events the test sent.
    pub events: usize,
    /// Thresholds reached: (policy, limit, `near`|`breach`).
    pub thresholds: BTreeSet<(String, String, String)>,
    /// Override rules reached (`policy#n`), whatever their outcome.
    pub rules: BTreeSet<String>,
    /// Override outcomes seen (`granted`, `pending`, `denied`).
    pub overrides: BTreeSet<String>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A decision in short lines, for failure reports.
pub fn summary(d: &Decision) -> Vec<String> {
    let mut out = vec![format!(
        "action {}{}",
        d.action.name(),
        d.reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    )];
    for s in &d.signals {
        let mut line = format!("signal {}", s.kind);
        if let Some(l) = &s.limit {
            line.push_str(&format!(" {l}"));
        }
        line.push_str(&format!(" of {}", s.policy));
        if let Some(o) = &s.observed {
            line.push_str(&format!(" (observed {o}"));
            if let Some(v) = &s.limit_value {
                line.push_str(&format!(" of {v}"));
            }
            line.push(')');
        }
        if let Some(e) = s.error {
            line.push_str(&format!(" ({e})"));
        }
        out.push(line);
    }
    for a in &d.alerts {
        out.push(format!(
            "alert {} ({} {} of {}){}",
            a.channel,
            a.kind,
            a.limit,
            a.policy,
            if a.suppressed { " suppressed" } else { "" }
        ));
    }
    if let Some(o) = &d.override_outcome {
        out.push(format!(
            "override {}{}",
            o.status,
            o.why
                .as_deref()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default()
        ));
    }
    out
}

fn holds(e: &Expectation, d: &Decision) -> bool {
    match e {
        Expectation::Action(a) => d.action.name() == a,
        Expectation::Signal {
            kind,
            limit,
            policy,
        } => d.signals.iter().any(|s| {
            s.kind == kind
                && limit.as_ref().is_none_or(|l| s.limit.as_ref() == Some(l))
                && policy.as_ref().is_none_or(|p| &s.policy == p)
        }),
        Expectation::NoSignals => d.signals.is_empty(),
        Expectation::Alert {
            channel,
            suppressed,
        } => d
            .alerts
            .iter()
            .any(|a| &a.channel == channel && a.suppressed == *suppressed),
        Expectation::NoAlerts => d.alerts.is_empty(),
        Expectation::Override(status) => d
            .override_outcome
            .as_ref()
            .is_some_and(|o| o.status == status),
    }
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Runs one test against `artifact`; `line_of` gives a statement's line.
pub fn run(
    artifact: &Arc<Artifact>,
    test: &Test,
    line_of: &dyn Fn(crate::base::source::Span) -> usize,
) -> Outcome {
    let mut replay = Replay::new(
        Arc::clone(artifact),
        std::path::PathBuf::from("."),
        Box::new(|_| Err("a test cannot deploy".to_string())),
    );
    let mut out = Outcome {
        name: test.name.clone(),
        path: test.path.clone(),
        line: test.line,
        failures: Vec::new(),
        events: 0,
        thresholds: BTreeSet::new(),
        rules: BTreeSet::new(),
        overrides: BTreeSet::new(),
    };
    let mut ts = START;
    // Every decision of the test so far (`expect at seq N` reads back).
    let mut history: Vec<Decision> = Vec::new();
    let mut last_override: Option<u64> = None;
    let mut send = |text: String, out: &mut Outcome, history: &mut Vec<Decision>| {
        out.events += 1;
        if let Some(result) = replay.line(out.events as u64, &text) {
            let d = result.decision;
            for s in &d.signals {
                if let (Some(l), "near" | "breach") = (&s.limit, s.kind) {
                    out.thresholds
                        .insert((s.policy.clone(), l.clone(), s.kind.to_string()));
                }
            }
            if let Some(o) = &d.override_outcome {
                out.overrides.insert(o.status.to_string());
                if let Some(rule) = &o.rule {
                    out.rules.insert(rule.clone());
                }
            }
            history.push(d);
        }
    };
    // A negative gap (`before`) stamps a late event without moving the test's clock.
    let mut advance = |after: Option<i64>| -> String {
        let gap = after.unwrap_or(GAP);
        if gap < 0 {
            return json_str(&crate::base::format::timestamp(ts.saturating_add(gap)));
        }
        ts = ts.saturating_add(gap);
        json_str(&crate::base::format::timestamp(ts))
    };
    for s in &test.statements {
        match &s.kind {
            StmtKind::Run { attrs, labels } => {
                let mut text = format!(
                    r#"{{"type":"run_start","run_id":"{RUN}","ts":{}"#,
                    json_str(&crate::base::format::timestamp(START))
                );
                for (k, v) in attrs {
                    text.push_str(&format!(",{}:{}", json_str(k), json_str(v)));
                }
                // `tenant` is required by the event format; a test may leave it out.
                if !attrs.contains_key("tenant") {
                    text.push_str(r#","tenant":"test""#);
                }
                if !labels.is_empty() {
                    let labels: serde_json::Map<String, serde_json::Value> = labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone().into()))
                        .collect();
                    text.push_str(&format!(
                        r#","labels":{}"#,
                        serde_json::Value::Object(labels)
                    ));
                }
                text.push('}');
                send(text, &mut out, &mut history);
            }
            StmtKind::Step {
                after,
                fields,
                metrics,
                repeat,
            } => {
                for _ in 0..*repeat {
                    let mut text = format!(
                        r#"{{"type":"step","run_id":"{RUN}","ts":{}"#,
                        advance(*after)
                    );
                    for (k, v) in fields {
                        text.push_str(&format!(",{}:{v}", json_str(k)));
                    }
                    if !metrics.is_empty() {
                        let list: Vec<String> = metrics
                            .iter()
                            .map(|(k, v)| format!("{}:{v}", json_str(k)))
                            .collect();
                        text.push_str(&format!(r#","metrics":{{{}}}"#, list.join(",")));
                    }
                    text.push('}');
                    send(text, &mut out, &mut history);
                }
            }
            StmtKind::Override {
                after,
                kind,
                policy,
                limit,
                to,
                by,
                roles,
                ttl,
                reason,
            } => {
                let mut text = format!(
                    r#"{{"type":"override","run_id":"{RUN}","ts":{},"actor":{},"roles":{},"policy":{},"kind":"{}""#,
                    advance(*after),
                    json_str(by),
                    serde_json::Value::from(roles.clone()),
                    json_str(policy),
                    kind.name()
                );
                for (key, value) in [
                    ("limit", limit),
                    ("to", to),
                    ("ttl", ttl),
                    ("reason", reason),
                ] {
                    if let Some(v) = value {
                        text.push_str(&format!(",\"{key}\":{}", json_str(v)));
                    }
                }
                text.push('}');
                send(text, &mut out, &mut history);
                last_override = history.last().and_then(|d| d.seq);
            }
            StmtKind::Approve { after, by, roles } => {
                let text = format!(
                    r#"{{"type":"approval","run_id":"{RUN}","ts":{},"override":{},"roles":{},"actor":{}}}"#,
                    advance(*after),
                    last_override.unwrap_or(0),
                    serde_json::Value::from(roles.clone()),
                    json_str(by)
                );
                send(text, &mut out, &mut history);
            }
            StmtKind::End { after } => {
                let text = format!(
                    r#"{{"type":"run_end","run_id":"{RUN}","ts":{}}}"#,
                    advance(*after)
                );
                send(text, &mut out, &mut history);
            }
            StmtKind::Expect(e, at) => {
                let decision = match at {
                    None => history.last(),
                    Some(seq) => history.iter().rev().find(|d| d.seq == Some(*seq)),
                };
                if !decision.is_some_and(|d| holds(e, d)) {
                    let mut expected = e.text();
                    if let Some(seq) = at {
                        expected = expected.replacen("expect", &format!("expect at seq {seq}"), 1);
                    }
                    out.failures.push(Failure {
                        line: line_of(s.span),
                        expected,
                        actual: decision.map(summary).unwrap_or_default(),
                        seq: decision.and_then(|d| d.seq),
                    });
                }
            }
        }
    }
    out
}
