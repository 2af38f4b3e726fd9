//! `lever run`: replays events through a policy set, writing evidence before printing.
//!
//! Two passes over the input: the first computes every record and refuses the whole
//! replay, writing nothing, if it would say something different from the store about an
//! existing (run, seq); the second writes each batch of records durably (fsync) and only
//! then prints that batch's decisions. Replaying the same input into the same store adds
//! nothing and prints the same decisions.

use crate::cli::{Format, load_and_check, load_artifact};
use crate::compile::{
    self,
    artifact::{Artifact, MAGIC},
};
use crate::evidence::{self, EvidenceStore, Record};
use crate::runtime::decision::Action;
use crate::runtime::replay::Replay;
use crate::source;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Lines per batch of the dry pass's comparison with the store.
const BATCH_LINES: usize = 1024;

fn is_artifact_file(path: &Path) -> bool {
    let mut head = [0u8; 8];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
        && &head == MAGIC
}

/// Loads the artifact a command names: an artifact file, or sources compiled in memory.
fn artifact_for(paths: &[PathBuf]) -> Result<Artifact, ExitCode> {
    if let [single] = paths
        && is_artifact_file(single)
    {
        return load_artifact(single);
    }
    let (checked, files) = load_and_check(paths, Format::Human)?;
    let stored = compile::artifact::stored_paths(&files);
    compile::build(&checked, &stored).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(1)
    })
}

/// Loads what a `deploy` event names, as text for a `bad_artifact` rejection.
fn deploy_loader(path: &Path) -> Result<Artifact, String> {
    if is_artifact_file(path) {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        return Artifact::from_bytes(bytes).map_err(|e| format!("{}: {e}", path.display()));
    }
    let files = source::expand_paths(&[path.to_path_buf()]).map_err(|e| e.to_string())?;
    let sources = source::load_files(&files).map_err(|e| e.to_string())?;
    let checked = crate::check::check(sources);
    if checked.has_errors() {
        let n = checked.diagnostics.iter().filter(|d| d.is_error()).count();
        return Err(format!("{} does not check ({n} errors)", path.display()));
    }
    let stored = compile::artifact::stored_paths(&files);
    compile::build(&checked, &stored).map_err(|e| e.to_string())
}

fn read_events(events: &str) -> Result<(Vec<u8>, PathBuf), ExitCode> {
    if events == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| io(format!("standard input: {e}")))?;
        return Ok((bytes, PathBuf::from(".")));
    }
    let path = Path::new(events);
    let bytes = std::fs::read(path).map_err(|e| io(format!("{events}: {e}")))?;
    let base = path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    Ok((bytes, base))
}

fn io(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// Runs `lever run`.
pub fn run(paths: &[PathBuf], events: &str, evidence_url: &str, group: usize) -> ExitCode {
    match replay(paths, events, evidence_url, group.max(1)) {
        Ok(code) | Err(code) => code,
    }
}

fn replay(
    paths: &[PathBuf],
    events: &str,
    evidence_url: &str,
    group: usize,
) -> Result<ExitCode, ExitCode> {
    let artifact = Arc::new(artifact_for(paths)?);
    let (text, base) = read_events(events)?;
    let mut store = evidence::open(evidence_url).map_err(|e| io(e.to_string()))?;
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    check_against_store(&artifact, &base, &lines, store.as_mut())?;

    let mut replay = Replay::new(Arc::clone(&artifact), base, Box::new(deploy_loader));
    let mut rejected = false;
    let mut records: Vec<Record> = Vec::new();
    let mut decisions: Vec<String> = Vec::new();
    let progress = std::io::stderr().is_terminal() && lines.len() > 200_000;
    for (i, line) in lines.iter().enumerate() {
        let Some(result) = replay.line_bytes(i as u64 + 1, line) else {
            continue;
        };
        rejected |= result.decision.action == Action::Rejected;
        decisions.push(result.decision.to_json());
        records.extend(result.records);
        if (i + 1) % group == 0 {
            commit(store.as_mut(), &mut records, &mut decisions)?;
            if progress && (i + 1) % 100_000 < group {
                eprint!("\rlever: {} of {} lines", i + 1, lines.len());
            }
        }
    }
    commit(store.as_mut(), &mut records, &mut decisions)?;
    if progress {
        eprintln!("\rlever: {} of {} lines", lines.len(), lines.len());
    }
    Ok(ExitCode::from(if rejected { 1 } else { 0 }))
}

/// Writes a batch durably, then prints its decisions.
fn commit(
    store: &mut dyn EvidenceStore,
    records: &mut Vec<Record>,
    decisions: &mut Vec<String>,
) -> Result<(), ExitCode> {
    store.append(records).map_err(|e| {
        eprintln!(
            "error: {e}; {} decisions of this batch were not printed",
            decisions.len()
        );
        ExitCode::from(2)
    })?;
    records.clear();
    let mut out = std::io::stdout().lock();
    for d in decisions.drain(..) {
        if writeln!(out, "{d}").is_err() {
            return Err(ExitCode::from(2));
        }
    }
    out.flush().map_err(|_| ExitCode::from(2))
}

/// The dry pass: refuses the replay if any record contradicts the store.
fn check_against_store(
    artifact: &Arc<Artifact>,
    base: &Path,
    lines: &[&[u8]],
    store: &mut dyn EvidenceStore,
) -> Result<(), ExitCode> {
    let mut dry = Replay::new(
        Arc::clone(artifact),
        base.to_path_buf(),
        Box::new(deploy_loader),
    );
    let mut batch: Vec<Record> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(result) = dry.line_bytes(i as u64 + 1, line) {
            batch.extend(result.records.into_iter().filter(|r| r.key().is_some()));
        }
        if (i + 1) % BATCH_LINES == 0 || i + 1 == lines.len() {
            let conflict = store
                .first_conflict(&batch)
                .map_err(|e| io(e.to_string()))?;
            if let Some(key) = conflict {
                eprintln!(
                    "error: replay refused: run `{}` differs from its stored evidence at seq {} ({} record); nothing was written",
                    key.run_id,
                    key.seq,
                    key.kind.name()
                );
                return Err(ExitCode::from(1));
            }
            batch.clear();
        }
    }
    Ok(())
}
