//! The web console (`/ui`) in a real browser: `tests/console`'s pytest suite drives
//! Debian's Chromium (`/usr/bin/chromium`, or `$LEVER_CHROMIUM`) with Playwright against
//! this build's `lever serve`, on the file store and on PostgreSQL, and keeps a screenshot
//! of each view under `target/console-screenshots` (`LEVER_UPDATE_DOCS=1` also writes
//! them to `docs/images/console`). Its Python, and the helpers it shares with the client's
//! tests (`tests/pyshared`), are formatted, linted and typed.

use super::python_env;
use std::path::PathBuf;
use std::sync::OnceLock;

fn suite_dir() -> PathBuf {
    super::root().join("tests/console")
}

const IMPORTS: &str = "import playwright.sync_api, pytest, httpx, mypy";

fn venv_python() -> &'static PathBuf {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let requirements = suite_dir().join("requirements.txt");
        let install = ["-r".to_string(), requirements.display().to_string()];
        python_env::venv("console-venv", IMPORTS, &install)
    })
}

#[test]
fn the_console_works_in_a_real_browser_on_both_stores() {
    let chromium = std::env::var("LEVER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).is_file(),
        "the console's tests need Chromium at {chromium} (Debian: apt-get install chromium; .ci/run installs it), or LEVER_CHROMIUM"
    );
    let shots = super::root().join("target/console-screenshots");
    python_env::python(
        venv_python(),
        &suite_dir(),
        "pytest",
        &["-q", "-p", "no:cacheprovider"],
        &[
            ("LEVER_CHROMIUM", chromium),
            ("LEVER_SCREENSHOTS", shots.display().to_string()),
        ],
    );
}

#[test]
fn the_console_tests_are_formatted_linted_and_typed() {
    let dir = suite_dir();
    python_env::python(
        venv_python(),
        &dir,
        "ruff",
        &["format", "--check", "--no-cache", "."],
        &[],
    );
    python_env::python(
        venv_python(),
        &dir,
        "ruff",
        &["check", "--no-cache", "."],
        &[],
    );
    python_env::python(venv_python(), &dir, "mypy", &[], &[]);
}
