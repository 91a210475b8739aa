//! Unit tests of the node, by part, over shared fixtures (this module): identities, a node with
//! links, signed messages, and drains of outputs.

use core::cell::Cell;

use proptest::prelude::*;

use super::*;
use p2pmesh_base::{PUBLIC_KEY_LEN, SIGNATURE_LEN};

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
            Output::Transmit { to, bytes } => {
                Some((to, wire::decode(&bytes).expect("own frames decode")))
            }
            Output::Event(_) => None,
        })
        .collect()
}

/// Publishes `payload` on [`TOPIC`] at [`t0`] and drains the outputs: the message's id.
fn published<S: Signer, V: Verifier>(node: &mut Node<S, V>, payload: &[u8]) -> MessageId {
    let id = node.publish(t0(), TOPIC, payload.to_vec()).expect("valid");
    let _ = outputs(node);
    id
}

/// `from` acknowledges `id` at `at`.
fn ack<S: Signer, V: Verifier>(node: &mut Node<S, V>, at: Instant, from: NodeId, id: MessageId) {
    node.handle_message(at, from, &wire::encode(&Frame::Ack(id)));
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

/// A real identity whose id is lower than every `identity(n)`'s (the best of 4,096 keys).
fn low_identity() -> Identity {
    (0..4096u32)
        .map(|n| {
            let mut secret = [0xa5; 32];
            secret[..4].copy_from_slice(&n.to_be_bytes());
            Identity::from_secret_bytes(&secret)
        })
        .min_by_key(Identity::id)
        .expect("candidates")
}

/// `root`'s proof of itself, signed at `at`.
fn root_proof(root: &Identity, at: Instant) -> RootProof {
    RootProof::sign(root, at)
}

/// A `Tree` frame of `adverts` without proofs (the roots' proofs sent apart, in `Roots` frames).
fn tree(adverts: Vec<TreeAdvert>) -> Frame {
    Frame::Tree {
        proofs: Vec::new(),
        adverts,
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

mod plumtree;
mod policies;
mod reliability;
mod untrusted;

#[test]
fn publish_reaches_a_neighbour_once_with_one_hop() {
    let mut a = node(1);
    let mut b = node(2);
    a.handle_peer_up(t0(), b.local_id());
    b.handle_peer_up(t0(), a.local_id());
    let id = a.publish(t0(), TOPIC, b"hi".to_vec()).expect("valid");
    let out = outputs(&mut a);
    assert!(
        delivered(&out).is_empty(),
        "the origin does not deliver to itself"
    );
    let [Output::Transmit { to, bytes }] = out.as_slice() else {
        panic!("one push expected, got {out:?}");
    };
    assert_eq!(*to, b.local_id());
    b.handle_message(t0() + ms(10), a.local_id(), bytes);
    b.handle_message(t0() + ms(20), a.local_id(), bytes);
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
        (id, a.local_id(), 1, &b"hi"[..], a.local_id())
    );
    assert_eq!(b.stats().duplicates, 1);
    // Both copies are acknowledged; the retransmission is not taken for a cycle.
    let acks = out
        .iter()
        .filter(|o| matches!(o, Output::Transmit { bytes, .. } if wire::decode(bytes) == Ok(Frame::Ack(id))))
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
fn deliver_all_topics_delivers_unsubscribed_topics_once_and_still_relays() {
    let config = Config {
        deliver_all_topics: true,
        ..Config::default()
    };
    let (mut node, peers) = linked(config);
    assert!(node.unsubscribe(TOPIC));
    let origin = identity(10);
    let message = signed(&origin, 1, t0(), b"x");
    node.handle_message(t0(), peers[0], &gossip(&message));
    node.handle_message(t0() + ms(5), peers[1], &gossip(&message));
    let out = outputs(&mut node);
    let events: Vec<&Event> = out
        .iter()
        .filter_map(|o| match o {
            Output::Event(event) => Some(event),
            Output::Transmit { .. } => None,
        })
        .collect();
    let [
        Event::Delivered {
            id, topic, payload, ..
        },
    ] = events.as_slice()
    else {
        panic!("one delivery expected, got {events:?}");
    };
    assert_eq!(
        (*id, topic.as_str(), payload.as_slice()),
        (message.id, TOPIC, &b"x"[..])
    );
    assert_eq!(node.stats().delivered, 1);
    assert_eq!(node.stats().duplicates, 1);
    assert!(
        node.stats().payload_sends >= 1,
        "still relayed to the other links"
    );
    // The option does not make the node deliver its own messages.
    let _ = node
        .publish(t0(), "other", b"mine".to_vec())
        .expect("valid");
    assert!(delivered(&outputs(&mut node)).is_empty());
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
fn hop_limit_delivers_and_announces_at_the_limit_without_pushing() {
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
    assert_eq!(node.stats().payload_sends, 0, "not pushed");
    node.handle_timeout(t0() + Duration::from_secs(1));
    let announced: BTreeSet<NodeId> = sends(&mut node)
        .into_iter()
        .filter(|(_, f)| matches!(f, Frame::IHave(a) if a.iter().any(|a| a.id == at_limit.id)))
        .map(|(to, _)| to)
        .collect();
    assert_eq!(
        announced,
        BTreeSet::from([peers[1], peers[2]]),
        "announced to the others"
    );
}

/// The hop count is not signed: a relay that rewrites it (here to 255) must not stop the message.
/// The node takes it, and its next hop pulls it by GRAFT.
#[test]
fn a_rewritten_hop_count_slows_a_message_but_never_stops_it() {
    let (mut node, peers) = linked(Config::default());
    let mut next = node_with(2, Config::default());
    node.handle_peer_up(t0(), next.local_id());
    next.handle_peer_up(t0(), node.local_id());
    let _ = outputs(&mut node);
    let mut rewritten = signed(&identity(10), 1, t0(), b"far");
    rewritten.hops = u8::MAX;
    node.handle_message(t0(), peers[0], &gossip(&rewritten));
    assert_eq!(delivered(&outputs(&mut node)), vec![rewritten.id]);
    assert_eq!(node.stats().dropped(), 0);
    // The next hop hears of it and pulls it.
    let mut now = t0();
    let mut got = Vec::new();
    for _ in 0..40 {
        now += ms(100);
        node.handle_timeout(now);
        next.handle_timeout(now);
        for (to, frame) in sends(&mut node) {
            if to == next.local_id() {
                next.handle_message(now, node.local_id(), &wire::encode(&frame));
            }
        }
        for out in outputs(&mut next) {
            match out {
                Output::Transmit { to, bytes } if to == node.local_id() => {
                    node.handle_message(now, next.local_id(), &bytes);
                }
                Output::Event(Event::Delivered { id, .. }) => got.push(id),
                _ => {}
            }
        }
    }
    assert_eq!(got, vec![rewritten.id]);
}

/// peers[1] announces the first of two messages of `identity(20)`'s to `node`, then peers[0] sends
/// both (each after one hop); after the announcement flush, which of the two (0, 1) `node` announced
/// to each of `peers`.
fn announced_then_received(node: &mut Node, peers: &[NodeId]) -> Vec<Vec<usize>> {
    let messages: Vec<Message> = (1..=2)
        .map(|seq| {
            let mut message = signed(&identity(20), seq, t0(), b"m");
            message.hops = 1;
            message
        })
        .collect();
    let ihave = Frame::IHave(vec![Announce {
        id: messages[0].id,
        hops: 1,
    }]);
    node.handle_message(t0() + ms(10), peers[1], &wire::encode(&ihave));
    for message in &messages {
        node.handle_message(t0() + ms(20), peers[0], &gossip(message));
    }
    let _ = sends(node);
    node.handle_timeout(t0() + Duration::from_secs(1));
    let sent = sends(node);
    peers
        .iter()
        .map(|peer| {
            sent.iter()
                .filter(|(to, _)| to == peer)
                .flat_map(|(_, f)| match f {
                    Frame::IHave(ids) => ids.clone(),
                    _ => Vec::new(),
                })
                .filter_map(|a| messages.iter().position(|m| m.id == a.id))
                .collect()
        })
        .collect()
}
