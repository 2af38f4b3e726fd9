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
//!
//! `step/arbitration_and_overrides`: the same ten policies with arbitration and override
//! authority in play: each at its own precedence (`most_restrictive`, so their tokens and
//! cost limits are each judged), an eleventh policy `burn_lead` at precedence 5 and
//! `explicit_priority` leading the `std.llm.burn_1m` group (the ten other burn limits
//! shadowed: 31 limits judged instead of 40), and, in force during the measurement, a
//! raise of one policy's cost limit and a suspension of another (both granted through the
//! override rules, with a TTL past the run).
//!
//! `step/10x4_and_2_budgets`: the same ten policies and two budgets across runs (per API
//! key per day, per (tenant, agent) per hour), counted in the engine's counters.
//!
//! `engines/*`: the interpreter and the Cranelift JIT side by side, on the 10 × 4 workload
//! and on one expression-heavy policy of 20 monitors, each a filtered sum and a filtered
//! one-minute rate combined with arithmetic (`docs/engines.md` has the figures).

use criterion::{Criterion, criterion_group};
use lever::runtime::event::{RunStart, Step};
use lever::runtime::{Engine, EngineKind, Zone};
use std::fmt::Write;
use std::hint::black_box;
use std::sync::Arc;

pub fn policy_set(policies: usize) -> String {
    let mut text = String::from("import std.llm\n");
    for i in 0..policies {
        let _ = write!(
            text,
            "policy p{i} {{\n  version 1\n  scope all\n  monitor local = sum(step.cost where step.model == \"model-{i}\" and step.kind == \"llm_call\")\n  limit std.llm.tokens to 9_000_000_000 tokens {{ near 80% => alert(ui) breach => stop }}\n  limit std.llm.cost to $1_000_000 {{ near 80% => alert(ui) breach => stop }}\n  limit std.llm.burn_1m to $1_000 {{ breach => kill }}\n  limit local to $100_000_000 {{ breach => pause }}\n}}\n"
        );
    }
    text
}

/// The arbitration-and-overrides variant of [`policy_set`].
pub fn governed_set(policies: usize) -> String {
    let mut text = String::from(
        "import std.llm\npolicy burn_lead {\n  version 1\n  scope all\n  precedence 5\n  conflict explicit_priority\n  limit std.llm.burn_1m to $1_000 { breach => kill }\n}\n",
    );
    for i in 0..policies {
        let conflict = "most_restrictive";
        let burn = "limit std.llm.burn_1m to $2_000 { breach => kill }";
        let _ = write!(
            text,
            "policy p{i} {{\n  version 1\n  scope all\n  precedence {prec}\n  conflict {conflict}\n  monitor local = sum(step.cost where step.model == \"model-{i}\" and step.kind == \"llm_call\")\n  limit std.llm.tokens to 9_000_000_000 tokens {{ near 80% => alert(ui) breach => stop }}\n  limit std.llm.cost to $1_000_000 {{ near 80% => alert(ui) breach => stop }}\n  {burn}\n  limit local to $100_000_000 {{ breach => pause }}\n  override {{\n    allow role \"sre\" to raise std.llm.cost up to 200% for 1000d\n    allow role \"sre\" to suspend for 1000d\n  }}\n}}\n",
            prec = 10 + i,
        );
    }
    text
}

fn engine() -> Engine {
    engine_of(&policy_set(10))
}

/// One policy of 20 monitors with filters, windows and arithmetic.
pub fn expression_policy() -> String {
    let mut text = String::from("import std.llm\npolicy heavy {\n  version 1\n  scope all\n");
    for k in 0..20 {
        let _ = write!(
            text,
            "  monitor m{k} = (sum(step.cost where step.model == \"model-{m}\" and step.latency < {lat}ms) * 2 + rate(step.cost where step.kind == \"llm_call\" or step.input_tokens > {tok} tokens, 1m)) / 3\n  limit m{k} to $1_000_000 {{ near 80% => alert(ui) breach => stop }}\n",
            m = k % 4,
            lat = 500 + 100 * k,
            tok = 100 * k,
        );
    }
    text.push_str("}\n");
    text
}

fn engine_of(text: &str) -> Engine {
    engine_kind(text, EngineKind::Interp)
}

fn engine_kind(text: &str, kind: EngineKind) -> Engine {
    let checked = lever::check::check(lever::source::SourceSet::from_text("bench.policy", text));
    assert!(!checked.has_errors());
    let artifact =
        lever::compile::build(&checked, &["bench.policy".into()]).expect("the bench set builds");
    Engine::of_kind(Arc::new(artifact), kind).expect("the engine is created")
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
        metrics: Default::default(),
        prompt: None,
        idempotency_key: None,
        meta: None,
    }
}

fn run_start() -> RunStart {
    RunStart {
        run_id: "bench".into(),
        ts: 0,
        tenant: "acme".into(),
        agent: "bot".into(),
        api_key: String::new(),
        human_actor: String::new(),
        labels: Default::default(),
        meta: None,
    }
}

fn bench_step(c: &mut Criterion) {
    let mut engine = engine();
    let run = warmed_run(&mut engine, &run_start(), &mut step(0));
    eprintln!(
        "state per run: {} bytes (size_of::<Run>() = {}), {} steps held in windows",
        run.memory_bytes(),
        std::mem::size_of::<lever::runtime::Run>(),
        60
    );
    // One run at 1,500 tokens a step reaches NEAR of the 9-billion-token limit after 4.8
    // million steps (and overflows `std.llm.tokens` after ~6 million): `timed_steps`
    // starts a fresh, warmed run before that.
    full_steps(c, "step/10_policies_x_4_limits", engine);
}

/// Times full steps of quiet runs of `engine` as `name`.
fn full_steps(c: &mut Criterion, name: &str, mut engine: Engine) {
    let start = run_start();
    let mut s = step(0);
    let mut run = warmed_run(&mut engine, &start, &mut s);
    let mut ts = s.ts;
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut fresh = |e: &mut Engine, s: &mut Step| warmed_run(e, &start, s);
            let (e, r) = (&mut engine, &mut run);
            timed_steps(e, r, &mut s, &mut ts, iters, None, &mut fresh)
        })
    });
}

/// Steps a run `iters` times, one step a second from `ts`, and returns the time it took:
/// through [`Engine::step`], or [`Engine::step_verdict`] when `budgets` are given. A run
/// stays quiet for 4.8 million steps, so at most a million are timed on one run: a fresh
/// one from `fresh` replaces it (untimed) before it gets near, and every chunk checks that
/// nothing tripped.
fn timed_steps(
    engine: &mut Engine,
    run: &mut lever::runtime::Run,
    s: &mut Step,
    ts: &mut i64,
    iters: u64,
    mut budgets: Option<&mut lever::runtime::budget::Budgets>,
    fresh: &mut dyn FnMut(&mut Engine, &mut Step) -> lever::runtime::Run,
) -> std::time::Duration {
    const CHUNK: u64 = 1_000_000;
    let mut elapsed = std::time::Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        if run.seq > CHUNK {
            *run = fresh(engine, s);
            *ts = s.ts;
        }
        let n = left.min(CHUNK);
        left -= n;
        let begin = std::time::Instant::now();
        let mut quiet = true;
        for _ in 0..n {
            *ts += 1_000_000_000;
            s.ts = *ts;
            quiet &= match budgets.as_deref_mut() {
                Some(b) => black_box(engine.step_verdict(run, black_box(s), &[], b).quiet),
                None => black_box(
                    engine
                        .step(run, black_box(s), &[])
                        .decision
                        .signals
                        .is_empty(),
                ),
            };
        }
        elapsed += begin.elapsed();
        assert!(
            quiet && run.zones.iter().all(|z| *z == Zone::Below),
            "nothing trips"
        );
    }
    elapsed
}

/// A run with its one-minute window full (120 steps, one a second).
fn warmed_run(engine: &mut Engine, start: &RunStart, s: &mut Step) -> lever::runtime::Run {
    let (mut run, _) = engine.start_run(start);
    for i in 1..=120 {
        s.ts = i * 1_000_000_000;
        let d = engine.step(&mut run, s, &[]).decision;
        assert!(d.signals.is_empty(), "nothing trips");
    }
    run
}

fn grant(engine: &mut Engine, run: &mut lever::runtime::Run, ts: i64, policy: &str, raise: bool) {
    use lever::runtime::event::{OverrideKind, OverrideRequest};
    let request = OverrideRequest {
        run_id: "bench".into(),
        ts,
        actor: "oncall@example.com".into(),
        roles: vec!["sre".into()],
        policy: policy.into(),
        kind: if raise {
            OverrideKind::Raise
        } else {
            OverrideKind::Suspend
        },
        limit: raise.then(|| "std.llm.cost".to_string()),
        to: raise.then(|| lever::runtime::event::RaiseTarget {
            text: "1500000".into(),
            to: lever::runtime::event::RaiseTo::parse("1500000").expect("a value"),
        }),
        ttl: None,
        reason: None,
        approvals: Vec::new(),
        meta: None,
    };
    let outcome = engine
        .override_request(run, &request)
        .expect("a valid request");
    let status = outcome.decision.override_outcome.map(|o| o.status);
    assert_eq!(status, Some("granted"), "{policy}: {status:?}");
}

fn bench_governed(c: &mut Criterion) {
    let mut engine = engine_of(&governed_set(10));
    let start = run_start();
    let mut s = step(0);
    let mut fresh = |engine: &mut Engine, s: &mut Step| {
        let mut run = warmed_run(engine, &start, s);
        grant(engine, &mut run, s.ts, "p0", true);
        grant(engine, &mut run, s.ts, "p1", false);
        assert_eq!(run.raises.len(), 1);
        assert_eq!(
            run.shadowed.iter().filter(|&&x| x).count(),
            10,
            "ten burn limits shadowed"
        );
        run
    };
    let mut run = fresh(&mut engine, &mut s);
    let mut ts = s.ts;
    c.bench_function("step/arbitration_and_overrides", |b| {
        b.iter_custom(|iters| {
            timed_steps(
                &mut engine,
                &mut run,
                &mut s,
                &mut ts,
                iters,
                None,
                &mut fresh,
            )
        })
    });
}

fn bench_engines(c: &mut Criterion) {
    engines(c, false);
}

/// `engines/*/verdict`: the same steps judged through [`Engine::step_verdict`], which
/// builds no decision for a step the caller does not ask about (an embedding framework
/// that needs only the action).
fn bench_verdicts(c: &mut Criterion) {
    engines(c, true);
}

/// Both workloads on both engines, by full steps or by verdicts.
fn engines(c: &mut Criterion, verdicts: bool) {
    let start = run_start();
    for (workload, text) in [("10x4", policy_set(10)), ("expr20", expression_policy())] {
        for kind in [EngineKind::Interp, EngineKind::Jit] {
            let mut engine = engine_kind(&text, kind);
            assert_eq!(engine.kind(), kind);
            let mut s = step(0);
            let mut run = warmed_run(&mut engine, &start, &mut s);
            let mut budgets = lever::runtime::budget::Budgets::default();
            let mut ts = s.ts;
            let suffix = if verdicts { "/verdict" } else { "" };
            let name = format!("engines/{workload}/{kind:?}{suffix}").to_lowercase();
            c.bench_function(&name, |b| {
                b.iter_custom(|iters| {
                    let mut fresh = |e: &mut Engine, s: &mut Step| warmed_run(e, &start, s);
                    let counters = verdicts.then_some(&mut budgets);
                    let (e, r) = (&mut engine, &mut run);
                    timed_steps(e, r, &mut s, &mut ts, iters, counters, &mut fresh)
                })
            });
        }
    }
}

/// The 10 × 4 workload with two budgets across runs bound as well: $1B a day per API key
/// and a billion tokens an hour per (tenant, agent). Their counters are the engine's own.
fn bench_budgets(c: &mut Criterion) {
    let text = policy_set(10)
        + "policy budget_key {\n  version 1\n  scope all\n  limit std.llm.cost to $1_000_000_000 per api_key per 1d { breach => stop }\n}\n"
        + "policy budget_agent {\n  version 1\n  scope all\n  limit std.llm.tokens to 1_000_000_000 tokens per (tenant, agent) per 1h { breach => stop }\n}\n";
    full_steps(c, "step/10x4_and_2_budgets", engine_of(&text));
}

/// `LEVER_STEP_COUNT=N LEVER_STEP_WORKLOAD=10x4|expr20 LEVER_STEP_ENGINE=interp|jit`:
/// no criterion, just N steps of the workload after a warmed run, for an instruction
/// count under callgrind (the figure a noisy host cannot blur). Run it at N and 2N and
/// divide the difference by N: setup cancels out.
fn count_steps(n: u64) {
    let workload = std::env::var("LEVER_STEP_WORKLOAD").unwrap_or_else(|_| "10x4".into());
    let text = match workload.as_str() {
        "expr20" => expression_policy(),
        _ => policy_set(10),
    };
    let kind = match std::env::var("LEVER_STEP_ENGINE").as_deref() {
        Ok("jit") => EngineKind::Jit,
        _ => EngineKind::Interp,
    };
    let mut engine = engine_kind(&text, kind);
    let mut s = step(0);
    let mut run = warmed_run(&mut engine, &run_start(), &mut s);
    let mut ts = s.ts;
    let start = run_start();
    let mut fresh = |e: &mut Engine, s: &mut Step| warmed_run(e, &start, s);
    timed_steps(&mut engine, &mut run, &mut s, &mut ts, n, None, &mut fresh);
}

criterion_group!(
    benches,
    bench_step,
    bench_governed,
    bench_engines,
    bench_verdicts,
    bench_budgets
);

fn main() {
    if let Some(n) = std::env::var("LEVER_STEP_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        count_steps(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
