//! `tests/replay/<case>/`: policies, `events.jsonl`, the golden `expected.jsonl` and a
//! hand-written `checks.json` of partial expectations, written before the golden. The
//! harness runs the real binary and asserts both, so a bug cannot become its own
//! expectation. It then replays the same events into the same store again and asserts
//! that the decisions are identical and nothing was added.
//!
//! `checks.json`: `{"exit": 0|1, "lines": {"N": CHECK}, "others": CHECK}` where a CHECK
//! may give `action`, `ts`, `seq`, `reason` (a prefix), `signals` (`"kind policy limit"`
//! in order, with ` error:CODE` or ` conflict:KIND`), `observed` (each signal's, in order),
//! `budgets` (each signal's `budget`, in order: `"api_key=k1 2026-01-20T00:00:00Z"`, the
//! key's attributes joined by `,` and the window's start or `none`; `null` for a signal
//! of no budget), `counters` (the decision's `budgets`, in order: `"policy limit KEY WINDOW
//! +ADDED = COUNTER"`),
//! `alerts` (`"kind channel"` or `"kind channel suppressed:why"` in order) and `override`
//! (`{"status": .., "why": prefix, "rule": .., "until": ..}`) and `snapshot` (`"changed"`
//! or `"same"`, against the run's previous decision). `others` applies to every line not
//! listed.

use super::{case_dirs, lever};
use serde_json::Value;
use std::path::Path;

fn signal_text(s: &Value) -> String {
    let mut t = format!(
        "{} {} {}",
        s["kind"].as_str().unwrap_or(""),
        s["policy"].as_str().unwrap_or(""),
        s["limit"].as_str().unwrap_or("")
    );
    if let Some(e) = s["error"].as_str() {
        t.push_str(&format!(" error:{e}"));
    }
    if let Some(c) = s["conflict"].as_str() {
        t.push_str(&format!(" conflict:{c}"));
    }
    t.trim_end().to_string()
}

/// A signal's budget as `checks.json` writes it.
fn budget_text(b: &Value) -> Value {
    let Some(per) = b["per"].as_object() else {
        return Value::Null;
    };
    let key: Vec<String> = per
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
        .collect();
    let window = b["window_start"].as_str().unwrap_or("none");
    Value::from(format!("{} {window}", key.join(",")))
}

fn alert_text(a: &Value) -> String {
    let mut t = format!(
        "{} {}",
        a["kind"].as_str().unwrap_or(""),
        a["channel"].as_str().unwrap_or("")
    );
    if a["suppressed"] == true {
        t.push_str(&format!(" suppressed:{}", a["why"].as_str().unwrap_or("")));
    }
    t
}

fn check_line(
    name: &str,
    line: u64,
    (decision, previous): (&Value, Option<&Value>),
    check: &Value,
    failures: &mut Vec<String>,
) {
    let mut fail = |what: &str, want: &Value, got: &Value| {
        failures.push(format!(
            "{name} line {line}: {what} expected {want}, got {got}"
        ))
    };
    for key in ["action", "ts", "seq"] {
        if let Some(want) = check.get(key)
            && &decision[key] != want
        {
            fail(key, want, &decision[key]);
        }
    }
    if let Some(want) = check.get("observed") {
        let got: Vec<Value> = decision["signals"]
            .as_array()
            .map(|a| a.iter().map(|s| s["observed"].clone()).collect())
            .unwrap_or_default();
        if &Value::from(got.clone()) != want {
            fail("observed", want, &Value::from(got));
        }
    }
    if let Some(want) = check.get("budgets") {
        let got: Vec<Value> = decision["signals"]
            .as_array()
            .map(|a| a.iter().map(|s| budget_text(&s["budget"])).collect())
            .unwrap_or_default();
        if &Value::from(got.clone()) != want {
            fail("budgets", want, &Value::from(got));
        }
    }
    if let Some(want) = check.get("counters") {
        let got: Vec<Value> = decision["budgets"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|c| {
                        let budget = budget_text(c);
                        Value::from(format!(
                            "{} {} {} +{} = {}",
                            c["policy"].as_str().unwrap_or(""),
                            c["limit"].as_str().unwrap_or(""),
                            budget.as_str().unwrap_or("?"),
                            c["added"].as_str().unwrap_or("?"),
                            c["counter"].as_str().unwrap_or("?")
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if &Value::from(got.clone()) != want {
            fail("counters", want, &Value::from(got));
        }
    }
    if let Some(want) = check.get("reason") {
        let got = decision["reason"].as_str().unwrap_or("null");
        if !got.starts_with(want.as_str().unwrap_or("null")) {
            fail("reason", want, &decision["reason"]);
        }
    }
    if let Some(want) = check.get("signals") {
        let got: Vec<String> = decision["signals"]
            .as_array()
            .map(|a| a.iter().map(signal_text).collect())
            .unwrap_or_default();
        let want_list: Vec<String> = serde_json::from_value(want.clone()).unwrap();
        if got != want_list {
            fail("signals", want, &serde_json::json!(got));
        }
    }
    if let Some(want) = check.get("alerts") {
        let got: Vec<String> = decision["alerts"]
            .as_array()
            .map(|a| a.iter().map(alert_text).collect())
            .unwrap_or_default();
        let want_list: Vec<String> = serde_json::from_value(want.clone()).unwrap();
        if got != want_list {
            fail("alerts", want, &serde_json::json!(got));
        }
    }
    if let Some(want) = check.get("snapshot") {
        let before = previous.map(|p| &p["snapshot"]);
        let got = if before == Some(&decision["snapshot"]) {
            "same"
        } else {
            "changed"
        };
        if want != got {
            fail("snapshot", want, &Value::from(got));
        }
    }
    if let Some(want) = check.get("override") {
        let got = &decision["override"];
        for key in ["status", "rule", "until"] {
            if let Some(w) = want.get(key)
                && &got[key] != w
            {
                fail(&format!("override.{key}"), w, &got[key]);
            }
        }
        if let Some(w) = want.get("why") {
            let g = got["why"].as_str().unwrap_or("null");
            if !g.starts_with(w.as_str().unwrap_or("null")) {
                fail("override.why", w, &got["why"]);
            }
        }
    }
}

/// Runs one case; returns its stdout lines and any failures.
pub fn run_case(dir: &Path, engine: Option<&str>) -> (String, Vec<String>) {
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let store = tempfile::tempdir().unwrap();
    let evidence = format!("file:{}", store.path().display());
    let mut args = vec![
        "run",
        ".",
        "--events",
        "events.jsonl",
        "--evidence",
        evidence.as_str(),
    ];
    if let Some(e) = engine {
        args.extend(["--engine", e]);
    }
    let out = lever(dir, &args);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut failures = Vec::new();
    let checks: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("checks.json"))
            .unwrap_or_else(|_| panic!("{name}: checks.json is required")),
    )
    .unwrap_or_else(|e| panic!("{name}: checks.json: {e}"));
    let want_exit = checks["exit"].as_i64().unwrap_or(0) as i32;
    if out.status.code() != Some(want_exit) {
        failures.push(format!(
            "{name}: exit {:?}, expected {want_exit}; stderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let lines = checks["lines"].as_object().cloned().unwrap_or_default();
    let mut last_of_run: std::collections::HashMap<String, Value> = Default::default();
    for text in stdout.lines() {
        let decision: Value = serde_json::from_str(text).unwrap();
        let line = decision["line"].as_u64().unwrap();
        let run = decision["run_id"].as_str().unwrap_or("").to_string();
        let pair = (&decision, last_of_run.get(&run));
        match lines.get(&line.to_string()) {
            Some(check) => check_line(&name, line, pair, check, &mut failures),
            None => {
                if let Some(others) = checks.get("others") {
                    check_line(&name, line, pair, others, &mut failures);
                }
            }
        }
        if !run.is_empty() && decision["action"] != "rejected" {
            last_of_run.insert(run, decision);
        }
    }
    for listed in lines.keys() {
        if !stdout
            .lines()
            .any(|l| l.starts_with(&format!("{{\"line\":{listed},")))
        {
            failures.push(format!("{name}: no decision for checked line {listed}"));
        }
    }
    // Replaying the same input into the same store prints the same and adds nothing.
    let log = store.path().join("evidence-000000.log");
    let before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let again = lever(dir, &args);
    if String::from_utf8(again.stdout).unwrap() != stdout {
        failures.push(format!(
            "{name}: a second replay printed different decisions"
        ));
    }
    let after = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    if before != after || before == 0 {
        failures.push(format!(
            "{name}: evidence log was {before} bytes, {after} after replaying again"
        ));
    }
    (stdout, failures)
}

/// Replays every case with `engine` and returns what failed: a check, or a difference from
/// the golden (which `update` rewrites instead, for the interpreter only).
fn replay_corpus(engine: Option<&str>, update: bool) -> Vec<String> {
    let cases = case_dirs("replay");
    assert!(
        cases.len() >= 20,
        "at least 20 replay cases, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let (stdout, mut case_failures) = run_case(dir, engine);
        failures.append(&mut case_failures);
        let golden = dir.join("expected.jsonl");
        if update {
            std::fs::write(&golden, &stdout).unwrap();
            continue;
        }
        let engine = engine.unwrap_or("interp");
        match std::fs::read_to_string(&golden) {
            Ok(text) if text == stdout => {}
            Ok(text) => failures.push(format!("{name}: output under --engine {engine} differs from expected.jsonl (UPDATE_EXPECT=1 refreshes)\n--- expected\n{text}--- got\n{stdout}")),
            Err(_) => failures.push(format!("{name}: no expected.jsonl (run with UPDATE_EXPECT=1 and review it)")),
        }
    }
    failures
}

fn assert_none(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_replay_case_meets_its_checks_and_its_golden() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    assert_none(&replay_corpus(None, update));
}

/// The JIT's differential test: every case gives, byte for byte, the golden the
/// interpreter gives, and meets its hand-written checks.
#[test]
fn every_replay_case_is_byte_identical_under_the_jit() {
    assert_none(&replay_corpus(Some("jit"), false));
}

/// So that a silent fallback to the interpreter cannot pass the test above: every program
/// of the corpus (each case's policies and each artifact a case deploys) compiles to
/// native code, every code block of it.
#[test]
fn every_program_of_the_replay_corpus_compiles_to_native_code() {
    let tmp = tempfile::tempdir().unwrap();
    let mut programs = 0;
    for dir in &case_dirs("replay") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut sources = vec![".".to_string()];
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "next") {
                sources.push(path.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
        for (i, source) in sources.iter().enumerate() {
            let out = tmp.path().join(format!("{name}-{i}.lvc"));
            let built = lever(dir, &["build", source, "-o", out.to_str().unwrap()]);
            if built.status.code() != Some(0) {
                continue; // a case whose policies do not build (rejections) has no program
            }
            let inspect = lever(
                dir,
                &[
                    "inspect",
                    out.to_str().unwrap(),
                    "--engine",
                    "jit",
                    "--format",
                    "json",
                ],
            );
            assert_eq!(inspect.status.code(), Some(0), "{name}: {source}");
            let json: Value = serde_json::from_slice(&inspect.stdout).unwrap();
            let (native, blocks) = (&json["jit"]["native"], &json["jit"]["code_blocks"]);
            assert!(blocks.as_u64().unwrap() > 0, "{name}: {source}: no code");
            assert_eq!(
                native, blocks,
                "{name}: {source}: not every block is native"
            );
            programs += 1;
        }
    }
    assert!(programs >= 45, "only {programs} programs compiled");
}
