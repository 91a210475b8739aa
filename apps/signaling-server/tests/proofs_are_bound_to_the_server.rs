//! A join proof names the server it is for (the host the client dialled): a server that gets a
//! proof made for another one (relayed to it by that other server, say) refuses it, and the real
//! client library's proofs are accepted where they were made.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Raw, TestServer, key, next};
use ed25519_dalek::Signer as _;
use serde_json::json;
use signaling_server::Config;
use transport::{SignalingTransport, TransportEvent, join_proof_message};
use transport_ws::{Config as WsConfig, Identity, WsSignaling};

#[tokio::test]
async fn a_proof_made_for_server_a_is_refused_by_server_b() {
    let a = TestServer::start(Config::ephemeral()).await;
    let b = TestServer::start(Config::ephemeral()).await;
    let k = key(1);
    let mut at_b = Raw::connect(&b).await;
    // A relaying server A would hand its client B's nonce: the client signs it for A, the host it
    // dialled.
    let signature = k.sign(&join_proof_message(&at_b.nonce, &a.addr.to_string()));
    let relayed = json!({
        "type": "join",
        "peerId": common::id_of(&k),
        "publicKey": hex::encode(k.verifying_key().to_bytes()),
        "signature": hex::encode(signature.to_bytes()),
        "host": a.addr.to_string(),
        "protocolVersion": 2,
    });
    at_b.send(relayed.clone()).await;
    at_b.expect_error("wrong_host").await;
    // Claiming B's host over a signature made for A does not verify either.
    let mut claimed = relayed;
    claimed["host"] = json!(b.addr.to_string());
    at_b.send(claimed).await;
    at_b.expect_error("invalid_signature").await;
    // The same key joins B with a proof made for B.
    at_b.join_verified(&k, None).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_public_host_is_the_only_host_accepted() {
    let server = TestServer::start(Config {
        public_host: vec!["signal.example.org".into()],
        ..Config::ephemeral()
    })
    .await;
    let mut raw = Raw::connect(&server).await;
    // Its listening address is not a name it answers to any more.
    let join = raw.join_message(&key(2), None);
    raw.send(join).await;
    raw.expect_error("wrong_host").await;
    raw.host = "signal.example.org:443".into();
    raw.join_verified(&key(2), None).await;
    server.stop().await;
}

#[tokio::test]
async fn the_client_library_joins_with_a_bound_proof() {
    let server = TestServer::start(Config::ephemeral()).await;
    for url in [
        format!("ws://127.0.0.1:{}", server.addr.port()),
        format!("ws://localhost:{}/", server.addr.port()),
    ] {
        let mut t = WsSignaling::connect(WsConfig::new(url, Identity::Keypair(key(3))));
        match next(&mut t).await {
            TransportEvent::Open { .. } => {}
            other => panic!("expected Open, got {other:?}"),
        }
        t.close().await;
    }
    server.stop().await;
}
