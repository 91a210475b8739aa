//! Nodes given two signaling servers, A then B, form their mesh on A. A crashes (its sockets close
//! and it tells nobody). Every node joins B, no node loses a link over it (no `PeerDisconnected`,
//! no `PeerTimedOut`), and broadcasts afterwards reach every node.
//!
//! In-memory links, real servers on TCP; real time. How long the failover took is printed, never
//! asserted; waits only stop a hung test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{
    Links, PATIENCE, TOPIC, TestNode, TestServer, init_tracing, is_connected, test_seed, topology,
    wait_until,
};
use futures_util::StreamExt as _;
use p2pmesh::Event;
use p2pmesh::memory::MemoryNetwork;
use tokio::time::Instant;

/// Few enough that every node links to every other (the default `max_peers` is 5): the mesh is
/// settled before the crash, so any link lost after it would be the failover's doing.
const NODES: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_fail_over_to_the_next_server_and_keep_their_links() {
    init_tracing();
    let seed = test_seed("nodes_fail_over_to_the_next_server_and_keep_their_links");
    let a = TestServer::start_crashable().await;
    let b = TestServer::start().await;
    let links = Links::Memory(MemoryNetwork::new());
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let index = u64::try_from(i).expect("few");
        nodes.push(TestNode::start_on(&[&a.url, &b.url], &links, seed, index, false).await);
    }
    wait_until("every node links to every other", || async {
        let graph = topology(&nodes.iter().collect::<Vec<_>>()).await;
        is_connected(&graph) && graph.values().all(|p| p.len() == NODES - 1)
    })
    .await;

    // From here on, each node's events are watched for its return to a server.
    let marks: Vec<usize> = nodes
        .iter()
        .map(|n| n.events.lock().unwrap().len())
        .collect();
    let returns: Vec<_> = nodes
        .iter()
        .map(|n| {
            let mut events = n.mesh.events();
            tokio::spawn(async move {
                while let Some(event) = events.next().await {
                    if matches!(event, Event::ServerReconnected) {
                        return Some(Instant::now());
                    }
                }
                None
            })
        })
        .collect();

    let crashed_at = Instant::now();
    a.crash();
    let mut slowest = Duration::ZERO;
    for (n, back) in nodes.iter().zip(returns) {
        let at = tokio::time::timeout(PATIENCE, back)
            .await
            .unwrap_or_else(|_| panic!("{} joined no other server", n.id))
            .expect("the watcher")
            .expect("the events end only when the mesh does");
        slowest = slowest.max(at - crashed_at);
    }
    eprintln!(
        "failover: {NODES} nodes all joined B within {slowest:?} of A's crash (not asserted)"
    );
    for (n, mark) in nodes.iter().zip(&marks) {
        let events = n.events.lock().unwrap();
        assert!(
            events[*mark..].iter().any(|e| matches!(
                e,
                Event::ServerDisconnected {
                    reconnecting: true,
                    ..
                }
            )),
            "{} saw its server go",
            n.id
        );
    }

    // Every node has every other's broadcast, sent after the failover, over the links it kept.
    for (i, n) in nodes.iter().enumerate() {
        n.mesh
            .broadcast(TOPIC, format!("after the failover, from {i}").into_bytes())
            .await
            .expect("broadcast");
    }
    wait_until("every node receives every other's broadcast", || async {
        nodes.iter().all(|receiver| {
            let got = receiver.received();
            nodes.iter().enumerate().all(|(i, sender)| {
                sender.id == receiver.id
                    || got.get(&sender.id).is_some_and(|s| {
                        s.contains(format!("after the failover, from {i}").as_bytes())
                    })
            })
        })
    })
    .await;

    for (n, mark) in nodes.iter().zip(&marks) {
        let events = n.events.lock().unwrap();
        let lost: Vec<&Event> = events[*mark..]
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    Event::PeerDisconnected { .. } | Event::PeerTimedOut { .. }
                )
            })
            .collect();
        assert!(lost.is_empty(), "{} lost links: {lost:?}", n.id);
    }
    let graph = topology(&nodes.iter().collect::<Vec<_>>()).await;
    assert!(
        graph.values().all(|p| p.len() == NODES - 1),
        "every link is still up: {graph:?}"
    );

    for n in &nodes {
        n.mesh.leave().await.expect("leave");
    }
    b.stop().await;
}
