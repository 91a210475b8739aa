//! The message cache: encoded messages kept for retransmission and for answering GRAFTs.

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use p2pmesh_base::{Instant, NodeId};

use crate::message::MessageId;

#[derive(Debug, Clone)]
struct Cached {
    frame: Vec<u8>,
    // Links known to have the message (they sent, acknowledged or announced it): never sent it again.
    holders: Vec<NodeId>,
    // Links this node pushed the message to as part of the tree.
    pushed: Vec<NodeId>,
}

/// Encoded gossip frames by message id, bounded in count, in bytes and in age; the oldest go first.
///
/// Each entry also remembers which links are known to hold the message, so retransmissions and
/// announcements skip them, and which links it was pushed to (each list at most `max_holders` long).
#[derive(Debug, Clone)]
pub struct MessageCache {
    entries: BTreeMap<MessageId, Cached>,
    // Insertion order, which is time order because `now` never decreases inside a node.
    order: VecDeque<(Instant, MessageId)>,
    bytes: usize,
    max_entries: usize,
    max_bytes: usize,
    max_holders: usize,
    ttl: Duration,
}

impl MessageCache {
    /// An empty cache with these bounds.
    pub fn new(max_entries: usize, max_bytes: usize, max_holders: usize, ttl: Duration) -> Self {
        Self {
            entries: BTreeMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            max_entries,
            max_bytes,
            max_holders,
            ttl,
        }
    }

    /// Keeps `frame` for `id`; returns how many older entries were evicted to make room. A frame larger
    /// than the whole byte bound is not kept.
    pub fn insert(
        &mut self,
        now: Instant,
        id: MessageId,
        frame: Vec<u8>,
        holder: Option<NodeId>,
    ) -> usize {
        if self.entries.contains_key(&id) || frame.len() > self.max_bytes || self.max_entries == 0 {
            return 0;
        }
        let mut evicted = 0;
        while self.entries.len() >= self.max_entries || self.bytes + frame.len() > self.max_bytes {
            if !self.pop_oldest() {
                break;
            }
            evicted += 1;
        }
        self.bytes += frame.len();
        let holders = holder.into_iter().take(self.max_holders).collect();
        self.entries.insert(
            id,
            Cached {
                frame,
                holders,
                pushed: Vec::new(),
            },
        );
        self.order.push_back((now, id));
        evicted
    }

    /// The encoded frame of `id`.
    pub fn frame(&self, id: &MessageId) -> Option<&[u8]> {
        self.entries.get(id).map(|c| c.frame.as_slice())
    }

    /// Whether `id` is cached.
    pub fn contains(&self, id: &MessageId) -> bool {
        self.entries.contains_key(id)
    }

    /// The links known to hold `id` (empty if it is not cached).
    pub fn holders(&self, id: &MessageId) -> &[NodeId] {
        self.entries.get(id).map_or(&[], |c| c.holders.as_slice())
    }

    /// Records that `peer` holds `id`.
    pub fn add_holder(&mut self, id: &MessageId, peer: NodeId) {
        if let Some(cached) = self.entries.get_mut(id)
            && !cached.holders.contains(&peer)
            && cached.holders.len() < self.max_holders
        {
            cached.holders.push(peer);
        }
    }

    /// Records that this node pushed `id` to `peer` along the tree.
    pub fn add_pushed(&mut self, id: &MessageId, peer: NodeId) {
        if let Some(cached) = self.entries.get_mut(id)
            && !cached.pushed.contains(&peer)
            && cached.pushed.len() < self.max_holders
        {
            cached.pushed.push(peer);
        }
    }

    /// Whether this node pushed `id` to `peer` along the tree.
    pub fn pushed(&self, id: &MessageId, peer: &NodeId) -> bool {
        self.entries
            .get(id)
            .is_some_and(|c| c.pushed.contains(peer))
    }

    /// Drops entries older than the age bound; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let mut expired = 0;
        while let Some(&(at, _)) = self.order.front() {
            if now.saturating_duration_since(at) < self.ttl {
                break;
            }
            self.pop_oldest();
            expired += 1;
        }
        expired
    }

    /// The ids of the entries cached at `since` or later, newest first.
    pub fn since(&self, since: Instant) -> impl Iterator<Item = MessageId> + '_ {
        self.order
            .iter()
            .rev()
            .take_while(move |(at, _)| *at >= since)
            .map(|(_, id)| *id)
            .filter(|id| self.entries.contains_key(id))
    }

    /// When the oldest entry reaches the age bound.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.order.front().map(|&(at, _)| at + self.ttl)
    }

    /// Number of cached messages.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of cached frames.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn pop_oldest(&mut self) -> bool {
        let Some((_, id)) = self.order.pop_front() else {
            return false;
        };
        if let Some(cached) = self.entries.remove(&id) {
            self.bytes -= cached.frame.len();
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> MessageId {
        MessageId::from_bytes([n; 20])
    }

    #[test]
    fn bounded_in_count_bytes_and_age() {
        let t0 = Instant::from_millis(1_000);
        let mut cache = MessageCache::new(2, 10, 4, Duration::from_secs(1));
        cache.insert(t0, id(1), vec![0; 4], None);
        cache.insert(t0, id(2), vec![0; 4], None);
        assert_eq!(cache.insert(t0, id(3), vec![0; 4], None), 1);
        assert!(!cache.contains(&id(1)));
        assert_eq!(cache.insert(t0, id(4), vec![0; 9], None), 2);
        assert_eq!((cache.len(), cache.bytes()), (1, 9));
        assert_eq!(cache.insert(t0, id(5), vec![0; 11], None), 0);
        assert!(!cache.contains(&id(5)));
        assert_eq!(cache.next_expiry(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(cache.expire(t0 + Duration::from_secs(1)), 1);
        assert!(cache.is_empty() && cache.bytes() == 0);
    }

    #[test]
    fn holders_are_bounded_and_unique() {
        let t0 = Instant::from_millis(1_000);
        let mut cache = MessageCache::new(4, 100, 2, Duration::from_secs(1));
        let a = NodeId::hash(b"a");
        cache.insert(t0, id(1), vec![1], Some(a));
        cache.add_holder(&id(1), a);
        cache.add_holder(&id(1), NodeId::hash(b"b"));
        cache.add_holder(&id(1), NodeId::hash(b"c"));
        assert_eq!(cache.holders(&id(1)).len(), 2);
        assert!(cache.holders(&id(9)).is_empty());
    }
}
