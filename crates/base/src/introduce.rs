//! The introduction rule: whom the signaling server introduces a joiner to.
//!
//! A joiner meets the `closest` joined peers nearest to it by XOR distance (closest first), then up to
//! `random` other joined peers picked at random, never a broadcast to all. The closest ones put the
//! joiner in its Kademlia neighbourhood at once; the random ones keep far parts of the mesh linked.
//!
//! The rule is pure: the caller owns the randomness (any [`rand::Rng`]) and the set of joined peers,
//! behind [`Members`]. [`Scan`] serves a plain slice (the simulator, the in-memory transport); a server
//! that keeps its members in a tree implements [`Members`] with its own O(log N) queries.
//!
//! ```
//! use p2pmesh_base::introduce::{Key, Rule, Scan, introduce};
//! use rand::SeedableRng;
//!
//! let keys: Vec<Key> = (0u8..50).map(|i| [i; 20]).collect();
//! let members = Scan::new(&keys, |k: &Key| *k);
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
//! let rule = Rule { closest: 5, random: 2, attempts: 64 };
//! let peers = introduce(&members, &[7; 20], rule, &mut rng);
//! assert_eq!(peers.len(), 7);
//! assert_eq!(peers[0], [7; 20]);
//! ```

use alloc::collections::BinaryHeap;
use alloc::vec::Vec;

use rand::{Rng, RngExt};

/// A 160-bit key: a node id's bytes (the server's hex ids decode to it).
pub type Key = [u8; 20];

/// The XOR distance of two keys, compared as a big-endian number.
pub fn distance(a: &Key, b: &Key) -> Key {
    let mut out = [0u8; 20];
    for (o, (x, y)) in out.iter_mut().zip(a.iter().zip(b)) {
        *o = x ^ y;
    }
    out
}

/// How many peers a joiner is introduced to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Introductions by XOR distance (Kademlia's K).
    pub closest: usize,
    /// Introductions at random, beyond the closest.
    pub random: usize,
    /// Random draws allowed in all (a draw that hits a peer already chosen is lost).
    pub attempts: usize,
}

impl Default for Rule {
    /// 20 closest, 3 random, 64 draws.
    fn default() -> Self {
        Self {
            closest: 20,
            random: 3,
            attempts: 64,
        }
    }
}

/// The joined peers, as the introduction rule queries them.
pub trait Members {
    /// How a peer is named to the caller (a slot, an id, a connection).
    type Peer: Clone + PartialEq;

    /// How many peers are joined.
    fn len(&self) -> usize;

    /// Whether no peer is joined.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The up to `k` joined peers closest to `target` by XOR distance, closest first.
    fn closest(&self, target: &Key, k: usize) -> Vec<Self::Peer>;

    /// One joined peer drawn at random (`None` only when none is joined).
    fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<Self::Peer>;
}

/// Whom a joiner with key `target` is introduced to: [`Members::closest`] first, then random others
/// (each drawn with [`Members::pick`], skipping peers already chosen) until `rule.random` more are
/// chosen, every peer is, or `rule.attempts` draws are spent. The joiner must not be among `members`.
pub fn introduce<M, R>(members: &M, target: &Key, rule: Rule, rng: &mut R) -> Vec<M::Peer>
where
    M: Members + ?Sized,
    R: Rng + ?Sized,
{
    let mut out = members.closest(target, rule.closest);
    let chosen_closest = out.len();
    let want = rule
        .random
        .min(members.len().saturating_sub(chosen_closest));
    let mut attempts = 0;
    while out.len() < chosen_closest + want && attempts < rule.attempts {
        attempts += 1;
        let Some(pick) = members.pick(rng) else {
            break;
        };
        if !out.contains(&pick) {
            out.push(pick);
        }
    }
    out
}

/// The up to `k` items of `members` closest to `target` (by `key`), closest first: one pass with a
/// bounded heap, O(n log k). Ties (equal keys) keep the earlier item first.
pub fn closest_by_scan<T: Clone>(
    members: &[T],
    key: impl Fn(&T) -> Key,
    target: &Key,
    k: usize,
) -> Vec<T> {
    let mut heap: BinaryHeap<(Key, usize)> = BinaryHeap::with_capacity(k + 1);
    for (i, member) in members.iter().enumerate() {
        if k == 0 {
            break;
        }
        let d = distance(target, &key(member));
        if heap.len() < k {
            heap.push((d, i));
        } else if heap.peek().is_some_and(|top| (d, i) < *top) {
            heap.pop();
            heap.push((d, i));
        }
    }
    heap.into_sorted_vec()
        .into_iter()
        .map(|(_, i)| members[i].clone())
        .collect()
}

/// [`Members`] over a slice: closest by a scan ([`closest_by_scan`]), random picks by index.
#[derive(Debug, Clone, Copy)]
pub struct Scan<'a, T, F> {
    members: &'a [T],
    key: F,
}

impl<'a, T, F> Scan<'a, T, F>
where
    T: Clone + PartialEq,
    F: Fn(&T) -> Key,
{
    /// The joined peers `members`, whose keys `key` gives.
    pub fn new(members: &'a [T], key: F) -> Self {
        Self { members, key }
    }
}

impl<T, F> Members for Scan<'_, T, F>
where
    T: Clone + PartialEq,
    F: Fn(&T) -> Key,
{
    type Peer = T;

    fn len(&self) -> usize {
        self.members.len()
    }

    fn closest(&self, target: &Key, k: usize) -> Vec<T> {
        closest_by_scan(self.members, &self.key, target, k)
    }

    fn pick<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<T> {
        if self.members.is_empty() {
            return None;
        }
        Some(self.members[rng.random_range(0..self.members.len())].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn key(i: u32) -> Key {
        // Spread the keys over the space with a multiplicative hash.
        let mut k = [0u8; 20];
        for (j, b) in k.iter_mut().enumerate() {
            *b = (i.wrapping_mul(2_654_435_761).rotate_left(j as u32 * 3) >> 5) as u8
                ^ (j as u8).wrapping_mul(31);
        }
        k
    }

    fn keys(n: u32) -> Vec<Key> {
        (0..n).map(key).collect()
    }

    /// The introductions for `target` among `all` (the keys are the peers) by `rule`, drawing from
    /// `seed`.
    fn among(all: &[Key], target: &Key, rule: Rule, seed: u64) -> Vec<Key> {
        let members = Scan::new(all, |k: &Key| *k);
        introduce(&members, target, rule, &mut ChaCha8Rng::seed_from_u64(seed))
    }

    fn rule(closest: usize, random: usize, attempts: usize) -> Rule {
        Rule {
            closest,
            random,
            attempts,
        }
    }

    #[test]
    fn distance_is_xor() {
        assert_eq!(distance(&[0xf0; 20], &[0x0f; 20]), [0xff; 20]);
        assert_eq!(distance(&key(3), &key(3)), [0; 20]);
    }

    #[test]
    fn closest_first_then_distinct_random_ones() {
        let all = keys(200);
        let target = key(1_000);
        let out = among(&all, &target, Rule::default(), 7);
        assert_eq!(out.len(), 23);
        let mut by_distance = all.clone();
        by_distance.sort_by_key(|k| distance(k, &target));
        assert_eq!(&out[..20], &by_distance[..20]);
        for (i, extra) in out[20..].iter().enumerate() {
            assert!(!out[..20 + i].contains(extra));
        }
    }

    #[test]
    fn small_sets_give_everyone_once() {
        let all = keys(4);
        let rule = rule(2, 5, 64);
        let mut out = among(&all, &key(99), rule, 1);
        assert_eq!(out.len(), 4);
        out.sort();
        let mut want = all.clone();
        want.sort();
        assert_eq!(out, want);
        assert!(among(&[], &key(1), rule, 1).is_empty());
    }

    #[test]
    fn attempts_bound_the_random_draws() {
        let out = among(&keys(100), &key(5), rule(0, 50, 10), 3);
        assert!(!out.is_empty() && out.len() <= 10, "{}", out.len());
    }

    #[test]
    fn same_seed_same_introductions() {
        let all = keys(300);
        let run = |seed| among(&all, &key(777), Rule::default(), seed);
        assert_eq!(run(9), run(9));
        assert_ne!(run(9)[20..], run(10)[20..]);
    }

    #[test]
    fn scan_keeps_ties_in_order_and_handles_k_zero() {
        let items = vec![(1u32, [5u8; 20]), (2, [5; 20]), (3, [1; 20])];
        let got = closest_by_scan(&items, |(_, k)| *k, &[0; 20], 2);
        assert_eq!(got, vec![(3, [1; 20]), (1, [5; 20])]);
        assert!(closest_by_scan(&items, |(_, k)| *k, &[0; 20], 0).is_empty());
    }
}
