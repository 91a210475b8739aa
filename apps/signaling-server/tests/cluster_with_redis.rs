//! Three signaling-server processes sharing rooms through a real Redis (Debian's redis-server on a
//! free loopback port, started and stopped by the test): 30 clients spread across them are
//! introduced to their XOR-closest peers of the whole room, signals relay across servers, an id
//! held on one server is refused on another; a server killed with SIGKILL vanishes from the
//! others' rooms (its clients' peers hear `peer_left`) and its clients join the others; a Redis
//! killed and restarted empty is refilled by the servers, which serve across each other again.
//!
//! Waits only stop a hung test; nothing asserts how fast anything is.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;

use common::cluster::{Redis, ServerProcess, wait_members};
use common::{Raw, TestServer, id_of, key};
use serde_json::{Value, json};
use transport::distance_key;

/// Introductions of these tests: the 5 closest, no random ones (so that they can be checked).
const CLOSEST: usize = 5;

fn prefix() -> String {
    format!("test-{}", std::process::id())
}

async fn start_cluster(redis: &Redis) -> Vec<ServerProcess> {
    let prefix = prefix();
    let flags = ["--bootstrap-closest", "5", "--bootstrap-random", "0"];
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(ServerProcess::start(&redis.url(), &prefix, &flags).await);
    }
    servers
}

/// A raw client of a server process (`Raw` reads the challenge and knows the host to prove for).
async fn connect(server: &ServerProcess) -> Raw {
    Raw::connect(&TestServer::at(server.addr)).await
}

/// The `CLOSEST` ids of `members` closest to `id` by XOR.
fn closest(id: &str, members: &[String]) -> BTreeSet<String> {
    let target = distance_key(id);
    let mut sorted: Vec<&String> = members.iter().collect();
    sorted.sort_by_key(|m| {
        let k = distance_key(m);
        let mut d = [0u8; 20];
        for i in 0..20 {
            d[i] = k[i] ^ target[i];
        }
        d
    });
    sorted.into_iter().take(CLOSEST).cloned().collect()
}

fn peers_of(bootstrap: &Value) -> BTreeSet<String> {
    bootstrap["peers"]
        .as_array()
        .expect("peers")
        .iter()
        .map(|p| p["id"].as_str().expect("id").to_owned())
        .collect()
}

/// Read `raw`'s messages until one of `kind` about each of `peers` (in `peerId`) arrived, in any
/// order.
async fn expect_about(raw: &mut Raw, kind: &str, peers: &[&String]) {
    let mut missing: BTreeSet<&str> = peers.iter().map(|p| p.as_str()).collect();
    while !missing.is_empty() {
        let message = raw.recv_type(kind).await;
        if let Some(peer) = message["peerId"].as_str() {
            missing.remove(peer);
        }
    }
}

/// `from` signals `to` (on any server); `to` receives it from `from`.
async fn signal_reaches(from: &mut Raw, from_id: &str, to: &mut Raw, to_id: &str, n: u64) {
    from.send(json!({"type": "signal", "to": to_id, "signal": {"n": n}}))
        .await;
    loop {
        let got = to.recv_type("signal").await;
        if got["signal"]["n"] == n {
            assert_eq!(got["from"], from_id, "{got}");
            return;
        }
    }
}

/// Client `from` signals client `to`.
async fn relay(clients: &mut [Raw], ids: &[String], from: usize, to: usize, n: u64) {
    let [a, b] = clients.get_disjoint_mut([from, to]).expect("two clients");
    signal_reaches(a, &ids[from], b, &ids[to], n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_share_rooms_survive_a_killed_server_and_a_restarted_redis() {
    let mut redis = Redis::start().await;
    let mut servers = start_cluster(&redis).await;

    // 30 clients, client i on server i % 3, each join introduced to the 5 closest of everyone
    // joined before it, whatever their server.
    let mut clients: Vec<Raw> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut introductions = Vec::new();
    for i in 0..30u8 {
        let k = key(i + 1);
        let mut raw = connect(&servers[usize::from(i) % 3]).await;
        let (_, bootstrap) = raw.join_verified(&k, None).await;
        let got = peers_of(&bootstrap);
        assert_eq!(
            got,
            closest(&id_of(&k), &ids),
            "join {i} on server {}",
            i % 3
        );
        introductions.push(got);
        ids.push(id_of(&k));
        clients.push(raw);
        let all: Vec<&ServerProcess> = servers.iter().collect();
        wait_members(&all, ids.len()).await;
    }
    // Those introduced to the last joiner heard of it, on whichever server they are.
    for peer in &introductions[29] {
        let at = ids.iter().position(|id| id == peer).unwrap();
        expect_about(&mut clients[at], "peer_joined", &[&ids[29]]).await;
    }

    // Signals relay across servers (0 -> 1 -> 2 -> 0), with `from` set by the sender's server.
    relay(&mut clients, &ids, 0, 1, 1).await;
    relay(&mut clients, &ids, 1, 2, 2).await;
    relay(&mut clients, &ids, 2, 0, 3).await;
    // Each server's /metrics has the cluster's figures (the gauges as of its last heartbeat).
    for s in &servers {
        s.wait_metric("signaling_cluster_servers", 3.0).await;
        s.wait_metric("signaling_cluster_redis_up", 1.0).await;
        assert!(s.metric("signaling_cluster_relays_out_total").await >= 1.0);
        assert!(s.metric("signaling_cluster_relays_in_total").await >= 1.0);
        assert!(s.metric("signaling_cluster_redis_rtt_seconds_count").await >= 1.0);
        assert_eq!(s.metric("signaling_cluster_dropped_total").await, 0.0);
    }

    // An id held on server 0 is refused on server 1; its holder keeps it.
    let mut thief = connect(&servers[1]).await;
    let message = thief.join_message(&key(1), None);
    thief.send(message).await;
    thief.expect_error("id_taken").await;
    relay(&mut clients, &ids, 1, 0, 4).await;
    drop(thief);

    // SIGKILL server 0: its 10 clients vanish from the others' rooms, and those introduced to
    // them hear that they left.
    servers[0].kill();
    let alive: Vec<&ServerProcess> = servers[1..].iter().collect();
    wait_members(&alive, 20).await;
    let on_killed: Vec<&String> = introductions[29]
        .iter()
        .filter(|peer| ids.iter().position(|id| id == *peer).unwrap() % 3 == 0)
        .collect();
    assert!(
        !on_killed.is_empty(),
        "client 29 was introduced to a client of server 0"
    );
    expect_about(&mut clients[29], "peer_left", &on_killed).await;
    // They join the two others with their ids (free again) and are served.
    for i in (0..30).step_by(3) {
        let k = key(u8::try_from(i).unwrap() + 1);
        let mut raw = connect(&servers[1 + (i / 3) % 2]).await;
        raw.join_verified(&k, None).await;
        clients[i] = raw;
    }
    wait_members(&alive, 30).await;
    relay(&mut clients, &ids, 0, 2, 5).await;

    // Redis dies: joins are refused (the id check cannot span the cluster), /health says so,
    // and each server still relays among its own clients.
    redis.kill();
    for s in &servers[1..] {
        s.wait_health("503").await;
    }
    let mut late = connect(&servers[1]).await;
    let message = late.join_message(&key(100), None);
    late.send(message).await;
    late.expect_error("unavailable").await;
    relay(&mut clients, &ids, 1, 4, 6).await; // both on server 1

    // Redis restarts empty: the servers write their members again and read each other's.
    let redis = Redis::start_on(redis.port).await;
    for s in &servers[1..] {
        s.wait_health("200").await;
    }
    wait_members(&alive, 30).await;
    let (_, bootstrap) = late.join_verified(&key(100), None).await;
    assert_eq!(peers_of(&bootstrap), closest(&id_of(&key(100)), &ids));
    ids.push(id_of(&key(100)));
    wait_members(&alive, 31).await;
    relay(&mut clients, &ids, 1, 2, 7).await;
    signal_reaches(&mut late, &ids[30], &mut clients[2], &ids[2], 8).await;

    // A client that goes away leaves every server's view of the room.
    drop(late);
    wait_members(&alive, 30).await;

    // A graceful stop removes a server's clients at once (no expiry to wait for).
    servers[2].terminate();
    wait_members(&[&servers[1]], 15).await;
    drop(redis);
}

mod mesh {
    //! p2pmesh nodes (in-memory links, real WebSocket signaling) spread over the three servers.

    use std::collections::{BTreeSet, HashMap};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use futures_util::StreamExt as _;
    use p2pmesh::memory::MemoryNetwork;
    use p2pmesh::{DisconnectReason, Event, Keypair, Mesh, NodeId};

    use super::common::PATIENCE;
    use super::common::cluster::{Redis, ServerProcess, wait_members};

    const NODES: usize = 30;
    const TOPIC: &str = "cluster";

    struct Node {
        id: NodeId,
        mesh: Mesh,
        /// Every event, with when it came.
        events: Arc<Mutex<Vec<(Instant, Event)>>>,
        /// The broadcasts received (their text).
        received: Arc<Mutex<BTreeSet<String>>>,
    }

    fn keypair(i: usize) -> Keypair {
        let mut secret = [0x3cu8; 32];
        secret[..8].copy_from_slice(&(i as u64).to_le_bytes());
        Keypair::from_secret(secret)
    }

    async fn start(i: usize, urls: Vec<String>, network: &MemoryNetwork) -> Node {
        let keypair = keypair(i);
        let id = keypair.peer_id();
        let mesh = Mesh::builder()
            .keypair(keypair)
            .seed(i as u64)
            .signaling_urls(urls)
            .connector(network.connector(p2pmesh::transport::PeerId::verified(*id.as_bytes())))
            .build()
            .expect("build");
        let events = Arc::new(Mutex::new(Vec::new()));
        let log = events.clone();
        let mut stream = mesh.events();
        tokio::spawn(async move {
            while let Some(event) = stream.next().await {
                log.lock().unwrap().push((Instant::now(), event));
            }
        });
        let received = Arc::new(Mutex::new(BTreeSet::new()));
        let log = received.clone();
        let mut subscription = mesh.subscribe(TOPIC).await.expect("subscribe");
        tokio::spawn(async move {
            while let Some(message) = subscription.next().await {
                log.lock()
                    .unwrap()
                    .insert(String::from_utf8_lossy(&message.data).into_owned());
            }
        });
        tokio::time::timeout(PATIENCE, mesh.join())
            .await
            .expect("join in time")
            .expect("join");
        Node {
            id,
            mesh,
            events,
            received,
        }
    }

    async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + PATIENCE * 6;
        while !check().await {
            assert!(Instant::now() < deadline, "gave up waiting: {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn connected(nodes: &[Node]) -> bool {
        let mut graph: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        for n in nodes {
            graph.insert(n.id, n.mesh.peers().await.unwrap_or_default());
        }
        if graph.values().any(Vec::is_empty) {
            return false;
        }
        let start = nodes[0].id;
        let mut seen = BTreeSet::from([start]);
        let mut stack = vec![start];
        while let Some(n) = stack.pop() {
            for m in &graph[&n] {
                if graph.get(m).is_some_and(|back| back.contains(&n)) && seen.insert(*m) {
                    stack.push(*m);
                }
            }
        }
        seen.len() == nodes.len()
    }

    async fn broadcast_reaches_all(nodes: &[Node], from: usize, text: &str) {
        nodes[from]
            .mesh
            .broadcast(TOPIC, text.as_bytes().to_vec())
            .await
            .expect("broadcast");
        wait_for(&format!("every node receives `{text}`"), async || {
            nodes
                .iter()
                .enumerate()
                .all(|(i, n)| i == from || n.received.lock().unwrap().contains(text))
        })
        .await;
    }

    /// 30 nodes, node i on server i mod 3 with the two others as its fallbacks. Server 0 is
    /// killed (SIGKILL): its nodes are served again by the two others, no node loses a link (a link
    /// the mesh evicts for a better one is not lost), and a broadcast afterwards reaches every
    /// node. Prints how long each node was without a server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mesh_over_three_servers_keeps_its_links_when_one_is_killed() {
        let redis = Redis::start().await;
        let prefix = format!("mesh-{}", std::process::id());
        let mut servers = Vec::new();
        for _ in 0..3 {
            servers.push(ServerProcess::start(&redis.url(), &prefix, &[]).await);
        }
        let network = MemoryNetwork::new();
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let urls = (0..3).map(|k| servers[(i + k) % 3].url()).collect();
            nodes.push(start(i, urls, &network).await);
        }
        let all: Vec<&ServerProcess> = servers.iter().collect();
        wait_members(&all, NODES).await;
        wait_for("the 30 nodes form one connected mesh", async || {
            connected(&nodes).await
        })
        .await;
        broadcast_reaches_all(&nodes, 1, "before").await;
        // The mesh still improves its links for a while after it forms (a closer peer found, a
        // link evicted for it): wait until no link came or went for 3 s.
        wait_for("the links settle", async || {
            nodes.iter().all(|n| {
                n.events.lock().unwrap().iter().rev().all(|(at, e)| {
                    at.elapsed() > Duration::from_secs(3)
                        || !matches!(
                            e,
                            Event::PeerConnected { .. } | Event::PeerDisconnected { .. }
                        )
                })
            })
        })
        .await;

        let killed_at = Instant::now();
        let mark = nodes
            .iter()
            .map(|n| n.events.lock().unwrap().len())
            .collect::<Vec<_>>();
        servers[0].kill();
        let orphans: Vec<usize> = (0..NODES).filter(|i| i % 3 == 0).collect();
        wait_for("the killed server's nodes are served again", async || {
            orphans.iter().all(|&i| {
                nodes[i].events.lock().unwrap()[mark[i]..]
                    .iter()
                    .any(|(_, e)| matches!(e, Event::ServerReconnected))
            })
        })
        .await;
        let mut failover: Vec<f64> = orphans
            .iter()
            .map(|&i| {
                let events = nodes[i].events.lock().unwrap();
                events[mark[i]..]
                    .iter()
                    .find(|(_, e)| matches!(e, Event::ServerReconnected))
                    .map(|(at, _)| at.duration_since(killed_at).as_secs_f64())
                    .unwrap_or(f64::NAN)
            })
            .collect();
        failover.sort_by(f64::total_cmp);
        eprintln!(
            "failover of {} nodes after SIGKILL of their server (s): min {:.2}, median {:.2}, max {:.2}",
            failover.len(),
            failover[0],
            failover[failover.len() / 2],
            failover[failover.len() - 1]
        );
        let alive: Vec<&ServerProcess> = servers[1..].iter().collect();
        wait_members(&alive, NODES).await;

        broadcast_reaches_all(&nodes, 0, "after").await;
        // A link the mesh replaced by a better one is an eviction: its own choice, which its
        // maintenance makes whatever the servers do (the orphans hear of peers again when they
        // are served again). It is not lost; any other end of a link after the kill is (as in
        // test-mesh's `server-failover`).
        let mut replaced = 0;
        for (i, n) in nodes.iter().enumerate() {
            let events = n.events.lock().unwrap();
            let (evicted, lost): (Vec<&Event>, Vec<&Event>) = events[mark[i]..]
                .iter()
                .map(|(_, e)| e)
                .filter(|e| matches!(e, Event::PeerDisconnected { .. }))
                .partition(|e| {
                    matches!(
                        e,
                        Event::PeerDisconnected {
                            reason: DisconnectReason::Evicted | DisconnectReason::EvictedByPeer,
                            ..
                        }
                    )
                });
            replaced += evicted.len();
            assert!(lost.is_empty(), "node {i} lost links: {lost:?}");
        }
        eprintln!("{replaced} link ends evicted after the kill (the mesh's own replacements)");
        for n in nodes {
            let _ = n.mesh.leave().await;
        }
        drop(redis);
    }
}
