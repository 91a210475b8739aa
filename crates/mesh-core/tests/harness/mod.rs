//! A small virtual-time network for scenario tests: nodes, links with latency, a signaling server that
//! relays and introduces, and a stub WebRTC engine (offer, answer, open).

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use mesh_core::{Config, Event, Instant, Node, NodeId, Output, ServerInput};

#[derive(Debug, Clone)]
enum Ev {
    Data {
        to: usize,
        from: NodeId,
        bytes: Vec<u8>,
    },
    Server {
        to: usize,
        input: ServerInput,
    },
    Open {
        a: usize,
        b: usize,
    },
    Closed {
        to: usize,
        peer: NodeId,
    },
    Signal {
        at: usize,
        to: NodeId,
        payload: Vec<u8>,
    },
}

/// The simulated network.
pub struct Net {
    pub nodes: Vec<Node>,
    pub ids: Vec<NodeId>,
    index: BTreeMap<NodeId, usize>,
    pub now: Instant,
    queue: BTreeMap<(Instant, u64), Ev>,
    seq: u64,
    timers: Vec<Option<Instant>>,
    /// Connect outputs seen: (node, peer).
    connecting: BTreeSet<(usize, usize)>,
    /// Open links (a < b).
    open: BTreeSet<(usize, usize)>,
    pub joined: Vec<bool>,
    pub events: Vec<(usize, Event)>,
    /// When each of `events` happened.
    pub event_times: Vec<Instant>,
    pub dead: BTreeSet<usize>,
    rng: u64,
}

impl Net {
    pub fn new(n: usize, config: &Config) -> Self {
        let nodes: Vec<Node> = (0..n)
            .map(|i| {
                let mut secret = [0u8; 32];
                secret[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
                Node::new(secret, config.clone(), i as u64)
            })
            .collect();
        let ids: Vec<NodeId> = nodes.iter().map(|n| n.local_id()).collect();
        let index = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        Net {
            nodes,
            ids,
            index,
            now: Instant::from_millis(1_700_000_000_000),
            queue: BTreeMap::new(),
            seq: 0,
            timers: vec![None; n],
            connecting: BTreeSet::new(),
            open: BTreeSet::new(),
            joined: vec![false; n],
            events: Vec::new(),
            event_times: Vec::new(),
            dead: BTreeSet::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Latency of the link between two nodes: fixed per pair, 10 to 100 ms.
    fn latency(&self, a: usize, b: usize) -> Duration {
        let (x, y) = if a < b { (a, b) } else { (b, a) };
        let h = (x as u64)
            .wrapping_mul(0x9e37_79b9)
            .wrapping_add(y as u64)
            .wrapping_mul(0x2545_f491_4f6c_dd1d);
        Duration::from_millis(10 + (h >> 32) % 91)
    }

    fn push(&mut self, delay: Duration, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), ev);
    }

    /// The node joins: it tells the server, which answers with the 5 closest joined peers and introduces
    /// it to its closest and a few random joined peers.
    pub fn join(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].join(now);
        let me = self.ids[i];
        let mut others: Vec<usize> = (0..self.nodes.len())
            .filter(|&j| self.joined[j] && !self.dead.contains(&j))
            .collect();
        others.sort_by_key(|&j| self.ids[j].distance(&me));
        let boot: Vec<NodeId> = others.iter().take(5).map(|&j| self.ids[j]).collect();
        self.push(
            Duration::from_millis(20),
            Ev::Server {
                to: i,
                input: ServerInput::BootstrapPeers(boot),
            },
        );
        let mut intro: Vec<usize> = others.iter().take(5).copied().collect();
        for _ in 0..3 {
            if !others.is_empty() {
                let r = (self.rand() % others.len() as u64) as usize;
                intro.push(others[r]);
            }
        }
        for j in intro {
            self.push(
                Duration::from_millis(20),
                Ev::Server {
                    to: j,
                    input: ServerInput::PeerJoined(me),
                },
            );
        }
        self.joined[i] = true;
        self.drain(i);
    }

    /// Crash a node without notice: its links stay open at the far side but carry nothing.
    pub fn crash(&mut self, i: usize) {
        self.dead.insert(i);
    }

    fn drain(&mut self, i: usize) {
        let me = self.ids[i];
        while let Some(out) = self.nodes[i].poll_output() {
            match out {
                Output::Transmit { link, bytes } => {
                    let j = self.index[&link];
                    let key = if i < j { (i, j) } else { (j, i) };
                    if self.open.contains(&key) {
                        let d = self.latency(i, j);
                        self.push(
                            d,
                            Ev::Data {
                                to: j,
                                from: me,
                                bytes,
                            },
                        );
                    }
                }
                Output::Connect { peer, initiator } => {
                    let j = self.index[&peer];
                    self.connecting.insert((i, j));
                    if initiator {
                        self.push(
                            Duration::from_millis(1),
                            Ev::Signal {
                                at: i,
                                to: peer,
                                payload: b"offer".to_vec(),
                            },
                        );
                    }
                }
                Output::Disconnect { peer, .. } => {
                    let j = self.index[&peer];
                    self.connecting.remove(&(i, j));
                    let key = if i < j { (i, j) } else { (j, i) };
                    let was_open = self.open.remove(&key);
                    if was_open || self.connecting.remove(&(j, i)) {
                        let d = self.latency(i, j);
                        self.push(d, Ev::Closed { to: j, peer: me });
                    }
                }
                Output::Signal { to, payload } => {
                    let j = self.index[&to];
                    self.push(
                        Duration::from_millis(60),
                        Ev::Server {
                            to: j,
                            input: ServerInput::Relayed { from: me, payload },
                        },
                    );
                }
                Output::Event(Event::Signal { from, payload }) => {
                    let j = self.index[&from];
                    if payload == b"offer" {
                        self.push(
                            Duration::from_millis(1),
                            Ev::Signal {
                                at: i,
                                to: from,
                                payload: b"answer".to_vec(),
                            },
                        );
                    } else if self.connecting.contains(&(i, j)) && self.connecting.contains(&(j, i))
                    {
                        // Answer arrived: ICE and DTLS take one round trip.
                        let d = self.latency(i, j) * 2;
                        self.push(d, Ev::Open { a: i, b: j });
                    }
                }
                Output::Event(e) => {
                    self.events.push((i, e));
                    self.event_times.push(self.now);
                }
                other => panic!("the harness does not know this output: {other:?}"),
            }
        }
        self.timers[i] = self.nodes[i].poll_timeout();
    }

    fn fp(&self, i: usize) -> Vec<u8> {
        self.ids[i].as_bytes()[..8].to_vec()
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Instant) {
        loop {
            let next_ev = self.queue.keys().next().map(|k| k.0);
            let next_timer = self
                .timers
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.dead.contains(i))
                .filter_map(|(i, t)| t.map(|t| (t, i)))
                .min();
            let t = match (next_ev, next_timer) {
                (None, None) => break,
                (Some(e), None) => e,
                (None, Some((t, _))) => t,
                (Some(e), Some((t, _))) => e.min(t),
            };
            if t > until {
                break;
            }
            self.now = self.now.max(t);
            let now = self.now;
            if let Some((tt, i)) = next_timer
                && tt <= now
                && next_ev.is_none_or(|e| tt <= e)
            {
                self.nodes[i].handle_timeout(now);
                self.drain(i);
                continue;
            }
            let Some((_, ev)) = self.queue.pop_first() else {
                break;
            };
            match ev {
                Ev::Data { to, from, bytes } => {
                    if !self.dead.contains(&to) {
                        self.nodes[to].handle_message(now, from, &bytes);
                        self.drain(to);
                    }
                }
                Ev::Server { to, input } => {
                    if !self.dead.contains(&to) {
                        self.nodes[to].handle_server(now, input);
                        self.drain(to);
                    }
                }
                Ev::Open { a, b } => {
                    if self.connecting.contains(&(a, b)) && self.connecting.contains(&(b, a)) {
                        self.connecting.remove(&(a, b));
                        self.connecting.remove(&(b, a));
                        self.open.insert(if a < b { (a, b) } else { (b, a) });
                        let (fa, fb) = (self.fp(a), self.fp(b));
                        for (x, y, fx, fy) in [(a, b, fa.clone(), fb.clone()), (b, a, fb, fa)] {
                            if !self.dead.contains(&x) {
                                let peer = self.ids[y];
                                self.nodes[x].handle_link_open(now, peer, fx, fy);
                                self.drain(x);
                            }
                        }
                    }
                }
                Ev::Closed { to, peer } => {
                    if !self.dead.contains(&to) {
                        self.nodes[to].handle_link_closed(now, peer);
                        self.drain(to);
                    }
                }
                Ev::Signal { at, to, payload } => {
                    if !self.dead.contains(&at) {
                        self.nodes[at].send_signal(now, to, payload);
                        self.drain(at);
                    }
                }
            }
        }
        self.now = self.now.max(until);
    }

    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Mutual up links between live nodes.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for i in 0..self.nodes.len() {
            if self.dead.contains(&i) {
                continue;
            }
            for p in self.nodes[i].links() {
                let j = self.index[&p];
                if i < j && !self.dead.contains(&j) && self.nodes[j].links().contains(&self.ids[i])
                {
                    out.push((i, j));
                }
            }
        }
        out
    }

    /// Connected components among live nodes (by mutual up links).
    pub fn components(&self) -> usize {
        let n = self.nodes.len();
        let mut parent: Vec<usize> = (0..n).collect();
        fn find(p: &mut [usize], x: usize) -> usize {
            let mut x = x;
            while p[x] != x {
                p[x] = p[p[x]];
                x = p[x];
            }
            x
        }
        for (a, b) in self.edges() {
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            parent[ra] = rb;
        }
        (0..n)
            .filter(|i| !self.dead.contains(i))
            .filter(|&i| find(&mut parent, i) == i)
            .count()
    }

    pub fn do_with<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.nodes[i], now);
        self.drain(i);
        r
    }

    pub fn index_of(&self, id: &NodeId) -> usize {
        self.index[id]
    }
}
