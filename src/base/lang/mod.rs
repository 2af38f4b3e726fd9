//! The words the language and its artifact share: units, strategies, binding moments,
//! error handling, operators, aggregate functions, channel kinds and enforcements.
//!
//! The artifact encodes each of them by an explicit number (`#[repr(u8)]`, serialized as
//! that number), never by its position in the declaration: reordering a variant cannot
//! silently change the artifact format.

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde_repr::Serialize_repr,
    serde_repr::Deserialize_repr,
)]
#[repr(u8)]
pub enum Unit {
    Count = 0,
    Tokens = 1,
    Usd = 2,
    Duration = 3,
    Bool = 4,
    String = 5,
    Timestamp = 6,
    Map = 7,
}

impl Unit {
    pub(crate) fn from_word(word: &str) -> Option<Unit> {
        Some(match word {
            "count" => Unit::Count,
            "tokens" => Unit::Tokens,
            "usd" => Unit::Usd,
            "duration" => Unit::Duration,
            "bool" => Unit::Bool,
            "string" => Unit::String,
            "timestamp" => Unit::Timestamp,
            "map" => Unit::Map,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Tokens => "tokens",
            Unit::Usd => "usd",
            Unit::Duration => "duration",
            Unit::Bool => "bool",
            Unit::String => "string",
            Unit::Timestamp => "timestamp",
            Unit::Map => "map",
        }
    }

    /// Quantities that `+`, `-`, `*`, `/`, `sum` and limits apply to.
    pub(crate) fn is_number(self) -> bool {
        matches!(
            self,
            Unit::Count | Unit::Tokens | Unit::Usd | Unit::Duration
        )
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde_repr::Serialize_repr, serde_repr::Deserialize_repr,
)]
#[repr(u8)]
pub enum ChannelKind {
    Webhook = 0,
    Slack = 1,
    Email = 2,
}

impl ChannelKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Email => "email",
        }
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde_repr::Serialize_repr,
    serde_repr::Deserialize_repr,
)]
#[repr(u8)]
pub enum Conflict {
    MostRestrictive = 0,
    ExplicitPriority = 1,
    FailClosed = 2,
}

impl Conflict {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Conflict::MostRestrictive => "most_restrictive",
            Conflict::ExplicitPriority => "explicit_priority",
            Conflict::FailClosed => "fail_closed",
        }
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde_repr::Serialize_repr,
    serde_repr::Deserialize_repr,
)]
#[repr(u8)]
pub enum Bind {
    RunStart = 0,
    FirstToken = 1,
    EachStep = 2,
}

impl Bind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Bind::RunStart => "run_start",
            Bind::FirstToken => "first_token",
            Bind::EachStep => "each_step",
        }
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde_repr::Serialize_repr,
    serde_repr::Deserialize_repr,
)]
#[repr(u8)]
pub enum OnError {
    FailClosed = 0,
    FailOpen = 1,
}

impl OnError {
    /// As a policy writes it: `fail_closed`, `fail_open`.
    pub fn name(self) -> &'static str {
        match self {
            OnError::FailClosed => "fail_closed",
            OnError::FailOpen => "fail_open",
        }
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde_repr::Serialize_repr,
    serde_repr::Deserialize_repr,
)]
#[repr(u8)]
pub enum BinOp {
    Or = 0,
    And = 1,
    Eq = 2,
    Ne = 3,
    Lt = 4,
    Le = 5,
    Gt = 6,
    Ge = 7,
    Add = 8,
    Sub = 9,
    Mul = 10,
    Div = 11,
}

impl BinOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    serde_repr::Serialize_repr,
    serde_repr::Deserialize_repr,
)]
#[repr(u8)]
pub enum AggFunc {
    Sum = 0,
    Count = 1,
    Max = 2,
    Min = 3,
    Last = 4,
    Avg = 5,
    Rate = 6,
}

impl AggFunc {
    pub(crate) fn from_word(word: &str) -> Option<AggFunc> {
        Some(match word {
            "sum" => AggFunc::Sum,
            "count" => AggFunc::Count,
            "max" => AggFunc::Max,
            "min" => AggFunc::Min,
            "last" => AggFunc::Last,
            "avg" => AggFunc::Avg,
            "rate" => AggFunc::Rate,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            AggFunc::Sum => "sum",
            AggFunc::Count => "count",
            AggFunc::Max => "max",
            AggFunc::Min => "min",
            AggFunc::Last => "last",
            AggFunc::Avg => "avg",
            AggFunc::Rate => "rate",
        }
    }
}

/// An enforcement, ordered by severity.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde_repr::Serialize_repr,
    serde_repr::Deserialize_repr,
)]
#[repr(u8)]
pub enum Enforcement {
    Pause = 0,
    Stop = 1,
    Kill = 2,
}

impl Enforcement {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Enforcement::Pause => "pause",
            Enforcement::Stop => "stop",
            Enforcement::Kill => "kill",
        }
    }
}

/// What an override asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OverrideKind {
    Raise,
    Suspend,
    Resume,
}

impl OverrideKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            OverrideKind::Raise => "raise",
            OverrideKind::Suspend => "suspend",
            OverrideKind::Resume => "resume",
        }
    }
}

mod data;
mod tagged;

pub(crate) use data::{ArgValue, Budget, ChannelRef, Grantee, Scope, Selector};

/// A limit's zone: below every threshold, at or over its NEAR threshold, or at or over
/// its value. One byte, `Below` being 0, as native code reads a run's zones.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Zone {
    Below = 0,
    Near = 1,
    Breach = 2,
}
