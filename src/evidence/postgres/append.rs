//! The group commit: one transaction per batch that checks which records are stored,
//! reads the heads of the chains the batch extends, links the new records and writes them
//! with one binary COPY, on statements prepared once per connection.

use super::super::chain::{self, ChainId, Head};
use super::super::{Record, Sealed, StoreError};
use super::{ATTEMPTS, PgStore, array32, error_text, redact, store_key, to_i64};
use postgres::Transaction;
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// The statements of a group commit.
#[derive(Clone)]
pub(super) struct Prepared {
    existing: postgres::Statement,
    heads: postgres::Statement,
    copy: postgres::Statement,
}

impl PgStore {
    /// The group commit's statements on this connection.
    fn prepared(&mut self) -> Result<Prepared, postgres::Error> {
        if let Some(p) = &self.prepared {
            return Ok(p.clone());
        }
        // Planned for each call's arguments: a generic plan for a growing table can be slow.
        self.client
            .batch_execute("SET plan_cache_mode = force_custom_plan")?;
        let s = &self.schema;
        let p = Prepared {
            existing: self
                .client
                .prepare(&format!("SELECT key, content FROM {s}.records WHERE key = ANY($1)"))?,
            heads: self.client.prepare(&format!(
                "SELECT c.chain, h.n, h.hash, h.kind FROM unnest($1::text[]) AS c(chain)
                 CROSS JOIN LATERAL (SELECT n, hash, kind FROM {s}.records r
                     WHERE r.chain = c.chain ORDER BY n DESC LIMIT 1) h"
            ))?,
            copy: self.client.prepare(&format!(
                "COPY {s}.records (chain, n, key, id, prev, hash, content, kind, run_id, seq, record) FROM STDIN BINARY"
            ))?,
        };
        self.prepared = Some(p.clone());
        Ok(p)
    }

    /// One group commit in one transaction; returns how many records were new.
    fn try_append(&mut self, records: &[Sealed], exclusive: bool) -> Result<usize, Failure> {
        let prepared = self.prepared()?;
        let mut tx = self.client.transaction()?;
        let keys: Vec<[u8; 32]> = records.iter().map(store_key).collect();
        let key_refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let existing: HashMap<Vec<u8>, Vec<u8>> = tx
            .query(&prepared.existing, &[&key_refs])?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut seen: HashMap<[u8; 32], &Sealed> = HashMap::new();
        let mut fresh: Vec<&Sealed> = Vec::new();
        for (r, key) in records.iter().zip(&keys) {
            // A place stored, or taken earlier in this batch, must hold this very content.
            let taken = existing
                .get(key.as_slice())
                .map(|content| content.as_slice() == r.content().as_slice())
                .or_else(|| {
                    seen.get(key)
                        .map(|earlier| earlier.content() == r.content())
                });
            match taken {
                Some(_) if exclusive && existing.contains_key(key.as_slice()) => {
                    return Err(Failure::Store(StoreError::Fenced(
                        r.record()
                            .key()
                            .map(|k| format!("run `{}` seq {} is stored", k.run_id, k.seq))
                            .unwrap_or_default(),
                    )));
                }
                Some(false) => {
                    return Err(Failure::Store(StoreError::Contradicts(
                        r.record()
                            .key()
                            .map(|k| {
                                format!("run `{}` seq {} ({})", k.run_id, k.seq, k.kind.name())
                            })
                            .unwrap_or_default(),
                    )));
                }
                Some(true) => {}
                None => {
                    seen.insert(*key, r);
                    fresh.push(r);
                }
            }
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        let mut heads = heads(&mut tx, &prepared.heads, fresh.iter().map(|r| r.record()))?;
        let linked = chain::link(&mut heads, fresh).map_err(Failure::Store)?;
        copy_records(&mut tx, &prepared.copy, &linked)?;
        tx.commit()?;
        Ok(linked.len())
    }
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
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(50 << attempt.min(6)));
                if self.reconnect().is_err() {
                    continue;
                }
            }
            // A retry after a lost connection may find its own batch committed (the
            // acknowledgement was lost), so it takes records already stored as its own.
            match self.try_append(records, exclusive && attempt == 0) {
                Ok(n) => return Ok(n),
                Err(Failure::Store(e)) => return Err(e),
                Err(Failure::Db(e)) if self.client.is_closed() || connection_lost(&e) => {
                    last_error = error_text(&e);
                }
                // Another writer took a position of a chain this batch extends (the primary
                // key `(chain, n)` fences it): nothing of the batch was written.
                Err(Failure::Db(e)) if unique_violation(&e) => {
                    return Err(StoreError::Fenced(error_text(&e)));
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
    tx: &mut Transaction<'_>,
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
        let key = store_key(l.sealed);
        writer.write(&[
            &r.chain().key(),
            &to_i64(l.n),
            &key.as_slice(),
            &l.sealed.id().as_slice(),
            &l.prev.as_slice(),
            &l.hash.as_slice(),
            &l.sealed.content().as_slice(),
            &r.kind.name(),
            &r.run_id.as_deref(),
            &to_i64(r.seq),
            &l.sealed.canonical(),
        ])?;
    }
    writer.finish()?;
    Ok(())
}

/// The heads of the chains `records` extend, read inside the transaction.
fn heads<'a>(
    tx: &mut Transaction<'_>,
    statement: &postgres::Statement,
    records: impl Iterator<Item = &'a Record>,
) -> Result<HashMap<ChainId, Head>, postgres::Error> {
    let chains: Vec<String> = records
        .map(|r| r.chain().key())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let rows = tx.query(statement, &[&chains])?;
    let mut heads = HashMap::new();
    for row in rows {
        let key: String = row.get(0);
        let n: i64 = row.get(1);
        let hash: Vec<u8> = row.get(2);
        let kind: String = row.get(3);
        if let Some(chain) = ChainId::from_key(&key) {
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
    Ok(heads)
}
