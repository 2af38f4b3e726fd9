//! Python virtual environments the tests make for themselves under `target/tmp`, from
//! PyPI, so that `cargo test` alone runs the Python suites on a fresh machine.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python of the virtual environment `name`, made if it cannot import `imports`:
/// `python3 -m venv`, then `pip install` of `install` (arguments as pip takes them).
pub fn venv(name: &str, imports: &str, install: &[String]) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let python = dir.join("bin/python");
    let usable = Command::new(&python)
        .args(["-c", imports])
        .output()
        .is_ok_and(|o| o.status.success());
    if !usable {
        run(
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&dir),
            "python3 -m venv",
        );
        run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(install),
            &format!("pip install {}", install.join(" ")),
        );
    }
    python
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed (the Python tests need python3 with venv, and PyPI):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `python -m MODULE ARGS` in `dir` with `envs`; panics with its output on failure.
pub fn python(python: &Path, dir: &Path, module: &str, args: &[&str], envs: &[(&str, String)]) {
    let out = Command::new(python)
        .args(["-m", module])
        .args(args)
        .current_dir(dir)
        .env("LEVER_BIN", env!("CARGO_BIN_EXE_lever"))
        .envs(envs.iter().map(|(k, v)| (k, v)))
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
