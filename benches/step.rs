#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Step evaluation through the library API (DESIGN §9), evidence I/O excluded: 10
//! policies, `scope all`, each with limits on `std.llm.tokens`, `std.llm.cost`,
//! `std.llm.burn_1m` and a local filtered monitor; values set so that nothing trips; one
//! step a second. Target: under 1 µs/step. Also prints the state held per run.

use criterion::{Criterion, criterion_group, criterion_main};
use lever::runtime::Engine;
use lever::runtime::event::{RunStart, Step};
use std::fmt::Write;
use std::hint::black_box;
use std::sync::Arc;

pub fn policy_set(policies: usize) -> String {
    let mut text = String::from("import std.llm\n");
    for i in 0..policies {
        let _ = write!(
            text,
            "policy p{i} {{\n  version 1\n  scope all\n  monitor local = sum(step.cost where step.model == \"model-{i}\" and step.kind == \"llm_call\")\n  limit std.llm.tokens to 100_000_000 tokens {{ near 80% => alert(ui) breach => stop }}\n  limit std.llm.cost to $1_000_000 {{ near 80% => alert(ui) breach => stop }}\n  limit std.llm.burn_1m to $1_000 {{ breach => kill }}\n  limit local to $1_000 {{ breach => pause }}\n}}\n"
        );
    }
    text
}

fn engine() -> Engine {
    let checked = lever::check::check(lever::source::SourceSet::from_text(
        "bench.policy",
        &policy_set(10),
    ));
    assert!(!checked.has_errors());
    let artifact =
        lever::compile::build(&checked, &["bench.policy".into()]).expect("the bench set builds");
    Engine::new(Arc::new(artifact))
}

fn step(ts: i64) -> Step {
    Step {
        run_id: "bench".into(),
        ts,
        input_tokens: 1_200_000_000_000,
        output_tokens: 300_000_000_000,
        cost: 12_500_000,
        latency: 840_000_000,
        kind: "llm_call".into(),
        model: "model-3".into(),
        tool: String::new(),
        pii: false,
        metrics: Vec::new(),
        prompt: None,
    }
}

fn bench_step(c: &mut Criterion) {
    let mut engine = engine();
    let start = RunStart {
        run_id: "bench".into(),
        ts: 0,
        tenant: "acme".into(),
        agent: "bot".into(),
        api_key: String::new(),
        human_actor: String::new(),
        labels: Default::default(),
    };
    let mut s = step(0);
    let mut run = warmed_run(&mut engine, &start, &mut s);
    eprintln!(
        "state per run: {} bytes (size_of::<Run>() = {}), {} steps held in windows",
        run.memory_bytes(),
        std::mem::size_of::<lever::runtime::Run>(),
        60
    );
    let mut ts = s.ts;
    c.bench_function("step/10_policies_x_4_limits", |b| {
        b.iter_custom(|iters| {
            // One run at 1,500 tokens a step overflows `std.llm.tokens` (about 9.2 billion
            // tokens) after ~6 million steps, and from then on every step correctly signals
            // an error: start a fresh, warmed run between samples so that nothing trips.
            if run.seq > 1_000_000 {
                run = warmed_run(&mut engine, &start, &mut s);
                ts = s.ts;
            }
            let begin = std::time::Instant::now();
            for _ in 0..iters {
                ts += 1_000_000_000;
                s.ts = ts;
                let outcome = engine.step(&mut run, black_box(&s));
                black_box(outcome.decision.action);
            }
            begin.elapsed()
        })
    });
}

/// A run with its one-minute window full (120 steps, one a second).
fn warmed_run(engine: &mut Engine, start: &RunStart, s: &mut Step) -> lever::runtime::Run {
    let (mut run, _) = engine.start_run(start);
    for i in 1..=120 {
        s.ts = i * 1_000_000_000;
        let d = engine.step(&mut run, s).decision;
        assert!(d.signals.is_empty(), "nothing trips");
    }
    run
}

criterion_group!(benches, bench_step);
criterion_main!(benches);
