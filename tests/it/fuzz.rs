//! Fuzzing on stable: seeded, reproducible loops of generated and mutated inputs through
//! every parser of untrusted bytes: the artifact loader (arbitrary bytes, and mutations
//! sealed with a recomputed hash so that they reach the decoder), the event reader (and
//! the whole replay behind it), and the HTTP body decoder. Nothing may panic.
//!
//! `LEVER_FUZZ_INPUTS` sets the inputs per target (CI runs a short loop; the closing note
//! reports a long one), `LEVER_FUZZ_SEED` the seed. A crash found here becomes a case in
//! `regressions`.

use super::root;
use lever::compile::artifact::{Artifact, FORMAT_VERSION, MAGIC};
use std::sync::Arc;

/// xorshift64*: enough randomness for mutations, and reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn inputs() -> usize {
    std::env::var("LEVER_FUZZ_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn rng(salt: u64) -> Rng {
    let seed: u64 = std::env::var("LEVER_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    Rng((seed ^ salt).max(1))
}

/// Interesting bytes for JSON and for the artifact's encoding.
const DICTIONARY: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"-",
    b"0",
    b"1e999",
    b"null",
    b"true",
    b"\"type\"",
    b"\"step\"",
    b"\"run_id\"",
    b"\"cost\"",
    b"\"ts\"",
    b"\\u0000",
    b"\xff",
    b"99999999999999999999",
    b"0.0000000001",
    b"\"2026-01-20T10:00:00Z\"",
    b"\xc3\x28",
];

/// One mutation of `seed`: bit flips, a cut, a splice of dictionary bytes, a duplicated or
/// deleted range.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len().max(1);
        match rng.below(6) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => out.truncate(rng.below(len)),
            2 => {
                let word = DICTIONARY[rng.below(DICTIONARY.len())];
                let at = rng.below(len).min(out.len());
                out.splice(at..at, word.iter().copied());
            }
            3 if !out.is_empty() => {
                let a = rng.below(out.len());
                let b = (a + rng.below(64)).min(out.len());
                let copy = out[a..b].to_vec();
                out.splice(b..b, copy);
            }
            4 if !out.is_empty() => {
                let a = rng.below(out.len());
                let b = (a + rng.below(16)).min(out.len());
                out.drain(a..b);
            }
            _ => {
                let i = rng.below(len).min(out.len());
                out.insert(i, rng.next() as u8);
            }
        }
    }
    out
}

/// An artifact's bytes around a body, with its hash recomputed.
fn sealed(body: &[u8]) -> Vec<u8> {
    let mut h = blake3::Hasher::new();
    h.update(MAGIC);
    h.update(&FORMAT_VERSION.to_le_bytes());
    h.update(body);
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(h.finalize().as_bytes());
    out.extend_from_slice(body);
    out
}

fn example_artifact() -> Artifact {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p.lvc");
    super::lever(&root(), &["build", "examples", "-o", out.to_str().unwrap()]);
    Artifact::from_bytes(std::fs::read(out).unwrap()).unwrap()
}

/// What a decoded artifact goes through: disassembly, an engine, a run and a step.
fn exercise(artifact: Artifact) {
    let _ = lever::compile::disasm::text(&artifact);
    let _ = lever::compile::disasm::json(&artifact);
    let mut replay = lever::runtime::replay::Replay::new(
        Arc::new(artifact),
        std::path::PathBuf::from("."),
        Box::new(|_| Err("no deploys".to_string())),
    );
    for line in [
        r#"{"type":"run_start","run_id":"r","ts":"2026-01-20T10:00:00Z","tenant":"acme","agent":"support-bot"}"#,
        r#"{"type":"step","run_id":"r","ts":"2026-01-20T10:00:01Z","cost":"1.5","output_tokens":10,"model":"gpt-4o"}"#,
    ] {
        let _ = replay.line(1, line);
    }
}

#[test]
fn the_artifact_loader_takes_any_bytes_without_panicking() {
    let artifact = example_artifact();
    let body = artifact.bytes[44..].to_vec();
    let mut rng = rng(1);
    let (mut decoded, n) = (0usize, inputs());
    for i in 0..n {
        let bytes = match i % 3 {
            0 => mutate(&mut rng, &artifact.bytes),
            1 => sealed(&mutate(&mut rng, &body)),
            _ => (0..rng.below(256)).map(|_| rng.next() as u8).collect(),
        };
        let _ = lever::compile::load::load_bytes(bytes.clone(), Default::default());
        if let Ok(a) = Artifact::from_bytes(bytes) {
            decoded += 1;
            exercise(a);
        }
    }
    eprintln!("artifact loader: {n} inputs, {decoded} decoded");
}

fn event_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for dir in super::case_dirs("replay") {
        let text = std::fs::read(dir.join("events.jsonl")).unwrap();
        seeds.extend(
            text.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec),
        );
    }
    seeds
}

#[test]
fn the_event_reader_and_the_replay_take_any_line_without_panicking() {
    let seeds = event_seeds();
    let artifact = Arc::new(example_artifact());
    let mut replay = lever::runtime::replay::Replay::new(
        Arc::clone(&artifact),
        std::path::PathBuf::from("."),
        Box::new(|_| Err("no deploys".to_string())),
    );
    let mut rng = rng(2);
    let (mut accepted, n) = (0usize, inputs());
    for i in 0..n {
        let seed = &seeds[rng.below(seeds.len())];
        // Some lines whole, so that runs start and mutated lines meet live runs.
        let line = if rng.below(4) == 0 {
            seed.clone()
        } else {
            mutate(&mut rng, seed)
        };
        if let Some(r) = replay.line_bytes(i as u64 + 1, &line)
            && !r.rejected
        {
            accepted += 1;
        }
        // A fresh replay now and then, so that runs start and end again.
        if i % 5_000 == 4_999 {
            replay = lever::runtime::replay::Replay::new(
                Arc::clone(&artifact),
                std::path::PathBuf::from("."),
                Box::new(|_| Err("no deploys".to_string())),
            );
        }
    }
    eprintln!("event reader: {n} inputs, {accepted} accepted");
}

#[test]
fn the_http_body_decoder_takes_any_bytes_without_panicking() {
    let seeds: Vec<Vec<u8>> = event_seeds()
        .into_iter()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_slice(&l).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                m.remove("type");
                m.remove("run_id");
            }
            serde_json::to_vec(&v).unwrap()
        })
        .collect();
    let mut rng = rng(3);
    let (mut decoded, n) = (0usize, inputs());
    for _ in 0..n {
        let pick = rng.below(seeds.len());
        let body = mutate(&mut rng, &seeds[pick]);
        if lever::server::decode_body(&body).is_ok() {
            decoded += 1;
        }
    }
    eprintln!("body decoder: {n} inputs, {decoded} decoded");
}
