use super::*;
use core::time::Duration;

fn t(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

fn id(n: u32) -> NodeId {
    NodeId::hash(n.to_be_bytes())
}

fn small() -> Config {
    Config {
        k: 2,
        alpha: 1,
        max_lookup_candidates: 8,
        ..Config::default()
    }
}

/// Drains `node`: the messages it sent (decoded) and its events.
fn drain(node: &mut Node) -> (Vec<(NodeId, Message)>, Vec<Event>) {
    let limits = Limits::from_config(node.config());
    let (mut sent, mut events) = (Vec::new(), Vec::new());
    while let Some(o) = node.poll_output() {
        match o {
            Output::Transmit { to, bytes } => {
                sent.push((to, Message::decode(&bytes, &limits).expect("valid")))
            }
            Output::Event(e) => events.push(e),
        }
    }
    (sent, events)
}

fn respond(node: &mut Node, now: Instant, from: NodeId, id: u64, body: Response) {
    node.handle_message(now, from, &Message::Response { id, body }.encode());
}

fn request_id(m: &Message) -> u64 {
    match m {
        Message::Request { id, .. } => *id,
        Message::Response { .. } => panic!("expected a request, got {m:?}"),
    }
}

fn finished(events: &[Event]) -> Option<(QueryResult, QueryEnd, u32, u32)> {
    events.iter().find_map(|e| match e {
        Event::QueryFinished {
            result,
            end,
            rounds,
            requests,
            ..
        } => Some((result.clone(), *end, *rounds, *requests)),
        _ => None,
    })
}

#[test]
fn garbage_is_dropped_and_counted() {
    let mut node = Node::new(id(0), Config::default(), 1);
    node.handle_message(t(0), id(1), &[]);
    node.handle_message(t(0), id(1), &[9, 9]);
    node.handle_message(t(0), id(1), &[1, 200, 3]);
    node.handle_message(t(0), id(1), &vec![1; 100_000]);
    node.handle_message(
        t(0),
        id(0),
        &Message::Request {
            id: 1,
            body: Request::Ping,
        }
        .encode(),
    );
    let s = node.stats();
    assert_eq!(s.dropped_bad_version, 2);
    assert_eq!(s.dropped_undecodable, 1);
    assert_eq!(s.dropped_oversized, 1);
    assert_eq!(s.dropped_from_self, 1);
    assert!(node.poll_output().is_none());
    assert!(node.routing_table().is_empty());
}

#[test]
fn requests_are_answered_and_make_the_requester_verified() {
    let mut node = Node::new(id(0), Config::default(), 1);
    node.handle_message(
        t(0),
        id(1),
        &Message::Request {
            id: 42,
            body: Request::Ping,
        }
        .encode(),
    );
    let (sent, events) = drain(&mut node);
    assert_eq!(
        sent,
        vec![(
            id(1),
            Message::Response {
                id: 42,
                body: Response::Pong
            }
        )]
    );
    assert!(matches!(events[..], [Event::PeerAdded { peer, .. }] if peer == id(1)));
    assert!(node.routing_table().contains(&id(1)));
}

#[test]
fn unmatched_and_spoofed_responses_are_dropped() {
    let mut node = Node::new(id(0), small(), 1);
    node.add_contact(t(0), id(1));
    let q = node.find_node(t(0), id(99));
    let (sent, _) = drain(&mut node);
    assert_eq!(sent.len(), 1);
    let (to, request) = &sent[0];
    assert_eq!(*to, id(1));
    let rid = request_id(request);
    let nodes = Response::Nodes {
        closer: vec![id(2)],
    };
    // Wrong id.
    respond(&mut node, t(10), id(1), rid.wrapping_add(1), nodes.clone());
    // Right id, wrong peer: dropped, and the real answer is still awaited.
    respond(&mut node, t(10), id(3), rid, nodes.clone());
    assert_eq!(node.stats().dropped_unmatched, 1);
    assert_eq!(node.stats().dropped_wrong_peer, 1);
    assert!(!node.routing_table().contains(&id(3)));
    // The right answer is taken; a duplicate is unmatched.
    respond(&mut node, t(20), id(1), rid, nodes.clone());
    respond(&mut node, t(20), id(1), rid, nodes);
    assert_eq!(node.stats().dropped_unmatched, 2);
    assert!(node.routing_table().contains(&id(1)));
    assert!(node.is_running(q));
    // id(2) is only heard of: asked, but not an entry.
    let (sent, _) = drain(&mut node);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, id(2));
    assert!(!node.routing_table().contains(&id(2)));
}

#[test]
fn wrong_kind_of_answer_fails_the_request() {
    let mut node = Node::new(id(0), small(), 1);
    node.add_contact(t(0), id(1));
    let _ = node.find_node(t(0), id(99));
    let (sent, _) = drain(&mut node);
    respond(
        &mut node,
        t(10),
        id(1),
        request_id(&sent[0].1),
        Response::Pong,
    );
    assert_eq!(node.stats().dropped_unexpected, 1);
    let (_, events) = drain(&mut node);
    let (result, end, _, requests) = finished(&events).expect("finished");
    assert_eq!(
        result,
        QueryResult::FindNode {
            target: id(99),
            closest: vec![]
        }
    );
    assert_eq!((end, requests), (QueryEnd::Completed, 1));
}

#[test]
fn request_timeout_moves_the_lookup_on_and_query_timeout_ends_it() {
    let config = Config {
        query_timeout: Duration::from_secs(5),
        k: 3,
        ..small()
    };
    let mut node = Node::new(id(0), config, 1);
    for n in 1..=5 {
        node.add_contact(t(0), id(n));
    }
    let _ = node.find_node(t(0), id(99));
    let (sent, _) = drain(&mut node);
    assert_eq!(sent.len(), 1, "alpha = 1");
    assert_eq!(node.poll_timeout(), Some(t(2_000)));
    node.handle_timeout(t(1_999));
    assert!(drain(&mut node).0.is_empty());
    node.handle_timeout(t(2_000));
    assert_eq!(node.stats().requests_timed_out, 1);
    let (sent2, _) = drain(&mut node);
    assert_eq!(sent2.len(), 1);
    assert_ne!(sent2[0].0, sent[0].0, "moves on to the next candidate");
    node.handle_timeout(t(4_000));
    let _ = drain(&mut node);
    // Overall timeout at 5 s, before the third request's 6 s.
    assert_eq!(node.poll_timeout(), Some(t(5_000)));
    node.handle_timeout(t(5_000));
    let (_, events) = drain(&mut node);
    let (_, end, _, requests) = finished(&events).expect("finished");
    assert_eq!((end, requests), (QueryEnd::TimedOut, 3));
}

#[test]
fn peer_down_fails_its_requests_at_once() {
    let mut node = Node::new(id(0), small(), 1);
    node.handle_peer_up(t(0), id(1));
    node.add_contact(t(0), id(2));
    let _ = node.find_node(t(0), id(1));
    let (sent, _) = drain(&mut node);
    assert_eq!(
        sent[0].0,
        id(1),
        "the verified contact is the target itself"
    );
    node.handle_peer_down(t(5), id(1));
    assert!(!node.routing_table().contains(&id(1)));
    let (sent, events) = drain(&mut node);
    assert!(events.contains(&Event::PeerRemoved { peer: id(1) }));
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, id(2));
}

/// Fills bucket 159 of a node with k = 2 and returns the node and the ids in it.
fn full_far_bucket() -> (Node, Vec<NodeId>) {
    let me = NodeId::from_bytes([0; ID_LEN]);
    let far = |n: u8| {
        let mut b = [0u8; ID_LEN];
        b[0] = 0x80;
        b[ID_LEN - 1] = n;
        NodeId::from_bytes(b)
    };
    let mut node = Node::new(me, small(), 1);
    node.handle_peer_up(t(0), far(1));
    node.handle_peer_up(t(1), far(2));
    let _ = drain(&mut node);
    (node, vec![far(1), far(2), far(3)])
}

#[test]
fn full_bucket_pings_and_evicts_the_silent() {
    let (mut node, ids) = full_far_bucket();
    node.handle_peer_up(t(2), ids[2]);
    let (sent, events) = drain(&mut node);
    assert!(events.is_empty(), "the newcomer waits");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, ids[0], "least recently seen is pinged");
    assert!(matches!(
        sent[0].1,
        Message::Request {
            body: Request::Ping,
            ..
        }
    ));
    node.handle_timeout(t(2) + Duration::from_secs(2));
    let (_, events) = drain(&mut node);
    assert_eq!(
        events,
        vec![
            Event::PeerRemoved { peer: ids[0] },
            Event::PeerAdded {
                peer: ids[2],
                bucket: 159
            }
        ]
    );
    assert!(node.routing_table().contains(&ids[2]));
    assert_eq!(node.routing_table().len(), 2);
}

#[test]
fn full_bucket_keeps_the_pinged_if_it_answers() {
    let (mut node, ids) = full_far_bucket();
    node.handle_peer_up(t(2), ids[2]);
    let (sent, _) = drain(&mut node);
    respond(
        &mut node,
        t(3),
        ids[0],
        request_id(&sent[0].1),
        Response::Pong,
    );
    node.handle_timeout(t(10_000));
    let (_, events) = drain(&mut node);
    assert!(events.is_empty());
    let table = node.routing_table();
    assert!(table.contains(&ids[0]) && table.contains(&ids[1]));
    assert!(!table.contains(&ids[2]));
    let order: Vec<_> = table
        .bucket(159)
        .expect("bucket")
        .entries()
        .iter()
        .map(|e| e.id())
        .collect();
    assert_eq!(
        order,
        vec![ids[1], ids[0]],
        "the pinged is now most recently seen"
    );
}

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
    let mut node = Node::new(id(0), config, 1);
    node.handle_peer_up(t(0), id(1));
    node.handle_peer_up(t(0), id(2));
    let _ = drain(&mut node);
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

#[test]
fn a_record_under_another_key_is_refused() {
    let mut node = Node::new(id(0), small(), 1);
    node.handle_peer_up(t(0), id(1));
    let _ = drain(&mut node);
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
    // A record under another key is not an answer.
    let wrong = Record {
        key: id(78),
        value: vec![],
        publisher: id(9),
        expires: t(100_000),
    };
    respond(
        &mut node,
        t(2),
        id(2),
        request_id(&sent[0].1),
        Response::Value { record: wrong },
    );
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
    let mut node = Node::new(id(0), small(), 1);
    node.handle_peer_up(t(0), id(1));
    let _ = drain(&mut node);
    let key = id(77);
    let q = node.get_value(t(0), key);
    let (sent, _) = drain(&mut node);
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
    let record = Record {
        key,
        value: b"v".to_vec(),
        publisher: id(9),
        expires: t(100_000),
    };
    respond(
        &mut node,
        t(2),
        id(2),
        request_id(&sent[0].1),
        Response::Value {
            record: record.clone(),
        },
    );
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
fn idle_buckets_are_refreshed() {
    let config = small();
    let interval = config.refresh_interval;
    let mut node = Node::new(id(0), config, 1);
    node.handle_peer_up(t(0), id(1));
    let _ = drain(&mut node);
    let bucket = id(0).bucket_index(&id(1)).expect("not us");
    assert_eq!(node.poll_timeout(), Some(t(0) + interval));
    node.handle_timeout(t(0) + interval);
    let (sent, events) = drain(&mut node);
    assert!(events.is_empty(), "refreshes report nothing");
    let [
        (
            to,
            Message::Request {
                body: Request::FindNode { target },
                ..
            },
        ),
    ] = &sent[..]
    else {
        panic!("expected one FIND_NODE, got {sent:?}");
    };
    assert_eq!(*to, id(1));
    assert_eq!(
        id(0).bucket_index(target),
        Some(bucket),
        "a random id in the idle bucket"
    );
    // A lookup into the bucket postpones its next refresh.
    let later = t(0) + interval + interval / 2;
    let _ = node.find_node(later, id(1));
    let b = node.routing_table().bucket(bucket).expect("bucket");
    assert_eq!(b.last_lookup(), later);
}

#[test]
fn too_many_queries_are_rejected() {
    let config = Config {
        max_queries: 1,
        ..small()
    };
    let mut node = Node::new(id(0), config, 1);
    node.add_contact(t(0), id(1));
    let a = node.find_node(t(0), id(5));
    let b = node.find_node(t(0), id(6));
    assert_ne!(a, b);
    let (_, events) = drain(&mut node);
    assert!(
        matches!(&events[..], [Event::QueryFinished { id, end: QueryEnd::Rejected, .. }] if *id == b)
    );
    assert_eq!(node.stats().queries_rejected, 1);
}

#[test]
fn output_queue_is_bounded() {
    let config = Config {
        max_outputs: 2,
        ..Config::default()
    };
    let mut node = Node::new(id(0), config, 1);
    for n in 1..=5 {
        node.handle_message(
            t(0),
            id(n),
            &Message::Request {
                id: 1,
                body: Request::Ping,
            }
            .encode(),
        );
    }
    // Each ping yields an event (new contact) and a pong: 10 outputs, 2 kept.
    let (sent, events) = drain(&mut node);
    assert_eq!(sent.len() + events.len(), 2);
    assert_eq!(node.stats().outputs_dropped, 8);
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut node = Node::new(id(0), small(), seed);
        node.add_contact(t(0), id(1));
        let _ = node.find_node(t(0), id(9));
        drain(&mut node).0
    };
    assert_eq!(run(5), run(5));
    assert_ne!(run(5), run(6), "request ids come from the seed");
}
