//! `lever run`: replays events through a policy set, writing evidence before printing.
//!
//! Two passes over the input: the first computes every record and refuses the whole
//! replay, writing nothing, if it would say something different from the store about an
//! existing (run, seq); the second writes each batch of records durably (fsync) and only
//! then prints that batch's decisions. Replaying the same input into the same store adds
//! nothing and prints the same decisions.

use crate::cli::table::{Printer, RunFormat};
use crate::cli::{DiagFormat, load_and_check};
use crate::compile::load::{self, LoadOptions};
use crate::compile::{self, artifact::Artifact};
use crate::evidence::durable::{Durable, WriteError};
use crate::evidence::{EvidenceStore, Sealed, describe};
use crate::runtime::replay::Replay;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Lines per batch of the dry pass's comparison with the store.
const BATCH_LINES: usize = 1024;

/// Loads the artifact a command names: an artifact file (checked whole: hash, sources,
/// not empty), or sources compiled in memory.
pub fn artifact_for(paths: &[PathBuf], options: LoadOptions) -> Result<Artifact, ExitCode> {
    if let [single] = paths
        && load::is_artifact_path(single)
    {
        return load::load_file(single, options).map_err(|e| {
            eprintln!("error: {}: {e}", single.display());
            ExitCode::from(1)
        });
    }
    if options.trust.is_some() {
        eprintln!("error: {}", load::SOURCES_UNSIGNED);
        return Err(ExitCode::from(1));
    }
    let (checked, files) = load_and_check(paths, DiagFormat::Human)?;
    let stored = compile::artifact::stored_paths(&files);
    let artifact = compile::build(&checked, &stored).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(1)
    })?;
    if artifact.body.program.policies.is_empty() && !options.allow_empty {
        eprintln!("error: {}", load::LoadError::Empty);
        return Err(ExitCode::from(1));
    }
    Ok(artifact)
}

/// What an in-memory replay of the events needs (`explain`, `bench`): the artifact, the
/// events' bytes, and the directory deploys name their artifacts from.
pub(crate) struct ReplayInputs {
    pub artifact: std::sync::Arc<Artifact>,
    pub bytes: Vec<u8>,
    pub base: PathBuf,
}

pub(crate) fn replay_inputs(source: &[PathBuf], events: &str) -> Result<ReplayInputs, ExitCode> {
    let artifact = std::sync::Arc::new(artifact_for(source, LoadOptions::default())?);
    let (bytes, base) = read_events(events)?;
    Ok(ReplayInputs {
        artifact,
        bytes,
        base,
    })
}

pub(crate) fn read_events(events: &str) -> Result<(Vec<u8>, PathBuf), ExitCode> {
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

/// How `lever run` evaluates and writes its evidence.
pub(crate) struct RunOptions<'a> {
    pub url: &'a str,
    /// Input lines per group commit.
    pub group: usize,
    /// How long to wait for an unavailable store before giving up.
    pub store_wait: std::time::Duration,
    /// The engine that evaluates the bytecode.
    pub engine: crate::runtime::EngineKind,
    /// What an artifact must be to be loaded (deployed ones included).
    pub load: LoadOptions,
    /// The longest event line read.
    pub max_line_bytes: usize,
    /// How decisions are printed.
    pub format: RunFormat,
    /// Judge without writing evidence (no store is opened).
    pub dry_run: bool,
}

/// Runs `lever run` as its arguments say.
pub(crate) fn run_args(args: crate::cli::args::RunArgs) -> ExitCode {
    let format = args.format.unwrap_or(if std::io::stdout().is_terminal() {
        RunFormat::Table
    } else {
        RunFormat::Json
    });
    let trust = match crate::cli::trust_of(&args.trust) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let options = RunOptions {
        url: &args.evidence,
        group: args.group_commit as usize,
        store_wait: std::time::Duration::from_secs(args.store_wait),
        engine: args.engine.into(),
        load: LoadOptions {
            allow_empty: args.allow_empty,
            trust,
        },
        max_line_bytes: args.max_line_bytes,
        format,
        dry_run: args.dry_run,
    };
    run(&args.source, &args.events, &options)
}

/// Runs `lever run`.
pub(crate) fn run(paths: &[PathBuf], events: &str, writing: &RunOptions<'_>) -> ExitCode {
    match replay(paths, events, writing) {
        Ok(code) | Err(code) => code,
    }
}

fn replay(paths: &[PathBuf], events: &str, writing: &RunOptions<'_>) -> Result<ExitCode, ExitCode> {
    let group = writing.group.max(1);
    let artifact = Arc::new(artifact_for(paths, writing.load)?);
    let (text, base) = read_events(events)?;
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .collect();
    // One group commit waits in the queue at most: `lever run` waits for the store.
    let mut store = match writing.dry_run {
        true => None,
        false => Some(Durable::open(writing.url, usize::MAX, None).map_err(|e| io(e.to_string()))?),
    };
    if let Some(store) = &mut store {
        match store.store() {
            Some(s) => check_against_store(&artifact, &base, &lines, s, writing)?,
            None => return Err(io("the evidence store closed".into())),
        }
    }
    let mut replay = new_replay(&artifact, &base, writing)?;
    let mut out = Batch {
        records: Vec::new(),
        decisions: Vec::new(),
        printer: Printer::new(writing.format, &artifact),
    };
    let mut rejected = false;
    let progress = std::io::stderr().is_terminal() && lines.len() > 200_000;
    for (i, line) in lines.iter().enumerate() {
        let Some(result) = replay.line_bytes(i as u64 + 1, line) else {
            continue;
        };
        rejected |= result.rejected;
        if result.decision.event == Some("deploy")
            && let Some(engine) = replay.current_engine()
        {
            out.printer.learn(engine.artifact());
        }
        out.decisions.push(result.decision);
        out.records
            .extend(result.records.into_iter().map(Sealed::new));
        if (i + 1) % group == 0 {
            out.commit(store.as_mut(), writing.store_wait)?;
            if progress && (i + 1) % 100_000 < group {
                eprint!("\rlever: {} of {} lines", i + 1, lines.len());
            }
        }
    }
    out.commit(store.as_mut(), writing.store_wait)?;
    if progress {
        eprintln!("\rlever: {} of {} lines", lines.len(), lines.len());
    }
    let url = (!writing.dry_run).then_some(writing.url);
    eprintln!("lever: {}", out.printer.summary(url));
    Ok(ExitCode::from(if rejected { 1 } else { 0 }))
}

/// Records and decisions judged and not yet written and printed.
struct Batch {
    records: Vec<Sealed>,
    decisions: Vec<crate::runtime::decision::Decision>,
    printer: Printer,
}

impl Batch {
    /// Writes the batch durably (unless there is no store: `--dry-run`), then prints its
    /// decisions. While the store is unavailable the batch waits (retrying with backoff)
    /// up to `wait`; then the command exits 2 naming the records it could not write.
    /// Nothing is printed that is not durable.
    fn commit(
        &mut self,
        store: Option<&mut Durable>,
        wait: std::time::Duration,
    ) -> Result<(), ExitCode> {
        if let Some(store) = store {
            write_durably(store, &mut self.records, self.decisions.len(), wait)?;
        }
        self.records.clear();
        let mut out = std::io::stdout().lock();
        for d in self.decisions.drain(..) {
            if writeln!(out, "{}", self.printer.line(&d)).is_err() {
                return Err(ExitCode::from(2));
            }
        }
        out.flush().map_err(|_| ExitCode::from(2))
    }
}

fn write_durably(
    store: &mut Durable,
    records: &mut Vec<Sealed>,
    decisions: usize,
    wait: std::time::Duration,
) -> Result<(), ExitCode> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(100);
    let mut result = store.append(std::mem::take(records));
    let mut warned = false;
    while let Err(WriteError::Unavailable { error, .. }) = &result {
        if started.elapsed() >= wait {
            break;
        }
        if !warned {
            eprintln!("lever: evidence store unavailable ({error}); waiting up to {wait:?} for it");
            warned = true;
        }
        std::thread::sleep(pause.min(wait.saturating_sub(started.elapsed())));
        pause = (pause * 2).min(std::time::Duration::from_secs(1));
        result = store.flush();
    }
    if let Err(e) = result {
        eprintln!(
            "error: {e}; not written: {}; the {decisions} decisions of this batch were not printed. Replay the same events once the store is back: what was stored is skipped.",
            describe(store.queued()),
        );
        return Err(ExitCode::from(2));
    }
    Ok(())
}

/// A replay of `artifact` on engines of `kind`.
fn new_replay(
    artifact: &Arc<Artifact>,
    base: &Path,
    writing: &RunOptions<'_>,
) -> Result<Replay, ExitCode> {
    let mut replay = Replay::with_engine(
        Arc::clone(artifact),
        base.to_path_buf(),
        load::deploy_loader(writing.load),
        writing.engine,
    )
    .map_err(|e| {
        eprintln!("error: --engine: {e}");
        ExitCode::from(2)
    })?;
    replay.set_line_limit(writing.max_line_bytes);
    Ok(replay)
}

/// The dry pass: refuses the replay if any record contradicts the store.
fn check_against_store(
    artifact: &Arc<Artifact>,
    base: &Path,
    lines: &[&[u8]],
    store: &mut dyn EvidenceStore,
    writing: &RunOptions<'_>,
) -> Result<(), ExitCode> {
    let mut dry = new_replay(artifact, base, writing)?;
    let mut batch: Vec<Sealed> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(result) = dry.line_bytes(i as u64 + 1, line) {
            batch.extend(
                result
                    .records
                    .into_iter()
                    .filter(|r| r.key().is_some())
                    .map(Sealed::new),
            );
        }
        if (i + 1) % BATCH_LINES == 0 || i + 1 == lines.len() {
            let conflict = store
                .first_conflict(&batch)
                .map_err(|e| io(e.to_string()))?;
            if let Some(key) = conflict {
                eprintln!(
                    "error: replay refused: run `{}` differs from its stored evidence at seq {} ({} record); nothing was written\n\
                     help: the store at {} holds evidence of other events for this run. Write to another store \
                     (`--evidence file:./other-evidence`), remove this one if it holds nothing you need, or judge \
                     without writing (`--dry-run`)",
                    key.run_id,
                    key.seq,
                    key.kind.name(),
                    writing.url
                );
                return Err(ExitCode::from(1));
            }
            batch.clear();
        }
    }
    Ok(())
}
