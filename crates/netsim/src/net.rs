//! The network model: link latency, loss, partitions, failure detection.

use core::time::Duration;

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

/// Parameters of the simulated network.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Shortest one-way latency of a peer link. Default 10 ms.
    pub latency_min: Duration,
    /// Longest one-way latency of a peer link (each pair of nodes gets a fixed latency drawn uniformly
    /// between the two). Default 100 ms.
    pub latency_max: Duration,
    /// Probability that a frame on a peer link is lost. Default 0.
    pub loss: f64,
    /// Shortest one-way latency between a node and the signaling server. Default 5 ms.
    pub server_latency_min: Duration,
    /// Longest one-way latency between a node and the signaling server. Default 40 ms.
    pub server_latency_max: Duration,
    /// Shortest time for a node to notice that a link's far end died (WebRTC consent freshness / SCTP
    /// heartbeat). Default 2 s.
    pub detect_min: Duration,
    /// Longest such time. Default 5 s.
    pub detect_max: Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            latency_min: Duration::from_millis(10),
            latency_max: Duration::from_millis(100),
            loss: 0.0,
            server_latency_min: Duration::from_millis(5),
            server_latency_max: Duration::from_millis(40),
            detect_min: Duration::from_secs(2),
            detect_max: Duration::from_secs(5),
        }
    }
}

/// A cut between two sets of nodes, from `start` until `end`.
#[derive(Debug, Clone)]
pub struct Partition<T> {
    /// The side of each node slot (`true`: side A); slots beyond the vector are on side B.
    pub side_a: Vec<bool>,
    /// When the cut starts.
    pub start: T,
    /// When it heals.
    pub end: T,
}

impl<T: Copy + Ord> Partition<T> {
    fn side(&self, slot: u32) -> bool {
        self.side_a.get(slot as usize).copied().unwrap_or(false)
    }

    /// Whether this cut separates `a` and `b` at `now`.
    pub fn separates(&self, now: T, a: u32, b: u32) -> bool {
        now >= self.start && now < self.end && self.side(a) != self.side(b)
    }
}

/// The network: fixed per-pair latencies (a hash of the pair, so no table), loss, partitions. Its
/// random draws take the generator to draw from (the engine's, or a slot's in a sharded run).
#[derive(Debug, Clone)]
pub struct Network<T> {
    config: NetConfig,
    salt: u64,
    partitions: Vec<Partition<T>>,
}

/// SplitMix64's finaliser: a cheap, well-mixed hash of a 64-bit word.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn between(min: Duration, max: Duration, hash: u64) -> Duration {
    let lo = u64::try_from(min.as_micros()).unwrap_or(u64::MAX);
    let hi = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
    if hi <= lo {
        return min;
    }
    Duration::from_micros(lo + hash % (hi - lo + 1))
}

impl<T: Copy + Ord> Network<T> {
    /// A network with this configuration; `salt` (a random word) draws the pairs' latencies.
    pub fn new(config: NetConfig, salt: u64) -> Self {
        Self {
            config,
            salt,
            partitions: Vec::new(),
        }
    }

    /// The salt the latencies are drawn with.
    pub fn salt(&self) -> u64 {
        self.salt
    }

    /// The configuration.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Change the loss probability from now on.
    pub fn set_loss(&mut self, loss: f64) {
        self.config.loss = loss;
    }

    /// One-way latency of the link between slots `a` and `b` (the same both ways, fixed for the run).
    pub fn link_latency(&self, a: u32, b: u32) -> Duration {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let pair = (u64::from(lo) << 32) | u64::from(hi);
        between(
            self.config.latency_min,
            self.config.latency_max,
            mix64(pair ^ self.salt),
        )
    }

    /// One-way latency between slot `a` and the signaling server.
    pub fn server_latency(&self, a: u32) -> Duration {
        between(
            self.config.server_latency_min,
            self.config.server_latency_max,
            mix64(u64::from(a) ^ self.salt.rotate_left(17) ^ 0x5151_5151),
        )
    }

    /// Draw from `rng` whether one frame is lost.
    pub fn lost(&self, rng: &mut ChaCha8Rng) -> bool {
        self.config.loss > 0.0 && rng.random_bool(self.config.loss.min(1.0))
    }

    /// Draw from `rng` how long a node takes to notice that a link died.
    pub fn detection_delay(&self, rng: &mut ChaCha8Rng) -> Duration {
        let lo = u64::try_from(self.config.detect_min.as_micros()).unwrap_or(u64::MAX);
        let hi = u64::try_from(self.config.detect_max.as_micros()).unwrap_or(u64::MAX);
        if hi <= lo {
            return self.config.detect_min;
        }
        Duration::from_micros(rng.random_range(lo..=hi))
    }

    /// Add a partition.
    pub fn add_partition(&mut self, partition: Partition<T>) {
        self.partitions.push(partition);
    }

    /// Whether `a` and `b` can reach each other at `now`.
    pub fn reachable(&self, now: T, a: u32, b: u32) -> bool {
        !self.partitions.iter().any(|p| p.separates(now, a, b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Millis as Instant;
    use rand::SeedableRng;

    #[test]
    fn latency_is_symmetric_fixed_and_in_range() {
        let net: Network<Instant> = Network::new(NetConfig::default(), 1);
        for a in 0..50u32 {
            for b in 0..50u32 {
                let l = net.link_latency(a, b);
                assert_eq!(l, net.link_latency(b, a));
                assert!(l >= Duration::from_millis(10) && l <= Duration::from_millis(100));
            }
        }
        let s = net.server_latency(3);
        assert!(s >= Duration::from_millis(5) && s <= Duration::from_millis(40));
    }

    #[test]
    fn loss_rate_is_roughly_right() {
        let config = NetConfig {
            loss: 0.1,
            ..NetConfig::default()
        };
        let net: Network<Instant> = Network::new(config, 2);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let lost = (0..100_000).filter(|_| net.lost(&mut rng)).count();
        assert!((9_000..11_000).contains(&lost), "{lost}");
    }

    #[test]
    fn partition_cuts_only_across_and_only_while_active() {
        let mut net = Network::new(NetConfig::default(), 3);
        net.add_partition(Partition {
            side_a: vec![true, true, false, false],
            start: Instant::from_millis(100),
            end: Instant::from_millis(200),
        });
        let during = Instant::from_millis(150);
        assert!(!net.reachable(during, 0, 2));
        assert!(net.reachable(during, 0, 1));
        assert!(net.reachable(during, 2, 3));
        assert!(net.reachable(Instant::from_millis(99), 0, 2));
        assert!(net.reachable(Instant::from_millis(200), 0, 2));
    }
}
