//! The per-connection rate limit: governor's GCRA (equivalent to a token bucket of `burst`
//! tokens refilled at `rate` per second, one message costing one token), read on tokio's
//! clock so that tests on paused time control it.

use std::num::NonZeroU32;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// A clock that reads tokio's time (paused in tests), in nanoseconds since its creation.
#[derive(Debug, Clone)]
pub(crate) struct TokioClock {
    origin: tokio::time::Instant,
}

impl Default for TokioClock {
    fn default() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.origin.elapsed())
    }
}

/// One connection's limiter on clock `C`.
#[derive(Debug)]
pub(crate) struct Limiter<C: Clock = TokioClock> {
    inner: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
}

/// The quota of `rate` messages per second with bursts of `burst` (each at least 1).
pub(crate) fn quota(rate: u32, burst: u32) -> Quota {
    Quota::per_second(NonZeroU32::MIN.saturating_add(rate.saturating_sub(1)))
        .allow_burst(NonZeroU32::MIN.saturating_add(burst.saturating_sub(1)))
}

impl Limiter {
    /// A limiter on tokio's clock.
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        Self::with_clock(rate, burst, TokioClock::default())
    }
}

impl<C: Clock> Limiter<C> {
    pub(crate) fn with_clock(rate: u32, burst: u32, clock: C) -> Self {
        Self {
            inner: RateLimiter::direct_with_clock(quota(rate, burst), clock),
        }
    }

    /// Admit one message if the quota allows it now.
    pub(crate) fn try_take(&self) -> bool {
        self.inner.check().is_ok()
    }

    /// Take `n` more tokens at once if the quota allows it now (`n` over the burst counts as the
    /// whole burst: such a cost is paid by a full bucket).
    pub(crate) fn try_take_n(&self, n: u32) -> bool {
        let Some(n) = NonZeroU32::new(n) else {
            return true;
        };
        match self.inner.check_n(n) {
            Ok(verdict) => verdict.is_ok(),
            Err(governor::InsufficientCapacity(burst)) => NonZeroU32::new(burst)
                .is_none_or(|burst| self.inner.check_n(burst).is_ok_and(|v| v.is_ok())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(rate: u32, burst: u32) -> (Limiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (Limiter::with_clock(rate, burst, clock.clone()), clock)
    }

    #[test]
    fn the_burst_passes_then_one_message_per_refill_interval() {
        let (limiter, clock) = limiter(10, 3);
        assert!(limiter.try_take() && limiter.try_take() && limiter.try_take());
        assert!(!limiter.try_take(), "the burst is spent");
        clock.advance(Duration::from_millis(99));
        assert!(!limiter.try_take(), "not refilled before 100 ms");
        clock.advance(Duration::from_millis(1));
        assert!(limiter.try_take(), "one refilled after 100 ms");
        assert!(!limiter.try_take());
    }

    #[test]
    fn an_idle_connection_refills_up_to_the_burst_and_no_more() {
        let (limiter, clock) = limiter(10, 3);
        for _ in 0..3 {
            assert!(limiter.try_take());
        }
        clock.advance(Duration::from_secs(60));
        let passed = (0..10).filter(|_| limiter.try_take()).count();
        assert_eq!(passed, 3);
    }

    #[test]
    fn the_sustained_rate_is_the_configured_rate() {
        let (limiter, clock) = limiter(50, 100);
        let mut passed = 0;
        // 10 s of 200 messages per second: the burst plus 50 per second.
        for _ in 0..2000 {
            if limiter.try_take() {
                passed += 1;
            }
            clock.advance(Duration::from_millis(5));
        }
        assert!((599..=601).contains(&passed), "passed {passed}");
    }

    #[test]
    fn a_cost_is_paid_at_once_and_a_cost_over_the_burst_needs_a_full_bucket() {
        let (limiter, clock) = limiter(10, 5);
        assert!(limiter.try_take_n(4));
        assert!(!limiter.try_take_n(2), "one token left");
        assert!(limiter.try_take_n(1));
        clock.advance(Duration::from_millis(400));
        assert!(!limiter.try_take_n(9), "four tokens are not a full bucket");
        clock.advance(Duration::from_millis(100));
        assert!(
            limiter.try_take_n(9),
            "a full bucket pays a cost over the burst"
        );
        assert!(!limiter.try_take());
    }

    #[test]
    fn zero_rate_or_burst_count_as_one() {
        assert_eq!(quota(0, 0), quota(1, 1));
        let (limiter, clock) = limiter(0, 0);
        assert!(limiter.try_take());
        assert!(!limiter.try_take());
        clock.advance(Duration::from_secs(1));
        assert!(limiter.try_take());
    }
}
