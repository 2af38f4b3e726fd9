//! Three servers on one PostgreSQL schema behind no routing: every request goes to a
//! server picked at random, two clients report steps of one run at once (parallel tool
//! calls), and one server is killed mid-load. The store's decisions are what one `lever
//! run` makes of the same inputs, and nothing acknowledged is lost.

use super::durable_runs::{POLICY, run_start, start};
use super::served::Served;
use lever::evidence::{ChainId, EvidenceStore, RecordKind};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

const RUNS: usize = 12;
const STEPS: u32 = 8;

/// A step of a run: both reporters send this very body at once (two parallel tool calls
/// of one price at one moment), and each must count.
fn step(m: u32) -> String {
    format!(r#"{{"ts":"2026-01-20T10:{m:02}:00Z","cost":"0.15"}}"#)
}

/// Every server a client may pick; `None` once it was killed.
type Fleet = Arc<RwLock<Vec<Option<String>>>>;

/// Acknowledged decisions: (run, seq) → the decision answered.
type Acked = Arc<Mutex<BTreeMap<(String, u64), Value>>>;

fn post(
    agent: &ureq::Agent,
    fleet: &Fleet,
    pick: usize,
    path: &str,
    body: &str,
) -> Option<(u16, Value)> {
    let bases: Vec<String> = fleet.read().unwrap().iter().flatten().cloned().collect();
    let base = bases.get(pick % bases.len())?;
    let mut r = agent
        .post(&format!("{base}{path}"))
        .header("content-type", "application/json")
        .send(body)
        .ok()?;
    let text = r.body_mut().read_to_string().ok()?;
    Some((r.status().as_u16(), serde_json::from_str(&text).ok()?))
}

/// One reporter of every run: its steps, each to a random server.
fn reporter(reporter: u32, fleet: Fleet, acked: Acked) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut pick = 7 * reporter as usize + 1;
    for m in 1..=STEPS {
        for run in 0..RUNS {
            pick = pick.wrapping_mul(1_103_515_245).wrapping_add(12_345) >> 3;
            let path = format!("/v1/runs/f{run}/steps");
            if let Some((200, d)) = post(&agent, &fleet, pick, &path, &step(m)) {
                let seq = d["seq"].as_u64().unwrap();
                let old = acked.lock().unwrap().insert((format!("f{run}"), seq), d);
                assert!(old.is_none(), "run f{run} seq {seq} answered twice");
            }
        }
    }
}

/// The event lines a run's stored decisions hold, in the chain's order.
fn stored_events(chain: &[lever::evidence::Stored]) -> Vec<String> {
    chain
        .iter()
        .filter(|s| s.record.kind == RecordKind::Decision)
        .map(|s| {
            let input = &s.record.body["input"];
            let mut line = serde_json::json!({
                "type": input["type"], "run_id": input["run_id"], "ts": input["ts"],
            });
            for field in ["tenant", "agent", "cost"] {
                if !input[field].is_null() {
                    line[field] = input[field].clone();
                }
            }
            line.to_string()
        })
        .collect()
}

#[test]
fn three_servers_on_one_postgresql_schema_decide_as_one_replay_of_the_store() {
    let schema = super::stores::Schema::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("p.policy"), POLICY).unwrap();
    let (port, _seen) = super::server::receiver(0);
    let mut servers: Vec<Option<Served>> = (0..3)
        .map(|_| Some(start(dir, &schema.url, port)))
        .collect();
    let fleet: Fleet = Arc::new(RwLock::new(
        servers
            .iter()
            .map(|s| s.as_ref().map(|s| s.base.clone()))
            .collect(),
    ));
    // Each run starts on a server of its own; its steps go anywhere.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    for run in 0..RUNS {
        let (status, d) = post(
            &agent,
            &fleet,
            run,
            "/v1/runs",
            &run_start(&format!("f{run}")),
        )
        .unwrap();
        assert_eq!(status, 200, "{d}");
    }
    let acked: Acked = Arc::default();
    let reporters: Vec<_> = (0..2)
        .map(|r| {
            let (fleet, acked) = (fleet.clone(), acked.clone());
            std::thread::spawn(move || reporter(r, fleet, acked))
        })
        .collect();
    // One server dies mid-load; the clients carry on with the other two.
    std::thread::sleep(Duration::from_millis(150));
    fleet.write().unwrap()[1] = None;
    servers[1].take().unwrap().kill();
    for r in reporters {
        r.join().unwrap();
    }

    let mut store = lever::evidence::postgres::PgStore::open(&schema.url).unwrap();
    let mut lines = Vec::new();
    let mut stored: BTreeMap<(String, u64), Value> = BTreeMap::new();
    for run in 0..RUNS {
        let id = format!("f{run}");
        let chain = store.read_chain(&ChainId::Run(id.clone())).unwrap();
        lines.extend(stored_events(&chain));
        for s in chain
            .iter()
            .filter(|s| s.record.kind == RecordKind::Decision)
        {
            let mut body = s.record.body.clone();
            body.as_object_mut().unwrap().remove("input");
            stored.insert((id.clone(), s.record.seq), body);
        }
    }
    // Nothing acknowledged is lost, and each answer is what the store holds.
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > RUNS * STEPS as usize,
        "{} acknowledged",
        acked.len()
    );
    for (key, answered) in acked.iter() {
        let mut answered = answered.clone();
        answered.as_object_mut().unwrap().remove("line");
        assert_eq!(stored.get(key), Some(&answered), "{key:?}");
    }
    // One replay of the stored inputs, run by run in the store's order, decides alike.
    std::fs::write(dir.join("events.jsonl"), lines.join("\n") + "\n").unwrap();
    let out = super::replay(dir, "file:replayed");
    let replayed = super::decisions_without_line(&out.stdout);
    assert_eq!(replayed.len(), stored.len());
    for d in replayed {
        let key = (
            d["run_id"].as_str().unwrap().to_string(),
            d["seq"].as_u64().unwrap(),
        );
        assert_eq!(stored.get(&key), Some(&d), "{key:?}");
    }
    // Both reporters' steps count ($2.40 sent): every run stopped at its $2.00 cap.
    let breached = stored.values().filter(|d| d["action"] == "stop").count();
    assert_eq!(breached, RUNS, "every run stops once at its cap");
    // The servers loaded runs others started, and judged again what another extended.
    let counter = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map_or(0, |v| v.parse().unwrap())
    };
    let (mut loaded, mut fenced) = (0, 0);
    for s in servers.iter().flatten() {
        let metrics = s.get("/metrics").1;
        loaded += counter(&metrics, "lever_runs_loaded_total");
        fenced += counter(&metrics, "lever_requests_fenced_total");
    }
    eprintln!("fleet: {loaded} runs loaded, {fenced} requests judged again after a fence");
    assert!(loaded > 0, "no server loaded a run another started");
    for s in servers.into_iter().flatten() {
        assert_eq!(s.stop(), Some(0));
    }
    super::assert_verifies(dir, &schema.url);
}
