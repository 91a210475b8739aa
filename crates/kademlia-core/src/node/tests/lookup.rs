//! Lookups: request and query timeouts, peers going down, refresh, the query and output bounds.

use super::*;

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

#[test]
fn idle_buckets_are_refreshed() {
    let config = small();
    let interval = config.refresh_interval;
    let mut node = linked(config, &[1]);
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
