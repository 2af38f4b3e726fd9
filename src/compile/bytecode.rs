//! The bytecode: what an artifact holds and both engines run.
//!
//! A [`Program`] is a checked policy set lowered to flat, typed stack code. Names are gone:
//! fields, aggregates, monitors, channels and strings are indices, so the per-step path
//! neither hashes nor allocates. Values are fixed-point `i64` (10⁻⁹ units, timestamps in
//! nanoseconds), booleans and references to strings.

use crate::base::lang::{
    AggFunc, ArgValue, Bind, ChannelKind, ChannelRef, Conflict, Enforcement, Grantee, OnError,
    Scope, Unit,
};
use serde::{Deserialize, Serialize};

/// The most string fields a program can have (they all come from the prelude); the
/// engines keep their values in fixed arrays of this size.
pub(crate) const MAX_STR_FIELDS: usize = 16;

/// A comparison of two numbers (counts, quantities, durations, timestamps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

/// One instruction of the stack machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// Push a number (10⁻⁹ units).
    Num(i64),
    Bool(bool),
    /// Push the constant string at this index of [`Program::strings`].
    Str(u32),
    /// Push a numeric field of the current step or run.
    NumField(u16),
    BoolField(u16),
    StrField(u16),
    /// Push `run.labels[strings[k]]`, resolved when the run started.
    Label(u16),
    /// Push an aggregate's current value (monitor code only).
    Agg(u16),
    /// Push a monitor's value at this step (monitor code only; an earlier monitor).
    Monitor(u16),
    Neg,
    Not,
    Add,
    Sub,
    Mul,
    Div,
    Cmp(Cmp),
    /// Equality of any two values of one type; `true` negates (`!=`).
    Eq(bool),
    /// Pop `n` list items and a value; push whether the value equals any item.
    In(u16),
    /// Fused `StrField(f) == Str(c)` (`true`: `!=`), the commonest filter.
    FieldEqStr(u16, u32, bool),
    /// Fused `NumField(f) <cmp> Num(k)`.
    FieldCmpNum(u16, Cmp, i64),
    /// `and`: unless the top is `true`, jump to the target keeping it; else pop it.
    AndJump(u32),
    /// `or`: unless the top is `false`, jump to the target keeping it; else pop it.
    OrJump(u32),
}

/// A straight-line (forward jumps only) code sequence leaving one value on the stack.
impl Op {
    /// How the instruction changes the stack depth when execution falls through it (a
    /// taken `and`/`or` jump keeps its operand: one more than this).
    pub(crate) fn stack_effect(&self) -> i64 {
        match self {
            Op::Num(_)
            | Op::Bool(_)
            | Op::Str(_)
            | Op::NumField(_)
            | Op::BoolField(_)
            | Op::StrField(_)
            | Op::Label(_)
            | Op::Agg(_)
            | Op::Monitor(_)
            | Op::FieldEqStr(..)
            | Op::FieldCmpNum(..) => 1,
            Op::Neg | Op::Not => 0,
            Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Cmp(_)
            | Op::Eq(_)
            | Op::AndJump(_)
            | Op::OrJump(_) => -1,
            Op::In(n) => -i64::from(*n),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Code {
    pub ops: Vec<Op>,
    /// The deepest the stack gets, computed at compile time.
    pub max_stack: u16,
}

/// Where a field's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventField {
    InputTokens,
    OutputTokens,
    Cost,
    Latency,
    Ts,
    Kind,
    Model,
    Tool,
    Pii,
    Tenant,
    Agent,
    ApiKey,
    HumanActor,
}

impl EventField {
    /// Whether the field's value is a string (the step's kind, model and tool, the run's
    /// attributes).
    pub(crate) fn is_string(self) -> bool {
        matches!(
            self,
            EventField::Kind
                | EventField::Model
                | EventField::Tool
                | EventField::Tenant
                | EventField::Agent
                | EventField::ApiKey
                | EventField::HumanActor
        )
    }

    /// The field a prelude `extern` binds, by its qualified name.
    pub(crate) fn from_name(name: &str) -> Option<EventField> {
        Some(match name {
            "step.input_tokens" => EventField::InputTokens,
            "step.output_tokens" => EventField::OutputTokens,
            "step.cost" => EventField::Cost,
            "step.latency" => EventField::Latency,
            "step.ts" => EventField::Ts,
            "step.kind" => EventField::Kind,
            "step.model" => EventField::Model,
            "step.tool" => EventField::Tool,
            "step.pii" => EventField::Pii,
            "run.tenant" => EventField::Tenant,
            "run.agent" => EventField::Agent,
            "run.api_key" => EventField::ApiKey,
            "run.human_actor" => EventField::HumanActor,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldSource {
    Event(EventField),
    /// A `signal`: this index of the step's metrics, in [`Program::signals`] order.
    Metric(u16),
    /// A `let` computed from earlier fields.
    Derived(Code),
}

/// A step or run field, by kind-specific slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDesc {
    pub name: String,
    pub unit: Unit,
    /// Index among the fields of its kind (numbers, booleans or strings).
    pub slot: u16,
    pub source: FieldSource,
}

/// An aggregate over a run's steps; structurally equal aggregates are shared.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AggDesc {
    pub func: AggFunc,
    /// Numeric argument (`count` has none; its condition is the filter).
    pub arg: Option<Code>,
    pub filter: Option<Code>,
    /// `rate`'s trailing window in nanoseconds; 0 for other aggregates.
    pub window: i64,
}

/// A monitor reachable from some limit; monitors come in dependency order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonitorDesc {
    /// The identity (`std.llm.cost`, `gpt4_cost`, `policy/name` for a private one).
    pub id_name: String,
    pub unit: Unit,
    pub code: Code,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ActionsDesc {
    pub enforcement: Option<Enforcement>,
    pub alerts: Vec<ChannelRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NearDesc {
    /// 80% is 80 × 10⁹.
    pub percent: i64,
    /// The least observed value that is NEAR the compiled limit value: `M × 100 >= V × P`
    /// holds exactly when `M >= near_at` (`None`: no value is). Precomputed so the
    /// per-step test is one comparison.
    pub near_at: Option<i64>,
    pub actions: ActionsDesc,
}

/// The least `M` with `M × 100 >= value × percent` (`percent` in 10⁻⁹ units), exactly.
pub(crate) fn near_threshold(value: i64, percent: i64) -> Option<i64> {
    let a = i128::from(value) * i128::from(percent);
    let b = 100 * i128::from(crate::base::num::SCALE);
    let ceil = a.div_euclid(b) + i128::from(a.rem_euclid(b) != 0);
    if ceil > i128::from(i64::MAX) {
        return None;
    }
    Some(i64::try_from(ceil).unwrap_or(i64::MIN))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitDesc {
    pub monitor: u16,
    /// The least observed value that leaves the `below` zone (the NEAR threshold, or the
    /// value without a near clause): below it a step can change nothing but a fall.
    pub lowest_threshold: i64,
    /// The monitor's name as the policy writes it.
    pub name: String,
    pub value: i64,
    pub unit: Unit,
    /// A budget across runs; stored in the artifact's budget table (format version 2),
    /// so that artifacts without budgets keep version 1's encoding.
    #[serde(skip)]
    pub budget: Option<crate::base::lang::Budget>,
    pub near: Option<NearDesc>,
    pub breach: ActionsDesc,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleKindDesc {
    Raise { limit: u16, ceiling: i64 },
    Suspend,
    Resume,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleDesc {
    pub grantee: Grantee,
    pub kind: RuleKindDesc,
    pub ttl: Option<i64>,
    pub requires_reason: bool,
    pub approvals: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDesc {
    pub name: String,
    pub version: u64,
    pub description: Option<String>,
    /// `blake3:<hex>` over the policy's lowered meaning (see `compile::meaning`).
    pub hash: String,
    pub scope: Scope,
    pub precedence: u32,
    pub conflict: Conflict,
    pub bind: Bind,
    pub on_error: OnError,
    pub prompt_logging: bool,
    pub pii_capture: bool,
    pub limits: Vec<LimitDesc>,
    pub max_per_run: Option<u32>,
    pub min_interval: i64,
    pub rules: Vec<RuleDesc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelDesc {
    pub name: String,
    pub kind: ChannelKind,
    pub args: Vec<(String, ArgValue)>,
}

/// A compiled policy set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    pub strings: Vec<String>,
    /// Label keys a run's labels are resolved against at run start.
    pub labels: Vec<String>,
    /// Names of `signal` metrics, in metric index order.
    pub signals: Vec<(String, Unit)>,
    /// Fields in evaluation order (derived fields after what they read).
    pub fields: Vec<FieldDesc>,
    pub num_fields: u16,
    pub bool_fields: u16,
    pub str_fields: u16,
    pub aggregates: Vec<AggDesc>,
    pub monitors: Vec<MonitorDesc>,
    pub channels: Vec<ChannelDesc>,
    /// Policies in (precedence, name) order.
    pub policies: Vec<PolicyDesc>,
}

#[cfg(test)]
mod tests {
    use super::near_threshold;
    use crate::base::num::SCALE;

    /// The precomputed threshold agrees with the exact 128-bit test on both sides.
    #[test]
    fn near_threshold_matches_the_exact_test() {
        let exact = |m: i64, v: i64, p: i64| {
            i128::from(m) * 100 * i128::from(SCALE) >= i128::from(v) * i128::from(p)
        };
        for (v, p) in [
            (5 * SCALE, 80 * SCALE),
            (3, 87_500_000_000),
            (-7 * SCALE, 50 * SCALE),
            (1, 1),
            (i64::MAX, 99 * SCALE),
            (7, 33_333_333_333),
        ] {
            let at = near_threshold(v, p).unwrap();
            assert!(exact(at, v, p), "{v} {p}");
            assert!(at == i64::MIN || !exact(at - 1, v, p), "{v} {p}");
        }
    }
}
