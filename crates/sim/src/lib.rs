//! A deterministic discrete-event simulator of many p2pmesh nodes.
//!
//! The engine is [`netsim`]'s, shared with the cores' scenario tests: one virtual clock, one priority
//! queue of events ordered by `(time, sequence number)`, and around the nodes everything a real driver
//! has: a signaling server that introduces a joiner to its XOR-closest peers and a few random ones and
//! relays `signal` messages; a link layer that plays WebRTC (offer, answer, DTLS fingerprints, data
//! channels with latency and loss, links that die with their node and are noticed late); partitions;
//! crashes and restarts. Every key, seed and random draw derives from one
//! `u64` seed: the same seed gives a byte-identical report, and every failure prints its seed.
//!
//! The driver loop, per node and per input, is mesh-core's contract: give the input, drain
//! [`Protocol::poll_output`] until `None`, then schedule one timer at [`Protocol::poll_timeout`].
//!
//! ```
//! use sim::{Protocol, SimConfig, Simulation};
//! # fn run<P: Protocol>(node_config: P::Config) {
//! let mut sim: Simulation<P> = Simulation::new(42, SimConfig::default(), node_config);
//! let a = sim.add_node();
//! sim.join(a);
//! sim.run_for(core::time::Duration::from_secs(10));
//! # }
//! ```
//!
//! [`scenario`] holds the measured scenarios (broadcast, lookup, churn, partition; [`attack`] the
//! broadcast under attack) that the tests and
//! `cargo xtask sim` run; [`Report`] is what they return. [`hop_model`] simulates nothing: it computes
//! on a graph what a broadcast needs when nothing is lost (`--scenario hop-model`, and notes in every
//! broadcast report for its final mesh).

#![deny(missing_docs)]

pub mod attack;
pub mod hop_model;
pub mod mesh;
pub mod protocol;
pub mod recorder;
pub mod report;
pub mod scenario;
pub mod simulation;

#[cfg(test)]
mod tests;

pub use netsim::{NetConfig, Network, Partition};
pub use protocol::{Event, Output, Protocol, ServerInput};
pub use report::Report;
pub use scenario::{Scenario, ScenarioArgs, Strategy};
pub use simulation::{NetStats, SimConfig, Simulation};
