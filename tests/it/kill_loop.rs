//! The kill -9 loop: `lever serve` killed at random moments under a bounded load of
//! concurrent clients, and started again on the same store, again and again. After every
//! restart each acknowledged decision is in the store exactly once, every run's spend is
//! the sum of its stored steps (the runs in flight continue with the monitors they had),
//! `lever evidence verify` passes, and every stored alert reaches the receiver at least
//! once.
//!
//! `LEVER_KILLS` sets the kills (CI runs a few; the closing note reports a long run),
//! `LEVER_KILL_SEED` the seed: the moments of the kills and the clients' choices follow it.

use super::durable_runs::{run_start, start, step};
use super::{cents, env_or};

/// The durable-runs policy, and a daily budget of the tenant that never trips but counts
/// every step of every run: it must survive every kill exactly.
fn policy() -> String {
    super::durable_runs::POLICY.to_string()
        + "policy tenant_day { version 1 scope all\n  limit std.llm.cost to $1_000_000 per tenant per 1d { breach => stop } }\n"
}
use super::served::Served;
use lever::evidence::{ChainId, EvidenceStore, RecordKind, Stored};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;

/// xorshift64*, seeded.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// Acknowledged decisions (run, seq, action), and the steps sent per run.
#[derive(Clone, Default)]
struct Acked {
    decisions: Arc<Mutex<Vec<(String, u64, String)>>>,
    sent: Arc<Mutex<BTreeMap<String, u64>>>,
}

/// One client: runs of up to twelve $0.30 steps against the $2.00 cap, each request sent
/// once to whichever server is up. A request that gets no answer may or may not have been
/// judged; the client does not send it again (a retried step is a new step).
fn client(i: usize, seed: u64, base: Arc<RwLock<String>>, stop: Arc<AtomicBool>, acked: Acked) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let mut rng = Rng(seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let post = |path: &str, body: &str| -> Option<(u16, serde_json::Value)> {
        let url = format!("{}{path}", base.read().unwrap());
        let mut r = agent
            .post(&url)
            .header("content-type", "application/json")
            .send(body)
            .ok()?;
        let text = r.body_mut().read_to_string().ok()?;
        Some((r.status().as_u16(), serde_json::from_str(&text).ok()?))
    };
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        k += 1;
        let run = format!("c{i}-{k}");
        // A start is sent until it is known to be stored (a 422 duplicate_run says an
        // earlier attempt was).
        loop {
            match post("/v1/runs", &run_start(&run)) {
                Some((200, _)) => break,
                Some((422, d))
                    if d["reason"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("duplicate_run") =>
                {
                    break;
                }
                _ if stop.load(Ordering::Relaxed) => return,
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let steps = 1 + rng.below(12) as u32;
        for m in 1..=steps {
            *acked.sent.lock().unwrap().entry(run.clone()).or_default() += 1;
            match post(&format!("/v1/runs/{run}/steps"), &step(m)) {
                Some((200, d)) => {
                    let action = d["action"].as_str().unwrap_or("").to_string();
                    let seq = d["seq"].as_u64().unwrap_or(0);
                    let mut decisions = acked.decisions.lock().unwrap();
                    decisions.push((run.clone(), seq, action.clone()));
                    drop(decisions);
                    if action != "continue" {
                        break;
                    }
                }
                Some(_) | None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        if rng.below(4) > 0 {
            let _ = post(
                &format!("/v1/runs/{run}/end"),
                r#"{"ts":"2026-01-20T11:00:00Z"}"#,
            );
        }
    }
}

/// The clients at work against whichever server `base` names, until `stop`.
struct Load {
    base: Arc<RwLock<String>>,
    stop: Arc<AtomicBool>,
    acked: Acked,
    clients: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(served: &Served, seed: u64) -> Load {
        let base = Arc::new(RwLock::new(served.base.clone()));
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Acked::default();
        let clients = (0..CLIENTS)
            .map(|i| {
                let (base, stop, acked) = (base.clone(), stop.clone(), acked.clone());
                std::thread::spawn(move || client(i, seed, base, stop, acked))
            })
            .collect();
        Load {
            base,
            stop,
            acked,
            clients,
        }
    }

    /// Stops the clients; what they were answered.
    fn finish(self) -> Acked {
        self.stop.store(true, Ordering::Relaxed);
        for c in self.clients {
            c.join().unwrap();
        }
        self.acked
    }
}

fn open_store(evidence: &str, dir: &Path) -> Box<dyn EvidenceStore> {
    match evidence.strip_prefix("file:") {
        Some(d) => {
            Box::new(lever::evidence::file::FileStore::open_read_only(&dir.join(d)).unwrap())
        }
        None => Box::new(lever::evidence::postgres::PgStore::open(evidence).unwrap()),
    }
}

/// A run's stored spend, in cents, checked against what its signals and summary say;
/// and its stored steps.
fn check_run(run: &str, chain: &[Stored]) -> (u64, u64) {
    let mut spent = 0;
    let mut steps = 0;
    for s in chain {
        let body = &s.record.body;
        match s.record.kind {
            RecordKind::Decision if body["event"] == "step" => {
                spent += cents(body["input"]["cost"].as_str().unwrap());
                steps += 1;
            }
            RecordKind::Signal => {
                let observed = cents(body["observed"].as_str().unwrap());
                assert_eq!(observed, spent, "run {run} seq {}: observed", s.record.seq);
            }
            RecordKind::RunSummary => {
                assert_eq!(
                    cents(body["cost"].as_str().unwrap()),
                    spent,
                    "run {run}: summary"
                );
                assert_eq!(body["steps"], steps, "run {run}: steps");
            }
            _ => {}
        }
    }
    (spent, steps)
}

/// Everything acknowledged is stored once, every run agrees with itself and with what the
/// server shows of it, and the store verifies.
fn check_store(evidence: &str, dir: &Path, served: &Served, acked: &Acked) -> Vec<String> {
    let mut store = open_store(evidence, dir);
    let sent = acked.sent.lock().unwrap().clone();
    let acked = acked.decisions.lock().unwrap().clone();
    let runs: BTreeSet<String> = sent.keys().cloned().collect();
    let mut alerts = Vec::new();
    let mut counted: Vec<(String, u64, u64)> = Vec::new();
    for run in &runs {
        let chain = store.read_chain(&ChainId::Run(run.clone())).unwrap();
        counted.extend(budget_steps(&chain));
        let decisions: BTreeMap<u64, &serde_json::Value> = chain
            .iter()
            .filter(|s| s.record.kind == RecordKind::Decision)
            .map(|s| (s.record.seq, &s.record.body))
            .collect();
        for (_, seq, action) in acked.iter().filter(|(r, _, _)| r == run) {
            let stored = decisions
                .get(seq)
                .unwrap_or_else(|| panic!("run {run} seq {seq} was acknowledged, not stored"));
            assert_eq!(stored["action"], action.as_str(), "run {run} seq {seq}");
        }
        let (spent, steps) = check_run(run, &chain);
        assert!(
            steps <= sent[run],
            "run {run}: {steps} steps stored, {} sent",
            sent[run]
        );
        let (status, text) = served.get(&format!("/v1/runs/{run}"));
        if chain.is_empty() {
            assert_eq!(status, 404, "{text}");
            continue;
        }
        assert_eq!(status, 200, "{text}");
        let state: serde_json::Value = serde_json::from_str(&text).unwrap();
        let shown = state["totals"]["cost"].as_str().unwrap().replace('.', "");
        assert_eq!(
            shown.parse::<u64>().unwrap(),
            spent,
            "run {run}: the server's state"
        );
        alerts.extend(
            chain
                .iter()
                .filter(|s| s.record.kind == RecordKind::Alert)
                .map(|s| lever::base::hash::hex(&s.record.id())),
        );
    }
    check_budgets(store.as_mut(), counted);
    drop(store);
    super::assert_verifies(dir, evidence);
    alerts
}

/// Each stored step's budget counter: (counter id, cents added, counter after, in cents).
fn budget_steps(chain: &[Stored]) -> Vec<(String, u64, u64)> {
    let cents = |v: &serde_json::Value| cents(v.as_str().unwrap());
    chain
        .iter()
        .filter(|s| s.record.kind == RecordKind::Decision)
        .flat_map(|s| {
            s.record.body["budgets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|c| {
            let id = lever::evidence::budgets::counter_id(
                c["policy"].as_str().unwrap(),
                c["limit"].as_str().unwrap(),
                &[("tenant".into(), c["per"]["tenant"].as_str().unwrap().into())],
                c["window_start"].as_str(),
            );
            (id, cents(&c["added"]), cents(&c["counter"]))
        })
        .collect()
}

/// Through every kill, each budget counter was exact: the stored steps' counters, in
/// order, are the running sums of what they added, and the store's counter is the total.
fn check_budgets(store: &mut dyn EvidenceStore, mut counted: Vec<(String, u64, u64)>) {
    counted.sort_by(|a, b| (&a.0, a.2).cmp(&(&b.0, b.2)));
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    for (id, added, counter) in &counted {
        let total = totals.entry(id.clone()).or_insert(0);
        *total += added;
        assert_eq!(
            *counter, *total,
            "a step was judged on a counter that had moved: {id}"
        );
    }
    assert!(!totals.is_empty(), "the load added to no budget");
    let ids: Vec<String> = totals.keys().cloned().collect();
    let stored = store.counters(&ids).unwrap();
    for (id, total) in totals {
        assert_eq!(
            stored[&id] as u64,
            total * 10_000_000,
            "the store's counter {id}"
        );
    }
}

fn kill_loop(evidence: &str, dir: &Path) {
    let kills = env_or("LEVER_KILLS", 3);
    let seed = env_or("LEVER_KILL_SEED", 0x5eed);
    std::fs::write(dir.join("p.policy"), policy()).unwrap();
    let (port, seen) = super::server::receiver(0);
    let mut served = start(dir, evidence, port);
    let load = Load::start(&served, seed);
    let mut rng = Rng(seed);
    for kill in 0..kills {
        std::thread::sleep(Duration::from_millis(50 + rng.below(400)));
        served.kill();
        served = start(dir, evidence, port);
        assert!(
            !served.said.contains("error") && !served.said.contains("refused"),
            "kill {kill}: {}",
            served.said
        );
        *load.base.write().unwrap() = served.base.clone();
    }
    std::thread::sleep(Duration::from_millis(300));
    let acked = load.finish();
    let acknowledged = acked.decisions.lock().unwrap().len();
    assert!(
        acknowledged > kills as usize,
        "only {acknowledged} decisions acknowledged"
    );
    let alerts = check_store(evidence, dir, &served, &acked);
    // Every stored alert reaches the receiver at least once, whichever server stored it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let heard: BTreeSet<String> = seen
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, headers, _)| {
                headers.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("lever-delivery-id:")
                        .map(|v| v.trim().to_string())
                })
            })
            .collect();
        let missing: Vec<&String> = alerts.iter().filter(|a| !heard.contains(*a)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alerts never delivered: {missing:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "kill loop ({evidence}): {kills} kills, {acknowledged} decisions acknowledged, {} alerts delivered",
        alerts.len()
    );
    assert_eq!(served.stop(), Some(0));
}

#[test]
fn killed_at_random_moments_under_load_the_file_store_server_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    kill_loop("file:ev", tmp.path());
}

#[test]
fn killed_at_random_moments_under_load_the_postgresql_server_loses_nothing() {
    let schema = super::stores::Schema::new();
    let tmp = tempfile::tempdir().unwrap();
    kill_loop(&schema.url, tmp.path());
}

/// PostgreSQL drops the server's connections again and again under load (as a restart of
/// the database does, mid-transaction and mid-commit): the server reconnects, retries
/// without doubling, or spills and writes later. Nothing acknowledged is lost, nothing is
/// stored twice, every run's spend is the sum of its stored steps, and the store verifies.
#[test]
fn postgresql_dropping_every_connection_under_load_loses_and_doubles_nothing() {
    let schema = super::stores::Schema::new();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("p.policy"), policy()).unwrap();
    let (port, _seen) = super::server::receiver(0);
    let served = start(dir, &schema.url, port);
    let load = Load::start(&served, 0x5eed);
    let mut cut = 0;
    // By hand, `LEVER_PG_RESTART=VERSION` restarts the local cluster itself mid-load.
    if let Ok(version) = std::env::var("LEVER_PG_RESTART") {
        std::thread::sleep(Duration::from_millis(1000));
        let status = std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &version, "main", "restart"])
            .status()
            .unwrap();
        assert!(status.success());
        cut += 1;
    }
    let mut admin = schema.client();
    let pattern = format!("%{}%", schema.name);
    for _ in 0..env_or("LEVER_CONNECTION_CUTS", 15) {
        std::thread::sleep(Duration::from_millis(150));
        let rows = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE query LIKE $1 AND pid <> pg_backend_pid()",
                &[&pattern],
            )
            .unwrap();
        cut += rows.len();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let acked = load.finish();
    assert!(cut > 0, "no connection was cut");
    // The store is back for every request: wait for anything queued to be written.
    let deadline = Instant::now() + Duration::from_secs(20);
    while served.get("/healthz").0 != 200 {
        assert!(Instant::now() < deadline, "the store never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let acknowledged = acked.decisions.lock().unwrap().len();
    check_store(&schema.url, dir, &served, &acked);
    eprintln!("connection cuts: {cut} connections cut, {acknowledged} decisions acknowledged");
    assert_eq!(served.stop(), Some(0));
}
