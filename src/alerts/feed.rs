//! The in-app alert feed (`GET /v1/alerts`): the newest delivered alerts, seeded from the
//! stored alert records at start and appended as decisions are answered, each with what
//! became of its delivery (from the `alert_delivery` records of its attempts).

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
    let in_app = alert.get("channel").and_then(|c| c.as_str()) == Some("ui");
    serde_json::json!({
        "run_id": run_id,
        "seq": seq,
        "ts": ts,
        "policy": alert.get("policy"),
        "limit": alert.get("limit"),
        "kind": alert.get("kind"),
        "channel": alert.get("channel"),
        "delivery": {
            "state": if in_app { "in_app" } else { "pending" },
            "attempts": 0,
            "status": null,
            "last_error": null,
        },
    })
}

/// Whether a delivery attempt's record is of the alert a feed entry lists.
fn same_alert(entry: &serde_json::Value, attempt: &serde_json::Value) -> bool {
    ["run_id", "seq", "channel", "policy", "limit", "kind"]
        .iter()
        .all(|k| entry.get(k) == attempt.get(k))
}

/// A delivery's state after an attempt: `delivered`, `retrying` (another attempt
/// follows) or `failed` (none does).
fn delivery(attempt: &serde_json::Value) -> serde_json::Value {
    let flag = |k: &str| attempt.get(k) == Some(&serde_json::Value::Bool(true));
    let state = match (flag("delivered"), flag("final")) {
        (true, _) => "delivered",
        (false, true) => "failed",
        (false, false) => "retrying",
    };
    serde_json::json!({
        "state": state,
        "attempts": attempt.get("attempt"),
        "status": attempt.get("status"),
        "last_error": attempt.get("error"),
    })
}

impl Feed {
    /// The feed's starting content: the newest delivered alerts in the store.
    pub(crate) fn seed(store: &mut dyn EvidenceStore) -> Result<Feed, StoreError> {
        let mut feed = Feed(
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
        );
        for s in store.read_recent(RecordKind::AlertDelivery, 2 * FEED)? {
            feed.attempt(&s.record.body);
        }
        Ok(feed)
    }

    /// What an `alert_delivery` record says of its alert's delivery; an attempt older
    /// than one the entry already shows changes nothing.
    pub(crate) fn attempt(&mut self, body: &serde_json::Value) {
        let n = body
            .get("attempt")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let Some(e) = self.0.iter_mut().rev().find(|e| same_alert(e, body)) else {
            return;
        };
        let shown = e
            .get("delivery")
            .and_then(|d| d.get("attempts"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        if let (true, Some(map)) = (n >= shown, e.as_object_mut()) {
            map.insert("delivery".into(), delivery(body));
        }
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

    /// The newest `limit` alerts of a channel (of every channel for `*`), newest first.
    pub(crate) fn newest(&self, channel: &str, limit: usize) -> Vec<&serde_json::Value> {
        self.0
            .iter()
            .rev()
            .filter(|a| {
                channel == "*" || a.get("channel").and_then(|c| c.as_str()) == Some(channel)
            })
            .take(limit)
            .collect()
    }
}
