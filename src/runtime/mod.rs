//! The runtime: binds an artifact's policies to runs and judges every step.
//!
//! Deterministic and clock-free: the same artifact and events give the same decisions.
//! Per-run state lives in one type, [`Run`], owned by the caller (the replay, the server,
//! or an embedding agent framework); the [`Engine`] holds the artifact and reusable
//! buffers, so the per-step path allocates nothing but the decision it returns.
//!
//! ```
//! use lever::runtime::{Engine, event::{RunStart, Step}};
//! let checked = lever::check::check(lever::source::SourceSet::from_text("p.policy", r#"
//!     import std.llm
//!     policy cap { version 1 scope all limit std.llm.cost to $1.00 { breach => stop } }
//! "#));
//! let artifact = lever::compile::build(&checked, &["p.policy".into()]).unwrap();
//! let mut engine = Engine::new(std::sync::Arc::new(artifact));
//! let start = RunStart { run_id: "r1".into(), ts: 0, tenant: "acme".into(), agent: "bot".into(),
//!     api_key: String::new(), human_actor: String::new(), labels: Default::default(), meta: None };
//! let (mut run, _) = engine.start_run(&start);
//! let mut step = Step { run_id: "r1".into(), ts: 1_000_000_000, input_tokens: 0, output_tokens: 0,
//!     cost: 600_000_000, latency: 0, kind: "llm_call".into(), model: String::new(), tool: String::new(),
//!     pii: false, metrics: Default::default(), prompt: None, meta: None };
//! assert_eq!(engine.step(&mut run, &step, &[]).decision.action, lever::runtime::decision::Action::Continue);
//! step.ts += 1_000_000_000;
//! let second = engine.step(&mut run, &step, &[]).decision;
//! assert_eq!(second.action, lever::runtime::decision::Action::Stop);
//! assert_eq!(second.signals[0].kind, "breach");
//! ```

pub mod arbitrate;
pub mod decision;
pub mod event;
mod outage;
mod overrides;
mod rebind;
mod rejected;
pub mod replay;
pub mod scope;

use crate::base::format;
use crate::base::hash::Fnv1a;
use crate::base::lang::OnError;
use crate::base::lang::{ChannelRef, Enforcement};
use crate::base::num::SCALE;
use crate::compile::artifact::Artifact;
use crate::compile::bytecode::{
    ActionsDesc, EventField, FieldSource, LimitDesc, PolicyDesc, Program,
};
use crate::vm::{self, AggState, Ctx, MAX_STR_FIELDS, NOT_A_CONSTANT, NOT_INTERNED, Slot};
use decision::{Action, Alert, Decision, Signal};
use event::{RunEnd, RunStart, Step};
use std::sync::Arc;

/// A limit's zone (LANGUAGE §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Zone {
    Below,
    Near,
    Breach,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RunState {
    Running,
    Paused,
    Stopped,
    Killed,
}

impl RunState {
    fn of(e: Enforcement) -> RunState {
        match e {
            Enforcement::Pause => RunState::Paused,
            Enforcement::Stop => RunState::Stopped,
            Enforcement::Kill => RunState::Killed,
        }
    }

    fn action(self) -> Action {
        match self {
            RunState::Running => Action::Continue,
            RunState::Paused => Action::Pause,
            RunState::Stopped => Action::Stop,
            RunState::Killed => Action::Kill,
        }
    }

    fn refusal(self) -> &'static str {
        match self {
            RunState::Running => "",
            RunState::Paused => "run_paused",
            RunState::Stopped => "run_stopped",
            RunState::Killed => "run_killed",
        }
    }
}

/// A policy bound to a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// Index into the artifact's policies.
    pub policy: u16,
    /// Where the policy's limits start in [`Run::zones`].
    pub first_limit: u16,
    /// The policy holds a pause (LANGUAGE §9: pauses are held per policy).
    pub holds_pause: bool,
    /// A suspension in force: the policy's enforcement is alert-only.
    pub suspension: Option<Grant>,
    /// Alerts of this policy delivered in the run, and when the last one was.
    pub throttle: Throttle,
}

/// Alert throttling state of one policy in one run (LANGUAGE §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    pub delivered: u32,
    pub last_delivered: Option<i64>,
}

impl Throttle {
    /// Judges one signal's alert at `ts`: `None` delivers it (and counts it), `Some(why)`
    /// suppresses it. BREACH alerts are never suppressed and still count.
    fn judge(&mut self, policy: &PolicyDesc, kind: &str, ts: i64) -> Option<&'static str> {
        if kind != "breach" {
            if policy.max_per_run.is_some_and(|max| self.delivered >= max) {
                return Some("max_per_run");
            }
            if self.last_delivered.is_some_and(|last| {
                i128::from(ts) - i128::from(last) < i128::from(policy.min_interval)
            }) {
                return Some("min_interval");
            }
        }
        self.delivered = self.delivered.saturating_add(1);
        self.last_delivered = Some(ts);
        None
    }
}

/// A granted override in force: `value` for raises; `until` is `None` for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub value: i64,
    pub until: Option<i64>,
}

impl Grant {
    /// In force at `ts` (LANGUAGE §10: while `step.ts < until`).
    pub fn active_at(&self, ts: i64) -> bool {
        self.until.is_none_or(|u| ts < u)
    }
}

/// Totals kept for the run's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub steps: u64,
    pub refused: u64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: i64,
}

/// Everything the runtime keeps for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: Arc<str>,
    pub attrs: RunStart,
    /// The run's value for each of the artifact's label keys.
    labels: Vec<String>,
    /// Events of the run accepted so far (the last one's `seq`).
    pub seq: u64,
    /// The run's clock: the latest `ts` among its accepted events. Every event is judged
    /// at it, so an event stamped earlier (a late parallel tool call) is judged at the
    /// clock, never rejected or set apart.
    pub clock: i64,
    pub state: RunState,
    /// Why the run entered its state (`breach: ...`).
    pub state_reason: Option<String>,
    pub ended: bool,
    aggs: Vec<AggState>,
    pub bound: Vec<Bound>,
    /// The zone of every bound limit, policy by policy (see [`Bound::first_limit`]).
    pub zones: Vec<Zone>,
    /// Raises in force, by index into `zones`; usually empty.
    pub raises: Vec<(u16, Grant)>,
    /// Bound limits arbitration shadowed (parallel to `zones`): not judged.
    pub shadowed: Vec<bool>,
    /// `first_token` policies in scope that await their binding moment.
    pub awaiting: Vec<u16>,
    /// Conflicts already signalled, so re-arbitrating to the same one emits nothing.
    conflicts_seen: Vec<String>,
    /// Groups (by monitor identity) a `fail_closed` disagreement put under
    /// `most_restrictive` for the rest of the run (precise rule 4).
    forced_groups: Vec<String>,
    /// A step with `output_tokens > 0` was seen: `first_token` policies bound, or none to bind.
    pub first_token_passed: bool,
    /// A re-binding prepared by a deploy, carried out at the run's next step.
    rebind: Option<Box<rebind::Plan>>,
    /// Monitors that started after the run's first step (first seen in a deploy), with the
    /// `seq` of the step they started at.
    pub started: Vec<(String, u64)>,
    /// The `seq` of the first step after the run's last re-binding on a deploy.
    fresh_since: Option<u64>,
    pub snapshot: Arc<str>,
    pub totals: Totals,
    /// Override requests waiting for approvals.
    pending: Vec<overrides::Pending>,
    /// Every override request of the run by `seq`, with its status, for approvals.
    requests: std::collections::BTreeMap<u64, decision::OverrideOutcome>,
}

impl Run {
    /// Bytes this run holds: the struct and its heap, windows included.
    pub fn memory_bytes(&self) -> usize {
        let strings = self.id.len()
            + self.attrs.run_id.capacity()
            + self.attrs.tenant.capacity()
            + self.attrs.agent.capacity()
            + self.attrs.api_key.capacity()
            + self.attrs.human_actor.capacity()
            + self
                .attrs
                .labels
                .iter()
                .map(|(k, v)| k.capacity() + v.capacity() + 48)
                .sum::<usize>()
            + self.labels.iter().map(|l| l.capacity() + 24).sum::<usize>()
            + self.state_reason.as_ref().map_or(0, String::capacity)
            + self
                .started
                .iter()
                .map(|(m, _)| m.capacity() + 32)
                .sum::<usize>()
            + self.snapshot.len();
        let aggs = self.aggs.capacity() * std::mem::size_of::<AggState>()
            + self.aggs.iter().map(AggState::heap_bytes).sum::<usize>();
        let bound = self.bound.capacity() * std::mem::size_of::<Bound>()
            + self.zones.capacity()
            + self.raises.capacity() * std::mem::size_of::<(u16, Grant)>();
        std::mem::size_of::<Run>() + strings + aggs + bound
    }
}

/// A snapshot of what a run is bound to, recorded when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub hash: String,
    /// Canonical JSON of the snapshot.
    pub body: String,
}

/// An enforced breach, recorded as an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incident {
    pub policy: String,
    pub limit: String,
    pub enforcement: Enforcement,
}

/// What happened to a step's prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromptRecord {
    Stored(String),
    Redacted(&'static str),
}

/// A decision and what evidence it needs beyond itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub decision: Decision,
    pub snapshot: Option<Snapshot>,
    pub incidents: Vec<Incident>,
    pub prompt: Option<PromptRecord>,
}

impl Outcome {
    fn of(decision: Decision) -> Outcome {
        Outcome {
            decision,
            snapshot: None,
            incidents: Vec::new(),
            prompt: None,
        }
    }
}

/// Reusable evaluation buffers.
#[derive(Debug, Default)]
struct Scratch {
    stack: Vec<Slot>,
    nums: Vec<i64>,
    bools: Vec<bool>,
    aggs: Vec<Slot>,
    monitors: Vec<Slot>,
    /// The same values as native code reads them (JIT engine only).
    flat_aggs: Vec<crate::jit::Flat>,
    flat_monitors: Vec<crate::jit::Flat>,
}

/// Which engine evaluates a program's bytecode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    /// The bytecode interpreter: portable, the default.
    #[default]
    Interp,
    /// Native code compiled with Cranelift; an error where the host has no backend.
    Jit,
    /// The JIT where the host supports it, else the interpreter.
    Auto,
}

/// The interpreter engine over one artifact.
#[derive(Debug)]
pub struct Engine {
    artifact: Arc<Artifact>,
    /// The artifact's id, shared by every decision.
    artifact_id: Arc<str>,
    /// The program's string constants by text, and the string fields compared with them:
    /// each step interns those fields once, so filters compare integers.
    string_ids: std::collections::HashMap<String, u32, std::hash::BuildHasherDefault<Fnv1a>>,
    compared_fields: Vec<u16>,
    scratch: Scratch,
    /// The artifact each policy comes from (a merged engine holds two, see [`rebind`]).
    policy_artifacts: Vec<Arc<str>>,
    /// Merged engines only: where the current artifact's policies start, and the monitors
    /// that started at the deploy.
    merged: Option<rebind::MergedParts>,
    /// Native code for the program, when this engine is the JIT.
    jit: Option<Box<crate::jit::Compiled>>,
}

/// An enforcement candidate at one step: what, and why.
struct Candidate {
    enforcement: Enforcement,
    reason: String,
    /// The breached limit, when this is a breach's enforcement (an incident).
    breach: Option<(String, String)>,
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
        let policy_artifacts = vec![Arc::clone(&artifact_id); program.policies.len()];
        Engine {
            artifact,
            artifact_id,
            string_ids,
            compared_fields,
            scratch: Scratch::default(),
            policy_artifacts,
            merged: None,
            jit: None,
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

    fn set_kind(&mut self, kind: EngineKind) -> Result<(), crate::jit::JitError> {
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
    pub fn jit_stats(&self) -> Option<&crate::jit::Stats> {
        self.jit.as_ref().map(|c| &c.stats)
    }

    pub fn artifact(&self) -> &Arc<Artifact> {
        &self.artifact
    }

    pub fn program(&self) -> &Program {
        &self.artifact.body.program
    }

    /// Every monitor's value at the step this engine evaluated last (`lever explain`).
    pub fn monitor_values(&self) -> &[Slot] {
        &self.scratch.monitors
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
        let aggs = program.aggregates.iter().map(AggState::new).collect();
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
            pending: Vec::new(),
            requests: std::collections::BTreeMap::new(),
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

    /// The snapshot of a set of bound policies: their hashes, artifacts and effective
    /// limits, the shadowed limits, and the monitors that started after the run's start.
    fn snapshot(&self, bound: &[Bound], shadowed: &[bool], started: &[(String, u64)]) -> Snapshot {
        let program = self.program();
        let policies: Vec<serde_json::Value> = bound
            .iter()
            .filter_map(|b| {
                let i = usize::from(b.policy);
                Some((program.policies.get(i)?, self.policy_artifacts.get(i)?))
            })
            .map(|(p, artifact)| {
                let limits: Vec<serde_json::Value> = p
                    .limits
                    .iter()
                    .map(|l| serde_json::json!({"limit": l.name, "value": format::value(l.unit, l.value)}))
                    .collect();
                serde_json::json!({"policy": p.name, "version": p.version, "hash": p.hash, "artifact": artifact.as_ref(), "limits": limits})
            })
            .collect();
        let shadowed_limits: Vec<serde_json::Value> = bound
            .iter()
            .filter_map(|b| program.policies.get(b.policy as usize).map(|p| (b, p)))
            .flat_map(|(b, p)| {
                p.limits.iter().enumerate().filter_map(move |(i, l)| {
                    let flat = usize::from(b.first_limit) + i;
                    shadowed
                        .get(flat)
                        .copied()
                        .unwrap_or(false)
                        .then(|| serde_json::json!({"policy": p.name, "limit": l.name}))
                })
            })
            .collect();
        let mut body = serde_json::json!({"artifact": self.artifact.id, "policies": policies, "shadowed": shadowed_limits});
        if let (false, Some(map)) = (started.is_empty(), body.as_object_mut()) {
            let started = started
                .iter()
                .map(|(monitor, seq)| serde_json::json!({"monitor": monitor, "seq": seq}))
                .collect();
            map.insert("started".into(), started);
        }
        let body = body.to_string();
        let hash = format!("blake3:{}", blake3::hash(body.as_bytes()).to_hex());
        Snapshot { hash, body }
    }

    fn decision(
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
            override_outcome: None,
            snapshot: Some(Arc::clone(&run.snapshot)),
            artifact: Some(Arc::clone(&self.artifact_id)),
        }
    }

    /// Ends a run; the decision carries its final state.
    pub fn end_run(&mut self, run: &mut Run, end: &RunEnd) -> Outcome {
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
    /// ([`event::read_metrics`]): one value per declared signal.
    pub fn step(&mut self, run: &mut Run, step: &Step, metrics: &[i64]) -> Outcome {
        run.seq += 1;
        run.clock = run.clock.max(step.ts);
        let at = run.clock;
        overrides::expire(run, at);
        self.evaluate(run, step, metrics, at);
        let mut signals = Vec::new();
        let mut alerts = Vec::new();
        let mut candidates: Vec<Candidate> = Vec::new();
        let mut incidents = Vec::new();
        let mut snapshot = None;
        let first_token = step.output_tokens > 0 && !run.first_token_passed;
        run.first_token_passed |= step.output_tokens > 0;
        if run.rebind.is_some() || (first_token && !run.awaiting.is_empty()) {
            snapshot = self.rebind(run, first_token, &mut signals, &mut candidates);
        }
        self.judge(at, run, &mut signals, &mut alerts, &mut candidates);
        let prior = run.state;
        let strongest = candidates
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
        for c in candidates {
            if let Some((policy, limit)) = c.breach {
                incidents.push(Incident {
                    policy,
                    limit,
                    enforcement: c.enforcement,
                });
            }
        }
        run.totals.steps += 1;
        if action == Action::Refused {
            run.totals.refused += 1;
        }
        run.totals.input_tokens = run.totals.input_tokens.saturating_add(step.input_tokens);
        run.totals.output_tokens = run.totals.output_tokens.saturating_add(step.output_tokens);
        run.totals.cost = run.totals.cost.saturating_add(step.cost);
        let mut decision = self.decision(run, step.ts, "step", action, reason);
        decision.signals = signals;
        decision.alerts = alerts;
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
    fn prompt_record(&self, run: &Run, step: &Step) -> Option<PromptRecord> {
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

    /// Takes a step into every aggregate at `at`, the time it is judged at, and computes
    /// every monitor's value.
    fn evaluate(&mut self, run: &mut Run, step: &Step, metrics: &[i64], at: i64) {
        let artifact = Arc::clone(&self.artifact);
        let program = &artifact.body.program;
        let s = &mut self.scratch;
        s.nums.clear();
        s.nums.resize(usize::from(program.num_fields), 0);
        s.bools.clear();
        s.bools.resize(usize::from(program.bool_fields), false);
        let mut strs: [&str; MAX_STR_FIELDS] = [""; MAX_STR_FIELDS];
        let mut str_ids = [NOT_INTERNED; MAX_STR_FIELDS];
        let jit = self.jit.as_deref();
        if jit.is_some() {
            s.flat_aggs
                .resize(program.aggregates.len(), crate::jit::Flat::NONE);
            s.flat_monitors.clear();
            s.flat_monitors
                .resize(program.monitors.len(), crate::jit::Flat::NONE);
        }
        for (fi, field) in program.fields.iter().enumerate() {
            let slot = usize::from(field.slot);
            match &field.source {
                FieldSource::Event(e) => match e {
                    EventField::Kind
                    | EventField::Model
                    | EventField::Tool
                    | EventField::Tenant
                    | EventField::Agent
                    | EventField::ApiKey
                    | EventField::HumanActor => {
                        if let Some(dst) = strs.get_mut(slot) {
                            *dst = event_str(*e, step, &run.attrs);
                        }
                    }
                    EventField::Pii => {
                        if let Some(dst) = s.bools.get_mut(slot) {
                            *dst = step.pii;
                        }
                    }
                    _ => {
                        if let Some(dst) = s.nums.get_mut(slot) {
                            *dst = event_num(*e, step, at);
                        }
                    }
                },
                FieldSource::Metric(i) => {
                    if let Some(dst) = s.nums.get_mut(slot) {
                        *dst = metrics.get(usize::from(*i)).copied().unwrap_or(0);
                    }
                }
                FieldSource::Derived(code) => {
                    let ctx = Ctx::step(program, &s.nums, &s.bools, &strs, &str_ids, &run.labels);
                    let native = jit.and_then(|j| j.fields.get(fi).copied().flatten());
                    let v = match native {
                        Some(f) => crate::jit::run(f, &ctx, &s.flat_aggs, &s.flat_monitors),
                        None => vm::eval(code, &ctx, &mut s.stack),
                    };
                    match v {
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
        }
        for &slot in &self.compared_fields {
            let slot = usize::from(slot);
            if let (Some(text), Some(id)) = (strs.get(slot), str_ids.get_mut(slot)) {
                *id = self
                    .string_ids
                    .get(*text)
                    .copied()
                    .unwrap_or(NOT_A_CONSTANT);
            }
        }
        let ctx = Ctx::step(program, &s.nums, &s.bools, &strs, &str_ids, &run.labels);
        let env = crate::jit::Env::new(&ctx, s.flat_aggs.as_ptr(), s.flat_monitors.as_ptr());
        for (ai, (desc, state)) in program
            .aggregates
            .iter()
            .zip(run.aggs.iter_mut())
            .enumerate()
        {
            let native = |table: &[Option<crate::jit::NativeFn>]| {
                jit.and_then(|_| table.get(ai).copied().flatten())
            };
            let matched = match (&desc.filter, jit.and_then(|j| native(&j.filters))) {
                (Some(_), Some(f)) => env.call(f).slot(),
                (Some(code), None) => vm::eval(code, &ctx, &mut s.stack),
                (None, _) => Slot::Bool(true),
            };
            let term = match (&desc.arg, matched) {
                (_, Slot::Bool(false)) => Slot::None,
                (Some(code), _) => match jit.and_then(|j| native(&j.args)) {
                    Some(f) => env.call(f).slot(),
                    None => vm::eval(code, &ctx, &mut s.stack),
                },
                (None, _) => Slot::Num(SCALE),
            };
            state.update(desc, at, matched, term);
        }
        s.aggs.clear();
        s.aggs.extend(run.aggs.iter().map(AggState::value));
        s.monitors.clear();
        match jit {
            Some(j) => {
                for (dst, v) in s.flat_aggs.iter_mut().zip(&s.aggs) {
                    *dst = crate::jit::Flat::of(*v);
                }
                // One environment for every monitor; each result is written through the
                // same pointer the next monitors read it by.
                let monitors = s.flat_monitors.as_mut_ptr();
                let env = crate::jit::Env::new(&ctx, s.flat_aggs.as_ptr(), monitors);
                for (mi, f) in j.monitors.iter().enumerate() {
                    let v = env.call(*f);
                    if mi < s.flat_monitors.len() {
                        // SAFETY: `mi` is in bounds of the buffer `monitors` points at,
                        // which is not resized while `env` lives.
                        unsafe { *monitors.add(mi) = v };
                    }
                    s.monitors.push(v.slot());
                }
            }
            None => {
                for m in &program.monitors {
                    let ctx = Ctx::step(program, &s.nums, &s.bools, &strs, &str_ids, &run.labels)
                        .with_values(&s.aggs, &s.monitors);
                    let v = vm::eval(&m.code, &ctx, &mut s.stack);
                    s.monitors.push(v);
                }
            }
        }
    }

    /// Judges every bound limit against its monitor's value at this step.
    fn judge(
        &self,
        ts: i64,
        run: &mut Run,
        signals: &mut Vec<Signal>,
        alerts: &mut Vec<Alert>,
        candidates: &mut Vec<Candidate>,
    ) {
        let program = self.program();
        let monitors = &self.scratch.monitors;
        for bound in &mut run.bound {
            let Some(policy) = program.policies.get(bound.policy as usize) else {
                continue;
            };
            let suspended = bound.suspension.is_some();
            let first = usize::from(bound.first_limit);
            for (i, limit) in policy.limits.iter().enumerate() {
                if run.shadowed.get(first + i).copied().unwrap_or(false) {
                    continue;
                }
                let Some(zone) = run.zones.get_mut(first + i) else {
                    continue;
                };
                let value = monitors
                    .get(usize::from(limit.monitor))
                    .copied()
                    .unwrap_or(Slot::None);
                let raise = if run.raises.is_empty() {
                    None
                } else {
                    run.raises
                        .iter()
                        .find(|(k, _)| usize::from(*k) == first + i)
                        .map(|(_, g)| g.value)
                };
                // The common case: below every threshold, nothing to signal.
                if let (Slot::Num(observed), None) = (value, raise)
                    && observed < limit.lowest_threshold
                {
                    *zone = Zone::Below;
                    continue;
                }
                let effective = raise.unwrap_or(limit.value);
                match value {
                    Slot::Num(observed) => {
                        let next = zone_of(limit, effective, observed);
                        if next > *zone {
                            let (kind, actions) = match next {
                                Zone::Breach => ("breach", &limit.breach),
                                _ => (
                                    "near",
                                    limit.near.as_ref().map_or(&limit.breach, |n| &n.actions),
                                ),
                            };
                            signals
                                .push(threshold_signal(kind, policy, limit, effective, observed));
                            if !actions.alerts.is_empty() {
                                let why = bound.throttle.judge(policy, kind, ts);
                                push_alerts(program, policy, limit, kind, actions, why, alerts);
                            }
                            if let (Zone::Breach, Some(e), false) =
                                (next, actions.enforcement, suspended)
                            {
                                if e == Enforcement::Pause {
                                    bound.holds_pause = true;
                                }
                                candidates.push(Candidate {
                                    enforcement: e,
                                    reason: format!("breach: {} of {}", limit.name, policy.name),
                                    breach: Some((policy.name.clone(), limit.name.clone())),
                                });
                            }
                        }
                        *zone = next;
                    }
                    Slot::Err(e) => {
                        signals.push(Signal {
                            kind: "error",
                            policy: policy.name.clone(),
                            version: policy.version,
                            policy_hash: policy.hash.clone(),
                            limit: Some(limit.name.clone()),
                            observed: None,
                            limit_value: Some(format::value(limit.unit, effective)),
                            percent: None,
                            error: Some(error_name(e)),
                            conflict: None,
                            with: None,
                        });
                        if policy.on_error == OnError::FailClosed && !suspended {
                            candidates.push(Candidate {
                                enforcement: Enforcement::Stop,
                                reason: format!(
                                    "error: {} in {} of {}",
                                    error_name(e),
                                    limit.name,
                                    policy.name
                                ),
                                breach: None,
                            });
                        }
                    }
                    _ => {} // no value: not judged, zone kept
                }
            }
        }
    }
}

/// String fields that some `field == "const"` instruction compares.
fn compared_string_fields(program: &Program) -> Vec<u16> {
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

/// What makes a conflict distinct: its group (the lead's limit), kind, lead and `with`.
fn conflict_key(s: &Signal) -> String {
    format!(
        "{}|{}|{}|{}",
        s.limit.as_deref().unwrap_or(""),
        s.conflict.unwrap_or(""),
        s.policy,
        s.with.as_deref().unwrap_or(&[]).join(",")
    )
}

fn error_name(e: crate::base::num::ArithError) -> &'static str {
    match e {
        crate::base::num::ArithError::Overflow => "overflow",
        crate::base::num::ArithError::DivisionByZero => "division_by_zero",
    }
}

/// The zone a value puts a limit in: BREACH at `M >= V`, NEAR at `M × 100 >= V × P`.
pub fn zone_of(limit: &LimitDesc, value: i64, observed: i64) -> Zone {
    if observed >= value {
        return Zone::Breach;
    }
    let Some(near) = &limit.near else {
        return Zone::Below;
    };
    // The compiled value's threshold is precomputed; a raised value is judged directly.
    let is_near = if value == limit.value {
        near.near_at.is_some_and(|at| observed >= at)
    } else {
        i128::from(observed) * 100 * i128::from(SCALE)
            >= i128::from(value) * i128::from(near.percent)
    };
    if is_near { Zone::Near } else { Zone::Below }
}

fn threshold_signal(
    kind: &'static str,
    policy: &PolicyDesc,
    limit: &LimitDesc,
    value: i64,
    observed: i64,
) -> Signal {
    Signal {
        kind,
        policy: policy.name.clone(),
        version: policy.version,
        policy_hash: policy.hash.clone(),
        limit: Some(limit.name.clone()),
        observed: Some(format::value(limit.unit, observed)),
        limit_value: Some(format::value(limit.unit, value)),
        percent: format::percent(observed, value),
        error: None,
        conflict: None,
        with: None,
    }
}

fn push_alerts(
    program: &Program,
    policy: &PolicyDesc,
    limit: &LimitDesc,
    kind: &'static str,
    actions: &ActionsDesc,
    suppressed: Option<&'static str>,
    alerts: &mut Vec<Alert>,
) {
    for channel in &actions.alerts {
        let name = match channel {
            ChannelRef::Ui => "ui".to_string(),
            ChannelRef::Declared(i) => program
                .channels
                .get(*i as usize)
                .map_or_else(|| "?".into(), |c| c.name.clone()),
        };
        alerts.push(Alert {
            policy: policy.name.clone(),
            limit: limit.name.clone(),
            kind,
            channel: name,
            suppressed: suppressed.is_some(),
            why: suppressed,
        });
    }
}

fn event_str<'a>(field: EventField, step: &'a Step, run: &'a RunStart) -> &'a str {
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
fn event_num(field: EventField, step: &Step, at: i64) -> i64 {
    match field {
        EventField::InputTokens => step.input_tokens,
        EventField::OutputTokens => step.output_tokens,
        EventField::Cost => step.cost,
        EventField::Latency => step.latency,
        EventField::Ts => at,
        _ => 0,
    }
}
