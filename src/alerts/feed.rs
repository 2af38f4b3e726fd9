//! The in-app alert feed (`GET /v1/alerts`): the newest delivered alerts, seeded from the
//! stored alert records at start and appended as decisions are answered.

use crate::evidence::{EvidenceStore, RecordKind, StoreError};
use crate::runtime::decision::Decision;
use std::collections::VecDeque;

/// How many alerts the feed keeps.
pub(crate) const FEED: usize = 10_000;

/// The newest delivered alerts, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Feed(VecDeque<serde_json::Value>);

/// An alert as the feed lists it.
fn entry(
    run_id: &str,
    seq: u64,
    ts: &serde_json::Value,
    alert: &serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "run_id": run_id,
        "seq": seq,
        "ts": ts,
        "policy": alert.get("policy"),
        "limit": alert.get("limit"),
        "kind": alert.get("kind"),
        "channel": alert.get("channel"),
    })
}

impl Feed {
    /// The feed's starting content: the newest delivered alerts in the store.
    pub(crate) fn seed(store: &mut dyn EvidenceStore) -> Result<Feed, StoreError> {
        Ok(Feed(
            store
                .read_recent(RecordKind::Alert, FEED)?
                .iter()
                .filter(|s| s.record.body.get("suppressed") != Some(&serde_json::Value::Bool(true)))
                .filter_map(|s| {
                    let r = &s.record;
                    let ts = r.body.get("ts").cloned().unwrap_or_default();
                    Some(entry(r.run_id.as_deref()?, r.seq, &ts, &r.body))
                })
                .collect(),
        ))
    }

    /// Adds a decision's delivered alerts.
    pub(crate) fn push(&mut self, d: &Decision) {
        let (Some(run), Some(seq)) = (d.run_id.as_deref(), d.seq) else {
            return;
        };
        let ts = serde_json::Value::from(d.ts.map(crate::base::format::timestamp));
        for a in d.alerts.iter().filter(|a| !a.suppressed) {
            let alert = serde_json::to_value(a).unwrap_or_default();
            self.0.push_back(entry(run, seq, &ts, &alert));
            if self.0.len() > FEED {
                self.0.pop_front();
            }
        }
    }

    /// The newest `limit` alerts of a channel, newest first.
    pub(crate) fn newest(&self, channel: &str, limit: usize) -> Vec<&serde_json::Value> {
        self.0
            .iter()
            .rev()
            .filter(|a| a.get("channel").and_then(|c| c.as_str()) == Some(channel))
            .take(limit)
            .collect()
    }
}
