//! The DHT through the facade: ten nodes on the in-memory network (tokio's paused clock, so waits
//! cost no real time). A node publishes a name, another finds it (value, publisher, version); a new
//! value replaces it; only the publisher removes it, and then it is not found; a third node cannot
//! take the name (the removal holds it) nor a name another node holds; a name never published is
//! not found; bad arguments fail with typed errors; a node without links times out. Nothing
//! asserts how fast anything is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;

use common::{node_identity, start_time, test_seed, wait_until};
use p2pmesh::memory::MemoryNetwork;
use p2pmesh::{Error, Mesh, NodeId, StoreError};

const NODES: u64 = 10;

/// Node `index` of the run of `seed` on `network`, joined.
async fn start(network: &MemoryNetwork, seed: u64, index: u64) -> Mesh {
    let (keypair, node_seed) = node_identity(seed, index);
    let mesh = network
        .builder_with(keypair)
        .unwrap()
        .seed(node_seed)
        .start_time(start_time())
        .build()
        .expect("builds");
    mesh.join().await.expect("joins");
    mesh
}

/// Whether the links among `meshes` connect them all.
async fn connected(meshes: &[Mesh]) -> bool {
    let mut graph: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
    for m in meshes {
        let peers = m.peers().await.unwrap_or_default();
        if peers.is_empty() {
            return false;
        }
        graph.insert(m.local_id(), peers);
    }
    let mut seen = vec![meshes[0].local_id()];
    let mut stack = seen.clone();
    while let Some(n) = stack.pop() {
        for m in &graph[&n] {
            if !seen.contains(m) {
                seen.push(*m);
                stack.push(*m);
            }
        }
    }
    seen.len() == meshes.len()
}

#[tokio::test(start_paused = true)]
async fn a_name_is_published_found_updated_defended_and_removed() {
    let seed = test_seed("a_name_is_published_found_updated_defended_and_removed");
    let network = MemoryNetwork::new();
    let mut nodes = Vec::new();
    for i in 0..NODES {
        nodes.push(start(&network, seed, i).await);
    }
    wait_until("the ten nodes form one connected mesh", || {
        connected(&nodes)
    })
    .await;
    let (alice, bob, carol) = (&nodes[0], &nodes[5], &nodes[9]);

    // Alice publishes the name; Bob finds it.
    let key = p2pmesh::kademlia_core::Record::key_for(b"alice");
    let put = alice.put("alice", b"v1".to_vec()).await.expect("put");
    assert_eq!(put.key, key);
    assert!(put.stored >= 1 && put.stored <= put.asked, "{put:?}");
    let found = bob.get("alice").await.expect("get").expect("found");
    assert_eq!(found.key, b"alice");
    assert_eq!(found.value, b"v1");
    assert_eq!(found.publisher, alice.local_id());
    let start_micros = u64::try_from(common::START.as_micros()).unwrap();
    assert!(found.seq >= start_micros, "seq is the publication time");
    let first_seq = found.seq;

    // A new value from Alice replaces the old one.
    let put = alice.put(b"alice", "v2").await.expect("put again");
    assert!(put.stored >= 1, "{put:?}");
    let found = bob.get(b"alice").await.expect("get").expect("found");
    assert_eq!(found.value, b"v2");
    assert_eq!(found.publisher, alice.local_id());
    assert!(found.seq > first_seq);

    // Only the publisher removes it; then it is not found.
    assert_eq!(bob.remove("alice").await, Err(Error::NotPublished));
    let removed = alice.remove("alice").await.expect("remove");
    assert!(removed.stored >= 1, "{removed:?}");
    assert_eq!(bob.get("alice").await, Ok(None));
    assert_eq!(alice.get("alice").await, Ok(None));
    // The removal keeps the name Alice's while it lives: Carol cannot take it.
    assert_eq!(
        carol.put("alice", b"mine".to_vec()).await,
        Err(Error::DhtRefused(StoreError::OtherPublisher))
    );

    // Nor can she take a name Bob holds.
    bob.put("bob", b"here".to_vec()).await.expect("bob's put");
    assert_eq!(
        carol.put("bob", b"mine".to_vec()).await,
        Err(Error::DhtRefused(StoreError::OtherPublisher))
    );
    // The name stays Bob's for everyone, Carol included (she forgot her refused record).
    for reader in [&alice, &carol] {
        let found = reader.get("bob").await.expect("get").expect("bob's record");
        assert_eq!(
            (found.publisher, found.value),
            (bob.local_id(), b"here".to_vec())
        );
    }

    // A name nobody published: the nodes answer, without a record.
    assert_eq!(bob.get("nobody").await, Ok(None));

    // Bad arguments.
    let max = p2pmesh::kademlia_core::Config::default().max_value_bytes;
    assert_eq!(
        alice.put("big", vec![7u8; max + 1]).await,
        Err(Error::ValueTooLarge { len: max + 1, max })
    );
    assert_eq!(alice.put("empty", Vec::new()).await, Err(Error::EmptyValue));
    let long = [b'n'; p2pmesh::MAX_SALT_BYTES + 1];
    let too_long = Error::KeyTooLarge {
        len: long.len(),
        max: p2pmesh::MAX_SALT_BYTES,
    };
    assert_eq!(alice.put(long, b"v".to_vec()).await, Err(too_long.clone()));
    assert_eq!(bob.get(long).await, Err(too_long.clone()));
    assert_eq!(alice.remove(long).await, Err(too_long));
    // A value of the largest size is fine.
    let put = alice.put("big", vec![7u8; max]).await.expect("put");
    assert!(put.stored >= 1, "{put:?}");
    let found = carol.get("big").await.expect("get").expect("found");
    assert_eq!(found.value.len(), max);

    for n in &nodes {
        n.leave().await.expect("leave");
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_without_links_times_out() {
    let seed = test_seed("a_node_without_links_times_out");
    let network = MemoryNetwork::new();
    let lonely = start(&network, seed, 0).await;
    assert_eq!(
        lonely.put("alone", b"v".to_vec()).await,
        Err(Error::DhtTimeout)
    );
    // Its own record it finds at once, without asking anyone.
    let found = lonely.get("alone").await.expect("get").expect("its own");
    assert_eq!(
        (found.publisher, &found.value[..]),
        (lonely.local_id(), &b"v"[..])
    );
    assert_eq!(lonely.get("elsewhere").await, Err(Error::DhtTimeout));
    lonely.leave().await.expect("leave");
}
