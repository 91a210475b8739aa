//! Two connectors in one process open links over 127.0.0.1 and use them as mesh-core would.
//!
//! Timeouts here only stop a hung test; no test asserts how fast anything is.

#![cfg(not(target_arch = "wasm32"))]

use std::time::Duration;

use serde_json::json;
use tokio::time::timeout;
use transport::{LinkConnector, LinkError, LinkEvent, LinkSender as _, PeerId, PeerLink, Role};
use webrtc_adapter::{Config, Connector, Link};

const GUARD: Duration = Duration::from_secs(20);

struct Opened {
    a_local: String,
    a_remote: String,
    b_local: String,
    b_remote: String,
}

/// Routes signals between the two links until both report `Open`.
async fn open(a: &mut Link, b: &mut Link) -> Opened {
    let (mut a_fps, mut b_fps) = (None, None);
    let pump = async {
        while a_fps.is_none() || b_fps.is_none() {
            tokio::select! {
                Some(ev) = a.next_event() => match ev {
                    LinkEvent::Signal(s) => b.handle_signal(s).await.expect("b takes a's signal"),
                    LinkEvent::Open { local_fingerprint, remote_fingerprint } => {
                        a_fps = Some((local_fingerprint, remote_fingerprint));
                    }
                    other => panic!("a: unexpected {other:?} before open"),
                },
                Some(ev) = b.next_event() => match ev {
                    LinkEvent::Signal(s) => a.handle_signal(s).await.expect("a takes b's signal"),
                    LinkEvent::Open { local_fingerprint, remote_fingerprint } => {
                        b_fps = Some((local_fingerprint, remote_fingerprint));
                    }
                    other => panic!("b: unexpected {other:?} before open"),
                },
            }
        }
    };
    timeout(GUARD, pump).await.expect("link opens");
    let (a_local, a_remote) = a_fps.expect("a open");
    let (b_local, b_remote) = b_fps.expect("b open");
    Opened {
        a_local,
        a_remote,
        b_local,
        b_remote,
    }
}

/// The next event that is not a (late) trickled candidate.
async fn next(link: &mut Link) -> LinkEvent {
    loop {
        match timeout(GUARD, link.next_event())
            .await
            .expect("event in time")
        {
            Some(LinkEvent::Signal(_)) => continue,
            Some(event) => return event,
            None => panic!("link ended without Closed"),
        }
    }
}

/// The link's next event is `Closed(reason)`, and then its events end.
async fn closes_with(link: &mut Link, reason: &str) {
    match next(link).await {
        LinkEvent::Closed(r) => assert_eq!(r, reason),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(timeout(GUARD, link.next_event()).await.expect("ends"), None);
}

async fn pair(config: Config) -> (Link, Link) {
    let a = Connector::new(config.clone());
    let b = Connector::new(config);
    let a_link = a
        .connect(PeerId::new("b"), Role::Initiator)
        .await
        .expect("a connects");
    let b_link = b
        .connect(PeerId::new("a"), Role::Responder)
        .await
        .expect("b connects");
    (a_link, b_link)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_opens_carries_messages_both_ways_and_closes() {
    let (mut a, mut b) = pair(Config::loopback()).await;
    let fps = open(&mut a, &mut b).await;

    // Each side's view of the certificates matches the other's.
    assert!(fps.a_local.starts_with("sha-256 "), "{}", fps.a_local);
    assert_eq!(fps.a_local, fps.b_remote);
    assert_eq!(fps.b_local, fps.a_remote);
    assert_ne!(fps.a_local, fps.b_local);
    assert!(a.is_open() && b.is_open());

    // One big message each way.
    let big: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    a.sender().send(big.clone()).await.expect("a sends 64 KiB");
    assert_eq!(next(&mut b).await, LinkEvent::Message(big.clone()));
    b.sender().send(big.clone()).await.expect("b sends 64 KiB");
    assert_eq!(next(&mut a).await, LinkEvent::Message(big));

    // Many small ones, in order, both ways at once. In rounds of 250: webrtc 0.21 delivers a
    // burst of more than 256 messages that arrived together at about one per few ms (its
    // receive-side backlog bound; see the crate docs), raw or through the adapter, which
    // would only make this test slow.
    const ROUNDS: u32 = 8;
    const BURST: u32 = 250;
    for round in 0..ROUNDS {
        let first = round * BURST;
        let send_burst = |link: &Link, who: &'static str| {
            let sender = link.sender();
            async move {
                for i in first..first + BURST {
                    let sent = sender.send(i.to_be_bytes().to_vec()).await;
                    sent.unwrap_or_else(|e| panic!("{who} sends: {e:?}"));
                }
            }
        };
        tokio::join!(send_burst(&a, "a"), send_burst(&b, "b"));
        for i in first..first + BURST {
            assert_eq!(
                next(&mut b).await,
                LinkEvent::Message(i.to_be_bytes().to_vec())
            );
            assert_eq!(
                next(&mut a).await,
                LinkEvent::Message(i.to_be_bytes().to_vec())
            );
        }
    }

    // Closing one side is seen by the other.
    a.close().await;
    assert!(matches!(next(&mut a).await, LinkEvent::Closed(_)));
    assert_eq!(a.sender().send(vec![1]).await, Err(LinkError::Closed));
    closes_with(&mut b, "closed by peer").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_link_closes_it_for_the_peer() {
    let (mut a, mut b) = pair(Config::loopback()).await;
    open(&mut a, &mut b).await;
    drop(a);
    assert!(matches!(next(&mut b).await, LinkEvent::Closed(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_timeout_fires_when_the_remote_never_answers() {
    let config = Config {
        open_timeout: Duration::from_millis(300),
        ..Config::loopback()
    };
    let connector = Connector::new(config);
    let mut a = connector
        .connect(PeerId::new("silent"), Role::Initiator)
        .await
        .expect("connects");
    // The offer and candidates go nowhere.
    closes_with(&mut a, "open timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signals_and_early_sends_are_errors_not_failures() {
    let (mut a, mut b) = pair(Config::loopback()).await;
    assert_eq!(a.sender().send(vec![1]).await, Err(LinkError::NotOpen));
    for junk in [
        json!(null),
        json!({"type": "bogus"}),
        json!({"type": "answer", "sdp": 7}),
    ] {
        assert!(a.handle_signal(junk).await.is_err());
    }
    // A responder does not take an answer, nor an initiator an offer.
    assert!(
        b.handle_signal(json!({"type": "answer", "sdp": "v=0\r\n"}))
            .await
            .is_err()
    );
    // The link still opens after all that.
    open(&mut a, &mut b).await;
    let too_big = vec![0u8; 64 * 1024 + 1];
    assert!(matches!(
        a.sender().send(too_big).await,
        Err(LinkError::Setup(_))
    ));
    a.sender()
        .send(b"still fine".to_vec())
        .await
        .expect("sends");
    assert_eq!(
        next(&mut b).await,
        LinkEvent::Message(b"still fine".to_vec())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_remote_candidates_is_refused_past_the_bound() {
    let config = Config {
        max_remote_candidates: 3,
        ..Config::loopback()
    };
    let (mut a, mut b) = pair(config).await;
    let candidate = |port: u16| {
        json!({"type": "candidate", "candidate": {
            "candidate": format!("candidate:{port} 1 udp 2130706431 127.0.0.1 {port} typ host"),
            "sdpMid": "0", "sdpMLineIndex": 0}})
    };
    // Before the offer (held) and after it (added), three in all; the next ones are refused.
    b.handle_signal(candidate(5000)).await.expect("held");
    let offer = match timeout(GUARD, a.next_event()).await.expect("event") {
        Some(LinkEvent::Signal(s)) if s["type"] == "offer" => s,
        other => panic!("expected the offer first, got {other:?}"),
    };
    b.handle_signal(offer).await.expect("offer");
    for port in [5001, 5002] {
        b.handle_signal(candidate(port)).await.expect("added");
    }
    for port in 5003..5010 {
        assert!(
            matches!(
                b.handle_signal(candidate(port)).await,
                Err(LinkError::Setup(reason)) if reason.contains("remote ICE candidates")
            ),
            "candidate {port} taken"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_that_overtake_the_offer_are_kept() {
    let (mut a, mut b) = pair(Config::loopback()).await;
    // Hold a's offer back until its candidates have been delivered.
    let offer = match timeout(GUARD, a.next_event()).await.expect("event") {
        Some(LinkEvent::Signal(s)) if s["type"] == "offer" => s,
        other => panic!("expected the offer first, got {other:?}"),
    };
    let candidate = match timeout(GUARD, a.next_event()).await.expect("event") {
        Some(LinkEvent::Signal(s)) if s["type"] == "candidate" => s,
        other => panic!("expected a candidate, got {other:?}"),
    };
    b.handle_signal(candidate)
        .await
        .expect("early candidate held");
    b.handle_signal(offer).await.expect("offer");
    open(&mut a, &mut b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_can_send_more_than_the_buffers_hold_at_once() {
    // 8 MiB each way, well past the 1 MiB send limit and 256-event queues: the senders
    // wait on backpressure while this task reads.
    const MESSAGES: usize = 128;
    let (mut a, mut b) = pair(Config::loopback()).await;
    open(&mut a, &mut b).await;
    let spawn_sender = |link: &Link, tag: u8| {
        let sender = link.sender();
        tokio::spawn(async move {
            for i in 0..MESSAGES {
                let mut message = vec![tag; 64 * 1024];
                message[0] = i as u8;
                sender.send(message).await.expect("sends");
            }
        })
    };
    let a_sends = spawn_sender(&a, 0xa);
    let b_sends = spawn_sender(&b, 0xb);
    let (mut at_a, mut at_b) = (0, 0);
    while at_a < MESSAGES || at_b < MESSAGES {
        tokio::select! {
            event = next(&mut a), if at_a < MESSAGES => {
                let LinkEvent::Message(m) = event else { panic!("a: {event:?}") };
                assert_eq!((m.len(), m[0], m[1]), (64 * 1024, at_a as u8, 0xb));
                at_a += 1;
            }
            event = next(&mut b), if at_b < MESSAGES => {
                let LinkEvent::Message(m) = event else { panic!("b: {event:?}") };
                assert_eq!((m.len(), m[0], m[1]), (64 * 1024, at_b as u8, 0xa));
                at_b += 1;
            }
        }
    }
    a_sends.await.expect("a's sender");
    b_sends.await.expect("b's sender");
}
