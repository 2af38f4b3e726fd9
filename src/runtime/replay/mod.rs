//! Replay: events in, decisions and evidence records out, one line at a time.
//!
//! Owns the run checks (`duplicate_run`, `unknown_run`, `run_ended`; "already started" is
//! judged within one replay), the runs of a replay, and the artifacts deployed during it:
//! new runs bind to the artifact deployed last, and a run in progress re-binds its
//! `each_step` policies against it (see `rebind`). A rejected step of a live run is judged
//! as an error of that run (see `rejected`).

mod deploy;
mod rebuild;

pub(crate) use rebuild::{ArtifactSource, RebuildError, Rebuilt};

use super::decision::Decision;
use super::event::{self, Event, RejectCode, Rejection};
use super::records::{outcome_records, rejected_decision, rejected_record, summary_record};
use super::{Engine, Outcome, Run};
use crate::compile::artifact::Artifact;
use crate::evidence::{Record, RecordKind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Loads the artifact a `deploy` event names: a `.lvc` file, or policy sources to build.
pub(crate) type ArtifactLoader = dyn Fn(&Path) -> Result<Artifact, String> + Send + Sync;

/// The state of one replay.
pub struct Replay {
    engines: Vec<Engine>,
    current: usize,
    /// Each run, by id.
    runs: BTreeMap<String, Held>,
    /// The engine every artifact of this replay runs on.
    kind: super::EngineKind,
    /// Merged engines by (home engine, current artifact's engine), see [`Engine::merged`].
    merged: BTreeMap<(usize, usize), usize>,
    base_dir: PathBuf,
    loader: Box<ArtifactLoader>,
    artifact_recorded: Vec<bool>,
    /// Whether the evidence store is down: run starts and steps are then judged under the
    /// outage rule ([`Engine::store_outage`]) before their records are made.
    store_outage: bool,
    /// The longest line read (`line_bytes`).
    line_limit: usize,
    /// The counters of budgets across runs, from this replay's own events.
    budgets: crate::runtime::budget::Budgets,
}

/// A run's state saved before an event, to put back when the event's evidence is refused.
pub(crate) struct SavedRun(Option<Held>);

/// A run and the engines it is bound to.
#[derive(Clone)]
struct Held {
    run: Run,
    /// The engine that judges the run.
    engine: usize,
    /// The artifact current when the run last bound (`each_step` re-binds on a deploy).
    seen: usize,
    /// The run's metric labels, with the engine and bound policies they were read for: a
    /// step reuses them until the run binds otherwise.
    labels: Option<(usize, Vec<u16>, Arc<RunLabels>)>,
}

/// What a run's steps are counted under in the metrics: its tenant and bound policies.
#[derive(Debug)]
pub(crate) struct RunLabels {
    pub tenant: String,
    pub policies: Vec<String>,
}

/// The result of one input line.
pub struct LineResult {
    pub decision: Decision,
    pub records: Vec<Record>,
    /// The line was rejected (its action is `rejected`, or `stop` when the rejected step
    /// stopped its run).
    pub rejected: bool,
}

impl Replay {
    /// `base_dir` resolves relative artifact paths of `deploy` events.
    pub fn new(artifact: Arc<Artifact>, base_dir: PathBuf, loader: Box<ArtifactLoader>) -> Replay {
        Replay::of_engines(Engine::new(artifact), base_dir, loader)
    }

    /// A replay whose artifacts (the first and every deployed one) run on engines of `kind`.
    pub fn with_engine(
        artifact: Arc<Artifact>,
        base_dir: PathBuf,
        loader: Box<ArtifactLoader>,
        kind: super::EngineKind,
    ) -> Result<Replay, crate::jit::JitError> {
        Ok(Replay::of_engines(
            Engine::of_kind(artifact, kind)?,
            base_dir,
            loader,
        ))
    }

    fn of_engines(first: Engine, base_dir: PathBuf, loader: Box<ArtifactLoader>) -> Replay {
        Replay {
            kind: first.kind(),
            engines: vec![first],
            current: 0,
            runs: BTreeMap::new(),
            merged: BTreeMap::new(),
            base_dir,
            loader,
            artifact_recorded: vec![false],
            store_outage: false,
            line_limit: 1 << 20,
            budgets: crate::runtime::budget::Budgets::default(),
        }
    }

    /// A channel of an artifact this replay loaded, by the artifact's id and the name.
    pub(crate) fn channel(
        &self,
        artifact: &str,
        name: &str,
    ) -> Option<crate::compile::bytecode::ChannelDesc> {
        self.engines
            .iter()
            .filter(|e| e.artifact().id == artifact)
            .flat_map(|e| e.artifact().body.program.channels.iter())
            .find(|c| c.name == name)
            .cloned()
    }

    /// Judges the run starts and steps that follow under the store-outage rule (DESIGN §7),
    /// or, with `false`, normally again.
    pub(crate) fn set_store_outage(&mut self, down: bool) {
        self.store_outage = down;
    }

    /// Saves a run's state (or that there is no such run) before an event of it is judged.
    pub(crate) fn save_run(&self, id: &str) -> SavedRun {
        SavedRun(self.runs.get(id).cloned())
    }

    /// The replay's budget counters (a server makes them strict and fills them from its
    /// store).
    pub(crate) fn budgets_mut(&mut self) -> &mut crate::runtime::budget::Budgets {
        &mut self.budgets
    }

    /// `lever test`'s `spent`: the counter of a budget for run `run_id`'s key, in the window
    /// holding `at`, starts at `value`.
    pub(crate) fn set_spent(
        &mut self,
        run_id: &str,
        policy: &str,
        limit: &str,
        value: i64,
        at: i64,
    ) -> Result<(), String> {
        let held = self
            .runs
            .get(run_id)
            .ok_or_else(|| format!("no run `{run_id}` has started"))?;
        let program = &self
            .engines
            .get(held.engine)
            .ok_or("the run's engine is not loaded")?
            .artifact()
            .body
            .program;
        let p = program
            .policies
            .iter()
            .find(|p| p.name == policy)
            .ok_or_else(|| format!("no policy `{policy}`"))?;
        let budget = p
            .limits
            .iter()
            .find(|l| l.name == limit)
            .and_then(|l| l.budget.as_ref())
            .ok_or_else(|| format!("policy `{policy}` has no budget on `{limit}`"))?;
        let key = crate::runtime::budget::counter_key(policy, limit, budget, &held.run.attrs, at);
        self.budgets.set(key.id.to_string(), value);
        Ok(())
    }

    /// Puts a run back as it was saved: the event judged since is undone (its evidence was
    /// refused, so it never happened). A run that did not exist is forgotten.
    pub(crate) fn restore_run(&mut self, id: &str, saved: SavedRun) {
        match saved.0 {
            Some(held) => {
                self.runs.insert(id.to_string(), held);
            }
            None => {
                self.runs.remove(id);
            }
        }
    }

    /// A run of this replay and the engine that judges it.
    pub(crate) fn run(&self, id: &str) -> Option<(&Engine, &Run)> {
        let held = self.runs.get(id)?;
        Some((self.engines.get(held.engine)?, &held.run))
    }

    /// A held run's tenant and the names of the policies bound to it (metrics' labels).
    pub(crate) fn labels(&mut self, id: &str) -> Option<Arc<RunLabels>> {
        let held = self.runs.get_mut(id)?;
        let bound = || held.run.bound.iter().map(|b| b.policy);
        if let Some((engine, policies, labels)) = &held.labels
            && *engine == held.engine
            && policies.iter().copied().eq(bound())
        {
            return Some(Arc::clone(labels));
        }
        let program = &self.engines.get(held.engine)?.artifact().body.program;
        let labels = Arc::new(RunLabels {
            tenant: held.run.attrs.tenant.clone(),
            policies: bound()
                .filter_map(|p| program.policies.get(usize::from(p)).map(|p| p.name.clone()))
                .collect(),
        });
        held.labels = Some((held.engine, bound().collect(), Arc::clone(&labels)));
        Some(labels)
    }

    /// The engine of a loaded artifact, by its id (the current one, or one a run holds to).
    pub(crate) fn engine_of(&self, artifact: &str) -> Option<&Engine> {
        self.engines.iter().find(|e| e.artifact().id == artifact)
    }

    /// The engine of the artifact deployed last.
    pub(crate) fn current_engine(&self) -> Option<&Engine> {
        self.engines.get(self.current)
    }

    fn current_id(&self) -> String {
        self.current_engine()
            .map(|e| e.artifact().id.clone())
            .unwrap_or_default()
    }

    /// Processes one line (1-based `line`); `None` for a line holding only whitespace.
    /// Processes one line given as bytes: a line that is not UTF-8 is rejected on its own
    /// (`malformed_json`), never failing the lines around it.
    pub fn line_bytes(&mut self, line: u64, bytes: &[u8]) -> Option<LineResult> {
        if bytes.len() > self.line_limit {
            let detail = format!(
                "the line is {} bytes, more than the {} an event may take; it is not read",
                bytes.len(),
                self.line_limit
            );
            return Some(self.unread(line, bytes, RejectCode::InvalidField, detail));
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => self.line(line, text),
            Err(e) => Some(self.unread(
                line,
                bytes,
                RejectCode::MalformedJson,
                format!("not UTF-8 ({e})"),
            )),
        }
    }

    /// A line rejected before it is read: it names no run and affects none.
    fn unread(&mut self, line: u64, bytes: &[u8], code: RejectCode, detail: String) -> LineResult {
        let mut records = self.artifact_record();
        let rejection = Rejection {
            code,
            detail,
            run_id: None,
            ts: None,
            event: None,
        };
        let artifact = self.current_id();
        records.push(rejected_record(&artifact, line, bytes, &rejection, None));
        let mut decision = rejected_decision(&rejection, artifact);
        decision.line = Some(line);
        LineResult {
            decision,
            records,
            rejected: true,
        }
    }

    /// Lines longer than `bytes` are rejected unread (default 1 MiB).
    pub(crate) fn set_line_limit(&mut self, bytes: usize) {
        self.line_limit = bytes;
    }

    /// Reads and judges one line of JSON: `lever run`'s input. `None` for a line holding
    /// only whitespace.
    pub fn line(&mut self, line: u64, text: &str) -> Option<LineResult> {
        if text.trim().is_empty() {
            return None;
        }
        Some(match event::parse(text) {
            Ok(event) => self.judge(line, Some(text.as_bytes()), &event),
            Err(rejection) => self.rejected_line(line, text.as_bytes(), &rejection),
        })
    }

    /// Judges one event. `line` numbers it among this replay's inputs (the record of a
    /// rejection is placed by it, and carries the hash of the event as evidence records it).
    pub(crate) fn apply(&mut self, line: u64, event: &Event) -> LineResult {
        self.judge(line, None, event)
    }

    /// [`Replay::apply`] for an event decoded from `received` (a request body): the record
    /// of a rejection carries the hash of those bytes.
    pub(crate) fn apply_received(
        &mut self,
        line: u64,
        received: &[u8],
        event: &Event,
    ) -> LineResult {
        self.judge(line, Some(received), event)
    }

    fn judge(&mut self, line: u64, received: Option<&[u8]>, event: &Event) -> LineResult {
        let mut records = self.artifact_record();
        let result = self.judge_event(event);
        let rejected = result.is_err();
        let mut decision = match result {
            Ok((outcome, extra, input)) => {
                records.extend(outcome_records(&outcome, input));
                records.extend(extra);
                outcome.decision
            }
            Err((rejection, input)) => {
                let text = match received {
                    Some(bytes) => std::borrow::Cow::Borrowed(bytes),
                    None => std::borrow::Cow::Owned(input.to_string().into_bytes()),
                };
                let (decision, record) = self.rejected(line, &text, &rejection);
                records.push(record);
                decision
            }
        };
        decision.line = Some(line);
        LineResult {
            decision,
            records,
            rejected,
        }
    }

    /// The program that judges a run: its own, or for a run it does not know, the one
    /// deployed last.
    fn program_of(&self, run_id: &str) -> Option<&crate::compile::bytecode::Program> {
        self.runs
            .get(run_id)
            .and_then(|held| self.engines.get(held.engine))
            .or_else(|| self.current_engine())
            .map(Engine::program)
    }

    /// Reads what the program that judges the run gives meaning to (a step's metrics, a
    /// raise's `to`), then judges the event: its outcome, the records beyond the outcome's,
    /// and the event as evidence records it; or the rejection, with the same.
    #[allow(clippy::type_complexity)]
    fn judge_event(
        &mut self,
        e: &Event,
    ) -> Result<(Outcome, Vec<Record>, serde_json::Value), (Rejection, serde_json::Value)> {
        let read = match e {
            Event::Step(step) => event::read_metrics(step, self.program_of(&step.run_id)),
            Event::Override(req) => {
                event::check_raise(req, self.program_of(&req.run_id)).map(|()| Vec::new())
            }
            _ => Ok(Vec::new()),
        };
        let metrics = match read {
            Ok(m) => m,
            Err(rejection) => return Err((rejection, event::evidence_json(e, &[]))),
        };
        let input = event::evidence_json(e, &metrics);
        match self.apply_event(e, &metrics) {
            Ok((outcome, extra)) => Ok((outcome, extra, input)),
            Err(rejection) => Err((rejection, input)),
        }
    }

    /// Judges a line rejected before it could be read (a request body the server does
    /// not read, such as one with a duplicate key) as any rejected line: `rejection` names
    /// its run and type, so that a rejected step of a live run is an error of that run.
    pub(crate) fn rejected_line(
        &mut self,
        line: u64,
        text: &[u8],
        rejection: &Rejection,
    ) -> LineResult {
        let mut records = self.artifact_record();
        let (mut decision, record) = self.rejected(line, text, rejection);
        records.push(record);
        decision.line = Some(line);
        LineResult {
            decision,
            records,
            rejected: true,
        }
    }

    /// A rejected line's decision and record. A line of a live run (started in this
    /// replay and not ended) joins the run's chain, and a rejected step of it is judged as
    /// an error of the run; any other line joins the store chain and affects no run.
    fn rejected(&mut self, line: u64, text: &[u8], rejection: &Rejection) -> (Decision, Record) {
        let live = rejection
            .run_id
            .as_deref()
            .and_then(|id| self.runs.get_mut(id))
            .filter(|held| !held.run.ended);
        let Some(held) = live else {
            let artifact = self.current_id();
            let record = rejected_record(&artifact, line, text, rejection, None);
            return (rejected_decision(rejection, artifact), record);
        };
        let Some(engine) = self.engines.get(held.engine) else {
            let artifact = self.current_id();
            let record = rejected_record(&artifact, line, text, rejection, None);
            return (rejected_decision(rejection, artifact), record);
        };
        let decision = if super::rejected::judged_as_error(rejection) {
            engine.rejected_step(&mut held.run, rejection)
        } else {
            let mut d = rejected_decision(rejection, engine.artifact().id.clone());
            d.run_id = Some(Arc::clone(&held.run.id));
            d
        };
        let artifact = decision.artifact.as_deref().unwrap_or_default().to_string();
        let record = rejected_record(&artifact, line, text, rejection, Some(&decision));
        (decision, record)
    }

    /// The artifact record, once per artifact per replay (the store keeps one copy).
    fn artifact_record(&mut self) -> Vec<Record> {
        let Some(done) = self.artifact_recorded.get_mut(self.current) else {
            return Vec::new();
        };
        if *done {
            return Vec::new();
        }
        *done = true;
        let Some(engine) = self.engines.get(self.current) else {
            return Vec::new();
        };
        let a = engine.artifact();
        let hex = crate::base::hash::hex(&a.bytes);
        vec![Record {
            kind: RecordKind::Artifact,
            artifact: a.id.clone(),
            run_id: None,
            seq: 0,
            index: 0,
            body: serde_json::json!({"hash": a.id, "bytes": hex}),
        }]
    }

    fn apply_event(
        &mut self,
        e: &Event,
        metrics: &[i64],
    ) -> Result<(Outcome, Vec<Record>), Rejection> {
        let reject = |code: RejectCode, detail: String| Rejection {
            code,
            detail,
            run_id: e.run_id().map(str::to_string),
            ts: Some(e.ts()),
            event: Some(e.kind()),
        };
        let run_event = match e {
            Event::Deploy(d) => {
                return self
                    .deploy(d)
                    .map_err(|why| reject(RejectCode::BadArtifact, why));
            }
            Event::RunStart(start) => {
                return self.start(start).map_err(|(code, why)| reject(code, why));
            }
            Event::Step(step) => RunEvent::Step(step),
            Event::Override(req) => RunEvent::Override(req),
            Event::Approval(a) => RunEvent::Approval(a),
            Event::RunEnd(end) => RunEvent::End(end),
        };
        let (run, engine) = checked_run(&mut self.runs, &mut self.engines, e)
            .map_err(|(code, why)| reject(code, why))?;
        match run_event {
            RunEvent::Step(step) => {
                let mut outcome = engine.step_counted(run, step, metrics, &mut self.budgets);
                if self.store_outage {
                    engine.store_outage(run, &mut outcome);
                }
                Ok((outcome, Vec::new()))
            }
            RunEvent::End(end) => {
                let outcome = engine.end_run(run, end);
                let summary = summary_record(&engine.artifact().id, run, &outcome);
                Ok((outcome, vec![summary]))
            }
            RunEvent::Override(req) => engine
                .override_request(run, req)
                .map(|o| (o, Vec::new()))
                .map_err(|why| reject(RejectCode::InvalidField, why)),
            RunEvent::Approval(a) => engine
                .approval(run, a)
                .map(|o| (o, Vec::new()))
                .map_err(|why| reject(RejectCode::InvalidField, why)),
        }
    }

    /// Starts a run on the artifact deployed last; "already started" is judged within
    /// this replay.
    fn start(
        &mut self,
        start: &event::RunStart,
    ) -> Result<(Outcome, Vec<Record>), (RejectCode, String)> {
        if self.runs.contains_key(&start.run_id) {
            return Err((
                RejectCode::DuplicateRun,
                format!("run `{}` was already started", start.run_id),
            ));
        }
        let index = self.current;
        let engine = self
            .engines
            .get_mut(index)
            .ok_or((RejectCode::BadArtifact, "no artifact is loaded".to_string()))?;
        let (mut run, mut outcome) = engine.start_run(start);
        if self.store_outage {
            engine.store_outage(&mut run, &mut outcome);
        }
        let held = Held {
            run,
            engine: index,
            seen: index,
            labels: None,
        };
        self.runs.insert(start.run_id.clone(), held);
        Ok((outcome, Vec::new()))
    }
}

/// An event of an existing run.
enum RunEvent<'e> {
    Step(&'e event::Step),
    Override(&'e event::OverrideRequest),
    Approval(&'e event::Approval),
    End(&'e event::RunEnd),
}

/// The run an event names and the engine it is bound to, after the run checks
/// (`unknown_run`, `run_ended`). An event stamped before the run's clock is accepted.
fn checked_run<'a>(
    runs: &'a mut BTreeMap<String, Held>,
    engines: &'a mut [Engine],
    e: &Event,
) -> Result<(&'a mut Run, &'a mut Engine), (RejectCode, String)> {
    let run_id = e.run_id().unwrap_or_default();
    let Some(Held {
        run,
        engine: engine_index,
        ..
    }) = runs.get_mut(run_id)
    else {
        return Err((
            RejectCode::UnknownRun,
            format!("run `{run_id}` was never started"),
        ));
    };
    if run.ended {
        return Err((RejectCode::RunEnded, format!("run `{run_id}` has ended")));
    }
    let engine = engines.get_mut(*engine_index).ok_or((
        RejectCode::BadArtifact,
        "the run's artifact is not loaded".to_string(),
    ))?;
    Ok((run, engine))
}
