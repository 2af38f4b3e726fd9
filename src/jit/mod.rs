//! The Cranelift engine: each piece of per-step bytecode compiled to native code.
//!
//! Every `Code` of a program (derived fields, aggregate filters and arguments, monitors) is
//! compiled once, when an engine is created for an artifact, to a function
//! `extern "C" fn(env: *const Env, out: *mut Flat)`. Values are tagged pairs (`Flat`);
//! stack positions become SSA variables, so the generated code has no stack and no
//! dispatch. Each instruction has an inline fast path for its common operands (numbers
//! with overflow-checked `+` and `-`, comparisons, booleans, interned string ids), and
//! everything else (no value, errors, strings, `*`, `/`, `in`) calls the interpreter's own
//! Rust functions ([`crate::vm`]), so both engines share one definition of Lever's
//! semantics. No generated code relies on a hardware trap.

mod codegen;

use crate::compile::bytecode::{FieldSource, Program};
use crate::vm::{Ctx, Slot};

pub(crate) use codegen::compile;

impl Compiled {
    /// Native code bound to one step's buffers, checked once against the program this was
    /// compiled for; `None` when they do not fit. While the binding lives the buffers are
    /// borrowed, so they stay where native code reads them.
    pub(crate) fn bind<'a>(
        &'a self,
        ctx: &'a Ctx<'a>,
        aggs: &'a [Flat],
        monitors: &'a [Flat],
    ) -> Option<NativeStep<'a>> {
        self.fits(ctx, aggs, monitors).then(|| NativeStep {
            code: self,
            env: Env::new(ctx, aggs.as_ptr(), monitors.as_ptr()),
            _buffers: std::marker::PhantomData,
        })
    }

    /// Every monitor's value in order, each written to `monitors` (which later monitors
    /// read) and returned in `out`; `false`, with nothing computed, when the buffers do not
    /// fit the program this was compiled for.
    pub(crate) fn monitors(
        &self,
        ctx: &Ctx<'_>,
        aggs: &[Flat],
        monitors: &mut [Flat],
        out: &mut Vec<Slot>,
    ) -> bool {
        if !self.fits(ctx, aggs, monitors) {
            return false;
        }
        let len = monitors.len();
        let base = monitors.as_mut_ptr();
        let env = Env::new(ctx, aggs.as_ptr(), base);
        for (i, f) in self.monitors.iter().enumerate() {
            let v = codegen::call(*f, &env);
            if i < len {
                // SAFETY: `i` is in bounds of the buffer `base` points at; the buffer is
                // written only through `base`, which `env` also reads by, and is neither
                // moved nor resized while `env` lives.
                unsafe { *base.add(i) = v };
            }
            out.push(v.slot());
        }
        true
    }

    /// Whether a step's buffers hold every value the native code may read.
    fn fits(&self, ctx: &Ctx<'_>, aggs: &[Flat], monitors: &[Flat]) -> bool {
        let s = &self.shape;
        ctx.nums.len() >= s.nums
            && ctx.bools.len() >= s.bools
            && ctx.labels.len() >= s.labels
            && aggs.len() >= s.aggs
            && monitors.len() >= s.monitors
    }
}

/// A program's native code bound to one step's buffers ([`Compiled::bind`]).
pub(crate) struct NativeStep<'a> {
    code: &'a Compiled,
    env: Env<'a>,
    _buffers: std::marker::PhantomData<(&'a [Flat], &'a [Flat])>,
}

impl NativeStep<'_> {
    /// A derived field's value; `None` when the field has no native code.
    #[inline]
    pub(crate) fn field(&self, i: usize) -> Option<Slot> {
        self.call(self.code.fields.get(i).copied().flatten()?)
    }

    /// An aggregate's filter; `None` when it has no native code.
    #[inline]
    pub(crate) fn filter(&self, i: usize) -> Option<Slot> {
        self.call(self.code.filters.get(i).copied().flatten()?)
    }

    /// An aggregate's argument; `None` when it has no native code.
    #[inline]
    pub(crate) fn arg(&self, i: usize) -> Option<Slot> {
        self.call(self.code.args.get(i).copied().flatten()?)
    }

    #[inline]
    fn call(&self, f: NativeFn) -> Option<Slot> {
        Some(codegen::call(f, &self.env).slot())
    }
}

/// How many values of each kind the program compiled reads.
#[derive(Debug, Clone, Copy)]
struct Shape {
    nums: usize,
    bools: usize,
    labels: usize,
    aggs: usize,
    monitors: usize,
}

impl Shape {
    fn of(program: &Program) -> Shape {
        Shape {
            nums: usize::from(program.num_fields),
            bools: usize::from(program.bool_fields),
            labels: program.labels.len(),
            aggs: program.aggregates.len(),
            monitors: program.monitors.len(),
        }
    }
}

impl<'a> Env<'a> {
    /// The environment of one step: `aggs` and `monitors` point at one value per aggregate
    /// and per monitor of the program (the caller keeps them alive and in place).
    fn new(ctx: &'a Ctx<'a>, aggs: *const Flat, monitors: *const Flat) -> Env<'a> {
        Env {
            nums: ctx.nums.as_ptr(),
            bools: ctx.bools.as_ptr(),
            str_ids: ctx.str_ids.as_ptr(),
            aggs,
            monitors,
            ctx,
        }
    }
}

/// A value as native code sees it: a tag and a payload.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Flat {
    pub tag: i64,
    pub val: i64,
}

pub(crate) use crate::vm::tag::{BOOL, ERR_OVERFLOW, NONE, NUM, STR_CONST, STR_FIELD, STR_LABEL};

impl Flat {
    pub(crate) const NONE: Flat = Flat { tag: NONE, val: 0 };

    pub(crate) fn of(s: Slot) -> Flat {
        let (tag, val) = crate::vm::tag::of(s);
        Flat { tag, val }
    }

    pub(crate) fn slot(self) -> Slot {
        crate::vm::tag::slot(self.tag, self.val)
    }
}

/// What native code reads at one step. The pointers cover the program's field slots,
/// every aggregate, and every monitor (those not computed yet hold no value). Never leaves
/// this module: [`Compiled`]'s methods build it from slices they check.
#[repr(C)]
pub(crate) struct Env<'a> {
    nums: *const i64,
    bools: *const bool,
    str_ids: *const u32,
    aggs: *const Flat,
    monitors: *const Flat,
    /// The interpreter's context, for the slow paths (string values, labels).
    ctx: *const Ctx<'a>,
}

/// A compiled function.
type NativeFn = unsafe extern "C" fn(*const Env<'_>, *mut Flat);

/// A program's native code, kept with the module that owns its memory. Run it through its
/// methods, which check a step's buffers against the program it was compiled for.
pub(crate) struct Compiled {
    fields: Vec<Option<NativeFn>>,
    filters: Vec<Option<NativeFn>>,
    args: Vec<Option<NativeFn>>,
    monitors: Vec<NativeFn>,
    pub stats: Stats,
    shape: Shape,
    _module: Owner,
}

/// Keeps the module that owns the native code's memory alive, and frees it on drop
/// (a `JITModule` dropped on its own leaks its code, which a server that deploys often
/// would accumulate).
pub(crate) struct Owner {
    module: Option<cranelift_jit::JITModule>,
}

impl Owner {
    pub(crate) fn new(module: cranelift_jit::JITModule) -> Owner {
        Owner {
            module: Some(module),
        }
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(module) = self.module.take() {
            // SAFETY: the owner is dropped with the `Compiled` that holds every pointer
            // into this module's code, so no native function can be called afterwards.
            unsafe { module.free_memory() };
        }
    }
}

// SAFETY: after `finalize_definitions` the module is never used again, only kept alive
// and dropped; its code memory is immutable and not tied to the thread that made it, and
// the native functions read nothing but their arguments. So moving the owner to another
// thread (a server moves its engines) is sound.
unsafe impl Send for Owner {}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled")
            .field("stats", &self.stats)
            .finish()
    }
}

/// What compiling a program did: how many code blocks it had and how many became native
/// code (every one, or compiling fails: there is no silent fallback), and how long it took.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Stats {
    pub code_blocks: usize,
    pub native: usize,
    pub compile_micros: u128,
    /// Per policy: its name, how many monitors its limits reach, and the native blocks
    /// those monitors (and the aggregates and fields they read) consist of.
    pub policies: Vec<(String, usize, usize)>,
}

#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error("this host has no Cranelift backend: {0}")]
    Host(String),
    #[error("native code generation failed: {0}")]
    Codegen(String),
    #[error("bytecode the JIT cannot compile: {0}")]
    Bytecode(String),
}

/// Counts a program's code blocks, as [`compile`] compiles them.
pub(crate) fn code_blocks(program: &Program) -> usize {
    let fields = program
        .fields
        .iter()
        .filter(|f| matches!(f.source, FieldSource::Derived(_)))
        .count();
    let aggs: usize = program
        .aggregates
        .iter()
        .map(|a| usize::from(a.filter.is_some()) + usize::from(a.arg.is_some()))
        .sum();
    fields + aggs + program.monitors.len()
}

// ---- the slow paths, called from native code ----

/// # Safety
/// `env` is the `Env` the native function was called with; `out` is writable.
unsafe extern "C" fn slow_binary(
    env: *const Env<'_>,
    op: i64,
    at: i64,
    av: i64,
    bt: i64,
    bv: i64,
    out: *mut Flat,
) {
    use crate::compile::bytecode::{Cmp, Op};
    let op = match op {
        0 => Op::Add,
        1 => Op::Sub,
        2 => Op::Mul,
        3 => Op::Div,
        4 => Op::Cmp(Cmp::Lt),
        5 => Op::Cmp(Cmp::Le),
        6 => Op::Cmp(Cmp::Gt),
        7 => Op::Cmp(Cmp::Ge),
        8 => Op::Eq(false),
        _ => Op::Eq(true),
    };
    // SAFETY: the caller passes the live `Env` of this step.
    let ctx = unsafe { &*(*env).ctx };
    let a = Flat { tag: at, val: av }.slot();
    let b = Flat { tag: bt, val: bv }.slot();
    // SAFETY: `out` points at a `Flat` in the caller's frame.
    unsafe { *out = Flat::of(crate::vm::binary(ctx, &op, a, b)) };
}

/// # Safety
/// `out` is writable.
unsafe extern "C" fn slow_unary(op: i64, at: i64, av: i64, out: *mut Flat) {
    use crate::compile::bytecode::Op;
    let op = if op == 0 { Op::Neg } else { Op::Not };
    let r = crate::vm::unary(&op, Flat { tag: at, val: av }.slot());
    // SAFETY: `out` points at a `Flat` in the caller's frame.
    unsafe { *out = Flat::of(r) };
}

/// # Safety
/// `env` is live; `items` points at `count` values; `out` is writable.
unsafe extern "C" fn slow_in(env: *const Env<'_>, items: *const Flat, count: i64, out: *mut Flat) {
    // SAFETY: the caller passes the live `Env` and its own array of `count` values.
    let (ctx, operands) = unsafe {
        (
            &*(*env).ctx,
            std::slice::from_raw_parts(items, usize::try_from(count).unwrap_or(0)),
        )
    };
    let slots: Vec<Slot> = operands.iter().map(|f| f.slot()).collect();
    // SAFETY: `out` points at a `Flat` in the caller's frame.
    unsafe { *out = Flat::of(crate::vm::in_list(ctx, &slots)) };
}

/// `field == "const"` when the field's value was not interned.
///
/// # Safety
/// `env` is live.
unsafe extern "C" fn slow_field_eq_str(
    env: *const Env<'_>,
    field: i64,
    konst: i64,
    negate: i64,
) -> i64 {
    // SAFETY: the caller passes the live `Env` of this step.
    let ctx = unsafe { &*(*env).ctx };
    let r = crate::vm::field_eq_str(
        ctx,
        u16::try_from(field).unwrap_or(u16::MAX),
        u32::try_from(konst).unwrap_or(u32::MAX),
        negate != 0,
    );
    i64::from(r == Slot::Bool(true))
}

/// `a * b` and `a / b` of two numbers: Lever's exact fixed-point arithmetic.
///
/// # Safety
/// `out` is writable.
unsafe extern "C" fn mul_div(op: i64, a: i64, b: i64, out: *mut Flat) {
    let r = if op == 2 {
        crate::base::num::mul(a, b)
    } else {
        crate::base::num::div(a, b)
    };
    // SAFETY: `out` points at a `Flat` in the caller's frame.
    unsafe { *out = Flat::of(r.map_or_else(Slot::Err, Slot::Num)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::num::ArithError;
    use crate::vm::StrRef;

    #[test]
    fn flat_round_trips_every_slot() {
        for s in [
            Slot::Num(-7),
            Slot::Bool(true),
            Slot::Bool(false),
            Slot::Str(StrRef::Const(3)),
            Slot::Str(StrRef::Field(2)),
            Slot::Str(StrRef::Label(1)),
            Slot::None,
            Slot::Err(ArithError::Overflow),
            Slot::Err(ArithError::DivisionByZero),
        ] {
            assert_eq!(Flat::of(s).slot(), s);
        }
    }
}
