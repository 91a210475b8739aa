//! One host (source address) cannot take the whole server: its open connections, its joins per
//! second and its share of any introduction are bounded; other hosts are not affected. Clients
//! connect from several addresses of 127.0.0.0/8 (all local on Linux).
#![allow(clippy::unwrap_used)]

mod common;

use common::{PATIENCE, Raw, TestServer, id_of};
use ed25519_dalek::SigningKey;
use signaling_server::Config;

/// A config with the per-source limits at their defaults (not lifted as in `ephemeral`).
fn config() -> Config {
    Config {
        addr: Config::ephemeral().addr,
        ..Config::default()
    }
}

#[tokio::test]
async fn one_source_cannot_hold_every_slot() {
    let server = TestServer::start(Config {
        max_clients: 10,
        max_connections_per_source: 3,
        ..config()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(Raw::connect_from(&server, [127, 0, 0, 1]).await);
    }
    let refused = Raw::try_connect_from(&server, [127, 0, 0, 1]).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
        }
        Err(other) => panic!("expected a 429, got {other}"),
        Ok(_) => panic!("a fourth connection from one source was accepted"),
    }
    // Another host still gets in, and the first host's clients still serve.
    let mut other = Raw::connect_from(&server, [127, 0, 0, 2]).await;
    other.assert_alive().await;
    held[0].assert_alive().await;
    // A closed connection gives its place back (the server notices the close).
    drop(held.pop());
    let mut again = None;
    for _ in 0..50 {
        if let Ok(raw) = Raw::try_connect_from(&server, [127, 0, 0, 1]).await {
            again = Some(raw);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "a place was freed");
    server.stop().await;
}

#[tokio::test]
async fn joins_per_source_are_rate_limited() {
    let server = TestServer::start(Config {
        source_join_rate: 1,
        source_join_burst: 3,
        ..config()
    })
    .await;
    let mut clients = Vec::new();
    for n in 0..3 {
        let mut raw = Raw::connect_from(&server, [127, 0, 0, 1]).await;
        raw.join_verified(&common::key(n), None).await;
        clients.push(raw);
    }
    let mut fourth = Raw::connect_from(&server, [127, 0, 0, 1]).await;
    let join = fourth.join_message(&common::key(3), None);
    fourth.send(join).await;
    fourth.expect_error("rate_limited").await;
    let mut elsewhere = Raw::connect_from(&server, [127, 0, 0, 2]).await;
    elsewhere.join_verified(&common::key(4), None).await;
    server.stop().await;
}

/// A key whose id starts with `first` (ground: about 256 tries each).
fn ground_key(first: u8, counter: &mut u64) -> SigningKey {
    loop {
        *counter += 1;
        let mut seed = [0x77u8; 32];
        seed[..8].copy_from_slice(&counter.to_le_bytes());
        let key = SigningKey::from_bytes(&seed);
        if id_of(&key).starts_with(&format!("{first:02x}")) {
            return key;
        }
    }
}

#[tokio::test]
async fn ids_ground_near_a_victim_from_one_host_are_few_of_its_introduction() {
    let per_source = 2;
    let server = TestServer::start(Config {
        max_introduced_per_source: per_source,
        ..config()
    })
    .await;
    let victim_key = common::key(200);
    let victim_id = id_of(&victim_key);
    let first = u8::from_str_radix(&victim_id[..2], 16).unwrap();
    // The attacker: 24 ids sharing the victim's first byte, all from 127.0.0.1.
    let mut counter = 0;
    let mut attacker = Vec::new();
    let mut attacker_ids = Vec::new();
    for _ in 0..24 {
        let key = ground_key(first, &mut counter);
        let mut raw = Raw::connect_from(&server, [127, 0, 0, 1]).await;
        raw.join_verified(&key, None).await;
        attacker_ids.push(id_of(&key));
        attacker.push(raw);
    }
    // Six honest peers, one host each.
    let mut honest = Vec::new();
    let mut honest_ids = Vec::new();
    for n in 0..6u8 {
        let key = common::key(100 + n);
        let mut raw = Raw::connect_from(&server, [127, 0, 1, n]).await;
        raw.join_verified(&key, None).await;
        honest_ids.push(id_of(&key));
        honest.push(raw);
    }
    let mut victim = Raw::connect_from(&server, [127, 0, 2, 1]).await;
    let (_, bootstrap) = tokio::time::timeout(PATIENCE, victim.join_verified(&victim_key, None))
        .await
        .expect("joined");
    let introduced: Vec<&str> = bootstrap["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let from_attacker = introduced
        .iter()
        .filter(|id| attacker_ids.iter().any(|a| a == *id))
        .count();
    assert!(
        from_attacker <= per_source,
        "{from_attacker} of the victim's {} introductions come from one host",
        introduced.len()
    );
    for id in &honest_ids {
        assert!(introduced.contains(&id.as_str()), "honest {id} introduced");
    }
    server.stop().await;
}
