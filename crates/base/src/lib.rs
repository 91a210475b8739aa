//! What every p2pmesh core, driver and tool shares: who a node is, what time it is, and whom a joiner
//! meets.
//!
//! - [`NodeId`]: a 160-bit node identifier (SHA-1 of an ed25519 public key, or of any bytes for a
//!   record key), with the XOR [`Distance`] of the Kademlia metric.
//! - [`Instant`] and [`Duration`]: time as an input. The cores never read a clock; every input carries
//!   `now`, microseconds since the Unix epoch, supplied by the driver.
//! - [`Identity`]: an ed25519 key pair, the [`Signer`] and [`Verifier`] traits and strict [`verify`].
//! - [`introduce`]: the signaling server's introduction rule (a joiner meets its XOR-closest peers and
//!   a few random ones), written once for the server, the in-memory transport and the simulator.
//!
//! kademlia-core, gossip-core and mesh-core depend on this crate and re-export these types, so that a
//! core needs no other core for its identity or its clock. Like the cores, the crate is `no_std` (with
//! `alloc`), reads no clock and draws no randomness of its own.

#![cfg_attr(not(test), no_std)]
#![deny(missing_docs)]

extern crate alloc;

pub mod id;
pub mod identity;
pub mod introduce;
pub mod time;

pub use id::{Distance, ID_BITS, ID_LEN, NodeId, ParseIdError, cmp_20};
pub use identity::{
    Ed25519, Identity, PUBLIC_KEY_LEN, SECRET_KEY_LEN, SIGNATURE_LEN, Signer, Verifier, verify,
};
pub use time::{Duration, Instant};
