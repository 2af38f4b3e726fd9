//! What an auditor runs: `verify` recomputes every chain, `digest` takes a checkpoint of
//! every chain head, `show` prints a run's evidence.
//!
//! The digest is a Merkle root over one leaf per chain, in chain order (the store chain,
//! then runs by id):
//!
//! ```text
//! leaf  = blake3("lever/digest/leaf/v1\0" || chain key || "\0" || length (8 bytes LE) || head hash)
//! node  = blake3("lever/digest/node/v1\0" || left || right)    (an odd last node moves up as is)
//! empty = blake3("lever/digest/empty/v1\0")
//! ```
//!
//! Taking a digest also appends a `digest` record to the store chain listing the leaves, so
//! that `verify --digest D` can later check that every record D covered is still there,
//! unchanged, even after a rewrite that recomputed every hash.

use super::chain::{ChainId, Head, Stored, hex, unhex};
use super::{EvidenceStore, Record, RecordKind, StoreError};
use std::collections::BTreeMap;

/// The first problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub chain: ChainId,
    /// The record's position in its chain, when the problem is one record.
    pub n: Option<u64>,
    pub seq: Option<u64>,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.chain)?;
        if let Some(n) = self.n {
            write!(f, ", record {n}")?;
        }
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}", self.what)
    }
}

/// What a clean `verify` covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Verified {
    pub chains: usize,
    pub records: usize,
}

fn problem(s: &Stored, chain: &ChainId, what: String) -> Problem {
    Problem {
        chain: chain.clone(),
        n: Some(s.n),
        seq: Some(s.record.seq),
        what,
    }
}

/// Checks chains given chain by chain, each in stored order; returns each chain's head.
pub fn check_chains(records: &[Stored]) -> Result<BTreeMap<ChainId, Head>, Problem> {
    let mut heads: BTreeMap<ChainId, Head> = BTreeMap::new();
    for s in records {
        let chain = s.record.chain();
        let head = heads.entry(chain.clone()).or_insert(Head::EMPTY);
        if head.closed {
            return Err(problem(
                s,
                &chain,
                "a record follows the run's run_summary, which closed the chain (inserted)".into(),
            ));
        }
        if s.n != head.len {
            return Err(problem(
                s,
                &chain,
                format!(
                    "stored at position {} where position {} was expected: a record was deleted, inserted or reordered",
                    s.n, head.len
                ),
            ));
        }
        if s.prev != head.hash {
            return Err(problem(
                s,
                &chain,
                "its `prev` is not the hash of the record before it: a record was deleted, inserted or reordered".into(),
            ));
        }
        if s.expected_hash() != s.hash {
            return Err(problem(
                s,
                &chain,
                format!(
                    "its content does not match its hash (altered): it hashes to {}, the chain says {}",
                    hex(&s.expected_hash()),
                    hex(&s.hash)
                ),
            ));
        }
        *head = Head::after(s);
    }
    Ok(heads)
}

fn leaf(chain: &ChainId, head: &Head) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"lever/digest/leaf/v1\0");
    h.update(chain.key().as_bytes());
    h.update(b"\0");
    h.update(&head.len.to_le_bytes());
    h.update(&head.hash);
    *h.finalize().as_bytes()
}

/// The Merkle root over chain heads (in `BTreeMap` order: store chain, then runs by id).
pub fn root(heads: &BTreeMap<ChainId, Head>) -> [u8; 32] {
    let mut level: Vec<[u8; 32]> = heads.iter().map(|(c, h)| leaf(c, h)).collect();
    if level.is_empty() {
        return *blake3::hash(b"lever/digest/empty/v1\0").as_bytes();
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => {
                    let mut h = blake3::Hasher::new();
                    h.update(b"lever/digest/node/v1\0");
                    h.update(l);
                    h.update(r);
                    *h.finalize().as_bytes()
                }
                [single] => *single,
                _ => [0; 32],
            })
            .collect();
    }
    level.first().copied().unwrap_or([0; 32])
}

pub fn digest_text(root: &[u8; 32]) -> String {
    format!("blake3:{}", hex(root))
}

/// Verifies every chain (or one run's), then, with a digest, that every record the digest
/// covered is still stored unchanged. `Ok(Err(problem))` is a store that fails
/// verification; `Err` is a store that could not be read.
pub fn verify(
    store: &mut dyn EvidenceStore,
    run: Option<&str>,
    digest: Option<&str>,
) -> Result<Result<Verified, Problem>, StoreError> {
    let records = match run {
        Some(id) => store.read_chain(&ChainId::Run(id.to_string()))?,
        None => store.read_all()?,
    };
    let heads = match check_chains(&records) {
        Ok(h) => h,
        Err(p) => return Ok(Err(p)),
    };
    if let Some(run) = run
        && heads.is_empty()
    {
        return Ok(Err(Problem {
            chain: ChainId::Run(run.to_string()),
            n: None,
            seq: None,
            what: "the store holds no record of this run".into(),
        }));
    }
    if let Some(d) = digest {
        let checked = if run.is_some() {
            let mut all = store.read_chain(&ChainId::Store)?;
            all.extend(records.iter().cloned());
            all
        } else {
            records.clone()
        };
        if let Err(p) = covers(&checked, d, run) {
            return Ok(Err(p));
        }
    }
    Ok(Ok(Verified {
        chains: heads.len(),
        records: records.len(),
    }))
}

/// Checks a digest against the store's records: its checkpoint is present and intact, and
/// each chain it covered still holds, at the same position, the head it recorded.
fn covers(records: &[Stored], digest: &str, run: Option<&str>) -> Result<(), Problem> {
    let gone = |what: String| Problem {
        chain: ChainId::Store,
        n: None,
        seq: None,
        what,
    };
    let checkpoint = records
        .iter()
        .filter(|s| s.record.kind == RecordKind::Digest && s.record.run_id.is_none())
        .find(|s| s.record.body.get("root").and_then(|r| r.as_str()) == Some(digest))
        .ok_or_else(|| {
            gone(format!(
                "digest {digest} is not recorded in this store: the checkpoint it was taken with was deleted or altered, and with it what it covered cannot be shown intact"
            ))
        })?;
    let mut covered: BTreeMap<ChainId, Head> = BTreeMap::new();
    for entry in checkpoint
        .record
        .body
        .get("chains")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
    {
        let chain = entry
            .get("chain")
            .and_then(|c| c.as_str())
            .and_then(ChainId::from_key);
        let len = entry.get("len").and_then(serde_json::Value::as_u64);
        let head = entry.get("head").and_then(|h| h.as_str()).and_then(unhex);
        let (Some(chain), Some(len), Some(hash)) = (chain, len, head) else {
            return Err(gone(format!(
                "the checkpoint of digest {digest} is malformed"
            )));
        };
        covered.insert(
            chain,
            Head {
                len,
                hash,
                closed: false,
            },
        );
    }
    if digest_text(&root(&covered)) != digest {
        return Err(gone(format!(
            "the checkpoint of digest {digest} lists chain heads that do not hash to it (altered)"
        )));
    }
    let mut by_chain: BTreeMap<ChainId, Vec<&Stored>> = BTreeMap::new();
    for s in records {
        by_chain.entry(s.record.chain()).or_default().push(s);
    }
    for (chain, head) in &covered {
        if let (Some(run), ChainId::Run(id)) = (run, chain)
            && id != run
        {
            continue;
        }
        let last = head.len.checked_sub(1);
        let stored = last.and_then(|n| {
            by_chain
                .get(chain)
                .and_then(|list| list.iter().find(|s| s.n == n))
        });
        match stored {
            Some(s) if s.hash == head.hash => {}
            Some(s) => {
                return Err(problem(
                    s,
                    chain,
                    format!(
                        "digest {digest} covered this record with hash {}, the store now holds {}: the chain was rewritten",
                        hex(&head.hash),
                        hex(&s.hash)
                    ),
                ));
            }
            None if head.len == 0 => {}
            None => {
                return Err(Problem {
                    chain: chain.clone(),
                    n: last,
                    seq: None,
                    what: format!(
                        "digest {digest} covered {} records of this chain; record {} is gone",
                        head.len,
                        head.len.saturating_sub(1)
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Verifies the store, then records a checkpoint of every chain head and returns the
/// digest. A store that fails verification gets no digest.
pub fn digest(store: &mut dyn EvidenceStore) -> Result<Result<String, Problem>, StoreError> {
    let records = store.read_all()?;
    let heads = match check_chains(&records) {
        Ok(h) => h,
        Err(p) => return Ok(Err(p)),
    };
    let r = digest_text(&root(&heads));
    let chains: Vec<serde_json::Value> = heads
        .iter()
        .map(|(c, h)| serde_json::json!({"chain": c.key(), "len": h.len, "head": hex(&h.hash)}))
        .collect();
    let checkpoint = Record {
        kind: RecordKind::Digest,
        artifact: String::new(),
        run_id: None,
        seq: 0,
        index: 0,
        body: serde_json::json!({"root": r, "chains": chains}),
    };
    store.append(&[checkpoint])?;
    Ok(Ok(r))
}

/// One line per record of a run, for a person.
pub fn show_text(records: &[Stored]) -> String {
    let mut out = String::new();
    let Some(first) = records.first() else {
        return out;
    };
    let last = records.last().unwrap_or(first);
    let closed = last.record.kind == RecordKind::RunSummary;
    out.push_str(&format!(
        "{}: {} records, chain head {}{}\n",
        first.record.chain(),
        records.len(),
        hex(&last.hash),
        if closed {
            ", closed by its run_summary"
        } else {
            ", still open"
        }
    ));
    for s in records {
        let b = &s.record.body;
        let text = |k: &str| b.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let what = match s.record.kind {
            RecordKind::Decision => {
                let reason = b
                    .get("reason")
                    .and_then(|r| r.as_str())
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                format!("{} -> {}{reason}", text("event"), text("action"))
            }
            RecordKind::Signal => format!(
                "{} {} {} {}",
                text("kind"),
                text("policy"),
                text("limit"),
                if b.get("observed").is_some_and(|o| !o.is_null()) {
                    format!("observed {} of {}", text("observed"), text("limit_value"))
                } else {
                    text("error") + &text("conflict")
                }
            ),
            RecordKind::Alert => format!(
                "{} {} to {}{}",
                text("kind"),
                text("limit"),
                text("channel"),
                if b.get("suppressed") == Some(&serde_json::Value::Bool(true)) {
                    format!(" suppressed ({})", text("why"))
                } else {
                    String::new()
                }
            ),
            RecordKind::Snapshot => text("hash"),
            RecordKind::Incident => format!(
                "{} of {}: {}",
                text("limit"),
                text("policy"),
                text("enforcement")
            ),
            RecordKind::Override => format!("{} {}", text("status"), text("why")),
            RecordKind::RunSummary => format!(
                "{} steps, {} refused, cost {}, final {}",
                b.get("steps").map(ToString::to_string).unwrap_or_default(),
                b.get("refused")
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                text("cost"),
                b.get("final_action")
                    .map(ToString::to_string)
                    .unwrap_or_default()
            ),
            RecordKind::RejectedInput => format!("line {}: {}", s.record.seq, text("reason")),
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {:>4}  seq {:<5} {:<14} {}\n",
            s.n,
            s.record.seq,
            s.record.kind.name(),
            what.trim_end()
        ));
    }
    out
}
