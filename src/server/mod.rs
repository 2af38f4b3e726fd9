//! `lever serve`: the runtime over HTTP (DESIGN §6).
//!
//! Every request becomes the event DESIGN §3 describes (the body, plus its `type`, plus the
//! run id of the path) and goes through the same [`Replay`] as `lever run`, so the server
//! and the replay decide alike by construction. Evaluation is serialized behind one lock;
//! the evidence of each request goes to one writer thread, which commits whatever requests
//! have queued as one group (one fsync or one transaction) and only then lets each request
//! answer. The writer owns the store on a thread of its own: the blocking PostgreSQL client
//! must not run inside the async runtime.

mod auth;
mod config;
pub mod delivery;
mod email;
mod metrics;
mod run_locks;

pub use auth::{Principal, Tokens};
pub use config::Config;

use crate::compile::artifact::Artifact;
use crate::evidence::durable::{Durable, WriteError};
use crate::evidence::{ChainId, Record, RecordKind};
use crate::runtime::EngineKind;
use crate::runtime::replay::Replay;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics::Metrics;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::oneshot;

/// How the server is started.
pub struct Options {
    pub artifact: Arc<Artifact>,
    pub evidence: String,
    pub engine: EngineKind,
    /// Resolves relative artifact paths of deploys.
    pub base_dir: std::path::PathBuf,
    /// Who may request and approve overrides (and deploy), and the SMTP relay.
    pub config: Config,
    /// The artifact file to watch: replaced on disk, it is deployed (actor `local-file`).
    pub watch: Option<std::path::PathBuf>,
}

/// Work for the evidence writer.
enum Job {
    Commit {
        records: Vec<Record>,
        done: oneshot::Sender<Result<(), String>>,
    },
    ReadChain {
        chain: ChainId,
        done: oneshot::Sender<Result<Vec<u8>, String>>,
    },
}

/// The threads a server runs besides its async runtime, joined when it stops.
pub struct Threads {
    writer: std::thread::JoinHandle<Result<(), String>>,
    delivery: std::thread::JoinHandle<()>,
}

pub struct Server {
    replay: Mutex<Replay>,
    /// Requests so far: the "line" numbers of rejected inputs.
    requests: AtomicU64,
    writer: mpsc::Sender<Job>,
    metrics: Arc<Metrics>,
    tokens: Tokens,
    /// Alerts for the delivery worker, sent once their evidence is durable.
    deliver: mpsc::Sender<delivery::Delivery>,
    /// The most recent delivered alerts (newest last), for `GET /v1/alerts`: seeded from
    /// the store at start, then appended as decisions are answered.
    feed: Mutex<std::collections::VecDeque<serde_json::Value>>,
    /// One request at a time per run, until its evidence is committed or refused.
    run_locks: run_locks::RunLocks,
}

/// A request body: its fields with their JSON text kept exactly (DESIGN §3: a number is
/// read from its text, never through a float).
type Body = std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>;

/// A value as a body field.
fn raw(v: &serde_json::Value) -> Box<serde_json::value::RawValue> {
    serde_json::value::to_raw_value(v).unwrap_or_else(|_| {
        serde_json::value::to_raw_value(&serde_json::Value::Null).unwrap_or_default()
    })
}

/// A body field's value, for comparisons (never used to rewrite a number).
fn value(r: &serde_json::value::RawValue) -> serde_json::Value {
    serde_json::from_str(r.get()).unwrap_or_default()
}

/// How many alerts the feed keeps.
const FEED: usize = 10_000;

/// During a store outage, requests are judged while fewer records than this wait for the
/// store; past it they are refused before judging (503), so that no record is ever judged
/// and then dropped.
const QUEUE_LIMIT: u64 = 1_000_000;

/// How long a stopping server keeps trying to write records queued during an outage.
const SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What a commit job is answered.
type Done = oneshot::Sender<Result<(), String>>;

/// The writer thread: drains every queued job, commits the records of all queued commits
/// in one append, then answers each. When the store fails it marks the outage (see
/// [`Metrics::store_down`]), keeps the records queued and tries to reopen the store about
/// once a second, writing the queue first when it returns. `Err` at exit names the
/// records that could not be written.
fn writer(
    mut store: Durable,
    jobs: mpsc::Receiver<Job>,
    metrics: Arc<Metrics>,
) -> Result<(), String> {
    let retry = std::time::Duration::from_secs(1);
    let mut last_try = std::time::Instant::now();
    loop {
        let first = if metrics.store_down() {
            match jobs.recv_timeout(retry.saturating_sub(last_try.elapsed())) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match jobs.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            }
        };
        let mut batch: Vec<Job> = first.into_iter().collect();
        while let Ok(more) = jobs.try_recv() {
            batch.push(more);
        }
        let mut commits = Vec::new();
        let mut reads = Vec::new();
        for job in batch {
            match job {
                Job::Commit { records, done } => commits.push((records, done)),
                Job::ReadChain { chain, done } => reads.push((chain, done)),
            }
        }
        if metrics.store_down() {
            // Queue, and try the store again about once a second.
            for (records, done) in commits {
                let _ = store.enqueue(records);
                let _ = done.send(Err(
                    "the evidence store is unavailable; the records are queued".into(),
                ));
            }
            if last_try.elapsed() >= retry {
                last_try = std::time::Instant::now();
                if flush(&mut store, &metrics).is_ok() {
                    eprintln!("lever: the evidence store is back; the queued records are written");
                    metrics.set_store_down(false);
                }
            }
        } else if !commits.is_empty() {
            commit(&mut store, &metrics, commits);
            last_try = std::time::Instant::now();
        }
        metrics.set_queued(store.queued().len());
        for (chain, done) in reads {
            let result = match store.store() {
                Some(s) => s.read_chain(&chain).map_err(|e| e.to_string()),
                None => Err("the evidence store is unavailable".into()),
            };
            let body = result.map(|records| {
                let mut out = Vec::new();
                for r in records {
                    out.extend_from_slice(&r.to_bytes());
                    out.push(b'\n');
                }
                out
            });
            let _ = done.send(body);
        }
    }
    // Stopping: records queued during an outage get a last chance.
    let started = std::time::Instant::now();
    while !store.queued().is_empty() {
        match store.flush() {
            Ok(_) => break,
            Err(e) if started.elapsed() >= SHUTDOWN_WAIT => {
                return Err(format!(
                    "{e}; not written: {}",
                    crate::cli_run::describe(store.queued())
                ));
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(500)),
        }
    }
    Ok(())
}

/// Writes what is queued, timing it for the metrics.
fn flush(store: &mut Durable, metrics: &Metrics) -> Result<usize, WriteError> {
    let started = std::time::Instant::now();
    let result = store.flush();
    metrics.store_commit(started.elapsed(), result.is_ok());
    result
}

/// Commits a group of requests' records as one append (the queue is empty before it).
/// When the store refuses the group (one request's records contradict it: a run id that
/// an earlier server closed), each request is committed on its own, so that only the
/// offending one fails.
fn commit(store: &mut Durable, metrics: &Metrics, commits: Vec<(Vec<Record>, Done)>) {
    let sizes: Vec<usize> = commits.iter().map(|(r, _)| r.len()).collect();
    let mut waiting = Vec::new();
    for (records, done) in commits {
        let _ = store.enqueue(records);
        waiting.push(done);
    }
    match flush(store, metrics) {
        Ok(_) => {
            for done in waiting {
                let _ = done.send(Ok(()));
            }
        }
        Err(e @ WriteError::Unavailable { .. }) => {
            eprintln!(
                "lever: evidence store unavailable ({e}); fail_open runs continue, other runs are stopped, until it returns"
            );
            metrics.set_store_down(true);
            for done in waiting {
                let _ = done.send(Err(e.to_string()));
            }
        }
        Err(_) => {
            let mut all = store.take_queued().into_iter();
            for (size, done) in sizes.into_iter().zip(waiting) {
                let records: Vec<Record> = all.by_ref().take(size).collect();
                if metrics.store_down() {
                    let _ = store.enqueue(records);
                    let _ = done.send(Err(
                        "the evidence store is unavailable; the records are queued".into(),
                    ));
                    continue;
                }
                let _ = store.enqueue(records);
                let result = match flush(store, metrics) {
                    Ok(_) => Ok(()),
                    Err(e @ WriteError::Refused(_)) => {
                        store.take_queued();
                        Err(format!("{REFUSED}{e}"))
                    }
                    Err(e) => {
                        metrics.set_store_down(true);
                        Err(e.to_string())
                    }
                };
                let _ = done.send(result);
            }
        }
    }
}

/// How a commit error says the store refused the records themselves (answered 409).
const REFUSED: &str = "the evidence store refused this request's records: ";

/// A 503 answer while the evidence store is down: retry after a second.
fn unavailable(why: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, why);
    r.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    r
}

/// An error answer: a status and a JSON `{"error": ...}` body.
fn error(status: StatusCode, why: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "error": why }).to_string(),
    )
        .into_response()
}

impl Server {
    /// The server, and its evidence writer and alert delivery threads.
    pub fn new(options: Options) -> Result<(Arc<Server>, Threads), String> {
        let replay = Replay::with_engine(
            options.artifact,
            options.base_dir,
            Box::new(crate::cli_run::deploy_loader),
            options.engine,
        )
        .map_err(|e| e.to_string())?;
        // The server bounds the queue itself (QUEUE_LIMIT), before judging.
        let mut store = Durable::open(&options.evidence, usize::MAX).map_err(|e| e.to_string())?;
        let feed = match store.store() {
            Some(s) => seed_feed(s).map_err(|e| e.to_string())?,
            None => std::collections::VecDeque::new(),
        };
        let (tx, rx) = mpsc::channel();
        let metrics = Arc::new(Metrics::default());
        let writer_metrics = Arc::clone(&metrics);
        let (deliver, deliveries) = mpsc::channel();
        let recorder = tx.clone();
        let relay = options.config.smtp;
        let delivery_metrics = Arc::clone(&metrics);
        let delivery_thread = std::thread::Builder::new()
            .name("lever-delivery".into())
            .spawn(move || {
                delivery::worker(deliveries, relay, &delivery_metrics, |record| {
                    let (done, _) = oneshot::channel();
                    let _ = recorder.send(Job::Commit {
                        records: vec![record],
                        done,
                    });
                })
            })
            .map_err(|e| e.to_string())?;
        let handle = std::thread::Builder::new()
            .name("lever-evidence".into())
            .spawn(move || writer(store, rx, writer_metrics))
            .map_err(|e| e.to_string())?;
        let server = Arc::new(Server {
            replay: Mutex::new(replay),
            requests: AtomicU64::new(0),
            writer: tx,
            metrics,
            tokens: options.config.tokens,
            deliver,
            feed: Mutex::new(feed),
            run_locks: run_locks::RunLocks::default(),
        });
        Ok((
            server,
            Threads {
                writer: handle,
                delivery: delivery_thread,
            },
        ))
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics_text))
            .route("/v1/policies", get(policies))
            .route("/v1/runs", post(run_start))
            .route("/v1/runs/{id}/steps", post(step))
            .route("/v1/runs/{id}/end", post(run_end))
            .route("/v1/runs/{id}/overrides", post(override_request))
            .route("/v1/runs/{id}/overrides/{oid}/approvals", post(approval))
            .route("/v1/runs/{id}/evidence", get(evidence))
            .route("/v1/artifacts", axum::routing::put(put_artifact))
            .route("/v1/alerts", get(alerts))
            .with_state(Arc::clone(self))
    }

    /// Judges one event and answers once its evidence is durable.
    async fn event(&self, kind: &str, run_id: Option<&str>, body: &[u8]) -> Response {
        match parse_body(body) {
            Ok(event) => self.judge(kind, run_id, event, None).await,
            Err(r) => r.into_response(),
        }
    }

    /// Judges an event whose body is parsed; `mismatch` is what an authenticated body
    /// claimed beyond its token, recorded beside the decision.
    async fn judge(
        &self,
        kind: &str,
        run_id: Option<&str>,
        mut event: Body,
        mismatch: Option<serde_json::Value>,
    ) -> Response {
        if event.contains_key("type") {
            return error(
                StatusCode::BAD_REQUEST,
                "`type` comes from the endpoint, not the body",
            );
        }
        if let Some(id) = run_id
            && let Err(r) = from_path(&mut event, "run_id", id.into())
        {
            return r.into_response();
        }
        event.insert("type".into(), raw(&kind.into()));
        // During a store outage only run starts and steps are judged (under the outage
        // rule), and only while the queue has room; the rest wait for the store.
        let down = self.metrics.store_down();
        if down && !matches!(kind, "run_start" | "step") {
            return unavailable(&format!(
                "the evidence store is unavailable; a {kind} is judged only once its evidence can be made durable: retry when /healthz answers ok"
            ));
        }
        if down && self.metrics.queued() >= QUEUE_LIMIT {
            return unavailable(&format!(
                "the evidence store is unavailable and {} records wait for it: retry when /healthz answers ok",
                self.metrics.queued()
            ));
        }
        let text = serde_json::to_string(&event).unwrap_or_default();
        // The run's turn: its previous request's evidence is committed or refused by now.
        let run_key = run_id.map(str::to_string).or_else(|| {
            event
                .get("run_id")
                .and_then(|r| serde_json::from_str::<String>(r.get()).ok())
        });
        let _turn = match &run_key {
            Some(k) => Some(self.run_locks.turn(k).await),
            None => None,
        };
        let line = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        // Judge under the lock, and queue the evidence before releasing it, so that the
        // writer receives every run's records in the order they were judged.
        let (decision, done, deliveries, rejected, saved) = {
            let Ok(mut replay) = self.replay.lock() else {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the runtime lock is poisoned",
                );
            };
            replay.set_store_outage(down);
            let saved = run_key.as_deref().map(|k| (k, replay.save_run(k)));
            let Some(result) = replay.line(line, &text) else {
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
            let (tx, rx) = oneshot::channel();
            let job = Job::Commit { records, done: tx };
            if self.writer.send(job).is_err() {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the evidence writer stopped",
                );
            }
            (result.decision, rx, deliveries, result.rejected, saved)
        };
        // Judged under the outage rule: answered now, the records queued for the store.
        let result = if down { Ok(Ok(())) } else { done.await };
        match result {
            Ok(Ok(())) => {}
            Ok(Err(why)) if why.starts_with(REFUSED) => {
                // The store took none of it: the run is put back as it was.
                if let (Some((key, saved)), Ok(mut replay)) = (saved, self.replay.lock()) {
                    replay.restore_run(key, saved);
                }
                return error(StatusCode::CONFLICT, &why);
            }
            Ok(Err(why)) => {
                return unavailable(&format!(
                    "the evidence of this request could not be made durable, so its decision is not answered: {why}"
                ));
            }
            Err(_) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the evidence writer stopped",
                );
            }
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

/// An alert as the feed lists it.
fn feed_entry(
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
fn seed_feed(
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
    fn remember_alerts(&self, d: &crate::runtime::decision::Decision) {
        let delivered: Vec<&crate::runtime::decision::Alert> =
            d.alerts.iter().filter(|a| !a.suppressed).collect();
        if delivered.is_empty() {
            return;
        }
        let (Some(run), Some(seq)) = (d.run_id.as_deref(), d.seq) else {
            return;
        };
        let ts = serde_json::Value::from(d.ts.map(crate::runtime::format::timestamp));
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
async fn alerts(
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
fn deliveries_of(
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
                "ts": d.ts.map(crate::runtime::format::timestamp),
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

/// The time now, in the nanoseconds of event timestamps: deploys are server events.
fn now_ns() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_nanos()).unwrap_or(i64::MAX)
}

impl Server {
    /// Deploys an artifact and waits until its records are durable; returns the deploy
    /// record's body (`from`, `to`, `actor`, `ts`).
    fn deploy(&self, artifact: Artifact, actor: &str) -> Result<serde_json::Value, Refusal> {
        let refuse = |status, why: String| Refusal(status, why);
        if self.metrics.store_down() {
            return Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the evidence store is unavailable; a deploy is made only once its evidence can be made durable".into(),
            ));
        }
        let (deployed, done) = {
            let mut replay = self.replay.lock().map_err(|_| {
                refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the runtime lock is poisoned".into(),
                )
            })?;
            let result = replay
                .deploy_artifact(artifact, now_ns(), actor)
                .map_err(|why| refuse(StatusCode::UNPROCESSABLE_ENTITY, why))?;
            let deployed = result
                .records
                .iter()
                .find(|r| r.kind == RecordKind::Deploy)
                .map(|r| r.body.clone())
                .unwrap_or_default();
            let (tx, rx) = oneshot::channel();
            let job = Job::Commit {
                records: result.records,
                done: tx,
            };
            self.writer.send(job).map_err(|_| {
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the evidence writer stopped".into(),
                )
            })?;
            (deployed, rx)
        };
        match done.blocking_recv() {
            Ok(Ok(())) => {}
            Ok(Err(why)) => {
                return Err(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "the artifact is deployed, but the store failed as its evidence was written (it is queued): {why}"
                    ),
                ));
            }
            Err(_) => {
                return Err(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the evidence writer stopped".into(),
                ));
            }
        }
        Ok(deployed)
    }
}

/// Watches the artifact file and deploys it when it is replaced (a new id); a file that
/// does not verify is reported and the active artifact stays.
fn watch(server: std::sync::Weak<Server>, path: std::path::PathBuf) {
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut last = stamp(&path);
    loop {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let Some(server) = server.upgrade() else {
            return; // the server stopped
        };
        let now = stamp(&path);
        if now == last || now.is_none() {
            continue;
        }
        last = now;
        let loaded = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| Artifact::from_bytes(bytes).map_err(|e| e.to_string()));
        match loaded {
            Ok(artifact) => {
                let current = server
                    .replay
                    .lock()
                    .ok()
                    .and_then(|r| r.current_engine().map(|e| e.artifact().id.clone()));
                if current.as_deref() == Some(artifact.id.as_str()) {
                    continue;
                }
                match server.deploy(artifact, "local-file") {
                    Ok(d) => eprintln!(
                        "lever: deployed {} (replaced on disk)",
                        d.get("to").cloned().unwrap_or_default()
                    ),
                    Err(Refusal(_, why)) => {
                        eprintln!("lever: {}: not deployed: {why}", path.display())
                    }
                }
            }
            Err(why) => eprintln!("lever: {}: not deployed: {why}", path.display()),
        }
    }
}

/// A request refused before it is judged: its status and why.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.0, &self.1)
    }
}

/// A request body as a JSON object, or the 400 answer.
fn parse_body(body: &[u8]) -> Result<Body, Refusal> {
    match serde_json::from_slice::<Body>(body) {
        Ok(map) => Ok(map),
        Err(_) if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() => Err(Refusal(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object".into(),
        )),
        Err(e) => Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!("the body is not JSON: {e}"),
        )),
    }
}

/// Sets a field the path gives (DESIGN §6: a body that gives another value is 422).
fn from_path(event: &mut Body, field: &str, value: serde_json::Value) -> Result<(), Refusal> {
    if let Some(given) = event.get(field).map(|r| self::value(r))
        && given != value
    {
        return Err(Refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("the body's `{field}` {given} is not the path's {value}"),
        ));
    }
    event.insert(field.to_string(), raw(&value));
    Ok(())
}

/// The principal of a request, or the 401 answer.
fn authenticate<'a>(
    s: &'a Server,
    headers: &axum::http::HeaderMap,
) -> Result<&'a Principal, Refusal> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    s.tokens.principal(given).ok_or_else(|| {
        Refusal(
            StatusCode::UNAUTHORIZED,
            "a valid bearer token is required (Authorization: Bearer ...)".into(),
        )
    })
}

/// Replaces what a body says of who is asking with the token's principal; returns what
/// the body claimed that differs, for the evidence.
fn impose(event: &mut Body, who: &Principal, fields: &[&str]) -> Option<serde_json::Value> {
    let mut claimed = serde_json::Map::new();
    let actor = serde_json::Value::from(who.actor.clone());
    let roles = serde_json::Value::from(who.roles.clone());
    for field in fields {
        let Some(value) = event.remove(*field).map(|r| self::value(&r)) else {
            continue;
        };
        let differs = match *field {
            "actor" => value != actor,
            "roles" => value != roles,
            _ => value != serde_json::Value::Array(Vec::new()),
        };
        if differs {
            claimed.insert((*field).to_string(), value);
        }
    }
    event.insert("actor".into(), raw(&actor));
    if fields.contains(&"roles") {
        event.insert("roles".into(), raw(&roles));
        event.insert(
            "approvals".into(),
            raw(&serde_json::Value::Array(Vec::new())),
        );
    }
    (!claimed.is_empty())
        .then(|| serde_json::json!({"claimed": claimed, "actor": actor, "roles": roles}))
}

/// The principal and the parsed body of an authenticated request.
fn authenticated(
    s: &Server,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<(Principal, Body), Refusal> {
    let who = authenticate(s, headers)?.clone();
    Ok((who, parse_body(body)?))
}

async fn override_request(
    State(s): State<Arc<Server>>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (who, mut event) = match authenticated(&s, &headers, &body) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let mismatch = impose(&mut event, &who, &["actor", "roles", "approvals"]);
    s.judge("override", Some(&id), event, mismatch).await
}

async fn approval(
    State(s): State<Arc<Server>>,
    Path((id, oid)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (who, mut event) = match authenticated(&s, &headers, &body) {
        Ok(x) => x,
        Err(r) => return r.into_response(),
    };
    let Ok(request) = oid.parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            "the override in the path must be the request's seq, a positive integer",
        );
    };
    if let Err(r) = from_path(&mut event, "override", request.into()) {
        return r.into_response();
    }
    let mismatch = impose(&mut event, &who, &["actor"]);
    s.judge("approval", Some(&id), event, mismatch).await
}

/// `PUT /v1/artifacts`: an admin deploys a built artifact (its bytes as the body).
async fn put_artifact(
    State(s): State<Arc<Server>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let who = match authenticate(&s, &headers) {
        Ok(p) => p.clone(),
        Err(r) => return r.into_response(),
    };
    if !who.admin {
        return error(
            StatusCode::FORBIDDEN,
            &format!(
                "{} may not deploy: the token is not an admin token",
                who.actor
            ),
        );
    }
    let artifact = match Artifact::from_bytes(body.to_vec()) {
        Ok(a) => a,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("not deployed: {e}"),
            );
        }
    };
    let server = Arc::clone(&s);
    let deployed = tokio::task::spawn_blocking(move || server.deploy(artifact, &who.actor)).await;
    match deployed {
        Ok(Ok(body)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
        Ok(Err(r)) => r.into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the deploy task failed"),
    }
}

async fn run_start(State(s): State<Arc<Server>>, body: axum::body::Bytes) -> Response {
    s.event("run_start", None, &body).await
}

async fn step(
    State(s): State<Arc<Server>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    s.event("step", Some(&id), &body).await
}

async fn run_end(
    State(s): State<Arc<Server>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    s.event("run_end", Some(&id), &body).await
}

async fn evidence(State(s): State<Arc<Server>>, Path(id): Path<String>) -> Response {
    let (tx, rx) = oneshot::channel();
    let job = Job::ReadChain {
        chain: ChainId::Run(id.clone()),
        done: tx,
    };
    if s.writer.send(job).is_err() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the evidence writer stopped",
        );
    }
    match rx.await {
        Ok(Ok(body)) if body.is_empty() => {
            error(StatusCode::NOT_FOUND, &format!("no evidence of run `{id}`"))
        }
        Ok(Ok(body)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            body,
        )
            .into_response(),
        Ok(Err(why)) => error(StatusCode::SERVICE_UNAVAILABLE, &why),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the evidence writer stopped",
        ),
    }
}

async fn policies(State(s): State<Arc<Server>>) -> Response {
    let Ok(replay) = s.replay.lock() else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the runtime lock is poisoned",
        );
    };
    let Some(engine) = replay.current_engine() else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no artifact is loaded");
    };
    let artifact = engine.artifact();
    let json = crate::compile::disasm::json(artifact);
    let body = serde_json::json!({
        "artifact": artifact.id,
        "engine": format!("{:?}", engine.kind()).to_lowercase(),
        "policies": json.get("policies").cloned().unwrap_or_default(),
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `GET /healthz`: 200 `ok`, or 503 while the evidence store is unavailable.
async fn healthz(State(s): State<Arc<Server>>) -> Response {
    if s.metrics.store_down() {
        let why = format!(
            "degraded: the evidence store is unavailable; {} records queued\n",
            s.metrics.queued()
        );
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    }
    (StatusCode::OK, "ok\n").into_response()
}

async fn metrics_text(State(s): State<Arc<Server>>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

/// Runs the server until SIGTERM or Ctrl-C: then it stops accepting, lets requests in
/// flight finish (their evidence included), and returns.
pub fn serve(options: Options, listen: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let watched = options.watch.clone();
    let (server, threads) = Server::new(options)?;
    if let Some(path) = watched {
        let weak = Arc::downgrade(&server);
        std::thread::Builder::new()
            .name("lever-watch".into())
            .spawn(move || watch(weak, path))
            .map_err(|e| e.to_string())?;
    }
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("{listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        eprintln!("lever: serving on http://{addr}");
        axum::serve(listener, server.router())
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(|e| e.to_string())
    })?;
    // Every request has answered. Dropping the server closes the delivery queue; the
    // delivery worker finishes, and then the writer, once its last sender is gone.
    drop(server);
    threads
        .delivery
        .join()
        .map_err(|_| "the delivery worker panicked".to_string())?;
    threads
        .writer
        .join()
        .map_err(|_| "the evidence writer panicked".to_string())?
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    eprintln!("lever: shutting down: draining requests in flight");
}
