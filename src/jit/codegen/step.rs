//! One native function for a whole step of one layout: every aggregate updated, every
//! monitor computed, and every judged limit compared with its threshold.
//!
//! `extern "C" fn(env, cells, zones, attention, at) -> count`. Code blocks are emitted in
//! line (no call per filter, argument or monitor). `sum` and `count` are updated in line
//! (overflow-checked); a `rate` calls [`super::super::window_step`], which moves its
//! window on; the other aggregates, and any term that is not a plain number, call
//! [`super::super::agg_step`], the interpreter's own accumulator. Each aggregate's
//! value is written to `env.aggs` and each monitor's to `env.monitors`. Then, for each
//! judged limit `k` of the layout, `k` is written to `attention[count]` and `count` grows
//! unless the limit is quiet: a number below its threshold while its zone is `below`.
//! Budget limits are always written: their counters are outside the step.

use super::emit::{FLAGS, Gen, HelperRefs};
use super::{Helpers, codegen};
use crate::base::lang::AggFunc;
use crate::base::num::SCALE;
use crate::compile::bytecode::{AggDesc, Program};
use crate::jit::{BOOL, ERR_OVERFLOW, JitError, Judge, NONE, NUM};
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::types::{I8, I16, I64};
use cranelift_codegen::ir::{AbiParam, InstBuilder, StackSlotData, StackSlotKind, Value};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::JITModule;
use cranelift_module::{FuncId, Linkage, Module};

/// Bytes of one aggregate's state ([`crate::vm::AggState`]): a tag and two words.
pub(crate) const CELL_BYTES: usize = 24;

/// The whole-step function's parameters, after `env`.
struct Params {
    cells: Value,
    zones: Value,
    attention: Value,
    at: Value,
}

pub(super) fn whole_step(
    module: &mut JITModule,
    helpers: &Helpers,
    program: &Program,
    judges: &[Judge],
    least: &[(u16, i64)],
) -> Result<FuncId, JitError> {
    let ptr = module.target_config().pointer_type();
    let mut ctx = module.make_context();
    let sig = &mut ctx.func.signature;
    sig.params
        .extend([ptr, ptr, ptr, ptr].into_iter().map(AbiParam::new));
    sig.params.push(AbiParam::new(I64));
    sig.returns.push(AbiParam::new(I64));
    let mut fbc = FunctionBuilderContext::new();
    let refs = HelperRefs::declare(module, helpers, &mut ctx.func);
    let agg_step = module.declare_func_in_func(helpers.agg_step, &mut ctx.func);
    let window_step = module.declare_func_in_func(helpers.window_step, &mut ctx.func);
    let mut b = FunctionBuilder::new(&mut ctx.func, &mut fbc);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    let p = b.block_params(entry).to_vec();
    let [env, cells, zones, attention, at] = p[..] else {
        return Err(JitError::Codegen("function parameters".into()));
    };
    let max = super::max_stack(program);
    let scratch_bytes = u32::try_from(16 + 16 * (max + 1)).map_err(codegen)?;
    let scratch = b.create_sized_stack_slot(StackSlotData::new(
        StackSlotKind::ExplicitSlot,
        scratch_bytes,
        3,
    ));
    let mut g = Gen {
        b,
        tags: Vec::new(),
        vals: Vec::new(),
        env,
        scratch,
        program,
        ptr,
        refs,
    };
    let params = Params {
        cells,
        zones,
        attention,
        at,
    };
    for (i, desc) in program.aggregates.iter().enumerate() {
        if desc.func == AggFunc::Rate {
            window(&mut g, &params, window_step, i, desc)?;
        } else {
            aggregate(&mut g, &params, agg_step, i, desc)?;
        }
    }
    for (i, m) in program.monitors.iter().enumerate() {
        let (t, v) = g.inline(&m.code)?;
        let base = g.env_ptr(4);
        let offset = i32::try_from(i * 16).map_err(codegen)?;
        g.b.ins().store(FLAGS, t, base, offset);
        g.b.ins().store(FLAGS, v, base, offset + 8);
    }
    let count = compares(&mut g, &params, judges, least)?;
    g.b.ins().return_(&[count]);
    g.b.seal_all_blocks();
    g.b.finalize(module.target_config());
    let id = module
        .declare_function("lever_whole_step", Linkage::Local, &ctx.func.signature)
        .map_err(codegen)?;
    module.define_function(id, &mut ctx).map_err(codegen)?;
    module.clear_context(&mut ctx);
    Ok(id)
}

/// One aggregate: its filter and (when matched) argument in line, the update, and its
/// value written to `env.aggs[i]`.
fn aggregate(
    g: &mut Gen<'_, '_>,
    p: &Params,
    agg_step: cranelift_codegen::ir::FuncRef,
    i: usize,
    desc: &AggDesc,
) -> Result<(), JitError> {
    let (mt, mv) = filter(g, desc)?;
    let cell_offset = i32::try_from(i * CELL_BYTES).map_err(codegen)?;
    let cell = g.b.ins().iadd_imm_s(p.cells, i64::from(cell_offset));
    let index = g.b.ins().iconst(I64, i64::try_from(i).map_err(codegen)?);
    let (term_t, term_v) = (g.b.declare_var(I64), g.b.declare_var(I64));
    let (matched, other, slow, done) = (
        g.b.create_block(),
        g.b.create_block(),
        g.b.create_block(),
        g.b.create_block(),
    );
    let is_bool = g.b.ins().icmp_imm_s(IntCC::Equal, mt, BOOL);
    let is_true = is_true(g, mt, mv);
    g.b.ins().brif(is_true, matched, &[], other, &[]);

    // The filter matched: the term.
    g.b.switch_to_block(matched);
    let (tt, tv) = term(g, desc, term_t, term_v)?;
    if matches!(desc.func, AggFunc::Sum | AggFunc::Count) {
        total_in_line(g, cell, tt, tv, slow, done);
    } else {
        g.b.ins().jump(slow, &[]);
    }

    // Not matched: a `false` filter leaves a total as it is; anything else goes to the
    // accumulator (a window evicts on every step).
    g.b.switch_to_block(other);
    let none = g.b.ins().iconst(I64, NONE);
    let zero = g.b.ins().iconst(I64, 0);
    g.b.def_var(term_t, none);
    g.b.def_var(term_v, zero);
    if matches!(desc.func, AggFunc::Sum | AggFunc::Count) {
        let is_zero = g.b.ins().icmp_imm_s(IntCC::Equal, mv, 0);
        let is_false = g.b.ins().band(is_bool, is_zero);
        g.b.ins().brif(is_false, done, &[], slow, &[]);
    } else {
        g.b.ins().jump(slow, &[]);
    }

    // The accumulator: updates the cell and writes the value itself.
    g.b.switch_to_block(slow);
    let (tt, tv) = (g.b.use_var(term_t), g.b.use_var(term_v));
    g.b.ins()
        .call(agg_step, &[g.env, index, cell, mt, mv, tt, tv]);
    let end = g.b.create_block();
    g.b.ins().jump(end, &[]);

    // A total's value is its cell's tag and first word.
    g.b.switch_to_block(done);
    if matches!(desc.func, AggFunc::Sum | AggFunc::Count) {
        let t = g.b.ins().load(I64, FLAGS, cell, 0);
        let v = g.b.ins().load(I64, FLAGS, cell, 8);
        let base = g.env_ptr(3);
        let offset = i32::try_from(i * 16).map_err(codegen)?;
        g.b.ins().store(FLAGS, t, base, offset);
        g.b.ins().store(FLAGS, v, base, offset + 8);
    }
    g.b.ins().jump(end, &[]);
    g.b.switch_to_block(end);
    Ok(())
}

/// A `rate`: its filter and (when matched) argument in line, then its window moved on by
/// [`super::super::window_step`], which writes the value to `env.aggs[i]`.
fn window(
    g: &mut Gen<'_, '_>,
    p: &Params,
    window_step: cranelift_codegen::ir::FuncRef,
    i: usize,
    desc: &AggDesc,
) -> Result<(), JitError> {
    let (mt, mv) = filter(g, desc)?;
    let (term_t, term_v) = (g.b.declare_var(I64), g.b.declare_var(I64));
    let none = g.b.ins().iconst(I64, NONE);
    let zero = g.b.ins().iconst(I64, 0);
    g.b.def_var(term_t, none);
    g.b.def_var(term_v, zero);
    let (matched, call) = (g.b.create_block(), g.b.create_block());
    let is_true = is_true(g, mt, mv);
    g.b.ins().brif(is_true, matched, &[], call, &[]);
    g.b.switch_to_block(matched);
    term(g, desc, term_t, term_v)?;
    g.b.ins().jump(call, &[]);
    g.b.switch_to_block(call);
    let (tt, tv) = (g.b.use_var(term_t), g.b.use_var(term_v));
    let cell_offset = i64::try_from(i * CELL_BYTES).map_err(codegen)?;
    let cell = g.b.ins().iadd_imm_s(p.cells, cell_offset);
    let aggs = g.env_ptr(3);
    let out =
        g.b.ins()
            .iadd_imm_s(aggs, i64::try_from(i * 16).map_err(codegen)?);
    let width = g.b.ins().iconst(I64, desc.window);
    g.b.ins().call(
        window_step,
        &[g.env, cell, width, p.at, mt, mv, tt, tv, out],
    );
    Ok(())
}

/// An aggregate's filter in line (`true` without one).
fn filter(g: &mut Gen<'_, '_>, desc: &AggDesc) -> Result<(Value, Value), JitError> {
    Ok(match &desc.filter {
        Some(code) => g.inline(code)?,
        None => (g.b.ins().iconst(I64, BOOL), g.b.ins().iconst(I64, 1)),
    })
}

/// Whether a filter's value is `true`.
fn is_true(g: &mut Gen<'_, '_>, mt: Value, mv: Value) -> Value {
    let is_bool = g.b.ins().icmp_imm_s(IntCC::Equal, mt, BOOL);
    let is_one = g.b.ins().icmp_imm_s(IntCC::Equal, mv, 1);
    g.b.ins().band(is_bool, is_one)
}

/// A matched step's term in line (10⁹ for a `count`), kept in the term variables.
fn term(
    g: &mut Gen<'_, '_>,
    desc: &AggDesc,
    term_t: Variable,
    term_v: Variable,
) -> Result<(Value, Value), JitError> {
    let (tt, tv) = match &desc.arg {
        Some(code) => g.inline(code)?,
        None => (g.b.ins().iconst(I64, NUM), g.b.ins().iconst(I64, SCALE)),
    };
    g.b.def_var(term_t, tt);
    g.b.def_var(term_v, tv);
    Ok((tt, tv))
}

/// A `sum` or `count` taking a matched term: in line when both the total and the term are
/// numbers (an overflow ends the total as an error), else `slow`.
fn total_in_line(
    g: &mut Gen<'_, '_>,
    cell: Value,
    tt: Value,
    tv: Value,
    slow: cranelift_codegen::ir::Block,
    done: cranelift_codegen::ir::Block,
) {
    let tag = g.b.ins().load(I64, FLAGS, cell, 0);
    let total = g.b.ins().load(I64, FLAGS, cell, 8);
    let total_num = g.b.ins().icmp_imm_s(IntCC::Equal, tag, NUM);
    let term_num = g.b.ins().icmp_imm_s(IntCC::Equal, tt, NUM);
    let both = g.b.ins().band(total_num, term_num);
    let add = g.b.create_block();
    g.b.ins().brif(both, add, &[], slow, &[]);
    g.b.switch_to_block(add);
    let (sum, overflow) = g.b.ins().sadd_overflow(total, tv);
    let err = g.b.ins().iconst(I64, ERR_OVERFLOW);
    let zero = g.b.ins().iconst(I64, 0);
    let new_tag = g.b.ins().select(overflow, err, tag);
    let new_val = g.b.ins().select(overflow, zero, sum);
    g.b.ins().store(FLAGS, new_tag, cell, 0);
    g.b.ins().store(FLAGS, new_val, cell, 8);
    g.b.ins().jump(done, &[]);
}

/// Every judged limit against its threshold: the count of those needing attention.
/// First at a glance: while every zone read is `below` and each monitor is a number under
/// its limits' least threshold, only the budget limits are attended.
fn compares(
    g: &mut Gen<'_, '_>,
    p: &Params,
    judges: &[Judge],
    least: &[(u16, i64)],
) -> Result<Value, JitError> {
    let count: Variable = g.b.declare_var(I64);
    let zero = g.b.ins().iconst(I64, 0);
    g.b.def_var(count, zero);
    let monitors = g.env_ptr(4);
    let (glance, each, end) = (g.b.create_block(), g.b.create_block(), g.b.create_block());
    let quiet = all_quiet(g, p, monitors, judges, least)?;
    g.b.ins().brif(quiet, glance, &[], each, &[]);

    g.b.switch_to_block(glance);
    for (k, _) in judges
        .iter()
        .enumerate()
        .filter(|(_, j)| j.monitor.is_none())
    {
        attend(g, p, count, k, None)?;
    }
    g.b.ins().jump(end, &[]);

    g.b.switch_to_block(each);
    for (k, j) in judges.iter().enumerate() {
        let attend_it = match j.monitor {
            None => None,
            Some(m) => Some(limit_quiet(g, p, monitors, m, j)?),
        };
        attend(g, p, count, k, attend_it)?;
    }
    g.b.ins().jump(end, &[]);
    g.b.switch_to_block(end);
    Ok(g.b.use_var(count))
}

/// Whether every zone the layout reads is `below` and every judged monitor a number
/// under its limits' least threshold.
fn all_quiet(
    g: &mut Gen<'_, '_>,
    p: &Params,
    monitors: Value,
    judges: &[Judge],
    least: &[(u16, i64)],
) -> Result<Value, JitError> {
    let zones = zone_span(judges);
    let mut any_zone = g.b.ins().iconst(I64, 0);
    let words = zones / 8;
    for w in 0..words {
        let offset = i32::try_from(w * 8).map_err(codegen)?;
        let z = g.b.ins().load(I64, FLAGS, p.zones, offset);
        any_zone = g.b.ins().bor(any_zone, z);
    }
    for z in words * 8..zones {
        let offset = i32::try_from(z).map_err(codegen)?;
        let z = g.b.ins().uload8(I64, FLAGS, p.zones, offset);
        any_zone = g.b.ins().bor(any_zone, z);
    }
    let mut quiet = g.b.ins().icmp_imm_s(IntCC::Equal, any_zone, 0);
    for &(m, q) in least {
        let offset = i32::from(m) * 16;
        let t = g.b.ins().load(I64, FLAGS, monitors, offset);
        let v = g.b.ins().load(I64, FLAGS, monitors, offset + 8);
        let is_num = g.b.ins().icmp_imm_s(IntCC::Equal, t, NUM);
        let below = g.b.ins().icmp_imm_s(IntCC::SignedLessThan, v, q);
        let both = g.b.ins().band(is_num, below);
        quiet = g.b.ins().band(quiet, both);
    }
    Ok(quiet)
}

/// Whether one limit is quiet: its monitor a number below its threshold, its zone `below`.
fn limit_quiet(
    g: &mut Gen<'_, '_>,
    p: &Params,
    monitors: Value,
    m: u16,
    j: &Judge,
) -> Result<Value, JitError> {
    let offset = i32::from(m) * 16;
    let t = g.b.ins().load(I64, FLAGS, monitors, offset);
    let v = g.b.ins().load(I64, FLAGS, monitors, offset + 8);
    let zone = g.b.ins().load(I8, FLAGS, p.zones, i32::from(j.zone));
    let is_num = g.b.ins().icmp_imm_s(IntCC::Equal, t, NUM);
    let below =
        g.b.ins()
            .icmp_imm_s(IntCC::SignedLessThan, v, j.quiet_below);
    let no_zone = g.b.ins().icmp_imm_s(IntCC::Equal, zone, 0);
    let quiet = g.b.ins().band(is_num, below);
    Ok(g.b.ins().band(quiet, no_zone))
}

/// Writes entry `k` at `attention[count]`, and counts it unless `quiet` holds.
fn attend(
    g: &mut Gen<'_, '_>,
    p: &Params,
    count: Variable,
    k: usize,
    quiet: Option<Value>,
) -> Result<(), JitError> {
    let n = g.b.use_var(count);
    let slot = g.b.ins().ishl_imm_u(n, 1);
    let at = g.b.ins().iadd(p.attention, slot);
    let key = g.b.ins().iconst(I16, i64::try_from(k).map_err(codegen)?);
    g.b.ins().store(FLAGS, key, at, 0);
    let add = match quiet {
        None => g.b.ins().iconst(I64, 1),
        Some(q) => {
            let flip = g.b.ins().bxor_imm_u(q, 1);
            g.b.ins().uextend(I64, flip)
        }
    };
    let next = g.b.ins().iadd(n, add);
    g.b.def_var(count, next);
    Ok(())
}

/// One past the highest zone index the judged limits read.
pub(super) fn zone_span(judges: &[Judge]) -> usize {
    judges
        .iter()
        .map(|j| usize::from(j.zone) + 1)
        .max()
        .unwrap_or(0)
}
