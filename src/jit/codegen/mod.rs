//! Bytecode to Cranelift IR: one native function per `Code`.

mod emit;
mod step;

pub(crate) use step::CELL_BYTES;

use super::{Compiled, Flat, JitError, NativeFn, Stats};
use crate::compile::bytecode::{Code, FieldSource, Op, Program};
use cranelift_codegen::ir::types::I64;
use cranelift_codegen::ir::{AbiParam, Block, StackSlotData, StackSlotKind};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};
use emit::{Gen, HelperRefs};
use std::collections::BTreeMap;

pub(super) fn codegen(e: impl std::fmt::Display) -> JitError {
    JitError::Codegen(e.to_string())
}

/// The Rust functions native code calls, declared in the module.
struct Helpers {
    binary: FuncId,
    unary: FuncId,
    in_list: FuncId,
    field_eq_str: FuncId,
    mul_div: FuncId,
    agg_step: FuncId,
    window_step: FuncId,
}

impl HelperRefs {
    /// The helpers as one function being built refers to them.
    fn declare(
        module: &mut JITModule,
        helpers: &Helpers,
        func: &mut cranelift_codegen::ir::Function,
    ) -> HelperRefs {
        HelperRefs {
            binary: module.declare_func_in_func(helpers.binary, func),
            unary: module.declare_func_in_func(helpers.unary, func),
            in_list: module.declare_func_in_func(helpers.in_list, func),
            field_eq_str: module.declare_func_in_func(helpers.field_eq_str, func),
            mul_div: module.declare_func_in_func(helpers.mul_div, func),
        }
    }
}

/// The deepest stack any code block of the program needs.
fn max_stack(program: &Program) -> usize {
    let fields = program.fields.iter().filter_map(|f| match &f.source {
        FieldSource::Derived(c) => Some(c),
        _ => None,
    });
    let aggs = program
        .aggregates
        .iter()
        .flat_map(|a| a.filter.iter().chain(a.arg.iter()));
    let monitors = program.monitors.iter().map(|m| &m.code);
    fields
        .chain(aggs)
        .chain(monitors)
        .map(|c| usize::from(c.max_stack).max(1))
        .max()
        .unwrap_or(1)
}

/// Native code for a whole step of `program` judging `judges` ([`step`]); `least` is
/// each judged monitor with its limits' least threshold, for the glance.
pub(crate) fn compile_whole_step(
    program: &Program,
    judges: &[super::Judge],
    least: &[(u16, i64)],
) -> Result<super::WholeStep, JitError> {
    let (mut module, helpers) = new_module()?;
    let id = step::whole_step(&mut module, &helpers, program, judges, least)?;
    module.finalize_definitions().map_err(codegen)?;
    let p = module.get_finalized_function(id);
    // SAFETY: `p` is the function this module just defined with the signature
    // `(ptr, ptr, ptr, ptr, i64) -> i64` in the host's C calling convention.
    let f = unsafe { std::mem::transmute::<*const u8, super::StepFn>(p) };
    Ok(super::WholeStep {
        f,
        shape: super::Shape::of(program),
        zones: step::zone_span(judges),
        judges: judges.len(),
        _module: super::Owner::new(module),
    })
}

/// Compiles every code block of a program. Fails rather than leave any block to the
/// interpreter.
pub(crate) fn compile(program: &Program) -> Result<Compiled, JitError> {
    let start = std::time::Instant::now();
    let (mut module, helpers) = new_module()?;
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

/// A JIT module for the host, with the Rust helpers native code calls declared in it.
fn new_module() -> Result<(JITModule, Helpers), JitError> {
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
    jb.symbol("lever_agg_step", super::agg_step as *const u8);
    jb.symbol("lever_window_step", super::window_step as *const u8);
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
        agg_step: import(
            "lever_agg_step",
            &[ptr, I64, ptr, I64, I64, I64, I64],
            false,
        )?,
        window_step: import(
            "lever_window_step",
            &[ptr, ptr, I64, I64, I64, I64, I64, I64, ptr],
            false,
        )?,
    };
    Ok((module, helpers))
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
    let refs = HelperRefs::declare(module, helpers, &mut ctx.func);
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
    g.body(code, &depth, &targets, out)?;
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
#[inline]
pub(super) fn call(f: NativeFn, env: &super::Env<'_>) -> Flat {
    let mut out = Flat::NONE;
    // SAFETY: `f` was compiled by this module for a program of the shape its `Compiled`
    // checked `env`'s buffers against (`Compiled::fits`) before building `env`.
    unsafe { f(env, &mut out) };
    out
}
