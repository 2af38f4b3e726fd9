//! `tests/check/<case>/`: policy files whose lines carry hand-written expectations
//! (`// ~ E0201` marks a diagnostic with that code on that line; several codes may follow
//! one `~`). The real binary must report exactly those codes at those lines, exit 1 when
//! any is an error (0 for warnings only), and render them as in `expected.txt` (the
//! ariadne output, refreshed with `UPDATE_EXPECT=1`, reviewed like code). A case with a
//! `previous.txt` (a policy file by another name, so that `check .` does not read it) is
//! checked `--against` the artifact built from it.

use super::{case_dirs, lever, policy_files};
use std::collections::BTreeMap;
use std::path::Path;

/// (file name, line, code) → how many times it is expected.
type Expectations = BTreeMap<(String, usize, String), usize>;

pub fn annotations(dir: &Path) -> Expectations {
    let mut out = Expectations::new();
    for file in policy_files(dir) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, line) in text.lines().enumerate() {
            let Some((_, codes)) = line.split_once("// ~ ") else {
                continue;
            };
            for code in codes.split_whitespace() {
                *out.entry((name.clone(), i + 1, code.to_string()))
                    .or_default() += 1;
            }
        }
    }
    out
}

fn reported(json: &[u8]) -> Expectations {
    let list: Vec<serde_json::Value> =
        serde_json::from_slice(json).expect("--format json prints a JSON array");
    let mut out = Expectations::new();
    for d in list {
        let file = d["file"].as_str().unwrap();
        let name = Path::new(file)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let key = (
            name,
            d["line"].as_u64().unwrap() as usize,
            d["code"].as_str().unwrap().to_string(),
        );
        *out.entry(key).or_default() += 1;
    }
    out
}

/// The artifact a case is checked against, built from its `previous.txt` in a directory
/// of its own (kept while the case runs), and its path.
fn against(dir: &Path) -> (Option<tempfile::TempDir>, Option<String>) {
    let Ok(text) = std::fs::read_to_string(dir.join("previous.txt")) else {
        return (None, None);
    };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("previous.policy"), text).unwrap();
    let built = lever(
        tmp.path(),
        &["build", "previous.policy", "-o", "previous.lvc"],
    );
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let path = tmp
        .path()
        .join("previous.lvc")
        .to_string_lossy()
        .into_owned();
    (Some(tmp), Some(path))
}

#[test]
fn every_check_case_reports_its_annotated_diagnostics() {
    let update = std::env::var_os("UPDATE_EXPECT").is_some();
    let mut failures = Vec::new();
    let cases = case_dirs("check");
    assert!(
        cases.len() >= 40,
        "at least 40 check cases, found {}",
        cases.len()
    );
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let expected = annotations(dir);
        let (_previous, against) = against(dir);
        let args = |extra: &[&str]| -> Vec<String> {
            let mut a: Vec<String> = ["check", "."]
                .iter()
                .chain(extra)
                .map(|s| s.to_string())
                .collect();
            a.extend(
                against
                    .iter()
                    .flat_map(|p| ["--against".to_string(), p.clone()]),
            );
            a
        };
        let run = |extra: &[&str]| {
            let a = args(extra);
            lever(dir, &a.iter().map(String::as_str).collect::<Vec<_>>())
        };
        let json = run(&["--format", "json"]);
        let got = reported(&json.stdout);
        if got != expected {
            failures.push(format!("{name}: expected {expected:?}\n    got {got:?}"));
            continue;
        }
        let any_error = expected.keys().any(|(_, _, code)| code.starts_with('E'));
        let want_exit = if any_error { 1 } else { 0 };
        if json.status.code() != Some(want_exit) {
            failures.push(format!(
                "{name}: exit {:?}, expected {want_exit}",
                json.status.code()
            ));
        }
        let human = run(&[]);
        if human.status.code() != Some(want_exit) {
            failures.push(format!(
                "{name}: human format exit {:?}",
                human.status.code()
            ));
        }
        let rendered = String::from_utf8(human.stderr).expect("diagnostics are UTF-8");
        let golden = dir.join("expected.txt");
        if update {
            std::fs::write(&golden, &rendered).unwrap();
        } else {
            match std::fs::read_to_string(&golden) {
                Ok(text) if text == rendered => {}
                Ok(text) => failures.push(format!("{name}: rendering differs from expected.txt (UPDATE_EXPECT=1 refreshes)\n--- expected\n{text}\n--- got\n{rendered}")),
                Err(_) => failures.push(format!("{name}: no expected.txt (run with UPDATE_EXPECT=1 and review it)")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_check_corpus_covers_every_diagnostic_code() {
    let mut seen = std::collections::BTreeSet::new();
    for dir in case_dirs("check") {
        for (_, _, code) in annotations(&dir).into_keys() {
            seen.insert(code);
        }
    }
    let missing: Vec<&str> = lever::diag::Code::ALL
        .iter()
        .map(|c| c.as_str())
        .filter(|c| !seen.contains(*c))
        .collect();
    assert!(
        missing.is_empty(),
        "codes without a tests/check case: {missing:?}"
    );
}
