//! Merging two programs, for a run that re-binds against an artifact deployed mid-run.
//!
//! A run keeps its `run_start` (and bound `first_token`) policies from the artifact it
//! started on, while its `each_step` policies come from the artifact current at each step
//! (LANGUAGE §9). The runtime evaluates such a run with one program holding both: the
//! `home` program unchanged (every index valid, so the run's state carries over), then the
//! `current` program with its indices moved past home's.
//!
//! An aggregate of `current` that computes the same thing as one of `home` (same function,
//! window, argument and filter, compared by meaning, not by index) is the home one, so a
//! monitor the run already had keeps accumulating from the run's first step; any other
//! starts fresh (LANGUAGE §6: a monitor first seen in a deploy starts after it).

use super::bytecode::MAX_STR_FIELDS;
use super::bytecode::{
    ActionsDesc, AggDesc, Code, FieldDesc, FieldSource, LimitDesc, Op, PolicyDesc, Program,
};
use crate::base::lang::ChannelRef;

/// A merged program and what the runtime needs to know about it.
#[derive(Debug, Clone)]
pub(crate) struct Merged {
    pub program: Program,
    /// Index of `current`'s first policy: home's are `0..current_policies`.
    pub current_policies: usize,
    /// Monitors whose value reads a fresh aggregate, directly or through other monitors.
    pub fresh_monitors: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MergeError {
    #[error("the two artifacts together read {0} string fields, more than {MAX_STR_FIELDS}")]
    TooManyStringFields(usize),
    #[error("the merged program has more than 65535 {0}")]
    TooMany(&'static str),
    #[error("the merged program does not compile to native code: {0}")]
    Jit(String),
}

/// Where `current`'s parts stand in the merged program: offsets, and for fields a slot
/// each (an event field home already reads shares home's slot).
struct Offsets {
    strings: u32,
    labels: u16,
    metrics: u16,
    /// Merged slot of each of `current`'s number, bool and string field slots.
    num: Vec<u16>,
    bool: Vec<u16>,
    str: Vec<u16>,
    monitors: u16,
    channels: u32,
    /// Merged index of each of `current`'s aggregates.
    aggregates: Vec<u16>,
}

fn offset<T>(items: &[T], what: &'static str) -> Result<u16, MergeError> {
    u16::try_from(items.len()).map_err(|_| MergeError::TooMany(what))
}

/// The field slot maps (number, bool, string), `current`'s fields that take a new slot
/// (index and slot), and the merged counts of each kind.
type FieldSlots = ([Vec<u16>; 3], Vec<(usize, u16)>, [u16; 3]);

/// Which kind of slot a field takes.
fn slot_kind(unit: crate::base::lang::Unit) -> usize {
    match unit {
        crate::base::lang::Unit::Bool => 1,
        crate::base::lang::Unit::String => 2,
        _ => 0,
    }
}

/// The merged slot of every field slot of `current`: an event field home reads too keeps
/// home's slot (so merging never grows the fields both read, and a rollback merges as
/// well as a deploy); any other field takes the next free slot of its kind. Returns the
/// slot maps, the fields to add, and the merged counts.
fn field_slots(home: &Program, current: &Program) -> FieldSlots {
    let mut counts = [home.num_fields, home.bool_fields, home.str_fields];
    let mut maps = [
        vec![u16::MAX; usize::from(current.num_fields)],
        vec![u16::MAX; usize::from(current.bool_fields)],
        vec![u16::MAX; usize::from(current.str_fields)],
    ];
    let mut added = Vec::new();
    for (i, f) in current.fields.iter().enumerate() {
        let kind = slot_kind(f.unit);
        let shared = match &f.source {
            FieldSource::Event(e) => home
                .fields
                .iter()
                .find(|h| slot_kind(h.unit) == kind && h.source == FieldSource::Event(*e))
                .map(|h| h.slot),
            _ => None,
        };
        let slot = shared.unwrap_or_else(|| {
            let next = counts.get(kind).copied().unwrap_or(0);
            if let Some(c) = counts.get_mut(kind) {
                *c = c.saturating_add(1);
            }
            added.push((i, next));
            next
        });
        if let Some(entry) = maps
            .get_mut(kind)
            .and_then(|m| m.get_mut(usize::from(f.slot)))
        {
            *entry = slot;
        }
    }
    (maps, added, counts)
}

pub(crate) fn merge(home: &Program, current: &Program) -> Result<Merged, MergeError> {
    let ([num, bool, str], added, counts) = field_slots(home, current);
    let str_total = usize::from(counts[2]);
    if str_total > MAX_STR_FIELDS {
        return Err(MergeError::TooManyStringFields(str_total));
    }
    let mut off = Offsets {
        strings: u32::try_from(home.strings.len()).map_err(|_| MergeError::TooMany("strings"))?,
        labels: offset(&home.labels, "labels")?,
        metrics: offset(&home.signals, "signals")?,
        num,
        bool,
        str,
        monitors: offset(&home.monitors, "monitors")?,
        channels: u32::try_from(home.channels.len())
            .map_err(|_| MergeError::TooMany("channels"))?,
        aggregates: Vec::new(),
    };
    let mut program = home.clone();
    program.strings.extend(current.strings.iter().cloned());
    program.labels.extend(current.labels.iter().cloned());
    program.signals.extend(current.signals.iter().cloned());
    [program.num_fields, program.bool_fields, program.str_fields] = counts;
    for (i, _) in &added {
        if let Some(f) = current.fields.get(*i) {
            program.fields.push(relocate_field(f, &off));
        }
    }
    let home_keys: Vec<String> = home
        .aggregates
        .iter()
        .map(|a| aggregate_key(home, a))
        .collect();
    for a in &current.aggregates {
        let key = aggregate_key(current, a);
        let index = match home_keys.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                program.aggregates.push(AggDesc {
                    func: a.func,
                    arg: a.arg.as_ref().map(|c| relocate(c, &off)),
                    filter: a.filter.as_ref().map(|c| relocate(c, &off)),
                    window: a.window,
                });
                program.aggregates.len() - 1
            }
        };
        off.aggregates
            .push(u16::try_from(index).map_err(|_| MergeError::TooMany("aggregates"))?);
    }
    for m in &current.monitors {
        let mut moved = m.clone();
        moved.code = relocate(&m.code, &off);
        program.monitors.push(moved);
    }
    offset(&program.monitors, "monitors")?;
    program.channels.extend(current.channels.iter().cloned());
    let current_policies = program.policies.len();
    for p in &current.policies {
        program.policies.push(relocate_policy(p, &off));
    }
    offset(&program.policies, "policies")?;
    let fresh_monitors = fresh_monitors(&program, home.aggregates.len());
    Ok(Merged {
        program,
        current_policies,
        fresh_monitors,
    })
}

/// What an aggregate computes, independent of indices: function, window, and its codes
/// with fields, strings and labels by name (derived fields by their definition).
pub(crate) fn aggregate_key(program: &Program, a: &AggDesc) -> String {
    let code = |c: &Option<Code>| c.as_ref().map(|c| code_key(program, c)).unwrap_or_default();
    format!(
        "{:?}|{}|{}|{}",
        a.func,
        a.window,
        code(&a.arg),
        code(&a.filter)
    )
}

fn code_key(program: &Program, code: &Code) -> String {
    let field = |slot: u16, kind: u8| -> String {
        let found = program.fields.iter().find(|f| {
            f.slot == slot
                && match f.unit {
                    crate::base::lang::Unit::Bool => kind == 1,
                    crate::base::lang::Unit::String => kind == 2,
                    _ => kind == 0,
                }
        });
        match found {
            Some(f) => match &f.source {
                FieldSource::Derived(c) => format!("{}=({})", f.name, code_key(program, c)),
                _ => f.name.clone(),
            },
            None => format!("?{kind}#{slot}"),
        }
    };
    let string = |i: u32| {
        program
            .strings
            .get(i as usize)
            .map_or_else(|| format!("?s{i}"), |s| format!("{s:?}"))
    };
    let mut out = String::new();
    for op in &code.ops {
        let text = match op {
            Op::Str(i) => format!("str {}", string(*i)),
            Op::NumField(s) => format!("num {}", field(*s, 0)),
            Op::BoolField(s) => format!("bool {}", field(*s, 1)),
            Op::StrField(s) => format!("strf {}", field(*s, 2)),
            Op::Label(i) => format!(
                "label {:?}",
                program
                    .labels
                    .get(usize::from(*i))
                    .map_or("?", String::as_str)
            ),
            Op::FieldEqStr(f, s, ne) => format!("eqstr {} {} {ne}", field(*f, 2), string(*s)),
            Op::FieldCmpNum(f, c, n) => format!("cmpnum {} {c:?} {n}", field(*f, 0)),
            // Aggregate code reads no aggregate or monitor; the rest carry no index.
            other => format!("{other:?}"),
        };
        out.push_str(&text);
        out.push(';');
    }
    out
}

fn relocate(code: &Code, off: &Offsets) -> Code {
    let ops = code
        .ops
        .iter()
        .map(|op| match *op {
            Op::Str(i) => Op::Str(i.saturating_add(off.strings)),
            Op::NumField(s) => Op::NumField(moved(&off.num, s)),
            Op::BoolField(s) => Op::BoolField(moved(&off.bool, s)),
            Op::StrField(s) => Op::StrField(moved(&off.str, s)),
            Op::Label(i) => Op::Label(i.saturating_add(off.labels)),
            Op::Agg(i) => Op::Agg(
                off.aggregates
                    .get(usize::from(i))
                    .copied()
                    .unwrap_or(u16::MAX),
            ),
            Op::Monitor(i) => Op::Monitor(i.saturating_add(off.monitors)),
            Op::FieldEqStr(f, s, ne) => {
                Op::FieldEqStr(moved(&off.str, f), s.saturating_add(off.strings), ne)
            }
            Op::FieldCmpNum(f, c, n) => Op::FieldCmpNum(moved(&off.num, f), c, n),
            ref other => other.clone(),
        })
        .collect();
    Code {
        ops,
        max_stack: code.max_stack,
    }
}

/// A field slot of `current` in the merged program.
fn moved(map: &[u16], slot: u16) -> u16 {
    map.get(usize::from(slot)).copied().unwrap_or(u16::MAX)
}

fn relocate_field(f: &FieldDesc, off: &Offsets) -> FieldDesc {
    let slot = match f.unit {
        crate::base::lang::Unit::Bool => moved(&off.bool, f.slot),
        crate::base::lang::Unit::String => moved(&off.str, f.slot),
        _ => moved(&off.num, f.slot),
    };
    let source = match &f.source {
        FieldSource::Event(e) => FieldSource::Event(*e),
        FieldSource::Metric(i) => FieldSource::Metric(i.saturating_add(off.metrics)),
        FieldSource::Derived(c) => FieldSource::Derived(relocate(c, off)),
    };
    FieldDesc {
        name: f.name.clone(),
        unit: f.unit,
        slot,
        source,
    }
}

fn relocate_actions(a: &ActionsDesc, off: &Offsets) -> ActionsDesc {
    ActionsDesc {
        enforcement: a.enforcement,
        alerts: a
            .alerts
            .iter()
            .map(|c| match c {
                ChannelRef::Ui => ChannelRef::Ui,
                ChannelRef::Declared(i) => ChannelRef::Declared(i.saturating_add(off.channels)),
            })
            .collect(),
    }
}

fn relocate_policy(p: &PolicyDesc, off: &Offsets) -> PolicyDesc {
    let limits = p
        .limits
        .iter()
        .map(|l| LimitDesc {
            monitor: l.monitor.saturating_add(off.monitors),
            near: l.near.as_ref().map(|n| super::bytecode::NearDesc {
                actions: relocate_actions(&n.actions, off),
                ..n.clone()
            }),
            breach: relocate_actions(&l.breach, off),
            ..l.clone()
        })
        .collect();
    PolicyDesc {
        limits,
        ..p.clone()
    }
}

/// Monitors (in evaluation order, each reading only earlier ones) that read an aggregate
/// at or past `first_fresh`.
fn fresh_monitors(program: &Program, first_fresh: usize) -> Vec<bool> {
    let mut fresh: Vec<bool> = Vec::with_capacity(program.monitors.len());
    for m in &program.monitors {
        let reads_fresh = m.code.ops.iter().any(|op| match op {
            Op::Agg(i) => usize::from(*i) >= first_fresh,
            Op::Monitor(i) => fresh.get(usize::from(*i)).copied().unwrap_or(false),
            _ => false,
        });
        fresh.push(reads_fresh);
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::source::SourceSet;

    fn program(text: &str) -> Program {
        let checked = crate::check::check(SourceSet::from_text("p.policy", text));
        crate::compile::build(&checked, &["p.policy".into()])
            .unwrap()
            .body
            .program
    }

    #[test]
    fn a_shared_aggregate_is_home_s_and_a_new_one_is_fresh() {
        let home = program(
            r#"import std.llm
            policy a { version 1 scope all limit std.llm.cost to $5 { breach => stop } }"#,
        );
        let current = program(
            r#"import std.llm
            policy b { version 1 scope all bind each_step
              monitor gpt = sum(step.cost where step.model == "gpt-4o")
              limit std.llm.cost to $3 { breach => stop }
              limit gpt to $1 { breach => pause } }"#,
        );
        let merged = merge(&home, &current).unwrap();
        let p = &merged.program;
        assert_eq!(merged.current_policies, 1);
        assert_eq!(p.policies[1].name, "b");
        // std.llm.cost is shared: only the filtered sum is new.
        assert_eq!(p.aggregates.len(), home.aggregates.len() + 1);
        let cost = p.policies[1].limits[0].monitor as usize;
        let gpt = p.policies[1].limits[1].monitor as usize;
        assert_eq!(p.monitors[cost].id_name, "std.llm.cost");
        assert!(!merged.fresh_monitors[cost]);
        assert!(merged.fresh_monitors[gpt]);
        // The relocated filter still names the model field and the string "gpt-4o".
        let fresh = p.aggregates.last().unwrap();
        assert_eq!(
            aggregate_key(p, fresh),
            aggregate_key(&current, current.aggregates.last().unwrap())
        );
        // The event fields both read are read once.
        assert_eq!(p.str_fields, home.str_fields.max(current.str_fields));
    }

    #[test]
    fn deploys_and_rollbacks_merge_again_and_again() {
        let a = program(
            r#"import std.llm
            policy a { version 1 scope agent == "x" bind each_step limit std.llm.cost to $5 { breach => stop } }"#,
        );
        let b = program(
            r#"import std.llm
            policy b { version 1 scope tenant == "t" bind each_step limit std.llm.cost to $3 { breach => stop } }"#,
        );
        let mut home = a.clone();
        for round in 0..20 {
            let next = if round % 2 == 0 { &b } else { &a };
            home = merge(&home, next).unwrap().program;
        }
        assert!(usize::from(home.str_fields) <= MAX_STR_FIELDS);
    }
}
