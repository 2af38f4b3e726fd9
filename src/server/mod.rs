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
mod console;
mod deploy;
mod feed;
mod histogram;
mod history;
mod judge;
mod listen;
mod metrics;
mod repeat;
mod routes;
mod run_locks;
mod runs;
mod writer;

pub(crate) use auth::{Principal, Tokens};

/// Decodes a request body as the server does before judging it (for fuzzing): its fields
/// with their JSON text, or why it is refused.
pub fn decode_body(body: &[u8]) -> Result<usize, String> {
    routes::parse_body(body).map(|b| b.len()).map_err(|r| r.1)
}
pub use config::Config;
use deploy::watch;

use crate::compile::artifact::Artifact;
use crate::evidence::durable::{Committed, Durable};
use crate::evidence::{ChainId, EvidenceStore, Record, RecordKind, Sealed};
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
    /// What a deployed artifact must be.
    pub load: crate::compile::load::LoadOptions,
}

/// The threads a server runs besides its async runtime, joined when it stops.
pub(crate) struct Threads {
    writer: std::thread::JoinHandle<Result<(), String>>,
    delivery: std::thread::JoinHandle<()>,
}

pub(crate) struct Server {
    /// The runtime (shared with the alert worker, which reads channels of its artifacts).
    replay: Arc<Mutex<Replay>>,
    /// The "line" numbers of rejected inputs: the server's start in nanoseconds since the
    /// epoch, plus the requests since, so that no two servers or restarts share one.
    requests: AtomicU64,
    writer: mpsc::Sender<writer::Commit>,
    /// A store handle of its own for reads, so that a read never waits for a commit.
    reader: Arc<Mutex<Box<dyn EvidenceStore>>>,
    /// The `[server]` settings.
    settings: config::Settings,
    /// What a deployed artifact must be.
    load: crate::compile::load::LoadOptions,
    metrics: Arc<Metrics>,
    tokens: Tokens,
    /// Alert records for the outbox worker, sent once they are durable.
    deliver: mpsc::Sender<Sealed>,
    /// The most recent delivered alerts and their deliveries, for `GET /v1/alerts`
    /// (shared with the delivery worker, which reports each attempt).
    feed: Arc<Mutex<crate::alerts::feed::Feed>>,
    /// One request at a time per run, until its evidence is committed or refused.
    run_locks: run_locks::RunLocks,
    /// Runs whose evidence does not judge again to what it holds: never served.
    refused: runs::Refused,
    /// The chain length each run was last loaded at for its state (PostgreSQL).
    loaded_at: runs::LoadedAt,
    /// The diffs of deploys already described (`GET /v1/deploys`).
    diffs: Arc<history::Diffs>,
    /// Whether other servers may write the store (PostgreSQL): a held run may then be
    /// behind the store, so its state is read from the store when asked for.
    shared_store: bool,
}

impl Server {
    /// The server, and its evidence writer and alert delivery threads.
    pub(crate) fn new(options: Options) -> Result<(Arc<Server>, Threads), String> {
        warn_unset_env(&options.artifact);
        let replay = runtime_of(&options)?;
        let settings = options.config.server.clone();
        let mut store = Durable::open(
            &options.evidence,
            settings.outage_queue_bytes,
            Some(&settings.spill),
        )
        .map_err(|e| e.to_string())?;
        let (feed, pending) = match store.store() {
            Some(s) => (
                crate::alerts::feed::Feed::seed(s).map_err(|e| e.to_string())?,
                crate::alerts::outbox::pending(s).map_err(|e| e.to_string())?,
            ),
            None => Default::default(),
        };
        let replay = Arc::new(Mutex::new(replay));
        let reader: Arc<Mutex<Box<dyn EvidenceStore>>> = Arc::new(Mutex::new(
            crate::evidence::open_for_audit(&options.evidence).map_err(|e| e.to_string())?,
        ));
        let (tx, rx) = mpsc::channel();
        let metrics = Arc::new(Metrics::default());
        let writer_metrics = Arc::clone(&metrics);
        let (deliver, deliveries) = mpsc::channel();
        let channels = Channels {
            replay: Arc::clone(&replay),
            reader: Arc::clone(&reader),
            load: options.load,
            stored: Mutex::default(),
        };
        let feed = Arc::new(Mutex::new(feed));
        let outbox = outbox(
            channels,
            options.config.smtp,
            &metrics,
            tx.clone(),
            Arc::clone(&feed),
        );
        let delivery_thread = std::thread::Builder::new()
            .name("lever-delivery".into())
            .spawn(move || crate::alerts::outbox::worker(deliveries, pending, outbox))
            .map_err(|e| e.to_string())?;
        let handle = std::thread::Builder::new()
            .name("lever-evidence".into())
            .spawn(move || writer::run(store, rx, writer_metrics))
            .map_err(|e| e.to_string())?;
        let server = Arc::new(Server {
            replay,
            requests: AtomicU64::new(u64::try_from(crate::base::wall::now_ns()).unwrap_or(0)),
            writer: tx,
            reader,
            settings,
            load: options.load,
            metrics,
            tokens: options.config.tokens,
            deliver,
            feed,
            run_locks: run_locks::RunLocks::default(),
            refused: runs::Refused::default(),
            loaded_at: runs::LoadedAt::default(),
            diffs: Arc::default(),
            shared_store: crate::evidence::shared(&options.evidence),
        });
        server.rebuild_live()?;
        if let Some(settings) = options.config.checkpoint.clone() {
            start_checkpoints(&server, settings, &options.evidence)?;
        }
        Ok((
            server,
            Threads {
                writer: handle,
                delivery: delivery_thread,
            },
        ))
    }
}

/// The server's runtime over its artifact. Budget counters are the store's: the server
/// reads each before it judges on it.
fn runtime_of(options: &Options) -> Result<Replay, String> {
    let mut replay = Replay::with_engine(
        Arc::clone(&options.artifact),
        options.base_dir.clone(),
        crate::compile::load::deploy_loader(options.load),
        options.engine,
    )
    .map_err(|e| e.to_string())?;
    *replay.budgets_mut() = crate::runtime::budget::Budgets::strict();
    Ok(replay)
}

/// Starts the thread that takes the `[checkpoint]`s.
fn start_checkpoints(
    server: &Arc<Server>,
    settings: config::CheckpointSettings,
    evidence: &str,
) -> Result<(), String> {
    let key = crate::base::trust::SecretKey::read(&settings.key)
        .map_err(|e| format!("[checkpoint] key: {e}"))?;
    // A handle of its own holds the store's checkpoint lock (PostgreSQL: servers take turns).
    let lock = crate::evidence::open_for_audit(evidence).map_err(|e| e.to_string())?;
    let weak = Arc::downgrade(server);
    std::thread::Builder::new()
        .name("lever-checkpoint".into())
        .spawn(move || checkpoints(weak, settings, key, lock))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Takes a signed checkpoint every interval until the server stops: read through the
/// reader's handle, recorded through the writer.
fn checkpoints(
    server: std::sync::Weak<Server>,
    settings: config::CheckpointSettings,
    key: crate::base::trust::SecretKey,
    mut lock: Box<dyn EvidenceStore>,
) {
    loop {
        std::thread::sleep(settings.interval);
        let Some(server) = server.upgrade() else {
            return;
        };
        // Another server is taking one: this interval's is theirs.
        match lock.try_lock_checkpoints() {
            Ok(true) => {}
            Ok(false) => continue,
            Err(why) => {
                eprintln!("lever: no checkpoint taken: the checkpoint lock: {why}");
                continue;
            }
        }
        let prepared = server
            .reader
            .lock()
            .map_err(|_| "the reader lock is poisoned".to_string())
            .and_then(|mut store| {
                crate::evidence::log::prepare(store.as_mut(), &settings.origin, Some(&key))
                    .map_err(|e| e.to_string())
            });
        let result = prepared.and_then(|(head, _, record)| {
            let (tx, rx) = oneshot::channel();
            let job = writer::Commit {
                records: vec![Sealed::new(record)],
                done: tx,
            };
            server
                .writer
                .send(job)
                .map_err(|_| "the evidence writer stopped".to_string())?;
            match rx.blocking_recv() {
                Ok(Committed::Stored | Committed::Spilled) => Ok(head.size),
                _ => Err("the checkpoint could not be stored".to_string()),
            }
        });
        if let Err(why) = result {
            eprintln!("lever: no checkpoint taken: {why}");
        }
        if let Err(why) = lock.unlock_checkpoints() {
            eprintln!("lever: the checkpoint lock could not be released: {why}");
        }
    }
}

/// Says on stderr which channels of an artifact read an unset variable.
fn warn_unset_env(artifact: &Artifact) {
    for warning in crate::alerts::channel::unset_env(&artifact.body.program.channels) {
        eprintln!("lever: warning: {warning}");
    }
}

/// Where the outbox finds an alert's channel: in an artifact the runtime holds, or else
/// in the stored artifact the alert names (an alert of a run judged by an artifact this
/// server never loaded, stored by another server or before a restart).
struct Channels {
    replay: Arc<Mutex<Replay>>,
    reader: Arc<Mutex<Box<dyn EvidenceStore>>>,
    load: crate::compile::load::LoadOptions,
    /// The channels of stored artifacts read so far, by artifact id.
    stored: Mutex<std::collections::HashMap<String, Vec<crate::compile::bytecode::ChannelDesc>>>,
}

impl Channels {
    fn find(&self, artifact: &str, name: &str) -> Option<crate::compile::bytecode::ChannelDesc> {
        if let Some(c) = self.replay.lock().ok()?.channel(artifact, name) {
            return Some(c);
        }
        let mut cache = self.stored.lock().ok()?;
        if !cache.contains_key(artifact) {
            let mut store = self.reader.lock().ok()?;
            let stored = runs::stored_artifact(store.as_mut(), self.load, artifact).ok()?;
            cache.insert(artifact.to_string(), stored.body.program.channels);
        }
        cache
            .get(artifact)?
            .iter()
            .find(|c| c.name == name)
            .cloned()
    }
}

/// The outbox worker's view of the server: channels from the runtime's artifacts (or the
/// stored ones), attempts counted in the metrics and recorded through the writer.
fn outbox(
    channels: Channels,
    relay: Option<crate::alerts::email::SmtpRelay>,
    metrics: &Arc<Metrics>,
    writer: mpsc::Sender<writer::Commit>,
    feed: Arc<Mutex<crate::alerts::feed::Feed>>,
) -> crate::alerts::outbox::Outbox {
    let metrics = Arc::clone(metrics);
    crate::alerts::outbox::Outbox {
        resolve: Box::new(move |artifact, name| channels.find(artifact, name)),
        relay,
        heard: Box::new(move |kind, name, ok| {
            metrics.delivery(kind.name(), ok);
            if let (false, Some(mut l)) = (ok, metrics.labelled()) {
                l.delivery_failed(name);
            }
        }),
        record: Box::new(move |record| {
            if let Ok(mut feed) = feed.lock() {
                feed.attempt(&record.body);
            }
            let (done, _) = oneshot::channel();
            let _ = writer.send(writer::Commit {
                records: vec![Sealed::new(record)],
                done,
            });
        }),
    }
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
    let settings = server.settings.clone();
    runtime.block_on(async {
        // The stop signals are taken before the server says it listens.
        let stop = stop_signal()?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("{listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        if settings.public_reads {
            eprintln!(
                "lever: warning: reads need no token ([server] public_reads = true, or [ui] require_token = false): evidence (api keys, actors, labels, prompts), alerts and policies are readable by anyone who can reach {addr}"
            );
        }
        eprintln!("lever: serving on http://{addr}");
        listen::serve(listener, server.router(), &settings, stop).await;
        Ok::<(), String>(())
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

/// Completes on SIGTERM or Ctrl-C; the handlers are installed when this is called.
fn stop_signal() -> Result<impl std::future::Future<Output = ()>, String> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot take SIGTERM: {e}"))?;
    Ok(async move {
        let ctrl_c = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        #[cfg(unix)]
        let term = async {
            term.recv().await;
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {},
            () = term => {},
        }
        eprintln!("lever: shutting down: draining requests in flight");
    })
}
