//! The event and decision formats as users read them: `schema/*.schema.json` hold every
//! example of the docs and every line of the replay corpus (an accepted event is valid, a
//! line rejected for its shape is not, every decision is valid), the rejection table of
//! `docs/events.md` is what `lever run` answers, no page cites the design contracts, and
//! `docs/getting-started.md` runs as written.

use super::docs::{all_blocks, doc_files};
use super::{case_dirs, lever, root};
use serde_json::Value;

fn validator(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schema").join(name)).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn errors(v: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance).map(|e| e.to_string()).collect()
}

#[test]
fn every_event_and_decision_example_in_the_docs_meets_its_schema() {
    let (events, decisions) = (
        validator("event.schema.json"),
        validator("decision.schema.json"),
    );
    let mut seen = (0, 0);
    for file in doc_files() {
        let doc = std::fs::read_to_string(&file).unwrap();
        for (info, body) in all_blocks(&doc) {
            if info != "jsonl" {
                continue;
            }
            for line in body.lines().filter(|l| !l.trim().is_empty()) {
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("{}: {e}: {line}", file.display()));
                let (schema, count) = if value.get("action").is_some() {
                    (&decisions, &mut seen.1)
                } else {
                    (&events, &mut seen.0)
                };
                let found = errors(schema, &value);
                assert!(found.is_empty(), "{}: {line}: {found:?}", file.display());
                *count += 1;
            }
        }
    }
    assert!(seen.0 >= 10 && seen.1 >= 8, "examples found: {seen:?}");
}

/// Whether a rejection is about the line's shape, which the event schema also rejects
/// (as opposed to a value out of range, or a run check, which needs more than the line).
/// JSON Schema counts `1200.0` as an integer, so that rejection is Lever's alone.
fn shape_rejection(reason: &str) -> bool {
    if reason.contains("JSON integer, found") && !reason.contains("found \"") {
        return false;
    }
    ["malformed_json", "unknown_type", "missing_field"]
        .iter()
        .any(|c| reason.starts_with(c))
        || (reason.starts_with("invalid_field")
            && ["unknown field", "must be", "must not be", "is not"]
                .iter()
                .any(|w| reason.contains(w)))
}

#[test]
fn every_replay_input_and_golden_decision_meets_the_schemas() {
    let (events, decisions) = (
        validator("event.schema.json"),
        validator("decision.schema.json"),
    );
    let (mut accepted, mut shape) = (0, 0);
    for dir in case_dirs("replay") {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let golden = std::fs::read_to_string(dir.join("expected.jsonl")).unwrap();
        let mut by_line = std::collections::BTreeMap::new();
        for text in golden.lines() {
            let d: Value = serde_json::from_str(text).unwrap();
            let found = errors(&decisions, &d);
            assert!(found.is_empty(), "{name}: {text}: {found:?}");
            by_line.insert(d["line"].as_u64().unwrap(), d);
        }
        let input = std::fs::read(dir.join("events.jsonl")).unwrap();
        for (i, line) in input.split(|b| *b == b'\n').enumerate() {
            let Some(d) = by_line.get(&(i as u64 + 1)) else {
                continue; // a blank line
            };
            let value = std::str::from_utf8(line)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(t).ok());
            let valid = value.as_ref().is_some_and(|v| events.is_valid(v));
            let rejected =
                d["action"] == "rejected" || (d["seq"].is_null() && d["event"] != "deploy");
            let reason = d["reason"].as_str().unwrap_or("");
            let text = String::from_utf8_lossy(line);
            if !rejected {
                let found = value
                    .as_ref()
                    .map(|v| errors(&events, v))
                    .unwrap_or_default();
                assert!(
                    valid,
                    "{name} line {}: accepted but invalid: {text}: {found:?}",
                    i + 1
                );
                accepted += 1;
            } else if shape_rejection(reason) {
                assert!(
                    !valid,
                    "{name} line {}: rejected ({reason}) but valid: {text}",
                    i + 1
                );
                shape += 1;
            }
        }
    }
    assert!(
        accepted > 250 && shape > 20,
        "{accepted} accepted, {shape} shape rejections"
    );
}

/// The rows of the table under `## Rejections` in docs/events.md: (code, example line).
fn rejection_rows() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(root().join("docs/events.md")).unwrap();
    let section = doc.split("## Rejections").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let code = cells[0]
                .trim_start_matches("| ")
                .trim_matches('`')
                .to_string();
            let example = cells
                .last()
                .unwrap()
                .trim_end_matches(" |")
                .trim_matches('`');
            (code, example.to_string())
        })
        .collect()
}

#[test]
fn every_rejection_example_of_docs_events_is_rejected_with_its_code() {
    let rows = rejection_rows();
    assert!(rows.len() >= 13, "{rows:?}");
    let events = validator("event.schema.json");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("p.policy"),
        "import std.llm\npolicy cap {\n    version 1\n    scope all\n    on_error fail_open\n    limit std.llm.cost to $5.00 { breach => stop }\n    override { allow actor \"ops\" to raise std.llm.cost up to $10.00 }\n}\n",
    )
    .unwrap();
    let preamble = [
        r#"{"type":"run_start","run_id":"r1","ts":"2026-01-20T10:00:00Z","tenant":"acme"}"#,
        r#"{"type":"run_start","run_id":"r0","ts":"2026-01-20T09:00:00Z","tenant":"acme"}"#,
        r#"{"type":"run_end","run_id":"r0","ts":"2026-01-20T09:30:00Z"}"#,
    ];
    for (i, (code, example)) in rows.iter().enumerate() {
        let text = format!("{}\n{example}\n", preamble.join("\n"));
        std::fs::write(tmp.path().join("events.jsonl"), text).unwrap();
        let out = super::replay(tmp.path(), &format!("file:ev{i}"));
        assert_eq!(out.status.code(), Some(1), "{example}");
        let stdout = String::from_utf8(out.stdout).unwrap();
        let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        let reason = last["reason"].as_str().unwrap();
        assert!(
            reason.starts_with(&format!("{code}: ")),
            "{example}: {reason}"
        );
        if shape_rejection(reason) {
            let valid = serde_json::from_str::<Value>(example).is_ok_and(|v| events.is_valid(&v));
            assert!(!valid, "the schema takes {example}");
        }
    }
}

#[test]
fn no_page_of_the_docs_sends_a_reader_to_the_design_contracts() {
    for file in doc_files() {
        let doc = std::fs::read_to_string(&file).unwrap();
        for word in ["DESIGN", "LANGUAGE.md", "LANGUAGE §", "../shared"] {
            assert!(
                !doc.contains(word),
                "{} cites `{word}`: the docs must stand on their own",
                file.display()
            );
        }
    }
}

/// A started `lever serve`, killed if the test fails before it is stopped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one command of getting-started in `dir`: `lever ...` through the real binary,
/// `curl ...` through the shell. `lever serve` is started and left running (returned).
fn run_documented(dir: &std::path::Path, line: &str) -> Option<Child> {
    if let Some(rest) = line.strip_prefix("lever serve ") {
        use std::io::BufRead;
        let args: Vec<&str> = std::iter::once("serve")
            .chain(rest.split_whitespace())
            .collect();
        // Held from the start, so that a failed check below still stops the server.
        let mut child = Child(super::lever_command(dir, &args).spawn().unwrap());
        let mut err = std::io::BufReader::new(child.0.stderr.take().unwrap());
        // Warnings first (a channel's unset variable), then where it listens.
        let mut first = String::new();
        while {
            first.clear();
            err.read_line(&mut first).unwrap() > 0 && first.starts_with("lever: warning:")
        } {}
        assert!(first.contains("serving on"), "{line}: {first}");
        std::thread::spawn(move || for _ in err.lines() {});
        return Some(child);
    }
    let out = if let Some(rest) = line.strip_prefix("lever ") {
        let args: Vec<&str> = rest.split_whitespace().collect();
        lever(dir, &args)
    } else {
        std::process::Command::new("sh")
            .args(["-c", line])
            .current_dir(dir)
            .output()
            .unwrap()
    };
    assert_eq!(
        out.status.code(),
        Some(0),
        "`{line}`:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if line.starts_with("curl") {
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(answer["action"].is_string(), "`{line}`: {answer}");
    }
    if line.starts_with("lever run ") {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let actions: Vec<String> = stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["action"].to_string())
            .collect();
        assert_eq!(
            actions,
            [
                "continue", "continue", "continue", "stop", "refused", "stop"
            ]
            .map(|a| format!("\"{a}\"")),
            "the page says NEAR, then a stop, then a refused step"
        );
    }
    None
}

#[test]
fn every_command_of_getting_started_runs_as_written() {
    let doc = std::fs::read_to_string(root().join("docs/getting-started.md")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join("policies")).unwrap();
    let blocks = all_blocks(&doc);
    let policy = blocks.iter().find(|(i, _)| i == "policy").unwrap();
    std::fs::write(dir.join("policies/budget.policy"), &policy.1).unwrap();
    let events = blocks.iter().find(|(i, _)| i == "jsonl").unwrap();
    std::fs::write(dir.join("events.jsonl"), &events.1).unwrap();
    let mut ran = 0;
    for (info, body) in &blocks {
        if !info.is_empty() {
            continue;
        }
        // A server started in a block serves the rest of the block, then is stopped (the
        // page says Ctrl-C) before the next block's commands.
        let mut served = Vec::new();
        for line in body.lines().map(str::trim) {
            if line.starts_with("cargo ") || line.starts_with("export ") || line.is_empty() {
                continue; // building Lever itself: what this test runs on
            }
            served.extend(run_documented(dir, line));
            ran += 1;
        }
        for mut child in served {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.0.id().to_string()])
                .status();
            assert_eq!(child.0.wait().unwrap().code(), Some(0));
        }
    }
    assert!(ran >= 12, "only {ran} commands");
}
