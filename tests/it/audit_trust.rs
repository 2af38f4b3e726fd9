//! Audit trust an outsider can check: signed checkpoints of the evidence log, one
//! decision's proof checked offline, consistency between checkpoints, a witness's
//! cosignature, and a tamper suite where every change to a store or a proof is caught
//! against a kept checkpoint.

use super::lever;
use super::stores::Schema;
use std::path::Path;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = lever(dir, args);
    assert!(
        out.status.success(),
        "lever {args:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Exit 1, saying `why`.
fn refused(dir: &Path, args: &[&str], why: &str) {
    let out = lever(dir, args);
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(1),
        "lever {args:?} was not refused: {said}"
    );
    assert!(
        said.contains(why),
        "lever {args:?}: expected `{why}` in: {said}"
    );
}

/// The example run in `evidence`, a signed checkpoint of it kept as `name`.
fn store_with_checkpoint(dir: &Path, evidence: &str, events: &str, name: &str) {
    let examples = super::root().join("examples");
    ok(
        dir,
        &[
            "run",
            examples.to_str().unwrap(),
            "--events",
            events,
            "--evidence",
            evidence,
        ],
    );
    let note = ok(
        dir,
        &[
            "evidence",
            "checkpoint",
            "--sign",
            "log",
            "--origin",
            "example.com/lever",
            "--evidence",
            evidence,
        ],
    );
    std::fs::write(dir.join(name), note).unwrap();
}

/// `lever evidence prove` of support-42's decision at seq 13: the proof file's text.
fn prove_13(dir: &Path, evidence: &str) -> String {
    let args = [
        "evidence",
        "prove",
        "--run",
        "support-42",
        "--seq",
        "13",
        "--evidence",
        evidence,
    ];
    ok(dir, &args)
}

fn keys(dir: &Path) {
    ok(dir, &["keygen", "--out", "log"]);
    ok(dir, &["keygen", "--out", "witness"]);
    ok(dir, &["keygen", "--out", "stranger"]);
}

#[test]
fn a_decision_is_proved_offline_and_checkpoints_extend_each_other_on_both_stores() {
    let schema = Schema::new();
    for evidence in ["file:ev", schema.url.as_str()] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        keys(dir);
        let events = super::root().join("examples/events/support.jsonl");
        let events = events.to_str().unwrap();
        store_with_checkpoint(dir, evidence, events, "c1.txt");
        let c1 = std::fs::read_to_string(dir.join("c1.txt")).unwrap();
        let lines: Vec<&str> = c1.lines().collect();
        assert_eq!(lines[0], "example.com/lever");
        assert_eq!(lines[1], "25", "24 records of the run and the artifact");
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("— ed25519:"), "{c1}");
        let proof = prove_13(dir, evidence);
        std::fs::write(dir.join("p.json"), &proof).unwrap();
        // Checked with nothing but the binary: no store.
        let said = ok(
            dir,
            &["evidence", "check-proof", "p.json", "--trust", "log.pub"],
        );
        assert!(
            said.starts_with(
                "verified: the decision record of run support-42 at seq 13 is record "
            ),
            "{said}"
        );
        let p: serde_json::Value = serde_json::from_str(&proof).unwrap();
        let record: serde_json::Value =
            serde_json::from_str(p["record"].as_str().unwrap()).unwrap();
        assert_eq!(
            (record["body"]["action"].as_str(), record["seq"].as_u64()),
            (Some("stop"), Some(13))
        );
        // The store grows; the next checkpoint extends the first.
        let other = dir.join("other.jsonl");
        std::fs::write(
            &other,
            std::fs::read_to_string(events)
                .unwrap()
                .replace("support-42", "support-43"),
        )
        .unwrap();
        store_with_checkpoint(dir, evidence, other.to_str().unwrap(), "c2.txt");
        let said = ok(
            dir,
            &[
                "evidence",
                "consistency",
                "c1.txt",
                "c2.txt",
                "--trust",
                "log.pub",
                "--evidence",
                evidence,
            ],
        );
        assert!(
            said.starts_with("consistent: the tree of 50 records extends the tree of 25"),
            "{said}"
        );
        // A witness checks consistency, then cosigns; its signature alone is trusted too.
        let cosigned = ok(dir, &["evidence", "cosign", "c2.txt", "--sign", "witness"]);
        assert_eq!(cosigned.matches("\n— ").count(), 2, "{cosigned}");
        std::fs::write(dir.join("c2w.txt"), cosigned).unwrap();
        ok(
            dir,
            &[
                "evidence",
                "consistency",
                "c1.txt",
                "c2w.txt",
                "--trust",
                "log.pub",
                "--evidence",
                evidence,
            ],
        );
        refused(
            dir,
            &[
                "evidence",
                "consistency",
                "c2w.txt",
                "c2w.txt",
                "--trust",
                "stranger.pub",
                "--evidence",
                evidence,
            ],
            "no signature on the checkpoint is by a trusted key",
        );
    }
}

#[test]
fn every_change_to_a_proof_is_caught_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    keys(dir);
    let events = super::root().join("examples/events/support.jsonl");
    store_with_checkpoint(dir, "file:ev", events.to_str().unwrap(), "c1.txt");
    let proof = prove_13(dir, "file:ev");
    let p: serde_json::Value = serde_json::from_str(&proof).unwrap();
    let check = |name: &str, changed: serde_json::Value, why: &str| {
        std::fs::write(dir.join(name), changed.to_string()).unwrap();
        refused(
            dir,
            &["evidence", "check-proof", name, "--trust", "log.pub"],
            why,
        );
    };
    let mut edited = p.clone();
    edited["record"] = p["record"]
        .as_str()
        .unwrap()
        .replace("\"stop\"", "\"continue\"")
        .into();
    check("edited.json", edited, "the record is not record");
    let mut moved = p.clone();
    moved["index"] = (p["index"].as_u64().unwrap() + 1).into();
    check("moved.json", moved, "the record is not record");
    let note = p["checkpoint"].as_str().unwrap();
    let mut stripped = p.clone();
    stripped["checkpoint"] = note.split("\n\n").next().unwrap().to_string().into();
    check("stripped.json", stripped, "the checkpoint is not signed");
    // The checkpoint's signature replaced by a stranger's.
    let body = note.split("\n\n").next().unwrap();
    std::fs::write(dir.join("body.txt"), format!("{body}\n")).unwrap();
    let by_stranger = ok(
        dir,
        &["evidence", "cosign", "body.txt", "--sign", "stranger"],
    );
    let mut swapped = p.clone();
    swapped["checkpoint"] = by_stranger.into();
    check(
        "swapped.json",
        swapped,
        "no signature on the checkpoint is by a trusted key",
    );
    // A checkpoint of another size, with a forged signature line.
    let mut resized = p.clone();
    resized["checkpoint"] = note.replacen("\n25\n", "\n26\n", 1).into();
    check(
        "resized.json",
        resized,
        "no signature on the checkpoint is by a trusted key",
    );
}

/// `lever evidence consistency` of the kept checkpoint with itself, against `evidence`.
fn consistency(evidence: &str) -> [&str; 8] {
    [
        "evidence",
        "consistency",
        "kept.txt",
        "kept.txt",
        "--trust",
        "log.pub",
        "--evidence",
        evidence,
    ]
}

/// Runs SQL as the schema's owner, append-only triggers off (what a superuser can do).
pub(crate) fn tamper(schema: &Schema, sql: &str) {
    let mut c = schema.client();
    let s = &schema.name;
    c.batch_execute(&format!(
        "ALTER TABLE \"{s}\".records DISABLE TRIGGER records_append_only; {}; ALTER TABLE \"{s}\".records ENABLE ALWAYS TRIGGER records_append_only",
        sql.replace("{s}", &format!("\"{s}\""))
    ))
    .unwrap();
}

#[test]
fn every_rewrite_of_a_store_is_caught_against_a_kept_checkpoint() {
    let events = super::root().join("examples/events/support.jsonl");
    let events = events.to_str().unwrap();
    let decision_13 = "kind = 'decision' AND seq = 13";
    let rewritten =
        "do not hash to the checkpoint's root: the store was rewritten since it was signed";
    let shorter = "the store was rewritten since it was signed";
    let named = "the first altered record: ";
    let cut = "every chain verifies on its own: records were cut off the end of a chain";
    let cases: [(&str, &str, String); 5] = [
        (rewritten, named, format!("UPDATE {{s}}.records SET record = convert_to(replace(convert_from(record, 'UTF8'), '\"stop\"', '\"continue\"'), 'UTF8') WHERE {decision_13}")),
        (shorter, named, "DELETE FROM {s}.records WHERE kind = 'signal' AND seq = 10".to_string()),
        (shorter, cut, "DELETE FROM {s}.records WHERE chain = 'r:support-42' AND n > 20".to_string()),
        (
            rewritten,
            named,
            "UPDATE {s}.records a SET record = b.record FROM {s}.records b WHERE a.chain = 'r:support-42' AND b.chain = a.chain AND ((a.n = 3 AND b.n = 4) OR (a.n = 4 AND b.n = 3))".to_string(),
        ),
        (rewritten, named, "UPDATE {s}.records SET record = convert_to(replace(convert_from(record, 'UTF8'), '\"5.40\"', '\"4.40\"'), 'UTF8') WHERE kind = 'signal' AND seq = 13".to_string()),
    ];
    for (why, what, sql) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        keys(dir);
        let schema = Schema::new();
        store_with_checkpoint(dir, &schema.url, events, "kept.txt");
        ok(dir, &consistency(&schema.url));
        tamper(&schema, &sql);
        refused(dir, &consistency(&schema.url), why);
        refused(dir, &consistency(&schema.url), what);
    }
    // A full rewrite, every hash recomputed: other events judged into a fresh store of the
    // same size. It verifies on its own, and is caught against the kept checkpoint.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    keys(dir);
    store_with_checkpoint(dir, "file:ev", events, "kept.txt");
    std::fs::remove_dir_all(dir.join("ev")).unwrap();
    let rewritten = dir.join("rewritten.jsonl");
    std::fs::write(
        &rewritten,
        std::fs::read_to_string(events)
            .unwrap()
            .replace("\"cost\":\"0.45\"", "\"cost\":\"0.44\""),
    )
    .unwrap();
    let examples = super::root().join("examples");
    ok(
        dir,
        &[
            "run",
            examples.to_str().unwrap(),
            "--events",
            rewritten.to_str().unwrap(),
            "--evidence",
            "file:ev",
        ],
    );
    ok(dir, &["evidence", "verify", "--evidence", "file:ev"]);
    refused(
        dir,
        &consistency("file:ev"),
        "every chain verifies on its own: records were cut off the end of a chain, or the store was rewritten",
    );
    refused(
        dir,
        &consistency("file:ev"),
        "the store was rewritten since it was signed",
    );
}

#[test]
fn lever_serve_takes_signed_checkpoints_on_its_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    keys(dir);
    std::fs::write(
        dir.join("lever.toml"),
        "[checkpoint]\ninterval = \"1s\"\nkey = \"log\"\norigin = \"example.com/lever\"\n",
    )
    .unwrap();
    let served = super::served::Served::start_with(dir, "file:ev", &["--config", "lever.toml"]);
    for (path, body) in super::server::requests() {
        assert_eq!(served.post(&path, &body).0, 200, "{path}");
    }
    // Wait for a checkpoint that holds the whole run (its 24 records and the artifact).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let sizes: Vec<u64> = super::store_records(dir, "file:ev", "checkpoint")
            .iter()
            .map(|r| r["body"]["size"].as_u64().unwrap())
            .collect();
        if sizes.last().is_some_and(|s| *s >= 25) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint of the run: {sizes:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(served.stop(), Some(0));
    let proof = prove_13(dir, "file:ev");
    std::fs::write(dir.join("p.json"), proof).unwrap();
    let said = ok(
        dir,
        &["evidence", "check-proof", "p.json", "--trust", "log.pub"],
    );
    assert!(
        said.contains("in the checkpoint of example.com/lever signed by ed25519:"),
        "{said}"
    );
    ok(dir, &["evidence", "verify", "--evidence", "file:ev"]);
}

#[test]
fn servers_of_one_postgresql_store_take_checkpoints_in_turn() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    keys(dir);
    let schema = Schema::new();
    std::fs::write(
        dir.join("lever.toml"),
        "[checkpoint]\ninterval = \"1s\"\nkey = \"log\"\n",
    )
    .unwrap();
    let args = ["--config", "lever.toml"];
    let a = super::served::Served::start_with(dir, &schema.url, &args);
    let b = super::served::Served::start_with(dir, &schema.url, &args);
    for (i, (path, body)) in super::server::requests().into_iter().enumerate() {
        let server = if i % 2 == 0 { &a } else { &b };
        assert_eq!(server.post(&path, &body).0, 200, "{path}");
    }
    std::thread::sleep(std::time::Duration::from_millis(3500));
    assert_eq!(a.stop(), Some(0));
    assert_eq!(b.stop(), Some(0));
    let notes: Vec<String> = super::store_records(dir, &schema.url, "checkpoint")
        .iter()
        .map(|r| r["body"]["note"].as_str().unwrap().to_string())
        .collect();
    assert!(notes.len() >= 3, "{notes:?}");
    // No two claimed the same records: every checkpoint's tree is the log's, and the last
    // extends the first.
    std::fs::write(dir.join("first.txt"), &notes[0]).unwrap();
    std::fs::write(dir.join("last.txt"), notes.last().unwrap()).unwrap();
    let consistent = [
        "evidence",
        "consistency",
        "first.txt",
        "last.txt",
        "--trust",
        "log.pub",
        "--evidence",
        &schema.url,
    ];
    ok(dir, &consistent);
    prove_13(dir, &schema.url);
    // While another holds the lock, a checkpoint waits its turn: it is refused, not forked.
    let mut holder = schema.client();
    let key = format!("{}:checkpoint", schema.name);
    holder
        .execute("SELECT pg_advisory_lock(hashtext($1))", &[&key])
        .unwrap();
    let out = lever(
        dir,
        &[
            "evidence",
            "checkpoint",
            "--sign",
            "log",
            "--evidence",
            &schema.url,
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("another checkpoint of this store is being taken"),
        "{}",
        text(&out.stderr)
    );
}
