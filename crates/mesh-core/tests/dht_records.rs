//! The DHT over the mesh: a node publishes a signed record under a name, a node that does not store it
//! finds it over the network (key and signature checked), a new value from the publisher replaces the
//! old one, nobody else can take the name, a removal hides it, and records outlive the crash of a
//! third of the nodes.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use harness::Net;
use kademlia_core::{NodeId, Record, StoreError};
use mesh_core::{Config, Error, Event, QueryId};

mod harness;

/// Well over `lookup_k` (20) replicas and their links (which keep copies), so that some nodes do not
/// store the record and must ask for it.
const N: usize = 120;

fn formed_mesh(n: usize) -> Net {
    formed_mesh_with(n, &Config::default())
}

fn formed_mesh_with(n: usize, config: &Config) -> Net {
    let mut net = Net::new(n, config);
    for i in 0..n {
        net.join(i);
        net.run_for(Duration::from_millis(200));
    }
    net.run_for(Duration::from_secs(30));
    net
}

/// What a put of node `i` reported: (stored, asked, refused).
fn put_result(net: &Net, i: usize, q: QueryId) -> (u32, u32, Option<StoreError>) {
    net.events
        .iter()
        .find_map(|(n, e)| match e {
            Event::PutFinished {
                id,
                stored,
                asked,
                refused,
                ..
            } if *n == i && *id == q => Some((*stored, *asked, *refused)),
            _ => None,
        })
        .expect("the put finished")
}

fn put(net: &mut Net, i: usize, name: &[u8], value: &[u8]) -> (u32, u32, Option<StoreError>) {
    let q = net.do_with(i, |n, now| n.put(now, name, value.to_vec()).unwrap());
    net.run_for(Duration::from_secs(10));
    put_result(net, i, q)
}

/// Node `i` looks `name` up: (record, rounds, hops).
fn get(net: &mut Net, i: usize, name: &[u8]) -> (Option<Record>, u32, u32) {
    let q = net.do_with(i, |n, now| n.get(now, name).unwrap());
    net.run_for(Duration::from_secs(10));
    net.events
        .iter()
        .find_map(|(n, e)| match e {
            Event::GetFinished {
                id,
                record,
                answered,
                rounds,
                hops,
                key,
            } if *n == i && *id == q => {
                assert!(*answered, "somebody answered");
                assert_eq!(*key, Record::key_for(name));
                Some((record.clone(), *rounds, *hops))
            }
            _ => None,
        })
        .expect("the get finished")
}

/// A node other than `except` that neither stores nor publishes the record under `key`.
fn stranger(net: &Net, key: NodeId, except: &[usize]) -> usize {
    net.live_nodes()
        .into_iter()
        .find(|(i, n)| {
            !except.contains(i)
                && n.kademlia().records().all(|r| r.key != key)
                && n.published().all(|r| r.key != key)
        })
        .map(|(i, _)| i)
        .expect("a node that does not store the record")
}

#[test]
fn a_signed_record_is_found_and_replaced_by_its_publisher_only() {
    let mut net = formed_mesh(N);
    let publisher = 2;
    let key = Record::key_for(b"profile");
    let (stored, asked, refused) = put(&mut net, publisher, b"profile", b"v1");
    assert!(stored >= 10, "stored at {stored} of {asked} ({refused:?})");
    assert_eq!(refused, None);

    let reader = stranger(&net, key, &[publisher]);
    let (found, rounds, hops) = get(&mut net, reader, b"profile");
    let found = found.expect("found");
    assert_eq!(found.value, b"v1");
    assert_eq!(found.publisher(), net.ids[publisher]);
    assert!(found.verify(p2pmesh_base::verify));
    assert!(
        rounds >= 1 && hops >= 1,
        "over the network: {rounds} rounds, {hops} hops"
    );
    let first_seq = found.seq;

    // A new value from the publisher replaces the old one wherever it was stored.
    let (stored, _, _) = put(&mut net, publisher, b"profile", b"v2");
    assert!(stored >= 10);
    let (found, _, _) = get(&mut net, reader, b"profile");
    let found = found.expect("found");
    assert_eq!(found.value, b"v2");
    assert!(found.seq > first_seq);
    for (i, n) in net.live_nodes() {
        for r in n.kademlia().records().filter(|r| r.key == key) {
            assert_eq!(r.value, b"v2", "node {i} still holds the old value");
        }
    }

    // Another publisher cannot take the name: the nodes that hold it refuse, and gets still find
    // the publisher's record.
    let squatter = stranger(&net, key, &[publisher, reader]);
    let (_, _, refused) = put(&mut net, squatter, b"profile", b"mine");
    assert_eq!(refused, Some(StoreError::OtherPublisher));
    let (found, _, _) = get(&mut net, reader, b"profile");
    assert_eq!(found.unwrap().publisher(), net.ids[publisher]);
    // The squatter forgot its record (not republished, not served), and nobody stores it.
    assert_eq!(net.node(squatter).published().count(), 0);
    let (found, _, _) = get(&mut net, squatter, b"profile");
    assert_eq!(found.unwrap().publisher(), net.ids[publisher]);
    for (i, n) in net.live_nodes() {
        assert!(
            n.kademlia()
                .records()
                .all(|r| r.publisher() != net.ids[squatter]),
            "node {i} stores the squatter's record"
        );
    }

    // Removed: a tombstone replaces it, and the name is no longer republished.
    let q = net.do_with(publisher, |n, now| n.remove(now, b"profile").unwrap());
    net.run_for(Duration::from_secs(10));
    assert!(put_result(&net, publisher, q).0 >= 10);
    for (i, n) in net.live_nodes() {
        for r in n.kademlia().records().filter(|r| r.key == key) {
            assert!(r.is_tombstone(), "node {i} still holds a removed value");
        }
    }
    let (found, _, _) = get(&mut net, reader, b"profile");
    assert!(found.expect("the tombstone").is_tombstone());
    assert_eq!(net.node(publisher).published().count(), 0);
}

#[test]
fn commands_refuse_what_no_node_would_accept() {
    let mut net = formed_mesh(3);
    let long = net.do_with(0, |n, now| n.put(now, &[0; 65], b"x".to_vec()));
    assert!(matches!(long, Err(Error::TooLarge { len: 65, max: 64 })));
    let big = net.do_with(0, |n, now| n.put(now, b"k", vec![0; 16 * 1024 + 1]));
    assert!(matches!(big, Err(Error::TooLarge { .. })));
    let empty = net.do_with(0, |n, now| n.put(now, b"k", Vec::new()));
    assert!(matches!(empty, Err(Error::EmptyValue)));
    let never = net.do_with(0, |n, now| n.remove(now, b"never put"));
    assert!(matches!(never, Err(Error::NotPublished)));
    // A name nobody published: answered, not found.
    let (found, _, _) = get(&mut net, 1, b"nobody's");
    assert!(found.is_none());
}

#[test]
fn records_survive_the_crash_of_a_third_of_the_nodes() {
    let n = 45;
    let mut net = formed_mesh(n);
    let names: Vec<Vec<u8>> = (0..10).map(|i| format!("rec-{i}").into_bytes()).collect();
    for (i, name) in names.iter().enumerate() {
        let (stored, _, _) = put(&mut net, i, name, name);
        assert!(stored >= 1);
    }
    // The publishers and every third other node crash without a word.
    for i in (0..n).filter(|i| *i < names.len() || i % 3 == 0) {
        net.crash(i);
    }
    net.run_for(Duration::from_secs(60));
    let live: Vec<usize> = net.live_nodes().into_iter().map(|(i, _)| i).collect();
    for (j, name) in names.iter().enumerate() {
        let reader = live[(j * 7) % live.len()];
        let (found, _, _) = get(&mut net, reader, name);
        assert_eq!(
            found.map(|r| r.value),
            Some(name.clone()),
            "{j} from {reader}"
        );
    }
}

#[test]
fn records_live_while_republished_and_expire_once_removed() {
    let mut config = Config::default();
    config.kademlia.record_ttl = Duration::from_secs(120);
    config.kademlia.republish_interval = Duration::from_secs(60);
    let mut net = formed_mesh_with(30, &config);
    let key = Record::key_for(b"lasting");
    let holders = |net: &Net| {
        net.live_nodes()
            .iter()
            .filter(|(_, n)| {
                n.kademlia()
                    .records()
                    .any(|r| r.key == key && !r.is_expired(net.now()))
            })
            .count()
    };
    assert!(put(&mut net, 3, b"lasting", b"v").0 >= 1);
    // Five lifetimes later it is still stored (each republication renews it) and found.
    net.run_for(Duration::from_secs(600));
    assert!(holders(&net) >= 10, "{} holders", holders(&net));
    let reader = stranger(&net, key, &[3]);
    assert_eq!(
        get(&mut net, reader, b"lasting").0.map(|r| r.value),
        Some(b"v".to_vec())
    );
    // Removed: the tombstone is not republished, and after a lifetime nothing is left.
    let q = net.do_with(3, |n, now| n.remove(now, b"lasting").unwrap());
    net.run_for(Duration::from_secs(10));
    assert!(put_result(&net, 3, q).0 >= 1);
    net.run_for(Duration::from_secs(130));
    assert_eq!(holders(&net), 0);
    assert!(get(&mut net, reader, b"lasting").0.is_none());
}
