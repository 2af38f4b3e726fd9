//! Events in: one JSON object a line, validated field by field (`docs/events.md`).
//!
//! Owns the event types, the JSON keys and their defaults (`read`), and the fields each
//! type defines (`fields`). Numbers are read from their literal text, never through a
//! float. Validation runs in order: JSON, `type`, required fields, field types and values;
//! run checks (`unknown_run`, `duplicate_run`, `run_ended`) are the runtime's.

mod against;
mod fields;
mod read;
mod stored;

pub(crate) use against::check_raise;
pub(crate) use read::{from_fields, object_fields, parse, read_metrics};
pub(crate) use stored::from_evidence;

pub use crate::base::lang::OverrideKind;
use crate::base::lang::Unit;
use crate::base::num::{self, SCALE};
use std::collections::BTreeMap;

/// The event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum EventKind {
    RunStart,
    Step,
    Override,
    Approval,
    Deploy,
    RunEnd,
}

impl EventKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            EventKind::RunStart => "run_start",
            EventKind::Step => "step",
            EventKind::Override => "override",
            EventKind::Approval => "approval",
            EventKind::Deploy => "deploy",
            EventKind::RunEnd => "run_end",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<EventKind> {
        Some(match name {
            "run_start" => EventKind::RunStart,
            "step" => EventKind::Step,
            "override" => EventKind::Override,
            "approval" => EventKind::Approval,
            "deploy" => EventKind::Deploy,
            "run_end" => EventKind::RunEnd,
            _ => return None,
        })
    }
}

/// Why a line was rejected, as printed in `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum RejectCode {
    MalformedJson,
    UnknownType,
    MissingField,
    InvalidField,
    UnknownRun,
    DuplicateRun,
    RunEnded,
    BadArtifact,
}

impl RejectCode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            RejectCode::MalformedJson => "malformed_json",
            RejectCode::UnknownType => "unknown_type",
            RejectCode::MissingField => "missing_field",
            RejectCode::InvalidField => "invalid_field",
            RejectCode::UnknownRun => "unknown_run",
            RejectCode::DuplicateRun => "duplicate_run",
            RejectCode::RunEnded => "run_ended",
            RejectCode::BadArtifact => "bad_artifact",
        }
    }
}

/// A rejected line: what could be read of it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub code: RejectCode,
    pub detail: String,
    pub run_id: Option<String>,
    pub ts: Option<i64>,
    pub event: Option<EventKind>,
}

impl Rejection {
    /// `code: detail`, as a decision's `reason`.
    pub(crate) fn reason(&self) -> String {
        format!("{}: {}", self.code.name(), self.detail)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStart {
    pub run_id: String,
    pub ts: i64,
    pub tenant: String,
    pub agent: String,
    pub api_key: String,
    pub human_actor: String,
    pub labels: BTreeMap<String, String>,
    /// Free-form data stored with the input and read by no policy.
    pub meta: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    pub run_id: String,
    pub ts: i64,
    /// Token counts, cost and latency in 10⁻⁹ units (latency in nanoseconds).
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: i64,
    pub latency: i64,
    pub kind: String,
    pub model: String,
    pub tool: String,
    pub pii: bool,
    /// `metrics` as given, read against the signals of the program that judges the run
    /// (`read_metrics`).
    pub metrics: Metrics,
    pub prompt: Option<String>,
    /// The client's key for this step: a retried request with a key its run already
    /// accepted is answered with the stored decision (`lever serve`), never counted twice.
    pub idempotency_key: Option<String>,
    pub meta: Option<serde_json::Value>,
}

/// A step's `metrics`: each value as written, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics(pub BTreeMap<String, Metric>);

impl Metrics {
    /// Metrics from decimal values (`2`, `0.5`), as a client would write them.
    pub(crate) fn of<'a>(values: impl IntoIterator<Item = (&'a str, num::Decimal)>) -> Metrics {
        Metrics(
            values
                .into_iter()
                .map(|(k, v)| (k.to_string(), Metric::number(v)))
                .collect(),
        )
    }
}

/// One `metrics` value as written (its JSON text): read in its signal's unit when the
/// step is judged, by the same rules as the step's own fields.
#[derive(Debug, Clone)]
pub struct Metric(pub Box<serde_json::value::RawValue>);

impl Metric {
    /// A JSON number.
    pub(crate) fn number(value: num::Decimal) -> Metric {
        Metric::json(&value.to_string())
    }

    /// A value from its JSON text; text that is not JSON is kept as a JSON string of it
    /// (and rejected as a number when the step is judged).
    pub(crate) fn json(text: &str) -> Metric {
        let raw = serde_json::value::RawValue::from_string(text.to_string())
            .or_else(|_| serde_json::value::to_raw_value(text));
        Metric(raw.unwrap_or_else(|_| Box::default()))
    }

    /// The JSON text.
    pub(crate) fn text(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Metric {
    fn eq(&self, other: &Metric) -> bool {
        self.text() == other.text()
    }
}

impl Eq for Metric {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideRequest {
    pub run_id: String,
    pub ts: i64,
    pub actor: String,
    pub roles: Vec<String>,
    pub policy: String,
    pub kind: OverrideKind,
    pub limit: Option<String>,
    /// The requested value, read against the limit's unit when the request is judged.
    pub to: Option<RaiseTarget>,
    /// Nanoseconds.
    pub ttl: Option<i64>,
    pub reason: Option<String>,
    pub approvals: Vec<String>,
    pub meta: Option<serde_json::Value>,
}

/// A raise's `to` as written, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaiseTarget {
    pub text: String,
    pub to: RaiseTo,
}

/// What a raise's `to` asks for: `"8.00"`, `"$8.00"`, `"8.00 usd"`, `"2000"`,
/// `"2000 tokens"`, `"90s"` or `"150%"` of the compiled value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaiseTo {
    /// A percentage of the compiled value, in 10⁻⁹ percent.
    Percent(i64),
    /// A value in 10⁻⁹ units; `unit` when the text names one.
    Value { value: i64, unit: Option<Unit> },
}

impl RaiseTo {
    /// Reads one of the accepted forms; `None` for anything else.
    pub fn parse(text: &str) -> Option<RaiseTo> {
        let t = text.trim();
        if let Some(p) = t.strip_suffix('%') {
            return num::parse_decimal(p.trim_end(), SCALE)
                .ok()
                .map(RaiseTo::Percent);
        }
        let value = |v: &str, unit| {
            num::parse_decimal(v.trim(), SCALE)
                .ok()
                .map(|value| RaiseTo::Value { value, unit })
        };
        if let Some(v) = t.strip_prefix('$') {
            return value(v, Some(Unit::Usd));
        }
        if let Some(v) = t.strip_suffix("usd") {
            return value(v, Some(Unit::Usd));
        }
        if let Some(v) = t.strip_suffix("tokens") {
            return value(v, Some(Unit::Tokens));
        }
        if t.ends_with(|c: char| c.is_ascii_alphabetic()) {
            return parse_duration(t).map(|value| RaiseTo::Value {
                value,
                unit: Some(Unit::Duration),
            });
        }
        value(t, None)
    }

    /// Whether the value can be read in a limit of `unit`: a percentage fits every limit,
    /// a bare number fits money, tokens and counts, a value with a unit fits that unit.
    pub(crate) fn fits(self, unit: Unit) -> bool {
        match self {
            RaiseTo::Percent(_) => true,
            RaiseTo::Value { unit: None, .. } => {
                matches!(unit, Unit::Usd | Unit::Tokens | Unit::Count)
            }
            RaiseTo::Value { unit: Some(u), .. } => u == unit,
        }
    }

    /// The value asked for, against a limit's compiled value (a percentage truncates).
    pub(crate) fn value(self, compiled: i64) -> Option<i64> {
        match self {
            RaiseTo::Percent(p) => {
                let v = i128::from(compiled) * i128::from(p) / (100 * i128::from(SCALE));
                i64::try_from(v).ok()
            }
            RaiseTo::Value { value, .. } => Some(value),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Approval {
    pub run_id: String,
    pub ts: i64,
    /// The `seq` of the override request approved.
    pub request: u64,
    pub actor: String,
    /// The approver's roles (in `lever serve`, its token's): an approval counts only from
    /// an actor the request's rule names.
    pub roles: Vec<String>,
    pub meta: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Deploy {
    pub ts: i64,
    pub artifact: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunEnd {
    pub run_id: String,
    pub ts: i64,
    pub meta: Option<serde_json::Value>,
}

/// A valid event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    RunStart(RunStart),
    Step(Step),
    Override(OverrideRequest),
    Approval(Approval),
    Deploy(Deploy),
    RunEnd(RunEnd),
}

impl Event {
    pub(crate) fn kind(&self) -> EventKind {
        match self {
            Event::RunStart(_) => EventKind::RunStart,
            Event::Step(_) => EventKind::Step,
            Event::Override(_) => EventKind::Override,
            Event::Approval(_) => EventKind::Approval,
            Event::Deploy(_) => EventKind::Deploy,
            Event::RunEnd(_) => EventKind::RunEnd,
        }
    }

    pub(crate) fn run_id(&self) -> Option<&str> {
        match self {
            Event::RunStart(e) => Some(&e.run_id),
            Event::Step(e) => Some(&e.run_id),
            Event::Override(e) => Some(&e.run_id),
            Event::Approval(e) => Some(&e.run_id),
            Event::RunEnd(e) => Some(&e.run_id),
            Event::Deploy(_) => None,
        }
    }

    pub(crate) fn ts(&self) -> i64 {
        match self {
            Event::RunStart(e) => e.ts,
            Event::Step(e) => e.ts,
            Event::Override(e) => e.ts,
            Event::Approval(e) => e.ts,
            Event::Deploy(e) => e.ts,
            Event::RunEnd(e) => e.ts,
        }
    }
}

/// `250ms`, `30s`, `5m`, `1h`, `1d` to nanoseconds.
pub(crate) fn parse_duration(text: &str) -> Option<i64> {
    let digits_end = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(digits_end);
    let per = match unit {
        "ms" => 1_000_000,
        "s" => SCALE,
        "m" => 60 * SCALE,
        "h" => 3_600 * SCALE,
        "d" => 86_400 * SCALE,
        _ => return None,
    };
    if digits.is_empty() {
        return None;
    }
    num::parse_decimal(digits, per).ok()
}

/// The event as evidence records it: normalized values (a step's `metrics` as read for
/// its run's program), without the prompt (whose storage the policies govern), with `meta`
/// as given.
pub(crate) fn evidence_json(e: &Event, metrics: &[i64]) -> serde_json::Value {
    use crate::base::format::{millis, money, timestamp, value};
    use serde_json::json;
    let (mut body, meta) = match e {
        Event::RunStart(s) => (
            json!({
                "type": "run_start", "run_id": s.run_id, "ts": timestamp(s.ts), "tenant": s.tenant, "agent": s.agent,
                "api_key": s.api_key, "human_actor": s.human_actor, "labels": s.labels,
            }),
            &s.meta,
        ),
        Event::Step(s) => (
            json!({
                "type": "step", "run_id": s.run_id, "ts": timestamp(s.ts),
                "input_tokens": value(Unit::Tokens, s.input_tokens), "output_tokens": value(Unit::Tokens, s.output_tokens),
                "cost": money(s.cost), "latency": millis(s.latency), "kind": s.kind, "model": s.model, "tool": s.tool,
                "pii": s.pii, "metrics": metrics.iter().map(|m| crate::base::num::Decimal(*m).to_string()).collect::<Vec<_>>(),
                "has_prompt": s.prompt.is_some(),
            }),
            &s.meta,
        ),
        Event::Override(o) => (
            json!({
                "type": "override", "run_id": o.run_id, "ts": timestamp(o.ts), "actor": o.actor, "roles": o.roles,
                "policy": o.policy, "kind": o.kind.name(), "limit": o.limit, "to": o.to.as_ref().map(|t| &t.text),
                "ttl": o.ttl.map(millis), "reason": o.reason, "approvals": o.approvals,
            }),
            &o.meta,
        ),
        Event::Approval(a) => (
            json!({"type": "approval", "run_id": a.run_id, "ts": timestamp(a.ts), "override": a.request, "actor": a.actor, "roles": a.roles}),
            &a.meta,
        ),
        Event::Deploy(d) => (
            json!({"type": "deploy", "ts": timestamp(d.ts), "artifact": d.artifact}),
            &None,
        ),
        Event::RunEnd(r) => (
            json!({"type": "run_end", "run_id": r.run_id, "ts": timestamp(r.ts)}),
            &r.meta,
        ),
    };
    if let (Event::Step(s), Some(map)) = (e, body.as_object_mut())
        && let Some(key) = &s.idempotency_key
    {
        map.insert("idempotency_key".into(), key.as_str().into());
    }
    if let (Some(meta), Some(map)) = (meta, body.as_object_mut()) {
        map.insert("meta".into(), meta.clone());
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(line: &str) -> (RejectCode, String) {
        let r = parse(line).unwrap_err();
        (r.code, r.detail)
    }

    #[test]
    fn numbers_are_read_from_their_text() {
        let e = parse(r#"{"type":"step","run_id":"r","ts":"2026-01-20T10:00:00Z","cost":0.1,"input_tokens":3,"latency_ms":840.5}"#).unwrap();
        let Event::Step(s) = e else { panic!() };
        assert_eq!(
            (s.cost, s.input_tokens, s.latency),
            (100_000_000, 3 * SCALE, 840_500_000)
        );
        assert_eq!(s.kind, "llm_call");
    }

    #[test]
    fn every_rejection_reason_of_the_reader() {
        let base = r#""run_id":"r","ts":"2026-01-20T10:00:00Z""#;
        assert_eq!(reject("not json").0, RejectCode::MalformedJson);
        assert_eq!(reject("[1]").0, RejectCode::MalformedJson);
        assert_eq!(reject(r#"{"run_id":"r"}"#).0, RejectCode::MissingField);
        assert_eq!(reject(r#"{"type":"launch"}"#).0, RejectCode::UnknownType);
        assert_eq!(
            reject(r#"{"type":"run_start","run_id":"r","ts":"2026-01-20T10:00:00Z"}"#).0,
            RejectCode::MissingField
        );
        assert_eq!(
            reject(&format!(
                r#"{{"type":"step",{base},"input_tokens":1200.0}}"#
            ))
            .0,
            RejectCode::InvalidField
        );
        assert_eq!(
            reject(&format!(r#"{{"type":"step",{base},"input_tokens":-1}}"#)).0,
            RejectCode::InvalidField
        );
        assert_eq!(
            reject(&format!(r#"{{"type":"step",{base},"cost":"-0.5"}}"#)).0,
            RejectCode::InvalidField
        );
        assert_eq!(
            reject(&format!(
                r#"{{"type":"step",{base},"cost":"0.1234567891"}}"#
            ))
            .0,
            RejectCode::InvalidField
        );
        assert_eq!(
            reject(&format!(r#"{{"type":"step",{base},"cost":"1e3"}}"#)).0,
            RejectCode::InvalidField
        );
        assert_eq!(
            reject(r#"{"type":"step","run_id":"r","ts":"yesterday"}"#).0,
            RejectCode::InvalidField
        );
        assert_eq!(
            reject(&format!(
                r#"{{"type":"step",{base},"latency_ms":1.0000001}}"#
            ))
            .0,
            RejectCode::InvalidField
        );
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30m"), Some(1_800 * SCALE));
        assert_eq!(parse_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("1.5h"), None);
    }
}
