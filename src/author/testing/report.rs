//! `lever test` output: per test `ok` or `FAILED` as `cargo test` prints them, each
//! failure with the expectation and the decision it was checked against as a diff, a
//! closing `N passed; N failed` line, and the coverage of thresholds and override rules.

use super::run::Outcome;
use crate::compile::bytecode::Program;
use std::collections::BTreeSet;

/// What the tests reached of the policy set.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Coverage {
    /// `policy limit near|breach` reached, of all.
    pub thresholds_reached: Vec<String>,
    pub thresholds_missed: Vec<String>,
    /// `policy#n` override rules reached (granted, pending or denied by them), of all.
    pub rules_reached: Vec<String>,
    pub rules_missed: Vec<String>,
}

pub(crate) fn coverage(program: &Program, outcomes: &[Outcome]) -> Coverage {
    let hit: BTreeSet<(String, String, String)> = outcomes
        .iter()
        .flat_map(|o| o.thresholds.iter().cloned())
        .collect();
    let rules: BTreeSet<String> = outcomes
        .iter()
        .flat_map(|o| o.rules.iter().cloned())
        .collect();
    let mut c = Coverage {
        thresholds_reached: Vec::new(),
        thresholds_missed: Vec::new(),
        rules_reached: Vec::new(),
        rules_missed: Vec::new(),
    };
    for p in &program.policies {
        for l in &p.limits {
            let kinds = if l.near.is_some() {
                &["near", "breach"][..]
            } else {
                &["breach"][..]
            };
            for kind in kinds {
                let name = format!("{} {} {kind}", p.name, l.name);
                if hit.contains(&(p.name.clone(), l.name.clone(), kind.to_string())) {
                    c.thresholds_reached.push(name);
                } else {
                    c.thresholds_missed.push(name);
                }
            }
        }
        for i in 0..p.rules.len() {
            let name = format!("{}#{}", p.name, i + 1);
            if rules.contains(&name) {
                c.rules_reached.push(name);
            } else {
                c.rules_missed.push(name);
            }
        }
    }
    c
}

fn title(o: &Outcome) -> String {
    format!("{}:{} {:?}", o.path, o.line, o.name)
}

/// The human report.
pub(crate) fn text(outcomes: &[Outcome], coverage: Option<&Coverage>) -> String {
    let files: BTreeSet<&str> = outcomes.iter().map(|o| o.path.as_str()).collect();
    let mut out = format!(
        "\nrunning {} test{} from {} file{}\n",
        outcomes.len(),
        if outcomes.len() == 1 { "" } else { "s" },
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    );
    for o in outcomes {
        out.push_str(&format!(
            "test {} ... {}\n",
            title(o),
            if o.passed() { "ok" } else { "FAILED" }
        ));
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed()).collect();
    if !failed.is_empty() {
        out.push_str("\nfailures:\n");
        for o in &failed {
            out.push_str(&format!("\n---- {} ----\n", title(o)));
            for f in &o.failures {
                match f.seq {
                    Some(seq) => out.push_str(&format!(
                        "{}:{}: {} does not hold for the decision at seq {seq}\n",
                        o.path, f.line, f.expected
                    )),
                    None => out.push_str(&format!(
                        "{}:{}: {}: there is no such decision (no event before it, or none with that seq)\n",
                        o.path, f.line, f.expected
                    )),
                }
                out.push_str(&format!("-   {}\n", f.expected));
                for line in &f.actual {
                    out.push_str(&format!("+   {line}\n"));
                }
            }
        }
        out.push_str("\nfailures:\n");
        for o in &failed {
            out.push_str(&format!("    {}\n", title(o)));
        }
    }
    if let Some(c) = coverage {
        let reached = c.thresholds_reached.len();
        let all = reached + c.thresholds_missed.len();
        let rules = c.rules_reached.len();
        let all_rules = rules + c.rules_missed.len();
        out.push_str(&format!(
            "\ncoverage: {reached} of {all} thresholds, {rules} of {all_rules} override rules\n"
        ));
        for m in &c.thresholds_missed {
            out.push_str(&format!("  not reached: {m}\n"));
        }
        for m in &c.rules_missed {
            out.push_str(&format!("  not reached: override rule {m}\n"));
        }
    }
    let passed = outcomes.len() - failed.len();
    out.push_str(&format!(
        "\ntest result: {}. {passed} passed; {} failed\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len()
    ));
    out
}

/// The JSON report.
pub(crate) fn json(outcomes: &[Outcome], coverage: Option<&Coverage>) -> serde_json::Value {
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let mut v = serde_json::json!({
        "tests": outcomes.iter().map(|o| serde_json::json!({
            "name": o.name,
            "path": o.path,
            "line": o.line,
            "passed": o.passed(),
            "events": o.events,
            "failures": o.failures,
            "reached": {
                "thresholds": o.thresholds.iter().map(|(p, l, k)| format!("{p} {l} {k}")).collect::<Vec<_>>(),
                "override_rules": o.rules,
                "override_outcomes": o.overrides,
            },
        })).collect::<Vec<_>>(),
        "passed": outcomes.len() - failed,
        "failed": failed,
    });
    if let (Some(c), Some(map)) = (coverage, v.as_object_mut()) {
        map.insert(
            "coverage".into(),
            serde_json::to_value(c).unwrap_or_default(),
        );
    }
    v
}
