#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Integration tests, compiled as one binary to keep link time down.

mod artifact;
mod audit_trust;
mod budgets;
mod check_cases;
mod cli;
mod cli_face;
mod console;
mod console_api;
mod crash;
mod docs;
mod docs_formats;
mod durable_runs;
mod evidence;
mod file_store;
mod fleet;
mod fmt;
mod fuzz;
mod generate;
mod grammar;
mod idempotency;
mod kill_loop;
mod lsp;
mod merkle;
mod overspend;
mod pg_roles;
mod policy_tests;
mod props;
mod props_jit;
mod props_layout;
mod props_runtime;
mod python_client;
mod python_env;
mod replay_cases;
mod served;
mod server;
mod server_face;
mod server_limits;
mod signing;
mod stores;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
/// The limit `limit` of `policy` in a run state's or explanation's `limits`.
pub fn limit_of<'a>(
    state: &'a serde_json::Value,
    policy: &str,
    limit: &str,
) -> &'a serde_json::Value {
    state["limits"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["policy"] == policy && l["limit"] == limit)
        .unwrap_or_else(|| panic!("no limit {limit} of {policy} in {state}"))
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the real `lever` binary in `dir`.
/// A number from the environment (the long runs' knobs), or the default.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A dollar amount as decisions print it (`"2.10"`, `"20"`), in cents.
pub fn cents(text: &str) -> u64 {
    let (units, frac) = text.split_once('.').unwrap_or((text, "0"));
    units.parse::<u64>().unwrap() * 100 + format!("{frac:0<2}")[..2].parse::<u64>().unwrap()
}

/// The `kind` of each record of a JSON-lines evidence listing, in order.
pub fn kinds_of(jsonl: &str) -> Vec<String> {
    jsonl
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["kind"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The store chain's records of one kind, as `lever evidence show --store --kind KIND
/// --format json` prints them.
pub fn store_records(dir: &Path, evidence: &str, kind: &str) -> Vec<serde_json::Value> {
    let args = [
        "evidence",
        "show",
        "--store",
        "--kind",
        kind,
        "--format",
        "json",
        "--evidence",
        evidence,
    ];
    let out = lever(dir, &args);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn lever(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lever"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("the lever binary built by cargo runs")
}

/// `lever run` in `dir` with extra arguments, standard output and error piped, not yet
/// started: for tests that read decisions as they come or interrupt the command.
pub fn lever_command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lever"));
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd
}

/// `lever evidence verify --evidence EVIDENCE` in `dir` passes.
pub fn assert_verifies(dir: &Path, evidence: &str) {
    let verify = lever(dir, &["evidence", "verify", "--evidence", evidence]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}

/// `lever run p.policy --events events.jsonl --evidence EVIDENCE` in `dir`.
pub fn replay(dir: &Path, evidence: &str) -> Output {
    lever(
        dir,
        &[
            "run",
            "p.policy",
            "--events",
            "events.jsonl",
            "--evidence",
            evidence,
        ],
    )
}

/// The README's main job, `lever run examples --events examples/events/support.jsonl`,
/// in `dir` with `--evidence EVIDENCE`.
pub fn replay_examples(dir: &Path, evidence: &str) -> Output {
    let (policies, events) = (
        root().join("examples"),
        root().join("examples/events/support.jsonl"),
    );
    lever(
        dir,
        &[
            "run",
            policies.to_str().expect("a UTF-8 checkout path"),
            "--events",
            events.to_str().expect("a UTF-8 checkout path"),
            "--evidence",
            evidence,
        ],
    )
}

/// Decisions printed by `lever run`, without their `line` field.
pub fn decisions_without_line(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("a decision line");
            if let Some(map) = v.as_object_mut() {
                map.remove("line");
            }
            v
        })
        .collect()
}

/// Every `.policy` file under a directory, sorted.
pub fn policy_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("test directory is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "policy") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Directories directly under `tests/<kind>/`, sorted.
pub fn case_dirs(kind: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("tests").join(kind))
        .expect("case directory exists")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}
