//! The PostgreSQL store (`--evidence postgres://...`), through the blocking `postgres` crate.
//!
//! One table of records in a schema of its own (`?schema=NAME` in the URL, default
//! `lever`), created and upgraded by versioned migrations that only `lever evidence
//! migrate` applies ([`migrate`]), as the schema's owner; the store itself connects as a
//! role that may only insert and read. Every evidence
//! table refuses UPDATE, DELETE and TRUNCATE with triggers enabled `ALWAYS`, so they fire
//! under `session_replication_role = replica` too. A group commit is one atomic `INSERT`
//! ([`append`]): it reads which records may already be stored and the heads of the chains
//! it extends that this connection did not write, links the new records and writes them.
//! A run's records are found by their place, the others by a unique `key`, and chain
//! positions are the primary key, so a batch retried after a lost connection neither loses
//! nor duplicates a record, and two writers can never fork a chain.

mod append;
mod known;
pub mod migrate;

use super::chain::{self, ChainId, Stored};
use super::{EvidenceStore, RecordKey, RecordKind, Sealed, StoreError};
use append::Prepared;
use postgres::{Client, NoTls};
use std::collections::HashMap;

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
    (
        4,
        "a run's records found by their chain; only records of no run (and rejected lines) by their id",
        r#"
ALTER TABLE {s}.records DROP CONSTRAINT records_key_key;
CREATE UNIQUE INDEX records_self_keys ON {s}.records (key)
    WHERE run_id IS NULL OR kind = 'rejected_input';
"#,
    ),
    (
        5,
        "no id and content columns, and no key for a run's records: all are derived from the canonical bytes",
        r#"
ALTER TABLE {s}.records DROP COLUMN id, DROP COLUMN content, ALTER COLUMN key DROP NOT NULL;
"#,
    ),
    (
        6,
        "budget counters, one row per (policy, monitor, key value, window), written with the records",
        r#"
CREATE TABLE {s}.budgets (
    counter text PRIMARY KEY,
    policy text NOT NULL,
    monitor text NOT NULL,
    per text NOT NULL,
    window_start text,
    value bigint NOT NULL
);
CREATE TRIGGER budgets_no_delete BEFORE DELETE ON {s}.budgets
    FOR EACH ROW EXECUTE FUNCTION {s}.refuse_change();
CREATE TRIGGER budgets_no_truncate BEFORE TRUNCATE ON {s}.budgets
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.refuse_change();
ALTER TABLE {s}.budgets ENABLE ALWAYS TRIGGER budgets_no_delete;
ALTER TABLE {s}.budgets ENABLE ALWAYS TRIGGER budgets_no_truncate;
CREATE FUNCTION {s}.budget_fence(moved bigint, expected bigint) RETURNS bigint
    LANGUAGE plpgsql AS $$
BEGIN
    IF moved <> expected THEN
        RAISE EXCEPTION 'a budget counter moved since the batch was judged'
            USING ERRCODE = 'LV001';
    END IF;
    RETURN moved;
END $$;
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
    /// The heads of the chains this connection wrote.
    known: known::KnownHeads,
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
pub(super) fn place_id(key: &RecordKey) -> [u8; 32] {
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
            known: known::KnownHeads::default(),
        })
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

    /// A read, on a new connection when the connection was lost (a database restart, an
    /// operator's `pg_terminate_backend`): reads change nothing, so they are retried.
    fn read(
        &mut self,
        sql: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        let mut attempt = 0;
        loop {
            match self.client.query(sql, params) {
                Ok(rows) => return Ok(rows),
                Err(e)
                    if attempt < ATTEMPTS
                        && (self.client.is_closed() || append::connection_lost(&e)) =>
                {
                    attempt += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50 << attempt.min(6)));
                    let _ = self.reconnect();
                }
                Err(e) => return Err(self.db(error_text(&e))),
            }
        }
    }

    fn reconnect(&mut self) -> Result<(), StoreError> {
        self.prepared = None;
        self.known.clear();
        self.client = Client::connect(&self.conn, NoTls).map_err(|e| self.db(error_text(&e)))?;
        Ok(())
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

pub(crate) fn error_text(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

impl EvidenceStore for PgStore {
    fn first_conflict(&mut self, records: &[Sealed]) -> Result<Option<RecordKey>, StoreError> {
        let keyed: Vec<&Sealed> = records
            .iter()
            .filter(|r| r.record().key().is_some())
            .collect();
        let prepared = self.prepared().map_err(|e| self.db(error_text(&e)))?;
        let stored = append::stored_contents(&mut self.client, &prepared, &keyed)
            .map_err(|e| self.db(error_text(&e)))?;
        Ok(keyed
            .into_iter()
            .find(|r| {
                stored
                    .get(store_key(r).as_slice())
                    .is_some_and(|c| c.as_slice() != r.content().as_slice())
            })
            .and_then(|r| r.record().key()))
    }

    fn append(&mut self, records: &[Sealed]) -> Result<usize, StoreError> {
        self.append_checked(records, false)
    }

    fn append_exclusive(&mut self, records: &[Sealed]) -> Result<usize, StoreError> {
        self.append_checked(records, true)
    }

    /// The `budgets` table, whole.
    fn counter_rows(&mut self) -> Result<Vec<super::budgets::CounterRow>, StoreError> {
        let sql = format!(
            "SELECT policy, monitor, per, window_start, value FROM {}.budgets
             ORDER BY policy, monitor, window_start NULLS FIRST, per",
            self.schema
        );
        Ok(self
            .read(&sql, &[])?
            .iter()
            .map(|r| super::budgets::CounterRow {
                policy: r.get(0),
                monitor: r.get(1),
                per: r.get(2),
                window_start: r.get(3),
                value: r.get(4),
            })
            .collect())
    }

    /// One read of the counters' rows (the primary key).
    fn counters(
        &mut self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let sql = format!(
            "SELECT counter, value FROM {}.budgets WHERE counter = ANY($1)",
            self.schema
        );
        let rows = self.read(&sql, &[&ids])?;
        let mut values: std::collections::HashMap<String, i64> =
            ids.iter().map(|id| (id.clone(), 0)).collect();
        for row in rows {
            values.insert(row.get(0), row.get(1));
        }
        Ok(values)
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
        let rows = self.read(
            &format!(
                "SELECT n, prev, hash, record FROM {s}.records WHERE kind = '{}'
                     ORDER BY stored_at DESC, chain DESC, n DESC LIMIT $1",
                kind.name()
            ),
            &[&limit],
        )?;
        let mut recent = PgStore::rows_to_stored(&rows).map_err(|e| self.db(e))?;
        recent.reverse();
        Ok(recent)
    }

    /// Served by the partial indexes of run starts and run summaries (migration 3).
    fn try_lock_checkpoints(&mut self) -> Result<bool, StoreError> {
        // A session lock, keyed by the schema: released by `unlock_checkpoints` or when
        // the connection ends.
        let key = format!("{}:checkpoint", self.schema.trim_matches('"'));
        let rows = self.read("SELECT pg_try_advisory_lock(hashtext($1))", &[&key])?;
        Ok(rows.first().is_some_and(|r| r.get::<_, bool>(0)))
    }

    fn unlock_checkpoints(&mut self) -> Result<(), StoreError> {
        let key = format!("{}:checkpoint", self.schema.trim_matches('"'));
        self.read("SELECT pg_advisory_unlock(hashtext($1))", &[&key])
            .map(|_| ())
    }

    fn live_runs(&mut self) -> Result<Vec<String>, StoreError> {
        let s = self.schema.clone();
        let rows = self.read(
            &format!(
                "SELECT r.run_id FROM {s}.records r
                     WHERE r.n = 0 AND r.run_id IS NOT NULL
                       AND NOT EXISTS (SELECT 1 FROM {s}.records e
                           WHERE e.chain = r.chain AND e.kind = 'run_summary')
                     ORDER BY r.chain"
            ),
            &[],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Served by the partial index of artifact records (migration 3).
    fn artifact_bytes(&mut self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let s = self.schema.clone();
        let rows = self.read(
            &format!(
                "SELECT n, prev, hash, record FROM {s}.records
                     WHERE kind = 'artifact' AND chain = '' ORDER BY n"
            ),
            &[],
        )?;
        let stored = PgStore::rows_to_stored(&rows).map_err(|e| self.db(e))?;
        Ok(stored
            .into_iter()
            .find(|s| s.record.artifact == id)
            .and_then(|s| super::artifact_record_bytes(&s.record)))
    }

    /// One query for all of `ids`, each chain's last position found by its index.
    fn chain_lens(&mut self, ids: &[String]) -> Result<HashMap<String, u64>, StoreError> {
        let s = self.schema.clone();
        let chains: Vec<String> = ids
            .iter()
            .map(|id| ChainId::Run(id.clone()).key())
            .collect();
        let rows = self.read(
            &format!(
                "SELECT c.chain, (SELECT k.n FROM {s}.records k WHERE k.chain = c.chain
                     ORDER BY k.n DESC LIMIT 1)
                 FROM unnest($1::text[]) AS c(chain)"
            ),
            &[&chains],
        )?;
        let mut lens = HashMap::new();
        for row in rows {
            let (chain, last): (String, Option<i64>) = (row.get(0), row.get(1));
            if let (Some(ChainId::Run(id)), Some(n)) = (ChainId::from_key(&chain), last) {
                lens.insert(id, u64::try_from(n).unwrap_or(0) + 1);
            }
        }
        Ok(lens)
    }

    fn read_chain(&mut self, chain: &ChainId) -> Result<Vec<Stored>, StoreError> {
        let s = self.schema.clone();
        let rows = self.read(
            &format!("SELECT n, prev, hash, record FROM {s}.records WHERE chain = $1 ORDER BY n"),
            &[&chain.key()],
        )?;
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
