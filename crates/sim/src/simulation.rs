//! The simulation: nodes, the event loop that drives them, the signaling server and the link layer.

use core::hash::{BuildHasherDefault, Hasher};
use core::time::Duration;
use std::collections::HashMap;

use kademlia_core::{Instant, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::net::{NetConfig, Network, Partition, mix64};
use crate::protocol::{Event, Output, Protocol, ServerInput};
use crate::queue::EventQueue;
use crate::recorder::{self, BroadcastRecord, DirectRecord, LookupRecord, Recorder};
use crate::server::Server;

/// The node counters ([`Protocol::counters`]) a progress line shows, summed over the live nodes.
const PROGRESS_COUNTERS: [&str; 4] = [
    "links up",
    "links evicted",
    "gossip tree changes",
    "gossip tree holds",
];
/// A fast, deterministic hasher for ids and slots (ids are already uniformly random bytes).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }
}

type IdMap<V> = HashMap<NodeId, V, BuildHasherDefault<IdHasher>>;

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
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            net: NetConfig::default(),
            topic: "sim".to_owned(),
            payload_len: 64,
            start: Instant::from_millis(1_735_689_600_000),
        }
    }
}

/// Counters of the simulated network.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NetStats {
    /// Frames handed to the link layer.
    pub frames_sent: u64,
    /// Frames lost to the loss probability.
    pub frames_lost: u64,
    /// Frames dropped by a partition.
    pub frames_cut: u64,
    /// Frames sent on a link that was not open (or already closed).
    pub frames_no_link: u64,
    /// Frames delivered.
    pub frames_delivered: u64,
    /// Bytes delivered.
    pub bytes_delivered: u64,
    /// Links opened.
    pub links_opened: u64,
    /// Link attempts started (initiator side).
    pub links_attempted: u64,
    /// Signals relayed by the server.
    pub signals_relayed: u64,
    /// Signals the server could not deliver (addressee unknown, dead or not joined).
    pub signals_dropped: u64,
    /// Offers that arrived without a matching `Connect{initiator: false}`.
    pub offers_unsolicited: u64,
    /// Offers answered.
    pub offers_answered: u64,
    /// Answers that matched the initiator's attempt (the link then opens unless a side gave up).
    pub answers_matched: u64,
    /// Answers for an attempt the initiator no longer has (replaced, closed or timed out).
    pub answers_stale: u64,
    /// Links that could not open although answered: a side had dropped the attempt, or a partition.
    pub link_up_failed: u64,
    /// Link attempts a node closed before they opened: initiator side, by age (< 1 s, < link timeout
    /// of 10 s, later).
    pub attempts_abandoned: [u64; 3],
    /// Link attempts a node closed before they opened: answerer side.
    pub answers_abandoned: u64,
    /// Timers that a node asked for in the past right after its timeout ran (a core bug if non-zero).
    pub stalled_timers: u64,
    /// Events processed.
    pub events: u64,
    /// Frames delivered, by mesh frame kind (the second byte); gossip frames by gossip frame kind
    /// at 16 + kind.
    pub frames_by_kind: [u64; 24],
    /// Timer events that ran a node's `handle_timeout`.
    pub timers_run: u64,
}

/// The driver's peer connection towards one peer (what a WebRTC `RTCPeerConnection` is to a real driver).
#[derive(Debug, Clone, Copy)]
struct PeerConn {
    peer: u32,
    /// 0 until the answerer sees the offer.
    session: u64,
    initiator: bool,
    answered: bool,
    open: bool,
    created: Instant,
}

#[derive(Debug)]
struct Slot<P> {
    node: Option<P>,
    secret: [u8; 32],
    fingerprint: Vec<u8>,
    incarnation: u32,
    joined_at: Option<Instant>,
    timer: Option<Instant>,
    conns: Vec<PeerConn>,
}

#[derive(Debug)]
enum Ev {
    Timer {
        slot: u32,
    },
    ServerJoin {
        slot: u32,
        incarnation: u32,
    },
    ServerDrop {
        slot: u32,
        incarnation: u32,
    },
    FromServer {
        slot: u32,
        incarnation: u32,
        input: ServerInput,
    },
    Relay {
        from: u32,
        to: NodeId,
        payload: Vec<u8>,
    },
    LinkUp {
        initiator: u32,
        answerer: u32,
        session: u64,
    },
    Data {
        to: u32,
        from: u32,
        session: u64,
        bytes: Vec<u8>,
    },
    Closed {
        slot: u32,
        peer: u32,
        session: u64,
    },
    Cut,
}

const SIGNAL_MAGIC: &[u8; 4] = b"SDP1";
const OFFER: u8 = 0;
const ANSWER: u8 = 1;

fn encode_signal(kind: u8, session: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(13);
    out.extend_from_slice(SIGNAL_MAGIC);
    out.push(kind);
    out.extend_from_slice(&session.to_le_bytes());
    out
}

fn decode_signal(payload: &[u8]) -> Option<(u8, u64)> {
    if payload.len() != 13 || &payload[..4] != SIGNAL_MAGIC {
        return None;
    }
    let session = u64::from_le_bytes(payload[5..13].try_into().ok()?);
    Some((payload[4], session))
}

/// A fake DTLS certificate fingerprint: 32 bytes derived from the node's seed.
fn fingerprint(seed: u64) -> Vec<u8> {
    (0..4u64)
        .flat_map(|i| mix64(seed ^ 0xd715_f1e9 ^ i.wrapping_mul(0x1000_0000_01b3)).to_le_bytes())
        .collect()
}

/// Many nodes of protocol `P` on one virtual clock.
#[derive(Debug)]
pub struct Simulation<P: Protocol> {
    config: SimConfig,
    node_config: P::Config,
    master: ChaCha8Rng,
    queue: EventQueue<Ev>,
    net: Network,
    server: Server,
    slots: Vec<Slot<P>>,
    ids: Vec<NodeId>,
    by_id: IdMap<u32>,
    next_session: u64,
    retired_payload: u64,
    progress: Option<(Duration, Instant, std::time::Instant)>,
    stats: NetStats,
    /// Measurements.
    pub recorder: Recorder,
}

impl<P: Protocol> Simulation<P> {
    /// An empty simulation; every node's key and seed and the network's randomness derive from `seed`.
    pub fn new(seed: u64, config: SimConfig, node_config: P::Config) -> Self {
        let mut master = ChaCha8Rng::seed_from_u64(seed);
        let net = Network::new(
            config.net.clone(),
            ChaCha8Rng::seed_from_u64(master.next_u64()),
        );
        let server = Server::new(ChaCha8Rng::seed_from_u64(master.next_u64()));
        Self {
            queue: EventQueue::new(config.start),
            config,
            node_config,
            master,
            net,
            server,
            slots: Vec::new(),
            ids: Vec::new(),
            by_id: IdMap::default(),
            next_session: 1,
            retired_payload: 0,
            progress: None,
            stats: NetStats::default(),
            recorder: Recorder::default(),
        }
    }

    /// Virtual time now.
    pub fn now(&self) -> Instant {
        self.queue.now()
    }

    /// Network counters.
    pub fn stats(&self) -> NetStats {
        NetStats {
            events: self.queue.processed(),
            ..self.stats.clone()
        }
    }

    /// The network model (to add partitions or change the loss rate).
    pub fn network(&mut self) -> &mut Network {
        &mut self.net
    }

    /// The signaling server's introduction rule.
    pub fn server(&mut self) -> &mut Server {
        &mut self.server
    }

    /// Number of slots (nodes ever created).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no node was ever created.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The id of a slot's current node.
    pub fn id(&self, slot: u32) -> NodeId {
        self.ids[slot as usize]
    }

    /// The slot of an id.
    pub fn slot_of(&self, id: &NodeId) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Whether a slot's node is running.
    pub fn is_live(&self, slot: u32) -> bool {
        self.slots[slot as usize].node.is_some()
    }

    /// When a live slot last joined.
    pub fn joined_at(&self, slot: u32) -> Option<Instant> {
        let s = &self.slots[slot as usize];
        s.node.as_ref().and(s.joined_at)
    }

    /// Slots whose node runs, in order.
    pub fn live_slots(&self) -> Vec<u32> {
        (0..self.slots.len() as u32)
            .filter(|&s| self.is_live(s))
            .collect()
    }

    /// A slot's node.
    pub fn node(&self, slot: u32) -> Option<&P> {
        self.slots[slot as usize].node.as_ref()
    }

    /// A slot's node, mutably (inputs given this way must be followed by [`Simulation::drive`]).
    pub fn node_mut(&mut self, slot: u32) -> Option<&mut P> {
        self.slots[slot as usize].node.as_mut()
    }

    /// Create a node with a fresh key drawn from the master generator; it does not join yet.
    pub fn add_node(&mut self) -> u32 {
        let mut secret = [0u8; 32];
        self.master.fill_bytes(&mut secret);
        let seed = self.master.next_u64();
        let node = P::create(secret, seed, &self.node_config);
        let id = node.local_id();
        let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            node: Some(node),
            secret,
            fingerprint: fingerprint(seed),
            incarnation: 0,
            joined_at: None,
            timer: None,
            conns: Vec::new(),
        });
        self.ids.push(id);
        self.by_id.insert(id, slot);

        let topic = self.config.topic.clone();
        if let Some(node) = self.slots[slot as usize].node.as_mut() {
            node.subscribe(&topic);
        }
        slot
    }

    /// Start `slot`'s node: it joins, and its join reaches the server after the server latency.
    pub fn join(&mut self, slot: u32) {
        let now = self.now();
        let s = &mut self.slots[slot as usize];
        let Some(node) = s.node.as_mut() else {
            return;
        };
        node.join(now);
        s.joined_at = Some(now);
        let incarnation = s.incarnation;
        self.drive(slot);
        let at = now + self.net.server_latency(slot);
        self.queue
            .schedule(at, Ev::ServerJoin { slot, incarnation });
    }

    /// Crash `slot` without notice: its links die (each survivor notices after the detection delay), the
    /// server drops it after the detection delay, every event on its way to it is lost.
    pub fn crash(&mut self, slot: u32) {
        let now = self.now();

        let s = &mut self.slots[slot as usize];
        let Some(node) = s.node.take() else {
            return;
        };
        self.retired_payload += node.payload_transmissions();
        s.incarnation += 1;
        s.timer = None;
        s.joined_at = None;
        let incarnation = s.incarnation;
        let conns = core::mem::take(&mut s.conns);
        for c in conns {
            if c.open {
                let at = now + self.net.detection_delay();
                self.queue.schedule(
                    at,
                    Ev::Closed {
                        slot: c.peer,
                        peer: slot,
                        session: c.session,
                    },
                );
            }
        }
        let at = now + self.net.detection_delay();
        self.queue
            .schedule(at, Ev::ServerDrop { slot, incarnation });
    }

    /// Restart a crashed slot with the same key (and a new randomness seed), and join again.
    pub fn restart(&mut self, slot: u32) {
        if self.is_live(slot) {
            return;
        }
        let seed = self.master.next_u64();
        let s = &mut self.slots[slot as usize];
        let mut node = P::create(s.secret, seed, &self.node_config);
        node.subscribe(&self.config.topic);
        s.node = Some(node);
        s.fingerprint = fingerprint(seed);
        s.incarnation += 1;
        self.join(slot);
    }

    /// Cut the nodes with `side_a[slot]` from the others between `start` and `end`. Links across the cut
    /// that are open when it starts fail, each side noticing after the detection delay; links cannot
    /// open across it; the signaling server still reaches everyone.
    pub fn partition(&mut self, side_a: Vec<bool>, start: Instant, end: Instant) {
        self.net.add_partition(Partition { side_a, start, end });
        self.queue.schedule(start, Ev::Cut);
    }

    fn break_cut_links(&mut self) {
        let now = self.now();
        for slot in 0..self.slots.len() as u32 {
            let conns: Vec<PeerConn> = self.slots[slot as usize]
                .conns
                .iter()
                .filter(|c| c.open && !self.net.reachable(now, slot, c.peer))
                .copied()
                .collect();
            for c in conns {
                let at = now + self.net.detection_delay();
                self.queue.schedule(
                    at,
                    Ev::Closed {
                        slot,
                        peer: c.peer,
                        session: c.session,
                    },
                );
            }
        }
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
        let Some(node) = self.slots[slot as usize].node.as_mut() else {
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
        let Some(node) = self.slots[slot as usize].node.as_mut() else {
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
        let to_id = self.ids[to as usize];
        let Some(node) = self.slots[slot as usize].node.as_mut() else {
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

    /// Print a progress line to standard error every `every` of virtual time (`None`: never).
    pub fn set_progress(&mut self, every: Option<Duration>) {
        self.progress = every.map(|e| (e, self.now() + e, std::time::Instant::now()));
    }

    /// Run every event due up to `until`, then set the clock to `until`.
    pub fn run_until(&mut self, until: Instant) {
        while let Some((at, ev)) = self.queue.pop_until(until) {
            self.dispatch(ev);
            if let Some((every, next, wall)) = &mut self.progress
                && at >= *next
            {
                *next = at + *every;
                let wall = wall.elapsed().as_secs_f64();
                let counters: Vec<String> = self
                    .counters()
                    .into_iter()
                    .filter(|(name, _)| PROGRESS_COUNTERS.contains(name))
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect();
                eprintln!(
                    "sim: t={:.0}s events={} queued={} live={} wall={wall:.1}s frames={} {}",
                    (at - self.config.start).as_secs_f64(),
                    self.queue.processed(),
                    self.queue.len(),
                    self.slots.iter().filter(|s| s.node.is_some()).count(),
                    self.stats.frames_sent,
                    counters.join(" ")
                );
            }
        }
        self.queue.advance_to(until);
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now() + d;
        self.run_until(until);
    }

    /// The mesh of live nodes, by slot: each slot's verified links to live nodes, a link counting when
    /// both ends list it.
    fn mutual_links(&self) -> Vec<Vec<u32>> {
        let links: Vec<Vec<u32>> = self
            .slots
            .iter()
            .map(|s| {
                s.node
                    .as_ref()
                    .map(|node| {
                        node.links()
                            .iter()
                            .filter_map(|id| self.slot_of(id))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        (0..self.slots.len())
            .map(|a| {
                links[a]
                    .iter()
                    .copied()
                    .filter(|&b| self.is_live(b) && links[b as usize].contains(&(a as u32)))
                    .collect()
            })
            .collect()
    }

    /// Connected components of the live nodes over verified links (a link counts when both ends list
    /// it). Isolated live nodes are components of their own.
    pub fn components(&self) -> usize {
        let n = self.slots.len();
        let mut parent: Vec<u32> = (0..n as u32).collect();
        fn find(parent: &mut [u32], mut x: u32) -> u32 {
            while parent[x as usize] != x {
                let up = parent[parent[x as usize] as usize];
                parent[x as usize] = up;
                x = up;
            }
            x
        }
        for (a, peers) in self.mutual_links().iter().enumerate() {
            for &b in peers {
                let (ra, rb) = (find(&mut parent, a as u32), find(&mut parent, b));
                if ra != rb {
                    parent[ra as usize] = rb;
                }
            }
        }
        let mut roots: Vec<u32> = (0..n as u32)
            .filter(|&s| self.is_live(s))
            .map(|s| find(&mut parent, s))
            .collect();
        roots.sort_unstable();
        roots.dedup();
        roots.len()
    }

    /// The final mesh's shape, over verified links between live nodes: mean degree, and the
    /// eccentricity (largest hop distance to any reachable live node) of up to `samples` live nodes
    /// spread evenly over the slots, as (median, largest). Deterministic.
    pub fn topology(&self, samples: usize) -> (f64, u32, u32) {
        let n = self.slots.len();
        let adj = self.mutual_links();
        let live = self.live_slots();
        if live.is_empty() {
            return (0.0, 0, 0);
        }
        let degree =
            live.iter().map(|&s| adj[s as usize].len()).sum::<usize>() as f64 / live.len() as f64;
        let step = (live.len() / samples.max(1)).max(1);
        let mut eccs: Vec<u32> = Vec::new();
        let mut dist = vec![u32::MAX; n];
        for &src in live.iter().step_by(step) {
            dist.iter_mut().for_each(|d| *d = u32::MAX);
            dist[src as usize] = 0;
            let mut queue = std::collections::VecDeque::from([src]);
            let mut ecc = 0;
            while let Some(x) = queue.pop_front() {
                let d = dist[x as usize];
                ecc = ecc.max(d);
                for &y in &adj[x as usize] {
                    if dist[y as usize] == u32::MAX {
                        dist[y as usize] = d + 1;
                        queue.push_back(y);
                    }
                }
            }
            eccs.push(ecc);
        }
        eccs.sort_unstable();
        (degree, eccs[eccs.len() / 2], eccs[eccs.len() - 1])
    }

    /// The nodes' own counters ([`Protocol::counters`]) summed over the live nodes, in the order the
    /// first live node lists them.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> = Vec::new();
        for node in self.slots.iter().filter_map(|s| s.node.as_ref()) {
            for (i, (name, value)) in node.counters().into_iter().enumerate() {
                match out.get_mut(i) {
                    Some(e) if e.0 == name => e.1 += value,
                    _ => out.push((name, value)),
                }
            }
        }
        out
    }

    /// Payload transmissions counted by every node so far, crashed ones included.
    pub fn payload_transmissions(&self) -> u64 {
        self.retired_payload
            + self
                .slots
                .iter()
                .filter_map(|s| s.node.as_ref())
                .map(P::payload_transmissions)
                .sum::<u64>()
    }

    /// Drain `slot`'s outputs and schedule its timer: call after every input given to it.
    pub fn drive(&mut self, slot: u32) {
        self.drive_inner(slot, false);
    }

    fn drive_inner(&mut self, slot: u32, after_timeout: bool) {
        let now = self.now();
        loop {
            let Some(node) = self.slots[slot as usize].node.as_mut() else {
                return;
            };
            let Some(out) = node.poll_output() else {
                break;
            };
            match out {
                Output::Transmit { link, bytes } => self.transmit(slot, link, bytes),
                Output::Connect { peer, initiator } => self.connect(slot, peer, initiator),
                Output::Disconnect { peer } => self.disconnect(slot, peer),
                Output::Signal { to, payload } => {
                    let at = now + self.net.server_latency(slot);
                    self.queue.schedule(
                        at,
                        Ev::Relay {
                            from: slot,
                            to,
                            payload,
                        },
                    );
                }
                Output::Event(ev) => self.on_event(slot, ev),
            }
        }
        let s = &mut self.slots[slot as usize];
        let Some(node) = s.node.as_ref() else {
            return;
        };
        if let Some(mut at) = node.poll_timeout() {
            if at <= now && after_timeout {
                // The node asks to be woken in the past right after its timeout ran: wake it a little
                // later instead of looping forever at one instant.
                self.stats.stalled_timers += 1;
                at = now + Duration::from_millis(1);
            }
            let at = at.max(now);
            if s.timer.is_none_or(|pending| at < pending) {
                s.timer = Some(at);
                self.queue.schedule(at, Ev::Timer { slot });
            }
        }
    }

    fn conn(&self, slot: u32, peer: u32) -> Option<&PeerConn> {
        self.slots[slot as usize]
            .conns
            .iter()
            .find(|c| c.peer == peer)
    }

    fn conn_mut(&mut self, slot: u32, peer: u32) -> Option<&mut PeerConn> {
        self.slots[slot as usize]
            .conns
            .iter_mut()
            .find(|c| c.peer == peer)
    }

    fn remove_conn(&mut self, slot: u32, peer: u32) -> Option<PeerConn> {
        let conns = &mut self.slots[slot as usize].conns;
        let i = conns.iter().position(|c| c.peer == peer)?;
        Some(conns.swap_remove(i))
    }

    fn transmit(&mut self, slot: u32, link: NodeId, bytes: Vec<u8>) {
        let now = self.now();
        self.stats.frames_sent += 1;
        let Some(peer) = self.slot_of(&link) else {
            self.stats.frames_no_link += 1;
            return;
        };
        let Some(c) = self.conn(slot, peer).filter(|c| c.open).copied() else {
            self.stats.frames_no_link += 1;
            return;
        };
        if !self.net.reachable(now, slot, peer) {
            self.stats.frames_cut += 1;
            return;
        }
        if self.net.lost() {
            self.stats.frames_lost += 1;
            return;
        }
        let at = now + self.net.link_latency(slot, peer);
        self.queue.schedule(
            at,
            Ev::Data {
                to: peer,
                from: slot,
                session: c.session,
                bytes,
            },
        );
    }

    fn connect(&mut self, slot: u32, peer_id: NodeId, initiator: bool) {
        let now = self.now();
        let Some(peer) = self.slot_of(&peer_id) else {
            return;
        };
        // A new attempt replaces an old peer connection, which the far end then sees close.
        self.close_conn(slot, peer);
        let session = if initiator {
            let s = self.next_session;
            self.next_session += 1;
            s
        } else {
            0
        };
        self.slots[slot as usize].conns.push(PeerConn {
            peer,
            session,
            initiator,
            answered: false,
            open: false,
            created: now,
        });
        if initiator {
            self.stats.links_attempted += 1;
            if let Some(node) = self.slots[slot as usize].node.as_mut() {
                node.send_signal(now, peer_id, encode_signal(OFFER, session));
            }
        }
    }

    fn close_conn(&mut self, slot: u32, peer: u32) {
        let now = self.now();
        let old = self.remove_conn(slot, peer);
        if let Some(c) = old.filter(|c| !c.open) {
            if c.initiator {
                let age = now - c.created;
                let bucket = if age < Duration::from_secs(1) {
                    0
                } else if age < Duration::from_secs(10) {
                    1
                } else {
                    2
                };
                self.stats.attempts_abandoned[bucket] += 1;
            } else {
                self.stats.answers_abandoned += 1;
            }
        }
        if let Some(old) = old
            && old.session != 0
        {
            let at = now + self.net.link_latency(slot, peer);
            self.queue.schedule(
                at,
                Ev::Closed {
                    slot: peer,
                    peer: slot,
                    session: old.session,
                },
            );
        }
    }

    fn disconnect(&mut self, slot: u32, peer_id: NodeId) {
        if let Some(peer) = self.slot_of(&peer_id) {
            self.close_conn(slot, peer);
        }
    }

    fn on_event(&mut self, slot: u32, ev: Event) {
        let now = self.now();
        match ev {
            Event::Signal { from, payload } => self.on_signal(slot, from, &payload),
            Event::Message {
                data,
                hops,
                broadcast: _,
                from: _,
            } => self.recorder.on_message(now, slot, &data, hops),
            Event::DhtLookupFinished {
                id,
                closest,
                rounds,
            } => self.recorder.on_dht_lookup(now, slot, id, &closest, rounds),
            Event::LookupFinished {
                id,
                peers,
                rounds,
                hops,
            } => {
                self.recorder.on_probe(now, slot, id, &peers, rounds, hops);
            }
            Event::DirectFailed { id } => self.recorder.on_direct_failed(slot, id),
            Event::PeerConnected { .. } | Event::Other => {}
        }
    }

    fn on_signal(&mut self, slot: u32, from: NodeId, payload: &[u8]) {
        let now = self.now();
        let Some((kind, session)) = decode_signal(payload) else {
            return;
        };
        let Some(peer) = self.slot_of(&from) else {
            return;
        };
        match kind {
            OFFER => {
                let Some(c) = self.conn_mut(slot, peer).filter(|c| !c.initiator) else {
                    self.stats.offers_unsolicited += 1;
                    return;
                };
                c.session = session;
                self.stats.offers_answered += 1;
                if let Some(node) = self.slots[slot as usize].node.as_mut() {
                    node.send_signal(now, from, encode_signal(ANSWER, session));
                }
            }
            ANSWER => {
                let Some(c) = self
                    .conn_mut(slot, peer)
                    .filter(|c| c.initiator && c.session == session && !c.answered)
                else {
                    self.stats.answers_stale += 1;
                    return;
                };
                c.answered = true;
                self.stats.answers_matched += 1;
                // ICE and DTLS take one more trip.
                let at = now + self.net.link_latency(slot, peer);
                self.queue.schedule(
                    at,
                    Ev::LinkUp {
                        initiator: slot,
                        answerer: peer,
                        session,
                    },
                );
            }
            _ => {}
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        let now = self.now();
        match ev {
            Ev::Timer { slot } => {
                let s = &mut self.slots[slot as usize];
                if s.timer != Some(now) {
                    return; // superseded by an earlier timer
                }
                s.timer = None;
                let Some(node) = s.node.as_mut() else {
                    return;
                };
                // The deadline this wake-up was for may have moved later since (an ACK cancelled a
                // retransmission, say): then the node is not woken early, only rescheduled (the
                // contract allows early calls; skipping them changes nothing but the cost).
                if let Some(at) = node.poll_timeout()
                    && at > now
                {
                    s.timer = Some(at);
                    self.queue.schedule(at, Ev::Timer { slot });
                    return;
                }
                self.stats.timers_run += 1;
                node.handle_timeout(now);
                self.drive_inner(slot, true);
            }
            Ev::ServerJoin { slot, incarnation } => {
                if self.slots[slot as usize].incarnation != incarnation || !self.is_live(slot) {
                    return;
                }
                let intro = self.server.join(slot, &self.ids);
                let me = self.ids[slot as usize];
                let peers = intro.iter().map(|&p| self.ids[p as usize]).collect();
                let at = now + self.net.server_latency(slot);
                self.queue.schedule(
                    at,
                    Ev::FromServer {
                        slot,
                        incarnation,
                        input: ServerInput::BootstrapPeers(peers),
                    },
                );
                for p in intro {
                    let at = now + self.net.server_latency(p);
                    let incarnation = self.slots[p as usize].incarnation;
                    self.queue.schedule(
                        at,
                        Ev::FromServer {
                            slot: p,
                            incarnation,
                            input: ServerInput::PeerJoined(me),
                        },
                    );
                }
            }
            Ev::Cut => self.break_cut_links(),
            Ev::ServerDrop { slot, incarnation } => {
                if self.slots[slot as usize].incarnation == incarnation {
                    self.server.leave(slot);
                }
            }
            Ev::FromServer {
                slot,
                incarnation,
                input,
            } => {
                let s = &mut self.slots[slot as usize];
                if s.incarnation != incarnation {
                    return;
                }
                let Some(node) = s.node.as_mut() else {
                    return;
                };
                node.handle_server(now, input);
                self.drive(slot);
            }
            Ev::Relay { from, to, payload } => {
                let known = self.slot_of(&to).filter(|&t| self.server.is_joined(t));
                let target = known.filter(|&t| self.is_live(t));
                let Some(target) = target else {
                    self.stats.signals_dropped += 1;
                    if known.is_none() {
                        // The server does not know the addressee: like the real one, it says so
                        // (`unknown_peer`), and the driver tells its node the peer left.
                        let at = now + self.net.server_latency(from);
                        let incarnation = self.slots[from as usize].incarnation;
                        self.queue.schedule(
                            at,
                            Ev::FromServer {
                                slot: from,
                                incarnation,
                                input: ServerInput::PeerLeft(to),
                            },
                        );
                    }
                    return;
                };
                self.stats.signals_relayed += 1;
                let at = now + self.net.server_latency(target);
                let incarnation = self.slots[target as usize].incarnation;
                self.queue.schedule(
                    at,
                    Ev::FromServer {
                        slot: target,
                        incarnation,
                        input: ServerInput::Relayed {
                            from: self.ids[from as usize],
                            payload,
                        },
                    },
                );
            }
            Ev::LinkUp {
                initiator,
                answerer,
                session,
            } => {
                let ok_i = self
                    .conn(initiator, answerer)
                    .is_some_and(|c| c.initiator && c.session == session && !c.open);
                let ok_a = self
                    .conn(answerer, initiator)
                    .is_some_and(|c| !c.initiator && c.session == session && !c.open);
                if !ok_i || !ok_a || !self.net.reachable(now, initiator, answerer) {
                    self.stats.link_up_failed += 1;
                    return; // the attempt fails; the nodes time it out
                }
                for (a, b) in [(initiator, answerer), (answerer, initiator)] {
                    if let Some(c) = self.conn_mut(a, b) {
                        c.open = true;
                    }
                }
                self.stats.links_opened += 1;
                for (a, b) in [(initiator, answerer), (answerer, initiator)] {
                    let peer = self.ids[b as usize];
                    let local = self.slots[a as usize].fingerprint.clone();
                    let remote = self.slots[b as usize].fingerprint.clone();
                    if let Some(node) = self.slots[a as usize].node.as_mut() {
                        node.handle_link_open(now, peer, local, remote);
                        self.drive(a);
                    }
                }
            }
            Ev::Data {
                to,
                from,
                session,
                bytes,
            } => {
                let ok = self
                    .conn(to, from)
                    .is_some_and(|c| c.open && c.session == session);
                if !ok {
                    self.stats.frames_no_link += 1;
                    return;
                }
                self.stats.frames_delivered += 1;
                self.stats.bytes_delivered += bytes.len() as u64;
                let kind = match (bytes.get(1), bytes.get(3)) {
                    (Some(2), Some(&g)) => 16 + usize::from(g.min(7)),
                    (Some(&k), _) => usize::from(k.min(15)),
                    (None, _) => 15,
                };
                self.stats.frames_by_kind[kind] += 1;

                let peer = self.ids[from as usize];
                if let Some(node) = self.slots[to as usize].node.as_mut() {
                    node.handle_link_data(now, peer, &bytes);
                    self.drive(to);
                }
            }
            Ev::Closed {
                slot,
                peer,
                session,
            } => {
                let matches = self.conn(slot, peer).is_some_and(|c| c.session == session);
                if !matches {
                    return;
                }
                self.remove_conn(slot, peer);
                let peer_id = self.ids[peer as usize];
                if let Some(node) = self.slots[slot as usize].node.as_mut() {
                    node.handle_link_closed(now, peer_id);
                    self.drive(slot);
                }
            }
        }
    }
}
