//! Per-hop reliability: retries with backoff, ACKs, rerouting when a link goes, GRAFT answers.

use super::*;

/// A node with one link, to the returned peer, that has just pushed the returned message over it.
fn one_push() -> (Node, NodeId, MessageId) {
    let mut a = node(1);
    let b = identity(2).id();
    a.handle_peer_up(t0(), b);
    let id = published(&mut a, b"x");
    (a, b, id)
}

#[test]
fn unacknowledged_push_is_retried_with_backoff_then_given_up() {
    let (mut a, b, id) = one_push();
    let mut retries_at = Vec::new();
    while let Some(at) = a.poll_timeout() {
        if at > t0() + Duration::from_secs(59) {
            break;
        }
        a.handle_timeout(at);
        for output in outputs(&mut a) {
            match output {
                Output::Transmit { to, bytes } => {
                    assert_eq!(
                        (to, wire::decode(&bytes)),
                        (
                            b,
                            Ok(Frame::Gossip(match wire::decode(&bytes) {
                                Ok(Frame::Gossip(m)) => m,
                                other => panic!("a retransmission expected, got {other:?}"),
                            },))
                        )
                    );
                    retries_at.push((at - t0()).as_millis());
                }
                Output::Event(event) => {
                    assert_eq!(event, Event::AckTimeout { id, peer: b });
                }
            }
        }
    }
    assert_eq!(retries_at, vec![500, 1_500, 3_500, 7_500, 15_500]);
    assert_eq!(a.stats().payload_retries, 5);
    assert_eq!(a.stats().retries_exhausted, 1);
    assert_eq!(a.stats().payload_transmissions(), 6);
}

#[test]
fn ack_stops_retries() {
    let (mut a, b, id) = one_push();
    ack(&mut a, t0() + ms(50), b, id);
    a.handle_timeout(t0() + Duration::from_secs(30));
    assert_eq!(a.stats().payload_retries, 0);
    assert_eq!(a.stats().acks_received, 1);
}

#[test]
fn a_push_lost_with_its_link_goes_over_the_other_links() {
    let (mut node, peers) = linked(Config::default());
    let id = published(&mut node, b"x");
    // peers[1] acknowledges; peers[0] never does and its link fails.
    ack(&mut node, t0() + ms(30), peers[1], id);
    node.handle_peer_down(t0() + ms(100), peers[0]);
    node.handle_peer_down(t0() + ms(100), peers[2]);
    let rerouted = sends(&mut node);
    assert!(
        rerouted.is_empty(),
        "the only remaining link already acknowledged: {rerouted:?}"
    );

    let (mut node, peers) = linked(Config::default());
    let id = published(&mut node, b"y");
    ack(&mut node, t0() + ms(30), peers[1], id);
    ack(&mut node, t0() + ms(30), peers[2], id);
    let extra = identity(20).id();
    node.handle_peer_up(t0() + ms(40), extra);
    node.handle_peer_down(t0() + ms(100), peers[0]);
    let rerouted = sends(&mut node);
    assert_eq!(rerouted.len(), 1);
    assert_eq!(rerouted[0].0, extra);
    assert!(matches!(&rerouted[0].1, Frame::Gossip(m) if m.id == id));
    assert_eq!(node.stats().payload_reroutes, 1);
}

#[test]
fn an_announcement_without_its_message_is_pulled_by_graft() {
    let (mut node, peers) = linked(Config::default());
    let message = signed(&identity(10), 1, t0(), b"x");
    let announce = Frame::IHave(vec![Announce {
        id: message.id,
        hops: 2,
    }]);
    node.handle_message(t0(), peers[0], &wire::encode(&announce));
    node.handle_message(t0() + ms(10), peers[1], &wire::encode(&announce));
    assert_eq!(node.poll_timeout(), Some(t0() + Duration::from_secs(1)));
    node.handle_timeout(t0() + Duration::from_secs(1));
    assert_eq!(
        sends(&mut node),
        vec![(peers[0], Frame::Graft(vec![message.id]))]
    );
    // No answer: the next announcer is asked.
    node.handle_timeout(t0() + ms(1_500));
    assert_eq!(
        sends(&mut node),
        vec![(peers[1], Frame::Graft(vec![message.id]))]
    );
    let mut answer = message.clone();
    answer.hops = 2;
    node.handle_message(t0() + ms(1_600), peers[1], &gossip(&answer));
    assert_eq!(delivered(&outputs(&mut node)), vec![message.id]);
    node.handle_timeout(t0() + ms(5_000));
    assert_eq!(node.stats().grafts_sent, 2);
}

#[test]
fn a_graft_is_answered_from_the_cache() {
    let (mut node, peers) = linked(Config::default());
    let id = published(&mut node, b"x");
    let unknown = MessageId::from_bytes([7; 20]);
    node.handle_message(
        t0() + ms(5),
        peers[0],
        &wire::encode(&Frame::Graft(vec![id, unknown])),
    );
    let answers = sends(&mut node);
    assert_eq!(answers.len(), 1);
    assert!(matches!(&answers[0], (to, Frame::Gossip(m)) if *to == peers[0] && m.id == id));
    assert_eq!(node.stats().payload_graft_responses, 1);
    assert_eq!(node.stats().graft_misses, 1);
}

#[test]
fn an_own_message_with_no_tree_link_yet_is_pushed_not_only_announced() {
    // A node that just joined: one link, no tree through it yet (on rooted trees a new link is
    // lazy). An announcement is not tracked and dies with its link; the push is acknowledged.
    let mut node = node_with(
        1,
        Config {
            rooted_tree: true,
            ..Config::default()
        },
    );
    let peer = identity(10).id();
    node.handle_peer_up(t0(), peer);
    let _ = outputs(&mut node);
    let id = node.publish(t0(), TOPIC, b"hello".to_vec()).expect("valid");
    let pushed: Vec<NodeId> = sends(&mut node)
        .into_iter()
        .filter(|(_, f)| matches!(f, Frame::Gossip(m) if m.id == id))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(pushed, vec![peer]);
    assert_eq!(node.stats().payload_sends, 1);
}

#[test]
fn a_push_stranded_by_its_only_link_goes_to_the_next_link() {
    let mut node = node(1);
    let first = identity(10).id();
    node.handle_peer_up(t0(), first);
    let id = published(&mut node, b"x");
    // The only link fails before acknowledging: no link can take the message now.
    node.handle_peer_down(t0() + ms(100), first);
    assert!(sends(&mut node).is_empty());
    // The next link that comes up gets it, tracked like any push.
    let next = identity(11).id();
    node.handle_peer_up(t0() + ms(200), next);
    let pushed: Vec<NodeId> = sends(&mut node)
        .into_iter()
        .filter(|(_, f)| matches!(f, Frame::Gossip(m) if m.id == id))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(pushed, vec![next]);
    ack(&mut node, t0() + ms(230), next, id);
    assert_eq!(node.stats().acks_received, 1);
    // Only once: a later link does not get it again.
    node.handle_peer_up(t0() + ms(300), identity(12).id());
    assert!(
        !sends(&mut node)
            .iter()
            .any(|(_, f)| matches!(f, Frame::Gossip(m) if m.id == id))
    );
}

#[test]
fn a_new_link_hears_of_recent_messages_it_may_lack_and_pulls_them() {
    let config = Config {
        catch_up_window: Duration::from_secs(5),
        ..Config::default()
    };
    let mut a = node_with(1, config.clone());
    let first = identity(10).id();
    a.handle_peer_up(t0(), first);
    let old = a.publish(t0(), TOPIC, b"old".to_vec()).expect("valid");
    let recent = a
        .publish(t0() + ms(4_000), TOPIC, b"recent".to_vec())
        .expect("valid");
    let _ = outputs(&mut a);
    // A link that comes up 6 s after the first message and 2 s after the second hears of the
    // second only (the first is older than the window), at the next flush.
    let mut b = node_with(2, config);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    let at = t0() + ms(6_000);
    a.handle_peer_up(at, b_id);
    b.handle_peer_up(at, a_id);
    a.handle_timeout(at + Duration::from_secs(1));
    let announced = announced_to(&mut a, b_id);
    assert_eq!(announced, vec![recent]);
    assert!(!announced.contains(&old));
    assert_eq!(a.stats().catch_up_announced, 1);
    // b pulls it by GRAFT and gets it delivered once.
    let ihave = wire::encode(&Frame::IHave(vec![Announce {
        id: recent,
        hops: 0,
    }]));
    b.handle_message(at + ms(1_000), a_id, &ihave);
    let _ = outputs(&mut b);
    b.handle_timeout(at + ms(2_100));
    let grafts: Vec<(NodeId, Frame)> = sends(&mut b);
    assert!(
        grafts
            .iter()
            .any(|(to, f)| *to == a_id && matches!(f, Frame::Graft(ids) if ids == &vec![recent])),
        "{grafts:?}"
    );
    a.handle_message(
        at + ms(2_120),
        b_id,
        &wire::encode(&Frame::Graft(vec![recent])),
    );
    let answer: Vec<Vec<u8>> = outputs(&mut a)
        .into_iter()
        .filter_map(|o| match o {
            Output::Transmit { to, bytes } if to == b_id => Some(bytes),
            _ => None,
        })
        .collect();
    let mut got = Vec::new();
    for bytes in answer {
        b.handle_message(at + ms(2_140), a_id, &bytes);
        got.extend(delivered(&outputs(&mut b)));
    }
    assert_eq!(got, vec![recent]);
}

#[test]
fn without_a_catch_up_window_a_new_link_hears_of_nothing_old() {
    let mut a = node(1);
    a.handle_peer_up(t0(), identity(10).id());
    let _ = a.publish(t0(), TOPIC, b"x".to_vec()).expect("valid");
    let _ = outputs(&mut a);
    let late = identity(11).id();
    a.handle_peer_up(t0() + ms(100), late);
    a.handle_timeout(t0() + ms(1_000));
    assert!(
        !sends(&mut a)
            .iter()
            .any(|(to, f)| *to == late && matches!(f, Frame::IHave(_)))
    );
    assert_eq!(a.stats().catch_up_announced, 0);
}

#[test]
fn a_node_cut_off_longer_than_the_window_asks_its_new_link_for_what_it_missed() {
    let config = Config {
        catch_up_window: Duration::from_secs(5),
        ..Config::default()
    };
    let mut a = node_with(1, config.clone());
    let mut b = node_with(2, config);
    let (a_id, b_id) = (a.local_id(), b.local_id());
    let dead = identity(10).id();
    // b hears its only link at t0, then nothing: that link's node died (not yet noticed).
    b.handle_peer_up(t0(), dead);
    b.handle_message(t0(), dead, &wire::encode(&Frame::Prune));
    // Meanwhile a publishes; 20 s later that is far outside the 5 s window.
    a.handle_peer_up(t0(), identity(11).id());
    let missed = a
        .publish(t0() + ms(1_000), TOPIC, b"while b was cut off".to_vec())
        .expect("valid");
    let _ = outputs(&mut a);
    let at = t0() + ms(21_000);
    a.handle_peer_up(at, b_id);
    b.handle_peer_up(at, a_id);
    let asked: Vec<u64> = sends(&mut b)
        .into_iter()
        .filter_map(|(to, f)| match f {
            Frame::CatchUp(micros) if to == a_id => Some(micros),
            _ => None,
        })
        .collect();
    // 21 s of silence plus the 5 s window.
    assert_eq!(asked, vec![26_000_000]);
    assert_eq!(b.stats().catch_up_asked, 1);
    // a's own catch-up (5 s) does not cover the message; b's request does.
    a.handle_message(at, b_id, &wire::encode(&Frame::CatchUp(asked[0])));
    a.handle_timeout(at + Duration::from_secs(1));
    let announced = announced_to(&mut a, b_id);
    assert_eq!(announced, vec![missed]);
}

#[test]
fn a_node_that_heard_its_links_recently_does_not_ask() {
    let config = Config {
        catch_up_window: Duration::from_secs(5),
        ..Config::default()
    };
    let mut b = node_with(2, config);
    let (live, new) = (identity(10).id(), identity(11).id());
    b.handle_peer_up(t0(), live);
    b.handle_message(t0() + ms(3_000), live, &wire::encode(&Frame::Prune));
    b.handle_peer_up(t0() + ms(6_000), new);
    assert!(
        !sends(&mut b)
            .iter()
            .any(|(_, f)| matches!(f, Frame::CatchUp(_))),
        "asked after 3 s of silence"
    );
    // A node that never heard any link (a newcomer) has nothing to ask for either.
    let mut fresh = node_with(
        3,
        Config {
            catch_up_window: Duration::from_secs(5),
            ..Config::default()
        },
    );
    fresh.handle_peer_up(t0() + ms(60_000), new);
    assert_eq!(fresh.stats().catch_up_asked, 0);
}

/// The ids `node` announced (IHAVE) to `peer` in its pending outputs.
fn announced_to(node: &mut Node, peer: NodeId) -> Vec<MessageId> {
    sends(node)
        .into_iter()
        .filter(|(to, _)| *to == peer)
        .flat_map(|(_, f)| match f {
            Frame::IHave(ids) => ids.into_iter().map(|a| a.id).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_measured_round_trip_shortens_the_first_retry_and_karn_skips_resent_pushes() {
    let config = Config {
        retry_min: ms(100),
        ..Config::default()
    };
    let mut a = node_with(1, config);
    let b = identity(2).id();
    a.handle_peer_up(t0(), b);
    // Unmeasured: the first retry waits retry_initial.
    let first = published(&mut a, b"one");
    assert_eq!(a.poll_timeout(), Some(t0() + ms(500)));
    ack(&mut a, t0() + ms(80), b, first);
    // The ACK after 80 ms is the first sample: srtt 80, rttvar 40, so srtt + 4 rttvar = 240 ms.
    let sent = t0() + ms(100);
    let second = {
        a.handle_timeout(sent);
        let id = a
            .publish(sent, "t", b"two".to_vec())
            .expect("a small message");
        let _ = outputs(&mut a);
        id
    };
    assert_eq!(a.poll_timeout(), Some(sent + ms(240)));
    // A resent push's ACK is no sample (it may answer either copy): the estimate stays.
    a.handle_timeout(sent + ms(240));
    ack(&mut a, sent + ms(250), b, second);
    let third_at = sent + ms(300);
    a.handle_timeout(third_at);
    let _ = a.publish(third_at, "t", b"three".to_vec());
    assert_eq!(a.poll_timeout(), Some(third_at + ms(240)));
    // A driver's measurement (a ping) counts too; a steady link converges to 1.5 round trips,
    // never below retry_min.
    for i in 0..40 {
        a.handle_link_rtt(third_at + ms(i), b, ms(20));
    }
    let fourth_at = third_at + ms(100);
    a.handle_timeout(fourth_at);
    let _ = a.publish(fourth_at, "t", b"four".to_vec());
    let due: Vec<Instant> = a.pending_due.iter().map(|(due, _, _)| *due).collect();
    assert!(due.contains(&(fourth_at + ms(100))), "{due:?}");
}
