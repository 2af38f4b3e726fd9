//! Check: resolve names, type-check units, enforce clause rules, and analyze a policy set.
//!
//! Input is a [`SourceSet`] of user files (and any stdlib files named on the command line);
//! the embedded stdlib modules the set imports are added here. Output is the checked
//! [`hir::Program`] when there are no errors, and every diagnostic found. The checker
//! never stops at the first error and never panics on user input.

pub mod analyze;
pub mod hir;
mod policy;
pub mod testing;
mod types;

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

    fn ns_of(&mut self, file: FileId) -> Ns {
        match self.role(file) {
            FileRole::User => Ns::User,
            FileRole::Stdlib(name) => Ns::Module(self.module_index(&name)),
        }
    }

    fn module_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.module_names.iter().position(|m| m == name) {
            return i;
        }
        self.module_names.push(name.to_string());
        self.module_ns.push(BTreeMap::new());
        self.module_names.len() - 1
    }

    fn namespace(&mut self, ns: Ns) -> &mut BTreeMap<String, DeclEntry> {
        match ns {
            Ns::User => &mut self.user,
            Ns::Module(i) => {
                // `module_index` creates every namespace before it is named.
                if self.module_ns.len() <= i {
                    self.module_ns.resize_with(i + 1, BTreeMap::new);
                }
                self.module_ns.get_mut(i).unwrap_or(&mut self.user)
            }
        }
    }

    fn declare(&mut self, ns: Ns, name: &ast::Name, decl: Decl) {
        let entry = DeclEntry {
            decl,
            span: name.span,
        };
        if name.text == "ui" && matches!(decl, Decl::Channel(_)) {
            self.error(
                Diagnostic::new(
                    Code::DuplicateName,
                    name.span,
                    "duplicate name `ui`: the `ui` channel is built in",
                )
                .with_help("choose another name; `alert(ui)` always reaches the in-app feed"),
            );
            return;
        }
        if let Some(prev) = self.namespace(ns).get(&name.text).copied() {
            self.error(
                Diagnostic::new(
                    Code::DuplicateName,
                    name.span,
                    format!("duplicate name `{}`", name.text),
                )
                .with_label(prev.span, "first declared here")
                .with_help(
                    "all top-level items of a policy set share one namespace; rename one of them",
                ),
            );
            return;
        }
        self.namespace(ns).insert(name.text.clone(), entry);
    }

    /// Collects every declaration of every file, in file order.
    fn declare_all(&mut self) {
        // The stdlib first, so that a user's clash is reported at the user's name.
        let files = self.files;
        let mut order: Vec<usize> = (0..files.len()).collect();
        order.sort_by_key(|i| files.get(*i).map(|f| self.role(f.file) == FileRole::User));
        for index in order {
            let Some(file) = files.get(index) else {
                continue;
            };
            let ns = self.ns_of(file.file);
            let is_user = ns == Ns::User;
            for item in &file.items {
                self.declare_item(index, file.file, ns, is_user, item);
            }
        }
    }

    fn declare_item(
        &mut self,
        index: usize,
        file: FileId,
        ns: Ns,
        is_user: bool,
        item: &'a ast::Item,
    ) {
        use ast::ItemKind as K;
        match &item.kind {
            K::Import(q) => self.declare_import(index, q),
            K::Signal { name, unit } => self.declare_signal(ns, name, *unit),
            K::Monitor(m) => {
                let id_name = match ns {
                    Ns::User => m.name.text.clone(),
                    Ns::Module(i) => format!(
                        "{}.{}",
                        self.module_names.get(i).map_or("", String::as_str),
                        m.name.text
                    ),
                };
                let idx = self.push_monitor(id_name, m, None, file, ns);
                self.declare(ns, &m.name, Decl::Monitor(idx));
            }
            K::Const { name, value } => {
                self.consts.push(ConstSlot {
                    name: name.text.clone(),
                    expr: value,
                    file,
                    ns,
                    span: name.span,
                    state: State::Todo,
                });
                self.declare(ns, name, Decl::Const(self.consts.len() - 1));
            }
            K::Channel(c) => {
                self.channels.push(ChannelSlot {
                    decl: c,
                    span: item.span,
                });
                self.declare(ns, &c.name, Decl::Channel(self.channels.len() - 1));
            }
            K::Policy(p) => self.declare_policy(file, ns, p, item.span),
            K::Test { .. } => {}
            K::Extern { name, unit } => {
                if is_user {
                    self.stdlib_only(item.span, "extern");
                    return;
                }
                self.declare_field(name, FieldDef::Extern(unit.unit));
            }
            K::Let { name, value } => {
                if is_user {
                    self.stdlib_only(item.span, "let");
                    return;
                }
                self.declare_field(name, FieldDef::Let(value, file));
            }
        }
    }

    fn stdlib_only(&mut self, span: Span, what: &str) {
        self.error(
            Diagnostic::new(Code::StdlibOnly, span, format!("`{what}` is allowed only in the stdlib"))
                .with_help("declare a custom step field with `signal NAME: unit`; it is read from the step's `metrics`"),
        );
    }

    fn declare_import(&mut self, index: usize, q: &ast::QName) {
        let module = q.dotted();
        if stdlib::module(&module).is_none()
            && !self.module_names.contains(&module)
            && !self
                .sources
                .files
                .iter()
                .any(|f| f.role == FileRole::Stdlib(module.clone()))
        {
            let known: Vec<&str> = stdlib::MODULES
                .iter()
                .map(|(n, _, _)| *n)
                .filter(|n| *n != stdlib::PRELUDE)
                .collect();
            self.error(
                Diagnostic::new(
                    Code::UnknownModule,
                    q.span,
                    format!("unknown module `{module}`"),
                )
                .with_help(format!(
                    "`import` names embedded stdlib modules: {}",
                    known.join(", ")
                )),
            );
            return;
        }
        if let Some(set) = self.imports.get_mut(index) {
            set.insert(module);
        }
    }

    fn declare_signal(&mut self, ns: Ns, name: &ast::Name, unit: ast::UnitName) {
        if !unit.unit.is_number() {
            self.error(
                Diagnostic::new(
                    Code::BadOperand,
                    unit.span,
                    format!("a signal is a number; `{}` is not", unit.unit.name()),
                )
                .with_help("signals take `count`, `tokens`, `usd` or `duration`"),
            );
        }
        let field = ast::QName {
            parts: vec![
                ast::Name {
                    text: "step".into(),
                    span: name.span,
                },
                name.clone(),
            ],
            span: name.span,
        };
        if let Some(id) = self.declare_field(&field, FieldDef::Metric(name.text.clone(), unit.unit))
        {
            self.declare(ns, name, Decl::Signal(id));
        }
    }

    fn declare_field(&mut self, name: &ast::QName, def: FieldDef<'a>) -> Option<hir::FieldId> {
        let dotted = name.dotted();
        let first = name.parts.first().map(|p| p.text.as_str());
        if name.parts.len() != 2 || !matches!(first, Some("step" | "run")) {
            self.error(
                Diagnostic::new(
                    Code::UnknownExtern,
                    name.span,
                    format!("`{dotted}` is not a step or run field"),
                )
                .with_help("fields are named `step.NAME` or `run.NAME`"),
            );
            return None;
        }
        if let FieldDef::Extern(unit) = &def {
            match stdlib::event_field(&dotted) {
                Some(u) if u == *unit => {}
                Some(u) => {
                    self.error(Diagnostic::new(
                        Code::UnknownExtern,
                        name.span,
                        format!(
                            "`{dotted}` is read from events as `{}`, not `{}`",
                            u.name(),
                            unit.name()
                        ),
                    ));
                    return None;
                }
                None => {
                    self.error(
                        Diagnostic::new(
                            Code::UnknownExtern,
                            name.span,
                            format!("the event reader has no field `{dotted}`"),
                        )
                        .with_help(
                            "an `extern` binds a field the runtime reads from events (DESIGN §3)",
                        ),
                    );
                    return None;
                }
            }
        }
        if let Some(prev) = self
            .field_names
            .get(&dotted)
            .and_then(|id| self.fields.get(id.0 as usize))
        {
            let prev_span = prev.span;
            self.error(
                Diagnostic::new(
                    Code::DuplicateName,
                    name.span,
                    format!("duplicate field `{dotted}`"),
                )
                .with_label(prev_span, "first declared here"),
            );
            return None;
        }
        let id = hir::FieldId(u32::try_from(self.fields.len()).unwrap_or(u32::MAX));
        self.fields.push(FieldSlot {
            name: dotted.clone(),
            span: name.span,
            def,
            state: State::Todo,
        });
        self.field_names.insert(dotted, id);
        Some(id)
    }

    fn push_monitor(
        &mut self,
        id_name: String,
        m: &'a ast::MonitorDecl,
        owner: Option<usize>,
        file: FileId,
        ns: Ns,
    ) -> usize {
        self.monitors.push(MonitorSlot {
            id_name,
            name: m.name.text.clone(),
            owner,
            expr: &m.expr,
            file,
            ns,
            span: m.name.span,
            state: State::Todo,
        });
        self.monitors.len() - 1
    }

    fn declare_policy(&mut self, file: FileId, ns: Ns, p: &'a ast::PolicyDecl, span: Span) {
        if ns != Ns::User {
            self.error(Diagnostic::new(
                Code::StdlibOnly,
                p.name.span,
                "a stdlib module declares no policies",
            ));
            return;
        }
        let index = self.policies.len();
        self.declare(ns, &p.name, Decl::Policy(index));
        let mut private: BTreeMap<String, usize> = BTreeMap::new();
        for clause in &p.clauses {
            let ast::ClauseKind::Monitor(m) = &clause.kind else {
                continue;
            };
            if let Some(prev) = private
                .get(&m.name.text)
                .and_then(|i| self.monitors.get(*i))
            {
                let prev_span = prev.span;
                self.error(
                    Diagnostic::new(
                        Code::DuplicateName,
                        m.name.span,
                        format!(
                            "duplicate monitor `{}` in policy `{}`",
                            m.name.text, p.name.text
                        ),
                    )
                    .with_label(prev_span, "first declared here"),
                );
                continue;
            }
            let id_name = format!("{}/{}", p.name.text, m.name.text);
            let idx = self.push_monitor(id_name, m, Some(index), file, ns);
            private.insert(m.name.text.clone(), idx);
        }
        self.policies.push(PolicySlot {
            decl: p,
            file,
            span,
            private,
        });
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
