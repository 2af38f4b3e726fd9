//! The evidence writer: one thread owns the store and commits whatever requests have queued
//! as one group (one fsync or one transaction), then tells each request what became of its
//! records. The blocking store never runs on the async runtime, and nothing but commits
//! runs here: reads go through their own store handle.
//!
//! During a store outage the records are spilled (fsynced) to a local file and queued; the
//! writer tries the store about once a second and writes the queue first when it returns.

use super::metrics::Metrics;
use crate::evidence::Sealed;
use crate::evidence::durable::{Committed, Durable};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Records to commit, and who waits to hear what became of them.
pub(crate) struct Commit {
    pub records: Vec<Sealed>,
    pub done: oneshot::Sender<Committed>,
}

/// How long a stopping server keeps trying to write records queued during an outage.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// How often the store is tried during an outage.
const RETRY: Duration = Duration::from_secs(1);

/// The writer thread's loop; returns when every sender is gone. `Err` at exit names the
/// records that could not be written (they stay in the spill file for the next start).
pub(crate) fn run(
    mut store: Durable,
    jobs: mpsc::Receiver<Commit>,
    metrics: Arc<Metrics>,
) -> Result<(), String> {
    let mut last_try = Instant::now();
    loop {
        let first = if store.in_outage() {
            match jobs.recv_timeout(RETRY.saturating_sub(last_try.elapsed())) {
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
        let mut batch: Vec<Commit> = first.into_iter().collect();
        while let Ok(more) = jobs.try_recv() {
            batch.push(more);
        }
        if !batch.is_empty() {
            commit(&mut store, &metrics, batch);
        }
        if store.in_outage() && last_try.elapsed() >= RETRY {
            last_try = Instant::now();
            retry(&mut store, &metrics);
        }
        metrics.set_queued(store.queued().len(), store.queued_bytes());
    }
    drain_on_exit(&mut store)
}

/// Commits a batch of requests' records and answers each.
fn commit(store: &mut Durable, metrics: &Metrics, batch: Vec<Commit>) {
    let (groups, waiting): (Vec<Vec<Sealed>>, Vec<oneshot::Sender<Committed>>) =
        batch.into_iter().map(|c| (c.records, c.done)).unzip();
    let was_down = store.in_outage();
    let started = Instant::now();
    let fates = store.commit_groups(groups);
    metrics.store_commit(started.elapsed(), !store.in_outage());
    if store.in_outage() && !was_down {
        eprintln!(
            "lever: the evidence store is unavailable; fail_open runs continue, other runs are stopped, and the records are spilled until it returns"
        );
    }
    metrics.set_store_down(store.in_outage());
    for (fate, done) in fates.into_iter().zip(waiting) {
        let _ = done.send(fate);
    }
}

fn retry(store: &mut Durable, metrics: &Metrics) {
    let started = Instant::now();
    let result = store.retry();
    metrics.store_commit(started.elapsed(), result.is_ok());
    if result.is_ok() && !store.in_outage() {
        eprintln!("lever: the evidence store is back; the queued records are written");
        metrics.set_store_down(false);
    }
}

/// Stopping: records queued during an outage get a last chance.
fn drain_on_exit(store: &mut Durable) -> Result<(), String> {
    let started = Instant::now();
    while store.in_outage() || !store.queued().is_empty() {
        match store.retry() {
            Ok(_) if !store.in_outage() => break,
            Ok(_) => {}
            Err(e) if started.elapsed() >= SHUTDOWN_WAIT => {
                return Err(format!(
                    "{e}; not written: {} (kept in the spill file, written at the next start)",
                    crate::evidence::describe(store.queued())
                ));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    Ok(())
}
