//! Sans-IO reliable broadcast for p2pmesh: Plumtree with the adaptive fanout of the JavaScript p2pmesh,
//! per-hop acknowledgements and retries, and signed, deduplicated, hop-limited messages.
//!
//! A [`Node`] is a pure state machine. It never reads a clock, never touches a socket and never draws
//! OS randomness: the driver (mesh-core, a simulator, a test) feeds it inputs with the current time and
//! carries out the [`Output`]s it returns.
//!
//! # Contract
//!
//! 1. Create the node with [`Node::new`]`(signer, config, seed)`. Its id is SHA-1 of the signer's
//!    ed25519 public key ([`Identity`] is the ed25519 signer). All its randomness (which undecided
//!    links receive an eager push) comes from a ChaCha8 generator seeded with `seed`: the same seed
//!    and the same inputs give the same outputs, byte for byte.
//! 2. Tell it which links exist: [`Node::handle_peer_up`] / [`Node::handle_peer_down`]. Links are
//!    decided above it (mesh-core); a frame from a peer that is not a link is dropped, so report a
//!    link up before handing over its first frame.
//! 3. Feed it inputs: [`Node::handle_message`] for every frame received on a link,
//!    [`Node::publish`], [`Node::subscribe`], [`Node::unsubscribe`].
//! 4. After **every** input, drain [`Node::poll_output`] until it returns `None`: send each
//!    [`Output::Transmit`] on its link (reliable, ordered channel, one frame per send; the frame is at
//!    most [`Config::max_frame_len`] bytes), and hand each [`Output::Event`] to the application.
//! 5. Ask [`Node::poll_timeout`] when to wake up next, and call [`Node::handle_timeout`] then (or
//!    later; early is harmless), then drain outputs again.
//!
//! **Time.** Every input carries `now`, an [`Instant`]: microseconds since the Unix epoch,
//! so that message timestamps (checked against the replay window) mean the same on every node. The
//! node never lets its clock run backwards: an earlier `now` than one already seen counts as the later.
//!
//! **Untrusted input.** Anything malformed, oversized, unexpected, unsigned, badly signed, too old, from
//! the future, or from an origin over its rate ([`Config::origin_rate`]) is dropped and counted in [`Stats`], never a panic. Panics are
//! reserved for a caller breaking this contract (an inconsistent [`Config`], which
//! [`Config::validate`] reports as a [`ConfigError`] beforehand).
//!
//! # How a message travels
//!
//! Plumtree, the rooted trees and flooding share everything below (ids, signatures, the seen-cache,
//! acknowledgements, retries, announcements and GRAFTs) and differ only in a handful of decisions (who
//! gets a push, what a new link starts as, whether duplicates and GRAFTs reshape the tree): one
//! dissemination policy, fixed by [`Config::strategy`] and [`Config::rooted_tree`], answers them.
//!
//! - **Identity and integrity.** A message's id is SHA-1 of (origin, sequence number, topic, payload);
//!   the origin signs that content plus its timestamp with ed25519 and sends its public key along.
//!   Receivers recompute the id (mismatch: dropped), look it up in the [`SeenCache`] (a duplicate is
//!   recognised here, before any signature work), check that the key hashes to the origin and verify
//!   the signature — once per message. Unsigned messages are refused unless
//!   [`Config::require_signatures`] is off.
//! - **Dedup and replay.** The seen-cache is bounded in count ([`Config::max_seen`]) and age
//!   ([`Config::max_message_age`], the replay window). A message older than the window, or more than
//!   [`Config::max_clock_skew`] in the future, is refused. When the count bound forces an id out, every
//!   message not newer than it is refused from then on: a message is delivered at most once, always.
//! - **Hop limit.** A message that has travelled [`Config::hop_limit`] hops is delivered and announced,
//!   not pushed: nodes beyond it get the message by GRAFT, hop by hop. The hop count is not signed
//!   (relays increment it), so it decides nothing that could lose a message: a count past the limit
//!   counts as the limit, and a relay that raises it only turns pushes into announcements. The
//!   limit should exceed the depth of the tree (mesh-core uses 32).
//! - **Rates.** A relay accepts at most [`Config::origin_rate`] new messages a second from one origin
//!   (bursts of [`Config::origin_burst`]), and tracks at most [`Config::max_missing_per_link`]
//!   announced-but-missing messages per announcing link, added at most [`Config::ihave_rate`] a
//!   second: one origin cannot flood the mesh, one link cannot fill the node's memory with made-up
//!   ids.
//! - **Plumtree.** Each link is *eager* (on the broadcast tree: messages are pushed) or *lazy* (message
//!   ids are announced in batched IHAVE frames every [`Config::lazy_flush_interval`], never to a link
//!   that has shown it holds the message: its copy, its ACK, its own IHAVE, and with `rooted_tree`
//!   an IHAVE that came before the message). A node that
//!   receives a second copy of a message PRUNEs a link to lazy; a node that hears of a message by
//!   IHAVE and has not received it within [`Config::graft_timeout`] GRAFTs an announcer, which sends
//!   the message and makes the link eager again. Duplicates thus cut the first pushes down to a
//!   spanning tree, and announcements repair it when a node or link fails. An IHAVE is not
//!   acknowledged: with [`Config::announce_repeat`] an announcement its link has not answered (by
//!   showing it holds the message) is sent once more, so that one lost frame cannot cut a node off
//!   a message whose only other source failed.
//! - **A shallow tree** (without `rooted_tree`). Plain Plumtree keeps the link of the first copy, so the tree follows the
//!   latencies of the first flood and can be deep; since one tree serves every origin, its diameter
//!   bounds the last delivery hop. Here the hop counts of the copies decide which link a duplicate
//!   cuts: a later copy over strictly fewer hops becomes the parent (the old parent is pruned); a copy
//!   from a peer that had the message after more hops than we did, and to which we pushed it too, is
//!   left for that peer to judge when our copy reaches it; otherwise the sender is pruned. Each side
//!   compares the hop counts carried by the copies, so exactly one of them decides, and the tree
//!   approaches a shortest-hop tree at no cost in payloads (in the 100-node test: diameter about 10
//!   instead of about 15).
//! - **Rooted trees** ([`Config::rooted_tree`], on in mesh-core). A tree shaped by the copies of
//!   whichever origins published last keeps changing when origins vary (each reshaping costs a PRUNE,
//!   a GRAFT and a redundant push, and cuts subtrees off for a while), and drifts deep. With
//!   `rooted_tree`, the eager links are instead [`Config::trees`] breadth-first trees built like a
//!   spanning-tree protocol, each with its own root: every node tells its links (one TREE frame, one
//!   entry per tree) the root it follows in each tree, its distance and its path's cost to it and
//!   whether that link is its parent; per tree it takes as parent the link offering the lowest root in
//!   that tree's order (ids with their first byte offset by the tree's share of the id space), then
//!   the cheapest path (each link costs half its measured round trip, [`Node::handle_link_rtt`] and
//!   the ACKs, plus [`Config::tree_hop_cost`]: a fastest-path tree that takes an extra hop only to
//!   save more than that), then the fewest hops, then the lowest id, never a child (split horizon),
//!   never beyond `hop_limit / 2` hops. **Roots prove
//!   themselves:** an entry naming a root other than its sender counts only once the sender has sent
//!   that root's signature over its id and a recent time (at most [`Config::tree_proof_max_age`]
//!   old), in the `Tree` frame itself or a `Roots` frame, and never at distance 0; each node passes
//!   on the freshest proof of every root it follows, and a root renews its own at a quarter of that
//!   age (the renewal rides the next `Tree` frames while the proof a link has is young). So one
//!   frame claiming low roots re-roots nothing. A message travels on
//!   one tree, chosen by its origin: the settled tree whose root is cheapest to reach, so its last
//!   delivery is at most that distance plus the tree's height (one tree shared by every origin costs
//!   up to twice its height; at 1,000 nodes in the simulator, eight trees took the average last
//!   delivery hop from 13 to 11, twelve, mesh-core's default, to 10.8). The parent and the children
//!   are eager, every other link lazy; duplicates and GRAFTs repair delivery but never reshape a
//!   tree, which changes only when links do. Changes are told after
//!   [`Config::tree_advert_delay`] (several in a row cost one frame), and again every
//!   [`Config::tree_refresh_interval`] (frames may be lost). **No routing loops without sequence
//!   numbers:** a node whose parent stops offering the root (its link went down, it follows another
//!   root or took this node as its parent) and that finds only a longer path holds that root down
//!   ([`Config::tree_hold_down`], or [`Config::tree_root_hold_down`] when its parent was the root
//!   itself): it takes the root only through a link that advertises less than its feasible
//!   distance (a feasible successor, as in EIGRP's DUAL: the lowest cost it had or advertised for
//!   that root within the last hold-down; its subtree all advertise more, even those that have not
//!   heard its latest cost, so such a link's path cannot run back through it), and keeps its root
//!   that way when it can; otherwise it advertises what it has instead (another root, or itself),
//!   which reaches the subtree and clears it before the hold ends. Outside a hold-down the same
//!   condition applies to a new parent for the same root: after a node's cost rose, a node of its
//!   subtree may still advertise a cost built on the lower one. ([`Config::tree_feasible_successors`]
//!   off: a held-down node only refuses paths longer than the one it had.) A root that is gone
//!   disappears that way instead of being counted up hop by hop, and no root has to send periodic
//!   sequence numbers down every tree. Any tree path (up to a common ancestor, then down) fits under the hop limit.
//! - **Eager radius** ([`Config::eager_radius`], rooted trees). The origin and every node that
//!   received a message over fewer hops push it to all their links, not only to its tree: near its
//!   origin it spreads like a flood and enters its tree at many places, instead of climbing the tree
//!   to a common ancestor first. Each link inside the radius costs about one redundant copy.
//! - **Flooding** ([`Strategy::Flood`], the JavaScript library's dissemination, for comparison): every
//!   new message is pushed to every link but the one it came from, acknowledged and retried like an
//!   eager push; no IHAVE, GRAFT or PRUNE.
//! - **New links and the adaptive fanout** (without `rooted_tree`). A new link starts *undecided*, not eager (the Plumtree
//!   default). The first message to cross it decides: among the undecided links, a share chosen by the
//!   JavaScript library's adaptive fanout gets the push and becomes eager, the rest get the
//!   announcement and become lazy. The share depends on the number of nodes known — the number of
//!   links, or the estimate given with [`Node::set_network_size`] / [`Config::network_size`]: all up to
//!   5, 80–90% from 6 to 15, 60–70% beyond. Lazy links still carry announcements, so nobody is left out;
//!   the fanout only trims the flood that would otherwise build the first tree. A link on which a
//!   message arrives first becomes eager; one that announces becomes lazy. A first copy over a link
//!   this node had pruned (it crossed the PRUNE) is answered with an empty GRAFT, so that the link is
//!   eager at both ends, never one way only (docs/decisions.md §36).
//! - **Per-hop reliability.** Every pushed message (first push, retransmission, GRAFT answer) is
//!   acknowledged by the receiver with an ACK frame; an ACK, an announcement or a copy of the message
//!   from that peer settles it. An unsettled push is resent after [`Config::retry_initial`], then
//!   [`Config::retry_factor`] times longer each time up to [`Config::retry_max_delay`], at most
//!   [`Config::max_retries`] times (then [`Event::AckTimeout`]). Once a link's round trip is known
//!   (the ACK of a push sent once, or the driver's [`Node::handle_link_rtt`]), the first wait is RFC
//!   6298's retransmission timeout for it, within [`Config::retry_min`] and [`Config::retry_initial`].
//!   When its link goes down, the message is
//!   sent instead over every remaining link not known to hold it. Message bytes for all this are kept in
//!   a message cache bounded in count, bytes and age.
//! - **Cost.** [`Stats::payload_transmissions`] counts every time a message's bytes leave the node
//!   (first pushes, retries, GRAFT answers, reroutes), so a simulator can compute the relative message
//!   redundancy RMR = transmissions / (receivers − 1) − 1. On a settled tree a lost push or ACK costs
//!   one retransmission; the retry delay (500 ms before the link's round trip is known, then about
//!   1.5 round trips, at least 100 ms) is below the GRAFT timeout (1 s), so the cheap repair (the
//!   sender's retry) wins the race against a GRAFT, which would cost a payload plus a tree edge whose
//!   cycle must then be cut (and cuts made at once for different messages can split the tree).
//!
//! # Bounds and defaults
//!
//! Every queue, cache and map is bounded by a [`Config`] field (defaults in parentheses): links
//! ([`Config::max_links`], 256), subscriptions (1024), the seen-cache (65 536 ids, 5 min), the message
//! cache (1024 messages, 16 MiB, 60 s), pushes awaiting an ACK (8192), announced-but-missing messages
//! (4096, 8 announcers each, 6 GRAFTs each), each link's lazy queue (4096), announcements waiting
//! to be repeated (8192, as pushes), ids per IHAVE/GRAFT frame (512), pending outputs (65 536).
//! Topics are at most 256 bytes and payloads 64 KiB; the hop limit is 16; retries start at 500 ms, double, cap at 8 s and stop after 5; GRAFTs go out after 1 s, then
//! every 500 ms; announcements are flushed every 50 ms; messages are refused older than 5 min or more
//! than 30 s in the future.
//!
//! # A driver loop
//!
//! ```
//! use std::collections::VecDeque;
//!
//! use gossip_core::{Config, Event, Identity, Node, Output};
//! use gossip_core::Instant;
//!
//! let mut now = Instant::from_millis(1_700_000_000_000);
//! let mut nodes = vec![
//!     Node::new(Identity::from_secret_bytes(&[1; 32]), Config::default(), 1),
//!     Node::new(Identity::from_secret_bytes(&[2; 32]), Config::default(), 2),
//! ];
//! let (a, b) = (nodes[0].local_id(), nodes[1].local_id());
//! nodes[0].handle_peer_up(now, b);
//! nodes[1].handle_peer_up(now, a);
//! nodes[1].subscribe("chat").expect("a short topic");
//! let id = nodes[0].publish(now, "chat", b"hello".to_vec()).expect("a small message");
//!
//! let mut in_flight = VecDeque::new();
//! let mut delivered = Vec::new();
//! for _ in 0..1_000 {
//!     // 1. After every input, drain every output.
//!     for node in &mut nodes {
//!         while let Some(output) = node.poll_output() {
//!             match output {
//!                 Output::Transmit { to, bytes } => in_flight.push_back((node.local_id(), to, bytes)),
//!                 Output::Event(Event::Delivered { id, payload, .. }) => delivered.push((id, payload)),
//!                 _ => {}
//!             }
//!         }
//!     }
//!     // 2. Carry one frame over its link (a real driver writes to a data channel and, on the
//!     //    other side, calls handle_message when the bytes arrive).
//!     if let Some((from, to, bytes)) = in_flight.pop_front() {
//!         let receiver = nodes.iter_mut().find(|n| n.local_id() == to).expect("a known node");
//!         now += std::time::Duration::from_millis(20);
//!         receiver.handle_message(now, from, &bytes);
//!         continue;
//!     }
//!     if !delivered.is_empty() {
//!         break;
//!     }
//!     // 3. Nothing in flight: sleep until the earliest timer and run it.
//!     let Some(wake) = nodes.iter().filter_map(|n| n.poll_timeout()).min() else { break };
//!     now = now.max(wake);
//!     for node in &mut nodes {
//!         node.handle_timeout(now);
//!     }
//! }
//! assert_eq!(delivered, vec![(id, b"hello".to_vec())]);
//! ```

#![deny(missing_docs)]

mod cache;
mod config;
mod event;
mod lazy;
mod message;
mod node;
mod policy;
mod rate;
mod rtt;
mod seen;
mod stats;
pub mod wire;

pub use cache::{Holders, MessageCache};
pub use config::{Config, ConfigError, Strategy};
pub use event::{Event, Output, PublishError, SubscribeError};
pub use lazy::LazyQueue;
pub use message::{MESSAGE_ID_LEN, MessageId};
pub use node::{Node, tree_order_key};
pub use p2pmesh_base::{
    Ed25519, Identity, PUBLIC_KEY_LEN, SECRET_KEY_LEN, SIGNATURE_LEN, Signer, Verifier, verify,
};
pub use p2pmesh_base::{Instant, NodeId};
pub use seen::{Seen, SeenCache};
pub use stats::Stats;
