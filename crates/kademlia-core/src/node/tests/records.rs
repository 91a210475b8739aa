//! Records: STORE and FIND_VALUE, bounds and expiry, PUT with republishing, GET with its hop.

use super::*;
use p2pmesh_base::Identity;

fn store_request(node: &mut Node, now: Instant, from: NodeId, record: Record) -> bool {
    node.handle_message(
        now,
        from,
        &Message::Request {
            id: 7,
            body: Request::Store { record },
        }
        .encode(),
    );
    let (sent, _) = drain(node);
    match &sent[..] {
        [
            (
                _,
                Message::Response {
                    body: Response::Stored { ok },
                    ..
                },
            ),
        ] => *ok,
        other => panic!("unexpected {other:?}"),
    }
}

fn find_value(node: &mut Node, now: Instant, key: NodeId) -> Response {
    node.handle_message(
        now,
        id(50),
        &Message::Request {
            id: 8,
            body: Request::FindValue { key },
        }
        .encode(),
    );
    let (mut sent, _) = drain(node);
    match sent.pop() {
        Some((_, Message::Response { body, .. })) => body,
        other => panic!("unexpected {other:?}"),
    }
}

/// The key of publisher `n`, whose id is its node id.
fn who(n: u8) -> Identity {
    Identity::from_secret_bytes(&[n; 32])
}

/// A record of publisher `n` under `salt`, version `seq`.
fn signed(n: u8, salt: &[u8], seq: u64, value: &[u8], expires: Instant) -> Record {
    Record::sign(&who(n), salt.to_vec(), seq, value.to_vec(), expires)
}

/// Whether `node` serves a record under `key`, and its value.
fn served(node: &mut Node, now: Instant, key: NodeId) -> Option<Vec<u8>> {
    match find_value(node, now, key) {
        Response::Value { record } => Some(record.value),
        _ => None,
    }
}

#[test]
fn stored_records_are_bounded_checked_and_expire() {
    let config = Config {
        max_records: 1,
        ..Config::default()
    };
    let ttl = config.record_ttl;
    let mut node = Node::new(id(0), config, 1);
    let far_future = t(0) + ttl * 10;
    // The TTL caps a longer expiry.
    let first = signed(1, b"a", 1, b"one", far_future);
    let key = first.key;
    assert!(store_request(&mut node, t(0), who(1).id(), first));
    assert_eq!(node.records().next().map(|r| r.expires), Some(t(0) + ttl));
    // Full for a new key, but the publisher may replace its record with a higher seq.
    let other_key = signed(1, b"b", 1, b"two", far_future);
    assert!(!store_request(&mut node, t(0), who(1).id(), other_key));
    assert_eq!(node.stats().stores_full, 1);
    let newer = signed(1, b"a", 2, b"newer", far_future);
    assert!(store_request(&mut node, t(1), who(1).id(), newer));
    // A record sent by a node other than its publisher, or already expired, is refused.
    let relayed = signed(1, b"a", 3, b"relayed", far_future);
    assert!(!store_request(&mut node, t(2), who(3).id(), relayed));
    let expired = signed(1, b"a", 3, b"late", t(2));
    assert!(!store_request(&mut node, t(2), who(1).id(), expired));
    assert_eq!(node.stats().stores_accepted, 2);
    assert_eq!(node.stats().stores_refused, 3);

    assert_eq!(served(&mut node, t(3), key), Some(b"newer".to_vec()));
    let expiry = t(1) + ttl;
    assert_eq!(node.poll_timeout().map(|d| d <= expiry), Some(true));
    // Expired: not served even before the timer runs, then removed.
    assert_eq!(served(&mut node, expiry, key), None);
    node.handle_timeout(expiry);
    assert_eq!(node.records().count(), 0);
    assert_eq!(node.stats().records_expired, 1);
}

#[test]
fn another_publisher_cannot_overwrite_a_record() {
    let mut node = Node::new(id(0), Config::default(), 1);
    let far = t(1_000_000);
    let victim = signed(1, b"name", 1, b"victim", far);
    let key = victim.key;
    assert!(store_request(&mut node, t(0), who(1).id(), victim.clone()));
    let attacker = who(2).id();
    // Its own record under the victim's name, with a higher seq: the name is the victim's while its
    // record lives.
    assert!(!store_request(
        &mut node,
        t(1),
        attacker,
        signed(2, b"name", 9, b"attacker", far)
    ));
    assert_eq!(node.stats().stores_stale, 1);
    // The victim's key and a higher seq, but the attacker's signature: refused.
    let mut forged = signed(2, b"name", 9, b"attacker", far);
    forged.public_key = victim.public_key;
    forged.key = key;
    assert!(!store_request(&mut node, t(1), attacker, forged.clone()));
    // Even sent as if relayed for the victim.
    assert!(!store_request(&mut node, t(1), who(1).id(), forged));
    assert_eq!(node.stats().records_bad_signature, 1);
    assert_eq!(served(&mut node, t(2), key), Some(b"victim".to_vec()));
}

#[test]
fn a_lower_or_equal_seq_does_not_replace() {
    let mut node = Node::new(id(0), Config::default(), 1);
    let far = t(0) + Config::default().record_ttl * 10;
    let publisher = who(1).id();
    let v5 = signed(1, b"", 5, b"five", far);
    let key = v5.key;
    assert!(store_request(&mut node, t(0), publisher, v5.clone()));
    // An older version (a replay of what the publisher once signed) is refused.
    assert!(!store_request(
        &mut node,
        t(1),
        publisher,
        signed(1, b"", 4, b"four", far)
    ));
    // The same seq with another value is refused.
    assert!(!store_request(
        &mut node,
        t(1),
        publisher,
        signed(1, b"", 5, b"other", far)
    ));
    assert_eq!(node.stats().stores_stale, 2);
    assert_eq!(served(&mut node, t(2), key), Some(b"five".to_vec()));
    // The same record again is a republication: accepted, its expiry renewed.
    assert!(store_request(&mut node, t(3), publisher, v5));
    assert_eq!(
        node.records().next().map(|r| r.expires),
        Some(t(3) + node.config().record_ttl)
    );
    // A higher seq replaces.
    assert!(store_request(
        &mut node,
        t(4),
        publisher,
        signed(1, b"", 6, b"six", far)
    ));
    assert_eq!(served(&mut node, t(5), key), Some(b"six".to_vec()));
}

#[test]
fn one_publisher_cannot_fill_the_store() {
    let config = Config {
        max_records: 4,
        max_records_per_publisher: 2,
        max_bytes_per_publisher: 100,
        ..Config::default()
    };
    let mut node = Node::new(id(0), config, 1);
    let far = t(1_000_000);
    let greedy = who(1).id();
    for salt in [b"1", b"2"] {
        assert!(store_request(
            &mut node,
            t(0),
            greedy,
            signed(1, salt, 1, b"v", far)
        ));
    }
    // Its third record, under a new key, is over its quota: the store still has room for others.
    assert!(!store_request(
        &mut node,
        t(1),
        greedy,
        signed(1, b"3", 1, b"v", far)
    ));
    assert_eq!(node.stats().stores_over_quota, 1);
    assert!(store_request(
        &mut node,
        t(1),
        who(2).id(),
        signed(2, b"other", 1, b"v", far)
    ));
    // Bytes count too: one value over its byte quota is refused, though it holds one record.
    let big = vec![0; 100];
    assert!(!store_request(
        &mut node,
        t(2),
        who(3).id(),
        signed(3, b"3", 1, &big, far)
    ));
    assert!(store_request(
        &mut node,
        t(2),
        who(3).id(),
        signed(3, b"3", 1, &big[..99], far)
    ));
    assert_eq!(node.stats().stores_over_quota, 2);
    assert_eq!(node.records().count(), 4);
}

#[test]
fn put_value_stores_at_the_closest_and_republishes() {
    let config = small();
    let republish = config.republish_interval;
    let record = Record::sign(&who(1), b"greeting".to_vec(), 1, b"hello".to_vec(), t(0));
    let key = record.key;
    let mut node = Node::new(who(1).id(), small(), 1);
    for n in [1, 2] {
        node.handle_peer_up(t(0), id(n));
    }
    let _ = drain(&mut node);
    let q = node.put_value(t(0), record);
    // Lookup: each contact answers with nothing new.
    for _ in 0..2 {
        let (sent, _) = drain(&mut node);
        for (to, m) in sent {
            respond(
                &mut node,
                t(10),
                to,
                request_id(&m),
                Response::Nodes { closer: vec![] },
            );
        }
    }
    let (sent, _) = drain(&mut node);
    assert_eq!(sent.len(), 2, "a STORE to each of the k closest");
    for (to, m) in &sent {
        let Message::Request {
            id: rid,
            body: Request::Store { record },
        } = m
        else {
            panic!("expected STORE, got {m:?}");
        };
        assert_eq!((record.key, record.publisher()), (key, who(1).id()));
        assert!(record.verify(p2pmesh_base::verify));
        let ok = *to == id(1);
        respond(&mut node, t(20), *to, *rid, Response::Stored { ok });
    }
    let (_, events) = drain(&mut node);
    let (result, end, rounds, requests) = finished(&events).expect("finished");
    assert_eq!(result, QueryResult::PutValue { key, stored: 1 });
    assert_eq!((end, rounds, requests), (QueryEnd::Completed, 1, 4));
    assert!(!node.is_running(q));
    // Our own record is served locally.
    let get = node.get_value(t(30), key);
    let (_, events) = drain(&mut node);
    assert!(
        matches!(&events[..], [Event::QueryFinished { id, rounds: 0, requests: 0, result: QueryResult::GetValue { record: Some(_), .. }, .. }] if *id == get)
    );
    // Republished after the interval, with a fresh expiry and no event.
    let at = t(0) + republish;
    assert!(node.poll_timeout().is_some_and(|d| d <= at));
    node.handle_timeout(at);
    let (sent, events) = drain(&mut node);
    assert!(!sent.is_empty());
    assert!(events.is_empty());
    assert_eq!(
        node.published().next().map(|r| r.expires),
        Some(at + node.config().record_ttl)
    );
}

/// A GET of the key of [`held`] records on a node that knows only `id(1)`, which names `id(2)` as closer: the node,
/// the query, the key and the id of the FIND_VALUE now sent to `id(2)`.
fn get_value_one_hop_away() -> (Node, QueryId, NodeId, u64) {
    let mut node = linked(small(), &[1]);
    let key = held(b"").key;
    let q = node.get_value(t(0), key);
    let (sent, _) = drain(&mut node);
    assert!(matches!(
        sent[0].1,
        Message::Request {
            body: Request::FindValue { .. },
            ..
        }
    ));
    respond(
        &mut node,
        t(1),
        id(1),
        request_id(&sent[0].1),
        Response::Nodes {
            closer: vec![id(2)],
        },
    );
    let (sent, _) = drain(&mut node);
    assert_eq!(sent[0].0, id(2));
    (node, q, key, request_id(&sent[0].1))
}

/// A record published by `who(9)` under the salt `b"held"`, valid for long.
fn held(value: &[u8]) -> Record {
    signed(9, b"held", 1, value, t(100_000))
}

#[test]
fn a_record_under_another_key_is_refused() {
    let (mut node, q, key, rid) = get_value_one_hop_away();
    // A record under another key is not an answer.
    let record = signed(9, b"other", 1, &[], t(100_000));
    respond(&mut node, t(2), id(2), rid, Response::Value { record });
    assert_eq!(node.stats().dropped_unexpected, 1);
    // id(2) failed, id(1) answered without the value: nothing left to ask.
    let (_, events) = drain(&mut node);
    let (result, end, _, _) = finished(&events).expect("finished");
    assert_eq!(result, QueryResult::GetValue { key, record: None });
    assert_eq!(end, QueryEnd::Completed);
    assert!(!node.is_running(q));
}

#[test]
fn get_value_found_reports_the_hop_of_the_holder() {
    let (mut node, q, key, rid) = get_value_one_hop_away();
    let record = held(b"v");
    assert_eq!(record.key, key);
    let answer = Response::Value {
        record: record.clone(),
    };
    respond(&mut node, t(2), id(2), rid, answer);
    let (_, events) = drain(&mut node);
    assert_eq!(
        events.last(),
        Some(&Event::QueryFinished {
            id: q,
            result: QueryResult::GetValue {
                key,
                record: Some(record)
            },
            end: QueryEnd::Completed,
            rounds: 2,
            requests: 2,
        })
    );
}

#[test]
fn a_forged_value_answer_is_discarded() {
    let (mut node, q, key, rid) = get_value_one_hop_away();
    // The publisher's key and a well-formed record, but a value it never signed.
    let mut forged = held(b"v");
    forged.value = b"forged".to_vec();
    respond(
        &mut node,
        t(2),
        id(2),
        rid,
        Response::Value { record: forged },
    );
    assert_eq!(node.stats().records_bad_signature, 1);
    // Not an answer: the lookup went on, and with no candidate left it found nothing.
    let (_, events) = drain(&mut node);
    let (result, end, _, _) = finished(&events).expect("finished");
    assert_eq!(result, QueryResult::GetValue { key, record: None });
    assert_eq!(end, QueryEnd::Completed);
    assert!(!node.is_running(q));
}
