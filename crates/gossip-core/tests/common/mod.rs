//! Many gossip nodes on the shared network engine ([`netsim`]): a fixed random graph of links with
//! seeded latency (10-100 ms per link) and loss, links that go down at a crashed node's neighbours one
//! to three seconds later, and nodes' timers in virtual time.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use gossip_core::Instant;
use gossip_core::{Config, Event, Identity, MessageId, Node, NodeId, Output};
use netsim::{Core, Engine, NetConfig};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const TOPIC: &str = "sim";

/// What happened to one broadcast.
#[derive(Debug, Default, Clone)]
pub struct Broadcast {
    pub origin: usize,
    /// Receiver index -> hops.
    pub receivers: BTreeMap<usize, u8>,
}

/// A gossip node as the engine's core. It can be armed to crash the moment it accepts a message,
/// before any of its outputs leave it.
struct Gossip {
    node: Node,
    out: VecDeque<Output>,
    crash_on: Option<MessageId>,
    halted: bool,
}

impl Core for Gossip {
    type Id = NodeId;
    type Time = Instant;
    type Event = Event;

    fn local_id(&self) -> NodeId {
        self.node.local_id()
    }
    fn key(id: &NodeId) -> [u8; 20] {
        *id.as_bytes()
    }
    fn handle_message(&mut self, now: Instant, from: NodeId, bytes: &[u8]) {
        self.node.handle_message(now, from, bytes);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.node.handle_timeout(now);
    }
    fn handle_peer_up(&mut self, now: Instant, peer: NodeId, _: Vec<u8>, _: Vec<u8>) {
        self.node.handle_peer_up(now, peer);
    }
    fn handle_peer_down(&mut self, now: Instant, peer: NodeId) {
        self.node.handle_peer_down(now, peer);
    }
    fn poll_output(&mut self) -> Option<netsim::Output<NodeId, Event>> {
        if self.out.is_empty() {
            while let Some(output) = self.node.poll_output() {
                self.out.push_back(output);
            }
            let armed = self.crash_on;
            if self.out.iter().any(
                |o| matches!(o, Output::Event(Event::Delivered { id, .. }) if Some(*id) == armed),
            ) {
                self.halted = true;
                self.out.retain(|o| matches!(o, Output::Event(_)));
            }
        }
        Some(match self.out.pop_front()? {
            Output::Transmit { to, bytes } => netsim::Output::Transmit { link: to, bytes },
            Output::Event(event) => netsim::Output::Event(event),
            other => panic!("an output this adapter does not know: {other:?}"),
        })
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.node.poll_timeout()
    }
    fn halted(&self) -> bool {
        self.halted
    }
}

pub struct Sim {
    pub seed: u64,
    engine: Engine<Gossip>,
    pub ids: Vec<NodeId>,
    rng: ChaCha8Rng,
    /// The graph as built (crashes do not change it).
    pub links: Vec<BTreeSet<usize>>,
    pub broadcasts: BTreeMap<MessageId, Broadcast>,
    pub duplicate_deliveries: u64,
}

pub fn start() -> Instant {
    Instant::from_millis(1_700_000_000_000)
}

impl Sim {
    /// `n` nodes with this configuration, on a random connected graph of average degree about
    /// `degree`; 1% of the frames are lost.
    pub fn new(seed: u64, n: usize, degree: usize, config: Config) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let net = NetConfig {
            loss: 0.01,
            detect_min: Duration::from_secs(1),
            detect_max: Duration::from_secs(3),
            ..NetConfig::default()
        };
        let net_rng = ChaCha8Rng::seed_from_u64(rng.next_u64());
        let server_rng = ChaCha8Rng::seed_from_u64(rng.next_u64());
        let mut engine = Engine::new(start(), net, net_rng, server_rng);
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let secret: [u8; 32] = rng.random();
            let mut node = Node::new(
                Identity::from_secret_bytes(&secret),
                config.clone(),
                seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            );
            node.subscribe(TOPIC).expect("short topic");
            ids.push(node.local_id());
            let gossip = Gossip {
                node,
                out: VecDeque::new(),
                crash_on: None,
                halted: false,
            };
            engine.add_node(gossip, Vec::new());
        }
        let mut sim = Self {
            seed,
            engine,
            ids,
            rng,
            links: vec![BTreeSet::new(); n],
            broadcasts: BTreeMap::new(),
            duplicate_deliveries: 0,
        };
        // A random tree keeps the graph connected; random extra edges bring the degree up.
        for i in 1..n {
            let j = sim.rng.random_range(0..i);
            sim.link(i, j);
        }
        let target_edges = n * degree / 2;
        let mut edges = n - 1;
        while edges < target_edges {
            let a = sim.rng.random_range(0..n);
            let b = sim.rng.random_range(0..n);
            if a != b && !sim.links[a].contains(&b) {
                sim.link(a, b);
                edges += 1;
            }
        }
        sim
    }

    fn link(&mut self, a: usize, b: usize) {
        self.links[a].insert(b);
        self.links[b].insert(a);
        self.engine.link(a as u32, b as u32);
        self.record();
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.engine.now()
    }

    /// Live node `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.engine.node(i as u32).expect("a live node").node
    }

    /// Whether node `i` crashed.
    pub fn crashed(&self, i: usize) -> bool {
        !self.engine.is_live(i as u32)
    }

    /// Crash `node` the moment it accepts message `id`, before any of its outputs leave it.
    pub fn crash_on_receipt(&mut self, node: usize, id: MessageId) {
        if let Some(g) = self.engine.node_mut(node as u32) {
            g.crash_on = Some(id);
        }
    }

    pub fn publish(&mut self, origin: usize, payload: Vec<u8>) -> MessageId {
        let now = self.now();
        let node = &mut self
            .engine
            .node_mut(origin as u32)
            .expect("live origin")
            .node;
        let id = node.publish(now, TOPIC, payload).expect("valid message");
        self.broadcasts.insert(
            id,
            Broadcast {
                origin,
                receivers: BTreeMap::new(),
            },
        );
        self.engine.drive(origin as u32);
        self.record();
        id
    }

    /// Crash `node` now: it stops, and each neighbour sees its link go down after a delay.
    pub fn crash(&mut self, node: usize) {
        self.engine.crash(node as u32);
    }

    /// Runs every event and timer due up to `until`.
    pub fn run_until(&mut self, until: Instant) {
        while self.engine.step(until).is_some() {
            self.record();
        }
        self.engine.advance_to(until);
    }

    fn record(&mut self) {
        for (_, slot, event) in self.engine.drain_events() {
            if let Event::Delivered { id, hops, .. } = event
                && let Some(broadcast) = self.broadcasts.get_mut(&id)
                && broadcast.receivers.insert(slot as usize, hops).is_some()
            {
                self.duplicate_deliveries += 1;
            }
        }
    }

    pub fn live(&self) -> usize {
        self.engine.live_slots().len()
    }

    pub fn frames_sent(&self) -> u64 {
        self.engine.stats().frames_sent
    }

    pub fn frames_lost(&self) -> u64 {
        self.engine.stats().frames_lost
    }

    /// Payload transmissions of the live nodes.
    pub fn payload_transmissions(&self) -> u64 {
        self.sum(gossip_core::Stats::payload_transmissions)
    }

    /// Sums a counter over the live nodes.
    pub fn sum(&self, f: impl Fn(&gossip_core::Stats) -> u64) -> u64 {
        self.engine.nodes().map(|g| f(g.node.stats())).sum()
    }

    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// Asserts that broadcast `id` reached each of `nodes` but its origin; `what` names it in the
    /// failure.
    pub fn assert_reached(
        &self,
        id: MessageId,
        nodes: impl IntoIterator<Item = usize>,
        what: &str,
    ) {
        let broadcast = &self.broadcasts[&id];
        let missed: Vec<usize> = nodes
            .into_iter()
            .filter(|n| *n != broadcast.origin && !broadcast.receivers.contains_key(n))
            .collect();
        assert!(
            missed.is_empty(),
            "{what} from {} missed nodes {missed:?}",
            broadcast.origin
        );
    }
}
