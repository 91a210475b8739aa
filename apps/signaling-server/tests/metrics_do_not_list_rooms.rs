//! `GET /metrics` is public: it counts rooms by size but never names one (a room's name is
//! what a stranger needs to join it).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Raw, TestServer, http_get, key};
use signaling_server::Config;

#[tokio::test]
async fn metrics_count_rooms_without_naming_them() {
    let server = TestServer::start(Config::ephemeral()).await;
    let mut a = Raw::connect(&server).await;
    a.join_verified(&key(1), Some("our-private-room")).await;
    let mut b = Raw::connect(&server).await;
    b.join_verified(&key(2), Some("our-private-room")).await;
    let mut c = Raw::connect(&server).await;
    c.join_verified(&key(3), Some("another.hidden_room")).await;

    let (status, metrics) = http_get(server.addr, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    assert!(!metrics.contains("our-private-room"), "{metrics}");
    assert!(!metrics.contains("another.hidden_room"), "{metrics}");
    // Still useful: how many rooms, how large.
    assert!(metrics.contains("\nsignaling_rooms 2\n"), "{metrics}");
    assert!(
        metrics.contains("\nsignaling_largest_room_clients 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("signaling_rooms_by_size{size=\"1\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("signaling_rooms_by_size{size=\"2-10\"} 1\n"),
        "{metrics}"
    );
    server.stop().await;
}
