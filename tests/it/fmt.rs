//! `lever fmt`: the layout of a deliberately unformatted corpus against its reviewed
//! golden; for every `.policy` file in the repository, the same tokens, the same policy
//! hashes and bytecode, and idempotence; and the command's behaviour on files.

use super::{lever, root};
use lever::author::fmt::format;
use lever::source::FileId;
use lever::syntax::lexer::lex;

/// A file's tokens as (kind, value): what the formatter must not change.
fn tokens(text: &str) -> Vec<String> {
    lex(FileId(0), text)
        .0
        .iter()
        .map(|t| format!("{:?} {:?}", t.kind, t.value))
        .collect()
}

fn policy_files() -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for dir in ["examples", "stdlib", "tests"] {
        files.extend(super::policy_files(&root().join(dir)));
    }
    files
}

#[test]
fn the_unformatted_corpus_formats_to_its_reviewed_golden() {
    let messy = std::fs::read_to_string(root().join("tests/fmt/unformatted.policy")).unwrap();
    let golden = std::fs::read_to_string(root().join("tests/fmt/formatted.policy")).unwrap();
    let out = format(&messy).unwrap();
    assert_eq!(
        out, golden,
        "UPDATE the golden only after reviewing the new layout"
    );
    // Hand-written from the rules in docs/fmt.md, independent of the golden:
    for line in [
        "channel ops = webhook(url: env(\"OPS_URL\"), secret: env(\"OPS_SECRET\"))\n",
        "const CAP = $5.00 // the cap\n",
        "const NEG = -$0.25\n",
        "signal retries: count\n\nmonitor per_call = std.llm.cost / (count() + 1)\n",
        "policy budget {\n    version 2\n    description \"Support budget\"\n",
        "    scope agent in [\"a\", \"b\"] and labels[\"env\"] == \"prod\"\n",
        "    limit std.llm.cost to CAP + NEG {\n        near 80% => alert(ui, ops)\n        breach => stop, alert(ops)\n    }\n",
        "    limit per_call to $1 { breach => pause } // one arm: one line\n",
        "    limit m2 to $2 {\n        // a comment keeps the block on several lines\n        breach => kill\n    }\n",
        "    override {\n        allow role \"sre\" to raise std.llm.cost up to 200% for 1h requires reason\n        allow actor \"a@example.com\" to resume\n    }\n}\n",
        "    step cost $4.00 after 2m repeat 2\n    expect breach std.llm.cost of budget\n",
        "/* a block comment\n   over two lines */\n",
    ] {
        assert!(out.contains(line), "missing:\n{line}\nin:\n{out}");
    }
    assert!(
        !out.contains("\n\n\n") && !out.contains(" \n"),
        "blank lines or trailing spaces"
    );
}

#[test]
fn formatting_keeps_every_token_and_is_idempotent_for_every_policy_file() {
    let mut formatted = 0;
    for file in policy_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        let Ok(out) = format(&text) else {
            // Files with syntax errors (check cases) are refused, never rewritten.
            continue;
        };
        assert_eq!(
            tokens(&out),
            tokens(&text),
            "{}: tokens changed",
            file.display()
        );
        assert_eq!(
            format(&out).unwrap(),
            out,
            "{}: not idempotent",
            file.display()
        );
        formatted += 1;
    }
    assert!(formatted > 100, "only {formatted} files formatted");
}

/// Every policy's hash and the whole compiled program, for a set of files.
fn compiled(files: &[(String, String)]) -> Option<(Vec<String>, String)> {
    let mut set = lever::source::SourceSet::default();
    for (path, text) in files {
        set.add(lever::source::SourceFile::new(
            path.clone(),
            text.clone(),
            lever::source::FileRole::User,
        ));
    }
    let checked = lever::check::check(set);
    let paths: Vec<String> = files.iter().map(|(p, _)| p.clone()).collect();
    let artifact = lever::compile::build(&checked, &paths).ok()?;
    let program = &artifact.body.program;
    Some((
        program
            .policies
            .iter()
            .map(|p| format!("{} {}", p.name, p.hash))
            .collect(),
        format!("{program:?}"),
    ))
}

#[test]
fn formatting_changes_no_policy_hash_and_no_bytecode() {
    // The example set as a whole, and every replay case's policy set.
    let mut sets = vec![root().join("examples")];
    sets.extend(super::case_dirs("replay"));
    let mut compared = 0;
    for dir in sets {
        let files: Vec<(String, String)> = super::policy_files(&dir)
            .iter()
            .map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap()))
            .collect();
        let Some(before) = compiled(&files) else {
            continue;
        };
        let formatted: Vec<(String, String)> = files
            .iter()
            .map(|(p, t)| (p.clone(), format(t).unwrap()))
            .collect();
        assert_eq!(compiled(&formatted), Some(before), "{}", dir.display());
        compared += 1;
    }
    assert!(compared > 40, "only {compared} sets compared");
}

#[test]
fn the_command_rewrites_checks_and_leaves_broken_files_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let messy = std::fs::read_to_string(root().join("tests/fmt/unformatted.policy")).unwrap();
    let golden = std::fs::read_to_string(root().join("tests/fmt/formatted.policy")).unwrap();
    let file = tmp.path().join("a.policy");
    std::fs::write(&file, &messy).unwrap();
    let broken = tmp.path().join("b.policy");
    std::fs::write(&broken, "policy p { version 1 scope all limit x to { }\n").unwrap();

    let check = lever(tmp.path(), &["fmt", "--check", "a.policy"]);
    assert_eq!(check.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(check.stdout).unwrap(),
        "would reformat a.policy\n"
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        messy,
        "--check changes nothing"
    );

    let run = lever(tmp.path(), &["fmt", "."]);
    assert_eq!(run.status.code(), Some(1), "b.policy does not parse");
    let err = String::from_utf8(run.stderr).unwrap();
    assert!(
        err.contains("b.policy does not parse; it was left as it is"),
        "{err}"
    );
    assert!(err.contains("[E0010]"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), golden);
    assert_eq!(
        std::fs::read_to_string(&broken).unwrap(),
        "policy p { version 1 scope all limit x to { }\n"
    );
    assert_eq!(
        lever(tmp.path(), &["fmt", "--check", "a.policy"])
            .status
            .code(),
        Some(0)
    );

    // The examples and the docs' own files stay formatted.
    assert_eq!(
        lever(&root(), &["fmt", "--check", "examples"])
            .status
            .code(),
        Some(0)
    );
}
