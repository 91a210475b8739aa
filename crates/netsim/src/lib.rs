//! One deterministic, virtual-time network engine for p2pmesh: the simulator's scenarios and the
//! cores' scenario tests run on it.
//!
//! One virtual clock, one priority queue of events ordered by `(time, sequence number)`
//! ([`EventQueue`]), and around the nodes everything a real driver has: a signaling server that
//! introduces a joiner to its XOR-closest peers and a few random ones (the one introduction rule,
//! [`p2pmesh_base::introduce`]) and relays `signal` messages; a link layer that plays WebRTC (offer,
//! answer, DTLS fingerprints, data channels with latency and loss, links that die with their node and
//! are noticed late); fixed links for tests that want a given topology ([`Engine::link`]); partitions;
//! crashes and restarts. Every random draw comes from generators the caller seeds: the same seeds give
//! the same run.
//!
//! The engine drives any [`Core`]: each user writes a thin adapter from its core's inputs and outputs
//! to the trait's. The loop, per node and per input, is the cores' contract: give the input, drain
//! [`Core::poll_output`] until `None`, then schedule one timer at [`Core::poll_timeout`].
//!
//! The engine depends on no core (the cores' tests depend on it): ids and time are the core's own
//! types, behind the small bounds of [`Core::Id`] and [`Time`].
//!
//! A run is sequential (one queue, as above) or sharded ([`Engine::set_shards`]): the slots are dealt
//! to shards by slot number, each shard has its own queue, and time advances in windows no longer
//! than the shortest delay between two slots or a slot and the server ([`Engine::lookahead`], 5 ms
//! by default), so nothing made in a window is due in it at another shard; the shards of a window are
//! run by as many threads as there are cores, each taking the next shard left
//! ([`Engine::run_until_each`]). Draws are made per slot, events at one
//! instant are ordered by the slot that made them and its own count, and each end of a link opens
//! on its own: a sharded run is the same for a seed whatever the number of shards (it is not the
//! sequential run).

#![deny(missing_docs)]

mod core;
pub mod engine;
pub mod net;
pub mod queue;
pub mod server;
pub mod stats;

#[cfg(test)]
mod tests;

pub use crate::core::{Core, Output, ServerInput, Time};
pub use engine::{Engine, FRAME_KINDS, NetStats};
pub use net::{NetConfig, Network, Partition, mix64};
pub use queue::EventQueue;
pub use server::Server;
pub use stats::{Sample, percentile};

/// A microsecond clock for the engine's own tests.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Millis(u64);

#[cfg(test)]
impl Millis {
    pub(crate) fn from_millis(ms: u64) -> Self {
        Self(ms * 1_000)
    }
    pub(crate) fn as_millis(self) -> u64 {
        self.0 / 1_000
    }
}

#[cfg(test)]
impl ::core::ops::Add<::core::time::Duration> for Millis {
    type Output = Self;
    fn add(self, d: ::core::time::Duration) -> Self {
        Self(self.0 + d.as_micros() as u64)
    }
}

#[cfg(test)]
impl ::core::ops::Sub for Millis {
    type Output = ::core::time::Duration;
    fn sub(self, other: Self) -> ::core::time::Duration {
        ::core::time::Duration::from_micros(self.0.saturating_sub(other.0))
    }
}
