//! A join is introduced to its K XOR-closest peers of its room plus a few random ones:
//! `bootstrap_peers` lists them, and only they get `peer_joined`. Rooms do not mix.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use common::{Raw, TestServer, id_of, key};
use signaling_server::Config;

fn xor_distance(a: &str, b: &str) -> Vec<u8> {
    let a = hex::decode(a).unwrap();
    let b = hex::decode(b).unwrap();
    a.iter().zip(b.iter()).map(|(x, y)| x ^ y).collect()
}

#[tokio::test]
async fn introductions_go_to_the_closest_peers_only() {
    let config = Config {
        bootstrap_closest: 3,
        bootstrap_random: 0,
        ..Config::ephemeral()
    };
    let server = TestServer::start(config).await;
    let mut members = Vec::new();
    for n in 0..12u8 {
        let k = key(n + 10);
        let mut raw = Raw::connect(&server).await;
        raw.join_verified(&k, Some("lobby")).await;
        members.push((id_of(&k), raw));
    }
    let mut outsider = Raw::connect(&server).await;
    outsider.join_verified(&key(99), Some("other-room")).await;
    // Drain the introductions among the first twelve: everything before the pong.
    for (_, raw) in members.iter_mut() {
        raw.send(serde_json::json!({"type": "ping", "ts": 7})).await;
        raw.recv_type("pong").await;
    }

    let newcomer_key = key(200);
    let newcomer_id = id_of(&newcomer_key);
    let mut newcomer = Raw::connect(&server).await;
    let (_, bootstrap) = newcomer.join_verified(&newcomer_key, Some("lobby")).await;
    let introduced: BTreeSet<String> = bootstrap["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    let mut by_distance: Vec<&String> = members.iter().map(|(id, _)| id).collect();
    by_distance.sort_by_key(|id| xor_distance(id, &newcomer_id));
    let closest: BTreeSet<String> = by_distance.iter().take(3).map(|s| (*s).clone()).collect();
    assert_eq!(introduced, closest);

    for (id, raw) in members.iter_mut() {
        raw.send(serde_json::json!({"type": "ping", "ts": 8})).await;
        let first = raw.recv().await;
        if introduced.contains(id) {
            assert_eq!(first["type"], "peer_joined", "{id}: {first}");
            assert_eq!(first["peerId"], newcomer_id.as_str());
            assert_eq!(raw.recv().await["type"], "pong");
        } else {
            assert_eq!(first["type"], "pong", "{id} was not introduced: {first}");
        }
    }
    // The other room heard nothing.
    outsider.assert_alive().await;
    server.stop().await;
}

#[tokio::test]
async fn random_introductions_add_to_the_closest() {
    let config = Config {
        bootstrap_closest: 2,
        bootstrap_random: 3,
        ..Config::ephemeral()
    };
    let server = TestServer::start(config).await;
    let mut keep = Vec::new();
    for n in 0..20u8 {
        let mut raw = Raw::connect(&server).await;
        raw.join_verified(&key(n + 30), None).await;
        keep.push(raw);
    }
    let mut newcomer = Raw::connect(&server).await;
    let (_, bootstrap) = newcomer.join_verified(&key(250), None).await;
    let peers = bootstrap["peers"].as_array().unwrap();
    assert!(peers.len() > 2 && peers.len() <= 5, "{bootstrap}");
    let distinct: BTreeSet<&str> = peers.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), peers.len());
    server.stop().await;
}
