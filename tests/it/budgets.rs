//! Budgets across runs through the real binary: the artifact's format, `lever fmt`,
//! `lever diff`, the stores' counters and `lever serve`.

use super::lever;
use std::path::Path;

const KEY_DAILY: &str = r#"import std.llm
policy key_daily {
    version 1
    scope all
    limit std.llm.cost to $20.00 per (tenant, api_key) per 1d { breach => stop }
}
"#;

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

#[test]
fn an_artifact_with_a_budget_is_format_version_2_and_says_so_when_inspected() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "p.policy", KEY_DAILY);
    let out = lever(tmp.path(), &["build", "p.policy", "-o", "p.lvc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(tmp.path().join("p.lvc")).unwrap();
    assert_eq!(u32::from_le_bytes(bytes[8..12].try_into().unwrap()), 2);
    let out = lever(tmp.path(), &["inspect", "p.lvc"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("format   2 ("), "{text}");
    assert!(
        text.contains("limit std.llm.cost to $20.00 per (tenant, api_key) per 1d"),
        "{text}"
    );
}

#[test]
fn fmt_keeps_a_budget_key_apart_from_per() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "p.policy",
        &KEY_DAILY.replace("(tenant, api_key)", "(tenant,api_key)"),
    );
    let out = lever(tmp.path(), &["fmt", "p.policy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(tmp.path().join("p.policy")).unwrap();
    assert_eq!(text, KEY_DAILY);
}

#[test]
fn diff_names_a_budget_widened_narrowed_added_and_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("per tenant per 1d", "budget_widened"),
        ("per (tenant, api_key) per 30d", "budget_narrowed"),
        ("per agent per 1d", "budget_changed"),
        ("", "budget_removed"),
    ];
    write(tmp.path(), "a.policy", KEY_DAILY);
    for (budget, kind) in cases {
        // The old artifact's key is `(tenant, api_key) per 1d`; the new one's is `budget`.
        let new = KEY_DAILY.replace("per (tenant, api_key) per 1d", budget);
        let (from, to) = if kind == "budget_widened" {
            (new.clone(), KEY_DAILY.to_string())
        } else {
            (KEY_DAILY.to_string(), new)
        };
        write(tmp.path(), "a.policy", &from);
        write(tmp.path(), "b.policy", &to);
        assert!(
            lever(tmp.path(), &["build", "a.policy", "-o", "a.lvc"])
                .status
                .success()
        );
        assert!(
            lever(tmp.path(), &["build", "b.policy", "-o", "b.lvc"])
                .status
                .success()
        );
        let out = lever(tmp.path(), &["diff", "a.lvc", "b.lvc", "--format", "json"]);
        assert_eq!(out.status.code(), Some(1), "{budget}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains(&format!("\"kind\": \"{kind}\"")),
            "{budget}: {text}"
        );
    }
}

/// A key's budget through `lever serve`: runs of one key share the counter, another key
/// has its own, and a restarted server carries on from the stored counter.
fn served_budget(evidence: &str, dir: &Path) {
    use super::served::Served;
    write(
        dir,
        "p.policy",
        &KEY_DAILY.replace("per (tenant, api_key) per 1d", "per api_key per 1d"),
    );
    let start = |run: &str, key: &str| {
        format!(
            r#"{{"run_id":"{run}","ts":"2026-01-20T10:00:00Z","tenant":"acme","api_key":"{key}"}}"#
        )
    };
    let step =
        |cost: &str, s: u32| format!(r#"{{"ts":"2026-01-20T10:00:{s:02}Z","cost":"{cost}"}}"#);
    let decided = |(status, text): (u16, String)| -> serde_json::Value {
        assert_eq!(status, 200, "{text}");
        serde_json::from_str(&text).unwrap()
    };
    let served = Served::launch(dir, &["--artifact", "p.policy", "--evidence", evidence]);
    for (run, key) in [("a", "k1"), ("b", "k1"), ("c", "k2")] {
        decided(served.post("/v1/runs", &start(run, key)));
    }
    let d = decided(served.post("/v1/runs/a/steps", &step("12.00", 1)));
    assert_eq!(d["budgets"][0]["counter"], "12.00");
    let d = decided(served.post("/v1/runs/c/steps", &step("5.00", 2)));
    assert_eq!(
        d["budgets"][0]["counter"], "5.00",
        "another key has its own counter"
    );
    let d = decided(served.post("/v1/runs/b/steps", &step("7.00", 3)));
    assert_eq!(
        (d["action"].as_str(), d["budgets"][0]["counter"].as_str()),
        (Some("continue"), Some("19.00"))
    );
    served.kill();
    // Restarted: the counter is the store's, not zero.
    let served = Served::launch(dir, &["--artifact", "p.policy", "--evidence", evidence]);
    decided(served.post("/v1/runs", &start("d", "k1")));
    let d = decided(served.post("/v1/runs/d/steps", &step("1.50", 4)));
    assert_eq!(d["action"], "stop", "{d}");
    assert_eq!(d["signals"][0]["observed"], "20.50");
    assert_eq!(d["signals"][0]["budget"]["per"]["api_key"], "k1");
    // A live run rebuilt from its chain carries on too.
    let d = decided(served.post("/v1/runs/c/steps", &step("1.00", 5)));
    assert_eq!(d["budgets"][0]["counter"], "6.00");
    // A run's state shows its budget's counter, which other runs of the key moved too.
    let (status, text) = served.get("/v1/runs/a");
    assert_eq!(status, 200, "{text}");
    let state: serde_json::Value = serde_json::from_str(&text).unwrap();
    let limit = &state["limits"][0];
    assert_eq!(limit["observed"], "20.50", "{state}");
    assert_eq!(limit["budget"]["per"]["api_key"], "k1");
    assert_eq!(limit["budget"]["window_start"], "2026-01-20T00:00:00Z");
    assert_eq!(served.stop(), Some(0));
    // What each key spent that day, as an auditor reads it from the store.
    let out = lever(
        dir,
        &[
            "evidence",
            "budgets",
            "--evidence",
            evidence,
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let spent = |key: &str| {
        rows.iter()
            .find(|r| r["per"]["api_key"] == key)
            .map(|r| (r["window_start"].clone(), r["value"].clone()))
    };
    let day = serde_json::json!("2026-01-20T00:00:00Z");
    assert_eq!(spent("k1"), Some((day.clone(), serde_json::json!("20.5"))));
    assert_eq!(spent("k2"), Some((day, serde_json::json!("6"))));
}

#[test]
fn serve_keeps_a_key_budget_across_runs_and_restarts_on_the_file_store() {
    let tmp = tempfile::tempdir().unwrap();
    served_budget("file:ev", tmp.path());
}

#[test]
fn serve_keeps_a_key_budget_across_runs_and_restarts_on_postgresql() {
    let schema = super::stores::Schema::new();
    let tmp = tempfile::tempdir().unwrap();
    served_budget(&schema.url, tmp.path());
}

/// A step's decision record that added `added` to key `k1`'s counter, judged at `counter`.
fn decision(run: &str, added: &str, counter: &str) -> lever::evidence::Record {
    lever::evidence::Record {
        kind: lever::evidence::RecordKind::Decision,
        artifact: "blake3:00".into(),
        run_id: Some(run.into()),
        seq: 1,
        index: 0,
        body: serde_json::json!({
            "event": "step",
            "budgets": [{
                "policy": "key_daily", "limit": "std.llm.cost",
                "per": {"api_key": "k1"}, "window_start": "2026-01-20T00:00:00Z",
                "added": added, "counter": counter,
            }],
        }),
    }
}

/// A store keeps each counter as the sum of its decisions; a server's batch judged on a
/// counter that moved is refused whole, and the same batch written late only adds.
fn counters_follow_the_records(store: &mut dyn lever::evidence::EvidenceStore) {
    use lever::evidence::{ChainId, Sealed, StoreError};
    let id = lever::evidence::budgets::counter_id(
        "key_daily",
        "std.llm.cost",
        &[("api_key".into(), "k1".into())],
        Some("2026-01-20T00:00:00Z"),
    );
    let value = |store: &mut dyn lever::evidence::EvidenceStore| {
        store.counters(std::slice::from_ref(&id)).unwrap()[&id]
    };
    assert_eq!(value(store), 0);
    store
        .append_exclusive(&Sealed::all([decision("r1", "0.80", "0.80")]))
        .unwrap();
    assert_eq!(value(store), 800_000_000);
    // Judged on 0.50: another writer's 0.80 is not in it.
    let stale = Sealed::all([decision("r2", "0.50", "1.00")]);
    match store.append_exclusive(&stale) {
        Err(StoreError::BudgetMoved(_)) => {}
        other => panic!("a batch judged on a counter that moved was {other:?}"),
    }
    assert_eq!(value(store), 800_000_000);
    assert!(
        store
            .read_chain(&ChainId::Run("r2".into()))
            .unwrap()
            .is_empty()
    );
    // Written late (an outage's queue, `lever run`): it only adds.
    assert_eq!(store.append(&stale).unwrap(), 1);
    assert_eq!(value(store), 1_300_000_000);
    // Again: nothing new, nothing added.
    assert_eq!(store.append(&stale).unwrap(), 0);
    assert_eq!(value(store), 1_300_000_000);
}

#[test]
fn the_file_store_keeps_budget_counters_with_its_records() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = lever::evidence::file::FileStore::open(&tmp.path().join("ev")).unwrap();
    counters_follow_the_records(&mut store);
    drop(store);
    // Reopened: summed again from the records.
    let mut store = lever::evidence::file::FileStore::open(&tmp.path().join("ev")).unwrap();
    let id = lever::evidence::budgets::counter_id(
        "key_daily",
        "std.llm.cost",
        &[("api_key".into(), "k1".into())],
        Some("2026-01-20T00:00:00Z"),
    );
    use lever::evidence::EvidenceStore;
    assert_eq!(
        store.counters(std::slice::from_ref(&id)).unwrap()[&id],
        1_300_000_000
    );
}

#[test]
fn postgresql_keeps_budget_counters_in_the_statement_that_writes_the_records() {
    let schema = super::stores::Schema::new();
    let mut store = lever::evidence::postgres::PgStore::open(&schema.url).unwrap();
    counters_follow_the_records(&mut store);
    let row = schema
        .client()
        .query_one(
            &format!(
                "SELECT policy, monitor, per, window_start, value FROM \"{}\".budgets",
                schema.name
            ),
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "key_daily");
    assert_eq!(row.get::<_, String>(2), r#"{"api_key":"k1"}"#);
    assert_eq!(
        row.get::<_, Option<String>>(3).as_deref(),
        Some("2026-01-20T00:00:00Z")
    );
    assert_eq!(row.get::<_, i64>(4), 1_300_000_000);
}

#[test]
fn explain_names_a_budget_counter_its_window_and_the_runs_that_spent_it() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "p.policy",
        &KEY_DAILY
            .replace("per (tenant, api_key) per 1d", "per api_key per 1d")
            .replace("$20.00", "$2.00"),
    );
    let start = |run: &str| {
        format!(
            r#"{{"type":"run_start","run_id":"{run}","ts":"2026-01-20T10:00:00Z","tenant":"t","api_key":"k1"}}"#
        )
    };
    let step = |run: &str, s: u32, cost: &str| {
        format!(
            r#"{{"type":"step","run_id":"{run}","ts":"2026-01-20T10:00:{s:02}Z","cost":"{cost}"}}"#
        )
    };
    let events = [
        start("a"),
        start("b"),
        step("a", 1, "1.30"),
        step("b", 2, "0.80"),
        step("b", 3, "0.10"),
    ];
    write(tmp.path(), "e.jsonl", &(events.join("\n") + "\n"));
    let out = lever(
        tmp.path(),
        &[
            "explain", "p.policy", "--events", "e.jsonl", "--run", "b", "--step", "3", "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let limit = &e["limits"][0];
    assert_eq!(limit["observed"], "2.20");
    assert_eq!(limit["zone"], "breach");
    let b = &limit["budget"];
    assert_eq!(b["per"]["api_key"], "k1");
    assert_eq!(b["window_start"], "2026-01-20T00:00:00Z");
    assert_eq!(
        (b["spent_before"].as_str(), b["added"].as_str()),
        (Some("2.10"), Some("0.10"))
    );
    assert_eq!(
        b["by_run"],
        serde_json::json!([{"run_id": "a", "spent": "1.30"}, {"run_id": "b", "spent": "0.90"}])
    );
}
