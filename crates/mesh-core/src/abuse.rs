//! Bounding what one peer costs: a token [`Bucket`] per link for its signature checks and one for its
//! offences, and the [`Bans`] of peers that misbehaved. Time is an input (`now`), like everywhere in
//! the crate.

use alloc::collections::BTreeMap;
use core::time::Duration;

use kademlia_core::{Instant, NodeId};

/// Tokens are counted in millionths, so that a rate of a few per second refills smoothly.
const UNIT: u128 = 1_000_000;

/// A token bucket: `capacity` tokens, `rate` more per second, starting full.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    /// Micro-tokens left.
    level: u128,
    capacity: u128,
    rate: u128,
    last: Instant,
}

impl Bucket {
    pub(crate) fn new(now: Instant, capacity: u32, rate: u32) -> Self {
        let capacity = u128::from(capacity) * UNIT;
        Self {
            level: capacity,
            capacity,
            rate: u128::from(rate),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_micros();
        self.last = self.last.max(now);
        // rate tokens per second = rate * UNIT micro-tokens per 1e6 µs = rate micro-tokens per µs.
        self.level = self
            .level
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(self.capacity);
    }

    /// Takes `n` tokens at `now` if there are that many; whether it could.
    pub(crate) fn take(&mut self, now: Instant, n: u32) -> bool {
        self.refill(now);
        let cost = u128::from(n) * UNIT;
        if self.level < cost {
            return false;
        }
        self.level -= cost;
        true
    }

    /// Takes up to `n` tokens at `now`; whether the bucket is now empty (fewer than one token left).
    pub(crate) fn drain(&mut self, now: Instant, n: u32) -> bool {
        self.refill(now);
        self.level = self.level.saturating_sub(u128::from(n) * UNIT);
        self.level < UNIT
    }
}

/// What the signature-check budget of a link decided for one frame (see `Link::charge`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charge {
    /// Within budget: handle the frame.
    Ok,
    /// Over budget: drop the frame.
    Drop,
    /// Over budget, and this second's flood offence is due: drop and count offences.
    DropAndOffend,
}

/// Offences charged for each second a link's peer spends over its signature-check budget: a flood
/// of `max_offences / 10` seconds (default 5 s) bans it; a short honest burst does not.
pub(crate) const FLOOD_OFFENCES: u32 = 10;

/// Peers banned until some time, at most `max` at once (when full, the ban ending first is lifted).
#[derive(Debug, Default)]
pub(crate) struct Bans {
    until: BTreeMap<NodeId, Instant>,
}

impl Bans {
    /// Bans `peer` until `now + duration`.
    pub(crate) fn ban(&mut self, now: Instant, peer: NodeId, duration: Duration, max: usize) {
        self.until.retain(|_, t| *t > now);
        if !self.until.contains_key(&peer) && self.until.len() >= max {
            let first = self
                .until
                .iter()
                .min_by_key(|(p, t)| (**t, **p))
                .map(|(p, _)| *p);
            if let Some(p) = first {
                self.until.remove(&p);
            }
        }
        if max > 0 {
            self.until.insert(peer, now + duration);
        }
    }

    /// Whether `peer` is banned at `now`.
    pub(crate) fn is_banned(&self, now: Instant, peer: &NodeId) -> bool {
        self.until.get(peer).is_some_and(|t| *t > now)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.until.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::id;

    #[test]
    fn a_bucket_refills_at_its_rate_up_to_its_capacity() {
        let t0 = Instant::from_millis(1_000);
        let mut b = Bucket::new(t0, 4, 2);
        for _ in 0..4 {
            assert!(b.take(t0, 1));
        }
        assert!(!b.take(t0, 1));
        // Half a second: one token at 2 per second.
        let t1 = t0 + Duration::from_millis(500);
        assert!(b.take(t1, 1));
        assert!(!b.take(t1, 1));
        // A long pause fills it to its capacity, no more.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..4 {
            assert!(b.take(t2, 1));
        }
        assert!(!b.take(t2, 1));
    }

    #[test]
    fn bans_end_in_time_and_stay_bounded() {
        let now = Instant::from_millis(1_000);
        let mut bans = Bans::default();
        let d = Duration::from_secs(10);
        bans.ban(now, id(1), d, 2);
        bans.ban(now + Duration::from_secs(1), id(2), d, 2);
        bans.ban(now + Duration::from_secs(2), id(3), d, 2);
        assert_eq!(bans.len(), 2);
        // The ban ending first was lifted to make room.
        assert!(!bans.is_banned(now + Duration::from_secs(2), &id(1)));
        assert!(bans.is_banned(now + Duration::from_secs(2), &id(2)));
        assert!(bans.is_banned(now + Duration::from_secs(11), &id(3)));
        assert!(!bans.is_banned(now + Duration::from_secs(12), &id(3)));
    }
}
