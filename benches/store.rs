#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Sustained evidence write throughput, records per second, for each backend: group
//! commits of 1,024 records shaped like a replay's (a decision with its input, and every
//! fourth one a signal), each commit durable (fsync, or a committed transaction) before
//! the next. PostgreSQL reads `DATABASE_URL` and writes into a schema it drops afterwards.
//! Targets (DESIGN §9): 200,000 records/s file, 50,000 records/s PostgreSQL.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lever::evidence::{EvidenceStore, Record, RecordKind, Sealed};
use std::time::{Duration, Instant};

const BATCH: usize = 1024;

/// Batch `b` of a stream of records over 64 runs.
fn batch(b: u64) -> Vec<Record> {
    (0..BATCH as u64)
        .map(|i| {
            let n = b * BATCH as u64 + i;
            let run = format!("run-{:04}", n % 64);
            let seq = n / 64 + 1;
            if i % 4 == 3 {
                Record {
                    kind: RecordKind::Signal,
                    artifact: "blake3:5d637694ce8d4296dfebc01053238faebba14f92fbe0fc80f237d8b32e2cd6e4".into(),
                    run_id: Some(run),
                    seq,
                    index: 0,
                    body: serde_json::json!({"kind": "near", "policy": "support_budget", "version": 3,
                        "policy_hash": "blake3:9a8a51d1060afc53fd4ad546cbd5d2946d6982ad087fc5695a5b0d3a54dd886d",
                        "limit": "std.llm.cost", "observed": "4.05", "limit_value": "5.00", "percent": "81"}),
                }
            } else {
                Record {
                    kind: RecordKind::Decision,
                    artifact: "blake3:5d637694ce8d4296dfebc01053238faebba14f92fbe0fc80f237d8b32e2cd6e4".into(),
                    run_id: Some(run.clone()),
                    seq,
                    index: 0,
                    body: serde_json::json!({"run_id": run, "seq": seq, "ts": "2026-01-20T10:02:00Z",
                        "event": "step", "action": "continue", "reason": null, "signals": [], "alerts": [],
                        "snapshot": "blake3:13e95566567f468685b60d8e3d72a257bb10019e50c66773a212ab1f4066c22d",
                        "artifact": "blake3:5d637694ce8d4296dfebc01053238faebba14f92fbe0fc80f237d8b32e2cd6e4",
                        "input": {"type": "step", "run_id": run, "ts": "2026-01-20T10:02:00Z", "input_tokens": "1200",
                        "output_tokens": "300", "cost": "0.45", "latency_ms": "840", "kind": "llm_call", "model": "gpt-4o"}}),
                }
            }
        })
        .collect()
}

fn sustained(c: &mut Criterion, name: &str, open: &dyn Fn() -> Box<dyn EvidenceStore>) {
    let mut store = open();
    let mut next = 0u64;
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            // Only the sealing (canonical bytes and hashes) and the appends are timed; each
            // batch is built just before, so that a long sample does not hold hundreds of
            // megabytes of prepared records.
            let mut spent = Duration::ZERO;
            for i in 0..iters {
                let records = batch(next + i);
                let start = Instant::now();
                let records = Sealed::all(records);
                assert_eq!(store.append(&records).unwrap(), BATCH);
                spent += start.elapsed();
            }
            next += iters;
            spent
        })
    });
    group.finish();
}

fn bench_file(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    sustained(c, "file_group_commit_1024", &|| {
        Box::new(lever::evidence::file::FileStore::open(&path).unwrap())
    });
}

fn bench_postgres(c: &mut Criterion) {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let schema = format!("lever_bench_{}", std::process::id());
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}schema={schema}");
    lever::evidence::postgres::migrate::migrate(&url, None)
        .expect("PostgreSQL (DATABASE_URL) is reachable and the store can be created");
    sustained(c, "postgres_group_commit_1024", &|| {
        Box::new(
            lever::evidence::postgres::PgStore::open(&url)
                .expect("PostgreSQL (DATABASE_URL) is reachable"),
        )
    });
    let mut client = postgres::Client::connect(&base, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .unwrap();
}

criterion_group!(benches, bench_file, bench_postgres);
criterion_main!(benches);
