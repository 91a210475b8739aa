//! The engine: nodes of one [`Core`], the event loop that drives them, the signaling server and the
//! link layer (offer, answer, DTLS fingerprints, data channels with latency and loss, links that die
//! with their node and are noticed late), partitions, crashes and restarts.

use core::time::Duration;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::core::{Core, Output, ServerInput};
use crate::net::{NetConfig, Network, Partition, mix64};
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

impl NetStats {
    /// Add `other`'s counts to these.
    fn add(&mut self, other: &NetStats) {
        self.frames_sent += other.frames_sent;
        self.frames_lost += other.frames_lost;
        self.frames_cut += other.frames_cut;
        self.frames_no_link += other.frames_no_link;
        self.frames_delivered += other.frames_delivered;
        self.bytes_delivered += other.bytes_delivered;
        self.links_opened += other.links_opened;
        self.links_attempted += other.links_attempted;
        self.signals_relayed += other.signals_relayed;
        self.signals_dropped += other.signals_dropped;
        self.offers_unsolicited += other.offers_unsolicited;
        self.offers_answered += other.offers_answered;
        self.answers_matched += other.answers_matched;
        self.answers_stale += other.answers_stale;
        self.link_up_failed += other.link_up_failed;
        for (a, b) in self
            .attempts_abandoned
            .iter_mut()
            .zip(other.attempts_abandoned)
        {
            *a += b;
        }
        self.answers_abandoned += other.answers_abandoned;
        self.stalled_timers += other.stalled_timers;
        self.events += other.events;
        for (a, b) in self.frames_by_kind.iter_mut().zip(other.frames_by_kind) {
            *a += b;
        }
        self.timers_run += other.timers_run;
    }
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
    incarnation: u32,
    joined_at: Option<C::Time>,
    timer: Option<C::Time>,
    conns: Vec<PeerConn<C::Time>>,
    /// Sharded runs: the slot's own generator (losses of its frames, detection delays of its links).
    rng: Option<ChaCha8Rng>,
    /// Sharded runs: events this slot created (the second half of their order key).
    created: u64,
    /// Sharded runs: link sessions this slot started.
    sessions: u32,
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
    /// Sequential runs: both ends of a link open at once.
    LinkUp {
        initiator: u32,
        answerer: u32,
        session: u64,
    },
    /// Sharded runs: one end of a link opens (each end checks only its own side).
    LinkEnd {
        slot: u32,
        peer: u32,
        session: u64,
        initiator: bool,
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

impl<Id> Ev<Id> {
    /// The slot whose node handles the event; `None` for the server's (and the partition's) events.
    fn slot(&self) -> Option<u32> {
        match self {
            Ev::Timer { slot }
            | Ev::FromServer { slot, .. }
            | Ev::LinkEnd { slot, .. }
            | Ev::Closed { slot, .. } => Some(*slot),
            Ev::LinkUp { initiator, .. } => Some(*initiator),
            Ev::Data { to, .. } => Some(*to),
            Ev::ServerJoin { .. } | Ev::ServerDrop { .. } | Ev::Relay { .. } | Ev::Cut => None,
        }
    }
}

const SIGNAL_MAGIC: &[u8; 4] = b"SDP1";
const OFFER: u8 = 0;
const ANSWER: u8 = 1;

/// The creator part of the order key of events the engine itself makes (the server's, a cut's).
const ENGINE_CREATOR: u64 = 0;

/// Bits of an order key left for the creator's own count.
const KEY_SHIFT: u32 = 40;

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

/// A share of the slots (those whose number modulo the shard count is the shard's index, at
/// `slot / shards`), their events and what they counted.
struct Shard<C: Core> {
    index: usize,
    queue: EventQueue<C::Time, Ev<C::Id>>,
    slots: Vec<Slot<C>>,
    stats: NetStats,
    events: Vec<(C::Time, u32, C::Event)>,
    /// Sharded runs: events for another shard or for the server, with their order keys, moved when
    /// the window ends.
    outbox: Vec<(C::Time, u64, Ev<C::Id>)>,
}

/// What every shard reads and none writes while time runs: the ids, their slots, the fingerprints
/// and the network model (shared with a sharded run's threads; changed only between runs).
struct Fixed<C: Core> {
    ids: Vec<C::Id>,
    by_id: FxHashMap<C::Id, u32>,
    fingerprints: Vec<Vec<u8>>,
    net: Network<C::Time>,
}

impl<C: Core> Clone for Fixed<C> {
    fn clone(&self) -> Self {
        Self {
            ids: self.ids.clone(),
            by_id: self.by_id.clone(),
            fingerprints: self.fingerprints.clone(),
            net: self.net.clone(),
        }
    }
}

impl<C: Core> Fixed<C> {
    fn ctx(&self, shards: usize) -> Ctx<'_, C> {
        Ctx {
            ids: &self.ids,
            by_id: &self.by_id,
            fingerprints: &self.fingerprints,
            net: &self.net,
            shards,
        }
    }
}

/// What a shard reads of the rest of the engine while it runs: the same for every shard, never
/// written during a window.
struct Ctx<'a, C: Core> {
    ids: &'a [C::Id],
    by_id: &'a FxHashMap<C::Id, u32>,
    fingerprints: &'a [Vec<u8>],
    net: &'a Network<C::Time>,
    /// Number of shards; 0 for a sequential run (one shard, one queue for everything, the
    /// network's one generator, global session numbers, events ordered by creation).
    shards: usize,
}

/// What a sequential run's shard also writes: the network's generator and the session count.
struct Seq<'a> {
    rng: &'a mut ChaCha8Rng,
    next_session: &'a mut u64,
}

impl<C: Core> Shard<C> {
    fn new(index: usize, start: C::Time) -> Self {
        Self {
            index,
            queue: EventQueue::new(start),
            slots: Vec::new(),
            stats: NetStats::default(),
            events: Vec::new(),
            outbox: Vec::new(),
        }
    }

    fn slot(&self, ctx: &Ctx<'_, C>, slot: u32) -> &Slot<C> {
        &self.slots[slot as usize / ctx.shards.max(1)]
    }

    fn slot_mut(&mut self, ctx: &Ctx<'_, C>, slot: u32) -> &mut Slot<C> {
        &mut self.slots[slot as usize / ctx.shards.max(1)]
    }

    fn now(&self) -> C::Time {
        self.queue.now()
    }

    /// Schedule `ev`, made while `creator` (a slot) was handled, at `at`.
    fn schedule(&mut self, ctx: &Ctx<'_, C>, creator: u32, at: C::Time, ev: Ev<C::Id>) {
        if ctx.shards == 0 {
            self.queue.schedule(at, ev);
            return;
        }
        let s = self.slot_mut(ctx, creator);
        let key = ((u64::from(creator) + 1) << KEY_SHIFT) | s.created;
        s.created += 1;
        match ev.slot() {
            Some(target) if target as usize % ctx.shards == self.index => {
                self.queue.schedule_keyed(at, key, ev);
            }
            _ => self.outbox.push((at, key, ev)),
        }
    }

    /// Draw whether a frame `slot` sends is lost.
    fn lost(&mut self, ctx: &Ctx<'_, C>, seq: &mut Option<Seq<'_>>, slot: u32) -> bool {
        ctx.net.lost(self.rng(ctx, seq, slot))
    }

    /// Draw how long `slot`'s side takes to notice that a link died.
    fn detection_delay(
        &mut self,
        ctx: &Ctx<'_, C>,
        seq: &mut Option<Seq<'_>>,
        slot: u32,
    ) -> Duration {
        ctx.net.detection_delay(self.rng(ctx, seq, slot))
    }

    /// The generator `slot` draws from: the network's (sequential runs) or its own (sharded runs).
    fn rng<'a>(
        &'a mut self,
        ctx: &Ctx<'_, C>,
        seq: &'a mut Option<Seq<'_>>,
        slot: u32,
    ) -> &'a mut ChaCha8Rng {
        match seq {
            Some(seq) => seq.rng,
            None => self
                .slot_mut(ctx, slot)
                .rng
                .get_or_insert_with(|| slot_rng(ctx.net, slot)),
        }
    }

    /// A new link session number for an attempt `slot` starts.
    fn new_session(&mut self, ctx: &Ctx<'_, C>, seq: &mut Option<Seq<'_>>, slot: u32) -> u64 {
        match seq {
            Some(seq) => {
                let s = *seq.next_session;
                *seq.next_session += 1;
                s
            }
            None => {
                let s = self.slot_mut(ctx, slot);
                s.sessions += 1;
                ((u64::from(slot) + 1) << 32) | u64::from(s.sessions)
            }
        }
    }

    fn conn(&self, ctx: &Ctx<'_, C>, slot: u32, peer: u32) -> Option<&PeerConn<C::Time>> {
        self.slot(ctx, slot).conns.iter().find(|c| c.peer == peer)
    }

    fn conn_mut(
        &mut self,
        ctx: &Ctx<'_, C>,
        slot: u32,
        peer: u32,
    ) -> Option<&mut PeerConn<C::Time>> {
        self.slot_mut(ctx, slot)
            .conns
            .iter_mut()
            .find(|c| c.peer == peer)
    }

    fn remove_conn(&mut self, ctx: &Ctx<'_, C>, slot: u32, peer: u32) -> Option<PeerConn<C::Time>> {
        let conns = &mut self.slot_mut(ctx, slot).conns;
        let i = conns.iter().position(|c| c.peer == peer)?;
        Some(conns.swap_remove(i))
    }

    /// Drain `slot`'s outputs and schedule its timer.
    fn drive(
        &mut self,
        ctx: &Ctx<'_, C>,
        seq: &mut Option<Seq<'_>>,
        slot: u32,
        after_timeout: bool,
    ) {
        let now = self.now();
        loop {
            let Some(node) = self.slot_mut(ctx, slot).node.as_mut() else {
                return;
            };
            let Some(out) = node.poll_output() else {
                break;
            };
            match out {
                Output::Transmit { link, bytes } => self.transmit(ctx, seq, slot, link, bytes),
                Output::Connect { peer, initiator } => {
                    self.connect(ctx, seq, slot, peer, initiator)
                }
                Output::Disconnect { peer } => {
                    if let Some(peer) = ctx.by_id.get(&peer).copied() {
                        self.close_conn(ctx, slot, peer);
                    }
                }
                Output::Signal { to, payload } => {
                    let at = now + ctx.net.server_latency(slot);
                    self.schedule(
                        ctx,
                        slot,
                        at,
                        Ev::Relay {
                            from: slot,
                            to,
                            payload,
                        },
                    );
                }
                Output::LinkSignal { from, payload } => self.on_signal(ctx, slot, from, &payload),
                Output::Event(ev) => self.events.push((now, slot, ev)),
            }
        }
        let s = self.slot(ctx, slot);
        let Some(node) = s.node.as_ref() else {
            return;
        };
        if node.halted() {
            self.crash(ctx, seq, slot);
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
            let s = self.slot_mut(ctx, slot);
            if s.timer.is_none_or(|pending| at < pending) {
                s.timer = Some(at);
                self.schedule(ctx, slot, at, Ev::Timer { slot });
            }
        }
    }

    fn transmit(
        &mut self,
        ctx: &Ctx<'_, C>,
        seq: &mut Option<Seq<'_>>,
        slot: u32,
        link: C::Id,
        bytes: Vec<u8>,
    ) {
        let now = self.now();
        self.stats.frames_sent += 1;
        let Some(peer) = ctx.by_id.get(&link).copied() else {
            self.stats.frames_no_link += 1;
            return;
        };
        let Some(c) = self.conn(ctx, slot, peer).filter(|c| c.open).copied() else {
            self.stats.frames_no_link += 1;
            return;
        };
        if !ctx.net.reachable(now, slot, peer) {
            self.stats.frames_cut += 1;
            return;
        }
        if self.lost(ctx, seq, slot) {
            self.stats.frames_lost += 1;
            return;
        }
        let at = now + ctx.net.link_latency(slot, peer);
        self.schedule(
            ctx,
            slot,
            at,
            Ev::Data {
                to: peer,
                from: slot,
                session: c.session,
                bytes,
            },
        );
    }

    fn connect(
        &mut self,
        ctx: &Ctx<'_, C>,
        seq: &mut Option<Seq<'_>>,
        slot: u32,
        peer_id: C::Id,
        initiator: bool,
    ) {
        let now = self.now();
        let Some(peer) = ctx.by_id.get(&peer_id).copied() else {
            return;
        };
        // A new attempt replaces an old peer connection, which the far end then sees close.
        self.close_conn(ctx, slot, peer);
        let session = if initiator {
            self.new_session(ctx, seq, slot)
        } else {
            0
        };
        let s = self.slot_mut(ctx, slot);
        s.conns.push(PeerConn {
            peer,
            session,
            initiator,
            answered: false,
            open: false,
            created: now,
        });
        if initiator {
            self.stats.links_attempted += 1;
            if let Some(node) = self.slot_mut(ctx, slot).node.as_mut() {
                node.send_signal(now, peer_id, encode_signal(OFFER, session));
            }
        }
    }

    fn close_conn(&mut self, ctx: &Ctx<'_, C>, slot: u32, peer: u32) {
        let now = self.now();
        let old = self.remove_conn(ctx, slot, peer);
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
            let at = now + ctx.net.link_latency(slot, peer);
            self.schedule(
                ctx,
                slot,
                at,
                Ev::Closed {
                    slot: peer,
                    peer: slot,
                    session: old.session,
                },
            );
        }
    }

    fn on_signal(&mut self, ctx: &Ctx<'_, C>, slot: u32, from: C::Id, payload: &[u8]) {
        let now = self.now();
        let Some((kind, session)) = decode_signal(payload) else {
            return;
        };
        let Some(peer) = ctx.by_id.get(&from).copied() else {
            return;
        };
        match kind {
            OFFER => {
                let Some(c) = self.conn_mut(ctx, slot, peer).filter(|c| !c.initiator) else {
                    self.stats.offers_unsolicited += 1;
                    return;
                };
                c.session = session;
                self.stats.offers_answered += 1;
                if let Some(node) = self.slot_mut(ctx, slot).node.as_mut() {
                    node.send_signal(now, from, encode_signal(ANSWER, session));
                }
            }
            ANSWER => {
                let Some(c) = self
                    .conn_mut(ctx, slot, peer)
                    .filter(|c| c.initiator && c.session == session && !c.answered)
                else {
                    self.stats.answers_stale += 1;
                    return;
                };
                c.answered = true;
                self.stats.answers_matched += 1;
                // ICE and DTLS take one more trip.
                let at = now + ctx.net.link_latency(slot, peer);
                if ctx.shards == 0 {
                    self.schedule(
                        ctx,
                        slot,
                        at,
                        Ev::LinkUp {
                            initiator: slot,
                            answerer: peer,
                            session,
                        },
                    );
                } else {
                    for (end, other, initiator) in [(slot, peer, true), (peer, slot, false)] {
                        self.schedule(
                            ctx,
                            slot,
                            at,
                            Ev::LinkEnd {
                                slot: end,
                                peer: other,
                                session,
                                initiator,
                            },
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// `slot`'s end of a link opens: its node learns it.
    fn open_end(&mut self, ctx: &Ctx<'_, C>, seq: &mut Option<Seq<'_>>, slot: u32, peer: u32) {
        let now = self.now();
        let peer_id = ctx.ids[peer as usize];
        let local = ctx.fingerprints[slot as usize].clone();
        let remote = ctx.fingerprints[peer as usize].clone();
        if let Some(node) = self.slot_mut(ctx, slot).node.as_mut() {
            node.handle_peer_up(now, peer_id, local, remote);
            self.drive(ctx, seq, slot, false);
        }
    }

    /// Crash `slot` without notice (see [`Engine::crash`]).
    fn crash(&mut self, ctx: &Ctx<'_, C>, seq: &mut Option<Seq<'_>>, slot: u32) -> Option<C> {
        let now = self.now();
        let s = self.slot_mut(ctx, slot);
        let node = s.node.take()?;
        s.incarnation += 1;
        s.timer = None;
        s.joined_at = None;
        let incarnation = s.incarnation;
        let conns = core::mem::take(&mut s.conns);
        for c in conns {
            if c.open {
                let at = now + self.detection_delay(ctx, seq, slot);
                self.schedule(
                    ctx,
                    slot,
                    at,
                    Ev::Closed {
                        slot: c.peer,
                        peer: slot,
                        session: c.session,
                    },
                );
            }
        }
        let at = now + self.detection_delay(ctx, seq, slot);
        self.schedule(ctx, slot, at, Ev::ServerDrop { slot, incarnation });
        Some(node)
    }

    /// Handle one of this shard's node events (never a server event).
    fn dispatch(&mut self, ctx: &Ctx<'_, C>, seq: &mut Option<Seq<'_>>, ev: Ev<C::Id>) {
        let now = self.now();
        match ev {
            Ev::Timer { slot } => {
                let s = self.slot_mut(ctx, slot);
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
                    self.schedule(ctx, slot, at, Ev::Timer { slot });
                    return;
                }
                node.handle_timeout(now);
                self.stats.timers_run += 1;
                self.drive(ctx, seq, slot, true);
            }
            Ev::FromServer {
                slot,
                incarnation,
                input,
            } => {
                let s = self.slot_mut(ctx, slot);
                if s.incarnation != incarnation {
                    return;
                }
                let Some(node) = s.node.as_mut() else {
                    return;
                };
                node.handle_server(now, input);
                self.drive(ctx, seq, slot, false);
            }
            Ev::LinkUp {
                initiator,
                answerer,
                session,
            } => {
                let ok_i = self
                    .conn(ctx, initiator, answerer)
                    .is_some_and(|c| c.initiator && c.session == session && !c.open);
                let ok_a = self
                    .conn(ctx, answerer, initiator)
                    .is_some_and(|c| !c.initiator && c.session == session && !c.open);
                if !ok_i || !ok_a || !ctx.net.reachable(now, initiator, answerer) {
                    self.stats.link_up_failed += 1;
                    return; // the attempt fails; the nodes time it out
                }
                for (a, b) in [(initiator, answerer), (answerer, initiator)] {
                    if let Some(c) = self.conn_mut(ctx, a, b) {
                        c.open = true;
                    }
                }
                self.stats.links_opened += 1;
                for (a, b) in [(initiator, answerer), (answerer, initiator)] {
                    self.open_end(ctx, seq, a, b);
                }
            }
            Ev::LinkEnd {
                slot,
                peer,
                session,
                initiator,
            } => {
                let ok = self
                    .conn(ctx, slot, peer)
                    .is_some_and(|c| c.initiator == initiator && c.session == session && !c.open)
                    && ctx.net.reachable(now, slot, peer);
                if !ok {
                    // The attempt fails at this end; an end that dropped it told the other.
                    self.stats.link_up_failed += 1;
                    return;
                }
                if let Some(c) = self.conn_mut(ctx, slot, peer) {
                    c.open = true;
                }
                if initiator {
                    self.stats.links_opened += 1;
                }
                self.open_end(ctx, seq, slot, peer);
            }
            Ev::Data {
                to,
                from,
                session,
                bytes,
            } => {
                let ok = self
                    .conn(ctx, to, from)
                    .is_some_and(|c| c.open && c.session == session);
                if !ok {
                    self.stats.frames_no_link += 1;
                    return;
                }
                self.stats.frames_delivered += 1;
                self.stats.bytes_delivered += bytes.len() as u64;
                self.stats.frames_by_kind[C::frame_kind(&bytes).min(FRAME_KINDS - 1)] += 1;

                let peer = ctx.ids[from as usize];
                if let Some(node) = self.slot_mut(ctx, to).node.as_mut() {
                    node.handle_message(now, peer, &bytes);
                    self.drive(ctx, seq, to, false);
                }
            }
            Ev::Closed {
                slot,
                peer,
                session,
            } => {
                let matches = self
                    .conn(ctx, slot, peer)
                    .is_some_and(|c| c.session == session);
                if !matches {
                    return;
                }
                self.remove_conn(ctx, slot, peer);
                let peer_id = ctx.ids[peer as usize];
                if let Some(node) = self.slot_mut(ctx, slot).node.as_mut() {
                    node.handle_peer_down(now, peer_id);
                    self.drive(ctx, seq, slot, false);
                }
            }
            Ev::ServerJoin { .. } | Ev::ServerDrop { .. } | Ev::Relay { .. } | Ev::Cut => {
                unreachable!("the engine handles the server's events")
            }
        }
    }

    /// Sharded runs: handle every event of this shard due at or before `end`.
    fn run_window(&mut self, ctx: &Ctx<'_, C>, end: C::Time) {
        let mut seq = None;
        while let Some((_, ev)) = self.queue.pop_until(end) {
            self.dispatch(ctx, &mut seq, ev);
        }
    }
}

/// A slot's own generator in sharded runs: from the network's salt and the slot number.
fn slot_rng<T: Copy + Ord>(net: &Network<T>, slot: u32) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix64(net.salt() ^ mix64(u64::from(slot) ^ 0x5eed_5107)))
}

/// Many nodes of core `C` on one virtual clock.
///
/// A run is sequential (the default: one queue, every event in the order it was made) or sharded
/// ([`Engine::set_shards`]): the slots are dealt to shards, each with its own queue, and time
/// advances in windows no longer than the shortest delay between two slots
/// ([`Engine::lookahead`]), so no event made in a window is due in it at another slot. The shards
/// of a window run in parallel ([`Engine::run_until_each`]); the server's events of a window are
/// handled first, at their own times. Every draw is made from the generator of the slot that
/// draws, and events at one instant are ordered by who made them, so a sharded run is the same for
/// a seed whatever the number of shards (but not the same as a sequential run).
pub struct Engine<C: Core> {
    shards: Vec<Shard<C>>,
    /// Sharded runs: the server's (and the partitions') events.
    server_queue: EventQueue<C::Time, Ev<C::Id>>,
    /// Number of shards; 0 for a sequential run.
    sharded: usize,
    engine_created: u64,
    fixed: Arc<Fixed<C>>,
    net_rng: ChaCha8Rng,
    server: Server,
    next_session: u64,
    stats: NetStats,
}

impl<C: Core> core::fmt::Debug for Engine<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Engine")
            .field("now", &self.now())
            .field("slots", &self.len())
            .field("shards", &self.sharded)
            .field("queued", &self.queued())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl<C: Core> Engine<C> {
    /// An empty network whose clock reads `start`; `net_rng` draws losses and detection delays
    /// (sequential runs; sharded runs seed a generator per slot from its first draw), `server_rng` the
    /// server's random introductions.
    pub fn new(
        start: C::Time,
        net: NetConfig,
        mut net_rng: ChaCha8Rng,
        server_rng: ChaCha8Rng,
    ) -> Self {
        let salt = net_rng.next_u64();
        Self {
            shards: vec![Shard::new(0, start)],
            server_queue: EventQueue::new(start),
            sharded: 0,
            engine_created: 0,
            fixed: Arc::new(Fixed {
                ids: Vec::new(),
                by_id: FxHashMap::default(),
                fingerprints: Vec::new(),
                net: Network::new(net, salt),
            }),
            net_rng,
            server: Server::new(server_rng),
            next_session: 1,
            stats: NetStats::default(),
        }
    }

    /// The longest window a sharded run may take: the shortest delay from a slot to another slot or
    /// to the server (link latency, server latency, failure detection). Zero when some delay may be.
    pub fn lookahead(&self) -> Duration {
        let c = self.fixed.net.config();
        c.latency_min.min(c.server_latency_min).min(c.detect_min)
    }

    /// Run sharded over `shards` shards (at least 1), before any node is added. Every run with
    /// shards is the same for a seed, whatever their number; it differs from a sequential run. Fails
    /// (and changes nothing) for 0 shards, once nodes exist, or when [`Engine::lookahead`] is zero.
    pub fn set_shards(&mut self, shards: usize) -> Result<(), &'static str> {
        if shards == 0 {
            return Err("a sharded run has at least one shard");
        }
        if !self.fixed.ids.is_empty() {
            return Err("shards are set before the first node is added");
        }
        if self.lookahead().is_zero() {
            return Err("a sharded run needs non-zero link, server and detection delays");
        }
        let start = self.now();
        self.sharded = shards;
        self.shards = (0..self.sharded).map(|i| Shard::new(i, start)).collect();
        Ok(())
    }

    /// Number of shards; 0 for a sequential run.
    pub fn shards(&self) -> usize {
        self.sharded
    }

    fn shard_of(&self, slot: u32) -> usize {
        slot as usize % self.sharded.max(1)
    }

    fn slot(&self, slot: u32) -> &Slot<C> {
        let n = self.sharded.max(1);
        &self.shards[slot as usize % n].slots[slot as usize / n]
    }

    fn slot_mut(&mut self, slot: u32) -> &mut Slot<C> {
        let n = self.sharded.max(1);
        &mut self.shards[slot as usize % n].slots[slot as usize / n]
    }

    /// Run `f` on `slot`'s shard with the context it needs, then move what it sent elsewhere.
    fn with_shard<R>(
        &mut self,
        slot: u32,
        f: impl FnOnce(&mut Shard<C>, &Ctx<'_, C>, &mut Option<Seq<'_>>) -> R,
    ) -> R {
        let i = self.shard_of(slot);
        let ctx = self.fixed.ctx(self.sharded);
        let mut seq = (self.sharded == 0).then_some(Seq {
            rng: &mut self.net_rng,
            next_session: &mut self.next_session,
        });
        let r = f(&mut self.shards[i], &ctx, &mut seq);
        self.flush_outboxes();
        r
    }

    /// Sharded runs: move every shard's outgoing events to the queue they are for.
    fn flush_outboxes(&mut self) {
        if self.sharded == 0 {
            return;
        }
        for i in 0..self.sharded {
            let out = core::mem::take(&mut self.shards[i].outbox);
            for (at, key, ev) in out {
                self.enqueue(at, key, ev);
            }
        }
    }

    /// Sharded runs: put `ev` in the queue it is for, its slot's shard's or the server's.
    fn enqueue(&mut self, at: C::Time, key: u64, ev: Ev<C::Id>) {
        match ev.slot() {
            Some(slot) => {
                let i = self.shard_of(slot);
                self.shards[i].queue.schedule_keyed(at, key, ev);
            }
            None => self.server_queue.schedule_keyed(at, key, ev),
        }
    }

    /// Schedule an event the engine itself makes (the server's, a cut's).
    fn schedule(&mut self, at: C::Time, ev: Ev<C::Id>) {
        if self.sharded == 0 {
            self.shards[0].queue.schedule(at, ev);
            return;
        }
        let key = (ENGINE_CREATOR << KEY_SHIFT) | self.engine_created;
        self.engine_created += 1;
        self.enqueue(at, key, ev);
    }

    /// Virtual time now.
    pub fn now(&self) -> C::Time {
        let now = self.shards.iter().map(|s| s.queue.now()).max();
        now.map_or(self.server_queue.now(), |t| t.max(self.server_queue.now()))
    }

    /// Network counters.
    pub fn stats(&self) -> NetStats {
        let mut out = self.stats.clone();
        for shard in &self.shards {
            out.add(&shard.stats);
            out.events += shard.queue.processed();
        }
        out.events += self.server_queue.processed();
        out
    }

    /// Events waiting in the queues.
    pub fn queued(&self) -> usize {
        self.server_queue.len() + self.shards.iter().map(|s| s.queue.len()).sum::<usize>()
    }

    /// The network model (to add partitions or change the loss rate).
    pub fn network(&mut self) -> &mut Network<C::Time> {
        &mut Arc::make_mut(&mut self.fixed).net
    }

    /// The signaling server (its introduction rule).
    pub fn server(&mut self) -> &mut Server {
        &mut self.server
    }

    /// Number of slots (nodes ever created).
    pub fn len(&self) -> usize {
        self.fixed.ids.len()
    }

    /// Whether no node was ever created.
    pub fn is_empty(&self) -> bool {
        self.fixed.ids.is_empty()
    }

    /// The id of a slot's current node.
    pub fn id(&self, slot: u32) -> C::Id {
        self.fixed.ids[slot as usize]
    }

    /// The slot of an id.
    pub fn slot_of(&self, id: &C::Id) -> Option<u32> {
        self.fixed.by_id.get(id).copied()
    }

    /// Whether a slot's node is running.
    pub fn is_live(&self, slot: u32) -> bool {
        self.slot(slot).node.is_some()
    }

    /// When a live slot last joined.
    pub fn joined_at(&self, slot: u32) -> Option<C::Time> {
        let s = self.slot(slot);
        s.node.as_ref().and(s.joined_at)
    }

    /// Slots whose node runs, in order.
    pub fn live_slots(&self) -> Vec<u32> {
        (0..self.len() as u32)
            .filter(|&s| self.is_live(s))
            .collect()
    }

    /// A slot's node.
    pub fn node(&self, slot: u32) -> Option<&C> {
        self.slot(slot).node.as_ref()
    }

    /// A slot's node, mutably (inputs given this way must be followed by [`Engine::drive`]).
    pub fn node_mut(&mut self, slot: u32) -> Option<&mut C> {
        self.slot_mut(slot).node.as_mut()
    }

    /// The running nodes, by slot.
    pub fn nodes(&self) -> impl Iterator<Item = &C> {
        (0..self.len() as u32).filter_map(|s| self.node(s))
    }

    /// The events the nodes produced since the last call, each with its time and slot: in the
    /// order they were made (sequential runs), or by time and slot (sharded runs, each slot's in
    /// the order it made them).
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, (C::Time, u32, C::Event)> {
        if self.sharded > 0 {
            let (first, rest) = self.shards.split_at_mut(1);
            let events = &mut first[0].events;
            for shard in rest {
                events.append(&mut shard.events);
            }
            // Stable: each slot's events stay in the order it made them.
            events.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        }
        self.shards[0].events.drain(..)
    }

    /// Add a node whose links show the DTLS certificate `fingerprint`; it does not join yet.
    pub fn add_node(&mut self, node: C, fingerprint: Vec<u8>) -> u32 {
        let id = node.local_id();
        let slot = u32::try_from(self.fixed.ids.len()).unwrap_or(u32::MAX);
        let i = self.shard_of(slot);
        self.shards[i].slots.push(Slot {
            node: Some(node),
            incarnation: 0,
            joined_at: None,
            timer: None,
            conns: Vec::new(),
            rng: None,
            created: 0,
            sessions: 0,
        });
        let fixed = Arc::make_mut(&mut self.fixed);
        fixed.ids.push(id);
        fixed.fingerprints.push(fingerprint);
        fixed.by_id.insert(id, slot);
        slot
    }

    /// Start `slot`'s node ([`Core::handle_join`]): its join reaches the server after the server
    /// latency, and the server introduces it.
    pub fn join(&mut self, slot: u32) {
        let now = self.now();
        let s = self.slot_mut(slot);
        let Some(node) = s.node.as_mut() else {
            return;
        };
        node.handle_join(now);
        s.joined_at = Some(now);
        let incarnation = s.incarnation;
        self.drive(slot);
        let at = now + self.fixed.net.server_latency(slot);
        self.with_shard(slot, |shard, ctx, _| {
            shard.schedule(ctx, slot, at, Ev::ServerJoin { slot, incarnation });
        });
    }

    /// Open a link between `a` and `b` at once, without signaling (a fixed topology): both nodes see
    /// [`Core::handle_peer_up`] now.
    pub fn link(&mut self, a: u32, b: u32) {
        let now = self.now();
        self.with_shard(a, |shard, ctx, _| shard.close_conn(ctx, a, b));
        self.with_shard(b, |shard, ctx, _| shard.close_conn(ctx, b, a));
        let session = self.with_shard(a, |shard, ctx, seq| shard.new_session(ctx, seq, a));
        for (x, y, initiator) in [(a, b, true), (b, a, false)] {
            self.slot_mut(x).conns.push(PeerConn {
                peer: y,
                session,
                initiator,
                answered: true,
                open: true,
                created: now,
            });
        }
        self.stats.links_opened += 1;
        for (x, y) in [(a, b), (b, a)] {
            self.with_shard(x, |shard, ctx, seq| shard.open_end(ctx, seq, x, y));
        }
    }

    /// Crash `slot` without notice: its links die (each survivor notices after the detection delay),
    /// the server drops it after the detection delay, every event on its way to it is lost. Returns
    /// the node.
    pub fn crash(&mut self, slot: u32) -> Option<C> {
        self.with_shard(slot, |shard, ctx, seq| shard.crash(ctx, seq, slot))
    }

    /// Put a new node (with the same id) in a crashed slot, with a new fingerprint, and join again.
    pub fn restart(&mut self, slot: u32, node: C, fingerprint: Vec<u8>) {
        if self.is_live(slot) {
            return;
        }
        Arc::make_mut(&mut self.fixed).fingerprints[slot as usize] = fingerprint;
        let s = self.slot_mut(slot);
        s.node = Some(node);
        s.incarnation += 1;
        self.join(slot);
    }

    /// Cut the nodes with `side_a[slot]` from the others between `start` and `end`. Links across the
    /// cut that are open when it starts fail, each side noticing after the detection delay; links
    /// cannot open across it; the signaling server still reaches everyone.
    pub fn partition(&mut self, side_a: Vec<bool>, start: C::Time, end: C::Time) {
        Arc::make_mut(&mut self.fixed)
            .net
            .add_partition(Partition { side_a, start, end });
        self.schedule(start, Ev::Cut);
    }

    fn break_cut_links(&mut self, now: C::Time) {
        for slot in 0..self.len() as u32 {
            let conns: Vec<PeerConn<C::Time>> = self
                .slot(slot)
                .conns
                .iter()
                .filter(|c| c.open && !self.fixed.net.reachable(now, slot, c.peer))
                .copied()
                .collect();
            for c in conns {
                let delay = self.with_shard(slot, |shard, ctx, seq| {
                    shard.detection_delay(ctx, seq, slot)
                });
                self.schedule(
                    now + delay,
                    Ev::Closed {
                        slot,
                        peer: c.peer,
                        session: c.session,
                    },
                );
            }
        }
    }

    /// Sequential runs: process the next event if it is due at or before `until`; returns its time.
    /// Sharded runs: one window, every shard on this thread ([`Engine::run_until_each`] spreads them
    /// over threads); returns its end.
    pub fn step(&mut self, until: C::Time) -> Option<C::Time> {
        if self.sharded > 0 {
            return self.window(until, |shards, ctx, end| {
                for shard in shards.iter_mut() {
                    shard.run_window(ctx, end);
                }
            });
        }
        let (at, ev) = self.shards[0].queue.pop_until(until)?;
        match ev.slot() {
            None => self.dispatch_server(at, ev),
            Some(slot) => self.with_shard(slot, |shard, ctx, seq| shard.dispatch(ctx, seq, ev)),
        }
        Some(at)
    }

    /// Sharded runs: one window. The server's events due in it are handled first (at their own
    /// times), then `run` handles each shard's; what they sent elsewhere is moved after. Returns the
    /// window's end, or `None` when no event is due at or before `until`.
    fn window(
        &mut self,
        until: C::Time,
        run: impl FnOnce(&mut Vec<Shard<C>>, &Ctx<'_, C>, C::Time),
    ) -> Option<C::Time> {
        let first = self
            .shards
            .iter()
            .filter_map(|s| s.queue.peek_time())
            .chain(self.server_queue.peek_time())
            .min()?;
        if first > until {
            return None;
        }
        // Every delay between slots is at least the lookahead, so an event made in
        // [first, first + lookahead) is due after it.
        let span = self.lookahead().saturating_sub(Duration::from_micros(1));
        let end = (first + span).min(until);
        while let Some((at, ev)) = self.server_queue.pop_until(end) {
            self.dispatch_server(at, ev);
        }
        let ctx = self.fixed.ctx(self.sharded);
        run(&mut self.shards, &ctx, end);
        self.flush_outboxes();
        for shard in &mut self.shards {
            shard.queue.advance_to(end);
        }
        self.server_queue.advance_to(end);
        Some(end)
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
        for shard in &mut self.shards {
            shard.queue.advance_to(time);
        }
        self.server_queue.advance_to(time);
    }

    /// The mesh of live nodes, by slot: each slot's links ([`Core::links`]) to live nodes, a link
    /// counting when both ends list it.
    pub fn mutual_links(&self) -> Vec<Vec<u32>> {
        let links: Vec<Vec<u32>> = (0..self.len() as u32)
            .map(|s| {
                self.node(s)
                    .map(|node| {
                        node.links()
                            .iter()
                            .filter_map(|id| self.slot_of(id))
                            .collect()
                    })
                    .unwrap_or_default()
            })
            .collect();
        (0..self.len())
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
        let n = self.len();
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
        let n = self.len();
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
        self.with_shard(slot, |shard, ctx, seq| shard.drive(ctx, seq, slot, false));
    }

    /// The server's events (and a cut's), at `now`.
    fn dispatch_server(&mut self, now: C::Time, ev: Ev<C::Id>) {
        match ev {
            Ev::ServerJoin { slot, incarnation } => {
                if self.slot(slot).incarnation != incarnation || !self.is_live(slot) {
                    return;
                }
                let ids = &self.fixed.ids;
                let intro = self.server.join(slot, |s| C::key(&ids[s as usize]));
                let me = self.fixed.ids[slot as usize];
                let peers = intro.iter().map(|&p| self.fixed.ids[p as usize]).collect();
                let at = now + self.fixed.net.server_latency(slot);
                self.schedule(
                    at,
                    Ev::FromServer {
                        slot,
                        incarnation,
                        input: ServerInput::BootstrapPeers(peers),
                    },
                );
                for p in intro {
                    let at = now + self.fixed.net.server_latency(p);
                    let incarnation = self.slot(p).incarnation;
                    self.schedule(
                        at,
                        Ev::FromServer {
                            slot: p,
                            incarnation,
                            input: ServerInput::PeerJoined(me),
                        },
                    );
                }
            }
            Ev::Cut => self.break_cut_links(now),
            Ev::ServerDrop { slot, incarnation } => {
                if self.slot(slot).incarnation == incarnation {
                    self.server.leave(slot);
                }
            }
            Ev::Relay { from, to, payload } => {
                let known = self.slot_of(&to).filter(|&t| self.server.is_joined(t));
                let target = known.filter(|&t| self.is_live(t));
                let Some(target) = target else {
                    self.stats.signals_dropped += 1;
                    if known.is_none() {
                        // The server does not know the addressee: like the real one, it says so
                        // (`unknown_peer`), and the driver tells its node the peer left.
                        let at = now + self.fixed.net.server_latency(from);
                        let incarnation = self.slot(from).incarnation;
                        self.schedule(
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
                let at = now + self.fixed.net.server_latency(target);
                let incarnation = self.slot(target).incarnation;
                self.schedule(
                    at,
                    Ev::FromServer {
                        slot: target,
                        incarnation,
                        input: ServerInput::Relayed {
                            from: self.fixed.ids[from as usize],
                            payload,
                        },
                    },
                );
            }
            Ev::Timer { .. }
            | Ev::FromServer { .. }
            | Ev::LinkUp { .. }
            | Ev::LinkEnd { .. }
            | Ev::Data { .. }
            | Ev::Closed { .. } => unreachable!("a node's event is its shard's"),
        }
    }
}

impl<C> Engine<C>
where
    C: Core + Send,
    C::Id: Send + Sync,
    C::Time: Send + Sync,
    C::Event: Send,
{
    /// Run every event due up to `until`, calling `each` with the engine and the time reached after
    /// every event (sequential runs) or window (sharded runs), then set the clock to `until`. A
    /// sharded run uses up to as many threads as the machine has cores, never more than its shards,
    /// for the call: each window, the threads take the shards one at a time from a common pool until
    /// none is left (more shards than threads even out the windows' load). Which thread runs which
    /// shard changes nothing: the run is the same as on one thread.
    pub fn run_until_each(&mut self, until: C::Time, mut each: impl FnMut(&mut Self, C::Time)) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = self.sharded.min(cores);
        if threads < 2 {
            while let Some(at) = self.step(until) {
                each(self, at);
            }
            self.advance_to(until);
            return;
        }
        let n = self.sharded;
        // The shards of the window under way, and those done with it.
        let pool: Mutex<Vec<Shard<C>>> = Mutex::new(Vec::with_capacity(n));
        let done: Mutex<Vec<Shard<C>>> = Mutex::new(Vec::with_capacity(n));
        let take = |ctx: &Ctx<'_, C>, end: C::Time| {
            loop {
                let next = lock(&pool).pop();
                let Some(mut shard) = next else {
                    break;
                };
                shard.run_window(ctx, end);
                lock(&done).push(shard);
            }
        };
        std::thread::scope(|scope| {
            let workers: Vec<Worker<C>> = (1..threads)
                .map(|_| {
                    let (start, window) = sync_channel::<C::Time>(1);
                    let (finished, from_worker) = sync_channel::<()>(1);
                    let fixed = Arc::clone(&self.fixed);
                    let take = &take;
                    scope.spawn(move || {
                        while let Some(end) = recv_spinning(&window) {
                            take(&fixed.ctx(n), end);
                            if finished.send(()).is_err() {
                                break;
                            }
                        }
                    });
                    (start, from_worker)
                })
                .collect();
            loop {
                let reached = self.window(until, |shards, ctx, end| {
                    lock(&pool).extend(shards.drain(..).rev());
                    for (start, _) in &workers {
                        // A worker ends only when its sender is dropped, below.
                        let _ = start.send(end);
                    }
                    take(ctx, end);
                    for (_, from_worker) in &workers {
                        if recv_spinning(from_worker).is_none() {
                            panic!("netsim: a shard's thread ended during a window");
                        }
                    }
                    let mut finished = std::mem::take(&mut *lock(&done));
                    finished.sort_by_key(|shard| shard.index);
                    shards.append(&mut finished);
                });
                let Some(at) = reached else {
                    break;
                };
                each(self, at);
            }
            // Dropping the senders ends the workers; the scope joins them.
            drop(workers);
        });
        self.advance_to(until);
    }
}

/// A thread of a sharded run, from the engine's side: where to tell it a window's end, and where it
/// says it found no shard left to run.
type Worker<C> = (SyncSender<<C as Core>::Time>, Receiver<()>);

/// `mutex` locked (a panic elsewhere does not poison what it guards: the run stops anyway).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Receive from `rx`, spinning a little before sleeping (a window's hand-over is short); `None`
/// when the sender is gone.
fn recv_spinning<T>(rx: &Receiver<T>) -> Option<T> {
    for _ in 0..20_000 {
        match rx.try_recv() {
            Ok(v) => return Some(v),
            Err(TryRecvError::Empty) => core::hint::spin_loop(),
            Err(TryRecvError::Disconnected) => return None,
        }
    }
    rx.recv().ok()
}
