//! `lever check`, `lever build` and `lever inspect`: diagnostics rendered for people or
//! machines, artifacts written atomically, and what an artifact holds.

use super::{DiagFormat, EngineArg, Format, io_error, load_and_check};
use crate::base::diag::{self, JsonDiagnostic, Severity};
use crate::base::source;
use crate::check;
use crate::compile;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

pub(super) fn run_check(
    paths: &[PathBuf],
    format: DiagFormat,
    against: Option<&std::path::Path>,
) -> ExitCode {
    let found = match source::expand_paths(paths) {
        Ok(found) => found,
        Err(e) => return io_error(e),
    };
    let files = match source::load_files(&found) {
        Ok(s) => s,
        Err(e) => return io_error(e),
    };
    let file_count = files.files.len();
    let old = match against {
        None => None,
        Some(path) => {
            match compile::load::load_file(
                path,
                compile::load::LoadOptions {
                    allow_empty: true,
                    trust: None,
                },
            ) {
                Ok(a) => Some(a),
                Err(e) => return io_error(format!("--against {}: {e}", path.display())),
            }
        }
    };
    let mut checked = check::check(files);
    if let Some(old) = &old
        && let Ok(new) = compile::build(&checked, &compile::artifact::stored_paths(&found))
    {
        checked
            .diagnostics
            .extend(crate::author::versions::unbumped(&checked, &new, old));
    }
    report(&checked, format, file_count);
    ExitCode::from(if checked.has_errors() { 1 } else { 0 })
}

pub(super) fn run_build(
    paths: &[PathBuf],
    output: &std::path::Path,
    format: DiagFormat,
    sign: Option<&std::path::Path>,
) -> ExitCode {
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
    if let Some(key) = sign {
        match super::sign::sign_built(key, output, &artifact.id) {
            Ok(id) => eprintln!("lever: signed by {id}: {}.sig", output.display()),
            Err(e) => return io_error(e),
        }
    }
    println!("{}", artifact.id);
    ExitCode::SUCCESS
}

/// Writes a file so that readers see the old file or the whole new one, never a part.
pub(crate) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
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
pub(crate) fn load_artifact(
    path: &std::path::Path,
) -> Result<compile::artifact::Artifact, ExitCode> {
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

/// `lever inspect FILE --source PATH`: one embedded source's exact text.
pub(super) fn inspect_source(file: &std::path::Path, path: &str) -> ExitCode {
    let artifact = match load_artifact(file) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match artifact.body.sources.iter().find(|s| s.path == path) {
        Some(s) => {
            print!("{}", s.text);
            ExitCode::SUCCESS
        }
        None => {
            let held: Vec<&str> = artifact
                .body
                .sources
                .iter()
                .map(|s| s.path.as_str())
                .collect();
            eprintln!(
                "error: {} holds no source {path:?}; it holds {}",
                file.display(),
                held.join(", ")
            );
            ExitCode::from(1)
        }
    }
}

pub(super) fn run_inspect(
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

pub(super) fn jit_text(s: &crate::jit::Stats) -> String {
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

pub(super) fn jit_json(s: &crate::jit::Stats) -> serde_json::Value {
    serde_json::json!({
        "code_blocks": s.code_blocks,
        "native": s.native,
        "compile_micros": u64::try_from(s.compile_micros).unwrap_or(u64::MAX),
        "policies": s.policies.iter().map(|(p, m, b)| serde_json::json!({"policy": p, "monitors": m, "native_blocks": b})).collect::<Vec<_>>(),
    })
}

/// Prints a check's diagnostics in the chosen format.
pub(super) fn report(checked: &check::Checked, format: DiagFormat, file_count: usize) {
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

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
