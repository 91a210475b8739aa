//! The browser build of the signaling client (the browser's `WebSocket`) against a real
//! signaling server: it joins with its key proof, introduces and relays between two clients,
//! reports a peer's leave, survives a server that cannot be reached, and given that server first
//! and a live one second, joins the second.
//!
//! The server runs outside the browser; its URL, and a loopback port nothing listens on, are
//! given when the test is compiled:
//!
//! ```text
//! cargo build -p signaling-server
//! $CARGO_TARGET_DIR/debug/signaling-server --addr 127.0.0.1:$PORT &
//! P2PMESH_TEST_SIGNALING_URL=ws://127.0.0.1:$PORT \
//! P2PMESH_TEST_UNREACHABLE_URL=ws://127.0.0.1:$FREE_PORT \
//! CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
//! CHROMEDRIVER=/usr/bin/chromedriver \
//! cargo test --target wasm32-unknown-unknown -p transport-ws --test web
//! ```
#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use ed25519_dalek::SigningKey;
use serde_json::json;
use transport::{PeerId, SignalingTransport, TransportEvent};
use transport_ws::{Config, Identity, WsSignaling};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

/// How long any one expected event may take (a generous bound, not a measurement).
const PATIENCE: Duration = Duration::from_secs(10);

// Read when the test is built (a browser has no environment); missing, each test fails and
// says how to run it.
fn server_url() -> &'static str {
    match option_env!("P2PMESH_TEST_SIGNALING_URL") {
        Some(url) => url,
        None => panic!(
            "P2PMESH_TEST_SIGNALING_URL is not set: start a signaling server (cargo build -p \
             signaling-server; target/debug/signaling-server --addr 127.0.0.1:PORT) and build \
             this test with P2PMESH_TEST_SIGNALING_URL=ws://127.0.0.1:PORT (see tests/web.rs)"
        ),
    }
}

fn unreachable_url() -> &'static str {
    match option_env!("P2PMESH_TEST_UNREACHABLE_URL") {
        Some(url) => url,
        None => panic!(
            "P2PMESH_TEST_UNREACHABLE_URL is not set: build this test with \
             P2PMESH_TEST_UNREACHABLE_URL=ws://127.0.0.1:PORT for a loopback port nothing \
             listens on (see tests/web.rs)"
        ),
    }
}

fn random_key() -> SigningKey {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the browser's crypto.getRandomValues");
    SigningKey::from_bytes(&seed)
}

/// A room of its own for each test, so tests and earlier runs do not meet.
fn fresh_room() -> String {
    let mut tag = [0u8; 8];
    getrandom::fill(&mut tag).expect("the browser's crypto.getRandomValues");
    format!("web-{}", hex::encode(tag))
}

fn id_of(key: &SigningKey) -> PeerId {
    PeerId::from_public_key(&key.verifying_key().to_bytes())
}

/// The next event, within [`PATIENCE`].
async fn next(t: &mut WsSignaling) -> Option<TransportEvent> {
    p2pmesh_rt::timeout(PATIENCE, t.next_event())
        .await
        .expect("an event within the patience")
}

/// Skips events until one matches `wanted`, which it returns.
async fn wait_for(
    t: &mut WsSignaling,
    what: &str,
    wanted: impl Fn(&TransportEvent) -> bool,
) -> TransportEvent {
    loop {
        match next(t).await {
            Some(event) if wanted(&event) => return event,
            Some(_) => {}
            None => panic!("the transport ended while waiting for {what}"),
        }
    }
}

/// Connects with `key` into `room` and expects `Open` with the key's id and the room.
async fn open(key: SigningKey, room: &str) -> WsSignaling {
    let id = id_of(&key);
    let config = Config::new(server_url(), Identity::Keypair(key)).with_room(room);
    let mut t = WsSignaling::connect(config);
    assert_eq!(t.local_id(), &id);
    match next(&mut t).await {
        Some(TransportEvent::Open {
            peer_id,
            room: joined,
        }) => {
            assert_eq!(peer_id, id);
            assert_eq!(joined, room);
        }
        other => panic!("expected Open, got {other:?}"),
    }
    assert!(t.is_connected());
    t
}

/// Closes `t` and checks that its events then end.
async fn close_and_end(mut t: WsSignaling) {
    t.close().await;
    assert!(!t.is_connected());
    while let Some(event) = next(&mut t).await {
        assert!(
            !matches!(
                event,
                TransportEvent::Open { .. } | TransportEvent::Reconnected { .. }
            ),
            "no join after close: {event:?}"
        );
    }
}

#[wasm_bindgen_test]
async fn a_transport_joins_with_its_key_proof() {
    let room = fresh_room();
    let t = open(random_key(), &room).await;
    close_and_end(t).await;
}

#[wasm_bindgen_test]
async fn two_transports_are_introduced_relay_a_signal_and_see_a_leave() {
    let room = fresh_room();
    let (a_key, b_key) = (random_key(), random_key());
    let (a_id, b_id) = (id_of(&a_key), id_of(&b_key));
    let mut a = open(a_key, &room).await;
    let mut b = open(b_key, &room).await;

    // The newcomer is told about the first, the first about the newcomer.
    let introduced = wait_for(&mut b, "B's bootstrap peers", |e| {
        matches!(e, TransportEvent::BootstrapPeers { .. })
    })
    .await;
    assert_eq!(
        introduced,
        TransportEvent::BootstrapPeers {
            peers: vec![a_id.clone()]
        }
    );
    wait_for(&mut a, "A's connect request for B", |e| {
        *e == TransportEvent::ConnectRequest { peer: b_id.clone() }
    })
    .await;

    // A signal from A reaches B, with `from` set to A by the server.
    let offer = json!({"type": "offer", "sdp": "v=0 from the browser"});
    a.send_signal(b_id.clone(), offer.clone())
        .await
        .expect("A is connected");
    let got = wait_for(&mut b, "A's signal", |e| {
        matches!(e, TransportEvent::Signal { .. })
    })
    .await;
    assert_eq!(
        got,
        TransportEvent::Signal {
            from: a_id.clone(),
            signal: offer
        }
    );

    // A leaves: B is told.
    close_and_end(a).await;
    wait_for(&mut b, "A's leave", |e| {
        *e == TransportEvent::PeerLeft { peer: a_id.clone() }
    })
    .await;
    close_and_end(b).await;
}

#[wasm_bindgen_test]
async fn an_unreachable_server_gives_no_open_and_close_ends_the_retries() {
    let mut config = Config::new(unreachable_url(), Identity::Keypair(random_key()));
    // Short delays, so that the watch below spans many failed attempts.
    config.backoff_initial = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(100);
    config.join_timeout = Duration::from_secs(2);
    let mut t = WsSignaling::connect(config);
    // Failed attempts before the first join are not events: nothing comes, and the
    // transport does not end (that would be `None`).
    let watched = p2pmesh_rt::timeout(Duration::from_millis(1500), t.next_event()).await;
    assert!(watched.is_err(), "expected no event, got {watched:?}");
    assert!(!t.is_connected());
    t.close().await;
    assert_eq!(next(&mut t).await, None);
}

#[wasm_bindgen_test]
async fn an_unreachable_first_server_is_skipped_for_the_next() {
    let key = random_key();
    let id = id_of(&key);
    let room = fresh_room();
    let mut config =
        Config::with_servers([unreachable_url(), server_url()], Identity::Keypair(key))
            .with_room(&room);
    // An hour: only the rotation within a round, which does not wait, reaches the second server
    // within the patience.
    config.backoff_initial = Duration::from_secs(3600);
    config.backoff_max = Duration::from_secs(3600);
    let mut t = WsSignaling::connect(config);
    match next(&mut t).await {
        Some(TransportEvent::Open { peer_id, .. }) => assert_eq!(peer_id, id),
        other => panic!("expected Open, got {other:?}"),
    }
    assert_eq!(t.server(), Some(server_url()));
    close_and_end(t).await;
}
