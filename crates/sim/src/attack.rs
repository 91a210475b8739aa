//! The `broadcast-attack` scenario: a fraction of the mesh-core nodes attack while honest nodes
//! broadcast, and the report counts what reached the honest nodes.
//!
//! An attacker is a real [`mesh_core::Node`] (it links, says hello, answers pings) inside an [`Agent`]
//! that rewrites and adds to what the node sends, always through the public encoders of
//! [`mesh_core::frame`] and [`gossip_core::wire`], so that the attacks follow the wire format:
//!
//! - **tree hijack**: a root must prove itself with its signature (gossip-core's `Roots` frame), so an
//!   attacker can no longer claim a made-up lowest root (before that fix, it claimed the lowest
//!   possible id of every tree at distance 0). It does what it still can: every gossip `Tree` frame
//!   its node would send is replaced by one naming the same, genuine roots (whose proofs its node
//!   forwards, as any node does) at distance 1, the closest a non-root can claim, and that frame is
//!   repeated every few seconds on every link: honest nodes take the attacker as their parent, and it
//!   forwards nothing;
//! - **false neighbour claims**: every `Neighbors` frame is replaced by one claiming links to many
//!   nodes (drawn from every node id: the attackers collude and know the mesh), so that routed traffic
//!   is sent to the attacker, which forwards nothing;
//! - **future-dated floods**: in rounds, the attackers push to their links more than `max_seen`
//!   broadcasts, validly signed by an attacker, dated at the edge of the allowed clock skew (their
//!   sequence numbers follow that clock), with the hop count set so that their receivers deliver them
//!   but relay them no further (the hop count is not signed). Each round's messages are forged once
//!   (by the first attacker that needs them, with its own key, through a private
//!   [`gossip_core::Node`]'s `publish`) and sent by every attacker;
//! - **dropping**: gossip messages and announcements (IHAVE) of others, and routed messages of others,
//!   are never forwarded; acknowledgements still are, so senders believe their pushes arrived.
//!
//! The scenario's delivery ratio counts honest broadcasts at honest live nodes only; the attackers'
//! own traffic is in the report's notes.

use core::time::Duration;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use gossip_core::wire::{self, RootProof, TreeAdvert};
use gossip_core::{Ed25519, Identity};
use kademlia_core::{Instant, NodeId};
use mesh_core::Node;
use mesh_core::frame::{Frame, Neighbors};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::protocol::{Output, Protocol, ServerInput};
use crate::report::{Report, cpu_seconds, peak_rss_mb};
use crate::scenario::{self, ScenarioArgs};
use crate::simulation::{SimConfig, Simulation};

/// Default fraction of the nodes that attack.
pub const DEFAULT_ATTACKERS: f64 = 0.05;
/// The seen-cache bound of the simulated nodes in this scenario (`gossip.max_seen`; mesh-core's
/// default is 65,536). A flood must exceed it at every victim; the floor logic is the same at any
/// bound, and a smaller one makes the flood, and so the run, 64 times cheaper.
pub const MAX_SEEN: usize = 1024;
/// Messages of one flood round: past `MAX_SEEN`, so that the floor rises to flood timestamps.
pub const FLOOD_MESSAGES: usize = MAX_SEEN + 64;
/// Time between flood rounds: less than the clock skew, so the floor stays ahead of the present.
pub const FLOOD_INTERVAL: Duration = Duration::from_secs(20);
/// How far before the edge of the clock-skew window the flood is dated (the network's latency).
const SKEW_MARGIN: Duration = Duration::from_secs(1);
/// Time between two forged `Tree` and `Neighbors` frames on every link.
const CLAIM_INTERVAL: Duration = Duration::from_secs(4);
/// The topic of the flood (honest nodes do not subscribe to it: its messages fill the seen-cache but
/// are not delivered).
const FLOOD_TOPIC: &str = "attack";
/// Honest broadcasts of the scenario, one a second.
const MESSAGES: u32 = 100;
/// Honest direct messages sent after the broadcasts (routed ones: the pair has no link).
const DIRECTS: usize = 200;

/// What the attackers share: every node id (for false claims), the start of the floods, each round's
/// forged flood frames, and their traffic counters.
#[derive(Debug, Default)]
pub struct Shared {
    /// Every node's id, in slot order.
    pub ids: Vec<NodeId>,
    /// When the flood rounds start (`None`: not yet).
    pub flood_from: Option<Instant>,
    /// Encoded mesh frames of each flood round.
    rounds: BTreeMap<u64, Arc<Vec<Vec<u8>>>>,
    /// The attackers' traffic.
    pub traffic: Traffic,
}

/// Frames the attackers sent, forged or dropped, summed over all of them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Traffic {
    /// Forged `Tree` frames sent.
    pub tree_frames: u64,
    /// Forged `Neighbors` frames sent.
    pub neighbor_frames: u64,
    /// Future-dated flood messages sent (each to one link).
    pub flood_frames: u64,
    /// Flood messages forged (signed).
    pub flood_signed: u64,
    /// Gossip messages and IHAVEs of others not forwarded.
    pub gossip_dropped: u64,
    /// Routed messages of others not forwarded.
    pub routed_dropped: u64,
    /// Frames the attackers' nodes sent unchanged.
    pub passed: u64,
    /// Bytes of every frame the attackers sent.
    pub bytes: u64,
}

/// An [`Agent`]'s configuration: mesh-core's, and what the attackers share.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The node's configuration.
    pub mesh: mesh_core::Config,
    /// Shared by all the attackers of one run (one simulation, one thread).
    pub shared: Arc<Mutex<Shared>>,
}

/// An attacker's state.
#[derive(Debug)]
struct Attack {
    rng: ChaCha8Rng,
    shared: Arc<Mutex<Shared>>,
    next_claim: Instant,
    next_flood_round: u64,
    queue: VecDeque<Output>,
    started: bool,
    /// The adverts of the last `Tree` frame its own node made (the roots it can name).
    adverts: Vec<TreeAdvert>,
}

/// A mesh-core node, honest or attacking (see the module docs).
#[derive(Debug)]
pub struct Agent {
    node: Node,
    secret: [u8; 32],
    seed: u64,
    shared: Arc<Mutex<Shared>>,
    attack: Option<Box<Attack>>,
}

/// The forged adverts: what an attacker can claim now that a root must prove itself (gossip-core's
/// `Roots` frame). It cannot name a root it is not without that root's fresh signature, so it takes
/// the roots its own node follows (their proofs are public: its node forwards them) and lies about its
/// distance to each: one hop, the closest any non-root can be, so that its links take it as their
/// parent on every tree and it drops what comes down. Its own root place (if any) is left as is.
fn forged_adverts(real: &[TreeAdvert], me: NodeId) -> Vec<TreeAdvert> {
    real.iter()
        .map(|a| TreeAdvert {
            root: a.root,
            distance: if a.root == me { 0 } else { 1 },
            child: a.child,
            cost: if a.root == me { 0 } else { 1 },
        })
        .collect()
}

impl Agent {
    /// Whether this node attacks.
    pub fn is_attacker(&self) -> bool {
        self.attack.is_some()
    }

    /// The mesh-core node inside.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Turn this node into an attacker (before it joins).
    pub fn make_attacker(&mut self) {
        self.attack = Some(Box::new(Attack {
            rng: ChaCha8Rng::seed_from_u64(self.seed ^ 0xa77a_c4e5),
            shared: Arc::clone(&self.shared),
            next_claim: Instant::ZERO,
            next_flood_round: 0,
            queue: VecDeque::new(),
            started: false,
            adverts: Vec::new(),
        }));
    }

    /// The forged `Tree` frame (a mesh frame around a gossip frame), or `None` while its node has
    /// made none to lie about.
    /// The proofs its node put in the frame pass unchanged.
    fn forged_tree(real: &[TreeAdvert], proofs: Vec<RootProof>, me: NodeId) -> Option<Vec<u8>> {
        if real.is_empty() {
            return None;
        }
        let adverts = forged_adverts(real, me);
        Some(Frame::Gossip(wire::encode(&wire::Frame::Tree { proofs, adverts })).encode())
    }

    /// A forged `Neighbors` frame: as many random ids as each level takes.
    fn forged_neighbors(attack: &mut Attack, me: NodeId) -> Vec<u8> {
        let shared = attack.shared.lock().unwrap_or_else(PoisonError::into_inner);
        let ids = &shared.ids;
        let mut draw = |n: usize| -> Vec<NodeId> {
            if ids.is_empty() {
                return Vec::new();
            }
            (0..n)
                .map(|_| ids[attack.rng.random_range(0..ids.len())])
                .filter(|id| *id != me)
                .collect()
        };
        let n = Neighbors {
            links: draw(64),
            second: draw(64),
            third: draw(256),
            fourth: draw(256),
        };
        Frame::Neighbors(n).encode()
    }

    /// Flood round `round`'s frames, forged now if no attacker has yet.
    fn flood_round(&self, attack: &Attack, round: u64, now: Instant) -> Arc<Vec<Vec<u8>>> {
        if let Some(frames) = attack
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .rounds
            .get(&round)
        {
            return Arc::clone(frames);
        }
        let config = &self.node.config().gossip;
        let skew = config.max_clock_skew;
        let hop_limit = config.hop_limit;
        // A private gossip node with the attacker's key signs the messages: `publish` dates them with
        // the clock it is given, and takes its sequence numbers from that clock.
        let forger_config = gossip_core::Config {
            strategy: gossip_core::Strategy::Flood,
            rooted_tree: false,
            max_seen: FLOOD_MESSAGES + 1,
            max_cached_messages: FLOOD_MESSAGES + 1,
            max_pending_acks: 1,
            ..config.clone()
        };
        let mut forger = gossip_core::Node::with_verifier(
            Identity::from_secret_bytes(&self.secret),
            Ed25519,
            forger_config,
            round,
        );
        let sink = NodeId::from_bytes([0xff; 20]);
        let dated = now + skew - SKEW_MARGIN;
        forger.handle_peer_up(dated, sink);
        let mut frames = Vec::with_capacity(FLOOD_MESSAGES);
        for i in 0..FLOOD_MESSAGES {
            let at = dated + Duration::from_micros(i as u64);
            let payload = (round << 32 | i as u64).to_le_bytes().to_vec();
            if forger.publish(at, FLOOD_TOPIC, payload).is_err() {
                continue;
            }
            while let Some(out) = forger.poll_output() {
                if let gossip_core::Output::Transmit { bytes, .. } = out
                    && let Ok(wire::Frame::Gossip(mut message)) = wire::decode(&bytes)
                {
                    // Delivered at the receiver, relayed no further: the flood stays with the
                    // attacker's links (the hop count is not signed).
                    message.hops = hop_limit.saturating_sub(1);
                    frames
                        .push(Frame::Gossip(wire::encode(&wire::Frame::Gossip(message))).encode());
                }
            }
        }
        let frames = Arc::new(frames);
        let mut shared = attack.shared.lock().unwrap_or_else(PoisonError::into_inner);
        shared.traffic.flood_signed += frames.len() as u64;
        shared.rounds.insert(round, Arc::clone(&frames));
        frames
    }

    /// The attacks due at `now`: claims on every link, and a flood round.
    fn act(&mut self, now: Instant) {
        let Some(mut attack) = self.attack.take() else {
            return;
        };
        let links = self.node.links();
        if now >= attack.next_claim {
            attack.next_claim = now + CLAIM_INTERVAL;
            let me = self.node.local_id();
            let tree = Self::forged_tree(&attack.adverts, Vec::new(), me);
            for &link in &links {
                let neighbors = Self::forged_neighbors(&mut attack, me);
                if let Some(tree) = &tree {
                    attack.queue.push_back(Output::Transmit {
                        link,
                        bytes: tree.clone(),
                    });
                    attack
                        .shared
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .traffic
                        .tree_frames += 1;
                }
                attack.queue.push_back(Output::Transmit {
                    link,
                    bytes: neighbors,
                });
                let mut shared = attack.shared.lock().unwrap_or_else(PoisonError::into_inner);
                shared.traffic.neighbor_frames += 1;
            }
        }
        let flood_from = attack
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flood_from;
        if let Some(from) = flood_from
            && now >= from
        {
            let round =
                now.saturating_duration_since(from).as_micros() / FLOOD_INTERVAL.as_micros().max(1);
            let round = u64::try_from(round).unwrap_or(u64::MAX);
            if !attack.started || round >= attack.next_flood_round {
                attack.started = true;
                attack.next_flood_round = round + 1;
                let frames = self.flood_round(&attack, round, now);
                for &link in &links {
                    for bytes in frames.iter() {
                        attack.queue.push_back(Output::Transmit {
                            link,
                            bytes: bytes.clone(),
                        });
                    }
                }
                attack
                    .shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .traffic
                    .flood_frames += (frames.len() * links.len()) as u64;
            }
        }
        self.attack = Some(attack);
    }

    /// When the attacker acts next.
    fn next_act(&self) -> Option<Instant> {
        let attack = self.attack.as_ref()?;
        let mut next = attack.next_claim;
        if let Some(from) = attack
            .shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .flood_from
        {
            next = next.min(
                from + FLOOD_INTERVAL * u32::try_from(attack.next_flood_round).unwrap_or(u32::MAX),
            );
        }
        Some(next)
    }

    /// What an attacker makes of a frame its node would send: `None` drops it. Its own `Neighbors`
    /// frames are dropped too: the forged ones go out every [`CLAIM_INTERVAL`].
    fn rewrite(&mut self, shared: &mut Shared, bytes: Vec<u8>) -> Option<Vec<u8>> {
        let me = self.node.local_id();
        let t = &mut shared.traffic;
        match Frame::decode(&bytes) {
            Ok(Frame::Gossip(inner)) => match wire::decode(&inner) {
                Ok(wire::Frame::Gossip(m)) if m.origin != me => {
                    t.gossip_dropped += 1;
                    None
                }
                Ok(wire::Frame::IHave(_)) => {
                    t.gossip_dropped += 1;
                    None
                }
                Ok(wire::Frame::Tree {
                    proofs,
                    adverts: real,
                }) => {
                    t.tree_frames += 1;
                    let tree = Self::forged_tree(&real, proofs, me);
                    if let Some(attack) = self.attack.as_mut() {
                        attack.adverts = real;
                    }
                    tree
                }
                _ => {
                    t.passed += 1;
                    Some(bytes)
                }
            },
            Ok(Frame::Routed(r)) if r.src != me => {
                t.routed_dropped += 1;
                None
            }
            Ok(Frame::Neighbors(_)) => None,
            _ => {
                t.passed += 1;
                Some(bytes)
            }
        }
    }
}

impl Protocol for Agent {
    type Config = AgentConfig;

    fn create(secret_key: [u8; 32], seed: u64, config: &AgentConfig) -> Self {
        Agent {
            node: <Node as Protocol>::create(secret_key, seed, &config.mesh),
            secret: secret_key,
            seed,
            shared: Arc::clone(&config.shared),
            attack: None,
        }
    }
    fn local_id(&self) -> NodeId {
        self.node.local_id()
    }
    fn join(&mut self, now: Instant) {
        Protocol::join(&mut self.node, now);
    }
    fn handle_server(&mut self, now: Instant, input: ServerInput) {
        Protocol::handle_server(&mut self.node, now, input);
    }
    fn handle_link_open(&mut self, now: Instant, peer: NodeId, local: Vec<u8>, remote: Vec<u8>) {
        self.node.handle_link_open(now, peer, local, remote);
    }
    fn handle_message(&mut self, now: Instant, peer: NodeId, bytes: &[u8]) {
        self.node.handle_message(now, peer, bytes);
    }
    fn handle_link_closed(&mut self, now: Instant, peer: NodeId) {
        self.node.handle_link_closed(now, peer);
    }
    fn send_signal(&mut self, now: Instant, to: NodeId, payload: Vec<u8>) {
        self.node.send_signal(now, to, payload);
    }
    fn handle_timeout(&mut self, now: Instant) {
        if self.next_act().is_some_and(|at| at <= now) {
            self.act(now);
        }
        if self.node.poll_timeout().is_some_and(|at| at <= now) {
            self.node.handle_timeout(now);
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        if self.attack.is_none() {
            return Protocol::poll_output(&mut self.node);
        }
        loop {
            let out = match self.attack.as_mut().and_then(|a| a.queue.pop_front()) {
                Some(out) => out,
                None => match Protocol::poll_output(&mut self.node)? {
                    Output::Transmit { link, bytes } => {
                        let shared = Arc::clone(&self.shared);
                        match self.rewrite(
                            &mut shared.lock().unwrap_or_else(PoisonError::into_inner),
                            bytes,
                        ) {
                            Some(bytes) => Output::Transmit { link, bytes },
                            None => continue,
                        }
                    }
                    other => other,
                },
            };
            if let Output::Transmit { bytes, .. } = &out {
                self.shared
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .traffic
                    .bytes += bytes.len() as u64;
            }
            return Some(out);
        }
    }
    fn poll_timeout(&self) -> Option<Instant> {
        match (self.node.poll_timeout(), self.next_act()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
    fn subscribe(&mut self, topic: &str) {
        Protocol::subscribe(&mut self.node, topic);
    }
    fn broadcast(&mut self, now: Instant, topic: &str, data: Vec<u8>) -> bool {
        Protocol::broadcast(&mut self.node, now, topic, data)
    }
    fn send(&mut self, now: Instant, to: NodeId, data: Vec<u8>) -> Option<u64> {
        Protocol::send(&mut self.node, now, to, data)
    }
    fn dht_find_node(&mut self, now: Instant, target: NodeId) -> u64 {
        Protocol::dht_find_node(&mut self.node, now, target)
    }
    fn find_node(&mut self, now: Instant, target: NodeId) -> u64 {
        Protocol::find_node(&mut self.node, now, target)
    }
    fn dht_put(&mut self, now: Instant, name: &[u8], value: Vec<u8>) -> Option<u64> {
        Protocol::dht_put(&mut self.node, now, name, value)
    }
    fn dht_get(&mut self, now: Instant, name: &[u8]) -> Option<u64> {
        Protocol::dht_get(&mut self.node, now, name)
    }
    fn dht_records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        Protocol::dht_records(&self.node)
    }
    fn links(&self) -> Vec<NodeId> {
        self.node.links()
    }
    fn payload_transmissions(&self) -> u64 {
        Protocol::payload_transmissions(&self.node)
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Protocol::counters(&self.node)
    }
}

/// Run `broadcast-attack` (see the module docs): `nodes` nodes of which `attackers` (default 5%) attack
/// from their start; once the mesh settled, the floods begin and 100 honest nodes broadcast, one a
/// second, then 200 honest pairs without a link exchange a routed direct message.
pub fn run(args: &ScenarioArgs, mesh: mesh_core::Config) -> Report {
    let wall = std::time::Instant::now();
    let cpu = cpu_seconds();
    let loss = args.loss.unwrap_or(0.01);
    let fraction = args.attackers.unwrap_or(DEFAULT_ATTACKERS);
    let mut report = Report::new(
        "broadcast-attack",
        args.nodes,
        args.seed,
        args.strategy.name(),
    );
    let mut rng = scenario::scenario_rng(args.seed);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut mesh = mesh;
    mesh.gossip.max_seen = MAX_SEEN;
    let config = AgentConfig {
        mesh,
        shared: Arc::clone(&shared),
    };
    let mut sim_config = SimConfig::default();
    sim_config.net.loss = loss;
    let mut sim: Simulation<Agent> = Simulation::new(args.seed, sim_config, config);
    if args.progress {
        sim.set_progress(Some(Duration::from_secs(10)));
    }

    let slots: Vec<u32> = (0..args.nodes).map(|_| sim.add_node()).collect();
    let attackers = scenario::pick_victims(args.nodes, fraction, &mut rng);
    let mut attacker = vec![false; args.nodes];
    for &a in &attackers {
        attacker[a as usize] = true;
        if let Some(agent) = sim.node_mut(a) {
            agent.make_attacker();
        }
    }
    shared.lock().unwrap_or_else(PoisonError::into_inner).ids =
        slots.iter().map(|&s| sim.id(s)).collect();
    scenario::join_slots(&mut sim, slots);

    // The floods start; the broadcasts a little later, once the first round reached every victim.
    let t0 = sim.now();
    shared
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .flood_from = Some(t0);
    let interval = Duration::from_secs(1);
    let first = t0 + CLAIM_INTERVAL + Duration::from_secs(1);
    let honest = |s: u32| !attacker.get(s as usize).copied().unwrap_or(true);
    for i in 0..MESSAGES {
        sim.run_until(first + interval * i);
        if let Some(origin) = scenario::pick(&sim, &mut rng, honest) {
            sim.broadcast(origin, i);
        }
    }
    sim.run_for(Duration::from_secs(10));
    let spacing = Duration::from_millis(50);
    for _ in 0..DIRECTS {
        if let Some(from) = scenario::pick(&sim, &mut rng, honest) {
            let links = sim.node(from).map(Protocol::links).unwrap_or_default();
            let to = scenario::pick(&sim, &mut rng, |t| {
                honest(t) && t != from && !links.contains(&sim.id(t))
            });
            if let Some(to) = to {
                sim.send_direct(from, to);
            }
        }
        sim.run_for(spacing);
    }
    sim.run_for(scenario::DRAIN);

    let honest_mask: Vec<bool> = attacker.iter().map(|a| !a).collect();
    let receivers = sim.live_slots().into_iter().filter(|&s| honest(s)).count();
    let missed = scenario::broadcast_metrics(&sim, &mut report, Some(&honest_mask), 0, None);
    // The receivers that missed most, with their links: cut off by attackers, or slow repair?
    let mut worst: Vec<(u32, u64)> = missed.into_iter().collect();
    worst.sort_by_key(|&(s, n)| (core::cmp::Reverse(n), s));
    let worst: Vec<String> = worst
        .iter()
        .take(5)
        .map(|&(s, n)| {
            let links = sim.node(s).map(Protocol::links).unwrap_or_default();
            let bad = links
                .iter()
                .filter(|l| sim.slot_of(l).is_some_and(|t| !honest(t)))
                .count();
            let st = sim
                .node(s)
                .map(|a| a.node().stats().clone())
                .unwrap_or_default();
            format!(
                "{s}: {n} missed, {} links ({bad} to attackers), links up {} / failed {} / \
                 evicted {} / refused {}, joined {:?}",
                links.len(),
                st.links_up,
                st.link_failures,
                st.evictions,
                st.rejections,
                sim.joined_at(s)
            )
        })
        .collect();
    if !worst.is_empty() {
        report.note("receivers that missed most", worst.join("; "));
    }
    let directs = &sim.recorder.directs;
    let delivered = directs.iter().filter(|d| d.delivered.is_some()).count();
    report.direct_delivery_ratio = Some(delivered as f64 / directs.len().max(1) as f64);
    report.components = Some(sim.components());
    report.note("loss", loss);
    report.note("attackers", attackers.len());
    report.note("honest live nodes", receivers);
    report.note(
        "delivery definition",
        format!(
            "honest broadcasts x honest live nodes that joined >= {} s before the publish",
            scenario::JOIN_GRACE.as_secs()
        ),
    );
    report.note(
        "direct (honest pairs, routed) sent / delivered",
        format!("{} / {delivered}", directs.len()),
    );
    report.note(
        "flood: messages per round / interval / max_seen",
        format!(
            "{FLOOD_MESSAGES} / {} s / {MAX_SEEN}",
            FLOOD_INTERVAL.as_secs()
        ),
    );
    let t = shared
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .traffic;
    let secs = (sim.now() - t0).as_secs_f64().max(1.0);
    report.note(
        "attackers: forged tree / neighbors frames",
        format!("{} / {}", t.tree_frames, t.neighbor_frames),
    );
    report.note(
        "attackers: flood messages signed / sent",
        format!("{} / {}", t.flood_signed, t.flood_frames),
    );
    report.note(
        "attackers: dropped gossip / routed; passed unchanged",
        format!("{} / {}; {}", t.gossip_dropped, t.routed_dropped, t.passed),
    );
    report.note(
        "attackers: bytes sent (total; per attacker per second since the floods)",
        format!(
            "{}; {:.0}",
            t.bytes,
            t.bytes as f64 / attackers.len().max(1) as f64 / secs
        ),
    );
    scenario::net_notes(&sim, &mut report);
    report.wall_s = wall.elapsed().as_secs_f64();
    report.peak_rss_mb = peak_rss_mb();
    report.cpu_s = cpu_seconds().zip(cpu).map(|(end, start)| end - start);
    report
}
