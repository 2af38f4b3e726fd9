//! A run's state: what it is bound to, its zones, grants, throttles and totals.

use super::Zone;
use super::decision::{self, Action};
use super::event::RunStart;
use super::{layout, overrides, rebind};
use crate::base::lang::Enforcement;
use crate::compile::bytecode::PolicyDesc;
use crate::vm::Aggs;
use std::sync::Arc;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RunState {
    Running,
    Paused,
    Stopped,
    Killed,
}

impl RunState {
    pub(super) fn of(e: Enforcement) -> RunState {
        match e {
            Enforcement::Pause => RunState::Paused,
            Enforcement::Stop => RunState::Stopped,
            Enforcement::Kill => RunState::Killed,
        }
    }

    pub(super) fn action(self) -> Action {
        match self {
            RunState::Running => Action::Continue,
            RunState::Paused => Action::Pause,
            RunState::Stopped => Action::Stop,
            RunState::Killed => Action::Kill,
        }
    }

    pub(super) fn refusal(self) -> &'static str {
        match self {
            RunState::Running => "",
            RunState::Paused => "run_paused",
            RunState::Stopped => "run_stopped",
            RunState::Killed => "run_killed",
        }
    }
}

/// A policy bound to a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    /// Index into the artifact's policies.
    pub policy: u16,
    /// Where the policy's limits start in [`Run::zones`].
    pub first_limit: u16,
    /// The policy holds a pause (LANGUAGE §9: pauses are held per policy).
    pub holds_pause: bool,
    /// A suspension in force: the policy's enforcement is alert-only.
    pub suspension: Option<Grant>,
    /// Alerts of this policy delivered in the run, and when the last one was.
    pub throttle: Throttle,
}

/// Alert throttling state of one policy in one run (LANGUAGE §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    pub delivered: u32,
    pub last_delivered: Option<i64>,
}

impl Throttle {
    /// Judges one signal's alert at `ts`: `None` delivers it (and counts it), `Some(why)`
    /// suppresses it. BREACH alerts are never suppressed and still count.
    pub(super) fn judge(
        &mut self,
        policy: &PolicyDesc,
        kind: &str,
        ts: i64,
    ) -> Option<&'static str> {
        if kind != "breach" {
            if policy.max_per_run.is_some_and(|max| self.delivered >= max) {
                return Some("max_per_run");
            }
            if self.last_delivered.is_some_and(|last| {
                i128::from(ts) - i128::from(last) < i128::from(policy.min_interval)
            }) {
                return Some("min_interval");
            }
        }
        self.delivered = self.delivered.saturating_add(1);
        self.last_delivered = Some(ts);
        None
    }
}

/// A granted override in force: `value` for raises; `until` is `None` for the whole run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub value: i64,
    pub until: Option<i64>,
}

impl Grant {
    /// In force at `ts` (LANGUAGE §10: while `step.ts < until`).
    pub(crate) fn active_at(&self, ts: i64) -> bool {
        self.until.is_none_or(|u| ts < u)
    }
}

/// Totals kept for the run's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Totals {
    pub steps: u64,
    pub refused: u64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: i64,
}

/// Everything the runtime keeps for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub id: Arc<str>,
    pub attrs: RunStart,
    /// The run's value for each of the artifact's label keys.
    pub(super) labels: Vec<String>,
    /// Events of the run accepted so far (the last one's `seq`).
    pub seq: u64,
    /// The run's clock: the latest `ts` among its accepted events. Every event is judged
    /// at it, so an event stamped earlier (a late parallel tool call) is judged at the
    /// clock, never rejected or set apart.
    pub clock: i64,
    pub state: RunState,
    /// Why the run entered its state (`breach: ...`).
    pub state_reason: Option<String>,
    pub ended: bool,
    pub(super) aggs: Aggs,
    pub bound: Vec<Bound>,
    /// The zone of every bound limit, policy by policy (see [`Bound::first_limit`]).
    pub zones: Vec<Zone>,
    /// Raises in force, by index into `zones`; usually empty.
    pub raises: Vec<(u16, Grant)>,
    /// Bound limits arbitration shadowed (parallel to `zones`): not judged.
    pub shadowed: Vec<bool>,
    /// `first_token` policies in scope that await their binding moment.
    pub awaiting: Vec<u16>,
    /// Conflicts already signalled, so re-arbitrating to the same one emits nothing.
    pub(super) conflicts_seen: Vec<String>,
    /// Groups (by monitor identity) a `fail_closed` disagreement put under
    /// `most_restrictive` for the rest of the run (precise rule 4).
    pub(super) forced_groups: Vec<String>,
    /// A step with `output_tokens > 0` was seen: `first_token` policies bound, or none to bind.
    pub first_token_passed: bool,
    /// A re-binding prepared by a deploy, carried out at the run's next step.
    pub(super) rebind: Option<Box<rebind::Plan>>,
    /// Monitors that started after the run's first step (first seen in a deploy), with the
    /// `seq` of the step they started at.
    pub started: Vec<(String, u64)>,
    /// The `seq` of the first step after the run's last re-binding on a deploy.
    pub(super) fresh_since: Option<std::num::NonZeroU64>,
    pub snapshot: Arc<str>,
    pub totals: Totals,
    /// The counter of each budget slot of the run's engine, as last computed (a run's
    /// attributes never change: a key is built again only when its window turns).
    pub(super) budget_keys: Box<[Option<std::sync::Arc<super::budget::CounterKey>>]>,
    /// Every monitor's value at the run's last step (what its limits observed).
    pub(crate) observed: Vec<crate::vm::Slot>,
    /// The limits the run judges, as its binding lays them out ([`layout`]).
    pub(super) layout: layout::LayoutSlot,
    /// Override requests waiting for approvals.
    pub(super) pending: Vec<overrides::Pending>,
    /// Every override request of the run by `seq`, with its status, for approvals.
    pub(super) requests: std::collections::BTreeMap<u64, decision::OverrideOutcome>,
    /// The idempotency keys of the run's latest keyed steps; none until a step has one.
    pub(super) keys: Option<Box<RecentKeys>>,
}

/// How many of a run's latest keyed steps are remembered: a client retries a step within
/// seconds, long before this many later steps were accepted.
pub const KEPT_KEYS: usize = 256;

/// The idempotency keys of a run's latest keyed steps, each with the step's `seq`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentKeys(std::collections::VecDeque<(Box<str>, u64)>);

impl RecentKeys {
    fn remember(&mut self, key: &str, seq: u64) {
        if self.0.len() == KEPT_KEYS {
            self.0.pop_front();
        }
        self.0.push_back((key.into(), seq));
    }

    fn seq_of(&self, key: &str) -> Option<u64> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| &**k == key)
            .map(|&(_, seq)| seq)
    }

    fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<(Box<str>, u64)>()
            + self.0.iter().map(|(k, _)| k.len()).sum::<usize>()
    }
}

impl Run {
    /// The `seq` of the step the run accepted with idempotency key `key`, among its latest
    /// [`KEPT_KEYS`] keyed steps.
    pub fn step_with_key(&self, key: &str) -> Option<u64> {
        self.keys.as_ref()?.seq_of(key)
    }

    pub(super) fn remember_key(&mut self, key: &str, seq: u64) {
        self.keys.get_or_insert_default().remember(key, seq);
    }

    /// Bytes this run holds: the struct and its heap, windows included.
    pub fn memory_bytes(&self) -> usize {
        let strings = self.id.len()
            + self.attrs.run_id.capacity()
            + self.attrs.tenant.capacity()
            + self.attrs.agent.capacity()
            + self.attrs.api_key.capacity()
            + self.attrs.human_actor.capacity()
            + self
                .attrs
                .labels
                .iter()
                .map(|(k, v)| k.capacity() + v.capacity() + 48)
                .sum::<usize>()
            + self.labels.iter().map(|l| l.capacity() + 24).sum::<usize>()
            + self.state_reason.as_ref().map_or(0, String::capacity)
            + self
                .started
                .iter()
                .map(|(m, _)| m.capacity() + 32)
                .sum::<usize>()
            + self.snapshot.len();
        let aggs = self.aggs.heap_bytes();
        let bound = self.bound.capacity() * std::mem::size_of::<Bound>()
            + self.zones.capacity()
            + self.raises.capacity() * std::mem::size_of::<(u16, Grant)>();
        let observed = self.observed.capacity() * std::mem::size_of::<crate::vm::Slot>();
        let keys = self
            .keys
            .as_ref()
            .map_or(0, |k| std::mem::size_of::<RecentKeys>() + k.heap_bytes());
        std::mem::size_of::<Run>() + strings + aggs + bound + observed + keys
    }
}
