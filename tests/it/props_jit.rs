//! The JIT against the interpreter on generated, well-typed policy sets and event streams:
//! every decision the same, byte for byte. Expressions reach every instruction, including
//! overflow (products of large constants) and division by zero (differences of counts
//! that meet). `LEVER_PROPTEST_CASES` scales the number of programs; a failure prints the
//! seed, and `LEVER_JIT_SEED` replays one.

use super::generate::Rng;
use lever::runtime::EngineKind;
use lever::runtime::replay::Replay;
use std::sync::Arc;

/// A boolean filter over step and run fields.
fn filter(rng: &mut Rng, depth: usize) -> String {
    if depth == 0 || rng.chance(35) {
        return match rng.below(11) {
            0 => format!("step.model == \"{}\"", rng.pick(&["a", "b", "c"])),
            1 => format!("step.model != \"{}\"", rng.pick(&["a", "b"])),
            2 => format!(
                "step.cost {} ${}",
                rng.pick(&["<", "<=", ">", ">="]),
                rng.below(4)
            ),
            3 => format!(
                "step.input_tokens {} {} tokens",
                rng.pick(&["<", ">="]),
                50 * rng.below(5)
            ),
            4 => "step.pii".to_string(),
            5 => format!(
                "step.kind in [\"llm_call\", \"{}\"]",
                rng.pick(&["tool_call", "x"])
            ),
            6 => format!("run.labels[\"env\"] == \"{}\"", rng.pick(&["prod", "dev"])),
            7 => format!("step.latency < {}ms", 100 * rng.below(10)),
            8 => "run.agent == step.model".to_string(),
            9 => format!("step.tool in [step.model, \"{}\"]", rng.pick(&["t", "a"])),
            _ => rng.pick(&["true", "false"]).to_string(),
        };
    }
    match rng.below(3) {
        0 => format!(
            "({} and {})",
            filter(rng, depth - 1),
            filter(rng, depth - 1)
        ),
        1 => format!("({} or {})", filter(rng, depth - 1), filter(rng, depth - 1)),
        _ => format!("not ({})", filter(rng, depth - 1)),
    }
}

/// A `count`-valued expression over aggregates, constants and earlier monitors.
fn count_expr(rng: &mut Rng, depth: usize, earlier: &[String]) -> String {
    if depth == 0 || rng.chance(30) {
        return match rng.below(6) {
            0 => format!("count({})", filter(rng, 2)),
            1 => format!("count({} or {})", filter(rng, 1), filter(rng, 1)),
            2 => rng
                .pick(&["1", "0", "2.5", "9_000_000_000", "0.000000001", "3"])
                .to_string(),
            3 if !earlier.is_empty() => earlier[rng.below(earlier.len())].clone(),
            4 => "count(true)".to_string(),
            _ => format!("count({})", filter(rng, 1)),
        };
    }
    let a = count_expr(rng, depth - 1, earlier);
    let b = count_expr(rng, depth - 1, earlier);
    match rng.below(6) {
        0 => format!("({a} + {b})"),
        1 => format!("({a} - {b})"),
        2 => format!("({a} * {b})"),
        3 => format!("({a} / {b})"),
        4 => format!("(-{a})"),
        _ => format!(
            "({a} / (count({}) - count({})))",
            filter(rng, 1),
            filter(rng, 1)
        ),
    }
}

fn program(seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut text = String::new();
    let mut monitors: Vec<String> = Vec::new();
    for m in 0..1 + rng.below(4) {
        text.push_str(&format!(
            "monitor m{m} = {}\n",
            count_expr(&mut rng, 3, &monitors)
        ));
        monitors.push(format!("m{m}"));
    }
    for p in 0..1 + rng.below(3) {
        text.push_str(&format!(
            "policy p{p} {{\n  version 1\n  scope all\n  precedence {}\n  on_error {}\n",
            10 + p,
            rng.pick(&["fail_open", "fail_closed"])
        ));
        for (i, m) in monitors.iter().enumerate() {
            if i == 0 || rng.chance(70) {
                text.push_str(&format!(
                    "  limit {m} to {} {{ near 50% => alert(ui) breach => {} }}\n",
                    1 + rng.below(6),
                    rng.pick(&["pause", "stop", "kill"])
                ));
            }
        }
        text.push_str("}\n");
    }
    text
}

fn events(seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut out = Vec::new();
    for r in 0..2 {
        out.push(format!(
            "{{\"type\":\"run_start\",\"run_id\":\"r{r}\",\"ts\":\"2026-01-20T10:00:00Z\",\"tenant\":\"t\",\"agent\":\"{}\",\"labels\":{{\"env\":\"{}\"}}}}",
            rng.pick(&["a", "bot"]),
            rng.pick(&["prod", "dev"])
        ));
    }
    for s in 1..=20 {
        for r in 0..2 {
            out.push(format!(
                "{{\"type\":\"step\",\"run_id\":\"r{r}\",\"ts\":\"2026-01-20T10:00:{s:02}Z\",\"cost\":\"{}\",\"input_tokens\":{},\"latency_ms\":{},\"model\":\"{}\",\"kind\":\"{}\",\"tool\":\"{}\",\"pii\":{}}}",
                rng.pick(&["0", "0.5", "1.25", "3"]),
                50 * rng.below(6),
                100 * rng.below(10),
                rng.pick(&["a", "b", "c"]),
                rng.pick(&["llm_call", "tool_call"]),
                rng.pick(&["t", "a", ""]),
                rng.chance(30)
            ));
        }
    }
    out
}

pub(crate) fn decisions(
    artifact: &Arc<lever::compile::artifact::Artifact>,
    kind: EngineKind,
    lines: &[String],
) -> Vec<String> {
    let mut replay = Replay::with_engine(
        Arc::clone(artifact),
        std::path::PathBuf::from("."),
        Box::new(|_| Err("no deploys".into())),
        kind,
    )
    .expect("the engine is created");
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| replay.line(i as u64 + 1, l))
        .map(|r| r.decision.to_json())
        .collect()
}

#[test]
fn the_jit_decides_exactly_as_the_interpreter_on_generated_programs() {
    let cases: u64 = std::env::var("LEVER_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(150);
    let seeds: Vec<u64> = match std::env::var("LEVER_JIT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        Some(seed) => vec![seed],
        None => (1..=cases).collect(),
    };
    let (mut checked, mut errors, mut signals) = (0, 0, 0);
    for seed in seeds {
        let text = format!("import std.llm\n{}", program(seed));
        let set = lever::check::check(lever::source::SourceSet::from_text("p.policy", &text));
        if set.has_errors() {
            if std::env::var_os("LEVER_JIT_DEBUG").is_some() {
                let msgs: Vec<String> = set
                    .diagnostics
                    .iter()
                    .filter(|d| d.is_error())
                    .map(|d| format!("{:?}", d))
                    .take(2)
                    .collect();
                eprintln!("seed {seed}:\n{text}\n{}", msgs.join("\n"));
            }
            continue;
        }
        let artifact = Arc::new(lever::compile::build(&set, &["p.policy".into()]).unwrap());
        let lines = events(seed);
        let interp = decisions(&artifact, EngineKind::Interp, &lines);
        let jit = decisions(&artifact, EngineKind::Jit, &lines);
        for (i, (a, b)) in interp.iter().zip(&jit).enumerate() {
            assert_eq!(a, b, "seed {seed}, line {}:\n{text}", i + 1);
        }
        assert_eq!(interp.len(), jit.len());
        checked += 1;
        errors += interp
            .iter()
            .filter(|d| d.contains("\"kind\":\"error\""))
            .count();
        signals += interp
            .iter()
            .filter(|d| d.contains("\"kind\":\"breach\""))
            .count();
    }
    // The generator is meant to produce mostly valid programs, with errors and breaches.
    assert!(
        checked * 2 >= cases.min(150) as usize || cases == 1,
        "only {checked} programs checked"
    );
    assert!(
        errors > 0 || cases < 20,
        "no evaluation error was exercised"
    );
    assert!(signals > 0 || cases < 20, "no breach was exercised");
}
