//! The other dissemination policies: flooding and the rooted trees.

use super::*;

/// The tree cost of one hop over a link whose round trip is not measured: its assumed latency plus
/// the default hop cost (no test here measures a round trip).
const UNMEASURED_HOP: u32 = 50 + 60;

#[test]
fn flood_pushes_to_every_link_but_the_sender_and_never_prunes() {
    let config = Config {
        strategy: crate::config::Strategy::Flood,
        network_size: Some(1_000),
        ..Config::default()
    };
    let (mut node, mut peers) = linked(config);
    peers.sort();
    // Publishing pushes the full message to every link (no fanout, no announcement).
    let id = node.publish(t0(), TOPIC, b"mine".to_vec()).expect("valid");
    let pushed: Vec<NodeId> = sends(&mut node)
        .into_iter()
        .filter(|(_, f)| matches!(f, Frame::Gossip(m) if m.id == id))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(pushed, peers);
    assert_eq!(node.stats().payload_sends, 3);

    // A message from peer 0 goes to the two others, not back; its copy from peer 1 is acknowledged
    // but prunes nothing, and nothing is ever announced.
    let origin = identity(20);
    let message = signed(&origin, 1, t0(), b"flood");
    node.handle_message(t0() + ms(10), peers[0], &gossip(&message));
    let out = sends(&mut node);
    let pushed: Vec<NodeId> = out
        .iter()
        .filter(|(_, f)| matches!(f, Frame::Gossip(m) if m.id == message.id))
        .map(|(to, _)| *to)
        .collect();
    assert_eq!(pushed, peers[1..].to_vec());
    assert_eq!(node.stats().payload_sends, 5);
    let mut copy = message.clone();
    copy.hops = 1;
    node.handle_message(t0() + ms(20), peers[1], &gossip(&copy));
    node.handle_timeout(t0() + ms(300));
    let out = sends(&mut node);
    assert!(
        out.iter()
            .all(|(_, f)| matches!(f, Frame::Ack(_) | Frame::Gossip(_))),
        "only acks and retries under flooding, got {out:?}"
    );
    assert_eq!(node.stats().prunes_sent, 0);
    assert_eq!(node.stats().ihaves_sent, 0);
    assert_eq!(node.stats().duplicates, 1);
    // Pushes are acknowledged and retried like eager pushes: peer 2 never acked.
    ack(&mut node, t0() + ms(30), peers[1], message.id);
    node.handle_timeout(t0() + ms(600));
    let retried: Vec<NodeId> = sends(&mut node)
        .into_iter()
        .filter(|(_, f)| matches!(f, Frame::Gossip(m) if m.id == message.id))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(retried, vec![peers[2]]);
}

#[test]
fn the_rooted_tree_makes_parent_and_children_eager_whatever_the_origin() {
    let config = Config {
        rooted_tree: true,
        ..Config::default()
    };
    let hold = config.tree_hold_down;
    let (mut node, mut peers) = linked(config);
    peers.sort();
    // Each new link hears our place: we are our own root until told of a lower one.
    let told: Vec<(NodeId, Vec<TreeAdvert>)> = sends(&mut node)
        .into_iter()
        .filter_map(|(to, f)| match f {
            Frame::Tree { adverts, .. } => Some((to, adverts)),
            _ => None,
        })
        .collect();
    assert_eq!(told.len(), 3);
    assert!(
        told.iter()
            .all(|(_, a)| a.len() == 1 && a[0].distance == 0 && !a[0].child)
    );
    assert_eq!(node.eager_links().count(), 0);
    assert_eq!(
        (
            node.stats().tree_frames_sent,
            node.stats().tree_root_changes
        ),
        (3, 0)
    );

    // A real node lower than all of these, whose proof of itself its descendants pass on.
    let root = low_identity();
    let lowest = root.id();
    assert!(peers.iter().chain([&node.local_id()]).all(|p| lowest < *p));
    let proof = root_proof(&root, t0());
    let at = |millis: u64| t0() + ms(millis);
    let tell = |node: &mut Node, now: Instant, from: NodeId, distance: u8, child: bool| {
        let advert = TreeAdvert {
            root: lowest,
            distance,
            child,
            cost: u32::from(distance) * UNMEASURED_HOP,
        };
        // The proof rides the frame whose entry names its root.
        let frame = Frame::Tree {
            proofs: vec![proof],
            adverts: vec![advert],
        };
        node.handle_message(now, from, &wire::encode(&frame));
    };
    // Peer 0 is 3 hops from the lowest root, peer 1 only 2: peer 1 is the parent, and hears it once
    // the advertisement delay has passed.
    tell(&mut node, at(5), peers[0], 3, false);
    tell(&mut node, at(5), peers[1], 2, false);
    node.handle_timeout(at(5) + node.config().tree_advert_delay);
    let out = sends(&mut node);
    // The new root's proof travels in the same frame as the entry that needs it: no `Roots` frame.
    assert!(out.contains(&(
        peers[1],
        Frame::Tree {
            proofs: vec![proof],
            adverts: vec![TreeAdvert {
                root: lowest,
                distance: 3,
                child: true,
                cost: 3 * UNMEASURED_HOP,
            }]
        }
    )));
    assert!(!out.iter().any(|(_, f)| matches!(f, Frame::Roots(_))));
    assert_eq!(node.stats().tree_root_changes, 1);
    // Peer 2 takes us as its parent: a child.
    tell(&mut node, at(300), peers[2], 4, true);
    assert_eq!(
        node.eager_links().collect::<Vec<_>>(),
        vec![peers[1], peers[2]]
    );

    // A message from the lazy peer 0 goes down the tree only, is announced to nobody else, and a
    // duplicate prunes nothing: the tree does not depend on who sent first.
    let _ = sends(&mut node);
    let message = signed(&identity(20), 1, t0(), b"up");
    node.handle_message(at(310), peers[0], &gossip(&message));
    let pushed: Vec<NodeId> = sends(&mut node)
        .into_iter()
        .filter(|(_, f)| matches!(f, Frame::Gossip(_)))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(pushed, vec![peers[1], peers[2]]);
    let mut copy = message.clone();
    copy.hops = 2;
    node.handle_message(at(320), peers[1], &gossip(&copy));
    assert_eq!(node.stats().prunes_sent, 0);
    assert_eq!(
        node.eager_links().collect::<Vec<_>>(),
        vec![peers[1], peers[2]]
    );

    // The parent's link goes. Peer 0's path (4 hops from us) is longer than the one lost, and may
    // lead back through our own subtree: it is held down, and meanwhile we root our own tree (our
    // child keeps us as its parent)...
    node.handle_peer_down(at(330), peers[1]);
    assert_eq!(node.stats().tree_holds, 1);
    assert_eq!(node.eager_links().collect::<Vec<_>>(), vec![peers[2]]);
    node.handle_timeout(at(330) + node.config().tree_advert_delay);
    let told = sends(&mut node);
    assert!(told.iter().any(|(to, f)| *to == peers[0]
        && matches!(f, Frame::Tree { adverts: a, .. } if a[0].root == node.local_id() && a[0].distance == 0)));
    // ... until the hold ends: then peer 0 becomes the parent.
    node.handle_timeout(at(330) + hold);
    assert_eq!(
        node.eager_links().collect::<Vec<_>>(),
        vec![peers[0], peers[2]]
    );
    // Lost and taken again: two more root changes.
    assert_eq!(node.stats().tree_root_changes, 3);

    // The periodic re-send tells both links our places again, changed or not, and is counted apart
    // (the change above is told first).
    node.handle_timeout(at(330) + hold + node.config().tree_advert_delay);
    let _ = sends(&mut node);
    let before = node.stats().clone();
    node.handle_timeout(at(330) + hold + node.config().tree_refresh_interval);
    let resent = sends(&mut node)
        .into_iter()
        .filter(|(_, f)| matches!(f, Frame::Tree { .. }))
        .count();
    assert_eq!(resent, 2);
    let stats = node.stats();
    assert_eq!(
        stats.tree_frames_refreshed - before.tree_frames_refreshed,
        2
    );
    assert_eq!(stats.tree_frames_sent - before.tree_frames_sent, 2);
}

/// One Tree frame claiming the lowest possible root in every tree, with no proof (or a forged, or an
/// expired one), re-roots nothing: the claim counts only with the root's own fresh signature.
#[test]
fn a_tree_frame_claiming_a_root_it_cannot_prove_reroots_nothing() {
    let config = Config {
        rooted_tree: true,
        trees: 12,
        tree_advert_delay: Duration::ZERO,
        ..Config::default()
    };
    let max_age = config.tree_proof_max_age;
    let (mut node, peers) = linked(config);
    let attacker = peers[0];
    let own = node.tree_places();
    let now = t0() + Duration::from_secs(600);
    // The lowest id in each tree's order: its first byte is the tree's offset, the rest zeros.
    let claim = |distance: u8| -> Vec<TreeAdvert> {
        (0..12)
            .map(|tree| {
                let mut root = [0u8; 20];
                root[0] = u8::try_from(tree * 256 / 12).expect("offset");
                TreeAdvert {
                    root: NodeId::from_bytes(root),
                    distance,
                    child: false,
                    cost: u32::from(distance),
                }
            })
            .collect()
    };
    node.handle_message(now, attacker, &wire::encode(&tree(claim(0))));
    assert_eq!(node.tree_places(), own, "no proof: nothing changes");

    // A real key's valid proof, offered for a root it is not (the claimed ids are not its hash),
    // proves nothing about them either.
    let stranger = root_proof(&identity(77), now);
    node.handle_message(now, attacker, &wire::encode(&Frame::Roots(vec![stranger])));
    node.handle_message(now, attacker, &wire::encode(&tree(claim(1))));
    assert_eq!(node.tree_places(), own);

    // A real root's proof with a forged signature, or one signed too long ago, is refused.
    let root = low_identity();
    let mut forged = root_proof(&root, now);
    forged.signature[0] ^= 1;
    let expired = root_proof(&root, now - max_age - ms(1));
    node.handle_message(now, attacker, &wire::encode(&Frame::Roots(vec![expired])));
    let forged_claim = vec![
        TreeAdvert {
            root: root.id(),
            distance: 1,
            child: false,
            cost: 1,
        };
        12
    ];
    // The forged one inside the `Tree` frame that names its root: checked the same way.
    let with_forged = Frame::Tree {
        proofs: vec![forged],
        adverts: forged_claim.clone(),
    };
    node.handle_message(now, attacker, &wire::encode(&with_forged));
    assert_eq!(node.tree_places(), own);
    assert_eq!(node.stats().tree_proofs_refused, 2);
    // More proofs than trees: the frame is dropped whole, unread.
    let oversized = Frame::Tree {
        proofs: vec![root_proof(&root, now); 13],
        adverts: forged_claim.clone(),
    };
    let dropped = node.stats().dropped_oversized;
    node.handle_message(now, attacker, &wire::encode(&oversized));
    assert_eq!(node.stats().dropped_oversized, dropped + 1);
    assert_eq!(node.tree_places(), own);

    // With the root's genuine, fresh proof, claiming to be the root itself (distance 0) is still
    // refused; the claim of a path to it is taken (in the trees it is lowest in).
    let genuine = root_proof(&root, now);
    node.handle_message(now, attacker, &wire::encode(&Frame::Roots(vec![genuine])));
    let mut posing = forged_claim.clone();
    for advert in &mut posing {
        advert.distance = 0;
    }
    node.handle_message(now, attacker, &wire::encode(&tree(posing)));
    assert_eq!(node.tree_places(), own);
    node.handle_message(now, attacker, &wire::encode(&tree(forged_claim)));
    assert!(
        node.tree_places()
            .iter()
            .any(|(r, d, parent)| *r == root.id() && *d == 2 && *parent == Some(attacker))
    );
}

/// Within `eager_radius` hops of its origin a message goes to every link; beyond, to its tree only.
#[test]
fn the_eager_radius_pushes_to_every_link_near_the_origin_only() {
    let config = Config {
        rooted_tree: true,
        eager_radius: 2,
        ..Config::default()
    };
    let (mut node, peers) = linked(config);
    let _ = sends(&mut node);
    let pushed = |node: &mut Node| -> Vec<NodeId> {
        sends(node)
            .into_iter()
            .filter(|(_, f)| matches!(f, Frame::Gossip(_)))
            .map(|(to, _)| to)
            .collect()
    };
    // Our own message (hop 0): every link, though no tree links exist yet.
    node.publish(t0(), TOPIC, b"mine".to_vec()).expect("valid");
    let mut all = peers.clone();
    all.sort();
    assert_eq!(pushed(&mut node), all);
    // Received after 1 hop (hop count 0 as sent): every link but its sender.
    let near = signed(&identity(20), 1, t0(), b"near");
    node.handle_message(t0() + ms(10), peers[0], &gossip(&near));
    let mut others = vec![peers[1], peers[2]];
    others.sort();
    assert_eq!(pushed(&mut node), others);
    // Received after 2 hops: outside the radius, and this node has no tree links: announced only.
    let mut far = signed(&identity(21), 1, t0(), b"far");
    far.hops = 1;
    node.handle_message(t0() + ms(20), peers[0], &gossip(&far));
    assert_eq!(pushed(&mut node), Vec::<NodeId>::new());
}

/// On rooted trees a message is not announced back to a link that announced it before it came
/// (plain Plumtree still is: `plumtree::an_announcer_of_a_message_is_told_of_it_too`).
#[test]
fn on_rooted_trees_a_link_that_announced_a_message_is_not_told_of_it() {
    let (mut node, peers) = linked(Config {
        rooted_tree: true,
        ..Config::default()
    });
    let sent = announced_then_received(&mut node, &peers);
    assert_eq!(sent[1], vec![1]);
    assert_eq!(sent[2], vec![0, 1]);
}

/// A node of `config` linked to three peers whose round trips are measured at 20 ms, and the tree
/// cost of each of those links (half the round trip plus the hop cost).
fn linked_at_20ms(config: Config) -> (Node, Vec<NodeId>, u32) {
    let hop = u32::try_from(config.tree_hop_cost.as_millis()).expect("small");
    let (mut node, peers) = linked(config);
    for peer in &peers {
        node.handle_link_rtt(t0(), *peer, ms(20));
    }
    (node, peers, 10 + hop)
}

/// `from` gives `root`'s proof (signed at [`t0`]) and offers it at `distance` and `cost` in the
/// first tree, at `at`.
fn offer_root(
    node: &mut Node,
    at: Instant,
    from: NodeId,
    root: &Identity,
    distance: u8,
    cost: u32,
) {
    let proof = root_proof(root, t0());
    node.handle_message(at, from, &wire::encode(&Frame::Roots(vec![proof])));
    let advert = TreeAdvert {
        root: root.id(),
        distance,
        child: false,
        cost,
    };
    node.handle_message(at, from, &wire::encode(&tree(vec![advert])));
}

/// A root's renewed proof rides the `Tree` frames the node sends anyway (the periodic re-send)
/// while the proof a link has is young; once it is half `tree_proof_max_age` old, the newer one goes
/// at once, alone.
#[test]
fn a_renewed_proof_waits_for_a_tree_frame_while_the_one_told_is_young() {
    let config = Config {
        rooted_tree: true,
        trees: 1,
        tree_advert_delay: Duration::ZERO,
        ..Config::default()
    };
    let (refresh, max_age) = (config.tree_refresh_interval, config.tree_proof_max_age);
    let (mut node, peers) = linked(config);
    let root = low_identity();
    let advert = TreeAdvert {
        root: root.id(),
        distance: 1,
        child: false,
        cost: 10,
    };
    let signed_at = |at: Instant| Frame::Tree {
        proofs: vec![root_proof(&root, at)],
        adverts: vec![advert],
    };
    node.handle_message(t0(), peers[0], &wire::encode(&signed_at(t0())));
    let _ = sends(&mut node);
    // The proofs of `root` sent to peer 1, and in which kind of frame.
    let proofs_to_1 = |node: &mut Node| -> Vec<(&'static str, Instant)> {
        sends(node)
            .into_iter()
            .filter(|(to, _)| *to == peers[1])
            .flat_map(|(_, frame)| match frame {
                Frame::Roots(p) => p.into_iter().map(|p| ("roots", p.timestamp)).collect(),
                Frame::Tree { proofs, .. } => {
                    proofs.into_iter().map(|p| ("tree", p.timestamp)).collect()
                }
                _ => Vec::new(),
            })
            .collect()
    };

    // Renewed 1 s later: nothing is sent for it until the re-send, which carries it.
    let renewed = t0() + ms(1_000);
    node.handle_message(
        renewed,
        peers[0],
        &wire::encode(&Frame::Roots(vec![root_proof(&root, renewed)])),
    );
    assert_eq!(proofs_to_1(&mut node), vec![]);
    node.handle_timeout(t0() + refresh);
    assert_eq!(proofs_to_1(&mut node), vec![("tree", renewed)]);

    // Re-sent rarely, a proof waits only while the one told is younger than half the maximum age.
    let mut config = node.config().clone();
    config.tree_refresh_interval = max_age;
    let (mut node, peers) = linked(config);
    node.handle_message(t0(), peers[0], &wire::encode(&signed_at(t0())));
    let _ = sends(&mut node);
    let young = t0() + max_age / 2 - ms(1);
    node.handle_message(
        young,
        peers[0],
        &wire::encode(&Frame::Roots(vec![root_proof(&root, young)])),
    );
    assert_eq!(proofs_to_1(&mut node), vec![]);
    let half = t0() + max_age / 2;
    node.handle_message(
        half,
        peers[0],
        &wire::encode(&Frame::Roots(vec![root_proof(&root, half)])),
    );
    assert_eq!(proofs_to_1(&mut node), vec![("roots", half)]);
}

/// Parents are chosen by the latency of the whole path (each link's half round trip plus the hop
/// cost), not by hops alone: a fast path of more hops beats a slow one of fewer.
#[test]
fn the_tree_takes_the_fastest_path_to_its_root() {
    let config = Config {
        rooted_tree: true,
        tree_advert_delay: Duration::ZERO,
        ..Config::default()
    };
    let (mut node, peers, link) = linked_at_20ms(config);
    let root = low_identity();
    // Peer 0: 1 hop from the root but over a slow link (300 ms); peer 1: 2 hops, 60 ms.
    let tell = |node: &mut Node, from: NodeId, distance: u8, cost: u32| {
        offer_root(node, t0(), from, &root, distance, cost);
    };
    tell(&mut node, peers[0], 1, 300);
    tell(&mut node, peers[1], 2, 60);
    let places = node.tree_places();
    assert_eq!(places[0].0, root.id());
    assert_eq!(places[0].1, 3, "the 2-hop path, so 3 hops from here");
    assert_eq!(places[0].2, Some(peers[1]));
    // Its advertised cost adds the link's half round trip (10 ms) and the hop cost.
    let told = sends(&mut node);
    assert!(told.iter().any(|(to, f)| *to == peers[2]
        && matches!(f, Frame::Tree { adverts: a, .. } if a[0].cost == 60 + link)));
    // The slow link gets faster (a new round trip, over a quarter off): peer 0's path wins.
    for _ in 0..40 {
        node.handle_link_rtt(t0() + ms(1), peers[0], ms(2));
    }
    let _ = node.tree_places();
    tell(&mut node, peers[0], 1, 30);
    assert_eq!(node.tree_places()[0].2, Some(peers[0]));
}

/// The root proof a node passes on is the latest one a link of it still holds: when the link that
/// gave the latest goes, a new link gets the next latest; when no link holds one, none is told and
/// the root is no longer followed.
#[test]
fn the_proof_passed_on_is_the_latest_a_link_still_holds() {
    let config = Config {
        rooted_tree: true,
        trees: 1,
        tree_advert_delay: Duration::ZERO,
        ..Config::default()
    };
    let (mut node, peers) = linked(config);
    let root = low_identity();
    let (older, newer) = (root_proof(&root, t0()), root_proof(&root, t0() + ms(10)));
    let now = t0() + ms(20);
    let advert = |distance: u8| TreeAdvert {
        root: root.id(),
        distance,
        child: false,
        cost: 100,
    };
    for (peer, proof) in [(peers[0], older), (peers[1], newer)] {
        node.handle_message(now, peer, &wire::encode(&Frame::Roots(vec![proof])));
        node.handle_message(now, peer, &wire::encode(&tree(vec![advert(1)])));
    }
    assert_eq!(node.tree_places()[0].0, root.id());
    // The proofs of `root` told to `peer`, in order (alone, or with the entries that need them).
    let told_to = |node: &mut Node, peer: NodeId| -> Vec<RootProof> {
        sends(node)
            .into_iter()
            .filter_map(|(to, frame)| match frame {
                Frame::Roots(proofs) | Frame::Tree { proofs, .. } if to == peer => Some(proofs),
                _ => None,
            })
            .flatten()
            .filter(|p| p.root() == root.id())
            .collect()
    };
    // Peer 2 hears the root with the older proof (after our first place, when the link came up);
    // the newer one changes no entry it hears, and waits for the next `Tree` frame.
    let to_peer_2: Vec<Frame> = sends(&mut node)
        .into_iter()
        .filter_map(|(to, frame)| (to == peers[2]).then_some(frame))
        .collect();
    assert_eq!(
        to_peer_2[1..],
        [Frame::Tree {
            proofs: vec![older],
            adverts: vec![TreeAdvert {
                distance: 2,
                cost: 100 + UNMEASURED_HOP,
                ..advert(1)
            }],
        }]
    );

    // The link with the newer proof goes: a new link gets the older one, which is still held.
    node.handle_peer_down(now, peers[1]);
    // Kept once, while a link names it; the newer one, named by none, is gone.
    assert_eq!(node.proofs_held.values().collect::<Vec<_>>(), vec![&older]);
    let _ = sends(&mut node);
    let fresh_link = identity(20).id();
    node.handle_peer_up(now, fresh_link);
    assert_eq!(told_to(&mut node, fresh_link), vec![older]);

    // The last holder stops following the root: no proof is left, and the root is not followed.
    let own = vec![TreeAdvert {
        root: peers[0],
        distance: 0,
        child: false,
        cost: 0,
    }];
    node.handle_message(now, peers[0], &wire::encode(&tree(own)));
    assert_ne!(node.tree_places()[0].0, root.id());
    let _ = sends(&mut node);
    let last_link = identity(21).id();
    node.handle_peer_up(now, last_link);
    assert_eq!(told_to(&mut node, last_link), Vec::<RootProof>::new());

    // Every link gone: no proof is kept.
    for peer in peers.into_iter().chain([fresh_link, last_link]) {
        node.handle_peer_down(now, peer);
    }
    assert!(node.proofs_held.is_empty() && node.proofs_best.is_empty());
}

/// With `tree_feasible_successors`, a node that loses its parent keeps its root through any link that
/// advertises a lower cost than its own was (a feasible successor: that link's path cannot lead back through this node, whose
/// subtree all advertise more), even when the new path is slower; its subtree then follows without
/// changing root. A link advertising no less than the lost cost may be in the subtree: it is refused
/// until the hold-down ends.
#[test]
fn a_lost_parent_is_replaced_by_any_link_advertising_less_without_changing_root() {
    let config = Config {
        rooted_tree: true,
        tree_feasible_successors: true,
        tree_advert_delay: Duration::ZERO,
        ..Config::default()
    };
    let hold = config.tree_hold_down;
    let (mut node, peers, link) = linked_at_20ms(config);
    let root = low_identity();
    let tell = |node: &mut Node, at: Instant, from: NodeId, distance: u8, cost: u32| {
        offer_root(node, at, from, &root, distance, cost);
    };
    // Peer 0 is the fastest (cost 10 + link), peer 1 advertises 40: slower through its link (40 + link)
    // but below this node's own cost; peer 2 advertises more than this node's cost.
    tell(&mut node, t0(), peers[0], 1, 10);
    tell(&mut node, t0(), peers[1], 2, 40);
    tell(&mut node, t0(), peers[2], 4, 10 + link + 5);
    assert_eq!(node.tree_places()[0], (root.id(), 2, Some(peers[0])));
    let _ = sends(&mut node);

    // Peer 0's link goes down: peer 1 is feasible (40 < 10 + link), so the root stays and only the
    // cost rises; the links hear the same root.
    node.handle_peer_down(t0() + ms(10), peers[0]);
    assert_eq!(node.tree_places()[0], (root.id(), 3, Some(peers[1])));
    let told = sends(&mut node);
    assert!(told.iter().any(|(to, f)| *to == peers[2]
        && matches!(f, Frame::Tree { adverts: a, .. } if a[0].root == root.id() && a[0].cost == 40 + link)));

    // Peer 1's goes too: peer 2 advertises more than the cost held (it may be in this node's
    // subtree), so it is refused while the hold lasts, and taken when it ends.
    node.handle_peer_down(t0() + ms(20), peers[1]);
    let place = node.tree_places()[0];
    assert_ne!(place.2, Some(peers[2]), "refused during the hold-down");
    node.handle_timeout(t0() + ms(20) + hold);
    assert_eq!(node.tree_places()[0], (root.id(), 5, Some(peers[2])));
}

/// With `tree_feasible_successors`, the cost a new parent is compared with is the lowest this node
/// advertised, not only the one it has:
/// after its cost rose, a node of its subtree may still advertise a cost built on the lower one
/// (it has not heard the rise yet). Such a link is below the new cost but must not be taken when the
/// parent goes: it would be a loop through this node's own subtree.
#[test]
fn a_hold_down_refuses_a_link_whose_cost_was_built_on_a_lower_advert_of_ours() {
    let config = Config {
        rooted_tree: true,
        tree_feasible_successors: true,
        trees: 1,
        tree_advert_delay: Duration::ZERO,
        ..Config::default()
    };
    let (mut node, peers, link) = linked_at_20ms(config);
    let root = low_identity();
    let tell = |node: &mut Node, at: Instant, from: NodeId, distance: u8, cost: u32| {
        offer_root(node, at, from, &root, distance, cost);
    };
    // Peer 0 offers the root at cost 10: this node advertises 10 + link.
    tell(&mut node, t0(), peers[0], 1, 10);
    assert_eq!(node.tree_places()[0], (root.id(), 2, Some(peers[0])));
    let advertised = 10 + link;
    // Peer 2 is two hops below this node: its cost was built on that advert.
    let stale = advertised + 2 * link;
    tell(&mut node, t0(), peers[2], 4, stale);
    assert_eq!(node.tree_places()[0].2, Some(peers[0]));
    // Peer 0's link slows down (1 s round trips): this node's cost rises above peer 2's stale one.
    for i in 0..40 {
        node.handle_link_rtt(t0() + ms(i), peers[0], ms(1000));
    }
    let _ = sends(&mut node);
    // Peer 0 goes: peer 2 advertises less than the cost this node had, but not less than what it
    // advertised before, so it is refused while the hold lasts.
    node.handle_peer_down(t0() + ms(50), peers[0]);
    assert_ne!(node.tree_places()[0].2, Some(peers[2]));
}
