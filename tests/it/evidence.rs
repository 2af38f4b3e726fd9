//! Evidence through the real binary: what the store holds after a replay.

use super::lever;
use lever::evidence::EvidenceStore;
use lever::evidence::file::FileStore;
use serde_json::Value;

fn records(dir: &std::path::Path) -> Vec<Value> {
    let mut store = FileStore::open(dir).unwrap();
    store
        .read_all()
        .unwrap()
        .iter()
        .map(|s| serde_json::to_value(&s.record).unwrap())
        .collect()
}

/// `lever run p.policy --events events.jsonl --evidence file:ev` in `dir`.
fn run_policy(dir: &std::path::Path) -> std::process::Output {
    super::replay(dir, "file:ev")
}

#[test]
fn prompts_are_stored_only_as_the_policies_allow() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("p.policy"),
        r#"import std.llm
policy open_logging {
    version 1
    scope agent in ["logged", "pii"]
    inspect { prompt_logging allow  pii_capture deny }
    limit std.llm.cost to $100 { breach => stop }
}
policy closed {
    version 1
    scope agent == "closed"
    limit std.llm.cost to $100 { breach => stop }
}
"#,
    )
    .unwrap();
    let events = [
        r#"{"type":"run_start","run_id":"logged","ts":"2026-01-20T10:00:00Z","tenant":"t","agent":"logged"}"#,
        r#"{"type":"step","run_id":"logged","ts":"2026-01-20T10:00:01Z","prompt":"hello"}"#,
        r#"{"type":"run_start","run_id":"pii","ts":"2026-01-20T10:00:00Z","tenant":"t","agent":"pii"}"#,
        r#"{"type":"step","run_id":"pii","ts":"2026-01-20T10:00:01Z","prompt":"my card is 4111-1111-1111-1111","pii":true}"#,
        r#"{"type":"run_start","run_id":"closed","ts":"2026-01-20T10:00:00Z","tenant":"t","agent":"closed"}"#,
        r#"{"type":"step","run_id":"closed","ts":"2026-01-20T10:00:01Z","prompt":"secret plans"}"#,
        r#"{"type":"step","run_id":"closed","ts":"not a time","prompt":"rejected text"}"#,
    ];
    std::fs::write(tmp.path().join("events.jsonl"), events.join("\n")).unwrap();
    let out = run_policy(tmp.path());
    assert_eq!(out.status.code(), Some(1), "the last line is rejected");
    let all = records(&tmp.path().join("ev"));
    let step = |run: &str| {
        all.iter()
            .find(|r| r["kind"] == "decision" && r["run_id"] == run && r["seq"] == 2)
            .unwrap()
            .clone()
    };
    assert_eq!(step("logged")["body"]["prompt"], "hello");
    assert_eq!(step("pii")["body"]["redacted"], "pii_capture");
    assert_eq!(step("closed")["body"]["redacted"], "prompt_logging");
    let log =
        std::fs::read_to_string(tmp.path().join("ev/evidence-000000.log")).unwrap_or_else(|_| {
            String::from_utf8_lossy(
                &std::fs::read(tmp.path().join("ev/evidence-000000.log")).unwrap(),
            )
            .into_owned()
        });
    for secret in ["4111-1111", "secret plans", "rejected text"] {
        assert!(
            !log.contains(secret),
            "{secret:?} reached the evidence store"
        );
    }
    let rejected = all.iter().find(|r| r["kind"] == "rejected_input").unwrap();
    assert_eq!(rejected["body"]["line"], 7);
    assert!(rejected["body"]["input_blake3"].as_str().unwrap().len() == 64);
}

#[test]
fn every_decision_has_its_record_before_exit_and_a_breach_leaves_an_incident() {
    let tmp = tempfile::tempdir().unwrap();
    let out = super::replay_examples(tmp.path(), "file:ev");
    assert_eq!(out.status.code(), Some(0));
    let printed = String::from_utf8(out.stdout).unwrap().lines().count();
    let all = records(&tmp.path().join("ev"));
    let decisions = all.iter().filter(|r| r["kind"] == "decision").count();
    assert_eq!(decisions, printed);
    let kinds: Vec<&str> = all.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    for kind in [
        "artifact",
        "snapshot",
        "signal",
        "alert",
        "incident",
        "run_summary",
    ] {
        assert!(kinds.contains(&kind), "no {kind} record");
    }
    let incident = all.iter().find(|r| r["kind"] == "incident").unwrap();
    assert_eq!(incident["body"]["enforcement"], "stop");
    assert_eq!(incident["body"]["limit"], "std.llm.cost");
    let summary = all.iter().find(|r| r["kind"] == "run_summary").unwrap();
    assert_eq!(summary["body"]["final_action"], "stop");
    assert_eq!(summary["body"]["refused"], 1);
}

#[test]
fn a_torn_final_frame_is_cut_off_and_other_damage_refuses_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(
        super::replay_examples(tmp.path(), "file:ev").status.code(),
        Some(0)
    );
    let log = tmp.path().join("ev/evidence-000000.log");
    let full = std::fs::read(&log).unwrap();
    let before = records(&tmp.path().join("ev")).len();
    std::fs::write(&log, &full[..full.len() - 7]).unwrap();
    let again = super::replay_examples(tmp.path(), "file:ev");
    assert_eq!(again.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&again.stderr).contains("torn final frame"));
    let after = records(&tmp.path().join("ev"));
    assert_eq!(
        after.len(),
        before + 1,
        "the replay wrote back exactly the lost record, after the recovery record"
    );
    let recovery = after.iter().find(|r| r["kind"] == "recovery").unwrap();
    assert!(recovery["body"]["bytes_cut"].as_u64().unwrap() > 0);
    let verified = lever(tmp.path(), &["evidence", "verify", "--evidence", "file:ev"]);
    assert_eq!(verified.status.code(), Some(0), "{:?}", verified);
    let full = std::fs::read(&log).unwrap();
    let mut damaged = full.clone();
    damaged[40] ^= 0xff;
    std::fs::write(&log, &damaged).unwrap();
    let refused = super::replay_examples(tmp.path(), "file:ev");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("corrupt"));
    assert!(refused.stdout.is_empty());
}

#[test]
fn a_line_that_is_not_utf8_is_rejected_alone() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("p.policy"), "import std.llm\npolicy p {\n  version 1\n  scope all\n  limit std.llm.cost to $1 { breach => stop }\n}\n").unwrap();
    let mut events = Vec::new();
    events.extend_from_slice(
        br#"{"type":"run_start","run_id":"r1","ts":"2026-01-20T10:00:00Z","tenant":"t"}"#,
    );
    events.extend_from_slice(b"\n{\"type\":\"step\",\"run_id\":\"r1\",\"model\":\"\xff\xfe\"}\n");
    events.extend_from_slice(
        br#"{"type":"step","run_id":"r1","ts":"2026-01-20T10:00:01Z","cost":"2"}"#,
    );
    std::fs::write(tmp.path().join("events.jsonl"), events).unwrap();
    let out = run_policy(tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["action"], "rejected");
    assert!(
        lines[1]["reason"]
            .as_str()
            .unwrap()
            .starts_with("malformed_json: not UTF-8")
    );
    assert_eq!(lines[2]["action"], "stop");
    assert_eq!(lines[2]["seq"], 2);
}

#[test]
fn a_line_over_the_limit_is_rejected_unread_and_stores_only_its_hash() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("p.policy"),
        "import std.llm\npolicy p { version 1 scope all limit std.llm.cost to $1 { breach => stop } }\n",
    )
    .unwrap();
    let huge = format!(
        r#"{{"type":"step","run_id":"r","ts":"2026-01-20T10:00:01Z","prompt":"{}"}}"#,
        "x".repeat(3 << 20)
    );
    let events = format!(
        "{}\n{huge}\n{}\n",
        r#"{"type":"run_start","run_id":"r","ts":"2026-01-20T10:00:00Z","tenant":"t"}"#,
        r#"{"type":"step","run_id":"r","ts":"2026-01-20T10:00:02Z","cost":"0.1"}"#
    );
    std::fs::write(tmp.path().join("events.jsonl"), events).unwrap();
    let out = run_policy(tmp.path());
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let second: Value = serde_json::from_str(stdout.lines().nth(1).unwrap()).unwrap();
    assert_eq!(second["action"], "rejected");
    assert!(
        second["reason"]
            .as_str()
            .unwrap()
            .starts_with(&format!("invalid_field: the line is {} bytes", huge.len())),
        "{second}"
    );
    let stored = std::fs::metadata(tmp.path().join("ev/evidence-000000.log"))
        .unwrap()
        .len();
    assert!(stored < 100_000, "the store holds {stored} bytes");
}
