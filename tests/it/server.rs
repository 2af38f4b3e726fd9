//! `lever serve` over real HTTP: every endpoint of this stage and its error paths,
//! decisions identical to `lever run`'s for the same events, concurrent runs with group
//! commit, and a graceful stop on SIGTERM that leaves a store that verifies.

use super::served::Served;
use std::io::{BufRead, BufReader};

/// The example events as (endpoint, body) requests.
pub fn requests() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(super::root().join("examples/events/support.jsonl")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let map = v.as_object_mut().unwrap();
            let kind = map.remove("type").unwrap();
            match kind.as_str().unwrap() {
                "run_start" => ("/v1/runs".to_string(), v.to_string()),
                other => {
                    let id = map.remove("run_id").unwrap();
                    let endpoint = match other {
                        "step" => "steps",
                        "run_end" => "end",
                        e => panic!("the example events have no {e}"),
                    };
                    (
                        format!("/v1/runs/{}/{endpoint}", id.as_str().unwrap()),
                        v.to_string(),
                    )
                }
            }
        })
        .collect()
}

#[test]
fn the_server_decides_as_lever_run_does_and_stores_the_evidence_first() {
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::start(tmp.path(), "file:ev");
    assert_eq!(served.get("/healthz"), (200, "ok\n".to_string()));

    // The same events through `lever run` and through the server: the same decisions.
    let replayed = super::replay_examples(tmp.path(), "file:replayed");
    let expected = super::decisions_without_line(&replayed.stdout);
    let reqs = requests();
    assert_eq!(reqs.len(), expected.len());
    for ((path, body), want) in reqs.iter().zip(&expected) {
        let (status, text) = served.post(path, body);
        assert_eq!(status, 200, "{path}: {text}");
        let got: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(&got, want, "{path} {body}");
    }

    // The run's evidence, as stored.
    let (status, evidence) = served.get("/v1/runs/support-42/evidence");
    assert_eq!(status, 200);
    let kinds = super::kinds_of(&evidence);
    assert_eq!(kinds.first().map(String::as_str), Some("snapshot"));
    assert_eq!(kinds.last().map(String::as_str), Some("run_summary"));
    assert!(kinds.iter().any(|k| k == "incident"));

    // Error paths: each a status and a reason, none a crash.
    let bad = [
        ("/v1/runs/support-42/steps", "not json", 400, "not JSON"),
        ("/v1/runs/support-42/steps", "[1]", 400, "JSON object"),
        (
            "/v1/runs/support-42/steps",
            r#"{"type":"step","ts":"2026-01-20T10:00:00Z"}"#,
            400,
            "`type`",
        ),
        (
            "/v1/runs/x/steps",
            r#"{"run_id":"y","ts":"2026-01-20T10:00:00Z"}"#,
            422,
            "`run_id`",
        ),
        (
            "/v1/runs/nobody/steps",
            r#"{"ts":"2026-01-20T10:00:00Z"}"#,
            422,
            "unknown_run",
        ),
        (
            "/v1/runs/support-42/steps",
            r#"{"ts":"2026-01-20T11:00:00Z"}"#,
            422,
            "run_ended",
        ),
        (
            "/v1/runs",
            r#"{"run_id":"support-42","ts":"2026-01-20T10:00:00Z","tenant":"t"}"#,
            422,
            "duplicate_run",
        ),
        ("/v1/runs/z/steps", r#"{"ts":"yesterday"}"#, 422, "ts"),
    ];
    for (path, body, want_status, says) in bad {
        let (status, text) = served.post(path, body);
        assert_eq!(status, want_status, "{path} {body}: {text}");
        assert!(text.contains(says), "{path} {body}: {text}");
    }
    assert_eq!(served.get("/v1/runs/nobody/evidence").0, 404);
    assert_eq!(served.get("/v1/nothing").0, 404);

    let (status, policies) = served.get("/v1/policies");
    assert_eq!(status, 200);
    let policies: serde_json::Value = serde_json::from_str(&policies).unwrap();
    assert!(
        policies["artifact"]
            .as_str()
            .unwrap()
            .starts_with("blake3:")
    );
    assert_eq!(policies["policies"].as_array().unwrap().len(), 5);

    let (_, metrics) = served.get("/metrics");
    let steps = expected.iter().filter(|d| d["event"] == "step").count();
    assert!(
        metrics.contains(&format!("lever_steps_total {steps}\n")),
        "{metrics}"
    );
    let stops = expected.iter().filter(|d| d["action"] == "stop").count();
    let stop_line = format!("lever_decisions_total{{action=\"stop\"}} {stops}\n");
    assert!(metrics.contains(&stop_line), "{metrics}");
    assert!(
        metrics.contains("lever_decisions_total{action=\"rejected\"} 4\n"),
        "{metrics}"
    );

    // The in-app feed: the `ui` alerts the decisions carried, newest first.
    let want: Vec<(u64, String)> = expected
        .iter()
        .flat_map(|d| {
            d["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["channel"] == "ui" && a["suppressed"] == false)
                .map(|a| {
                    (
                        d["seq"].as_u64().unwrap(),
                        a["kind"].as_str().unwrap().to_string(),
                    )
                })
                .collect::<Vec<_>>()
        })
        .rev()
        .collect();
    assert!(!want.is_empty());
    let feed = |s: &Served| -> Vec<(u64, String)> {
        let (status, text) = s.get("/v1/alerts?channel=ui");
        assert_eq!(status, 200, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["seq"].as_u64().unwrap(),
                    a["kind"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(feed(&served), want);
    assert_eq!(served.get("/v1/alerts?limit=0").0, 400);
    let (_, one) = served.get("/v1/alerts?channel=ui&limit=1");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&one).unwrap()["alerts"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    assert_eq!(served.stop(), Some(0), "a graceful stop");
    let verified = super::lever(tmp.path(), &["evidence", "verify", "--evidence", "file:ev"]);
    assert_eq!(verified.status.code(), Some(0));
    // Restarted on the same store, the feed is read back from the evidence.
    let again = Served::start(tmp.path(), "file:ev");
    assert_eq!(feed(&again), want);
    assert_eq!(again.stop(), Some(0));
}

#[test]
fn concurrent_runs_are_each_answered_after_a_shared_group_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let served = std::sync::Arc::new(Served::start(tmp.path(), "file:ev"));
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = std::sync::Arc::clone(&served);
            std::thread::spawn(move || {
                let run = format!("c{t}");
                let (status, _) = s.post(
                    "/v1/runs",
                    &format!(r#"{{"run_id":"{run}","ts":"2026-01-20T10:00:00Z","tenant":"acme"}}"#),
                );
                assert_eq!(status, 200);
                for i in 1..=40 {
                    let (status, text) = s.post(
                        &format!("/v1/runs/{run}/steps"),
                        &format!(
                            r#"{{"ts":"2026-01-20T10:{:02}:{:02}Z","cost":"0.001"}}"#,
                            i / 60,
                            i % 60
                        ),
                    );
                    assert_eq!(status, 200, "{text}");
                    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(d["seq"], i + 1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let (_, metrics) = served.get("/metrics");
    let commits: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("lever_store_commit_seconds_count "))
        .unwrap()
        .parse()
        .unwrap();
    eprintln!("{commits} group commits for 328 requests");
    assert!(
        commits < 8 * 41,
        "{commits} commits for 328 requests: no commit was shared"
    );
    let served = std::sync::Arc::try_unwrap(served).ok().unwrap();
    assert_eq!(served.stop(), Some(0));
    let mut store = lever::evidence::file::FileStore::open(&tmp.path().join("ev")).unwrap();
    for t in 0..8 {
        let chain = store
            .read_chain(&lever::evidence::ChainId::Run(format!("c{t}")))
            .unwrap();
        let decisions = chain
            .iter()
            .filter(|s| s.record.kind == lever::evidence::RecordKind::Decision)
            .count();
        assert_eq!(decisions, 41, "run c{t}");
    }
    use lever::evidence::EvidenceStore as _;
}

#[test]
fn overrides_and_approvals_take_who_is_asking_from_the_token_only() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("lever.toml"),
        r#"
[[tokens]]
token = "bob-token-0123456789"
actor = "bob@example.com"
roles = ["sre-oncall"]

[[tokens]]
token = "sec-token-0123456789"
actor = "sec@example.com"
roles = ["security"]

[[tokens]]
token = "carol-token-0123456789"
actor = "carol@example.com"
roles = ["security"]

[[tokens]]
token_env = "LEVER_TEST_TOKEN_DAVE"
actor = "dave@example.com"
roles = ["security"]

[[tokens]]
token = "admin-token-0123456789"
actor = "root@example.com"
admin = true
"#,
    )
    .unwrap();
    let served = Served::start_with(tmp.path(), "file:ev", &["--config", "lever.toml"]);
    let (status, _) = served.post(
        "/v1/runs",
        r#"{"run_id":"r","ts":"2026-01-20T10:00:00Z","tenant":"acme","agent":"support-bot"}"#,
    );
    assert_eq!(status, 200);
    let raise = r#"{"ts":"2026-01-20T10:00:01Z","policy":"support_budget","kind":"raise","limit":"std.llm.cost","to":"8.00","reason":"INC-42","actor":"mallory","roles":["admin"],"approvals":["x","y"]}"#;

    // No token, a wrong token: refused before anything is judged.
    for token in [None, Some("bob-token-012345678X")] {
        let (status, text) = served.post_as(token, "/v1/runs/r/overrides", raise);
        assert_eq!(status, 401, "{text}");
        assert!(text.contains("bearer token"), "{text}");
    }

    // Bob's token: bob, with bob's roles, whatever the body claims.
    let (status, text) =
        served.post_as(Some("bob-token-0123456789"), "/v1/runs/r/overrides", raise);
    assert_eq!(status, 200, "{text}");
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(d["override"]["status"], "granted", "{text}");
    assert_eq!(d["seq"], 2);

    // A suspension needs two approvals by others than the requester.
    let suspend = r#"{"ts":"2026-01-20T10:00:02Z","policy":"support_budget","kind":"suspend","reason":"INC-43"}"#;
    let (status, text) = served.post_as(
        Some("sec-token-0123456789"),
        "/v1/runs/r/overrides",
        suspend,
    );
    assert_eq!(status, 200, "{text}");
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(d["override"]["status"], "pending", "{text}");
    let request = d["seq"].as_u64().unwrap();
    let approve = |token: &str, ts: u32| {
        served.post_as(
            Some(token),
            &format!("/v1/runs/r/overrides/{request}/approvals"),
            &format!(r#"{{"ts":"2026-01-20T10:00:{ts:02}Z","actor":"someone-else"}}"#),
        )
    };
    let (status, text) = approve("sec-token-0123456789", 3);
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("\"pending\""),
        "the requester's own approval does not count: {text}"
    );
    // An admin token names no role the rule names: its approval does not count.
    let (_, text) = approve("admin-token-0123456789", 4);
    assert!(
        text.contains("\"pending\"") && text.contains("does not count"),
        "{text}"
    );
    let (_, text) = approve("bob-token-0123456789", 4);
    assert!(
        text.contains("0 of 2 approvals"),
        "bob holds no security role: {text}"
    );
    let (_, text) = approve("carol-token-0123456789", 4);
    assert!(text.contains("\"pending\""), "one approval of two: {text}");
    let (_, text) = approve("dave-token-0123456789", 5);
    assert!(text.contains("\"granted\""), "two approvals: {text}");
    let (status, text) = served.post_as(
        Some("dave-token-0123456789"),
        "/v1/runs/r/overrides/abc/approvals",
        r#"{"ts":"2026-01-20T10:00:06Z"}"#,
    );
    assert_eq!(status, 400, "{text}");

    // The evidence names bob, and records what the body claimed.
    let (_, evidence) = served.get("/v1/runs/r/evidence");
    let records: Vec<serde_json::Value> = evidence
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mismatch = records
        .iter()
        .find(|r| r["kind"] == "auth_mismatch")
        .expect("a mismatch record");
    assert_eq!(mismatch["seq"], 2);
    assert_eq!(mismatch["body"]["actor"], "bob@example.com");
    assert_eq!(mismatch["body"]["claimed"]["actor"], "mallory");
    assert_eq!(mismatch["body"]["claimed"]["roles"][0], "admin");
    assert_eq!(mismatch["body"]["claimed"]["approvals"][0], "x");
    let decision = records
        .iter()
        .find(|r| r["kind"] == "decision" && r["seq"] == 2)
        .unwrap();
    assert_eq!(decision["body"]["input"]["actor"], "bob@example.com");
    assert_eq!(served.stop(), Some(0));
}

/// Builds `policy` (a cost cap of `cap` dollars) into `dir/name`; returns its bytes.
pub(crate) fn build_cap(dir: &std::path::Path, name: &str, cap: u32) -> Vec<u8> {
    let src = dir.join(format!("{name}.policy"));
    std::fs::write(
        &src,
        format!("import std.llm\npolicy cap {{\n  version {cap}\n  scope all\n  limit std.llm.cost to ${cap} {{ breach => stop }}\n}}\n"),
    )
    .unwrap();
    let out = dir.join(format!("{name}.lvc"));
    let built = super::lever(
        dir,
        &["build", src.to_str().unwrap(), "-o", out.to_str().unwrap()],
    );
    assert_eq!(built.status.code(), Some(0));
    std::fs::read(out).unwrap()
}

#[test]
fn deploys_by_put_need_an_admin_token_and_a_replaced_file_is_deployed_too() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build_cap(dir, "a", 5);
    let b = build_cap(dir, "b", 1);
    let c = build_cap(dir, "c", 2);
    std::fs::write(
        dir.join("lever.toml"),
        "[[tokens]]\ntoken = \"admin-token-0123456789\"\nactor = \"ops@example.com\"\nadmin = true\n\n[[tokens]]\ntoken = \"bob-token-0123456789\"\nactor = \"bob@example.com\"\n",
    )
    .unwrap();
    std::fs::copy(dir.join("a.lvc"), dir.join("active.lvc")).unwrap();
    let served = Served::launch(
        dir,
        &[
            "--artifact",
            "active.lvc",
            "--config",
            "lever.toml",
            "--evidence",
            "file:ev",
        ],
    );
    let start_a = served.artifact_of_id();
    let put = |token: Option<&str>, body: &[u8]| {
        let mut req = served.agent.put(&format!("{}/v1/artifacts", served.base));
        if let Some(t) = token {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        let mut r = req.send(body).unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    };
    // A run bound to the first artifact ($5 cap).
    let (status, _) = served.post(
        "/v1/runs",
        r#"{"run_id":"old","ts":"2026-01-20T10:00:00Z","tenant":"t"}"#,
    );
    assert_eq!(status, 200);

    assert_eq!(put(None, &b).0, 401);
    let (status, text) = put(Some("bob-token-0123456789"), &b);
    assert_eq!(status, 403, "{text}");
    let mut tampered = b.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let (status, text) = put(Some("admin-token-0123456789"), &tampered);
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("hash mismatch"), "{text}");
    assert_eq!(served.artifact_of_id(), start_a, "nothing deployed");

    let (status, text) = put(Some("admin-token-0123456789"), &b);
    assert_eq!(status, 200, "{text}");
    let deploy: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(deploy["actor"], "ops@example.com");
    assert_eq!(deploy["from"].as_str().unwrap(), start_a);
    let b_id = served.artifact_of_id();
    assert_eq!(deploy["to"].as_str().unwrap(), b_id);
    // New runs bind to the new artifact ($1 cap); the old run keeps its $5 cap.
    served.post(
        "/v1/runs",
        r#"{"run_id":"new","ts":"2026-01-20T10:00:01Z","tenant":"t"}"#,
    );
    let (_, new_step) = served.post(
        "/v1/runs/new/steps",
        r#"{"ts":"2026-01-20T10:00:02Z","cost":"2"}"#,
    );
    assert!(new_step.contains("\"action\":\"stop\""), "{new_step}");
    let (_, old_step) = served.post(
        "/v1/runs/old/steps",
        r#"{"ts":"2026-01-20T10:00:02Z","cost":"2"}"#,
    );
    assert!(old_step.contains("\"action\":\"continue\""), "{old_step}");

    // Replacing the watched file deploys it, as `local-file`.
    std::fs::write(dir.join("next.tmp"), &c).unwrap();
    std::fs::rename(dir.join("next.tmp"), dir.join("active.lvc")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while served.artifact_of_id() == b_id {
        assert!(
            std::time::Instant::now() < deadline,
            "the replaced file was not deployed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(served.stop(), Some(0));
    let mut store = lever::evidence::file::FileStore::open(&dir.join("ev")).unwrap();
    let deploys: Vec<serde_json::Value> =
        lever::evidence::EvidenceStore::read_chain(&mut store, &lever::evidence::ChainId::Store)
            .unwrap()
            .into_iter()
            .filter(|s| s.record.kind == lever::evidence::RecordKind::Deploy)
            .map(|s| s.record.body)
            .collect();
    let actors: Vec<&str> = deploys
        .iter()
        .map(|d| d["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["ops@example.com", "local-file"]);
}

#[test]
fn numbers_in_request_bodies_are_read_from_their_text_never_through_a_float() {
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::start(tmp.path(), "file:ev");
    served.post(
        "/v1/runs",
        r#"{"run_id":"n","ts":"2026-01-20T10:00:00Z","tenant":"t"}"#,
    );
    // 17 significant digits: an f64 would change the last ones.
    let (status, text) = served.post(
        "/v1/runs/n/steps",
        r#"{"ts":"2026-01-20T10:00:01Z","cost":12345678.123456789,"latency_ms":0.000001}"#,
    );
    assert_eq!(status, 200, "{text}");
    let (_, evidence) = served.get("/v1/runs/n/evidence");
    let step = evidence
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["kind"] == "decision" && r["seq"] == 2)
        .unwrap();
    assert_eq!(step["body"]["input"]["cost"], "12345678.123456789");
    assert_eq!(served.stop(), Some(0));
}

#[test]
fn an_unknown_field_answers_422_with_a_suggestion_and_stops_a_fail_closed_run() {
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::start(tmp.path(), "file:ev");
    served.post(
        "/v1/runs",
        r#"{"run_id":"typo","ts":"2026-01-20T10:00:00Z","tenant":"acme","agent":"support-bot","meta":{"trace":"t-1"}}"#,
    );
    // Late by a second: accepted and judged at the run's clock.
    let (status, text) = served.post(
        "/v1/runs/typo/steps",
        r#"{"ts":"2026-01-20T10:00:02Z","cost":"0.10"}"#,
    );
    assert_eq!(status, 200, "{text}");
    let (status, text) = served.post(
        "/v1/runs/typo/steps",
        r#"{"ts":"2026-01-20T10:00:01Z","cost":"0.10"}"#,
    );
    assert_eq!(status, 200, "a late step is accepted: {text}");
    let late: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(late["ts"], "2026-01-20T10:00:01Z");
    assert_eq!(late["seq"], 3);

    // Two values for one field: no reader may choose, so it is rejected, and judged.
    served.post(
        "/v1/runs",
        r#"{"run_id":"twice","ts":"2026-01-20T10:00:00Z","tenant":"acme","agent":"support-bot"}"#,
    );
    let (status, text) = served.post(
        "/v1/runs/twice/steps",
        r#"{"ts":"2026-01-20T10:00:01Z","cost":"0.01","cost":"100.00"}"#,
    );
    assert_eq!(status, 422, "{text}");
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(d["action"], "stop", "{text}");
    assert_eq!(d["reason"], r#"invalid_field: duplicate key "cost""#);
    // Every policy of the examples that binds this run is fail_closed: the run stops.
    let (status, text) = served.post(
        "/v1/runs/typo/steps",
        r#"{"ts":"2026-01-20T10:00:03Z","cost_usd":"3.00"}"#,
    );
    assert_eq!(status, 422, "{text}");
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(d["action"], "stop");
    assert_eq!(
        d["reason"],
        r#"invalid_field: unknown field "cost_usd"; did you mean "cost"?"#
    );
    assert_eq!(d["seq"], serde_json::Value::Null);
    assert!(
        d["signals"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["kind"] == "error" && s["error"] == "rejected_input"),
        "{text}"
    );
    let (status, text) = served.post(
        "/v1/runs/typo/steps",
        r#"{"ts":"2026-01-20T10:00:04Z","cost":"0.10"}"#,
    );
    assert_eq!(status, 200, "{text}");
    let refused: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(refused["action"], "refused");
    assert_eq!(refused["reason"], "run_stopped");

    // The rejected line is in the run's chain, with what it did to the run.
    let (_, evidence) = served.get("/v1/runs/typo/evidence");
    let records: Vec<serde_json::Value> = evidence
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let rejected = records
        .iter()
        .find(|r| r["kind"] == "rejected_input")
        .expect("the rejected line is evidence of the run");
    assert_eq!(rejected["body"]["action"], "stop");
    let start = records
        .iter()
        .find(|r| r["kind"] == "decision" && r["seq"] == 1)
        .unwrap();
    assert_eq!(start["body"]["input"]["meta"]["trace"], "t-1");
    assert_eq!(served.stop(), Some(0));
}

/// What a receiver saw: each request's path, headers and body.
pub type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>;

/// A local HTTP receiver: records each request (path, headers, body) and answers 500 to
/// the first `fail_first` requests on `/hook`, 200 to the rest.
pub fn receiver(fail_first: usize) -> (u16, Seen) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Default::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        let mut hooks = 0;
        for stream in listener.incoming() {
            // A sender killed mid-request leaves a connection cut short: it is skipped.
            let Ok(stream) = stream else { continue };
            let Some((path, headers, body)) = read_request(&stream) else {
                continue;
            };
            let status = if path == "/hook" {
                hooks += 1;
                if hooks <= fail_first { 500 } else { 200 }
            } else {
                200
            };
            log.lock().unwrap().push((path, headers, body));
            let answer =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            let _ = std::io::Write::write_all(&mut &stream, answer.as_bytes());
        }
    });
    (port, seen)
}

/// One HTTP request: its path, headers and body; `None` when the connection is cut.
fn read_request(stream: &std::net::TcpStream) -> Option<(String, String, String)> {
    use std::io::Read;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split_whitespace().nth(1)?.to_string();
    let mut headers = String::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        headers.push_str(&line);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((path, headers, String::from_utf8(body).ok()?))
}

/// A local SMTP receiver (plain SMTP, as a relay on the same host): records each message
/// as its envelope lines and data.
fn smtp_receiver() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            write!(stream, "220 receiver ESMTP\r\n").unwrap();
            let mut message = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 {
                    break;
                }
                let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                let reply = match verb.as_str() {
                    "EHLO" | "HELO" => "250 receiver",
                    "MAIL" | "RCPT" => {
                        message.push_str(&line);
                        "250 OK"
                    }
                    "DATA" => {
                        write!(stream, "354 go ahead\r\n").unwrap();
                        loop {
                            let mut data = String::new();
                            reader.read_line(&mut data).unwrap();
                            if data == ".\r\n" {
                                break;
                            }
                            message.push_str(&data);
                        }
                        log.lock().unwrap().push(std::mem::take(&mut message));
                        "250 queued"
                    }
                    "QUIT" => {
                        write!(stream, "221 bye\r\n").unwrap();
                        break;
                    }
                    _ => "250 OK",
                };
                write!(stream, "{reply}\r\n").unwrap();
            }
        }
    });
    (port, seen)
}

#[test]
fn alerts_are_delivered_to_webhooks_signed_to_slack_and_by_email_with_retries_recorded() {
    use hmac::Mac;
    let (port, seen) = receiver(1);
    let (smtp_port, mail) = smtp_receiver();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("lever.toml"),
        format!("[smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\ntls = \"none\"\n"),
    )
    .unwrap();
    let served = Served::with_channels(tmp.path(), port, &["--config", "lever.toml"]);
    for (path, body) in requests() {
        assert_eq!(served.post(&path, &body).0, 200);
    }
    // The first webhook attempt gets a 500; the retry, half a second later, a 200.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let hooks = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _, _)| p == "/hook")
            .count();
        if hooks >= 2 && !mail.lock().unwrap().is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no retry arrived");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(served.stop(), Some(0));
    let requests = seen.lock().unwrap().clone();
    let hooks: Vec<_> = requests.iter().filter(|(p, _, _)| p == "/hook").collect();
    for (_, headers, body) in &hooks {
        let sig = headers
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("lever-signature:")
                    .map(|v| v.trim().to_string())
            })
            .expect("a signature header");
        let t = sig
            .split(',')
            .next()
            .unwrap()
            .strip_prefix("t=")
            .unwrap()
            .to_string();
        let v1 = sig
            .split(',')
            .nth(1)
            .unwrap()
            .strip_prefix("v1=")
            .unwrap()
            .to_string();
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret-webhook-key").unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(v1, want, "the signature verifies");
        let alert: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(alert["channel"], "ops");
        assert_eq!(alert["run_id"], "support-42");
    }
    let slack: Vec<_> = requests.iter().filter(|(p, _, _)| p == "/slack").collect();
    assert!(!slack.is_empty());
    let text: serde_json::Value = serde_json::from_str(&slack[0].2).unwrap();
    assert!(
        text["text"]
            .as_str()
            .unwrap()
            .starts_with("Lever: NEAR of `std.llm.cost`"),
        "{text}"
    );

    // The email: the channel's sender and both recipients in the envelope and headers,
    // the alert as the subject (the channel names none) and first line.
    let mail = mail.lock().unwrap().clone();
    assert_eq!(mail.len(), 1, "{mail:?}");
    // Long header lines are folded, and the body is quoted-printable: undo both.
    let m = &mail[0].replace("\r\n ", " ");
    assert!(m.starts_with("MAIL FROM:<lever@example.com>"), "{m}");
    assert!(m.contains("RCPT TO:<oncall@example.com>"), "{m}");
    assert!(m.contains("RCPT TO:<llm-platform@example.com>"), "{m}");
    assert!(m.contains("From: lever@example.com\r\n"), "{m}");
    assert!(
        m.contains("To: oncall@example.com, llm-platform@example.com\r\n"),
        "{m}"
    );
    let summary = "Lever: BREACH of `std.llm.cost` (support_budget v3) in run `support-42`";
    assert!(m.contains(&format!("Subject: {summary}")), "{m}");
    let body = m.split_once("\r\n\r\n").unwrap().1.replace("=\r\n", "");
    assert!(
        body.starts_with(&format!("{summary} at seq 13: observed 5.40 of 5.00\r\n")),
        "{body:?}"
    );
    assert!(body.contains("\"limit_value\": \"5.00\""), "{body}");

    // Every attempt is in the evidence, the failed one with its status.
    let mut store = lever::evidence::file::FileStore::open(&tmp.path().join("ev")).unwrap();
    let attempts: Vec<serde_json::Value> =
        lever::evidence::EvidenceStore::read_chain(&mut store, &lever::evidence::ChainId::Store)
            .unwrap()
            .into_iter()
            .filter(|s| {
                s.record.kind == lever::evidence::RecordKind::AlertDelivery
                    && s.record.body["channel"] == "ops"
            })
            .map(|s| s.record.body)
            .collect();
    assert_eq!(attempts[0]["attempt"], 1);
    assert_eq!(attempts[0]["delivered"], false);
    assert_eq!(attempts[0]["error"], "HTTP 500");
    assert_eq!(attempts[1]["attempt"], 2);
    assert_eq!(attempts[1]["delivered"], true);
    let emails =
        lever::evidence::EvidenceStore::read_chain(&mut store, &lever::evidence::ChainId::Store)
            .unwrap()
            .into_iter()
            .filter(|s| s.record.body["channel"] == "oncall")
            .map(|s| s.record.body)
            .collect::<Vec<_>>();
    assert_eq!(emails.len(), 1);
    assert_eq!(
        (&emails[0]["delivered"], &emails[0]["status"]),
        (&serde_json::json!(true), &serde_json::json!(250))
    );
}

#[test]
fn a_dead_channel_is_retried_and_recorded_without_slowing_decisions() {
    // A port nothing listens on: every webhook and Slack attempt is refused.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::with_channels(tmp.path(), dead, &[]);
    // Every step is answered while the channels are down.
    for (path, body) in requests() {
        assert_eq!(served.post(&path, &body).0, 200, "{path}");
    }
    // Wait for the second webhook attempt (0.5 s after the first).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, text) = served.get("/metrics");
        let failed = text
            .lines()
            .find(|l| {
                l.starts_with(
                    "lever_alert_deliveries_total{channel_kind=\"webhook\",result=\"failed\"}",
                )
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap();
        if failed >= 2 {
            assert!(text.contains(
                "lever_alert_deliveries_total{channel_kind=\"webhook\",result=\"delivered\"} 0\n"
            ));
            // No [smtp] relay is configured: the email alert fails once, for good.
            assert!(text.contains(
                "lever_alert_deliveries_total{channel_kind=\"email\",result=\"failed\"} 1\n"
            ));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no retry was made");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Stopping drops the retries still waiting; the attempts made are in the evidence.
    assert_eq!(served.stop(), Some(0));
    let mut store = lever::evidence::file::FileStore::open(&tmp.path().join("ev")).unwrap();
    let attempts: Vec<serde_json::Value> =
        lever::evidence::EvidenceStore::read_chain(&mut store, &lever::evidence::ChainId::Store)
            .unwrap()
            .into_iter()
            .filter(|s| s.record.kind == lever::evidence::RecordKind::AlertDelivery)
            .map(|s| s.record.body)
            .collect();
    let of = |channel: &str| -> Vec<&serde_json::Value> {
        attempts
            .iter()
            .filter(|a| a["channel"] == channel)
            .collect()
    };
    let hooks = of("ops");
    assert!(hooks.len() >= 2);
    for (i, a) in hooks.iter().enumerate() {
        assert_eq!(a["attempt"], i as u64 + 1);
        assert_eq!(a["delivered"], false);
        assert!(a["error"].as_str().unwrap().contains("onnect"), "{a}");
    }
    let email = of("oncall");
    assert_eq!(email.len(), 1);
    assert_eq!(email[0]["error"], "no [smtp] relay is configured");
}

#[test]
fn an_alert_stored_but_not_delivered_is_delivered_by_the_next_start() {
    use lever::evidence::{ChainId, EvidenceStore, RecordKind};
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::with_channels(tmp.path(), dead, &[]);
    for (path, body) in requests() {
        assert_eq!(served.post(&path, &body).0, 200, "{path}");
    }
    // The first webhook attempt fails and is recorded; the server is killed before it
    // retries.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut reader =
        lever::evidence::file::FileStore::open_read_only(&tmp.path().join("ev")).unwrap();
    while !reader
        .read_chain(&ChainId::Store)
        .unwrap()
        .iter()
        .any(|s| s.record.kind == RecordKind::AlertDelivery && s.record.body["channel"] == "ops")
    {
        assert!(std::time::Instant::now() < deadline, "no first attempt");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    served.kill();

    // The next server, on the same store, delivers it from the stored alert record.
    let (port, seen) = receiver(0);
    let next = Served::with_channels(tmp.path(), port, &[]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen.lock().unwrap().iter().any(|(p, _, _)| p == "/hook") {
        assert!(
            std::time::Instant::now() < deadline,
            "the stored alert was not delivered"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(next.stop(), Some(0));
    let hooks: Vec<(String, String, String)> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(p, _, _)| p == "/hook")
        .cloned()
        .collect();
    assert_eq!(hooks.len(), 1, "delivered once");
    let header = hooks[0]
        .1
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("lever-delivery-id:")
                .map(|v| v.trim().to_string())
        })
        .expect("a Lever-Delivery-Id header");

    let mut store = lever::evidence::file::FileStore::open(&tmp.path().join("ev")).unwrap();
    let alert = store
        .read_chain(&ChainId::Run("support-42".into()))
        .unwrap()
        .into_iter()
        .find(|s| s.record.kind == RecordKind::Alert && s.record.body["channel"] == "ops")
        .expect("the stored alert");
    // The id is the stored alert record's: the same for every attempt, from any server.
    assert_eq!(header, lever::base::hash::hex(&alert.record.id()));
    let attempts: Vec<serde_json::Value> = store
        .read_chain(&ChainId::Store)
        .unwrap()
        .into_iter()
        .filter(|s| s.record.kind == RecordKind::AlertDelivery && s.record.body["channel"] == "ops")
        .map(|s| s.record.body)
        .collect();
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(
        (
            &attempts[0]["attempt"],
            &attempts[0]["delivered"],
            &attempts[0]["final"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(false),
            &serde_json::json!(false)
        )
    );
    assert_eq!(
        (
            &attempts[1]["attempt"],
            &attempts[1]["delivered"],
            &attempts[1]["final"]
        ),
        (
            &serde_json::json!(2),
            &serde_json::json!(true),
            &serde_json::json!(true)
        )
    );
    assert_eq!(attempts[1]["delivery_id"], header.as_str());
    // The email alert failed for good at the first server (no relay): not sent again.
    let emails = store
        .read_chain(&ChainId::Store)
        .unwrap()
        .into_iter()
        .filter(|s| {
            s.record.kind == RecordKind::AlertDelivery && s.record.body["channel"] == "oncall"
        })
        .count();
    assert_eq!(emails, 1);
}

#[test]
fn during_a_store_outage_fail_open_runs_continue_and_other_runs_stop() {
    use lever::evidence::{ChainId, EvidenceStore};
    let (schema, proxy, url) = super::stores::proxied_schema();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("p.policy"),
        "import std.llm\n\
         policy open_cap { version 1 scope agent == \"open-bot\" on_error fail_open\n\
           limit std.llm.cost to $10 { breach => stop } }\n\
         policy closed_cap { version 1 scope agent == \"closed-bot\"\n\
           limit std.llm.cost to $10 { breach => stop } }\n",
    )
    .unwrap();
    let served = Served::launch(tmp.path(), &["--artifact", "p.policy", "--evidence", &url]);
    let step = |run: &str, minute: u32| {
        served.post(
            &format!("/v1/runs/{run}/steps"),
            &format!(r#"{{"ts":"2026-01-20T10:{minute:02}:00Z","cost":"0.10"}}"#),
        )
    };
    for (run, agent) in [("o", "open-bot"), ("c", "closed-bot")] {
        let start = format!(
            r#"{{"run_id":"{run}","ts":"2026-01-20T10:00:00Z","tenant":"acme","agent":"{agent}"}}"#
        );
        let (status, text) = served.post("/v1/runs", &start);
        assert_eq!(status, 200, "{text}");
        assert_eq!(step(run, 1).0, 200);
    }
    assert_eq!(served.get("/healthz"), (200, "ok\n".to_string()));

    proxy.down();
    // The step whose commit meets the outage is answered: its evidence is in the spill file.
    let (status, text) = step("o", 2);
    assert_eq!(status, 200, "{text}");
    assert!(tmp.path().join("lever-spill/outage.spill").exists());
    let (status, health) = served.get("/healthz");
    assert_eq!(status, 503);
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    assert!(
        health["error"]
            .as_str()
            .unwrap()
            .starts_with("degraded: the evidence store is unavailable"),
        "{health}"
    );

    // A run whose policies are all fail_open continues, with an error signal.
    let (status, text) = step("o", 3);
    assert_eq!(status, 200, "{text}");
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (d["seq"].as_u64(), d["action"].as_str()),
        (Some(4), Some("continue"))
    );
    assert_eq!(d["signals"][0]["kind"], "error");
    assert_eq!(d["signals"][0]["policy"], "open_cap");
    assert_eq!(d["signals"][0]["error"], "store_unavailable");
    // Any other run is stopped at once.
    let (status, text) = step("c", 3);
    assert_eq!(status, 200, "{text}");
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (d["action"].as_str(), d["reason"].as_str()),
        (Some("stop"), Some("store_unavailable"))
    );
    // Ends, overrides and deploys wait for the store.
    let (status, text) = served.post("/v1/runs/o/end", r#"{"ts":"2026-01-20T10:09:00Z"}"#);
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("a run_end is judged only once"), "{text}");
    let (_, metrics) = served.get("/metrics");
    assert!(metrics.contains("lever_store_up 0\n"), "{metrics}");

    proxy.up();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while served.get("/healthz").0 != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not see the store return"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (status, text) = served.post("/v1/runs/o/end", r#"{"ts":"2026-01-20T10:09:00Z"}"#);
    assert_eq!(status, 200, "{text}");
    assert_eq!(served.stop(), Some(0));

    // Everything judged is in the store, in order, and the store verifies.
    let mut store = schema.open();
    let kinds_and_seqs = |store: &mut lever::evidence::postgres::PgStore, run: &str| {
        store
            .read_chain(&ChainId::Run(run.into()))
            .unwrap()
            .into_iter()
            .filter(|s| s.record.kind == lever::evidence::RecordKind::Decision)
            .map(|s| {
                (
                    s.record.seq,
                    s.record.body["action"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let open: Vec<(u64, String)> = kinds_and_seqs(&mut store, "o");
    assert_eq!(
        open,
        [
            (1, "continue"),
            (2, "continue"),
            (3, "continue"),
            (4, "continue"),
            (5, "continue")
        ]
        .map(|(n, a)| (n, a.to_string()))
    );
    let closed = kinds_and_seqs(&mut store, "c");
    assert_eq!(closed.last().unwrap(), &(3, "stop".to_string()));
    let error_signals = store
        .read_chain(&ChainId::Run("o".into()))
        .unwrap()
        .into_iter()
        .filter(|s| s.record.kind == lever::evidence::RecordKind::Signal && s.record.seq == 4)
        .map(|s| s.record.body["error"].clone())
        .collect::<Vec<_>>();
    assert_eq!(error_signals, [serde_json::json!("store_unavailable")]);
    assert!(
        lever::evidence::audit::verify(&mut store, None, None)
            .unwrap()
            .is_ok()
    );
}

#[test]
fn answers_given_during_an_outage_survive_a_kill() {
    use lever::evidence::{ChainId, EvidenceStore, RecordKind};
    let (schema, proxy, url) = super::stores::proxied_schema();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("p.policy"),
        "import std.llm\npolicy open_cap { version 1 scope all on_error fail_open limit std.llm.cost to $100 { breach => stop } }\n",
    )
    .unwrap();
    let args = ["--artifact", "p.policy", "--evidence", url.as_str()];
    let mut served = Served::launch(tmp.path(), &args);
    let step = |served: &Served, second: u32| {
        served.post(
            "/v1/runs/o/steps",
            &format!(r#"{{"ts":"2026-01-20T10:00:{second:02}Z","cost":"0.10"}}"#),
        )
    };
    let start = r#"{"run_id":"o","ts":"2026-01-20T10:00:00Z","tenant":"acme"}"#;
    assert_eq!(served.post("/v1/runs", start).0, 200);
    proxy.down();
    for second in 1..=20 {
        let (status, text) = step(&served, second);
        assert_eq!(status, 200, "{text}");
    }
    // kill -9 while the store is away: the answers live only in the spill file.
    served.child.kill().unwrap();
    served.child.wait().unwrap();
    proxy.up();
    let served = Served::launch(tmp.path(), &args);
    assert_eq!(served.stop(), Some(0));
    let mut store = schema.open();
    let seqs: Vec<u64> = store
        .read_chain(&ChainId::Run("o".into()))
        .unwrap()
        .iter()
        .filter(|s| s.record.kind == RecordKind::Decision)
        .map(|s| s.record.seq)
        .collect();
    assert_eq!(
        seqs,
        (1..=21).collect::<Vec<u64>>(),
        "every answered step is stored, once"
    );
    let outage: Vec<String> = store
        .read_chain(&ChainId::Store)
        .unwrap()
        .iter()
        .filter(|s| s.record.kind == RecordKind::Outage)
        .map(|s| s.record.body["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outage, ["start", "end"]);
    assert!(
        lever::evidence::audit::verify(&mut store, None, None)
            .unwrap()
            .is_ok()
    );
}

#[test]
fn a_run_an_earlier_server_ended_is_known_to_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let start =
        |id: &str| format!(r#"{{"run_id":"{id}","ts":"2026-01-20T10:00:00Z","tenant":"acme"}}"#);
    let served = Served::start(tmp.path(), "file:ev");
    assert_eq!(served.post("/v1/runs", &start("r")).0, 200);
    assert_eq!(
        served
            .post("/v1/runs/r/end", r#"{"ts":"2026-01-20T10:01:00Z"}"#)
            .0,
        200
    );
    assert_eq!(served.stop(), Some(0));

    // A new server loads run `r` from the store when asked about it: its start again is
    // a duplicate, a step after its end is refused, and nothing is added to its chain.
    let served = Served::start(tmp.path(), "file:ev");
    let (status, text) = served.post("/v1/runs", &start("r"));
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("duplicate_run"), "{text}");
    let (status, text) = served.post("/v1/runs/r/steps", r#"{"ts":"2026-01-20T10:02:00Z"}"#);
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("run_ended"), "{text}");
    let (status, text) = served.get("/v1/runs/r");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains(r#""state":"ended""#), "{text}");
    // Other requests are unaffected.
    assert_eq!(served.post("/v1/runs", &start("q")).0, 200);
    let (status, text) = served.post("/v1/runs/q/steps", r#"{"ts":"2026-01-20T10:01:00Z"}"#);
    assert_eq!(status, 200, "{text}");
    assert_eq!(served.stop(), Some(0));
}

#[test]
fn a_run_lever_run_left_in_the_store_is_continued_by_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("p.policy"),
        "import std.llm\npolicy cap { version 1 scope all limit std.llm.cost to $1.00 { near 50% => alert(ui) breach => stop } }\n",
    )
    .unwrap();
    // An earlier process left run `r1` in the store: started, $0.25 spent.
    std::fs::write(
        dir.join("events.jsonl"),
        "{\"type\":\"run_start\",\"run_id\":\"r1\",\"ts\":\"2026-01-20T10:00:00Z\",\"tenant\":\"acme\"}\n{\"type\":\"step\",\"run_id\":\"r1\",\"ts\":\"2026-01-20T10:00:01Z\",\"cost\":\"0.25\"}\n",
    )
    .unwrap();
    assert_eq!(super::replay(dir, "file:ev").status.code(), Some(0));
    let served = Served::launch(dir, &["--artifact", "p.policy", "--evidence", "file:ev"]);
    // The server loads r1 from the store: a second start is a duplicate, and a step of
    // $0.80 makes $1.05 of its $1.00 cap.
    let (status, text) = served.post(
        "/v1/runs",
        r#"{"run_id":"r1","ts":"2026-01-20T10:00:00.5Z","tenant":"acme"}"#,
    );
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("duplicate_run"), "{text}");
    let (status, text) = served.post(
        "/v1/runs/r1/steps",
        r#"{"ts":"2026-01-20T10:00:02Z","cost":"0.80"}"#,
    );
    assert_eq!(status, 200, "{text}");
    let d: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!((&d["seq"], &d["action"]), (&3.into(), &"stop".into()));
    assert_eq!(d["signals"][0]["observed"], "1.05");
    assert_eq!(served.stop(), Some(0));
    // What is stored agrees with itself: every observed value is the sum of the stored
    // inputs up to it.
    use lever::evidence::{ChainId, EvidenceStore};
    let mut store = lever::evidence::file::FileStore::open(&dir.join("ev")).unwrap();
    let chain = store.read_chain(&ChainId::Run("r1".into())).unwrap();
    let mut spent = 0.0f64;
    for s in chain
        .iter()
        .filter(|s| s.record.kind == lever::evidence::RecordKind::Decision)
    {
        let body = &s.record.body;
        if let Some(cost) = body["input"]["cost"].as_str() {
            spent += cost.parse::<f64>().unwrap();
        }
        for signal in body["signals"].as_array().unwrap() {
            let observed: f64 = signal["observed"].as_str().unwrap().parse().unwrap();
            assert!(
                (observed - spent).abs() < 1e-9,
                "observed {observed}, stored inputs {spent}"
            );
        }
    }
    assert_eq!(
        chain
            .iter()
            .filter(|s| s.record.kind == lever::evidence::RecordKind::Decision)
            .count(),
        3
    );
}

#[test]
fn a_file_replaced_under_load_is_deployed_without_losing_or_mixing_a_step() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let caps = [("a", 50), ("b", 40), ("c", 30)];
    let built: Vec<Vec<u8>> = caps.iter().map(|(n, c)| build_cap(dir, n, *c)).collect();
    std::fs::copy(dir.join("a.lvc"), dir.join("active.lvc")).unwrap();
    let served = Served::launch(dir, &["--artifact", "active.lvc", "--evidence", "file:ev"]);
    let first = served.artifact_of_id();
    let stop = std::sync::atomic::AtomicBool::new(false);
    // Four clients, each starting runs of ten steps one after another until told to stop.
    // Each keeps every decision it was answered, by run.
    let answered: Vec<Vec<(String, Vec<serde_json::Value>)>> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..4)
            .map(|client| {
                let (served, stop) = (&served, &stop);
                scope.spawn(move || {
                    let mut runs = Vec::new();
                    for n in 0.. {
                        if stop.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                        let id = format!("c{client}-{n}");
                        let mut decisions = Vec::new();
                        let (status, text) = served.post(
                            "/v1/runs",
                            &format!(
                                r#"{{"run_id":"{id}","ts":"2026-01-20T10:00:00Z","tenant":"t"}}"#
                            ),
                        );
                        assert_eq!(status, 200, "{text}");
                        decisions.push(serde_json::from_str(&text).unwrap());
                        for s in 1..=10 {
                            let (status, text) = served.post(
                                &format!("/v1/runs/{id}/steps"),
                                &format!(r#"{{"ts":"2026-01-20T10:00:{s:02}Z","cost":"4"}}"#),
                            );
                            assert_eq!(status, 200, "{text}");
                            decisions.push(serde_json::from_str(&text).unwrap());
                        }
                        runs.push((id, decisions));
                    }
                    runs
                })
            })
            .collect();
        // Replace the file twice while the clients run.
        let mut seen = vec![first.clone()];
        for (i, bytes) in built.iter().enumerate().skip(1) {
            std::thread::sleep(std::time::Duration::from_millis(600));
            let tmp_path = dir.join(format!("next{i}.tmp"));
            std::fs::write(&tmp_path, bytes).unwrap();
            std::fs::rename(&tmp_path, dir.join("active.lvc")).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while served.artifact_of_id() == *seen.last().unwrap() {
                assert!(std::time::Instant::now() < deadline, "not deployed");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            seen.push(served.artifact_of_id());
        }
        std::thread::sleep(std::time::Duration::from_millis(600));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let runs: Vec<&(String, Vec<serde_json::Value>)> = answered.iter().flatten().collect();
    // Each run is judged by one artifact from start to end, and stopped where its cap
    // says (BREACH when spend >= cap, LANGUAGE §8): a $50 cap never in ten $4 steps, $40
    // at the 10th, $30 at the 8th.
    let mut by_artifact = std::collections::BTreeMap::<String, usize>::new();
    for (id, decisions) in &runs {
        let artifact = decisions[0]["artifact"].as_str().unwrap();
        assert!(
            decisions.iter().all(|d| d["artifact"] == artifact),
            "run {id} mixes artifacts"
        );
        *by_artifact.entry(artifact.to_string()).or_default() += 1;
        let stopped_at = decisions
            .iter()
            .position(|d| d["action"] == "stop")
            .map(|i| i as u32);
        let cap = caps
            .iter()
            .zip(&built)
            .find(|(_, bytes)| {
                lever::compile::artifact::Artifact::from_bytes(bytes.to_vec())
                    .unwrap()
                    .id
                    == artifact
            })
            .map(|((_, cap), _)| *cap)
            .unwrap();
        // Decision i (step i) has spent 4*i dollars.
        let expected = (1..=10).find(|i| 4 * i >= cap);
        assert_eq!(stopped_at, expected, "run {id} with a ${cap} cap");
    }
    assert_eq!(
        by_artifact.len(),
        3,
        "runs on every artifact: {by_artifact:?}"
    );
    assert_eq!(served.stop(), Some(0));

    // Every answered decision is in the store, which verifies.
    let mut store = lever::evidence::file::FileStore::open(&dir.join("ev")).unwrap();
    let stored = lever::evidence::EvidenceStore::read_all(&mut store)
        .unwrap()
        .into_iter()
        .filter(|s| s.record.kind == lever::evidence::RecordKind::Decision)
        .count();
    assert_eq!(stored, runs.iter().map(|(_, d)| d.len()).sum::<usize>());
    assert!(
        lever::evidence::audit::verify(&mut store, None, None)
            .unwrap()
            .is_ok()
    );
}
