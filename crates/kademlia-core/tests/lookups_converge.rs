//! Lookups converge in a 200-node network on virtual time: every node joins through one known node,
//! then finds other nodes by id and values stored by others, also after 10% of the nodes vanish without
//! notice.
//!
//! Run with `--nocapture` to see the lookup rounds per seed.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use kademlia_core::{Config, Event, Instant, Node, NodeId, Output, QueryEnd, QueryId, QueryResult};
use rand::{RngExt, SeedableRng};
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

/// A message on its way, ordered by delivery time, then by send order.
struct InFlight {
    /// Delivery time in microseconds (high 64 bits) and a sequence number (low 64 bits): one integer
    /// to compare keeps the heap cheap in unoptimized test builds.
    key: u128,
    to: usize,
    from: usize,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// A network where every node reaches every other directly, with a seeded latency of 10 to 100 ms per
/// message, driven in virtual time.
struct Net {
    seed: u64,
    nodes: Vec<Node>,
    index: BTreeMap<NodeId, usize>,
    /// Vanished nodes: they get no input, and what is sent to them is lost.
    dead: Vec<bool>,
    now: Instant,
    rng: ChaCha8Rng,
    messages: BinaryHeap<Reverse<InFlight>>,
    /// (deadline, node); entries go stale when a node's deadline changes, and are checked on pop.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// The deadline last pushed for each node: only that heap entry is live.
    scheduled: Vec<Option<Instant>>,
    seq: u64,
    running: BTreeSet<(usize, QueryId)>,
    finished: BTreeMap<(usize, QueryId), Finished>,
}

impl Net {
    fn new(seed: u64) -> Self {
        let ids: Vec<NodeId> = (0..NODES)
            .map(|i| NodeId::hash(format!("node-{seed}-{i}")))
            .collect();
        let nodes = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Node::new(*id, Config::default(), seed * 1_000_000 + i as u64))
            .collect();
        Self {
            seed,
            nodes,
            index: ids.iter().enumerate().map(|(i, id)| (*id, i)).collect(),
            dead: vec![false; NODES],
            now: Instant::from_millis(1_700_000_000_000),
            rng: ChaCha8Rng::seed_from_u64(seed),
            messages: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            scheduled: vec![None; NODES],
            seq: 0,
            running: BTreeSet::new(),
            finished: BTreeMap::new(),
        }
    }

    fn id(&self, i: usize) -> NodeId {
        self.nodes[i].local_id()
    }

    /// Drains node `i`'s outputs after an input and schedules its next timeout.
    fn after_input(&mut self, i: usize) {
        while let Some(output) = self.nodes[i].poll_output() {
            match output {
                Output::Transmit { to, bytes } => {
                    let Some(&j) = self.index.get(&to) else {
                        panic!("seed {}: node {i} sent to an unknown id {to}", self.seed);
                    };
                    if self.dead[j] {
                        continue;
                    }
                    let latency = Duration::from_millis(self.rng.random_range(10..=100));
                    self.seq += 1;
                    let at = (self.now + latency).as_micros();
                    self.messages.push(Reverse(InFlight {
                        key: (u128::from(at) << 64) | u128::from(self.seq),
                        to: j,
                        from: i,
                        bytes,
                    }));
                }
                Output::Event(Event::QueryFinished {
                    id,
                    result,
                    end,
                    rounds,
                    ..
                }) if self.running.remove(&(i, id)) => {
                    self.finished.insert(
                        (i, id),
                        Finished {
                            result,
                            end,
                            rounds,
                        },
                    );
                }
                _ => {}
            }
        }
        let next = self.nodes[i].poll_timeout();
        if next != self.scheduled[i] {
            self.scheduled[i] = next;
            if let Some(t) = next {
                self.timers.push(Reverse((t, i)));
            }
        }
    }

    /// Runs a command on node `i` and tracks the query it starts.
    fn command(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> QueryId) -> QueryId {
        let q = f(&mut self.nodes[i], self.now);
        self.running.insert((i, q));
        self.after_input(i);
        q
    }

    /// Processes the next message or timer due by `until`; false when there is none.
    fn step(&mut self, until: Instant) -> bool {
        let next_message = self
            .messages
            .peek()
            .map(|Reverse(m)| Instant::from_micros((m.key >> 64) as u64));
        let next_timer = self.timers.peek().map(|Reverse(t)| t.0);
        match (next_message, next_timer) {
            (Some(m), t) if m <= until && t.is_none_or(|t| m <= t) => {
                let Some(Reverse(InFlight {
                    key,
                    to,
                    from,
                    bytes,
                })) = self.messages.pop()
                else {
                    return false;
                };
                self.now = self.now.max(Instant::from_micros((key >> 64) as u64));
                if !self.dead[to] {
                    let from_id = self.id(from);
                    self.nodes[to].handle_message(self.now, from_id, &bytes);
                    self.after_input(to);
                }
                true
            }
            (_, Some(t)) if t <= until => {
                let Some(Reverse((at, i))) = self.timers.pop() else {
                    return false;
                };
                // Skip stale entries: the node's deadline moved since this one was pushed.
                if self.scheduled[i] != Some(at) {
                    return true;
                }
                self.scheduled[i] = None;
                if !self.dead[i] {
                    self.now = self.now.max(at);
                    self.nodes[i].handle_timeout(self.now);
                    self.after_input(i);
                }
                true
            }
            _ => false,
        }
    }

    fn run_until(&mut self, until: Instant) {
        while self.step(until) {}
        self.now = self.now.max(until);
    }

    /// Runs until every tracked query finished; they all must within a minute of virtual time.
    fn run_queries(&mut self) {
        let limit = self.now + Duration::from_secs(60);
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
            let at = self.now + Duration::from_millis(50);
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
            let key = NodeId::hash(format!("value-{}-{n}", self.seed));
            let value = format!("value {n} from node {i}").into_bytes();
            let v = value.clone();
            self.command(i, move |node, now| node.put_value(now, key, v));
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
    rounds.sort_unstable();
    (rounds[rounds.len() / 2], rounds[rounds.len() - 1])
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
                net.dead[i] = true;
                vanished += 1;
            }
        }
        let rounds = net.lookups_succeed("find_node after vanish", LOOKUPS_PER_NODE_AFTER_VANISH);
        let (median, worst) = median_and_worst(rounds);
        let value_rounds = net.values_found(&values, 10);
        let (v_median, v_worst) = median_and_worst(value_rounds);
        let timed_out: u64 = net.nodes.iter().map(|n| n.stats().requests_timed_out).sum();
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
