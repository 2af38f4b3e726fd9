//! The group commit: one atomic `INSERT` per batch, after reading which records may be
//! stored and the heads of the chains the batch extends that this connection does not
//! remember, on statements prepared once per connection.

use super::super::budgets::Folded;
use super::super::chain::{self, ChainId, Head};
use super::super::{Record, Sealed, StoreError};
use super::{ATTEMPTS, PgStore, array32, error_text, redact, store_key, to_i64};
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
    insert: postgres::Statement,
    /// The insert with budget counters: records and counters in one statement, fenced
    /// when a counter is not what the batch was judged on.
    insert_counted: postgres::Statement,
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
            insert: self.client.prepare(&format!(
                "INSERT INTO {s}.records (chain, n, key, prev, hash, kind, run_id, seq, record)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bytea[],
                     $5::bytea[], $6::text[], $7::text[], $8::bigint[], $9::bytea[])"
            ))?,
            insert_counted: self.client.prepare(&format!(
                "WITH r AS (
                     INSERT INTO {s}.records (chain, n, key, prev, hash, kind, run_id, seq, record)
                     SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::bytea[],
                         $5::bytea[], $6::text[], $7::text[], $8::bigint[], $9::bytea[])
                 ), c AS (
                     INSERT INTO {s}.budgets AS b (counter, policy, monitor, per, window_start, value)
                     SELECT * FROM unnest($10::text[], $11::text[], $12::text[], $13::text[],
                         $14::text[], $15::bigint[])
                     ON CONFLICT (counter) DO UPDATE SET value = b.value + excluded.value
                     WHERE $17::bool OR b.value = (SELECT x.before FROM unnest($10::text[], $16::bigint[])
                         AS x(counter, before) WHERE x.counter = b.counter)
                     RETURNING 1
                 )
                 SELECT {s}.budget_fence((SELECT count(*) FROM c), $18::bigint)"
            ))?,
        };
        self.prepared = Some(p.clone());
        Ok(p)
    }

    /// One group commit, written by one INSERT; returns how many records were new.
    ///
    /// A run's records are placed by seq, and a chain's seqs only grow, so a record of a
    /// run can already be stored only at or before the seq of the run's last stored
    /// record: only those, and records that stand for themselves, are looked up.
    fn try_append(&mut self, records: &[Sealed], exclusive: bool) -> Result<usize, Failure> {
        let prepared = self.prepared()?;
        // No transaction: the primary key `(chain, n)` is what keeps chains whole. A writer
        // that extended a chain since its head was read makes the INSERT (one atomic
        // statement) fail, and the batch is read and linked again. Not a COPY: the driver
        // reports a COPY done before the commit that ends it, so a commit that failed or
        // never happened would look durable.
        let chains: HashSet<ChainId> = records.iter().map(|r| r.record().chain()).collect();
        let known = self.known.lookup(chains);
        let db = &mut self.client;
        let (mut heads, mut last_seqs) = (known.heads, known.last_seqs);
        if !known.unknown.is_empty() {
            let (read, seqs) = read_heads(db, &prepared.heads, &known.unknown)?;
            heads.extend(read);
            last_seqs.extend(seqs);
        }
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
        let existing = stored_contents(db, &prepared, &probe)?;
        let fresh = fresh(records, &keys, &existing).map_err(Failure::Store)?;
        if fresh.is_empty() {
            return Ok(0);
        }
        let linked = chain::link(&mut heads, fresh).map_err(Failure::Store)?;
        let updates =
            crate::evidence::budgets::counter_updates(linked.iter().map(chain::Linked::record));
        if updates.is_empty() {
            insert_records(db, &prepared.insert, &linked, None)?;
        } else {
            let folded = if exclusive {
                crate::evidence::budgets::fold(&updates).map_err(Failure::Store)?
            } else {
                crate::evidence::budgets::sum(&updates)
            };
            insert_records(
                db,
                &prepared.insert_counted,
                &linked,
                Some((&folded, exclusive)),
            )?;
        }
        for l in &linked {
            if let Some(k) = l.record().key() {
                last_seqs.insert(ChainId::Run(k.run_id), k.seq);
            }
        }
        let written = linked.len();
        self.known.learn(&heads, &last_seqs);
        Ok(written)
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
                // A budget counter moved since the batch was judged (another server added
                // to it): nothing was written, and the batch is judged again.
                Err(Failure::Db(e)) if budget_moved(&e) => {
                    return Err(StoreError::BudgetMoved(error_text(&e)));
                }
                Err(Failure::Db(e)) if unique_violation(&e) => {
                    self.known.forget(
                        &records
                            .iter()
                            .map(|r| r.record().chain())
                            .collect::<Vec<_>>(),
                    );
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

/// Whether an error is the budget fence (SQLSTATE LV001, from `budget_fence`).
fn budget_moved(e: &postgres::Error) -> bool {
    e.as_db_error().is_some_and(|d| d.code().code() == "LV001")
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

/// Writes linked records with one `INSERT` of arrays: one statement (atomic without a
/// transaction around it) and one round trip, whose answer comes after its commit. With
/// budget counters, the same statement adds to them; for a writer that judged the batch
/// (`exclusive`), a counter that is not what the batch was judged on fails it whole.
fn insert_records(
    client: &mut impl postgres::GenericClient,
    insert: &postgres::Statement,
    linked: &[chain::Linked<'_>],
    counters: Option<(&[Folded], bool)>,
) -> Result<(), postgres::Error> {
    let records: Vec<&Record> = linked.iter().map(chain::Linked::record).collect();
    let chains: Vec<String> = records.iter().map(|r| r.chain().key()).collect();
    let ns: Vec<i64> = linked.iter().map(|l| to_i64(l.n)).collect();
    // Only a record of no run (or a rejected line) is found by its key: a run's record is
    // found by its chain and place.
    let keys: Vec<Option<[u8; 32]>> = linked
        .iter()
        .map(|l| l.record().key().is_none().then(|| store_key(l.sealed)))
        .collect();
    let keys: Vec<Option<&[u8]>> = keys
        .iter()
        .map(|k| k.as_ref().map(|k| k.as_slice()))
        .collect();
    let prevs: Vec<&[u8]> = linked.iter().map(|l| l.prev.as_slice()).collect();
    let hashes: Vec<&[u8]> = linked.iter().map(|l| l.hash.as_slice()).collect();
    let kinds: Vec<&str> = records.iter().map(|r| r.kind.name()).collect();
    let runs: Vec<Option<&str>> = records.iter().map(|r| r.run_id.as_deref()).collect();
    let seqs: Vec<i64> = records.iter().map(|r| to_i64(r.seq)).collect();
    let bytes: Vec<&[u8]> = linked.iter().map(|l| l.sealed.canonical()).collect();
    let Some((folded, exclusive)) = counters else {
        client.execute(
            insert,
            &[
                &chains, &ns, &keys, &prevs, &hashes, &kinds, &runs, &seqs, &bytes,
            ],
        )?;
        return Ok(());
    };
    let ids: Vec<&str> = folded.iter().map(|f| f.first.id.as_str()).collect();
    let policies: Vec<&str> = folded.iter().map(|f| f.first.policy.as_str()).collect();
    let monitors: Vec<&str> = folded.iter().map(|f| f.first.monitor.as_str()).collect();
    let pers: Vec<&str> = folded.iter().map(|f| f.first.per.as_str()).collect();
    let windows: Vec<Option<&str>> = folded
        .iter()
        .map(|f| f.first.window_start.as_deref())
        .collect();
    let added: Vec<i64> = folded.iter().map(|f| f.added).collect();
    let before: Vec<i64> = folded.iter().map(|f| f.before).collect();
    let expected = i64::try_from(folded.len()).unwrap_or(i64::MAX);
    let unchecked = !exclusive;
    client.query_one(
        insert,
        &[
            &chains, &ns, &keys, &prevs, &hashes, &kinds, &runs, &seqs, &bytes, &ids, &policies,
            &monitors, &pers, &windows, &added, &before, &unchecked, &expected,
        ],
    )?;
    Ok(())
}

/// The seq of each run chain's last record that has a place.
type LastSeqs = HashMap<ChainId, u64>;

/// The heads of the chains `records` extend, and the seq of
/// each chain's last record that has a place (not a rejected line).
fn read_heads(
    tx: &mut impl postgres::GenericClient,
    statement: &postgres::Statement,
    chains: &[ChainId],
) -> Result<(HashMap<ChainId, Head>, LastSeqs), postgres::Error> {
    let chains: Vec<String> = chains.iter().map(ChainId::key).collect();
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
