//! The evidence log: every record of the store as a leaf of one Merkle tree, in the
//! order checkpoints integrated them, so that each checkpoint's tree extends the one
//! before, whichever store holds the records and however many servers wrote them.
//!
//! A checkpoint integrates, chain by chain in key order, each chain's records beyond what
//! the checkpoints before it integrated, in chain order, and records how long each chain
//! it extended now is (`integrated`). Chains only grow at their end, so a later
//! checkpoint only appends. A leaf's entry is the record's canonical bytes: a proof shows
//! the record itself, with its run, seq, kind and body.

use super::merkle::{self, Hash};
use super::note::Checkpoint;
use super::{ChainId, EvidenceStore, Record, RecordKind, Sealed, StoreError};
use std::collections::BTreeMap;

/// The log as the store holds it now.
pub struct Log {
    /// Leaf hashes in log order: first what the stored checkpoints integrated, then what
    /// the next checkpoint would.
    pub leaves: Vec<Hash>,
    /// Each record's place: by chain key, the leaf index of its records in chain order.
    places: BTreeMap<String, Vec<usize>>,
    /// The stored checkpoints: the tree size each one signed, in order, and its note.
    pub checkpoints: Vec<(u64, String)>,
    /// What the next checkpoint integrates: the chains that grew since the last, and
    /// their lengths now.
    pending: BTreeMap<String, u64>,
    /// A stored checkpoint whose signed size the log does not reproduce (two prepared at
    /// once, or a store edited under it): what to say instead of proving anything.
    pub forked: Option<String>,
}

impl Log {
    /// Reads every record once and lays the log out.
    pub fn read(store: &mut dyn EvidenceStore) -> Result<Log, StoreError> {
        let mut chains: BTreeMap<String, Vec<Hash>> = BTreeMap::new();
        let mut marks: Vec<(BTreeMap<String, u64>, String, u64)> = Vec::new();
        store.visit_all(
            &mut |s| {
                if s.record.kind == RecordKind::Checkpoint {
                    let size = s
                        .record
                        .body
                        .get("size")
                        .and_then(serde_json::Value::as_u64);
                    marks.push((
                        integrated(&s.record.body),
                        note_of(&s.record),
                        size.unwrap_or(0),
                    ));
                }
                let key = chain_key(&s.record.run_id);
                let leaf = merkle::leaf_hash(Sealed::new(s.record).canonical());
                chains.entry(key).or_default().push(leaf);
                std::ops::ControlFlow::Continue(())
            },
            &mut |_, _| {},
        )?;
        let mut log = Log {
            leaves: Vec::new(),
            places: BTreeMap::new(),
            checkpoints: Vec::new(),
            pending: BTreeMap::new(),
            forked: None,
        };
        let mut done: BTreeMap<String, u64> = BTreeMap::new();
        for (step, note, signed) in marks {
            log.integrate(&chains, &mut done, &step);
            let size = log.leaves.len() as u64;
            if size != signed && log.forked.is_none() {
                log.forked = Some(format!(
                    "the store's checkpoint {} signed {signed} records where the log holds {size} at it: its tree cannot be shown",
                    log.checkpoints.len() + 1
                ));
            }
            log.checkpoints.push((size, note));
        }
        log.pending = chains
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .filter(|(k, len)| done.get(k).is_none_or(|d| len > d))
            .collect();
        let pending = log.pending.clone();
        log.integrate(&chains, &mut done, &pending);
        Ok(log)
    }

    /// Appends, chain by chain in key order, each chain's records from what `done` says
    /// up to what `to` says.
    fn integrate(
        &mut self,
        chains: &BTreeMap<String, Vec<Hash>>,
        done: &mut BTreeMap<String, u64>,
        to: &BTreeMap<String, u64>,
    ) {
        for (key, &len) in to {
            let from = done.get(key).copied().unwrap_or(0);
            let Some(leaves) = chains.get(key) else {
                continue;
            };
            let places = self.places.entry(key.clone()).or_default();
            for n in from..len.min(leaves.len() as u64) {
                // A chain's places stay in chain order: index n is its n-th record.
                if let (Some(leaf), true) = (leaves.get(n as usize), places.len() as u64 == n) {
                    places.push(self.leaves.len());
                    self.leaves.push(*leaf);
                }
            }
            done.insert(key.clone(), len.max(from));
        }
    }

    /// The leaf index of a record, by its chain and place in it.
    pub fn index_of(&self, chain: &ChainId, n: u64) -> Option<usize> {
        self.places
            .get(&chain.key())?
            .get(usize::try_from(n).ok()?)
            .copied()
    }
}

/// The key of the chain a record of `run_id` is in.
fn chain_key(run_id: &Option<String>) -> String {
    match run_id {
        Some(id) => ChainId::Run(id.clone()).key(),
        None => ChainId::Store.key(),
    }
}

fn integrated(body: &serde_json::Value) -> BTreeMap<String, u64> {
    body.get("integrated")
        .and_then(|m| m.as_object())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
                .collect()
        })
        .unwrap_or_default()
}

fn note_of(r: &Record) -> String {
    r.body
        .get("note")
        .and_then(|n| n.as_str())
        .unwrap_or_default()
        .to_string()
}

/// Takes a checkpoint: integrates every record not yet integrated, signs the tree head
/// (when `key` is given) and records it in the store chain. Returns the note.
pub fn checkpoint(
    store: &mut dyn EvidenceStore,
    origin: &str,
    key: Option<&crate::base::trust::SecretKey>,
) -> Result<(Checkpoint, String), StoreError> {
    if !store.try_lock_checkpoints()? {
        return Err(StoreError::Fenced(
            "another checkpoint of this store is being taken: retry when it is recorded".into(),
        ));
    }
    let taken = prepare(store, origin, key).and_then(|(head, note, record)| {
        store.append(&[Sealed::new(record)]).map(|_| (head, note))
    });
    store.unlock_checkpoints()?;
    taken
}

/// A checkpoint of what `store` holds now, and its record, not yet stored: a server
/// reads through one handle and appends through its writer. Records stored in between
/// are left to the next checkpoint.
pub fn prepare(
    store: &mut dyn EvidenceStore,
    origin: &str,
    key: Option<&crate::base::trust::SecretKey>,
) -> Result<(Checkpoint, String, Record), StoreError> {
    let log = Log::read(store)?;
    let head = Checkpoint {
        origin: origin.to_string(),
        size: log.leaves.len() as u64,
        root: merkle::root(&log.leaves),
    };
    let note = head.note(key);
    let integrated: serde_json::Map<String, serde_json::Value> = log
        .pending
        .into_iter()
        .map(|(k, n)| (k, n.into()))
        .collect();
    let record = Record {
        kind: RecordKind::Checkpoint,
        artifact: String::new(),
        run_id: None,
        seq: 0,
        index: 0,
        body: serde_json::json!({
            "origin": origin,
            "size": head.size,
            "root": crate::base::hash::hex(&head.root),
            "integrated": integrated,
            "note": note,
        }),
    };
    Ok((head, note, record))
}

/// What `lever evidence prove` exports: one record, its inclusion proof, and the signed
/// checkpoint it is proved against. Checked with nothing but the `lever` binary.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Proof {
    pub format: String,
    /// The record's canonical bytes (JSON text).
    pub record: String,
    pub index: u64,
    pub size: u64,
    /// The inclusion proof's hashes, base64.
    pub proof: Vec<String>,
    /// The checkpoint note, with its signatures.
    pub checkpoint: String,
}

const PROOF_FORMAT: &str = "lever-inclusion-proof-v1";

/// The proof that the record of `chain` at place `n` is in the newest stored checkpoint.
pub fn prove(store: &mut dyn EvidenceStore, record: &super::Stored) -> Result<Proof, String> {
    use base64::Engine as _;
    let log = Log::read(store).map_err(|e| e.to_string())?;
    if let Some(why) = &log.forked {
        return Err(why.clone());
    }
    let (size, note) = log
        .checkpoints
        .last()
        .cloned()
        .ok_or("the store holds no checkpoint: take one first (lever evidence checkpoint)")?;
    let chain = record.record.chain();
    let index = log
        .index_of(&chain, record.n)
        .filter(|i| (*i as u64) < size)
        .ok_or("the record was stored after the newest checkpoint: take a checkpoint first")?;
    let leaves = log
        .leaves
        .get(..size as usize)
        .ok_or("the log is shorter than its checkpoint")?;
    let proof = merkle::inclusion_proof(leaves, index);
    Ok(Proof {
        format: PROOF_FORMAT.into(),
        record: String::from_utf8_lossy(Sealed::new(record.record.clone()).canonical())
            .into_owned(),
        index: index as u64,
        size,
        proof: proof
            .iter()
            .map(|h| base64::engine::general_purpose::STANDARD.encode(h))
            .collect(),
        checkpoint: note,
    })
}

/// Checks a proof offline: the checkpoint's signature by a trusted key, then the record's
/// inclusion in its tree. Returns the record and the checkpoint's trusted signers.
pub fn check_proof(
    proof: &Proof,
    trust: &crate::base::trust::Trust,
) -> Result<(serde_json::Value, Checkpoint, Vec<String>), String> {
    use base64::Engine as _;
    if proof.format != PROOF_FORMAT {
        return Err(format!("not a {PROOF_FORMAT} file"));
    }
    let (head, signers) = Checkpoint::verify(&proof.checkpoint, trust)?;
    if head.size != proof.size {
        return Err(format!(
            "the proof is for a tree of {} records, the checkpoint signs {}",
            proof.size, head.size
        ));
    }
    let path: Vec<Hash> = proof
        .proof
        .iter()
        .map(|p| {
            base64::engine::general_purpose::STANDARD
                .decode(p)
                .ok()?
                .try_into()
                .ok()
        })
        .collect::<Option<_>>()
        .ok_or("a proof hash is not base64 SHA-256")?;
    let leaf = merkle::leaf_hash(proof.record.as_bytes());
    if !merkle::verify_inclusion(&leaf, proof.index, proof.size, &path, &head.root) {
        return Err(format!(
            "the record is not record {} of the checkpoint's tree: the record, the proof or the checkpoint was changed",
            proof.index
        ));
    }
    let record =
        serde_json::from_str(&proof.record).map_err(|e| format!("the record is not JSON: {e}"))?;
    Ok((record, head, signers))
}

/// Checks that the store still holds the tree of checkpoint `old` and extends it to the
/// tree of `new`, with a consistency proof between them; returns the proof's size in
/// hashes. A store rewritten between them cannot produce it.
pub fn consistency(
    store: &mut dyn EvidenceStore,
    old: &Checkpoint,
    new: &Checkpoint,
) -> Result<usize, String> {
    let log = Log::read(store).map_err(|e| e.to_string())?;
    let tree = |c: &Checkpoint| -> Result<&[Hash], String> {
        let leaves = log.leaves.get(..c.size as usize).ok_or_else(|| {
            format!(
                "the store holds {} records, fewer than the checkpoint's {}: the store was rewritten since it was signed",
                log.leaves.len(),
                c.size
            )
        })?;
        if merkle::root(leaves) != c.root {
            return Err(format!(
                "the store's first {} records do not hash to the checkpoint's root: the store was rewritten since it was signed",
                c.size
            ));
        }
        Ok(leaves)
    };
    tree(old)?;
    let leaves = tree(new)?;
    let proof = merkle::consistency_proof(leaves, old.size as usize);
    if !merkle::verify_consistency(old.size, new.size, &old.root, &new.root, &proof) {
        return Err(format!(
            "checkpoint of size {} does not extend the one of size {}",
            new.size, old.size
        ));
    }
    Ok(proof.len())
}
