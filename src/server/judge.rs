//! Judging a request: the body is decoded straight into the typed event of its route and
//! judged through the same replay as `lever run`, one request at a time per run, answered
//! once its evidence is durable (or put back when no store holds it).

use super::routes::{Body, Refusal, error, from_path, parse_body, raw, unavailable};
use super::*;
use crate::runtime::event::{self, EventKind, RejectCode, Rejection};
use crate::runtime::replay::RunLabels;

/// How many times a request is judged when other servers keep extending its run first.
const FENCED_ATTEMPTS: u32 = 8;

/// How many times a request is judged when other servers keep moving its budget counters.
/// A hot key is contended by every server's requests; each retry waits a little longer, a
/// random part of it, so that the servers' commits spread out.
const COUNTER_ATTEMPTS: u32 = 64;

/// What became of a request's commit: its answer, or that another writer extended its
/// run first (the run is then loaded again and the request judged again).
enum Answer {
    Given(Response),
    Fenced(crate::evidence::StoreError),
    /// A budget counter the request added to moved: these are read again.
    Counters(Vec<String>),
}

/// How many times a request was judged again, by why.
#[derive(Default)]
struct Tries {
    fenced: u32,
    counters: u32,
}

/// What judging under the runtime lock came to.
enum Locked {
    Judged(Box<Judged>),
    /// The server does not hold the run: it is loaded first.
    LoadRun,
    /// The step adds to budget counters the server has not read from its store yet.
    ReadCounters(Vec<String>),
    /// A retried step: its run accepted its idempotency key at this `seq`.
    Repeat(u64),
}

/// A request body as the runtime takes it: decoded into an event, or why it cannot be.
pub(super) type Decoded = Result<Body, Rejection>;

/// What a request left under the runtime lock: the decision, the records to make durable,
/// and the run's state before it (to put back).
struct Judged {
    decision: crate::runtime::decision::Decision,
    records: Vec<Record>,
    rejected: bool,
    saved: Option<crate::runtime::replay::SavedRun>,
    /// Already sent to the writer, under the runtime lock (a step that adds to budget
    /// counters): its commit, and its alert records.
    sent: Option<Sent>,
    /// A judged step's labels (tenant, bound policies) and usage, counted once durable.
    usage: Option<(Arc<RunLabels>, super::histogram::Usage)>,
}

/// A commit sent to the writer: what became of it, when the writer says, and the alert
/// records to deliver once it is durable.
struct Sent {
    done: Option<oneshot::Receiver<Committed>>,
    alerts: Vec<Sealed>,
}

impl Server {
    /// Judges one event and answers once its evidence is durable.
    pub(super) async fn event(&self, kind: &str, run_id: Option<&str>, body: &[u8]) -> Response {
        match parse_body(body) {
            Ok(fields) => self.judge(kind, run_id, body, Ok(fields), None).await,
            // A body no reader can agree on is still a rejected event of its run.
            Err(r) if r.0 == StatusCode::UNPROCESSABLE_ENTITY && run_id.is_some() => {
                let lenient: std::collections::BTreeMap<String, serde_json::Value> =
                    serde_json::from_slice(body).unwrap_or_default();
                let rejection = Rejection {
                    code: RejectCode::InvalidField,
                    detail: r.1.trim_start_matches("invalid_field: ").to_string(),
                    run_id: run_id.map(str::to_string),
                    ts: lenient
                        .get("ts")
                        .and_then(|t| t.as_str())
                        .and_then(crate::base::format::parse_timestamp),
                    event: EventKind::from_name(kind),
                };
                self.judge(kind, run_id, body, Err(rejection), None).await
            }
            Err(r) => r.into_response(),
        }
    }

    /// Judges an event of `kind` whose body (`received`) is decoded into `fields`;
    /// `mismatch` is what an authenticated body claimed beyond its token, recorded beside
    /// the decision.
    pub(super) async fn judge(
        &self,
        kind: &str,
        run_id: Option<&str>,
        received: &[u8],
        fields: Decoded,
        mismatch: Option<serde_json::Value>,
    ) -> Response {
        let mut fields = fields;
        if let Ok(fields) = &mut fields
            && let Err(refused) = typed(kind, run_id, fields)
        {
            return refused.into_response();
        }
        if let Some(refused) = self.outage_refusal(kind) {
            return refused;
        }
        // The run's turn: its previous request's evidence is committed or refused by now.
        let run_key = run_id.map(str::to_string).or_else(|| {
            fields
                .as_ref()
                .ok()?
                .get("run_id")
                .and_then(|r| serde_json::from_str::<String>(r.get()).ok())
        });
        let _turn = match &run_key {
            Some(k) => Some(self.run_locks.turn(k).await),
            None => None,
        };
        // A run this server does not hold is loaded from the store first (found under the
        // runtime lock, loaded outside it). A run start needs no read: if its run is
        // stored, its records meet the stored ones, the commit is fenced, and the start
        // is judged again on the loaded run.
        let mut load = run_key.is_some() && kind != "run_start";
        let decoded = fields.and_then(event::from_fields);
        let mut tries = Tries::default();
        loop {
            let judged = match self.judge_locked(
                run_key.as_deref(),
                load,
                received,
                &decoded,
                mismatch.clone(),
            ) {
                Ok(Locked::Judged(judged)) => *judged,
                Ok(Locked::LoadRun) => {
                    load = false;
                    if let Some(id) = &run_key
                        && let Err(refused) = self.load_run(id).await
                    {
                        return refused;
                    }
                    continue;
                }
                Ok(Locked::Repeat(seq)) => {
                    let id = run_key.as_deref().unwrap_or_default();
                    return self.repeated(id, seq).await;
                }
                Ok(Locked::ReadCounters(ids)) => {
                    if let Err(refused) = self.read_counters(ids, false).await {
                        return refused;
                    }
                    continue;
                }
                Err(refusal) => return refusal.into_response(),
            };
            let answer = self.commit_and_answer(run_key.as_deref(), judged).await;
            if let Err(response) = self.again(answer, run_key.as_deref(), &mut tries).await {
                return response;
            }
        }
    }

    /// What a commit's answer leaves to do: `Err` is the client's answer, `Ok` judges the
    /// request again once what moved is read again.
    async fn again(
        &self,
        answer: Answer,
        run_key: Option<&str>,
        tries: &mut Tries,
    ) -> Result<(), Response> {
        match (answer, run_key) {
            (Answer::Given(response), _) => Err(response),
            // Another server extended the run first: judge again on what it stored.
            (Answer::Fenced(_), Some(id)) if tries.fenced + 1 < FENCED_ATTEMPTS => {
                tries.fenced += 1;
                self.metrics.fenced();
                self.reload_run(id).await.map(|_| ())
            }
            // A budget counter moved (another server added to it): read again.
            (Answer::Counters(ids), _) if tries.counters < COUNTER_ATTEMPTS => {
                tries.counters += 1;
                self.metrics.fenced();
                tokio::time::sleep(backoff(tries.counters, &ids, line_seed(&self.requests))).await;
                self.read_counters(ids, true).await
            }
            (Answer::Counters(_), _) => Err(error(
                StatusCode::CONFLICT,
                "the request's budget counters kept moving under other servers' requests: retry",
            )),
            (Answer::Fenced(why), _) => Err(refused_records(&why)),
        }
    }

    /// During a store outage only run starts and steps are judged (under the outage rule),
    /// and only while the queue has room; the rest wait for the store.
    fn outage_refusal(&self, kind: &str) -> Option<Response> {
        if !self.metrics.store_down() {
            return None;
        }
        if !matches!(kind, "run_start" | "step") {
            return Some(unavailable(&format!(
                "the evidence store is unavailable; a {kind} is judged only once its evidence can be made durable: retry when /healthz answers ok"
            )));
        }
        let room = self.settings.outage_queue_bytes as u64;
        (self.metrics.queued_bytes() >= room).then(|| {
            unavailable(&format!(
                "the evidence store is unavailable and {} bytes of evidence wait for it: retry when /healthz answers ok",
                self.metrics.queued_bytes()
            ))
        })
    }

    /// Judges under the runtime lock; the records are rendered after it. `None` when
    /// `load` asks for the run and the server does not hold it: it is to be loaded first.
    fn judge_locked(
        &self,
        run_key: Option<&str>,
        load: bool,
        received: &[u8],
        decoded: &Result<event::Event, Rejection>,
        mismatch: Option<serde_json::Value>,
    ) -> Result<Locked, Refusal> {
        let Ok(mut replay) = self.replay.lock() else {
            return Err(Refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the runtime lock is poisoned".into(),
            ));
        };
        if load && run_key.is_some_and(|k| !replay.holds(k)) {
            return Ok(Locked::LoadRun);
        }
        if let (Some(id), Ok(event::Event::Step(step))) = (run_key, decoded)
            && let Some(key) = &step.idempotency_key
            && let Some(seq) = replay.run(id).and_then(|(_, run)| run.step_with_key(key))
        {
            return Ok(Locked::Repeat(seq));
        }
        let line = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        replay.set_store_outage(self.metrics.store_down());
        let saved = run_key.map(|k| replay.save_run(k));
        let result = match decoded {
            Ok(e) => replay.apply_received(line, received, e),
            Err(rejection) => replay.rejected_line(line, received, rejection),
        };
        let usage = usage_of(&mut replay, run_key, decoded, result.rejected);
        let missing = replay.budgets_mut().take_missing();
        if !missing.is_empty() {
            // Judged on counters the server has not read: undone, and judged again.
            if let (Some(key), Some(saved)) = (run_key, saved) {
                replay.restore_run(key, saved);
            }
            replay.budgets_mut().undo(&result.decision.budgets);
            return Ok(Locked::ReadCounters(missing));
        }
        // A step that adds to budget counters reaches the writer in the order it was judged
        // in, so that each commit follows on from the one before: it is sent under the lock.
        let ordered = !result.decision.budgets.is_empty();
        let lock = if ordered {
            Some(replay)
        } else {
            drop(replay);
            None
        };
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
        let sent = ordered.then(|| self.send(std::mem::take(&mut records)));
        drop(lock);
        Ok(Locked::Judged(Box::new(Judged {
            decision: result.decision,
            records,
            rejected: result.rejected,
            saved,
            sent,
            usage,
        })))
    }

    /// Seals records and sends them to the writer.
    fn send(&self, records: Vec<Record>) -> Sent {
        let records = Sealed::all(records);
        // The outbox: alert records to deliver once they are durable.
        let alerts: Vec<Sealed> = records
            .iter()
            .filter(|r| crate::alerts::outbox::deliverable(r.record()))
            .cloned()
            .collect();
        let (tx, done) = oneshot::channel();
        let job = writer::Commit { records, done: tx };
        Sent {
            done: self.writer.send(job).ok().map(|()| done),
            alerts,
        }
    }

    /// Renders and commits a request's records in the run's turn (so the writer receives
    /// every run's records in the order they were judged), then answers: the decision once
    /// they are durable, or the refusal, with the run put back as it was.
    async fn commit_and_answer(&self, run_key: Option<&str>, mut judged: Judged) -> Answer {
        let Sent { done, alerts } = match judged.sent.take() {
            Some(sent) => sent,
            None => self.send(std::mem::take(&mut judged.records)),
        };
        let fate = match done {
            Some(done) => done.await.ok(),
            None => None,
        };
        let counters: Vec<String> = judged
            .decision
            .budgets
            .iter()
            .map(|c| c.key.id.to_string())
            .collect();
        let refusal = match fate {
            Some(Committed::Stored | Committed::Spilled) => None,
            // A budget counter moved under the request: read again, judged again.
            Some(Committed::Refused(crate::evidence::StoreError::BudgetMoved(_)))
                if !counters.is_empty() =>
            {
                Some(Answer::Counters(counters))
            }
            // Another writer extended the run first: it is loaded and judged again.
            Some(Committed::Refused(
                why @ (crate::evidence::StoreError::Fenced(_)
                | crate::evidence::StoreError::Contradicts(_)),
            )) if run_key.is_some() => Some(Answer::Fenced(why)),
            Some(Committed::Refused(why)) => Some(Answer::Given(refused_records(&why))),
            Some(Committed::Lost(why)) => Some(Answer::Given(unavailable(&format!(
                "the evidence of this request could not be made durable, so it was not judged: {why}"
            )))),
            None => Some(Answer::Given(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the evidence writer stopped",
            ))),
        };
        if let Some(answer) = refusal {
            // Nothing holds the request's records: its run is put back as it was.
            if let Ok(mut replay) = self.replay.lock() {
                if let (Some(key), Some(saved)) = (run_key, judged.saved) {
                    replay.restore_run(key, saved);
                }
                replay.budgets_mut().undo(&judged.decision.budgets);
            }
            return answer;
        }
        let mut decision = judged.decision;
        self.metrics.decision(&decision);
        if let (Some((labels, usage)), Some(mut l)) = (&judged.usage, self.metrics.labelled()) {
            l.usage(&labels.tenant, &labels.policies, *usage);
        }
        if let Ok(mut feed) = self.feed.lock() {
            feed.push(&decision);
        }
        for alert in alerts {
            let _ = self.deliver.send(alert);
        }
        decision.line = None;
        let status = if judged.rejected {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::OK
        };
        Answer::Given(
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                decision.to_json(),
            )
                .into_response(),
        )
    }
}

/// A judged step's labels and usage, for the metrics (the labels are read once per binding).
fn usage_of(
    replay: &mut Replay,
    run_key: Option<&str>,
    decoded: &Result<event::Event, Rejection>,
    rejected: bool,
) -> Option<(Arc<RunLabels>, super::histogram::Usage)> {
    let (Ok(event::Event::Step(step)), Some(id), false) = (decoded, run_key, rejected) else {
        return None;
    };
    let labels = replay.labels(id)?;
    let usage = super::histogram::Usage {
        cost: step.cost,
        input_tokens: step.input_tokens,
        output_tokens: step.output_tokens,
    };
    Some((labels, usage))
}

/// A body's fields as its event: `type` from the endpoint (never the body), `run_id` from
/// the path (a body one that differs is refused).
fn typed(kind: &str, run_id: Option<&str>, fields: &mut Body) -> Result<(), Refusal> {
    if fields.contains_key("type") {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "`type` comes from the endpoint, not the body".into(),
        ));
    }
    if let Some(id) = run_id {
        from_path(fields, "run_id", id.into())?;
    }
    fields.insert("type".into(), raw(&kind.into()));
    Ok(())
}

/// A random-looking number from the request count (no randomness crate for one jitter).
fn line_seed(requests: &std::sync::atomic::AtomicU64) -> u64 {
    requests
        .load(Ordering::Relaxed)
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// How long a request whose counters moved waits before it is judged again: up to
/// `attempt` × 200 µs (at most 5 ms), a random part of it.
fn backoff(attempt: u32, ids: &[String], seed: u64) -> std::time::Duration {
    let mut h = crate::base::hash::Fnv1a::default();
    std::hash::Hasher::write(&mut h, &seed.to_le_bytes());
    for id in ids {
        std::hash::Hasher::write(&mut h, id.as_bytes());
    }
    let ceiling = u64::from(attempt.min(25)) * 200;
    std::time::Duration::from_micros(std::hash::Hasher::finish(&h) % ceiling.max(1))
}

/// The answer to a request whose records the store refused.
fn refused_records(why: &crate::evidence::StoreError) -> Response {
    error(
        StatusCode::CONFLICT,
        &format!("the evidence store refused this request's records: {why}"),
    )
}
