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

use crate::base::lang::Zone;
use crate::compile::bytecode::{FieldSource, Program};
use crate::vm::{AggState, Ctx, Slot, Window};

pub(crate) use codegen::compile;
pub(crate) use codegen::compile_whole_step as whole_step;

/// One limit a whole step judges: its monitor (`None`: a budget counter, always
/// attended), its zone's index in the run's zones, and the value below which it is quiet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Judge {
    pub monitor: Option<u16>,
    pub zone: u16,
    pub quiet_below: i64,
}

/// A whole step's native function ([`codegen::compile_whole_step`]).
type StepFn =
    unsafe extern "C" fn(*const Env<'_>, *mut AggState, *const Zone, *mut u16, i64) -> i64;

/// Native code for a whole step of one program and one layout: aggregates, monitors and
/// the comparisons of every judged limit in one function. Run it through [`WholeStep::run`].
pub(crate) struct WholeStep {
    f: StepFn,
    shape: Shape,
    /// One past the highest zone index it reads, and how many limits it compares.
    zones: usize,
    judges: usize,
    _module: Owner,
}

impl std::fmt::Debug for WholeStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WholeStep")
            .field("judges", &self.judges)
            .finish()
    }
}

const _: () = assert!(std::mem::size_of::<AggState>() == codegen::CELL_BYTES);

/// A run's buffers for one whole step: its aggregates' state and zones, and where the
/// values and the limits needing attention go.
pub(crate) struct StepBuffers<'a> {
    pub cells: &'a mut [AggState],
    pub windows: &'a mut [Window],
    pub aggs: &'a mut [Flat],
    pub monitors: &'a mut [Flat],
    pub zones: &'a [Zone],
    pub attention: &'a mut Vec<u16>,
}

impl WholeStep {
    /// Takes a step at `at`: every aggregate updated, every monitor's value in
    /// `monitors`, and in `attention` the limits that need judging. `false`, with nothing
    /// done, when the buffers do not fit the program and layout this was compiled for.
    pub(crate) fn run(&self, ctx: &Ctx<'_>, buf: StepBuffers<'_>, at: i64) -> bool {
        let s = &self.shape;
        let fits = ctx.nums.len() >= s.nums
            && ctx.bools.len() >= s.bools
            && ctx.labels.len() >= s.labels
            && buf.aggs.len() >= s.aggs
            && buf.cells.len() >= s.aggs
            && buf.monitors.len() >= s.monitors
            && buf.zones.len() >= self.zones;
        if !fits {
            return false;
        }
        buf.attention.clear();
        buf.attention.reserve(self.judges);
        let mut env = Env::new(ctx, buf.aggs.as_mut_ptr(), buf.monitors.as_mut_ptr());
        env.windows = buf.windows.as_mut_ptr();
        env.windows_len = buf.windows.len();
        // SAFETY: the function was compiled for a program of this shape and a layout
        // reading zones below `self.zones` and writing at most `self.judges` entries of
        // `attention` (whose capacity was just reserved); every buffer was checked against
        // those sizes above and is borrowed mutably (or shared, for zones) for the call,
        // so nothing else reads or moves them.
        let n = unsafe {
            (self.f)(
                &env,
                buf.cells.as_mut_ptr(),
                buf.zones.as_ptr(),
                buf.attention.as_mut_ptr(),
                at,
            )
        };
        let n = usize::try_from(n).unwrap_or(0).min(self.judges);
        // SAFETY: native code writes each entry it counts before counting it, so the
        // first `n` (at most the reserved capacity) are initialized.
        unsafe { buf.attention.set_len(n) };
        true
    }
}

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
            // Code blocks only read these: only a whole step writes through them.
            env: Env::new(ctx, aggs.as_ptr().cast_mut(), monitors.as_ptr().cast_mut()),
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
        // Monitor code only reads the aggregates.
        let env = Env::new(ctx, aggs.as_ptr().cast_mut(), base);
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
    fn new(ctx: &'a Ctx<'a>, aggs: *mut Flat, monitors: *mut Flat) -> Env<'a> {
        Env {
            nums: ctx.nums.as_ptr(),
            bools: ctx.bools.as_ptr(),
            str_ids: ctx.str_ids.as_ptr(),
            aggs,
            monitors,
            ctx,
            windows: std::ptr::null_mut(),
            windows_len: 0,
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
    aggs: *mut Flat,
    monitors: *mut Flat,
    /// The interpreter's context, for the slow paths (string values, labels).
    ctx: *const Ctx<'a>,
    /// A whole step's `rate` windows (null and 0 otherwise), for its window helper.
    windows: *mut Window,
    windows_len: usize,
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

// SAFETY: an `Owner` offers nothing through a shared reference (it has no methods; the
// module is touched only by `drop`, which has it exclusively), so sharing one between
// threads (a layout's native code, shared by the runs bound alike) reads nothing.
unsafe impl Sync for Owner {}

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

/// One aggregate taking one step by the interpreter's accumulator, its value written to
/// `env.aggs[i]`.
///
/// # Safety
/// `env` is the live `Env` of a whole step, `cell` the run's state of aggregate `i`.
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn agg_step(
    env: *const Env<'_>,
    i: i64,
    cell: *mut AggState,
    mt: i64,
    mv: i64,
    tt: i64,
    tv: i64,
) {
    // SAFETY: the caller passes the live `Env` of this step.
    let (ctx, aggs) = unsafe { (&*(*env).ctx, (*env).aggs) };
    let Some(desc) = usize::try_from(i)
        .ok()
        .and_then(|i| ctx.program.aggregates.get(i))
    else {
        return;
    };
    // SAFETY: `cell` points at aggregate `i`'s state, which `WholeStep::run` borrowed
    // mutably for the call; `aggs` holds one value per aggregate (checked there).
    unsafe {
        let state = &mut *cell;
        state.update(
            desc,
            Flat { tag: mt, val: mv }.slot(),
            Flat { tag: tt, val: tv }.slot(),
        );
        *aggs.add(i as usize) = Flat::of(state.value(desc));
    }
}

/// A `rate` taking one step ([`Window::step`]): the window its cell names among the
/// whole step's, its value written to `out`.
///
/// # Safety
/// `env` is the live `Env` of a whole step, `cell` the run's state of a `rate` aggregate
/// and `out` its value in the step's `env.aggs`, all borrowed for the call by
/// `WholeStep::run`.
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn window_step(
    env: *const Env<'_>,
    cell: *const AggState,
    window: i64,
    at: i64,
    mt: i64,
    mv: i64,
    tt: i64,
    tv: i64,
    out: *mut Flat,
) {
    // SAFETY: as the caller guarantees, see above; the window index is checked against
    // the windows `WholeStep::run` lent the step.
    unsafe {
        let (windows, len) = ((*env).windows, (*env).windows_len);
        let k = usize::try_from((*cell).a).ok().filter(|k| *k < len);
        let value = match k {
            Some(k) => (*windows.add(k)).step(
                window,
                at,
                Flat { tag: mt, val: mv }.slot(),
                Flat { tag: tt, val: tv }.slot(),
            ),
            None => Slot::None,
        };
        *out = Flat::of(value);
    }
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
