//! The event queue: a virtual clock and a priority queue of events, over any time type `T`.
//!
//! Events are ordered by `(time, sequence number)`: two events scheduled for the same instant run in the
//! order they were scheduled, so a run never depends on the heap's internal layout.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One scheduled event.
#[derive(Debug)]
struct Entry<T, E> {
    time: T,
    seq: u64,
    event: E,
}

impl<T: Ord, E> PartialEq for Entry<T, E> {
    fn eq(&self, other: &Self) -> bool {
        self.time == other.time && self.seq == other.seq
    }
}

impl<T: Ord, E> Eq for Entry<T, E> {}

impl<T: Ord, E> PartialOrd for Entry<T, E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Ord, E> Ord for Entry<T, E> {
    // Reversed: `BinaryHeap` is a max-heap and the earliest event must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .time
            .cmp(&self.time)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// A virtual clock and the events scheduled after it.
#[derive(Debug)]
pub struct EventQueue<T, E> {
    now: T,
    next_seq: u64,
    heap: BinaryHeap<Entry<T, E>>,
    processed: u64,
}

impl<T: Copy + Ord, E> EventQueue<T, E> {
    /// An empty queue whose clock reads `start`.
    pub fn new(start: T) -> Self {
        Self {
            now: start,
            next_seq: 0,
            heap: BinaryHeap::with_capacity(1 << 16),
            processed: 0,
        }
    }

    /// The virtual time: that of the last event popped (or the start).
    pub fn now(&self) -> T {
        self.now
    }

    /// Schedule `event` at `time`; a time in the past is moved to now (the clock never runs backwards).
    pub fn schedule(&mut self, time: T, event: E) {
        let time = time.max(self.now);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { time, seq, event });
    }

    /// Schedule `event` at `time` with an order key of the caller's (events at one time run by key,
    /// smallest first); a queue takes either these or [`EventQueue::schedule`]'s, never both.
    pub fn schedule_keyed(&mut self, time: T, key: u64, event: E) {
        let time = time.max(self.now);
        self.heap.push(Entry {
            time,
            seq: key,
            event,
        });
    }

    /// Time of the next event, if any.
    pub fn peek_time(&self) -> Option<T> {
        self.heap.peek().map(|e| e.time)
    }

    /// Pop the next event if it is due at or before `until`, advancing the clock to its time.
    pub fn pop_until(&mut self, until: T) -> Option<(T, E)> {
        if self.heap.peek()?.time > until {
            return None;
        }
        let entry = self.heap.pop()?;
        self.now = entry.time;
        self.processed += 1;
        Some((entry.time, entry.event))
    }

    /// Move the clock forward to `time` (no event may be due before it).
    pub fn advance_to(&mut self, time: T) {
        debug_assert!(self.peek_time().is_none_or(|t| t >= time));
        self.now = self.now.max(time);
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Events popped so far.
    pub fn processed(&self) -> u64 {
        self.processed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Millis as Instant;

    #[test]
    fn earliest_first_and_fifo_among_equals() {
        let mut q = EventQueue::new(Instant::from_millis(0));
        q.schedule(Instant::from_millis(5), "b1");
        q.schedule(Instant::from_millis(1), "a");
        q.schedule(Instant::from_millis(5), "b2");
        q.schedule(Instant::from_millis(5), "b3");
        q.schedule(Instant::from_millis(9), "c");
        let mut out = Vec::new();
        while let Some((t, e)) = q.pop_until(Instant::from_millis(6)) {
            out.push((t.as_millis(), e));
        }
        assert_eq!(out, vec![(1, "a"), (5, "b1"), (5, "b2"), (5, "b3")]);
        assert_eq!(q.now(), Instant::from_millis(5));
        assert_eq!(q.len(), 1);
        assert_eq!(q.processed(), 4);
    }

    #[test]
    fn past_events_run_now() {
        let mut q = EventQueue::new(Instant::from_millis(10));
        q.schedule(Instant::from_millis(3), ());
        assert_eq!(q.peek_time(), Some(Instant::from_millis(10)));
    }
}
