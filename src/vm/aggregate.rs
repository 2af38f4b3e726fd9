//! Aggregate accumulators: the per-run state monitors read.
//!
//! An aggregate is a function of the run's step history: once a term of a `sum`, `count`,
//! `max`, `min` or `avg` failed to evaluate (or the accumulator overflowed), the aggregate
//! is an error at every later step. `last` is the latest matching step's value. `rate`
//! keeps the matching steps of its trailing window `(t - W, t]` (16 bytes each) and is an
//! error while a failed step is in the window or the window's sum is out of range.

use super::{Slot, tag};
use crate::base::lang::AggFunc;
use crate::base::num::{self, ArithError, SCALE};
use crate::compile::bytecode::AggDesc;
use std::collections::VecDeque;

/// The state of one aggregate for one run, laid out for native code as well as the
/// interpreter: a value tag ([`tag`](super::tag)) and two words (24 bytes).
///
/// - `sum`, `count`: `tag` is `NUM` (the total in `a`) or the error that ended it.
/// - `max`, `min`: `NONE` until a step matched, then `NUM` (the extreme in `a`) or an error.
/// - `last`: the latest matching term, as tag and `a`.
/// - `avg`: `NUM` with the sum in `a` and the count (10⁹ per step) in `b`, or an error.
/// - `rate`: `a` is the index of its window among the run's ([`Aggs`]).
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AggState {
    pub(crate) tag: i64,
    pub(crate) a: i64,
    pub(crate) b: i64,
}

/// `rate`'s window of matching steps: a ring buffer whose sum is kept as steps enter
/// and leave it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Window {
    entries: super::ring::Ring,
    /// Timestamps of steps in the window whose term failed, with the first error.
    failures: VecDeque<(i64, ArithError)>,
    sum: i128,
}

/// A run's aggregates: one cell each, and the windows of its `rate`s, which the cells
/// index (windows come in aggregate order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Aggs {
    /// Boxed slices, not vectors: a run's aggregates change only when its program grows
    /// at a deploy, and a boxed slice's header is the smaller.
    pub(crate) cells: Box<[AggState]>,
    pub(crate) windows: Box<[Window]>,
}

impl Aggs {
    /// Empty state for these aggregates.
    pub(crate) fn new(descs: &[AggDesc]) -> Aggs {
        let mut aggs = Aggs::default();
        aggs.extend(descs);
        aggs
    }

    /// Empty state for the aggregates of `descs` past those held (a program that grew at
    /// a deploy keeps the state of the ones it shares).
    pub(crate) fn extend(&mut self, descs: &[AggDesc]) {
        let new = descs.get(self.cells.len()..).unwrap_or(&[]);
        let mut cells = std::mem::take(&mut self.cells).into_vec();
        cells.reserve_exact(new.len());
        let rates = new.iter().filter(|d| d.func == AggFunc::Rate).count();
        let mut windows = std::mem::take(&mut self.windows).into_vec();
        windows.reserve_exact(rates);
        for desc in new {
            let (tag, a) = match desc.func {
                AggFunc::Sum | AggFunc::Count | AggFunc::Avg => (tag::NUM, 0),
                AggFunc::Max | AggFunc::Min | AggFunc::Last => (tag::NONE, 0),
                AggFunc::Rate => {
                    windows.push(Window::default());
                    let k = i64::try_from(windows.len() - 1).unwrap_or(i64::MAX);
                    (tag::NONE, k)
                }
            };
            cells.push(AggState { tag, a, b: 0 });
        }
        self.cells = cells.into_boxed_slice();
        self.windows = windows.into_boxed_slice();
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.cells.len() * std::mem::size_of::<AggState>()
            + self.windows.len() * std::mem::size_of::<Window>()
            + self.windows.iter().map(Window::heap_bytes).sum::<usize>()
    }

    /// Aggregate `i` takes one step in: `matched` is the filter's verdict (a value of
    /// `Slot::Bool`, or an error), `term` the argument's value when matched
    /// (`Slot::Num(SCALE)` for a count).
    pub(crate) fn update(&mut self, i: usize, desc: &AggDesc, ts: i64, matched: Slot, term: Slot) {
        let Some(cell) = self.cells.get_mut(i) else {
            return;
        };
        if desc.func == AggFunc::Rate {
            if let Some(w) = window_of(cell, &mut self.windows) {
                w.step(desc.window, ts, matched, term);
            }
            return;
        }
        cell.update(desc, matched, term);
    }

    /// Aggregate `i`'s value at the current step.
    #[inline]
    pub(crate) fn value(&self, i: usize, desc: &AggDesc) -> Slot {
        let Some(cell) = self.cells.get(i) else {
            return Slot::None;
        };
        if desc.func == AggFunc::Rate {
            let w = usize::try_from(cell.a)
                .ok()
                .and_then(|k| self.windows.get(k));
            return w.map_or(Slot::None, Window::value);
        }
        cell.value(desc)
    }
}

/// A `rate` cell's window.
fn window_of<'w>(cell: &AggState, windows: &'w mut [Window]) -> Option<&'w mut Window> {
    windows.get_mut(usize::try_from(cell.a).ok()?)
}

impl AggState {
    fn set(&mut self, s: Slot) {
        (self.tag, self.a) = tag::of(s);
    }

    fn set_err(&mut self, e: ArithError) {
        self.set(Slot::Err(e));
    }

    /// Takes one step in (any aggregate but `rate`): `matched` is the filter's verdict,
    /// `term` the argument's value when matched.
    pub(crate) fn update(&mut self, desc: &AggDesc, matched: Slot, term: Slot) {
        let term = match matched {
            Slot::Bool(false) => return,
            Slot::Bool(true) => term,
            Slot::Err(e) => Slot::Err(e),
            _ => return,
        };
        let ok = self.tag == tag::NUM;
        match (desc.func, term) {
            (AggFunc::Rate, _) => {}
            (AggFunc::Last, Slot::Num(_) | Slot::Bool(_) | Slot::Err(_)) => self.set(term),
            (AggFunc::Last, _) => {}
            (_, Slot::Err(e)) if ok || self.tag == tag::NONE => self.set_err(e),
            (AggFunc::Sum | AggFunc::Count, Slot::Num(v)) if ok => match num::add(self.a, v) {
                Ok(t) => self.a = t,
                Err(e) => self.set_err(e),
            },
            (AggFunc::Max | AggFunc::Min, Slot::Num(v)) if ok || self.tag == tag::NONE => {
                let max = desc.func == AggFunc::Max;
                let v = match ok {
                    false => v,
                    true if max => self.a.max(v),
                    true => self.a.min(v),
                };
                self.set(Slot::Num(v));
            }
            (AggFunc::Avg, Slot::Num(v)) if ok => {
                match num::add(self.a, v).and_then(|s| num::add(self.b, SCALE).map(|n| (s, n))) {
                    Ok((s, n)) => (self.a, self.b) = (s, n),
                    Err(e) => self.set_err(e),
                }
            }
            _ => {}
        }
    }

    /// The aggregate's value at the current step (any aggregate but `rate`).
    #[inline]
    pub(crate) fn value(&self, desc: &AggDesc) -> Slot {
        match (desc.func, tag::slot(self.tag, self.a)) {
            (AggFunc::Avg, Slot::Num(_)) if self.b == 0 => Slot::None,
            (AggFunc::Avg, Slot::Num(sum)) => {
                num::div(sum, self.b).map_or_else(Slot::Err, Slot::Num)
            }
            (_, s) => s,
        }
    }
}

impl Window {
    /// Takes one step over its trailing `window`: evicts what fell out, then keeps a
    /// matched step's term (a failed one among the failures); the value then.
    #[inline]
    pub(crate) fn step(&mut self, window: i64, ts: i64, matched: Slot, term: Slot) -> Slot {
        self.evict(ts, window);
        match (matched, term) {
            (Slot::Bool(true), Slot::Num(v)) => {
                self.entries.push_back((ts, v));
                self.sum += i128::from(v);
            }
            (Slot::Bool(true), Slot::Err(e)) | (Slot::Err(e), _) => {
                self.failures.push_back((ts, e));
            }
            _ => {}
        }
        self.value()
    }

    fn heap_bytes(&self) -> usize {
        self.entries.heap_bytes()
            + self.failures.capacity() * std::mem::size_of::<(i64, ArithError)>()
    }

    /// An error while a failed step is in the window, else the sum (an error out of range).
    pub(crate) fn value(&self) -> Slot {
        match self.failures.front() {
            Some((_, e)) => Slot::Err(*e),
            None => i64::try_from(self.sum).map_or(Slot::Err(ArithError::Overflow), Slot::Num),
        }
    }

    /// Drops the steps at or before `ts - window`: a step exactly one window old is out.
    fn evict(&mut self, ts: i64, window: i64) {
        // A cutoff below the least time evicts nothing.
        let Some(cutoff) = ts.checked_sub(window) else {
            return;
        };
        while let Some((t, v)) = self.entries.front() {
            if t > cutoff {
                break;
            }
            self.sum -= i128::from(v);
            self.entries.pop_front();
        }
        while let Some(&(t, _)) = self.failures.front() {
            if t > cutoff {
                break;
            }
            self.failures.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(func: AggFunc, window_s: i64) -> AggDesc {
        AggDesc {
            func,
            arg: None,
            filter: None,
            window: window_s * SCALE,
        }
    }

    #[test]
    fn a_step_exactly_one_window_old_is_out_of_the_window() {
        let d = desc(AggFunc::Rate, 60);
        let mut s = Aggs::new(std::slice::from_ref(&d));
        s.update(0, &d, 0, Slot::Bool(true), Slot::Num(SCALE));
        s.update(0, &d, 59 * SCALE, Slot::Bool(true), Slot::Num(SCALE));
        assert_eq!(s.value(0, &d), Slot::Num(2 * SCALE));
        s.update(0, &d, 60 * SCALE, Slot::Bool(false), Slot::None);
        assert_eq!(s.value(0, &d), Slot::Num(SCALE));
    }

    #[test]
    fn an_overflowed_sum_stays_an_error() {
        let d = desc(AggFunc::Sum, 0);
        let mut s = Aggs::new(std::slice::from_ref(&d));
        s.update(0, &d, 0, Slot::Bool(true), Slot::Num(i64::MAX));
        s.update(0, &d, 1, Slot::Bool(true), Slot::Num(1));
        assert_eq!(s.value(0, &d), Slot::Err(ArithError::Overflow));
        s.update(0, &d, 2, Slot::Bool(true), Slot::Num(-5));
        assert_eq!(s.value(0, &d), Slot::Err(ArithError::Overflow));
    }

    #[test]
    fn extremes_and_averages_of_nothing_have_no_value() {
        for func in [AggFunc::Max, AggFunc::Min, AggFunc::Last, AggFunc::Avg] {
            let d = desc(func, 0);
            let mut s = Aggs::new(std::slice::from_ref(&d));
            s.update(0, &d, 0, Slot::Bool(false), Slot::Num(1));
            assert_eq!(s.value(0, &d), Slot::None, "{func:?}");
        }
    }

    #[test]
    fn each_rate_keeps_its_own_window_after_others_and_a_program_that_grew() {
        let (r, n) = (desc(AggFunc::Rate, 60), desc(AggFunc::Sum, 0));
        let first = [n.clone(), r.clone()];
        let mut s = Aggs::new(&first);
        s.update(1, &r, 0, Slot::Bool(true), Slot::Num(SCALE));
        let grown = [n, r.clone(), r.clone()];
        s.extend(&grown);
        s.update(2, &r, 1, Slot::Bool(true), Slot::Num(5 * SCALE));
        assert_eq!(s.value(1, &r), Slot::Num(SCALE));
        assert_eq!(s.value(2, &r), Slot::Num(5 * SCALE));
        assert_eq!(std::mem::size_of::<AggState>(), 24);
    }
}
