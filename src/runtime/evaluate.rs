//! Evaluation: a step's fields, every aggregate and every monitor, on the interpreter or
//! the JIT's native code.

use super::engine::{Scratch, Values};
use super::event::{RunStart, Step};
use super::{Engine, Run};
use crate::base::num::SCALE;
use crate::compile::bytecode::{EventField, FieldSource, Op, Program};
use crate::vm::{self, Ctx, MAX_STR_FIELDS, NOT_A_CONSTANT, NOT_INTERNED, Slot};

impl Engine {
    /// Takes a step into every aggregate at `at`, the time it is judged at, and computes
    /// every monitor's value, and the limits of the run's layout that need attention.
    pub(super) fn evaluate(&mut self, run: &mut Run, step: &Step, metrics: &[i64], at: i64) {
        let Engine {
            artifact,
            jit,
            scratch: s,
            string_ids,
            compared_fields,
            read_fields,
            ..
        } = self;
        let program = &artifact.body.program;
        let jit = jit.as_deref();
        s.reset(program, jit.is_some());
        let mut strs: [&str; MAX_STR_FIELDS] = [""; MAX_STR_FIELDS];
        let mut str_ids = [NOT_INTERNED; MAX_STR_FIELDS];
        let input = Input {
            step,
            run: &run.attrs,
            labels: &run.labels,
            metrics,
            at,
        };
        fields(program, jit, read_fields, s, &mut strs, &str_ids, &input);
        // Each compared field is interned once per distinct value: a step repeating the
        // last value (an agent keeps its model and kinds) reuses its id unhashed.
        if s.interned.len() != compared_fields.len() {
            let empty = string_ids.get("").copied().unwrap_or(NOT_A_CONSTANT);
            s.interned = vec![(String::new(), empty); compared_fields.len()];
        }
        for (&slot, last) in compared_fields.iter().zip(s.interned.iter_mut()) {
            let slot = usize::from(slot);
            if let (Some(text), Some(id)) = (strs.get(slot), str_ids.get_mut(slot)) {
                if last.0 != *text {
                    last.0.clear();
                    last.0.push_str(text);
                    last.1 = string_ids.get(*text).copied().unwrap_or(NOT_A_CONSTANT);
                }
                *id = last.1;
            }
        }
        let ctx = Ctx::step(program, &s.nums, &s.bools, &strs, &str_ids, &run.labels);
        if let Some(whole) = run.layout.0.as_ref().and_then(|l| l.native.as_ref()) {
            let buffers = crate::jit::StepBuffers {
                cells: &mut run.aggs.cells,
                windows: &mut run.aggs.windows,
                aggs: &mut s.values.flat_aggs,
                monitors: &mut s.values.flat_monitors,
                zones: &run.zones,
                attention: &mut s.attention,
            };
            if whole.run(&ctx, buffers, at) {
                let monitors = &mut s.values.monitors;
                monitors.clear();
                monitors.extend(s.values.flat_monitors.iter().map(|f| f.slot()));
                return;
            }
        }
        aggregates(program, jit, &ctx, &mut run.aggs, &mut s.values, at);
        monitors(program, jit, &mut s.values, &ctx);
        if let Some(layout) = &run.layout.0 {
            super::layout::attention(layout, &s.values.monitors, &run.zones, &mut s.attention);
        }
    }
}

/// Every aggregate takes the step (block by block: the interpreter, or a JIT engine's
/// native code per block when its layout has no whole step), and their values.
fn aggregates(
    program: &Program,
    jit: Option<&crate::jit::Compiled>,
    ctx: &Ctx<'_>,
    aggs: &mut crate::vm::Aggs,
    values: &mut Values,
    at: i64,
) {
    let native = jit.and_then(|j| j.bind(ctx, &values.flat_aggs, &values.flat_monitors));
    for (ai, desc) in program.aggregates.iter().enumerate() {
        let matched = match &desc.filter {
            Some(code) => native
                .as_ref()
                .and_then(|n| n.filter(ai))
                .unwrap_or_else(|| vm::eval(code, ctx, &mut values.stack)),
            None => Slot::Bool(true),
        };
        let term = match (&desc.arg, matched) {
            (_, Slot::Bool(false)) => Slot::None,
            (Some(code), _) => native
                .as_ref()
                .and_then(|n| n.arg(ai))
                .unwrap_or_else(|| vm::eval(code, ctx, &mut values.stack)),
            (None, _) => Slot::Num(SCALE),
        };
        // Only a window changes without a matching step (it moves on).
        if matched != Slot::Bool(false) || desc.func == crate::base::lang::AggFunc::Rate {
            aggs.update(ai, desc, at, matched, term);
        }
    }
    values.aggs.clear();
    values.aggs.extend(
        program
            .aggregates
            .iter()
            .enumerate()
            .map(|(i, d)| aggs.value(i, d)),
    );
}

/// What one step's fields are read from.
struct Input<'a> {
    step: &'a Step,
    run: &'a RunStart,
    labels: &'a [String],
    metrics: &'a [i64],
    /// The time the step is judged at (`step.ts`).
    at: i64,
}

impl Scratch {
    /// Empties the buffers for a step of `program`.
    fn reset(&mut self, program: &Program, native: bool) {
        // Every field writes its slot at every step (an unread one stays as it was).
        if self.nums.len() != usize::from(program.num_fields) {
            self.nums.resize(usize::from(program.num_fields), 0);
        }
        if self.bools.len() != usize::from(program.bool_fields) {
            self.bools.resize(usize::from(program.bool_fields), false);
        }
        // Native code writes every aggregate, and every monitor before a later one reads
        // it (monitors read only earlier ones): the buffers need only their length.
        if native {
            let v = &mut self.values;
            if v.flat_aggs.len() != program.aggregates.len() {
                v.flat_aggs
                    .resize(program.aggregates.len(), crate::jit::Flat::NONE);
            }
            if v.flat_monitors.len() != program.monitors.len() {
                v.flat_monitors
                    .resize(program.monitors.len(), crate::jit::Flat::NONE);
            }
        }
    }
}

/// Every field's value at this step, in field order (a derived field reads earlier ones).
fn fields<'a>(
    program: &Program,
    jit: Option<&crate::jit::Compiled>,
    read: &[u16],
    s: &mut Scratch,
    strs: &mut [&'a str; MAX_STR_FIELDS],
    str_ids: &[u32; MAX_STR_FIELDS],
    input: &Input<'a>,
) {
    for &fi in read {
        let fi = usize::from(fi);
        let Some(field) = program.fields.get(fi) else {
            continue;
        };
        let slot = usize::from(field.slot);
        let value = match &field.source {
            FieldSource::Event(e) if e.is_string() => {
                if let Some(dst) = strs.get_mut(slot) {
                    *dst = event_str(*e, input.step, input.run);
                }
                continue;
            }
            FieldSource::Event(EventField::Pii) => Slot::Bool(input.step.pii),
            FieldSource::Event(e) => Slot::Num(event_num(*e, input.step, input.at)),
            FieldSource::Metric(i) => {
                Slot::Num(input.metrics.get(usize::from(*i)).copied().unwrap_or(0))
            }
            FieldSource::Derived(code) => {
                let ctx = Ctx::step(program, &s.nums, &s.bools, strs, str_ids, input.labels);
                jit.and_then(|j| j.bind(&ctx, &s.values.flat_aggs, &s.values.flat_monitors))
                    .and_then(|n| n.field(fi))
                    .unwrap_or_else(|| vm::eval(code, &ctx, &mut s.values.stack))
            }
        };
        match value {
            Slot::Num(n) => {
                if let Some(dst) = s.nums.get_mut(slot) {
                    *dst = n;
                }
            }
            Slot::Bool(b) => {
                if let Some(dst) = s.bools.get_mut(slot) {
                    *dst = b;
                }
            }
            _ => {}
        }
    }
}

/// Every monitor's value, in order (a monitor reads earlier ones), from the aggregates'.
fn monitors(program: &Program, jit: Option<&crate::jit::Compiled>, s: &mut Values, ctx: &Ctx<'_>) {
    s.monitors.clear();
    if let Some(j) = jit {
        for (dst, v) in s.flat_aggs.iter_mut().zip(&s.aggs) {
            *dst = crate::jit::Flat::of(*v);
        }
        if j.monitors(ctx, &s.flat_aggs, &mut s.flat_monitors, &mut s.monitors) {
            return;
        }
    }
    for m in &program.monitors {
        // A monitor that names one aggregate or monitor needs no evaluation.
        let v = match m.code.ops.as_slice() {
            [Op::Agg(i)] => s.aggs.get(usize::from(*i)).copied(),
            [Op::Monitor(i)] => s.monitors.get(usize::from(*i)).copied(),
            _ => None,
        };
        let v = v.unwrap_or_else(|| {
            let ctx = ctx.with_values(&s.aggs, &s.monitors);
            vm::eval(&m.code, &ctx, &mut s.stack)
        });
        s.monitors.push(v);
    }
}

pub(super) fn event_str<'a>(field: EventField, step: &'a Step, run: &'a RunStart) -> &'a str {
    match field {
        EventField::Kind => &step.kind,
        EventField::Model => &step.model,
        EventField::Tool => &step.tool,
        EventField::Tenant => &run.tenant,
        EventField::Agent => &run.agent,
        EventField::ApiKey => &run.api_key,
        EventField::HumanActor => &run.human_actor,
        _ => "",
    }
}

/// A numeric step field; `step.ts` reads the time the step is judged at.
pub(super) fn event_num(field: EventField, step: &Step, at: i64) -> i64 {
    match field {
        EventField::InputTokens => step.input_tokens,
        EventField::OutputTokens => step.output_tokens,
        EventField::Cost => step.cost,
        EventField::Latency => step.latency,
        EventField::Ts => at,
        _ => 0,
    }
}
