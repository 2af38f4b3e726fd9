//! Binding after a run's start: `first_token` policies at the first output, and the
//! re-binding of `each_step` policies against an artifact deployed mid-run (LANGUAGE §9).
//!
//! A run that re-binds after a deploy moves to a *merged* engine (see
//! [`crate::compile::merge`]): its home program with every index unchanged, then the
//! current artifact's. The deploy prepares a [`Plan`]; the run's next step carries it out
//! before that step is judged, keeping the zone, raise, suspension, pause hold and throttle
//! of every policy that stays bound, and of every `each_step` policy whose hash is
//! unchanged (precise rule 5).

use super::decision::Signal;
use super::engine::{Candidate, conflict_key};
use super::{Bound, Engine, Run, Snapshot, Throttle, Zone, arbitrate};
use crate::base::lang::Bind;
use crate::base::lang::Enforcement;
use crate::compile::artifact::{Artifact, ArtifactBody};
use crate::compile::bytecode::PolicyDesc;
use crate::compile::merge::{self, MergeError};
use std::sync::Arc;

/// What a merged engine knows of its two parts.
#[derive(Debug, Clone)]
pub(super) struct MergedParts {
    /// Index of the current artifact's first policy.
    current_policies: usize,
    /// Monitors that read an aggregate first seen in the deploy.
    fresh_monitors: Vec<bool>,
}

/// A re-binding prepared by a deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// The policies bound after it (indices into the merged program).
    policies: Vec<u16>,
    /// `each_step` policies re-bound with an unchanged hash: (old index, new index).
    carry: Vec<(u16, u16)>,
}

fn index(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

impl Engine {
    /// An engine over `home`'s program followed by `current`'s, for runs of `home` that
    /// re-bind against `current`. Its decisions name the current artifact.
    pub(crate) fn merged(home: &Engine, current: &Engine) -> Result<Engine, MergeError> {
        let merged = merge::merge(home.program(), current.program())?;
        let artifact = Artifact {
            id: current.artifact.id.clone(),
            body: ArtifactBody {
                sources: Vec::new(),
                program: merged.program,
            },
            bytes: Vec::new(),
            signer: current.artifact.signer.clone(),
        };
        let mut engine = Engine::new(Arc::new(artifact));
        let added = engine
            .program()
            .policies
            .len()
            .saturating_sub(merged.current_policies);
        engine.policy_artifacts = home.policy_artifacts.clone();
        engine
            .policy_artifacts
            .extend(std::iter::repeat_n(Arc::clone(&current.artifact_id), added));
        engine.merged = Some(MergedParts {
            current_policies: merged.current_policies,
            fresh_monitors: merged.fresh_monitors,
        });
        engine
            .set_kind(home.kind())
            .map_err(|e| MergeError::Jit(e.to_string()))?;
        Ok(engine)
    }

    /// An engine built by [`Engine::merged`], not loaded from an artifact.
    pub(crate) fn is_merged(&self) -> bool {
        self.merged.is_some()
    }

    /// Whether a run of this engine re-binds when `current` is deployed: it has `each_step`
    /// policies bound, `current` has some in its scope, or it has not passed its first
    /// token and either artifact has `first_token` policies for it.
    pub(crate) fn rebinds_on(&self, run: &Run, current: &Engine) -> bool {
        let ours = |b: &Bound| self.policy_desc(b.policy).map(|p| p.bind);
        let theirs = |bind: Bind| {
            current
                .program()
                .policies
                .iter()
                .any(|p| p.bind == bind && super::scope::matches(&p.scope, &run.attrs))
        };
        run.bound.iter().any(|b| ours(b) == Some(Bind::EachStep))
            || theirs(Bind::EachStep)
            || (!run.first_token_passed && (!run.awaiting.is_empty() || theirs(Bind::FirstToken)))
    }

    fn policy_desc(&self, i: u16) -> Option<&PolicyDesc> {
        self.program().policies.get(usize::from(i))
    }

    /// Moves a run of the home engine onto this merged engine and plans its re-binding:
    /// home's `run_start` and bound `first_token` policies stay, its `each_step` policies
    /// give way to the current artifact's, and awaiting `first_token` policies are now the
    /// current artifact's. New aggregates start empty here.
    pub(crate) fn adopt(&self, run: &mut Run) {
        let Some(parts) = &self.merged else {
            return;
        };
        let program = self.program();
        run.aggs.extend(&program.aggregates);
        run.labels = program
            .labels
            .iter()
            .map(|k| run.attrs.labels.get(k).cloned().unwrap_or_default())
            .collect();
        let in_scope = |bind: Bind| -> Vec<u16> {
            program
                .policies
                .iter()
                .enumerate()
                .skip(parts.current_policies)
                .filter(|(_, p)| p.bind == bind && super::scope::matches(&p.scope, &run.attrs))
                .map(|(i, _)| index(i))
                .collect()
        };
        let each_step = in_scope(Bind::EachStep);
        let mut policies = Vec::new();
        let mut carry = Vec::new();
        for b in &run.bound {
            let Some(desc) = self.policy_desc(b.policy) else {
                continue;
            };
            if desc.bind != Bind::EachStep {
                policies.push(b.policy);
            } else if let Some(&same) = each_step
                .iter()
                .find(|&&n| self.policy_desc(n).is_some_and(|p| p.hash == desc.hash))
            {
                carry.push((b.policy, same));
            }
        }
        policies.extend(each_step);
        if !run.first_token_passed {
            run.awaiting = in_scope(Bind::FirstToken);
        }
        run.rebind = Some(Box::new(Plan { policies, carry }));
    }

    /// Binds before the step is judged: the deploy's plan if there is one, and the
    /// awaiting `first_token` policies at the first output. Re-arbitrates; a new
    /// `fail_closed` conflict stops the run at this step unless a breach is more severe
    /// (precise rules 6 and 7). Returns the snapshot if its content changed.
    pub(super) fn rebind(
        &self,
        run: &mut Run,
        first_token: bool,
        signals: &mut Vec<Signal>,
        candidates: &mut Vec<Candidate>,
    ) -> Option<Snapshot> {
        let (mut policies, carry) = match run.rebind.take() {
            Some(plan) => {
                run.fresh_since = std::num::NonZeroU64::new(run.seq);
                (plan.policies, plan.carry)
            }
            None => (run.bound.iter().map(|b| b.policy).collect(), Vec::new()),
        };
        if first_token {
            policies.append(&mut run.awaiting);
        }
        policies.sort_unstable();
        policies.dedup();
        let old_bound = std::mem::take(&mut run.bound);
        let old_zones = std::mem::take(&mut run.zones);
        let mut remap: Vec<(usize, usize)> = Vec::new();
        for p in policies {
            let Some(desc) = self.policy_desc(p) else {
                continue;
            };
            let first = run.zones.len();
            let previous = old_bound
                .iter()
                .find(|b| b.policy == p || carry.contains(&(b.policy, p)));
            match previous {
                Some(b) => {
                    let start = usize::from(b.first_limit);
                    for i in 0..desc.limits.len() {
                        remap.push((start + i, first + i));
                        run.zones
                            .push(old_zones.get(start + i).copied().unwrap_or(Zone::Below));
                    }
                    run.bound.push(Bound {
                        policy: p,
                        first_limit: index(first),
                        ..b.clone()
                    });
                }
                None => {
                    run.zones
                        .extend(std::iter::repeat_n(Zone::Below, desc.limits.len()));
                    run.bound.push(Bound {
                        policy: p,
                        first_limit: index(first),
                        holds_pause: false,
                        suspension: None,
                        throttle: Throttle::default(),
                    });
                }
            }
            self.note_started(run, desc);
        }
        // A raise lapses with its policy; the others follow their limits.
        run.raises.retain_mut(|(k, _)| {
            match remap.iter().find(|(old, _)| *old == usize::from(*k)) {
                Some((_, new)) => {
                    *k = index(*new);
                    true
                }
                None => false,
            }
        });
        self.rearbitrate(run, signals, candidates);
        let snapshot = self.snapshot(&run.bound, &run.shadowed, &run.started);
        if *snapshot.hash == *run.snapshot {
            return None;
        }
        run.snapshot = Arc::from(snapshot.hash.as_str());
        Some(snapshot)
    }

    /// Arbitrates the run's bound limits again: the new shadowing, the conflicts not
    /// signalled before, and a `fail_closed` stop ahead of every other candidate.
    fn rearbitrate(
        &self,
        run: &mut Run,
        signals: &mut Vec<Signal>,
        candidates: &mut Vec<Candidate>,
    ) {
        let terms = arbitrate::RunTerms {
            raises: &run.raises,
            forced: &run.forced_groups,
        };
        let arbitration = arbitrate::arbitrate(self.program(), &run.bound, run.zones.len(), terms);
        run.shadowed = arbitration.shadowed;
        run.layout.clear();
        run.forced_groups = arbitration.forced;
        for conflict in arbitration.conflicts {
            let key = conflict_key(&conflict);
            if !run.conflicts_seen.contains(&key) {
                run.conflicts_seen.push(key);
                signals.push(conflict);
            }
        }
        if let Some(reason) = arbitration.stop {
            candidates.insert(
                0,
                Candidate {
                    enforcement: Enforcement::Stop,
                    reason,
                    breach: None,
                },
            );
        }
    }

    /// Records the monitors of a newly bound policy that started after the run's first
    /// step, at this step (the first the merged engine evaluated for the run).
    fn note_started(&self, run: &mut Run, policy: &PolicyDesc) {
        let Some(parts) = &self.merged else {
            return;
        };
        for limit in &policy.limits {
            let m = usize::from(limit.monitor);
            if !parts.fresh_monitors.get(m).copied().unwrap_or(false) {
                continue;
            }
            let Some(name) = self.program().monitors.get(m).map(|d| &d.id_name) else {
                continue;
            };
            if !run.started.iter().any(|(n, _)| n == name) {
                let at = run.fresh_since.map_or(run.seq, std::num::NonZeroU64::get);
                run.started.push((name.clone(), at));
            }
        }
    }
}
