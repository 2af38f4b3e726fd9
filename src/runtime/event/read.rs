//! Reading one event line: JSON, `type`, required fields, defined fields, then each field's
//! type and value, in that order; the first failure is the line's rejection.
//!
//! Every number is read from its JSON text. Token counts and `latency_ms` must be JSON
//! numbers; only money (and money-valued metrics) may also be written as a decimal string.

use super::fields;
use super::{
    Approval, Deploy, Event, EventKind, Metric, Metrics, OverrideKind, OverrideRequest,
    RaiseTarget, RaiseTo, RejectCode, Rejection, RunEnd, RunStart, Step, parse_duration,
};
use crate::base::format::parse_timestamp;
use crate::base::lang::Unit;
use crate::base::num::{self, DecimalError, SCALE};
use crate::compile::bytecode::Program;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// The largest `meta` object, as JSON text.
pub(crate) const META_LIMIT: usize = 4096;

/// The longest run id, in characters.
pub(crate) const MAX_RUN_ID: usize = 256;

/// A JSON object whose duplicate keys are refused: JSON readers disagree on which of two
/// `"cost"` fields counts, so no reader of Lever's input may be asked to choose.
pub(crate) struct Unique<V>(pub BTreeMap<String, V>);

/// The message of a duplicate key, as serde reports it.
const DUPLICATE: &str = "duplicate key ";

impl<'de, V: serde::Deserialize<'de>> serde::Deserialize<'de> for Unique<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: serde::Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = Unique<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Unique<V>, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((key, value)) = map.next_entry::<String, V>()? {
                    if out.contains_key(&key) {
                        return Err(serde::de::Error::custom(format!("{DUPLICATE}{key:?}")));
                    }
                    out.insert(key, value);
                }
                Ok(Unique(out))
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

/// Reads a JSON object's fields, each with its text kept; a duplicate key is named.
pub(crate) fn object_fields(text: &str) -> Result<BTreeMap<String, Box<RawValue>>, (bool, String)> {
    serde_json::from_str::<Unique<Box<RawValue>>>(text)
        .map(|u| u.0)
        .map_err(|e| {
            let why = e.to_string();
            match why.strip_prefix(DUPLICATE) {
                Some(rest) => (
                    true,
                    format!(
                        "{DUPLICATE}{}",
                        rest.split(" at line").next().unwrap_or(rest)
                    ),
                ),
                None => (false, why),
            }
        })
}

/// A line with a duplicate key: rejected, with what can still be read of it (its run,
/// type and time, as the last of each) so that it is judged against its run.
fn duplicate_key(line: &str, why: String) -> Rejection {
    let lenient: BTreeMap<String, Box<RawValue>> = serde_json::from_str(line).unwrap_or_default();
    let text = |key: &str| {
        lenient
            .get(key)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
    };
    Rejection {
        code: RejectCode::InvalidField,
        detail: why,
        run_id: text("run_id"),
        ts: text("ts").and_then(|t| parse_timestamp(&t)),
        event: text("type").and_then(|t| EventKind::from_name(&t)),
    }
}

/// Reads one line. A step's `metrics` and a raise's `to` are read against the program
/// that judges the run later ([`read_metrics`], [`check_raise`]).
pub(crate) fn parse(line: &str) -> Result<Event, Rejection> {
    let map = object_fields(line).map_err(|(duplicate, why)| match duplicate {
        true => duplicate_key(line, why),
        false => Rejection {
            code: RejectCode::MalformedJson,
            detail: format!("not a JSON object ({why})"),
            run_id: None,
            ts: None,
            event: None,
        },
    })?;
    from_fields(map)
}

/// Reads an event from a JSON object's fields, each with its text (a request body, with
/// the `type` and `run_id` its route gives).
pub(crate) fn from_fields(map: BTreeMap<String, Box<RawValue>>) -> Result<Event, Rejection> {
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
        EventKind::Step => r.step().map(Event::Step),
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

/// How a number field may be written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Written {
    /// A JSON number only.
    Number,
    /// A JSON number or a decimal string (money).
    NumberOrString,
}

/// A raw JSON value's text, with the quotes of a string removed where strings are allowed:
/// numbers are read from this text either way.
fn number_text(raw: &RawValue, written: Written) -> Option<String> {
    let text = raw.get();
    if text.starts_with('"') {
        let inner = (written == Written::NumberOrString)
            .then(|| serde_json::from_str::<String>(text).ok())
            .flatten()?;
        let decimal = inner
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-');
        return decimal.then_some(inner);
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

    fn invalid(&self, detail: &str) -> Rejection {
        self.reject(RejectCode::InvalidField, detail)
    }

    fn peek_string(&self, key: &str) -> Option<String> {
        self.map
            .get(key)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
    }

    /// A required field's value; when it is missing and the line has a field that looks
    /// like a misspelling of it, the rejection says so.
    fn required<T>(&self, key: &str, value: Result<Option<T>, Rejection>) -> Result<T, Rejection> {
        value?.ok_or_else(|| {
            let kind = self.rejection.event;
            let misspelled = self.map.keys().find(|k| {
                kind.is_some_and(|kind| fields::suggestion(kind, k) == Some(key))
                    && !kind.is_some_and(|kind| fields::defined(kind).contains(&k.as_str()))
            });
            let detail = match misspelled {
                Some(k) => {
                    format!("`{key}` is required; the line has {k:?}: did you mean \"{key}\"?")
                }
                None => format!("`{key}` is required"),
            };
            self.reject(RejectCode::MissingField, &detail)
        })
    }

    /// The run id and timestamp every run event requires.
    fn run_head(&self) -> Result<(String, i64), Rejection> {
        let run_id = self.required("run_id", self.string("run_id"))?;
        let ts = self.required("ts", self.timestamp())?;
        let length = run_id.chars().count();
        if !(1..=MAX_RUN_ID).contains(&length) || run_id.chars().any(char::is_control) {
            return Err(self.invalid(&format!(
                "`run_id` must be 1 to {MAX_RUN_ID} printable characters (it has {length})"
            )));
        }
        Ok((run_id, ts))
    }

    /// Rejects the first field (in key order) that `kind` does not define.
    fn defined_only(&self, kind: EventKind) -> Result<(), Rejection> {
        let defined = fields::defined(kind);
        match self.map.keys().find(|k| !defined.contains(&k.as_str())) {
            Some(unknown) => Err(self.invalid(&fields::unknown_field(kind, unknown))),
            None => Ok(()),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, Rejection> {
        match self.map.get(key) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<String>(raw.get())
                .map(Some)
                .map_err(|_| self.invalid(&format!("`{key}` must be a string"))),
        }
    }

    /// A step's `idempotency_key`: 1 to 255 printable ASCII characters.
    fn idempotency_key(&self) -> Result<Option<String>, Rejection> {
        let key = self.string("idempotency_key")?;
        match &key {
            Some(k)
                if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Err(self.invalid(
                    "`idempotency_key` must be 1 to 255 printable ASCII characters without spaces",
                ))
            }
            _ => Ok(key),
        }
    }

    fn string_list(&self, key: &str) -> Result<Vec<String>, Rejection> {
        match self.map.get(key) {
            None => Ok(Vec::new()),
            Some(raw) => serde_json::from_str::<Vec<String>>(raw.get())
                .map_err(|_| self.invalid(&format!("`{key}` must be an array of strings"))),
        }
    }

    fn timestamp(&self) -> Result<Option<i64>, Rejection> {
        let Some(t) = self.string("ts")? else {
            return Ok(None);
        };
        if let Some(ns) = parse_timestamp(&t) {
            return Ok(Some(ns));
        }
        let rfc3339 = &time::format_description::well_known::Rfc3339;
        Err(
            self.invalid(&match time::OffsetDateTime::parse(&t, rfc3339) {
                Ok(_) => format!(
                    "`ts` {t:?} is out of range: timestamps run from 1677-09-21 to 2262-04-11"
                ),
                Err(_) => format!("`ts` is not an RFC 3339 timestamp: {t:?}"),
            }),
        )
    }

    /// `meta`: an object of at most [`META_LIMIT`] bytes of JSON, stored and never read.
    fn meta(&self) -> Result<Option<serde_json::Value>, Rejection> {
        let Some(raw) = self.map.get("meta") else {
            return Ok(None);
        };
        if raw.get().len() > META_LIMIT {
            return Err(self.invalid(&format!(
                "`meta` is {} bytes of JSON, more than {META_LIMIT}",
                raw.get().len()
            )));
        }
        match serde_json::from_str::<serde_json::Value>(raw.get()) {
            Ok(v @ serde_json::Value::Object(_)) => Ok(Some(v)),
            _ => Err(self.invalid("`meta` must be an object")),
        }
    }

    /// A non-negative JSON integer token count.
    fn tokens(&self, key: &str) -> Result<i64, Rejection> {
        let Some(raw) = self.map.get(key) else {
            return Ok(0);
        };
        let text = raw.get();
        if !text.bytes().all(|b| b.is_ascii_digit() || b == b'-') || text.is_empty() {
            return Err(self.invalid(&format!("`{key}` must be a JSON integer, found {text}")));
        }
        if text.starts_with('-') {
            return Err(self.invalid(&format!("`{key}` must not be negative")));
        }
        num::parse_decimal(text, SCALE)
            .map_err(|_| self.invalid(&format!("`{key}` is out of range")))
    }

    /// A non-negative decimal scaled by `per_unit`, with at most `places` decimals.
    fn decimal(
        &self,
        key: &str,
        per_unit: i64,
        places: usize,
        written: Written,
    ) -> Result<i64, Rejection> {
        let Some(raw) = self.map.get(key) else {
            return Ok(0);
        };
        let Some(text) = number_text(raw, written) else {
            let what = match written {
                Written::Number => "a JSON number",
                Written::NumberOrString => "a decimal",
            };
            return Err(self.invalid(&format!("`{key}` must be {what}, found {}", raw.get())));
        };
        if text.starts_with('-') {
            return Err(self.invalid(&format!("`{key}` must not be negative")));
        }
        num::parse_decimal(&text, per_unit).map_err(|e| {
            self.invalid(&match e {
                DecimalError::TooManyDecimals => {
                    format!("`{key}` has more than {places} decimal places")
                }
                DecimalError::OutOfRange => format!("`{key}` is out of range"),
                DecimalError::Malformed => format!("`{key}` must be a decimal, found {text:?}"),
            })
        })
    }

    fn bool(&self, key: &str) -> Result<bool, Rejection> {
        match self.map.get(key) {
            None => Ok(false),
            Some(raw) => serde_json::from_str::<bool>(raw.get())
                .map_err(|_| self.invalid(&format!("`{key}` must be true or false"))),
        }
    }

    fn run_start(&self) -> Result<RunStart, Rejection> {
        let (run_id, ts) = self.run_head()?;
        let tenant = self.required("tenant", self.string("tenant"))?;
        self.defined_only(EventKind::RunStart)?;
        let labels = match self.map.get("labels") {
            None => BTreeMap::new(),
            Some(raw) => match serde_json::from_str::<Unique<String>>(raw.get()) {
                Ok(labels) => labels.0,
                Err(e) if e.to_string().starts_with(DUPLICATE) => {
                    return Err(self.invalid(&format!(
                        "`labels` has a {}",
                        e.to_string().split(" at line").next().unwrap_or_default()
                    )));
                }
                Err(_) => return Err(self.invalid("`labels` must be an object of strings")),
            },
        };
        Ok(RunStart {
            run_id,
            ts,
            tenant,
            agent: self.string("agent")?.unwrap_or_default(),
            api_key: self.string("api_key")?.unwrap_or_default(),
            human_actor: self.string("human_actor")?.unwrap_or_default(),
            labels,
            meta: self.meta()?,
        })
    }

    fn step(&self) -> Result<Step, Rejection> {
        let (run_id, ts) = self.run_head()?;
        self.defined_only(EventKind::Step)?;
        Ok(Step {
            input_tokens: self.tokens("input_tokens")?,
            output_tokens: self.tokens("output_tokens")?,
            cost: self.decimal("cost", SCALE, 9, Written::NumberOrString)?,
            latency: self.decimal("latency_ms", 1_000_000, 6, Written::Number)?,
            kind: self
                .string("kind")?
                .unwrap_or_else(|| "llm_call".to_string()),
            model: self.string("model")?.unwrap_or_default(),
            tool: self.string("tool")?.unwrap_or_default(),
            pii: self.bool("pii")?,
            metrics: self.metrics()?,
            prompt: self.string("prompt")?,
            idempotency_key: self.idempotency_key()?,
            meta: self.meta()?,
            run_id,
            ts,
        })
    }

    /// `metrics`: an object, each value kept as written.
    fn metrics(&self) -> Result<Metrics, Rejection> {
        let map = match self.map.get("metrics") {
            None => BTreeMap::new(),
            Some(raw) => object_fields(raw.get()).map_err(|(duplicate, why)| match duplicate {
                true => self.invalid(&format!("`metrics` has a {why}")),
                false => self.invalid("`metrics` must be an object"),
            })?,
        };
        Ok(Metrics(
            map.into_iter().map(|(k, v)| (k, Metric(v))).collect(),
        ))
    }

    /// The declared signals' values from `metrics` (0 when absent); keys no signal of the
    /// program declares are not read.
    fn signal_values(&self, signals: &[(String, Unit)]) -> Result<Vec<i64>, Rejection> {
        signals
            .iter()
            .map(|(name, unit)| {
                let key = name.as_str();
                match unit {
                    Unit::Duration => self.decimal(key, 1_000_000, 6, Written::Number),
                    Unit::Tokens => self.tokens(key),
                    Unit::Usd => self.decimal(key, SCALE, 9, Written::NumberOrString),
                    _ => self.decimal(key, SCALE, 9, Written::Number),
                }
                .map_err(|mut r| {
                    r.detail = format!("metrics: {}", r.detail);
                    r
                })
            })
            .collect()
    }

    fn override_kind(&self) -> Result<OverrideKind, Rejection> {
        let text = self.required("kind", self.string("kind"))?;
        match text.as_str() {
            "raise" => Ok(OverrideKind::Raise),
            "suspend" => Ok(OverrideKind::Suspend),
            "resume" => Ok(OverrideKind::Resume),
            other => Err(self.invalid(&format!(
                "`kind` must be raise, suspend or resume, found {other:?}"
            ))),
        }
    }

    fn override_request(&self) -> Result<OverrideRequest, Rejection> {
        let (run_id, ts) = self.run_head()?;
        let actor = self.required("actor", self.string("actor"))?;
        let policy = self.required("policy", self.string("policy"))?;
        let kind = self.override_kind()?;
        let limit = self.string("limit")?;
        let to_text = self.string("to")?;
        if kind == OverrideKind::Raise {
            if limit.is_none() {
                return Err(
                    self.reject(RejectCode::MissingField, "`limit` is required for a raise")
                );
            }
            if to_text.is_none() {
                return Err(self.reject(RejectCode::MissingField, "`to` is required for a raise"));
            }
        }
        self.defined_only(EventKind::Override)?;
        let to = match to_text {
            None => None,
            Some(text) => Some(self.raise_target(text)?),
        };
        let ttl = match self.string("ttl")? {
            None => None,
            Some(t) => Some(parse_duration(&t).ok_or_else(|| {
                self.invalid(&format!("`ttl` is not a duration such as \"30m\": {t:?}"))
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
            meta: self.meta()?,
        })
    }

    /// A raise's `to`: one of the accepted forms.
    fn raise_target(&self, text: String) -> Result<RaiseTarget, Rejection> {
        let Some(to) = RaiseTo::parse(&text) else {
            return Err(self.invalid(&format!(
                "`to` {text:?} is not a value such as \"8.00\", \"$8.00\", \"2000 tokens\", \"90s\" or \"150%\""
            )));
        };
        Ok(RaiseTarget { text, to })
    }

    fn approval(&self) -> Result<Approval, Rejection> {
        let (run_id, ts) = self.run_head()?;
        let request = match self.map.get("override") {
            None => return Err(self.reject(RejectCode::MissingField, "`override` is required")),
            Some(raw) => serde_json::from_str::<u64>(raw.get()).map_err(|_| {
                self.invalid("`override` must be the request's seq, a positive integer")
            })?,
        };
        let actor = self.required("actor", self.string("actor"))?;
        self.defined_only(EventKind::Approval)?;
        Ok(Approval {
            run_id,
            ts,
            request,
            actor,
            roles: self.string_list("roles")?,
            meta: self.meta()?,
        })
    }

    fn deploy(&self) -> Result<Deploy, Rejection> {
        let ts = self.required("ts", self.timestamp())?;
        let artifact = self.required("artifact", self.string("artifact"))?;
        self.defined_only(EventKind::Deploy)?;
        Ok(Deploy { ts, artifact })
    }

    fn run_end(&self) -> Result<RunEnd, Rejection> {
        let (run_id, ts) = self.run_head()?;
        self.defined_only(EventKind::RunEnd)?;
        Ok(RunEnd {
            run_id,
            ts,
            meta: self.meta()?,
        })
    }
}

/// A step's `metrics` read for the signals of the program that judges its run: each
/// declared signal's value in the signal's unit (0 when absent), in declaration order.
pub(crate) fn read_metrics(step: &Step, program: Option<&Program>) -> Result<Vec<i64>, Rejection> {
    let signals = program.map_or(&[][..], |p| &p.signals[..]);
    if signals.is_empty() {
        return Ok(Vec::new());
    }
    let reader = Reader {
        map: step
            .metrics
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.0.clone()))
            .collect(),
        rejection: Rejection {
            code: RejectCode::InvalidField,
            detail: String::new(),
            run_id: Some(step.run_id.clone()),
            ts: Some(step.ts),
            event: Some(EventKind::Step),
        },
    };
    reader.signal_values(signals)
}
