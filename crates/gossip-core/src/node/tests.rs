use core::cell::Cell;

use proptest::prelude::*;

use super::*;
use crate::identity::{PUBLIC_KEY_LEN, SIGNATURE_LEN};

const TOPIC: &str = "t";

fn t0() -> Instant {
    Instant::from_millis(1_700_000_000_000)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn identity(n: u8) -> Identity {
    Identity::from_secret_bytes(&[n; 32])
}

fn node(n: u8) -> Node {
    node_with(n, Config::default())
}

fn node_with(n: u8, config: Config) -> Node {
    let mut node = Node::new(identity(n), config, u64::from(n));
    node.subscribe(TOPIC).expect("short topic");
    node
}

fn outputs<S: Signer, V: Verifier>(node: &mut Node<S, V>) -> Vec<Output> {
    core::iter::from_fn(|| node.poll_output()).collect()
}

fn sends<S: Signer, V: Verifier>(node: &mut Node<S, V>) -> Vec<(NodeId, Frame)> {
    outputs(node)
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { to, bytes } => {
                Some((to, wire::decode(&bytes).expect("own frames decode")))
            }
            Output::Event(_) => None,
        })
        .collect()
}

fn delivered(outputs: &[Output]) -> Vec<MessageId> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(Event::Delivered { id, .. }) => Some(*id),
            _ => None,
        })
        .collect()
}

/// A signed message from `origin`, as its first hop receives it.
fn signed(origin: &Identity, seq: u64, timestamp: Instant, payload: &[u8]) -> Message {
    let id = MessageId::compute(&origin.id(), seq, TOPIC, payload);
    let signature = origin.sign(&signed_bytes(&origin.id(), seq, timestamp, TOPIC, payload));
    Message {
        id,
        origin: origin.id(),
        seq,
        timestamp,
        topic: TOPIC.into(),
        payload: payload.to_vec(),
        hops: 0,
        tree: 0,
        auth: Some(Auth {
            public_key: origin.public_key(),
            signature,
        }),
    }
}

fn gossip(message: &Message) -> Vec<u8> {
    wire::encode(&Frame::Gossip(message.clone()))
}

/// `node` with links to nodes 10, 11, 12 (ids of `identity(10..)`).
fn linked(config: Config) -> (Node, Vec<NodeId>) {
    let mut node = node_with(1, config);
    let peers: Vec<NodeId> = (10..13).map(|n| identity(n).id()).collect();
    for peer in &peers {
        node.handle_peer_up(t0(), *peer);
    }
    (node, peers)
}

#[test]
fn publish_reaches_a_neighbour_once_with_one_hop() {
    let mut a = node(1);
    let mut b = node(2);
    a.handle_peer_up(t0(), b.id());
    b.handle_peer_up(t0(), a.id());
    let id = a.publish(t0(), TOPIC, b"hi".to_vec()).expect("valid");
    let out = outputs(&mut a);
    assert!(
        delivered(&out).is_empty(),
        "the origin does not deliver to itself"
    );
    let [Output::Send { to, bytes }] = out.as_slice() else {
        panic!("one push expected, got {out:?}");
    };
    assert_eq!(*to, b.id());
    b.handle_message(t0() + ms(10), a.id(), bytes);
    b.handle_message(t0() + ms(20), a.id(), bytes);
    let out = outputs(&mut b);
    let events: Vec<&Output> = out
        .iter()
        .filter(|o| matches!(o, Output::Event(_)))
        .collect();
    assert_eq!(events.len(), 1);
    let Output::Event(Event::Delivered {
        id: got,
        origin,
        hops,
        payload,
        from,
        ..
    }) = events[0]
    else {
        panic!("a delivery expected");
    };
    assert_eq!(
        (*got, *origin, *hops, payload.as_slice(), *from),
        (id, a.id(), 1, &b"hi"[..], a.id())
    );
    assert_eq!(b.stats().duplicates, 1);
    // Both copies are acknowledged; the retransmission is not taken for a cycle.
    let acks = out
        .iter()
        .filter(|o| matches!(o, Output::Send { bytes, .. } if wire::decode(bytes) == Ok(Frame::Ack(id))))
        .count();
    assert_eq!(acks, 2);
    assert_eq!(b.stats().prunes_sent, 0);
}

#[test]
fn unsubscribed_topics_are_relayed_not_delivered() {
    let (mut node, peers) = linked(Config::default());
    assert!(node.unsubscribe(TOPIC));
    let origin = identity(10);
    node.handle_message(t0(), peers[0], &gossip(&signed(&origin, 1, t0(), b"x")));
    let out = outputs(&mut node);
    assert!(delivered(&out).is_empty());
    assert_eq!(node.stats().accepted, 1);
    assert_eq!(
        node.stats().payload_sends,
        2,
        "relayed to the two other links"
    );
}

#[test]
fn forged_and_invalid_messages_are_dropped_and_counted() {
    let (mut node, peers) = linked(Config::default());
    let origin = identity(10);
    let good = signed(&origin, 1, t0(), b"x");

    let mut bad_signature = good.clone();
    if let Some(auth) = bad_signature.auth.as_mut() {
        auth.signature[0] ^= 1;
    }
    node.handle_message(t0(), peers[0], &gossip(&bad_signature));
    assert_eq!(node.stats().dropped_bad_signature, 1);

    let mut other_key = good.clone();
    if let Some(auth) = other_key.auth.as_mut() {
        auth.public_key = identity(11).public_key();
    }
    node.handle_message(t0(), peers[0], &gossip(&other_key));
    assert_eq!(node.stats().dropped_key_mismatch, 1);

    let mut unsigned = good.clone();
    unsigned.auth = None;
    node.handle_message(t0(), peers[0], &gossip(&unsigned));
    assert_eq!(node.stats().dropped_unsigned, 1);

    let mut wrong_id = good.clone();
    wrong_id.payload = b"y".to_vec();
    node.handle_message(t0(), peers[0], &gossip(&wrong_id));
    assert_eq!(node.stats().dropped_id_mismatch, 1);

    let mut changed_time = good.clone();
    changed_time.timestamp = t0() + ms(1);
    node.handle_message(t0(), peers[0], &gossip(&changed_time));
    assert_eq!(node.stats().dropped_bad_signature, 2);

    node.handle_message(t0(), identity(99).id(), &gossip(&good));
    assert_eq!(node.stats().dropped_unknown_link, 1);
    node.handle_message(t0(), peers[0], &[]);
    node.handle_message(t0(), peers[0], &[wire::VERSION, 200]);
    assert_eq!(node.stats().dropped_malformed, 2);
    node.handle_message(t0(), peers[0], &[wire::VERSION + 1, 0]);
    assert_eq!(node.stats().dropped_version, 1);
    node.handle_message(t0(), peers[0], &vec![0; node.config().max_frame_len() + 1]);
    assert_eq!(node.stats().dropped_oversized, 1);

    assert!(delivered(&outputs(&mut node)).is_empty());
    // None of it poisoned the seen-cache: the genuine message still gets through.
    node.handle_message(t0(), peers[0], &gossip(&good));
    assert_eq!(delivered(&outputs(&mut node)), vec![good.id]);
}

#[test]
fn unsigned_messages_pass_only_in_compatibility_mode() {
    let (mut node, peers) = linked(Config {
        require_signatures: false,
        ..Config::default()
    });
    let mut unsigned = signed(&identity(10), 1, t0(), b"x");
    unsigned.auth = None;
    node.handle_message(t0(), peers[0], &gossip(&unsigned));
    assert_eq!(delivered(&outputs(&mut node)), vec![unsigned.id]);
}

#[test]
fn replay_window_and_clock_skew_are_enforced() {
    let (mut node, peers) = linked(Config::default());
    let origin = identity(10);
    let now = t0() + Duration::from_secs(3600);
    let old = signed(&origin, 1, now - Duration::from_secs(301), b"old");
    node.handle_message(now, peers[0], &gossip(&old));
    assert_eq!(node.stats().dropped_too_old, 1);
    let future = signed(&origin, 2, now + Duration::from_secs(31), b"future");
    node.handle_message(now, peers[0], &gossip(&future));
    assert_eq!(node.stats().dropped_future, 1);
    let fine = signed(&origin, 3, now - Duration::from_secs(299), b"fine");
    node.handle_message(now, peers[0], &gossip(&fine));
    assert_eq!(delivered(&outputs(&mut node)), vec![fine.id]);
    // After the window, the id is forgotten but the message stays refused.
    let later = now + Duration::from_secs(10);
    node.handle_timeout(later);
    node.handle_message(later, peers[1], &gossip(&fine));
    assert!(delivered(&outputs(&mut node)).is_empty());
    assert_eq!(node.stats().dropped_too_old, 2);
}

#[test]
fn hop_limit_delivers_at_the_limit_without_forwarding() {
    let (mut node, peers) = linked(Config {
        hop_limit: 3,
        ..Config::default()
    });
    let origin = identity(10);
    let mut at_limit = signed(&origin, 1, t0(), b"a");
    at_limit.hops = 2;
    node.handle_message(t0(), peers[0], &gossip(&at_limit));
    let out = outputs(&mut node);
    assert_eq!(delivered(&out), vec![at_limit.id]);
    assert_eq!(node.stats().payload_sends, 0);
    node.handle_timeout(t0() + Duration::from_secs(1));
    assert_eq!(node.stats().ihaves_sent, 0, "not announced either");

    let mut beyond = signed(&origin, 2, t0(), b"b");
    beyond.hops = 3;
    node.handle_message(t0(), peers[0], &gossip(&beyond));
    assert!(delivered(&outputs(&mut node)).is_empty());
    assert_eq!(node.stats().dropped_hop_limit, 1);
}

#[test]
fn unacknowledged_push_is_retried_with_backoff_then_given_up() {
    let mut a = node(1);
    let b = identity(2).id();
    a.handle_peer_up(t0(), b);
    let id = a.publish(t0(), TOPIC, b"x".to_vec()).expect("valid");
    let _ = outputs(&mut a);
    let mut retries_at = Vec::new();
    while let Some(at) = a.poll_timeout() {
        if at > t0() + Duration::from_secs(59) {
            break;
        }
        a.handle_timeout(at);
        for output in outputs(&mut a) {
            match output {
                Output::Send { to, bytes } => {
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
    let mut a = node(1);
    let b = identity(2).id();
    a.handle_peer_up(t0(), b);
    let id = a.publish(t0(), TOPIC, b"x".to_vec()).expect("valid");
    let _ = outputs(&mut a);
    a.handle_message(t0() + ms(50), b, &wire::encode(&Frame::Ack(id)));
    a.handle_timeout(t0() + Duration::from_secs(30));
    assert_eq!(a.stats().payload_retries, 0);
    assert_eq!(a.stats().acks_received, 1);
}

#[test]
fn a_push_lost_with_its_link_goes_over_the_other_links() {
    let (mut node, peers) = linked(Config::default());
    let id = node.publish(t0(), TOPIC, b"x".to_vec()).expect("valid");
    let _ = outputs(&mut node);
    // peers[1] acknowledges; peers[0] never does and its link fails.
    node.handle_message(t0() + ms(30), peers[1], &wire::encode(&Frame::Ack(id)));
    node.handle_peer_down(t0() + ms(100), peers[0]);
    node.handle_peer_down(t0() + ms(100), peers[2]);
    let rerouted = sends(&mut node);
    assert!(
        rerouted.is_empty(),
        "the only remaining link already acknowledged: {rerouted:?}"
    );

    let (mut node, peers) = linked(Config::default());
    let id = node.publish(t0(), TOPIC, b"y".to_vec()).expect("valid");
    let _ = outputs(&mut node);
    node.handle_message(t0() + ms(30), peers[1], &wire::encode(&Frame::Ack(id)));
    node.handle_message(t0() + ms(30), peers[2], &wire::encode(&Frame::Ack(id)));
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
    let id = node.publish(t0(), TOPIC, b"x".to_vec()).expect("valid");
    let _ = outputs(&mut node);
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

#[test]
fn publish_and_subscribe_refuse_oversized_input() {
    let mut node = node(1);
    let long = "x".repeat(257);
    assert!(matches!(
        node.publish(t0(), &long, Vec::new()),
        Err(PublishError::TopicTooLong { len: 257, max: 256 })
    ));
    assert!(matches!(
        node.publish(t0(), TOPIC, vec![0; 64 * 1024 + 1]),
        Err(PublishError::PayloadTooLarge { .. })
    ));
    assert!(matches!(
        node.subscribe(&long),
        Err(SubscribeError::TopicTooLong { .. })
    ));
    assert_eq!(node.subscribe(TOPIC), Ok(false));
}

/// A verifier that counts its calls, to prove duplicates never reach it.
struct Counting<'a>(&'a Cell<u32>);

impl Verifier for Counting<'_> {
    fn verify(
        &self,
        public_key: &[u8; PUBLIC_KEY_LEN],
        message: &[u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> bool {
        self.0.set(self.0.get() + 1);
        crate::verify(public_key, message, signature)
    }
}

#[test]
fn a_signature_is_verified_once_per_message() {
    let calls = Cell::new(0);
    let mut node = Node::with_verifier(identity(1), Counting(&calls), Config::default(), 1);
    let peers: Vec<NodeId> = (10..13).map(|n| identity(n).id()).collect();
    for peer in &peers {
        node.handle_peer_up(t0(), *peer);
    }
    let message = signed(&identity(10), 1, t0(), b"x");
    for peer in peers.iter().chain(&peers) {
        node.handle_message(t0(), *peer, &gossip(&message));
    }
    assert_eq!(calls.get(), 1);
    assert_eq!(node.stats().duplicates, 5);
}

// ---- properties ----

fn origins() -> Vec<Identity> {
    (50..53).map(identity).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the order, duplication and links of the copies, and even with a seen-cache far too small
    /// for the traffic, each message is delivered at most once.
    #[test]
    fn delivered_at_most_once(
        steps in prop::collection::vec((0usize..12, 0usize..3, 0u64..400), 1..120),
        max_seen in 1usize..6,
    ) {
        let origins = origins();
        let messages: Vec<Message> = (0..12u64)
            .map(|i| signed(&origins[(i % 3) as usize], i, t0() + ms(i * 37 % 300), b"p"))
            .collect();
        let (mut node, peers) = linked(Config { max_seen, ..Config::default() });
        let mut now = t0();
        let mut seen = BTreeSet::new();
        for (message, link, advance) in steps {
            now += ms(advance);
            node.handle_message(now, peers[link], &gossip(&messages[message]));
            if advance > 300 {
                node.handle_timeout(now);
            }
            for id in delivered(&outputs(&mut node)) {
                prop_assert!(seen.insert(id), "{id:?} delivered twice");
            }
            prop_assert!(node.seen_len() <= max_seen);
        }
    }

    /// The seen-cache never holds more than its bound, and never admits what it forgot.
    #[test]
    fn seen_cache_stays_bounded(
        ops in prop::collection::vec((any::<u8>(), 0u64..10_000, any::<bool>()), 1..300),
        max in 1usize..20,
    ) {
        let mut cache = SeenCache::new(max, Duration::from_secs(5));
        let mut now = t0();
        for (n, offset, expire) in ops {
            now += ms(offset / 10);
            let timestamp = now - ms(offset);
            let id = MessageId::from_bytes([n; 20]);
            if !cache.contains(&id) && cache.admits(timestamp, now) {
                cache.insert(id, Seen { timestamp, from: None, hops: 0, first_hops: 0 });
            }
            if expire {
                cache.expire(now);
            }
            prop_assert!(cache.len() <= max);
            if let Some(floor) = cache.floor() {
                prop_assert!(!cache.admits(floor, now));
            }
        }
    }

    /// A message whose signed content was changed (even with its id recomputed to match), or that is
    /// replayed after delivery or after its window, is never delivered.
    #[test]
    fn forged_or_replayed_never_delivered(
        field in 0usize..6,
        byte in any::<u8>(),
        replay_after in 0u64..1_000,
    ) {
        let (mut node, peers) = linked(Config::default());
        let origin = identity(10);
        let genuine = signed(&origin, 7, t0(), b"payload");
        let mut forged = genuine.clone();
        match field {
            0 => forged.payload.push(byte),
            1 => forged.topic.push(char::from(b'a' + byte % 26)),
            2 => forged.seq ^= u64::from(byte) | 1,
            3 => forged.timestamp += ms(u64::from(byte) + 1),
            4 => if let Some(auth) = forged.auth.as_mut() {
                auth.signature[usize::from(byte) % SIGNATURE_LEN] ^= 1 << (byte % 8);
            },
            _ => {
                // Someone else's valid signature over the same content.
                let impostor = signed(&identity(11), 7, t0(), b"payload");
                forged.auth = impostor.auth;
            }
        }
        forged.id = MessageId::compute(&forged.origin, forged.seq, &forged.topic, &forged.payload);
        node.handle_message(t0(), peers[0], &gossip(&forged));
        prop_assert!(delivered(&outputs(&mut node)).is_empty());
        prop_assert_eq!(node.stats().dropped(), 1);

        node.handle_message(t0(), peers[1], &gossip(&genuine));
        prop_assert_eq!(delivered(&outputs(&mut node)), vec![genuine.id]);
        let later = t0() + Duration::from_secs(replay_after);
        node.handle_timeout(later);
        node.handle_message(later, peers[2], &gossip(&genuine));
        prop_assert!(delivered(&outputs(&mut node)).is_empty());
    }
}

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
    node.handle_message(
        t0() + ms(30),
        peers[1],
        &wire::encode(&Frame::Ack(message.id)),
    );
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
            Frame::Tree(adverts) => Some((to, adverts)),
            _ => None,
        })
        .collect();
    assert_eq!(told.len(), 3);
    assert!(
        told.iter()
            .all(|(_, a)| a.len() == 1 && a[0].distance == 0 && !a[0].child)
    );
    assert_eq!(node.eager_links().count(), 0);

    let lowest = NodeId::from_bytes([0; 20]);
    let at = |millis: u64| t0() + ms(millis);
    let tell = |node: &mut Node, now: Instant, from: NodeId, distance: u8, child: bool| {
        let advert = TreeAdvert {
            root: lowest,
            distance,
            child,
        };
        node.handle_message(now, from, &wire::encode(&Frame::Tree(vec![advert])));
    };
    // Peer 0 is 3 hops from the lowest root, peer 1 only 2: peer 1 is the parent, and hears it once
    // the advertisement delay has passed.
    tell(&mut node, at(5), peers[0], 3, false);
    tell(&mut node, at(5), peers[1], 2, false);
    node.handle_timeout(at(5) + node.config().tree_advert_delay);
    let out = sends(&mut node);
    assert!(out.contains(&(
        peers[1],
        Frame::Tree(vec![TreeAdvert {
            root: lowest,
            distance: 3,
            child: true
        }])
    )));
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
        && matches!(f, Frame::Tree(a) if a[0].root == node.id() && a[0].distance == 0)));
    // ... until the hold ends: then peer 0 becomes the parent.
    node.handle_timeout(at(330) + hold);
    assert_eq!(
        node.eager_links().collect::<Vec<_>>(),
        vec![peers[0], peers[2]]
    );
}
