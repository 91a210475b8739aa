//! Seed inputs for every target: valid encodings of each message kind, made with the crates' own
//! encoders (so that they follow wire changes: `cargo xtask fuzz --seed-corpus` writes them to
//! `fuzz/corpus/TARGET/`), and, for the targets read with `arbitrary`, a few fixed byte strings.

use gossip_core::wire::{
    Announce, Auth, Frame as GossipFrame, Message as GossipMessage, RootProof, TreeAdvert,
};
use gossip_core::{Identity, MessageId};
use kademlia_core::wire::{Message as KadMessage, Request as KadRequest, Response as KadResponse};
use kademlia_core::{Instant, NodeId, Record};
use mesh_core::frame::{self, Chunk, Frame, Hello, Neighbors, Payload, Routed};
use serde_json::json;
use transport::{ErrorCode, PeerId, PeerInfo, ServerMessage};

/// One seed input: a file name (without directory) and its bytes.
pub type Seed = (String, Vec<u8>);

/// The seeds of every target in [`TARGETS`](crate::TARGETS), by target name.
pub fn all() -> Vec<(&'static str, Vec<Seed>)> {
    vec![
        ("kademlia_wire", named("kad", kad_messages())),
        ("kademlia_node", kademlia_node()),
        ("gossip_wire", named("gossip", gossip_frames())),
        ("gossip_node", gossip_node()),
        ("mesh_frame", named("frame", mesh_frames())),
        ("mesh_reassembly", blobs()),
        ("mesh_node", blobs()),
        (
            "signaling_client_message",
            named("client", client_messages()),
        ),
        (
            "signaling_server_message",
            named("server", server_messages()),
        ),
        (
            "signaling_cluster_message",
            named("cluster", signaling_server::fuzzing::cluster_seeds()),
        ),
    ]
}

fn named(prefix: &str, inputs: Vec<Vec<u8>>) -> Vec<Seed> {
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| (format!("{prefix}-{i:02}"), bytes))
        .collect()
}

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 20])
}

fn record() -> Record {
    Record::sign(
        &Identity::from_secret_bytes(&[2; 32]),
        b"salt".to_vec(),
        1,
        b"value".to_vec(),
        Instant::from_millis(1_700_000_600_000),
    )
}

fn kad_messages() -> Vec<Vec<u8>> {
    let requests = [
        KadRequest::Ping,
        KadRequest::FindNode { target: id(3) },
        KadRequest::FindValue { key: id(4) },
        KadRequest::Store { record: record() },
    ];
    let responses = [
        KadResponse::Pong,
        KadResponse::Nodes {
            closer: vec![id(5), id(6)],
        },
        KadResponse::Value { record: record() },
        KadResponse::Stored { ok: true },
    ];
    requests
        .into_iter()
        .map(|body| KadMessage::Request { id: 7, body })
        .chain(
            responses
                .into_iter()
                .map(|body| KadMessage::Response { id: 7, body }),
        )
        .map(|m| m.encode())
        .collect()
}

fn gossip_message() -> GossipMessage {
    let signer = Identity::from_secret_bytes(&[3; 32]);
    let origin = signer.id();
    GossipMessage {
        id: MessageId::compute(&origin, 1, "chat", b"hi"),
        origin,
        seq: 1,
        timestamp: Instant::from_millis(1_700_000_000_000),
        topic: "chat".into(),
        payload: b"hi".to_vec(),
        hops: 1,
        tree: 0,
        auth: Some(Auth {
            public_key: signer.public_key(),
            signature: [5; 64],
        }),
    }
}

fn gossip_frames() -> Vec<Vec<u8>> {
    let m = gossip_message();
    let id = m.id;
    // Root 3's proof, in a `Tree` frame with an entry naming it and alone in a `Roots` frame.
    let proof = RootProof::sign(
        &Identity::from_secret_bytes(&[3; 32]),
        Instant::from_millis(1_700_000_000_000),
    );
    [
        GossipFrame::Gossip(m),
        GossipFrame::Ack(id),
        GossipFrame::IHave(vec![Announce { id, hops: 2 }]),
        GossipFrame::Graft(vec![id]),
        GossipFrame::Prune,
        GossipFrame::Tree {
            proofs: vec![proof],
            adverts: vec![TreeAdvert {
                root: id_of(3),
                distance: 1,
                child: true,
                cost: 40,
            }],
        },
        GossipFrame::CatchUp(30_000_000),
        GossipFrame::Roots(vec![proof]),
    ]
    .iter()
    .map(gossip_core::wire::encode)
    .collect()
}

fn id_of(n: u8) -> NodeId {
    Identity::from_secret_bytes(&[n; 32]).id()
}

/// When the seed messages were sent: the harnesses' clock (1,700,000,000 s after the epoch).
const SENT_AT: u64 = 1_700_000_000_000_000;

fn routed(payload: &Payload) -> Routed {
    let signer = Identity::from_secret_bytes(&[4; 32]);
    let src = signer.id();
    let body = postcard::to_allocvec(payload).unwrap_or_default();
    let signature = signer
        .sign(&Routed::signed_bytes(&src, &id(2), 9, SENT_AT, None, &body))
        .to_vec();
    Routed {
        src,
        dst: id(2),
        id: 9,
        sent_at: SENT_AT,
        lookup: None,
        hops_left: 8,
        path: vec![src],
        route: Vec::new(),
        key: signer.public_key(),
        signature,
        body,
    }
}

fn mesh_frames() -> Vec<Vec<u8>> {
    let payloads = [
        Payload::Data(b"hello".to_vec()),
        Payload::Ack,
        Payload::Kad(kad_messages().swap_remove(1)),
        Payload::Signal(b"offer".to_vec()),
        Payload::LinkRequest,
        Payload::Rejected(vec![id(5)]),
        Payload::FindNode,
        Payload::Nodes {
            probe_hops: 2,
            nodes: vec![id(6)],
        },
        Payload::DhtGet { key: id(7) },
        Payload::DhtPut { record: record() },
        Payload::DhtStore { record: record() },
        Payload::DhtValue {
            record: Some(record()),
            closest: vec![id(8)],
            request_hops: 3,
        },
        Payload::DhtStored {
            result: Err(kademlia_core::StoreError::OtherPublisher),
            closest: vec![id(9)],
            request_hops: 1,
        },
    ];
    let mut frames = vec![
        Frame::Hello(Hello {
            public_key: [7; 32],
            sender_fingerprint: b"sha-256 AB:CD".to_vec(),
            receiver_fingerprint: b"sha-256 EF:01".to_vec(),
            signature: vec![9; 64],
        }),
        Frame::Kad(kad_messages().swap_remove(0)),
        Frame::Gossip(gossip_frames().swap_remove(0)),
        Frame::Neighbors(Neighbors {
            links: vec![id(1), id(2)],
            second: vec![id(3)],
            third: vec![id(4)],
            fourth: vec![id(5)],
        }),
        Frame::Chunk(Chunk {
            msg: 1,
            index: 0,
            count: 2,
            data: b"part".to_vec(),
        }),
        Frame::Ping(1),
        Frame::Pong(1),
        Frame::Evict(vec![id(8)]),
        Frame::Bye,
    ];
    frames.extend(payloads.iter().map(|p| Frame::Routed(routed(p))));
    let mut bytes: Vec<Vec<u8>> = frames.iter().map(Frame::encode).collect();
    // A frame split in chunks, as a sender splits a long one.
    bytes.extend(frame::split(
        Frame::Gossip(vec![0xab; 3000]).encode(),
        1024,
        3,
    ));
    bytes
}

fn kademlia_node() -> Vec<Seed> {
    let messages = kad_messages();
    let mut seeds = named(
        "kad-step",
        messages
            .iter()
            .map(|m| crate::step_bytes(0, 10, m))
            .collect(),
    );
    seeds.push((
        "kad-steps".into(),
        messages
            .iter()
            .enumerate()
            .flat_map(|(i, m)| crate::step_bytes(i as u8, 500, m))
            .collect(),
    ));
    seeds
}

fn gossip_node() -> Vec<Seed> {
    let frames = gossip_frames();
    let mut seeds = named(
        "gossip-step",
        frames.iter().map(|f| crate::step_bytes(1, 10, f)).collect(),
    );
    // Signed messages published by the peers (structured steps), some from the future.
    seeds.push((
        "gossip-published".into(),
        [(0u8, 2u8, 0u8), (1, 4, 100), (2, 6, 200), (3, 8, 30)]
            .iter()
            .flat_map(|(p, kind, skew)| crate::step_bytes(*p, 50, &[*kind, *skew]))
            .collect(),
    ));
    seeds
}

/// Fixed byte strings for the targets read with `arbitrary` (any bytes are an input there).
fn blobs() -> Vec<Seed> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        // splitmix64: deterministic filler, not randomness.
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) as u8
    };
    [16usize, 64, 256, 1024, 4096]
        .iter()
        .map(|len| (format!("blob-{len}"), (0..*len).map(|_| next()).collect()))
        .chain([
            ("zeros".to_string(), vec![0; 256]),
            ("ones".to_string(), vec![0xff; 256]),
        ])
        .collect()
}

fn client_messages() -> Vec<Vec<u8>> {
    let id = "ab".repeat(20);
    [
        json!({"type": "join", "peerId": id, "protocolVersion": 2, "room": "lobby",
               "publicKey": "cd".repeat(32), "signature": "ef".repeat(64)}),
        json!({"type": "join", "peerId": "js-client"}),
        json!({"type": "leave"}),
        json!({"type": "ping", "ts": 12}),
        json!({"type": "signal", "to": id, "signal": {"p2pmesh": "AQID"}}),
        json!({"type": "batched_signals", "to": id, "signals": [{"candidate": "c"}], "batchTimestamp": 1}),
        json!({"type": "connection_rejected", "to": id, "reason": "full", "alternativePeers": [id]}),
        json!({"type": "signal_rejected", "to": id, "reason": "glare", "correctInitiator": id}),
        json!({"type": "kademlia_rpc_request", "to": id, "rpcMessage": {"id": 1}}),
        json!({"type": "kademlia_rpc_response", "to": id, "rpcMessage": {"id": 1}}),
        json!({"type": "offer", "to": id, "sdp": "v=0", "from": "spoof"}),
        json!({"type": "answer", "to": id, "sdp": "v=0"}),
        json!({"type": "candidate", "to": id, "candidate": {"sdpMid": "0"}}),
        json!({"type": "ack", "to": id}),
    ]
    .iter()
    .map(|v| v.to_string().into_bytes())
    .chain([
        br#"{"type":"signal","to":"a","to":"b","signal":{"sdp":"a\"b\u00e9"}}"#.to_vec(),
        b"[1,2,3]".to_vec(),
    ])
    .collect()
}

fn server_messages() -> Vec<Vec<u8>> {
    let peer = PeerId::new("ab".repeat(20));
    [
        ServerMessage::Challenge {
            nonce: "00".repeat(32),
            protocol_version: 2,
            compat_unverified_ids: false,
        },
        ServerMessage::Joined {
            peer_id: peer.clone(),
            room: "default".into(),
            protocol_version: 2,
        },
        ServerMessage::BootstrapPeers {
            peers: vec![PeerInfo { id: peer.clone() }],
        },
        ServerMessage::PeerJoined {
            peer_id: peer.clone(),
        },
        ServerMessage::PeerLeft {
            peer_id: peer.clone(),
        },
        ServerMessage::Signal {
            from: peer.clone(),
            to: None,
            signal: json!({"p2pmesh": "AQID"}),
        },
        ServerMessage::BatchedSignals {
            from: peer.clone(),
            to: None,
            signals: vec![json!({"candidate": "c"})],
            batch_timestamp: Some(1),
        },
        ServerMessage::ConnectionRejected {
            from: peer.clone(),
            to: None,
            reason: "full".into(),
            max_peers: Some(5),
            alternative_peers: vec![peer.clone()],
        },
        ServerMessage::SignalRejected {
            from: peer.clone(),
            to: None,
            reason: "glare".into(),
            correct_initiator: Some(peer.clone()),
        },
        ServerMessage::KademliaRpcRequest {
            from: peer.clone(),
            to: None,
            rpc_message: json!({"id": 1}),
        },
        ServerMessage::KademliaRpcResponse {
            from: peer.clone(),
            to: None,
            rpc_message: json!({"id": 1.5e300}),
        },
        ServerMessage::Pong { ts: Some(3) },
        ServerMessage::Error {
            code: Some(ErrorCode::UnknownPeer),
            message: "unknown".into(),
            peer_id: Some(peer),
        },
        ServerMessage::Shutdown {
            message: "bye".into(),
        },
    ]
    .iter()
    .map(|m| serde_json::to_vec(m).unwrap_or_default())
    .collect()
}
