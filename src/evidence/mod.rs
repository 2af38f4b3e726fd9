//! Evidence: the records a run leaves, their canonical bytes and ids, and the store trait.
//!
//! A record's canonical bytes are its JSON serialization with fields in a fixed order
//! (`kind`, `artifact`, `run_id`, `seq`, `index`, `body`), no whitespace, and the body's
//! object keys sorted (see `docs/evidence.md`). Its id derives from where it stands
//! (artifact, run, seq, kind, index), so replaying the same input adds nothing; its
//! content hash is blake3 over the canonical bytes, so a replay that would say something
//! different about an existing (run, seq) is caught before anything is written.

pub mod file;

use serde::Serialize;

/// The kinds of record (DESIGN §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Artifact,
    Deploy,
    Snapshot,
    Decision,
    Signal,
    Alert,
    AlertDelivery,
    Override,
    RejectedInput,
    Incident,
    RunSummary,
}

impl RecordKind {
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Artifact => "artifact",
            RecordKind::Deploy => "deploy",
            RecordKind::Snapshot => "snapshot",
            RecordKind::Decision => "decision",
            RecordKind::Signal => "signal",
            RecordKind::Alert => "alert",
            RecordKind::AlertDelivery => "alert_delivery",
            RecordKind::Override => "override",
            RecordKind::RejectedInput => "rejected_input",
            RecordKind::Incident => "incident",
            RecordKind::RunSummary => "run_summary",
        }
    }
}

/// One evidence record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record {
    pub kind: RecordKind,
    /// The artifact that judged it (`blake3:<hex>`).
    pub artifact: String,
    /// The run it belongs to; `None` for store-wide records.
    pub run_id: Option<String>,
    /// The event's `seq` in its run; for a rejected line, its line number.
    pub seq: u64,
    /// Position among records of the same run, seq and kind.
    pub index: u32,
    pub body: serde_json::Value,
}

/// Where a record stands, independent of artifact: a replay must say the same thing here.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    pub run_id: String,
    pub seq: u64,
    pub kind: RecordKind,
    pub index: u32,
}

impl Record {
    /// The canonical bytes: what is stored, and what the content hash covers.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record's id: blake3 over its place (and, for a rejected line, its content).
    pub fn id(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"lever/record-id/v1\0");
        h.update(self.artifact.as_bytes());
        h.update(b"\0");
        h.update(self.run_id.as_deref().unwrap_or("").as_bytes());
        h.update(b"\0");
        h.update(&self.seq.to_le_bytes());
        h.update(self.kind.name().as_bytes());
        h.update(b"\0");
        h.update(&self.index.to_le_bytes());
        if self.key().is_none() {
            h.update(&self.content_hash());
        }
        *h.finalize().as_bytes()
    }

    /// blake3 over the canonical bytes.
    pub fn content_hash(&self) -> [u8; 32] {
        *blake3::hash(&self.canonical_bytes()).as_bytes()
    }

    /// The place a replay must agree on; `None` for records that stand for themselves
    /// (store-wide records and rejected lines).
    pub fn key(&self) -> Option<RecordKey> {
        let run_id = self.run_id.clone()?;
        if self.kind == RecordKind::RejectedInput {
            return None;
        }
        Some(RecordKey {
            run_id,
            seq: self.seq,
            kind: self.kind,
            index: self.index,
        })
    }
}

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
    #[error("unsupported evidence URL {0:?}: use file:DIR")]
    BadUrl(String),
}

/// An append-only evidence store.
pub trait EvidenceStore {
    /// Whether a record with this id is stored.
    fn contains(&self, id: &[u8; 32]) -> bool;
    /// The content hash stored at a place, if any.
    fn content_at(&self, key: &RecordKey) -> Option<[u8; 32]>;
    /// Appends the records not yet stored and makes them durable before returning;
    /// returns how many were new.
    fn append(&mut self, records: &[Record]) -> Result<usize, StoreError>;
    /// Every stored record's canonical bytes, in append order.
    fn read_all(&self) -> Result<Vec<Vec<u8>>, StoreError>;
}

/// Opens a store from a `--evidence` URL (`file:DIR`).
pub fn open(url: &str) -> Result<Box<dyn EvidenceStore>, StoreError> {
    match url.strip_prefix("file:") {
        Some(dir) => Ok(Box::new(file::FileStore::open(std::path::Path::new(dir))?)),
        None => Err(StoreError::BadUrl(url.to_string())),
    }
}
