//! The mesh node: a thin composer over its parts ([`link`](crate::link), [`topology`](crate::topology),
//! [`router`](crate::router), [`lookup`](crate::lookup), one [`timer`](crate::timer) table) and the two
//! composed cores. It forwards each input to the part that owns it and carries out what the parts and
//! the cores return; `links.rs` holds link set-up, frames and topology actions, `routing.rs` routed
//! messages, signaling and lookups.

mod announce;
mod dht;
mod direct;
mod links;
mod routing;
#[cfg(test)]
mod tests;

use alloc::collections::VecDeque;
use alloc::string::ToString;
use alloc::vec::Vec;

use kademlia_core::{Instant, NodeId};
use p2pmesh_base::Identity;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;

use crate::event::{
    DirectFailure, DirectId, DisconnectReason, Error, Event, MessageRef, Output, QueryId,
    ServerInput, Stats,
};
use crate::frame::{Frame, MAX_ID_LIST, Payload};
use crate::link::{Link, LinkState, Links};
use crate::lookup::Lookups;
use crate::router::Router;
use crate::timer::{Timer, TimerTable};
use crate::topology::Topology;
use crate::{Config, SignatureCheck};

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
    links: Links,
    topology: Topology,
    router: Router,
    lookups: Lookups,
    dht: crate::dht::Dht,
    /// Checks every signature: broadcasts', records', routed messages' and hellos'.
    signature_check: SignatureCheck,
    timers: TimerTable,
    outputs: VecDeque<Output>,
    stats: Stats,
    joined: bool,
    /// When lists whose third level changed go out (in the timer table only while joined).
    neighbors_refresh_at: Option<Instant>,
    /// Peers banned for misbehaving: neither dialled nor admitted until their ban ends.
    bans: crate::abuse::Bans,
    /// Direct messages handed to the driver and not yet confirmed (`Config::confirm_direct`).
    unconfirmed: VecDeque<direct::Unconfirmed>,
}

impl Node {
    /// A node whose ed25519 secret key is `secret_key` (its id is SHA-1 of the public key), with all its
    /// randomness drawn from a ChaCha8 generator seeded with `seed`.
    ///
    /// # Panics
    /// If [`Config::validate`] refuses `config` (a configuration is the caller's contract: check it
    /// first to report the error instead), or the composed cores refuse theirs.
    pub fn new(secret_key: [u8; 32], config: Config, seed: u64) -> Node {
        Node::with_signature_check(secret_key, config, seed, SignatureCheck::default())
    }

    /// [`Node::new`] with every signature (broadcast messages, DHT records, routed messages, hellos)
    /// checked by `check` (see [`SignatureCheck`]: for simulators, which may memoize the check across
    /// the nodes of one process).
    ///
    /// # Panics
    /// As [`Node::new`].
    pub fn with_signature_check(
        secret_key: [u8; 32],
        config: Config,
        seed: u64,
        check: SignatureCheck,
    ) -> Node {
        if let Err(e) = config.validate() {
            panic!("invalid mesh_core::Config: {e}");
        }
        let identity = Identity::from_secret_bytes(&secret_key);
        let local = identity.id();
        // Record signatures are checked with the same function as broadcasts.
        let kad = kademlia_core::Node::with_verifier(
            local,
            config.kademlia.clone(),
            seed ^ 0x6b61_645f_6b61_6400,
            check.verifier(),
        );
        let gossip = gossip_core::Node::with_verifier(
            identity.clone(),
            check,
            config.gossip.clone(),
            seed ^ 0x676f_7373_6970_0000,
        );
        Node {
            topology: Topology::new(local, &config),
            router: Router::new(local, check),
            lookups: Lookups::default(),
            dht: crate::dht::Dht::default(),
            signature_check: check,
            timers: TimerTable::default(),
            identity,
            local,
            rng: ChaCha8Rng::seed_from_u64(seed),
            kad,
            gossip,
            links: Links::default(),
            outputs: VecDeque::new(),
            stats: Stats::default(),
            joined: false,
            neighbors_refresh_at: None,
            bans: crate::abuse::Bans::default(),
            unconfirmed: VecDeque::new(),
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
        self.links.up()
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
        self.topology.book.len()
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

    /// The counters, with those of both cores (kept up to date after every input).
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    // ------------------------------------------------------------------ commands

    /// Starts: from now on the node keeps its links (it expects `BootstrapPeers` from the server next).
    pub fn join(&mut self, now: Instant) {
        self.joined = true;
        self.timers.set(Timer::Maintenance, Some(now));
        self.flush(now);
    }

    /// Leaves gracefully: tells every link, closes them, and fails pending direct messages.
    pub fn leave(&mut self, now: Instant) {
        self.joined = false;
        self.timers.stop(Timer::Maintenance);
        let peers: Vec<NodeId> = self.links.keys().copied().collect();
        for peer in peers {
            if self.links.is_up(&peer) {
                self.send_frame(now, peer, &Frame::Bye);
            }
            self.close(now, peer, DisconnectReason::Leaving, false);
        }
        for (id, p) in self.router.take_pending() {
            self.timers.stop(Timer::Direct(id));
            self.emit(Output::Event(Event::DirectFailed {
                id: DirectId(id),
                to: p.to,
                reason: DirectFailure::Left,
            }));
        }
        self.flush(now);
    }

    /// Broadcasts `data` on `topic` to every node of the mesh subscribed to it (not to this node).
    pub fn broadcast(
        &mut self,
        now: Instant,
        topic: &str,
        data: Vec<u8>,
    ) -> Result<gossip_core::MessageId, Error> {
        let id = self.gossip.publish(now, topic, data)?;
        self.flush(now);
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
    ///
    /// Without a link to `to`, the first attempt leaves through the two best first hops at once (the
    /// receiver drops the second copy), so that one neighbour lying about its links cannot black-hole
    /// it; each retry takes the next first hop. A message too large for the server
    /// ([`Config::max_signal_bytes`]) never goes through it: its last attempt stays on the mesh.
    pub fn send(&mut self, now: Instant, to: NodeId, data: Vec<u8>) -> Result<DirectId, Error> {
        if to == self.local {
            return Err(Error::SelfAddressed);
        }
        self.router.check_direct(data.len(), &self.config)?;
        let id = self.router.fresh_id();
        let deadline = self
            .router
            .start_direct(now, id, to, data.clone(), &self.config);
        self.timers.set(Timer::Direct(id), Some(deadline));
        let first = self.originate(now, to, id, None, &Payload::Data(data.clone()), 0, false);
        if first.is_some_and(|p| p != to) && self.links.up().len() >= 2 {
            let _ = self.originate(now, to, id, None, &Payload::Data(data), 1, false);
        }
        self.flush(now);
        Ok(DirectId(id))
    }

    /// Finds the peers closest to `target`, fast: probes routed greedily over the mesh toward the target,
    /// answered by the first node that knows it (docs/decisions.md §9). Ends with
    /// [`Event::LookupFinished`].
    pub fn find_node(&mut self, now: Instant, target: NodeId) -> QueryId {
        let id = self.router.fresh_id();
        // Known first hand (a link, or a link's link): no probe needed.
        let direct = target == self.local
            || self.links.is_up(&target)
            || self
                .links
                .values()
                .any(|l| l.is_up() && l.neighbors.contains(&target));
        if direct || self.lookups.len() >= self.config.max_lookups {
            let peers = if direct {
                self.closest_known(&target, self.config.lookup_k, true)
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
            self.flush(now);
            return QueryId(id);
        }
        self.lookups.start(now, id, target);
        self.lookup_round(now, id);
        self.flush(now);
        QueryId(id)
    }

    /// Kademlia's own iterative FIND_NODE (RPCs travel over links, routed over the mesh, or through the
    /// server); ends with [`Event::Dht`]. A diagnostic (the simulator compares it with
    /// [`Node::find_node`]): no command of the facade uses it; the DHT's commands ([`Node::put`],
    /// [`Node::get`]) go over the mesh's own routing.
    pub fn dht_find_node(&mut self, now: Instant, target: NodeId) -> kademlia_core::QueryId {
        let id = self.kad.find_node(now, target);
        self.flush(now);
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
                self.timers
                    .set(Timer::Maintenance, self.joined.then_some(now));
            }
            ServerInput::PeerJoined(p) => {
                self.learn(now, p);
                self.kad.add_contact(now, p);
                if self.joined {
                    self.maintain_by(now);
                }
            }
            ServerInput::PeerLeft(p) => {
                // Gone from the server (it left, or the server does not know it: a signal to it
                // bounced, or its server died and the cluster let its claim lapse while it fails
                // over to another). An attempt still in signalling frees its slot now. A link whose
                // data channel is open stays, like an up link: our hello is out, so the peer may
                // already count it up, and closing it would cut a live peer's link (test-mesh's
                // `server-failover`); if the peer is really gone, the hello's timeout ends it.
                self.topology.book.remove(&p);
                self.kad.handle_peer_down(now, p);
                if self.links.get(&p).is_some_and(|l| {
                    matches!(l.state, LinkState::Requested | LinkState::Connecting)
                }) {
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
        self.flush(now);
    }

    /// The data channel to `peer` opened (DTLS done) with these fingerprints: we send our hello.
    pub fn handle_link_open(
        &mut self,
        now: Instant,
        peer: NodeId,
        local_fingerprint: Vec<u8>,
        remote_fingerprint: Vec<u8>,
    ) {
        self.on_link_open(now, peer, local_fingerprint, remote_fingerprint);
        self.flush(now);
    }

    /// Bytes arrived on the link to `peer` (one data-channel message).
    pub fn handle_message(&mut self, now: Instant, peer: NodeId, bytes: &[u8]) {
        self.on_link_data(now, peer, bytes);
        self.flush(now);
    }

    /// The link to `peer` closed, or failed to open (reported by the driver).
    pub fn handle_link_closed(&mut self, now: Instant, peer: NodeId) {
        if self.links.contains_key(&peer) {
            self.close(now, peer, DisconnectReason::Closed, true);
        }
        self.flush(now);
    }

    /// The local WebRTC engine produced signaling data (offer, answer, candidate) for `to`: routed over
    /// the mesh, or through the server when the mesh has no route.
    pub fn send_signal(&mut self, now: Instant, to: NodeId, payload: Vec<u8>) {
        let id = self.router.fresh_id();
        self.send_signaling(now, to, id, Payload::Signal(payload));
        self.flush(now);
    }

    /// Timers: call when [`Node::poll_timeout`] has passed (early calls are harmless). Due timers run
    /// kind by kind in a fixed order: the cores', the links', direct messages', lookups', then the
    /// neighbor announcements and the maintenance pass.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sync_timers();
        self.kad.handle_timeout(now);
        self.gossip.handle_timeout(now);
        self.link_timers(now);
        self.direct_timers(now);
        self.lookup_timers(now);
        self.dht_timers(now);
        if self.timers.is_due(Timer::Announce, now) {
            self.send_neighbors(now);
        }
        if self.neighbors_refresh_at.is_none_or(|t| t <= now) && self.joined {
            // Lists that changed only in their third level go out now (unchanged ones are not sent).
            self.neighbors_refresh_at = Some(now + self.config.neighbors_refresh_interval);
            if self.timers.get(Timer::Announce).is_none() {
                self.send_neighbors(now);
            }
        }
        if self.timers.is_due(Timer::Maintenance, now) {
            self.maintain(now);
            let next = Topology::next_maintenance(now, &self.links, &mut self.rng, &self.config);
            self.timers.set(Timer::Maintenance, Some(next));
        }
        self.flush(now);
    }

    /// The next output for the driver. Drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Node::handle_timeout`] should next be called: the earliest of the timer table and the
    /// two cores' timers.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.next(),
            self.kad.poll_timeout(),
            self.gossip.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ------------------------------------------------------------------ output

    /// Ends an input: the cores' outputs are carried out, the timer table brought up to date and
    /// the cores' counters copied into ours.
    fn flush(&mut self, now: Instant) {
        self.pump(now);
        self.sync_timers();
        self.stats.kad = *self.kad.stats();
        self.stats.gossip.clone_from(self.gossip.stats());
    }

    /// Moves the deadlines that changed since the last input into the timer table.
    fn sync_timers(&mut self) {
        for (peer, at) in self.links.take_dirty(&self.config) {
            self.timers.set(Timer::Link(peer), at);
        }
        let refresh = self.neighbors_refresh_at.filter(|_| self.joined);
        self.timers.set(Timer::NeighborsRefresh, refresh);
    }

    /// Brings the next maintenance pass forward to `at` at the latest.
    fn maintain_by(&mut self, at: Instant) {
        let next = self
            .timers
            .get(Timer::Maintenance)
            .map_or(at, |t| t.min(at));
        self.timers.set(Timer::Maintenance, Some(next));
    }

    fn emit(&mut self, o: Output) {
        if self.outputs.len() >= self.config.max_outputs {
            self.stats.dropped_outputs += 1;
            return;
        }
        self.outputs.push_back(o);
    }

    /// Moves the cores' outputs into ours: their sends become frames on links, or routed messages;
    /// every event is mapped explicitly.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(o) = self.kad.poll_output() {
                progressed = true;
                match o {
                    kademlia_core::Output::Transmit { to, bytes } => {
                        if self.links.is_up(&to) {
                            self.send_frame(now, to, &Frame::Kad(bytes));
                        } else {
                            let id = self.router.fresh_id();
                            let _ =
                                self.originate(now, to, id, None, &Payload::Kad(bytes), 0, false);
                        }
                    }
                    kademlia_core::Output::Event(e) => self.on_kad_event(now, e),
                    // The enum is `#[non_exhaustive]`; every variant kademlia-core has is mapped above,
                    // and a new one must be mapped here (debug builds and the tests stop on it).
                    other => debug_assert!(false, "unmapped kademlia-core output {other:?}"),
                }
            }
            while let Some(o) = self.gossip.poll_output() {
                progressed = true;
                match o {
                    gossip_core::Output::Transmit { to, bytes } => {
                        if self.links.is_up(&to) {
                            self.send_frame(now, to, &Frame::Gossip(bytes));
                        } else {
                            // The link went down after gossip-core decided: it learns of that through
                            // `handle_peer_down` and resends elsewhere.
                            self.stats.gossip_sends_unlinked += 1;
                        }
                    }
                    gossip_core::Output::Event(e) => self.on_gossip_event(now, e),
                    // As above: every variant gossip-core has is mapped.
                    other => debug_assert!(false, "unmapped gossip-core output {other:?}"),
                }
            }
            if !progressed {
                break;
            }
        }
    }

    fn on_kad_event(&mut self, now: Instant, e: kademlia_core::Event) {
        match e {
            kademlia_core::Event::PeerAdded { peer, .. } => self.learn(now, peer),
            // The routing table dropped a contact: the peer book keeps its own view (by distance class
            // and recency), so nothing to do.
            kademlia_core::Event::PeerRemoved { .. } => {}
            // Command results (and any report kademlia-core adds) go to the application.
            other => self.emit(Output::Event(Event::Dht(other))),
        }
    }

    fn on_gossip_event(&mut self, now: Instant, e: gossip_core::Event) {
        match e {
            gossip_core::Event::Delivered {
                id,
                origin,
                topic,
                payload,
                hops,
                ..
            } => {
                self.emit(Output::Event(Event::Message {
                    from: origin,
                    topic: Some(topic.to_string()),
                    data: payload,
                    hops: u32::from(hops),
                    id: MessageRef::Broadcast(id),
                }));
            }
            gossip_core::Event::AckTimeout { peer, .. } => self.on_ack_timeout(now, peer),
            // gossip-core's events are `#[non_exhaustive]`: one this version does not know is counted,
            // not silently lost.
            _ => self.stats.gossip_events_unmapped += 1,
        }
    }

    /// gossip-core gave up on a payload sent to `peer` (no acknowledgement after its retries). This is
    /// where link health hears of it: today it is only counted (the link's keepalive and idle timeout
    /// decide whether the link is alive); a health policy (close a link that keeps missing acks)
    /// belongs here.
    fn on_ack_timeout(&mut self, _now: Instant, peer: NodeId) {
        self.stats.gossip_ack_timeouts += 1;
        if let Some(link) = self.links.get_mut(&peer) {
            link.ack_timeouts = link.ack_timeouts.saturating_add(1);
        }
    }
}

/// A link in state `state` at `now`, the initiator when `initiator`.
fn new_link(state: LinkState, now: Instant, initiator: bool) -> Link {
    let mut link = Link::new(state, now);
    link.initiator = initiator;
    link
}
