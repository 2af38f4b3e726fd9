//! Budgets across runs: counters keyed by (policy, monitor, key value, window start) that
//! every accepted step of every run in a budget's scope adds its contribution to. A
//! budget limit observes its counter, after the step's own contribution, instead of the
//! run's monitor; each run keeps its own zone over that value.
//!
//! Within a replay the counters start at 0 and follow its events in arrival order.

use super::event::RunStart;
use super::{Engine, Run};
use crate::base::format;
use crate::base::lang::{Budget, Selector};
use crate::compile::bytecode::{Op, Program};
use crate::evidence::budgets;
use crate::vm::Slot;
use serde::ser::{SerializeMap, Serializer};
use std::collections::HashMap;
use std::sync::Arc;

/// One counter's identity, as a step computes it. A run keeps the keys of its budgets
/// (its attributes never change), so a step builds one only when a window turns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub policy: String,
    /// The limit's monitor, as the policy names it.
    pub monitor: String,
    /// The run's value of each attribute of the budget's key, in the key's order.
    pub key: Vec<(Selector, String)>,
    /// Nanoseconds since the epoch; `None` for a budget without a window.
    pub window_start: Option<i64>,
    /// The counter's identity in the evidence store ([`budgets::counter_id`]).
    pub id: Arc<str>,
}

impl CounterKey {
    fn new(
        policy: &str,
        monitor: &str,
        key: Vec<(Selector, String)>,
        window_start: Option<i64>,
    ) -> CounterKey {
        let per: Vec<(String, String)> = key.iter().map(|(s, v)| (s.text(), v.clone())).collect();
        let window = window_start.map(format::timestamp);
        let id = budgets::counter_id(policy, monitor, &per, window.as_deref());
        CounterKey {
            policy: policy.to_string(),
            monitor: monitor.to_string(),
            key,
            window_start,
            id: Arc::from(id),
        }
    }
}

/// The counters of every budget by id, in 10⁻⁹ units of their monitors.
///
/// A replay's counters start at 0. A server's are `strict`: a counter it has not read from
/// its store is not taken as 0 but listed as missing, and the step is judged again once
/// the server has read it.
#[derive(Debug, Default, Clone)]
pub struct Budgets {
    counters: HashMap<Arc<str>, i64>,
    strict: bool,
    missing: Vec<String>,
}

impl Budgets {
    /// Counters a server reads from its store before it judges on them.
    pub fn strict() -> Budgets {
        Budgets {
            strict: true,
            ..Budgets::default()
        }
    }

    /// Adds a contribution; the counter's value after it.
    pub fn add(&mut self, id: &Arc<str>, amount: i64) -> i64 {
        match self.counters.get_mut(&**id) {
            Some(v) => {
                *v = v.saturating_add(amount);
                *v
            }
            None if self.strict => {
                self.missing.push(id.to_string());
                amount
            }
            None => {
                self.counters.insert(Arc::clone(id), amount);
                amount
            }
        }
    }

    /// Whether the counter is held (a strict set reads it from its store first).
    pub fn holds(&self, id: &str) -> bool {
        self.counters.contains_key(id)
    }

    pub fn get(&self, id: &str) -> i64 {
        self.counters.get(id).copied().unwrap_or(0)
    }

    /// Sets a counter's value (a starting value, or one read from a store).
    pub fn set(&mut self, id: String, value: i64) {
        self.counters.insert(Arc::from(id), value);
    }

    /// Takes back what a step added (its evidence was never stored).
    pub fn undo(&mut self, contributions: &[Contribution]) {
        for c in contributions {
            if let Some(v) = self.counters.get_mut(&*c.key.id) {
                *v = v.saturating_sub(c.added);
            }
        }
    }

    /// The counters steps asked for since the last call that a strict set does not hold.
    pub fn take_missing(&mut self) -> Vec<String> {
        let mut missing = std::mem::take(&mut self.missing);
        missing.sort();
        missing.dedup();
        missing
    }
}

/// A budget limit of an engine's program, and the aggregate its monitor is.
#[derive(Debug, Clone)]
pub(super) struct BudgetSlot {
    pub policy: u16,
    pub limit: u16,
    pub agg: u16,
}

/// What a step gave a budget limit: its counter, what the step added, and the counter's
/// value after it.
#[derive(Debug, Clone)]
pub(super) struct Counted {
    pub policy: u16,
    pub limit: u16,
    pub key: Arc<CounterKey>,
    pub added: i64,
    pub value: i64,
    pub unit: crate::base::lang::Unit,
}

/// A decision's account of one budget counter (its `budgets` member): the counter, what
/// the step added and the value after it. Stored with the decision, so the evidence says
/// what spent each budget and a store can keep counters that agree with its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub key: Arc<CounterKey>,
    pub added: i64,
    pub counter: i64,
    pub unit: crate::base::lang::Unit,
}

impl serde::Serialize for Contribution {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(6))?;
        map.serialize_entry("policy", &self.key.policy)?;
        map.serialize_entry("limit", &self.key.monitor)?;
        map.serialize_entry("per", &Per(&self.key))?;
        map.serialize_entry(
            "window_start",
            &self.key.window_start.map(format::timestamp),
        )?;
        map.serialize_entry("added", &format::value(self.unit, self.added))?;
        map.serialize_entry("counter", &format::value(self.unit, self.counter))?;
        map.end()
    }
}

/// A counter's key values as a JSON object, in the key's order.
struct Per<'a>(&'a CounterKey);

impl serde::Serialize for Per<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.key.len()))?;
        for (k, v) in &self.0.key {
            map.serialize_entry(&k.text(), v)?;
        }
        map.end()
    }
}

/// The budget limits of a program, each with the aggregate its monitor reads (a budget's
/// monitor is a lone `sum` or `count`, directly or through monitors that name it).
pub(super) fn slots(program: &Program) -> Vec<BudgetSlot> {
    let mut slots = Vec::new();
    for (p, policy) in program.policies.iter().enumerate() {
        for (l, limit) in policy.limits.iter().enumerate() {
            if limit.budget.is_none() {
                continue;
            }
            let agg = aggregate_of(program, limit.monitor);
            if let (Some(agg), Ok(policy), Ok(limit)) = (agg, u16::try_from(p), u16::try_from(l)) {
                slots.push(BudgetSlot { policy, limit, agg });
            }
        }
    }
    slots
}

fn aggregate_of(program: &Program, mut monitor: u16) -> Option<u16> {
    for _ in 0..=program.monitors.len() {
        match program
            .monitors
            .get(usize::from(monitor))?
            .code
            .ops
            .as_slice()
        {
            [Op::Agg(a)] => return Some(*a),
            [Op::Monitor(m)] => monitor = *m,
            _ => return None,
        }
    }
    None
}

/// The counter a run's step adds to.
pub(crate) fn counter_key(
    policy: &str,
    monitor: &str,
    budget: &Budget,
    run: &RunStart,
    at: i64,
) -> CounterKey {
    let key = budget
        .per
        .iter()
        .map(|s| (s.clone(), super::scope::attribute(s, run).to_string()))
        .collect();
    CounterKey::new(policy, monitor, key, budget.window_start(at))
}

/// An aggregate's value in a run.
fn agg_value(program: &crate::compile::bytecode::Program, run: &Run, i: u16) -> Option<Slot> {
    let i = usize::from(i);
    Some(run.aggs.value(i, program.aggregates.get(i)?))
}

impl Engine {
    /// Keeps the budget aggregates' values before a step enters them.
    pub(super) fn budget_before(&mut self, run: &Run) {
        let before = &mut self.scratch.budget_before;
        before.clear();
        let program = &self.artifact.body.program;
        before.extend(
            self.budget_slots
                .iter()
                .map(|b| number(agg_value(program, run, b.agg))),
        );
    }

    /// Adds a step's contributions to the counters of the budgets whose policy's scope
    /// holds the run, judged or not, and keeps each counter's value for judging.
    pub(super) fn count_budgets(&mut self, run: &mut Run, budgets: &mut Budgets, at: i64) {
        let program = &self.artifact.body.program;
        let before = &self.scratch.budget_before;
        let counted = &mut self.scratch.counted;
        counted.clear();
        if run.budget_keys.len() != self.budget_slots.len() {
            run.budget_keys = vec![None; self.budget_slots.len()].into_boxed_slice();
        }
        for (si, (slot, before)) in self.budget_slots.iter().zip(before).enumerate() {
            let Some(policy) = program.policies.get(usize::from(slot.policy)) else {
                continue;
            };
            let Some(limit) = policy.limits.get(usize::from(slot.limit)) else {
                continue;
            };
            let Some(budget) = &limit.budget else {
                continue;
            };
            if !super::scope::matches(&policy.scope, &run.attrs) {
                continue;
            }
            let window = budget.window_start(at);
            let key = match run.budget_keys.get(si) {
                Some(Some(k))
                    if k.window_start == window
                        && k.policy == policy.name
                        && k.monitor == limit.name =>
                {
                    Arc::clone(k)
                }
                _ => {
                    let k = Arc::new(counter_key(
                        &policy.name,
                        &limit.name,
                        budget,
                        &run.attrs,
                        at,
                    ));
                    if let Some(slot) = run.budget_keys.get_mut(si) {
                        *slot = Some(Arc::clone(&k));
                    }
                    k
                }
            };
            // A merged engine (a run re-bound across a deploy) may hold a policy twice,
            // from both artifacts: the step still counts once.
            let (added, value) = match counted.iter().find(|c| c.key.id == key.id) {
                Some(c) => (0, c.value),
                None => {
                    let after = number(agg_value(&self.artifact.body.program, run, slot.agg));
                    let added = after.saturating_sub(*before);
                    (added, budgets.add(&key.id, added))
                }
            };
            counted.push(Counted {
                policy: slot.policy,
                limit: slot.limit,
                key,
                added,
                value,
                unit: limit.unit,
            });
        }
    }
}

/// The step's contributions, as its decision shows them: one per counter.
pub(super) fn contributions(counted: &[Counted]) -> Vec<Contribution> {
    let mut out: Vec<Contribution> = Vec::new();
    for (i, c) in counted.iter().enumerate() {
        if counted.iter().take(i).any(|d| d.key.id == c.key.id) {
            continue;
        }
        out.push(Contribution {
            key: Arc::clone(&c.key),
            added: c.added,
            counter: c.value,
            unit: c.unit,
        });
    }
    out
}

fn number(slot: Option<Slot>) -> i64 {
    match slot {
        Some(Slot::Num(n)) => n,
        _ => 0,
    }
}

/// A budget signal's `"budget"` member: the run's key values and the window's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetTag(pub Arc<CounterKey>);

impl BudgetTag {
    pub(super) fn of(key: &Arc<CounterKey>) -> BudgetTag {
        BudgetTag(Arc::clone(key))
    }
}

impl serde::Serialize for BudgetTag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("per", &Per(&self.0))?;
        map.serialize_entry("window_start", &self.0.window_start.map(format::timestamp))?;
        map.end()
    }
}
