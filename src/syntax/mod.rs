//! Syntax: lexing and parsing `.policy` source into a tree with spans.
//!
//! Owns tokens, the AST, the recursive-descent parser, and the statements of test bodies
//! (`testing`). Knows nothing of names, units or
//! policies' meaning; never fails as a whole (it returns a tree and diagnostics).

pub(crate) mod ast;
pub mod grammar;
pub mod lexer;
pub(crate) mod parser;
pub(crate) mod testing;

use crate::base::diag::Diagnostic;
use crate::base::source::FileId;

/// Lexes and parses one file.
pub(crate) fn parse_file(file: FileId, text: &str) -> (ast::File, Vec<Diagnostic>) {
    let (tokens, mut diags) = lexer::lex(file, text);
    let (tree, parse_diags) = parser::parse(file, text, &tokens);
    diags.extend(parse_diags);
    (tree, diags)
}

/// Whether the file is accepted by the context-free grammar: no lexical or syntax error.
pub fn is_syntactically_valid(text: &str) -> bool {
    let (_, diags) = parse_file(FileId(0), text);
    !diags.iter().any(|d| d.code.is_syntax())
}
