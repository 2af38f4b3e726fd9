//! Judging a request: the body becomes the event of its route, judged through the same
//! replay as `lever run`, one request at a time per run, answered once its evidence is
//! durable (or put back when no store holds it).

use super::feed::deliveries_of;
use super::routes::{Body, error, from_path, parse_body, raw, unavailable};
use super::*;

impl Server {
    /// Judges one event and answers once its evidence is durable.
    pub(super) async fn event(&self, kind: &str, run_id: Option<&str>, body: &[u8]) -> Response {
        match parse_body(body) {
            Ok(event) => self.judge(kind, run_id, Ok(event), None).await,
            // A body no reader can agree on is still a rejected event of its run.
            Err(r) if r.0 == StatusCode::UNPROCESSABLE_ENTITY && run_id.is_some() => {
                let lenient: std::collections::BTreeMap<String, serde_json::Value> =
                    serde_json::from_slice(body).unwrap_or_default();
                let rejection = crate::runtime::event::Rejection {
                    code: crate::runtime::event::RejectCode::InvalidField,
                    detail: r.1.trim_start_matches("invalid_field: ").to_string(),
                    run_id: run_id.map(str::to_string),
                    ts: lenient
                        .get("ts")
                        .and_then(|t| t.as_str())
                        .and_then(crate::base::format::parse_timestamp),
                    event: crate::runtime::event::EventKind::from_name(kind),
                };
                self.judge(kind, run_id, Err((rejection, body.to_vec())), None)
                    .await
            }
            Err(r) => r.into_response(),
        }
    }

    /// Judges an event whose body is parsed; `mismatch` is what an authenticated body
    /// claimed beyond its token, recorded beside the decision.
    pub(super) async fn judge(
        &self,
        kind: &str,
        run_id: Option<&str>,
        input: Result<Body, (crate::runtime::event::Rejection, Vec<u8>)>,
        mismatch: Option<serde_json::Value>,
    ) -> Response {
        let mut event = input;
        if let Ok(event) = &mut event {
            if event.contains_key("type") {
                return error(
                    StatusCode::BAD_REQUEST,
                    "`type` comes from the endpoint, not the body",
                );
            }
            if let Some(id) = run_id
                && let Err(r) = from_path(event, "run_id", id.into())
            {
                return r.into_response();
            }
            event.insert("type".into(), raw(&kind.into()));
        }
        // During a store outage only run starts and steps are judged (under the outage
        // rule), and only while the queue has room; the rest wait for the store.
        let down = self.metrics.store_down();
        if down && !matches!(kind, "run_start" | "step") {
            return unavailable(&format!(
                "the evidence store is unavailable; a {kind} is judged only once its evidence can be made durable: retry when /healthz answers ok"
            ));
        }
        let room = self.settings.outage_queue_bytes as u64;
        if down && self.metrics.queued_bytes() >= room {
            return unavailable(&format!(
                "the evidence store is unavailable and {} bytes of evidence wait for it: retry when /healthz answers ok",
                self.metrics.queued_bytes()
            ));
        }
        // The run's turn: its previous request's evidence is committed or refused by now.
        let run_key = run_id.map(str::to_string).or_else(|| {
            event
                .as_ref()
                .ok()?
                .get("run_id")
                .and_then(|r| serde_json::from_str::<String>(r.get()).ok())
        });
        let _turn = match &run_key {
            Some(k) => Some(self.run_locks.turn(k).await),
            None => None,
        };
        let line = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        // Judge under the lock; the records are rendered and queued after it, in the run's
        // turn, so that the writer receives every run's records in the order they were
        // judged.
        let (decision, records, deliveries, rejected, saved) = {
            let Ok(mut replay) = self.replay.lock() else {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the runtime lock is poisoned",
                );
            };
            replay.set_store_outage(down);
            let saved = run_key.as_deref().map(|k| (k, replay.save_run(k)));
            let result = match &event {
                Ok(body) => {
                    let text = serde_json::to_string(body).unwrap_or_default();
                    replay.line(line, &text)
                }
                Err((rejection, bytes)) => Some(replay.rejected_line(line, bytes, rejection)),
            };
            let Some(result) = result else {
                return error(StatusCode::BAD_REQUEST, "empty event");
            };
            let deliveries = deliveries_of(&replay, &result.decision);
            let mut records = result.records;
            if let Some(claimed) = mismatch {
                let d = &result.decision;
                let judged = !result.rejected;
                records.push(Record {
                    kind: RecordKind::AuthMismatch,
                    artifact: d.artifact.as_deref().unwrap_or_default().to_string(),
                    run_id: d.run_id.as_deref().filter(|_| judged).map(str::to_string),
                    seq: if judged { d.seq.unwrap_or(line) } else { line },
                    index: 0,
                    body: claimed,
                });
            }
            (result.decision, records, deliveries, result.rejected, saved)
        };
        let (tx, done) = oneshot::channel();
        let job = writer::Commit {
            records: Sealed::all(records),
            done: tx,
        };
        let fate = match self.writer.send(job) {
            Ok(()) => done.await.ok(),
            Err(_) => None,
        };
        // Answered once the evidence is durable: in the store, or spilled during an outage.
        let refusal = match fate {
            Some(Committed::Stored | Committed::Spilled) => None,
            Some(Committed::Refused(why)) => Some(error(
                StatusCode::CONFLICT,
                &format!("the evidence store refused this request's records: {why}"),
            )),
            Some(Committed::Lost(why)) => Some(unavailable(&format!(
                "the evidence of this request could not be made durable, so it was not judged: {why}"
            ))),
            None => Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the evidence writer stopped",
            )),
        };
        if let Some(answer) = refusal {
            // Nothing holds the request's records: its run is put back as it was.
            if let (Some((key, saved)), Ok(mut replay)) = (saved, self.replay.lock()) {
                replay.restore_run(key, saved);
            }
            return answer;
        }
        self.metrics.decision(&decision);
        self.remember_alerts(&decision);
        for d in deliveries {
            let _ = self.deliver.send(d);
        }
        let mut decision = decision;
        decision.line = None;
        let status = if rejected {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        };
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            decision.to_json(),
        )
            .into_response()
    }
}
