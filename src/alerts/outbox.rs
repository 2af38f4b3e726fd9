//! The outbox: stored `alert` records are what is delivered. The worker runs on a thread of
//! its own, so that a dead channel never slows evaluation; it takes alert records once they
//! are durable, and at start reads back the newest ones the store holds that no attempt
//! settled (a server stopped, or killed, before delivering them). Each attempt is recorded
//! as an `alert_delivery` record in the store chain; a failed attempt is retried with
//! exponential backoff (0.5 s doubling, at most 30 s apart) up to [`ATTEMPTS`] attempts in
//! all, counting those made before a restart.

use super::channel::{Delivery, attempt};
use super::email::SmtpRelay;
use crate::base::lang::ChannelKind;
use crate::compile::bytecode::ChannelDesc;
use crate::evidence::{EvidenceStore, Record, RecordKind, Sealed, StoreError};
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Attempts per alert.
pub(crate) const ATTEMPTS: u32 = 6;

/// How many of the newest alert records a start reads back.
pub(crate) const SCAN: usize = 10_000;

/// A stored alert to deliver, and how many attempts it has had.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub alert: Sealed,
    pub attempts: u32,
}

/// Whether an alert record is one to deliver: not suppressed, to a channel other than
/// the in-app feed (`ui`).
pub(crate) fn deliverable(r: &Record) -> bool {
    r.kind == RecordKind::Alert
        && r.body.get("suppressed") != Some(&serde_json::Value::Bool(true))
        && r.body.get("channel").and_then(|c| c.as_str()) != Some("ui")
}

/// What ties an attempt to its alert: the run, seq, channel, policy, limit and kind (an
/// attempt's payload names them all; attempts written before delivery ids had no other).
fn alert_key(run_id: &str, seq: u64, body: &serde_json::Value) -> String {
    let text = |k: &str| body.get(k).and_then(|v| v.as_str()).unwrap_or("");
    format!(
        "{run_id}\0{seq}\0{}\0{}\0{}\0{}",
        text("channel"),
        text("policy"),
        text("limit"),
        text("kind")
    )
}

/// The newest stored alerts that no attempt settled (delivered, refused for good, or out
/// of attempts), oldest first, each with the attempts it has had.
pub(crate) fn pending(store: &mut dyn EvidenceStore) -> Result<Vec<Pending>, StoreError> {
    let mut tried: HashMap<String, (u32, bool)> = HashMap::new();
    for s in store.read_recent(RecordKind::AlertDelivery, SCAN * ATTEMPTS as usize)? {
        let body = &s.record.body;
        let run = body.get("run_id").and_then(|r| r.as_str()).unwrap_or("");
        let seq = body
            .get("seq")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let n = body
            .get("attempt")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let n = u32::try_from(n).unwrap_or(ATTEMPTS);
        let settled = body.get("delivered") == Some(&serde_json::Value::Bool(true))
            || body.get("final") == Some(&serde_json::Value::Bool(true))
            || n >= ATTEMPTS;
        let entry = tried.entry(alert_key(run, seq, body)).or_default();
        *entry = (entry.0.max(n), entry.1 || settled);
    }
    Ok(store
        .read_recent(RecordKind::Alert, SCAN)?
        .into_iter()
        .filter(|s| deliverable(&s.record))
        .filter_map(|s| {
            let r = &s.record;
            let key = alert_key(r.run_id.as_deref().unwrap_or(""), r.seq, &r.body);
            let (attempts, settled) = tried.get(&key).copied().unwrap_or_default();
            (!settled).then(|| Pending {
                alert: Sealed::new(s.record),
                attempts,
            })
        })
        .collect())
}

/// What a receiver gets for an alert record: the alert, its run, seq, time, artifact and
/// what its signal observed, with the delivery id.
pub(crate) fn payload(alert: &Sealed) -> serde_json::Value {
    let r = alert.record();
    let field = |k: &str| r.body.get(k).cloned().unwrap_or_default();
    serde_json::json!({
        "run_id": r.run_id,
        "seq": r.seq,
        "ts": field("ts"),
        "artifact": r.artifact,
        "policy": field("policy"),
        "version": field("version"),
        "limit": field("limit"),
        "kind": field("kind"),
        "channel": field("channel"),
        "observed": field("observed"),
        "limit_value": field("limit_value"),
        "delivery_id": crate::base::hash::hex(&alert.id()),
    })
}

/// Finds a channel by the id of the artifact that raised the alert, and its name.
pub(crate) type Resolve = Box<dyn Fn(&str, &str) -> Option<ChannelDesc> + Send>;

/// Hears a delivery attempt: the channel's kind and name, and whether it was delivered.
pub(crate) type Heard = Box<dyn Fn(ChannelKind, &str, bool) + Send>;

/// What the worker needs from the server around it.
pub(crate) struct Outbox {
    pub resolve: Resolve,
    pub relay: Option<SmtpRelay>,
    /// Hears each attempt: the channel's kind and name, and whether it was delivered.
    pub heard: Heard,
    /// Stores an attempt's record (without waiting for it).
    pub record: Box<dyn Fn(Record) + Send>,
}

/// One alert waiting for its next attempt.
struct Due {
    at: Instant,
    /// The attempt to make (1 for the first).
    attempt: u32,
    alert: Sealed,
}

/// Runs until every sender is gone. `start` is what the store held undelivered; `jobs`
/// brings alert records as they become durable. Retries still waiting when the server
/// stops are left to the next start, which reads them back from the store.
pub(crate) fn worker(jobs: mpsc::Receiver<Sealed>, start: Vec<Pending>, outbox: Outbox) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut queue: Vec<Due> = start
        .into_iter()
        .map(|p| Due {
            at: Instant::now(),
            attempt: p.attempts + 1,
            alert: p.alert,
        })
        .collect();
    let mut open = true;
    while open {
        let wait = queue
            .iter()
            .map(|d| d.at.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        match jobs.recv_timeout(wait) {
            Ok(alert) => queue.push(Due {
                at: Instant::now(),
                attempt: 1,
                alert,
            }),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => open = false,
        }
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = queue.drain(..).partition(|d| d.at <= now);
        queue = later;
        for d in due {
            if let Some(retry) = outbox.deliver(&agent, d) {
                queue.push(retry);
            }
        }
    }
}

impl Outbox {
    /// Makes one attempt and records it; the next attempt, when there is one to make.
    fn deliver(&self, agent: &ureq::Agent, d: Due) -> Option<Due> {
        let r = d.alert.record();
        let name = r.body.get("channel").and_then(|c| c.as_str()).unwrap_or("");
        let payload = payload(&d.alert);
        let result = match (self.resolve)(&r.artifact, name) {
            Some(channel) => {
                let kind = channel.kind;
                let delivery = Delivery {
                    channel,
                    payload: payload.clone(),
                    id: crate::base::hash::hex(&d.alert.id()),
                };
                let result = attempt(agent, self.relay.as_ref(), &delivery);
                (self.heard)(kind, name, result.is_ok());
                result
            }
            None => Err((
                format!(
                    "channel `{name}` of artifact {} is not loaded by this server",
                    r.artifact
                ),
                true,
            )),
        };
        let last = match &result {
            Ok(_) | Err((_, true)) => true,
            Err((_, false)) => d.attempt >= ATTEMPTS,
        };
        (self.record)(self.attempt_record(payload, &d, &result, last));
        if last {
            return None;
        }
        let backoff =
            Duration::from_millis(500 << (d.attempt - 1).min(6)).min(Duration::from_secs(30));
        Some(Due {
            at: Instant::now() + backoff,
            attempt: d.attempt + 1,
            alert: d.alert,
        })
    }

    /// The `alert_delivery` record of an attempt: the payload, the attempt's number and
    /// outcome, when it was made, and whether it is the alert's last (`final`).
    fn attempt_record(
        &self,
        payload: serde_json::Value,
        d: &Due,
        result: &Result<u16, (String, bool)>,
        last: bool,
    ) -> Record {
        let mut body = payload;
        if let Some(map) = body.as_object_mut() {
            map.insert("attempt".into(), d.attempt.into());
            map.insert("delivered".into(), result.is_ok().into());
            match result {
                Ok(status) => map.insert("status".into(), (*status).into()),
                Err((why, _)) => map.insert("error".into(), why.clone().into()),
            };
            map.insert("final".into(), last.into());
            map.insert(
                "at".into(),
                crate::base::format::timestamp(crate::base::wall::now_ns()).into(),
            );
        }
        Record {
            kind: RecordKind::AlertDelivery,
            artifact: d.alert.record().artifact.clone(),
            run_id: None,
            seq: 0,
            index: d.attempt,
            body,
        }
    }
}
