//! The simulated signaling server's routing: who is joined, and whom a joiner is introduced to.
//!
//! As the real server does: a joiner gets its XOR-closest joined peers plus a few random others as
//! bootstrap peers ([`p2pmesh_base::introduce`], the one introduction rule), and each of them is told
//! that the joiner arrived. Never a broadcast to all.

use p2pmesh_base::introduce::{Key, Rule, Scan, introduce};
use rand_chacha::ChaCha8Rng;

const NOT_JOINED: u32 = u32::MAX;

/// The joined set and the introduction rule.
#[derive(Debug)]
pub struct Server {
    /// How many peers a joiner meets. Default: [`Rule::default`] (20 closest, 3 random).
    pub rule: Rule,
    joined: Vec<u32>,
    position: Vec<u32>,
    rng: ChaCha8Rng,
}

impl Server {
    /// An empty server; `rng` draws the random introductions.
    pub fn new(rng: ChaCha8Rng) -> Self {
        Self {
            rule: Rule::default(),
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

    /// Join `slot`: returns the peers to introduce it to, closest first, then the random ones. `key`
    /// maps every slot to the 20-byte key of its current id.
    pub fn join(&mut self, slot: u32, key: impl Fn(u32) -> Key) -> Vec<u32> {
        if self.is_joined(slot) {
            self.leave(slot);
        }
        let me = key(slot);
        let members = Scan::new(&self.joined, |&s: &u32| key(s));
        let out = introduce(&members, &me, self.rule, &mut self.rng);
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
    use p2pmesh_base::introduce::distance;
    use rand::SeedableRng;

    fn key(slot: u32) -> Key {
        let mut k = [0u8; 20];
        for (i, chunk) in k.chunks_mut(8).enumerate() {
            let word = crate::net::mix64(u64::from(slot) ^ (i as u64) << 40).to_be_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        k
    }

    #[test]
    fn introduces_the_closest_and_a_few_random() {
        let mut server = Server::new(ChaCha8Rng::seed_from_u64(7));
        for slot in 0..199 {
            server.join(slot, key);
        }
        let intro = server.join(199, key);
        assert_eq!(intro.len(), 23);
        let mut by_distance: Vec<u32> = (0..199).collect();
        by_distance.sort_by_key(|&s| distance(&key(199), &key(s)));
        assert_eq!(&intro[..20], &by_distance[..20]);
        for extra in &intro[20..] {
            assert!(!intro[..20].contains(extra));
        }
        assert_eq!(server.joined_len(), 200);
    }

    #[test]
    fn small_networks_and_leaving() {
        let mut server = Server::new(ChaCha8Rng::seed_from_u64(7));
        assert!(server.join(0, key).is_empty());
        assert_eq!(server.join(1, key), vec![0]);
        server.join(2, key);
        server.leave(0);
        assert!(!server.is_joined(0));
        let intro = server.join(3, key);
        assert_eq!(intro.len(), 2);
        assert!(!intro.contains(&0));
        server.leave(3);
        server.leave(3);
        assert_eq!(server.joined_len(), 2);
    }
}
