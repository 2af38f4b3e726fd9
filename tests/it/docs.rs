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

/// Every Markdown file of the docs and the README.
fn doc_files() -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.push(root().join("README.md"));
    files.sort();
    files
}

#[test]
fn every_policy_block_in_the_docs_checks_clean_and_its_tests_pass() {
    let language = std::fs::read_to_string(root().join("docs/language.md")).unwrap();
    assert!(
        blocks(&language, "policy").len() >= 10,
        "the language reference lost its examples"
    );
    let mut examples = Vec::new();
    for file in doc_files() {
        let doc = std::fs::read_to_string(&file).unwrap();
        for text in blocks(&doc, "policy") {
            examples.push((file.display().to_string(), text));
        }
    }
    for (i, (doc, text)) in examples.iter().enumerate() {
        if text.contains("test \"") {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("example.policy");
            std::fs::write(&path, text).unwrap();
            let out = super::lever(&root(), &["test", path.to_str().unwrap()]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{doc}: an example's tests fail:\n{text}\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
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
        assert!(
            codes.is_empty(),
            "{doc}: example {i} reports {codes:?}:\n{text}"
        );
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
