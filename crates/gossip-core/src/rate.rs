//! Token buckets by key (an origin, a link), bounded in keys, with time as an input.

use std::collections::BTreeMap;

use p2pmesh_base::{Instant, NodeId};

/// One token, in the buckets' fixed-point unit (a millionth of a token per microsecond is one token per
/// second).
const TOKEN: u64 = 1_000_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, in millionths, at `at`.
    tokens: u64,
    at: Instant,
}

/// A token bucket per key: `rate` tokens a second, at most `burst` saved up. At most `max_keys` buckets
/// are kept: a full bucket is the same as no bucket, so those go first; past that, the fullest.
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    buckets: BTreeMap<NodeId, Bucket>,
    rate: u64,
    capacity: u64,
    max_keys: usize,
}

impl RateLimiter {
    /// `rate` tokens a second (0: no limit), `burst` at most, for at most `max_keys` keys at a time.
    pub(crate) fn new(rate: u32, burst: u32, max_keys: usize) -> Self {
        Self {
            buckets: BTreeMap::new(),
            rate: u64::from(rate),
            capacity: u64::from(burst.max(1)).saturating_mul(TOKEN),
            max_keys: max_keys.max(1),
        }
    }

    fn level(&self, bucket: &Bucket, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(bucket.at).as_micros();
        let refill = u64::try_from(elapsed)
            .unwrap_or(u64::MAX)
            .saturating_mul(self.rate);
        bucket.tokens.saturating_add(refill).min(self.capacity)
    }

    /// How many whole tokens `key` has at `now`.
    pub(crate) fn available(&self, key: &NodeId, now: Instant) -> u64 {
        if self.rate == 0 {
            return u64::MAX;
        }
        self.buckets
            .get(key)
            .map_or(self.capacity, |b| self.level(b, now))
            / TOKEN
    }

    /// Whether `key` has a token at `now` (nothing is taken).
    pub(crate) fn allows(&self, key: &NodeId, now: Instant) -> bool {
        self.available(key, now) >= 1
    }

    /// Takes one token from `key` if it has one; whether it had.
    pub(crate) fn take(&mut self, key: NodeId, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let level = self
            .buckets
            .get(&key)
            .map_or(self.capacity, |b| self.level(b, now));
        if level < TOKEN {
            return false;
        }
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.max_keys {
            self.make_room(now);
        }
        self.buckets.insert(
            key,
            Bucket {
                tokens: level - TOKEN,
                at: now,
            },
        );
        true
    }

    /// Forgets `key` (its link went down).
    pub(crate) fn remove(&mut self, key: &NodeId) {
        self.buckets.remove(key);
    }

    /// Drops the full buckets; if none is full, the fullest.
    fn make_room(&mut self, now: Instant) {
        let capacity = self.capacity;
        let before = self.buckets.len();
        let levels: Vec<(NodeId, u64)> = self
            .buckets
            .iter()
            .map(|(k, b)| (*k, self.level(b, now)))
            .collect();
        for (key, level) in &levels {
            if *level >= capacity {
                self.buckets.remove(key);
            }
        }
        if self.buckets.len() == before
            && let Some((key, _)) = levels.iter().max_by_key(|(_, level)| *level)
        {
            self.buckets.remove(key);
        }
    }

    /// Buckets kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    fn key(n: u8) -> NodeId {
        NodeId::hash([n])
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let mut limiter = RateLimiter::new(2, 3, 8);
        let t = Instant::from_millis(1_000);
        assert!((0..3).all(|_| limiter.take(key(1), t)));
        assert!(!limiter.take(key(1), t));
        assert!(limiter.take(key(2), t), "another key is not affected");
        assert!(!limiter.allows(&key(1), t + Duration::from_millis(499)));
        assert!(limiter.take(key(1), t + Duration::from_millis(500)));
        assert!(!limiter.take(key(1), t + Duration::from_millis(500)));
        assert_eq!(limiter.available(&key(1), t + Duration::from_secs(60)), 3);
    }

    #[test]
    fn keys_are_bounded_and_drained_buckets_are_kept() {
        let mut limiter = RateLimiter::new(1, 2, 4);
        let t = Instant::from_millis(1_000);
        assert!(limiter.take(key(0), t) && limiter.take(key(0), t));
        for n in 1..50 {
            assert!(limiter.take(key(n), t));
            assert!(limiter.len() <= 4);
            assert!(!limiter.allows(&key(0), t), "the drained bucket stays");
        }
    }

    #[test]
    fn a_zero_rate_is_no_limit() {
        let mut limiter = RateLimiter::new(0, 1, 1);
        let t = Instant::from_millis(1);
        assert!((0..1000).all(|n| limiter.take(key((n % 200) as u8), t)));
    }
}
