//! Mesh nodes on the shared network engine ([`netsim`]): the signaling server that relays and
//! introduces (5 closest and 3 random peers), the link layer (offer, answer, open, latency), crashes
//! that the neighbours notice a few seconds later, in virtual time.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use mesh_core::{Config, Event, Instant, Node, NodeId, Output, ServerInput};
use netsim::{Core, Engine, NetConfig};
use p2pmesh_base::introduce::Rule;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// A mesh node as the engine's core.
pub struct Mesh(pub Node);

impl Core for Mesh {
    type Id = NodeId;
    type Time = Instant;
    type Event = Event;

    fn local_id(&self) -> NodeId {
        self.0.local_id()
    }
    fn key(id: &NodeId) -> [u8; 20] {
        *id.as_bytes()
    }
    fn handle_message(&mut self, now: Instant, from: NodeId, bytes: &[u8]) {
        self.0.handle_message(now, from, bytes);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.0.handle_timeout(now);
    }
    fn handle_peer_up(&mut self, now: Instant, peer: NodeId, local: Vec<u8>, remote: Vec<u8>) {
        self.0.handle_link_open(now, peer, local, remote);
    }
    fn handle_peer_down(&mut self, now: Instant, peer: NodeId) {
        self.0.handle_link_closed(now, peer);
    }
    fn handle_join(&mut self, now: Instant) {
        self.0.join(now);
    }
    fn handle_server(&mut self, now: Instant, input: netsim::ServerInput<NodeId>) {
        let input = match input {
            netsim::ServerInput::BootstrapPeers(peers) => ServerInput::BootstrapPeers(peers),
            netsim::ServerInput::PeerJoined(peer) => ServerInput::PeerJoined(peer),
            netsim::ServerInput::PeerLeft(peer) => ServerInput::PeerLeft(peer),
            netsim::ServerInput::Relayed { from, payload } => {
                ServerInput::Relayed { from, payload }
            }
        };
        self.0.handle_server(now, input);
    }
    fn send_signal(&mut self, now: Instant, to: NodeId, payload: Vec<u8>) {
        self.0.send_signal(now, to, payload);
    }
    fn poll_output(&mut self) -> Option<netsim::Output<NodeId, Event>> {
        Some(match self.0.poll_output()? {
            Output::Transmit { link, bytes } => netsim::Output::Transmit { link, bytes },
            Output::Connect { peer, initiator } => netsim::Output::Connect { peer, initiator },
            Output::Disconnect { peer, .. } => netsim::Output::Disconnect { peer },
            Output::Signal { to, payload } => netsim::Output::Signal { to, payload },
            Output::Event(Event::Signal { from, payload }) => {
                netsim::Output::LinkSignal { from, payload }
            }
            Output::Event(event) => netsim::Output::Event(event),
            other => panic!("the harness does not know this output: {other:?}"),
        })
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    fn links(&self) -> Vec<NodeId> {
        self.0.links()
    }
}

/// The simulated network.
pub struct Net {
    engine: Engine<Mesh>,
    pub ids: Vec<NodeId>,
    pub events: Vec<(usize, Event)>,
    /// When each of `events` happened.
    pub event_times: Vec<Instant>,
    pub dead: BTreeSet<usize>,
}

impl Net {
    pub fn new(n: usize, config: &Config) -> Self {
        let mut engine = Engine::new(
            Instant::from_millis(1_700_000_000_000),
            NetConfig::default(),
            ChaCha8Rng::seed_from_u64(1),
            ChaCha8Rng::seed_from_u64(2),
        );
        engine.server().rule = Rule {
            closest: 5,
            random: 3,
            attempts: 64,
        };
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let mut secret = [0u8; 32];
            secret[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            let node = Node::new(secret, config.clone(), i as u64);
            let id = node.local_id();
            ids.push(id);
            engine.add_node(Mesh(node), id.as_bytes()[..8].to_vec());
        }
        Net {
            engine,
            ids,
            events: Vec::new(),
            event_times: Vec::new(),
            dead: BTreeSet::new(),
        }
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.engine.now()
    }

    /// Live node `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.engine.node(i as u32).unwrap().0
    }

    /// The live nodes, with their indices.
    pub fn live_nodes(&self) -> Vec<(usize, &Node)> {
        (0..self.ids.len())
            .filter_map(|i| self.engine.node(i as u32).map(|m| (i, &m.0)))
            .collect()
    }

    /// The node joins: the server answers with its closest and a few random joined peers, and
    /// introduces it to them.
    pub fn join(&mut self, i: usize) {
        self.engine.join(i as u32);
        self.record();
    }

    /// Crash a node without notice: its neighbours notice after a few seconds.
    pub fn crash(&mut self, i: usize) {
        self.dead.insert(i);
        self.engine.crash(i as u32);
    }

    fn record(&mut self) {
        for (at, slot, event) in self.engine.drain_events() {
            self.events.push((slot as usize, event));
            self.event_times.push(at);
        }
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Instant) {
        while self.engine.step(until).is_some() {
            self.record();
        }
        self.engine.advance_to(until);
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now() + d;
        self.run_until(until);
    }

    /// Mutual up links between live nodes.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (a, peers) in self.engine.mutual_links().iter().enumerate() {
            for &b in peers {
                if a < b as usize {
                    out.push((a, b as usize));
                }
            }
        }
        out
    }

    /// Connected components among live nodes (by mutual up links).
    pub fn components(&self) -> usize {
        self.engine.components()
    }

    pub fn do_with<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let now = self.now();
        let r = f(&mut self.engine.node_mut(i as u32).unwrap().0, now);
        self.engine.drive(i as u32);
        self.record();
        r
    }

    pub fn index_of(&self, id: &NodeId) -> usize {
        self.engine.slot_of(id).unwrap() as usize
    }
}
