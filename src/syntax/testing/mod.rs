//! Policy tests as written: `test "name" { ... }` items of `.policy` files, read from the
//! language's own tokens (`parse`). What a test may say is in docs/testing.md; checking a
//! test's names against the set is the checker's (`check::testing`), running it the
//! author tooling's (`author::testing`).

mod parse;

pub(crate) use parse::parse;

pub use crate::base::lang::OverrideKind;
use crate::base::source::Span;
use std::collections::BTreeMap;

/// One test.
#[derive(Debug, Clone)]
pub struct Test {
    pub name: String,
    /// The file's path as given.
    pub path: String,
    /// The `test` keyword's line.
    pub line: usize,
    pub statements: Vec<Statement>,
}

#[derive(Debug, Clone)]
pub struct Statement {
    pub kind: StmtKind,
    pub span: Span,
}

/// A step's fields as a test writes them: quantities in 10⁻⁹ units, latency in
/// nanoseconds; `None` leaves the event's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepFields {
    pub cost: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub latency: Option<i64>,
    pub model: Option<String>,
    pub tool: Option<String>,
    pub kind: Option<String>,
    pub pii: Option<bool>,
}

/// What a statement says, typed: the test runner builds events from it directly.
#[derive(Debug, Clone)]
pub enum StmtKind {
    Run {
        attrs: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    },
    Step {
        /// Time since the previous event (default 1 s).
        after: Option<i64>,
        fields: StepFields,
        /// `metric NAME VALUE`, in 10⁻⁹ units of what was written.
        metrics: BTreeMap<String, i64>,
        repeat: u32,
    },
    Override {
        after: Option<i64>,
        kind: OverrideKind,
        policy: String,
        limit: Option<String>,
        to: Option<String>,
        by: String,
        roles: Vec<String>,
        /// `for D`: how long the override is asked for, in nanoseconds.
        ttl: Option<i64>,
        reason: Option<String>,
    },
    /// Approves the test's latest override request.
    Approve {
        after: Option<i64>,
        by: String,
        roles: Vec<String>,
    },
    End {
        after: Option<i64>,
    },
    /// `spent VALUE on LIMIT of POLICY`: the latest run's counter of that budget, in the
    /// window of the latest event, starts at `value` (10⁻⁹ units).
    Spent {
        value: i64,
        limit: String,
        policy: String,
    },
    /// An expectation on the latest event's decision, or with `at seq N` on the run's
    /// decision at that `seq`.
    Expect(Expectation, Option<u64>),
}

/// What the decision of the latest event must show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    Action(String),
    /// A signal of this kind, for this limit and policy when given.
    Signal {
        kind: String,
        limit: Option<String>,
        policy: Option<String>,
    },
    NoSignals,
    Alert {
        channel: String,
        suppressed: bool,
    },
    NoAlerts,
    Override(String),
}

impl Expectation {
    /// As written in the test.
    pub(crate) fn text(&self) -> String {
        match self {
            Expectation::Action(a) => format!("expect action {a}"),
            Expectation::Signal {
                kind,
                limit,
                policy,
            } => {
                let mut t = format!("expect {kind}");
                if let Some(l) = limit {
                    t.push_str(&format!(" {l}"));
                }
                if let Some(p) = policy {
                    t.push_str(&format!(" of {p}"));
                }
                t
            }
            Expectation::NoSignals => "expect no signals".into(),
            Expectation::Alert {
                channel,
                suppressed,
            } => {
                format!(
                    "expect alert {channel}{}",
                    if *suppressed { " suppressed" } else { "" }
                )
            }
            Expectation::NoAlerts => "expect no alerts".into(),
            Expectation::Override(s) => format!("expect override {s}"),
        }
    }
}
