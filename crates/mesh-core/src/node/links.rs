//! The composer's link side: data-channel input, frames, the hello, neighbor lists, closing links, the
//! link timers, and carrying out the topology's decisions (dial, evict, reject).

use alloc::vec::Vec;

use kademlia_core::{Instant, NodeId};
use rand::RngExt as _;
use sha1::{Digest as _, Sha1};

use super::announce::{Lists, announcements};
use super::{Node, new_link};
use crate::event::{DisconnectReason, Event, HelloError, Output};
use crate::frame::{self, ChunkResult, Frame, Hello, Kind, Neighbors};
use crate::link::{Heard, LinkState, MAX_EARLY_FRAMES};
use crate::timer::Timer;

impl Node {
    pub(super) fn on_link_open(
        &mut self,
        now: Instant,
        peer: NodeId,
        local_fingerprint: Vec<u8>,
        remote_fingerprint: Vec<u8>,
    ) {
        let Some(link) = self.links.get_mut(&peer) else {
            // A link we do not want (closed meanwhile): close it again.
            self.emit(Output::Disconnect {
                peer,
                reason: DisconnectReason::Closed,
            });
            return;
        };
        if link.state == LinkState::Up || link.state == LinkState::Open {
            self.stats.dropped_unexpected += 1;
            return;
        }
        let hello = link.open(
            now,
            &self.identity,
            self.signature_check,
            local_fingerprint,
            remote_fingerprint,
            &self.config,
        );
        let early = link.early_hello.take();
        self.send_frame(now, peer, &Frame::Hello(hello));
        if let Some(h) = early {
            self.on_hello(now, peer, h);
        }
    }

    pub(super) fn on_link_data(&mut self, now: Instant, peer: NodeId, bytes: &[u8]) {
        self.stats.frames_received += 1;
        if bytes.len()
            > self
                .config
                .max_frame_bytes
                .max(self.config.max_message_bytes)
        {
            self.stats.dropped_oversized += 1;
            return;
        }
        let Some(link) = self.links.get_mut(&peer) else {
            self.stats.dropped_unexpected += 1;
            return;
        };
        link.last_rx = now;
        // The cores' frames, most of the traffic, go to them as received, without a copy, once the
        // link is up: the same checks as through `on_frame`.
        if link.state == LinkState::Up
            && let Some((kind, body)) = Frame::core_body(bytes)
        {
            if self.within_budget(now, peer) {
                if kind == Kind::Kad {
                    self.kad.handle_message(now, peer, body);
                } else {
                    self.gossip.handle_message(now, peer, body);
                }
            }
            return;
        }
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(_) => {
                self.stats.dropped_malformed += 1;
                if link.state != LinkState::Up {
                    self.fail_hello(now, peer, HelloError::Missing);
                } else {
                    self.offend(now, peer, 1);
                }
                return;
            }
        };
        self.on_frame(now, peer, frame, true);
    }

    fn on_frame(&mut self, now: Instant, peer: NodeId, frame: Frame, allow_chunk: bool) {
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        if link.state != LinkState::Up {
            match frame {
                Frame::Hello(h) => {
                    if link.state == LinkState::Open {
                        self.on_hello(now, peer, h);
                    } else if link.early_hello.is_none() {
                        link.early_hello = Some(h);
                    } else {
                        self.stats.dropped_unexpected += 1;
                    }
                }
                frame
                    if link.early_hello.is_some()
                        && link.state != LinkState::Open
                        && link.early_frames.len() < MAX_EARLY_FRAMES =>
                {
                    // The peer is up and its frames came before the driver reported the link open
                    // here (the browser delivers a channel's messages before its open event is
                    // handled): keep them for when its hello verifies, rather than losing its
                    // tree places and neighbor lists until their next refresh.
                    link.early_frames.push(frame);
                }
                _ => {
                    // The peer is up and our hello has not reached it yet, or its hello was lost:
                    // nothing is accepted before the hello, but the hellos are sent again until
                    // both verify (or the link times out).
                    self.stats.dropped_unexpected += 1;
                }
            }
            return;
        }
        // Every whole frame may cost a signature check (routed messages, gossip) or an answer: the
        // peer's budget bounds them (chunks count once, as the frame they make up).
        if !matches!(frame, Frame::Chunk(_)) && !self.within_budget(now, peer) {
            return;
        }
        match frame {
            Frame::Hello(_) => {
                // The peer sends its hello again: it has not verified ours. Ours goes again, at most
                // once per `signal_retry / 2`, and so do our neighbor lists, which it dropped.
                self.stats.dropped_unexpected += 1;
                let half = self.config.signal_retry / 2;
                if let Some(link) = self.links.get_mut(&peer)
                    && let Some(h) = link.hello.clone()
                    && link.echo_due(now, half)
                {
                    link.announced = None;
                    self.stats.hellos_resent += 1;
                    self.send_frame(now, peer, &Frame::Hello(h));
                    self.announce_neighbors(now);
                }
            }
            Frame::Kad(bytes) => self.kad.handle_message(now, peer, &bytes),
            Frame::Gossip(bytes) => self.gossip.handle_message(now, peer, &bytes),
            Frame::Routed(r) => self.on_routed(now, peer, r),
            Frame::Chunk(c) => {
                if !allow_chunk {
                    self.stats.dropped_unexpected += 1;
                    self.offend(now, peer, 1);
                    return;
                }
                let Some(link) = self.links.get_mut(&peer) else {
                    return;
                };
                match link.reassembly.push(now, c, &self.config) {
                    ChunkResult::Complete(bytes) => match Frame::decode(&bytes) {
                        Ok(f) => self.on_frame(now, peer, f, false),
                        Err(_) => {
                            self.stats.dropped_malformed += 1;
                            self.offend(now, peer, 1);
                        }
                    },
                    ChunkResult::Pending => {}
                    ChunkResult::Invalid => {
                        self.stats.dropped_oversized += 1;
                        self.stats.reassembly_dropped += 1;
                        self.offend(now, peer, 1);
                    }
                }
            }
            Frame::Neighbors(n) => self.on_neighbors(now, peer, n),
            Frame::Ping(n) => self.send_frame(now, peer, &Frame::Pong(n)),
            Frame::Pong(n) => {
                // The answer to the ping sent when the link came up (or to a keepalive ping, which
                // measures nothing): the link's round trip, which ranks the broadcast trees' parents
                // and times the retransmissions of pushes.
                let probe = self
                    .links
                    .get_mut(&peer)
                    .and_then(|l| l.probe.take_if(|p| p.0 == n));
                if let Some((_, sent)) = probe {
                    self.gossip
                        .handle_link_rtt(now, peer, now.saturating_duration_since(sent));
                }
            }
            Frame::Evict(alternatives) => {
                // The alternatives are the peer's say-so: candidates, not peer-book entries.
                for p in &alternatives {
                    self.topology.hear_of(*p);
                }
                self.emit(Output::Event(Event::Evicted {
                    by: peer,
                    alternatives,
                }));
                let until = now + self.config.reconnect_backoff_max / 2;
                self.topology
                    .backoff
                    .block(peer, until, self.config.max_backoff_entries);
                self.close(now, peer, DisconnectReason::EvictedByPeer, false);
            }
            Frame::Bye => {
                self.topology.book.remove(&peer);
                self.close(now, peer, DisconnectReason::PeerLeft, false);
                self.kad.handle_peer_down(now, peer);
            }
        }
    }

    fn on_neighbors(&mut self, now: Instant, peer: NodeId, n: Neighbors) {
        let local = self.local;
        // Neither end of this link is a hop beyond it.
        let beyond = |mut ids: Vec<NodeId>| {
            ids.retain(|p| *p != peer && *p != local);
            ids
        };
        let links = beyond(n.links);
        let second = beyond(n.second);
        let third = beyond(n.third);
        let fourth = beyond(n.fourth);
        // The lists are the peer's say-so: used to route (see `Node::send` for how a lie is survived);
        // its links are candidates, which enter the peer book only once they prove themselves
        // (`Node::verify_candidates`), so a made-up one is never dialled nor handed on.
        for p in &links {
            self.topology.hear_of(*p);
        }
        let mut changed = false;
        if let Some(link) = self.links.get_mut(&peer) {
            changed = link.neighbors != links;
            link.neighbors = links;
            link.second = second;
            link.third = third;
            link.fourth = fourth;
        }
        if changed {
            // The second level of our own lists changed: told soon. A change of the third level only
            // (the peer's second) waits for the next announcement or refresh: it would otherwise
            // travel three hops on every change, and routing tolerates a slightly stale fourth hop.
            self.announce_neighbors(now);
        }
    }

    fn on_hello(&mut self, now: Instant, peer: NodeId, hello: Hello) {
        let Some(link) = self.links.get(&peer) else {
            return;
        };
        match link.check_hello(&peer, &hello, self.signature_check) {
            None => {}
            Some(Ok(())) => self.link_up(now, peer),
            Some(Err(error)) => self.fail_hello(now, peer, error),
        }
    }

    fn fail_hello(&mut self, now: Instant, peer: NodeId, error: HelloError) {
        self.stats.hello_failures += 1;
        let until = now + self.config.reconnect_backoff_max;
        self.topology
            .backoff
            .block(peer, until, self.config.max_backoff_entries);
        self.close(now, peer, DisconnectReason::Hello(error), false);
    }

    fn link_up(&mut self, now: Instant, peer: NodeId) {
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        link.state = LinkState::Up;
        link.last_rx = now;
        let early = core::mem::take(&mut link.early_frames);
        self.stats.links_up += 1;
        self.topology.handle_link_up(now, peer);
        self.emit(Output::Event(Event::PeerConnected { peer }));
        self.dht_link_up(now, peer);
        self.kad.handle_peer_up(now, peer);
        self.gossip.handle_peer_up(now, peer);
        // One ping measures the link's round trip (answered by any peer, old ones included).
        let n = self.rng.random::<u64>();
        if let Some(link) = self.links.get_mut(&peer) {
            link.probe = Some((n, now));
        }
        self.send_frame(now, peer, &Frame::Ping(n));
        for frame in early {
            self.on_frame(now, peer, frame, true);
        }
        self.enforce_capacity(now);
        if self.links.is_up(&peer) {
            self.announce_neighbors(now);
        }
        // No Kademlia bootstrap lookup: the server's introductions (the joiner's K XOR-closest, which
        // it also tells about the joiner) and the links already fill the routing table, and a lookup
        // of our own id would cost some 40 routed requests and answers per joining node.
    }

    /// Tells the links our neighbor lists after `announce_delay`: a node's links and their links often
    /// change several times in a row (a mesh forming, a link replaced), and each link needs only the
    /// last lists.
    pub(super) fn announce_neighbors(&mut self, now: Instant) {
        if self.timers.get(Timer::Announce).is_none() {
            self.timers
                .set(Timer::Announce, Some(now + self.config.announce_delay));
        }
    }

    /// Tells every up link our up links, their links, theirs and a sample of the level after (its
    /// routing then sees four hops through us, and a fifth in part), when that changed since we last
    /// told it.
    pub(super) fn send_neighbors(&mut self, now: Instant) {
        self.timers.stop(Timer::Announce);
        let ups = self.links.up();
        let lists: Vec<Lists<'_>> = ups
            .iter()
            .filter_map(|p| {
                self.links.get(p).map(|l| Lists {
                    id: *p,
                    neighbors: &l.neighbors,
                    second: &l.second,
                    third: &l.third,
                })
            })
            .collect();
        let all = announcements(self.local, &lists);
        for (p, announcement) in ups.iter().zip(all) {
            let Some(link) = self.links.get_mut(p) else {
                continue;
            };
            // Only a digest of what was told is kept: the lists run to hundreds of ids per link.
            let bytes = Frame::Neighbors(announcement).encode();
            let digest: [u8; 20] = Sha1::digest(&bytes).into();
            if link.announced == Some(digest) {
                continue;
            }
            link.announced = Some(digest);
            self.send_bytes(now, *p, bytes);
        }
    }

    /// Removes the link to `peer` and tells everyone who needs to know. `by_driver`: the driver reported
    /// it closed (no `Disconnect` output then).
    pub(super) fn close(
        &mut self,
        now: Instant,
        peer: NodeId,
        reason: DisconnectReason,
        by_driver: bool,
    ) {
        let Some(link) = self.links.remove(&peer) else {
            return;
        };
        let was_up = link.is_up();
        if self.joined {
            self.maintain_by(now + self.config.maintenance_interval);
        }
        if !by_driver && link.state != LinkState::Requested {
            self.emit(Output::Disconnect { peer, reason });
        }
        let failed_attempt = self.topology.handle_link_closed(
            now,
            peer,
            reason,
            was_up,
            &mut self.rng,
            &self.config,
        );
        if failed_attempt {
            self.stats.link_failures += 1;
        }
        if was_up {
            self.emit(Output::Event(Event::PeerDisconnected { peer, reason }));
            self.gossip.handle_peer_down(now, peer);
            if reason == DisconnectReason::Idle {
                self.kad.handle_peer_down(now, peer);
            }
            self.announce_neighbors(now);
        }
    }

    pub(super) fn send_frame(&mut self, now: Instant, peer: NodeId, frame: &Frame) {
        self.send_bytes(now, peer, frame.encode());
    }

    /// [`Self::send_frame`] of a frame already encoded.
    fn send_bytes(&mut self, now: Instant, peer: NodeId, bytes: Vec<u8>) {
        if bytes.len() > self.config.max_message_bytes {
            self.stats.dropped_oversized += 1;
            return;
        }
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        let msg = link.next_message(now);
        for part in frame::split(bytes, self.config.max_frame_bytes, msg) {
            self.stats.frames_sent += 1;
            self.emit(Output::Transmit {
                link: peer,
                bytes: part,
            });
        }
    }

    /// Runs the timers of the links due at `now` (in id order) and acts on their decisions, kind by
    /// kind: signaling resends, hellos, timed-out attempts, idle links, keepalives.
    pub(super) fn link_timers(&mut self, now: Instant) {
        let mut timed_out = Vec::new();
        let mut idle = Vec::new();
        let mut ping = Vec::new();
        let mut resend = Vec::new();
        let mut hellos = Vec::new();
        let mut expired = 0;
        for p in self.timers.due_links(now) {
            let Some(link) = self.links.get_mut(&p) else {
                continue;
            };
            let t = link.handle_timeout(now, &self.config);
            if t.open_timed_out {
                timed_out.push(p);
            }
            if t.idle {
                idle.push(p);
            }
            if t.ping {
                ping.push(p);
            }
            if let Some(attempt) = t.resend {
                resend.push((p, attempt));
            }
            if let Some(h) = t.hello {
                hellos.push((p, h));
            }
            expired += t.expired;
        }
        for (p, attempt) in resend {
            self.resend_signaling(now, p, attempt);
        }
        for (p, h) in hellos {
            self.stats.hellos_resent += 1;
            self.send_frame(now, p, &Frame::Hello(h));
        }
        self.stats.reassembly_dropped += expired as u64;
        for p in timed_out {
            let requested = self
                .links
                .get(&p)
                .is_some_and(|l| l.state == LinkState::Requested);
            if !requested {
                self.emit(Output::Event(Event::PeerTimedOut { peer: p }));
            }
            self.close(now, p, DisconnectReason::Timeout, false);
        }
        for p in idle {
            self.close(now, p, DisconnectReason::Idle, false);
        }
        for p in ping {
            let n = self.rng.random::<u64>();
            self.send_frame(now, p, &Frame::Ping(n));
        }
    }

    // ------------------------------------------------------------------ topology actions

    /// Evicts surplus up links, one at a time (see `Topology::surplus`).
    fn enforce_capacity(&mut self, now: Instant) {
        while let Some(victim) = self.topology.surplus(&self.links, &self.config) {
            self.evict(now, victim);
        }
    }

    fn evict(&mut self, now: Instant, peer: NodeId) {
        let alternatives = self
            .topology
            .alternatives_for(&self.links, &peer, &self.config);
        self.send_frame(now, peer, &Frame::Evict(alternatives));
        self.stats.evictions += 1;
        self.close(now, peer, DisconnectReason::Evicted, false);
    }

    /// Dials what the topology's plan asks for.
    pub(super) fn maintain(&mut self, now: Instant) {
        let dials =
            self.topology
                .plan_dials(now, &self.links, self.joined, &mut self.rng, &self.config);
        for p in dials {
            self.dial(now, p);
        }
        self.verify_candidates(now);
    }

    fn dial(&mut self, now: Instant, peer: NodeId) {
        if peer == self.local || self.links.contains_key(&peer) || self.is_banned(now, &peer) {
            return;
        }
        if self.local < peer {
            self.links
                .insert(peer, new_link(LinkState::Connecting, now, true));
            self.emit(Output::Connect {
                peer,
                initiator: true,
            });
        } else {
            self.links
                .insert(peer, new_link(LinkState::Requested, now, false));
            let id = self.router.fresh_id();
            self.send_signaling(now, peer, id, crate::frame::Payload::LinkRequest);
        }
    }

    /// Signaling `id` from `from` arrived: whether it is new (to be acted on). A duplicate means the
    /// peer has not heard our side: ours goes out again (at most once per `signal_retry / 2`).
    pub(super) fn heard_signaling(
        &mut self,
        now: Instant,
        from: NodeId,
        id: u64,
        via_server: bool,
    ) -> bool {
        let half = self.config.signal_retry / 2;
        let Some(link) = self.links.get_mut(&from) else {
            return true;
        };
        match link.hear(now, id, via_server, half) {
            Heard::New => true,
            Heard::Duplicate { echo } => {
                self.stats.signal_duplicates += 1;
                if echo {
                    self.resend_signaling(now, from, 1);
                }
                false
            }
        }
    }
}
