//! Durable runs: a server holds runs only as a cache of the evidence store. A run in flight
//! survives a kill and a restart, any server serves any run of a shared PostgreSQL store,
//! and two servers that extend one run at once are fenced by its chain.

use super::served::Served;
use super::stores::Schema;
use serde_json::Value;
use std::path::Path;

/// A $2.00 cap per run with a NEAR alert at 80% to a webhook, and a stop at the cap.
pub const POLICY: &str = "import std.llm\n\
channel hooks = webhook(url: env(\"HOOK_URL\"), secret: env(\"HOOK_SECRET\"))\n\
policy cap { version 1 scope all on_error fail_closed\n\
  limit std.llm.cost to $2.00 { near 80% => alert(hooks) breach => stop, alert(hooks) } }\n";

pub fn start(dir: &Path, evidence: &str, hook_port: u16) -> Served {
    Served::launch_env(
        dir,
        &["--artifact", "p.policy", "--evidence", evidence],
        &[
            ("HOOK_URL", format!("http://127.0.0.1:{hook_port}/hook")),
            ("HOOK_SECRET", "s3cret-webhook-key".to_string()),
        ],
    )
}

pub fn run_start(run: &str) -> String {
    format!(r#"{{"run_id":"{run}","ts":"2026-01-20T10:00:00Z","tenant":"acme","agent":"a"}}"#)
}

pub fn step(minute: u32) -> String {
    format!(
        r#"{{"ts":"2026-01-20T10:{:02}:{:02}Z","cost":"0.30"}}"#,
        minute / 60,
        minute % 60
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Steps of $0.30 against a $2.00 cap: a kill -9 and a restart between the fourth and the
/// fifth lose nothing. The restarted server rebuilds the run before it listens, shows its
/// state, and stops it at the seventh step ($2.10), as one server would have.
fn a_run_survives_a_kill(evidence: &str, dir: &Path) {
    std::fs::write(dir.join("p.policy"), POLICY).unwrap();
    let (port, seen) = super::server::receiver(0);
    let served = start(dir, evidence, port);
    assert_eq!(served.post("/v1/runs", &run_start("live1")).0, 200);
    for m in 1..=4 {
        let (status, text) = served.post("/v1/runs/live1/steps", &step(m));
        assert_eq!(
            (status, json(&text)["action"].as_str()),
            (200, Some("continue"))
        );
    }
    served.kill();

    let served = start(dir, evidence, port);
    assert!(
        served
            .said
            .contains("rebuilt 1 live runs from the evidence"),
        "{}",
        served.said
    );
    let (status, text) = served.get("/v1/runs/live1");
    assert_eq!(status, 200, "{text}");
    let state = json(&text);
    assert_eq!(state["state"], "running");
    assert_eq!(state["seq"], 5);
    assert_eq!(state["totals"]["cost"], "1.20");
    assert_eq!(state["limits"][0]["observed"], "1.20");
    assert_eq!(state["limits"][0]["effective_value"], "2.00");
    assert_eq!(state["limits"][0]["zone"], "below");
    let (_, live) = served.get("/v1/runs?state=live");
    assert_eq!(json(&live)["runs"], serde_json::json!(["live1"]));

    let mut actions = Vec::new();
    for m in 5..=7 {
        let (status, text) = served.post("/v1/runs/live1/steps", &step(m));
        assert_eq!(status, 200, "{text}");
        let d = json(&text);
        assert_eq!(d["seq"], m + 1);
        actions.push(d["action"].as_str().unwrap().to_string());
    }
    // $1.50 and $1.80 (NEAR at $1.60) continue; $2.10 breaches the $2.00 cap.
    assert_eq!(actions, ["continue", "continue", "stop"]);
    let state = json(&served.get("/v1/runs/live1").1);
    assert_eq!(
        (&state["state"], &state["limits"][0]["zone"]),
        (&serde_json::json!("stopped"), &serde_json::json!("breach"))
    );
    let (status, _) = served.post("/v1/runs/live1/end", r#"{"ts":"2026-01-20T10:09:00Z"}"#);
    assert_eq!(status, 200);
    let (_, live) = served.get("/v1/runs?state=live");
    assert_eq!(json(&live)["runs"], serde_json::json!([]));
    // Both alerts (NEAR at the sixth step, BREACH at the seventh) reached the receiver.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _, _)| p == "/hook")
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "alerts not delivered: {:?}\n{}",
            seen.lock().unwrap(),
            served.get("/v1/runs/live1/evidence").1
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(served.stop(), Some(0));
    super::assert_verifies(dir, evidence);
}

#[test]
fn a_run_in_flight_survives_a_kill_and_restart_on_the_file_store() {
    let tmp = tempfile::tempdir().unwrap();
    a_run_survives_a_kill("file:ev", tmp.path());
}

#[test]
fn a_run_in_flight_survives_a_kill_and_restart_on_postgresql() {
    let schema = Schema::new();
    let tmp = tempfile::tempdir().unwrap();
    a_run_survives_a_kill(&schema.url, tmp.path());
}

/// An alert stored by a server whose artifact the next server does not run (a deploy came
/// between, and the alert's run has ended) is still delivered: its channel is read from the
/// stored artifact the alert names.
#[test]
fn an_alert_of_an_artifact_the_next_server_does_not_run_is_delivered() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("p.policy"), POLICY).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let served = start(dir, "file:ev", dead);
    assert_eq!(served.post("/v1/runs", &run_start("old1")).0, 200);
    for m in 1..=6 {
        assert_eq!(served.post("/v1/runs/old1/steps", &step(m)).0, 200);
    }
    assert_eq!(
        served
            .post("/v1/runs/old1/end", r#"{"ts":"2026-01-20T10:09:00Z"}"#)
            .0,
        200
    );
    served.kill();

    // The next server runs another artifact (a $3.00 cap) with a receiver that is up.
    std::fs::write(dir.join("p.policy"), POLICY.replace("$2.00", "$3.00")).unwrap();
    let (port, seen) = super::server::receiver(0);
    let next = start(dir, "file:ev", port);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen
        .lock()
        .unwrap()
        .iter()
        .any(|(p, _, body)| p == "/hook" && body.contains("old1"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the stored alert was not delivered"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(next.stop(), Some(0));
}
