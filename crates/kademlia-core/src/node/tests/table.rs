//! The routing table as the node keeps it: a full bucket pings its oldest contact.

use super::*;

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
