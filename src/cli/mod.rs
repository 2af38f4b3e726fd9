//! The command line: argument parsing (clap), rendering and exit codes.
//!
//! Exit codes for every command: 0 ok (warnings allowed), 1 a domain failure (errors in
//! the policies), 2 usage or I/O. Diagnostics go to stderr for people (ariadne) or to
//! stdout as JSON for machines (`--format json`).

mod author;
mod evidence;
mod lsp;
pub mod reference;
pub(crate) mod run;

use crate::base::diag::{self, JsonDiagnostic, Severity};
use crate::base::source;
use crate::check;
use crate::compile;
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

/// `--format` of the commands that report diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiagFormat {
    /// Readable diagnostics on stderr.
    Human,
    /// A JSON array of diagnostics on stdout.
    Json,
    /// A SARIF 2.1.0 log on stdout, for code-scanning tools.
    Sarif,
}

/// `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    Interp,
    Jit,
    Auto,
}

impl From<EngineArg> for crate::runtime::EngineKind {
    fn from(e: EngineArg) -> Self {
        match e {
            EngineArg::Interp => crate::runtime::EngineKind::Interp,
            EngineArg::Jit => crate::runtime::EngineKind::Jit,
            EngineArg::Auto => crate::runtime::EngineKind::Auto,
        }
    }
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
        #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
        format: DiagFormat,
    },
    /// Compile a policy set to one content-hashed artifact; prints its id.
    #[command(
        after_help = "Example:\n  lever build examples -o policies.lvc\n\nPrints `blake3:<hex>`. Exit: 0 built, 1 errors in the policies, 2 usage or I/O."
    )]
    Build {
        /// `.policy` files and directories (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The artifact file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Format of diagnostics.
        #[arg(long, value_enum, default_value_t = DiagFormat::Human)]
        format: DiagFormat,
    },
    /// Replay events through a policy set: one decision per line, evidence stored first.
    #[command(
        after_help = "Examples:\n  lever run examples --events examples/events/support.jsonl\n  lever build examples -o p.lvc && lever run p.lvc --events - < events.jsonl\n\nExit: 0 replayed (refused steps included), 1 a line was rejected, the policies have errors\nor the replay contradicts stored evidence, 2 usage or I/O."
    )]
    Run {
        /// An artifact (`.lvc`), or `.policy` files and directories to compile.
        #[arg(required = true)]
        source: Vec<PathBuf>,
        /// The events, one JSON object a line; `-` reads standard input.
        #[arg(long)]
        events: String,
        /// Where evidence is written: `file:DIR` or `postgres://...` (`?schema=NAME`).
        #[arg(long, default_value = "file:./lever-evidence")]
        evidence: String,
        /// Input lines per group commit: their records are written and made durable
        /// together, then their decisions printed.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
        group_commit: u32,
        /// Seconds to wait for an unavailable evidence store before exiting 2.
        #[arg(long, default_value_t = 30)]
        store_wait: u64,
        /// The engine: the portable bytecode interpreter, the Cranelift JIT, or the JIT
        /// where the host supports it.
        #[arg(long, value_enum, default_value_t = EngineArg::Interp)]
        engine: EngineArg,
        /// Accept a policy set (or an artifact, deployed ones included) with no policy,
        /// which governs nothing.
        #[arg(long)]
        allow_empty: bool,
        /// The longest event line read, in bytes; a longer one is rejected unread.
        #[arg(long, default_value_t = 1 << 20)]
        max_line_bytes: usize,
    },
    /// Serve the runtime over HTTP: runs, steps and their decisions, evidence durable first.
    #[command(
        after_help = "Example:\n  lever serve --artifact policies.lvc --evidence postgres://localhost/lever --listen 0.0.0.0:8080\n\nStops on SIGTERM or Ctrl-C after the requests in flight have answered. See docs/server.md.\nExit: 0 stopped, 1 the artifact does not verify or the policies have errors, 2 usage or I/O."
    )]
    Serve {
        /// The artifact (`.lvc`), or `.policy` files and directories to compile.
        #[arg(long, required = true, num_args = 1..)]
        artifact: Vec<PathBuf>,
        /// Where evidence is written: `file:DIR` or `postgres://...`.
        #[arg(long, default_value = "file:./lever-evidence")]
        evidence: String,
        /// The address to listen on (`127.0.0.1:0` picks a free port, printed on stderr).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The engine that evaluates the bytecode.
        #[arg(long, value_enum, default_value_t = EngineArg::Interp)]
        engine: EngineArg,
        /// TOML config: `[[tokens]]` with `token` or `token_env`, `actor`, `roles`, `admin`,
        /// and `[server]` settings (docs/security.md). Without it, override, approval and
        /// read requests are refused (401).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Accept an artifact (at start or deployed) with no policy, which governs nothing.
        #[arg(long)]
        allow_empty: bool,
    },
    /// Audit an evidence store: verify its hash chains, take a digest, show a run.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// Show an artifact: header, policies with their hashes, and disassembly.
    #[command(
        after_help = "Example:\n  lever inspect policies.lvc --format json\n\nExit: 0 verified, 1 the hash does not verify, 2 usage or I/O."
    )]
    Inspect {
        /// The artifact file.
        file: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// With `jit`, also compile the program to native code and report what was compiled
        /// (every code block, or an error) and how long it took, per policy.
        #[arg(long, value_enum, default_value_t = EngineArg::Interp)]
        engine: EngineArg,
        /// Also recompile the embedded sources and require the artifact's own program and
        /// policy hashes (as `lever run` and `lever serve` do on load); exit 1 naming the
        /// first policy that differs.
        #[arg(long)]
        verify: bool,
    },
    /// What changed between two artifacts: policies added and removed, limits raised or
    /// lowered, thresholds and actions, scopes widened or narrowed, channels.
    #[command(
        after_help = "Example:\n  lever diff main.lvc pr.lvc\n\nExit: 0 no policy changes, 1 changes listed, 2 usage, I/O, or an artifact that does not verify."
    )]
    Diff {
        /// The artifact before.
        old: PathBuf,
        /// The artifact after.
        new: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Lay out `.policy` files canonically, in place (comments kept, meaning unchanged).
    #[command(
        after_help = "Examples:\n  lever fmt policies\n  lever fmt --check policies     # in CI\n  lever fmt - < a.policy         # standard input to standard output\n\nExit: 0 formatted (with --check: nothing to change), 1 a file would change (--check) or does\nnot parse (left untouched), 2 usage or I/O."
    )]
    Fmt {
        /// `.policy` files and directories (searched recursively), or `-` for standard input.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Change nothing; list the files that are not formatted and exit 1 if any.
        #[arg(long)]
        check: bool,
    },
    /// A language server over stdio: diagnostics as you type, hover, go to definition,
    /// completion and formatting (docs/lsp.md).
    Lsp,
    /// Run the policy tests (`test "name" { ... }`) of a policy set.
    #[command(
        after_help = "Example:\n  lever test examples --coverage\n\nExit: 0 every test passed, 1 a test failed or the policies have errors, 2 usage or I/O."
    )]
    Test {
        /// `.policy` files and directories (searched recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// Also report which thresholds and override rules the tests reached.
        #[arg(long)]
        coverage: bool,
    },
    /// Why a decision came out as it did: the policies that applied and why, the
    /// arbitration, each limit's value and zone, the overrides in force.
    #[command(
        after_help = "Example:\n  lever explain examples --events examples/events/support.jsonl --run support-42 --step 13\n\nThe events are replayed in memory; no evidence is written.\nExit: 0 explained, 1 no such event (or the policies have errors), 2 usage or I/O."
    )]
    Explain {
        /// An artifact (`.lvc`), or `.policy` files and directories to compile.
        #[arg(required = true)]
        source: Vec<PathBuf>,
        /// The events, one JSON object a line; `-` reads standard input.
        #[arg(long)]
        events: String,
        /// The run.
        #[arg(long)]
        run: String,
        /// The event's `seq` in the run, as its decision shows it (1 is the run start).
        #[arg(long)]
        step: u64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Recompute every hash chain (or one run's); with `--digest`, also check that every
    /// record the digest covered is still stored unchanged.
    #[command(
        after_help = "Examples:\n  lever evidence verify\n  lever evidence verify --run r1 --digest blake3:...\n\nExit: 0 verified, 1 a record is altered, deleted, reordered or inserted (the first is named),\n2 usage or I/O."
    )]
    Verify {
        /// Only this run's chain.
        #[arg(long)]
        run: Option<String>,
        /// A digest printed earlier by `lever evidence digest`.
        #[arg(long)]
        digest: Option<String>,
        /// The store: `file:DIR` or `postgres://...`.
        #[arg(long, default_value = "file:./lever-evidence")]
        evidence: String,
    },
    /// Verify the store, record a checkpoint of every chain head, print its digest.
    #[command(
        after_help = "Example:\n  lever evidence digest --evidence postgres://localhost/lever\n\nPrints `blake3:<hex>`. Exit: 0 taken, 1 the store does not verify, 2 usage or I/O."
    )]
    Digest {
        /// The store: `file:DIR` or `postgres://...`.
        #[arg(long, default_value = "file:./lever-evidence")]
        evidence: String,
    },
    /// Create or upgrade a PostgreSQL store, as the schema's owner: the versioned
    /// migrations, and a writer role (INSERT and SELECT: what `lever serve` and `lever run`
    /// connect as) and an auditor role (SELECT) with their grants. Nothing else creates or
    /// alters the store.
    #[command(
        after_help = "Example:\n  lever evidence migrate --evidence 'postgres://owner@db/lever?schema=lever'\n  # then: lever serve --evidence 'postgres://lever_writer@db/lever?schema=lever' ...\n\nExit: 0 migrated (or up to date), 2 the database refused, or usage or I/O."
    )]
    Migrate {
        /// The store: `postgres://...` (`?schema=NAME`, default `lever`).
        #[arg(long)]
        evidence: String,
        /// The writer role to create or grant to (default `<schema>_writer`).
        #[arg(long)]
        writer_role: Option<String>,
        /// The auditor role to create or grant to (default `<schema>_auditor`).
        #[arg(long)]
        auditor_role: Option<String>,
        /// Apply the migrations only: create and grant no role.
        #[arg(long)]
        no_roles: bool,
    },
    /// Print a run's evidence: one line per record, or the stored records as JSON lines.
    #[command(
        after_help = "Example:\n  lever evidence show --run r1 --format json\n\nExit: 0 shown, 1 no such run, 2 usage or I/O."
    )]
    Show {
        #[arg(long)]
        run: String,
        /// `human` (one line per record) or `json` (the stored records, one a line).
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
        /// The store: `file:DIR` or `postgres://...`.
        #[arg(long, default_value = "file:./lever-evidence")]
        evidence: String,
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
        Command::Build {
            paths,
            output,
            format,
        } => run_build(&paths, &output, format),
        Command::Inspect {
            file,
            format,
            engine,
            verify,
        } => run_inspect(&file, format, engine, verify),
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
        Command::Run {
            source,
            events,
            evidence,
            group_commit,
            store_wait,
            engine,
            allow_empty,
            max_line_bytes,
        } => crate::cli::run::run(
            &source,
            &events,
            &crate::cli::run::RunOptions {
                url: &evidence,
                group: group_commit as usize,
                store_wait: std::time::Duration::from_secs(store_wait),
                engine: engine.into(),
                load: compile::load::LoadOptions { allow_empty },
                max_line_bytes,
            },
        ),
        Command::Evidence { command } => crate::cli::evidence::run(command),
        Command::Serve {
            artifact,
            evidence,
            listen,
            engine,
            config,
            allow_empty,
        } => {
            let config = match &config {
                None => crate::server::Config::default(),
                Some(path) => {
                    let text = match std::fs::read_to_string(path) {
                        Ok(t) => t,
                        Err(e) => return io_error(format!("{}: {e}", path.display())),
                    };
                    match crate::server::Config::from_toml(&text, &path.display().to_string()) {
                        Ok(t) => t,
                        Err(e) => {
                            eprintln!("error: {e}");
                            return ExitCode::from(2);
                        }
                    }
                }
            };
            // A single artifact file is watched: replacing it deploys it.
            let watch_path = match artifact.as_slice() {
                [one] if compile::load::is_artifact_path(one) => Some(one.clone()),
                _ => None,
            };
            let load = compile::load::LoadOptions { allow_empty };
            let artifact = match crate::cli::run::artifact_for(&artifact, load) {
                Ok(a) => std::sync::Arc::new(a),
                Err(code) => return code,
            };
            let options = crate::server::Options {
                artifact,
                evidence,
                engine: engine.into(),
                base_dir: PathBuf::from("."),
                config,
                watch: watch_path,
                load,
            };
            match crate::server::serve(options, &listen) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Reads and checks a policy set, reporting its diagnostics. `Err` is the exit code.
pub fn load_and_check(
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

fn run_check(paths: &[PathBuf], format: DiagFormat) -> ExitCode {
    let files = match source::expand_paths(paths).and_then(|files| source::load_files(&files)) {
        Ok(s) => s,
        Err(e) => return io_error(e),
    };
    let file_count = files.files.len();
    let checked = check::check(files);
    report(&checked, format, file_count);
    ExitCode::from(if checked.has_errors() { 1 } else { 0 })
}

fn run_build(paths: &[PathBuf], output: &std::path::Path, format: DiagFormat) -> ExitCode {
    let (checked, files) = match load_and_check(paths, format) {
        Ok(x) => x,
        Err(code) => return code,
    };
    let stored = compile::artifact::stored_paths(&files);
    let artifact = match compile::build(&checked, &stored) {
        Ok(a) => a,
        Err(e) => return io_error(e),
    };
    if let Err(e) = write_atomically(output, &artifact.bytes) {
        return io_error(format!("{}: {e}", output.display()));
    }
    println!("{}", artifact.id);
    ExitCode::SUCCESS
}

/// Writes a file so that readers see the old file or the whole new one, never a part.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads and verifies an artifact file.
pub fn load_artifact(path: &std::path::Path) -> Result<compile::artifact::Artifact, ExitCode> {
    let bytes = std::fs::read(path).map_err(|e| io_error(format!("{}: {e}", path.display())))?;
    if bytes.is_empty() {
        eprintln!(
            "error: {}: not a Lever artifact: the file is empty",
            path.display()
        );
        return Err(ExitCode::from(1));
    }
    compile::artifact::Artifact::from_bytes(bytes).map_err(|e| {
        eprintln!("error: {}: {e}", path.display());
        ExitCode::from(1)
    })
}

fn run_inspect(
    file: &std::path::Path,
    format: Format,
    engine: EngineArg,
    verify: bool,
) -> ExitCode {
    let artifact = match load_artifact(file) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if verify && let Err(e) = compile::load::verify_sources(&artifact) {
        eprintln!("error: {}: {e}", file.display());
        return ExitCode::from(1);
    }
    let stats = match engine {
        EngineArg::Interp => None,
        EngineArg::Jit | EngineArg::Auto => {
            let kind = engine.into();
            match crate::runtime::Engine::of_kind(std::sync::Arc::new(artifact.clone()), kind) {
                Ok(e) => e.jit_stats().cloned(),
                Err(e) => {
                    eprintln!("error: --engine jit: {e}");
                    return ExitCode::from(1);
                }
            }
        }
    };
    match format {
        Format::Human => {
            print!("{}", compile::disasm::text(&artifact));
            if let Some(s) = &stats {
                print!("{}", jit_text(s));
            }
        }
        Format::Json => {
            let mut json = compile::disasm::json(&artifact);
            if let (Some(s), Some(map)) = (&stats, json.as_object_mut()) {
                map.insert("jit".into(), jit_json(s));
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&json).unwrap_or_default()
            );
        }
    }
    ExitCode::SUCCESS
}

fn jit_text(s: &crate::jit::Stats) -> String {
    let mut out = format!(
        "\njit: {} of {} code blocks compiled to native code in {} µs\n",
        s.native, s.code_blocks, s.compile_micros
    );
    for (policy, monitors, blocks) in &s.policies {
        out.push_str(&format!(
            "  policy {policy}: {monitors} monitors, {blocks} native blocks\n"
        ));
    }
    out
}

fn jit_json(s: &crate::jit::Stats) -> serde_json::Value {
    serde_json::json!({
        "code_blocks": s.code_blocks,
        "native": s.native,
        "compile_micros": u64::try_from(s.compile_micros).unwrap_or(u64::MAX),
        "policies": s.policies.iter().map(|(p, m, b)| serde_json::json!({"policy": p, "monitors": m, "native_blocks": b})).collect::<Vec<_>>(),
    })
}

/// Prints a check's diagnostics in the chosen format.
fn report(checked: &check::Checked, format: DiagFormat, file_count: usize) {
    match format {
        DiagFormat::Sarif => {
            let log = diag::sarif(&checked.diagnostics, &checked.sources);
            let text = serde_json::to_string_pretty(&log).unwrap_or_default();
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        }
        DiagFormat::Json => {
            let list: Vec<JsonDiagnostic> = checked
                .diagnostics
                .iter()
                .map(|d| JsonDiagnostic::from_diagnostic(d, &checked.sources))
                .collect();
            let text = serde_json::to_string_pretty(&list).unwrap_or_else(|_| "[]".into());
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
        }
        DiagFormat::Human => {
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
