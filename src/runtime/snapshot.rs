//! Snapshots: what a run is bound to, recorded whenever it changes.

use super::{Bound, Engine, Snapshot};
use crate::base::format;

impl Engine {
    /// The snapshot of a set of bound policies: their hashes, artifacts and effective
    /// limits, the shadowed limits, and the monitors that started after the run's start.
    pub(super) fn snapshot(
        &self,
        bound: &[Bound],
        shadowed: &[bool],
        started: &[(String, u64)],
    ) -> Snapshot {
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
}
