//! Evidence: the records a run leaves, their canonical bytes and ids, and the store trait.
//!
//! A record's canonical bytes are its JSON serialization with fields in a fixed order
//! (`kind`, `artifact`, `run_id`, `seq`, `index`, `body`), no whitespace, and the body's
//! object keys sorted (see `docs/evidence.md`). Its id derives from where it stands
//! (artifact, run, seq, kind, index), so replaying the same input adds nothing; its
//! content hash is blake3 over the canonical bytes, so a replay that would say something
//! different about an existing (run, seq) is caught before anything is written.
//!
//! Stored, every record also has a place in a hash chain (see `chain`): its run's, or the
//! store chain for records of no run. The backends ([`file`](mod@file), [`postgres`]) share the
//! [`EvidenceStore`] trait; [`audit`] verifies chains, computes digests and shows runs.

use std::collections::HashMap;

pub mod audit;
pub mod budgets;
pub(crate) mod chain;
pub mod durable;
pub mod file;
pub mod listing;
pub mod log;
pub mod merkle;
pub mod note;
pub mod postgres;
mod record;

pub use chain::{ChainId, Stored};
pub use record::{Record, RecordKey, RecordKind, Sealed, deploy_refused, describe};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("evidence store {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("evidence store {path} is corrupt at byte {offset}: {why}")]
    Corrupt {
        path: String,
        offset: u64,
        why: String,
    },
    #[error("unsupported evidence URL {0:?}: use file:DIR or postgres://...")]
    BadUrl(String),
    #[error("evidence store {url}: {why}")]
    Database { url: String, why: String },
    #[error("evidence store: run `{0}` is closed by its run_summary; no record may follow it")]
    ChainClosed(String),
    #[error("evidence store: a record for {0} is already stored with different content")]
    Contradicts(String),
    #[error("evidence store {0} stopped after a failed write; reopen it to continue")]
    Stopped(String),
    #[error(
        "evidence store {path} is in use by another writer ({holder}): stop it first, or give this one another store (--evidence file:DIR)"
    )]
    Locked { path: String, holder: String },
    #[error(
        "evidence store: another writer extended a chain of this batch first ({0}); nothing was written"
    )]
    Fenced(String),
    #[error(
        "evidence store: a budget counter moved since the batch was judged ({0}); nothing was written"
    )]
    BudgetMoved(String),
}

impl StoreError {
    /// A database error, without the password a URL may carry.
    pub(crate) fn database(url: &str, why: impl std::fmt::Display) -> StoreError {
        StoreError::Database {
            url: postgres::redact(url),
            why: why.to_string(),
        }
    }
}

/// An append-only evidence store.
pub trait EvidenceStore: Send {
    /// The first record whose place (run, seq, kind, index) already holds different
    /// content in the store, if any.
    fn first_conflict(&mut self, records: &[Sealed]) -> Result<Option<RecordKey>, StoreError>;
    /// Appends the records not yet stored (by id), each linked into its chain, and makes
    /// them durable before returning; returns how many were new. After a failed write
    /// the store refuses every later call: it never acknowledges after a failure.
    fn append(&mut self, records: &[Sealed]) -> Result<usize, StoreError>;
    /// [`EvidenceStore::append`] for a writer that judged the records itself (`lever
    /// serve`): a record of a run whose place is already stored, even with the same
    /// content, means another writer judged that event first, and the batch is refused
    /// as [`StoreError::Fenced`], nothing written.
    fn append_exclusive(&mut self, records: &[Sealed]) -> Result<usize, StoreError>;
    /// Every stored record, chain by chain (the store chain first, then runs by id), each
    /// chain in order, as stored: nothing is checked or repaired here. Holds the whole
    /// store in memory: [`EvidenceStore::visit_all`] streams instead.
    fn read_all(&mut self) -> Result<Vec<Stored>, StoreError> {
        let mut all = Vec::new();
        self.visit_all(
            &mut |s| {
                all.push(s);
                std::ops::ControlFlow::Continue(())
            },
            &mut |_, _| {},
        )?;
        all.sort_by_key(|s| s.record.chain());
        Ok(all)
    }
    /// Calls `visit` with every stored record, each chain's records in order (chains may
    /// interleave), until it answers `Break`; `progress` hears (done, total) as it goes.
    fn visit_all(
        &mut self,
        visit: &mut dyn FnMut(Stored) -> std::ops::ControlFlow<()>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), StoreError>;
    /// [`EvidenceStore::visit_all`], each record as its `chain::Link` only: what
    /// verification reads, without every body parsed.
    fn visit_links(
        &mut self,
        visit: &mut dyn FnMut(chain::Link) -> std::ops::ControlFlow<()>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), StoreError> {
        self.visit_all(&mut |s| visit(s.link()), progress)
    }
    /// One chain's records in order, as stored.
    fn read_chain(&mut self, chain: &ChainId) -> Result<Vec<Stored>, StoreError>;
    /// The runs whose chain is not closed by a `run_summary`: the runs in progress.
    fn live_runs(&mut self) -> Result<Vec<String>, StoreError>;
    /// How many records each run of `ids` has in its chain (the runs the store holds):
    /// what a server compares with the length it loaded a run at, to know whether another
    /// server has added to the run since.
    fn chain_lens(&mut self, ids: &[String]) -> Result<HashMap<String, u64>, StoreError> {
        let mut lens = HashMap::new();
        for id in ids {
            let chain = self.read_chain(&ChainId::Run(id.clone()))?;
            if !chain.is_empty() {
                lens.insert(id.clone(), chain.len() as u64);
            }
        }
        Ok(lens)
    }
    /// Takes the store's checkpoint lock for this handle, if no other holds it: one
    /// checkpoint is prepared and recorded at a time, whichever process takes it. A file
    /// store has one writer, which needs none.
    fn try_lock_checkpoints(&mut self) -> Result<bool, StoreError> {
        Ok(true)
    }
    /// Releases what [`EvidenceStore::try_lock_checkpoints`] took.
    fn unlock_checkpoints(&mut self) -> Result<(), StoreError> {
        Ok(())
    }
    /// A stored artifact's bytes, by its id (the store chain's `artifact` records).
    fn artifact_bytes(&mut self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .read_chain(&ChainId::Store)?
            .into_iter()
            .find(|s| s.record.kind == RecordKind::Artifact && s.record.artifact == id)
            .and_then(|s| artifact_record_bytes(&s.record)))
    }
    /// The values of budget counters by id ([`budgets::counter_id`]); a counter nothing
    /// added to is 0. A counter is the sum of what the stored decisions added to it.
    fn counters(&mut self, ids: &[String]) -> Result<HashMap<String, i64>, StoreError> {
        let all = budgets::sum_all(self)?;
        Ok(ids
            .iter()
            .map(|id| (id.clone(), all.get(id).copied().unwrap_or(0)))
            .collect())
    }
    /// Every budget counter with its labels, ended windows included.
    fn counter_rows(&mut self) -> Result<Vec<budgets::CounterRow>, StoreError> {
        budgets::rows_of(self)
    }
    /// The newest `limit` records of a kind, oldest first (the alert outbox, say).
    fn read_recent(&mut self, kind: RecordKind, limit: usize) -> Result<Vec<Stored>, StoreError> {
        let mut all = self.read_all()?;
        all.retain(|s| s.record.kind == kind);
        let skip = all.len().saturating_sub(limit);
        Ok(all.split_off(skip))
    }
}

/// The artifact an `artifact` record holds (its body's `bytes`, in hex).
pub(crate) fn artifact_record_bytes(r: &Record) -> Option<Vec<u8>> {
    crate::base::hash::unhex(r.body.get("bytes")?.as_str()?)
}

/// Whether a store URL names a store other processes may write at the same time
/// (PostgreSQL), as opposed to a file store, which has one writer.
pub(crate) fn shared(url: &str) -> bool {
    !url.starts_with("file:")
}

/// Opens a store for an audit, read-only: nothing created, written or cut.
pub(crate) fn open_for_audit(url: &str) -> Result<Box<dyn EvidenceStore>, StoreError> {
    if let Some(dir) = url.strip_prefix("file:") {
        return Ok(Box::new(file::FileStore::open_read_only(
            std::path::Path::new(dir),
        )?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(postgres::PgStore::open_read_only(url)?));
    }
    Err(StoreError::BadUrl(url.to_string()))
}

/// Opens a store from a `--evidence` URL: `file:DIR`, or `postgres://...` /
/// `postgresql://...` (optionally `?schema=NAME`, default `lever`).
pub(crate) fn open(url: &str) -> Result<Box<dyn EvidenceStore>, StoreError> {
    if let Some(dir) = url.strip_prefix("file:") {
        return Ok(Box::new(file::FileStore::open(std::path::Path::new(dir))?));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Box::new(postgres::PgStore::open(url)?));
    }
    Err(StoreError::BadUrl(url.to_string()))
}
