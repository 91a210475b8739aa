//! The p2pmesh node, sans IO: one [`Node`] composing [`kademlia_core`] and [`gossip_core`], which decides
//! the topology, frames everything on a link, verifies peers, and routes over the partial mesh. Every
//! driver (native, browser) and the simulator run this same state machine.
//!
//! # What it does
//!
//! - **Links.** At most [`Config::max_peers`] (default 5): close links, one per *close class* of
//!   k-buckets (the classes start at the bucket of the closest known peer and are
//!   [`Config::close_spacing`] buckets wide: the nearest peer, one of the ~4 nearest, one of the ~16
//!   nearest), which serve the DHT's last hops and join each XOR subtree to its siblings, and at least
//!   [`Config::random_links`] (default 2) long links to peers drawn bucket-uniformly from the buckets
//!   above (Kleinberg's harmonic distribution), so that the mesh stays one connected small world. When
//!   full and a peer closer than the link of its class offers, that link is evicted and handed up to 3
//!   alternatives (the JavaScript library's `reconnection_data`); a peer that fills no missing role is
//!   refused with alternatives (`connection_rejected`). The lower id always makes the offer (no glare):
//!   the higher one asks it to with a routed link request. Link signaling is sent again when nothing
//!   comes back and hellos until they verify (routed messages can be lost). A link that does not open in
//!   time raises [`Event::PeerTimedOut`]; a lost link is replaced after an exponential backoff with
//!   jitter, reset when a link comes up.
//! - **Framing.** Every data-channel message is `[version][kind][postcard body]`; a frame longer than
//!   [`Config::max_frame_bytes`] is chunked and reassembled in buffers bounded in count, bytes and age
//!   ([`frame`]).
//! - **Handshake.** Each side first sends a signed hello (its public key and both DTLS fingerprints, as
//!   the driver reported them). Nothing else is accepted before the peer's hello verifies; a hello whose
//!   key does not hash to the expected id, whose fingerprints are not this link's, or whose signature
//!   fails closes the link with [`DisconnectReason::Hello`].
//! - **Routing.** Direct messages, Kademlia RPCs to contacts without a link, lookup probes and WebRTC
//!   signaling for peers without a link are routed hop by hop: greedy by XOR distance using each link's
//!   own links (neighbor lists exchanged on every change), never revisiting a node, backtracking at dead
//!   ends, within [`Config::hop_limit`]; the signaling server carries them only when the mesh has no
//!   route. They are signed by the origin and verified once, by the node that consumes them.
//! - **Lookups.** [`Node::find_node`] sends probes toward the target through different first links; the
//!   first node on the way that knows the target answers along the reversed path.
//!   [`Node::dht_find_node`] runs kademlia-core's iterative lookup with its RPCs carried as above (a
//!   diagnostic; kademlia-core's table refreshes use it too).
//! - **DHT.** [`Node::put`], [`Node::get`] and [`Node::remove`] store and find signed records by name:
//!   requests travel toward the name's key over the same routing, the first node on the way that
//!   holds the record answers, the node where no link leads closer answers for the key and names the
//!   closest nodes, which the origin stores at; replicas' links keep copies, and every copy follows
//!   updates and removals (docs/decisions.md §33).
//!
//! # The contract
//!
//! 1. Create with [`Node::new`]`(secret_key, config, seed)`: the ed25519 secret key is the identity (the
//!    id is SHA-1 of the public key); all randomness comes from a ChaCha8 generator seeded by `seed`, so
//!    the same seed and the same inputs give the same outputs. A configuration is the caller's
//!    contract: [`Config::validate`] names what is wrong with one ([`ConfigError`]), and `Node::new`
//!    panics on a configuration it refuses.
//! 2. Feed inputs, each with `now` ([`Instant`], microseconds since the Unix epoch, never going back):
//!    [`Node::handle_server`] for the signaling server's messages, [`Node::handle_link_open`] /
//!    [`Node::handle_message`] / [`Node::handle_link_closed`] for the data channels,
//!    [`Node::send_signal`] for the local WebRTC engine's offers, answers and candidates,
//!    [`Node::handle_timeout`], and the commands ([`Node::join`], [`Node::broadcast`], [`Node::send`],
//!    [`Node::find_node`], ...).
//! 3. After every input, drain [`Node::poll_output`] until `None` and carry out each [`Output`]:
//!    `Transmit` on the link's data channel, `Connect` / `Disconnect` with the WebRTC engine (the
//!    initiator creates an offer and passes it to [`Node::send_signal`]; the other side feeds the
//!    offer from [`Event::Signal`] to its engine and passes its answer back the same way), `Signal`
//!    through the signaling server (the receiver's driver hands it in as [`ServerInput::Relayed`]).
//! 4. Then read [`Node::poll_timeout`] and call [`Node::handle_timeout`] when it passes.
//!
//! [`Node::stats`] is kept up to date as things happen (its counters include both cores'). Commands
//! return the id their result carries ([`DirectId`], [`QueryId`], kademlia-core's and gossip-core's
//! ids); a refused command is an [`Error`], never a panic. [`Output`], [`Event`] and the error enums
//! are `#[non_exhaustive]`: a driver keeps a catch-all arm.
//!
//! # Inside
//!
//! [`Node`] is a thin composer. Its parts each own their state, their `handle_*` and their next
//! deadline: the link (hello, fingerprints, signaling resends, keepalive), the topology (peer book,
//! admission, eviction, dial plans as pure decisions), the router (envelopes, sealing, forwarding,
//! pending direct messages, duplicate suppression), the probe lookup (a state machine like
//! kademlia-core's query), and one timer table keyed by an enum, from which [`Node::poll_timeout`]
//! reads the earliest deadline. The composer forwards each input to its part and maps every output of
//! the parts and of both cores explicitly.
//!
//! Network input is untrusted: a malformed, oversized or unexpected frame is dropped and counted in
//! [`Stats`], never a panic. Every buffer, queue and map is bounded by a [`Config`] field. The crate has no
//! clock, no socket, no OS randomness and no tokio; it builds for `wasm32-unknown-unknown`.
//!
//! # A driver loop
//!
//! Two nodes in one process; the "WebRTC engine" is a stub whose offer and answer are fixed bytes and
//! whose link opens as soon as the answer is back; the "signaling server" is a `Vec`.
//!
//! ```
//! use mesh_core::{Config, Event, Instant, Node, NodeId, Output, ServerInput};
//!
//! let mut nodes = [
//!     Node::new([1; 32], Config::default(), 1),
//!     Node::new([2; 32], Config::default(), 2),
//! ];
//! let ids = [nodes[0].local_id(), nodes[1].local_id()];
//! let index = |id: NodeId| if id == ids[0] { 0 } else { 1 };
//! let mut now = Instant::from_millis(1_000_000);
//! for n in &mut nodes {
//!     n.subscribe("chat").unwrap();
//!     n.join(now);
//! }
//! // The server introduces them to each other.
//! nodes[0].handle_server(now, ServerInput::BootstrapPeers(vec![ids[1]]));
//! nodes[1].handle_server(now, ServerInput::BootstrapPeers(vec![ids[0]]));
//!
//! let mut received = Vec::new();
//! for step in 0..200 {
//!     now += core::time::Duration::from_millis(10);
//!     if step == 100 {
//!         nodes[0].broadcast(now, "chat", b"hi".to_vec()).unwrap();
//!     }
//!     // Drain every node; carry out what it asks.
//!     let mut inputs = Vec::new(); // (to, what)
//!     for i in 0..2 {
//!         while let Some(out) = nodes[i].poll_output() {
//!             let me = ids[i];
//!             match out {
//!                 Output::Transmit { link, bytes } => inputs.push((index(link), (me, Some(bytes), None))),
//!                 Output::Signal { to, payload } => inputs.push((index(to), (me, None, Some(payload)))),
//!                 Output::Connect { peer, initiator: true } => {
//!                     // Our stub engine makes an offer at once.
//!                     nodes[i].send_signal(now, peer, b"offer".to_vec());
//!                 }
//!                 Output::Event(Event::Signal { from, payload }) => {
//!                     if payload == b"offer" {
//!                         nodes[i].send_signal(now, from, b"answer".to_vec());
//!                     } else {
//!                         // Answer received: the data channel opens on both sides.
//!                         let j = index(from);
//!                         nodes[i].handle_link_open(now, from, vec![i as u8], vec![j as u8]);
//!                         nodes[j].handle_link_open(now, me, vec![j as u8], vec![i as u8]);
//!                     }
//!                 }
//!                 Output::Event(Event::Message { data, .. }) => received.push(data),
//!                 _ => {}
//!             }
//!         }
//!     }
//!     for (to, (from, bytes, relayed)) in inputs {
//!         if let Some(bytes) = bytes {
//!             nodes[to].handle_message(now, from, &bytes);
//!         }
//!         if let Some(payload) = relayed {
//!             nodes[to].handle_server(now, ServerInput::Relayed { from, payload });
//!         }
//!     }
//!     for n in &mut nodes {
//!         if n.poll_timeout().is_some_and(|t| t <= now) {
//!             n.handle_timeout(now);
//!         }
//!     }
//! }
//! assert_eq!(nodes[0].links(), vec![ids[1]]);
//! assert_eq!(received, vec![b"hi".to_vec()]);
//! ```

#![deny(missing_docs)]

extern crate alloc;

mod abuse;
pub mod config;
mod dht;
pub mod event;
pub mod frame;
mod link;
mod lookup;
mod node;
mod peer_book;
mod route;
mod router;
mod signature;
#[cfg(test)]
mod test_support;
mod timer;
mod topology;

pub use config::{Config, ConfigError};
pub use event::{
    DirectFailure, DirectId, DisconnectReason, Error, Event, HelloError, MessageRef, Output,
    QueryId, ServerInput, Stats,
};
pub use node::Node;
pub use p2pmesh_base::{Instant, NodeId};
pub use signature::SignatureCheck;
