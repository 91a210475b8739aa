//! 40 nodes on virtual time: they join one by one through the signaling server, form one connected mesh
//! with at most `max_peers` links each, deliver a broadcast to everyone, route a direct message to a
//! non-neighbour, and find a node by lookup.

#![allow(clippy::unwrap_used)]

mod harness;

use std::time::Duration;

use harness::Net;
use mesh_core::{Config, Event, MessageRef};

const N: usize = 40;

fn formed_mesh(seed_offset: usize) -> Net {
    let config = Config::default();
    let mut net = Net::new(N, &config);
    for i in 0..N {
        net.do_with(i, |n, _| n.subscribe("news").unwrap());
    }
    for k in 0..N {
        let i = (k + seed_offset) % N;
        net.join(i);
        net.run_for(Duration::from_millis(200));
    }
    net.run_for(Duration::from_secs(60));
    net
}

#[test]
fn mesh_forms_broadcasts_routes_and_looks_up() {
    let mut net = formed_mesh(0);
    let max_peers = Config::default().max_peers;
    for (i, n) in net.live_nodes() {
        let links = n.links();
        assert!(
            links.len() <= max_peers,
            "node {i} has {} links",
            links.len()
        );
        assert!(!links.is_empty(), "node {i} has no link");
    }
    assert_eq!(net.components(), 1, "the mesh is one component");
    let stats: Vec<_> = net.live_nodes().iter().map(|(_, n)| n.stats()).collect();
    assert!(
        stats
            .iter()
            .all(|s| s.hello_failures == 0 && s.dropped_bad_signature == 0)
    );

    // A broadcast reaches every other node.
    net.events.clear();
    net.do_with(0, |n, now| {
        n.broadcast(now, "news", b"hello all".to_vec()).unwrap()
    });
    net.run_for(Duration::from_secs(10));
    let got: std::collections::BTreeSet<usize> = net
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Message {
                topic: Some(t),
                data,
                ..
            } if t == "news" && data == b"hello all" => Some(*i),
            _ => None,
        })
        .collect();
    assert_eq!(got.len(), N - 1, "broadcast delivered to every other node");
    assert!(!got.contains(&0));

    // A direct message to a node that is not a neighbour arrives, over the mesh.
    let from = 3;
    let links = net.node(from).links();
    let to = (0..N)
        .find(|&j| j != from && !links.contains(&net.ids[j]))
        .unwrap();
    let to_id = net.ids[to];
    let fallbacks_before: u64 = net
        .live_nodes()
        .iter()
        .map(|(_, n)| n.stats().server_fallbacks)
        .sum();
    net.events.clear();
    let id = net.do_with(from, |n, now| n.send(now, to_id, b"psst".to_vec()).unwrap());
    net.run_for(Duration::from_secs(10));
    let delivered: Vec<u32> = net
        .events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::Message {
                from: f,
                topic: None,
                data,
                hops,
                id: MessageRef::Direct(d),
            } if *i == to && *f == net.ids[from] && data == b"psst" && *d == id => Some(*hops),
            _ => None,
        })
        .collect();
    assert_eq!(delivered.len(), 1, "the direct message arrived once");
    assert!(delivered[0] >= 2, "it was routed over the mesh");
    let fallbacks_after: u64 = net
        .live_nodes()
        .iter()
        .map(|(_, n)| n.stats().server_fallbacks)
        .sum();
    assert_eq!(
        fallbacks_before, fallbacks_after,
        "the server was not needed"
    );
    assert!(
        !net.events
            .iter()
            .any(|(_, e)| matches!(e, Event::DirectFailed { .. }))
    );

    // A lookup finds a node that is not a link.
    let target = net.ids[(to + 7) % N];
    let q = net.do_with(from, |n, now| n.find_node(now, target));
    net.run_for(Duration::from_secs(10));
    let result = net
        .events
        .iter()
        .find_map(|(i, e)| match e {
            Event::LookupFinished {
                id, peers, rounds, ..
            } if *i == from && *id == q => Some((peers.clone(), *rounds)),
            _ => None,
        })
        .expect("lookup finished");
    assert_eq!(result.0.first(), Some(&target), "lookup found the target");
}

#[test]
fn mesh_heals_after_crashes() {
    let mut net = formed_mesh(7);
    for i in [1, 5, 9, 13] {
        net.crash(i);
    }
    net.run_for(Duration::from_secs(90));
    assert_eq!(
        net.components(),
        1,
        "the live nodes are one component again"
    );
    for (i, n) in net.live_nodes() {
        for p in n.links() {
            assert!(
                !net.dead.contains(&net.index_of(&p)),
                "node {i} still links a dead node"
            );
        }
    }
}
