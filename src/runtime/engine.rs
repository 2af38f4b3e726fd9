//! The engine: one artifact's program, its interned strings and reusable buffers; it
//! starts, steps and ends runs.

use super::decision::{Action, Decision, Signal};
use super::event::{RunEnd, RunStart, Step};
use super::run::{Bound, Run, RunState, Throttle, Totals};
use super::{
    EngineKind, Incident, Outcome, PromptRecord, Zone, arbitrate, overrides, rebind, scope,
};
use crate::base::hash::Fnv1a;
use crate::base::lang::Enforcement;
use crate::compile::artifact::Artifact;
use crate::compile::bytecode::{FieldSource, PolicyDesc, Program};
use crate::vm::{NOT_A_CONSTANT, Slot};
use std::sync::Arc;

/// Reusable evaluation buffers.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// The step's number and boolean fields, by slot.
    pub(super) nums: Vec<i64>,
    pub(super) bools: Vec<bool>,
    pub(super) values: Values,
    /// The budget aggregates' values before the step, by budget slot.
    pub(super) budget_before: Vec<i64>,
    /// The step's budget counters and their values, for judging.
    pub(super) counted: Vec<super::budget::Counted>,
    /// The entries of the run's layout that need judging at this step.
    pub(super) attention: Vec<u16>,
    /// Each compared string field's last value and its interned id.
    pub(super) interned: Vec<(String, u32)>,
    /// What the last step judged produced, until its outcome is built.
    pub(super) pending: Pending,
}

/// What evaluation computes from the fields: the interpreter's stack, and every
/// aggregate's and monitor's value.
#[derive(Debug, Default)]
pub(super) struct Values {
    pub(super) stack: Vec<Slot>,
    pub(super) aggs: Vec<Slot>,
    pub(super) monitors: Vec<Slot>,
    /// The same values as native code reads them (JIT engine only).
    pub(super) flat_aggs: Vec<crate::jit::Flat>,
    pub(super) flat_monitors: Vec<crate::jit::Flat>,
}

/// The interpreter engine over one artifact.
#[derive(Debug)]
pub struct Engine {
    pub(super) artifact: Arc<Artifact>,
    /// The artifact's id, shared by every decision.
    pub(super) artifact_id: Arc<str>,
    /// The program's string constants by text, and the string fields compared with them:
    /// each step interns those fields once, so filters compare integers.
    pub(super) string_ids:
        std::collections::HashMap<String, u32, std::hash::BuildHasherDefault<Fnv1a>>,
    pub(super) compared_fields: Vec<u16>,
    /// The fields some code reads, by index in order: the others are never read from a
    /// step.
    pub(super) read_fields: Vec<u16>,
    pub(super) scratch: Scratch,
    /// The artifact each policy comes from (a merged engine holds two, see [`rebind`]).
    pub(super) policy_artifacts: Vec<Arc<str>>,
    /// Merged engines only: where the current artifact's policies start, and the monitors
    /// that started at the deploy.
    pub(super) merged: Option<rebind::MergedParts>,
    /// Native code for the program, when this engine is the JIT.
    pub(super) jit: Option<Box<crate::jit::Compiled>>,
    /// The program's budget limits across runs.
    pub(super) budget_slots: Vec<super::budget::BudgetSlot>,
    /// The counters [`Engine::step`] keeps when no caller shares its own.
    pub(super) budgets: super::budget::Budgets,
    /// This engine's identity (new with every change of kind), and the layouts of its
    /// runs' bindings.
    pub(super) id: u64,
    pub(super) layouts: super::layout::Layouts,
}

/// What a step decided ([`Engine::step_verdict`]): its action, and whether it was quiet
/// (no signal and no re-binding: its decision would say only the action).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub action: Action,
    pub quiet: bool,
}

/// What judging one step produced, kept until its outcome is asked for (the vectors are
/// moved into the decision; an empty one costs nothing).
#[derive(Debug, Default)]
pub(super) struct Pending {
    pub(super) signals: Vec<Signal>,
    pub(super) alerts: Vec<super::decision::Alert>,
    pub(super) candidates: Vec<Candidate>,
    pub(super) incidents: Vec<Incident>,
    pub(super) snapshot: Option<Box<super::Snapshot>>,
    pub(super) action: Action,
    pub(super) reason: Option<String>,
}

impl Pending {
    fn clear(&mut self) {
        self.signals.clear();
        self.alerts.clear();
        self.candidates.clear();
        self.incidents.clear();
        self.snapshot = None;
        self.reason = None;
    }

    /// The step's action: the strongest enforcement candidate when it is more severe than
    /// the run's state (which it becomes), else `continue`, or `refused` for a run no
    /// longer running. Breaches' enforcements become incidents.
    fn settle(&mut self, run: &mut Run) -> Action {
        let prior = run.state;
        let strongest = self
            .candidates
            .iter()
            .fold(None::<&Candidate>, |best, c| match best {
                Some(b) if b.enforcement >= c.enforcement => Some(b),
                _ => Some(c),
            });
        let (action, reason) = match strongest {
            Some(c) if RunState::of(c.enforcement) > prior => {
                run.state = RunState::of(c.enforcement);
                run.state_reason = Some(c.reason.clone());
                (run.state.action(), Some(c.reason.clone()))
            }
            _ if prior == RunState::Running => (Action::Continue, None),
            _ => (Action::Refused, Some(prior.refusal().to_string())),
        };
        if self.candidates.is_empty() {
            self.action = action;
            self.reason = reason;
            return action;
        }
        for c in self.candidates.drain(..) {
            if let Some((policy, limit)) = c.breach {
                self.incidents.push(Incident {
                    policy,
                    limit,
                    enforcement: c.enforcement,
                });
            }
        }
        self.action = action;
        self.reason = reason;
        action
    }
}

/// An enforcement candidate at one step: what, and why.
#[derive(Debug)]
pub(super) struct Candidate {
    pub(super) enforcement: Enforcement,
    pub(super) reason: String,
    /// The breached limit, when this is a breach's enforcement (an incident).
    pub(super) breach: Option<(String, String)>,
}

impl Engine {
    pub fn new(artifact: Arc<Artifact>) -> Engine {
        let artifact_id = Arc::from(artifact.id.as_str());
        let program = &artifact.body.program;
        let string_ids = program
            .strings
            .iter()
            .enumerate()
            .map(|(i, s)| (s.clone(), u32::try_from(i).unwrap_or(NOT_A_CONSTANT)))
            .collect();
        let compared_fields = compared_string_fields(program);
        let read_fields = read_fields(program);
        let policy_artifacts = vec![Arc::clone(&artifact_id); program.policies.len()];
        let budget_slots = super::budget::slots(program);
        Engine {
            artifact,
            artifact_id,
            string_ids,
            compared_fields,
            read_fields,
            scratch: Scratch::default(),
            policy_artifacts,
            merged: None,
            jit: None,
            budget_slots,
            budgets: super::budget::Budgets::default(),
            id: super::layout::engine_id(),
            layouts: super::layout::Layouts::default(),
        }
    }

    /// An engine of the given kind: [`EngineKind::Jit`] compiles the whole program to
    /// native code (once, here) or fails; [`EngineKind::Auto`] falls back to the
    /// interpreter only where the host has no Cranelift backend.
    pub fn of_kind(
        artifact: Arc<Artifact>,
        kind: EngineKind,
    ) -> Result<Engine, crate::jit::JitError> {
        let mut engine = Engine::new(artifact);
        engine.set_kind(kind)?;
        Ok(engine)
    }

    pub(super) fn set_kind(&mut self, kind: EngineKind) -> Result<(), crate::jit::JitError> {
        self.id = super::layout::engine_id();
        self.layouts.clear();
        self.jit = match kind {
            EngineKind::Interp => None,
            EngineKind::Jit => Some(Box::new(crate::jit::compile(self.program())?)),
            EngineKind::Auto => match crate::jit::compile(self.program()) {
                Ok(c) => Some(Box::new(c)),
                Err(crate::jit::JitError::Host(_)) => None,
                Err(e) => return Err(e),
            },
        };
        Ok(())
    }

    /// The engine's kind: `Jit` when it runs native code.
    pub fn kind(&self) -> EngineKind {
        if self.jit.is_some() {
            EngineKind::Jit
        } else {
            EngineKind::Interp
        }
    }

    /// What compiling to native code did, for a JIT engine.
    pub(crate) fn jit_stats(&self) -> Option<&crate::jit::Stats> {
        self.jit.as_ref().map(|c| &c.stats)
    }

    pub(crate) fn artifact(&self) -> &Arc<Artifact> {
        &self.artifact
    }

    pub(crate) fn program(&self) -> &Program {
        &self.artifact.body.program
    }

    /// Every monitor's value at the step this engine evaluated last (`lever explain`).
    pub(crate) fn monitor_values(&self) -> &[Slot] {
        &self.scratch.values.monitors
    }

    /// Starts a run: binds every policy whose scope matches (LANGUAGE §9).
    pub fn start_run(&mut self, start: &RunStart) -> (Run, Outcome) {
        let program = &self.artifact.body.program;
        let mut bound = Vec::new();
        let mut zones = Vec::new();
        let mut awaiting = Vec::new();
        for (i, p) in program.policies.iter().enumerate() {
            if !scope::matches(&p.scope, start) {
                continue;
            }
            if p.bind == crate::base::lang::Bind::FirstToken {
                awaiting.push(u16::try_from(i).unwrap_or(u16::MAX));
                continue;
            }
            bound.push(Bound {
                policy: u16::try_from(i).unwrap_or(u16::MAX),
                first_limit: u16::try_from(zones.len()).unwrap_or(u16::MAX),
                holds_pause: false,
                suspension: None,
                throttle: Throttle::default(),
            });
            zones.extend(std::iter::repeat_n(Zone::Below, p.limits.len()));
        }
        let labels = program
            .labels
            .iter()
            .map(|k| start.labels.get(k).cloned().unwrap_or_default())
            .collect();
        let aggs = crate::vm::Aggs::new(&program.aggregates);
        let arbitration =
            arbitrate::arbitrate(program, &bound, zones.len(), arbitrate::RunTerms::NONE);
        let snapshot = self.snapshot(&bound, &arbitration.shadowed, &[]);
        let (state, state_reason) = match &arbitration.stop {
            Some(reason) => (RunState::Stopped, Some(reason.clone())),
            None => (RunState::Running, None),
        };
        let run = Run {
            id: Arc::from(start.run_id.as_str()),
            attrs: start.clone(),
            labels,
            seq: 1,
            clock: start.ts,
            state,
            state_reason: state_reason.clone(),
            ended: false,
            aggs,
            bound,
            zones,
            raises: Vec::new(),
            shadowed: arbitration.shadowed,
            awaiting,
            conflicts_seen: arbitration.conflicts.iter().map(conflict_key).collect(),
            forced_groups: arbitration.forced,
            first_token_passed: false,
            rebind: None,
            started: Vec::new(),
            fresh_since: None,
            snapshot: Arc::from(snapshot.hash.as_str()),
            totals: Totals::default(),
            budget_keys: Box::default(),
            observed: Vec::new(),
            layout: super::layout::LayoutSlot::default(),
            pending: Vec::new(),
            requests: std::collections::BTreeMap::new(),
            keys: None,
        };
        let mut decision = self.decision(
            &run,
            start.ts,
            "run_start",
            run.state.action(),
            state_reason,
        );
        decision.signals = arbitration.conflicts;
        let mut outcome = Outcome::of(decision);
        outcome.snapshot = Some(snapshot);
        (run, outcome)
    }

    pub(super) fn decision(
        &self,
        run: &Run,
        ts: i64,
        event: &'static str,
        action: Action,
        reason: Option<String>,
    ) -> Decision {
        Decision {
            line: None,
            run_id: Some(Arc::clone(&run.id)),
            seq: Some(run.seq),
            ts: Some(ts),
            event: Some(event),
            action,
            reason,
            signals: Vec::new(),
            alerts: Vec::new(),
            budgets: Vec::new(),
            override_outcome: None,
            snapshot: Some(Arc::clone(&run.snapshot)),
            artifact: Some(Arc::clone(&self.artifact_id)),
        }
    }

    /// Ends a run; the decision carries its final state.
    pub(crate) fn end_run(&mut self, run: &mut Run, end: &RunEnd) -> Outcome {
        run.seq += 1;
        run.clock = run.clock.max(end.ts);
        run.ended = true;
        run.pending.clear(); // pending requests lapse when the run ends
        let decision = self.decision(
            run,
            end.ts,
            "run_end",
            run.state.action(),
            run.state_reason.clone(),
        );
        Outcome::of(decision)
    }

    /// Judges one step. A step of a paused or finished run is still counted and judged,
    /// and is `refused` unless an enforcement more severe than the run's state fires.
    /// The step is judged at the run's clock (its own `ts` when that is later); its
    /// decision keeps its own `ts`.
    ///
    /// `metrics` are the step's metrics read for this engine's program
    /// (`event::read_metrics`): one value per declared signal.
    ///
    /// Budgets across runs count in the engine's own counters; a caller that judges several
    /// engines' runs shares one set with [`Engine::step_counted`].
    pub fn step(&mut self, run: &mut Run, step: &Step, metrics: &[i64]) -> Outcome {
        self.judge_step(run, step, metrics, None);
        self.step_outcome(run, step)
    }

    /// [`Engine::step`] with the budget counters the step adds to.
    pub fn step_counted(
        &mut self,
        run: &mut Run,
        step: &Step,
        metrics: &[i64],
        budgets: &mut super::budget::Budgets,
    ) -> Outcome {
        self.step_verdict(run, step, metrics, budgets);
        self.step_outcome(run, step)
    }

    /// Judges one step as [`Engine::step_counted`] does, and returns only what it decided:
    /// the run's state has moved on, but no decision, signal or alert is built until
    /// [`Engine::step_outcome`] asks for it. A quiet step (no limit needing attention, nothing
    /// re-bound) builds nothing at all.
    pub fn step_verdict(
        &mut self,
        run: &mut Run,
        step: &Step,
        metrics: &[i64],
        budgets: &mut super::budget::Budgets,
    ) -> Verdict {
        self.judge_step(run, step, metrics, Some(budgets))
    }

    /// [`Engine::step_verdict`], counting in `budgets` or (`None`) the engine's own.
    fn judge_step(
        &mut self,
        run: &mut Run,
        step: &Step,
        metrics: &[i64],
        budgets: Option<&mut super::budget::Budgets>,
    ) -> Verdict {
        run.seq += 1;
        if let Some(key) = &step.idempotency_key {
            run.remember_key(key, run.seq);
        }
        run.clock = run.clock.max(step.ts);
        let at = run.clock;
        overrides::expire(run, at);
        self.ensure_layout(run);
        if self.budget_slots.is_empty() {
            self.evaluate(run, step, metrics, at);
        } else {
            self.budget_before(run);
            self.evaluate(run, step, metrics, at);
            match budgets {
                Some(b) => self.count_budgets(run, b, at),
                None => {
                    let mut own = std::mem::take(&mut self.budgets);
                    self.count_budgets(run, &mut own, at);
                    self.budgets = own;
                }
            }
        }
        run.observed.clear();
        run.observed.extend_from_slice(self.monitor_values());
        self.scratch.pending.clear();
        let first_token = step.output_tokens > 0 && !run.first_token_passed;
        run.first_token_passed |= step.output_tokens > 0;
        if run.rebind.is_some() || (first_token && !run.awaiting.is_empty()) {
            let mut out = std::mem::take(&mut self.scratch.pending);
            out.snapshot = self
                .rebind(run, first_token, &mut out.signals, &mut out.candidates)
                .map(Box::new);
            self.scratch.pending = out;
            self.relayout(run);
        }
        self.judge(at, run);
        let out = &mut self.scratch.pending;
        let action = out.settle(run);
        run.totals.steps += 1;
        if action == Action::Refused {
            run.totals.refused += 1;
        }
        run.totals.input_tokens = run.totals.input_tokens.saturating_add(step.input_tokens);
        run.totals.output_tokens = run.totals.output_tokens.saturating_add(step.output_tokens);
        run.totals.cost = run.totals.cost.saturating_add(step.cost);
        let quiet = out.signals.is_empty() && out.snapshot.is_none();
        Verdict { action, quiet }
    }

    /// The decision of the step [`Engine::step_verdict`] judged last (on this run), with
    /// its signals, alerts, incidents and records.
    #[inline]
    pub fn step_outcome(&mut self, run: &Run, step: &Step) -> Outcome {
        let out = &mut self.scratch.pending;
        let (action, reason) = (out.action, out.reason.take());
        let signals = std::mem::take(&mut out.signals);
        let alerts = std::mem::take(&mut out.alerts);
        let incidents = std::mem::take(&mut out.incidents);
        let snapshot = out.snapshot.take().map(|s| *s);
        let mut decision = self.decision(run, step.ts, "step", action, reason);
        decision.signals = signals;
        decision.alerts = alerts;
        if !self.budget_slots.is_empty() {
            decision.budgets = super::budget::contributions(&self.scratch.counted);
        }
        Outcome {
            decision,
            snapshot,
            incidents,
            prompt: self.prompt_record(run, step),
        }
    }

    /// A step's prompt is stored only when some policy applies and all allow prompt
    /// logging; a step marked `pii` is never stored while any applying policy denies PII
    /// capture (DESIGN §3).
    pub(super) fn prompt_record(&self, run: &Run, step: &Step) -> Option<PromptRecord> {
        let prompt = step.prompt.as_ref()?;
        let program = self.program();
        let policies: Vec<&PolicyDesc> = run
            .bound
            .iter()
            .map(|b| b.policy)
            .chain(run.awaiting.iter().copied())
            .filter_map(|p| program.policies.get(usize::from(p)))
            .collect();
        if policies.is_empty() || policies.iter().any(|p| !p.prompt_logging) {
            return Some(PromptRecord::Redacted("prompt_logging"));
        }
        if step.pii && policies.iter().any(|p| !p.pii_capture) {
            return Some(PromptRecord::Redacted("pii_capture"));
        }
        Some(PromptRecord::Stored(prompt.clone()))
    }
}

/// String fields that some `field == "const"` instruction compares.
pub(super) fn compared_string_fields(program: &Program) -> Vec<u16> {
    let mut codes: Vec<&crate::compile::bytecode::Code> = Vec::new();
    for a in &program.aggregates {
        codes.extend(a.arg.iter().chain(a.filter.iter()));
    }
    codes.extend(program.monitors.iter().map(|m| &m.code));
    for f in &program.fields {
        if let FieldSource::Derived(c) = &f.source {
            codes.push(c);
        }
    }
    let mut fields: Vec<u16> = codes
        .iter()
        .flat_map(|c| c.ops.iter())
        .filter_map(|op| match op {
            crate::compile::bytecode::Op::FieldEqStr(f, _, _) => Some(*f),
            _ => None,
        })
        .collect();
    fields.sort_unstable();
    fields.dedup();
    fields
}

/// The fields whose value some code reads, by index in field order; the others (the
/// extern fields a module declares and the program never uses, a `let` nobody reads) are
/// never read from a step. A field is read when some aggregate, monitor or read derived
/// field names its slot; a derived field reads only earlier fields, so one pass from the
/// end settles it.
fn read_fields(program: &Program) -> Vec<u16> {
    let mut reads = Reads::default();
    for a in &program.aggregates {
        for c in a.arg.iter().chain(a.filter.iter()) {
            reads.code(c);
        }
    }
    for m in &program.monitors {
        reads.code(&m.code);
    }
    let mut read_fields = Vec::new();
    for (i, f) in program.fields.iter().enumerate().rev() {
        let read = match &f.source {
            FieldSource::Event(e) if e.is_string() => reads.strs.contains(&f.slot),
            _ => reads.nums.contains(&f.slot) || reads.bools.contains(&f.slot),
        };
        if !read {
            continue;
        }
        if let FieldSource::Derived(code) = &f.source {
            reads.code(code);
        }
        read_fields.push(u16::try_from(i).unwrap_or(u16::MAX));
    }
    read_fields.reverse();
    read_fields
}

/// The field slots code reads, by kind.
#[derive(Default)]
struct Reads {
    nums: Vec<u16>,
    bools: Vec<u16>,
    strs: Vec<u16>,
}

impl Reads {
    fn code(&mut self, code: &crate::compile::bytecode::Code) {
        use crate::compile::bytecode::Op;
        for op in &code.ops {
            match op {
                Op::NumField(s) | Op::FieldCmpNum(s, _, _) => self.nums.push(*s),
                Op::BoolField(s) => self.bools.push(*s),
                Op::StrField(s) | Op::FieldEqStr(s, _, _) => self.strs.push(*s),
                _ => {}
            }
        }
    }
}

/// What makes a conflict distinct: its group (the lead's limit), kind, lead and `with`.
pub(super) fn conflict_key(s: &Signal) -> String {
    format!(
        "{}|{}|{}|{}",
        s.limit.as_deref().unwrap_or(""),
        s.conflict.unwrap_or(""),
        s.policy,
        s.with.as_deref().unwrap_or(&[]).join(",")
    )
}
