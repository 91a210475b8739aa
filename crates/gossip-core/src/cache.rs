//! The message cache: encoded messages kept for retransmission and for answering GRAFTs.

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};

use p2pmesh_base::{Instant, NodeId};

use crate::message::MessageId;

#[derive(Debug, Clone)]
struct Cached {
    frame: Vec<u8>,
    // Links known to have the message (they sent, acknowledged or announced it): never sent it again.
    holders: PeerSet,
    // Links this node pushed the message to as part of the tree.
    pushed: PeerSet,
}

/// A set of peers, by their slots in the cache's [`PeerTable`]: a bit per slot below 64 (a node
/// rarely has more links than that), a list past it. Most sets need no allocation, where a list of
/// ids took one per set per cached message (the largest share of a simulated node's memory after
/// the frames themselves).
#[derive(Debug, Clone, Default)]
struct PeerSet {
    low: u64,
    // A boxed slice: no capacity word in every entry for a list that is almost never there.
    high: Box<[u32]>,
}

impl PeerSet {
    fn contains(&self, slot: u32) -> bool {
        if slot < 64 {
            self.low & (1 << slot) != 0
        } else {
            self.high.contains(&slot)
        }
    }

    fn len(&self) -> usize {
        self.low.count_ones() as usize + self.high.len()
    }

    fn insert(&mut self, slot: u32) {
        if slot < 64 {
            self.low |= 1 << slot;
        } else if !self.contains(slot) {
            let mut high = core::mem::take(&mut self.high).into_vec();
            high.push(slot);
            self.high = high.into_boxed_slice();
        }
    }

    fn mark(&self, used: &mut [bool]) {
        let mut low = self.low;
        while low != 0 {
            used[low.trailing_zeros() as usize] = true;
            low &= low - 1;
        }
        for &slot in &self.high {
            used[slot as usize] = true;
        }
    }
}

/// The peers the cache's entries name, each by a slot. A slot is given back only once no entry names
/// it (checked when a new peer finds every slot taken), so an entry's sets always mean the peers they
/// meant when they were written, links that went down and came back included.
#[derive(Debug, Clone, Default)]
struct PeerTable {
    ids: Vec<Option<NodeId>>,
    slots: BTreeMap<NodeId, u32>,
}

impl PeerTable {
    fn get(&self, peer: &NodeId) -> Option<u32> {
        self.slots.get(peer).copied()
    }

    /// The slot of `peer`, given one if it has none; `entries` are scanned for slots no longer named
    /// when the first 64 are all taken.
    fn intern<'a>(&mut self, peer: NodeId, entries: impl Iterator<Item = &'a Cached>) -> u32 {
        if let Some(slot) = self.get(&peer) {
            return slot;
        }
        let mut free = self.ids.iter().position(Option::is_none);
        if free.is_none() && self.ids.len() >= 64 {
            let mut used = vec![false; self.ids.len()];
            for cached in entries {
                cached.holders.mark(&mut used);
                cached.pushed.mark(&mut used);
            }
            for (slot, used) in used.into_iter().enumerate() {
                if !used && let Some(id) = self.ids[slot].take() {
                    self.slots.remove(&id);
                }
            }
            free = self.ids.iter().position(Option::is_none);
        }
        let slot = free.unwrap_or_else(|| {
            self.ids.push(None);
            self.ids.len() - 1
        });
        self.ids[slot] = Some(peer);
        // At most one slot per peer named by a live entry: far below u32::MAX.
        let slot = u32::try_from(slot).unwrap_or(u32::MAX);
        self.slots.insert(peer, slot);
        slot
    }
}

/// The links known to hold a cached message ([`MessageCache::holders`]).
#[derive(Debug, Clone, Copy)]
pub struct Holders<'a> {
    table: &'a PeerTable,
    set: Option<&'a PeerSet>,
}

impl Holders<'_> {
    /// Whether `peer` is known to hold the message.
    pub fn contains(&self, peer: &NodeId) -> bool {
        self.set
            .zip(self.table.get(peer))
            .is_some_and(|(set, slot)| set.contains(slot))
    }

    /// How many links are known to hold it.
    pub fn len(&self) -> usize {
        self.set.map_or(0, PeerSet::len)
    }

    /// Whether no link is known to hold it (or it is not cached).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Encoded gossip frames by message id, bounded in count, in bytes and in age; the oldest go first.
///
/// Each entry also remembers which links are known to hold the message, so retransmissions and
/// announcements skip them, and which links it was pushed to (each set at most `max_holders` large).
#[derive(Debug, Clone)]
pub struct MessageCache {
    entries: BTreeMap<MessageId, Cached>,
    // Insertion order, which is time order because `now` never decreases inside a node.
    order: VecDeque<(Instant, MessageId)>,
    peers: PeerTable,
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
            peers: PeerTable::default(),
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
        let mut holders = PeerSet::default();
        if let Some(peer) = holder
            && self.max_holders > 0
        {
            holders.insert(self.peers.intern(peer, self.entries.values()));
        }
        self.entries.insert(
            id,
            Cached {
                frame,
                holders,
                pushed: PeerSet::default(),
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

    /// The links known to hold `id` (none if it is not cached).
    pub fn holders(&self, id: &MessageId) -> Holders<'_> {
        Holders {
            table: &self.peers,
            set: self.entries.get(id).map(|c| &c.holders),
        }
    }

    /// Records that `peer` holds `id`.
    pub fn add_holder(&mut self, id: &MessageId, peer: NodeId) {
        self.add(id, peer, |c| &mut c.holders);
    }

    /// Records that this node pushed `id` to `peer` along the tree.
    pub fn add_pushed(&mut self, id: &MessageId, peer: NodeId) {
        self.add(id, peer, |c| &mut c.pushed);
    }

    /// Whether this node pushed `id` to `peer` along the tree.
    pub fn pushed(&self, id: &MessageId, peer: &NodeId) -> bool {
        self.entries
            .get(id)
            .zip(self.peers.get(peer))
            .is_some_and(|(c, slot)| c.pushed.contains(slot))
    }

    /// Adds `peer` to the set `which` picks in `id`'s entry, unless it is full.
    fn add(&mut self, id: &MessageId, peer: NodeId, which: fn(&mut Cached) -> &mut PeerSet) {
        let Some(cached) = self.entries.get_mut(id) else {
            return;
        };
        if let Some(slot) = self.peers.get(&peer)
            && which(cached).contains(slot)
        {
            return;
        }
        if which(cached).len() >= self.max_holders {
            return;
        }
        let slot = self.peers.intern(peer, self.entries.values());
        if let Some(cached) = self.entries.get_mut(id) {
            which(cached).insert(slot);
        }
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
        assert!(cache.holders(&id(1)).contains(&a));
        assert!(!cache.holders(&id(1)).contains(&NodeId::hash(b"c")));
        assert!(cache.holders(&id(9)).is_empty());
    }

    #[test]
    fn a_peer_slot_is_given_again_only_once_no_entry_names_it() {
        let t0 = Instant::from_millis(1_000);
        let later = t0 + Duration::from_millis(500);
        let peer = |n: u8| NodeId::hash([n]);
        let mut cache = MessageCache::new(200, 1 << 20, 8, Duration::from_secs(1));
        // 70 entries, each held by its own peer: 64 peers in bits, 6 in the list past them.
        for n in 0..70 {
            cache.insert(
                if n < 10 { t0 } else { later },
                id(n),
                vec![n],
                Some(peer(n)),
            );
        }
        // Peer 0 also holds a message that stays: its slot must outlive its own entry.
        cache.add_holder(&id(50), peer(0));
        cache.add_pushed(&id(60), peer(1));
        assert_eq!(cache.expire(t0 + Duration::from_secs(1)), 10);
        // Ten new peers: the eight slots of peers 2..10, named by no entry any more, are given again
        // (not those of peers 0 and 1), and two are added.
        for n in 100..110 {
            cache.insert(later, id(n), vec![n], Some(peer(n)));
            cache.add_pushed(&id(n), peer(n));
        }
        for n in (10..70).chain(100..110) {
            let holders = cache.holders(&id(n));
            assert!(holders.contains(&peer(n)), "entry {n}");
            let others = (0..70)
                .chain(100..110)
                .filter(|&m| m != n && (n, m) != (50, 0));
            for m in others {
                assert!(!holders.contains(&peer(m)), "entry {n} held by {m}");
                assert!(!cache.pushed(&id(n), &peer(m)) || (n, m) == (60, 1));
            }
        }
        assert!(cache.holders(&id(50)).contains(&peer(0)));
        assert_eq!(cache.holders(&id(50)).len(), 2);
        assert!(cache.pushed(&id(60), &peer(1)) && cache.pushed(&id(105), &peer(105)));
        assert_eq!(cache.peers.ids.len(), 72);
    }
}
