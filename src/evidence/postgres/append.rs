//! The group commit: one transaction per batch that checks which records are stored,
//! reads the heads of the chains the batch extends, links the new records and writes them
//! with one binary COPY, on statements prepared once per connection.

use super::super::chain::{self, ChainId, Head};
use super::super::{Record, Sealed, StoreError};
use super::{ATTEMPTS, PgStore, array32, error_text, redact, store_key, to_i64};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// The statements of a group commit.
#[derive(Clone)]
pub(super) struct Prepared {
    /// Records that stand for themselves, by their id (a partial unique index).
    self_keys: postgres::Statement,
    /// A run's records from a seq on, by their chain (the primary key).
    run_places: postgres::Statement,
    heads: postgres::Statement,
    copy: postgres::Statement,
}

impl PgStore {
    /// The group commit's statements on this connection.
    pub(super) fn prepared(&mut self) -> Result<Prepared, postgres::Error> {
        if let Some(p) = &self.prepared {
            return Ok(p.clone());
        }
        let s = &self.schema;
        let p = Prepared {
            self_keys: self.client.prepare(&format!(
                "SELECT key, record FROM {s}.records
                 WHERE key = ANY($1) AND (run_id IS NULL OR kind = 'rejected_input')"
            ))?,
            run_places: self.client.prepare(&format!(
                "SELECT r.record FROM unnest($1::text[], $2::bigint[]) AS c(chain, seq)
                 JOIN {s}.records r ON r.chain = c.chain AND r.seq >= c.seq
                 WHERE r.kind <> 'rejected_input'"
            ))?,
            heads: self.client.prepare(&format!(
                "SELECT c.chain, h.n, h.hash, h.kind,
                        (SELECT k.seq FROM {s}.records k WHERE k.chain = c.chain
                            AND k.kind <> 'rejected_input' ORDER BY k.n DESC LIMIT 1)
                 FROM unnest($1::text[]) AS c(chain)
                 CROSS JOIN LATERAL (SELECT n, hash, kind FROM {s}.records r
                     WHERE r.chain = c.chain ORDER BY n DESC LIMIT 1) h"
            ))?,
            copy: self.client.prepare(&format!(
                "COPY {s}.records (chain, n, key, prev, hash, kind, run_id, seq, record) FROM STDIN BINARY"
            ))?,
        };
        self.prepared = Some(p.clone());
        Ok(p)
    }

    /// One group commit, written by one COPY; returns how many records were new.
    ///
    /// A run's records are placed by seq, and a chain's seqs only grow, so a record of a
    /// run can already be stored only at or before the seq of the run's last stored
    /// record: only those, and records that stand for themselves, are looked up.
    fn try_append(&mut self, records: &[Sealed], exclusive: bool) -> Result<usize, Failure> {
        let prepared = self.prepared()?;
        // No transaction: the primary key `(chain, n)` is what keeps chains whole. A writer
        // that extended a chain since its head was read makes this COPY (one atomic
        // statement) fail, and the batch is read and linked again. Two round trips fewer
        // than BEGIN ... COMMIT around the same work.
        let tx = &mut self.client;
        let (mut heads, last_seqs) =
            heads(tx, &prepared.heads, records.iter().map(|r| r.record()))?;
        let maybe_stored = |r: &Sealed| match r.record().key() {
            None => true,
            Some(k) => last_seqs
                .get(&ChainId::Run(k.run_id))
                .is_some_and(|last| k.seq <= *last),
        };
        // A writer that judged these records itself meets a run its cache was behind on.
        if exclusive
            && let Some(k) = records
                .iter()
                .filter(|r| maybe_stored(r))
                .find_map(|r| r.record().key())
        {
            return Err(Failure::Store(StoreError::Fenced(format!(
                "run `{}` seq {} is stored",
                k.run_id, k.seq
            ))));
        }
        let keys: Vec<[u8; 32]> = records.iter().map(store_key).collect();
        let probe: Vec<&Sealed> = records.iter().filter(|r| maybe_stored(r)).collect();
        let existing = stored_contents(tx, &prepared, &probe)?;
        let fresh = fresh(records, &keys, &existing).map_err(Failure::Store)?;
        if fresh.is_empty() {
            return Ok(0);
        }
        let linked = chain::link(&mut heads, fresh).map_err(Failure::Store)?;
        copy_records(tx, &prepared.copy, &linked)?;
        Ok(linked.len())
    }
}

/// What the store holds at the keys of `records` (key → content hash, blake3 of the stored
/// canonical bytes): records that stand for themselves by their id, a run's records by
/// their chain from the earliest seq asked.
pub(super) fn stored_contents(
    client: &mut impl postgres::GenericClient,
    prepared: &Prepared,
    records: &[&Sealed],
) -> Result<HashMap<Vec<u8>, Vec<u8>>, postgres::Error> {
    let mut own: Vec<[u8; 32]> = Vec::new();
    let mut from: HashMap<String, i64> = HashMap::new();
    for r in records {
        match r.record().key() {
            None => own.push(r.id()),
            Some(k) => {
                let seq = to_i64(k.seq);
                let at = from.entry(r.record().chain().key()).or_insert(seq);
                *at = (*at).min(seq);
            }
        }
    }
    let mut stored = HashMap::new();
    if !own.is_empty() {
        let refs: Vec<&[u8]> = own.iter().map(|k| k.as_slice()).collect();
        for row in client.query(&prepared.self_keys, &[&refs])? {
            let record: &[u8] = row.get(1);
            stored.insert(row.get(0), blake3::hash(record).as_bytes().to_vec());
        }
    }
    if !from.is_empty() {
        let (chains, seqs): (Vec<String>, Vec<i64>) = from.into_iter().unzip();
        // A run's record is found by its place, read from its canonical bytes.
        for row in client.query(&prepared.run_places, &[&chains, &seqs])? {
            let bytes: &[u8] = row.get(0);
            let place = serde_json::from_slice(bytes)
                .ok()
                .and_then(|v| chain::record_of(&v))
                .and_then(|r| r.key())
                .map(|k| super::place_id(&k));
            if let Some(place) = place {
                stored.insert(place.to_vec(), blake3::hash(bytes).as_bytes().to_vec());
            }
        }
    }
    Ok(stored)
}

/// The records of a batch not stored yet; `Contradicts` when one would take a place that
/// holds, or that an earlier record of the batch gives, other content.
fn fresh<'r>(
    records: &'r [Sealed],
    keys: &[[u8; 32]],
    existing: &HashMap<Vec<u8>, Vec<u8>>,
) -> Result<Vec<&'r Sealed>, StoreError> {
    let mut seen: HashMap<[u8; 32], &Sealed> = HashMap::new();
    let mut fresh: Vec<&Sealed> = Vec::new();
    for (r, key) in records.iter().zip(keys) {
        let taken = existing
            .get(key.as_slice())
            .map(|content| content.as_slice() == r.content().as_slice())
            .or_else(|| {
                seen.get(key)
                    .map(|earlier| earlier.content() == r.content())
            });
        match taken {
            Some(false) => {
                return Err(StoreError::Contradicts(
                    r.record()
                        .key()
                        .map(|k| format!("run `{}` seq {} ({})", k.run_id, k.seq, k.kind.name()))
                        .unwrap_or_default(),
                ));
            }
            Some(true) => {}
            None => {
                seen.insert(*key, r);
                fresh.push(r);
            }
        }
    }
    Ok(fresh)
}

impl PgStore {
    pub(super) fn append_checked(
        &mut self,
        records: &[Sealed],
        exclusive: bool,
    ) -> Result<usize, StoreError> {
        if self.failed {
            return Err(StoreError::Stopped(redact(&self.url)));
        }
        let mut last_error = String::new();
        let mut fenced_retries = ATTEMPTS;
        let mut exclusive = exclusive;
        let mut attempt = 0;
        while attempt < ATTEMPTS {
            match self.try_append(records, exclusive) {
                Ok(n) => return Ok(n),
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Db(e)) if self.client.is_closed() || connection_lost(&e) => {
                    last_error = error_text(&e);
                    attempt += 1;
                    // The commit may have landed with its acknowledgement lost: the retry
                    // takes records already stored as its own.
                    exclusive = false;
                    std::thread::sleep(Duration::from_millis(50 << attempt.min(6)));
                    let _ = self.reconnect();
                }
                // Another writer took a position of a chain this batch extends (the primary
                // key `(chain, n)` fences it): nothing of the batch was written. Read
                // again, the batch is fenced if a run moved on, or linked after the other
                // writer's records if only the store chain did.
                Err(Failure::Db(e)) if unique_violation(&e) => {
                    if fenced_retries == 0 {
                        return Err(StoreError::Fenced(error_text(&e)));
                    }
                    fenced_retries -= 1;
                }
                Err(Failure::Db(e)) => {
                    self.failed = true;
                    return Err(self.db(error_text(&e)));
                }
            }
        }
        self.failed = true;
        Err(self.db(format!(
            "the connection was lost and {ATTEMPTS} attempts to write the batch failed: {last_error}"
        )))
    }
}

/// Whether an error means the connection is gone (SQLSTATE class 08, connection
/// exception, or 57, operator intervention such as `pg_terminate_backend`), so that the
/// batch may be retried on a new one.
pub(super) fn connection_lost(e: &postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57")
        }
        None => {
            e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>())
        }
    }
}

/// Whether an error is a unique violation (SQLSTATE 23505): a place or a chain position
/// another writer took first.
fn unique_violation(e: &postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| d.code().code() == "23505")
}

/// A driver error with the server's message and SQLSTATE, not just "db error".
enum Failure {
    Db(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Failure {
        Failure::Db(e)
    }
}

/// Writes linked records with one binary `COPY`.
fn copy_records(
    tx: &mut impl postgres::GenericClient,
    copy: &postgres::Statement,
    linked: &[chain::Linked<'_>],
) -> Result<(), postgres::Error> {
    let sink = tx.copy_in(copy)?;
    let types = [
        Type::TEXT,
        Type::INT8,
        Type::BYTEA,
        Type::BYTEA,
        Type::BYTEA,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::BYTEA,
    ];
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    for l in linked {
        let r = l.record();
        // Only a record of no run (or a rejected line) is found by its key: a run's record
        // is found by its chain and place.
        let key = r.key().is_none().then(|| store_key(l.sealed));
        writer.write(&[
            &r.chain().key(),
            &to_i64(l.n),
            &key.as_ref().map(|k| k.as_slice()),
            &l.prev.as_slice(),
            &l.hash.as_slice(),
            &r.kind.name(),
            &r.run_id.as_deref(),
            &to_i64(r.seq),
            &l.sealed.canonical(),
        ])?;
    }
    writer.finish()?;
    Ok(())
}

/// The seq of each run chain's last record that has a place.
type LastSeqs = HashMap<ChainId, u64>;

/// The heads of the chains `records` extend, and the seq of
/// each chain's last record that has a place (not a rejected line).
fn heads<'a>(
    tx: &mut impl postgres::GenericClient,
    statement: &postgres::Statement,
    records: impl Iterator<Item = &'a Record>,
) -> Result<(HashMap<ChainId, Head>, LastSeqs), postgres::Error> {
    let chains: Vec<String> = records
        .map(|r| r.chain().key())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let rows = tx.query(statement, &[&chains])?;
    let mut heads = HashMap::new();
    let mut last_seqs = HashMap::new();
    for row in rows {
        let key: String = row.get(0);
        let n: i64 = row.get(1);
        let hash: Vec<u8> = row.get(2);
        let kind: String = row.get(3);
        let last_seq: Option<i64> = row.get(4);
        if let Some(chain) = ChainId::from_key(&key) {
            if let Some(seq) = last_seq {
                last_seqs.insert(chain.clone(), u64::try_from(seq).unwrap_or(0));
            }
            heads.insert(
                chain,
                Head {
                    len: u64::try_from(n).unwrap_or(0) + 1,
                    hash: array32(&hash).unwrap_or([0; 32]),
                    closed: kind == "run_summary",
                },
            );
        }
    }
    Ok((heads, last_seqs))
}
