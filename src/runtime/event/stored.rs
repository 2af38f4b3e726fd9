//! Reading an event back from its evidence: a decision record's `input` (what
//! [`evidence_json`](super::evidence_json) wrote) is the event, with a step's metrics
//! already read for its run's program. Rebuilding a run from its chain judges these again.

use super::{
    Approval, Event, OverrideKind, OverrideRequest, RaiseTarget, RaiseTo, RunEnd, RunStart, Step,
};
use crate::base::format::parse_timestamp;
use crate::base::num::{self, SCALE};
use serde_json::Value;
use std::collections::BTreeMap;

/// The event a decision record's `input` holds, and a step's metrics as read when it was
/// judged. `prompt` is the decision's stored prompt: a prompt that was not stored is given
/// back empty (its storage was decided by its presence, never its text).
pub(crate) fn from_evidence(
    input: &Value,
    prompt: Option<&str>,
) -> Result<(Event, Vec<i64>), String> {
    let f = Fields(input);
    let event = match f.str("type")? {
        "run_start" => Event::RunStart(RunStart {
            run_id: f.string("run_id")?,
            ts: f.ts()?,
            tenant: f.string("tenant")?,
            agent: f.string("agent")?,
            api_key: f.string("api_key")?,
            human_actor: f.string("human_actor")?,
            labels: f.labels()?,
            meta: f.meta(),
        }),
        "step" => return step(&f, prompt),
        "override" => Event::Override(OverrideRequest {
            run_id: f.string("run_id")?,
            ts: f.ts()?,
            actor: f.string("actor")?,
            roles: f.strings("roles")?,
            policy: f.string("policy")?,
            kind: match f.str("kind")? {
                "raise" => OverrideKind::Raise,
                "suspend" => OverrideKind::Suspend,
                "resume" => OverrideKind::Resume,
                other => return Err(format!("an override of kind {other:?}")),
            },
            limit: f.optional("limit")?,
            to: match f.optional("to")? {
                Some(text) => Some(RaiseTarget {
                    to: RaiseTo::parse(&text).ok_or(format!("a raise to {text:?}"))?,
                    text,
                }),
                None => None,
            },
            ttl: f.optional("ttl")?.map(|t| millis(&t)).transpose()?,
            reason: f.optional("reason")?,
            approvals: f.strings("approvals")?,
            meta: f.meta(),
        }),
        "approval" => Event::Approval(Approval {
            run_id: f.string("run_id")?,
            ts: f.ts()?,
            request: f
                .get("override")?
                .as_u64()
                .ok_or("an approval's override is not a seq")?,
            actor: f.string("actor")?,
            roles: f.strings("roles")?,
            meta: f.meta(),
        }),
        "run_end" => Event::RunEnd(RunEnd {
            run_id: f.string("run_id")?,
            ts: f.ts()?,
            meta: f.meta(),
        }),
        other => return Err(format!("an input of type {other:?}")),
    };
    Ok((event, Vec::new()))
}

fn step(f: &Fields, prompt: Option<&str>) -> Result<(Event, Vec<i64>), String> {
    let decimal = |name: &str| -> Result<i64, String> {
        let text = f.str(name)?;
        signed(text, SCALE).ok_or(format!("{name} {text:?}"))
    };
    let metrics = match f.get("metrics")? {
        Value::Array(values) => values
            .iter()
            .map(|v| {
                v.as_str()
                    .and_then(|t| signed(t, SCALE))
                    .ok_or(format!("a metric {v}"))
            })
            .collect::<Result<Vec<i64>, String>>()?,
        other => return Err(format!("metrics {other}")),
    };
    let has_prompt = f.get("has_prompt")?.as_bool().unwrap_or(false);
    let step = Step {
        run_id: f.string("run_id")?,
        ts: f.ts()?,
        input_tokens: decimal("input_tokens")?,
        output_tokens: decimal("output_tokens")?,
        cost: decimal("cost")?,
        latency: millis(f.str("latency")?)?,
        kind: f.string("kind")?,
        model: f.string("model")?,
        tool: f.string("tool")?,
        pii: f.get("pii")?.as_bool().ok_or("pii is not a boolean")?,
        metrics: super::Metrics::default(),
        prompt: has_prompt.then(|| prompt.unwrap_or_default().to_string()),
        idempotency_key: f.optional("idempotency_key")?,
        meta: f.meta(),
    };
    Ok((Event::Step(step), metrics))
}

/// A decimal with an optional sign, in 10⁻⁹ units of `per`.
fn signed(text: &str, per: i64) -> Option<i64> {
    num::parse_decimal(text, per).ok()
}

/// `840.5ms` (as [`crate::base::format::millis`] writes it) to nanoseconds.
fn millis(text: &str) -> Result<i64, String> {
    text.strip_suffix("ms")
        .and_then(|t| signed(t, 1_000_000))
        .ok_or(format!("a duration {text:?}"))
}

struct Fields<'v>(&'v Value);

impl Fields<'_> {
    fn get(&self, name: &str) -> Result<&Value, String> {
        self.0.get(name).ok_or(format!("no {name}"))
    }

    fn str(&self, name: &str) -> Result<&str, String> {
        self.get(name)?
            .as_str()
            .ok_or(format!("{name} is not a string"))
    }

    fn string(&self, name: &str) -> Result<String, String> {
        self.str(name).map(str::to_string)
    }

    fn optional(&self, name: &str) -> Result<Option<String>, String> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("{name} {other}")),
        }
    }

    fn strings(&self, name: &str) -> Result<Vec<String>, String> {
        serde_json::from_value(self.get(name)?.clone()).map_err(|e| format!("{name}: {e}"))
    }

    fn labels(&self) -> Result<BTreeMap<String, String>, String> {
        serde_json::from_value(self.get("labels")?.clone()).map_err(|e| format!("labels: {e}"))
    }

    fn ts(&self) -> Result<i64, String> {
        let text = self.str("ts")?;
        parse_timestamp(text).ok_or(format!("a timestamp {text:?}"))
    }

    fn meta(&self) -> Option<Value> {
        self.0.get("meta").cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event type read back from its evidence is the event judged.
    #[test]
    fn an_event_read_back_from_its_evidence_is_the_event() {
        let lines = [
            r#"{"type":"run_start","run_id":"r","ts":"2026-01-20T10:00:00Z","tenant":"acme","agent":"a","labels":{"team":"x"},"meta":{"k":[1]}}"#,
            r#"{"type":"step","run_id":"r","ts":"2026-01-20T10:00:00.5Z","cost":"0.0125","input_tokens":12,"output_tokens":3,"latency_ms":840.5,"tool":"search","pii":true,"prompt":"hello"}"#,
            r#"{"type":"override","run_id":"r","ts":"2026-01-20T10:00:01Z","actor":"sam","roles":["sre"],"policy":"p","kind":"raise","limit":"cost","to":"150%","ttl":"30m","reason":"incident","approvals":["kim"]}"#,
            r#"{"type":"override","run_id":"r","ts":"2026-01-20T10:00:01Z","actor":"sam","policy":"p","kind":"suspend"}"#,
            r#"{"type":"approval","run_id":"r","ts":"2026-01-20T10:00:02Z","override":3,"actor":"kim","roles":["lead"]}"#,
            r#"{"type":"run_end","run_id":"r","ts":"2026-01-20T10:00:03Z"}"#,
        ];
        for line in lines {
            let event = super::super::parse(line).unwrap();
            let metrics = [1_500_000_000, -2 * SCALE];
            let stored = super::super::evidence_json(&event, &metrics);
            let prompt = match &event {
                Event::Step(s) => s.prompt.as_deref(),
                _ => None,
            };
            let (back, read) = from_evidence(&stored, prompt).unwrap();
            let mut expected = event.clone();
            if let Event::Step(s) = &mut expected {
                s.metrics = super::super::Metrics::default();
                assert_eq!(read, metrics, "{line}");
            }
            assert_eq!(back, expected, "{line}");
            assert_eq!(super::super::evidence_json(&back, &read), stored, "{line}");
        }
    }

    #[test]
    fn a_prompt_not_stored_comes_back_empty_and_present() {
        let line = r#"{"type":"step","run_id":"r","ts":"2026-01-20T10:00:00Z","prompt":"secret"}"#;
        let event = super::super::parse(line).unwrap();
        let stored = super::super::evidence_json(&event, &[]);
        let (Event::Step(s), _) = from_evidence(&stored, None).unwrap() else {
            panic!()
        };
        assert_eq!(s.prompt.as_deref(), Some(""));
    }
}
