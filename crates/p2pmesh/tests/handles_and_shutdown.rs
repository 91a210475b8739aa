//! The handle's contract, on the in-memory network: dropping the last handle leaves like `leave`
//! (the neighbour is told), streams end after `leave`, a second `join` is refused, a transport that
//! holds another id is refused, and a direct message between neighbours arrives on both streams.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::StreamExt as _;
use p2pmesh::memory::MemoryNetwork;
use p2pmesh::transport::PeerId;
use p2pmesh::transport::memory::MemorySignalingHub;
use p2pmesh::{DisconnectReason, Error, Event, Events, Keypair, Mesh, NodeId};

const PATIENCE: Duration = Duration::from_secs(30);

async fn next_matching(events: &mut Events, f: impl Fn(&Event) -> bool) -> Event {
    let find = async {
        while let Some(event) = events.next().await {
            if f(&event) {
                return event;
            }
        }
        panic!("the event stream ended");
    };
    tokio::time::timeout(PATIENCE, find)
        .await
        .expect("event in time")
}

/// Two joined nodes whose link is up on both sides; returns b's event stream too.
async fn linked_pair(network: &MemoryNetwork) -> (Mesh, Mesh, Events) {
    let a = network.builder().unwrap().build().expect("a builds");
    let mut a_events = a.events();
    a.join().await.expect("a joins");
    let b = network.builder().unwrap().build().expect("b builds");
    let mut b_events = b.events();
    b.join().await.expect("b joins");
    let (a_id, b_id) = (a.local_id(), b.local_id());
    next_matching(
        &mut b_events,
        |e| matches!(e, Event::PeerConnected { peer } if *peer == a_id),
    )
    .await;
    next_matching(
        &mut a_events,
        |e| matches!(e, Event::PeerConnected { peer } if *peer == b_id),
    )
    .await;
    (a, b, b_events)
}

#[tokio::test]
async fn dropping_the_last_handle_leaves_the_mesh() {
    let network = MemoryNetwork::new();
    let (a, b, mut b_events) = linked_pair(&network).await;
    let a_id = a.local_id();
    let clone = a.clone();
    drop(a);
    // A clone keeps the mesh alive.
    assert_eq!(clone.peers().await.expect("alive"), vec![b.local_id()]);
    drop(clone);
    let event = next_matching(
        &mut b_events,
        |e| matches!(e, Event::PeerDisconnected { peer, .. } if *peer == a_id),
    )
    .await;
    assert_eq!(
        event,
        Event::PeerDisconnected {
            peer: a_id,
            reason: DisconnectReason::PeerLeft
        }
    );
    b.leave().await.expect("leave");
}

#[tokio::test]
async fn after_leave_streams_end_and_commands_fail() {
    let network = MemoryNetwork::new();
    let (a, b, _) = linked_pair(&network).await;
    let mut a_events = a.events();
    let mut topic = a.subscribe("t").await.expect("subscribe");
    assert_eq!(a.join().await, Err(Error::AlreadyJoined));
    a.leave().await.expect("leave");
    a.leave().await.expect("leaving twice is fine");
    assert_eq!(a.peers().await, Err(Error::Closed));
    assert_eq!(a.broadcast("t", b"late".to_vec()).await, Err(Error::Closed));
    let rest: Vec<Event> = tokio::time::timeout(PATIENCE, (&mut a_events).collect())
        .await
        .expect("the event stream ends");
    assert!(
        rest.iter().all(|e| !matches!(e, Event::Message(_))),
        "{rest:?}"
    );
    assert!(
        tokio::time::timeout(PATIENCE, topic.next())
            .await
            .expect("the subscription ends")
            .is_none()
    );
    b.leave().await.expect("leave");
}

#[tokio::test]
async fn direct_messages_arrive_as_events() {
    let network = MemoryNetwork::new();
    let (a, b, mut b_events) = linked_pair(&network).await;
    let id = a
        .send(b.local_id(), b"direct".to_vec())
        .await
        .expect("send");
    let _ = id;
    let a_id = a.local_id();
    let event = next_matching(&mut b_events, |e| matches!(e, Event::Message(_))).await;
    let Event::Message(m) = event else {
        unreachable!()
    };
    assert_eq!((m.from, m.topic, &m.data[..]), (a_id, None, &b"direct"[..]));
    assert_eq!(
        a.send(a_id, b"me".to_vec()).await,
        Err(Error::Node(p2pmesh::mesh_core::Error::SelfAddressed))
    );
    let table: Vec<NodeId> = b.routing_table().await.expect("table");
    assert!(table.contains(&a_id), "{table:?}");
    a.leave().await.expect("leave");
    b.leave().await.expect("leave");
}

#[tokio::test]
async fn a_transport_with_another_id_is_refused() {
    let hub = MemorySignalingHub::new(16);
    let other = Keypair::generate().unwrap();
    let transport = hub
        .join(PeerId::new(other.peer_id().to_string()))
        .expect("hub");
    let result = Mesh::builder()
        .keypair(Keypair::generate().unwrap())
        .transport(transport)
        .build();
    assert!(matches!(result, Err(Error::IdMismatch { .. })));
}
