//! The language server's analysis (`lever lsp`; docs/lsp.md); the stdio loop around it is
//! the command line's (`cli::lsp`).
//!
//! An open document is checked together with the other `.policy` files of its directory
//! (one namespace spans a set), the open buffers taking the place of their files. The
//! server publishes diagnostics as the document changes, and answers hover (a name's
//! declaration, with its unit), go to definition (monitors, channels, consts, signals,
//! policies), completion (keywords and declared names) and formatting (`lever fmt`).
//! Positions are UTF-16 code units, as the protocol's default says.

use crate::base::diag::{Diagnostic, Severity};
use crate::base::source::{FileId, FileRole, SourceFile, SourceSet};
use crate::check::{self, Checked};
use crate::syntax::ast::{ClauseKind, ItemKind};
use crate::syntax::lexer::{self, TokenKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `file:///a/b%20c.policy` as a path.
fn uri_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(PathBuf::from)
}

fn path_uri(path: &Path) -> String {
    let mut out = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A top-level or policy-private declaration.
struct Decl {
    /// As referred to: `gpt4_cost`, `std.llm.cost`, `ops`, `CAP`, `step.retries`.
    name: String,
    file: FileId,
    /// The declared name's span, and the whole declaration's.
    at: crate::base::source::Span,
    whole: crate::base::source::Span,
    what: &'static str,
}

/// One document checked with its set.
pub(crate) struct Analysis {
    checked: Checked,
    doc: FileId,
    decls: Vec<Decl>,
}

impl Analysis {
    pub(crate) fn of(docs: &BTreeMap<String, String>, uri: &str) -> Option<Analysis> {
        let text = docs.get(uri)?;
        let path = uri_path(uri).unwrap_or_else(|| PathBuf::from(uri));
        let mut set = SourceSet::default();
        let doc = set.add(SourceFile::new(
            path.display().to_string(),
            text.clone(),
            FileRole::User,
        ));
        // The other `.policy` files of the directory, open buffers first.
        if let Some(dir) = path.parent()
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            let mut siblings: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p != &path && p.extension().is_some_and(|e| e == "policy"))
                .collect();
            siblings.sort();
            for sibling in siblings {
                let open = docs.get(&path_uri(&sibling)).cloned();
                if let Some(text) = open.or_else(|| std::fs::read_to_string(&sibling).ok()) {
                    set.add(SourceFile::new(
                        sibling.display().to_string(),
                        text,
                        FileRole::User,
                    ));
                }
            }
        }
        let checked = check::check(set);
        let decls = declarations(&checked.sources);
        Some(Analysis {
            checked,
            doc,
            decls,
        })
    }

    fn text(&self) -> &str {
        self.checked
            .sources
            .get(self.doc)
            .map_or("", |f| f.text.as_str())
    }

    pub(crate) fn diagnostics(&self) -> Vec<Value> {
        self.checked
            .diagnostics
            .iter()
            .filter(|d| d.span.file == self.doc)
            .map(|d| self.diagnostic(d))
            .collect()
    }

    fn diagnostic(&self, d: &Diagnostic) -> Value {
        let mut message = d.message.clone();
        if let Some(help) = &d.help {
            message.push_str(&format!("\nhelp: {help}"));
        }
        json!({
            "range": range(self.text(), d.span.start as usize, d.span.end as usize),
            "severity": if d.severity() == Severity::Error { 1 } else { 2 },
            "code": d.code.as_str(),
            "source": "lever",
            "message": message,
        })
    }

    /// The (dotted) name under a position.
    fn name_at(&self, position: &Value) -> Option<String> {
        let text = self.text();
        let offset = offset(text, position)?;
        let (tokens, _) = lexer::lex(self.doc, text);
        let i = tokens.iter().position(|t| {
            (t.span.start as usize) <= offset
                && offset <= t.span.end as usize
                && t.kind == TokenKind::Word
        })?;
        // Extend over `a.b.c` both ways.
        let word = |j: usize| tokens.get(j).filter(|t| t.kind == TokenKind::Word);
        let dot = |j: usize| tokens.get(j).is_some_and(|t| t.kind == TokenKind::Dot);
        let mut first = i;
        while first >= 2 && dot(first - 1) && word(first - 2).is_some() {
            first -= 2;
        }
        let mut last = i;
        while dot(last + 1) && word(last + 2).is_some() {
            last += 2;
        }
        let start = tokens.get(first)?.span.start as usize;
        let end = tokens.get(last)?.span.end as usize;
        text.get(start..end).map(str::to_string)
    }

    fn decl(&self, name: &str) -> Option<&Decl> {
        self.decls.iter().find(|d| d.name == name)
    }

    fn unit_of(&self, name: &str) -> Option<&'static str> {
        let program = self.checked.program.as_ref()?;
        program
            .monitors
            .iter()
            .find(|m| m.id_name == name || m.name == name)
            .map(|m| m.unit.name())
            .or_else(|| {
                program
                    .fields
                    .iter()
                    .find(|f| f.name == name)
                    .map(|f| f.unit.name())
            })
    }

    pub(crate) fn hover(&self, position: &Value) -> Value {
        let Some(name) = self.name_at(position) else {
            return Value::Null;
        };
        let declared = self.decl(&name).map(|d| {
            let text = self.checked.sources.slice(d.whole);
            let first: Vec<&str> = text.lines().take(3).collect();
            (d.what, first.join("\n"))
        });
        let unit = self.unit_of(&name);
        if declared.is_none() && unit.is_none() {
            return Value::Null;
        }
        let mut value = String::new();
        if let Some((what, text)) = &declared {
            value.push_str(&format!("```lever\n{text}\n```\n{what} `{name}`"));
        } else {
            value.push_str(&format!("`{name}`"));
        }
        if let Some(u) = unit {
            value.push_str(&format!(": {u}"));
        }
        json!({ "contents": { "kind": "markdown", "value": value } })
    }

    pub(crate) fn definition(&self, position: &Value) -> Value {
        let Some(d) = self.name_at(position).and_then(|n| self.decl(&n)) else {
            return Value::Null;
        };
        let Some(file) = self.checked.sources.get(d.file) else {
            return Value::Null;
        };
        if file.role != FileRole::User {
            return Value::Null; // the embedded stdlib has no file to open
        }
        let path = PathBuf::from(&file.path);
        json!({
            "uri": path_uri(&path),
            "range": range(&file.text, d.at.start as usize, d.at.end as usize),
        })
    }

    pub(crate) fn completion(&self) -> Value {
        let mut items: Vec<Value> = Vec::new();
        let keyword = |w: &str| json!({ "label": w, "kind": 14 });
        for w in crate::syntax::parser::RESERVED {
            items.push(keyword(w));
        }
        for w in [
            "to",
            "all",
            "agent",
            "tenant",
            "api_key",
            "human_actor",
            "labels",
            "stop",
            "pause",
            "kill",
            "alert",
            "ui",
            "role",
            "actor",
            "raise",
            "suspend",
            "resume",
            "up",
            "for",
            "requires",
            "reason",
            "approvals",
            "run",
            "step",
            "expect",
            "approve",
            "end",
            "spent",
            "per",
            "repeat",
            "after",
        ] {
            items.push(keyword(w));
        }
        for d in &self.decls {
            let kind = match d.what {
                "monitor" => 6,
                "channel" => 20,
                "const" => 21,
                "policy" => 7,
                _ => 5,
            };
            items.push(json!({ "label": d.name, "kind": kind, "detail": d.what }));
        }
        if let Some(program) = &self.checked.program {
            for f in &program.fields {
                items.push(json!({ "label": f.name, "kind": 5, "detail": f.unit.name() }));
            }
        }
        Value::Array(items)
    }

    pub(crate) fn formatting(&self) -> Value {
        let text = self.text();
        match crate::author::fmt::format(text) {
            Ok(out) if out != text => json!([{
                "range": range(text, 0, text.len()),
                "newText": out,
            }]),
            _ => json!([]),
        }
    }
}

/// Declarations of every file of a checked set: top-level items (stdlib ones qualified by
/// their module) and each policy's private monitors.
fn declarations(sources: &SourceSet) -> Vec<Decl> {
    let mut out = Vec::new();
    for id in sources.ids() {
        let Some(file) = sources.get(id) else {
            continue;
        };
        let prefix = match &file.role {
            FileRole::Stdlib(module) => format!("{module}."),
            _ => String::new(),
        };
        let (tree, _) = crate::syntax::parse_file(id, &file.text);
        for item in &tree.items {
            let (name, at, what) = match &item.kind {
                ItemKind::Monitor(m) => (m.name.text.clone(), m.name.span, "monitor"),
                ItemKind::Const { name, .. } => (name.text.clone(), name.span, "const"),
                ItemKind::Channel(c) => (c.name.text.clone(), c.name.span, "channel"),
                ItemKind::Signal { name, .. } => {
                    (format!("step.{}", name.text), name.span, "signal")
                }
                ItemKind::Policy(p) => {
                    for clause in &p.clauses {
                        if let ClauseKind::Monitor(m) = &clause.kind {
                            out.push(Decl {
                                name: m.name.text.clone(),
                                file: id,
                                at: m.name.span,
                                whole: clause.span,
                                what: "monitor",
                            });
                        }
                    }
                    (p.name.text.clone(), p.name.span, "policy")
                }
                ItemKind::Extern { name, .. } => (name.dotted(), name.span, "field"),
                ItemKind::Let { name, .. } => (name.dotted(), name.span, "field"),
                _ => continue,
            };
            let name = if what == "field" || what == "signal" {
                name
            } else {
                format!("{prefix}{name}")
            };
            out.push(Decl {
                name,
                file: id,
                at,
                whole: item.span,
                what,
            });
        }
    }
    out
}

/// A byte offset's LSP position: line, and UTF-16 code units into it.
fn position(text: &str, offset: usize) -> Value {
    let before = text.get(..offset.min(text.len())).unwrap_or("");
    let line = before.matches('\n').count();
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    let character: usize = before
        .get(start..)
        .unwrap_or("")
        .chars()
        .map(char::len_utf16)
        .sum();
    json!({ "line": line, "character": character })
}

fn range(text: &str, start: usize, end: usize) -> Value {
    json!({ "start": position(text, start), "end": position(text, end) })
}

/// An LSP position's byte offset.
fn offset(text: &str, position: &Value) -> Option<usize> {
    let line = usize::try_from(at(position, &["line"]).as_u64()?).ok()?;
    let character = usize::try_from(at(position, &["character"]).as_u64()?).ok()?;
    let mut at = 0;
    for (i, l) in text.split('\n').enumerate() {
        if i == line {
            let mut units = 0;
            for (b, c) in l.char_indices() {
                if units >= character {
                    return Some(at + b);
                }
                units += c.len_utf16();
            }
            return Some(at + l.len());
        }
        at += l.len() + 1;
    }
    None
}

/// The value at a path of object keys, or `null`.
pub(crate) fn at<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
    static NULL: Value = Value::Null;
    path.iter().try_fold(v, |v, k| v.get(k)).unwrap_or(&NULL)
}
