//! The bytecode interpreter: evaluates code against one step, and keeps aggregates.
//!
//! Values are tri-state (`Slot`): a value, no value (an aggregate that matched no step),
//! or an evaluation error. Operators combine them by one rule (LANGUAGE appendix, 9): any
//! no-value operand gives no value, even where it would divide by zero; otherwise the
//! leftmost error wins; otherwise the operator computes with [`crate::base::num`]. `and` and
//! `or` evaluate left to right and stop once the result is known. Evaluation reads no
//! clock and allocates nothing once its buffers have grown.

mod aggregate;
mod ops;
mod ring;

pub(crate) use aggregate::{AggState, Aggs, Window};
use ops::field_cmp_num;
pub(crate) use ops::{binary, field_eq_str, in_list, unary};

use crate::base::num::ArithError;
use crate::compile::bytecode::{Code, Op, Program};

/// A string an instruction refers to, resolved against the step when compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StrRef {
    Const(u32),
    Field(u16),
    Label(u16),
}

/// One value on the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Num(i64),
    Bool(bool),
    Str(StrRef),
    /// No value: `max`, `min`, `last` or `avg` of no matching step, and what reads it.
    None,
    Err(ArithError),
}

pub(crate) use crate::compile::bytecode::MAX_STR_FIELDS;

/// A value as a tag and a payload word: how aggregate state holds values and native code
/// passes them.
pub(crate) mod tag {
    use super::{Slot, StrRef};
    use crate::base::num::ArithError;

    pub(crate) const NUM: i64 = 0;
    pub(crate) const BOOL: i64 = 1;
    pub(crate) const STR_CONST: i64 = 2;
    pub(crate) const STR_FIELD: i64 = 3;
    pub(crate) const STR_LABEL: i64 = 4;
    pub(crate) const NONE: i64 = 5;
    pub(crate) const ERR_OVERFLOW: i64 = 6;
    pub(crate) const ERR_DIV_ZERO: i64 = 7;

    /// A value's tag and payload.
    pub(crate) fn of(s: Slot) -> (i64, i64) {
        match s {
            Slot::Num(n) => (NUM, n),
            Slot::Bool(b) => (BOOL, i64::from(b)),
            Slot::Str(StrRef::Const(i)) => (STR_CONST, i64::from(i)),
            Slot::Str(StrRef::Field(i)) => (STR_FIELD, i64::from(i)),
            Slot::Str(StrRef::Label(i)) => (STR_LABEL, i64::from(i)),
            Slot::None => (NONE, 0),
            Slot::Err(ArithError::Overflow) => (ERR_OVERFLOW, 0),
            Slot::Err(ArithError::DivisionByZero) => (ERR_DIV_ZERO, 0),
        }
    }

    /// The value a tag and payload stand for.
    pub(crate) fn slot(tag: i64, val: i64) -> Slot {
        match tag {
            NUM => Slot::Num(val),
            BOOL => Slot::Bool(val != 0),
            STR_CONST => Slot::Str(StrRef::Const(u32::try_from(val).unwrap_or(u32::MAX))),
            STR_FIELD => Slot::Str(StrRef::Field(u16::try_from(val).unwrap_or(u16::MAX))),
            STR_LABEL => Slot::Str(StrRef::Label(u16::try_from(val).unwrap_or(u16::MAX))),
            ERR_OVERFLOW => Slot::Err(ArithError::Overflow),
            ERR_DIV_ZERO => Slot::Err(ArithError::DivisionByZero),
            _ => Slot::None,
        }
    }
}

/// A string field's interned id when its value is no constant of the program.
pub(crate) const NOT_A_CONSTANT: u32 = u32::MAX;
/// A string field's interned id when it was not interned (compare the text instead).
pub(crate) const NOT_INTERNED: u32 = u32::MAX - 1;

/// A fixed-size stack over a reusable buffer sized by the code's `max_stack`.
struct Stack<'s> {
    slots: &'s mut [Slot],
    len: usize,
}

impl Stack<'_> {
    fn push(&mut self, s: Slot) {
        if let Some(dst) = self.slots.get_mut(self.len) {
            *dst = s;
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<Slot> {
        self.len = self.len.checked_sub(1)?;
        self.slots.get(self.len).copied()
    }

    fn last(&self) -> Option<&Slot> {
        self.slots.get(self.len.checked_sub(1)?)
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, range: std::ops::RangeFrom<usize>) -> Option<&[Slot]> {
        self.slots.get(range.start..self.len)
    }

    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
}

/// What code reads at one step: field values, run labels, aggregates and monitors.
pub(crate) struct Ctx<'a> {
    pub program: &'a Program,
    pub nums: &'a [i64],
    pub bools: &'a [bool],
    pub strs: &'a [&'a str; MAX_STR_FIELDS],
    /// Each string field's value as an index into the program's strings, when it is one
    /// ([`NOT_A_CONSTANT`] when not, [`NOT_INTERNED`] when not looked up).
    pub str_ids: &'a [u32; MAX_STR_FIELDS],
    pub labels: &'a [String],
    pub aggs: &'a [Slot],
    pub monitors: &'a [Slot],
}

impl<'a> Ctx<'a> {
    /// A context over one step's fields, before aggregates and monitors have values.
    pub(crate) fn step(
        program: &'a Program,
        nums: &'a [i64],
        bools: &'a [bool],
        strs: &'a [&'a str; MAX_STR_FIELDS],
        str_ids: &'a [u32; MAX_STR_FIELDS],
        labels: &'a [String],
    ) -> Ctx<'a> {
        Ctx {
            program,
            nums,
            bools,
            strs,
            str_ids,
            labels,
            aggs: &[],
            monitors: &[],
        }
    }

    /// The same context with aggregate and monitor values, for monitor code.
    pub(crate) fn with_values(&self, aggs: &'a [Slot], monitors: &'a [Slot]) -> Ctx<'a> {
        Ctx {
            aggs,
            monitors,
            ..*self
        }
    }

    fn resolve(&self, s: StrRef) -> &str {
        match s {
            StrRef::Const(i) => self
                .program
                .strings
                .get(i as usize)
                .map_or("", String::as_str),
            StrRef::Field(i) => self.strs.get(i as usize).copied().unwrap_or(""),
            StrRef::Label(i) => self.labels.get(i as usize).map_or("", String::as_str),
        }
    }

    fn equal(&self, a: Slot, b: Slot) -> Option<bool> {
        match (a, b) {
            (Slot::Num(x), Slot::Num(y)) => Some(x == y),
            (Slot::Bool(x), Slot::Bool(y)) => Some(x == y),
            (Slot::Str(x), Slot::Str(y)) => Some(self.resolve(x) == self.resolve(y)),
            _ => None,
        }
    }
}

/// A value one instruction computes without the stack, if it is such an instruction.
#[inline(always)]
fn simple(op: &Op, ctx: &Ctx<'_>) -> Option<Slot> {
    Some(match op {
        Op::Num(n) => Slot::Num(*n),
        Op::Bool(b) => Slot::Bool(*b),
        Op::NumField(i) => ctx
            .nums
            .get(*i as usize)
            .map_or(Slot::None, |n| Slot::Num(*n)),
        Op::BoolField(i) => ctx
            .bools
            .get(*i as usize)
            .map_or(Slot::None, |b| Slot::Bool(*b)),
        Op::Agg(i) => ctx.aggs.get(*i as usize).copied().unwrap_or(Slot::None),
        Op::Monitor(i) => ctx.monitors.get(*i as usize).copied().unwrap_or(Slot::None),
        Op::FieldEqStr(f, c, n) => field_eq_str(ctx, *f, *c, *n),
        Op::FieldCmpNum(f, c, k) => field_cmp_num(ctx, *f, *c, *k),
        _ => return None,
    })
}

/// Evaluates code to one value. `stack` is a reusable buffer.
///
/// The common shapes (one instruction; `a and b` or `a or b` of two such) are computed
/// directly; everything else runs on the stack machine. Both paths are the same
/// semantics: `and`/`or` stop at the first operand unless it is `true`/`false`.
#[inline(always)]
pub(crate) fn eval(code: &Code, ctx: &Ctx<'_>, stack: &mut Vec<Slot>) -> Slot {
    match code.ops.as_slice() {
        [op] => {
            if let Some(v) = simple(op, ctx) {
                return v;
            }
        }
        [
            a,
            b,
            op @ (Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Cmp(_)),
        ] => {
            if let (Some(x), Some(y)) = (simple(a, ctx), simple(b, ctx)) {
                return match (op, x, y) {
                    (Op::Add, Slot::Num(x), Slot::Num(y)) => {
                        crate::base::num::add(x, y).map_or_else(Slot::Err, Slot::Num)
                    }
                    _ => binary(ctx, op, x, y),
                };
            }
        }
        [a, jump @ (Op::AndJump(3) | Op::OrJump(3)), b] => {
            if let Some(first) = simple(a, ctx) {
                let go_on = Slot::Bool(matches!(jump, Op::AndJump(_)));
                if first != go_on {
                    return first;
                }
                if let Some(second) = simple(b, ctx) {
                    return second;
                }
            }
        }
        _ => {}
    }
    eval_stack(code, ctx, stack)
}

/// The stack machine.
#[inline(never)]
fn eval_stack(code: &Code, ctx: &Ctx<'_>, stack: &mut Vec<Slot>) -> Slot {
    let ops = &code.ops;
    let need = usize::from(code.max_stack).max(1);
    if stack.len() < need {
        stack.resize(need, Slot::None);
    }
    let mut stack = Stack {
        slots: stack.as_mut_slice(),
        len: 0,
    };
    let mut pc = 0;
    while let Some(op) = ops.get(pc) {
        pc += 1;
        match op {
            Op::Num(n) => stack.push(Slot::Num(*n)),
            Op::Bool(b) => stack.push(Slot::Bool(*b)),
            Op::Str(i) => stack.push(Slot::Str(StrRef::Const(*i))),
            Op::NumField(i) => stack.push(
                ctx.nums
                    .get(*i as usize)
                    .map_or(Slot::None, |n| Slot::Num(*n)),
            ),
            Op::BoolField(i) => stack.push(
                ctx.bools
                    .get(*i as usize)
                    .map_or(Slot::None, |b| Slot::Bool(*b)),
            ),
            Op::StrField(i) => stack.push(Slot::Str(StrRef::Field(*i))),
            Op::Label(i) => stack.push(Slot::Str(StrRef::Label(*i))),
            Op::FieldEqStr(f, c, n) => stack.push(field_eq_str(ctx, *f, *c, *n)),
            Op::FieldCmpNum(f, c, k) => stack.push(field_cmp_num(ctx, *f, *c, *k)),
            Op::Agg(i) => stack.push(ctx.aggs.get(*i as usize).copied().unwrap_or(Slot::None)),
            Op::Monitor(i) => {
                stack.push(ctx.monitors.get(*i as usize).copied().unwrap_or(Slot::None))
            }
            Op::Neg | Op::Not => {
                let a = stack.pop().unwrap_or(Slot::None);
                stack.push(unary(op, a));
            }
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Cmp(_) | Op::Eq(_) => {
                let b = stack.pop().unwrap_or(Slot::None);
                let a = stack.pop().unwrap_or(Slot::None);
                stack.push(binary(ctx, op, a, b));
            }
            Op::In(n) => {
                let at = stack.len().saturating_sub(usize::from(*n) + 1);
                let result = stack.get(at..).map_or(Slot::None, |o| in_list(ctx, o));
                stack.truncate(at);
                stack.push(result);
            }
            Op::AndJump(target) | Op::OrJump(target) => {
                let continue_on = matches!(op, Op::AndJump(_));
                if stack.last() == Some(&Slot::Bool(continue_on)) {
                    stack.pop();
                } else {
                    pc = *target as usize;
                }
            }
        }
    }
    stack.pop().unwrap_or(Slot::None)
}
