//! Runs as the evidence store holds them. A run's state is a pure function of its artifact
//! and its accepted inputs, and every decision record stores its input, so a server holds
//! runs only as a cache: before it listens it rebuilds every live run from its chain, and
//! a request for a run it does not hold loads the run from the store first. A run whose
//! chain does not judge again to what it holds is refused loudly and never served.
//!
//! Also the run-state routes: `GET /v1/runs/{id}` and `GET /v1/runs?state=live`.

use super::routes::{error, json_answer, unavailable};
use super::*;
use crate::compile::artifact::Artifact;
use crate::runtime::replay::{RebuildError, Rebuilt};
use std::collections::{BTreeMap, HashMap};

/// Runs refused at load, with why: requests for them answer 409.
#[derive(Default)]
pub(super) struct Refused(Mutex<BTreeMap<String, String>>);

impl Refused {
    fn why(&self, id: &str) -> Option<String> {
        self.0.lock().ok()?.get(id).cloned()
    }

    fn refuse(&self, e: &RebuildError) {
        eprintln!("lever: error: {e}; the run is not served");
        if let Ok(mut map) = self.0.lock() {
            map.insert(e.run.clone(), e.to_string());
        }
    }
}

/// The chain length at which a server last loaded each run to show its state: a held run
/// whose chain the store still holds at that length is current, and is not read again.
#[derive(Default)]
pub(super) struct LoadedAt(Mutex<HashMap<String, u64>>);

/// Past this many runs, the lengths are forgotten (and runs read again when asked for).
const MOST_LOADED_AT: usize = 100_000;

impl LoadedAt {
    fn get(&self, id: &str) -> Option<u64> {
        self.0.lock().ok()?.get(id).copied()
    }

    fn set(&self, id: &str, len: u64) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= MOST_LOADED_AT {
                map.clear();
            }
            map.insert(id.to_string(), len);
        }
    }
}

/// A stored artifact, verified as a deployed one is.
pub(super) fn stored_artifact(
    store: &mut dyn EvidenceStore,
    load: crate::compile::load::LoadOptions,
    id: &str,
) -> Result<Artifact, String> {
    let bytes = store
        .artifact_bytes(id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("the evidence store holds no artifact {id}"))?;
    // Its signature was checked when it was deployed; the store keeps its signer in the
    // deploy record, not the signature.
    let load = crate::compile::load::LoadOptions {
        trust: None,
        ..load
    };
    crate::compile::load::load_bytes(bytes, load).map_err(|e| format!("artifact {id}: {e}"))
}

impl Server {
    /// Rebuilds every live run of the store (started, not ended) before the server
    /// listens; says how many and how long it took.
    pub(super) fn rebuild_live(&self) -> Result<(), String> {
        let started = std::time::Instant::now();
        // Locks in the order every other path takes them: the runtime, then the reader.
        let mut replay = self
            .replay
            .lock()
            .map_err(|_| "the runtime lock is poisoned")?;
        let mut reader = self
            .reader
            .lock()
            .map_err(|_| "the reader lock is poisoned")?;
        let live = reader.live_runs().map_err(|e| e.to_string())?;
        let (mut rebuilt, mut refused) = (0, 0);
        for id in &live {
            let chain = reader
                .read_chain(&ChainId::Run(id.clone()))
                .map_err(|e| e.to_string())?;
            let mut source = |aid: &str| stored_artifact(reader.as_mut(), self.load, aid);
            match self.rebuild(&mut replay, id, &chain, &mut source) {
                Ok(_) => rebuilt += 1,
                Err(_) => refused += 1,
            }
        }
        if !live.is_empty() {
            eprintln!(
                "lever: rebuilt {rebuilt} live runs from the evidence in {:.2} s{}",
                started.elapsed().as_secs_f64(),
                if refused > 0 {
                    format!("; {refused} refused (named above)")
                } else {
                    String::new()
                }
            );
        }
        Ok(())
    }

    /// Makes sure the server holds run `id` as the store does: a run it does not hold is
    /// loaded from its chain (nothing, for a run never started). In the run's turn. The
    /// length of the chain it loaded the run from, when it loaded it.
    pub(super) async fn load_run(&self, id: &str) -> Result<Option<u64>, Response> {
        if let Some(why) = self.refused.why(id) {
            return Err(error(StatusCode::CONFLICT, &why));
        }
        let held = self.replay.lock().map(|r| r.holds(id)).unwrap_or(false);
        if held {
            return Ok(None);
        }
        let run = ChainId::Run(id.to_string());
        let chain = self
            .read_store(move |store| store.read_chain(&run))
            .await
            .map_err(|why| unavailable(&format!("the run cannot be read: {why}")))?;
        if chain.is_empty() {
            return Ok(None);
        }
        let len = chain.len() as u64;
        let Ok(mut replay) = self.replay.lock() else {
            return Err(unavailable("the runtime lock is poisoned"));
        };
        let mut source = |aid: &str| match self.reader.lock() {
            Ok(mut store) => stored_artifact(store.as_mut(), self.load, aid),
            Err(_) => Err("the reader lock is poisoned".to_string()),
        };
        self.rebuild(&mut replay, id, &chain, &mut source)
            .map(|_| Some(len))
            .map_err(|e| error(StatusCode::CONFLICT, &e.to_string()))
    }

    /// Rebuilds one run into the runtime, counted in the metrics; a run that does not
    /// rebuild is refused from then on.
    fn rebuild(
        &self,
        replay: &mut Replay,
        id: &str,
        chain: &[crate::evidence::Stored],
        source: &mut crate::runtime::replay::ArtifactSource<'_>,
    ) -> Result<Rebuilt, RebuildError> {
        let rebuilt = replay.rebuild(id, chain, source);
        match &rebuilt {
            Ok(Rebuilt::Nothing) => {}
            Ok(Rebuilt::LiveOnItsArtifact(why)) => {
                eprintln!("lever: run `{id}` keeps the artifact it was judged by: {why}");
                self.metrics.run_loaded();
            }
            Ok(_) => self.metrics.run_loaded(),
            Err(e) => {
                self.metrics.run_refused();
                self.refused.refuse(e);
            }
        }
        rebuilt
    }

    /// Reads the store through the server's reading handle, on a blocking thread (the
    /// PostgreSQL client blocks), never through the writer's.
    pub(super) async fn read_store<T: Send + 'static>(
        &self,
        read: impl FnOnce(&mut dyn EvidenceStore) -> Result<T, crate::evidence::StoreError>
        + Send
        + 'static,
    ) -> Result<T, String> {
        let reader = Arc::clone(&self.reader);
        tokio::task::spawn_blocking(move || {
            let mut store = reader.lock().map_err(|_| "the reader lock is poisoned")?;
            read(store.as_mut()).map_err(|e| e.to_string())
        })
        .await
        .map_err(|_| "the evidence read failed".to_string())?
    }

    /// Reads budget counters from the store into the runtime: those it does not hold yet,
    /// or, after another server moved them (`moved`), all of `ids` again.
    pub(super) async fn read_counters(
        &self,
        ids: Vec<String>,
        moved: bool,
    ) -> Result<(), Response> {
        // Only what the runtime does not hold, unless other servers moved it.
        let ids: Vec<String> = if moved {
            ids
        } else {
            let Ok(mut replay) = self.replay.lock() else {
                return Err(unavailable("the runtime lock is poisoned"));
            };
            let budgets = replay.budgets_mut();
            ids.into_iter().filter(|id| !budgets.holds(id)).collect()
        };
        if ids.is_empty() {
            return Ok(());
        }
        let values = self
            .read_store(move |store| store.counters(&ids))
            .await
            .map_err(|why| unavailable(&format!("the budget counters cannot be read: {why}")))?;
        let Ok(mut replay) = self.replay.lock() else {
            return Err(unavailable("the runtime lock is poisoned"));
        };
        let budgets = replay.budgets_mut();
        for (id, value) in values {
            if moved || !budgets.holds(&id) {
                budgets.set(id, value);
            }
        }
        Ok(())
    }

    /// Forgets run `id` and loads it again from the store: another server extended it.
    pub(super) async fn reload_run(&self, id: &str) -> Result<Option<u64>, Response> {
        if let Ok(mut replay) = self.replay.lock() {
            replay.forget(id);
        }
        self.load_run(id).await
    }
}

/// `GET /v1/runs/{id}`: the run's state, loaded from the store when this server does not
/// hold it.
pub(super) async fn run_status(State(s): State<Arc<Server>>, Path(id): Path<String>) -> Response {
    let stored = match s.stored_lens(vec![id.clone()]).await {
        Ok(lens) => lens.get(&id).copied(),
        Err(refused) => return refused,
    };
    match s.status_of(&id, stored).await {
        Ok(Some(status)) => json_answer(&status),
        Ok(None) => error(StatusCode::NOT_FOUND, &format!("no run `{id}`")),
        Err(refused) => refused,
    }
}

impl Server {
    /// Run `id`'s state as the store holds it now (`None`: no such run), in the run's turn.
    /// On a shared store, `stored`: the run's chain length there, which the caller read; a
    /// held run loaded at that length is current, and is not read again.
    async fn status_of(
        &self,
        id: &str,
        stored: Option<u64>,
    ) -> Result<Option<serde_json::Value>, Response> {
        let _turn = self.run_locks.turn(id).await;
        let held = self.replay.lock().is_ok_and(|r| r.holds(id));
        let current = held && stored.is_some() && self.loaded_at.get(id) == stored;
        if !self.shared_store {
            self.load_run(id).await?;
        } else if !current {
            // Another server may have extended the run since this one judged it.
            if let Some(len) = self.reload_run(id).await? {
                self.loaded_at.set(id, len);
            }
        }
        // Its budgets' counters as the store holds them now: other servers add to them on
        // PostgreSQL; a file store's one writer is this server, whose counters are current.
        let counters = self
            .replay
            .lock()
            .map(|r| r.counter_ids(id))
            .unwrap_or_default();
        if !counters.is_empty() {
            self.read_counters(counters, self.shared_store).await?;
        }
        Ok(self.replay.lock().ok().and_then(|r| r.status(id)))
    }
}

impl Server {
    /// On a shared store, each run's chain length there (one query); nothing otherwise.
    async fn stored_lens(&self, ids: Vec<String>) -> Result<HashMap<String, u64>, Response> {
        if !self.shared_store {
            return Ok(HashMap::new());
        }
        self.read_store(move |store| store.chain_lens(&ids))
            .await
            .map_err(|why| unavailable(&format!("the runs cannot be read: {why}")))
    }
}

/// The most run states `GET /v1/runs?state=live&detail=status` answers with.
const MOST_STATES: usize = 1000;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunsQuery {
    state: Option<String>,
    detail: Option<String>,
    limit: Option<usize>,
}

/// `GET /v1/runs?state=live`: every run in progress, as the store holds them (a run
/// another server started is listed too); with `detail=status`, each one's state as
/// `GET /v1/runs/{id}` gives it (at most `limit`, 200 by default).
pub(super) async fn runs(
    State(s): State<Arc<Server>>,
    axum::extract::Query(q): axum::extract::Query<RunsQuery>,
) -> Response {
    if q.state.as_deref() != Some("live") {
        return error(
            StatusCode::BAD_REQUEST,
            "list runs with ?state=live (the runs in progress)",
        );
    }
    let ids = match s.read_store(|store| store.live_runs()).await {
        Ok(ids) => ids,
        Err(why) => return unavailable(&why),
    };
    match q.detail.as_deref() {
        None => json_answer(&serde_json::json!({ "runs": ids })),
        Some("status") => {
            let limit = q.limit.unwrap_or(200);
            if !(1..=MOST_STATES).contains(&limit) {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("`limit` must be a number from 1 to {MOST_STATES}"),
                );
            }
            let shown: Vec<String> = ids.iter().take(limit).cloned().collect();
            // On a shared store, only the runs whose chains grew since are read again.
            let stored = match s.stored_lens(shown.clone()).await {
                Ok(lens) => lens,
                Err(refused) => return refused,
            };
            let mut states = Vec::new();
            for id in &shown {
                match s.status_of(id, stored.get(id).copied()).await {
                    Ok(Some(status)) => states.push(status),
                    Ok(None) => {}
                    // A run whose evidence does not rebuild is listed, never served.
                    Err(r) if r.status() == StatusCode::CONFLICT => states
                        .push(serde_json::json!({ "run_id": id, "state": "refused",
                            "state_reason": s.refused.why(id) })),
                    Err(refused) => return refused,
                }
            }
            json_answer(&serde_json::json!({
                "runs": states, "live": ids.len(), "truncated": ids.len() > limit,
            }))
        }
        Some(other) => error(
            StatusCode::BAD_REQUEST,
            &format!("`detail` may only be `status`, not `{other}`"),
        ),
    }
}
