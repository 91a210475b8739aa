//! Lookups converge in a 200-node network on virtual time: every node joins through one known node,
//! then finds other nodes by id and values stored by others, also after 10% of the nodes vanish without
//! notice.
//!
//! Run with `--nocapture` to see the lookup rounds per seed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kademlia_core::{
    Config, Event, Instant, Node, NodeId, Output, QueryEnd, QueryId, QueryResult, Record,
};
use netsim::{Core, Engine, NetConfig};
use p2pmesh_base::Identity;
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const NODES: usize = 200;
const LOOKUPS_PER_NODE: usize = 20;
/// Fewer lookups after the vanishing: each one waits out timeouts, and 1,000 per seed is plenty.
const LOOKUPS_PER_NODE_AFTER_VANISH: usize = 5;
const SEEDS: [u64; 5] = [1, 2, 3, 4, 5];

struct Finished {
    result: QueryResult,
    end: QueryEnd,
    rounds: u32,
}

/// A Kademlia node as the engine's core: its sends go over the link to their addressee.
struct Kad(Node);

impl Core for Kad {
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
    // Kademlia has no links: it learns of peers from messages and forgets them by timeouts.
    fn handle_peer_up(&mut self, _: Instant, _: NodeId, _: Vec<u8>, _: Vec<u8>) {}
    fn handle_peer_down(&mut self, _: Instant, _: NodeId) {}
    fn poll_output(&mut self) -> Option<netsim::Output<NodeId, Event>> {
        Some(match self.0.poll_output()? {
            Output::Transmit { to, bytes } => netsim::Output::Transmit { link: to, bytes },
            Output::Event(event) => netsim::Output::Event(event),
            other => panic!("an output this adapter does not know: {other:?}"),
        })
    }
    fn poll_timeout(&self) -> Option<Instant> {
        self.0.poll_timeout()
    }
}

/// A network where every node reaches every other directly (a link between every pair), with a
/// seeded latency of 10 to 100 ms per pair, on the shared engine.
struct Net {
    seed: u64,
    engine: Engine<Kad>,
    ids: Vec<NodeId>,
    /// The keys behind the ids, which sign the records each node publishes.
    identities: Vec<Identity>,
    /// Vanished nodes: they get no input, and what is sent to them is lost.
    dead: Vec<bool>,
    rng: ChaCha8Rng,
    running: BTreeSet<(usize, QueryId)>,
    finished: BTreeMap<(usize, QueryId), Finished>,
    /// Requests timed out at nodes that vanished since.
    retired_timeouts: u64,
}

impl Net {
    fn new(seed: u64) -> Self {
        let identities: Vec<Identity> = (0..NODES)
            .map(|i| {
                let mut secret = [0u8; 32];
                secret[..8].copy_from_slice(&seed.to_le_bytes());
                secret[8..16].copy_from_slice(&(i as u64).to_le_bytes());
                Identity::from_secret_bytes(&secret)
            })
            .collect();
        let ids: Vec<NodeId> = identities.iter().map(Identity::id).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let net_rng = ChaCha8Rng::seed_from_u64(rng.next_u64());
        let server_rng = ChaCha8Rng::seed_from_u64(rng.next_u64());
        let mut engine = Engine::new(
            Instant::from_millis(1_700_000_000_000),
            NetConfig::default(),
            net_rng,
            server_rng,
        );
        for (i, id) in ids.iter().enumerate() {
            let node = Node::new(*id, Config::default(), seed * 1_000_000 + i as u64);
            engine.add_node(Kad(node), Vec::new());
        }
        for a in 0..NODES as u32 {
            for b in a + 1..NODES as u32 {
                engine.link(a, b);
            }
        }
        Self {
            seed,
            engine,
            ids,
            identities,
            dead: vec![false; NODES],
            rng,
            running: BTreeSet::new(),
            finished: BTreeMap::new(),
            retired_timeouts: 0,
        }
    }

    fn id(&self, i: usize) -> NodeId {
        self.ids[i]
    }

    /// Node `i` vanishes without notice.
    fn vanish(&mut self, i: usize) {
        self.dead[i] = true;
        if let Some(Kad(node)) = self.engine.crash(i as u32) {
            self.retired_timeouts += node.stats().requests_timed_out;
        }
    }

    /// Hands the finished queries the nodes reported to the tracking.
    fn record(&mut self) {
        for (_, slot, event) in self.engine.drain_events() {
            let i = slot as usize;
            if let Event::QueryFinished {
                id,
                result,
                end,
                rounds,
                ..
            } = event
                && self.running.remove(&(i, id))
            {
                self.finished.insert(
                    (i, id),
                    Finished {
                        result,
                        end,
                        rounds,
                    },
                );
            }
        }
    }

    /// Runs a command on node `i` and tracks the query it starts.
    fn command(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> QueryId) -> QueryId {
        let now = self.engine.now();
        let Some(Kad(node)) = self.engine.node_mut(i as u32) else {
            panic!("seed {}: command on vanished node {i}", self.seed);
        };
        let q = f(node, now);
        self.running.insert((i, q));
        self.engine.drive(i as u32);
        self.record();
        q
    }

    /// Processes the next event due by `until`; false when there is none.
    fn step(&mut self, until: Instant) -> bool {
        let stepped = self.engine.step(until).is_some();
        self.record();
        stepped
    }

    fn run_until(&mut self, until: Instant) {
        while self.step(until) {}
        self.engine.advance_to(until);
    }

    /// Runs until every tracked query finished; they all must within a minute of virtual time.
    fn run_queries(&mut self) {
        let limit = self.engine.now() + Duration::from_secs(60);
        while !self.running.is_empty() {
            assert!(
                self.step(limit),
                "seed {}: {} queries still running at the time limit",
                self.seed,
                self.running.len()
            );
        }
    }

    /// Every node but node 0 joins through node 0, one every 50 ms.
    fn bootstrap_all(&mut self) {
        let known = self.id(0);
        for i in 1..NODES {
            let at = self.engine.now() + Duration::from_millis(50);
            self.run_until(at);
            self.command(i, |n, now| n.bootstrap(now, &[known]));
        }
        self.run_queries();
        for ((i, _), f) in std::mem::take(&mut self.finished) {
            let QueryResult::Bootstrap { closest } = &f.result else {
                panic!("seed {}: node {i} bootstrap gave {:?}", self.seed, f.result);
            };
            assert!(
                !closest.is_empty(),
                "seed {}: node {i} bootstrap found no node",
                self.seed
            );
        }
    }

    fn random_live_other(&mut self, i: usize) -> usize {
        loop {
            let j = self.rng.random_range(0..NODES);
            if j != i && !self.dead[j] {
                return j;
            }
        }
    }

    /// Every live node looks up `per_node` random live others; all must find their target.
    /// Returns the rounds of the lookups.
    fn lookups_succeed(&mut self, what: &str, per_node: usize) -> Vec<u32> {
        let mut targets = BTreeMap::new();
        for i in 0..NODES {
            if self.dead[i] {
                continue;
            }
            for _ in 0..per_node {
                let j = self.random_live_other(i);
                let target = self.id(j);
                let q = self.command(i, |n, now| n.find_node(now, target));
                targets.insert((i, q), target);
            }
        }
        self.run_queries();
        let mut rounds = Vec::new();
        for ((i, q), f) in std::mem::take(&mut self.finished) {
            let target = targets[&(i, q)];
            let QueryResult::FindNode { closest, .. } = &f.result else {
                panic!("seed {}: {what}: node {i} got {:?}", self.seed, f.result);
            };
            assert!(
                closest.contains(&target),
                "seed {}: {what}: node {i} did not find {target} ({:?}, {} found)",
                self.seed,
                f.end,
                closest.len()
            );
            assert_eq!(
                f.end,
                QueryEnd::Completed,
                "seed {}: {what}: node {i}",
                self.seed
            );
            rounds.push(f.rounds);
        }
        assert_eq!(
            rounds.len(),
            targets.len(),
            "seed {}: {what}: every lookup reported",
            self.seed
        );
        rounds
    }

    /// `publishers` random nodes each publish a value; returns (publisher, key, value).
    fn publish(&mut self, publishers: usize) -> Vec<(usize, NodeId, Vec<u8>)> {
        let mut values = Vec::new();
        for n in 0..publishers {
            let i = self.rng.random_range(0..NODES);
            let salt = format!("value-{}-{n}", self.seed).into_bytes();
            let value = format!("value {n} from node {i}").into_bytes();
            let record = Record::sign(&self.identities[i], salt, 1, value.clone(), Instant::ZERO);
            let key = record.key;
            self.command(i, move |node, now| node.put_value(now, record));
            values.push((i, key, value));
        }
        self.run_queries();
        for ((i, _), f) in std::mem::take(&mut self.finished) {
            let QueryResult::PutValue { stored, .. } = f.result else {
                panic!("seed {}: node {i} put gave {:?}", self.seed, f.result);
            };
            assert!(
                stored >= 10,
                "seed {}: node {i} stored its value at only {stored} nodes",
                self.seed
            );
        }
        values
    }

    /// `readers` random live nodes other than the publisher look up each value; all must find it.
    /// Returns the rounds.
    fn values_found(&mut self, values: &[(usize, NodeId, Vec<u8>)], readers: usize) -> Vec<u32> {
        let mut expected = BTreeMap::new();
        for (publisher, key, value) in values {
            for _ in 0..readers {
                let i = self.random_live_other(*publisher);
                let key = *key;
                let q = self.command(i, |n, now| n.get_value(now, key));
                expected.insert((i, q), value.clone());
            }
        }
        self.run_queries();
        let mut rounds = Vec::new();
        for ((i, q), f) in std::mem::take(&mut self.finished) {
            let QueryResult::GetValue { record, key } = &f.result else {
                panic!("seed {}: node {i} get gave {:?}", self.seed, f.result);
            };
            let found = record.as_ref().map(|r| &r.value);
            assert_eq!(
                found,
                Some(&expected[&(i, q)]),
                "seed {}: node {i} looked up {key} ({:?})",
                self.seed,
                f.end
            );
            rounds.push(f.rounds);
        }
        rounds
    }
}

fn median_and_worst(mut rounds: Vec<u32>) -> (u32, u32) {
    let median = netsim::percentile(&mut rounds, 50.0).expect("some lookups");
    let worst = netsim::percentile(&mut rounds, 100.0).expect("some lookups");
    (median, worst)
}

#[test]
fn lookups_converge_in_200_nodes() {
    for seed in SEEDS {
        let mut net = Net::new(seed);
        net.bootstrap_all();
        let rounds = net.lookups_succeed("find_node", LOOKUPS_PER_NODE);
        let (median, worst) = median_and_worst(rounds);
        let values = net.publish(5);
        let value_rounds = net.values_found(&values, 10);
        let (v_median, v_worst) = median_and_worst(value_rounds);
        println!(
            "seed {seed}: find_node rounds median {median} worst {worst}; \
             get_value rounds median {v_median} worst {v_worst}"
        );
        // log2(200) is about 8: a lookup that needs more hops than that is not converging.
        assert!(worst <= 8, "seed {seed}: worst lookup took {worst} rounds");
    }
}

#[test]
fn lookups_succeed_after_10_percent_vanish() {
    for seed in SEEDS {
        let mut net = Net::new(seed);
        net.bootstrap_all();
        let values = net.publish(5);
        let mut vanished = 0;
        while vanished < NODES / 10 {
            let i = net.rng.random_range(0..NODES);
            if !net.dead[i] {
                net.vanish(i);
                vanished += 1;
            }
        }
        let rounds = net.lookups_succeed("find_node after vanish", LOOKUPS_PER_NODE_AFTER_VANISH);
        let (median, worst) = median_and_worst(rounds);
        let value_rounds = net.values_found(&values, 10);
        let (v_median, v_worst) = median_and_worst(value_rounds);
        let timed_out: u64 = net.retired_timeouts
            + net
                .engine
                .nodes()
                .map(|Kad(n)| n.stats().requests_timed_out)
                .sum::<u64>();
        println!(
            "seed {seed}, 10% vanished: find_node rounds median {median} worst {worst}; \
             get_value rounds median {v_median} worst {v_worst}; {timed_out} requests timed out"
        );
        assert!(
            timed_out > 0,
            "seed {seed}: the vanished nodes were never asked"
        );
    }
}
