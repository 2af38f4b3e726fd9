//! Events in (DESIGN §3): one JSON object a line, validated field by field.
//!
//! Owns the JSON keys and their defaults. Numbers are read from their literal text, never
//! through a float: each line is parsed into raw values first. Validation runs in the
//! contract's order (JSON, `type`, required fields, field types and values); run checks
//! (`unknown_run`, `duplicate_run`, `run_ended`, `ts_backwards`) are the runtime's.

use super::format::parse_timestamp;
use crate::num::{self, DecimalError, SCALE};
use crate::syntax::ast::Unit;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventKind {
    RunStart,
    Step,
    Override,
    Approval,
    Deploy,
    RunEnd,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::RunStart => "run_start",
            EventKind::Step => "step",
            EventKind::Override => "override",
            EventKind::Approval => "approval",
            EventKind::Deploy => "deploy",
            EventKind::RunEnd => "run_end",
        }
    }

    fn from_name(name: &str) -> Option<EventKind> {
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
pub enum RejectCode {
    MalformedJson,
    UnknownType,
    MissingField,
    InvalidField,
    UnknownRun,
    DuplicateRun,
    RunEnded,
    TsBackwards,
    BadArtifact,
}

impl RejectCode {
    pub fn name(self) -> &'static str {
        match self {
            RejectCode::MalformedJson => "malformed_json",
            RejectCode::UnknownType => "unknown_type",
            RejectCode::MissingField => "missing_field",
            RejectCode::InvalidField => "invalid_field",
            RejectCode::UnknownRun => "unknown_run",
            RejectCode::DuplicateRun => "duplicate_run",
            RejectCode::RunEnded => "run_ended",
            RejectCode::TsBackwards => "ts_backwards",
            RejectCode::BadArtifact => "bad_artifact",
        }
    }
}

/// A rejected line: what could be read of it, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub code: RejectCode,
    pub detail: String,
    pub run_id: Option<String>,
    pub ts: Option<i64>,
    pub event: Option<EventKind>,
}

impl Rejection {
    /// `code: detail`, as a decision's `reason`.
    pub fn reason(&self) -> String {
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// `metrics` values in the order of the artifact's signals (0 when absent).
    pub metrics: Vec<i64>,
    pub prompt: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OverrideKind {
    Raise,
    Suspend,
    Resume,
}

impl OverrideKind {
    pub fn name(self) -> &'static str {
        match self {
            OverrideKind::Raise => "raise",
            OverrideKind::Suspend => "suspend",
            OverrideKind::Resume => "resume",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideRequest {
    pub run_id: String,
    pub ts: i64,
    pub actor: String,
    pub roles: Vec<String>,
    pub policy: String,
    pub kind: OverrideKind,
    pub limit: Option<String>,
    /// The requested value as written (`"8.00"`, `"150%"`), read against the limit's unit.
    pub to: Option<String>,
    /// Nanoseconds.
    pub ttl: Option<i64>,
    pub reason: Option<String>,
    pub approvals: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    pub run_id: String,
    pub ts: i64,
    /// The `seq` of the override request approved.
    pub request: u64,
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    pub ts: i64,
    pub artifact: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    pub run_id: String,
    pub ts: i64,
}

/// A valid event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    RunStart(RunStart),
    Step(Step),
    Override(OverrideRequest),
    Approval(Approval),
    Deploy(Deploy),
    RunEnd(RunEnd),
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::RunStart(_) => EventKind::RunStart,
            Event::Step(_) => EventKind::Step,
            Event::Override(_) => EventKind::Override,
            Event::Approval(_) => EventKind::Approval,
            Event::Deploy(_) => EventKind::Deploy,
            Event::RunEnd(_) => EventKind::RunEnd,
        }
    }

    pub fn run_id(&self) -> Option<&str> {
        match self {
            Event::RunStart(e) => Some(&e.run_id),
            Event::Step(e) => Some(&e.run_id),
            Event::Override(e) => Some(&e.run_id),
            Event::Approval(e) => Some(&e.run_id),
            Event::RunEnd(e) => Some(&e.run_id),
            Event::Deploy(_) => None,
        }
    }

    pub fn ts(&self) -> i64 {
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

/// Reads one line. `signals` gives, for a step's `run_id`, the custom step fields of the
/// program that judges that run, whose values are read from the step's `metrics` object.
pub fn parse<'s>(
    line: &str,
    signals: &dyn Fn(&str) -> &'s [(String, Unit)],
) -> Result<Event, Rejection> {
    let map: BTreeMap<String, Box<RawValue>> =
        serde_json::from_str(line).map_err(|e| Rejection {
            code: RejectCode::MalformedJson,
            detail: format!("not a JSON object ({e})"),
            run_id: None,
            ts: None,
            event: None,
        })?;
    let mut r = Reader {
        map,
        rejection: Rejection {
            code: RejectCode::MissingField,
            detail: String::new(),
            run_id: None,
            ts: None,
            event: None,
        },
    };
    // Read what can be read first, so that a rejection reports it.
    r.rejection.run_id = r.peek_string("run_id");
    r.rejection.ts = r.peek_string("ts").and_then(|t| parse_timestamp(&t));
    let kind_text = match r.map.get("type") {
        None => return Err(r.reject(RejectCode::MissingField, "`type` is required")),
        Some(raw) => serde_json::from_str::<String>(raw.get())
            .map_err(|_| r.reject(RejectCode::InvalidField, "`type` must be a string"))?,
    };
    let kind = EventKind::from_name(&kind_text).ok_or_else(|| {
        r.reject(
            RejectCode::UnknownType,
            &format!("unknown event type `{kind_text}`"),
        )
    })?;
    r.rejection.event = Some(kind);
    match kind {
        EventKind::RunStart => r.run_start().map(Event::RunStart),
        EventKind::Step => r.step(signals).map(Event::Step),
        EventKind::Override => r.override_request().map(Event::Override),
        EventKind::Approval => r.approval().map(Event::Approval),
        EventKind::Deploy => r.deploy().map(Event::Deploy),
        EventKind::RunEnd => r.run_end().map(Event::RunEnd),
    }
}

struct Reader {
    map: BTreeMap<String, Box<RawValue>>,
    rejection: Rejection,
}

/// A raw JSON value's text, with the quotes of a string removed (numbers may be given
/// as strings or numbers, and are read from this text either way).
fn number_text(raw: &RawValue) -> Option<String> {
    let text = raw.get();
    if text.starts_with('"') {
        return serde_json::from_str::<String>(text).ok();
    }
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
    plain.then(|| text.to_string())
}

impl Reader {
    fn reject(&self, code: RejectCode, detail: &str) -> Rejection {
        Rejection {
            code,
            detail: detail.to_string(),
            ..self.rejection.clone()
        }
    }

    fn peek_string(&self, key: &str) -> Option<String> {
        self.map
            .get(key)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
    }

    fn required<T>(&self, key: &str, value: Result<Option<T>, Rejection>) -> Result<T, Rejection> {
        value?.ok_or_else(|| self.reject(RejectCode::MissingField, &format!("`{key}` is required")))
    }

    fn string(&self, key: &str) -> Result<Option<String>, Rejection> {
        match self.map.get(key) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<String>(raw.get())
                .map(Some)
                .map_err(|_| {
                    self.reject(
                        RejectCode::InvalidField,
                        &format!("`{key}` must be a string"),
                    )
                }),
        }
    }

    fn string_list(&self, key: &str) -> Result<Vec<String>, Rejection> {
        match self.map.get(key) {
            None => Ok(Vec::new()),
            Some(raw) => serde_json::from_str::<Vec<String>>(raw.get()).map_err(|_| {
                self.reject(
                    RejectCode::InvalidField,
                    &format!("`{key}` must be an array of strings"),
                )
            }),
        }
    }

    fn timestamp(&self) -> Result<Option<i64>, Rejection> {
        match self.string("ts")? {
            None => Ok(None),
            Some(t) => parse_timestamp(&t).map(Some).ok_or_else(|| {
                self.reject(
                    RejectCode::InvalidField,
                    &format!("`ts` is not an RFC 3339 timestamp: {t:?}"),
                )
            }),
        }
    }

    /// A non-negative JSON integer token count.
    fn tokens(&self, key: &str) -> Result<i64, Rejection> {
        let Some(raw) = self.map.get(key) else {
            return Ok(0);
        };
        let text = raw.get();
        if !text.bytes().all(|b| b.is_ascii_digit() || b == b'-') || text.is_empty() {
            return Err(self.reject(
                RejectCode::InvalidField,
                &format!("`{key}` must be a JSON integer, found {text}"),
            ));
        }
        if text.starts_with('-') {
            return Err(self.reject(
                RejectCode::InvalidField,
                &format!("`{key}` must not be negative"),
            ));
        }
        num::parse_decimal(text, SCALE).map_err(|_| {
            self.reject(
                RejectCode::InvalidField,
                &format!("`{key}` is out of range"),
            )
        })
    }

    /// A non-negative decimal (string or number) scaled by `per_unit`.
    fn decimal(&self, key: &str, per_unit: i64, places: usize) -> Result<i64, Rejection> {
        let Some(raw) = self.map.get(key) else {
            return Ok(0);
        };
        let Some(text) = number_text(raw) else {
            return Err(self.reject(
                RejectCode::InvalidField,
                &format!("`{key}` must be a decimal, found {}", raw.get()),
            ));
        };
        if text.starts_with('-') {
            return Err(self.reject(
                RejectCode::InvalidField,
                &format!("`{key}` must not be negative"),
            ));
        }
        num::parse_decimal(&text, per_unit).map_err(|e| {
            let why = match e {
                DecimalError::TooManyDecimals => {
                    format!("`{key}` has more than {places} decimal places")
                }
                DecimalError::OutOfRange => format!("`{key}` is out of range"),
                DecimalError::Malformed => format!("`{key}` must be a decimal, found {text:?}"),
            };
            self.reject(RejectCode::InvalidField, &why)
        })
    }

    fn bool(&self, key: &str) -> Result<bool, Rejection> {
        match self.map.get(key) {
            None => Ok(false),
            Some(raw) => serde_json::from_str::<bool>(raw.get()).map_err(|_| {
                self.reject(
                    RejectCode::InvalidField,
                    &format!("`{key}` must be true or false"),
                )
            }),
        }
    }

    fn run_start(&self) -> Result<RunStart, Rejection> {
        let run_id = self.required("run_id", self.string("run_id"))?;
        let ts = self.required("ts", self.timestamp())?;
        let tenant = self.required("tenant", self.string("tenant"))?;
        let labels = match self.map.get("labels") {
            None => BTreeMap::new(),
            Some(raw) => {
                serde_json::from_str::<BTreeMap<String, String>>(raw.get()).map_err(|_| {
                    self.reject(
                        RejectCode::InvalidField,
                        "`labels` must be an object of strings",
                    )
                })?
            }
        };
        Ok(RunStart {
            run_id,
            ts,
            tenant,
            agent: self.string("agent")?.unwrap_or_default(),
            api_key: self.string("api_key")?.unwrap_or_default(),
            human_actor: self.string("human_actor")?.unwrap_or_default(),
            labels,
        })
    }

    fn step<'s>(&self, signals: &dyn Fn(&str) -> &'s [(String, Unit)]) -> Result<Step, Rejection> {
        let run_id = self.required("run_id", self.string("run_id"))?;
        let ts = self.required("ts", self.timestamp())?;
        let signals = signals(&run_id);
        Ok(Step {
            run_id,
            ts,
            input_tokens: self.tokens("input_tokens")?,
            output_tokens: self.tokens("output_tokens")?,
            cost: self.decimal("cost", SCALE, 9)?,
            latency: self.decimal("latency_ms", 1_000_000, 6)?,
            kind: self
                .string("kind")?
                .unwrap_or_else(|| "llm_call".to_string()),
            model: self.string("model")?.unwrap_or_default(),
            tool: self.string("tool")?.unwrap_or_default(),
            pii: self.bool("pii")?,
            metrics: self.metrics(signals)?,
            prompt: self.string("prompt")?,
        })
    }

    fn metrics(&self, signals: &[(String, Unit)]) -> Result<Vec<i64>, Rejection> {
        let map: BTreeMap<String, Box<RawValue>> = match self.map.get("metrics") {
            None => BTreeMap::new(),
            Some(raw) => serde_json::from_str(raw.get()).map_err(|_| {
                self.reject(RejectCode::InvalidField, "`metrics` must be an object")
            })?,
        };
        let sub = Reader {
            map,
            rejection: self.rejection.clone(),
        };
        signals
            .iter()
            .map(|(name, unit)| {
                let key = name.as_str();
                match unit {
                    Unit::Duration => sub.decimal(key, 1_000_000, 6),
                    Unit::Tokens => sub.tokens(key),
                    _ => sub.decimal(key, SCALE, 9),
                }
                .map_err(|mut r| {
                    r.detail = format!("metrics: {}", r.detail);
                    r
                })
            })
            .collect()
    }

    fn override_request(&self) -> Result<OverrideRequest, Rejection> {
        let run_id = self.required("run_id", self.string("run_id"))?;
        let ts = self.required("ts", self.timestamp())?;
        let actor = self.required("actor", self.string("actor"))?;
        let policy = self.required("policy", self.string("policy"))?;
        let kind_text = self.required("kind", self.string("kind"))?;
        let kind = match kind_text.as_str() {
            "raise" => OverrideKind::Raise,
            "suspend" => OverrideKind::Suspend,
            "resume" => OverrideKind::Resume,
            other => {
                return Err(self.reject(
                    RejectCode::InvalidField,
                    &format!("`kind` must be raise, suspend or resume, found {other:?}"),
                ));
            }
        };
        let limit = self.string("limit")?;
        let to = self.string("to")?;
        if kind == OverrideKind::Raise {
            if limit.is_none() {
                return Err(
                    self.reject(RejectCode::MissingField, "`limit` is required for a raise")
                );
            }
            if to.is_none() {
                return Err(self.reject(RejectCode::MissingField, "`to` is required for a raise"));
            }
        }
        let ttl = match self.string("ttl")? {
            None => None,
            Some(t) => Some(parse_duration(&t).ok_or_else(|| {
                self.reject(
                    RejectCode::InvalidField,
                    &format!("`ttl` is not a duration such as \"30m\": {t:?}"),
                )
            })?),
        };
        Ok(OverrideRequest {
            run_id,
            ts,
            actor,
            roles: self.string_list("roles")?,
            policy,
            kind,
            limit,
            to,
            ttl,
            reason: self.string("reason")?,
            approvals: self.string_list("approvals")?,
        })
    }

    fn approval(&self) -> Result<Approval, Rejection> {
        let run_id = self.required("run_id", self.string("run_id"))?;
        let ts = self.required("ts", self.timestamp())?;
        let request = match self.map.get("override") {
            None => return Err(self.reject(RejectCode::MissingField, "`override` is required")),
            Some(raw) => serde_json::from_str::<u64>(raw.get()).map_err(|_| {
                self.reject(
                    RejectCode::InvalidField,
                    "`override` must be the request's seq, a positive integer",
                )
            })?,
        };
        let actor = self.required("actor", self.string("actor"))?;
        Ok(Approval {
            run_id,
            ts,
            request,
            actor,
        })
    }

    fn deploy(&self) -> Result<Deploy, Rejection> {
        let ts = self.required("ts", self.timestamp())?;
        let artifact = self.required("artifact", self.string("artifact"))?;
        Ok(Deploy { ts, artifact })
    }

    fn run_end(&self) -> Result<RunEnd, Rejection> {
        let run_id = self.required("run_id", self.string("run_id"))?;
        let ts = self.required("ts", self.timestamp())?;
        Ok(RunEnd { run_id, ts })
    }
}

/// `250ms`, `30s`, `5m`, `1h`, `1d` to nanoseconds.
pub fn parse_duration(text: &str) -> Option<i64> {
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

/// The event as evidence records it: normalized values, without the prompt (whose
/// storage the policies govern, DESIGN §3).
pub fn evidence_json(e: &Event) -> serde_json::Value {
    use super::format::{millis, money, timestamp, value};
    use serde_json::json;
    match e {
        Event::RunStart(s) => json!({
            "type": "run_start", "run_id": s.run_id, "ts": timestamp(s.ts), "tenant": s.tenant, "agent": s.agent,
            "api_key": s.api_key, "human_actor": s.human_actor, "labels": s.labels,
        }),
        Event::Step(s) => json!({
            "type": "step", "run_id": s.run_id, "ts": timestamp(s.ts),
            "input_tokens": value(Unit::Tokens, s.input_tokens), "output_tokens": value(Unit::Tokens, s.output_tokens),
            "cost": money(s.cost), "latency": millis(s.latency), "kind": s.kind, "model": s.model, "tool": s.tool,
            "pii": s.pii, "metrics": s.metrics.iter().map(|m| crate::num::Decimal(*m).to_string()).collect::<Vec<_>>(),
            "has_prompt": s.prompt.is_some(),
        }),
        Event::Override(o) => json!({
            "type": "override", "run_id": o.run_id, "ts": timestamp(o.ts), "actor": o.actor, "roles": o.roles,
            "policy": o.policy, "kind": o.kind.name(), "limit": o.limit, "to": o.to, "ttl": o.ttl.map(millis),
            "reason": o.reason, "approvals": o.approvals,
        }),
        Event::Approval(a) => {
            json!({"type": "approval", "run_id": a.run_id, "ts": timestamp(a.ts), "override": a.request, "actor": a.actor})
        }
        Event::Deploy(d) => {
            json!({"type": "deploy", "ts": timestamp(d.ts), "artifact": d.artifact})
        }
        Event::RunEnd(r) => json!({"type": "run_end", "run_id": r.run_id, "ts": timestamp(r.ts)}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(line: &str) -> (RejectCode, String) {
        let r = parse(line, &|_| &[]).unwrap_err();
        (r.code, r.detail)
    }

    #[test]
    fn numbers_are_read_from_their_text() {
        let e = parse(r#"{"type":"step","run_id":"r","ts":"2026-01-20T10:00:00Z","cost":0.1,"input_tokens":3,"latency_ms":840.5}"#, &|_| &[]).unwrap();
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
