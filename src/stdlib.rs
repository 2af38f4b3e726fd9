//! The standard library, embedded in the binary so that `import std.llm` works anywhere.
//!
//! Owns the stdlib sources and the table of event fields an `extern` may bind (the names
//! and units the event reader provides, DESIGN §3). Must not know how fields are read.

use crate::base::lang::Unit;

/// The implicit prelude's module name.
pub(crate) const PRELUDE: &str = "std.prelude";

/// Every embedded module: (qualified name, path as stored in artifacts, source).
pub(crate) const MODULES: &[(&str, &str, &str)] = &[
    (
        PRELUDE,
        "stdlib/std/prelude.policy",
        include_str!("../stdlib/std/prelude.policy"),
    ),
    (
        "std.llm",
        "stdlib/std/llm.policy",
        include_str!("../stdlib/std/llm.policy"),
    ),
];

/// The embedded module by qualified name.
pub(crate) fn module(name: &str) -> Option<(&'static str, &'static str)> {
    MODULES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, path, text)| (*path, *text))
}

/// Fields the runtime's event reader provides, with their units: the only names an
/// `extern` may declare.
pub(crate) const EVENT_FIELDS: &[(&str, Unit)] = &[
    ("step.input_tokens", Unit::Tokens),
    ("step.output_tokens", Unit::Tokens),
    ("step.cost", Unit::Usd),
    ("step.latency", Unit::Duration),
    ("step.ts", Unit::Timestamp),
    ("step.kind", Unit::String),
    ("step.model", Unit::String),
    ("step.tool", Unit::String),
    ("step.pii", Unit::Bool),
    ("run.tenant", Unit::String),
    ("run.agent", Unit::String),
    ("run.api_key", Unit::String),
    ("run.human_actor", Unit::String),
    ("run.labels", Unit::Map),
];

/// The unit of an event field the runtime provides.
pub(crate) fn event_field(name: &str) -> Option<Unit> {
    EVENT_FIELDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, u)| *u)
}
