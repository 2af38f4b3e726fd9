//! Runtime properties on generated event streams over the example policy set: the same
//! events give the same decisions through `lever run ARTIFACT`, `lever run PATHS` and the
//! library API; and interleaving runs gives each run exactly the decisions it gets alone.

use super::generate::Rng;
use super::{lever, root};
use lever::runtime::replay::Replay;
use std::sync::{Arc, OnceLock};

fn examples_artifact() -> Arc<lever::compile::artifact::Artifact> {
    static ARTIFACT: OnceLock<Arc<lever::compile::artifact::Artifact>> = OnceLock::new();
    Arc::clone(ARTIFACT.get_or_init(|| {
        let files = lever::source::expand_paths(&[root().join("examples")]).unwrap();
        let checked = lever::check::check(lever::source::load_files(&files).unwrap());
        let stored = lever::compile::artifact::stored_paths(&files);
        Arc::new(lever::compile::build(&checked, &stored).unwrap())
    }))
}

fn ts(sec: u64) -> String {
    format!(
        "2026-01-20T{:02}:{:02}:{:02}Z",
        10 + sec / 3600,
        (sec / 60) % 60,
        sec % 60
    )
}

/// Events of one run: a start, steps with increasing timestamps, maybe an end.
fn run_events(rng: &mut Rng, id: &str) -> Vec<String> {
    let agent = rng.pick(&["support-bot", "triage-bot", "other-bot"]);
    let tenant = rng.pick(&["acme", "globex", "internal"]);
    let human = rng.pick(&["", "alice"]);
    let plan = rng.pick(&["free", "pro"]);
    let mut out = vec![format!(
        r#"{{"type":"run_start","run_id":"{id}","ts":"{}","tenant":"{tenant}","agent":"{agent}","api_key":"k","human_actor":"{human}","labels":{{"plan":"{plan}","env":"prod"}}}}"#,
        ts(0)
    )];
    let mut t = 0;
    for _ in 0..rng.below(25) + 1 {
        t += rng.below(90) as u64;
        let cost = format!("{}.{:02}", rng.below(2), rng.below(100));
        let model = rng.pick(&["gpt-4o", "gpt-4o-mini", "o1"]);
        let kind = rng.pick(&["llm_call", "llm_call", "tool_call"]);
        out.push(format!(
            r#"{{"type":"step","run_id":"{id}","ts":"{}","input_tokens":{},"output_tokens":{},"cost":"{cost}","latency_ms":{},"model":"{model}","kind":"{kind}","metrics":{{"retries":{}}}}}"#,
            ts(t),
            rng.below(20_000),
            rng.below(5_000),
            rng.below(4_000),
            rng.below(3)
        ));
    }
    if rng.chance(50) {
        out.push(format!(
            r#"{{"type":"run_end","run_id":"{id}","ts":"{}"}}"#,
            ts(t + 1)
        ));
    }
    out
}

/// Several runs' events, interleaved at random (each run's own order kept).
fn interleaved(rng: &mut Rng, runs: &[Vec<String>]) -> Vec<String> {
    let mut cursors = vec![0usize; runs.len()];
    let mut out = Vec::new();
    loop {
        let live: Vec<usize> = (0..runs.len())
            .filter(|i| cursors[*i] < runs[*i].len())
            .collect();
        if live.is_empty() {
            return out;
        }
        let i = live[rng.below(live.len())];
        out.push(runs[i][cursors[i]].clone());
        cursors[i] += 1;
    }
}

/// Decisions through the library, without the `line` field.
fn library_decisions(lines: &[String]) -> Vec<serde_json::Value> {
    let mut replay = Replay::new(
        examples_artifact(),
        root(),
        Box::new(|_| Err("no deploys".into())),
    );
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| replay.line(i as u64 + 1, l))
        .map(|r| {
            let mut v = serde_json::to_value(&r.decision).unwrap();
            v.as_object_mut().unwrap().remove("line");
            v
        })
        .collect()
}

#[test]
fn interleaving_runs_gives_each_run_the_decisions_it_gets_alone() {
    for seed in 0..200u64 {
        let mut rng = Rng::new(seed + 1);
        let runs: Vec<Vec<String>> = (0..rng.below(4) + 2)
            .map(|i| run_events(&mut rng, &format!("r{i}")))
            .collect();
        let mixed = library_decisions(&interleaved(&mut rng, &runs));
        for (i, events) in runs.iter().enumerate() {
            let alone = library_decisions(events);
            let id = format!("r{i}");
            let together: Vec<&serde_json::Value> = mixed
                .iter()
                .filter(|d| d["run_id"] == id.as_str())
                .collect();
            assert_eq!(together.len(), alone.len(), "seed {seed} run {id}");
            for (a, b) in alone.iter().zip(together) {
                assert_eq!(a, b, "seed {seed} run {id}");
            }
        }
    }
}

#[test]
fn artifact_paths_and_library_give_the_same_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    let artifact = tmp.path().join("ex.lvc");
    std::fs::write(&artifact, &examples_artifact().bytes).unwrap();
    for seed in 0..12u64 {
        let mut rng = Rng::new(seed + 1000);
        let runs: Vec<Vec<String>> = (0..rng.below(3) + 1)
            .map(|i| run_events(&mut rng, &format!("r{i}")))
            .collect();
        let lines = interleaved(&mut rng, &runs);
        let events = tmp.path().join(format!("events{seed}.jsonl"));
        std::fs::write(&events, lines.join("\n")).unwrap();
        let ev = |name: &str| {
            format!(
                "file:{}",
                tmp.path().join(format!("{name}{seed}")).display()
            )
        };
        let by_artifact = lever(
            tmp.path(),
            &[
                "run",
                artifact.to_str().unwrap(),
                "--events",
                events.to_str().unwrap(),
                "--evidence",
                &ev("a"),
            ],
        );
        let examples = root().join("examples");
        let by_paths = lever(
            tmp.path(),
            &[
                "run",
                examples.to_str().unwrap(),
                "--events",
                events.to_str().unwrap(),
                "--evidence",
                &ev("b"),
            ],
        );
        assert_eq!(
            by_artifact.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&by_artifact.stderr)
        );
        assert_eq!(
            by_artifact.stdout, by_paths.stdout,
            "seed {seed}: ARTIFACT and PATHS differ"
        );
        let via_cli = super::decisions_without_line(&by_artifact.stdout);
        assert_eq!(
            via_cli,
            library_decisions(&lines),
            "seed {seed}: CLI and library differ"
        );
        let evidence_a =
            std::fs::read(tmp.path().join(format!("a{seed}/evidence-000000.log"))).unwrap();
        let evidence_b =
            std::fs::read(tmp.path().join(format!("b{seed}/evidence-000000.log"))).unwrap();
        assert_eq!(evidence_a, evidence_b, "seed {seed}: evidence bytes differ");
    }
}
