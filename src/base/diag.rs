//! Diagnostics as data: every front-end stage returns its output and a list of these.
//!
//! A diagnostic has a stable code, a severity, a primary span, labelled secondary spans and
//! an optional help line. Only the CLI edge renders them: ariadne for people, JSON for
//! machines, both from the same value. Codes are documented in `docs/diagnostics.md`.

use crate::base::source::{SourceSet, Span};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Severity {
    Error,
    Warning,
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $sev:ident, $title:literal;)*) => {
        /// A stable diagnostic code.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($variant),* }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The code as printed (`E0201`).
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code),* }
            }

            /// Errors fail `lever check`; warnings do not.
            pub(crate) fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev),* }
            }

            /// A short title, as used in `docs/diagnostics.md`.
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title),* }
            }
        }
    };
}

codes! {
    // Lexical and syntax errors: the context-free language, as the pest grammar decides it.
    UnexpectedChar = "E0001", Error, "unexpected character";
    UnterminatedString = "E0002", Error, "unterminated string";
    InvalidEscape = "E0003", Error, "invalid escape in string";
    UnterminatedComment = "E0004", Error, "unterminated block comment";
    TooManyDecimals = "E0005", Error, "more than 9 decimal places";
    BadNumber = "E0006", Error, "malformed number";
    Syntax = "E0010", Error, "syntax error";
    // Literal values the grammar accepts but Lever cannot represent.
    NumberOutOfRange = "E0050", Error, "number out of range";
    InvalidCodePoint = "E0051", Error, "invalid unicode escape";
    // Names.
    DuplicateName = "E0101", Error, "duplicate name";
    UnknownName = "E0102", Error, "unknown name";
    UnknownModule = "E0103", Error, "unknown module";
    StdlibOnly = "E0104", Error, "declaration allowed only in the stdlib";
    ShadowsTopLevel = "E0105", Error, "private monitor shadows a top-level name";
    Cycle = "E0106", Error, "cyclic definition";
    UnknownChannel = "E0107", Error, "unknown channel";
    UnknownExtern = "E0108", Error, "unknown extern field";
    // Types and units.
    UnitMismatch = "E0201", Error, "unit mismatch";
    BadOperand = "E0202", Error, "operator does not apply to this type";
    StepOutsideAggregate = "E0203", Error, "`step` field outside an aggregate";
    NestedAggregate = "E0204", Error, "nested aggregate";
    MonitorInFilter = "E0205", Error, "monitor read inside an aggregate";
    NotConstant = "E0206", Error, "value is not a constant";
    MisplacedPercent = "E0207", Error, "percentage outside `near` and `up to`";
    LimitNotNumeric = "E0208", Error, "limit on a monitor that is not a number";
    BadWindow = "E0209", Error, "window out of range";
    ConstEval = "E0210", Error, "constant cannot be evaluated";
    BadIndex = "E0211", Error, "only `run.labels` can be indexed";
    NoAggregate = "E0212", Error, "monitor reads no step";
    // Clauses.
    MissingVersion = "E0301", Error, "missing `version`";
    MissingScope = "E0302", Error, "missing `scope`";
    DuplicateClause = "E0303", Error, "clause given twice";
    BadVersion = "E0304", Error, "version must be a positive integer";
    EmptyLimit = "E0305", Error, "limit without `near` or `breach`";
    TwoEnforcements = "E0306", Error, "more than one enforcement";
    NearEnforces = "E0307", Error, "`near` may only alert";
    NearOutOfRange = "E0308", Error, "`near` percentage out of range";
    DuplicateLimit = "E0309", Error, "two limits on one monitor";
    OverrideUnknownLimit = "E0310", Error, "override names no limit of the policy";
    LiteralSecret = "E0311", Error, "literal secret";
    ForOnResume = "E0312", Error, "`for` on a `resume` rule";
    CeilingNotARaise = "E0313", Error, "raise ceiling not above the limit";
    ChannelArgs = "E0314", Error, "bad channel arguments";
    DuplicateChannel = "E0315", Error, "channel listed twice";
    BadDuration = "E0316", Error, "duration out of range";
    BadCount = "E0317", Error, "integer out of range";
    BudgetMonitor = "E0318", Error, "budget on a monitor that is not a lone sum or count";
    BudgetWindow = "E0319", Error, "budget window out of range";
    BudgetKeyTwice = "E0320", Error, "budget key names an attribute twice";
    // Policy tests (`test "name" { ... }`, docs/testing.md).
    TestSyntax = "E0501", Error, "malformed test";
    TestUnknownName = "E0502", Error, "test names an unknown policy, limit or channel";
    // Analysis (warnings).
    TieConflict = "W0401", Warning, "overlapping scopes tie with disagreeing limits";
    NonPositiveLimit = "W0402", Warning, "limit at or below zero";
    ShadowedLimit = "W0403", Warning, "limit can never fire";
    SecretInUrl = "W0404", Warning, "webhook URL written as a literal";
    VersionNotBumped = "W0405", Warning, "policy changed but kept its version";
}

impl Code {
    /// Lexical and syntax codes: exactly the inputs the normative pest grammar rejects.
    pub fn is_syntax(self) -> bool {
        self.as_str() < "E0050"
    }
}

/// A labelled secondary span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    pub message: String,
}

/// One finding of a front-end stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub span: Span,
    pub labels: Vec<Label>,
    pub help: Option<String>,
}

/// The longest run of non-blank characters a message echoes whole.
const ECHO: usize = 60;

/// A message with every over-long word (an echoed token, a pasted blob) cut to an excerpt,
/// so that a 10 MB token is never repeated into a report.
fn bounded(text: String) -> String {
    if !text.split_whitespace().any(|w| w.chars().count() > ECHO) {
        return text;
    }
    let mut out = String::with_capacity(text.len().min(4 * ECHO));
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let n = word.chars().count();
        if n <= ECHO {
            out.push_str(word);
            continue;
        }
        out.extend(word.chars().take(ECHO / 2));
        out.push_str(&format!("…({n} characters)…"));
        out.extend(word.chars().skip(n - 8));
    }
    out
}

impl Diagnostic {
    pub(crate) fn new(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            message: bounded(message.into()),
            span,
            labels: Vec::new(),
            help: None,
        }
    }

    pub(crate) fn with_label(mut self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.labels.push(Label {
            span,
            message: bounded(message.into()),
        });
        self
    }

    pub(crate) fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(bounded(help.into()));
        self
    }

    pub(crate) fn severity(&self) -> Severity {
        self.code.severity()
    }

    pub fn is_error(&self) -> bool {
        self.severity() == Severity::Error
    }
}

/// The machine-readable form of a diagnostic (`--format json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct JsonDiagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub help: Option<String>,
}

impl JsonDiagnostic {
    pub(crate) fn from_diagnostic(d: &Diagnostic, sources: &SourceSet) -> JsonDiagnostic {
        let file = sources.get(d.span.file);
        let (line, column) = file.map_or((1, 1), |f| f.line_col(d.span.start as usize));
        let (end_line, end_column) = file.map_or((1, 1), |f| f.line_col(d.span.end as usize));
        JsonDiagnostic {
            severity: d.severity(),
            code: d.code.as_str(),
            message: d.message.clone(),
            file: file.map_or_else(String::new, |f| f.path.clone()),
            line,
            column,
            end_line,
            end_column,
            help: d.help.clone(),
        }
    }
}

/// Orders diagnostics by file, position, then code, so output is stable.
pub(crate) fn sort(diags: &mut [Diagnostic]) {
    diags.sort_by(|a, b| {
        (a.span.file, a.span.start, a.code).cmp(&(b.span.file, b.span.start, b.code))
    });
}

/// Renders diagnostics for a person with ariadne (no colour when `color` is false).
pub fn render(diags: &[Diagnostic], sources: &SourceSet, color: bool) -> String {
    use ariadne::{Config, Label as ALabel, Report, ReportKind};
    let mut out = Vec::new();
    for d in diags {
        let Some(file) = sources.get(d.span.file) else {
            continue;
        };
        if touches_long_line(d, sources) {
            out.extend_from_slice(render_without_source(d, sources).as_bytes());
            continue;
        }
        let kind = match d.severity() {
            Severity::Error => ReportKind::Error,
            Severity::Warning => ReportKind::Warning,
        };
        let path = file.path.clone();
        let mut report = Report::build(kind, (path.clone(), char_range(file, d.span)))
            .with_config(
                Config::default()
                    .with_color(color)
                    .with_index_type(ariadne::IndexType::Char),
            )
            .with_code(d.code.as_str())
            .with_message(&d.message)
            .with_label(
                ALabel::new((path.clone(), char_range(file, d.span))).with_message(&d.message),
            );
        let mut cache = vec![(path.clone(), file.text.clone())];
        for label in &d.labels {
            let Some(other) = sources.get(label.span.file) else {
                continue;
            };
            if !cache.iter().any(|(p, _)| *p == other.path) {
                cache.push((other.path.clone(), other.text.clone()));
            }
            report = report.with_label(
                ALabel::new((other.path.clone(), char_range(other, label.span)))
                    .with_message(&label.message),
            );
        }
        if let Some(help) = &d.help {
            report = report.with_help(help);
        }
        // Writing into a Vec cannot fail; a failure would only lose this report's text.
        let _ = report.finish().write(ariadne::sources(cache), &mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lines longer than this are not shown: a report quotes its source lines whole.
const LONG_LINE: usize = 1000;

fn touches_long_line(d: &Diagnostic, sources: &SourceSet) -> bool {
    std::iter::once(d.span)
        .chain(d.labels.iter().map(|l| l.span))
        .any(|span| {
            sources.get(span.file).is_some_and(|f| {
                let text = f.text.as_str();
                let at = (span.start as usize).min(text.len());
                let begin = text
                    .get(..at)
                    .and_then(|t| t.rfind('\n'))
                    .map_or(0, |i| i + 1);
                let end = text
                    .get(at..)
                    .and_then(|t| t.find('\n'))
                    .map_or(text.len(), |i| at + i);
                end - begin > LONG_LINE
            })
        })
}

/// A report that names its places but quotes no source line (a line too long to show).
fn render_without_source(d: &Diagnostic, sources: &SourceSet) -> String {
    let kind = match d.severity() {
        Severity::Error => "Error",
        Severity::Warning => "Warning",
    };
    let place = |span: Span| {
        sources.get(span.file).map_or(String::new(), |f| {
            let (line, column) = f.line_col(span.start as usize);
            format!("{}:{line}:{column}", f.path)
        })
    };
    let mut out = format!(
        "[{}] {kind}: {}\n   ╭─[ {} ]\n",
        d.code.as_str(),
        d.message,
        place(d.span)
    );
    out.push_str("   │ (the source line is too long to show)\n");
    for label in &d.labels {
        out.push_str(&format!("   │ {}: {}\n", place(label.span), label.message));
    }
    if let Some(help) = &d.help {
        out.push_str(&format!("   │ Help: {help}\n"));
    }
    out.push_str("───╯\n");
    out
}

fn char_range(file: &crate::base::source::SourceFile, span: Span) -> std::ops::Range<usize> {
    let to_chars = |byte: usize| {
        file.text
            .get(..byte.min(file.text.len()))
            .map_or(byte, |s| s.chars().count())
    };
    let start = to_chars(span.start as usize);
    let end = to_chars(span.end as usize).max(start);
    start..end
}

/// A SARIF 2.1.0 log of diagnostics (`lever check --format sarif`), for code-scanning
/// tools: one run of the `lever` tool, every code as a rule, one result per diagnostic
/// with its primary location and its labels as related locations. Columns count Unicode
/// code points, as in the other formats; paths are as given on the command line.
pub(crate) fn sarif(diagnostics: &[Diagnostic], sources: &SourceSet) -> serde_json::Value {
    use serde_json::json;
    let level = |s: Severity| match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    let location = |span: Span, message: Option<&str>| {
        let file = sources.get(span.file);
        let (line, column) = file.map_or((1, 1), |f| f.line_col(span.start as usize));
        let (end_line, end_column) = file.map_or((1, 1), |f| f.line_col(span.end as usize));
        let mut loc = json!({
            "physicalLocation": {
                "artifactLocation": { "uri": file.map_or("", |f| f.path.as_str()) },
                "region": {
                    "startLine": line, "startColumn": column,
                    "endLine": end_line, "endColumn": end_column,
                },
            },
        });
        if let (Some(text), Some(map)) = (message, loc.as_object_mut()) {
            map.insert("message".into(), json!({ "text": text }));
        }
        loc
    };
    let rules: Vec<serde_json::Value> = Code::ALL
        .iter()
        .map(|c| {
            json!({
                "id": c.as_str(),
                "name": c.title(),
                "shortDescription": { "text": c.title() },
                "help": { "text": format!(
                    "docs/diagnostics.md, \"{} {}\": the rule and a failing example",
                    c.as_str(),
                    c.title()
                ) },
                "defaultConfiguration": { "level": level(c.severity()) },
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = diagnostics
        .iter()
        .map(|d| {
            let text = match &d.help {
                Some(help) => format!("{}\nhelp: {help}", d.message),
                None => d.message.clone(),
            };
            json!({
                "ruleId": d.code.as_str(),
                "ruleIndex": Code::ALL.iter().position(|c| *c == d.code),
                "level": level(d.severity()),
                "message": { "text": text },
                "locations": [location(d.span, None)],
                "relatedLocations": d.labels.iter().enumerate().map(|(i, l)| {
                    let mut loc = location(l.span, Some(&l.message));
                    if let Some(map) = loc.as_object_mut() {
                        map.insert("id".into(), json!(i));
                    }
                    loc
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "lever",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "columnKind": "unicodeCodePoints",
            "results": results,
        }],
    })
}
