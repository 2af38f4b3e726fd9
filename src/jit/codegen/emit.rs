//! Instructions to Cranelift IR: the stack positions of one `Code` become SSA variables;
//! each instruction has an inline fast path for its common operands and calls the
//! interpreter's own functions for the rest.

use super::codegen;
use crate::compile::bytecode::{Cmp, Code, Op, Program};
use crate::jit::{BOOL, ERR_OVERFLOW, JitError, NONE, NUM, STR_CONST, STR_FIELD, STR_LABEL};
use crate::vm::{MAX_STR_FIELDS, NOT_INTERNED};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{Block, InstBuilder, MemFlagsData, StackSlot, Value};
use cranelift_frontend::{FunctionBuilder, Variable};
use std::collections::BTreeMap;

pub(super) fn int_cc(c: Cmp) -> IntCC {
    match c {
        Cmp::Lt => IntCC::SignedLessThan,
        Cmp::Le => IntCC::SignedLessThanOrEqual,
        Cmp::Gt => IntCC::SignedGreaterThan,
        Cmp::Ge => IntCC::SignedGreaterThanOrEqual,
    }
}

/// The function being built and what it needs at hand.
pub(super) struct Gen<'a, 'f> {
    pub(super) b: FunctionBuilder<'f>,
    pub(super) tags: Vec<Variable>,
    pub(super) vals: Vec<Variable>,
    pub(super) env: Value,
    /// Scratch memory: an out value, then room for an `in` list.
    pub(super) scratch: StackSlot,
    pub(super) program: &'a Program,
    pub(super) ptr: cranelift_codegen::ir::Type,
    pub(super) refs: HelperRefs,
}

pub(super) struct HelperRefs {
    pub(super) binary: cranelift_codegen::ir::FuncRef,
    pub(super) unary: cranelift_codegen::ir::FuncRef,
    pub(super) in_list: cranelift_codegen::ir::FuncRef,
    pub(super) field_eq_str: cranelift_codegen::ir::FuncRef,
    pub(super) mul_div: cranelift_codegen::ir::FuncRef,
}

pub(super) const FLAGS: MemFlagsData = MemFlagsData::trusted();

/// The `Env`'s own fields (its pointers) never change while native code runs: loads of
/// them may be shared and moved (the memory they point at is loaded with [`FLAGS`]).
const ENV: MemFlagsData = MemFlagsData::trusted().with_readonly().with_can_move();

impl Gen<'_, '_> {
    pub(super) fn var(&self, k: usize) -> Result<(Variable, Variable), JitError> {
        match (self.tags.get(k), self.vals.get(k)) {
            (Some(t), Some(v)) => Ok((*t, *v)),
            _ => Err(JitError::Bytecode("stack position out of range".into())),
        }
    }

    pub(super) fn get(&mut self, k: usize) -> Result<(Value, Value), JitError> {
        let (t, v) = self.var(k)?;
        Ok((self.b.use_var(t), self.b.use_var(v)))
    }

    pub(super) fn set(&mut self, k: usize, tag: Value, val: Value) -> Result<(), JitError> {
        let (t, v) = self.var(k)?;
        self.b.def_var(t, tag);
        self.b.def_var(v, val);
        Ok(())
    }

    /// Stack position `k` set to the number `r`, or to an overflow error when `overflow`.
    pub(super) fn set_checked(
        &mut self,
        k: usize,
        r: Value,
        overflow: Value,
    ) -> Result<(), JitError> {
        let err = self.b.ins().iconst(I64, ERR_OVERFLOW);
        let num = self.b.ins().iconst(I64, NUM);
        let zero = self.b.ins().iconst(I64, 0);
        let t = self.b.ins().select(overflow, err, num);
        let v = self.b.ins().select(overflow, zero, r);
        self.set(k, t, v)
    }

    pub(super) fn set_const(&mut self, k: usize, tag: i64, val: i64) -> Result<(), JitError> {
        let t = self.b.ins().iconst(I64, tag);
        let v = self.b.ins().iconst(I64, val);
        self.set(k, t, v)
    }

    /// A pointer field of the `Env`.
    pub(super) fn env_ptr(&mut self, field: i32) -> Value {
        let offset = field * i32::from(u8::try_from(self.ptr.bytes()).unwrap_or(8));
        self.b.ins().load(self.ptr, ENV, self.env, offset)
    }

    pub(super) fn scratch_addr(&mut self, offset: i32) -> Value {
        self.b.ins().stack_addr(self.ptr, self.scratch, offset)
    }

    /// Reads the `Flat` a helper wrote to the scratch's first 16 bytes.
    pub(super) fn read_out(&mut self) -> (Value, Value) {
        let t = self.b.ins().stack_load(self.ptr, I64, self.scratch, 0);
        let v = self.b.ins().stack_load(self.ptr, I64, self.scratch, 8);
        (t, v)
    }

    pub(super) fn bool_of(&mut self, flag: Value) -> Value {
        self.b.ins().uextend(I64, flag)
    }

    /// Loads a `Flat` from an array the `Env` points at, or no value past its end.
    pub(super) fn load_flat(
        &mut self,
        k: usize,
        field: i32,
        index: usize,
        len: usize,
    ) -> Result<(), JitError> {
        if index >= len {
            return self.set_const(k, NONE, 0);
        }
        let base = self.env_ptr(field);
        let offset = i32::try_from(index * 16).map_err(codegen)?;
        let t = self.b.ins().load(I64, FLAGS, base, offset);
        let v = self.b.ins().load(I64, FLAGS, base, offset + 8);
        self.set(k, t, v)
    }

    /// Two-way: `fast` when `cond`, else `slow`; each defines stack position `k`.
    pub(super) fn branch(
        &mut self,
        cond: Value,
        fast: impl FnOnce(&mut Self) -> Result<(), JitError>,
        slow: impl FnOnce(&mut Self) -> Result<(), JitError>,
    ) -> Result<(), JitError> {
        let (fast_block, slow_block, merge) = (
            self.b.create_block(),
            self.b.create_block(),
            self.b.create_block(),
        );
        self.b.ins().brif(cond, fast_block, &[], slow_block, &[]);
        self.b.switch_to_block(fast_block);
        fast(self)?;
        self.b.ins().jump(merge, &[]);
        self.b.switch_to_block(slow_block);
        slow(self)?;
        self.b.ins().jump(merge, &[]);
        self.b.switch_to_block(merge);
        Ok(())
    }

    /// The function's body: every instruction, jump targets placed, and the value left
    /// on the stack written to `out`.
    pub(super) fn body(
        &mut self,
        code: &Code,
        depth: &[usize],
        targets: &BTreeMap<usize, Block>,
        out: Value,
    ) -> Result<(), JitError> {
        let (t, v) = self.code(code, depth, targets)?;
        self.b.ins().store(FLAGS, t, out, 0);
        self.b.ins().store(FLAGS, v, out, 8);
        self.b.ins().return_(&[]);
        self.b.seal_all_blocks();
        Ok(())
    }

    /// One code block in line, on stack variables of its own: the value it leaves.
    pub(super) fn inline(&mut self, code: &Code) -> Result<(Value, Value), JitError> {
        let depth = super::depths(code)?;
        let max = usize::from(code.max_stack).max(1);
        self.tags = (0..max).map(|_| self.b.declare_var(I64)).collect();
        self.vals = (0..max).map(|_| self.b.declare_var(I64)).collect();
        let mut targets: BTreeMap<usize, Block> = BTreeMap::new();
        for op in &code.ops {
            if let Op::AndJump(t) | Op::OrJump(t) = op {
                targets
                    .entry(*t as usize)
                    .or_insert_with(|| self.b.create_block());
            }
        }
        self.code(code, &depth, &targets)
    }

    /// Every instruction of `code`, jump targets placed: the value left on the stack.
    fn code(
        &mut self,
        code: &Code,
        depth: &[usize],
        targets: &BTreeMap<usize, Block>,
    ) -> Result<(Value, Value), JitError> {
        for k in 0..usize::from(code.max_stack).max(1) {
            self.set_const(k, NONE, 0)?;
        }
        for (pc, op) in code.ops.iter().enumerate() {
            if let Some(&block) = targets.get(&pc) {
                self.b.ins().jump(block, &[]);
                self.b.switch_to_block(block);
            }
            let d = depth.get(pc).copied().unwrap_or(0);
            // `x * k` and `x / k` by a whole constant just pushed (no jump lands between):
            // Lever's fixed-point product and quotient are then plain integer ones.
            let prev = pc.checked_sub(1).and_then(|p| code.ops.get(p));
            match (op, prev) {
                (Op::Mul | Op::Div, Some(Op::Num(c)))
                    if !targets.contains_key(&pc) && whole_factor(op, *c).is_some() =>
                {
                    self.by_whole(matches!(op, Op::Div), d, *c)?;
                }
                _ => self.op(op, d, targets)?,
            }
        }
        if let Some(&block) = targets.get(&code.ops.len()) {
            self.b.ins().jump(block, &[]);
            self.b.switch_to_block(block);
        }
        let end = depth.last().copied().unwrap_or(0);
        Ok(match end.checked_sub(1) {
            Some(k) => self.get(k)?,
            None => (self.b.ins().iconst(I64, NONE), self.b.ins().iconst(I64, 0)),
        })
    }

    pub(super) fn op(
        &mut self,
        op: &Op,
        d: usize,
        targets: &BTreeMap<usize, Block>,
    ) -> Result<(), JitError> {
        let program = self.program;
        match *op {
            Op::Num(n) => self.set_const(d, NUM, n),
            Op::Bool(x) => self.set_const(d, BOOL, i64::from(x)),
            Op::Str(i) => self.set_const(d, STR_CONST, i64::from(i)),
            Op::StrField(i) => self.set_const(d, STR_FIELD, i64::from(i)),
            Op::Label(i) => self.set_const(d, STR_LABEL, i64::from(i)),
            Op::NumField(i) => self.num_field(d, i),
            Op::BoolField(i) => self.bool_field(d, i),
            Op::Agg(i) => self.load_flat(d, 3, usize::from(i), program.aggregates.len()),
            Op::Monitor(i) => self.load_flat(d, 4, usize::from(i), program.monitors.len()),
            Op::FieldCmpNum(f, c, k) => self.field_cmp_num(d, f, c, k),
            Op::FieldEqStr(f, c, negate) => self.field_eq_str(d, f, c, negate),
            Op::Neg | Op::Not => self.unary(d, matches!(op, Op::Not)),
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Cmp(_) | Op::Eq(_) => self.binary(op, d),
            Op::In(n) => self.in_list(d, n),
            Op::AndJump(target) | Op::OrJump(target) => {
                self.short_circuit(d, matches!(op, Op::AndJump(_)), target, targets)
            }
        }
    }

    /// A number field of the step (no value past the program's fields).
    pub(super) fn num_field(&mut self, d: usize, i: u16) -> Result<(), JitError> {
        let program = self.program;
        if i >= program.num_fields {
            return self.set_const(d, NONE, 0);
        }
        let base = self.env_ptr(0);
        let v = self.b.ins().load(I64, ENV, base, i32::from(i) * 8);
        let t = self.b.ins().iconst(I64, NUM);
        self.set(d, t, v)
    }

    /// A boolean field of the step.
    pub(super) fn bool_field(&mut self, d: usize, i: u16) -> Result<(), JitError> {
        let program = self.program;
        if i >= program.bool_fields {
            return self.set_const(d, NONE, 0);
        }
        let base = self.env_ptr(1);
        let v = self.b.ins().uload8(I64, ENV, base, i32::from(i));
        let t = self.b.ins().iconst(I64, BOOL);
        self.set(d, t, v)
    }

    /// `field <cmp> constant`, fused.
    pub(super) fn field_cmp_num(
        &mut self,
        d: usize,
        f: u16,
        c: Cmp,
        k: i64,
    ) -> Result<(), JitError> {
        let program = self.program;
        if f >= program.num_fields {
            return self.set_const(d, NONE, 0);
        }
        let base = self.env_ptr(0);
        let x = self.b.ins().load(I64, ENV, base, i32::from(f) * 8);
        let flag = self.b.ins().icmp_imm_s(int_cc(c), x, k);
        let v = self.bool_of(flag);
        let t = self.b.ins().iconst(I64, BOOL);
        self.set(d, t, v)
    }

    /// `field == "constant"`: interned ids compared inline, the text by the slow path.
    pub(super) fn field_eq_str(
        &mut self,
        d: usize,
        f: u16,
        c: u32,
        negate: bool,
    ) -> Result<(), JitError> {
        let t = self.b.ins().iconst(I64, BOOL);
        let slow = |g: &mut Self| -> Result<(), JitError> {
            let args = [
                g.env,
                g.b.ins().iconst(I64, i64::from(f)),
                g.b.ins().iconst(I64, i64::from(c)),
                g.b.ins().iconst(I64, i64::from(negate)),
            ];
            let call = g.b.ins().call(g.refs.field_eq_str, &args);
            let v = g.b.inst_results(call).first().copied();
            let v = v.ok_or_else(|| JitError::Codegen("helper result".into()))?;
            g.set(d, t, v)
        };
        if usize::from(f) >= MAX_STR_FIELDS {
            return slow(self);
        }
        let base = self.env_ptr(2);
        let id = self.b.ins().uload32(ENV, base, i32::from(f) * 4);
        let not_interned = self
            .b
            .ins()
            .icmp_imm_s(IntCC::Equal, id, i64::from(NOT_INTERNED));
        self.branch(not_interned, slow, |g| {
            let cc = if negate {
                IntCC::NotEqual
            } else {
                IntCC::Equal
            };
            let flag = g.b.ins().icmp_imm_s(cc, id, i64::from(c));
            let v = g.bool_of(flag);
            g.set(d, t, v)
        })
    }

    /// `-x` and `not x`: inline for a number (not `i64::MIN`) or a boolean.
    pub(super) fn unary(&mut self, d: usize, is_not: bool) -> Result<(), JitError> {
        let k = d
            .checked_sub(1)
            .ok_or_else(|| JitError::Bytecode("underflow".into()))?;
        let (t, v) = self.get(k)?;
        let fast_cond = if is_not {
            self.b.ins().icmp_imm_s(IntCC::Equal, t, BOOL)
        } else {
            let num = self.b.ins().icmp_imm_s(IntCC::Equal, t, NUM);
            let not_min = self.b.ins().icmp_imm_s(IntCC::NotEqual, v, i64::MIN);
            self.b.ins().band(num, not_min)
        };
        self.branch(
            fast_cond,
            |g| {
                let r = if is_not {
                    g.b.ins().bxor_imm_s(v, 1)
                } else {
                    g.b.ins().ineg(v)
                };
                g.set(k, t, r)
            },
            |g| {
                let out = g.scratch_addr(0);
                let code = g.b.ins().iconst(I64, i64::from(is_not));
                g.b.ins().call(g.refs.unary, &[code, t, v, out]);
                let (rt, rv) = g.read_out();
                g.set(k, rt, rv)
            },
        )
    }

    /// `+ - * /`, comparisons and `==`/`!=`: inline for two numbers (`*` and `/` call
    /// Lever's exact arithmetic), everything else by the slow path.
    pub(super) fn binary(&mut self, op: &Op, d: usize) -> Result<(), JitError> {
        let k = d
            .checked_sub(2)
            .ok_or_else(|| JitError::Bytecode("underflow".into()))?;
        let (ta, va) = self.get(k)?;
        let (tb, vb) = self.get(k + 1)?;
        let code: i64 = match op {
            Op::Add => 0,
            Op::Sub => 1,
            Op::Mul => 2,
            Op::Div => 3,
            Op::Cmp(Cmp::Lt) => 4,
            Op::Cmp(Cmp::Le) => 5,
            Op::Cmp(Cmp::Gt) => 6,
            Op::Cmp(Cmp::Ge) => 7,
            Op::Eq(false) => 8,
            _ => 9,
        };
        let a_num = self.b.ins().icmp_imm_s(IntCC::Equal, ta, NUM);
        let b_num = self.b.ins().icmp_imm_s(IntCC::Equal, tb, NUM);
        let both = self.b.ins().band(a_num, b_num);
        self.branch(
            both,
            |g| match *op {
                Op::Add | Op::Sub => {
                    let (r, overflow) = if matches!(op, Op::Add) {
                        g.b.ins().sadd_overflow(va, vb)
                    } else {
                        g.b.ins().ssub_overflow(va, vb)
                    };
                    g.set_checked(k, r, overflow)
                }
                Op::Mul | Op::Div => {
                    let out = g.scratch_addr(0);
                    let c = g.b.ins().iconst(I64, code);
                    g.b.ins().call(g.refs.mul_div, &[c, va, vb, out]);
                    let (t, v) = g.read_out();
                    g.set(k, t, v)
                }
                Op::Cmp(c) => {
                    let flag = g.b.ins().icmp(int_cc(c), va, vb);
                    let v = g.bool_of(flag);
                    let t = g.b.ins().iconst(I64, BOOL);
                    g.set(k, t, v)
                }
                _ => {
                    let cc = if code == 8 {
                        IntCC::Equal
                    } else {
                        IntCC::NotEqual
                    };
                    let flag = g.b.ins().icmp(cc, va, vb);
                    let v = g.bool_of(flag);
                    let t = g.b.ins().iconst(I64, BOOL);
                    g.set(k, t, v)
                }
            },
            |g| {
                let out = g.scratch_addr(0);
                let c = g.b.ins().iconst(I64, code);
                g.b.ins()
                    .call(g.refs.binary, &[g.env, c, ta, va, tb, vb, out]);
                let (t, v) = g.read_out();
                g.set(k, t, v)
            },
        )
    }

    /// `x * c` or `x / c` where `c` is a whole constant ([`whole_factor`]): in line for a
    /// number (`×` checks overflow; `÷` by a constant neither 0 nor -1 cannot fail),
    /// everything else by the slow path.
    fn by_whole(&mut self, div: bool, d: usize, c: i64) -> Result<(), JitError> {
        let k = d
            .checked_sub(2)
            .ok_or_else(|| JitError::Bytecode("underflow".into()))?;
        let n = whole_factor(if div { &Op::Div } else { &Op::Mul }, c)
            .ok_or_else(|| JitError::Bytecode("not a whole factor".into()))?;
        let (ta, va) = self.get(k)?;
        let is_num = self.b.ins().icmp_imm_s(IntCC::Equal, ta, NUM);
        self.branch(
            is_num,
            |g| {
                let factor = g.b.ins().iconst(I64, n);
                if div {
                    let q = g.b.ins().sdiv(va, factor);
                    let t = g.b.ins().iconst(I64, NUM);
                    return g.set(k, t, q);
                }
                let (r, overflow) = g.b.ins().smul_overflow(va, factor);
                g.set_checked(k, r, overflow)
            },
            |g| {
                let out = g.scratch_addr(0);
                let code = g.b.ins().iconst(I64, if div { 3 } else { 2 });
                let tb = g.b.ins().iconst(I64, NUM);
                let vb = g.b.ins().iconst(I64, c);
                g.b.ins()
                    .call(g.refs.binary, &[g.env, code, ta, va, tb, vb, out]);
                let (t, v) = g.read_out();
                g.set(k, t, v)
            },
        )
    }

    /// `x in [a, b, ..]`, by the slow path.
    pub(super) fn in_list(&mut self, d: usize, n: u16) -> Result<(), JitError> {
        let count = usize::from(n) + 1;
        let base = d
            .checked_sub(count)
            .ok_or_else(|| JitError::Bytecode("underflow".into()))?;
        for j in 0..count {
            let (t, v) = self.get(base + j)?;
            let at = i32::try_from(16 + 16 * j).map_err(codegen)?;
            self.b.ins().stack_store(self.ptr, t, self.scratch, at);
            self.b.ins().stack_store(self.ptr, v, self.scratch, at + 8);
        }
        let items = self.scratch_addr(16);
        let out = self.scratch_addr(0);
        let c = self
            .b
            .ins()
            .iconst(I64, i64::try_from(count).map_err(codegen)?);
        self.b
            .ins()
            .call(self.refs.in_list, &[self.env, items, c, out]);
        let (t, v) = self.read_out();
        self.set(base, t, v)
    }

    /// `and`/`or`: jump past the right side when the left decides.
    pub(super) fn short_circuit(
        &mut self,
        d: usize,
        and: bool,
        target: u32,
        targets: &BTreeMap<usize, Block>,
    ) -> Result<(), JitError> {
        let k = d
            .checked_sub(1)
            .ok_or_else(|| JitError::Bytecode("underflow".into()))?;
        let go_on = i64::from(and);
        let (t, v) = self.get(k)?;
        let is_bool = self.b.ins().icmp_imm_s(IntCC::Equal, t, BOOL);
        let is_go_on = self.b.ins().icmp_imm_s(IntCC::Equal, v, go_on);
        let cond = self.b.ins().band(is_bool, is_go_on);
        let next = self.b.create_block();
        let jump_to = *targets
            .get(&(target as usize))
            .ok_or_else(|| JitError::Bytecode("jump target".into()))?;
        self.b.ins().brif(cond, next, &[], jump_to, &[]);
        self.b.switch_to_block(next);
        Ok(())
    }
}

/// The integer `n` when `c` is the whole number `n` (10⁹ × `n` in fixed point) and `x * c`
/// or `x / c` is exactly `x × n` or `x ÷ n` truncated (Lever's `a × b ÷ 10⁹` and
/// `a × 10⁹ ÷ b`); for `÷`, `n` is neither 0 (an error) nor -1 (`i64::MIN ÷ -1`).
pub(super) fn whole_factor(op: &Op, c: i64) -> Option<i64> {
    let scale = crate::base::num::SCALE;
    if c % scale != 0 {
        return None;
    }
    let n = c / scale;
    match op {
        Op::Mul => Some(n),
        Op::Div if n != 0 && n != -1 => Some(n),
        _ => None,
    }
}
