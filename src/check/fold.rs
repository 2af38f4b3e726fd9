//! Folding: constants evaluated exactly, at check time, with the runtime's arithmetic.

use super::Checker;
use super::hir::{self, ExprKind, Value};
use super::resolve::{Cx, Place};
use crate::base::diag::{Code, Diagnostic};
use crate::base::num::{self, ArithError};
use crate::syntax::ast::{self, BinOp, Unit};

impl<'a> Checker<'a> {
    // ----- constants ----------------------------------------------------------------

    /// Folds a constant expression exactly; reports overflow and division by zero.
    pub(super) fn fold(&mut self, e: &hir::Expr) -> Option<Value> {
        match eval_const(e) {
            Ok(v) => Some(v),
            Err(FoldError::Arith(err)) => {
                let what = match err {
                    ArithError::Overflow => "overflows",
                    ArithError::DivisionByZero => "divides by zero",
                };
                self.error(Diagnostic::new(
                    Code::ConstEval,
                    e.span,
                    format!("this constant {what}"),
                ));
                None
            }
            Err(FoldError::NotConstant) => {
                self.error(Diagnostic::new(
                    Code::NotConstant,
                    e.span,
                    "value is not a constant",
                ));
                None
            }
        }
    }

    /// Lowers and folds a constant number of the given unit (limit values, ceilings).
    pub(super) fn constant_number(
        &mut self,
        e: &ast::Expr,
        cx: Cx,
        want: Unit,
        what: &str,
    ) -> Option<i64> {
        let lowered = self.lower(e, cx.at(Place::Constant))?;
        if lowered.unit != want {
            let help = match want {
                Unit::Usd => "write the value in dollars, e.g. `$5.00`",
                Unit::Tokens => "write the value in tokens, e.g. `200_000 tokens`",
                Unit::Duration => "write the value as a duration, e.g. `30s`",
                _ => "write a plain number",
            };
            self.error(
                Diagnostic::new(
                    Code::UnitMismatch,
                    e.span,
                    format!(
                        "unit mismatch: {what} is `{}`, the monitor is `{}`",
                        lowered.unit.name(),
                        want.name()
                    ),
                )
                .with_help(help),
            );
            return None;
        }
        match self.fold(&lowered)? {
            Value::Num(n) => Some(n),
            _ => None,
        }
    }
}

/// Whether an expression reads steps (an aggregate, or a monitor that does).
pub(super) fn reads_steps(e: &hir::Expr) -> bool {
    match &e.kind {
        ExprKind::Agg { .. } | ExprKind::Monitor(_) => true,
        ExprKind::Const(_) | ExprKind::Field(_) | ExprKind::Label(_) => false,
        ExprKind::Neg(x) | ExprKind::Not(x) => reads_steps(x),
        ExprKind::Binary(_, l, r) => reads_steps(l) || reads_steps(r),
        ExprKind::In(l, list) => reads_steps(l) || list.iter().any(reads_steps),
    }
}

pub(super) enum FoldError {
    Arith(ArithError),
    NotConstant,
}

impl From<ArithError> for FoldError {
    fn from(e: ArithError) -> FoldError {
        FoldError::Arith(e)
    }
}

/// Evaluates an expression made only of constants.
pub(super) fn eval_const(e: &hir::Expr) -> Result<Value, FoldError> {
    match &e.kind {
        ExprKind::Const(v) => Ok(v.clone()),
        ExprKind::Neg(x) => match eval_const(x)? {
            Value::Num(n) => Ok(Value::Num(num::neg(n)?)),
            _ => Err(FoldError::NotConstant),
        },
        ExprKind::Not(x) => match eval_const(x)? {
            Value::Bool(b) => Ok(Value::Bool(!b)),
            _ => Err(FoldError::NotConstant),
        },
        ExprKind::Binary(op, l, r) => eval_binary(*op, eval_const(l)?, eval_const(r)?),
        ExprKind::In(l, list) => {
            let left = eval_const(l)?;
            for item in list {
                if eval_const(item)? == left {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        ExprKind::Field(_) | ExprKind::Label(_) | ExprKind::Monitor(_) | ExprKind::Agg { .. } => {
            Err(FoldError::NotConstant)
        }
    }
}

pub(super) fn eval_binary(op: BinOp, l: Value, r: Value) -> Result<Value, FoldError> {
    use Value::{Bool, Num};
    Ok(match (op, l, r) {
        (BinOp::And, Bool(a), Bool(b)) => Bool(a && b),
        (BinOp::Or, Bool(a), Bool(b)) => Bool(a || b),
        (BinOp::Eq, a, b) => Bool(a == b),
        (BinOp::Ne, a, b) => Bool(a != b),
        (BinOp::Lt, Num(a), Num(b)) => Bool(a < b),
        (BinOp::Le, Num(a), Num(b)) => Bool(a <= b),
        (BinOp::Gt, Num(a), Num(b)) => Bool(a > b),
        (BinOp::Ge, Num(a), Num(b)) => Bool(a >= b),
        (BinOp::Add, Num(a), Num(b)) => Num(num::add(a, b)?),
        (BinOp::Sub, Num(a), Num(b)) => Num(num::sub(a, b)?),
        (BinOp::Mul, Num(a), Num(b)) => Num(num::mul(a, b)?),
        (BinOp::Div, Num(a), Num(b)) => Num(num::div(a, b)?),
        _ => return Err(FoldError::NotConstant),
    })
}
