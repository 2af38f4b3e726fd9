//! Running a test: its statements become typed events, replayed in memory through the
//! compiled policy set (the same [`Replay`] as `lever run`, without a store), and each
//! `expect` is checked against the decision of the event before it.

use crate::base::num::Decimal;
use crate::compile::artifact::Artifact;
use crate::runtime::decision::Decision;
use crate::runtime::event::{
    Approval, Event, Metrics, OverrideRequest, RaiseTarget, RaiseTo, RunEnd, RunStart, Step,
};
use crate::runtime::replay::Replay;
use crate::syntax::testing::{Expectation, StepFields, StmtKind, Test};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// When a test's run starts: 2026-01-01T00:00:00Z, in nanoseconds.
const START: i64 = 1_767_225_600_000_000_000;
/// Time between events when a statement gives no `after`.
const GAP: i64 = 1_000_000_000;
/// The run id of every test.
const RUN: &str = "test";

/// One failed expectation.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Failure {
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
    pub(crate) fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A decision in short lines, for failure reports.
pub(crate) fn summary(d: &Decision) -> Vec<String> {
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

/// The event a statement sends at `ts` (`None` for an `expect`); `last_override` is the
/// `seq` an `approve` approves.
fn event_of(kind: &StmtKind, ts: i64, last_override: Option<u64>, run: &str) -> Option<Event> {
    Some(match kind {
        StmtKind::Run { attrs, labels } => {
            let attr = |k: &str| attrs.get(k).cloned().unwrap_or_default();
            Event::RunStart(RunStart {
                run_id: run.into(),
                ts,
                // `tenant` is required by the event format; a test may leave it out.
                tenant: attrs
                    .get("tenant")
                    .cloned()
                    .unwrap_or_else(|| "test".into()),
                agent: attr("agent"),
                api_key: attr("api_key"),
                human_actor: attr("human_actor"),
                labels: labels.clone(),
                meta: None,
            })
        }
        StmtKind::Step {
            fields, metrics, ..
        } => Event::Step(step_of(fields, metrics, ts, run)),
        StmtKind::Override {
            kind,
            policy,
            limit,
            to,
            by,
            roles,
            ttl,
            reason,
            ..
        } => Event::Override(OverrideRequest {
            run_id: run.into(),
            ts,
            actor: by.clone(),
            roles: roles.clone(),
            policy: policy.clone(),
            kind: *kind,
            limit: limit.clone(),
            to: to.as_ref().and_then(|text| {
                RaiseTo::parse(text).map(|to| RaiseTarget {
                    text: text.clone(),
                    to,
                })
            }),
            ttl: *ttl,
            reason: reason.clone(),
            approvals: Vec::new(),
            meta: None,
        }),
        StmtKind::Approve { by, roles, .. } => Event::Approval(Approval {
            run_id: run.into(),
            ts,
            request: last_override.unwrap_or(0),
            actor: by.clone(),
            roles: roles.clone(),
            meta: None,
        }),
        StmtKind::End { .. } => Event::RunEnd(RunEnd {
            run_id: run.into(),
            ts,
            meta: None,
        }),
        StmtKind::Expect(..) | StmtKind::Spent { .. } => return None,
    })
}

fn step_of(fields: &StepFields, metrics: &BTreeMap<String, i64>, ts: i64, run: &str) -> Step {
    Step {
        run_id: run.into(),
        ts,
        input_tokens: fields.input_tokens.unwrap_or(0),
        output_tokens: fields.output_tokens.unwrap_or(0),
        cost: fields.cost.unwrap_or(0),
        latency: fields.latency.unwrap_or(0),
        kind: fields.kind.clone().unwrap_or_else(|| "llm_call".into()),
        model: fields.model.clone().unwrap_or_default(),
        tool: fields.tool.clone().unwrap_or_default(),
        pii: fields.pii.unwrap_or(false),
        metrics: Metrics::of(metrics.iter().map(|(k, v)| (k.as_str(), Decimal(*v)))),
        prompt: None,
        idempotency_key: None,
        meta: None,
    }
}

/// The `after`/`before` of a statement that sends an event.
fn gap_of(kind: &StmtKind) -> Option<i64> {
    match kind {
        StmtKind::Step { after, .. }
        | StmtKind::Override { after, .. }
        | StmtKind::Approve { after, .. }
        | StmtKind::End { after } => *after,
        StmtKind::Run { .. } | StmtKind::Expect(..) | StmtKind::Spent { .. } => None,
    }
}

/// Runs one test against `artifact`; `line_of` gives a statement's line.
pub(crate) fn run(
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
    let mut clock = START;
    // Every decision of the test so far (`expect at seq N` reads back).
    let mut history: Vec<Decision> = Vec::new();
    let mut last_override: Option<u64> = None;
    // The run the statements drive: `test`, then `test-2`, ... for each further `run`.
    let (mut run_id, mut runs) = (RUN.to_string(), 0);
    for s in &test.statements {
        match &s.kind {
            StmtKind::Expect(e, at) => {
                check(e, *at, (&history, &run_id), line_of(s.span), &mut out);
                continue;
            }
            StmtKind::Spent { .. } => {
                spent(
                    &mut replay,
                    (&run_id, clock),
                    &s.kind,
                    line_of(s.span),
                    &mut out,
                );
                continue;
            }
            StmtKind::Run { .. } => {
                runs += 1;
                if runs > 1 {
                    run_id = format!("{RUN}-{runs}");
                    clock = clock.saturating_add(GAP);
                }
            }
            _ => {}
        }
        let repeat = match &s.kind {
            StmtKind::Step { repeat, .. } => *repeat,
            _ => 1,
        };
        for _ in 0..repeat {
            // A negative gap (`before`) stamps a late event without moving the clock.
            let ts = match gap_of(&s.kind) {
                _ if matches!(s.kind, StmtKind::Run { .. }) => clock,
                Some(gap) if gap < 0 => clock.saturating_add(gap),
                gap => {
                    clock = clock.saturating_add(gap.unwrap_or(GAP));
                    clock
                }
            };
            let Some(event) = event_of(&s.kind, ts, last_override, &run_id) else {
                continue;
            };
            out.events += 1;
            let d = replay.apply(out.events as u64, &event).decision;
            out.note(&d);
            history.push(d);
        }
        if matches!(s.kind, StmtKind::Override { .. }) {
            last_override = history.last().and_then(|d| d.seq);
        }
    }
    out
}

/// `spent VALUE on LIMIT of POLICY`: the budget's counter for the run's key starts there;
/// a budget the run cannot reach is a failure of the test.
fn spent(
    replay: &mut Replay,
    (run, at): (&str, i64),
    kind: &StmtKind,
    line: usize,
    out: &mut Outcome,
) {
    let StmtKind::Spent {
        value,
        limit,
        policy,
    } = kind
    else {
        return;
    };
    if let Err(why) = replay.set_spent(run, policy, limit, *value, at) {
        out.failures.push(Failure {
            line,
            expected: format!("spent on {limit} of {policy}"),
            actual: vec![why],
            seq: None,
        });
    }
}

impl Outcome {
    /// Notes the thresholds, rules and override outcomes a decision reached.
    fn note(&mut self, d: &Decision) {
        for s in &d.signals {
            if let (Some(l), "near" | "breach") = (&s.limit, s.kind) {
                self.thresholds
                    .insert((s.policy.clone(), l.clone(), s.kind.to_string()));
            }
        }
        if let Some(o) = &d.override_outcome {
            self.overrides.insert(o.status.to_string());
            if let Some(rule) = &o.rule {
                self.rules.insert(rule.clone());
            }
        }
    }
}

/// Checks an `expect` against the latest decision, or with `at` the run's decision at
/// that `seq`.
fn check(
    e: &Expectation,
    at: Option<u64>,
    (history, run): (&[Decision], &str),
    line: usize,
    out: &mut Outcome,
) {
    let decision = match at {
        None => history.last(),
        Some(seq) => history
            .iter()
            .rev()
            .find(|d| d.seq == Some(seq) && d.run_id.as_deref() == Some(run)),
    };
    if decision.is_some_and(|d| holds(e, d)) {
        return;
    }
    let mut expected = e.text();
    if let Some(seq) = at {
        expected = expected.replacen("expect", &format!("expect at seq {seq}"), 1);
    }
    out.failures.push(Failure {
        line,
        expected,
        actual: decision.map(summary).unwrap_or_default(),
        seq: decision.and_then(|d| d.seq),
    });
}
