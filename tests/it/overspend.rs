//! Overspend of a budget across runs, measured: many clients, each its own run, every step
//! on one API key with a $20.00 daily budget, each request to a server picked at random.
//! The store's counter must equal the sum of the stored steps' cost exactly; no step whose
//! counter (after its own contribution) reached $20.00 may be answered `continue`; and the
//! overshoot is at most the steps in flight when the budget was crossed (one per client,
//! since each client waits for its answer), never a multiple of the budget.
//!
//! `LEVER_BUDGET_CLIENTS` (default 64) and `LEVER_BUDGET_SERVERS` (PostgreSQL, default 3).

use super::served::Served;
use super::{cents, env_or};
use lever::evidence::{EvidenceStore, RecordKind};
use std::time::Duration;

const POLICY: &str = r#"import std.llm
policy key_daily {
    version 1
    scope all
    limit std.llm.cost to $20.00 per api_key per 1d { breach => stop }
}
"#;

/// Cents of a step.
const STEP_CENTS: u64 = 10;
const BUDGET_CENTS: u64 = 2_000;

/// One client: starts its run, then reports steps until the run is stopped. Each request
/// goes to a server picked by the client's own sequence.
fn client(n: usize, bases: Vec<String>) -> u32 {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let post = |pick: usize, path: &str, body: String| -> (u16, serde_json::Value) {
        let base = &bases[pick % bases.len()];
        let mut r = agent
            .post(&format!("{base}{path}"))
            .header("content-type", "application/json")
            .send(body)
            .unwrap();
        let text = r.body_mut().read_to_string().unwrap();
        (
            r.status().as_u16(),
            serde_json::from_str(&text).unwrap_or_default(),
        )
    };
    let run = format!("o{n}");
    let start = format!(
        r#"{{"run_id":"{run}","ts":"2026-01-20T10:00:00Z","tenant":"acme","api_key":"k1"}}"#
    );
    assert_eq!(post(n, "/v1/runs", start).0, 200);
    let mut conflicts = 0;
    for s in 1..10_000usize {
        let body = format!(
            r#"{{"ts":"2026-01-20T10:{:02}:{:02}Z","cost":"0.10"}}"#,
            s / 60 % 60,
            s % 60
        );
        let (status, d) = post(n * 31 + s * 7, &format!("/v1/runs/{run}/steps"), body);
        match status {
            200 if d["action"] == "continue" => {}
            200 => break,
            // Counters kept moving under other servers: the client retries, as told.
            409 => conflicts += 1,
            _ => panic!("{status}: {d}"),
        }
    }
    conflicts
}

/// Loads the servers and checks the store; returns (counter, continued, steps) in cents
/// and steps.
fn overspend(evidence: &str, dir: &std::path::Path, servers: usize) -> String {
    std::fs::write(dir.join("p.policy"), POLICY).unwrap();
    let fleet: Vec<Served> = (0..servers)
        .map(|_| Served::launch(dir, &["--artifact", "p.policy", "--evidence", evidence]))
        .collect();
    let bases: Vec<String> = fleet.iter().map(|s| s.base.clone()).collect();
    let clients = env_or("LEVER_BUDGET_CLIENTS", 64);
    let threads: Vec<_> = (0..clients)
        .map(|n| {
            let bases = bases.clone();
            std::thread::spawn(move || client(n, bases))
        })
        .collect();
    let conflicts: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    for s in fleet {
        assert_eq!(s.stop(), Some(0));
    }
    let mut store: Box<dyn EvidenceStore> = match evidence.strip_prefix("file:") {
        Some(d) => Box::new(lever::evidence::file::FileStore::open(&dir.join(d)).unwrap()),
        None => Box::new(lever::evidence::postgres::PgStore::open(evidence).unwrap()),
    };
    let (mut spent, mut continued, mut steps) = (0u64, 0u64, 0u64);
    let mut judged: Vec<(u64, u64)> = Vec::new();
    for s in store.read_all().unwrap() {
        let body = &s.record.body;
        if s.record.kind != RecordKind::Decision || body["event"] != "step" {
            continue;
        }
        let cost = cents(body["input"]["cost"].as_str().unwrap());
        let counter = cents(body["budgets"][0]["counter"].as_str().unwrap());
        spent += cost;
        steps += 1;
        judged.push((counter, cost));
        if body["action"] == "continue" {
            continued += cost;
            assert!(
                counter < BUDGET_CENTS,
                "run {:?} seq {} was answered continue at counter {counter}",
                s.record.run_id,
                s.record.seq
            );
        }
    }
    // Exact: every step was judged on the counter every step before it left, so the
    // counters the decisions show, in order, are the running sums of their costs.
    judged.sort();
    let mut running = 0;
    for (counter, cost) in &judged {
        running += cost;
        assert_eq!(
            *counter, running,
            "a step was judged on a counter that had moved"
        );
    }
    let id = lever::evidence::budgets::counter_id(
        "key_daily",
        "std.llm.cost",
        &[("api_key".into(), "k1".into())],
        Some("2026-01-20T00:00:00Z"),
    );
    let counter = store.counters(std::slice::from_ref(&id)).unwrap()[&id];
    assert_eq!(
        counter as u64,
        spent * 10_000_000,
        "the counter is the sum of the stored steps"
    );
    assert!(continued <= BUDGET_CENTS, "continued {continued} cents");
    let overshoot = spent.saturating_sub(BUDGET_CENTS);
    assert!(
        overshoot <= clients as u64 * STEP_CENTS,
        "overshoot {overshoot} cents with {clients} clients in flight"
    );
    format!(
        "{servers} server(s), {clients} clients: {steps} steps, counter ${}.{:02}, answered continue ${}.{:02}, overshoot ${}.{:02} (at most {clients} steps in flight: ${}.{:02}; N x budget: ${}.00), {conflicts} requests answered 409 after their counters kept moving",
        spent / 100,
        spent % 100,
        continued / 100,
        continued % 100,
        overshoot / 100,
        overshoot % 100,
        clients as u64 * STEP_CENTS / 100,
        clients as u64 * STEP_CENTS % 100,
        servers as u64 * BUDGET_CENTS / 100,
    )
}

#[test]
fn three_servers_on_postgresql_never_allow_more_than_the_budget() {
    let schema = super::stores::Schema::new();
    let tmp = tempfile::tempdir().unwrap();
    let servers = env_or("LEVER_BUDGET_SERVERS", 3);
    eprintln!(
        "overspend (PostgreSQL): {}",
        overspend(&schema.url, tmp.path(), servers)
    );
}

#[test]
fn one_server_on_the_file_store_never_allows_more_than_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    eprintln!(
        "overspend (file store): {}",
        overspend("file:ev", tmp.path(), 1)
    );
}
