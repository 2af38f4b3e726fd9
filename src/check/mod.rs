//! Check: resolve names, type-check units, enforce clause rules, and analyze a policy set.
//!
//! Input is a [`SourceSet`] of user files (and any stdlib files named on the command line);
//! the embedded stdlib modules the set imports are added here. Output is the checked
//! `hir::Program` when there are no errors, and every diagnostic found. The checker
//! never stops at the first error and never panics on user input.

pub(crate) mod analyze;
mod budget;
mod channels;
mod declare;
mod fold;
pub(crate) mod hir;
mod policy;
mod resolve;
mod scope;
pub(crate) mod testing;
mod units;

use crate::base::diag::{self, Code, Diagnostic};
use crate::base::source::{FileId, FileRole, SourceFile, SourceSet, Span};
use crate::stdlib;
use crate::syntax::{self, ast};
use std::collections::{BTreeMap, BTreeSet};

/// The result of checking a policy set.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The sources, with the embedded stdlib modules the set used appended.
    pub sources: SourceSet,
    /// The checked program; `None` when any error was found.
    pub program: Option<hir::Program>,
    /// Errors and warnings, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
    /// The policy tests of the set's own files whose bodies read cleanly (`lever test`).
    pub tests: Vec<crate::syntax::testing::Test>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

/// Checks a policy set.
pub fn check(sources: SourceSet) -> Checked {
    let (sources, files, mut diagnostics) = load(sources);
    let (tests, test_diags) = testing::collect(&sources, &files);
    diagnostics.extend(test_diags);
    let mut checker = Checker::new(&sources, &files);
    checker.declare_all();
    let program = checker.finish();
    diagnostics.append(&mut checker.diags);
    if let Some(p) = &program {
        diagnostics.extend(analyze::analyze(p));
        diagnostics.extend(testing::validate(&tests, p));
    }
    diag::sort(&mut diagnostics);
    let has_errors = diagnostics.iter().any(Diagnostic::is_error);
    Checked {
        sources,
        program: if has_errors { None } else { program },
        diagnostics,
        tests,
    }
}

/// Parses every file and adds the embedded stdlib modules the set needs (the prelude
/// always, others when imported and not given on the command line).
fn load(mut sources: SourceSet) -> (SourceSet, Vec<ast::File>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    let mut present: BTreeSet<String> = BTreeSet::new();
    // Imported modules; the prelude, always wanted, is loaded first.
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    loop {
        // Files are parsed in id order, so `files[i]` is the tree of `FileId(i)`.
        while let Some(file) = sources.files.get(files.len()) {
            let id = FileId(u32::try_from(files.len()).unwrap_or(u32::MAX));
            if let FileRole::Stdlib(name) = &file.role {
                present.insert(name.clone());
            }
            let (tree, parse_diags) = syntax::parse_file(id, &file.text);
            diags.extend(parse_diags);
            for item in &tree.items {
                if let ast::ItemKind::Import(q) = &item.kind {
                    wanted.insert(q.dotted());
                }
            }
            files.push(tree);
        }
        let missing = std::iter::once(stdlib::PRELUDE)
            .chain(wanted.iter().map(String::as_str))
            .find(|m| !present.contains(*m) && stdlib::module(m).is_some())
            .map(str::to_string);
        let Some(module) = missing else { break };
        if let Some((path, text)) = stdlib::module(&module) {
            sources.add(SourceFile::new(
                path,
                text,
                FileRole::Stdlib(module.clone()),
            ));
        }
        present.insert(module);
    }
    (sources, files, diags)
}

/// A namespace: the user set's, or one stdlib module's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    User,
    Module(usize),
}

/// What a top-level name declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decl {
    Const(usize),
    Monitor(usize),
    Channel(usize),
    Signal(hir::FieldId),
    Policy(usize),
}

#[derive(Debug, Clone, Copy)]
struct DeclEntry {
    decl: Decl,
    span: Span,
}

/// Resolution progress of a lazily checked definition, for cycle detection.
#[derive(Debug, Clone)]
enum State<T> {
    Todo,
    Busy,
    Done(Option<T>),
}

struct ConstSlot<'a> {
    name: String,
    expr: &'a ast::Expr,
    file: FileId,
    ns: Ns,
    span: Span,
    state: State<(ast::Unit, hir::Value)>,
}

struct MonitorSlot<'a> {
    id_name: String,
    name: String,
    owner: Option<usize>,
    expr: &'a ast::Expr,
    file: FileId,
    ns: Ns,
    span: Span,
    state: State<hir::Monitor>,
}

enum FieldDef<'a> {
    Extern(ast::Unit),
    Metric(String, ast::Unit),
    Let(&'a ast::Expr, FileId),
}

struct FieldSlot<'a> {
    name: String,
    span: Span,
    def: FieldDef<'a>,
    state: State<(ast::Unit, hir::FieldSource)>,
}

struct PolicySlot<'a> {
    decl: &'a ast::PolicyDecl,
    file: FileId,
    span: Span,
    /// Private monitors by name, as indices into `Checker::monitors`.
    private: BTreeMap<String, usize>,
}

struct ChannelSlot<'a> {
    decl: &'a ast::ChannelDecl,
    span: Span,
}

/// The checker's state over one policy set.
struct Checker<'a> {
    sources: &'a SourceSet,
    files: &'a [ast::File],
    diags: Vec<Diagnostic>,
    user: BTreeMap<String, DeclEntry>,
    module_names: Vec<String>,
    module_ns: Vec<BTreeMap<String, DeclEntry>>,
    /// Modules each file imports, by file index.
    imports: Vec<BTreeSet<String>>,
    field_names: BTreeMap<String, hir::FieldId>,
    fields: Vec<FieldSlot<'a>>,
    consts: Vec<ConstSlot<'a>>,
    monitors: Vec<MonitorSlot<'a>>,
    channels: Vec<ChannelSlot<'a>>,
    policies: Vec<PolicySlot<'a>>,
}

impl<'a> Checker<'a> {
    fn new(sources: &'a SourceSet, files: &'a [ast::File]) -> Checker<'a> {
        Checker {
            sources,
            files,
            diags: Vec::new(),
            user: BTreeMap::new(),
            module_names: Vec::new(),
            module_ns: Vec::new(),
            imports: vec![BTreeSet::new(); files.len()],
            field_names: BTreeMap::new(),
            fields: Vec::new(),
            consts: Vec::new(),
            monitors: Vec::new(),
            channels: Vec::new(),
            policies: Vec::new(),
        }
    }

    fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn role(&self, file: FileId) -> FileRole {
        self.sources
            .get(file)
            .map_or(FileRole::User, |f| f.role.clone())
    }

    /// Resolves everything and assembles the program (even when some parts failed, so
    /// that every error is found; the caller drops it if there were errors).
    fn finish(&mut self) -> Option<hir::Program> {
        // Top-level names that a private monitor would shadow are known only now.
        self.check_private_shadowing();
        for id in 0..self.fields.len() {
            self.resolve_field(hir::FieldId(u32::try_from(id).unwrap_or(u32::MAX)));
        }
        for i in 0..self.consts.len() {
            self.resolve_const(i);
        }
        for i in 0..self.monitors.len() {
            self.resolve_monitor(i);
        }
        let channels = self.check_channels();
        let policies = self.check_policies();
        let fields = self
            .fields
            .iter()
            .map(|f| match &f.state {
                State::Done(Some((unit, source))) => Some(hir::Field {
                    name: f.name.clone(),
                    unit: *unit,
                    source: source.clone(),
                    span: f.span,
                }),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let monitors = self
            .monitors
            .iter()
            .map(|m| match &m.state {
                State::Done(Some(h)) => Some(h.clone()),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(hir::Program {
            fields,
            monitors,
            channels: channels?,
            policies: policies?,
        })
    }

    fn check_private_shadowing(&mut self) {
        let mut found = Vec::new();
        for p in &self.policies {
            for (name, idx) in &p.private {
                if let (Some(prev), Some(m)) = (self.user.get(name), self.monitors.get(*idx)) {
                    found.push(
                        Diagnostic::new(
                            Code::ShadowsTopLevel,
                            m.span,
                            format!("monitor `{name}` shadows a top-level name"),
                        )
                        .with_label(prev.span, "top-level name declared here")
                        .with_help("rename the policy's monitor"),
                    );
                }
            }
        }
        self.diags.extend(found);
    }
}
