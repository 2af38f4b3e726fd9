#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Load on `lever serve` over loopback HTTP: client threads, each driving its own runs
//! with keep-alive connections, step after step, every answer waiting for durable evidence.
//! Prints steps per second and latency percentiles, for the file store and for PostgreSQL
//! (`DATABASE_URL`, in a schema of its own that it drops).
//!
//! `cargo bench --bench serve` (`LEVER_LOAD_SECONDS`, `LEVER_LOAD_CLIENTS` to change the
//! load). Targets on the 2-core machine (issue 8): file store 20,000 steps/s with p99
//! under 5 ms; PostgreSQL 5,000 steps/s.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn serve(dir: &std::path::Path, evidence: &str) -> (Child, String) {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lever"))
        .args(["serve", "--artifact", examples, "--evidence", evidence])
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("lever: serving on ")
        .unwrap()
        .to_string();
    std::thread::spawn(move || for _ in stderr.lines() {});
    (child, base)
}

fn load(base: &str, clients: usize, seconds: u64) -> (usize, Vec<Duration>) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let base = base.to_string();
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
                let mut latencies = Vec::new();
                let mut run = 0;
                while Instant::now() < deadline {
                    run += 1;
                    let id = format!("load-{c}-{run}");
                    agent
                        .post(&format!("{base}/v1/runs"))
                        .send(format!(
                            r#"{{"run_id":"{id}","ts":"2026-01-20T10:00:00Z","tenant":"acme","agent":"support-bot"}}"#
                        ))
                        .unwrap();
                    // 500 steps a run: costs that stay below every limit.
                    for s in 1..=500u32 {
                        if Instant::now() >= deadline {
                            break;
                        }
                        let body = format!(
                            r#"{{"ts":"2026-01-20T{:02}:{:02}:{:02}Z","input_tokens":10,"output_tokens":5,"cost":"0.000001","model":"gpt-4o"}}"#,
                            10 + s / 3600,
                            s / 60 % 60,
                            s % 60
                        );
                        let started = Instant::now();
                        let mut r = agent
                            .post(&format!("{base}/v1/runs/{id}/steps"))
                            .send(body)
                            .unwrap();
                        let _ = r.body_mut().read_to_string().unwrap();
                        latencies.push(started.elapsed());
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort();
    (all.len(), all)
}

fn report(name: &str, seconds: u64, (count, latencies): (usize, Vec<Duration>)) {
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{name}: {:.0} steps/s ({count} steps in {seconds} s), latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        count as f64 / seconds as f64,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
}

fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument that names neither store skips it.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let seconds: u64 = std::env::var("LEVER_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let clients: usize = std::env::var("LEVER_LOAD_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    println!("{clients} clients, keep-alive, {seconds} s per store");
    if wanted("file") {
        let dir = tempfile::tempdir().unwrap();
        let (child, base) = serve(dir.path(), "file:ev");
        report("serve/file", seconds, load(&base, clients, seconds));
        stop(child);
    }
    if wanted("postgres") {
        let base_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let schema = format!("lever_load_{}", std::process::id());
        let sep = if base_url.contains('?') { '&' } else { '?' };
        let url = format!("{base_url}{sep}schema={schema}");
        let dir = tempfile::tempdir().unwrap();
        let (child, base) = serve(dir.path(), &url);
        report("serve/postgres", seconds, load(&base, clients, seconds));
        stop(child);
        let mut c = postgres::Client::connect(&base_url, postgres::NoTls).unwrap();
        c.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .unwrap();
    }
}
