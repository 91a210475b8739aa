//! transport-ws clients against a real server: they join with an identity proof, are
//! introduced, relay signals and Kademlia RPCs with `from` set, and leave.
#![allow(clippy::unwrap_used)]

mod common;

use common::{TestServer, key, next};
use serde_json::json;
use signaling_server::Config;
use transport::{ClientMessage, PeerId, RpcKind, SignalingTransport, TransportEvent};
use transport_ws::{Config as WsConfig, Identity, WsSignaling};

async fn open(server: &TestServer, n: u8) -> WsSignaling {
    let mut t = WsSignaling::connect(WsConfig::new(server.url(), Identity::Keypair(key(n))));
    match next(&mut t).await {
        TransportEvent::Open { peer_id, room } => {
            assert_eq!(&peer_id, t.local_id());
            assert_eq!(room, "default");
        }
        other => panic!("expected Open, got {other:?}"),
    }
    t
}

#[tokio::test]
async fn clients_are_introduced_and_relay_through_the_server() {
    let server = TestServer::start(Config::ephemeral()).await;
    let mut clients = Vec::new();
    for n in 1..=4u8 {
        let mut t = open(&server, n).await;
        match next(&mut t).await {
            TransportEvent::BootstrapPeers { peers } => {
                // With K = 5 every earlier client is introduced.
                let earlier: Vec<&PeerId> =
                    clients.iter().map(|c: &WsSignaling| c.local_id()).collect();
                assert_eq!(peers.len(), earlier.len());
                for p in &peers {
                    assert!(earlier.contains(&p));
                }
            }
            other => panic!("expected BootstrapPeers, got {other:?}"),
        }
        clients.push(t);
    }
    // Client 0 was introduced to each newcomer.
    for n in 1..4 {
        let expected = clients[n].local_id().clone();
        assert_eq!(
            next(&mut clients[0]).await,
            TransportEvent::ConnectRequest { peer: expected }
        );
    }

    let (a_id, b_id) = (clients[0].local_id().clone(), clients[3].local_id().clone());
    let offer = json!({"type": "offer", "sdp": "v=0"});
    clients[0]
        .send_signal(b_id.clone(), offer.clone())
        .await
        .unwrap();
    assert_eq!(
        next(&mut clients[3]).await,
        TransportEvent::Signal {
            from: a_id.clone(),
            signal: offer
        }
    );
    clients[3]
        .send(ClientMessage::BatchedSignals {
            to: a_id.clone(),
            from: Some(PeerId::new("spoof")),
            signals: vec![json!({"candidate": "1"}), json!({"candidate": "2"})],
            batch_timestamp: Some(1),
        })
        .await
        .unwrap();
    for c in ["1", "2"] {
        assert_eq!(
            next(&mut clients[0]).await,
            TransportEvent::Signal {
                from: b_id.clone(),
                signal: json!({"candidate": c})
            }
        );
    }
    clients[3]
        .send(ClientMessage::KademliaRpcRequest {
            to: a_id.clone(),
            rpc_message: json!({"FIND_NODE": 1}),
        })
        .await
        .unwrap();
    assert_eq!(
        next(&mut clients[0]).await,
        TransportEvent::KademliaRpc {
            from: b_id.clone(),
            kind: RpcKind::Request,
            message: json!({"FIND_NODE": 1})
        }
    );
    // An unknown recipient comes back as an error naming it.
    let ghost = PeerId::new("0".repeat(40));
    clients[0]
        .send_signal(ghost.clone(), json!({}))
        .await
        .unwrap();
    match next(&mut clients[0]).await {
        TransportEvent::Error { code, peer_id, .. } => {
            assert_eq!(code, Some(transport::ErrorCode::UnknownPeer));
            assert_eq!(peer_id, Some(ghost));
        }
        other => panic!("expected an error, got {other:?}"),
    }
    // Leaving tells the peers it was introduced to.
    clients[3].close().await;
    assert_eq!(
        next(&mut clients[0]).await,
        TransportEvent::PeerLeft { peer: b_id }
    );
    assert!(clients[3].send_signal(a_id, json!({})).await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn rooms_keep_clients_apart() {
    let server = TestServer::start(Config::ephemeral()).await;
    let mut a = WsSignaling::connect(
        WsConfig::new(server.url(), Identity::Keypair(key(1))).with_room("red"),
    );
    let mut b = WsSignaling::connect(
        WsConfig::new(server.url(), Identity::Keypair(key(2))).with_room("blue"),
    );
    assert!(matches!(next(&mut a).await, TransportEvent::Open { room, .. } if room == "red"));
    assert_eq!(
        next(&mut a).await,
        TransportEvent::BootstrapPeers { peers: vec![] }
    );
    assert!(matches!(next(&mut b).await, TransportEvent::Open { room, .. } if room == "blue"));
    assert_eq!(
        next(&mut b).await,
        TransportEvent::BootstrapPeers { peers: vec![] }
    );
    let a_id = a.local_id().clone();
    b.send_signal(a_id.clone(), json!({})).await.unwrap();
    assert!(matches!(
        next(&mut b).await,
        TransportEvent::Error {
            code: Some(transport::ErrorCode::UnknownPeer),
            ..
        }
    ));
    server.stop().await;
}
