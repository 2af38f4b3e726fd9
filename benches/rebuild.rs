#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]
//! Runs rebuilt from the evidence: a store holding `LEVER_REBUILD_RUNS` live runs (default
//! 10,000) of 50 steps each, and 200 ended runs, written by the real `lever run`. Then the
//! real `lever serve` is started on it and timed until it listens (it rebuilds every live
//! run first), and the cold load of one run (an ended run, which no server holds until it
//! is asked about) is timed by `GET /v1/runs/{id}`, 200 times, for the median.
//!
//! `cargo bench --bench rebuild`: the file store, and PostgreSQL at `DATABASE_URL` (a schema
//! of its own, dropped after).

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const STEPS: usize = 50;
const ENDED: usize = 200;
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

fn lever() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lever"))
}

/// The events: every run started, then step after step across all runs (as a day's
/// traffic interleaves them); the ended runs end.
fn write_events(path: &Path, live: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let runs = live + ENDED;
    for r in 0..runs {
        writeln!(out, r#"{{"type":"run_start","run_id":"r{r}","ts":"2026-01-20T10:00:00Z","tenant":"acme","agent":"support-bot"}}"#).unwrap();
    }
    for s in 1..=STEPS {
        for r in 0..runs {
            writeln!(out, r#"{{"type":"step","run_id":"r{r}","ts":"2026-01-20T10:{:02}:{:02}Z","cost":"0.01","input_tokens":120,"output_tokens":30,"model":"gpt-4o"}}"#, s / 60, s % 60).unwrap();
        }
    }
    for r in live..runs {
        writeln!(
            out,
            r#"{{"type":"run_end","run_id":"r{r}","ts":"2026-01-20T11:00:00Z"}}"#
        )
        .unwrap();
    }
}

fn get(base: &str, path: &str) -> u16 {
    let host = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(host).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn measure(dir: &Path, evidence: &str, live: usize) {
    let started = Instant::now();
    let out = lever()
        .args([
            "run",
            EXAMPLES,
            "--events",
            "events.jsonl",
            "--evidence",
            evidence,
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "  store written by lever run in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    std::fs::write(dir.join("public.toml"), "[server]\npublic_reads = true\n").unwrap();
    let started = Instant::now();
    let (child, base, said) = support::serve(
        dir,
        &[
            "--artifact",
            EXAMPLES,
            "--evidence",
            evidence,
            "--config",
            "public.toml",
        ],
    );
    let listening = started.elapsed();
    let rebuilt = said
        .lines()
        .find(|l| l.contains("rebuilt"))
        .unwrap_or("(no rebuild line)");
    eprintln!(
        "  {live} live runs x {STEPS} steps: listening after {:.2} s; {}",
        listening.as_secs_f64(),
        rebuilt.trim()
    );
    let mut loads: Vec<Duration> = (live..live + ENDED)
        .map(|r| {
            let t = Instant::now();
            assert_eq!(get(&base, &format!("/v1/runs/r{r}")), 200);
            t.elapsed()
        })
        .collect();
    let mut held: Vec<Duration> = (live..live + ENDED)
        .map(|r| {
            let t = Instant::now();
            assert_eq!(get(&base, &format!("/v1/runs/r{r}")), 200);
            t.elapsed()
        })
        .collect();
    loads.sort();
    held.sort();
    eprintln!(
        "  cold load of one run of {STEPS} steps (GET /v1/runs/ID): median {:.2} ms, p90 {:.2} ms; the same run held: median {:.2} ms",
        loads[ENDED / 2].as_secs_f64() * 1e3,
        loads[ENDED * 9 / 10].as_secs_f64() * 1e3,
        held[ENDED / 2].as_secs_f64() * 1e3
    );
    support::stop(child);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let live: usize = std::env::var("LEVER_REBUILD_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let tmp = tempfile::tempdir().unwrap();
    write_events(&tmp.path().join("events.jsonl"), live);
    eprintln!("file store:");
    measure(tmp.path(), "file:ev", live);
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("lever_rebuild_{}", std::process::id());
    let sep = if url.contains('?') { '&' } else { '?' };
    let pg = format!("{url}{sep}schema={schema}");
    let migrate = lever()
        .args(["evidence", "migrate", "--evidence", &pg])
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    eprintln!("PostgreSQL:");
    measure(tmp.path(), &pg, live);
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
}
