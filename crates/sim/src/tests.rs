//! The engine, network model, signaling server and link layer, tested with a small flooding node.

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use kademlia_core::{Instant, NodeId};

use crate::protocol::{Event, Output, Protocol, ServerInput};
use crate::simulation::{SimConfig, Simulation};

/// A fake node: connects to every peer the server names (lower id initiates, as mesh-core does), floods
/// broadcasts, relays its signaling through the server, and ticks a 1 s timer. Its DHT floods a put to
/// every node then up, which stores it; a get answers from the local store only (so a node that joined
/// after the puts finds nothing).
#[derive(Debug)]
struct Flood {
    id: NodeId,
    out: VecDeque<Output>,
    links: BTreeSet<NodeId>,
    pending: BTreeSet<NodeId>,
    seen: BTreeSet<Vec<u8>>,
    next_tick: Option<Instant>,
    ticks: u64,
    opened_with: Vec<(NodeId, Vec<u8>, Vec<u8>)>,
    closed: Vec<(Instant, NodeId)>,
    sent: u64,
    records: BTreeMap<Vec<u8>, Vec<u8>>,
    next_query: u64,
}

/// The first byte of a DHT frame (`[DHT_FRAME, name length, name, value]`); a broadcast frame starts
/// with its hop count, far below.
const DHT_FRAME: u8 = 0xff;

impl Flood {
    fn meet(&mut self, peer: NodeId) {
        if peer != self.id && self.id < peer && !self.links.contains(&peer) {
            self.pending.insert(peer);
            self.out.push_back(Output::Connect {
                peer,
                initiator: true,
            });
        }
    }

    fn flood(&mut self, except: Option<NodeId>, frame: &[u8]) {
        for &link in &self.links {
            if Some(link) != except {
                self.sent += 1;
                self.out.push_back(Output::Transmit {
                    link,
                    bytes: frame.to_vec(),
                });
            }
        }
    }
}

impl Protocol for Flood {
    type Config = ();

    fn create(secret_key: [u8; 32], _seed: u64, _config: &()) -> Self {
        Flood {
            id: NodeId::hash(secret_key),
            out: VecDeque::new(),
            links: BTreeSet::new(),
            pending: BTreeSet::new(),
            seen: BTreeSet::new(),
            next_tick: None,
            ticks: 0,
            opened_with: Vec::new(),
            closed: Vec::new(),
            sent: 0,
            records: BTreeMap::new(),
            next_query: 0,
        }
    }
    fn local_id(&self) -> NodeId {
        self.id
    }
    fn join(&mut self, now: Instant) {
        self.next_tick = Some(now + Duration::from_secs(1));
    }
    fn handle_server(&mut self, _now: Instant, input: ServerInput) {
        match input {
            ServerInput::BootstrapPeers(peers) => {
                for p in peers {
                    self.meet(p);
                }
            }
            ServerInput::PeerJoined(p) => self.meet(p),
            ServerInput::PeerLeft(_) => {}
            ServerInput::Relayed { from, payload } => {
                if !self.pending.contains(&from) {
                    self.out.push_back(Output::Connect {
                        peer: from,
                        initiator: false,
                    });
                }
                self.out
                    .push_back(Output::Event(Event::Signal { from, payload }));
            }
        }
    }
    fn handle_link_open(&mut self, _now: Instant, peer: NodeId, local: Vec<u8>, remote: Vec<u8>) {
        self.pending.remove(&peer);
        self.links.insert(peer);
        self.opened_with.push((peer, local, remote));
    }
    fn handle_message(&mut self, _now: Instant, peer: NodeId, bytes: &[u8]) {
        if bytes[0] == DHT_FRAME {
            let len = usize::from(bytes[1]);
            let (name, value) = bytes[2..].split_at(len);
            if self.records.insert(name.to_vec(), value.to_vec()).is_none() {
                self.flood(Some(peer), bytes);
            }
            return;
        }
        if self.seen.insert(bytes[1..].to_vec()) {
            let hops = u32::from(bytes[0]) + 1;
            self.out.push_back(Output::Event(Event::Message {
                from: peer,
                broadcast: true,
                data: bytes[1..].to_vec(),
                hops,
            }));
            let mut frame = bytes.to_vec();
            frame[0] += 1;
            self.flood(Some(peer), &frame);
        }
    }
    fn handle_link_closed(&mut self, now: Instant, peer: NodeId) {
        self.links.remove(&peer);
        self.closed.push((now, peer));
    }
    fn send_signal(&mut self, _now: Instant, to: NodeId, payload: Vec<u8>) {
        self.out.push_back(Output::Signal { to, payload });
    }
    fn handle_timeout(&mut self, now: Instant) {
        if let Some(t) = self.next_tick
            && t <= now
        {
            self.ticks += 1;
            self.next_tick = Some(t + Duration::from_secs(1));
        }
    }
    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }
    fn subscribe(&mut self, _topic: &str) {}
    fn broadcast(&mut self, _now: Instant, _topic: &str, data: Vec<u8>) -> bool {
        self.seen.insert(data.clone());
        let mut frame = vec![0u8];
        frame.extend_from_slice(&data);
        self.flood(None, &frame);
        true
    }
    fn send(&mut self, _now: Instant, _to: NodeId, _data: Vec<u8>) -> Option<u64> {
        None
    }
    fn dht_find_node(&mut self, _now: Instant, _target: NodeId) -> u64 {
        0
    }
    fn find_node(&mut self, _now: Instant, _target: NodeId) -> u64 {
        0
    }
    fn dht_put(&mut self, _now: Instant, name: &[u8], value: Vec<u8>) -> Option<u64> {
        let mut frame = vec![DHT_FRAME, u8::try_from(name.len()).ok()?];
        frame.extend_from_slice(name);
        frame.extend_from_slice(&value);
        self.records.insert(name.to_vec(), value);
        self.flood(None, &frame);
        self.next_query += 1;
        self.out.push_back(Output::Event(Event::PutFinished {
            id: self.next_query,
            stored: 1 + self.links.len() as u32,
            asked: self.links.len() as u32,
            refused: None,
        }));
        Some(self.next_query)
    }
    fn dht_get(&mut self, _now: Instant, name: &[u8]) -> Option<u64> {
        self.next_query += 1;
        let value = self.records.get(name).cloned();
        self.out.push_back(Output::Event(Event::GetFinished {
            id: self.next_query,
            answered: value.is_some(),
            value,
            hops: 0,
            rounds: 0,
        }));
        Some(self.next_query)
    }
    fn dht_records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.records
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
    fn links(&self) -> Vec<NodeId> {
        self.links.iter().copied().collect()
    }
    fn payload_transmissions(&self) -> u64 {
        self.sent
    }
}

fn network(seed: u64, n: usize, config: SimConfig) -> Simulation<Flood> {
    let mut sim = Simulation::new(seed, config, ());
    for _ in 0..n {
        let slot = sim.add_node();
        sim.join(slot);
        sim.run_for(Duration::from_millis(50));
    }
    sim.run_for(Duration::from_secs(3));
    sim
}

fn delivered(sim: &Simulation<Flood>, index: usize) -> usize {
    sim.recorder.broadcasts[index].deliveries.len()
}

#[test]
fn nodes_meet_through_the_server_and_links_open_with_fingerprints() {
    let sim = network(1, 60, SimConfig::default());
    assert_eq!(sim.components(), 1, "seed 1");
    let stats = sim.stats();
    assert!(stats.links_opened > 60, "{stats:?}");
    assert_eq!(stats.links_opened, stats.links_attempted, "{stats:?}");
    assert_eq!(stats.offers_unsolicited, 0);
    // Targeted introductions: nobody is linked to everyone.
    for slot in sim.live_slots() {
        let node = sim.node(slot).expect("live");
        assert!(
            node.links.len() < 59,
            "slot {slot} has {}",
            node.links.len()
        );
        for (peer, local, remote) in &node.opened_with {
            let other = sim.node(sim.slot_of(peer).expect("known")).expect("live");
            let theirs = other
                .opened_with
                .iter()
                .find(|(p, _, _)| *p == node.id)
                .expect("both sides opened");
            assert_eq!((local, remote), (&theirs.2, &theirs.1));
            assert_ne!(local, remote);
        }
    }
}

#[test]
fn flooding_reaches_everyone_and_latency_adds_up() {
    let mut sim = network(2, 40, SimConfig::default());
    let origin = 5;
    sim.broadcast(origin, 0);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(delivered(&sim, 0), 39);
    let rec = &sim.recorder.broadcasts[0];
    for &(slot, latency_us, hops) in &rec.deliveries {
        assert!(hops >= 1);
        // At least one link latency per hop, at most the maximum per hop.
        assert!(latency_us >= 10_000, "slot {slot}");
        assert!(latency_us <= u64::from(hops) * 100_000, "slot {slot}");
    }
}

#[test]
fn a_shard_count_the_network_cannot_run_is_an_error_not_a_panic() {
    let mut config = SimConfig {
        shards: 2,
        ..SimConfig::default()
    };
    config.net.latency_min = Duration::ZERO;
    let refused = Simulation::<Flood>::try_new(1, config.clone(), ());
    assert!(refused.is_err_and(|e| e.contains("non-zero")));
    config.net = SimConfig::default().net;
    let sim =
        Simulation::<Flood>::try_new(1, config, ()).expect("the default network has a lookahead");
    assert_eq!(sim.now(), SimConfig::default().start);
}

#[test]
fn loss_drops_frames() {
    let mut config = SimConfig::default();
    config.net.loss = 0.5;
    let sim = network(3, 30, config);
    let stats = sim.stats();
    // Only data frames are lost (signaling goes through the server), and the fake sends none yet.
    assert_eq!(stats.frames_lost, 0);
    let mut sim = sim;
    for i in 0..20 {
        sim.broadcast(i, i);
    }
    sim.run_for(Duration::from_secs(2));
    let stats = sim.stats();
    let ratio = stats.frames_lost as f64 / stats.frames_sent as f64;
    assert!((0.4..0.6).contains(&ratio), "{stats:?}");
}

#[test]
fn a_crash_is_noticed_after_the_detection_delay() {
    let mut sim = network(4, 30, SimConfig::default());
    let victim = 7;
    let victim_id = sim.id(victim);
    let neighbours: Vec<u32> = sim
        .node(victim)
        .expect("live")
        .links
        .iter()
        .filter_map(|id| sim.slot_of(id))
        .collect();
    assert!(!neighbours.is_empty());
    let crashed_at = sim.now();
    sim.crash(victim);
    sim.run_for(Duration::from_millis(1_900));
    for &n in &neighbours {
        assert!(sim.node(n).expect("live").links.contains(&victim_id));
    }
    sim.run_for(Duration::from_millis(3_200));
    for &n in &neighbours {
        let node = sim.node(n).expect("live");
        assert!(!node.links.contains(&victim_id));
        let (at, _) = node
            .closed
            .iter()
            .find(|(_, p)| *p == victim_id)
            .expect("closed");
        let delay = *at - crashed_at;
        assert!(delay >= Duration::from_secs(2) && delay <= Duration::from_secs(5));
    }
    // Frames towards it go nowhere, and a broadcast still reaches the others.
    sim.broadcast(0, 0);
    sim.run_for(Duration::from_secs(2));
    assert_eq!(delivered(&sim, 0), 28);
    assert!(!sim.recorder.broadcasts[0].has(victim));
}

#[test]
fn restart_with_the_same_key_rejoins() {
    let mut sim = network(5, 20, SimConfig::default());
    let id = sim.id(3);
    sim.crash(3);
    sim.run_for(Duration::from_secs(6));
    sim.restart(3);
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.id(3), id);
    assert!(!sim.node(3).expect("live").links.is_empty());
    sim.broadcast(0, 0);
    sim.run_for(Duration::from_secs(2));
    assert!(sim.recorder.broadcasts[0].has(3));
}

#[test]
fn a_partition_cuts_links_and_messages_until_it_heals() {
    let mut sim = network(6, 40, SimConfig::default());
    let start = sim.now() + Duration::from_secs(1);
    let end = start + Duration::from_secs(30);
    let side_a: Vec<bool> = (0..40).map(|s| s < 20).collect();
    sim.partition(side_a.clone(), start, end);
    sim.run_for(Duration::from_secs(7));
    assert_eq!(sim.components(), 2);
    sim.broadcast(0, 0);
    sim.run_for(Duration::from_secs(2));
    let rec = &sim.recorder.broadcasts[0];
    assert_eq!(rec.deliveries.len(), 19);
    assert!(rec.deliveries.iter().all(|&(s, _, _)| side_a[s as usize]));
    // While cut, new links cannot open across; after the heal, new joins bridge the halves again.
    sim.run_until(end);
    for _ in 0..5 {
        let slot = sim.add_node();
        sim.join(slot);
    }
    sim.run_for(Duration::from_secs(3));
    assert_eq!(sim.components(), 1);
}

#[test]
fn timers_fire_once_per_deadline() {
    let sim = network(7, 10, SimConfig::default());
    for slot in sim.live_slots() {
        let node = sim.node(slot).expect("live");
        let alive = sim.now() - sim.joined_at(slot).expect("joined");
        assert_eq!(node.ticks, alive.as_secs(), "slot {slot}");
    }
    assert_eq!(sim.stats().stalled_timers, 0);
}

#[test]
fn the_same_seed_replays_exactly() {
    let run = |seed| {
        let mut config = SimConfig::default();
        config.net.loss = 0.05;
        let mut sim = network(seed, 30, config);
        sim.crash(4);
        for i in 0..5 {
            sim.broadcast(i * 2, i);
            sim.run_for(Duration::from_millis(300));
        }
        sim.run_for(Duration::from_secs(5));
        let deliveries: Vec<_> = sim
            .recorder
            .broadcasts
            .iter()
            .map(|r| r.deliveries.clone())
            .collect();
        (sim.stats(), deliveries)
    };
    assert_eq!(run(11), run(11));
    assert_ne!(run(11).1, run(12).1);
}

#[test]
fn the_broadcast_scenario_measures_a_flooding_mesh_and_replays() {
    use crate::scenario::{Scenario, ScenarioArgs, run_with};
    let mut args = ScenarioArgs::new(Scenario::Broadcast);
    args.nodes = 150;
    args.seed = 9;
    args.loss = Some(0.0);
    args.strategy = crate::Strategy::Flood;
    let report = run_with::<Flood>(&args, ());
    eprintln!("{}", report.table());
    assert_eq!(report.delivery_ratio, Some(1.0), "{}", report.table());
    assert_eq!(report.components, Some(1));
    // Flooding sends each message over every link but one: far more than once per receiver.
    assert!(report.rmr.is_some_and(|r| r > 5.0), "{}", report.table());
    assert!(report.ldh.is_some_and(|h| (2.0..10.0).contains(&h)));
    assert!(report.ldh_max.is_some_and(|h| (2..10).contains(&h)));
    let again = run_with::<Flood>(&args, ());
    assert_eq!(report.deterministic(), again.deterministic());
    assert_eq!(
        report.deterministic().to_json().to_string(),
        again.deterministic().to_json().to_string()
    );
}

#[test]
fn the_dht_scenario_measures_puts_gets_and_lost_records() {
    use crate::scenario::{Scenario, ScenarioArgs, run_with};
    let mut args = ScenarioArgs::new(Scenario::Dht);
    args.nodes = 40;
    args.seed = 3;
    let report = run_with::<Flood>(&args, ());
    let table = report.table();
    eprintln!("{table}");
    assert_eq!(report.put_success, Some(1.0), "{table}");
    assert_eq!(report.records_lost, Some(0), "{table}");
    // Every node of the first join holds every record and finds it at once; a joiner finds none.
    let note = |key: &str| {
        report
            .notes
            .iter()
            .find(|(k, _)| k.starts_with(key))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no note {key}"))
    };
    let by = note("gets found / started: by first nodes");
    let counts: Vec<u64> = by
        .split(['/', ';'])
        .map(|n| n.trim().parse().expect("a count"))
        .collect();
    assert_eq!(counts[0], counts[1], "{by}");
    assert_eq!(counts[2], 0, "{by}");
    assert_eq!(counts[1] + counts[3], 1_000, "{by}");
    assert!(counts[3] > 100, "{by}");
    let success = report.get_success.expect("gets measured");
    assert!(
        (success - counts[0] as f64 / 1_000.0).abs() < 1e-9,
        "{table}"
    );
    assert_eq!(
        (report.get_hops_p50, report.get_ms_p99),
        (Some(0.0), Some(0.0))
    );
    assert!(
        note("record's live holders").starts_with("28 / 28"),
        "{table}"
    );
}

#[test]
fn command_line_names_are_the_report_names() {
    use crate::{Scenario, Strategy};
    use clap::ValueEnum;
    for s in Scenario::value_variants() {
        let value = s.to_possible_value().expect("no variant is skipped");
        assert_eq!(value.get_name(), s.name());
    }
    for s in Strategy::value_variants() {
        let value = s.to_possible_value().expect("no variant is skipped");
        assert_eq!(value.get_name(), s.name());
    }
}

/// `--roots-first`: each tree's lowest node (gossip-core's order) joins before every other node, the
/// others keep their order, and no slot is lost or repeated.
#[test]
fn roots_first_puts_each_trees_lowest_node_first() {
    let mut sim = Simulation::<Flood>::new(1, SimConfig::default(), ());
    let slots: Vec<u32> = (0..300).map(|_| sim.add_node()).collect();
    let trees = 12;
    let order = crate::scenario::roots_first(&sim, slots.clone(), trees);
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, slots);
    let roots: BTreeSet<u32> = (0..trees)
        .map(|tree| {
            *slots
                .iter()
                .min_by_key(|&&s| gossip_core::tree_order_key(trees, tree, &sim.id(s)))
                .expect("nodes")
        })
        .collect();
    assert!(roots.len() > 1, "the trees have different roots");
    let (head, tail) = order.split_at(roots.len());
    assert_eq!(head.iter().copied().collect::<BTreeSet<u32>>(), roots);
    assert!(tail.windows(2).all(|w| w[0] < w[1]));
}
