//! PostgreSQL least privilege, against the real server: `lever evidence migrate` is the only
//! step that creates anything; the writer it makes can insert and read and nothing more;
//! the auditor can read and nothing more; readers never create a store.

use super::lever;
use super::stores::Schema;
use lever::evidence::postgres::migrate::Roles;

fn as_role(schema: &Schema, role: &str) -> postgres::Client {
    let url = schema.url_as(role);
    let base = url.split('?').next().unwrap();
    let mut c = postgres::Client::connect(base, postgres::NoTls).unwrap();
    c.batch_execute(&format!("SET search_path TO \"{}\"", schema.name))
        .unwrap();
    c
}

fn refused(c: &mut postgres::Client, sql: &str) -> String {
    match c.batch_execute(sql) {
        Ok(()) => panic!("allowed: {sql}"),
        Err(e) => e
            .as_db_error()
            .map_or(e.to_string(), |d| d.message().to_string()),
    }
}

fn replay_as(dir: &std::path::Path, url: &str) -> std::process::Output {
    super::replay_examples(dir, url)
}

#[test]
fn the_writer_can_insert_and_read_and_nothing_more() {
    let schema = Schema::new();
    let roles = Roles::for_schema(&schema.name);
    let tmp = tempfile::tempdir().unwrap();
    // The writer starts the runtime without creating anything, and is not warned.
    let out = replay_as(tmp.path(), &schema.url_as(&roles.writer));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    // As a superuser, it is warned.
    let again = replay_as(tmp.path(), &schema.url);
    assert!(
        String::from_utf8_lossy(&again.stderr)
            .contains("a superuser: it can disable the append-only triggers"),
        "{again:?}"
    );
    let mut w = as_role(&schema, &roles.writer);
    let n: i64 = w
        .query_one("SELECT count(*) FROM records", &[])
        .unwrap()
        .get(0);
    assert!(n > 20);
    for sql in [
        "UPDATE records SET kind = 'x'",
        "DELETE FROM records",
        "TRUNCATE records",
        "ALTER TABLE records DISABLE TRIGGER records_append_only",
        "DROP TRIGGER records_append_only ON records",
        "CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$",
        "CREATE TABLE sneaky (x int)",
        &format!("DROP SCHEMA \"{}\" CASCADE", schema.name),
    ] {
        let why = refused(&mut w, sql);
        assert!(
            why.contains("permission denied")
                || why.contains("must be owner")
                || why.contains("append-only"),
            "{sql}: {why}"
        );
    }
}

#[test]
fn the_auditor_can_read_and_verify_and_nothing_more() {
    let schema = Schema::new();
    let roles = Roles::for_schema(&schema.name);
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        replay_as(tmp.path(), &schema.url_as(&roles.writer))
            .status
            .code(),
        Some(0)
    );
    let auditor = schema.url_as(&roles.auditor);
    let verify = lever(tmp.path(), &["evidence", "verify", "--evidence", &auditor]);
    assert_eq!(verify.status.code(), Some(0), "{verify:?}");
    let show = lever(
        tmp.path(),
        &[
            "evidence",
            "show",
            "--run",
            "support-42",
            "--evidence",
            &auditor,
        ],
    );
    assert_eq!(show.status.code(), Some(0), "{show:?}");
    let digest = lever(tmp.path(), &["evidence", "digest", "--evidence", &auditor]);
    assert_eq!(
        digest.status.code(),
        Some(2),
        "a digest is written: {digest:?}"
    );
    let mut a = as_role(&schema, &roles.auditor);
    let why = refused(
        &mut a,
        "INSERT INTO records (chain, n, key, prev, hash, kind, seq, record) VALUES ('x', 0, '\\x00', '\\x00', '\\x00', 'decision', 0, '\\x00')",
    );
    assert!(why.contains("permission denied"), "{why}");
}

#[test]
fn readers_never_create_a_store_and_an_unmigrated_store_says_how_to_make_one() {
    let schema = Schema::unmigrated();
    let tmp = tempfile::tempdir().unwrap();
    let verify = lever(
        tmp.path(),
        &["evidence", "verify", "--evidence", &schema.url],
    );
    let stderr = String::from_utf8_lossy(&verify.stderr);
    assert_eq!(verify.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("lever evidence migrate"), "{stderr}");
    let run = replay_as(tmp.path(), &schema.url);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("lever evidence migrate"));
    let mut c = schema.client();
    let exists: bool = c
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
            &[&schema.name],
        )
        .unwrap()
        .get(0);
    assert!(!exists, "nothing was created");
    // The migration makes it, and says what it did; a second one has nothing to do.
    let migrate = lever(
        tmp.path(),
        &["evidence", "migrate", "--evidence", &schema.url],
    );
    let said = String::from_utf8_lossy(&migrate.stdout);
    assert_eq!(migrate.status.code(), Some(0), "{migrate:?}");
    assert!(
        said.contains("applied migration 1") && said.contains("_writer"),
        "{said}"
    );
    let again = lever(
        tmp.path(),
        &["evidence", "migrate", "--evidence", &schema.url],
    );
    assert!(!String::from_utf8_lossy(&again.stdout).contains("applied migration"));
    // An empty store does not verify as if it held evidence.
    let verify = lever(
        tmp.path(),
        &["evidence", "verify", "--evidence", &schema.url],
    );
    assert_eq!(verify.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&verify.stderr).contains("holds no evidence"));
    drop(schema);
}
