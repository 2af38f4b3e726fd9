//! The in-app alert feed (`GET /v1/alerts`) and the alerts handed to delivery once their
//! evidence is durable.

use super::routes::error;
use super::*;

/// How many alerts the feed keeps.
pub(super) const FEED: usize = 10_000;

/// An alert as the feed lists it.
pub(super) fn feed_entry(
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

/// The feed's starting content: the newest delivered alerts in the store.
pub(super) fn seed_feed(
    store: &mut dyn crate::evidence::EvidenceStore,
) -> Result<std::collections::VecDeque<serde_json::Value>, crate::evidence::StoreError> {
    Ok(store
        .read_recent(RecordKind::Alert, FEED)?
        .iter()
        .filter(|s| s.record.body.get("suppressed") != Some(&serde_json::Value::Bool(true)))
        .filter_map(|s| {
            let r = &s.record;
            let ts = r.body.get("ts").cloned().unwrap_or_default();
            Some(feed_entry(r.run_id.as_deref()?, r.seq, &ts, &r.body))
        })
        .collect())
}

impl Server {
    pub(super) fn remember_alerts(&self, d: &crate::runtime::decision::Decision) {
        let delivered: Vec<&crate::runtime::decision::Alert> =
            d.alerts.iter().filter(|a| !a.suppressed).collect();
        if delivered.is_empty() {
            return;
        }
        let (Some(run), Some(seq)) = (d.run_id.as_deref(), d.seq) else {
            return;
        };
        let ts = serde_json::Value::from(d.ts.map(crate::base::format::timestamp));
        let Ok(mut feed) = self.feed.lock() else {
            return;
        };
        for a in delivered {
            let alert = serde_json::to_value(a).unwrap_or_default();
            feed.push_back(feed_entry(run, seq, &ts, &alert));
            if feed.len() > FEED {
                feed.pop_front();
            }
        }
    }
}

/// `GET /v1/alerts?channel=ui&limit=N`: the newest delivered alerts of a channel, newest
/// first (the in-app notification feed).
pub(super) async fn alerts(
    State(s): State<Arc<Server>>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let channel = q.get("channel").map_or("ui", String::as_str);
    let limit = match q.get("limit").map(|l| l.parse::<usize>()) {
        None => 100,
        Some(Ok(n)) if (1..=FEED).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("`limit` must be a number from 1 to {FEED}"),
            );
        }
    };
    let Ok(feed) = s.feed.lock() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the feed lock is poisoned",
        );
    };
    let list: Vec<&serde_json::Value> = feed
        .iter()
        .rev()
        .filter(|a| a.get("channel").and_then(|c| c.as_str()) == Some(channel))
        .take(limit)
        .collect();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "channel": channel, "alerts": list }).to_string(),
    )
        .into_response()
}

/// The webhook, Slack and email alerts of a decision, with their channels and payloads.
pub(super) fn deliveries_of(
    replay: &Replay,
    d: &crate::runtime::decision::Decision,
) -> Vec<delivery::Delivery> {
    let (Some(run), Some(seq), Some(artifact)) =
        (d.run_id.as_deref(), d.seq, d.artifact.as_deref())
    else {
        return Vec::new();
    };
    d.alerts
        .iter()
        .filter(|a| !a.suppressed && a.channel != "ui")
        .filter_map(|a| {
            let channel = replay.channel(artifact, &a.channel)?;
            let signal = d.signals.iter().find(|s| {
                s.kind == a.kind
                    && s.policy == a.policy
                    && s.limit.as_deref() == Some(a.limit.as_str())
            });
            let payload = serde_json::json!({
                "run_id": run,
                "seq": seq,
                "ts": d.ts.map(crate::base::format::timestamp),
                "artifact": artifact,
                "policy": a.policy,
                "version": signal.map(|s| s.version),
                "limit": a.limit,
                "kind": a.kind,
                "channel": a.channel,
                "observed": signal.and_then(|s| s.observed.clone()),
                "limit_value": signal.and_then(|s| s.limit_value.clone()),
            });
            Some(delivery::Delivery {
                channel,
                payload,
                artifact: artifact.to_string(),
            })
        })
        .collect()
}
