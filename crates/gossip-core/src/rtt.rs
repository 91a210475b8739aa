//! A link's round-trip estimate (RFC 6298's smoothed round trip and variation), fed by the ACKs of
//! pushes sent once, and the retransmission timeout it gives.

use core::time::Duration;

/// Smoothed round trip and its mean deviation, as TCP keeps them (RFC 6298 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RttEstimate {
    srtt: Duration,
    rttvar: Duration,
}

impl RttEstimate {
    /// The estimate after a first sample `rtt`.
    pub(crate) fn new(rtt: Duration) -> Self {
        Self {
            srtt: rtt,
            rttvar: rtt / 2,
        }
    }

    /// Takes in one more sample: `rttvar = 3/4 rttvar + 1/4 |srtt - rtt|`, then `srtt = 7/8 srtt +
    /// 1/8 rtt`.
    pub(crate) fn sample(&mut self, rtt: Duration) {
        let deviation = self.srtt.abs_diff(rtt);
        self.rttvar = (self.rttvar * 3 + deviation) / 4;
        self.srtt = (self.srtt * 7 + rtt) / 8;
    }

    /// The smoothed round trip.
    pub(crate) fn smoothed(&self) -> Duration {
        self.srtt
    }

    /// The wait before a first retransmission: `srtt + max(4 rttvar, srtt / 2)`, within `min..=max`.
    /// The half round trip is the margin a steady link (whose variation tends to zero) keeps against
    /// an ACK that is only a little late.
    pub(crate) fn timeout(&self, min: Duration, max: Duration) -> Duration {
        let margin = (self.rttvar * 4).max(self.srtt / 2);
        (self.srtt + margin).clamp(min, max.max(min))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_first_sample_waits_three_round_trips() {
        let rtt = RttEstimate::new(100 * MS);
        assert_eq!(rtt.timeout(MS, 10_000 * MS), 300 * MS);
    }

    #[test]
    fn a_steady_link_converges_to_one_and_a_half_round_trips() {
        let mut rtt = RttEstimate::new(100 * MS);
        for _ in 0..50 {
            rtt.sample(100 * MS);
        }
        assert_eq!(rtt.timeout(MS, 10_000 * MS), 150 * MS);
    }

    #[test]
    fn a_jittery_link_waits_longer() {
        let mut steady = RttEstimate::new(100 * MS);
        let mut jittery = RttEstimate::new(100 * MS);
        for i in 0..50 {
            steady.sample(100 * MS);
            jittery.sample(if i % 2 == 0 { 60 * MS } else { 140 * MS });
        }
        assert!(jittery.timeout(MS, 10_000 * MS) > steady.timeout(MS, 10_000 * MS) + 50 * MS);
    }

    #[test]
    fn the_timeout_stays_within_its_bounds() {
        assert_eq!(RttEstimate::new(MS).timeout(100 * MS, 500 * MS), 100 * MS);
        assert_eq!(
            RttEstimate::new(10_000 * MS).timeout(100 * MS, 500 * MS),
            500 * MS
        );
    }
}
