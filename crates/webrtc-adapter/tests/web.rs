//! The browser link (web-sys `RTCPeerConnection`): two connectors in one page of headless
//! Chromium open links to each other, the test carrying their signals.
//!
//! Run: `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
//! CHROMEDRIVER=/usr/bin/chromedriver cargo test --target wasm32-unknown-unknown
//! -p webrtc-adapter --test web`, from the workspace root or this crate's directory: cargo runs
//! the runner in the package's directory, and the runner reads `webdriver.json` (Chromium's
//! flags for loopback WebRTC) from its working directory, or the file named by
//! `WASM_BINDGEN_TEST_WEBDRIVER_JSON`. It prints `Try find webdriver.json ... Ok` when found.
//!
//! wasm-bindgen-test runs one test at a time, so [`live_connections`] counts only the current
//! test's connections. Timeouts here only stop a hung test; no test asserts how fast anything is.

#![cfg(target_arch = "wasm32")]

use std::time::Duration;

use transport::{LinkConnector, LinkError, LinkEvent, LinkSender as _, PeerId, PeerLink, Role};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use webrtc_adapter::{Config, Connector, Link, live_connections, sdp_fingerprint};

wasm_bindgen_test_configure!(run_in_browser);

const GUARD: Duration = Duration::from_secs(30);

struct Pair {
    a: Link,
    b: Link,
    /// A's (local, remote) fingerprints, as its `Open` reported them.
    a_fps: (String, String),
    b_fps: (String, String),
    offer_sdp: String,
    answer_sdp: String,
}

async fn guard<F: Future>(what: &str, future: F) -> F::Output {
    match p2pmesh_rt::timeout(GUARD, future).await {
        Ok(output) => output,
        Err(_) => panic!("{what}: timed out"),
    }
}

/// The SDP of a description signal, if it is one of `kind`.
fn sdp_of(signal: &serde_json::Value, kind: &str) -> Option<String> {
    (signal["type"] == kind)
        .then(|| signal["sdp"].as_str().map(str::to_owned))
        .flatten()
}

/// Connects A (initiator) and B (responder) and carries their signals until both are open.
async fn open_pair(config: Config) -> Pair {
    let mut a = Connector::new(config.clone())
        .connect(PeerId::new("b0b"), Role::Initiator)
        .await
        .expect("connect a");
    let mut b = Connector::new(config)
        .connect(PeerId::new("a11ce"), Role::Responder)
        .await
        .expect("connect b");
    let (mut a_fps, mut b_fps) = (None, None);
    let (mut offer_sdp, mut answer_sdp) = (None, None);
    guard("links open", async {
        while a_fps.is_none() || b_fps.is_none() {
            tokio::select! {
                event = a.next_event(), if a_fps.is_none() => match event.expect("a ended") {
                    LinkEvent::Signal(signal) => {
                        offer_sdp = offer_sdp.take().or_else(|| sdp_of(&signal, "offer"));
                        b.handle_signal(signal).await.expect("b takes a's signal");
                    }
                    LinkEvent::Open { local_fingerprint, remote_fingerprint } => {
                        a_fps = Some((local_fingerprint, remote_fingerprint));
                    }
                    other => panic!("a: unexpected {other:?} before open"),
                },
                event = b.next_event(), if b_fps.is_none() => match event.expect("b ended") {
                    LinkEvent::Signal(signal) => {
                        answer_sdp = answer_sdp.take().or_else(|| sdp_of(&signal, "answer"));
                        a.handle_signal(signal).await.expect("a takes b's signal");
                    }
                    LinkEvent::Open { local_fingerprint, remote_fingerprint } => {
                        b_fps = Some((local_fingerprint, remote_fingerprint));
                    }
                    other => panic!("b: unexpected {other:?} before open"),
                },
            }
        }
    })
    .await;
    Pair {
        a,
        b,
        a_fps: a_fps.expect("a open"),
        b_fps: b_fps.expect("b open"),
        offer_sdp: offer_sdp.expect("a sent an offer"),
        answer_sdp: answer_sdp.expect("b sent an answer"),
    }
}

/// The next event that is not a (late) trickled candidate.
async fn next(link: &mut Link) -> Option<LinkEvent> {
    loop {
        match guard("next event", link.next_event()).await {
            Some(LinkEvent::Signal(_)) => continue,
            other => return other,
        }
    }
}

async fn expect_message(link: &mut Link) -> Vec<u8> {
    match next(link).await {
        Some(LinkEvent::Message(bytes)) => bytes,
        other => panic!("expected a message, got {other:?}"),
    }
}

async fn expect_closed(link: &mut Link) -> String {
    match next(link).await {
        Some(LinkEvent::Closed(reason)) => {
            assert_eq!(
                guard("end", link.next_event()).await,
                None,
                "nothing after Closed"
            );
            reason
        }
        other => panic!("expected Closed, got {other:?}"),
    }
}

/// Yields to the page until `live_connections()` is zero (the link tasks close their
/// connections as they end); the guard fails the test if one never does.
async fn no_live_connections() {
    guard("every connection closed", async {
        while live_connections() != 0 {
            p2pmesh_rt::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A message whose bytes say where it belongs: its index and a pattern derived from it.
fn message(index: u32, len: usize) -> Vec<u8> {
    let mut bytes = index.to_be_bytes().to_vec();
    bytes.extend((0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(index) as u8));
    bytes
}

#[wasm_bindgen_test]
async fn links_open_with_matching_fingerprints_and_carry_messages_both_ways_in_order() {
    let config = Config::default();
    let max = config.max_message_size;
    let mut pair = open_pair(config).await;
    assert!(pair.a.is_open() && pair.b.is_open());
    assert_eq!(live_connections(), 2);

    // Both sides agree on both fingerprints, and they are the offer's and the answer's.
    let (a_local, a_remote) = pair.a_fps.clone();
    let (b_local, b_remote) = pair.b_fps.clone();
    assert_eq!(a_local, b_remote);
    assert_eq!(b_local, a_remote);
    assert_eq!(Some(a_local.clone()), sdp_fingerprint(&pair.offer_sdp));
    assert_eq!(Some(b_local.clone()), sdp_fingerprint(&pair.answer_sdp));
    assert!(a_local.starts_with("sha-256 "), "{a_local}");
    assert_ne!(a_local, b_local);

    // Many small messages each way at once, while the other side reads.
    const SMALL: u32 = 500;
    let (a_tx, b_tx) = (pair.a.sender(), pair.b.sender());
    let send_a = async {
        for i in 0..SMALL {
            a_tx.send(message(i, i as usize % 200))
                .await
                .expect("a sends");
        }
    };
    let send_b = async {
        for i in 0..SMALL {
            b_tx.send(message(i, i as usize % 300))
                .await
                .expect("b sends");
        }
    };
    let read_b = async {
        for i in 0..SMALL {
            assert_eq!(
                expect_message(&mut pair.b).await,
                message(i, i as usize % 200)
            );
        }
    };
    let read_a = async {
        for i in 0..SMALL {
            assert_eq!(
                expect_message(&mut pair.a).await,
                message(i, i as usize % 300)
            );
        }
    };
    guard("small messages", async {
        tokio::join!(send_a, send_b, read_a, read_b);
    })
    .await;

    // One message of exactly the limit; one byte more is refused, and the link goes on.
    let large = message(7, max - 4);
    assert_eq!(large.len(), max);
    guard("large send", a_tx.send(large.clone()))
        .await
        .expect("a sends the largest message");
    assert_eq!(expect_message(&mut pair.b).await, large);
    let refused = guard("oversized send", b_tx.send(vec![0; max + 1])).await;
    assert!(
        matches!(&refused, Err(LinkError::Setup(reason)) if reason.contains("exceeds")),
        "{refused:?}"
    );
    guard("send after refusal", b_tx.send(b"still here".to_vec()))
        .await
        .expect("b still sends");
    assert_eq!(expect_message(&mut pair.a).await, b"still here");

    pair.a.close().await;
    assert_eq!(expect_closed(&mut pair.a).await, "closed locally");
    expect_closed(&mut pair.b).await;
    assert_eq!(live_connections(), 0);
}

#[wasm_bindgen_test]
async fn sends_wait_for_the_channel_to_drain_instead_of_overfilling_it() {
    // More than Chromium queues per channel (16 MiB) in one burst of sends: without waiting on
    // `bufferedAmount` a send would fail and Chromium would close the channel.
    const COUNT: u32 = 320;
    let config = Config {
        send_buffer_limit: 256 * 1024,
        ..Config::default()
    };
    let len = config.max_message_size - 4;
    let mut pair = open_pair(config).await;
    let a_tx = pair.a.sender();
    let send = async {
        for i in 0..COUNT {
            a_tx.send(message(i, len)).await.expect("a sends");
        }
    };
    let read = async {
        for i in 0..COUNT {
            let got = expect_message(&mut pair.b).await;
            assert!(got == message(i, len), "message {i} differs");
        }
    };
    guard("burst", async {
        tokio::join!(send, read);
    })
    .await;
    drop(pair);
    no_live_connections().await;
}

#[wasm_bindgen_test]
async fn closing_one_side_closes_the_other_and_sends_then_fail() {
    let mut pair = open_pair(Config::default()).await;
    let b_tx = pair.b.sender();
    pair.b.close().await;
    assert_eq!(expect_closed(&mut pair.b).await, "closed locally");
    let reason = expect_closed(&mut pair.a).await;
    assert!(!reason.is_empty());
    assert_eq!(live_connections(), 0);
    assert_eq!(b_tx.send(b"late".to_vec()).await, Err(LinkError::Closed));
    assert_eq!(
        pair.a.sender().send(b"late".to_vec()).await,
        Err(LinkError::Closed)
    );
    assert_eq!(
        pair.a
            .handle_signal(serde_json::json!({"type": "answer", "sdp": "v=0\r\n"}))
            .await,
        Err(LinkError::Closed)
    );
}

#[wasm_bindgen_test]
async fn dropping_a_handle_ends_its_link_and_closes_the_peer() {
    let mut pair = open_pair(Config::default()).await;
    let a_tx = pair.a.sender();
    drop(pair.a);
    // B sees its peer go, and A's task closes its connection although a sender is alive.
    expect_closed(&mut pair.b).await;
    no_live_connections().await;
    assert_eq!(a_tx.send(b"late".to_vec()).await, Err(LinkError::Closed));
}

#[wasm_bindgen_test]
async fn a_link_that_never_opens_is_closed_by_the_setup_timeout() {
    let config = Config {
        open_timeout: Duration::from_millis(300),
        ..Config::default()
    };
    let connector = Connector::new(config);
    // A responder that never gets an offer, and an initiator that never gets an answer.
    let mut responder = connector
        .connect(PeerId::new("nobody"), Role::Responder)
        .await
        .expect("connect responder");
    let mut initiator = connector
        .connect(PeerId::new("nobody-either"), Role::Initiator)
        .await
        .expect("connect initiator");
    assert_eq!(live_connections(), 2);
    assert_eq!(expect_closed(&mut responder).await, "open timeout");
    assert_eq!(expect_closed(&mut initiator).await, "open timeout");
    assert_eq!(live_connections(), 0);
}

#[wasm_bindgen_test]
async fn signals_that_do_not_fit_the_role_are_refused() {
    let connector = Connector::new(Config::default());
    let mut responder = connector
        .connect(PeerId::new("x"), Role::Responder)
        .await
        .expect("connect responder");
    let answer = serde_json::json!({"type": "answer", "sdp": "v=0\r\n"});
    assert!(matches!(
        responder.handle_signal(answer).await,
        Err(LinkError::Setup(_))
    ));
    assert!(matches!(
        responder
            .handle_signal(serde_json::json!({"type": "bogus"}))
            .await,
        Err(LinkError::Setup(_))
    ));
    // A candidate before the offer is held, not an error.
    let early = serde_json::json!({"type": "candidate", "candidate": {
        "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host",
        "sdpMid": "0", "sdpMLineIndex": 0}});
    responder
        .handle_signal(early)
        .await
        .expect("early candidate held");
    assert!(!responder.is_open());
    drop(responder);
    no_live_connections().await;
}

#[wasm_bindgen_test]
async fn candidates_that_come_before_the_offer_are_kept() {
    // B gets A's candidates before A's offer, and A never gets B's candidates: the link can
    // only open if B kept the early ones and added them once the offer was set.
    let config = Config::default();
    let mut a = Connector::new(config.clone())
        .connect(PeerId::new("b0b"), Role::Initiator)
        .await
        .expect("connect a");
    let mut b = Connector::new(config)
        .connect(PeerId::new("a11ce"), Role::Responder)
        .await
        .expect("connect b");
    let mut offer = None;
    let mut early = Vec::new();
    // A gathers its loopback candidates at once; take what it trickles until it is quiet.
    while let Ok(event) = p2pmesh_rt::timeout(Duration::from_millis(500), a.next_event()).await {
        match event.expect("a ended") {
            LinkEvent::Signal(signal) if signal["type"] == "offer" => offer = Some(signal),
            LinkEvent::Signal(signal) => early.push(signal),
            other => panic!("a: unexpected {other:?}"),
        }
    }
    assert!(!early.is_empty(), "a trickled candidates");
    for candidate in early {
        b.handle_signal(candidate)
            .await
            .expect("b holds an early candidate");
    }
    b.handle_signal(offer.expect("a offered"))
        .await
        .expect("b takes the offer");
    let (mut a_open, mut b_open) = (false, false);
    guard("links open", async {
        while !(a_open && b_open) {
            tokio::select! {
                event = a.next_event(), if !a_open => match event.expect("a ended") {
                    LinkEvent::Signal(signal) => b.handle_signal(signal).await.expect("b"),
                    LinkEvent::Open { .. } => a_open = true,
                    other => panic!("a: unexpected {other:?}"),
                },
                event = b.next_event(), if !b_open => match event.expect("b ended") {
                    LinkEvent::Signal(signal) if signal["type"] == "answer" => {
                        a.handle_signal(signal).await.expect("a takes the answer");
                    }
                    LinkEvent::Signal(_) => {}
                    LinkEvent::Open { .. } => b_open = true,
                    other => panic!("b: unexpected {other:?}"),
                },
            }
        }
    })
    .await;
    drop((a, b));
    no_live_connections().await;
}

#[wasm_bindgen_test]
async fn a_configured_limit_above_the_peers_is_lowered_to_it() {
    // Chromium advertises `a=max-message-size:262144`; a larger configured limit must not let
    // a send through that the browser would refuse.
    let config = Config {
        max_message_size: 1 << 20,
        ..Config::default()
    };
    let mut pair = open_pair(config).await;
    let peer_max = pair
        .answer_sdp
        .lines()
        .find_map(|line| line.trim_end().strip_prefix("a=max-message-size:"))
        .and_then(|value| value.parse::<usize>().ok())
        .expect("the answer says its max-message-size");
    assert!(peer_max < 1 << 20, "{peer_max}");
    let a_tx = pair.a.sender();
    let refused = a_tx.send(vec![1; peer_max + 1]).await;
    assert!(
        matches!(&refused, Err(LinkError::Setup(reason)) if reason.contains(&peer_max.to_string())),
        "{refused:?}"
    );
    let largest = message(3, peer_max - 4);
    guard("largest send", a_tx.send(largest.clone()))
        .await
        .expect("a sends the peer's largest message");
    assert_eq!(expect_message(&mut pair.b).await, largest);
    drop(pair);
    no_live_connections().await;
}
