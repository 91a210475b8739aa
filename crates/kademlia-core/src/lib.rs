//! A sans-IO Kademlia DHT: a pure state machine with no clock, no socket and no OS randomness.
//!
//! A [`Node`] keeps a [`RoutingTable`] of 160 k-buckets, runs iterative lookups
//! ([`Node::find_node`], [`Node::get_value`], [`Node::put_value`], [`Node::bootstrap`]), answers the four
//! RPCs (PING, FIND_NODE, FIND_VALUE, STORE) of other nodes, and stores their bounded, expiring
//! [`Record`]s. Records are signed by their publisher and keyed by its public key and a salt (after
//! BEP 44, see [`record`]): a node stores and accepts as an answer only a record whose signature it
//! checked, replaces a record only with a higher `seq` from the same publisher, and holds a bounded
//! share for each publisher. Signatures are checked by a [`Verify`] function given to the node
//! ([`Node::with_verifier`]; strict ed25519 by default), so the core does no I/O. It speaks to any node by id: the driver delivers bytes to ids (over a data channel, or
//! through the signaling server before a node has links).
//!
//! # The contract
//!
//! 1. **Create** a node with [`Node::new`]`(local_id, config, seed)`. All randomness comes from a
//!    ChaCha8 generator seeded by `seed`: the same seed and the same inputs replay the same run.
//! 2. **Feed inputs**, each with the current time `now` (an [`Instant`], microseconds since the Unix
//!    epoch, never going backwards): [`Node::handle_message`] for bytes from a peer,
//!    [`Node::handle_peer_up`] / [`Node::handle_peer_down`] when the driver learns a peer became reachable
//!    or unreachable, [`Node::handle_timeout`] when the deadline from `poll_timeout` is reached, and the
//!    commands ([`Node::find_node`] and the like), which return a [`QueryId`].
//! 3. **Drain outputs** after every input: call [`Node::poll_output`] until it returns `None`; deliver
//!    each [`Output::Transmit`] to its peer and handle each [`Output::Event`]. A finished command reports
//!    [`Event::QueryFinished`] with its id.
//! 4. **Ask for the next deadline** with [`Node::poll_timeout`] after every input, and call
//!    [`Node::handle_timeout`] when it passes.
//!
//! Outputs are produced only in response to inputs, so a driver that drains after each input holds a
//! few dozen at most; the queue is still capped at [`Config::max_outputs`] and overflow is counted.
//!
//! # Bounds and untrusted input
//!
//! Every collection is bounded by a [`Config`] field: `k` entries and `replacement_cache_size` waiting
//! contacts per bucket, `max_lookup_candidates` per lookup, `max_queries` lookups, `max_records` stored
//! records of `max_value_bytes` each and `max_store_bytes` in all (of which at most
//! `max_records_per_publisher` records and `max_bytes_per_publisher` bytes from any one publisher),
//! `max_published` own records, `max_outputs` outputs; outstanding requests follow from `max_queries`.
//! Bytes from the network are checked ([`wire`]): a malformed, oversized or unexpected message, a
//! response from the wrong peer or to no request, or a record with a bad signature, is dropped and
//! counted in [`Stats`], never a panic. Panics are kept for caller errors (an unusable `Config`, which
//! [`Config::validate`] reports as a [`ConfigError`] beforehand; a value larger than `max_value_bytes`,
//! a record that is not the node's own given to `put_value`), each documented on its method.
//!
//! Verification: a contact enters the routing table only once it has shown it is reachable: it answered
//! one of our requests, sent us a request (it reached us), or the driver reported it up. Contacts we only
//! heard of wait in their bucket's replacement cache as unverified lookup candidates.
//!
//! # A driver loop
//!
//! Two nodes in one process, a `Vec` as the network:
//!
//! ```
//! use kademlia_core::{Config, Event, Instant, Node, NodeId, Output, QueryResult};
//!
//! let a_id = NodeId::hash(b"a");
//! let b_id = NodeId::hash(b"b");
//! let mut a = Node::new(a_id, Config::default(), 1);
//! let mut b = Node::new(b_id, Config::default(), 2);
//! let mut now = Instant::from_millis(1_000);
//!
//! // `a` knows `b` (say, from the signaling server) and joins through it.
//! let query = a.bootstrap(now, &[b_id]);
//!
//! let mut network: Vec<(NodeId, NodeId, Vec<u8>)> = Vec::new(); // (from, to, bytes)
//! let mut finished = None;
//! loop {
//!     // Drain every node's outputs.
//!     for node in [&mut a, &mut b] {
//!         while let Some(output) = node.poll_output() {
//!             match output {
//!                 Output::Transmit { to, bytes } => network.push((node.local_id(), to, bytes)),
//!                 Output::Event(Event::QueryFinished { id, result, .. }) if id == query => {
//!                     finished = Some(result)
//!                 }
//!                 _ => {}
//!             }
//!         }
//!     }
//!     if network.is_empty() {
//!         break;
//!     }
//!     // Deliver what was sent, 10 ms later.
//!     now += core::time::Duration::from_millis(10);
//!     for (from, to, bytes) in network.drain(..) {
//!         let node = if to == a_id { &mut a } else { &mut b };
//!         node.handle_message(now, from, &bytes);
//!     }
//!     // A real driver also sleeps until `poll_timeout()` and calls `handle_timeout`.
//!     for node in [&mut a, &mut b] {
//!         if node.poll_timeout().is_some_and(|t| t <= now) {
//!             node.handle_timeout(now);
//!         }
//!     }
//! }
//!
//! assert_eq!(finished, Some(QueryResult::Bootstrap { closest: vec![b_id] }));
//! // Each now holds the other as a verified contact: `b` answered `a`, `a` reached `b`.
//! assert!(a.routing_table().contains(&b_id));
//! assert!(b.routing_table().contains(&a_id));
//! ```

#![deny(missing_docs)]

pub mod config;
pub mod kbucket;
pub mod node;
pub mod query;
pub mod record;
pub mod wire;

pub use config::{Config, ConfigError};
pub use kbucket::{Entry, KBucket, RoutingTable};
pub use node::{Event, Node, Output, Stats};
/// Node ids and the XOR metric, from [`p2pmesh_base`].
pub use p2pmesh_base::id;
/// Time as an input, from [`p2pmesh_base`].
pub use p2pmesh_base::time;
pub use p2pmesh_base::{
    Distance, Duration, ID_BITS, ID_LEN, Instant, NodeId, ParseIdError, cmp_20,
};
pub use query::{QueryEnd, QueryId, QueryResult};
pub use record::{KEY_DOMAIN, MAX_SALT_BYTES, Record, StoreError, Verify};
