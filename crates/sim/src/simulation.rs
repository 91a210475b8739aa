//! The simulation: nodes of one [`Protocol`] on the [`netsim`] engine, and the measurements.

use core::time::Duration;

use kademlia_core::{Instant, NodeId};
use netsim::{Core, Engine, Network, Server, mix64};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::protocol::{Event, Output, Protocol, ServerInput};
use crate::recorder::{
    self, BroadcastRecord, DirectRecord, GetRecord, GetResult, LookupRecord, PutRecord, PutResult,
    Recorder,
};
use netsim::NetConfig;

pub use netsim::NetStats;

/// The node counters ([`Protocol::counters`]) a progress line shows, summed over the live nodes.
const PROGRESS_COUNTERS: [&str; 4] = [
    "links up",
    "links evicted",
    "gossip tree changes",
    "gossip tree holds",
];

/// Settings of a [`Simulation`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The network model.
    pub net: NetConfig,
    /// The topic every node subscribes to and broadcasts on.
    pub topic: String,
    /// Size of broadcast and direct payloads, in bytes. Default 64.
    pub payload_len: usize,
    /// Virtual time at the start (the cores see it as µs since the Unix epoch). Default 2025-01-01.
    pub start: Instant,
    /// 0 (the default): a sequential run, every event in the order it was made. N > 0: a sharded
    /// run over N shards, run by as many threads as the machine has cores (at most N); every N gives
    /// the same run for a seed, which differs from the sequential one ([`netsim::Engine::set_shards`]).
    /// A few shards per core even out the load: 8 on this project's two cores.
    pub shards: usize,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            net: NetConfig::default(),
            topic: "sim".to_owned(),
            payload_len: 64,
            start: Instant::from_millis(1_735_689_600_000),
            shards: 0,
        }
    }
}

/// A fake DTLS certificate fingerprint: 32 bytes derived from the node's seed.
fn fingerprint(seed: u64) -> Vec<u8> {
    (0..4u64)
        .flat_map(|i| mix64(seed ^ 0xd715_f1e9 ^ i.wrapping_mul(0x1000_0000_01b3)).to_le_bytes())
        .collect()
}

/// A [`Protocol`] as the engine's [`Core`]: the thin adapter between the two.
#[derive(Debug)]
pub struct Driven<P>(pub P);

impl<P: Protocol> Core for Driven<P> {
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
    fn handle_server(&mut self, now: Instant, input: ServerInput) {
        self.0.handle_server(now, input);
    }
    fn send_signal(&mut self, now: Instant, to: NodeId, payload: Vec<u8>) {
        self.0.send_signal(now, to, payload);
    }
    fn poll_output(&mut self) -> Option<netsim::Output<NodeId, Event>> {
        Some(match self.0.poll_output()? {
            Output::Transmit { link, bytes } => netsim::Output::Transmit { link, bytes },
            Output::Connect { peer, initiator } => netsim::Output::Connect { peer, initiator },
            Output::Disconnect { peer } => netsim::Output::Disconnect { peer },
            Output::Signal { to, payload } => netsim::Output::Signal { to, payload },
            Output::Event(Event::Signal { from, payload }) => {
                netsim::Output::LinkSignal { from, payload }
            }
            Output::Event(event) => netsim::Output::Event(event),
        })
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }
    /// Mesh frame kinds by their second byte; gossip frames (mesh kind 2) by gossip frame kind at
    /// 16 + kind.
    fn frame_kind(bytes: &[u8]) -> usize {
        match (bytes.get(1), bytes.get(3)) {
            (Some(2), Some(&g)) => 16 + usize::from(g.min(7)),
            (Some(&k), _) => usize::from(k.min(15)),
            (None, _) => 15,
        }
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        self.0.counters()
    }
    fn links(&self) -> Vec<NodeId> {
        self.0.links()
    }
}

/// Many nodes of protocol `P` on one virtual clock.
#[derive(Debug)]
pub struct Simulation<P: Protocol> {
    config: SimConfig,
    node_config: P::Config,
    master: ChaCha8Rng,
    engine: Engine<Driven<P>>,
    secrets: Vec<[u8; 32]>,
    retired_payload: u64,
    progress: Option<Progress>,
    /// Measurements.
    pub recorder: Recorder,
}

/// When the next progress line is due, and what the last one showed (for the event rate).
#[derive(Debug, Clone, Copy)]
struct Progress {
    every: Duration,
    next: Instant,
    started: std::time::Instant,
    last_wall: std::time::Instant,
    last_events: u64,
}

impl<P: Protocol> Simulation<P> {
    /// An empty simulation; every node's key and seed and the network's randomness derive from `seed`.
    ///
    /// # Panics
    /// When `config.shards` is not 0 and the network allows a zero delay between two slots or a slot
    /// and the server (a sharded run needs a lookahead); [`Simulation::try_new`] returns that as an
    /// error instead. [`SimConfig::default`]'s network never does.
    pub fn new(seed: u64, config: SimConfig, node_config: P::Config) -> Self {
        Self::try_new(seed, config, node_config).unwrap_or_else(|err| panic!("sim: {err}"))
    }

    /// [`Simulation::new`], with a refused shard count as an error.
    ///
    /// # Errors
    /// `config.shards` is not 0 and the network's link, server or failure-detection delay may be zero.
    pub fn try_new(seed: u64, config: SimConfig, node_config: P::Config) -> Result<Self, String> {
        let mut master = ChaCha8Rng::seed_from_u64(seed);
        let net_rng = ChaCha8Rng::seed_from_u64(master.next_u64());
        let server_rng = ChaCha8Rng::seed_from_u64(master.next_u64());
        let mut engine = Engine::new(config.start, config.net.clone(), net_rng, server_rng);
        if config.shards > 0 {
            engine.set_shards(config.shards)?;
        }
        Ok(Self {
            engine,
            config,
            node_config,
            master,
            secrets: Vec::new(),
            retired_payload: 0,
            progress: None,
            recorder: Recorder::default(),
        })
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.engine.now()
    }

    /// Network counters.
    pub fn stats(&self) -> NetStats {
        self.engine.stats()
    }

    /// The network model (to add partitions or change the loss rate).
    pub fn network(&mut self) -> &mut Network<Instant> {
        self.engine.network()
    }

    /// The signaling server's introduction rule.
    pub fn server(&mut self) -> &mut Server {
        self.engine.server()
    }

    /// Number of slots (nodes ever created).
    pub fn len(&self) -> usize {
        self.engine.len()
    }

    /// Whether no node was ever created.
    pub fn is_empty(&self) -> bool {
        self.engine.is_empty()
    }

    /// The id of a slot's current node.
    pub fn id(&self, slot: u32) -> NodeId {
        self.engine.id(slot)
    }

    /// The slot of an id.
    pub fn slot_of(&self, id: &NodeId) -> Option<u32> {
        self.engine.slot_of(id)
    }

    /// Whether a slot's node is running.
    pub fn is_live(&self, slot: u32) -> bool {
        self.engine.is_live(slot)
    }

    /// When a live slot last joined.
    pub fn joined_at(&self, slot: u32) -> Option<Instant> {
        self.engine.joined_at(slot)
    }

    /// Slots whose node runs, in order.
    pub fn live_slots(&self) -> Vec<u32> {
        self.engine.live_slots()
    }

    /// A slot's node.
    pub fn node(&self, slot: u32) -> Option<&P> {
        self.engine.node(slot).map(|d| &d.0)
    }

    /// A slot's node, mutably (inputs given this way must be followed by [`Simulation::drive`]).
    pub fn node_mut(&mut self, slot: u32) -> Option<&mut P> {
        self.engine.node_mut(slot).map(|d| &mut d.0)
    }

    /// Create a node with a fresh key drawn from the master generator; it does not join yet.
    pub fn add_node(&mut self) -> u32 {
        let mut secret = [0u8; 32];
        self.master.fill_bytes(&mut secret);
        let seed = self.master.next_u64();
        let mut node = P::create(secret, seed, &self.node_config);
        node.subscribe(&self.config.topic);
        self.secrets.push(secret);
        self.engine.add_node(Driven(node), fingerprint(seed))
    }

    /// Start `slot`'s node: it joins, and its join reaches the server after the server latency.
    pub fn join(&mut self, slot: u32) {
        self.engine.join(slot);
        self.record();
    }

    /// Crash `slot` without notice: its links die (each survivor notices after the detection delay), the
    /// server drops it after the detection delay, every event on its way to it is lost.
    pub fn crash(&mut self, slot: u32) {
        if let Some(Driven(node)) = self.engine.crash(slot) {
            self.retired_payload += node.payload_transmissions();
        }
    }

    /// Restart a crashed slot with the same key (and a new randomness seed), and join again.
    pub fn restart(&mut self, slot: u32) {
        if self.is_live(slot) {
            return;
        }
        let seed = self.master.next_u64();
        let mut node = P::create(self.secrets[slot as usize], seed, &self.node_config);
        node.subscribe(&self.config.topic);
        self.engine.restart(slot, Driven(node), fingerprint(seed));
        self.record();
    }

    /// Cut the nodes with `side_a[slot]` from the others between `start` and `end`. Links across the cut
    /// that are open when it starts fail, each side noticing after the detection delay; links cannot
    /// open across it; the signaling server still reaches everyone.
    pub fn partition(&mut self, side_a: Vec<bool>, start: Instant, end: Instant) {
        self.engine.partition(side_a, start, end);
    }

    /// Broadcast message `index` (tagged payload) from `slot`; records its publish time.
    pub fn broadcast(&mut self, slot: u32, index: u32) -> bool {
        let now = self.now();
        let data = recorder::payload(true, index, self.config.payload_len);
        let i = index as usize;
        if self.recorder.broadcasts.len() <= i {
            self.recorder
                .broadcasts
                .resize_with(i + 1, || BroadcastRecord {
                    origin: u32::MAX,
                    published: now,
                    delivered: Vec::new(),
                    deliveries: Vec::new(),
                    duplicates: 0,
                });
        }
        self.recorder.broadcasts[i].origin = slot;

        self.recorder.broadcasts[i].published = now;
        let topic = self.config.topic.clone();
        let Some(Driven(node)) = self.engine.node_mut(slot) else {
            return false;
        };
        let ok = node.broadcast(now, &topic, data);
        self.drive(slot);
        ok
    }

    /// Start a Kademlia iterative lookup (`dht_find_node`) of `target` at `slot`.
    pub fn find_node(&mut self, slot: u32, target: NodeId) {
        self.start_lookup(slot, target, true);
    }

    /// Start a mesh-routed probe lookup (`find_node`) of `target` at `slot`.
    pub fn probe(&mut self, slot: u32, target: NodeId) {
        self.start_lookup(slot, target, false);
    }

    fn start_lookup(&mut self, slot: u32, target: NodeId, dht: bool) {
        let now = self.now();
        let Some(Driven(node)) = self.engine.node_mut(slot) else {
            return;
        };
        let query = if dht {
            node.dht_find_node(now, target)
        } else {
            node.find_node(now, target)
        };
        let record = LookupRecord {
            from: slot,
            target,
            query,
            started: now,
            finished: None,
            links: None,
        };
        if dht {
            self.recorder.lookups.push(record);
        } else {
            self.recorder.probes.push(record);
        }
        self.drive(slot);
    }

    /// Send a direct message (tagged with the next direct index) from `slot` to `to`.
    pub fn send_direct(&mut self, slot: u32, to: u32) {
        let now = self.now();
        let index = u32::try_from(self.recorder.directs.len()).unwrap_or(u32::MAX);
        let data = recorder::payload(false, index, self.config.payload_len);
        let to_id = self.engine.id(to);
        let Some(Driven(node)) = self.engine.node_mut(slot) else {
            return;
        };
        let id = node.send(now, to_id, data);
        self.recorder.directs.push(DirectRecord {
            from: slot,
            to,
            id,
            sent: now,
            delivered: None,
            failed: id.is_none(),
        });
        self.drive(slot);
    }

    /// Put DHT record `index` ([`recorder::dht_name`], [`recorder::dht_value`]) from `slot`.
    pub fn dht_put(&mut self, slot: u32, index: u32) {
        let now = self.now();
        let Some(Driven(node)) = self.engine.node_mut(slot) else {
            return;
        };
        let query = node.dht_put(now, &recorder::dht_name(index), recorder::dht_value(index));
        self.recorder.puts.push(PutRecord {
            from: slot,
            index,
            query,
            started: now,
            finished: None,
        });
        self.drive(slot);
    }

    /// Get DHT record `index` at `slot`.
    pub fn dht_get(&mut self, slot: u32, index: u32) {
        let now = self.now();
        let Some(Driven(node)) = self.engine.node_mut(slot) else {
            return;
        };
        let query = node.dht_get(now, &recorder::dht_name(index));
        self.recorder.gets.push(GetRecord {
            from: slot,
            index,
            query,
            started: now,
            finished: None,
        });
        self.drive(slot);
    }

    /// One progress line on standard error: virtual time, events (and events per wall second since the
    /// last line), queue, live nodes, wall time, frames and the [`PROGRESS_COUNTERS`].
    fn print_progress(
        progress: &mut Progress,
        engine: &Engine<Driven<P>>,
        start: Instant,
        at: Instant,
    ) {
        progress.next = at + progress.every;
        let now = std::time::Instant::now();
        let stats = engine.stats();
        let events = stats.events;
        let rate = (events - progress.last_events) as f64
            / now
                .duration_since(progress.last_wall)
                .as_secs_f64()
                .max(1e-9);
        let wall = now.duration_since(progress.started).as_secs_f64();
        progress.last_wall = now;
        progress.last_events = events;
        let counters: Vec<String> = engine
            .counters()
            .into_iter()
            .filter(|(name, _)| PROGRESS_COUNTERS.contains(name))
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        eprintln!(
            "sim: t={:.0}s events={events} ({rate:.0}/s) queued={} live={} wall={wall:.1}s frames={} {}",
            (at - start).as_secs_f64(),
            engine.queued(),
            engine.nodes().count(),
            stats.frames_sent,
            counters.join(" ")
        );
    }

    /// Print a progress line to standard error every `every` of virtual time (`None`: never).
    pub fn set_progress(&mut self, every: Option<Duration>) {
        let wall = std::time::Instant::now();
        self.progress = every.map(|every| Progress {
            every,
            next: self.now() + every,
            started: wall,
            last_wall: wall,
            last_events: self.engine.stats().events,
        });
    }

    /// Run every event due up to `until`, then set the clock to `until`. A sharded run's shards run on
    /// as many threads as there are cores ([`SimConfig::shards`]).
    pub fn run_until(&mut self, until: Instant) {
        let (recorder, progress, start) =
            (&mut self.recorder, &mut self.progress, self.config.start);
        self.engine.run_until_each(until, |engine, at| {
            Self::record_from(engine, recorder);
            if let Some(progress) = progress.as_mut()
                && at >= progress.next
            {
                Self::print_progress(progress, engine, start, at);
            }
        });
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now() + d;
        self.run_until(until);
    }

    /// Connected components of the live nodes over verified links (a link counts when both ends list
    /// it). Isolated live nodes are components of their own.
    pub fn components(&self) -> usize {
        self.engine.components()
    }

    /// The final mesh's shape, over verified links between live nodes: mean degree, and the
    /// eccentricity (largest hop distance to any reachable live node) of up to `samples` live nodes
    /// spread evenly over the slots, as (median, largest). Deterministic.
    pub fn topology(&self, samples: usize) -> (f64, u32, u32) {
        self.engine.topology(samples)
    }

    /// The mesh of live nodes over verified links, by slot (a link counts when both ends list it).
    pub fn mutual_links(&self) -> Vec<Vec<u32>> {
        self.engine.mutual_links()
    }

    /// The nodes' own counters ([`Protocol::counters`]) summed over the live nodes, in the order the
    /// first live node lists them.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        self.engine.counters()
    }

    /// Payload transmissions counted by every node so far, crashed ones included.
    pub fn payload_transmissions(&self) -> u64 {
        self.retired_payload
            + self
                .engine
                .nodes()
                .map(|d| d.0.payload_transmissions())
                .sum::<u64>()
    }

    /// Drain `slot`'s outputs and schedule its timer: call after every input given to it.
    pub fn drive(&mut self, slot: u32) {
        self.engine.drive(slot);
        self.record();
    }

    /// Hand the events the nodes produced to the recorder.
    fn record(&mut self) {
        Self::record_from(&mut self.engine, &mut self.recorder);
    }

    /// Hand the events `engine`'s nodes produced to `recorder`.
    fn record_from(engine: &mut Engine<Driven<P>>, recorder: &mut Recorder) {
        for (now, slot, ev) in engine.drain_events() {
            match ev {
                Event::Message {
                    data,
                    hops,
                    broadcast: _,
                    from: _,
                } => recorder.on_message(now, slot, &data, hops),
                Event::DhtLookupFinished {
                    id,
                    closest,
                    rounds,
                } => recorder.on_dht_lookup(now, slot, id, &closest, rounds),
                Event::LookupFinished {
                    id,
                    peers,
                    rounds,
                    hops,
                } => {
                    recorder.on_probe(now, slot, id, &peers, rounds, hops);
                }
                Event::DirectFailed { id } => recorder.on_direct_failed(slot, id),
                Event::PutFinished {
                    id,
                    stored,
                    asked,
                    refused,
                } => recorder.on_put(
                    slot,
                    id,
                    PutResult {
                        at: now,
                        stored,
                        asked,
                        refused,
                    },
                ),
                Event::GetFinished {
                    id,
                    value,
                    answered,
                    hops,
                    rounds,
                } => recorder.on_get(
                    slot,
                    id,
                    GetResult {
                        at: now,
                        value,
                        answered,
                        hops,
                        rounds,
                    },
                ),
                Event::Signal { .. } | Event::PeerConnected { .. } | Event::Other => {}
            }
        }
    }
}
