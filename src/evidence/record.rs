//! Records: their kinds, places, canonical bytes, content hashes and ids. A record is
//! rendered once, when it is sealed ([`Sealed`]); everything after (its id, the store, the
//! spill file, the queue's size) reads those bytes.

use super::ChainId;
use serde::Serialize;

/// The kinds of record.
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
    /// A digest checkpoint (`lever evidence digest`), in the store chain.
    Digest,
    /// A torn final frame cut off when the file store was opened, in the store chain.
    Recovery,
    /// A request body that claimed an actor, roles or approvals other than its bearer
    /// token's (`lever serve`): what it claimed, and who it was.
    AuthMismatch,
    /// The start or end of an evidence-store outage, in the store chain: records judged
    /// during it were written late.
    Outage,
    /// A deploy `lever serve` refused (an artifact that does not verify, or is not signed
    /// by a trusted key), in the store chain: who tried, and why.
    DeployRefused,
    /// A signed checkpoint of the Merkle tree over every record (`lever evidence
    /// checkpoint`), in the store chain: the note, and which records it integrated.
    Checkpoint,
}

impl RecordKind {
    pub(crate) fn name(self) -> &'static str {
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
            RecordKind::Digest => "digest",
            RecordKind::Recovery => "recovery",
            RecordKind::AuthMismatch => "auth_mismatch",
            RecordKind::Outage => "outage",
            RecordKind::DeployRefused => "deploy_refused",
            RecordKind::Checkpoint => "checkpoint",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<RecordKind> {
        Some(match name {
            "artifact" => RecordKind::Artifact,
            "deploy" => RecordKind::Deploy,
            "snapshot" => RecordKind::Snapshot,
            "decision" => RecordKind::Decision,
            "signal" => RecordKind::Signal,
            "alert" => RecordKind::Alert,
            "alert_delivery" => RecordKind::AlertDelivery,
            "override" => RecordKind::Override,
            "rejected_input" => RecordKind::RejectedInput,
            "incident" => RecordKind::Incident,
            "run_summary" => RecordKind::RunSummary,
            "digest" => RecordKind::Digest,
            "recovery" => RecordKind::Recovery,
            "auth_mismatch" => RecordKind::AuthMismatch,
            "outage" => RecordKind::Outage,
            "deploy_refused" => RecordKind::DeployRefused,
            "checkpoint" => RecordKind::Checkpoint,
            _ => return None,
        })
    }
}

/// A `deploy_refused` record of the store chain: who tried to load or deploy an artifact,
/// when, and why it was refused.
pub fn deploy_refused(actor: &str, why: &str) -> Record {
    Record {
        kind: RecordKind::DeployRefused,
        artifact: String::new(),
        run_id: None,
        seq: 0,
        index: 0,
        body: serde_json::json!({
            "ts": crate::base::format::timestamp(crate::base::wall::now_ns()),
            "actor": actor,
            "why": why,
        }),
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
        let mut out = Vec::with_capacity(1024);
        match serde_json::to_writer(&mut out, self) {
            Ok(()) => out,
            Err(_) => Vec::new(),
        }
    }

    /// The record's id: blake3 over its place (and, for a record of no place, such as a
    /// rejected line, its content).
    pub fn id(&self) -> [u8; 32] {
        let keyless = self.key().is_none();
        let content = if keyless {
            self.content_hash()
        } else {
            [0; 32]
        };
        Record::id_of(
            &self.artifact,
            self.run_id.as_deref(),
            self.seq,
            self.kind,
            self.index,
            &content,
        )
    }

    /// [`Record::id`] from a record's parts and content hash (read only for a record of
    /// no place).
    pub(crate) fn id_of(
        artifact: &str,
        run_id: Option<&str>,
        seq: u64,
        kind: RecordKind,
        index: u32,
        content: &[u8; 32],
    ) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"lever/record-id/v1\0");
        h.update(artifact.as_bytes());
        h.update(b"\0");
        h.update(run_id.unwrap_or("").as_bytes());
        h.update(b"\0");
        h.update(&seq.to_le_bytes());
        h.update(kind.name().as_bytes());
        h.update(b"\0");
        h.update(&index.to_le_bytes());
        if run_id.is_none() || kind == RecordKind::RejectedInput {
            h.update(content);
        }
        *h.finalize().as_bytes()
    }

    /// blake3 over the canonical bytes.
    pub(crate) fn content_hash(&self) -> [u8; 32] {
        *blake3::hash(&self.canonical_bytes()).as_bytes()
    }

    /// The chain the record belongs to.
    pub fn chain(&self) -> ChainId {
        match &self.run_id {
            Some(run) => ChainId::Run(run.clone()),
            None => ChainId::Store,
        }
    }

    /// The place a replay must agree on; `None` for records that stand for themselves
    /// (store-wide records and rejected lines).
    pub(crate) fn key(&self) -> Option<RecordKey> {
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

/// A record with its canonical bytes and hashes, computed once: the id, the content hash,
/// the stored and spilled forms and the queue's accounting all read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    record: Record,
    canonical: Vec<u8>,
    content: [u8; 32],
    id: [u8; 32],
}

impl Sealed {
    /// Renders a record's canonical bytes and hashes.
    pub(crate) fn new(record: Record) -> Sealed {
        let canonical = record.canonical_bytes();
        let content = *blake3::hash(&canonical).as_bytes();
        let id = Record::id_of(
            &record.artifact,
            record.run_id.as_deref(),
            record.seq,
            record.kind,
            record.index,
            &content,
        );
        Sealed {
            record,
            canonical,
            content,
            id,
        }
    }

    /// Seals every record of a list, in order.
    pub fn all(records: impl IntoIterator<Item = Record>) -> Vec<Sealed> {
        records.into_iter().map(Sealed::new).collect()
    }

    pub(crate) fn record(&self) -> &Record {
        &self.record
    }

    /// The canonical bytes.
    pub(crate) fn canonical(&self) -> &[u8] {
        &self.canonical
    }

    /// blake3 over the canonical bytes.
    pub(crate) fn content(&self) -> [u8; 32] {
        self.content
    }

    /// The record's id ([`Record::id`]).
    pub(crate) fn id(&self) -> [u8; 32] {
        self.id
    }
}

/// Names a list of records for an error message: how many, and the first and last.
pub fn describe(records: &[Sealed]) -> String {
    // An outage's own record is bookkeeping, not what a user lost.
    let skip = records
        .iter()
        .take_while(|r| r.record.kind == RecordKind::Outage)
        .count();
    let records = records.get(skip..).unwrap_or_default();
    let name = |r: &Sealed| match &r.record.run_id {
        Some(run) => format!(
            "run `{run}` seq {} ({})",
            r.record.seq,
            r.record.kind.name()
        ),
        None => format!("{} record", r.record.kind.name()),
    };
    match (records.first(), records.last()) {
        (Some(first), Some(last)) if records.len() > 1 => {
            format!(
                "{} records, from {} to {}",
                records.len(),
                name(first),
                name(last)
            )
        }
        (Some(only), _) => format!("1 record, {}", name(only)),
        _ => "no records".into(),
    }
}
