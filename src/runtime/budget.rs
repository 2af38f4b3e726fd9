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
use crate::vm::Slot;
use serde::ser::{SerializeMap, Serializer};
use std::collections::HashMap;

/// One counter's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CounterKey {
    pub policy: String,
    /// The limit's monitor, as the policy names it.
    pub monitor: String,
    /// The run's value of each attribute of the budget's key, in the key's order.
    pub key: Vec<(Selector, String)>,
    /// Nanoseconds since the epoch; `None` for a budget without a window.
    pub window_start: Option<i64>,
}

/// The counters of every budget, in 10⁻⁹ units of their monitors.
#[derive(Debug, Default, Clone)]
pub struct Budgets {
    counters: HashMap<CounterKey, i64>,
}

impl Budgets {
    /// Adds a contribution; the counter's value after it.
    pub fn add(&mut self, key: &CounterKey, amount: i64) -> i64 {
        match self.counters.get_mut(key) {
            Some(v) => {
                *v = v.saturating_add(amount);
                *v
            }
            None => {
                self.counters.insert(key.clone(), amount);
                amount
            }
        }
    }

    pub fn get(&self, key: &CounterKey) -> i64 {
        self.counters.get(key).copied().unwrap_or(0)
    }

    /// Sets a counter's value (a starting value, or one read from a store).
    pub fn set(&mut self, key: CounterKey, value: i64) {
        self.counters.insert(key, value);
    }

    /// Every counter, in key order.
    pub fn all(&self) -> Vec<(&CounterKey, i64)> {
        let mut all: Vec<(&CounterKey, i64)> = self.counters.iter().map(|(k, v)| (k, *v)).collect();
        all.sort();
        all
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
    pub key: CounterKey,
    pub added: i64,
    pub value: i64,
    pub unit: crate::base::lang::Unit,
}

/// A decision's account of one budget counter (its `budgets` member): the counter, what
/// the step added and the value after it. Stored with the decision, so the evidence says
/// what spent each budget and a store can keep counters that agree with its records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Contribution {
    pub policy: String,
    pub limit: String,
    #[serde(flatten)]
    pub tag: BudgetTag,
    #[serde(serialize_with = "value_text")]
    pub added: (crate::base::lang::Unit, i64),
    #[serde(serialize_with = "value_text")]
    pub counter: (crate::base::lang::Unit, i64),
}

fn value_text<S: Serializer>(v: &(crate::base::lang::Unit, i64), s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format::value(v.0, v.1))
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

/// Refuses a program with budgets across runs for a server: `lever serve` does not keep
/// their counters in its evidence store, so judging them on one server's memory would let
/// a restart or a second server reset what a key has spent.
pub fn refuse_in_server(program: &Program) -> Result<(), String> {
    let budgets: Vec<String> = program
        .policies
        .iter()
        .flat_map(|p| {
            p.limits.iter().filter_map(move |l| {
                l.budget
                    .as_ref()
                    .map(|b| format!("`{}` {} of policy `{}`", l.name, b.text(), p.name))
            })
        })
        .collect();
    if budgets.is_empty() {
        return Ok(());
    }
    Err(format!(
        "the artifact limits budgets across runs ({}); `lever serve` does not keep budget counters in its evidence store yet, and refuses the artifact rather than count them per server: judge budgets with `lever run` and `lever test`",
        budgets.join(", ")
    ))
}

/// The counter a run's step adds to.
pub(super) fn counter_key(
    policy: &str,
    monitor: &str,
    budget: &Budget,
    run: &RunStart,
    at: i64,
) -> CounterKey {
    let key = budget
        .per
        .iter()
        .map(|s| (s.clone(), attribute(s, run).to_string()))
        .collect();
    CounterKey {
        policy: policy.to_string(),
        monitor: monitor.to_string(),
        key,
        window_start: budget.window_start(at),
    }
}

fn attribute<'a>(s: &Selector, run: &'a RunStart) -> &'a str {
    match s {
        Selector::Tenant => &run.tenant,
        Selector::Agent => &run.agent,
        Selector::ApiKey => &run.api_key,
        Selector::HumanActor => &run.human_actor,
        Selector::Label(k) => run.labels.get(k).map_or("", String::as_str),
    }
}

impl Engine {
    /// The budget aggregates' values before a step enters them.
    pub(super) fn budget_before(&self, run: &Run) -> Vec<i64> {
        self.budget_slots
            .iter()
            .map(|b| number(run.aggs.get(usize::from(b.agg)).map(|a| a.value())))
            .collect()
    }

    /// Adds a step's contributions to the counters of the budgets whose policy's scope
    /// holds the run, judged or not, and keeps each counter's value for judging.
    pub(super) fn count_budgets(
        &mut self,
        run: &Run,
        before: &[i64],
        budgets: &mut Budgets,
        at: i64,
    ) {
        let program = &self.artifact.body.program;
        let counted = &mut self.scratch.counted;
        counted.clear();
        for (slot, before) in self.budget_slots.iter().zip(before) {
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
            let key = counter_key(&policy.name, &limit.name, budget, &run.attrs, at);
            // A merged engine (a run re-bound across a deploy) may hold a policy twice,
            // from both artifacts: the step still counts once.
            let (added, value) = match counted.iter().find(|c| c.key == key) {
                Some(c) => (0, c.value),
                None => {
                    let after = number(run.aggs.get(usize::from(slot.agg)).map(|a| a.value()));
                    let added = after.saturating_sub(*before);
                    (added, budgets.add(&key, added))
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
        if counted.iter().take(i).any(|d| d.key == c.key) {
            continue;
        }
        out.push(Contribution {
            policy: c.key.policy.clone(),
            limit: c.key.monitor.clone(),
            tag: BudgetTag::of(&c.key),
            added: (c.unit, c.added),
            counter: (c.unit, c.value),
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
pub struct BudgetTag {
    pub per: Vec<(String, String)>,
    pub window_start: Option<i64>,
}

impl BudgetTag {
    pub(super) fn of(key: &CounterKey) -> BudgetTag {
        BudgetTag {
            per: key.key.iter().map(|(s, v)| (s.text(), v.clone())).collect(),
            window_start: key.window_start,
        }
    }
}

impl serde::Serialize for BudgetTag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Per<'a>(&'a [(String, String)]);
        impl serde::Serialize for Per<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("per", &Per(&self.per))?;
        map.serialize_entry("window_start", &self.window_start.map(format::timestamp))?;
        map.end()
    }
}
