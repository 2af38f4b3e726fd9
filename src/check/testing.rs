//! Policy tests in `lever check`: each body parsed (E0501 when it does not parse or is not
//! shaped as a test) and every policy, limit and channel it names checked against the set
//! (E0502).

use crate::base::diag::{Code, Diagnostic};
use crate::base::source::{FileId, FileRole, SourceSet, Span};
use crate::syntax::ast;
use crate::syntax::testing::{Expectation, Statement, StmtKind, Test};

/// The tests of the set's own files (not the stdlib's), parsed from the trees `files`
/// (`files[i]` is `FileId(i)`), with a diagnostic for each body that does not parse or
/// is not shaped as a test: `run` first and once, an event before any `expect`.
pub(crate) fn collect(sources: &SourceSet, files: &[ast::File]) -> (Vec<Test>, Vec<Diagnostic>) {
    let mut tests = Vec::new();
    let mut diags = Vec::new();
    for (i, tree) in files.iter().enumerate() {
        let id = FileId(u32::try_from(i).unwrap_or(u32::MAX));
        let Some(file) = sources.get(id) else {
            continue;
        };
        if file.role != FileRole::User {
            continue;
        }
        let mut tokens = None;
        for item in &tree.items {
            let ast::ItemKind::Test { name, body } = &item.kind else {
                continue;
            };
            let all = tokens.get_or_insert_with(|| crate::syntax::lexer::lex(id, &file.text).0);
            // The body's tokens, without its braces.
            let inner: Vec<_> = all
                .iter()
                .filter(|t| t.span.start > body.start && t.span.end < body.end)
                .cloned()
                .collect();
            let end = Span::new(id, body.end.saturating_sub(1) as usize, body.end as usize);
            match crate::syntax::testing::parse(&inner, &file.text, end) {
                Ok(statements) => {
                    if let Some(d) = shape(&statements, name.span) {
                        diags.push(d);
                        continue;
                    }
                    tests.push(Test {
                        name: name.value.clone(),
                        path: file.path.clone(),
                        line: file.line_col(item.span.start as usize).0,
                        statements,
                    });
                }
                Err(d) => diags.push(d),
            }
        }
    }
    (tests, diags)
}

fn shape(statements: &[Statement], name: Span) -> Option<Diagnostic> {
    let bad =
        |span: Span, why: &str| Some(Diagnostic::new(Code::TestSyntax, span, why.to_string()));
    match statements.first() {
        Some(Statement {
            kind: StmtKind::Run { .. },
            ..
        }) => {}
        Some(s) => return bad(s.span, "a test starts with `run`: the run it drives"),
        None => return bad(name, "an empty test: start it with `run`"),
    }
    let mut ended = false;
    for s in statements.iter().skip(1) {
        match &s.kind {
            // Another run (of the same budget's key, say): the statements after it drive it.
            StmtKind::Run { .. } => ended = false,
            StmtKind::Expect(..) => {}
            _ if ended => return bad(s.span, "nothing but `expect` or another `run` after `end`"),
            StmtKind::End { .. } => ended = true,
            _ => {}
        }
    }
    None
}

/// The names tests refer to that the checked program does not declare (E0502): policies,
/// their limits, and channels.
pub(crate) fn validate(tests: &[Test], program: &crate::check::hir::Program) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let policy = |name: &str| program.policies.iter().find(|p| p.name == name);
    let limit_known = |limit: &str, of: Option<&str>| {
        program
            .policies
            .iter()
            .filter(|p| of.is_none_or(|name| p.name == name))
            .any(|p| p.limits.iter().any(|l| l.name == limit))
    };
    for t in tests {
        for s in &t.statements {
            let unknown = |what: String| Diagnostic::new(Code::TestUnknownName, s.span, what);
            match &s.kind {
                StmtKind::Override {
                    policy: p, limit, ..
                } => {
                    if policy(p).is_none() {
                        out.push(unknown(format!("no policy `{p}`")));
                    } else if let Some(l) = limit
                        && !limit_known(l, Some(p))
                    {
                        out.push(unknown(format!("policy `{p}` has no limit `{l}`")));
                    }
                }
                StmtKind::Expect(
                    Expectation::Signal {
                        limit, policy: of, ..
                    },
                    _,
                ) => {
                    if let Some(p) = of
                        && policy(p).is_none()
                    {
                        out.push(unknown(format!("no policy `{p}`")));
                    } else if let Some(l) = limit
                        && !limit_known(l, of.as_deref())
                    {
                        let whose = of
                            .as_deref()
                            .map_or("any policy".to_string(), |p| format!("policy `{p}`"));
                        out.push(unknown(format!("{whose} has no limit `{l}`")));
                    }
                }
                StmtKind::Spent {
                    policy: p, limit, ..
                } => match policy(p) {
                    None => out.push(unknown(format!("no policy `{p}`"))),
                    Some(pol) => match pol.limits.iter().find(|l| &l.name == limit) {
                        None => out.push(unknown(format!("policy `{p}` has no limit `{limit}`"))),
                        Some(l) if l.budget.is_none() => out.push(unknown(format!(
                            "limit `{limit}` of policy `{p}` is a limit of each run, not a budget across runs (`per ...`)"
                        ))),
                        Some(_) => {}
                    },
                },
                StmtKind::Expect(Expectation::Alert { channel, .. }, _)
                    if channel != "ui" && !program.channels.iter().any(|c| &c.name == channel) =>
                {
                    out.push(unknown(format!("no channel `{channel}`")));
                }
                _ => {}
            }
        }
    }
    out
}
