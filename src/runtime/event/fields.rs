//! The fields each event type defines, and the suggestion given for a field it does not
//! (`unknown field "cost_usd"; did you mean "cost"?`).
//!
//! A field an event's type does not define is rejected rather than ignored: a misspelled
//! `cost` read as $0.00 would let spend slip past every limit.

use super::EventKind;

/// The fields an event type defines, `type` included.
pub(crate) fn defined(kind: EventKind) -> &'static [&'static str] {
    match kind {
        EventKind::RunStart => &[
            "type",
            "run_id",
            "ts",
            "tenant",
            "agent",
            "api_key",
            "human_actor",
            "labels",
            "meta",
        ],
        EventKind::Step => &[
            "type",
            "run_id",
            "ts",
            "input_tokens",
            "output_tokens",
            "cost",
            "latency_ms",
            "kind",
            "model",
            "tool",
            "pii",
            "metrics",
            "prompt",
            "idempotency_key",
            "meta",
        ],
        EventKind::Override => &[
            "type",
            "run_id",
            "ts",
            "actor",
            "roles",
            "policy",
            "kind",
            "limit",
            "to",
            "ttl",
            "reason",
            "approvals",
            "meta",
        ],
        EventKind::Approval => &["type", "run_id", "ts", "override", "actor", "roles", "meta"],
        EventKind::Deploy => &["type", "ts", "artifact"],
        EventKind::RunEnd => &["type", "run_id", "ts", "meta"],
    }
}

/// Names other agent frameworks use for a step's fields (OpenAI's and Anthropic's usage,
/// common cost and latency spellings), and the field Lever reads instead.
const FOREIGN: &[(&str, &str)] = &[
    ("prompt_tokens", "input_tokens"),
    ("completion_tokens", "output_tokens"),
    ("cost_usd", "cost"),
    ("usd", "cost"),
    ("price", "cost"),
    ("total_cost", "cost"),
    ("latency", "latency_ms"),
    ("duration_ms", "latency_ms"),
    ("elapsed_ms", "latency_ms"),
    ("labels", "meta"),
    ("metadata", "meta"),
];

/// Why a field is not read: `unknown field "x"`, with the closest defined field when one
/// is close enough to be a likely slip.
pub(crate) fn unknown_field(kind: EventKind, field: &str) -> String {
    let quoted = serde_json::Value::from(field).to_string();
    if kind == EventKind::Step && matches!(field, "usage" | "usage_metadata" | "total_tokens") {
        return format!(
            "unknown field {quoted}; give the usage's token counts as \"input_tokens\" and \"output_tokens\""
        );
    }
    match suggestion(kind, field) {
        Some(near) => format!("unknown field {quoted}; did you mean \"{near}\"?"),
        None => format!(
            "unknown field {quoted}; a {} defines {}; free-form data goes in \"meta\"",
            kind.name(),
            list(kind)
        ),
    }
}

fn list(kind: EventKind) -> String {
    defined(kind)
        .iter()
        .filter(|f| **f != "type")
        .map(|f| format!("\"{f}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The defined field a name most likely meant: a known foreign spelling, a field the name
/// extends (`cost_usd` → `cost`), or the nearest by edit distance when it is within a
/// third of the name's length.
pub(crate) fn suggestion(kind: EventKind, field: &str) -> Option<&'static str> {
    let fields = defined(kind);
    let lower = field.to_ascii_lowercase();
    if let Some((_, to)) = FOREIGN.iter().find(|(from, _)| *from == lower)
        && fields.contains(to)
    {
        return fields.iter().copied().find(|f| f == to);
    }
    let candidates = fields.iter().copied().filter(|f| *f != "type");
    let by_distance = candidates
        .clone()
        .map(|f| (strsim::damerau_levenshtein(&lower, f), f))
        .min_by_key(|(d, f)| (*d, *f));
    let limit = (lower.chars().count() / 3).max(1);
    if let Some((d, f)) = by_distance
        && d <= limit
    {
        return Some(f);
    }
    candidates
        .filter(|f| f.len() >= 3)
        .find(|f| lower.starts_with(&format!("{f}_")) || lower.ends_with(&format!("_{f}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_name_the_field_meant() {
        let s = |f| unknown_field(EventKind::Step, f);
        assert_eq!(
            s("cost_usd"),
            r#"unknown field "cost_usd"; did you mean "cost"?"#
        );
        assert_eq!(s("cots"), r#"unknown field "cots"; did you mean "cost"?"#);
        assert_eq!(
            s("prompt_tokens"),
            r#"unknown field "prompt_tokens"; did you mean "input_tokens"?"#
        );
        assert_eq!(
            s("inputTokens"),
            r#"unknown field "inputTokens"; did you mean "input_tokens"?"#
        );
        assert!(s("usage").contains("\"input_tokens\" and \"output_tokens\""));
        assert!(s("zzzzzz").contains("free-form data goes in \"meta\""));
        assert_eq!(
            unknown_field(EventKind::RunStart, "tennant"),
            r#"unknown field "tennant"; did you mean "tenant"?"#
        );
    }
}
