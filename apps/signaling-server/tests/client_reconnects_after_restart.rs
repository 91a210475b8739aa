//! Graceful shutdown tells clients and closes their sockets with 1001; a transport-ws client
//! then reconnects with backoff to the restarted server, joins again and reports it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Raw, TestServer, http_get, key, next};
use serde_json::json;
use signaling_server::Config;
use transport::{SignalingTransport, TransportEvent};
use transport_ws::{Config as WsConfig, Identity, WsSignaling};

#[tokio::test]
async fn shutdown_tells_clients_and_closes_with_1001() {
    let server = TestServer::start(Config::ephemeral()).await;
    let (status, body) = http_get(server.addr, "/health").await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.trim(), "ok");
    let mut raw = Raw::connect(&server).await;
    raw.join_verified(&key(1), None).await;
    let addr = server.addr;
    let stopping = tokio::spawn(server.stop());
    let bye = raw.recv().await;
    assert_eq!(bye["type"], "shutdown", "{bye}");
    assert_eq!(raw.closed().await, Some(1001));
    stopping.await.unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn a_client_reconnects_and_rejoins_after_the_server_restarts() {
    let server = TestServer::start(Config::ephemeral()).await;
    let addr = server.addr;
    let mut config = WsConfig::new(server.url(), Identity::Keypair(key(1)));
    config.backoff_initial = Duration::from_millis(50);
    config.backoff_max = Duration::from_millis(400);
    let mut client = WsSignaling::connect(config);
    assert!(matches!(
        next(&mut client).await,
        TransportEvent::Open { .. }
    ));
    assert!(matches!(
        next(&mut client).await,
        TransportEvent::BootstrapPeers { .. }
    ));

    server.stop().await;
    match next(&mut client).await {
        TransportEvent::Close { reconnecting, .. } => assert!(reconnecting),
        other => panic!("expected Close, got {other:?}"),
    }
    assert!(
        client
            .send_signal(client.local_id().clone(), json!({}))
            .await
            .is_err(),
        "sends are refused while disconnected"
    );

    // The same address again: the client keeps trying until it is back.
    let server = TestServer::start(Config {
        addr,
        ..Config::ephemeral()
    })
    .await;
    match next(&mut client).await {
        TransportEvent::Reconnected { peer_id, attempts } => {
            assert_eq!(&peer_id, client.local_id());
            assert!(attempts >= 1);
        }
        other => panic!("expected Reconnected, got {other:?}"),
    }
    assert!(matches!(
        next(&mut client).await,
        TransportEvent::BootstrapPeers { .. }
    ));

    // It is reachable again under its id.
    let mut other = Raw::connect(&server).await;
    other.join_verified(&key(2), None).await;
    let target = client.local_id().to_string();
    other
        .send(json!({"type": "signal", "to": target, "signal": {"back": true}}))
        .await;
    loop {
        if let TransportEvent::Signal { signal, .. } = next(&mut client).await {
            assert_eq!(signal, json!({"back": true}));
            break;
        }
    }
    client.close().await;
    server.stop().await;
}
