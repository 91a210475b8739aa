//! What goes in and out of a [`Node`](crate::Node) besides bytes: server inputs, outputs, events, ids,
//! errors and counters.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use kademlia_core::NodeId;

/// A message from the signaling server, decoded by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerInput {
    /// The answer to a join (`bootstrap_peers`): peers to start from.
    BootstrapPeers(Vec<NodeId>),
    /// A peer joined near this node (`peer_joined`, a targeted introduction).
    PeerJoined(NodeId),
    /// A peer left (`peer_left`), or the server does not know it: a signal to it was refused with
    /// `unknown_peer` (drivers report both this way).
    PeerLeft(NodeId),
    /// A mesh frame relayed by the server (a `signal` message whose payload is ours), `from` as the server
    /// authenticated it.
    Relayed {
        /// The sender.
        from: NodeId,
        /// The frame.
        payload: Vec<u8>,
    },
}

/// Identifies a lookup started by [`Node::find_node`](crate::Node::find_node); its
/// [`Event::LookupFinished`] carries the same id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct QueryId(pub u64);

/// Identifies a direct message sent with [`Node::send`](crate::Node::send).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct DirectId(pub u64);

/// Which message an [`Event::Message`] is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MessageRef {
    /// A broadcast, by its gossip id.
    Broadcast(gossip_core::MessageId),
    /// A direct message, by the sender's id for it.
    Direct(DirectId),
}

/// Why a link closed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DisconnectReason {
    /// We evicted it for a closer peer (the peer got alternatives).
    Evicted,
    /// The peer evicted us (see [`Event::Evicted`]).
    EvictedByPeer,
    /// The peer refused the link (it is full; see [`Event::Rejected`]).
    Rejected,
    /// The link did not open and verify within `link_open_timeout`.
    Timeout,
    /// Nothing arrived for `link_idle_timeout`.
    Idle,
    /// The hello failed verification.
    Hello(HelloError),
    /// The driver reported the link closed.
    Closed,
    /// The peer said it leaves the mesh.
    PeerLeft,
    /// We leave the mesh ([`Node::leave`](crate::Node::leave)).
    Leaving,
    /// The peer committed more than `Config::max_offences` offences in a burst (malformed or
    /// unexpected frames, bad signatures, frames over its signature-check budget): it is banned for
    /// `Config::ban_duration`.
    Misbehaved,
}

/// Why a hello failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum HelloError {
    /// The public key does not hash to the peer id the link was opened for.
    WrongKey,
    /// The DTLS fingerprints in the hello are not the ones of this link.
    WrongFingerprint,
    /// The signature does not verify.
    BadSignature,
    /// Another frame, or an undecodable one, came before the hello.
    Missing,
}

/// Why a direct message was not delivered.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DirectFailure {
    /// No acknowledgement after `direct_attempts` attempts.
    NoAck,
    /// The node left the mesh before it was acknowledged.
    Left,
}

/// Something the driver must do, returned by [`Node::poll_output`](crate::Node::poll_output).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Send `bytes` as one message on the data channel of the link to `link`.
    Transmit {
        /// The peer at the far end of the link.
        link: NodeId,
        /// One frame, at most `max_frame_bytes`.
        bytes: Vec<u8>,
    },
    /// Open a link to `peer`. The initiator creates the offer and hands it to
    /// [`Node::send_signal`](crate::Node::send_signal); the other side answers the offer it receives as
    /// [`Event::Signal`].
    Connect {
        /// The peer.
        peer: NodeId,
        /// Whether this side makes the offer (always the lower id).
        initiator: bool,
    },
    /// Close (or stop setting up) the link to `peer`. Transmits queued before it go out first.
    Disconnect {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: DisconnectReason,
    },
    /// Send `payload` to `to` through the signaling server (a `signal` message); the receiving driver
    /// hands it to its node as [`ServerInput::Relayed`].
    Signal {
        /// The addressee.
        to: NodeId,
        /// A mesh frame.
        payload: Vec<u8>,
    },
    /// Something the application may care about.
    Event(Event),
}

/// What a node reports to its application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A link's hello verified: the link is up.
    PeerConnected {
        /// The peer.
        peer: NodeId,
    },
    /// An up link closed.
    PeerDisconnected {
        /// The peer.
        peer: NodeId,
        /// Why.
        reason: DisconnectReason,
    },
    /// A link attempt did not open within `link_open_timeout`.
    PeerTimedOut {
        /// The peer.
        peer: NodeId,
    },
    /// A broadcast (with its topic) or a direct message (`topic: None`) arrived.
    Message {
        /// The origin (its signature verified).
        from: NodeId,
        /// The topic of a broadcast; `None` for a direct message.
        topic: Option<String>,
        /// The application data.
        data: Vec<u8>,
        /// Link traversals from the origin (a hop through the signaling server counts as one).
        hops: u32,
        /// Which message.
        id: MessageRef,
    },
    /// Signaling data (offer, answer, candidate) for the local WebRTC engine, from `from`.
    Signal {
        /// The peer.
        from: NodeId,
        /// Opaque to mesh-core.
        payload: Vec<u8>,
    },
    /// A [`Node::find_node`](crate::Node::find_node) ended.
    LookupFinished {
        /// The id `find_node` returned.
        id: QueryId,
        /// The target.
        target: NodeId,
        /// Up to `lookup_k` peers closest to the target that the answers named, closest first; the
        /// lookup of an existing node succeeded when `peers[0] == target`.
        peers: Vec<NodeId>,
        /// Rounds of probes sent (0 when the target was a link or a link's neighbor). A round is one
        /// wave of up to `lookup_parallelism` probes, each a routed message of several link traversals:
        /// see `hops`.
        rounds: u32,
        /// Link traversals on the lookup's critical path: per round, the probe and the answer that
        /// ended it (the answer naming the target in the last round, the last answer otherwise),
        /// summed over rounds; a server relay counts as one. Rounds that ended with no answer add
        /// nothing. 0 when no probe was needed.
        hops: u32,
        /// Probes sent.
        requests: u32,
    },
    /// [`Node::dht_find_node`](crate::Node::dht_find_node) (kademlia-core's iterative lookup, a
    /// diagnostic) ended: kademlia-core's report.
    Dht(kademlia_core::Event),
    /// A [`Node::put`](crate::Node::put) or [`Node::remove`](crate::Node::remove) ended.
    PutFinished {
        /// The id the command returned.
        id: QueryId,
        /// The record's key ([`kademlia_core::Record::key_for`] of its name).
        key: NodeId,
        /// Nodes that said they store it (the node where the put arrived, and the replicas it named).
        stored: u32,
        /// Nodes asked to store it.
        asked: u32,
        /// Why a node refused it (the last refusal heard), if one did.
        refused: Option<kademlia_core::StoreError>,
    },
    /// A [`Node::get`](crate::Node::get) ended.
    GetFinished {
        /// The id the command returned.
        id: QueryId,
        /// The record's key.
        key: NodeId,
        /// The record, its signature and key checked (a tombstone when its publisher removed it);
        /// `None` when no node answered with it.
        record: Option<kademlia_core::Record>,
        /// Whether any node answered at all (`false`: the request reached nobody before the deadline).
        answered: bool,
        /// Link traversals of the request that found the record, from this node to the node that
        /// answered (0 from the local store); of the last answer when not found.
        hops: u32,
        /// Rounds of requests sent (0 from the local store).
        rounds: u32,
    },
    /// A peer evicted its link to us for a closer one and proposed alternatives (the seed's
    /// `reconnection_data`).
    Evicted {
        /// The peer that evicted us.
        by: NodeId,
        /// Peers it proposes instead.
        alternatives: Vec<NodeId>,
    },
    /// A peer refused our link (the seed's `connection_rejected`) and proposed alternatives.
    Rejected {
        /// The peer.
        by: NodeId,
        /// Peers it proposes instead.
        alternatives: Vec<NodeId>,
    },
    /// A direct message could not be delivered.
    DirectFailed {
        /// The id `send` returned.
        id: DirectId,
        /// The addressee.
        to: NodeId,
        /// Why.
        reason: DirectFailure,
    },
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The data is larger than the node may send.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `max_pending_direct` direct messages await acknowledgement.
    #[error("too many direct messages awaiting acknowledgement")]
    TooManyPending,
    /// A direct message to the node itself.
    #[error("a node cannot send a direct message to itself")]
    SelfAddressed,
    /// gossip-core refused the broadcast.
    #[error("broadcast refused: {0}")]
    Publish(#[from] gossip_core::PublishError),
    /// gossip-core refused the subscription.
    #[error("subscription refused: {0}")]
    Subscribe(#[from] gossip_core::SubscribeError),
    /// A DHT value may not be empty (an empty value is how a removal is written).
    #[error("a DHT value may not be empty")]
    EmptyValue,
    /// `remove` of a name this node does not publish.
    #[error("this node publishes no record under that name")]
    NotPublished,
    /// `max_lookups` lookups and DHT commands are running.
    #[error("too many lookups and DHT commands running")]
    Busy,
}

/// Counters of what a node did and, above all, what it dropped. Read with
/// [`Node::stats`](crate::Node::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Frames received on links (chunks count once each).
    pub frames_received: u64,
    /// Frames handed to the driver (chunks count once each).
    pub frames_sent: u64,
    /// Dropped: a frame that does not decode.
    pub dropped_malformed: u64,
    /// Dropped: larger than `max_message_bytes`, or a reassembly over its bounds.
    pub dropped_oversized: u64,
    /// Dropped: a frame on no link, of a kind not expected in the link's state, or a routed message
    /// whose path does not match its link.
    pub dropped_unexpected: u64,
    /// Dropped: a routed message whose signature or key does not verify.
    pub dropped_bad_signature: u64,
    /// Dropped: a routed message that had nowhere to go and no server fallback.
    pub dropped_no_route: u64,
    /// Dropped: outputs beyond `max_outputs`.
    pub dropped_outputs: u64,
    /// Hellos that failed verification.
    pub hello_failures: u64,
    /// Partial messages dropped from reassembly (timeout or bounds).
    pub reassembly_dropped: u64,
    /// Routed messages forwarded for others.
    pub routed_forwarded: u64,
    /// Routed messages sent back toward a previous node (backtracking).
    pub routed_backtracked: u64,
    /// Routed messages sent through the signaling server.
    pub server_fallbacks: u64,
    /// Routed messages consumed here.
    pub routed_delivered: u64,
    /// Direct messages whose retry was needed.
    pub direct_retries: u64,
    /// Duplicate direct messages (retries) dropped after acknowledging them again.
    pub direct_duplicates: u64,
    /// Dropped: a direct message, link request or offer dated outside the freshness window
    /// (`Config::max_message_age`, `Config::max_clock_skew`), or a link request or offer seen
    /// before (a replay).
    pub dropped_stale: u64,
    /// Direct messages refused unacknowledged because the duplicate memory (`max_seen_direct`) was
    /// full of messages still inside the freshness window (their sender retries).
    pub direct_refused_full: u64,
    /// Direct messages the driver reported its application could not take
    /// ([`Node::confirm_direct`](crate::Node::confirm_direct)): not acknowledged.
    pub direct_refused_by_app: u64,
    /// Dropped: frames from a link's peer beyond its signature-check budget (`link_verify_rate`).
    pub dropped_over_budget: u64,
    /// Dropped: link requests or offers from a banned peer.
    pub dropped_banned: u64,
    /// Peers banned for misbehaving (see [`DisconnectReason::Misbehaved`]).
    pub peers_banned: u64,
    /// Links that became up.
    pub links_up: u64,
    /// Link attempts that failed (timeout, closed before up).
    pub link_failures: u64,
    /// Links we evicted.
    pub evictions: u64,
    /// Link requests or offers we refused.
    pub rejections: u64,
    /// Lookup probes answered here.
    pub probes_answered: u64,
    /// DHT requests (get, put, store) this node answered.
    pub dht_answered: u64,
    /// DHT records this node handed to a closer node when a link to it came up, or to a node that
    /// should have held it (a get's repair).
    pub dht_handed_over: u64,
    /// DHT answers dropped: to no request of ours, or a record whose key or signature is wrong.
    pub dht_dropped_answers: u64,
    /// Signaling messages sent again (lost, or their answer was; see `Config::signal_retry`).
    pub signals_resent: u64,
    /// Duplicate signaling messages received (and not handed to the driver again).
    pub signal_duplicates: u64,
    /// Hellos sent again until the peer's verified.
    pub hellos_resent: u64,
    /// gossip-core sends to a peer whose link was not up (any more) when they came out: not sent
    /// (gossip-core hears of the link going down and resends elsewhere).
    pub gossip_sends_unlinked: u64,
    /// gossip-core's ack timeouts (a payload to a peer never acknowledged), counted on its link.
    pub gossip_ack_timeouts: u64,
    /// gossip-core events of a kind this version does not know (gossip-core's events are
    /// `#[non_exhaustive]`).
    pub gossip_events_unmapped: u64,
    /// Dropped: a routed message larger than `Config::max_signal_bytes` that could only go through
    /// the signaling server (the server would have closed our connection).
    pub dropped_server_oversized: u64,
    /// Dropped: another node's routed message that would have gone through the signaling server past
    /// `Config::server_relay_rate`.
    pub dropped_relay_rate: u64,
    /// Dropped: a routed message whose explicit route does not name this node next, revisits a node,
    /// does not end at its addressee, is longer than its hop budget, or whose path is longer than
    /// `hop_limit` allows.
    pub dropped_bad_route: u64,
    /// Dropped: an answer to one of our lookup probes from a node that is neither the probe's
    /// addressee nor behind the link the probe left on (or for no probe of ours).
    pub dropped_probe_answers: u64,
    /// Candidates (ids a link named: its links, alternatives) asked to prove themselves with a probe
    /// before they may enter the peer book.
    pub candidates_checked: u64,
    /// kademlia-core's counters.
    pub kad: kademlia_core::Stats,
    /// gossip-core's counters.
    pub gossip: gossip_core::Stats,
}

impl fmt::Display for QueryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lookup{}", self.0)
    }
}

impl fmt::Display for DirectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "direct{}", self.0)
    }
}
