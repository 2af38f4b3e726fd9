#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! `lever check` throughput on a generated set of 10,000 policies (about 3 MB): each with
//! `scope agent == "a_i"`, four limits (three std monitors and a local filtered monitor)
//! and precedences spread from 10 to 100. Target: under 1 s.
//!
//! `check/10k_overlapping`: 10,000 policies whose scopes all overlap (`scope all` and
//! `tenant == ...`), tied at one precedence with disagreeing limits: one `W0401` for the
//! group, not one per pair. Target: under 2 s.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lever::source::{FileRole, SourceFile, SourceSet};
use std::fmt::Write;

/// The benchmark's policy set as one source text.
pub fn generated_set(policies: usize) -> String {
    let mut text = String::from(
        "import std.llm\n\nchannel ops = webhook(url: env(\"OPS_URL\"), secret: env(\"OPS_SECRET\"))\n\n",
    );
    for i in 0..policies {
        let precedence = 10 + (i % 91);
        let _ = write!(
            text,
            "policy agent_budget_{i} {{\n  version 1\n  scope agent == \"a_{i}\"\n  precedence {precedence}\n  monitor gpt4_cost = sum(step.cost where step.model == \"gpt-4o\")\n  limit std.llm.cost to $5.00 {{ near 80% => alert(ui, ops) breach => stop }}\n  limit std.llm.tokens to 200_000 tokens {{ breach => pause }}\n  limit std.llm.burn_1m to $0.50 {{ breach => kill, alert(ops) }}\n  limit gpt4_cost to $2.00 {{ breach => stop }}\n}}\n"
        );
    }
    text
}

fn check_set(c: &mut Criterion) {
    let text = generated_set(10_000);
    let mut group = c.benchmark_group("check");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(10);
    group.bench_function("10k_policies", |b| {
        b.iter(|| {
            let mut set = SourceSet::default();
            set.add(SourceFile::new(
                "bench.policy",
                text.as_str(),
                FileRole::User,
            ));
            let checked = lever::check::check(set);
            assert!(!checked.has_errors(), "the generated set checks clean");
            checked
        })
    });
    group.finish();
}

/// Policies that all overlap and tie with disagreeing limits.
pub fn overlapping_set(policies: usize) -> String {
    let mut text = String::from("import std.llm\n\n");
    for i in 0..policies {
        let scope = if i % 2 == 0 {
            "all".to_string()
        } else {
            format!("tenant == \"t{}\"", i % 7)
        };
        let _ = write!(
            text,
            "policy overlap_{i} {{\n  version 1\n  scope {scope}\n  limit std.llm.cost to ${}.00 {{ breach => stop }}\n}}\n",
            1 + i % 50
        );
    }
    text
}

fn check_overlapping(c: &mut Criterion) {
    let text = overlapping_set(10_000);
    let mut group = c.benchmark_group("check");
    group.sample_size(10);
    group.bench_function("10k_overlapping", |b| {
        b.iter(|| {
            let mut set = SourceSet::default();
            set.add(SourceFile::new(
                "bench.policy",
                text.as_str(),
                FileRole::User,
            ));
            let checked = lever::check::check(set);
            let ties = checked
                .diagnostics
                .iter()
                .filter(|d| d.code.as_str() == "W0401")
                .count();
            assert_eq!(ties, 1, "one warning for the group");
            checked
        })
    });
    group.finish();
}

criterion_group!(benches, check_set, check_overlapping);
criterion_main!(benches);
