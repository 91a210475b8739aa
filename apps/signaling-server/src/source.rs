//! Limits per source address: open connections, and joins per second (a keyed GCRA).
//!
//! A source is an IPv4 address, or the /64 prefix of an IPv6 address (one host or one
//! customer's network gets a whole /64, so counting single IPv6 addresses would let one host
//! count as billions). An IPv4-mapped IPv6 address counts as its IPv4 address.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use governor::RateLimiter;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;

use crate::rate::{TokioClock, quota};

/// The source of a connection, as the limits count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Source(IpAddr);

impl Source {
    /// The address the source is counted by (an IPv6 source's /64 with its host bits zero).
    pub(crate) fn ip(self) -> IpAddr {
        self.0
    }

    /// The source that `ip` counts as.
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Self(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(ip) => ip.fmt(f),
            IpAddr::V6(ip) => write!(f, "{ip}/64"),
        }
    }
}

/// Open connections per source; an entry lives while its source has a connection open, so the
/// map holds at most one entry per open connection.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    open: Mutex<HashMap<Source, usize>>,
}

/// One admitted connection; dropping it gives its place back.
#[derive(Debug)]
pub(crate) struct Admitted {
    pub(crate) source: Source,
    table: Arc<Connections>,
}

impl Connections {
    /// Count one more connection from `source` unless it already has `max` open.
    pub(crate) fn admit(self: &Arc<Self>, source: Source, max: usize) -> Option<Admitted> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(source).or_insert(0);
        if *n >= max {
            if *n == 0 {
                open.remove(&source);
            }
            return None;
        }
        *n += 1;
        Some(Admitted {
            source,
            table: self.clone(),
        })
    }

    #[cfg(test)]
    pub(crate) fn open(&self, source: Source) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(&source).copied().unwrap_or(0)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.source);
            }
        }
    }
}

/// Joins per source: governor's keyed GCRA on tokio's clock. Its state is pruned of sources whose
/// bucket has refilled (they are as if never seen) once it holds [`Joins::PRUNE_AT`] sources.
pub(crate) struct Joins {
    limiter: RateLimiter<Source, DefaultKeyedStateStore<Source>, TokioClock, NoOpMiddleware<Nanos>>,
}

impl std::fmt::Debug for Joins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joins").finish_non_exhaustive()
    }
}

impl Joins {
    /// Sources remembered before the state is pruned.
    const PRUNE_AT: usize = 10_000;

    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        Self {
            limiter: RateLimiter::new(
                quota(rate, burst),
                DefaultKeyedStateStore::default(),
                TokioClock::default(),
            ),
        }
    }

    /// Admit one join from `source` if its quota allows it now.
    pub(crate) fn try_join(&self, source: Source) -> bool {
        if self.limiter.len() >= Self::PRUNE_AT {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&source).is_ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_counts_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::of(a), Source::of(b));
        assert_ne!(Source::of(a), Source::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        let v4: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(Source::of(mapped), Source::of(v4));
    }

    #[test]
    fn a_source_holds_at_most_max_and_a_closed_connection_frees_its_place() {
        let table = Arc::new(Connections::default());
        let a = Source::of("10.0.0.1".parse().unwrap());
        let b = Source::of("10.0.0.2".parse().unwrap());
        let first = table.admit(a, 2).expect("first");
        let _second = table.admit(a, 2).expect("second");
        assert!(table.admit(a, 2).is_none(), "a third from one source");
        assert!(
            table.admit(b, 2).is_some(),
            "another source is not affected"
        );
        drop(first);
        assert!(table.admit(a, 2).is_some(), "a place was freed");
        assert_eq!(table.open(b), 0, "an idle source is forgotten");
    }
}
