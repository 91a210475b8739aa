//! The engine, tested with a small flooding node.

use core::time::Duration;
use std::collections::{BTreeSet, VecDeque};

use p2pmesh_base::introduce::Key;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::{Core, Engine, Millis, NetConfig, Output, ServerInput};

/// A fake node: connects to every peer the server names (lower id initiates), floods every new frame
/// to its other links, relays its signaling through the server, ticks a 1 s timer, and halts on a
/// frame `b"halt"`.
#[derive(Debug, Default)]
struct Flood {
    id: u32,
    out: VecDeque<Output<u32, (u32, Vec<u8>)>>,
    links: BTreeSet<u32>,
    seen: BTreeSet<Vec<u8>>,
    next_tick: Option<Millis>,
    ticks: u64,
    fingerprints: Vec<(u32, Vec<u8>, Vec<u8>)>,
    downs: Vec<(Millis, u32)>,
    halted: bool,
}

impl Flood {
    fn new(id: u32) -> Self {
        Self {
            id,
            ..Self::default()
        }
    }

    fn meet(&mut self, peer: u32) {
        if self.id < peer && !self.links.contains(&peer) {
            self.out.push_back(Output::Connect {
                peer,
                initiator: true,
            });
        } else if peer < self.id {
            self.out.push_back(Output::Connect {
                peer,
                initiator: false,
            });
        }
    }

    fn publish(&mut self, frame: &[u8]) {
        self.seen.insert(frame.to_vec());
        self.flood(None, frame);
    }

    fn flood(&mut self, except: Option<u32>, frame: &[u8]) {
        for &link in &self.links {
            if Some(link) != except {
                self.out.push_back(Output::Transmit {
                    link,
                    bytes: frame.to_vec(),
                });
            }
        }
    }
}

impl Core for Flood {
    type Id = u32;
    type Time = Millis;
    type Event = (u32, Vec<u8>);

    fn local_id(&self) -> u32 {
        self.id
    }
    fn key(id: &u32) -> Key {
        let mut k = [0u8; 20];
        k[..8].copy_from_slice(&crate::mix64(u64::from(*id)).to_be_bytes());
        k
    }
    fn handle_message(&mut self, _now: Millis, from: u32, bytes: &[u8]) {
        if bytes == b"halt" {
            self.halted = true;
            self.flood(Some(from), bytes);
            return;
        }
        if self.seen.insert(bytes.to_vec()) {
            self.out.push_back(Output::Event((from, bytes.to_vec())));
            self.flood(Some(from), bytes);
        }
    }
    fn handle_timeout(&mut self, now: Millis) {
        self.ticks += 1;
        self.next_tick = Some(now + Duration::from_secs(1));
    }
    fn handle_peer_up(&mut self, _now: Millis, peer: u32, local: Vec<u8>, remote: Vec<u8>) {
        self.links.insert(peer);
        self.fingerprints.push((peer, local, remote));
    }
    fn handle_peer_down(&mut self, now: Millis, peer: u32) {
        self.links.remove(&peer);
        self.downs.push((now, peer));
    }
    fn handle_join(&mut self, now: Millis) {
        self.next_tick = Some(now + Duration::from_secs(1));
    }
    fn handle_server(&mut self, _now: Millis, input: ServerInput<u32>) {
        match input {
            ServerInput::BootstrapPeers(peers) => peers.into_iter().for_each(|p| self.meet(p)),
            ServerInput::PeerJoined(p) => self.meet(p),
            ServerInput::PeerLeft(_) => {}
            ServerInput::Relayed { from, payload } => {
                self.out.push_back(Output::LinkSignal { from, payload });
            }
        }
    }
    fn send_signal(&mut self, _now: Millis, to: u32, payload: Vec<u8>) {
        self.out.push_back(Output::Signal { to, payload });
    }
    fn poll_output(&mut self) -> Option<Output<u32, (u32, Vec<u8>)>> {
        if self.halted {
            self.out.retain(|o| !matches!(o, Output::Transmit { .. }));
        }
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Millis> {
        self.next_tick
    }
    fn halted(&self) -> bool {
        self.halted
    }
    fn links(&self) -> Vec<u32> {
        self.links.iter().copied().collect()
    }
    fn counters(&self) -> Vec<(&'static str, u64)> {
        vec![("ticks", self.ticks)]
    }
}

fn engine(seed: u64, net: NetConfig) -> Engine<Flood> {
    Engine::new(
        Millis::from_millis(1_000),
        net,
        ChaCha8Rng::seed_from_u64(seed),
        ChaCha8Rng::seed_from_u64(seed + 1),
    )
}

/// An engine of `seed` with `n` flooding nodes in slots `0..n`, each linked to the next by a fixed
/// link.
fn chain(seed: u64, net: NetConfig, n: u32) -> Engine<Flood> {
    let mut e = engine(seed, net);
    let slots: Vec<u32> = (0..n)
        .map(|i| e.add_node(Flood::new(i), Vec::new()))
        .collect();
    for w in slots.windows(2) {
        e.link(w[0], w[1]);
    }
    e
}

/// What `emit` makes the node in `slot` send, then a second of network time.
fn send_for_a_second(e: &mut Engine<Flood>, slot: u32, emit: impl FnOnce(&mut Flood)) {
    emit(e.node_mut(slot).expect("live"));
    e.drive(slot);
    e.run_for(Duration::from_secs(1));
}

fn joined(seed: u64, n: u32) -> Engine<Flood> {
    let mut e = engine(seed, NetConfig::default());
    for i in 0..n {
        let slot = e.add_node(Flood::new(i * 7 + 3), vec![i as u8; 4]);
        e.join(slot);
        e.run_for(Duration::from_millis(100));
    }
    e.run_for(Duration::from_secs(5));
    e
}

#[test]
fn joiners_are_introduced_and_links_open_through_signaling() {
    let e = joined(1, 30);
    assert_eq!(e.components(), 1);
    let s = e.stats();
    assert!(s.links_opened > 30, "{s:?}");
    assert_eq!(s.links_opened, s.answers_matched);
    assert!(s.signals_relayed >= 2 * s.links_opened);
    // Fingerprints are the ones the engine was given, local first.
    let node = e.node(1).expect("live");
    for (peer, local, remote) in &node.fingerprints {
        let slot = e.slot_of(peer).expect("known");
        assert_eq!(local, &vec![1u8; 4]);
        assert_eq!(remote, &vec![slot as u8; 4]);
    }
    // Timers ran, about once a second each.
    let ticks = e.counters()[0].1;
    assert!((30 * 5..30 * 9).contains(&ticks), "{ticks}");
}

#[test]
fn same_seeds_same_run() {
    let run = |seed| {
        let mut e = joined(seed, 20);
        e.node_mut(0).expect("live").publish(b"m");
        e.drive(0);
        e.run_for(Duration::from_secs(2));
        let events: Vec<(Millis, u32, (u32, Vec<u8>))> = e.drain_events().collect();
        (e.stats(), events)
    };
    let (a, ea) = run(5);
    assert_eq!(ea.len(), 19);
    assert_eq!((a.clone(), ea.clone()), run(5));
    // Another seed draws other latencies.
    assert_ne!(ea, run(6).1);
}

#[test]
fn fixed_links_carry_frames_with_latency_and_crashes_are_noticed_late() {
    let mut e = chain(2, NetConfig::default(), 3);
    let t0 = e.now();
    send_for_a_second(&mut e, 0, |n| n.publish(b"x"));
    let events: Vec<_> = e.drain_events().collect();
    assert_eq!(events.len(), 2);
    for (at, _, _) in &events {
        let d = *at - t0;
        assert!(
            d >= Duration::from_millis(10) && d <= Duration::from_millis(200),
            "{d:?}"
        );
    }
    let crashed_at = e.now();
    assert!(e.crash(1).is_some());
    assert!(e.crash(1).is_none());
    e.run_for(Duration::from_secs(10));
    for slot in [0, 2] {
        let downs = &e.node(slot).expect("live").downs;
        assert_eq!(downs.len(), 1);
        let d = downs[0].0 - crashed_at;
        assert!(
            d >= Duration::from_secs(2) && d <= Duration::from_secs(5),
            "{d:?}"
        );
    }
    assert_eq!(e.components(), 2);
}

#[test]
fn partitions_cut_links_and_frames_until_they_heal() {
    let mut e = chain(3, NetConfig::default(), 4);
    let start = e.now() + Duration::from_secs(1);
    e.partition(
        vec![true, true, false, false],
        start,
        start + Duration::from_secs(60),
    );
    e.run_for(Duration::from_secs(10));
    assert_eq!(e.node(1).expect("live").downs.len(), 1);
    assert_eq!(e.node(2).expect("live").downs.len(), 1);
    assert_eq!(e.components(), 2);
    send_for_a_second(&mut e, 0, |n| n.publish(b"y"));
    let reached: Vec<u32> = e.drain_events().map(|(_, slot, _)| slot).collect();
    assert_eq!(reached, vec![1]);
}

#[test]
fn a_halted_node_is_crashed_before_its_frames_leave() {
    let mut e = chain(4, NetConfig::default(), 3);
    send_for_a_second(&mut e, 0, |n| n.flood(None, b"halt"));
    assert!(!e.is_live(1));
    assert!(e.is_live(2));
    assert_eq!(e.stats().frames_delivered, 1);
}

#[test]
fn loss_drops_frames() {
    let net = NetConfig {
        loss: 1.0,
        ..NetConfig::default()
    };
    let mut e = chain(5, net, 2);
    send_for_a_second(&mut e, 0, |n| n.publish(b"z"));
    let s = e.stats();
    assert_eq!(
        (s.frames_sent, s.frames_lost, s.frames_delivered),
        (1, 1, 0)
    );
}

/// What a run made: its counters, every node event, and each node's links and link losses.
type RunTrace = (
    crate::NetStats,
    Vec<(Millis, u32, (u32, Vec<u8>))>,
    Vec<String>,
);

/// A run of `shards` shards (threads when more than one): 40 joiners over 5% loss, a cut of the first
/// ten for 5 s (the flooding nodes do not link across it again), a crash, a halt, messages published
/// before, during and after the cut.
fn sharded_run(shards: usize) -> RunTrace {
    let net = NetConfig {
        loss: 0.05,
        ..NetConfig::default()
    };
    let mut e = engine(21, net);
    e.set_shards(shards).expect("before the first node");
    let run = |e: &mut Engine<Flood>, d: Duration| {
        let until = e.now() + d;
        e.run_until_each(until, |_, _| {});
    };
    let mut events = Vec::new();
    for i in 0..40 {
        let slot = e.add_node(Flood::new(i * 7 + 3), vec![i as u8; 4]);
        e.join(slot);
        run(&mut e, Duration::from_millis(30));
    }
    run(&mut e, Duration::from_secs(5));
    e.node_mut(3).expect("live").publish(b"before");
    e.drive(3);
    let start = e.now() + Duration::from_millis(500);
    e.partition(
        (0..10).map(|_| true).collect(),
        start,
        start + Duration::from_secs(5),
    );
    run(&mut e, Duration::from_secs(1));
    e.node_mut(20).expect("live").publish(b"during");
    e.drive(20);
    e.crash(7);
    run(&mut e, Duration::from_secs(2));
    // Slot 11 tells slot 12 (id 87) to halt; slot 12's own frames never leave.
    e.node_mut(11)
        .expect("live")
        .out
        .push_back(Output::Transmit {
            link: 87,
            bytes: b"halt".to_vec(),
        });
    e.drive(11);
    run(&mut e, Duration::from_secs(10));
    let from = (12..40)
        .find(|&s| e.is_live(s))
        .expect("a live node past the cut");
    e.node_mut(from).expect("live").publish(b"after");
    e.drive(from);
    run(&mut e, Duration::from_secs(5));
    events.extend(e.drain_events());
    let nodes = (0..e.len() as u32)
        .map(|s| match e.node(s) {
            Some(n) => format!("{s}: links {:?} downs {:?}", n.links, n.downs),
            None => format!("{s}: down"),
        })
        .collect();
    (e.stats(), events, nodes)
}

#[test]
fn a_sharded_run_is_the_same_whatever_the_number_of_shards() {
    let one = sharded_run(1);
    let (stats, events, nodes) = &one;
    // The run did what it says: links opened, frames were lost and cut, a node halted, and the
    // messages reached the nodes that could hear them.
    assert!(stats.links_opened > 40, "{stats:?}");
    assert!(stats.frames_lost > 0 && stats.frames_cut > 0, "{stats:?}");
    let down: Vec<usize> = (0..nodes.len())
        .filter(|&s| nodes[s].ends_with("down"))
        .collect();
    assert_eq!(down, vec![7, 12], "{nodes:#?}");
    for message in [&b"before"[..], b"during", b"after"] {
        let reached = events.iter().filter(|(_, _, (_, m))| m == message).count();
        assert!(reached > 15, "{message:?} reached {reached}");
    }
    for shards in [2, 3] {
        assert!(
            sharded_run(shards) == one,
            "{shards} shards differ from one"
        );
    }
}

#[test]
fn shards_are_set_before_nodes_and_need_a_lookahead() {
    let mut e = engine(1, NetConfig::default());
    assert_eq!(e.lookahead(), Duration::from_millis(5));
    e.add_node(Flood::new(1), Vec::new());
    assert!(e.set_shards(2).is_err());
    assert_eq!(e.shards(), 0);
    let mut e = engine(
        1,
        NetConfig {
            server_latency_min: Duration::ZERO,
            ..NetConfig::default()
        },
    );
    assert!(e.set_shards(2).is_err());
    let mut e = engine(1, NetConfig::default());
    assert!(e.set_shards(0).is_err());
    assert_eq!(e.shards(), 0);
    assert!(e.set_shards(2).is_ok());
    assert_eq!(e.shards(), 2);
}
