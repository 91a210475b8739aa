//! The composer's receiving side of direct messages and link signaling from strangers: freshness
//! (replays refused, a restarted sender's ids never taken for duplicates), duplicate suppression,
//! the acknowledgement (at once, or once the driver confirms the application got the message), and
//! the offences and bans of misbehaving link peers.

use alloc::vec::Vec;

use kademlia_core::{Instant, NodeId};

use super::Node;
use crate::abuse::Charge;
use crate::event::{DirectId, DisconnectReason, Event, MessageRef, Output};
use crate::frame::{Payload, Routed};
use crate::router::{Router, Seen};

/// A direct message handed to the driver, acknowledged once it confirms (`Config::confirm_direct`).
#[derive(Debug)]
pub(super) struct Unconfirmed {
    /// The envelope (its body dropped): the ack retraces its path.
    request: Routed,
    via_server: bool,
}

impl Node {
    /// Direct message `r` carrying `data` reached us, signature checked.
    pub(super) fn on_direct(
        &mut self,
        now: Instant,
        mut r: Routed,
        data: Vec<u8>,
        hops: u32,
        via_server: bool,
    ) {
        match self
            .router
            .first_delivery(now, r.src, r.id, r.sent_at, &self.config)
        {
            Seen::Stale => self.stats.dropped_stale += 1,
            // Not acknowledged: its sender tries again, when room may have freed.
            Seen::Full => self.stats.direct_refused_full += 1,
            Seen::Duplicate => {
                self.stats.direct_duplicates += 1;
                // Acknowledged again (our first ack was lost), unless the first copy still waits
                // for the driver's confirmation.
                let waiting = self.unconfirmed.iter().any(|u| {
                    u.request.src == r.src && u.request.id == r.id && u.request.sent_at == r.sent_at
                });
                if !waiting {
                    self.reply(now, &r, r.id, &Payload::Ack, via_server);
                }
            }
            Seen::New => {
                if self.config.confirm_direct {
                    if self.unconfirmed.len() >= self.config.max_outputs {
                        self.router.forget(r.src, r.id, r.sent_at);
                        self.stats.direct_refused_full += 1;
                        return;
                    }
                    r.body = Vec::new();
                    self.unconfirmed.push_back(Unconfirmed {
                        request: r.clone(),
                        via_server,
                    });
                } else {
                    self.reply(now, &r, r.id, &Payload::Ack, via_server);
                }
                self.emit(Output::Event(Event::Message {
                    from: r.src,
                    topic: None,
                    data,
                    hops,
                    id: MessageRef::Direct(DirectId(r.id)),
                }));
            }
        }
    }

    /// With [`Config::confirm_direct`](crate::Config::confirm_direct): the driver reports whether the
    /// application got direct message `id` from `from` (the [`Event::Message`] with
    /// [`MessageRef::Direct`]): if so it is acknowledged now; if not it is not, and it is forgotten so
    /// that the sender's retry is delivered. Call it for every such event, in order, before the next
    /// input; an unknown message is ignored.
    pub fn confirm_direct(&mut self, now: Instant, from: NodeId, id: DirectId, delivered: bool) {
        let Some(i) = self
            .unconfirmed
            .iter()
            .position(|u| u.request.src == from && u.request.id == id.0)
        else {
            return;
        };
        let Some(u) = self.unconfirmed.remove(i) else {
            return;
        };
        let r = u.request;
        if delivered {
            self.reply(now, &r, r.id, &Payload::Ack, u.via_server);
        } else {
            self.stats.direct_refused_by_app += 1;
            self.router.forget(r.src, r.id, r.sent_at);
        }
        self.flush(now);
    }

    /// Link signaling `r` (a link request or a WebRTC signal) reached us, signature checked: whether
    /// to act on it. Dated outside the freshness window, it is refused; from a peer without a link
    /// (it would make one), it is refused when the peer is banned or when it was seen before (a
    /// replayed offer or request).
    pub(super) fn admit_signaling(&mut self, now: Instant, r: &Routed) -> bool {
        if self.links.contains_key(&r.src) {
            // Part of an attempt under way: its resends are matched by id on the link.
            if Router::fresh(now, r.sent_at, &self.config) {
                return true;
            }
            self.stats.dropped_stale += 1;
            return false;
        }
        if self.bans.is_banned(now, &r.src) {
            self.stats.dropped_banned += 1;
            return false;
        }
        match self
            .router
            .first_delivery(now, r.src, r.id, r.sent_at, &self.config)
        {
            Seen::New => true,
            Seen::Duplicate | Seen::Stale => {
                self.stats.dropped_stale += 1;
                false
            }
            Seen::Full => false,
        }
    }

    /// The peer of the up link `peer` sent a frame that may cost a signature check: whether it is
    /// within its budget. A frame over it is dropped, and a flood is an offence.
    pub(super) fn within_budget(&mut self, now: Instant, peer: NodeId) -> bool {
        let Some(link) = self.links.get_mut(&peer) else {
            return false;
        };
        match link.charge(now, &self.config) {
            Charge::Ok => true,
            Charge::Drop => {
                self.stats.dropped_over_budget += 1;
                false
            }
            Charge::DropAndOffend => {
                self.stats.dropped_over_budget += 1;
                self.offend(now, peer, crate::abuse::FLOOD_OFFENCES);
                false
            }
        }
    }

    /// The peer of the link `peer` committed `n` offences: past its allowance, its link is closed and
    /// it is banned for `ban_duration`.
    pub(super) fn offend(&mut self, now: Instant, peer: NodeId, n: u32) {
        let Some(link) = self.links.get_mut(&peer) else {
            return;
        };
        if !link.offend(now, n, &self.config) {
            return;
        }
        self.stats.peers_banned += 1;
        self.bans
            .ban(now, peer, self.config.ban_duration, self.config.max_bans);
        self.close(now, peer, DisconnectReason::Misbehaved, false);
    }

    /// Whether `peer` is banned at `now` (not dialled, not admitted).
    pub(super) fn is_banned(&self, now: Instant, peer: &NodeId) -> bool {
        self.bans.is_banned(now, peer)
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;
    use core::time::Duration;

    use kademlia_core::{Instant, NodeId};

    use crate::event::{DirectId, DisconnectReason, Event, MessageRef, Output, ServerInput};
    use crate::frame::{Frame, Payload};
    use crate::test_support::*;
    use crate::{Config, Node};

    /// Secret key of identity `n` of the fixtures (a sender that can restart with the same key).
    fn secret(n: u64) -> [u8; 32] {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&n.to_le_bytes());
        s[31] = 0x5a;
        s
    }

    /// What `from` sends through the server, as the addressee's server input.
    fn through_server(from: &mut Node) -> Vec<ServerInput> {
        let me = from.local_id();
        relayed_out(&drain(from))
            .into_iter()
            .map(|(_, r)| ServerInput::Relayed {
                from: me,
                payload: Frame::Routed(r).encode(),
            })
            .collect()
    }

    fn send(node: &mut Node, now: Instant, to: NodeId, data: Vec<u8>) -> DirectId {
        match node.send(now, to, data) {
            Ok(id) => id,
            Err(e) => panic!("send refused: {e}"),
        }
    }

    fn acks(out: &[Output]) -> usize {
        relayed_out(out)
            .iter()
            .filter(|(_, r)| postcard::from_bytes::<Payload>(&r.body) == Ok(Payload::Ack))
            .count()
    }

    fn direct_messages(out: &[Output]) -> Vec<(NodeId, Vec<u8>)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Event(Event::Message {
                    from,
                    data,
                    id: MessageRef::Direct(_),
                    ..
                }) => Some((*from, data.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_replayed_direct_message_is_refused_even_once_forgotten() {
        let config = Config {
            max_seen_direct: 2,
            ..Config::default()
        };
        let t0 = Instant::from_millis(1_000_000);
        let mut n = Node::new([9; 32], config.clone(), 7);
        let mut s = Node::new(secret(1), Config::default(), 1);
        let mut others = [
            Node::new(secret(2), Config::default(), 2),
            Node::new(secret(3), Config::default(), 3),
        ];
        send(&mut s, t0, n.local_id(), b"pay 10".to_vec());
        let captured = through_server(&mut s);
        assert_eq!(captured.len(), 1);
        n.handle_server(t0, captured[0].clone());
        assert_eq!(direct_messages(&drain(&mut n)).len(), 1);
        // Later, other senders' messages fill the duplicate memory, then the attacker replays the
        // captured envelope: it is refused by its date, and not acknowledged.
        let t1 = t0 + config.max_message_age + Duration::from_secs(1);
        for o in &mut others {
            send(o, t1, n.local_id(), b"hello".to_vec());
            for input in through_server(o) {
                n.handle_server(t1, input);
            }
        }
        assert_eq!(direct_messages(&drain(&mut n)).len(), 2);
        n.handle_server(t1, captured[0].clone());
        let out = drain(&mut n);
        assert!(direct_messages(&out).is_empty(), "replay delivered");
        assert_eq!(acks(&out), 0, "replay acknowledged");
        assert_eq!(n.stats().dropped_stale, 1);
    }

    #[test]
    fn a_restarted_sender_gets_its_new_messages_delivered() {
        let t0 = Instant::from_millis(1_000_000);
        let mut n = Node::new([9; 32], Config::default(), 7);
        let mut before = Node::new(secret(1), Config::default(), 1);
        send(&mut before, t0, n.local_id(), b"first run".to_vec());
        for input in through_server(&mut before) {
            n.handle_server(t0, input);
        }
        let old_ack = through_server(&mut n);
        assert_eq!(old_ack.len(), 1);
        // The sender restarts (same key, same seed: its ids start at 1 again) a little later.
        let t1 = t0 + Duration::from_secs(5);
        let mut after = Node::new(secret(1), Config::default(), 1);
        let id = send(&mut after, t1, n.local_id(), b"second run".to_vec());
        // The old run's ack (same id) does not acknowledge the new message.
        for input in old_ack {
            let ServerInput::Relayed { payload, .. } = input else {
                unreachable!()
            };
            after.handle_server(
                t1,
                ServerInput::Relayed {
                    from: n.local_id(),
                    payload,
                },
            );
        }
        for input in through_server(&mut after) {
            n.handle_server(t1, input);
        }
        let out = drain(&mut n);
        assert_eq!(
            direct_messages(&out),
            [(after.local_id(), b"second run".to_vec())]
        );
        // Its ack reaches the new run and settles the message: no retry, no failure.
        let me = n.local_id();
        for (_, r) in relayed_out(&out) {
            after.handle_server(
                t1,
                ServerInput::Relayed {
                    from: me,
                    payload: Frame::Routed(r).encode(),
                },
            );
        }
        drain(&mut after);
        let end = t1 + Duration::from_secs(60);
        after.handle_timeout(end);
        let out = drain(&mut after);
        assert!(
            !out.iter().any(|o| matches!(
                o,
                Output::Event(Event::DirectFailed { id: i, .. }) if *i == id
            )),
            "{out:?}"
        );
        assert_eq!(after.stats().direct_retries, 0);
    }

    #[test]
    fn with_confirmation_only_what_the_application_got_is_acknowledged() {
        let config = Config {
            confirm_direct: true,
            ..Config::default()
        };
        let t0 = Instant::from_millis(1_000_000);
        let mut n = Node::new([9; 32], config.clone(), 7);
        let mut s = Node::new(secret(1), Config::default(), 1);
        send(&mut s, t0, n.local_id(), b"x".to_vec());
        let sent = through_server(&mut s);
        for input in sent.clone() {
            n.handle_server(t0, input);
        }
        let out = drain(&mut n);
        assert_eq!(direct_messages(&out).len(), 1);
        assert_eq!(acks(&out), 0, "acknowledged before the driver confirmed");
        // The application could not take it: no ack, and the retry is delivered again.
        n.confirm_direct(t0, s.local_id(), DirectId(1), false);
        assert_eq!(acks(&drain(&mut n)), 0);
        assert_eq!(n.stats().direct_refused_by_app, 1);
        for input in sent {
            n.handle_server(t0, input);
        }
        assert_eq!(direct_messages(&drain(&mut n)).len(), 1);
        n.confirm_direct(t0, s.local_id(), DirectId(1), true);
        assert_eq!(acks(&drain(&mut n)), 1);
    }

    #[test]
    fn a_replayed_link_request_or_offer_is_refused() {
        let mut n = node();
        let now = Instant::from_millis(2);
        let p = identity(1);
        let replay = {
            let payload = if p.id() < n.local_id() {
                Payload::Signal(b"offer".to_vec())
            } else {
                Payload::LinkRequest
            };
            relayed(&p, n.local_id(), &payload)
        };
        n.handle_server(now, replay.clone());
        let out = drain(&mut n);
        assert!(out.iter().any(|o| matches!(o, Output::Connect { .. })));
        // The attempt ends (it fails to open); an attacker replays the request or offer.
        n.handle_link_closed(now, p.id());
        drain(&mut n);
        n.handle_server(now + Duration::from_millis(10), replay.clone());
        let out = drain(&mut n);
        assert!(
            !out.iter().any(|o| matches!(o, Output::Connect { .. })),
            "replay admitted: {out:?}"
        );
        // And once out of the window, by its date.
        let late = now + n.config().max_message_age + Duration::from_secs(1);
        n.handle_server(late, replay);
        assert!(
            !drain(&mut n)
                .iter()
                .any(|o| matches!(o, Output::Connect { .. }))
        );
        assert_eq!(n.stats().dropped_stale, 2);
    }

    #[test]
    fn a_peer_sending_garbage_is_disconnected_and_banned_for_a_while() {
        let (mut n, p, now) = linked_to_one();
        let limit = n.config().max_offences;
        let mut closed = None;
        for i in 0..limit {
            n.handle_message(now, p.id(), &[frame_version(), 3, 0xff, 0xff, 0xff]);
            let out = drain(&mut n);
            if let Some(reason) = disconnect_reason(&out, p.id()) {
                closed = Some((i + 1, reason));
                break;
            }
        }
        assert_eq!(closed, Some((limit, DisconnectReason::Misbehaved)));
        assert!(n.links().is_empty());
        assert_eq!(n.stats().peers_banned, 1);
        // It comes back at once with a new (fresh) request: refused while banned.
        let mut q = Node::new(secret(1), Config::default(), 1);
        let later = now + Duration::from_secs(1);
        let attempt = |n: &mut Node, q: &mut Node, at: Instant| {
            if q.local_id() < n.local_id() {
                q.send_signal(at, n.local_id(), b"offer".to_vec());
            } else {
                q.handle_server(at, ServerInput::BootstrapPeers(alloc::vec![n.local_id()]));
                q.join(at);
                q.handle_timeout(at);
            }
            for input in through_server(q) {
                n.handle_server(at, input);
            }
            drain(n).iter().any(|o| matches!(o, Output::Connect { .. }))
        };
        assert!(!attempt(&mut n, &mut q, later));
        assert!(n.stats().dropped_banned >= 1);
        // Not re-admitted until the ban ends; admitted after.
        let after = now + n.config().ban_duration + Duration::from_secs(1);
        let mut q = Node::new(secret(1), Config::default(), 1);
        assert!(attempt(&mut n, &mut q, after));
    }

    #[test]
    fn a_flooding_peer_costs_at_most_its_budget_then_is_banned() {
        let (mut n, p, now) = linked_to_one();
        let rate = n.config().link_verify_rate as usize;
        // A burst far above the budget at one instant: at most twice the rate is handled.
        let ping = Frame::Ping(1).encode();
        let mut pongs = 0;
        for _ in 0..(rate * 5) {
            n.handle_message(now, p.id(), &ping);
            pongs += drain(&mut n)
                .iter()
                .filter(|o| matches!(o, Output::Transmit { .. }))
                .count();
        }
        assert!(pongs <= rate * 2, "{pongs} answers");
        assert!(n.stats().dropped_over_budget as usize >= rate * 3);
        assert_eq!(n.links(), alloc::vec![p.id()]);
        // Kept up, second after second: the flood bans it.
        let mut t = now;
        for _ in 0..20 {
            t += Duration::from_secs(1);
            for _ in 0..(rate * 2) {
                n.handle_message(t, p.id(), &ping);
            }
            drain(&mut n);
            if n.links().is_empty() {
                break;
            }
        }
        assert!(n.links().is_empty());
        assert_eq!(n.stats().peers_banned, 1);
    }

    fn frame_version() -> u8 {
        crate::frame::VERSION
    }
}
