//! A ring buffer of `(time, value)` pairs for `rate`'s window: steps enter at the back and
//! leave from the front, each in a few instructions (a power-of-two capacity, so an index
//! wraps by a mask), and it grows only while the window holds more steps than ever.

/// The pairs in the window, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ring {
    /// A boxed slice, not a vector: it only ever grows by doubling, and its header is the
    /// smaller one (a run holds one ring per window).
    slots: Box<[(i64, i64)]>,
    head: usize,
    len: usize,
}

impl Ring {
    /// The oldest pair.
    #[inline]
    pub(crate) fn front(&self) -> Option<(i64, i64)> {
        if self.len == 0 {
            return None;
        }
        self.slots.get(self.head).copied()
    }

    #[inline]
    pub(crate) fn pop_front(&mut self) {
        if self.len > 0 {
            self.head = (self.head + 1) & self.slots.len().wrapping_sub(1);
            self.len -= 1;
        }
    }

    #[inline]
    pub(crate) fn push_back(&mut self, pair: (i64, i64)) {
        if self.len == self.slots.len() {
            self.grow();
        }
        let at = (self.head + self.len) & self.slots.len().wrapping_sub(1);
        if let Some(slot) = self.slots.get_mut(at) {
            *slot = pair;
            self.len += 1;
        }
    }

    /// Doubles the capacity (at least 8), keeping the pairs in order from index 0.
    #[cold]
    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(8).next_power_of_two();
        let mut slots = Vec::with_capacity(size);
        slots.extend(self.iter());
        slots.resize(size, (0, 0));
        self.slots = slots.into_boxed_slice();
        self.head = 0;
    }

    /// The pairs, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        let mask = self.slots.len().wrapping_sub(1);
        (0..self.len).filter_map(move |i| self.slots.get((self.head + i) & mask).copied())
    }

    /// Bytes held on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<(i64, i64)>()
    }
}

/// Two windows are equal when they hold the same pairs in the same order, wherever in
/// their buffers those sit.
impl PartialEq for Ring {
    fn eq(&self, other: &Ring) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for Ring {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    #[test]
    fn the_ring_keeps_order_through_wraps_and_growth_as_a_deque_does() {
        let (mut ring, mut deque) = (Ring::default(), VecDeque::new());
        let mut x: u64 = 7;
        for i in 0..10_000i64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if (x >> 33).is_multiple_of(3) {
                ring.pop_front();
                deque.pop_front();
            } else {
                ring.push_back((i, i * 2));
                deque.push_back((i, i * 2));
            }
            assert_eq!(ring.front(), deque.front().copied(), "step {i}");
        }
        assert!(ring.iter().eq(deque.iter().copied()));
    }
}
