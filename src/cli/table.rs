//! How `lever run` prints decisions: JSON lines for machines, or a table for a person at a
//! terminal (signals in words, amounts with their units), and the summary line after.

use crate::base::format::{parse_value, quantity};
use crate::base::lang::Unit;
use crate::compile::artifact::Artifact;
use crate::runtime::decision::{Action, Decision, Signal};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

/// `lever run --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunFormat {
    /// A table, one row per decision, then a summary line: the default on a terminal.
    Table,
    /// One decision per line as JSON (docs/decisions.md): the default when piped.
    Json,
}

/// Prints decisions in one format and counts them for the summary.
pub(crate) struct Printer {
    format: RunFormat,
    /// Each limit's unit, by (policy, limit name), from every artifact seen.
    units: HashMap<(String, String), Unit>,
    header: bool,
    runs: std::collections::HashSet<String>,
    actions: BTreeMap<Action, u64>,
    /// By kind, in the order `near`, `breach`, `error`, `conflict`.
    signals: BTreeMap<(u8, &'static str), u64>,
    rejected: u64,
}

impl Printer {
    pub(crate) fn new(format: RunFormat, artifact: &Artifact) -> Printer {
        let mut printer = Printer {
            format,
            units: HashMap::new(),
            header: false,
            runs: Default::default(),
            actions: BTreeMap::new(),
            signals: BTreeMap::new(),
            rejected: 0,
        };
        printer.learn(artifact);
        printer
    }

    /// Learns the limits' units of an artifact (the first one, and deployed ones).
    pub(crate) fn learn(&mut self, artifact: &Artifact) {
        for p in &artifact.body.program.policies {
            for l in &p.limits {
                self.units.insert((p.name.clone(), l.name.clone()), l.unit);
            }
        }
    }

    /// One decision, as a line of text (no newline).
    pub(crate) fn line(&mut self, d: &Decision) -> String {
        self.count(d);
        match self.format {
            RunFormat::Json => d.to_json(),
            RunFormat::Table => {
                let mut out = String::new();
                if !self.header {
                    self.header = true;
                    out.push_str(&row("LINE", "SEQ", "RUN", "EVENT", "ACTION", "WHY"));
                    out.push('\n');
                }
                let num = |n: Option<u64>| n.map_or("-".into(), |n| n.to_string());
                let why = self.why(d);
                out.push_str(&row(
                    &num(d.line),
                    &num(d.seq),
                    d.run_id.as_deref().unwrap_or("-"),
                    d.event.unwrap_or("-"),
                    d.action.name(),
                    &why,
                ));
                out.trim_end().to_string()
            }
        }
    }

    fn count(&mut self, d: &Decision) {
        if let Some(run) = &d.run_id
            && !self.runs.contains(&**run)
        {
            self.runs.insert(run.to_string());
        }
        *self.actions.entry(d.action).or_default() += 1;
        for s in &d.signals {
            let rank = ["near", "breach", "error", "conflict"]
                .iter()
                .position(|k| *k == s.kind);
            let rank = rank.map_or(u8::MAX, |r| r as u8);
            *self.signals.entry((rank, s.kind)).or_default() += 1;
        }
        self.rejected += u64::from(d.action == Action::Rejected);
    }

    /// The reason, then every signal in words.
    fn why(&self, d: &Decision) -> String {
        let mut parts: Vec<String> = d.reason.iter().cloned().collect();
        parts.extend(d.signals.iter().map(|s| self.signal(s)));
        let alerted: Vec<&str> = d
            .alerts
            .iter()
            .filter(|a| !a.suppressed)
            .map(|a| a.channel.as_str())
            .collect();
        if !alerted.is_empty() {
            parts.push(format!("alerted {}", alerted.join(", ")));
        }
        if let Some(o) = &d.override_outcome {
            let why = o
                .why
                .as_deref()
                .map(|w| format!(": {w}"))
                .unwrap_or_default();
            parts.push(format!("override {}{why}", o.status));
        }
        parts.join("; ")
    }

    /// `NEAR std.llm.cost $4.05 of $5.00 (81%) in support_budget v3`.
    fn signal(&self, s: &Signal) -> String {
        let limit = s.limit.as_deref().unwrap_or("-");
        let unit = self
            .units
            .get(&(s.policy.clone(), limit.to_string()))
            .copied();
        let amount = |v: &Option<String>| match (v, unit) {
            (Some(text), Some(unit)) => {
                parse_value(text).map_or(text.clone(), |n| quantity(unit, n))
            }
            (Some(text), None) => text.clone(),
            (None, _) => "-".into(),
        };
        let mut text = format!("{} {limit}", s.kind.to_uppercase());
        if s.observed.is_some() || s.limit_value.is_some() {
            let _ = write!(
                text,
                " {} of {}",
                amount(&s.observed),
                amount(&s.limit_value)
            );
        }
        if let Some(p) = &s.percent {
            let _ = write!(text, " ({p}%)");
        }
        if let Some(e) = s.error.or(s.conflict) {
            let _ = write!(text, " {e}");
        }
        let _ = write!(text, " in {} v{}", s.policy, s.version);
        text
    }

    /// The summary line: runs, decisions by action, signals by kind, rejected lines, and
    /// where the evidence went.
    pub(crate) fn summary(&self, evidence: Option<&str>) -> String {
        let decisions: u64 = self.actions.values().sum();
        let by = |m: &mut dyn Iterator<Item = (&'static str, u64)>| {
            m.map(|(k, n)| format!("{n} {k}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut text = format!(
            "{} run{}, {decisions} decision{}",
            self.runs.len(),
            plural(self.runs.len() as u64),
            plural(decisions)
        );
        if decisions > 0 {
            let _ = write!(
                text,
                " ({})",
                by(&mut self.actions.iter().map(|(a, n)| (a.name(), *n)))
            );
        }
        let signals: u64 = self.signals.values().sum();
        let _ = write!(text, ", {signals} signal{}", plural(signals));
        if signals > 0 {
            let _ = write!(
                text,
                " ({})",
                by(&mut self.signals.iter().map(|((_, k), n)| (*k, *n)))
            );
        }
        let _ = write!(
            text,
            ", {} rejected line{}",
            self.rejected,
            plural(self.rejected)
        );
        match evidence {
            Some(url) => {
                let _ = write!(text, "; evidence in {url}");
            }
            None => text.push_str("; nothing written (--dry-run)"),
        }
        text
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn row(line: &str, seq: &str, run: &str, event: &str, action: &str, why: &str) -> String {
    let run = if run.chars().count() > 20 {
        format!("{}…", run.chars().take(19).collect::<String>())
    } else {
        run.to_string()
    };
    format!("{line:>5}  {seq:>4}  {run:<20}  {event:<10}  {action:<8}  {why}")
}
