//! The shared driver natively, against hand-written servers on loopback: backoff, retries
//! against a server that refuses connections, the keepalive `ping`, dead-server detection
//! and reconnection.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use transport::{ClientMessage, PeerId, ServerMessage, SignalingTransport, TransportEvent};

use super::*;

/// A generous bound on each wait, not a measurement.
const PATIENCE: Duration = Duration::from_secs(10);

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}", listener.local_addr().expect("address"));
    (listener, url)
}

async fn next(t: &mut WsSignaling) -> Option<TransportEvent> {
    tokio::time::timeout(PATIENCE, t.next_event())
        .await
        .expect("an event within the patience")
}

#[test]
fn backoff_grows_is_jittered_and_capped() {
    let config = Config::new("ws://127.0.0.1:1", Identity::Keypair(key(1)));
    for attempt in 1..40 {
        let full = config
            .backoff_initial
            .saturating_mul(1u32 << (attempt - 1).min(16))
            .min(config.backoff_max);
        let d = config.backoff(attempt);
        assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
    }
    assert!(config.backoff(40) <= config.backoff_max);
}

#[test]
fn the_proof_host_is_the_urls_authority_without_a_default_port() {
    let cases = [
        ("ws://127.0.0.1:8080", Some("127.0.0.1:8080")),
        ("ws://127.0.0.1:8080/", Some("127.0.0.1:8080")),
        ("wss://Signal.Example.org/", Some("signal.example.org")),
        ("wss://signal.example.org:443/x", Some("signal.example.org")),
        ("ws://signal.example.org:80", Some("signal.example.org")),
        (
            "wss://signal.example.org:8443",
            Some("signal.example.org:8443"),
        ),
        ("ws://[::1]:9000", Some("[::1]:9000")),
        ("ws://user:pw@host.example:81/", Some("host.example:81")),
        ("not a url", None),
    ];
    for (url, host) in cases {
        assert_eq!(host_of_url(url).as_deref(), host, "{url}");
    }
}

#[tokio::test]
async fn a_refusing_server_is_retried_until_close() {
    let (listener, url) = listener().await;
    let mut config = Config::new(url, Identity::Keypair(key(2)));
    config.backoff_initial = Duration::from_millis(10);
    config.backoff_max = Duration::from_millis(40);
    let mut t = WsSignaling::connect(config);
    // Each attempt is a TCP connection that the "server" drops at once.
    for _ in 0..3 {
        let (stream, _) = tokio::time::timeout(PATIENCE, listener.accept())
            .await
            .expect("another attempt within the patience")
            .expect("accept");
        drop(stream);
    }
    assert!(!t.is_connected());
    t.close().await;
    assert_eq!(
        next(&mut t).await,
        None,
        "no event, and the end after close"
    );
}

type ServerSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Accepts one client and runs the join as the real server does (without checking the
/// proof): challenge, the client's `join`, `joined`.
async fn accept_and_join(listener: &TcpListener, room: &str) -> (ServerSocket, PeerId) {
    let (stream, _) = tokio::time::timeout(PATIENCE, listener.accept())
        .await
        .expect("a connection within the patience")
        .expect("accept");
    let mut ws = tokio_tungstenite::accept_async(stream)
        .await
        .expect("handshake");
    let challenge = ServerMessage::Challenge {
        nonce: hex::encode([9u8; NONCE_LEN]),
        protocol_version: PROTOCOL_VERSION,
        compat_unverified_ids: false,
    };
    let text = serde_json::to_string(&challenge).expect("encode");
    ws.send(Message::Text(text.into())).await.expect("send");
    let join = match client_message(&mut ws).await {
        ClientMessage::Join(join) => join,
        other => panic!("expected join, got {other:?}"),
    };
    assert!(join.public_key.is_some() && join.signature.is_some());
    // The proof names the server dialled, and verifies over the nonce and that host.
    let host = listener.local_addr().expect("address").to_string();
    assert_eq!(join.host.as_deref(), Some(host.as_str()));
    let mut public_key = [0u8; 32];
    hex::decode_to_slice(
        join.public_key.as_deref().unwrap_or_default(),
        &mut public_key,
    )
    .expect("public key hex");
    let mut signature = [0u8; 64];
    hex::decode_to_slice(
        join.signature.as_deref().unwrap_or_default(),
        &mut signature,
    )
    .expect("signature hex");
    ed25519_dalek::VerifyingKey::from_bytes(&public_key)
        .expect("key")
        .verify_strict(
            &join_proof_message(&[9u8; NONCE_LEN], &host),
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .expect("the proof verifies for the dialled host");
    let joined = ServerMessage::Joined {
        peer_id: join.peer_id.clone(),
        room: room.into(),
        protocol_version: PROTOCOL_VERSION,
    };
    let text = serde_json::to_string(&joined).expect("encode");
    ws.send(Message::Text(text.into())).await.expect("send");
    (ws, join.peer_id)
}

/// The client's next JSON message (its text frames only: a browser sends nothing else).
async fn client_message(ws: &mut ServerSocket) -> ClientMessage {
    let frame = tokio::time::timeout(PATIENCE, ws.next())
        .await
        .expect("a frame within the patience")
        .expect("the client keeps the connection")
        .expect("a frame");
    match frame {
        Message::Text(text) => serde_json::from_str(&text).expect("a client message"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_silent_server_is_pinged_dropped_and_rejoined() {
    let (listener, url) = listener().await;
    let mut config = Config::new(url, Identity::Keypair(key(3))).with_room("r");
    config.keepalive = Duration::from_millis(100);
    config.backoff_initial = Duration::from_millis(10);
    let me = config.identity.peer_id();
    let mut t = WsSignaling::connect(config);

    let (mut ws, id) = accept_and_join(&listener, "r").await;
    assert_eq!(id, me);
    assert_eq!(
        next(&mut t).await,
        Some(TransportEvent::Open {
            peer_id: me.clone(),
            room: "r".into()
        })
    );
    // The keepalive is the protocol's `ping` (a browser cannot send WebSocket pings).
    assert_eq!(
        client_message(&mut ws).await,
        ClientMessage::Ping { ts: None }
    );
    // Unanswered, the server is taken as lost; the socket is kept open, so only the
    // keepalive can notice.
    match next(&mut t).await {
        Some(TransportEvent::Close {
            reason,
            reconnecting: true,
        }) => assert!(reason.contains("stopped answering"), "{reason}"),
        other => panic!("expected Close, got {other:?}"),
    }
    assert!(!t.is_connected());

    let (mut ws, _) = accept_and_join(&listener, "r").await;
    assert_eq!(
        next(&mut t).await,
        Some(TransportEvent::Reconnected {
            peer_id: me.clone(),
            attempts: 1
        })
    );
    assert!(t.is_connected());
    // Closing leaves, then closes the socket.
    t.close().await;
    let mut last = client_message(&mut ws).await;
    while last == (ClientMessage::Ping { ts: None }) {
        last = client_message(&mut ws).await;
    }
    assert_eq!(last, ClientMessage::Leave { peer_id: Some(me) });
    assert_eq!(next(&mut t).await, None);
    drop(ws);
}
