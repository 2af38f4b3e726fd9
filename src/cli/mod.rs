//! The command line: argument parsing (clap), rendering and exit codes.
//!
//! Exit codes for every command: 0 ok (warnings allowed), 1 a domain failure (errors in
//! the policies), 2 usage or I/O. Diagnostics go to stderr for people (ariadne) or to
//! stdout as JSON for machines (`--format json`).

mod args;
mod author;
mod bench;
mod build;
mod checkpoint;
mod evidence;
mod lsp;
pub mod reference;
pub(crate) mod run;
mod sign;
pub(crate) mod table;
pub use sign::{serve_artifact, trust_of};

use crate::base::source;
use crate::check;
pub use args::{Cli, Command, DiagFormat, EngineArg, EvidenceCommand, Format, ServeArgs};
pub(crate) use build::load_artifact;
use build::{report, run_build, run_check, run_inspect};
use clap::Parser;
pub use run::artifact_for;
use std::path::PathBuf;
use std::process::ExitCode;

/// Runs the command line and returns the process exit code; `lever serve` is handed to
/// `serve` (the binary gives the server's).
pub fn main(serve: fn(ServeArgs) -> ExitCode) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Check {
            paths,
            format,
            against,
        } => run_check(&paths, format, against.as_deref()),
        Command::Build {
            paths,
            output,
            format,
            sign,
        } => run_build(&paths, &output, format, sign.as_deref()),
        Command::Inspect {
            file,
            format,
            engine,
            verify,
            source,
        } => match source {
            Some(path) => build::inspect_source(&file, &path),
            None => run_inspect(&file, format, engine, verify),
        },
        Command::Lsp => match crate::cli::lsp::serve() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: lever lsp: {e}");
                ExitCode::from(2)
            }
        },
        Command::Fmt { paths, check } => crate::cli::author::fmt(&paths, check),
        Command::Test {
            paths,
            format,
            coverage,
        } => crate::cli::author::test(&paths, format, coverage),
        Command::Diff { old, new, format } => crate::cli::author::diff(&old, &new, format),
        Command::Explain {
            source,
            events,
            run,
            step,
            format,
        } => crate::cli::author::explain(&source, &events, &run, step, format),
        Command::Bench {
            source,
            events,
            passes,
            format,
        } => crate::cli::bench::bench(&source, &events, passes, format),
        Command::Run(args) => crate::cli::run::run_args(args),
        Command::Keygen { out } => crate::cli::sign::keygen(&out),
        Command::VerifyArtifact {
            artifact,
            trust,
            signature,
        } => crate::cli::sign::verify_artifact(&artifact, &trust, signature.as_deref()),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "lever", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Evidence { command } => crate::cli::evidence::run(command),
        Command::Serve(args) => serve(args),
    }
}

/// Reads and checks a policy set, reporting its diagnostics. `Err` is the exit code.
pub(crate) fn load_and_check(
    paths: &[PathBuf],
    format: DiagFormat,
) -> Result<(check::Checked, Vec<PathBuf>), ExitCode> {
    let files = source::expand_paths(paths).map_err(io_error)?;
    let sources = source::load_files(&files).map_err(io_error)?;
    let file_count = sources.files.len();
    let checked = check::check(sources);
    if checked.has_errors() || !checked.diagnostics.is_empty() || format != DiagFormat::Human {
        report(&checked, format, file_count);
    }
    if checked.has_errors() {
        return Err(ExitCode::from(1));
    }
    Ok((checked, files))
}

pub fn io_error(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}
