//! A run's layout: the limits it judges, in order, each with its monitor and the value
//! below which it is quiet.
//!
//! What a run is bound to (its policies, their zones, arbitration's shadowing, raises in
//! force) changes rarely; a step only moves values. So the limits a step judges are laid
//! out once, when the binding changes, with each limit's NEAR and BREACH thresholds at its
//! effective value folded into one number: below it the limit is in no zone. A step first
//! finds the limits that need attention (a value at or over its threshold, a zone to leave,
//! an error, no value, a budget counter) and judges only those; a step with none builds
//! nothing. Runs bound alike share one layout, and the JIT compiles native code per layout
//! ([`crate::jit::WholeStep`]), so both engines judge through the same shape.

use super::{Engine, Run, Zone};
use crate::compile::bytecode::{LimitDesc, Program, near_threshold};
use crate::vm::Slot;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One judged limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Entry {
    /// Index into [`Run::zones`].
    pub(crate) zone: u16,
    /// Index into [`Run::bound`].
    pub(crate) bound: u16,
    /// The policy (index into the program's policies) and the limit within it.
    pub(crate) policy: u16,
    pub(crate) limit: u16,
    /// The limit's monitor; `None` for a budget across runs, judged on its counter.
    pub(crate) monitor: Option<u16>,
    /// The value the limit is judged at: its own, or a raise's.
    pub(crate) effective: i64,
    pub(crate) raised: bool,
    /// The least value that leaves the `below` zone at `effective`.
    pub(crate) quiet_below: i64,
}

impl Entry {
    /// Whether a step with this monitor value and zone changes nothing for the limit.
    #[inline]
    pub(crate) fn quiet(&self, value: Slot, zone: Zone) -> bool {
        matches!(value, Slot::Num(v) if v < self.quiet_below) && zone == Zone::Below
    }
}

/// The limits runs bound alike judge, and native code for them (JIT engines).
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) entries: Vec<Entry>,
    /// The common case at a glance: each monitor judged, with the least threshold of its
    /// limits, and the entries always attended (budget counters). While every zone is
    /// `below` and every such monitor is a number under its threshold, only those are.
    pub(crate) monitors: Vec<(u16, i64)>,
    pub(crate) always: Vec<u16>,
    /// The engine that made it: native code reads that engine's program.
    engine: u64,
    /// How many zones and raises the run had: a cheap check that the binding it was
    /// made for still holds.
    zones: usize,
    raises: usize,
    pub(crate) native: Option<crate::jit::WholeStep>,
}

/// A run's layout, dropped whenever what it was made from changes. Never part of a run's
/// identity: two runs in the same state are equal whether or not either has one yet.
#[derive(Debug, Clone, Default)]
pub(crate) struct LayoutSlot(pub(crate) Option<Arc<Layout>>);

impl PartialEq for LayoutSlot {
    fn eq(&self, _: &LayoutSlot) -> bool {
        true
    }
}

impl Eq for LayoutSlot {}

impl LayoutSlot {
    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }

    /// The layout, when it was made by `engine` for the binding the run has now.
    pub(crate) fn current(
        &self,
        engine: u64,
        run_zones: usize,
        run_raises: usize,
    ) -> Option<&Arc<Layout>> {
        self.0
            .as_ref()
            .filter(|l| l.engine == engine && l.zones == run_zones && l.raises == run_raises)
    }
}

/// A new engine's identity, for [`Layout`]s.
pub(super) fn engine_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The least value that leaves `below` for a limit judged at `value`.
fn quiet_below(limit: &LimitDesc, value: i64) -> i64 {
    if value == limit.value {
        return limit.lowest_threshold;
    }
    match limit
        .near
        .as_ref()
        .and_then(|n| near_threshold(value, n.percent))
    {
        Some(at) => at.min(value),
        None => value,
    }
}

/// The limits `run` judges now, in judging order.
fn entries(program: &Program, run: &Run) -> Vec<Entry> {
    let mut out = Vec::new();
    for (bi, bound) in run.bound.iter().enumerate() {
        let Some(policy) = program.policies.get(usize::from(bound.policy)) else {
            continue;
        };
        let first = usize::from(bound.first_limit);
        for (i, limit) in policy.limits.iter().enumerate() {
            let z = first + i;
            if run.shadowed.get(z).copied().unwrap_or(false) || z >= run.zones.len() {
                continue;
            }
            let raise = run
                .raises
                .iter()
                .find(|(k, _)| usize::from(*k) == z)
                .map(|(_, g)| g.value);
            let effective = raise.unwrap_or(limit.value);
            out.push(Entry {
                zone: small(z),
                bound: small(bi),
                policy: bound.policy,
                limit: small(i),
                monitor: limit.budget.is_none().then_some(limit.monitor),
                effective,
                raised: raise.is_some(),
                quiet_below: quiet_below(limit, effective),
            });
        }
    }
    out
}

fn small(i: usize) -> u16 {
    u16::try_from(i).unwrap_or(u16::MAX)
}

/// Each judged monitor with its limits' least threshold, and the entries always
/// attended.
fn at_a_glance(entries: &[Entry]) -> (Vec<(u16, i64)>, Vec<u16>) {
    let mut monitors: Vec<(u16, i64)> = Vec::new();
    let mut always = Vec::new();
    for (k, e) in entries.iter().enumerate() {
        match e.monitor {
            None => always.push(small(k)),
            Some(m) => match monitors.iter_mut().find(|(x, _)| *x == m) {
                Some((_, q)) => *q = (*q).min(e.quiet_below),
                None => monitors.push((m, e.quiet_below)),
            },
        }
    }
    (monitors, always)
}

/// The most layouts an engine keeps; past it the cache starts over (runs keep theirs).
const MAX_LAYOUTS: usize = 1024;

/// An engine's layouts by their entries.
pub(super) type Layouts =
    std::collections::HashMap<Vec<Entry>, Arc<Layout>, crate::base::hash::FnvBuild>;

impl Engine {
    /// Makes sure `run` has its current layout: the one its binding gives, shared with
    /// every run bound alike (native code compiled for it once, on a JIT engine).
    pub(super) fn ensure_layout(&mut self, run: &mut Run) {
        if run
            .layout
            .current(self.id, run.zones.len(), run.raises.len())
            .is_some()
        {
            return;
        }
        let entries = entries(self.program(), run);
        if let Some(l) = self.layouts.get(&entries) {
            run.layout.0 = Some(Arc::clone(l));
            return;
        }
        if self.layouts.len() >= MAX_LAYOUTS {
            self.layouts.clear();
        }
        let (monitors, always) = at_a_glance(&entries);
        // A JIT engine compiles the layout's whole step; should that fail, its runs still
        // take native code block by block (engine creation compiled every block).
        let native = self.jit.as_ref().and_then(|_| {
            let judges: Vec<crate::jit::Judge> = entries
                .iter()
                .map(|e| crate::jit::Judge {
                    monitor: e.monitor,
                    zone: e.zone,
                    quiet_below: e.quiet_below,
                })
                .collect();
            crate::jit::whole_step(self.program(), &judges, &monitors).ok()
        });
        let layout = Arc::new(Layout {
            monitors,
            always,
            entries: entries.clone(),
            engine: self.id,
            zones: run.zones.len(),
            raises: run.raises.len(),
            native,
        });
        self.layouts.insert(entries, Arc::clone(&layout));
        run.layout.0 = Some(layout);
    }
}

impl Engine {
    /// After a re-binding: the run's layout again, and the limits it judges at this step
    /// found anew from the values evaluation left.
    pub(super) fn relayout(&mut self, run: &mut Run) {
        self.ensure_layout(run);
        if let Some(layout) = &run.layout.0 {
            let s = &mut self.scratch;
            attention(layout, &s.values.monitors, &run.zones, &mut s.attention);
        }
    }
}

/// The entries of `layout` that need judging at this step, by the interpreter's values.
pub(super) fn attention(layout: &Layout, monitors: &[Slot], zones: &[Zone], out: &mut Vec<u16>) {
    out.clear();
    let quiet = zones.iter().fold(0u8, |any, z| any | *z as u8) == 0
        && layout
            .monitors
            .iter()
            .all(|(m, q)| matches!(monitors.get(usize::from(*m)), Some(Slot::Num(v)) if v < q));
    if quiet {
        out.extend_from_slice(&layout.always);
        return;
    }
    for (k, e) in layout.entries.iter().enumerate() {
        let value = match e.monitor {
            Some(m) => monitors.get(usize::from(m)).copied().unwrap_or(Slot::None),
            None => Slot::None,
        };
        let zone = zones
            .get(usize::from(e.zone))
            .copied()
            .unwrap_or(Zone::Below);
        if !e.quiet(value, zone) {
            out.push(small(k));
        }
    }
}
