//! Property tests: parser/grammar agreement on generated and mutated programs, and a front
//! end that never panics on arbitrary input. `LEVER_PROPTEST_CASES` scales the runs (CI
//! uses the default; the long fuzz run in the closing note used 1,000,000).

use super::generate;
use lever::source::{FileRole, SourceFile, SourceSet};
use lever::syntax::{grammar, is_syntactically_valid};
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("LEVER_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn check_text(text: &str) -> lever::check::Checked {
    let mut set = SourceSet::default();
    set.add(SourceFile::new("fuzz.policy", text, FileRole::User));
    lever::check::check(set)
}

#[test]
fn generated_programs_are_valid_and_both_parsers_accept_them() {
    for seed in 0..u64::from(cases(400)) {
        let text = generate::program(seed);
        assert!(
            is_syntactically_valid(&text),
            "seed {seed}: parser rejects\n{text}"
        );
        assert!(grammar::accepts(&text), "seed {seed}: pest rejects\n{text}");
    }
}

#[test]
fn parser_and_grammar_agree_on_mutants_and_reject_most_of_them() {
    let n = cases(3000);
    let (mut both_reject, mut both_accept) = (0u32, 0u32);
    for seed in 0..u64::from(n) {
        let text = generate::mutate(&generate::program(seed / 3), seed);
        let (ours, pest) = (is_syntactically_valid(&text), grammar::accepts(&text));
        assert_eq!(
            ours, pest,
            "seed {seed}: parser {ours}, pest {pest} on\n{text}"
        );
        if ours {
            both_accept += 1
        } else {
            both_reject += 1
        }
    }
    let share = f64::from(both_reject) / f64::from(n);
    eprintln!(
        "mutants: {n}, both reject {both_reject} ({:.1}%), both accept {both_accept}",
        share * 100.0
    );
    // A grammar that accepted anything would sit near 0%.
    assert!(
        share > 0.4,
        "only {:.1}% of mutants rejected",
        share * 100.0
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_front_end_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes);
        let checked = check_text(&text);
        let _ = lever::diag::render(&checked.diagnostics, &checked.sources, false);
    }

    #[test]
    fn the_front_end_never_panics_on_token_soup(words in proptest::collection::vec(
        prop::sample::select(vec!["policy", "p", "{", "}", "limit", "std.llm.cost", "to", "$5", "near", "80%", "=>",
            "breach", "stop", "alert", "(", "ui", ")", "monitor", "m", "=", "sum", "step.cost", "where", "version", "1",
            "scope", "all", "import", "std.llm", "const", "C", "*", "/", "0", "9999999999", "\"s", "\"\\u{110000}\"",
            "override", "allow", "role", "\"r\"", "raise", "up", "for", "1h", "rate", ",", "1m", "-", "not", "in", "[", "]"]),
        0..60)) {
        let text = words.join(" ");
        let checked = check_text(&text);
        let _ = lever::diag::render(&checked.diagnostics, &checked.sources, false);
        prop_assert_eq!(is_syntactically_valid(&text), grammar::accepts(&text), "{}", text);
    }

    #[test]
    fn the_checker_never_panics_on_mutated_programs(seed in any::<u64>()) {
        let text = generate::mutate(&generate::program(seed), seed);
        let checked = check_text(&text);
        let _ = lever::diag::render(&checked.diagnostics, &checked.sources, false);
    }
}
