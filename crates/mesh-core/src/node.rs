//! The mesh node: links, topology, routing, and the two composed cores.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::ToString;
use alloc::vec::Vec;
use core::time::Duration;

use kademlia_core::{Instant, NodeId};
use p2pmesh_base::Identity;
use rand::RngExt as _;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;

use crate::event::{
    DirectFailure, DirectId, DisconnectReason, Error, Event, HelloError, MessageRef, Output,
    QueryId, ServerInput, Stats,
};
use crate::frame::{
    self, ChunkResult, Frame, Hello, MAX_FOURTH, MAX_ID_LIST, MAX_THIRD, Neighbors, Payload,
    Reassembly, Routed,
};
use crate::peer_book::{Backoff, PeerBook};
use crate::route;
use crate::{Config, SignatureCheck};

/// Room a routed envelope and its payload header take around application data.
const ROUTED_OVERHEAD: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkState {
    /// We asked the (lower-id) peer to initiate; nothing handed to the driver yet.
    Requested,
    /// `Connect` emitted; waiting for the driver's `handle_link_open`.
    Connecting,
    /// The data channel is open and our hello sent; waiting for the peer's hello.
    Open,
    /// The hello verified.
    Up,
}

#[derive(Debug)]
struct Link {
    state: LinkState,
    since: Instant,
    /// Our fingerprint and the peer's, once the channel is open.
    fingerprints: Option<(Vec<u8>, Vec<u8>)>,
    /// A hello that arrived before the driver reported the link open.
    early_hello: Option<Hello>,
    neighbors: Vec<NodeId>,
    /// The peer's links' links.
    second: Vec<NodeId>,
    /// The peer's links' links' links.
    third: Vec<NodeId>,
    /// A sample of the next level (see [`Neighbors::fourth`]).
    fourth: Vec<NodeId>,
    /// What we last told this peer, to send only changes.
    announced: Option<Neighbors>,
    last_rx: Instant,
    last_tx: Instant,
    reassembly: Reassembly,
    next_chunk_msg: u32,
    /// We make the offer (the lower id's side once a link is decided).
    initiator: bool,
    /// Signaling we sent for this attempt (link request, offer, answer, candidates), sealed, kept to be
    /// sent again; at most [`MAX_SENT_SIGNALS`].
    sent: Vec<Routed>,
    /// Ids of the peer's signaling received for this link, to drop duplicates; at most
    /// [`MAX_HEARD_SIGNALS`].
    heard: Vec<u64>,
    /// When our signaling goes out again if the peer has not answered it yet.
    resend_at: Option<Instant>,
    resends: u32,
    /// When we last sent our signaling again in answer to a duplicate of the peer's.
    last_echo: Option<Instant>,
    /// The peer's last signaling came through the server: ours goes back that way.
    via_server: bool,
    /// Our hello, sent again until the peer's verifies (a lost hello would stall the link).
    hello: Option<Hello>,
    hello_at: Option<Instant>,
}

/// Times a link attempt's signaling is sent again before `link_open_timeout` decides.
const SIGNAL_RESENDS: u32 = 3;

/// Signaling messages a link attempt keeps to send again.
const MAX_SENT_SIGNALS: usize = 16;
/// Signaling ids a link remembers from its peer.
const MAX_HEARD_SIGNALS: usize = 16;

impl Link {
    fn new(state: LinkState, now: Instant) -> Self {
        Self {
            state,
            since: now,
            fingerprints: None,
            initiator: false,
            sent: Vec::new(),
            heard: Vec::new(),
            resend_at: None,
            resends: 0,
            last_echo: None,
            via_server: false,
            hello: None,
            hello_at: None,
            early_hello: None,
            neighbors: Vec::new(),
            second: Vec::new(),
            third: Vec::new(),
            fourth: Vec::new(),
            announced: None,
            last_rx: now,
            last_tx: now,
            reassembly: Reassembly::default(),
            next_chunk_msg: 0,
        }
    }

    /// Whether a repeat from the peer may be answered by sending ours again now: at most once per
    /// `every` (a duplicate hello or signaling message each asks for it). Counts the answer as sent.
    fn echo_due(&mut self, now: Instant, every: Duration) -> bool {
        if self.last_echo.is_some_and(|t| now < t + every) {
            return false;
        }
        self.last_echo = Some(now);
        true
    }
}

/// What a link is for, seen from this node (see `Node::role`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Covers close class `i`.
    Close(usize),
    /// A long link, in a bucket above every close class.
    Long,
}

#[derive(Debug)]
struct PendingDirect {
    to: NodeId,
    data: Vec<u8>,
    attempts: u32,
    deadline: Instant,
}

#[derive(Debug)]
struct Lookup {
    target: NodeId,
    round: u32,
    requests: u32,
    deadline: Instant,
    outstanding: BTreeSet<u64>,
    /// Closest ids named by answers, bounded by `lookup_k`.
    found: BTreeSet<(kademlia_core::Distance, NodeId)>,
    /// Ids already probed toward (as `dst`).
    probed: BTreeSet<NodeId>,
    /// Link traversals of the rounds before this one (see [`Event::LookupFinished`]'s `hops`).
    hops: u32,
    /// Link traversals (probe and answer) of the last answer of this round.
    round_hops: u32,
}

/// A p2pmesh node: link selection, framing, the hello handshake, routing over the partial mesh, and the
/// composed [`kademlia_core::Node`] and [`gossip_core::Node`]. See the [crate docs](crate) for the
/// contract and a driver loop.
#[derive(Debug)]
pub struct Node {
    config: Config,
    identity: Identity,
    local: NodeId,
    rng: ChaCha8Rng,
    kad: kademlia_core::Node,
    gossip: gossip_core::Node<Identity, SignatureCheck>,
    links: BTreeMap<NodeId, Link>,
    book: PeerBook,
    backoff: Backoff,
    outputs: VecDeque<Output>,
    stats: Stats,
    joined: bool,
    next_maintenance: Option<Instant>,
    /// Consecutive failed or lost links; delays the next dial (reset by a link coming up).
    failures: u32,
    next_dial: Instant,
    /// Since when the node has had a free slot (`None` while full).
    underfull_since: Option<Instant>,
    /// When our neighbor lists go out (see `Node::announce_neighbors`).
    announce_at: Option<Instant>,
    /// When lists whose third level changed go out anyway.
    neighbors_refresh_at: Option<Instant>,
    next_id: u64,
    pending_direct: BTreeMap<u64, PendingDirect>,
    seen_direct: BTreeSet<(NodeId, u64)>,
    seen_order: VecDeque<(NodeId, u64)>,
    lookups: BTreeMap<u64, Lookup>,
    /// Probe id -> lookup id.
    probes: BTreeMap<u64, u64>,
}

impl Node {
    /// A node whose ed25519 secret key is `secret_key` (its id is SHA-1 of the public key), with all its
    /// randomness drawn from a ChaCha8 generator seeded with `seed`.
    ///
    /// # Panics
    /// If `config` is inconsistent (see the fields of [`Config`]), or the composed cores refuse theirs.
    pub fn new(secret_key: [u8; 32], config: Config, seed: u64) -> Node {
        Node::with_signature_check(secret_key, config, seed, SignatureCheck::default())
    }

    /// [`Node::new`] with broadcast-message signatures checked by `check` (see [`SignatureCheck`]: for
    /// simulators, which may memoize the check across the nodes of one process).
    ///
    /// # Panics
    /// As [`Node::new`].
    pub fn with_signature_check(
        secret_key: [u8; 32],
        config: Config,
        seed: u64,
        check: SignatureCheck,
    ) -> Node {
        config.check();
        let identity = Identity::from_secret_bytes(&secret_key);
        let local = identity.id();
        let kad =
            kademlia_core::Node::new(local, config.kademlia.clone(), seed ^ 0x6b61_645f_6b61_6400);
        let gossip = gossip_core::Node::with_verifier(
            identity.clone(),
            check,
            config.gossip.clone(),
            seed ^ 0x676f_7373_6970_0000,
        );
        Node {
            book: PeerBook::new(local, config.peer_book_bucket),
            identity,
            local,
            rng: ChaCha8Rng::seed_from_u64(seed),
            kad,
            gossip,
            links: BTreeMap::new(),
            backoff: Backoff::default(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            joined: false,
            next_maintenance: None,
            failures: 0,
            next_dial: Instant::ZERO,
            underfull_since: None,
            announce_at: None,
            neighbors_refresh_at: None,
            next_id: 1,
            pending_direct: BTreeMap::new(),
            seen_direct: BTreeSet::new(),
            seen_order: VecDeque::new(),
            lookups: BTreeMap::new(),
            probes: BTreeMap::new(),
            config,
        }
    }

    /// This node's id.
    pub fn local_id(&self) -> NodeId {
        self.local
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The node's public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.identity.public_key()
    }

    /// Peers whose link is up (hello verified), in id order.
    pub fn links(&self) -> Vec<NodeId> {
        self.links
            .iter()
            .filter(|(_, l)| l.state == LinkState::Up)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Peers with a link in any state (being set up or up), in id order.
    pub fn link_attempts(&self) -> Vec<NodeId> {
        self.links.keys().copied().collect()
    }

    /// The last neighbor list `peer` sent (its own links), if it is a link.
    pub fn neighbors_of(&self, peer: &NodeId) -> Option<&[NodeId]> {
        self.links.get(peer).map(|l| l.neighbors.as_slice())
    }

    /// Number of peers in the peer book (candidates for links and lookup answers).
    pub fn known_peers(&self) -> usize {
        self.book.len()
    }

    /// The composed Kademlia node's routing table.
    pub fn routing_table(&self) -> &kademlia_core::RoutingTable {
        self.kad.routing_table()
    }

    /// The composed Kademlia node (records, routing table, stats).
    pub fn kademlia(&self) -> &kademlia_core::Node {
        &self.kad
    }

    /// The composed gossip node.
    pub fn gossip(&self) -> &gossip_core::Node<Identity, SignatureCheck> {
        &self.gossip
    }

    /// The counters, with those of both cores.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        s.kad = *self.kad.stats();
        s.gossip = self.gossip.stats().clone();
        s
    }

    // ------------------------------------------------------------------ commands

    /// Starts: from now on the node keeps its links (it expects `BootstrapPeers` from the server next).
    pub fn join(&mut self, now: Instant) {
        self.joined = true;
        self.next_maintenance = Some(now);
        self.pump(now);
    }

    /// Leaves gracefully: tells every link, closes them, and fails pending direct messages.
    pub fn leave(&mut self, now: Instant) {
        self.joined = false;
        self.next_maintenance = None;
        let peers: Vec<NodeId> = self.links.keys().copied().collect();
        for peer in peers {
            if self
                .links
                .get(&peer)
                .is_some_and(|l| l.state == LinkState::Up)
            {
                self.send_frame(now, peer, &Frame::Bye);
            }
            self.close(now, peer, DisconnectReason::Leaving, false);
        }
        let pending = core::mem::take(&mut self.pending_direct);
        for (id, p) in pending {
            self.emit(Output::Event(Event::DirectFailed {
                id: DirectId(id),
                to: p.to,
                reason: DirectFailure::Left,
            }));
        }
        self.pump(now);
    }

    /// Broadcasts `data` on `topic` to every node of the mesh subscribed to it (not to this node).
    pub fn broadcast(
        &mut self,
        now: Instant,
        topic: &str,
        data: Vec<u8>,
    ) -> Result<gossip_core::MessageId, Error> {
        let id = self.gossip.publish(now, topic, data)?;
        self.pump(now);
        Ok(id)
    }

    /// Subscribes to `topic`: broadcasts on it are delivered as [`Event::Message`].
    pub fn subscribe(&mut self, topic: &str) -> Result<(), Error> {
        self.gossip.subscribe(topic)?;
        Ok(())
    }

    /// Unsubscribes from `topic`.
    pub fn unsubscribe(&mut self, topic: &str) {
        self.gossip.unsubscribe(topic);
    }

    /// Sends `data` to the peer `to`: over its link when there is one, otherwise routed hop by hop over
    /// the mesh (the signaling server as the last resort). Signed by us, verified by the receiver,
    /// acknowledged end to end and retried; [`Event::DirectFailed`] if it never is.
    pub fn send(&mut self, now: Instant, to: NodeId, data: Vec<u8>) -> Result<DirectId, Error> {
        if to == self.local {
            return Err(Error::SelfAddressed);
        }
        let max = self
            .config
            .max_message_bytes
            .saturating_sub(ROUTED_OVERHEAD + usize::from(self.config.hop_limit) * 21 * 2);
        if data.len() > max {
            return Err(Error::TooLarge {
                len: data.len(),
                max,
            });
        }
        if self.pending_direct.len() >= self.config.max_pending_direct {
            return Err(Error::TooManyPending);
        }
        let id = self.fresh_id();
        self.pending_direct.insert(
            id,
            PendingDirect {
                to,
                data: data.clone(),
                attempts: 1,
                deadline: now + self.config.direct_retry_timeout,
            },
        );
        self.originate(now, to, id, None, &Payload::Data(data), 0, false);
        self.pump(now);
        Ok(DirectId(id))
    }

    /// Finds the peers closest to `target`, fast: probes routed greedily over the mesh toward the target,
    /// answered by the first node that knows it (docs/decisions.md §9). Ends with
    /// [`Event::LookupFinished`].
    pub fn find_node(&mut self, now: Instant, target: NodeId) -> QueryId {
        let id = self.fresh_id();
        // Known first hand (a link, or a link's link): no probe needed.
        let direct = target == self.local
            || self
                .links
                .get(&target)
                .is_some_and(|l| l.state == LinkState::Up)
            || self
                .links
                .values()
                .any(|l| l.state == LinkState::Up && l.neighbors.contains(&target));
        if direct || self.lookups.len() >= self.config.max_lookups {
            let peers = if direct {
                self.closest_known(&target, self.config.lookup_k)
            } else {
                Vec::new()
            };
            self.emit(Output::Event(Event::LookupFinished {
                id: QueryId(id),
                target,
                peers,
                rounds: 0,
                requests: 0,
                hops: 0,
            }));
            return QueryId(id);
        }
        self.lookups.insert(
            id,
            Lookup {
                target,
                round: 0,
                requests: 0,
                deadline: now,
                outstanding: BTreeSet::new(),
                found: BTreeSet::new(),
                probed: BTreeSet::new(),
                hops: 0,
                round_hops: 0,
            },
        );
        self.lookup_round(now, id);
        self.pump(now);
        QueryId(id)
    }

    /// Kademlia's own iterative FIND_NODE (RPCs travel over links, routed over the mesh, or through the
    /// server); ends with [`Event::Dht`].
    pub fn dht_find_node(&mut self, now: Instant, target: NodeId) -> kademlia_core::QueryId {
        let id = self.kad.find_node(now, target);
        self.pump(now);
        id
    }

    /// Looks up the record under `key` in the DHT; ends with [`Event::Dht`].
    pub fn get_value(&mut self, now: Instant, key: NodeId) -> kademlia_core::QueryId {
        let id = self.kad.get_value(now, key);
        self.pump(now);
        id
    }

    /// Stores `value` under `key` in the DHT (and republishes it); ends with [`Event::Dht`].
    ///
    /// # Panics
    /// If `value` is larger than the Kademlia config's `max_value_bytes` (as kademlia-core).
    pub fn put_value(
        &mut self,
        now: Instant,
        key: NodeId,
        value: Vec<u8>,
    ) -> kademlia_core::QueryId {
        let id = self.kad.put_value(now, key, value);
        self.pump(now);
        id
    }

    // ------------------------------------------------------------------ inputs

    /// A message from the signaling server.
    pub fn handle_server(&mut self, now: Instant, input: ServerInput) {
        match input {
            ServerInput::BootstrapPeers(peers) => {
                for p in peers.into_iter().take(MAX_ID_LIST) {
                    self.learn(now, p);
                    self.kad.add_contact(now, p);
                }
                self.next_maintenance = self.joined.then_some(now);
            }
            ServerInput::PeerJoined(p) => {
                self.learn(now, p);
                self.kad.add_contact(now, p);
                if self.joined {
                    self.next_maintenance = Some(self.next_maintenance.map_or(now, |t| t.min(now)));
                }
            }
            ServerInput::PeerLeft(p) => {
                // Gone from the server (it left, or the server does not know it: a signal to it
                // bounced). An attempt to link to it cannot finish: it frees its slot now. An up link
                // stays (the mesh may outlive a server connection).
                self.book.remove(&p);
                self.kad.handle_peer_down(now, p);
                if self.links.get(&p).is_some_and(|l| l.state != LinkState::Up) {
                    self.close(now, p, DisconnectReason::PeerLeft, false);
                }
            }
            ServerInput::Relayed { from, payload } => match Frame::decode(&payload) {
                Ok(Frame::Routed(mut r)) if r.dst == self.local && r.path.last() == Some(&from) => {
                    r.path.push(self.local);
                    self.deliver(now, r, None);
                }
                Ok(_) => self.stats.dropped_unexpected += 1,
                Err(_) => self.stats.dropped_malformed += 1,
            },
        }
        self.pump(now);
    }

    /// The data channel to `peer` opened (DTLS done) with these fingerprints: we send our hello.
    pub fn handle_link_open(
        &mut self,
        now: Instant,
        peer: NodeId,
        local_fingerprint: Vec<u8>,
        remote_fingerprint: Vec<u8>,
    ) {
        let Some(link) = self.links.get_mut(&peer) else {
            // A link we do not want (closed meanwhile): close it again.
            self.emit(Output::Disconnect {
                peer,
                reason: DisconnectReason::Closed,
            });
            self.pump(now);
            return;
        };
        if link.state == LinkState::Up || link.state == LinkState::Open {
            self.stats.dropped_unexpected += 1;
            return;
        }
        link.state = LinkState::Open;
        link.last_rx = now;
        let public_key = self.identity.public_key();
        let signature = self.identity.sign(&Hello::signed_bytes(
            &public_key,
            &local_fingerprint,
            &remote_fingerprint,
        ));
        let hello = Hello {
            public_key,
            sender_fingerprint: local_fingerprint.clone(),
            receiver_fingerprint: remote_fingerprint.clone(),
            signature: signature.to_vec(),
        };
        link.fingerprints = Some((local_fingerprint, remote_fingerprint));
        link.hello = Some(hello.clone());
        link.hello_at = Some(now + self.config.signal_retry / 2);
        let early = link.early_hello.take();
        self.send_frame(now, peer, &Frame::Hello(hello));
        if let Some(h) = early {
            self.on_hello(now, peer, h);
        }
        self.pump(now);
    }

    /// Bytes arrived on the link to `peer` (one data-channel message).
    pub fn handle_link_data(&mut self, now: Instant, peer: NodeId, bytes: &[u8]) {
        self.stats.frames_received += 1;
        if bytes.len()
            > self
                .config
                .max_frame_bytes
                .max(self.config.max_message_bytes)
        {
            self.stats.dropped_oversized += 1;
            return;
        }
        let Some(link) = self.links.get_mut(&peer) else {
            self.stats.dropped_unexpected += 1;
            return;
        };
        link.last_rx = now;
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(_) => {
                self.stats.dropped_malformed += 1;
                if link.state != LinkState::Up {
                    self.fail_hello(now, peer, HelloError::Missing);
                    self.pump(now);
                }
                return;
            }
        };
        self.on_frame(now, peer, frame, true);
        self.pump(now);
    }

    /// The link to `peer` closed, or failed to open (reported by the driver).
    pub fn handle_link_closed(&mut self, now: Instant, peer: NodeId) {
        if self.links.contains_key(&peer) {
            self.close(now, peer, DisconnectReason::Closed, true);
        }
        self.pump(now);
    }

    /// The local WebRTC engine produced signaling data (offer, answer, candidate) for `to`: routed over
    /// the mesh, or through the server when the mesh has no route.
    pub fn send_signal(&mut self, now: Instant, to: NodeId, payload: Vec<u8>) {
        let id = self.fresh_id();
        self.send_signaling(now, to, id, Payload::Signal(payload));
        self.pump(now);
    }

    /// Timers: call when [`Node::poll_timeout`] has passed (early calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.kad.handle_timeout(now);
        self.gossip.handle_timeout(now);
        self.link_timers(now);
        self.direct_timers(now);
        self.lookup_timers(now);
        if self.announce_at.is_some_and(|t| t <= now) {
            self.send_neighbors(now);
        }
        if self.neighbors_refresh_at.is_none_or(|t| t <= now) && self.joined {
            // Lists that changed only in their third level go out now (unchanged ones are not sent).
            self.neighbors_refresh_at = Some(now + self.config.neighbors_refresh_interval);
            if self.announce_at.is_none() {
                self.send_neighbors(now);
            }
        }
        if self.next_maintenance.is_some_and(|t| t <= now) {
            self.maintain(now);
            // A node whose slots are all up has little to do: it looks again less often (a lost link
            // or a new introduction brings the next look forward).
            let full = self.links.len() >= self.config.max_peers
                && self.links.values().all(|l| l.state == LinkState::Up);
            let interval = if full {
                self.config.full_maintenance_interval
            } else {
                self.config.maintenance_interval
            };
            let jitter = self.rng.random_range(0..=interval.as_micros() as u64 / 10);
            self.next_maintenance = Some(now + interval + Duration::from_micros(jitter));
        }
        self.pump(now);
    }

    /// The next output for the driver. Drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Node::handle_timeout`] should next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut at = |x: Instant| t = Some(t.map_or(x, |y| y.min(x)));
        if let Some(x) = self.kad.poll_timeout() {
            at(x);
        }
        if let Some(x) = self.gossip.poll_timeout() {
            at(x);
        }
        if let Some(x) = self.next_maintenance {
            at(x);
        }
        if let Some(x) = self.announce_at {
            at(x);
        }
        if self.joined
            && let Some(x) = self.neighbors_refresh_at
        {
            at(x);
        }
        for l in self.links.values() {
            match l.state {
                LinkState::Up => {
                    at(l.last_tx + self.config.keepalive_interval);
                    at(l.last_rx + self.config.link_idle_timeout);
                    if let Some(x) = l.reassembly.next_expiry(&self.config) {
                        at(x);
                    }
                }
                _ => {
                    at(l.since + self.config.link_open_timeout);
                    if let Some(x) = l.resend_at {
                        at(x);
                    }
                    if l.state == LinkState::Open
                        && let Some(x) = l.hello_at
                    {
                        at(x);
                    }
                }
            }
        }
        for p in self.pending_direct.values() {
            at(p.deadline);
        }
        for l in self.lookups.values() {
            at(l.deadline);
        }
        t
    }

    // ------------------------------------------------------------------ frames

    fn on_frame(&mut self, now: Instant, peer: NodeId, frame: Frame, allow_chunk: bool) {
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        if link.state != LinkState::Up {
            match frame {
                Frame::Hello(h) => {
                    if link.state == LinkState::Open {
                        self.on_hello(now, peer, h);
                    } else if link.early_hello.is_none() {
                        link.early_hello = Some(h);
                    } else {
                        self.stats.dropped_unexpected += 1;
                    }
                }
                _ => {
                    // The peer is up and our hello has not reached it yet, or its hello was lost:
                    // nothing is accepted before the hello, but the hellos are sent again until
                    // both verify (or the link times out).
                    self.stats.dropped_unexpected += 1;
                }
            }
            return;
        }
        match frame {
            Frame::Hello(_) => {
                // The peer sends its hello again: it has not verified ours. Ours goes again, at most
                // once per `signal_retry / 2`, and so do our neighbor lists, which it dropped.
                self.stats.dropped_unexpected += 1;
                let half = self.config.signal_retry / 2;
                if let Some(link) = self.links.get_mut(&peer)
                    && let Some(h) = link.hello.clone()
                    && link.echo_due(now, half)
                {
                    link.announced = None;
                    self.stats.hellos_resent += 1;
                    self.send_frame(now, peer, &Frame::Hello(h));
                    self.announce_neighbors(now);
                }
            }
            Frame::Kad(bytes) => self.kad.handle_message(now, peer, &bytes),
            Frame::Gossip(bytes) => self.gossip.handle_message(now, peer, &bytes),
            Frame::Routed(mut r) => {
                if r.path.last() != Some(&peer)
                    || r.path.contains(&self.local) && r.dst == self.local
                {
                    // The sender must have put itself last; a message to us never passes us twice.
                    self.stats.dropped_unexpected += 1;
                    return;
                }
                r.hops_left = r.hops_left.min(self.config.hop_limit);
                r.path.push(self.local);
                self.deliver(now, r, Some(peer));
            }
            Frame::Chunk(c) => {
                if !allow_chunk {
                    self.stats.dropped_unexpected += 1;
                    return;
                }
                match link.reassembly.push(now, c, &self.config) {
                    ChunkResult::Complete(bytes) => match Frame::decode(&bytes) {
                        Ok(f) => self.on_frame(now, peer, f, false),
                        Err(_) => self.stats.dropped_malformed += 1,
                    },
                    ChunkResult::Pending => {}
                    ChunkResult::Invalid => {
                        self.stats.dropped_oversized += 1;
                        self.stats.reassembly_dropped += 1;
                    }
                }
            }
            Frame::Neighbors(n) => {
                let local = self.local;
                // Neither end of this link is a hop beyond it.
                let beyond = |mut ids: Vec<NodeId>| {
                    ids.retain(|p| *p != peer && *p != local);
                    ids
                };
                let links = beyond(n.links);
                let second = beyond(n.second);
                let third = beyond(n.third);
                let fourth = beyond(n.fourth);
                for p in &links {
                    self.learn(now, *p);
                }
                let mut changed = false;
                if let Some(link) = self.links.get_mut(&peer) {
                    changed = link.neighbors != links;
                    link.neighbors = links;
                    link.second = second;
                    link.third = third;
                    link.fourth = fourth;
                }
                if changed {
                    // The second level of our own lists changed: told soon. A change of the third
                    // level only (the peer's second) waits for the next announcement or refresh: it
                    // would otherwise travel three hops on every change, and routing tolerates a
                    // slightly stale fourth hop.
                    self.announce_neighbors(now);
                }
            }
            Frame::Ping(n) => self.send_frame(now, peer, &Frame::Pong(n)),
            Frame::Pong(_) => {}
            Frame::Evict(alternatives) => {
                for p in &alternatives {
                    self.learn(now, *p);
                }
                self.emit(Output::Event(Event::Evicted {
                    by: peer,
                    alternatives,
                }));
                let until = now + self.config.reconnect_backoff_max / 2;
                self.backoff
                    .block(peer, until, self.config.max_backoff_entries);
                self.close(now, peer, DisconnectReason::EvictedByPeer, false);
            }
            Frame::Bye => {
                self.book.remove(&peer);
                self.close(now, peer, DisconnectReason::PeerLeft, false);
                self.kad.handle_peer_down(now, peer);
            }
        }
    }

    fn on_hello(&mut self, now: Instant, peer: NodeId, hello: Hello) {
        let Some(link) = self.links.get(&peer) else {
            return;
        };
        let Some((local_fp, remote_fp)) = &link.fingerprints else {
            return;
        };
        if NodeId::from_public_key(&hello.public_key) != peer {
            return self.fail_hello(now, peer, HelloError::WrongKey);
        }
        if hello.sender_fingerprint != *remote_fp || hello.receiver_fingerprint != *local_fp {
            return self.fail_hello(now, peer, HelloError::WrongFingerprint);
        }
        let signed = Hello::signed_bytes(
            &hello.public_key,
            &hello.sender_fingerprint,
            &hello.receiver_fingerprint,
        );
        if !verify(&hello.public_key, &signed, &hello.signature) {
            return self.fail_hello(now, peer, HelloError::BadSignature);
        }
        self.link_up(now, peer);
    }

    fn fail_hello(&mut self, now: Instant, peer: NodeId, error: HelloError) {
        self.stats.hello_failures += 1;
        let until = now + self.config.reconnect_backoff_max;
        self.backoff
            .block(peer, until, self.config.max_backoff_entries);
        self.close(now, peer, DisconnectReason::Hello(error), false);
    }

    fn link_up(&mut self, now: Instant, peer: NodeId) {
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        link.state = LinkState::Up;
        link.last_rx = now;
        self.stats.links_up += 1;
        self.failures = 0;
        self.next_dial = now;
        self.backoff.reset(&peer);
        self.learn(now, peer);
        self.emit(Output::Event(Event::PeerConnected { peer }));
        self.kad.handle_peer_up(now, peer);
        self.gossip.handle_peer_up(now, peer);
        self.enforce_capacity(now);
        if self
            .links
            .get(&peer)
            .is_some_and(|l| l.state == LinkState::Up)
        {
            self.announce_neighbors(now);
        }
        // No Kademlia bootstrap lookup: the server's introductions (the joiner's K XOR-closest, which
        // it also tells about the joiner) and the links already fill the routing table, and a lookup
        // of our own id would cost some 40 routed requests and answers per joining node.
    }

    /// Tells the links our neighbor lists after `announce_delay`: a node's links and their links often
    /// change several times in a row (a mesh forming, a link replaced), and each link needs only the
    /// last lists.
    fn announce_neighbors(&mut self, now: Instant) {
        if self.announce_at.is_none() {
            self.announce_at = Some(now + self.config.announce_delay);
        }
    }

    /// Tells every up link our up links, their links, theirs and a sample of the level after (its
    /// routing then sees four hops through us, and a fifth in part), when that changed since we last
    /// told it.
    fn send_neighbors(&mut self, now: Instant) {
        self.announce_at = None;
        let ups = self.links();
        for p in &ups {
            let links: Vec<NodeId> = ups
                .iter()
                .filter(|q| *q != p)
                .copied()
                .take(MAX_ID_LIST)
                .collect();
            // Sorted vectors rather than sets: this runs for every link on every change.
            let mut second: Vec<NodeId> = Vec::new();
            let mut third: Vec<NodeId> = Vec::new();
            let mut fourth: Vec<NodeId> = Vec::new();
            for q in &links {
                if let Some(l) = self.links.get(q) {
                    second.extend_from_slice(&l.neighbors);
                    third.extend_from_slice(&l.second);
                    fourth.extend_from_slice(&l.third);
                }
            }
            let mut above: Vec<NodeId> = links.clone();
            above.push(*p);
            above.push(self.local);
            above.sort_unstable();
            second.sort_unstable();
            second.dedup();
            second.retain(|x| above.binary_search(x).is_err());
            third.sort_unstable();
            third.dedup();
            third.retain(|x| above.binary_search(x).is_err() && second.binary_search(x).is_err());
            // The lowest id of each first byte that no level above holds: a sample spread over the id
            // space, which is what greedy routing needs from far away. One pass over the sorted list;
            // the exclusion is checked only until a byte has its id.
            fourth.sort_unstable();
            let mut last_byte = None;
            fourth.retain(|x| {
                let byte = x.as_bytes()[0];
                if last_byte == Some(byte) {
                    return false;
                }
                let keep = above.binary_search(x).is_err()
                    && second.binary_search(x).is_err()
                    && third.binary_search(x).is_err();
                if keep {
                    last_byte = Some(byte);
                }
                keep
            });
            fourth.truncate(MAX_FOURTH);
            second.truncate(MAX_ID_LIST);
            third.truncate(MAX_THIRD);
            let announcement = Neighbors {
                links,
                second,
                third,
                fourth,
            };
            let Some(link) = self.links.get_mut(p) else {
                continue;
            };
            if link.announced.as_ref() == Some(&announcement) {
                continue;
            }
            link.announced = Some(announcement.clone());
            self.send_frame(now, *p, &Frame::Neighbors(announcement));
        }
    }

    /// Removes the link to `peer` and tells everyone who needs to know. `by_driver`: the driver reported
    /// it closed (no `Disconnect` output then).
    fn close(&mut self, now: Instant, peer: NodeId, reason: DisconnectReason, by_driver: bool) {
        let Some(link) = self.links.remove(&peer) else {
            return;
        };
        let was_up = link.state == LinkState::Up;
        if self.joined {
            let soon = now + self.config.maintenance_interval;
            self.next_maintenance = Some(self.next_maintenance.map_or(soon, |t| t.min(soon)));
        }
        if !by_driver && link.state != LinkState::Requested {
            self.emit(Output::Disconnect { peer, reason });
        }
        let failure = matches!(
            reason,
            DisconnectReason::Timeout | DisconnectReason::Idle | DisconnectReason::Closed
        );
        if failure {
            self.failures = self.failures.saturating_add(1);
            let delay = self.backoff_delay(self.failures);
            self.next_dial = now + delay;
            let peer_delay = self.backoff_delay(self.backoff.failures(&peer).saturating_add(1));
            self.backoff
                .block(peer, now + peer_delay, self.config.max_backoff_entries);
            if !was_up {
                self.stats.link_failures += 1;
            }
        }
        if reason == DisconnectReason::Idle {
            // An up link fell silent: probably gone, stop proposing it. A failed attempt only backs
            // the peer off: across a partition, or after a lost signal, it is still the peer to
            // link to once it can be reached (a node that forgot every peer would be stuck).
            self.book.remove(&peer);
        }
        if was_up {
            self.emit(Output::Event(Event::PeerDisconnected { peer, reason }));
            self.gossip.handle_peer_down(now, peer);
            if reason == DisconnectReason::Idle {
                self.kad.handle_peer_down(now, peer);
            }
            self.announce_neighbors(now);
        }
    }

    fn backoff_delay(&mut self, failures: u32) -> Duration {
        let base = self.config.reconnect_backoff.as_micros() as u64;
        let max = self.config.reconnect_backoff_max.as_micros() as u64;
        let exp = base
            .saturating_mul(1u64 << failures.saturating_sub(1).min(20))
            .min(max);
        let jittered = exp / 2 + self.rng.random_range(0..=exp);
        Duration::from_micros(jittered)
    }

    // ------------------------------------------------------------------ topology

    /// Number of links kept for closeness: the rest go to random peers.
    fn close_target(&self) -> usize {
        self.config.max_peers - self.config.random_links
    }

    /// What a link to `peer` is for, seen from us, given `lowest`, the bucket of the closest peer we
    /// know: close class `i` covers the buckets `lowest + i * close_spacing ..` up to the next class;
    /// every bucket above the close classes is long.
    fn role(&self, lowest: usize, peer: &NodeId) -> Role {
        let bucket = self.local.bucket_index(peer).unwrap_or(0);
        let class = bucket.saturating_sub(lowest) / self.config.close_spacing;
        if class < self.close_target() {
            Role::Close(class)
        } else {
            Role::Long
        }
    }

    /// The first bucket of the long range (above every close class).
    fn long_from(&self, lowest: usize) -> usize {
        lowest + self.config.close_spacing * self.close_target()
    }

    /// Our links (in any state, or only up ones) grouped by role: one list per close class, then the
    /// long links. `None` before we know any peer.
    fn coverage(&self, up_only: bool) -> Option<(Vec<Vec<NodeId>>, Vec<NodeId>)> {
        let lowest = self.book.lowest_bucket()?;
        let mut close = alloc::vec![Vec::new(); self.close_target()];
        let mut long = Vec::new();
        for (p, l) in &self.links {
            if up_only && l.state != LinkState::Up {
                continue;
            }
            match self.role(lowest, p) {
                Role::Close(i) => close[i].push(*p),
                Role::Long => long.push(*p),
            }
        }
        Some((close, long))
    }

    /// Up links beyond `max_peers` are evicted, one surplus link at a time: the farthest link of a close
    /// class that has more than one, else the shortest of the long links beyond `random_links`. Every
    /// role (close class, long) keeps its links, so a newcomer that filled a gap or came closer than a
    /// class's link displaces only what is now redundant.
    fn enforce_capacity(&mut self, now: Instant) {
        loop {
            if self.links().len() <= self.config.max_peers {
                return;
            }
            let Some((close, long)) = self.coverage(true) else {
                return;
            };
            let local = self.local;
            let victim = close
                .iter()
                .filter(|class| class.len() > 1)
                .filter_map(|class| class.iter().max_by_key(|p| p.distance(&local)))
                .max_by_key(|p| p.distance(&local))
                .copied()
                .or_else(|| {
                    (long.len() > self.config.random_links)
                        .then(|| long.iter().min_by_key(|p| p.distance(&local)).copied())
                        .flatten()
                });
            let Some(victim) = victim else {
                return;
            };
            self.evict(now, victim);
        }
    }

    fn evict(&mut self, now: Instant, peer: NodeId) {
        let alternatives = self.alternatives_for(&peer);
        self.send_frame(now, peer, &Frame::Evict(alternatives));
        self.stats.evictions += 1;
        self.close(now, peer, DisconnectReason::Evicted, false);
    }

    /// Up to `alternatives` peers to propose to `peer` instead of us: our links and their links closest to
    /// it, those with free slots first (a neighbor list shorter than `max_peers` means a free slot).
    fn alternatives_for(&self, peer: &NodeId) -> Vec<NodeId> {
        let mut c: Vec<(bool, kademlia_core::Distance, NodeId)> = Vec::new();
        for (p, l) in &self.links {
            if l.state != LinkState::Up || p == peer {
                continue;
            }
            c.push((
                l.neighbors.len() + 1 >= self.config.max_peers,
                p.distance(peer),
                *p,
            ));
            for n in &l.neighbors {
                if n != peer && *n != self.local {
                    c.push((true, n.distance(peer), *n));
                }
            }
        }
        c.sort();
        c.dedup_by_key(|e| e.2);
        c.into_iter()
            .map(|e| e.2)
            .take(self.config.alternatives)
            .collect()
    }

    /// Whether we accept a link from `peer` (its offer or its link request): while a slot is free; when
    /// full, if it covers a role we lack (a close class with no link, or a long link short of
    /// `random_links`), or is closer than our link of its close class (the spec's "a closer peer
    /// offers": the displaced link is evicted with alternatives). Long links are never displaced.
    fn admits(&self, peer: &NodeId) -> bool {
        if !self.joined {
            return false;
        }
        if self.links.len() < self.config.max_peers {
            return true;
        }
        let Some(lowest) = self.book.lowest_bucket() else {
            return true;
        };
        let Some((close, long)) = self.coverage(false) else {
            return true;
        };
        // The peer may be closer than anything we knew: its role is then class 0 of the new lowest.
        let lowest = self
            .local
            .bucket_index(peer)
            .map_or(lowest, |b| b.min(lowest));
        match self.role(lowest, peer) {
            Role::Close(i) => {
                let class = close.get(i).map_or(&[][..], Vec::as_slice);
                class.is_empty()
                    || class
                        .iter()
                        .all(|p| peer.distance(&self.local) < p.distance(&self.local))
            }
            Role::Long => long.len() < self.config.random_links,
        }
    }

    /// Refuses `peer`'s link request or offer, with alternatives; through the server when that is how
    /// the request came (the peer likely has no link yet, so no mesh route reaches it).
    fn reject(&mut self, now: Instant, peer: NodeId, via_server: bool) {
        self.stats.rejections += 1;
        let alternatives = self.alternatives_for(&peer);
        let id = self.fresh_id();
        self.originate(
            now,
            peer,
            id,
            None,
            &Payload::Rejected(alternatives),
            0,
            via_server,
        );
    }

    /// Fills the roles we lack: each close class with the closest known peer in its buckets, the long
    /// links with peers drawn bucket-uniformly from the buckets above (Kleinberg's harmonic distance
    /// distribution). While slots are free, as many dials as free slots; when full, one attempt at a
    /// time, toward a missing role or a peer closer than our closest link (class 0): when it comes up,
    /// the link it makes redundant is evicted.
    fn maintain(&mut self, now: Instant) {
        // The dial backoff paces a node that keeps failing; a node with no link at all dials on
        // (one attempt per peer per its own backoff), or it could sit alone for a minute.
        let isolated = !self.links.values().any(|l| l.state == LinkState::Up);
        if !self.joined || now < self.next_dial && !isolated {
            return;
        }
        let Some(lowest) = self.book.lowest_bucket() else {
            return;
        };
        let Some((close, long)) = self.coverage(false) else {
            return;
        };
        let pending = self
            .links
            .values()
            .filter(|l| l.state != LinkState::Up)
            .count();
        // The last free slot is left to incoming links for `link_fill_delay` before we dial to fill
        // it: while a mesh forms (or re-forms), a node full of its own choices refuses most newcomers,
        // and every refusal is a routed request and a routed answer.
        if self.links.len() >= self.config.max_peers {
            self.underfull_since = None;
        } else if self.underfull_since.is_none() {
            self.underfull_since = Some(now);
        }
        let reserve = usize::from(
            self.underfull_since
                .is_some_and(|t| now.saturating_duration_since(t) < self.config.link_fill_delay),
        );
        let free = self
            .config
            .max_peers
            .saturating_sub(self.links.len() + reserve);
        let spacing = self.config.close_spacing;
        let mut wanted: Vec<NodeId> = Vec::new();
        for (i, class) in close.iter().enumerate() {
            if !class.is_empty() {
                continue;
            }
            let range = lowest + i * spacing..lowest + (i + 1) * spacing;
            let pick = self.book.closest_in(range, |p| {
                self.links.contains_key(p) || !self.backoff.allows(p, now)
            });
            if let Some(p) = pick {
                wanted.push(p);
            }
        }
        let long_from = self.long_from(lowest);
        let mut want_long = self.config.random_links.saturating_sub(long.len());
        if free > 0 {
            // Free slots that no close class can fill go to long links too.
            want_long = want_long.max(free.saturating_sub(wanted.len()));
        }
        for _ in 0..want_long {
            let pick = self.book.random(&mut self.rng, long_from, |p| {
                self.links.contains_key(p) || !self.backoff.allows(p, now) || wanted.contains(p)
            });
            if let Some(p) = pick {
                wanted.push(p);
            }
        }
        // Slots still free and no role left to fill (a small mesh has no long range, or its classes
        // are taken): any peer we know will do, rather than a slot left empty.
        while wanted.len() < free {
            let pick = self.book.random(&mut self.rng, 0, |p| {
                self.links.contains_key(p) || !self.backoff.allows(p, now) || wanted.contains(p)
            });
            match pick {
                Some(p) => wanted.push(p),
                None => break,
            }
        }
        if free > 0 {
            for p in wanted.into_iter().take(free) {
                self.dial(now, p);
            }
            return;
        }
        if pending > 0 {
            return;
        }
        // Full: one attempt toward a peer closer than our closest link. A missing role of a full node
        // stays missing: the peers that would fill it are full too, and asking them one after another
        // costs a routed request and a refusal each.
        let upgrade = {
            let local = self.local;
            let nearest_link = close
                .first()
                .and_then(|c| c.iter().map(|p| p.distance(&local)).min());
            self.book
                .closest_in(lowest..lowest + spacing, |p| {
                    self.links.contains_key(p) || !self.backoff.allows(p, now)
                })
                .filter(|p| nearest_link.is_none_or(|d| p.distance(&local) < d))
        };
        if let Some(p) = upgrade {
            self.dial(now, p);
        }
    }

    fn dial(&mut self, now: Instant, peer: NodeId) {
        if peer == self.local || self.links.contains_key(&peer) {
            return;
        }
        if self.local < peer {
            let mut link = Link::new(LinkState::Connecting, now);
            link.initiator = true;
            self.links.insert(peer, link);
            self.emit(Output::Connect {
                peer,
                initiator: true,
            });
        } else {
            self.links
                .insert(peer, Link::new(LinkState::Requested, now));
            let id = self.fresh_id();
            self.send_signaling(now, peer, id, Payload::LinkRequest);
        }
    }

    /// Sends signaling for the link attempt to `peer` (a link request, or the driver's offer, answer
    /// or candidate) and keeps it, so that it goes out again when nothing comes back: routed messages
    /// are lost with the frames that carry them, and a lost one would stall the attempt until
    /// `link_open_timeout`. The side that asks (the requester, the offerer) sends again after
    /// `signal_retry` while it has heard nothing from the peer; the other side answers a duplicate
    /// by sending its own again.
    fn send_signaling(&mut self, now: Instant, peer: NodeId, id: u64, payload: Payload) {
        // The peer's signaling came through the server: it likely has no link yet, and a mesh route
        // would search for it in vain before falling back to the server anyway.
        let via_server = self.links.get(&peer).is_some_and(|l| l.via_server);
        let Some(envelope) = self.envelope(peer, id, None, &payload) else {
            return;
        };
        self.send_routed(now, envelope.clone(), 0, via_server);
        let retry = self.config.signal_retry;
        if let Some(link) = self.links.get_mut(&peer)
            && link.state != LinkState::Up
            && link.sent.len() < MAX_SENT_SIGNALS
        {
            // Kept signed: sending it again costs no signature.
            link.sent.push(envelope);
            let asks =
                link.state == LinkState::Requested || link.initiator && link.heard.is_empty();
            if asks && link.resend_at.is_none() {
                link.resend_at = Some(now + retry);
            }
        }
    }

    /// Sends again every signaling message kept for the attempt to `peer`, through another first hop
    /// each time.
    fn resend_signaling(&mut self, now: Instant, peer: NodeId, attempt: usize) {
        let Some(link) = self.links.get(&peer) else {
            return;
        };
        let sent = link.sent.clone();
        let via_server = link.via_server;
        for envelope in sent {
            self.stats.signals_resent += 1;
            self.send_routed(now, envelope, attempt, via_server);
        }
    }

    /// Signaling `id` from `from` arrived: whether it is new (to be acted on). A duplicate means the
    /// peer has not heard our side: ours goes out again (at most once per `signal_retry / 2`).
    fn heard_signaling(&mut self, now: Instant, from: NodeId, id: u64, via_server: bool) -> bool {
        let half = self.config.signal_retry / 2;
        let Some(link) = self.links.get_mut(&from) else {
            return true;
        };
        link.via_server = via_server;
        if link.heard.contains(&id) {
            self.stats.signal_duplicates += 1;
            let echo =
                link.state != LinkState::Up && !link.sent.is_empty() && link.echo_due(now, half);
            if echo {
                self.resend_signaling(now, from, 1);
            }
            return false;
        }
        if link.heard.len() >= MAX_HEARD_SIGNALS {
            link.heard.remove(0);
        }
        link.heard.push(id);
        link.resend_at = None;
        true
    }

    // ------------------------------------------------------------------ routing

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Sends a routed message from us, signed unless it may go out unsigned (see [`Node::seal`]).
    /// `attempt` picks the first hop among the ranked links (0 = best); `via_server` sends it through
    /// the signaling server at once.
    #[allow(clippy::too_many_arguments)]
    fn originate(
        &mut self,
        now: Instant,
        dst: NodeId,
        id: u64,
        lookup: Option<NodeId>,
        payload: &Payload,
        attempt: usize,
        via_server: bool,
    ) {
        if let Some(r) = self.envelope(dst, id, lookup, payload) {
            self.send_routed(now, r, attempt, via_server);
        }
    }

    /// A routed envelope from us, signed unless it may go out unsigned (see [`Node::seal`]).
    fn envelope(
        &self,
        dst: NodeId,
        id: u64,
        lookup: Option<NodeId>,
        payload: &Payload,
    ) -> Option<Routed> {
        let body = postcard::to_allocvec(payload).ok()?;
        let mut r = Routed {
            src: self.local,
            dst,
            id,
            lookup,
            hops_left: self.config.hop_limit,
            path: alloc::vec![self.local],
            route: Vec::new(),
            key: self.identity.public_key(),
            signature: Vec::new(),
            body,
        };
        if !may_go_unsigned(payload) {
            self.seal(&mut r);
        }
        Some(r)
    }

    /// Sends a reply retracing the simple path of `request` backwards.
    fn reply(
        &mut self,
        now: Instant,
        request: &Routed,
        id: u64,
        payload: &Payload,
        via_server: bool,
    ) {
        let Ok(body) = postcard::to_allocvec(payload) else {
            return;
        };
        let dst = request.src;
        let mut back = route::simple_path(&request.path);
        back.reverse();
        // back[0] is us.
        let route_rest: Vec<NodeId> = back.into_iter().skip(1).collect();
        let mut r = Routed {
            src: self.local,
            dst,
            id,
            lookup: None,
            hops_left: self.config.hop_limit,
            path: alloc::vec![self.local],
            route: route_rest,
            key: self.identity.public_key(),
            signature: Vec::new(),
            body,
        };
        if !may_go_unsigned(payload) {
            self.seal(&mut r);
        }
        self.send_routed(now, r, 0, via_server);
    }

    /// Signs our own routed message `r` if it is still unsigned.
    ///
    /// A `Data` or `Ack` envelope stays unsigned only while it may leave unsigned: from us, straight
    /// over the verified link to its destination (whose hello bound the key to both DTLS
    /// fingerprints, so the link itself authenticates us). [`Node::send_routed`] and
    /// [`Node::via_server`] call this for every other first hop (another link, the server), so an
    /// unsigned envelope is never forwarded; the receiver enforces the same rule in
    /// [`Node::deliver`].
    fn seal(&self, r: &mut Routed) {
        if r.src == self.local && r.signature.is_empty() {
            r.signature = self
                .identity
                .sign(&Routed::signed_bytes(
                    &r.src,
                    &r.dst,
                    r.id,
                    r.lookup.as_ref(),
                    &r.body,
                ))
                .to_vec();
        }
    }

    fn up_views(&self) -> Vec<route::LinkView<'_>> {
        self.links
            .iter()
            .filter(|(_, l)| l.state == LinkState::Up)
            .map(|(p, l)| route::LinkView {
                peer: *p,
                links: &l.neighbors,
                second: &l.second,
                third: &l.third,
                fourth: &l.fourth,
            })
            .collect()
    }

    /// Forwards `r` (already carrying us last in its path) one hop, or falls back.
    fn send_routed(&mut self, now: Instant, mut r: Routed, attempt: usize, via_server: bool) {
        if via_server {
            return self.via_server(r);
        }
        let next = if r.hops_left == 0 {
            None
        } else {
            // An explicit route first, while it runs over our links.
            while r.route.first() == Some(&self.local) {
                r.route.remove(0);
            }
            let explicit = r
                .route
                .first()
                .copied()
                .filter(|p| self.links.get(p).is_some_and(|l| l.state == LinkState::Up));
            if let Some(p) = explicit {
                r.route.remove(0);
                Some(p)
            } else {
                r.route.clear();
                let views = self.up_views();
                if attempt > 0 && r.path.len() == 1 && !views.iter().any(|v| v.peer == r.dst) {
                    let ranked = route::ranked(&self.local, &r.dst, &views, &r.path);
                    ranked.get(attempt % ranked.len().max(1)).copied()
                } else {
                    match route::next_hop(&self.local, &r.dst, &views, &r.path) {
                        Some(p) => Some(p),
                        None => {
                            let back = route::parent(&self.local, &r.path)
                                .filter(|p| views.iter().any(|v| v.peer == *p));
                            if back.is_some() {
                                self.stats.routed_backtracked += 1;
                            }
                            back
                        }
                    }
                }
            }
        };
        match next {
            Some(p) => {
                r.hops_left -= 1;
                let direct = p == r.dst && r.path.len() == 1;
                if !direct {
                    self.seal(&mut r);
                }
                if r.src != self.local {
                    self.stats.routed_forwarded += 1;
                }
                self.send_frame(now, p, &Frame::Routed(r));
            }
            None => {
                // Dead end. A lookup probe is answered with what this node knows; anything else goes
                // through the server if allowed.
                if let Some(target) = r.lookup
                    && r.src != self.local
                {
                    return self.answer_probe(now, &r, target, false);
                }
                self.via_server(r);
            }
        }
    }

    fn via_server(&mut self, mut r: Routed) {
        if !self.config.server_fallback || r.dst == self.local {
            self.stats.dropped_no_route += 1;
            return;
        }
        // Through the server: always signed.
        self.seal(&mut r);
        self.stats.server_fallbacks += 1;
        let to = r.dst;
        let payload = Frame::Routed(r).encode();
        self.emit(Output::Signal { to, payload });
    }

    /// A routed message reached us (its path ends with us), over the verified link to `link` or,
    /// when `None`, through the server.
    fn deliver(&mut self, now: Instant, r: Routed, link: Option<NodeId>) {
        let via_server = link.is_none();
        for p in r.path.iter().rev().take(4) {
            if *p != self.local {
                self.learn(now, *p);
            }
        }
        if r.dst != self.local {
            if let Some(target) = r.lookup
                && self.knows(&target)
            {
                return self.answer_probe(now, &r, target, false);
            }
            return self.send_routed(now, r, 0, false);
        }
        // Ours: check the signature once, here. An unsigned envelope is accepted only straight from
        // its origin over the verified link to it (the link authenticates the origin): src is the
        // link's peer, the path is exactly [src, us] (no forwarding), not through the server, and only
        // for a `Data` or `Ack`. Anything else unsigned fails as a bad signature.
        let unsigned_ok = r.signature.is_empty()
            && link.is_some_and(|peer| {
                peer == r.src
                    && self
                        .links
                        .get(&peer)
                        .is_some_and(|l| l.state == LinkState::Up)
            })
            && r.path.as_slice() == [r.src, self.local];
        if NodeId::from_public_key(&r.key) != r.src
            || !(unsigned_ok
                || verify(
                    &r.key,
                    &Routed::signed_bytes(&r.src, &r.dst, r.id, r.lookup.as_ref(), &r.body),
                    &r.signature,
                ))
        {
            self.stats.dropped_bad_signature += 1;
            return;
        }
        let payload: Payload = match postcard::from_bytes(&r.body) {
            Ok(p) => p,
            Err(_) => {
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        if r.signature.is_empty() && !may_go_unsigned(&payload) {
            self.stats.dropped_bad_signature += 1;
            return;
        }
        self.stats.routed_delivered += 1;
        let hops = r.hops() + u32::from(via_server);
        match payload {
            Payload::Data(data) => {
                self.reply(now, &r, r.id, &Payload::Ack, via_server);
                if self.seen_direct.contains(&(r.src, r.id)) {
                    self.stats.direct_duplicates += 1;
                    return;
                }
                self.remember_direct(r.src, r.id);
                self.emit(Output::Event(Event::Message {
                    from: r.src,
                    topic: None,
                    data,
                    hops,
                    id: MessageRef::Direct(DirectId(r.id)),
                }));
            }
            Payload::Ack => {
                if self
                    .pending_direct
                    .get(&r.id)
                    .is_some_and(|p| p.to == r.src)
                {
                    self.pending_direct.remove(&r.id);
                }
            }
            Payload::Kad(bytes) => self.kad.handle_message(now, r.src, &bytes),
            Payload::Signal(bytes) => {
                if self.heard_signaling(now, r.src, r.id, via_server) {
                    self.on_signal(now, r.src, r.id, bytes, via_server);
                }
            }
            Payload::LinkRequest => {
                if self.heard_signaling(now, r.src, r.id, via_server) {
                    self.on_link_request(now, r.src, r.id, via_server);
                }
            }
            Payload::Rejected(alternatives) => self.on_rejected(now, r.src, alternatives),
            Payload::FindNode => {
                let target = r.lookup.unwrap_or(r.dst);
                self.answer_probe(now, &r, target, via_server);
            }
            Payload::Nodes { probe_hops, nodes } => {
                self.on_nodes(now, r.id, r.src, nodes, probe_hops.saturating_add(hops));
            }
        }
    }

    fn remember_direct(&mut self, src: NodeId, id: u64) {
        self.seen_direct.insert((src, id));
        self.seen_order.push_back((src, id));
        while self.seen_order.len() > self.config.max_seen_direct {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen_direct.remove(&old);
            }
        }
    }

    // ------------------------------------------------------------------ signaling

    fn on_signal(
        &mut self,
        now: Instant,
        from: NodeId,
        id: u64,
        payload: Vec<u8>,
        via_server: bool,
    ) {
        match self.links.get_mut(&from).map(|l| l.state) {
            Some(LinkState::Requested) => {
                // The lower id accepted our request and sends its offer.
                if let Some(l) = self.links.get_mut(&from) {
                    l.state = LinkState::Connecting;
                }
                self.emit(Output::Connect {
                    peer: from,
                    initiator: false,
                });
                self.emit(Output::Event(Event::Signal { from, payload }));
            }
            Some(_) => self.emit(Output::Event(Event::Signal { from, payload })),
            None => {
                if from < self.local {
                    // An offer from the lower id.
                    if self.admits(&from) {
                        let mut link = Link::new(LinkState::Connecting, now);
                        link.heard.push(id);
                        link.via_server = via_server;
                        self.links.insert(from, link);
                        self.emit(Output::Connect {
                            peer: from,
                            initiator: false,
                        });
                        self.emit(Output::Event(Event::Signal { from, payload }));
                    } else {
                        self.reject(now, from, via_server);
                    }
                } else {
                    // A higher id may not offer (no glare), and late signals of a closed link land here.
                    self.stats.dropped_unexpected += 1;
                }
            }
        }
    }

    fn on_link_request(&mut self, now: Instant, from: NodeId, id: u64, via_server: bool) {
        if from < self.local {
            self.stats.dropped_unexpected += 1;
            return;
        }
        if self.links.contains_key(&from) {
            return;
        }
        if self.admits(&from) {
            let mut link = Link::new(LinkState::Connecting, now);
            link.initiator = true;
            link.heard.push(id);
            link.via_server = via_server;
            self.links.insert(from, link);
            self.emit(Output::Connect {
                peer: from,
                initiator: true,
            });
        } else {
            self.reject(now, from, via_server);
        }
    }

    fn on_rejected(&mut self, now: Instant, from: NodeId, alternatives: Vec<NodeId>) {
        let Some(link) = self.links.get(&from) else {
            return;
        };
        if link.state == LinkState::Up {
            return;
        }
        let alternatives: Vec<NodeId> = alternatives
            .into_iter()
            .take(self.config.alternatives)
            .filter(|p| *p != self.local)
            .collect();
        for p in &alternatives {
            self.learn(now, *p);
        }
        // Each refusal from the same peer blocks it twice as long (30 s, 60 s, ... up to 8 min): a
        // full peer that keeps refusing is asked less and less often.
        let refusals = self.backoff.failures(&from).min(4);
        self.backoff.block(
            from,
            now + (self.config.reconnect_backoff_max / 2) * (1 << refusals),
            self.config.max_backoff_entries,
        );
        self.close(now, from, DisconnectReason::Rejected, false);
        // A refusal blocks the refusing peer. It paces the node's dialling only when the node is
        // well linked (at most one slot to fill): a node short of links must go on to the
        // alternatives at once (a restarted node used to wait out a growing backoff while every slot
        // was free), but one that only tops up its last slot in a full mesh should not ask peer after
        // full peer.
        if self.links().len() + 1 >= self.config.max_peers {
            self.failures = self.failures.saturating_add(1);
            let delay = self.backoff_delay(self.failures);
            self.next_dial = now + delay;
        }
        self.emit(Output::Event(Event::Rejected {
            by: from,
            alternatives,
        }));
        // Try an alternative at once.
        self.next_maintenance = Some(now);
    }

    // ------------------------------------------------------------------ lookups

    fn learn(&mut self, now: Instant, p: NodeId) {
        if p != self.local {
            self.book.insert(p, now);
        }
    }

    fn knows(&self, target: &NodeId) -> bool {
        self.links
            .get(target)
            .is_some_and(|l| l.state == LinkState::Up)
            || self.book.contains(target)
            || self.kad.routing_table().contains(target)
            || self
                .links
                .values()
                .any(|l| l.state == LinkState::Up && l.neighbors.contains(target))
    }

    /// The `n` peers closest to `target` among everything we know: links, their links, the peer book and
    /// the Kademlia routing table (we count ourselves too).
    fn closest_known(&self, target: &NodeId, n: usize) -> Vec<NodeId> {
        let mut all: BTreeSet<(kademlia_core::Distance, NodeId)> = BTreeSet::new();
        let mut add = |p: NodeId| {
            all.insert((p.distance(target), p));
        };
        add(self.local);
        for (p, l) in &self.links {
            if l.state == LinkState::Up {
                add(*p);
                for q in &l.neighbors {
                    add(*q);
                }
            }
        }
        for p in self.book.closest(target, n, |_| false) {
            add(p);
        }
        for p in self.kad.routing_table().closest(target, n) {
            add(p);
        }
        all.into_iter().take(n).map(|e| e.1).collect()
    }

    fn answer_probe(&mut self, now: Instant, r: &Routed, target: NodeId, via_server: bool) {
        if NodeId::from_public_key(&r.key) != r.src
            || !verify(
                &r.key,
                &Routed::signed_bytes(&r.src, &r.dst, r.id, r.lookup.as_ref(), &r.body),
                &r.signature,
            )
        {
            self.stats.dropped_bad_signature += 1;
            return;
        }
        self.stats.probes_answered += 1;
        let nodes = self.closest_known(&target, self.config.lookup_k);
        let probe_hops = r.hops() + u32::from(via_server);
        self.reply(
            now,
            r,
            r.id,
            &Payload::Nodes { probe_hops, nodes },
            via_server,
        );
    }

    fn lookup_round(&mut self, now: Instant, id: u64) {
        let Some(l) = self.lookups.get_mut(&id) else {
            return;
        };
        l.round += 1;
        l.hops = l.hops.saturating_add(core::mem::take(&mut l.round_hops));
        l.deadline = now + self.config.lookup_round_timeout;
        let target = l.target;
        let last_round = l.round >= self.config.lookup_max_rounds;
        let round = l.round;
        // Round 1 goes toward the target itself through different first links; later rounds toward the
        // closest ids found so far that we have not probed yet (a different path into the target's
        // neighborhood); the last round asks the target through the server.
        let mut dsts: Vec<NodeId> = Vec::new();
        if round == 1 {
            dsts.extend(core::iter::repeat_n(target, self.config.lookup_parallelism));
        } else {
            for (_, p) in l.found.iter() {
                if dsts.len() >= self.config.lookup_parallelism {
                    break;
                }
                if *p != self.local && !l.probed.contains(p) {
                    dsts.push(*p);
                }
            }
            if dsts.is_empty() {
                dsts.push(target);
            }
        }
        let have_links = self.links.values().any(|l| l.state == LinkState::Up);
        let server = (last_round && round > 1 || !have_links) && self.config.server_fallback;
        if server {
            dsts = alloc::vec![target];
        }
        for (i, dst) in dsts.into_iter().enumerate() {
            let probe = self.fresh_id();
            if let Some(l) = self.lookups.get_mut(&id) {
                l.outstanding.insert(probe);
                l.requests += 1;
                l.probed.insert(dst);
            }
            self.probes.insert(probe, id);
            self.originate(now, dst, probe, Some(target), &Payload::FindNode, i, server);
        }
    }

    fn on_nodes(&mut self, now: Instant, probe: u64, from: NodeId, nodes: Vec<NodeId>, hops: u32) {
        let Some(id) = self.probes.remove(&probe) else {
            return;
        };
        let k = self.config.lookup_k;
        let Some(l) = self.lookups.get_mut(&id) else {
            return;
        };
        l.outstanding.remove(&probe);
        l.round_hops = hops;
        let target = l.target;
        for p in nodes.into_iter().take(k).chain(core::iter::once(from)) {
            l.found.insert((p.distance(&target), p));
        }
        while l.found.len() > k {
            l.found.pop_last();
        }
        let found = l.found.first().is_some_and(|e| e.1 == target);
        let idle = l.outstanding.is_empty();
        for p in l.found.iter().map(|e| e.1).collect::<Vec<_>>() {
            self.learn(now, p);
        }
        if found {
            self.finish_lookup(id);
        } else if idle {
            self.next_lookup_round(now, id);
        }
    }

    fn next_lookup_round(&mut self, now: Instant, id: u64) {
        let Some(l) = self.lookups.get(&id) else {
            return;
        };
        if l.round >= self.config.lookup_max_rounds {
            self.finish_lookup(id);
        } else {
            self.lookup_round(now, id);
        }
    }

    fn finish_lookup(&mut self, id: u64) {
        let Some(l) = self.lookups.remove(&id) else {
            return;
        };
        for p in &l.outstanding {
            self.probes.remove(p);
        }
        self.emit(Output::Event(Event::LookupFinished {
            id: QueryId(id),
            target: l.target,
            peers: l.found.into_iter().map(|e| e.1).collect(),
            rounds: l.round,
            requests: l.requests,
            hops: l.hops.saturating_add(l.round_hops),
        }));
    }

    // ------------------------------------------------------------------ timers

    fn link_timers(&mut self, now: Instant) {
        let mut timed_out = Vec::new();
        let mut idle = Vec::new();
        let mut ping = Vec::new();
        let mut resend = Vec::new();
        let mut hellos = Vec::new();
        let mut expired = 0;
        for (p, l) in self.links.iter_mut() {
            match l.state {
                LinkState::Up => {
                    if now.saturating_duration_since(l.last_rx) >= self.config.link_idle_timeout {
                        idle.push(*p);
                    } else if now.saturating_duration_since(l.last_tx)
                        >= self.config.keepalive_interval
                    {
                        ping.push(*p);
                    }
                    expired += l.reassembly.expire(now, &self.config);
                }
                _ => {
                    if now.saturating_duration_since(l.since) >= self.config.link_open_timeout {
                        timed_out.push(*p);
                    } else {
                        if l.resend_at.is_some_and(|t| t <= now) {
                            l.resends += 1;
                            l.resend_at = (l.resends < SIGNAL_RESENDS)
                                .then(|| now + self.config.signal_retry * (1 << l.resends.min(8)));
                            resend.push((*p, l.resends as usize));
                        }
                        if l.state == LinkState::Open && l.hello_at.is_some_and(|t| t <= now) {
                            l.hello_at = Some(now + self.config.signal_retry / 2);
                            if let Some(h) = l.hello.clone() {
                                hellos.push((*p, h));
                            }
                        }
                    }
                }
            }
        }
        for (p, attempt) in resend {
            self.resend_signaling(now, p, attempt);
        }
        for (p, h) in hellos {
            self.stats.hellos_resent += 1;
            self.send_frame(now, p, &Frame::Hello(h));
        }
        self.stats.reassembly_dropped += expired as u64;
        for p in timed_out {
            let requested = self
                .links
                .get(&p)
                .is_some_and(|l| l.state == LinkState::Requested);
            if !requested {
                self.emit(Output::Event(Event::PeerTimedOut { peer: p }));
            }
            self.close(now, p, DisconnectReason::Timeout, false);
        }
        for p in idle {
            self.close(now, p, DisconnectReason::Idle, false);
        }
        for p in ping {
            let n = self.rng.random::<u64>();
            self.send_frame(now, p, &Frame::Ping(n));
        }
    }

    fn direct_timers(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .pending_direct
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(p) = self.pending_direct.get_mut(&id) else {
                continue;
            };
            if p.attempts >= self.config.direct_attempts {
                let to = p.to;
                self.pending_direct.remove(&id);
                self.emit(Output::Event(Event::DirectFailed {
                    id: DirectId(id),
                    to,
                    reason: DirectFailure::NoAck,
                }));
                continue;
            }
            p.attempts += 1;
            p.deadline = now + self.config.direct_retry_timeout;
            let (to, data, attempt) = (p.to, p.data.clone(), p.attempts);
            let last = attempt >= self.config.direct_attempts && self.config.server_fallback;
            self.stats.direct_retries += 1;
            self.originate(
                now,
                to,
                id,
                None,
                &Payload::Data(data),
                (attempt - 1) as usize,
                last,
            );
        }
    }

    fn lookup_timers(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(l) = self.lookups.get_mut(&id) {
                for p in core::mem::take(&mut l.outstanding) {
                    self.probes.remove(&p);
                }
            }
            self.next_lookup_round(now, id);
        }
    }

    // ------------------------------------------------------------------ output

    fn emit(&mut self, o: Output) {
        if self.outputs.len() >= self.config.max_outputs {
            self.stats.dropped_outputs += 1;
            return;
        }
        self.outputs.push_back(o);
    }

    fn send_frame(&mut self, now: Instant, peer: NodeId, frame: &Frame) {
        let bytes = frame.encode();
        if bytes.len() > self.config.max_message_bytes {
            self.stats.dropped_oversized += 1;
            return;
        }
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        link.last_tx = now;
        let msg = link.next_chunk_msg;
        link.next_chunk_msg = link.next_chunk_msg.wrapping_add(1);
        for part in frame::split(bytes, self.config.max_frame_bytes, msg) {
            self.stats.frames_sent += 1;
            self.emit(Output::Transmit {
                link: peer,
                bytes: part,
            });
        }
    }

    /// Moves the cores' outputs into ours: their sends become frames on links, or routed messages.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(o) = self.kad.poll_output() {
                progressed = true;
                match o {
                    kademlia_core::Output::Transmit { to, bytes } => {
                        if self
                            .links
                            .get(&to)
                            .is_some_and(|l| l.state == LinkState::Up)
                        {
                            self.send_frame(now, to, &Frame::Kad(bytes));
                        } else {
                            let id = self.fresh_id();
                            self.originate(now, to, id, None, &Payload::Kad(bytes), 0, false);
                        }
                    }
                    kademlia_core::Output::Event(e) => match e {
                        kademlia_core::Event::PeerAdded { peer, .. } => self.learn(now, peer),
                        kademlia_core::Event::PeerRemoved { .. } => {}
                        other => self.emit(Output::Event(Event::Dht(other))),
                    },
                    // kademlia-core's outputs are non-exhaustive; it has no other output today.
                    _ => {}
                }
            }
            while let Some(o) = self.gossip.poll_output() {
                progressed = true;
                match o {
                    gossip_core::Output::Transmit { to, bytes }
                        if self
                            .links
                            .get(&to)
                            .is_some_and(|l| l.state == LinkState::Up) =>
                    {
                        self.send_frame(now, to, &Frame::Gossip(bytes));
                    }
                    gossip_core::Output::Event(gossip_core::Event::Delivered {
                        id,
                        origin,
                        topic,
                        payload,
                        hops,
                        ..
                    }) => {
                        self.emit(Output::Event(Event::Message {
                            from: origin,
                            topic: Some(topic.to_string()),
                            data: payload,
                            hops: u32::from(hops),
                            id: MessageRef::Broadcast(id),
                        }));
                    }
                    _ => {}
                }
            }
            if !progressed {
                break;
            }
        }
    }
}

/// ed25519 verification of `signature` (64 bytes) over `message` under `public_key`.
/// Payloads whose envelope may travel unsigned straight over the verified link to its destination
/// (see [`Node::seal`] and [`Node::deliver`]).
fn may_go_unsigned(payload: &Payload) -> bool {
    matches!(payload, Payload::Data(_) | Payload::Ack)
}

fn verify(public_key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    p2pmesh_base::verify(public_key, message, &sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(n: u64) -> Identity {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&n.to_le_bytes());
        s[31] = 0x5a;
        Identity::from_secret_bytes(&s)
    }

    fn node() -> Node {
        let mut n = Node::new([9; 32], Config::default(), 7);
        n.join(Instant::from_millis(1));
        drain(&mut n);
        n
    }

    fn drain(n: &mut Node) -> Vec<Output> {
        core::iter::from_fn(|| n.poll_output()).collect()
    }

    /// A routed frame from `from` to `dst` as the server would relay it.
    fn relayed(from: &Identity, dst: NodeId, payload: &Payload) -> ServerInput {
        let body = postcard::to_allocvec(payload).unwrap_or_default();
        let signature = from.sign(&Routed::signed_bytes(&from.id(), &dst, 1, None, &body));
        let r = Routed {
            src: from.id(),
            dst,
            id: 1,
            lookup: None,
            hops_left: 8,
            path: alloc::vec![from.id()],
            route: Vec::new(),
            key: from.public_key(),
            signature: signature.to_vec(),
            body,
        };
        ServerInput::Relayed {
            from: from.id(),
            payload: Frame::Routed(r).encode(),
        }
    }

    fn hello(from: &Identity, sender_fp: &[u8], receiver_fp: &[u8]) -> Vec<u8> {
        let pk = from.public_key();
        let signature = from.sign(&Hello::signed_bytes(&pk, sender_fp, receiver_fp));
        Frame::Hello(Hello {
            public_key: pk,
            sender_fingerprint: sender_fp.to_vec(),
            receiver_fingerprint: receiver_fp.to_vec(),
            signature: signature.to_vec(),
        })
        .encode()
    }

    /// `peer` asks `n` for a link through the server, the way its id allows (an offer from a lower id,
    /// a link request from a higher one); `n`'s outputs.
    fn inbound_attempt(n: &mut Node, peer: &Identity, now: Instant) -> Vec<Output> {
        let payload = if peer.id() < n.local_id() {
            Payload::Signal(b"offer".to_vec())
        } else {
            Payload::LinkRequest
        };
        n.handle_server(now, relayed(peer, n.local_id(), &payload));
        drain(n)
    }

    /// Brings a link from `peer` up at `n` through the inbound path (offer or link request).
    fn connect(n: &mut Node, peer: &Identity, now: Instant) -> Vec<Output> {
        let mut out = inbound_attempt(n, peer, now);
        if !out.iter().any(|o| matches!(o, Output::Connect { .. })) {
            return out;
        }
        n.handle_link_open(now, peer.id(), b"me".to_vec(), b"it".to_vec());
        n.handle_link_data(now, peer.id(), &hello(peer, b"it", b"me"));
        out.extend(drain(n));
        out
    }

    fn disconnect_reason(out: &[Output], peer: NodeId) -> Option<DisconnectReason> {
        out.iter().find_map(|o| match o {
            Output::Disconnect { peer: p, reason } if *p == peer => Some(*reason),
            _ => None,
        })
    }

    #[test]
    fn a_valid_hello_brings_the_link_up() {
        let mut n = node();
        let p = identity(1);
        let out = connect(&mut n, &p, Instant::from_millis(2));
        assert!(out.contains(&Output::Event(Event::PeerConnected { peer: p.id() })));
        assert_eq!(n.links(), alloc::vec![p.id()]);
    }

    #[test]
    fn bad_hellos_close_the_link_with_a_reason() {
        let now = Instant::from_millis(2);
        let p = identity(1);
        let other = identity(2);
        let cases: [(Vec<u8>, HelloError); 4] = [
            (hello(&other, b"it", b"me"), HelloError::WrongKey),
            (
                hello(&p, b"it", b"someone-else"),
                HelloError::WrongFingerprint,
            ),
            (
                {
                    let mut h = hello(&p, b"it", b"me");
                    let last = h.len() - 1;
                    h[last] ^= 1;
                    h
                },
                HelloError::BadSignature,
            ),
            (alloc::vec![frame::VERSION, 99], HelloError::Missing),
        ];
        for (bytes, error) in cases {
            let mut n = node();
            inbound_attempt(&mut n, &p, now);
            n.handle_link_open(now, p.id(), b"me".to_vec(), b"it".to_vec());
            drain(&mut n);
            n.handle_link_data(now, p.id(), &bytes);
            let out = drain(&mut n);
            assert_eq!(
                disconnect_reason(&out, p.id()),
                Some(DisconnectReason::Hello(error)),
                "{error:?}"
            );
            assert!(n.links().is_empty());
            assert_eq!(n.stats().hello_failures, 1);
        }
    }

    #[test]
    fn garbage_on_links_and_from_the_server_is_counted_not_fatal() {
        let mut n = node();
        let now = Instant::from_millis(2);
        let p = identity(1);
        connect(&mut n, &p, now);
        for bytes in [&[][..], &[1], &[1, 99], &[1, 3, 0xff, 0xff], &[7, 7, 7]] {
            n.handle_link_data(now, p.id(), bytes);
            n.handle_server(
                now,
                ServerInput::Relayed {
                    from: p.id(),
                    payload: bytes.to_vec(),
                },
            );
        }
        n.handle_link_data(now, identity(3).id(), &[1, 7, 0]);
        drain(&mut n);
        let s = n.stats();
        assert!(s.dropped_malformed >= 8, "{s:?}");
        assert_eq!(s.dropped_unexpected, 1);
        assert_eq!(n.links(), alloc::vec![p.id()]);
    }

    #[test]
    fn a_forged_routed_message_is_dropped() {
        let mut n = node();
        let p = identity(1);
        let ServerInput::Relayed { payload, .. } =
            relayed(&p, n.local_id(), &Payload::Data(b"x".to_vec()))
        else {
            unreachable!()
        };
        let Ok(Frame::Routed(mut r)) = Frame::decode(&payload) else {
            panic!("not routed");
        };
        r.body = postcard::to_allocvec(&Payload::Data(b"y".to_vec())).unwrap_or_default();
        n.handle_server(
            Instant::from_millis(2),
            ServerInput::Relayed {
                from: p.id(),
                payload: Frame::Routed(r).encode(),
            },
        );
        let out = drain(&mut n);
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Event(Event::Message { .. })))
        );
        assert_eq!(n.stats().dropped_bad_signature, 1);
    }

    /// A routed envelope from `from` to `dst` with this `path`, signed or not.
    fn envelope(
        from: &Identity,
        dst: NodeId,
        payload: &Payload,
        path: Vec<NodeId>,
        signed: bool,
    ) -> Routed {
        let body = postcard::to_allocvec(payload).unwrap_or_default();
        let signature = if signed {
            from.sign(&Routed::signed_bytes(&from.id(), &dst, 1, None, &body))
                .to_vec()
        } else {
            Vec::new()
        };
        Routed {
            src: from.id(),
            dst,
            id: 1,
            lookup: None,
            hops_left: 8,
            path,
            route: Vec::new(),
            key: from.public_key(),
            signature,
            body,
        }
    }

    fn messages(out: &[Output]) -> usize {
        out.iter()
            .filter(|o| matches!(o, Output::Event(Event::Message { .. })))
            .count()
    }

    /// The routed envelopes transmitted on the link to `peer` (unchunked frames only).
    fn transmitted(out: &[Output], peer: NodeId) -> Vec<Routed> {
        out.iter()
            .filter_map(|o| match o {
                Output::Transmit { link, bytes } if *link == peer => match Frame::decode(bytes) {
                    Ok(Frame::Routed(r)) => Some(r),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_unsigned_message_straight_from_a_link_neighbour_is_delivered() {
        let mut n = node();
        let now = Instant::from_millis(2);
        let p = identity(1);
        connect(&mut n, &p, now);
        let r = envelope(
            &p,
            n.local_id(),
            &Payload::Data(b"x".to_vec()),
            alloc::vec![p.id()],
            false,
        );
        n.handle_link_data(now, p.id(), &Frame::Routed(r).encode());
        let out = drain(&mut n);
        assert_eq!(messages(&out), 1);
        assert_eq!(n.stats().dropped_bad_signature, 0);
        // The ack goes straight back over the link, unsigned too.
        let acks = transmitted(&out, p.id());
        assert_eq!(acks.len(), 1);
        assert!(acks[0].signature.is_empty());
        assert_eq!(acks[0].path, alloc::vec![n.local_id()]);
        assert_eq!(
            postcard::from_bytes::<Payload>(&acks[0].body),
            Ok(Payload::Ack)
        );
    }

    #[test]
    fn unsigned_routed_messages_not_straight_from_a_link_neighbour_are_dropped() {
        let now = Instant::from_millis(2);
        let p = identity(1);
        let q = identity(2);
        let data = Payload::Data(b"x".to_vec());
        let mut n = node();
        let me = n.local_id();
        connect(&mut n, &p, now);
        let cases: [Routed; 5] = [
            // src is not the link's peer (claims to come straight from q).
            envelope(&q, me, &data, alloc::vec![p.id()], false),
            // forwarded by the neighbour: the path is longer than [src].
            envelope(&q, me, &data, alloc::vec![q.id(), p.id()], false),
            envelope(&p, me, &data, alloc::vec![q.id(), p.id()], false),
            // straight from the neighbour, but a payload that must be signed.
            envelope(&p, me, &Payload::LinkRequest, alloc::vec![p.id()], false),
            envelope(
                &p,
                me,
                &Payload::Kad(b"k".to_vec()),
                alloc::vec![p.id()],
                false,
            ),
        ];
        for (i, r) in cases.into_iter().enumerate() {
            n.handle_link_data(now, p.id(), &Frame::Routed(r).encode());
            let out = drain(&mut n);
            assert_eq!(messages(&out), 0, "case {i}");
            assert_eq!(n.stats().dropped_bad_signature, i as u64 + 1, "case {i}");
        }
        // Through the server, even from the link's own peer with path [src].
        let r = envelope(&p, me, &data, alloc::vec![p.id()], false);
        n.handle_server(
            now,
            ServerInput::Relayed {
                from: p.id(),
                payload: Frame::Routed(r).encode(),
            },
        );
        let out = drain(&mut n);
        assert_eq!(messages(&out), 0);
        assert_eq!(n.stats().dropped_bad_signature, 6);
    }

    #[test]
    fn routed_messages_to_non_neighbours_stay_signed() {
        let now = Instant::from_millis(2);
        let p = identity(1);
        let q = identity(2);
        let mut n = node();
        let me = n.local_id();
        connect(&mut n, &p, now);
        // A signed message from a non-neighbour, forwarded by p, is delivered.
        let r = envelope(
            &q,
            me,
            &Payload::Data(b"x".to_vec()),
            alloc::vec![q.id(), p.id()],
            true,
        );
        n.handle_link_data(now, p.id(), &Frame::Routed(r).encode());
        let out = drain(&mut n);
        assert_eq!(messages(&out), 1);
        assert_eq!(n.stats().dropped_bad_signature, 0);
        // Its ack leaves through p toward q: signed.
        let acks = transmitted(&out, p.id());
        assert_eq!(acks.len(), 1);
        let a = &acks[0];
        assert!(verify(
            &a.key,
            &Routed::signed_bytes(&a.src, &a.dst, a.id, None, &a.body),
            &a.signature
        ));
        // Our own send: straight to the neighbour unsigned, toward a non-neighbour signed.
        let Ok(_) = n.send(now, p.id(), b"to p".to_vec()) else {
            panic!("send to p");
        };
        let sent = transmitted(&drain(&mut n), p.id());
        assert_eq!(sent.len(), 1);
        assert!(sent[0].signature.is_empty());
        let Ok(_) = n.send(now, q.id(), b"to q".to_vec()) else {
            panic!("send to q");
        };
        let out = drain(&mut n);
        let mut sent = transmitted(&out, p.id());
        sent.extend(out.iter().filter_map(|o| match o {
            Output::Signal { payload, .. } => match Frame::decode(payload) {
                Ok(Frame::Routed(r)) => Some(r),
                _ => None,
            },
            _ => None,
        }));
        assert_eq!(sent.len(), 1);
        let s = &sent[0];
        assert_eq!(s.dst, q.id());
        assert!(verify(
            &s.key,
            &Routed::signed_bytes(&s.src, &s.dst, s.id, None, &s.body),
            &s.signature
        ));
    }

    #[test]
    fn full_node_evicts_for_a_closer_peer_and_refuses_a_farther_one() {
        let mut n = node();
        let me = n.local_id();
        let now = Instant::from_millis(2);
        // Peers by bucket, closest first within each.
        let mut by_bucket: BTreeMap<usize, Vec<Identity>> = BTreeMap::new();
        for i in (1..3000).map(identity) {
            if let Some(b) = me.bucket_index(&i.id()) {
                by_bucket.entry(b).or_default().push(i);
            }
        }
        for v in by_bucket.values_mut() {
            v.sort_by_key(|i| i.id().distance(&me));
        }
        let count = |b: usize| by_bucket.get(&b).map_or(0, Vec::len);
        // A lowest bucket `l` with two peers in it and in the other close classes (spacing 2), and
        // long links above them.
        let l = (140..=152)
            .rev()
            .find(|&l| count(l) >= 2 && count(l + 2) >= 2 && count(l + 4) >= 1 && count(l + 6) >= 2)
            .unwrap_or(152);
        let pick = |b: usize, i: usize| by_bucket.get(&b).and_then(|v| v.get(i)).cloned();
        let (Some(nearest), Some(a), Some(b_near), Some(b_far), Some(c), Some(d), Some(e)) = (
            pick(l, 0),
            pick(l, 1),
            pick(l + 2, 0),
            pick(l + 2, 1),
            pick(l + 4, 0),
            pick(l + 6, 0),
            pick(l + 6, 1),
        ) else {
            panic!("not enough identities around bucket {l}");
        };
        // Each close class (buckets l.., l+2.., l+4..) gets one link, and two long links: full.
        for p in [&a, &b_near, &c, &d, &e] {
            connect(&mut n, p, now);
        }
        assert_eq!(n.links().len(), 5);
        // A peer of a covered class, farther than its link, is refused with alternatives.
        let out = connect(&mut n, &b_far, now);
        assert!(!out.iter().any(|o| matches!(o, Output::Connect { .. })));
        assert_eq!(n.stats().rejections, 1);
        // A peer closer than the link of its class gets in; the displaced link is evicted.
        let out = connect(&mut n, &nearest, now);
        assert!(out.contains(&Output::Event(Event::PeerConnected { peer: nearest.id() })));
        assert_eq!(n.links().len(), 5);
        let evicted: Vec<NodeId> = out
            .iter()
            .filter_map(|o| match o {
                Output::Disconnect {
                    peer,
                    reason: DisconnectReason::Evicted,
                } => Some(*peer),
                _ => None,
            })
            .collect();
        assert_eq!(evicted, alloc::vec![a.id()]);
        // The evicted one was told, with up to 3 alternatives, before the close.
        let told = out.iter().any(|o| match o {
            Output::Transmit { link, bytes } if *link == a.id() => {
                matches!(Frame::decode(bytes), Ok(Frame::Evict(alts)) if alts.len() <= 3)
            }
            _ => false,
        });
        assert!(told);
        // The other classes and the long links kept theirs.
        for p in [&b_near, &c, &d, &e] {
            assert!(n.links().contains(&p.id()));
        }
    }

    /// The routed frames (through the server) in `out`: (addressee, envelope).
    fn relayed_out(out: &[Output]) -> Vec<(NodeId, Routed)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Signal { to, payload } => match Frame::decode(payload) {
                    Ok(Frame::Routed(r)) => Some((*to, r)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    #[test]
    fn lost_signaling_is_sent_again_and_duplicates_are_answered_not_repeated() {
        let mut n = node();
        let now = Instant::from_millis(2);
        // A lower id: we ask it (link request) to make the offer.
        let p = (1..50)
            .map(identity)
            .find(|i| i.id() < n.local_id())
            .unwrap_or_else(|| identity(1));
        n.handle_server(now, ServerInput::BootstrapPeers(alloc::vec![p.id()]));
        n.handle_timeout(now);
        let first = relayed_out(&drain(&mut n));
        assert_eq!(
            first.len(),
            1,
            "one link request, through the server (no link yet)"
        );
        let (to, request) = &first[0];
        assert_eq!(*to, p.id());
        assert_eq!(
            postcard::from_bytes::<Payload>(&request.body),
            Ok(Payload::LinkRequest)
        );
        // Nothing comes back: after `signal_retry` the same request (same id) goes again.
        let retry = n.config().signal_retry;
        n.handle_timeout(now + retry);
        let again = relayed_out(&drain(&mut n));
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].1.id, request.id);
        assert_eq!(n.stats().signals_resent, 1);

        // The peer's offer arrives twice (it did not hear that we got it): the driver sees it once,
        // and the duplicate makes us send our side again instead.
        let offer = relayed(&p, n.local_id(), &Payload::Signal(b"offer".to_vec()));
        let later = now + retry + Duration::from_millis(100);
        n.handle_server(later, offer.clone());
        let out = drain(&mut n);
        let signals = |out: &[Output]| {
            out.iter()
                .filter(|o| matches!(o, Output::Event(Event::Signal { .. })))
                .count()
        };
        assert_eq!(signals(&out), 1);
        assert!(out.contains(&Output::Connect {
            peer: p.id(),
            initiator: false
        }));
        n.send_signal(later, p.id(), b"answer".to_vec());
        let answer = relayed_out(&drain(&mut n));
        assert_eq!(
            answer.len(),
            1,
            "answered through the server, as the offer came"
        );
        n.handle_server(later + retry, offer);
        let out = drain(&mut n);
        assert_eq!(signals(&out), 0);
        assert_eq!(n.stats().signal_duplicates, 1);
        let echoed: Vec<u64> = relayed_out(&out).iter().map(|(_, r)| r.id).collect();
        assert!(echoed.contains(&answer[0].1.id), "our answer went again");
    }

    #[test]
    fn frames_before_the_hello_are_dropped_and_the_hello_is_sent_again() {
        let mut n = node();
        let now = Instant::from_millis(2);
        let p = identity(1);
        inbound_attempt(&mut n, &p, now);
        n.handle_link_open(now, p.id(), b"me".to_vec(), b"it".to_vec());
        let hellos = |out: &[Output]| {
            out.iter()
                .filter(|o| {
                    matches!(o, Output::Transmit { link, bytes }
                        if *link == p.id() && matches!(Frame::decode(bytes), Ok(Frame::Hello(_))))
                })
                .count()
        };
        assert_eq!(hellos(&drain(&mut n)), 1);
        // The peer is up (our hello reached it) but its hello was lost: its next frame is dropped,
        // and the link stays.
        n.handle_link_data(now, p.id(), &Frame::Ping(7).encode());
        let out = drain(&mut n);
        assert_eq!(disconnect_reason(&out, p.id()), None);
        assert_eq!(n.link_attempts(), alloc::vec![p.id()]);
        // Our hello goes again until the peer's arrives; then the link is up.
        let later = now + n.config().signal_retry;
        n.handle_timeout(later);
        assert!(hellos(&drain(&mut n)) >= 1);
        assert_eq!(n.stats().hellos_resent, 1);
        n.handle_link_data(later, p.id(), &hello(&p, b"it", b"me"));
        assert_eq!(n.links(), alloc::vec![p.id()]);
    }

    #[test]
    fn lower_id_initiates() {
        let mut n = node();
        let now = Instant::from_millis(2);
        let p = (1..50)
            .map(identity)
            .find(|i| i.id() > n.local_id())
            .unwrap_or_else(|| identity(1));
        n.handle_server(now, ServerInput::BootstrapPeers(alloc::vec![p.id()]));
        n.handle_timeout(now);
        let out = drain(&mut n);
        if n.local_id() < p.id() {
            assert!(out.contains(&Output::Connect {
                peer: p.id(),
                initiator: true
            }));
        }
        // An offer from a higher id is not accepted (the lower id offers).
        let q = (1..50)
            .map(identity)
            .find(|i| i.id() > n.local_id() && i.id() != p.id())
            .unwrap_or_else(|| identity(2));
        n.handle_server(
            now,
            relayed(&q, n.local_id(), &Payload::Signal(b"offer".to_vec())),
        );
        let out = drain(&mut n);
        assert!(
            !out.iter()
                .any(|o| matches!(o, Output::Connect { peer, .. } if *peer == q.id()))
        );
    }

    #[test]
    fn a_link_that_does_not_open_times_out() {
        let mut n = node();
        let now = Instant::from_millis(2);
        let p = identity(1);
        inbound_attempt(&mut n, &p, now);
        let later = now + n.config().link_open_timeout;
        n.handle_timeout(later);
        let out = drain(&mut n);
        assert!(out.contains(&Output::Event(Event::PeerTimedOut { peer: p.id() })));
        assert_eq!(
            disconnect_reason(&out, p.id()),
            Some(DisconnectReason::Timeout)
        );
    }

    #[test]
    fn large_frames_are_chunked_on_the_wire() {
        let mut n = node();
        let now = Instant::from_millis(2);
        let p = identity(1);
        connect(&mut n, &p, now);
        let data = alloc::vec![7u8; 200 * 1024];
        n.send(now, p.id(), data).unwrap_or(DirectId(0));
        let out = drain(&mut n);
        let parts: Vec<&Vec<u8>> = out
            .iter()
            .filter_map(|o| match o {
                Output::Transmit { link, bytes } if *link == p.id() => Some(bytes),
                _ => None,
            })
            .collect();
        assert!(parts.len() >= 4);
        assert!(parts.iter().all(|b| b.len() <= n.config().max_frame_bytes));
    }
}
