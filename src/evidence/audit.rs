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

use super::chain::{ChainId, Head, Link, Stored, hex, unhex};
use super::{EvidenceStore, Record, RecordKind, StoreError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;

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

fn problem(s: &Link, chain: &ChainId, what: String) -> Problem {
    Problem {
        chain: chain.clone(),
        n: Some(s.n),
        seq: Some(s.seq),
        what,
    }
}

/// Checks records as they stream in: each chain's records in order, chains interleaved.
/// Memory holds the heads of the chains still open; a chain closed by its `run_summary`
/// leaves only a short hash behind (enough to catch a record inserted after it), unless
/// every head is kept (for a digest).
pub(crate) struct ChainCheck {
    open: HashMap<ChainId, Head>,
    closed: HashSet<[u8; 16]>,
    /// Closed chains' heads, when kept.
    kept: Option<BTreeMap<ChainId, Head>>,
    pub chains: usize,
    pub records: usize,
}

fn short_key(chain: &ChainId) -> [u8; 16] {
    let h = blake3::hash(chain.key().as_bytes());
    let mut out = [0u8; 16];
    out.copy_from_slice(h.as_bytes().get(..16).unwrap_or(&[0; 16]));
    out
}

impl ChainCheck {
    /// A checker; `keep_heads` keeps every chain's head for [`ChainCheck::heads`].
    pub(crate) fn new(keep_heads: bool) -> ChainCheck {
        ChainCheck {
            open: HashMap::new(),
            closed: HashSet::new(),
            kept: keep_heads.then(BTreeMap::new),
            chains: 0,
            records: 0,
        }
    }

    /// Checks the next record of its chain.
    pub(crate) fn take(&mut self, s: &Link) -> Result<(), Problem> {
        let chain = s.chain.clone();
        let head = match self.open.get(&chain) {
            Some(h) => *h,
            None if self.closed.contains(&short_key(&chain)) => {
                return Err(problem(
                    s,
                    &chain,
                    "a record follows the run's run_summary, which closed the chain (inserted)"
                        .into(),
                ));
            }
            None => {
                self.chains += 1;
                Head::EMPTY
            }
        };
        check_link(s, &chain, &head)?;
        self.records += 1;
        let next = Head::after_link(s);
        if next.closed {
            self.open.remove(&chain);
            self.closed.insert(short_key(&chain));
            if let Some(kept) = self.kept.as_mut() {
                kept.insert(chain, next);
            }
        } else {
            self.open.insert(chain, next);
        }
        Ok(())
    }

    /// Every chain's head (open and, when kept, closed), in chain order.
    pub(crate) fn heads(self) -> BTreeMap<ChainId, Head> {
        let mut all = self.kept.unwrap_or_default();
        all.extend(self.open);
        all
    }
}

fn check_link(s: &Link, chain: &ChainId, head: &Head) -> Result<(), Problem> {
    if s.n != head.len {
        return Err(problem(
            s,
            chain,
            format!(
                "stored at position {} where position {} was expected: a record was deleted, inserted or reordered",
                s.n, head.len
            ),
        ));
    }
    if s.prev != head.hash {
        return Err(problem(
            s,
            chain,
            "its `prev` is not the hash of the record before it: a record was deleted, inserted or reordered".into(),
        ));
    }
    if s.expected_hash() != s.hash {
        return Err(problem(
            s,
            chain,
            format!(
                "its content does not match its hash (altered): it hashes to {}, the chain says {}",
                hex(&s.expected_hash()),
                hex(&s.hash)
            ),
        ));
    }
    Ok(())
}

/// Checks chains given chain by chain, each in stored order; returns each chain's head.
pub(crate) fn check_chains(records: &[Stored]) -> Result<BTreeMap<ChainId, Head>, Problem> {
    let mut check = ChainCheck::new(true);
    for s in records {
        check.take(&s.link())?;
    }
    Ok(check.heads())
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
pub(crate) fn root(heads: &BTreeMap<ChainId, Head>) -> [u8; 32] {
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

pub(crate) fn digest_text(root: &[u8; 32]) -> String {
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
    verify_with_progress(store, run, digest, &mut |_, _| {})
}

/// [`verify`], streaming the store through in bounded memory; `progress` hears (done,
/// total) as the store is read.
pub(crate) fn verify_with_progress(
    store: &mut dyn EvidenceStore,
    run: Option<&str>,
    digest: Option<&str>,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Result<Verified, Problem>, StoreError> {
    let mut covered = match digest {
        Some(d) => {
            let store_chain = store.read_chain(&ChainId::Store)?;
            let mut c = match Covered::of(&store_chain, d, run) {
                Ok(c) => c,
                Err(p) => return Ok(Err(p)),
            };
            // One run's verification streams that run only: the store chain is checked here.
            if run.is_some()
                && let Some(Err(p)) = store_chain
                    .iter()
                    .map(|s| c.take(&s.link()))
                    .find(Result::is_err)
            {
                return Ok(Err(p));
            }
            Some(c)
        }
        None => None,
    };
    let mut check = ChainCheck::new(false);
    let mut found: Option<Problem> = None;
    let mut take = |s: Link| {
        let result = check
            .take(&s)
            .and_then(|()| covered.as_mut().map_or(Ok(()), |c| c.take(&s)));
        match result {
            Ok(()) => ControlFlow::Continue(()),
            Err(p) => {
                found = Some(p);
                ControlFlow::Break(())
            }
        }
    };
    match run {
        Some(id) => {
            for s in store.read_chain(&ChainId::Run(id.to_string()))? {
                if take(s.link()).is_break() {
                    break;
                }
            }
        }
        None => store.visit_links(&mut take, progress)?,
    }
    if let Some(p) = found {
        return Ok(Err(p));
    }
    if let Some(run) = run
        && check.records == 0
    {
        return Ok(Err(Problem {
            chain: ChainId::Run(run.to_string()),
            n: None,
            seq: None,
            what: "the store holds no record of this run".into(),
        }));
    }
    if let Some(Err(p)) = covered.map(Covered::finish) {
        return Ok(Err(p));
    }
    Ok(Ok(Verified {
        chains: check.chains,
        records: check.records,
    }))
}

/// What a digest covered, checked against records as they stream in: each covered
/// chain's head record must still be stored, unchanged, at the same position.
struct Covered {
    digest: String,
    heads: BTreeMap<ChainId, Head>,
    seen: HashSet<ChainId>,
}

impl Covered {
    /// Finds the digest's checkpoint in the store chain and checks that it hashes to it.
    fn of(store_chain: &[Stored], digest: &str, run: Option<&str>) -> Result<Covered, Problem> {
        let gone = |what: String| Problem {
            chain: ChainId::Store,
            n: None,
            seq: None,
            what,
        };
        let checkpoint = store_chain
            .iter()
            .filter(|s| s.record.kind == RecordKind::Digest)
            .find(|s| s.record.body.get("root").and_then(|r| r.as_str()) == Some(digest))
            .ok_or_else(|| {
                gone(format!(
                    "digest {digest} is not recorded in this store: the checkpoint it was taken with was deleted or altered, and with it what it covered cannot be shown intact"
                ))
            })?;
        let mut heads: BTreeMap<ChainId, Head> = BTreeMap::new();
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
            heads.insert(
                chain,
                Head {
                    len,
                    hash,
                    closed: false,
                },
            );
        }
        if digest_text(&root(&heads)) != digest {
            return Err(gone(format!(
                "the checkpoint of digest {digest} lists chain heads that do not hash to it (altered)"
            )));
        }
        if let Some(run) = run {
            heads.retain(|c, _| *c == ChainId::Store || *c == ChainId::Run(run.to_string()));
        }
        heads.retain(|_, h| h.len > 0);
        Ok(Covered {
            digest: digest.to_string(),
            heads,
            seen: HashSet::new(),
        })
    }

    fn take(&mut self, s: &Link) -> Result<(), Problem> {
        let chain = s.chain.clone();
        let Some(head) = self.heads.get(&chain) else {
            return Ok(());
        };
        if s.n + 1 != head.len {
            return Ok(());
        }
        if s.hash != head.hash {
            return Err(problem(
                s,
                &chain,
                format!(
                    "digest {} covered this record with hash {}, the store now holds {}: the chain was rewritten",
                    self.digest,
                    hex(&head.hash),
                    hex(&s.hash)
                ),
            ));
        }
        self.seen.insert(chain);
        Ok(())
    }

    /// A covered chain whose head record never came is a chain cut short.
    fn finish(self) -> Result<(), Problem> {
        for (chain, head) in &self.heads {
            if self.seen.contains(chain) {
                continue;
            }
            return Err(Problem {
                chain: chain.clone(),
                n: Some(head.len - 1),
                seq: None,
                what: format!(
                    "digest {} covered {} records of this chain; record {} is gone",
                    self.digest,
                    head.len,
                    head.len - 1
                ),
            });
        }
        Ok(())
    }
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
    store.append(&[super::Sealed::new(checkpoint)])?;
    Ok(Ok(r))
}

/// What a record says, in a few words.
fn record_line(record: &super::Record) -> String {
    let b = &record.body;
    let text = |k: &str| b.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    match record.kind {
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
        RecordKind::RejectedInput => format!("line {}: {}", record.seq, text("reason")),
        _ => store_record_line(record),
    }
}

/// A store chain's record in one line: deploys, digests, deliveries, outages.
fn store_record_line(record: &super::Record) -> String {
    let b = &record.body;
    let text = |k: &str| match b.get(k) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    match record.kind {
        RecordKind::Artifact => text("hash"),
        RecordKind::Deploy => format!(
            "{} -> {} by {} at {}{}",
            text("from"),
            text("to"),
            text("actor"),
            text("ts"),
            b.get("signer")
                .map(|_| format!(", signed by {}", text("signer")))
                .unwrap_or_default()
        ),
        RecordKind::DeployRefused => format!(
            "{} by {} at {}: {}",
            text("artifact"),
            text("actor"),
            text("ts"),
            text("why")
        ),
        RecordKind::Digest => format!("root {}", text("root")),
        RecordKind::AlertDelivery => {
            let fate = if b.get("delivered") == Some(&serde_json::Value::Bool(true)) {
                format!("delivered ({})", text("status"))
            } else {
                let why = [text("status"), text("error")].join(" ");
                format!("failed: {}", why.trim())
            };
            let last = if b.get("final") == Some(&serde_json::Value::Bool(true)) {
                ", final"
            } else {
                ""
            };
            format!(
                "{} {} of run {} seq {} to {}, attempt {}: {fate}{last}",
                text("kind"),
                text("limit"),
                text("run_id"),
                text("seq"),
                text("channel"),
                text("attempt")
            )
        }
        RecordKind::Outage => format!("{} at {} {}", text("event"), text("at"), text("error")),
        RecordKind::Recovery => format!(
            "cut {} bytes at {} offset {}",
            text("bytes_cut"),
            text("segment"),
            text("offset")
        ),
        RecordKind::AuthMismatch => format!("claimed {} as {}", text("claimed"), text("actor")),
        _ => String::new(),
    }
}

/// One line per record of a run, for a person.
pub(crate) fn show_text(all: &[Stored], shown: &[Stored]) -> String {
    let mut out = String::new();
    let (Some(first), Some(last)) = (all.first(), all.last()) else {
        return out;
    };
    let closed = match (&first.record.run_id, last.record.kind) {
        (None, _) => "",
        (Some(_), RecordKind::RunSummary) => ", closed by its run_summary",
        (Some(_), _) => ", still open",
    };
    let filtered = if shown.len() == all.len() {
        String::new()
    } else {
        format!(" ({} shown)", shown.len())
    };
    out.push_str(&format!(
        "{}: {} records{filtered}, chain head {}{closed}\n",
        first.record.chain(),
        all.len(),
        hex(&last.hash),
    ));
    let records = shown;
    for s in records {
        let what = record_line(&s.record);
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
