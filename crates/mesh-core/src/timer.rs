//! One timer table for a node, keyed by [`Timer`] (after quinn-proto's `connection/timer.rs`): every
//! deadline of the node's parts lives here, so [`Node::poll_timeout`](crate::Node::poll_timeout) reads
//! the earliest in `O(log n)` instead of scanning every link, pending message and lookup, and
//! [`Node::handle_timeout`](crate::Node::handle_timeout) visits only the timers that are due.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use kademlia_core::{Instant, NodeId};

/// A node's timers. The composer runs due timers kind by kind, in the order of the variants (links,
/// direct messages, lookups, then the node-wide ones), each kind in key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// The earliest timer of the link to this peer (see `Link::deadline`).
    Link(NodeId),
    /// The retry deadline of the direct message with this id.
    Direct(u64),
    /// The round deadline of the lookup with this id.
    Lookup(u64),
    /// The deadline of the DHT command with this id.
    Dht(u64),
    /// The next republication of a record this node publishes.
    Republish,
    /// Our neighbor lists go out (`announce_delay` after a change).
    Announce,
    /// Lists whose third level changed go out anyway (only counted while joined).
    NeighborsRefresh,
    /// The next look at the links (dial plans, capacity).
    Maintenance,
}

/// Deadlines by timer, with an index by time.
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    at: BTreeMap<Timer, Instant>,
    queue: BTreeSet<(Instant, Timer)>,
}

impl TimerTable {
    /// Sets `timer` to fire at `at`, or stops it (`None`).
    pub(crate) fn set(&mut self, timer: Timer, at: Option<Instant>) {
        let old = match at {
            Some(t) => self.at.insert(timer, t),
            None => self.at.remove(&timer),
        };
        if old == at {
            return;
        }
        if let Some(old) = old {
            self.queue.remove(&(old, timer));
        }
        if let Some(t) = at {
            self.queue.insert((t, timer));
        }
    }

    /// Stops `timer`.
    pub(crate) fn stop(&mut self, timer: Timer) {
        self.set(timer, None);
    }

    /// When `timer` fires, if it is set.
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.at.get(&timer).copied()
    }

    /// Whether `timer` is set and due at `now`.
    pub(crate) fn is_due(&self, timer: Timer, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.queue.first().map(|(t, _)| *t)
    }

    /// The timers due at `now` that `pick` selects, in key order.
    fn due<K: Ord>(&self, now: Instant, pick: impl Fn(&Timer) -> Option<K>) -> Vec<K> {
        let mut due: Vec<K> = self
            .queue
            .iter()
            .take_while(|(t, _)| *t <= now)
            .filter_map(|(_, timer)| pick(timer))
            .collect();
        due.sort_unstable();
        due
    }

    /// The links with a timer due at `now`, in id order.
    pub(crate) fn due_links(&self, now: Instant) -> Vec<NodeId> {
        self.due(now, |t| match t {
            Timer::Link(p) => Some(*p),
            _ => None,
        })
    }

    /// The direct messages due at `now`, in id order.
    pub(crate) fn due_directs(&self, now: Instant) -> Vec<u64> {
        self.due(now, |t| match t {
            Timer::Direct(id) => Some(*id),
            _ => None,
        })
    }

    /// The lookups due at `now`, in id order.
    pub(crate) fn due_dhts(&self, now: Instant) -> Vec<u64> {
        self.due(now, |t| match t {
            Timer::Dht(id) => Some(*id),
            _ => None,
        })
    }

    pub(crate) fn due_lookups(&self, now: Instant) -> Vec<u64> {
        self.due(now, |t| match t {
            Timer::Lookup(id) => Some(*id),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 20])
    }

    #[test]
    fn the_earliest_deadline_is_next_and_moves_when_reset() {
        let mut t = TimerTable::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Maintenance, Some(Instant::from_millis(50)));
        t.set(Timer::Link(id(1)), Some(Instant::from_millis(20)));
        assert_eq!(t.next(), Some(Instant::from_millis(20)));
        t.set(Timer::Link(id(1)), Some(Instant::from_millis(80)));
        assert_eq!(t.next(), Some(Instant::from_millis(50)));
        t.stop(Timer::Maintenance);
        assert_eq!(t.next(), Some(Instant::from_millis(80)));
        assert_eq!(t.get(Timer::Maintenance), None);
    }

    #[test]
    fn due_timers_come_in_key_order_not_time_order() {
        let mut t = TimerTable::default();
        t.set(Timer::Link(id(3)), Some(Instant::from_millis(1)));
        t.set(Timer::Link(id(1)), Some(Instant::from_millis(5)));
        t.set(Timer::Link(id(2)), Some(Instant::from_millis(9)));
        t.set(Timer::Direct(7), Some(Instant::from_millis(2)));
        t.set(Timer::Direct(4), Some(Instant::from_millis(3)));
        t.set(Timer::Lookup(1), Some(Instant::from_millis(4)));
        let now = Instant::from_millis(5);
        assert_eq!(t.due_links(now), [id(1), id(3)]);
        assert_eq!(t.due_directs(now), [4, 7]);
        assert_eq!(t.due_lookups(now), [1]);
        assert!(t.is_due(Timer::Lookup(1), now));
        assert!(!t.is_due(Timer::Link(id(2)), now));
    }
}
