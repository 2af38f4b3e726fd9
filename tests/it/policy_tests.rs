//! `lever test`: the examples' own tests pass and reach what they must; failures are
//! reported with the expectation and the decision it was checked against.

use super::{lever, root};

#[test]
fn the_examples_tests_pass_and_each_file_reaches_near_breach_and_an_override_outcome() {
    let out = lever(&root(), &["test", "examples", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["failed"], 0);
    let tests = report["tests"].as_array().unwrap();
    // Every example file with a policy ships tests (shared.policy declares none).
    for file in [
        "burn_kill",
        "free_tier",
        "human_actor",
        "support",
        "tenant_default",
    ] {
        let path = format!("examples/{file}.policy");
        let mine: Vec<&serde_json::Value> = tests
            .iter()
            .filter(|t| t["path"] == path.as_str())
            .collect();
        assert!(!mine.is_empty(), "{path} has no tests");
        let reached = |key: &str| -> Vec<String> {
            mine.iter()
                .flat_map(|t| t["reached"][key].as_array().unwrap().iter())
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let thresholds = reached("thresholds");
        assert!(
            thresholds.iter().any(|t| t.ends_with(" near")),
            "{path}: no NEAR in {thresholds:?}"
        );
        assert!(
            thresholds.iter().any(|t| t.ends_with(" breach")),
            "{path}: no BREACH in {thresholds:?}"
        );
        assert!(
            !reached("override_outcomes").is_empty(),
            "{path}: no override outcome"
        );
    }
    let human = lever(&root(), &["test", "examples"]);
    let text = String::from_utf8(human.stdout).unwrap();
    assert!(text.contains("\nrunning 14 tests from 5 files\n"), "{text}");
    assert!(
        text.ends_with("\ntest result: ok. 14 passed; 0 failed\n"),
        "{text}"
    );
}

#[test]
fn a_failing_test_shows_the_expectation_against_the_decision_and_exits_1() {
    let file = root().join("tests/policytest/failing.policy");
    let out = lever(&root(), &["test", file.to_str().unwrap(), "--coverage"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let path = file.to_str().unwrap();
    // Written by hand from the file: $0.60 of a $1.00 cap is NEAR (50%), not BREACH;
    // $1.00 is BREACH, and the policy says stop, not pause.
    let expected = format!(
        "\
---- {path}:24 \"expects a breach one step too early\" ----
{path}:27: expect breach std.llm.cost does not hold for the decision at seq 2
-   expect breach std.llm.cost
+   action continue
+   signal near std.llm.cost of cap (observed 0.60 of 1.00)
+   alert team (near std.llm.cost of cap)
{path}:30: expect action pause does not hold for the decision at seq 3
-   expect action pause
+   action stop (breach: std.llm.cost of cap)
+   signal breach std.llm.cost of cap (observed 1.00 of 1.00)
"
    );
    assert!(text.contains(&expected), "{text}");
    assert!(
        text.contains(&format!(
            "test {path}:24 \"expects a breach one step too early\" ... FAILED\n"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("test {path}:17 \"passes\" ... ok\n")),
        "{text}"
    );
    // Both thresholds of the one limit were reached; its one override rule was not.
    assert!(text.contains("\ncoverage: 2 of 2 thresholds, 0 of 1 override rules\n  not reached: override rule cap#1\n"), "{text}");
    // `expect at seq N` reads back the run's earlier decisions: $0.40 at seq 3 is below
    // 50% of $1.00, and $0.60 at seq 4 is NEAR.
    let at_seq = format!(
        "\
{path}:36: expect at seq 3 near std.llm.cost does not hold for the decision at seq 3
-   expect at seq 3 near std.llm.cost
+   action continue
{path}:37: expect at seq 4 no signals does not hold for the decision at seq 4
-   expect at seq 4 no signals
+   action continue
+   signal near std.llm.cost of cap (observed 0.60 of 1.00)
"
    );
    assert!(text.contains(&at_seq), "{text}");
    assert!(
        text.ends_with("\ntest result: FAILED. 1 passed; 2 failed\n"),
        "{text}"
    );
}

#[test]
fn a_malformed_test_is_a_check_error_with_its_place() {
    let case = root().join("tests/check/test_bad_statement");
    let out = lever(&root(), &["test", case.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("[E0501]") && err.contains("main.policy:9:18"),
        "{err}"
    );
}
