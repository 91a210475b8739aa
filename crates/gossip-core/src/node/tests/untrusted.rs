//! Refused input and the at-most-once delivery properties.

use super::*;

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

#[test]
fn a_future_dated_flood_does_not_stop_honest_broadcasts() {
    let (mut node, peers) = linked(Config {
        max_seen: 16,
        ..Config::default()
    });
    let attacker = identity(10);
    let now = t0() + Duration::from_secs(60);
    // Signed, valid, dated just inside the clock-skew window, many more than the seen-cache holds.
    let future = now + Duration::from_secs(29);
    for seq in 0..40 {
        let flood = signed(&attacker, seq, future, &seq.to_be_bytes());
        node.handle_message(now, peers[0], &gossip(&flood));
    }
    let _ = outputs(&mut node);
    // An honest broadcast published a moment ago, still in flight, is delivered.
    let honest = signed(&identity(11), 1, now - ms(200), b"honest");
    node.handle_message(now, peers[1], &gossip(&honest));
    assert_eq!(delivered(&outputs(&mut node)), vec![honest.id]);
    // And so are the next ones, while the flood's timestamps are still ahead.
    for k in 1..=5u64 {
        let at = now + Duration::from_secs(k);
        let next = signed(&identity(12), k, at - ms(100), b"next");
        node.handle_message(at, peers[2], &gossip(&next));
        assert_eq!(delivered(&outputs(&mut node)), vec![next.id]);
    }
    assert!(
        node.stats().dropped_future > 0,
        "the future share is bounded"
    );
}

#[test]
fn an_origin_over_its_rate_is_throttled_and_others_are_not() {
    let (mut node, peers) = linked(Config {
        origin_rate: 10,
        origin_burst: 20,
        ..Config::default()
    });
    let flooder = identity(10);
    let now = t0();
    let mut accepted = 0;
    for seq in 0..100u64 {
        let message = signed(&flooder, seq, now, &seq.to_be_bytes());
        node.handle_message(now, peers[0], &gossip(&message));
        accepted += delivered(&outputs(&mut node)).len();
    }
    assert_eq!(accepted, 20, "its burst, no more");
    assert_eq!(node.stats().dropped_throttled, 80);
    // Another origin, at the same moment and over the same link, is not affected.
    let honest = signed(&identity(11), 1, now, b"honest");
    node.handle_message(now, peers[0], &gossip(&honest));
    assert_eq!(delivered(&outputs(&mut node)), vec![honest.id]);
    // Forged copies under the flooder's name (bad signatures) do not spend its tokens...
    let later = now + Duration::from_secs(1);
    for seq in 100..200u64 {
        let mut forged = signed(&identity(12), seq, later, b"f");
        forged.origin = flooder.id();
        forged.id = MessageId::compute(&forged.origin, seq, TOPIC, b"f");
        node.handle_message(later, peers[1], &gossip(&forged));
    }
    let _ = outputs(&mut node);
    // ...so after a second it has its rate's worth again.
    let mut refilled = 0;
    for seq in 200..230u64 {
        let message = signed(&flooder, seq, later, &seq.to_be_bytes());
        node.handle_message(later, peers[0], &gossip(&message));
        refilled += delivered(&outputs(&mut node)).len();
    }
    assert_eq!(refilled, 10);
}

#[test]
fn an_ihave_flood_of_made_up_ids_cannot_crowd_out_honest_announcements() {
    let config = Config {
        max_missing: 64,
        max_missing_per_link: 16,
        ..Config::default()
    };
    let max_ids = config.max_ids_per_frame;
    let (mut node, peers) = linked(config);
    let now = t0();
    // Two links announce thousands of ids that exist nowhere.
    for (link, salt) in [(peers[0], 0u32), (peers[1], 1)] {
        for frame in 0..4u32 {
            let announces: Vec<Announce> = (0..max_ids as u32)
                .map(|i| {
                    let n = (salt << 24) | (frame << 16) | i;
                    Announce {
                        id: MessageId::compute(&identity(99).id(), u64::from(n), TOPIC, b""),
                        hops: 0,
                    }
                })
                .collect();
            node.handle_message(now, link, &wire::encode(&Frame::IHave(announces)));
        }
    }
    // An honest link announces a real message: it is tracked and pulled.
    let honest = signed(&identity(11), 1, now, b"real");
    node.handle_message(
        now,
        peers[2],
        &wire::encode(&Frame::IHave(vec![Announce {
            id: honest.id,
            hops: 1,
        }])),
    );
    assert!(node.missing.contains_key(&honest.id));
    node.handle_timeout(now + Duration::from_secs(1));
    let grafted = sends(&mut node).into_iter().any(
        |(to, frame)| matches!(frame, Frame::Graft(ids) if to == peers[2] && ids.contains(&honest.id)),
    );
    assert!(grafted, "the honest announcement is pulled");
    assert!(node.missing.len() <= 64, "bounded overall");
    assert!(
        node.missing_owned.values().all(|ids| ids.len() <= 16),
        "bounded per link"
    );
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
                cache.insert(id, Seen { timestamp, from: None, hops: 0, first_hops: 0 }, now);
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
