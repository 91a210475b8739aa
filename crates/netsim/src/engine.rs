//! The engine: nodes of one [`Core`], the event loop that drives them, the signaling server and the
//! link layer (offer, answer, DTLS fingerprints, data channels with latency and loss, links that die
//! with their node and are noticed late), partitions, crashes and restarts.

use core::time::Duration;

use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::core::{Core, Output, ServerInput};
use crate::net::{NetConfig, Network, Partition};
use crate::queue::EventQueue;
use crate::server::Server;

/// Size of [`NetStats::frames_by_kind`].
pub const FRAME_KINDS: usize = 24;

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
    /// Frames delivered, by [`Core::frame_kind`].
    pub frames_by_kind: [u64; FRAME_KINDS],
    /// Timer events that ran a node's `handle_timeout`.
    pub timers_run: u64,
}

/// The engine's peer connection towards one peer (what a WebRTC `RTCPeerConnection` is to a real
/// driver).
#[derive(Debug, Clone, Copy)]
struct PeerConn<T> {
    peer: u32,
    /// 0 until the answerer sees the offer.
    session: u64,
    initiator: bool,
    answered: bool,
    open: bool,
    created: T,
}

#[derive(Debug)]
struct Slot<C: Core> {
    node: Option<C>,
    fingerprint: Vec<u8>,
    incarnation: u32,
    joined_at: Option<C::Time>,
    timer: Option<C::Time>,
    conns: Vec<PeerConn<C::Time>>,
}

#[derive(Debug)]
enum Ev<Id> {
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
        input: ServerInput<Id>,
    },
    Relay {
        from: u32,
        to: Id,
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

/// Many nodes of core `C` on one virtual clock.
#[derive(Debug)]
pub struct Engine<C: Core> {
    queue: EventQueue<C::Time, Ev<C::Id>>,
    net: Network<C::Time>,
    server: Server,
    slots: Vec<Slot<C>>,
    ids: Vec<C::Id>,
    by_id: FxHashMap<C::Id, u32>,
    next_session: u64,
    stats: NetStats,
    events: Vec<(C::Time, u32, C::Event)>,
}

impl<C: Core> Engine<C> {
    /// An empty network whose clock reads `start`; `net_rng` draws losses and detection delays,
    /// `server_rng` the server's random introductions.
    pub fn new(
        start: C::Time,
        net: NetConfig,
        net_rng: ChaCha8Rng,
        server_rng: ChaCha8Rng,
    ) -> Self {
        Self {
            queue: EventQueue::new(start),
            net: Network::new(net, net_rng),
            server: Server::new(server_rng),
            slots: Vec::new(),
            ids: Vec::new(),
            by_id: FxHashMap::default(),
            next_session: 1,
            stats: NetStats::default(),
            events: Vec::new(),
        }
    }

    /// Virtual time now.
    pub fn now(&self) -> C::Time {
        self.queue.now()
    }

    /// Network counters.
    pub fn stats(&self) -> NetStats {
        NetStats {
            events: self.queue.processed(),
            ..self.stats.clone()
        }
    }

    /// Events waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The network model (to add partitions or change the loss rate).
    pub fn network(&mut self) -> &mut Network<C::Time> {
        &mut self.net
    }

    /// The signaling server (its introduction rule).
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
    pub fn id(&self, slot: u32) -> C::Id {
        self.ids[slot as usize]
    }

    /// The slot of an id.
    pub fn slot_of(&self, id: &C::Id) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// Whether a slot's node is running.
    pub fn is_live(&self, slot: u32) -> bool {
        self.slots[slot as usize].node.is_some()
    }

    /// When a live slot last joined.
    pub fn joined_at(&self, slot: u32) -> Option<C::Time> {
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
    pub fn node(&self, slot: u32) -> Option<&C> {
        self.slots[slot as usize].node.as_ref()
    }

    /// A slot's node, mutably (inputs given this way must be followed by [`Engine::drive`]).
    pub fn node_mut(&mut self, slot: u32) -> Option<&mut C> {
        self.slots[slot as usize].node.as_mut()
    }

    /// The running nodes, by slot.
    pub fn nodes(&self) -> impl Iterator<Item = &C> {
        self.slots.iter().filter_map(|s| s.node.as_ref())
    }

    /// The events the nodes produced since the last call, each with its time and slot, in order.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, (C::Time, u32, C::Event)> {
        self.events.drain(..)
    }

    /// Add a node whose links show the DTLS certificate `fingerprint`; it does not join yet.
    pub fn add_node(&mut self, node: C, fingerprint: Vec<u8>) -> u32 {
        let id = node.local_id();
        let slot = u32::try_from(self.slots.len()).unwrap_or(u32::MAX);
        self.slots.push(Slot {
            node: Some(node),
            fingerprint,
            incarnation: 0,
            joined_at: None,
            timer: None,
            conns: Vec::new(),
        });
        self.ids.push(id);
        self.by_id.insert(id, slot);
        slot
    }

    /// Start `slot`'s node ([`Core::handle_join`]): its join reaches the server after the server
    /// latency, and the server introduces it.
    pub fn join(&mut self, slot: u32) {
        let now = self.now();
        let s = &mut self.slots[slot as usize];
        let Some(node) = s.node.as_mut() else {
            return;
        };
        node.handle_join(now);
        s.joined_at = Some(now);
        let incarnation = s.incarnation;
        self.drive(slot);
        let at = now + self.net.server_latency(slot);
        self.queue
            .schedule(at, Ev::ServerJoin { slot, incarnation });
    }

    /// Open a link between `a` and `b` at once, without signaling (a fixed topology): both nodes see
    /// [`Core::handle_peer_up`] now.
    pub fn link(&mut self, a: u32, b: u32) {
        let now = self.now();
        self.close_conn(a, b);
        self.close_conn(b, a);
        let session = self.next_session;
        self.next_session += 1;
        for (x, y, initiator) in [(a, b, true), (b, a, false)] {
            self.slots[x as usize].conns.push(PeerConn {
                peer: y,
                session,
                initiator,
                answered: true,
                open: true,
                created: now,
            });
        }
        self.stats.links_opened += 1;
        self.links_opened(a, b);
    }

    /// Crash `slot` without notice: its links die (each survivor notices after the detection delay),
    /// the server drops it after the detection delay, every event on its way to it is lost. Returns
    /// the node.
    pub fn crash(&mut self, slot: u32) -> Option<C> {
        let now = self.now();
        let s = &mut self.slots[slot as usize];
        let node = s.node.take()?;
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
        Some(node)
    }

    /// Put a new node (with the same id) in a crashed slot, with a new fingerprint, and join again.
    pub fn restart(&mut self, slot: u32, node: C, fingerprint: Vec<u8>) {
        if self.is_live(slot) {
            return;
        }
        let s = &mut self.slots[slot as usize];
        s.node = Some(node);
        s.fingerprint = fingerprint;
        s.incarnation += 1;
        self.join(slot);
    }

    /// Cut the nodes with `side_a[slot]` from the others between `start` and `end`. Links across the
    /// cut that are open when it starts fail, each side noticing after the detection delay; links
    /// cannot open across it; the signaling server still reaches everyone.
    pub fn partition(&mut self, side_a: Vec<bool>, start: C::Time, end: C::Time) {
        self.net.add_partition(Partition { side_a, start, end });
        self.queue.schedule(start, Ev::Cut);
    }

    fn break_cut_links(&mut self) {
        let now = self.now();
        for slot in 0..self.slots.len() as u32 {
            let conns: Vec<PeerConn<C::Time>> = self.slots[slot as usize]
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

    /// Process the next event if it is due at or before `until`; returns its time.
    pub fn step(&mut self, until: C::Time) -> Option<C::Time> {
        let (at, ev) = self.queue.pop_until(until)?;
        self.dispatch(ev);
        Some(at)
    }

    /// Run every event due up to `until`, then set the clock to `until`.
    pub fn run_until(&mut self, until: C::Time) {
        while self.step(until).is_some() {}
        self.advance_to(until);
    }

    /// Run for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now() + d;
        self.run_until(until);
    }

    /// Move the clock to `time` (no event may be due before it).
    pub fn advance_to(&mut self, time: C::Time) {
        self.queue.advance_to(time);
    }

    /// The mesh of live nodes, by slot: each slot's links ([`Core::links`]) to live nodes, a link
    /// counting when both ends list it.
    pub fn mutual_links(&self) -> Vec<Vec<u32>> {
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

    /// Connected components of the live nodes over [`Engine::mutual_links`]. Isolated live nodes are
    /// components of their own.
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

    /// The mesh's shape over [`Engine::mutual_links`]: mean degree, and the eccentricity (largest hop
    /// distance to any reachable live node) of up to `samples` live nodes spread evenly over the
    /// slots, as (median, largest). Deterministic.
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

    /// The nodes' own counters ([`Core::counters`]) summed over the live nodes, in the order the
    /// first live node lists them.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> = Vec::new();
        for node in self.nodes() {
            for (i, (name, value)) in node.counters().into_iter().enumerate() {
                match out.get_mut(i) {
                    Some(e) if e.0 == name => e.1 += value,
                    _ => out.push((name, value)),
                }
            }
        }
        out
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
                Output::LinkSignal { from, payload } => self.on_signal(slot, from, &payload),
                Output::Event(ev) => self.events.push((now, slot, ev)),
            }
        }
        let s = &mut self.slots[slot as usize];
        let Some(node) = s.node.as_ref() else {
            return;
        };
        if node.halted() {
            self.crash(slot);
            return;
        }
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

    fn conn(&self, slot: u32, peer: u32) -> Option<&PeerConn<C::Time>> {
        self.slots[slot as usize]
            .conns
            .iter()
            .find(|c| c.peer == peer)
    }

    fn conn_mut(&mut self, slot: u32, peer: u32) -> Option<&mut PeerConn<C::Time>> {
        self.slots[slot as usize]
            .conns
            .iter_mut()
            .find(|c| c.peer == peer)
    }

    fn remove_conn(&mut self, slot: u32, peer: u32) -> Option<PeerConn<C::Time>> {
        let conns = &mut self.slots[slot as usize].conns;
        let i = conns.iter().position(|c| c.peer == peer)?;
        Some(conns.swap_remove(i))
    }

    fn transmit(&mut self, slot: u32, link: C::Id, bytes: Vec<u8>) {
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

    fn connect(&mut self, slot: u32, peer_id: C::Id, initiator: bool) {
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

    fn disconnect(&mut self, slot: u32, peer_id: C::Id) {
        if let Some(peer) = self.slot_of(&peer_id) {
            self.close_conn(slot, peer);
        }
    }

    fn on_signal(&mut self, slot: u32, from: C::Id, payload: &[u8]) {
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

    /// Both ends of a link that just opened learn it, initiator first.
    fn links_opened(&mut self, initiator: u32, answerer: u32) {
        let now = self.now();
        for (a, b) in [(initiator, answerer), (answerer, initiator)] {
            let peer = self.ids[b as usize];
            let local = self.slots[a as usize].fingerprint.clone();
            let remote = self.slots[b as usize].fingerprint.clone();
            if let Some(node) = self.slots[a as usize].node.as_mut() {
                node.handle_peer_up(now, peer, local, remote);
                self.drive(a);
            }
        }
    }

    fn dispatch(&mut self, ev: Ev<C::Id>) {
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
                let ids = &self.ids;
                let intro = self.server.join(slot, |s| C::key(&ids[s as usize]));
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
                self.links_opened(initiator, answerer);
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
                self.stats.frames_by_kind[C::frame_kind(&bytes).min(FRAME_KINDS - 1)] += 1;

                let peer = self.ids[from as usize];
                if let Some(node) = self.slots[to as usize].node.as_mut() {
                    node.handle_message(now, peer, &bytes);
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
                    node.handle_peer_down(now, peer_id);
                    self.drive(slot);
                }
            }
        }
    }
}
