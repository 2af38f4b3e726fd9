//! What the web console reads, over real HTTP: live runs with their states, a run's chain
//! verified by the server (and a rewritten one named), the deploy history with its diffs,
//! the `[ui]` settings, and the console's own files with their headers. The page itself is
//! tested in a browser (`console.rs`).

use super::audit_trust::tamper;
use super::served::Served;
use super::server::build_cap;
use super::stores::Schema;
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Asserts a 200 answer, showing its body otherwise.
fn ok(r: &mut ureq::http::Response<ureq::Body>) {
    let status = r.status().as_u16();
    assert_eq!(status, 200, "{}", r.body_mut().read_to_string().unwrap());
}

/// A support-bot run (the examples' `support_budget`: $5.00, NEAR at 80%) with steps two
/// minutes apart (under its $0.50-a-minute burn limit).
fn support_run(served: &Served, id: &str, costs: &[&str]) {
    let start = format!(
        r#"{{"run_id":"{id}","ts":"2026-01-20T10:00:00Z","tenant":"acme","agent":"support-bot","api_key":"k_1"}}"#
    );
    assert_eq!(served.post("/v1/runs", &start).0, 200);
    for (i, cost) in costs.iter().enumerate() {
        let step = format!(
            r#"{{"ts":"2026-01-20T10:0{}:00Z","cost":"{cost}"}}"#,
            2 * (i + 1)
        );
        let (status, text) = served.post(&format!("/v1/runs/{id}/steps"), &step);
        assert_eq!(status, 200, "{text}");
    }
}

#[test]
fn live_runs_are_listed_with_their_states_and_near_markers() {
    let tmp = tempfile::tempdir().unwrap();
    let served = Served::start(tmp.path(), "file:ev");
    support_run(&served, "r1", &["0.45"]);
    support_run(&served, "r2", &[]);
    let (status, text) = served.get("/v1/runs?state=live&detail=status");
    assert_eq!(status, 200, "{text}");
    let list = json(&text);
    assert_eq!(
        (list["live"].as_u64(), list["truncated"].as_bool()),
        (Some(2), Some(false))
    );
    let r1 = list["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == "r1")
        .unwrap();
    assert_eq!(
        (&r1["tenant"], &r1["agent"], &r1["api_key"], &r1["state"]),
        (
            &"acme".into(),
            &"support-bot".into(),
            &"k_1".into(),
            &"running".into()
        )
    );
    let cost = super::limit_of(r1, "support_budget", "std.llm.cost");
    // 80% of $5.00.
    assert_eq!(
        (&cost["observed"], &cost["near_value"], &cost["unit"]),
        (&"0.45".into(), &"4.00".into(), &"usd".into())
    );
    // The same state as the run's own route gives.
    let (_, one) = served.get("/v1/runs/r1");
    assert_eq!(json(&one), *r1);
    let (status, text) = served.get("/v1/runs?state=live&detail=status&limit=1");
    assert_eq!(status, 200);
    let one_of_two = json(&text);
    assert_eq!(one_of_two["runs"].as_array().unwrap().len(), 1);
    assert_eq!(one_of_two["truncated"], true);
    for (query, why) in [
        ("detail=full", "`detail` may only be `status`, not `full`"),
        (
            "detail=status&limit=0",
            "`limit` must be a number from 1 to 1000",
        ),
        ("stat=x", "unknown field `stat`"),
    ] {
        let (status, text) = served.get(&format!("/v1/runs?state=live&{query}"));
        assert_eq!(status, 400, "{query}: {text}");
        assert!(text.contains(why), "{query}: {text}");
    }
}

#[test]
fn the_server_verifies_a_run_and_names_a_rewritten_record() {
    let tmp = tempfile::tempdir().unwrap();
    let schema = Schema::new();
    let served = Served::start(tmp.path(), &schema.url);
    support_run(&served, "r1", &["0.45", "0.40"]);
    let (_, evidence) = served.get("/v1/runs/r1/evidence");
    let records: Vec<Value> = evidence.lines().map(json).collect();
    let head = records.last().unwrap();
    let (status, text) = served.get("/v1/runs/r1/verify");
    assert_eq!(status, 200, "{text}");
    let verified = json(&text);
    assert_eq!(verified["verified"], true);
    assert_eq!(verified["records"].as_u64(), Some(records.len() as u64));
    assert_eq!(
        (&verified["head"]["n"], &verified["head"]["hash"]),
        (&head["n"], &head["hash"])
    );
    // A superuser rewrites the second step's cost in place.
    tamper(
        &schema,
        "UPDATE {s}.records SET record = convert_to(replace(convert_from(record, 'UTF8'), '\"0.40\"', '\"0.04\"'), 'UTF8') WHERE kind = 'decision' AND seq = 3",
    );
    let (status, text) = served.get("/v1/runs/r1/verify");
    assert_eq!(status, 200, "{text}");
    let caught = json(&text);
    assert_eq!(caught["verified"], false, "{text}");
    let problem = caught["problem"].as_str().unwrap();
    assert!(
        problem.starts_with("run `r1`, record 3 (seq 3): its content does not match its hash"),
        "{problem}"
    );
    let (status, text) = served.get("/v1/runs/nobody/verify");
    assert_eq!(
        (status, text.contains("no evidence of run `nobody`")),
        (404, true)
    );
}

#[test]
fn deploys_are_listed_newest_first_with_their_diffs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    build_cap(dir, "a", 5);
    let b = build_cap(dir, "b", 7);
    std::fs::write(
        dir.join("lever.toml"),
        "[[tokens]]\ntoken = \"admin-token-0123456789\"\nactor = \"ops@example.com\"\nadmin = true\n",
    )
    .unwrap();
    let args = [
        "--artifact",
        "a.lvc",
        "--config",
        "lever.toml",
        "--evidence",
        "file:ev",
    ];
    let served = Served::launch(dir, &args);
    assert_eq!(
        json(&served.get("/v1/deploys").1)["deploys"],
        Value::Array(vec![])
    );
    let a_id = served.artifact_of_id();
    let mut r = served
        .agent
        .put(&format!("{}/v1/artifacts", served.base))
        .header("authorization", "Bearer admin-token-0123456789")
        .send(&b[..])
        .unwrap();
    ok(&mut r);
    let b_id = served.artifact_of_id();
    let (status, text) = served.get("/v1/deploys");
    assert_eq!(status, 200, "{text}");
    let deploys = json(&text)["deploys"].as_array().unwrap().clone();
    assert_eq!(deploys.len(), 1, "{text}");
    let d = &deploys[0];
    assert_eq!(
        (d["actor"].as_str(), d["from"].as_str(), d["to"].as_str()),
        (
            Some("ops@example.com"),
            Some(a_id.as_str()),
            Some(b_id.as_str())
        )
    );
    assert_eq!(d["hash"].as_str().map(str::len), Some(64));
    let diff = d["diff"].as_str().unwrap();
    assert!(
        diff.starts_with(&format!("artifact {a_id} -> {b_id}\n")),
        "{diff}"
    );
    assert!(diff.contains("~ policy cap v5 -> v7"), "{diff}");
    assert!(
        diff.contains("limit raised std.llm.cost: $5.00 -> $7.00"),
        "{diff}"
    );
    // The artifact a deploy replaced still answers for the runs judged by it.
    let version = |query: &str| {
        let (status, text) = served.get(&format!("/v1/policies{query}"));
        assert_eq!(status, 200, "{text}");
        let active = json(&text);
        (
            active["artifact"].clone(),
            active["policies"][0]["version"].clone(),
        )
    };
    assert_eq!(version(""), (b_id.as_str().into(), 7.into()));
    assert_eq!(
        version(&format!("?artifact={a_id}")),
        (a_id.as_str().into(), 5.into())
    );
    let (status, text) = served.get("/v1/policies?artifact=blake3:00");
    assert_eq!(status, 404, "{text}");
    assert!(
        text.contains("artifact blake3:00 is not loaded by this server"),
        "{text}"
    );
    let stored = super::store_records(dir, "file:ev", "deploy");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["hash"], d["hash"]);
}

#[test]
fn the_console_is_served_with_its_headers_and_the_ui_table_is_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let served = Served::start(dir, "file:ev");
    let fetch = |path: &str| {
        let mut r = served
            .agent
            .get(&format!("{}{path}", served.base))
            .call()
            .unwrap();
        let kind = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let csp = r.headers().get("content-security-policy").is_some();
        (
            r.status().as_u16(),
            kind,
            csp,
            r.body_mut().read_to_string().unwrap(),
        )
    };
    let (status, kind, csp, html) = fetch("/ui/");
    assert_eq!(
        (status, kind.as_deref(), csp),
        (200, Some("text/html; charset=utf-8"), true)
    );
    assert!(
        html.contains(r#"<script type="module" src="/ui/app.js">"#),
        "{html}"
    );
    let (status, kind, _, _) = fetch("/ui/runs.js");
    assert_eq!(
        (status, kind.as_deref()),
        (200, Some("text/javascript; charset=utf-8"))
    );
    assert_eq!(
        fetch("/ui/config.json").3,
        r#"{"require_token":true,"version":"0.1.0"}"#
    );
    assert_eq!(fetch("/ui/nothing.js").0, 404);
    // Without a token, the console's reads are refused.
    assert_eq!(fetch("/v1/runs?state=live").0, 401);
    drop(served);

    // `[ui] require_token = false` opens the reads, and says so.
    std::fs::write(dir.join("open.toml"), "[ui]\nrequire_token = false\n").unwrap();
    let args = [
        "--artifact",
        "x",
        "--evidence",
        "file:ev2",
        "--config",
        "open.toml",
    ];
    let examples = super::root().join("examples");
    let args: Vec<&str> = args
        .iter()
        .map(|a| {
            if *a == "x" {
                examples.to_str().unwrap()
            } else {
                a
            }
        })
        .collect();
    let open = Served::launch(dir, &args);
    assert!(open.said.contains("reads need no token"), "{}", open.said);
    let mut r = open
        .agent
        .get(&format!("{}/v1/runs?state=live", open.base))
        .call()
        .unwrap();
    ok(&mut r);
    drop(open);

    // `[ui] enabled = false`: no console.
    std::fs::write(dir.join("off.toml"), "[ui]\nenabled = false\n").unwrap();
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "open.toml" { "off.toml" } else { a })
        .collect();
    let off = Served::launch(dir, &args);
    let mut r = off.agent.get(&format!("{}/ui/", off.base)).call().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(
        r.body_mut()
            .read_to_string()
            .unwrap()
            .contains("no route /ui/")
    );
    drop(off);

    // A contradiction is refused at start, naming both settings.
    std::fs::write(
        dir.join("both.toml"),
        "[server]\npublic_reads = true\n[ui]\nrequire_token = true\n",
    )
    .unwrap();
    let refused = super::lever(
        dir,
        &[
            "serve",
            "--artifact",
            examples.to_str().unwrap(),
            "--evidence",
            "file:ev3",
            "--config",
            "both.toml",
        ],
    );
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(
        said.contains(
            "both.toml: [ui] require_token = true contradicts [server] public_reads = true"
        ),
        "{said}"
    );
}

#[test]
fn every_server_of_a_postgresql_fleet_lists_what_the_store_holds() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let schema = Schema::new();
    let a = Served::start(a_dir.path(), &schema.url);
    let b = Served::start(b_dir.path(), &schema.url);
    let cost_on = |served: &Served| {
        let (status, text) = served.get("/v1/runs?state=live&detail=status");
        assert_eq!(status, 200, "{text}");
        let list = json(&text);
        let run = list["runs"].as_array().unwrap().first().cloned().unwrap();
        let cost = super::limit_of(&run, "support_budget", "std.llm.cost");
        (
            run["seq"].as_u64().unwrap(),
            cost["observed"].as_str().unwrap().to_string(),
        )
    };
    support_run(&a, "r1", &["0.45"]);
    assert_eq!(cost_on(&b), (2, "0.45".to_string()));
    // B now holds r1 at seq 2; A judges two more steps, and B's list follows.
    for (ts, cost) in [("10:04", "0.40"), ("10:06", "0.30")] {
        let step = format!(r#"{{"ts":"2026-01-20T{ts}:00Z","cost":"{cost}"}}"#);
        assert_eq!(a.post("/v1/runs/r1/steps", &step).0, 200);
    }
    assert_eq!(cost_on(&b), (4, "1.15".to_string()));
    assert_eq!(cost_on(&a), (4, "1.15".to_string()));
    // A rejected step stops the run under `fail_closed` without a new seq: B sees it too.
    let bad = r#"{"ts":"2026-01-20T10:08:00Z","cost":"abc"}"#;
    let (status, text) = a.post("/v1/runs/r1/steps", bad);
    assert_eq!(status, 422, "{text}");
    let (_, text) = b.get("/v1/runs?state=live&detail=status");
    assert_eq!(json(&text)["runs"][0]["state"], "stopped", "{text}");
    let (_, text) = b.get("/v1/runs/r1");
    assert_eq!(json(&text)["state"], "stopped", "{text}");
}
