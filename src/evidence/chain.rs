//! Hash chains: every stored record is linked to the one before it in its chain.
//!
//! A run's records form one chain, in the order the runtime produced them; records of no
//! run form the store chain. A stored record carries its position `n` (from 0), `prev` (the
//! hash of the record before it, 32 zero bytes for the first) and its own `hash`:
//!
//! ```text
//! hash = blake3("lever/evidence/chain/v1\0" || prev (32 bytes) || n (8 bytes LE) || content)
//! content = blake3(canonical bytes)
//! ```
//!
//! The canonical bytes are the record's own (see [`super::Record::canonical_bytes`]); no
//! storage time is hashed, so the same events give the same chains on every machine. A
//! `run_summary` closes its run's chain.

use super::{Record, RecordKind, Sealed, StoreError};
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
    pub(crate) fn key(&self) -> String {
        match self {
            ChainId::Store => String::new(),
            ChainId::Run(id) => format!("r:{id}"),
        }
    }

    pub(crate) fn from_key(key: &str) -> Option<ChainId> {
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

/// The hash a record whose canonical bytes hash to `content` has at position `n` after
/// `prev`.
pub(crate) fn link_hash(prev: &[u8; 32], n: u64, content: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    h.update(prev);
    h.update(&n.to_le_bytes());
    h.update(content);
    *h.finalize().as_bytes()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    push_hex(&mut out, bytes);
    String::from_utf8(out).unwrap_or_default()
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    let digit = |x: u8| if x < 10 { b'0' + x } else { b'a' + x - 10 };
    for b in bytes {
        out.push(digit(b >> 4));
        out.push(digit(b & 0x0f));
    }
}

pub(crate) fn unhex(text: &str) -> Option<[u8; 32]> {
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let bytes: &[u8; 64] = text.as_bytes().try_into().ok()?;
    let mut out = [0u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let (hi, lo) = (pair.first()?, pair.get(1)?);
        *slot = (digit(*hi)? << 4) | digit(*lo)?;
    }
    Some(out)
}

/// The stored form of a record from its canonical bytes: the same JSON object with `n`,
/// `prev` and `hash` (hex) appended as its last fields.
pub(crate) fn stored_bytes(canonical: &[u8], n: u64, prev: &[u8; 32], hash: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(canonical.len() + 180);
    push_stored_bytes(&mut out, canonical, n, prev, hash);
    out
}

/// [`stored_bytes`], appended to `out`.
pub(crate) fn push_stored_bytes(
    out: &mut Vec<u8>,
    canonical: &[u8],
    n: u64,
    prev: &[u8; 32],
    hash: &[u8; 32],
) {
    let body = canonical.strip_suffix(b"}").unwrap_or(canonical);
    out.extend_from_slice(body);
    out.extend_from_slice(b",\"n\":");
    out.extend_from_slice(n.to_string().as_bytes());
    out.extend_from_slice(b",\"prev\":\"");
    push_hex(out, prev);
    out.extend_from_slice(b"\",\"hash\":\"");
    push_hex(out, hash);
    out.extend_from_slice(b"\"}");
}

/// A record linked into its chain: the sealed record and its place.
#[derive(Debug, Clone)]
pub(crate) struct Linked<'a> {
    pub sealed: &'a Sealed,
    pub n: u64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
}

impl Linked<'_> {
    pub(crate) fn record(&self) -> &Record {
        self.sealed.record()
    }

    #[cfg(test)]
    pub(crate) fn stored_bytes(&self) -> Vec<u8> {
        stored_bytes(self.sealed.canonical(), self.n, &self.prev, &self.hash)
    }

    pub(crate) fn head(&self) -> Head {
        Head {
            len: self.n + 1,
            hash: self.hash,
            closed: self.record().kind == RecordKind::RunSummary,
        }
    }
}

impl Stored {
    /// The stored form: the canonical bytes with `n`, `prev` and `hash` (hex) appended.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        stored_bytes(
            &self.record.canonical_bytes(),
            self.n,
            &self.prev,
            &self.hash,
        )
    }

    /// Reads a stored form back; `None` if it is not one.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Stored> {
        let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        Some(Stored {
            record: record_of(&v)?,
            n: v.get("n")?.as_u64()?,
            prev: unhex(v.get("prev")?.as_str()?)?,
            hash: unhex(v.get("hash")?.as_str()?)?,
        })
    }

    /// The hash this record should have, from its own content and place.
    #[cfg(test)]
    pub(crate) fn expected_hash(&self) -> [u8; 32] {
        link_hash(&self.prev, self.n, &self.record.content_hash())
    }
}

/// The record fields of a stored JSON object.
pub(crate) fn record_of(v: &serde_json::Value) -> Option<Record> {
    Some(Record {
        kind: RecordKind::from_name(v.get("kind")?.as_str()?)?,
        artifact: v.get("artifact")?.as_str()?.to_string(),
        run_id: v.get("run_id")?.as_str().map(str::to_string),
        seq: v.get("seq")?.as_u64()?,
        index: u32::try_from(v.get("index")?.as_u64()?).ok()?,
        body: v.get("body")?.clone(),
    })
}

/// What verification needs of a stored record, read without parsing its body: its chain,
/// kind and seq, its place in the chain, and the hash of its canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub chain: ChainId,
    pub kind: RecordKind,
    pub seq: u64,
    pub n: u64,
    pub prev: [u8; 32],
    pub hash: [u8; 32],
    /// blake3 over the canonical bytes.
    pub content: [u8; 32],
}

impl Link {
    /// The hash this record should have, from its content and place.
    pub(crate) fn expected_hash(&self) -> [u8; 32] {
        link_hash(&self.prev, self.n, &self.content)
    }
}

impl Stored {
    /// The record's link.
    pub(crate) fn link(&self) -> Link {
        Link {
            chain: self.record.chain(),
            kind: self.record.kind,
            seq: self.record.seq,
            n: self.n,
            prev: self.prev,
            hash: self.hash,
            content: self.record.content_hash(),
        }
    }
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
    pub(crate) const EMPTY: Head = Head {
        len: 0,
        hash: [0; 32],
        closed: false,
    };

    pub(crate) fn after_link(link: &Link) -> Head {
        Head {
            len: link.n + 1,
            hash: link.hash,
            closed: link.kind == RecordKind::RunSummary,
        }
    }
}

/// Links records onto chain heads (the heads are updated as records are linked).
pub(crate) fn link<'a>(
    heads: &mut HashMap<ChainId, Head>,
    records: impl IntoIterator<Item = &'a Sealed>,
) -> Result<Vec<Linked<'a>>, StoreError> {
    let mut out = Vec::new();
    for sealed in records {
        let record = sealed.record();
        let head = heads.entry(record.chain()).or_insert(Head::EMPTY);
        if head.closed {
            return Err(StoreError::ChainClosed(
                record.run_id.clone().unwrap_or_default(),
            ));
        }
        let linked = Linked {
            sealed,
            n: head.len,
            prev: head.hash,
            hash: link_hash(&head.hash, head.len, &sealed.content()),
        };
        *head = linked.head();
        out.push(linked);
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
        let records = [
            record(Some("r"), 1, RecordKind::Decision),
            record(None, 0, RecordKind::Deploy),
            record(Some("r"), 2, RecordKind::Decision),
            record(Some("r"), 2, RecordKind::RunSummary),
        ];
        let records = Sealed::all(records);
        let stored: Vec<Stored> = link(&mut heads, &records)
            .unwrap()
            .into_iter()
            .map(|l| {
                let s = Stored::from_bytes(&l.stored_bytes()).unwrap();
                assert_eq!(s.to_bytes(), l.stored_bytes());
                s
            })
            .collect();
        assert_eq!(stored.iter().map(|s| s.n).collect::<Vec<_>>(), [0, 0, 1, 2]);
        assert_eq!(stored[0].prev, [0; 32]);
        assert_eq!(stored[2].prev, stored[0].hash);
        assert_eq!(stored[1].prev, [0; 32], "the store chain is its own");
        for s in &stored {
            assert_eq!(s.expected_hash(), s.hash);
            assert_eq!(Stored::from_bytes(&s.to_bytes()).as_ref(), Some(s));
        }
        let late = Sealed::new(record(Some("r"), 3, RecordKind::Decision));
        let after = link(&mut heads, [&late]);
        assert!(matches!(after, Err(StoreError::ChainClosed(r)) if r == "r"));
    }
}
