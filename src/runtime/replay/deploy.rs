//! Deploys during a replay: a new artifact becomes current, and runs in progress whose
//! `each_step` policies re-bind move onto a merged engine of their program and the new one.

use super::{Engine, LineResult, Replay};
use crate::compile::artifact::Artifact;
use crate::evidence::{Record, RecordKind};
use crate::runtime::Outcome;
use crate::runtime::decision::{Action, Decision};
use crate::runtime::event::{self, EventKind};
use std::sync::Arc;

impl Replay {
    pub(super) fn deploy(&mut self, d: &event::Deploy) -> Result<(Outcome, Vec<Record>), String> {
        let path = self.base_dir.join(&d.artifact);
        let artifact = (self.loader)(&path)?;
        self.install(artifact, d.ts, "replay")
    }

    /// Deploys a verified artifact at `ts` on behalf of `actor` (the server's deploys):
    /// the decision and the records (the artifact, once, and the `deploy` record).
    pub(crate) fn deploy_artifact(
        &mut self,
        artifact: Artifact,
        ts: i64,
        actor: &str,
    ) -> Result<LineResult, String> {
        let mut records = self.artifact_record();
        let (outcome, more) = self.install(artifact, ts, actor)?;
        records.extend(more);
        Ok(LineResult {
            decision: outcome.decision,
            records,
            rejected: false,
        })
    }

    pub(super) fn install(
        &mut self,
        artifact: Artifact,
        ts: i64,
        actor: &str,
    ) -> Result<(Outcome, Vec<Record>), String> {
        let old = self.current_id();
        let new = artifact.id.clone();
        let signer = artifact.signer.clone();
        let current = match self
            .engines
            .iter()
            .position(|e| !e.is_merged() && e.artifact().id == new)
        {
            Some(i) => i,
            None => {
                let engine = Engine::of_kind(Arc::new(artifact), self.kind)
                    .map_err(|e| format!("the artifact does not compile to native code: {e}"))?;
                self.engines.push(engine);
                self.artifact_recorded.push(false);
                self.engines.len() - 1
            }
        };
        self.rebind_runs(current)?;
        self.current = current;
        let mut records = self.artifact_record();
        records.push(Record {
            kind: RecordKind::Deploy,
            artifact: new.clone(),
            run_id: None,
            seq: 0,
            index: 0,
            body: deploy_body(ts, &old, &new, actor, signer.as_deref()),
        });
        let decision = Decision {
            line: None,
            run_id: None,
            seq: None,
            ts: Some(ts),
            event: Some(EventKind::Deploy.name()),
            action: Action::Continue,
            reason: None,
            signals: Vec::new(),
            alerts: Vec::new(),
            budgets: Vec::new(),
            override_outcome: None,
            snapshot: None,
            artifact: Some(Arc::from(new.as_str())),
        };
        Ok((super::Outcome::of(decision), records))
    }

    /// Moves every live run that re-binds on this deploy onto the merged engine of its
    /// engine and the new one (built once per pair); its next step re-binds. Refuses the
    /// deploy, changing nothing a run sees, if the two programs cannot be merged.
    pub(super) fn rebind_runs(&mut self, current: usize) -> Result<(), String> {
        let Some(target) = self.engines.get(current) else {
            return Err("the deployed artifact is not loaded".into());
        };
        let mut moves: Vec<(String, usize)> = Vec::new();
        for (id, held) in &self.runs {
            if held.run.ended || held.seen == current {
                continue;
            }
            let Some(home) = self.engines.get(held.engine) else {
                continue;
            };
            if home.rebinds_on(&held.run, target) {
                moves.push((id.clone(), held.engine));
            }
        }
        for (id, home) in moves {
            let m = self
                .merged_engine(home, current)
                .map_err(|e| format!("runs in progress cannot re-bind against it: {e}"))?;
            if let (Some(held), Some(engine)) = (self.runs.get_mut(&id), self.engines.get(m)) {
                engine.adopt(&mut held.run);
                held.engine = m;
            }
        }
        for held in self.runs.values_mut() {
            held.seen = current;
        }
        Ok(())
    }

    /// The merged engine of `home` and `current` (see [`Engine::merged`]), built once per
    /// pair.
    pub(super) fn merged_engine(&mut self, home: usize, current: usize) -> Result<usize, String> {
        if let Some(&m) = self.merged.get(&(home, current)) {
            return Ok(m);
        }
        let (Some(h), Some(c)) = (self.engines.get(home), self.engines.get(current)) else {
            return Err("an engine of the re-binding is not loaded".into());
        };
        let engine = Engine::merged(h, c).map_err(|e| e.to_string())?;
        self.engines.push(engine);
        self.artifact_recorded.push(true);
        self.merged.insert((home, current), self.engines.len() - 1);
        Ok(self.engines.len() - 1)
    }
}

/// A deploy record's body: when, from and to which artifact, who, and the key that signed
/// the new one (only when the runtime was given trust).
fn deploy_body(
    ts: i64,
    old: &str,
    new: &str,
    actor: &str,
    signer: Option<&str>,
) -> serde_json::Value {
    let mut body = serde_json::json!({"ts": crate::base::format::timestamp(ts), "from": old, "to": new, "actor": actor});
    if let (Some(signer), Some(map)) = (signer, body.as_object_mut()) {
        map.insert("signer".into(), signer.into());
    }
    body
}
