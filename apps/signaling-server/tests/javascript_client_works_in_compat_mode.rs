//! A plain client speaking exactly the JavaScript p2pmesh client's messages (`join {peerId}`,
//! `signal {to, from, signal}`, `connection_rejected`, `leave {peerId}`) works against a server
//! started with `--compat-unverified-ids`, and is refused with `proof_required` otherwise.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Raw, TestServer};
use serde_json::json;
use signaling_server::Config;

fn compat() -> Config {
    Config {
        compat_unverified_ids: true,
        ..Config::ephemeral()
    }
}

#[tokio::test]
async fn javascript_messages_work_unchanged_in_compat_mode() {
    let server = TestServer::start(compat()).await;
    // A custom (non-hex) id, as the JavaScript library allows, and a hex one.
    let alice_id = "alice-laptop";
    let bob_id = "4e1243bd22c66e76c2ba9eddc1f91394e57f9f83";
    let mut alice = Raw::connect(&server).await;
    alice
        .send(json!({"type": "join", "peerId": alice_id}))
        .await;
    let mut bob = Raw::connect(&server).await;
    bob.send(json!({"type": "join", "peerId": bob_id})).await;

    // Exactly the JavaScript server's shapes: bootstrap_peers [{id}], peer_joined {peerId}.
    assert_eq!(
        bob.recv().await,
        json!({"type": "bootstrap_peers", "peers": [{"id": alice_id}]})
    );
    assert_eq!(
        alice.recv().await,
        json!({"type": "peer_joined", "peerId": bob_id})
    );

    let offer = json!({"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"});
    bob.send(json!({"type": "signal", "to": alice_id, "from": bob_id, "signal": offer}))
        .await;
    assert_eq!(
        alice.recv().await,
        json!({"type": "signal", "to": alice_id, "from": bob_id, "signal": offer})
    );
    alice
        .send(
            json!({"type": "connection_rejected", "to": bob_id, "reason": "max_peers_reached",
            "maxPeers": 5, "alternativePeers": []}),
        )
        .await;
    let rejected = bob.recv().await;
    assert_eq!(rejected["type"], "connection_rejected");
    assert_eq!(rejected["from"], alice_id);
    assert_eq!(rejected["maxPeers"], 5);

    // The JavaScript server's wording for an unknown recipient, plus our code.
    bob.send(json!({"type": "signal", "to": "nobody", "from": bob_id, "signal": offer}))
        .await;
    let error = bob.expect_error("unknown_peer").await;
    assert_eq!(error["message"], "Peer nobody not found.");

    alice
        .send(json!({"type": "leave", "peerId": alice_id}))
        .await;
    assert_eq!(
        bob.recv().await,
        json!({"type": "peer_left", "peerId": alice_id})
    );
    server.stop().await;
}

#[tokio::test]
async fn an_unverified_join_is_refused_by_default() {
    let server = TestServer::start(Config::ephemeral()).await;
    let mut js = Raw::connect(&server).await;
    js.send(json!({"type": "join", "peerId": "4e1243bd22c66e76c2ba9eddc1f91394e57f9f83"}))
        .await;
    js.expect_error("proof_required").await;
    js.send(json!({"type": "join", "peerId": "alice-laptop"}))
        .await;
    js.expect_error("invalid_peer_id").await;
    server.stop().await;
}
