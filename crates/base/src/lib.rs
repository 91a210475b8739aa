//! What every p2pmesh core, driver and tool shares.
//!
//! - [`introduce`]: the signaling server's introduction rule (a joiner meets its XOR-closest peers and
//!   a few random ones), written once for the server, the in-memory transport and the simulator.

#![no_std]
#![deny(missing_docs)]

extern crate alloc;

pub mod introduce;
