//! The syntax tree: what a file says, with a span on every node.
//!
//! Nothing here is resolved or typed; names are as written. The checker turns this into
//! the checked program ([`crate::check::hir`]).

pub(crate) use crate::base::lang::{AggFunc, BinOp, Bind, ChannelKind, Conflict, OnError, Unit};
use crate::base::source::{FileId, Span};

/// A single identifier as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Name {
    pub text: String,
    pub span: Span,
}

/// A dotted name: `std.llm.cost`, `step.cost`, `gpt4_cost`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QName {
    pub parts: Vec<Name>,
    pub span: Span,
}

impl QName {
    /// The name joined with dots.
    pub(crate) fn dotted(&self) -> String {
        let parts: Vec<&str> = self.parts.iter().map(|p| p.text.as_str()).collect();
        parts.join(".")
    }
}

/// A string literal with its decoded text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StrLit {
    pub value: String,
    pub span: Span,
}

/// An integer as used by `version`, `precedence`, `max_per_run` and `approvals`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IntLit {
    /// `None` when it does not fit in 64 bits (reported by the checker).
    pub value: Option<u64>,
    pub span: Span,
}

/// A quantity literal used where the grammar wants one kind (`near 80%`, `for 1h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QuantityLit {
    /// 10⁻⁹ units; `None` when the literal was invalid (already reported).
    pub value: Option<i64>,
    pub span: Span,
}

/// A parsed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct File {
    pub file: FileId,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub kind: ItemKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemKind {
    Import(QName),
    Signal {
        name: Name,
        unit: UnitName,
    },
    Monitor(MonitorDecl),
    Const {
        name: Name,
        value: Expr,
    },
    Channel(ChannelDecl),
    Policy(PolicyDecl),
    /// `test "name" { ... }`: the body's syntax lands with `lever test`.
    Test {
        name: StrLit,
        body: Span,
    },
    Extern {
        name: QName,
        unit: UnitName,
    },
    Let {
        name: QName,
        value: Expr,
    },
}

/// The types a field, monitor or expression can have (LANGUAGE §4).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnitName {
    pub unit: Unit,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MonitorDecl {
    pub name: Name,
    pub expr: Expr,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelDecl {
    pub name: Name,
    pub kind: ChannelKind,
    pub args: Vec<ChannelArg>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelArg {
    pub name: Name,
    pub value: ArgValue,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgValue {
    Expr(Expr),
    /// `env("VAR")`: resolved by the runtime at delivery time.
    Env(StrLit),
    List(Vec<StrLit>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PolicyDecl {
    pub name: Name,
    pub clauses: Vec<Clause>,
    /// Keywords of clauses that failed to parse (already reported), so that the checker
    /// does not also call them missing.
    pub broken: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Clause {
    pub kind: ClauseKind,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum InspectKey {
    PromptLogging,
    PiiCapture,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InspectSetting {
    pub key: InspectKey,
    pub allow: bool,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AlertSetting {
    MaxPerRun(IntLit),
    MinInterval(QuantityLit),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClauseKind {
    Version(IntLit),
    Description(StrLit),
    Scope(Scope),
    Precedence(IntLit),
    Conflict(Conflict),
    Bind(Bind),
    OnError(OnError),
    Inspect(Vec<InspectSetting>),
    Monitor(MonitorDecl),
    Limit(LimitDecl),
    Alerts(Vec<(AlertSetting, Span)>),
    Override(Vec<Rule>),
}

impl ClauseKind {
    /// The clause's keyword.
    pub(crate) fn keyword(&self) -> &'static str {
        match self {
            ClauseKind::Version(_) => "version",
            ClauseKind::Description(_) => "description",
            ClauseKind::Scope(_) => "scope",
            ClauseKind::Precedence(_) => "precedence",
            ClauseKind::Conflict(_) => "conflict",
            ClauseKind::Bind(_) => "bind",
            ClauseKind::OnError(_) => "on_error",
            ClauseKind::Inspect(_) => "inspect",
            ClauseKind::Monitor(_) => "monitor",
            ClauseKind::Limit(_) => "limit",
            ClauseKind::Alerts(_) => "alerts",
            ClauseKind::Override(_) => "override",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LimitDecl {
    pub monitor: QName,
    pub value: Expr,
    /// `per KEY [per WINDOW]`: a budget shared by the runs with the same key.
    pub per: Option<Per>,
    pub near: Option<NearClause>,
    pub breach: Option<BreachClause>,
}

/// `per api_key per 1d`, `per (tenant, agent)`: the run attributes whose values the runs
/// of one budget share, and its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Per {
    pub key: Vec<(Selector, Span)>,
    pub window: Option<QuantityLit>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NearClause {
    pub percent: QuantityLit,
    pub actions: Vec<Action>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BreachClause {
    pub actions: Vec<Action>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ActionKind {
    Pause,
    Stop,
    Kill,
    Alert(Vec<Name>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    Role(StrLit),
    Actor(StrLit),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rule {
    pub grantee: Grantee,
    pub kind: RuleKind,
    pub ttl: Option<QuantityLit>,
    pub requires_reason: bool,
    pub approvals: Option<IntLit>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    Raise { limit: QName, ceiling: Ceiling },
    Suspend,
    Resume,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ceiling {
    Percent(QuantityLit),
    Value(Expr),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Tenant,
    Agent,
    ApiKey,
    HumanActor,
    Label(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub kind: ScopeKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScopeKind {
    All,
    Eq {
        selector: Selector,
        negated: bool,
        value: StrLit,
    },
    In {
        selector: Selector,
        values: Vec<StrLit>,
    },
    Not(Box<Scope>),
    And(Box<Scope>, Box<Scope>),
    Or(Box<Scope>, Box<Scope>),
}

/// The unit a number literal was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NumUnit {
    Count,
    Usd,
    Tokens,
    Duration,
    Percent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Literal {
    Number { unit: NumUnit, value: Option<i64> },
    Str(String),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExprKind {
    Lit(Literal),
    Name(QName),
    Index(Box<Expr>, StrLit),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Vec<Expr>),
    Agg {
        func: AggFunc,
        arg: Option<Box<Expr>>,
        filter: Option<Box<Expr>>,
        window: Option<QuantityLit>,
    },
}
