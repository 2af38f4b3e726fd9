//! The PostgreSQL store (`--evidence postgres://...`), through the blocking `postgres` crate.
//!
//! One table of records in a schema of its own (`?schema=NAME` in the URL, default
//! `lever`), created and upgraded by versioned migrations that only `lever evidence
//! migrate` applies ([`migrate`]), as the schema's owner; the store itself connects as a
//! role that may only insert and read. Every evidence
//! table refuses UPDATE, DELETE and TRUNCATE with triggers enabled `ALWAYS`, so they fire
//! under `session_replication_role = replica` too. A group commit is one transaction: it
//! reads which records are already stored and the heads of the chains it extends, links
//! the new records, writes them with one binary COPY and commits. Every record has a
//! unique `key` (its place for run records, its id for the others) and chain positions are
//! the primary key, so a batch retried after a lost connection neither loses nor
//! duplicates a record, and two writers can never fork a chain. Two indexes only: each
//! one more costs about a third of the write throughput.

pub mod migrate;

use super::chain::{self, ChainId, Head, Stored};
use super::{EvidenceStore, Record, RecordKey, RecordKind, Sealed, StoreError};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::{Client, NoTls, Transaction};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Connection attempts for one group commit before the store stops.
const ATTEMPTS: u32 = 5;

/// The migrations, in order; `{s}` is the quoted schema. Never edit one that has shipped:
/// add the next.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "records, append-only triggers, indexes",
        r#"
CREATE TABLE {s}.records (
    chain text NOT NULL,
    n bigint NOT NULL,
    key bytea NOT NULL UNIQUE,
    id bytea NOT NULL,
    prev bytea NOT NULL,
    hash bytea NOT NULL,
    content bytea NOT NULL,
    kind text NOT NULL,
    run_id text,
    seq bigint NOT NULL,
    record bytea NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chain, n)
);
CREATE INDEX records_alert_outbox ON {s}.records (stored_at, chain, n) WHERE kind = 'alert';
CREATE TRIGGER records_append_only BEFORE UPDATE OR DELETE ON {s}.records
    FOR EACH ROW EXECUTE FUNCTION {s}.refuse_change();
CREATE TRIGGER records_no_truncate BEFORE TRUNCATE ON {s}.records
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.refuse_change();
ALTER TABLE {s}.records ENABLE ALWAYS TRIGGER records_append_only;
ALTER TABLE {s}.records ENABLE ALWAYS TRIGGER records_no_truncate;
"#,
    ),
    (
        2,
        "index of alert delivery attempts",
        r#"
CREATE INDEX records_alert_attempts ON {s}.records (stored_at, chain, n)
    WHERE kind = 'alert_delivery';
"#,
    ),
    (
        3,
        "indexes of run starts, run summaries and artifacts (runs rebuilt from their chains)",
        r#"
CREATE INDEX records_run_starts ON {s}.records (chain) WHERE n = 0 AND run_id IS NOT NULL;
CREATE INDEX records_run_summaries ON {s}.records (chain) WHERE kind = 'run_summary';
CREATE INDEX records_artifacts ON {s}.records (n) WHERE kind = 'artifact' AND chain = '';
"#,
    ),
];

pub struct PgStore {
    url: String,
    /// The connection string given to the driver (the URL without `schema`).
    conn: String,
    /// The schema, quoted.
    schema: String,
    client: Client,
    failed: bool,
    /// The group commit's statements, prepared once per connection: each saves a parse
    /// and a round trip on every commit.
    prepared: Option<Prepared>,
}

/// The statements of a group commit.
#[derive(Clone)]
struct Prepared {
    existing: postgres::Statement,
    heads: postgres::Statement,
    copy: postgres::Statement,
}

/// The URL with any password (`user:PASSWORD@` or `?password=`) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            _ => base.to_string(),
        },
        None => base.to_string(),
    };
    let Some(query) = query else {
        return base;
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

/// Splits `?schema=NAME` off a URL; the name must be a plain identifier.
fn split_schema(url: &str) -> Result<(String, String), StoreError> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut schema = "lever".to_string();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.strip_prefix("schema=") {
            Some(name) => schema = name.to_string(),
            None => rest.push(pair),
        }
    }
    let plain = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if !plain {
        return Err(StoreError::database(
            url,
            format!("schema {schema:?} must be a lowercase identifier (a-z, 0-9, _)"),
        ));
    }
    let conn = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((conn, format!("\"{schema}\"")))
}

/// The place of a record, as stored: blake3 over run, seq, kind and index.
fn place_id(key: &RecordKey) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(b"lever/record-place/v1\0");
    h.update(key.run_id.as_bytes());
    h.update(b"\0");
    h.update(&key.seq.to_le_bytes());
    h.update(key.kind.name().as_bytes());
    h.update(b"\0");
    h.update(&key.index.to_le_bytes());
    *h.finalize().as_bytes()
}

/// A record's unique key in the table: its place for run records (what a replay must agree
/// on), its id for the others (which covers their content).
fn store_key(r: &Sealed) -> [u8; 32] {
    r.record().key().map_or(r.id(), |k| place_id(&k))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn array32(bytes: &[u8]) -> Option<[u8; 32]> {
    bytes.try_into().ok()
}

impl PgStore {
    /// Connects to a migrated store, to write it; creates and alters nothing (see
    /// [`migrate::migrate`]), and warns when the role could rewrite evidence.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let mut store = PgStore::connect(url)?;
        store.check_schema(true)?;
        Ok(store)
    }

    /// Connects to a migrated store to read it (an audit): creates and alters nothing.
    pub(crate) fn open_read_only(url: &str) -> Result<PgStore, StoreError> {
        let mut store = PgStore::connect(url)?;
        store.check_schema(false)?;
        store.failed = true;
        Ok(store)
    }

    fn connect(url: &str) -> Result<PgStore, StoreError> {
        let (conn, schema) = split_schema(url)?;
        let client =
            Client::connect(&conn, NoTls).map_err(|e| StoreError::database(url, error_text(&e)))?;
        Ok(PgStore {
            url: url.to_string(),
            conn,
            schema,
            client,
            failed: false,
            prepared: None,
        })
    }

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

    fn db(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::database(&self.url, e)
    }

    /// The server process of the store's connection (for operators and for tests that
    /// cut the connection).
    pub fn backend_pid(&mut self) -> Result<i32, StoreError> {
        let row = self
            .client
            .query_one("SELECT pg_backend_pid()", &[])
            .map_err(|e| self.db(error_text(&e)))?;
        Ok(row.get(0))
    }

    fn reconnect(&mut self) -> Result<(), StoreError> {
        self.prepared = None;
        self.client = Client::connect(&self.conn, NoTls).map_err(|e| self.db(error_text(&e)))?;
        Ok(())
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

    fn rows_to_stored(rows: &[postgres::Row]) -> Result<Vec<Stored>, String> {
        rows.iter()
            .map(|row| {
                let n: i64 = row.get(0);
                let prev: Vec<u8> = row.get(1);
                let hash: Vec<u8> = row.get(2);
                let bytes: Vec<u8> = row.get(3);
                let value: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("a record is not JSON: {e}"))?;
                Ok(Stored {
                    record: chain::record_of(&value)
                        .ok_or_else(|| "a row holds no evidence record".to_string())?,
                    n: u64::try_from(n).unwrap_or(u64::MAX),
                    prev: array32(&prev).unwrap_or([0xff; 32]),
                    hash: array32(&hash).unwrap_or([0xff; 32]),
                })
            })
            .collect()
    }
}

impl PgStore {
    fn append_checked(&mut self, records: &[Sealed], exclusive: bool) -> Result<usize, StoreError> {
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
fn connection_lost(e: &postgres::Error) -> bool {
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
pub(crate) fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// Why a group commit failed: the database, or the records themselves.
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

impl EvidenceStore for PgStore {
    fn first_conflict(&mut self, records: &[Sealed]) -> Result<Option<RecordKey>, StoreError> {
        let keyed: Vec<(RecordKey, [u8; 32])> = records
            .iter()
            .filter_map(|r| r.record().key().map(|k| (k, r.content())))
            .collect();
        let places: Vec<[u8; 32]> = keyed.iter().map(|(k, _)| place_id(k)).collect();
        let refs: Vec<&[u8]> = places.iter().map(|p| p.as_slice()).collect();
        let s = self.schema.clone();
        let rows = self
            .client
            .query(
                &format!("SELECT key, content FROM {s}.records WHERE key = ANY($1)"),
                &[&refs],
            )
            .map_err(|e| self.db(error_text(&e)))?;
        let stored: HashMap<Vec<u8>, Vec<u8>> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(keyed
            .into_iter()
            .zip(&places)
            .find(|((_, content), place)| {
                stored
                    .get(place.as_slice())
                    .is_some_and(|c| c.as_slice() != content.as_slice())
            })
            .map(|((key, _), _)| key))
    }

    fn append(&mut self, records: &[Sealed]) -> Result<usize, StoreError> {
        self.append_checked(records, false)
    }

    fn append_exclusive(&mut self, records: &[Sealed]) -> Result<usize, StoreError> {
        self.append_checked(records, true)
    }
    /// Pages through the records by their key `(chain, n)`, so that memory holds one page.
    fn visit_all(
        &mut self,
        visit: &mut dyn FnMut(Stored) -> std::ops::ControlFlow<()>,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<(), StoreError> {
        const PAGE: i64 = 10_000;
        let s = self.schema.clone();
        let total: i64 = self
            .client
            .query_one(&format!("SELECT count(*) FROM {s}.records"), &[])
            .map_err(|e| self.db(error_text(&e)))?
            .get(0);
        let (mut chain, mut n, mut done) = (String::new(), -1i64, 0u64);
        loop {
            let rows = self
                .client
                .query(
                    &format!(
                        "SELECT n, prev, hash, record, chain FROM {s}.records
                         WHERE (chain, n) > ($1, $2) ORDER BY chain, n LIMIT $3"
                    ),
                    &[&chain, &n, &PAGE],
                )
                .map_err(|e| self.db(error_text(&e)))?;
            let Some(last) = rows.last() else {
                return Ok(());
            };
            (chain, n) = (last.get(4), last.get(0));
            for stored in PgStore::rows_to_stored(&rows).map_err(|e| self.db(e))? {
                if visit(stored).is_break() {
                    return Ok(());
                }
            }
            done += rows.len() as u64;
            progress(done, u64::try_from(total).unwrap_or(0));
        }
    }

    /// Served by partial indexes for `alert` and `alert_delivery` records (the outbox).
    fn read_recent(&mut self, kind: RecordKind, limit: usize) -> Result<Vec<Stored>, StoreError> {
        let s = self.schema.clone();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // The kind is one of our own names, written into the query so that the planner
        // can use the partial index.
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT n, prev, hash, record FROM {s}.records WHERE kind = '{}'
                     ORDER BY stored_at DESC, chain DESC, n DESC LIMIT $1",
                    kind.name()
                ),
                &[&limit],
            )
            .map_err(|e| self.db(error_text(&e)))?;
        let mut recent = PgStore::rows_to_stored(&rows).map_err(|e| self.db(e))?;
        recent.reverse();
        Ok(recent)
    }

    /// Served by the partial indexes of run starts and run summaries (migration 3).
    fn live_runs(&mut self) -> Result<Vec<String>, StoreError> {
        let s = self.schema.clone();
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT r.run_id FROM {s}.records r
                     WHERE r.n = 0 AND r.run_id IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM {s}.records e
                           WHERE e.chain = r.chain AND e.kind = 'run_summary')
                     ORDER BY r.chain"
                ),
                &[],
            )
            .map_err(|e| self.db(error_text(&e)))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Served by the partial index of artifact records (migration 3).
    fn artifact_bytes(&mut self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let s = self.schema.clone();
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT n, prev, hash, record FROM {s}.records
                     WHERE kind = 'artifact' AND chain = '' ORDER BY n"
                ),
                &[],
            )
            .map_err(|e| self.db(error_text(&e)))?;
        let stored = PgStore::rows_to_stored(&rows).map_err(|e| self.db(e))?;
        Ok(stored
            .into_iter()
            .find(|s| s.record.artifact == id)
            .and_then(|s| super::artifact_record_bytes(&s.record)))
    }

    fn read_chain(&mut self, chain: &ChainId) -> Result<Vec<Stored>, StoreError> {
        let s = self.schema.clone();
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT n, prev, hash, record FROM {s}.records WHERE chain = $1 ORDER BY n"
                ),
                &[&chain.key()],
            )
            .map_err(|e| self.db(error_text(&e)))?;
        PgStore::rows_to_stored(&rows).map_err(|e| self.db(e))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted_wherever_the_url_gives_them() {
        assert_eq!(
            super::redact("postgres://lever:s3cret@db:5432/x?schema=a"),
            "postgres://lever:***@db:5432/x?schema=a"
        );
        assert_eq!(
            super::redact("postgres://lever@db/x?sslmode=require&password=s3cret"),
            "postgres://lever@db/x?sslmode=require&password=***"
        );
    }
}
