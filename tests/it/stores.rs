//! The evidence stores: one conformance suite run against both backends, then what each
//! backend must catch when someone tampers with it.
//!
//! PostgreSQL tests read `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`),
//! each work in a schema of their own that they drop afterwards, and fail, never skip, when
//! no server answers.

use lever::evidence::audit;
use lever::evidence::file::FileStore;
use lever::evidence::postgres::PgStore;
use lever::evidence::postgres::migrate::Roles;
use lever::evidence::{ChainId, EvidenceStore, Record, RecordKind, Sealed, StoreError};
use std::sync::atomic::{AtomicU32, Ordering};

/// Records sealed for a store, as the runtime's callers seal them.
pub fn sealed(records: &[Record]) -> Vec<Sealed> {
    Sealed::all(records.iter().cloned())
}

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A schema of its own for one test, dropped when the test ends.
pub struct Schema {
    pub name: String,
    pub url: String,
}

impl Schema {
    pub fn new() -> Schema {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "lever_t{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos()
        );
        let base = database_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}schema={name}");
        if let Err(e) = postgres::Client::connect(&base, postgres::NoTls) {
            panic!(
                "PostgreSQL is not reachable at {base} (set DATABASE_URL to a server this test may create schemas in): {e}"
            );
        }
        let roles = Roles::for_schema(&name);
        lever::evidence::postgres::migrate::migrate(&url, Some(&roles)).unwrap();
        Schema { name, url }
    }

    /// A schema name and URL for a test, with nothing created yet.
    pub fn unmigrated() -> Schema {
        let migrated = Schema::new();
        let mut c = migrated.client();
        let roles = Roles::for_schema(&migrated.name);
        c.batch_execute(&format!(
            "DROP SCHEMA \"{}\" CASCADE; DROP ROLE \"{}\"; DROP ROLE \"{}\";",
            migrated.name, roles.writer, roles.auditor
        ))
        .unwrap();
        migrated
    }

    /// The schema's URL, connecting as `role` (the writer or auditor the migration made).
    pub fn url_as(&self, role: &str) -> String {
        let host = self
            .url
            .split_once('@')
            .map_or(self.url.as_str(), |(_, h)| h);
        format!("postgres://{role}@{host}")
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&database_url(), postgres::NoTls).unwrap()
    }

    pub fn open(&self) -> PgStore {
        PgStore::open(&self.url).unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&database_url(), postgres::NoTls) {
            let roles = Roles::for_schema(&self.name);
            let _ = c.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE; DROP ROLE IF EXISTS \"{}\"; DROP ROLE IF EXISTS \"{}\";",
                self.name, roles.writer, roles.auditor
            ));
        }
    }
}

pub fn record(run: Option<&str>, seq: u64, kind: RecordKind, body: serde_json::Value) -> Record {
    Record {
        kind,
        artifact: "blake3:aa".into(),
        run_id: run.map(str::to_string),
        seq,
        index: 0,
        body,
    }
}

fn decisions(run: &str, seqs: std::ops::RangeInclusive<u64>) -> Vec<Record> {
    seqs.map(|seq| {
        record(
            Some(run),
            seq,
            RecordKind::Decision,
            serde_json::json!({"action": "continue", "seq": seq}),
        )
    })
    .collect()
}

/// What every backend must do. `open` opens the same store again each time.
fn conformance(open: &dyn Fn() -> Box<dyn EvidenceStore>) {
    let mut store = open();
    assert_eq!(
        audit::verify(store.as_mut(), None, None).unwrap(),
        Ok(Default::default())
    );

    // Appends link each run's records into its own chain; the store chain is separate.
    let mut batch = decisions("b", 1..=3);
    batch.insert(
        1,
        record(None, 0, RecordKind::Deploy, serde_json::json!({"to": "x"})),
    );
    batch.extend(decisions("a", 1..=2));
    assert_eq!(store.append(&sealed(&batch)).unwrap(), 6);
    // The same records again add nothing; a batch mixing old and new adds the new only.
    assert_eq!(store.append(&sealed(&batch)).unwrap(), 0);
    assert_eq!(store.append(&sealed(&decisions("a", 2..=3))).unwrap(), 1);
    drop(store);

    // Reopened, the chains continue where they stopped.
    let mut store = open();
    assert_eq!(store.append(&sealed(&decisions("a", 4..=4))).unwrap(), 1);
    let a = store.read_chain(&ChainId::Run("a".into())).unwrap();
    assert_eq!(
        a.iter().map(|s| s.record.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4]
    );
    assert_eq!(a.iter().map(|s| s.n).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert_eq!(a[0].prev, [0; 32]);
    for pair in a.windows(2) {
        assert_eq!(pair[1].prev, pair[0].hash);
    }
    let all = store.read_all().unwrap();
    let chains: Vec<ChainId> = all.iter().map(|s| s.record.chain()).collect();
    assert_eq!(
        chains.first(),
        Some(&ChainId::Store),
        "the store chain comes first"
    );
    assert!(chains.windows(2).all(|w| w[0] <= w[1]), "chain by chain");
    assert_eq!(all.len(), 8);

    // A different record at a stored place is a conflict; the same one is not.
    let mut changed = decisions("a", 2..=2);
    changed[0].body = serde_json::json!({"action": "stop", "seq": 2});
    let key = store.first_conflict(&sealed(&changed)).unwrap().unwrap();
    assert_eq!((key.run_id.as_str(), key.seq), ("a", 2));
    assert_eq!(
        store
            .first_conflict(&sealed(&decisions("a", 1..=4)))
            .unwrap(),
        None
    );
    // Appending it is refused (same artifact, so the same id: the content decides), alone
    // or after a new record of the same batch, and nothing of the batch is written.
    for batch in [changed.clone(), [decisions("d", 1..=1), changed].concat()] {
        let refused = store.append(&sealed(&batch));
        assert!(
            matches!(&refused, Err(StoreError::Contradicts(w)) if w.contains("run `a` seq 2")),
            "{refused:?}"
        );
    }
    assert!(
        store
            .read_chain(&ChainId::Run("d".into()))
            .unwrap()
            .is_empty()
    );
    // Two different records for one place in one batch are refused too.
    let mut twice = decisions("d", 1..=2);
    twice.push(record(
        Some("d"),
        2,
        RecordKind::Decision,
        serde_json::json!({"action": "kill"}),
    ));
    assert!(matches!(
        store.append(&sealed(&twice)),
        Err(StoreError::Contradicts(_))
    ));
    assert!(
        store
            .read_chain(&ChainId::Run("d".into()))
            .unwrap()
            .is_empty()
    );

    // run_summary closes a run's chain.
    let summary = record(
        Some("a"),
        5,
        RecordKind::RunSummary,
        serde_json::json!({"steps": 4}),
    );
    assert_eq!(store.append(&sealed(&[summary])).unwrap(), 1);
    let late = store.append(&sealed(&decisions("a", 6..=6)));
    assert!(
        matches!(&late, Err(StoreError::ChainClosed(r)) if r == "a"),
        "{late:?}"
    );
    // ... and the store still takes other runs' records.
    assert_eq!(store.append(&sealed(&decisions("c", 1..=1))).unwrap(), 1);

    // A digest verifies now and after more records arrive.
    let digest = audit::digest(store.as_mut()).unwrap().unwrap();
    assert!(digest.starts_with("blake3:") && digest.len() == 71);
    assert_eq!(store.append(&sealed(&decisions("c", 2..=3))).unwrap(), 2);
    let verified = audit::verify(store.as_mut(), None, Some(&digest))
        .unwrap()
        .unwrap();
    assert_eq!(verified.records, 13);
    assert_eq!(verified.chains, 4);
    let one = audit::verify(store.as_mut(), Some("b"), Some(&digest))
        .unwrap()
        .unwrap();
    assert_eq!(one.records, 3);
    let unknown = audit::verify(store.as_mut(), None, Some("blake3:00")).unwrap();
    assert!(unknown.unwrap_err().what.contains("not recorded"));
}

#[test]
fn the_file_store_conforms() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ev");
    conformance(&|| Box::new(FileStore::open(&dir).unwrap()));
}

#[test]
fn the_postgres_store_conforms() {
    let schema = Schema::new();
    conformance(&|| Box::new(schema.open()));
    // Each migration is recorded once, however often the store is opened.
    let mut c = schema.client();
    let n: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM \"{}\".schema_migrations", schema.name),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(n, 6, "one row for each of the six migrations");
}

#[test]
fn a_failed_fsync_stops_the_file_store() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = FileStore::open(tmp.path()).unwrap();
    store.append(&sealed(&decisions("r", 1..=1))).unwrap();
    store.inject_sync_failure();
    assert!(matches!(
        store.append(&sealed(&decisions("r", 2..=2))),
        Err(StoreError::Io { .. })
    ));
    // Never an acknowledgement after a failure, even for a write that would succeed.
    let after = store.append(&sealed(&decisions("r", 3..=3)));
    assert!(matches!(after, Err(StoreError::Stopped(_))), "{after:?}");
    drop(store);
    // Reopened, the store is whole: what reached the disk verifies and nothing is doubled.
    let mut store = FileStore::open(tmp.path()).unwrap();
    assert!(audit::verify(&mut store, None, None).unwrap().is_ok());
    store.append(&sealed(&decisions("r", 1..=3))).unwrap();
    let r = store.read_chain(&ChainId::Run("r".into())).unwrap();
    assert_eq!(
        r.iter().map(|s| s.record.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}

// ---- the file store under tampering ----

/// A store of a real replay in `dir/ev`, and its digest.
fn replayed_file_store(dir: &std::path::Path) -> String {
    let out = super::replay_examples(dir, "file:ev");
    assert_eq!(out.status.code(), Some(0));
    let digest = super::lever(dir, &["evidence", "digest", "--evidence", "file:ev"]);
    assert_eq!(digest.status.code(), Some(0));
    String::from_utf8(digest.stdout).unwrap().trim().to_string()
}

/// Frame boundaries of a segment: (start, end) of each frame.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        out.push((at, at + 8 + len));
        at += 8 + len;
    }
    out
}

fn verify(dir: &std::path::Path, digest: Option<&str>) -> (Option<i32>, String) {
    let mut args = vec!["evidence", "verify", "--evidence", "file:ev"];
    if let Some(d) = digest {
        args.extend(["--digest", d]);
    }
    let out = super::lever(dir, &args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_flipped_byte_in_the_file_store_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    replayed_file_store(tmp.path());
    let log = tmp.path().join("ev/evidence-000000.log");
    let clean = std::fs::read(&log).unwrap();
    assert_eq!(verify(tmp.path(), None).0, Some(0));
    // Bytes in a frame header, in a payload, in the middle and in the last frame.
    let positions = [
        0,
        5,
        13,
        200,
        clean.len() / 2,
        clean.len() - 30,
        clean.len() - 1,
    ];
    for at in positions {
        let mut damaged = clean.clone();
        damaged[at] ^= 0x01;
        std::fs::write(&log, &damaged).unwrap();
        let (code, stderr) = verify(tmp.path(), None);
        assert_eq!(code, Some(1), "byte {at}: {stderr}");
        assert!(
            stderr.contains("corrupt") || stderr.contains("verification failed"),
            "byte {at}: {stderr}"
        );
        // The audit changed nothing.
        assert_eq!(std::fs::read(&log).unwrap(), damaged, "byte {at}");
    }
}

#[test]
fn a_deleted_or_swapped_record_is_named_and_a_deleted_tail_is_caught_by_the_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let digest = replayed_file_store(tmp.path());
    let log = tmp.path().join("ev/evidence-000000.log");
    let clean = std::fs::read(&log).unwrap();
    let f = frames(&clean);
    assert!(f.len() > 10);

    // A deleted record in the middle of the run's chain.
    let mut deleted = clean[..f[5].0].to_vec();
    deleted.extend_from_slice(&clean[f[5].1..]);
    std::fs::write(&log, &deleted).unwrap();
    let (code, stderr) = verify(tmp.path(), None);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("run `support-42`"), "{stderr}");
    assert!(
        stderr.contains("deleted, inserted or reordered"),
        "{stderr}"
    );

    // Two records swapped.
    let mut swapped = clean[..f[6].0].to_vec();
    swapped.extend_from_slice(&clean[f[7].0..f[7].1]);
    swapped.extend_from_slice(&clean[f[6].0..f[6].1]);
    swapped.extend_from_slice(&clean[f[7].1..]);
    std::fs::write(&log, &swapped).unwrap();
    let (code, stderr) = verify(tmp.path(), None);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("run `support-42`"), "{stderr}");

    // A tail of whole frames deleted: every chain that remains is consistent, so only the
    // digest taken before can tell.
    let cut = f[f.len() - 3].0;
    std::fs::write(&log, &clean[..cut]).unwrap();
    assert_eq!(verify(tmp.path(), None).0, Some(0));
    let (code, stderr) = verify(tmp.path(), Some(&digest));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains(&digest), "{stderr}");

    // Restored, everything verifies against the digest.
    std::fs::write(&log, &clean).unwrap();
    assert_eq!(verify(tmp.path(), Some(&digest)).0, Some(0));
}

// ---- PostgreSQL under tampering ----

fn pg_run(schema: &Schema) {
    let mut store = schema.open();
    let mut batch = decisions("r", 1..=5);
    batch.push(record(
        Some("r"),
        6,
        RecordKind::RunSummary,
        serde_json::json!({"steps": 5}),
    ));
    batch.extend(decisions("other", 1..=2));
    store.append(&sealed(&batch)).unwrap();
}

#[test]
fn postgres_refuses_update_delete_and_truncate_also_as_a_replica() {
    let schema = Schema::new();
    pg_run(&schema);
    let mut c = schema.client();
    let t = format!("\"{}\".records", schema.name);
    for role in ["origin", "replica"] {
        c.batch_execute(&format!("SET session_replication_role = {role}"))
            .unwrap();
        for sql in [
            format!("UPDATE {t} SET kind = 'x'"),
            format!("DELETE FROM {t} WHERE n = 0"),
            format!("TRUNCATE {t}"),
            format!(
                "UPDATE \"{}\".schema_migrations SET version = 9",
                schema.name
            ),
        ] {
            let err = c.batch_execute(&sql).unwrap_err();
            let text = err
                .as_db_error()
                .map(|e| e.message().to_string())
                .unwrap_or_default();
            assert!(text.contains("append-only"), "{role}: {sql}: {err}");
        }
    }
    let n: i64 = c
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 8, "nothing changed");
}

/// Runs `sql` as a superuser with the append-only triggers disabled.
fn tamper(schema: &Schema, sql: &str) {
    let t = format!("\"{}\".records", schema.name);
    let mut c = schema.client();
    c.batch_execute(&format!(
        "ALTER TABLE {t} DISABLE TRIGGER records_append_only;
         {};
         ALTER TABLE {t} ENABLE ALWAYS TRIGGER records_append_only;",
        sql.replace("{t}", &t)
    ))
    .unwrap();
}

fn pg_verify(schema: &Schema, digest: Option<&str>) -> Result<audit::Verified, audit::Problem> {
    let mut store = schema.open();
    audit::verify(&mut store, None, digest).unwrap()
}

#[test]
fn postgres_edits_deletes_and_reorders_by_a_superuser_are_caught() {
    let cases = [
        (
            "an edited record",
            "UPDATE {t} SET record = convert_to(replace(convert_from(record, 'UTF8'), 'continue', 'stop'), 'UTF8') WHERE chain = 'r:r' AND n = 2",
            2,
            "altered",
        ),
        (
            "a deleted record",
            "DELETE FROM {t} WHERE chain = 'r:r' AND n = 1",
            2,
            "deleted",
        ),
        (
            "two records reordered",
            "UPDATE {t} SET n = -1 WHERE chain = 'r:r' AND n = 3;
             UPDATE {t} SET n = 3 WHERE chain = 'r:r' AND n = 4;
             UPDATE {t} SET n = 4 WHERE chain = 'r:r' AND n = -1;",
            3,
            "",
        ),
    ];
    for (what, sql, at, says) in cases {
        let schema = Schema::new();
        pg_run(&schema);
        assert!(pg_verify(&schema, None).is_ok());
        tamper(&schema, sql);
        let problem = pg_verify(&schema, None).expect_err(what);
        assert_eq!(problem.chain, ChainId::Run("r".into()), "{what}: {problem}");
        assert_eq!(problem.n, Some(at), "{what}: {problem}");
        assert!(problem.what.contains(says), "{what}: {problem}");
    }
}

#[test]
fn postgres_a_run_rewritten_with_every_hash_recomputed_is_caught_by_an_earlier_digest() {
    let schema = Schema::new();
    pg_run(&schema);
    let digest = {
        let mut store = schema.open();
        audit::digest(&mut store).unwrap().unwrap()
    };
    // The superuser deletes the run and writes a different history through the store's
    // own code, so that every chain link and hash is consistent.
    tamper(&schema, "DELETE FROM {t} WHERE chain = 'r:r'");
    let mut forged = decisions("r", 1..=5);
    forged[2].body = serde_json::json!({"action": "continue", "seq": 3, "note": "forged"});
    forged.push(record(
        Some("r"),
        6,
        RecordKind::RunSummary,
        serde_json::json!({"steps": 5}),
    ));
    schema.open().append(&sealed(&forged)).unwrap();
    assert!(
        pg_verify(&schema, None).is_ok(),
        "the forged chain is self-consistent"
    );
    let problem = pg_verify(&schema, Some(&digest)).unwrap_err();
    assert_eq!(problem.chain, ChainId::Run("r".into()), "{problem}");
    assert!(problem.what.contains("rewritten"), "{problem}");
}

#[test]
fn postgres_a_batch_retried_after_a_lost_connection_is_neither_lost_nor_doubled() {
    let schema = Schema::new();
    let mut store = schema.open();
    store.append(&sealed(&decisions("r", 1..=3))).unwrap();
    // The server ends the store's connection, as a restart or a network failure would.
    let pid = store.backend_pid().unwrap();
    let mut admin = schema.client();
    let ended: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap()
        .get(0);
    assert!(ended);
    // The retried batch overlaps what is already stored.
    assert_eq!(store.append(&sealed(&decisions("r", 2..=6))).unwrap(), 3);
    let r = store.read_chain(&ChainId::Run("r".into())).unwrap();
    assert_eq!(
        r.iter().map(|s| s.record.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert!(audit::verify(&mut store, None, None).unwrap().is_ok());
    assert_ne!(store.backend_pid().unwrap(), pid, "the store reconnected");
}

#[test]
fn lever_run_and_lever_evidence_work_end_to_end_on_postgres() {
    let schema = Schema::new();
    let tmp = tempfile::tempdir().unwrap();
    let first = super::replay_examples(tmp.path(), &schema.url);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let t = format!("\"{}\".records", schema.name);
    let count = |c: &mut postgres::Client| -> i64 {
        c.query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .unwrap()
            .get(0)
    };
    let mut c = schema.client();
    let stored = count(&mut c);
    let decisions = String::from_utf8(first.stdout.clone())
        .unwrap()
        .lines()
        .count() as i64;
    assert!(
        stored > decisions,
        "{stored} records for {decisions} decisions"
    );
    // Replaying again prints the same and stores nothing new.
    let again = super::replay_examples(tmp.path(), &schema.url);
    assert_eq!(again.stdout, first.stdout);
    assert_eq!(count(&mut c), stored);
    let verify = super::lever(
        tmp.path(),
        &["evidence", "verify", "--evidence", &schema.url],
    );
    assert_eq!(verify.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&verify.stdout).contains(&format!("verified: {stored} records"))
    );
    let show = super::lever(
        tmp.path(),
        &[
            "evidence",
            "show",
            "--run",
            "support-42",
            "--evidence",
            &schema.url,
        ],
    );
    let text = String::from_utf8(show.stdout).unwrap();
    assert!(text.starts_with("run `support-42`: "), "{text}");
    assert!(text.contains("closed by its run_summary"), "{text}");
    assert!(
        text.contains("step -> stop (breach: std.llm.cost of support_budget)"),
        "{text}"
    );
    // The password of a URL never reaches an error message.
    let bad = super::lever(
        tmp.path(),
        &[
            "evidence",
            "verify",
            "--evidence",
            "postgres://postgres:hunter2@127.0.0.1:1/none",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("postgres://postgres:***@127.0.0.1:1/none") && !err.contains("hunter2"),
        "{err}"
    );
}

// ---- the bytes, pinned ----

/// `xxd`-style lines: offset, 16 bytes in hex, printable ASCII.
fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let text: String = line
            .iter()
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("{:08x}: {:<47}  {text}\n", i * 16, hex.join(" ")));
    }
    out
}

#[test]
fn the_canonical_bytes_chain_hashes_and_frames_of_three_records_are_pinned() {
    // Bodies built with keys out of order: the canonical form sorts them at every depth.
    let mut body = serde_json::Map::new();
    body.insert("reason".into(), "breach: std.llm.cost of p".into());
    body.insert("action".into(), "stop".into());
    body.insert(
        "input".into(),
        serde_json::json!({"type": "step", "cost": "5.40"}),
    );
    let decision = Record {
        kind: RecordKind::Decision,
        artifact: "blake3:ab".into(),
        run_id: Some("r1".into()),
        seq: 2,
        index: 0,
        body: serde_json::Value::Object(body),
    };
    let signal = record(
        Some("r1"),
        2,
        RecordKind::Signal,
        serde_json::json!({"observed": "5.40", "kind": "breach", "percent": "108"}),
    );
    let deploy = record(
        None,
        0,
        RecordKind::Deploy,
        serde_json::json!({"to": "blake3:cd", "from": "blake3:ab", "actor": "replay"}),
    );
    // Hand-written from docs/evidence.md: field order, no whitespace, sorted body keys.
    let expected = [
        r#"{"kind":"decision","artifact":"blake3:ab","run_id":"r1","seq":2,"index":0,"body":{"action":"stop","input":{"cost":"5.40","type":"step"},"reason":"breach: std.llm.cost of p"}}"#,
        r#"{"kind":"signal","artifact":"blake3:aa","run_id":"r1","seq":2,"index":0,"body":{"kind":"breach","observed":"5.40","percent":"108"}}"#,
        r#"{"kind":"deploy","artifact":"blake3:aa","run_id":null,"seq":0,"index":0,"body":{"actor":"replay","from":"blake3:ab","to":"blake3:cd"}}"#,
    ];
    let records = [decision, signal, deploy];
    for (r, want) in records.iter().zip(expected) {
        assert_eq!(String::from_utf8(r.canonical_bytes()).unwrap(), want);
    }

    let tmp = tempfile::tempdir().unwrap();
    let mut store = FileStore::open(tmp.path()).unwrap();
    assert_eq!(store.append(&sealed(&records)).unwrap(), 3);
    drop(store);
    let log = std::fs::read(tmp.path().join("evidence-000000.log")).unwrap();

    // The chain hashes, recomputed here from the documented formula.
    let link = |prev: [u8; 32], n: u64, canonical: &str| -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"lever/evidence/chain/v1\0");
        h.update(&prev);
        h.update(&n.to_le_bytes());
        h.update(blake3::hash(canonical.as_bytes()).as_bytes());
        *h.finalize().as_bytes()
    };
    let h0 = link([0; 32], 0, expected[0]);
    let h1 = link(h0, 1, expected[1]);
    let h2 = link([0; 32], 0, expected[2]);
    let hex = |h: &[u8; 32]| h.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let zero = "0".repeat(64);
    let payloads = [
        format!(
            "{},\"n\":0,\"prev\":\"{zero}\",\"hash\":\"{}\"}}",
            &expected[0][..expected[0].len() - 1],
            hex(&h0)
        ),
        format!(
            "{},\"n\":1,\"prev\":\"{}\",\"hash\":\"{}\"}}",
            &expected[1][..expected[1].len() - 1],
            hex(&h0),
            hex(&h1)
        ),
        format!(
            "{},\"n\":0,\"prev\":\"{zero}\",\"hash\":\"{}\"}}",
            &expected[2][..expected[2].len() - 1],
            hex(&h2)
        ),
    ];
    // Frames: length (u32 LE), CRC-32 of the payload (u32 LE), payload; in append order.
    let mut want_log = Vec::new();
    for p in &payloads {
        want_log.extend_from_slice(&(p.len() as u32).to_le_bytes());
        want_log.extend_from_slice(&crc32fast::hash(p.as_bytes()).to_le_bytes());
        want_log.extend_from_slice(p.as_bytes());
    }
    assert_eq!(log, want_log);

    // And the reviewed hex dump, for a reader of docs/evidence.md.
    let dump = hex_dump(&log);
    let golden = super::root().join("tests/evidence/three_records.hex");
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&golden, &dump).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&golden)
            .expect("tests/evidence/three_records.hex (UPDATE_EXPECT=1 writes it)"),
        dump
    );
}

// ---- outages ----

/// A TCP proxy to the database that can be taken down (cutting every connection and
/// refusing new ones) and brought back, as a network partition would.
pub(crate) struct Proxy {
    port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    pub(crate) fn start(target: String) -> Proxy {
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let open: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let (up2, open2) = (up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                // Without this, Nagle's algorithm and delayed ACKs add 40 ms a round trip.
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let mut list = open2.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, up, open }
    }

    pub(crate) fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    pub(crate) fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// `url` with its host and port replaced by the proxy's; returns it and the old authority.
fn through_proxy(url: &str) -> (String, impl Fn(u16) -> String + use<>) {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (user, rest) = rest.split_once('@').unwrap();
    let (authority, path) = rest.split_once('/').unwrap();
    let target = if authority.contains(':') {
        authority.to_string()
    } else {
        format!("{authority}:5432")
    };
    let (scheme, user, path) = (scheme.to_string(), user.to_string(), path.to_string());
    (target, move |port| {
        format!("{scheme}://{user}@127.0.0.1:{port}/{path}")
    })
}

/// A schema of its own reached through a [`Proxy`]: the schema, the proxy, the store URL.
pub(crate) fn proxied_schema() -> (Schema, Proxy, String) {
    let schema = Schema::new();
    let (target, url_for) = through_proxy(&schema.url);
    let proxy = Proxy::start(target);
    let url = url_for(proxy.port);
    (schema, proxy, url)
}

#[test]
fn records_queued_during_a_postgres_outage_are_spilled_and_survive_a_crash() {
    use lever::evidence::durable::{Durable, WriteError};
    let (schema, proxy, url) = proxied_schema();
    let tmp = tempfile::tempdir().unwrap();
    let spill = tmp.path().join("spill/outage.spill");
    let one = decisions("r", 1..=1)[0].canonical_bytes().len();
    let mut durable = Durable::open(&url, 20 * one, Some(&spill)).unwrap();
    assert_eq!(
        durable.append(Sealed::all(decisions("r", 1..=2))).unwrap(),
        2
    );

    proxy.down();
    // The outage's start is queued first; everything queued is spilled before it returns.
    for (batch, queued) in [(3..=4, 3), (5..=5, 4)] {
        match durable.append(Sealed::all(decisions("r", batch))) {
            Err(WriteError::Unavailable {
                queued: q,
                spilled: true,
                ..
            }) => assert_eq!(q, queued),
            other => panic!("expected an outage, got {other:?}"),
        }
    }
    assert!(std::fs::metadata(&spill).unwrap().len() > (3 * one) as u64);
    // The queue is bounded in bytes: past it, records are refused, not dropped silently.
    let full = durable.append(Sealed::all(decisions("r", 6..=105)));
    assert!(
        matches!(full, Err(WriteError::QueueFull { .. })),
        "{full:?}"
    );

    // The process dies with the store down: what it queued is in the spill file.
    drop(durable);
    proxy.up();
    let durable = Durable::open(&url, 20 * one, Some(&spill)).unwrap();
    assert!(durable.queued().is_empty());
    assert_eq!(
        std::fs::metadata(&spill).unwrap().len(),
        0,
        "the spill is emptied once written"
    );
    let mut store = schema.open();
    let r = store.read_chain(&ChainId::Run("r".into())).unwrap();
    assert_eq!(
        r.iter().map(|s| s.record.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    // The store chain shows the gap.
    let outage: Vec<String> = store
        .read_chain(&ChainId::Store)
        .unwrap()
        .iter()
        .filter(|s| s.record.kind == RecordKind::Outage)
        .map(|s| s.record.body["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outage, ["start", "end"]);
    assert!(audit::verify(&mut store, None, None).unwrap().is_ok());
}

#[test]
fn lever_run_waits_for_an_unavailable_store_and_prints_only_what_is_durable() {
    let (schema, proxy, url) = proxied_schema();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("p.policy"),
        "import std.llm\npolicy p {\n  version 1\n  scope all\n  limit std.llm.cost to $100 { breach => stop }\n}\n",
    )
    .unwrap();
    let mut events = String::from(
        "{\"type\":\"run_start\",\"run_id\":\"r\",\"ts\":\"2026-01-20T10:00:00Z\",\"tenant\":\"t\"}\n",
    );
    for s in 1..=600 {
        events.push_str(&format!(
            "{{\"type\":\"step\",\"run_id\":\"r\",\"ts\":\"2026-01-20T{:02}:{:02}:{:02}Z\",\"cost\":\"0.01\"}}\n",
            10 + s / 3600,
            s / 60 % 60,
            s % 60
        ));
    }
    std::fs::write(tmp.path().join("events.jsonl"), events).unwrap();
    let replay = |url: &str, wait: &str| {
        super::lever_command(
            tmp.path(),
            &[
                "run",
                "p.policy",
                "--events",
                "events.jsonl",
                "--group-commit",
                "5",
            ],
        )
        .args(["--store-wait", wait, "--evidence", url])
        .spawn()
        .unwrap()
    };
    // Reads the first decision, takes the store away (for `outage` ms, or for good), and
    // returns the exit code, the number of decisions printed, and standard error.
    let interrupted = |mut child: std::process::Child, proxy: &Proxy, outage: Option<u64>| {
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        std::io::BufRead::read_line(&mut out, &mut first).unwrap();
        proxy.down();
        if let Some(ms) = outage {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            proxy.up();
        }
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status.code(), 1 + rest.lines().count(), stderr)
    };

    // The store goes away mid-replay and comes back within the wait: nothing is lost.
    let (code, printed, stderr) = interrupted(replay(&url, "60"), &proxy, Some(2500));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("evidence store unavailable"),
        "the outage was seen: {stderr}"
    );
    assert_eq!(printed, 601);
    let mut store = schema.open();
    let r = store.read_chain(&ChainId::Run("r".into())).unwrap();
    assert_eq!(
        r.iter()
            .filter(|s| s.record.kind == RecordKind::Decision)
            .count(),
        601
    );
    assert!(audit::verify(&mut store, None, None).unwrap().is_ok());

    // A store that stays away: exit 2, naming what was not written, printing none of it.
    let (other, proxy, url) = proxied_schema();
    let (code, printed, stderr) = interrupted(replay(&url, "1"), &proxy, None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not written: "), "{stderr}");
    assert!(stderr.contains("records, from run `r` seq "), "{stderr}");
    proxy.up();
    let mut store = other.open();
    let stored = store
        .read_chain(&ChainId::Run("r".into()))
        .unwrap()
        .iter()
        .filter(|s| s.record.kind == RecordKind::Decision)
        .count();
    assert!(
        printed <= stored,
        "printed {printed} decisions, stored {stored}"
    );
    assert!(printed < 601);
}
