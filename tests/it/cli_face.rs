//! The command line's human face: `lever run`'s table and summary, `--dry-run`, the advice
//! of a refused replay, `lever inspect`'s clauses in their units, `lever completions`.

use super::{lever, root};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn support_run(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let examples = root().join("examples");
    let events = examples.join("events/support.jsonl");
    let mut args = vec![
        "run",
        examples.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ];
    args.extend(extra);
    lever(dir, &args)
}

#[test]
fn the_table_says_each_decision_in_words_with_units_and_a_summary_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let out = support_run(tmp.path(), &["--format", "table"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert_eq!(rows.len(), 16, "a header and 15 decisions:\n{table}");
    assert!(
        rows[0]
            .split_whitespace()
            .eq(["LINE", "SEQ", "RUN", "EVENT", "ACTION", "WHY"])
    );
    // Line 10 crosses NEAR at $4.05 of $5.00; line 13 breaches at $5.40 and stops.
    assert!(
        rows[10]
            .split_whitespace()
            .take(5)
            .eq(["10", "10", "support-42", "step", "continue"])
    );
    assert!(
        rows[10].ends_with(
            "NEAR std.llm.cost $4.05 of $5.00 (81%) in support_budget v3; alerted ui, llmops"
        ),
        "{}",
        rows[10]
    );
    assert!(rows[13].contains(" stop "), "{}", rows[13]);
    assert!(
        rows[13].contains(
            "breach: std.llm.cost of support_budget; BREACH std.llm.cost $5.40 of $5.00 (108%)"
        ),
        "{}",
        rows[13]
    );
    assert!(rows[14].split_whitespace().eq([
        "14",
        "14",
        "support-42",
        "step",
        "refused",
        "run_stopped"
    ]));
    assert_eq!(
        text(&out.stderr).trim(),
        "lever: 1 run, 15 decisions (12 continue, 2 stop, 1 refused), 2 signals (1 near, 1 breach), 0 rejected lines; evidence in file:./lever-evidence"
    );
}

#[test]
fn piped_output_is_json_lines_and_a_dry_run_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = support_run(tmp.path(), &["--dry-run"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let decisions: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(decisions.len(), 15);
    assert_eq!(decisions[12]["action"], "stop");
    assert!(
        !tmp.path().join("lever-evidence").exists(),
        "a dry run opens no store"
    );
    assert!(
        text(&out.stderr).contains("nothing written (--dry-run)"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_replay_the_store_contradicts_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(support_run(tmp.path(), &[]).status.success());
    // The same run id with other events: its stored evidence says otherwise.
    let events = tmp.path().join("other.jsonl");
    std::fs::write(
        &events,
        "{\"type\":\"run_start\",\"run_id\":\"support-42\",\"ts\":\"2026-01-20T10:00:00Z\",\"tenant\":\"globex\"}\n",
    )
    .unwrap();
    let examples = root().join("examples");
    let out = lever(
        tmp.path(),
        &[
            "run",
            examples.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let said = text(&out.stderr);
    assert!(
        said.contains("replay refused: run `support-42` differs from its stored evidence at seq 1"),
        "{said}"
    );
    assert!(
        said.contains("`--evidence file:./other-evidence`"),
        "{said}"
    );
    assert!(said.contains("`--dry-run`"), "{said}");
    let dry = lever(
        tmp.path(),
        &[
            "run",
            examples.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
            "--dry-run",
        ],
    );
    assert!(dry.status.success(), "{}", text(&dry.stderr));
}

#[test]
fn inspect_shows_every_clause_in_its_units_and_every_override_rule_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let built = lever(
        tmp.path(),
        &[
            "build",
            root().join("examples").to_str().unwrap(),
            "-o",
            "p.lvc",
        ],
    );
    assert!(built.status.success(), "{}", text(&built.stderr));
    let out = lever(tmp.path(), &["inspect", "p.lvc"]);
    let shown = text(&out.stdout);
    for line in [
        "limit std.llm.cost to $5.00  near 80% ($4.00) => alert(ui, llmops)  breach => stop, alert(ops, oncall)",
        "limit std.llm.tokens to 200000 tokens  near 90% (180000 tokens) => alert(ops)  breach => pause",
        "limit gpt4_cost (support_budget/gpt4_cost) to $2.00  breach => stop",
        "allow role \"sre-oncall\" to raise std.llm.cost up to $10.00 for 1h requires reason",
        "allow role \"security\" to suspend for 15m requires reason approvals 2",
        "allow actor \"alice@example.com\" to resume",
    ] {
        assert!(
            shown.lines().any(|l| l.trim() == line),
            "no `{line}` in:\n{shown}"
        );
    }
    // The exact bytes of an embedded source, and a refusal naming what it holds.
    let out = lever(
        tmp.path(),
        &["inspect", "p.lvc", "--source", "support.policy"],
    );
    let held = std::fs::read(root().join("examples/support.policy")).unwrap();
    assert_eq!(out.stdout, held, "the source byte for byte");
    let out = lever(tmp.path(), &["inspect", "p.lvc", "--source", "nope.policy"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("holds no source \"nope.policy\"; it holds burn_kill.policy"),
        "{}",
        text(&out.stderr)
    );
    let out = lever(tmp.path(), &["inspect", "p.lvc", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let support = v["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "support_budget")
        .unwrap();
    let cost = &support["limits"][0];
    assert_eq!(cost["text"], "$5.00");
    assert_eq!(cost["near"]["percent"], "80");
    assert_eq!(cost["near"]["at"], "4");
    assert_eq!(
        cost["near"]["actions"]["alerts"],
        serde_json::json!(["ui", "llmops"])
    );
    assert_eq!(cost["breach"]["enforcement"], "stop");
    let rule = &support["overrides"][1];
    assert_eq!(
        (
            rule["role"].as_str(),
            rule["kind"].as_str(),
            rule["for"].as_str(),
            rule["approvals"].as_u64()
        ),
        (Some("security"), Some("suspend"), Some("15m"), Some(2))
    );
    assert_eq!(rule["requires_reason"], true);
}

#[test]
fn completions_are_printed_for_each_shell() {
    let tmp = tempfile::tempdir().unwrap();
    for (shell, mark) in [
        ("bash", "_lever()"),
        ("zsh", "#compdef lever"),
        ("fish", "complete -c lever"),
    ] {
        let out = lever(tmp.path(), &["completions", shell]);
        assert!(out.status.success());
        let script = text(&out.stdout);
        assert!(
            script.contains(mark) && script.contains("inspect"),
            "{shell}: {script}"
        );
    }
    assert_eq!(
        lever(tmp.path(), &["completions", "tcsh"]).status.code(),
        Some(2)
    );
}

#[test]
fn every_command_s_help_has_an_example() {
    let tmp = tempfile::tempdir().unwrap();
    let commands = [
        "check",
        "build",
        "run",
        "serve",
        "evidence",
        "inspect",
        "diff",
        "fmt",
        "lsp",
        "test",
        "explain",
        "bench",
        "completions",
        "keygen",
        "verify-artifact",
    ];
    for c in commands {
        let help = text(&lever(tmp.path(), &[c, "--help"]).stdout);
        assert!(
            help.contains("Example"),
            "`lever {c} --help` has no example:\n{help}"
        );
    }
    for c in [
        "verify",
        "digest",
        "migrate",
        "show",
        "budgets",
        "list",
        "checkpoint",
        "prove",
        "check-proof",
        "consistency",
        "cosign",
    ] {
        let help = text(&lever(tmp.path(), &["evidence", c, "--help"]).stdout);
        assert!(
            help.contains("Example"),
            "`lever evidence {c} --help` has no example"
        );
    }
}

/// Two runs, one paused and one left running, and a deploy between them.
fn listed_store(dir: &std::path::Path, evidence: &str) {
    let policy = "import std.llm\npolicy cap { version 1 scope all limit std.llm.tokens to 100 tokens { breach => pause } }\n";
    std::fs::write(dir.join("p.policy"), policy).unwrap();
    std::fs::create_dir_all(dir.join("v2")).unwrap();
    std::fs::write(
        dir.join("v2/p.policy"),
        policy.replace("version 1", "version 2"),
    )
    .unwrap();
    let events = [
        r#"{"type":"run_start","run_id":"a","ts":"2026-01-20T10:00:00Z","tenant":"acme"}"#,
        r#"{"type":"step","run_id":"a","ts":"2026-01-20T10:01:00Z","input_tokens":150}"#,
        r#"{"type":"deploy","ts":"2026-01-20T10:02:00Z","artifact":"v2"}"#,
        r#"{"type":"run_start","run_id":"b","ts":"2026-01-20T10:03:00Z","tenant":"acme"}"#,
        r#"{"type":"step","run_id":"b","ts":"2026-01-20T10:04:00Z","input_tokens":10}"#,
    ];
    std::fs::write(dir.join("e.jsonl"), events.join("\n")).unwrap();
    let out = lever(
        dir,
        &[
            "run",
            "p.policy",
            "--events",
            "e.jsonl",
            "--evidence",
            evidence,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn evidence_list_and_show_name_runs_states_and_the_store_chain_on_both_stores() {
    let schema = super::stores::Schema::new();
    for evidence in ["file:ev", schema.url.as_str()] {
        let tmp = tempfile::tempdir().unwrap();
        listed_store(tmp.path(), evidence);
        let out = lever(
            tmp.path(),
            &[
                "evidence",
                "list",
                "--evidence",
                evidence,
                "--format",
                "json",
            ],
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["runs"],
            serde_json::json!([
                {"run_id": "a", "state": "paused", "decisions": 2, "last_ts": "2026-01-20T10:01:00Z"},
                {"run_id": "b", "state": "running", "decisions": 2, "last_ts": "2026-01-20T10:04:00Z"},
            ]),
            "{evidence}"
        );
        assert_eq!(
            v["store_chain"],
            serde_json::json!({"artifact": 2, "deploy": 1})
        );
        let human = text(&lever(tmp.path(), &["evidence", "list", "--evidence", evidence]).stdout);
        assert!(
            human.contains("2 runs; store chain: 2 artifact, 1 deploy"),
            "{human}"
        );
        let out = lever(
            tmp.path(),
            &[
                "evidence",
                "show",
                "--store",
                "--kind",
                "deploy",
                "--evidence",
                evidence,
            ],
        );
        let shown = text(&out.stdout);
        assert!(
            shown.starts_with("the store chain: 3 records (1 shown), chain head "),
            "{shown}"
        );
        assert!(
            shown
                .trim_end()
                .ends_with(" by replay at 2026-01-20T10:02:00Z"),
            "{shown}"
        );
        let out = lever(
            tmp.path(),
            &[
                "evidence",
                "show",
                "--store",
                "--format",
                "json",
                "--evidence",
                evidence,
            ],
        );
        let kinds = super::kinds_of(&text(&out.stdout));
        assert_eq!(kinds, ["artifact", "artifact", "deploy"]);
        let missing = lever(
            tmp.path(),
            &[
                "evidence",
                "show",
                "--store",
                "--kind",
                "digest",
                "--evidence",
                evidence,
            ],
        );
        assert_eq!(missing.status.code(), Some(1));
        assert!(text(&missing.stderr).contains("the store chain holds no digest record"));
    }
}

#[test]
fn check_against_a_previous_artifact_warns_of_a_changed_policy_that_kept_its_version() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = "import std.llm\npolicy cap { version 3 scope all limit std.llm.cost to $5 { breach => stop } }\n";
    std::fs::write(tmp.path().join("p.policy"), v1).unwrap();
    assert!(
        lever(tmp.path(), &["build", "p.policy", "-o", "old.lvc"])
            .status
            .success()
    );
    let check_against = || {
        let args = [
            "check",
            "p.policy",
            "--against",
            "old.lvc",
            "--format",
            "json",
        ];
        lever(tmp.path(), &args)
    };
    // Unchanged, and changed with a new version: nothing to say.
    let clean = check_against();
    assert_eq!(text(&clean.stdout).trim(), "[]");
    std::fs::write(
        tmp.path().join("p.policy"),
        v1.replace("$5", "$8").replace("version 3", "version 4"),
    )
    .unwrap();
    let bumped = check_against();
    assert_eq!(text(&bumped.stdout).trim(), "[]");
    // Changed under the same version: W0405 on the policy, exit 0 (a warning).
    std::fs::write(tmp.path().join("p.policy"), v1.replace("$5", "$8")).unwrap();
    let out = check_against();
    assert_eq!(out.status.code(), Some(0));
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d[0]["code"], "W0405");
    assert_eq!(
        (d[0]["file"].as_str(), d[0]["line"].as_u64()),
        (Some("p.policy"), Some(2))
    );
    assert_eq!(
        d[0]["message"],
        "policy `cap` changed since the previous artifact but is still version 3"
    );
    let missing = lever(tmp.path(), &["check", "p.policy", "--against", "none.lvc"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("--against none.lvc"),
        "{}",
        text(&missing.stderr)
    );
}
