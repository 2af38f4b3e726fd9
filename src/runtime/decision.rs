//! Decisions out (DESIGN §4): one per input event, fields in the contract's order.

use serde::{Serialize, Serializer};
use std::sync::Arc;

fn rfc3339<S: Serializer>(ts: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ts {
        Some(t) => s.serialize_str(&crate::base::format::timestamp(*t)),
        None => s.serialize_none(),
    }
}

/// A decision's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Continue,
    Pause,
    Stop,
    Kill,
    Refused,
    Rejected,
}

impl Action {
    /// As decisions print it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Action::Continue => "continue",
            Action::Pause => "pause",
            Action::Stop => "stop",
            Action::Kill => "kill",
            Action::Refused => "refused",
            Action::Rejected => "rejected",
        }
    }
}

/// A signal: an immutable record of a threshold crossing, an error or a conflict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signal {
    pub kind: &'static str,
    pub policy: String,
    pub version: u64,
    pub policy_hash: String,
    pub limit: Option<String>,
    pub observed: Option<String>,
    pub limit_value: Option<String>,
    pub percent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflict: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with: Option<Vec<String>>,
    /// A budget limit's counter: the run's key values and the window's start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<super::budget::BudgetTag>,
}

/// One alert to one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    pub policy: String,
    pub limit: String,
    pub kind: &'static str,
    pub channel: String,
    pub suppressed: bool,
    pub why: Option<&'static str>,
}

/// An override request's status after an `override` or `approval` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OverrideOutcome {
    pub status: &'static str,
    pub id: Option<String>,
    pub rule: Option<String>,
    pub until: Option<String>,
    pub why: Option<String>,
}

/// The answer to one input event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub run_id: Option<Arc<str>>,
    pub seq: Option<u64>,
    /// Nanoseconds since the epoch; printed as RFC 3339 UTC.
    #[serde(serialize_with = "rfc3339")]
    pub ts: Option<i64>,
    pub event: Option<&'static str>,
    pub action: Action,
    pub reason: Option<String>,
    pub signals: Vec<Signal>,
    pub alerts: Vec<Alert>,
    /// What the step added to budgets across runs, and each counter's value after it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<super::budget::Contribution>,
    #[serde(rename = "override", skip_serializing_if = "Option::is_none")]
    pub override_outcome: Option<Box<OverrideOutcome>>,
    pub snapshot: Option<Arc<str>>,
    pub artifact: Option<Arc<str>>,
}

impl Decision {
    /// The decision as one JSON line (without the newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
