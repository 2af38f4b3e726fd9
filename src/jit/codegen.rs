//! Bytecode to Cranelift IR: one native function per `Code`.

use super::{
    BOOL, Compiled, ERR_OVERFLOW, Flat, JitError, NONE, NUM, NativeFn, STR_CONST, STR_FIELD,
    STR_LABEL, Stats,
};
use crate::compile::bytecode::{Cmp, Code, FieldSource, Op, Program};
use crate::vm::{MAX_STR_FIELDS, NOT_INTERNED};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{
    AbiParam, Block, InstBuilder, MemFlagsData, StackSlot, StackSlotData, StackSlotKind, Value,
};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};
use std::collections::BTreeMap;

fn codegen(e: impl std::fmt::Display) -> JitError {
    JitError::Codegen(e.to_string())
}

/// The Rust functions native code calls, declared in the module.
struct Helpers {
    binary: FuncId,
    unary: FuncId,
    in_list: FuncId,
    field_eq_str: FuncId,
    mul_div: FuncId,
}

/// Compiles every code block of a program. Fails rather than leave any block to the
/// interpreter.
pub fn compile(program: &Program) -> Result<Compiled, JitError> {
    let start = std::time::Instant::now();
    let mut flags = settings::builder();
    flags.set("opt_level", "speed").map_err(codegen)?;
    let isa = cranelift_native::builder()
        .map_err(|e| JitError::Host(e.to_string()))?
        .finish(settings::Flags::new(flags))
        .map_err(codegen)?;
    let mut jb = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    jb.symbol("lever_slow_binary", super::slow_binary as *const u8);
    jb.symbol("lever_slow_unary", super::slow_unary as *const u8);
    jb.symbol("lever_slow_in", super::slow_in as *const u8);
    jb.symbol(
        "lever_slow_field_eq_str",
        super::slow_field_eq_str as *const u8,
    );
    jb.symbol("lever_mul_div", super::mul_div as *const u8);
    let mut module = JITModule::new(jb);
    let ptr = module.target_config().pointer_type();
    let mut import = |name: &str, params: &[cranelift_codegen::ir::Type], ret: bool| {
        let mut sig = module.make_signature();
        sig.params.extend(params.iter().map(|t| AbiParam::new(*t)));
        if ret {
            sig.returns.push(AbiParam::new(I64));
        }
        module
            .declare_function(name, Linkage::Import, &sig)
            .map_err(codegen)
    };
    let helpers = Helpers {
        binary: import(
            "lever_slow_binary",
            &[ptr, I64, I64, I64, I64, I64, ptr],
            false,
        )?,
        unary: import("lever_slow_unary", &[I64, I64, I64, ptr], false)?,
        in_list: import("lever_slow_in", &[ptr, ptr, I64, ptr], false)?,
        field_eq_str: import("lever_slow_field_eq_str", &[ptr, I64, I64, I64], true)?,
        mul_div: import("lever_mul_div", &[I64, I64, I64, ptr], false)?,
    };
    let mut n = 0usize;
    let mut one = |module: &mut JITModule, code: &Code| -> Result<FuncId, JitError> {
        n += 1;
        function(module, &helpers, program, code, n)
    };
    let mut field_ids = Vec::new();
    for f in &program.fields {
        field_ids.push(match &f.source {
            FieldSource::Derived(code) => Some(one(&mut module, code)?),
            _ => None,
        });
    }
    let mut filter_ids = Vec::new();
    let mut arg_ids = Vec::new();
    for a in &program.aggregates {
        filter_ids.push(a.filter.as_ref().map(|c| one(&mut module, c)).transpose()?);
        arg_ids.push(a.arg.as_ref().map(|c| one(&mut module, c)).transpose()?);
    }
    let mut monitor_ids = Vec::new();
    for m in &program.monitors {
        monitor_ids.push(one(&mut module, &m.code)?);
    }
    module.finalize_definitions().map_err(codegen)?;
    let native = |id: FuncId| -> NativeFn {
        let p = module.get_finalized_function(id);
        // SAFETY: `p` is a function this module just defined with the signature
        // `(env: ptr, out: ptr) -> ()` in the host's C calling convention.
        unsafe { std::mem::transmute::<*const u8, NativeFn>(p) }
    };
    let fields: Vec<Option<NativeFn>> = field_ids.iter().map(|i| i.map(native)).collect();
    let filters: Vec<Option<NativeFn>> = filter_ids.iter().map(|i| i.map(native)).collect();
    let args: Vec<Option<NativeFn>> = arg_ids.iter().map(|i| i.map(native)).collect();
    let monitors: Vec<NativeFn> = monitor_ids.iter().map(|i| native(*i)).collect();
    let compiled_blocks = fields.iter().flatten().count()
        + filters.iter().flatten().count()
        + args.iter().flatten().count()
        + monitors.len();
    let stats = Stats {
        code_blocks: super::code_blocks(program),
        native: compiled_blocks,
        compile_micros: start.elapsed().as_micros(),
        policies: per_policy(program),
    };
    Ok(Compiled {
        fields,
        filters,
        args,
        monitors,
        stats,
        shape: super::Shape::of(program),
        _module: super::Owner::new(module),
    })
}

/// For each policy: the monitors its limits reach (through other monitors too), and the
/// native blocks behind them (the monitors, the aggregates they read, derived fields).
fn per_policy(program: &Program) -> Vec<(String, usize, usize)> {
    let reads = |code: &Code, monitors: &mut Vec<usize>, aggs: &mut Vec<usize>| {
        for op in &code.ops {
            match op {
                Op::Monitor(i) => monitors.push(usize::from(*i)),
                Op::Agg(i) => aggs.push(usize::from(*i)),
                _ => {}
            }
        }
    };
    let derived = program
        .fields
        .iter()
        .filter(|f| matches!(f.source, FieldSource::Derived(_)))
        .count();
    program
        .policies
        .iter()
        .map(|p| {
            let mut todo: Vec<usize> = p.limits.iter().map(|l| usize::from(l.monitor)).collect();
            let mut seen = std::collections::BTreeSet::new();
            let mut aggs = Vec::new();
            while let Some(m) = todo.pop() {
                if !seen.insert(m) {
                    continue;
                }
                if let Some(desc) = program.monitors.get(m) {
                    reads(&desc.code, &mut todo, &mut aggs);
                }
            }
            aggs.sort_unstable();
            aggs.dedup();
            let agg_blocks: usize = aggs
                .iter()
                .filter_map(|i| program.aggregates.get(*i))
                .map(|a| usize::from(a.filter.is_some()) + usize::from(a.arg.is_some()))
                .sum();
            (
                p.name.clone(),
                seen.len(),
                seen.len() + agg_blocks + derived,
            )
        })
        .collect()
}

/// The stack depth before each instruction (and at the end), checking that every path
/// into an instruction agrees.
fn depths(code: &Code) -> Result<Vec<usize>, JitError> {
    let n = code.ops.len();
    let mut depth: Vec<Option<usize>> = vec![None; n + 1];
    let bad = |why: &str| JitError::Bytecode(why.to_string());
    let set = |depth: &mut Vec<Option<usize>>, at: usize, d: usize| -> Result<(), JitError> {
        match depth.get_mut(at) {
            Some(slot @ None) => {
                *slot = Some(d);
                Ok(())
            }
            Some(Some(old)) if *old == d => Ok(()),
            _ => Err(bad("stack depths disagree at a jump target")),
        }
    };
    set(&mut depth, 0, 0)?;
    for (pc, op) in code.ops.iter().enumerate() {
        let d = depth
            .get(pc)
            .copied()
            .flatten()
            .ok_or_else(|| bad("unreachable instruction"))?;
        if let Op::AndJump(t) | Op::OrJump(t) = op {
            let t = *t as usize;
            if t <= pc || t > n {
                return Err(bad("a jump that does not go forward"));
            }
            set(&mut depth, t, d)?;
        }
        let after = usize::try_from(i64::try_from(d).unwrap_or(i64::MAX) + op.stack_effect())
            .map_err(|_| bad("stack underflow"))?;
        if after > usize::from(code.max_stack).max(1) {
            return Err(bad("deeper than the code's declared stack"));
        }
        set(&mut depth, pc + 1, after)?;
    }
    depth
        .into_iter()
        .map(|d| d.ok_or_else(|| bad("unreachable end")))
        .collect()
}

fn int_cc(c: Cmp) -> IntCC {
    match c {
        Cmp::Lt => IntCC::SignedLessThan,
        Cmp::Le => IntCC::SignedLessThanOrEqual,
        Cmp::Gt => IntCC::SignedGreaterThan,
        Cmp::Ge => IntCC::SignedGreaterThanOrEqual,
    }
}

/// The function being built and what it needs at hand.
struct Gen<'a, 'f> {
    b: FunctionBuilder<'f>,
    tags: Vec<Variable>,
    vals: Vec<Variable>,
    env: Value,
    /// Scratch memory: an out value, then room for an `in` list.
    scratch: StackSlot,
    program: &'a Program,
    ptr: cranelift_codegen::ir::Type,
    refs: HelperRefs,
}

struct HelperRefs {
    binary: cranelift_codegen::ir::FuncRef,
    unary: cranelift_codegen::ir::FuncRef,
    in_list: cranelift_codegen::ir::FuncRef,
    field_eq_str: cranelift_codegen::ir::FuncRef,
    mul_div: cranelift_codegen::ir::FuncRef,
}

const FLAGS: MemFlagsData = MemFlagsData::trusted();

impl Gen<'_, '_> {
    fn var(&self, k: usize) -> Result<(Variable, Variable), JitError> {
        match (self.tags.get(k), self.vals.get(k)) {
            (Some(t), Some(v)) => Ok((*t, *v)),
            _ => Err(JitError::Bytecode("stack position out of range".into())),
        }
    }

    fn get(&mut self, k: usize) -> Result<(Value, Value), JitError> {
        let (t, v) = self.var(k)?;
        Ok((self.b.use_var(t), self.b.use_var(v)))
    }

    fn set(&mut self, k: usize, tag: Value, val: Value) -> Result<(), JitError> {
        let (t, v) = self.var(k)?;
        self.b.def_var(t, tag);
        self.b.def_var(v, val);
        Ok(())
    }

    fn set_const(&mut self, k: usize, tag: i64, val: i64) -> Result<(), JitError> {
        let t = self.b.ins().iconst(I64, tag);
        let v = self.b.ins().iconst(I64, val);
        self.set(k, t, v)
    }

    /// A pointer field of the `Env`.
    fn env_ptr(&mut self, field: i32) -> Value {
        let offset = field * i32::from(u8::try_from(self.ptr.bytes()).unwrap_or(8));
        self.b.ins().load(self.ptr, FLAGS, self.env, offset)
    }

    fn scratch_addr(&mut self, offset: i32) -> Value {
        self.b.ins().stack_addr(self.ptr, self.scratch, offset)
    }

    /// Reads the `Flat` a helper wrote to the scratch's first 16 bytes.
    fn read_out(&mut self) -> (Value, Value) {
        let t = self.b.ins().stack_load(self.ptr, I64, self.scratch, 0);
        let v = self.b.ins().stack_load(self.ptr, I64, self.scratch, 8);
        (t, v)
    }

    fn bool_of(&mut self, flag: Value) -> Value {
        self.b.ins().uextend(I64, flag)
    }

    /// Loads a `Flat` from an array the `Env` points at, or no value past its end.
    fn load_flat(
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
    fn branch(
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

    fn op(&mut self, op: &Op, d: usize, targets: &BTreeMap<usize, Block>) -> Result<(), JitError> {
        let program = self.program;
        match *op {
            Op::Num(n) => self.set_const(d, NUM, n),
            Op::Bool(x) => self.set_const(d, BOOL, i64::from(x)),
            Op::Str(i) => self.set_const(d, STR_CONST, i64::from(i)),
            Op::StrField(i) => self.set_const(d, STR_FIELD, i64::from(i)),
            Op::Label(i) => self.set_const(d, STR_LABEL, i64::from(i)),
            Op::NumField(i) => {
                if i >= program.num_fields {
                    return self.set_const(d, NONE, 0);
                }
                let base = self.env_ptr(0);
                let v = self.b.ins().load(I64, FLAGS, base, i32::from(i) * 8);
                let t = self.b.ins().iconst(I64, NUM);
                self.set(d, t, v)
            }
            Op::BoolField(i) => {
                if i >= program.bool_fields {
                    return self.set_const(d, NONE, 0);
                }
                let base = self.env_ptr(1);
                let v = self.b.ins().uload8(I64, FLAGS, base, i32::from(i));
                let t = self.b.ins().iconst(I64, BOOL);
                self.set(d, t, v)
            }
            Op::Agg(i) => self.load_flat(d, 3, usize::from(i), program.aggregates.len()),
            Op::Monitor(i) => self.load_flat(d, 4, usize::from(i), program.monitors.len()),
            Op::FieldCmpNum(f, c, k) => {
                if f >= program.num_fields {
                    return self.set_const(d, NONE, 0);
                }
                let base = self.env_ptr(0);
                let x = self.b.ins().load(I64, FLAGS, base, i32::from(f) * 8);
                let flag = self.b.ins().icmp_imm_s(int_cc(c), x, k);
                let v = self.bool_of(flag);
                let t = self.b.ins().iconst(I64, BOOL);
                self.set(d, t, v)
            }
            Op::FieldEqStr(f, c, negate) => {
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
                let id = self.b.ins().uload32(FLAGS, base, i32::from(f) * 4);
                let not_interned =
                    self.b
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
            Op::Neg | Op::Not => {
                let k = d
                    .checked_sub(1)
                    .ok_or_else(|| JitError::Bytecode("underflow".into()))?;
                let (t, v) = self.get(k)?;
                let fast_cond = if matches!(op, Op::Not) {
                    self.b.ins().icmp_imm_s(IntCC::Equal, t, BOOL)
                } else {
                    let num = self.b.ins().icmp_imm_s(IntCC::Equal, t, NUM);
                    let not_min = self.b.ins().icmp_imm_s(IntCC::NotEqual, v, i64::MIN);
                    self.b.ins().band(num, not_min)
                };
                let is_not = matches!(op, Op::Not);
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
            Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Cmp(_) | Op::Eq(_) => {
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
                            let err = g.b.ins().iconst(I64, ERR_OVERFLOW);
                            let num = g.b.ins().iconst(I64, NUM);
                            let zero = g.b.ins().iconst(I64, 0);
                            let t = g.b.ins().select(overflow, err, num);
                            let v = g.b.ins().select(overflow, zero, r);
                            g.set(k, t, v)
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
            Op::In(n) => {
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
            Op::AndJump(target) | Op::OrJump(target) => {
                let k = d
                    .checked_sub(1)
                    .ok_or_else(|| JitError::Bytecode("underflow".into()))?;
                let go_on = i64::from(matches!(op, Op::AndJump(_)));
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
    }
}

fn function(
    module: &mut JITModule,
    helpers: &Helpers,
    program: &Program,
    code: &Code,
    n: usize,
) -> Result<FuncId, JitError> {
    let depth = depths(code)?;
    let ptr = module.target_config().pointer_type();
    let mut ctx = module.make_context();
    ctx.func.signature.params.push(AbiParam::new(ptr));
    ctx.func.signature.params.push(AbiParam::new(ptr));
    let mut fbc = FunctionBuilderContext::new();
    let refs = HelperRefs {
        binary: module.declare_func_in_func(helpers.binary, &mut ctx.func),
        unary: module.declare_func_in_func(helpers.unary, &mut ctx.func),
        in_list: module.declare_func_in_func(helpers.in_list, &mut ctx.func),
        field_eq_str: module.declare_func_in_func(helpers.field_eq_str, &mut ctx.func),
        mul_div: module.declare_func_in_func(helpers.mul_div, &mut ctx.func),
    };
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fbc);
    let max = usize::from(code.max_stack).max(1);
    let tags: Vec<Variable> = (0..max).map(|_| b.declare_var(I64)).collect();
    let vals: Vec<Variable> = (0..max).map(|_| b.declare_var(I64)).collect();
    let mut targets: BTreeMap<usize, Block> = BTreeMap::new();
    for op in &code.ops {
        if let Op::AndJump(t) | Op::OrJump(t) = op {
            targets
                .entry(*t as usize)
                .or_insert_with(|| b.create_block());
        }
    }
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let params = b.block_params(entry).to_vec();
    let (Some(&env), Some(&out)) = (params.first(), params.get(1)) else {
        return Err(JitError::Codegen("function parameters".into()));
    };
    let scratch_bytes = u32::try_from(16 + 16 * (max + 1)).map_err(codegen)?;
    let scratch = b.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        scratch_bytes,
        3,
    ));
    let mut g = Gen {
        b,
        tags,
        vals,
        env,
        scratch,
        program,
        ptr,
        refs,
    };
    for k in 0..max {
        g.set_const(k, NONE, 0)?;
    }
    for (pc, op) in code.ops.iter().enumerate() {
        if let Some(&block) = targets.get(&pc) {
            g.b.ins().jump(block, &[]);
            g.b.switch_to_block(block);
        }
        let d = depth.get(pc).copied().unwrap_or(0);
        g.op(op, d, &targets)?;
    }
    if let Some(&block) = targets.get(&code.ops.len()) {
        g.b.ins().jump(block, &[]);
        g.b.switch_to_block(block);
    }
    let end = depth.last().copied().unwrap_or(0);
    let (t, v) = match end.checked_sub(1) {
        Some(k) => g.get(k)?,
        None => (g.b.ins().iconst(I64, NONE), g.b.ins().iconst(I64, 0)),
    };
    g.b.ins().store(FLAGS, t, out, 0);
    g.b.ins().store(FLAGS, v, out, 8);
    g.b.ins().return_(&[]);
    g.b.seal_all_blocks();
    let config = module.target_config();
    g.b.finalize(config);
    let name = format!("lever_code_{n}");
    let id = module
        .declare_function(&name, Linkage::Local, &ctx.func.signature)
        .map_err(codegen)?;
    module.define_function(id, &mut ctx).map_err(codegen)?;
    module.clear_context(&mut ctx);
    Ok(id)
}

/// The value a native function computes, as a `Flat`.
pub(super) fn call(f: NativeFn, env: &super::Env<'_>) -> Flat {
    let mut out = Flat::NONE;
    // SAFETY: `f` was compiled by this module for a program of the shape its `Compiled`
    // checked `env`'s buffers against (`Compiled::fits`) before building `env`.
    unsafe { f(env, &mut out) };
    out
}
