//! The command line: argument parsing (clap), rendering and exit codes.
//!
//! Exit codes for every command: 0 ok (warnings allowed), 1 a domain failure (errors in
//! the policies), 2 usage or I/O. Diagnostics go to stderr for people (ariadne) or to
//! stdout as JSON for machines (`--format json`).

use crate::check;
use crate::diag::{self, JsonDiagnostic, Severity};
use crate::source;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "lever",
    version,
    about = "Policy compiler and runtime for LLM agent runs"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Readable diagnostics on stderr.
    Human,
    /// A JSON array of diagnostics on stdout.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse, resolve, type-check and analyze a policy set.
    #[command(
        after_help = "Examples:\n  lever check examples\n  lever check examples stdlib --format json\n\nExit: 0 clean or warnings only, 1 errors, 2 usage or I/O."
    )]
    Check {
        /// `.policy` files and directories (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Check { paths, format } => run_check(&paths, format),
    }
}

fn run_check(paths: &[PathBuf], format: Format) -> ExitCode {
    let sources = match source::expand_paths(paths).and_then(|files| source::load_files(&files)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let file_count = sources.files.len();
    let checked = check::check(sources);
    report(&checked, format, file_count);
    ExitCode::from(if checked.has_errors() { 1 } else { 0 })
}

/// Prints a check's diagnostics in the chosen format.
fn report(checked: &check::Checked, format: Format, file_count: usize) {
    match format {
        Format::Json => {
            let list: Vec<JsonDiagnostic> = checked
                .diagnostics
                .iter()
                .map(|d| JsonDiagnostic::from_diagnostic(d, &checked.sources))
                .collect();
            let text = serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into());
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        }
        Format::Human => {
            let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let text = diag::render(&checked.diagnostics, &checked.sources, color);
            let errors = checked
                .diagnostics
                .iter()
                .filter(|d| d.severity() == Severity::Error)
                .count();
            let warnings = checked.diagnostics.len() - errors;
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "{text}");
            let _ = writeln!(
                err,
                "checked {file_count} file{}: {errors} error{}, {warnings} warning{}",
                plural(file_count),
                plural(errors),
                plural(warnings)
            );
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
