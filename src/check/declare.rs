//! Declaring: every item of every file entered into its namespace (user files, imported
//! stdlib modules, policy-private names), with duplicates and misplaced items reported.

use super::*;

impl<'a> Checker<'a> {
    pub(super) fn ns_of(&mut self, file: FileId) -> Ns {
        match self.role(file) {
            FileRole::User => Ns::User,
            FileRole::Stdlib(name) => Ns::Module(self.module_index(&name)),
        }
    }

    pub(super) fn module_index(&mut self, name: &str) -> usize {
        if let Some(i) = self.module_names.iter().position(|m| m == name) {
            return i;
        }
        self.module_names.push(name.to_string());
        self.module_ns.push(BTreeMap::new());
        self.module_names.len() - 1
    }

    pub(super) fn namespace(&mut self, ns: Ns) -> &mut BTreeMap<String, DeclEntry> {
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

    pub(super) fn declare(&mut self, ns: Ns, name: &ast::Name, decl: Decl) {
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
    pub(super) fn declare_all(&mut self) {
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

    pub(super) fn declare_item(
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

    pub(super) fn stdlib_only(&mut self, span: Span, what: &str) {
        self.error(
            Diagnostic::new(Code::StdlibOnly, span, format!("`{what}` is allowed only in the stdlib"))
                .with_help("declare a custom step field with `signal NAME: unit`; it is read from the step's `metrics`"),
        );
    }

    pub(super) fn declare_import(&mut self, index: usize, q: &ast::QName) {
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

    pub(super) fn declare_signal(&mut self, ns: Ns, name: &ast::Name, unit: ast::UnitName) {
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

    pub(super) fn declare_field(
        &mut self,
        name: &ast::QName,
        def: FieldDef<'a>,
    ) -> Option<hir::FieldId> {
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

    pub(super) fn push_monitor(
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

    pub(super) fn declare_policy(
        &mut self,
        file: FileId,
        ns: Ns,
        p: &'a ast::PolicyDecl,
        span: Span,
    ) {
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
}
