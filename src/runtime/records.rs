//! The evidence records of a judged event: the decision with its input, its signals,
//! alerts, incidents and override, a snapshot when one was taken, a run's summary, and a
//! rejected line's record and decision.

use super::decision::{Action, Decision};
use super::event::{EventKind, Rejection};
use super::{Outcome, PromptRecord, Run};
use crate::evidence::{Record, RecordKind};
use std::sync::Arc;

/// The records an outcome leaves: the decision, its signals, alerts, incidents, and a
/// snapshot when one was taken.
pub(super) fn outcome_records(outcome: &Outcome, input: serde_json::Value) -> Vec<Record> {
    let d = &outcome.decision;
    let (Some(run_id), Some(seq)) = (d.run_id.as_deref().map(str::to_string), d.seq) else {
        return Vec::new();
    };
    let artifact = d.artifact.as_deref().unwrap_or_default().to_string();
    let record = |kind, index: usize, body| Record {
        kind,
        artifact: artifact.clone(),
        run_id: Some(run_id.clone()),
        seq,
        index: u32::try_from(index).unwrap_or(u32::MAX),
        body,
    };
    let mut out = Vec::new();
    if let Some(s) = &outcome.snapshot {
        let body: serde_json::Value = serde_json::from_str(&s.body).unwrap_or_default();
        out.push(record(
            RecordKind::Snapshot,
            0,
            serde_json::json!({"hash": s.hash, "snapshot": body}),
        ));
    }
    out.push(record(
        RecordKind::Decision,
        0,
        decision_body(outcome, input),
    ));
    for (i, s) in d.signals.iter().enumerate() {
        out.push(record(
            RecordKind::Signal,
            i,
            serde_json::to_value(s).unwrap_or_default(),
        ));
    }
    // An alert record is the outbox entry, whole: the alert as printed, when it was
    // raised, and what its signal observed, so that it is delivered from the record alone.
    let ts = serde_json::Value::from(d.ts.map(crate::base::format::timestamp));
    for (i, a) in d.alerts.iter().enumerate() {
        out.push(record(RecordKind::Alert, i, alert_body(d, a, &ts)));
    }
    for (i, inc) in outcome.incidents.iter().enumerate() {
        out.push(record(
            RecordKind::Incident,
            i,
            serde_json::json!({"policy": inc.policy, "limit": inc.limit, "enforcement": inc.enforcement.name(), "ts": d.ts.map(crate::base::format::timestamp)}),
        ));
    }
    if let Some(o) = &d.override_outcome {
        out.push(record(
            RecordKind::Override,
            0,
            serde_json::to_value(o).unwrap_or_default(),
        ));
    }
    out
}

/// A decision record's body: the decision as printed, its input, and the prompt (or why it
/// was not stored).
fn decision_body(outcome: &Outcome, input: serde_json::Value) -> serde_json::Value {
    let d = &outcome.decision;
    let mut body = serde_json::to_value(d).unwrap_or_default();
    if let Some(map) = body.as_object_mut() {
        map.insert("input".into(), input);
    }
    if let (Some(map), Some(prompt)) = (body.as_object_mut(), &outcome.prompt) {
        match prompt {
            PromptRecord::Stored(text) => {
                map.insert("prompt".into(), serde_json::Value::String(text.clone()))
            }
            PromptRecord::Redacted(why) => {
                map.insert("redacted".into(), serde_json::Value::String((*why).into()))
            }
        };
    }
    body
}

/// An alert record's body, whole: the alert as printed, when it was raised (`ts`), and
/// what its signal observed.
fn alert_body(
    d: &Decision,
    a: &super::decision::Alert,
    ts: &serde_json::Value,
) -> serde_json::Value {
    let mut body = serde_json::to_value(a).unwrap_or_default();
    let signal = d
        .signals
        .iter()
        .find(|s| s.kind == a.kind && s.policy == a.policy && s.limit.as_deref() == Some(&a.limit));
    if let Some(map) = body.as_object_mut() {
        map.insert("ts".into(), ts.clone());
        map.insert("version".into(), signal.map(|s| s.version).into());
        map.insert(
            "observed".into(),
            signal.and_then(|s| s.observed.clone()).into(),
        );
        map.insert(
            "limit_value".into(),
            signal.and_then(|s| s.limit_value.clone()).into(),
        );
    }
    body
}

pub(super) fn summary_record(artifact: &str, run: &Run, outcome: &Outcome) -> Record {
    let t = run.totals;
    Record {
        kind: RecordKind::RunSummary,
        artifact: artifact.to_string(),
        run_id: Some(run.id.to_string()),
        seq: run.seq,
        index: 0,
        body: serde_json::json!({
            "steps": t.steps,
            "refused": t.refused,
            "input_tokens": crate::base::format::value(crate::base::lang::Unit::Tokens, t.input_tokens),
            "output_tokens": crate::base::format::value(crate::base::lang::Unit::Tokens, t.output_tokens),
            "cost": crate::base::format::money(t.cost),
            "final_action": outcome.decision.action,
            "final_reason": outcome.decision.reason,
        }),
    }
}

/// The record of a rejected line: in the chain of the live run it names (`judged`: the
/// decision the run gave it), else in the store chain.
pub(super) fn rejected_record(
    artifact: &str,
    line: u64,
    text: &[u8],
    r: &Rejection,
    judged: Option<&Decision>,
) -> Record {
    // The line's hash, not its text: a rejected line may carry a prompt that no policy
    // allowed to be stored.
    let mut body = serde_json::json!({
        "line": line,
        "run_id": r.run_id,
        "reason": r.reason(),
        "input_blake3": blake3::hash(text).to_hex().to_string(),
    });
    if let (Some(d), Some(map)) = (judged, body.as_object_mut())
        && !d.signals.is_empty()
    {
        map.insert(
            "action".into(),
            serde_json::to_value(d.action).unwrap_or_default(),
        );
        map.insert(
            "signals".into(),
            serde_json::to_value(&d.signals).unwrap_or_default(),
        );
    }
    Record {
        kind: RecordKind::RejectedInput,
        artifact: artifact.to_string(),
        run_id: judged.and(r.run_id.clone()),
        seq: line,
        index: 0,
        body,
    }
}

pub(super) fn rejected_decision(r: &Rejection, artifact: String) -> Decision {
    Decision {
        line: None,
        run_id: r.run_id.as_deref().map(Arc::from),
        seq: None,
        ts: r.ts,
        event: r.event.map(EventKind::name),
        action: Action::Rejected,
        reason: Some(r.reason()),
        signals: Vec::new(),
        alerts: Vec::new(),
        budgets: Vec::new(),
        override_outcome: None,
        snapshot: None,
        artifact: Some(Arc::from(artifact.as_str())),
    }
}
