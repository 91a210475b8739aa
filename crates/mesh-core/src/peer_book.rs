//! The peers a node knows of, whether or not it has a link to them: candidates for links, the
//! contacts a lookup probe is answered with, and the dial backoff of each peer.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use kademlia_core::{ID_BITS, Instant, NodeId};
use rand::RngExt as _;
use rand_chacha::ChaCha8Rng;

/// Known peers grouped by k-bucket (distance class from the local id), at most `per_bucket` each, the
/// most recently seen kept. Lookups of the closest peers scan all entries: a few hundred at most in
/// practice (`per_bucket * log2(N)`).
#[derive(Debug)]
pub struct PeerBook {
    local: NodeId,
    per_bucket: usize,
    buckets: BTreeMap<usize, Vec<(NodeId, Instant)>>,
    len: usize,
}

impl PeerBook {
    /// An empty book around `local`.
    pub fn new(local: NodeId, per_bucket: usize) -> Self {
        Self {
            local,
            per_bucket,
            buckets: BTreeMap::new(),
            len: 0,
        }
    }

    /// Number of peers known.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether `id` is known.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.local
            .bucket_index(id)
            .and_then(|b| self.buckets.get(&b))
            .is_some_and(|v| v.iter().any(|(p, _)| p == id))
    }

    /// Records that `id` exists (seen at `now`). A full bucket forgets its least recently seen peer.
    pub fn insert(&mut self, id: NodeId, now: Instant) {
        let Some(b) = self.local.bucket_index(&id) else {
            return;
        };
        let bucket = self.buckets.entry(b).or_default();
        if let Some(e) = bucket.iter_mut().find(|(p, _)| *p == id) {
            e.1 = e.1.max(now);
            return;
        }
        if bucket.len() >= self.per_bucket {
            // Forget the stalest (ties: the highest id, for determinism).
            if let Some(i) =
                (0..bucket.len()).min_by_key(|&i| (bucket[i].1, core::cmp::Reverse(bucket[i].0)))
            {
                bucket.swap_remove(i);
                self.len -= 1;
            }
        }
        bucket.push((id, now));
        self.len += 1;
    }

    /// Forgets `id` (it left, or cannot be reached).
    pub fn remove(&mut self, id: &NodeId) {
        let Some(b) = self.local.bucket_index(id) else {
            return;
        };
        if let Some(bucket) = self.buckets.get_mut(&b) {
            if let Some(i) = bucket.iter().position(|(p, _)| p == id) {
                bucket.swap_remove(i);
                self.len -= 1;
            }
            if bucket.is_empty() {
                self.buckets.remove(&b);
            }
        }
    }

    /// Up to `n` known peers closest to `target`, closest first, skipping those `skip` rejects.
    pub fn closest(
        &self,
        target: &NodeId,
        n: usize,
        mut skip: impl FnMut(&NodeId) -> bool,
    ) -> Vec<NodeId> {
        // Distances computed once (not per comparison) and `skip` asked only until `n` are found: this
        // runs every maintenance tick on every node. Distinct ids have distinct distances, so the
        // unstable sort gives the one order there is.
        let mut all: Vec<(kademlia_core::Distance, NodeId)> = self
            .buckets
            .values()
            .flat_map(|b| b.iter().map(|(p, _)| (p.distance(target), *p)))
            .collect();
        all.sort_unstable();
        let mut out = Vec::with_capacity(n.min(all.len()));
        for (_, p) in all {
            if out.len() >= n {
                break;
            }
            if !skip(&p) {
                out.push(p);
            }
        }
        out
    }

    /// The lowest non-empty bucket (the distance class of the closest known peer), if any peer is known.
    pub fn lowest_bucket(&self) -> Option<usize> {
        self.buckets.keys().next().copied()
    }

    /// The known peer closest to us among buckets `range`, skipping those `skip` rejects.
    pub fn closest_in(
        &self,
        range: core::ops::Range<usize>,
        mut skip: impl FnMut(&NodeId) -> bool,
    ) -> Option<NodeId> {
        // Buckets are distance classes: every peer of a lower bucket is closer than any of a higher one.
        for (_, bucket) in self.buckets.range(range) {
            let best = bucket
                .iter()
                .map(|(p, _)| *p)
                .filter(|p| !skip(p))
                .min_by_key(|p| p.distance(&self.local));
            if best.is_some() {
                return best;
            }
        }
        None
    }

    /// A random known peer, drawn bucket-uniformly (so its distance follows the harmonic distribution of
    /// Kleinberg's small worlds), among buckets at or above `min_bucket`, skipping those `skip` rejects.
    pub fn random(
        &self,
        rng: &mut ChaCha8Rng,
        min_bucket: usize,
        mut skip: impl FnMut(&NodeId) -> bool,
    ) -> Option<NodeId> {
        let candidates: Vec<Vec<NodeId>> = self
            .buckets
            .range(min_bucket.min(ID_BITS)..ID_BITS)
            .map(|(_, b)| {
                b.iter()
                    .map(|(p, _)| *p)
                    .filter(|p| !skip(p))
                    .collect::<Vec<_>>()
            })
            .filter(|v| !v.is_empty())
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let bucket = &candidates[rng.random_range(0..candidates.len())];
        Some(bucket[rng.random_range(0..bucket.len())])
    }
}

/// Per-peer dial backoff: a peer that failed, refused or evicted us is not dialled again before its
/// time. Bounded: the entry that expires first is forgotten beyond `max`.
#[derive(Debug, Default)]
pub struct Backoff {
    entries: BTreeMap<NodeId, (Instant, u32)>,
}

impl Backoff {
    /// Whether `peer` may be dialled at `now`.
    pub fn allows(&self, peer: &NodeId, now: Instant) -> bool {
        self.entries
            .get(peer)
            .is_none_or(|(until, _)| *until <= now)
    }

    /// Consecutive failures recorded for `peer`.
    pub fn failures(&self, peer: &NodeId) -> u32 {
        self.entries.get(peer).map_or(0, |e| e.1)
    }

    /// Blocks `peer` until `until`, counting one more failure.
    pub fn block(&mut self, peer: NodeId, until: Instant, max: usize) {
        let failures = self.failures(&peer).saturating_add(1);
        self.entries.insert(peer, (until, failures));
        while self.entries.len() > max.max(1) {
            let first = self
                .entries
                .iter()
                .min_by_key(|(id, (t, _))| (*t, **id))
                .map(|(id, _)| *id);
            match first {
                Some(id) => {
                    self.entries.remove(&id);
                }
                None => break,
            }
        }
    }

    /// Forgets `peer`'s failures (a link to it succeeded).
    pub fn reset(&mut self, peer: &NodeId) {
        self.entries.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    fn id(b: &[u8]) -> NodeId {
        NodeId::hash(b)
    }

    #[test]
    fn buckets_are_bounded_and_closest_is_sorted() {
        let me = id(b"me");
        let mut book = PeerBook::new(me, 4);
        for i in 0..200u32 {
            book.insert(id(&i.to_le_bytes()), Instant::from_millis(u64::from(i)));
        }
        assert!(book.len() <= 4 * 160);
        // bucket 159 holds about half the peers, but at most 4
        let far: Vec<_> = book.closest(&me, 1000, |_| false);
        assert_eq!(far.len(), book.len());
        assert!(
            far.windows(2)
                .all(|w| w[0].distance(&me) <= w[1].distance(&me))
        );
        let in_top = far
            .iter()
            .filter(|p| me.bucket_index(p) == Some(159))
            .count();
        assert_eq!(in_top, 4);
        book.remove(&far[0]);
        assert!(!book.contains(&far[0]));
    }

    #[test]
    fn random_respects_skip() {
        let me = id(b"me");
        let mut book = PeerBook::new(me, 8);
        let a = id(b"a");
        let b = id(b"b");
        book.insert(a, Instant::ZERO);
        book.insert(b, Instant::ZERO);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..20 {
            assert_eq!(book.random(&mut rng, 0, |p| *p == a), Some(b));
        }
        assert_eq!(book.random(&mut rng, 0, |_| true), None);
    }

    #[test]
    fn backoff_blocks_until_time_and_is_bounded() {
        let mut b = Backoff::default();
        let p = id(b"p");
        b.block(p, Instant::from_millis(100), 2);
        assert!(!b.allows(&p, Instant::from_millis(99)));
        assert!(b.allows(&p, Instant::from_millis(100)));
        b.block(id(b"q"), Instant::from_millis(200), 2);
        b.block(id(b"r"), Instant::from_millis(300), 2);
        assert!(b.allows(&p, Instant::ZERO));
        assert_eq!(b.failures(&id(b"r")), 1);
        b.reset(&id(b"r"));
        assert_eq!(b.failures(&id(b"r")), 0);
    }
}
