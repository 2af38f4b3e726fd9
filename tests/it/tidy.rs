//! The code map holds: no import runs up a floor of `docs/architecture.md`, nothing after
//! the checker reads the AST, the two faces (server, cli) never import each other, and the
//! rooms stay small (files of at most 600 lines, functions of at most 80).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The floors, lowest first: a module imports only from floors below its own (and from
/// itself). Modules on one floor do not import each other.
const FLOORS: &[&[&str]] = &[
    &["base"],
    &["syntax", "stdlib", "evidence"],
    &["check"],
    &["compile"],
    &["vm"],
    &["jit"],
    &["runtime"],
    &["alerts", "author"],
    &["server", "cli"],
];

/// After the checker, only the authoring tools (which lay out, diff and serve source text)
/// read the AST.
const READS_THE_AST: &[&str] = &["check", "author"];

/// The longest file and function.
const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;

/// Files and functions allowed to be longer, each with why. Empty: keep it so.
const LONG_EXCEPTIONS: &[(&str, &str)] = &[];

fn floor_of(module: &str) -> Option<usize> {
    FLOORS.iter().position(|f| f.contains(&module))
}

/// Every `.rs` file of a module (`src/NAME.rs` or `src/NAME/**`).
fn files_of(module: &str) -> Vec<PathBuf> {
    let src = super::root().join("src");
    let single = src.join(format!("{module}.rs"));
    if single.exists() {
        return vec![single];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The text with comments, strings and character literals blanked (newlines kept), so
/// that what remains is code.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep_newlines = |s: &[u8], out: &mut String| {
        out.extend(s.iter().filter(|c| **c == b'\n').map(|_| '\n'));
    };
    while i < b.len() {
        let rest = &b[i..];
        if rest.starts_with(b"//") {
            let end = rest.iter().position(|c| *c == b'\n').unwrap_or(rest.len());
            i += end;
        } else if rest.starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(rest.len(), |e| e + 4);
            keep_newlines(&rest[..end], &mut out);
            i += end;
        } else if rest.starts_with(b"r#\"") || rest.starts_with(b"r\"") {
            let hashes = rest[1..].iter().take_while(|c| **c == b'#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let start = 2 + hashes;
            let end = text[i + start..]
                .find(&close)
                .map_or(rest.len(), |e| start + e + close.len());
            keep_newlines(&rest[..end], &mut out);
            out.push_str("\"\"");
            i += end;
        } else if rest[0] == b'"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != b'"' {
                j += if rest[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(rest.len());
            keep_newlines(&rest[..end], &mut out);
            out.push_str("\"\"");
            i += end;
        } else if rest[0] == b'\'' && char_literal(rest) > 0 {
            out.push_str("' '");
            i += char_literal(rest);
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// The length of a character literal at the start of `s` (`'a'`, `'\n'`, `'\u{1F600}'`),
/// or 0 for a lifetime.
fn char_literal(s: &[u8]) -> usize {
    if s.len() >= 3 && s[1] != b'\\' && s[2] == b'\'' {
        return 3;
    }
    if s.len() >= 4
        && s[1] == b'\\'
        && let Some(end) = s[2..].iter().take(10).position(|c| *c == b'\'')
    {
        return end + 3;
    }
    // A multi-byte character: up to four bytes then the quote.
    if s.len() >= 3
        && s[1] >= 0x80
        && let Some(end) = s[1..].iter().take(6).position(|c| *c == b'\'')
    {
        return end + 2;
    }
    0
}

/// The byte ranges of `#[cfg(test)]` modules, whose code tests may write as they like.
fn test_modules(code: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("#[cfg(test)]") {
        let start = from + at;
        let Some(open) = code[start..].find('{').map(|o| start + o) else {
            break;
        };
        let end = matching_brace(code, open).unwrap_or(code.len());
        out.push((start, end));
        from = end;
    }
    out
}

fn matching_brace(code: &str, open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (i, c) in code[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// The top modules a file's code names through `crate::` (outside test modules).
fn imports(path: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut code = code_only(&text);
    for (start, end) in test_modules(&code.clone()).into_iter().rev() {
        code.replace_range(start..end, "");
    }
    let mut out = BTreeMap::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at + "crate::".len();
        let name: String = code[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let line = code[..start].matches('\n').count() + 1;
        out.entry(name).or_insert(line);
        from = start;
    }
    out
}

#[test]
fn no_import_runs_up_a_floor_and_the_faces_never_meet() {
    let mut wrong = Vec::new();
    for floor in FLOORS {
        for module in *floor {
            let own = floor_of(module).unwrap();
            let files = files_of(module);
            assert!(!files.is_empty(), "no source for module `{module}`");
            for file in files {
                let rel = file
                    .strip_prefix(super::root())
                    .unwrap()
                    .display()
                    .to_string();
                for (used, line) in imports(&file) {
                    if used == *module {
                        continue;
                    }
                    let Some(theirs) = floor_of(&used) else {
                        wrong.push(format!("{rel}:{line}: `crate::{used}` is on no floor"));
                        continue;
                    };
                    if theirs >= own {
                        wrong.push(format!(
                            "{rel}:{line}: `{module}` (floor {own}) imports `{used}` (floor {theirs})"
                        ));
                    }
                    if used == "syntax" && !READS_THE_AST.contains(module) {
                        wrong.push(format!("{rel}:{line}: `{module}` reads the AST"));
                    }
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the floors:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn every_module_of_the_crate_is_on_a_floor() {
    let lib = std::fs::read_to_string(super::root().join("src/lib.rs")).unwrap();
    let modules: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';'))
        .collect();
    assert!(modules.len() >= 10, "{modules:?}");
    for m in &modules {
        assert!(floor_of(m).is_some(), "module `{m}` is on no floor");
    }
    // And the map in the docs draws the same floors.
    let doc = std::fs::read_to_string(super::root().join("docs/architecture.md")).unwrap();
    for floor in FLOORS {
        let line = floor
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ");
        assert!(
            doc.contains(&line),
            "docs/architecture.md has no floor {line}"
        );
    }
}

/// Every function of a file with its first line and length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("fn ") {
        let start = from + at;
        from = start + 3;
        let before = code[..start].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = code[start + 3..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if name.is_empty() {
            continue;
        }
        // The body's brace, unless a `;` ends a declaration first.
        let Some(rel) = code[start..].find(['{', ';']) else {
            continue;
        };
        if code.as_bytes()[start + rel] == b';' {
            continue;
        }
        let Some(end) = matching_brace(code, start + rel) else {
            continue;
        };
        let first = code[..start].matches('\n').count() + 1;
        let last = code[..end].matches('\n').count() + 1;
        out.push((name, first, last - first + 1));
    }
    out
}

#[test]
fn files_and_functions_stay_small() {
    let mut long = Vec::new();
    let mut seen = 0;
    for floor in FLOORS {
        for module in *floor {
            for file in files_of(module) {
                seen += 1;
                let rel = file
                    .strip_prefix(super::root())
                    .unwrap()
                    .display()
                    .to_string();
                let text = std::fs::read_to_string(&file).unwrap();
                let lines = text.lines().count();
                if lines > MAX_FILE_LINES && !LONG_EXCEPTIONS.iter().any(|(f, _)| *f == rel) {
                    long.push(format!("{rel}: {lines} lines"));
                }
                for (name, line, len) in functions(&code_only(&text)) {
                    let id = format!("{rel}:{name}");
                    if len > MAX_FN_LINES && !LONG_EXCEPTIONS.iter().any(|(f, _)| *f == id) {
                        long.push(format!("{rel}:{line}: fn {name}: {len} lines"));
                    }
                }
            }
        }
    }
    assert!(seen > 80, "only {seen} files were read");
    assert!(long.is_empty(), "too long:\n{}", long.join("\n"));
}

#[test]
fn the_checks_see_what_they_check() {
    // A sample that breaks every rule, so that a broken reader cannot pass silently.
    let code = code_only(
        "use crate::server::x; // crate::cli\nfn f() { let s = \"crate::cli\"; let c = '{'; }\n\
         #[cfg(test)]\nmod tests { use crate::cli; }\n",
    );
    assert!(code.contains("crate::server") && !code.contains("crate::cli\""));
    let funcs = functions(&code);
    assert_eq!(funcs.len(), 1, "{funcs:?}");
    assert_eq!((funcs[0].0.as_str(), funcs[0].1, funcs[0].2), ("f", 2, 1));
    assert_eq!(test_modules(&code).len(), 1);
    let long = format!("fn g() {{\n{}}}\n", "    x();\n".repeat(90));
    assert_eq!(functions(&long)[0].2, 92);
}
