//! `lever check` through the real binary: exit codes, formats and the embedded stdlib.

use super::{lever, root};

#[test]
fn examples_and_stdlib_check_clean() {
    let out = lever(&root(), &["check", "examples", "stdlib"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("0 errors, 0 warnings"), "{stderr}");
}

#[test]
fn a_missing_path_exits_2_naming_it() {
    let out = lever(&root(), &["check", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/dir"));
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(lever(&root(), &["check"]).status.code(), Some(2));
    assert_eq!(
        lever(&root(), &["check", "examples", "--format", "xml"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(lever(&root(), &["frobnicate"]).status.code(), Some(2));
}

#[test]
fn json_diagnostics_have_the_documented_shape() {
    let dir = root().join("tests/check/unit_limit_value");
    let out = lever(&dir, &["check", "main.policy", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = serde_json::json!([{
        "severity": "error",
        "code": "E0201",
        "message": "unit mismatch: the limit is `tokens`, the monitor is `usd`",
        "file": "main.policy",
        "line": 5,
        "column": 27,
        "end_line": 5,
        "end_column": 38,
        "help": "write the value in dollars, e.g. `$5.00`"
    }]);
    assert_eq!(list, expected);
    // Field order is part of the contract: read it from the text, not a sorted map.
    let text = String::from_utf8(out.stdout).unwrap();
    let order = [
        "severity",
        "code",
        "message",
        "file",
        "line",
        "column",
        "end_line",
        "end_column",
        "help",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|k| text.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "keys out of order in {text}"
    );
}

#[test]
fn the_stdlib_is_embedded_so_imports_work_from_any_directory() {
    let dir = std::env::temp_dir().join(format!("lever-embedded-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("p.policy"),
        "import std.llm\npolicy p {\n  version 1\n  scope all\n  limit std.llm.cost to $1 { breach => stop }\n}\n",
    )
    .unwrap();
    let out = lever(&dir, &["check", "p.policy"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn warnings_alone_exit_0_and_are_printed() {
    let dir = root().join("tests/check/warn_limit_at_zero");
    let out = lever(&dir, &["check", "."]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("W0402") && stderr.contains("0 errors, 1 warning"),
        "{stderr}"
    );
}

#[test]
fn three_mistakes_in_one_file_give_three_diagnostics() {
    let dir = root().join("tests/check/syntax_three_mistakes");
    let out = lever(&dir, &["check", ".", "--format", "json"]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.len(), 3, "{list:?}");
}

/// Writes `text` to a fresh directory and runs `lever check` on it.
fn check_text(name: &str, text: &str) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("lever-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("deep.policy"), text).unwrap();
    let out = lever(&dir, &["check", "deep.policy", "--format", "json"]);
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

#[test]
fn hostile_nesting_is_an_error_not_a_crash() {
    let n = 100_000;
    let inputs = [
        (
            "parens",
            format!("const A = {}1{}", "(".repeat(n), ")".repeat(n)),
        ),
        ("chain", format!("const A = 1{}", " + 1".repeat(n))),
        ("nots", format!("const A = {}true", "not ".repeat(n))),
        ("minus", format!("const A = {}1", "-".repeat(n))),
        (
            "scope",
            format!("policy p {{ version 1 scope {}all }}", "not ".repeat(n)),
        ),
        (
            "scope_chain",
            format!("policy p {{ version 1 scope all{} }}", " or all".repeat(n)),
        ),
    ];
    for (name, text) in inputs {
        let out = check_text(name, &text);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            list.iter().any(|d| d["code"] == "E0010"
                && d["message"]
                    .as_str()
                    .unwrap()
                    .contains("nested more than 256")),
            "{name}: {list:?}"
        );
    }
}

#[test]
fn nesting_up_to_the_limit_checks_clean() {
    let text = format!(
        "const A = {}1{} + 1{}",
        "(".repeat(100),
        ")".repeat(100),
        " + 1".repeat(100)
    );
    let out = check_text("shallow", &text);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn sarif_output_locates_each_diagnostic_and_its_labels() {
    // The case marks E0315 on line 5 by hand; `alert(ui, ui)` has its second `ui` at
    // column 52 and its first at column 48.
    let case = root().join("tests/check/alert_lists_channel_twice");
    let out = lever(
        &root(),
        &["check", case.to_str().unwrap(), "--format", "sarif"],
    );
    assert_eq!(out.status.code(), Some(1), "errors still exit 1");
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "lever");
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r["ruleId"], "E0315");
    assert_eq!(r["level"], "error");
    assert_eq!(r["message"]["text"], "channel `ui` listed twice");
    let rule = &run["tool"]["driver"]["rules"][r["ruleIndex"].as_u64().unwrap() as usize];
    assert_eq!(rule["id"], "E0315");
    let loc = &r["locations"][0]["physicalLocation"];
    assert!(
        loc["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("alert_lists_channel_twice/main.policy")
    );
    assert_eq!(
        (
            &loc["region"]["startLine"],
            &loc["region"]["startColumn"],
            &loc["region"]["endColumn"]
        ),
        (
            &serde_json::json!(5),
            &serde_json::json!(52),
            &serde_json::json!(54)
        )
    );
    let related = &r["relatedLocations"][0];
    assert_eq!(related["message"]["text"], "first listed here");
    assert_eq!(related["physicalLocation"]["region"]["startColumn"], 48);

    // A clean set is a log with no results, exit 0; warnings are `warning` results.
    let clean = lever(&root(), &["check", "examples", "--format", "sarif"]);
    assert_eq!(clean.status.code(), Some(0));
    let log: serde_json::Value = serde_json::from_slice(&clean.stdout).unwrap();
    assert_eq!(log["runs"][0]["results"], serde_json::json!([]));
}

#[test]
fn diff_lists_what_changed_between_two_artifacts() {
    let tmp = tempfile::tempdir().unwrap();
    let build = |name: &str| {
        let out = tmp.path().join(format!("{name}.lvc"));
        let src = root().join(format!("tests/diff/{name}.policy"));
        let built = lever(
            &root(),
            &["build", src.to_str().unwrap(), "-o", out.to_str().unwrap()],
        );
        assert_eq!(built.status.code(), Some(0));
        out.to_str().unwrap().to_string()
    };
    let (old, new) = (build("old"), build("new"));
    let out = lever(&root(), &["diff", &old, &new]);
    assert_eq!(out.status.code(), Some(1), "changes exit 1");
    let text = String::from_utf8(out.stdout).unwrap();
    // Written by hand from the two files.
    let expected = "\
+ policy fresh v1 (scope agent == \"x\")
- policy gone v1 (scope all)
~ policy cap v1 -> v2
    scope widened: tenant == \"acme\" -> tenant in [\"acme\", \"globex\"]
    precedence changed: 10 -> 5
    limit raised std.llm.cost: $5.00 -> $8.00
    near changed std.llm.cost: 80% -> 90%
    breach actions changed std.llm.cost: stop, alert(ops) -> kill, alert(ops)
    limit removed std.llm.tokens: was 1000 tokens
    limit added std.llm.burn_1m: $1.00
    override rule removed: was role \"sre\" may raise std.llm.cost up to $10.00 for 1h
channel changed ops: webhook(url: env(\"U\"), secret: env(\"S\")) -> webhook(url: env(\"U2\"), secret: env(\"S\"))
";
    let (first, rest) = text.split_once('\n').unwrap();
    assert!(
        first.starts_with("artifact blake3:") && first.contains(" -> blake3:"),
        "{first}"
    );
    assert_eq!(rest, expected);

    // JSON, and the reverse direction: a narrowed scope and a lowered limit.
    let out = lever(&root(), &["diff", &new, &old, "--format", "json"]);
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = d["changed"][0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"scope_narrowed") && kinds.contains(&"limit_lowered"),
        "{kinds:?}"
    );
    assert_eq!(d["added"][0]["policy"], "gone");

    // The same artifact twice: nothing, exit 0. A damaged artifact: exit 2.
    let same = lever(&root(), &["diff", &old, &old]);
    assert_eq!(same.status.code(), Some(0));
    assert!(
        String::from_utf8(same.stdout)
            .unwrap()
            .ends_with("no policy changes\n")
    );
    let mut bytes = std::fs::read(&old).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let bad = tmp.path().join("bad.lvc");
    std::fs::write(&bad, bytes).unwrap();
    let out = lever(&root(), &["diff", bad.to_str().unwrap(), &new]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8(out.stderr).unwrap().contains("bad.lvc"));
}

#[test]
fn explain_says_which_policies_applied_and_where_each_limit_stood() {
    let events = root().join("examples/events/support.jsonl");
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            "examples",
            "--events",
            events.to_str().unwrap(),
            "--run",
            "support-42",
        ];
        args.extend(extra);
        lever(&root(), &args)
    };
    // Seq 13 is the step whose cost reaches $5.40 against support_budget's $5 cap.
    let out = explain(&["--step", "13", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["decision"]["action"], "stop");
    let policy = |name: &str| {
        e["policies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["policy"] == name)
            .unwrap()
            .clone()
    };
    // support-bot is in support_budget's agent list; the run has no `plan` label.
    let budget = policy("support_budget");
    assert_eq!(
        (budget["status"].as_str(), budget["scope_matches"].as_bool()),
        (Some("bound"), Some(true))
    );
    assert_eq!(
        budget["read"],
        serde_json::json!([{"attribute": "agent", "value": "support-bot"}])
    );
    assert_eq!(policy("free_tier_cap")["status"], "out of scope");
    assert_eq!(policy("human_sessions")["status"], "out of scope");
    let limit = super::limit_of(&e, "support_budget", "std.llm.cost");
    assert_eq!(
        (
            limit["observed"].as_str(),
            limit["effective_value"].as_str(),
            limit["zone"].as_str()
        ),
        (Some("5.40"), Some("5.00"), Some("breach"))
    );
    // Both support_budget (precedence 10) and tenant_default (1000) limit std.llm.cost;
    // the lead is most_restrictive, so both are judged.
    let group = &e["arbitration"][0];
    assert_eq!(group["monitor"], "std.llm.cost");
    assert_eq!(group["lead"], serde_json::json!(["support_budget"]));
    assert!(
        group["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["judged"] == true)
    );

    // A raise in force shows its effective value and when it ends.
    let case = root()
        .join("tests/replay/override_raise_expires_at_exactly_until_and_the_limit_fires_again");
    let out = lever(
        &root(),
        &[
            "explain",
            case.join("p.policy").to_str().unwrap(),
            "--events",
            case.join("events.jsonl").to_str().unwrap(),
            "--run",
            "r1",
            "--step",
            "3",
        ],
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("p / std.llm.cost: observed 6.00, limit 8.00 (raised from 5.00 until 2026-01-20T10:30:01Z), zone BELOW"),
        "{text}"
    );

    // No such event: exit 1, saying which seqs the run has.
    let out = explain(&["--step", "99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("has no event with seq 99")
    );
}

#[test]
fn a_huge_token_is_never_echoed_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let huge = "y".repeat(10_000_000);
    std::fs::write(
        tmp.path().join("big.policy"),
        format!("policy p {{ version 1 scope agent == \"{huge}\" limit {huge} to $1 {{ breach => stop }} }}\n"),
    )
    .unwrap();
    for format in ["human", "json", "sarif"] {
        let out = lever(tmp.path(), &["check", "big.policy", "--format", format]);
        assert_eq!(out.status.code(), Some(1));
        let text = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains(&"y".repeat(100)),
            "{format}: the token is echoed"
        );
        assert!(text.len() < 100_000, "{format}: {} bytes", text.len());
        assert!(
            text.contains("10000002 characters") || text.contains("too long"),
            "{format}: {text}"
        );
    }
}

/// `lever bench` times the user's own policies and events on both engines, and says how
/// many events and steps it judged.
#[test]
fn bench_times_the_examples_on_both_engines() {
    let events = root().join("examples/events/support.jsonl");
    let out = lever(
        &root(),
        &[
            "bench",
            "examples",
            "--events",
            events.to_str().unwrap(),
            "--passes",
            "2",
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines = std::fs::read_to_string(&events).unwrap();
    let steps = lines
        .lines()
        .filter(|l| l.contains(r#""type":"step""#))
        .count();
    assert_eq!(
        report["events"],
        lines.lines().filter(|l| !l.trim().is_empty()).count()
    );
    assert_eq!(report["steps"], steps);
    assert_eq!(report["passes"], 2);
    for engine in ["interp", "jit"] {
        let ns = report["engines"][engine]["median_ns_per_event"].as_u64();
        assert!(ns.is_some_and(|ns| ns > 0), "{engine}: {report}");
    }
    // Nothing to time is a usage error.
    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join("e.jsonl"), "\n").unwrap();
    let examples = root().join("examples");
    let out = lever(
        empty.path(),
        &["bench", examples.to_str().unwrap(), "--events", "e.jsonl"],
    );
    assert_eq!(out.status.code(), Some(2));
}
