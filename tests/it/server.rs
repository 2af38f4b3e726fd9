//! `lever serve` over real HTTP: every endpoint of this stage and its error paths,
//! decisions identical to `lever run`'s for the same events, concurrent runs with group
//! commit, and a graceful stop on SIGTERM that leaves a store that verifies.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};

struct Served {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl Served {
    fn start(dir: &std::path::Path, evidence: &str) -> Served {
        Served::start_with(dir, evidence, &[])
    }

    fn start_with(dir: &std::path::Path, evidence: &str, extra: &[&str]) -> Served {
        let root = super::root();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lever"))
            .args([
                "serve",
                "--artifact",
                root.join("examples").to_str().unwrap(),
            ])
            .args(["--evidence", evidence, "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("LEVER_TEST_TOKEN_DAVE", "dave-token-0123456789")
            .current_dir(dir)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("lever: serving on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        // Keep reading standard error so that the server never blocks on it.
        std::thread::spawn(move || for _ in stderr.lines() {});
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        Served { child, base, agent }
    }

    fn post(&self, path: &str, body: &str) -> (u16, String) {
        self.post_as(None, path, body)
    }

    fn post_as(&self, token: Option<&str>, path: &str, body: &str) -> (u16, String) {
        let mut req = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some(t) = token {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        let mut r = req.send(body).unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut r = self
            .agent
            .get(&format!("{}{path}", self.base))
            .call()
            .unwrap();
        (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
    }

    /// SIGTERM, and the exit code.
    fn stop(mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        self.child.wait().unwrap().code()
    }
}

/// The example events as (endpoint, body) requests.
fn requests() -> Vec<(String, String)> {
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
    let expected: Vec<serde_json::Value> = String::from_utf8(replayed.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("line");
            v
        })
        .collect();
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
    let kinds: Vec<String> = evidence
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
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

    assert_eq!(served.stop(), Some(0), "a graceful stop");
    let verified = super::lever(tmp.path(), &["evidence", "verify", "--evidence", "file:ev"]);
    assert_eq!(verified.status.code(), Some(0));
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

[[tokens]]
token_env = "LEVER_TEST_TOKEN_DAVE"
actor = "dave@example.com"
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
