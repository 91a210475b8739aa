//! One live connection holds an id: a second join with it is refused, the holder keeps it,
//! and the refused connection going away does not unregister the holder.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Raw, TestServer, id_of, key};
use serde_json::json;
use signaling_server::Config;

#[tokio::test]
async fn a_second_join_with_a_held_verified_id_is_refused() {
    let server = TestServer::start(Config::ephemeral()).await;
    let (victim_key, sender_key) = (key(1), key(2));
    let victim_id = id_of(&victim_key);
    let mut victim = Raw::connect(&server).await;
    victim.join_verified(&victim_key, None).await;
    let mut sender = Raw::connect(&server).await;
    sender.join_verified(&sender_key, None).await;
    assert_eq!(victim.recv().await["type"], "peer_joined");

    // Even a client holding the same key (a copy of the node) cannot take the id.
    let mut thief = Raw::connect(&server).await;
    let join = thief.join_message(&victim_key, None);
    thief.send(join).await;
    let error = thief.expect_error("id_taken").await;
    assert_eq!(error["peerId"], victim_id.as_str());
    // The victim was not told anything and still receives what is addressed to it.
    victim.assert_alive().await;
    sender
        .send(json!({"type": "signal", "to": victim_id, "signal": {"n": 1}}))
        .await;
    assert_eq!(victim.recv().await["signal"], json!({"n": 1}));

    // The refused connection closing must not unregister the holder (the JS server's race).
    drop(thief);
    let mut probe = Raw::connect(&server).await;
    probe.join_verified(&key(3), None).await;
    probe.assert_alive().await;
    sender
        .send(json!({"type": "signal", "to": victim_id, "signal": {"n": 2}}))
        .await;
    assert_eq!(victim.recv_type("signal").await["signal"], json!({"n": 2}));

    // Once the holder leaves, the id is free again.
    victim.send(json!({"type": "leave"})).await;
    victim.assert_alive().await;
    let mut heir = Raw::connect(&server).await;
    heir.join_verified(&victim_key, None).await;
    server.stop().await;
}

#[tokio::test]
async fn a_second_join_with_a_held_compat_id_is_refused() {
    let config = Config {
        compat_unverified_ids: true,
        ..Config::ephemeral()
    };
    let server = TestServer::start(config).await;
    let mut holder = Raw::connect(&server).await;
    holder
        .send(json!({"type": "join", "peerId": "alice"}))
        .await;
    holder.assert_alive().await;
    let mut thief = Raw::connect(&server).await;
    thief.send(json!({"type": "join", "peerId": "alice"})).await;
    thief.expect_error("id_taken").await;
    thief
        .send(json!({"type": "leave", "peerId": "alice"}))
        .await;
    thief.expect_error("not_joined").await;
    drop(thief);

    let mut bob = Raw::connect(&server).await;
    bob.send(json!({"type": "join", "peerId": "bob"})).await;
    let bootstrap = bob.recv().await;
    assert_eq!(
        bootstrap,
        json!({"type": "bootstrap_peers", "peers": [{"id": "alice"}]})
    );
    bob.send(json!({"type": "signal", "to": "alice", "signal": {"x": 1}}))
        .await;
    assert_eq!(holder.recv_type("signal").await["from"], "bob");
    server.stop().await;
}
