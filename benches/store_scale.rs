#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Opening and verifying a file store the size of a busy day: one million runs of five
//! records each (about 2.4 GB), built once in `LEVER_SCALE_DIR` (default: a temporary
//! directory) with `LEVER_SCALE_RUNS` runs (default 1,000,000). Then the real binary is
//! timed, with its peak memory: a one-line `lever run` (opening the store is most of it),
//! and `lever evidence verify` (streaming every record). Targets: open under 2 s and
//! 200 MiB; verify at disk speed in bounded memory.
//!
//! `cargo bench --bench store_scale`; `LEVER_SCALE_RUNS=20000` for a quick look.

use lever::evidence::file::FileStore;
use lever::evidence::{EvidenceStore, Record, RecordKind, Sealed};
use std::path::Path;
use std::time::Instant;

const ARTIFACT: &str = "blake3:5d637694ce8d4296dfebc01053238faebba14f92fbe0fc80f237d8b32e2cd6e4";

fn run_records(i: u64) -> Vec<Record> {
    let run = format!("run-{i:08}");
    let record = |kind, seq, body| Record {
        kind,
        artifact: ARTIFACT.into(),
        run_id: Some(run.clone()),
        seq,
        index: 0,
        body,
    };
    let decision = |seq: u64, event: &str, action: &str| {
        serde_json::json!({"run_id": run, "seq": seq, "ts": "2026-01-20T10:02:00Z", "event": event,
            "action": action, "reason": null, "signals": [], "alerts": [],
            "snapshot": "blake3:13e95566567f468685b60d8e3d72a257bb10019e50c66773a212ab1f4066c22d",
            "artifact": ARTIFACT,
            "input": {"type": event, "run_id": run, "ts": "2026-01-20T10:02:00Z", "input_tokens": "1200",
                "output_tokens": "300", "cost": "0.45", "latency": "840ms", "kind": "llm_call", "model": "gpt-4o"}})
    };
    vec![
        record(
            RecordKind::Snapshot,
            1,
            serde_json::json!({"hash": "blake3:13e9", "snapshot": {"policies": []}}),
        ),
        record(
            RecordKind::Decision,
            1,
            decision(1, "run_start", "continue"),
        ),
        record(RecordKind::Decision, 2, decision(2, "step", "continue")),
        record(RecordKind::Decision, 3, decision(3, "run_end", "continue")),
        record(
            RecordKind::RunSummary,
            3,
            serde_json::json!({"steps": 1, "refused": 0, "cost": "0.45"}),
        ),
    ]
}

fn build(dir: &Path, runs: u64) {
    if dir.join("evidence-000000.log").exists() {
        return;
    }
    let started = Instant::now();
    let mut store = FileStore::open(dir).unwrap();
    let mut batch = Vec::new();
    for i in 0..runs {
        batch.extend(run_records(i));
        if batch.len() >= 4096 {
            store.append(&Sealed::all(batch.drain(..))).unwrap();
        }
    }
    store.append(&Sealed::all(batch)).unwrap();
    eprintln!(
        "built {runs} runs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Runs the binary and returns (seconds, peak resident MiB).
fn measure(args: &[&str], dir: &Path) -> (f64, f64) {
    let started = Instant::now();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_lever"))
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(status.code().is_some(), "{args:?}: {status:?}");
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for getrusage to fill.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    (seconds, usage.ru_maxrss as f64 / 1024.0)
}

fn main() {
    let runs: u64 = std::env::var("LEVER_SCALE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::var("LEVER_SCALE_DIR").map_or_else(|_| tmp.path().join("ev"), Into::into);
    build(&dir, runs);
    let size: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("p.policy"), "import std.llm\npolicy p { version 1 scope all limit std.llm.cost to $1 { breach => stop } }\n").unwrap();
    std::fs::write(work.path().join("one.jsonl"), "{\"type\":\"run_start\",\"run_id\":\"fresh\",\"ts\":\"2026-01-21T00:00:00Z\",\"tenant\":\"t\"}\n").unwrap();
    let evidence = format!("file:{}", dir.display());
    let (open_s, open_mib) = measure(
        &[
            "run",
            "p.policy",
            "--events",
            "one.jsonl",
            "--evidence",
            &evidence,
        ],
        work.path(),
    );
    println!(
        "store_scale/open: {runs} runs, {:.2} GB: one-line lever run {open_s:.2} s, peak {open_mib:.0} MiB",
        size as f64 / 1e9
    );
    let (verify_s, verify_mib) = measure(
        &["evidence", "verify", "--evidence", &evidence],
        work.path(),
    );
    println!(
        "store_scale/verify: {verify_s:.1} s ({:.0} MB/s), peak {verify_mib:.0} MiB",
        size as f64 / 1e6 / verify_s
    );
}
