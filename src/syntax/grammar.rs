//! The normative pest grammar (`grammar/lever.pest`), compiled for agreement testing.
//!
//! The production parser is `super::parser`; this one exists so that tests and fuzzing
//! can hold the two to the same context-free language. It is never on a command's path.

use pest::Parser as _;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/lever.pest"]
pub(crate) struct LeverGrammar;

/// Whether the normative grammar accepts the text as a whole file.
pub fn accepts(text: &str) -> bool {
    LeverGrammar::parse(Rule::file, text).is_ok()
}
