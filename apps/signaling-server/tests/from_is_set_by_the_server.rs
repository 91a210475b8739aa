//! Whatever `from` a client writes, the server overwrites it with the sender's id, on every
//! relayed type (the JavaScript server left it alone on Kademlia messages).
#![allow(clippy::unwrap_used)]

mod common;

use common::{Raw, TestServer, id_of, key};
use serde_json::json;
use signaling_server::Config;

#[tokio::test]
async fn a_spoofed_from_is_overwritten() {
    let server = TestServer::start(Config::ephemeral()).await;
    let (a_key, b_key, c_key) = (key(1), key(2), key(3));
    let (a_id, b_id, c_id) = (id_of(&a_key), id_of(&b_key), id_of(&c_key));
    let mut a = Raw::connect(&server).await;
    a.join_verified(&a_key, None).await;
    let mut b = Raw::connect(&server).await;
    b.join_verified(&b_key, None).await;
    let mut c = Raw::connect(&server).await;
    c.join_verified(&c_key, None).await;

    let messages = [
        json!({"type": "signal", "to": b_id, "from": c_id, "signal": {"type": "offer", "sdp": "v=0"}}),
        json!({"type": "batched_signals", "to": b_id, "from": c_id, "signals": [{"candidate": "c"}], "batchTimestamp": 5}),
        json!({"type": "connection_rejected", "to": b_id, "from": c_id, "reason": "max_peers_reached", "maxPeers": 3, "alternativePeers": [c_id]}),
        json!({"type": "signal_rejected", "to": b_id, "reason": "initiator_conflict", "correctInitiator": a_id}),
        json!({"type": "kademlia_rpc_request", "to": b_id, "from": c_id, "rpcMessage": {"id": 1}}),
        json!({"type": "kademlia_rpc_response", "to": b_id, "from": "forged", "rpcMessage": {"id": 1}}),
        json!({"type": "offer", "to": b_id, "from": c_id, "sdp": "v=0"}),
        json!({"type": "ack", "to": b_id, "from": c_id}),
    ];
    for sent in messages {
        a.send(sent.clone()).await;
        let got = b.recv_type(sent["type"].as_str().unwrap()).await;
        assert_eq!(got["from"], a_id.as_str(), "{got}");
        // Everything else arrives as it was sent.
        let mut expected = sent.clone();
        expected["from"] = json!(a_id);
        assert_eq!(got, expected);
    }
    server.stop().await;
}
