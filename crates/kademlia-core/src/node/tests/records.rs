//! Records: STORE and FIND_VALUE, bounds and expiry, PUT with republishing, GET with its hop.

use super::*;

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

#[test]
fn stored_records_are_bounded_checked_and_expire() {
    let config = Config {
        max_records: 1,
        ..Config::default()
    };
    let ttl = config.record_ttl;
    let mut node = Node::new(id(0), config, 1);
    let record = |key: u32, publisher: NodeId, expires: Instant| Record {
        key: id(key),
        value: vec![1, 2, 3],
        publisher,
        expires,
    };
    let far_future = t(0) + ttl * 10;
    // The TTL caps a longer expiry.
    assert!(store_request(
        &mut node,
        t(0),
        id(1),
        record(100, id(1), far_future)
    ));
    assert_eq!(node.records().next().map(|r| r.expires), Some(t(0) + ttl));
    // Full for a new key, but the same key may be replaced.
    assert!(!store_request(
        &mut node,
        t(0),
        id(1),
        record(101, id(1), far_future)
    ));
    assert!(store_request(
        &mut node,
        t(1),
        id(2),
        record(100, id(2), far_future)
    ));
    // A record for another publisher, or already expired, is refused.
    assert!(!store_request(
        &mut node,
        t(2),
        id(3),
        record(100, id(4), far_future)
    ));
    assert!(!store_request(
        &mut node,
        t(2),
        id(3),
        record(100, id(3), t(2))
    ));
    assert_eq!(node.stats().stores_accepted, 2);
    assert_eq!(node.stats().stores_refused, 3);

    assert!(
        matches!(find_value(&mut node, t(3), id(100)), Response::Value { record } if record.publisher == id(2))
    );
    let expiry = t(1) + ttl;
    assert_eq!(node.poll_timeout().map(|d| d <= expiry), Some(true));
    // Expired: not served even before the timer runs, then removed.
    assert!(matches!(
        find_value(&mut node, expiry, id(100)),
        Response::Nodes { .. }
    ));
    node.handle_timeout(expiry);
    assert_eq!(node.records().count(), 0);
    assert_eq!(node.stats().records_expired, 1);
}

#[test]
fn put_value_stores_at_the_closest_and_republishes() {
    let config = small();
    let republish = config.republish_interval;
    let mut node = linked(config, &[1, 2]);
    let key = id(77);
    let q = node.put_value(t(0), key, b"hello".to_vec());
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
        assert_eq!((record.key, record.publisher), (key, id(0)));
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

/// A GET of `id(77)` on a node that knows only `id(1)`, which names `id(2)` as closer: the node,
/// the query, the key and the id of the FIND_VALUE now sent to `id(2)`.
fn get_value_one_hop_away() -> (Node, QueryId, NodeId, u64) {
    let mut node = linked(small(), &[1]);
    let key = id(77);
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

/// A record under `key` published by `id(9)`, valid for long.
fn held(key: NodeId, value: &[u8]) -> Record {
    Record {
        key,
        value: value.to_vec(),
        publisher: id(9),
        expires: t(100_000),
    }
}

#[test]
fn a_record_under_another_key_is_refused() {
    let (mut node, q, key, rid) = get_value_one_hop_away();
    // A record under another key is not an answer.
    let record = held(id(78), &[]);
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
    let record = held(key, b"v");
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
