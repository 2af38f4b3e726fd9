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
/// interpreter: a value tag ([`tag`](super::tag)) and two words, and `rate`'s window.
///
/// - `sum`, `count`: `tag` is `NUM` (the total in `a`) or the error that ended it.
/// - `max`, `min`: `NONE` until a step matched, then `NUM` (the extreme in `a`) or an error.
/// - `last`: the latest matching term, as tag and `a`.
/// - `avg`: `NUM` with the sum in `a` and the count (10⁹ per step) in `b`, or an error.
/// - `rate`: the window; `tag` and `a` are unused.
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AggState {
    pub(crate) tag: i64,
    pub(crate) a: i64,
    pub(crate) b: i64,
    window: Option<Box<Window>>,
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

impl AggState {
    /// The empty state for an aggregate.
    pub(crate) fn new(desc: &AggDesc) -> AggState {
        let (tag, window) = match desc.func {
            AggFunc::Sum | AggFunc::Count | AggFunc::Avg => (tag::NUM, None),
            AggFunc::Max | AggFunc::Min | AggFunc::Last => (tag::NONE, None),
            AggFunc::Rate => (tag::NONE, Some(Box::default())),
        };
        AggState {
            tag,
            a: 0,
            b: 0,
            window,
        }
    }

    /// Heap bytes held beyond the state itself.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.window.as_ref().map_or(0, |w| {
            std::mem::size_of::<Window>()
                + w.entries.heap_bytes()
                + w.failures.capacity() * std::mem::size_of::<(i64, ArithError)>()
        })
    }

    fn set(&mut self, s: Slot) {
        (self.tag, self.a) = tag::of(s);
    }

    fn set_err(&mut self, e: ArithError) {
        self.set(Slot::Err(e));
    }

    /// A `rate` taking one step over its trailing `window`, as [`AggState::update`] does,
    /// without the aggregate's description; its value then. `None` for any other state.
    #[inline]
    pub(crate) fn window_step(
        &mut self,
        window: i64,
        ts: i64,
        matched: Slot,
        term: Slot,
    ) -> Option<Slot> {
        self.window_update(window, ts, matched, term)?;
        self.window.as_ref().map(|w| w.value())
    }

    /// A `rate` taking one step: `None` (nothing done) for any other state.
    #[inline]
    fn window_update(&mut self, window: i64, ts: i64, matched: Slot, term: Slot) -> Option<()> {
        let w = self.window.as_mut()?;
        w.evict(ts, window);
        match (matched, term) {
            (Slot::Bool(true), Slot::Num(v)) => {
                w.entries.push_back((ts, v));
                w.sum += i128::from(v);
            }
            (Slot::Bool(true), Slot::Err(e)) | (Slot::Err(e), _) => {
                w.failures.push_back((ts, e));
            }
            _ => {}
        }
        Some(())
    }

    /// Takes one step in: `matched` is the filter's verdict (a value of `Slot::Bool`, or an
    /// error), `term` the argument's value when matched (`Slot::Num(SCALE)` for a count).
    pub(crate) fn update(&mut self, desc: &AggDesc, ts: i64, matched: Slot, term: Slot) {
        if self.window_update(desc.window, ts, matched, term).is_some() {
            return;
        }
        let term = match matched {
            Slot::Bool(false) => return,
            Slot::Bool(true) => term,
            Slot::Err(e) => Slot::Err(e),
            _ => return,
        };
        let ok = self.tag == tag::NUM;
        match (desc.func, term) {
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

    /// The aggregate's value at the current step.
    #[inline]
    pub(crate) fn value(&self, desc: &AggDesc) -> Slot {
        if let Some(w) = &self.window {
            return w.value();
        }
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
    /// An error while a failed step is in the window, else the sum (an error out of range).
    fn value(&self) -> Slot {
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

    fn rate(window_s: i64) -> AggDesc {
        AggDesc {
            func: AggFunc::Rate,
            arg: None,
            filter: None,
            window: window_s * SCALE,
        }
    }

    #[test]
    fn a_step_exactly_one_window_old_is_out_of_the_window() {
        let d = rate(60);
        let mut s = AggState::new(&d);
        s.update(&d, 0, Slot::Bool(true), Slot::Num(SCALE));
        s.update(&d, 59 * SCALE, Slot::Bool(true), Slot::Num(SCALE));
        assert_eq!(s.value(&d), Slot::Num(2 * SCALE));
        s.update(&d, 60 * SCALE, Slot::Bool(false), Slot::None);
        assert_eq!(s.value(&d), Slot::Num(SCALE));
    }

    #[test]
    fn an_overflowed_sum_stays_an_error() {
        let d = AggDesc {
            func: AggFunc::Sum,
            arg: None,
            filter: None,
            window: 0,
        };
        let mut s = AggState::new(&d);
        s.update(&d, 0, Slot::Bool(true), Slot::Num(i64::MAX));
        s.update(&d, 1, Slot::Bool(true), Slot::Num(1));
        assert_eq!(s.value(&d), Slot::Err(ArithError::Overflow));
        s.update(&d, 2, Slot::Bool(true), Slot::Num(-5));
        assert_eq!(s.value(&d), Slot::Err(ArithError::Overflow));
    }

    #[test]
    fn extremes_and_averages_of_nothing_have_no_value() {
        for func in [AggFunc::Max, AggFunc::Min, AggFunc::Last, AggFunc::Avg] {
            let d = AggDesc {
                func,
                arg: None,
                filter: None,
                window: 0,
            };
            let mut s = AggState::new(&d);
            s.update(&d, 0, Slot::Bool(false), Slot::Num(1));
            assert_eq!(s.value(&d), Slot::None, "{func:?}");
        }
    }
}
