//! Answering requests, and what responses do: dropped garbage, spoofed and unmatched answers.

use super::*;

#[test]
fn garbage_is_dropped_and_counted() {
    let mut node = Node::new(id(0), Config::default(), 1);
    node.handle_message(t(0), id(1), &[]);
    node.handle_message(t(0), id(1), &[9, 9]);
    node.handle_message(t(0), id(1), &[crate::wire::VERSION, 200, 3]);
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
    let (mut node, q, sent) = finding(id(99));
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
    let (mut node, _, sent) = finding(id(99));
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
