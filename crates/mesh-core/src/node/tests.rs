//! The composer's behaviour through its public inputs and outputs (fixtures in
//! `crate::test_support`).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::time::Duration;

use kademlia_core::{Instant, NodeId};
use p2pmesh_base::Identity;

use crate::event::{DirectId, DisconnectReason, Event, HelloError, Output, ServerInput};
use crate::frame::{self, Frame, Payload, Routed};
use crate::router::verify;
use crate::test_support::*;

#[test]
fn a_valid_hello_brings_the_link_up() {
    let mut n = node();
    let p = identity(1);
    let out = connect(&mut n, &p, Instant::from_millis(2));
    assert!(out.contains(&Output::Event(Event::PeerConnected { peer: p.id() })));
    assert_eq!(n.links(), alloc::vec![p.id()]);
}

#[test]
fn bad_hellos_close_the_link_with_a_reason() {
    let now = Instant::from_millis(2);
    let p = identity(1);
    let other = identity(2);
    let cases: [(Vec<u8>, HelloError); 4] = [
        (hello(&other, b"it", b"me"), HelloError::WrongKey),
        (
            hello(&p, b"it", b"someone-else"),
            HelloError::WrongFingerprint,
        ),
        (
            {
                let mut h = hello(&p, b"it", b"me");
                let last = h.len() - 1;
                h[last] ^= 1;
                h
            },
            HelloError::BadSignature,
        ),
        (alloc::vec![frame::VERSION, 99], HelloError::Missing),
    ];
    for (bytes, error) in cases {
        let mut n = node();
        inbound_attempt(&mut n, &p, now);
        n.handle_link_open(now, p.id(), b"me".to_vec(), b"it".to_vec());
        drain(&mut n);
        n.handle_message(now, p.id(), &bytes);
        let out = drain(&mut n);
        assert_eq!(
            disconnect_reason(&out, p.id()),
            Some(DisconnectReason::Hello(error)),
            "{error:?}"
        );
        assert!(n.links().is_empty());
        assert_eq!(n.stats().hello_failures, 1);
    }
}

#[test]
fn garbage_on_links_and_from_the_server_is_counted_not_fatal() {
    let (mut n, p, now) = linked_to_one();
    for bytes in [&[][..], &[1], &[1, 99], &[1, 3, 0xff, 0xff], &[7, 7, 7]] {
        n.handle_message(now, p.id(), bytes);
        n.handle_server(
            now,
            ServerInput::Relayed {
                from: p.id(),
                payload: bytes.to_vec(),
            },
        );
    }
    n.handle_message(now, identity(3).id(), &[crate::frame::VERSION, 7, 0]);
    drain(&mut n);
    let s = n.stats();
    assert!(s.dropped_malformed >= 8, "{s:?}");
    assert_eq!(s.dropped_unexpected, 1);
    assert_eq!(n.links(), alloc::vec![p.id()]);
}

#[test]
fn a_forged_routed_message_is_dropped() {
    let mut n = node();
    let p = identity(1);
    let ServerInput::Relayed { payload, .. } =
        relayed(&p, n.local_id(), &Payload::Data(b"x".to_vec()))
    else {
        unreachable!()
    };
    let Ok(Frame::Routed(mut r)) = Frame::decode(&payload) else {
        panic!("not routed");
    };
    r.body = postcard::to_allocvec(&Payload::Data(b"y".to_vec())).unwrap_or_default();
    n.handle_server(
        Instant::from_millis(2),
        ServerInput::Relayed {
            from: p.id(),
            payload: Frame::Routed(r).encode(),
        },
    );
    let out = drain(&mut n);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Event(Event::Message { .. })))
    );
    assert_eq!(n.stats().dropped_bad_signature, 1);
}

#[test]
fn an_unsigned_message_straight_from_a_link_neighbour_is_delivered() {
    let (mut n, p, now) = linked_to_one();
    let r = envelope(
        &p,
        n.local_id(),
        &Payload::Data(b"x".to_vec()),
        alloc::vec![p.id()],
        false,
    );
    n.handle_message(now, p.id(), &Frame::Routed(r).encode());
    let out = drain(&mut n);
    assert_eq!(messages(&out), 1);
    assert_eq!(n.stats().dropped_bad_signature, 0);
    // The ack goes straight back over the link, unsigned too.
    let acks = transmitted(&out, p.id());
    assert_eq!(acks.len(), 1);
    assert!(acks[0].signature.is_empty());
    assert_eq!(acks[0].path, alloc::vec![n.local_id()]);
    assert_eq!(
        postcard::from_bytes::<Payload>(&acks[0].body),
        Ok(Payload::Ack)
    );
}

#[test]
fn unsigned_routed_messages_not_straight_from_a_link_neighbour_are_dropped() {
    let now = Instant::from_millis(2);
    let p = identity(1);
    let q = identity(2);
    let data = Payload::Data(b"x".to_vec());
    let mut n = node();
    let me = n.local_id();
    connect(&mut n, &p, now);
    let cases: [Routed; 5] = [
        // src is not the link's peer (claims to come straight from q).
        envelope(&q, me, &data, alloc::vec![p.id()], false),
        // forwarded by the neighbour: the path is longer than [src].
        envelope(&q, me, &data, alloc::vec![q.id(), p.id()], false),
        envelope(&p, me, &data, alloc::vec![q.id(), p.id()], false),
        // straight from the neighbour, but a payload that must be signed.
        envelope(&p, me, &Payload::LinkRequest, alloc::vec![p.id()], false),
        envelope(
            &p,
            me,
            &Payload::Kad(b"k".to_vec()),
            alloc::vec![p.id()],
            false,
        ),
    ];
    for (i, r) in cases.into_iter().enumerate() {
        n.handle_message(now, p.id(), &Frame::Routed(r).encode());
        let out = drain(&mut n);
        assert_eq!(messages(&out), 0, "case {i}");
        assert_eq!(n.stats().dropped_bad_signature, i as u64 + 1, "case {i}");
    }
    // Through the server, even from the link's own peer with path [src].
    let r = envelope(&p, me, &data, alloc::vec![p.id()], false);
    n.handle_server(
        now,
        ServerInput::Relayed {
            from: p.id(),
            payload: Frame::Routed(r).encode(),
        },
    );
    let out = drain(&mut n);
    assert_eq!(messages(&out), 0);
    assert_eq!(n.stats().dropped_bad_signature, 6);
}

#[test]
fn routed_messages_to_non_neighbours_stay_signed() {
    let now = Instant::from_millis(2);
    let p = identity(1);
    let q = identity(2);
    let mut n = node();
    let me = n.local_id();
    connect(&mut n, &p, now);
    // A signed message from a non-neighbour, forwarded by p, is delivered.
    let r = envelope(
        &q,
        me,
        &Payload::Data(b"x".to_vec()),
        alloc::vec![q.id(), p.id()],
        true,
    );
    n.handle_message(now, p.id(), &Frame::Routed(r).encode());
    let out = drain(&mut n);
    assert_eq!(messages(&out), 1);
    assert_eq!(n.stats().dropped_bad_signature, 0);
    // Its ack leaves through p toward q: signed.
    let acks = transmitted(&out, p.id());
    assert_eq!(acks.len(), 1);
    let a = &acks[0];
    assert!(verify(
        &a.key,
        &Routed::signed_bytes(&a.src, &a.dst, a.id, a.sent_at, None, &a.body),
        &a.signature
    ));
    // Our own send: straight to the neighbour unsigned, toward a non-neighbour signed.
    let Ok(_) = n.send(now, p.id(), b"to p".to_vec()) else {
        panic!("send to p");
    };
    let sent = transmitted(&drain(&mut n), p.id());
    assert_eq!(sent.len(), 1);
    assert!(sent[0].signature.is_empty());
    let Ok(_) = n.send(now, q.id(), b"to q".to_vec()) else {
        panic!("send to q");
    };
    let out = drain(&mut n);
    let mut sent = transmitted(&out, p.id());
    sent.extend(out.iter().filter_map(|o| match o {
        Output::Signal { payload, .. } => match Frame::decode(payload) {
            Ok(Frame::Routed(r)) => Some(r),
            _ => None,
        },
        _ => None,
    }));
    assert_eq!(sent.len(), 1);
    let s = &sent[0];
    assert_eq!(s.dst, q.id());
    assert!(verify(
        &s.key,
        &Routed::signed_bytes(&s.src, &s.dst, s.id, s.sent_at, None, &s.body),
        &s.signature
    ));
}

#[test]
fn full_node_evicts_for_a_closer_peer_and_refuses_a_farther_one() {
    let mut n = node();
    let me = n.local_id();
    let now = Instant::from_millis(2);
    // Peers by bucket, closest first within each.
    let mut by_bucket: BTreeMap<usize, Vec<Identity>> = BTreeMap::new();
    for i in (1..3000).map(identity) {
        if let Some(b) = me.bucket_index(&i.id()) {
            by_bucket.entry(b).or_default().push(i);
        }
    }
    for v in by_bucket.values_mut() {
        v.sort_by_key(|i| i.id().distance(&me));
    }
    let count = |b: usize| by_bucket.get(&b).map_or(0, Vec::len);
    // A lowest bucket `l` with two peers in it and in the other close classes (spacing 2), and
    // long links above them.
    let l = (140..=152)
        .rev()
        .find(|&l| count(l) >= 2 && count(l + 2) >= 2 && count(l + 4) >= 1 && count(l + 6) >= 2)
        .unwrap_or(152);
    let pick = |b: usize, i: usize| by_bucket.get(&b).and_then(|v| v.get(i)).cloned();
    let (Some(nearest), Some(a), Some(b_near), Some(b_far), Some(c), Some(d), Some(e)) = (
        pick(l, 0),
        pick(l, 1),
        pick(l + 2, 0),
        pick(l + 2, 1),
        pick(l + 4, 0),
        pick(l + 6, 0),
        pick(l + 6, 1),
    ) else {
        panic!("not enough identities around bucket {l}");
    };
    // Each close class (buckets l.., l+2.., l+4..) gets one link, and two long links: full.
    for p in [&a, &b_near, &c, &d, &e] {
        connect(&mut n, p, now);
    }
    assert_eq!(n.links().len(), 5);
    // A peer of a covered class, farther than its link, is refused with alternatives.
    let out = connect(&mut n, &b_far, now);
    assert!(!out.iter().any(|o| matches!(o, Output::Connect { .. })));
    assert_eq!(n.stats().rejections, 1);
    // A peer closer than the link of its class gets in; the displaced link is evicted.
    let out = connect(&mut n, &nearest, now);
    assert!(out.contains(&Output::Event(Event::PeerConnected { peer: nearest.id() })));
    assert_eq!(n.links().len(), 5);
    let evicted: Vec<NodeId> = out
        .iter()
        .filter_map(|o| match o {
            Output::Disconnect {
                peer,
                reason: DisconnectReason::Evicted,
            } => Some(*peer),
            _ => None,
        })
        .collect();
    assert_eq!(evicted, alloc::vec![a.id()]);
    // The evicted one was told, with up to 3 alternatives, before the close.
    let told = out.iter().any(|o| match o {
        Output::Transmit { link, bytes } if *link == a.id() => {
            matches!(Frame::decode(bytes), Ok(Frame::Evict(alts)) if alts.len() <= 3)
        }
        _ => false,
    });
    assert!(told);
    // The other classes and the long links kept theirs.
    for p in [&b_near, &c, &d, &e] {
        assert!(n.links().contains(&p.id()));
    }
}

#[test]
fn lost_signaling_is_sent_again_and_duplicates_are_answered_not_repeated() {
    let mut n = node();
    let now = Instant::from_millis(2);
    // A lower id: we ask it (link request) to make the offer.
    let p = (1..50)
        .map(identity)
        .find(|i| i.id() < n.local_id())
        .unwrap_or_else(|| identity(1));
    n.handle_server(now, ServerInput::BootstrapPeers(alloc::vec![p.id()]));
    n.handle_timeout(now);
    let first = relayed_out(&drain(&mut n));
    assert_eq!(
        first.len(),
        1,
        "one link request, through the server (no link yet)"
    );
    let (to, request) = &first[0];
    assert_eq!(*to, p.id());
    assert_eq!(
        postcard::from_bytes::<Payload>(&request.body),
        Ok(Payload::LinkRequest)
    );
    // Nothing comes back: after `signal_retry` the same request (same id) goes again.
    let retry = n.config().signal_retry;
    n.handle_timeout(now + retry);
    let again = relayed_out(&drain(&mut n));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].1.id, request.id);
    assert_eq!(n.stats().signals_resent, 1);

    // The peer's offer arrives twice (it did not hear that we got it): the driver sees it once,
    // and the duplicate makes us send our side again instead.
    let offer = relayed(&p, n.local_id(), &Payload::Signal(b"offer".to_vec()));
    let later = now + retry + Duration::from_millis(100);
    n.handle_server(later, offer.clone());
    let out = drain(&mut n);
    let signals = |out: &[Output]| {
        out.iter()
            .filter(|o| matches!(o, Output::Event(Event::Signal { .. })))
            .count()
    };
    assert_eq!(signals(&out), 1);
    assert!(out.contains(&Output::Connect {
        peer: p.id(),
        initiator: false
    }));
    n.send_signal(later, p.id(), b"answer".to_vec());
    let answer = relayed_out(&drain(&mut n));
    assert_eq!(
        answer.len(),
        1,
        "answered through the server, as the offer came"
    );
    n.handle_server(later + retry, offer);
    let out = drain(&mut n);
    assert_eq!(signals(&out), 0);
    assert_eq!(n.stats().signal_duplicates, 1);
    let echoed: Vec<u64> = relayed_out(&out).iter().map(|(_, r)| r.id).collect();
    assert!(echoed.contains(&answer[0].1.id), "our answer went again");
}

#[test]
fn frames_before_the_hello_are_dropped_and_the_hello_is_sent_again() {
    let mut n = node();
    let now = Instant::from_millis(2);
    let p = identity(1);
    inbound_attempt(&mut n, &p, now);
    n.handle_link_open(now, p.id(), b"me".to_vec(), b"it".to_vec());
    let hellos = |out: &[Output]| {
        out.iter()
            .filter(|o| {
                matches!(o, Output::Transmit { link, bytes }
                    if *link == p.id() && matches!(Frame::decode(bytes), Ok(Frame::Hello(_))))
            })
            .count()
    };
    assert_eq!(hellos(&drain(&mut n)), 1);
    // The peer is up (our hello reached it) but its hello was lost: its next frame is dropped,
    // and the link stays.
    n.handle_message(now, p.id(), &Frame::Ping(7).encode());
    let out = drain(&mut n);
    assert_eq!(disconnect_reason(&out, p.id()), None);
    assert_eq!(n.link_attempts(), alloc::vec![p.id()]);
    // Our hello goes again until the peer's arrives; then the link is up.
    let later = now + n.config().signal_retry;
    n.handle_timeout(later);
    assert!(hellos(&drain(&mut n)) >= 1);
    assert_eq!(n.stats().hellos_resent, 1);
    n.handle_message(later, p.id(), &hello(&p, b"it", b"me"));
    assert_eq!(n.links(), alloc::vec![p.id()]);
}

#[test]
fn frames_after_an_early_hello_are_kept_until_it_verifies() {
    // The peer's channel opened first: its hello and next frames arrive before the driver
    // reports the link open here (the browser delivers messages before the open event is
    // handled). They are handled once the hello verifies, not dropped.
    let mut n = node();
    let now = Instant::from_millis(2);
    let p = identity(1);
    inbound_attempt(&mut n, &p, now);
    let _ = drain(&mut n);
    n.handle_message(now, p.id(), &hello(&p, b"it", b"me"));
    n.handle_message(now, p.id(), &Frame::Ping(7).encode());
    let out = drain(&mut n);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Transmit { bytes, .. }
            if matches!(Frame::decode(bytes), Ok(Frame::Pong(_))))),
        "nothing is answered before the link is up"
    );
    n.handle_link_open(now, p.id(), b"me".to_vec(), b"it".to_vec());
    let out = drain(&mut n);
    assert_eq!(n.links(), alloc::vec![p.id()]);
    let pongs: Vec<u64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { link, bytes } if *link == p.id() => match Frame::decode(bytes) {
                Ok(Frame::Pong(n)) => Some(n),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        pongs,
        alloc::vec![7],
        "the early ping is answered once the link is up"
    );
    assert_eq!(n.stats().dropped_unexpected, 0);
}

#[test]
fn lower_id_initiates() {
    let mut n = node();
    let now = Instant::from_millis(2);
    let p = (1..50)
        .map(identity)
        .find(|i| i.id() > n.local_id())
        .unwrap_or_else(|| identity(1));
    n.handle_server(now, ServerInput::BootstrapPeers(alloc::vec![p.id()]));
    n.handle_timeout(now);
    let out = drain(&mut n);
    if n.local_id() < p.id() {
        assert!(out.contains(&Output::Connect {
            peer: p.id(),
            initiator: true
        }));
    }
    // An offer from a higher id is not accepted (the lower id offers).
    let q = (1..50)
        .map(identity)
        .find(|i| i.id() > n.local_id() && i.id() != p.id())
        .unwrap_or_else(|| identity(2));
    n.handle_server(
        now,
        relayed(&q, n.local_id(), &Payload::Signal(b"offer".to_vec())),
    );
    let out = drain(&mut n);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Connect { peer, .. } if *peer == q.id()))
    );
}

#[test]
fn a_link_that_does_not_open_times_out() {
    let mut n = node();
    let now = Instant::from_millis(2);
    let p = identity(1);
    inbound_attempt(&mut n, &p, now);
    let later = now + n.config().link_open_timeout;
    n.handle_timeout(later);
    let out = drain(&mut n);
    assert!(out.contains(&Output::Event(Event::PeerTimedOut { peer: p.id() })));
    assert_eq!(
        disconnect_reason(&out, p.id()),
        Some(DisconnectReason::Timeout)
    );
}

#[test]
fn large_frames_are_chunked_on_the_wire() {
    let (mut n, p, now) = linked_to_one();
    let data = alloc::vec![7u8; 200 * 1024];
    n.send(now, p.id(), data).unwrap_or(DirectId(0));
    let out = drain(&mut n);
    let parts: Vec<&Vec<u8>> = out
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { link, bytes } if *link == p.id() => Some(bytes),
            _ => None,
        })
        .collect();
    assert!(parts.len() >= 4);
    assert!(parts.iter().all(|b| b.len() <= n.config().max_frame_bytes));
}

// ---------------------------------------------------------------- issue 14: routing hardening

/// A routed envelope from `from` to `dst`, signed, with this path, route, hop budget and payload.
fn routed(
    from: &Identity,
    dst: NodeId,
    payload: &Payload,
    path: Vec<NodeId>,
    route: Vec<NodeId>,
    hops_left: u8,
) -> Routed {
    let mut r = envelope(from, dst, payload, path, true);
    r.route = route;
    r.hops_left = hops_left;
    r
}

/// The `Output::Signal` payload sizes in `out`.
fn signals(out: &[Output]) -> Vec<usize> {
    out.iter()
        .filter_map(|o| match o {
            Output::Signal { payload, .. } => Some(payload.len()),
            _ => None,
        })
        .collect()
}

/// A node id near `of` (the same but for the last byte, XORed with `b`).
fn near(of: NodeId, b: u8) -> NodeId {
    let mut bytes = *of.as_bytes();
    bytes[19] ^= b;
    NodeId::from_bytes(bytes)
}

#[test]
fn a_linked_peers_oversized_frame_is_not_handed_to_the_server() {
    let (mut n, p, now) = linked_to_one();
    // A frame of 100 KB whose hop budget runs out here, for a node we have no link to: it used to
    // go to the server, which closes a connection sending over 64 KiB (1009).
    let big = Payload::Data(alloc::vec![7; 100 * 1024]);
    let r = routed(
        &p,
        identity(5).id(),
        &big,
        alloc::vec![p.id()],
        Vec::new(),
        0,
    );
    n.handle_message(now, p.id(), &Frame::Routed(r).encode());
    let out = drain(&mut n);
    assert!(
        signals(&out)
            .iter()
            .all(|len| *len <= n.config().max_signal_bytes),
        "{:?}",
        signals(&out)
    );
    assert_eq!(n.stats().dropped_server_oversized, 1);
    // A small one still goes (the server is the last resort).
    let small = routed(
        &p,
        identity(5).id(),
        &Payload::Data(b"x".to_vec()),
        alloc::vec![p.id()],
        Vec::new(),
        0,
    );
    n.handle_message(now, p.id(), &Frame::Routed(small).encode());
    assert_eq!(signals(&drain(&mut n)).len(), 1);
}

#[test]
fn relays_of_others_frames_through_the_server_are_rate_limited() {
    let (mut n, p, now) = linked_to_one();
    let burst = n.config().server_relay_burst as usize;
    let rate = n.config().server_relay_rate as usize;
    let flood = |n: &mut crate::Node, at: Instant| {
        let mut sent = 0;
        for i in 0..100u64 {
            let mut r = routed(
                &p,
                identity(100 + i).id(),
                &Payload::Data(b"x".to_vec()),
                alloc::vec![p.id()],
                Vec::new(),
                0,
            );
            r.id = i;
            r.signature = p
                .sign(&Routed::signed_bytes(
                    &r.src, &r.dst, r.id, r.sent_at, None, &r.body,
                ))
                .to_vec();
            n.handle_message(at, p.id(), &Frame::Routed(r).encode());
            sent += signals(&drain(n)).len();
        }
        sent
    };
    // A burst of 100 exhausted frames from a linked peer: the server sees `server_relay_burst`.
    assert_eq!(flood(&mut n, now), burst);
    assert_eq!(n.stats().dropped_relay_rate, (100 - burst) as u64);
    // A second later, `server_relay_rate` more.
    assert_eq!(flood(&mut n, now + Duration::from_secs(1)), rate);
    // Our own messages are not counted: with no link left, ours still goes through the server.
    n.handle_link_closed(now + Duration::from_secs(1), p.id());
    drain(&mut n);
    let _ = n.send(
        now + Duration::from_secs(1),
        identity(61).id(),
        b"mine".to_vec(),
    );
    assert_eq!(signals(&drain(&mut n)).len(), 1);
}

#[test]
fn a_direct_message_too_large_for_the_server_stays_on_the_mesh() {
    let (mut n, p, mut now) = linked_to_one();
    let q = identity(2);
    let data = alloc::vec![1u8; 60 * 1024];
    let Ok(_) = n.send(now, q.id(), data) else {
        panic!("send");
    };
    let mut out = drain(&mut n);
    for _ in 1..n.config().direct_attempts {
        now += n.config().direct_retry_timeout;
        n.handle_timeout(now);
        out.extend(drain(&mut n));
    }
    assert!(
        signals(&out).is_empty(),
        "no attempt went through the server: {:?}",
        signals(&out)
    );
    let attempts = transmitted(&out, p.id())
        .iter()
        .filter(|r| r.dst == q.id())
        .count();
    assert_eq!(
        attempts,
        n.config().direct_attempts as usize,
        "every attempt went over the mesh"
    );
}

#[test]
fn a_frame_bouncing_over_one_link_is_refused() {
    let now = Instant::from_millis(2);
    let mut n = node();
    let me = n.local_id();
    let attacker = identity(1);
    let b = identity(2);
    connect(&mut n, &attacker, now);
    connect(&mut n, &b, now);
    drain(&mut n);
    let far = identity(3).id();
    let data = Payload::Data(alloc::vec![0; 1000]);
    // One frame whose route makes n and b pass it back and forth 30 times over their one link.
    let mut bounce = Vec::new();
    for _ in 0..15 {
        bounce.push(me);
        bounce.push(b.id());
    }
    bounce.push(far);
    // And a route that does not name n at all (n is no party to it).
    let stranger = alloc::vec![b.id(), far];
    for route in [bounce, stranger] {
        let r = routed(&attacker, far, &data, alloc::vec![attacker.id()], route, 32);
        n.handle_message(now, attacker.id(), &Frame::Routed(r).encode());
        let out = drain(&mut n);
        assert!(transmitted(&out, b.id()).is_empty(), "not forwarded to b");
    }
    assert_eq!(n.stats().dropped_bad_route, 2);
    assert_eq!(n.stats().routed_forwarded, 0);
    // An honest route (n next, then b, ending at the addressee) is followed.
    let r = routed(
        &attacker,
        far,
        &data,
        alloc::vec![attacker.id()],
        alloc::vec![me, b.id(), far],
        32,
    );
    n.handle_message(now, attacker.id(), &Frame::Routed(r).encode());
    let sent = transmitted(&drain(&mut n), b.id());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].route, alloc::vec![b.id(), far]);
}

#[test]
fn a_peer_claiming_made_up_neighbours_gets_them_neither_dialled_nor_handed_out() {
    let (mut n, p, now) = linked_to_one();
    let me = n.local_id();
    let made_up: Vec<NodeId> = (1..=8).map(|b| near(me, b)).collect();
    let claims = frame::Neighbors {
        links: made_up.clone(),
        ..frame::Neighbors::default()
    };
    n.handle_message(now, p.id(), &Frame::Neighbors(claims).encode());
    // Maintenance passes: nothing is dialled toward a made-up id.
    let mut out = Vec::new();
    for s in 1..=30 {
        n.handle_timeout(now + Duration::from_secs(s));
        out.extend(drain(&mut n));
    }
    // A dial is a `Connect`, or a link request or offer routed to the peer.
    let signaling = |bytes: &[u8]| match Frame::decode(bytes) {
        Ok(Frame::Routed(r)) => postcard::from_bytes::<Payload>(&r.body)
            .is_ok_and(|p| p.is_signaling())
            .then_some(r.dst),
        _ => None,
    };
    let dialled: Vec<NodeId> = out
        .iter()
        .filter_map(|o| match o {
            Output::Connect { peer, .. } => Some(*peer),
            Output::Signal { payload, .. } => signaling(payload),
            Output::Transmit { bytes, .. } => signaling(bytes),
            _ => None,
        })
        .collect();
    assert!(dialled.iter().all(|d| !made_up.contains(d)), "{dialled:?}");
    // They were asked to prove themselves, and could not: not in the peer book.
    assert!(n.stats().candidates_checked >= made_up.len() as u64);
    assert!(made_up.iter().all(|m| !n.topology.book.contains(m)));
    // A stranger's probe for ids near us is answered without them.
    let q = identity(7);
    n.handle_server(
        now + Duration::from_secs(31),
        relayed(&q, me, &Payload::FindNode),
    );
    let answers = relayed_out(&drain(&mut n));
    assert_eq!(answers.len(), 1);
    let Ok(Payload::Nodes { nodes, .. }) = postcard::from_bytes::<Payload>(&answers[0].1.body)
    else {
        panic!("not an answer");
    };
    assert!(nodes.iter().all(|x| !made_up.contains(x)), "{nodes:?}");
}

#[test]
fn honest_entries_are_not_evicted_by_a_strangers_claims() {
    let mut n = node();
    let me = n.local_id();
    let now = Instant::from_millis(2);
    let p = identity(1);
    connect(&mut n, &p, now);
    drain(&mut n);
    // The server introduces 15 honest peers of one bucket (the farthest half of the id space; with
    // the link's peer, perhaps, the bucket is full).
    let honest: Vec<NodeId> = (0..15u8)
        .map(|i| {
            let mut b = *me.as_bytes();
            b[0] ^= 0x80;
            b[19] = i;
            NodeId::from_bytes(b)
        })
        .collect();
    n.handle_server(now, ServerInput::BootstrapPeers(honest.clone()));
    drain(&mut n);
    // A linked peer claims 64 made-up neighbours in that bucket, then evicts us with 64 more.
    let fake = |salt: u8| -> Vec<NodeId> {
        (0..64u8)
            .map(|i| {
                let mut b = *me.as_bytes();
                b[0] ^= 0x80;
                b[18] = salt;
                b[19] = i;
                NodeId::from_bytes(b)
            })
            .collect()
    };
    let later = now + Duration::from_secs(1);
    let claims = frame::Neighbors {
        links: fake(1),
        ..frame::Neighbors::default()
    };
    n.handle_message(later, p.id(), &Frame::Neighbors(claims).encode());
    n.handle_message(later, p.id(), &Frame::Evict(fake(2)).encode());
    drain(&mut n);
    for h in &honest {
        assert!(n.topology.book.contains(h), "honest {h:?} evicted");
    }
}

#[test]
fn routed_traffic_still_arrives_when_a_neighbour_lies_about_its_links() {
    let now = Instant::from_millis(2);
    let mut n = node();
    // Two links; the liar has the lower id, so that on equal claims it is the first choice.
    let mut pair: Vec<Identity> = (1..4).map(identity).collect();
    pair.sort_by_key(Identity::id);
    let (liar, honest) = (pair[0].clone(), pair[1].clone());
    let dst = pair[2].id();
    connect(&mut n, &liar, now);
    connect(&mut n, &honest, now);
    drain(&mut n);
    // Both claim a link to dst; only the honest one has it (the liar drops what it gets).
    for p in [&liar, &honest] {
        let claims = frame::Neighbors {
            links: alloc::vec![dst],
            ..frame::Neighbors::default()
        };
        n.handle_message(now, p.id(), &Frame::Neighbors(claims).encode());
    }
    drain(&mut n);
    let Ok(id) = n.send(now, dst, b"hello".to_vec()) else {
        panic!("send");
    };
    let out = drain(&mut n);
    // The first attempt reaches the honest neighbour at once, not only after a retry.
    let via_honest: Vec<Routed> = transmitted(&out, honest.id())
        .into_iter()
        .filter(|r| r.dst == dst && r.id == id.0)
        .collect();
    assert_eq!(via_honest.len(), 1);
    assert!(verify(
        &via_honest[0].key,
        &Routed::signed_bytes(
            &via_honest[0].src,
            &dst,
            id.0,
            via_honest[0].sent_at,
            None,
            &via_honest[0].body
        ),
        &via_honest[0].signature
    ));
    assert_eq!(n.stats().direct_retries, 0);
}

#[test]
fn a_probe_answer_from_a_stranger_is_ignored() {
    let (mut n, p, now) = linked_to_one();
    let target = identity(40).id();
    let lookup = n.find_node(now, target);
    let probes = transmitted(&drain(&mut n), p.id());
    assert!(!probes.is_empty());
    // Probe ids are not the node's sequential ids.
    assert!(probes.iter().all(|r| r.id != lookup.0 + 1));
    // A stranger, through the server, answers the first probe naming the target: ignored.
    let stranger = identity(9);
    let body = postcard::to_allocvec(&Payload::Nodes {
        probe_hops: 1,
        nodes: alloc::vec![target],
    })
    .unwrap_or_default();
    let me = n.local_id();
    let mut r = envelope(
        &stranger,
        me,
        &Payload::Ack,
        alloc::vec![stranger.id()],
        false,
    );
    r.id = probes[0].id;
    r.body = body;
    r.signature = stranger
        .sign(&Routed::signed_bytes(
            &r.src, &me, r.id, r.sent_at, None, &r.body,
        ))
        .to_vec();
    n.handle_server(
        now,
        ServerInput::Relayed {
            from: stranger.id(),
            payload: Frame::Routed(r).encode(),
        },
    );
    let out = drain(&mut n);
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Event(Event::LookupFinished { .. }))),
        "the lookup did not take the stranger's word"
    );
    assert_eq!(n.stats().dropped_probe_answers, 1);
}

#[test]
fn a_named_neighbour_enters_the_peer_book_once_it_answers_its_check() {
    let (mut n, p, now) = linked_to_one();
    let me = n.local_id();
    let q = identity(5);
    let claims = frame::Neighbors {
        links: alloc::vec![q.id()],
        ..frame::Neighbors::default()
    };
    n.handle_message(now, p.id(), &Frame::Neighbors(claims).encode());
    assert!(!n.topology.book.contains(&q.id()));
    let later = now + Duration::from_secs(2);
    n.handle_timeout(later);
    let checks: Vec<Routed> = transmitted(&drain(&mut n), p.id())
        .into_iter()
        .filter(|r| r.dst == q.id())
        .collect();
    assert_eq!(checks.len(), 1);
    assert_eq!(
        postcard::from_bytes::<Payload>(&checks[0].body),
        Ok(Payload::FindNode)
    );
    // q answers along the reversed path, signed: proven.
    let mut answer = routed(
        &q,
        me,
        &Payload::Nodes {
            probe_hops: 2,
            nodes: Vec::new(),
        },
        alloc::vec![q.id(), p.id()],
        alloc::vec![me],
        8,
    );
    answer.id = checks[0].id;
    answer.signature = q
        .sign(&Routed::signed_bytes(
            &q.id(),
            &me,
            answer.id,
            answer.sent_at,
            None,
            &answer.body,
        ))
        .to_vec();
    n.handle_message(later, p.id(), &Frame::Routed(answer).encode());
    drain(&mut n);
    assert!(n.topology.book.contains(&q.id()));
    assert_eq!(n.stats().dropped_probe_answers, 0);
}

#[test]
fn a_node_whose_only_link_drops_its_signaling_still_reaches_the_server() {
    // Our only link is a black hole (an attacker drops what it should forward): a link attempt
    // routed through it would never be heard of, and we would never make a second link. The last
    // resend of the attempt's signaling goes through the signaling server.
    let (mut n, black_hole, now) = linked_to_one();
    let me = n.local_id();
    let q = (2..80)
        .map(identity)
        .find(|i| i.id() < me)
        .unwrap_or_else(|| identity(2));
    n.handle_server(now, ServerInput::BootstrapPeers(alloc::vec![q.id()]));
    // Where the attempt's signaling to `q` goes: over the link, or to the server.
    let to_q = |out: &[Output]| -> (usize, usize) {
        let mut over_link = 0;
        for o in out {
            if let Output::Transmit { link, bytes } = o
                && *link == black_hole.id()
                && let Ok(Frame::Routed(r)) = Frame::decode(bytes)
                && r.dst == q.id()
                && postcard::from_bytes::<Payload>(&r.body).is_ok_and(|p| p.is_signaling())
            {
                over_link += 1;
            }
        }
        let via_server = relayed_out(out)
            .iter()
            .filter(|(to, _)| *to == q.id())
            .count();
        (over_link, via_server)
    };
    let mut at = now;
    let mut sends = Vec::new();
    while at <= now + n.config().link_open_timeout {
        n.handle_timeout(at);
        let out = drain(&mut n);
        let (link, server) = to_q(&out);
        if link + server > 0 {
            sends.push((at, link, server));
        }
        at += Duration::from_millis(250);
    }
    assert!(
        sends
            .first()
            .is_some_and(|&(_, link, server)| link == 1 && server == 0),
        "first through the mesh: {sends:?}"
    );
    assert!(
        sends.iter().any(|&(_, _, server)| server == 1),
        "and a resend through the server: {sends:?}"
    );
}

#[test]
fn a_link_that_comes_up_measures_its_round_trip_with_one_ping() {
    let mut n = node();
    let now = Instant::from_millis(2);
    let p = identity(1);
    inbound_attempt(&mut n, &p, now);
    n.handle_link_open(now, p.id(), b"me".to_vec(), b"it".to_vec());
    let _ = drain(&mut n);
    n.handle_message(now, p.id(), &hello(&p, b"it", b"me"));
    assert_eq!(n.links(), alloc::vec![p.id()]);
    let pings: Vec<u64> = drain(&mut n)
        .iter()
        .filter_map(|o| match o {
            Output::Transmit { link, bytes } if *link == p.id() => match Frame::decode(bytes) {
                Ok(Frame::Ping(nonce)) => Some(nonce),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(pings.len(), 1, "one ping when the link comes up");
    // A pong that answers another ping measures nothing; the right one gives the round trip.
    let later = now + Duration::from_millis(40);
    n.handle_message(later, p.id(), &Frame::Pong(pings[0] ^ 1).encode());
    assert_eq!(n.gossip().link_rtt(&p.id()), None);
    n.handle_message(later, p.id(), &Frame::Pong(pings[0]).encode());
    assert_eq!(
        n.gossip().link_rtt(&p.id()),
        Some(Duration::from_millis(40))
    );
    // It is measured once: a second pong with the same number is not a sample.
    n.handle_message(
        later + Duration::from_millis(500),
        p.id(),
        &Frame::Pong(pings[0]).encode(),
    );
    assert_eq!(
        n.gossip().link_rtt(&p.id()),
        Some(Duration::from_millis(40))
    );
}

/// A signature told: (public key, bytes signed, signature).
type Told = ([u8; 32], Vec<u8>, [u8; 64]);

std::thread_local! {
    /// The signatures told to [`note_signed`] in this thread.
    static SIGNED: core::cell::RefCell<Vec<Told>> = const { core::cell::RefCell::new(Vec::new()) };
}

fn note_signed(public_key: &[u8; 32], bytes: &[u8], signature: &[u8; 64]) {
    SIGNED.with(|s| {
        s.borrow_mut()
            .push((*public_key, bytes.to_vec(), *signature))
    });
}

/// A node tells its check's `signed` function of each hello and routed message it signs, with the
/// exact bytes signed (a simulator's memo takes them as valid): every one told verifies, and they
/// are the signatures that went out.
#[test]
fn signatures_made_are_told_with_their_bytes() {
    let check = crate::SignatureCheck::default().with_signed(note_signed);
    let mut n = crate::Node::with_signature_check([9; 32], crate::Config::default(), 7, check);
    let me = Identity::from_secret_bytes(&[9; 32]);
    n.join(Instant::from_millis(1));
    drain(&mut n);
    let p = identity(1);
    let now = Instant::from_millis(2);
    let out = connect(&mut n, &p, now);
    // A direct message to a stranger goes out over p, sealed (its first hop is not its destination).
    n.send(now, identity(2).id(), b"x".to_vec())
        .expect("a route over p");
    let mut out = out;
    out.extend(drain(&mut n));
    let told = SIGNED.with(|s| s.take());
    assert!(told.len() >= 2, "{} told", told.len());
    for (key, bytes, signature) in &told {
        assert_eq!(*key, me.public_key());
        assert!(p2pmesh_base::verify(key, bytes, signature));
    }
    let sent_hello = out.iter().find_map(|o| match o {
        Output::Transmit { bytes, .. } => match Frame::decode(bytes) {
            Ok(Frame::Hello(h)) => Some(h.signature),
            _ => None,
        },
        _ => None,
    });
    let routed = transmitted(&out, p.id());
    assert!(sent_hello.is_some() && !routed.is_empty());
    for signature in sent_hello
        .into_iter()
        .chain(routed.into_iter().map(|r| r.signature))
    {
        assert!(
            told.iter()
                .any(|(_, _, s)| s.as_slice() == signature.as_slice())
        );
    }
}

/// The server says a peer left while our link to it is being made. In signalling, the attempt is
/// dropped (its slot freed). With the data channel open, it stays: our hello is out, so the peer may
/// already count the link up, and the server's word may only mean that the peer's server died and
/// the peer is failing over to another (test-mesh's `server-failover` saw exactly this cut a live
/// link). The peer's hello then brings it up; without one it times out as any attempt does.
#[test]
fn a_peer_the_server_lost_keeps_a_link_whose_channel_is_open() {
    let p = identity(1);
    let now = Instant::from_millis(2);

    let mut n = node();
    inbound_attempt(&mut n, &p, now);
    n.handle_server(now, ServerInput::PeerLeft(p.id()));
    let out = drain(&mut n);
    assert_eq!(
        disconnect_reason(&out, p.id()),
        Some(DisconnectReason::PeerLeft),
        "an attempt still in signalling is dropped"
    );

    let mut n = node();
    inbound_attempt(&mut n, &p, now);
    n.handle_link_open(now, p.id(), b"me".to_vec(), b"it".to_vec());
    drain(&mut n);
    n.handle_server(now, ServerInput::PeerLeft(p.id()));
    let out = drain(&mut n);
    assert_eq!(disconnect_reason(&out, p.id()), None, "{out:?}");
    n.handle_message(now, p.id(), &hello(&p, b"it", b"me"));
    let out = drain(&mut n);
    assert!(out.contains(&Output::Event(Event::PeerConnected { peer: p.id() })));
    assert_eq!(n.links(), alloc::vec![p.id()]);

    let mut n = node();
    inbound_attempt(&mut n, &p, now);
    n.handle_link_open(now, p.id(), b"me".to_vec(), b"it".to_vec());
    n.handle_server(now, ServerInput::PeerLeft(p.id()));
    n.handle_timeout(now + n.config().link_open_timeout);
    let out = drain(&mut n);
    assert!(
        n.links().is_empty(),
        "no hello: the attempt still times out"
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Disconnect { peer, .. } if *peer == p.id()))
    );
}

/// A link is told our neighbor lists again only when they changed (the node keeps a digest of what
/// it last told each link).
#[test]
fn neighbor_lists_are_told_again_only_when_they_change() {
    let now = Instant::from_millis(2);
    let mut n = node();
    let (a, b, c) = (identity(1), identity(2), identity(3));
    // The lists each peer was told in `out`.
    let told = |out: &[Output], to: NodeId| -> Vec<frame::Neighbors> {
        frames_to(out, to)
            .into_iter()
            .filter_map(|f| match f {
                Frame::Neighbors(lists) => Some(lists),
                _ => None,
            })
            .collect()
    };
    let mut out = connect(&mut n, &a, now);
    out.extend(connect(&mut n, &b, now));
    n.send_neighbors(now);
    out.extend(drain(&mut n));
    assert_eq!(
        told(&out, a.id()).last().map(|l| l.links.clone()),
        Some(alloc::vec![b.id()])
    );
    // Nothing changed: nothing is told.
    n.send_neighbors(now);
    let out = drain(&mut n);
    assert!(told(&out, a.id()).is_empty() && told(&out, b.id()).is_empty());
    // A third link: both others hear of it, once.
    let mut out = connect(&mut n, &c, now);
    n.send_neighbors(now);
    out.extend(drain(&mut n));
    let to_a = told(&out, a.id());
    assert_eq!(to_a.len(), 1, "{to_a:?}");
    assert!(to_a[0].links.contains(&c.id()) && to_a[0].links.contains(&b.id()));
    n.send_neighbors(now);
    assert!(told(&drain(&mut n), a.id()).is_empty());
}
