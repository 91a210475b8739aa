//! The composer's routing side: sending and delivering routed messages (the router decides, this
//! sends), link signaling, refusals, direct-message retries and the probe lookups.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use kademlia_core::{Instant, NodeId};
use rand::RngExt as _;

use super::{Node, new_link};
use crate::event::{DirectFailure, DirectId, DisconnectReason, Event, Output, QueryId};
use crate::frame::{Frame, Payload, Routed};
use crate::link::LinkState;
use crate::lookup::Step;
use crate::route;
use crate::router::{self, DirectStep, Hop, Rejected};
use crate::timer::Timer;

/// Hop budget of a candidate's check: a link's link is two links away (one more for a detour).
const CANDIDATE_HOPS: u8 = 3;

/// The resend of a link attempt's signaling that goes through the signaling server: the last one
/// before `link_open_timeout` (resends go at `signal_retry`, then 2x later: 2 s and 6 s by default).
pub(crate) const LAST_SIGNAL_RESEND: usize = 2;

impl Node {
    /// Sends a routed message from us, signed unless it may go out unsigned (see
    /// `Router::seal`). `attempt` picks the first hop among the ranked links (0 = best);
    /// `via_server` sends it through the signaling server at once. Returns the link it left on.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn originate(
        &mut self,
        now: Instant,
        dst: NodeId,
        id: u64,
        lookup: Option<NodeId>,
        payload: &Payload,
        attempt: usize,
        via_server: bool,
    ) -> Option<NodeId> {
        let r =
            self.router
                .envelope(now, &self.identity, dst, id, lookup, payload, &self.config)?;
        self.send_routed(now, r, attempt, via_server)
    }

    /// A routed frame arrived over the verified link to `peer`. Checked here, before anything acts
    /// on it: the sender put itself last in the path, a message to us never passes us twice, the path
    /// is no longer than `hop_limit` allows, and an explicit route names us next, visits each node
    /// once and ends at the addressee (see [`route::take_route`]): a frame can then never bounce
    /// over the same links, so one frame costs at most `hop_limit` link traversals, all on distinct
    /// links but for backtracking.
    pub(super) fn on_routed(&mut self, now: Instant, peer: NodeId, mut r: Routed) {
        if r.path.last() != Some(&peer) || r.path.contains(&self.local) && r.dst == self.local {
            // The sender must have put itself last; a message to us never passes us twice.
            self.stats.dropped_unexpected += 1;
            self.offend(now, peer, 1);
            return;
        }
        if r.path.len() > usize::from(self.config.hop_limit) {
            self.stats.dropped_bad_route += 1;
            return;
        }
        r.hops_left = r.hops_left.min(self.config.hop_limit);
        r.path.push(self.local);
        if !route::take_route(&self.local, &r.dst, &r.path, r.hops_left, &mut r.route) {
            self.stats.dropped_bad_route += 1;
            return;
        }
        self.deliver(now, r, Some(peer));
    }

    /// Sends a reply retracing the simple path of `request` backwards.
    pub(super) fn reply(
        &mut self,
        now: Instant,
        request: &Routed,
        id: u64,
        payload: &Payload,
        via_server: bool,
    ) {
        if let Some(r) =
            self.router
                .reply_envelope(&self.identity, request, id, payload, &self.config)
        {
            self.send_routed(now, r, 0, via_server);
        }
    }

    /// Forwards `r` (already carrying us last in its path) one hop, or falls back. Returns the link
    /// it went out on, if any.
    fn send_routed(
        &mut self,
        now: Instant,
        mut r: Routed,
        attempt: usize,
        via_server: bool,
    ) -> Option<NodeId> {
        if via_server {
            self.via_server(now, r);
            return None;
        }
        let next = match self.router.next_hop(&self.links, &mut r, attempt) {
            Hop::Link(p) => Some(p),
            Hop::Back(p) => {
                self.stats.routed_backtracked += 1;
                Some(p)
            }
            Hop::DeadEnd => None,
        };
        match next {
            Some(p) => {
                r.hops_left -= 1;
                let direct = p == r.dst && r.path.len() == 1;
                if !direct {
                    self.router.seal(&self.identity, &mut r);
                }
                if r.src != self.local {
                    self.stats.routed_forwarded += 1;
                }
                self.send_frame(now, p, &Frame::Routed(r));
                Some(p)
            }
            None => {
                // Dead end. A lookup probe is answered with what this node knows; anything else goes
                // through the server if allowed.
                if let Some(target) = r.lookup
                    && r.src != self.local
                {
                    self.answer_probe(now, &r, target, false);
                    return None;
                }
                self.via_server(now, r);
                None
            }
        }
    }

    /// Hands `r` to the signaling server, unless the server would refuse it and close our connection
    /// for it: larger than `max_signal_bytes` (close 1009), or, for another node's message, past
    /// `server_relay_rate` (the server's own rate limit closes with 1008) or not signed by its origin
    /// (the server would carry a forgery in our name).
    fn via_server(&mut self, now: Instant, mut r: Routed) {
        if !self.config.server_fallback || r.dst == self.local {
            self.stats.dropped_no_route += 1;
            return;
        }
        let relay = r.src != self.local;
        // Through the server: always signed.
        self.router.seal(&self.identity, &mut r);
        let to = r.dst;
        let frame = Frame::Routed(r);
        let payload = frame.encode();
        if payload.len() > self.config.max_signal_bytes {
            self.stats.dropped_server_oversized += 1;
            return;
        }
        if relay {
            if !self.router.relay_allowed(now, &self.config) {
                self.stats.dropped_relay_rate += 1;
                return;
            }
            if !matches!(&frame, Frame::Routed(r) if router::signed_by_src(r, self.signature_check))
            {
                self.stats.dropped_bad_signature += 1;
                return;
            }
        }
        self.stats.server_fallbacks += 1;
        self.emit(Output::Signal { to, payload });
    }

    /// A routed message reached us (its path ends with us), over the verified link to `link` or,
    /// when `None`, through the server.
    ///
    /// The origin's signature is verified where the message is acted on: by its addressee, by a
    /// node that answers a lookup probe, and before another node's message goes through the server
    /// in our name; a forwarder only checks the envelope is signed at all (an unsigned one may only
    /// travel straight over the link to its addressee) and the route ([`Node::on_routed`]). Nothing
    /// in the path is learned: no id there is proven (only `src`, and only once its signature
    /// verified, enters the peer book).
    pub(super) fn deliver(&mut self, now: Instant, r: Routed, link: Option<NodeId>) {
        let via_server = link.is_none();
        if r.dst != self.local {
            if r.signature.is_empty() {
                self.stats.dropped_bad_signature += 1;
                return;
            }
            if r.lookup.is_some() && self.dht_transit(now, &r) {
                return;
            }
            if let Some(target) = r.lookup
                && self.knows(&target)
            {
                return self.answer_probe(now, &r, target, false);
            }
            self.send_routed(now, r, 0, false);
            return;
        }
        // Ours: the signature is checked once, here.
        let payload = match self
            .router
            .check_delivered(&self.links, &r, link, self.signature_check)
        {
            Ok(p) => p,
            Err(Rejected::BadSignature) => {
                self.stats.dropped_bad_signature += 1;
                if link == Some(r.src) {
                    // The link's own peer signed it badly: an offence.
                    self.offend(now, r.src, 1);
                }
                return;
            }
            Err(Rejected::Malformed) => {
                self.stats.dropped_malformed += 1;
                return;
            }
        };
        // Proven by its signature (or by the hello of the link it came straight over).
        self.learn(now, r.src);
        self.stats.routed_delivered += 1;
        let hops = r.hops() + u32::from(via_server);
        match payload {
            Payload::Data(data) => self.on_direct(now, r, data, hops, via_server),
            Payload::Ack => {
                if self.router.handle_ack(r.id, r.src, r.sent_at) {
                    self.timers.stop(Timer::Direct(r.id));
                }
            }
            Payload::Kad(bytes) => self.kad.handle_message(now, r.src, &bytes),
            Payload::Signal(bytes) => {
                if self.admit_signaling(now, &r)
                    && self.heard_signaling(now, r.src, r.id, via_server)
                {
                    self.on_signal(now, r.src, r.id, bytes, via_server);
                }
            }
            Payload::LinkRequest => {
                if self.admit_signaling(now, &r)
                    && self.heard_signaling(now, r.src, r.id, via_server)
                {
                    self.on_link_request(now, r.src, r.id, via_server);
                }
            }
            Payload::Rejected(alternatives) => self.on_rejected(now, r.src, alternatives),
            Payload::FindNode => {
                let target = r.lookup.unwrap_or(r.dst);
                self.answer_probe(now, &r, target, via_server);
            }
            Payload::DhtGet { .. } | Payload::DhtPut { .. } | Payload::DhtStore { .. } => {
                self.on_dht_request(now, &r, payload);
            }
            Payload::DhtValue {
                record,
                closest,
                request_hops,
            } => self.on_dht_value(now, r.id, r.src, record, closest, request_hops),
            Payload::DhtStored {
                result, closest, ..
            } => self.on_dht_stored(now, r.id, r.src, result, closest),
            Payload::Nodes { probe_hops, nodes } => {
                self.on_nodes(
                    now,
                    r.id,
                    r.src,
                    link,
                    nodes,
                    probe_hops.saturating_add(hops),
                );
            }
        }
    }

    // ------------------------------------------------------------------ signaling

    /// Sends signaling for the link attempt to `peer` (a link request, or the driver's offer, answer
    /// or candidate) and keeps it, so that it goes out again when nothing comes back: routed messages
    /// are lost with the frames that carry them, and a lost one would stall the attempt until
    /// `link_open_timeout`. The side that asks (the requester, the offerer) sends again after
    /// `signal_retry` while it has heard nothing from the peer; the other side answers a duplicate
    /// by sending its own again.
    pub(super) fn send_signaling(&mut self, now: Instant, peer: NodeId, id: u64, payload: Payload) {
        // The peer's signaling came through the server: it likely has no link yet, and a mesh route
        // would search for it in vain before falling back to the server anyway.
        let via_server = self.links.get(&peer).is_some_and(|l| l.via_server);
        let Some(envelope) =
            self.router
                .envelope(now, &self.identity, peer, id, None, &payload, &self.config)
        else {
            return;
        };
        let _ = self.send_routed(now, envelope.clone(), 0, via_server);
        let retry = self.config.signal_retry;
        if let Some(link) = self.links.get_mut(&peer) {
            link.keep_sent(now, envelope, retry);
        }
    }

    /// Sends again every signaling message kept for the attempt to `peer`, through another first hop
    /// each time, and from the [`LAST_SIGNAL_RESEND`]th on through the signaling server: a node whose
    /// links all lead to black holes (an attacker as its only link drops what it should forward) would
    /// otherwise never make another link.
    pub(super) fn resend_signaling(&mut self, now: Instant, peer: NodeId, attempt: usize) {
        let Some(link) = self.links.get(&peer) else {
            return;
        };
        let sent = link.sent.clone();
        let via_server = link.via_server || attempt >= LAST_SIGNAL_RESEND;
        for envelope in sent {
            self.stats.signals_resent += 1;
            let _ = self.send_routed(now, envelope, attempt, via_server);
        }
    }

    fn on_signal(
        &mut self,
        now: Instant,
        from: NodeId,
        id: u64,
        payload: Vec<u8>,
        via_server: bool,
    ) {
        match self.links.get(&from).map(|l| l.state) {
            Some(LinkState::Requested) => {
                // The lower id accepted our request and sends its offer.
                if let Some(l) = self.links.get_mut(&from) {
                    l.state = LinkState::Connecting;
                }
                self.emit(Output::Connect {
                    peer: from,
                    initiator: false,
                });
                self.emit(Output::Event(Event::Signal { from, payload }));
            }
            Some(_) => self.emit(Output::Event(Event::Signal { from, payload })),
            None => {
                if from < self.local {
                    // An offer from the lower id.
                    if self
                        .topology
                        .admits(&self.links, self.joined, &from, &self.config)
                    {
                        let mut link = new_link(LinkState::Connecting, now, false);
                        link.heard.push(id);
                        link.via_server = via_server;
                        self.links.insert(from, link);
                        self.emit(Output::Connect {
                            peer: from,
                            initiator: false,
                        });
                        self.emit(Output::Event(Event::Signal { from, payload }));
                    } else {
                        self.reject(now, from, via_server);
                    }
                } else {
                    // A higher id may not offer (no glare), and late signals of a closed link land here.
                    self.stats.dropped_unexpected += 1;
                }
            }
        }
    }

    fn on_link_request(&mut self, now: Instant, from: NodeId, id: u64, via_server: bool) {
        if from < self.local {
            self.stats.dropped_unexpected += 1;
            return;
        }
        if self.links.contains_key(&from) {
            return;
        }
        if self
            .topology
            .admits(&self.links, self.joined, &from, &self.config)
        {
            let mut link = new_link(LinkState::Connecting, now, true);
            link.heard.push(id);
            link.via_server = via_server;
            self.links.insert(from, link);
            self.emit(Output::Connect {
                peer: from,
                initiator: true,
            });
        } else {
            self.reject(now, from, via_server);
        }
    }

    /// Refuses `peer`'s link request or offer, with alternatives; through the server when that is how
    /// the request came (the peer likely has no link yet, so no mesh route reaches it).
    fn reject(&mut self, now: Instant, peer: NodeId, via_server: bool) {
        self.stats.rejections += 1;
        let alternatives = self
            .topology
            .alternatives_for(&self.links, &peer, &self.config);
        let id = self.router.fresh_id();
        let _ = self.originate(
            now,
            peer,
            id,
            None,
            &Payload::Rejected(alternatives),
            0,
            via_server,
        );
    }

    fn on_rejected(&mut self, now: Instant, from: NodeId, alternatives: Vec<NodeId>) {
        let Some(link) = self.links.get(&from) else {
            return;
        };
        if link.is_up() {
            return;
        }
        let alternatives: Vec<NodeId> = alternatives
            .into_iter()
            .take(self.config.alternatives)
            .filter(|p| *p != self.local)
            .collect();
        // The alternatives are the peer's say-so: candidates, which enter the peer book only once they
        // prove themselves (an unproven id is never dialled nor handed on).
        for p in &alternatives {
            self.topology.hear_of(*p);
        }
        self.topology.handle_rejected(now, from, &self.config);
        self.close(now, from, DisconnectReason::Rejected, false);
        // A refusal blocks the refusing peer. It paces the node's dialling only when the node is
        // well linked (at most one slot to fill): a node short of links must go on to the
        // alternatives at once (a restarted node used to wait out a growing backoff while every slot
        // was free), but one that only tops up its last slot in a full mesh should not ask peer after
        // full peer.
        if self.links.up().len() + 1 >= self.config.max_peers {
            self.topology.pace(now, &mut self.rng, &self.config);
        }
        self.emit(Output::Event(Event::Rejected {
            by: from,
            alternatives,
        }));
        // Try an alternative at once.
        self.timers.set(Timer::Maintenance, Some(now));
    }

    // ------------------------------------------------------------------ direct messages

    /// Retries or fails the direct messages due at `now`, in id order.
    pub(super) fn direct_timers(&mut self, now: Instant) {
        for id in self.timers.due_directs(now) {
            match self.router.handle_direct_timeout(now, id, &self.config) {
                Some(DirectStep::Failed { id, to }) => {
                    self.emit(Output::Event(Event::DirectFailed {
                        id: DirectId(id),
                        to,
                        reason: DirectFailure::NoAck,
                    }));
                }
                Some(DirectStep::Retry {
                    id,
                    to,
                    data,
                    attempt,
                    via_server,
                }) => {
                    self.stats.direct_retries += 1;
                    // The first attempt went through the two best first hops (`Node::send`): a
                    // retry takes the next one.
                    let _ = self.originate(
                        now,
                        to,
                        id,
                        None,
                        &Payload::Data(data),
                        attempt as usize,
                        via_server,
                    );
                }
                None => {}
            }
            self.timers
                .set(Timer::Direct(id), self.router.direct_deadline(id));
        }
    }

    // ------------------------------------------------------------------ lookups

    pub(super) fn learn(&mut self, now: Instant, p: NodeId) {
        self.topology.learn(now, p);
    }

    /// Whether `target` is proven to us (a link, the peer book, the Kademlia table): a probe for it is
    /// answered here. A link's say-so that it is linked to `target` is not enough: the probe goes on
    /// to that link, which answers itself.
    fn knows(&self, target: &NodeId) -> bool {
        self.links.is_up(target)
            || self.topology.book.contains(target)
            || self.kad.routing_table().contains(target)
    }

    /// The `n` peers closest to `target` among everything we know: links, the peer book and the
    /// Kademlia routing table (we count ourselves too), and, when `hearsay` (for our own application,
    /// never for another node), our links' claimed links.
    pub(super) fn closest_known(&self, target: &NodeId, n: usize, hearsay: bool) -> Vec<NodeId> {
        let mut all: BTreeSet<(kademlia_core::Distance, NodeId)> = BTreeSet::new();
        let mut add = |p: NodeId| {
            all.insert((p.distance(target), p));
        };
        add(self.local);
        for (p, l) in self.links.iter() {
            if l.is_up() {
                add(*p);
                if hearsay {
                    for q in &l.neighbors {
                        add(*q);
                    }
                }
            }
        }
        for p in self.topology.book.closest(target, n, |_| false) {
            add(p);
        }
        for p in self.kad.routing_table().closest(target, n) {
            add(p);
        }
        all.into_iter().take(n).map(|e| e.1).collect()
    }

    fn answer_probe(&mut self, now: Instant, r: &Routed, target: NodeId, via_server: bool) {
        if !router::signed_by_src(r, self.signature_check) {
            self.stats.dropped_bad_signature += 1;
            return;
        }
        self.stats.probes_answered += 1;
        let nodes = self.closest_known(&target, self.config.lookup_k, false);
        let probe_hops = r.hops() + u32::from(via_server);
        self.reply(
            now,
            r,
            r.id,
            &Payload::Nodes { probe_hops, nodes },
            via_server,
        );
    }

    /// Sends the next round of lookup `id`'s probes.
    pub(super) fn lookup_round(&mut self, now: Instant, id: u64) {
        let have_links = self.links.values().any(|l| l.is_up());
        // Probe ids are drawn at random: an answer is matched on one, and only the nodes the probe
        // passed have seen it.
        let rng = &mut self.rng;
        let probes = self.lookups.next_round(
            now,
            id,
            self.local,
            have_links,
            || rng.random::<u64>(),
            &self.config,
        );
        if let Some(target) = self.lookups.target(id) {
            for p in probes {
                let first_hop = self.originate(
                    now,
                    p.dst,
                    p.probe,
                    Some(target),
                    &Payload::FindNode,
                    p.attempt,
                    p.via_server,
                );
                self.lookups.sent(p.probe, first_hop);
            }
        }
        self.timers
            .set(Timer::Lookup(id), self.lookups.deadline(id));
    }

    /// An answer to probe `probe`, signed by `from`, came over the link to `link` (`None`: through
    /// the server). Only `from` is proven (its signature): the ids it names are a lookup result, not
    /// peer-book entries.
    fn on_nodes(
        &mut self,
        now: Instant,
        probe: u64,
        from: NodeId,
        link: Option<NodeId>,
        nodes: Vec<NodeId>,
        hops: u32,
    ) {
        let Some((id, step)) =
            self.lookups
                .handle_nodes(probe, from, link, nodes, hops, &self.config)
        else {
            // The answer to a candidate's check proved it (`deliver` learned it): nothing else to do.
            if !self.topology.checked(probe, from) {
                self.stats.dropped_probe_answers += 1;
            }
            return;
        };
        self.lookup_step(now, id, step);
    }

    /// Asks a few candidates (ids our links named: their links, alternatives) to prove themselves:
    /// a probe routed to each, with a hop budget for two links; its signed answer puts the candidate
    /// in the peer book (`deliver` learns a verified origin). A made-up id never answers.
    pub(super) fn verify_candidates(&mut self, now: Instant) {
        for c in self.topology.candidates_to_check() {
            if self.links.contains_key(&c) {
                continue;
            }
            let probe = self.rng.random::<u64>();
            let Some(mut r) = self.router.envelope(
                now,
                &self.identity,
                c,
                probe,
                None,
                &Payload::FindNode,
                &self.config,
            ) else {
                continue;
            };
            r.hops_left = r.hops_left.min(CANDIDATE_HOPS);
            self.topology.checking(probe, c);
            self.stats.candidates_checked += 1;
            let _ = self.send_routed(now, r, 0, false);
        }
    }

    /// Carries out what lookup `id` decided.
    fn lookup_step(&mut self, now: Instant, id: u64, step: Step) {
        match step {
            Step::Wait => {}
            Step::NextRound => self.lookup_round(now, id),
            Step::Finished(f) => self.emit(Output::Event(Event::LookupFinished {
                id: QueryId(f.id),
                target: f.target,
                peers: f.peers,
                rounds: f.rounds,
                requests: f.requests,
                hops: f.hops,
            })),
        }
        self.timers
            .set(Timer::Lookup(id), self.lookups.deadline(id));
    }

    /// Moves the lookups whose round deadline passed at `now` on, in id order.
    pub(super) fn lookup_timers(&mut self, now: Instant) {
        for id in self.timers.due_lookups(now) {
            let step = self.lookups.handle_timeout(id, &self.config);
            self.lookup_step(now, id, step);
        }
    }
}
