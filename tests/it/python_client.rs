//! The Python client (`clients/python`): its own pytest suite against this build's `lever
//! serve` (file store and PostgreSQL, the LangChain handler and the OpenAI Agents hooks),
//! and its lints (ruff, mypy --strict). Needs the package and its test extras:
//! `pip install -e './clients/python[test]'` (`.ci/run` installs them).

use std::process::Command;

fn client_dir() -> std::path::PathBuf {
    super::root().join("clients/python")
}

/// `python3 -m MODULE ARGS` in the client's directory; panics with its output on failure.
fn python(module: &str, args: &[&str]) {
    let out = Command::new("python3")
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
        !said.contains(&format!("No module named {module}")),
        "{module} is not installed: run `pip install -e './clients/python[test]'`"
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
