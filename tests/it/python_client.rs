//! The Python client (`clients/python`): its own pytest suite against this build's `lever
//! serve` (file store and PostgreSQL, the LangChain handler and the OpenAI Agents hooks),
//! and its lints (ruff, mypy --strict). They run in a virtual environment of their own
//! under `target/tmp`, made at the first run with the client and its test extras
//! (`pip install -e './clients/python[test]'`, from PyPI), so that `cargo test` alone runs
//! them on a fresh machine.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

fn client_dir() -> PathBuf {
    super::root().join("clients/python")
}

/// What the tests import: a virtual environment lacking one is made again.
const IMPORTS: &str = "import lever_client, pytest, mypy, langchain_core, agents, anthropic";

/// The virtual environment's Python, made (once per test binary) if it is not usable.
fn venv_python() -> &'static PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("python-client-venv");
        let python = dir.join("bin/python");
        let usable = Command::new(&python)
            .args(["-c", IMPORTS])
            .output()
            .is_ok_and(|o| o.status.success());
        if !usable {
            let run = |cmd: &mut Command, what: &str| {
                let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(
                    out.status.success(),
                    "{what} failed (the Python client's tests need python3 with venv, and PyPI):\n{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            run(
                Command::new("python3").args(["-m", "venv", "--clear"]).arg(&dir),
                "python3 -m venv",
            );
            run(
                Command::new(&python)
                    .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e"])
                    .arg(format!("{}[test]", client_dir().display())),
                "pip install -e './clients/python[test]'",
            );
        }
        python
    })
}

/// `python -m MODULE ARGS` in the client's directory, in the tests' virtual environment;
/// panics with its output on failure.
fn python(module: &str, args: &[&str]) {
    let out = Command::new(venv_python())
        .args(["-m", module])
        .args(args)
        .current_dir(client_dir())
        .env("LEVER_BIN", env!("CARGO_BIN_EXE_lever"))
        .output()
        .unwrap_or_else(|e| panic!("python3 cannot be run: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "python3 -m {module} {args:?} failed:\n{said}"
    );
}

#[test]
fn the_python_client_passes_its_tests_against_a_real_server() {
    python("pytest", &["-q", "-p", "no:cacheprovider"]);
}

#[test]
fn the_python_client_is_formatted_linted_and_typed() {
    python("ruff", &["format", "--check", "--no-cache", "."]);
    python("ruff", &["check", "--no-cache", "."]);
    python("mypy", &[]);
}
