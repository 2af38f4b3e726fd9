//! What a store holds, in brief (`lever evidence list`): every run with its state, its
//! decisions and its last event's time, and the store chain's records by kind.

use super::{EvidenceStore, RecordKind, StoreError};
use std::collections::BTreeMap;

/// One run of the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunRow {
    pub run_id: String,
    /// `running`, `paused`, `stopped`, `killed`, or `ended` once its summary closed it.
    pub state: &'static str,
    pub decisions: u64,
    /// The `ts` of its last decision.
    pub last_ts: Option<String>,
}

/// The store in brief: its runs by id, and the store chain's records counted by kind.
#[derive(Debug, Default, serde::Serialize)]
pub struct Listing {
    pub runs: Vec<RunRow>,
    pub store_chain: BTreeMap<&'static str, u64>,
}

/// Reads every record once (streamed) and lists the store.
pub fn list(store: &mut dyn EvidenceStore) -> Result<Listing, StoreError> {
    let mut runs: BTreeMap<String, RunRow> = BTreeMap::new();
    let mut store_chain = BTreeMap::new();
    store.visit_all(
        &mut |s| {
            let r = &s.record;
            match &r.run_id {
                None => *store_chain.entry(r.kind.name()).or_default() += 1,
                Some(id) => {
                    let row = runs.entry(id.clone()).or_insert_with(|| RunRow {
                        run_id: id.clone(),
                        state: "running",
                        decisions: 0,
                        last_ts: None,
                    });
                    account(row, r.kind, &r.body);
                }
            }
            std::ops::ControlFlow::Continue(())
        },
        &mut |_, _| {},
    )?;
    Ok(Listing {
        runs: runs.into_values().collect(),
        store_chain,
    })
}

/// A run's record moves its row: a decision its state and time, its summary ends it.
fn account(row: &mut RunRow, kind: RecordKind, body: &serde_json::Value) {
    match kind {
        RecordKind::Decision => {
            row.decisions += 1;
            if let Some(ts) = body.get("ts").and_then(|t| t.as_str()) {
                row.last_ts = Some(ts.to_string());
            }
            let action = body.get("action").and_then(|a| a.as_str()).unwrap_or("");
            let reason = body.get("reason").and_then(|a| a.as_str()).unwrap_or("");
            if row.state != "ended"
                && let Some(state) = state_after(action, reason)
            {
                row.state = state;
            }
        }
        RecordKind::RunSummary => row.state = "ended",
        _ => {}
    }
}

/// The run's state a decision leaves, when it says one.
fn state_after(action: &str, reason: &str) -> Option<&'static str> {
    Some(match (action, reason) {
        ("continue", _) => "running",
        ("pause", _) | ("refused", "run_paused") => "paused",
        ("stop", _) | ("refused", "run_stopped") => "stopped",
        ("kill", _) | ("refused", "run_killed") => "killed",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_decision_moves_the_state_and_a_summary_ends_the_run() {
        let mut row = super::RunRow {
            run_id: "r".into(),
            state: "running",
            decisions: 0,
            last_ts: None,
        };
        let decision = |action: &str, reason: &str, ts: &str| serde_json::json!({"action": action, "reason": reason, "ts": ts});
        use super::RecordKind::{Decision, RunSummary};
        super::account(
            &mut row,
            Decision,
            &decision("pause", "breach: x of p", "t1"),
        );
        assert_eq!(row.state, "paused");
        super::account(&mut row, Decision, &decision("refused", "run_paused", "t2"));
        super::account(&mut row, Decision, &decision("continue", "", "t3"));
        assert_eq!((row.state, row.decisions), ("running", 3));
        super::account(
            &mut row,
            Decision,
            &decision("rejected", "invalid_field: x", "t4"),
        );
        assert_eq!(row.state, "running");
        super::account(&mut row, RunSummary, &serde_json::json!({}));
        super::account(&mut row, Decision, &decision("continue", "", "t5"));
        assert_eq!((row.state, row.last_ts.as_deref()), ("ended", Some("t5")));
    }
}
