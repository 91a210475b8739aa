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
///
/// **The floor never passes the present.** Messages dated in the future (up to the clock-skew window)
/// hold at most half of the cache ([`SeenCache::future_room`]); since the other half holds messages
/// not from the future, the count bound always forgets a message dated at or before `now`, and the floor
/// stays at or below `now`. Without that share, a flood of future-dated messages (signed by anyone)
/// would fill the cache, the count bound would forget one of them, and the floor would jump ahead of
/// every honest message in flight: all of them refused until the clock caught up.
#[derive(Debug, Clone)]
pub struct SeenCache {
    entries: BTreeMap<MessageId, Seen>,
    // Oldest message first: age and count eviction both take from the front.
    by_time: BTreeSet<(Instant, MessageId)>,
    // The entries dated after the `now` of the last insertion or expiry (a subset of `by_time`).
    future: BTreeSet<(Instant, MessageId)>,
    max_entries: usize,
    max_future: usize,
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
            future: BTreeSet::new(),
            max_entries,
            // At most half, so that the count bound always forgets a message not from the future.
            max_future: (max_entries / 2).max(1).min(max_entries),
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

    /// Whether a message dated `timestamp` finds room at `now`: always for one not from the future; for
    /// a future-dated one, while messages from the future hold less than half the cache. A message
    /// refused for want of room may be accepted later (it is not remembered).
    pub fn future_room(&self, timestamp: Instant, now: Instant) -> bool {
        // `future` may still hold entries that reached the present since the last insertion: counting
        // them refuses a little early, never late.
        timestamp <= now || self.future.len() < self.max_future
    }

    /// Remembers `id`, received at `now`; returns how many ids were forgotten to stay within the count
    /// bound. A future-dated `id` must have found [`SeenCache::future_room`].
    pub fn insert(&mut self, id: MessageId, seen: Seen, now: Instant) -> usize {
        self.settle(now);
        if let Some(old) = self.entries.insert(id, seen) {
            self.by_time.remove(&(old.timestamp, id));
            self.future.remove(&(old.timestamp, id));
        }
        self.by_time.insert((seen.timestamp, id));
        if seen.timestamp > now {
            self.future.insert((seen.timestamp, id));
        }
        let mut evicted = 0;
        while self.entries.len() > self.max_entries {
            self.pop_oldest();
            evicted += 1;
        }
        evicted
    }

    /// Forgets ids whose messages are older than the age bound at `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        self.settle(now);
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

    /// Messages dated at or before `now` are no longer from the future.
    fn settle(&mut self, now: Instant) {
        while let Some(&(timestamp, _)) = self.future.first()
            && timestamp <= now
        {
            self.future.pop_first();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((timestamp, id)) = self.by_time.pop_first() {
            self.entries.remove(&id);
            self.future.remove(&(timestamp, id));
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
        let now = Instant::from_millis(40);
        cache.insert(id(1), seen(10), now);
        cache.insert(id(2), seen(30), now);
        assert_eq!(cache.insert(id(3), seen(20), now), 1);
        assert_eq!(cache.len(), 2);
        assert!(!cache.contains(&id(1)));
        assert_eq!(cache.floor(), Some(Instant::from_millis(10)));
        assert!(!cache.admits(Instant::from_millis(10), now));
        assert!(cache.admits(Instant::from_millis(11), now));
    }

    #[test]
    fn age_bound_expires_and_refuses_old_timestamps() {
        let mut cache = SeenCache::new(10, Duration::from_secs(1));
        cache.insert(id(1), seen(1_000), Instant::from_millis(1_000));
        assert_eq!(cache.next_expiry(), Some(Instant::from_micros(2_000_001)));
        assert_eq!(cache.expire(Instant::from_millis(2_000)), 0);
        assert_eq!(cache.expire(Instant::from_millis(2_001)), 1);
        assert!(cache.is_empty());
        assert!(!cache.admits(Instant::from_millis(1_000), Instant::from_millis(1_500)));
        assert!(!cache.admits(Instant::from_millis(500), Instant::from_millis(2_001)));
        assert!(cache.admits(Instant::from_millis(1_500), Instant::from_millis(2_001)));
    }

    #[test]
    fn future_dated_messages_never_push_the_floor_past_now() {
        let mut cache = SeenCache::new(4, Duration::from_secs(60));
        let now = Instant::from_millis(100_000);
        let future = now + Duration::from_secs(29);
        let mut stored = 0;
        for n in 0..10 {
            if cache.future_room(future, now) {
                cache.insert(id(n), seen(future.as_millis()), now);
                stored += 1;
            }
        }
        assert_eq!(
            stored, 2,
            "messages from the future hold at most half the cache"
        );
        for n in 10..20 {
            let honest = Instant::from_millis(99_000 + u64::from(n));
            assert!(cache.admits(honest, now));
            assert!(cache.future_room(honest, now));
            cache.insert(id(n), seen(honest.as_millis()), now);
        }
        assert!(cache.floor().is_some_and(|floor| floor <= now));
        assert!(cache.admits(now - Duration::from_millis(500), now));
        // Once they are no longer from the future, they are ordinary entries.
        let later = future + Duration::from_millis(1);
        cache.expire(later);
        assert!(cache.future_room(later + Duration::from_secs(1), later));
    }
}
