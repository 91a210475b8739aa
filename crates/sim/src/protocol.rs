//! What the simulator needs from a node: the subset of mesh-core's interface that a driver uses.
//!
//! The simulator drives any [`Protocol`]; [`crate::mesh`] implements it for `mesh_core::Node`, and the
//! unit tests implement it for small fake nodes so that the engine, the network model, the signaling
//! server and the link layer are tested on their own.

use kademlia_core::{Instant, NodeId};

/// A message from the signaling server to a node.
pub type ServerInput = netsim::ServerInput<NodeId>;

/// What a node asks its driver to do.
#[derive(Debug)]
pub enum Output {
    /// Send bytes on the data channel of the link to `link`.
    Transmit {
        /// The peer at the far end.
        link: NodeId,
        /// The frame.
        bytes: Vec<u8>,
    },
    /// Open a link to `peer`; the initiator makes the offer and hands it back through `send_signal`.
    Connect {
        /// The peer.
        peer: NodeId,
        /// Whether this side makes the offer.
        initiator: bool,
    },
    /// Close the link to `peer`.
    Disconnect {
        /// The peer.
        peer: NodeId,
    },
    /// Send bytes to `to` through the signaling server.
    Signal {
        /// The addressee.
        to: NodeId,
        /// The bytes.
        payload: Vec<u8>,
    },
    /// Something the application (here: the simulator's measurements) cares about.
    Event(Event),
}

/// The events the simulator acts on or measures.
#[derive(Debug)]
pub enum Event {
    /// Signaling data (offer or answer) for the local WebRTC engine.
    Signal {
        /// Who sent it.
        from: NodeId,
        /// The bytes.
        payload: Vec<u8>,
    },
    /// A broadcast (`broadcast == true`) or direct message was delivered.
    Message {
        /// The origin.
        from: NodeId,
        /// Broadcast (with a topic) or direct.
        broadcast: bool,
        /// The application data.
        data: Vec<u8>,
        /// Link traversals from the origin.
        hops: u32,
    },
    /// A Kademlia iterative lookup (`dht_find_node`) finished.
    DhtLookupFinished {
        /// The id `dht_find_node` returned.
        id: u64,
        /// The closest nodes that answered, closest first.
        closest: Vec<NodeId>,
        /// Rounds of the iterative lookup, as kademlia-core reports them.
        rounds: u32,
    },
    /// A mesh-routed probe lookup (`find_node`) finished.
    LookupFinished {
        /// The id `find_node` returned.
        id: u64,
        /// The closest peers found.
        peers: Vec<NodeId>,
        /// Rounds of requests the lookup took.
        rounds: u32,
        /// Link traversals on the lookup's critical path (probes and answers).
        hops: u32,
    },
    /// A DHT put (`dht_put`) ended.
    PutFinished {
        /// The id `dht_put` returned.
        id: u64,
        /// Nodes that said they store the record.
        stored: u32,
        /// Nodes asked to store it.
        asked: u32,
        /// Why a node refused it (the last refusal heard), if one did.
        refused: Option<kademlia_core::StoreError>,
    },
    /// A DHT get (`dht_get`) ended.
    GetFinished {
        /// The id `dht_get` returned.
        id: u64,
        /// The value of the record found (signature and key checked by the node), `None` if none.
        value: Option<Vec<u8>>,
        /// Whether any node answered at all.
        answered: bool,
        /// Link traversals of the request that found the record (0 from the local store); of the last
        /// answer when not found.
        hops: u32,
        /// Rounds of requests (0 from the local store).
        rounds: u32,
    },
    /// A direct message could not be delivered.
    DirectFailed {
        /// The id `send` returned.
        id: u64,
    },
    /// A peer's hello verified: the link is up.
    PeerConnected {
        /// The peer.
        peer: NodeId,
    },
    /// Anything else.
    Other,
}

/// A node the simulator can drive. The call contract is mesh-core's: after every input the driver drains
/// [`Protocol::poll_output`] until `None`, then reads [`Protocol::poll_timeout`]. A node is `Send`:
/// a sharded run ([`crate::SimConfig::shards`]) hands its shards to threads.
pub trait Protocol: Sized + Send {
    /// The node's configuration.
    type Config: Clone;

    /// A node with this identity secret, configuration and randomness seed.
    fn create(secret_key: [u8; 32], seed: u64, config: &Self::Config) -> Self;
    /// Its id.
    fn local_id(&self) -> NodeId;
    /// Start: the driver also sends a join to the server.
    fn join(&mut self, now: Instant);
    /// A message from the signaling server.
    fn handle_server(&mut self, now: Instant, input: ServerInput);
    /// A link opened (DTLS done) with these fingerprints.
    fn handle_link_open(
        &mut self,
        now: Instant,
        peer: NodeId,
        local_fingerprint: Vec<u8>,
        remote_fingerprint: Vec<u8>,
    );
    /// A frame arrived on a link.
    fn handle_message(&mut self, now: Instant, peer: NodeId, bytes: &[u8]);
    /// A link closed or failed.
    fn handle_link_closed(&mut self, now: Instant, peer: NodeId);
    /// The local WebRTC engine produced signaling data for `to`.
    fn send_signal(&mut self, now: Instant, to: NodeId, payload: Vec<u8>);
    /// The timer from [`Protocol::poll_timeout`] fired.
    fn handle_timeout(&mut self, now: Instant);
    /// The next output.
    fn poll_output(&mut self) -> Option<Output>;
    /// When to call [`Protocol::handle_timeout`] next.
    fn poll_timeout(&self) -> Option<Instant>;
    /// Subscribe to a topic.
    fn subscribe(&mut self, topic: &str);
    /// Broadcast `data` on `topic`; `false` if the node refused.
    fn broadcast(&mut self, now: Instant, topic: &str, data: Vec<u8>) -> bool;
    /// Send `data` to `to` directly (over a link or routed); `None` if refused at once.
    fn send(&mut self, now: Instant, to: NodeId, data: Vec<u8>) -> Option<u64>;
    /// Start a Kademlia iterative lookup of `target` (RPCs over the mesh).
    fn dht_find_node(&mut self, now: Instant, target: NodeId) -> u64;
    /// Start a mesh-routed probe lookup of `target`.
    fn find_node(&mut self, now: Instant, target: NodeId) -> u64;
    /// Publish `value` under the name `name` in the DHT; `None` if refused at once.
    fn dht_put(&mut self, now: Instant, name: &[u8], value: Vec<u8>) -> Option<u64>;
    /// Look up the DHT record named `name`; `None` if refused at once.
    fn dht_get(&mut self, now: Instant, name: &[u8]) -> Option<u64>;
    /// The DHT records the node holds, stored for others or published itself: (name, value) pairs.
    fn dht_records(&self) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// Links whose hello verified.
    fn links(&self) -> Vec<NodeId>;
    /// Payload transmissions of broadcast messages so far (eager pushes, retries, graft answers).
    fn payload_transmissions(&self) -> u64;
    /// Named counters of the node, summed over the live nodes into the report's table. Default: none.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}
