//! The Python client (`clients/python`): its own pytest suite against this build's `lever
//! serve` (file store and PostgreSQL, the LangChain handler and the OpenAI Agents hooks),
//! and its lints (ruff, mypy --strict). They run in a virtual environment of their own
//! under `target/tmp`, made at the first run with the client and its test extras
//! (`pip install -e './clients/python[test]'`, from PyPI), so that `cargo test` alone runs
//! them on a fresh machine.

use super::python_env;
use std::path::PathBuf;
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
        let install = [
            "-e".to_string(),
            format!("{}[test]", client_dir().display()),
        ];
        python_env::venv("python-client-venv", IMPORTS, &install)
    })
}

fn python(module: &str, args: &[&str]) {
    python_env::python(venv_python(), &client_dir(), module, args, &[]);
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
