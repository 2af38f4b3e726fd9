//! The docs stay true: every diagnostic code is documented, every `policy` example in the
//! language reference checks clean, and every source module says what it owns.

use super::root;
use lever::source::{FileRole, SourceFile, SourceSet};

#[test]
fn every_diagnostic_code_has_an_entry_in_docs() {
    let doc = std::fs::read_to_string(root().join("docs/diagnostics.md")).unwrap();
    for code in lever::diag::Code::ALL {
        let heading = format!("## {} {}", code.as_str(), code.title());
        assert!(
            doc.contains(&heading),
            "docs/diagnostics.md lacks `{heading}`"
        );
    }
}

/// The fenced blocks of a Markdown file with the given info string.
fn blocks(text: &str, info: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        match &mut current {
            None if line.trim() == format!("```{info}") => current = Some(String::new()),
            Some(body) if line.trim() == "```" => {
                out.push(std::mem::take(body));
                current = None;
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

#[test]
fn every_policy_example_in_the_language_reference_checks_clean() {
    let doc = std::fs::read_to_string(root().join("docs/language.md")).unwrap();
    let examples = blocks(&doc, "policy");
    assert!(examples.len() >= 10, "only {} examples", examples.len());
    for (i, text) in examples.iter().enumerate() {
        let mut set = SourceSet::default();
        set.add(SourceFile::new(
            format!("example{i}.policy"),
            text.as_str(),
            FileRole::User,
        ));
        let checked = lever::check::check(set);
        let codes: Vec<&str> = checked
            .diagnostics
            .iter()
            .map(|d| d.code.as_str())
            .collect();
        assert!(codes.is_empty(), "example {i} reports {codes:?}:\n{text}");
    }
}

#[test]
fn every_source_module_starts_with_a_module_doc() {
    let mut stack = vec![root().join("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                assert!(
                    text.starts_with("//!"),
                    "{} lacks a `//!` module doc",
                    path.display()
                );
            }
        }
    }
}
