//! Plumtree's tree: PRUNE on duplicates, batched announcements, the adaptive fanout, replay.

use super::*;

#[test]
fn a_redundant_copy_prunes_its_link_and_lazy_links_get_batched_announcements() {
    let (mut node, peers) = linked(Config::default());
    let origin = identity(10);
    let first = signed(&origin, 1, t0(), b"x");
    node.handle_message(t0(), peers[0], &gossip(&first));
    let _ = outputs(&mut node);
    node.handle_message(t0() + ms(5), peers[1], &gossip(&first));
    let out = sends(&mut node);
    assert!(out.contains(&(peers[1], Frame::Prune)), "{out:?}");
    let mut expected = vec![peers[0], peers[2]];
    expected.sort();
    assert_eq!(node.eager_links().collect::<Vec<_>>(), expected);

    // Two messages later, peers[1] gets one IHAVE carrying both ids, on the flush.
    let second = signed(&origin, 2, t0(), b"y");
    let third = signed(&origin, 3, t0(), b"z");
    node.handle_message(t0() + ms(10), peers[0], &gossip(&second));
    node.handle_message(t0() + ms(11), peers[0], &gossip(&third));
    let _ = outputs(&mut node);
    node.handle_timeout(t0() + ms(300));
    let ihaves: Vec<(NodeId, Frame)> = sends(&mut node)
        .into_iter()
        .filter(|(_, f)| matches!(f, Frame::IHave(_)))
        .collect();
    assert_eq!(
        ihaves,
        vec![(
            peers[1],
            Frame::IHave(vec![
                Announce {
                    id: second.id,
                    hops: 1
                },
                Announce {
                    id: third.id,
                    hops: 1
                },
            ])
        )]
    );
}

/// [`linked`], after a message of `identity(10)`'s (returned) came over peers[0] and its duplicate
/// over peers[1], which that PRUNEd; outputs drained.
fn second_link_pruned(config: Config) -> (Node, Vec<NodeId>, Identity) {
    let (mut node, peers) = linked(config);
    let origin = identity(10);
    let first = signed(&origin, 1, t0(), b"x");
    node.handle_message(t0(), peers[0], &gossip(&first));
    node.handle_message(t0() + ms(5), peers[1], &gossip(&first));
    assert!(sends(&mut node).contains(&(peers[1], Frame::Prune)));
    (node, peers, origin)
}

/// Plain Plumtree announces a message to a lazy link even when that link announced it first: its
/// reroutes and GRAFTs read what the announcement tells (docs/decisions.md §43).
#[test]
fn an_announcer_of_a_message_is_told_of_it_too() {
    let (mut node, peers, _) = second_link_pruned(Config::default());
    let sent = announced_then_received(&mut node, &peers);
    assert_eq!(sent[1], vec![0, 1]);
    assert!(sent[2].is_empty(), "an eager link: pushed, not told");
}

#[test]
fn adaptive_fanout_follows_the_nodes_known() {
    let mut node = node(1);
    for n in 0..20u8 {
        node.handle_peer_up(t0(), identity(100 + n).id());
    }
    node.publish(t0(), TOPIC, b"x".to_vec()).expect("valid");
    let pushed = node.stats().payload_sends;
    assert!(
        (12..=14).contains(&pushed),
        "60-70% of 20 links, got {pushed}"
    );

    let mut small = node_with(2, Config::default());
    for n in 0..5u8 {
        small.handle_peer_up(t0(), identity(100 + n).id());
    }
    small.publish(t0(), TOPIC, b"x".to_vec()).expect("valid");
    assert_eq!(small.stats().payload_sends, 5, "all links up to five nodes");

    let mut estimated = node_with(3, Config::default());
    estimated.set_network_size(Some(10));
    for n in 0..20u8 {
        estimated.handle_peer_up(t0(), identity(100 + n).id());
    }
    estimated
        .publish(t0(), TOPIC, b"x".to_vec())
        .expect("valid");
    let pushed = estimated.stats().payload_sends;
    assert!(
        (16..=18).contains(&pushed),
        "80-90% of 20 links, got {pushed}"
    );
}

#[test]
fn the_same_seed_and_inputs_give_the_same_outputs() {
    let run = || {
        let mut node = Node::new(identity(1), Config::default(), 42);
        for n in 0..30u8 {
            node.handle_peer_up(t0(), identity(100 + n).id());
        }
        node.publish(t0(), TOPIC, b"x".to_vec()).expect("valid");
        node.handle_timeout(t0() + Duration::from_secs(2));
        outputs(&mut node)
    };
    assert_eq!(run(), run());
}

/// An IHAVE is not acknowledged: with `announce_repeat`, an announcement is sent once more, one to
/// two periods later, unless its link has shown it holds the message by then; without it, never.
#[test]
fn an_unanswered_announcement_is_repeated_once() {
    for repeat in [Duration::ZERO, Duration::from_secs(1)] {
        let config = Config {
            announce_repeat: repeat,
            ..Config::default()
        };
        let (mut node, peers, origin) = second_link_pruned(config);
        let second = signed(&origin, 2, t0(), b"y");
        let third = signed(&origin, 3, t0(), b"z");
        node.handle_message(t0() + ms(10), peers[0], &gossip(&second));
        node.handle_message(t0() + ms(11), peers[0], &gossip(&third));
        node.handle_timeout(t0() + ms(300));
        let ihaves_to = |sent: Vec<(NodeId, Frame)>| -> Vec<MessageId> {
            sent.into_iter()
                .filter(|(to, _)| *to == peers[1])
                .flat_map(|(_, f)| match f {
                    Frame::IHave(a) => a.into_iter().map(|a| a.id).collect(),
                    _ => Vec::new(),
                })
                .collect()
        };
        assert_eq!(ihaves_to(sends(&mut node)), vec![second.id, third.id]);
        // peers[1] shows it holds the third (its own announcement); the second stays unanswered.
        let announce = Frame::IHave(vec![Announce {
            id: third.id,
            hops: 1,
        }]);
        node.handle_message(t0() + ms(400), peers[1], &wire::encode(&announce));
        node.handle_timeout(t0() + ms(1999));
        assert_eq!(ihaves_to(sends(&mut node)), Vec::<MessageId>::new());
        // Flushed at 0.3 s: repeated at the first whole second 1 s later, at 2 s.
        node.handle_timeout(t0() + ms(2000));
        let again = ihaves_to(sends(&mut node));
        node.handle_timeout(t0() + ms(10_000));
        let later = ihaves_to(sends(&mut node));
        if repeat.is_zero() {
            assert_eq!(again, Vec::<MessageId>::new());
            assert_eq!(node.stats().announces_repeated, 0);
        } else {
            assert_eq!(again, vec![second.id]);
            assert_eq!(node.stats().announces_repeated, 1);
        }
        assert_eq!(later, Vec::<MessageId>::new(), "repeated at most once");
    }
}

/// A push that crossed our PRUNE arrives as a message's first copy: the link is eager here again, and
/// an empty GRAFT makes it eager at the peer too (which took it lazy when the PRUNE landed), so that
/// the tree never holds a link that pushes one way only.
#[test]
fn a_first_copy_over_a_pruned_link_grafts_it_back() {
    let (mut node, peers, origin) = second_link_pruned(Config::default());

    // The next message comes first over peers[0], an eager link: no GRAFT.
    let second = signed(&origin, 2, t0(), b"y");
    node.handle_message(t0() + ms(10), peers[0], &gossip(&second));
    let out = sends(&mut node);
    assert!(
        !out.iter().any(|(_, f)| matches!(f, Frame::Graft(_))),
        "{out:?}"
    );

    // A push of peers[1]'s, sent before our PRUNE reached it, brings the third first.
    let third = signed(&origin, 3, t0(), b"z");
    node.handle_message(t0() + ms(15), peers[1], &gossip(&third));
    let out = sends(&mut node);
    assert!(
        out.contains(&(peers[1], Frame::Graft(Vec::new()))),
        "{out:?}"
    );
    assert!(node.eager_links().any(|p| p == peers[1]));
    assert_eq!(node.stats().eager_restored, 1);
}

/// A GRAFT's answer is a push along the new tree edge: when the grafter's own copy (which it got
/// elsewhere meanwhile, over more hops) crosses the answer, the grafter judges, and we do not prune
/// the link it is about to take as its parent.
#[test]
fn a_copy_crossing_our_graft_answer_is_left_to_the_grafter() {
    let (mut node, peers, origin) = second_link_pruned(Config::default());

    // The second reaches us over peers[0]; peers[1], lazy, is only told of it, and GRAFTs it.
    let second = signed(&origin, 2, t0(), b"y");
    node.handle_message(t0() + ms(10), peers[0], &gossip(&second));
    node.handle_message(
        t0() + ms(20),
        peers[1],
        &wire::encode(&Frame::Graft(vec![second.id])),
    );
    let out = sends(&mut node);
    assert!(
        out.iter()
            .any(|(to, f)| *to == peers[1] && matches!(f, Frame::Gossip(m) if m.id == second.id)),
        "{out:?}"
    );

    // peers[1] got it elsewhere meanwhile, three hops from the origin, and pushed it to us.
    let mut crossing = second.clone();
    crossing.hops = 3;
    node.handle_message(t0() + ms(25), peers[1], &gossip(&crossing));
    let out = sends(&mut node);
    assert!(!out.contains(&(peers[1], Frame::Prune)), "{out:?}");
    assert!(node.eager_links().any(|p| p == peers[1]));
}
