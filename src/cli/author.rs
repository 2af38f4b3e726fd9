//! `lever fmt`, `lever test`, `lever diff` and `lever explain`: what authors and reviewers run.

use crate::cli::run::{ReplayInputs, replay_inputs};
use crate::cli::{Format, load_artifact};
use crate::compile::load::{self, LoadOptions};
use crate::runtime::EngineKind;
use crate::runtime::replay::Replay;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// `lever diff OLD NEW`: exit 0 without policy changes, 1 with.
pub(crate) fn diff(old: &Path, new: &Path, format: Format) -> ExitCode {
    let load = |path: &Path| load_artifact(path).map_err(|_| ExitCode::from(2));
    let (a, b) = match (load(old), load(new)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let diff = crate::author::diff::diff(&a, &b);
    match format {
        Format::Human => print!("{}", crate::author::diff::text(&diff)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&diff).unwrap_or_default()
        ),
    }
    ExitCode::from(if diff.is_empty() { 0 } else { 1 })
}

/// `lever explain`: replays `events` in memory up to the run's event `seq` and explains
/// its decision.
pub(crate) fn explain(
    source: &[PathBuf],
    events: &str,
    run_id: &str,
    seq: u64,
    format: Format,
) -> ExitCode {
    let ReplayInputs {
        artifact,
        bytes,
        base,
    } = match replay_inputs(source, events) {
        Ok(inputs) => inputs,
        Err(code) => return code,
    };
    let mut replay = match Replay::with_engine(
        artifact,
        base,
        load::deploy_loader(LoadOptions::default()),
        EngineKind::Interp,
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let mut last_seq = None;
    // What each run added to each budget counter so far: what spent it.
    let mut spent = crate::author::explain::Spent::new();
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let Some(result) = replay.line_bytes(n as u64 + 1, line) else {
            continue;
        };
        let d = result.decision;
        for c in &d.budgets {
            let by = spent.entry(c.key.id.to_string()).or_default();
            let run = by
                .entry(d.run_id.as_deref().unwrap_or_default().to_string())
                .or_insert(0);
            *run = run.saturating_add(c.added);
        }
        if d.run_id.as_deref() != Some(run_id)
            || d.action == crate::runtime::decision::Action::Rejected
        {
            continue;
        }
        last_seq = d.seq;
        if d.seq != Some(seq) {
            continue;
        }
        let Some((engine, run)) = replay.run(run_id) else {
            break;
        };
        let explained =
            crate::author::explain::explain(engine, run, &d, (d.event == Some("step"), &spent));
        match format {
            Format::Human => print!("{}", crate::author::explain::text(&explained)),
            Format::Json => println!(
                "{}",
                serde_json::to_string_pretty(&explained).unwrap_or_default()
            ),
        }
        return ExitCode::SUCCESS;
    }
    match last_seq {
        None => eprintln!("error: {events}: run `{run_id}` has no accepted event"),
        Some(last) => eprintln!(
            "error: {events}: run `{run_id}` has no event with seq {seq} (its events run from seq 1 to {last})"
        ),
    }
    ExitCode::from(1)
}

/// `lever test`: checks and builds the set, then runs every test of its files.
pub(crate) fn test(paths: &[PathBuf], format: Format, coverage: bool) -> ExitCode {
    let (checked, files) = match crate::cli::load_and_check(paths, crate::cli::DiagFormat::Human) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let stored = crate::compile::artifact::stored_paths(&files);
    let artifact = match crate::compile::build(&checked, &stored) {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let sources = &checked.sources;
    // The tests `lever check` read from the set's files.
    let tests = &checked.tests;
    let line_of = |span: crate::base::source::Span| {
        sources
            .get(span.file)
            .map_or(0, |f| f.line_col(span.start as usize).0)
    };
    let outcomes: Vec<_> = tests
        .iter()
        .map(|t| crate::author::testing::run::run(&artifact, t, &line_of))
        .collect();
    let cover = coverage
        .then(|| crate::author::testing::report::coverage(&artifact.body.program, &outcomes));
    match format {
        Format::Human => print!(
            "{}",
            crate::author::testing::report::text(&outcomes, cover.as_ref())
        ),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&crate::author::testing::report::json(
                &outcomes,
                cover.as_ref()
            ))
            .unwrap_or_default()
        ),
    }
    ExitCode::from(if outcomes.iter().all(|o| o.passed()) {
        0
    } else {
        1
    })
}

/// `lever fmt`: formats files in place (each written whole, by rename), or with `check`
/// lists those that would change. A file that does not parse is reported and untouched.
pub(crate) fn fmt(paths: &[PathBuf], check: bool) -> ExitCode {
    use std::io::{Read, Write};
    if let [single] = paths
        && single.as_os_str() == "-"
    {
        let mut text = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut text) {
            eprintln!("error: standard input: {e}");
            return ExitCode::from(2);
        }
        return match crate::author::fmt::format(&text) {
            Ok(out) => {
                let _ = std::io::stdout().write_all(out.as_bytes());
                ExitCode::from(if check && out != text { 1 } else { 0 })
            }
            Err(diags) => {
                report_syntax("<stdin>", &text, &diags);
                ExitCode::from(1)
            }
        };
    }
    let files = match crate::base::source::expand_paths(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for file in files {
        let shown = file.display().to_string();
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {shown}: {e}");
                return ExitCode::from(2);
            }
        };
        let out = match crate::author::fmt::format(&text) {
            Ok(out) => out,
            Err(diags) => {
                report_syntax(&shown, &text, &diags);
                failed = true;
                continue;
            }
        };
        if out == text {
            continue;
        }
        if check {
            println!("would reformat {shown}");
            failed = true;
            continue;
        }
        let tmp = file.with_extension("policy.fmt-tmp");
        let written = std::fs::write(&tmp, &out).and_then(|()| std::fs::rename(&tmp, &file));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            eprintln!("error: {shown}: {e}");
            return ExitCode::from(2);
        }
        println!("formatted {shown}");
    }
    ExitCode::from(if failed { 1 } else { 0 })
}

fn report_syntax(path: &str, text: &str, diags: &[crate::base::diag::Diagnostic]) {
    let sources = crate::base::source::SourceSet::from_text(path, text);
    eprint!("{}", crate::base::diag::render(diags, &sources, false));
    eprintln!("error: {path} does not parse; it was left as it is");
}
