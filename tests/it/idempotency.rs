//! A retried step: a step whose `idempotency_key` its run already accepted is answered with
//! the stored decision and counted once, by the server that judged it, by a restarted one,
//! and by another server of the same PostgreSQL store.

use super::durable_runs::{POLICY, run_start, start};
use super::served::Served;
use super::stores::Schema;
use serde_json::Value;
use std::path::Path;

fn keyed_step(minute: u32, key: &str) -> String {
    format!(r#"{{"ts":"2026-01-20T10:{minute:02}:00Z","cost":"0.90","idempotency_key":"{key}"}}"#)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The run's decision records, as (seq, action).
fn stored_decisions(server: &Served, run: &str) -> Vec<(u64, String)> {
    let (status, text) = server.get(&format!("/v1/runs/{run}/evidence"));
    assert_eq!(status, 200, "{text}");
    text.lines()
        .map(json)
        .filter(|r| r["kind"] == "decision")
        .map(|r| {
            (
                r["seq"].as_u64().unwrap(),
                r["body"]["action"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Starts run `k1` and judges two keyed steps ($1.80 of a $2.00 cap): their decisions.
fn two_keyed_steps(first: &Served) -> [String; 2] {
    assert_eq!(first.post("/v1/runs", &run_start("k1")).0, 200);
    let (s1, d1) = first.post("/v1/runs/k1/steps", &keyed_step(1, "step-1"));
    let (s2, d2) = first.post("/v1/runs/k1/steps", &keyed_step(2, "step-2"));
    assert_eq!((s1, s2), (200, 200), "{d1} {d2}");
    assert_eq!(json(&d2)["signals"][0]["kind"], "near", "{d2}");
    [d1, d2]
}

/// Each retry, sent to `server`, answers the stored decision; a third step breaches at
/// $2.70, not at $3.60, and the store holds one decision per step.
fn retries_count_once(server: &Served, answered: &[String; 2]) {
    for (body, answered) in [keyed_step(1, "step-1"), keyed_step(2, "step-2")]
        .iter()
        .zip(answered)
    {
        let (status, text) = server.post("/v1/runs/k1/steps", body);
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            json(&text),
            json(answered),
            "a retry answers the stored decision"
        );
    }
    // A retry whose body changed is still the step the key names: it is not judged again.
    let (_, text) = server.post("/v1/runs/k1/steps", &keyed_step(3, "step-1"));
    assert_eq!(json(&text)["seq"], 2, "{text}");
    let (_, text) = server.post("/v1/runs/k1/steps", &keyed_step(4, "step-3"));
    let d3 = json(&text);
    assert_eq!(
        (d3["seq"].as_u64(), d3["action"].as_str()),
        (Some(4), Some("stop")),
        "{text}"
    );
    assert_eq!(
        d3["signals"][0]["observed"], "2.70",
        "each step counted once: {text}"
    );
    let want: Vec<(u64, String)> = [
        (1, "continue"),
        (2, "continue"),
        (3, "continue"),
        (4, "stop"),
    ]
    .iter()
    .map(|&(s, a)| (s, a.to_string()))
    .collect();
    assert_eq!(stored_decisions(server, "k1"), want);
}

#[test]
fn a_retried_step_is_answered_from_the_store_and_counted_once() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("p.policy"), POLICY).unwrap();
    let server = start(tmp.path(), "file:ev", 9);
    let answered = two_keyed_steps(&server);
    retries_count_once(&server, &answered);
}

#[test]
fn a_retry_is_recognised_after_a_restart_and_by_another_server_of_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: &Path = tmp.path();
    std::fs::write(dir.join("p.policy"), POLICY).unwrap();
    // The file store: the retries reach a server started after the first one stopped.
    let first = start(dir, "file:ev", 9);
    let answered = two_keyed_steps(&first);
    assert_eq!(first.stop(), Some(0));
    retries_count_once(&start(dir, "file:ev", 9), &answered);
    // PostgreSQL: the retries reach a second server of the same schema.
    let schema = Schema::new();
    let first = start(dir, &schema.url, 9);
    let answered = two_keyed_steps(&first);
    retries_count_once(&start(dir, &schema.url, 9), &answered);
}
