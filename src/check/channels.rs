//! Channels: each declared channel's kind and arguments (a webhook's `url` and `secret`,
//! an email's `to`, `from` and `subject`), literals or `env("VAR")`.

use super::hir;
use super::resolve::{Cx, Place};
use super::{Checker, Ns};
use crate::base::diag::{Code, Diagnostic};
use crate::base::source::Span;
use crate::syntax::ast::{self, ChannelKind, Unit};
use std::collections::BTreeMap;

/// Arguments each channel kind takes: (name, required).
pub(super) fn channel_params(kind: ChannelKind) -> &'static [(&'static str, bool)] {
    match kind {
        ChannelKind::Webhook => &[("url", true), ("secret", false)],
        ChannelKind::Slack => &[("url", true)],
        ChannelKind::Email => &[("to", true), ("from", false), ("subject", false)],
    }
}

impl<'a> Checker<'a> {
    pub(super) fn check_channels(&mut self) -> Option<Vec<hir::Channel>> {
        let mut out = Vec::new();
        let mut ok = true;
        for i in 0..self.channels.len() {
            match self.check_channel(i) {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    pub(super) fn check_channel(&mut self, index: usize) -> Option<hir::Channel> {
        let slot = self.channels.get(index)?;
        let (decl, span) = (slot.decl, slot.span);
        let file = span.file;
        let ns = self.ns_of(file);
        let params = channel_params(decl.kind);
        let mut args: Vec<(String, hir::ArgValue)> = Vec::new();
        let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
        let mut ok = true;
        for arg in &decl.args {
            let name = arg.name.text.as_str();
            if !params.iter().any(|(p, _)| *p == name) {
                let list: Vec<String> = params.iter().map(|(p, _)| format!("`{p}`")).collect();
                self.error(
                    Diagnostic::new(
                        Code::ChannelArgs,
                        arg.name.span,
                        format!("`{}` takes no argument `{name}`", decl.kind.name()),
                    )
                    .with_help(format!(
                        "`{}` takes {}",
                        decl.kind.name(),
                        list.join(", ")
                    )),
                );
                ok = false;
                continue;
            }
            if let Some(prev) = seen.insert(name, arg.span) {
                self.error(
                    Diagnostic::new(
                        Code::ChannelArgs,
                        arg.span,
                        format!("argument `{name}` given twice"),
                    )
                    .with_label(prev, "first given here"),
                );
                ok = false;
                continue;
            }
            match self.channel_arg(decl.kind, arg, file, ns) {
                Some(v) => args.push((name.to_string(), v)),
                None => ok = false,
            }
        }
        for (param, required) in params {
            if *required && !seen.contains_key(param) {
                self.error(
                    Diagnostic::new(
                        Code::ChannelArgs,
                        decl.name.span,
                        format!("channel `{}` needs `{param}`", decl.name.text),
                    )
                    .with_help(format!(
                        "e.g. `{}({param}: env(\"VAR\"))`",
                        decl.kind.name()
                    )),
                );
                ok = false;
            }
        }
        ok.then(|| hir::Channel {
            name: decl.name.text.clone(),
            kind: decl.kind,
            args,
            span,
        })
    }

    pub(super) fn channel_arg(
        &mut self,
        kind: ChannelKind,
        arg: &ast::ChannelArg,
        file: crate::base::source::FileId,
        ns: Ns,
    ) -> Option<hir::ArgValue> {
        let name = arg.name.text.as_str();
        let wants_list = kind == ChannelKind::Email && name == "to";
        match &arg.value {
            ast::ArgValue::Env(var) => {
                if wants_list {
                    return self
                        .arg_type(arg, "a list of addresses, e.g. `[\"oncall@example.com\"]`");
                }
                Some(hir::ArgValue::Env(var.value.clone()))
            }
            ast::ArgValue::List(items) => {
                if !wants_list {
                    return self.arg_type(arg, "a string or `env(\"VAR\")`");
                }
                if items.is_empty() {
                    return self.arg_type(arg, "at least one address");
                }
                Some(hir::ArgValue::List(
                    items.iter().map(|s| s.value.clone()).collect(),
                ))
            }
            ast::ArgValue::Expr(e) => {
                if name == "secret" {
                    self.error(
                        Diagnostic::new(Code::LiteralSecret, arg.span, "a secret is written as a literal")
                            .with_help("secrets never appear in policy source or artifacts: write `secret: env(\"VAR\")`"),
                    );
                    return None;
                }
                if wants_list {
                    return self
                        .arg_type(arg, "a list of addresses, e.g. `[\"oncall@example.com\"]`");
                }
                let cx = Cx {
                    file,
                    ns,
                    policy: None,
                    place: Place::Constant,
                };
                let lowered = self.lower(e, cx)?;
                if lowered.unit != Unit::String {
                    return self.arg_type(arg, "a string or `env(\"VAR\")`");
                }
                let hir::Value::Str(s) = self.fold(&lowered)? else {
                    return None;
                };
                if kind == ChannelKind::Slack && name == "url" {
                    self.error(
                        Diagnostic::new(Code::SecretInUrl, arg.span, "slack webhook URL written as a literal")
                            .with_help("a Slack incoming-webhook URL carries its secret: write `url: env(\"VAR\")`"),
                    );
                }
                Some(hir::ArgValue::Str(s))
            }
        }
    }

    pub(super) fn arg_type<T>(&mut self, arg: &ast::ChannelArg, wants: &str) -> Option<T> {
        self.error(Diagnostic::new(
            Code::ChannelArgs,
            arg.span,
            format!("argument `{}` takes {wants}", arg.name.text),
        ));
        None
    }
}
