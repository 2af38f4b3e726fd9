//! `lever run` killed with SIGKILL at random moments of a large replay: no record whose
//! decision was printed is lost, none is duplicated, and the store reopens cleanly.

use lever::evidence::file::FileStore;
use lever::evidence::{EvidenceStore, RecordKind, audit};
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;

/// A small deterministic generator, so that a failure names a seed that reproduces it.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

fn events(runs: usize, steps: usize) -> String {
    let mut out = String::new();
    for r in 0..runs {
        out.push_str(&format!(
            "{{\"type\":\"run_start\",\"run_id\":\"r{r}\",\"ts\":\"2026-01-20T10:00:00Z\",\"tenant\":\"t\"}}\n"
        ));
    }
    for s in 1..=steps {
        for r in 0..runs {
            out.push_str(&format!(
                "{{\"type\":\"step\",\"run_id\":\"r{r}\",\"ts\":\"2026-01-20T10:{:02}:{:02}Z\",\"cost\":\"0.01\",\"input_tokens\":100}}\n",
                s / 60,
                s % 60
            ));
        }
    }
    for r in 0..runs {
        out.push_str(&format!(
            "{{\"type\":\"run_end\",\"run_id\":\"r{r}\",\"ts\":\"2026-01-20T11:00:00Z\"}}\n"
        ));
    }
    out
}

/// Stored (run, seq) of every decision, after checking that no record is stored twice.
fn stored_decisions(dir: &std::path::Path) -> HashSet<(String, u64)> {
    let mut store = FileStore::open(dir).expect("the store reopens after a kill");
    assert!(
        audit::verify(&mut store, None, None).unwrap().is_ok(),
        "the store verifies after a kill"
    );
    let all = store.read_all().unwrap();
    let ids: HashSet<[u8; 32]> = all.iter().map(|s| s.record.id()).collect();
    assert_eq!(ids.len(), all.len(), "no record is stored twice");
    all.iter()
        .filter(|s| s.record.kind == RecordKind::Decision)
        .filter_map(|s| Some((s.record.run_id.clone()?, s.record.seq)))
        .collect()
}

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("p.policy"),
        "import std.llm\npolicy p {\n  version 1\n  scope all\n  limit std.llm.cost to $0.50 { near 50% => alert(ui) breach => stop }\n}\n",
    )
    .unwrap();
    let text = events(12, 100);
    let total = text.lines().count();
    std::fs::write(tmp.path().join("events.jsonl"), &text).unwrap();
    let seed = std::env::var("LEVER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_261_126);
    let mut rng = Lcg(seed);
    // What an uninterrupted replay prints and stores.
    let clean = super::replay(tmp.path(), "file:clean");
    assert_eq!(clean.status.code(), Some(0));
    let reference: Vec<String> = String::from_utf8(clean.stdout.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(reference.len(), total);
    let mut kills = 0;
    for round in 0..24 {
        let mut child = super::lever_command(
            tmp.path(),
            &[
                "run",
                "p.policy",
                "--events",
                "events.jsonl",
                "--evidence",
                "file:ev",
            ],
        )
        .args(["--group-commit", "50"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        // Kill after a random number of printed decisions: somewhere in the write phase,
        // between or inside group commits.
        let kill_after = 1 + (rng.next() as usize) % (total - 1);
        let mut printed = Vec::new();
        let stdout = child.stdout.take().unwrap();
        for line in BufReader::new(stdout).lines() {
            printed.push(line.unwrap());
            if printed.len() == kill_after {
                let _ = child.kill(); // SIGKILL
                break;
            }
        }
        let status = child.wait().unwrap();
        let killed = status.code().is_none();
        kills += usize::from(killed);
        // Every printed decision's record is in the store.
        let stored = stored_decisions(&tmp.path().join("ev"));
        for line in &printed {
            let d: serde_json::Value = serde_json::from_str(line).unwrap();
            let key = (
                d["run_id"].as_str().unwrap().to_string(),
                d["seq"].as_u64().unwrap(),
            );
            assert!(
                stored.contains(&key),
                "seed {seed} round {round}: printed {key:?} is not stored"
            );
        }
        // Each replay prints what an uninterrupted one prints.
        assert_eq!(
            printed[..],
            reference[..printed.len()],
            "seed {seed} round {round}"
        );
    }
    assert!(
        kills >= 20,
        "only {kills} of 24 replays were killed mid-way"
    );
    // A last replay completes the store; it matches a replay that was never interrupted.
    let finish = super::replay(tmp.path(), "file:ev");
    assert_eq!(finish.status.code(), Some(0));
    assert_eq!(finish.stdout, clean.stdout);
    let records = |dir: &str| -> HashSet<Vec<u8>> {
        let mut store = FileStore::open(&tmp.path().join(dir)).unwrap();
        store
            .read_all()
            .unwrap()
            .into_iter()
            .filter(|s| s.record.kind != RecordKind::Recovery)
            .map(|s| s.record.canonical_bytes())
            .collect()
    };
    assert_eq!(records("ev"), records("clean"));
}
