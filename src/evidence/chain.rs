//! Hash chains: every stored record is linked to the one before it in its chain.
//!
//! A run's records form one chain, in the order the runtime produced them; records of no
//! run form the store chain. A stored record carries its position `n` (from 0), `prev` (the
//! hash of the record before it, 32 zero bytes for the first) and its own `hash`:
//!
//! ```text
//! hash = blake3("lever/evidence/chain/v1\0" || prev (32 bytes) || n (8 bytes LE) || canonical bytes)
//! ```
//!
//! The canonical bytes are the record's own (see [`super::Record::canonical_bytes`]); no
//! storage time is hashed, so the same events give the same chains on every machine. A
//! `run_summary` closes its run's chain.

use super::{Record, RecordKind, StoreError};
use serde::Serialize;
use std::collections::HashMap;

const DOMAIN: &[u8] = b"lever/evidence/chain/v1\0";

/// Which chain a record belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChainId {
    /// Records of no run: artifacts, deploys, rejected lines of no live run, digests.
    Store,
    Run(String),
}

impl ChainId {
    /// The chain as stored in a database column: `""` for the store chain, `r:ID` for a run.
    pub fn key(&self) -> String {
        match self {
            ChainId::Store => String::new(),
            ChainId::Run(id) => format!("r:{id}"),
        }
    }

    pub fn from_key(key: &str) -> Option<ChainId> {
        if key.is_empty() {
            return Some(ChainId::Store);
        }
        key.strip_prefix("r:")
            .map(|id| ChainId::Run(id.to_string()))
    }
}

impl std::fmt::Display for ChainId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainId::Store => f.write_str("the store chain"),
            ChainId::Run(id) => write!(f, "run `{id}`"),
        }
    }
}

/// A record as stored: the record and its place in its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub record: Record,
    pub n: u64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
}

/// The hash a record has at position `n` after `prev`.
pub fn link_hash(prev: &[u8; 32], n: u64, canonical: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    h.update(prev);
    h.update(&n.to_le_bytes());
    h.update(canonical);
    *h.finalize().as_bytes()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[derive(Serialize)]
struct StoredJson<'a> {
    #[serde(flatten)]
    record: &'a Record,
    n: u64,
    prev: String,
    hash: String,
}

impl Stored {
    /// The stored form: the canonical bytes with `n`, `prev` and `hash` (hex) appended.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&StoredJson {
            record: &self.record,
            n: self.n,
            prev: hex(&self.prev),
            hash: hex(&self.hash),
        })
        .unwrap_or_default()
    }

    /// Reads a stored form back; `None` if it is not one.
    pub fn from_bytes(bytes: &[u8]) -> Option<Stored> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        Some(Stored {
            record: record_of(&v)?,
            n: v.get("n")?.as_u64()?,
            prev: unhex(v.get("prev")?.as_str()?)?,
            hash: unhex(v.get("hash")?.as_str()?)?,
        })
    }

    /// The hash this record should have, from its own content and place.
    pub fn expected_hash(&self) -> [u8; 32] {
        link_hash(&self.prev, self.n, &self.record.canonical_bytes())
    }
}

/// The record fields of a stored JSON object.
pub fn record_of(v: &serde_json::Value) -> Option<Record> {
    Some(Record {
        kind: RecordKind::from_name(v.get("kind")?.as_str()?)?,
        artifact: v.get("artifact")?.as_str()?.to_string(),
        run_id: v.get("run_id")?.as_str().map(str::to_string),
        seq: v.get("seq")?.as_u64()?,
        index: u32::try_from(v.get("index")?.as_u64()?).ok()?,
        body: v.get("body")?.clone(),
    })
}

/// The head of one chain: how many records it holds, the last one's hash, and whether a
/// `run_summary` closed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: u64,
    pub hash: [u8; 32],
    pub closed: bool,
}

impl Head {
    pub const EMPTY: Head = Head {
        len: 0,
        hash: [0; 32],
        closed: false,
    };

    pub fn after(stored: &Stored) -> Head {
        Head {
            len: stored.n + 1,
            hash: stored.hash,
            closed: stored.record.kind == RecordKind::RunSummary,
        }
    }
}

/// Links records onto chain heads (the heads are updated as records are linked).
pub fn link(
    heads: &mut HashMap<ChainId, Head>,
    records: Vec<Record>,
) -> Result<Vec<Stored>, StoreError> {
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let chain = record.chain();
        let head = heads.entry(chain).or_insert(Head::EMPTY);
        if head.closed {
            return Err(StoreError::ChainClosed(
                record.run_id.clone().unwrap_or_default(),
            ));
        }
        let n = head.len;
        let hash = link_hash(&head.hash, n, &record.canonical_bytes());
        let stored = Stored {
            prev: head.hash,
            n,
            hash,
            record,
        };
        *head = Head::after(&stored);
        out.push(stored);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(run: Option<&str>, seq: u64, kind: RecordKind) -> Record {
        Record {
            kind,
            artifact: "blake3:00".into(),
            run_id: run.map(str::to_string),
            seq,
            index: 0,
            body: serde_json::json!({"a": 1}),
        }
    }

    #[test]
    fn chains_are_per_run_and_closed_by_the_summary() {
        let mut heads = HashMap::new();
        let stored = link(
            &mut heads,
            vec![
                record(Some("r"), 1, RecordKind::Decision),
                record(None, 0, RecordKind::Deploy),
                record(Some("r"), 2, RecordKind::Decision),
                record(Some("r"), 2, RecordKind::RunSummary),
            ],
        )
        .unwrap();
        assert_eq!(stored.iter().map(|s| s.n).collect::<Vec<_>>(), [0, 0, 1, 2]);
        assert_eq!(stored[0].prev, [0; 32]);
        assert_eq!(stored[2].prev, stored[0].hash);
        assert_eq!(stored[1].prev, [0; 32], "the store chain is its own");
        for s in &stored {
            assert_eq!(s.expected_hash(), s.hash);
            assert_eq!(Stored::from_bytes(&s.to_bytes()).as_ref(), Some(s));
        }
        let after = link(&mut heads, vec![record(Some("r"), 3, RecordKind::Decision)]);
        assert!(matches!(after, Err(StoreError::ChainClosed(r)) if r == "r"));
    }
}
