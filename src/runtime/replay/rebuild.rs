//! Rebuilding a run from its evidence chain: a run's state is a pure function of its
//! artifact and its accepted inputs, and every decision record stores its input, so the
//! chain is the run's durable state. Each stored input is judged again on the engine its
//! decision names, and every record the judgment makes must equal the stored one byte for
//! byte; a run that does not is refused, naming its seq, and never served.

use super::{Held, Replay};
use crate::compile::artifact::Artifact;
use crate::evidence::{Record, RecordKind, Sealed, Stored};
use crate::runtime::event::{self, Event};
use crate::runtime::records::{outcome_records, summary_record};
use crate::runtime::{Engine, Outcome, RunState};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Finds a stored artifact by its id (the store's `artifact` records).
pub(crate) type ArtifactSource<'a> = dyn FnMut(&str) -> Result<Artifact, String> + 'a;

/// Why a run's chain could not be judged again to what it holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("run `{run}` cannot be rebuilt from its evidence at seq {seq}: {why}")]
pub(crate) struct RebuildError {
    pub run: String,
    pub seq: u64,
    pub why: String,
}

/// What a chain held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rebuilt {
    /// No record of the run: it was never started.
    Nothing,
    /// A run in progress, now held.
    Live,
    /// A run in progress, now held on its own artifact: it cannot re-bind against the
    /// current one, for the reason given (as a deploy it cannot re-bind against leaves it).
    LiveOnItsArtifact(String),
    /// A run its summary closed, held as ended.
    Ended,
}

/// The record kinds one judged event leaves at its seq.
fn judged_kind(kind: RecordKind) -> bool {
    matches!(
        kind,
        RecordKind::Snapshot
            | RecordKind::Decision
            | RecordKind::Signal
            | RecordKind::Alert
            | RecordKind::Incident
            | RecordKind::Override
            | RecordKind::RunSummary
    )
}

impl Replay {
    /// Whether the replay holds a run (live or ended).
    pub(crate) fn holds(&self, id: &str) -> bool {
        self.runs.contains_key(id)
    }

    /// Forgets a run, so that its next event loads it again.
    pub(crate) fn forget(&mut self, id: &str) {
        self.runs.remove(id);
    }

    /// A held run's state (`GET /v1/runs/{id}`).
    /// The budget counters run `id` last added to (what its state shows).
    pub(crate) fn counter_ids(&self, id: &str) -> Vec<String> {
        self.runs.get(id).map_or_else(Vec::new, |h| {
            h.run
                .budget_keys
                .iter()
                .flatten()
                .map(|k| k.id.to_string())
                .collect()
        })
    }

    pub(crate) fn status(&self, id: &str) -> Option<serde_json::Value> {
        let held = self.runs.get(id)?;
        let engine = self.engines.get(held.engine)?;
        Some(crate::runtime::status::status(
            engine,
            &held.run,
            &self.budgets,
        ))
    }

    /// Rebuilds run `id` from its chain (records in chain order), replacing what the
    /// replay held of it. Artifacts the replay has not loaded come from `artifacts`. A
    /// live run then re-binds against the current artifact as on a deploy.
    pub(crate) fn rebuild(
        &mut self,
        id: &str,
        chain: &[Stored],
        artifacts: &mut ArtifactSource<'_>,
    ) -> Result<Rebuilt, RebuildError> {
        let mut stored: BTreeMap<u64, Vec<&Record>> = BTreeMap::new();
        for s in chain.iter().filter(|s| judged_kind(s.record.kind)) {
            stored.entry(s.record.seq).or_default().push(&s.record);
        }
        let mut held: Option<Held> = None;
        for s in chain {
            let r = &s.record;
            let fail = |why: String| RebuildError {
                run: id.to_string(),
                seq: r.seq,
                why,
            };
            match r.kind {
                RecordKind::Decision => {
                    let made = self.judge_stored(&mut held, r, artifacts).map_err(&fail)?;
                    let want = stored.get(&r.seq).map(Vec::as_slice).unwrap_or_default();
                    same_records(&made, want).map_err(fail)?;
                }
                RecordKind::RejectedInput => {
                    if let Some(h) = held.as_mut() {
                        stopped_by_rejection(h, &r.body);
                    }
                }
                _ => {}
            }
        }
        let Some(mut held) = held else {
            self.runs.remove(id);
            return Ok(Rebuilt::Nothing);
        };
        let ended = held.run.ended;
        let on_current = self
            .engines
            .get(held.engine)
            .map(|e| e.artifact().id.clone())
            == Some(self.current_id());
        held.seen = if ended || on_current {
            self.current
        } else {
            usize::MAX
        };
        self.runs.insert(id.to_string(), held);
        if ended {
            return Ok(Rebuilt::Ended);
        }
        if !on_current && let Err(why) = self.rebind_runs(self.current) {
            if let Some(h) = self.runs.get_mut(id) {
                h.seen = self.current;
            }
            return Ok(Rebuilt::LiveOnItsArtifact(why));
        }
        Ok(Rebuilt::Live)
    }

    /// Judges one stored decision's input again on the engine the decision names: the
    /// records that judgment makes.
    fn judge_stored(
        &mut self,
        held: &mut Option<Held>,
        r: &Record,
        artifacts: &mut ArtifactSource<'_>,
    ) -> Result<Vec<Record>, String> {
        let input = r.body.get("input").ok_or("the decision holds no input")?;
        let prompt = r.body.get("prompt").and_then(|p| p.as_str());
        let (e, metrics) = event::from_evidence(input, prompt)?;
        // A decision judged during a store outage carries the outage rule's signals.
        let outage = r
            .body
            .get("signals")
            .and_then(|s| s.as_array())
            .is_some_and(|s| s.iter().any(|s| s["error"] == "store_unavailable"));
        let (outcome, extra) = match (&e, held.as_mut()) {
            (Event::RunStart(start), None) => {
                let index = self.engine_for(&r.artifact, artifacts)?;
                let engine = self.engine_mut(index)?;
                let (mut run, mut outcome) = engine.start_run(start);
                if outage {
                    engine.store_outage(&mut run, &mut outcome);
                }
                *held = Some(Held {
                    run,
                    engine: index,
                    seen: index,
                    labels: None,
                });
                (outcome, None)
            }
            (Event::RunStart(_), Some(_)) => return Err("a second run_start".into()),
            (_, None) => return Err("the run's first decision is not its start".into()),
            (_, Some(h)) => {
                if self.engine_mut(h.engine)?.artifact().id != r.artifact {
                    self.rebind_held(h, &r.artifact, artifacts)?;
                }
                let engine = self
                    .engines
                    .get_mut(h.engine)
                    .ok_or_else(|| "the run's engine is not loaded".to_string())?;
                // A budget's counter is what the stored decision was judged on, whatever
                // the counter holds now.
                let mut budgets = stored_counters(r);
                judge_on(engine, h, &e, &metrics, (outage, &mut budgets))?
            }
        };
        let mut made = outcome_records(&outcome, event::evidence_json(&e, &metrics));
        made.extend(extra);
        Ok(made)
    }

    fn engine_mut(&mut self, index: usize) -> Result<&mut Engine, String> {
        self.engines
            .get_mut(index)
            .ok_or_else(|| "the run's engine is not loaded".to_string())
    }

    /// The engine of a stored artifact, loaded from `artifacts` when the replay has not.
    fn engine_for(
        &mut self,
        id: &str,
        artifacts: &mut ArtifactSource<'_>,
    ) -> Result<usize, String> {
        if let Some(i) = self
            .engines
            .iter()
            .position(|e| !e.is_merged() && e.artifact().id == id)
        {
            return Ok(i);
        }
        let artifact = artifacts(id)?;
        if artifact.id != id {
            return Err(format!("the stored artifact {id} is {}", artifact.id));
        }
        let engine = Engine::of_kind(Arc::new(artifact), self.kind).map_err(|e| e.to_string())?;
        self.engines.push(engine);
        self.artifact_recorded.push(true);
        Ok(self.engines.len() - 1)
    }

    /// Moves a run onto the merged engine of its program and artifact `id`, as the deploy
    /// of `id` that its decisions show did.
    fn rebind_held(
        &mut self,
        h: &mut Held,
        id: &str,
        artifacts: &mut ArtifactSource<'_>,
    ) -> Result<(), String> {
        let target = self.engine_for(id, artifacts)?;
        let merged = self.merged_engine(h.engine, target)?;
        self.engine_mut(merged)?.adopt(&mut h.run);
        h.engine = merged;
        Ok(())
    }
}

/// The counters a stored decision was judged on: each counter's value before the step.
fn stored_counters(r: &Record) -> super::super::budget::Budgets {
    let mut budgets = super::super::budget::Budgets::default();
    for u in crate::evidence::budgets::counter_updates([r]) {
        let before = u.before();
        budgets.set(u.id, before);
    }
    budgets
}

/// Judges a run's event on its engine: the outcome, and a run end's summary.
fn judge_on(
    engine: &mut Engine,
    h: &mut Held,
    e: &Event,
    metrics: &[i64],
    (outage, budgets): (bool, &mut super::super::budget::Budgets),
) -> Result<(Outcome, Option<Record>), String> {
    Ok(match e {
        Event::Step(step) => {
            let mut outcome = engine.step_counted(&mut h.run, step, metrics, budgets);
            if outage {
                engine.store_outage(&mut h.run, &mut outcome);
            }
            (outcome, None)
        }
        Event::Override(req) => (engine.override_request(&mut h.run, req)?, None),
        Event::Approval(a) => (engine.approval(&mut h.run, a)?, None),
        Event::RunEnd(end) => {
            let outcome = engine.end_run(&mut h.run, end);
            let summary = summary_record(&engine.artifact().id, &h.run, &outcome);
            (outcome, Some(summary))
        }
        Event::RunStart(_) | Event::Deploy(_) => return Err("not an event of a run".into()),
    })
}

/// A rejected step that stopped its run (`"action":"stop"`) stops it again.
fn stopped_by_rejection(h: &mut Held, body: &serde_json::Value) {
    if body["action"] == "stop" && h.run.state < RunState::Stopped {
        h.run.state = RunState::Stopped;
        h.run.state_reason = body["reason"].as_str().map(str::to_string);
    }
}

/// Whether the records a judgment made are, byte for byte, the ones stored at its seq.
fn same_records(made: &[Record], stored: &[&Record]) -> Result<(), String> {
    if made.len() != stored.len() {
        return Err(format!(
            "judged again it makes {} records where {} are stored",
            made.len(),
            stored.len()
        ));
    }
    for (m, s) in made.iter().zip(stored) {
        let (m, s) = (Sealed::new(m.clone()), Sealed::new((*s).clone()));
        if m.canonical() != s.canonical() {
            return Err(format!(
                "judged again its {} record differs from the stored one:\n  stored: {}\n  judged: {}",
                s.record().kind.name(),
                String::from_utf8_lossy(s.canonical()),
                String::from_utf8_lossy(m.canonical())
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::load::{LoadOptions, deploy_loader, load_path};
    use std::path::Path;

    fn replay_of(artifact: Artifact, dir: &Path) -> Replay {
        Replay::new(
            Arc::new(artifact),
            dir.to_path_buf(),
            deploy_loader(LoadOptions::default()),
        )
    }

    /// The artifacts a replay's records hold, by id.
    fn stored_artifacts(records: &[Record]) -> BTreeMap<String, Vec<u8>> {
        records
            .iter()
            .filter(|r| r.kind == RecordKind::Artifact)
            .filter_map(|r| {
                Some((
                    r.artifact.clone(),
                    crate::evidence::artifact_record_bytes(r)?,
                ))
            })
            .collect()
    }

    /// Every run of every replay case, rebuilt from its records in a fresh replay, holds
    /// what the replay held: each stored decision judged again byte for byte, and a
    /// further step judged alike by both.
    #[test]
    fn every_run_of_every_replay_case_rebuilds_from_its_records() {
        let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/replay");
        let mut runs = 0;
        for dir in std::fs::read_dir(&cases).unwrap() {
            let dir = dir.unwrap().path();
            let Ok(artifact) = load_path(&dir, LoadOptions::default()) else {
                continue;
            };
            let events = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
            let mut original = replay_of(artifact, &dir);
            let mut records = Vec::new();
            for (i, line) in events.lines().enumerate() {
                if let Some(r) = original.line(i as u64 + 1, line) {
                    records.extend(r.records);
                }
            }
            let artifacts = stored_artifacts(&records);
            let current = original
                .current_engine()
                .unwrap()
                .artifact()
                .as_ref()
                .clone();
            let mut rebuilt = replay_of(current, &dir);
            let mut source = |id: &str| -> Result<Artifact, String> {
                let bytes = artifacts.get(id).ok_or(format!("no artifact {id}"))?;
                Artifact::from_bytes(bytes.clone()).map_err(|e| e.to_string())
            };
            // A server's counters come from its store: the sum of what decisions added.
            let mut sums: std::collections::HashMap<String, i64> = Default::default();
            for u in crate::evidence::budgets::counter_updates(&records) {
                *sums.entry(u.id).or_insert(0) += u.added;
            }
            for (id, v) in sums {
                rebuilt.budgets_mut().set(id, v);
            }
            let ids: Vec<String> = original.runs.keys().cloned().collect();
            for id in ids {
                let chain: Vec<Stored> = records
                    .iter()
                    .filter(|r| r.run_id.as_deref() == Some(id.as_str()))
                    .enumerate()
                    .map(|(n, r)| Stored {
                        record: r.clone(),
                        n: n as u64,
                        prev: [0; 32],
                        hash: [0; 32],
                    })
                    .collect();
                let what = rebuilt.rebuild(&id, &chain, &mut source);
                let ended = original.runs[&id].run.ended;
                let want = if ended { Rebuilt::Ended } else { Rebuilt::Live };
                assert_eq!(what, Ok(want), "{} run {id}", dir.display());
                let next = format!(
                    r#"{{"type":"step","run_id":"{id}","ts":"2026-01-20T12:00:00Z","cost":"0.40","input_tokens":100,"output_tokens":50}}"#
                );
                let (a, b) = (
                    original.line(9_999, &next).unwrap(),
                    rebuilt.line(9_999, &next).unwrap(),
                );
                assert_eq!(
                    a.decision.to_json(),
                    b.decision.to_json(),
                    "{} run {id}: the next step",
                    dir.display()
                );
                runs += 1;
            }
        }
        assert!(runs > 50, "only {runs} runs rebuilt");
    }

    #[test]
    fn a_stored_record_that_differs_is_refused_naming_the_run_and_seq() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/replay/ten_dime_steps_breach_a_dollar_at_the_tenth");
        let artifact = load_path(&dir, LoadOptions::default()).unwrap();
        let mut original = replay_of(artifact.clone(), &dir);
        let events = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
        let mut chain = Vec::new();
        for (i, line) in events.lines().enumerate() {
            for record in original.line(i as u64 + 1, line).unwrap().records {
                if record.run_id.is_some() {
                    let n = chain.len() as u64;
                    chain.push(Stored {
                        record,
                        n,
                        prev: [0; 32],
                        hash: [0; 32],
                    });
                }
            }
        }
        let id = chain[0].record.run_id.clone().unwrap();
        // A stored decision whose observed spend was rewritten.
        let at = chain
            .iter()
            .position(|s| s.record.kind == RecordKind::Signal)
            .unwrap();
        chain[at].record.body["observed"] = serde_json::json!("0.01");
        let seq = chain[at].record.seq;
        let mut rebuilt = replay_of(artifact, &dir);
        let err = rebuilt
            .rebuild(&id, &chain, &mut |_: &str| Err("none".to_string()))
            .unwrap_err();
        assert_eq!((err.run.as_str(), err.seq), (id.as_str(), seq));
        assert!(err.why.contains("signal record differs"), "{}", err.why);
        assert!(
            !rebuilt.holds(&id),
            "a run that does not rebuild is not held"
        );
    }
}
