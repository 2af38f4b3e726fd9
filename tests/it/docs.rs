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

/// The codes `lever check` reports for a set of (path, text) files; a file under
/// `stdlib/std/NAME.policy` is checked as the module `std.NAME`, and `previous.policy` is
/// built apart as the artifact given with `--against`.
fn codes_of(files: &[(String, String)]) -> Vec<String> {
    let (previous, files): (Vec<_>, Vec<_>) = files
        .iter()
        .cloned()
        .partition(|(name, _)| name == "previous.policy");
    let mut set = SourceSet::default();
    for (name, text) in &files {
        let role = name
            .strip_prefix("stdlib/std/")
            .and_then(|n| n.strip_suffix(".policy"))
            .map_or(FileRole::User, |m| FileRole::Stdlib(format!("std.{m}")));
        set.add(SourceFile::new(name.clone(), text.clone(), role));
    }
    let mut checked = lever::check::check(set);
    if let Some((name, text)) = previous.first() {
        let mut old = SourceSet::default();
        old.add(SourceFile::new(name.clone(), text.clone(), FileRole::User));
        let old =
            lever::compile::build(&lever::check::check(old), std::slice::from_ref(name)).unwrap();
        let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        let new = lever::compile::build(&checked, &names).unwrap();
        let found = lever::author::versions::unbumped(&checked, &new, &old);
        checked.diagnostics.extend(found);
    }
    checked
        .diagnostics
        .iter()
        .map(|d| d.code.as_str().to_string())
        .collect()
}

/// Every Markdown file of the docs and the README.
pub fn doc_files() -> Vec<std::path::PathBuf> {
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
        let codes = codes_of(&[(format!("example{i}.policy"), text.clone())]);
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

/// Every fenced block of a Markdown file: (info string, body).
pub fn all_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        match &mut current {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    current = Some((info.to_string(), String::new()));
                }
            }
            Some(_) if trimmed == "```" => out.extend(current.take()),
            Some((_, body)) => {
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    out
}

/// The `lever` command lines of a shell block: `lever ...`, `$ lever ...`, or
/// `cargo run --release -- ...`, without comments.
fn lever_commands(block: &str) -> Vec<Vec<String>> {
    block
        .lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches("$ ");
            let rest = l
                .strip_prefix("lever ")
                .or_else(|| l.strip_prefix("cargo run --release -- "))?;
            let rest = rest.split(" #").next().unwrap_or(rest);
            Some(rest.split_whitespace().map(str::to_string).collect())
        })
        .collect()
}

#[test]
fn every_shell_block_names_commands_and_flags_that_exist() {
    use clap::CommandFactory;
    let cli = lever::cli::Cli::command();
    let mut checked = 0;
    for file in doc_files() {
        let doc = std::fs::read_to_string(&file).unwrap();
        for (info, body) in all_blocks(&doc) {
            if !matches!(info.as_str(), "" | "sh" | "shell" | "console") {
                continue;
            }
            for words in lever_commands(&body) {
                let Some(first) = words.first() else { continue };
                let mut command = cli
                    .find_subcommand(first)
                    .unwrap_or_else(|| panic!("{}: `lever {first}` is no command", file.display()));
                let mut rest = words.iter().skip(1);
                // `lever evidence verify`: a subcommand's own subcommand.
                if let Some(second) = words.get(1)
                    && let Some(sub) = command.find_subcommand(second)
                {
                    command = sub;
                    rest.next();
                }
                for word in rest {
                    let Some(flag) = word.strip_prefix("--") else {
                        continue;
                    };
                    let flag = flag.split('=').next().unwrap_or(flag);
                    assert!(
                        command.get_arguments().any(|a| a.get_long() == Some(flag))
                            || flag == "help",
                        "{}: `lever {}` has no flag --{flag}: {}",
                        file.display(),
                        command.get_name(),
                        words.join(" ")
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "only {checked} command lines found");
}

#[test]
fn every_diagnostics_example_reports_its_code() {
    // Each heading's `text` blocks are one example; a block after a "`x.policy`:" line is
    // that file of a multi-file example.
    let doc = std::fs::read_to_string(root().join("docs/diagnostics.md")).unwrap();
    let mut examples: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let mut file_name = None;
    let mut current: Option<String> = None;
    for line in doc.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            let code = heading.split_whitespace().next().unwrap_or("").to_string();
            examples.push((code, Vec::new()));
        }
        if let Some(name) = line.strip_prefix('`').and_then(|l| l.strip_suffix("`:")) {
            file_name = Some(name.to_string());
        }
        match &mut current {
            None if line.trim() == "```text" => current = Some(String::new()),
            Some(body) if line.trim() == "```" => {
                let body = std::mem::take(body);
                current = None;
                let name = file_name
                    .take()
                    .unwrap_or_else(|| "example.policy".to_string());
                if let Some((_, files)) = examples.last_mut() {
                    files.push((name, body));
                }
            }
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    let mut seen = 0;
    for (code, files) in examples.iter().filter(|(_, f)| !f.is_empty()) {
        let codes = codes_of(files);
        assert!(
            codes.contains(code),
            "the {code} example reports {codes:?}:\n{files:?}"
        );
        seen += 1;
    }
    assert_eq!(
        seen,
        lever::diag::Code::ALL.len(),
        "every code has an example"
    );
}

#[test]
fn every_json_and_toml_block_parses() {
    for file in doc_files() {
        let doc = std::fs::read_to_string(&file).unwrap();
        for (info, body) in all_blocks(&doc) {
            match info.as_str() {
                // `…` marks an elision: `{…}` an object, `,…,` fields, `"…"` inside strings.
                "json" => {
                    let text = body.replace("{…}", "{}").replace(",…,", ",");
                    for doc_value in text
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .collect::<Vec<_>>()
                        .join("\n")
                        .split("\n\n")
                    {
                        serde_json::from_str::<serde_json::Value>(doc_value).unwrap_or_else(|e| {
                            panic!(
                                "{}: a json block does not parse ({e}):\n{body}",
                                file.display()
                            )
                        });
                    }
                }
                "toml" => {
                    toml::from_str::<toml::Table>(&body).unwrap_or_else(|e| {
                        panic!(
                            "{}: a toml block does not parse ({e}):\n{body}",
                            file.display()
                        )
                    });
                }
                _ => {}
            }
        }
    }
}

#[test]
fn the_documented_schema_is_the_schema_the_store_creates() {
    let doc = std::fs::read_to_string(root().join("docs/evidence.md")).unwrap();
    let sql = &all_blocks(&doc)
        .into_iter()
        .find(|(i, _)| i == "sql")
        .unwrap()
        .1;
    let store = super::stores::Schema::new(); // migrated: the real table
    let documented = super::stores::Schema::unmigrated();
    let mut c = store.client();
    c.batch_execute(&format!(
        "CREATE SCHEMA \"{0}\"; {1}",
        documented.name,
        sql.replace("SCHEMA.", &format!("\"{}\".", documented.name))
    ))
    .unwrap();
    let shape = |c: &mut postgres::Client, schema: &str| -> Vec<String> {
        let mut rows: Vec<String> = c
            .query(
                "SELECT column_name, data_type, is_nullable, coalesce(column_default, '') FROM information_schema.columns WHERE table_schema = $1 AND table_name = 'records' ORDER BY ordinal_position",
                &[&schema],
            )
            .unwrap()
            .iter()
            .map(|r| format!("{} {} {} {}", r.get::<_, String>(0), r.get::<_, String>(1), r.get::<_, String>(2), r.get::<_, String>(3)))
            .collect();
        rows.extend(
            c.query("SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'records' ORDER BY indexname", &[&schema])
                .unwrap()
                .iter()
                .map(|r| r.get::<_, String>(0).replace(schema, "SCHEMA").replace('"', "")),
        );
        rows
    };
    assert_eq!(shape(&mut c, &documented.name), shape(&mut c, &store.name));
}

#[test]
fn the_cli_reference_is_generated_from_the_command_definitions() {
    let path = root().join("docs/cli-reference.md");
    let generated = lever::cli::reference::markdown();
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let stored = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        stored, generated,
        "docs/cli-reference.md is stale: UPDATE_EXPECT=1 cargo test --test it docs:: regenerates it"
    );
    // Every command is in it (hand-written list: a command missing from clap fails here).
    for command in [
        "check",
        "build",
        "inspect",
        "run",
        "serve",
        "fmt",
        "test",
        "lsp",
        "diff",
        "explain",
        "evidence verify",
        "evidence digest",
        "evidence show",
    ] {
        assert!(
            generated.contains(&format!("\n## `lever {command}`\n")),
            "{command}"
        );
    }
}

#[test]
fn the_book_lists_every_chapter_and_every_link_resolves() {
    let summary = std::fs::read_to_string(root().join("docs/SUMMARY.md")).unwrap();
    let linked: Vec<String> = summary
        .split("](")
        .skip(1)
        .filter_map(|rest| rest.split(')').next())
        .map(str::to_string)
        .collect();
    for link in &linked {
        assert!(
            root().join("docs").join(link).is_file(),
            "SUMMARY.md links a missing {link}"
        );
    }
    for file in doc_files() {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        if name == "SUMMARY.md" || name == "README.md" {
            continue;
        }
        assert!(linked.contains(&name), "docs/{name} is not in SUMMARY.md");
    }
    let book = std::fs::read_to_string(root().join("book.toml")).unwrap();
    let book: toml::Table = toml::from_str(&book).unwrap();
    assert_eq!(book["book"]["src"].as_str(), Some("docs"));
}
