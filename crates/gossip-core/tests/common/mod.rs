//! A small deterministic network for many gossip nodes: frames are queued by delivery time, each with a
//! latency and a loss drawn from one seeded generator, and nodes' timers fire in virtual time.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use gossip_core::Instant;
use gossip_core::{Config, Event, Identity, MessageId, Node, NodeId, Output};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const TOPIC: &str = "sim";

enum Ev {
    Frame {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
    PeerDown {
        at: usize,
        peer: usize,
    },
}

/// What happened to one broadcast.
#[derive(Debug, Default, Clone)]
pub struct Broadcast {
    pub origin: usize,
    /// Receiver index -> hops.
    pub receivers: BTreeMap<usize, u8>,
}

pub struct Sim {
    pub seed: u64,
    pub nodes: Vec<Node>,
    pub ids: Vec<NodeId>,
    index: BTreeMap<NodeId, usize>,
    pub now: Instant,
    queue: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    rng: ChaCha8Rng,
    /// Per-mille probability that a frame is lost.
    pub loss_per_mille: u32,
    /// One-way latency range in milliseconds.
    pub latency_ms: (u64, u64),
    /// How long after a crash the neighbours see the link go down, in milliseconds.
    pub down_delay_ms: (u64, u64),
    pub crashed: Vec<bool>,
    pub links: Vec<BTreeSet<usize>>,
    pub broadcasts: BTreeMap<MessageId, Broadcast>,
    /// Crash this node the moment it accepts this message, before any of its outputs leave it.
    pub crash_on_receipt: BTreeMap<usize, MessageId>,
    pub frames_sent: u64,
    pub frames_lost: u64,
    pub duplicate_deliveries: u64,
    next_timeout: Vec<Option<Instant>>,
}

pub fn start() -> Instant {
    Instant::from_millis(1_700_000_000_000)
}

impl Sim {
    /// `n` nodes with the default configuration, on a random connected graph of average degree about
    /// `degree`.
    pub fn new(seed: u64, n: usize, degree: usize, config: Config) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let secret: [u8; 32] = rng.random();
            let node = Node::new(
                Identity::from_secret_bytes(&secret),
                config.clone(),
                seed.wrapping_mul(1_000_003).wrapping_add(i as u64),
            );
            nodes.push(node);
        }
        let ids: Vec<NodeId> = nodes.iter().map(Node::local_id).collect();
        let index = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let mut sim = Self {
            seed,
            nodes,
            ids,
            index,
            now: start(),
            queue: BTreeMap::new(),
            seq: 0,
            rng,
            loss_per_mille: 10,
            latency_ms: (10, 100),
            down_delay_ms: (1_000, 3_000),
            crashed: vec![false; n],
            links: vec![BTreeSet::new(); n],
            broadcasts: BTreeMap::new(),
            crash_on_receipt: BTreeMap::new(),
            frames_sent: 0,
            frames_lost: 0,
            duplicate_deliveries: 0,
            next_timeout: vec![None; n],
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
        for i in 0..n {
            sim.nodes[i].subscribe(TOPIC).expect("short topic");
        }
        sim
    }

    fn link(&mut self, a: usize, b: usize) {
        self.links[a].insert(b);
        self.links[b].insert(a);
        let now = self.now;
        let (ida, idb) = (self.ids[a], self.ids[b]);
        self.nodes[a].handle_peer_up(now, idb);
        self.nodes[b].handle_peer_up(now, ida);
        self.drain(a);
        self.drain(b);
    }

    pub fn publish(&mut self, origin: usize, payload: Vec<u8>) -> MessageId {
        let now = self.now;
        let id = self.nodes[origin]
            .publish(now, TOPIC, payload)
            .expect("valid message");
        self.broadcasts.insert(
            id,
            Broadcast {
                origin,
                receivers: BTreeMap::new(),
            },
        );
        self.drain(origin);
        id
    }

    /// Crash `node` now: it stops, and each neighbour sees its link go down after a delay.
    pub fn crash(&mut self, node: usize) {
        if self.crashed[node] {
            return;
        }
        self.crashed[node] = true;
        self.next_timeout[node] = None;
        for peer in self.links[node].clone() {
            let delay = self
                .rng
                .random_range(self.down_delay_ms.0..=self.down_delay_ms.1);
            let at = self.now + Duration::from_millis(delay);
            self.schedule(
                at,
                Ev::PeerDown {
                    at: peer,
                    peer: node,
                },
            );
        }
    }

    fn schedule(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.insert((at, self.seq), ev);
    }

    /// Hands node `i`'s outputs to the network.
    fn drain(&mut self, i: usize) {
        let mut crash_now = false;
        let mut outputs = Vec::new();
        while let Some(output) = self.nodes[i].poll_output() {
            outputs.push(output);
        }
        for output in &outputs {
            if let Output::Event(Event::Delivered { id, hops, .. }) = output {
                if let Some(broadcast) = self.broadcasts.get_mut(id)
                    && broadcast.receivers.insert(i, *hops).is_some()
                {
                    self.duplicate_deliveries += 1;
                }
                if self.crash_on_receipt.get(&i) == Some(id) {
                    crash_now = true;
                }
            }
        }
        if crash_now {
            self.crash(i);
            return;
        }
        for output in outputs {
            if let Output::Transmit { to, bytes } = output {
                let to = self.index[&to];
                self.frames_sent += 1;
                if self.rng.random_range(0..1000) < self.loss_per_mille {
                    self.frames_lost += 1;
                    continue;
                }
                let latency = self.rng.random_range(self.latency_ms.0..=self.latency_ms.1);
                let at = self.now + Duration::from_millis(latency);
                self.schedule(at, Ev::Frame { from: i, to, bytes });
            }
        }
        self.next_timeout[i] = self.nodes[i].poll_timeout();
    }

    /// Runs every event and timer due up to `until`.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            let next_event = self.queue.first_key_value().map(|(k, _)| k.0);
            let next_timer = self
                .next_timeout
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.map(|t| (t, i)))
                .min();
            let event_first = match (next_event, next_timer) {
                (None, None) => break,
                (Some(e), Some((t, _))) => e <= t,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if event_first {
                if next_event.is_some_and(|at| at > until) {
                    break;
                }
                let Some(((at, _), ev)) = self.queue.pop_first() else {
                    break;
                };
                self.now = self.now.max(at);
                self.handle(ev);
            } else {
                let Some((at, i)) = next_timer else { break };
                if at > until {
                    break;
                }
                self.now = self.now.max(at);
                let now = self.now;
                self.nodes[i].handle_timeout(now);
                self.drain(i);
            }
        }
        self.now = self.now.max(until);
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Frame { from, to, bytes } => {
                // Frames already on the wire when their sender crashed still arrive; frames to a link
                // its receiver has closed reach the node, which must drop them itself.
                if self.crashed[to] {
                    return;
                }
                let from_id = self.ids[from];
                self.nodes[to].handle_message(now, from_id, &bytes);
                self.drain(to);
            }
            Ev::PeerDown { at, peer } => {
                if self.crashed[at] {
                    return;
                }
                self.links[at].remove(&peer);
                let peer_id = self.ids[peer];
                self.nodes[at].handle_peer_down(now, peer_id);
                self.drain(at);
            }
        }
    }

    pub fn live(&self) -> usize {
        self.crashed.iter().filter(|c| !**c).count()
    }

    pub fn payload_transmissions(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.stats().payload_transmissions())
            .sum()
    }

    /// Sums a counter over all nodes.
    pub fn sum(&self, f: impl Fn(&gossip_core::Stats) -> u64) -> u64 {
        self.nodes.iter().map(|n| f(n.stats())).sum()
    }

    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
}
