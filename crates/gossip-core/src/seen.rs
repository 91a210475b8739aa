//! The seen-cache: ids of accepted messages, bounded in count and age.

use core::time::Duration;
// Ordered collections only: a HashMap's seeded iteration order would break determinism.
use std::collections::{BTreeMap, BTreeSet};

use p2pmesh_base::{Instant, NodeId};

use crate::message::MessageId;

/// What the node remembers about an accepted message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The origin's timestamp.
    pub timestamp: Instant,
    /// The link it first arrived on; `None` for the node's own messages.
    pub from: Option<NodeId>,
    /// Hops of its shortest path seen so far (a later copy over fewer hops lowers it).
    pub hops: u8,
    /// Hops it had travelled when it first arrived: the hops of the copy this node forwarded.
    pub first_hops: u8,
}

/// Ids of accepted messages, for deduplication, bounded in count (`max_entries`) and age (`max_age`,
/// measured from each message's timestamp).
///
/// Forgetting an id must not let its message in again. So every forgotten id raises a *floor* to its
/// message's timestamp, and [`SeenCache::admits`] refuses every timestamp at or below the floor: an id is
/// forgotten only once no message that old can be accepted any more. When the cache is sized for the
/// traffic of its age window, the floor never passes the window and refuses nothing extra.
#[derive(Debug, Clone)]
pub struct SeenCache {
    entries: BTreeMap<MessageId, Seen>,
    // Oldest message first: age and count eviction both take from the front.
    by_time: BTreeSet<(Instant, MessageId)>,
    max_entries: usize,
    max_age: Duration,
    floor: Option<Instant>,
}

impl SeenCache {
    /// An empty cache with these bounds.
    ///
    /// # Panics
    /// If `max_entries` is zero.
    pub fn new(max_entries: usize, max_age: Duration) -> Self {
        assert!(max_entries >= 1, "a seen-cache holds at least one id");
        Self {
            entries: BTreeMap::new(),
            by_time: BTreeSet::new(),
            max_entries,
            max_age,
            floor: None,
        }
    }

    /// What is remembered about `id`.
    pub fn get(&self, id: &MessageId) -> Option<&Seen> {
        self.entries.get(id)
    }

    /// Whether `id` is remembered.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.entries.contains_key(id)
    }

    /// Whether a message with this timestamp, not in the cache, may be accepted at `now`: it is within the
    /// age window and newer than every forgotten id.
    pub fn admits(&self, timestamp: Instant, now: Instant) -> bool {
        now.saturating_duration_since(timestamp) <= self.max_age
            && self.floor.is_none_or(|floor| timestamp > floor)
    }

    /// Remembers `id`; returns how many ids were forgotten to stay within the count bound.
    pub fn insert(&mut self, id: MessageId, seen: Seen) -> usize {
        if let Some(old) = self.entries.insert(id, seen) {
            self.by_time.remove(&(old.timestamp, id));
        }
        self.by_time.insert((seen.timestamp, id));
        let mut evicted = 0;
        while self.entries.len() > self.max_entries {
            self.pop_oldest();
            evicted += 1;
        }
        evicted
    }

    /// Forgets ids whose messages are older than the age bound at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(&(timestamp, _)) = self.by_time.first() {
            if now.saturating_duration_since(timestamp) <= self.max_age {
                break;
            }
            self.pop_oldest();
            expired += 1;
        }
        expired
    }

    /// When the oldest id will be older than the age bound.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_time
            .first()
            .map(|&(timestamp, _)| timestamp + self.max_age + Duration::from_micros(1))
    }

    /// Timestamps at or below this are refused because an id that old was forgotten.
    pub fn floor(&self) -> Option<Instant> {
        self.floor
    }

    /// Number of remembered ids.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn pop_oldest(&mut self) {
        if let Some((timestamp, id)) = self.by_time.pop_first() {
            self.entries.remove(&id);
            self.floor = Some(self.floor.map_or(timestamp, |floor| floor.max(timestamp)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MessageId {
        MessageId::from_bytes([n; 20])
    }

    fn seen(ms: u64) -> Seen {
        Seen {
            timestamp: Instant::from_millis(ms),
            from: None,
            hops: 0,
            first_hops: 0,
        }
    }

    #[test]
    fn count_bound_evicts_oldest_and_raises_floor() {
        let mut cache = SeenCache::new(2, Duration::from_secs(60));
        cache.insert(id(1), seen(10));
        cache.insert(id(2), seen(30));
        assert_eq!(cache.insert(id(3), seen(20)), 1);
        assert_eq!(cache.len(), 2);
        assert!(!cache.contains(&id(1)));
        assert_eq!(cache.floor(), Some(Instant::from_millis(10)));
        let now = Instant::from_millis(40);
        assert!(!cache.admits(Instant::from_millis(10), now));
        assert!(cache.admits(Instant::from_millis(11), now));
    }

    #[test]
    fn age_bound_expires_and_refuses_old_timestamps() {
        let mut cache = SeenCache::new(10, Duration::from_secs(1));
        cache.insert(id(1), seen(1_000));
        assert_eq!(cache.next_expiry(), Some(Instant::from_micros(2_000_001)));
        assert_eq!(cache.expire(Instant::from_millis(2_000)), 0);
        assert_eq!(cache.expire(Instant::from_millis(2_001)), 1);
        assert!(cache.is_empty());
        assert!(!cache.admits(Instant::from_millis(1_000), Instant::from_millis(1_500)));
        assert!(!cache.admits(Instant::from_millis(500), Instant::from_millis(2_001)));
        assert!(cache.admits(Instant::from_millis(1_500), Instant::from_millis(2_001)));
    }
}
