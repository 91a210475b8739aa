//! The fuzz targets of p2pmesh: one function per decoder or entry point that takes bytes from the
//! network, each `fn(&[u8])` that panics when an invariant breaks and returns otherwise.
//!
//! The same functions serve two callers:
//! - **cargo-fuzz** (`fuzz/`, nightly, `cargo xtask fuzz`): one libFuzzer target per function, which
//!   only calls it;
//! - **the stable corpus replay** (`tests/replay.rs`, run by `cargo test --workspace` in CI): every
//!   committed corpus and regression input of every target, so that a crash found once stays fixed.
//!
//! The structured targets ([`mesh_node`], [`mesh_reassembly`], [`kademlia_node`], [`gossip_node`])
//! read their input with [`arbitrary`] as a sequence of actions, so that one byte string means one
//! scenario on every toolchain. Seed inputs come from [`seeds`] (`cargo xtask fuzz --seed-corpus`),
//! built with the crates' own encoders so that they follow wire changes.
//!
//! Targets use only the crates' public encode/decode APIs and node inputs.

#![deny(missing_docs)]

mod cores;
mod mesh;
mod node;
pub mod seeds;
mod signaling;

pub use cores::{gossip_node, gossip_wire, kademlia_node, kademlia_wire, step_bytes};
pub use mesh::{mesh_frame, mesh_reassembly};
pub use node::mesh_node;
pub use signaling::{
    signaling_client_message, signaling_cluster_message, signaling_server_message,
};

/// A fuzz target: bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by name: the names of the cargo-fuzz targets and of the corpus directories
/// (`fuzz/corpus/NAME`, `fuzz/regressions/NAME`).
pub const TARGETS: &[(&str, Target)] = &[
    ("kademlia_wire", kademlia_wire),
    ("kademlia_node", kademlia_node),
    ("gossip_wire", gossip_wire),
    ("gossip_node", gossip_node),
    ("mesh_frame", mesh_frame),
    ("mesh_reassembly", mesh_reassembly),
    ("mesh_node", mesh_node),
    ("signaling_client_message", signaling_client_message),
    ("signaling_server_message", signaling_server_message),
    ("signaling_cluster_message", signaling_cluster_message),
];

/// Most outputs one input may produce before a target calls it unbounded.
pub(crate) const MAX_OUTPUTS_PER_INPUT: usize = 10_000;
