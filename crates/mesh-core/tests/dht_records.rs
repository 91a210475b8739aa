//! DHT records over the mesh: a node publishes a signed record under its key and a salt, a node that
//! does not store it finds it over the network (signature checked), and a new value from the
//! publisher replaces the old one.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use harness::Net;
use kademlia_core::{QueryId, QueryResult, Record};
use mesh_core::{Config, Error, Event};

mod harness;

/// More than `k` (20), so that some nodes do not store the record and must ask for it.
const N: usize = 30;

fn formed_mesh() -> Net {
    let mut net = Net::new(N, &Config::default());
    for i in 0..N {
        net.join(i);
        net.run_for(Duration::from_millis(200));
    }
    net.run_for(Duration::from_secs(30));
    net
}

/// The result of the DHT query `q` of node `i`.
fn dht_result(net: &Net, i: usize, q: QueryId) -> QueryResult {
    net.events
        .iter()
        .find_map(|(n, e)| match e {
            Event::Dht(kademlia_core::Event::QueryFinished { id, result, .. })
                if *n == i && *id == q =>
            {
                Some(result.clone())
            }
            _ => None,
        })
        .expect("the query finished")
}

/// Node `i` looks `key` up, over the network (not in its own store): the record found.
fn get(net: &mut Net, i: usize, key: kademlia_core::NodeId) -> Option<Record> {
    let q = net.do_with(i, |n, now| n.get_value(now, key));
    net.run_for(Duration::from_secs(10));
    let rounds = net
        .events
        .iter()
        .find_map(|(n, e)| match e {
            Event::Dht(kademlia_core::Event::QueryFinished { id, rounds, .. })
                if *n == i && *id == q =>
            {
                Some(*rounds)
            }
            _ => None,
        })
        .expect("the query finished");
    assert!(rounds >= 1, "found over the network, not in its own store");
    match dht_result(net, i, q) {
        QueryResult::GetValue { record, .. } => record,
        other => panic!("get gave {other:?}"),
    }
}

fn put(net: &mut Net, i: usize, salt: &[u8], value: &[u8]) -> usize {
    let q = net.do_with(i, |n, now| {
        n.put_value(now, salt.to_vec(), value.to_vec()).unwrap()
    });
    net.run_for(Duration::from_secs(10));
    match dht_result(net, i, q) {
        QueryResult::PutValue { stored, .. } => stored,
        other => panic!("put gave {other:?}"),
    }
}

#[test]
fn a_signed_record_is_found_and_replaced_by_its_publisher() {
    let mut net = formed_mesh();
    let publisher = 2;
    let key = Record::key_for(&net.node(publisher).public_key(), b"profile");
    assert!(put(&mut net, publisher, b"profile", b"v1") >= 1);

    let reader = (0..N)
        .find(|&i| i != publisher && net.node(i).kademlia().records().all(|r| r.key != key))
        .expect("a node that does not store the record");
    let found = get(&mut net, reader, key).expect("found");
    assert_eq!(found.value, b"v1");
    assert_eq!(found.publisher(), net.ids[publisher]);
    assert!(found.verify(p2pmesh_base::verify));
    let first_seq = found.seq;

    // A new value from the publisher replaces the old one wherever it was stored.
    assert!(put(&mut net, publisher, b"profile", b"v2") >= 1);
    let found = get(&mut net, reader, key).expect("found");
    assert_eq!(found.value, b"v2");
    assert!(found.seq > first_seq);
    for (i, n) in net.live_nodes() {
        for r in n.kademlia().records().filter(|r| r.key == key) {
            assert_eq!(r.value, b"v2", "node {i} still holds the old value");
        }
    }

    // A salt longer than BEP 44's 64 bytes is refused before anything is sent.
    let long = net.do_with(publisher, |n, now| {
        n.put_value(now, vec![0; 65], b"x".to_vec())
    });
    assert!(matches!(long, Err(Error::TooLarge { len: 65, max: 64 })));
}
