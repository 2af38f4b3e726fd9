//! The production parser and the normative pest grammar must agree on acceptance.

use super::{case_dirs, policy_files, root};
use lever::syntax::{grammar, is_syntactically_valid};

#[test]
fn parser_and_grammar_agree_on_every_policy_file_in_the_repository() {
    let mut files = Vec::new();
    for dir in ["examples", "stdlib", "tests"] {
        files.extend(policy_files(&root().join(dir)));
    }
    assert!(files.len() > 50, "found only {} files", files.len());
    let mut disagreements = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let (ours, pest) = (is_syntactically_valid(&text), grammar::accepts(&text));
        if ours != pest {
            disagreements.push(format!("{}: parser {ours}, pest {pest}", file.display()));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn examples_and_stdlib_are_accepted_by_the_grammar() {
    for dir in ["examples", "stdlib"] {
        for file in policy_files(&root().join(dir)) {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                grammar::accepts(&text),
                "{} rejected by pest",
                file.display()
            );
        }
    }
}

#[test]
fn the_grammar_rejects_every_syntax_error_case() {
    let mut checked = 0;
    for dir in case_dirs("check") {
        let codes = super::check_cases::annotations(&dir);
        let syntax = codes.keys().any(|(_, _, code)| {
            lever::diag::Code::ALL
                .iter()
                .any(|c| c.as_str() == code && c.is_syntax())
        });
        if !syntax {
            continue;
        }
        let texts: Vec<String> = policy_files(&dir)
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        assert!(
            texts.iter().any(|t| !grammar::accepts(t)),
            "pest accepts every file of syntax-error case {}",
            dir.display()
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} syntax cases");
}

#[test]
fn the_grammar_and_parser_agree_on_lexical_edge_cases() {
    let cases = [
        ("const A = 5usd", true),
        ("const A = 5 usd", true),
        ("const A = 5\n tokens", true),
        ("const A = 5 usdx", false),
        ("const A = 5min", false),
        ("const A = 5m", true),
        ("const A = 1_000", true),
        ("const A = 1__0", false),
        ("const A = 1_", false),
        ("const A = 0.123456789", true),
        ("const A = 0.1234567891", false),
        ("const A = 1.5h", false),
        ("const A = $5.", false),
        ("const A = 87.5%", true),
        ("const A = \"a\\u{1F600}b\"", true),
        ("const A = \"a\\u{}b\"", false),
        ("const A = \"a\nb\"", false),
        ("const index = 1", true),
        ("const in = 1", false),
        ("monitor m = count(step.x where true)", false),
        ("monitor m = sum ( step.cost )", true),
        ("monitor m = a . b . c", true),
        ("test \"t\" { { } x 5 \"s\" => }", true),
        ("test \"t\" { { }", false),
        ("/* a */ /* b", false),
        ("const A = - - 1", true),
        ("const A = 1 < 2 < 3", false),
        ("const A = x[\"k\"][\"j\"]", false),
    ];
    for (text, valid) in cases {
        assert_eq!(is_syntactically_valid(text), valid, "parser on {text:?}");
        assert_eq!(grammar::accepts(text), valid, "pest on {text:?}");
    }
}
