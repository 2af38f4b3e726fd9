//! Aggregate accumulators: the per-run state monitors read.
//!
//! An aggregate is a function of the run's step history: once a term of a `sum`, `count`,
//! `max`, `min` or `avg` failed to evaluate (or the accumulator overflowed), the aggregate
//! is an error at every later step. `last` is the latest matching step's value. `rate`
//! keeps the matching steps of its trailing window `(t - W, t]` (16 bytes each) and is an
//! error while a failed step is in the window or the window's sum is out of range.

use super::Slot;
use crate::base::lang::AggFunc;
use crate::base::num::{self, ArithError, SCALE};
use crate::compile::bytecode::AggDesc;
use std::collections::VecDeque;

/// The state of one aggregate for one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AggState {
    /// `sum` and `count` (a count adds 10⁹ per step).
    Total(Result<i64, ArithError>),
    Extreme(Result<Option<i64>, ArithError>),
    Last(Slot),
    Avg(Result<(i64, i64), ArithError>),
    Window(Box<Window>),
}

/// `rate`'s window of matching steps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Window {
    entries: VecDeque<(i64, i64)>,
    /// Timestamps of steps in the window whose term failed, with the first error.
    failures: VecDeque<(i64, ArithError)>,
    sum: i128,
}

impl AggState {
    /// The empty state for an aggregate.
    pub(crate) fn new(desc: &AggDesc) -> AggState {
        match desc.func {
            AggFunc::Sum | AggFunc::Count => AggState::Total(Ok(0)),
            AggFunc::Max | AggFunc::Min => AggState::Extreme(Ok(None)),
            AggFunc::Last => AggState::Last(Slot::None),
            AggFunc::Avg => AggState::Avg(Ok((0, 0))),
            AggFunc::Rate => AggState::Window(Box::default()),
        }
    }

    /// Heap bytes held beyond the state itself.
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            AggState::Window(w) => {
                std::mem::size_of::<Window>()
                    + w.entries.capacity() * 16
                    + w.failures.capacity() * std::mem::size_of::<(i64, ArithError)>()
            }
            _ => 0,
        }
    }

    /// Takes one step in: `matched` is the filter's verdict (a value of `Slot::Bool`, or an
    /// error), `term` the argument's value when matched (`Slot::Num(SCALE)` for a count).
    pub(crate) fn update(&mut self, desc: &AggDesc, ts: i64, matched: Slot, term: Slot) {
        if let AggState::Window(w) = self {
            w.evict(ts, desc.window);
        }
        let term = match matched {
            Slot::Bool(false) => return,
            Slot::Bool(true) => term,
            Slot::Err(e) => Slot::Err(e),
            _ => return,
        };
        match self {
            AggState::Total(total) => {
                *total = match (*total, term) {
                    (Ok(t), Slot::Num(v)) => num::add(t, v),
                    (Ok(_), Slot::Err(e)) => Err(e),
                    (acc, _) => acc,
                };
            }
            AggState::Extreme(acc) => {
                let max = desc.func == AggFunc::Max;
                *acc = match (*acc, term) {
                    (Ok(None), Slot::Num(v)) => Ok(Some(v)),
                    (Ok(Some(cur)), Slot::Num(v)) => {
                        Ok(Some(if max { cur.max(v) } else { cur.min(v) }))
                    }
                    (Ok(_), Slot::Err(e)) => Err(e),
                    (acc, _) => acc,
                };
            }
            AggState::Last(last) => {
                if matches!(term, Slot::Num(_) | Slot::Bool(_) | Slot::Err(_)) {
                    *last = term;
                }
            }
            AggState::Avg(acc) => {
                *acc = match (*acc, term) {
                    (Ok((sum, n)), Slot::Num(v)) => {
                        num::add(sum, v).and_then(|s| num::add(n, SCALE).map(|n| (s, n)))
                    }
                    (Ok(_), Slot::Err(e)) => Err(e),
                    (acc, _) => acc,
                };
            }
            AggState::Window(w) => match term {
                Slot::Num(v) => {
                    w.entries.push_back((ts, v));
                    w.sum += i128::from(v);
                }
                Slot::Err(e) => w.failures.push_back((ts, e)),
                _ => {}
            },
        }
    }

    /// The aggregate's value at the current step.
    pub(crate) fn value(&self) -> Slot {
        match self {
            AggState::Total(t) => t.map_or_else(Slot::Err, Slot::Num),
            AggState::Extreme(e) => match e {
                Ok(Some(v)) => Slot::Num(*v),
                Ok(None) => Slot::None,
                Err(e) => Slot::Err(*e),
            },
            AggState::Last(s) => *s,
            AggState::Avg(a) => match a {
                Ok((_, 0)) => Slot::None,
                Ok((sum, n)) => num::div(*sum, *n).map_or_else(Slot::Err, Slot::Num),
                Err(e) => Slot::Err(*e),
            },
            AggState::Window(w) => match w.failures.front() {
                Some((_, e)) => Slot::Err(*e),
                None => i64::try_from(w.sum).map_or(Slot::Err(ArithError::Overflow), Slot::Num),
            },
        }
    }
}

impl Window {
    /// Drops the steps at or before `ts - window`: a step exactly one window old is out.
    fn evict(&mut self, ts: i64, window: i64) {
        let cutoff = i128::from(ts) - i128::from(window);
        while let Some(&(t, v)) = self.entries.front() {
            if i128::from(t) > cutoff {
                break;
            }
            self.sum -= i128::from(v);
            self.entries.pop_front();
        }
        while let Some(&(t, _)) = self.failures.front() {
            if i128::from(t) > cutoff {
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
        assert_eq!(s.value(), Slot::Num(2 * SCALE));
        s.update(&d, 60 * SCALE, Slot::Bool(false), Slot::None);
        assert_eq!(s.value(), Slot::Num(SCALE));
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
        assert_eq!(s.value(), Slot::Err(ArithError::Overflow));
        s.update(&d, 2, Slot::Bool(true), Slot::Num(-5));
        assert_eq!(s.value(), Slot::Err(ArithError::Overflow));
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
            assert_eq!(s.value(), Slot::None, "{func:?}");
        }
    }
}
