//! The simulated signaling server's routing: who is joined, and whom a joiner is introduced to.
//!
//! As the real server does: a joiner gets its `closest` XOR-closest joined peers plus `random` random
//! others as bootstrap peers, and each of them is told that the joiner arrived. Never a broadcast to all.

use std::collections::BinaryHeap;

use kademlia_core::{Distance, NodeId};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

const NOT_JOINED: u32 = u32::MAX;

/// The joined set and the introduction rule.
#[derive(Debug)]
pub struct Server {
    /// Introductions by XOR distance. Default 20 (Kademlia's K).
    pub closest: usize,
    /// Introductions at random. Default 3.
    pub random: usize,
    joined: Vec<u32>,
    position: Vec<u32>,
    rng: ChaCha8Rng,
}

impl Server {
    /// An empty server.
    pub fn new(rng: ChaCha8Rng) -> Self {
        Self {
            closest: 20,
            random: 3,
            joined: Vec::new(),
            position: Vec::new(),
            rng,
        }
    }

    /// Whether `slot` is joined.
    pub fn is_joined(&self, slot: u32) -> bool {
        self.position
            .get(slot as usize)
            .is_some_and(|&p| p != NOT_JOINED)
    }

    /// Number of joined nodes.
    pub fn joined_len(&self) -> usize {
        self.joined.len()
    }

    /// Join `slot` (whose id is `ids[slot]`): returns the peers to introduce it to, closest first, then
    /// the random ones. `ids` maps every slot to its current id.
    pub fn join(&mut self, slot: u32, ids: &[NodeId]) -> Vec<u32> {
        if self.is_joined(slot) {
            self.leave(slot);
        }
        let me = ids[slot as usize];
        // Bounded max-heap of the closest seen so far: O(joined * log closest) per join.
        let mut heap: BinaryHeap<(Distance, u32)> = BinaryHeap::with_capacity(self.closest + 1);
        for &other in &self.joined {
            let d = me.distance(&ids[other as usize]);
            if heap.len() < self.closest {
                heap.push((d, other));
            } else if heap.peek().is_some_and(|top| d < top.0) {
                heap.pop();
                heap.push((d, other));
            }
        }
        let mut out: Vec<u32> = heap.into_sorted_vec().into_iter().map(|(_, s)| s).collect();
        let candidates = self.joined.len().saturating_sub(out.len());
        let want = self.random.min(candidates);
        let mut attempts = 0;
        let chosen_closest = out.len();
        while out.len() < chosen_closest + want && attempts < 64 {
            attempts += 1;
            let pick = self.joined[self.rng.random_range(0..self.joined.len())];
            if !out.contains(&pick) {
                out.push(pick);
            }
        }
        let index = slot as usize;
        if self.position.len() <= index {
            self.position.resize(index + 1, NOT_JOINED);
        }
        self.position[index] = u32::try_from(self.joined.len()).unwrap_or(NOT_JOINED);
        self.joined.push(slot);
        out
    }

    /// `slot` left or its connection dropped.
    pub fn leave(&mut self, slot: u32) {
        let Some(&pos) = self.position.get(slot as usize) else {
            return;
        };
        if pos == NOT_JOINED {
            return;
        }
        let pos = pos as usize;
        self.joined.swap_remove(pos);
        if let Some(&moved) = self.joined.get(pos) {
            self.position[moved as usize] = pos as u32;
        }
        self.position[slot as usize] = NOT_JOINED;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ids(n: u32) -> Vec<NodeId> {
        (0..n).map(|i| NodeId::hash(i.to_be_bytes())).collect()
    }

    #[test]
    fn introduces_the_closest_and_a_few_random() {
        let ids = ids(200);
        let mut server = Server::new(ChaCha8Rng::seed_from_u64(7));
        for slot in 0..199 {
            server.join(slot, &ids);
        }
        let intro = server.join(199, &ids);
        assert_eq!(intro.len(), 23);
        let mut by_distance: Vec<u32> = (0..199).collect();
        by_distance.sort_by_key(|&s| ids[199].distance(&ids[s as usize]));
        assert_eq!(&intro[..20], &by_distance[..20]);
        for extra in &intro[20..] {
            assert!(!intro[..20].contains(extra));
        }
        assert_eq!(server.joined_len(), 200);
    }

    #[test]
    fn small_networks_and_leaving() {
        let ids = ids(5);
        let mut server = Server::new(ChaCha8Rng::seed_from_u64(7));
        assert!(server.join(0, &ids).is_empty());
        assert_eq!(server.join(1, &ids), vec![0]);
        server.join(2, &ids);
        server.leave(0);
        assert!(!server.is_joined(0));
        let intro = server.join(3, &ids);
        assert_eq!(intro.len(), 2);
        assert!(!intro.contains(&0));
        server.leave(3);
        server.leave(3);
        assert_eq!(server.joined_len(), 2);
    }
}
