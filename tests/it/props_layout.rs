//! The JIT's whole-step native code against the interpreter on generated layouts: policy
//! sets whose runs bind different policies (scopes by agent and tenant, `first_token`
//! binding), whose groups shadow limits (`explicit_priority`, `most_restrictive`,
//! precedence), over every aggregate function (`sum`, `count`, `max`, `min`, `avg`,
//! `last`, `rate`), with raises and suspensions granted and expiring mid-run. Every
//! decision must be the same, byte for byte. `LEVER_PROPTEST_CASES` scales the number of
//! programs; a failure prints the seed, and `LEVER_LAYOUT_SEED` replays one.

use super::generate::Rng;
use super::props_jit::decisions;
use lever::runtime::EngineKind;
use std::sync::Arc;

const MONITORS: [&str; 4] = ["std.llm.cost", "std.llm.tokens", "spend", "peak"];

/// A monitor over one aggregate function, with a filter now and then.
fn monitor(rng: &mut Rng, name: &str) -> String {
    let filter = match rng.below(4) {
        0 => format!(" where step.model == \"{}\"", rng.pick(&["a", "b"])),
        1 => format!(" where step.kind != \"{}\"", rng.pick(&["tool_call", "x"])),
        _ => String::new(),
    };
    let body = match rng.below(7) {
        0 => format!("sum(step.cost{filter})"),
        1 => format!(
            "count(step.cost > $1{}) * $0.5",
            filter.replace(" where", " and")
        ),
        2 => format!("max(step.cost{filter})"),
        3 => format!("min(step.cost{filter}) * 3"),
        4 => format!("avg(step.cost{filter}) * 4"),
        5 => format!("last(step.cost{filter}) * 2"),
        _ => format!(
            "rate(step.cost{filter}, {})",
            rng.pick(&["10s", "1m", "5s"])
        ),
    };
    format!("monitor {name} = {body}\n")
}

fn policy(rng: &mut Rng, p: usize) -> String {
    let scope = match rng.below(4) {
        0 => format!("agent == \"{}\"", rng.pick(&["a", "b"])),
        1 => "tenant == \"t\"".to_string(),
        _ => "all".to_string(),
    };
    let mut text = format!(
        "policy p{p} {{\n  version 1\n  scope {scope}\n  precedence {}\n  on_error {}\n",
        rng.pick(&["10", "20", "30"]),
        rng.pick(&["fail_open", "fail_closed"]),
    );
    if rng.chance(40) {
        let conflict = rng.pick(&["explicit_priority", "most_restrictive"]);
        text.push_str(&format!("  conflict {conflict}\n"));
    }
    if rng.chance(20) {
        text.push_str("  bind first_token\n");
    }
    let mut limited = Vec::new();
    for m in MONITORS {
        if limited.is_empty() || rng.chance(50) {
            let near = match rng.below(3) {
                0 => String::new(),
                _ => format!("near {}% => alert(ui) ", rng.pick(&["50", "80", "90"])),
            };
            let unit = if m == "std.llm.tokens" { " tokens" } else { "" };
            let value = match m {
                "std.llm.tokens" => format!("{}", 100 * (1 + rng.below(20))),
                _ => format!("${}", 1 + rng.below(12)),
            };
            text.push_str(&format!(
                "  limit {m} to {value}{unit} {{ {near}breach => {} }}\n",
                rng.pick(&["pause", "stop", "kill"])
            ));
            limited.push(m);
        }
    }
    let raised = limited[rng.below(limited.len())];
    text.push_str(&format!(
        "  override {{\n    allow role \"sre\" to raise {raised} up to 400% for {}\n    allow role \"sre\" to suspend for {}\n  }}\n}}\n",
        rng.pick(&["5s", "20s", "1h"]),
        rng.pick(&["5s", "20s", "1h"]),
    ));
    text
}

fn program(seed: u64) -> (String, Vec<(usize, &'static str)>) {
    let mut rng = Rng::new(seed);
    let mut text = String::from("import std.llm\n");
    text.push_str(&monitor(&mut rng, "spend"));
    text.push_str(&monitor(&mut rng, "peak"));
    let mut raisable = Vec::new();
    for p in 0..2 + rng.below(4) {
        let body = policy(&mut rng, p);
        let raised = MONITORS
            .iter()
            .find(|m| body.contains(&format!("raise {m} ")))
            .copied()
            .unwrap_or("std.llm.cost");
        raisable.push((p, raised));
        text.push_str(&body);
    }
    (text, raisable)
}

/// Three runs (two agents, one tenant), steps a second apart with outputs now and then,
/// and raises and suspensions along the way.
fn events(seed: u64, raisable: &[(usize, &str)]) -> Vec<String> {
    let mut rng = Rng::new(seed ^ 0x1a70);
    let ts = |s: usize| format!("2026-01-20T10:{:02}:{:02}Z", s / 60, s % 60);
    let mut out = Vec::new();
    for r in 0..3 {
        out.push(format!(
            "{{\"type\":\"run_start\",\"run_id\":\"r{r}\",\"ts\":\"{}\",\"tenant\":\"{}\",\"agent\":\"{}\"}}",
            ts(0),
            rng.pick(&["t", "u"]),
            rng.pick(&["a", "b"])
        ));
    }
    for s in 1..=40 {
        let r = rng.below(3);
        if rng.chance(8) {
            let (p, limit) = raisable[rng.below(raisable.len())];
            let what = match rng.below(2) {
                0 => format!(
                    "\"kind\":\"raise\",\"limit\":\"{limit}\",\"to\":\"{}\"",
                    if limit == "std.llm.tokens" {
                        format!("{}", 200 * (1 + rng.below(20)))
                    } else {
                        format!("{}", 2 + rng.below(30))
                    }
                ),
                _ => "\"kind\":\"suspend\"".to_string(),
            };
            out.push(format!(
                "{{\"type\":\"override\",\"run_id\":\"r{r}\",\"ts\":\"{}\",\"actor\":\"oncall\",\"roles\":[\"sre\"],\"policy\":\"p{p}\",{what}}}",
                ts(s)
            ));
        }
        out.push(format!(
            "{{\"type\":\"step\",\"run_id\":\"r{r}\",\"ts\":\"{}\",\"cost\":\"{}\",\"input_tokens\":{},\"output_tokens\":{},\"model\":\"{}\",\"kind\":\"{}\"}}",
            ts(s),
            rng.pick(&["0", "0.25", "0.5", "1.5", "3"]),
            50 * rng.below(6),
            if rng.chance(30) { 10 } else { 0 },
            rng.pick(&["a", "b"]),
            rng.pick(&["llm_call", "tool_call"]),
        ));
    }
    out
}

#[test]
fn the_jit_decides_exactly_as_the_interpreter_on_generated_layouts() {
    let cases: u64 = super::env_or("LEVER_PROPTEST_CASES", 150);
    let seeds: Vec<u64> = match std::env::var("LEVER_LAYOUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (1..=cases).collect(),
    };
    let (mut checked, mut signals, mut shadowed, mut granted) = (0, 0, 0, 0);
    for seed in seeds {
        let (text, raisable) = program(seed);
        let set = lever::check::check(lever::source::SourceSet::from_text("p.policy", &text));
        assert!(
            !set.has_errors(),
            "seed {seed} does not check:\n{text}\n{:?}",
            set.diagnostics.iter().find(|d| d.is_error())
        );
        let artifact = Arc::new(lever::compile::build(&set, &["p.policy".into()]).unwrap());
        let lines = events(seed, &raisable);
        let interp = decisions(&artifact, EngineKind::Interp, &lines);
        let jit = decisions(&artifact, EngineKind::Jit, &lines);
        assert_eq!(interp.len(), jit.len(), "seed {seed}");
        for (i, (a, b)) in interp.iter().zip(&jit).enumerate() {
            assert_eq!(a, b, "seed {seed}, decision {}:\n{text}", i + 1);
        }
        checked += 1;
        let count = |needle: &str| interp.iter().filter(|d| d.contains(needle)).count();
        signals += count("\"kind\":\"near\"") + count("\"kind\":\"breach\"");
        shadowed += usize::from(text.contains("explicit_priority"));
        granted += count("\"status\":\"granted\"");
    }
    // The generator must reach what it is for: thresholds crossed, shadowing, grants.
    if checked >= 100 {
        assert!(signals > 100, "{signals} signals in {checked} programs");
        assert!(shadowed > 10, "{shadowed} programs with explicit priority");
        assert!(granted > 20, "{granted} overrides granted");
    }
}

/// A step judged for its verdict alone moves the run exactly as a step judged in full,
/// and its outcome, asked for afterwards, is the same decision; a quiet verdict is a
/// decision with no signal.
#[test]
fn a_verdict_then_its_outcome_is_the_step_judged_in_full() {
    use lever::runtime::event::{RunStart, Step};
    use lever::runtime::{Engine, budget::Budgets};
    let text = "import std.llm\npolicy p {\n  version 1\n  scope all\n  limit std.llm.cost to $2 { near 50% => alert(ui) breach => stop }\n  limit std.llm.burn_1m to $1.5 { breach => pause }\n}\n";
    let set = lever::check::check(lever::source::SourceSet::from_text("p.policy", text));
    let artifact = Arc::new(lever::compile::build(&set, &["p.policy".into()]).unwrap());
    let start = RunStart {
        run_id: "r".into(),
        ts: 0,
        tenant: "t".into(),
        agent: "a".into(),
        api_key: String::new(),
        human_actor: String::new(),
        labels: Default::default(),
        meta: None,
    };
    for kind in [EngineKind::Interp, EngineKind::Jit] {
        let (mut full, mut split) = (
            Engine::of_kind(Arc::clone(&artifact), kind).unwrap(),
            Engine::of_kind(Arc::clone(&artifact), kind).unwrap(),
        );
        let (mut a, _) = full.start_run(&start);
        let (mut b, _) = split.start_run(&start);
        let mut budgets = Budgets::default();
        let (mut quiet, mut loud) = (0, 0);
        for i in 1..=12 {
            let step = Step {
                run_id: "r".into(),
                ts: i * 10_000_000_000,
                cost: [100_000_000, 300_000_000][(i % 2) as usize],
                kind: "llm_call".into(),
                ..Step::default()
            };
            let expected = full.step(&mut a, &step, &[]).decision;
            let verdict = split.step_verdict(&mut b, &step, &[], &mut budgets);
            assert_eq!(verdict.action, expected.action, "{kind:?} step {i}");
            assert_eq!(
                verdict.quiet,
                expected.signals.is_empty(),
                "{kind:?} step {i}"
            );
            let got = split.step_outcome(&b, &step).decision;
            assert_eq!(got.to_json(), expected.to_json(), "{kind:?} step {i}");
            assert_eq!(a, b, "{kind:?} step {i}");
            if verdict.quiet { quiet += 1 } else { loud += 1 }
        }
        assert!(
            quiet >= 3 && loud >= 2,
            "{kind:?}: {quiet} quiet, {loud} with signals"
        );
    }
}

/// A compared string field is interned once per distinct value and reused while it
/// repeats: the empty string on the very first step, a change, and a return all compare
/// rightly, on both engines.
#[test]
fn a_compared_field_compares_rightly_as_its_value_repeats_and_changes() {
    let text = "import std.llm\npolicy p {\n  version 1\n  scope all\n  limit empty_tool to 2 { breach => stop }\n  monitor empty_tool = count(step.tool == \"\")\n}\n";
    let set = lever::check::check(lever::source::SourceSet::from_text("p.policy", text));
    assert!(!set.has_errors(), "{:?}", set.diagnostics);
    let artifact = Arc::new(lever::compile::build(&set, &["p.policy".into()]).unwrap());
    let mut lines = vec![
        "{\"type\":\"run_start\",\"run_id\":\"r\",\"ts\":\"2026-01-20T10:00:00Z\",\"tenant\":\"t\"}"
            .to_string(),
    ];
    for (i, tool) in ["", "x", "x", ""].iter().enumerate() {
        lines.push(format!(
            "{{\"type\":\"step\",\"run_id\":\"r\",\"ts\":\"2026-01-20T10:00:0{}Z\",\"tool\":\"{tool}\"}}",
            i + 1
        ));
    }
    for kind in [EngineKind::Interp, EngineKind::Jit] {
        let actions: Vec<String> = decisions(&artifact, kind, &lines)
            .iter()
            .map(|d| {
                let v: serde_json::Value = serde_json::from_str(d).unwrap();
                v["action"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(
            actions,
            ["continue", "continue", "continue", "continue", "stop"],
            "{kind:?}"
        );
    }
}
