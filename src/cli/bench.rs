//! `lever bench`: a user's own policies timed on their own events, on both engines. Each
//! pass judges every event in a fresh runtime, evidence records built and nothing
//! written (what a server does per request under its runtime lock, without the I/O);
//! events are decoded once, before the timing. The median pass is reported.

use crate::cli::Format;
use crate::cli::run::{ReplayInputs, replay_inputs};
use crate::compile::load::{self, LoadOptions};
use crate::runtime::EngineKind;
use crate::runtime::event::{self, Event};
use crate::runtime::replay::Replay;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One engine's passes.
struct Timed {
    engine: &'static str,
    /// Each pass's time, sorted; empty when the engine is unavailable here.
    passes: Vec<Duration>,
    unavailable: Option<String>,
}

impl Timed {
    fn median(&self) -> Option<Duration> {
        self.passes.get(self.passes.len() / 2).copied()
    }
}

pub(crate) fn bench(source: &[PathBuf], events: &str, passes: u32, format: Format) -> ExitCode {
    let ReplayInputs {
        artifact,
        bytes,
        base,
    } = match replay_inputs(source, events) {
        Ok(inputs) => inputs,
        Err(code) => return code,
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut decoded: Vec<Event> = Vec::new();
    let mut unread = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match event::parse(line) {
            Ok(e) => decoded.push(e),
            Err(_) => unread += 1,
        }
    }
    if decoded.is_empty() {
        eprintln!("error: {events}: no event to time ({unread} lines are not events)");
        return ExitCode::from(2);
    }
    let steps = decoded
        .iter()
        .filter(|e| matches!(e, Event::Step(_)))
        .count();
    let timed: Vec<Timed> = [("interp", EngineKind::Interp), ("jit", EngineKind::Jit)]
        .into_iter()
        .map(|(name, kind)| time(&artifact, &base, &decoded, (name, kind), passes))
        .collect();
    match format {
        Format::Human => print!("{}", human(&timed, decoded.len(), steps, unread)),
        Format::Json => println!("{}", json(&timed, decoded.len(), steps, unread, passes)),
    }
    ExitCode::SUCCESS
}

/// `passes` passes of every event through a fresh runtime on one engine.
fn time(
    artifact: &Arc<crate::compile::artifact::Artifact>,
    base: &Path,
    events: &[Event],
    (engine, kind): (&'static str, EngineKind),
    passes: u32,
) -> Timed {
    let mut timed = Timed {
        engine,
        passes: Vec::new(),
        unavailable: None,
    };
    for _ in 0..passes {
        let replay = Replay::with_engine(
            Arc::clone(artifact),
            base.to_path_buf(),
            load::deploy_loader(LoadOptions::default()),
            kind,
        );
        let mut replay = match replay {
            Ok(r) => r,
            Err(e) => {
                timed.unavailable = Some(e.to_string());
                return timed;
            }
        };
        let started = Instant::now();
        for (i, e) in events.iter().enumerate() {
            std::hint::black_box(replay.apply(i as u64 + 1, e));
        }
        timed.passes.push(started.elapsed());
    }
    timed.passes.sort();
    timed
}

fn per_event(d: Duration, events: usize) -> f64 {
    d.as_nanos() as f64 / events.max(1) as f64
}

fn human(timed: &[Timed], events: usize, steps: usize, unread: usize) -> String {
    let mut out = format!(
        "{events} events ({steps} steps{}), each pass in a fresh runtime, records built, nothing written\n",
        if unread > 0 {
            format!("; {unread} lines that are not events left out")
        } else {
            String::new()
        }
    );
    for t in timed {
        match (t.median(), &t.unavailable) {
            (Some(m), _) => out.push_str(&format!(
                "{:<7} {:>9.0} ns/event (median of {} passes; fastest {:.0}, slowest {:.0})\n",
                t.engine,
                per_event(m, events),
                t.passes.len(),
                t.passes.first().map_or(0.0, |d| per_event(*d, events)),
                t.passes.last().map_or(0.0, |d| per_event(*d, events)),
            )),
            (None, why) => out.push_str(&format!(
                "{:<7} unavailable: {}\n",
                t.engine,
                why.as_deref().unwrap_or("no pass ran")
            )),
        }
    }
    if let [Some(a), Some(b)] = [timed.first(), timed.get(1)].map(|t| t.and_then(Timed::median)) {
        out.push_str(&format!(
            "jit/interp: {:.2}x as fast\n",
            a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE)
        ));
    }
    out
}

fn json(timed: &[Timed], events: usize, steps: usize, unread: usize, passes: u32) -> String {
    let engines: serde_json::Map<String, serde_json::Value> = timed
        .iter()
        .map(|t| {
            let ns = |d: Option<&Duration>| d.map(|d| per_event(*d, events).round() as u64);
            let v = serde_json::json!({
                "median_ns_per_event": ns(t.median().as_ref()),
                "fastest_ns_per_event": ns(t.passes.first()),
                "slowest_ns_per_event": ns(t.passes.last()),
                "unavailable": t.unavailable,
            });
            (t.engine.to_string(), v)
        })
        .collect();
    serde_json::json!({
        "events": events,
        "steps": steps,
        "not_events": unread,
        "passes": passes,
        "engines": engines,
    })
    .to_string()
}
