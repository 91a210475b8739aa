//! The per-connection limits over real sockets: rate (errors, then close 1008), frame size
//! (close 1009), maximum clients (refused with `server_full`, close 1013). Each leaves the
//! server serving everyone else. The join and idle timeouts are tested on tokio's paused clock,
//! beside the connection handler (src/connection/tests.rs).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Raw, TestServer, http_get};
use serde_json::json;
use signaling_server::Config;

#[tokio::test]
async fn excess_messages_get_rate_limited_then_sustained_abuse_is_closed() {
    let config = Config {
        rate_per_sec: 1,
        rate_burst: 5,
        rate_abuse_strikes: 20,
        ..Config::ephemeral()
    };
    let server = TestServer::start(config).await;
    let mut bystander = Raw::connect(&server).await;
    let mut flooder = Raw::connect(&server).await;
    for i in 0..10 {
        flooder.send(json!({"type": "ping", "ts": i})).await;
    }
    let mut pongs = 0;
    let mut limited = 0;
    for _ in 0..10 {
        let reply = flooder.recv().await;
        match reply["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") => {
                assert_eq!(reply["code"], "rate_limited", "{reply}");
                limited += 1;
            }
            _ => panic!("unexpected {reply}"),
        }
    }
    // The burst passes (plus at most what refilled meanwhile); the rest is refused.
    assert!(
        pongs >= 5 && limited >= 1,
        "pongs {pongs}, limited {limited}"
    );
    // Keep flooding: the server closes with 1008 (policy violation).
    for i in 0..40 {
        flooder.send(json!({"type": "ping", "ts": i})).await;
    }
    assert_eq!(flooder.closed().await, Some(1008));
    bystander.assert_alive().await;
    server.stop().await;
}

#[tokio::test]
async fn an_oversized_message_closes_with_1009() {
    let config = Config {
        max_frame_bytes: 1024,
        ..Config::ephemeral()
    };
    let server = TestServer::start(config).await;
    let mut bystander = Raw::connect(&server).await;
    let mut big = Raw::connect(&server).await;
    // Under the limit is fine.
    big.send(json!({"type": "ping", "ts": 1, "pad": "x".repeat(900)}))
        .await;
    assert_eq!(big.recv().await["type"], "pong");
    big.send(json!({"type": "ping", "pad": "x".repeat(2000)}))
        .await;
    big.expect_error("message_too_large").await;
    assert_eq!(big.closed().await, Some(1009));
    bystander.assert_alive().await;
    server.stop().await;
}

#[tokio::test]
async fn a_client_over_the_maximum_is_refused_with_a_reason() {
    let config = Config {
        max_clients: 2,
        ..Config::ephemeral()
    };
    let server = TestServer::start(config).await;
    let mut first = Raw::connect(&server).await;
    let _second = Raw::connect(&server).await;
    let (mut third, _) = tokio_tungstenite::connect_async(server.url())
        .await
        .unwrap();
    use futures_util::StreamExt;
    let refusal = third.next().await.unwrap().unwrap();
    let refusal: serde_json::Value = serde_json::from_str(refusal.to_text().unwrap()).unwrap();
    assert_eq!(refusal["code"], "server_full", "{refusal}");
    match third.next().await {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame)))) => {
            assert_eq!(u16::from(frame.code), 1013);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    first.assert_alive().await;
    let (_, metrics) = http_get(server.addr, "/metrics").await;
    assert!(
        metrics.contains("signaling_refused_connections_total 1"),
        "{metrics}"
    );
    // A slot frees up when a client leaves.
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.url())
            .await
            .unwrap();
        let msg = ws.next().await.unwrap().unwrap();
        if msg.to_text().unwrap().contains("challenge") {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "a slot was freed");
    server.stop().await;
}
