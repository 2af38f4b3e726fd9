//! The operations both engines share: arithmetic, comparison, `in`, `not`/`-` and the
//! fused field tests, on tri-state values (a value, no value, an error). The JIT calls
//! these for every operand its inline paths do not handle, so the two engines have one
//! definition of Lever's semantics.

use super::{Ctx, NOT_INTERNED, Slot, StrRef};
use crate::base::num::{self, ArithError};
use crate::compile::bytecode::{Cmp, Op};

/// Combines operands by the tri-state rule, or `Ok` with them all present.
pub(super) fn gate(operands: &[Slot]) -> Result<(), Slot> {
    if operands.contains(&Slot::None) {
        return Err(Slot::None);
    }
    match operands.iter().find(|s| matches!(s, Slot::Err(_))) {
        Some(e) => Err(*e),
        None => Ok(()),
    }
}

#[inline]
pub(super) fn arith(a: Slot, b: Slot, f: fn(i64, i64) -> Result<i64, ArithError>) -> Slot {
    // Two numbers, the common case, need no gate.
    if let (Slot::Num(x), Slot::Num(y)) = (a, b) {
        return f(x, y).map_or_else(Slot::Err, Slot::Num);
    }
    if let Err(s) = gate(&[a, b]) {
        return s;
    }
    match (a, b) {
        (Slot::Num(x), Slot::Num(y)) => f(x, y).map_or_else(Slot::Err, Slot::Num),
        _ => Slot::None,
    }
}

pub(super) fn ordered(x: i64, y: i64, cmp: Cmp) -> bool {
    match cmp {
        Cmp::Lt => x < y,
        Cmp::Le => x <= y,
        Cmp::Gt => x > y,
        Cmp::Ge => x >= y,
    }
}

pub(crate) fn field_eq_str(ctx: &Ctx<'_>, field: u16, konst: u32, negate: bool) -> Slot {
    let equal = match ctx
        .str_ids
        .get(usize::from(field))
        .copied()
        .unwrap_or(NOT_INTERNED)
    {
        NOT_INTERNED => ctx.resolve(StrRef::Field(field)) == ctx.resolve(StrRef::Const(konst)),
        id => id == konst,
    };
    Slot::Bool(equal != negate)
}

pub(super) fn field_cmp_num(ctx: &Ctx<'_>, field: u16, cmp: Cmp, k: i64) -> Slot {
    ctx.nums
        .get(field as usize)
        .map_or(Slot::None, |x| Slot::Bool(ordered(*x, k, cmp)))
}

#[inline]
pub(super) fn compare(a: Slot, b: Slot, cmp: Cmp) -> Slot {
    if let (Slot::Num(x), Slot::Num(y)) = (a, b) {
        return Slot::Bool(ordered(x, y, cmp));
    }
    if let Err(s) = gate(&[a, b]) {
        return s;
    }
    match (a, b) {
        (Slot::Num(x), Slot::Num(y)) => Slot::Bool(ordered(x, y, cmp)),
        _ => Slot::None,
    }
}

/// `-a` and `not a` (both engines use this definition).
pub(crate) fn unary(op: &Op, a: Slot) -> Slot {
    match (op, a) {
        (Op::Neg, Slot::Num(x)) => num::neg(x).map_or_else(Slot::Err, Slot::Num),
        (Op::Neg, other) if gate(&[other]).is_err() => other,
        (Op::Not, Slot::Bool(b)) => Slot::Bool(!b),
        (Op::Not, Slot::Err(_)) => a,
        _ => Slot::None,
    }
}

/// `a OP b` for the arithmetic, ordering and equality instructions (both engines use this
/// definition).
pub(crate) fn binary(ctx: &Ctx<'_>, op: &Op, a: Slot, b: Slot) -> Slot {
    match op {
        Op::Add => arith(a, b, num::add),
        Op::Sub => arith(a, b, num::sub),
        Op::Mul => arith(a, b, num::mul),
        Op::Div => arith(a, b, num::div),
        Op::Cmp(c) => compare(a, b, *c),
        Op::Eq(negate) => match gate(&[a, b]) {
            Err(s) => s,
            Ok(()) => ctx
                .equal(a, b)
                .map_or(Slot::None, |eq| Slot::Bool(eq != *negate)),
        },
        _ => Slot::None,
    }
}

/// `value in [items]`: `operands` is the value then the items.
pub(crate) fn in_list(ctx: &Ctx<'_>, operands: &[Slot]) -> Slot {
    match gate(operands) {
        Err(s) => s,
        Ok(()) => {
            let (value, items) = operands
                .split_first()
                .map_or((Slot::None, &[][..]), |(v, rest)| (*v, rest));
            Slot::Bool(
                items
                    .iter()
                    .any(|item| ctx.equal(value, *item) == Some(true)),
            )
        }
    }
}
