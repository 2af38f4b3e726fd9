//! The checked program: every name resolved, every expression typed, every constant folded.
//!
//! This is the boundary between the front end and the compiler. Values are fixed-point
//! 10⁻⁹ units ([`crate::base::num`]); monitors, fields and channels are referred to by index.

pub(crate) use crate::base::lang::{
    ArgValue, Budget, ChannelRef, Enforcement, Grantee, Scope, Selector,
};
use crate::base::source::Span;
use crate::syntax::ast::{AggFunc, BinOp, Bind, ChannelKind, Conflict, OnError, Unit};

/// Index into [`Program::fields`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldId(pub u32);
/// Index into [`Program::monitors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonitorId(pub u32);
/// A checked policy set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub fields: Vec<Field>,
    pub monitors: Vec<Monitor>,
    pub channels: Vec<Channel>,
    pub policies: Vec<Policy>,
}

/// A step or run field: read from the event, from `metrics`, or derived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// `step.cost`, `run.labels`, `step.retries`.
    pub name: String,
    pub unit: Unit,
    pub source: FieldSource,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldSource {
    /// An event field the runtime reads (`extern` in the prelude).
    Event,
    /// `signal NAME: unit`: the step's `metrics.NAME`, 0 when absent.
    Metric(String),
    /// `let`: computed from other fields of the same step.
    Derived(Expr),
}

/// A monitor: a named aggregate over a run's steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    /// The identity: `std.llm.cost`, `gpt4_cost`, or `policy/name` for a private one.
    pub id_name: String,
    /// The name as a policy writes it.
    pub name: String,
    /// The policy it is private to, by name.
    pub owner: Option<String>,
    pub expr: Expr,
    pub unit: Unit,
    pub span: Span,
}

/// A typed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    pub kind: ExprKind,
    pub unit: Unit,
    pub span: Span,
}

impl Expr {
    /// Visits every node, aggregate arguments and filters included, parents first.
    pub(crate) fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Neg(x) | ExprKind::Not(x) => x.walk(f),
            ExprKind::Binary(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            ExprKind::In(a, list) => {
                a.walk(f);
                list.iter().for_each(|x| x.walk(f));
            }
            ExprKind::Agg { arg, filter, .. } => {
                arg.iter().for_each(|x| x.walk(f));
                filter.iter().for_each(|x| x.walk(f));
            }
            ExprKind::Const(_) | ExprKind::Field(_) | ExprKind::Label(_) | ExprKind::Monitor(_) => {
            }
        }
    }

    /// The monitors the expression reads directly (outside aggregates, where they may be).
    pub(crate) fn monitor_refs(&self) -> Vec<MonitorId> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let ExprKind::Monitor(id) = &e.kind {
                out.push(*id);
            }
        });
        out
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprKind {
    Const(Value),
    Field(FieldId),
    Label(String),
    Monitor(MonitorId),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Vec<Expr>),
    Agg {
        func: AggFunc,
        arg: Option<Box<Expr>>,
        filter: Option<Box<Expr>>,
        /// `rate`'s trailing window in nanoseconds.
        window: Option<i64>,
    },
}

/// A constant value; numbers are 10⁻⁹ units of the expression's unit.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Value {
    Num(i64),
    Str(String),
    Bool(bool),
}

/// An alert destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    /// Arguments in source order.
    pub args: Vec<(String, ArgValue)>,
    pub span: Span,
}

/// What a threshold does when crossed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actions {
    pub enforcement: Option<Enforcement>,
    pub alerts: Vec<ChannelRef>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Near {
    /// The percentage in 10⁻⁹ units (80% is 80 × 10⁹).
    pub percent: i64,
    pub actions: Actions,
}

/// `limit M to V { near P% => ..  breach => .. }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub monitor: MonitorId,
    /// The monitor's name as written in the policy (`std.llm.cost`, `gpt4_cost`).
    pub name: String,
    pub value: i64,
    pub unit: Unit,
    /// `per KEY [per WINDOW]`: a budget across runs.
    pub budget: Option<Budget>,
    pub near: Option<Near>,
    /// Without a `breach` clause the BREACH signal is still emitted, with no action.
    pub breach: Actions,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    /// Raise the limit at this index of [`Policy::limits`] up to `ceiling` (inclusive,
    /// absolute, in the limit's unit).
    Raise {
        limit: usize,
        ceiling: i64,
    },
    Suspend,
    Resume,
}

/// `allow role "R" to KIND [for D] [requires reason] [approvals N]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideRule {
    pub grantee: Grantee,
    pub kind: RuleKind,
    /// Longest grant, nanoseconds; `None`: until the run ends.
    pub ttl: Option<i64>,
    pub requires_reason: bool,
    pub approvals: u32,
    pub span: Span,
}

/// A control contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub version: u64,
    pub description: Option<String>,
    pub scope: Scope,
    pub precedence: u32,
    pub conflict: Conflict,
    pub bind: Bind,
    pub on_error: OnError,
    pub prompt_logging: bool,
    pub pii_capture: bool,
    pub limits: Vec<Limit>,
    pub max_per_run: Option<u32>,
    /// Nanoseconds.
    pub min_interval: i64,
    pub rules: Vec<OverrideRule>,
    pub span: Span,
}
